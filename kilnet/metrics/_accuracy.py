"""Accuracy metrics: the fraction of samples predicted right, each a per-sample 0/1 function
averaged by MeanMetricWrapper (compile() sums the values over the real samples)."""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import losses as losses_lib
from kilnet.metrics._base import MeanMetricWrapper


def accuracy(y_true, y_pred):
    """1 where the prediction equals the label exactly (Keras's `accuracy` function)."""
    y_true, y_pred = losses_lib.squeeze_or_expand(jnp.asarray(y_true), jnp.asarray(y_pred))
    return (y_true == y_pred.astype(y_true.dtype)).astype(jnp.float32)


def sparse_categorical_accuracy(y_true, y_pred):
    # Keras compares the label as given, as a float, with the predicted class: a fractional
    # label (0.5) matches no class, where reading it as a class id would truncate it to 0
    y_true = jnp.asarray(y_true)
    labels = y_true[..., 0] if y_true.ndim == jnp.ndim(y_pred) else y_true
    predicted = jnp.argmax(y_pred, axis=-1).astype(jnp.float32)
    return (predicted == labels.astype(jnp.float32)).astype(jnp.float32)


def categorical_accuracy(y_true, y_pred):
    return (jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)).astype(jnp.float32)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1 where the thresholded prediction, as 0 or 1, equals the label, element by element
    (Keras's `binary_accuracy` function; BinaryAccuracy averages each sample's elements): a
    soft label (0.7) or a -1 matches neither, as in Keras.

    Example:
        >>> import numpy as np
        >>> binary_accuracy(np.array([[1.0], [0.7], [0.0]]), np.array([[0.9], [0.9], [0.2]])
        ...                 ).ravel().tolist()
        [1.0, 0.0, 1.0]
    """
    y_pred = jnp.asarray(y_pred)
    y_true = losses_lib.match_rank(jnp.asarray(y_true), y_pred)
    return ((y_pred > threshold).astype(y_true.dtype) == y_true).astype(jnp.float32)


def _binary_accuracy_per_sample(y_true, y_pred, threshold=0.5):
    return jnp.mean(binary_accuracy(y_true, y_pred, threshold), axis=-1)


def _in_top_k(labels, y_pred, k):
    true_score = jnp.take_along_axis(y_pred, labels[..., None], axis=-1)
    true_score = jnp.where(jnp.isnan(true_score), -jnp.inf, true_score)
    # In the top k when fewer than k classes score strictly higher (Keras's in_top_k).
    higher = jnp.sum(y_pred > true_score, axis=-1)
    return (higher < k).astype(jnp.float32)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == y_pred.shape[-1]:
        labels = jnp.argmax(y_true, axis=-1)
    else:
        labels = losses_lib.sparse_labels(y_true, y_pred)
    return _in_top_k(labels, y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(losses_lib.sparse_labels(y_true, y_pred), y_pred, k)


def _check_k(k):
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (how many top predictions count). "
                         f"Received: k={k!r}")
    return k


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly, as keras.metrics.Accuracy.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.Accuracy()
        >>> m.update_state(np.array([1, 2, 3, 4]), np.array([0, 2, 3, 4]))
        >>> float(m.result())
        0.75
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the highest-scoring class is the integer label.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.SparseCategoricalAccuracy()
        >>> m.update_state(np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the highest-scoring class is the one-hot label's class.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.CategoricalAccuracy()
        >>> m.update_state(np.eye(2)[[1, 0]], np.array([[0.2, 0.8], [0.3, 0.7]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often `y_pred > threshold` matches the 0/1 label.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.BinaryAccuracy(threshold=0.5)
        >>> m.update_state(np.array([1, 0, 1]), np.array([0.9, 0.6, 0.2]))
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            raise ValueError(f"threshold must be a number. Received: threshold={threshold!r}")
        self.threshold = float(threshold)
        super().__init__(_binary_accuracy_per_sample, name=name, dtype=dtype,
                         threshold=self.threshold)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the label is among the k highest-scoring classes (one-hot or integer
    labels).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.TopKCategoricalAccuracy(k=1)
        >>> m.update_state(np.eye(3)[[2, 0]], np.array([[0.1, 0.2, 0.7], [0.2, 0.5, 0.3]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        self.k = _check_k(k)
        super().__init__(top_k_categorical_accuracy, name=name, dtype=dtype, k=self.k)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often the integer label is among the k highest-scoring classes, as
    keras.metrics.SparseTopKCategoricalAccuracy (from_sorted_ids=True is refused).

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics
        >>> m = metrics.SparseTopKCategoricalAccuracy(k=2)
        >>> m.update_state(np.array([2, 0]), np.array([[0.1, 0.2, 0.7], [0.2, 0.5, 0.3]]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None,
                 from_sorted_ids=False):
        if from_sorted_ids:
            raise ValueError("SparseTopKCategoricalAccuracy(from_sorted_ids=True) is not "
                             "supported: pass the scores of every class as y_pred. Received: "
                             f"from_sorted_ids={from_sorted_ids!r}")
        self.k = _check_k(k)
        super().__init__(sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=self.k)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}
