"""Reading a dataset from files: a Keras-style `.npz` or a folder of IDX files.

Both forms come out as `(x_train, y_train), (x_test, y_test)` of uint8 arrays,
images (N, 28, 28) and labels (N,), checked so that a wrong or damaged file
fails here, naming itself, rather than as a shape error deep inside `fit`.
"""

import os
import zipfile
from pathlib import Path

import numpy as np

from ._idx import DatasetError, read_idx

KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)


def user_path(path, dataset: str):
    """Returns `(path, label)` for what the user pointed at, or None.

    `path` wins over `KILNET_DATA`. Either may name the data itself (a .npz or
    an IDX folder) or a folder holding `<dataset>.npz` or `<dataset>/`, so one
    KILNET_DATA can serve both MNIST and Fashion-MNIST.
    """
    label, value = "path", path
    if path is None:
        label, value = "KILNET_DATA", os.environ.get("KILNET_DATA")
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.exists():
        raise DatasetError(
            f"Expected {label} to name a .npz file or a folder of IDX files, but it does "
            f"not exist. Received: {label}={str(value)!r}"
        )
    for entry in (root / dataset, root / f"{dataset}.npz"):
        if root.is_dir() and entry.exists():
            return entry, label
    return root, label


def load_path(path: Path, label: str = "path"):
    """Loads a `.npz` file or a folder holding the four IDX files."""
    if path.is_dir():
        return load_idx_folder(path)
    if path.suffix == ".npz":
        return load_npz(path)
    raise DatasetError(
        f"Expected {label} to be a .npz file with keys {', '.join(KEYS)} or a folder "
        f"holding the four IDX files. Received: {label}={str(path)!r}"
    )


def load_npz(file):
    try:
        # allow_pickle=False: a data file must never be able to run code.
        with np.load(file, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in KEYS if key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{file}: cannot read it as a .npz archive ({error}).") from error
    missing = [key for key in KEYS if key not in arrays]
    if missing:
        raise DatasetError(
            f"{file}: expected arrays {', '.join(KEYS)}; missing {', '.join(missing)}."
        )
    names = {key: f"{file}[{key!r}]" for key in KEYS}
    return _splits(arrays, names)


def load_idx_folder(folder: Path):
    files = {key: _find(folder, stem) for key, stem in IDX_STEMS.items()}
    missing = [IDX_STEMS[key] for key, file in files.items() if file is None]
    if missing:
        raise DatasetError(
            f"{folder}: expected the four IDX files (each optionally gzipped, .gz); "
            f"missing {', '.join(missing)}."
        )
    return load_idx_files(files)


def load_idx_files(files: dict):
    """Reads `{"x_train": path, ...}`; each file is named in any error."""
    kinds = {"x": "images", "y": "labels"}
    arrays = {key: read_idx(file, kind=kinds[key[0]]) for key, file in files.items()}
    return _splits(arrays, {key: str(file) for key, file in files.items()})


def url(base_url, env_var: str, default: str, name: str) -> str:
    """The argument wins over the environment variable, which wins over the default."""
    base = base_url or os.environ.get(env_var) or default
    return base.rstrip("/") + "/" + name


def _find(folder: Path, stem: str):
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _splits(arrays: dict, names: dict):
    return tuple(
        _checked(arrays[x], arrays[y], names[x], names[y])
        for x, y in (("x_train", "y_train"), ("x_test", "y_test"))
    )


def _checked(x, y, x_name: str, y_name: str):
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
        raise DatasetError(
            f"{x_name}: expected uint8 images of shape (N, 28, 28), found {x.dtype} {x.shape}."
        )
    if y.ndim != 1 or y.dtype.kind not in "iu" or (y.size and (y.min() < 0 or y.max() > 255)):
        raise DatasetError(
            f"{y_name}: expected integer labels of shape (N,) in 0..255, found {y.dtype} {y.shape}."
        )
    if len(x) != len(y):
        raise DatasetError(
            f"{x_name} holds {len(x)} images but {y_name} holds {len(y)} labels; "
            "expected the same count. One of the files is from another dataset or damaged."
        )
    return x, y.astype(np.uint8, copy=False)
