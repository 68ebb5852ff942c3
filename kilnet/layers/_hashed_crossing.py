"""HashedCrossing: crosses of categorical features hashed into bins, with Keras 3's exact bins.

Keras computes them with TensorFlow's `tf.sparse.cross_hashed`: starting from a fixed key,
each feature's fingerprint is folded in with FingerprintCat64, then the result is taken modulo
num_bins. A string's fingerprint is FarmHash's Fingerprint64 of its bytes (the hash Hashing
uses, kilnet.layers._fingerprints); an integer is its own fingerprint (its 64 bits as they
are, not its decimal text as in Hashing). kilnet computes the same numbers without TensorFlow.

As Hashing, the hashing runs on the host: called on the data (before the model), the layer
crosses strings and integers there, integers with all their 64 bits; inside a compiled model
it takes integers only, through `jax.pure_callback`, and they are JAX's int32 there (so a
feature beyond the int32 range is crossed as JAX truncates it).
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope
from kilnet.layers._base import Layer
from kilnet.layers._encoding import (check_output_mode, encode_categorical, encoded_shape,
                                     id_dtype_name, is_string_data, refuse_sparse,
                                     without_id_dtype)
from kilnet.layers._fingerprints import as_hash_bytes, fingerprint64
from kilnet.layers._host_call import record_host_call, takes_strings
from kilnet.layers._node import is_symbolic

_MASK = (1 << 64) - 1
_CROSS_KEY = 0xDECAFCAFFE      # tf.sparse.cross_hashed's default hash_key, which Keras uses
_CAT_MUL = 0xC6A4A7935BD1E995  # FingerprintCat64's multiplier


def fingerprint_cat64(first: int, second: int) -> int:
    """TensorFlow's FingerprintCat64: one 64-bit fingerprint of two (unsigned ints).

    Example:
        >>> fingerprint_cat64(0, 0) == fingerprint_cat64(0, 0), fingerprint_cat64(1, 2) < 2**64
        (True, True)
    """
    def shift_mix(value):
        return value ^ (value >> 47)

    result = first ^ _CAT_MUL
    result ^= (shift_mix((second * _CAT_MUL) & _MASK) * _CAT_MUL) & _MASK
    result = (result * _CAT_MUL) & _MASK
    result = (shift_mix(result) * _CAT_MUL) & _MASK
    return shift_mix(result)


def feature_fingerprint(value) -> int:
    """A feature's fingerprint in a cross: Fingerprint64 of a string's bytes, an integer's own
    64 bits (two's complement).

    Example:
        >>> feature_fingerprint(-1) == 2**64 - 1, feature_fingerprint(7)
        (True, 7)
    """
    if isinstance(value, (str, bytes)):
        return fingerprint64(as_hash_bytes(value))
    return int(value) & _MASK


def cross_bin(values, num_bins: int) -> int:
    """The bin in [0, num_bins) of one cross of feature values, as tf.sparse.cross_hashed.

    Example:
        >>> 0 <= cross_bin(["A", 101], 5) < 5
        True
    """
    hashed = _CROSS_KEY
    for value in values:
        hashed = fingerprint_cat64(hashed, feature_fingerprint(value))
    return hashed % num_bins


class HashedCrossing(Layer):
    """Crosses categorical features by hashing, as `keras.layers.HashedCrossing`: the features
    at each position of two or more inputs (strings or integers, of shape (), (batch,) or
    (batch, 1)) are hashed together into one of `num_bins` bins, with Keras's bins.

    Args:
        num_bins: the number of bins.
        output_mode: "int" (default: the bin ids, int32 where Keras gives int64) or
            "one_hot" (float32 rows of num_bins).
        sparse: only False.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.HashedCrossing(num_bins=5)
        >>> bins = layer((np.array(["A", "B", "A"]), np.array([101, 101, 102])))
        >>> bins.shape, bool(((0 <= bins) & (bins < 5)).all())
        ((3,), True)
        >>> kilnet.layers.HashedCrossing(4, output_mode="one_hot")(
        ...     [np.array([[1], [2]]), np.array([[3], [4]])]).shape
        (2, 4)
    """

    runs_on_strings = True   # a model runs it on the host (kilnet.models._host_stage)

    config_keys = ("num_bins", "output_mode", "sparse")
    accepts_id_dtype = True   # Keras's configs say "int64" (ID_DTYPES)

    def __init__(self, num_bins, output_mode="int", sparse=False, **kwargs):
        super().__init__(**without_id_dtype(output_mode, kwargs))
        if (isinstance(num_bins, bool) or not isinstance(num_bins, numbers.Integral)
                or not 0 < num_bins < 2**31):
            raise ValueError("HashedCrossing: num_bins must be a positive integer (below "
                             f"2**31: kilnet's ids are int32). Received: num_bins={num_bins!r}")
        self.num_bins = int(num_bins)
        self.output_mode = check_output_mode("HashedCrossing", output_mode, ("int", "one_hot"))
        refuse_sparse("HashedCrossing", sparse)
        self.sparse = False

    def get_config(self):
        # Keras's HashedCrossing writes its settings, then the name and a dtype name (its
        # constructor takes no `trainable`)
        return {"num_bins": self.num_bins, "output_mode": self.output_mode,
                "sparse": self.sparse, "name": self.name, "dtype": id_dtype_name(self)}

    # -- the host computation ------------------------------------------------------------------
    def cross_values(self, *features) -> np.ndarray:
        """The int32 bins of the crosses of NumPy arrays of one shape, on the host.

        Example:
            >>> import numpy as np
            >>> layer = HashedCrossing(3)
            >>> layer.cross_values(np.array(["a", "b"]), np.array([1, 2])).shape
            (2,)
        """
        arrays = [np.asarray(f) for f in features]
        flat = [a.reshape(-1).tolist() for a in arrays]
        bins = [cross_bin(values, self.num_bins) for values in zip(*flat)]
        return np.asarray(bins, np.int64).reshape(arrays[0].shape).astype(np.int32)

    def __call__(self, inputs, *args, **kwargs):
        inputs = _check_inputs(inputs)
        if takes_strings((inputs, kwargs)) and _scope.current() is None:
            return record_host_call(self, (list(inputs),) + args, kwargs)   # run on the host
        if is_symbolic((inputs, kwargs)) or (_scope.current() is not None
                                             and not any(is_string_data(x) for x in inputs)):
            return super().__call__(list(inputs), *args, **kwargs)
        if _scope.current() is not None:
            raise TypeError("HashedCrossing got strings inside another layer's call; cross "
                            "strings on the data, before the model.")
        # On the data: crossed on the host, integers with all their 64 bits (inside JAX they
        # would be int32)
        arrays = [np.asarray(x) for x in inputs]
        for array in arrays:
            if array.dtype.kind not in "iuUSO":
                raise TypeError("HashedCrossing takes integer or string features. Received: "
                                f"a feature of dtype {array.dtype}")
        _check_shapes([a.shape for a in arrays])
        return self._encode(self.cross_values(*arrays), np)

    def sample_output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        _check_shapes([(None,) + s for s in shapes])
        if self.output_mode == "int":
            return shapes[0]
        return encoded_shape(shapes[0], "one_hot", self.num_bins)

    def compute_output_dtype(self, input_dtype):
        return "int32" if self.output_mode == "int" else "float32"

    def apply(self, params, state, inputs, **_):
        arrays = [jnp.asarray(x) for x in inputs]
        for x in arrays:
            if not jnp.issubdtype(x.dtype, jnp.integer):
                raise TypeError("HashedCrossing takes integer or string features. Received: "
                                f"an input of dtype {x.dtype}")
        # The fingerprints are 64-bit integer arithmetic: computed on the host.
        bins = jax.pure_callback(self.cross_values,
                                 jax.ShapeDtypeStruct(arrays[0].shape, jnp.int32), *arrays,
                                 vmap_method="sequential")
        return self._encode(bins, jnp), state

    def _encode(self, bins, xp):
        if self.output_mode == "int":
            return bins
        return encode_categorical(bins, "one_hot", self.num_bins, xp=xp)


def _check_inputs(inputs):
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        raise ValueError("HashedCrossing is called on a list or tuple of at least two "
                         f"features. Received: inputs of type {type(inputs).__name__}"
                         + (f" with {len(inputs)} item(s)" if isinstance(inputs, (list, tuple))
                            else ""))
    return list(inputs)


def _check_shapes(shapes):
    first = tuple(shapes[0])
    if len(first) > 2 or (len(first) == 2 and first[-1] != 1):
        raise ValueError("HashedCrossing's features must have shape (), (batch,) or (batch, "
                         f"1). Received: shapes {[tuple(s) for s in shapes]}")
    if any(tuple(s) != first for s in shapes[1:]):
        raise ValueError("HashedCrossing's features must all have one shape. Received: "
                         f"shapes {[tuple(s) for s in shapes]}")
