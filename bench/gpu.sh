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
#
# On a machine with no package index (an image that already has CUDA builds of JAX and
# PyTorch), name the interpreters instead and nothing is installed:
#
#   KILNET_BENCH_PYTHON=python3 bash bench/gpu.sh --workloads mlp,cnn
#
# (KILNET_BENCH_PEERS_PYTHON defaults to the same interpreter; kilnet is imported from this
# working tree, so that interpreter needs kilnet's dependencies but not kilnet itself.)
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
if [ -n "${KILNET_BENCH_PYTHON:-}" ]; then
    export KILNET_BENCH_PYTHON="$(command -v "$KILNET_BENCH_PYTHON")"
    export KILNET_BENCH_PEERS_PYTHON="${KILNET_BENCH_PEERS_PYTHON:-$KILNET_BENCH_PYTHON}"
    echo "installing nothing: kilnet runs on $KILNET_BENCH_PYTHON, the peers on $KILNET_BENCH_PEERS_PYTHON"
else
    make_venv "$here/.venv-gpu"
    "$here/.venv-gpu/bin/python" -m pip install -q -e "$root" "jax[cuda12]==0.10.2"
    make_venv "$here/.venv-peers-gpu"
    "$here/.venv-peers-gpu/bin/python" -m pip install -q "keras==3.15.*" "jax[cuda12]==0.10.2" \
        "tensorflow[and-cuda]==2.21.*" torch numpy
    export KILNET_BENCH_PYTHON="$here/.venv-gpu/bin/python"
    export KILNET_BENCH_PEERS_PYTHON="$here/.venv-peers-gpu/bin/python"
fi

echo "devices:"
# kilnet imported from this tree, and one step of training on the GPU: a broken environment
# stops here, before minutes of benchmarks.
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" "$KILNET_BENCH_PYTHON" -c "
import jax, numpy as np, kilnet
print('  kilnet', kilnet.__version__, '/ jax', jax.__version__, jax.devices())
model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(2, activation='softmax')])
model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')
model.fit(np.ones((64, 4), 'float32'), np.zeros(64, 'int32'), epochs=1, verbose=0)
print('  kilnet trains on', jax.default_backend())"
"$KILNET_BENCH_PEERS_PYTHON" -c "import torch; print('  torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')" \
    || echo "  torch: not importable (its rows will say skipped)"
TF_CPP_MIN_LOG_LEVEL=2 "$KILNET_BENCH_PEERS_PYTHON" -c "import tensorflow as tf; print('  tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))" \
    || echo "  tensorflow: not importable (its rows will say skipped)"

"$KILNET_BENCH_PYTHON" "$here/bench.py" --workloads mlp,cnn,resnet,lstm,transformer \
    --repeats "${REPEATS:-3}" --check "$@"
