"""Max and average pooling (2-D, channels-last) and global average pooling.

Pooling is written with strided slices (or a reshape when windows tile the image), not
`lax.reduce_window`, for the same reason convolutions are: XLA's CPU windowed ops are slow
inside the training loop.
"""

from __future__ import annotations

import jax.numpy as jnp

from kilnet.layers._base import Layer, as_pair, check_padding
from kilnet.layers._conv import output_size, pad_same, window_slices


class _Pooling2D(Layer):
    config_keys = ("pool_size", "strides", "padding")

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None,
                 **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError("Only data_format='channels_last' is supported. "
                             f"Received: data_format={data_format!r}")
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = as_pair(strides if strides is not None else self.pool_size, "strides")
        self.padding = check_padding(padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{type(self).__name__} expects (height, width, channels) inputs. "
                f"Received an input of shape {input_shape}."
            )
        h, w, c = input_shape
        ho = output_size(h, self.pool_size[0], self.strides[0], self.padding)
        wo = output_size(w, self.pool_size[1], self.strides[1], self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(f"pool_size={self.pool_size} is larger than the input {input_shape}.")
        return (ho, wo, c)

    def _tiles(self, x):
        """Windows that exactly tile the image: a reshape is the cheapest gather."""
        (ph, pw), (n, h, w, c) = self.pool_size, x.shape
        ho, wo = h // ph, w // pw
        return x[:, :ho * ph, :wo * pw, :].reshape(n, ho, ph, wo, pw, c)

    def _tiling(self):
        return self.padding == "valid" and self.pool_size == self.strides


class MaxPooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self._tiling():
            return self._tiles(x).max(axis=(2, 4)), state
        if self.padding == "same":
            x = pad_same(x, self.pool_size, self.strides, value=-jnp.inf)
        slices = window_slices(x, self.pool_size, self.strides)
        out = slices[0]
        for s in slices[1:]:
            out = jnp.maximum(out, s)
        return out, state


class AveragePooling2D(_Pooling2D):
    def apply(self, params, state, x, **_):
        if self._tiling():
            return self._tiles(x).mean(axis=(2, 4)), state
        if self.padding == "valid":
            return sum(window_slices(x, self.pool_size, self.strides)) / (
                self.pool_size[0] * self.pool_size[1]), state
        # Keras averages 'same' windows over the real pixels only, not the padding.
        total = sum(window_slices(pad_same(x, self.pool_size, self.strides), self.pool_size,
                                  self.strides))
        ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
        count = sum(window_slices(pad_same(ones, self.pool_size, self.strides), self.pool_size,
                                  self.strides))
        return total / count, state


class GlobalAveragePooling2D(Layer):
    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError("GlobalAveragePooling2D expects (height, width, channels) inputs. "
                             f"Received an input of shape {input_shape}.")
        return (input_shape[-1],)

    def apply(self, params, state, x, **_):
        return x.mean(axis=(1, 2)), state
