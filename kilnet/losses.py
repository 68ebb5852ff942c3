"""Losses with Keras 3's names, arguments, defaults and formulas.

A loss object you make is Keras's: `loss(y_true, y_pred, sample_weight=None)` returns the
reduced value ("sum_over_batch_size", the default, which "mean" equals; "sum";
"mean_with_sample_weight"; "none" / None: the unreduced values, weighted), eagerly or under
jax.jit / jax.grad. `loss.per_sample(y_true, y_pred)` gives the unreduced values, one per sample
or per element (batch, ...).

compile() keeps its own copy of each loss (`get`), marked to return those unreduced values when
called without sample weights: kilnet's compiled programs (kilnet.objective) average extra axes
per sample, weigh by sample weights and masks, and average over the batch's real samples, which
is Keras's "sum_over_batch_size". compile() therefore takes only that reduction. A loss that
compares a batch's samples with each other (Dice and Tversky over the whole batch, Circle) is
`batch_level`: the programs tell it which rows of a padded last batch are real, so that its
value is Keras's for those rows.

Write your own as Keras does: a function `fn(y_true, y_pred)` with kilnet.ops or jax.numpy
(compile wraps it in LossFunctionWrapper), or a `Loss` subclass implementing `call`.
"""

from __future__ import annotations

import copy
import re

import jax
import jax.numpy as jnp

from kilnet import _ctc, _registry, _scope
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


def _as_arrays(value):
    """One array, or a dict / list / tuple of arrays where the entries do not stack into one
    (a dict, or arrays of different shapes). Each entry is converted once, then stacked."""
    if isinstance(value, dict):
        return {key: _as_arrays(entry) for key, entry in value.items()}
    if not isinstance(value, (list, tuple)) or not value:
        return jnp.asarray(value)
    entries = [_as_arrays(entry) for entry in value]
    if any(not isinstance(entry, jax.Array) for entry in entries) or \
            len({entry.shape for entry in entries}) > 1:
        return type(value)(entries)
    return jnp.stack(entries)


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
    # True when one sample's loss depends on the batch's other samples (Dice over the whole
    # batch, Circle's pairs): kilnet's compiled programs then pass which rows are real
    # (`per_sample(..., rows=)`), so that the padding rows of a padded last batch take no part.
    batch_level: bool = False
    # False when the labels' shape follows neither the output's nor its class ids' (CTC's
    # label sequences, Circle's and GCE's class ids): compile() then leaves costing the
    # training step to fit(), which sees the labels.
    labels_match_output: bool = True

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.reduction = _check_reduction(reduction)
        self.dtype = None if dtype is None else jnp.dtype(dtype).name

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    # -- the values ---------------------------------------------------------------------------
    def _convert(self, y_true, y_pred):
        """Keras converts both to the loss's dtype; with dtype=None kilnet keeps a floating
        prediction's dtype (float32 in kilnet models) and makes anything else float32. A dict,
        or a list or tuple of arrays of different shapes (GauGAN's feature-matching loss over
        a discriminator's feature maps), reaches `call` as that structure of arrays, as Keras
        converts each array of a structure; arrays that stack are stacked, as before.

        Example:
            >>> import numpy as np
            >>> maps = [np.ones((2, 4)), np.ones((2, 2, 2))]
            >>> y_true, y_pred = MeanSquaredError()._convert(maps, maps)
            >>> [a.shape for a in y_pred], str(y_true[0].dtype)
            ([(2, 4), (2, 2, 2)], 'float32')
        """
        y_true, y_pred = _as_arrays(y_true), _as_arrays(y_pred)
        floating = [leaf.dtype for leaf in jax.tree.leaves(y_pred)
                    if jnp.issubdtype(leaf.dtype, jnp.floating)]
        dtype = self.dtype or (floating[0] if floating else jnp.float32)
        return jax.tree.map(lambda leaf: leaf.astype(dtype), (y_true, y_pred))

    def _values_and_mask(self, y_true, y_pred, rows=None):
        """(unreduced values, mask of the entries that count or None). `rows` (batch-level
        losses only): which rows of the batch are real."""
        y_true, y_pred = self._convert(y_true, y_pred)
        return jnp.asarray(self.call(y_true, y_pred)), None

    def values_and_mask(self, y_true, y_pred):
        """(unreduced values, the mask of the entries that count or None), the mask not folded
        into the values: for the compiled programs to join it with an output's sequence mask,
        as Keras joins the two (a step counts where both keep it)."""
        return self._values_and_mask(y_true, y_pred)

    def per_sample(self, y_true, y_pred, rows=None):
        """The unreduced values, shape (batch, ...): what kilnet's compiled programs reduce.
        A scalar from `call` (a loss of the whole batch) is repeated for every sample, so that
        the mean over the batch gives it back. Masked entries (ignore_class) are 0 and the
        others scaled by entries / counted entries, so that the plain mean is Keras's masked
        "sum_over_batch_size". `rows`: the real rows of a padded batch, for a `batch_level`
        loss (the others' padding rows are left out by the programs' weights)."""
        values, mask = self._values_and_mask(y_true, y_pred, rows)
        if values.ndim == 0:   # fit runs a partial last batch at its own size for it
            return jnp.broadcast_to(values, jnp.shape(y_pred)[:1])
        if mask is not None:
            values = jnp.where(mask, values * _mask_scale(mask, values.dtype, rows), 0.0)
        return values

    def __call__(self, y_true, y_pred, sample_weight=None):
        if self._unreduced and sample_weight is None:
            return self.per_sample(y_true, y_pred)  # compile()'s copy: the programs reduce
        values, mask = self._values_and_mask(y_true, y_pred)
        return reduce_weighted_values(values, sample_weight, _with_real_rows(mask, values),
                                      self.reduction)

    @property
    def overrides_call(self) -> bool:
        """Whether the loss's class defines its own `__call__(y_true, y_pred, sample_weight)`
        (keras.io's SupervisedContrastiveLoss returns one number for the batch there): Keras's
        compile calls that, so kilnet's compiled steps do too (objective.per_sample_losses).

        Example:
            >>> from kilnet import losses, ops
            >>> class BatchMean(losses.Loss):
            ...     def __call__(self, y_true, y_pred, sample_weight=None):
            ...         return ops.mean(ops.abs(y_true - y_pred))
            >>> BatchMean().overrides_call, losses.MeanSquaredError().overrides_call
            (True, False)
        """
        return type(self).__call__ is not Loss.__call__

    # -- kilnet's logits shortcut, configuration ---------------------------------------------
    def with_logits(self):
        """The same loss, computed from logits (for a model whose last layer is softmax etc.)."""
        if self.logits_of is None:
            return self
        loss = type(self).from_config({**self.get_config(), "from_logits": True,
                                       "dtype": self.dtype})
        loss.from_logits = CLIPPED_LOGITS   # Keras's numbers for the probabilities it replaces
        loss._unreduced = self._unreduced
        return loss

    def get_config(self):
        # Keras's keys exactly: Keras's Loss.get_config does not write the dtype either
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _mask_scale(mask, dtype, rows=None):
    """entries / counted entries: the factor that makes a plain mean Keras's masked mean.
    With `rows` (a padded batch) only the real rows' entries are entries."""
    if rows is None:
        total = jnp.asarray(mask.size, dtype)
    else:
        total = jnp.sum(jnp.asarray(rows, dtype)) * (mask.size // max(mask.shape[0], 1))
    valid = jnp.sum(mask.astype(dtype))
    return jnp.where(valid > 0, total / jnp.maximum(valid, 1), 0.0)


def _with_real_rows(mask, values):
    """A loss's mask joined with the real rows of kilnet's compiled step (kilnet._scope):
    called in a model's own train_step, test_step or compute_loss, the padding rows of a
    padded last batch take no part, so the loss is Keras's on its shorter last batch."""
    rows = _scope.sample_mask()
    shape = jnp.shape(values)
    if rows is None or not shape or jnp.shape(rows) != shape[:1]:
        return mask
    rows = jnp.broadcast_to(jnp.reshape(rows, rows.shape + (1,) * (len(shape) - 1)), shape)
    return rows if mask is None else jnp.logical_and(mask, rows)


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

    @property
    def plain_function(self):
        """The function this loss wraps as compile() wraps `loss=fn` (no arguments of its
        own, the default reduction): what a file names it by, or None for another wrapper.

        Example:
            >>> def fourth(y_true, y_pred):
            ...     return (y_pred - y_true) ** 4
            >>> LossFunctionWrapper(fourth).plain_function is fourth
            True
            >>> LossFunctionWrapper(fourth, power=2).plain_function is None
            True
        """
        plain = not self._fn_kwargs and self.reduction == "sum_over_batch_size"
        return self.fn if plain else None


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


class _ClippedLogits:
    """`from_logits` of the copy compile() makes of a cross-entropy for a model ending in
    softmax or sigmoid: computed from the logits (no probabilities rounded to 0 or 1), then
    clipped as Keras clips the probabilities, to [epsilon, 1 - epsilon], in log space, so the
    values and gradients are Keras's (a sample scored certain and wrong costs at most
    -log(epsilon) = 16.12, not 150)."""

    def __bool__(self):
        return True

    def __repr__(self):
        return "True"


CLIPPED_LOGITS = _ClippedLogits()


def _log_clipped(log_p, from_logits, complement=False):
    """log-probabilities clipped as Keras clips probabilities, for CLIPPED_LOGITS: log p with
    p in [epsilon, 1 - epsilon], or (`complement`) log(1 - p) for that clipped p, whose lower
    end is log(1 - (1 - epsilon)) as rounded in float32 (Keras's 15.942, not 16.118)."""
    if from_logits is not CLIPPED_LOGITS:
        return log_p
    eps = jnp.asarray(config.epsilon(), log_p.dtype)
    top = jnp.asarray(1.0 - config.epsilon(), log_p.dtype)   # Keras's rounded 1 - epsilon
    low, high = (1 - top, 1 - eps) if complement else (eps, top)
    return jnp.clip(log_p, jnp.log(low), jnp.log(high))


def _probabilities(y_pred, axis):
    probs = y_pred / jnp.sum(y_pred, axis=axis, keepdims=True)
    return jnp.clip(probs, config.epsilon(), 1.0 - config.epsilon())


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    y_true, y_pred = _floats(y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        log_p = _log_clipped(jax.nn.log_softmax(y_pred, axis=axis), from_logits)
        return -jnp.sum(y_true * log_p, axis=axis)
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
        picked = _pick(jax.nn.log_softmax(y_pred, axis=-1), labels[..., 0])
        values = -_log_clipped(picked, from_logits)
    else:
        probs = y_pred / jnp.sum(y_pred, axis=-1, keepdims=True)
        picked = _pick(probs, labels[..., 0])
        values = -jnp.log(jnp.clip(picked, config.epsilon(), 1.0 - config.epsilon()))
    if mask is not None:
        values = jnp.where(mask, values, 0.0)
    return values, mask


def _pick(values, labels):
    """values[..., label] for each row, NaN for a label outside the classes (as
    take_along_axis fills it: the run's non-finite check then stops on it). A select against
    the class index and a sum (exact: the other classes add zeros), where take_along_axis is
    a gather whose gradient is a scatter; XLA's CPU code fuses the select into its neighbours
    (seed MLP: 35 -> 32 kernels a step)."""
    count = values.shape[-1]
    classes = jnp.arange(count, dtype=labels.dtype)
    picked = jnp.sum(jnp.where(labels[..., None] == classes, values, 0.0), axis=-1)
    return jnp.where((labels >= 0) & (labels < count), picked, jnp.nan)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    if axis not in (-1, jnp.ndim(y_pred) - 1):
        raise ValueError(f"sparse_categorical_crossentropy supports the last axis only. "
                         f"Received: axis={axis}")
    return _sparse_values(y_true, y_pred, from_logits, ignore_class)[0]


def _bce(y_true, y_pred, from_logits):
    if from_logits is CLIPPED_LOGITS:   # Keras's clipped probabilities, from the logits
        log_p = _log_clipped(jax.nn.log_sigmoid(y_pred), from_logits)
        log_not_p = _log_clipped(jax.nn.log_sigmoid(-y_pred), from_logits, complement=True)
        return -(y_true * log_p + (1 - y_true) * log_not_p)
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


def ctc(y_true, y_pred):
    """Keras's CTC loss of each sample. `y_true`: integer labels (batch, max_label_length),
    0 being the blank and the padding after each label; `y_pred`: scores (batch, max_time,
    num_classes), log-softmaxed here, every time step counting (kilnet._ctc).

    Example:
        >>> import numpy as np
        >>> round(float(ctc(np.array([[1, 0]]), np.zeros((1, 2, 2)))[0]), 4)  # -log(3/4)
        0.2877
    """
    y_true, y_pred = jnp.asarray(y_true), jnp.asarray(y_pred)
    if y_true.ndim != 2 or y_pred.ndim != 3:
        raise ValueError(
            "The CTC loss needs labels y_true of shape (batch, max_label_length) and scores "
            "y_pred of shape (batch, max_time, num_classes). Received: "
            f"y_true.shape={y_true.shape}, y_pred.shape={y_pred.shape}")
    label_length = jnp.sum(y_true != 0, axis=-1)
    output_length = jnp.full(y_pred.shape[:1], y_pred.shape[1], jnp.int32)
    return _ctc.ctc_loss(y_true, y_pred, label_length, output_length, mask_index=0)


def _axes(axis):
    """A config's axis list (JSON has no tuples) as the tuple jnp.sum takes."""
    return tuple(axis) if isinstance(axis, list) else axis


def dice(y_true, y_pred, axis=None):
    """1 - 2 sum(y_true y_pred) / (sum(y_true) + sum(y_pred)) over `axis` (None: every
    entry of the batch, one value).

    Example:
        >>> import numpy as np
        >>> round(float(dice(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))), 4)
        0.5
    """
    y_true, y_pred = _floats(y_true, y_pred)
    axis = _axes(axis)
    overlap = jnp.sum(y_true * y_pred, axis=axis)
    total = jnp.sum(y_true, axis=axis) + jnp.sum(y_pred, axis=axis)
    return 1.0 - 2.0 * overlap / (total + config.epsilon())


def tversky(y_true, y_pred, alpha=0.5, beta=0.5, axis=None):
    """1 - TP / (TP + alpha FP + beta FN) over `axis` (None: every entry of the batch); with
    alpha = beta = 0.5 it is the Dice loss.

    Example:
        >>> import numpy as np
        >>> round(float(tversky(np.array([[1.0, 0.0]]), np.array([[0.5, 0.5]]))), 4)
        0.5
    """
    y_true, y_pred = _floats(y_true, y_pred)
    axis = _axes(axis)
    true_positive = jnp.sum(y_true * y_pred, axis=axis)
    false_positive = jnp.sum((1.0 - y_true) * y_pred, axis=axis)
    false_negative = jnp.sum(y_true * (1.0 - y_pred), axis=axis)
    denominator = true_positive + alpha * false_positive + beta * false_negative
    return 1.0 - true_positive / (denominator + config.epsilon())


def _pair_masks(labels, ref_labels, remove_diagonal, ref_rows):
    """(same class, other class) for every (sample, reference) pair; a sample is not its own
    positive when remove_diagonal; references outside `ref_rows` are neither."""
    same = labels.reshape(-1, 1) == ref_labels.reshape(1, -1)
    other = ~same
    if remove_diagonal:
        same = same & ~jnp.eye(same.shape[0], same.shape[1], dtype=bool)
    if ref_rows is not None:
        real = jnp.asarray(ref_rows, bool).reshape(1, -1)
        same, other = same & real, other & real
    return same, other


def _masked_logsumexp(values, mask):
    """logsumexp over the masked entries of each row; -inf for a row with none (and a zero,
    not NaN, gradient there)."""
    any_entry = jnp.any(mask, axis=1)
    safe = jnp.where(mask, values, jnp.where(any_entry[:, None], -jnp.inf, 0.0))
    return jnp.where(any_entry, jax.nn.logsumexp(safe, axis=1), -jnp.inf)


def circle(y_true, y_pred, ref_labels=None, ref_embeddings=None, remove_diagonal=True,
           gamma=80, margin=0.4, *, ref_rows=None):
    """Circle loss (Sun et al., 2020) of each sample: `y_true` integer class ids (batch,),
    `y_pred` L2-normalized embeddings (batch, dim), compared with the references (default:
    the batch itself). A sample with no positive reference gets 0. `ref_rows` (kilnet): which
    references are real (a padded batch).

    Example:
        >>> import numpy as np
        >>> emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> [round(v, 4) for v in circle(np.array([0, 0, 1]), emb).tolist()]
        [0.0, 0.0, 0.0]
    """
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    labels = jnp.asarray(y_true).astype(jnp.int32)
    refs = y_pred if ref_embeddings is None else jnp.asarray(ref_embeddings, y_pred.dtype)
    ref_labels = labels if ref_labels is None else jnp.asarray(ref_labels).astype(jnp.int32)
    distance = jnp.maximum(1.0 - y_pred @ refs.T, 0.0)
    same, other = _pair_masks(labels, ref_labels, remove_diagonal, ref_rows)
    # each similarity weighted by how far it is from its optimum (margin, 1 + margin)
    pos_weight = jnp.maximum((margin + distance) * same, 0.0)
    neg_weight = jnp.maximum((1.0 + margin - distance) * other, 0.0)
    positive = -gamma * pos_weight * (margin - distance)
    negative = gamma * neg_weight * (1.0 - margin - distance)
    return jax.nn.softplus(_masked_logsumexp(positive, same)
                           + _masked_logsumexp(negative, other))


def categorical_generalized_cross_entropy(y_true, y_pred, q):
    """(1 - p^q) / q, p the predicted probability of the true class (Zhang & Sabuncu, 2018):
    integer class ids y_true (batch,) or (batch, 1), probabilities y_pred (batch, classes).

    Example:
        >>> import numpy as np
        >>> categorical_generalized_cross_entropy(np.array([1]), np.array([[0.75, 0.25]]),
        ...                                       q=0.5).tolist()
        [1.0]
    """
    y_pred = jnp.asarray(y_pred)
    if not jnp.issubdtype(y_pred.dtype, jnp.floating):
        y_pred = y_pred.astype(jnp.float32)
    y_true = jnp.asarray(y_true)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]  # Keras documents (batch, 1) labels as class ids too
    one_hot = jax.nn.one_hot(y_true.astype(jnp.int32), y_pred.shape[-1], dtype=y_pred.dtype)
    probability = jnp.sum(y_pred * one_hot, axis=-1)
    return (1.0 - jnp.power(probability, q)) / q


# -- the classes ----------------------------------------------------------------------------------
class _Builtin(Loss):
    """A kilnet loss class: its formula is one of the functions above, with its arguments."""

    fn = None            # the formula (a function above)
    default_name = None
    args: tuple = ()     # (argument, default) pairs, in Keras's constructor order
    config_order: tuple = ()   # Keras's get_config order of args, where it differs

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
        config.update({k: getattr(self, k) for k in self.config_order or dict(self.args)})
        if "from_logits" in config:   # compile()'s clipped copy reads as from_logits=True
            config["from_logits"] = bool(config["from_logits"])
        return config


def _positional(cls):
    """Keras's classes take their own arguments positionally first: MeanSquaredError("sum")
    is the reduction, Huber(2.0) the delta, CategoricalCrossentropy(True) from_logits.
    A class whose own arguments come after the reduction (Dice's axis) lists the whole order
    in `positional`."""
    names = list(getattr(cls, "positional", None)
                 or [k for k, _ in cls.args] + list(cls.positional_tail))

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
    config_order = ("from_logits", "label_smoothing", "axis", "apply_class_balancing", "alpha",
                    "gamma")


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
    config_order = ("from_logits", "label_smoothing", "axis", "alpha", "gamma")


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

    def _values_and_mask(self, y_true, y_pred, rows=None):
        y_pred = jnp.asarray(y_pred)
        if self.dtype is not None:
            y_pred = y_pred.astype(self.dtype)
        return _sparse_values(y_true, y_pred, self.from_logits, self.ignore_class)


@_positional
class CTC(_Builtin):
    """Keras's CTC loss: integer labels (batch, max_label_length) with 0 the blank and the
    padding, scores (batch, max_time, num_classes) that it log-softmaxes (Keras's rule: a
    softmax output's probabilities are read as scores, as Keras does). One value per sample.

    Example:
        >>> import numpy as np
        >>> from kilnet import losses
        >>> round(float(losses.CTC()(np.array([[1, 0]]), np.zeros((1, 2, 2)))), 4)
        0.2877
    """

    labels_match_output = False
    fn = staticmethod(ctc)
    default_name = "ctc"
    positional_tail = ("reduction", "name", "dtype")


def _check_axis(owner: str, axis):
    if axis is None or (isinstance(axis, int) and not isinstance(axis, bool)):
        return
    if isinstance(axis, (tuple, list)) and all(
            isinstance(a, int) and not isinstance(a, bool) for a in axis):
        return
    raise ValueError(f"{owner}: axis must be None, an int or a tuple of ints. Received: "
                     f"axis={axis!r}")


def _check_number(owner: str, key: str, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {key} must be a number. Received: {key}={value!r}")


def _spans_batch(axis, ndim: int) -> bool:
    """Whether reducing over `axis` sums over the batch axis too (None: every axis)."""
    if axis is None:
        return True
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return any(a % ndim == 0 for a in axes)


def _real_rows_only(values, rows):
    """`values` with the rows outside `rows` (the padding of a padded batch) set to 0."""
    keep = jnp.asarray(rows, bool).reshape((-1,) + (1,) * (values.ndim - 1))
    return jnp.where(keep, values, jnp.zeros_like(values))


class _Overlap(_Builtin):
    """Dice and Tversky: sums of overlaps over `axis`. With axis=None (or an axis list with
    the batch axis, 0) the loss is one value of the whole batch, as in Keras; with sample
    weights it is scaled by their mean, which is Keras's number. In fit/evaluate kilnet
    leaves the padding rows of a padded last batch out of those sums (a zero row adds nothing
    to any of them), so every batch's loss is Keras's for its real rows; rows with sample
    weight 0 still take part, as in Keras. A loss per feature (batch axis summed, others
    kept) is averaged over the features there, Keras's "sum_over_batch_size"."""

    batch_level = True

    def _validate(self):
        _check_axis(type(self).__name__, self.axis)
        for key in ("alpha", "beta"):
            if hasattr(self, key):
                _check_number(type(self).__name__, key, getattr(self, key))

    def _values_and_mask(self, y_true, y_pred, rows=None):
        y_true, y_pred = squeeze_or_expand(*self._convert(y_true, y_pred))
        if rows is not None:
            y_true, y_pred = _real_rows_only(y_true, rows), _real_rows_only(y_pred, rows)
        return jnp.asarray(self.call(y_true, y_pred)), None

    def call(self, y_true, y_pred):
        return super().call(*squeeze_or_expand(y_true, y_pred))

    def per_sample(self, y_true, y_pred, rows=None):
        values = self._values_and_mask(y_true, y_pred, rows)[0]
        if _spans_batch(self.axis, jnp.ndim(y_pred)):
            values = jnp.mean(values)
        return jnp.broadcast_to(values, jnp.shape(y_pred)[:1]) if values.ndim == 0 else values


@_positional
class Dice(_Overlap):
    """Keras's Dice loss, 1 - 2 sum(y_true y_pred) / (sum(y_true) + sum(y_pred)), over `axis`
    (None: the whole batch; see _Overlap for batches in fit).

    Example:
        >>> import numpy as np
        >>> from kilnet import losses
        >>> y = np.array([[1.0, 0.0], [1.0, 1.0]])
        >>> round(float(losses.Dice()(y, np.full((2, 2), 0.5))), 4)
        0.4
        >>> [round(v, 4) for v in losses.Dice(axis=1, reduction=None)(y, np.full((2, 2), 0.5)
        ...                                                            ).tolist()]
        [0.5, 0.3333]
    """

    fn = staticmethod(dice)
    default_name = "dice"
    args = (("axis", None),)
    positional = ("reduction", "name", "axis", "dtype")


@_positional
class Tversky(_Overlap):
    """Keras's Tversky loss, 1 - TP / (TP + alpha FP + beta FN) over `axis` (None: the
    whole batch; see _Overlap for batches in fit). alpha weighs the false positives, as
    documented and as Keras computes since its fix #23333 (after 3.15); Keras 3.15.x itself
    weighs the false negatives by alpha (Tversky(a, b) there is Tversky(b, a) here).

    Example:
        >>> import numpy as np
        >>> from kilnet import losses
        >>> y = np.array([[1.0, 0.0], [1.0, 1.0]])
        >>> round(float(losses.Tversky(alpha=0.7, beta=0.3)(y, np.full((2, 2), 0.5))), 4)
        0.3478
    """

    fn = staticmethod(tversky)
    default_name = "tversky"
    args = (("alpha", 0.5), ("beta", 0.5), ("axis", None))
    positional = ("alpha", "beta", "reduction", "name", "axis", "dtype")


@_positional
class Circle(_Builtin):
    """Keras's Circle loss: integer labels (batch,) and L2-normalized embeddings (batch, dim)
    (e.g. Dense(..., activation=None) then UnitNormalization), each sample compared with the
    batch's others. Samples whose loss is 0 (no other sample of their class) are left out of
    the mean, as in Keras. In fit/evaluate the padding rows of a padded last batch are
    neither samples nor references, so every batch's loss is Keras's for its real rows;
    rows with sample weight 0 still serve as references, as in Keras.

    Example:
        >>> import numpy as np
        >>> from kilnet import losses
        >>> emb = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
        >>> round(float(losses.Circle(gamma=2.0)(np.array([0, 0, 1]), emb)), 4)
        0.915
    """

    labels_match_output = False
    fn = staticmethod(circle)
    default_name = "circle"
    batch_level = True
    args = (("gamma", 80.0), ("margin", 0.4), ("remove_diagonal", True))
    positional_tail = ("reduction", "name", "dtype")

    def _validate(self):
        super()._validate()
        _check_number("Circle", "margin", self.margin)

    def _values_and_mask(self, y_true, y_pred, rows=None):
        y_true, y_pred = squeeze_or_expand(*self._convert(y_true, y_pred))
        values = circle(y_true, y_pred, remove_diagonal=self.remove_diagonal,
                        gamma=self.gamma, margin=self.margin, ref_rows=rows)
        counted = values > 0  # Keras's mask: a sample with loss 0 is not counted
        if rows is not None:
            counted = counted & jnp.asarray(rows, bool)
        return values, counted


@_positional
class CategoricalGeneralizedCrossEntropy(_Builtin):
    """Keras's generalized cross-entropy (1 - p^q) / q of integer labels and probabilities;
    q in (0, 1): near 0 it behaves like cross-entropy, near 1 like the mean absolute error.

    Example:
        >>> import numpy as np
        >>> from kilnet import losses
        >>> loss = losses.CategoricalGeneralizedCrossEntropy(q=0.5)
        >>> float(loss(np.array([1, 0]), np.array([[0.75, 0.25], [0.25, 0.75]])))
        1.0
    """

    labels_match_output = False
    fn = staticmethod(categorical_generalized_cross_entropy)
    default_name = "categorical_generalized_cross_entropy"
    args = (("q", 0.5),)
    positional_tail = ("reduction", "name", "dtype")

    def _validate(self):
        _check_number(type(self).__name__, "q", self.q)
        if not 0 < self.q < 1:
            raise ValueError(f"{type(self).__name__}: q must be in the open interval (0, 1), "
                             f"e.g. q=0.5. Received: q={self.q!r}")


LOSS_TYPES = {cls.__name__: cls for cls in (
    SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
    MeanSquaredError, MeanAbsoluteError, Huber, KLDivergence, Poisson, CosineSimilarity,
    LogCosh, Hinge, SquaredHinge, CategoricalHinge, MeanSquaredLogarithmicError,
    MeanAbsolutePercentageError, CategoricalFocalCrossentropy, BinaryFocalCrossentropy, CTC,
    Dice, Tversky, Circle, CategoricalGeneralizedCrossEntropy)}

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
    ctc: CTC, dice: Dice, tversky: Tversky, circle: Circle,
    categorical_generalized_cross_entropy: CategoricalGeneralizedCrossEntropy,
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

# The names above that Keras's losses.get does not read: a .keras file names their class.
NOT_KERAS_NAMES = frozenset({"huber_loss", "categorical_generalized_cross_entropy",
                             "CategoricalGeneralizedCrossEntropy"})


def get(identifier, reduced_by_your_step=False) -> Loss:
    """compile()'s loss from a name (Keras's function or class names and aliases), a Loss, a
    Loss class, a config dict {"class_name", "config"}, or any function fn(y_true, y_pred)
    (wrapped in LossFunctionWrapper). The result is compile()'s own copy: called without
    sample weights it returns the unreduced values (`per_sample`) that kilnet's compiled
    programs reduce; the object you gave is left as it is. A Loss whose class defines its own
    `__call__` is returned as it is: that `__call__` is what compile runs, as in Keras.
    `reduced_by_your_step`: the model has its own train_step, which may read `self.loss` and
    reduce the values itself: a reduction kilnet's steps cannot apply is then refused only
    where they would apply it (LossYourStepReduces)."""
    loss = _resolve(identifier)
    if loss.overrides_call or isinstance(loss, LossYourStepReduces):
        # Keras's compile calls your __call__ and trains on what it returns (reduced as your
        # __call__ reduces it): the programs call it so too (objective.per_sample_losses)
        return loss
    if loss.reduction not in COMPILED_REDUCTIONS:
        if reduced_by_your_step:
            return LossYourStepReduces(loss)
        raise ValueError(_reduction_refusal(loss))
    if not loss._unreduced:
        loss = copy.copy(loss)
        loss._unreduced = True
    return loss


def _reduction_refusal(loss) -> str:
    return (f"compile() takes losses with reduction='sum_over_batch_size' only: kilnet's "
            f"compiled programs average the per-sample losses over the batch's real samples. "
            f"Received: {type(loss).__name__} with reduction={loss.reduction!r}. Use "
            f"reduction='sum_over_batch_size' (the other reductions apply when you call the "
            f"loss yourself, as a train_step of yours may: `self.loss(y, y_pred)`).")


class LossYourStepReduces(Loss):
    """compile()'s stand-in for a loss whose reduction kilnet's compiled steps cannot apply
    (reduction=None, "sum"), compiled into a model with its own train_step, which reads
    `self.loss` (the object you gave) and reduces the values itself (keras.io's image
    captioning masks its per-token losses). kilnet's own steps (compute_loss, the built-in
    test_step of evaluate) refuse it where they would reduce it.

    Example:
        >>> import numpy as np
        >>> stand_in = get(SparseCategoricalCrossentropy(reduction=None),
        ...                reduced_by_your_step=True)
        >>> type(stand_in).__name__, stand_in.reduction
        ('LossYourStepReduces', None)
        >>> try:
        ...     stand_in(np.array([0]), np.array([[0.9, 0.1]]))
        ... except ValueError as error:
        ...     print(str(error)[:64])
        compile() takes losses with reduction='sum_over_batch_size' only
    """

    def __init__(self, loss):
        super().__init__(name=loss.name, reduction=loss.reduction, dtype=loss.dtype)
        self.given = loss

    def _values_and_mask(self, y_true, y_pred, rows=None):
        raise ValueError(_reduction_refusal(self.given))


def _resolve(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and set(identifier) <= _ENTRY_KEYS \
            and identifier.get("class_name") in LOSS_TYPES \
            and isinstance(identifier.get("config"), dict):
        return deserialize(identifier)
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


# -- configs: Keras's losses.serialize / deserialize -----------------------------------------------
_ENTRY_KEYS = {"module", "class_name", "config", "registered_name"}


def serialize(loss) -> dict:
    """A loss as Keras writes it: {"module", "class_name", "config", "registered_name"}
    (a class of yours registered with kilnet.saving.register_serializable under its
    registered name).

    Example:
        >>> from kilnet import losses
        >>> losses.serialize(losses.Dice(axis=(1, 2)))["config"]
        {'name': 'dice', 'reduction': 'sum_over_batch_size', 'axis': (1, 2)}
    """
    return _registry.to_config_entry(_resolve(loss), LOSS_TYPES, "keras.losses", "loss")


def deserialize(config) -> Loss:
    """The loss a config describes: what `serialize` (or Keras's) writes, a plain
    {"class_name", "config"} dict, Keras's entry for a loss function
    ({"class_name": "function", "config": "dice", ...}), or a name ("mse", "Dice", "dice").
    A function's name gives its loss class (compile() trains with either alike). Only
    kilnet's classes and registered ones are created.

    Example:
        >>> from kilnet import losses
        >>> losses.deserialize({"module": "keras.losses", "class_name": "Tversky",
        ...                     "config": {"alpha": 0.7, "beta": 0.3},
        ...                     "registered_name": None}).alpha
        0.7
        >>> losses.deserialize("mse")
        MeanSquaredError(name='mean_squared_error', reduction='sum_over_batch_size')
    """
    if isinstance(config, str):
        if config not in _BY_NAME:
            raise ValueError(f"Unknown loss: expected one of {sorted(_BY_NAME)}. Received: "
                             f"config={config!r}")
        return _BY_NAME[config]()
    if isinstance(config, dict) and config.get("class_name") == "function":
        return deserialize(config.get("config"))
    return _registry.from_config_entry(config, LOSS_TYPES, Loss, "loss")
