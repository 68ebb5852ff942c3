"""Metrics that average a probabilistic or margin loss over samples: the cross-entropies,
KL divergence, Poisson and the hinges, each kilnet.losses' per-sample function under
MeanMetricWrapper (as Keras builds them from its loss functions)."""

from __future__ import annotations

from kilnet import losses as losses_lib
from kilnet.metrics._base import MeanMetricWrapper


def _check_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0 <= label_smoothing <= 1:
        raise ValueError("label_smoothing must be a number in [0, 1]. Received: "
                         f"label_smoothing={label_smoothing!r}")
    return label_smoothing


class BinaryCrossentropy(MeanMetricWrapper):
    """The mean binary cross-entropy, as keras.metrics.BinaryCrossentropy.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.BinaryCrossentropy()
        >>> m.update_state([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]])
        >>> round(float(m.result()), 4)
        0.8149
    """

    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False,
                 label_smoothing=0):
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)
        super().__init__(losses_lib.binary_crossentropy, name=name, dtype=dtype,
                         from_logits=self.from_logits, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(MeanMetricWrapper):
    """The mean categorical cross-entropy of one-hot labels, as Keras's metric.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.CategoricalCrossentropy()
        >>> m.update_state([[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> round(float(m.result()), 4)
        1.1769
    """

    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False,
                 label_smoothing=0, axis=-1):
        self.from_logits = bool(from_logits)
        self.label_smoothing = _check_smoothing(label_smoothing)
        self.axis = axis
        super().__init__(losses_lib.categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=self.from_logits, label_smoothing=self.label_smoothing,
                         axis=axis)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """The mean categorical cross-entropy of integer labels, as Keras's metric.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.SparseCategoricalCrossentropy()
        >>> m.update_state([1, 2], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]])
        >>> round(float(m.result()), 4)
        1.1769
    """

    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False,
                 ignore_class=None, axis=-1):
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = axis
        super().__init__(losses_lib.sparse_categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=self.from_logits, ignore_class=ignore_class, axis=axis)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}


class KLDivergence(MeanMetricWrapper):
    """The mean Kullback-Leibler divergence, as keras.metrics.KLDivergence.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.KLDivergence()
        >>> m.update_state([[0.5, 0.5]], [[0.5, 0.5]])
        >>> float(m.result())
        0.0
    """

    def __init__(self, name="kl_divergence", dtype=None):
        super().__init__(losses_lib.kl_divergence, name=name, dtype=dtype)


class Poisson(MeanMetricWrapper):
    """The mean of y_pred - y_true * log(y_pred), as keras.metrics.Poisson.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.Poisson()
        >>> m.update_state([[0.0]], [[2.0]])
        >>> float(m.result())
        2.0
    """

    def __init__(self, name="poisson", dtype=None):
        super().__init__(losses_lib.poisson, name=name, dtype=dtype)


class Hinge(MeanMetricWrapper):
    """The mean hinge loss (0/1 labels become -1/1), as keras.metrics.Hinge.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.Hinge()
        >>> m.update_state([[1.0], [0.0]], [[0.5], [0.5]])
        >>> float(m.result())
        1.0
    """

    def __init__(self, name="hinge", dtype=None):
        super().__init__(losses_lib.hinge, name=name, dtype=dtype)


class SquaredHinge(MeanMetricWrapper):
    """The mean squared hinge loss, as keras.metrics.SquaredHinge.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.SquaredHinge()
        >>> m.update_state([[1.0], [0.0]], [[0.5], [0.5]])
        >>> float(m.result())
        1.25
    """

    def __init__(self, name="squared_hinge", dtype=None):
        super().__init__(losses_lib.squared_hinge, name=name, dtype=dtype)


class CategoricalHinge(MeanMetricWrapper):
    """The mean categorical hinge loss, as keras.metrics.CategoricalHinge.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.CategoricalHinge()
        >>> m.update_state([[0.0, 1.0]], [[0.3, 0.7]])
        >>> round(float(m.result()), 4)
        0.6
    """

    def __init__(self, name="categorical_hinge", dtype=None):
        super().__init__(losses_lib.categorical_hinge, name=name, dtype=dtype)
