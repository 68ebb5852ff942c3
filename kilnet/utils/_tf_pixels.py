"""The pixels Keras's `image_dataset_from_directory` reads from an image file, through Pillow.

Keras decodes the files with TensorFlow's `decode_image(channels=...)`, whose conversions are
not Pillow's `convert`:

- a colour PNG read as grey goes through libpng's RGB-to-grey step, which TensorFlow sets to
  the weights 0.299 and 0.587: libpng keeps them as 15-bit fixed-point integers (9797, 19234,
  and 32768 minus both, 3737, for blue) and drops the remainder, so
  grey = (9797 R + 19234 G + 3737 B) >> 15, where Pillow's "L" rounds 0.299 R + 0.587 G +
  0.114 B (up to one level apart). kilnet applies the same to BMP and GIF files, which Keras
  refuses to read as grey;
- a JPEG read as grey is libjpeg's own grey output (the luma plane, never converted to RGB
  and back), decoded with libjpeg's fast integer DCT, TensorFlow's default; so is a grey
  JPEG read in colour, its level repeated in each channel;
- a 16-bit grey PNG keeps the high byte of each sample, 8-bit as every pixel Keras reads, in
  any colour mode (Pillow keeps the 16-bit values, and its RGB conversion clips them to 255).

Other pixels are Pillow's, which equal TensorFlow's, except colour JPEGs read in colour:
Pillow decodes them with libjpeg's accurate DCT, TensorFlow with the fast one and smooth chroma
upsampling, which Pillow does not combine (a few levels apart).
"""

from __future__ import annotations

import numpy as np

# libpng's fixed-point weights for png_set_rgb_to_gray(png, 1, 0.299, 0.587): each weight in
# units of 1e-5, times 32768, divided by 100000 and truncated; blue takes the rest of 32768.
_RED = 29900 * 32768 // 100000
_GREEN = 58700 * 32768 // 100000
_BLUE = 32768 - _RED - _GREEN
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def rgb_to_grey(rgb) -> np.ndarray:
    """uint8 grey levels of uint8 RGB pixels (..., 3) as libpng converts them for TensorFlow:
    (9797 R + 19234 G + 3737 B) >> 15 (Pillow's "L" makes 124 of the second pixel).

    Example:
        >>> import numpy as np
        >>> rgb_to_grey(np.array([[255, 255, 255], [10, 200, 30], [0, 0, 1]], np.uint8)).tolist()
        [255, 123, 0]
    """
    rgb = np.asarray(rgb, np.int64)
    weighted = _RED * rgb[..., 0] + _GREEN * rgb[..., 1] + _BLUE * rgb[..., 2]
    return (weighted >> 15).astype(np.uint8)


def keras_pixels(image, channels) -> np.ndarray:
    """(height, width, channels) uint8 pixels of an opened, not yet decoded Pillow image, as
    TensorFlow's `decode_image(channels=channels)` gives them to Keras (see the module).

    Example:
        >>> from PIL import Image
        >>> keras_pixels(Image.new("RGB", (2, 1), (10, 200, 30)), 1).ravel().tolist()
        [123, 123]
    """
    from PIL import Image

    if image.format == "JPEG" and (image.mode == "L" or (channels == 1 and image.mode == "RGB")):
        image = Image.fromarray(_jpeg_grey(image), "L")
    if _is_16_bit_grey(image):
        image = Image.fromarray((np.asarray(image, np.uint32) >> 8).astype(np.uint8), "L")
    if channels == 1:
        if image.mode in ("1", "L", "LA", "La"):
            grey = np.asarray(image.convert("L") if image.mode != "L" else image)
        else:
            grey = rgb_to_grey(np.asarray(image.convert("RGB")))
        return grey[:, :, None]
    mode = _PIL_MODES[channels]
    return np.asarray(image.convert(mode) if image.mode != mode else image)


def _jpeg_grey(image) -> np.ndarray:
    """libjpeg's grey output for a JPEG, with its fast integer DCT (TensorFlow's default)."""
    image.draft("L", image.size)
    if image.decoderconfig == (1, 0):
        # Pillow's draft flag: its decoder then asks libjpeg for the fast DCT; at full size
        # and grey output nothing else of draft mode applies.
        image.decoderconfig = (1, 1)
    return np.asarray(image)


def _is_16_bit_grey(image) -> bool:
    return image.mode.startswith("I;16") or (image.mode == "I" and image.format == "PNG")
