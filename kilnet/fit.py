"""The host side of training: the thin fit / evaluate / predict loops around the Trainer's
compiled programs (kilnet.trainer).

The loops only slice epochs into chunks, dispatch a compiled chunk, and read back a few scalars
(loss and metric sums) at each chunk boundary: that is the only host-device sync while training.

Callbacks and chunks. A chunk runs many batches as one compiled program, so the hooks that Keras
calls around every batch are called around every chunk, as Keras itself does when
compile(steps_per_execution=N) runs N batches per call: `on_train_batch_begin(batch)` before a
chunk, with the index of its first batch in the epoch, and `on_train_batch_end(batch, logs)`
after it, with the index of its last batch and the logs at that point (the epoch's running
means). Over an epoch the chunks' [first, last] ranges cover every batch exactly once, in order.
Evaluation (evaluate(), and validation inside fit()) calls `on_test_batch_begin` /
`on_test_batch_end`, and predict() `on_predict_batch_begin` / `on_predict_batch_end` (logs
{"outputs": those batches' predictions}), around every batch when a callback of yours has
those hooks (as Keras's default), every steps_per_execution batches when compile() sets it,
else once per evaluated block (kilnet's own callbacks, written for chunks). A callback that
needs every training batch can cap the chunk length (BackupAndRestore's save_freq does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import numbers
import time
import warnings
from dataclasses import dataclass

import jax
import numpy as np

from kilnet import data as data_lib
from kilnet import distribution as distribution_lib
from kilnet import optimizers as optimizers_lib
from kilnet import (_interrupt, _scope, _step_logs, feeds, insight, loaders, programs,
                    structure, utils, validation)
from kilnet.callbacks import CallbackList, History
from kilnet.compile_metrics import CompileMetrics
from kilnet.errors import InputError, NonFiniteError
from kilnet.progress import EpochProgress, emit, resolve_verbose
from kilnet.trainer import Trainer

# A chunk aims at this much device time: short enough that the progress bar moves twice a
# second, long enough that each execution's own costs vanish: dispatch and the sync (~0.1 ms).
CHUNK_SECONDS = 0.5
# Each execution also allocates the program's temporary buffer (every activation and gradient
# of a step) afresh, and glibc maps a block over 32 MB (its largest heap allocation) anew, so
# the execution faults on each of its pages: measured per chunk on a 2-core AMD EPYC VM, the
# LSTM bench's 46 MB 11,700 faults, the Transformer's 73 MB 18,600, ResNet-8's 122 MB 31,200
# (about 75 ms: 0.6 ms a MB, 15% of a 0.5 s chunk). A chunk of such a program runs long enough
# that this costs at most 1/30 of it (ResNet-8: 2.2 s chunks, its epoch 1.06x faster), and at
# most MAX_CHUNK_SECONDS. (Setting glibc to one heap for all threads kept those pages, but made
# the threads contend: the seed MLP's epoch 1.7x slower.)
HEAP_BLOCK_LIMIT = 32 * 2**20
FRESH_PAGES_SECONDS_PER_BYTE = 0.6e-3 / 2**20
MAX_CHUNK_SECONDS = 3.0
# Until a chunk has been timed, chunk length is estimated from the step's FLOPs at a
# deliberately low throughput, so the first chunk is short rather than long.
ASSUMED_FLOPS_PER_SECOND = 2e10


@dataclass
class Chunker:
    """Chooses how many steps the next chunk runs, from the time the last chunk took."""

    total: int | None   # steps in an epoch; None for a generator of unknown length
    steps: int
    seconds: float | None = None  # the target length of a chunk; None: CHUNK_SECONDS

    def fit_to(self, program):
        """Aim at chunks long enough for `program`'s temporary buffer (see CHUNK_SECONDS)."""
        temp = programs.temp_bytes(program)
        if temp is None or temp <= HEAP_BLOCK_LIMIT:
            self.seconds = None
        else:
            self.seconds = float(np.clip(30 * temp * FRESH_PAGES_SECONDS_PER_BYTE,
                                         CHUNK_SECONDS, MAX_CHUNK_SECONDS))

    def next_stop(self, start: int) -> int:
        stop = start + self.steps
        if self.total is None:
            return stop
        # A short tail joins this chunk rather than paying a chunk's fixed costs on its own.
        return self.total if self.total - stop < self.steps // 4 else min(stop, self.total)

    def observe(self, steps_run: int, seconds: float):
        # Several processes must run the same chunks: all use process 0's timing.
        seconds = distribution_lib.chief_value(seconds)
        if steps_run and seconds > 0:
            rate = steps_run / seconds
            target = CHUNK_SECONDS if self.seconds is None else self.seconds
            self.steps = int(np.clip(rate * target, 1, self.total or 2**31 - 1))


def _initial_chunk(trainer, total_steps):
    flops = trainer.report.flops_per_step
    if not flops:
        return max(1, min(total_steps, 64))
    return int(np.clip(ASSUMED_FLOPS_PER_SECOND * CHUNK_SECONDS / flops, 1, total_steps))


def _logs_from_sums(spec, sums: dict, test: bool = False) -> dict:
    """Exact epoch means, in Keras's order: loss first, then the metrics as compiled. A model's
    own train_step (test_step when `test`): the logs of its last step, as Keras shows them."""
    if "logs" in sums:  # flat, each name with its path in the step's logs (Keras's order)
        names = spec.keras_steps.test_log_names if test else spec.custom_step.log_names
        return _step_logs.PathedLogs({name: float(sums["logs"][name]) for name in names},
                                     names)
    return {**spec.objective.log_values(sums), **_untouched_metric_logs(spec.model)}


def _untouched_metric_logs(model) -> dict:
    """The logs of the metrics the built-in steps do not update (model.metrics_beyond_compiled:
    those kept as attributes): each one's result from the state it starts from, as Keras's
    steps log them (it resets them at the start of every epoch and evaluation). A result
    that is a dict gives its entries, as Keras's."""
    logs = {}
    for metric in model.metrics_beyond_compiled():
        result = metric.stateless_result(metric.stateless_reset_state())
        results = result if isinstance(result, dict) else {metric.name: result}
        logs.update({name: _log_value(value) for name, value in results.items()})
    return logs


def _log_value(value):
    value = np.asarray(value)
    return float(value) if value.size == 1 else value


def _store_metric_state(trainer, sums) -> None:
    """Leave model.metrics' Variables as Keras's fit, evaluate and the on_batch calls leave
    them: a model's own steps' final metric state (`sums` of its program: its
    metrics_variables in order), and, for the built-in steps, the metrics they do not
    update reset (their state at every start). Keras syncs after each epoch's training and
    after each evaluation (fit's validation too), so the last of those wins."""
    model = trainer.model
    if "metric_vars" in sums:
        values = jax.device_get(sums["metric_vars"])
        for variable, value in zip(model.metrics_variables, values):
            variable.assign(value)
        return
    for metric in model.metrics_beyond_compiled():
        metric.reset_state()


# -- fit ------------------------------------------------------------------------------------------
def make_feed(trainer, x, y, batch_size, *, shuffle=False, steps=None, sharding=None, seed=None,
              class_weight=None, labels=True, on_host=False, own_step=False, containers=None):
    """An ArrayFeed for arrays in memory (x and y: an array, or a tuple for several inputs or
    outputs; kilnet.structure), a StreamFeed for memmaps, a BatchFeed for any other source of
    batches (kilnet.loaders: generators, PyDatasets, torch and tf.data loaders), for which the
    model is built from the first batch (seed) and `labels=False` (predict) reads x only.
    `on_host`: arrays read once stay on the host until the program's call (feeds.ArrayFeed).
    `own_step`: the model overrides the step that reads a source's batches, so a batch
    that is not the model's inputs reaches that step as given (structure.is_step_batch).
    `containers`: those the arrays came in (feeds.Block.containers), the Trainer's by
    default."""
    stateful = trainer.stateful_batch_size()
    if stateful is not None:   # before any program is traced for another batch size
        _check_stateful_batches(stateful, batch_size, None)
    if trainer.distribution is not None:  # data replicated on every device
        sharding = trainer.distribution.replicated
        if not feeds.is_stream(x) or isinstance(x, np.ndarray):
            batch_size = trainer.distribution.whole_batch_size(
                batch_size, len(structure.unpack(x)[0]))
    if feeds.is_stream(x):
        if not isinstance(x, np.ndarray):
            return _batch_feed(trainer, x, y, batch_size, shuffle=shuffle, steps=steps,
                               seed=seed, class_weight=class_weight, labels=labels,
                               own_step=own_step)
        loss = _single_target_loss(trainer)  # a memmap
        trainer.note_containers(None, None)
        return feeds.StreamFeed(x, batch_size, y=y, shuffle=shuffle,
                                label_dtype=data_lib.label_dtype_for(loss, y))
    label_dtypes = None
    if y is not None:
        labels = structure.unpack(y)
        dtypes = [data_lib.label_dtype_for(head.loss, array)
                  for head, array in zip(trainer.objective.targets, labels)]
        dtypes += [np.float32] * (len(labels) - len(dtypes))  # sample weights
        label_dtypes = structure.pack(dtypes)
    return feeds.ArrayFeed(x, y, batch_size, shuffle=shuffle, label_dtype=label_dtypes,
                           sharding=sharding, steps_per_epoch=steps, on_host=on_host,
                           containers=containers or trainer.containers)


def _batch_feed(trainer, source, y, batch_size, *, shuffle, steps, seed, class_weight, labels,
                own_step):
    """A BatchFeed over any source of batches; builds the model from the first batch."""
    kind = type(source).__name__
    if y is not None:  # as Keras: the labels travel inside the batches
        raise InputError(f"When x is a source of batches ({kind}), y must not be passed: each "
                         "batch carries its labels, (x, y) or (x, y, sample_weight). Received: "
                         f"y of type {type(y).__name__}")
    batches = loaders.adapt(source, batch_size)
    if steps is None and batches.steps is None and loaders.is_indexed(source):
        raise InputError(f"The {kind} is endless (num_batches is None): pass "
                         "steps_per_epoch=N (steps=N in evaluate/predict), the batches to read.")
    first = batches.first()
    if first is None:
        raise ValueError(f"The data source ({kind}) yielded no batch: there is nothing to read.")
    model = trainer.model
    reader = loaders.BatchReader(model, None, class_weight=class_weight, own_step=own_step)
    first_x = reader.split(first, 0)[0]
    xs = reader.inputs(first_x, 0)
    trainer.ensure_state(seed, input_shape=structure.sample_batch(model, first_x, xs))
    if labels:
        reader.objective = trainer.objective
    xs, ys = reader.read(first, 0)
    label_dtypes = None
    if ys is not None:
        targets = trainer.objective.targets
        trainer.resolve_accuracy([a.shape for a in ys[:len(targets)]])
        label_dtypes = [data_lib.label_dtype_for(head.loss, a) for head, a in zip(targets, ys)]
        label_dtypes += [np.float32] * (len(ys) - len(label_dtypes))  # sample weights
    return feeds.BatchFeed(batches, reader, (xs, ys), steps=steps, shuffle=shuffle,
                           label_dtypes=label_dtypes)


def _single_target_loss(trainer):
    """Memmaps carry one input and one label array (other sources carry any structure)."""
    if trainer.objective is not None and (len(trainer.objective.targets) > 1
                                          or len(trainer.model.input_specs or [None]) > 1):
        raise InputError("A memmap feeds models with one input and one trained output; give a "
                         "model with several inputs or outputs arrays in memory (a dict or list "
                         "of NumPy arrays) or a source of batches (a generator or PyDataset "
                         "yielding ({'a': xa, 'b': xb}, y)).")
    return trainer.objective.targets[0].loss if trainer.objective is not None else trainer.loss


def _label_names(trainer, count=None):
    """How messages name the label arrays: by trained output, or (labels a model's own step
    reads, with no output named by a loss) by position."""
    names = [h.name for h in trainer.objective.targets]
    if count is not None and count != len(names):
        names = list(range(count))
    return structure.argument_names("y", names)


def _checked_inputs(model, x, own_step: bool, argument: str = "x"):
    """x's arrays for the programs, checked (the model may be unbuilt): returns (xs, their
    container (structure.x_container), how messages name them). A batch the model's own
    step unpacks itself (structure.is_step_batch) keeps its structure, its arrays checked
    on their own; anything else is checked against the model's inputs."""
    xs = structure.inputs_of(model, x, argument, own_step=own_step)
    container = structure.x_container(model, x, xs, own_step)
    if structure.is_step_batch(model, x, own_step):
        names = structure.step_batch_names(x, argument)
        return validation.check_features(model, xs, names, against_inputs=False), container, \
            names
    _take_other_lengths(model, xs)
    # by count, not model.input_names: a Sequential without an Input has none until built
    names = structure.input_argument_names(model, len(xs), argument)
    return validation.check_features(model, xs, names), container, names


def _take_other_lengths(model, xs):
    """A built subclassed model fitted or evaluated on samples of other axis lengths than
    it was built for, which its call takes, takes them (Model.widen_input_axes), as Keras
    traces its call again (keras.io's NER tagger fits a batch of each length)."""
    shapes = [getattr(x, "shape", None) for x in xs]
    if not xs or any(shape is None or len(shape) < 1 for shape in shapes):
        return   # not arrays: the other checks explain
    samples = [tuple(shape)[1:] for shape in shapes]
    model.widen_input_axes(samples[0] if len(samples) == 1 else samples)


def _arrays_for_fit(model, trainer, x, y, *, seed, batch_size, epochs, validation_split,
                    validation_data, initial_epoch, verbose, sample_weight=None,
                    class_weight=None):
    """fit()'s arrays checked, the model built for them, and the feeds' inputs: returns
    (x, y, val, batch_size) with x, y packed for the programs (kilnet.structure)."""
    validation.check_epochs(epochs, initial_epoch)
    xs, x_container, x_names = _checked_inputs(model, x, model.overrides_train_step)
    trainer.ensure_state(seed, input_shape=structure.sample_batch(model, x, xs))
    if y is None and (model.overrides_train_step or model.overrides_compute_loss):
        ys, y_names = [], []  # the model's own step or loss needs no labels (an autoencoder)
    else:
        ys = structure.targets_of(trainer.objective, y, own_step=model.overrides_train_step)
        y_names = _label_names(trainer, len(ys))
    y_container = structure.container_of(y, ys)
    val_lists, val_weight, val_x_argument = None, None, "validation_data[0]"
    val_x_names, val_containers = None, None
    if validation_data is not None:
        val_lists, val_weight, val_x_argument, val_x_names, val_containers = \
            _validation_lists(trainer, validation_data)
    xs, ys, val, batch_size = validation.check_fit_inputs(
        model, xs, ys, x_names=x_names, y_names=y_names, batch_size=batch_size, epochs=epochs,
        validation_split=validation_split, validation_data=val_lists,
        validation_x_argument=val_x_argument, validation_x_names=val_x_names,
        initial_epoch=initial_epoch, verbose=verbose)
    trainer.resolve_accuracy([y.shape for y in ys])
    trainer.note_labels(len(ys))
    trainer.note_containers(x_container, y_container)
    # Labels against the built model's output shapes: before any program is compiled.
    validation.check_targets(model, trainer.objective, ys, None if val is None else val[1],
                             y_names=y_names)
    # the programs find the weights after the labels (kilnet.objective)
    ys = ys + validation.sample_weights(trainer.objective, ys, sample_weight, class_weight)
    if val is not None and val_weight is not None:
        val = (val[0], val[1] + validation.sample_weights(
            trainer.objective, val[1], val_weight, None, "validation_data[2]"))
    if validation_split and validation_data is None:
        (xs, ys), val = data_lib.split_validation(xs, ys, validation_split)
    if val is not None:
        val = (structure.pack(val[0]), structure.pack_labels(val[1]),
               val_containers or (x_container, y_container))
    return structure.pack(xs), structure.pack_labels(ys), val, batch_size


def _validation_lists(trainer, validation_data):
    """validation_data unpacked as Keras unpacks it (x_val alone when not a tuple): returns
    ((xs_val, ys_val) as lists, sample_weight_val or None, how messages name x_val, the
    names of x_val's arrays when the model's own test_step unpacks them itself, else None
    (structure.is_step_batch), and the containers x_val and y_val came in)."""
    model = trainer.model
    own_step = model.overrides_test_step
    unpacked = validation.check_validation_data(validation_data)
    validation.check_validation_targets(trainer.objective, unpacked, own_step=own_step)
    lists = (structure.inputs_of(model, unpacked.x, unpacked.x_argument, own_step=own_step),
             structure.targets_of(trainer.objective, unpacked.y, "validation_data[1]",
                                  own_step=own_step))
    as_given = structure.is_step_batch(model, unpacked.x, own_step)
    x_names = structure.step_batch_names(unpacked.x, unpacked.x_argument) if as_given else None
    containers = (structure.x_container(model, unpacked.x, lists[0], own_step),
                  structure.container_of(unpacked.y, lists[1]))
    return lists, unpacked.sample_weight, unpacked.x_argument, x_names, containers


def _check_validation_freq(validation_freq):
    """Keras's validation_freq: an int n (validate every n epochs) or a collection of 1-based
    epoch numbers."""
    if isinstance(validation_freq, numbers.Integral) and not isinstance(validation_freq, bool):
        if validation_freq >= 1:
            return int(validation_freq)
    elif isinstance(validation_freq, (list, tuple, set, frozenset, range)) and all(
            isinstance(e, numbers.Integral) and not isinstance(e, bool)
            for e in validation_freq):
        return frozenset(int(e) for e in validation_freq)
    raise ValueError("validation_freq must be a positive integer (validate every n epochs) or a "
                     "list of 1-based epoch numbers (validation_freq=[1, 5, 10]). Received: "
                     f"validation_freq={validation_freq!r}")


def _should_validate(epoch: int, validation_freq) -> bool:
    """Whether epoch `epoch` (0-based) ends with validation, as Keras decides it."""
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    return (epoch + 1) in validation_freq


def _check_count(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value < 1):
        raise ValueError(f"{name} must be a positive integer or None. Received: {name}={value!r}")
    return None if value is None else int(value)


def _validation_stream_feed(trainer, source, steps, batch_size):
    """A feed for validation_data given as batches (a generator, a PyDataset, a loader): read
    `steps` batches per validation if given, else a whole pass."""
    if steps is None and loaders.is_one_shot(source):
        raise InputError(
            "validation_data is a one-shot iterator (a generator): pass validation_steps=N, "
            "the number of batches each validation reads. Without it every validation would "
            "read the iterator to its end, which an endless generator never reaches, and a "
            "finite one is used up by the first validation.")
    return make_feed(trainer, source, None, batch_size, steps=steps,
                     own_step=trainer.model.overrides_test_step)


def _validation_arrays(trainer, validation_data):
    """validation_data arrays beside streamed training data, in the programs' structure,
    and the containers they came in: (x, y, containers)."""
    model = trainer.model
    unpacked = validation.check_validation_data(validation_data)
    own_step = model.overrides_test_step
    validation.check_validation_targets(trainer.objective, unpacked, own_step=own_step)
    vxs, x_container, _ = _checked_inputs(model, unpacked.x, own_step, unpacked.x_argument)
    given = structure.targets_of(trainer.objective, unpacked.y, "validation_data[1]",
                                 own_step=own_step)
    containers = (x_container, structure.container_of(unpacked.y, given))
    vys = [np.asarray(a) for a in given]
    if unpacked.sample_weight is not None:
        vys.extend(validation.sample_weights(trainer.objective, vys, unpacked.sample_weight,
                                             None, "validation_data[2]"))
    return structure.pack(vxs), structure.pack_labels(vys), containers


def fit(model, x, y, *, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0, seed=None,
        steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
        validation_freq=1, sample_weight=None, class_weight=None):
    """Train `model` for `epochs` epochs; returns a History (model.fit's arguments, as Keras's).

    validation_data: (x_val, y_val) arrays, or batches as x is (a generator or iterable of
        (x, y) batches; a one-shot generator needs validation_steps).
    validation_freq: validate after every n-th epoch (an int), or after the 1-based epochs listed;
        epochs without validation have no val_ logs, so History's val_ lists hold one value per
        validated epoch, as in Keras.
    validation_batch_size: the batch size of validation on arrays (default: batch_size).
    validation_steps: how many validation batches each validation reads (default: all).
    verbose: 0 or False silent; 1, True or "auto" a live bar on a terminal (one line per epoch
        elsewhere); 2 one line per epoch.

    Callbacks get Keras's hooks; the batch hooks fire once per compiled chunk (see this module's
    docstring), and validation fires on_test_begin / on_test_batch_* / on_test_end before the
    epoch's on_epoch_end. A generator that runs out of batches before steps_per_epoch * epochs
    warns ("Your input ran out of data") and ends training; the epoch it ran out in ends with the
    logs of the steps it ran, and History holds the epochs that ran.
    """
    trainer = model.require_compiled()
    trainer.check_trainable()
    resolve_verbose(verbose)  # a wrong value fails before any work
    validation_freq = _check_validation_freq(validation_freq)
    validation_steps = _check_count(validation_steps, "validation_steps")
    validation_batch_size = _check_count(validation_batch_size, "validation_batch_size")
    batch_size = _job_batch_size(trainer, batch_size)
    # Several processes: each passed its shard; train on all (kilnet.distribution). Log once.
    x, y, validation_data = distribution_lib.global_arrays(trainer, x, y, validation_data)
    verbose = verbose if distribution_lib.is_chief() else 0
    val_stream = None  # validation_data given as batches
    if (validation_data is not None and feeds.is_stream(validation_data)
            and not isinstance(validation_data, np.ndarray)):
        val_stream, validation_data = validation_data, None
    val = None
    if feeds.is_stream(x):
        _refuse_stream_weights(x, sample_weight, class_weight)
        validation.check_epochs(epochs, initial_epoch)
        validation.check_streamed_fit(x, y, batch_size=batch_size,
                                      validation_split=validation_split)
        if validation_split and validation_data is None:  # a memmap: its last rows, as Keras
            (x, y), validation_data = data_lib.split_validation(x, y, validation_split)
        feed = make_feed(trainer, x, y, batch_size, shuffle=shuffle, steps=steps_per_epoch,
                         seed=seed, class_weight=class_weight,
                         own_step=model.overrides_train_step)
        trainer.ensure_state(seed, input_shape=feed.sample_shape)
        if isinstance(x, np.ndarray) and y is not None:  # a memmap's labels, read once
            validation.check_targets(model, trainer.objective, [np.asarray(y)], y_names=["y"])
        if validation_data is not None:
            val = _validation_arrays(trainer, validation_data)
    else:
        x, y, val, batch_size = _arrays_for_fit(
            model, trainer, x, y, seed=seed, batch_size=batch_size, epochs=epochs,
            validation_split=validation_split, validation_data=validation_data,
            initial_epoch=initial_epoch, verbose=verbose, sample_weight=sample_weight,
            class_weight=class_weight)
        # One batch an epoch (a reinforcement learner's fit on its replay batch at every
        # step): its arrays go to the device with each call, as train_on_batch's do.
        one_batch = (steps_per_epoch or 1) == 1 and data_lib.steps_for(
            len(structure.unpack(x)[0]), batch_size) == 1
        feed = make_feed(trainer, x, y, batch_size, shuffle=shuffle, steps=steps_per_epoch,
                         on_host=one_batch)
    if shuffle and trainer.stateful_batch_size() is not None and feed.steps != 1:
        warnings.warn("The model has stateful layers, whose states carry row i of a batch to "
                      "row i of the next, and fit shuffles the samples (shuffle=True, the "
                      "default): pass shuffle=False to keep each row's sequence in order.",
                      UserWarning, stacklevel=3)
    if seed is not None:
        trainer.seed = int(seed)
        # The seed decides dropout too, even when the state was made earlier (at compile).
        trainer.state = trainer.state._replace(rng=utils.raw_key(trainer.seed, 1))
    trainer.fit_calls += 1
    # A fault that stopped an earlier fit is cleared (the parameters are its last finite ones).
    trainer.state = trainer.state._replace(fault=np.int32(programs.NO_FAULT))
    skipped_before = int(trainer.state.skipped)  # host sync, once per fit
    val_feed = None
    if val_stream is not None:
        val_feed = _validation_stream_feed(trainer, val_stream, validation_steps,
                                           validation_batch_size or batch_size)
    elif val is not None:
        val_feed = make_feed(trainer, val[0], val[1], validation_batch_size or batch_size,
                             containers=val[2])

    history = History()
    cb_list = CallbackList(list(callbacks or []) + [history], model=model, epochs=epochs,
                           steps=feed.steps, verbose=verbose, batch_size=feed.batch_size,
                           samples=feed.n)
    progress = EpochProgress(verbose, epochs, feed.steps)
    model.stop_training = False
    model.history = history
    history.skipped_steps = 0  # non-finite steps skipped by this fit (on_nonfinite="skip")
    chunker = Chunker(feed.steps, _initial_chunk(trainer, feed.steps or 1))

    compiled_for = None  # (key, block): the block compiled for, which epoch 0 then reads
    if isinstance(feed, feeds.ArrayFeed):
        # Compile before the first epoch, so the compile report is complete when training
        # starts and epoch 1's time is training time.
        key = (trainer.seed, trainer.fit_calls, 0)
        block = next(feed.blocks(key))
        trainer.program(_steps_program(trainer, feed, cb_list), feed.batch_size, trainer.state,
                        block.x, block.y, block.order, block.valid, *([np.int32(0)] * 4))
        compiled_for = (key, block)
    cb_list.on_train_begin()
    _interrupt.after_train_begin(cb_list)  # callback state restored by BackupAndRestore
    epoch_logs = {}
    previous_logs = None  # the last epoch's logs: each epoch line shows the gains since
    start_epoch, start_step = initial_epoch, 0
    if trainer.resume_point is not None:
        start_epoch, start_step = trainer.resume_point
        trainer.resume_point = None
    steps_run = 0  # by this fit call, for the ran-out-of-data warning
    _interrupt.install(trainer)  # SIGINT/SIGTERM: checkpoint and stop at the next safe point
    try:
        for epoch in range(start_epoch, epochs):
            key = (trainer.seed, trainer.fit_calls, epoch)  # decides the epoch's data order
            # an array's epoch is one block: the one compiled for, if its key is the same (a
            # restored checkpoint may have changed the seed), not a second order drawn and sent
            same = compiled_for is not None and compiled_for[0] == key
            blocks = iter([compiled_for[1]]) if same else feed.blocks(key, start_step)
            compiled_for = None
            first = next(blocks, None)  # a stream that is used up has none: no epoch begins
            if first is None and (feed.steps is None or start_step < feed.steps):
                _warn_ran_out(feed, epoch, 0, steps_run, initial_epoch, epochs, steps_per_epoch)
                break
            blocks = itertools.chain([first], blocks) if first is not None else iter(())
            if start_step == 0:  # zeros the chunk's call copies in (no device_put each)
                trainer.state = trainer.state._replace(sums=programs.zero_sums(
                    trainer.spec, on_host=True,
                    loss_by_rows=getattr(feed, "loss_by_rows", False)))
            cb_list.on_epoch_begin(epoch)
            progress.epoch_begin(epoch)
            expected = feed.steps
            epoch_logs, step = _run_epoch(trainer, feed, blocks, cb_list, progress, chunker,
                                          epoch, start_step, history)
            _store_metric_state(trainer, trainer.state.sums)
            steps_run += step - start_step
            ran_out = (expected is not None and step < expected and not model.stop_training)
            start_step = 0
            if val_feed is not None and _should_validate(epoch, validation_freq):
                with trainer.validating(epoch):   # its draws from fit's key, as training's
                    val_logs, _ = _evaluate_feed(trainer, val_feed, steps=validation_steps,
                                                 callbacks=cb_list)
                epoch_logs.update({"val_" + name: value for name, value in val_logs.items()})
            trainer.position = (epoch + 1, 0)
            cb_list.on_epoch_end(epoch, epoch_logs)
            # After the callbacks, as Keras's ProgbarLogger: the line shows what they add to the
            # logs (ReduceLROnPlateau's learning_rate).
            progress.epoch_end(epoch, epoch_logs, insight.gain_labels(previous_logs, epoch_logs),
                               steps_done=step if ran_out else None)
            previous_logs = dict(epoch_logs)
            _interrupt.safe_point(trainer, cb_list)
            if ran_out and not getattr(feed, "one_shot", True):
                _warn_short_pass(epoch, step, expected)  # as Keras: the next epoch goes on
            elif ran_out:
                _warn_ran_out(feed, epoch, step, steps_run, initial_epoch, epochs,
                              steps_per_epoch, expected)
                break
            if model.stop_training:
                break
    finally:
        trainer.take_back_variables()   # the last epoch's callbacks may have lent them out
        if epochs > 0:   # Keras's finalize_variable_values: use_ema leaves the averages
            trainer.state = programs.next_draws(trainer.state._replace(
                params=optimizers_lib.finalize_weights(trainer.state.params,
                                                       trainer.state.opt_state)))
        progress.close()
        _interrupt.uninstall(trainer)
        _interrupt.after_fit(cb_list)
        for used in (feed, val_feed):  # a PyDataset's worker pool
            if hasattr(used, "close"):
                used.close()
    history.skipped_steps = int(trainer.state.skipped) - skipped_before  # host sync, once
    if history.skipped_steps and resolve_verbose(verbose):
        emit(f"kilnet: skipped {history.skipped_steps} training step(s) whose loss or "
             "gradients were not finite (on_nonfinite='skip'); see history.skipped_steps.")
    cb_list.on_train_end(epoch_logs)
    if progress.verbose and len(history.epoch) >= 2:  # what the epochs' numbers mean
        emit(history.plateau(), progress.stream)
    return history


def _warn_ran_out(feed, epoch, step, steps_run, initial_epoch, epochs, steps_per_epoch,
                  expected=None):
    """Keras's warning when the data runs out before steps_per_epoch * epochs batches; training
    then stops (the caller breaks out of the epoch loop)."""
    per_epoch = steps_per_epoch or feed.steps
    asked = (f"{(epochs - initial_epoch) * per_epoch} steps ({epochs - initial_epoch} epochs of "
             f"{per_epoch} steps)" if per_epoch else f"{epochs - initial_epoch} epochs")
    where = (f"in epoch {epoch + 1}, after {step} of its {expected} steps" if step
             else f"before epoch {epoch + 1}")
    warnings.warn(
        "Your input ran out of data; interrupting training. Make sure that your dataset or "
        "generator can generate at least `steps_per_epoch * epochs` batches. "
        f"It ran out {where}: this fit ran {steps_run} steps of the {asked} asked. Make the "
        "generator endless (a `while True` loop, or `.repeat()` on a dataset), or pass a "
        "re-iterable source (a PyDataset, a DataLoader) that is read afresh every epoch.",
        UserWarning, stacklevel=4)


def _warn_short_pass(epoch, step, expected):
    """A re-iterable source whose pass ended inside an epoch: as Keras, that epoch ends early
    and the next one starts a new pass."""
    warnings.warn(
        f"Your input ran out of data in epoch {epoch + 1}, after {step} of its {expected} "
        f"steps: a pass over the data has fewer batches than steps_per_epoch={expected} had "
        "left. The epoch ends there and the next one starts a new pass. Make sure that your "
        "dataset can generate at least `steps_per_epoch` batches per pass, or leave "
        "steps_per_epoch unset (one pass per epoch).", UserWarning, stacklevel=4)


def _refuse_stream_weights(x, sample_weight, class_weight):
    """As Keras: sample weights travel inside the batches; a memmap has none."""
    if sample_weight is not None:
        raise InputError(
            f"When x is streamed ({type(x).__name__}), sample_weight must not be passed: give "
            "each batch its weights, (x, y, sample_weight). Received: sample_weight of type "
            f"{type(sample_weight).__name__}")
    if class_weight is not None and isinstance(x, np.ndarray):
        raise InputError("class_weight goes with arrays in memory or sources of batches; a "
                         "memmap cannot carry it yet. Load the labels' array in memory, or "
                         "stream (x, y) batches. Received: class_weight with a memmap")


# The most steps a chunk runs when your callbacks read every batch's end: the rows of sums
# it records for them (a few kB; the seed MLP's 1,875 steps then take 8 chunks, not 1-2).
TRAIL_STEPS = 256


def _steps_program(trainer, feed, cb_list) -> str:
    """The program that runs an epoch's steps: "train", a loop over a chunk's steps, or where
    an epoch is one batch (a reinforcement learner's fit on its replay batch at every step)
    and no callback reads each batch's sums, "train_batch": train_on_batch's one-step
    program, which keeps its input state, so no copy of it is made to replay from (seed MLP
    at batch 32, 2-core Intel Xeon: 1.92 -> 1.3-1.4 ms a fit, with the batch handed to the
    call; Keras 3 on JAX 1.41)."""
    hooks = "chunk" if trainer.steps_per_execution else cb_list.batch_hooks_mode()
    return "train_batch" if feed.steps == 1 and hooks != "each" else "train"


def _run_epoch(trainer, feed, blocks, cb_list, progress, chunker, epoch, start_step, history):
    """One epoch's chunks over `blocks`; returns (the epoch's logs, the step it ended at)."""
    model = trainer.model
    step = start_step
    # kilnet.callbacks: chunk, each or exact; compile's steps_per_execution=N asks for Keras's
    # own batching, one call per N batches; run_eagerly, one batch per call with its hooks
    # around it, as Keras runs it (a print in your step falls between them)
    hooks = "chunk" if trainer.steps_per_execution else (
        "exact" if trainer.runs_eagerly else cb_list.batch_hooks_mode())
    # A resume at the end of an epoch runs no chunk: its logs come from the restored sums.
    logs = _logs_from_sums(trainer.spec, jax.device_get(trainer.state.sums)) if step else {}
    kind = _steps_program(trainer, feed, cb_list)
    for block, batch_size in _block_parts(trainer, feed, blocks):
        # shaped like the sums, which a model's own train_step gives their logs when first
        # traced (the first block of a streamed source)
        trainer.discover_step_logs(batch_size, block.x, block.y)
        trail = programs.sums_trail(trainer.state.sums, TRAIL_STEPS) if hooks == "each" else None
        with _rows_as_given_noted(trainer, block, batch_size, trainer.spec.custom_step):
            train = trainer.program(kind, batch_size, trainer.state, block.x, block.y,
                                    block.order, block.valid, *([np.int32(0)] * 4),
                                    *([] if trail is None else [trail]))
        chunker.fit_to(train)
        while step < block.limit:
            stop = min(chunker.next_stop(step), block.limit,
                       step + (cb_list.steps_until_needed() or block.limit),
                       step + (trainer.steps_per_execution or block.limit),
                       step + {"exact": 1, "each": TRAIL_STEPS}.get(hooks, block.limit))
            if hooks != "each":
                cb_list.on_train_batch_begin(step)  # the chunk's first batch
            began = time.perf_counter()
            sums, fault, rows, saved = _train_chunk(trainer, train, batch_size, block, epoch,
                                                    step, stop, trail,
                                                    keeps_input=kind == "train_batch"
                                                    or trainer.runs_eagerly)
            chunker.observe(stop - step, time.perf_counter() - began)
            if fault != programs.NO_FAULT and trainer.on_nonfinite == "stop":
                trainer.position = (epoch, stop)
                _raise_non_finite(trainer, epoch, int(fault), history)
            if rows is not None:
                stop, sums = _each_batch_hooks(trainer, train, batch_size, block, cb_list,
                                               rows, saved, epoch, step, stop)
            trainer.position = (epoch, stop)
            logs = _logs_from_sums(trainer.spec, sums)
            step = stop
            progress.update(step, logs)
            if rows is None:
                cb_list.on_train_batch_end(step - 1, logs)  # the chunk's last batch
            else:
                cb_list.on_chunk_end(step - 1, logs)
            _interrupt.safe_point(trainer, cb_list)  # checkpoints; SIGINT/SIGTERM stop here
            if model.stop_training:
                return logs, step
    if feed.steps is None:  # a generator of unknown length: its first pass sets the epoch size
        feed.steps = chunker.total = progress.steps = step
    return logs, step


def _block_parts(trainer, feed, blocks):
    """(block, batch size) for each block of the epoch. A block ending with a padded batch,
    where your code runs in the step (Trainer.runs_your_batch_code), is split in two: its
    whole batches, then that last batch alone at its own size, which its own program runs,
    as Keras runs a smaller last batch (an add_loss summing over the batch, a metric counting
    samples, a loss averaging the batch would count the padding otherwise). kilnet's own
    layers, losses and metrics leave padding out: their models keep one program. A model with
    stateful layers takes whole batches of their size only (_check_stateful_batches)."""
    stateful = trainer.stateful_batch_size()
    for block in blocks:
        if block.containers is not None:   # fit's training and validation data may differ
            trainer.note_containers(*block.containers)
        batch_size = block.batch_size or feed.batch_size   # a source's batches may grow
        if stateful is not None:
            _check_stateful_batches(stateful, batch_size, block.last_rows)
        rows = block.last_rows
        # (several devices split each batch evenly: there the last batch stays padded)
        if rows is None or trainer.distribution is not None or \
                not trainer.runs_your_batch_code():
            yield block, batch_size
            continue
        last = block.limit - 1
        if last > block.base:
            yield dataclasses.replace(block, limit=last), batch_size
        at = (last - block.base) * batch_size
        yield dataclasses.replace(block, order=block.order[at:at + rows],
                                  valid=block.valid[at:at + rows], base=last), rows


@contextlib.contextmanager
def _rows_as_given_noted(trainer, block, batch_size, own_step):
    """An error tracing the built-in step (`own_step` None) on a block whose batches' arrays
    hold different numbers of rows (structure.ByBatch) says so: kilnet hands such a batch
    to the model as given, as Keras does, so arrays meant to hold one row per sample each
    that do not (a source's batches out of step) fail in the model's layers."""
    try:
        yield
    except (TypeError, ValueError) as error:
        if own_step is None and isinstance(block.x, structure.ByBatch) and \
                not isinstance(error, InputError):   # kilnet's own errors say it already
            names = structure.input_argument_names(trainer.model, len(block.x.rows))
            held = ", ".join(f"{name}: {rows}" for name, rows in zip(names, block.x.rows))
            labels = "" if block.y is None else f", labels: {batch_size}"
            error.add_note(
                f"kilnet: the batch's arrays hold different numbers of rows ({held}"
                f"{labels}), and such a batch reaches the model as given, as in Keras. If "
                "each array should hold one row per sample, make the source yield batches "
                "whose arrays share their rows.")
        raise


def _job_batch_size(trainer, batch_size) -> int:
    """The batch size of a fit / evaluate / predict: the one given, else the Trainer's
    default. A model built by this job (a subclassed model's first fit) is built for it, as
    Keras builds it on the first batch: a stateful layer's states need it."""
    batch_size = trainer.default_batch_size() if batch_size is None else batch_size
    model = trainer.model
    if not model.built and model.build_batch_size is None:
        model.build_batch_size = batch_size
    return batch_size


def _check_stateful_batches(stateful: int, batch_size: int, last_rows) -> None:
    """A stateful layer keeps one state per row of its batch size: every batch must have
    that many rows (a padded last batch would leave padding in some rows' states)."""
    if batch_size != stateful or last_rows is not None:
        raise InputError(
            f"The model has stateful layers that keep one state per row of a batch of "
            f"{stateful}: every batch must have {stateful} rows, so batch_size must be "
            f"{stateful} and the number of samples a multiple of it. Received: batch_size="
            f"{batch_size}" + ("" if last_rows is None else
                               f", with a last batch of {last_rows} rows")
            + f". Pass batch_size={stateful} and drop or add samples to make whole batches.")


def _train_chunk(trainer, train, batch_size, block, epoch, step, stop, trail=None,
                 keeps_input=False):
    """Steps step..stop on the device; returns the host's copies of (sums, fault flag, the
    sums after each step or None) and the chunk's starting state (None after a replay): its
    one sync per chunk. The program checks the state (and the loss sum) once, at the chunk's
    end; when it is not finite, the chunk is replayed from a copy of its starting state with
    every step checked before it is applied (kilnet.programs), so no non-finite update is
    ever kept. The copy costs one pass over the
    state per chunk; checking every step cost 36% of the seed MLP's epoch, and the per-step
    conditionals a further 18% (measured). `trail`: buffers for the sums after each step
    (programs.train_chunk), for callbacks that read every batch's end. `keeps_input`: `train`
    leaves its input state intact (the "train_batch" program, or any run eagerly), which is
    then the starting state kept, with no copy. Run eagerly (model.run_eagerly) `train`
    checks each step itself (kilnet.trainer.Trainer.program): no replay runs your code
    twice."""
    trainer.take_back_variables()   # a callback may have run a model sharing its layers
    saved = trainer.state if keeps_input else trainer.state_copy()
    args = (block.x, block.y, block.order, block.valid, np.int32(epoch), np.int32(block.base),
            np.int32(step), np.int32(stop)) + (() if trail is None else (trail,))
    out = train(trainer.state, *args)
    trainer.state, rows = out if trail is not None else (out, None)
    sums, fault = jax.device_get((trainer.state.sums, trainer.state.fault))
    if fault == programs.STATE_FAULT:
        checked = trainer.program("train_checked", batch_size, saved, *args[:4],
                                  *([np.int32(0)] * 4), *args[8:])
        out = checked(saved, *args)   # donates the copy: nothing is left to replay from
        trainer.state, rows = out if trail is not None else (out, None)
        sums, fault = jax.device_get((trainer.state.sums, trainer.state.fault))
        saved = None
    return sums, int(fault), None if rows is None else jax.device_get(rows), saved


def _each_batch_hooks(trainer, train, batch_size, block, cb_list, rows, saved, epoch, step,
                      stop):
    """Your callbacks' batch hooks for each batch of a chunk that has run, with the logs after
    that batch (from the sums the chunk recorded). Returns (the step the chunk ends at, the
    sums there): when a hook sets model.stop_training, the chunk is run again from its
    starting state up to that batch only, so training stops after it, as in Keras (the same
    steps give the same numbers)."""
    for index in range(stop - step):
        sums = jax.tree.map(lambda row, at=index: row[at], rows)
        cb_list.on_batch_of_chunk(step + index, _logs_from_sums(trainer.spec, sums))
        if trainer.model.stop_training:
            break
    end = step + index + 1
    if end < stop and saved is not None:
        trainer.state = saved
        sums, _, _, _ = _train_chunk(trainer, train, batch_size, block, epoch, step, end,
                                     programs.sums_trail(saved.sums, TRAIL_STEPS))
    return end, sums


def _raise_non_finite(trainer, epoch, fault, history):
    trainer.model.stop_training = True
    step = programs.fault_step(fault)
    where = f"Training stopped at epoch {epoch + 1}, step {step + 1}"
    if programs.fault_in_update(fault):
        message = (
            f"{where}: the loss and the gradients were finite, but the update they gave was not "
            "(the new weights, optimizer state or layer statistics such as BatchNormalization's "
            "moving variance held NaN or infinity), so that step was not applied and the "
            "model keeps the weights and optimizer state of the last finite step. Likely "
            "causes: a learning rate far too high; inputs of a huge scale (divide images by "
            "255, standardize features); an optimizer epsilon of 0 (Adam(epsilon=0) divides "
            "0 by 0 for a weight whose gradient is always 0). Or compile(..., "
            "on_nonfinite='skip') to skip such steps and count them.")
    else:
        message = (
            f"{where}: the loss or a gradient was not finite (NaN or infinity), so that step "
            "was not applied and the model keeps the parameters of the last finite step. "
            "Likely fixes: a lower learning rate; check the inputs for NaN/inf or unscaled "
            "values (divide images by 255); clip gradients, e.g. "
            "optimizer=kilnet.optimizers.Adam(global_clipnorm=1.0); or compile(..., "
            "on_nonfinite='skip') to skip such steps and count them.")
    raise NonFiniteError(message, epoch=epoch, step=step, history=history)


# -- one batch: Keras's train_on_batch ---------------------------------------------------------------
def train_on_batch(model, x, y, batch_size, *, sample_weight=None, class_weight=None) -> dict:
    """One optimizer step on one batch of arrays (`batch_size` samples), as Keras's
    train_on_batch; returns that batch's logs (loss, then metrics). fit()'s checks, compiled program and non-finite guard,
    without its epoch machinery (callbacks, progress, History, interrupt handling): 1.92 ->
    1.06 ms a call for a 784-128-10 MLP at batch 32 on a 2-core Intel Xeon, where it went
    through fit() (Keras 3 on JAX: 1.00 ms; bench/on_batch.py). As Keras's, the call does not swap the
    optimizer's moving averages into the weights (use_ema: fit() does, at its end), and each
    call draws new dropout masks.

    Example:
        >>> import numpy as np, kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(
        ...     1, kernel_initializer="ones", use_bias=False)])
        >>> model.compile(optimizer=kilnet.optimizers.SGD(0.5), loss="mse")
        >>> train_on_batch(model, np.ones((2, 2)), np.zeros((2, 1)), 2)
        {'loss': 4.0}
        >>> model.get_weights()[0].ravel().tolist()
        [-1.0, -1.0]
    """
    trainer = model.require_compiled()
    trainer.check_trainable()
    x, y = distribution_lib.global_arrays(trainer, x, y)  # several processes: all shards
    x, y, _, batch_size = _arrays_for_fit(
        model, trainer, x, y, seed=None, batch_size=batch_size, epochs=1,
        validation_split=0.0, validation_data=None, initial_epoch=0, verbose=0,
        sample_weight=sample_weight, class_weight=class_weight)
    feed = make_feed(trainer, x, y, batch_size, on_host=True)
    trainer.state = trainer.state._replace(sums=programs.zero_sums(trainer.spec, on_host=True),
                                           fault=np.int32(programs.NO_FAULT))
    (block, batch_size), = _block_parts(trainer, feed, feed.blocks(None))  # one batch
    # A program that leaves its input intact: the starting state to replay from, if the step
    # is not finite, without fit's copy of it (about 0.25 ms a call for the MLP above, profiled)
    train = trainer.program("train_batch", batch_size, trainer.state, block.x, block.y,
                            block.order, block.valid, *([np.int32(0)] * 4))
    sums, fault, _, _ = _train_chunk(trainer, train, batch_size, block, 0, block.base,
                                     block.limit, keeps_input=True)
    trainer.state = programs.next_draws(trainer.state)
    if fault != programs.NO_FAULT and trainer.on_nonfinite == "stop":
        _raise_non_finite(trainer, 0, fault, History())
    _store_metric_state(trainer, sums)
    return _logs_from_sums(trainer.spec, sums)


# -- evaluate and predict ---------------------------------------------------------------------------
def _hook_pieces(trainer, callbacks, first: int, stop: int, kind: str):
    """The (start, end) step ranges that one evaluate or predict block (`kind` "test" or
    "predict") runs as: the whole block, or pieces of compile()'s steps_per_execution when
    callbacks are there to see each piece's batch hooks (Keras calls them every
    steps_per_execution batches), or single batches when a callback of yours has this kind's
    batch hooks and steps_per_execution is not set (Keras's default: every batch)."""
    every = None
    if callbacks is not None:
        every = trainer.steps_per_execution or (
            1 if callbacks.reads_each_batch(kind) else None)
    every = every or (stop - first)
    return [(start, min(start + every, stop)) for start in range(first, stop, every)]


def _evaluate_feed(trainer, feed, *, steps=None, callbacks=None):
    """The loss and metrics over `feed` (its first `steps` batches if given), with the test
    hooks of `callbacks` (a CallbackList) once per block. Returns (logs, batches evaluated)."""
    model = trainer.model
    own_step = trainer.spec.keras_steps if model.overrides_test_step else None
    on_host = getattr(feed, "on_host", False)
    sums = None if own_step is not None else programs.zero_sums(
        trainer.spec, training=False, on_host=on_host,
        loss_by_rows=getattr(feed, "loss_by_rows", False))
    # Per-block logs cost a host sync per block: only when a callback reads them.
    batch_logs = callbacks is not None and callbacks.overrides("on_test_batch_end")
    if callbacks is not None:
        callbacks.on_test_begin()
    trainer.take_back_variables()   # after the callbacks, which may run a model sharing layers
    state = trainer.state   # after on_test_begin: SwapEMAWeights puts the averages in it
    model.stop_evaluating = False
    done = 0
    for block, batch_size in _block_parts(trainer, feed, feed.blocks(None)):
        stop = block.limit if steps is None else min(block.limit, steps)
        if stop <= block.base:
            break
        for start, end in _hook_pieces(trainer, callbacks, block.base, stop, "test"):
            if callbacks is not None:
                callbacks.on_test_batch_begin(start)
            positions = (block.order, block.valid, np.int32(block.base), np.int32(start),
                         np.int32(end))
            if own_step is None:
                args = (sums, programs.model_params(state), state.model_state, block.x,
                        block.y, *positions)
                with _rows_as_given_noted(trainer, block, batch_size, None):
                    sums, model_state = trainer.program("evaluate", batch_size, *args)(*args)
                state = trainer.keep_model_state(model_state)
            else:  # the model's own test_step: what it logs is known once it is traced
                if own_step.test_log_names is None and not trainer.runs_eagerly:
                    own_step.discover_test_logs(batch_size, block.x, block.y)
                if sums is None:
                    sums = programs.zero_sums(trainer.spec, training=False)
                args = (sums, state, block.x, block.y, *positions)
                sums, model_state = trainer.program("evaluate_custom", batch_size,
                                                    *args)(*args)
                state = trainer.keep_model_state(model_state)
            done = end
            if callbacks is not None:
                logs = _logs_from_sums(trainer.spec, jax.device_get(sums),
                                       test=own_step is not None) if batch_logs else {}
                callbacks.on_test_batch_end(end - 1, logs)
            if model.stop_evaluating:
                break
        if (steps is not None and stop >= steps) or model.stop_evaluating:
            break
    logs = {} if sums is None else _logs_from_sums(  # host sync: once
        trainer.spec, jax.device_get(sums), test=own_step is not None)
    if sums is not None:
        _store_metric_state(trainer, sums)
    if callbacks is not None:
        # Keras flattens evaluate's logs before on_test_end, which sorts that flat copy again
        # by name alone ("loss" before a step's "compile_metrics" entries)
        callbacks.on_test_end(dict(logs))
    return logs, done


def evaluate(model, x, y, *, batch_size=None, verbose="auto", return_dict=False, steps=None,
             callbacks=None, sample_weight=None, one_batch=False):
    """The loss and metrics on (x, y): a list in Keras's order (a float for one value), or a
    dict with return_dict=True. steps: evaluate the first `steps` batches only. callbacks get
    on_test_begin, on_test_batch_begin / on_test_batch_end once per evaluated block (with the
    running logs), and on_test_end with the final logs, as in Keras; a callback can set
    model.stop_evaluating = True to end early. `one_batch`: x and y are one batch, read once
    (test_on_batch): they go to the device with the program's call."""
    trainer = model.require_compiled()
    verbose = resolve_verbose(verbose)
    steps = _check_count(steps, "steps")
    batch_size = _job_batch_size(trainer, batch_size)
    x, y = distribution_lib.global_arrays(trainer, x, y)  # several processes: all shards
    verbose = verbose if distribution_lib.is_chief() else 0
    if feeds.is_stream(x):
        _refuse_stream_weights(x, sample_weight, None)
        feed = make_feed(trainer, x, y, batch_size, steps=steps,
                         own_step=model.overrides_test_step)
        trainer.ensure_state(input_shape=feed.sample_shape)
    else:
        xs, x_container, x_names = _checked_inputs(model, x, model.overrides_test_step)
        trainer.ensure_state(input_shape=structure.sample_batch(model, x, xs))
        ys = structure.targets_of(trainer.objective, y, own_step=model.overrides_test_step)
        y_container = structure.container_of(y, ys)
        y_names = _label_names(trainer, len(ys))
        xs, ys, batch_size = validation.check_eval_inputs(
            model, xs, ys, x_names=x_names, y_names=y_names, batch_size=batch_size)
        validation.check_targets(model, trainer.objective, ys, y_names=y_names, job="evaluate")
        trainer.resolve_accuracy([labels.shape for labels in ys])
        trainer.note_labels(len(ys))
        trainer.note_containers(x_container, y_container)
        ys = ys + validation.sample_weights(trainer.objective, ys, sample_weight, None)
        feed = make_feed(trainer, structure.pack(xs), structure.pack_labels(ys), batch_size,
                         on_host=one_batch)
    total = feed.steps if steps is None or feed.steps is None else min(steps, feed.steps)
    cb_list = None
    if callbacks:
        cb_list = CallbackList(list(callbacks), model=model, epochs=1, steps=total,
                               verbose=verbose)
    progress = EpochProgress(2 if verbose else 0, 0, total, title="Evaluate")
    try:
        logs, done = _evaluate_feed(trainer, feed, steps=steps, callbacks=cb_list)
    finally:
        if hasattr(feed, "close"):  # a PyDataset's worker pool
            feed.close()
    if verbose:
        progress.steps = total or done
        progress.epoch_end(0, logs, steps_done=done)
    return keras_results(model, logs, return_dict)


def keras_results(model, logs, return_dict=False):
    """The results of evaluate / test_on_batch / train_on_batch as Keras gives them: the logs
    dict with return_dict (keys sorted, a model's own step's as Keras flattens them: see
    kilnet._step_logs), else their values in Keras's order (model.metrics_names, the compiled
    metrics' entry by their names, then the other logs by name), one value as a float.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> model.compile(loss="mse", metrics=["mae"])
        >>> keras_results(model, {"mae": 0.5, "loss": 0.25})
        [0.25, 0.5]
    """
    logs = _step_logs.keras_sorted(logs)
    if return_dict:
        return logs
    ordered = _result_order(model)
    values = [logs[name] for name in ordered if name in logs]
    values += [value for name, value in sorted(logs.items()) if name not in ordered]
    return values[0] if len(values) == 1 else values


def _result_order(model) -> list:
    """model.metrics_names with the compiled metrics' entry ("compile_metrics", listed so
    with a test_step of yours) replaced by its metrics' own names, as Keras's
    _flatten_metrics_in_order: those of several outputs ("mae", not the log's "a_mae") match
    no log name, so those logs follow the others sorted by name, as in Keras."""
    held = {metric.name: metric for metric in model.metrics}
    order = []
    for name in model.metrics_names:
        metric = held.get(name)
        if isinstance(metric, CompileMetrics):
            order += [each.name for each in metric.metrics]
        else:
            order.append(name)
    return order


def predict(model, x, *, batch_size=None, verbose="auto", steps=None, callbacks=None,
            one_batch=False):
    """The model's outputs for x, as NumPy arrays. steps: predict the first `steps` batches
    only. callbacks get on_predict_begin, on_predict_batch_begin / on_predict_batch_end once
    per predicted block (logs {"outputs": that block's outputs}) and on_predict_end, as in
    Keras; a callback can set model.stop_predicting = True to end early. `one_batch`: x is
    one batch of arrays, read once (predict_on_batch of a model's own predict_step): its
    arrays go to the device with the program's call (feeds.ArrayFeed's on_host)."""
    verbose = resolve_verbose(verbose)
    steps = _check_count(steps, "steps")
    trainer = _prediction_trainer(model)
    batch_size = _job_batch_size(trainer, batch_size)
    (x,) = distribution_lib.global_arrays(trainer, x)  # several processes: all shards
    verbose = verbose if distribution_lib.is_chief() else 0
    if feeds.is_stream(x):
        feed = make_feed(trainer, x, None, batch_size, steps=steps, labels=False,
                         own_step=model.overrides_predict_step)
        trainer.ensure_state(input_shape=feed.sample_shape)
    else:
        feed = _prediction_feed(model, trainer, x, batch_size, one_batch)
    total = feed.steps if steps is None or feed.steps is None else min(steps, feed.steps)
    cb_list = None
    if callbacks:
        cb_list = CallbackList(list(callbacks), model=model, epochs=1, steps=total,
                               verbose=verbose)
        cb_list.on_predict_begin()
    progress = EpochProgress(2 if verbose else 0, 0, total, title="Predict")
    model.stop_predicting = False
    state = trainer.state
    own_step = trainer.spec.keras_steps if model.overrides_predict_step else None
    results = []
    done = 0
    pack = model.pack_outputs
    # by the block's batch size and input shapes (a source's batches may change shape):
    own_structures = {}    # (tree structure, leaves) of what the model's predict_step returns
    output_shapes = {}     # the outputs' per-sample shapes
    for block, batch_size in _block_parts(trainer, feed, feed.blocks(None)):
        as_given = isinstance(block.x, structure.ByBatch)   # each array at its own rows
        layout = (batch_size, block.x.rows if as_given else None) + tuple(
            a.shape[1:] for a in jax.tree.leaves(block.x))
        stop = block.limit if steps is None else min(block.limit, steps)
        if stop <= block.base:
            break
        rows = block.order.shape[0]
        outputs = None   # the block's output buffers, each piece writing its rows
        for start, end in _hook_pieces(trainer, cb_list, block.base, stop, "predict"):
            if cb_list is not None:
                cb_list.on_predict_batch_begin(start)
            positions = (block.order, block.valid, np.int32(block.base), np.int32(start),
                         np.int32(end))
            if own_step is None and as_given:   # the outputs each batch gives, joined
                if layout not in output_shapes:
                    with _rows_as_given_noted(trainer, block, batch_size, None):
                        output_shapes[layout] = _given_batch_outputs(trainer, state, block.x)
                if outputs is None:
                    outputs = tuple(programs.prediction_buffer(leaf, rows, batch_size)
                                    for leaf in output_shapes[layout])
                args = (outputs, programs.model_params(state), state.model_state, block.x,
                        *positions)
                outputs, model_state = trainer.program("predict", batch_size, *args)(*args)
                state = trainer.keep_model_state(model_state)
            elif own_step is None:
                if layout not in output_shapes:
                    output_shapes[layout] = _output_shapes(model, state, block.x, batch_size)
                shapes = output_shapes[layout]
                if outputs is None:   # host zeros in one transfer: cheaper than jnp.zeros
                    outputs = jax.device_put(tuple(
                        np.zeros((rows,) + tuple(shape), programs.prediction_dtype(spec.dtype))
                        for shape, spec in zip(shapes, model.output_specs)))
                args = (outputs, programs.model_params(state), state.model_state, block.x,
                        *positions)
                outputs, model_state = trainer.program("predict", batch_size, *args)(*args)
                state = trainer.keep_model_state(model_state)
            else:  # the model's own predict_step: buffers for whatever it returns
                eager = trainer.runs_eagerly   # then its first batch makes them
                if layout not in own_structures and not eager:   # traced once per layout
                    own_structures[layout] = own_step.predict_structure(batch_size, block.x)
                own_structure = own_structures.get(layout)
                if outputs is None and not eager:
                    outputs = tuple(programs.prediction_buffer(leaf, rows, batch_size)
                                    for leaf in own_structure[1])
                args = (outputs, state, block.x, *positions)
                outputs, model_state = trainer.program("predict_custom", batch_size,
                                                       *args)(*args)
                state = trainer.keep_model_state(model_state)
                if own_structure is None:
                    own_structure = own_structures[layout] = own_step.predicted
                pack = functools.partial(jax.tree.unflatten, own_structure[0])
            # host sync: this piece's predictions, real samples of the batches run only
            valid = np.zeros(rows, bool)
            piece = slice((start - block.base) * batch_size,
                          (end - block.base) * batch_size)
            valid[piece] = np.asarray(block.valid)[piece]
            batches = slice(start - block.base, end - block.base)
            results.append([np.asarray(out)[valid] if whole is None else
                            _batch_outputs(np.asarray(out)[batches], whole, one_batch)
                            for out, whole in zip(outputs, _per_batch_shapes(
                                own_structure[1] if own_step is not None else
                                output_shapes[layout] if as_given else None, outputs,
                                batch_size))])
            done = end
            if cb_list is not None:
                cb_list.on_predict_batch_end(end - 1, {"outputs": pack(results[-1])})
            if model.stop_predicting:
                break
        if (steps is not None and stop >= steps) or model.stop_predicting:
            break
    if hasattr(feed, "close"):  # a PyDataset's worker pool
        feed.close()
    if cb_list is not None:
        cb_list.on_predict_end()
    if verbose:
        progress.steps = total or done
        progress.epoch_end(0, {}, steps_done=done)
    if not results:
        return model.pack_outputs([np.zeros((0,) + tuple(spec.shape),
                                            programs.prediction_dtype(spec.dtype))
                                   for spec in model.output_specs])
    return pack([_joined(parts, index) for index, parts in enumerate(zip(*results))])


def _per_batch_shapes(leaves, outputs, batch_size) -> list:
    """For each predict output, None where it is kept per sample, else the shape of the
    whole output each batch gave (`leaves`, one batch's outputs: a model's own
    predict_step returning a per-batch summary, kilnet.programs.per_sample; a batch whose
    arrays keep their own rows, whose outputs need not have x's rows); `leaves` None: every
    output is per sample."""
    if leaves is None:
        return [None] * len(outputs)
    return [None if programs.per_sample(tuple(leaf.shape), batch_size) else tuple(leaf.shape)
            for leaf in leaves]


def _batch_outputs(per_batch, shape, one_batch: bool):
    """The outputs a run of batches gave, each `shape`, joined along their first axis as
    Keras's predict concatenates them; predict_on_batch's one batch gives its own."""
    if one_batch:
        return np.array(per_batch[0])
    if not shape:
        raise InputError(
            "predict_step returned a scalar for a batch, and predict joins the batches' "
            "outputs along their first axis, which a scalar has none of (Keras's predict "
            "fails so too: zero-dimensional arrays cannot be concatenated). Return it with an "
            "axis, ops.reshape(value, (1,)), or use predict_on_batch, which returns it as it "
            "is.")
    return per_batch.reshape((-1,) + shape[1:])


def _joined(parts, index: int):
    """One output's predictions, its pieces joined along the batch axis. Batches of other
    shapes (each padded to its own length) may give it other shapes, which one array cannot
    hold: Keras's predict fails joining them too."""
    shapes = list(dict.fromkeys(tuple(part.shape[1:]) for part in parts))
    if len(shapes) > 1:
        raise InputError(
            f"predict's batches gave output {index} samples of different shapes, which one "
            f"array cannot hold: the batches' shapes differ (each padded to its own length?). "
            f"Predict each batch on its own (model.predict_on_batch(x) or model(x) for each "
            f"batch), or pad every batch to one length. Received: per-sample shapes {shapes}")
    if len(parts) == 1 and parts[0].ndim == 0:   # predict_on_batch's scalar, as it came
        return parts[0]
    return np.concatenate(parts)


def _prediction_trainer(model):
    """The model's Trainer; Keras allows predict on an uncompiled model."""
    if model.compiled is None:
        model.compiled = Trainer(model, optimizer="sgd", loss="mse", metrics=[])
        model.compiled.for_prediction_only = True
    return model.compiled


def _prediction_feed(model, trainer, x, batch_size, on_host=False):
    """The ArrayFeed of predict's arrays, checked, with the model built for them."""
    own_step = model.overrides_predict_step
    xs = structure.inputs_of(model, x, own_step=own_step)
    x_container = structure.x_container(model, x, xs, own_step)
    as_given = structure.is_step_batch(model, x, own_step)
    xs, batch_size = validation.check_predict_inputs(
        model, xs, x_names=structure.step_batch_names(x) if as_given
        else structure.input_argument_names(model, len(xs)),
        batch_size=batch_size, against_inputs=not as_given)
    trainer.ensure_state(input_shape=structure.sample_batch(model, x, xs))
    trainer.note_containers(x_container)
    return make_feed(trainer, structure.pack(xs), None, batch_size, on_host=on_host)


def predict_on_batch(model, x, rows):
    """The model's outputs for one batch of arrays (`rows` samples), as Keras's predict_on_batch: predict's
    checks, then the model's forward pass on the whole batch (programs.predict_batch: no loop
    over blocks, positions or output buffers), the batch handed to the program's call. A
    model's own predict_step, and several devices, go through predict().

    Example:
        >>> import numpy as np, kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(
        ...     1, kernel_initializer="ones")])
        >>> predict_on_batch(model, np.array([[1.0, 2.0]]), 1).tolist()
        [[3.0]]
    """
    trainer = _prediction_trainer(model)
    if trainer.distribution is not None or model.overrides_predict_step:
        return predict(model, x, batch_size=rows, verbose=0, one_batch=True)
    feed = _prediction_feed(model, trainer, x, rows, on_host=True)
    state = trainer.state
    args = (programs.model_params(state), state.model_state, feed.x)
    outputs, model_state = trainer.program("predict_batch", rows, *args)(*args)
    trainer.keep_model_state(model_state)
    # np.array: writable copies, as Keras's (np.asarray of a device array is read-only)
    return model.pack_outputs([np.array(out, programs.prediction_dtype(out.dtype))
                               for out in outputs])


def _given_batch_outputs(trainer, state, x) -> list:
    """The outputs (jax.ShapeDtypeStructs) of one batch of a block whose arrays keep their
    own rows (structure.ByBatch), traced abstractly: predict joins each batch's outputs
    along their first axis, as Keras's predict concatenates them."""
    batch = x.abstract_batch(list(trainer.spec.input_dtypes))
    batch = batch[0] if len(batch) == 1 else batch
    model = trainer.model
    with _scope.shapes_only():
        outputs = jax.eval_shape(
            lambda params, model_state, xb: model.apply(params, model_state, xb)[0],
            programs.model_params(state), state.model_state, batch)
    return model.output_list(outputs)


def _output_shapes(model, state, x, batch_size) -> list:
    """Each output's per-sample shape: the model's, or where it has an unknown length (a
    variable-length sequence, a Lambda's trace), the one this data gives, traced abstractly."""
    specs = model.output_specs
    other_input = not model.is_functional and model.input_specs is not None and any(
        tuple(a.shape[1:]) != tuple(spec.shape) for a, spec in zip(
            jax.tree.leaves(x), model.input_specs))   # a subclassed model's other shape
    if not other_input and all(d is not None for spec in specs for d in spec.shape):
        return [spec.shape for spec in specs]
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch_size,) + a.shape[1:], a.dtype),
                         x)
    with _scope.shapes_only():   # a layer called with training=True draws nothing here
        outputs = jax.eval_shape(
            lambda params, model_state, xb: model.apply(params, model_state, xb)[0],
            programs.model_params(state), state.model_state, batch)
    return [out.shape[1:] for out in model.output_list(outputs)]
