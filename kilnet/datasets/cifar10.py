"""CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes.

Labels: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog, 6 frog,
7 horse, 8 ship, 9 truck. Read from the python-pickle tarball that Keras
downloads, without extracting it and without the standard unpickler.
"""

from . import _cifar, _remote

URL_ENV = "KILNET_CIFAR10_URL"
# Published by Keras (keras/src/datasets/cifar10.py) for the tarball at this URL.
DATA = _remote.Remote(
    "cifar10", "cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    "https://www.cs.toronto.edu/~kriz/", URL_ENV,
)
LAYOUT = _cifar.Layout(
    "cifar-10-batches-py",
    train=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test=("test_batch",),
    unused=("batches.meta", "readme.html"),
)


def load_data(path=None, *, base_url=None):
    """Loads CIFAR-10 as `(x_train, y_train), (x_test, y_test)`, like Keras.

    Images are uint8 arrays (N, 32, 32, 3), channels last; labels are uint8
    (N, 1) in 0..9. The first source that exists wins:

    1. `path` (kilnet's addition): the tarball `cifar-10-python.tar.gz`, the
       extracted folder `cifar-10-batches-py`, or a folder holding either;
    2. the same names inside the folder `KILNET_DATA` names (or its `cifar10/`);
    3. the cache, `kilnet.datasets.cache_dir() / "cifar10"`, re-verified;
    4. a download from `base_url`, else `$KILNET_CIFAR10_URL`, else Keras's
       origin, checked against Keras's SHA-256 (not when `KILNET_OFFLINE=1`).

    Example:

    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    ...     batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [3, 8]}
    ...     _ = (folder / name).write_bytes(pickle.dumps(batch))
    >>> (x_train, y_train), (x_test, y_test) = load_data(path=folder)
    >>> x_train.shape, y_train.shape, x_test.dtype, y_test[:, 0].tolist()
    ((10, 32, 32, 3), (10, 1), dtype('uint8'), [3, 8])
    """
    source = _cifar.locate(DATA, LAYOUT, path, base_url)
    return _cifar.load(source, LAYOUT, "labels", n_classes=10)
