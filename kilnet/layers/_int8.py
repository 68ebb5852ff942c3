"""Keras's int8 layers: the quantized kernel product and what a layer needs to be quantized.

`model.quantize("int8")` (Keras's post-training quantization) replaces the float kernel of
each Dense, EinsumDense and attention projection by an int8 kernel and a float32
`kernel_scale`, one scale per output channel (abs-max over the axes the product sums,
kilnet.quantizers), and an Embedding's table by int8 rows with one scale per row. At every
call the layer's inputs are quantized too, per slice over the summed axes, the product runs
on the integers (exact, in int32) and is divided by the product of the two scales: Keras's
arithmetic, op for op, so the outputs are Keras's.

Why a module of its own: the same product serves Dense (x's last axis), the attention
projections (x's last axes), EinsumDense (any of its equations) and ReversibleEmbedding's
reverse call. A `Contraction` names every axis of the einsum; the scales travel in the
output's layout (Keras's `kernel_scale` of an EinsumDense has the output's rank, with 1 on
the axes the kernel lacks; a Dense's is just (units,), which broadcasts the same way).

Training through a quantized layer: the int8 kernel and its scale are non-trainable (as in
Keras); the gradient reaching the layer's inputs is that of the dequantized kernel
(`kernel / kernel_scale`), the straight-through rule of Keras's custom gradient, so the
layers before it and its own bias still train after `compile()` again.
"""

from __future__ import annotations

import dataclasses
import re
import string

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import mixed_precision, quantization_config, quantizers
from kilnet._custom_gradients import custom_vjp
from kilnet.layers._base import Layer


@dataclasses.dataclass(frozen=True)
class Contraction:
    """An einsum of the inputs and a kernel with every axis named: `inputs`, `kernel` and
    `outputs` are their letters. The axes of the inputs (of the kernel) that the outputs
    lack are summed, and each scale spans them.

    Example:
        >>> c = Contraction("abc", "cde", "abde")   # MultiHeadAttention's query projection
        >>> c.input_axes, c.kernel_axes, c.scale_shape((8, 2, 4))
        ((2,), (0,), (1, 1, 2, 4))
    """
    inputs: str
    kernel: str
    outputs: str

    @property
    def equation(self) -> str:
        return f"{self.inputs},{self.kernel}->{self.outputs}"

    @property
    def input_axes(self) -> tuple:
        return tuple(i for i, c in enumerate(self.inputs) if c not in self.outputs)

    @property
    def kernel_axes(self) -> tuple:
        return tuple(i for i, c in enumerate(self.kernel) if c not in self.outputs)

    def scale_shape(self, kernel_shape) -> tuple:
        """The shape of the kernel's scale in the outputs' layout (Keras's EinsumDense
        `kernel_scale`): the kernel's size on its output axes, 1 elsewhere."""
        size = dict(zip(self.kernel, kernel_shape))
        return tuple(size.get(c, 1) if c in self.kernel else 1 for c in self.outputs)

    def in_output_layout(self, scale, operand: str, xp=jnp):
        """A scale of `operand` ("inputs" or "kernel"; its summed axes kept as length 1)
        laid out as the outputs, to divide them by."""
        letters = getattr(self, operand)
        summed = tuple(i for i, c in enumerate(letters) if c not in self.outputs)
        kept = "".join(c for c in letters if c in self.outputs)
        ordered = "".join(c for c in self.outputs if c in kept)
        values = xp.transpose(xp.squeeze(scale, axis=summed), [kept.index(c) for c in ordered])
        return xp.reshape(values, [values.shape[ordered.index(c)] if c in ordered else 1
                                   for c in self.outputs])

    def in_kernel_layout(self, scale, xp=jnp):
        """The kernel's scale, given in the outputs' layout (or a shape that broadcasts to
        it, a Dense's (units,)), laid out as the kernel, to dequantize it."""
        scale = xp.reshape(scale, (1,) * (len(self.outputs) - scale.ndim) + tuple(scale.shape))
        own = "".join(c for c in self.outputs if c in self.kernel)
        others = tuple(i for i, c in enumerate(self.outputs) if c not in self.kernel)
        values = xp.squeeze(scale, axis=others)
        ordered = "".join(c for c in self.kernel if c in own)
        values = xp.transpose(values, [own.index(c) for c in ordered])
        return xp.reshape(values, [values.shape[ordered.index(c)] if c in ordered else 1
                                   for c in self.kernel])


def last_axes(input_ndim: int, kernel_ndim: int, summed: int = 1) -> Contraction:
    """The product of the inputs' last `summed` axes with the kernel's first ones (Dense:
    1 of a 2-axis kernel; MultiHeadAttention's projections: 1 or 2).

    Example:
        >>> last_axes(3, 2).equation
        'abc,cd->abd'
    """
    letters = string.ascii_letters
    leading = letters[:input_ndim - summed]
    shared = letters[input_ndim - summed:input_ndim]
    rest = letters[input_ndim:input_ndim + kernel_ndim - summed]
    return Contraction(leading + shared, shared + rest, leading + rest)


def einsum_contraction(equation: str, input_ndim: int) -> Contraction:
    """EinsumDense's equation ("ab,bc->ac", "...b,bc->...c", "ab...,bc->ac...") with its
    elided axes named for inputs of `input_ndim` axes, as Keras names them for quantizing.

    Example:
        >>> einsum_contraction("...b,bc->...c", 3).equation
        'ABb,bc->ABc'
    """
    inputs, kernel, outputs = equation.replace(" ", "").replace("->", ",").split(",")
    elided = input_ndim - len(inputs.replace("...", ""))
    free = "".join(c for c in string.ascii_uppercase + string.ascii_lowercase
                   if c not in inputs + kernel + outputs)[:max(elided, 0)]
    return Contraction(inputs.replace("...", free), kernel, outputs.replace("...", free))


# The inputs' quantizer of Keras's default int8 configuration (one object: it is a static
# argument of the compiled product)
DEFAULT_INPUTS_QUANTIZER = quantization_config.AbsMaxQuantizer()


def quantize_kernel(contraction: Contraction, kernel, weight_quantizer=None) -> tuple:
    """(int8 kernel, float32 scale in the outputs' layout) of a float kernel, on the host
    with NumPy, as Keras's `quantize` computes them: abs-max over the summed axes, or by
    the configuration's `weight_quantizer` (called as Keras calls it, with its own axis)."""
    kernel = np.asarray(kernel, np.float32)
    if weight_quantizer is None:
        quantized, scale = quantizers.abs_max_quantize(kernel, axis=contraction.kernel_axes,
                                                       to_numpy=True)
    else:
        check_weight_axis(weight_quantizer, contraction, kernel.ndim)
        quantized, scale = weight_quantizer(kernel, to_numpy=True)
        quantized, scale = np.asarray(quantized), np.asarray(scale, np.float32)
    return quantized, contraction.in_output_layout(scale, "kernel", xp=np)


def check_weight_axis(weight_quantizer, contraction: Contraction, ndim: int) -> None:
    """A weight quantizer's axis must be the axes the kernel's product sums (one scale per
    output channel: what kilnet's int8 product divides by)."""
    axis = getattr(weight_quantizer, "axis", contraction.kernel_axes)
    axis = (-1,) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    if tuple(sorted(a % ndim for a in axis)) != contraction.kernel_axes:
        raise ValueError(f"The weight quantizer's axis must be the kernel's summed axes "
                         f"{contraction.kernel_axes} (one scale per output channel): pass "
                         f"AbsMaxQuantizer(axis={contraction.kernel_axes}), or no "
                         f"weight_quantizer. Received: axis={weight_quantizer.axis}")


def product(contraction: Contraction, inputs, kernel, kernel_scale,
            inputs_quantizer=DEFAULT_INPUTS_QUANTIZER):
    """The quantized layer's product: the inputs quantized per slice by `inputs_quantizer`
    over the summed axes (None: the float inputs), multiplied with the int8 kernel (in int32
    when both are integers), divided by the scales (as Keras's `_int8_call`).
    Differentiated as written, as Keras's ReversibleEmbedding's reverse call is: the
    rounding passes no gradient.

    Example:
        >>> import numpy as np
        >>> c = last_axes(2, 2)
        >>> kernel, scale = quantize_kernel(c, np.array([[1.0, -2.0], [0.5, 4.0]], np.float32))
        >>> x = np.array([[2.0, 1.0]], np.float32)   # x @ kernel is [[2.5, 0.0]]
        >>> kernel.tolist(), np.asarray(product(c, x, kernel, scale)).round(2).tolist()
        ([[127, -64], [63, 127]], [[2.5, 0.0]])
    """
    scale = kernel_scale.astype(inputs.dtype)
    if inputs_quantizer is None:   # weights only: the float inputs times the int8 kernel
        return jnp.einsum(contraction.equation, inputs, kernel).astype(inputs.dtype) / scale
    # Keras's Dense passes axis=-1: a quantizer of yours may expect that form
    axis = -1 if contraction.input_axes == (inputs.ndim - 1,) else contraction.input_axes
    quantized, inputs_scale = inputs_quantizer(inputs, axis=axis)
    exact = jnp.einsum(contraction.equation, quantized, kernel,
                       preferred_element_type=jnp.result_type(quantized.dtype, jnp.int32))
    scale = contraction.in_output_layout(inputs_scale, "inputs") * scale
    return exact.astype(inputs.dtype) / scale


@custom_vjp(nondiff_argnums=(0, 1))
def straight_through_product(contraction: Contraction, inputs_quantizer, inputs, kernel,
                             kernel_scale):
    """`product`, whose gradient with respect to the inputs is that of the dequantized
    kernel (Keras's custom gradient of its int8 Dense and EinsumDense)."""
    return product(contraction, inputs, kernel, kernel_scale, inputs_quantizer)


def _product_forward(contraction, inputs_quantizer, inputs, kernel, kernel_scale):
    return (product(contraction, inputs, kernel, kernel_scale, inputs_quantizer),
            (kernel, kernel_scale))


def _product_backward(contraction, inputs_quantizer, residuals, upstream):
    # the outputs have the inputs' dtype, so the upstream gradient has it too
    kernel, kernel_scale = residuals
    dequantized = kernel.astype(upstream.dtype) / contraction.in_kernel_layout(
        kernel_scale.astype(upstream.dtype))
    gradient = jnp.einsum(f"{contraction.outputs},{contraction.kernel}->{contraction.inputs}",
                          upstream, dequantized)
    return (gradient, np.zeros(kernel.shape, jax.dtypes.float0), jnp.zeros_like(kernel_scale))


straight_through_product.defvjp(_product_forward, _product_backward)


def quantize_rows(table) -> tuple:
    """(int8 table, float32 scale per row) of an embedding table (Keras's Embedding
    quantizes each row by its own abs-max)."""
    quantized, scale = quantizers.abs_max_quantize(np.asarray(table, np.float32), axis=-1,
                                                   to_numpy=True)
    return quantized, scale[:, 0]


def looked_up_rows(table, scale, ids, dtype):
    """The rows of an int8 table for `ids`, dequantized in `dtype` (Keras's int8
    Embedding); an id without a row gives NaN, as the float table's lookup does."""
    rows = jnp.take(table, jnp.clip(ids, 0, table.shape[0] - 1), axis=0)
    row_scale = jnp.take(scale.astype(dtype), ids, axis=0, mode="fill", fill_value=jnp.nan)
    return rows.astype(dtype) / row_scale[..., None]


# -- quantizing a layer ---------------------------------------------------------------------
def check_mode(mode, config=None, what: str = "quantize") -> str:
    """Keras's checks of `quantize(mode, config)`'s arguments, then kilnet's (only the int8
    mode is implemented); returns the mode (the config's, when only a config is given)."""
    if isinstance(config, str):   # Keras's older form: the mode as the config
        mode, config = config, None
    if mode is None and config is None:
        raise ValueError(f"You must provide either `mode` or `config` to `quantize`: "
                         f"{what}('int8').")
    if config is not None:
        if not isinstance(config, quantization_config.QuantizationConfig):
            raise ValueError(f"{what}: argument `config` must be an instance of "
                             "`QuantizationConfig`, e.g. kilnet.quantizers."
                             f"Int8QuantizationConfig(). Received: config={config!r} (of type "
                             f"{type(config)})")
        if mode is not None and config.mode != mode:
            raise ValueError(f"Contradictory arguments: mode='{mode}' but "
                             f"config.mode='{config.mode}'")
        mode = config.mode
    quantizers.check_mode(mode, what)
    return mode


def custom_config(config):
    """The int8 configuration a layer keeps: None for Keras's default one (weights per
    output channel by abs-max, inputs by `AbsMaxQuantizer()`), else `config`."""
    if config is None or isinstance(config, str):
        return None
    default = config.weight_quantizer is None and quantizers.is_int8_config(
        quantizers.serialize(config))
    return None if default else config


def check_quantizable(layer, mode) -> None:
    """Keras's refusals of a layer's `quantize`: not built, already quantized, float16."""
    if not layer.built:
        raise ValueError(f"Cannot quantize a layer that isn't yet built. Layer {layer.name!r} "
                         f"(of type {type(layer).__name__!r}) is not built yet. Build it "
                         "first: call it on data, or model.build(input_shape).")
    if layer.quantization_mode is not None:
        raise ValueError(f"Layer {layer.name!r} is already quantized with dtype_policy="
                         f"{layer.dtype_policy.name!r}. Received: mode={mode}")
    if mode == "int8" and layer.compute_dtype == "float16":
        raise ValueError(f"Quantization mode='{mode}' doesn't work well with "
                         "compute_dtype='float16'. Consider loading model/layer with another "
                         "dtype policy such as 'mixed_bfloat16' or 'float32' before calling "
                         "`quantize()`.")


def check_filters(filters) -> None:
    """Keras's check of `model.quantize(filters=...)`."""
    if filters is not None and not isinstance(filters, (str, list, tuple)) \
            and not callable(filters):
        raise ValueError("The `filters` argument must be a regex string, a list of regex "
                         f"strings, or a callable. Received: {type(filters)}")


def selected(layer, filters) -> bool:
    """Whether `filters` (Keras's: a regex searched in the layer's name, a list of them, a
    function of the layer) picks `layer`; None picks every layer."""
    if filters is None:
        return True
    if isinstance(filters, str):
        return re.search(filters, layer.name) is not None
    if isinstance(filters, (list, tuple)):
        return any(re.search(pattern, layer.name) for pattern in filters)
    return bool(filters(layer))


def quantizes(layer, type_check: bool) -> bool:
    """Whether `layer.quantize` would quantize it: its class implements quantize itself
    (kilnet's quantizable layers, or a class of yours), or inherits one while `type_check`
    is off (Keras quantizes a subclass of Dense only with type_check=False)."""
    cls = type(layer)
    defining = next(base for base in cls.__mro__ if "quantize" in base.__dict__)
    if defining is Layer:
        return False
    return defining is cls or not type_check


def quantize_layer(layer, own_class, mode, type_check, config) -> None:
    """Keras's `quantize` of one layer whose class implements it (`own_class`; a subclass
    of yours is refused when `type_check`, as Keras does): its weights become the quantized
    ones `layer.quantized_weights(mode)` computes from the float ones, and its dtype policy
    "<mode>_from_<its policy>" ("int4/<block_size>_from_<its policy>" for int4)."""
    mode = check_mode(mode, config, what=f"{type(layer).__name__}.quantize")
    check_quantizable(layer, mode)
    if type_check and type(layer) is not own_class:
        raise NotImplementedError(f"Layer {type(layer).__name__} does not have a `quantize` "
                                  "method implemented.")
    if mode not in layer.quantization_modes:
        raise NotImplementedError(
            f"{type(layer).__name__}.quantize(mode={mode!r}): kilnet quantizes "
            f"{type(layer).__name__} layers with the modes {layer.quantization_modes}; "
            f"{layer.name!r} keeps its float weights. Use one of those modes for it.")
    if mode == "int4":   # Keras's default int4 configuration: groups of 128 rows
        layer.int4_config = config if config is not None else \
            quantization_config.Int4QuantizationConfig()
    else:
        config = custom_config(config)
        if config is not None and not layer.takes_int8_quantizers:
            raise NotImplementedError(
                f"{type(layer).__name__}.quantize(config=...): kilnet takes custom int8 "
                "quantizers for Dense, EinsumDense and the attention projections only; "
                f"quantize {layer.name!r} with mode='int8' (Keras's default configuration).")
        layer.int8_custom_config = config
    params, state = layer.quantized_weights(mode)
    layer.replace_own_weights(params, state)
    layer.dtype_policy = quantized_policy(layer, mode)


def quantized_policy(layer, mode):
    """The dtype policy Keras gives a layer it quantizes: "int8_from_<its policy>", or
    "int4/<block_size>_from_<its policy>" (-1: per channel)."""
    source = layer.dtype_policy.name
    if mode != "int4":
        return mixed_precision.QuantizedDTypePolicy(mode, source)
    block_size = layer.int4_config.block_size
    block_size = -1 if block_size is None else block_size
    return mixed_precision.Int4DTypePolicy(f"int4/{block_size}", source)


class Int8Configured:
    """Keras's `quantization_config` of a layer that can be quantized (Dense, EinsumDense,
    Embedding): written in its config, as Keras 3.15 writes it, None until the layer is
    int8, then Keras's default int8 configuration (kilnet.quantizers.int8_config)."""

    int8_custom_config = None   # an Int8QuantizationConfig given to quantize, else None
    quantization_modes = ("int8",)   # the modes the layer's quantize implements
    takes_int8_quantizers = False   # whether quantize takes an Int8QuantizationConfig's

    def quantized_weights(self, mode) -> tuple:
        """(params, state) of the quantized form in `mode`, from the layer's float weights."""
        return self.int8_weights()

    @property
    def quantization_config(self):
        if self.quantization_mode != "int8":
            return None
        custom = self.int8_custom_config
        return quantizers.int8_config() if custom is None else quantizers.serialize(custom)


def check_quantization_config(value, layer_class: str):
    """An embedding's `quantization_config=` argument: None or Keras's default int8
    configuration (a config read back from a file of an int8 layer), or an
    `Int4QuantizationConfig` (or its entry), which is returned; others are refused."""
    if isinstance(value, dict) and value.get("class_name") == "Int4QuantizationConfig":
        value = quantizers.deserialize(value)
    if isinstance(value, quantization_config.Int4QuantizationConfig):
        return value
    if value is not None and not quantizers.is_int8_config(value):
        raise ValueError(f"{layer_class}(quantization_config=...): kilnet quantizes with "
                         "Keras's default int8 configuration (model.quantize('int8'), or "
                         "dtype='int8_from_float32') or an Int4QuantizationConfig; pass None. "
                         f"Received: quantization_config={value!r:.200}")
    return None


def config_argument(value, layer_class: str):
    """A kernel layer's `quantization_config=` argument (an `Int8QuantizationConfig` or
    `Int4QuantizationConfig`, or its entry as a file of a quantized layer holds it; None):
    the configuration the layer computes with once quantized (None for Keras's default int8
    one)."""
    if isinstance(value, dict) and not quantizers.is_int8_config(value):
        try:
            value = quantizers.deserialize(value)
        except ValueError as error:
            raise ValueError(f"{layer_class}(quantization_config=...): {error}") from None
    if isinstance(value, dict) or value is None:
        return None
    if isinstance(value, quantization_config.Int4QuantizationConfig):
        return value   # the configuration of an int4 layer: its block size
    if not isinstance(value, quantization_config.Int8QuantizationConfig):
        raise ValueError(f"{layer_class}(quantization_config=...): kilnet quantizes with an "
                         "Int8QuantizationConfig (or None). Received: "
                         f"quantization_config={value!r:.200}")
    return custom_config(value)
