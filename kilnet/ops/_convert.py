"""What every kilnet.ops function does to its arguments first, and how a symbolic tensor takes
a call over.

Array arguments may be `kilnet.variables.Variable`s (JAX refuses to convert one implicitly),
NumPy arrays, lists or scalars: each goes through `as_array`. Functions that return floats
where Keras does (rounding, `rsqrt`, `erf`, norms) take `as_float`. A functional model's
symbolic tensors (`kilnet.Input(...)`) define `__kilnet_op__`: given one, an ops function
records itself as a graph node instead of computing (as NumPy's `__array_function__` lets an
array type take a call over). ops knows nothing of layers; the tensor does.

Example:
    >>> import numpy as np
    >>> as_float(np.array([1, 2])).dtype.name
    'float32'
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kilnet.variables import to_array

FLOATX = "float32"  # Keras's default float dtype (keras.config.floatx())

# Answered by a symbolic tensor itself (its static shape and dtype), not recorded as a graph
# node.
OWN_SHAPE = frozenset({"shape", "ndim", "convert_to_numpy", "dtype", "is_tensor"})


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


def takes_symbolic(fn):
    """`fn`, handing the call to its first symbolic argument when it has one.

    Example:
        >>> takes_symbolic(len)([1, 2])
        2
    """
    @functools.wraps(fn)
    def function(*args, **kwargs):
        tensor = _symbolic_argument(args, kwargs)
        if tensor is None:
            return fn(*args, **kwargs)
        return tensor.__kilnet_op__(fn, args, kwargs)
    return function


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
