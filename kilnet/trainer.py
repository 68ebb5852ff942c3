"""Trainer: what compile() builds. It owns the resolved optimizer, losses and metrics
(kilnet.objective), the step specification, the training state (one TrainState pytree that
holds the model's weights while it is compiled) and a cache of ahead-of-time compiled programs
per data shape (kilnet.programs). The loops that drive it are in kilnet.fit.
"""

from __future__ import annotations

import contextlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kilnet import distribution as distribution_lib
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import objective as objective_lib
from kilnet import constraints as constraints_lib
from kilnet import optimizers as optimizers_lib
from kilnet import regularizers as regularizers_lib
from kilnet import _scope, _step_logs, _tree, programs, structure, utils
from kilnet.compile_metrics import CompileMetrics
from kilnet.loss_scale import LossScaleOptimizer, current_scale

DEFAULT_BATCH_SIZE = 32

# The programs that run the model in inference (evaluate, predict, the *_on_batch calls but
# train_on_batch, fit's validation): their random draws come from the SeedGenerator states
INFERENCE_KINDS = frozenset({"evaluate", "predict", "predict_batch", "evaluate_custom",
                             "predict_custom"})


class Trainer:
    """What compile() builds: the resolved optimizer/loss/metrics, the step specification, the
    training state and a cache of ahead-of-time compiled programs per data shape."""

    # True for the one predict() makes on a model compile() never saw: it predicts, and
    # training, evaluation and files treat the model as not compiled (Keras's).
    for_prediction_only = False

    def __init__(self, model, *, optimizer, loss, metrics, loss_weights=None,
                 weighted_metrics=None, on_nonfinite="stop", distribution=None):
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError("on_nonfinite must be 'stop' or 'skip'. "
                             f"Received: on_nonfinite={on_nonfinite!r}")
        for argument, value in (("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is not None and not isinstance(value, (list, tuple, dict)):
                raise TypeError(f"{argument} must be a list, e.g. {argument}=['accuracy'], or a "
                                f"dict by output name. Received: {argument}={value!r}")
        self.model = model
        self.optimizer = _with_loss_scaling(model, optimizer)
        self.tx = optimizers_lib.transformation(self.optimizer)
        if isinstance(self.optimizer, (optimizers_lib.Optimizer, LossScaleOptimizer)):
            self.optimizer.attach(self)
        # The compile arguments, resolved (a Loss, or a list/dict of them for several outputs);
        # the Objective that pairs them with the outputs is made once the outputs are known.
        self.loss = _resolve_losses(loss, model.overrides_train_step)
        self.given_loss = loss   # as given: a .keras file keeps names, as Keras writes them
        self.metric_ids = (dict(metrics) if isinstance(metrics, dict)
                           else list(metrics or []))
        self.weighted_metric_ids = (dict(weighted_metrics) if isinstance(weighted_metrics, dict)
                                    else list(weighted_metrics or []))
        self.objective = None
        self.on_nonfinite = on_nonfinite
        self.distribution = distribution_lib.get(distribution)  # None: one device
        self.loss_weights = loss_weights
        self.spec = None
        self.state = None            # programs.TrainState, once the model is built
        self._var_paths = {}         # id(Variable) -> (TrainState field, path in that tree)
        self._held = []              # the Variables whose values live in self.state
        self._stateful_batch = None  # found when the weights are held (stateful_batch_size)
        self._trainable_paths = None # decided at the first build: frozen layers stay frozen
        self.seed = None             # decides the data order and dropout of this training run
        self.fit_calls = 0
        self.report = programs.CompileReport()
        self._programs = {}
        # the INFERENCE_KINDS whose programs draw, so carry the seed states (see program)
        self._drawing_kinds = set()
        self._validation_draws = None   # while fit validates (see validating)
        self._placement = None       # kilnet.distribution.Placement, when distributed
        self.resume_point = None     # (epoch, step) set by a checkpoint restore
        self.steps_per_execution = None  # compile()'s cap on a chunk's steps
        self._metrics_resolved_for = None   # (objective, label shapes): see resolve_accuracy
        self._your_batch_code = None   # (objective, answer): see runs_your_batch_code
        self.training_refused_by = None   # see weights_replaced
        # unknown names fail at compile
        for identifier in _flat_metric_ids(self.metric_ids) + _flat_metric_ids(
                self.weighted_metric_ids):
            metrics_lib.get(identifier, output_shape=(2,))

    # -- building ----------------------------------------------------------------------------
    def prepare(self, seed=None):
        """At compile(): if the input shape is known, build, and cost the training step."""
        if self.model.input_specs is None or any(
                None in spec.shape for spec in self.model.input_specs):
            return  # built and costed by fit(), from the data's shapes
        self.ensure_state(seed)
        if self.spec.custom_step is not None:
            return  # the model's own train_step: its cost is known once fit() compiles it
        if self.runs_eagerly:
            return  # no program to size, and costing traces the step (a print in call runs)
        if any(h.loss is not None and not h.loss.labels_match_output
               for h in self.objective.targets):
            return  # the labels' shape is the data's (CTC): fit() costs the step
        x_spec = structure.pack([jax.ShapeDtypeStruct((1,) + tuple(spec.shape), spec.dtype)
                                 for spec in self.model.input_specs])
        yours = [_is_yours(h.loss) for h in self.objective.targets]
        guesses = [False, True] if any(yours) else [False]
        for ids_for_yours in guesses:
            y_specs = []
            for head, own in zip(self.objective.targets, yours):
                sparse = (isinstance(head.loss, losses_lib.SparseCategoricalCrossentropy)
                          or (own and ids_for_yours))
                y_shape = (1,) + (head.shape[:-1] if sparse else head.shape)  # ids: no class axis
                y_specs.append(jax.ShapeDtypeStruct(y_shape,
                                                    jnp.int32 if sparse else jnp.float32))
            try:
                self._cost_step(x_spec, structure.pack(y_specs), self.default_batch_size())
                return
            except (TypeError, ValueError, IndexError):
                continue
        # A loss of yours takes labels shaped like neither the outputs nor their class ids
        # (the labels' shape is the data's), or your call runs at one batch size only
        # (keras.io's Switch Transformer reshapes to a fixed total of tokens): the step is
        # costed no further; what does not fit the data fails in fit(), as in Keras.

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
                                             self.metric_ids,
                                             weighted_metrics=self.weighted_metric_ids,
                                             custom_loss=custom_loss,
                                             reduced_by_your_step=model.overrides_train_step)
        self.labels_in_batch = None   # see note_labels
        self.containers = (None, None)   # see note_containers
        keras_state = KerasState(self)   # the lists a model's own steps receive
        own_eval = model.overrides_test_step or model.overrides_predict_step
        return programs.StepSpec(model=model, objective=self.objective, tx=self.tx,
                                 # (a model without call() has no inputs)
                                 input_dtypes=tuple(s.dtype for s in model.input_specs or ()),
                                 custom_loss=custom_loss,
                                 custom_step=keras_state if model.overrides_train_step
                                 else None,
                                 keras_steps=keras_state if own_eval else None,
                                 on_nonfinite=self.on_nonfinite,
                                 constraints=_weight_constraints(model),
                                 check_gradients=not self.update_keeps_non_finite(model),
                                 loss_scale=isinstance(self.optimizer, LossScaleOptimizer),
                                 weights_update=self._weights_update(),
                                 seed_states=tuple(model.all_seed_states()),
                                 batch_sharding=getattr(self.distribution, "batch_sharding",
                                                        None))

    def _weights_update(self):
        """The optimizer's update giving new weights itself (Optimizer.weights_update), for a
        kilnet optimizer on one device; None: Optax's update and apply_updates."""
        if self.distribution is not None or not isinstance(self.optimizer,
                                                           optimizers_lib.Optimizer):
            return None
        return self.optimizer.weights_update()

    def update_keeps_non_finite(self, model) -> bool:
        """Whether every non-finite gradient leaves a trace in the weights or optimizer state
        after the update (the optimizer and every weight constraint are kilnet's own). A
        LossScaleOptimizer counts as keeping it: it skips such a step on purpose and keeps
        its state finite, and a NaN loss still reaches the loss sum (kilnet.loss_scale)."""
        if isinstance(self.optimizer, LossScaleOptimizer):
            return True
        return (optimizers_lib.keeps_non_finite(self.optimizer)
                and all(constraints_lib.keeps_non_finite(c)
                        for _, c in _weight_constraints(model)))

    def ensure_state(self, seed=None, input_shape=None):
        """Build the model if needed and create the training state (optimizer state, keys);
        once it exists, take back any weight changed since (set_weights, another model
        sharing layers) without touching the optimizer state."""
        if self.state is not None:
            self.take_back_variables()
            return
        model = self.model
        if not model.built:   # kilnet's build: a build of yours runs inside it
            model.check_buildable()
            model.kilnet_build(input_shape, seed=seed)
        _refuse_stateful_train_step(model)
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
        # the weights, and the carried states (a stateful RNN's), which live in model_state
        carried = list(model.carried_paths())
        paths = list(model.variable_paths()) + carried
        for _, _, v in paths:
            if v.holder is not None and v.holder is not self:
                v.release()  # another model's Trainer had it: take a copy
        params, frozen = _tree.split(self._on_one_device(model.params_tree()),
                                     lambda p: p in self._trainable_paths)
        state = state._replace(params=params, frozen=frozen,
                               model_state=self._on_one_device(model.state_tree()))
        self.state = state
        self._var_paths = {id(v): ("model_state" if kind == "state" else
                                   "params" if path in self._trainable_paths else "frozen", path)
                           for path, kind, v in paths}
        self._held = [v for _, _, v in paths]
        self._stateful_batch = _stateful_batch(carried)
        for v in self._held:
            v.hold_by(self)
        return state

    def take_back_variables(self) -> None:
        """Hold the model's weights again where another model sharing its layers took them
        since (a callback's `predict` on a sub-model during fit, set_weights through it): that
        model read them from this Trainer, so they come back with what its run assigned. Fit
        calls it before every chunk, validation and the end of training: without it the other
        model kept the weights as of its run and fit's later updates reached nobody."""
        if self.state is not None and any(v.holder is not self for v in self._held):
            self._hold_variables(self.state)

    def _on_one_device(self, tree):
        """Without a distribution, arrays a user placed on several devices (the distributed
        JAX guide assigns its replicated results back to the Variables) go to the first
        device, where the one-device programs run; a distribution's programs place theirs."""
        if self.distribution is not None:
            return tree
        device = jax.devices()[0]
        return jax.tree.map(lambda a: jax.device_put(a, device) if isinstance(a, jax.Array)
                            and len(a.sharding.device_set) > 1 else a, tree)

    def variable_slot(self, variable):
        """(TrainState field, path) where a held Variable's value lives."""
        return self._var_paths[id(variable)]

    def read_variable(self, variable):
        """The live value of a Variable this Trainer holds (kilnet.variables)."""
        field, path = self._var_paths[id(variable)]
        return _tree.get_path(getattr(self.state, field), path)

    def write_variable(self, variable, value):
        """Set a held Variable's value inside the training state (set_weights during fit)."""
        field, path = self._var_paths[id(variable)]
        value = self._on_one_device(value)
        tree = _tree.replace_path(getattr(self.state, field), path, value)
        self.state = self.state._replace(**{field: tree})

    def stateful_batch_size(self) -> int | None:
        """The batch size the model's stateful layers keep their states for (their carried
        states' first axis), or None when it has none. Read once the Trainer holds the
        weights (a walk of ResNet50's layers takes 0.1 ms: not at every predict_on_batch)."""
        if self._held:
            return self._stateful_batch
        return _stateful_batch(self.model.carried_paths())

    def default_batch_size(self) -> int:
        """fit / evaluate / predict's batch size when none is given: 32, as Keras's, or the
        size a model's stateful layers keep their states for (Keras asks for it again); a
        model whose input shapes are known is built first, to know it."""
        self.model.build_if_shapes_known()
        return self.stateful_batch_size() or DEFAULT_BATCH_SIZE

    def keep_model_state(self, model_state):
        """Keep the model state an evaluate or predict program returned (what its forward
        passes assigned: a stateful RNN's states, a counter of yours) in the training state,
        as Keras keeps a test or predict step's non-trainable variables. Returns the state."""
        self.state = self.state._replace(model_state=model_state)
        return self.state

    def release_variables(self):
        """Give every weight back to its Variable (a copy): the Trainer is being replaced."""
        if self.state is not None:
            for v in self._held:
                if v.holder is self:
                    v.release()
        self._held = []

    # -- Keras's JAX train_step interface -------------------------------------------------------
    def keras_metrics(self) -> list:
        """model.metrics of a compiled model: the loss tracker, then the compiled metrics
        together as one metric named "compile_metrics" (when compile() made any), then a
        tracker of each output's loss when several outputs have one ("a_loss"), as Keras's."""
        if getattr(self, "_loss_tracker", None) is None:
            self._loss_tracker = metrics_lib.Mean(name="loss")
        if self.objective is None:
            return [self._loss_tracker]
        container = self.compiled_metrics_container()
        held = [self._loss_tracker] + ([container] if container is not None else [])
        return held + list(self.output_loss_trackers().values())

    def compiled_metrics_container(self):
        """The metric named "compile_metrics" that holds the metrics compile() made (its
        result a dict by log name, as Keras's), or None when compile() made none.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"])
            >>> model.compiled.compiled_metrics_container().name
            'compile_metrics'
            >>> plain = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> plain.compile(loss="mse")
            >>> plain.compiled.compiled_metrics_container() is None
            True
        """
        if self.objective is None or not self.objective.slots:
            return None
        container = getattr(self, "_compile_metrics", None)
        if container is None or container.objective is not self.objective:
            container = self._compile_metrics = CompileMetrics(self.objective, self.model)
        return container

    def output_loss_trackers(self) -> dict:
        """Log name ("a_loss") -> the Mean that tracks that output's loss in Keras's steps
        (kilnet.models._keras_steps), when several outputs have a loss; else empty.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                               kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=["mse", "mae"])
            >>> list(model.compiled.output_loss_trackers())
            ['a_loss', 'b_loss']
        """
        names = [] if self.objective is None else self.objective.output_loss_names
        held = getattr(self, "_output_loss_trackers", None)
        if held is None or held[0] is not self.objective or list(held[1]) != names:
            held = self._output_loss_trackers = (
                self.objective, {name: metrics_lib.Mean(name=name) for name in names})
        return held[1]

    def note_default_loss_reached(self) -> bool:
        """Record that a step reached the default compute_loss (a `super().compute_loss(...)`
        in yours): its per-output losses are logged, and their trackers exist, from then
        on, as Keras's. True when that adds trackers (a step of Keras's form then finds its
        logs again).

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [kilnet.layers.Dense(1, name="a")(inputs),
            ...                               kilnet.layers.Dense(1, name="b")(inputs)])
            >>> model.compile(loss=["mse", "mae"])
            >>> model.compiled.note_default_loss_reached()   # trackers there already
            False
        """
        before = list(self.output_loss_trackers())
        self.objective.default_loss_reached = True
        return list(self.output_loss_trackers()) != before

    def scale_loss(self, loss, optimizer_variables):
        """`loss` times the current loss scale held in `optimizer_variables` (a list, as
        stateless_apply takes them) under a LossScaleOptimizer, else `loss` itself: what a
        step differentiates, as Keras's optimizer.scale_loss (stateless_apply unscales the
        gradients by that scale).

        Example:
            >>> import jax, kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(kilnet.optimizers.LossScaleOptimizer(
            ...     kilnet.optimizers.SGD(), initial_scale=8.0), "mse")
            >>> trainer = model.require_compiled()
            >>> _ = trainer.ensure_state()
            >>> float(trainer.scale_loss(1.5, jax.tree.leaves(trainer.state.opt_state)))
            12.0
        """
        if not self.spec.loss_scale:
            return loss
        opt_state = self.optimizer_layout().state(self.state.opt_state,
                                                  list(optimizer_variables))
        return loss * current_scale(opt_state)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """(new trainable variables, new optimizer variables) after one optimizer update,
        everything as lists (Keras's optimizer.stateless_apply), the optimizer variables as
        `optimizer.variables` lists them (optimizer_layout)."""
        adapter, layout = KerasState(self), self.optimizer_layout()
        params = adapter.trainable_tree(self.state, trainable_variables)
        grad_tree = adapter.trainable_tree(self.state, grads)
        opt_state = layout.state(self.state.opt_state, list(optimizer_variables))
        updates, opt_state = self.tx.update(grad_tree, opt_state, params)
        params = programs.apply_constraints(self.spec, optax.apply_updates(params, updates))
        return adapter.trainable_list(params), layout.values(opt_state)

    def optimizer_layout(self):
        """How the optimizer state reads as a list, `optimizer.variables` and what a model's
        own train_step receives: Keras's list of optimizer variables where Keras has the
        optimizer, else the Optax state's leaves (kilnet.optimizers.keras_variables).

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
            >>> model.compile(optimizer=kilnet.optimizers.Adam(name="adam"), loss="mse")
            >>> trainer = model.require_compiled()
            >>> _ = trainer.ensure_state()
            >>> layout = trainer.optimizer_layout()
            >>> [v.path for v in layout.variables(layout.values(trainer.state.opt_state))][:3]
            ['adam/iteration', 'adam/learning_rate', 'adam/sequential_dense_kernel_momentum']
        """
        adapter = KerasState(self)
        return optimizers_lib.keras_variables.layout_for(
            self.optimizer, adapter.trained_variables(), adapter.trainable_list,
            adapter.with_trainable_list)

    # -- params-shaped trees as Keras's lists (an optimizer's apply() of yours sees them) ------
    def trainable_list(self, tree) -> list:
        """A params-shaped tree (gradients) as a list in model.trainable_variables' order."""
        return KerasState(self).trainable_list(tree)

    def with_trainable_list(self, tree, values):
        """trainable_list's inverse: `tree` with `values` in place."""
        return KerasState(self).with_trainable_list(tree, values)

    def model_params(self):
        """The model's whole params tree (trained and frozen weights)."""
        return programs.model_params(self.state)

    def runs_your_batch_code(self) -> bool:
        """Whether a training or test step runs code of yours that sees the whole batch: a
        layer, loss or metric class or function of yours, an activity regularizer of yours on
        any layer, or the model's own steps. kilnet's own leave the padding rows of a padded
        last batch out; yours may not (a sum over the batch in add_loss or a regularizer, a
        count of samples), so fit and evaluate then run a partial last batch at its own size,
        as Keras does (kilnet.fit)."""
        if self._your_batch_code is None or self._your_batch_code[0] is not self.objective:
            model = self.model
            found = (model.overrides_train_step or model.overrides_test_step
                     or model.overrides_compute_loss
                     or any(_yours(layer) or _penalizes_the_whole_batch(layer)
                           for layer in _layers_within(model))
                     or any(_yours(item) for head in getattr(self.objective, "heads", [])
                            for item in [head.loss, *head.metrics, *head.weighted_metrics]
                            if item is not None))
            self._your_batch_code = (self.objective, bool(found))
        return self._your_batch_code[1]

    def note_labels(self, count: int) -> None:
        """How many label arrays the batches fit / evaluate pack hold (a sample weight may
        follow them): the model's own steps get Keras's (x, y, sample_weight) from it
        (KerasState.batch_data), and the programs are compiled per count."""
        self.labels_in_batch = count

    def note_containers(self, x_container=None, y_container=None) -> None:
        """The containers the batches' x and y were given in (structure.container_of: a list,
        a tuple, a dict, or None for one array), told by fit / evaluate / predict: a model's
        own steps get them back in those (KerasState.batch_data), and so, when the model
        has its own steps, the programs are compiled per containers (a list and a tuple are
        different structures to trace)."""
        self.containers = (x_container, y_container)

    def resolve_accuracy(self, label_shapes):
        """Keras resolves "accuracy" from the labels' shape, known only at fit/evaluate: redo
        the resolution with it (one-hot labels with an mse loss mean categorical accuracy).
        Done once per label shapes: making the metric objects costs about 0.7 ms, at every
        train_on_batch call otherwise."""
        shapes = [tuple(s) for s in label_shapes]
        if (self.objective, shapes) == self._metrics_resolved_for:
            return
        if objective_lib.resolve_metrics(self.objective, shapes):
            self._programs.clear()  # they were traced with the other metrics
        self._metrics_resolved_for = (self.objective, shapes)

    def weights_replaced(self, by: str) -> None:
        """The model's weights were replaced by others (`by`: model.quantize): the training
        state goes (evaluate and predict make a new one), and training is refused until
        compile() runs again, as in Keras, whose optimizer was built for the old weights."""
        self.reset_state()
        self.training_refused_by = by

    def check_trainable(self) -> None:
        """ValueError when training must wait for a new compile() (see weights_replaced)."""
        by = self.training_refused_by
        if by is not None:
            raise ValueError(
                f"The model's weights were replaced by {by} after compile(): the optimizer "
                "was built for the old ones, so Keras refuses to train it as it is. Call "
                "model.compile(...) again, then fit trains the weights that stay float "
                "(biases, normalizations, the layers before a quantized one); evaluate and "
                "predict work without it.")

    def drop_compiled_programs(self) -> None:
        """Forget the compiled train, test and predict programs, so the next call traces them
        again. For values they read as constants having changed, being none of the training
        state they are given: the weights of the layers a metric attribute holds (a KID
        metric's encoder) once a file or checkpoint has set them. The training state stays.

        A fit in progress picks the new programs up at its next block of steps: a callback
        that reloads a held encoder's weights mid-epoch takes effect from the next epoch.
        Changing such weights directly (`encoder.set_weights(...)`) retraces nothing: call
        this method after it.

        Example:
            >>> import kilnet, numpy as np
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse")
            >>> _ = model.evaluate(np.ones((2, 2)), np.ones((2, 1)), verbose=0)
            >>> model.compiled.drop_compiled_programs()
            >>> _ = model.evaluate(np.ones((2, 2)), np.ones((2, 1)), verbose=0)   # traced again
        """
        self._programs.clear()

    def reset_state(self):
        self.release_variables()
        self.state = None
        self._placement = None
        self._programs.clear()
        self._drawing_kinds.clear()

    def outputs_changed(self):
        """The model's input axes became of any length (Model.widen_input_axes): the
        objective is made again from its outputs' shapes; the training state stays."""
        if self.spec is not None:
            self.spec = self._make_spec()
            self._programs.clear()
            self._drawing_kinds.clear()
            self._metrics_resolved_for = None
            self._your_batch_code = None

    def placement(self):
        """Where the training state lives on the distribution's devices (the layout of each
        weight, kilnet.distribution.Placement), once the model is built."""
        if self._placement is None:
            self._placement = self.distribution.placement(self.model)
        return self._placement

    @property
    def runs_eagerly(self) -> bool:
        """Whether fit, evaluate and predict run each batch's step as Python on concrete
        arrays (`model.run_eagerly`, read at each call as Keras reads it): see `program`."""
        return bool(self.model.run_eagerly)

    def discover_step_logs(self, batch_size, x, y) -> None:
        """The model's own train_step says what it logs only when traced: find out, once,
        and give the training state sums of that structure (what buffers shaped like the
        sums, a callback's per-batch trail, must be made after)."""
        custom = self.spec.custom_step
        if custom is None or custom.log_names is not None or self.runs_eagerly:
            return   # run eagerly, the step's first run names its logs itself
        custom.discover_logs(batch_size, x, y)
        self.state = self.state._replace(sums=programs.zero_sums(self.spec))

    def program(self, kind: str, batch_size: int, *args):
        """The compiled program `kind` for these argument shapes, compiling it on first use.

        An evaluate or predict program (INFERENCE_KINDS) of a model that draws at inference
        (a Dropout called with training=True in the graph, a layer of yours drawing from its
        SeedGenerator whatever the mode) also carries the model's SeedGenerator states: each
        batch draws from them and advances them, and the call stores them back, as Keras's
        predict and test steps do (`_drawing_program`). Which models draw is found by tracing
        the program without them first (`_scope.probing_draws`): the others' programs stay
        what they were.
        """
        if kind not in INFERENCE_KINDS or not self.spec.seed_states:
            return self._program(kind, batch_size, *args)
        if self.runs_eagerly or kind in self._drawing_kinds:
            return self._drawing_program(kind, batch_size, args)
        try:
            with _scope.probing_draws():
                return self._program(kind, batch_size, *args)
        except _scope.SeedStatesNeeded:
            self._drawing_kinds.add(kind)
            return self._drawing_program(kind, batch_size, args)

    def carries_seed_states(self, kind: str) -> bool:
        """Whether the programs of `kind` (one of INFERENCE_KINDS) carry the model's
        SeedGenerator states, found when the first of them was compiled: True for a model that
        draws at inference, False for the others (their programs are those of a model without
        generators) or before the first.

        Example:
            >>> import numpy as np, kilnet
            >>> inputs = kilnet.Input((3,))
            >>> mc = kilnet.Model(inputs, kilnet.layers.Dropout(0.5)(inputs, training=True))
            >>> _ = mc.predict(np.ones((2, 3), np.float32), verbose=0)
            >>> mc.compiled.carries_seed_states("predict")
            True
        """
        return kind in self._drawing_kinds

    def _drawing_program(self, kind: str, batch_size: int, args):
        """The program `kind` with the model's SeedGenerator states as its last argument and
        result, as a function of `args` alone that passes the states' stored values in and
        stores the advanced ones (kilnet.programs.eval_chunk's `seeds`); while fit
        validates, the values `validating` makes instead, which fit does not store."""
        states = self.spec.seed_states
        compiled = self._program(kind, batch_size, *args, [v.value for v in states])
        validation = kind in ("evaluate", "evaluate_custom")

        def run(*call_args):
            in_fit = validation and self._validation_draws is not None
            start = self._fit_seed_values() if in_fit else [v.value for v in states]
            *results, advanced = compiled(*call_args, start)
            if in_fit:
                self._validation_draws["values"] = list(advanced)
            else:
                for variable, value in zip(states, advanced):
                    variable.assign(value)
            return tuple(results)

        return run

    @contextlib.contextmanager
    def validating(self, epoch: int):
        """While fit validates after `epoch`: the random layers of a model that draws at
        inference draw from seed-state values made from fit's key and the epoch, carried
        from block to block and then dropped, so that fit, as its training steps, leaves the
        SeedGenerator states where they were, and a run resumed from a checkpoint validates
        with the draws of the run it resumes.

        Example:
            >>> import numpy as np, kilnet
            >>> inputs = kilnet.Input((3,))
            >>> dropout = kilnet.layers.Dropout(0.5, seed=1)
            >>> model = kilnet.Model(inputs, dropout(inputs, training=True))
            >>> model.compile(loss="mse")
            >>> x = np.ones((4, 3), np.float32)
            >>> with model.compiled.validating(epoch=0):
            ...     _ = model.evaluate(x, x, verbose=0)
            >>> dropout.seed_states()[0].numpy().tolist()
            [1, 0]
            >>> _ = model.evaluate(x, x, verbose=0)
            >>> dropout.seed_states()[0].numpy().tolist()
            [1, 1]
        """
        self._validation_draws = {"epoch": epoch, "values": None}
        try:
            yield
        finally:
            self._validation_draws = None

    def _fit_seed_values(self) -> list:
        """The seed-state values fit's validation draws from now (see `validating`)."""
        draws = self._validation_draws
        if draws["values"] is None:
            key = np.asarray(jax.device_get(self.state.rng), np.uint32)  # host sync: 8 bytes
            draws["values"] = [np.random.SeedSequence([*key.ravel().tolist(), draws["epoch"],
                                                       index]).generate_state(2, np.uint32)
                               for index in range(len(self.spec.seed_states))]
        return draws["values"]

    def _program(self, kind: str, batch_size: int, *args):
        """The compiled program `kind` for these argument shapes, compiling it on first use.

        When the model runs eagerly (`runs_eagerly`), the same function is returned
        uncompiled, run under `jax.disable_jit()` (`programs.run_eagerly`): JAX's loops and
        conditionals then run as Python, so each batch's step runs once, on concrete arrays,
        as Keras's run_eagerly runs it (a print shows values, an exception points at your
        line). The training kinds are then all the checked loop: each step is checked before
        it is applied, since a replay from the chunk's start would run your code twice."""
        custom = self.spec.custom_step
        if self.runs_eagerly:
            # a model's own train_step / test_step names its logs at its first eager step: an
            # abstract trace of it would run your code on tracers ("%.4f" % loss fails)
            fn = {
                "train": lambda *a: programs.train_chunk(self.spec, batch_size, *a,
                                                         checked=True),
                "evaluate": lambda *a: programs.eval_chunk(self.spec, batch_size, *a),
                "predict": lambda *a: programs.predict_chunk(self.spec, batch_size, *a),
                "predict_batch": lambda *a: programs.predict_batch(self.spec, batch_size, *a),
                "evaluate_custom": lambda *a: programs.custom_eval_chunk(self.spec,
                                                                         batch_size, *a),
                "predict_custom": lambda *a: programs.custom_predict_chunk(self.spec,
                                                                           batch_size, *a),
            }[{"train_batch": "train", "train_checked": "train"}.get(kind, kind)]
            if self.distribution is not None:
                self.distribution.check_batch_size(batch_size)
                return self.placement().wrap(programs.run_eagerly(
                    self.placement().program(fn)), args)
            return programs.run_eagerly(fn)
        if kind in ("train", "train_batch") and custom is not None and custom.log_names is None:
            self.discover_step_logs(batch_size, args[1], args[2])
            args = (self.state,) + tuple(args[1:])
        model = self.model
        containers = self.containers if (model.overrides_train_step or model.overrides_test_step
                                         or model.overrides_predict_step) else None
        # The arguments' tree is part of the key, not only their shapes: the same arrays may
        # come in other containers (no labels as None or as ()), and a compiled program
        # refuses any tree but its own. Dtypes as objects: str() of each leaf's dtype was
        # 0.2 ms a call of train_on_batch.
        leaves, tree = jax.tree.flatten(args)
        key = (kind, batch_size, self.labels_in_batch, containers, tree) + tuple(
            (a.shape, a.dtype) for a in leaves if hasattr(a, "shape"))
        if key not in self._programs:
            fn, donate = {
                "train": (lambda *a: programs.train_chunk(self.spec, batch_size, *a), (0,)),
                # one step, leaving its input state intact: train_on_batch's, the state it
                # started from kept for a replay without a copy (kilnet.fit)
                "train_batch": (lambda *a: programs.train_batch(self.spec, batch_size, *a), ()),
                # the same steps, each checked before it is applied: replays a chunk whose
                # end state was not finite (kilnet.fit), so compiled only when that happens
                "train_checked": (lambda *a: programs.train_chunk(self.spec, batch_size, *a,
                                                                  checked=True), (0,)),
                "evaluate": (lambda *a: programs.eval_chunk(self.spec, batch_size, *a), (0,)),
                "predict": (lambda *a: programs.predict_chunk(self.spec, batch_size, *a), (0,)),
                "predict_batch": (lambda *a: programs.predict_batch(self.spec, batch_size, *a),
                                  ()),
                # the model's own test_step / predict_step (Keras's JAX form)
                "evaluate_custom": (lambda *a: programs.custom_eval_chunk(
                    self.spec, batch_size, *a), (0,)),
                "predict_custom": (lambda *a: programs.custom_predict_chunk(
                    self.spec, batch_size, *a), (0,)),
            }[kind]
            x_at = {"train": 1, "train_batch": 1, "evaluate_custom": 2,
                    "predict_custom": 2, "predict_batch": 2}.get(kind, 3)
            rows = jax.tree.leaves(args[x_at])[0].shape[0]
            what = {"train_checked": "train loop, checked replay", "train_batch": "train step",
                    "predict_batch": "predict step"}.get(kind, f"{kind} loop")
            name = f"{what} ({rows:,} samples, batch {batch_size})"
            dist = self.distribution
            if dist is None:
                compiled, info, lowered = programs.compile_program(name, fn, donate,
                                                                   *programs.abstract(args))
            else:  # the state laid out in and out, batches split inside (kilnet.distribution)
                dist.check_batch_size(batch_size)
                placement = self.placement()
                compiled, info, lowered = programs.compile_program(
                    name, placement.program(fn), donate, *placement.abstract(args))
                compiled = placement.wrap(compiled, args)
            if kind in ("train", "train_batch") and custom is None and \
                    self.report.batch_size != batch_size:
                # The report's step cost is for the batch size fit() trains with, not
                # compile()'s: the loop's, whose body is one step (no second trace of it:
                # 0.18-0.24 s of the MNIST convnet's start).
                cost = programs.lowered_cost(lowered)
                self.report.flops_per_step, self.report.bytes_per_step = cost
                self.report.batch_size = batch_size
            self.report.programs.append(info)
            self._programs[key] = compiled
        return self._programs[key]

    def state_copy(self):
        """A copy of the training state, which the next chunk (donating its input state)
        leaves intact: what a chunk is replayed from when its end state is not finite."""
        return _copy_tree(self.state)

    # -- the learning rate, for callbacks ---------------------------------------------------
    @property
    def learning_rate(self) -> float:
        return optimizers_lib.get_learning_rate(self.state.opt_state)

    @learning_rate.setter
    def learning_rate(self, value: float):
        self.state = self.state._replace(
            opt_state=optimizers_lib.set_learning_rate(self.state.opt_state, value))


# One dispatch for the whole state (a tree of arrays); jnp.copy makes new buffers.
_copy_tree = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def _with_loss_scaling(model, optimizer):
    """compile()'s optimizer resolved, wrapped in a LossScaleOptimizer when the model's dtype
    policy is "mixed_float16", as Keras's compile() does (float16 gradients underflow)."""
    if isinstance(optimizer, LossScaleOptimizer):
        return optimizer
    optimizer = optimizers_lib.get(optimizer)
    if model.dtype_policy.name == "mixed_float16":
        return LossScaleOptimizer(optimizer, name="loss_scale_optimizer")
    return optimizer


def _resolve_losses(loss, reduced_by_your_step=False):
    """compile()'s loss with every name resolved, so unknown names fail at compile()."""
    if loss is None:
        return None

    def get(value):
        return None if value is None else losses_lib.get(value, reduced_by_your_step)

    if isinstance(loss, dict):
        return {k: get(v) for k, v in loss.items()}
    if isinstance(loss, (list, tuple)):
        return [get(v) for v in loss]
    return get(loss)


def _weight_constraints(model) -> tuple:
    """(path, constraint) of the trained weights that have a constraint."""
    trained = {id(v) for v in model.trainable_weights}
    return tuple((path, v.constraint) for path, kind, v in model.variable_paths()
                 if kind == "params" and id(v) in trained and v.constraint is not None)


def _yours(obj) -> bool:
    """An object of a class (or a function) written outside kilnet."""
    fn = getattr(obj, "fn", None)   # a metric or loss function of yours, wrapped by compile
    return not type(obj).__module__.startswith("kilnet") or (
        callable(fn) and not getattr(fn, "__module__", "kilnet").startswith("kilnet"))


def _penalizes_the_whole_batch(layer) -> bool:
    """A layer whose activity regularizer may take the batch as a whole (one of yours, given
    to any layer): padding rows would enter its penalty."""
    activity = getattr(layer, "activity_regularizer", None)
    return activity is not None and not regularizers_lib.sums_each_sample(activity)


def _layers_within(layer):
    yield layer
    for sub in layer.sublayers:
        yield from _layers_within(sub)


def _is_yours(loss) -> bool:
    """A loss function or Loss subclass of yours: the labels it takes are unknown until fit
    (class ids or values shaped like the output)."""
    return loss is not None and (isinstance(loss, losses_lib.LossFunctionWrapper)
                                 or losses_lib.LOSS_TYPES.get(type(loss).__name__)
                                 is not type(loss))


def _flat_metric_ids(metrics) -> list:
    values = metrics.values() if isinstance(metrics, dict) else metrics
    flat = []
    for value in values:
        if isinstance(value, (list, tuple)):
            flat.extend(value)
        elif value is not None:
            flat.append(value)
    return flat


def _stateful_batch(carried_paths) -> int | None:
    sizes = {v.shape[0] for _, _, v in carried_paths}
    return min(sizes) if sizes else None


def _refuse_stateful_train_step(model) -> None:
    """A model's own train_step cannot hand on its stateful layers' states: they are not among
    the non-trainable variables stateless_call takes and returns (as in Keras), and what it
    computes under jax.grad cannot leave that trace another way. Refused, with the ways out."""
    carried = sorted({"/".join(path[:-1]) for path, _, _ in model.carried_paths()})
    if not (model.overrides_train_step and carried):
        return
    hooks = model.overridden_metric_hooks
    if hooks and model.trains_with_keras_default_step:
        raise ValueError(
            f"{type(model).__name__} overrides {' and '.join(hooks)} and has stateful layers "
            f"({carried}): a model overriding {hooks[0]} trains with Keras's form of "
            "train_step, which cannot carry the layers' states from batch to batch "
            "(stateless_call's non-trainable variables do not hold them, as in Keras). Drop "
            f"the {hooks[0]} override (kilnet's built-in step logs the compiled metrics and "
            "carries the states), or make the layers stateless and pass their states with "
            "initial_state= and return_state=True.")
    raise ValueError(
        f"{type(model).__name__} has its own train_step and stateful layers ({carried}), "
        "whose states a train_step cannot carry from batch to batch: stateless_call's "
        "non-trainable variables do not hold them (as in Keras). Train with the built-in "
        "step (no train_step), or make the layers stateless and pass their states with "
        "initial_state= and return_state=True.")


class KerasState:
    """Keras's JAX training state, (trainable, non-trainable, optimizer, metric variables) as
    lists in Keras's variable order, mapped onto kilnet's TrainState trees and back: what a
    model's own train_step(state, data) receives and returns (kilnet.programs)."""

    def __init__(self, trainer):
        self.trainer = trainer
        # what the train_step logs, found when it is first traced: flat name -> its path in
        # the step's logs (kilnet._step_logs), in Keras's order
        self.log_names = None
        self.test_log_names = None   # what the test_step logs, likewise
        # (tree structure, leaves as ShapeDtypeStructs) of what predict_step returns, found
        # by its first eager batch (run_eagerly: kilnet.programs.custom_predict_chunk)
        self.predicted = None

    def batch_data(self, xb, yb=None):
        """A batch as Keras hands it to a model's own train_step / test_step / predict_step
        (its pack_x_y_sample_weight): x alone (a list or tuple of inputs as (x,)), (x, y), or
        (x, y, sample_weight), x and y in the list, tuple or dict they were given in, and the
        sample weight repeated in y's container, as Keras's fit repeats one array for each
        label array. The VAE and GAN examples read `data` as the images when fit has no
        labels. A batch the step gets whole (kilnet.structure.WholeBatch) is handed as it
        is: keras.io's siamese_network reads its (anchor, positive, negative) batches."""
        x_container = self.trainer.containers[0]
        if structure.is_whole_container(x_container):
            return structure.in_container(x_container, xb)
        arrays = [] if yb is None else structure.unpack(yb)
        known = self.trainer.labels_in_batch   # told by fit / evaluate (Trainer.note_labels)
        count = len(arrays) if known is None else known
        x_container, y_container = self.trainer.containers   # Trainer.note_containers
        y, weight = None, None
        if arrays[:count]:
            y = structure.in_container(y_container, structure.pack(arrays[:count]))
        weights = tuple(arrays[count:])
        if len(weights) == 1:   # one array for every output: repeated in y's container, as
            weights = weights * count   # Keras's fit hands it
        if weights:   # ... or one array per output, in y's container
            weight = (weights[0] if y_container is None and len(weights) == 1
                      else structure.in_container(y_container or ("list", len(weights)),
                                                  weights))
        return utils.pack_x_y_sample_weight(structure.in_container(x_container, xb), y, weight)

    def batch_as_given(self) -> bool:
        """Whether the batches are ones the model's own steps unpack themselves (dicts by
        keys of their own, tuples they get whole: structure.is_step_batch): their arrays
        are not the model's inputs, so they reach the step in their own dtypes, as Keras
        hands them."""
        return structure.is_step_batch_container(self.trainer.model, self.trainer.containers[0])

    def _slots(self):
        """(trainable slots: paths in params; non-trainable slots in
        `model.non_trainable_variables` order: (TrainState field, path) for a weight, ("seed",
        Variable) for a SeedGenerator's state, which the training state does not hold)."""
        trainer, model = self.trainer, self.trainer.model
        slots = [trainer.variable_slot(v) for _, _, v in model.variable_paths()]
        weights = {id(v) for _, _, v in model.variable_paths()}
        return ([p for field, p in slots if field == "params"],
                [trainer.variable_slot(v) if id(v) in weights else ("seed", v)
                 for v in model.non_trainable_variables])

    # -- the carried states of stateful layers: not in the lists, as in Keras -------------------
    def carried_bindings(self, model_state) -> dict:
        """{id(Variable): value in model_state} of the model's carried states (a stateful
        RNN's): bound in the scope around the model's own test_step / predict_step, where
        stateless_call reads them and records their new values (Layer.stateless_call)."""
        return {id(v): _tree.get_path(model_state, path)
                for path, _, v in self.trainer.model.carried_paths()}

    def with_carried(self, model_state, assigned: dict):
        """model_state with the carried states a step recorded (a scope's `assigned`)."""
        for path, _, v in self.trainer.model.carried_paths():
            if id(v) in assigned:
                model_state = _tree.replace_path(model_state, path, assigned[id(v)])
        return model_state

    # -- the SeedGenerator states in the non-trainable list, where evaluate and predict carry them
    def with_seed_values(self, non_trainable, seeds) -> list:
        """The non-trainable list with `seeds` (the values of `StepSpec.seed_states`) at the
        SeedGenerator states' places; None: the list as it is."""
        if seeds is None:
            return non_trainable
        value_of = {id(v): value for v, value in zip(self.trainer.spec.seed_states, seeds)}
        return [value_of.get(id(where), value) if field == "seed" else value
                for (field, where), value in zip(self._slots()[1], non_trainable)]

    def seeds_returned(self, given, returned, seeds):
        """The SeedGenerator states a model's own test_step / predict_step returned in its
        non-trainable list (`returned`, for `given`), to carry to the next batch. Without
        `seeds` (the program's first trace, carrying none) None, after asking for them
        (`_scope.unkeyed_draw`) where the step advanced any: it drew."""
        slots = self._slots()[1]
        if seeds is None:
            if any(field == "seed" and new is not old
                   for (field, _), old, new in zip(slots, given, returned)):
                _scope.unkeyed_draw()
            return None
        returned = list(returned)
        value_of = {id(where): value for (field, where), value in zip(slots, returned)
                    if field == "seed"}
        return [value_of.get(id(v), value)
                for v, value in zip(self.trainer.spec.seed_states, seeds)]

    # -- trees <-> lists ---------------------------------------------------------------------------
    def trained_variables(self) -> list:
        """The Variables the optimizer updates, in trainable_list's order."""
        trainer = self.trainer
        return [v for _, _, v in trainer.model.variable_paths()
                if trainer.variable_slot(v)[0] == "params"]

    def trainable_list(self, params) -> list:
        return [_tree.get_path(params, p) for p in self._slots()[0]]

    def trainable_tree(self, state, values):
        return self.with_trainable_list(state.params, values)

    def with_trainable_list(self, tree, values):
        """A params-shaped `tree` with `values` (Keras's trainable order) in place."""
        for path, value in zip(self._slots()[0], values):
            tree = _tree.replace_path(tree, path, value)
        return tree

    def non_trainable_list(self, frozen, model_state) -> list:
        """The non-trainable values in Keras's order; a SeedGenerator's state is its stored
        value, a constant of the step: the step's key decides its draws (SeedGenerator.next)."""
        trees = {"frozen": frozen, "model_state": model_state}
        return [p.value if field == "seed" else _tree.get_path(trees[field], p)
                for field, p in self._slots()[1]]

    def trees(self, state, trainable, non_trainable):
        """(params, frozen, model_state) with the lists' values. What the step returns for a
        SeedGenerator's state is dropped: inside kilnet's compiled steps the draws come from
        the step's key, so the states are not advanced (unlike Keras's fit)."""
        trees = {"frozen": state.frozen, "model_state": state.model_state}
        for (field, path), value in zip(self._slots()[1], non_trainable):
            if field != "seed":
                trees[field] = _tree.replace_path(trees[field], path, value)
        return self.trainable_tree(state, trainable), trees["frozen"], trees["model_state"]

    def to_lists(self, state, metric_vars):
        """The state a model's own train_step receives, the optimizer's variables as
        `optimizer.variables` lists them (Trainer.optimizer_layout)."""
        return (self.trainable_list(state.params),
                self.non_trainable_list(state.frozen, state.model_state),
                self.trainer.optimizer_layout().values(state.opt_state), list(metric_vars))

    def from_lists(self, state, lists):
        trainable, non_trainable, optimizer, _ = lists
        params, frozen, model_state = self.trees(state, trainable, non_trainable)
        opt_state = self.trainer.optimizer_layout().state(state.opt_state, list(optimizer))
        return state._replace(params=params, frozen=frozen, model_state=model_state,
                              opt_state=opt_state)

    # -- the sums an epoch starts from --------------------------------------------------------------
    def zero_sums(self, test: bool = False) -> dict:
        metric_vars = _metric_start(self.trainer.model)
        names = (self.test_log_names if test else self.log_names) or []
        return {"metric_vars": metric_vars,
                "logs": {n: jnp.zeros((), jnp.float32) for n in names},
                "count": jnp.zeros((), jnp.float32)}

    def _input_dtypes(self):
        """The dtypes the programs cast a batch's x to (kilnet.programs._batch): the model
        inputs', or None (each array's own) for batches handed to the steps as given."""
        if self.batch_as_given():
            return None
        return [spec.dtype for spec in self.trainer.model.input_specs]

    def _batch_spec(self, batch_size, tree, dtypes=None):
        """Abstract batches of `batch_size` rows shaped like the dataset `tree`, cast to the
        model inputs' dtypes when given (as kilnet.programs._batch casts them)."""
        if isinstance(tree, structure.ByBatch):   # each array its own rows
            return tree.abstract_batch(dtypes)
        leaves, treedef = jax.tree.flatten(tree)
        dtypes = dtypes or [leaf.dtype for leaf in leaves]
        return jax.tree.unflatten(treedef, [
            jax.ShapeDtypeStruct((batch_size,) + tuple(leaf.shape[1:]), dtype)
            for leaf, dtype in zip(leaves, dtypes)])

    def discover_test_logs(self, batch_size, x, y):
        """Trace the test_step once, abstractly, for the names of the logs it returns."""
        model = self.trainer.model
        names = {}   # flat name -> its path in the logs, in Keras's order (kilnet._step_logs)

        def probe(state, xb, yb):
            trainable, non_trainable, _, metric_vars = self.to_lists(
                state, _metric_start(model))
            with _scope.opened(_scope.Scope(training=False,
                                            sample_mask=jnp.ones((batch_size,), bool))):
                logs, _ = model.test_step((trainable, non_trainable, metric_vars),
                                          self.batch_data(xb, yb))
            _require_logs(model, "test_step", logs)
            names.update(_step_logs.flat_paths(logs))
            return logs

        specs = (self._batch_spec(batch_size, x, self._input_dtypes()),
                 self._batch_spec(batch_size, y))
        before = list(self.trainer.output_loss_trackers())
        jax.eval_shape(probe, self.trainer.state, *specs)
        if list(self.trainer.output_loss_trackers()) != before:   # trackers made: again
            names.clear()   # (a new function: eval_shape would reuse the first trace)
            jax.eval_shape(lambda *args: probe(*args), self.trainer.state, *specs)
        self.test_log_names = names

    def predict_structure(self, batch_size, x):
        """(tree structure, leaves as ShapeDtypeStructs) of what the model's predict_step
        returns for one batch: what predict allocates and reassembles."""
        model = self.trainer.model

        def probe(state, xb):
            trainable, non_trainable, _, _ = self.to_lists(state, [])
            with _scope.opened(_scope.Scope(training=False,
                                            sample_mask=jnp.ones((batch_size,), bool))):
                result = model.predict_step((trainable, non_trainable), self.batch_data(xb))
            return self.checked_prediction(result)[0]

        traced = jax.eval_shape(probe, self.trainer.state, self._batch_spec(
            batch_size, x, self._input_dtypes()))
        leaves, treedef = jax.tree.flatten(traced)
        return treedef, leaves

    def checked_prediction(self, result):
        """What the model's predict_step returned, (outputs, non-trainable variables), checked:
        a pair. Its outputs may have any shapes: predict joins each batch's along their first
        axis, as Keras's (kilnet.programs.per_sample)."""
        name = type(self.trainer.model).__name__
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise TypeError(f"{name}.predict_step must return (outputs, "
                            "non_trainable_variables), as Keras's JAX form does. Received: "
                            f"{type(result).__name__}")
        return result

    def discover_logs(self, batch_size, x, y):
        """Trace the train_step once, abstractly, for the names of the logs it returns."""
        trainer, model = self.trainer, self.trainer.model
        dtypes = self._input_dtypes()
        names = {}   # flat name -> its path in the logs, in Keras's order (kilnet._step_logs)

        def probe(state, xb, yb):
            lists = self.to_lists(state, _metric_start(model))
            with _scope.opened(_scope.Scope(training=True, rng=state.rng,
                                            sample_mask=jnp.ones((batch_size,), bool))):
                logs, _ = model.train_step(lists, self.batch_data(xb, yb))
            _require_logs(model, "train_step", logs)
            names.update(_step_logs.flat_paths(logs))
            return logs

        specs = (self._batch_spec(batch_size, x, dtypes), self._batch_spec(batch_size, y))
        before = list(trainer.output_loss_trackers())
        jax.eval_shape(probe, trainer.state, *specs)
        if list(trainer.output_loss_trackers()) != before:   # trackers made: again
            names.clear()   # (a new function: eval_shape would reuse the first trace)
            jax.eval_shape(lambda *args: probe(*args), trainer.state, *specs)
        self.log_names = names


def _metric_start(model) -> list:
    """The arrays model.metrics' state starts from (not their Variables, which hold the eager
    state and cannot go into a compiled program), in model.metrics_variables' order."""
    return [a for metric in model.metrics for a in metric.stateless_reset_state()]


def _require_logs(model, step: str, logs):
    if not isinstance(logs, dict):
        raise TypeError(f"{type(model).__name__}.{step} must return (logs, state) with logs a "
                        f"dict of scalars. Received: logs of type {type(logs).__name__}")
