"""Mixed precision, with Keras's API: dtype policies and the global policy.

A policy names two dtypes: the *variable* dtype the weights are kept in, and the *compute*
dtype a layer computes in. Under "mixed_bfloat16" and "mixed_float16" the weights stay
float32 (so the optimizer's small updates are not lost to rounding) while the matmuls and
convolutions run in 16 bits. Every layer takes a policy (`dtype=`) and the global policy is the
default of layers made after it is set, as in Keras.

The cast itself happens in one place, `kilnet.layers.Layer.autocast_apply`: the floating
inputs and the layer's own floating weights are cast to its compute dtype before it runs
(Keras's autocast). The model's outputs reach the losses and metrics in float32
(kilnet.programs), as Keras's losses cast `y_pred` to float32. Loss scaling for float16 is in
kilnet.loss_scale.

kilnet keeps every weight in float32, so the pure low-precision policies ("float16",
"bfloat16": 16-bit weights) can be made and inspected but not given to a layer. The one
exception is Keras's int8 quantization: a `QuantizedDTypePolicy` ("int8_from_float32", what
`model.quantize("int8")` gives each layer it quantizes) keeps a layer's kernel in int8 with
float32 scales, computing in its source policy's dtype.

Example:
    >>> from kilnet import mixed_precision
    >>> policy = mixed_precision.DTypePolicy("mixed_bfloat16")
    >>> policy, policy.compute_dtype, policy.variable_dtype
    (<DTypePolicy "mixed_bfloat16">, 'bfloat16', 'float32')
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import quantizers
# Keras names its loss-scaling optimizer here too (keras.mixed_precision.LossScaleOptimizer).
from kilnet.loss_scale import LossScaleOptimizer  # noqa: F401

# name -> (compute dtype, variable dtype); Keras's names.
_POLICIES = {
    "float32": ("float32", "float32"),
    "mixed_float16": ("float16", "float32"),
    "mixed_bfloat16": ("bfloat16", "float32"),
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
}


class DTypePolicy:
    """A layer's dtype policy: the dtype of its weights and the dtype it computes in.

    Args:
        name: "float32", "mixed_bfloat16", "mixed_float16" (float32 weights, 16-bit compute),
            "float16" or "bfloat16"; None: the global policy's name.

    Example:
        >>> from kilnet import mixed_precision
        >>> mixed_precision.DTypePolicy("mixed_float16").compute_dtype
        'float16'
        >>> mixed_precision.DTypePolicy("mixed_float16") == mixed_precision.Policy(
        ...     "mixed_float16")
        True
    """

    def __init__(self, name=None):
        if name is None:
            name = global_policy().name
        if not isinstance(name, str):
            raise TypeError("A dtype policy's name must be a string such as 'mixed_bfloat16'. "
                            f"Received: name={name!r} (of type {type(name).__name__})")
        if name not in _POLICIES:
            raise ValueError(f"Unknown dtype policy {name!r}: kilnet knows {sorted(_POLICIES)}"
                             " (Keras's names; kilnet does not quantize or compute in "
                             f"float64). Use e.g. 'mixed_bfloat16'. Received: name={name!r}")
        self._name = name
        self._compute_dtype, self._variable_dtype = _POLICIES[name]

    @property
    def name(self) -> str:
        """The policy's name, e.g. "mixed_bfloat16"."""
        return self._name

    @property
    def compute_dtype(self) -> str:
        """The dtype a layer computes in (its floating inputs and weights are cast to it)."""
        return self._compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype a layer keeps its weights in."""
        return self._variable_dtype

    @property
    def quantization_mode(self):
        """The quantization mode of a QuantizedDTypePolicy ("int8"), None for the others
        (Keras's attribute)."""
        return None

    def get_config(self) -> dict:
        return {"name": self._name}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self._name

    def __hash__(self):
        return hash(("DTypePolicy", self._name))

    def __repr__(self):
        return f'<DTypePolicy "{self._name}">'


class QuantizedDTypePolicy(DTypePolicy):
    """The policy of a quantized layer (Keras's `keras.dtype_policies.QuantizedDTypePolicy`):
    named "<mode>_from_<source>" ("int8_from_float32"), computing and keeping its float
    weights (the bias, the scales) as the source policy does; its kernel is int8.
    `model.quantize("int8")` gives it to each layer it quantizes, and a layer made with it
    (`dtype="int8_from_float32"`, or read from a file) is built quantized.

    Args:
        mode: the quantization mode; kilnet implements "int8".
        source_name: the policy the layer had before ("float32", "mixed_bfloat16"); None:
            the global policy's name.

    Example:
        >>> from kilnet import mixed_precision
        >>> policy = mixed_precision.QuantizedDTypePolicy("int8", "mixed_bfloat16")
        >>> policy, policy.compute_dtype, policy.quantization_mode
        (<QuantizedDTypePolicy "int8_from_mixed_bfloat16">, 'bfloat16', 'int8')
    """

    def __init__(self, mode, source_name=None):
        if source_name is None:
            source_name = global_policy().name
        if not isinstance(source_name, str) or source_name not in _POLICIES:
            raise ValueError(f"QuantizedDTypePolicy: source_name must name a dtype policy, one "
                             f"of {sorted(_POLICIES)}. Received: source_name={source_name!r}")
        quantizers.check_mode(mode, "QuantizedDTypePolicy")
        self._compute_dtype, self._variable_dtype = _POLICIES[source_name]
        if mode == "int8" and self._compute_dtype == "float16":
            raise ValueError(f"Quantization mode='{mode}' doesn't work well with "
                             "compute_dtype='float16' (Keras's rule). Use 'mixed_bfloat16' or "
                             f"'float32' as the source policy. Received: source_name="
                             f"{source_name!r}")
        self._name = f"{mode}_from_{source_name}"
        self._mode, self._source_name = mode, source_name

    @property
    def quantization_mode(self):
        return self._mode

    @property
    def source_name(self) -> str:
        """The policy the layer computes under: its name without "<mode>_from_"."""
        return self._source_name

    def get_config(self) -> dict:
        return {"mode": self._mode, "source_name": self._source_name}

    def __eq__(self, other):
        return isinstance(other, QuantizedDTypePolicy) and other.name == self._name

    def __hash__(self):
        return hash(("QuantizedDTypePolicy", self._name))

    def __repr__(self):
        return f'<QuantizedDTypePolicy "{self._name}">'


class Int4DTypePolicy(QuantizedDTypePolicy):
    """The policy of an int4 layer with its block size (Keras's
    `keras.dtype_policies.Int4DTypePolicy`): named "int4/<block_size>_from_<source>", where
    block_size -1 means one scale per output channel and a positive one groups of that many
    kernel rows, each with its scale and zero point. `model.quantize("int4")` gives it to
    each layer it quantizes; a layer made with it is built int4 with that block size.

    Args:
        mode: "int4/<block_size>", e.g. "int4/128" or "int4/-1".
        source_name: the policy the layer had before; None: the global policy's name.

    Example:
        >>> from kilnet import mixed_precision
        >>> policy = mixed_precision.Int4DTypePolicy("int4/64", "float32")
        >>> policy, policy.quantization_mode, policy.block_size, policy.get_config()["mode"]
        (<Int4DTypePolicy "int4/64_from_float32">, 'int4', 64, 'int4/64')
    """

    def __init__(self, mode, source_name=None):
        base, _, size = str(mode).partition("/")
        try:
            block_size = int(size)
        except ValueError:
            block_size = 0
        if base != "int4" or block_size < -1 or block_size == 0:
            raise ValueError("Int4DTypePolicy: mode must be 'int4/<block_size>' with block_size "
                             "-1 (per channel) or a positive integer (groups of that many "
                             f"rows), e.g. 'int4/128'. Received: mode={mode!r}")
        super().__init__("int4", source_name)
        self.block_size = block_size
        self._name = f"int4/{block_size}_from_{self._source_name}"

    def get_config(self) -> dict:
        return {"mode": f"int4/{self.block_size}", "source_name": self._source_name}

    def __repr__(self):
        return f'<Int4DTypePolicy "{self._name}">'


Policy = DTypePolicy  # Keras's legacy name (keras.mixed_precision.Policy)
FloatDTypePolicy = DTypePolicy  # Keras's alias (keras.dtype_policies.FloatDTypePolicy)

_global = {"policy": DTypePolicy("float32")}


def set_global_policy(policy) -> None:
    """Set the policy of the layers made from now on (Keras's
    `keras.mixed_precision.set_global_policy`, alias `set_dtype_policy`).

    Args:
        policy: a policy name ("mixed_bfloat16", "mixed_float16", "float32") or a DTypePolicy.

    Under "mixed_float16", compile() wraps the optimizer in a LossScaleOptimizer, as Keras.

    Example:
        >>> from kilnet import layers, mixed_precision
        >>> mixed_precision.set_global_policy("mixed_bfloat16")
        >>> layers.Dense(4).compute_dtype
        'bfloat16'
        >>> mixed_precision.set_global_policy("float32")
    """
    if not isinstance(policy, (str, DTypePolicy)):
        raise ValueError("set_global_policy expects a policy name such as 'mixed_bfloat16' or "
                         f"a kilnet.mixed_precision.DTypePolicy. Received: policy={policy!r}")
    policy = policy if isinstance(policy, DTypePolicy) else DTypePolicy(policy)
    check_layer_policy(policy, "policy")
    _global["policy"] = policy


def global_policy() -> DTypePolicy:
    """The global policy (default "float32"): the policy of layers made without `dtype=`.

    Example:
        >>> from kilnet import mixed_precision
        >>> mixed_precision.global_policy()
        <DTypePolicy "float32">
    """
    return _global["policy"]


set_dtype_policy = set_global_policy  # Keras 3's names for the same functions
dtype_policy = global_policy


def get(identifier, argument: str = "dtype") -> DTypePolicy:
    """The policy a layer's `dtype=` names: None (the global policy), a name, a DTypePolicy,
    or Keras's serialized form ({"class_name": "DTypePolicy", "config": {"name": ...}}).

    Example:
        >>> from kilnet import mixed_precision
        >>> mixed_precision.get({"module": "keras", "class_name": "DTypePolicy",
        ...                      "config": {"name": "mixed_bfloat16"}, "registered_name": None})
        <DTypePolicy "mixed_bfloat16">
    """
    if identifier is None:
        return global_policy()
    if isinstance(identifier, DTypePolicy):
        policy = identifier
    elif isinstance(identifier, dict):
        policy = _from_entry(identifier, argument)
    elif isinstance(identifier, str) and "_from_" in identifier:
        policy = _quantized_named(identifier, argument)
    elif isinstance(identifier, str) or _is_dtype(identifier):
        name = identifier if isinstance(identifier, str) else str(np.dtype(identifier))
        try:
            policy = DTypePolicy(name)
        except ValueError:
            raise ValueError(f"{argument} must name a dtype policy, one of {sorted(_POLICIES)}. "
                             f"Received: {argument}={identifier!r}") from None
    else:
        raise TypeError(f"{argument} must be a policy name such as 'mixed_bfloat16' or a "
                        f"kilnet.mixed_precision.DTypePolicy. Received: {argument}={identifier!r}")
    return check_layer_policy(policy, argument)


def _from_entry(entry: dict, argument: str) -> DTypePolicy:
    """The policy of Keras's serialized form: a DTypePolicy's {"config": {"name"}}, a
    QuantizedDTypePolicy's {"config": {"mode", "source_name"}}."""
    name, config = entry.get("class_name"), entry.get("config")
    if name in ("QuantizedDTypePolicy", "Int4DTypePolicy") and isinstance(config, dict) \
            and set(config) == {"mode", "source_name"}:
        return _quantized_named(f"{config['mode']}_from_{config['source_name']}", argument)
    if name not in ("DTypePolicy", "FloatDTypePolicy") or not isinstance(config, dict):
        raise ValueError(f"{argument} must be a policy name or Keras's serialized "
                         "{'class_name': 'DTypePolicy', 'config': {'name': ...}} (or a "
                         "QuantizedDTypePolicy's {'mode': 'int8', 'source_name': ...}). "
                         f"Received: {argument}={entry!r:.200}")
    return DTypePolicy(config.get("name"))


def _quantized_named(name: str, argument: str) -> DTypePolicy:
    """Keras's "<mode>_from_<source>" name of a quantized policy ("int8_from_float32")."""
    mode, _, source = name.partition("_from_")
    if mode.startswith("int4/"):   # Keras's int4 policy with its block size
        return Int4DTypePolicy(mode, source)
    if mode not in quantizers.QUANTIZATION_MODES:
        raise ValueError(f"{argument} names no dtype policy: a quantized policy is "
                         f"'<mode>_from_<source>' with a mode in "
                         f"{quantizers.QUANTIZATION_MODES}, e.g. 'int8_from_float32'. "
                         f"Received: {argument}={name!r}")
    return QuantizedDTypePolicy(mode, source)


def check_layer_policy(policy: DTypePolicy, argument: str) -> DTypePolicy:
    """Refuse the policies whose weights are not float32: kilnet keeps weights in float32."""
    if policy.variable_dtype != "float32":
        raise ValueError(
            f"kilnet keeps every weight in float32, so a layer cannot take the policy "
            f"{policy.name!r} ({policy.variable_dtype} weights). Use "
            f"'mixed_{policy.compute_dtype}' ({policy.compute_dtype} compute, float32 "
            f"weights). Received: {argument}={policy.name!r}")
    return policy


def serialize(policy: DTypePolicy) -> dict:
    """Keras 3's serialized form of a policy, as a layer's config carries it.

    Example:
        >>> from kilnet import mixed_precision
        >>> mixed_precision.serialize(mixed_precision.DTypePolicy("mixed_float16"))["config"]
        {'name': 'mixed_float16'}
    """
    if isinstance(policy, QuantizedDTypePolicy):
        return {"module": "keras.dtype_policies", "class_name": type(policy).__name__,
                "config": policy.get_config(), "registered_name": None}
    return {"module": "keras", "class_name": "DTypePolicy", "config": policy.get_config(),
            "registered_name": None}


deserialize = get


def cast_floating(tree, dtype):
    """`tree` with its floating arrays cast to `dtype`; integers, booleans and anything that is
    not an array (Python flags, None) stay as they are (Embedding's ids stay integers). A `dtype`
    that is not floating casts nothing: a layer whose compute dtype names its tokens (Keras's
    IntegerLookup computes in "int64") keeps its inputs and outputs as they are.

    Example:
        >>> import numpy as np
        >>> from kilnet import mixed_precision
        >>> x, ids = mixed_precision.cast_floating((np.ones(2, np.float32), np.arange(2)),
        ...                                       "bfloat16")
        >>> str(x.dtype), str(ids.dtype)
        ('bfloat16', 'int64')
    """
    try:
        target = jnp.dtype(dtype)
    except TypeError:    # "string"
        return tree
    if not jnp.issubdtype(target, jnp.floating):
        return tree

    def cast(leaf):
        if (isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.floating)
                and leaf.dtype != target):
            return jnp.asarray(leaf, target) if isinstance(leaf, jax.Array) else \
                leaf.astype(target)
        return leaf

    return jax.tree.map(cast, tree)


def _is_dtype(value) -> bool:
    try:
        np.dtype(value)
    except TypeError:
        return False
    return value is not None and not isinstance(value, (dict, list, tuple))
