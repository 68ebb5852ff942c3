"""Losses with Keras 3's names, arguments, defaults and formulas.

A loss object you make is Keras's: `loss(y_true, y_pred, sample_weight=None)` returns the
reduced value ("sum_over_batch_size", the default, which "mean" equals; "sum";
"mean_with_sample_weight"; "none" / None: the unreduced values, weighted), eagerly or under
jax.jit / jax.grad. `loss.per_sample(y_true, y_pred)` gives the unreduced values, one per sample
or per element (batch, ...).

compile() keeps its own copy of each loss (`get`), marked to return those unreduced values when
called without sample weights: kilnet's compiled programs (kilnet.objective) average extra axes
per sample, weigh by sample weights and masks, and average over the batch's real samples, which
is Keras's "sum_over_batch_size". compile() therefore takes only that reduction.

Write your own as Keras does: a function `fn(y_true, y_pred)` with kilnet.ops or jax.numpy
(compile wraps it in LossFunctionWrapper), or a `Loss` subclass implementing `call`.
"""

from __future__ import annotations

import copy
import re

import jax
import jax.numpy as jnp

from kilnet import config  # Keras's epsilon, read when a loss is traced


REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)
# What the compiled programs compute (kilnet.objective); "mean" reduces the same way in Keras 3.
COMPILED_REDUCTIONS = ("sum_over_batch_size", "mean")


def per_sample_mean(values):
    """One value per sample: outputs with extra axes (e.g. per time step) are averaged, as
    Keras's losses reduce them."""
    return values if values.ndim == 1 else values.reshape(values.shape[0], -1).mean(axis=1)


def match_rank(y_true, y_pred):  # also used by kilnet.metrics
    """Keras squeezes or expands labels to the prediction's rank for elementwise losses."""
    if y_true.ndim == y_pred.ndim - 1:
        return y_true[..., None]
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        return y_true[..., 0]
    return y_true


def squeeze_or_expand(a, b):
    """Keras's rule for two arrays whose ranks differ by one where the longer one ends in a
    size-1 axis: a rank-1 partner gets that axis added, otherwise the longer one loses it."""
    if a.ndim == b.ndim + 1 and a.shape[-1] == 1:
        return (a, b[..., None]) if b.ndim == 1 else (a[..., 0], b)
    if b.ndim == a.ndim + 1 and b.shape[-1] == 1:
        return (a[..., None], b) if a.ndim == 1 else (a, b[..., 0])
    return a, b


def sparse_labels(y_true, y_pred):
    """Integer class ids of shape (N,), from (N,) or (N, 1) labels."""
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return y_true.astype(jnp.int32)


def _snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"Invalid value for argument `reduction`. Expected one of "
                         f"{list(REDUCTIONS)}. Received: reduction={reduction!r}")
    return reduction


# -- the base class ---------------------------------------------------------------------------
class Loss:
    """Keras's loss base class. Subclasses implement `call(y_true, y_pred)`, returning one value
    per sample (or per element); `__call__` reduces them as `reduction` says.

    Example:
        >>> import numpy as np
        >>> from kilnet import losses, ops
        >>> class MeanCubed(losses.Loss):
        ...     def call(self, y_true, y_pred):
        ...         return ops.mean(ops.abs(y_pred - y_true) ** 3, axis=-1)
        >>> float(MeanCubed()(np.zeros((2, 2)), np.array([[1.0, 1.0], [2.0, 2.0]])))
        4.5
    """

    # The activation whose pre-activation this loss can consume directly (from_logits=True):
    # kilnet folds a last softmax/sigmoid into the loss (numerically stable).
    logits_of: str | None = None
    from_logits: bool = False
    # compile()'s copy (see get()): a call without sample weights gives the unreduced values
    _unreduced: bool = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.reduction = _check_reduction(reduction)
        self.dtype = None if dtype is None else jnp.dtype(dtype).name

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    # -- the values ---------------------------------------------------------------------------
    def _convert(self, y_true, y_pred):
        """Keras converts both to the loss's dtype; with dtype=None kilnet keeps a floating
        prediction's dtype (float32 in kilnet models) and makes anything else float32."""
        y_pred = jnp.asarray(y_pred)
        dtype = self.dtype or (y_pred.dtype if jnp.issubdtype(y_pred.dtype, jnp.floating)
                               else jnp.float32)
        return jnp.asarray(y_true).astype(dtype), y_pred.astype(dtype)

    def _values_and_mask(self, y_true, y_pred):
        """(unreduced values, mask of the entries that count or None)."""
        y_true, y_pred = self._convert(y_true, y_pred)
        return jnp.asarray(self.call(y_true, y_pred)), None

    def per_sample(self, y_true, y_pred):
        """The unreduced values, shape (batch, ...): what kilnet's compiled programs reduce.
        A scalar from `call` (a loss of the whole batch) is repeated for every sample, so that
        the mean over the batch gives it back. Masked entries (ignore_class) are 0 and the
        others scaled by entries / counted entries, so that the plain mean is Keras's masked
        "sum_over_batch_size"."""
        values, mask = self._values_and_mask(y_true, y_pred)
        if values.ndim == 0:
            return jnp.broadcast_to(values, jnp.shape(y_pred)[:1])
        if mask is not None:
            values = jnp.where(mask, values * _mask_scale(mask, values.dtype), 0.0)
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._unreduced and sample_weight is None:
            return self.per_sample(y_true, y_pred)  # compile()'s copy: the programs reduce
        values, mask = self._values_and_mask(y_true, y_pred)
        return reduce_weighted_values(values, sample_weight, mask, self.reduction)

    # -- kilnet's logits shortcut, configuration ---------------------------------------------
    def with_logits(self):
        """The same loss, computed from logits (for a model whose last layer is softmax etc.)."""
        if self.logits_of is None:
            return self
        loss = type(self).from_config({**self.get_config(), "from_logits": True})
        loss._unreduced = self._unreduced
        return loss

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _mask_scale(mask, dtype):
    total = jnp.asarray(mask.size, dtype)
    valid = jnp.sum(mask.astype(dtype))
    return jnp.where(valid > 0, total / jnp.maximum(valid, 1), 0.0)


def reduce_weighted_values(values, sample_weight=None, mask=None,
                           reduction="sum_over_batch_size"):
    """Keras 3's reduction of unreduced loss values with sample weights and a mask."""
    reduction = _check_reduction(reduction)
    values = jnp.asarray(values)
    dtype = values.dtype if jnp.issubdtype(values.dtype, jnp.floating) else jnp.float32
    values = values.astype(dtype)
    weight = None if sample_weight is None else jnp.asarray(sample_weight, dtype)
    if mask is not None:
        mask = jnp.asarray(mask)
        if reduction in COMPILED_REDUCTIONS:
            float_mask = jnp.where(mask, _mask_scale(mask, dtype), 0.0).astype(dtype)
        else:
            float_mask = mask.astype(dtype)
        if weight is not None:
            float_mask, weight = squeeze_or_expand(float_mask, weight)
            weight = weight * float_mask
        else:
            weight = float_mask
    if weight is not None:
        values, weight = squeeze_or_expand(values, weight)
        values = values * weight
    if reduction in (None, "none") or values.ndim == 0 or values.shape == (0,):
        return values
    total = jnp.sum(values)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weight is not None:
        divisor = jnp.sum(weight).astype(dtype)
    else:
        divisor = jnp.asarray(values.size, dtype)
    return jnp.where(divisor != 0, total / jnp.where(divisor != 0, divisor, 1), 0.0)


class LossFunctionWrapper(Loss):
    """A loss from a function `fn(y_true, y_pred, **kwargs)` (Keras's LossFunctionWrapper):
    what compile() makes of `loss=my_function`. Labels and predictions get Keras's rank
    matching first. The function runs inside the compiled programs: write it with kilnet.ops
    or jax.numpy. A scalar result is the batch's loss.

    Example:
        >>> import numpy as np
        >>> import jax.numpy as jnp
        >>> from kilnet import losses
        >>> def mean_fourth(y_true, y_pred):
        ...     return jnp.mean((y_pred - y_true) ** 4, axis=-1)
        >>> loss = losses.LossFunctionWrapper(mean_fourth)
        >>> loss.name, float(loss(np.zeros((2, 1)), np.ones((2, 1))))
        ('mean_fourth', 1.0)
    """

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper needs a function fn(y_true, y_pred). "
                            f"Received: fn={fn!r}")
        name = name or getattr(fn, "__name__", None)
        super().__init__(name=None if name in (None, "<lambda>") else name,
                         reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        raise ValueError(f"the loss function {getattr(self.fn, '__name__', self.fn)!r} cannot be "
                         "written to a file (only kilnet's loss classes can)")

    def __repr__(self):
        return f"LossFunctionWrapper({self.fn!r}, kwargs={self._fn_kwargs})"


# -- the formulas (Keras's function forms; each returns the unreduced values) -----------------
def _floats(y_true, y_pred):
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    return jnp.asarray(y_true).astype(y_pred.dtype), y_pred


def _elementwise(y_true, y_pred):
    y_true, y_pred = _floats(y_true, y_pred)
    return match_rank(y_true, y_pred), y_pred


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return jnp.mean(jnp.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return jnp.mean(jnp.abs(y_pred - y_true), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    ratio = jnp.abs((y_true - y_pred) / jnp.maximum(jnp.abs(y_true), config.epsilon()))
    return 100.0 * jnp.mean(ratio, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    diff = jnp.log(jnp.maximum(y_pred, config.epsilon()) + 1.0) - jnp.log(jnp.maximum(y_true, config.epsilon())
                                                                  + 1.0)
    return jnp.mean(jnp.square(diff), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    y_true, y_pred = _elementwise(y_true, y_pred)
    err = jnp.abs(y_pred - y_true)
    quadratic = jnp.minimum(err, delta)
    return jnp.mean(0.5 * jnp.square(quadratic) + delta * (err - quadratic), axis=-1)


def log_cosh(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    x = y_pred - y_true
    # log(cosh(x)) = x + softplus(-2x) - log(2), stable for large |x|
    return jnp.mean(x + jax.nn.softplus(-2.0 * x) - jnp.log(2.0).astype(x.dtype), axis=-1)


def cosine_similarity(y_true, y_pred, axis=-1):
    y_true, y_pred = _elementwise(y_true, y_pred)

    def unit(v):
        inv = jax.lax.rsqrt(jnp.sum(jnp.square(v), axis=axis, keepdims=True))
        return v * jnp.minimum(inv, 1.0 / config.epsilon())

    return -jnp.sum(unit(y_true) * unit(y_pred), axis=axis)


def _hinge_labels(y_true):
    """Keras turns labels that are all 0 or 1 into -1 / 1; others are used as they are."""
    binary = jnp.all((y_true == 0) | (y_true == 1))
    return jnp.where(binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return jnp.mean(jnp.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return jnp.mean(jnp.square(jnp.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0)),
                    axis=-1)


def categorical_hinge(y_true, y_pred):
    y_true, y_pred = _floats(y_true, y_pred)
    positive = jnp.sum(y_true * y_pred, axis=-1)
    negative = jnp.max((1.0 - y_true) * y_pred, axis=-1)
    return jnp.maximum(negative - positive + 1.0, 0.0)


def kl_divergence(y_true, y_pred):
    y_true, y_pred = _floats(y_true, y_pred)
    y_true = jnp.clip(y_true, config.epsilon(), 1.0)
    y_pred = jnp.clip(y_pred, config.epsilon(), 1.0)
    return jnp.sum(y_true * jnp.log(y_true / y_pred), axis=-1)


def poisson(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return jnp.mean(y_pred - y_true * jnp.log(y_pred + config.epsilon()), axis=-1)


def _smooth_categorical(y_true, label_smoothing):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]


def _smooth_binary(y_true, label_smoothing):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


def _probabilities(y_pred, axis):
    probs = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
    return jnp.clip(probs, config.epsilon(), 1.0 - config.epsilon())


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _floats(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        return -jnp.sum(y_true * jax.nn.log_softmax(y_pred, axis=axis), axis=axis)
    return -jnp.sum(y_true * jnp.log(_probabilities(y_pred, axis)), axis=axis)


def categorical_focal_crossentropy(y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False,
                                   label_smoothing=0.0, axis=-1):
    y_true, y_pred = _floats(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        y_pred = jax.nn.softmax(y_pred, axis=axis)
    probs = _probabilities(y_pred, axis)
    focal = alpha * jnp.power(1.0 - probs, gamma) * (-y_true * jnp.log(probs))
    return jnp.sum(focal, axis=axis)


def _sparse_values(y_true, y_pred, from_logits, ignore_class):
    """(values, mask of counted entries or None) of sparse categorical cross-entropy."""
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    y_true = jnp.asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    mask = None
    if ignore_class is not None:
        mask = y_true != ignore_class
        y_true = jnp.where(mask, y_true, 0)
    labels = y_true.astype(jnp.int32)[..., None]
    if from_logits:
        picked = jnp.take_along_axis(jax.nn.log_softmax(y_pred, axis=-1), labels, axis=-1)
        values = -picked[..., 0]
    else:
        probs = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
        picked = jnp.take_along_axis(probs, labels, axis=-1)[..., 0]
        values = -jnp.log(jnp.clip(picked, config.epsilon(), 1.0 - config.epsilon()))
    if mask is not None:
        values = jnp.where(mask, values, 0.0)
    return values, mask


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    if axis not in (-1, jnp.ndim(y_pred) - 1):
        raise ValueError(f"sparse_categorical_crossentropy supports the last axis only. "
                         f"Received: axis={axis}")
    return _sparse_values(y_true, y_pred, from_logits, ignore_class)[0]


def _bce(y_true, y_pred, from_logits):
    if from_logits:
        # max(z, 0) - z * y + log(1 + exp(-|z|)): stable for any logit.
        return jnp.maximum(y_pred, 0) - y_pred * y_true + jnp.log1p(jnp.exp(-jnp.abs(y_pred)))
    p = jnp.clip(y_pred, config.epsilon(), 1.0 - config.epsilon())
    return -(y_true * jnp.log(p) + (1 - y_true) * jnp.log(1 - p))


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _elementwise(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    return jnp.mean(_bce(y_true, y_pred, from_logits), axis=axis)


def binary_focal_crossentropy(y_true, y_pred, apply_class_balancing=False, alpha=0.25,
                              gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _elementwise(y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    if from_logits:
        y_pred = jax.nn.sigmoid(y_pred)
    bce = _bce(y_true, y_pred, False)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal = jnp.power(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal
    return jnp.mean(focal, axis=axis)


# -- the classes ----------------------------------------------------------------------------------
class _Builtin(Loss):
    """A kilnet loss class: its formula is one of the functions above, with its arguments."""

    fn = None            # the formula (a function above)
    default_name = None
    args: tuple = ()     # (argument, default) pairs, in Keras's get_config order

    def __init__(self, *, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or self.default_name, reduction=reduction, dtype=dtype)
        for key, default in self.args:
            setattr(self, key, kwargs.pop(key, default))
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments "
                            f"{sorted(kwargs)}; it takes {[k for k, _ in self.args]} and "
                            "reduction, name, dtype")
        self._validate()

    def _validate(self):
        for key in ("label_smoothing", "alpha", "gamma", "delta"):
            if hasattr(self, key):
                value = getattr(self, key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"{type(self).__name__}: {key} must be a number. "
                                    f"Received: {key}={value!r}")
        smoothing = getattr(self, "label_smoothing", 0.0)
        if not 0.0 <= smoothing <= 1.0:
            raise ValueError(f"{type(self).__name__}: label_smoothing must be in [0, 1]. "
                             f"Received: label_smoothing={smoothing!r}")
        if hasattr(self, "from_logits") and "from_logits" in dict(self.args):
            self.from_logits = bool(self.from_logits)
        axis = getattr(self, "axis", -1)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{type(self).__name__}: axis must be an int. Received: "
                             f"axis={axis!r}")

    def call(self, y_true, y_pred):
        return type(self).fn(y_true, y_pred, **{k: getattr(self, k) for k, _ in self.args})

    def get_config(self):
        config = super().get_config()
        config.update({k: getattr(self, k) for k, _ in self.args})
        return config


def _positional(cls):
    """Keras's classes take their own arguments positionally first: MeanSquaredError("sum")
    is the reduction, Huber(2.0) the delta, CategoricalCrossentropy(True) from_logits."""
    names = [k for k, _ in cls.args] + list(cls.positional_tail)

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__} takes at most {len(names)} positional arguments "
                            f"({', '.join(names)}). Received: {len(args)}")
        for key, value in zip(names, args):
            if key in kwargs:
                raise TypeError(f"{cls.__name__} got two values for {key}")
            kwargs[key] = value
        _Builtin.__init__(self, **kwargs)

    cls.__init__ = __init__
    return cls


class _Elementwise(_Builtin):
    """A loss comparing labels and outputs element by element (same shape; kilnet's label
    checks know it)."""

    positional_tail = ("reduction", "name", "dtype")


@_positional
class MeanSquaredError(_Elementwise):
    fn = staticmethod(mean_squared_error)
    default_name = "mean_squared_error"


@_positional
class MeanAbsoluteError(_Elementwise):
    fn = staticmethod(mean_absolute_error)
    default_name = "mean_absolute_error"


@_positional
class MeanAbsolutePercentageError(_Elementwise):
    fn = staticmethod(mean_absolute_percentage_error)
    default_name = "mean_absolute_percentage_error"


@_positional
class MeanSquaredLogarithmicError(_Elementwise):
    fn = staticmethod(mean_squared_logarithmic_error)
    default_name = "mean_squared_logarithmic_error"


@_positional
class Huber(_Elementwise):
    fn = staticmethod(huber)
    default_name = "huber_loss"
    args = (("delta", 1.0),)


@_positional
class LogCosh(_Elementwise):
    fn = staticmethod(log_cosh)
    default_name = "log_cosh"


@_positional
class CosineSimilarity(_Elementwise):
    fn = staticmethod(cosine_similarity)
    default_name = "cosine_similarity"
    args = (("axis", -1),)


@_positional
class Hinge(_Elementwise):
    fn = staticmethod(hinge)
    default_name = "hinge"


@_positional
class SquaredHinge(_Elementwise):
    fn = staticmethod(squared_hinge)
    default_name = "squared_hinge"


@_positional
class CategoricalHinge(_Elementwise):
    fn = staticmethod(categorical_hinge)
    default_name = "categorical_hinge"


@_positional
class KLDivergence(_Elementwise):
    fn = staticmethod(kl_divergence)
    default_name = "kl_divergence"


@_positional
class Poisson(_Elementwise):
    fn = staticmethod(poisson)
    default_name = "poisson"


@_positional
class BinaryCrossentropy(_Builtin):
    fn = staticmethod(binary_crossentropy)
    default_name = "binary_crossentropy"
    logits_of = "sigmoid"
    args = (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1))
    positional_tail = ("reduction", "name", "dtype")


@_positional
class BinaryFocalCrossentropy(BinaryCrossentropy):
    fn = staticmethod(binary_focal_crossentropy)
    default_name = "binary_focal_crossentropy"
    args = (("apply_class_balancing", False), ("alpha", 0.25), ("gamma", 2.0),
            ("from_logits", False), ("label_smoothing", 0.0), ("axis", -1))


@_positional
class CategoricalCrossentropy(_Builtin):
    fn = staticmethod(categorical_crossentropy)
    default_name = "categorical_crossentropy"
    logits_of = "softmax"
    args = (("from_logits", False), ("label_smoothing", 0.0), ("axis", -1))
    positional_tail = ("reduction", "name", "dtype")


@_positional
class CategoricalFocalCrossentropy(CategoricalCrossentropy):
    fn = staticmethod(categorical_focal_crossentropy)
    default_name = "categorical_focal_crossentropy"
    args = (("alpha", 0.25), ("gamma", 2.0), ("from_logits", False), ("label_smoothing", 0.0),
            ("axis", -1))


class SparseCategoricalCrossentropy(_Builtin):
    """Cross-entropy from integer class ids. `ignore_class`: labels equal to it count as masked
    entries, as in Keras (0 loss, and left out of the mean)."""

    fn = staticmethod(sparse_categorical_crossentropy)
    default_name = "sparse_categorical_crossentropy"
    logits_of = "softmax"
    args = (("from_logits", False), ("ignore_class", None))

    def __init__(self, *args, **kwargs):
        names = ["from_logits", "ignore_class", "reduction", "axis", "name", "dtype"]
        if len(args) > len(names):
            raise TypeError(f"SparseCategoricalCrossentropy takes at most {len(names)} "
                            f"positional arguments ({', '.join(names)}). Received: {len(args)}")
        for key, value in zip(names, args):
            if key in kwargs:
                raise TypeError(f"SparseCategoricalCrossentropy got two values for {key}")
            kwargs[key] = value
        axis = kwargs.pop("axis", -1)
        if axis != -1:
            raise ValueError("SparseCategoricalCrossentropy supports the last axis only "
                             f"(axis=-1). Received: axis={axis!r}")
        super().__init__(**kwargs)

    def _validate(self):
        super()._validate()
        if self.ignore_class is not None and (isinstance(self.ignore_class, bool)
                                              or not isinstance(self.ignore_class, int)):
            raise TypeError("SparseCategoricalCrossentropy: ignore_class must be an int or None. "
                            f"Received: ignore_class={self.ignore_class!r}")

    def _values_and_mask(self, y_true, y_pred):
        y_pred = jnp.asarray(y_pred)
        if self.dtype is not None:
            y_pred = y_pred.astype(self.dtype)
        return _sparse_values(y_true, y_pred, self.from_logits, self.ignore_class)




LOSS_TYPES = {cls.__name__: cls for cls in (
    SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
    MeanSquaredError, MeanAbsoluteError, Huber, KLDivergence, Poisson, CosineSimilarity,
    LogCosh, Hinge, SquaredHinge, CategoricalHinge, MeanSquaredLogarithmicError,
    MeanAbsolutePercentageError, CategoricalFocalCrossentropy, BinaryFocalCrossentropy)}

# Keras's function forms, and compile(loss=<that function>) as the savable class.
_FUNCTION_CLASSES = {
    mean_squared_error: MeanSquaredError, mean_absolute_error: MeanAbsoluteError,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError, huber: Huber,
    log_cosh: LogCosh, cosine_similarity: CosineSimilarity, hinge: Hinge,
    squared_hinge: SquaredHinge, categorical_hinge: CategoricalHinge,
    kl_divergence: KLDivergence, poisson: Poisson,
    categorical_crossentropy: CategoricalCrossentropy,
    categorical_focal_crossentropy: CategoricalFocalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    binary_focal_crossentropy: BinaryFocalCrossentropy,
}

# Keras's names: function names, class names and its aliases (keras/src/losses/__init__.py).
_BY_NAME = {fn.__name__: cls for fn, cls in _FUNCTION_CLASSES.items()}
_BY_NAME.update({name: cls for name, cls in LOSS_TYPES.items()})
_BY_NAME.update({
    "mse": MeanSquaredError, "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
    "kld": KLDivergence, "KLD": KLDivergence,
    "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
    "huber_loss": Huber,
})


def get(identifier) -> Loss:
    """compile()'s loss from a name (Keras's function or class names and aliases), a Loss, a
    Loss class, a config dict {"class_name", "config"}, or any function fn(y_true, y_pred)
    (wrapped in LossFunctionWrapper). The result is compile()'s own copy: called without
    sample weights it returns the unreduced values (`per_sample`) that kilnet's compiled
    programs reduce; the object you gave is left as it is."""
    loss = _resolve(identifier)
    if loss.reduction not in COMPILED_REDUCTIONS:
        raise ValueError(
            f"compile() takes losses with reduction='sum_over_batch_size' only: kilnet's "
            f"compiled programs average the per-sample losses over the batch's real samples. "
            f"Received: {type(loss).__name__} with reduction={loss.reduction!r}. Use "
            f"reduction='sum_over_batch_size' (the other reductions apply when you call the "
            f"loss yourself).")
    if not loss._unreduced:
        loss = copy.copy(loss)
        loss._unreduced = True
    return loss


def _resolve(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and set(identifier) == {"class_name", "config"} \
            and identifier["class_name"] in LOSS_TYPES and isinstance(identifier["config"], dict):
        return LOSS_TYPES[identifier["class_name"]].from_config(identifier["config"])
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier) and not isinstance(identifier, (str, type)):
        try:
            if identifier in _FUNCTION_CLASSES:
                return _FUNCTION_CLASSES[identifier]()
        except TypeError:  # an unhashable callable
            pass
        return LossFunctionWrapper(identifier)
    raise ValueError(
        f"Unknown loss: expected one of {sorted(_BY_NAME)}, a kilnet.losses.Loss object or a "
        f"function fn(y_true, y_pred). Received: loss={identifier!r}"
    )
