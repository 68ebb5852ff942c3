"""Keras's `keras.quantizers` arithmetic: symmetric abs-max quantization to int8.

A tensor is mapped to integers in `value_range` by one scale per slice: along `axis` the
largest magnitude m gives `scale = value_range[1] / (m + epsilon)`, and the values become
`clip(round(x * scale), *value_range)` (rounding half to even); `q / scale` gives them back.
The scale multiplies (Keras's convention), so a layer divides its integer product by it.

`model.quantize("int8")` (kilnet.models.Model.quantize) quantizes the weights once on the
host, in NumPy (`to_numpy=True`, Keras's way of sparing device memory), and the layers'
inputs at every call inside the program, each per slice as Keras's `AbsMaxQuantizer` does.
Both forms compute the same float32 operations in the same order as Keras's, so the integers
and the scales are Keras's to the bit.

Example:
    >>> import numpy as np
    >>> from kilnet import quantizers
    >>> q, scale = quantizers.abs_max_quantize(np.array([[0.5, -1.0, 0.25]], np.float32),
    ...                                        axis=-1, to_numpy=True)
    >>> q.tolist(), q.dtype.name, round(float(scale[0, 0]), 3)
    ([[63, -127, 32]], 'int8', 127.0)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# Keras's quantization modes (keras.dtype_policies.QUANTIZATION_MODES); kilnet implements int8.
QUANTIZATION_MODES = ("int8", "float8", "int4", "gptq", "awq")
SUPPORTED_MODES = ("int8",)
# Keras's AbsMaxQuantizer defaults: the int8 range it uses (symmetric, -128 unused) and its
# epsilon, which Keras fixes when its module is imported (backend.epsilon()'s default).
INT8_RANGE = (-127, 127)
EPSILON = 1e-7

__all__ = ["QUANTIZATION_MODES", "abs_max_quantize"]


def check_mode(mode, what: str) -> None:
    """Keras's check of a quantization mode, then kilnet's: only "int8" is implemented.
    `what` names the call in the messages.

    Example:
        >>> check_mode("int8", "model.quantize")
        >>> check_mode("int3", "model.quantize")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Invalid quantization mode. Expected one of (...). Received: mode=int3
    """
    if mode not in QUANTIZATION_MODES:
        raise ValueError(f"Invalid quantization mode. Expected one of {QUANTIZATION_MODES}. "
                         f"Received: mode={mode}")   # Keras's words
    if mode not in SUPPORTED_MODES:
        raise NotImplementedError(
            f"{what}(mode={mode!r}): kilnet implements the quantization modes "
            f"{SUPPORTED_MODES} (Keras's int8: int8 weights with a float scale per output "
            "channel, inputs quantized at each call); Keras's int4, float8, GPTQ and AWQ modes "
            "are not implemented. Use mode='int8'.")


def int8_config() -> dict:
    """Keras's entry of its default `Int8QuantizationConfig`, which an int8 layer's config
    holds under "quantization_config" (the configuration kilnet's int8 layers compute with:
    inputs quantized by Keras's `AbsMaxQuantizer` with its range and epsilon, weights per
    output channel).

    Example:
        >>> from kilnet import quantizers
        >>> entry = quantizers.int8_config()
        >>> entry["class_name"], entry["config"]["activation_quantizer"]["class_name"]
        ('Int8QuantizationConfig', 'AbsMaxQuantizer')
    """
    inputs = {"value_range": INT8_RANGE, "epsilon": EPSILON, "output_dtype": "int8"}
    return {"module": "keras.quantizers", "class_name": "Int8QuantizationConfig",
            "config": {"weight_quantizer": None, "activation_quantizer": {
                "module": "keras.quantizers", "class_name": "AbsMaxQuantizer",
                "config": inputs, "registered_name": None}},
            "registered_name": None}


def is_int8_config(value) -> bool:
    """Whether `value` is Keras's default int8 configuration (`int8_config()`, as a file's
    JSON or Keras's Python objects' entries write it; the inputs quantizer's axis may be
    given): the one configuration kilnet's int8 layers compute with.

    Example:
        >>> from kilnet import quantizers
        >>> quantizers.is_int8_config(quantizers.int8_config()), quantizers.is_int8_config({})
        (True, False)
    """
    config = value.get("config") if isinstance(value, dict) else None
    inputs = config.get("activation_quantizer") if isinstance(config, dict) else None
    settings = inputs.get("config") if isinstance(inputs, dict) else None
    if not (isinstance(settings, dict) and value.get("class_name") == "Int8QuantizationConfig"
            and inputs.get("class_name") == "AbsMaxQuantizer"):
        return False
    settings = {key: list(item) if isinstance(item, tuple) else item
                for key, item in settings.items() if key != "axis"}
    return settings == {"value_range": list(INT8_RANGE), "epsilon": EPSILON,
                        "output_dtype": "int8"}


def abs_max_quantize(inputs, axis, value_range=INT8_RANGE, dtype="int8", epsilon=EPSILON,
                     to_numpy=False):
    """Quantize `inputs` by the absolute maximum along `axis` (Keras's
    `keras.quantizers.abs_max_quantize`): returns (quantized array of `dtype`, scale), the
    scale keeping `axis` as length 1 so that `quantized / scale` approximates `inputs`.

    Args:
        inputs: a floating array.
        axis: the axis or axes each scale spans (one scale per slice along the others).
        value_range: (low, high) of the quantized values; the scale maps the largest
            magnitude to `high`.
        dtype: the quantized values' dtype.
        epsilon: added to the largest magnitude, so an all-zero slice gets a finite scale.
        to_numpy: compute on the host with NumPy (for weights; returns NumPy arrays), else
            with jax.numpy (traceable: for a layer's inputs).

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet import quantizers
        >>> q, scale = quantizers.abs_max_quantize(jnp.array([[2.0, -4.0], [1.0, 0.5]]), axis=0)
        >>> q.tolist(), [round(float(s), 2) for s in scale[0]]
        ([[127, -127], [64, 16]], [63.5, 31.75])
    """
    _check_range(value_range, dtype)
    low, high = value_range
    if to_numpy:
        values = np.asarray(inputs)
        largest = np.max(np.abs(values), axis=_numpy_axis(axis), keepdims=True)
        scale = np.divide(high, np.add(largest, epsilon)).astype(values.dtype)
        quantized = np.clip(np.round(np.multiply(values, scale)), low, high).astype(dtype)
        return quantized, scale
    values = jnp.asarray(inputs)
    # Keras adds a float32 epsilon to the maximum and divides in float32 before casting the
    # scale to the inputs' dtype (bfloat16 inputs get a bfloat16 scale)
    largest = jnp.max(jnp.abs(values), axis=axis, keepdims=True)
    scale = jnp.divide(jnp.float32(high), largest + jnp.float32(epsilon)).astype(values.dtype)
    quantized = jnp.clip(jnp.round(values * scale), low, high).astype(dtype)
    return quantized, scale


def _numpy_axis(axis):
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _check_range(value_range, dtype):
    try:
        low, high = value_range
        info = np.iinfo(np.dtype(dtype))
        fits = info.min <= low < high <= info.max
    except (TypeError, ValueError):
        fits = False
    if not fits:
        raise ValueError(f"abs_max_quantize: value_range must be (low, high) within the range of "
                         f"dtype {dtype!r}, an integer dtype. Received: value_range="
                         f"{value_range!r}, dtype={dtype!r}")
