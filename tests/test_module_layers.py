"""The package's layering (docs/architecture.md, "The modules, in the order data flows"):
`kilnet._kernels` imports nothing from ops, layers or models; `kilnet.ops` runs without
loading the layers, its convolutions included. Each check runs in a fresh interpreter so that
what the tests before it imported does not count."""

import json
import subprocess
import sys

import pytest

# One interpreter per test module imports what every check loads anyway and no part of kilnet
# (JAX, NumPy: most of a fresh interpreter's start), then forks a child per check: each child
# starts with no kilnet module loaded, as a fresh interpreter does, without paying JAX's import
# again (six checks took 1.1 CPU s each for it).
_FORKING_SERVER = """
import json, os, sys, traceback
import numpy, jax, jax.numpy
assert not [m for m in sys.modules if m.startswith("kilnet")]
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        try:
            exec(json.loads(line), {"__name__": "__main__"})
            answer = {"modules": [m for m in sys.modules if m.startswith("kilnet")]}
        except BaseException:
            answer = {"error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


@pytest.fixture(scope="module")
def fresh_interpreter():
    """loaded_after(code): the kilnet modules loaded after running `code` in an interpreter
    that had loaded none."""
    server = subprocess.Popen([sys.executable, "-c", _FORKING_SERVER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"

    def loaded_after(code: str) -> set[str]:
        server.stdin.write(json.dumps(code) + "\n")
        server.stdin.flush()
        answer = json.loads(server.stdout.readline())
        assert "error" not in answer, answer["error"]
        return set(answer["modules"])

    yield loaded_after
    server.stdin.close()
    server.wait(timeout=60)


def below(modules: set[str], package: str) -> set[str]:
    return {m for m in modules if m == package or m.startswith(package + ".")}


@pytest.mark.parametrize("module", ["conv", "conv_transpose", "onednn", "onednn_conv",
                                    "onednn_matmul", "onednn_batch_norm"])
def test_kernels_import_neither_ops_nor_layers(module, fresh_interpreter):
    modules = fresh_interpreter(f"import kilnet._kernels.{module}")
    assert f"kilnet._kernels.{module}" in modules
    for package in ("kilnet.ops", "kilnet.layers", "kilnet.models", "kilnet.optimizers"):
        assert not below(modules, package), (module, below(modules, package))


def test_ops_convolutions_run_without_the_layers(fresh_interpreter):
    modules = fresh_interpreter(
        "import numpy as np\n"
        "from kilnet import ops\n"
        "x = np.ones((1, 5, 5, 2), 'float32')\n"
        "assert ops.conv(x, np.ones((3, 3, 2, 4), 'float32'), padding='same').shape == (1, 5, 5, 4)\n"
        "assert ops.conv_transpose(x, np.ones((3, 3, 4, 2), 'float32'), strides=2,\n"
        "                          padding='same').shape == (1, 10, 10, 4)\n")
    assert "kilnet.ops.nn" in modules and "kilnet._kernels.conv" in modules
    assert not below(modules, "kilnet.layers"), below(modules, "kilnet.layers")


def test_models_import_nothing_of_the_training_layers_above_them():
    # models/ sits below compile_metrics, trainer and fit: what a model needs of them the
    # Trainer hands it (model.compiled), so no module of models/ imports them when loaded
    # (compile() and fit() load theirs when called)
    import ast
    import pathlib

    import kilnet

    above = {"kilnet.compile_metrics", "kilnet.trainer", "kilnet.fit"}
    found = []
    for path in sorted((pathlib.Path(kilnet.__file__).parent / "models").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [])
            found += [(path.name, name) for name in names if name in above]
    assert not found, found
