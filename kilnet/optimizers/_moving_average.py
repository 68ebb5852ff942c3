"""Keras's `use_ema` as the last Optax stage of an optimizer: a moving average of the trained
weights kept in the optimizer state, which fit leaves in the model at its end
(finalize_weights) and SwapEMAWeights swaps in for an evaluation (swap_moving_average).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

class MovingAverageState(NamedTuple):
    """The optimizer's moving average of the trained weights (Keras's `use_ema`): the updates
    applied so far (Keras's iterations) and the average, a tree shaped like the params."""

    count: jax.Array
    average: Any


def moving_average_of_weights(momentum=0.99, overwrite_frequency=None, steps_per_update=1):
    """Keras's `use_ema` as the last Optax stage of an optimizer: after each update, with w the
    updated weights, average <- m * average + (1 - m) * w, where m is `momentum` except at the
    first update (0: the average starts at the weights); every `overwrite_frequency` updates
    (None: never) the weights themselves are set to the average. Optax's `ema` averages the
    updates, not the weights, so this is written out. With gradient accumulation Keras
    averages at every step but counts updates (`steps_per_update` steps each) for the first
    update and the overwrite frequency.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = moving_average_of_weights(0.5)
        >>> params = {"w": jnp.array([1.0])}
        >>> _, state = tx.update({"w": jnp.array([1.0])}, tx.init(params), params)   # w: 2
        >>> _, state = tx.update({"w": jnp.array([2.0])}, state, {"w": jnp.array([2.0])})
        >>> float(state.average["w"][0])   # 0.5 * 2 + 0.5 * 4
        3.0
    """

    def init(params):
        return MovingAverageState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("use_ema needs the parameters to average them.")
        weights = optax.apply_updates(params, updates)
        updates_made = state.count // steps_per_update
        m = jnp.where(updates_made == 0, 0.0, momentum)
        average = jax.tree.map(lambda a, w: m * a + (1 - m) * w, state.average, weights)
        if overwrite_frequency:
            overwrite = (updates_made + 1) % overwrite_frequency == 0
            updates = jax.tree.map(lambda u, a, p: jnp.where(overwrite, a - p, u), updates,
                                   average, params)
        return updates, MovingAverageState(state.count + 1, average)

    return optax.GradientTransformation(init, update)


def moving_average_state(opt_state):
    """The MovingAverageState inside an optimizer state (use_ema=True), or None."""
    is_average = lambda s: isinstance(s, MovingAverageState)
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_average) if is_average(s)]
    return found[0] if len(found) == 1 else None


def swap_moving_average(params, opt_state):
    """(the averaged weights, the state holding the weights instead of the average): what
    SwapEMAWeights does before and after an evaluation (a second swap undoes the first).
    Copies: a compiled step donates the state's buffers, and a buffer held twice cannot be.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = moving_average_of_weights()
        >>> params = {"w": jnp.array([1.0])}
        >>> _, state = tx.update({"w": jnp.array([1.0])}, tx.init(params), params)
        >>> swapped, state = swap_moving_average({"w": jnp.array([5.0])}, state)
        >>> float(swapped["w"][0]), float(state.average["w"][0])
        (2.0, 5.0)
    """
    found = moving_average_state(opt_state)
    if found is None:
        raise ValueError("This model's optimizer keeps no moving average of the weights: "
                         "compile with an optimizer made with use_ema=True, e.g. "
                         "kilnet.optimizers.SGD(use_ema=True). Received: an optimizer state "
                         "without one")
    copy = lambda tree: jax.tree.map(jnp.copy, tree)
    swapped = found._replace(average=copy(params))
    opt_state = jax.tree.map(lambda s: swapped if s is found else s, opt_state,
                             is_leaf=lambda s: s is found)
    return copy(found.average), opt_state


def finalize_weights(params, opt_state):
    """The weights a fit ends with, as Keras's finalize_variable_values: the moving average
    where the optimizer keeps one (use_ema=True), else `params` unchanged."""
    found = moving_average_state(opt_state)
    return params if found is None else jax.tree.map(jnp.copy, found.average)
