"""The convolutions kilnet runs, as functions of arrays: Keras's channels-last 2-D
convolution and its CPU forms, and the CPU convolution `kilnet.ops.conv` shares with the
layers (1 to 3 spatial axes).

Why several forms: `lax.conv` inside an XLA loop is very slow on CPU (jax-ml/jax#12868; we
measured the Keras MNIST convnet at 155 s per epoch in a scan against 14.5 s with patches +
matmul). On the CPU, oneDNN's convolution (`onednn_conv`) runs where it takes the case, else a
product for 1x1 kernels, XLA's convolution with written-out gradients, or patches + one matmul
for grouped ones; on GPU the native convolution is the fast one, so it is used there. All give
the same numbers (tests/test_layers.py and tests/test_conv_onednn.py compare them).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from kilnet._custom_gradients import custom_vjp
from kilnet._kernels import onednn_conv


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Keras 'same' padding: output size ceil(size / stride), extra pad after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_size(size, kernel: int, stride: int, padding: str):
    """The length of an axis after a window slides over it; None for an axis of unknown
    length (a fully convolutional model's `Input((None, None, 3))`), each compiled program
    seeing its real length.

    >>> output_size(28, 3, 1, "valid"), output_size(28, 3, 2, "same"), output_size(None, 3, 1, "same")
    (26, 14, None)
    """
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def too_small(*sizes) -> bool:
    """Whether a known output length is below 1 (the window does not fit)."""
    return any(size is not None and size < 1 for size in sizes)


def pad_same(x, kernel_hw, strides, value=0.0):
    (ph0, ph1) = same_padding(x.shape[1], kernel_hw[0], strides[0])
    (pw0, pw1) = same_padding(x.shape[2], kernel_hw[1], strides[1])
    return jnp.pad(x, ((0, 0), (ph0, ph1), (pw0, pw1), (0, 0)), constant_values=value)


def window_slices(x, window, strides, dilation=(1, 1)):
    """Every (i, j) tap of a (dilated) window as a strided slice of x: (N, Ho, Wo, C) each."""
    (kh, kw), (sh, sw), (dh, dw) = window, strides, dilation
    ho = (x.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (x.shape[2] - dw * (kw - 1) - 1) // sw + 1
    return [
        x[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw, :]
        for i in range(kh) for j in range(kw)
    ]


def dilated_span(kernel: int, dilation: int) -> int:
    """The input extent one dilated window covers."""
    return dilation * (kernel - 1) + 1


def conv2d_patches(x, kernel, strides, padding, dilation=(1, 1), groups=1):
    """Convolution as im2col: concatenate the kh*kw shifted views, then one matmul (with
    groups: one batched matmul over the groups, as an einsum)."""
    kh, kw, cin_group, cout = kernel.shape
    if padding == "same":
        x = pad_same(x, (dilated_span(kh, dilation[0]), dilated_span(kw, dilation[1])),
                     strides)
    patches = jnp.concatenate(window_slices(x, (kh, kw), strides, dilation), axis=-1)
    # Measured on CPU, a lax.scan of 50 gradient steps over a (32, 16, 16, 8) input, 3x3
    # kernel, 16 filters, "same": dilation_rate=2 0.04 s here against 1.5 s with lax.conv;
    # groups=2 0.02 s against 0.8 s.
    if groups == 1:
        return patches @ kernel.reshape(kh * kw * cin_group, cout)
    # Keras's grouping: input channels [g*cin_group, (g+1)*cin_group) feed output channels
    # [g*cout_group, (g+1)*cout_group).
    patches = patches.reshape(patches.shape[:3] + (kh * kw, groups, cin_group))
    weights = kernel.reshape(kh * kw, cin_group, groups, cout // groups)
    y = jnp.einsum("nhwkgc,kcgf->nhwgf", patches, weights)
    return y.reshape(y.shape[:3] + (cout,))


def conv2d_native(x, kernel, strides, padding, dilation=(1, 1), groups=1):
    return lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding.upper(), rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
    )


# -- XLA's convolution inside loops on CPU: its own gradients, in the layout XLA runs fast ------
# XLA's CPU backend runs a convolution fast only in the canonical layout (batch, spatial...,
# features) x (spatial..., in, out); the gradient JAX derives for the kernel is a convolution in
# another layout, which XLA turns canonical when the step is its own program but not inside a
# while loop, where it falls back to a naive loop (measured, one 3x3 convolution of a
# (128, 16, 16, 32) batch, 8 steps of forward and both gradients, 2-core AMD EPYC: 9.6 s in a
# loop, 0.15 s as separate programs). Written out with transposes into the canonical layout,
# the loop runs at the separate programs' speed: 0.15 s, against 0.35-0.53 s for patches.
_CANONICAL = ("NHWC", "HWIO", "NHWC")


def _explicit_padding(x_shape, kernel_shape, strides, padding, dilation):
    """((before, after), ...) zeros an axis (1-D to 3-D): given as such, or Keras's "valid" /
    "same"."""
    if not isinstance(padding, str):
        return tuple(tuple(p) for p in padding)
    if padding == "valid":
        return ((0, 0),) * len(strides)
    return tuple(same_padding(x_shape[1 + a], dilated_span(kernel_shape[a], dilation[a]),
                              strides[a]) for a in range(len(strides)))


@custom_vjp(nondiff_argnums=(2, 3, 4))
def conv2d_canonical(x, kernel, strides, padding, dilation):
    """conv2d_native (groups 1) whose gradients are canonical-layout convolutions too.
    `padding`: "valid", "same", or explicit ((top, bottom), (left, right)) as a tuple."""
    pads = _explicit_padding(x.shape, kernel.shape, strides, padding, dilation)
    return lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation,
                                    dimension_numbers=_CANONICAL)


def _canonical_forward(x, kernel, strides, padding, dilation):
    return conv2d_canonical(x, kernel, strides, padding, dilation), (x, kernel)


def _canonical_backward(strides, padding, dilation, residuals, dy):
    x, kernel = residuals
    pads = _explicit_padding(x.shape, kernel.shape, strides, padding, dilation)
    return (_input_gradient(dy, kernel, x.shape, strides, pads, dilation),
            _kernel_gradient(x, dy, kernel.shape, strides, pads, dilation))


# The kernel gradient's convolution (below) sums over the batch in one contraction that Eigen
# spreads poorly over threads: ResNet-8's first-stage one (batch 128, 32x32, 16 -> 16) ran
# 10.4 ms on 2 cores against 13.9 ms on one. Split into 4 batch chunks whose sums XLA runs side
# by side: 7.4 ms on 2 cores, 13.1 ms on one (2-core AMD EPYC, in a loop); the MNIST convnet's
# 32 -> 64 one 5.5 -> 4.7 ms. With few input channels the chunks cost more than they save (the
# convnet's 1 -> 32: 1.7 -> 2.7 ms), so those stay whole, and chunks keep at least
# KERNEL_GRADIENT_MIN_CHUNK samples.
KERNEL_GRADIENT_CHUNKS = 4
KERNEL_GRADIENT_MIN_CHUNK = 16
KERNEL_GRADIENT_MIN_CHANNELS = 16


def _kernel_gradient(x, dy, kernel_shape, strides, pads, dilation):
    """The kernel gradient as the sum of its batch chunks' (see KERNEL_GRADIENT_CHUNKS)."""
    n = x.shape[0]
    chunks = max(1, min(KERNEL_GRADIENT_CHUNKS, n // KERNEL_GRADIENT_MIN_CHUNK))
    if x.shape[-1] < KERNEL_GRADIENT_MIN_CHANNELS:
        chunks = 1
    bounds = [n * c // chunks for c in range(chunks + 1)]
    # The chunks' sums stay in float32 at least until they are added, as one convolution
    # would accumulate them (16-bit policies).
    return sum(_chunk_kernel_gradient(x[a:b], dy[a:b], kernel_shape, strides, pads, dilation)
               for a, b in zip(bounds, bounds[1:])).astype(dy.dtype)


def _chunk_kernel_gradient(x, dy, kernel_shape, strides, pads, dilation):
    """dK[i, j, c, f] = sum over n, h, w of x_padded[n, h*s + i*d, w*s + j*d, c] dy[n, h, w, f]:
    the channels of x as a batch of images (c, H, W, n) convolved with dy as an (h, w, n, f)
    kernel dilated by the strides, stepping by the dilation."""
    kh, kw = kernel_shape[:2]
    ho, wo = dy.shape[1:3]
    x = _channels_first(x)
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    x = x[:, :strides[0] * (ho - 1) + dilation[0] * (kh - 1) + 1,
          :strides[1] * (wo - 1) + dilation[1] * (kw - 1) + 1]
    dk = lax.conv_general_dilated(x, jnp.transpose(dy, (1, 2, 0, 3)),
                                  dilation, "VALID", rhs_dilation=strides,
                                  dimension_numbers=_CANONICAL,
                                  preferred_element_type=jnp.promote_types(dy.dtype,
                                                                           jnp.float32))
    return jnp.transpose(dk, (1, 2, 0, 3))


def _channels_first(x):
    """x (n, h, w, c) as (c, h, w, n).

    With up to 128 channels as a product with the identity, `eye @ x`: XLA CPU fuses the
    producers of x (a batch normalization, a ReLU, a residual sum) into a transposition and
    recomputes them in its transposed reading order, 4-14 ns an element in the ResNet-8
    bench; the product (2c flops an element) materializes x and writes it channels first
    (that bench's epoch 1.15x faster). Past 128 channels the product costs more than the
    transposition it avoids."""
    if x.shape[-1] > 128:
        return jnp.transpose(x, (3, 1, 2, 0))
    return jnp.einsum("cd,nhwd->chwn", jnp.eye(x.shape[-1], dtype=x.dtype), x)


def _input_gradient(dy, kernel, x_shape, strides, pads, dilation):
    """dx: dy convolved with the flipped kernel (in and out swapped), padded so that it covers
    every input position; with strides, phase by phase (_strided_input_gradient)."""
    if strides != (1, 1):
        return _strided_input_gradient(dy, kernel, x_shape, strides, pads)
    padding = []
    for a in range(2):
        span = dilation[a] * (kernel.shape[a] - 1)
        low = span - pads[a][0]
        high = x_shape[1 + a] + span - (dy.shape[1 + a] - 1) - 1 - low
        padding.append((low, high))
    flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2))
    return lax.conv_general_dilated(dy, flipped, (1, 1), padding,
                                    rhs_dilation=dilation, dimension_numbers=_CANONICAL)


def _strided_input_gradient(dy, kernel, x_shape, strides, pads):
    """dx of a strided convolution, one phase of the input grid at a time.

    The input rows sh*a + p (0 <= p < sh) receive gradient only through the kernel rows
    p, p + sh, p + 2*sh...; so each of the sh*sw phases is a stride-1 convolution of dy with
    that sub-kernel, and the phases interleave into dx. Spreading dy out with zeros instead
    (`lhs_dilation`) multiplies zeros: measured in a loop, ResNet-8's 3x3 stride-2 16->32
    convolution (batch 128, 32x32) 14.1 ms -> 6.5 ms, its 32->64 one 4.8 -> 3.7 ms (2-core AMD
    EPYC). Dilated kernels never reach here: Keras refuses strides with dilation."""
    sh, sw = strides
    n, ho, wo, cin = dy.shape[0], dy.shape[1], dy.shape[2], kernel.shape[2]
    hp, wp = x_shape[1] + sum(pads[0]), x_shape[2] + sum(pads[1])
    rows, cols = -(-hp // sh), -(-wp // sw)  # each phase's extent, padded frame rounded up
    phases = []
    for p in range(sh):
        for q in range(sw):
            sub = kernel[p::sh, q::sw]
            if sub.shape[0] == 0 or sub.shape[1] == 0:  # a kernel smaller than its stride
                phases.append(jnp.zeros((n, rows, cols, cin), dy.dtype))
                continue
            flipped = jnp.transpose(jnp.flip(sub, (0, 1)), (0, 1, 3, 2))
            padding = ((sub.shape[0] - 1, rows - ho), (sub.shape[1] - 1, cols - wo))
            phases.append(lax.conv_general_dilated(dy, flipped, (1, 1), padding,
                                                   dimension_numbers=_CANONICAL))
    grid = jnp.stack(phases, axis=3).reshape(n, rows, cols, sh, sw, cin)
    grid = jnp.transpose(grid, (0, 1, 3, 2, 4, 5)).reshape(n, rows * sh, cols * sw, cin)
    return grid[:, pads[0][0]:pads[0][0] + x_shape[1], pads[1][0]:pads[1][0] + x_shape[2]]


conv2d_canonical.defvjp(_canonical_forward, _canonical_backward)


def conv2d_pointwise(x, kernel, strides, padding):
    """A 1x1 convolution as what it is: every strides-th pixel times the (in, out) matrix.
    JAX's gradients of the product are products too; measured in a loop, ResNet-8's 1x1
    stride-2 shortcut 16->32 (batch 128, 32x32): forward 0.84 -> 0.39 ms, kernel gradient
    5.4 -> 0.45 ms against the canonical convolution (2-core AMD EPYC)."""
    pads = _explicit_padding(x.shape, kernel.shape, strides, padding, (1, 1))
    if any(any(side) for side in pads):
        x = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
    return x[:, ::strides[0], ::strides[1]] @ kernel[0, 0]


def onednn_convolution(x, kernel, strides, padding, dilation, groups=1):
    """oneDNN's convolution (`onednn_conv`, 1 to 3 spatial axes) when it can take this one
    (float32, no negative padding, oneDNN built and enabled), else None. `padding`: "valid",
    "same" or ((before, after), ...) an axis."""
    strides, dilation = tuple(strides), tuple(dilation)
    pads = _explicit_padding(x.shape, kernel.shape, strides, padding, dilation)
    if not onednn_conv.accepts((x, kernel), pads):
        return None
    return onednn_conv.conv_onednn(x, kernel, strides, pads, dilation, groups)


def conv2d_cpu(x, kernel, strides, padding, dilation):
    """The CPU convolution for groups 1: oneDNN's where it can (`onednn_convolution`; for ResNet-8's
    1x1 shortcuts too, 1.04x its epoch against the product below), else a product for 1x1
    kernels and XLA's convolution with canonical gradients for the others."""
    strides, dilation = tuple(strides), tuple(dilation)
    y = onednn_convolution(x, kernel, strides, padding, dilation)
    if y is not None:
        return y
    if kernel.shape[:2] == (1, 1):
        return conv2d_pointwise(x, kernel, strides, padding)
    return conv2d_canonical(x, kernel, strides, padding, dilation)


def conv2d(x, kernel, strides, padding, dilation=(1, 1), groups=1):
    """The convolution kilnet's layers use: on CPU conv2d_cpu, or for groups > 1 oneDNN's
    grouped convolution where it can, else patches + one batched matmul; XLA's own with JAX's
    gradients elsewhere."""
    if jax.default_backend() != "cpu":
        return conv2d_native(x, kernel, strides, padding, dilation, groups)
    if groups == 1:
        return conv2d_cpu(x, kernel, strides, padding, dilation)
    y = onednn_convolution(x, kernel, strides, padding, dilation, groups)
    return conv2d_patches(x, kernel, strides, padding, dilation, groups) if y is None else y


def cpu_convolution(x, kernel, strides, padding, dilation, groups=1):
    """kilnet.ops.conv's CPU convolution (1 to 3 spatial axes), the one the layers run:
    conv2d_cpu for a 2-D convolution of groups 1, else oneDNN's where it takes the case,
    else None (XLA's)."""
    if x.ndim == 4 and groups == 1:
        return conv2d_cpu(x, kernel, strides, padding, dilation)
    return onednn_convolution(x, kernel, strides, padding, dilation, groups)
