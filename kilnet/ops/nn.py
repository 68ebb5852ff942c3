"""Keras's `keras.ops.nn`: activations, normalizations, one-hot, cross-entropies and the
neural-network primitives, over `jax.nn` and `jax.lax`.

Example:
    >>> import numpy as np
    >>> relu(np.array([-1.0, 2.0])).tolist()
    [0.0, 2.0]
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from kilnet import _ctc, config
from kilnet._custom_gradients import eager_shortcut
from kilnet._kernels.conv import cpu_convolution
from kilnet._kernels.conv_transpose import conv_transpose as transposed_convolution
from kilnet.ops._convert import as_array, as_float, FLOATX, dispatch_symbolic

__all__ = [
    "relu", "relu6", "sigmoid", "log_sigmoid", "softmax", "log_softmax", "softplus", "silu",
    "swish", "hard_sigmoid", "hard_silu", "softsign", "gelu", "leaky_relu", "elu", "selu",
    "one_hot", "moments", "normalize", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    # activations
    "celu", "glu", "hard_shrink", "hard_swish", "hard_tanh", "soft_shrink", "sparse_plus",
    "sparse_sigmoid", "sparsemax", "squareplus", "tanh_shrink", "threshold",
    # pooling and convolution (channels_last)
    "average_pool", "max_pool", "adaptive_average_pool", "adaptive_max_pool", "conv",
    "conv_transpose", "depthwise_conv", "separable_conv",
    # normalizations, attention, encodings, losses and decoding
    "batch_normalization", "layer_normalization", "rms_normalization",
    "dot_product_attention", "multi_hot", "psnr", "ctc_loss", "ctc_decode",
    # rearrangements
    "depth_to_space", "space_to_depth", "polar", "unfold", "fold",
]


# -- neural network functions -------------------------------------------------------------------

# JAX's relu and relu6 (custom derivatives: gradient 0 at the kinks, as Keras's; kilnet's
# activations use these too), called directly on arrays outside any trace: 182 -> 54 us a call
# on a (1, 20, 20, 32) array, 2-core Intel Xeon (kilnet._custom_gradients).
_jax_relu = eager_shortcut(jax.nn.relu)
_jax_relu6 = eager_shortcut(jax.nn.relu6)


def relu(x):
    """`max(x, 0)`."""
    return _jax_relu(as_array(x))


def relu6(x):
    """`min(max(x, 0), 6)`."""
    return _jax_relu6(as_array(x))


def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return jax.nn.sigmoid(as_array(x))


def log_sigmoid(x):
    """`log(sigmoid(x))`, computed without overflow."""
    return jax.nn.log_sigmoid(as_array(x))


def softmax(x, axis=-1):
    """`exp(x) / sum(exp(x))` along `axis`."""
    return jax.nn.softmax(as_array(x), axis=axis)


def log_softmax(x, axis=-1):
    """`log(softmax(x))` along `axis`, computed without overflow."""
    return jax.nn.log_softmax(as_array(x), axis=axis)


def softplus(x):
    """`log(1 + exp(x))`, computed without overflow."""
    return jax.nn.softplus(as_array(x))


def silu(x):
    """`x * sigmoid(x)` (also called swish)."""
    return jax.nn.silu(as_array(x))


swish = silu  # Keras exports the same function under both names


def hard_sigmoid(x):
    """`relu6(x + 3) / 6` (Keras 3's hard sigmoid)."""
    return jax.nn.hard_sigmoid(as_array(x))


def hard_silu(x):
    """`x * hard_sigmoid(x)` (also called hard swish)."""
    return jax.nn.hard_silu(as_array(x))


hard_swish = hard_silu  # Keras exports the same function under both names


def softsign(x):
    """`x / (1 + |x|)`."""
    return jax.nn.soft_sign(as_array(x))


def gelu(x, approximate=True):
    """Gaussian error linear unit; the tanh approximation by default, as keras.ops.gelu (the
    "gelu" activation string uses the exact form)."""
    return jax.nn.gelu(as_array(x), approximate=approximate)


def leaky_relu(x, negative_slope=0.2):
    """`x` for positive values, `negative_slope * x` otherwise (Keras's default slope 0.2)."""
    return jax.nn.leaky_relu(as_array(x), negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """`x` for positive values, `alpha * (exp(x) - 1)` otherwise."""
    return jax.nn.elu(as_array(x), alpha=alpha)


def selu(x):
    """Scaled exponential linear unit (the self-normalizing constants)."""
    return jax.nn.selu(as_array(x))


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """One-hot encoding of integer labels along a new `axis` (float32 by default); labels
    outside `[0, num_classes)` encode as all zeros."""
    if sparse:
        raise ValueError("kilnet has no sparse tensors. Received: sparse=True")
    return jax.nn.one_hot(as_array(x), num_classes, dtype=dtype or FLOATX, axis=axis)


def moments(x, axes, keepdims=False, synchronized=False):
    """`(mean, variance)` of `x` over `axes`. Half-precision inputs are reduced in float32,
    as in Keras, and the results cast back."""
    if synchronized:
        raise ValueError("moments(synchronized=True) is not supported: statistics are "
                         "computed per device. Received: synchronized=True")
    x = as_array(x)
    wide = x.astype(FLOATX) if x.dtype in (jnp.float16, jnp.bfloat16) else x
    mean_, variance = (jnp.mean(wide, axis=axes, keepdims=keepdims),
                       jnp.var(wide, axis=axes, keepdims=keepdims))
    # mean/var of an integer input are floats; only half precision is cast back
    if wide is not x:
        mean_, variance = mean_.astype(x.dtype), variance.astype(x.dtype)
    return mean_, variance


def normalize(x, axis=-1, order=2, epsilon=None):
    """`x / max(norm(x, order), epsilon)` along `axis` (order=2 is L2 normalization)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    x = as_float(x)
    epsilon = config.epsilon() if epsilon is None else epsilon
    if order == 2:
        # Clamp the squared norm before rsqrt: a zero vector then has a finite gradient
        # (the gradient of the norm itself is 0/0 there).
        squares = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
        return x * jax.lax.rsqrt(jnp.maximum(squares, epsilon * epsilon))
    norms = jnp.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / jnp.maximum(norms, epsilon)


def _same_shape(target, output):
    if target.shape != output.shape:
        raise ValueError("Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={target.shape}, output.shape={output.shape}")


def binary_crossentropy(target, output, from_logits=False):
    """Elementwise binary cross-entropy (no reduction). `output` is a probability, clipped to
    `[1e-7, 1 - 1e-7]`, or a logit with `from_logits=True`."""
    target, output = as_array(target), as_array(output)
    _same_shape(target, output)
    if from_logits:
        # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)), without overflow
        return -(target * jax.nn.log_sigmoid(output)
                 + (1.0 - target) * jax.nn.log_sigmoid(-output))
    output = jnp.clip(output, config.epsilon(), 1.0 - config.epsilon())
    return -(target * jnp.log(output) + (1.0 - target) * jnp.log1p(-output))


def _log_probs(output, from_logits, axis):
    """Log-probabilities along `axis`: log_softmax of logits, or of probabilities rescaled to
    sum to 1 and clipped away from 0 and 1 (as Keras)."""
    if from_logits:
        return jax.nn.log_softmax(output, axis=axis)
    output = output / jnp.sum(output, axis=axis, keepdims=True)
    return jnp.log(jnp.clip(output, config.epsilon(), 1.0 - config.epsilon()))


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between one-hot (or soft) `target` and `output` along `axis`, reducing
    that axis only."""
    target, output = as_array(target), as_array(output)
    _same_shape(target, output)
    if target.ndim < 1:
        raise ValueError("Arguments `target` and `output` must be at least rank 1. "
                         f"Received: target.shape={target.shape}")
    return -jnp.sum(target * _log_probs(output, from_logits, axis), axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between integer class `target` and `output` (classes along `axis`); a
    trailing length-1 axis on `target` is dropped."""
    target, output = as_array(target).astype("int32"), as_array(output)
    if target.ndim == output.ndim and target.shape[-1] == 1:
        target = jnp.squeeze(target, axis=-1)
    if output.ndim < 1 or target.shape != output.shape[:-1]:
        raise ValueError("Argument `target` must have the shape of `output` without its last "
                         f"axis. Received: target.shape={target.shape}, "
                         f"output.shape={output.shape}")
    labels = jax.nn.one_hot(target, output.shape[axis], dtype=output.dtype, axis=axis)
    return -jnp.sum(labels * _log_probs(output, from_logits, axis), axis=axis)


# -- more activations ---------------------------------------------------------------------------

def celu(x, alpha=1.0):
    """Continuously differentiable ELU: `max(x, 0) + alpha * min(exp(x / alpha) - 1, 0)`."""
    return jax.nn.celu(as_array(x), alpha=alpha)


def glu(x, axis=-1):
    """Gated linear unit: the first half of `axis` times the sigmoid of the second half.

    Example:
        >>> import numpy as np
        >>> glu(np.array([[2.0, 0.0]])).tolist()   # 2 * sigmoid(0)
        [[1.0]]
    """
    x = as_array(x)
    if x.shape[axis] % 2:
        raise ValueError(f"glu splits `axis` into two halves, so its size must be even. "
                         f"Received: x.shape={x.shape}, axis={axis}")
    return jax.nn.glu(x, axis=axis)


def hard_tanh(x):
    """`x` clipped to [-1, 1]."""
    return jax.nn.hard_tanh(as_array(x))


def hard_shrink(x, threshold=0.5):
    """`x` where `|x| > threshold`, else 0."""
    x = as_array(x)
    return jnp.where(jnp.abs(x) > threshold, x, 0.0)


def soft_shrink(x, threshold=0.5):
    """`x` moved `threshold` toward 0, and 0 inside [-threshold, threshold].

    Example:
        >>> import numpy as np
        >>> soft_shrink(np.array([-1.0, 0.2, 1.0])).tolist()
        [-0.5, 0.0, 0.5]
    """
    x = as_array(x)
    return jnp.where(x > threshold, x - threshold,
                     jnp.where(x < -threshold, x + threshold, 0.0))


def sparse_plus(x):
    """0 below -1, `(x + 1)**2 / 4` in [-1, 1], `x` above 1 (a piecewise smooth softplus)."""
    return jax.nn.sparse_plus(as_array(x))


def sparse_sigmoid(x):
    """0 below -1, `(x + 1) / 2` in [-1, 1], 1 above 1 (a piecewise linear sigmoid)."""
    return jax.nn.sparse_sigmoid(as_array(x))


def squareplus(x, b=4):
    """`(x + sqrt(x**2 + b)) / 2`, a smooth ReLU."""
    return jax.nn.squareplus(as_array(x), b=b)


def tanh_shrink(x):
    """`x - tanh(x)`."""
    x = as_array(x)
    return x - jnp.tanh(x)


def threshold(x, threshold, default_value):
    """`x` where `x > threshold`, else `default_value`.

    Example:
        >>> import numpy as np
        >>> threshold(np.array([0.5, 2.0]), 1.0, -1.0).tolist()
        [-1.0, 2.0]
    """
    x = as_array(x)
    return jnp.where(x > threshold, x, default_value)


def sparsemax(x, axis=-1):
    """The Euclidean projection of `x` onto the probability simplex along `axis`: like
    softmax, it sums to 1, but small entries become exactly 0 (Martins & Astudillo, 2016).
    (Keras 3.15 on JAX sums the partial sums over the support, so its rows with two or more
    non-zeros are wrong and need not sum to 1; kilnet computes the projection.)

    Example:
        >>> import numpy as np
        >>> sparsemax(np.array([1.0, 2.0, 5.0])).tolist()
        [0.0, 0.0, 1.0]
    """
    x = as_array(x)
    descending = -jnp.sort(-x, axis=axis)
    ranks = jnp.arange(1, x.shape[axis] + 1, dtype=x.dtype)
    ranks = jnp.expand_dims(ranks, [d for d in range(x.ndim) if d != axis % x.ndim])
    partial_sums = jnp.cumsum(descending, axis=axis)
    in_support = descending - (partial_sums - 1) / ranks > 0
    support_size = jnp.sum(in_support, axis=axis, keepdims=True)
    # the support is the first `support_size` sorted entries: their total is one partial sum
    support_sum = jnp.take_along_axis(partial_sums, support_size - 1, axis=axis)
    tau = (support_sum - 1) / support_size
    return jnp.maximum(x - tau, 0.0)


# -- pooling and convolution (channels_last, as every kilnet image op) ------------------------

def check_channels_last(data_format, function: str) -> str:
    """'channels_last' for None or 'channels_last'; channels_first is refused with its fix.

    Example:
        >>> check_channels_last(None, "conv")
        'channels_last'
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(
            f"kilnet.ops {function} supports data_format='channels_last' only (kilnet's "
            f"images are channels-last). Received: data_format={data_format!r}. Move the "
            "channel axis last first (ops.moveaxis(x, 1, -1)) and pass "
            "data_format='channels_last' or None.")
    return "channels_last"


def spatial_tuple(value, rank: int, argument: str) -> tuple[int, ...]:
    """An int or a sequence of `rank` ints, as a tuple of `rank` ints.

    Example:
        >>> spatial_tuple(2, 3, "strides")
        (2, 2, 2)
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    value = tuple(value)
    if len(value) != rank or not all(isinstance(v, int) for v in value):
        raise ValueError(f"Argument `{argument}` must be an int or {rank} ints (one per "
                         f"spatial axis). Received: {argument}={value!r}")
    return value


def lax_padding(padding) -> str:
    """Keras's padding name ("valid" or "same", any case) as lax's ("VALID", "SAME").

    Example:
        >>> lax_padding("same")
        'SAME'
    """
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError("Argument `padding` must be 'valid' or 'same'. "
                         f"Received: padding={padding!r}")
    return padding.upper()


def _pool_windows(inputs, pool_size, strides, data_format, function):
    """The reduce_window window and strides (batch and channels untouched) of a pooling."""
    check_channels_last(data_format, function)
    rank = inputs.ndim - 2
    window = spatial_tuple(pool_size, rank, "pool_size")
    steps = window if strides is None else spatial_tuple(strides, rank, "strides")
    return (1, *window, 1), (1, *steps, 1)


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """The maximum over each `pool_size` window of the spatial axes of `inputs` (batch,
    *spatial, channels); `strides` defaults to `pool_size`."""
    inputs = as_array(inputs)
    window, steps = _pool_windows(inputs, pool_size, strides, data_format, "max_pool")
    return lax.reduce_window(inputs, -jnp.inf, lax.max, window, steps, lax_padding(padding))


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    """The mean over each `pool_size` window of the spatial axes of `inputs`; with "same"
    padding a border window averages only its values inside the input (as Keras).

    Example:
        >>> import numpy as np
        >>> x = np.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
        >>> average_pool(x, 2, strides=2, padding="same").ravel().tolist()
        [1.5, 3.0]
    """
    inputs = as_array(inputs)
    window, steps = _pool_windows(inputs, pool_size, strides, data_format, "average_pool")
    padding = lax_padding(padding)
    sums = lax.reduce_window(inputs, 0.0, lax.add, window, steps, padding)
    if padding == "VALID":
        return sums / math.prod(window)
    ones = jnp.ones((1, *inputs.shape[1:-1], 1), inputs.dtype)
    return sums / lax.reduce_window(ones, 0.0, lax.add, window, steps, padding)


def _adaptive_windows(size: int, output_size: int):
    """For each of the `output_size` windows over `size` positions, the positions it spans:
    window i is [floor(i * size / n), ceil((i + 1) * size / n)) (PyTorch's and Keras's rule),
    as an (n, longest) index table whose shorter rows repeat their last position, and the
    rows' true lengths."""
    starts = np.arange(output_size) * size // output_size
    ends = -(-(np.arange(output_size) + 1) * size // output_size)
    longest = int((ends - starts).max())
    table = np.minimum(starts[:, None] + np.arange(longest)[None, :], ends[:, None] - 1)
    return table, ends - starts


def _adaptive_pool(inputs, output_size, data_format, average, function):
    """Adaptive pooling one spatial axis at a time: a box window's mean (or max) is the mean
    (max) over one axis of the means (maxima) over the others."""
    check_channels_last(data_format, function)
    inputs = as_array(inputs)
    rank = inputs.ndim - 2
    if rank not in (1, 2, 3):
        raise ValueError(f"{function} takes (batch, *spatial, channels) inputs with 1 to 3 "
                         f"spatial axes. Received: inputs.shape={inputs.shape}")
    for axis, size in enumerate(spatial_tuple(output_size, rank, "output_size"), start=1):
        table, lengths = _adaptive_windows(inputs.shape[axis], size)
        if average:    # each window's mean: a (size, n) averaging matrix along the axis
            weights = np.zeros((size, inputs.shape[axis]), np.float32)
            np.put_along_axis(weights, table, 1.0, axis=1)
            weights = jnp.asarray(weights / lengths[:, None], inputs.dtype)
            inputs = jnp.moveaxis(jnp.tensordot(weights, inputs, axes=(1, axis)), 0, axis)
        else:
            windows = jnp.take(inputs, table.ravel(), axis=axis)
            windows = windows.reshape(inputs.shape[:axis] + table.shape
                                      + inputs.shape[axis + 1:])
            inputs = jnp.max(windows, axis=axis + 1)
    return inputs


def adaptive_average_pool(inputs, output_size, data_format=None):
    """Average pooling to a fixed spatial `output_size` whatever the input's size (window i
    of an axis of size n spans [floor(i * n / out), ceil((i + 1) * n / out))).

    Example:
        >>> import numpy as np
        >>> x = np.arange(5.0).reshape(1, 5, 1)
        >>> adaptive_average_pool(x, 2).ravel().tolist()   # windows [0, 3) and [2, 5)
        [1.0, 3.0]
    """
    return _adaptive_pool(inputs, output_size, data_format, True, "adaptive_average_pool")


def adaptive_max_pool(inputs, output_size, data_format=None):
    """Max pooling to a fixed spatial `output_size` (the windows of adaptive_average_pool)."""
    return _adaptive_pool(inputs, output_size, data_format, False, "adaptive_max_pool")


def conv_dimension_numbers(rank: int):
    """lax's dimension numbers for channels_last inputs and Keras's kernels
    (*spatial, in_channels, out_channels).

    Example:
        >>> conv_dimension_numbers(2).lhs_spec
        (0, 3, 1, 2)
    """
    spatial = tuple(range(1, rank + 1))
    features = (0, rank + 1) + spatial
    return lax.ConvDimensionNumbers(lhs_spec=features, rhs_spec=(rank + 1, rank) +
                                    tuple(range(rank)), out_spec=features)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    """N-D convolution (cross-correlation, as Keras) of `inputs` (batch, *spatial, channels)
    with `kernel` (*spatial, in_channels, out_channels). An input with more channels than
    the kernel's in_channels (a multiple of it) is a grouped convolution.

    Example:
        >>> import numpy as np
        >>> x = np.arange(4.0).reshape(1, 4, 1)
        >>> conv(x, np.ones((2, 1, 1))).ravel().tolist()
        [1.0, 3.0, 5.0]
    """
    check_channels_last(data_format, "conv")
    kernel = as_array(kernel)
    inputs = as_array(inputs).astype(kernel.dtype)
    rank = inputs.ndim - 2
    groups, remainder = divmod(inputs.shape[-1], kernel.shape[-2])
    if remainder:
        raise ValueError(
            "The input's channels must be a multiple of the kernel's in_channels "
            f"(kernel.shape[-2]). Received: inputs.shape={inputs.shape}, "
            f"kernel.shape={kernel.shape}")
    strides = spatial_tuple(strides, rank, "strides")
    dilation = spatial_tuple(dilation_rate, rank, "dilation_rate")
    padding = lax_padding(padding)
    # On the CPU, the layers' convolution (oneDNN's, with its gradients): XLA's CPU convolution
    # inside a compiled chunk's loop is far slower than alone. A custom layer's ops.conv
    # training step (keras.io's mixture of experts, 3x3 32 -> 128 on 16x16, batch 64, 2-core
    # AMD EPYC, quiet) took 14.6 s for 8 steps with XLA's, 0.21 s in Keras on JAX, 0.14 s so.
    if jax.default_backend() == "cpu":
        y = cpu_convolution(inputs, kernel, strides, padding.lower(), dilation, groups)
        if y is not None:
            return y
    return lax.conv_general_dilated(
        inputs, kernel, strides, padding, rhs_dilation=dilation,
        dimension_numbers=conv_dimension_numbers(rank), feature_group_count=groups)


def _check_in_channels(inputs, kernel, axis: int):
    if inputs.shape[-1] != kernel.shape[axis]:
        raise ValueError(
            f"The input's channels must equal the kernel's in_channels (kernel.shape[{axis}]). "
            f"Received: inputs.shape={inputs.shape}, kernel.shape={kernel.shape}")


def depthwise_conv(inputs, kernel, strides=1, padding="valid", data_format=None,
                   dilation_rate=1):
    """Each input channel convolved with its own `kernel[..., c, :]` (kernel: *spatial,
    in_channels, channel_multiplier); the outputs of channel c are c * multiplier + m."""
    check_channels_last(data_format, "depthwise_conv")
    inputs, kernel = as_array(inputs), as_array(kernel)
    _check_in_channels(inputs, kernel, -2)
    # one group per input channel: a (*spatial, 1, in * multiplier) grouped kernel
    grouped = kernel.reshape(kernel.shape[:-2] + (1, kernel.shape[-2] * kernel.shape[-1]))
    return conv(inputs, grouped, strides, padding, data_format, dilation_rate)


def separable_conv(inputs, depthwise_kernel, pointwise_kernel, strides=1, padding="valid",
                   data_format=None, dilation_rate=1):
    """A depthwise convolution followed by a 1x1 convolution with `pointwise_kernel`
    (1, ..., in_channels * multiplier, out_channels)."""
    depthwise = depthwise_conv(inputs, depthwise_kernel, strides, padding, data_format,
                               dilation_rate)
    return conv(depthwise, pointwise_kernel, 1, "valid", data_format, dilation_rate)


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None,
                   data_format=None, dilation_rate=1):
    """The transpose (gradient) of `conv`, as Keras's Conv*DTranspose: `kernel` is
    (*spatial, out_channels, in_channels); "same" padding gives input size * strides.

    Example:
        >>> import numpy as np
        >>> x = np.ones((1, 2, 1))
        >>> conv_transpose(x, np.ones((2, 1, 1)), strides=2).ravel().tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    check_channels_last(data_format, "conv_transpose")
    inputs, kernel = as_array(inputs), as_array(kernel)
    _check_in_channels(inputs, kernel, -1)
    rank = inputs.ndim - 2
    padding = lax_padding(padding)
    steps = spatial_tuple(strides, rank, "strides")
    dilations = spatial_tuple(dilation_rate, rank, "dilation_rate")
    extras = (None,) * rank if output_padding is None else spatial_tuple(
        output_padding, rank, "output_padding")
    # The layers' transposed convolution (oneDNN's for 2-D on the CPU, else a scatter form;
    # lax.conv_transpose off the CPU): a custom layer's ops.conv_transpose training step (3x3,
    # stride 2, 32 -> 64 channels on 16x16, batch 64, 2-core AMD EPYC, quiet) took 9.1 s for 8
    # steps with XLA's inside a chunk's loop, 1.5 s in Keras on JAX, 0.12 s so.
    return transposed_convolution(inputs, kernel, steps, dilations, padding.lower(),
                                  None if output_padding is None else extras)


# -- normalizations -----------------------------------------------------------------------------

def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """`(x - mean) / sqrt(variance + epsilon) * scale + offset`, the statistics (1-D, of
    size x.shape[axis]) broadcast along `axis`.

    Example:
        >>> import numpy as np
        >>> batch_normalization(np.array([[3.0]]), np.array([1.0]), np.array([4.0]), axis=-1,
        ...                     epsilon=0.0).tolist()
        [[1.0]]
    """
    x = as_array(x)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]

    def along_axis(v):
        return None if v is None else as_array(v).reshape(shape)

    mean, variance, offset, scale = map(along_axis, (mean, variance, offset, scale))
    inverse = lax.rsqrt(variance + epsilon)
    if scale is not None:
        inverse = inverse * scale
    shift = -mean * inverse if offset is None else offset - mean * inverse
    return x * inverse + shift


def _wide(x):
    """`x` in at least float32 (Keras normalizes half precision in float32), and the dtype
    to cast the result back to."""
    x = as_array(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32)), x.dtype


def _broadcast_along(v, x, axes):
    """A gamma/beta/scale of the normalized axes' shape, broadcastable against `x`."""
    if v is None:
        return None
    v = as_array(v).astype(x.dtype)
    if v.ndim == x.ndim or list(axes) == [x.ndim - 1]:
        return v
    return v.reshape([x.shape[d] if d in axes else 1 for d in range(x.ndim)])


def _axes(axis, ndim):
    return sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None, rms_scaling=False):
    """`(x - mean) / sqrt(var + epsilon) * gamma + beta` over `axis` of each sample (in
    float32 at least, cast back). `rms_scaling=True` is Keras's deprecated form: `x /
    sqrt(var + epsilon) * gamma` (use rms_normalization instead).

    Example:
        >>> import numpy as np
        >>> [round(v, 4) for v in layer_normalization(np.array([1.0, 3.0])).tolist()]
        [-1.0, 1.0]
    """
    wide, dtype = _wide(x)
    epsilon = config.epsilon() if epsilon is None else epsilon
    axes = _axes(axis, wide.ndim)
    gamma, beta = _broadcast_along(gamma, wide, axes), _broadcast_along(beta, wide, axes)
    variance = jnp.var(wide, axis=axes, keepdims=True)
    inverse = lax.rsqrt(variance + epsilon)
    if rms_scaling:
        out = wide * inverse
        return (out if gamma is None else out * gamma).astype(dtype)
    if gamma is not None:
        inverse = inverse * gamma
    shift = -jnp.mean(wide, axis=axes, keepdims=True) * inverse
    if beta is not None:
        shift = shift + beta
    return (wide * inverse + shift).astype(dtype)


def rms_normalization(x, scale=None, axis=-1, epsilon=None):
    """`x / sqrt(mean(x**2) + epsilon) * scale` over `axis` (in float32 at least, cast back).

    Example:
        >>> import numpy as np
        >>> [round(v, 4) for v in rms_normalization(np.array([3.0, 4.0])).tolist()]  # / 3.5355
        [0.8485, 1.1314]
    """
    wide, dtype = _wide(x)
    epsilon = config.epsilon() if epsilon is None else epsilon
    if wide.ndim == 0:
        wide = wide[None]
    axes = _axes(axis, wide.ndim)
    out = wide * lax.rsqrt(jnp.mean(jnp.square(wide), axis=axes, keepdims=True) + epsilon)
    if scale is not None:
        out = out * as_array(scale).astype(wide.dtype)
    return out.astype(dtype)


# -- attention ----------------------------------------------------------------------------------

def dot_product_attention(query, key, value, bias=None, mask=None, scale=None,
                          is_causal=False, flash_attention=None, attn_logits_soft_cap=None):
    """`softmax(query . key / sqrt(H) + bias, masked) . value` for (batch, time, heads, H)
    inputs, as Keras on JAX (jax.nn.dot_product_attention's XLA implementation); key/value
    with fewer heads (a divisor of query's) is grouped-query attention. `mask`: True where a
    (query, key) pair takes part; broadcastable to (batch, heads, T, S), as `bias`.

    Example:
        >>> import numpy as np
        >>> q = np.ones((1, 2, 1, 4), np.float32)
        >>> dot_product_attention(q, q, q, is_causal=True).shape
        (1, 2, 1, 4)
    """
    if attn_logits_soft_cap is not None:
        raise ValueError("attn_logits_soft_cap is supported by Keras on TPU only, which "
                         f"kilnet does not target. Received: attn_logits_soft_cap="
                         f"{attn_logits_soft_cap!r}. Pass attn_logits_soft_cap=None.")
    if flash_attention and jax.devices()[0].platform != "gpu":
        raise ValueError(
            "flash_attention=True needs a GPU (cuDNN's fused attention); this runs on "
            f"{jax.devices()[0].platform}. Received: flash_attention=True. Pass "
            "flash_attention=None to let kilnet choose.")
    query, key, value = as_array(query), as_array(key), as_array(value)
    if not query.ndim == key.ndim == value.ndim == 4:
        raise ValueError(
            "dot_product_attention takes 4-D (batch, time, heads, depth) query, key and "
            f"value. Received: query.shape={query.shape}, key.shape={key.shape}, "
            f"value.shape={value.shape}")
    dtype = jnp.result_type(query.dtype, key.dtype, value.dtype)
    query, key, value = query.astype(dtype), key.astype(dtype), value.astype(dtype)
    bias = None if bias is None else as_array(bias).astype(dtype)
    mask = None if mask is None else as_array(mask).astype(bool)
    implementation = "cudnn" if flash_attention else "xla"
    return jax.nn.dot_product_attention(query, key, value, bias=bias, mask=mask, scale=scale,
                                        is_causal=is_causal, implementation=implementation)


# -- encodings and image quality ----------------------------------------------------------------

def multi_hot(inputs, num_classes=None, axis=-1, dtype=None, sparse=False):
    """Multi-hot encoding: 1 at each class present in a row of integer `inputs` (the
    classes of a 1-D input all go into one vector).

    Example:
        >>> import numpy as np
        >>> multi_hot(np.array([[0, 2], [1, 1]]), 3).tolist()
        [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    if num_classes is None:
        raise ValueError("Argument `num_classes` must be specified. Received: "
                         "num_classes=None")
    if sparse:
        raise ValueError("kilnet has no sparse tensors. Received: sparse=True")
    inputs = as_array(inputs).astype("int32")
    hot = jax.nn.one_hot(inputs, num_classes, dtype=dtype or FLOATX, axis=axis)
    return jnp.max(hot, axis=1 if inputs.ndim > 1 else 0)


def psnr(x1, x2, max_val):
    """Peak signal-to-noise ratio (dB) between two same-shape signals over all their
    values: `20 log10(max_val) - 10 log10(mean((x1 - x2)**2))`.

    Example:
        >>> import numpy as np
        >>> round(float(psnr(np.zeros(4), np.full(4, 0.1), 1.0)), 4)
        20.0
    """
    x1, x2 = as_array(x1), as_array(x2)
    if x1.shape != x2.shape:
        raise ValueError("psnr compares arrays of one shape. Received: "
                         f"x1.shape={x1.shape}, x2.shape={x2.shape}")
    max_val = jnp.asarray(max_val, x2.dtype)
    return 20 * jnp.log10(max_val) - 10 * jnp.log10(jnp.mean(jnp.square(x1 - x2)))


# -- CTC ----------------------------------------------------------------------------------------

def ctc_loss(target, output, target_length, output_length, mask_index=0):
    """The CTC loss of each sequence, shape (batch,): `target` integer labels (batch,
    max_label_length), `output` unnormalized scores (batch, max_time, num_classes), the real
    lengths of each, and the blank class `mask_index` (kilnet._ctc, shared with
    kilnet.losses.CTC)."""
    return _ctc.ctc_loss(as_array(target), as_array(output), as_array(target_length),
                         as_array(output_length), mask_index)


def _greedy_decode(scores, lengths, merge_repeated, blank):
    """Best class per step; repeats merged, blanks dropped, the rest moved to the front."""
    steps = scores.shape[1]
    past_end = jnp.arange(steps)[None, :] >= lengths[:, None]
    labels = jnp.where(past_end, blank, jnp.argmax(scores, axis=-1))
    best = jnp.where(past_end, 0.0, jnp.max(scores, axis=-1))
    if merge_repeated:
        repeated = jnp.pad(labels[:, 1:] == labels[:, :-1], ((0, 0), (1, 0)))
        labels = jnp.where(repeated, blank, labels)
    dropped = labels == blank
    # a stable sort on "dropped" keeps the kept labels in order, in front
    order = jnp.argsort(dropped, axis=1, stable=True)
    labels = jnp.take_along_axis(jnp.where(dropped, -1, labels), order, axis=1)
    return labels[None], -jnp.sum(best, axis=1, keepdims=True)


def _segment_logsumexp(values, segments, count):
    """log(sum(exp(values))) of each segment id in [0, count); -inf for an empty one."""
    peak = jax.ops.segment_max(values, segments, count)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    total = jax.ops.segment_sum(jnp.exp(values - peak[segments]), segments, count)
    return jnp.log(total) + peak


def _merge_prefixes(prefixes, scores, ends_blank):
    """The distinct prefixes, each with the log-sum of its entries' scores that end in a
    blank and of those that do not."""
    count = prefixes.shape[0]
    unique, which = jnp.unique(prefixes, axis=0, return_inverse=True, size=count,
                               fill_value=-1)
    which = which.reshape(-1)
    blank = _segment_logsumexp(jnp.where(ends_blank, scores, -jnp.inf), which, count)
    label = _segment_logsumexp(jnp.where(ends_blank, -jnp.inf, scores), which, count)
    return unique, blank, label


def _extend_prefixes(prefixes, scores, ends_blank, log_probs, blank):
    """Every beam entry followed by every class: a blank or a repeat of the last label
    (without a blank between) keeps the prefix, any other class appends to it."""
    entries, steps = prefixes.shape
    classes = log_probs.shape[0]
    length = jnp.sum(prefixes >= 0, axis=1)
    last = jnp.where(length > 0, prefixes[jnp.arange(entries), length - 1], -1)
    label = jnp.arange(classes)[None, :]
    keeps = (label == blank) | ((label == last[:, None]) & ~ends_blank[:, None])
    appended = prefixes[:, None, :].repeat(classes, axis=1)
    position = jax.nn.one_hot(length, steps, dtype=bool)[:, None, :]
    appended = jnp.where(position & ~keeps[:, :, None], label[:, :, None], appended)
    new_scores = scores[:, None] + log_probs[None, :]
    ends = jnp.broadcast_to(label == blank, keeps.shape)
    return (appended.reshape(entries * classes, steps), new_scores.reshape(-1),
            ends.reshape(-1))


def _beam_step(beams, log_probs, blank, beam_width):
    """One time step of the prefix beam search: extend, merge equal prefixes, keep the
    `beam_width` best (each as two entries: ending in a blank, and not)."""
    prefixes, blank_scores, label_scores = _merge_prefixes(
        *_extend_prefixes(*beams, log_probs, blank))
    best = jnp.argsort(jnp.logaddexp(blank_scores, label_scores))[-beam_width:]
    kept = prefixes[best]
    return (jnp.concatenate([kept, kept]),
            jnp.concatenate([label_scores[best], blank_scores[best]]),
            jnp.concatenate([jnp.zeros(beam_width, bool), jnp.ones(beam_width, bool)]))


def _beam_search_one(log_probs, length, blank, beam_width, top_paths):
    """The `top_paths` most likely label sequences of one sequence and their log-probs."""
    steps = log_probs.shape[0]
    beams = (jnp.full((2 * beam_width, steps), -1, jnp.int32),
             jnp.full((2 * beam_width,), -jnp.inf, log_probs.dtype).at[0].set(0.0),
             jnp.ones((2 * beam_width,), bool))   # the empty prefix, probability 1
    beams = _beam_step(beams, log_probs[0], blank, beam_width)   # Keras always reads step 0

    def step(beams, inputs):
        log_probs_t, active = inputs
        return lax.cond(active, lambda b: _beam_step(b, log_probs_t, blank, beam_width),
                        lambda b: b, beams), None

    beams, _ = lax.scan(step, beams, (log_probs[1:], jnp.arange(1, steps) < length))
    prefixes, blank_scores, label_scores = _merge_prefixes(*beams)
    totals = jnp.logaddexp(blank_scores, label_scores)
    best = jnp.argsort(totals)[-top_paths:][::-1]
    return prefixes[best], totals[best]


def ctc_decode(inputs, sequence_lengths, strategy="greedy", beam_width=100, top_paths=1,
               merge_repeated=True, mask_index=0):
    """Decodes CTC scores `inputs` (batch, max_time, num_classes; not softmaxed) into
    label sequences, -1 padded: greedy (best class per step) or a prefix beam search.

    Returns `(sequences, scores)`: greedy gives (1, batch, max_time) sequences and (batch, 1)
    minus the summed best scores; "beam_search" gives (top_paths, batch, max_time) and the
    (batch, top_paths) log-probabilities, best first.

    Example:
        >>> import numpy as np
        >>> scores = np.log(np.array([[[0.1, 0.9], [0.1, 0.9], [0.9, 0.1]]], np.float32))
        >>> ctc_decode(scores, np.array([3]))[0].tolist()   # 1, 1 merged; blank 0 dropped
        [[[1, -1, -1]]]
    """
    inputs = as_float(inputs)
    inputs = inputs.astype(jnp.promote_types(inputs.dtype, jnp.float32))
    lengths = as_array(sequence_lengths).astype(jnp.int32)
    if inputs.ndim != 3:
        raise ValueError("ctc_decode takes inputs of shape (batch, max_time, num_classes). "
                         f"Received: inputs.shape={inputs.shape}")
    blank = inputs.shape[-1] - 1 if mask_index is None else mask_index
    if strategy == "greedy":
        return _greedy_decode(inputs, lengths, merge_repeated, blank)
    if strategy != "beam_search":
        raise ValueError("Argument `strategy` must be 'greedy' or 'beam_search'. "
                         f"Received: strategy={strategy!r}")
    paths, scores = _beam_search(jax.nn.log_softmax(inputs, axis=-1), lengths, blank,
                                 beam_width, top_paths)
    return jnp.transpose(paths, (1, 0, 2)), scores


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _beam_search(log_probs, lengths, blank, beam_width, top_paths):
    """The beam search of each sequence, compiled as one program (run op by op, its scan
    and sorts would be dispatched one at a time)."""
    return jax.vmap(lambda x, n: _beam_search_one(x, n, blank, beam_width, top_paths))(
        log_probs, lengths)


# -- rearrangements -----------------------------------------------------------------------------

def _check_data_format(data_format, function):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"{function}: data_format must be 'channels_last' or "
                         f"'channels_first'. Received: data_format={data_format!r}")


def depth_to_space(x, block_size, data_format="channels_last"):
    """Moves channels into `block_size` x `block_size` spatial blocks (pixel shuffle):
    (N, H, W, C) becomes (N, H * b, W * b, C / b**2).

    Example:
        >>> import numpy as np
        >>> depth_to_space(np.arange(4.0).reshape(1, 1, 1, 4), 2)[0, :, :, 0].tolist()
        [[0.0, 1.0], [2.0, 3.0]]
    """
    _check_data_format(data_format, "depth_to_space")
    x = as_array(x)
    b = block_size
    if data_format == "channels_first":   # channels split as (C / b**2, b, b), as Keras's
        n, c, h, w = x.shape
        x = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return x.reshape(n, c // (b * b), h * b, w * b)
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, b, b, c // (b * b)).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * b, w * b, c // (b * b))


def space_to_depth(x, block_size, data_format="channels_last"):
    """The inverse of depth_to_space: (N, H, W, C) becomes (N, H / b, W / b, C * b**2).

    Example:
        >>> import numpy as np
        >>> space_to_depth(np.arange(4.0).reshape(1, 2, 2, 1), 2).ravel().tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    _check_data_format(data_format, "space_to_depth")
    x = as_array(x)
    b = block_size
    if data_format == "channels_first":   # channels gathered as (C, b, b), as Keras's
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 1, 3, 5, 2, 4)
        return x.reshape(n, c * b * b, h // b, w // b)
    n, h, w, c = x.shape
    x = x.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // b, w // b, c * b * b)


def polar(abs_, angle):
    """The complex numbers `abs_ * (cos(angle) + i sin(angle))`.

    Example:
        >>> import numpy as np
        >>> complex(polar(np.float32(2.0), np.float32(0.0)))
        (2+0j)
    """
    abs_, angle = as_array(abs_), as_array(angle)
    return lax.complex(abs_ * jnp.cos(angle), abs_ * jnp.sin(angle))


def _pair(value, argument):
    return spatial_tuple(value, 2, argument)


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """The sliding blocks of an (N, C, H, W) batch (channels first, as PyTorch's and
    Keras's unfold), shape (N, C * kH * kW, L) with L the number of blocks.

    Example:
        >>> import numpy as np
        >>> unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2)[0, :, 0].tolist()
        [0.0, 1.0, 3.0, 4.0]
    """
    x = as_array(x)
    (ph, pw) = _pair(padding, "padding")
    x = jnp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    blocks = lax.conv_general_dilated_patches(
        x, _pair(kernel_size, "kernel_size"), _pair(stride, "stride"), "VALID",
        rhs_dilation=_pair(dilation, "dilation"), dimension_numbers=("NCHW", "OIHW", "NCHW"))
    return blocks.reshape(blocks.shape[0], blocks.shape[1], -1)


def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """The inverse arrangement of unfold (col2im): (N, C * kH * kW, L) blocks summed back
    into an (N, C, *output_size) batch, overlapping values added, positions no block covers
    zero. (Keras 3.15 on JAX returns only the covered rows and columns when the blocks stop
    short of output_size; kilnet returns output_size, as PyTorch's fold.)

    Example:
        >>> import numpy as np
        >>> blocks = unfold(np.ones((1, 1, 3, 3)), 2)
        >>> fold(blocks, 3, 2)[0, 0].tolist()   # how many blocks cover each position
        [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    x = as_array(x)
    (oh, ow), (kh, kw) = _pair(output_size, "output_size"), _pair(kernel_size, "kernel_size")
    (dh, dw), (ph, pw) = _pair(dilation, "dilation"), _pair(padding, "padding")
    (sh, sw) = _pair(stride, "stride")
    n, width, _ = x.shape
    channels = width // (kh * kw)
    rows = (oh + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    cols = (ow + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    blocks = x.reshape(n, channels, kh, kw, rows, cols)
    out = jnp.zeros((n, channels, oh + 2 * ph, ow + 2 * pw), x.dtype)
    for i in range(kh):          # add each kernel position's values at their places
        for j in range(kw):
            out = out.at[:, :, i * dh:i * dh + (rows - 1) * sh + 1:sh,
                         j * dw:j * dw + (cols - 1) * sw + 1:sw].add(blocks[:, :, i, j])
    return out[:, :, ph:ph + oh, pw:pw + ow]


dispatch_symbolic(globals(), __all__)
