"""Benchmark data: Fashion-MNIST from local IDX files, or a synthetic stand-in.

Every framework in a benchmark run gets exactly the same arrays from here:
float32 images scaled to [0, 1] with shape (n, 28, 28) and int32 labels.
Only NumPy is used, so each runner process (kilnet's venv or the peers' venv)
reads the data the same way.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

FASHION_MNIST_DIR = os.environ.get(
    "KILNET_BENCH_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"
)
_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read one (optionally gzipped) IDX file into a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"not an IDX file: {path}")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    return np.frombuffer(raw, dtype=dtype, offset=offset, count=int(np.prod(shape))).reshape(shape)


def fashion_mnist_available(directory: str = FASHION_MNIST_DIR) -> bool:
    return all(os.path.exists(os.path.join(directory, f)) for f in _FILES.values())


def _scale(images_u8: np.ndarray, chunk: int = 50_000) -> np.ndarray:
    """uint8 -> float32 / 255 in chunks (no float64 temporaries of the whole set)."""
    out = np.empty(images_u8.shape, dtype=np.float32)
    for start in range(0, len(images_u8), chunk):
        np.divide(images_u8[start:start + chunk], np.float32(255.0),
                  out=out[start:start + chunk], dtype=np.float32)
    return out


def load_fashion_mnist(directory: str = FASHION_MNIST_DIR):
    arrays = {k: read_idx(os.path.join(directory, f)) for k, f in _FILES.items()}
    return ((_scale(arrays["x_train"]), arrays["y_train"].astype(np.int32)),
            (_scale(arrays["x_test"]), arrays["y_test"].astype(np.int32)))


def synthetic(n_train: int = 60_000, n_test: int = 10_000, seed: int = 0, chunk: int = 50_000):
    """Noisy 28x28 uint8 images with learnable labels, scaled like real ones.

    Each class has a fixed random low-frequency template (7x7 uniform noise
    blown up to 28x28); an image is 85% uniform pixel noise plus 15% of its
    class's template, rounded to uint8 and divided by 255. Labels are uniform
    over the 10 classes. An MLP or the convnet learns this to about 90% test
    accuracy from 6,000 samples in 2 epochs, so a broken trainer shows up as a
    low accuracy. Generated in chunks so that 600,000 samples cost little more
    memory than the final float32 array.
    """
    rng = np.random.default_rng(seed)
    low = rng.random((10, 7, 7), dtype=np.float32)
    templates = np.kron(low, np.ones((4, 4), dtype=np.float32)) * np.float32(255.0)

    def make(n):
        y = rng.integers(0, 10, size=n).astype(np.int32)
        x = np.empty((n, 28, 28), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            noise = rng.integers(0, 256, size=(stop - start, 28, 28), dtype=np.uint8)
            mixed = np.float32(0.85) * noise + np.float32(0.15) * templates[y[start:stop]]
            x[start:stop] = _scale(np.clip(np.rint(mixed), 0, 255).astype(np.uint8))
        return x, y

    return make(n_train), make(n_test)


def load(kind: str = "auto", n_train: int | None = None, seed: int = 0):
    """Return ((x_train, y_train), (x_test, y_test), name).

    kind: "auto" (Fashion-MNIST when its files exist, else synthetic),
    "fashion-mnist" or "synthetic". n_train forces synthetic data of that size
    when it differs from 60,000 (the scaling mode).
    """
    if kind not in ("auto", "fashion-mnist", "synthetic"):
        raise ValueError(f"data must be auto, fashion-mnist or synthetic. Received: data={kind!r}")
    if n_train not in (None, 60_000):
        kind = "synthetic"
    if kind == "auto":
        kind = "fashion-mnist" if fashion_mnist_available() else "synthetic"
    if kind == "fashion-mnist":
        train, test = load_fashion_mnist()
        return train, test, "fashion-mnist"
    train, test = synthetic(n_train or 60_000, 10_000, seed=seed)
    return train, test, "synthetic"


# -- text: the lstm and transformer workloads --------------------------------------------------
TEXT_VOCAB = 20_000
TEXT_LENGTH = 200
_MARKERS = 50  # token ids 1..50 lean positive, 51..100 negative; the rest are filler


def text_classification(n_train: int = 25_000, n_test: int = 5_000, seed: int = 0,
                        length: int = TEXT_LENGTH, vocab: int = TEXT_VOCAB, own: int = 8,
                        other_max: int = 4):
    """Synthetic "reviews": int32 token ids (n, length) and float32 labels (n, 1) in {0, 1}.

    Filler tokens are uniform over ids 101..vocab-1. Each sequence also holds `own` (8)
    marker tokens of its class (ids 1..50 for label 1, 51..100 for label 0) and 0 to
    `other_max` (4) of the other class, at random positions. With other_max < own the label
    is the majority of its markers: the sequence determines it, a model has to find the
    markers among 200 tokens and count them (an LSTM has to carry the count to the end), and
    a broken trainer shows up as accuracy near 0.5.
    """
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 2, size=n)
        x = rng.integers(2 * _MARKERS + 1, vocab, size=(n, length))
        minor = rng.integers(0, other_max + 1, size=n)
        for i in range(n):
            spots = rng.choice(length, size=own + minor[i], replace=False)
            first = 1 + (1 - y[i]) * _MARKERS   # first id of the sequence's own marker set
            other = 1 + y[i] * _MARKERS
            x[i, spots[:own]] = rng.integers(first, first + _MARKERS, size=own)
            x[i, spots[own:]] = rng.integers(other, other + _MARKERS, size=minor[i])
        return x.astype(np.int32), y.astype(np.float32)[:, None]

    return make(n_train), make(n_test)


# -- images: the resnet workload -----------------------------------------------------------------
def synthetic_images(n_train: int = 10_000, n_test: int = 2_000, seed: int = 0, chunk: int = 10_000):
    """CIFAR-shaped float32 images (n, 32, 32, 3) in [0, 1] with int32 labels 0-9.

    As `synthetic` for 28x28: each class has a fixed random low-frequency colour template
    (8x8x3 noise blown up to 32x32); an image is 60% uniform pixel noise plus 40% of its
    class's template, quantized to 8 bits like a real photo. A small ResNet learns it well
    above chance in one epoch, so a broken trainer shows up as a low accuracy."""
    rng = np.random.default_rng(seed)
    low = rng.random((10, 8, 8, 3), dtype=np.float32)
    templates = np.kron(low, np.ones((1, 4, 4, 1), dtype=np.float32)) * np.float32(255.0)

    def make(n):
        y = rng.integers(0, 10, size=n).astype(np.int32)
        x = np.empty((n, 32, 32, 3), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            noise = rng.integers(0, 256, size=(stop - start, 32, 32, 3), dtype=np.uint8)
            mixed = np.float32(0.6) * noise + np.float32(0.4) * templates[y[start:stop]]
            x[start:stop] = np.clip(np.rint(mixed), 0, 255).astype(np.float32) / np.float32(255)
        return x, y

    return make(n_train), make(n_test)
