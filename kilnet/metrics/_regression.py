"""Regression metrics: means of kilnet.losses' per-sample errors (mse, mae, mape, msle,
log-cosh, cosine similarity), the correlations of labels and predictions along an axis
(Pearson's, Lin's concordance), and the two that are not plain means: RootMeanSquaredError (the
root of the epoch's mean) and R2Score (sums over the epoch, combined at the end)."""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import config
from kilnet import losses as losses_lib
from kilnet.metrics._base import Mean, MeanMetricWrapper, Metric


class MeanSquaredError(MeanMetricWrapper):
    """The mean of squared errors, as keras.metrics.MeanSquaredError.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.MeanSquaredError()
        >>> m.update_state([[1.0], [2.0]], [[2.0], [4.0]])
        >>> float(m.result())
        2.5
    """

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(losses_lib.mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """The mean of absolute errors, as keras.metrics.MeanAbsoluteError.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.MeanAbsoluteError()
        >>> m.update_state([[1.0], [2.0]], [[2.0], [4.0]])
        >>> float(m.result())
        1.5
    """

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(losses_lib.mean_absolute_error, name=name, dtype=dtype)


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """100 * mean(|y_true - y_pred| / |y_true|), as keras.metrics.MeanAbsolutePercentageError.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.MeanAbsolutePercentageError()
        >>> m.update_state([[1.0], [2.0]], [[2.0], [3.0]])
        >>> float(m.result())
        75.0
    """

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(losses_lib.mean_absolute_percentage_error, name=name, dtype=dtype)


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    """The mean of (log(1 + y_pred) - log(1 + y_true))^2, as Keras's metric.

    Example:
        >>> import math
        >>> from kilnet import metrics
        >>> m = metrics.MeanSquaredLogarithmicError()
        >>> m.update_state([[0.0]], [[math.e - 1]])
        >>> round(float(m.result()), 5)
        1.0
    """

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(losses_lib.mean_squared_logarithmic_error, name=name, dtype=dtype)


class LogCoshError(MeanMetricWrapper):
    """The mean of log(cosh(y_pred - y_true)), as keras.metrics.LogCoshError.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.LogCoshError()
        >>> m.update_state([[0.0]], [[0.0]])
        >>> float(m.result())
        0.0
    """

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(losses_lib.log_cosh, name=name, dtype=dtype)


def cosine_similarity(y_true, y_pred, axis=-1):
    """The cosine of the angle between label and prediction (the loss's value negated)."""
    return -losses_lib.cosine_similarity(y_true, y_pred, axis=axis)


class _AlongAxis(MeanMetricWrapper):
    """The mean over samples of `fn(y_true, y_pred, axis=axis)`, whose config keeps `axis`
    (so a saved model keeps it)."""

    def __init__(self, fn, name, dtype, axis):
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"axis must be an integer. Received: axis={axis!r}")
        self.axis = axis
        super().__init__(fn, name=name, dtype=dtype, axis=axis)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "axis": self.axis}


class CosineSimilarity(_AlongAxis):
    """The mean cosine similarity of labels and predictions along `axis`, as
    keras.metrics.CosineSimilarity.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.CosineSimilarity()
        >>> m.update_state([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]])
        >>> round(float(m.result()), 4)
        0.5
    """

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(cosine_similarity, name, dtype, axis)


def _correlation_inputs(y_true, y_pred, metric, axis):
    y_pred = jnp.asarray(y_pred, jnp.float32)
    y_true, y_pred = losses_lib.squeeze_or_expand(jnp.asarray(y_true, jnp.float32), y_pred)
    if y_pred.ndim == 0:
        raise ValueError(f"{metric} correlates each sample's values along axis={axis}: it "
                         "needs arrays of shape (batch, values). Received: y_true and y_pred "
                         "of shape ()")
    return y_true, y_pred


def pearson_correlation(y_true, y_pred, axis=-1):
    """Pearson's correlation of labels and predictions along `axis`, as
    keras.metrics.pearson_correlation: one value per sample for (batch, values) arrays, NaN
    where either side is constant along `axis` (e.g. an axis of length 1)."""
    y_true, y_pred = _correlation_inputs(y_true, y_pred, "pearson_correlation", axis)
    true_centred = y_true - jnp.mean(y_true, axis=axis, keepdims=True)
    pred_centred = y_pred - jnp.mean(y_pred, axis=axis, keepdims=True)
    true_scaled = true_centred / jnp.std(true_centred, axis=axis, keepdims=True)
    pred_scaled = pred_centred / jnp.std(pred_centred, axis=axis, keepdims=True)
    return jnp.mean(true_scaled * pred_scaled, axis=axis)


def concordance_correlation(y_true, y_pred, axis=-1):
    """Lin's concordance correlation of labels and predictions along `axis`, as
    keras.metrics.concordance_correlation: 2 cov / (var_true + var_pred + (mean gap)^2), the
    denominator plus Keras's epsilon (1e-7)."""
    y_true, y_pred = _correlation_inputs(y_true, y_pred, "concordance_correlation", axis)
    true_mean = jnp.mean(y_true, axis=axis, keepdims=True)
    pred_mean = jnp.mean(y_pred, axis=axis, keepdims=True)
    spread = (jnp.var(y_true, axis=axis, keepdims=True)
              + jnp.var(y_pred, axis=axis, keepdims=True) + jnp.square(true_mean - pred_mean))
    covariance = jnp.mean((y_true - true_mean) * (y_pred - pred_mean), axis=axis, keepdims=True)
    return jnp.squeeze(2 * covariance / (spread + config.epsilon()), axis=axis)


class PearsonCorrelation(_AlongAxis):
    """The mean over samples of Pearson's correlation between each sample's labels and
    predictions along `axis`, as keras.metrics.PearsonCorrelation. As in Keras, outputs with
    one value per sample (e.g. Dense(1)) give NaN: there is nothing to correlate per sample.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.PearsonCorrelation()
        >>> m.update_state([[0.0, 1.0, 2.0]], [[0.0, 2.0, 4.0]])
        >>> round(float(m.result()), 4)
        1.0
    """

    def __init__(self, name="pearson_correlation", dtype=None, axis=-1):
        super().__init__(pearson_correlation, name, dtype, axis)


class ConcordanceCorrelation(_AlongAxis):
    """The mean over samples of Lin's concordance correlation between each sample's labels
    and predictions along `axis`, as keras.metrics.ConcordanceCorrelation (1 only where the
    predictions equal the labels, unlike Pearson's, which any straight line satisfies).

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.ConcordanceCorrelation()
        >>> m.update_state([[0.0, 1.0, 2.0]], [[0.0, 2.0, 4.0]])
        >>> round(float(m.result()), 4)
        0.6154
    """

    def __init__(self, name="concordance_correlation", dtype=None, axis=-1):
        super().__init__(concordance_correlation, name, dtype, axis)


class RootMeanSquaredError(Mean):
    """The square root of the mean squared error over everything seen, as
    keras.metrics.RootMeanSquaredError (not a mean of per-batch roots).

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.RootMeanSquaredError()
        >>> m.update_state([[0.0], [0.0]], [[3.0], [4.0]])
        >>> round(float(m.result()), 4)
        3.5355
    """

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = losses_lib.squeeze_or_expand(jnp.asarray(y_true, jnp.float32),
                                                      jnp.asarray(y_pred, jnp.float32))
        super().update_state(jnp.square(y_pred - y_true), sample_weight=sample_weight)

    def result(self):
        return jnp.sqrt(super().result())


_AGGREGATIONS = (None, "uniform_average", "variance_weighted_average")


class R2Score(Metric):
    """The coefficient of determination over everything seen, as keras.metrics.R2Score: per
    output column 1 - SS_res / SS_tot, aggregated by `class_aggregation`, adjusted for
    `num_regressors` when it is not 0. Inputs are (batch, outputs); the number of outputs is
    taken from the model's output in compile(), else from the first update.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.R2Score()
        >>> m.update_state(np.array([[1.0], [2.0], [3.0]]), np.array([[1.0], [2.0], [4.0]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, class_aggregation="uniform_average", num_regressors=0,
                 name="r2_score", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if class_aggregation not in _AGGREGATIONS:
            raise ValueError(f"class_aggregation must be one of {_AGGREGATIONS}. Received: "
                             f"class_aggregation={class_aggregation!r}")
        if isinstance(num_regressors, bool) or not isinstance(num_regressors, int) \
                or num_regressors < 0:
            raise ValueError("num_regressors must be an integer >= 0. Received: "
                             f"num_regressors={num_regressors!r}")
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_samples = self.add_variable(shape=(), initializer="zeros", name="num_samples")
        self._outputs = None

    def build_for_output(self, output_shape) -> None:
        """Make the per-column sums for a model output of `output_shape` (no batch axis)."""
        if self._outputs is not None or not output_shape:
            return
        outputs = int(output_shape[-1])
        self._outputs = outputs
        self.squared_sum = self.add_variable(shape=(outputs,), name="squared_sum")
        self.sum = self.add_variable(shape=(outputs,), name="sum")
        self.total_mse = self.add_variable(shape=(outputs,), name="residual")
        self.count = self.add_variable(shape=(outputs,), name="count")

    def stateless_reset_state(self) -> list:
        if self._outputs is None:
            raise ValueError("R2Score does not know its number of outputs yet: update it once "
                             "or use it in compile(), which gives it the model's output shape.")
        return super().stateless_reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = losses_lib.squeeze_or_expand(jnp.asarray(y_true, jnp.float32),
                                                      jnp.asarray(y_pred, jnp.float32))
        if y_pred.ndim != 2 or y_true.ndim != 2:
            raise ValueError("R2Score expects 2D inputs of shape (batch_size, outputs). "
                             f"Received: y_true.shape={y_true.shape}, "
                             f"y_pred.shape={y_pred.shape}")
        self.build_for_output(y_pred.shape[1:])
        weight = jnp.ones((), jnp.float32) if sample_weight is None else jnp.asarray(
            sample_weight, jnp.float32)
        if weight.ndim == 1:
            weight = weight[:, None]
        weight = jnp.broadcast_to(weight, y_true.shape)
        weighted = y_true * weight
        self.sum.assign_add(jnp.sum(weighted, axis=0))
        self.squared_sum.assign_add(jnp.sum(y_true * weighted, axis=0))
        self.total_mse.assign_add(jnp.sum(jnp.square(y_true - y_pred) * weight, axis=0))
        self.count.assign_add(jnp.sum(weight, axis=0))
        # Keras counts every entry (rows x outputs); kilnet counts the entries whose weight
        # is not 0: the same unless some weights are 0, and compile()'s padding rows (weight
        # 0) do not count.
        self.num_samples.assign_add(jnp.sum(weight != 0).astype(jnp.float32))

    def result(self):
        mean = self.sum.value / self.count.value
        total = self.squared_sum.value - self.sum.value * mean
        scores = 1.0 - self.total_mse.value / total
        scores = jnp.where(jnp.isinf(scores), 0.0, scores)
        if self.class_aggregation == "uniform_average":
            score = jnp.mean(scores)
        elif self.class_aggregation == "variance_weighted_average":
            score = jnp.sum(total * scores) / jnp.sum(total)
        else:
            score = scores
        if self.num_regressors == 0:
            return score
        n, p = self.num_samples.value, float(self.num_regressors)
        adjusted = 1.0 - (1.0 - score) * (n - 1.0) / (n - p - 1.0)
        # Keras falls back to the plain score (with a warning) when n - 1 <= p.
        return jnp.where(n - 1.0 > p, adjusted, score)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype,
                "class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors}

