"""The host side of training: the Trainer that owns the compiled programs and the training
state, and the thin fit / evaluate / predict loops around them.

The loops only slice epochs into chunks, dispatch a compiled chunk, and read back a few scalars
(loss and metric sums) at each chunk boundary: that is the only host-device sync while training.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import data as data_lib
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet import programs, utils
from kilnet.callbacks import CallbackList, History
from kilnet.errors import NonFiniteError
from kilnet.progress import EpochProgress, resolve_verbose

DEFAULT_BATCH_SIZE = 32
# A chunk aims at this much device time: long enough that dispatch and the per-chunk sync
# (~0.1 ms) vanish, short enough that the progress bar moves several times a second.
CHUNK_SECONDS = 0.2
# Until a chunk has been timed, chunk length is estimated from the step's FLOPs at a
# deliberately low throughput, so the first chunk is short rather than long.
ASSUMED_FLOPS_PER_SECOND = 2e10


class Trainer:
    """What compile() builds: the resolved optimizer/loss/metrics, the step specification, the
    training state and a cache of ahead-of-time compiled programs per data shape."""

    def __init__(self, model, *, optimizer, loss, metrics, on_nonfinite="stop"):
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'.")
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError("on_nonfinite must be 'stop' or 'skip'. "
                             f"Received: on_nonfinite={on_nonfinite!r}")
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list, e.g. metrics=['accuracy']. "
                            f"Received: metrics={metrics!r}")
        self.model = model
        self.optimizer = optimizers_lib.get(optimizer)
        self.tx = optimizers_lib.transformation(self.optimizer)
        self.loss = losses_lib.get(loss)
        self.metric_ids = list(metrics or [])
        self.on_nonfinite = on_nonfinite
        self.spec = None
        self.state = None            # programs.TrainState, once the model is built
        self.seed = None             # decides the data order and dropout of this training run
        self.fit_calls = 0
        self.report = programs.CompileReport()
        self._programs = {}
        self.resume_point = None     # (epoch, step) set by a checkpoint restore
        for identifier in self.metric_ids:  # fail at compile time on unknown names
            metrics_lib.get(identifier, loss=self.loss, output_shape=(2,))

    # -- building ----------------------------------------------------------------------------
    def prepare(self, seed=None):
        """At compile(): if the input shape is known, build, and cost the training step."""
        if self.model._input_shape is None:
            return
        self.ensure_state(seed)
        x_spec = jax.ShapeDtypeStruct((1,) + tuple(self.model._input_shape), jnp.float32)
        y_shape = (1,) if isinstance(self.loss, losses_lib.SparseCategoricalCrossentropy) \
            else (1,) + tuple(self.model.output_shape)
        y_dtype = jnp.int32 if len(y_shape) == 1 else jnp.float32
        self._cost_step(x_spec, jax.ShapeDtypeStruct(y_shape, y_dtype), DEFAULT_BATCH_SIZE)

    def _cost_step(self, x_spec, y_spec, batch_size):
        flops, bytes_ = programs.step_cost(self.spec, self.state, x_spec, y_spec, batch_size)
        self.report.flops_per_step, self.report.bytes_per_step = flops, bytes_
        self.report.batch_size = batch_size

    def _make_spec(self, label_ndim=None):
        model = self.model
        metric_objs = [metrics_lib.get(m, loss=self.loss, label_ndim=label_ndim,
                                       output_shape=model.output_shape)
                       for m in self.metric_ids]
        loss = self.loss
        use_logits = (not loss.from_logits and loss.logits_of is not None
                      and model.final_activation_name == loss.logits_of)
        return programs.StepSpec(model=model, loss=loss.with_logits() if use_logits else loss,
                                 metrics=metric_objs, tx=self.tx, use_logits=use_logits,
                                 on_nonfinite=self.on_nonfinite)

    def ensure_state(self, seed=None, input_shape=None):
        """Build the model if needed and create the training state (optimizer state, keys)."""
        if self.state is not None:
            return
        model = self.model
        if model._params is None:
            model.build(input_shape, seed=seed)
        self.seed = utils.next_seed() if seed is None else int(seed)
        self.spec = self._make_spec()
        self.report.params = model.count_params()
        params = model._params
        self.state = programs.TrainState(
            params=params, model_state=model._state, opt_state=self.tx.init(params),
            rng=jax.random.fold_in(utils.key_from_seed(self.seed), 1),
            sums=programs.zero_sums(self.spec),
            fault=jnp.asarray(programs.NO_FAULT, jnp.int32),
            skipped=jnp.zeros((), jnp.int32))

    def reset_state(self):
        self.state = None
        self._programs.clear()

    def replace_weights(self, params, model_state):
        if self.state is not None:
            self.state = self.state._replace(params=params, model_state=model_state)

    def program(self, kind: str, batch_size: int, *args):
        """The compiled program `kind` for these argument shapes, compiling it on first use."""
        key = (kind, batch_size) + tuple(
            (a.shape, str(a.dtype)) for a in jax.tree.leaves(args) if hasattr(a, "shape"))
        if key not in self._programs:
            fn, donate = {
                "train": (lambda *a: programs.train_chunk(self.spec, batch_size, *a), (0,)),
                "evaluate": (lambda *a: programs.eval_chunk(self.spec, batch_size, *a), (0,)),
                "predict": (lambda *a: programs.predict_chunk(self.spec, batch_size, *a), (0,)),
            }[kind]
            n = args[1 if kind == "train" else 3].shape[0]
            name = f"{kind} loop ({n:,} samples, batch {batch_size})"
            compiled, info = programs.compile_program(name, fn, donate, *programs.abstract(args))
            self.report.programs.append(info)
            self._programs[key] = compiled
        return self._programs[key]

    # -- the learning rate, for callbacks ---------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return optimizers_lib.get_learning_rate(self.state.opt_state)

    @learning_rate.setter
    def learning_rate(self, value: float):
        self.state = self.state._replace(
            opt_state=optimizers_lib.set_learning_rate(self.state.opt_state, value))


@dataclass
class Chunker:
    """Chooses how many steps the next chunk runs, from the time the last chunk took."""

    total: int
    steps: int

    def next_stop(self, start: int) -> int:
        return min(start + self.steps, self.total)

    def observe(self, steps_run: int, seconds: float):
        if steps_run and seconds > 0:
            rate = steps_run / seconds
            self.steps = int(np.clip(rate * CHUNK_SECONDS, 1, self.total))


def _initial_chunk(trainer, total_steps):
    flops = trainer.report.flops_per_step
    if not flops:
        return max(1, min(total_steps, 64))
    return int(np.clip(ASSUMED_FLOPS_PER_SECOND * CHUNK_SECONDS / flops, 1, total_steps))


def _logs_from_sums(spec, sums: dict, prefix: str = "") -> dict:
    """Exact epoch means, in Keras's order: loss first, then the metrics as compiled."""
    count = max(float(sums["count"]), 1.0)
    return {prefix + name: float(sums[name]) / count for name in spec.sum_names}


# -- fit ------------------------------------------------------------------------------------------
def fit(model, x, y, *, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0, seed=None):
    trainer = model._trainer()
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    from kilnet import validation
    x, y, val, batch_size = validation.check_fit_inputs(
        model, trainer.loss, x, y, batch_size=batch_size, epochs=epochs,
        validation_split=validation_split, validation_data=validation_data,
        initial_epoch=initial_epoch, verbose=verbose)
    if validation_split and validation_data is None:
        (x, y), val = data_lib.split_validation(x, y, validation_split)
    trainer.ensure_state(seed, input_shape=x.shape[1:])
    if seed is not None:
        trainer.seed = int(seed)
    trainer.fit_calls += 1

    n = len(x)
    steps = data_lib.steps_for(n, batch_size)
    x_dev = data_lib.to_device(x)
    y_dev = data_lib.to_device(y.astype(data_lib.label_dtype_for(trainer.loss, y)))
    val_dev = None
    if val is not None:
        vx, vy = val
        val_dev = (data_lib.to_device(vx),
                   data_lib.to_device(vy.astype(data_lib.label_dtype_for(trainer.loss, vy))))

    history = History()
    cb_list = CallbackList(list(callbacks or []) + [history], model,
                           {"epochs": epochs, "steps": steps, "verbose": verbose,
                            "batch_size": batch_size, "samples": n})
    progress = EpochProgress(verbose, epochs, steps)
    model.stop_training = False
    model.history = history

    order_fn = _epoch_order_fn(n, steps * batch_size, shuffle)
    shuffle_key = jax.random.fold_in(utils.key_from_seed(trainer.seed), 2)
    # Compile before the first epoch so compile time is reported, not hidden in epoch 1.
    train = trainer.program("train", batch_size, trainer.state, x_dev, y_dev,
                            order_fn(shuffle_key, 0), jnp.int32(n), jnp.int32(0), jnp.int32(0),
                            jnp.int32(0))
    chunker = Chunker(steps, _initial_chunk(trainer, steps))

    cb_list.on_train_begin()
    epoch_logs = {}
    start_epoch, start_step = initial_epoch, 0
    if trainer.resume_point is not None:
        start_epoch, start_step = trainer.resume_point
        trainer.resume_point = None
    try:
        for epoch in range(start_epoch, epochs):
            if start_step == 0:
                trainer.state = trainer.state._replace(sums=programs.zero_sums(trainer.spec))
            cb_list.on_epoch_begin(epoch)
            progress.epoch_begin(epoch)
            order = order_fn(jax.random.fold_in(shuffle_key, trainer.fit_calls * 1_000_003 + epoch), 0)
            epoch_logs = _run_epoch(trainer, train, cb_list, progress, chunker, x_dev, y_dev, order,
                                    n, epoch, start_step, history)
            start_step = 0
            if val_dev is not None:
                epoch_logs.update(_evaluate_arrays(trainer, *val_dev, batch_size, prefix="val_"))
            trainer.position = (epoch + 1, 0)
            progress.epoch_end(epoch, epoch_logs)
            cb_list.on_epoch_end(epoch, epoch_logs)
            if model.stop_training:
                break
    finally:
        progress.close()
    cb_list.on_train_end(epoch_logs)
    return history


def _epoch_order_fn(n: int, padded: int, shuffle: bool):
    """Device function: the epoch's sample order, padded with index 0 to whole batches."""
    @jax.jit
    def order(key, _):
        base = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
        return jnp.concatenate([base, jnp.zeros(padded - n, base.dtype)]).astype(jnp.int32)
    return order


def _run_epoch(trainer, train, cb_list, progress, chunker, x_dev, y_dev, order, n, epoch,
               start_step, history):
    model = trainer.model
    step = start_step
    logs = {}
    while step < chunker.total:
        stop = chunker.next_stop(step)
        began = time.perf_counter()
        trainer.state = train(trainer.state, x_dev, y_dev, order, jnp.int32(n), jnp.int32(epoch),
                              jnp.int32(step), jnp.int32(stop))
        trainer.position = (epoch, stop)
        # Host sync, once per chunk: the metric sums and the fault flag.
        sums, fault = jax.device_get((trainer.state.sums, trainer.state.fault))
        chunker.observe(stop - step, time.perf_counter() - began)
        logs = _logs_from_sums(trainer.spec, sums)
        if fault != programs.NO_FAULT:
            _raise_non_finite(trainer, epoch, int(fault), history)
        step = stop
        progress.update(step, logs)
        cb_list.on_train_batch_end(step - 1, logs)
        if model.stop_training:
            break
    return logs


def _raise_non_finite(trainer, epoch, step, history):
    trainer.model.stop_training = True
    raise NonFiniteError(
        f"Training stopped at epoch {epoch + 1}, step {step + 1}: the loss or a gradient was "
        "not finite (NaN or infinity), so that step was not applied and the model keeps the "
        "parameters of the last finite step. Likely fixes: a lower learning rate; check the "
        "inputs for NaN/inf or unscaled values (divide images by 255); clip gradients, e.g. "
        "optimizer=kilnet.optimizers.Adam(global_clipnorm=1.0); or compile(..., "
        "on_nonfinite='skip') to skip such steps and count them.",
        epoch=epoch, step=step, history=history)


# -- evaluate and predict ---------------------------------------------------------------------------
def _evaluate_arrays(trainer, x_dev, y_dev, batch_size, prefix=""):
    n = x_dev.shape[0]
    steps = data_lib.steps_for(n, batch_size)
    state = trainer.state
    sums = programs.zero_sums(trainer.spec)
    args = (sums, state.params, state.model_state, x_dev, y_dev, jnp.int32(n), jnp.int32(0),
            jnp.int32(steps))
    program = trainer.program("evaluate", batch_size, *args)
    sums = program(*args)
    return _logs_from_sums(trainer.spec, jax.device_get(sums), prefix)  # host sync: once per evaluation


def evaluate(model, x, y, *, batch_size=None, verbose="auto", return_dict=False):
    trainer = model._trainer()
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    from kilnet import validation
    x, y, batch_size = validation.check_eval_inputs(model, trainer.loss, x, y,
                                                    batch_size=batch_size)
    trainer.ensure_state(input_shape=x.shape[1:])
    resolve_verbose(verbose)
    logs = _evaluate_arrays(trainer, data_lib.to_device(x),
                            data_lib.to_device(y.astype(data_lib.label_dtype_for(trainer.loss, y))),
                            batch_size)
    if resolve_verbose(verbose):
        progress = EpochProgress(2, 0, data_lib.steps_for(len(x), batch_size), title="Evaluate")
        progress.epoch_end(0, logs)
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def predict(model, x, *, batch_size=None, verbose="auto"):
    trainer = model.compiled
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    from kilnet import validation
    x, batch_size = validation.check_predict_inputs(model, x, batch_size=batch_size)
    resolve_verbose(verbose)
    if trainer is None:  # Keras allows predict on an uncompiled model
        from kilnet.fit import Trainer
        trainer = model.compiled = Trainer(model, optimizer="sgd", loss="mse", metrics=[])
    trainer.ensure_state(input_shape=x.shape[1:])
    n = len(x)
    steps = data_lib.steps_for(n, batch_size)
    state = trainer.state
    outputs = jnp.zeros((steps * batch_size,) + tuple(model.output_shape), jnp.float32)
    args = (outputs, state.params, state.model_state, data_lib.to_device(x), jnp.int32(n),
            jnp.int32(0), jnp.int32(steps))
    program = trainer.program("predict", batch_size, *args)
    return np.asarray(program(*args))[:n]  # host sync: the predictions
