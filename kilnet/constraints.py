"""Weight constraints with Keras's names: `MaxNorm`, `NonNeg`, `UnitNorm`, `MinMaxNorm`
("max_norm", "non_neg", "unit_norm", "min_max_norm").

Why a module of its own: a constraint is a small configurable object that a layer holds for one
of its weights (`Dense(kernel_constraint="max_norm")`, `add_weight(constraint=...)`), saves in
its config, and that projects the weight back into the allowed set after every optimizer update,
as Keras's optimizers do. The compiled training step applies it right after the update
(kilnet.programs), so the weights fit sees at every step are the projected ones.

In a saved config a constraint is Keras's entry `{"module": "keras.constraints", "class_name":
"MaxNorm", "config": {"max_value": 2, ...}, "registered_name": None}`, rebuilt by `get` from this
module's own classes and registered subclasses only (a file never names code to import).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from kilnet import _small_objects, config

# Keras's backend.epsilon(): what the norm-based constraints add to the norm they divide by.


def _number(value, argument: str, *, low=0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or value < low:
        raise ValueError(f"{argument} must be a finite number >= {low}. "
                         f"Received: {argument}={value!r}")
    return value


def _axis(value):
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(a, int) and not isinstance(a, bool) for a in value):
        return list(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError("axis must be an integer or a list of integers (the axes a weight's "
                     f"norm is taken over). Received: axis={value!r}")


def _norms(w, axis):
    axis = tuple(axis) if isinstance(axis, list) else axis
    return jnp.sqrt(jnp.sum(jnp.square(w), axis=axis, keepdims=True))


class Constraint(_small_objects.SmallObject):
    """Base class: `constraint(w)` returns `w` projected into the allowed set (unchanged here).
    Subclass it and override `__call__` for your own, as in Keras.

    Example:
        >>> import numpy as np
        >>> from kilnet import constraints
        >>> np.asarray(constraints.Constraint()(np.array([1.0, -2.0]))).tolist()
        [1.0, -2.0]
    """

    def __call__(self, w):
        return w


class MaxNorm(Constraint):
    """Scales each weight vector (the norm over `axis`) down to at most `max_value`.

    Example:
        >>> import numpy as np
        >>> from kilnet import constraints
        >>> w = np.array([[3.0], [4.0]])   # one column of norm 5
        >>> print(np.asarray(constraints.MaxNorm(max_value=1.0)(w)).ravel().round(4))
        [0.6 0.8]
    """

    def __init__(self, max_value=2, axis=0):
        self.max_value = _number(max_value, "max_value")
        self.axis = _axis(axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = jnp.clip(norms, 0, self.max_value)
        return w * (desired / (config.epsilon() + norms))

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Negative entries become 0.

    Example:
        >>> import numpy as np
        >>> from kilnet import constraints
        >>> np.asarray(constraints.NonNeg()(np.array([1.5, -2.0]))).tolist() == [1.5, 0.0]
        True
    """

    def __call__(self, w):
        # Keras's formula, a product with the mask rather than a maximum: -inf becomes NaN, not
        # 0, so a non-finite weight stays visible to the training loop's check.
        w = jnp.asarray(w)
        return w * (w >= 0).astype(w.dtype)


class UnitNorm(Constraint):
    """Each weight vector (the norm over `axis`) scaled to norm 1.

    Example:
        >>> import numpy as np
        >>> from kilnet import constraints
        >>> print(np.asarray(constraints.UnitNorm()(np.array([[3.0], [4.0]]))).ravel().round(4))
        [0.6 0.8]
    """

    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        return w / (config.epsilon() + _norms(w, self.axis))

    def get_config(self) -> dict:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Each weight vector's norm moved into [min_value, max_value], by the fraction `rate`
    of the way per update (rate 1: all the way).

    Example:
        >>> import numpy as np
        >>> from kilnet import constraints
        >>> c = constraints.MinMaxNorm(min_value=1.0, max_value=2.0)
        >>> print(np.asarray(c(np.array([[0.3], [0.4]]))).ravel().round(4))   # norm 0.5 -> 1
        [0.6 0.8]
    """

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = _number(min_value, "min_value")
        self.max_value = _number(max_value, "max_value")
        if self.max_value < self.min_value:
            raise ValueError("max_value must be >= min_value. Received: "
                             f"min_value={min_value!r}, max_value={max_value!r}")
        self.rate = _number(rate, "rate")
        self.axis = _axis(axis)

    def __call__(self, w):
        norms = _norms(w, self.axis)
        desired = (self.rate * jnp.clip(norms, self.min_value, self.max_value)
                   + (1 - self.rate) * norms)
        return w * (desired / (config.epsilon() + norms))

    def get_config(self) -> dict:
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


# Keras's lower-case aliases
max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_BY_NAME = {"Constraint": Constraint, "MaxNorm": MaxNorm, "NonNeg": NonNeg,
            "UnitNorm": UnitNorm, "MinMaxNorm": MinMaxNorm, "max_norm": MaxNorm,
            "non_neg": NonNeg, "unit_norm": UnitNorm, "min_max_norm": MinMaxNorm}


def serialize(constraint):
    """A constraint as Keras's `constraints.serialize` writes it: {"module":
    "keras.constraints", "class_name", "config", "registered_name": None} (a registered class
    of yours under its module and registered name); None and a name stay as they are.

    Example:
        >>> from kilnet import constraints
        >>> constraints.serialize(constraints.NonNeg())
        {'module': 'keras.constraints', 'class_name': 'NonNeg', 'config': {}, \
'registered_name': None}
    """
    return _small_objects.serialize(constraint, _BY_NAME, Constraint, "keras.constraints",
                                    "constraint")


def deserialize(config) -> Constraint:
    """The constraint a config names, as Keras's `constraints.deserialize`: a name, a
    {"class_name", "config"} entry (Keras's own, with "module", too) of kilnet's classes or a
    registered Constraint subclass.

    Example:
        >>> from kilnet import constraints
        >>> constraints.deserialize({"module": "keras.constraints", "class_name": "MaxNorm",
        ...                          "config": {"max_value": 3}, "registered_name": None})
        MaxNorm(max_value=3, axis=0)
    """
    return _small_objects.deserialize(config, _BY_NAME, Constraint, "constraint")


def get(identifier, argument: str = "constraint"):
    """A constraint from None, a name ("max_norm", "non_neg", "unit_norm", "min_max_norm"), a
    config dict, a Constraint or a callable `f(w) -> w`.

    Example:
        >>> from kilnet import constraints
        >>> constraints.get("max_norm")
        MaxNorm(max_value=2, axis=0)
    """
    return _small_objects.resolve(identifier, _BY_NAME, Constraint, argument,
                                  "'max_norm', 'non_neg', 'unit_norm', 'min_max_norm'")


def keeps_non_finite(constraint) -> bool:
    """Whether the constraint maps a weight holding inf or NaN to one that still does: true of
    kilnet's own constraints (each divides by or multiplies with the non-finite value), unknown
    (false) for a function or class of the user's, which could clip it away. kilnet.programs
    checks each step's gradient itself when a constraint could hide it.

    Example:
        >>> from kilnet import constraints
        >>> constraints.keeps_non_finite(constraints.MaxNorm()), constraints.keeps_non_finite(
        ...     lambda w: w)
        (True, False)
    """
    return type(constraint) in (MaxNorm, NonNeg, UnitNorm, MinMaxNorm)


def set_layer_constraints(layer, **given) -> None:
    """Resolve a layer's `*_constraint` arguments (checked, named in the error) onto it."""
    for argument, value in given.items():
        setattr(layer, argument, get(value, argument))


def serialize_into(config: dict, layer, keys=None) -> dict:
    """Put the configs of the constraints of `keys` into a layer's config (default keys:
    every `*_constraint` entry of the config)."""
    if keys is None:
        keys = [key for key in config if key.endswith("_constraint")]
    for key in keys:
        config[key] = serialize(getattr(layer, key))
    return config
