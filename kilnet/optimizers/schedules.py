"""Learning-rate schedules with Keras's classes, arguments, configs and formulas
(`kilnet.optimizers.schedules`), and the base class for your own.

A schedule is called with the optimizer's step count (0 at the first update, as Keras's
`optimizer.iterations`) inside the compiled training step, so `__call__` is written with
`kilnet.ops` or `jax.numpy` and returns a float32 scalar. Each formula is Keras's, written out
here rather than mapped onto Optax's schedules: Keras's InverseTimeDecay, its restarts
(`t_mul`, `m_mul`) and its linear warmup before a cosine decay have no exact Optax equivalent,
and one form for all keeps them checkable against Keras line by line (tests/test_schedules.py).

Schedules save with the optimizer (in .kilnet and Keras's .keras files) by their configs; a
schedule class of yours is saved under its registered name (kilnet.saving.register_serializable)
and needs a `get_config`, as in Keras.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from kilnet import _registry


class LearningRateSchedule:
    """Base class of the schedules, as Keras's: subclass it with `__call__(self, step)`
    (step: the optimizer's step count, an integer scalar inside the compiled step) and, to save
    it, `get_config`.

    Example:
        >>> import kilnet
        >>> from kilnet import ops
        >>> class InverseSqrt(kilnet.optimizers.schedules.LearningRateSchedule):
        ...     def __init__(self, warmup_steps=4000):
        ...         self.warmup_steps = warmup_steps
        ...     def __call__(self, step):
        ...         step = ops.cast(step, "float32") + 1.0
        ...         return ops.minimum(step ** -0.5, step * self.warmup_steps ** -1.5)
        ...     def get_config(self):
        ...         return {"warmup_steps": self.warmup_steps}
        >>> optimizer = kilnet.optimizers.Adam(learning_rate=InverseSqrt())
        >>> round(float(InverseSqrt(100)(99)), 4)
        0.1
    """

    def __call__(self, step):
        raise NotImplementedError(f"The learning-rate schedule {type(self).__name__} must "
                                  "define __call__(self, step).")

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"The learning-rate schedule {type(self).__name__} has no get_config(), so it "
            "cannot be saved: define get_config() to return its constructor arguments (and "
            "register the class with @kilnet.saving.register_serializable()).")

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


class _StepDecay(LearningRateSchedule):
    """What ExponentialDecay and InverseTimeDecay share: their arguments, and the decay's
    progress `step / decay_steps`, floored with `staircase=True`."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase, name):
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _number(decay_rate, "decay_rate")
        self.staircase, self.name = bool(staircase), name

    def __call__(self, step):
        p = _float(step) / self.decay_steps
        return self._decayed(jnp.floor(p) if self.staircase else p)

    def _decayed(self, p):
        raise NotImplementedError

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StepDecay):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)`, the exponent floored with
    `staircase=True`, as Keras's ExponentialDecay.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
        >>> [round(float(schedule(s)), 4) for s in (0, 10, 15)]
        [0.1, 0.05, 0.0354]
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decayed(self, p):
        return self.initial_learning_rate * jnp.float32(self.decay_rate) ** p


class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[0]` while step <= boundaries[0], `values[1]` while step <= boundaries[1], ...,
    `values[-1]` after the last boundary, as Keras's PiecewiseConstantDecay.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.PiecewiseConstantDecay([10, 20],
        ...                                                              [1.0, 0.5, 0.1])
        >>> [round(float(schedule(s)), 2) for s in (0, 10, 11, 20, 21)]
        [1.0, 1.0, 0.5, 0.5, 0.1]
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "PiecewiseConstantDecay takes one more value than boundaries. Received: "
                f"boundaries={boundaries} ({len(boundaries)}), values={values} "
                f"({len(values)})")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError("PiecewiseConstantDecay's boundaries must increase strictly. "
                             f"Received: boundaries={boundaries}")
        self.boundaries = [_number(b, "boundaries") for b in boundaries]
        self.values = [_number(v, "values") for v in values]
        self.name = name

    def __call__(self, step):
        # the value of the first interval the step is in: how many boundaries it is beyond
        index = jnp.searchsorted(jnp.asarray(self.boundaries, jnp.float32), _float(step),
                                 side="left")
        return jnp.asarray(self.values, jnp.float32)[index]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From initial_learning_rate to end_learning_rate in decay_steps along
    `(1 - step / decay_steps) ** power`, then constant (or, with `cycle=True`, again over the
    next multiple of decay_steps), as Keras's PolynomialDecay.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.PolynomialDecay(0.1, 10, 0.01)
        >>> [round(float(schedule(s)), 3) for s in (0, 5, 10, 50)]
        [0.1, 0.055, 0.01, 0.01]
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.end_learning_rate = _number(end_learning_rate, "end_learning_rate")
        self.power = _number(power, "power")
        self.cycle, self.name = bool(cycle), name

    def __call__(self, step):
        step, decay_steps = _float(step), jnp.float32(self.decay_steps)
        if self.cycle:   # the first multiple of decay_steps not below the step (1 at step 0)
            decay_steps = decay_steps * jnp.where(step == 0, 1.0, jnp.ceil(step / decay_steps))
        else:
            step = jnp.minimum(step, decay_steps)
        fraction_left = 1.0 - step / decay_steps
        return ((self.initial_learning_rate - self.end_learning_rate)
                * fraction_left ** self.power + self.end_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(_StepDecay):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)`, the ratio floored with
    `staircase=True`, as Keras's InverseTimeDecay.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.InverseTimeDecay(0.1, 10, 1.0)
        >>> [round(float(schedule(s)), 4) for s in (0, 10, 30)]
        [0.1, 0.05, 0.025]
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def _decayed(self, p):
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class CosineDecay(LearningRateSchedule):
    """A cosine from the rate to `alpha` times it over decay_steps (Loshchilov & Hutter), after
    an optional linear warmup from initial_learning_rate to warmup_target over warmup_steps,
    as Keras's CosineDecay.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.CosineDecay(
        ...     0.0, 100, warmup_target=0.1, warmup_steps=10)
        >>> [round(float(schedule(s)), 4) for s in (0, 5, 10, 60, 110)]
        [0.0, 0.05, 0.1, 0.05, 0.0]
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.alpha = _number(alpha, "alpha")
        self.name = name
        self.warmup_target = (None if warmup_target is None
                              else _number(warmup_target, "warmup_target"))
        self.warmup_steps = _number(warmup_steps, "warmup_steps")

    def __call__(self, step):
        step = _float(step)
        if self.warmup_target is None:
            return self._decayed(jnp.minimum(step, self.decay_steps), self.initial_learning_rate)
        step = jnp.minimum(step, self.decay_steps + self.warmup_steps)
        warmup = (self.initial_learning_rate + (self.warmup_target - self.initial_learning_rate)
                  * step / max(self.warmup_steps, 1e-30))
        return jnp.where(step < self.warmup_steps, warmup,
                         self._decayed(step - self.warmup_steps, self.warmup_target))

    def _decayed(self, step, start):
        cosine = 0.5 * (1.0 + jnp.cos(jnp.float32(math.pi) * step / self.decay_steps))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decays with warm restarts (SGDR, Loshchilov & Hutter): the first over
    first_decay_steps, each next one `t_mul` times longer and starting from `m_mul` times the
    previous start, down to `alpha` times it, as Keras's CosineDecayRestarts.

    Example:
        >>> import kilnet
        >>> schedule = kilnet.optimizers.schedules.CosineDecayRestarts(0.1, 10)
        >>> [round(float(schedule(s)), 4) for s in (0, 5, 10, 20, 30)]
        [0.1, 0.05, 0.1, 0.05, 0.1]
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = _rate(initial_learning_rate, "initial_learning_rate")
        self.first_decay_steps = _positive(first_decay_steps, "first_decay_steps")
        self.t_mul = _positive(t_mul, "t_mul")
        self.m_mul = _number(m_mul, "m_mul")
        self.alpha = _number(alpha, "alpha")
        self.name = name

    def __call__(self, step):
        fraction = _float(step) / self.first_decay_steps
        if self.t_mul == 1.0:   # periods of equal length
            restart = jnp.floor(fraction)
            fraction = fraction - restart
        else:   # period i lasts t_mul**i: which one the step is in, and how far into it
            t_mul = jnp.float32(self.t_mul)
            restart = jnp.floor(jnp.log(1.0 - fraction * (1.0 - t_mul)) / jnp.log(t_mul))
            done = (1.0 - t_mul ** restart) / (1.0 - t_mul)
            fraction = (fraction - done) / t_mul ** restart
        cosine = 0.5 * jnp.float32(self.m_mul) ** restart * (
            1.0 + jnp.cos(jnp.float32(math.pi) * fraction))
        return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


SCHEDULES = {cls.__name__: cls for cls in (
    ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay, CosineDecay,
    CosineDecayRestarts)}


def serialize(schedule) -> dict:
    """A schedule as {"class_name", "config"} (a class of yours under its registered name).

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.schedules.serialize(
        ...     kilnet.optimizers.schedules.InverseTimeDecay(0.1, 100, 0.5))["class_name"]
        'InverseTimeDecay'
    """
    if not isinstance(schedule, LearningRateSchedule):
        raise ValueError(
            "Only a kilnet.optimizers.schedules.LearningRateSchedule can be saved as a learning "
            "rate; a plain function cannot. Write it as a LearningRateSchedule subclass with "
            f"get_config(). Received: {schedule!r:.100}")
    return {"class_name": _registry.name_of(type(schedule)) or type(schedule).__name__,
            "config": schedule.get_config()}


def deserialize(config) -> LearningRateSchedule:
    """The schedule a config describes: one of kilnet's (Keras's) schedules or a class
    registered with kilnet.saving.register_serializable; nothing else is created.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.schedules.deserialize({"class_name": "CosineDecay",
        ...     "config": {"initial_learning_rate": 0.1, "decay_steps": 1000}})
        CosineDecay(initial_learning_rate=0.1, decay_steps=1000, alpha=0.0, name='CosineDecay', warmup_target=None, warmup_steps=0)
    """
    return _registry.from_config_entry(config, SCHEDULES, LearningRateSchedule,
                                       "learning-rate schedule")


# -- helpers ---------------------------------------------------------------------------------------
def _float(step):
    return jnp.asarray(step).astype(jnp.float32)


def _number(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value):
        raise ValueError(f"{argument} must be a finite number. Received: {argument}={value!r}")
    return value


def _positive(value, argument):
    if _number(value, argument) <= 0:
        raise ValueError(f"{argument} must be > 0. Received: {argument}={value!r}")
    return value


def _rate(value, argument):
    if _number(value, argument) < 0:
        raise ValueError(f"{argument} must be >= 0. Received: {argument}={value!r}")
    return value
