"""Shared test helpers: global-seed isolation and finite-difference gradient checks.

Tests stay tiny (a few dozen samples, a few epochs) so the whole suite runs in seconds on a
2-core machine; no test asserts a timing.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from kilnet import utils


@pytest.fixture(autouse=True)
def _isolate_global_seed():
    """kilnet.utils.set_random_seed sets process-wide state; restore it after each test."""
    saved = dict(utils._seed)
    yield
    utils._seed.clear()
    utils._seed.update(saved)


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
