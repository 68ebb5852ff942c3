"""Turn a picture of a handwritten digit into a 28x28 array that looks like an MNIST digit.

MNIST's own recipe (LeCun et al.): white ink on black, the digit's bounding box scaled to fit
20x20 keeping its aspect ratio, then placed in a 28x28 field so that its center of mass lies at
the center. A photo or a drawing is usually black ink on white paper, of any size, so we undo
that first. Used by `kilnet predict`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 28          # MNIST images are 28x28
BOX = 20           # the digit's longest side, as in MNIST
INK_LEVEL = 0.05   # after contrast stretching, pixels above this fraction of full ink count


def load_digit(path) -> np.ndarray:
    """Read an image file (PNG, JPEG, ...) and return a float32 (28, 28) array in [0, 1].

    Raises FileNotFoundError, OSError (unreadable image) or ValueError (no digit in it).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as image:
            image.load()
            gray = _grayscale(image)
    except UnidentifiedImageError:
        raise OSError(f"{path}: not an image kilnet can read (expected PNG, JPEG, BMP, GIF, "
                      "...)") from None
    try:
        return mnist_like(gray)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _grayscale(image) -> np.ndarray:
    """Luminance in 0..255 as float32; transparent pixels become background."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), np.float32)
    rgba = image.convert("RGBA")
    gray = np.asarray(rgba.convert("L"), np.float32)
    alpha = np.asarray(rgba, np.float32)[..., 3] / 255.0
    opaque = alpha > 0.5
    # Ink drawn on a transparent canvas: put it on the background that contrasts with it.
    ink_is_dark = opaque.any() and gray[opaque].mean() < 128
    background = 255.0 if ink_is_dark else 0.0
    return gray * alpha + background * (1.0 - alpha)


def mnist_like(gray: np.ndarray) -> np.ndarray:
    """(H, W) luminance 0..255, any size -> (28, 28) float32 in [0, 1], white digit on black."""
    from PIL import Image

    gray = np.asarray(gray, np.float32)
    if gray.ndim != 2 or min(gray.shape) < 1:
        raise ValueError(f"expected a 2-D grayscale image. Received: shape {gray.shape}")
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if np.median(border) > 127:          # light background: MNIST is white on black
        gray = 255.0 - gray
        border = 255.0 - border
    # Stretch contrast so the background is 0 and the strongest ink is 255 (paper is rarely
    # pure white, nor pencil pure black).
    background, peak = float(np.median(border)), float(gray.max())
    if peak - background < 16:
        raise ValueError("found no digit: the image is blank or has almost no contrast")
    ink = np.clip((gray - background) / (peak - background), 0.0, 1.0) * 255.0

    rows = np.flatnonzero((ink > INK_LEVEL * 255).any(axis=1))
    cols = np.flatnonzero((ink > INK_LEVEL * 255).any(axis=0))
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]

    h, w = ink.shape
    scale = BOX / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = Image.fromarray(ink.astype(np.uint8)).resize((new_w, new_h), Image.LANCZOS)
    patch = np.asarray(resized, np.float32)
    return _paste_centered(patch) / 255.0


def _paste_centered(patch: np.ndarray) -> np.ndarray:
    """Place `patch` in a 28x28 canvas with its center of mass at the canvas center."""
    total = patch.sum()
    h, w = patch.shape
    if total > 0:
        cy = float((patch.sum(axis=1) * np.arange(h)).sum() / total)
        cx = float((patch.sum(axis=0) * np.arange(w)).sum() / total)
    else:
        cy, cx = (h - 1) / 2, (w - 1) / 2
    # MNIST digits have their center of mass at index (14, 14) (measured: 13.99, 14.02).
    top, left = round(SIZE / 2 - cy), round(SIZE / 2 - cx)
    # Keep the whole patch inside the canvas (a very lopsided digit could otherwise fall off).
    top, left = min(max(top, 0), SIZE - h), min(max(left, 0), SIZE - w)
    canvas = np.zeros((SIZE, SIZE), np.float32)
    canvas[top:top + h, left:left + w] = patch
    return canvas
