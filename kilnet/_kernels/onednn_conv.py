"""oneDNN's CPU convolutions in kilnet's compiled programs, with their gradients.

Why: XLA's CPU convolution is slowest at the gradients, its kernel gradient most of all.
Measured in a loop on a 2-core AMD EPYC (batch 128), the MNIST convnet's 3x3 32 -> 64
convolution on 13x13 images: XLA forward 3.1 ms, input gradient 5.0, kernel gradient 9.4;
oneDNN 2.8 / 3.1 / 2.9. Keras on TensorFlow runs oneDNN's kernels too.

How: the forward, input-gradient and kernel-gradient handlers of `onednn.cc` (built and
registered by `kilnet._kernels.onednn`), wrapped in custom VJPs. float32 goes through oneDNN
where it is available (`onednn.available()`), bfloat16 (the mixed_bfloat16 policy) where the
processor has bfloat16 instructions (`onednn.takes_bfloat16()`); elsewhere bfloat16, and
float16 (mixed_float16) everywhere, run through the float32 handlers, their operands widened
(exactly) and the result rounded back, as XLA runs a 16-bit product, since XLA's own 16-bit
convolutions are slower still. Other dtypes and devices keep XLA's. On a 2-core Xeon with AMX, the convnet's 3x3 32 -> 64
convolution (batch 128, 13x13, forward and both gradients in a loop): XLA bfloat16 55 ms,
oneDNN float32 16.0 ms, oneDNN bfloat16 6.8 ms. Used by Conv1D, Conv2D (groups and 1x1
included), Conv3D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet._custom_gradients import custom_vjp
from kilnet._kernels import onednn


def accepts(arrays, pads) -> bool:
    """Whether oneDNN can take a convolution of these operands with these explicit pads in a
    program traced now: float32, bfloat16 or float16 operands (see `_handler_operands`), no
    negative (cropping) pad, oneDNN available."""
    dtypes = {jnp.dtype(a.dtype) for a in arrays}
    return (len(dtypes) == 1 and dtypes.pop() in (jnp.float32, jnp.bfloat16, jnp.float16)
            and not _crops(pads) and onednn.available())


def _handler_operands(x, kernel):
    """(x, kernel, the result's dtype or None) as the handlers take them: float16, and
    bfloat16 on a processor without bfloat16 instructions, are widened to float32, which holds
    every 16-bit product exactly (the handlers sum in float32 either way), and the result is
    rounded back. On the 2-core Xeon with AMX, the convnet's 3x3 32 -> 64 convolution forward
    and backward in a loop (one run): bfloat16 this way 12.3 ms, float32 11.5, native bfloat16
    4.3, XLA's bfloat16 53 ms, XLA's float16 55 ms."""
    narrow = x.dtype
    if narrow == jnp.float16 or (narrow == jnp.bfloat16 and not onednn.takes_bfloat16()):
        return x.astype(jnp.float32), kernel.astype(jnp.float32), narrow
    return x, kernel, None


def _narrowed(y, dtype):
    return y if dtype is None else y.astype(dtype)


def _crops(pads) -> bool:
    return any(side < 0 for axis in pads for side in axis)


def _check_operands(x, kernel, pads):
    if _crops(pads):
        raise ValueError(f"oneDNN takes no negative padding (cropping). Received: pads={pads}")
    if not accepts((x, kernel), pads):
        raise ValueError(f"oneDNN's convolutions take float32, bfloat16 or float16 operands, "
                         f"both of one dtype. Received: x {x.dtype}, kernel {kernel.dtype}; cast "
                         f"them, or use XLA's convolution")


def _geometry(strides, pads, dilation, groups):
    """The handlers' attribute: groups, then (stride, pad before, pad after, dilation) an axis."""
    per_axis = [(s, low, high, d) for s, (low, high), d in zip(strides, pads, dilation)]
    return np.array([groups] + [v for axis in per_axis for v in axis], np.int64)


def output_shape(x_shape, kernel_shape, strides, pads, dilation):
    """(batch, out spatial..., filters) of the convolution."""
    sizes = [(x_shape[1 + a] + sum(pads[a]) - dilation[a] * (kernel_shape[a] - 1) - 1)
             // strides[a] + 1 for a in range(len(strides))]
    return (x_shape[0], *sizes, kernel_shape[-1])


def _call(handler, shape, a, b, geometry):
    """A handler's result: in the operands' dtype, but the kernel gradient is summed and
    returned in float32 (cast to the kernel's dtype by the caller)."""
    dtype = jnp.float32 if handler == "kernel_gradient" else a.dtype
    return onednn.call("conv_" + handler, jax.ShapeDtypeStruct(shape, dtype), a, b,
                        geometry=geometry)


def conv_onednn(x, kernel, strides, pads, dilation, groups=1):
    """The float32, bfloat16 or float16 (see `_handler_operands`) convolution of
    (batch, spatial..., in) x by a (window..., in / groups, out) kernel, 1 to 3 spatial axes,
    explicit ((before, after), ...) zero padding, on oneDNN (see `onednn.available`). With
    groups, XLA's `feature_group_count` (depthwise: groups = in).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from kilnet._kernels.onednn_conv import conv_onednn
        >>> from kilnet._kernels.onednn import available
        >>> x, k = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2))
        >>> y = conv_onednn(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1)) if available() else (
        ...     jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
        ...                                  dimension_numbers=("NHWC", "HWIO", "NHWC")))
        >>> y[0, :, :, 0].tolist()
        [[4.0, 6.0, 6.0, 4.0], [6.0, 9.0, 9.0, 6.0], [6.0, 9.0, 9.0, 6.0], [4.0, 6.0, 6.0, 4.0]]
    """
    if not onednn.available():
        raise RuntimeError(f"oneDNN's convolutions are not available here: {onednn.status()}")
    _check_operands(x, kernel, pads)
    if not 3 <= x.ndim <= 5 or x.ndim != kernel.ndim:
        raise ValueError(f"conv_onednn: 1 to 3 spatial axes. Received: x {x.shape}, "
                         f"kernel {kernel.shape}")
    if x.shape[-1] != kernel.shape[-2] * groups or kernel.shape[-1] % groups:
        raise ValueError(f"conv_onednn: input channels {x.shape[-1]} and kernel "
                         f"{kernel.shape} do not make {groups} groups")
    x, kernel, result_dtype = _handler_operands(x, kernel)
    return _narrowed(_convolve(x, kernel, strides, pads, dilation, groups), result_dtype)


# The three oneDNN primitives are linear in each operand, and each one's gradients are the
# other two: so every gradient, of any order (a gradient penalty's, WGAN-GP), runs on oneDNN.
@custom_vjp(nondiff_argnums=(2, 3, 4, 5))
def _convolve(x, kernel, strides, pads, dilation, groups):
    shape = output_shape(x.shape, kernel.shape, strides, pads, dilation)
    return _call("forward", shape, x, kernel, _geometry(strides, pads, dilation, groups))


def _forward(x, kernel, strides, pads, dilation, groups):
    return _convolve(x, kernel, strides, pads, dilation, groups), (x, kernel)


def _backward(strides, pads, dilation, groups, residuals, dy):
    x, kernel = residuals
    return (_input_gradient(dy, kernel, strides, pads, dilation, groups, x.shape),
            _kernel_gradient(x, dy, strides, pads, dilation, groups, kernel.shape)
            .astype(kernel.dtype))


_convolve.defvjp(_forward, _backward)


@custom_vjp(nondiff_argnums=(2, 3, 4, 5, 6))
def _input_gradient(dy, kernel, strides, pads, dilation, groups, x_shape):
    """The convolution's gradient for its input (x_shape): linear in dy and in the kernel."""
    return _call("input_gradient", x_shape, dy, kernel,
                 _geometry(strides, pads, dilation, groups))


def _input_gradient_forward(dy, kernel, strides, pads, dilation, groups, x_shape):
    return _input_gradient(dy, kernel, strides, pads, dilation, groups, x_shape), (dy, kernel)


def _input_gradient_backward(strides, pads, dilation, groups, x_shape, residuals, g):
    dy, kernel = residuals
    return (_convolve(g, kernel, strides, pads, dilation, groups),
            _kernel_gradient(g, dy, strides, pads, dilation, groups, kernel.shape)
            .astype(kernel.dtype))


_input_gradient.defvjp(_input_gradient_forward, _input_gradient_backward)


@custom_vjp(nondiff_argnums=(2, 3, 4, 5, 6))
def _kernel_gradient(x, dy, strides, pads, dilation, groups, kernel_shape):
    """The convolution's gradient for its kernel, summed in float32: linear in x and dy."""
    return _call("kernel_gradient", kernel_shape, x, dy,
                 _geometry(strides, pads, dilation, groups))


def _kernel_gradient_forward(x, dy, strides, pads, dilation, groups, kernel_shape):
    return _kernel_gradient(x, dy, strides, pads, dilation, groups, kernel_shape), (x, dy)


def _kernel_gradient_backward(strides, pads, dilation, groups, kernel_shape, residuals, g):
    x, dy = residuals
    g = g.astype(x.dtype)
    return (_input_gradient(dy, g, strides, pads, dilation, groups, x.shape),
            _convolve(x, g, strides, pads, dilation, groups).astype(dy.dtype))


_kernel_gradient.defvjp(_kernel_gradient_forward, _kernel_gradient_backward)


def conv2d_transpose_onednn(x, kernel, strides, pads, dilation, out_size):
    """Keras's transposed convolution of (batch, h, w, in) x by a (kh, kw, filters, in) kernel
    on oneDNN: the input gradient of the convolution of a (batch, *out_size, filters) image by
    that kernel with explicit `pads`, whose output has x's size. Its gradients are that
    convolution (for x) and its kernel gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet._kernels.onednn_conv import conv2d_transpose_onednn
        >>> from kilnet._kernels.onednn import available
        >>> x, k = jnp.ones((1, 2, 2, 1)), jnp.ones((2, 2, 1, 1))
        >>> if available():
        ...     y = conv2d_transpose_onednn(x, k, (2, 2), ((0, 0), (0, 0)), (1, 1), (4, 4))
        ...     print(y.shape, float(y.sum()))
        ... else:
        ...     print((1, 4, 4, 1), 16.0)
        (1, 4, 4, 1) 16.0
    """
    if not onednn.available():
        raise RuntimeError(f"oneDNN's convolutions are not available here: {onednn.status()}")
    _check_operands(x, kernel, pads)
    expected = output_shape((x.shape[0], *out_size, kernel.shape[2]), kernel.shape, strides,
                            pads, dilation)
    if expected != x.shape[:-1] + (kernel.shape[3],):
        raise ValueError(f"conv2d_transpose_onednn: a {out_size} output convolved back gives "
                         f"{expected[1:3]}, not the input's {x.shape[1:3]}")
    x, kernel, result_dtype = _handler_operands(x, kernel)
    shape = (x.shape[0], *out_size, kernel.shape[2])
    return _narrowed(_input_gradient(x, kernel, strides, pads, dilation, 1, shape),
                     result_dtype)



