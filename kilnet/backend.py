"""Keras's `keras.backend` functions, for code written `from keras import backend as K`:
the settings of kilnet.config, `clear_session`, and Keras's dtype helpers.

Example:
    >>> from kilnet import backend as K
    >>> K.epsilon(), K.floatx(), K.image_data_format()
    (1e-07, 'float32', 'channels_last')
"""

from __future__ import annotations

import collections

import numpy as np

from kilnet.config import (backend, epsilon, floatx, image_data_format, set_epsilon,
                           set_floatx, set_image_data_format)
from kilnet.utils import clear_session

__all__ = ["backend", "clear_session", "epsilon", "floatx", "get_uid", "image_data_format",
           "is_float_dtype", "is_int_dtype", "is_keras_tensor", "result_type", "set_epsilon",
           "set_floatx", "set_image_data_format", "standardize_dtype"]

_uids: collections.Counter = collections.Counter()
# Keras's names for Python's and NumPy's types (its standardize_dtype)
_PYTHON_TYPES = {"float": "float32", "int": "int32", "bool": "bool"}


def get_uid(prefix="") -> int:
    """A counter per prefix: 1 at the first call for a prefix, then 2, 3, ...

    Example:
        >>> from kilnet import backend as K
        >>> K.get_uid("doc_example"), K.get_uid("doc_example")
        (1, 2)
    """
    _uids[prefix] += 1
    return _uids[prefix]


def standardize_dtype(dtype="float32") -> str:
    """A dtype's name as Keras writes it ("float32", "int32", "bool", ...); Python's float,
    int and bool map to float32, int32 and bool, as in Keras.

    Example:
        >>> from kilnet import backend as K
        >>> K.standardize_dtype(float), K.standardize_dtype("int"), K.standardize_dtype(
        ...     np.uint8)
        ('float32', 'int32', 'uint8')
    """
    if dtype is None:
        return floatx()
    name = getattr(dtype, "__name__", None) if isinstance(dtype, type) else None
    if isinstance(dtype, str) and dtype in _PYTHON_TYPES:
        return _PYTHON_TYPES[dtype]
    if name in _PYTHON_TYPES:
        return _PYTHON_TYPES[name]
    if str(dtype) == "bfloat16" or getattr(dtype, "name", None) == "bfloat16":
        return "bfloat16"
    if not isinstance(dtype, (type, str)) and hasattr(dtype, "dtype"):
        dtype = dtype.dtype   # an array: its dtype
    dtype = getattr(dtype, "as_numpy_dtype", dtype)   # TensorFlow's tf.float32, duck-typed
    try:
        return np.dtype(dtype).name
    except TypeError:
        raise ValueError(f"Invalid dtype: {dtype!r}") from None


def is_float_dtype(dtype) -> bool:
    """Whether a dtype is a floating type (bfloat16 included)."""
    return standardize_dtype(dtype) in ("float16", "bfloat16", "float32", "float64")


def is_int_dtype(dtype) -> bool:
    """Whether a dtype is a signed or unsigned integer type."""
    return standardize_dtype(dtype).startswith(("int", "uint"))


def result_type(*dtypes) -> str:
    """The dtype an operation on these dtypes gives (JAX's promotion rules, as Keras's JAX
    backend).

    Example:
        >>> from kilnet import backend as K
        >>> K.result_type("int32", "float32"), K.result_type("bfloat16", "float32")
        ('float32', 'float32')
    """
    import jax.numpy as jnp

    if not dtypes:
        return floatx()
    return standardize_dtype(jnp.result_type(*[standardize_dtype(d) for d in dtypes]))


def is_keras_tensor(x) -> bool:
    """Whether `x` is a symbolic tensor of the functional API (kilnet's KerasTensor).

    Example:
        >>> import kilnet
        >>> from kilnet import backend as K
        >>> K.is_keras_tensor(kilnet.Input(shape=(3,))), K.is_keras_tensor(np.ones(3))
        (True, False)
    """
    from kilnet.layers import KerasTensor

    return isinstance(x, KerasTensor)
