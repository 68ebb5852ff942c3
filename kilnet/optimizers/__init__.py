"""Optimizers with Keras's names and defaults, built on Optax.

`"adam"` means Keras's Adam (learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), whose
epsilon is added to sqrt(v) before bias correction; Optax's `adam` adds it after. Adam and AdamW
are therefore written here as one fused Optax transformation following Keras's formula
(tests/test_optimizers.py checks one step against a NumPy transcription of Keras's update and
a run against optax.adam). Nadam is written out the same way: Keras's keeps a momentum schedule
(and its running product) that Optax's `nadam` does not have (tests/test_nadam.py compares
training against Keras's). So are Adafactor and Ftrl (Optax's adafactor is another variant;
Optax has no FTRL); Lamb is Optax's scale_by_adam and scale_by_trust_ratio, with Keras's weight
decay applied before the step (decay_first). tests/test_optimizers_keras_more.py compares each
with Keras's own, step by step. The learning rate lives in the optimizer state
(`optax.inject_hyperparams`), so callbacks such as ReduceLROnPlateau change it without a
recompilation. `serialize` / `deserialize` read and write Keras's optimizer configs.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core as jax_core

from kilnet import _names
from kilnet.variables import Variable
from kilnet.optimizers import schedules  # kilnet.optimizers.schedules, as in Keras
from kilnet.optimizers import _adam_kernel
from kilnet.optimizers import _accumulation
# accumulation_state is kilnet.optimizers's, next to moving_average_state and step_count: the
# .keras layout reads the held gradient sums through it.
from kilnet.optimizers._accumulation import accumulation_state
# The use_ema stage and its readers, kilnet.optimizers's names as before (fit, SwapEMAWeights).
from kilnet.optimizers._moving_average import (  # noqa: F401
    MovingAverageState, finalize_weights, moving_average_of_weights, moving_average_state,
    swap_moving_average)
from kilnet.optimizers import keras_variables


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


class KerasAmsgradState(NamedTuple):
    """Keras's Adam state with amsgrad: the step count, the moments, and the largest second
    moment so far per weight (Keras's `velocity_hat`), which the step divides by.

    Example:
        >>> import jax.numpy as jnp
        >>> state = keras_adam(0.01, amsgrad=True).init({"w": jnp.zeros(2)})
        >>> type(state).__name__, state.nu_hat["w"].shape
        ('KerasAmsgradState', (2,))
    """

    count: jax.Array
    mu: Any
    nu: Any
    nu_hat: Any


def keras_adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
               amsgrad=False, gives_weights=False, decay_mask=None):
    """Keras's Adam/AdamW update as one Optax transformation.

    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    p <- p - lr * wd * p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    (the operations of `_adam_kernel`: first_moment, second_moment, change). With `amsgrad`
    the step divides by v_hat <- max(v_hat, v) in place of v (Keras's velocity_hat, kept in a
    KerasAmsgradState).
    `gives_weights`: the update returns the new weights in place of the changes (computed in
    one pass per weight on the CPU, `_adam_kernel.new_weights`); `Optimizer.weights_update`
    uses it, and nothing else may: Optax's callers add what an update returns.
    `decay_mask`: the weights weight decay applies to (see weight_decay_flags); None: all.
    """
    if amsgrad and gives_weights:
        raise ValueError("The one-pass Adam update keeps two moments; amsgrad's third goes "
                         "through keras_adam's changes (gives_weights=False).")

    def update(grads, state, params=None):
        count = state.count + 1
        t = count.astype(jnp.float32)
        alpha = learning_rate * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        decay = learning_rate * weight_decay if weight_decay else None
        if weight_decay and params is None:
            raise ValueError("AdamW needs the parameters to apply weight decay.")
        decayed = None if decay is None else weight_decay_flags(decay_mask, params)
        if gives_weights:
            mu, nu, weights = _adam_kernel.new_weights(
                grads, state.mu, state.nu, params, -alpha, beta_1=beta_1, beta_2=beta_2,
                epsilon=epsilon, decay=decay, decayed=decayed)
            return weights, KerasAdamState(count, mu, nu)
        mu = jax.tree.map(lambda m, g: _adam_kernel.first_moment(m, g, beta_1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: _adam_kernel.second_moment(v, g, beta_2), state.nu,
                          grads)
        divisor = jax.tree.map(jnp.maximum, state.nu_hat, nu) if amsgrad else nu
        if decay is None:
            updates = jax.tree.map(lambda m, v: _adam_kernel.change(m, v, -alpha, epsilon),
                                   mu, divisor)
        else:
            updates = jax.tree.map(
                lambda m, v, p, d: _adam_kernel.change(m, v, -alpha, epsilon,
                                                       decay if d else None, p),
                mu, divisor, params, decayed)
        if amsgrad:
            return updates, KerasAmsgradState(count, mu, nu, divisor)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(_amsgrad_init if amsgrad else _moments_init, update)


def _moments_init(params) -> KerasAdamState:
    """A step count and two zero moments per weight (Adam's m and v, Adamax's m and u)."""
    zeros = lambda p: jnp.zeros_like(p)
    return KerasAdamState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                          jax.tree.map(zeros, params))


def _amsgrad_init(params) -> KerasAmsgradState:
    """_moments_init's state and a zero v_hat per weight."""
    return KerasAmsgradState(*_moments_init(params), jax.tree.map(jnp.zeros_like, params))


class KerasNadamState(NamedTuple):
    """Keras's Nadam state: the step count, the moments, and the product of the momentum
    schedule so far (Keras's `u_product`, 1.0 before the first step).

    Example:
        >>> import jax.numpy as jnp
        >>> state = keras_nadam(0.01).init({"w": jnp.zeros(2)})
        >>> int(state.count), float(state.u_product), state.mu["w"].shape
        (0, 1.0, (2,))
    """

    count: jax.Array
    mu: Any
    nu: Any
    u_product: jax.Array


def nadam_momentum(beta_1, step):
    """Keras's Nadam momentum schedule u_t = beta_1 * (1 - 0.5 * 0.96 ** t), in float32 (t is
    the 1-based step, as an array or a number).

    Example:
        >>> round(float(nadam_momentum(0.9, 1)), 6)
        0.468
    """
    t = jnp.asarray(step, jnp.float32)
    return beta_1 * (1.0 - 0.5 * jnp.power(jnp.float32(0.96), t))


def keras_nadam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None,
                decay_mask=None):
    """Keras 3's Nadam update (Dozat's Nesterov Adam with a momentum schedule) as one Optax
    transformation; Optax's `nadam` is a different algorithm (no schedule), so it is written
    out here.

    u_t = b1 (1 - 0.5 * 0.96^t);  P_t = u_1 ... u_t (the state's u_product)
    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t);  v_hat = v / (1 - b2^t)
    p <- p - lr * wd * p - lr * m_hat / (sqrt(v_hat) + eps)
    (the decay on the weights `decay_mask` leaves it to: see weight_decay_flags)

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_nadam(0.1)
        >>> params = {"w": jnp.array([1.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5])}, tx.init(params), params)
        >>> round(float(updates["w"][0]), 4), round(float(state.u_product), 3)
        (-0.1063, 0.468)
    """

    def init(params):
        zeros = lambda p: jnp.zeros_like(p)
        return KerasNadamState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                               jax.tree.map(zeros, params), jnp.ones((), jnp.float32))

    # Keras casts the betas to float32 before forming 1 - beta: 1 - float32(0.999) is
    # 0.0009999871, which changes v and its bias correction by 1e-5 relative unless the same.
    b1, b2 = jnp.float32(beta_1), jnp.float32(beta_2)

    def update(grads, state, params=None):
        count = state.count + 1
        t = count.astype(jnp.float32)
        u_t, u_next = nadam_momentum(b1, t), nadam_momentum(b1, t + 1)
        u_product = state.u_product * u_t
        # The schedule's factors are scalars: computed once per step, not per element.
        m_scale = u_next / (1 - u_product * u_next)
        g_scale = (1 - u_t) / (1 - u_product)
        v_scale = 1 / (1 - b2 ** t)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), state.nu, grads)
        updates = jax.tree.map(
            lambda m, v, g: -learning_rate * (m_scale * m + g_scale * g)
            / (jnp.sqrt(v * v_scale) + epsilon), mu, nu, grads)
        if weight_decay:
            if params is None:
                raise ValueError("Nadam with weight_decay needs the parameters to decay them.")
            updates = decay_where(lambda u, p: u - learning_rate * weight_decay * p,
                                  updates, params, decay_mask)
        return updates, KerasNadamState(count, mu, nu, u_product)

    return optax.GradientTransformation(init, update)


def keras_adamax(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras's Adamax update as one Optax transformation (Optax's `adamax` adds epsilon to
    |g| inside the maximum; Keras adds it to the norm in the denominator):

    m <- m + (g - m)(1 - b1);  u <- max(b2 u, |g|);  p <- p - lr m / ((1 - b1^t)(u + eps))

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_adamax(0.1)
        >>> params = {"w": jnp.array([1.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5])}, tx.init(params), params)
        >>> round(float(updates["w"][0]), 4), float(state.nu["w"][0])
        (-0.1, 0.5)
    """

    def update(grads, state, params=None):
        count = state.count + 1
        scale = learning_rate / (1 - beta_1 ** count.astype(jnp.float32))
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, grads)
        nu = jax.tree.map(lambda u, g: jnp.maximum(beta_2 * u, jnp.abs(g)), state.nu, grads)
        updates = jax.tree.map(lambda m, u: -scale * m / (u + epsilon), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(_moments_init, update)


def weight_decay_flags(mask, params):
    """Which weights weight decay applies to: a tree of Python bools shaped like `params`
    (False: excluded, Keras's `exclude_from_weight_decay`). `mask` is None (every weight),
    such a tree, or a function of `params` giving one or None (Optimizer.weight_decay_mask,
    called when the update is traced). The bools decide the traced program: with every
    weight decayed it is the program of an update without a mask.

    Example:
        >>> import jax.numpy as jnp
        >>> weight_decay_flags(None, {"b": jnp.zeros(2), "w": jnp.ones(2)})
        {'b': True, 'w': True}
    """
    flags = mask(params) if callable(mask) else mask
    return jax.tree.map(lambda _: True, params) if flags is None else flags


def decay_where(decay, tree, params, mask=None):
    """`decay(leaf, weight)` on each leaf of `tree` (shaped like `params`) whose weight `mask`
    decays (see weight_decay_flags); the leaves of the excluded weights as they are.

    Example:
        >>> import jax.numpy as jnp
        >>> params = {"b": jnp.ones(1), "w": jnp.ones(1)}
        >>> out = decay_where(lambda u, p: u - 0.1 * p, {"b": jnp.zeros(1), "w": jnp.zeros(1)},
        ...                   params, {"b": False, "w": True})
        >>> float(out["b"][0]), round(float(out["w"][0]), 6)
        (0.0, -0.1)
    """
    flags = weight_decay_flags(mask, params)
    return jax.tree.map(lambda t, p, d: decay(t, p) if d else t, tree, params, flags)


def weight_decay_stage(decay, mask=None) -> optax.GradientTransformation:
    """An Optax stage applying `decay(update, weight)` to the updates of the weights `mask`
    decays (decay_where); no state of its own.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = weight_decay_stage(lambda u, p: u + 0.5 * p)
        >>> updates, _ = tx.update({"w": jnp.zeros(1)}, tx.init(None), {"w": jnp.ones(1)})
        >>> float(updates["w"][0])
        0.5
    """

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight_decay needs the parameters to decay them.")
        return decay_where(decay, updates, params, mask), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def decoupled_weight_decay(learning_rate, weight_decay,
                           mask=None) -> optax.GradientTransformation:
    """Keras's `weight_decay` of its other optimizers: `p <- p - lr * wd * p` beside the
    update (Keras applies it to the variables before the update step, which reads only the
    gradient); chained after an update already scaled by the learning rate. `mask`: the
    weights it decays (weight_decay_flags)."""
    return weight_decay_stage(lambda u, p: u - learning_rate * weight_decay * p, mask)


def decay_first(inner, learning_rate, weight_decay,
                mask=None) -> optax.GradientTransformation:
    """Keras's `weight_decay` as one stage wrapped around an optimizer's update: Keras decays
    the variables (`p <- p - lr * wd * p`) before the update step, so `inner` sees the decayed
    weights and the decay is added to its update. Needed where the update reads the weights
    (Lamb's trust ratio, Adafactor's weight scale, Ftrl's closed-form weights); SGD, RMSprop
    and Adagrad use it too, so that their state keeps Optax's own optimizer's layout (the
    decay adds no state of its own). With weight_decay None or 0, `inner` as it is. `mask`:
    the weights it decays (weight_decay_flags); the others reach `inner` as they are.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> tx = decay_first(optax.scale_by_trust_ratio(), 0.1, 0.5)
        >>> updates, _ = tx.update({"w": jnp.array([2.0])}, tx.init(None), {"w": jnp.array([4.0])})
        >>> float(updates["w"][0])   # decay -0.1*0.5*4 = -0.2; step 2 * |3.8| / |2| = 3.8
        3.5999999046325684
    """
    if not weight_decay:
        return inner

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("weight_decay needs the parameters to decay them.")
        flags = weight_decay_flags(mask, params)
        decayed = decay_where(lambda p, _: p - p * (weight_decay * learning_rate), params,
                              params, flags)
        updates, state = inner.update(grads, state, decayed)
        return jax.tree.map(lambda u, d, p, f: u + (d - p) if f else u, updates, decayed,
                            params, flags), state

    return optax.GradientTransformation(inner.init, update)


def per_leaf(fn, tree, *others) -> tuple:
    """`fn` over the leaves of `tree` and of the trees shaped like it, when `fn` returns a
    tuple: a tuple of trees, one per output (jax.tree.map would give one tree of tuples, which
    cannot be split apart where the params themselves hold tuples).

    Example:
        >>> per_leaf(lambda a, b: (a + b, a * b), {"x": 2, "y": 3}, {"x": 4, "y": 5})
        ({'x': 6, 'y': 8}, {'x': 8, 'y': 15})
    """
    leaves, treedef = jax.tree.flatten(tree)
    columns = zip(*(fn(*args) for args in zip(leaves, *(treedef.flatten_up_to(o)
                                                         for o in others))))
    return tuple(jax.tree.unflatten(treedef, list(column)) for column in columns)


class KerasFtrlState(NamedTuple):
    """Keras's Ftrl slots: the accumulated squared gradients and the linear term z."""

    accumulator: Any
    linear: Any


def keras_ftrl(learning_rate, learning_rate_power=-0.5, initial_accumulator_value=0.1,
               l1_regularization_strength=0.0, l2_regularization_strength=0.0,
               l2_shrinkage_regularization_strength=0.0, beta=0.0):
    """Keras's FTRL-proximal update (McMahan et al., 2013) as an Optax transformation; Optax
    has no FTRL. With p = -lr_power, l2 = l2_regularization_strength + beta / (2 lr):

    n' = n + g^2;  z <- z + (g + 2 * l2_shrinkage * w) - (n'^p - n^p) / lr * w
    w <- (clip(z, -l1, l1) - z) / (n'^p / lr + 2 * l2)

    (returned as the update w_new - w, the weights being assigned rather than stepped).

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_ftrl(0.1, l1_regularization_strength=1.0)
        >>> params = {"w": jnp.array([0.0, 0.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5, 5.0])}, tx.init(params), params)
        >>> [round(float(w), 4) for w in params["w"] + updates["w"]]   # |z| <= l1: w is 0
        [0.0, -0.0798]
    """
    power = -learning_rate_power
    l2 = l2_regularization_strength + beta / (2.0 * learning_rate)
    l1 = l1_regularization_strength

    def init(params):
        return KerasFtrlState(
            jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params),
            jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("Ftrl needs the parameters: its update is a closed form of them.")

        def leaf(g, w, n, z):
            n_new = n + g * g
            z = z + (g + 2 * l2_shrinkage_regularization_strength * w) \
                - (jnp.power(n_new, power) - jnp.power(n, power)) / learning_rate * w
            quadratic = jnp.power(n_new, power) / learning_rate + 2 * l2
            return (jnp.clip(z, -l1, l1) - z) / quadratic - w, n_new, z

        updates, accumulator, linear = per_leaf(leaf, grads, params, state.accumulator,
                                                state.linear)
        return updates, KerasFtrlState(accumulator, linear)

    return optax.GradientTransformation(init, update)


class KerasAdafactorState(NamedTuple):
    """Keras's Adafactor slots: per weight of rank >= 2 the running row means `r` (shape
    [:-1]) and column means `c` (shape [:-2] + [-1:]) of the squared gradient, and the
    velocity `v` they factor; for a weight of rank < 2, `r` and `c` are int32 zeros that Keras
    keeps as placeholders, and `v` is a running mean of its own."""

    count: jax.Array
    r: Any
    c: Any
    v: Any


def keras_adafactor(learning_rate, beta_2_decay=-0.8, epsilon_1=1e-30, epsilon_2=1e-3,
                    clip_threshold=1.0, relative_step=True):
    """Keras 3's Adafactor (Shazeer & Stern, 2018) as an Optax transformation. Optax's
    `adafactor` differs in its decay schedule, where epsilon_1 enters, its factoring and its
    clipping, so Keras's update is written out. With t the 1-based step:

    rho = min(lr, 1 / sqrt(t));  alpha = max(epsilon_2, rms(w)) * rho
    b = 1 - t^beta_2_decay;  s = g^2 + epsilon_1
    rank >= 2: r <- b r + (1 - b) mean_last(s); c <- b c + (1 - b) mean_second_last(s);
               v = (r / mean(r)) outer c;   rank < 2: v <- b v + (1 - b) s
    u = g / sqrt(v);  w <- w - alpha * u / max(1, rms(u) / clip_threshold)

    Keras caps the rate at 1/sqrt(t) whether or not relative_step is set (it takes that
    minimum twice when it is), so relative_step, kept for the config, changes nothing here
    either.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_adafactor(0.1)
        >>> params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
        >>> state = tx.init(params)
        >>> state.r["w"].shape, state.c["w"].shape, state.r["b"].dtype
        ((2,), (3,), dtype('int32'))
    """
    del relative_step   # see the docstring: Keras's update does not depend on it

    def rms(x):
        return jnp.sqrt(jnp.mean(jnp.square(x)))

    def init(params):
        def factor(p, shape):
            return jnp.zeros(shape, p.dtype) if p.ndim >= 2 else jnp.zeros((), jnp.int32)
        return KerasAdafactorState(
            jnp.zeros((), jnp.int32),
            jax.tree.map(lambda p: factor(p, p.shape[:-1]), params),
            jax.tree.map(lambda p: factor(p, p.shape[:-2] + p.shape[-1:]), params),
            jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("Adafactor needs the parameters: its step scales with their rms.")
        count = state.count + 1
        t = count.astype(jnp.float32)
        rho = jnp.minimum(learning_rate, 1 / jnp.sqrt(t))
        b = 1 - jnp.power(t, beta_2_decay)

        def leaf(g, w, r, c, v):
            s = jnp.square(g) + epsilon_1
            if w.ndim >= 2:
                r = b * r + (1 - b) * jnp.mean(s, axis=-1)
                c = b * c + (1 - b) * jnp.mean(s, axis=-2)
                v = (r / jnp.mean(r, axis=-1, keepdims=True))[..., None] * c[..., None, :]
            else:
                v = b * v + (1 - b) * s
            u = g / jnp.sqrt(v)
            u = u / jnp.maximum(1.0, rms(u) / clip_threshold)
            return -jnp.maximum(epsilon_2, rms(w)) * rho * u, r, c, v

        updates, r, c, v = per_leaf(leaf, grads, params, state.r, state.c, state.v)
        return updates, KerasAdafactorState(count, r, c, v)

    return optax.GradientTransformation(init, update)


def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras's `clipnorm`: each gradient tensor is clipped to its own L2 norm."""

    def update(grads, state, params=None):
        def clip(g):
            norm = jnp.sqrt(jnp.sum(g * g))
            return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
        return jax.tree.map(clip, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class Optimizer:
    """Base class: a named, configurable factory of an Optax transformation, with Keras's base
    arguments: clipnorm, clipvalue, global_clipnorm, and use_ema / ema_momentum /
    ema_overwrite_frequency (a moving average of the weights kept in the optimizer state, which
    fit leaves in the model at its end and SwapEMAWeights swaps in for evaluation).

    Example:
        >>> import kilnet
        >>> config = kilnet.optimizers.SGD(0.1, use_ema=True).get_config()
        >>> config["use_ema"], config["ema_momentum"], config["ema_overwrite_frequency"]
        (True, 0.99, None)
    """

    # The string compile() and get() know the class by ("adamw"); an instance's own `name`
    # (Keras's, the argument or the class's in snake case) replaces it on the instance.
    name = "optimizer"
    defaults: dict[str, Any] = {}
    # exclude_from_weight_decay's (variables, compiled pattern of names); none by default, also
    # for a subclass of yours whose __init__ does not reach Optimizer's
    _decay_exclusions: tuple = ((), None)

    def __init__(self, learning_rate=0.001, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, use_ema=False, ema_momentum=0.99,
                 ema_overwrite_frequency=None, gradient_accumulation_steps=None, name=None,
                 **hyper):
        _check_learning_rate(learning_rate)
        # Keras's default name: the class's in snake case ("adam", "adam_w", "rm_sprop"),
        # numbered within the process as Keras numbers it ("adam_1" for the second Adam)
        self.name = (_names.check_name(name) if name is not None else
                     _names.numbered_in_process(_names.snake_case(type(self).__name__)))
        if use_ema:   # checked only then, as Keras does
            _check_ema(ema_momentum, ema_overwrite_frequency)
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm)):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{arg} must be a positive number. Received: {arg}={value!r}")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("Pass clipnorm or global_clipnorm, not both. "
                             f"Received: clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        _accumulation.check_steps(gradient_accumulation_steps)
        self.gradient_accumulation_steps = gradient_accumulation_steps
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}; "
                            f"it accepts {sorted(self.defaults)}.")
        self._trainer = None  # set by compile(): where the rate in use lives
        self._learning_rate = learning_rate
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.use_ema, self.ema_momentum = bool(use_ema), ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.hyper = {**self.defaults, **hyper}

    def attach(self, trainer) -> None:
        """compile() tells the optimizer which Trainer holds its state (a weak reference), so
        that setting learning_rate reaches the compiled step."""
        self._trainer = weakref.ref(trainer)

    @property
    def learning_rate(self):
        """The learning rate now, as Keras's: a number (a float that also answers a Keras
        Variable's `assign`, `numpy()` and `value`), or with a schedule the rate of the next
        step (the schedule at `iterations`; still callable as the schedule). Setting it, or
        `assign`, on a compiled model changes the rate the compiled step uses at once,
        without recompiling (`model.optimizer.learning_rate = 1e-4`).

        Example:
            >>> from kilnet import optimizers
            >>> sgd = optimizers.SGD(learning_rate=0.1)
            >>> sgd.learning_rate.assign(0.05)
            >>> float(sgd.learning_rate), sgd.learning_rate * 2
            (0.05, 0.1)
            >>> decay = optimizers.schedules.ExponentialDecay(0.1, 4, 0.5, staircase=True)
            >>> round(float(optimizers.SGD(learning_rate=decay).learning_rate), 6)
            0.1
        """
        rate = self._learning_rate
        if callable(rate):
            return ScheduledRate(rate, self._steps_taken())
        return Rate(rate, self)

    @property
    def uses_schedule(self) -> bool:
        """Whether a schedule (a function of the step) gives the learning rate, read without
        computing the rate (`learning_rate` computes the next step's).

        Example:
            >>> from kilnet import optimizers
            >>> decay = optimizers.schedules.ExponentialDecay(0.1, 4, 0.5)
            >>> optimizers.SGD(decay).uses_schedule, optimizers.SGD(0.1).uses_schedule
            (True, False)
        """
        return callable(self._learning_rate)

    def _current_state(self):
        """The optimizer state now: its own variables once built, else the compiled model's
        (None before either exists)."""
        trainer = self._trainer() if self._trainer is not None else None
        if self.built:
            return self._own_state()
        if trainer is not None and trainer.state is not None:
            return trainer.state.opt_state
        return None

    def _steps_taken(self) -> int:
        """Keras's raw step count (`_iterations`), which its schedules read: with gradient
        accumulation every step counts, not only the updates that `iterations` counts."""
        state = self._current_state()
        if state is None:
            return 0
        accumulation = accumulation_state(state)
        return step_count(state) if accumulation is None else int(accumulation.count)

    def _own_state(self):
        """The Optax state the variables `build` made hold."""
        own = self._own
        return own.layout.state(own.template, [v.value for v in own.variables])

    @property
    def iterations(self):
        """Keras's `optimizer.iterations`: the updates made so far. After `build`, Keras's
        own `iteration` variable (the first of `variables`) where it counts them (no gradient
        accumulation); else a Variable read now (0 before training).

        Example:
            >>> import kilnet
            >>> opt = kilnet.optimizers.SGD(name="sgd")
            >>> opt.build([kilnet.Variable([1.0], name="w")])
            >>> opt.iterations is opt.variables[0], opt.iterations.path
            (True, 'sgd/iteration')
        """
        own = self._own if self.built else None
        if own is not None and isinstance(own.layout, keras_variables.KerasLayout) \
                and not self.gradient_accumulation_steps:
            return own.variables[0]
        state = self._current_state()
        count = 0 if state is None else step_count(state)
        return keras_variables.named_variable(np.int32(count), "iteration",
                                              f"{self.name}/iteration")

    @learning_rate.setter
    def learning_rate(self, value):
        _check_learning_rate(value)
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None and trainer.state is not None:
            if callable(value) or callable(self._learning_rate):
                raise TypeError(
                    "A compiled model's learning rate can be changed from one number to "
                    "another; to use a schedule, compile again with it. "
                    f"Received: learning_rate={value!r}")
            trainer.learning_rate = float(value)
        if self.built and not callable(value) and not callable(self._learning_rate):
            self._assign_own_state(set_learning_rate(self._own_state(), value))
        self._learning_rate = value

    def _assign_own_state(self, state) -> None:
        """Hold `state` in the variables `build` made."""
        for variable, value in zip(self._own.variables, self._own.layout.values(state)):
            variable.assign(value)

    # -- Keras's optimizer variables, for a training loop of your own ---------------------------
    def build(self, var_list) -> None:
        """Keras's `optimizer.build(var_list)`: make the optimizer's own variables (Adam's
        moments, the step count, the learning rate) for these variables, for a training loop
        written without compile(): then `optimizer.variables`, `stateless_apply` (inside
        `jax.jit`) and `apply` / `apply_gradients` (eagerly) update them. compile() needs no
        build: the compiled step keeps its optimizer state itself.

        The optimizer variables are Keras's, in Keras's order, named as Keras names them
        (`iteration`, `learning_rate`, then each variable's slots, e.g. Adam's
        `adam/dense_kernel_momentum` and `..._velocity`: kilnet.optimizers.keras_variables);
        an optimizer Keras does not have lists its Optax state's leaves.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
            >>> optimizer = kilnet.optimizers.SGD(learning_rate=0.5)
            >>> optimizer.build(model.trainable_variables)
            >>> grads = [np.ones((3, 2), np.float32), np.ones(2, np.float32)]
            >>> new, _ = optimizer.stateless_apply(optimizer.variables, grads,
            ...                                    [np.zeros((3, 2)), np.zeros(2)])
            >>> new[1].tolist()
            [-0.5, -0.5]
        """
        targets = list(var_list)
        for index, target in enumerate(targets):
            if not hasattr(target, "shape"):
                raise TypeError("optimizer.build takes the variables it will update, e.g. "
                                "optimizer.build(model.trainable_variables). Received: "
                                f"var_list[{index}] of type {type(target).__name__}")
        tx = self.transformation()
        state = tx.init([_value_of(t) for t in targets])
        layout = keras_variables.layout_for(self, targets, list, _as_list)
        self._own = _OwnState(tx, state, targets, layout.variables(layout.values(state)),
                              layout)
        self._take_restored_values()

    def restore_variables(self, values, source: str) -> None:
        """Set the optimizer's variables (`variables`' order: the step count, the learning
        rate, the slots) to `values`, as a model file kept them: now if it is built, else at
        its next `build` (or first `apply`), so that a training loop resumed after loading
        goes on from the saved moments and step count. Values that do not fit (another
        number, other shapes) are skipped with a warning naming `source`: it keeps its state,
        or starts afresh.

        Example:
            >>> import numpy as np
            >>> from kilnet import optimizers
            >>> from kilnet.variables import Variable
            >>> w = Variable(np.ones(2, np.float32), name="w")
            >>> sgd = optimizers.SGD(0.5, momentum=0.9, name="sgd")
            >>> sgd.restore_variables([np.int64(3), np.float32(0.5),
            ...                        np.array([1.0, 2.0], np.float32)], "m.kilnet")
            >>> sgd.build([w])
            >>> int(sgd.iterations.numpy()), sgd.variables[2].numpy().tolist()
            (3, [1.0, 2.0])
        """
        if self.built:
            self._assign_restored(list(values), source)
        else:
            self.__dict__["_restored_values"] = (list(values), source)

    def _take_restored_values(self) -> None:
        values, source = self.__dict__.pop("_restored_values", (None, None))
        if values is not None:
            self._assign_restored(values, source)

    def _assign_restored(self, values, source) -> None:
        variables = self._own.variables
        fits = len(values) == len(variables) and all(
            np.shape(value) == tuple(variable.shape) for value, variable in zip(values, variables))
        if not fits:
            warnings.warn(f"{source}: skipped the saved state of the optimizer {self.name!r} "
                          f"({len(values)} arrays): it does not fit the {len(variables)} "
                          "variables it is built with, so it keeps its own.", stacklevel=4)
            return
        for variable, value in zip(variables, values):
            variable.assign(np.asarray(value, dtype=np.dtype(variable.dtype)))

    @property
    def built(self) -> bool:
        """Whether `build(var_list)` made the optimizer's own variables."""
        return getattr(self, "_own", None) is not None

    @property
    def variables(self) -> list:
        """The optimizer's variables (Variables), as Keras lists them (see build): those
        `build(var_list)` made; else, on a compiled model, the compiled step's optimizer state
        as it is now, as a model's own train_step receives it; else [].

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2, name="d")])
            >>> opt = kilnet.optimizers.Adam(name="adam")
            >>> opt.build(model.trainable_variables)
            >>> [v.path for v in opt.variables]   # doctest: +NORMALIZE_WHITESPACE
            ['adam/iteration', 'adam/learning_rate', 'adam/sequential_d_kernel_momentum',
             'adam/sequential_d_kernel_velocity', 'adam/sequential_d_bias_momentum',
             'adam/sequential_d_bias_velocity']
        """
        if self.built:
            return list(self._own.variables)
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None or trainer.state is None:
            return []
        layout = trainer.optimizer_layout()
        return layout.variables(layout.values(trainer.state.opt_state))

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """Keras's JAX stateless_apply: (new trainable variables, new optimizer variables),
        all lists, after one update, nothing stored changed. In a model's own train_step it
        updates the compiled step's optimizer state; in a loop of your own, the variables
        `build(var_list)` made (see build's example)."""
        trainer = self._trainer() if self._trainer is not None else None
        if not self.built and trainer is not None and trainer.state is not None:
            return trainer.stateless_apply(optimizer_variables, grads, trainable_variables)
        own = self._require_built("stateless_apply")
        values = _values_of("trainable_variables", trainable_variables, len(own.targets))
        grads = _values_of("grads", grads, len(own.targets))
        state = own.layout.state(own.template, _values_of(
            "optimizer_variables", optimizer_variables, len(own.variables)))
        updates, state = own.tx.update(grads, state, values)
        new = optax.apply_updates(values, updates)
        new = [t.constraint(w) if getattr(t, "constraint", None) is not None else w
               for t, w in zip(own.targets, new)]
        return new, own.layout.values(state)

    def apply(self, grads, trainable_variables=None) -> None:
        """Keras's `optimizer.apply(grads, trainable_variables)`: one update, assigned to
        the variables (built for them on first use). Outside compile() only.

        Example:
            >>> import numpy as np
            >>> from kilnet import optimizers
            >>> from kilnet.variables import Variable
            >>> w = Variable(np.ones(2, np.float32), name="w")
            >>> optimizers.SGD(learning_rate=0.25).apply([np.ones(2, np.float32)], [w])
            >>> w.numpy().tolist()
            [0.75, 0.75]
        """
        capture = self.__dict__.get("_gradients_of_apply")
        if capture is not None:   # reached through your apply() while an update is traced
            capture.append(list(grads))
            return
        if trainable_variables is None:
            own = self._require_built("apply(grads)")
            trainable_variables = own.targets
        trainable_variables = list(trainable_variables)
        if not self.built or [id(t) for t in self._own.targets] != [
                id(t) for t in trainable_variables]:
            self.build(trainable_variables)
        with _apply_has_run(self):   # your apply() is this call: the update must not rerun it
            new, state = self.stateless_apply(self._own.variables, grads, trainable_variables)
        for target, value in zip(trainable_variables, new):
            target.assign(value)
        for variable, value in zip(self._own.variables, state):
            variable.assign(value)

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras's `optimizer.apply_gradients(zip(grads, variables))`: `apply`, pairs given."""
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])

    def finalize_variable_values(self, var_list) -> None:
        """Keras's `optimizer.finalize_variable_values(var_list)`: with use_ema=True, assign
        the moving averages the optimizer keeps to `var_list` (the variables it updates, in
        the order it was built for, e.g. `model.trainable_variables`), as Keras's fit does
        at its end (kilnet's fit already has); without use_ema it does nothing. For a
        training loop of your own after `build` / `apply`; on a compiled model, it reads the
        compiled step's averages.

        Example:
            >>> import numpy as np
            >>> from kilnet import optimizers
            >>> from kilnet.variables import Variable
            >>> w = Variable(np.zeros(1, np.float32), name="w")
            >>> sgd = optimizers.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
            >>> for _ in range(2):   # w: -1, then -2; the average: -1, then -1.5
            ...     sgd.apply([np.ones(1, np.float32)], [w])
            >>> sgd.finalize_variable_values([w])
            >>> w.numpy().tolist()
            [-1.5]
        """
        if not self.use_ema:
            return
        trainer = self._trainer() if self._trainer is not None else None
        if self.built:
            found = moving_average_state(self._own_state())
            averages = None if found is None else list(found.average)
        elif trainer is not None and trainer.state is not None:
            found = moving_average_state(trainer.state.opt_state)
            averages = None if found is None else trainer.trainable_list(found.average)
        else:
            self._require_built("finalize_variable_values")
        if averages is None:   # a subclass whose transformation() dropped the average stage
            raise ValueError(f"{type(self).__name__} was made with use_ema=True but its "
                             "optimizer state holds no moving average of the weights.")
        var_list = list(var_list)
        if len(var_list) != len(averages):
            raise ValueError(
                f"The length of model variables ({len(var_list)}) to override does not match "
                f"the length of model variables stored in the optimizer ({len(averages)}). "
                "Pass the variables the optimizer was built for, e.g. "
                "optimizer.finalize_variable_values(model.trainable_variables).")
        for variable, average in zip(var_list, averages):
            variable.assign(average)

    # -- which weights weight decay applies to (Keras's exclude_from_weight_decay) --------------
    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Keras's `exclude_from_weight_decay`: weight decay skips the variables in
        `var_list` and those whose name (`variable.name`, e.g. "bias"; not the path) a regular
        expression in `var_names` finds (`re.search`). A call replaces the exclusions of the
        one before; called with neither, every weight decays again. Call it before the
        optimizer is built: before `optimizer.build(...)` / `apply(...)`, or on a compiled
        model before its first training step. Keras's get_config leaves the exclusions out,
        and so does kilnet's: an optimizer loaded from a file or config decays every weight.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.Dense(1, kernel_initializer="ones", bias_initializer="ones")
            >>> layer.build((None, 1))
            >>> opt = kilnet.optimizers.AdamW(learning_rate=0.1, weight_decay=0.5)
            >>> opt.exclude_from_weight_decay(var_names=["bias"])
            >>> opt.apply([np.zeros((1, 1), np.float32), np.zeros(1, np.float32)],
            ...           layer.trainable_variables)
            >>> float(layer.kernel.numpy()[0, 0]), float(layer.bias.numpy()[0])
            (0.949999988079071, 1.0)
        """
        refusal = self._why_decay_is_fixed()
        if refusal is not None:
            raise ValueError(
                "exclude_from_weight_decay() can only be called before the optimizer is "
                f"built: {refusal}, and the weights it decays were fixed then. Call it "
                "first, e.g. opt.exclude_from_weight_decay(var_names=['bias']) before "
                "model.compile(optimizer=opt) and fit, or use a new optimizer.")
        if isinstance(var_names, str) or not isinstance(var_names, (list, tuple, type(None))) \
                or not all(isinstance(n, str) for n in var_names or ()):
            raise TypeError("var_names must be a list of strings (regular expressions searched "
                            "in each variable's name), e.g. var_names=['bias']. Received: "
                            f"var_names={var_names!r}")
        if var_list is not None and not isinstance(var_list, (list, tuple)):
            raise TypeError("var_list must be a list of variables, e.g. "
                            f"var_list=[layer.kernel]. Received: var_list={var_list!r:.100}")
        pattern = re.compile("|".join(sorted(set(var_names)))) if var_names else None
        self._decay_exclusions = (tuple(var_list or ()), pattern)
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None and trainer.state is not None:
            trainer.drop_compiled_programs()   # none has trained yet: they read the old ones

    def _why_decay_is_fixed(self):
        """Why the weights weight decay applies to can no longer change (None: they can)."""
        if self.built:
            return "optimizer.build (or apply) made its variables"
        if self._steps_taken() > 0:
            return "the compiled model has trained with it"
        return None

    def uses_weight_decay(self, variable) -> bool:
        """Whether weight decay applies to `variable` (Keras's `_use_weight_decay`): False for
        the variables and names given to exclude_from_weight_decay.

        Example:
            >>> from kilnet import optimizers
            >>> from kilnet.variables import Variable
            >>> opt = optimizers.SGD(weight_decay=0.1)
            >>> opt.exclude_from_weight_decay(var_names=["bias", "gamma"])
            >>> opt.uses_weight_decay(Variable([1.0], name="kernel")), opt.uses_weight_decay(
            ...     Variable([1.0], name="bias"))
            (True, False)
        """
        variables, pattern = self._decay_exclusions
        if any(variable is v for v in variables):
            return False
        return pattern is None or pattern.search(variable.name) is None

    def weight_decay_mask(self, params):
        """The weights weight decay applies to, as the update of `params` is traced: a tree of
        bools shaped like `params` (uses_weight_decay of each one's variable), or None when
        nothing is excluded. `params` is the list of values of the variables `build` was
        given, or a compiled model's trainable weights (its training state's tree).

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
            >>> opt = kilnet.optimizers.AdamW()
            >>> opt.exclude_from_weight_decay(var_list=[model.layers[0].kernel])
            >>> opt.build(model.trainable_variables)
            >>> opt.weight_decay_mask([v.value for v in model.trainable_variables])
            [False, True]
        """
        if self._decay_exclusions == ((), None):
            return None
        trainer = self._trainer() if self._trainer is not None else None
        if isinstance(params, list) and self.built and len(params) == len(self._own.targets):
            return [self.uses_weight_decay(t) for t in self._own.targets]
        if trainer is not None and trainer.state is not None:
            decays = [self.uses_weight_decay(v) for v in trainer.model.trainable_variables]
            return trainer.with_trainable_list(jax.tree.map(lambda _: True, params), decays)
        raise ValueError(
            f"{type(self).__name__} excludes weights from weight decay, but cannot tell which "
            "variables these parameters are: use it through model.compile(optimizer=...) or "
            "optimizer.build(variables) / apply(grads, variables), not through its Optax "
            f"transformation alone. Received: parameters of type {type(params).__name__}")

    def _require_built(self, what: str):
        if not self.built:
            raise RuntimeError(
                f"optimizer.{what} outside compile() needs the optimizer's variables: call "
                "optimizer.build(model.trainable_variables) first (or compile() the model "
                "and call it from its train_step).")
        return self._own

    def core(self, learning_rate) -> optax.GradientTransformation:
        """The update as an Optax transformation of the learning rate (each subclass's)."""
        reason = ("its Keras-style update_step(gradient, variable, learning_rate) is not run"
                  if hasattr(self, "update_step") else "it defines no update (core)")
        raise NotImplementedError(
            f"kilnet cannot compile {type(self).__name__}: {reason}; kilnet's optimizers are "
            "Optax transformations. Subclass one of kilnet.optimizers' optimizers and "
            "override apply(grads, trainable_variables) to change the gradients before "
            "super().apply(...) (as Keras's gradient-centralization recipe), or pass an "
            "optax.GradientTransformation to compile(optimizer=...).")

    def transformation(self) -> optax.GradientTransformation:
        """The full transformation: gradient clipping, then the update with an injected lr."""
        return self._chain(self.core)

    def _chain(self, core) -> optax.GradientTransformation:
        """transformation() around `core` (a function of the learning rate giving the
        update): weights_update's state is this same chain's."""
        parts = []
        if self.clipvalue is not None:
            parts.append(optax.clip(self.clipvalue))
        if self.clipnorm is not None:
            parts.append(clip_by_tensor_norm(self.clipnorm))
        if self.global_clipnorm is not None:
            parts.append(optax.clip_by_global_norm(self.global_clipnorm))
        steps = self.gradient_accumulation_steps or 1
        parts.append(optax.inject_hyperparams(core)(
            learning_rate=_at_keras_step(self._learning_rate, steps)))
        if steps > 1:   # the clipping and the update act on the mean, at every N-th step
            parts = [_accumulation.accumulate_gradients(optax.chain(*parts), steps)]
        if self.use_ema:
            parts.append(moving_average_of_weights(self.ema_momentum,
                                                   self.ema_overwrite_frequency, steps))
        chain = optax.chain(*parts)
        return _through_your_apply(self, chain) if overrides_apply(self) else chain

    def gradients_of_apply(self, grads, params):
        """The gradients your `apply(grads, trainable_variables)` override passes on to
        `super().apply(...)`, traced: Keras's fit reaches the update through `apply`, so an
        override that changes the gradients (gradient centralization) changes training.
        `grads` and `params` are trees (the compiled step's) or lists (a built optimizer's);
        your apply gets them as lists in the model's trainable-variable order, with the
        model's Variables (their values are the weights before this step)."""
        trainer = self._trainer() if self._trainer is not None else None
        if isinstance(grads, list):
            listed, variables = grads, (self._own.targets if self.built else params)
        elif trainer is not None and trainer.state is not None:
            listed, variables = trainer.trainable_list(grads), trainer.model.trainable_variables
        else:
            listed, variables = jax.tree.leaves(grads), jax.tree.leaves(params)
        captured = []
        self._gradients_of_apply = captured
        try:
            self.apply(list(listed), list(variables))
        finally:
            del self._gradients_of_apply
        if not captured:
            raise ValueError(
                f"{type(self).__name__}.apply(grads, trainable_variables) returned without "
                "calling super().apply(grads, trainable_variables): kilnet's optimizer "
                "applies the update there, with the gradients you pass it.")
        new = captured[-1]
        if len(new) != len(listed):
            raise ValueError(f"{type(self).__name__}.apply passed {len(new)} gradients to "
                             f"super().apply; expected one per variable, {len(listed)}.")
        if isinstance(grads, list):
            return new
        if trainer is not None and trainer.state is not None:
            return trainer.with_trainable_list(grads, new)
        return jax.tree.unflatten(jax.tree.structure(grads), new)

    def weights_update(self):
        """The update as one function (grads, opt_state, params) -> (new params, opt_state),
        on the state of `transformation()`, where this optimizer computes the new weights
        itself: Adam and AdamW without gradient clipping or a moving average, in one native
        pass per weight on the CPU (`_adam_kernel`), the numbers Optax's update followed by
        `optax.apply_updates` gives. None elsewhere: the compiled step then adds the update's
        changes to the weights.

        Example:
            >>> import jax.numpy as jnp
            >>> from kilnet import optimizers
            >>> adam = optimizers.Adam(learning_rate=0.1)
            >>> params = {"w": jnp.ones(2)}
            >>> state = adam.transformation().init(params)
            >>> new, _ = adam.weights_update()({"w": jnp.ones(2)}, state, params)
            >>> [round(float(x), 4) for x in new["w"]]
            [0.9, 0.9]
            >>> optimizers.SGD(0.1).weights_update() is None
            True
        """
        core = getattr(self, "weights_core", None)
        if core is None or self.use_ema or self.gradient_accumulation_steps or (
                self.clipvalue, self.clipnorm, self.global_clipnorm) != (None, None, None):
            return None
        return self._chain(core).update

    def get_config(self) -> dict:
        rate = self._learning_rate
        config = {"name": self.name,
                  "learning_rate": schedules.serialize(rate) if callable(rate) else float(rate),
                  **self.hyper}
        for key in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        if self.use_ema:
            config.update(use_ema=True, ema_momentum=self.ema_momentum,
                          ema_overwrite_frequency=self.ema_overwrite_frequency)
        if self.gradient_accumulation_steps:
            config["gradient_accumulation_steps"] = self.gradient_accumulation_steps
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):   # a schedule's config
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self._learning_rate!r})"


class Adam(Optimizer):
    name = "adam"
    # Keras's Adam takes weight_decay too (decoupled, as AdamW's; None: off).
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "amsgrad": False,
                "weight_decay": None}

    def core(self, learning_rate):
        return keras_adam(learning_rate, **self.hyper, decay_mask=self.weight_decay_mask)

    def weights_core(self, learning_rate):
        return keras_adam(learning_rate, **self.hyper, gives_weights=True,
                          decay_mask=self.weight_decay_mask)

    def weights_update(self):
        # The native one-pass update keeps Adam's two moments; amsgrad's largest second
        # moment makes a third, so that variant adds keras_adam's changes in XLA.
        return None if self.hyper["amsgrad"] else super().weights_update()


class AdamW(Adam):
    name = "adamw"
    defaults = {"weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7,
                "amsgrad": False}


class SGD(Optimizer):
    name = "sgd"
    # weight_decay: Keras's base argument, decoupled (p <- p - lr * wd * p before the step;
    # None: off). decay_first keeps Optax's state as it is without it (keras_files reads it).
    defaults = {"momentum": 0.0, "nesterov": False, "weight_decay": None}

    def __init__(self, learning_rate=0.01, **kwargs):
        super().__init__(learning_rate, **kwargs)

    def core(self, learning_rate):
        momentum = self.hyper["momentum"] or None
        step = optax.sgd(learning_rate, momentum=momentum, nesterov=self.hyper["nesterov"])
        return decay_first(step, learning_rate, self.hyper["weight_decay"],
                           self.weight_decay_mask)


class RMSprop(Optimizer):
    name = "rmsprop"
    defaults = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False,
                "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        # Keras adds epsilon inside the square root, as optax's default eps_in_sqrt does.
        step = optax.rmsprop(learning_rate, decay=h["rho"], eps=h["epsilon"],
                             momentum=h["momentum"] or None, centered=h["centered"])
        return decay_first(step, learning_rate, h["weight_decay"], self.weight_decay_mask)


class Adagrad(Optimizer):
    name = "adagrad"
    defaults = {"initial_accumulator_value": 0.1, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        step = optax.adagrad(learning_rate, **{
            "initial_accumulator_value": self.hyper["initial_accumulator_value"],
            "eps": self.hyper["epsilon"]})
        return decay_first(step, learning_rate, self.hyper["weight_decay"],
                           self.weight_decay_mask)


class Nadam(Optimizer):
    """Keras 3's Nadam, update for update (`keras_nadam`: Adam with Nesterov momentum and
    Keras's momentum schedule; Optax's `nadam` differs), with Keras's arguments and defaults.

    Example:
        >>> import kilnet
        >>> opt = kilnet.optimizers.Nadam(learning_rate=0.01, beta_1=0.8)
        >>> opt.learning_rate, opt.hyper["beta_1"], opt.hyper["epsilon"]
        (0.01, 0.8, 1e-07)
    """

    name = "nadam"
    # Keras's Nadam takes weight_decay too (decoupled, as AdamW's; None: off).
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        return keras_nadam(learning_rate, **self.hyper, decay_mask=self.weight_decay_mask)


class Adamax(Optimizer):
    """Keras's Adamax (Adam with the infinity norm; Kingma & Ba, 2014), update for update
    (`keras_adamax`), with Keras's arguments and defaults.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.get("adamax").hyper
        {'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-07, 'weight_decay': None}
    """

    name = "adamax"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        parts = [keras_adamax(learning_rate, h["beta_1"], h["beta_2"], h["epsilon"])]
        return _with_decay(parts, learning_rate, h["weight_decay"], self.weight_decay_mask)


class Adadelta(Optimizer):
    """Keras's Adadelta (Zeiler, 2012) with Keras's arguments and defaults (rho 0.95, epsilon
    1e-7, learning_rate 0.001): Optax's scale_by_adadelta is Keras's update step.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.Adadelta(learning_rate=1.0).hyper["rho"]
        0.95
    """

    name = "adadelta"
    defaults = {"rho": 0.95, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        parts = [optax.scale_by_adadelta(h["rho"], h["epsilon"]),
                 optax.scale_by_learning_rate(learning_rate)]
        return _with_decay(parts, learning_rate, h["weight_decay"], self.weight_decay_mask)


class Lion(Optimizer):
    """Keras's Lion (Chen et al., 2023: the sign of an interpolated momentum), with Keras's
    arguments and defaults: Optax's lion is Keras's update, its weight decay decoupled as
    Keras's.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.Lion(beta_1=1.5)
        Traceback (most recent call last):
        ...
        ValueError: Lion's beta_1 must be in (0, 1]; otherwise it is sign SGD. Received: beta_1=1.5
    """

    name = "lion"
    defaults = {"beta_1": 0.9, "beta_2": 0.99, "weight_decay": None}

    def __init__(self, learning_rate=0.001, **kwargs):
        super().__init__(learning_rate, **kwargs)
        beta_1 = self.hyper["beta_1"]
        if not 0 < beta_1 <= 1:
            raise ValueError(f"Lion's beta_1 must be in (0, 1]; otherwise it is sign SGD. "
                             f"Received: beta_1={beta_1}")

    def core(self, learning_rate):
        h = self.hyper
        if not h["weight_decay"]:
            return optax.lion(learning_rate, b1=h["beta_1"], b2=h["beta_2"], weight_decay=0.0)
        # optax.lion's three stages, its decay (g + wd * p) leaving out the excluded weights
        return optax.chain(optax.scale_by_lion(b1=h["beta_1"], b2=h["beta_2"]),
                           weight_decay_stage(lambda g, p: g + h["weight_decay"] * p,
                                              self.weight_decay_mask),
                           optax.scale_by_learning_rate(learning_rate))


class Lamb(Optimizer):
    """Keras's Lamb (You et al., 2019: Adam's step scaled per weight by the trust ratio
    ||w|| / ||step||), with Keras's arguments and defaults. Optax's scale_by_adam and
    scale_by_trust_ratio are Keras's update; Keras's weight decay precedes it (decay_first), where
    Optax's lamb adds the decay to the step before the trust ratio.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.get("lamb").hyper
        {'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-07, 'weight_decay': None}
    """

    name = "lamb"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        step = optax.chain(optax.scale_by_adam(h["beta_1"], h["beta_2"], h["epsilon"]),
                           optax.scale_by_trust_ratio(),
                           optax.scale_by_learning_rate(learning_rate))
        return decay_first(step, learning_rate, h["weight_decay"], self.weight_decay_mask)


class Adafactor(Optimizer):
    """Keras's Adafactor (Shazeer & Stern, 2018: second moments factored into row and column
    means, steps scaled by the weights' rms), update for update (`keras_adafactor`), with
    Keras's arguments and defaults.

    Example:
        >>> import kilnet
        >>> opt = kilnet.optimizers.Adafactor(clip_threshold=0.5)
        >>> opt.hyper["beta_2_decay"], opt.hyper["clip_threshold"], opt.hyper["relative_step"]
        (-0.8, 0.5, True)
    """

    name = "adafactor"
    defaults = {"beta_2_decay": -0.8, "epsilon_1": 1e-30, "epsilon_2": 1e-3,
                "clip_threshold": 1.0, "relative_step": True, "weight_decay": None}

    def core(self, learning_rate):
        h = {k: v for k, v in self.hyper.items() if k != "weight_decay"}
        # A chain of one: the state sits at [0], as for the other optimizers (keras_files).
        return decay_first(optax.chain(keras_adafactor(learning_rate, **h)), learning_rate,
                           self.hyper["weight_decay"], self.weight_decay_mask)


class Ftrl(Optimizer):
    """Keras's Ftrl (follow the regularized leader, McMahan et al., 2013), update for update
    (`keras_ftrl`), with Keras's arguments, defaults and checks.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.Ftrl(learning_rate_power=0.5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Ftrl's learning_rate_power must be zero or negative ... Received: learning_rate_power=0.5
    """

    name = "ftrl"
    defaults = {"learning_rate_power": -0.5, "initial_accumulator_value": 0.1,
                "l1_regularization_strength": 0.0, "l2_regularization_strength": 0.0,
                "l2_shrinkage_regularization_strength": 0.0, "beta": 0.0,
                "weight_decay": None}

    def __init__(self, learning_rate=0.001, **kwargs):
        super().__init__(learning_rate, **kwargs)
        h = self.hyper
        if h["learning_rate_power"] > 0:
            raise ValueError("Ftrl's learning_rate_power must be zero or negative (0 keeps the "
                             f"rate fixed). Received: learning_rate_power="
                             f"{h['learning_rate_power']}")
        for key in ("initial_accumulator_value", "l1_regularization_strength",
                    "l2_regularization_strength", "l2_shrinkage_regularization_strength"):
            if h[key] < 0:
                raise ValueError(f"Ftrl's {key} must be zero or positive. Received: "
                                 f"{key}={h[key]}")

    def core(self, learning_rate):
        h = {k: v for k, v in self.hyper.items() if k != "weight_decay"}
        # A chain of one: the state sits at [0], as for the other optimizers (keras_files).
        return decay_first(optax.chain(keras_ftrl(learning_rate, **h)), learning_rate,
                           self.hyper["weight_decay"], self.weight_decay_mask)


def _at_keras_step(learning_rate, steps_per_update):
    """The rate Optax injects at its n-th update (n from 0), given the schedule Keras calls
    with its raw step count: with gradient accumulation, updates fall on Keras's steps
    steps_per_update - 1, 2 * steps_per_update - 1, ... A constant rate is unchanged."""
    if not callable(learning_rate) or steps_per_update == 1:
        return learning_rate
    return lambda count: learning_rate(count * steps_per_update + steps_per_update - 1)


def _with_decay(parts, learning_rate, weight_decay, mask):
    if weight_decay:
        parts = parts + [decoupled_weight_decay(learning_rate, weight_decay, mask)]
    return optax.chain(*parts)


OPTIMIZER_TYPES = {cls.__name__: cls for cls in (Adam, AdamW, SGD, RMSprop, Adagrad, Nadam,
                                                 Adamax, Adadelta, Lion, Lamb, Adafactor,
                                                 Ftrl)}
_BY_NAME = {cls.name: cls for cls in OPTIMIZER_TYPES.values()}


def get(identifier):
    """Resolve a name ("adam"), a config (see deserialize), a kilnet Optimizer, or any Optax
    GradientTransformation.

    Example:
        >>> from kilnet import optimizers
        >>> type(optimizers.get("ftrl")).__name__, optimizers.get(
        ...     {"class_name": "Lamb", "config": {"learning_rate": 0.01}}).learning_rate
        ('Ftrl', 0.01)
    """
    if isinstance(identifier, (Optimizer, optax.GradientTransformation)):
        return identifier
    if isinstance(identifier, dict):   # a config, as Keras's get takes
        return deserialize(identifier)
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"Unknown optimizer: expected one of {sorted(_BY_NAME)}, a kilnet.optimizers object or "
        f"an optax.GradientTransformation. Received: optimizer={identifier!r}"
    )


# -- Keras's optimizer configs: serialize / deserialize ------------------------------------------
# Keras's base-optimizer settings in its configs' order, each at the value that leaves the
# update as kilnet computes it; a config with one of them at that value asks nothing of kilnet.
KERAS_BASE_CONFIG = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None,
                     "clipvalue": None, "use_ema": False, "ema_momentum": 0.99,
                     "ema_overwrite_frequency": None, "loss_scale_factor": None,
                     "gradient_accumulation_steps": None}


def serialize(optimizer) -> dict:
    """An optimizer's config as `keras.optimizers.serialize` gives it: {"module":
    "keras.optimizers", "class_name", "config" (every key Keras writes, a schedule as its own
    entry), "registered_name": None}.

    Example:
        >>> from kilnet import optimizers
        >>> entry = optimizers.serialize(optimizers.SGD(0.1, momentum=0.9, name="sgd"))
        >>> config = entry["config"]
        >>> entry["module"], entry["class_name"], config["name"], config["momentum"]
        ('keras.optimizers', 'SGD', 'sgd', 0.9)
    """
    name = type(optimizer).__name__
    if not isinstance(optimizer, Optimizer) or OPTIMIZER_TYPES.get(name) is not type(optimizer):
        raise ValueError("serialize takes one of kilnet.optimizers' optimizer classes (an Optax "
                         f"transformation has no Keras config). Received: {optimizer!r:.100}")
    own = optimizer.get_config()
    rate = own.pop("learning_rate")
    # Keras reads its rate back from a float32 variable (0.1 -> 0.10000000149011612), as
    # kilnet's compiled step holds it.
    config = {"name": own.pop("name"),
              "learning_rate": _schedule_entry(rate) if isinstance(rate, dict)
              else float(np.float32(rate)),
              **KERAS_BASE_CONFIG, **own}
    return {"module": "keras.optimizers", "class_name": name, "config": config,
            "registered_name": None}


def _schedule_entry(entry):
    """schedules.serialize's {"class_name", "config"} in Keras's form: Keras's own schedules
    under keras.optimizers.schedules, a registered class of yours under its registered name."""
    if entry["class_name"] in schedules.SCHEDULES:
        return {"module": "keras.optimizers.schedules", **entry, "registered_name": None}
    return {"module": None, "class_name": entry["class_name"].split(">")[-1],
            "config": entry["config"], "registered_name": entry["class_name"]}


def deserialize(config) -> Optimizer:
    """The optimizer a config describes: Keras's `serialize` form ({"module", "class_name",
    "config", "registered_name"}) or the plain {"class_name", "config"}, the class name in any
    case ("adam" or "Adam"), a learning-rate schedule inside as its own entry, `name` naming
    the optimizer. Keras's settings at their neutral values (`KERAS_BASE_CONFIG`) are accepted
    and dropped.

    Example:
        >>> from kilnet import optimizers
        >>> opt = optimizers.deserialize({"class_name": "adam", "config": {"learning_rate": 0.01,
        ...                                                              "use_ema": False}})
        >>> type(opt).__name__, opt.learning_rate
        ('Adam', 0.01)
    """
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) \
            or not isinstance(config.get("config", {}), dict):
        raise ValueError("deserialize takes {'class_name': ..., 'config': {...}} (as "
                         f"serialize gives). Received: config={config!r:.120}")
    cls = _BY_NAME.get(config["class_name"].lower())
    if cls is None:
        raise ValueError(f"Unknown optimizer class_name: expected one of "
                         f"{sorted(OPTIMIZER_TYPES)} (in any case). Received: "
                         f"class_name={config['class_name']!r}")
    kwargs = {}
    accepted = {"name", "learning_rate", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                "ema_momentum", "ema_overwrite_frequency", "gradient_accumulation_steps",
                *cls.defaults}
    neutral = KERAS_BASE_CONFIG
    for key, value in (config.get("config") or {}).items():
        if key in accepted:
            kwargs[key] = value
        elif key in neutral and value != neutral[key]:
            raise ValueError(f"kilnet's {cls.__name__} has no {key} other than "
                             f"{neutral[key]!r}; leave it out of the config. Received: "
                             f"{key}={value!r}")
        elif key not in neutral:
            kwargs[key] = value   # the constructor names what it does not know
    rate = kwargs.get("learning_rate")
    if isinstance(rate, dict):
        kwargs["learning_rate"] = schedules.deserialize(
            {"class_name": rate.get("registered_name") or rate.get("class_name"),
             "config": rate.get("config") or {}})
    return cls(**kwargs)


def upgrade_saved_state(optimizer, tensors: dict) -> dict:
    """Optimizer-state arrays ("opt/..." names) saved by an earlier kilnet, in today's layout.
    kilnet 0.1's Nadam was Optax's, whose state is (count, mu, nu) under `inner_state/0`;
    Keras's Nadam, today's, keeps the same two moments (the same running averages) plus
    u_product, the product of the momentum schedule, which the step count determines. Other
    optimizers and current files come back unchanged.

    Example:
        >>> import numpy as np
        >>> from kilnet import optimizers
        >>> old = {"opt/0/inner_state/0/count": np.int32(2),
        ...        "opt/0/inner_state/0/mu/w": np.zeros(2, np.float32)}
        >>> new = optimizers.upgrade_saved_state(optimizers.Nadam(), old)
        >>> sorted(new), round(float(new["opt/0/inner_state/u_product"]), 4)
        (['opt/0/inner_state/count', 'opt/0/inner_state/mu/w', 'opt/0/inner_state/u_product'], 0.2271)
    """
    if not isinstance(optimizer, Nadam):
        return tensors
    counts = [n for n in tensors if n.endswith("/inner_state/0/count")]
    if len(counts) != 1:
        return tensors
    old = counts[0][:-len("count")]
    new = old[:-len("0/")]
    if new + "count" in tensors:
        return tensors
    out = {(new + n[len(old):] if n.startswith(old) else n): a for n, a in tensors.items()}
    steps = np.arange(1, int(np.asarray(tensors[counts[0]])) + 1, dtype=np.float32)
    # Keras's schedule (nadam_momentum) for every step at once, in NumPy: a long run's file
    # loads without one JAX call per step. cumprod multiplies in order, as the update does.
    u = np.float32(optimizer.hyper["beta_1"]) * (
        np.float32(1.0) - np.float32(0.5) * np.power(np.float32(0.96), steps))
    u_product = np.cumprod(u, dtype=np.float32)[-1] if steps.size else np.float32(1.0)
    out[new + "u_product"] = np.asarray(u_product, np.float32)
    return out


def keeps_non_finite(optimizer) -> bool:
    """Whether a non-finite gradient always leaves a non-finite value in the weights or the
    optimizer state after one update of `optimizer`: true of kilnet's own optimizers (each
    one's update of an inf or NaN gradient is inf or NaN, tests/test_nonfinite_update.py checks
    every one), false with clipvalue (it clips inf to a finite bound) and for an Optax
    transformation of the user's, whose update kilnet cannot know. The compiled step checks
    the gradient itself only where this is false (kilnet.programs).

    Example:
        >>> from kilnet import optimizers
        >>> optimizers.keeps_non_finite(optimizers.Adam()), optimizers.keeps_non_finite(
        ...     optimizers.SGD(clipvalue=1.0))
        (True, False)
    """
    return (isinstance(optimizer, Optimizer) and type(optimizer) in OPTIMIZER_TYPES.values()
            and optimizer.clipvalue is None)


def transformation(optimizer) -> optax.GradientTransformation:
    """The Optax transformation of a kilnet optimizer (or a LossScaleOptimizer), or the
    Optax transformation given."""
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    return optimizer.transformation()


class Rate(float):
    """A constant learning rate as `optimizer.learning_rate` gives it: the number, which also
    answers what code written for Keras's rate Variable calls (`assign`, `numpy()`, `value`)."""

    def __new__(cls, value, optimizer):
        rate = super().__new__(cls, float(value))
        rate._optimizer = optimizer
        return rate

    def assign(self, value) -> None:
        """Set the optimizer's learning rate (as `optimizer.learning_rate = value`)."""
        self._optimizer.learning_rate = float(value)

    def numpy(self):
        return np.float32(self)

    @property
    def value(self) -> float:
        return float(self)


class ScheduledRate(float):
    """A schedule's rate as `optimizer.learning_rate` gives it: the rate of the next step (a
    float, as Keras's), still callable as the schedule itself (`rate(step)`)."""

    def __new__(cls, schedule, step: int):
        rate = super().__new__(cls, float(schedule(step)))
        rate.schedule = schedule
        return rate

    def __call__(self, step):
        return self.schedule(step)

    def assign(self, value) -> None:
        raise TypeError("The learning rate comes from a schedule, computed at each step: to "
                        "use a constant rate, set optimizer.learning_rate = value (on a "
                        "compiled model, compile again). Received: assign("
                        f"{value!r}) on a rate of {type(self.schedule).__name__}")

    def numpy(self):
        return np.float32(self)

    @property
    def value(self) -> float:
        return float(self)


def step_count(opt_state) -> int:
    """The updates an optimizer state has made (its injected hyperparameters' count)."""
    states = _hyperparam_states(opt_state)
    return int(states[0].count) if states else 0


def overrides_apply(optimizer) -> bool:
    """Whether `optimizer` is of a subclass of yours whose `apply` changes what kilnet's
    does (see Optimizer.gradients_of_apply).

    Example:
        >>> from kilnet import optimizers
        >>> class Centered(optimizers.SGD):
        ...     def apply(self, grads, trainable_variables=None):
        ...         return super().apply([g - g.mean() for g in grads], trainable_variables)
        >>> overrides_apply(Centered()), overrides_apply(optimizers.SGD())
        (True, False)
    """
    return type(optimizer).apply is not Optimizer.apply


def _through_your_apply(optimizer, tx) -> optax.GradientTransformation:
    """`tx` fed the gradients the optimizer's own apply() passes on (gradients_of_apply),
    except inside kilnet's apply, reached after yours has already run."""

    def update(grads, state, params=None):
        if not optimizer.__dict__.get("_apply_has_run"):
            grads = optimizer.gradients_of_apply(grads, params)
        return tx.update(grads, state, params)

    return optax.GradientTransformation(tx.init, update)


@contextlib.contextmanager
def _apply_has_run(optimizer):
    """Marks an optimizer's apply() as running its update (see _through_your_apply)."""
    optimizer._apply_has_run = True
    try:
        yield
    finally:
        optimizer.__dict__.pop("_apply_has_run", None)


class _OwnState(NamedTuple):
    """What `Optimizer.build(var_list)` made: the transformation, its initial state (the
    structure and dtypes the variables are read back into), the variables it updates, the
    Variables holding the state as a list, and how that list reads (keras_variables)."""
    tx: Any
    template: Any
    targets: list
    variables: list
    layout: Any


def _as_list(tree, values) -> list:
    """A built optimizer's params-shaped trees are lists: `values` as one."""
    return list(values)


def _value_of(target):
    return target.value if isinstance(target, Variable) else jnp.asarray(target)


def _values_of(argument: str, values, expected: int) -> list:
    values = [_value_of(v) for v in values]
    if len(values) != expected:
        raise ValueError(f"{argument} must hold {expected} values, one for each variable "
                         f"optimizer.build was given, in that order. Received: {len(values)}")
    return values


def _check_ema(momentum, overwrite_frequency):
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) \
            or not 0 <= momentum <= 1:
        raise ValueError("ema_momentum must be a number in [0, 1], e.g. 0.99. Received: "
                         f"ema_momentum={momentum!r}")
    if overwrite_frequency is not None and (isinstance(overwrite_frequency, bool) or not
                                            isinstance(overwrite_frequency, int)
                                            or overwrite_frequency < 1):
        raise ValueError("ema_overwrite_frequency must be an integer >= 1 or None. Received: "
                         f"ema_overwrite_frequency={overwrite_frequency!r}")


def _check_learning_rate(value):
    if callable(value):
        return
    # A non-finite rate would turn finite gradients into non-finite parameters.
    # 0 is allowed, as Keras allows it (a frozen run, a test of the loop).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ValueError(
            "learning_rate must be a number >= 0 or a schedule (a function of the step). "
            f"Received: learning_rate={value!r}"
        )


# -- the learning rate inside an optimizer state, for callbacks ----------------------------------
# Recent optax (0.2.8 here) builds inject_hyperparams on InjectStatefulHyperparamsState, a
# class distinct from InjectHyperparamsState: match either.
_INJECT_STATES = tuple(getattr(optax, name) for name in
                       ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
                       if hasattr(optax, name))


def _hyperparam_states(opt_state):
    is_inject = lambda s: isinstance(s, _INJECT_STATES)
    return [s for s in jax.tree.leaves(opt_state, is_leaf=is_inject) if is_inject(s)]


def get_learning_rate(opt_state) -> float:
    states = _hyperparam_states(opt_state)
    if not states:
        raise ValueError(
            "This optimizer does not expose its learning rate (a raw Optax transformation). "
            "Use a kilnet.optimizers class, e.g. kilnet.optimizers.Adam(learning_rate=1e-3)."
        )
    return float(states[0].hyperparams["learning_rate"])  # host sync: callbacks only


def set_learning_rate(opt_state, value: float):
    """A new optimizer state with the learning rate replaced (same structure: no recompile)."""
    _check_learning_rate(value)
    is_inject = lambda s: isinstance(s, _INJECT_STATES)

    def replace(s):
        if not is_inject(s):
            return s
        old = s.hyperparams["learning_rate"]
        return s._replace(hyperparams={**s.hyperparams,
                                       "learning_rate": jnp.asarray(value, old.dtype)})

    if not _hyperparam_states(opt_state):
        get_learning_rate(opt_state)  # raises the explanatory error
    return jax.tree.map(replace, opt_state, is_leaf=is_inject)


# -- the initial optimizer state, without compiling --------------------------------------------
# Optax's init functions only fill arrays with constants (zeros, a learning rate, an initial
# accumulator). Run eagerly, each jnp op compiles on first use (0.42 s for Adam on the seed
# MLP); jitted, the one program still compiles in 0.10 s of a 1.8 s cold fit. Evaluating the
# traced init with NumPy costs a few milliseconds; other primitives fall back to jax.jit.
_HOST_PRIMITIVES = {
    "broadcast_in_dim": lambda x, *, shape, broadcast_dimensions, **_: np.broadcast_to(
        np.expand_dims(x, tuple(i for i in range(len(shape)) if i not in broadcast_dimensions))
        if np.ndim(x) else x, shape),
    "mul": lambda a, b, **_: np.multiply(a, b),
    "add": lambda a, b, **_: np.add(a, b),
    "convert_element_type": lambda x, *, new_dtype, **_: np.asarray(x, new_dtype),
}


def init_state(tx: optax.GradientTransformation, params):
    """tx.init(params), evaluated on the host when its trace allows, then put on the device."""
    closed = jax.make_jaxpr(tx.init)(params)
    jaxpr = closed.jaxpr
    if any(eqn.primitive.name not in _HOST_PRIMITIVES for eqn in jaxpr.eqns):
        return jax.jit(tx.init)(params)
    env = {}

    def read(atom):
        return atom.val if isinstance(atom, jax_core.Literal) else env[atom]

    for var, value in zip(jaxpr.constvars, closed.consts):
        env[var] = np.asarray(value)
    for var, value in zip(jaxpr.invars, jax.tree.leaves(params)):
        env[var] = value
    for eqn in jaxpr.eqns:
        inputs = [np.asarray(read(v)) for v in eqn.invars]
        out = _HOST_PRIMITIVES[eqn.primitive.name](*inputs, **eqn.params)
        env[eqn.outvars[0]] = out
    leaves = [np.array(read(v), dtype=v.aval.dtype) for v in jaxpr.outvars]
    structure = jax.tree.structure(jax.eval_shape(tx.init, params))
    return jax.device_put(jax.tree.unflatten(structure, leaves))

from kilnet.loss_scale import LossScaleOptimizer  # noqa: E402,F401  (Keras's name here)
