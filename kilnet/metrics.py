"""Metrics as per-sample values: the compiled step sums them over real samples, so every
reported metric is an exact mean over the epoch's samples (not a mean of batch means).

Each metric also has Keras's stateless interface (`variables`, `stateless_update_state`,
`stateless_result`), which a custom `train_step` uses inside the compiled step, and the eager
`update_state` / `result` / `reset_state`. Its state is (weighted total, weight count).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

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
    stateful = False  # True: the compiled step keeps the metric's variables (confusion counts)

    def __init__(self, name: str | None = None):
        self.name = name or self.kind
        self._state = None

    def per_sample(self, y_true, y_pred):
        raise NotImplementedError

    # -- Keras's stateless interface (inside a custom train_step) -----------------------------
    @property
    def variables(self) -> list:
        """The metric's state as arrays: [weighted total, weight count], both zero."""
        return [jnp.zeros((), jnp.float32) for _ in range(2)]

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
        return losses_lib.mean_squared_error(y_true, y_pred)


class MeanAbsoluteError(Metric):
    kind = "mean_absolute_error"

    def per_sample(self, y_true, y_pred):
        return losses_lib.mean_absolute_error(y_true, y_pred)


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


# -- metrics with state: counts over the epoch, not means of per-sample values ----------------------
class _ConfusionMetric(Metric):
    """Confusion counts at thresholds (Keras's confusion metrics): the state is true positives,
    false positives, true negatives and false negatives per threshold, summed over the epoch's
    real samples (the compiled step updates it; the result is computed from the totals)."""

    stateful = True

    def __init__(self, thresholds, name=None):
        super().__init__(name)
        self.thresholds = np.asarray(thresholds, np.float32)

    @property
    def variables(self) -> list:
        # four distinct arrays: the training state is donated, and one buffer cannot be twice
        return [jnp.zeros(self.thresholds.shape, jnp.float32) for _ in range(4)]

    def stateless_update_state(self, metric_variables, y_true, y_pred, sample_weight=None):
        y_true = losses_lib.match_rank(y_true, y_pred)
        label = jnp.broadcast_to(y_true != 0, y_pred.shape)[..., None]
        predicted = y_pred[..., None] > jnp.asarray(self.thresholds)
        weight = _broadcast_weight(sample_weight, y_pred)[..., None]
        axes = tuple(range(y_pred.ndim))
        tp, fp, tn, fn = metric_variables

        def count(hit):
            return jnp.sum(jnp.where(hit, weight, 0.0), axis=axes)

        return [tp + count(label & predicted), fp + count(~label & predicted),
                tn + count(~label & ~predicted), fn + count(label & ~predicted)]


def _broadcast_weight(sample_weight, y_pred):
    """Per-entry weights of y_pred from per-sample (or per-step) weights; without any, the
    scope's sample mask (padding rows of a last batch weigh 0)."""
    if sample_weight is None:
        mask = _scope.sample_mask()
        if mask is None:
            return jnp.ones(y_pred.shape, jnp.float32)
        sample_weight = mask
    weight = jnp.asarray(sample_weight, jnp.float32)
    weight = weight.reshape(weight.shape + (1,) * (y_pred.ndim - weight.ndim))
    return jnp.broadcast_to(weight, y_pred.shape)


def _divide(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


class _ThresholdMetric(_ConfusionMetric):
    """A ratio of confusion counts at given thresholds (0.5 by default): one value for one
    threshold, one per threshold otherwise."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        _refuse_options(type(self).__name__, top_k=top_k, class_id=class_id)
        super().__init__(_thresholds(thresholds), name)

    def get_config(self):
        return {"name": self.name, "thresholds": self.thresholds.tolist()}

    def ratio(self, tp, fp, tn, fn):
        raise NotImplementedError

    def stateless_result(self, metric_variables):
        result = self.ratio(*metric_variables)
        return result[0] if result.shape == (1,) else result


class Precision(_ThresholdMetric):
    """True positives / predicted positives, over the epoch, as keras.metrics.Precision.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.Precision()
        >>> m.update_state(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.1]))
        >>> float(m.result())
        0.5
    """

    kind = "precision"

    def ratio(self, tp, fp, tn, fn):
        return _divide(tp, tp + fp)


class Recall(_ThresholdMetric):
    """True positives / actual positives, over the epoch, as keras.metrics.Recall.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.Recall()
        >>> m.update_state(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.1]))
        >>> float(m.result())
        0.5
    """

    kind = "recall"

    def ratio(self, tp, fp, tn, fn):
        return _divide(tp, tp + fn)


class AUC(_ConfusionMetric):
    """Area under the ROC or PR curve from confusion counts at num_thresholds thresholds, as
    keras.metrics.AUC (its thresholds, its interpolation rules).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.AUC()
        >>> m.update_state(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        >>> round(float(m.result()), 3)
        0.75
    """

    kind = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        _refuse_options("AUC", multi_label=multi_label or None, num_labels=num_labels,
                        label_weights=label_weights)
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"curve must be 'ROC' or 'PR'. Received: curve={curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError("summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring'. Received: summation_method={summation_method!r}")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
        else:
            if not isinstance(num_thresholds, int) or num_thresholds < 2:
                raise ValueError("num_thresholds must be an integer > 1. Received: "
                                 f"num_thresholds={num_thresholds!r}")
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        eps = losses_lib.EPSILON
        super().__init__([0.0 - eps] + inner + [1.0 + eps], name)
        self.num_thresholds = len(inner) + 2
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "from_logits": self.from_logits}

    def stateless_update_state(self, metric_variables, y_true, y_pred, sample_weight=None):
        if self.from_logits:
            y_pred = jnp.reciprocal(1.0 + jnp.exp(-y_pred))
        return super().stateless_update_state(metric_variables, y_true, y_pred, sample_weight)

    def stateless_result(self, metric_variables):
        tp, fp, tn, fn = (jnp.asarray(v) for v in metric_variables)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _divide(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide(fp, fp + tn), recall
        else:
            x, y = recall, _divide(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = jnp.minimum(y[:-1], y[1:])
        else:
            heights = jnp.maximum(y[:-1], y[1:])
        return jnp.sum((x[:-1] - x[1:]) * heights)


def _interpolated_pr_auc(tp, fp, fn):
    """The PR area with precision interpolated between thresholds as Keras does (Davis &
    Goadrich's closed form: precision varies as TP over predicted positives, both linear)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _divide(dtp, jnp.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    ratio = jnp.where((p[:-1] > 0) & (p[1:] > 0), _divide(p[:-1], jnp.maximum(p[1:], 0.0)),
                      1.0)
    increments = _divide(slope * (dtp + intercept * jnp.log(ratio)),
                         jnp.maximum(tp[1:] + fn[1:], 0.0))
    return jnp.sum(increments)


def _thresholds(thresholds):
    if thresholds is None:
        return [0.5]
    values = [thresholds] if isinstance(thresholds, (int, float)) else list(thresholds)
    if not values or not all(isinstance(t, (int, float)) and 0 <= t <= 1 for t in values):
        raise ValueError("thresholds must be numbers in [0, 1]. Received: "
                         f"thresholds={thresholds!r}")
    return [float(t) for t in values]


def _refuse_options(metric, **options):
    given = {k: v for k, v in options.items() if v is not None}
    if given:
        raise ValueError(f"{metric}: {sorted(given)} not supported yet. Received: "
                         + ", ".join(f"{k}={v!r}" for k, v in given.items()))


METRIC_TYPES = {cls.__name__: cls for cls in (
    SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy, TopKCategoricalAccuracy,
    MeanSquaredError, MeanAbsoluteError, Precision, Recall, AUC)}

_BY_NAME = {
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "binary_accuracy": BinaryAccuracy,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "precision": Precision,
    "recall": Recall,
    "auc": AUC,
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
