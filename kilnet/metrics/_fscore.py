"""F-scores (FBetaScore, F1Score) of multi-class or multi-label predictions, as Keras computes
them: per-class counts over everything seen, combined at the end by `average`."""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import config
from kilnet import losses as losses_lib
from kilnet.metrics._base import Metric, default_weight

_AVERAGES = (None, "micro", "macro", "weighted")


class FBetaScore(Metric):
    """The F-beta score, as keras.metrics.FBetaScore: inputs (batch, classes) with one-hot or
    multi-hot labels; a prediction is positive above `threshold`, or (threshold=None) where it
    is its row's maximum. average: None (one score per class), "micro", "macro", "weighted".
    The number of classes comes from the model's output in compile(), else the first update.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.FBetaScore(beta=2.0, average="micro", threshold=0.5)
        >>> m.update_state(np.array([[1, 0], [0, 1]]), np.array([[0.9, 0.8], [0.2, 0.6]]))
        >>> round(float(m.result()), 4)
        0.9091
    """

    def __init__(self, average=None, beta=1.0, threshold=None, name="fbeta_score",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}. Received: "
                             f"average={average!r}")
        if not isinstance(beta, float) or beta <= 0.0:
            raise ValueError(f"beta must be a Python float > 0, e.g. beta=2.0. Received: "
                             f"beta={beta!r}")
        if threshold is not None and (not isinstance(threshold, float)
                                      or not 0.0 < threshold <= 1.0):
            raise ValueError("threshold must be None or a Python float with 0 < threshold <= 1. "
                             f"Received: threshold={threshold!r}")
        self.average = average
        self.beta = beta
        self.threshold = threshold
        self._classes = None
        if average == "micro":
            self.build_for_output(None)

    def build_for_output(self, output_shape) -> None:
        """Make the per-class counts for a model output of `output_shape` (no batch axis)."""
        if self._classes is not None:
            return
        if self.average == "micro":
            shape = ()
        elif output_shape:
            shape = (int(output_shape[-1]),)
        else:
            return
        self._classes = shape
        for name in ("true_positives", "false_positives", "false_negatives",
                     "intermediate_weights"):
            setattr(self, name, self.add_variable(shape=shape, initializer="zeros", name=name))

    def stateless_reset_state(self) -> list:
        if self._classes is None:
            raise ValueError(f"{type(self).__name__} does not know its number of classes yet: "
                             "update it once or use it in compile(), which gives it the "
                             "model's output shape.")
        return super().stateless_reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = jnp.asarray(y_true, jnp.float32)
        y_pred = jnp.asarray(y_pred, jnp.float32)
        if y_pred.ndim != 2 or y_true.ndim != 2:
            raise ValueError(f"{type(self).__name__} expects 2D inputs of shape (batch_size, "
                             f"classes). Received: y_true.shape={y_true.shape}, "
                             f"y_pred.shape={y_pred.shape}")
        self.build_for_output(y_pred.shape[1:])
        if self.threshold is None:
            top = jnp.max(y_pred, axis=-1, keepdims=True)
            y_pred = (y_pred >= top) & (jnp.abs(y_pred) > 1e-9)
        else:
            y_pred = y_pred > self.threshold
        y_pred = y_pred.astype(jnp.float32)
        weight = default_weight(sample_weight, y_pred.shape[0])
        axis = None if self.average == "micro" else 0

        def weighted_sum(values):
            if weight is not None:
                values = values * weight[:, None]
            return jnp.sum(values, axis=axis)

        self.true_positives.assign_add(weighted_sum(y_pred * y_true))
        self.false_positives.assign_add(weighted_sum(y_pred * (1 - y_true)))
        self.false_negatives.assign_add(weighted_sum((1 - y_pred) * y_true))
        self.intermediate_weights.assign_add(weighted_sum(y_true))

    def result(self):
        eps = config.epsilon()
        tp = self.true_positives.value
        precision = tp / (tp + self.false_positives.value + eps)
        recall = tp / (tp + self.false_negatives.value + eps)
        b2 = self.beta ** 2
        score = (1 + b2) * (precision * recall) / (b2 * precision + recall + eps)
        if self.average == "weighted":
            support = self.intermediate_weights.value
            return jnp.sum(score * support / (jnp.sum(support) + eps))
        if self.average is not None:
            return jnp.mean(score)
        return score

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "average": self.average,
                "beta": self.beta, "threshold": self.threshold}


class F1Score(FBetaScore):
    """The F1 score (FBetaScore with beta=1.0), as keras.metrics.F1Score.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.F1Score(average="macro")
        >>> m.update_state(np.eye(3)[[0, 1, 2, 2]], np.eye(3)[[0, 1, 1, 2]])
        >>> round(float(m.result()), 4)
        0.7778
    """

    def __init__(self, average=None, threshold=None, name="f1_score", dtype=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name,
                         dtype=dtype)

    def get_config(self):
        config = super().get_config()
        del config["beta"]
        return config
