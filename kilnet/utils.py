"""Seeding. Randomness is always an explicit JAX key; this module only decides where the
first key comes from."""

from __future__ import annotations

import os
import random

import jax
import numpy as np

_seed = {"value": None, "drawn": 0}


def set_random_seed(seed: int) -> None:
    """Make model initialization and training reproducible, as keras.utils.set_random_seed.

    Also seeds Python's and NumPy's global generators, for user code that relies on them.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    _seed["value"], _seed["drawn"] = int(seed), 0
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def clear_session() -> None:
    """Free JAX's compiled-program caches, as Keras's keras.utils.clear_session frees its
    backend state. Layer names need no reset: kilnet numbers them per model.

    Example:
        >>> import kilnet
        >>> kilnet.utils.clear_session()
        >>> kilnet.layers.Dense(2).name
        'dense'
    """
    jax.clear_caches()


def seed_is_set() -> bool:
    """Whether set_random_seed decided the seeds of this process."""
    return _seed["value"] is not None


def next_seed() -> int:
    """A fresh integer seed: derived from set_random_seed's seed if set, else from the OS."""
    if _seed["value"] is None:
        return int.from_bytes(os.urandom(4), "little")
    _seed["drawn"] += 1
    return (_seed["value"] * 1_000_003 + _seed["drawn"]) % 2**31


def numpy_rng(seed: int, *purpose: int) -> np.random.Generator:
    """A NumPy generator for (seed, purpose...): used for weight init and data order."""
    return np.random.default_rng([int(seed), *map(int, purpose)])


def raw_key(seed: int, *purpose: int):
    """A JAX PRNG key (raw uint32[2]) for (seed, purpose...), made on the host: no XLA op."""
    state = np.random.SeedSequence([int(seed), *map(int, purpose)]).generate_state(2, np.uint32)
    return jax.device_put(state)


# -- label and array helpers (Keras's keras.utils names) ----------------------------------------
def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot rows for integer class ids, as keras.utils.to_categorical: the class axis is
    added last, a trailing axis of size 1 is dropped first ((n, 1) ids give (n, classes)), and
    `num_classes` defaults to max(x) + 1. Float ids are truncated to integers, as in Keras.

    Returns a float32 NumPy array. Ids below 0 or not below `num_classes` are refused (Keras
    would wrap a negative id to the last class).

    Example:
        >>> import kilnet
        >>> kilnet.utils.to_categorical([0, 2, 1], num_classes=3)
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]], dtype=float32)
        >>> kilnet.utils.to_categorical([[1], [0]]).shape
        (2, 2)
    """
    ids = np.array(x, dtype=np.int64)
    shape = ids.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    ids = ids.reshape(-1)
    if not num_classes:  # None (or 0, as Keras): inferred from the ids
        if ids.size == 0:
            raise ValueError("to_categorical needs num_classes when x is empty.")
        num_classes = int(ids.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be a positive integer. Received: "
                         f"num_classes={num_classes!r}")
    num_classes = int(num_classes)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must be in [0, {num_classes}) for "
                         f"num_classes={num_classes}. Received ids from {int(ids.min())} to "
                         f"{int(ids.max())}.")
    out = np.zeros((ids.size, num_classes), np.float32)
    out[np.arange(ids.size), ids] = 1.0
    return out.reshape(tuple(shape) + (num_classes,))


def normalize(x, axis=-1, order=2) -> np.ndarray:
    """`x` divided by its `order`-norm along `axis`, as keras.utils.normalize on NumPy input:
    a slice whose norm is 0 is left as it is (divided by 1). `order` is any np.linalg.norm
    order for vectors (1, 2, np.inf, ...). Integer input gives float32; float input keeps its
    dtype.

    Example:
        >>> import numpy as np, kilnet
        >>> kilnet.utils.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
        array([[0.6, 0.8],
               [0. , 0. ]])
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if x.ndim == 0:
        x = x.reshape(1)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"normalize: axis must be an integer. Received: axis={axis!r}")
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return (x / np.expand_dims(norm, axis)).astype(x.dtype, copy=False)
