"""Keras's `keras.ops.image`: resizing, cropping and padding, geometric resampling (affine,
perspective, elastic), colour-space conversions, filters (Gaussian blur, Sobel), patches and
SSIM, over `jax.image`, `jax.scipy.ndimage` and `jax.lax`.

Images are channels-last (kilnet's only layout), one image (height, width, channels) or a
batch (batch, height, width, channels); data_format="channels_first" is refused with its fix.
Where Keras's JAX backend computes in a particular way (which kernel axis a Gaussian size
applies to, one random field for both displacement axes of elastic_transform), kilnet does
the same, so the numbers match.

Example:
    >>> import numpy as np
    >>> from kilnet.ops import image
    >>> image.resize(np.ones((1, 4, 4, 3)), (2, 2)).shape
    (1, 2, 2, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from kilnet import random as kilnet_random
from kilnet.ops._convert import as_array, dispatch_symbolic
from kilnet.ops.nn import (check_channels_last, conv, conv_dimension_numbers, depthwise_conv,
                           lax_padding, spatial_tuple)

__all__ = [
    "affine_transform", "crop_images", "elastic_transform", "extract_patches",
    "extract_patches_3d", "gaussian_blur", "hsv_to_rgb", "map_coordinates", "pad_images",
    "perspective_transform", "resize", "rgb_to_grayscale", "rgb_to_hsv",
    "scale_and_translate", "sobel_edges", "ssim",
]

RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic")
# map_coordinates' spline order of each resampling interpolation
SPLINE_ORDERS = {"nearest": 0, "bilinear": 1}
FILL_MODES = ("constant", "nearest", "wrap", "mirror", "reflect")
SCALE_AND_TRANSLATE_METHODS = ("linear", "bilinear", "trilinear", "cubic", "bicubic",
                               "tricubic", "lanczos3", "lanczos5")


# -- argument checks and the batch axis ---------------------------------------------------------

def _one_of(value, allowed, argument):
    if value not in allowed:
        raise ValueError(f"Argument `{argument}` must be one of {list(allowed)}. "
                         f"Received: {argument}={value!r}")
    return value


def _images(images, function, argument="images"):
    """`images` as an array of rank 3 or 4, and whether it was a single image."""
    images = as_array(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"{function} takes one image (height, width, channels) or a batch (batch, "
            f"height, width, channels). Received: {argument}.shape={images.shape}")
    return images, images.ndim == 3


def _batched(function):
    """`function(batch, ...)` applied to one image too (given a batch axis and back)."""
    def run(images, single, *args, **kwargs):
        out = function(images[None] if single else images, *args, **kwargs)
        return out[0] if single else out
    return run


# -- colour spaces ------------------------------------------------------------------------------

def rgb_to_grayscale(images, data_format=None):
    """The luma `0.2989 R + 0.587 G + 0.114 B` of RGB images, keeping a channel axis of 1
    (computed in float and cast back to the images' dtype); grayscale images pass through.

    Example:
        >>> import numpy as np
        >>> rgb_to_grayscale(np.ones((1, 1, 3), np.float32)).shape
        (1, 1, 1)
    """
    check_channels_last(data_format, "image.rgb_to_grayscale")
    images, _ = _images(images, "rgb_to_grayscale")
    if images.shape[-1] not in (1, 3):
        raise ValueError("rgb_to_grayscale takes 3 (RGB) or 1 (grayscale) channels. "
                         f"Received: images.shape={images.shape}")
    if images.shape[-1] == 1:
        return images
    wide = images.astype(jnp.promote_types(images.dtype, jnp.float32)
                         if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32)
    weights = jnp.array([0.2989, 0.5870, 0.1140], wide.dtype)
    return jnp.tensordot(wide, weights, axes=(-1, -1))[..., None].astype(images.dtype)


def _float_images(images, function):
    images, _ = _images(images, function)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{function} takes float images (values in [0, 1]). Received: "
                         f"images.dtype={images.dtype}. Cast them first, e.g. "
                         "ops.cast(images, 'float32') / 255.")
    return images


def rgb_to_hsv(images, data_format=None):
    """RGB float images (values in [0, 1]) to HSV, each channel in [0, 1] (hue in turns).

    Example:
        >>> import numpy as np
        >>> rgb_to_hsv(np.array([[[0.0, 1.0, 0.0]]], np.float32)).ravel().tolist()
        [0.3333333432674408, 1.0, 1.0]
    """
    check_channels_last(data_format, "image.rgb_to_hsv")
    images = _float_images(images, "rgb_to_hsv")
    # values within one epsilon of 0 count as 0, so a grey pixel has no hue
    images = jnp.where(jnp.abs(images) < jnp.finfo(images.dtype).eps, 0.0, images)
    red, green, blue = images[..., 0], images[..., 1], images[..., 2]
    value = jnp.maximum(jnp.maximum(red, green), blue)
    spread = value - jnp.minimum(jnp.minimum(red, green), blue)
    saturation = jnp.where(value > 0, spread / jnp.where(value > 0, value, 1.0), 0.0)
    per_turn = 1.0 / (6.0 * jnp.where(spread > 0, spread, 1.0))
    hue = jnp.where(value == green, per_turn * (blue - red) + 2.0 / 6.0,
                    per_turn * (red - green) + 4.0 / 6.0)
    hue = jnp.where(value == red, per_turn * (green - blue), hue)
    hue = jnp.where(spread > 0, hue, 0.0) + (hue < 0.0).astype(hue.dtype)
    return jnp.stack([hue, saturation, value], axis=-1)


def hsv_to_rgb(images, data_format=None):
    """HSV float images (each channel in [0, 1]) back to RGB.

    Example:
        >>> import numpy as np
        >>> hsv_to_rgb(np.array([[[1 / 3, 1.0, 1.0]]], np.float32)).round(4).ravel().tolist()
        [0.0, 1.0, 0.0]
    """
    check_channels_last(data_format, "image.hsv_to_rgb")
    images = _float_images(images, "hsv_to_rgb")
    hue, saturation, value = images[..., 0], images[..., 1], images[..., 2]
    sixths = jnp.mod(hue, 1.0) * 6.0
    weights = (jnp.clip(jnp.abs(sixths - 3.0) - 1.0, 0.0, 1.0),
               jnp.clip(2.0 - jnp.abs(sixths - 2.0), 0.0, 1.0),
               jnp.clip(2.0 - jnp.abs(sixths - 4.0), 0.0, 1.0))
    return jnp.stack([value * (1.0 - saturation + saturation * w) for w in weights], axis=-1)


# -- resizing, padding, cropping ----------------------------------------------------------------

def _aspect_crop(images, height, width):
    """The largest centred crop with the aspect ratio height:width (Keras's rounding)."""
    h, w = images.shape[1:3]
    crop_h = max(min(h, int(float(w * height) / width)), 1)
    crop_w = max(min(w, int(float(h * width) / height)), 1)
    top, left = int(float(h - crop_h) / 2), int(float(w - crop_w) / 2)
    return images[:, top:top + crop_h, left:left + crop_w, :]


def _aspect_pad(images, height, width, fill_value):
    """Padding with fill_value to the aspect ratio height:width; Keras pads one amount on
    both sides, so the result may be one pixel short of the exact ratio."""
    h, w = images.shape[1:3]
    top = int(float(max(h, int(float(w * height) / width)) - h) / 2)
    left = int(float(max(w, int(float(h * width) / height)) - w) / 2)
    return jnp.pad(images, ((0, 0), (top, top), (left, left), (0, 0)),
                   constant_values=jnp.asarray(fill_value, images.dtype))


def _saturate_cast(x, dtype):
    """Rounded and clipped into an integer dtype's range (Keras's cast of resized ints)."""
    info = jnp.iinfo(dtype)
    return jnp.clip(jnp.round(x), info.min, info.max).astype(dtype)


def resize(images, size, interpolation="bilinear", antialias=False,
           crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, fill_mode="constant",
           fill_value=0.0, data_format=None):
    """Images resized to `size` (height, width) with jax.image.resize's `interpolation`
    ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5"), optionally antialiased;
    first centre-cropped (crop_to_aspect_ratio) or padded with fill_value
    (pad_to_aspect_ratio) to the target's aspect ratio, so nothing is stretched. Integer
    images come back rounded in their dtype.

    Example:
        >>> import numpy as np
        >>> resize(np.arange(16.0).reshape(4, 4, 1), (2, 2))[..., 0].tolist()
        [[2.5, 4.5], [10.5, 12.5]]
    """
    check_channels_last(data_format, "image.resize")
    _one_of(interpolation, RESIZE_INTERPOLATIONS, "interpolation")
    if fill_mode != "constant":
        raise ValueError("Argument `fill_mode` must be 'constant' (the only one Keras "
                         f"resizes with on JAX). Received: fill_mode={fill_mode!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `crop_to_aspect_ratio` and `pad_to_aspect_ratio` can "
                         "be True. Received: both True")
    if len(size) != 2:
        raise ValueError("Argument `size` must be (height, width). "
                         f"Received: size={size!r}")
    images, single = _images(images, "resize")
    return _batched(_resize)(images, single, tuple(int(s) for s in size), interpolation,
                             antialias, crop_to_aspect_ratio, pad_to_aspect_ratio,
                             fill_value)


def _resize(images, size, interpolation, antialias, crop, pad, fill_value):
    if crop:
        images = _aspect_crop(images, *size)
    elif pad:
        images = _aspect_pad(images, *size, fill_value)
    out = jax.image.resize(images, (images.shape[0], *size, images.shape[-1]),
                           method=interpolation, antialias=antialias)
    if out.dtype == images.dtype or not jnp.issubdtype(images.dtype, jnp.integer):
        return out.astype(images.dtype)
    return _saturate_cast(out, images.dtype)


def _sides(before, after, target, size, names):
    """Two of (before, after, target) given, the missing one computed; all must be >= 0."""
    if [before, after, target].count(None) != 1:
        raise ValueError(f"Give exactly two of {', '.join(names)}. Received: "
                         f"{names[0]}={before}, {names[1]}={after}, {names[2]}={target}")
    if before is None:
        before = target - after - size if names[0].endswith("padding") else \
            size - target - after
    if after is None:
        after = target - before - size if names[0].endswith("padding") else \
            size - target - before
    for name, value in zip(names, (before, after, target)):
        if value is not None and value < 0:
            raise ValueError(f"Argument `{name}` must be >= 0 for an image side of {size}. "
                             f"Received: {name}={value}")
    return before, after


def pad_images(images, top_padding=None, left_padding=None, bottom_padding=None,
               right_padding=None, target_height=None, target_width=None, data_format=None):
    """Images padded with zeros; on each axis give two of the paddings and the target size.

    Example:
        >>> import numpy as np
        >>> pad_images(np.ones((15, 25, 3)), 2, 3, target_height=20, target_width=30).shape
        (20, 30, 3)
    """
    check_channels_last(data_format, "image.pad_images")
    images, single = _images(images, "pad_images")
    h, w = images.shape[-3:-1]
    top, bottom = _sides(top_padding, bottom_padding, target_height, h,
                         ("top_padding", "bottom_padding", "target_height"))
    left, right = _sides(left_padding, right_padding, target_width, w,
                         ("left_padding", "right_padding", "target_width"))
    widths = [(top, bottom), (left, right), (0, 0)]
    return jnp.pad(images, widths if single else [(0, 0)] + widths)


def crop_images(images, top_cropping=None, left_cropping=None, bottom_cropping=None,
                right_cropping=None, target_height=None, target_width=None,
                data_format=None):
    """Images cropped; on each axis give two of the croppings and the target size.

    Example:
        >>> import numpy as np
        >>> crop_images(np.ones((15, 25, 3)), 2, 3, target_height=10, target_width=20).shape
        (10, 20, 3)
    """
    check_channels_last(data_format, "image.crop_images")
    images, _ = _images(images, "crop_images")
    h, w = images.shape[-3:-1]
    top, bottom = _sides(top_cropping, bottom_cropping, target_height, h,
                         ("top_cropping", "bottom_cropping", "target_height"))
    left, right = _sides(left_cropping, right_cropping, target_width, w,
                         ("left_cropping", "right_cropping", "target_width"))
    return images[..., top:h - bottom, left:w - right, :]


# -- resampling ---------------------------------------------------------------------------------

def map_coordinates(inputs, coordinates, order, fill_mode="constant", fill_value=0):
    """`inputs` read at `coordinates` (one array of positions per axis of `inputs`) by
    spline interpolation of `order` 0 (nearest) or 1 (linear), as
    jax.scipy.ndimage.map_coordinates; outside, `fill_mode` decides.

    Example:
        >>> import numpy as np
        >>> map_coordinates(np.array([0.0, 10.0]), np.array([[0.25]]), order=1).tolist()
        [2.5]
    """
    inputs, coordinates = as_array(inputs), as_array(coordinates)
    if coordinates.ndim < 2 or coordinates.shape[0] != inputs.ndim:
        raise ValueError(
            "Argument `coordinates` must be (inputs.ndim, ...): one array of positions per "
            f"axis of `inputs`. Received: inputs.shape={inputs.shape}, "
            f"coordinates.shape={coordinates.shape}")
    _one_of(fill_mode, FILL_MODES, "fill_mode")
    _one_of(order, (0, 1), "order")
    return jax.scipy.ndimage.map_coordinates(inputs, list(coordinates), order, fill_mode,
                                             fill_value)


def _resample(images, rows, cols, order, fill_mode, fill_value):
    """Each image (batch, h, w, c) read at its own (h, w) grid of input rows and columns,
    channel by channel."""
    def one_channel(channel, r, c):
        return jax.scipy.ndimage.map_coordinates(channel, [r, c], order=order, mode=fill_mode,
                                                 cval=fill_value)

    per_channel = jax.vmap(one_channel, in_axes=(2, None, None), out_axes=2)
    return jax.vmap(per_channel)(images, rows, cols)


def affine_transform(images, transform, interpolation="bilinear", fill_mode="constant",
                     fill_value=0, data_format=None):
    """Images resampled through projective maps `transform` [a0, a1, a2, b0, b1, b2, c0,
    c1] (one, or one per image; 6 values mean c0 = c1 = 0): output pixel (x, y) reads the
    input at ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1.

    Example:
        >>> import numpy as np
        >>> shift = np.array([1, 0, 1, 0, 1, 0, 0, 0], np.float32)   # read one column right
        >>> affine_transform(np.arange(3.0).reshape(1, 3, 1), shift)[..., 0].tolist()
        [[1.0, 2.0, 0.0]]
    """
    check_channels_last(data_format, "image.affine_transform")
    _one_of(interpolation, SPLINE_ORDERS, "interpolation")
    _one_of(fill_mode, FILL_MODES, "fill_mode")
    images, single = _images(images, "affine_transform")
    transform = as_array(transform)
    if transform.ndim not in (1, 2) or transform.shape[-1] not in (6, 8):
        raise ValueError("Argument `transform` must be 8 (or 6) numbers, or one row of them "
                         f"per image. Received: transform.shape={transform.shape}")
    transform = jnp.broadcast_to(transform, (1 if single else images.shape[0],
                                             transform.shape[-1]))
    return _batched(_affine)(images, single, transform, SPLINE_ORDERS[interpolation],
                             fill_mode, fill_value)


def _affine(images, transform, order, fill_mode, fill_value):
    _, h, w, _ = images.shape
    dtype = jnp.promote_types(images.dtype, jnp.float32)
    y, x = jnp.meshgrid(jnp.arange(h, dtype=dtype), jnp.arange(w, dtype=dtype),
                        indexing="ij")
    t = transform.astype(dtype)[:, :, None, None]
    k = 1.0 if transform.shape[-1] == 6 else t[:, 6] * x + t[:, 7] * y + 1.0
    cols = (t[:, 0] * x + t[:, 1] * y + t[:, 2]) / k
    rows = (t[:, 3] * x + t[:, 4] * y + t[:, 5]) / k
    return _resample(images, rows, cols, order, fill_mode, fill_value)


def _homographies(start_points, end_points):
    """The maps [h0..h7] taking each set of 4 end points onto its start points: the 8
    linear equations of a homography, solved."""
    (sx, sy), (ex, ey) = jnp.moveaxis(start_points, -1, 0), jnp.moveaxis(end_points, -1, 0)
    zeros, ones = jnp.zeros_like(ex), jnp.ones_like(ex)
    x_rows = jnp.stack([ex, ey, ones, zeros, zeros, zeros, -sx * ex, -sx * ey], axis=-1)
    y_rows = jnp.stack([zeros, zeros, zeros, ex, ey, ones, -sy * ex, -sy * ey], axis=-1)
    equations = jnp.concatenate([x_rows, y_rows], axis=1)
    targets = jnp.concatenate([sx, sy], axis=-1)[..., None]
    return jnp.linalg.solve(equations, targets)[..., 0]


def perspective_transform(images, start_points, end_points, interpolation="bilinear",
                          fill_value=0, data_format=None):
    """Images warped so that the 4 `start_points` (x, y) land on the 4 `end_points` (one
    set, or one per image); outside the input reads `fill_value`.

    Example:
        >>> import numpy as np
        >>> corners = np.array([[0, 0], [2, 0], [0, 2], [2, 2]], np.float32)
        >>> image = np.arange(9.0).reshape(3, 3, 1)
        >>> bool((perspective_transform(image, corners, corners) == image).all())
        True
    """
    check_channels_last(data_format, "image.perspective_transform")
    _one_of(interpolation, SPLINE_ORDERS, "interpolation")
    images, single = _images(images, "perspective_transform")
    start_points, end_points = as_array(start_points), as_array(end_points)
    for name, points in (("start_points", start_points), ("end_points", end_points)):
        if points.ndim not in (2, 3) or points.shape[-2:] != (4, 2):
            raise ValueError(f"Argument `{name}` must be (4, 2) points, or (batch, 4, 2). "
                             f"Received: {name}.shape={points.shape}")
    if start_points.shape != end_points.shape:
        raise ValueError("start_points and end_points must have one shape. Received: "
                         f"start_points.shape={start_points.shape}, "
                         f"end_points.shape={end_points.shape}")
    maps = _homographies(start_points.reshape(-1, 4, 2).astype(jnp.float32),
                         end_points.reshape(-1, 4, 2).astype(jnp.float32))
    return _batched(_perspective)(images, single, maps, SPLINE_ORDERS[interpolation],
                                  fill_value)


def _perspective(images, maps, order, fill_value):
    _, h, w, _ = images.shape
    y, x = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    m = jnp.broadcast_to(maps, (images.shape[0], 8))[:, :, None, None]
    k = m[:, 6] * x + m[:, 7] * y + 1.0
    cols = (m[:, 0] * x + m[:, 1] * y + m[:, 2]) / k
    rows = (m[:, 3] * x + m[:, 4] * y + m[:, 5]) / k
    return _resample(images, rows, cols, order, "constant", fill_value)


def scale_and_translate(images, output_shape, scale, translation, spatial_dims, method,
                        antialias=True):
    """jax.image.scale_and_translate: `images` resampled to `output_shape`, the axes
    `spatial_dims` scaled by `scale` and shifted by `translation`, with `method`'s kernel.

    Example:
        >>> import numpy as np
        >>> scale_and_translate(np.ones((4, 4)), (2, 2), np.array([0.5, 0.5]),
        ...                     np.zeros(2), (0, 1), "linear").round(4).tolist()
        [[1.0, 1.0], [1.0, 1.0]]
    """
    _one_of(method, SCALE_AND_TRANSLATE_METHODS, "method")
    return jax.image.scale_and_translate(as_array(images), output_shape, spatial_dims,
                                         as_array(scale), as_array(translation), method,
                                         antialias)


# -- filters ------------------------------------------------------------------------------------

def _gaussian_1d(size: int, sigma, dtype):
    offsets = jnp.arange(size, dtype=dtype) - (size - 1) / 2
    weights = jnp.exp(-0.5 * jnp.square(offsets / sigma))
    return weights / jnp.sum(weights)


def _blur(images, kernel_size, sigma):
    """Each channel convolved ("same", zeros outside) with a Gaussian of kernel_size and
    sigma; as Keras on JAX, the kernel's rows (height) take kernel_size[1] and sigma[1]."""
    rows = _gaussian_1d(kernel_size[1], sigma[1], images.dtype)
    cols = _gaussian_1d(kernel_size[0], sigma[0], images.dtype)
    kernel = jnp.outer(rows, cols)[:, :, None, None]
    kernel = jnp.broadcast_to(kernel, kernel.shape[:2] + (images.shape[-1], 1))
    return depthwise_conv(images, kernel, padding="same")


def gaussian_blur(images, kernel_size=(3, 3), sigma=(1.0, 1.0), data_format=None):
    """Images blurred by a Gaussian filter ("same" size, zeros outside). As Keras on JAX,
    kernel_size[0] and sigma[0] apply along the width, index 1 along the height.

    Example:
        >>> import numpy as np
        >>> gaussian_blur(np.ones((1, 5, 5, 1), np.float32))[0, 2, 2, 0].round(4).tolist()
        1.0
    """
    check_channels_last(data_format, "image.gaussian_blur")
    images, single = _images(images, "gaussian_blur")
    kernel_size = spatial_tuple(kernel_size, 2, "kernel_size")
    sigma = as_array(sigma).astype(images.dtype) * jnp.ones(2, images.dtype)
    return _batched(_blur)(images, single, kernel_size, sigma)


def sobel_edges(images, data_format=None):
    """The Sobel derivatives of each channel of a batch of images ("same", zeros outside),
    shape (batch, height, width, channels, 2): [..., 0] along the height (dy), [..., 1]
    along the width (dx).

    Example:
        >>> import numpy as np
        >>> ramp = np.tile(np.arange(4.0), (4, 1)).reshape(1, 4, 4, 1)   # rises along x
        >>> sobel_edges(ramp)[0, 1, 1, 0].tolist()
        [0.0, 8.0]
    """
    check_channels_last(data_format, "image.sobel_edges")
    images = as_array(images)
    if images.ndim != 4:
        raise ValueError("sobel_edges takes a batch (batch, height, width, channels). "
                         f"Received: images.shape={images.shape}")
    smooth, slope = jnp.array([1, 2, 1], images.dtype), jnp.array([-1, 0, 1], images.dtype)
    edges = []
    for kernel in (jnp.outer(slope, smooth), jnp.outer(smooth, slope)):   # dy, then dx
        kernel = jnp.broadcast_to(kernel[:, :, None, None], (3, 3, images.shape[-1], 1))
        edges.append(depthwise_conv(images, kernel, padding="same"))
    return jnp.stack(edges, axis=-1)


def elastic_transform(images, alpha=20.0, sigma=5.0, interpolation="bilinear",
                      fill_mode="reflect", fill_value=0.0, seed=None, data_format=None):
    """Images resampled through a random smooth displacement: normal noise scaled by sigma,
    blurred by a Gaussian of std `sigma` (kernel int(6 sigma) | 1), times `alpha`. As Keras
    on JAX, one noise field (one key) displaces both axes. `seed`: as kilnet.random.

    Example:
        >>> import numpy as np
        >>> elastic_transform(np.ones((8, 8, 1), np.float32), seed=1).shape
        (8, 8, 1)
    """
    check_channels_last(data_format, "image.elastic_transform")
    _one_of(interpolation, SPLINE_ORDERS, "interpolation")
    _one_of(fill_mode, FILL_MODES, "fill_mode")
    images, single = _images(images, "elastic_transform")
    key = kilnet_random.draw_key(seed)
    return _batched(_elastic)(images, single, key, alpha, sigma, SPLINE_ORDERS[interpolation],
                              fill_mode, fill_value)


def _elastic(images, key, alpha, sigma, order, fill_mode, fill_value):
    batch, h, w, _ = images.shape
    size = int(6 * float(sigma)) | 1
    noise = jax.random.normal(key, (batch, h, w, 1), images.dtype) * sigma
    shift = alpha * _blur(noise, (size, size), (sigma, sigma))[..., 0]
    y, x = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    out = _resample(images, y + shift, x + shift, order, fill_mode, fill_value)
    return out.astype(images.dtype)


def ssim(image1, image2, max_val=1.0, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03,
         data_format=None):
    """The structural similarity of each pair of images (1 for identical images): local
    means, variances and covariance under a Gaussian window ("valid"), combined per pixel,
    averaged over pixels and channels. Shape (batch,), or () for single images.

    Example:
        >>> import numpy as np
        >>> image = np.random.default_rng(0).random((16, 16, 1)).astype("float32")
        >>> round(float(ssim(image, image)), 4)
        1.0
    """
    check_channels_last(data_format, "image.ssim")
    image1, single = _images(image1, "ssim", "image1")
    image2, _ = _images(image2, "ssim", "image2")
    dtype = image1.dtype
    wide = jnp.promote_types(dtype, jnp.float32) if jnp.issubdtype(
        dtype, jnp.floating) else jnp.float32
    image1, image2 = image1.astype(wide), image2.astype(wide)
    window = _gaussian_1d(filter_size, filter_sigma, wide)
    kernel = jnp.outer(window, window)[:, :, None, None]
    return _batched(_ssim)(image1, single, image2[None] if single else image2, kernel,
                           (k1 * max_val) ** 2, (k2 * max_val) ** 2).astype(dtype)


def _ssim(image1, image2, kernel, c1, c2):
    def local_mean(x):   # each channel filtered on its own
        channels = jnp.moveaxis(x, -1, 1)[..., None]
        flat = channels.reshape((-1,) + channels.shape[2:])
        return conv(flat, kernel).reshape(channels.shape[:2] + (-1,))

    mu1, mu2 = local_mean(image1), local_mean(image2)
    var1 = local_mean(image1 * image1) - mu1 * mu1
    var2 = local_mean(image2 * image2) - mu2 * mu2
    covariance = local_mean(image1 * image2) - mu1 * mu2
    similarity = ((2 * mu1 * mu2 + c1) * (2 * covariance + c2)
                  / ((mu1 * mu1 + mu2 * mu2 + c1) * (var1 + var2 + c2)))
    return jnp.mean(similarity, axis=(1, 2))


# -- patches ------------------------------------------------------------------------------------

def extract_patches(images, size, strides=None, dilation_rate=1, padding="valid",
                    data_format=None):
    """The `size` patches of images (2 sizes) or volumes (3 sizes), each flattened into the
    channel axis in (row, column, channel) order: (batch, rows, cols, h * w * channels) for
    images, as Keras (what a ViT's patch embedding reads). `strides` defaults to `size`.

    Example:
        >>> import numpy as np
        >>> patches = extract_patches(np.arange(16.0).reshape(4, 4, 1), 2)
        >>> patches.shape, patches[0, 1].tolist()
        ((2, 2, 4), [2.0, 3.0, 6.0, 7.0])
    """
    check_channels_last(data_format, "image.extract_patches")
    rank = 3 if not isinstance(size, int) and len(size) == 3 else 2
    images = as_array(images)
    if images.ndim not in (rank + 1, rank + 2):
        raise ValueError(
            f"extract_patches with {rank} sizes takes one {'volume' if rank == 3 else 'image'}"
            f" of rank {rank + 1} or a batch of rank {rank + 2}. Received: "
            f"images.shape={images.shape}, size={size!r}")
    size = spatial_tuple(size, rank, "size")
    strides = size if not strides else spatial_tuple(strides, rank, "strides")
    single = images.ndim == rank + 1
    batch = images[None] if single else images
    patches = lax.conv_general_dilated_patches(
        batch, size, strides, lax_padding(padding),
        rhs_dilation=spatial_tuple(dilation_rate, rank, "dilation_rate"),
        dimension_numbers=conv_dimension_numbers(rank))
    # lax orders each patch (channel, *window); Keras's is (*window, channel)
    channels = batch.shape[-1]
    shape = patches.shape[:-1]
    patches = patches.reshape(shape + (channels, -1))
    patches = jnp.swapaxes(patches, -1, -2).reshape(shape + (-1,))
    return patches[0] if single else patches


def extract_patches_3d(volumes, size, strides=None, dilation_rate=1, padding="valid",
                       data_format=None):
    """The (depth, height, width) patches of volumes, as extract_patches with 3 sizes.

    Example:
        >>> import numpy as np
        >>> extract_patches_3d(np.ones((2, 6, 6, 6, 3), np.float32), 3).shape
        (2, 2, 2, 2, 81)
    """
    return extract_patches(volumes, spatial_tuple(size, 3, "size"), strides, dilation_rate,
                           padding, data_format)


# extract_patches_3d is extract_patches (Keras records both as ExtractPatches)
dispatch_symbolic(globals(), set(__all__) - {"extract_patches_3d"})
