"""Weight initializers with Keras's names and formulas (fan computed as Keras does)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _fans(shape):
    # Keras: dense kernels (in, out); conv kernels (*spatial, in, out) with receptive field.
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def zeros(key, shape, dtype=jnp.float32):
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


def glorot_uniform(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def glorot_normal(key, shape, dtype=jnp.float32):
    fan_in, fan_out = _fans(shape)
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / 0.87962566103423978


def he_uniform(key, shape, dtype=jnp.float32):
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return jax.random.uniform(key, shape, dtype, -limit, limit)


def he_normal(key, shape, dtype=jnp.float32):
    fan_in, _ = _fans(shape)
    std = math.sqrt(2.0 / fan_in)
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype) / 0.87962566103423978


_BY_NAME = {
    "zeros": zeros,
    "ones": ones,
    "glorot_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
}


def get(name: str):
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"Unknown initializer: expected one of {sorted(_BY_NAME)}. Received: {name!r}"
        )
    return _BY_NAME[name]
