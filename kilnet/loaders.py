"""Data from any loader: each kind of batch source as one `Batches` that kilnet.feeds reads.

Keras's fit/evaluate/predict take, besides arrays, Python generators, `keras.utils.PyDataset`,
PyTorch `DataLoader`s and `tf.data.Dataset`s (keras/src/trainers/data_adapters). kilnet takes
the same, plus map-style torch `Dataset`s, and never imports torch or tensorflow: each library
is recognised by its interface (and, for torch, by its classes' module names).

Every source becomes a `Batches`: passes over its batches, with NumPy leaves. A batch is
`x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)` as in Keras (`unpack`), where x and y are an
array, a tuple/list of arrays or a dict by name. `BatchReader` turns a batch into the arrays the
programs take (one per model input, one per trained output; kilnet.structure) and checks them
as in-memory arrays are checked (kilnet.validation), naming the batch.
"""

from __future__ import annotations

import ast
import itertools
import multiprocessing
import multiprocessing.pool
import signal
import sys
import warnings
from typing import Callable, Iterator

import numpy as np

from kilnet import structure, validation
from kilnet.errors import InputError


class PyDataset:
    """Base class for a dataset of batches written in Python, as Keras's `keras.utils.PyDataset`.

    A subclass defines `__len__` (the number of batches) and `__getitem__(index)` (batch
    `index`: `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`), and may define `on_epoch_begin`
    and `on_epoch_end`, called around every epoch. With `workers > 1`, fit() prepares the next
    batches ahead in a thread pool (a process pool with `use_multiprocessing=True`; the dataset
    must then be picklable), at most `max_queue_size` ahead, and still trains on them in index
    order. `steps_per_epoch` defaults to `len(dataset)`, and fit(shuffle=True) shuffles the
    order of the batches each epoch, from the fit's seed.

    Example:

    >>> import numpy as np
    >>> class Squares(PyDataset):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.x = np.arange(10, dtype="float32").reshape(10, 1)
    ...     def __len__(self):
    ...         return 3
    ...     def __getitem__(self, index):
    ...         rows = self.x[index * 4:(index + 1) * 4]
    ...         return rows, rows ** 2
    >>> data = Squares(workers=2)
    >>> data.num_batches, data.workers, len(data[2][0])
    (3, 2, 2)
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        for name, value in (("workers", workers), ("max_queue_size", max_queue_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"PyDataset's {name} must be a positive integer. Received: "
                                 f"{name}={value!r}")
        self.workers = int(workers)
        self.use_multiprocessing = bool(use_multiprocessing)
        self.max_queue_size = int(max_queue_size)

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__: the number of "
                                  "batches in the dataset.")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index): "
                                  "the batch at that position.")

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    @property
    def num_batches(self):
        """The number of batches, `len(self)` (None in a subclass means endless)."""
        return len(self)

    def on_epoch_begin(self):
        """Called at the start of every epoch (and of every evaluation pass)."""

    def on_epoch_end(self):
        """Called at the end of every epoch (and of every evaluation pass)."""


# -- what a source is ------------------------------------------------------------------------------
def _class_names(value) -> list[tuple[str, str]]:
    return [(cls.__module__ or "", cls.__name__) for cls in type(value).__mro__]


def is_torch_dataloader(value) -> bool:
    """A `torch.utils.data.DataLoader` (recognised by its class, torch is never imported).

    >>> is_torch_dataloader([1, 2])
    False
    """
    return any(name == "DataLoader" and module.startswith("torch.utils.data")
               for module, name in _class_names(value))


def is_torch_dataset(value) -> bool:
    """A map-style torch `Dataset`: per-sample items, batched by kilnet.

    >>> is_torch_dataset(range(3))
    False
    """
    return (not is_torch_dataloader(value) and hasattr(value, "__getitem__")
            and hasattr(value, "__len__")
            and any(module.split(".")[0] == "torch" for module, _ in _class_names(value)))


def is_tf_dataset(value) -> bool:
    """A `tf.data.Dataset`, or anything read the same way (as_numpy_iterator, cardinality),
    that is not read by index (`__getitem__`: kilnet's ArrayDataset answers tf.data's calls
    too, and is read by index).

    >>> is_tf_dataset(iter([]))
    False
    """
    return (hasattr(value, "as_numpy_iterator") and hasattr(value, "cardinality")
            and not hasattr(value, "__getitem__"))


def is_indexed(value) -> bool:
    """A dataset of batches by index: kilnet's or Keras's PyDataset, or anything with
    `__len__` and `__getitem__` that is not a container of samples.

    >>> is_indexed(PyDataset())
    True
    """
    if isinstance(value, PyDataset):
        return True
    if isinstance(value, (np.ndarray, list, tuple, dict, str, bytes, range)) or \
            hasattr(value, "__array__") or is_torch_dataset(value) or is_tf_dataset(value):
        return False
    return hasattr(value, "__getitem__") and (hasattr(value, "__len__")
                                              or hasattr(value, "num_batches"))


def is_loader(value) -> bool:
    """A source of batches rather than arrays: a generator, an iterable of batches, a
    PyDataset, a torch DataLoader or Dataset, a tf.data.Dataset.

    >>> is_loader(iter([(np.zeros(2), np.zeros(2))])), is_loader(np.zeros(2))
    (True, False)
    """
    if isinstance(value, (np.ndarray, list, tuple, str, bytes, dict)) or \
            hasattr(value, "__array__"):
        return False  # arrays, and what kilnet.validation explains (strings, dicts)
    return (hasattr(value, "__iter__") or hasattr(value, "__next__") or is_indexed(value)
            or is_torch_dataset(value))


def is_one_shot(value) -> bool:
    """An iterator that is used up as it is read (a generator): it cannot start a new pass.

    >>> is_one_shot(iter([1])), is_one_shot(PyDataset())
    (True, False)
    """
    if is_indexed(value) or is_torch_dataset(value) or is_tf_dataset(value) or \
            is_torch_dataloader(value):
        return False  # iter() on a DataLoader would start its workers: decided by class
    return iter(value) is value


# -- batches ---------------------------------------------------------------------------------------
def to_numpy(value):
    """A batch with NumPy arrays for leaves: torch tensors through .detach().cpu().numpy(),
    anything else through np.asarray; tuples, lists and dicts keep their structure.

    >>> to_numpy({"a": [1, 2]})["a"].dtype.kind
    'i'
    """
    if isinstance(value, dict):
        return {key: to_numpy(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)) and value and (
            _array_like(value[0]) or isinstance(value[0], (tuple, list, dict))):
        return type(value)(to_numpy(item) for item in value) if isinstance(value, tuple) \
            else [to_numpy(item) for item in value]
    if value is None or type(value) is np.ndarray:
        return value
    if isinstance(value, np.ndarray):   # a subclass (an ArrayDataset's batches): its data
        return np.asarray(value)
    if hasattr(value, "numpy") and not hasattr(value, "__array_interface__"):
        if hasattr(value, "detach"):   # a torch tensor, possibly on a GPU
            value = value.detach().cpu()
        return np.asarray(value.numpy())
    return np.asarray(value)


def _array_like(value) -> bool:
    return hasattr(value, "shape") or hasattr(value, "numpy") or hasattr(value, "__array__")


def unpack(batch, index: int):
    """(x, y, sample_weight) of one batch, by Keras's rules: `x`, `(x,)`, `(x, y)` or
    `(x, y, sample_weight)`; a list is read as a tuple and a dict is x (by input name).

    >>> x, y, w = unpack((np.zeros((2, 3)), np.ones(2)), 0)
    >>> y.tolist(), w
    ([1.0, 1.0], None)
    """
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if len(batch) in (1, 2, 3):
        return tuple(batch) + (None,) * (3 - len(batch))
    raise InputError(
        f"Each batch must be x, (x,), (x, y) or (x, y, sample_weight), as in Keras. Received "
        f"at batch {index}: a {type(batch).__name__} of {len(batch)} elements. Group several "
        "inputs as one tuple or dict: ((x1, x2), y) or ({'a': x1, 'b': x2}, y).")


class Batches:
    """Passes over a source's batches. `steps`: batches in one pass (None: unknown or
    endless); `one_shot`: the source is used up as it is read and never starts over.

    >>> batches = adapt(iter([np.zeros((2, 1))] * 3))
    >>> batches.steps, batches.one_shot, len(list(batches.new_pass(None)))
    (None, True, 3)
    """

    steps: int | None = None
    one_shot = False
    shuffles = False   # whether fit(shuffle=True) reorders this source

    def first(self):
        """The first batch (for shapes and dtypes) without losing it for training."""
        raise NotImplementedError

    def new_pass(self, permutation: Callable[[int], np.ndarray] | None) -> Iterator:
        """An iterator over one pass; `permutation(n)` gives a shuffled order, if shuffling."""
        raise NotImplementedError

    def begin_epoch(self):
        pass

    def end_epoch(self):
        pass

    def close(self):
        pass


class _Iterated(Batches):
    """Generators (one-shot) and re-iterable sources: an iterable of batches, a torch
    DataLoader, a tf.data.Dataset (a fresh as_numpy_iterator() per pass)."""

    def __init__(self, source):
        self.source = source
        self.one_shot = is_one_shot(source)
        self.steps = _batches_per_pass(source)
        self._peeked = None   # the pass the first batch was taken from, still to be read

    def _iterate(self):
        if is_tf_dataset(self.source):
            return iter(self.source.as_numpy_iterator())
        return iter(self.source)

    def first(self):
        if self._peeked is None:
            iterator = self._iterate()
            head = next(iterator, None)
            if head is None:
                return None
            self._peeked = (head, iterator)
        return self._peeked[0]

    def new_pass(self, permutation):
        if self.one_shot and self._peeked is None:
            return self.source
        if self._peeked is not None:
            head, rest = self._peeked
            self._peeked = None
            if self.one_shot:
                # The continuing iterator must now yield the peeked batch first.
                self.source = itertools.chain([head], rest)
                return self.source
            return itertools.chain([head], rest)
        return self._iterate()


def _batches_per_pass(source):
    if is_tf_dataset(source):
        cardinality = source.cardinality
        count = int(np.asarray(cardinality() if callable(cardinality) else cardinality))
        return count if count >= 0 else None   # -1 endless, -2 unknown (tf's constants)
    if not is_one_shot(source) and hasattr(source, "__len__"):
        try:
            return len(source)
        except TypeError:   # a torch DataLoader over an iterable-style dataset
            return None
    return None


class _Indexed(Batches):
    """A PyDataset (kilnet's, Keras's or look-alike): batch i is `dataset[i]`, prepared ahead
    by the dataset's workers when it has several, delivered in order."""

    shuffles = True

    def __init__(self, dataset):
        self.dataset = dataset
        # a dataset standing for a tf.data.Dataset (kilnet's ArrayDataset) keeps its own
        # order, as Keras's fit never reorders a tf.data dataset
        self.shuffles = bool(getattr(dataset, "reordered_by_fit", True))
        count = getattr(dataset, "num_batches", None) if hasattr(type(dataset), "num_batches") \
            else len(dataset)
        self.steps = None if count is None else int(count)
        self.workers = int(getattr(dataset, "workers", 1) or 1)
        self.use_multiprocessing = bool(getattr(dataset, "use_multiprocessing", False))
        self.queue = max(1, int(getattr(dataset, "max_queue_size", 10) or 10))
        self._pool = None

    def first(self):
        if self.steps == 0:
            return None
        return self.dataset[0]

    def new_pass(self, permutation):
        if self.steps is None:
            indices = itertools.count()
        elif permutation is not None:
            indices = iter(permutation(self.steps).tolist())
        else:
            indices = iter(range(self.steps))
        if self.workers <= 1 and not self.use_multiprocessing:
            return (self.dataset[i] for i in indices)
        return self._prefetched(indices)

    def _prefetched(self, indices):
        """Up to max_queue_size batches in flight in the pool; yielded in index order."""
        if self._pool is None:
            if self.use_multiprocessing:
                self._pool = _process_pool(self.workers, self.dataset)
            else:
                self._pool = multiprocessing.pool.ThreadPool(self.workers,
                                                             _set_worker_dataset,
                                                             (self.dataset,))
        pending = [self._pool.apply_async(_worker_item, (i,))
                   for i in itertools.islice(indices, self.queue)]
        while pending:
            result = pending.pop(0)
            pending.extend(self._pool.apply_async(_worker_item, (i,))
                           for i in itertools.islice(indices, 1))
            yield result.get()

    def begin_epoch(self):
        if hasattr(self.dataset, "on_epoch_begin"):
            self.dataset.on_epoch_begin()

    def end_epoch(self):
        if hasattr(self.dataset, "on_epoch_end"):
            self.dataset.on_epoch_end()

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None


_worker_dataset = None  # the dataset a pool worker reads (one per worker process or pool)

_FIX = ("put the script's code under `if __name__ == \"__main__\":`, or pass "
        "use_multiprocessing=False (threads)")


def main_is_guarded() -> bool:
    """Whether the running script keeps its work under `if __name__ == "__main__":`, so that a
    spawned worker, which runs the script's top level again, only defines things. False
    without a script file (a notebook, `python -c`), where spawned workers cannot find what
    the script defined.

    Example:
        >>> isinstance(main_is_guarded(), bool)
        True
    """
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    try:
        with open(path, encoding="utf-8") as file:
            tree = ast.parse(file.read())
    except (TypeError, OSError, SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.If) and _tests_main_name(node.test) for node in tree.body)


def _tests_main_name(test) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(n, ast.Name) and n.id == "__name__" for n in sides) and any(
        isinstance(n, ast.Constant) and n.value == "__main__" for n in sides)


def _process_pool(workers: int, dataset):
    """The worker processes of PyDataset(use_multiprocessing=True). A guarded script's workers
    are spawned: fresh interpreters, where JAX runs too. Otherwise (Keras's guide writes its
    scripts unguarded; a notebook) they are forked on Linux, as Keras's are: a spawned one
    would run the whole script again. Measured in a forked worker: NumPy, and JAX
    computations the parent had compiled, run; compiling a new one hangs (XLA's compiler
    threads stay behind in the fork), so a forked worker refuses to compile, naming the
    fix. Elsewhere (macOS, Windows) fork is unsafe or missing: an unguarded script is
    refused with the fix."""
    if main_is_guarded():
        return multiprocessing.get_context("spawn").Pool(workers, _set_worker_dataset,
                                                         (dataset,))
    if not sys.platform.startswith("linux"):
        raise InputError(
            "PyDataset(use_multiprocessing=True) starts its workers as new Python processes "
            "on this platform, and each would run this script again from the top: "
            f"{_FIX}. Received: a script without that guard")
    with warnings.catch_warnings():
        # JAX's and Python's notes on forking a threaded process: the workers run only
        # the dataset's __getitem__ and refuse to compile (_forked_worker)
        warnings.filterwarnings("ignore", message=r".*fork\(\)", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=r".*fork\(\)", category=DeprecationWarning)
        return multiprocessing.get_context("fork").Pool(workers, _forked_worker, (dataset,))


def _forked_worker(dataset):
    # fit's signal handlers came with the fork: the pool ends its workers with SIGTERM, and
    # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_worker_dataset(dataset)
    try:   # JAX's private compiler module: where every new computation is compiled
        from jax._src import compiler
    except ImportError:   # another JAX layout: nothing to refuse through
        return
    if hasattr(compiler, "compile_or_get_cached"):
        compiler.compile_or_get_cached = _refuse_compiling


def _refuse_compiling(*args, **kwargs):
    raise RuntimeError(
        "A PyDataset worker forked from this script needed JAX to compile (kilnet.ops or "
        "jax.numpy on a computation or shape the script had not run), which hangs in a forked "
        "process: compute the batches with NumPy in __getitem__, or "
        f"{_FIX}. Received: a JAX compilation in a forked worker")


def _set_worker_dataset(dataset):
    global _worker_dataset
    _worker_dataset = dataset


def _worker_item(index):
    return _worker_dataset[index]


class _Samples(Batches):
    """A map-style torch Dataset: item i is one sample; batches of batch_size samples are
    stacked leaf by leaf (as torch's default collation), in a shuffled order if asked."""

    shuffles = True

    def __init__(self, dataset, batch_size: int):
        self.dataset, self.batch_size = dataset, batch_size
        self.n = len(dataset)
        self.steps = -(-self.n // batch_size)

    def first(self):
        return self._batch(range(min(self.batch_size, self.n))) if self.n else None

    def new_pass(self, permutation):
        order = permutation(self.n) if permutation is not None else np.arange(self.n)
        return (self._batch(order[start:start + self.batch_size])
                for start in range(0, self.n, self.batch_size))

    def _batch(self, indices):
        return _stack([to_numpy(self.dataset[int(i)]) for i in indices])


def _stack(samples):
    head = samples[0]
    if isinstance(head, dict):
        return {key: _stack([s[key] for s in samples]) for key in head}
    if isinstance(head, (tuple, list)):
        return tuple(_stack(list(parts)) for parts in zip(*samples))
    return np.stack([np.asarray(s) for s in samples])


def adapt(source, batch_size: int | None = None) -> Batches:
    """The `Batches` of a source (see is_loader); batch_size batches a torch Dataset.

    >>> batches = adapt(iter([(np.zeros((2, 1)), np.ones(2))] * 3))
    >>> batches.one_shot, unpack(batches.first(), 0)[1].tolist()
    (True, [1.0, 1.0])
    """
    if not is_loader(source):
        raise InputError(
            "Expected a source of batches (a generator, a PyDataset, a torch DataLoader or "
            "Dataset, a tf.data.Dataset, or an iterable of batches). Received: "
            f"{type(source).__name__}. Arrays in memory go to fit(x, y) directly.")
    if is_torch_dataset(source):
        return _Samples(source, batch_size or 32)
    if is_indexed(source) and not is_tf_dataset(source):
        return _Indexed(source)
    return _Iterated(source)


# -- from a batch to the programs' arrays ----------------------------------------------------------
def _first_rows(x):
    """The rows of x's first array in Keras's order of a nest (a dict's keys sorted), or None
    for a nest without arrays.

    >>> _first_rows({"b": np.zeros(3), "a": [np.zeros(5), np.zeros(2)]})
    5
    """
    while isinstance(x, (dict, list, tuple)) and len(x):
        x = x[sorted(x)[0]] if isinstance(x, dict) else x[0]
    return len(x) if np.ndim(x) else None


class BatchReader:
    """Reads batches as the programs take them, checked as in-memory arrays are: returns
    (xs, ys) lists (kilnet.structure's order), ys None without labels and ending with the
    sample weights when the batch has them (or class_weight makes them; kilnet.objective).

    `model` must be built for `read` (the first batch's `inputs` are enough to build it);
    `objective` is the trainer's, None for predict (labels are then not read). `own_step`:
    the model's own step reads the batches, so an x that is a dict of keys other than the
    model's input names, or a tuple batch whose first entry is not the model's inputs, is
    handed to it as given (kilnet.structure.is_step_batch, whole_step_batch).

    >>> import kilnet
    >>> model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
    >>> xs, ys = BatchReader(model, None).read((np.zeros((4, 2)), np.ones(4)), 0)
    >>> xs[0].dtype, ys
    (dtype('float32'), None)
    """

    def __init__(self, model, objective, *, class_weight=None, own_step=False):
        self.model, self.objective = model, objective
        self.class_weight = class_weight
        self.own_step = own_step
        # how messages name the last batch's x arrays when the step unpacks x itself, or None
        self.step_batch_names = None
        self.warned = False  # the last-layer warnings of check_targets: once per fit
        # the containers of the last batch's x and y (structure.container_of)
        self.containers = (None, None)
        # the rows of the last batch's first x array in Keras's order (dict keys sorted),
        # by which Keras's loss tracker weighs the batch; None for a batch a step unpacks
        self.first_rows = None

    def split(self, batch, index: int):
        """(x, y, sample_weight) of one batch: Keras's reading (unpack), or the whole batch
        as x (a kilnet.structure.WholeBatch) when the model's own step gets it whole."""
        whole = self.own_step and structure.whole_step_batch(self.model, to_numpy(batch), True)
        return (whole, None, None) if whole else unpack(batch, index)

    def inputs(self, x, index: int) -> list:
        """A batch's x (split's) as one checked array per model input (the model may be
        unbuilt)."""
        x = x if isinstance(x, structure.WholeBatch) else to_numpy(x)
        xs = [to_numpy(a) for a in structure.inputs_of(self.model, x, f"x (batch {index})",
                                                       own_step=self.own_step)]
        as_given = structure.is_step_batch(self.model, x, self.own_step)
        names = (structure.step_batch_names(x) if as_given
                 else structure.input_argument_names(self.model, len(xs)))
        return validation.check_features(self.model, xs,
                                         [f"{name} (batch {index})" for name in names],
                                         against_inputs=not as_given)

    def read(self, batch, index: int):
        """The batch's (xs, ys), checked."""
        return self.check(*self.arrays(batch, index), index)

    def arrays(self, batch, index: int):
        """(xs, ys or None, sample_weight or None) as NumPy, in the programs' order, unchecked
        (so that a caller can first compare their shapes with the first batch's)."""
        x, y, weight = self.split(batch, index)
        x = x if isinstance(x, structure.WholeBatch) else to_numpy(x)
        xs = structure.inputs_of(self.model, x, f"x (batch {index})", own_step=self.own_step)
        as_given = structure.is_step_batch(self.model, x, self.own_step)
        self.containers = (structure.x_container(self.model, x, xs, self.own_step), None)
        self.step_batch_names = structure.step_batch_names(x) if as_given else None
        self.first_rows = None if as_given else _first_rows(x)
        xs = [to_numpy(a) for a in xs]
        if self.objective is None or (y is None and weight is None
                                      and self.class_weight is None and not self._needs_y()):
            return xs, None, None
        if y is None:
            raise InputError(
                f"The model's loss needs labels, but batch {index} has none. Each batch must be "
                f"(x, y) or (x, y, sample_weight). Received at batch {index}: x only")
        return xs, self._labels(y, index), None if weight is None else to_numpy(weight)

    def check(self, xs, ys, weight, index: int):
        """The checks of in-memory arrays on one batch; returns (xs, ys + [weights])."""
        names = self.step_batch_names or structure.argument_names(
            "x", self.model.input_names or ["x"])
        self._take_other_lengths(xs, ys)
        xs = validation.check_features(self.model, xs,
                                       [f"{name} (batch {index})" for name in names],
                                       against_inputs=self.step_batch_names is None)
        if ys is None:
            return xs, None
        self._check_label_rows(xs, ys, index)
        validation.check_targets(self.model, self.objective, ys,
                                 y_names=self._names("y", index, len(ys)),
                                 job="evaluate" if self.warned else "fit")
        self.warned = True
        weights = validation.sample_weights(self.objective, ys, weight, self.class_weight,
                                            f"sample_weight (batch {index})")
        if self.model.compiled is not None:
            self.model.compiled.note_labels(len(ys))
        return xs, ys + weights

    def _check_label_rows(self, xs, ys, index: int):
        """The labels of one batch share their rows (validation.sample_weights holds the
        sample weights to them). The model's inputs may hold other rows (a disjoint graph's
        atoms, bonds and molecules): a source's batch reaches the step as given, as Keras
        hands it, and the loss reduces over the labels' rows; only a batch your own step
        unpacks keeps its labels at x's rows."""
        names = self._names("y", index, len(ys))
        first, n = (("x", len(xs[0])) if self.step_batch_names is not None
                    else (names[0], len(ys[0])))
        for array, name in zip(ys, names):
            if len(array) != n:
                raise InputError(f"Batch {index} has {n} samples in {first} but {len(array)} "
                                 f"in {name}; the labels of a batch need one row per sample "
                                 f"each. Received: "
                                 f"{name}.shape={array.shape}")

    def _take_other_lengths(self, xs, ys):
        """A built subclassed model given a batch of other axis lengths than it was built
        for, which its call takes (a text pipeline pads each batch to its own length), takes
        them (Model.widen_input_axes), as Keras traces its step again; the Trainer then
        makes its objective again, which the labels are checked against from here on."""
        if self.step_batch_names is not None or any(np.ndim(a) < 1 for a in xs):
            return
        samples = [tuple(np.shape(a))[1:] for a in xs]
        trainer = self.model.compiled
        if not self.model.widen_input_axes(samples[0] if len(samples) == 1 else samples) \
                or self.objective is None or trainer is None:
            return
        self.objective = trainer.objective
        if ys is not None:   # Keras's "accuracy" follows the labels' shape (as fit resolves it)
            trainer.resolve_accuracy([np.shape(a) for a in ys[:len(self.objective.targets)]])

    def _needs_y(self):
        return bool(self.objective.targets) and not self.model.overrides_train_step

    def _names(self, argument, index, count=None):
        """How messages name the batch's label arrays: by trained output, or (labels a
        model's own step reads, with no output named by a loss) by position."""
        names = [h.name for h in self.objective.targets]
        if count is not None and count != len(names):
            names = list(range(count))
        return [f"{name} (batch {index})" for name in structure.argument_names(argument, names)]

    def _labels(self, y, index):
        y = to_numpy(y)
        # a model's own step reads the labels even when no loss or metric names an output
        own_step = self.model.overrides_train_step or self.model.overrides_test_step
        ys = structure.targets_of(self.objective, y, f"y (batch {index})", own_step=own_step)
        self.containers = (self.containers[0], structure.container_of(y, ys))
        out = []
        for array, name in zip(ys, self._names("y", index, len(ys))):
            array = to_numpy(array)
            if array.dtype.kind not in "biuf":
                raise InputError(f"{name} must hold numbers. Received: {name} of dtype "
                                 f"{array.dtype}")
            out.append(array)
        return out
