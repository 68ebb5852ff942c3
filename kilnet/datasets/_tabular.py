"""Keras's regression tables (Boston, California housing): reading and splitting.

Both files are `.npz` archives of plain float arrays `x` (rows of features)
and `y` (one target per row), read with `allow_pickle=False`. Keras shuffles
the rows with `np.random.RandomState(seed)` and keeps the first
`int(n * (1 - test_split))` for training; this module does the same.
"""

import numbers

import numpy as np

from ._idx import DatasetError
from ._safe_npz import load_npz


def check_test_split(test_split) -> None:
    """Keras's rule for `test_split`: a fraction in [0, 1).

    Example:

    >>> check_test_split(0.2)
    >>> check_test_split(1.0)
    Traceback (most recent call last):
    ...
    ValueError: Expected test_split to be a fraction of the data, 0 <= test_split < 1. Received: test_split=1.0
    """
    if not isinstance(test_split, numbers.Real) or not 0 <= test_split < 1:
        raise ValueError(
            "Expected test_split to be a fraction of the data, 0 <= test_split < 1. "
            f"Received: test_split={test_split!r}"
        )


def load_table(file, n_features: int):
    """Returns `(x, y)` from a `.npz` holding `x` (N, n_features) and `y` (N,) floats.

    Example:

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "table.npz")
    >>> np.savez(file, x=np.ones((4, 2)), y=np.arange(4.0))
    >>> [a.shape for a in load_table(file, 2)]
    [(4, 2), (4,)]
    """
    arrays = load_npz(file, ("x", "y"))
    x, y = arrays["x"], arrays["y"]
    if x.ndim != 2 or x.shape[1] != n_features or x.dtype.kind not in "fiu":
        raise DatasetError(
            f"{file}['x']: expected numbers of shape (N, {n_features}), found {x.dtype} {x.shape}."
        )
    if y.shape != (len(x),) or y.dtype.kind not in "fiu":
        raise DatasetError(
            f"{file}['y']: expected {len(x)} numbers of shape ({len(x)},), found {y.dtype} {y.shape}."
        )
    return x, y


def shuffled_split(x, y, test_split, seed):
    """`(x_train, y_train), (x_test, y_test)` split after Keras's shuffle.

    Example:

    >>> (x_train, _), (x_test, _) = shuffled_split(np.arange(10), np.arange(10), 0.2, 113)
    >>> len(x_train), len(x_test)
    (8, 2)
    """
    check_test_split(test_split)
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    split = int(len(x) * (1 - test_split))
    return (x[:split], y[:split]), (x[split:], y[split:])
