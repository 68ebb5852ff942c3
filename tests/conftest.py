"""Shared test helpers: global-seed and data-generator isolation, finite-difference gradient
checks.

Tests stay tiny (a few dozen samples, a few epochs) so the whole suite runs in seconds on a
2-core machine; no test asserts a timing.
"""

from __future__ import annotations

import os
import zlib


def _compile_tests_cheaply():
    """Most of the suite's time is XLA compiling tiny programs once each; LLVM's optimization
    passes are most of that and buy nothing on a few dozen samples. Level 0 in the tests only
    (users' programs keep XLA's default): measured on a 2-core CPU, 15 of the test files
    (434 tests, two workers) took 207 CPU seconds against 247 and 262, and the numbers
    compared with Keras (which runs under the same flags in the same process) stay within
    the tests' tolerances.
    KILNET_TEST_XLA_OPTIMIZE=1 keeps XLA's default level."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("KILNET_TEST_XLA_OPTIMIZE", "") not in ("", "0") \
            or "xla_backend_optimization_level" in flags:
        return
    # Set before JAX makes its CPU client (subprocesses the tests start inherit it).
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


_compile_tests_cheaply()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from kilnet import utils  # noqa: E402


# KILNET_TEST_SEED=N draws every test's seeds differently (default 0): running the suite with a
# few values shows which tests pass only for some data or weights.
_SEED_SALT = os.environ.get("KILNET_TEST_SEED", "0")


def _test_seed(request, purpose: str) -> int:
    """A seed fixed by the test's name (and KILNET_TEST_SEED), the same on every run."""
    return zlib.crc32(f"{_SEED_SALT}:{purpose}:{request.node.nodeid}".encode()) % 2**31


@pytest.fixture(autouse=True)
def _isolate_global_seed(request):
    """Every test starts from its own fixed global seed (from its name), so weights built
    without an explicit seed are the same on every run instead of coming from the OS (a
    training test failed in CI on one unlucky draw); kilnet.utils.set_random_seed sets
    process-wide state, restored after each test."""
    saved = dict(utils._seed)
    utils.set_random_seed(_test_seed(request, "global"))
    yield
    utils._seed.clear()
    utils._seed.update(saved)


@pytest.fixture(autouse=True)
def _fresh_module_generators(request):
    """A test module's shared NumPy generator (`RNG` or `rs`) starts afresh for every test:
    under pytest-xdist, which tests ran before in the same worker varies from run to run, and
    with it the data a shared generator hands out (a training test failed in CI that way)."""
    module = request.module
    for name in ("RNG", "rs"):
        generator = getattr(module, name, None)
        if isinstance(generator, np.random.Generator):
            setattr(module, name, np.random.default_rng(_test_seed(request, "module")))
        elif isinstance(generator, np.random.RandomState):
            setattr(module, name, np.random.RandomState(_test_seed(request, "module")))
    yield


@pytest.fixture(autouse=True)
def _keras_clear_session_without_full_collection():
    """Keras's clear_session() (tests call it to number Keras's default names afresh) runs a
    full gc.collect() by default, whose cost grows with everything a test worker holds: 0.35
    CPU seconds a call in a fresh process, several seconds late in a whole-suite worker, and
    tests/test_compute_output_shape_batched.py calls it 329 times. The tests only need its
    reset of Keras's global state, so free_memory defaults to False here (Python's collector
    still runs as usual). Keras is not imported for this: tests without it stay without it."""
    import sys
    global_state = sys.modules.get("keras.src.backend.common.global_state")
    if global_state is not None and global_state.clear_session.__defaults__ != (False,):
        global_state.clear_session.__defaults__ = (False,)
    yield


@pytest.fixture(scope="module", autouse=True)
def _drop_compiled_programs_after_each_module():
    """JAX's in-memory caches keep every program a test module traced and compiled (and its
    constants) after the module's models are gone, so a test worker grew to 4-6 GB over the
    suite. Another module seldom runs the same programs, so dropping them when a module ends
    costs no measurable compile time, and the worker runs faster on fewer objects: measured
    on a 2-core CPU, one process running every tenth test file (24 files, 1,060 tests) took
    108 CPU seconds instead of 130 and peaked at 2.7 GB resident instead of 4.3 GB, with
    0.61 M objects for Python's collector at the end instead of 1.29 M."""
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def made_once_per_run(tmp_path_factory):
    """made_once_per_run(name, make) -> the path of a file that make(path) writes, made once
    in a test run however many xdist workers ask for it. A module-scoped fixture is
    built by every worker given some of the module's tests, so a costly one (a subprocess run
    whose results the tests compare) was built twice; with this the first worker to ask makes
    the file under a lock and the others read it. A fixture that only reads the file gets the
    same results either way."""
    import fcntl

    xdist_worker = "PYTEST_XDIST_WORKER" in os.environ
    # under xdist, the folder above each worker's base folder is the run's own (pytest-N)
    folder = tmp_path_factory.getbasetemp()
    folder = folder.parent if xdist_worker else folder

    def made(name, make):
        path = folder / name
        with open(folder / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                try:
                    make(path)
                except BaseException:
                    path.unlink(missing_ok=True)   # a half-written file is not a result
                    raise
        return path
    return made


@pytest.fixture
def keras_draws_on_host(monkeypatch):
    """Keras's layers and models made in the test draw their starting weights with NumPy: on
    JAX each of Keras's draws of a new shape is its own XLA program (0.2-0.4 s to compile on a
    2-core CPU; the applications tests' reference models took 355 -> 168 CPU seconds with it).
    For tests whose Keras twins only need random weights, or get kilnet's (set_weights, weight
    files): `pytestmark = pytest.mark.usefixtures("keras_draws_on_host")`."""
    import keras
    from keras.src.backend.jax import random as keras_random

    rng = np.random.default_rng(0)

    def on_device(values, dtype):
        return keras.ops.convert_to_tensor(values, dtype or keras.config.floatx())

    def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        return on_device(rng.uniform(minval, maxval, shape), dtype)

    def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        return on_device(rng.normal(mean, stddev, shape), dtype)

    def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        values = rng.standard_normal(shape)
        outside = np.abs(values) > 2.0           # Keras truncates at two deviations
        while outside.any():
            values[outside] = rng.standard_normal(int(outside.sum()))
            outside = np.abs(values) > 2.0
        return on_device(values * stddev + mean, dtype)

    def on_host_when_concrete(name, draw):
        keras_draw = getattr(keras_random, name)

        def either(shape, *args, **kwargs):
            # Draws inside a trace (a symbolic shape, Keras's compiled fit) stay Keras's own:
            # a host draw there would be one constant for every step.
            concrete = all(isinstance(d, (int, np.integer)) for d in tuple(shape))
            traced = isinstance(jax.numpy.zeros(()), jax.core.Tracer)
            return (draw if concrete and not traced else keras_draw)(shape, *args, **kwargs)
        return either

    for name, draw in (("uniform", uniform), ("normal", normal),
                       ("truncated_normal", truncated_normal)):
        monkeypatch.setattr(keras_random, name, on_host_when_concrete(name, draw))


def numeric_grad(f, args, index, eps=1e-6):
    """Central finite differences of a scalar f(*args) with respect to args[index]."""
    args = [np.array(a, dtype=np.float64) for a in args]
    x = args[index]
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = float(f(*args))
        flat[i] = old - eps
        minus = float(f(*args))
        flat[i] = old
        out[i] = (plus - minus) / (2 * eps)
    return grad


def check_grad(f, *args, eps=1e-6, rtol=1e-5, atol=1e-7):
    """jax.grad of a scalar f(*args) against central differences for every argument, in
    float64. Two compilations per call (f and its gradient), whatever the number of args."""
    with jax.enable_x64(True):
        args = [np.asarray(a, np.float64) for a in args]
        fj = jax.jit(f)
        analytic = jax.jit(jax.grad(f, argnums=tuple(range(len(args)))))(*args)
        for index, grad in enumerate(analytic):
            numeric = numeric_grad(fj, args, index, eps)
            np.testing.assert_allclose(np.asarray(grad), numeric, rtol=rtol, atol=atol,
                                       err_msg=f"gradient with respect to argument {index}")


_USERS_LEVEL_OUTCOMES: dict = {}


@pytest.fixture
def at_users_xla_level(request, tmp_path_factory):
    """For a test whose assertion holds for the programs users get, compiled at XLA's default
    optimization level (bit-equality of kilnet's native Adam pass with Optax's optimized XLA
    code): when this process compiles at level 0 (_compile_tests_cheaply), the test's module
    runs once more in a subprocess at the default level, and the fixture asserts that this
    test passed there; it returns True, and the test returns without repeating itself at
    level 0. In a process at the default level it returns False and the test runs here.

        def test_bits(at_users_xla_level):
            if at_users_xla_level:
                return
            ...
    """
    if "xla_backend_optimization_level=0" not in os.environ.get("XLA_FLAGS", "") \
            or os.environ.get("KILNET_TEST_XLA_OPTIMIZE", "") not in ("", "0"):
        return False   # already at the default level, or that subprocess itself
    path = str(request.path)
    if path not in _USERS_LEVEL_OUTCOMES:
        _USERS_LEVEL_OUTCOMES[path] = _run_at_default_level(path, tmp_path_factory)
    outcomes = _USERS_LEVEL_OUTCOMES[path]
    name = request.node.name
    assert name in outcomes, f"{name} did not run at XLA's default level: {sorted(outcomes)}"
    assert outcomes[name] is None, f"at XLA's default level: {outcomes[name]}"
    return True


def _run_at_default_level(path, tmp_path_factory) -> dict:
    """{test name: None if it passed, else its failure text} for the module at `path`, run in
    a subprocess with XLA's default optimization level."""
    import subprocess
    import sys
    import xml.etree.ElementTree as ElementTree

    report = tmp_path_factory.mktemp("users_level") / "report.xml"
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "")
    env = dict(os.environ, XLA_FLAGS=flags.strip(), KILNET_TEST_XLA_OPTIMIZE="1")
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p",
                    "no:xdist", "-q", "-W", "ignore", f"--junitxml={report}", path],
                   env=env, capture_output=True, timeout=600)
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcomes[case.get("name")] = None if failed is None else failed.get("message", "failed")
    return outcomes
