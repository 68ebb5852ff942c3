"""Keras's helpers for a batch's `(x, y, sample_weight)` tuple, as a custom `train_step`
unpacks its `data` (Keras's guide "Customizing what happens in fit()")."""

from __future__ import annotations


def pack_x_y_sample_weight(x, y=None, sample_weight=None):
    """The batch tuple Keras's data sources give: `x` alone (as `(x,)` when x is itself a
    list or tuple), `(x, y)` or `(x, y, sample_weight)`.

    Example:
        >>> from kilnet import utils
        >>> utils.pack_x_y_sample_weight([1, 2], [3]), utils.pack_x_y_sample_weight(5)
        (([1, 2], [3]), 5)
    """
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def unpack_x_y_sample_weight(data):
    """`(x, y, sample_weight)` from a batch: y and sample_weight are None where the batch does
    not have them.

    Example:
        >>> from kilnet import utils
        >>> utils.unpack_x_y_sample_weight(("x", "y"))
        ('x', 'y', None)
    """
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return (data, None, None)
    if len(data) == 1:
        return (data[0], None, None)
    if len(data) == 2:
        return (data[0], data[1], None)
    if len(data) == 3:
        return data
    raise ValueError("A batch holds (x,), (x, y) or (x, y, sample_weight). Received: a tuple "
                     f"of {len(data)} items")
