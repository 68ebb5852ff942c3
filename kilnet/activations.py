"""Activation functions by Keras name, resolved in one place."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def linear(x):
    return x


def relu(x):
    return jax.nn.relu(x)


def sigmoid(x):
    return jax.nn.sigmoid(x)


def tanh(x):
    return jnp.tanh(x)


def softmax(x):
    return jax.nn.softmax(x, axis=-1)


def gelu(x):
    # Keras's gelu defaults to approximate=False.
    return jax.nn.gelu(x, approximate=False)


def elu(x):
    return jax.nn.elu(x)


def selu(x):
    return jax.nn.selu(x)


def leaky_relu(x):
    # Keras's default negative slope is 0.2 (jax's is 0.01).
    return jax.nn.leaky_relu(x, negative_slope=0.2)


def softplus(x):
    return jax.nn.softplus(x)


def swish(x):
    return jax.nn.silu(x)


_BY_NAME: dict[str, Callable] = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "gelu": gelu,
    "elu": elu,
    "selu": selu,
    "leaky_relu": leaky_relu,
    "softplus": softplus,
    "swish": swish,
    "silu": swish,
}


def get(identifier) -> Callable:
    """Resolve an activation name (or None, or a known function) to the function."""
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise ValueError(
                f"Unknown activation: expected one of {sorted(_BY_NAME)}. "
                f"Received: activation={identifier!r}"
            )
        return _BY_NAME[identifier]
    if callable(identifier) and name_of(identifier) is not None:
        return identifier
    raise ValueError(
        "activation must be a name such as 'relu' or one of kilnet.activations' functions "
        "(model files store activations by name, so arbitrary callables are not accepted). "
        f"Received: activation={identifier!r}"
    )


def name_of(fn: Callable) -> str | None:
    """The registered name of an activation function, for configs and summaries."""
    for name, known in _BY_NAME.items():
        if known is fn:
            return name
    return None
