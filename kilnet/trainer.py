"""Trainer: what compile() builds. It owns the resolved optimizer, losses and metrics
(kilnet.objective), the step specification, the training state (one TrainState pytree that
holds the model's weights while it is compiled) and a cache of ahead-of-time compiled programs
per data shape (kilnet.programs). The loops that drive it are in kilnet.fit.
"""

from __future__ import annotations

import time
import weakref

import jax
import jax.numpy as jnp

from kilnet import distribution as distribution_lib
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import objective as objective_lib
from kilnet import optimizers as optimizers_lib
from kilnet import _tree, programs, structure, utils

DEFAULT_BATCH_SIZE = 32


class Trainer:
    """What compile() builds: the resolved optimizer/loss/metrics, the step specification, the
    training state and a cache of ahead-of-time compiled programs per data shape."""

    def __init__(self, model, *, optimizer, loss, metrics, loss_weights=None,
                 on_nonfinite="stop", distribution=None):
        if loss is None:
            raise ValueError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'.")
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError("on_nonfinite must be 'stop' or 'skip'. "
                             f"Received: on_nonfinite={on_nonfinite!r}")
        if metrics is not None and not isinstance(metrics, (list, tuple, dict)):
            raise TypeError(f"metrics must be a list, e.g. metrics=['accuracy'], or a dict by "
                            f"output name. Received: metrics={metrics!r}")
        self.model = model
        self.optimizer = optimizers_lib.get(optimizer)
        self.tx = optimizers_lib.transformation(self.optimizer)
        if isinstance(self.optimizer, optimizers_lib.Optimizer):
            self.optimizer._trainer = weakref.ref(self)
        # The compile arguments, resolved (a Loss, or a list/dict of them for several outputs);
        # the Objective that pairs them with the outputs is made once the outputs are known.
        self.loss = _resolve_losses(loss)
        self.metric_ids = (dict(metrics) if isinstance(metrics, dict)
                           else list(metrics or []))
        self.objective = None
        self.on_nonfinite = on_nonfinite
        self.distribution = distribution_lib.get(distribution)  # None: one device
        self.loss_weights = loss_weights
        self.spec = None
        self.state = None            # programs.TrainState, once the model is built
        self._var_paths = {}         # id(Variable) -> (TrainState field, path in that tree)
        self._held = []              # the Variables whose values live in self.state
        self._trainable_paths = None # decided at the first build: frozen layers stay frozen
        self.seed = None             # decides the data order and dropout of this training run
        self.fit_calls = 0
        self.report = programs.CompileReport()
        self._programs = {}
        self.resume_point = None     # (epoch, step) set by a checkpoint restore
        self.max_chunk_steps = None  # cap on a chunk's steps (BackupAndRestore's save_freq)
        for identifier in _flat_metric_ids(self.metric_ids):  # unknown names fail at compile
            metrics_lib.get(identifier, output_shape=(2,))

    # -- building ----------------------------------------------------------------------------
    def prepare(self, seed=None):
        """At compile(): if the input shape is known, build, and cost the training step."""
        if self.model.input_specs is None or any(
                None in spec.shape for spec in self.model.input_specs):
            return  # built and costed by fit(), from the data's shapes
        self.ensure_state(seed)
        x_spec = structure.pack([jax.ShapeDtypeStruct((1,) + tuple(spec.shape), spec.dtype)
                                 for spec in self.model.input_specs])
        y_specs = []
        for head in self.objective.targets:
            sparse = isinstance(head.loss, losses_lib.SparseCategoricalCrossentropy)
            y_shape = (1,) + (head.shape[:-1] if sparse else head.shape)  # ids: no class axis
            y_specs.append(jax.ShapeDtypeStruct(y_shape, jnp.int32 if sparse else jnp.float32))
        self._cost_step(x_spec, structure.pack(y_specs), DEFAULT_BATCH_SIZE)

    def _cost_step(self, x_spec, y_spec, batch_size):
        began = time.perf_counter()
        flops, bytes_ = programs.step_cost(self.spec, self.state, x_spec, y_spec, batch_size)
        self.report.step_seconds = round(time.perf_counter() - began, 4)
        self.report.flops_per_step, self.report.bytes_per_step = flops, bytes_
        self.report.batch_size = batch_size

    def _make_spec(self):
        model = self.model
        custom_loss = model.overrides_compute_loss
        self.objective = objective_lib.build(model, self.loss, self.loss_weights,
                                             self.metric_ids, custom_loss=custom_loss)
        return programs.StepSpec(model=model, objective=self.objective, tx=self.tx,
                                 input_dtypes=tuple(s.dtype for s in model.input_specs),
                                 custom_loss=custom_loss,
                                 on_nonfinite=self.on_nonfinite,
                                 batch_sharding=getattr(self.distribution, "batch_sharding",
                                                        None))

    def ensure_state(self, seed=None, input_shape=None):
        """Build the model if needed and create the training state (optimizer state, keys);
        once it exists, take back any weight changed since (set_weights, another model
        sharing layers) without touching the optimizer state."""
        if self.state is not None:
            if any(v.holder is not self for v in self._held):
                self._hold_variables(self.state)
            return
        model = self.model
        if not model.built:
            model.build(input_shape, seed=seed)
        self.seed = utils.next_seed() if seed is None else int(seed)
        self.spec = self._make_spec()
        self.report.params = model.count_params()
        trainable = {id(v) for v in model.trainable_weights}
        self._trainable_paths = {path for path, kind, v in model.variable_paths()
                                 if kind == "params" and id(v) in trainable}
        state = programs.TrainState(
            params=None, model_state=None, opt_state=None,
            rng=utils.raw_key(self.seed, 1),
            sums=programs.zero_sums(self.spec),
            fault=jnp.asarray(programs.NO_FAULT, jnp.int32),
            skipped=jnp.zeros((), jnp.int32))
        state = self._hold_variables(state)
        self.state = state._replace(opt_state=optimizers_lib.init_state(self.tx, state.params))

    # -- the model's weights live in the training state while it is compiled ------------------
    def _hold_variables(self, state):
        """Move the model's weights into `state` (params / frozen / model_state) and make this
        Trainer their holder: one copy of every weight, read through by the Variables."""
        model = self.model
        paths = list(model.variable_paths())
        for _, _, v in paths:
            if v.holder is not None and v.holder is not self:
                v.release()  # another model's Trainer had it: take a copy
        params, frozen = _tree.split(model.params_tree(),
                                     lambda p: p in self._trainable_paths)
        state = state._replace(params=params, frozen=frozen, model_state=model.state_tree())
        self.state = state
        self._var_paths = {id(v): ("model_state" if kind == "state" else
                                   "params" if path in self._trainable_paths else "frozen", path)
                           for path, kind, v in paths}
        self._held = [v for _, _, v in paths]
        for v in self._held:
            v.hold_by(self)
        return state

    def read_variable(self, variable):
        """The live value of a Variable this Trainer holds (kilnet.variables)."""
        field, path = self._var_paths[id(variable)]
        return _tree.get_path(getattr(self.state, field), path)

    def write_variable(self, variable, value):
        """Set a held Variable's value inside the training state (set_weights during fit)."""
        field, path = self._var_paths[id(variable)]
        tree = _tree.replace_path(getattr(self.state, field), path, value)
        self.state = self.state._replace(**{field: tree})

    def release_variables(self):
        """Give every weight back to its Variable (a copy): the Trainer is being replaced."""
        if self.state is not None:
            for v in self._held:
                if v.holder is self:
                    v.release()
        self._held = []

    def model_params(self):
        """The model's whole params tree (trained and frozen weights)."""
        return programs.model_params(self.state)

    def resolve_accuracy(self, label_shapes):
        """Keras resolves "accuracy" from the labels' shape, known only at fit/evaluate: redo
        the resolution with it (one-hot labels with an mse loss mean categorical accuracy)."""
        if objective_lib.resolve_metrics(self.objective, [tuple(s) for s in label_shapes]):
            self._programs.clear()  # they were traced with the other metrics

    def reset_state(self):
        self.release_variables()
        self.state = None
        self._programs.clear()

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
            rows = jax.tree.leaves(args[1 if kind == "train" else 3])[0].shape[0]
            name = f"{kind} loop ({rows:,} samples, batch {batch_size})"
            dist = self.distribution
            if dist is None:
                compiled, info = programs.compile_program(name, fn, donate,
                                                          *programs.abstract(args))
            else:  # state replicated in and out, batches split inside (kilnet.distribution)
                dist.check_batch_size(batch_size)
                compiled, info = programs.compile_program(
                    name, dist.replicate_outputs(fn), donate, *dist.abstract(args))
                compiled = dist.wrap(compiled)
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


def _resolve_losses(loss):
    """compile()'s loss with every name resolved, so unknown names fail at compile()."""
    if isinstance(loss, dict):
        return {k: None if v is None else losses_lib.get(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [None if v is None else losses_lib.get(v) for v in loss]
    return losses_lib.get(loss)


def _flat_metric_ids(metrics) -> list:
    values = metrics.values() if isinstance(metrics, dict) else metrics
    flat = []
    for value in values:
        if isinstance(value, (list, tuple)):
            flat.extend(value)
        elif value is not None:
            flat.append(value)
    return flat
