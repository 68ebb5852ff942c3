"""A concrete array in a model configuration (a constant operand of a functional graph:
`x + ops.arange(4)`, `ops.multiply(x, np_weights)`, `MultiHeadAttention()(q, v,
attention_mask=np_mask)`) in the form Keras 3 writes it, and back.

Why a module of its own: a constant is data, and a file's data must never become anything
but an array. Keras writes a JAX array as {"class_name": "__tensor__", "config": {"value":
nested lists, "dtype": name}}, a NumPy array with at least one axis the same way under
"__numpy__", and a NumPy scalar (or 0-d array) as the plain number. Reading takes the dtype
from a closed table of numeric dtypes and the value as nested lists of numbers of one regular
shape, so nothing a file names is looked up, imported or run. `kilnet.models._config` (graph
nodes) and `kilnet.serialization` (`serialize_keras_object`) share these entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TENSOR = "__tensor__"   # a JAX array (Keras: any backend tensor)
NUMPY = "__numpy__"     # a NumPy array with at least one axis
KINDS = frozenset({TENSOR, NUMPY})
# The dtypes a constant may have: the numeric ones a kilnet model computes with.
INTEGER_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                            "uint32", "uint64"})
FLOAT_DTYPES = frozenset({"bfloat16", "float16", "float32", "float64"})
DTYPES = INTEGER_DTYPES | FLOAT_DTYPES


def is_array(value) -> bool:
    """Whether `value` is a concrete array or NumPy scalar that `array_config` writes."""
    return isinstance(value, (jax.Array, np.ndarray, np.generic))


def array_config(value):
    """Keras's config form of a concrete array: a "__tensor__" entry for a JAX array, a
    "__numpy__" entry for a NumPy array with axes, the plain value for a NumPy scalar.

    Args:
        value: a JAX array, a NumPy array or a NumPy scalar of a numeric dtype.

    Returns:
        A dict of JSON data, or a bool, int, float or str.

    Raises:
        ValueError: an array's dtype is not numeric (strings, objects, complex numbers).

    Example:
        >>> import numpy as np
        >>> array_config(np.array([1, 2], "int32"))
        {'class_name': '__numpy__', 'config': {'value': [1, 2], 'dtype': 'int32'}}
        >>> array_config(np.float32(0.5))
        0.5
    """
    numbers, dtype = np.asarray(value), str(value.dtype)
    if not isinstance(value, jax.Array) and numbers.ndim == 0 and isinstance(
            numbers.item(), (bool, int, float, str)):
        return numbers.item()   # as Keras writes NumPy scalars: plain values
    if dtype not in DTYPES:
        raise ValueError(f"A model configuration holds arrays of the dtypes {sorted(DTYPES)}. "
                         f"Received: an array of dtype {dtype} and shape {value.shape}. Cast it "
                         "to one of them, or compute it inside a layer's call().")
    kind = TENSOR if isinstance(value, jax.Array) else NUMPY
    return {"class_name": kind, "config": {"value": numbers.tolist(), "dtype": dtype}}


def is_array_config(value) -> bool:
    """Whether `value` is a "__tensor__" or "__numpy__" entry (see array_config)."""
    return isinstance(value, dict) and value.get("class_name") in KINDS


def array_from_config(entry):
    """The array a "__tensor__" (a JAX array) or "__numpy__" (a NumPy array) entry describes,
    read as data.

    Args:
        entry: {"class_name": "__tensor__" or "__numpy__", "config": {"value", "dtype"}}.

    Returns:
        A JAX or NumPy array of that dtype and the value's shape (float64 and int64 become
        32-bit in a JAX array unless JAX's 64-bit mode is on, as everywhere in JAX).

    Raises:
        ValueError: the entry is malformed, its dtype is not numeric, or its value is not
            nested lists of numbers of one regular shape that fit the dtype.

    Example:
        >>> entry = {"class_name": "__numpy__",
        ...          "config": {"value": [[1.5, 2.0]], "dtype": "float32"}}
        >>> array = array_from_config(entry)
        >>> array.shape, array.dtype
        ((1, 2), dtype('float32'))
        >>> bad = {"class_name": "__numpy__", "config": {"value": [1, [2]], "dtype": "int32"}}
        >>> array_from_config(bad)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: an array entry's value must be nested lists of one regular shape...
    """
    config = entry.get("config") if isinstance(entry, dict) else None
    if (not is_array_config(entry) or set(entry) != {"class_name", "config"}
            or not isinstance(config, dict) or set(config) != {"value", "dtype"}):
        raise ValueError(f"an array entry is malformed: expected {{'class_name': '{TENSOR}' "
                         f"or '{NUMPY}', 'config': {{'value': [...], 'dtype': ...}}}}. "
                         f"Received: {entry!r:.200}")
    dtype = config["dtype"]
    if dtype not in DTYPES:
        raise ValueError(f"an array entry has the dtype {dtype!r:.50}; kilnet reads arrays of "
                         f"the dtypes {sorted(DTYPES)}.")
    shape, numbers = _shape_and_numbers(config["value"])
    if dtype in INTEGER_DTYPES and any(isinstance(n, float) for n in numbers):
        raise ValueError(f"an array entry of dtype {dtype} holds a fractional number; its "
                         "values must be integers (or true / false).")
    try:
        array = np.array(numbers, dtype=jnp.dtype(dtype)).reshape(shape)
    except OverflowError:
        raise ValueError(f"an array entry holds a number outside the range of its dtype "
                         f"{dtype}.") from None
    return jnp.asarray(array) if entry["class_name"] == TENSOR else array


def _shape_and_numbers(value):
    """The shape of nested lists and their numbers in order, walked a level at a time (no
    recursion, so no depth can exhaust the stack); ValueError if they are ragged or hold
    anything but numbers."""
    shape, level = [], [value]
    while level and isinstance(level[0], list):
        length = len(level[0])
        if any(not isinstance(item, list) or len(item) != length for item in level):
            raise ValueError(_RAGGED)
        shape.append(length)
        level = [number for item in level for number in item]
    if any(isinstance(n, list) for n in level):
        raise ValueError(_RAGGED)
    if not all(isinstance(n, (bool, int, float)) for n in level):
        odd = next(n for n in level if not isinstance(n, (bool, int, float)))
        raise ValueError(f"an array entry's value holds {odd!r:.50}; it must hold numbers "
                         "only.")
    return tuple(shape), level


_RAGGED = ("an array entry's value must be nested lists of one regular shape (every list at a "
           "level as long as the others), with numbers at the bottom.")
