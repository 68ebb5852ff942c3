"""Keras's transposed convolution as a function of arrays, channels-last, with Keras's output
sizes and kernel layout (spatial..., filters, in_channels): what the Conv*DTranspose layers and
`kilnet.ops.conv_transpose` run. One computation serves every rank (Conv1DTranspose runs the
2-D one on a one-column image).

Each input pixel adds `x[i, j] @ kernel[a, b]` (a filters-vector) to output pixel
(i * stride + a * dilation, j * stride + b * dilation), and so on along every spatial axis;
Keras's `padding` and `output_padding` then choose which window of that full result is kept
(jax.lax.conv_transpose's explicit padding, whose baseline is `effective_kernel - 1` on each
side).

On CPU it is written as one matmul (every pixel times the whole kernel) followed by one
`lax.pad` a tap that spreads the tap's contributions onto the strided output grid and crops
the window (negative padding crops): the same reason as Conv2D's patches, `lax.conv` inside
the XLA training loop is very slow on CPU. 2-D ones run on oneDNN where it can take them.
Elsewhere `lax.conv_transpose` is used. All give the same numbers (tests/test_text_conv.py and
tests/test_conv_lstm.py compare them and Keras).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from jax import lax

from kilnet._kernels import onednn_conv
from kilnet._kernels.conv import dilated_span


def transpose_padding(kernel: int, stride: int, dilation: int, padding: str,
                      output_padding) -> tuple[int, int]:
    """(left, right) padding of the stride-dilated input as lax.conv_transpose takes it, for
    Keras's output size: 'valid' (i - 1) * s + max(k, s), 'same' i * s, plus output_padding
    (extra rows at the end) when given."""
    span = dilated_span(kernel, dilation)
    if padding == "valid":
        extra = max(span, stride) - span if output_padding is None else output_padding
        return span - 1, span - 1 + extra
    if output_padding is None:
        total = stride + span - 2
    else:
        total = span + span % 2 - 2 + output_padding
    left = min((total + 1) // 2, span - 1)
    return left, total - left


def transpose_size(size, kernel, stride, dilation, padding, output_padding):
    """The output size along one axis (None stays None)."""
    if size is None:
        return None
    left, right = transpose_padding(kernel, stride, dilation, padding, output_padding)
    return (size - 1) * stride + 1 + left + right - dilation * (kernel - 1)


def conv_transpose_scatter(x, kernel, strides, dilation, pads):
    """One matmul for every (pixel, tap), then each tap's (N, *spatial, filters) slab is spread
    onto the output grid by one lax.pad per tap; any number of spatial axes."""
    *window, filters, cin = kernel.shape
    rank = len(window)
    spatial = x.shape[1:1 + rank]
    order = (rank + 1,) + tuple(range(rank + 1))   # (in, *window, filters)
    taps = x @ jnp.transpose(kernel, order).reshape(cin, -1)
    taps = taps.reshape(x.shape[:1 + rank] + tuple(window) + (filters,))
    out = None
    for tap in itertools.product(*(range(k) for k in window)):
        spread = [_spread(spatial[i], tap[i], window[i], strides[i], dilation[i], pads[i])
                  for i in range(rank)]
        piece = lax.pad(taps[(Ellipsis,) + tap + (slice(None),)], jnp.zeros((), x.dtype),
                        [(0, 0, 0)] + spread + [(0, 0, 0)])
        out = piece if out is None else out + piece
    return out


def _spread(size, tap, kernel, stride, dilation, pads):
    """lax.pad's (low, high, interior) along one axis for the contributions of one tap:
    input i lands at i * stride + tap * dilation of the full output (length
    (size - 1) * stride + span), whose window starts `span - 1 - left` later and ends
    `span - 1 - right` earlier (negative padding crops, positive adds zeros)."""
    span = dilated_span(kernel, dilation)
    left, right = pads
    offset = tap * dilation
    after = (span - 1) - offset  # full-output positions after this tap's last landing spot
    return offset - (span - 1 - left), after - (span - 1 - right), stride - 1


# jax.lax's names of the channels-last layouts, by number of spatial axes.
_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"),
            3: ("NDHWC", "DHWIO", "NDHWC")}


def conv_transpose_native(x, kernel, strides, dilation, pads):
    return lax.conv_transpose(x, kernel, strides, padding=list(pads), rhs_dilation=dilation,
                              dimension_numbers=_LAYOUTS[kernel.ndim - 2],
                              transpose_kernel=True)


def conv_transpose(x, kernel, strides, dilation, padding, output_padding):
    """Keras's transposed convolution of channels-last x by a (spatial..., filters, in) kernel,
    1 to 3 spatial axes. On CPU oneDNN's (2-D, `conv2d_transpose_onednn`) where it can, else
    the scatter form; lax.conv_transpose elsewhere."""
    rank = kernel.ndim - 2
    extra = (None,) * rank if output_padding is None else output_padding
    pads = [transpose_padding(kernel.shape[i], strides[i], dilation[i], padding, extra[i])
            for i in range(rank)]
    if jax.default_backend() != "cpu":
        return conv_transpose_native(x, kernel, strides, dilation, pads)
    # The convolution this one transposes: padded by the window's span - 1 less each side.
    spans = [dilated_span(kernel.shape[i], dilation[i]) for i in range(rank)]
    conv_pads = tuple((spans[i] - 1 - pads[i][0], spans[i] - 1 - pads[i][1])
                      for i in range(rank))
    if rank == 2 and onednn_conv.accepts((x, kernel), conv_pads):
        out_size = tuple(transpose_size(x.shape[1 + i], kernel.shape[i], strides[i],
                                        dilation[i], padding, extra[i]) for i in range(2))
        return onednn_conv.conv2d_transpose_onednn(x, kernel, tuple(strides), conv_pads,
                                                    tuple(dilation), out_size)
    return conv_transpose_scatter(x, kernel, strides, dilation, pads)


# The 2-D names the tests and Conv1DTranspose use: the same functions.
conv2d_transpose_scatter = conv_transpose_scatter
conv2d_transpose_native = conv_transpose_native
conv2d_transpose = conv_transpose
