"""Confusion metrics: counts of true/false positives/negatives at thresholds, summed over
everything seen (the compiled loop carries them; padding rows weigh 0), and the values Keras
computes from them: TruePositives..., Precision, Recall, AUC, and the "X at Y" metrics
(PrecisionAtRecall, SensitivityAtSpecificity, ...)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import config
from kilnet import losses as losses_lib
from kilnet.metrics._base import Metric, default_weight, divide_no_nan

NEG_INF = -1e10  # Keras's threshold with top_k: every kept prediction is positive


def _entry_weights(sample_weight, y_pred):
    """Per-entry weights of y_pred from per-sample (or per-step) weights; without any, the
    scope's sample mask (padding rows weigh 0), else ones."""
    weight = default_weight(sample_weight, y_pred.shape[0] if y_pred.ndim else 1)
    if weight is None:
        return jnp.ones(y_pred.shape, jnp.float32)
    if weight.ndim > y_pred.ndim and weight.shape[-1] == 1:
        weight = weight[..., 0]
    weight = weight.reshape(weight.shape + (1,) * (y_pred.ndim - weight.ndim))
    return jnp.broadcast_to(weight, y_pred.shape)


def _filter_top_k(y_pred, k):
    """The k largest predictions of each row kept, the others set to NEG_INF (as Keras)."""
    _, index = jax.lax.top_k(y_pred, k)
    kept = jnp.sum(jax.nn.one_hot(index, y_pred.shape[-1], dtype=y_pred.dtype), axis=-2)
    return y_pred * kept + NEG_INF * (1.0 - kept)


def confusion_counts(y_true, y_pred, thresholds, sample_weight=None, top_k=None,
                     class_id=None, multi_label=False, label_weights=None):
    """(tp, fp, tn, fn) of one batch at each threshold (shape (thresholds,), or (thresholds,
    labels) with multi_label), as Keras's update_confusion_matrix_variables counts them:
    a label is positive when non-zero, a prediction when it exceeds the threshold.

    Example:
        >>> import numpy as np
        >>> tp, fp, tn, fn = confusion_counts(np.array([1, 0, 1]), np.array([0.9, 0.8, 0.1]),
        ...                                   [0.5])
        >>> [float(c[0]) for c in (tp, fp, tn, fn)]
        [1.0, 1.0, 0.0, 1.0]
    """
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_true = jnp.asarray(y_true)
    y_pred, y_true = losses_lib.squeeze_or_expand(y_pred, y_true)
    classes = y_pred.shape[-1] if y_pred.ndim else 1
    weight = _entry_weights(sample_weight, y_pred)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim < 2:
            raise ValueError("class_id needs y_pred of shape (batch, classes). Received: "
                             f"y_pred.shape={y_pred.shape}")
        if not 0 <= class_id < classes:
            raise ValueError(f"class_id must be in [0, {classes}). Received: "
                             f"class_id={class_id}")
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
        weight = weight[..., class_id, None]
    if label_weights is not None and not multi_label:
        weight = weight * jnp.broadcast_to(jnp.asarray(label_weights, jnp.float32),
                                           y_pred.shape)
    label = jnp.broadcast_to(y_true != 0, y_pred.shape)
    t = jnp.asarray(thresholds, jnp.float32)
    if multi_label:  # (thresholds, batch, labels), summed over the batch
        predicted = y_pred[None] > t[:, None, None]
        label, weight, axis = label[None], weight[None], 1
    else:  # every entry is one prediction
        predicted = y_pred.reshape(1, -1) > t[:, None]
        label, weight, axis = label.reshape(1, -1), weight.reshape(1, -1), 1

    def count(hit):
        return jnp.sum(jnp.where(hit, weight, 0.0), axis=axis)

    return (count(label & predicted), count(~label & predicted),
            count(~label & ~predicted), count(label & ~predicted))


def _parse_thresholds(thresholds, default):
    if thresholds is None:
        return [default]
    values = [thresholds] if isinstance(thresholds, (int, float)) else list(thresholds)
    if not values or not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                             and 0 <= t <= 1 for t in values):
        raise ValueError("thresholds must be a number or a list of numbers in [0, 1]. "
                         f"Received: thresholds={thresholds!r}")
    return [float(t) for t in values]


def _check_optional_int(name, value, minimum=0):
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < minimum):
        raise ValueError(f"{name} must be None or an integer >= {minimum}. Received: "
                         f"{name}={value!r}")
    return value


class _CountsMetric(Metric):
    """Some of the four confusion counts at thresholds, as variables named as in Keras."""

    _counts = ("true_positives", "false_positives", "true_negatives", "false_negatives")

    def _make_counts(self, shape):
        for name in self._counts:
            setattr(self, name, self.add_variable(shape=shape, initializer="zeros", name=name))

    def _add_counts(self, y_true, y_pred, sample_weight, **options):
        tp, fp, tn, fn = confusion_counts(y_true, y_pred, self.thresholds,
                                          sample_weight=sample_weight, **options)
        new = dict(true_positives=tp, false_positives=fp, true_negatives=tn,
                   false_negatives=fn)
        for name in self._counts:
            getattr(self, name).assign_add(new[name])

    def _one_or_all(self, values):
        return values[0] if len(self.thresholds) == 1 else values


class _ConditionCount(_CountsMetric):
    """One confusion count at each threshold (0.5 by default)."""

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.thresholds = _parse_thresholds(thresholds, 0.5)
        self._make_counts((len(self.thresholds),))

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._add_counts(y_true, y_pred, sample_weight)

    def result(self):
        return self._one_or_all(getattr(self, self._counts[0]).value)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds}


class TruePositives(_ConditionCount):
    """The (weighted) number of true positives, as keras.metrics.TruePositives.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.TruePositives()
        >>> m.update_state([0, 1, 1, 1], [1, 0, 1, 1])
        >>> float(m.result())
        2.0
    """

    _counts = ("true_positives",)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, name, dtype)


class FalsePositives(_ConditionCount):
    """The (weighted) number of false positives, as keras.metrics.FalsePositives.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.FalsePositives()
        >>> m.update_state([0, 1, 0, 0], [0, 0, 1, 1])
        >>> float(m.result())
        2.0
    """

    _counts = ("false_positives",)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, name, dtype)


class TrueNegatives(_ConditionCount):
    """The (weighted) number of true negatives, as keras.metrics.TrueNegatives.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.TrueNegatives()
        >>> m.update_state([0, 1, 0, 0], [1, 1, 0, 0])
        >>> float(m.result())
        2.0
    """

    _counts = ("true_negatives",)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, name, dtype)


class FalseNegatives(_ConditionCount):
    """The (weighted) number of false negatives, as keras.metrics.FalseNegatives.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.FalseNegatives()
        >>> m.update_state([0, 1, 1, 1], [0, 1, 0, 0])
        >>> float(m.result())
        2.0
    """

    _counts = ("false_negatives",)

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(thresholds, name, dtype)


class _PrecisionRecall(_CountsMetric):
    """A ratio of confusion counts at thresholds, optionally over the top_k predictions of
    each row or one class_id (as Keras's Precision and Recall)."""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.init_thresholds = thresholds
        self.top_k = _check_optional_int("top_k", top_k, 1)
        self.class_id = _check_optional_int("class_id", class_id, 0)
        self.thresholds = _parse_thresholds(thresholds, 0.5 if top_k is None else NEG_INF)
        self._make_counts((len(self.thresholds),))

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._add_counts(y_true, y_pred, sample_weight, top_k=self.top_k,
                         class_id=self.class_id)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "thresholds": self.init_thresholds,
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_PrecisionRecall):
    """True positives / predicted positives over everything seen, as keras.metrics.Precision
    (thresholds, top_k, class_id as Keras).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.Precision()
        >>> m.update_state(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.1]))
        >>> float(m.result())
        0.5
    """

    _counts = ("true_positives", "false_positives")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def result(self):
        tp = self.true_positives.value
        return self._one_or_all(divide_no_nan(tp, tp + self.false_positives.value))


class Recall(_PrecisionRecall):
    """True positives / actual positives over everything seen, as keras.metrics.Recall
    (thresholds, top_k, class_id as Keras).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.Recall()
        >>> m.update_state(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.2, 0.1]))
        >>> float(m.result())
        0.5
    """

    _counts = ("true_positives", "false_negatives")

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(thresholds, top_k, class_id, name, dtype)

    def result(self):
        tp = self.true_positives.value
        return self._one_or_all(divide_no_nan(tp, tp + self.false_negatives.value))


# -- one rate at the best threshold where another reaches a value ----------------------------------
class _AtValue(_CountsMetric):
    """Counts at num_thresholds evenly spaced thresholds in [0, 1] (Keras's
    SensitivitySpecificityBase); the result is the best `dependent` rate among thresholds
    whose `constrained` rate is >= value."""

    value_name = "value"

    def __init__(self, value, num_thresholds=200, class_id=None, name=None, dtype=None):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 <= value <= 1:
            raise ValueError(f"{self.value_name} must be a number in [0, 1]. Received: "
                             f"{self.value_name}={value!r}")
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or \
                num_thresholds <= 0:
            raise ValueError("num_thresholds must be an integer > 0. Received: "
                             f"num_thresholds={num_thresholds!r}")
        super().__init__(name=name, dtype=dtype)
        self.value = value
        self.num_thresholds = num_thresholds
        self.class_id = _check_optional_int("class_id", class_id, 0)
        if num_thresholds == 1:
            self.thresholds = [0.5]
        else:
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self.thresholds = [0.0] + inner + [1.0]
        self._make_counts((len(self.thresholds),))

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._add_counts(y_true, y_pred, sample_weight, class_id=self.class_id)

    def _rates(self):
        tp, fp, tn, fn = (getattr(self, n).value for n in self._counts)
        return {"recall": divide_no_nan(tp, tp + fn), "specificity": divide_no_nan(tn, tn + fp),
                "precision": divide_no_nan(tp, tp + fp)}

    def _best(self, constrained, dependent):
        feasible = constrained >= self.value
        return jnp.max(jnp.where(feasible, dependent, 0.0), initial=0.0)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "class_id": self.class_id,
                "num_thresholds": self.num_thresholds, self.value_name: self.value}


class SensitivityAtSpecificity(_AtValue):
    """The best sensitivity (recall) where specificity >= `specificity`, as Keras.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.SensitivityAtSpecificity(0.5)
        >>> m.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8])
        >>> float(m.result())
        0.5
    """

    value_name = "specificity"

    def __init__(self, specificity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(specificity, num_thresholds, class_id,
                         name, dtype)
        self.specificity = specificity

    def result(self):
        rates = self._rates()
        return self._best(rates["specificity"], rates["recall"])


class SpecificityAtSensitivity(_AtValue):
    """The best specificity where sensitivity (recall) >= `sensitivity`, as Keras.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.SpecificityAtSensitivity(0.5)
        >>> m.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8])
        >>> round(float(m.result()), 4)
        0.6667
    """

    value_name = "sensitivity"

    def __init__(self, sensitivity, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(sensitivity, num_thresholds, class_id,
                         name, dtype)
        self.sensitivity = sensitivity

    def result(self):
        rates = self._rates()
        return self._best(rates["recall"], rates["specificity"])


class PrecisionAtRecall(_AtValue):
    """The best precision where recall >= `recall`, as keras.metrics.PrecisionAtRecall.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.PrecisionAtRecall(0.5)
        >>> m.update_state([0, 0, 0, 1, 1], [0, 0.3, 0.8, 0.3, 0.8])
        >>> float(m.result())
        0.5
    """

    value_name = "recall"

    def __init__(self, recall, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(recall, num_thresholds, class_id, name,
                         dtype)
        self.recall = recall

    def result(self):
        rates = self._rates()
        return self._best(rates["recall"], rates["precision"])


class RecallAtPrecision(_AtValue):
    """The best recall where precision >= `precision`, as keras.metrics.RecallAtPrecision.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.RecallAtPrecision(0.8)
        >>> m.update_state([0, 0, 1, 1], [0, 0.5, 0.3, 0.9])
        >>> float(m.result())
        0.5
    """

    value_name = "precision"

    def __init__(self, precision, num_thresholds=200, class_id=None, name=None, dtype=None):
        super().__init__(precision, num_thresholds, class_id, name,
                         dtype)
        self.precision = precision

    def result(self):
        rates = self._rates()
        return self._best(rates["precision"], rates["recall"])


# -- AUC -----------------------------------------------------------------------------------------
class AUC(_CountsMetric):
    """Area under the ROC or PR curve from confusion counts at num_thresholds thresholds, as
    keras.metrics.AUC (its thresholds, its interpolation rules, multi_label with num_labels
    or the model's output size, label_weights).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.AUC()
        >>> m.update_state(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
        >>> round(float(m.result()), 3)
        0.75
    """

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, dtype=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        super().__init__(name=name, dtype=dtype)
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ValueError(f"curve must be 'ROC' or 'PR' ('PRGAIN' is not supported). "
                             f"Received: curve={curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError("summation_method must be 'interpolation', 'minoring' or "
                             f"'majoring'. Received: summation_method={summation_method!r}")
        if thresholds is not None:
            inner = sorted(float(t) for t in thresholds)
            self._init_from_thresholds = True
        else:
            if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or \
                    num_thresholds < 2:
                raise ValueError("num_thresholds must be an integer > 1. Received: "
                                 f"num_thresholds={num_thresholds!r}")
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._init_from_thresholds = False
        if num_labels is not None and not multi_label:
            raise ValueError("num_labels is needed only when multi_label=True. Received: "
                             f"num_labels={num_labels!r}, multi_label={multi_label!r}")
        _check_optional_int("num_labels", num_labels, 1)
        eps = config.epsilon()
        self.thresholds = [0.0 - eps] + inner + [1.0 + eps]
        self.num_thresholds = len(self.thresholds)
        self.curve = curve.upper()
        self.summation_method = summation_method
        self.multi_label = bool(multi_label)
        self.num_labels = num_labels
        self.label_weights = (None if label_weights is None
                              else np.asarray(label_weights, np.float32))
        self.from_logits = bool(from_logits)
        self._num_labels = None
        if not self.multi_label:
            self._make_counts((self.num_thresholds,))
        elif num_labels:
            self.build_for_output((num_labels,))

    def build_for_output(self, output_shape) -> None:
        """With multi_label: make the counts for a model output of `output_shape`."""
        if not self.multi_label or self._num_labels is not None or not output_shape:
            return
        self._num_labels = int(output_shape[-1])
        self._make_counts((self.num_thresholds, self._num_labels))

    def stateless_reset_state(self) -> list:
        if self.multi_label and self._num_labels is None:
            raise ValueError("AUC(multi_label=True) does not know its number of labels yet: "
                             "give num_labels, update it once, or use it in compile().")
        return super().stateless_reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = jnp.asarray(y_pred, jnp.float32)
        if self.multi_label:
            if y_pred.ndim != 2:
                raise ValueError("AUC(multi_label=True) needs y_pred of rank 2 (batch, "
                                 f"labels). Received: y_pred.shape={y_pred.shape}")
            self.build_for_output(y_pred.shape[1:])
        if self.from_logits:
            y_pred = jax.nn.sigmoid(y_pred)
        self._add_counts(y_true, y_pred, sample_weight, multi_label=self.multi_label,
                         label_weights=None if self.multi_label else self.label_weights)

    def _by_label(self, terms):
        if not self.multi_label:
            return jnp.sum(terms)
        by_label = jnp.sum(terms, axis=0)
        if self.label_weights is None:
            return jnp.mean(by_label)
        weights = jnp.asarray(self.label_weights)
        return divide_no_nan(jnp.sum(by_label * weights), jnp.sum(weights))

    def result(self):
        tp, fp, tn, fn = (getattr(self, n).value for n in self._counts)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._by_label(_interpolated_pr_terms(tp, fp, fn))
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        else:
            x, y = recall, divide_no_nan(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = jnp.minimum(y[:-1], y[1:])
        else:
            heights = jnp.maximum(y[:-1], y[1:])
        return self._by_label((x[:-1] - x[1:]) * heights)

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype,
                  "num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "multi_label": self.multi_label,
                  "num_labels": self.num_labels,
                  "label_weights": (None if self.label_weights is None
                                    else self.label_weights.tolist()),
                  "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


def _interpolated_pr_terms(tp, fp, fn):
    """The PR area's terms between thresholds, precision interpolated as Keras does (Davis &
    Goadrich's closed form: precision varies as TP over predicted positives, both linear)."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = divide_no_nan(dtp, jnp.maximum(dp, 0.0))
    intercept = tp[1:] - slope * p[1:]
    ratio = jnp.where((p[:-1] > 0) & (p[1:] > 0), divide_no_nan(p[:-1], jnp.maximum(p[1:], 0.0)),
                      1.0)
    return divide_no_nan(slope * (dtp + intercept * jnp.log(ratio)),
                         jnp.maximum(tp[1:] + fn[1:], 0.0))
