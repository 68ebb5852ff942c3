"""From user arrays to device-resident arrays: conversion, validation split, device placement.

Datasets are put on the device once per fit/evaluate/predict call; the compiled programs index
them directly (kilnet.programs). uint8 images stay uint8 on the device (cast per batch inside
the program), float64 becomes float32, integer labels int32.
"""

from __future__ import annotations

import math
import mmap
import sys

import jax
import numpy as np


def as_array(value, argument: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"{argument} is required. Received: {argument}=None")
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged lists and the like
        raise ValueError(
            f"{argument} must be an array of numbers (a NumPy or JAX array, or nested lists of "
            f"equal length). Received: {type(value).__name__} that NumPy cannot convert: {error}"
        ) from None
    if array.ndim == 0:
        raise ValueError(f"{argument} must have a batch axis. Received: a scalar {argument}")
    return array


def device_dtype(array: np.ndarray):
    """The dtype an array is stored with on the device."""
    if array.dtype == np.uint8 or array.dtype == np.float32:
        return array.dtype
    if np.issubdtype(array.dtype, np.floating):
        return np.float32
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        return np.int32
    return array.dtype


# Below this many bytes an array is copied to the device as it is: a memory map of its own
# (host_zeros) cost two madvise calls and a map at every predict_on_batch (0.1 of its 0.96 ms,
# seed MLP, batch 64), and the copy it saves is small.
SMALL_BYTES = 1 << 20


def device_array(array: np.ndarray | None):
    """`array` as a NumPy array in the dtype it has on the device (device_dtype), left on the
    host: for an array that a program's call takes once.

    Example:
        >>> device_array(np.arange(3.0)).dtype
        dtype('float32')
    """
    return None if array is None else np.asarray(array, device_dtype(np.asarray(array)))


def to_device(array: np.ndarray | None, sharding=None):
    if array is None:
        return None
    if sharding is None and jax.default_backend() == "cpu":
        array = np.asarray(array)
        if array.nbytes < SMALL_BYTES:
            return jax.device_put(np.asarray(array, device_dtype(array)))
        # The CPU device can use a 64-byte-aligned host buffer in place: no second copy of
        # the dataset (600,000 MNIST-sized samples: 1.8 GB less peak memory).
        return jax.device_put(_aligned(array, device_dtype(array)))
    array = np.asarray(array, dtype=device_dtype(array))
    return jax.device_put(array, sharding) if sharding is not None else jax.device_put(array)


def _aligned(array, dtype, alignment: int = 64) -> np.ndarray:
    """`array` as `dtype`, in a buffer aligned to `alignment` bytes (a copy only if needed)."""
    array = np.asarray(array)
    if array.dtype == dtype and array.flags.c_contiguous and \
            array.ctypes.data % alignment == 0:
        return array
    out = host_zeros(array.shape, dtype)
    out[...] = array
    return out


def host_zeros(shape, dtype) -> np.ndarray:
    """A zero-filled host array in a memory map of its own: page-aligned (the CPU device then
    uses it in place) and in the system's ordinary pages. NumPy's allocator asks Linux for
    transparent huge pages for large arrays, and where the kernel compacts memory to find them
    on first touch, copying a 188 MB dataset into such an array took 1.0-1.3 s against 0.1 s
    (a third of the seed MLP's cold fit; 2-core AMD EPYC VM).

    Every caller fills the array right away (all of it but a last stream block's padding),
    so on Linux its pages are made present in one
    call (`MADV_POPULATE_WRITE`, Linux 5.14) instead of one fault per page as the copy first
    touches them: copying the 188 MB Fashion-MNIST training images in took 0.196 s into the
    shared anonymous map used before, 0.098 s into this one (2-core Intel Xeon, medians of 5).

    >>> from kilnet.data import host_zeros
    >>> a = host_zeros((2, 3), np.float32)
    >>> a.shape, a.dtype.name, float(a.sum()), a.ctypes.data % 4096
    ((2, 3), 'float32', 0.0, 0)
    """
    count = math.prod(shape)
    size = max(1, count * np.dtype(dtype).itemsize)
    # An anonymous map is zero-filled by the system.
    if hasattr(mmap, "MAP_PRIVATE"):  # Unix
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        _populate_small_pages(buffer)
    else:
        buffer = mmap.mmap(-1, size)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


# Linux's value (Python's mmap names it from 3.12); other systems may give 23 another meaning.
_MADV_POPULATE_WRITE = 23 if sys.platform.startswith("linux") else None


def _populate_small_pages(buffer: mmap.mmap) -> None:
    """Keep transparent huge pages out of `buffer` (above) and make its pages present now,
    where the system can; elsewhere they are made on first touch, as before."""
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buffer.madvise(mmap.MADV_NOHUGEPAGE)
    populate = getattr(mmap, "MADV_POPULATE_WRITE", _MADV_POPULATE_WRITE)
    if populate is None:
        return
    try:
        buffer.madvise(populate)
    except OSError:  # not Linux 5.14+: the pages are made as the caller writes them
        pass


def label_dtype_for(loss, y: np.ndarray):
    """Class-id labels stay integers; everything else is float32 for the loss arithmetic."""
    from kilnet import losses
    if isinstance(loss, losses.SparseCategoricalCrossentropy):
        return np.int32
    return np.float32


def held_out(n: int, validation_split: float) -> int:
    """How many of n samples `validation_split` holds out: n - floor(n * (1 - split)), Keras's
    split point (256 samples at 0.2 hold out 52, not floor(51.2))."""
    return n - int(math.floor(n * (1.0 - validation_split))) if validation_split else 0


def split_validation(x, y, validation_split: float):
    """Keras semantics: the last `validation_split` fraction (held_out), taken before any
    shuffling. x and y may be lists of arrays (several inputs or outputs), split alike."""
    n = len(x[0]) if isinstance(x, list) else len(x)
    split = n - held_out(n, validation_split)
    if validation_split and (split == 0 or split == n):
        raise ValueError(
            f"validation_split={validation_split} leaves {split} training and {n - split} "
            f"validation samples out of {n}; both must be at least 1. Give more samples or "
            "another validation_split.")

    def part(data, rows):
        return [a[rows] for a in data] if isinstance(data, list) else data[rows]

    return ((part(x, slice(None, split)), part(y, slice(None, split))),
            (part(x, slice(split, None)), part(y, slice(split, None))))


def steps_for(n: int, batch_size: int) -> int:
    return -(-n // batch_size)
