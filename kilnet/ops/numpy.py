"""Keras's `keras.ops.numpy`: the NumPy-like array functions (arithmetic, reductions and
statistics, NaN-skipping reductions, shapes and indexing, stacking and splitting, elementwise
and bitwise math, complex parts, comparisons, creation and windows), over `jax.numpy` with
Keras's dtypes.

Functions whose result's shape depends on the input's values (`nonzero`, `unique`, `bincount`)
run eagerly; under jax.jit they raise an error naming the fix (`unique` takes `size=`).
"""

from __future__ import annotations

import builtins
import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np

from kilnet.ops._convert import (as_array, as_arrays, as_float, FLOATX, dispatch_symbolic,
                                  static_ints)
from kilnet.ops._core import shape
from kilnet.variables import to_array

__all__ = [
    "add", "subtract", "multiply", "divide", "true_divide", "floor_divide", "mod", "negative",
    "power", "maximum", "minimum", "clip", "matmul", "dot", "einsum", "tensordot", "mean",
    "sum", "max", "min", "prod", "std", "var", "argmax", "argmin", "all", "any", "cumsum",
    "concatenate", "stack", "split", "reshape", "transpose", "swapaxes", "moveaxis",
    "expand_dims", "squeeze", "flip", "tile", "repeat", "broadcast_to", "take",
    "take_along_axis", "where", "tril", "triu", "outer", "cumprod", "get_item", "pad", "sort",
    "argsort", "exp", "log", "log1p", "sqrt", "square", "abs", "absolute", "sign", "round",
    "floor", "ceil", "cos", "sin", "tanh", "tan", "arcsin", "arccos", "arctan", "arctan2",
    "sinh", "cosh", "arcsinh", "arccosh", "arctanh", "exp2", "expm1", "log2", "log10",
    "reciprocal", "trunc", "equal", "not_equal", "greater", "greater_equal", "less",
    "less_equal", "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf",
    "isfinite", "nan_to_num", "ndim", "size", "zeros", "ones", "zeros_like", "ones_like",
    "full", "full_like", "arange", "linspace", "eye",
    "divide_no_nan", "fmod", "fmax", "fmin", "fabs", "cbrt", "hypot", "heaviside", "logaddexp",
    "logaddexp2", "ldexp", "nextafter", "gcd", "lcm", "deg2rad", "rad2deg", "sinc", "i0",
    "signbit", "isneginf", "isposinf", "isclose", "allclose", "isin", "bitwise_and",
    "bitwise_or", "bitwise_xor", "bitwise_invert", "bitwise_not", "bitwise_left_shift",
    "left_shift", "bitwise_right_shift", "right_shift", "real", "imag", "conjugate", "conj",
    "angle", "isreal", "inner", "vdot", "kron", "cross", "trace", "slogdet", "correlate",
    "corrcoef", "vander", "amax", "amin", "ptp", "count_nonzero", "average", "median",
    "quantile", "percentile", "histogram", "trapezoid", "nansum", "nanprod", "nanmean",
    "nanstd", "nanvar", "nanmax", "nanmin", "nanargmax", "nanargmin", "nancumsum",
    "nancumprod", "nanmedian", "nanquantile", "nanpercentile", "ravel", "append", "roll",
    "rot90", "fliplr", "flipud", "diag", "diagflat", "diagonal", "diff", "digitize",
    "searchsorted", "argpartition", "select", "nonzero", "unique", "bincount", "unravel_index",
    "hstack", "vstack", "dstack", "array_split", "hsplit", "vsplit", "dsplit", "meshgrid",
    "array", "copy", "view", "empty", "empty_like", "identity", "tri", "geomspace", "logspace",
    "bartlett", "blackman", "hamming", "hanning", "kaiser", "vectorize",
]


# -- arithmetic ---------------------------------------------------------------------------------

def add(x1, x2):
    """Elementwise `x1 + x2`, broadcasting."""
    return jnp.add(as_array(x1), as_array(x2))


def subtract(x1, x2):
    """Elementwise `x1 - x2`, broadcasting."""
    return jnp.subtract(as_array(x1), as_array(x2))


def multiply(x1, x2):
    """Elementwise `x1 * x2`, broadcasting."""
    return jnp.multiply(as_array(x1), as_array(x2))


def divide(x1, x2):
    """Elementwise true division `x1 / x2` (integers give floats)."""
    return jnp.divide(as_array(x1), as_array(x2))


def true_divide(x1, x2):
    """Alias of `divide`."""
    return divide(x1, x2)


def floor_divide(x1, x2):
    """Elementwise `x1 // x2`, rounded toward minus infinity.

    Example:
        >>> floor_divide(np.array([7, -7]), 2).tolist()
        [3, -4]
    """
    return jnp.floor_divide(as_array(x1), as_array(x2))


def mod(x1, x2):
    """Elementwise `x1 % x2`, with the sign of `x2` (Python's and NumPy's rule).

    Example:
        >>> mod(np.array([7, -7]), 3).tolist()
        [1, 2]
    """
    return jnp.mod(as_array(x1), as_array(x2))


def negative(x):
    """Elementwise `-x`."""
    return jnp.negative(as_array(x))


def power(x1, x2):
    """Elementwise `x1 ** x2`."""
    return jnp.power(as_array(x1), as_array(x2))


def maximum(x1, x2):
    """Elementwise maximum."""
    return jnp.maximum(as_array(x1), as_array(x2))


def minimum(x1, x2):
    """Elementwise minimum."""
    return jnp.minimum(as_array(x1), as_array(x2))


def clip(x, x_min, x_max):
    """Limit the values of `x` to `[x_min, x_max]` (booleans become int32, as in Keras)."""
    x = as_array(x)
    if x.dtype == jnp.bool_:
        x = x.astype("int32")
    return jnp.clip(x, as_array(x_min), as_array(x_max))



# -- linear algebra -----------------------------------------------------------------------------

def matmul(x1, x2):
    """Matrix product, batched over leading dimensions (`x1 @ x2`)."""
    return jnp.matmul(as_array(x1), as_array(x2))


def dot(x1, x2):
    """Dot product, with NumPy's rules for each rank."""
    return jnp.dot(as_array(x1), as_array(x2))


def einsum(subscripts, *operands, **kwargs):
    """Einstein summation, e.g. `einsum("bij,jk->bik", x, w)`."""
    return jnp.einsum(subscripts, *as_arrays(operands), **kwargs)


def tensordot(x1, x2, axes=2):
    """Sum of products over the given axes (an int, or a pair of axis lists)."""
    return jnp.tensordot(as_array(x1), as_array(x2), axes=axes)



# -- reductions ---------------------------------------------------------------------------------

def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over `axis` (all axes when None); integers give float32."""
    return jnp.mean(as_array(x), axis=axis, keepdims=keepdims)


def sum(x, axis=None, keepdims=False):
    """Sum over `axis` (all axes when None)."""
    return jnp.sum(as_array(x), axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False, initial=None):
    """Maximum over `axis`; `initial` is the result for an empty reduction."""
    return jnp.max(as_array(x), axis=axis, keepdims=keepdims, initial=initial)


def min(x, axis=None, keepdims=False, initial=None):
    """Minimum over `axis`; `initial` is the result for an empty reduction."""
    return jnp.min(as_array(x), axis=axis, keepdims=keepdims, initial=initial)


def prod(x, axis=None, keepdims=False, dtype=None):
    """Product over `axis`."""
    return jnp.prod(as_array(x), axis=axis, keepdims=keepdims, dtype=dtype)


def std(x, axis=None, keepdims=False):
    """Population standard deviation (ddof=0) over `axis`."""
    return jnp.std(as_array(x), axis=axis, keepdims=keepdims)


def var(x, axis=None, keepdims=False):
    """Population variance (ddof=0) over `axis`."""
    return jnp.var(as_array(x), axis=axis, keepdims=keepdims)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum along `axis` (of the flattened array when None), as int32."""
    return jnp.argmax(as_array(x), axis=axis, keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum along `axis` (of the flattened array when None), as int32."""
    return jnp.argmin(as_array(x), axis=axis, keepdims=keepdims)


def all(x, axis=None, keepdims=False):
    """Whether every element along `axis` is true."""
    return jnp.all(as_array(x), axis=axis, keepdims=keepdims)


def any(x, axis=None, keepdims=False):
    """Whether any element along `axis` is true."""
    return jnp.any(as_array(x), axis=axis, keepdims=keepdims)


def cumsum(x, axis=None, dtype=None):
    """Cumulative sum along `axis` (of the flattened array when None)."""
    return jnp.cumsum(as_array(x), axis=axis, dtype=dtype)



# -- shapes and indexing ------------------------------------------------------------------------

def concatenate(xs, axis=0):
    """Join a sequence of arrays along an existing axis."""
    return jnp.concatenate(as_arrays(xs), axis=axis)


def stack(x, axis=0):
    """Join a sequence of same-shaped arrays along a new axis."""
    return jnp.stack(as_arrays(x), axis=axis)


def split(x, indices_or_sections, axis=0):
    """Split into a list of arrays: `n` equal sections, or at the given indices."""
    return jnp.split(as_array(x), indices_or_sections, axis=axis)


def reshape(x, newshape):
    """The same elements in a new shape (one dimension may be -1)."""
    return jnp.reshape(as_array(x), static_ints(newshape, "newshape"))


def transpose(x, axes=None):
    """Permute the axes (reverse them when `axes` is None)."""
    return jnp.transpose(as_array(x), axes)


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    return jnp.swapaxes(as_array(x), axis1, axis2)


def moveaxis(x, source, destination):
    """Move axes to new positions, keeping the order of the others."""
    return jnp.moveaxis(as_array(x), source, destination)


def expand_dims(x, axis):
    """Insert length-1 axes at `axis` (an int or a tuple)."""
    return jnp.expand_dims(as_array(x), axis)


def squeeze(x, axis=None):
    """Remove length-1 axes (all of them when `axis` is None)."""
    return jnp.squeeze(as_array(x), axis=axis)


def flip(x, axis=None):
    """Reverse the order of elements along `axis` (all axes when None)."""
    return jnp.flip(as_array(x), axis=axis)


def tile(x, repeats):
    """Repeat the whole array `repeats` times along each axis."""
    return jnp.tile(as_array(x), static_ints(repeats, "repeats"))


def repeat(x, repeats, axis=None):
    """Repeat each element `repeats` times along `axis` (flattening when None)."""
    return jnp.repeat(as_array(x), static_ints(repeats, "repeats"), axis=axis)


def broadcast_to(x, shape):
    """Broadcast `x` to `shape`."""
    return jnp.broadcast_to(as_array(x), static_ints(shape, "shape"))


def take(x, indices, axis=None):
    """Elements at `indices` along `axis` (of the flattened array when None)."""
    return jnp.take(as_array(x), as_array(indices), axis=axis)


def take_along_axis(x, indices, axis=None):
    """Pick values by an index array shaped like `x` (as argsort/argmax results)."""
    return jnp.take_along_axis(as_array(x), as_array(indices), axis=axis)


def where(condition, x1=None, x2=None):
    """`x1` where `condition` is true, else `x2`; with only `condition`, the indices where it is
    true (a tuple of arrays, one per axis; not traceable)."""
    if (x1 is None) != (x2 is None):
        raise ValueError("Arguments `x1` and `x2` must both be given or both be None. "
                         f"Received: x1={x1!r}, x2={x2!r}")
    if x1 is None:
        return jnp.nonzero(as_array(condition))
    return jnp.where(as_array(condition), as_array(x1), as_array(x2))


def tril(x, k=0):
    """`x` with the elements above the k-th diagonal of its last two axes set to 0.

    Example:
        >>> tril(np.ones((3, 3), np.int32)).tolist()
        [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return jnp.tril(as_array(x), k=k)


def triu(x, k=0):
    """`x` with the elements below the k-th diagonal of its last two axes set to 0."""
    return jnp.triu(as_array(x), k=k)


def outer(x1, x2):
    """The outer product of `x1` and `x2`, both flattened first."""
    return jnp.outer(as_array(x1), as_array(x2))


def cumprod(x, axis=None, dtype=None):
    """Cumulative product along `axis` (of the flattened array when None)."""
    return jnp.cumprod(as_array(x), axis=axis, dtype=dtype)


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
    return as_array(x)[key]


def pad(x, pad_width, mode="constant", constant_values=None):
    """Pad with NumPy's `pad_width` and `mode`; `constant_values` only for mode "constant"."""
    if constant_values is None:
        return jnp.pad(as_array(x), pad_width, mode=mode)
    if mode != "constant":
        raise ValueError("Argument `constant_values` can only be given with mode='constant'. "
                         f"Received: mode={mode!r}")
    return jnp.pad(as_array(x), pad_width, mode=mode, constant_values=constant_values)


def sort(x, axis=-1):
    """Sorted copy, ascending, along `axis`."""
    return jnp.sort(as_array(x), axis=axis)


def argsort(x, axis=-1):
    """Indices that sort `x` ascending along `axis` (stable)."""
    return jnp.argsort(as_array(x), axis=axis)



# -- elementwise math ---------------------------------------------------------------------------

def exp(x):
    """Elementwise `e ** x`."""
    return jnp.exp(as_array(x))


def log(x):
    """Elementwise natural logarithm."""
    return jnp.log(as_array(x))


def log1p(x):
    """Elementwise `log(1 + x)`, accurate for small `x`."""
    return jnp.log1p(as_array(x))


def sqrt(x):
    """Elementwise square root."""
    return jnp.sqrt(as_array(x))


def square(x):
    """Elementwise `x * x`."""
    return jnp.square(as_array(x))


def abs(x):
    """Elementwise absolute value."""
    return jnp.abs(as_array(x))


def absolute(x):
    """Alias of `abs`."""
    return abs(x)


def sign(x):
    """Elementwise sign: -1, 0 or 1."""
    return jnp.sign(as_array(x))


def round(x, decimals=0):
    """Round half to even, to `decimals` places."""
    return jnp.round(as_array(x), decimals=decimals)


def floor(x):
    """Elementwise floor (integers give float32, as in Keras)."""
    return jnp.floor(as_float(x))


def ceil(x):
    """Elementwise ceiling (integers give float32, as in Keras)."""
    return jnp.ceil(as_float(x))


def cos(x):
    """Elementwise cosine."""
    return jnp.cos(as_array(x))


def sin(x):
    """Elementwise sine."""
    return jnp.sin(as_array(x))


def tanh(x):
    """Elementwise hyperbolic tangent."""
    return jnp.tanh(as_array(x))


def tan(x):
    """Elementwise tangent."""
    return jnp.tan(as_float(x))


def arcsin(x):
    """Elementwise inverse sine."""
    return jnp.arcsin(as_float(x))


def arccos(x):
    """Elementwise inverse cosine."""
    return jnp.arccos(as_float(x))


def arctan(x):
    """Elementwise inverse tangent.

    Example:
        >>> f"{float(arctan(1.0)) * 4:.5f}"
        '3.14159'
    """
    return jnp.arctan(as_float(x))


def arctan2(x1, x2):
    """Elementwise angle of the point (x2, x1), in (-pi, pi]."""
    return jnp.arctan2(as_float(x1), as_float(x2))


def sinh(x):
    """Elementwise hyperbolic sine."""
    return jnp.sinh(as_float(x))


def cosh(x):
    """Elementwise hyperbolic cosine."""
    return jnp.cosh(as_float(x))


def arcsinh(x):
    """Elementwise inverse hyperbolic sine."""
    return jnp.arcsinh(as_float(x))


def arccosh(x):
    """Elementwise inverse hyperbolic cosine."""
    return jnp.arccosh(as_float(x))


def arctanh(x):
    """Elementwise inverse hyperbolic tangent."""
    return jnp.arctanh(as_float(x))


def exp2(x):
    """Elementwise `2 ** x`."""
    return jnp.exp2(as_float(x))


def expm1(x):
    """Elementwise `exp(x) - 1`, accurate for small `x`."""
    return jnp.expm1(as_float(x))


def log2(x):
    """Elementwise base-2 logarithm."""
    return jnp.log2(as_float(x))


def log10(x):
    """Elementwise base-10 logarithm."""
    return jnp.log10(as_float(x))


def reciprocal(x):
    """Elementwise `1 / x`."""
    return jnp.reciprocal(as_float(x))


def trunc(x):
    """Elementwise rounding toward zero (integers stay integers)."""
    return jnp.trunc(as_array(x))



# -- comparisons and logic ----------------------------------------------------------------------

def equal(x1, x2):
    """Elementwise `x1 == x2`."""
    return jnp.equal(as_array(x1), as_array(x2))


def not_equal(x1, x2):
    """Elementwise `x1 != x2`."""
    return jnp.not_equal(as_array(x1), as_array(x2))


def greater(x1, x2):
    """Elementwise `x1 > x2`."""
    return jnp.greater(as_array(x1), as_array(x2))


def greater_equal(x1, x2):
    """Elementwise `x1 >= x2`."""
    return jnp.greater_equal(as_array(x1), as_array(x2))


def less(x1, x2):
    """Elementwise `x1 < x2`."""
    return jnp.less(as_array(x1), as_array(x2))


def less_equal(x1, x2):
    """Elementwise `x1 <= x2`."""
    return jnp.less_equal(as_array(x1), as_array(x2))


def logical_and(x1, x2):
    """Elementwise logical and (nonzero is true)."""
    return jnp.logical_and(as_array(x1), as_array(x2))


def logical_or(x1, x2):
    """Elementwise logical or (nonzero is true)."""
    return jnp.logical_or(as_array(x1), as_array(x2))


def logical_xor(x1, x2):
    """Elementwise logical exclusive or (nonzero is true).

    Example:
        >>> logical_xor(np.array([True, True]), np.array([True, False])).tolist()
        [False, True]
    """
    return jnp.logical_xor(as_array(x1), as_array(x2))


def logical_not(x):
    """Elementwise logical not (nonzero is true)."""
    return jnp.logical_not(as_array(x))


def isnan(x):
    """Elementwise test for NaN."""
    return jnp.isnan(as_array(x))


def isinf(x):
    """Elementwise test for positive or negative infinity."""
    return jnp.isinf(as_array(x))


def isfinite(x):
    """Elementwise test for neither NaN nor infinity."""
    return jnp.isfinite(as_array(x))


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """Replace NaN by `nan` and infinities by `posinf`/`neginf` (the dtype's extremes when
    None)."""
    return jnp.nan_to_num(as_array(x), nan=nan, posinf=posinf, neginf=neginf)



# -- tensors, dtypes and creation ---------------------------------------------------------------

def ndim(x):
    """The number of axes of `x`."""
    return len(shape(x))


def size(x):
    """The number of elements of `x`."""
    return int(np.prod(shape(x), dtype=np.int64))


def zeros(shape, dtype=None):
    """An array of zeros (float32 by default)."""
    return jnp.zeros(static_ints(shape, "shape"), dtype=dtype or FLOATX)


def ones(shape, dtype=None):
    """An array of ones (float32 by default)."""
    return jnp.ones(static_ints(shape, "shape"), dtype=dtype or FLOATX)


def zeros_like(x, dtype=None):
    """Zeros with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.zeros_like(as_array(x), dtype=dtype)


def ones_like(x, dtype=None):
    """Ones with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.ones_like(as_array(x), dtype=dtype)


def full(shape, fill_value, dtype=None):
    """An array filled with `fill_value` (float32 by default, whatever the value's type)."""
    return jnp.full(static_ints(shape, "shape"), as_array(fill_value), dtype=dtype or FLOATX)


def full_like(x, fill_value, dtype=None):
    """`fill_value` with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.full_like(as_array(x), as_array(fill_value), dtype=dtype)


def arange(start, stop=None, step=None, dtype=None):
    """Evenly spaced values in `[start, stop)`; int32 for int arguments, else float32."""
    if dtype is None:
        # Keras's rule, independent of JAX's x64 flag
        kinds = [as_array(v).dtype.kind for v in (start, stop, step) if v is not None]
        dtype = "int32" if set(kinds) <= {"i", "u", "b"} else FLOATX
    return jnp.arange(start, stop, step, dtype=dtype)


def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """`num` evenly spaced values from `start` to `stop` (float32 by default); with
    `retstep`, also the spacing."""
    return jnp.linspace(as_array(start), as_array(stop), num=num, endpoint=endpoint, retstep=retstep,
                        dtype=dtype or FLOATX, axis=axis)


def eye(N, M=None, k=0, dtype=None):
    """An `N x M` matrix with ones on the `k`-th diagonal (float32 by default)."""
    return jnp.eye(N, M, k=k, dtype=dtype or FLOATX)



# -- more arithmetic and elementwise math -------------------------------------------------------

def divide_no_nan(x1, x2):
    """`x1 / x2`, with 0 wherever `x2` is 0 (instead of inf or NaN).

    Example:
        >>> divide_no_nan(np.array([1.0, 2.0]), np.array([0.0, 4.0])).tolist()
        [0.0, 0.5]
    """
    x1, x2 = as_array(x1), as_array(x2)
    # dividing by 1 where x2 is 0 keeps that branch's gradient finite
    quotient = jnp.divide(x1, jnp.where(x2 == 0, 1, x2))
    return jnp.where(x2 == 0, 0, quotient)


def fmod(x1, x2):
    """Elementwise remainder of `x1 / x2` with the sign of `x1` (C's `fmod`; `mod` takes the
    sign of `x2`).

    Example:
        >>> fmod(np.array([7, -7]), 3).tolist()
        [1, -1]
    """
    return jnp.fmod(as_array(x1), as_array(x2))


def fmax(x1, x2):
    """Elementwise maximum that ignores NaN (NaN only where both are NaN)."""
    return jnp.fmax(as_array(x1), as_array(x2))


def fmin(x1, x2):
    """Elementwise minimum that ignores NaN (NaN only where both are NaN)."""
    return jnp.fmin(as_array(x1), as_array(x2))


def fabs(x):
    """Elementwise absolute value, as floats for float inputs (complex inputs are refused)."""
    x = as_array(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError("fabs takes real numbers; use `abs` for the modulus of complex "
                        f"numbers. Received: x.dtype={x.dtype}")
    return jnp.fabs(x)


def cbrt(x):
    """Elementwise cube root (negative for negative `x`)."""
    return jnp.cbrt(as_array(x))


def hypot(x1, x2):
    """Elementwise `sqrt(x1**2 + x2**2)`, without overflow for large values."""
    return jnp.hypot(as_array(x1), as_array(x2))


def heaviside(x1, x2):
    """Elementwise step function: 0 where `x1 < 0`, 1 where `x1 > 0`, `x2` where `x1 == 0`."""
    return jnp.heaviside(as_array(x1), as_array(x2))


def logaddexp(x1, x2):
    """Elementwise `log(exp(x1) + exp(x2))`, computed without overflow (floats for integers)."""
    return jnp.logaddexp(*_as_common_float(x1, x2))


def logaddexp2(x1, x2):
    """Elementwise `log2(2**x1 + 2**x2)`, computed without overflow (floats for integers)."""
    return jnp.logaddexp2(*_as_common_float(x1, x2))


def _as_common_float(x1, x2):
    """Both arguments in the float dtype they promote to (a Python number keeps the other's
    float16: it is weakly typed; integers alone give float32)."""
    x1, x2 = as_array(x1), as_array(x2)
    dtype = jnp.result_type(x1, x2, float)
    return x1.astype(dtype), x2.astype(dtype)


def ldexp(x1, x2):
    """Elementwise `x1 * 2**x2`; the exponent `x2` must be integers."""
    x1, x2 = as_array(x1), as_array(x2)
    if not jnp.issubdtype(x2.dtype, jnp.integer):
        raise TypeError("The exponent `x2` of ldexp must be integers; cast it with "
                        f"ops.cast(x2, 'int32'). Received: x2.dtype={x2.dtype}")
    return jnp.ldexp(x1, x2)


def nextafter(x1, x2):
    """The next representable float after `x1` in the direction of `x2`, elementwise."""
    return jnp.nextafter(as_array(x1), as_array(x2))


def gcd(x1, x2):
    """Elementwise greatest common divisor of integers."""
    return jnp.gcd(as_array(x1), as_array(x2))


def lcm(x1, x2):
    """Elementwise least common multiple of integers."""
    return jnp.lcm(as_array(x1), as_array(x2))


def deg2rad(x):
    """Elementwise degrees to radians."""
    return jnp.deg2rad(as_array(x))


def rad2deg(x):
    """Elementwise radians to degrees."""
    return jnp.rad2deg(as_array(x))


def sinc(x):
    """Elementwise normalized sinc, `sin(pi x) / (pi x)` (1 at 0); integers give float32."""
    return jnp.sinc(as_float(x))


def i0(x):
    """Elementwise modified Bessel function of the first kind, order 0 (integers give
    float32)."""
    return jnp.i0(as_float(x))


def signbit(x):
    """Elementwise test of the sign bit (true for negative numbers and -0.0)."""
    return jnp.signbit(as_array(x))


def isneginf(x):
    """Elementwise test for negative infinity."""
    return jnp.isneginf(as_array(x))


def isposinf(x):
    """Elementwise test for positive infinity."""
    return jnp.isposinf(as_array(x))


def isclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Elementwise `|x1 - x2| <= atol + rtol * |x2|` (NaNs equal only with `equal_nan`)."""
    return jnp.isclose(as_array(x1), as_array(x2), rtol=rtol, atol=atol, equal_nan=equal_nan)


def allclose(x1, x2, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether `isclose` holds everywhere (a boolean scalar array)."""
    return jnp.allclose(as_array(x1), as_array(x2), rtol=rtol, atol=atol, equal_nan=equal_nan)


def isin(x1, x2, assume_unique=False, invert=False):
    """Elementwise test of whether each element of `x1` is among the elements of `x2`
    (`invert=True`: is not)."""
    return jnp.isin(as_array(x1), as_array(x2), assume_unique=assume_unique, invert=invert)



# -- bitwise ------------------------------------------------------------------------------------

def bitwise_and(x, y):
    """Elementwise bitwise and of integers (logical and of booleans)."""
    return jnp.bitwise_and(as_array(x), as_array(y))


def bitwise_or(x, y):
    """Elementwise bitwise or of integers (logical or of booleans)."""
    return jnp.bitwise_or(as_array(x), as_array(y))


def bitwise_xor(x, y):
    """Elementwise bitwise exclusive or of integers (logical xor of booleans)."""
    return jnp.bitwise_xor(as_array(x), as_array(y))


def bitwise_invert(x):
    """Elementwise bitwise not: `~x` (two's complement: `~5 == -6`)."""
    return jnp.invert(as_array(x))


def bitwise_not(x):
    """Alias of `bitwise_invert`."""
    return bitwise_invert(x)


def bitwise_left_shift(x, y):
    """Elementwise `x << y`; a Python int `y` keeps the dtype of `x`."""
    return jnp.left_shift(as_array(x), as_array(y))


def left_shift(x, y):
    """Alias of `bitwise_left_shift`."""
    return bitwise_left_shift(x, y)


def bitwise_right_shift(x, y):
    """Elementwise `x >> y` (arithmetic: the sign is kept); a Python int `y` keeps the dtype
    of `x`."""
    return jnp.right_shift(as_array(x), as_array(y))


def right_shift(x, y):
    """Alias of `bitwise_right_shift`."""
    return bitwise_right_shift(x, y)



# -- complex numbers ----------------------------------------------------------------------------

def real(x):
    """Elementwise real part (`x` itself for real inputs)."""
    return jnp.real(as_array(x))


def imag(x):
    """Elementwise imaginary part (zeros for real inputs)."""
    return jnp.imag(as_array(x))


def conjugate(x):
    """Elementwise complex conjugate (`x` itself for real inputs)."""
    return jnp.conjugate(as_array(x))


def conj(x):
    """Alias of `conjugate`."""
    return conjugate(x)


def angle(x):
    """Elementwise argument of complex numbers, in radians (0 or pi for reals; integers give
    float32)."""
    return jnp.angle(as_float(x))


def isreal(x):
    """Elementwise test for a zero imaginary part (true everywhere for real inputs)."""
    return jnp.isreal(as_array(x))



# -- more linear algebra ------------------------------------------------------------------------

def inner(x1, x2):
    """Inner product over the last axes of `x1` and `x2` (a plain product for scalars)."""
    return jnp.inner(as_array(x1), as_array(x2))


def vdot(x1, x2):
    """Dot product of the flattened arrays (conjugating `x1` if complex)."""
    return jnp.vdot(as_array(x1), as_array(x2))


def kron(x1, x2):
    """Kronecker product: blocks of `x2` scaled by each element of `x1`."""
    return jnp.kron(as_array(x1), as_array(x2))


def cross(x1, x2, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors (or 2-vectors, giving the z component) along the given axes;
    `axis`, if given, sets all three."""
    return jnp.cross(as_array(x1), as_array(x2), axisa=axisa, axisb=axisb, axisc=axisc,
                     axis=axis)


def trace(x, offset=0, axis1=0, axis2=1):
    """Sum along a diagonal (`offset` above the main one) of the plane `axis1`, `axis2`."""
    return jnp.trace(as_array(x), offset=offset, axis1=axis1, axis2=axis2)


def slogdet(x):
    """`(sign, log|det|)` of square matrices (the last two axes), stable where `det`
    overflows."""
    return tuple(jnp.linalg.slogdet(as_array(x)))


def correlate(x1, x2, mode="valid"):
    """Cross-correlation of two 1-D sequences; `mode` "valid", "same" or "full" as NumPy.

    Example:
        >>> correlate(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0])).tolist()
        [2.0, 3.0]
    """
    return jnp.correlate(as_array(x1), as_array(x2), mode=mode)


def corrcoef(x):
    """Pearson correlation coefficients between the rows of `x` (variables in rows)."""
    return jnp.corrcoef(as_array(x))


def vander(x, N=None, increasing=False):
    """Vandermonde matrix of a 1-D `x`: columns are powers of `x`, highest first (lowest
    first with `increasing`); `N` columns (len(x) by default)."""
    x = as_array(x)
    if x.ndim != 1:
        raise ValueError(f"vander takes a 1-D `x`. Received: x.shape={x.shape}")
    if N is not None and (not isinstance(N, int) or N < 0):
        raise ValueError(f"Argument `N` must be a non-negative int or None. Received: N={N!r}")
    return jnp.vander(x, N=N, increasing=increasing)



# -- more reductions and statistics -------------------------------------------------------------

def amax(x, axis=None, keepdims=False):
    """Alias of `max` (without `initial`)."""
    return jnp.amax(as_array(x), axis=axis, keepdims=keepdims)


def amin(x, axis=None, keepdims=False):
    """Alias of `min` (without `initial`)."""
    return jnp.amin(as_array(x), axis=axis, keepdims=keepdims)


def ptp(x, axis=None, keepdims=False):
    """Range (`max - min`) over `axis`."""
    return jnp.ptp(as_array(x), axis=axis, keepdims=keepdims)


def count_nonzero(x, axis=None):
    """Number of nonzero elements over `axis`, as int32."""
    return jnp.count_nonzero(as_array(x), axis=axis).astype("int32")


def average(x, axis=None, weights=None):
    """Weighted mean over `axis` (`weights` broadcast along that axis); integers give
    float32.

    Example:
        >>> float(average(np.array([1.0, 3.0]), weights=np.array([3.0, 1.0])))
        1.5
    """
    if weights is None:
        x = as_array(x)
        return jnp.average(x.astype(jnp.result_type(x, float)), axis=axis)
    x, weights = _as_common_float(x, weights)
    return jnp.average(x, axis=axis, weights=weights)


def median(x, axis=None, keepdims=False):
    """Median over `axis` (an int, a tuple or list of ints, or None for all)."""
    return jnp.median(as_array(x), axis=_hashable(axis), keepdims=keepdims)


def quantile(x, q, axis=None, method="linear", keepdims=False):
    """The `q`-th quantiles (`q` in [0, 1], a scalar or 1-D) over `axis`; `method` as NumPy's
    ("linear", "lower", "higher", "midpoint", "nearest"). A 1-D `q` adds a leading axis."""
    return jnp.quantile(as_array(x), as_array(q), axis=_hashable(axis), method=method,
                        keepdims=keepdims)


def percentile(x, q, axis=None, method="linear", keepdims=False):
    """`quantile` with `q` in percent ([0, 100])."""
    return jnp.percentile(as_array(x), as_array(q), axis=_hashable(axis), method=method,
                          keepdims=keepdims)


def histogram(x, bins=10, range=None):
    """Counts of a 1-D `x` in `bins` equal-width bins over `range` (`(min, max)` of `x` when
    None), and the `bins + 1` bin edges.

    Example:
        >>> counts, edges = histogram(np.array([0.0, 1.0, 1.0, 3.0]), bins=3)
        >>> counts.tolist(), edges.tolist()
        ([1.0, 2.0, 1.0], [0.0, 1.0, 2.0, 3.0])
    """
    if not isinstance(bins, int) or bins < 0:
        raise ValueError(f"Argument `bins` must be a non-negative int. Received: bins={bins!r}")
    if range is not None and (not isinstance(range, tuple) or len(range) != 2
                              or range[1] < range[0]):
        raise ValueError("Argument `range` must be a tuple (low, high) with low <= high, or "
                         f"None. Received: range={range!r}")
    x = as_array(x)
    if x.ndim > 1:
        raise ValueError(f"histogram takes a 1-D `x`; flatten it with ops.ravel(x). "
                         f"Received: x.shape={x.shape}")
    return jnp.histogram(x, bins=bins, range=range)


def trapezoid(y, x=None, dx=1.0, axis=-1):
    """Integral of `y` along `axis` by the trapezoidal rule, at sample points `x` (spaced `dx`
    apart when None)."""
    return jnp.trapezoid(as_array(y), None if x is None else as_array(x), dx=as_array(dx),
                         axis=axis)


def _hashable(axis):
    """An axis list as a tuple: jax.numpy's median and quantile need a hashable axis."""
    return tuple(axis) if isinstance(axis, list) else axis



# -- reductions that skip NaN -------------------------------------------------------------------

def nansum(x, axis=None, keepdims=False):
    """`sum`, treating NaN as 0."""
    return jnp.nansum(as_array(x), axis=axis, keepdims=keepdims)


def nanprod(x, axis=None, keepdims=False):
    """`prod`, treating NaN as 1."""
    return jnp.nanprod(as_array(x), axis=axis, keepdims=keepdims)


def nanmean(x, axis=None, keepdims=False):
    """`mean` of the elements that are not NaN (NaN where all are)."""
    return jnp.nanmean(as_array(x), axis=axis, keepdims=keepdims)


def nanstd(x, axis=None, keepdims=False):
    """`std` of the elements that are not NaN."""
    return jnp.nanstd(as_array(x), axis=axis, keepdims=keepdims)


def nanvar(x, axis=None, keepdims=False):
    """`var` of the elements that are not NaN."""
    return jnp.nanvar(as_array(x), axis=axis, keepdims=keepdims)


def nanmax(x, axis=None, keepdims=False):
    """`max` of the elements that are not NaN (NaN where all are)."""
    return jnp.nanmax(as_array(x), axis=axis, keepdims=keepdims)


def nanmin(x, axis=None, keepdims=False):
    """`min` of the elements that are not NaN (NaN where all are)."""
    return jnp.nanmin(as_array(x), axis=axis, keepdims=keepdims)


def nanargmax(x, axis=None, keepdims=False):
    """`argmax` ignoring NaN (-1 where all are NaN)."""
    return jnp.nanargmax(as_array(x), axis=axis, keepdims=keepdims)


def nanargmin(x, axis=None, keepdims=False):
    """`argmin` ignoring NaN (-1 where all are NaN)."""
    return jnp.nanargmin(as_array(x), axis=axis, keepdims=keepdims)


def nancumsum(x, axis=None, dtype=None):
    """`cumsum`, treating NaN as 0."""
    return jnp.nancumsum(as_array(x), axis=axis, dtype=dtype)


def nancumprod(x, axis=None, dtype=None):
    """`cumprod`, treating NaN as 1."""
    return jnp.nancumprod(as_array(x), axis=axis, dtype=dtype)


def nanmedian(x, axis=None, keepdims=False):
    """`median` of the elements that are not NaN."""
    return jnp.nanmedian(as_array(x), axis=_hashable(axis), keepdims=keepdims)


def nanquantile(x, q, axis=None, method="linear", keepdims=False):
    """`quantile` of the elements that are not NaN."""
    return jnp.nanquantile(as_array(x), as_array(q), axis=_hashable(axis), method=method,
                           keepdims=keepdims)


def nanpercentile(x, q, axis=None, method="linear", keepdims=False):
    """`percentile` of the elements that are not NaN."""
    return jnp.nanpercentile(as_array(x), as_array(q), axis=_hashable(axis), method=method,
                             keepdims=keepdims)



# -- more shapes and indexing -------------------------------------------------------------------

def ravel(x):
    """`x` flattened to 1-D."""
    return jnp.ravel(as_array(x))


def append(x1, x2, axis=None):
    """`x2` appended to `x1` along `axis` (both flattened first when None)."""
    return jnp.append(as_array(x1), as_array(x2), axis=axis)


def roll(x, shift, axis=None):
    """Elements shifted by `shift` along `axis`, wrapping around (of the flattened array when
    None)."""
    return jnp.roll(as_array(x), shift, axis=axis)


def rot90(array, k=1, axes=(0, 1)):
    """`array` rotated by 90 degrees `k` times in the plane of `axes`, from the first axis
    towards the second."""
    array = as_array(array)
    if array.ndim < 2:
        raise ValueError(f"rot90 needs an array of at least 2 dimensions. Received: "
                         f"array.ndim={array.ndim}")
    if len(axes) != 2 or axes[0] % array.ndim == axes[1] % array.ndim:
        raise ValueError(f"Argument `axes` must be two different axes. Received: axes={axes}")
    return jnp.rot90(array, k=k, axes=tuple(axes))


def fliplr(x):
    """`x` reversed along axis 1 (left/right)."""
    return jnp.fliplr(as_array(x))


def flipud(x):
    """`x` reversed along axis 0 (up/down)."""
    return jnp.flipud(as_array(x))


def diag(x, k=0):
    """The `k`-th diagonal of a 2-D `x`, or a 2-D array with the 1-D `x` on its `k`-th
    diagonal."""
    return jnp.diag(as_array(x), k=k)


def diagflat(x, k=0):
    """A 2-D array with the flattened `x` on its `k`-th diagonal."""
    return jnp.diagflat(as_array(x), k=k)


def diagonal(x, offset=0, axis1=0, axis2=1):
    """The diagonal (`offset` above the main one) of the plane `axis1`, `axis2`, as the last
    axis of the result."""
    x = as_array(x)
    if axis1 % x.ndim == axis2 % x.ndim:
        raise ValueError(f"Arguments `axis1` and `axis2` must be different axes. Received: "
                         f"axis1={axis1}, axis2={axis2}")
    return jnp.diagonal(x, offset=offset, axis1=axis1, axis2=axis2)


def diff(a, n=1, axis=-1):
    """The `n`-th discrete difference along `axis` (`a[1:] - a[:-1]`, `n` times)."""
    return jnp.diff(as_array(a), n=n, axis=axis)


def digitize(x, bins):
    """For each element, the index of the bin of the increasing 1-D `bins` it falls in
    (`bins[i-1] <= x < bins[i]` gives `i`), as int32."""
    return jnp.digitize(as_array(x), as_array(bins)).astype("int32")


def searchsorted(sorted_sequence, values, side="left"):
    """Where each of `values` would be inserted into the ascending 1-D `sorted_sequence` to
    keep it sorted (`side` "right": after equal elements), as int32."""
    sorted_sequence = as_array(sorted_sequence)
    if sorted_sequence.ndim != 1:
        raise ValueError("searchsorted takes a 1-D `sorted_sequence`; map it over the rows "
                         "with ops.vectorized_map. Received: sorted_sequence.shape="
                         f"{sorted_sequence.shape}")
    return jnp.searchsorted(sorted_sequence, as_array(values), side=side)


def argpartition(x, kth, axis=-1):
    """Indices that partially sort `x` along `axis`: the element at `kth` is where a full sort
    would put it, smaller ones before, larger after (of the flattened array when None)."""
    x = as_array(x)
    if axis is None:
        return jnp.argpartition(jnp.ravel(x), kth, axis=0)
    return jnp.argpartition(x, kth, axis=axis)


def select(condlist, choicelist, default=0):
    """Elementwise, the entry of `choicelist` for the first true condition of `condlist`;
    `default` where none is.

    Example:
        >>> x = np.array([-2, 0, 3])
        >>> select([x < 0, x > 0], [-x, x * 10], default=7).tolist()
        [2, 7, 30]
    """
    if not isinstance(condlist, (list, tuple)) or not isinstance(choicelist, (list, tuple)):
        raise ValueError("Arguments `condlist` and `choicelist` must be lists of arrays. "
                         f"Received: condlist={type(condlist).__name__}, "
                         f"choicelist={type(choicelist).__name__}")
    if not condlist or not choicelist:
        raise ValueError("Arguments `condlist` and `choicelist` must not be empty. Received: "
                         f"{len(condlist)} conditions and {len(choicelist)} choices")
    return jnp.select(as_arrays(condlist), as_arrays(choicelist), as_array(default))


def nonzero(x):
    """The indices of the nonzero elements of `x`: a tuple of int32 arrays, one per axis. Their
    length depends on the values, so it cannot be traced (under jax.jit use
    `ops.where(condition, x1, x2)` or a mask instead)."""
    with _values_needed("nonzero", "use a mask: ops.where(x != 0, ..., ...)"):
        return jnp.nonzero(as_array(x))


def unique(x, sorted=True, return_index=False, return_inverse=False, return_counts=False,
           axis=None, size=None, fill_value=None):
    """The unique elements of `x` (sorted; along `axis`, its unique slices), and with
    `return_index`, `return_inverse`, `return_counts` the indices of first occurrences, the
    indices rebuilding `x` and the counts. Under jax.jit give `size`: the result is padded
    with `fill_value` (the smallest element by default) or cut to that length.

    Example:
        >>> unique(np.array([3, 1, 3, 2])).tolist()
        [1, 2, 3]
        >>> unique(np.array([3, 1, 3]), size=3, fill_value=-1).tolist()
        [1, 3, -1]
    """
    with _values_needed("unique", "pass size=..., the largest number of unique elements"):
        return jnp.unique(as_array(x), return_index=return_index,
                          return_inverse=return_inverse, return_counts=return_counts,
                          axis=axis, equal_nan=False, size=size, fill_value=fill_value,
                          sorted=sorted)


def bincount(x, weights=None, minlength=0, sparse=False):
    """The number of times each value 0, 1, ... occurs in a non-negative int `x` (1-D, or
    each row of a 2-D `x`), summing `weights` instead of ones if given; at least
    `minlength` counts. Its length depends on the values, so it cannot be traced.

    Example:
        >>> bincount(np.array([0, 2, 2])).tolist()
        [1, 0, 2]
    """
    if sparse:
        raise ValueError(f"kilnet has no sparse tensors. Received: sparse={sparse}")
    x = as_array(x)
    weights = None if weights is None else as_array(weights)
    if x.ndim not in (1, 2):
        raise ValueError(f"bincount takes a 1-D or 2-D `x`. Received: x.shape={x.shape}")
    with _values_needed("bincount", "use ops.sum(ops.one_hot(x, n), axis=-2) with a fixed n"):
        if x.ndim == 1:
            return jnp.bincount(x, weights=weights, minlength=minlength)
        # every row counts up to the largest value of all rows, so the rows stack
        length = builtins.max(int(jnp.max(x)) + 1 if x.size else 0, minlength)
        return jnp.stack([jnp.bincount(row, None if weights is None else weights[i],
                                       length=length) for i, row in enumerate(x)])


def unravel_index(indices, shape):
    """The multi-dimensional indices (a tuple of arrays, one per axis) of flat `indices` into
    an array of `shape`."""
    return jnp.unravel_index(as_array(indices), shape)


@contextlib.contextmanager
def _values_needed(name, fix):
    """Turns JAX's error for a result shaped by traced values into one naming the op and
    the fix."""
    try:
        yield
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
            jax.errors.TracerBoolConversionError) as error:
        raise ValueError(f"ops.{name}'s output shape depends on the values of its input, which "
                         f"are not known under jax.jit or in a model's traced call: {fix}. "
                         f"Received: a traced array ({type(error).__name__})") from None



# -- stacking and splitting ---------------------------------------------------------------------

def hstack(xs):
    """Join arrays along axis 1 (axis 0 for 1-D arrays)."""
    return jnp.hstack(as_arrays(xs))


def vstack(xs):
    """Join arrays along axis 0 (1-D arrays become rows)."""
    return jnp.vstack(as_arrays(xs))


def dstack(xs):
    """Join arrays along axis 2 (lower ranks first padded to 3-D)."""
    return jnp.dstack(as_arrays(xs))


def array_split(x, indices_or_sections, axis=0):
    """Split into `indices_or_sections` parts along `axis`, the first ones one longer where the
    length does not divide evenly.

    Example:
        >>> [part.tolist() for part in array_split(np.arange(5), 2)]
        [[0, 1, 2], [3, 4]]
    """
    if (not isinstance(indices_or_sections, int) or isinstance(indices_or_sections, bool)
            or indices_or_sections <= 0):
        raise ValueError("Argument `indices_or_sections` must be a positive int (the number "
                         f"of parts). Received: indices_or_sections={indices_or_sections!r}")
    if not isinstance(axis, int):
        raise TypeError(f"Argument `axis` must be an int. Received: axis={axis!r}")
    return jnp.array_split(as_array(x), indices_or_sections, axis=axis)


def hsplit(x, indices_or_sections):
    """`split` along axis 1 (axis 0 for 1-D arrays)."""
    return jnp.hsplit(as_array(x), indices_or_sections)


def vsplit(x, indices_or_sections):
    """`split` along axis 0."""
    return jnp.vsplit(as_array(x), indices_or_sections)


def dsplit(x, indices_or_sections):
    """`split` along axis 2."""
    return jnp.dsplit(as_array(x), indices_or_sections)


def meshgrid(*x, indexing="xy"):
    """Coordinate arrays from 1-D coordinate vectors: "xy" (Cartesian, the default) swaps the
    first two output axes, "ij" (matrix indexing) keeps them."""
    if indexing not in ("xy", "ij"):
        raise ValueError(f"Argument `indexing` must be 'xy' or 'ij'. Received: "
                         f"indexing={indexing!r}")
    return jnp.meshgrid(*as_arrays(x), indexing=indexing)



# -- more tensors, dtypes and creation ----------------------------------------------------------

def array(x, dtype=None):
    """A new array holding `x` (a list, NumPy array, scalar or Variable), of `dtype` if
    given."""
    return jnp.array(as_array(x), dtype=dtype)


def copy(x):
    """A copy of `x`."""
    return jnp.copy(as_array(x))


def view(x, dtype=None):
    """The bytes of `x` read as `dtype` (a dtype of another width changes the last axis)."""
    return as_array(x).view(dtype)


def empty(shape, dtype=None):
    """An array of `shape` (float32 by default); JAX fills it with zeros."""
    return jnp.empty(static_ints(shape, "shape"), dtype=dtype or FLOATX)


def empty_like(x, dtype=None):
    """`empty` with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.empty_like(as_array(x), dtype=dtype)


def identity(n, dtype=None):
    """The `n x n` identity matrix (float32 by default)."""
    return jnp.identity(n, dtype=dtype or FLOATX)


def tri(N, M=None, k=0, dtype=None):
    """An `N x M` matrix of ones at and below the `k`-th diagonal, zeros above (float32 by
    default)."""
    return jnp.tri(static_ints(N, "N"), M=static_ints(M, "M"), k=static_ints(k, "k"),
                   dtype=dtype or FLOATX)


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """`num` numbers from `start` to `stop` evenly spaced on a log scale."""
    return jnp.geomspace(as_array(start), as_array(stop), num=num, endpoint=endpoint,
                         dtype=dtype, axis=axis)


def logspace(start, stop, num=50, endpoint=True, base=10, dtype=None, axis=0):
    """`num` numbers `base ** t` for `t` evenly spaced from `start` to `stop`."""
    return jnp.logspace(as_array(start), as_array(stop), num=num, endpoint=endpoint, base=base,
                        dtype=dtype, axis=axis)


def bartlett(x):
    """The Bartlett (triangular) window of `x` points, float32."""
    return jnp.bartlett(x).astype(FLOATX)


def blackman(x):
    """The Blackman window of `x` points, float32."""
    return jnp.blackman(x).astype(FLOATX)


def hamming(x):
    """The Hamming window of `x` points, float32."""
    return jnp.hamming(x).astype(FLOATX)


def hanning(x):
    """The Hann window of `x` points, float32 (symmetric: its ends are 0)."""
    return jnp.hanning(x).astype(FLOATX)


def kaiser(x, beta):
    """The Kaiser window of `x` points with shape parameter `beta`, float32."""
    return jnp.kaiser(x, beta).astype(FLOATX)


def vectorize(pyfunc, *, excluded=None, signature=None):
    """`pyfunc` made to map over its array arguments' leading axes (NumPy's `vectorize`, by
    `jax.vmap`), broadcasting them; `signature` (e.g. "(n),(n)->()") sets the core axes each
    call sees.

    Example:
        >>> dot_rows = vectorize(lambda a, b: jnp.sum(a * b), signature="(n),(n)->()")
        >>> dot_rows(np.ones((2, 3)), np.ones((2, 3))).tolist()
        [3.0, 3.0]
    """
    if not callable(pyfunc):
        raise ValueError(f"Argument `pyfunc` must be a callable. Received: pyfunc={pyfunc!r}")
    vectorized = jnp.vectorize(pyfunc, excluded=excluded or set(), signature=signature)

    @functools.wraps(pyfunc)
    def function(*args, **kwargs):
        # Variables among the arguments: their values (jax.numpy will not convert them)
        return vectorized(*[to_array(a) for a in args],
                          **{key: to_array(value) for key, value in kwargs.items()})
    return function


dispatch_symbolic(globals(), __all__)
