"""Keras's `keras.quantizers` arithmetic: abs-max quantization to integers (int8, and int4
groups with a zero point), int4 packing, fake quantization and the float8 scaling rules.

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

import math

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from kilnet._custom_gradients import custom_vjp

# Keras's AbsMaxQuantizer defaults: the int8 range it uses (symmetric, -128 unused) and its
# epsilon, which Keras fixes when its module is imported (backend.epsilon()'s default).
INT8_RANGE = (-127, 127)
EPSILON = 1e-7

__all__ = ["abs_max_quantize", "abs_max_quantize_grouped_with_zero_point",
           "compute_float8_amax_history", "compute_float8_scale",
           "fake_quant_with_min_max_vars", "pack_int4", "quantize_and_dequantize",
           "unpack_int4"]


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


# -- int4 groups with a zero point ---------------------------------------------------------
def abs_max_quantize_grouped_with_zero_point(inputs, block_size, value_range=(-8, 7),
                                             dtype="int8", epsilon=EPSILON, to_numpy=False):
    """Quantize a 2D kernel (input_dim, output_dim) asymmetrically in groups of `block_size`
    rows (Keras's function of that name, its int4 sub-channel scheme): each group of each
    column gets `scale = (max - min + epsilon) / (high - low)` and an int8 zero point, and
    the values become `clip(round(x / scale) + zero_point, low, high)`. Returns
    (quantized, scale, zero_point), the last two of shape (ceil(input_dim / block_size),
    output_dim). The last group is padded with zeros, which count in its min and max.
    On the device (`to_numpy=False`) a group whose values are all equal is widened by 1 on
    each side, as Keras's device path does; the host path keeps it (Keras's NumPy path).

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> q, scale, zero = quantizers.abs_max_quantize_grouped_with_zero_point(
        ...     np.array([[0.0], [1.5], [3.0]], np.float32), block_size=2)
        >>> q[:, 0].tolist(), scale.shape, zero[:, 0].tolist()
        ([-8, 7, 7], (2, 1), [-8, -8])
    """
    xp = np if to_numpy else jnp
    values = xp.asarray(np.asarray(inputs) if to_numpy else inputs)
    dtype_in = values.dtype
    low, high = value_range
    input_dim, output_dim = values.shape
    groups = math.ceil(input_dim / block_size)
    padded = xp.concatenate([values, xp.zeros((groups * block_size - input_dim, output_dim),
                                               dtype_in)], axis=0)
    grouped = padded.reshape(groups, block_size, output_dim)
    smallest, largest = grouped.min(axis=1), grouped.max(axis=1)
    if not to_numpy:   # Keras's device path widens an empty range
        flat = smallest == largest
        smallest, largest = xp.where(flat, smallest - 1, smallest), xp.where(
            flat, largest + 1, largest)
    spread = largest - smallest
    if to_numpy or epsilon > 0:
        spread = spread + xp.asarray(epsilon, dtype_in)
    scale = (spread / xp.asarray(high - low, dtype_in)).astype(dtype_in)
    if not to_numpy:
        scale = xp.where(scale <= 0, xp.asarray(1e-8, dtype_in), scale)
    zero_point = xp.clip(xp.round(-smallest / scale) + low, low, high)
    quantized = xp.clip(xp.round(grouped / scale[:, None]) + zero_point[:, None], low, high)
    quantized = quantized.astype(dtype).reshape(groups * block_size, output_dim)[:input_dim]
    return quantized, scale, zero_point.astype("int8")


# -- int4 packing ---------------------------------------------------------------------------
def pack_int4(arr, axis=0, dtype="int8"):
    """Pack int4 values (int8 or uint8 in [-8, 7]) two to a byte along `axis` (Keras's
    `pack_int4`): the first of each pair in the low nibble, the second in the high one; an
    odd length is padded with a zero. Returns (packed, packed shape, original length).

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> packed, shape, length = quantizers.pack_int4(np.array([[-3, 7], [2, -8], [1, 0]],
        ...                                                       np.int8))
        >>> np.asarray(packed).tolist(), shape, length
        ([[45, -121], [1, 0]], (2, 2), 3)
    """
    if dtype not in ("int8", "uint8"):
        raise ValueError(f"pack_int4: dtype must be 'int8' or 'uint8'. Received: dtype={dtype!r}")
    values = np.asarray(arr)
    if values.dtype != np.dtype(dtype):
        raise TypeError(f"pack_int4: expected a {dtype} array of int4 values, got "
                        f"{values.dtype}. Cast it with .astype({dtype!r}) first.")
    # on the host: NumPy's int8 shifts wrap as two's complement on every platform
    rows = np.moveaxis(values, axis, 0)
    length = rows.shape[0]
    if length % 2:
        rows = np.concatenate([rows, np.zeros((1,) + rows.shape[1:], rows.dtype)], axis=0)
    nibble = np.array(0x0F, rows.dtype)
    packed = (rows[0::2] & nibble) | ((rows[1::2] & nibble) << np.array(4, rows.dtype))
    packed = np.moveaxis(packed.astype(dtype), 0, axis)
    return jnp.asarray(packed), tuple(packed.shape), length


def unpack_int4(packed, orig_len, axis=0, dtype="int8"):
    """The int4 values `pack_int4` packed along `axis`, as an array of `dtype` ("int8":
    signed values in [-8, 7]; "uint8": the nibbles) with `orig_len` entries along `axis`
    (Keras's `unpack_int4`).

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> packed, _, length = quantizers.pack_int4(np.array([[-3, 7, 2], [-8, 1, 0]], np.int8),
        ...                                          axis=1)
        >>> np.asarray(quantizers.unpack_int4(packed, length, axis=1)).tolist()
        [[-3, 7, 2], [-8, 1, 0]]
    """
    if dtype not in ("int8", "uint8"):
        raise ValueError(f"unpack_int4: dtype must be 'int8' or 'uint8'. Received: "
                         f"dtype={dtype!r}")
    rows = jnp.moveaxis(jnp.asarray(packed), axis, 0)
    nibble = jnp.array(0x0F, rows.dtype)
    halves = [rows & nibble, (rows >> 4) & nibble]
    if dtype == "int8":   # the nibble's sign bit: 8..15 are -8..-1
        halves = [(half ^ 8) - 8 for half in halves]
    interleaved = jnp.stack([half.astype(dtype) for half in halves], axis=1)
    unpacked = interleaved.reshape((-1,) + rows.shape[1:])[:orig_len]
    return jnp.moveaxis(unpacked, 0, axis)


# -- fake quantization --------------------------------------------------------------------------
def _nudged_range(min_range, max_range, num_bits, narrow_range):
    """TensorFlow's nudging of [min, max] so that 0 is exactly representable: (nudged min,
    nudged max, scale, inverse scale), in float32 at least."""
    compute = jnp.result_type(min_range.dtype, jnp.float32)
    min_range, max_range = min_range.astype(compute), max_range.astype(compute)
    quant_max, quant_min = (1 << num_bits) - 1, 1 if narrow_range else 0
    spread = max_range - min_range
    scale = spread / (quant_max - quant_min)
    inverse = (quant_max - quant_min) / spread
    zero_point = jnp.round(jnp.clip(quant_min - min_range / scale, quant_min, quant_max))
    return (quant_min - zero_point) * scale, (quant_max - zero_point) * scale, scale, inverse


def _fake_quant_forward_values(x, min_vals, max_vals, num_bits, narrow_range):
    low, high, scale, inverse = _nudged_range(min_vals, max_vals, num_bits, narrow_range)
    zero = jnp.floor(-low * inverse + 0.5)
    shifted = jnp.clip(x.astype(low.dtype), low, high) - low
    return (jnp.floor(shifted * inverse - zero + 0.5) * scale).astype(x.dtype), (low, high)


@custom_vjp(nondiff_argnums=(3, 4, 5))
def _fake_quant(x, min_vals, max_vals, num_bits, narrow_range, axis):
    return _fake_quant_forward_values(x, min_vals, max_vals, num_bits, narrow_range)[0]


def _fake_quant_forward(x, min_vals, max_vals, num_bits, narrow_range, axis):
    outputs, (low, high) = _fake_quant_forward_values(x, min_vals, max_vals, num_bits,
                                                      narrow_range)
    return outputs, (x, low, high, min_vals, max_vals)


def _fake_quant_backward(num_bits, narrow_range, axis, residuals, upstream):
    # straight through inside the nudged range; what falls outside trains the bound it hits
    x, low, high, min_vals, max_vals = residuals
    zero = jnp.zeros((), upstream.dtype)
    others = None if axis is None else tuple(i for i in range(x.ndim) if i != axis)
    to_min = jnp.sum(jnp.where(x <= low, upstream, zero), axis=others)
    to_max = jnp.sum(jnp.where(x >= high, upstream, zero), axis=others)
    inside = jnp.where((x >= low) & (x <= high), upstream, zero)
    return (inside, to_min.reshape(jnp.shape(min_vals)).astype(min_vals.dtype),
            to_max.reshape(jnp.shape(max_vals)).astype(max_vals.dtype))


_fake_quant.defvjp(_fake_quant_forward, _fake_quant_backward)


def fake_quant_with_min_max_vars(inputs, min_vals, max_vals, num_bits=8, narrow_range=False,
                                 axis=None):
    """Quantize `inputs` to `num_bits` levels in [min_vals, max_vals] and back (Keras's and
    TensorFlow's fake quantization), per tensor (`axis=None`, scalar bounds) or per channel
    along `axis`. The range is nudged so that 0 is a level. Its gradient is Keras's: the
    upstream gradient passes where the input lies in the range; what lies at or beyond a
    bound is summed into that bound's gradient, so the bounds can be trained.

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> out = quantizers.fake_quant_with_min_max_vars(np.array([-1.0, 0.3, 0.51, 2.0]),
        ...                                               0.0, 1.0, num_bits=2)
        >>> [round(float(v), 4) for v in out]
        [0.0, 0.3333, 0.6667, 1.0]
    """
    from kilnet.layers import KerasTensor   # here: the layers import this module

    if isinstance(inputs, KerasTensor):
        raise TypeError("fake_quant_with_min_max_vars is not recorded as an operation of a "
                        "functional graph in kilnet: call it inside a Layer's call (or on "
                        f"arrays). Received: inputs={inputs}")
    inputs = jnp.asarray(inputs)
    if axis is not None:
        axis = axis % inputs.ndim
    return _fake_quant(inputs, jnp.asarray(min_vals), jnp.asarray(max_vals), int(num_bits),
                       bool(narrow_range), axis)


# -- float8 ---------------------------------------------------------------------------------
def compute_float8_scale(amax, scale, dtype_max, margin=0):
    """The next float8 scale (Keras's, after Transformer Engine's rule): `amax / dtype_max`
    times 2**margin, where `amax` is positive and finite; otherwise `scale` is kept.

    Example:
        >>> from kilnet import quantizers
        >>> float(quantizers.compute_float8_scale(896.0, 1.0, 448.0)), float(
        ...     quantizers.compute_float8_scale(0.0, 0.5, 448.0))
        (2.0, 0.5)
    """
    amax, kept = jnp.asarray(amax), 1.0 / jnp.asarray(scale)
    factor = dtype_max / amax / 2 ** margin
    factor = jnp.where(jnp.isfinite(amax), jnp.where(amax > 0.0, factor, kept), kept)
    return 1.0 / factor


def compute_float8_amax_history(x, amax_history):
    """The amax history after one more step (Keras's): rolled back by one, with the largest
    magnitude of `x` (in the history's dtype) first.

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> np.asarray(quantizers.compute_float8_amax_history(
        ...     np.array([1.0, -5.0]), np.array([1.0, 2.0, 3.0], np.float32))).tolist()
        [5.0, 3.0, 1.0]
    """
    history = jnp.asarray(amax_history)
    largest = jnp.max(jnp.abs(jnp.asarray(x))).astype(history.dtype)
    return jnp.roll(history, -1).at[0].set(largest)


def quantize_and_dequantize(inputs, scale, quantized_dtype, compute_dtype):
    """`inputs / scale` clipped to the largest finite value of `quantized_dtype` (a float8
    dtype, e.g. "float8_e4m3fn"), rounded to it and multiplied back by `scale`, in
    `compute_dtype` (Keras's float8 round trip).

    Example:
        >>> import numpy as np
        >>> from kilnet import quantizers
        >>> np.asarray(quantizers.quantize_and_dequantize(
        ...     np.array([1000.0, 0.3], np.float32), 1.0, "float8_e4m3fn", "float32")).tolist()
        [448.0, 0.3125]
    """
    largest = jnp.asarray(float(ml_dtypes.finfo(quantized_dtype).max), compute_dtype)
    scale = jnp.asarray(scale).astype(compute_dtype)
    values = jnp.clip(jnp.asarray(inputs) / scale, -largest, largest).astype(quantized_dtype)
    return values.astype(compute_dtype) * scale
