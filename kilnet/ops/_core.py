"""The core ops: casts and conversions (`saturate_cast`, `dtype`), shapes, slices and
scatters, gradients stopped or defined (`custom_gradient`), and control flow and maps (`cond`,
`switch`, `while_loop`, `fori_loop`, `scan`, `associative_scan`, `map`, `vectorized_map`) with
Keras's conventions; Keras's `keras.ops` core functions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from kilnet.ops._convert import as_array, dispatch_symbolic, static_ints
from kilnet.variables import to_array

__all__ = [
    "unstack", "slice", "slice_update", "cast", "convert_to_tensor", "convert_to_numpy",
    "shape", "stop_gradient", "cond", "while_loop", "fori_loop", "scan",
    "dtype", "is_tensor", "saturate_cast", "scatter", "scatter_update", "switch", "map",
    "vectorized_map", "associative_scan", "custom_gradient",
]


# -- shapes and indexing ------------------------------------------------------------------------

def unstack(x, num=None, axis=0):
    """The slices of `x` along `axis`, as a list (`num`, if given, must equal that length)."""
    x = as_array(x)
    if num is not None and num != x.shape[axis]:
        raise ValueError(f"Argument `num` must equal x.shape[axis] = {x.shape[axis]}. "
                         f"Received: num={num}")
    return list(jnp.moveaxis(x, axis, 0))


def slice(inputs, start_indices, shape):
    """The block of `shape` starting at `start_indices` (which may be traced); a -1 in
    `shape` takes the rest of that dimension."""
    inputs = as_array(inputs)
    shape = static_ints(shape, "shape")
    # -1 needs a static start (the result's shape must be known when tracing).
    sizes = tuple(dim - start if size == -1 else size
                  for dim, start, size in zip(inputs.shape, start_indices, shape))
    return jax.lax.dynamic_slice(inputs, start_indices, sizes)


def slice_update(inputs, start_indices, updates):
    """`inputs` with the block at `start_indices` replaced by `updates`."""
    return jax.lax.dynamic_update_slice(as_array(inputs), as_array(updates), start_indices)



# -- tensors, dtypes and creation ---------------------------------------------------------------

def cast(x, dtype):
    """`x` converted to `dtype` (a string such as "float32", or a NumPy/JAX dtype)."""
    return as_array(x).astype(dtype)


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """A JAX array holding `x` (a Variable's current value, a NumPy array, a list, a scalar);
    text stays a NumPy array of str (JAX has no strings), which a model's string Input takes,
    as keras.io's FeatureSpace example passes `convert_to_tensor([value])` to predict.

    Example:
        >>> convert_to_tensor([1, 2]).dtype, convert_to_tensor(["fixed"]).tolist()
        (dtype('int32'), ['fixed'])
    """
    if sparse or ragged:
        raise ValueError("kilnet has no sparse or ragged tensors. "
                         f"Received: sparse={sparse}, ragged={ragged}")
    if dtype in (None, "string") and _is_text(x):
        return np.asarray(x, dtype=str)
    x = as_array(x)
    return x if dtype is None else x.astype(dtype)


def _is_text(x) -> bool:
    """Whether `x` is a string, or a (nested) list or NumPy array of them."""
    while isinstance(x, (list, tuple)) and x:
        x = x[0]
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "US" or (x.dtype.kind == "O" and x.size > 0
                                        and isinstance(x.reshape(-1)[0], (str, bytes)))
    return isinstance(x, (str, bytes))


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


def stop_gradient(variable):
    """`variable` unchanged, with no gradient flowing back through it."""
    return jax.lax.stop_gradient(as_array(variable))



# -- control flow -------------------------------------------------------------------------------

def cond(pred, true_fn, false_fn):
    """`true_fn()` if `pred` else `false_fn()`, traced both ways: the two functions take no
    arguments and must return the same structure of shapes and dtypes."""
    return jax.lax.cond(as_array(pred), true_fn, false_fn)


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



# -- dtypes -------------------------------------------------------------------------------------

def dtype(x):
    """The dtype of `x` as Keras's string ("float32", "int32", "bool", ...); a symbolic tensor
    answers it too.

    Example:
        >>> dtype(np.zeros(2, np.int32)), dtype(2.0)
        ('int32', 'float32')
    """
    x = to_array(x)
    return jnp.dtype(x.dtype).name if hasattr(x, "dtype") else as_array(x).dtype.name


def is_tensor(x):
    """Whether `x` is a JAX array (traced ones included; a Variable, a NumPy array or a
    symbolic tensor is not)."""
    return isinstance(x, jax.Array)


def saturate_cast(x, dtype):
    """`x` converted to `dtype`, values beyond its range clipped to its extremes first (a plain
    `cast` wraps integers around and is undefined for floats out of range).

    Example:
        >>> saturate_cast(np.array([-1.0, 300.0, np.inf]), "uint8").tolist()
        [0, 255, 255]
    """
    x = as_array(x)
    low, high = _limits_within(x.dtype, jnp.dtype(dtype))
    return jnp.clip(x, low, high).astype(dtype)


def _limits_within(source, target):
    """The lowest and highest values of dtype `source` that fit in dtype `target`: the
    target's range, rounded toward zero where `source` cannot hold its ends exactly."""
    def extremes(dtype):
        if dtype == jnp.bool_:
            return 0, 1
        info = jnp.iinfo(dtype) if jnp.issubdtype(dtype, jnp.integer) else jnp.finfo(dtype)
        return info.min, info.max

    (source_low, source_high), (target_low, target_high) = extremes(source), extremes(target)
    # computed in the source dtype (NumPy; ml_dtypes for bfloat16), as the clip will compare
    low = np.asarray(np.maximum(source_low, target_low)).astype(source)
    high = np.asarray(np.minimum(source_high, target_high)).astype(source)
    # e.g. int32's max in float32 rounds up to 2**31, which int32 cannot hold: step back
    if low < target_low:
        low = np.nextafter(low, np.zeros((), source)).astype(source)
    if high > target_high:
        high = np.nextafter(high, np.zeros((), source)).astype(source)
    return low, high



# -- scatters -----------------------------------------------------------------------------------

def scatter(indices, values, shape):
    """A zero array of `shape` with `values` added at `indices` (each row of `indices` one
    position, or the start of a slice when shorter than `shape`); repeated indices add up.

    Example:
        >>> scatter(np.array([[0, 1], [0, 1], [1, 0]]), np.array([1.0, 2.0, 5.0]), (2, 2)).tolist()
        [[0.0, 3.0], [5.0, 0.0]]
    """
    indices, values = as_array(indices), as_array(values)
    positions = tuple(jnp.moveaxis(indices, -1, 0))
    return jnp.zeros(shape, values.dtype).at[positions].add(values)


_REDUCTIONS = {None: "set", "add": "add", "max": "max", "min": "min", "mul": "multiply"}


def scatter_update(inputs, indices, updates, reduction=None):
    """`inputs` with `updates` written at `indices` (an (N, k) array: N positions, or slices
    when k < inputs.ndim); `reduction` "add", "max", "min" or "mul" combines them with the
    values there instead of replacing them.

    Example:
        >>> scatter_update(np.zeros((2, 3)), [[1, 2]], np.array([7.0])).tolist()
        [[0.0, 0.0, 0.0], [0.0, 0.0, 7.0]]
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"Argument `reduction` must be one of {list(_REDUCTIONS)}. Received: "
                         f"reduction={reduction!r}")
    positions = tuple(jnp.transpose(as_array(indices)))
    update = getattr(as_array(inputs).at[positions], _REDUCTIONS[reduction])
    return update(as_array(updates))



# -- functions over arrays ----------------------------------------------------------------------

def switch(index, branches, *operands):
    """`branches[index](*operands)`, `index` clamped to the valid range; traced, each branch
    returns the same structure of shapes and dtypes."""
    return jax.lax.switch(as_array(index), branches, *jax.tree.map(to_array, operands))


def map(f, xs):
    """`f` applied to each slice of `xs` along its leading axis (of each array of a structure),
    the results stacked; traced once, run sequentially (`vectorized_map` runs them at once)."""
    return jax.lax.map(f, jax.tree.map(to_array, xs))


def vectorized_map(function, elements):
    """`function` mapped over the leading axis of `elements` (of each array of a structure), by
    `jax.vmap`: one batched computation."""
    return jax.vmap(function)(jax.tree.map(to_array, elements))


def associative_scan(f, elems, reverse=False, axis=0):
    """Inclusive scan of an associative `f` along `axis` in parallel (log depth):
    `f(f(e0, e1), e2), ...` for each prefix; `reverse` scans from the end.

    Example:
        >>> associative_scan(lambda a, b: a + b, np.array([1, 2, 3, 4])).tolist()
        [1, 3, 6, 10]
    """
    return jax.lax.associative_scan(f, jax.tree.map(to_array, elems), reverse=reverse,
                                    axis=axis)


def custom_gradient(f):
    """`f` with the gradient it defines: `f(*args)` returns `(output, grad_fn)` and
    `grad_fn(upstream)` returns the gradient for each argument (`jax.custom_gradient`).

    Example:
        >>> @custom_gradient
        ... def clipped_identity(x):
        ...     return x, lambda upstream: jnp.clip(upstream, -1.0, 1.0)
        >>> float(jax.grad(lambda x: 5.0 * clipped_identity(x))(2.0))
        1.0
    """
    with_gradient = jax.custom_gradient(f)

    @functools.wraps(f)
    def function(*args, **kwargs):
        # Variables among the arguments: their values (JAX cannot differentiate through them)
        args, kwargs = jax.tree.map(to_array, (args, kwargs))
        return with_gradient(*args, **kwargs)
    return function


dispatch_symbolic(globals(), __all__)
