"""Keras's `keras.quantizers`: the quantization arithmetic (kilnet.quantization_ops), the
quantizer and configuration classes (kilnet.quantization_config), and the checks kilnet's
`quantize` makes of a mode.

`model.quantize("int8")` (kilnet.models.Model.quantize) quantizes the weights once on the
host, in NumPy (`to_numpy=True`, Keras's way of sparing device memory), and the layers'
inputs at every call inside the program, each per slice as Keras's `AbsMaxQuantizer` does;
`model.quantize(config=Int8QuantizationConfig(...))` takes the weights' and the inputs'
quantizers from the configuration.

Example:
    >>> import kilnet
    >>> from kilnet import quantizers
    >>> model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(2)])
    >>> model.quantize(config=quantizers.Int8QuantizationConfig(
    ...     weight_quantizer=quantizers.AbsMaxQuantizer(value_range=(-100, 100), axis=0)))
    >>> int(abs(model.layers[0].kernel.numpy()).max()), str(model.layers[0].kernel.dtype)
    (100, 'int8')
"""

from kilnet.quantization_config import (AbsMaxQuantizer, AWQConfig, Float8QuantizationConfig,
                                        GPTQConfig, Int4QuantizationConfig,
                                        Int8QuantizationConfig, QuantizationConfig, Quantizer,
                                        deserialize, get, serialize)
from kilnet.quantization_ops import (EPSILON, INT8_RANGE, abs_max_quantize,
                                     abs_max_quantize_grouped_with_zero_point,
                                     compute_float8_amax_history, compute_float8_scale,
                                     fake_quant_with_min_max_vars, pack_int4,
                                     quantize_and_dequantize, unpack_int4)

__all__ = ["AWQConfig", "AbsMaxQuantizer", "Float8QuantizationConfig", "GPTQConfig",
           "Int4QuantizationConfig", "Int8QuantizationConfig", "QUANTIZATION_MODES",
           "QuantizationConfig", "Quantizer", "abs_max_quantize",
           "abs_max_quantize_grouped_with_zero_point", "compute_float8_amax_history",
           "compute_float8_scale", "deserialize", "fake_quant_with_min_max_vars", "get",
           "pack_int4", "quantize_and_dequantize", "serialize", "unpack_int4"]

# Keras's quantization modes (keras.dtype_policies.QUANTIZATION_MODES); kilnet implements
# int8 and int4.
QUANTIZATION_MODES = ("int8", "float8", "int4", "gptq", "awq")
SUPPORTED_MODES = ("int8", "int4")


def check_mode(mode, what: str) -> None:
    """Keras's check of a quantization mode, then kilnet's: "int8" and "int4" are
    implemented.
    `what` names the call in the messages.

    Example:
        >>> check_mode("int8", "model.quantize")
        >>> check_mode("float8", "model.quantize")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        NotImplementedError: model.quantize(mode='float8'): kilnet implements the quantization modes ('int8', 'int4') ...
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
            "channel, inputs quantized at each call; Keras's int4: packed int4 weights, per "
            "channel or in groups of block_size rows); Keras's float8, GPTQ and AWQ modes are "
            "not implemented. Use mode='int8' or mode='int4'.")


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


