"""Metrics as per-sample values: the compiled step sums them over real samples, so every
reported metric is an exact mean over the epoch's samples (not a mean of batch means).

Each metric also has Keras's stateless interface (`variables`, `stateless_update_state`,
`stateless_result`), which a custom `train_step` uses inside the compiled step, and the eager
`update_state` / `result` / `reset_state`. Its state is (weighted total, weight count).
"""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import _scope
from kilnet import losses as losses_lib


class Metric:
    """A metric is a function of (y_true, y_pred) giving one value per sample.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.SparseCategoricalAccuracy()
        >>> m.update_state(np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]))
        >>> float(m.result())
        0.5
    """

    kind = "metric"

    def __init__(self, name: str | None = None):
        self.name = name or self.kind
        self._state = None

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    # -- Keras's stateless interface (inside a custom train_step) -----------------------------
    @property
    def variables(self) -> list:
        """The metric's state as arrays: [weighted total, weight count], both zero."""
        return [jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)]

    def stateless_update_state(self, metric_variables, y_true, y_pred, sample_weight=None):
        """The state after adding a batch. Without sample_weight, the padding rows of a last
        partial batch (kilnet's sample mask) get weight 0."""
        values = losses_lib.per_sample_mean(self.per_sample(y_true, y_pred))
        return _accumulate(metric_variables, values, sample_weight)

    def stateless_result(self, metric_variables):
        total, count = metric_variables
        return jnp.where(count > 0, total / jnp.maximum(count, 1e-30), 0.0)

    # -- Keras's eager interface -------------------------------------------------------------------
    def update_state(self, *args, **kwargs) -> None:
        self._state = self.stateless_update_state(self._state or self.variables, *args, **kwargs)

    def result(self):
        return self.stateless_result(self._state or self.variables)

    def reset_state(self) -> None:
        self._state = None

    def get_config(self):
        return {"name": self.name}

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class SparseCategoricalAccuracy(Metric):
    kind = "sparse_categorical_accuracy"

    def per_sample(self, y_true, y_pred):
        labels = losses_lib.sparse_labels(y_true, y_pred)
        return (jnp.argmax(y_pred, axis=-1) == labels).astype(jnp.float32)


class CategoricalAccuracy(Metric):
    kind = "categorical_accuracy"

    def per_sample(self, y_true, y_pred):
        return (jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)).astype(jnp.float32)


class BinaryAccuracy(Metric):
    kind = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        super().__init__(name)
        self.threshold = float(threshold)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}

    def per_sample(self, y_true, y_pred):
        y_true = losses_lib.match_rank(y_true, y_pred)
        hits = (y_pred > self.threshold) == (y_true > 0.5)
        return jnp.mean(hits.astype(jnp.float32), axis=-1)


class TopKCategoricalAccuracy(Metric):
    kind = "top_k_categorical_accuracy"

    def __init__(self, k=5, name=None):
        super().__init__(name)
        self.k = int(k)

    def get_config(self):
        return {"name": self.name, "k": self.k}

    def per_sample(self, y_true, y_pred):
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1]:
            labels = jnp.argmax(y_true, axis=-1)
        else:
            labels = losses_lib.sparse_labels(y_true, y_pred)
        true_score = jnp.take_along_axis(y_pred, labels[..., None], axis=-1)
        # In the top k when fewer than k classes score strictly higher.
        higher = jnp.sum(y_pred > true_score, axis=-1)
        return (higher < self.k).astype(jnp.float32)


class MeanSquaredError(Metric):
    kind = "mean_squared_error"

    def per_sample(self, y_true, y_pred):
        return losses_lib.MeanSquaredError()(y_true, y_pred)


class MeanAbsoluteError(Metric):
    kind = "mean_absolute_error"

    def per_sample(self, y_true, y_pred):
        return losses_lib.MeanAbsoluteError()(y_true, y_pred)


class Mean(Metric):
    """The (weighted) mean of the values it is given, as keras.metrics.Mean: a loss tracker in
    a custom train_step (`self.loss_tracker = kilnet.metrics.Mean(name="loss")`).

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.Mean()
        >>> m.update_state(2.0)
        >>> m.update_state(4.0)
        >>> float(m.result())
        3.0
    """

    kind = "mean"

    def stateless_update_state(self, metric_variables, values, sample_weight=None):
        values = jnp.asarray(values, jnp.float32)
        if values.ndim == 0:  # a scalar, e.g. a batch's loss: one value
            total, count = metric_variables
            return [total + values, count + 1.0]
        return _accumulate(metric_variables, losses_lib.per_sample_mean(values), sample_weight)


def _accumulate(metric_variables, values, sample_weight):
    total, count = metric_variables
    if sample_weight is None:
        mask = _scope.sample_mask()
        weight = (jnp.ones_like(values) if mask is None or mask.shape != values.shape
                  else mask.astype(jnp.float32))
    else:
        weight = jnp.broadcast_to(jnp.asarray(sample_weight, jnp.float32).reshape(
            values.shape[:1] + (1,) * (values.ndim - 1)), values.shape)
    return [total + jnp.sum(values * weight), count + jnp.sum(weight)]


METRIC_TYPES = {cls.__name__: cls for cls in (
    SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy, TopKCategoricalAccuracy,
    MeanSquaredError, MeanAbsoluteError)}

_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
}


def _accuracy_for(loss, label_shape, output_shape) -> type[Metric]:
    """"accuracy" from the loss when it tells, else from the label and output shapes by Keras 3's
    rule (keras/src/trainers/compile_utils.py, is_binary_or_sparse_categorical).

    label_shape includes the batch axis; output_shape does not (model.output_shape)."""
    by_loss = {
        losses_lib.SparseCategoricalCrossentropy: SparseCategoricalAccuracy,
        losses_lib.CategoricalCrossentropy: CategoricalAccuracy,
        losses_lib.BinaryCrossentropy: BinaryAccuracy,
    }
    if type(loss) in by_loss:
        return by_loss[type(loss)]
    if output_shape and output_shape[-1] == 1:
        return BinaryAccuracy
    if label_shape is not None and output_shape:
        sparse = (len(label_shape) < len(output_shape) + 1
                  or (label_shape[-1] == 1 and output_shape[-1] > 1))
        return SparseCategoricalAccuracy if sparse else CategoricalAccuracy
    return SparseCategoricalAccuracy


def get(identifier, *, loss=None, label_shape=None, output_shape=None) -> Metric:
    if isinstance(identifier, Metric):
        return identifier
    if identifier in ("accuracy", "acc"):
        return _accuracy_for(loss, label_shape, output_shape)(name=identifier)
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)
    raise ValueError(
        f"Unknown metric: expected 'accuracy' or one of {sorted(_BY_NAME)} or a "
        f"kilnet.metrics.Metric object. Received: metrics=[{identifier!r}]"
    )
