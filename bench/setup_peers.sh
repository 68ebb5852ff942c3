#!/usr/bin/env bash
# Create bench/.venv-peers with the peer frameworks (Keras 3 on JAX and
# TensorFlow, PyTorch) that bench/bench.py compares kilnet against.
#
#   bash bench/setup_peers.sh            # create or update the venv
#   PYTHON=python3.11 bash bench/setup_peers.sh
#
# The venv is separate from the project's .venv so that TensorFlow and torch
# never end up in kilnet's own environment. Re-running is safe.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-peers"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv with $("$python" --version)"
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --upgrade pip wheel
"$venv/bin/python" -m pip install -r "$here/requirements-peers.txt"

echo "checking the peers ..."
KERAS_BACKEND=jax "$venv/bin/python" - <<'PY'
import keras, jax
assert keras.backend.backend() == "jax", keras.backend.backend()
print(f"  keras {keras.__version__} on jax {jax.__version__}: ok")
PY
KERAS_BACKEND=tensorflow "$venv/bin/python" - <<'PY'
import keras, tensorflow as tf
assert keras.backend.backend() == "tensorflow", keras.backend.backend()
print(f"  keras {keras.__version__} on tensorflow {tf.__version__}: ok")
PY
"$venv/bin/python" - <<'PY'
import torch
assert not torch.cuda.is_available() or True
print(f"  torch {torch.__version__}: ok")
import mlxtend
print(f"  mlxtend {mlxtend.__version__}: ok")
PY
echo "peers ready: $venv"
