"""EinsumDense: a dense layer whose product is any einsum of the input and a kernel, as Keras's
(the projections of Keras's MultiHeadAttention and of many Transformer layers).

The equation has one of Keras's three forms: "ab,bc->ac" (every input axis named),
"...b,bc->...c" (leading axes elided) or "ab...,bc->ac..." (trailing axes elided).
`output_shape` gives the output's axes after the batch (elided axes excluded), so the kernel's
shape follows: each kernel axis takes its size from the output axis or input axis of the same
letter. A Glorot / He / LeCun kernel initializer counts its fans over those axes (Keras sets
its input_axes and output_axes the same way).
"""

from __future__ import annotations

import re

import jax.numpy as jnp

from kilnet import constraints, initializers, regularizers
from kilnet.layers import _int8
from kilnet.layers._quantized_kernel import QuantizableKernel
from kilnet.layers._base import KernelLayer

_FORMS = (("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)$", None),
          (r"\.\.\.([a-zA-Z]+),([a-zA-Z]+)->\.\.\.([a-zA-Z]+)$", "left"),
          (r"([a-zA-Z]{2,})\.\.\.,([a-zA-Z]+)->([a-zA-Z]+)\.\.\.$", "right"))


def fans_over(kernel_init, input_axes, output_axes):
    """`kernel_init` counting its fans over the kernel's `input_axes` and `output_axes`, as
    Keras's EinsumDense sets them (a Glorot / He / LeCun initializer of a (256, 4, 64) kernel
    has fans 256 and 4 * 64, not Keras's convolution rule); other initializers as they are."""
    if isinstance(kernel_init, initializers.VarianceScaling) and (
            kernel_init.input_axes is None or kernel_init.output_axes is None):
        return type(kernel_init).from_config({**kernel_init.get_config(),
                                              "input_axes": list(input_axes),
                                              "output_axes": list(output_axes)})
    return kernel_init


class EinsumDense(QuantizableKernel, KernelLayer):
    """`activation(einsum(equation, inputs, kernel) + bias)`, as Keras's EinsumDense.

    Args:
        equation: "ab,bc->ac", "...b,bc->...c" or "ab...,bc->ac..." (see the module).
        output_shape: the output's shape after the batch axis, elided axes excluded (None for
            an axis that keeps the input's length); an int for one axis.
        activation: as Dense's.
        bias_axes: the output letters the bias spans (e.g. "c"), or None for no bias.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, bias_constraint: as Dense's.
        lora_rank, lora_alpha, gptq_unpacked_column_size: only None (kilnet has no LoRA).
        quantization_config: None, or the configuration a quantized layer's config holds
            (Int8QuantizationConfig, Int4QuantizationConfig): the layer computes with it.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4),
        ...                                   bias_axes="de")
        >>> layer(np.ones((3, 5, 8))).shape, [w.shape for w in layer.weights]
        ((3, 5, 2, 4), [(8, 2, 4), (2, 4)])
    """
    saves_declared_weights_only = True   # as Keras's save_own_variables does

    config_keys = ("output_shape", "equation", "activation", "bias_axes", "kernel_initializer",
                   "bias_initializer", "kernel_regularizer", "bias_regularizer",
                   "activity_regularizer", "kernel_constraint", "bias_constraint",
                   "quantization_config")

    def __init__(self, equation, output_shape, activation=None, bias_axes=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, lora_rank=None, lora_alpha=None,
                 gptq_unpacked_column_size=None, quantization_config=None,
                 activity_regularizer=None, **kwargs):
        super().__init__(activation=activation, **kwargs)
        self.take_quantization_config(quantization_config, "EinsumDense")
        for name, value in (("lora_rank", lora_rank), ("lora_alpha", lora_alpha),
                            ("gptq_unpacked_column_size", gptq_unpacked_column_size)):
            if value is not None:
                raise ValueError(f"EinsumDense({name}=...) is not supported: kilnet has no LoRA "
                                 "and quantizes with Keras's default int8 configuration only "
                                 f"(model.quantize('int8')). Received: {name}={value!r}")
        self.equation = equation
        self._specs, self._elided = _parse(equation)
        self.output_shape = ((output_shape,) if isinstance(output_shape, int)
                             else tuple(output_shape))
        if bias_axes is not None and (not isinstance(bias_axes, str) or any(
                c not in self._specs[2] for c in bias_axes)):
            raise ValueError(f"bias_axes must be letters of the output {self._specs[2]!r}. "
                             f"Received: bias_axes={bias_axes!r}")
        self.bias_axes = bias_axes
        initializers.set_layer_initializers(
            self, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer)
        regularizers.set_layer_regularizers(self, kernel_regularizer=kernel_regularizer,
                                            bias_regularizer=bias_regularizer,
                                            activity_regularizer=activity_regularizer)
        constraints.set_layer_constraints(self, kernel_constraint=kernel_constraint,
                                          bias_constraint=bias_constraint)

    @property
    def use_bias(self) -> bool:
        return self.bias_axes is not None

    def get_config(self):
        config = regularizers.serialize_into(super().get_config(), self, _REGULARIZERS)
        return constraints.serialize_into(config, self, _CONSTRAINTS)

    # -- shapes --------------------------------------------------------------------------------
    def _shapes(self, input_shape):
        """(kernel shape, bias shape or None, output shape, kernel input axes, kernel output
        axes) for a sample of `input_shape` (batch axis excluded)."""
        inputs, weights, outputs = self._specs
        full = (None,) + tuple(input_shape)
        elided = len(full) - len(inputs)
        left = self._elided == "left"
        if elided < (1 if left else 0) or (elided and self._elided is None):
            raise ValueError(f"EinsumDense's equation {self.equation!r} names {len(inputs)} "
                             f"input axes. Received: input of shape {full}")
        declared = list(self.output_shape)
        if len(declared) != len(outputs) - (0 if left else 1):
            raise ValueError(f"EinsumDense's output_shape gives the output axes "
                             f"{outputs if left else outputs[1:]!r} of {self.equation!r} "
                             f"(not the batch, not elided axes). Received: "
                             f"output_shape={self.output_shape}")
        if left:   # the batch is among the elided leading axes
            in_size = dict(zip(inputs, full[elided:]))
            out_size = dict(zip(outputs, declared))
            prefix, suffix = full[1:elided], ()
        else:      # the first letters are the batch's
            in_size = dict(zip(inputs, full[:len(inputs)]))
            out_size = dict(zip(outputs, [None] + declared))
            prefix, suffix = (), full[len(inputs):]
        for letter, size in in_size.items():
            if letter in out_size:
                if out_size[letter] not in (None, size):
                    raise ValueError(f"EinsumDense: axis {letter!r} has {size} in the input "
                                     f"and {out_size[letter]} in output_shape; they must "
                                     "agree.")
                out_size[letter] = size
        kernel, input_axes, output_axes = [], [], []
        for index, letter in enumerate(weights):
            if letter in out_size:
                kernel.append(out_size[letter])
                output_axes.append(index)
            elif letter in in_size:
                kernel.append(in_size[letter])
                input_axes.append(index)
            else:
                raise ValueError(f"EinsumDense: the kernel's axis {letter!r} is neither an "
                                 f"input nor an output axis of {self.equation!r}.")
        bias = None
        if self.bias_axes is not None:
            first = min(outputs.find(c) for c in self.bias_axes)
            bias = [out_size[c] if c in self.bias_axes else 1 for c in outputs[first:]]
            bias += [1] * len(suffix)
        shape = tuple(prefix) + tuple(out_size[c] for c in (outputs if left else outputs[1:])) \
            + tuple(suffix)
        if None in kernel or (bias is not None and None in bias):
            raise ValueError(f"EinsumDense needs the kernel's axes known. Received: input of "
                             f"shape {full}, output_shape={self.output_shape}")
        return (tuple(kernel), None if bias is None else tuple(bias), shape, input_axes,
                output_axes)

    def sample_output_shape(self, input_shape):
        return self._shapes(input_shape)[2]

    def kernel_shape(self, input_shape) -> tuple:
        return self._shapes(input_shape)[0]

    def init(self, rng, input_shape):
        kernel_shape, bias_shape, output_shape, input_axes, output_axes = self._shapes(
            input_shape)
        if self.quantization_mode:   # Keras's quantized build: no float kernel
            params, state = {}, self.quantized_state(input_shape)
        else:
            kernel_init = fans_over(initializers.get(self.kernel_initializer), input_axes,
                                    output_axes)
            kernel = initializers.initial_values(kernel_init, rng, kernel_shape)
            params, state = {"kernel": kernel}, {}
        if bias_shape is not None:
            params["bias"] = initializers.initial_values(self.bias_initializer, rng, bias_shape)
        return params, state, output_shape

    def pre_activation(self, params, state, x, sample_mask=None, **_):
        if self.quantization_mode:
            y = self.quantized_product(x, state)
        else:
            y = jnp.einsum(self.equation, x, params["kernel"])
        if self.use_bias:
            y = y + params["bias"]
        regularizers.add_layer_penalties(self, params, lambda: self.activate(y), sample_mask)
        return y, state

    # -- int8 (model.quantize("int8"); kilnet.layers._int8) ---------------------------------
    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize the kernel in place, as Keras's EinsumDense.quantize. "int8": an int8
        `kernel` and a float32 `kernel_scale` with one scale per output channel, laid out as
        the output (1 on the axes the kernel lacks); each call quantizes its inputs per
        slice over the summed axes. "int4": the kernel flattened to (summed, other) axes and
        packed two values a byte, with flat scales (kilnet.layers._int4).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.EinsumDense("abc,cde->abde", output_shape=(None, 2, 4))
            >>> layer.build((None, 5, 8))
            >>> layer.quantize("int8")
            >>> layer.kernel.dtype.name, layer.kernel_scale.shape
            ('int8', (1, 1, 2, 4))
        """
        _int8.quantize_layer(self, EinsumDense, mode, type_check, config)

    def kernel_contraction(self, input_ndim):
        return _int8.einsum_contraction(self.equation, input_ndim)


def _parse(equation):
    """(input, kernel, output letters) and which side is elided (None, "left", "right")."""
    if isinstance(equation, str):
        for pattern, elided in _FORMS:
            match = re.match(pattern, equation.replace(" ", ""))
            if match:
                return match.groups(), elided
    raise ValueError(f"EinsumDense's equation must look like 'ab,bc->ac', '...b,bc->...c' or "
                     f"'ab...,bc->ac...'. Received: equation={equation!r}")


_REGULARIZERS = ("kernel_regularizer", "bias_regularizer", "activity_regularizer")
_CONSTRAINTS = ("kernel_constraint", "bias_constraint")
