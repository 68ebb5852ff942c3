"""Keras's metrics, computed inside kilnet's compiled programs.

Two kinds, as compile() uses them (kilnet.objective):

- mean metrics (MeanMetricWrapper and its subclasses, `stateful` False): one value per sample
  (`per_sample`), which the compiled step sums over the epoch's real samples, so every logged
  value is an exact mean over samples, not a mean of batch means;
- metrics with state (`stateful` True: confusion counts, F-scores, IoU, R2, RMSE, and any
  Keras-form subclass of `Metric`): the loop carries the values of its `variables` (from
  `stateless_reset_state`) and updates them with `stateless_update_state`; the log is `stateless_result` of the epoch's final state.

Every metric also has Keras's eager interface (`update_state`, `result`, `reset_state`).
`get` resolves compile()'s identifiers: names as Keras accepts them, Metric objects, metric
classes, and plain functions `fn(y_true, y_pred)` (wrapped in a MeanMetricWrapper).
"""

from __future__ import annotations

import inspect

from kilnet import _registry
from kilnet import losses as losses_lib
from kilnet.losses import (binary_crossentropy, binary_focal_crossentropy,
                           categorical_crossentropy, categorical_focal_crossentropy,
                           categorical_hinge, hinge, huber, kl_divergence, log_cosh,
                           mean_absolute_error, mean_absolute_percentage_error,
                           mean_squared_error, mean_squared_logarithmic_error, poisson,
                           sparse_categorical_crossentropy, squared_hinge)
from kilnet.metrics._accuracy import (Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                      SparseCategoricalAccuracy, SparseTopKCategoricalAccuracy,
                                      TopKCategoricalAccuracy, binary_accuracy,
                                      categorical_accuracy, sparse_categorical_accuracy,
                                      sparse_top_k_categorical_accuracy,
                                      top_k_categorical_accuracy)
from kilnet.metrics._base import Mean, MeanMetricWrapper, Metric, Sum, snake_case
from kilnet.metrics._confusion import (AUC, FalseNegatives, FalsePositives, Precision,
                                       PrecisionAtRecall, Recall, RecallAtPrecision,
                                       SensitivityAtSpecificity, SpecificityAtSensitivity,
                                       TrueNegatives, TruePositives)
from kilnet.metrics._fscore import F1Score, FBetaScore
from kilnet.metrics._iou import BinaryIoU, IoU, MeanIoU, OneHotIoU, OneHotMeanIoU
from kilnet.metrics._probabilistic import (BinaryCrossentropy, CategoricalCrossentropy,
                                           CategoricalHinge, Hinge, KLDivergence, Poisson,
                                           SparseCategoricalCrossentropy, SquaredHinge)
from kilnet.metrics._regression import (ConcordanceCorrelation, CosineSimilarity, LogCoshError,
                                        MeanAbsoluteError, MeanAbsolutePercentageError,
                                        MeanSquaredError, MeanSquaredLogarithmicError,
                                        PearsonCorrelation, R2Score, RootMeanSquaredError,
                                        concordance_correlation, pearson_correlation)

__all__ = [
    "Metric", "Mean", "Sum", "MeanMetricWrapper",
    "Accuracy", "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy",
    "TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives", "Precision",
    "Recall", "AUC", "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
    "SpecificityAtSensitivity", "F1Score", "FBetaScore", "IoU", "MeanIoU", "BinaryIoU",
    "OneHotIoU", "OneHotMeanIoU",
    "MeanSquaredError", "MeanAbsoluteError", "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError", "RootMeanSquaredError", "CosineSimilarity", "LogCoshError",
    "R2Score", "PearsonCorrelation", "ConcordanceCorrelation", "BinaryCrossentropy",
    "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "KLDivergence", "Poisson", "Hinge", "SquaredHinge",
    "CategoricalHinge", "METRIC_TYPES", "get", "serialize", "deserialize",
    # Keras's metric functions (per-sample values; those that are losses are the same objects
    # as in kilnet.losses, as in Keras)
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
    "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "pearson_correlation",
    "concordance_correlation", "binary_crossentropy", "binary_focal_crossentropy",
    "categorical_crossentropy", "categorical_focal_crossentropy", "categorical_hinge", "hinge",
    "huber", "kl_divergence", "log_cosh", "mean_absolute_error",
    "mean_absolute_percentage_error", "mean_squared_error", "mean_squared_logarithmic_error",
    "poisson", "sparse_categorical_crossentropy", "squared_hinge",
]

#: kilnet's metric classes by class name: the allowlist of metrics a model file may name.
METRIC_TYPES = {name: globals()[name] for name in __all__
                if isinstance(globals().get(name), type) and issubclass(globals()[name], Metric)
                and name not in ("Metric", "MeanMetricWrapper")}

# Keras 3's names (keras/src/metrics/__init__.py): class names, their snake_case, aliases.
_BY_NAME = {**METRIC_TYPES, **{snake_case(name): cls for name, cls in METRIC_TYPES.items()}}
_BY_NAME.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
                 "mse": MeanSquaredError, "MSE": MeanSquaredError,
                 "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
                 "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
                 "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError})


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


def _instantiate(cls, identifier):
    try:
        return cls()
    except TypeError:
        needed = [p.name for p in inspect.signature(cls).parameters.values()
                  if p.default is inspect.Parameter.empty
                  and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise ValueError(f"The metric {identifier!r} needs arguments ({', '.join(needed)}): "
                         f"pass an object instead, e.g. kilnet.metrics.{cls.__name__}("
                         f"{needed[0] if needed else ''}=...). Received: "
                         f"metrics=[{identifier!r}]") from None


def _unknown(identifier):
    keras_names = sorted(n for n in _BY_NAME if n[0].islower())
    return ValueError(
        "Unknown metric: expected 'accuracy', one of Keras's metric names "
        f"({', '.join(keras_names)}), a kilnet.metrics.Metric object or class, or a function "
        f"fn(y_true, y_pred) giving one value per sample. Received: metrics=[{identifier!r}]")


def get(identifier, *, loss=None, label_shape=None, output_shape=None) -> Metric:
    """The Metric that compile()'s `metrics=[identifier]` means, as Keras resolves it.

    A name gives a new metric with that name (as Keras logs it); "accuracy"/"acc" depend on
    the loss and the label/output shapes (Keras's rule); a function becomes a
    MeanMetricWrapper named after it in snake case, as Keras logs it. `output_shape` (the model output's, without the batch
    axis) lets metrics whose state depends on it (F-scores, R2Score, multi-label AUC) make
    their variables when the head is known (given together with `loss` or `label_shape`).

    Example:
        >>> from kilnet import metrics
        >>> metrics.get("mape")
        <MeanAbsolutePercentageError name=mape>
        >>> def doubled_error(y_true, y_pred):
        ...     return 2 * abs(y_true - y_pred)
        >>> metrics.get(doubled_error).name
        'doubled_error'
    """
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        return _accuracy_for(loss, label_shape, output_shape)(name=identifier)
    if isinstance(identifier, dict):
        identifier = deserialize(identifier)
    if isinstance(identifier, str):
        if identifier not in _BY_NAME:
            raise _unknown(identifier)
        metric = _instantiate(_BY_NAME[identifier], identifier)
        metric.name = identifier
    elif isinstance(identifier, Metric):
        metric = identifier
    elif inspect.isclass(identifier) and issubclass(identifier, Metric):
        metric = _instantiate(identifier, identifier.__name__)
    elif callable(identifier) and not inspect.isclass(identifier):
        # Keras's log name for a function: its name in snake case ("PSNR" logs "psnr")
        metric = MeanMetricWrapper(identifier, name=snake_case(
            getattr(identifier, "__name__", type(identifier).__name__)))
    else:
        raise _unknown(identifier)
    builder = getattr(metric, "build_for_output", None)
    if builder is not None and output_shape and (loss is not None or label_shape is not None):
        builder(tuple(output_shape))
    return metric


def serialize(metric) -> dict:
    """A metric as Keras writes it: {"module", "class_name", "config", "registered_name"}.

    Example:
        >>> from kilnet import metrics
        >>> entry = metrics.serialize(metrics.MeanSquaredError())
        >>> entry["module"], entry["class_name"], entry["config"]["name"]
        ('keras.metrics', 'MeanSquaredError', 'mean_squared_error')
    """
    if not isinstance(metric, Metric):
        raise ValueError("serialize takes a kilnet.metrics.Metric object, e.g. "
                         f"metrics.AUC(). Received: metric={metric!r:.100}")
    return _registry.to_config_entry(metric, METRIC_TYPES, "keras.metrics", "metric")


def deserialize(config) -> Metric:
    """The metric a config describes: what `serialize` (or Keras's) writes, a plain
    {"class_name", "config"} dict, Keras's entry for a metric function
    ({"class_name": "function", "config": "mean_squared_error", ...}) or a name ("mse",
    "AUC", "accuracy": the metric of that class, with its default name). Only kilnet's
    classes and registered ones are created.

    Example:
        >>> from kilnet import metrics
        >>> metrics.deserialize({"module": "keras.metrics", "class_name": "AUC",
        ...                      "config": {"num_thresholds": 10},
        ...                      "registered_name": None}).num_thresholds
        10
        >>> metrics.deserialize("mse").name
        'mean_squared_error'
    """
    if isinstance(config, str):
        if config not in _BY_NAME:
            raise _unknown(config)
        return _instantiate(_BY_NAME[config], config)
    if isinstance(config, dict) and config.get("class_name") == "function":
        return deserialize(config.get("config"))
    return _registry.from_config_entry(config, METRIC_TYPES, Metric, "metric")
