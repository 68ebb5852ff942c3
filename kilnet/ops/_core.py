"""The core ops: casts and conversions, shapes, slices, gradients stopped, and control flow
(`cond`, `while_loop`, `fori_loop`, `scan`) with Keras's conventions; Keras's `keras.ops` core
functions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet.ops._convert import as_array, dispatch_symbolic
from kilnet.variables import to_array

__all__ = [
    "unstack", "slice", "slice_update", "cast", "convert_to_tensor", "convert_to_numpy",
    "shape", "stop_gradient", "cond", "while_loop", "fori_loop", "scan",
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
    """A JAX array holding `x` (a Variable's current value, a NumPy array, a list, a scalar)."""
    if sparse or ragged:
        raise ValueError("kilnet has no sparse or ragged tensors. "
                         f"Received: sparse={sparse}, ragged={ragged}")
    x = as_array(x)
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


dispatch_symbolic(globals(), __all__)
