"""Keras's list of optimizer variables, read from kilnet's Optax state and written back.

Keras keeps an optimizer's variables as one flat list: `iteration` (int32, every step taken),
`learning_rate` (float32; absent when a schedule gives the rate), with use_ema the weights'
moving averages (one per trained weight), with gradient_accumulation_steps the gradients summed
since the last update (one per trained weight), then each trained weight's slots (Adam's
momentum and velocity interleaved weight by weight), then the optimizer's own scalars (Nadam's
`u_product`). kilnet keeps Optax state trees shaped like the weights. `KerasLayout` maps one to
the other with jnp operations only, so the mapping runs inside `jax.jit`: it is what
`optimizer.variables` and `stateless_apply` show a training loop of yours, and what
kilnet.keras_files writes to and reads from Keras's files. It holds for the optimizers whose
update kilnet computes exactly as Keras does (SGD with or without momentum, Adam, AdamW, RMSprop
with or without momentum and centering, Adagrad, Nadam, Adamax, Adadelta, Lion, Lamb, Ftrl,
Adafactor); `slot_names` raises Unsupported for the others.

Where the two differ:
- Optax's step counts (the learning-rate holder's, Adam's own, a schedule's) all follow from
  Keras's one `iteration` (divided by gradient_accumulation_steps where it is set).
- kilnet's SGD keeps Optax's trace t (t <- g + momentum * t, step -lr * t); Keras keeps
  m <- momentum * m - lr * g, so m = -lr * t while the learning rate is constant (with a rate
  of 0 the trace cannot be recovered from m, and is read as 0).
- RMSprop's momentum: Optax's trace t <- -lr * g / sqrt(.) + momentum * t (the step is +t);
  Keras's m <- momentum * m + lr * g / sqrt(.) (the step is -m), so m = -t. Keras makes
  RMSprop's slots one kind at a time (all velocities, then momentums, then average gradients).
- Adafactor's slots are not shaped like the weights: a row and a column mean per weight of
  rank >= 2, int32 scalar placeholders for the others.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope
from kilnet.optimizers._accumulation import accumulation_state
from kilnet.optimizers._moving_average import moving_average_state
from kilnet.variables import Variable


class Unsupported(ValueError):
    """An optimizer state (or compile argument) with no exact Keras counterpart."""


# -- the optimizers' slots ---------------------------------------------------------------------
def slot_names(optimizer) -> list:
    """Keras's slot names per trainable variable for a kilnet optimizer, in Keras's order;
    Unsupported when kilnet's update is not Keras's or the slots are not one per name.

    Example:
        >>> import kilnet
        >>> from kilnet.optimizers import keras_variables
        >>> keras_variables.slot_names(kilnet.optimizers.Adam())
        ['momentum', 'velocity']
        >>> keras_variables.slot_names(kilnet.optimizers.SGD(momentum=0.0))
        []
    """
    name, hyper = type(optimizer).__name__, getattr(optimizer, "hyper", {})
    if name == "SGD":
        if hyper.get("momentum") and optimizer.uses_schedule:
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
        >>> from kilnet.optimizers import keras_variables
        >>> keras_variables.scalar_names(kilnet.optimizers.Nadam()), \\
        ...     keras_variables.scalar_names(kilnet.optimizers.Adam())
        (['u_product'], [])
    """
    return ["u_product"] if type(optimizer).__name__ == "Nadam" else []


def has_rate_variable(optimizer) -> bool:
    """Whether Keras keeps the learning rate among the optimizer's variables: a number does; a
    schedule, computed from the step count, does not.

    Example:
        >>> import kilnet
        >>> from kilnet.optimizers import keras_variables
        >>> keras_variables.has_rate_variable(kilnet.optimizers.SGD(0.1))
        True
    """
    return not optimizer.uses_schedule


def keras_order(optimizer, per_slot) -> list:
    """The slots' values ([a list per slot name, each over the variables]) as one list in
    Keras's order (see _slot_groups).

    Example:
        >>> import kilnet
        >>> from kilnet.optimizers import keras_variables
        >>> adam = kilnet.optimizers.Adam(amsgrad=True)
        >>> keras_variables.keras_order(adam, [["m1", "m2"], ["v1", "v2"], ["h1", "h2"]])
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
        inner = inner._replace(count=jnp.asarray(count, inner.count.dtype),
                               mu=_like(trees[0], inner.mu), nu=_like(trees[1], inner.nu),
                               **({"nu_hat": _like(trees[2], inner.nu_hat)}
                                  if len(trees) > 2 else {}))
        if name == "Nadam":
            inner = inner._replace(u_product=jnp.asarray(scalars[0], inner.u_product.dtype))
        return inner
    if not trees:
        return inner
    if name in KERAS_SLOTS:
        first = inner[0]._replace(**{field: _like(tree, getattr(inner[0], field))
                                     for field, tree in zip(KERAS_SLOTS[name].values(), trees)})
        if "count" in first._fields:   # Adamax's, Lion's, Lamb's, Adafactor's own step count
            first = first._replace(count=jnp.asarray(count, first.count.dtype))
        return (first,) + tuple(inner[1:])
    if name == "RMSprop":
        slots = dict(zip(slot_names(optimizer), trees))
        scale = inner[0]._replace(nu=_like(slots["velocity"], inner[0].nu), **(
            {"mu": _like(slots["average_gradient"], inner[0].mu)}
            if "average_gradient" in slots else {}))
        trace = inner[2]._replace(trace=_like(slots["momentum"], inner[2].trace)) \
            if "momentum" in slots else inner[2]
        return (scale,) + tuple(inner[1:2]) + (trace,) + tuple(inner[3:])
    field = {"SGD": "trace", "Adagrad": "sum_of_squares"}[name]
    return (inner[0]._replace(**{field: _like(trees[0], getattr(inner[0], field))}),) \
        + tuple(inner[1:])


def _like(tree, old):
    """`tree` in the dtypes of `old`, the state it replaces: a file's slots come as float32,
    Adafactor's placeholders are int32 in both libraries, and a changed dtype would retrace."""
    return jax.tree.map(lambda new, was: jnp.asarray(new, was.dtype), tree, old)


def _keras_slot(optimizer, slot, values, lr) -> list:
    """Keras's value of a slot from kilnet's, where the conventions differ (see the module's
    docstring): SGD's m = -lr * trace; RMSprop's momentum = -trace."""
    name = type(optimizer).__name__
    if slot == "momentum" and name == "SGD":
        return [-lr * v for v in values]
    if slot == "momentum" and name == "RMSprop":
        return [-v for v in values]
    return values


def _kilnet_slot(optimizer, slot, values, lr) -> list:
    """_keras_slot's inverse; SGD's trace is read as 0 where the rate is 0 (-m / lr has no
    value there)."""
    name = type(optimizer).__name__
    if slot == "momentum" and name == "SGD":
        return [jnp.where(lr != 0, -v / jnp.where(lr != 0, lr, 1), 0) for v in values]
    if slot == "momentum" and name == "RMSprop":
        return [-v for v in values]
    return values


def _at_step(schedule_state, count):
    if hasattr(schedule_state, "count") and hasattr(schedule_state, "_replace"):
        return schedule_state._replace(count=jnp.asarray(count, schedule_state.count.dtype))
    return schedule_state


def _replaced(opt_state, replacements: dict):
    """`opt_state` with the sub-states in `replacements` ({id(old): new}) in their places,
    the outer ones after those inside them (an accumulation state holds the inner state)."""
    return jax.tree.map(lambda s: replacements.get(id(s), s), opt_state,
                        is_leaf=lambda s: id(s) in replacements)


class KerasLayout:
    """Keras's optimizer variables for a kilnet optimizer (see the module's docstring): a list
    read from an Optax state (`values`), an Optax state written from such a list (`state`),
    and the list as Variables named as Keras names them (`variables`).

    Args:
        optimizer: one of kilnet.optimizers' classes (slot_names raises Unsupported for the
            others).
        weights: the trained Variables, in the order the optimizer updates them (Keras names
            the slots after their paths).
        listed: a params-shaped tree of the state -> its leaves in that order.
        with_listed: (a params-shaped tree, values in that order) -> the tree holding them.

    Example:
        >>> import kilnet
        >>> from kilnet.optimizers import keras_variables
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2, name="d")])
        >>> adam = kilnet.optimizers.Adam(0.5, name="adam")
        >>> layout = keras_variables.KerasLayout(adam, model.trainable_variables, list,
        ...                                      lambda tree, values: list(values))
        >>> state = adam.transformation().init([v.value for v in model.trainable_variables])
        >>> [(v.path, v.shape) for v in layout.variables(layout.values(state))][:3]
        [('adam/iteration', ()), ('adam/learning_rate', ()), ('adam/sequential_d_kernel_momentum', (3, 2))]
    """

    def __init__(self, optimizer, weights, listed, with_listed):
        self.slots = slot_names(optimizer)   # Unsupported for an optimizer Keras lacks
        self.optimizer, self.weights = optimizer, list(weights)
        self.listed, self.with_listed = listed, with_listed

    def values(self, opt_state) -> list:
        """Keras's list from an Optax state (jnp arrays; traceable)."""
        optimizer = self.optimizer
        inject = _inject(opt_state)
        lr = inject.hyperparams["learning_rate"]
        accumulation = accumulation_state(opt_state)
        steps = inject.count if accumulation is None else accumulation.count
        values = [jnp.asarray(steps, jnp.int32)] + (
            [jnp.asarray(lr, jnp.float32)] if has_rate_variable(optimizer) else [])
        averages = moving_average_state(opt_state)
        if averages is not None:   # use_ema: Keras makes the averages first
            values += self.listed(averages.average)
        if accumulation is not None:   # then the gradient accumulators
            values += self.listed(accumulation.summed_gradients)
        per_slot = [_keras_slot(optimizer, slot, self.listed(tree), lr) for slot, tree in
                    zip(self.slots, _slot_trees(optimizer, inject.inner_state))]
        return values + keras_order(optimizer, per_slot) + [
            getattr(inject.inner_state, name) for name in scalar_names(optimizer)]

    def state(self, opt_state, values):
        """`opt_state` (the template: its structure and dtypes) holding Keras's list `values`
        (traceable). A schedule's rate is left as the template holds it: the update computes
        it from the step count."""
        values = list(values)
        steps = jnp.asarray(values[0]).astype(jnp.int32)   # Keras's raw step count
        head, replacements = (2 if has_rate_variable(self.optimizer) else 1), {}
        averages = moving_average_state(opt_state)
        if averages is not None:   # use_ema's averages come first (see values)
            average, head = self._per_weight(averages.average, values, head)
            replacements[id(averages)] = averages._replace(
                count=jnp.asarray(steps, averages.count.dtype), average=average)
        accumulation = accumulation_state(opt_state)
        if accumulation is not None:   # then the gradient accumulators
            summed, head = self._per_weight(accumulation.summed_gradients, values, head)
        inject = _inject(opt_state)
        replacements[id(inject)] = self._inject_state(inject, steps, values, head)
        if accumulation is not None:   # it holds the inner state: replace inside it first
            replacements[id(accumulation)] = _replaced(accumulation._replace(
                count=jnp.asarray(steps, accumulation.count.dtype), summed_gradients=summed),
                replacements)
        return _replaced(opt_state, replacements)

    def _per_weight(self, template, values, head) -> tuple:
        """(values[head:] up to one per weight, as a tree like `template`, the position after
        them)."""
        end = head + len(self.weights)
        return _like(self.with_listed(template, values[head:end]), template), end

    def _inject_state(self, inject, steps, values, head):
        """The learning-rate holder's state with Keras's step count, rate (values[1] unless a
        schedule gives it), slots (values[head:], then the optimizer's own scalars)."""
        optimizer = self.optimizer
        count = steps // (optimizer.gradient_accumulation_steps or 1)   # updates made
        lr = jnp.asarray(values[1], jnp.float32) if has_rate_variable(optimizer) else \
            inject.hyperparams["learning_rate"]
        end = len(values) - len(scalar_names(optimizer))
        trees = [self.with_listed(tree, _kilnet_slot(optimizer, slot, per_weight, lr))
                 for slot, per_weight, tree in zip(
                     self.slots, _per_slot(optimizer, values[head:end]),
                     _slot_trees(optimizer, inject.inner_state))]
        inner = _with_slot_trees(optimizer, inject.inner_state, trees, count, values[end:])
        new_inject = inject._replace(
            count=jnp.asarray(count, inject.count.dtype), inner_state=inner,
            hyperparams={**inject.hyperparams, "learning_rate": jnp.asarray(
                lr, inject.hyperparams["learning_rate"].dtype)})
        if getattr(inject, "hyperparams_states", None):
            # Optax runs a schedule on a step count of its own (WrappedScheduleState): it
            # continues from Keras's step too, or the next update would use another step's rate
            new_inject = new_inject._replace(hyperparams_states={
                name: _at_step(schedule_state, count)
                for name, schedule_state in inject.hyperparams_states.items()})
        return new_inject

    def names(self, prefix=None) -> list:
        """(name, path) of each variable of Keras's list, as Keras names them ("iteration",
        "adam/iteration"), `prefix` the optimizer's name by default. Keras names Adafactor's
        factored means after the weight ("kernel") and leaves its int32 placeholders and
        Nadam's u_product ("variable") outside the optimizer's scope."""
        optimizer = self.optimizer
        prefix = optimizer.name if prefix is None else prefix
        keys = [_key(w, i) for i, w in enumerate(self.weights)]
        names = ["iteration"] + (["learning_rate"] if has_rate_variable(optimizer) else [])
        if optimizer.use_ema:
            names += [f"{key}_average" for key in keys]
        if optimizer.gradient_accumulation_steps:
            names += [f"{key}_gradient_accumulator" for key in keys]
        scoped = [(name, f"{prefix}/{name}") for name in names]
        per_slot = [[self._slot_name(prefix, w, key, slot) for w, key in zip(self.weights, keys)]
                    for slot in self.slots]
        return scoped + keras_order(optimizer, per_slot) + [
            ("variable", "variable") for _ in scalar_names(optimizer)]

    def _slot_name(self, prefix, weight, key, slot):
        if type(self.optimizer).__name__ == "Adafactor" and slot in ("r", "c"):
            name = getattr(weight, "name", key)
            return (name, f"{prefix}/{name}") if len(weight.shape) >= 2 else (name, name)
        return f"{key}_{slot}", f"{prefix}/{key}_{slot}"

    def variables(self, values) -> list:
        """`values` (Keras's list) as Variables named and pathed as Keras's. Keras makes
        Nadam's u_product trainable (outside its optimizer's variable factory); so does this.
        """
        scalars_from = len(values) - len(scalar_names(self.optimizer))
        return [named_variable(value, name, path, trainable=i >= scalars_from)
                for i, (value, (name, path)) in enumerate(zip(values, self.names()))]


class OptaxLeaves:
    """The list of an optimizer Keras has no layout for (an Optax transformation, a
    LossScaleOptimizer, a subclass of yours with its own update): the Optax state's leaves in
    Optax's order, named `<optimizer>_state_<i>`.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> layout = OptaxLeaves("sgd")
        >>> state = optax.sgd(0.1, momentum=0.9).init([jnp.zeros(2)])
        >>> [v.name for v in layout.variables(layout.values(state))]
        ['sgd_state_0']
    """

    def __init__(self, name):
        self.name = name

    def values(self, opt_state) -> list:
        """The state's leaves."""
        return jax.tree.leaves(opt_state)

    def state(self, opt_state, values):
        """`values` in the structure of `opt_state`."""
        return jax.tree.unflatten(jax.tree.structure(opt_state), list(values))

    def variables(self, values) -> list:
        """`values` as Variables."""
        return [named_variable(value, f"{self.name}_state_{i}")
                for i, value in enumerate(values)]


def _key(weight, index) -> str:
    """Keras's name of a weight inside its slots' names: its path with '_' for '/'."""
    path = getattr(weight, "path", None) or f"variable_{index}"
    return path.replace("/", "_")


def named_variable(value, name, path=None, trainable=False) -> Variable:
    """An optimizer variable holding `value`, its dtype kept, named `name`, its path `path`
    (default: the name) as Keras's optimizer variables are pathed ("adam/iteration").

    Example:
        >>> import numpy as np
        >>> v = named_variable(np.int32(3), "iteration", "adam/iteration")
        >>> v.name, v.path, str(v.dtype)
        ('iteration', 'adam/iteration', 'int32')
    """
    scope, _, own = (path or name).rpartition("/")
    if own != name:
        raise ValueError(f"An optimizer variable's path ends with its name. Received: "
                         f"name={name!r}, path={path!r}")
    dtype = value.dtype if hasattr(value, "dtype") else np.asarray(value).dtype
    # made outside any layer, under the optimizer's name alone (Keras's name scope)
    with _scope.weights_owned_by_none(), _scope.weights_named(scope or None):
        return Variable(value, name=name, trainable=trainable, dtype=dtype)


def layout_for(optimizer, weights, listed, with_listed):
    """The list `optimizer.variables` shows for `optimizer`: Keras's (KerasLayout) where Keras
    has the optimizer, else the Optax state's leaves (OptaxLeaves). Arguments as KerasLayout's.

    Example:
        >>> import kilnet
        >>> from kilnet.optimizers import keras_variables
        >>> same = lambda tree, values: list(values)
        >>> type(layout_for(kilnet.optimizers.Lion(), [], list, same)).__name__
        'KerasLayout'
        >>> import optax
        >>> type(layout_for(optax.sgd(0.1), [], list, same)).__name__
        'OptaxLeaves'
    """
    try:
        return KerasLayout(optimizer, weights, listed, with_listed)
    except Unsupported:
        return OptaxLeaves(getattr(optimizer, "name", "optimizer"))
