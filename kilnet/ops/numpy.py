"""Keras's `keras.ops.numpy`: the NumPy-like array functions (arithmetic, reductions, shapes and
indexing, elementwise math, comparisons, creation), over `jax.numpy` with Keras's dtypes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet.ops._convert import as_array, as_arrays, as_float, FLOATX, dispatch_symbolic
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
    return jnp.reshape(as_array(x), newshape)


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
    return jnp.tile(as_array(x), repeats)


def repeat(x, repeats, axis=None):
    """Repeat each element `repeats` times along `axis` (flattening when None)."""
    return jnp.repeat(as_array(x), repeats, axis=axis)


def broadcast_to(x, shape):
    """Broadcast `x` to `shape`."""
    return jnp.broadcast_to(as_array(x), shape)


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
    return jnp.zeros(shape, dtype=dtype or FLOATX)


def ones(shape, dtype=None):
    """An array of ones (float32 by default)."""
    return jnp.ones(shape, dtype=dtype or FLOATX)


def zeros_like(x, dtype=None):
    """Zeros with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.zeros_like(as_array(x), dtype=dtype)


def ones_like(x, dtype=None):
    """Ones with the shape (and, unless `dtype` is given, the dtype) of `x`."""
    return jnp.ones_like(as_array(x), dtype=dtype)


def full(shape, fill_value, dtype=None):
    """An array filled with `fill_value` (float32 by default, whatever the value's type)."""
    return jnp.full(shape, as_array(fill_value), dtype=dtype or FLOATX)


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


dispatch_symbolic(globals(), __all__)
