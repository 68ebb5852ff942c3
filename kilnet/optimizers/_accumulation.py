"""Keras's `gradient_accumulation_steps` as an Optax stage around an optimizer's update.

Keras sums the gradients of N - 1 steps, and at every N-th step updates with
(g + sum) / N (clipping and weight decay act on that mean) and zeroes the sum; the steps in
between leave the weights and the optimizer's slots as they were. optax.MultiSteps trains as
closely to Keras (both within 1e-7 of Keras's weights after 10 updates), but it keeps a running
mean (acc + (g - acc) / k) where Keras keeps the sum: a .keras file's `gradient_accumulator`
variables would need a rescaling each way, which rounds. This stage keeps Keras's sum and its
raw step count, so the state maps to Keras's variables as it is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AccumulationState(NamedTuple):
    """The steps taken (Keras's raw `_iterations`), the gradients summed since the last
    update (Keras's `gradient_accumulator` variables) and the inner update's state.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> tx = accumulate_gradients(optax.sgd(1.0), 3)
        >>> _, state = tx.update({"w": jnp.array([2.0])}, tx.init({"w": jnp.zeros(1)}))
        >>> int(state.count), float(state.summed_gradients["w"][0])   # held, not applied
        (1, 2.0)
    """

    count: jax.Array
    summed_gradients: Any
    update_state: Any


def accumulate_gradients(inner: optax.GradientTransformation,
                         steps: int) -> optax.GradientTransformation:
    """`inner` applied every `steps`-th step to the mean of the gradients since its last
    application; the other steps change nothing but the sum.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> tx = accumulate_gradients(optax.sgd(1.0), 2)
        >>> params = {"w": jnp.zeros(1)}
        >>> state = tx.init(params)
        >>> held, state = tx.update({"w": jnp.array([1.0])}, state, params)
        >>> applied, state = tx.update({"w": jnp.array([3.0])}, state, params)
        >>> float(held["w"][0]), float(applied["w"][0])   # -(1 + 3) / 2
        (0.0, -2.0)
    """

    def init(params):
        return AccumulationState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params),
                                 inner.init(params))

    def update(grads, state, params=None):
        def apply(_):
            mean = jax.tree.map(lambda g, s: (g + s) / steps, grads, state.summed_gradients)
            updates, update_state = inner.update(mean, state.update_state, params)
            return updates, update_state, jax.tree.map(jnp.zeros_like, state.summed_gradients)

        def hold(_):
            # The "no change" updates are shaped and typed as the inner update's.
            shapes = jax.eval_shape(lambda: inner.update(grads, state.update_state, params)[0])
            unchanged = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            summed = jax.tree.map(lambda g, s: g + s, grads, state.summed_gradients)
            return unchanged, state.update_state, summed

        is_update_step = (state.count + 1) % steps == 0
        updates, update_state, summed = jax.lax.cond(is_update_step, apply, hold, None)
        return updates, AccumulationState(state.count + 1, summed, update_state)

    return optax.GradientTransformation(init, update)


def accumulation_state(opt_state):
    """The AccumulationState inside an optimizer state, or None.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> state = accumulate_gradients(optax.sgd(1.0), 2).init({"w": jnp.zeros(1)})
        >>> int(accumulation_state((state,)).count)
        0
    """
    is_accumulation = lambda s: isinstance(s, AccumulationState)
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=is_accumulation)
             if is_accumulation(s)]
    return found[0] if len(found) == 1 else None


def check_steps(gradient_accumulation_steps) -> None:
    """Keras's rule for gradient_accumulation_steps: None (off) or an int >= 2; anything
    else raises a ValueError naming the argument.

    Example:
        >>> check_steps(None), check_steps(4)
        (None, None)
        >>> check_steps(1)   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: gradient_accumulation_steps must be an integer >= 2 ... Received: ...=1
    """
    value = gradient_accumulation_steps
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError("gradient_accumulation_steps must be an integer >= 2 (or None: update "
                         "at every step). Received: gradient_accumulation_steps="
                         f"{value!r}")
