"""Keras's `keras.ops`, on JAX: the array functions a Keras-style layer's `call` is written in.

Why it exists: code ported from Keras says `ops.matmul(x, self.kernel)`, and it should run here
unchanged. Each function keeps Keras's name, argument names and defaults and is a thin wrapper
over `jax.numpy`, `jax.nn` or `jax.lax`; the wrapper adds only what Keras does differently:

- every array argument may be a `kilnet.variables.Variable` (JAX refuses to convert one
  implicitly, so each argument goes through `to_array`), a NumPy array, a list or a scalar;
- Keras's dtypes: creation functions default to float32, rounding and `rsqrt`/`erf` turn integers
  into float32, `shape` is a tuple of ints;
- Keras's control-flow conventions (`while_loop` unpacks its loop variables, `slice` reads -1 as
  "to the end").

Every function is traceable, so a `call` built from them compiles into the training step.

Example:
    >>> import numpy as np
    >>> from kilnet import ops
    >>> from kilnet.variables import Variable
    >>> kernel = Variable(np.eye(2, dtype=np.float32), name="kernel")
    >>> y = ops.relu(ops.matmul(np.array([[1.0, -2.0]], np.float32), kernel))
    >>> ops.convert_to_numpy(y).tolist(), ops.shape(y)
    ([[1.0, 0.0]], (1, 2))
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import config
from kilnet.variables import to_array

__all__ = [
    # arithmetic
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "mod", "negative",
    "power", "maximum", "minimum", "clip",
    # linear algebra
    "matmul", "dot", "einsum", "tensordot", "norm",
    # reductions
    "mean", "sum", "max", "min", "prod", "std", "var", "argmax", "argmin", "all", "any",
    "cumsum", "logsumexp",
    # shapes and indexing
    "concatenate", "stack", "split", "unstack", "reshape", "transpose", "swapaxes", "moveaxis",
    "expand_dims", "squeeze", "flip", "tile", "repeat", "broadcast_to", "take",
    "take_along_axis", "where", "get_item", "tril", "triu", "outer", "cumprod", "pad",
    "slice", "slice_update", "sort", "argsort", "top_k",
    "segment_sum", "segment_max",
    # elementwise math
    "exp", "log", "log1p", "sqrt", "rsqrt", "square", "abs", "absolute", "sign", "round",
    "floor", "ceil", "cos", "sin", "tanh", "erf", "tan", "arcsin", "arccos", "arctan", "arctan2",
    "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "exp2", "expm1", "log2", "log10",
    "reciprocal", "trunc",
    # comparisons and logic
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite",
    "nan_to_num",
    # neural network functions
    "relu", "relu6", "sigmoid", "log_sigmoid", "softmax", "log_softmax", "softplus", "silu",
    "swish", "hard_sigmoid", "hard_silu", "softsign", "gelu", "leaky_relu", "elu", "selu",
    "one_hot", "moments", "normalize",
    "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy",
    # tensors, dtypes and creation
    "cast", "convert_to_tensor", "convert_to_numpy", "shape", "ndim", "size", "stop_gradient",
    "zeros", "ones", "zeros_like", "ones_like", "full", "full_like", "arange", "linspace", "eye",
    # control flow
    "cond", "while_loop", "fori_loop", "scan",
]

FLOATX = "float32"  # Keras's default float dtype (keras.config.floatx())


# -- argument conversion ------------------------------------------------------------------------

def _a(x):
    """An array argument as a JAX array: a Variable's value; lists (of Variables too), NumPy
    arrays and scalars converted (Python scalars stay weakly typed, as in jax.numpy)."""
    if isinstance(x, (list, tuple)):
        # Variables nested in a list: each replaced by its value (tree.map reaches them all)
        return jnp.asarray(jax.tree.map(to_array, x))
    return jnp.asarray(to_array(x))


def _each(xs):
    """A sequence of array arguments (concatenate, stack) converted one by one."""
    return [_a(x) for x in xs]


def _float(x):
    """`x` as an array, integers and booleans cast to float32 (Keras returns floats there)."""
    x = _a(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(FLOATX)


# -- arithmetic ---------------------------------------------------------------------------------

def add(x1, x2):
    """Elementwise `x1 + x2`, broadcasting."""
    return jnp.add(_a(x1), _a(x2))


def subtract(x1, x2):
    """Elementwise `x1 - x2`, broadcasting."""
    return jnp.subtract(_a(x1), _a(x2))


def multiply(x1, x2):
    """Elementwise `x1 * x2`, broadcasting."""
    return jnp.multiply(_a(x1), _a(x2))


def divide(x1, x2):
    """Elementwise true division `x1 / x2` (integers give floats)."""
    return jnp.divide(_a(x1), _a(x2))


def true_divide(x1, x2):
    """Alias of `divide`."""
    return divide(x1, x2)


def floor_divide(x1, x2):
    """Elementwise `x1 // x2`, rounded toward minus infinity.

    Example:
        >>> floor_divide(np.array([7, -7]), 2).tolist()
        [3, -4]
    """
    return jnp.floor_divide(_a(x1), _a(x2))


def mod(x1, x2):
    """Elementwise `x1 % x2`, with the sign of `x2` (Python's and NumPy's rule).

    Example:
        >>> mod(np.array([7, -7]), 3).tolist()
        [1, 2]
    """
    return jnp.mod(_a(x1), _a(x2))


def negative(x):
    """Elementwise `-x`."""
    return jnp.negative(_a(x))


def power(x1, x2):
    """Elementwise `x1 ** x2`."""
    return jnp.power(_a(x1), _a(x2))


def maximum(x1, x2):
    """Elementwise maximum."""
    return jnp.maximum(_a(x1), _a(x2))


def minimum(x1, x2):
    """Elementwise minimum."""
    return jnp.minimum(_a(x1), _a(x2))


def clip(x, x_min, x_max):
    """Limit the values of `x` to `[x_min, x_max]` (booleans become int32, as in Keras)."""
    x = _a(x)
    if x.dtype == jnp.bool_:
        x = x.astype("int32")
    return jnp.clip(x, _a(x_min), _a(x_max))


# -- linear algebra -----------------------------------------------------------------------------

def matmul(x1, x2):
    """Matrix product, batched over leading dimensions (`x1 @ x2`)."""
    return jnp.matmul(_a(x1), _a(x2))


def dot(x1, x2):
    """Dot product, with NumPy's rules for each rank."""
    return jnp.dot(_a(x1), _a(x2))


def einsum(subscripts, *operands, **kwargs):
    """Einstein summation, e.g. `einsum("bij,jk->bik", x, w)`."""
    return jnp.einsum(subscripts, *_each(operands), **kwargs)


def tensordot(x1, x2, axes=2):
    """Sum of products over the given axes (an int, or a pair of axis lists)."""
    return jnp.tensordot(_a(x1), _a(x2), axes=axes)


def norm(x, ord=None, axis=None, keepdims=False):
    """Vector or matrix norm (NumPy's `ord` conventions); integers give float32."""
    return jnp.linalg.norm(_float(x), ord=ord, axis=axis, keepdims=keepdims)


# -- reductions ---------------------------------------------------------------------------------

def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over `axis` (all axes when None); integers give float32."""
    return jnp.mean(_a(x), axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes when None)."""
    return jnp.sum(_a(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False, initial=None):
    """Maximum over `axis`; `initial` is the result for an empty reduction."""
    return jnp.max(_a(x), axis=axis, keepdims=keepdims, initial=initial)


def min(x, axis=None, keepdims=False, initial=None):
    """Minimum over `axis`; `initial` is the result for an empty reduction."""
    return jnp.min(_a(x), axis=axis, keepdims=keepdims, initial=initial)


def prod(x, axis=None, keepdims=False, dtype=None):
    """Product over `axis`."""
    return jnp.prod(_a(x), axis=axis, keepdims=keepdims, dtype=dtype)


def std(x, axis=None, keepdims=False):
    """Population standard deviation (ddof=0) over `axis`."""
    return jnp.std(_a(x), axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    """Population variance (ddof=0) over `axis`."""
    return jnp.var(_a(x), axis=axis, keepdims=keepdims)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along `axis` (of the flattened array when None), as int32."""
    return jnp.argmax(_a(x), axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along `axis` (of the flattened array when None), as int32."""
    return jnp.argmin(_a(x), axis=axis, keepdims=keepdims)


def all(x, axis=None, keepdims=False):
    """Whether every element along `axis` is true."""
    return jnp.all(_a(x), axis=axis, keepdims=keepdims)


def any(x, axis=None, keepdims=False):
    """Whether any element along `axis` is true."""
    return jnp.any(_a(x), axis=axis, keepdims=keepdims)


def cumsum(x, axis=None, dtype=None):
    """Cumulative sum along `axis` (of the flattened array when None)."""
    return jnp.cumsum(_a(x), axis=axis, dtype=dtype)


def logsumexp(x, axis=None, keepdims=False):
    """`log(sum(exp(x)))` over `axis`, computed without overflow."""
    return jax.nn.logsumexp(_a(x), axis=axis, keepdims=keepdims)


# -- shapes and indexing ------------------------------------------------------------------------

def concatenate(xs, axis=0):
    """Join a sequence of arrays along an existing axis."""
    return jnp.concatenate(_each(xs), axis=axis)


def stack(x, axis=0):
    """Join a sequence of same-shaped arrays along a new axis."""
    return jnp.stack(_each(x), axis=axis)


def split(x, indices_or_sections, axis=0):
    """Split into a list of arrays: `n` equal sections, or at the given indices."""
    return jnp.split(_a(x), indices_or_sections, axis=axis)


def unstack(x, num=None, axis=0):
    """The slices of `x` along `axis`, as a list (`num`, if given, must equal that length)."""
    x = _a(x)
    if num is not None and num != x.shape[axis]:
        raise ValueError(f"Argument `num` must equal x.shape[axis] = {x.shape[axis]}. "
                         f"Received: num={num}")
    return list(jnp.moveaxis(x, axis, 0))


def reshape(x, newshape):
    """The same elements in a new shape (one dimension may be -1)."""
    return jnp.reshape(_a(x), newshape)


def transpose(x, axes=None):
    """Permute the axes (reverse them when `axes` is None)."""
    return jnp.transpose(_a(x), axes)


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    return jnp.swapaxes(_a(x), axis1, axis2)


def moveaxis(x, source, destination):
    """Move axes to new positions, keeping the order of the others."""
    return jnp.moveaxis(_a(x), source, destination)


def expand_dims(x, axis):
    """Insert length-1 axes at `axis` (an int or a tuple)."""
    return jnp.expand_dims(_a(x), axis)


def squeeze(x, axis=None):
    """Remove length-1 axes (all of them when `axis` is None)."""
    return jnp.squeeze(_a(x), axis=axis)


def flip(x, axis=None):
    """Reverse the order of elements along `axis` (all axes when None)."""
    return jnp.flip(_a(x), axis=axis)


def tile(x, repeats):
    """Repeat the whole array `repeats` times along each axis."""
    return jnp.tile(_a(x), repeats)


def repeat(x, repeats, axis=None):
    """Repeat each element `repeats` times along `axis` (flattening when None)."""
    return jnp.repeat(_a(x), repeats, axis=axis)


def broadcast_to(x, shape):
    """Broadcast `x` to `shape`."""
    return jnp.broadcast_to(_a(x), shape)


def take(x, indices, axis=None):
    """Elements at `indices` along `axis` (of the flattened array when None)."""
    return jnp.take(_a(x), _a(indices), axis=axis)


def take_along_axis(x, indices, axis=None):
    """Pick values by an index array shaped like `x` (as argsort/argmax results)."""
    return jnp.take_along_axis(_a(x), _a(indices), axis=axis)


def where(condition, x1=None, x2=None):
    """`x1` where `condition` is true, else `x2`; with only `condition`, the indices where it is
    true (a tuple of arrays, one per axis; not traceable)."""
    if (x1 is None) != (x2 is None):
        raise ValueError("Arguments `x1` and `x2` must both be given or both be None. "
                         f"Received: x1={x1!r}, x2={x2!r}")
    if x1 is None:
        return jnp.nonzero(_a(condition))
    return jnp.where(_a(condition), _a(x1), _a(x2))


def tril(x, k=0):
    """`x` with the elements above the k-th diagonal of its last two axes set to 0.

    Example:
        >>> tril(np.ones((3, 3), np.int32)).tolist()
        [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return jnp.tril(_a(x), k=k)


def triu(x, k=0):
    """`x` with the elements below the k-th diagonal of its last two axes set to 0."""
    return jnp.triu(_a(x), k=k)


def outer(x1, x2):
    """The outer product of `x1` and `x2`, both flattened first."""
    return jnp.outer(_a(x1), _a(x2))


def cumprod(x, axis=None, dtype=None):
    """Cumulative product along `axis` (of the flattened array when None)."""
    return jnp.cumprod(_a(x), axis=axis, dtype=dtype)


def get_item(x, key):
    """`x[key]`: an integer, a slice, `None` (a new axis), `...`, an index array, or a tuple of
    them. A list of them is read as a tuple, as Keras's `GetItem` reads it (the form its model
    files store).

    Example:
        >>> get_item(np.arange(6).reshape(2, 3), [..., 1]).tolist()
        [1, 4]
    """
    if isinstance(key, list):
        key = tuple(key)
    key = jax.tree.map(to_array, key)   # a Variable among the indices: its value
    return _a(x)[key]


def pad(x, pad_width, mode="constant", constant_values=None):
    """Pad with NumPy's `pad_width` and `mode`; `constant_values` only for mode "constant"."""
    if constant_values is None:
        return jnp.pad(_a(x), pad_width, mode=mode)
    if mode != "constant":
        raise ValueError("Argument `constant_values` can only be given with mode='constant'. "
                         f"Received: mode={mode!r}")
    return jnp.pad(_a(x), pad_width, mode=mode, constant_values=constant_values)


def slice(inputs, start_indices, shape):
    """The block of `shape` starting at `start_indices` (which may be traced); a -1 in
    `shape` takes the rest of that dimension."""
    inputs = _a(inputs)
    # -1 needs a static start (the result's shape must be known when tracing).
    sizes = tuple(dim - start if size == -1 else size
                  for dim, start, size in zip(inputs.shape, start_indices, shape))
    return jax.lax.dynamic_slice(inputs, start_indices, sizes)


def slice_update(inputs, start_indices, updates):
    """`inputs` with the block at `start_indices` replaced by `updates`."""
    return jax.lax.dynamic_update_slice(_a(inputs), _a(updates), start_indices)


def sort(x, axis=-1):
    """Sorted copy, ascending, along `axis`."""
    return jnp.sort(_a(x), axis=axis)


def argsort(x, axis=-1):
    """Indices that sort `x` ascending along `axis` (stable)."""
    return jnp.argsort(_a(x), axis=axis)


def top_k(x, k, sorted=True):
    """The `k` largest values along the last axis and their indices, largest first (JAX always
    sorts, which `sorted=False` allows)."""
    values, indices = jax.lax.top_k(_a(x), k)
    return values, indices


def segment_sum(data, segment_ids, num_segments=None, sorted=False):
    """Sum of the rows of `data` that share a segment id; `num_segments` must be static
    under `jax.jit`."""
    return jax.ops.segment_sum(_a(data), _a(segment_ids), num_segments,
                               indices_are_sorted=sorted)


def segment_max(data, segment_ids, num_segments=None, sorted=False):
    """Maximum of the rows of `data` that share a segment id."""
    return jax.ops.segment_max(_a(data), _a(segment_ids), num_segments,
                               indices_are_sorted=sorted)


# -- elementwise math ---------------------------------------------------------------------------

def exp(x):
    """Elementwise `e ** x`."""
    return jnp.exp(_a(x))


def log(x):
    """Elementwise natural logarithm."""
    return jnp.log(_a(x))


def log1p(x):
    """Elementwise `log(1 + x)`, accurate for small `x`."""
    return jnp.log1p(_a(x))


def sqrt(x):
    """Elementwise square root."""
    return jnp.sqrt(_a(x))


def rsqrt(x):
    """Elementwise `1 / sqrt(x)`."""
    return jax.lax.rsqrt(_float(x))


def square(x):
    """Elementwise `x * x`."""
    return jnp.square(_a(x))


def abs(x):
    """Elementwise absolute value."""
    return jnp.abs(_a(x))


def absolute(x):
    """Alias of `abs`."""
    return abs(x)


def sign(x):
    """Elementwise sign: -1, 0 or 1."""
    return jnp.sign(_a(x))


def round(x, decimals=0):
    """Round half to even, to `decimals` places."""
    return jnp.round(_a(x), decimals=decimals)


def floor(x):
    """Elementwise floor (integers give float32, as in Keras)."""
    return jnp.floor(_float(x))


def ceil(x):
    """Elementwise ceiling (integers give float32, as in Keras)."""
    return jnp.ceil(_float(x))


def cos(x):
    """Elementwise cosine."""
    return jnp.cos(_a(x))


def sin(x):
    """Elementwise sine."""
    return jnp.sin(_a(x))


def tanh(x):
    """Elementwise hyperbolic tangent."""
    return jnp.tanh(_a(x))


def erf(x):
    """Elementwise Gauss error function."""
    return jax.lax.erf(_float(x))


def tan(x):
    """Elementwise tangent."""
    return jnp.tan(_float(x))


def arcsin(x):
    """Elementwise inverse sine."""
    return jnp.arcsin(_float(x))


def arccos(x):
    """Elementwise inverse cosine."""
    return jnp.arccos(_float(x))


def arctan(x):
    """Elementwise inverse tangent.

    Example:
        >>> f"{float(arctan(1.0)) * 4:.5f}"
        '3.14159'
    """
    return jnp.arctan(_float(x))


def arctan2(x1, x2):
    """Elementwise angle of the point (x2, x1), in (-pi, pi]."""
    return jnp.arctan2(_float(x1), _float(x2))


def sinh(x):
    """Elementwise hyperbolic sine."""
    return jnp.sinh(_float(x))


def cosh(x):
    """Elementwise hyperbolic cosine."""
    return jnp.cosh(_float(x))


def arcsinh(x):
    """Elementwise inverse hyperbolic sine."""
    return jnp.arcsinh(_float(x))


def arccosh(x):
    """Elementwise inverse hyperbolic cosine."""
    return jnp.arccosh(_float(x))


def arctanh(x):
    """Elementwise inverse hyperbolic tangent."""
    return jnp.arctanh(_float(x))


def exp2(x):
    """Elementwise `2 ** x`."""
    return jnp.exp2(_float(x))


def expm1(x):
    """Elementwise `exp(x) - 1`, accurate for small `x`."""
    return jnp.expm1(_float(x))


def log2(x):
    """Elementwise base-2 logarithm."""
    return jnp.log2(_float(x))


def log10(x):
    """Elementwise base-10 logarithm."""
    return jnp.log10(_float(x))


def reciprocal(x):
    """Elementwise `1 / x`."""
    return jnp.reciprocal(_float(x))


def trunc(x):
    """Elementwise rounding toward zero (integers stay integers)."""
    return jnp.trunc(_a(x))


# -- comparisons and logic ----------------------------------------------------------------------

def equal(x1, x2):
    """Elementwise `x1 == x2`."""
    return jnp.equal(_a(x1), _a(x2))


def not_equal(x1, x2):
    """Elementwise `x1 != x2`."""
    return jnp.not_equal(_a(x1), _a(x2))


def greater(x1, x2):
    """Elementwise `x1 > x2`."""
    return jnp.greater(_a(x1), _a(x2))


def greater_equal(x1, x2):
    """Elementwise `x1 >= x2`."""
    return jnp.greater_equal(_a(x1), _a(x2))


def less(x1, x2):
    """Elementwise `x1 < x2`."""
    return jnp.less(_a(x1), _a(x2))


def less_equal(x1, x2):
    """Elementwise `x1 <= x2`."""
    return jnp.less_equal(_a(x1), _a(x2))


def logical_and(x1, x2):
    """Elementwise logical and (nonzero is true)."""
    return jnp.logical_and(_a(x1), _a(x2))


def logical_or(x1, x2):
    """Elementwise logical or (nonzero is true)."""
    return jnp.logical_or(_a(x1), _a(x2))


def logical_xor(x1, x2):
    """Elementwise logical exclusive or (nonzero is true).

    Example:
        >>> logical_xor(np.array([True, True]), np.array([True, False])).tolist()
        [False, True]
    """
    return jnp.logical_xor(_a(x1), _a(x2))


def logical_not(x):
    """Elementwise logical not (nonzero is true)."""
    return jnp.logical_not(_a(x))


def isnan(x):
    """Elementwise test for NaN."""
    return jnp.isnan(_a(x))


def isinf(x):
    """Elementwise test for positive or negative infinity."""
    return jnp.isinf(_a(x))


def isfinite(x):
    """Elementwise test for neither NaN nor infinity."""
    return jnp.isfinite(_a(x))


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """Replace NaN by `nan` and infinities by `posinf`/`neginf` (the dtype's extremes when
    None)."""
    return jnp.nan_to_num(_a(x), nan=nan, posinf=posinf, neginf=neginf)


# -- neural network functions -------------------------------------------------------------------

def relu(x):
    """`max(x, 0)`."""
    return jax.nn.relu(_a(x))


def relu6(x):
    """`min(max(x, 0), 6)`."""
    return jax.nn.relu6(_a(x))


def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return jax.nn.sigmoid(_a(x))


def log_sigmoid(x):
    """`log(sigmoid(x))`, computed without overflow."""
    return jax.nn.log_sigmoid(_a(x))


def softmax(x, axis=-1):
    """`exp(x) / sum(exp(x))` along `axis`."""
    return jax.nn.softmax(_a(x), axis=axis)


def log_softmax(x, axis=-1):
    """`log(softmax(x))` along `axis`, computed without overflow."""
    return jax.nn.log_softmax(_a(x), axis=axis)


def softplus(x):
    """`log(1 + exp(x))`, computed without overflow."""
    return jax.nn.softplus(_a(x))


def silu(x):
    """`x * sigmoid(x)` (also called swish)."""
    return jax.nn.silu(_a(x))


swish = silu  # Keras exports the same function under both names


def hard_sigmoid(x):
    """`relu6(x + 3) / 6` (Keras 3's hard sigmoid)."""
    return jax.nn.hard_sigmoid(_a(x))


def hard_silu(x):
    """`x * hard_sigmoid(x)` (also called hard swish)."""
    return jax.nn.hard_silu(_a(x))


def softsign(x):
    """`x / (1 + |x|)`."""
    return jax.nn.soft_sign(_a(x))


def gelu(x, approximate=True):
    """Gaussian error linear unit; the tanh approximation by default, as keras.ops.gelu (the
    "gelu" activation string uses the exact form)."""
    return jax.nn.gelu(_a(x), approximate=approximate)


def leaky_relu(x, negative_slope=0.2):
    """`x` for positive values, `negative_slope * x` otherwise (Keras's default slope 0.2)."""
    return jax.nn.leaky_relu(_a(x), negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """`x` for positive values, `alpha * (exp(x) - 1)` otherwise."""
    return jax.nn.elu(_a(x), alpha=alpha)


def selu(x):
    """Scaled exponential linear unit (the self-normalizing constants)."""
    return jax.nn.selu(_a(x))


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """One-hot encoding of integer labels along a new `axis` (float32 by default); labels
    outside `[0, num_classes)` encode as all zeros."""
    if sparse:
        raise ValueError("kilnet has no sparse tensors. Received: sparse=True")
    return jax.nn.one_hot(_a(x), num_classes, dtype=dtype or FLOATX, axis=axis)


def moments(x, axes, keepdims=False, synchronized=False):
    """`(mean, variance)` of `x` over `axes`. Half-precision inputs are reduced in float32,
    as in Keras, and the results cast back."""
    if synchronized:
        raise ValueError("moments(synchronized=True) is not supported: statistics are "
                         "computed per device. Received: synchronized=True")
    x = _a(x)
    wide = x.astype(FLOATX) if x.dtype in (jnp.float16, jnp.bfloat16) else x
    mean_, variance = (jnp.mean(wide, axis=axes, keepdims=keepdims),
                       jnp.var(wide, axis=axes, keepdims=keepdims))
    # mean/var of an integer input are floats; only half precision is cast back
    if wide is not x:
        mean_, variance = mean_.astype(x.dtype), variance.astype(x.dtype)
    return mean_, variance


def normalize(x, axis=-1, order=2, epsilon=None):
    """`x / max(norm(x, order), epsilon)` along `axis` (order=2 is L2 normalization)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    x = _float(x)
    epsilon = config.epsilon() if epsilon is None else epsilon
    if order == 2:
        # Clamp the squared norm before rsqrt: a zero vector then has a finite gradient
        # (the gradient of the norm itself is 0/0 there).
        squares = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
        return x * jax.lax.rsqrt(jnp.maximum(squares, epsilon * epsilon))
    norms = jnp.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / jnp.maximum(norms, epsilon)


def _same_shape(target, output):
    if target.shape != output.shape:
        raise ValueError("Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={target.shape}, output.shape={output.shape}")


def binary_crossentropy(target, output, from_logits=False):
    """Elementwise binary cross-entropy (no reduction). `output` is a probability, clipped to
    `[1e-7, 1 - 1e-7]`, or a logit with `from_logits=True`."""
    target, output = _a(target), _a(output)
    _same_shape(target, output)
    if from_logits:
        # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)), without overflow
        return -(target * jax.nn.log_sigmoid(output)
                 + (1.0 - target) * jax.nn.log_sigmoid(-output))
    output = jnp.clip(output, config.epsilon(), 1.0 - config.epsilon())
    return -(target * jnp.log(output) + (1.0 - target) * jnp.log1p(-output))


def _log_probs(output, from_logits, axis):
    """Log-probabilities along `axis`: log_softmax of logits, or of probabilities rescaled to
    sum to 1 and clipped away from 0 and 1 (as Keras)."""
    if from_logits:
        return jax.nn.log_softmax(output, axis=axis)
    output = output / jnp.sum(output, axis=axis, keepdims=True)
    return jnp.log(jnp.clip(output, config.epsilon(), 1.0 - config.epsilon()))


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between one-hot (or soft) `target` and `output` along `axis`, reducing
    that axis only."""
    target, output = _a(target), _a(output)
    _same_shape(target, output)
    if target.ndim < 1:
        raise ValueError("Arguments `target` and `output` must be at least rank 1. "
                         f"Received: target.shape={target.shape}")
    return -jnp.sum(target * _log_probs(output, from_logits, axis), axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between integer class `target` and `output` (classes along `axis`); a
    trailing length-1 axis on `target` is dropped."""
    target, output = _a(target).astype("int32"), _a(output)
    if target.ndim == output.ndim and target.shape[-1] == 1:
        target = jnp.squeeze(target, axis=-1)
    if output.ndim < 1 or target.shape != output.shape[:-1]:
        raise ValueError("Argument `target` must have the shape of `output` without its last "
                         f"axis. Received: target.shape={target.shape}, "
                         f"output.shape={output.shape}")
    labels = jax.nn.one_hot(target, output.shape[axis], dtype=output.dtype, axis=axis)
    return -jnp.sum(labels * _log_probs(output, from_logits, axis), axis=axis)


# -- tensors, dtypes and creation ---------------------------------------------------------------

def cast(x, dtype):
    """`x` converted to `dtype` (a string such as "float32", or a NumPy/JAX dtype)."""
    return _a(x).astype(dtype)


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """A JAX array holding `x` (a Variable's current value, a NumPy array, a list, a scalar)."""
    if sparse or ragged:
        raise ValueError("kilnet has no sparse or ragged tensors. "
                         f"Received: sparse={sparse}, ragged={ragged}")
    x = _a(x)
    return x if dtype is None else x.astype(dtype)


def convert_to_numpy(x):
    """A NumPy copy of `x` (copies from the device; not traceable)."""
    return np.array(to_array(x))


def shape(x):
    """The static shape of `x`, a tuple of ints (None for a symbolic tensor's batch axis and
    other lengths not known until data comes).

    Example:
        >>> shape(np.zeros((2, 3)))
        (2, 3)
    """
    x = to_array(x)
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def ndim(x):
    """The number of axes of `x`."""
    return len(shape(x))


def size(x):
    """The number of elements of `x`."""
    return int(np.prod(shape(x), dtype=np.int64))


def stop_gradient(variable):
    """`variable` unchanged, with no gradient flowing back through it."""
    return jax.lax.stop_gradient(_a(variable))


def zeros(shape, dtype=None):
    """An array of zeros (float32 by default)."""
    return jnp.zeros(shape, dtype=dtype or FLOATX)


def ones(shape, dtype=None):
    """An array of ones (float32 by default)."""
    return jnp.ones(shape, dtype=dtype or FLOATX)


def zeros_like(x, dtype=None):
    """Zeros with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.zeros_like(_a(x), dtype=dtype)


def ones_like(x, dtype=None):
    """Ones with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.ones_like(_a(x), dtype=dtype)


def full(shape, fill_value, dtype=None):
    """An array filled with `fill_value` (float32 by default, whatever the value's type)."""
    return jnp.full(shape, _a(fill_value), dtype=dtype or FLOATX)


def full_like(x, fill_value, dtype=None):
    """`fill_value` with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.full_like(_a(x), _a(fill_value), dtype=dtype)


def arange(start, stop=None, step=None, dtype=None):
    """Evenly spaced values in `[start, stop)`; int32 for int arguments, else float32."""
    if dtype is None:
        # Keras's rule, independent of JAX's x64 flag
        kinds = [_a(v).dtype.kind for v in (start, stop, step) if v is not None]
        dtype = "int32" if set(kinds) <= {"i", "u", "b"} else FLOATX
    return jnp.arange(start, stop, step, dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """`num` evenly spaced values from `start` to `stop` (float32 by default); with
    `retstep`, also the spacing."""
    return jnp.linspace(_a(start), _a(stop), num=num, endpoint=endpoint, retstep=retstep,
                        dtype=dtype or FLOATX, axis=axis)


def eye(N, M=None, k=0, dtype=None):
    """An `N x M` matrix with ones on the `k`-th diagonal (float32 by default)."""
    return jnp.eye(N, M, k=k, dtype=dtype or FLOATX)


# -- control flow -------------------------------------------------------------------------------

def cond(pred, true_fn, false_fn):
    """`true_fn()` if `pred` else `false_fn()`, traced both ways: the two functions take no
    arguments and must return the same structure of shapes and dtypes."""
    return jax.lax.cond(_a(pred), true_fn, false_fn)


def while_loop(cond, body, loop_vars, maximum_iterations=None):
    """Repeat `loop_vars = body(*loop_vars)` while `cond(*loop_vars)`, at most
    `maximum_iterations` times. A tuple or list of loop variables is unpacked into the
    arguments of `cond` and `body`, which returns the same structure; the result has it too."""
    is_sequence = isinstance(loop_vars, (tuple, list))
    state = tuple(loop_vars) if is_sequence else (loop_vars,)

    def as_tuple(values):
        return tuple(values) if is_sequence else (values,)

    # The iteration count rides along as the last element of the carried state.
    def keep_going(carry):
        going = cond(*carry[:-1])
        if maximum_iterations is None:
            return going
        return jnp.logical_and(going, carry[-1] < maximum_iterations)

    def step(carry):
        return as_tuple(body(*carry[:-1])) + (carry[-1] + 1,)

    result = jax.lax.while_loop(keep_going, step, state + (jnp.int32(0),))[:-1]
    if not is_sequence:
        return result[0]
    return list(result) if isinstance(loop_vars, list) else result


def fori_loop(lower, upper, body_fun, init_val):
    """`val = body_fun(i, val)` for `i` in `range(lower, upper)`, starting from `init_val`."""
    return jax.lax.fori_loop(lower, upper, body_fun, init_val)


def scan(f, init, xs=None, length=None, reverse=False, unroll=1):
    """Carry a state over the leading axis of `xs`: `carry, y = f(carry, x)` for each slice;
    returns `(final carry, stacked ys)` (as `jax.lax.scan`)."""
    return jax.lax.scan(f, init, xs, length=length, reverse=reverse, unroll=unroll)


# -- symbolic tensors -----------------------------------------------------------------------------
# An argument whose type defines __kilnet_op__ takes the call over (as NumPy's
# __array_function__ does): kilnet.Input's symbolic tensors record it as an op node of a
# functional model (kilnet.layers.Operation). ops knows nothing of layers; the tensor does.
_OWN_SHAPE = frozenset({"shape", "ndim", "convert_to_numpy"})  # answered by the tensor itself


def _symbolic_argument(args, kwargs):
    """The first argument (or element of a list argument) that takes calls over, if any."""
    for value in (*args, *kwargs.values()):
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(type(item), "__kilnet_op__"):
                return item
    return None


def _takes_symbolic(fn):
    @functools.wraps(fn)
    def function(*args, **kwargs):
        tensor = _symbolic_argument(args, kwargs)
        if tensor is None:
            return fn(*args, **kwargs)
        return tensor.__kilnet_op__(fn, args, kwargs)
    return function


for _name in sorted(set(__all__) - _OWN_SHAPE):
    globals()[_name] = _takes_symbolic(globals()[_name])
del _name
