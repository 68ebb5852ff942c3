"""Feeds: how data reaches the compiled programs, as blocks on the device.

A block is (x, y, order, valid) plus the range of epoch steps it serves: the program's batch at
step i is x[order[(i - base) * B : ...]], `valid` marking real samples (kilnet.programs).

- ArrayFeed: arrays in memory. The whole dataset goes to the device once; each epoch is one
  block whose `order` is that epoch's permutation, drawn on the device from an explicit key.
- StreamFeed: data larger than memory. A NumPy memmap is read chunk by chunk in the same
  shuffled order an ArrayFeed would use (same batches, same results); an iterable or generator
  of (x, y) batches is consumed in order, as Keras does. Every block has the same shape, so
  streaming compiles once, not once per chunk.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator

import jax
import numpy as np

from kilnet import data as data_lib
from kilnet.errors import InputError
from kilnet import utils

# A streamed block holds this many bytes of samples at most (and at least one batch), so
# host memory for streaming stays bounded whatever the dataset's size.
STREAM_BLOCK_BYTES = 64 * 2**20


@dataclass
class Block:
    x: Any
    y: Any
    order: Any
    valid: Any
    base: int      # the epoch step whose batch starts at position 0 of `order`
    limit: int     # one past the last epoch step this block can serve


def epoch_order(key, n: int, padded: int, shuffle: bool):
    """The epoch's sample order, padded to whole batches, and which positions are real.

    `key` is (seed, fit call, epoch). The permutation is drawn on the host with NumPy: a
    jax.random.permutation on the device cost 0.8 s of XLA compilation per process on our
    2-core CPU (a 5-epoch seed-MLP job trains in about 1 s), against 1 ms here for 60,000
    samples; the 240 kB order is then sent to the device once per epoch.
    """
    order = np.zeros(padded, np.int32)
    order[:n] = utils.numpy_rng(*key).permutation(n) if shuffle else np.arange(n)
    return order, np.arange(padded) < n


class ArrayFeed:
    """Arrays in memory. x and y are arrays, or tuples of them for several model inputs or
    outputs (kilnet.structure); label_dtype matches y's structure."""

    def __init__(self, x, y, batch_size: int, *, shuffle: bool = False, label_dtype=None,
                 sharding=None):
        first = x[0] if isinstance(x, tuple) else x
        self.n = len(first)
        self.batch_size = batch_size
        self.steps = data_lib.steps_for(self.n, batch_size)
        self.sample_shape = tuple(first.shape[1:])
        self.x = (tuple(data_lib.to_device(a, sharding) for a in x) if isinstance(x, tuple)
                  else data_lib.to_device(x, sharding))
        self.y = None if y is None else _labels_to_device(y, label_dtype, sharding)
        self.shuffle = shuffle
        self._valid = None

    def blocks(self, key, start_step: int = 0) -> Iterator[Block]:
        order, valid = epoch_order(key, self.n, self.steps * self.batch_size,
                                   self.shuffle and key is not None)
        if self._valid is None:
            self._valid = jax.device_put(valid)
        yield Block(self.x, self.y, jax.device_put(order), self._valid, base=0,
                    limit=self.steps)


def _labels_to_device(y, label_dtype, sharding):
    if isinstance(y, tuple):
        dtypes = label_dtype if isinstance(label_dtype, tuple) else (label_dtype,) * len(y)
        return tuple(_labels_to_device(a, d, sharding) for a, d in zip(y, dtypes))
    array = np.asarray(y)
    return data_lib.to_device(np.asarray(array, dtype=label_dtype or
                                         data_lib.device_dtype(array)), sharding)


class StreamFeed:
    """Memmaps and iterables of (x, y) batches, one fixed-size block per chunk of steps."""

    def __init__(self, source, batch_size: int, *, y=None, shuffle=False, label_dtype=None,
                 steps=None, sample_shape=None, x_dtype=None):
        self.source, self.y_source = source, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.label_dtype = label_dtype
        self.is_array = isinstance(source, np.ndarray)
        if self.is_array:
            self.n = len(source)
            self.steps = data_lib.steps_for(self.n, batch_size)
            self.sample_shape, self.x_dtype = tuple(source.shape[1:]), data_lib.device_dtype(source)
        else:
            self.n, self.steps = None, steps
            self.sample_shape, self.x_dtype = sample_shape, x_dtype
        sample_bytes = max(1, int(np.prod(self.sample_shape)) * np.dtype(self.x_dtype).itemsize)
        self.block_steps = max(1, STREAM_BLOCK_BYTES // (sample_bytes * batch_size))
        if self.steps:
            self.block_steps = min(self.block_steps, self.steps)
        self._iterator = None

    @property
    def block_rows(self) -> int:
        return self.block_steps * self.batch_size

    def blocks(self, key, start_step: int = 0) -> Iterator[Block]:
        if self.is_array:
            yield from self._array_blocks(key, start_step)
        else:
            yield from self._iterable_blocks(start_step)

    def _array_blocks(self, key, start_step):
        padded = self.steps * self.batch_size
        order, valid = epoch_order(key, self.n, padded, self.shuffle and key is not None)
        for first in range(start_step, self.steps, self.block_steps):
            rows = slice(first * self.batch_size, (first + self.block_steps) * self.batch_size)
            idx, ok = order[rows], valid[rows]
            # Reading rows in sorted order keeps a memmap's reads sequential.
            sorted_idx = np.sort(idx[ok])
            rows_x = np.asarray(self.source[sorted_idx])
            rows_y = None if self.y_source is None else np.asarray(self.y_source[sorted_idx])
            check_block(rows_x, rows_y, first)
            x = self._pad(rows_x, self.x_dtype)
            y = None if rows_y is None else self._pad(rows_y, self.label_dtype)
            # Position p of the block holds sample idx[p]: map it into the sorted rows.
            local = np.zeros(self.block_rows, np.int32)
            local[:len(idx)][ok] = np.searchsorted(sorted_idx, idx[ok])
            mask = np.zeros(self.block_rows, bool)
            mask[:len(ok)] = ok
            yield Block(jax.device_put(x), None if y is None else jax.device_put(y),
                        jax.device_put(local), jax.device_put(mask), base=first,
                        limit=min(first + self.block_steps, self.steps))

    def _pad(self, rows, dtype):
        out = np.zeros((self.block_rows,) + rows.shape[1:], dtype)
        out[:len(rows)] = rows
        return out

    def _iterable_blocks(self, start_step):
        batches = self._epoch_iterator()
        if start_step:
            batches = itertools.islice(batches, start_step, None)
        first = start_step
        while self.steps is None or first < self.steps:
            want = self.block_steps if self.steps is None else min(self.block_steps,
                                                                   self.steps - first)
            chunk = list(itertools.islice(batches, want))
            if not chunk:
                break
            yield self._iterable_block(chunk, first)
            first += len(chunk)
            if len(chunk) < want:
                break

    def _epoch_iterator(self):
        if iter(self.source) is not self.source:  # re-iterable: a fresh pass per epoch
            return iter(self.source)
        if self._iterator is None:               # a one-shot iterator continues across epochs
            self._iterator = self.source
        return self._iterator

    def _iterable_block(self, chunk, first):
        x = np.zeros((self.block_rows,) + self.sample_shape, self.x_dtype)
        y = None
        mask = np.zeros(self.block_rows, bool)
        for j, batch in enumerate(chunk):
            bx, by = split_batch(batch, j + first)
            check_block(bx, by, j + first)
            if len(bx) > self.batch_size or tuple(bx.shape[1:]) != self.sample_shape:
                raise InputError(
                    f"Batch {j + first} of the data has shape {bx.shape}; every batch must have "
                    f"at most {self.batch_size} samples (the first batch's size) of shape "
                    f"{self.sample_shape}."
                )
            rows = slice(j * self.batch_size, j * self.batch_size + len(bx))
            x[rows] = bx
            if by is not None:
                if y is None:
                    y = np.zeros((self.block_rows,) + by.shape[1:], self.label_dtype or by.dtype)
                y[rows] = by
            mask[rows] = True
        order = np.arange(self.block_rows, dtype=np.int32)
        return Block(jax.device_put(x), None if y is None else jax.device_put(y),
                     jax.device_put(order), jax.device_put(mask), base=first,
                     limit=first + len(chunk))


def check_block(x, y, first_step: int):
    """Streamed data gets the NaN/inf check of in-memory data, one block at a time (a block
    is read once per epoch, so the check costs one min/max pass over data already in cache)."""
    from kilnet import validation
    where = f"the streamed batches from step {first_step}"
    for array, name in ((x, f"x ({where})"), (y, f"y ({where})")):
        if array is not None and array.dtype.kind == "f" and array.size:
            validation.check_finite(array, name)


def split_batch(batch, index):
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        x = np.asarray(batch[0])
        y = np.asarray(batch[1]) if len(batch) == 2 else None
        return x, y
    if isinstance(batch, np.ndarray):
        return batch, None
    raise InputError(
        f"Each item of a data generator must be a tuple (x, y) or (x,). Received at batch "
        f"{index}: {type(batch).__name__}"
    )


def is_stream(x) -> bool:
    """Data that is streamed in blocks rather than put on the device whole."""
    if isinstance(x, np.memmap):
        return True
    if isinstance(x, (np.ndarray, list, tuple, str, bytes, dict)) or hasattr(x, "__array__"):
        return False  # strings and dicts go to the input checks (kilnet.validation), not here
    return hasattr(x, "__iter__") or hasattr(x, "__next__")


def peek_iterable(source):
    """The first batch of an iterable (for shapes), and an iterable that still yields it."""
    if iter(source) is not source:
        first = next(iter(source), None)
        return first, source
    first = next(source, None)
    return first, (itertools.chain([first], source) if first is not None else source)
