"""Integer categories to model features: CategoryEncoding (ids -> one-hot / multi-hot / counts),
Discretization (numbers -> bucket ids by boundaries, adapted from quantiles) and Hashing
(values -> hash buckets).

These are the preprocessing layers whose inputs are numbers, so they can live inside a model
and run in its compiled programs: their `apply` is pure jax.numpy, and everything they need
(boundaries, sizes) is in their config, so a saved model takes raw data. Hashing is the
exception that proves the rule: Keras's bins are FarmHash/SipHash fingerprints of the values'
decimal text (kilnet.layers._fingerprints), computed on the host; inside a compiled model
kilnet reaches them through `jax.pure_callback`. Strings are hashed on the host only.

`encode_categorical` is the one encoding rule all the categorical layers share (the lookups of
kilnet.layers._lookup too), written once for NumPy and jax.numpy.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope
from kilnet.layers._base import Layer
from kilnet.layers._fingerprints import hash_bucket
from kilnet.layers._host_call import record_host_call, takes_strings
from kilnet.layers._node import is_symbolic

ENCODINGS = ("one_hot", "multi_hot", "count")


# -- integer ids' dtype -------------------------------------------------------------------------
# Keras's hashing layers give integer ids in dtype "int64" (their default dtype, written in
# their configs); kilnet's ids are int32 (JAX's), whatever the dtype says.
ID_DTYPES = ("int64", "int32")


def without_id_dtype(output_mode, kwargs) -> dict:
    """A hashing layer's keyword arguments without an integer `dtype` (a name or Keras's
    DTypePolicy entry) given with integer ids (output_mode "int"), which changes nothing.

    Example:
        >>> without_id_dtype("int", {"dtype": "int64", "name": "h"})
        {'name': 'h'}
    """
    dtype = kwargs.get("dtype")
    name = (dtype.get("config") or {}).get("name") if isinstance(dtype, dict) else dtype
    if output_mode == "int" and name in ID_DTYPES:
        return {key: value for key, value in kwargs.items() if key != "dtype"}
    return kwargs


def id_dtype_name(layer) -> str:
    """The dtype a hashing layer's config names, as Keras's: "int64" for integer ids (its
    default), else the layer's policy.

    Example:
        >>> import kilnet
        >>> id_dtype_name(kilnet.layers.Hashing(3)), id_dtype_name(
        ...     kilnet.layers.Hashing(3, output_mode="one_hot"))
        ('int64', 'float32')
    """
    return "int64" if layer.output_mode == "int" else layer.dtype_policy.name


# -- the shared encoding rule ------------------------------------------------------------------
def check_output_mode(layer_name, output_mode, allowed):
    """Keras's output_mode, with its old names ("binary", "tf-idf") accepted as Keras does."""
    output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
    if output_mode not in allowed:
        raise ValueError(f"{layer_name}: output_mode must be one of {list(allowed)}. Received: "
                         f"output_mode={output_mode!r}")
    return output_mode


def refuse_sparse(layer_name, sparse):
    if sparse is not False:
        raise ValueError(f"{layer_name}: sparse=True is not supported (kilnet computes dense "
                         "arrays, as Keras on the JAX backend); leave sparse=False. Received: "
                         f"sparse={sparse!r}")


def encode_categorical(ids, output_mode, depth, count_weights=None, xp=jnp, dtype="float32"):
    """Encode integer ids (batch axis first) as Keras's encode_categorical_inputs does.

    "one_hot" adds an axis of size `depth` (replacing a last axis of size 1); "multi_hot" and
    "count" treat the last axis as one sample's tokens: (batch, tokens) -> (batch, depth), and
    a 1-D input is a single sample -> (depth,). Ids outside [0, depth) contribute nothing
    (that is how masked tokens are dropped). `xp` is numpy or jax.numpy; `dtype` is the
    output's (float32, as CategoryEncoding's; the lookups' are int32).

    Example:
        >>> import numpy as np
        >>> encode_categorical(np.array([[0, 2, 2]]), "count", 4, xp=np).tolist()
        [[1.0, 0.0, 2.0, 0.0]]
        >>> encode_categorical(np.array([[0, 2, 2]]), "multi_hot", 4, xp=np, dtype="int32").tolist()
        [[1, 0, 1, 0]]
    """
    ids = xp.asarray(ids)
    if ids.ndim == 0:
        ids = ids.reshape((1,))
    if output_mode == "one_hot":
        if ids.ndim > 1 and ids.shape[-1] == 1:
            ids = ids.reshape(ids.shape[:-1])
        return (ids[..., None] == xp.arange(depth)).astype(dtype)
    if ids.ndim > 2:
        raise ValueError(f'output_mode="{output_mode}" encodes (batch, tokens) inputs. '
                         f"Received: an input of shape {tuple(ids.shape)}")
    one_hot = (ids[..., None] == xp.arange(depth)).astype(dtype)
    axis = 1 if ids.ndim > 1 else 0
    if output_mode == "multi_hot":
        return one_hot.max(axis=axis)
    if count_weights is not None:
        one_hot = one_hot * xp.asarray(count_weights, xp.float32)[..., None]
    return one_hot.sum(axis=axis, dtype=one_hot.dtype)   # NumPy would widen int32 to int64


def encoded_shape(input_shape, output_mode, depth):
    """The output shape (batch axis excluded) of encode_categorical, for a model."""
    input_shape = tuple(input_shape)
    if output_mode == "one_hot":
        if input_shape and input_shape[-1] == 1:
            return input_shape[:-1] + (depth,)
        return input_shape + (depth,)
    if len(input_shape) != 1:
        raise ValueError(f'output_mode="{output_mode}" encodes (batch, tokens) inputs: give '
                         "samples of shape (tokens,) (reshape a single id to (1,)). Received: "
                         f"samples of shape {input_shape}")
    return (depth,)


def _check_size(value, argument, layer_name, low=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"{layer_name}: {argument} must be an integer >= {low}. Received: "
                         f"{argument}={value!r}")
    return int(value)


# -- CategoryEncoding --------------------------------------------------------------------------
class CategoryEncoding(Layer):
    """Encodes integer ids in [0, num_tokens) as one-hot, multi-hot or count vectors.

    Args:
        num_tokens: the number of categories (ids run from 0 to num_tokens - 1).
        output_mode: "multi_hot" (default: 1 where an id occurs in the sample), "one_hot"
            (one vector per id) or "count" (how often each id occurs).
        sparse: only False (kilnet outputs dense arrays).

    Call with `count_weights=` (same shape as the ids) in "count" mode to sum weights instead
    of counting. Ids outside [0, num_tokens) give all-zero rows (as Keras on JAX).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.CategoryEncoding(num_tokens=4, output_mode="count")
        >>> np.asarray(layer(np.array([[0, 1, 1], [3, 3, 2]]))).tolist()
        [[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]]
    """

    config_keys = ("num_tokens", "output_mode")  # Keras saves no "sparse" for this layer

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        if num_tokens is None:
            raise ValueError("CategoryEncoding: num_tokens must be set (the number of "
                             "categories); use IntegerLookup when it is not known beforehand. "
                             "Received: num_tokens=None")
        self.num_tokens = _check_size(num_tokens, "num_tokens", "CategoryEncoding")
        self.output_mode = check_output_mode("CategoryEncoding", output_mode, ENCODINGS)
        refuse_sparse("CategoryEncoding", sparse)
        self.sparse = False

    def sample_output_shape(self, input_shape):
        return encoded_shape(input_shape, self.output_mode, self.num_tokens)

    def apply(self, params, state, x, *, count_weights=None, **_):
        if count_weights is not None and self.output_mode != "count":
            raise ValueError("CategoryEncoding: count_weights is only used when output_mode="
                             f"'count'. Received: count_weights with output_mode="
                             f"{self.output_mode!r}")
        ids = jnp.asarray(x).astype(jnp.int32)
        return encode_categorical(ids, self.output_mode, self.num_tokens, count_weights), state


# -- Discretization ----------------------------------------------------------------------------
class Discretization(Layer):
    """Buckets numbers by boundaries: bucket i holds `bin_boundaries[i-1] <= x <
    bin_boundaries[i]` (np.digitize), as `keras.layers.Discretization`.

    Args:
        bin_boundaries: the sorted boundaries (n boundaries make n + 1 buckets), or
        num_bins: the number of buckets, with boundaries at the quantiles `adapt(data)` finds
            (Keras's approximate quantile summary, accurate to about `epsilon`).
        epsilon: the quantile summary's precision (default 0.01).
        output_mode: "int" (default: bucket ids, int32), "one_hot", "multi_hot" or "count".
        sparse: only False.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Discretization(bin_boundaries=[0.0, 1.0, 2.0])
        >>> np.asarray(layer(np.array([[-1.5, 1.0, 0.5, 3.0]]))).tolist()
        [[0, 2, 1, 3]]
        >>> adapted = kilnet.layers.Discretization(num_bins=4)
        >>> adapted.adapt(np.arange(100.0))
        >>> np.round(adapted.bin_boundaries, 3).tolist()
        [24.0, 49.0, 74.0]
    """

    def __init__(self, bin_boundaries=None, num_bins=None, epsilon=0.01, output_mode="int",
                 sparse=False, **kwargs):
        super().__init__(**kwargs)
        self.output_mode = check_output_mode("Discretization", output_mode,
                                             ("int",) + ENCODINGS)
        refuse_sparse("Discretization", sparse)
        self.sparse = False
        if num_bins is not None and bin_boundaries is not None:
            raise ValueError("Discretization: give either num_bins (then adapt) or "
                             f"bin_boundaries, not both. Received: num_bins={num_bins!r}, "
                             f"bin_boundaries={bin_boundaries!r}")
        if num_bins is None and bin_boundaries is None:
            raise ValueError("Discretization needs bin_boundaries=[...] or num_bins=n (then "
                             "call adapt(data)). Received neither.")
        self.num_bins = None if num_bins is None else _check_size(num_bins, "num_bins",
                                                                  "Discretization", 0)
        if not isinstance(epsilon, numbers.Real) or isinstance(epsilon, bool) or \
                not 0 < epsilon <= 1:
            raise ValueError(f"Discretization: epsilon must be a number in (0, 1]. Received: "
                             f"epsilon={epsilon!r}")
        self.epsilon = float(epsilon)
        self.bin_boundaries = (None if bin_boundaries is None
                               else _as_boundaries(bin_boundaries))

    def get_config(self):
        # Keras's Discretization writes its settings, then the name and a dtype name (its
        # constructor takes no `trainable`)
        return {"bin_boundaries": self.bin_boundaries, "num_bins": self.num_bins,
                "epsilon": self.epsilon, "output_mode": self.output_mode,
                "sparse": self.sparse, "name": self.name, "dtype": self.dtype_policy.name}

    @classmethod
    def from_config(cls, config):
        # An adapted layer saves both num_bins and its boundaries, as Keras does.
        config = dict(config)
        boundaries = config.pop("bin_boundaries", None)
        if boundaries is not None and config.get("num_bins") is not None:
            layer = cls(**config)
            layer.bin_boundaries = _as_boundaries(boundaries)
            return layer
        return cls(bin_boundaries=boundaries, **config)

    def _depth(self):
        if self.bin_boundaries is None:
            return self.num_bins
        return len(self.bin_boundaries) + 1

    def sample_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        return encoded_shape(input_shape, self.output_mode, self._depth())

    def compute_output_dtype(self, input_dtype):
        return "int32" if self.output_mode == "int" else "float32"

    def apply(self, params, state, x, **_):
        if self.bin_boundaries is None:
            raise ValueError("Discretization has no bin_boundaries yet: call adapt(data) "
                             "before using it, or create it with bin_boundaries=[...].")
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.float32)
        boundaries = jnp.asarray(self.bin_boundaries, x.dtype)
        ids = jnp.digitize(x, boundaries).astype(jnp.int32)
        if self.output_mode == "int":
            return ids, state
        return encode_categorical(ids, self.output_mode, self._depth()), state

    def adapt(self, data, steps=None) -> None:
        """Set bin_boundaries to the num_bins quantiles of `data` (an array, or an iterable of
        batches; `steps` limits how many batches are read)."""
        if self.num_bins is None:
            raise ValueError("Discretization: this layer was created with bin_boundaries; "
                             "create it with num_bins=n to adapt it.")
        summary = np.zeros((2, 0), np.float32)
        for i, batch in enumerate(_numeric_batches(data)):
            if steps is not None and i >= steps:
                break
            summary = _merge(summary, _summarize(batch, self.epsilon), self.epsilon)
        if summary.shape[1] == 0:
            raise ValueError("Discretization.adapt received no values.")
        self.bin_boundaries = _compress(summary, 1.0 / self.num_bins)[0, :-1].tolist()


def _as_boundaries(values):
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1 or not np.all(np.isfinite(array)) or \
            np.any(np.diff(array) < 0):
        raise ValueError("Discretization: bin_boundaries must be a sorted list of finite "
                         f"numbers. Received: bin_boundaries={values!r}")
    return [float(v) for v in values]


def _numeric_batches(data):
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") or \
            not hasattr(data, "__iter__"):
        yield np.asarray(data, np.float32)
        return
    for batch in data:
        if isinstance(batch, tuple):  # (x, y): the x
            batch = batch[0]
        yield np.asarray(batch, np.float32)


# The quantile summary Keras's Discretization keeps while adapting: a sorted (2, n) array of
# values and the weight (how many samples) each stands for. Reproduced step by step (float32
# where Keras is) so that the boundaries are the same as Keras's.
def _summarize(values, epsilon):
    values = np.sort(np.reshape(values, [-1]))
    step = max(values.size * epsilon, 1)
    picked = values[int(step - 1)::int(step)]
    return np.stack([picked, np.ones_like(picked) * step])


def _merge(previous, new, epsilon):
    merged = np.concatenate((previous, new), axis=1)
    merged = np.take(merged, np.argsort(merged[0]), axis=1)
    return _compress(merged, epsilon)


def _compress(summary, epsilon):
    if summary.shape[1] * epsilon < 1:
        return summary
    targets = epsilon + np.arange(0.0, 1.0, epsilon)
    cumulative = summary[1].cumsum()
    fractions = cumulative / cumulative[-1]
    values = np.interp(targets, fractions, summary[0])
    cumulative = np.interp(targets, fractions, cumulative)
    weights = cumulative - np.concatenate(([0.0], cumulative[:-1]))
    return np.stack((values, weights)).astype(np.float32)


# -- Hashing -----------------------------------------------------------------------------------
class Hashing(Layer):
    """Hashes values (strings or integers) into `num_bins` buckets, with Keras's exact bins.

    Keras (via TensorFlow) hashes each value's text, integers as decimal text, with FarmHash's
    Fingerprint64, or with SipHash-2-4 keyed by `salt` when one is given; kilnet computes the
    same two hashes (kilnet.layers._fingerprints), so the buckets equal Keras's.

    Args:
        num_bins: the number of buckets, including the mask bucket if mask_value is set.
        mask_value: values equal to it go to bucket 0, the others to [1, num_bins).
        salt: an integer or a pair of integers: use the keyed (strong) hash.
        output_mode: "int" (default: bucket ids, int32), "one_hot", "multi_hot" or "count".
        sparse: only False.

    Strings are hashed on the host (call the layer on the data). Integer inputs also work
    inside a compiled model: the hashing runs on the host through `jax.pure_callback`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.Hashing(num_bins=3)
        >>> np.asarray(layer(np.array([["A"], ["B"], ["C"]]))).tolist()
        [[1], [0], [1]]
        >>> np.asarray(layer(np.array([0, 1, 2, 3, 4]))).tolist()
        [1, 0, 1, 0, 2]
    """

    runs_on_strings = True   # a model runs it on the host (kilnet.models._host_stage)

    config_keys = ("num_bins", "salt", "mask_value", "output_mode", "sparse")
    accepts_id_dtype = True   # Keras's configs say "int64" (ID_DTYPES)

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False,
                 **kwargs):
        super().__init__(**without_id_dtype(output_mode, kwargs))
        if num_bins is None:
            raise ValueError("Hashing: num_bins must be a positive integer. Received: "
                             "num_bins=None")
        self.num_bins = _check_size(num_bins, "num_bins", "Hashing")
        if self.num_bins > 2**31 - 1:
            raise ValueError("Hashing: num_bins must fit int32 (kilnet's ids are int32). "
                             f"Received: num_bins={num_bins!r}")
        self.output_mode = check_output_mode("Hashing", output_mode, ("int",) + ENCODINGS)
        refuse_sparse("Hashing", sparse)
        self.sparse = False
        if mask_value is not None and not isinstance(mask_value, (str, bytes, numbers.Integral)):
            raise TypeError("Hashing: mask_value must be a string or an integer. Received: "
                            f"mask_value={mask_value!r}")
        self.mask_value = mask_value
        self.salt = as_salt(salt, "Hashing")

    def get_config(self):
        config = super().get_config()
        if self.output_mode == "int":   # Keras's default dtype policy for ids
            config["dtype"] = {"module": "keras", "class_name": "DTypePolicy",
                               "config": {"name": id_dtype_name(self)}, "registered_name": None}
        return config

    # -- the host computation ------------------------------------------------------------------
    def hash_values(self, values) -> np.ndarray:
        """The int32 bucket of every value of a NumPy array (strings or numbers), on the host.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> kilnet.layers.Hashing(3, mask_value="").hash_values(np.array(["A", ""])).tolist()
            [1, 0]
        """
        values = np.asarray(values)
        if values.dtype.kind == "f":  # Keras truncates floats to int64 before hashing
            values = values.astype(np.int64)
        bins, mask = self.num_bins, None
        if self.mask_value is not None and bins > 1:
            bins -= 1
            mask = _equal(values, self.mask_value)
        flat = [hash_bucket(_decoded(v), bins, self.salt) for v in values.reshape(-1).tolist()]
        out = np.asarray(flat, np.int64).reshape(values.shape)
        if mask is not None:
            out = np.where(mask, 0, out + 1)
        return out.astype(np.int32)

    def __call__(self, *args, **kwargs):
        if args and takes_strings((args, kwargs)) and _scope.current() is None:
            return record_host_call(self, args, kwargs)   # a model runs it on the host
        if args and not is_symbolic((args, kwargs)) and is_string_data(args[0]):
            if _scope.current() is not None:
                raise TypeError("Hashing got strings inside another layer's call; hash "
                                "strings on the data, before the model.")
            ids = self.hash_values(np.asarray(args[0]))
            if self.output_mode == "int":
                return ids
            return encode_categorical(ids, self.output_mode, self.num_bins, xp=np)
        return super().__call__(*args, **kwargs)

    def sample_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        return encoded_shape(input_shape, self.output_mode, self.num_bins)

    def compute_output_dtype(self, input_dtype):
        return "int32" if self.output_mode == "int" else "float32"

    def apply(self, params, state, x, **_):
        x = jnp.asarray(x)
        # The hash of a number is the hash of its decimal text: computed on the host.
        ids = jax.pure_callback(self.hash_values, jax.ShapeDtypeStruct(x.shape, jnp.int32), x,
                                vmap_method="sequential")
        if self.output_mode == "int":
            return ids, state
        return encode_categorical(ids, self.output_mode, self.num_bins), state


def _equal(values, target):
    if values.dtype.kind in "USO":
        target = _decoded(target)
        return np.vectorize(lambda v: _decoded(v) == target, otypes=[bool])(values) \
            if values.size else np.zeros(values.shape, bool)
    if isinstance(target, (str, bytes)):
        return np.zeros(values.shape, bool)
    return values == target


def _decoded(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def is_string_data(x) -> bool:
    """True for strings, bytes, and arrays or (nested) lists of them: host-only data."""
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, np.ndarray):
        return x.dtype.kind in "USO"
    if isinstance(x, (list, tuple)):
        return any(is_string_data(item) for item in x[:1])
    dtype = getattr(x, "dtype", None)  # pandas / other array-likes
    return dtype is not None and getattr(dtype, "kind", "") in "USO"


def as_salt(salt, layer_name):
    """Keras's salt: None, an integer (used for both key halves) or a pair of integers."""
    if salt is None:
        return None
    if isinstance(salt, numbers.Integral) and not isinstance(salt, bool):
        return [int(salt), int(salt)]
    if isinstance(salt, (list, tuple)) and len(salt) == 2 and all(
            isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in salt):
        return [int(s) for s in salt]
    raise ValueError(f"{layer_name}: salt must be an integer or a pair of integers. Received: "
                     f"salt={salt!r}")
