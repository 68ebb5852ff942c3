"""Intersection-over-union metrics (IoU, MeanIoU, BinaryIoU, OneHotIoU, OneHotMeanIoU), as Keras
computes them: a
num_classes x num_classes confusion matrix summed over everything seen, IoU per class
TP / (TP + FP + FN) at the end, averaged over the target classes that occurred."""

from __future__ import annotations

import jax.numpy as jnp

from kilnet import config
from kilnet import losses as losses_lib
from kilnet.metrics._base import Metric, default_weight


def _check_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError("num_classes must be a positive integer (the number of labels). "
                         f"Received: num_classes={num_classes!r}")
    return num_classes


class IoU(Metric):
    """The mean IoU over `target_class_ids`, as keras.metrics.IoU. Labels and predictions are
    class ids (sparse_y_true / sparse_y_pred True) or scores whose argmax along `axis` is
    taken; entries labelled `ignore_class` do not count.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.IoU(num_classes=2, target_class_ids=[0])
        >>> m.update_state([0, 0, 1, 1], [0, 1, 0, 1])
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None,
                 ignore_class=None, sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = _check_classes(num_classes)
        target_class_ids = list(target_class_ids)
        if not target_class_ids or not all(isinstance(c, int) and 0 <= c < num_classes
                                           for c in target_class_ids):
            raise ValueError(f"target_class_ids must be class ids in [0, {num_classes}). "
                             f"Received: target_class_ids={target_class_ids!r}")
        self.target_class_ids = target_class_ids
        self.ignore_class = ignore_class
        self.sparse_y_true = bool(sparse_y_true)
        self.sparse_y_pred = bool(sparse_y_pred)
        self.axis = axis
        self.total_cm = self.add_variable(shape=(num_classes, num_classes),
                                          initializer="zeros", name="total_confusion_matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
        if not self.sparse_y_true:
            y_true = jnp.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = jnp.argmax(y_pred, axis=self.axis)
        y_true, y_pred = losses_lib.squeeze_or_expand(y_true, y_pred)
        shape = y_true.shape
        weight = default_weight(sample_weight, shape[0] if shape else 1)
        if weight is None:
            weight = jnp.ones(shape, jnp.float32)
        else:  # per sample (or per entry): one weight per entry
            if weight.ndim > len(shape) and weight.shape[-1] == 1:
                weight = weight[..., 0]
            weight = jnp.broadcast_to(
                weight.reshape(weight.shape + (1,) * (len(shape) - weight.ndim)), shape)
        y_true = y_true.astype(jnp.int32).reshape(-1)
        y_pred = y_pred.astype(jnp.int32).reshape(-1)
        weight = weight.reshape(-1)
        valid = (y_true >= 0) & (y_true < self.num_classes) & (y_pred >= 0) & \
            (y_pred < self.num_classes)
        if self.ignore_class is not None:
            valid = valid & (y_true != self.ignore_class)
        weight = jnp.where(valid, weight, 0.0)
        cells = jnp.where(valid, y_true * self.num_classes + y_pred, 0)
        counts = jnp.zeros(self.num_classes * self.num_classes, jnp.float32).at[cells].add(
            weight)
        self.total_cm.assign_add(counts.reshape(self.num_classes, self.num_classes))

    def result(self):
        cm = self.total_cm.value
        predicted = jnp.sum(cm, axis=0)
        actual = jnp.sum(cm, axis=1)
        true_positives = jnp.diag(cm)
        ids = jnp.asarray(self.target_class_ids)
        tp = true_positives[ids]
        denominator = (predicted + actual - true_positives)[ids]
        present = (denominator > 1e-9).astype(jnp.float32)
        iou = jnp.where(present > 0, tp / (denominator + config.epsilon()), 0.0)
        return jnp.sum(iou) / (jnp.sum(present) + config.epsilon())

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_classes": self.num_classes,
                "target_class_ids": self.target_class_ids, "ignore_class": self.ignore_class,
                "sparse_y_true": self.sparse_y_true, "sparse_y_pred": self.sparse_y_pred,
                "axis": self.axis}


class MeanIoU(IoU):
    """The IoU averaged over all classes, as keras.metrics.MeanIoU.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.MeanIoU(num_classes=2)
        >>> m.update_state([0, 0, 1, 1], [0, 1, 0, 1])
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_true=True, sparse_y_pred=True, axis=-1):
        super().__init__(num_classes, list(range(_check_classes(num_classes))),
                         name=name, dtype=dtype, ignore_class=ignore_class,
                         sparse_y_true=sparse_y_true, sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        config = super().get_config()
        del config["target_class_ids"]
        return config


class BinaryIoU(IoU):
    """The IoU of binary predictions (positive at >= threshold), as keras.metrics.BinaryIoU.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.BinaryIoU(target_class_ids=[0, 1], threshold=0.3)
        >>> m.update_state([0, 1, 0, 1], [0.1, 0.2, 0.4, 0.7])
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, target_class_ids=(0, 1), threshold=0.5, name=None, dtype=None):
        super().__init__(2, target_class_ids, name=name, dtype=dtype)
        self.threshold = float(threshold)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = (jnp.asarray(y_pred, jnp.float32) >= self.threshold).astype(jnp.int32)
        return super().update_state(y_true, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype,
                "target_class_ids": self.target_class_ids, "threshold": self.threshold}


class OneHotIoU(IoU):
    """IoU for one-hot labels (their argmax along `axis` is the class), as
    keras.metrics.OneHotIoU; predictions are scores (their argmax) unless `sparse_y_pred`.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.OneHotIoU(num_classes=2, target_class_ids=[0])
        >>> m.update_state([[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, num_classes, target_class_ids, name=None, dtype=None,
                 ignore_class=None, sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, target_class_ids, name=name,
                         dtype=dtype, ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        config = super().get_config()
        del config["sparse_y_true"]
        return config


class OneHotMeanIoU(MeanIoU):
    """MeanIoU for one-hot labels (their argmax along `axis` is the class), as
    keras.metrics.OneHotMeanIoU; predictions are scores (their argmax) unless `sparse_y_pred`.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.OneHotMeanIoU(num_classes=2)
        >>> m.update_state([[1, 0], [1, 0], [0, 1], [0, 1]],
        ...                [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
        >>> round(float(m.result()), 4)
        0.3333
    """

    def __init__(self, num_classes, name=None, dtype=None, ignore_class=None,
                 sparse_y_pred=False, axis=-1):
        super().__init__(num_classes, name=name, dtype=dtype,
                         ignore_class=ignore_class, sparse_y_true=False,
                         sparse_y_pred=sparse_y_pred, axis=axis)

    def get_config(self):
        config = super().get_config()
        del config["sparse_y_true"]
        return config
