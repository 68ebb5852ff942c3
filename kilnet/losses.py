"""Losses with Keras's names and formulas. Each returns one value per sample; the compiled
step averages them over the real (unpadded) samples of the batch, as Keras does."""

from __future__ import annotations

import jax
import jax.numpy as jnp

EPSILON = 1e-7  # Keras's backend epsilon, used to clip probabilities


def per_sample_mean(values):
    """One value per sample: outputs with extra axes (e.g. per time step) are averaged, as
    Keras's losses reduce them."""
    return values if values.ndim == 1 else values.reshape(values.shape[0], -1).mean(axis=1)


def match_rank(y_true, y_pred):  # also used by kilnet.metrics
    """Keras squeezes or expands labels to the prediction's rank for elementwise losses."""
    if y_true.ndim == y_pred.ndim - 1:
        return y_true[..., None]
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return y_true[..., 0]
    return y_true


def sparse_labels(y_true, y_pred):
    """Integer class ids of shape (N,), from (N,) or (N, 1) labels."""
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return y_true.astype(jnp.int32)


class Loss:
    name = "loss"
    # The activation whose pre-activation this loss can consume directly (from_logits=True).
    logits_of: str | None = None

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def with_logits(self):
        """The same loss, computed from logits (for a model whose last layer is softmax etc.)."""
        return type(self)(**{**self.get_config(), "from_logits": True})

    def get_config(self):
        return {"from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    logits_of = "softmax"

    def __call__(self, y_true, y_pred):
        labels = sparse_labels(y_true, y_pred)[..., None]
        if self.from_logits:
            log_probs = jax.nn.log_softmax(y_pred, axis=-1)
            return -jnp.take_along_axis(log_probs, labels, axis=-1)[..., 0]
        probs = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
        picked = jnp.take_along_axis(probs, labels, axis=-1)[..., 0]
        return -jnp.log(jnp.clip(picked, EPSILON, 1.0 - EPSILON))


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    logits_of = "softmax"

    def __call__(self, y_true, y_pred):
        if self.from_logits:
            return -jnp.sum(y_true * jax.nn.log_softmax(y_pred, axis=-1), axis=-1)
        probs = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
        return -jnp.sum(y_true * jnp.log(jnp.clip(probs, EPSILON, 1.0 - EPSILON)), axis=-1)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    logits_of = "sigmoid"

    def __call__(self, y_true, y_pred):
        y_true = match_rank(y_true, y_pred)
        if self.from_logits:
            # max(z, 0) - z * y + log(1 + exp(-|z|)): stable for any logit.
            values = jnp.maximum(y_pred, 0) - y_pred * y_true + jnp.log1p(jnp.exp(-jnp.abs(y_pred)))
        else:
            p = jnp.clip(y_pred, EPSILON, 1.0 - EPSILON)
            values = -(y_true * jnp.log(p) + (1 - y_true) * jnp.log(1 - p))
        return jnp.mean(values, axis=-1)


class _Elementwise(Loss):
    """A regression loss: mean over the last axis of an elementwise error."""

    def __init__(self):
        super().__init__(from_logits=False)

    def get_config(self):
        return {}

    def with_logits(self):
        return self

    def __call__(self, y_true, y_pred):
        y_true = match_rank(y_true, y_pred)
        return jnp.mean(self.error(y_true.astype(y_pred.dtype), y_pred), axis=-1)


class MeanSquaredError(_Elementwise):
    name = "mean_squared_error"

    def error(self, y_true, y_pred):
        return jnp.square(y_pred - y_true)


class MeanAbsoluteError(_Elementwise):
    name = "mean_absolute_error"

    def error(self, y_true, y_pred):
        return jnp.abs(y_pred - y_true)


class Huber(_Elementwise):
    name = "huber"

    def __init__(self, delta=1.0):
        super().__init__()
        self.delta = float(delta)

    def get_config(self):
        return {"delta": self.delta}

    def error(self, y_true, y_pred):
        err = jnp.abs(y_pred - y_true)
        quadratic = jnp.minimum(err, self.delta)
        return 0.5 * jnp.square(quadratic) + self.delta * (err - quadratic)


LOSS_TYPES = {cls.__name__: cls for cls in (
    SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
    MeanSquaredError, MeanAbsoluteError, Huber)}

_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "huber": Huber,
}


def get(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    raise ValueError(
        f"Unknown loss: expected one of {sorted(_BY_NAME)} or a kilnet.losses.Loss object. "
        f"Received: loss={identifier!r}"
    )
