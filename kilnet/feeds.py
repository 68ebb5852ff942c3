"""Feeds: how data reaches the compiled programs, as blocks on the device.

A block is (x, y, order, valid) plus the range of epoch steps it serves: the program's batch at
step i is x[order[(i - base) * B : ...]], `valid` marking real samples (kilnet.programs).

- ArrayFeed: arrays in memory. The whole dataset goes to the device once; each epoch is one
  block whose `order` is that epoch's permutation, drawn on the device from an explicit key.
- StreamFeed: data larger than memory. A NumPy memmap is read chunk by chunk in the same
  shuffled order an ArrayFeed would use (same batches, same results).
- BatchFeed: batches from any loader (generators, PyDatasets, torch and tf.data loaders:
  kilnet.loaders), consumed in the source's order, as Keras does.
Every streamed block has the same shape, so streaming compiles once, not once per chunk. A
source whose batches change shape (each padded to its own longest sequence) ends a block at
each change: the blocks of each shape get a program of their own, as Keras's step is traced
again for each new shape.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import jax
import numpy as np

from kilnet import data as data_lib
from kilnet import loaders, structure
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
    # the real rows of the block's last batch when it is padded (a partial last batch), else
    # None: fit runs it at its own size where your code sees whole batches (kilnet.fit)
    last_rows: int | None = None
    # the rows of each batch of the block where they are not the feed's batch_size (a source
    # whose batches grow: BatchFeed), else None
    batch_size: int | None = None
    # the containers the block's x and y came in (kilnet.structure.container_of), which a
    # model's own steps get them back in: told to the Trainer as each block runs (fit's
    # training and validation data may come in different ones); None: as the Trainer has
    containers: tuple | None = None


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
                 sharding=None, steps_per_epoch: int | None = None, on_host: bool = False,
                 containers=None):
        first = x[0] if isinstance(x, tuple) else x
        self.containers = containers   # Block.containers
        self.n = len(first)
        self.batch_size = batch_size
        self.pass_steps = data_lib.steps_for(self.n, batch_size)   # batches in one pass
        # fit's steps_per_epoch, as Keras reads arrays: each epoch takes that many batches
        # of the current pass, and an epoch that reaches the pass's end stops there (the next
        # starts a new pass, reshuffled); without it an epoch is one pass.
        self.steps = steps_per_epoch or self.pass_steps
        self.one_shot = False   # a pass cut short is followed by a new one (fit's loop)
        self.sample_shape = tuple(first.shape[1:])
        # on_host: one batch, used once (train_on_batch). Its arrays stay NumPy arrays in the
        # device's dtypes and go to the device with the program's call, which copies each in
        # a few microseconds where a jax.device_put costs about 25 (2-core Intel Xeon).
        self.on_host = on_host and sharding is None

        def move(array):
            return (data_lib.device_array(array) if self.on_host
                    else data_lib.to_device(array, sharding))

        self.x = tuple(move(a) for a in x) if isinstance(x, tuple) else move(x)
        self.y = None if y is None else _labels_to_device(y, label_dtype, sharding,
                                                          self.on_host)
        self.shuffle = shuffle
        self._valid = None

    def blocks(self, key, start_step: int = 0) -> Iterator[Block]:
        if self.steps == self.pass_steps:   # an epoch is a pass
            order, valid = epoch_order(key, self.n, self.steps * self.batch_size,
                                       self.shuffle and key is not None)
            if self.on_host:
                self._valid = valid
            elif self._valid is None:   # one transfer for both (0.015 ms less a call)
                order, self._valid = jax.device_put((order, valid))
            else:
                order = jax.device_put(order)
            yield Block(self.x, self.y, order, self._valid, base=0,
                        limit=self.steps, last_rows=_short(self.n, self.batch_size),
                        containers=self.containers)
            return
        yield self._part_of_a_pass(key)

    def _part_of_a_pass(self, key) -> Block:
        """Epoch `key[2]`'s batches under steps_per_epoch: its stretch of its pass's order
        (pass and offset follow from the epoch number, so a resumed run reads the same),
        padded to steps_per_epoch batches so that every epoch runs one compiled program."""
        seed, calls, epoch = key
        epochs_per_pass = -(-self.pass_steps // self.steps)
        pass_index, within = divmod(epoch, epochs_per_pass)
        first = within * self.steps
        length = min(self.steps, self.pass_steps - first)
        order, valid = epoch_order((seed, calls, pass_index), self.n,
                                   self.pass_steps * self.batch_size, self.shuffle)
        rows = slice(first * self.batch_size, (first + length) * self.batch_size)
        size = self.steps * self.batch_size
        part_order, part_valid = np.zeros(size, np.int32), np.zeros(size, bool)
        part_order[:rows.stop - rows.start] = order[rows]
        part_valid[:rows.stop - rows.start] = valid[rows]
        return Block(self.x, self.y, jax.device_put(part_order), jax.device_put(part_valid),
                     base=0, limit=length, last_rows=_short(self.n, self.batch_size)
                     if first + length == self.pass_steps else None,
                     containers=self.containers)


def _short(n: int, batch_size: int) -> int | None:
    """The rows of a pass's partial last batch, or None when batches divide the samples."""
    return n % batch_size or None


def _labels_to_device(y, label_dtype, sharding, on_host=False):
    if isinstance(y, tuple):
        dtypes = label_dtype if isinstance(label_dtype, tuple) else (label_dtype,) * len(y)
        return tuple(_labels_to_device(a, d, sharding, on_host) for a, d in zip(y, dtypes))
    array = np.asarray(y)
    array = np.asarray(array, dtype=label_dtype or data_lib.device_dtype(array))
    return array if on_host else data_lib.to_device(array, sharding)


def _block_steps(sample_bytes: int, batch_size: int, steps: int | None) -> int:
    """Steps per streamed block: STREAM_BLOCK_BYTES of samples, at least one batch."""
    block_steps = max(1, STREAM_BLOCK_BYTES // (max(1, sample_bytes) * batch_size))
    return min(block_steps, steps) if steps else block_steps


class StreamFeed:
    """A memmap (x) and its labels, read one fixed-size block per chunk of steps, in the order
    an ArrayFeed would use."""

    def __init__(self, source, batch_size: int, *, y=None, shuffle=False, label_dtype=None):
        self.source, self.y_source = source, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.label_dtype = label_dtype
        self.n = len(source)
        self.steps = data_lib.steps_for(self.n, batch_size)
        self.sample_shape, self.x_dtype = tuple(source.shape[1:]), data_lib.device_dtype(source)
        sample_bytes = int(np.prod(self.sample_shape)) * np.dtype(self.x_dtype).itemsize
        self.block_steps = _block_steps(sample_bytes, batch_size, self.steps)

    @property
    def block_rows(self) -> int:
        return self.block_steps * self.batch_size

    def blocks(self, key, start_step: int = 0) -> Iterator[Block]:
        yield from self._array_blocks(key, start_step)

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
            limit = min(first + self.block_steps, self.steps)
            yield Block(jax.device_put(x), None if y is None else jax.device_put(y),
                        jax.device_put(local), jax.device_put(mask), base=first, limit=limit,
                        last_rows=_short(self.n, self.batch_size) if limit == self.steps
                        else None, containers=(None, None))   # one array each

    def _pad(self, rows, dtype):
        out = data_lib.host_zeros((self.block_rows,) + rows.shape[1:], dtype)
        out[:len(rows)] = rows
        return out

class BatchLayout(NamedTuple):
    """What the batches of one streamed block share: at most `rows` samples each, the
    per-sample shapes of their x arrays and label arrays (None without labels), the rows of
    each x array where the batch's arrays do not share one row count (`x_rows`: a batch a
    step of yours unpacks, or a disjoint graph's atoms and bonds for labels per molecule;
    then every batch of the block has exactly these rows, none padded; else None), and the
    containers x and y came in (Block.containers).

    >>> first = BatchLayout(4, ((7,),), ((7,),))
    >>> first.holds(BatchLayout(3, ((7,),), ((7,),))), first.holds(BatchLayout(4, ((5,),), ((5,),)))
    (True, False)
    >>> shapes = ((7,), (7,))
    >>> BatchLayout(4, shapes, None, (4, 2)).holds(BatchLayout(3, shapes, None, (3, 2)))
    False
    """
    rows: int
    x_shapes: tuple
    y_shapes: tuple | None
    x_rows: tuple | None = None
    containers: tuple | None = None
    loss_rows: int | None = None   # structure.ByBatch's, where x_rows are kept

    def holds(self, batch: "BatchLayout") -> bool:
        """Whether a batch of layout `batch` fits in a block of this one (padded)."""
        if self.x_rows is not None:
            return batch == self
        return batch.rows <= self.rows and batch._replace(rows=self.rows) == self

    def batch_bytes(self, x_dtypes) -> int:
        """The bytes of a batch's x arrays at this layout's rows."""
        rows = self.x_rows or (self.rows,) * len(self.x_shapes)
        return sum(r * int(np.prod(shape)) * np.dtype(dtype).itemsize
                   for r, shape, dtype in zip(rows, self.x_shapes, x_dtypes))


def _layout_of(xs, ys, containers=None, first_rows=None) -> BatchLayout:
    """A batch's layout. Where its arrays do not share one number of rows (a disjoint graph's
    atoms, bonds and molecules), each x array keeps its own (`x_rows`), the batch's rows
    are its labels' (the rows the loss reduces over), and `first_rows` (the reader's: those
    of x's first array in Keras's order) weigh its loss in the epoch's mean."""
    rows = tuple(len(a) for a in xs)
    label_rows = () if ys is None else tuple(len(a) for a in ys)
    as_given = len(set(rows + label_rows)) > 1
    return BatchLayout(label_rows[0] if label_rows else rows[0],
                       tuple(tuple(a.shape[1:]) for a in xs),
                       None if ys is None else tuple(tuple(a.shape[1:]) for a in ys),
                       rows if as_given else None, containers,
                       first_rows if as_given else None)


class _ReadBatch(NamedTuple):
    index: int     # its epoch step
    xs: list
    ys: list | None
    layout: BatchLayout


class BatchFeed:
    """Batches from any loader (kilnet.loaders): generators, PyDatasets, torch and tf.data
    loaders. Each block holds up to block_steps batches of one layout (BatchLayout), padded to
    the first batch's size, so the programs compile once; x and y are one array or a tuple
    (several inputs, outputs, and the sample weights after the labels), as in an ArrayFeed.

    Batches whose shapes change (a text pipeline padding each batch to its longest sentence)
    or that hold more samples than the first: a batch that does not fit the block's layout
    ends the block and begins the next, so each layout runs with programs of its own shapes
    (the Trainer caches them by shape), as Keras traces its step again for each new shape.
    A batch whose arrays differ in rows (16 unlabeled and 8 labeled images a model's own
    step unpacks; a disjoint graph's atoms, bonds and molecules) is held at its own rows,
    never padded (a structure.ByBatch block of that layout only). The arrays keep the first
    batch's dtypes.

    Training reads `steps` batches per epoch (steps_per_epoch, else one pass). As in Keras, an
    epoch continues the pass the last one left off, and a new pass (shuffled from the epoch's
    key for sources that allow it) starts when it is done; a one-shot generator has one pass
    only. Evaluation reads a fresh pass (a generator: from where it is).
    """

    def __init__(self, batches, reader, first, *, steps=None, shuffle=False,
                 label_dtypes=None):
        xs, ys = first   # the first batch, read (kilnet.loaders.BatchReader)
        self.batches, self.reader = batches, reader
        self.layout = _layout_of(xs, ys, reader.containers, reader.first_rows)  # the first's
        self.batch_size = self.layout.rows
        self.n = None
        self.steps = steps if steps is not None else batches.steps
        self.shuffle = shuffle
        self.one_shot = batches.one_shot
        self.x_dtypes = [data_lib.device_dtype(a) for a in xs]
        self.y_dtypes = None if ys is None else [
            dtype or a.dtype for a, dtype in zip(ys, label_dtypes or [None] * len(ys))]
        shapes = self.layout.x_shapes
        self.sample_shape = shapes[0] if len(shapes) == 1 else list(shapes)
        self.block_steps = self._steps_per_block(self.layout)
        self._pass, self._seen = None, 0   # the training pass under way

    @property
    def block_rows(self) -> int:
        return self.block_steps * self.batch_size

    @property
    def loss_by_rows(self) -> bool:
        """Whether the first batch's arrays hold other rows than its labels, so that the
        epoch's loss weighs each batch by its first x array's rows, as Keras's loss tracker
        (kilnet.programs.zero_sums)."""
        return self.layout.loss_rows is not None

    def _steps_per_block(self, layout: BatchLayout) -> int:
        sample_bytes = -(-layout.batch_bytes(self.x_dtypes) // layout.rows)
        return _block_steps(sample_bytes, layout.rows, self.steps)

    def blocks(self, key, start_step: int = 0) -> Iterator[Block]:
        """The epoch's blocks (key None: an evaluation pass, never shuffled)."""
        epoch = batches = self._epoch(key)
        try:
            if start_step:
                batches = itertools.islice(epoch, start_step, None)
            read = (self._read(batch, index)
                    for index, batch in enumerate(batches, start_step))
            for run, layout, batches_held in self._runs(read, start_step):
                yield self._block(run, layout, batches_held)
        finally:
            epoch.close()  # the source's on_epoch_end

    def _runs(self, read, start_step):
        """The read batches in runs that one block each holds: consecutive batches of one
        layout, at most a block's steps (and the steps the epoch has left). Yields (run, its
        layout, the batches its block holds)."""
        first, waiting = start_step, None   # waiting: a batch that ended the last run
        while self.steps is None or first < self.steps:
            head = waiting if waiting is not None else next(read, None)
            if head is None:
                return
            layout = head.layout
            if layout.x_rows is None:   # padded to the first batch's rows at least
                layout = layout._replace(rows=max(self.batch_size, layout.rows))
            want = self._steps_per_block(layout)
            if self.steps is not None:
                want = min(want, self.steps - first)
            run, waiting = [head], None
            while len(run) < want:
                batch = next(read, None)
                if batch is None or not layout.holds(batch.layout):
                    waiting = batch
                    break
                run.append(batch)
            ended = waiting is None and len(run) < want   # the source has no more batches
            whole_pass = ended and first == start_step
            yield run, layout, self._batches_held(run, layout, waiting is not None, whole_pass)
            if ended:
                return
            first += len(run)

    def _batches_held(self, run, layout, cut: bool, whole_pass: bool) -> int:
        """The batches a block for `run` holds: a whole block of the first batch's layout
        (block_steps), so one program runs every block. A run of another layout, or one that
        a batch of another layout cut short, holds the power of two at or above its length,
        so that its programs come in few sizes; as does a pass of unknown length that fits
        in one block: a generator of 3 batches of 2 samples is not padded to the 64 MB block
        (4 M rows: evaluating it took 330 ms, against 1.5 ms so)."""
        own_size = cut or layout != self.layout or (
            whole_pass and self.steps is None)
        if not own_size:
            return self.block_steps
        return min(self._steps_per_block(layout), 1 << (len(run) - 1).bit_length())

    def close(self):
        """Release the source's workers (a PyDataset's pool)."""
        self.batches.close()

    def _epoch(self, key):
        """One epoch's raw batches: at most `steps`, from the pass under way (training) or a
        fresh one (evaluation), between the source's epoch hooks."""
        source = self.batches
        training = key is not None
        permutation = None
        if training and self.shuffle and source.shuffles:
            permutation = utils.numpy_rng(*key).permutation
        source.begin_epoch()
        try:
            if not training or self._pass is None:
                self._pass, self._seen, fresh = source.new_pass(permutation), 0, True
            else:
                fresh = False
            count = 0
            while self.steps is None or count < self.steps:
                done = source.steps is not None and self._seen >= source.steps
                batch = None if done else next(self._pass, _END)
                if done or batch is _END:
                    self._pass = None
                    if count or fresh or self.one_shot:
                        return  # the pass is over: the epoch ends here
                    # The last epoch ended with its pass: this one starts the next.
                    self._pass, self._seen, fresh = source.new_pass(permutation), 0, True
                    continue
                self._seen += 1
                count += 1
                yield batch
            if not training:
                self._pass = None
        finally:
            source.end_epoch()

    def _read(self, batch, index: int) -> _ReadBatch:
        """One batch's arrays, checked as in-memory arrays are, with its layout."""
        bxs, bys, weight = self.reader.arrays(batch, index)
        self._check_count(bxs, len(self.x_dtypes), "x", index)
        bxs, bys = self.reader.check(bxs, bys, weight, index)
        if self.y_dtypes is None:
            bys = None   # the first batch had no labels: the programs take none
        else:
            self._check_count(bys, len(self.y_dtypes), "y", index)
        return _ReadBatch(index, bxs, bys, _layout_of(bxs, bys, self.reader.containers,
                                                      self.reader.first_rows))

    def _block(self, run, layout: BatchLayout, batches_held: int) -> Block:
        rows = batches_held * layout.rows
        x_rows = layout.x_rows or (layout.rows,) * len(layout.x_shapes)
        xs = [data_lib.host_zeros((batches_held * r,) + shape, dtype)
              for r, shape, dtype in zip(x_rows, layout.x_shapes, self.x_dtypes)]
        ys = None if layout.y_shapes is None else [
            data_lib.host_zeros((rows,) + shape, dtype)
            for shape, dtype in zip(layout.y_shapes, self.y_dtypes)]
        mask = np.zeros(rows, bool)
        for j, batch in enumerate(run):
            for out, array, r in zip(xs, batch.xs, x_rows):
                out[j * r:j * r + len(array)] = array
            at = slice(j * layout.rows, j * layout.rows + batch.layout.rows)
            for out, array in zip(ys or [], batch.ys or []):
                out[at] = array
            mask[at] = True
        last = run[-1].layout.rows
        x = [jax.device_put(a) for a in xs]
        x = _packed(x) if layout.x_rows is None else structure.ByBatch(x, layout.x_rows,
                                                                       layout.loss_rows)
        y = None if ys is None else _packed([jax.device_put(a) for a in ys])
        return Block(x, y, jax.device_put(np.arange(rows, dtype=np.int32)),
                     jax.device_put(mask), base=run[0].index, limit=run[-1].index + 1,
                     last_rows=last if last < layout.rows else None,
                     batch_size=None if layout.rows == self.batch_size else layout.rows,
                     containers=layout.containers)

    @staticmethod
    def _check_count(arrays, count: int, argument: str, index: int):
        """As many arrays as the first batch had."""
        if arrays is None or len(arrays) != count:
            got = 0 if arrays is None else len(arrays)
            raise InputError(
                f"Batch {index} has {got} {argument} arrays (labels, then sample weights) where "
                f"the first batch had {count}; every batch must have the same structure. "
                f"Received at batch {index}: {got} arrays")


_END = object()


def _packed(arrays):
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def check_block(x, y, first_step: int):
    """Streamed data gets the NaN/inf check of in-memory data, one block at a time (a block
    is read once per epoch, so the check costs one min/max pass over data already in cache)."""
    from kilnet import validation
    where = f"the streamed batches from step {first_step}"
    for array, name in ((x, f"x ({where})"), (y, f"y ({where})")):
        if array is not None and array.dtype.kind == "f" and array.size:
            validation.check_finite(array, name)


def is_stream(x) -> bool:
    """Data that is streamed in blocks rather than put on the device whole: a memmap, or a
    source of batches (kilnet.loaders.is_loader)."""
    return isinstance(x, np.memmap) or loaders.is_loader(x)
