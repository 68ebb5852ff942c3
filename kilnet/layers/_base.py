"""The Layer contract: a layer is a description; its arrays live in pytrees the model owns.

`init(rng, input_shape)` makes the parameters and non-trainable state (NumPy arrays, drawn from
the NumPy Generator `rng`) for an input of a given shape (batch axis excluded) and returns the
output shape. `apply(params, state, x, *,
training, key, mask)` is pure, so the whole training step can be traced by JAX.
"""

from __future__ import annotations

import re
from typing import Any

import jax.numpy as jnp

from kilnet import activations

Shape = tuple  # a shape without its batch axis, e.g. (28, 28)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("2_d", "2d")


class Layer:
    """Base class. Subclasses set `param_names`/`state_names` and implement `init`/`apply`."""

    param_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    # Constructor arguments saved in a config, beyond name/input_shape.
    config_keys: tuple[str, ...] = ()

    def __init__(self, *, name: str | None = None, input_shape=None, dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string. Received: name={name!r}")
        if dtype not in (None, "float32"):
            raise ValueError(
                f"Only float32 layers are supported for now. Received: dtype={dtype!r}"
            )
        self.name = name
        self.input_shape = _as_shape(input_shape, "input_shape") if input_shape is not None else None

    @property
    def default_name(self) -> str:
        return _snake_case(type(self).__name__)

    # -- what subclasses implement --------------------------------------------------------
    def init(self, rng, input_shape: Shape) -> tuple[dict, dict, Shape]:
        """Return (params, state, output_shape) for an input of `input_shape`."""
        return {}, {}, self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def apply(self, params, state, x, *, training=False, key=None, mask=None):
        """Return (y, new_state). `mask` marks real samples (1) against padding (0)."""
        raise NotImplementedError

    # -- configuration ----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        for key in self.config_keys:
            value = getattr(self, key)
            config[key] = list(value) if isinstance(value, tuple) else value
        return config

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.config_keys)
        return f"{type(self).__name__}({args})"


class ActivatedLayer(Layer):
    """A layer that ends with an activation, so a model can ask for its pre-activation.

    Losses computed from the logits are stable where the same loss on softmax/sigmoid
    outputs is not; the model uses `apply(..., logits=True)` on its last layer for that.
    """

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self._activation_fn = activations.get(activation)
        self.activation = activations.name_of(self._activation_fn)

    def pre_activation(self, params, state, x, *, training, key, mask):
        raise NotImplementedError

    def apply(self, params, state, x, *, training=False, key=None, mask=None, logits=False):
        z, state = self.pre_activation(params, state, x, training=training, key=key, mask=mask)
        return (z if logits else self._activation_fn(z)), state


def _as_shape(value, argument: str) -> Shape:
    if isinstance(value, int):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not all(isinstance(d, int) and d > 0 for d in shape) or not shape:
        raise ValueError(
            f"{argument} must be a tuple of positive integers without the batch axis, "
            f"e.g. {argument}=(28, 28). Received: {argument}={value!r}"
        )
    return shape


def as_pair(value, argument: str) -> tuple[int, int]:
    """Keras accepts `3` or `(3, 3)` for kernel sizes, strides and pool sizes."""
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(
            f"{argument} must be a positive integer or a pair of them. Received: {argument}={value!r}"
        )
    return pair


def check_padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
    return padding.lower()


def float32(x):
    return jnp.asarray(x, jnp.float32)
