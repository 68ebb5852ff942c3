"""ArrayDataset: what kilnet's dataset helpers return, in place of Keras's tf.data.Dataset.

It holds arrays (or a source that reads rows on demand, such as image files) and yields
(x, y) batches of NumPy arrays. It is re-iterable, so `model.fit(ds, epochs=...)`,
`validation_data=ds`, `evaluate(ds)` and `predict(ds)` take it through kilnet's
iterable-of-batches path, and each pass reshuffles when asked. The tf.data calls tutorials
chain (`cache`, `prefetch`, `shuffle`, `map`, `take`, `batch`, `unbatch`) return a new
dataset; other tf.data methods raise an AttributeError that names what to do instead.
"""

from __future__ import annotations

import copy
import math
import random

import numpy as np

from kilnet.utils import _seeding

# tf.data methods that have no equivalent here, and what to do instead.
_TF_ONLY = {
    "repeat": "kilnet's fit() starts a fresh pass each epoch: drop .repeat()",
    "filter": "filter the arrays with NumPy first, then build an ArrayDataset",
    "padded_batch": "pad with kilnet.utils.pad_sequences, then batch",
    "interleave": "concatenate the arrays with NumPy first",
    "flat_map": "reshape the arrays with NumPy first",
    "zip": "build an ArrayDataset(x, y) from the arrays",
    "concatenate": "concatenate the arrays with NumPy first",
    "with_options": "drop it: there are no tf.data options here",
    "apply": "call your function on the dataset directly",
    "enumerate": "use Python's enumerate(ds)",
    "window": "use kilnet.utils.timeseries_dataset_from_array",
    "rebatch": "use .unbatch().batch(n)",
    "element_spec": "look at the shapes of ds[0]",
}


class ArrayDataset:
    """A re-iterable dataset of (x, y) NumPy batches, as the tf.data.Dataset that
    keras.utils.image_dataset_from_directory and friends return.

    Args:
        x: an array (first axis: samples), or any object with `len()` whose `[indices]`
            returns those rows as an array (kilnet's directory datasets read files this way).
        y: labels with one row per sample, or None for a dataset of inputs only.
        batch_size: samples per batch; None yields one sample at a time (see `batch`).
        shuffle: whether each pass over the dataset draws a new order of the samples.
        seed: the seed of those orders (None: one from kilnet.utils.set_random_seed's stream).
        class_names: the names of the classes, kept as the `class_names` attribute.

    Example:
        >>> import numpy as np, kilnet
        >>> ds = kilnet.utils.ArrayDataset(np.arange(10.0), np.arange(10) % 2, batch_size=4)
        >>> len(ds), ds[2]
        (3, (array([8., 9.]), array([0, 1])))
        >>> [len(x) for x, y in ds.map(lambda x, y: (x * 2, y)).take(2)]
        [4, 4]
    """

    # fit(shuffle=True) leaves the order to the dataset, as Keras's fit leaves a tf.data
    # dataset's (kilnet.loaders): a dataset made without shuffle trains in its own order
    # (keras.io's weather forecasting), a shuffled one draws a new order each epoch.
    reordered_by_fit = False

    def __init__(self, x, y=None, batch_size=32, *, shuffle=False, seed=None,
                 class_names=None):
        _check_rows(x, "x")
        if y is not None:
            _check_rows(y, "y")
            if len(y) != len(x):
                raise ValueError(f"ArrayDataset: x and y must have one row per sample. "
                                 f"Received: len(x)={len(x)}, len(y)={len(y)}")
        _check_batch_size(batch_size)
        self._x, self._y = x, y
        self.batch_size = batch_size
        self.class_names = class_names
        self._shuffle = bool(shuffle)
        self._reshuffle = True
        self._seed = _seeding.next_seed() if seed is None else int(seed)
        self._passes = 0
        self._sample_maps = ()   # maps given while unbatched: applied to each sample
        self._batch_maps = ()    # maps given while batched: applied to each batch
        self._limit = None       # take(n): at most n elements per pass
        self._drop_remainder = False

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of elements (batches, or samples when unbatched) in one pass."""
        n = len(self._x)
        if self.batch_size is not None:
            n = n // self.batch_size if self._drop_remainder else math.ceil(n / self.batch_size)
        return n if self._limit is None else min(n, self._limit)

    def __getitem__(self, index):
        """Element `index` in the order of the pass now running (or the first pass)."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"ArrayDataset indices are integers. Received: index={index!r}")
        count = len(self)
        if not -count <= index < count:
            raise IndexError(f"ArrayDataset: index {index} is out of range for {count} "
                             "elements.")
        return self._element(self._order(self._passes), int(index) % count)

    def __iter__(self):
        """One pass; each new pass of a shuffled dataset draws a new order."""
        order = self._order(self._passes)
        count = len(self)
        if self._shuffle and self._reshuffle:
            self._passes += 1
        return (self._element(order, i) for i in range(count))

    def on_epoch_end(self):
        """Called by fit after each epoch that read the dataset by index: the next epoch of a
        shuffled dataset draws a new order, as each pass of `for batch in ds` does.

        Example:
            >>> import numpy as np, kilnet
            >>> ds = kilnet.utils.ArrayDataset(np.arange(6.0), batch_size=6, shuffle=True,
            ...                                seed=1)
            >>> first = ds[0].tolist()
            >>> ds.on_epoch_end()
            >>> ds[0].tolist() != first, sorted(ds[0].tolist()) == sorted(first)
            (True, True)
        """
        if self._shuffle and self._reshuffle:
            self._passes += 1

    def cardinality(self):
        """The number of elements in one pass, as tf.data's `cardinality()` gives it: a
        scalar that `int()` and `.numpy()` read (keras.io's text classification prints
        `int(ds.cardinality())`). The same as `len(ds)`.

        Example:
            >>> import numpy as np
            >>> from kilnet.utils import ArrayDataset
            >>> int(ArrayDataset(np.zeros(10), batch_size=4).cardinality())
            3
        """
        return np.asarray(len(self), np.int64).view(TensorLikeArray)

    def as_numpy_iterator(self):
        """An iterator over one pass (the elements are NumPy arrays already)."""
        return iter(self)

    @property
    def x(self) -> np.ndarray:
        """The inputs of every sample, in stored order (before shuffling and maps)."""
        return _rows(self._x, np.arange(len(self._x)))

    @property
    def y(self):
        """The labels of every sample in stored order, or None."""
        return None if self._y is None else _rows(self._y, np.arange(len(self._y)))

    def as_arrays(self):
        """One pass of the dataset (maps applied) joined into arrays: (x, y) or x."""
        elements = list(self)
        if self.batch_size is None:
            return _stack(elements)
        return _concatenate(elements)

    # -- tf.data's chained calls --------------------------------------------------------------
    def cache(self, filename=""):
        """The dataset itself: its arrays already live in memory (or are read on demand)."""
        if filename:
            raise ValueError("ArrayDataset.cache: caching to a file is not supported. "
                             f"Received: filename={filename!r}; call .cache() without it.")
        return self

    def prefetch(self, buffer_size=None):
        """The dataset itself: kilnet's fit already reads ahead by whole blocks of batches."""
        return self

    def shuffle(self, buffer_size, seed=None, reshuffle_each_iteration=True):
        """A copy whose samples are reshuffled at every pass (a full shuffle: any
        `buffer_size` mixes at least as well as tf.data's buffer)."""
        if isinstance(buffer_size, bool) or not isinstance(buffer_size, (int, np.integer)) \
                or buffer_size < 1:
            raise ValueError("shuffle: buffer_size must be a positive integer. "
                             f"Received: buffer_size={buffer_size!r}")
        out = self._copy()
        out._shuffle, out._reshuffle = True, bool(reshuffle_each_iteration)
        out._seed = _seeding.next_seed() if seed is None else int(seed)
        return out

    def map(self, map_func, num_parallel_calls=None, deterministic=None, name=None):
        """A copy that applies `map_func` to each element: to each batch (called as
        `map_func(x, y)` or `map_func(x)` on NumPy arrays), or to each sample when unbatched."""
        if not callable(map_func):
            raise TypeError(f"map: map_func must be callable. Received: map_func={map_func!r}")
        out = self._copy()
        if out.batch_size is None:
            out._sample_maps += (map_func,)
        else:
            out._batch_maps += (map_func,)
        return out

    def take(self, count):
        """A copy that stops after `count` elements per pass (-1: all of them)."""
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < -1:
            raise ValueError(f"take: count must be an integer >= -1. Received: count={count!r}")
        out = self._copy()
        if count != -1:
            out._limit = int(count) if out._limit is None else min(out._limit, int(count))
        return out

    def batch(self, batch_size, drop_remainder=False):
        """A copy that groups the samples of an unbatched dataset into batches."""
        if self.batch_size is not None:
            raise ValueError(f"batch: the dataset is already batched (batch_size="
                             f"{self.batch_size}); call .unbatch() first.")
        if self._limit is not None:
            raise ValueError("batch: call .batch() before .take(): take's count would change "
                             "meaning from samples to batches.")
        _check_batch_size(batch_size, allow_none=False)
        out = self._copy()
        out.batch_size, out._drop_remainder = int(batch_size), bool(drop_remainder)
        return out

    def unbatch(self):
        """A copy that yields one sample at a time."""
        if self._batch_maps or self._limit is not None:
            raise ValueError("unbatch: the dataset has a map() or take() on its batches; call "
                             ".unbatch() before them.")
        out = self._copy()
        out.batch_size, out._drop_remainder = None, False
        return out

    def __getattr__(self, name):
        if name in _TF_ONLY:
            raise AttributeError(f"ArrayDataset has no tf.data method {name!r}: "
                                 f"{_TF_ONLY[name]}.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self):
        return (f"<ArrayDataset: {len(self._x)} samples, batch_size={self.batch_size}, "
                f"labels={'yes' if self._y is not None else 'no'}>")

    # -- helpers ------------------------------------------------------------------------------
    def _copy(self):
        out = copy.copy(self)
        out._passes = 0
        return out

    def _order(self, pass_index: int) -> np.ndarray:
        n = len(self._x)
        if not self._shuffle:
            return np.arange(n)
        return _seeding.numpy_rng(self._seed, pass_index).permutation(n)

    def _element(self, order, i: int):
        if self.batch_size is None:
            return self._sample(int(order[i]))
        rows = order[i * self.batch_size:(i + 1) * self.batch_size]
        if self._sample_maps:  # each sample mapped first, then stacked
            element = _stack([self._sample(int(r)) for r in rows])
        else:
            element = self._pack(_rows(self._x, rows),
                                 None if self._y is None else _rows(self._y, rows))
        return _with_numpy(_apply(self._batch_maps, element))

    def _sample(self, row: int):
        rows = np.array([row])
        x = _rows(self._x, rows)[0]
        y = None if self._y is None else _rows(self._y, rows)[0]
        return _with_numpy(_apply(self._sample_maps, self._pack(x, y)))

    @staticmethod
    def _pack(x, y):
        return x if y is None else (x, y)


class TensorLikeArray(np.ndarray):
    """The arrays an ArrayDataset yields: NumPy arrays that also answer tf.Tensor's
    `.numpy()`, so tutorial lines written for tf.data (`images[0].numpy().astype("uint8")`,
    `inputs.numpy().shape`, `y[0].numpy()`, `text.numpy()[0].decode("utf-8")`) run.
    Everything else is NumPy's. As a tensor's, a number taken out (`y[0]`) is a scalar array
    that still answers `.numpy()`, and `.numpy()` gives text as UTF-8 bytes, as a tf.string
    tensor's does (the array itself keeps Python strings, which kilnet's text layers take, and
    a text element taken out is that string).

    Example:
        >>> import numpy as np
        >>> from kilnet.utils import ArrayDataset
        >>> x, y = next(iter(ArrayDataset(np.ones((4, 2)), np.zeros(4), batch_size=2)))
        >>> x.numpy().shape, type(x.numpy()).__name__, y[0].numpy()
        ((2, 2), 'ndarray', np.float64(0.0))
        >>> text, _ = next(iter(ArrayDataset(np.array(["good", "bad"], object), np.zeros(2))))
        >>> text.numpy()[0], text.numpy()[1].decode("utf-8"), text[1]
        (b'good', 'bad', 'bad')
    """

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if isinstance(item, (np.ndarray, str, bytes)) or self.dtype == object:
            return item   # a text element stays a Python string (os.path, str methods)
        return np.asarray(item, dtype=self.dtype).view(TensorLikeArray)

    def numpy(self):
        """The array as NumPy gives it, as tf.Tensor.numpy() does: an array (text as UTF-8
        bytes, in an object array), or a NumPy scalar (bytes for text) for a scalar."""
        array = np.asarray(self)
        if array.dtype.kind == "U" or (array.dtype == object and any(
                isinstance(item, str) for item in array.flat)):
            array = np.array([item.encode("utf-8") if isinstance(item, str) else item
                              for item in array.flat], dtype=object).reshape(array.shape)
        return array[()] if array.ndim == 0 else array

    def __repr__(self):
        return repr(np.asarray(self))   # shown as the NumPy array it is


def _with_numpy(element):
    """An element's arrays (in tuples, lists and dicts) as TensorLikeArray views (no copy)."""
    if isinstance(element, np.ndarray):
        return element.view(TensorLikeArray)
    if isinstance(element, (tuple, list)):
        return type(element)(_with_numpy(e) for e in element)
    if isinstance(element, dict):
        return {key: _with_numpy(value) for key, value in element.items()}
    return element


def _apply(maps, element):
    for fn in maps:
        element = fn(*element) if isinstance(element, tuple) else fn(element)
    return element


def _rows(source, indices) -> np.ndarray:
    return np.asarray(source[np.asarray(indices, dtype=np.int64)])


def _stack(elements):
    if elements and isinstance(elements[0], tuple):
        return tuple(np.stack(part) for part in zip(*elements))
    return np.stack(elements)


def _concatenate(elements):
    if elements and isinstance(elements[0], tuple):
        return tuple(np.concatenate(part) for part in zip(*elements))
    return np.concatenate(elements)


def _check_rows(source, name):
    if isinstance(source, (str, bytes)) or not (hasattr(source, "__len__")
                                                and hasattr(source, "__getitem__")):
        raise TypeError(f"ArrayDataset: {name} must be an array with one row per sample. "
                        f"Received: {name} of type {type(source).__name__}")


def _check_batch_size(batch_size, allow_none=True):
    if batch_size is None and allow_none:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ValueError("batch_size must be a positive integer"
                         f"{' or None' if allow_none else ''}. Received: batch_size={batch_size!r}")


# -- split_dataset ---------------------------------------------------------------------------
def split_dataset(dataset, left_size=None, right_size=None, shuffle=False, seed=None):
    """Two datasets from one, as keras.utils.split_dataset: `left_size` and `right_size` are
    sample counts (int) or fractions (float in (0, 1)); either defaults to the rest. With
    `shuffle`, the samples are shuffled first in the order Python's `random.shuffle` gives
    for `seed`, as Keras does (without touching Python's global generator).

    `dataset` is an array, a tuple or list of arrays with one row per sample (e.g. (x, y)),
    or an ArrayDataset (the halves keep its batch size and class names). Arrays give
    unbatched ArrayDatasets, as Keras gives unbatched tf.data datasets: call `.batch(n)`.

    Example:
        >>> import numpy as np, kilnet
        >>> left, right = kilnet.utils.split_dataset(np.arange(10), left_size=0.8)
        >>> len(left), len(right), int(right[0])
        (8, 2, 8)
    """
    x, y, batch_size, class_names = _split_source(dataset)
    if left_size is None and right_size is None:
        raise ValueError("split_dataset: give left_size or right_size (or both). "
                         "Received: left_size=None and right_size=None")
    total = len(x)
    order = list(range(total))
    if shuffle:
        random.Random(random.randint(0, int(1e6)) if seed is None else seed).shuffle(order)
    left, right = _split_sizes(left_size, right_size, total)
    order = np.array(order, dtype=np.int64)
    halves = []
    for rows in (order[:left], order[total - right:]):
        part_y = None if y is None else _rows(y, rows)
        halves.append(ArrayDataset(_rows(x, rows), part_y, batch_size=batch_size,
                                   class_names=class_names))
    return tuple(halves)


def _split_source(dataset):
    if isinstance(dataset, ArrayDataset):
        return dataset.x, dataset.y, dataset.batch_size, dataset.class_names
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and not np.isscalar(dataset[0]):
        x, y = (np.asarray(part) for part in dataset)
        if len(x) != len(y):
            raise ValueError(f"split_dataset: the arrays of dataset must have one row per "
                             f"sample. Received lengths {len(x)} and {len(y)}")
        return x, y, None, None
    if hasattr(dataset, "__len__") and not isinstance(dataset, (str, bytes, dict)):
        return np.asarray(dataset), None, None, None
    raise TypeError("split_dataset: dataset must be an array, a tuple (x, y) of arrays or an "
                    f"ArrayDataset. Received: dataset of type {type(dataset).__name__}")


def _split_sizes(left, right, total):
    """Keras's rule: floats are fractions rounded to counts, a missing side is the rest."""
    counts = []
    for name, size in (("left_size", left), ("right_size", right)):
        if size is None:
            counts.append(None)
        elif isinstance(size, (float, np.floating)) and 0 < size < 1:
            counts.append(round(float(size) * total))
        elif (isinstance(size, (int, np.integer)) and not isinstance(size, bool)
              and 0 < size < total):
            counts.append(int(size))
        else:
            raise ValueError(f"split_dataset: {name} must be a positive integer smaller than "
                             f"{total} (the number of samples) or a float in (0, 1). "
                             f"Received: {name}={size!r}")
    left, right = counts
    left = total - right if left is None else left
    right = total - left if right is None else right
    if left + right > total or not left or not right:
        raise ValueError(f"split_dataset: left_size and right_size give {left} and {right} "
                         f"samples of {total}; both must be non-empty and together at most "
                         f"{total}.")
    return left, right
