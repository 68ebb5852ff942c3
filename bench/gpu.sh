#!/usr/bin/env bash
# The benchmarks on a machine with an NVIDIA GPU, from scratch, in one command:
#
#   bash bench/gpu.sh                  # mlp, cnn, resnet, lstm, transformer; 3 repeats; --check
#   REPEATS=1 bash bench/gpu.sh --workloads mlp,cnn
#
# Makes two environments beside this script (they never touch the project's .venv):
#   .venv-gpu        kilnet (editable) with JAX's CUDA 12 wheels
#   .venv-peers-gpu  Keras 3 with JAX's CUDA wheels and TensorFlow's (tensorflow[and-cuda]),
#                    and PyTorch's default Linux wheel (CUDA built in)
# then runs bench/bench.py with them (KILNET_BENCH_PYTHON, KILNET_BENCH_PEERS_PYTHON) and prints
# the tables, the device and the targets met or missed. Arguments go to bench.py.
# Nothing in kilnet needs a GPU: this script is how its GPU figures are made.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "bench/gpu.sh: no nvidia-smi here; this script is for a machine with an NVIDIA GPU." >&2
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

make_venv() {
    [ -x "$1/bin/python" ] || "$python" -m venv "$1"
    "$1/bin/python" -m pip install -q --upgrade pip wheel
}
make_venv "$here/.venv-gpu"
"$here/.venv-gpu/bin/python" -m pip install -q -e "$root" "jax[cuda12]==0.10.2"
make_venv "$here/.venv-peers-gpu"
"$here/.venv-peers-gpu/bin/python" -m pip install -q "keras==3.15.*" "jax[cuda12]==0.10.2" \
    "tensorflow[and-cuda]==2.21.*" torch numpy

echo "devices:"
"$here/.venv-gpu/bin/python" -c "import jax; print('  kilnet / jax:', jax.devices())"
"$here/.venv-peers-gpu/bin/python" -c "import torch; print('  torch:', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
TF_CPP_MIN_LOG_LEVEL=2 "$here/.venv-peers-gpu/bin/python" -c "import tensorflow as tf; print('  tensorflow:', tf.config.list_physical_devices('GPU'))"

export KILNET_BENCH_PYTHON="$here/.venv-gpu/bin/python"
export KILNET_BENCH_PEERS_PYTHON="$here/.venv-peers-gpu/bin/python"
"$KILNET_BENCH_PYTHON" "$here/bench.py" --workloads mlp,cnn,resnet,lstm,transformer \
    --repeats "${REPEATS:-3}" --check "$@"
