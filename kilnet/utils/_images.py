"""Keras's image file helpers: `load_img`, `img_to_array`, `array_to_img`, `save_img`, with
Keras's arguments, defaults and results (Pillow images and float32 arrays (height, width,
channels)), as image tutorials use them to classify one picture after training.

Pillow does the decoding, resizing and encoding, as in Keras, so the pixels are Keras's
exactly. What kilnet adds: an image whose header claims more pixels than Pillow's
decompression-bomb limit is refused before it is decoded, and `save_img` replaces a file
atomically (an interrupted save leaves the previous picture as it was).
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from kilnet import _safefile
from kilnet.utils._from_directory import check_pixel_count

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
COLOR_MODES = {"grayscale": "L", "rgb": "RGB", "rgba": "RGBA"}


def load_img(path, color_mode="rgb", target_size=None, interpolation="nearest",
             keep_aspect_ratio=False):
    """An image file as a Pillow image, converted to `color_mode` and resized to
    `target_size` (height, width) as Keras's `load_img`.

    Args:
        path: a file path, or a binary file object (io.BytesIO).
        color_mode: "rgb" (default), "rgba" or "grayscale" (8-bit, or 16/32-bit greyscale as
            stored).
        target_size: (height, width), or None to keep the image's size.
        interpolation: Pillow's resampling: "nearest" (default), "bilinear", "bicubic",
            "hamming", "box" or "lanczos".
        keep_aspect_ratio: crop the centre to the target's aspect ratio before resizing.

    Example:
        >>> import io
        >>> import numpy as np
        >>> from PIL import Image
        >>> from kilnet import utils
        >>> png = io.BytesIO()
        >>> Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(png, format="PNG")
        >>> _ = png.seek(0)
        >>> image = utils.load_img(png, target_size=(20, 30))
        >>> image.size, utils.img_to_array(image).shape
        ((30, 20), (20, 30, 3))
    """
    from PIL import Image

    if color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {list(COLOR_MODES)}. Received: "
                         f"color_mode={color_mode!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}. Received: "
                         f"interpolation={interpolation!r}")
    image = _open(path)
    if color_mode == "grayscale":
        if image.mode not in ("L", "I;16", "I"):
            image = image.convert("L")
    elif image.mode != COLOR_MODES[color_mode]:
        image = image.convert(COLOR_MODES[color_mode])
    if target_size is None:
        return image
    size = _target_size(target_size)
    if image.size == size:
        return image
    resample = getattr(Image.Resampling, interpolation.upper())
    if keep_aspect_ratio:
        return image.resize(size, resample, box=_centre_box(image.size, size))
    return image.resize(size, resample)


def img_to_array(img, data_format=None, dtype=None):
    """A Pillow image as a NumPy array (height, width, channels), float32 unless `dtype` says
    otherwise; `data_format="channels_first"` gives (channels, height, width).

    Example:
        >>> from PIL import Image
        >>> from kilnet import utils
        >>> utils.img_to_array(Image.new("L", (3, 2), 7)).tolist()
        [[[7.0], [7.0], [7.0]], [[7.0], [7.0], [7.0]]]
    """
    data_format = _data_format(data_format)
    array = np.asarray(img, dtype=dtype or "float32")
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim != 3:
        raise ValueError(f"img_to_array takes an image of 2 or 3 dimensions. Received: an "
                         f"array of shape {array.shape}")
    return np.ascontiguousarray(array.transpose(2, 0, 1)) if data_format == \
        "channels_first" else array


def array_to_img(x, data_format=None, scale=True, dtype=None):
    """A NumPy array (height, width, 1 / 3 / 4 channels) as a Pillow image, as Keras's
    `array_to_img`: with `scale=True` the values are stretched to [0, 255] first.

    Example:
        >>> import numpy as np
        >>> from kilnet import utils
        >>> image = utils.array_to_img(np.linspace(0, 1, 6).reshape(2, 3, 1))
        >>> image.mode, np.asarray(image).ravel().tolist()
        ('L', [0, 51, 102, 153, 204, 255])
    """
    from PIL import Image

    data_format = _data_format(data_format)
    x = np.array(x, dtype=dtype or "float32")
    if x.ndim != 3:
        raise ValueError(f"array_to_img takes one image, an array of 3 dimensions. Received: "
                         f"shape {x.shape}")
    if data_format == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x = x - np.min(x)
        if np.max(x) != 0:
            x /= np.max(x)
        x *= 255
    channels = x.shape[2]
    if channels in (3, 4):
        return Image.fromarray(x.astype("uint8"), "RGB" if channels == 3 else "RGBA")
    if channels == 1:
        if np.max(x) > 255:   # as Keras: a 32-bit greyscale image
            return Image.fromarray(x[:, :, 0].astype("int32"), "I")
        return Image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"array_to_img takes 1, 3 or 4 channels. Received: {channels}")


def save_img(path, x, data_format=None, file_format=None, scale=True, **kwargs):
    """Write a NumPy array as an image file (the format from `file_format` or the file's
    extension), as Keras's `save_img`; `kwargs` go to Pillow's `save` (e.g. quality=90). The
    file is replaced atomically.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> from kilnet import utils
        >>> path = os.path.join(tempfile.mkdtemp(), "grey.png")
        >>> utils.save_img(path, np.full((2, 2, 1), 9.0), scale=False)
        >>> utils.img_to_array(utils.load_img(path, color_mode="grayscale")).ravel().tolist()
        [9.0, 9.0, 9.0, 9.0]
    """
    from PIL import Image

    image = array_to_img(x, data_format=data_format, scale=scale)
    if file_format is None:
        extension = os.path.splitext(os.fspath(path))[1].lower()
        file_format = Image.registered_extensions().get(extension)
        if file_format is None:
            raise ValueError(f"save_img cannot tell the image format of {path!r} from its "
                             "extension: name it .png, .jpg, ... or pass file_format=.")
    if image.mode == "RGBA" and file_format.lower() in ("jpg", "jpeg"):
        warnings.warn("The JPEG format does not support RGBA images, converting to RGB.",
                      stacklevel=2)
        image = image.convert("RGB")
    encoded = io.BytesIO()
    image.save(encoded, format=file_format, **kwargs)
    _safefile.atomic_write(path, encoded.getvalue(), what="the image")


# -- helpers ---------------------------------------------------------------------------------------
def _open(path):
    """The image at `path` (or in a binary file object), its size checked before decoding."""
    from PIL import Image

    if hasattr(path, "read"):
        data = path.read()
    elif isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as f:
            data = f.read()
    else:
        raise TypeError(f"load_img takes a file path or a binary file object. Received: "
                        f"{type(path).__name__}")
    try:
        image = Image.open(io.BytesIO(data))
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path!r:.100} could not be decoded as an image ({error}).") from None
    check_pixel_count(image, f"{path!r:.100}")
    return image


def _target_size(target_size):
    if (not isinstance(target_size, (list, tuple)) or len(target_size) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
            for v in target_size)):
        raise ValueError("target_size must be (height, width), two positive integers. "
                         f"Received: target_size={target_size!r}")
    return int(target_size[1]), int(target_size[0])   # Pillow's (width, height)


def _centre_box(size, target):
    """Keras's crop: the largest centred box with the target's aspect ratio, (l, t, r, b)."""
    width, height = size
    target_width, target_height = target
    crop_height = min(height, (width * target_height) // target_width)
    crop_width = min(width, (height * target_width) // target_height)
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return [left, top, left + crop_width, top + crop_height]


def _data_format(data_format):
    data_format = data_format or "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("data_format must be 'channels_last' or 'channels_first'. Received: "
                         f"data_format={data_format!r}")
    return data_format


def smart_resize(x, size, interpolation="bilinear", data_format="channels_last",
                 backend_module=None):
    """Images resized to `size` (height, width) without distorting them, as Keras's
    `smart_resize`: the largest centered window with the target's aspect ratio is cut out,
    then resized. A NumPy array gives a NumPy array.

    Args:
        x: an image (height, width, channels) or a batch (batch, height, width, channels)
            (channels first with data_format="channels_first").
        size: the (height, width) to resize to.
        interpolation: as `kilnet.ops.image.resize` ("bilinear", "nearest", "bicubic", ...).
        data_format: "channels_last" (default) or "channels_first".
        backend_module: accepted for Keras compatibility (kilnet computes with kilnet.ops).

    Example:
        >>> import numpy as np
        >>> from kilnet.utils import smart_resize
        >>> smart_resize(np.ones((40, 20, 3), "float32"), (10, 10)).shape
        (10, 10, 3)
    """
    del backend_module
    from kilnet.ops import image as ops_image   # the array functions; JAX only when used
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError("data_format must be 'channels_last' or 'channels_first'. "
                         f"Received: data_format={data_format!r}")
    if len(size) != 2:
        raise ValueError(f"size must be (height, width). Received: size={size!r}")
    rank = len(np.shape(x))
    if rank not in (3, 4):
        raise ValueError("smart_resize expects an image (height, width, channels) or a batch "
                         f"(batch, height, width, channels). Received: an input of shape "
                         f"{np.shape(x)}")
    images = x if data_format == "channels_last" else np.moveaxis(np.asarray(x), -3, -1)
    height, width = np.shape(images)[-3:-1]
    target_height, target_width = size
    # Keras's window: integer arithmetic in this order, so the same pixels are kept.
    crop_height = max(min(height, int(float(width * target_height) / target_width)), 1)
    crop_width = max(min(width, int(float(height * target_width) / target_height)), 1)
    top, left = int(float(height - crop_height) / 2), int(float(width - crop_width) / 2)
    window = images[..., top:top + crop_height, left:left + crop_width, :]
    resized = ops_image.resize(window, size, interpolation=interpolation)
    if data_format == "channels_first":
        resized = np.moveaxis(np.asarray(resized), -1, -3)
    return np.asarray(resized) if isinstance(x, np.ndarray) else resized
