"""The scope a layer's `call` runs in: which array each Variable stands for, the random key,
the losses `add_loss` collects. A leaf module: of kilnet it imports only kilnet._tree, another
leaf.

Why it exists: Keras-style layers read their weights as attributes (`self.kernel`) and draw
randomness from a `SeedGenerator`, while everything compiled must be a pure function of the
training state. Layer.apply opens a scope that binds each Variable to the array passed in
(traced inside the compiled programs, concrete when called eagerly), so the same `call`
runs both ways; values written with `variable.assign` inside the scope are collected as the
new non-trainable state instead of mutating anything (an eager call also keeps its trainable
writes, in `kept_writes`, and stores them when it ends).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp

from kilnet import _tree

_local = threading.local()


@dataclass
class Scope:
    """One level of `apply`: bindings for variables, randomness and collected losses."""

    bindings: dict = field(default_factory=dict)     # id(Variable) -> array
    assigned: dict = field(default_factory=dict)     # id(Variable) -> new array (assign())
    training: bool = False
    rng: Any = None                                  # a JAX key, or None (no randomness)
    sample_mask: Any = None                          # real samples (True) vs batch padding
    losses: list = field(default_factory=list)       # add_loss() values, in call order
    draws: int = 0                                   # keys handed out so far
    # Sub-layers called inside this call(): id(layer) -> [params, state] (state updated in place)
    layers: dict = field(default_factory=dict)
    # Those sub-layers themselves, so that a call() reading or assigning a sub-layer's weight
    # before calling it (keras.io's PixelCNN masks its convolution's kernel) goes through
    # their [params, state] above; `sub_index` is built on the first such access.
    sublayers: list = field(default_factory=list)
    sub_index: Any = None
    # While building: a NumPy Generator for weights made by add_weight and for sub-layers
    # built on their first call (None when not building).
    init_rng: Any = None
    parent: "Scope | None" = None
    # Keys of the terms add_loss_once has collected under this (outermost) scope.
    once: set = field(default_factory=set)
    # One iteration of a traced loop (a recurrent layer's step, kilnet.layers.RNN): its
    # losses are values of the loop's trace, so they stay here for the loop to return, and
    # the once-a-step terms (weight penalties) are kept apart in once_losses.
    loop: bool = False
    once_losses: list = field(default_factory=list)
    # Whether weight penalties join `losses`: not in an eager call, whose layer.losses
    # computes them from the current weights when read (as Keras's).
    collect_penalties: bool = True
    # Whether a random layer given no key and no bound SeedGenerator state draws a fresh key
    # made on the host (an eager stateless_call; under a trace it would be a constant).
    host_keys: bool = False
    # An eager call (`layer(x)` on arrays): a random layer given no key (a layer called with
    # training=True in a call that infers) draws from its own SeedGenerator's stored state,
    # which advances, as Keras's layers draw.
    eager: bool = False
    # Whether `training` was said: by the caller, an outer call or a call signature's
    # default. An eager call that says none (Keras's None) lets each inner layer take its
    # own call's default, as Keras resolves it.
    training_given: bool = True
    # A metric's update_state or result (kilnet.metrics): nothing computed there trains, as
    # Keras's metrics train nothing, so a layer it calls (keras.io's KID metric keeps an
    # InceptionV3 encoder) runs on its weights as they are.
    trains_nothing: bool = False
    # An eager call's writes to trainable Variables: id(Variable) -> (Variable, value),
    # shared by the scopes of the calls it runs (kept_writes_here) and stored when it ends,
    # as Keras's eager assign stores them. None elsewhere: a building run, a compiled step
    # and stateless_call return only the non-trainable state, as Keras's do.
    kept_writes: dict | None = None


def _thread_list(name: str) -> list:
    """This thread's list called `name` (each thread traces its own calls)."""
    found = getattr(_local, name, None)
    if found is None:
        found = []
        setattr(_local, name, found)
    return found


@contextlib.contextmanager
def _thread_value(name: str, value):
    """This thread's `name` is `value` for the block, then what it was before."""
    before = getattr(_local, name, None)
    setattr(_local, name, value)
    try:
        yield
    finally:
        setattr(_local, name, before)


def _stack() -> list:
    return _thread_list("stack")


def current() -> Scope | None:
    """The innermost active scope, or None outside any apply."""
    stack = _stack()
    return stack[-1] if stack else None


@contextlib.contextmanager
def opened(scope: Scope):
    """Make `scope` current for the duration of the block (nested scopes see their parents'
    bindings through `lookup`)."""
    scope.parent = current()
    _stack().append(scope)
    try:
        yield scope
    finally:
        _stack().pop()
        if scope.parent is not None and not scope.loop:  # losses flow out to the caller
            scope.parent.losses.extend(scope.losses)


def _owners() -> list:
    return _thread_list("owners")


@contextlib.contextmanager
def weights_owned_by(owner):
    """Variables made in this block belong under `owner` (a layer): their `path` starts with
    the names of the layers building them, outermost first, as Keras's name scopes make it
    ("sequential/dense/kernel"). A layer already innermost is not named twice."""
    owners = _owners()
    pushed = not owners or owners[-1][0] is not owner
    if pushed:
        owners.append((owner, owner.name))
    try:
        yield
    finally:
        if pushed:
            owners.pop()


@contextlib.contextmanager
def weights_owned_by_none():
    """Variables made in this block have paths of their own layers only, whatever layers are
    building around it: a functional model's layers, which Keras builds when the graph is
    made, outside any model ("dense/kernel", also for a network held by a model of yours)."""
    owners = _owners()
    outer = owners[:]
    owners.clear()
    try:
        yield
    finally:
        owners[:] = outer


@contextlib.contextmanager
def weights_named(name):
    """Variables made in this block have `name` after their owners' in their path (None: no
    segment): a recurrent layer's cell, as Keras names it ("lstm/lstm_cell/kernel")."""
    owners = _owners()
    if name is not None:
        owners.append((None, name))
    try:
        yield
    finally:
        if name is not None:
            owners.pop()


def weight_path(name: str) -> str:
    """The path of a Variable named `name` made now (see weights_owned_by)."""
    return "/".join([owner_name for _, owner_name in _owners()] + [name])


def lookup(variable) -> Any:
    """The array bound to `variable` in the active scopes (innermost first), or None: its
    binding, its assigned value, or its value in the [params, state] of a sub-layer the
    scope's call runs."""
    scope, key = current(), id(variable)
    kept = scope.kept_writes if scope is not None else None
    while scope is not None:
        if key in scope.assigned:
            return scope.assigned[key]
        if kept and key in kept:   # written by an earlier call of the same eager call
            return kept[key][1]
        if key in scope.bindings:
            return scope.bindings[key]
        found = _in_sublayer(scope, key)
        if found is not None:
            return found[3]
        scope = scope.parent
    return None


def record_assign(variable, value) -> bool:
    """Inside a scope that binds `variable` (or runs the sub-layer that owns it), remember
    `value` as its new value: True; the sub-layer's call then reads it. Outside any such
    scope: False (the caller stores the value itself)."""
    scope, key = current(), id(variable)
    while scope is not None:
        if key in scope.bindings or key in scope.assigned:
            scope.assigned[key] = value
            _keep_write(scope, variable, value)
            return True
        found = _in_sublayer(scope, key)
        if found is not None:
            entry, slot, path, _ = found
            entry[slot] = _tree.replace_path(entry[slot], path, value)
            _keep_write(scope, variable, value)
            return True
        scope = scope.parent
    return False


def _keep_write(scope, variable, value) -> None:
    """Note a trainable Variable's new value in the eager call `scope` runs in, to be stored
    when the call ends (the non-trainable ones come back as the call's new state). A traced
    value (a jax.jit or loop inside the call) cannot outlive its trace: not kept."""
    if scope.kept_writes is None or not variable.trainable:
        return
    import jax  # kept local so the module stays a leaf of kilnet

    if not isinstance(value, jax.core.Tracer):
        scope.kept_writes[id(variable)] = (variable, value)


def kept_writes_here():
    """The kept_writes of the innermost scope: what a call's own scope (Layer.apply) shares,
    so that the writes of the calls an eager call runs are kept, and a building run's are
    not (its scope has none).

    Example:
        >>> kept = {}
        >>> with opened(Scope(kept_writes=kept)):
        ...     kept_writes_here() is kept
        True
        >>> kept_writes_here() is None
        True
    """
    scope = current()
    return scope.kept_writes if scope is not None else None


def _in_sublayer(scope, key):
    """(entry, 0 for params or 1 for state, path, current value) of the Variable with id `key`
    if a sub-layer of the scope's call owns it, else None."""
    if not scope.sublayers:
        return None
    if scope.sub_index is None:
        index = {}
        for sub in scope.sublayers:
            entry = scope.layers.get(id(sub))
            for path, kind, variable in ([] if entry is None else sub.variable_paths()):
                index.setdefault(id(variable),
                                 (entry, 0 if kind == "params" else 1, tuple(path)))
        scope.sub_index = index
    found = scope.sub_index.get(key)
    if found is None:
        return None
    entry, slot, path = found
    try:
        return entry, slot, path, _tree.get_path(entry[slot], path)
    except (KeyError, TypeError, IndexError):   # a sub-layer not built yet: no weights there
        return None


def next_rng():
    """A fresh JAX key derived from the innermost scope that has one, or None: each call
    gives a different key, the same sequence every time the step is traced."""
    import jax  # the only dependency, kept local so the module stays a leaf of kilnet

    scope = current()
    while scope is not None and scope.rng is None:
        scope = scope.parent
    if scope is None:
        return None
    scope.draws += 1
    return jax.random.fold_in(scope.rng, scope.draws)


def host_keys() -> bool:
    """Whether an enclosing scope lets a random layer with no key draw a fresh host key."""
    scope = current()
    while scope is not None and not scope.host_keys:
        scope = scope.parent
    return scope is not None


@contextlib.contextmanager
def seed_generator_draws():
    """While a layer runs as a host call for a TensorFlow pipeline (tf.data's map): an eager
    call in training leaves its random layers without a key, so each draws from its own
    SeedGenerator, which advances, as Keras's layers draw there (a call with no generator
    takes a fresh host key). The draws then follow each layer's seed, not the order in which
    tf.data's threads and the main thread take global seeds.

    Example:
        >>> with seed_generator_draws():
        ...     draws_from_seed_generators()
        True
        >>> draws_from_seed_generators()
        False
    """
    with _thread_value("seed_generator_draws", True):
        yield


def draws_from_seed_generators() -> bool:
    """Whether this thread's eager calls draw from their layers' SeedGenerators
    (`seed_generator_draws`)."""
    return bool(getattr(_local, "seed_generator_draws", False))


def in_eager_call() -> bool:
    """Whether an enclosing scope is an eager call's (Scope.eager).

    Example:
        >>> with opened(Scope(eager=True)), opened(Scope()):
        ...     in_eager_call()
        True
        >>> in_eager_call()
        False
    """
    scope = current()
    while scope is not None and not scope.eager:
        scope = scope.parent
    return scope is not None


class SeedStatesNeeded(Exception):
    """A random draw with no key and no bound SeedGenerator state, met while an inference
    program is traced for the first time (`probing_draws`): the program is to be traced
    again with the model's seed states bound (kilnet.trainer)."""


@contextlib.contextmanager
def probing_draws():
    """While an inference program (evaluate, predict) is first traced without the model's
    SeedGenerator states: a draw that would need one raises SeedStatesNeeded
    (`unkeyed_draw`), so that only models that draw at inference get programs carrying
    the states.

    Example:
        >>> unkeyed_draw()   # outside a probe: nothing happens
        >>> with probing_draws():
        ...     try:
        ...         unkeyed_draw()
        ...     except SeedStatesNeeded:
        ...         print("traced again with the states")
        traced again with the states
    """
    with _thread_value("probing_draws", True):
        yield


def unkeyed_draw() -> None:
    """Called by a random draw that finds no key and no bound SeedGenerator state: raises
    SeedStatesNeeded inside `probing_draws`, else returns (the caller decides)."""
    if getattr(_local, "probing_draws", False):
        raise SeedStatesNeeded("a random draw needs the model's SeedGenerator states")


def add_loss(value) -> bool:
    """Collect a loss term in the innermost scope: True, or False outside any scope."""
    scope = current()
    if scope is None:
        return False
    scope.losses.append(value)
    return True


def add_loss_once(key, value) -> bool:
    """Collect a loss term once per outermost scope (one training step) for `key`: a weight's
    penalty, which Keras counts once a step however many times its layer is called. True, or
    False outside any scope."""
    scope = current()
    if scope is None:
        return False
    root, loop = scope, None
    while True:
        if loop is None and root.loop:
            loop = root
        if root.parent is None:
            break
        root = root.parent
    if not root.collect_penalties:
        return True
    if key not in root.once:
        root.once.add(key)
        # Inside a loop's iteration the term is a value of the loop's trace: the loop returns
        # it (from any one iteration, the weights being the same in all).
        (scope.losses if loop is None else loop.once_losses).append(value)
    return True


def layer_entry(layer):
    """[params, state] of `layer` where an enclosing call() provides them, or None."""
    scope, key = current(), id(layer)
    while scope is not None:
        if key in scope.layers:
            return scope.layers[key]
        scope = scope.parent
    return None


def trains_nothing() -> bool:
    """Whether the code running now is inside a metric's update_state or result (a scope
    opened with `trains_nothing`, at any depth), where no weight trains."""
    scope = current()
    while scope is not None and not scope.trains_nothing:
        scope = scope.parent
    return scope is not None


def init_rng():
    """The NumPy Generator of the innermost building scope, or None."""
    scope = current()
    while scope is not None and scope.init_rng is None:
        scope = scope.parent
    return None if scope is None else scope.init_rng


def sample_mask():
    """The real samples (True) of the batch being computed, from the innermost scope that
    knows them, or None."""
    scope = current()
    while scope is not None and scope.sample_mask is None:
        scope = scope.parent
    return None if scope is None else scope.sample_mask


def mean_over_real_samples(values):
    """The mean of per-sample `values` over the batch's real samples (sample_mask): the
    padding of a last partial batch does not count (kilnet pads it; Keras's last batch is
    smaller).

    Example:
        >>> import numpy as np
        >>> scope = Scope(sample_mask=np.array([True, True, False]))
        >>> with opened(scope):
        ...     float(mean_over_real_samples(np.array([1.0, 3.0, 100.0])))
        2.0
    """
    mask = sample_mask()
    if mask is None or mask.shape != values.shape[:1]:
        return jnp.mean(values)
    real = mask.astype(jnp.float32)
    return jnp.sum(values * real) / jnp.maximum(jnp.sum(real), 1.0)


def rows_mask(sample_mask, x):
    """The batch's sample mask for `x` when x's first axis is the batch's (its rows are the
    samples), else None: a tensor of other rows (keras.io's graph network runs
    BatchNormalization on the node-feature table its model holds, then takes the batch's
    nodes) has no padded samples to leave out."""
    if sample_mask is None or getattr(x, "ndim", 0) == 0 or x.shape[0] != sample_mask.shape[0]:
        return None
    return sample_mask


@contextlib.contextmanager
def running_call(layer):
    """While `layer`'s call() runs in this thread: a call of the layer inside it is its own
    (`in_own_call`)."""
    running = _thread_list("running_calls")
    running.append(id(layer))
    try:
        yield
    finally:
        running.pop()


def in_own_call(layer) -> bool:
    """Whether `layer` is called inside its own call() (a model calling itself on other
    inputs), in this thread."""
    return id(layer) in _thread_list("running_calls")


@contextlib.contextmanager
def shapes_only():
    """While a call is traced for its output shapes and dtypes only (a symbolic call, the
    trace that builds a layer): random draws leave their SeedGenerator states as they are,
    as Keras's symbolic calls do, and value checks are skipped (`checkable_values`)."""
    _local.shape_traces = getattr(_local, "shape_traces", 0) + 1
    try:
        yield
    finally:
        _local.shape_traces -= 1


def tracing_shapes_only() -> bool:
    """Whether a call is being traced for its shapes only (`shapes_only`), in this thread."""
    return getattr(_local, "shape_traces", 0) > 0


def checkable_values(value) -> bool:
    """Whether a value check (an Embedding's id range, a failed Cholesky) may read `value`:
    it holds concrete numbers, not a JAX trace's, and no call is being traced for its shapes
    only. During such a trace concrete arrays come from the lengths the trace picks for an
    axis of unknown length (`ops.arange(ops.shape(x)[-1])`), not from your data; Keras
    checks no values at build.

    Example:
        >>> import numpy as np
        >>> checkable_values(np.array([1, 2]))
        True
        >>> with shapes_only():
        ...     checkable_values(np.array([1, 2]))
        False
    """
    return not tracing_shapes_only() and not isinstance(value, jax.core.Tracer)


def training_flag(default=False) -> bool:
    scope = current()
    return default if scope is None else scope.training


def outer_training():
    """The training flag of the call running now, or None where none is running or it was
    given none (an inner layer then takes its own call's default)."""
    scope = current()
    return scope.training if scope is not None and scope.training_given else None


@contextlib.contextmanager
def output_layouts(lay_out):
    """While a program is traced for several devices: `lay_out(path, value)` gives each
    layer's output the layout its distribution names for it (kilnet.distribution)."""
    with _thread_value("lay_out", lay_out):
        yield


def laid_out(path, value):
    """A layer's output with the layout of the program being traced (`output_layouts`), or
    unchanged: outside such a trace, or for a layer not built yet (no path)."""
    lay_out = getattr(_local, "lay_out", None)
    return value if lay_out is None or path is None else lay_out(path, value)
