"""Weight initializers with Keras's names and formulas (fan computed as Keras does).

They draw from a NumPy Generator, not jax.random: building the seed MLP with eager jax.random
ops cost 1.9 s of op-by-op XLA compilation on our 2-core CPU, against milliseconds here.
"""

from __future__ import annotations

import math

import numpy as np


def _fans(shape):
    # Keras: dense kernels (in, out); conv kernels (*spatial, in, out) with receptive field.
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(rng, shape):
    return np.zeros(shape, np.float32)


def ones(rng, shape):
    return np.ones(shape, np.float32)


def _truncated_normal(rng, shape, std):
    """Normal(0, std) redrawn outside two standard deviations, as Keras's truncated normal
    (0.8796... is the std of a unit normal truncated at +-2)."""
    scale = std / 0.87962566103423978
    values = rng.standard_normal(shape)
    bad = np.abs(values) > 2
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(values) > 2
    return (values * scale).astype(np.float32)


def glorot_uniform(rng, shape):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def glorot_normal(rng, shape):
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, shape, math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(rng, shape):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, shape).astype(np.float32)


def he_normal(rng, shape):
    fan_in, _ = _fans(shape)
    return _truncated_normal(rng, shape, math.sqrt(2.0 / fan_in))


def random_uniform(rng, shape):
    """Keras's RandomUniform() defaults: U(-0.05, 0.05) (Embedding's "uniform")."""
    return rng.uniform(-0.05, 0.05, shape).astype(np.float32)


def random_normal(rng, shape):
    """Keras's RandomNormal() defaults: N(0, 0.05), not truncated."""
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)


def orthogonal(rng, shape):
    """Keras's Orthogonal() (gain 1): the Q of a normal matrix's QR, its columns' signs fixed
    by R's diagonal (so Q is uniform over orthogonal matrices); RNNs' recurrent kernels."""
    if len(shape) < 2:
        raise ValueError(f"The orthogonal initializer needs a shape of rank 2 or more. "
                         f"Received: shape={tuple(shape)}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return np.ascontiguousarray(q.reshape(shape), dtype=np.float32)


_BY_NAME = {
    "zeros": zeros,
    "ones": ones,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "uniform": random_uniform,
    "random_uniform": random_uniform,
    "normal": random_normal,
    "random_normal": random_normal,
    "orthogonal": orthogonal,
}


def get(name: str):
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"Unknown initializer: expected one of {sorted(_BY_NAME)}. Received: {name!r}"
        )
    return _BY_NAME[name]
