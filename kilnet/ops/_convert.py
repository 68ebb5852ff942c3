"""What every kilnet.ops function does to its arguments first, and how a symbolic tensor takes
a call over.

Array arguments may be `kilnet.variables.Variable`s (JAX refuses to convert one implicitly),
NumPy arrays, lists or scalars: each goes through `as_array`. Functions that return floats
where Keras does (rounding, `rsqrt`, `erf`, norms) take `as_float`. A functional model's
symbolic tensors (`kilnet.Input(...)`) define `__kilnet_op__`: given one, an ops function
records itself as a graph node instead of computing (as NumPy's `__array_function__` lets an
array type take a call over). ops knows nothing of layers; the tensor does.

Shape arithmetic stays concrete while tracing. Inside jax.jit (fit, predict, a functional
model's build) `ops.shape(x)` gives Python ints, but JAX stages every op, so
`ops.concatenate([ops.expand_dims(ops.shape(x)[0], -1), [1, 1]])` would become a traced
array that `tile` or `reshape` cannot take (Keras's text-generation tutorial builds its causal
mask that way). An op computed from no traced value whose result is tiny and no larger than
its arguments (arithmetic, joining, indexing: not arange, ones or eye, whose iota and
broadcast ops programs keep) is therefore computed again as a constant
(`jax.ensure_compile_time_eval`), and the ops that take shapes or counts turn such constant
arrays into Python ints (`static_ints`).

Example:
    >>> import numpy as np
    >>> as_float(np.array([1, 2])).dtype.name
    'float32'
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer

from kilnet.variables import Variable, to_array

FLOATX = "float32"  # Keras's default float dtype (keras.config.floatx())

# Answered by a symbolic tensor itself (its static shape and dtype), not recorded as a graph
# node.
OWN_SHAPE = frozenset({"shape", "ndim", "convert_to_numpy", "dtype", "is_tensor"})

# The most elements a result computed from no traced value may have to be made a constant while
# tracing: enough for shape vectors and counts.
SHAPE_ARITHMETIC_SIZE = 16


def as_array(x):
    """An array argument as a JAX array: a Variable's value; lists (of Variables too), NumPy
    arrays and scalars converted (Python scalars stay weakly typed, as in jax.numpy).

    Example:
        >>> as_array([1.0, 2.0]).shape
        (2,)
    """
    if isinstance(x, (list, tuple)):
        # Variables nested in a list: each replaced by its value (tree.map reaches them all)
        return jnp.asarray(jax.tree.map(to_array, x))
    return jnp.asarray(to_array(x))


def as_arrays(xs):
    """A sequence of array arguments (concatenate, stack) converted one by one.

    Example:
        >>> [a.shape for a in as_arrays([[1, 2], [3]])]
        [(2,), (1,)]
    """
    return [as_array(x) for x in xs]


def as_float(x):
    """`x` as an array, integers and booleans cast to float32 (Keras returns floats there).

    Example:
        >>> as_float(True).dtype.name
        'float32'
    """
    x = as_array(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(FLOATX)


def _symbolic_argument(args, kwargs):
    """The first argument (or element of a list argument) that takes calls over, if any."""
    for value in (*args, *kwargs.values()):
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(type(item), "__kilnet_op__"):
                return item
    return None


def _tiny_traced(result) -> bool:
    """Whether an op's result is a traced array small enough to be shape arithmetic (its
    size a number: under a symbolic batch size, as a functional model's build traces, a
    size such as 3*batch is never tiny)."""
    if not isinstance(result, Tracer):
        return False
    size = result.size
    return isinstance(size, int) and size <= SHAPE_ARITHMETIC_SIZE


def _constant_elements(args, kwargs):
    """How many numbers the arguments hold, however nested; None unless all are plain values:
    no traced array, no Variable (whose value is traced inside a compiled step) and no
    function (control flow such as fori_loop, whose body must not run twice; a dtype such as
    jnp.int32 is a class, not a function)."""
    count = 0
    for leaf in jax.tree.leaves((args, kwargs), is_leaf=lambda v: isinstance(v, Variable)):
        if isinstance(leaf, (Tracer, Variable)) or (callable(leaf) and not isinstance(leaf, type)):
            return None
        if isinstance(leaf, (numbers.Number, np.ndarray, np.generic, jax.Array)):
            count += np.size(leaf)
    return count


def _shape_arithmetic(result, args, kwargs) -> bool:
    """Whether `result`, traced, is tiny and computed from constants no smaller than itself
    (so not a creation op, whose iota or broadcast stays in the program)."""
    if not _tiny_traced(result):
        return False
    elements = _constant_elements(args, kwargs)
    return elements is not None and result.size <= elements


def takes_symbolic(fn):
    """`fn`, handing the call to its first symbolic argument when it has one, and keeping a
    tiny result computed from constants concrete while tracing (shape arithmetic).

    Example:
        >>> takes_symbolic(len)([1, 2])
        2
        >>> add = takes_symbolic(jnp.add)   # a constant under jit, so zeros takes it
        >>> jax.jit(lambda x: jnp.zeros(add(x.shape[0], 1)))(np.zeros(2)).shape
        (3,)
    """
    @functools.wraps(fn)
    def function(*args, **kwargs):
        tensor = _symbolic_argument(args, kwargs)
        if tensor is not None:
            return tensor.__kilnet_op__(fn, args, kwargs)
        result = fn(*args, **kwargs)
        # Only tracing gives a Tracer from constants; the staged first result is dead code,
        # which lowering drops.
        if _shape_arithmetic(result, args, kwargs):
            with jax.ensure_compile_time_eval():
                return fn(*args, **kwargs)
        return result
    return function


def static_ints(value, name: str):
    """A shape, size or count argument with constant arrays (NumPy's, or JAX's computed by
    kilnet.ops from `ops.shape`) turned into Python ints, so JAX takes it while tracing.

    Example:
        >>> static_ints([np.int32(2), jnp.asarray(3)], "shape")
        (2, 3)
        >>> static_ints(jnp.asarray([2, 1]), "repeats")
        (2, 1)
    """
    if isinstance(value, Tracer):
        raise ValueError(
            f"`{name}` must be known when the function is traced (Python ints, or arrays "
            f"computed from ops.shape(...) and constants). Received: a traced array of shape "
            f"{value.shape} computed from tensor values. Build `{name}` from ops.shape(x) "
            "instead of from the values of a tensor.")
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        ints = np.asarray(value).tolist()
        return tuple(ints) if isinstance(ints, list) else ints
    if isinstance(value, (list, tuple)):
        return tuple(static_ints(item, name) for item in value)
    return value


def dispatch_symbolic(namespace: dict, names) -> None:
    """Wrap each public function `names` of a module's `namespace` with `takes_symbolic`
    (except those a symbolic tensor answers itself); called once at the end of each ops module.

    Example:
        >>> namespace = {"double": lambda x: 2 * x}
        >>> dispatch_symbolic(namespace, ["double"])
        >>> namespace["double"](3)
        6
    """
    for name in sorted(set(names) - OWN_SHAPE):
        namespace[name] = takes_symbolic(namespace[name])
