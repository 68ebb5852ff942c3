"""What the oneDNN tests share: a layer's value and gradients with oneDNN's kernels and with
XLA's (KILNET_ONEDNN=0's flag), compared to a 16-bit precision."""

import jax
import numpy as np

from kilnet._kernels import onednn


def assert_matches_xla(run, program, params, x, monkeypatch, target, bits=6):
    """`jax.value_and_grad(run)(params, x)` with oneDNN, then with oneDNN switched off (then
    `program()`, the traced text, calls no `target`): the gradients come as float32, and each
    result equals XLA's to 2**-bits of its largest value."""
    with_onednn = jax.value_and_grad(run)(params, x)
    monkeypatch.setattr(onednn, "ENABLED", False)
    assert target not in program()
    without = jax.value_and_grad(run)(params, x)
    assert all(g.dtype == np.float32 for g in jax.tree.leaves(with_onednn[1]))
    for a, b in zip(jax.tree.leaves(with_onednn), jax.tree.leaves(without)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        np.testing.assert_allclose(a, b, rtol=0, atol=2.0 ** -bits * np.abs(b).max())
