"""compile(): model + optimizer + loss + metrics -> whole-loop XLA programs, and their report.

Three programs, each one XLA while-loop over the batches of a data block that lives on the
device (docs/architecture.md):

- train_chunk(state, x, y, order, valid, epoch, base, start, stop) -> state: steps [start, stop)
  of an epoch. The batch of step i is x[order[(i - base) * B : (i - base + 1) * B]]; `valid`
  marks which of those positions are real samples. For arrays in memory the block is the whole
  dataset (base 0, `order` the epoch's shuffled order padded to whole batches); for streamed
  data (generators, memmaps) each chunk is its own block of fixed size. Padded samples are
  masked out of the loss, the gradients, BatchNorm statistics and the metrics, so a last
  partial batch is exact without a second program. Loop bounds are runtime values, so the host
  can cut an epoch into chunks of any length without recompiling.
- eval_chunk(sums, params, model_state, x, y, order, valid, base, start, stop) -> (sums,
  model_state)
- predict_chunk(outputs, params, model_state, x, order, valid, base, start, stop) -> (outputs,
  model_state), outputs a tuple (one array per model output) where row p is the prediction
  for position p of the block. The model state carries from batch to batch and comes back
  (a stateful RNN's states, what a layer of yours assigns in call), as in training.

With several model inputs `x` is a tuple of arrays; with labels for several outputs, `y` too.

Why the whole in-memory dataset is an argument of the program rather than each chunk's slice:
gathering the batch inside the loop measured 0.19 s per seed-MLP epoch against 0.26 s when
every chunk was first gathered into its own array (2-core CPU, jax 0.10.2). The price is one
compilation per dataset size, which JAX's persistent compilation cache makes cheap on
repeated runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from kilnet import _runtime  # JAX's settings (the compilation cache) first
from kilnet import _scope, _step_logs, _tree, loss_scale, mixed_precision, structure
from kilnet import objective as objective_lib
from kilnet.errors import InputError, KerasQuirkWarning, warn_at_your_line

# The fault flag of the training state: NO_FAULT, or the step (within the epoch) of the first
# step that was not applied: its loss or gradients were not finite (the step itself), or they
# were but its update was not (UPDATE_FAULT + step, found by a checked replay). STATE_FAULT:
# the state at the end of a chunk is not finite; the chunk is replayed with per-step checks
# (kilnet.fit), which finds the step.
NO_FAULT = -1
UPDATE_FAULT = 1 << 30
STATE_FAULT = -2


def fault_step(fault: int) -> int:
    """The epoch step a fault flag names (see NO_FAULT)."""
    return fault - UPDATE_FAULT if fault >= UPDATE_FAULT else fault


def fault_in_update(fault: int) -> bool:
    """True when the step's loss and gradients were finite but its update was not."""
    return fault >= UPDATE_FAULT


class TrainState(NamedTuple):
    """Everything a training run changes: one pytree to donate, shard, save and restore."""

    params: Any           # the weights the optimizer trains
    model_state: Any      # non-trainable weights (BatchNorm's moving statistics)
    opt_state: Any
    rng: jax.Array        # base key of dropout; folded with (epoch, step) each step
    sums: dict            # per-epoch sums of loss, metrics and the sample count
    fault: jax.Array      # step within the epoch of the first non-finite step, or -1
    skipped: jax.Array    # non-finite steps skipped (on_nonfinite="skip")
    frozen: Any = None    # trainable weights of frozen layers (layer.trainable = False)


def model_params(state: TrainState):
    """The model's whole params tree: trained weights and frozen ones."""
    return state.params if not state.frozen else _tree.merge(state.params, state.frozen)


def next_draws(state: TrainState) -> TrainState:
    """The state for the next training call (fit, train_on_batch): its dropout key advanced.

    A step's key is the state's key folded with (epoch, step), so without this every call
    would draw the masks the previous one drew (each train_on_batch is epoch 0, step 0); as
    Keras's seed generator moves on at every draw, each call draws new ones. A run resumed
    from a checkpoint made during a call still draws what the interrupted call drew. The new
    key is made on the host, as utils.raw_key makes the first: a jitted fold_in cost 0.135 s
    of compilation in every new process (the cold fit the bench times).

    Example:
        >>> import numpy as np
        >>> state = TrainState(None, None, None, np.zeros(2, np.uint32), {}, -1, 0)
        >>> bool((next_draws(state).rng != state.rng).any())
        True
    """
    key = np.asarray(jax.device_get(state.rng), np.uint32)  # 8 bytes, after the call's sync
    return state._replace(rng=np.random.SeedSequence([*key.tolist(), 1]).generate_state(
        2, np.uint32))


@dataclass
class StepSpec:
    """What the compiled step computes. Built by compile() (kilnet.trainer.Trainer)."""

    model: Any                      # a kilnet Model: its pure apply
    objective: Any                  # kilnet.objective.Objective: losses and metrics per output
    tx: optax.GradientTransformation
    input_dtypes: tuple = ("float32",)  # the dtype each model input is computed in
    custom_loss: bool = False       # the model overrides compute_loss (Keras's hook)
    custom_step: Any = None         # kilnet.trainer.KerasState when the model has a train_step
    # kilnet.trainer.KerasState when the model has its own test_step or predict_step
    keras_steps: Any = None
    on_nonfinite: str = "stop"      # "stop" or "skip"
    batch_sharding: Any = None      # kilnet.distribution: split each batch over devices
    # (path in the trained params, constraint): projected after each update (kilnet.constraints)
    constraints: tuple = ()
    # The unchecked step checks its gradient only where the update could hide a non-finite one
    # (clipvalue, the user's own Optax transformation or constraint): Trainer decides.
    check_gradients: bool = True
    # The optimizer is a LossScaleOptimizer (kilnet.loss_scale): the gradient is taken of the
    # loss times the scale in its state, and a non-finite gradient is a skipped step, not a
    # fault.
    loss_scale: bool = False
    # The optimizer's own (grads, opt_state, params) -> (new params, opt_state), equal to
    # tx.update and optax.apply_updates (Optimizer.weights_update: Adam's one pass per weight
    # on the CPU); None: those two.
    weights_update: Any = None
    # The state Variables of the model's SeedGenerators (Layer.all_seed_states), which the
    # evaluate and predict programs of a model that draws at inference bind and carry
    seed_states: tuple = ()

    @property
    def sum_names(self):
        return self.objective.sum_names


def zero_sums(spec: StepSpec, training: bool = True, on_host: bool = False,
              loss_by_rows: bool = False) -> dict:
    """The running sums an epoch (or an evaluation) starts from. A model's own train_step (or
    test_step, evaluating) keeps Keras metric variables and the logs of its last step
    instead. `on_host`: kilnet's sums as NumPy zeros, which the program's call copies to the
    device (for a call that starts from them once: train_on_batch). `loss_by_rows`: the
    batches' arrays hold other rows than their labels (feeds.BatchFeed.loss_by_rows), so
    the sums keep the rows that weigh the loss too ("loss#weight": _add_metric_sums)."""
    if training and spec.custom_step is not None:
        return spec.custom_step.zero_sums()
    if not training and spec.keras_steps is not None and spec.model.overrides_test_step:
        return spec.keras_steps.zero_sums(test=True)
    # (the outputs' losses a compute_loss of yours may reach: summed before they are logged)
    names = (spec.sum_names + spec.objective.summed_output_loss_names
             + spec.objective.weight_names + ["count"]
             + ([LOSS_ROWS] if loss_by_rows and "loss" in spec.sum_names else []))
    # one batched transfer of host zeros: a jnp.zeros per name cost 0.08 ms each, at every
    # train_on_batch call (seed MLP: 0.25 of its 2.8 ms)
    sums = {name: np.zeros((), np.float32) for name in names}
    if not on_host:
        sums = jax.device_put(sums)
    sums.update(spec.objective.zero_states())
    return sums


# -- one step --------------------------------------------------------------------------------
def _batch(spec, x, y, idx):
    """The batch at positions `idx` of the dataset on the device. Several inputs or labels
    come as tuples. A streamed block of batches whose arrays differ in rows
    (structure.ByBatch) is in its batches' order: `idx` starts at its batch's first row."""
    if isinstance(x, structure.ByBatch):
        xb = x.batch(idx[0] // idx.shape[0])
        if len(xb) == 1 and not _batch_as_given(spec):   # one model input: its array
            xb = xb[0]
    else:
        xb = jax.tree.map(lambda a: a[idx], x)
    return (_as_input_dtypes(spec, xb),
            None if y is None else jax.tree.map(lambda a: a[idx], y))


def _batch_as_given(spec) -> bool:
    """Whether the model's own step unpacks the batches itself (not the model's inputs)."""
    adapter = spec.custom_step or spec.keras_steps
    return adapter is not None and adapter.batch_as_given()


def _forward_mask(x, mask):
    """The sample mask the model's layers see: none for a block of batches whose arrays
    keep their own rows (structure.ByBatch), which are never padded, and whose rows are
    not the labels' that `mask` covers (a disjoint graph's atoms for its molecules)."""
    return None if isinstance(x, structure.ByBatch) else mask


def _check_output_rows(outputs, rows):
    """A batch given as it came (its arrays of other rows than its labels: ByBatch) must
    give outputs of its labels' rows, the samples the loss reduces over."""
    for index, output in enumerate(outputs):
        if output.ndim and output.shape[0] != rows:
            raise InputError(
                f"The batch's arrays hold other numbers of rows than its {rows} labels, so "
                f"it runs as given, and the model's output {index} must then have one row "
                f"per label. Received: output {index} of shape {tuple(output.shape)} for "
                f"labels of {rows} rows. Make the model reduce its rows to the labels' (e.g. "
                f"ops.segment_sum(..., num_segments={rows})), or give labels of "
                f"{output.shape[0]} rows.")


def _as_input_dtypes(spec, x):
    """Inputs cast to their model input's dtype, per batch: uint8 images stay uint8 on the
    device (4x less memory) and integer token ids stay integers."""
    if _batch_as_given(spec):
        return x   # a dict the model's own step unpacks itself: not the model's inputs
    xs = x if isinstance(x, tuple) else (x,)
    cast = [a if a.dtype == jnp.dtype(dtype) else a.astype(dtype)
            for a, dtype in zip(xs, spec.input_dtypes)]
    return tuple(cast) if isinstance(x, tuple) else cast[0]


def _shard(spec, *trees):
    """Data parallelism (kilnet.distribution): split the batch over the mesh's batch axis;
    XLA partitions the step from here and all-reduces the gradients. No-op on one device."""
    if spec.batch_sharding is None:
        return trees
    return tuple(None if t is None else jax.tree.map(
        lambda a: lax.with_sharding_constraint(a, spec.batch_sharding), t) for t in trees)


def _forward(spec, params, model_state, xb, *, training, rng, mask):
    """The model's outputs as a list (one per output), its new state, the add_loss() terms
    its Keras-style layers collected (kilnet._scope), and the outputs' sequence masks (None
    when no output carries one)."""
    masks = [] if spec.objective.any_masked else None
    extra_args = {} if masks is None else {"output_masks": masks}
    with _scope.opened(_scope.Scope(training=training)) as root:
        outputs, new_state = spec.model.apply(
            params, model_state, xb, training=training, rng=rng, sample_mask=mask,
            logits=spec.objective.logits_flags, **extra_args)
    extra = sum(root.losses) if root.losses else None
    # Losses and metrics are computed in float32 whatever the layers compute in, as Keras's
    # losses cast y_pred to float32 (kilnet.mixed_precision).
    outputs = mixed_precision.cast_floating(spec.model.output_list(outputs), jnp.float32)
    if extra is not None:
        extra = extra.astype(jnp.float32)
    return outputs, new_state, extra, masks


def _batch_loss(spec, xb, yb, outputs, weight, denom, training, masks=None, weights=None):
    """(mean loss of the batch's real samples, that loss per sample for the logged sums,
    per-output losses): from the compiled objective, or the model's own compute_loss (whose
    per-output losses are those of its calls of the default one: _reached_output_losses).
    `weights`: (params, model state, key) the model's compute_loss sees its layers with, so
    that a model it calls (a distiller's teacher) is part of the differentiated step, as in
    Keras; what those calls change in the model state is not kept."""
    if spec.custom_loss:
        params, model_state, rng = weights
        rng = None if rng is None else jax.random.fold_in(rng, 1)   # not the forward's draws
        scope = spec.model.scope_for(params, model_state, training=training, rng=rng,
                                     sample_mask=weight > 0)
        # Keras's arguments: the labels, and fit's sample weights (0 on the padding rows)
        labels, fit_weights = spec.objective.split_sample_weight(yb)
        if fit_weights is None:
            sample_weight = weight
        elif isinstance(fit_weights, list):   # one per output
            sample_weight = [objective_lib.weights_product(w, weight) for w in fit_weights]
        else:
            sample_weight = objective_lib.weights_product(fit_weights, weight)
        with _scope.opened(scope), _recording_output_losses(spec.model) as reached:
            loss = spec.model.compute_loss_as_keras_calls_it(
                xb, labels, spec.model.pack_outputs(outputs), sample_weight, training)
        return (loss, jnp.broadcast_to(loss, weight.shape),
                _reached_output_losses(reached, weight.shape))
    per_sample, parts = spec.objective.per_sample_losses(yb, outputs, masks, weight)
    if per_sample is None:   # compile() got no loss: the add_loss terms are the whole loss
        per_sample = jnp.zeros(weight.shape, jnp.float32)
    return jnp.sum(per_sample * weight) / denom, per_sample, parts


def _recording_output_losses(model):
    """model.recording_output_losses(), but while the step is traced only to cost it
    (compile() does; fit may never be called), when nothing is recorded: Keras's trackers
    of the outputs' losses are made when the compiled loss first runs in a step."""
    if _COSTING.get():
        return contextlib.nullcontext([])
    return model.recording_output_losses()


def _reached_output_losses(reached, shape):
    """Each output's loss (by log name) that a compute_loss of yours reached through the
    default one, as per-sample values of `shape` for the sums: the batch's loss for every
    sample, so that the epoch's log is the batches' losses weighted by their real samples,
    as Keras's tracker weighs each update by the batch size. Reached several times in a
    step (every step alike), the mean of those calls' losses: Keras's tracker takes each."""
    names = dict.fromkeys(name for losses in reached for name in losses)
    return {name: jnp.broadcast_to(jnp.mean(jnp.stack([losses[name] for losses in reached
                                                       if name in losses])), shape)
            for name in names}


# The sum of the rows that weigh the epoch's loss, where they are not the labels' (zero_sums)
LOSS_ROWS = "loss#weight"


def _add_metric_sums(spec, sums, yb, outputs, per_sample_loss, parts, weight, masks=None,
                     loss_rows=None):
    """Add this batch's per-sample loss and metrics, counting only real samples. Where the
    sums keep LOSS_ROWS, the batch's loss counts `loss_rows` times (its first x array's rows,
    a batch of arrays of other rows than its labels: Keras's loss tracker weighs a batch so),
    or its real samples' times when None; the metrics still count the labels' rows."""
    predictions = spec.objective.predictions(spec.model, outputs)
    new = spec.objective.add_sums(sums, yb, predictions, per_sample_loss, parts, weight,
                                  masks)
    if LOSS_ROWS not in sums:
        return new
    total = jnp.sum(per_sample_loss * weight)
    if loss_rows is None:
        return dict(new, **{LOSS_ROWS: sums[LOSS_ROWS] + jnp.sum(weight)})
    batch_loss = total / jnp.maximum(jnp.sum(weight), 1.0)
    return dict(new, loss=sums["loss"] + batch_loss * loss_rows,
                **{LOSS_ROWS: sums[LOSS_ROWS] + loss_rows})


# The objectives (one per compile()) whose training step was told to have no loss, and
# whether the step is being traced only to cost it (compile() does; fit may never be called)
_TOLD_NO_LOSS = weakref.WeakSet()
_COSTING = contextvars.ContextVar("kilnet_costing_step", default=False)


def warn_nothing_trains(spec: StepSpec) -> None:
    """Says, once per compile(), when a training step is traced for fit or train_on_batch,
    that it has no loss to train on: compile() got none and the model adds none (add_loss).
    Keras 3 trains such a model without a word (a loss of 0, zero gradients, the optimizer
    stepping), and keras.io's saving guide fits one (its compile() of its own keeps the loss
    to itself), so kilnet trains it as Keras does.

    Example:
        >>> import warnings
        >>> from kilnet import objective
        >>> spec = StepSpec(model=None, objective=objective.Objective([]), tx=None)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_nothing_trains(spec)
        ...     warn_nothing_trains(spec)   # once per compile()
        >>> [w.category.__name__ for w in caught]
        ['KerasQuirkWarning']
    """
    if _COSTING.get() or spec.objective in _TOLD_NO_LOSS:
        return
    _TOLD_NO_LOSS.add(spec.objective)
    warn_at_your_line(
        "Training with no loss: compile() was given no loss and the model adds none with "
        "add_loss(), so the loss is 0 and every gradient is zero: nothing is learned. As in "
        "Keras, fit and train_on_batch still run: the loss is logged as 0.0 and the optimizer "
        "steps (its iterations count advances, and weight decay, if set, still shrinks the "
        "weights). Pass a loss to compile(), e.g. compile(optimizer='adam', loss='mse') (a "
        "compile() of your own must pass it on to super().compile()), add one with "
        "self.add_loss() in call(), or override compute_loss() or train_step().",
        KerasQuirkWarning, skipping=("jax", "optax"))


def train_step(spec: StepSpec, state: TrainState, xb, yb, mask, epoch, step, checked=False,
               rows_as_given=False, loss_rows=None):
    """One optimizer step.

    Unchecked (the normal loop) the step is applied as it comes: a non-finite loss lands in
    the loss sum, a non-finite gradient in the weights or the optimizer state (kilnet's
    optimizers and constraints keep it; with others `spec.check_gradients` adds it to the loss
    sum), so the check at the chunk's end (train_chunk) sees every non-finite step and the
    host replays that chunk checked. Measured on the seed MLP (2-core AMD EPYC): the per-step
    checks and conditionals this leaves out cost 18% of its epoch.
    `checked`: each step is applied only if its loss, gradient and what the update produces
    (weights, optimizer state, model state) are finite; the first fault is recorded.
    Under loss scaling (`spec.loss_scale`, float16) the gradient is taken of the loss times
    the current scale, the logged loss stays unscaled, and a non-finite gradient is not a
    fault: the LossScaleOptimizer skips that step and halves the scale, leaving everything
    finite, so only a non-finite loss faults (kilnet.loss_scale).
    `rows_as_given`: the batch's arrays hold other rows than its labels (structure.ByBatch):
    the layers see no sample mask and the outputs must have the labels' rows; `loss_rows`
    weigh its loss in the epoch's (_add_metric_sums)."""
    key = jax.random.fold_in(jax.random.fold_in(state.rng, epoch), step)
    weight = mask.astype(jnp.float32)
    denom = jnp.maximum(jnp.sum(weight), 1.0)

    def loss_fn(params):
        full = params if not state.frozen else _tree.merge(params, state.frozen)
        outputs, model_state, extra, masks = _forward(
            spec, full, state.model_state, xb, training=True, rng=key,
            mask=None if rows_as_given else mask)
        if rows_as_given and yb is not None:
            _check_output_rows(outputs, mask.shape[0])
        loss, per_sample, parts = _batch_loss(spec, xb, yb, outputs, weight, denom, True,
                                              masks, (full, state.model_state, key))
        if extra is not None:  # add_loss() terms: once per batch, as Keras adds them
            loss, per_sample = loss + extra, per_sample + extra
        elif not (spec.objective.has_loss or spec.custom_loss):
            warn_nothing_trains(spec)   # the loss stays 0, as Keras's: a guide's fit goes on
        # Under loss scaling the gradient is of the scaled loss; the optimizer unscales it.
        scaled = loss * loss_scale.current_scale(state.opt_state) if spec.loss_scale else loss
        return scaled, (loss, outputs, model_state, per_sample, parts, masks)

    (_, (loss, outputs, model_state, per_sample, parts, masks)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)

    def update(_):
        if spec.weights_update is not None:
            params, opt_state = spec.weights_update(grads, state.opt_state, state.params)
        else:
            updates, opt_state = spec.tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
        return apply_constraints(spec, params), model_state, opt_state

    if not checked:
        params, new_model_state, opt_state = update(None)
        sums = _add_metric_sums(spec, state.sums, yb, outputs, per_sample, parts, weight, masks,
                                loss_rows)
        if spec.check_gradients:
            sums = dict(sums, loss=sums["loss"] + jnp.where(_all_finite(grads), 0.0, jnp.nan))
        return state._replace(params=params, model_state=new_model_state, opt_state=opt_state,
                              sums=sums)
    # Under loss scaling an overflowing gradient is the optimizer's to skip (a finite update).
    finite = jnp.isfinite(loss) & (True if spec.loss_scale else _all_finite(grads))
    if spec.on_nonfinite == "stop":
        apply = finite & (state.fault == NO_FAULT)
    else:
        apply = finite

    def keep(_):
        return state.params, state.model_state, state.opt_state

    candidate = update(None)
    update_finite = _all_finite(candidate)
    fault_code = jnp.where(finite, UPDATE_FAULT + step, step)
    finite = finite & update_finite
    apply = apply & update_finite
    # A cond, not a select: measured 4% of the epoch against 40% for a per-element select.
    params, new_model_state, opt_state = lax.cond(apply, lambda _: candidate, keep, None)
    sums = lax.cond(apply, lambda s: _add_metric_sums(spec, s, yb, outputs, per_sample, parts,
                                                      weight, masks, loss_rows),
                    lambda s: s, state.sums)
    first_fault = (~finite) & (state.fault == NO_FAULT)
    return state._replace(
        params=params, model_state=new_model_state, opt_state=opt_state, sums=sums,
        fault=jnp.where(first_fault, fault_code, state.fault),
        skipped=state.skipped + (~finite).astype(jnp.int32),
    )


def run_eagerly(fn):
    """`fn` (a program's function: train_chunk, eval_chunk, ...) to call uncompiled, under
    `jax.disable_jit()`: JAX runs its while and fori loops and its conds as Python on
    concrete arrays, so each batch's step runs once, op by op, as Keras's
    compile(run_eagerly=True) runs it (kilnet.trainer.Trainer.program). Slow: every operation
    is dispatched on its own.

    Example:
        >>> import numpy as np
        >>> seen = []
        >>> def chunk(total, start, stop):
        ...     def body(i, total):
        ...         seen.append(float(total))   # concrete: float() of a traced value fails
        ...         return total + i
        ...     return lax.fori_loop(start, stop, body, total)
        >>> float(run_eagerly(chunk)(np.float32(0), 0, 3)), seen
        (3.0, [0.0, 0.0, 1.0])
    """
    def eager(*args):
        with jax.disable_jit():
            return fn(*args)
    return eager


def _named_logs(names, logs, step_name):
    """A model's own step's logs as the sums keep them: flat (a dict among them, a metric's
    dict result, gives its entries, as Keras flattens logs: kilnet._step_logs), float32, in
    `names`' order (flat name -> its path in the logs). `names` None: the step ran eagerly
    before anything traced it (run_eagerly), so its logs name themselves; returns (names,
    logs)."""
    if not isinstance(logs, dict):
        raise TypeError(f"{step_name} must return (logs, state) with logs a dict of "
                        f"scalars. Received: logs of type {type(logs).__name__}")
    if names is None:
        names = _step_logs.flat_paths(logs)
    values = _step_logs.flat_values(logs)
    return names, {name: jnp.asarray(values[name], jnp.float32) for name in names}


def _with_logs(sums, names):
    """Sums whose "logs" hold `names` (zeros for those not logged yet: before a model's own
    step first ran eagerly, the sums had no names)."""
    return dict(sums, logs={name: sums["logs"].get(name, jnp.zeros((), jnp.float32))
                            for name in names})


def custom_train_step(spec: StepSpec, state: TrainState, xb, yb, mask, epoch, step,
                      checked=False):
    """One step of the model's own train_step(state, data) in Keras's JAX form: kilnet passes
    (trainable, non-trainable, optimizer, metric variables) as lists and takes back the logs
    and the new lists. Randomness, the sample mask of a padded last batch and add_loss terms
    come through the scope (kilnet._scope), so stateless_call and metrics use them.

    Unchecked (the normal loop) the step is applied as it comes, as train_step's is: the
    check at the chunk's end (train_chunk) sees a non-finite step in the weights, optimizer
    state, metric variables or logs, and the host replays the chunk `checked`, where each
    step is applied only if all it produces is finite."""
    adapter = spec.custom_step
    key = jax.random.fold_in(jax.random.fold_in(state.rng, epoch), step)
    lists = adapter.to_lists(state, state.sums["metric_vars"])
    with _scope.opened(_scope.Scope(training=True, rng=key, sample_mask=mask)):
        logs, new_lists = spec.model.train_step(lists, adapter.batch_data(xb, yb))
    adapter.log_names, logs = _named_logs(adapter.log_names, logs,
                                          f"{type(spec.model).__name__}.train_step")
    state = state._replace(sums=_with_logs(state.sums, adapter.log_names))
    candidate = adapter.from_lists(state, new_lists)
    count = state.sums["count"] + jnp.sum(mask.astype(jnp.float32))
    if not checked:
        # Logs need not carry a fault to later steps (a value of this batch alone, not a
        # running mean): a non-finite one leaves NaN in the count, which the closing check
        # sees, as train_step leaves a hidden gradient's in the loss sum.
        count = count + jnp.where(_all_finite(logs), 0.0, jnp.nan)
        return candidate._replace(sums={"metric_vars": list(new_lists[3]), "logs": logs,
                                        "count": count})
    new_sums = {"metric_vars": list(new_lists[3]), "logs": logs, "count": count}
    return _checked_custom_update(spec, state, candidate, new_sums, logs, step)


def _checked_custom_update(spec, state, candidate, new_sums, logs, step):
    """`state` moved to `candidate` and `new_sums` where all of them and `logs` are finite;
    else kept, with the first fault recorded at `step`."""
    # grouped as the closing check groups them: a reduction per leaf is about three XLA
    # kernels to compile (real_nvp's 365 leaves: 1,100), and this program runs only to replay
    finite = _state_finite((candidate.params, candidate.model_state, candidate.opt_state,
                            logs))
    apply = finite & (state.fault == NO_FAULT) if spec.on_nonfinite == "stop" else finite
    # A cond, not a select per leaf: XLA fused the predicate's chain of per-leaf "and"s into
    # every leaf's select, so the program grew with the leaves squared (keras.io's real_nvp,
    # 365 leaves: 134k "and"s, 40-75 s to compile the step's program).
    chosen = lax.cond(apply, lambda: (candidate.params, candidate.frozen,
                                      candidate.model_state, candidate.opt_state, new_sums),
                      lambda: (state.params, state.frozen, state.model_state,
                               state.opt_state, state.sums))
    first_fault = (~finite) & (state.fault == NO_FAULT)
    return state._replace(
        params=chosen[0], frozen=chosen[1], model_state=chosen[2], opt_state=chosen[3],
        sums=chosen[4], fault=jnp.where(first_fault, step, state.fault),
        skipped=state.skipped + (~finite).astype(jnp.int32))


def apply_constraints(spec: StepSpec, params):
    """The weights with constraints projected after an optimizer update, as Keras's
    optimizers apply `variable.constraint` after each step."""
    for path, constraint in spec.constraints:
        params = _tree.replace_path(params, path, constraint(_tree.get_path(params, path)))
    return params


def _all_finite(tree):
    """Whether every element of `tree` is finite: one reduction per leaf, no copies (this runs
    every step where it is used)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


# A chunk's closing check joins the state's leaves into groups of at most this many elements
# (per dtype) and reduces each group once. XLA's CPU backend compiles one reduction as about
# three kernels (is-finite, a windowed pre-reduction, the last reduction), each 10-20 ms of
# compile time; per leaf, the check was 0.05-0.45 s of a training loop's compilation (2-core
# Intel Xeon, median of 3 processes: seed MLP 1.247 -> 1.193 s, MNIST convnet 2.539 -> 2.094,
# ResNet-8 2.964 -> 2.716, the bench Transformer 3.852 -> 3.612). The joined copy, once a
# chunk, is at most this size.
_CHECK_GROUP_ELEMENTS = 2**22


def _state_finite(tree):
    """Whether every floating element of `tree` is finite, with few reductions (once a chunk:
    integer leaves are finite by construction)."""
    groups, sizes = {}, {}
    for leaf in jax.tree.leaves(tree):
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.inexact) or leaf.size == 0:
            continue
        dtype = leaf.dtype
        if dtype not in groups or sizes[dtype] + leaf.size > _CHECK_GROUP_ELEMENTS:
            groups.setdefault(dtype, []).append([])
            sizes[dtype] = 0
        groups[dtype][-1].append(jnp.ravel(leaf))
        sizes[dtype] += leaf.size
    # x * 0 is 0 where x is finite and NaN where it is not (XLA keeps IEEE products: it does
    # not fold a float x * 0), so one sum of it says whether all are finite, with no
    # overflow of its own. One multiply-and-sum pass instead of is-finite, a windowed
    # pre-reduction and the last reduction: the seed MLP's one-step program
    # 0.64 -> 0.59 ms (2-core Intel Xeon), its compilation shorter too.
    checks = [jnp.isfinite(jnp.sum(jnp.concatenate(group) * 0 if len(group) > 1
                                   else group[0] * 0))
              for per_dtype in groups.values() for group in per_dtype]
    return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def _positions(i, base, batch_size):
    return (i - base) * batch_size + jnp.arange(batch_size)


# -- whole-loop programs ------------------------------------------------------------------------
def _train_at(spec, batch_size, state, x, y, order, valid, epoch, base, i, checked=False):
    """Step `i` of an epoch on the block (x, y, order, valid) whose first batch is step
    `base`'s."""
    positions = _positions(i, base, batch_size)
    xb, yb = _batch(spec, x, y, order[positions])
    xb, yb, mask = _shard(spec, xb, yb, valid[positions])
    if spec.custom_step is not None:
        return custom_train_step(spec, state, xb, yb, mask, epoch, i, checked=checked)
    if isinstance(x, structure.ByBatch):
        return train_step(spec, state, xb, yb, mask, epoch, i, checked=checked,
                          rows_as_given=True, loss_rows=x.loss_rows)
    return train_step(spec, state, xb, yb, mask, epoch, i, checked=checked)


def _closing_check(spec, state):
    """STATE_FAULT in the state's fault flag where its weights, optimizer state, model state
    or loss sum are not finite: the host then replays the steps checked. A model's own
    train_step may also update its non-trainable weights and keeps metric variables and logs
    instead of a loss sum: those are checked instead."""
    own_step = spec.custom_step is not None
    finite = _state_finite((state.params, state.opt_state, state.model_state,
                            state.sums if own_step else state.sums.get("loss", 0.0),
                            state.frozen if own_step else None))
    return state._replace(fault=jnp.where(finite, state.fault, STATE_FAULT))


def train_chunk(spec, batch_size, state, x, y, order, valid, epoch, base, start, stop,
                trail=None, checked=False):
    """Steps start..stop of an epoch in one while loop. Unchecked (the normal loop), the
    state's finiteness is checked once at the end: STATE_FAULT asks the host to replay the
    chunk `checked`, step by step, from a copy of the chunk's starting state.

    `trail`: None, or buffers shaped like the state's sums with a leading axis of at least
    stop - start: the sums after each step are written there (row i - start), so that the
    host can give a callback every batch's logs (kilnet.callbacks); returns (state, trail)."""
    def cond(carry):
        i, s, _ = carry
        # A fault in "stop" mode ends the chunk early: later steps would not be applied anyway.
        return (i < stop) & ((s.fault == NO_FAULT) | (spec.on_nonfinite != "stop"))

    def body(carry):
        i, s, rows = carry
        s = _train_at(spec, batch_size, s, x, y, order, valid, epoch, base, i, checked)
        if rows is not None:
            rows = jax.tree.map(lambda row, value: row.at[i - start].set(value), rows, s.sums)
        return i + 1, s, rows

    _, state, trail = lax.while_loop(cond, body, (start, state, trail))
    if not checked:
        state = _closing_check(spec, state)
    return state if trail is None else (state, trail)


def train_batch(spec, batch_size, state, x, y, order, valid, epoch, base, start, stop):
    """train_on_batch's program: step `start` alone (`stop` is start + 1), with no loop, then
    train_chunk's closing check. Its caller keeps the input state (not donated) to replay from; inside a
    loop XLA first copied that state into the loop's own buffers (seed MLP, the program
    alone: 0.73 -> 0.64 ms a call, 2-core Intel Xeon)."""
    del stop  # one step: the signature is train_chunk's, so the host runs either alike
    state = _train_at(spec, batch_size, state, x, y, order, valid, epoch, base, start)
    return _closing_check(spec, state)


def sums_trail(sums, steps: int):
    """Zero buffers for `steps` rows of the sums (train_chunk's `trail`)."""
    return jax.tree.map(lambda a: jnp.zeros((steps,) + jnp.shape(a), jnp.asarray(a).dtype),
                        sums)


def custom_eval_chunk(spec, batch_size, sums, state, x, y, order, valid, base, start, stop,
                      seeds=None):
    """Batches start..stop through the model's own test_step(state, data) in Keras's JAX
    form: it gets (trainable, non-trainable, metric variables) as lists and returns (logs,
    state); the metric variables carry from batch to batch, the logs kept are the last
    batch's (as Keras reports them). The sample mask of a padded last batch comes through the
    scope (kilnet._scope), so stateless_call and metrics see it. Returns (sums, model state):
    the non-trainable variables a step returns carry to the next, as in eval_chunk; with
    `seeds`, the SeedGenerator states the step returns too (see eval_chunk)."""
    adapter = spec.keras_steps

    def body(i, carry):
        sums, model_state, seeds = carry
        current = state._replace(model_state=model_state)
        positions = _positions(i, base, batch_size)
        xb, yb = _batch(spec, x, y, order[positions])
        xb, yb, mask = _shard(spec, xb, yb, valid[positions])
        trainable, non_trainable, _, metric_vars = adapter.to_lists(current,
                                                                    sums["metric_vars"])
        non_trainable = adapter.with_seed_values(non_trainable, seeds)
        scope = _scope.Scope(training=False, sample_mask=mask,
                             bindings=adapter.carried_bindings(model_state))
        with _scope.opened(scope):
            logs, new_lists = spec.model.test_step(
                (trainable, non_trainable, metric_vars), adapter.batch_data(xb, yb))
        model_state = adapter.trees(current, trainable, new_lists[1])[2]
        adapter.test_log_names, logs = _named_logs(adapter.test_log_names, logs,
                                                   f"{type(spec.model).__name__}.test_step")
        return ({"metric_vars": list(new_lists[2]),
                 "logs": logs,
                 "count": sums["count"] + jnp.sum(mask.astype(jnp.float32))},
                adapter.with_carried(model_state, scope.assigned),
                adapter.seeds_returned(non_trainable, new_lists[1], seeds))

    return _seeded(lax.fori_loop(start, stop, body, (sums, state.model_state, seeds)))


def eval_chunk(spec, batch_size, sums, params, model_state, x, y, order, valid, base, start,
               stop, seeds=None):
    """Batches start..stop evaluated: (sums, model state). The state a batch's forward pass
    leaves (a stateful RNN's states, a counter a layer of yours assigns in call) is the next
    batch's, and is returned, as Keras keeps what a test step assigns.

    `seeds`: None, or the values of the model's SeedGenerator states (`StepSpec.seed_states`)
    for a model that draws at inference (a Dropout called with training=True, a layer of
    yours drawing from its generator): each batch draws from them and advances them, as
    Keras's test step does, and they come back as a third result."""
    def body(i, carry):
        sums, model_state, seeds = carry
        positions = _positions(i, base, batch_size)
        xb, yb = _batch(spec, x, y, order[positions])
        xb, yb, mask = _shard(spec, xb, yb, valid[positions])
        with _drawing_from(spec, seeds) as drawn:
            outputs, new_state, extra, masks = _forward(spec, params, model_state, xb,
                                                        training=False, rng=None,
                                                        mask=_forward_mask(x, mask))
            if isinstance(x, structure.ByBatch) and yb is not None:
                _check_output_rows(outputs, mask.shape[0])
            weight = mask.astype(jnp.float32)
            _, per_sample, parts = _batch_loss(spec, xb, yb, outputs, weight,
                                               jnp.maximum(jnp.sum(weight), 1.0), False,
                                               masks, (params, model_state, None))
        if extra is not None:
            per_sample = per_sample + extra
        loss_rows = x.loss_rows if isinstance(x, structure.ByBatch) else None
        return (_add_metric_sums(spec, sums, yb, outputs, per_sample, parts, weight, masks,
                                 loss_rows),
                new_state, _advanced(spec, seeds, drawn))

    return _seeded(lax.fori_loop(start, stop, body, (sums, model_state, seeds)))


def predict_chunk(spec, batch_size, outputs, params, model_state, x, order, valid, base, start,
                  stop, seeds=None):
    """Batches start..stop predicted into `outputs`: (outputs, model state), the state
    carried from batch to batch as in eval_chunk; with `seeds`, the advanced SeedGenerator
    states too (see eval_chunk)."""
    def body(i, carry):
        outputs, model_state, seeds = carry
        positions = _positions(i, base, batch_size)
        xb, _ = _batch(spec, x, None, order[positions])
        xb, mask = _shard(spec, xb, valid[positions])
        with _drawing_from(spec, seeds) as drawn, _scope.opened(_scope.Scope()):
            y, model_state = spec.model.apply(params, model_state, xb, training=False,
                                              rng=None, sample_mask=_forward_mask(x, mask))
        values = spec.model.output_list(y)
        if isinstance(x, structure.ByBatch):   # each output as the batch gave it
            written = tuple(_written(out, value, i - base, batch_size)
                            for out, value in zip(outputs, values))
        else:
            start = (i - base) * batch_size
            written = tuple(lax.dynamic_update_slice_in_dim(out, value.astype(out.dtype),
                                                            start, axis=0)
                            for out, value in zip(outputs, values))
        return written, model_state, _advanced(spec, seeds, drawn)

    return _seeded(lax.fori_loop(start, stop, body, (outputs, model_state, seeds)))


def predict_batch(spec, batch_size, params, model_state, x, seeds=None):
    """predict_on_batch's program: the model's outputs (a tuple) for `x`, one batch whose
    rows are all samples, with no loop, positions or output buffers (seed MLP at batch 32:
    0.35 -> 0.23 ms a call, 2-core Intel Xeon), and the model state the call leaves; with
    `seeds`, the advanced SeedGenerator states too (see eval_chunk)."""
    with _drawing_from(spec, seeds) as drawn, _scope.opened(_scope.Scope()):
        y, model_state = spec.model.apply(params, model_state, _as_input_dtypes(spec, x),
                                          training=False, rng=None,
                                          sample_mask=jnp.ones((batch_size,), bool))
    return _seeded((tuple(spec.model.output_list(y)), model_state,
                    _advanced(spec, seeds, drawn)))


def _drawing_from(spec, seeds):
    """The scope one batch's inference pass runs in: the model's SeedGenerator states bound
    to `seeds` (SeedGenerator.next and Layer.random_key draw from them and record the
    advanced values there); none when the program carries no states."""
    if seeds is None:
        return contextlib.nullcontext()
    return _scope.opened(_scope.Scope(bindings={id(v): value for v, value
                                                in zip(spec.seed_states, seeds)}))


def _advanced(spec, seeds, drawn):
    """The seed states after a batch drew in the scope `drawn` (None when carried none)."""
    if seeds is None:
        return None
    return [drawn.assigned.get(id(v), value) for v, value in zip(spec.seed_states, seeds)]


def _seeded(results):
    """An inference program's results: without seed states carried (their slot None), the
    two results it always had."""
    return results if results[-1] is not None else results[:-1]


def custom_predict_chunk(spec, batch_size, outputs, state, x, order, valid, base, start,
                         stop, seeds=None):
    """Batches start..stop through the model's own predict_step(state, data) in Keras's JAX
    form: state is (trainable, non-trainable variables) as lists, data is x as Keras gives it
    (KerasState.batch_data); it returns
    (outputs, non-trainable variables). `outputs` holds one buffer per leaf of what it
    returns (kilnet.trainer.KerasState.predict_structure). Returns (outputs, model state), the
    non-trainable variables carried from batch to batch. `outputs` None: run eagerly
    (run_eagerly), where nothing traced the step before; the first batch's result makes the
    buffers and names the structure (`KerasState.predicted`). With `seeds`, the
    SeedGenerator states predict_step returns carry from batch to batch and come back too
    (see eval_chunk)."""
    adapter = spec.keras_steps

    def body(i, carry):
        outputs, model_state, seeds = carry
        current = state._replace(model_state=model_state)
        positions = _positions(i, base, batch_size)
        xb, _ = _batch(spec, x, None, order[positions])
        xb, mask = _shard(spec, xb, valid[positions])
        trainable, given, _, _ = adapter.to_lists(current, [])
        given = adapter.with_seed_values(given, seeds)
        scope = _scope.Scope(training=False, sample_mask=mask,
                             bindings=adapter.carried_bindings(model_state))
        with _scope.opened(scope):
            result = spec.model.predict_step((trainable, given), adapter.batch_data(xb))
        y, non_trainable = adapter.checked_prediction(result)
        leaves = jax.tree.leaves(y)
        if outputs is None:   # eagerly, the first batch: buffers for what it returned
            adapter.predicted = (jax.tree.structure(y),
                                 [jax.ShapeDtypeStruct(jnp.shape(v), v.dtype) for v in leaves])
            outputs = tuple(prediction_buffer(leaf, order.shape[0], batch_size)
                            for leaf in adapter.predicted[1])
        model_state = adapter.trees(current, trainable, non_trainable)[2]
        return (tuple(_written(out, value, i - base, batch_size)
                      for out, value in zip(outputs, leaves)),
                adapter.with_carried(model_state, scope.assigned),
                adapter.seeds_returned(given, non_trainable, seeds))

    return _seeded(lax.fori_loop(start, stop, body, (outputs, state.model_state, seeds)))


def per_sample(shape, batch_size) -> bool:
    """Whether a predict_step output of `shape` has one row per sample of a batch of
    `batch_size` (its rows are kept where the batch's samples are real); any other output
    (a per-batch summary, a scalar) is kept whole for each batch, and predict joins the
    batches' outputs along their first axis, as Keras's predict concatenates them.

    Example:
        >>> per_sample((32, 10), 32), per_sample((1, 10), 32), per_sample((), 32)
        (True, False, False)
    """
    return len(shape) > 0 and shape[0] == batch_size


def prediction_buffer(leaf, rows, batch_size):
    """Zeros for one predict_step output over a block of `rows` samples: a row per sample
    for a per-sample output, else one whole output per batch."""
    shape = tuple(leaf.shape)
    if per_sample(shape, batch_size):
        return jnp.zeros((rows,) + shape[1:], prediction_dtype(leaf.dtype))
    return jnp.zeros((rows // batch_size,) + shape, prediction_dtype(leaf.dtype))


def _written(buffer, value, batch_index, batch_size):
    """`buffer` with the output `value` of the block's batch `batch_index` written in."""
    value = value.astype(buffer.dtype)
    if per_sample(jnp.shape(value), batch_size):
        return lax.dynamic_update_slice_in_dim(buffer, value, batch_index * batch_size, axis=0)
    return lax.dynamic_update_index_in_dim(buffer, value, batch_index, axis=0)


def prediction_dtype(dtype):
    """What predict returns for an output of `dtype`: float32 for every floating dtype (a
    mixed-precision model's bfloat16 too), else the output's own (ids, counts and masks stay
    integers and booleans, as in Keras).

    Example:
        >>> prediction_dtype("bfloat16"), prediction_dtype("int32")
        (dtype('float32'), dtype('int32'))
    """
    dtype = jax.dtypes.canonicalize_dtype(dtype or "float32")
    return np.dtype(np.float32) if jnp.issubdtype(dtype, jnp.floating) else dtype


# -- compilation and its report -----------------------------------------------------------------
@dataclass
class CompileReport:
    """What compile() built: shown by model.summary() and `kilnet train`."""

    params: int = 0
    flops_per_step: float | None = None
    bytes_per_step: float | None = None
    batch_size: int | None = None
    programs: list = field(default_factory=list)  # dicts: name, seconds, memory bytes
    step_seconds: float = 0.0  # tracing and lowering one step for its cost, at compile()

    @property
    def compile_seconds(self) -> float:
        return sum(p["seconds"] for p in self.programs)

    def as_dict(self) -> dict:
        return {"params": self.params, "flops_per_step": self.flops_per_step,
                "bytes_per_step": self.bytes_per_step, "batch_size": self.batch_size,
                "compile_seconds": self.compile_seconds, "step_seconds": self.step_seconds,
                "programs": list(self.programs)}

    def __str__(self):
        if self.programs:
            lines = [f"Compiled {len(self.programs)} XLA program(s) in "
                     f"{self.compile_seconds:.2f} s; {self.params:,} parameters"]
        else:
            lines = [f"Traced and lowered the training step in {self.step_seconds:.2f} s; "
                     f"{self.params:,} parameters"]
        if self.flops_per_step is not None:
            lines.append(f"  per training step (batch {self.batch_size}): "
                         f"{_si(self.flops_per_step)}FLOP, {_si(self.bytes_per_step)}B accessed")
        for p in self.programs:
            mem = p.get("memory_bytes")
            lines.append(f"  {p['name']:<34} {p['seconds']:6.2f} s"
                         + (f"   memory {_si(mem)}B" if mem else ""))
        if not self.programs:
            lines.append("  the training step is traced and costed; its whole-epoch program is "
                         "compiled by fit() for the dataset's size (cached on disk for reruns)")
        return "\n".join(lines)


def _si(value) -> str:
    if value is None:
        return "? "
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def step_cost(spec: StepSpec, state: TrainState, x_spec, y_spec, batch_size):
    """FLOPs and bytes of one training step, from XLA's cost analysis of the lowered step."""
    def batched(tree):
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct((batch_size,) + tuple(a.shape[1:]),
                                                           a.dtype), tree)

    xb, yb = batched(x_spec), batched(y_spec)
    mask = jax.ShapeDtypeStruct((batch_size,), jnp.bool_)
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    costing = _COSTING.set(True)
    try:
        lowered = jax.jit(lambda s, a, b, m, e, i: train_step(spec, s, a, b, m, e, i)).lower(
            state, xb, yb, mask, scalar, scalar)
    finally:
        _COSTING.reset(costing)
    return lowered_cost(lowered)


def lowered_cost(lowered):
    """(FLOPs, bytes accessed): XLA's cost analysis of a lowered program, before optimization.
    A while loop's body counts once: a training loop's cost is one step's and its chunk's
    closing check (about 4% more FLOPs than the step alone, for the seed MLP)."""
    cost = lowered.cost_analysis() or {}
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    return cost.get("flops"), cost.get("bytes accessed")


def compile_program(name: str, fn, donate: tuple, *example_args):
    """Ahead-of-time compile `fn` for the shapes of `example_args`; returns (program, info,
    lowered): info for the compile report, lowered the program before XLA's optimization (its
    cost: `lowered_cost`)."""
    began = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=donate).lower(*example_args)
    compiled = lowered.compile(compiler_options=_runtime.compiler_options())
    seconds = time.perf_counter() - began
    m = _memory_analysis(compiled)
    memory = None if m is None else int(m.temp_size_in_bytes + m.argument_size_in_bytes
                                        + m.output_size_in_bytes - m.alias_size_in_bytes)
    info = {"name": name, "seconds": round(seconds, 4), "memory_bytes": memory}
    return compiled, info, lowered


def _memory_analysis(program):
    """XLA's memory analysis of a compiled `program`, or None where there is none."""
    try:
        return program.memory_analysis()
    except Exception:  # not a compiled XLA program, or optional in this XLA backend
        return None


# XLA's memory analysis of a program costs about 1 ms a call on our 2-core CPU, and fit asks
# for it at every call (train_on_batch makes one fit call per batch): kept per program.
_TEMP_BYTES = weakref.WeakKeyDictionary()


def temp_bytes(program) -> int | None:
    """The size of the temporary buffer an execution of a compiled `program` allocates, or
    None where XLA does not say."""
    try:
        return _TEMP_BYTES[program]
    except (KeyError, TypeError):   # not seen yet, or not an object a weak key can hold
        pass
    m = _memory_analysis(program)
    found = None if m is None else int(m.temp_size_in_bytes)
    try:
        _TEMP_BYTES[program] = found
    except TypeError:
        pass
    return found


def abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)
