"""Activation functions by Keras name, resolved in one place."""

from __future__ import annotations

import functools
import inspect
from typing import Callable

import jax
import jax.numpy as jnp

from kilnet import _registry
from kilnet import ops
from kilnet.ops import nn as ops_nn


def linear(x):
    """x unchanged (a layer's activation=None).

    Example:
        >>> linear(jnp.array([-1.0, 2.0])).tolist()
        [-1.0, 2.0]
    """
    return x


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0); with Keras's arguments, x above threshold (capped at max_value) and
    negative_slope * (x - threshold) at and below it.

    Built from the same pieces as Keras's so that values and gradients agree at the kinks,
    where an all-zero conv patch lands every step: jax.nn.relu / relu6 (gradient 0 at 0 and
    at 6), a strict `x > threshold`, and a clip to [0, max_value].

    Example:
        >>> relu(jnp.array([-1.0, 2.0])).tolist()
        [0.0, 2.0]
        >>> relu(jnp.array([-1.0, 0.5, 9.0]), negative_slope=0.5, threshold=0.5).tolist()
        [-0.75, 0.0, 9.0]
    """
    x = jnp.asarray(x)
    if not negative_slope and max_value is None and not threshold:
        return ops_nn.relu(x)
    if negative_slope and max_value is None and not threshold:
        return jax.nn.leaky_relu(x, negative_slope=negative_slope)
    y = _relu_positive_part(x, max_value, threshold)
    if negative_slope:
        y = y - negative_slope * ops_nn.relu(threshold - x)
    return y.astype(x.dtype)


def _relu_positive_part(x, max_value, threshold):
    """relu's part for x above threshold, capped at max_value; 0 elsewhere."""
    if threshold:
        y = jnp.where(x > threshold, x, jnp.zeros_like(x))
    elif max_value == 6:
        return ops_nn.relu6(x)   # JAX's relu6: gradient 0 at both kinks, as Keras
    else:
        y = ops_nn.relu(x)
    if max_value is not None:
        # clip's gradient at max_value is 0.5 (a tie of minimum): Keras's, kept on purpose
        y = jnp.clip(y, 0.0, max_value)
    return y


def sigmoid(x):
    """1 / (1 + exp(-x)).

    Example:
        >>> sigmoid(jnp.array([0.0])).tolist()
        [0.5]
    """
    return jax.nn.sigmoid(x)


def tanh(x):
    """The hyperbolic tangent.

    Example:
        >>> tanh(jnp.array([0.0])).tolist()
        [0.0]
    """
    return jnp.tanh(x)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) over `axis` (the last by default, as Keras's).

    Example:
        >>> softmax(jnp.array([1.0, 1.0])).tolist()
        [0.5, 0.5]
        >>> softmax(jnp.array([[0.0, 1.0], [0.0, 1.0]]), axis=0).tolist()
        [[0.5, 0.5], [0.5, 0.5]]
    """
    return jax.nn.softmax(x, axis=axis)


def gelu(x, approximate=False):
    """x * Phi(x), Phi the standard normal's distribution function (Keras's default,
    approximate=False; JAX's default is the tanh approximation, approximate=True here).

    Example:
        >>> round(float(gelu(jnp.array(1.0))), 4)
        0.8413
        >>> round(float(gelu(jnp.array(1.0), approximate=True)), 4)
        0.8412
    """
    return jax.nn.gelu(x, approximate=bool(approximate))


def elu(x, alpha=1.0):
    """x for x > 0, else alpha * (exp(x) - 1); the gradient at 0 is alpha's branch, as
    Keras's (JAX's elu).

    Example:
        >>> [round(v, 4) for v in elu(jnp.array([-1.0, 2.0])).tolist()]
        [-0.6321, 2.0]
    """
    return jax.nn.elu(x, alpha=alpha)


def selu(x):
    """Scaled ELU (Klambauer et al., 2017): 1.0507 * (x for x > 0, else 1.6733 (exp(x) - 1)).

    Example:
        >>> round(float(selu(jnp.array(1.0))), 4)
        1.0507
    """
    return jax.nn.selu(x)


def leaky_relu(x, negative_slope=0.2):
    """x for x >= 0, else negative_slope * x (Keras's default 0.2; JAX's is 0.01).

    Example:
        >>> leaky_relu(jnp.array([-5.0, 2.0])).tolist()
        [-1.0, 2.0]
    """
    return jax.nn.leaky_relu(x, negative_slope=negative_slope)


def softplus(x):
    """log(1 + exp(x)), computed stably.

    Example:
        >>> round(float(softplus(jnp.array(0.0))), 4)
        0.6931
    """
    return jax.nn.softplus(x)


def swish(x):
    """x * sigmoid(x) (Keras's `silu`, also named `swish`).

    Example:
        >>> swish(jnp.array([0.0])).tolist()
        [0.0]
    """
    return jax.nn.silu(x)


silu = swish  # Keras's name for it, and the one its configs write


def relu6(x):
    """min(max(x, 0), 6).

    Example:
        >>> relu6(jnp.array([-1.0, 3.0, 9.0])).tolist()
        [0.0, 3.0, 6.0]
    """
    return ops_nn.relu6(x)


def hard_sigmoid(x):
    """Keras 3's hard sigmoid, relu6(x + 3) / 6 (Keras 2's was 0.2 x + 0.5, clipped).

    Example:
        >>> hard_sigmoid(jnp.array([-4.0, 0.0, 1.5])).tolist()
        [0.0, 0.5, 0.75]
    """
    return jax.nn.hard_sigmoid(x)


def hard_silu(x):
    """x * hard_sigmoid(x) (Keras's `hard_silu`, also named `hard_swish`).

    Example:
        >>> hard_silu(jnp.array([-4.0, 1.5, 4.0])).tolist()
        [-0.0, 1.125, 4.0]
    """
    return jax.nn.hard_silu(x)


hard_swish = hard_silu  # Keras's other name for it


def hard_tanh(x):
    """x clipped to [-1, 1].

    Example:
        >>> hard_tanh(jnp.array([-2.0, 0.5, 3.0])).tolist()
        [-1.0, 0.5, 1.0]
    """
    return jax.nn.hard_tanh(x)


def softsign(x):
    """x / (1 + |x|).

    Example:
        >>> softsign(jnp.array([-3.0, 1.0])).tolist()
        [-0.75, 0.5]
    """
    return jax.nn.soft_sign(x)


def exponential(x):
    """exp(x).

    Example:
        >>> exponential(jnp.array([0.0])).tolist()
        [1.0]
    """
    return jnp.exp(x)


def mish(x):
    """x * tanh(softplus(x)) (Misra, 2019).

    Example:
        >>> round(float(mish(jnp.array(1.0))), 4)
        0.8651
    """
    return x * jnp.tanh(jax.nn.softplus(x))


def log_softmax(x, axis=-1):
    """log(softmax(x)) over `axis` (the last by default), computed stably.

    Example:
        >>> [round(v, 4) for v in log_softmax(jnp.array([0.0, 0.0])).tolist()]
        [-0.6931, -0.6931]
    """
    return jax.nn.log_softmax(x, axis=axis)


def log_sigmoid(x):
    """log(sigmoid(x)), computed stably.

    Example:
        >>> round(float(log_sigmoid(jnp.array(0.0))), 4)
        -0.6931
    """
    return jax.nn.log_sigmoid(x)


def celu(x, alpha=1.0):
    """x for x > 0, else alpha * (exp(x / alpha) - 1) (Keras's default alpha 1).

    Example:
        >>> [round(v, 4) for v in celu(jnp.array([-1.0, 2.0])).tolist()]
        [-0.6321, 2.0]
        >>> round(float(celu(jnp.array(-1.0), alpha=2.0)), 4)
        -0.7869
    """
    return jax.nn.celu(x, alpha=alpha)


def hard_shrink(x, threshold=0.5):
    """x where |x| > threshold (Keras's default 0.5), else 0.

    Example:
        >>> hard_shrink(jnp.array([-1.0, 0.25, 0.75])).tolist()
        [-1.0, 0.0, 0.75]
        >>> hard_shrink(jnp.array([-1.0, 0.25, 0.75]), threshold=0.8).tolist()
        [-1.0, 0.0, 0.0]
    """
    return jnp.where(jnp.abs(x) > threshold, x, jnp.zeros_like(x))


def soft_shrink(x, threshold=0.5):
    """x moved `threshold` towards 0 (Keras's default 0.5), 0 within [-threshold,
    threshold].

    Example:
        >>> soft_shrink(jnp.array([-1.0, 0.25, 0.75])).tolist()
        [-0.5, 0.0, 0.25]
        >>> soft_shrink(jnp.array([-1.0, 0.25, 0.75]), threshold=0.25).tolist()
        [-0.75, 0.0, 0.5]
    """
    return jnp.where(x > threshold, x - threshold,
                     jnp.where(x < -threshold, x + threshold, jnp.zeros_like(x)))


def tanh_shrink(x):
    """x - tanh(x).

    Example:
        >>> tanh_shrink(jnp.array([0.0])).tolist()
        [0.0]
    """
    return x - jnp.tanh(x)


def sparse_plus(x):
    """0 for x <= -1, x for x >= 1, (x + 1)^2 / 4 between (a smooth softplus).

    Example:
        >>> sparse_plus(jnp.array([-2.0, 0.0, 2.0])).tolist()
        [0.0, 0.25, 2.0]
    """
    return jax.nn.sparse_plus(x)


def sparse_sigmoid(x):
    """0 for x <= -1, 1 for x >= 1, (x + 1) / 2 between.

    Example:
        >>> sparse_sigmoid(jnp.array([-2.0, 0.0, 2.0])).tolist()
        [0.0, 0.5, 1.0]
    """
    return jax.nn.sparse_sigmoid(x)


def squareplus(x, b=4):
    """(x + sqrt(x^2 + b)) / 2 (Keras's default b = 4).

    Example:
        >>> squareplus(jnp.array([0.0])).tolist()
        [1.0]
        >>> squareplus(jnp.array([0.0]), b=16).tolist()
        [2.0]
    """
    return jax.nn.squareplus(x, b=b)


def sparsemax(x, axis=-1):
    """The Euclidean projection of x onto the probability simplex over `axis` (Martins &
    Astudillo, 2016): like softmax, but small scores get exactly 0. Keras 3.15's differs where
    more than one score is in the support: it sums every partial sum of the support for the
    threshold, not the last one, so its outputs need not sum to 1 ([0.5, 0.25, 0.0] gives
    [0.167, 0.0, 0.0] there on every backend); this is the definition.

    Example:
        >>> sparsemax(jnp.array([2.0, 1.0, -1.0])).tolist()
        [1.0, 0.0, 0.0]
        >>> sparsemax(jnp.array([1.0, 0.5, -1.0])).tolist()
        [0.75, 0.25, 0.0]
    """
    return ops_nn.sparsemax(x, axis=axis)   # one implementation: the op's


def glu(x, axis=-1):
    """Gated linear unit (Dauphin et al., 2017): x split in halves a, b along `axis`, then
    a * sigmoid(b); the axis must have an even size, and the result has half of it.

    Example:
        >>> glu(jnp.array([2.0, 0.0])).tolist()
        [1.0]
    """
    x = jnp.asarray(x)
    size = x.shape[axis] if -x.ndim <= axis < x.ndim else None
    if size is None or size % 2:
        raise ValueError(f"glu splits axis {axis} into two halves: it needs an axis of even "
                         f"size. Received: x.shape={x.shape}, axis={axis}")
    return ops_nn.glu(x, axis=axis)


def threshold(x, threshold, default_value):
    """x where x > threshold, else default_value.

    Example:
        >>> threshold(jnp.array([-1.0, 0.5, 2.0]), 0.5, -9.0).tolist()
        [-9.0, -9.0, 2.0]
    """
    x = jnp.asarray(x)
    return ops_nn.threshold(x, threshold, jnp.asarray(default_value, x.dtype))


# -- on symbolic tensors ---------------------------------------------------------------------
# Keras's activations called on a functional model's symbolic tensors (keras.io's
# `keras.activations.sigmoid(logits) * 5`) make a graph node, as Keras's do through its ops.
# Each routes to the kilnet.ops function of its name (its settings passed explicitly: ops.gelu's
# default differs), composed of ops where Keras has no op of that name.
_COMPOSED = {
    "linear": lambda x: x,
    "exponential": lambda x: ops.exp(x),
    "mish": lambda x: ops.multiply(x, ops.tanh(ops.softplus(x))),
}


def _also_symbolic(function):
    name = function.__name__
    signature = inspect.signature(function)

    @functools.wraps(function)
    def activation(x, *args, **kwargs):
        if not hasattr(type(x), "__kilnet_op__"):
            return function(x, *args, **kwargs)
        bound = signature.bind(x, *args, **kwargs)
        bound.apply_defaults()
        settings = {k: v for k, v in bound.arguments.items() if k != "x"}
        if name in _COMPOSED and not settings:
            return _COMPOSED[name](x)
        op = getattr(ops, name, None)
        unknown = set(settings) - set(inspect.signature(op).parameters) if op else settings
        changed = {k: v for k, v in settings.items()
                   if k in unknown and v != signature.parameters[k].default}
        if op is None or changed:
            raise TypeError(
                f"kilnet.activations.{name}({', '.join(f'{k}={v!r}' for k, v in changed.items())}"
                ") cannot be a node of a functional model: no op takes those settings. Use "
                "the layer (kilnet.layers.ReLU(...), LeakyReLU, ELU, or Activation) instead.")
        return op(x, **{k: v for k, v in settings.items() if k not in unknown})
    return activation


_WRAPPED: dict = {}
for _name in ("relu", "sigmoid", "tanh", "softmax", "log_softmax", "gelu", "elu", "selu",
              "leaky_relu", "softplus", "softsign", "swish", "silu", "relu6", "hard_sigmoid",
              "hard_silu", "hard_swish", "hard_tanh", "exponential", "mish", "linear", "celu",
              "glu", "hard_shrink", "soft_shrink", "tanh_shrink", "squareplus", "sparse_plus",
              "sparse_sigmoid", "sparsemax", "log_sigmoid"):
    _original = globals()[_name]
    _wrapped = _WRAPPED.get(id(_original))
    if _wrapped is None:   # an alias (silu = swish) stays the same function
        _wrapped = _WRAPPED[id(_original)] = _also_symbolic(_original)
    globals()[_name] = _wrapped
del _name, _original, _wrapped


_BY_NAME: dict[str, Callable] = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "gelu": gelu,
    "elu": elu,
    "selu": selu,
    "leaky_relu": leaky_relu,
    "softplus": softplus,
    "silu": swish,   # first: the name Keras's configs write for it
    "swish": swish,
    "relu6": relu6,
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": hard_silu,
    "hard_swish": hard_silu,
    "hard_tanh": hard_tanh,
    "softsign": softsign,
    "exponential": exponential,
    "mish": mish,
    "log_softmax": log_softmax,
    "log_sigmoid": log_sigmoid,
    "celu": celu,
    "hard_shrink": hard_shrink,
    "soft_shrink": soft_shrink,
    "tanh_shrink": tanh_shrink,
    "sparse_plus": sparse_plus,
    "sparse_sigmoid": sparse_sigmoid,
    "squareplus": squareplus,
    "sparsemax": sparsemax,
}

# Keras activations that are not a layer's activation here: "glu" halves the last axis (a
# layer's output shape would not be its units), "threshold" needs arguments.
_NOT_LAYER_ACTIVATIONS = {
    "glu": "it halves the last axis, so a layer's output would not have its units",
    "threshold": "it needs its threshold and default_value arguments",
}


def get(identifier) -> Callable:
    """Resolve an activation name (or None, or a function) to the function. A function of
    yours trains as any; a model file stores it by the name it was registered under
    (`kilnet.saving.register_serializable`), and refuses one that was not.

    Example:
        >>> get("relu") is relu, get(None) is linear
        (True, True)
        >>> double = lambda x: 2 * x
        >>> get(double) is double
        True
    """
    if identifier is None:
        return linear
    if isinstance(identifier, str):
        if identifier in _NOT_LAYER_ACTIVATIONS:
            raise ValueError(
                f"activation={identifier!r} is a Keras activation kilnet does not take as a "
                f"layer's activation: {_NOT_LAYER_ACTIVATIONS[identifier]}. Use one of "
                f"{sorted(_BY_NAME)}, or a layer after this one."
            )
        registered = _registry.lookup(identifier) if identifier not in _BY_NAME else None
        if callable(registered):   # a function of yours, saved by its registered name
            return registered
        if identifier not in _BY_NAME:
            raise ValueError(
                f"Unknown activation: expected one of {sorted(_BY_NAME)}. "
                f"Received: activation={identifier!r}"
            )
        return _BY_NAME[identifier]
    if callable(identifier):   # a function of yours, e.g. lambda x: x * ops.sigmoid(x)
        return identifier
    if _registry.is_function_entry(identifier):   # Keras's entry, as a layer config holds it
        return deserialize(identifier)
    raise ValueError(
        "activation must be a name such as 'relu', one of kilnet.activations' functions, "
        "a function of yours or Keras's entry for one ({'class_name': 'function', 'config': "
        f"'package>name', ...}}). Received: activation={identifier!r}"
    )


class Setting:
    """A layer attribute holding an activation function, as Keras's `layer.activation`: it
    reads as the function (`linear` for None) and takes a name, a function or None (`get`),
    kept as `_<attribute>_fn`, which the layer's computation calls.

    Example:
        >>> class Layer:
        ...     activation = Setting()
        >>> layer = Layer()
        >>> layer.activation = "relu"
        >>> layer.activation.__name__, layer._activation_fn.__name__
        ('relu', 'relu')
    """

    def __set_name__(self, owner, name):
        self.slot = f"_{name}_fn"

    def __get__(self, obj, objtype=None):
        return self if obj is None else getattr(obj, self.slot)

    def __set__(self, obj, value):
        object.__setattr__(obj, self.slot, get(value))


def config_name(fn: Callable):
    """What a layer's config holds for its activation, as Keras's get_config writes it: the
    activation's name, Keras's function entry for a function of yours registered with
    kilnet.saving.register_keras_serializable (its registered name, which Keras and kilnet
    find it by), or the function itself (it trains, and a file refuses it with the way to
    register it).

    Example:
        >>> config_name(get("swish"))
        'silu'
    """
    if name_of(fn) is None and _registry.name_of(fn) is not None:
        return serialize(fn)
    return name_of(fn) or _activation_named_as(fn) or fn


def _activation_named_as(fn: Callable) -> str | None:
    """The activation name of a kilnet.ops function that shares it (`activation=ops.gelu`,
    keras.io's ViViT), written as Keras writes its ops functions: by that name, so a file
    reloads the activation (for gelu the exact one, where ops.gelu defaults to the tanh
    approximation: up to 2.3e-4 apart on a Dense's outputs, as in Keras)."""
    for name, activation in _BY_NAME.items():
        if getattr(ops, name, None) is fn:   # by the ops name: ops.swish is named silu
            return name_of(activation)
    return None


def name_of(fn: Callable) -> str | None:
    """The registered name of an activation function, for configs and summaries: Keras's
    function name where Keras has an alias ("swish" is written "silu").

    Example:
        >>> name_of(get("swish")), name_of(print)
        ('silu', None)
    """
    for name, known in _BY_NAME.items():
        if known is fn:
            return name
    return None


# Every Keras activation by name, those a layer does not take (glu, threshold) included.
_FUNCTIONS: dict[str, Callable] = {**_BY_NAME, "glu": glu, "threshold": threshold}


def serialize(activation):
    """An activation as Keras's configs write it: its name ("silu" for swish, "hard_silu"
    for hard_swish), or for a function of yours registered with
    kilnet.saving.register_keras_serializable, Keras's function entry naming it.

    Example:
        >>> serialize(swish), serialize(glu)
        ('silu', 'glu')
    """
    for name, known in _FUNCTIONS.items():
        if known is activation:
            return name
    if _registry.name_of(activation) is not None:
        return _registry.function_entry(activation, "activation")
    raise ValueError("serialize takes one of kilnet.activations' functions or a function "
                     "registered with @kilnet.saving.register_keras_serializable(package=..., "
                     "name=...) (a config names activations, never holds their code). "
                     f"Received: activation={activation!r:.100}")


def deserialize(config) -> Callable:
    """The activation function a config names: a name ("silu", "swish", "glu"), or Keras's
    entry for a function ({"class_name": "function", "config": "relu", ...}), one of yours
    by its registered name (registered, or in the open custom object scope, which
    load_model's custom_objects fill).

    Example:
        >>> deserialize("swish") is silu, deserialize({"module": "keras.activations",
        ...     "class_name": "function", "config": "glu", "registered_name": None}) is glu
        (True, True)
    """
    name = config
    if _registry.is_function_entry(config):
        name = config.get("config")
        if not isinstance(name, str) or name not in _FUNCTIONS:   # yours, by registered name
            return _registry.function_from_entry(config, "activation")
    if not isinstance(name, str) or name not in _FUNCTIONS:
        raise ValueError(f"Unknown activation: expected one of {sorted(_FUNCTIONS)}, or "
                         "{'class_name': 'function', 'config': <one of them>}. Received: "
                         f"config={config!r:.100}")
    return _FUNCTIONS[name]
