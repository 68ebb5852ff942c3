"""Keras's int4 kernels: their packed storage, their quantization and their product.

`model.quantize("int4")` (Keras 3.15's weight-only int4) flattens a kernel to (rows,
columns), rows being the axes the product sums and columns the others (Keras reshapes the
kernel as it lies), quantizes it to int4 and packs two values a byte along the columns: an
int8 `kernel` of shape (rows, ceil(columns / 2)). Two schemes, as Keras's:

- per channel (block_size None or -1): symmetric, a float32 `kernel_scale` per column
  (abs-max into [-8, 7]); a configuration's `activation_quantizer` may quantize the inputs.
- in groups (block_size > 0, Keras's default 128): asymmetric, each group of block_size rows
  of each column with a `kernel_scale` and an int8 `kernel_zero`, (groups, columns), and
  `g_idx` (rows,), each row's group as float32.

The inputs stay float unless a quantizer is given; the kernel is dequantized to the compute
dtype and multiplied as Keras does (Keras's Dense divides the per-channel product by the
scales after it, its EinsumDense dequantizes the kernel first: each is followed). The
inputs' gradient is that of the dequantized kernel (Keras's custom gradient), the packed
kernel and its scales take none.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import quantization_ops
from kilnet._custom_gradients import custom_vjp
from kilnet.layers import _int8

INT4_RANGE = (-8, 7)


@dataclasses.dataclass(frozen=True)
class Int4Layout:
    """How an int4 kernel is kept and multiplied: the layer's `contraction`, the float
    kernel's `kernel_shape`, `block_size` (None: per channel) and whether the per-channel
    product is divided by the scales after it (`divides_outputs`, Keras's Dense) rather
    than the kernel dequantized before it (Keras's EinsumDense).

    Example:
        >>> layout = Int4Layout(_int8.last_axes(2, 2), (5, 3), block_size=2)
        >>> layout.rows, layout.columns, layout.scale_shape
        (5, 3, (3, 3))
    """
    contraction: _int8.Contraction
    kernel_shape: tuple
    block_size: int | None = None
    divides_outputs: bool = False

    @property
    def rows(self) -> int:
        return math.prod(self.kernel_shape[a] for a in self.contraction.kernel_axes)

    @property
    def columns(self) -> int:
        return math.prod(self.kernel_shape) // self.rows

    @property
    def scale_shape(self) -> tuple:
        if self.block_size is None:
            return (self.columns,)
        return (math.ceil(self.rows / self.block_size), self.columns)

    @property
    def state_names(self) -> tuple:
        grouped = ("kernel_zero", "g_idx") if self.block_size is not None else ()
        return ("kernel", "kernel_scale") + grouped


def block_size_of(config, policy):
    """The block size Keras's int4 layer uses (None: per channel): the configuration's,
    else the dtype policy's ("int4/<block_size>_from_..."), else per channel.

    Example:
        >>> from kilnet import mixed_precision, quantizers
        >>> block_size_of(quantizers.Int4QuantizationConfig(), None), block_size_of(
        ...     None, mixed_precision.get("int4/-1_from_float32"))
        (128, None)
    """
    size = getattr(config, "block_size", None) if config is not None else getattr(
        policy, "block_size", None)
    return None if size is None or size == -1 else int(size)


def quantized_state(layout: Int4Layout, kernel, weight_quantizer=None) -> dict:
    """The int4 state of a float kernel, on the host with NumPy, as Keras's `quantize("int4")`
    computes it (a `weight_quantizer` of the configuration is called on the 2D kernel, per
    channel only, as Keras's Dense calls it).

    Example:
        >>> layout = Int4Layout(_int8.last_axes(2, 2), (2, 3))
        >>> state = quantized_state(layout, np.array([[0.7, -1.0, 0.0], [0.1, 0.5, 2.0]]))
        >>> np.asarray(quantization_ops.unpack_int4(state["kernel"], 3, axis=-1)).tolist()
        [[7, -7, 0], [1, 3, 7]]
        >>> state["kernel"].shape, state["kernel_scale"].round(2).tolist()
        ((2, 2), [10.0, 7.0, 3.5])
    """
    flat = np.asarray(kernel, np.float32).reshape(layout.rows, layout.columns)
    if layout.block_size is None:
        if weight_quantizer is None:
            quantized, scale = quantization_ops.abs_max_quantize(
                flat, axis=0, value_range=INT4_RANGE, to_numpy=True)
        else:
            _int8.check_weight_axis(weight_quantizer, _int8.last_axes(2, 2), 2)
            quantized, scale = weight_quantizer(flat, to_numpy=True)
        state = {"kernel_scale": np.asarray(scale, np.float32).reshape(layout.columns)}
    else:
        quantized, scale, zero = quantization_ops.abs_max_quantize_grouped_with_zero_point(
            flat, layout.block_size, value_range=INT4_RANGE, to_numpy=True)
        state = {"kernel_scale": np.asarray(scale, np.float32),
                 "kernel_zero": np.asarray(zero, np.int8), "g_idx": group_rows(layout)}
    packed, _, _ = quantization_ops.pack_int4(np.asarray(quantized, np.int8), axis=-1)
    return {"kernel": np.asarray(packed), **state}


def empty_state(layout: Int4Layout) -> dict:
    """The state of a layer built int4 (zeros and ones, which a file's arrays replace)."""
    state = {"kernel": np.zeros((layout.rows, (layout.columns + 1) // 2), np.int8),
             "kernel_scale": np.ones(layout.scale_shape, np.float32)}
    if layout.block_size is not None:
        state.update(kernel_zero=np.zeros(layout.scale_shape, np.int8),
                     g_idx=group_rows(layout))
    return state


def group_rows(layout: Int4Layout):
    """Keras's `g_idx`: each kernel row's group, as float32."""
    return np.floor_divide(np.arange(layout.rows, dtype=np.float32), layout.block_size)


def dequantized_kernel(layout: Int4Layout, state, dtype):
    """The float kernel of an int4 state, in `dtype` and the float kernel's shape."""
    unpacked = quantization_ops.unpack_int4(state["kernel"], layout.columns, axis=-1)
    scale = state["kernel_scale"].astype(dtype)
    if layout.block_size is None:
        flat = unpacked.astype(dtype) / scale
    else:   # each row's group's zero point and scale (Keras's dequantize_with_sz_map)
        groups = state["g_idx"].astype(jnp.int32)
        zero = jnp.take(state["kernel_zero"], groups, axis=0).astype(scale.dtype)
        flat = ((unpacked - zero) * jnp.take(scale, groups, axis=0)).astype(dtype)
    return flat.reshape(layout.kernel_shape)


def product(layout: Int4Layout, inputs_quantizer, inputs, state):
    """The int4 layer's product with Keras's arithmetic (see the module's notes).

    Example:
        >>> layout = Int4Layout(_int8.last_axes(2, 2), (2, 3), divides_outputs=True)
        >>> state = quantized_state(layout, np.array([[0.7, -1.0, 0.0], [0.1, 0.5, 2.0]]))
        >>> x = np.array([[1.0, 2.0]], np.float32)   # x @ kernel is [[0.9, 0.0, 4.0]]
        >>> np.asarray(product(layout, None, x, state), np.float64).round(3).tolist()
        [[0.9, -0.143, 4.0]]
    """
    contraction = layout.contraction
    if layout.block_size is None and layout.divides_outputs:
        unpacked = quantization_ops.unpack_int4(state["kernel"], layout.columns, axis=-1)
        return _int8.product(contraction, inputs, unpacked.reshape(layout.kernel_shape),
                             state["kernel_scale"], inputs_quantizer)
    kernel = dequantized_kernel(layout, state, inputs.dtype)
    if layout.block_size is not None or inputs_quantizer is None:
        return jnp.einsum(contraction.equation, inputs, kernel)
    quantized, inputs_scale = inputs_quantizer(inputs, axis=contraction.input_axes)
    outputs = jnp.einsum(contraction.equation, quantized, kernel).astype(inputs.dtype)
    return outputs / contraction.in_output_layout(inputs_scale, "inputs")


@custom_vjp(nondiff_argnums=(0, 1))
def straight_through_product(layout: Int4Layout, inputs_quantizer, inputs, state):
    """`product`, whose gradient with respect to the inputs is that of the dequantized
    kernel (Keras's custom gradient of its int4 Dense and EinsumDense)."""
    return product(layout, inputs_quantizer, inputs, state)


def _product_forward(layout, inputs_quantizer, inputs, state):
    return product(layout, inputs_quantizer, inputs, state), state


def _product_backward(layout, inputs_quantizer, state, upstream):
    contraction = layout.contraction
    kernel = dequantized_kernel(layout, state, upstream.dtype)
    gradient = jnp.einsum(f"{contraction.outputs},{contraction.kernel}->{contraction.inputs}",
                          upstream, kernel)
    return gradient, {name: _no_gradient(value) for name, value in state.items()}


def _no_gradient(value):
    if jnp.issubdtype(value.dtype, jnp.floating):
        return jnp.zeros_like(value)
    return np.zeros(value.shape, jax.dtypes.float0)


straight_through_product.defvjp(_product_forward, _product_backward)


# -- embedding tables -------------------------------------------------------------------------
def quantized_table(table, block_size) -> dict:
    """The int4 state of an embedding table (input_dim, output_dim), as Keras's
    Embedding.quantize("int4") computes it: each row quantized by its abs-max (block_size
    None: a scale per row), or in groups of block_size values along the row with a scale and
    a zero point each; packed two a byte along the row.

    Example:
        >>> state = quantized_table(np.array([[0.5, -1.0, 1.0]], np.float32), None)
        >>> state["embeddings"].shape, state["embeddings_scale"].round(3).tolist()
        ((1, 2), [7.0])
    """
    table = np.asarray(table, np.float32)
    if block_size is None:
        values, scale = quantization_ops.abs_max_quantize(table, axis=-1,
                                                          value_range=INT4_RANGE, to_numpy=True)
        state = {"embeddings_scale": np.asarray(scale, np.float32)[:, 0]}
    else:   # groups along each row: Keras quantizes the transposed table's columns
        values, scale, zero = quantization_ops.abs_max_quantize_grouped_with_zero_point(
            table.T, block_size, value_range=INT4_RANGE, to_numpy=True)
        values = values.T
        state = {"embeddings_scale": np.ascontiguousarray(np.asarray(scale, np.float32).T),
                 "embeddings_zero": np.ascontiguousarray(np.asarray(zero, np.int8).T),
                 "g_idx": np.floor_divide(np.arange(table.shape[1], dtype=np.float32),
                                          block_size)}
    packed, _, _ = quantization_ops.pack_int4(np.asarray(values, np.int8), axis=-1)
    return {"embeddings": np.asarray(packed), **state}


def empty_table_state(input_dim, output_dim, block_size) -> dict:
    """The state of an Embedding built int4 (which a file's arrays replace)."""
    if block_size is None:
        return {"embeddings": np.zeros((input_dim, (output_dim + 1) // 2), np.int8),
                "embeddings_scale": np.ones((input_dim,), np.float32)}
    state = quantized_table(np.zeros((input_dim, output_dim), np.float32), block_size)
    state["embeddings_scale"] = np.ones_like(state["embeddings_scale"])
    return state


def looked_up_rows(state, ids, output_dim, dtype):
    """The rows of an int4 table for `ids`, dequantized in `dtype` (Keras's int4 Embedding
    call); an id without a row gives NaN, as the float table's lookup does."""
    table = quantization_ops.unpack_int4(state["embeddings"], output_dim, axis=-1)
    rows = jnp.take(table, jnp.clip(ids, 0, table.shape[0] - 1), axis=0).astype(dtype)
    scale = jnp.take(state["embeddings_scale"].astype(dtype), ids, axis=0, mode="fill",
                     fill_value=jnp.nan)
    if "g_idx" not in state:
        return rows / scale[..., None]
    groups = state["g_idx"].astype(jnp.int32)
    zero = jnp.take(state["embeddings_zero"], jnp.clip(ids, 0, table.shape[0] - 1), axis=0)
    zero = jnp.take(zero, groups, axis=-1).astype(scale.dtype)
    return (rows - zero) * jnp.take(scale, groups, axis=-1)
