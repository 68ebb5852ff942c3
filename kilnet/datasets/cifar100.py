"""CIFAR-100: 50,000 training and 10,000 test 32x32 colour images in 100 classes.

The 100 fine classes group into 20 coarse superclasses; `label_mode`
chooses which labels come back. Read from the python-pickle tarball that
Keras downloads, without extracting it and without the standard unpickler.
"""

from . import _cifar, _remote

URL_ENV = "KILNET_CIFAR100_URL"
# Published by Keras (keras/src/datasets/cifar100.py) for the tarball at this URL.
DATA = _remote.Remote(
    "cifar100", "cifar-100-python.tar.gz",
    "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    "https://www.cs.toronto.edu/~kriz/", URL_ENV,
)
LAYOUT = _cifar.Layout("cifar-100-python", train=("train",), test=("test",),
                       unused=("meta", "file.txt~"))
CLASSES = {"fine": 100, "coarse": 20}


def load_data(label_mode="fine", path=None, *, base_url=None):
    """Loads CIFAR-100 as `(x_train, y_train), (x_test, y_test)`, like Keras.

    Images are uint8 arrays (N, 32, 32, 3), channels last; labels are uint8
    (N, 1): the fine classes 0..99 for `label_mode="fine"`, the coarse
    superclasses 0..19 for `"coarse"`. (Keras documents uint8 but returns
    int64 labels here; kilnet returns the documented uint8.) Sources, in order:
    `path` (kilnet's addition: the tarball `cifar-100-python.tar.gz`, the
    extracted folder `cifar-100-python`, or a folder holding either), the
    same names in the folder `KILNET_DATA` names (or its `cifar100/`), the
    cache `kilnet.datasets.cache_dir() / "cifar100"`, and a download from
    `base_url`, `$KILNET_CIFAR100_URL` or Keras's origin, checked against
    Keras's SHA-256 (not when `KILNET_OFFLINE=1`).

    Example:

    >>> import pickle, tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("train", "test"):
    ...     batch = {b"data": np.zeros((2, 3072), np.uint8),
    ...              b"fine_labels": [42, 99], b"coarse_labels": [3, 19]}
    ...     _ = (folder / name).write_bytes(pickle.dumps(batch))
    >>> (x_train, y_train), _ = load_data(label_mode="coarse", path=folder)
    >>> x_train.shape, y_train[:, 0].tolist()
    ((2, 32, 32, 3), [3, 19])
    """
    if label_mode not in CLASSES:
        raise ValueError(
            f'Expected label_mode to be "fine" or "coarse". Received: label_mode={label_mode!r}'
        )
    source = _cifar.locate(DATA, LAYOUT, path, base_url)
    return _cifar.load(source, LAYOUT, f"{label_mode}_labels", n_classes=CLASSES[label_mode])
