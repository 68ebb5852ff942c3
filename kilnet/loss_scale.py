"""Dynamic loss scaling for float16 training: Keras's LossScaleOptimizer.

float16 has 5 exponent bits: gradients below about 6e-8 underflow to zero. The compiled step
multiplies the loss by a large scale before differentiating (kilnet.programs), so the
gradients are computed scaled, and this optimizer divides them by the same scale before the
wrapped optimizer's update. When the scaled gradients overflow (inf or NaN), the step is
skipped (weights and the inner optimizer's state unchanged) and the scale halved; after
`dynamic_growth_steps` finite steps in a row, the scale doubles. These are Keras 3's rules
(keras/src/optimizers/loss_scale_optimizer.py), written as one Optax transformation whose
state carries the step counter and the scale, so the scale lives in the training state.

A skipped step is expected here, not a fault: the step's weights and optimizer state stay
finite on purpose, and kilnet's non-finite guard (kilnet.programs.train_step) does not
require finite gradients under this optimizer; a non-finite loss still stops fit.

compile() wraps the optimizer in one automatically when the model's dtype policy is
"mixed_float16", as Keras does.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax


class LossScaleState(NamedTuple):
    """The optimizer state: Keras's `step_counter` and `dynamic_scale`, then the inner
    optimizer's state."""

    step_counter: jax.Array
    dynamic_scale: jax.Array
    inner: Any


class LossScaleOptimizer:
    """An optimizer that scales the loss dynamically so float16 gradients do not underflow
    (Keras's `keras.optimizers.LossScaleOptimizer`).

    Args:
        inner_optimizer: the optimizer to wrap: a kilnet.optimizers object (or an Optax
            GradientTransformation).
        initial_scale: the loss scale of the first step (Keras: 2**15).
        dynamic_growth_steps: the scale doubles after this many steps in a row with finite
            gradients (Keras: 2000).
        name: the optimizer's name.

    Example:
        >>> from kilnet import optimizers
        >>> opt = optimizers.LossScaleOptimizer(optimizers.SGD(0.1), initial_scale=8.0)
        >>> opt.initial_scale, opt.dynamic_growth_steps, opt.learning_rate
        (8.0, 2000, 0.1)
    """

    def __init__(self, inner_optimizer, initial_scale=2.0 ** 15, dynamic_growth_steps=2000,
                 name=None, **kwargs):
        if kwargs.pop("dynamic", True) is not True:
            raise ValueError("LossScaleOptimizer scales dynamically only, as Keras 3: to scale "
                             "by a fixed factor, scale the loss yourself. Received: "
                             "dynamic=False")
        if kwargs:
            raise ValueError(f"LossScaleOptimizer does not take {sorted(kwargs)}; set them on "
                             f"the inner optimizer. Received: {kwargs!r:.200}")
        if isinstance(inner_optimizer, LossScaleOptimizer) or not (
                callable(getattr(inner_optimizer, "build", None))
                or isinstance(inner_optimizer, optax.GradientTransformation)):
            raise TypeError("inner_optimizer must be a kilnet optimizer, e.g. "
                            "kilnet.optimizers.Adam(), or an Optax GradientTransformation. "
                            f"Received: inner_optimizer={inner_optimizer!r:.100}")
        if isinstance(initial_scale, bool) or not isinstance(initial_scale, (int, float)) \
                or not 0 < initial_scale < math.inf:
            raise ValueError("initial_scale must be a positive finite number, e.g. 2**15. "
                             f"Received: initial_scale={initial_scale!r}")
        if isinstance(dynamic_growth_steps, bool) or not isinstance(dynamic_growth_steps, int) \
                or dynamic_growth_steps < 1:
            raise ValueError("dynamic_growth_steps must be a positive integer, e.g. 2000. "
                             f"Received: dynamic_growth_steps={dynamic_growth_steps!r}")
        self.inner_optimizer = inner_optimizer
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = dynamic_growth_steps
        self.name = name or "loss_scale_optimizer"

    @property
    def learning_rate(self):
        """The inner optimizer's learning rate (setting it sets the inner one's)."""
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def attach(self, trainer) -> None:
        """compile() tells the inner optimizer which Trainer holds its state."""
        if callable(getattr(self.inner_optimizer, "attach", None)):
            self.inner_optimizer.attach(trainer)

    def finalize_variable_values(self, var_list) -> None:
        """The inner optimizer's finalize_variable_values (Keras's): its moving averages
        (use_ema=True) into `var_list`; nothing for an Optax transformation.

        Example:
            >>> import numpy as np
            >>> from kilnet import optimizers
            >>> from kilnet.variables import Variable
            >>> w = Variable(np.zeros(1, np.float32), name="w")
            >>> inner = optimizers.SGD(learning_rate=1.0, use_ema=True, ema_momentum=0.5)
            >>> for _ in range(2):
            ...     inner.apply([np.ones(1, np.float32)], [w])
            >>> optimizers.LossScaleOptimizer(inner).finalize_variable_values([w])
            >>> w.numpy().tolist()
            [-1.5]
        """
        finalize = getattr(self.inner_optimizer, "finalize_variable_values", None)
        if callable(finalize):
            finalize(var_list)

    def transformation(self) -> optax.GradientTransformation:
        """The Optax transformation: unscale, then the inner update, or skip and halve."""
        inner = self.inner_optimizer
        inner_tx = (inner if isinstance(inner, optax.GradientTransformation)
                    else inner.transformation())
        return scaled_transformation(inner_tx, self.initial_scale, self.dynamic_growth_steps)

    def get_config(self) -> dict:
        if not callable(getattr(self.inner_optimizer, "get_config", None)):
            raise ValueError("A LossScaleOptimizer around an Optax transformation cannot be "
                             "saved: wrap a kilnet optimizer instead.")
        return {"name": self.name,
                "inner_optimizer": {"class_name": type(self.inner_optimizer).__name__,
                                    "config": self.inner_optimizer.get_config()},
                "initial_scale": self.initial_scale,
                "dynamic_growth_steps": self.dynamic_growth_steps}

    def __repr__(self):
        return (f"LossScaleOptimizer({self.inner_optimizer!r}, "
                f"initial_scale={self.initial_scale!r}, "
                f"dynamic_growth_steps={self.dynamic_growth_steps!r})")


def scaled_transformation(inner_tx: optax.GradientTransformation, initial_scale: float,
                          dynamic_growth_steps: int) -> optax.GradientTransformation:
    """Keras's dynamic loss scaling around `inner_tx`, for gradients of the scaled loss."""

    def init(params):
        return LossScaleState(jnp.zeros((), jnp.int32), jnp.asarray(initial_scale, jnp.float32),
                              inner_tx.init(params))

    def update(grads, state, params=None):
        def finite_step(_):
            # Unscaled by the scale the loss was multiplied by, before it may grow.
            unscaled = jax.tree.map(lambda g: g / state.dynamic_scale, grads)
            updates, inner = inner_tx.update(unscaled, state.inner, params)
            grow = state.step_counter == dynamic_growth_steps - 1
            return updates, LossScaleState(
                jnp.where(grow, 0, state.step_counter + 1).astype(jnp.int32),
                jnp.where(grow, state.dynamic_scale * 2.0, state.dynamic_scale),
                inner)

        def skipped_step(_):
            updates = jax.tree.map(jnp.zeros_like, grads)
            return updates, LossScaleState(jnp.zeros((), jnp.int32),
                                           state.dynamic_scale * 0.5, state.inner)

        return lax.cond(all_finite(grads), finite_step, skipped_step, None)

    return optax.GradientTransformation(init, update)


def current_scale(opt_state) -> jax.Array:
    """The loss scale of the next step, from the state of a LossScaleOptimizer's
    transformation (what the compiled step multiplies the loss by).

    Example:
        >>> import numpy as np
        >>> from kilnet import optimizers
        >>> from kilnet.loss_scale import current_scale
        >>> tx = optimizers.LossScaleOptimizer(optimizers.SGD(0.1),
        ...                                    initial_scale=4.0).transformation()
        >>> float(current_scale(tx.init({"w": np.zeros(2, np.float32)})))
        4.0
    """
    if not isinstance(opt_state, LossScaleState):
        raise TypeError("current_scale needs the state of a LossScaleOptimizer's "
                        f"transformation. Received: {type(opt_state).__name__}")
    return opt_state.dynamic_scale


def all_finite(tree) -> jax.Array:
    """True when every element of every array in `tree` is finite (Keras's check_finite)."""
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)
