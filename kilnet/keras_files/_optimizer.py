"""A compiled model's compile configuration and optimizer state in Keras 3's layout, both ways.

Why a module of its own: Keras keeps the optimizer's variables as a flat list in the weights
file (`optimizer/vars/0` the step count, `optimizer/vars/1` the learning rate, then each
trainable variable's slots in the model's trainable-variable order, e.g. Adam's momentum and
velocity interleaved per variable), while kilnet keeps them as Optax state trees shaped like the
params. This table maps one to the other for the optimizers whose update kilnet computes exactly
as Keras does (SGD with or without momentum, Adam, AdamW, RMSprop with or without momentum and
centering, Adagrad, Nadam, Adamax, Adadelta, Lion, Lamb, Ftrl, Adafactor), so a model trained a
few steps in one continues in the other as it would have. A state that cannot be mapped is left
out with a warning, and training starts from a fresh state. Nadam has one variable more, after
all the slots: `u_product`, the running product of its momentum schedule (Keras makes it after
its momentums and velocities). With use_ema, the weights' moving averages come first, one per
trainable variable, before any slot; with gradient_accumulation_steps, the gradients summed since
the last update (one per trainable variable) come after them, and the step count is Keras's
raw one (every step, updates or not). Adafactor's slots are not shaped like the weights: a row
and a column mean per weight of rank >= 2, int32 scalar placeholders for the others.

kilnet's SGD keeps Optax's trace t (t <- g + momentum * t, step -lr * t); Keras keeps
m <- momentum * m - lr * g, so m = -lr * t while the learning rate is constant.
RMSprop's momentum: Optax's trace t <- -lr * g / sqrt(.) + momentum * t (the step is +t);
Keras's m <- momentum * m + lr * g / sqrt(.) (the step is -m), so m = -t. Keras makes RMSprop's
slots one kind at a time (all velocities, then momentums, then average gradients), Adam's
variable by variable (momentum and velocity interleaved).
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _registry
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet.keras_files import _config
from kilnet.trainer import KerasState

PREFIX = "optimizer/vars/"
COMPILE_EXTRAS = {"run_eagerly": False, "steps_per_execution": 1, "jit_compile": True}


class Unsupported(ValueError):
    """A compile argument or optimizer state with no exact Keras counterpart."""


# -- the optimizers' slots ---------------------------------------------------------------------
def slot_names(optimizer) -> list:
    """Keras's slot names per trainable variable for a kilnet optimizer, in Keras's order;
    Unsupported when kilnet's update is not Keras's or the slots are not one per name.

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> _optimizer.slot_names(kilnet.optimizers.Adam())
        ['momentum', 'velocity']
        >>> _optimizer.slot_names(kilnet.optimizers.SGD(momentum=0.0))
        []
    """
    name, hyper = type(optimizer).__name__, getattr(optimizer, "hyper", {})
    if name == "SGD":
        if hyper.get("momentum") and callable(optimizer.learning_rate):
            raise Unsupported("Keras's SGD momentum holds -learning_rate * kilnet's trace, a "
                              "correspondence that holds for a constant learning rate only")
        return ["momentum"] if hyper.get("momentum") else []
    if name in ("Adam", "AdamW", "Nadam"):
        return ["momentum", "velocity"] + (["velocity_hat"] if hyper.get("amsgrad") else [])
    if name == "RMSprop":
        return ["velocity"] + (["momentum"] if hyper.get("momentum") else []) + (
            ["average_gradient"] if hyper.get("centered") else [])
    if name == "Adagrad":
        return ["accumulator"]
    if name in KERAS_SLOTS:
        return list(KERAS_SLOTS[name])
    raise Unsupported(f"kilnet's {name}({hyper}) has no optimizer state in Keras's layout")


# Keras's slot names of the optimizers whose Optax state is (state with those fields, ...):
# {optimizer: {Keras's slot: the field of the first state of kilnet's chain}}.
KERAS_SLOTS = {"Adamax": {"momentum": "mu", "norm": "nu"},
               "Adadelta": {"accumulated_grad": "e_g", "accumulated_delta_var": "e_x"},
               "Lion": {"momentum": "mu"},
               "Lamb": {"momentum": "mu", "velocity": "nu"},
               "Ftrl": {"accumulator": "accumulator", "linear": "linear"},
               # Adafactor's factored row and column means (Keras names them after the weight)
               # and its velocity; for a weight of rank < 2, r and c are int32 placeholders.
               "Adafactor": {"r": "r", "c": "c", "velocity": "v"}}


def scalar_names(optimizer) -> list:
    """The optimizer's own scalar variables, which Keras lists after every slot (Nadam's
    `u_product`); none for the others.

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> _optimizer.scalar_names(kilnet.optimizers.Nadam()), _optimizer.scalar_names(
        ...     kilnet.optimizers.Adam())
        (['u_product'], [])
    """
    return ["u_product"] if type(optimizer).__name__ == "Nadam" else []


def _inject(opt_state):
    """The inject_hyperparams state (count, learning rate, inner state) of a kilnet optimizer."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "inner_state"))
             if hasattr(s, "inner_state")]
    if len(found) != 1:
        raise Unsupported("the optimizer state has no single learning-rate holder")
    return found[0]


def _slot_trees(optimizer, inner) -> list:
    """The params-shaped trees of the inner Optax state, one per Keras slot name."""
    name = type(optimizer).__name__
    if name in ("Adam", "AdamW", "Nadam"):
        return [inner.mu, inner.nu] + ([inner.nu_hat] if hasattr(inner, "nu_hat") else [])
    if name == "SGD":
        return [inner[0].trace] if slot_names(optimizer) else []
    if name == "RMSprop":   # optax's chain: (scale_by_rms or _by_stddev, lr, trace)
        return [inner[0].nu] + ([inner[2].trace] if optimizer.hyper.get("momentum") else []) \
            + ([inner[0].mu] if optimizer.hyper.get("centered") else [])
    if name in KERAS_SLOTS:
        return [getattr(inner[0], field) for field in KERAS_SLOTS[name].values()]
    return [inner[0].sum_of_squares]   # Adagrad


def _with_slot_trees(optimizer, inner, trees, count, scalars=()):
    name = type(optimizer).__name__
    if name in ("Adam", "AdamW", "Nadam"):
        inner = inner._replace(count=jnp.asarray(count, inner.count.dtype), mu=trees[0],
                               nu=trees[1], **({"nu_hat": trees[2]} if len(trees) > 2 else {}))
        if name == "Nadam":
            inner = inner._replace(u_product=jnp.asarray(scalars[0], inner.u_product.dtype))
        return inner
    if not trees:
        return inner
    if name in KERAS_SLOTS:
        first = inner[0]._replace(**{field: _like(tree, getattr(inner[0], field))
                                     for field, tree in zip(KERAS_SLOTS[name].values(), trees)})
        if "count" in first._fields:   # Adamax's and Lion's own step count
            first = first._replace(count=jnp.asarray(count, first.count.dtype))
        return (first,) + tuple(inner[1:])
    if name == "RMSprop":
        slots = dict(zip(slot_names(optimizer), trees))
        scale = inner[0]._replace(nu=slots["velocity"], **(
            {"mu": slots["average_gradient"]} if "average_gradient" in slots else {}))
        trace = inner[2]._replace(trace=slots["momentum"]) if "momentum" in slots else inner[2]
        return (scale,) + tuple(inner[1:2]) + (trace,) + tuple(inner[3:])
    field = {"SGD": "trace", "Adagrad": "sum_of_squares"}[name]
    return (inner[0]._replace(**{field: trees[0]}),) + tuple(inner[1:])


def _like(tree, old):
    """`tree` in the dtypes of `old`, the state it replaces: the file's slots come as float32,
    Adafactor's placeholders are int32 in both libraries, and a changed dtype would retrace."""
    return jax.tree.map(lambda new, was: jnp.asarray(new, was.dtype), tree, old)


def _per_weight_tree(adapter, state, arrays, head: int, old) -> tuple:
    """(the arrays of Keras's list from `head` on, one per trainable weight, as a tree in the
    dtypes of `old`, the position after them)."""
    end = head + len(adapter.trainable_list(state.params))
    tree = adapter.trainable_tree(state, [jnp.asarray(v) for v in arrays[head:end]])
    return _like(tree, old), end


def _slot_groups(optimizer) -> list:
    """How many slots each of Keras's add_optimizer_variables calls makes, in order: one call
    lists its slots variable by variable (Adam's momentum and velocity interleaved), and the
    calls follow one another (Adam's velocity_hats after all of those; RMSprop makes its
    velocities, then its momentums, then its average gradients)."""
    names = slot_names(optimizer)
    if type(optimizer).__name__ == "RMSprop":
        return [1] * len(names)
    if names[-1:] == ["velocity_hat"]:
        return [len(names) - 1, 1]
    return [len(names)] if names else []


def _keras_sign(optimizer, slot, values, lr):
    """Keras's value of a slot from kilnet's (an involution: the same maps back), for the
    slots whose convention differs: SGD's m = -lr * trace; RMSprop's momentum = -trace (Optax
    puts the learning rate and the sign inside the trace, Keras subtracts its momentum)."""
    name = type(optimizer).__name__
    if slot == "momentum" and name == "RMSprop":
        return [-v for v in values]
    return values


def keras_order(optimizer, per_slot) -> list:
    """The slots' values ([a list per slot name, each over the variables]) as one list in
    Keras's order (see _slot_groups).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> adam = kilnet.optimizers.Adam(amsgrad=True)
        >>> _optimizer.keras_order(adam, [["m1", "m2"], ["v1", "v2"], ["h1", "h2"]])
        ['m1', 'v1', 'm2', 'v2', 'h1', 'h2']
    """
    ordered, start = [], 0
    for size in _slot_groups(optimizer):
        ordered += [v for values in zip(*per_slot[start:start + size]) for v in values]
        start += size
    return ordered


def _per_slot(optimizer, ordered) -> list:
    """keras_order's inverse: a list per slot name from the values in Keras's order."""
    n_vars = len(ordered) // max(len(slot_names(optimizer)), 1)
    per_slot, start = [], 0
    for size in _slot_groups(optimizer):
        group = ordered[start:start + size * n_vars]
        per_slot += [group[k::size] for k in range(size)]
        start += size * n_vars
    return per_slot


def export_arrays(trainer) -> list:
    """The optimizer's variables as Keras lists them: [iterations (int32), learning_rate
    (float32), then each trainable variable's slots, then the optimizer's own scalars (see
    scalar_names)]. Host sync. Unsupported if unmappable."""
    names = slot_names(trainer.optimizer)
    inject = _inject(trainer.state.opt_state)
    lr = float(inject.hyperparams["learning_rate"])   # host sync: saving only
    adapter = KerasState(trainer)
    per_slot = [adapter.trainable_list(tree) for tree in _slot_trees(trainer.optimizer,
                                                                     inject.inner_state)]
    if names == ["momentum"] and type(trainer.optimizer).__name__ == "SGD":
        per_slot = [[-lr * t for t in per_slot[0]]]
    per_slot = [_keras_sign(trainer.optimizer, n, values, lr)
                for n, values in zip(names, per_slot)]
    accumulation = optimizers_lib.accumulation_state(trainer.state.opt_state)
    steps = inject.count if accumulation is None else accumulation.count
    arrays = [np.asarray(steps, np.int32)] + (
        [np.asarray(lr, np.float32)] if has_rate_variable(trainer.optimizer) else [])
    averages = optimizers_lib.moving_average_state(trainer.state.opt_state)
    if averages is not None:   # use_ema: Keras makes the averages first, one per variable
        arrays.extend(np.asarray(v, np.float32) for v in adapter.trainable_list(
            averages.average))
    if accumulation is not None:   # Keras makes the accumulators next, one per variable
        arrays.extend(np.asarray(v, np.float32) for v in adapter.trainable_list(
            accumulation.summed_gradients))
    arrays.extend(np.asarray(v, _keras_dtype(v))
                  for v in keras_order(trainer.optimizer, per_slot))
    arrays.extend(np.asarray(getattr(inject.inner_state, name), np.float32)
                  for name in scalar_names(trainer.optimizer))
    return [np.asarray(a) for a in jax.device_get(arrays)]


def keras_variable_paths(trainer, name) -> list:
    """The names Keras gives the optimizer variables export_arrays lists, in the same order
    ("adam/iteration", "adam/learning_rate", "adam/dense_kernel_momentum", ...): a legacy .h5
    file lists them so (Keras reads them back by position).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> model.compiled.ensure_state()
        >>> _optimizer.keras_variable_paths(model.compiled, "adam")[:3]
        ['adam/iteration', 'adam/learning_rate', 'adam/sequential_dense_kernel_momentum']
    """
    optimizer = trainer.optimizer
    variables = [v.path.replace("/", "_") for _, _, v in trainer.model.variable_paths()
                 if trainer.variable_slot(v)[0] == "params"]
    names = [f"{name}/iteration"] + (
        [f"{name}/learning_rate"] if has_rate_variable(optimizer) else [])
    if optimizers_lib.moving_average_state(trainer.state.opt_state) is not None:
        names += [f"{name}/{v}_average" for v in variables]
    if optimizer.gradient_accumulation_steps:
        names += [f"{name}/{v}_gradient_accumulator" for v in variables]
    names += keras_order(optimizer, [[f"{name}/{v}_{slot}" for v in variables]
                                  for slot in slot_names(optimizer)])
    return names + [f"{name}/{scalar}" for scalar in scalar_names(optimizer)]


def _keras_dtype(value):
    """Keras's dtype of a slot: float32, or int32 for Adafactor's placeholders."""
    return np.int32 if jnp.issubdtype(value.dtype, jnp.integer) else np.float32


def expected_shapes(trainer) -> list:
    """The shapes `import_arrays` needs, in order (for checking a file before reading it):
    those of the state's own slots, which are the weights' shapes except Adafactor's factors
    (a row and a column mean) and placeholders (scalars)."""
    adapter = KerasState(trainer)
    trees = _slot_trees(trainer.optimizer, _inject(trainer.state.opt_state).inner_state)
    per_slot = [[tuple(np.shape(v)) for v in adapter.trainable_list(tree)] for tree in trees]
    head = [(), ()] if has_rate_variable(trainer.optimizer) else [()]
    if optimizers_lib.moving_average_state(trainer.state.opt_state) is not None:
        head += [tuple(np.shape(v)) for v in adapter.trainable_list(trainer.state.params)]
    if trainer.optimizer.gradient_accumulation_steps:
        head += [tuple(np.shape(v)) for v in adapter.trainable_list(trainer.state.params)]
    return head + keras_order(trainer.optimizer, per_slot) + [
        () for _ in scalar_names(trainer.optimizer)]


def import_arrays(trainer, arrays):
    """Set the trainer's optimizer state from Keras's list (see export_arrays)."""
    names = slot_names(trainer.optimizer)
    state = trainer.state
    inject = _inject(state.opt_state)
    fixed = has_rate_variable(trainer.optimizer)
    steps = int(arrays[0])   # Keras's raw step count
    count = steps // (trainer.optimizer.gradient_accumulation_steps or 1)   # updates made
    lr = float(arrays[1]) if fixed else float(trainer.optimizer.learning_rate(steps))
    n_scalars, head = len(scalar_names(trainer.optimizer)), 2 if fixed else 1
    adapter = KerasState(trainer)
    averages = optimizers_lib.moving_average_state(state.opt_state)
    if averages is not None:   # use_ema: the averages come first (see export_arrays)
        average, head = _per_weight_tree(adapter, state, arrays, head, averages.average)
        new_averages = averages._replace(count=jnp.asarray(steps, averages.count.dtype),
                                         average=average)
    accumulation = optimizers_lib.accumulation_state(state.opt_state)
    if accumulation is not None:   # the summed gradients come next (see export_arrays)
        summed, head = _per_weight_tree(adapter, state, arrays, head,
                                        accumulation.summed_gradients)
        new_accumulation = accumulation._replace(
            count=jnp.asarray(steps, accumulation.count.dtype), summed_gradients=summed)
    per_var, scalars = arrays[head:len(arrays) - n_scalars], arrays[len(arrays) - n_scalars:]
    trees = []
    for name, values in zip(names, _per_slot(trainer.optimizer, per_var)):
        values = _keras_sign(trainer.optimizer, name, [jnp.asarray(v) for v in values], lr)
        if type(trainer.optimizer).__name__ == "SGD":
            values = [-v / lr for v in values]   # Keras's m = -lr * kilnet's trace
        trees.append(adapter.trainable_tree(state, values))
    inner = _with_slot_trees(trainer.optimizer, inject.inner_state, trees, count, scalars)
    new_inject = inject._replace(
        count=jnp.asarray(count, inject.count.dtype), inner_state=inner,
        hyperparams={**inject.hyperparams, "learning_rate": jnp.asarray(
            lr, inject.hyperparams["learning_rate"].dtype)})
    if getattr(inject, "hyperparams_states", None):
        # Optax runs a schedule on a step count of its own (WrappedScheduleState): it must
        # continue from Keras's step too, or the next update would use the first step's rate.
        new_inject = new_inject._replace(hyperparams_states={
            name: _at_step(schedule_state, count)
            for name, schedule_state in inject.hyperparams_states.items()})
    replaced = {id(inject): new_inject}
    if averages is not None:
        replaced[id(averages)] = new_averages
    if accumulation is not None:
        # The inner state sits inside the accumulation state: replace it there first.
        replaced = {id(accumulation): jax.tree.map(
            lambda s: replaced.get(id(s), s), new_accumulation,
            is_leaf=lambda s: id(s) in replaced), **replaced}
    opt_state = jax.tree.map(lambda s: replaced.get(id(s), s), state.opt_state,
                             is_leaf=lambda s: id(s) in replaced)
    trainer.state = state._replace(opt_state=opt_state)
    if fixed:
        trainer.optimizer.learning_rate = lr


def _at_step(schedule_state, count):
    if hasattr(schedule_state, "count") and hasattr(schedule_state, "_replace"):
        return schedule_state._replace(count=jnp.asarray(count, schedule_state.count.dtype))
    return schedule_state


def fresh_arrays(optimizer):
    """The variables Keras's optimizer holds before its first update (it makes its slots
    when built): the step count 0, then the learning rate unless a schedule gives it; None for
    an optimizer Keras does not have (an Optax transformation, a class of yours).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> [a.tolist() for a in _optimizer.fresh_arrays(kilnet.optimizers.Adam(0.5))]
        [0, 0.5]
    """
    name = type(optimizer).__name__
    if not isinstance(optimizer, optimizers_lib.Optimizer) or \
            optimizers_lib.OPTIMIZER_TYPES.get(name) is not type(optimizer):
        return None
    arrays = [np.asarray(0, np.int32)]
    if has_rate_variable(optimizer):
        arrays.append(np.asarray(float(optimizer.learning_rate), np.float32))
    return arrays


def keras_built(trainer) -> bool:
    """Whether Keras's optimizer would be built (hold its slots) where this compiled model's
    is: Keras builds it at its first update, so before that its files and load_weights know
    only the step count and learning rate. kilnet makes a state (of zeros) already at
    compile() of a built model, so its step count tells. An optimizer Keras lacks (its step
    count not where kilnet reads it) counts as built once its state exists."""
    if trainer.state is None:
        return False
    accumulation = optimizers_lib.accumulation_state(trainer.state.opt_state)
    return fresh_arrays(trainer.optimizer) is None or \
        optimizers_lib.step_count(trainer.state.opt_state) > 0 or \
        (accumulation is not None and int(accumulation.count) > 0)


def holds_more_once_built(optimizer) -> bool:
    """Whether Keras's optimizer makes variables when built (slots, use_ema's averages,
    Nadam's scalar), so that its variables before and after its first update differ in
    number; plain SGD keeps its step count and learning rate only."""
    return bool(slot_names(optimizer) or optimizer.use_ema or scalar_names(optimizer)
                or optimizer.gradient_accumulation_steps)


def has_rate_variable(optimizer) -> bool:
    """Whether Keras keeps the learning rate among the optimizer's variables: a number does; a
    schedule, computed from the step count, does not."""
    return not callable(optimizer.learning_rate)


# -- the compile configuration, kilnet -> Keras -------------------------------------------------
def keras_compile_config(trainer) -> dict:
    """Keras's `compile_config` for a kilnet Trainer; Unsupported for what Keras cannot
    express (an Optax transformation, a loss or metric of the user's, a schedule).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _optimizer
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(1)])
        >>> model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
        >>> config = _optimizer.keras_compile_config(model.compiled)
        >>> config["optimizer"]["class_name"], config["loss"], config["metrics"]
        ('SGD', 'mse', ['mae'])
    """
    optimizer = trainer.optimizer
    if not isinstance(optimizer, optimizers_lib.Optimizer):
        raise Unsupported("the optimizer is an Optax transformation, which Keras does not have")
    name = type(optimizer).__name__
    if optimizers_lib.OPTIMIZER_TYPES.get(name) is not type(optimizer):
        raise Unsupported(f"the optimizer {name} is not one of kilnet's (Keras's) optimizers")
    try:
        config = optimizer.get_config()
    except ValueError as error:
        raise Unsupported(str(error)) from None
    if callable(optimizer.learning_rate):
        schedule = config["learning_rate"]
        if schedule["class_name"] not in optimizers_lib.schedules.SCHEDULES:
            raise Unsupported(f"the learning-rate schedule {schedule['class_name']} is yours, "
                              "not one of Keras's")
        config["learning_rate"] = _entry("keras.optimizers.schedules", schedule["class_name"],
                                         schedule["config"])
    elif trainer.state is not None:
        config["learning_rate"] = optimizers_lib.get_learning_rate(trainer.state.opt_state)
    return {"optimizer": _entry("keras.optimizers", name, {"name": optimizer.name, **config}),
            "loss": _objects(_names_kept(getattr(trainer, "given_loss", None), trainer.loss),
                             losses_lib.LOSS_TYPES, "keras.losses", "loss"),
            "loss_weights": trainer.loss_weights,
            "metrics": _objects(trainer.metric_ids or None, metrics_lib.METRIC_TYPES,
                                "keras.metrics", "metric"),
            "weighted_metrics": _objects(trainer.weighted_metric_ids or None,
                                         metrics_lib.METRIC_TYPES, "keras.metrics", "metric"),
            **COMPILE_EXTRAS}


def _names_kept(given, resolved):
    """compile()'s loss with the names it was given kept where Keras reads them (Keras writes
    compile's arguments as given, and a loaded model's `loss` reads 'mse' again), and a
    registered function of yours as given (written by its name); the rest as the resolved
    Loss objects."""
    if isinstance(given, str):
        return resolved if given in losses_lib.NOT_KERAS_NAMES else given
    if inspect.isroutine(given) and (isinstance(resolved, losses_lib.LossFunctionWrapper)
                                     or _config.keras_function_entry(given) is not None):
        return given   # a function of yours by its registered name; kilnet's as Keras's
    if isinstance(given, dict) and isinstance(resolved, dict):
        return {k: _names_kept(given.get(k), v) for k, v in resolved.items()}
    if isinstance(given, (list, tuple)) and isinstance(resolved, (list, tuple)) \
            and len(given) == len(resolved):
        return [_names_kept(g, r) for g, r in zip(given, resolved)]
    return resolved


def _entry(module, class_name, config):
    return {"module": module, "class_name": class_name, "config": config,
            "registered_name": None}


def _objects(value, types, module, what):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return [_objects(v, types, module, what) for v in value]
    if isinstance(value, dict):
        return {k: _objects(v, types, module, what) for k, v in value.items()}
    if inspect.isroutine(value):   # kilnet's, as Keras writes its own; else yours, by its
        own = _config.keras_function_entry(value)   # registered name, as Keras
        if own is not None and _registry.name_of(value) is None:
            return own
        try:
            return _registry.function_entry(value, what)
        except ValueError as error:
            raise Unsupported(str(error)) from None
    name = type(value).__name__
    if types.get(name) is not type(value):
        raise Unsupported(f"the {what} {value!r:.80} is not one of Keras's {what} classes")
    try:
        return _entry(module, name, value.get_config())
    except (ValueError, NotImplementedError) as error:
        raise Unsupported(str(error)) from None


def warn_left_out(path, reason, stacklevel=4):
    """Warn that a Keras file holds the model without (part of) its training setup."""
    warnings.warn(f"{path}: {reason}; the Keras file keeps the architecture and weights, "
                  "save as .kilnet to keep everything.", stacklevel=stacklevel)
