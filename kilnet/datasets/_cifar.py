"""Reading CIFAR's python-pickle batches from the tarball or an extracted folder.

The tarball is read member by member in memory, never extracted: a member
must be one of the names the published tarball holds (anything else, such as
`../x` or an absolute path, is refused), the members read must be regular
files, and each is size-bounded before it is read. Each batch is a Python 2
pickle (a dict with bytes keys) read by `RestrictedUnpickler`, which rebuilds
NumPy arrays and nothing else.
"""

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import _remote
from ._idx import DatasetError
from ._safe_pickle import loads

PIXELS = 3 * 32 * 32
# CIFAR-100's `train` batch is 50,000 images (154 MB) plus labels and names.
MAX_MEMBER_BYTES = 256 << 20


@dataclass(frozen=True)
class Layout:
    """The files of one CIFAR tarball, all inside `folder`.

    Example:

    >>> Layout("cifar-100-python", ("train",), ("test",), ("meta",)).members[:2]
    ('cifar-100-python/train', 'cifar-100-python/test')
    """

    folder: str
    train: tuple
    test: tuple
    unused: tuple  # present in the published tarball, never read

    @property
    def members(self) -> tuple:
        return tuple(f"{self.folder}/{name}" for name in self.train + self.test + self.unused)


def locate(remote, layout: Layout, path, base_url) -> Path:
    """The tarball or folder to read: `path`, then KILNET_DATA, then the cache.

    Example:

    >>> import tempfile
    >>> remote = _remote.Remote("cifar10", "cifar-10-python.tar.gz", "0" * 64, "", "")
    >>> layout = Layout("cifar-10-batches-py", ("data_batch_1",), ("test_batch",), ())
    >>> folder = tempfile.mkdtemp()
    >>> locate(remote, layout, folder, None) == Path(folder)
    True
    """
    names = [remote.name, layout.folder]
    if path is None:
        return (_remote.from_kilnet_data(remote.folder, names)
                or _remote.cached_or_downloaded(remote, base_url=base_url))
    try:
        source = Path(os.fspath(path)).expanduser()
    except TypeError:
        source = None
    if source is None or not source.exists():
        raise DatasetError(
            f"Expected path to name CIFAR's tarball ({remote.name}), the folder "
            f"{layout.folder!r} extracted from it, or a folder holding either, but it does "
            f"not exist. Received: path={path if source is None else str(path)!r}"
        )
    if source.is_dir() and (source / remote.name).is_file() and not (source / layout.folder).is_dir():
        return source / remote.name
    return source


def load(source: Path, layout: Layout, label_key: str, n_classes: int):
    """`(x_train, y_train), (x_test, y_test)`: uint8 (N, 32, 32, 3) and (N, 1).

    `source` is the tarball, the extracted `layout.folder`, or a folder holding it.

    Example:

    >>> import pickle, tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("train", "test"):
    ...     batch = {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [0, 99]}
    ...     _ = (folder / name).write_bytes(pickle.dumps(batch))
    >>> layout = Layout("cifar-100-python", ("train",), ("test",), ())
    >>> (x_train, y_train), _ = load(folder, layout, "fine_labels", 100)
    >>> x_train.shape, y_train.shape, y_train.dtype
    ((2, 32, 32, 3), (2, 1), dtype('uint8'))
    """
    files = _read_tar(source, layout) if source.is_file() else _read_folder(source, layout)
    splits = []
    for names in (layout.train, layout.test):
        batches = [_parse(files[name], f"{source}:{name}", label_key, n_classes) for name in names]
        x = np.concatenate([x for x, _ in batches])
        y = np.concatenate([y for _, y in batches])
        # Stored as planes (N, 3, 32, 32); Keras returns channels-last.
        splits.append((np.ascontiguousarray(x.transpose(0, 2, 3, 1)), y.reshape(-1, 1)))
    return tuple(splits)


def _read_folder(source: Path, layout: Layout) -> dict:
    folder = source / layout.folder if (source / layout.folder).is_dir() else source
    files = {}
    for name in layout.train + layout.test:
        file = folder / name
        if not file.is_file():
            raise DatasetError(
                f"{folder}: expected CIFAR's batch file {name!r} (the folder "
                f"{layout.folder!r} extracted from the tarball, or the tarball itself)."
            )
        _bounded(file.stat().st_size, str(file))
        files[name] = file.read_bytes()
    return files


def _read_tar(source: Path, layout: Layout) -> dict:
    wanted = {f"{layout.folder}/{name}": name for name in layout.train + layout.test}
    allowed = set(layout.members) | {layout.folder}
    files = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                _check_member(member, allowed, source)
                if member.name in wanted:
                    name = wanted[member.name]
                    label = f"{source}:{member.name}"
                    if name in files or not member.isfile():
                        raise DatasetError(f"{label}: expected one regular file.")
                    _bounded(member.size, label)
                    files[name] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DatasetError(f"{source}: cannot read it as a tar archive ({error}).") from error
    missing = [name for name in wanted.values() if name not in files]
    if missing:
        raise DatasetError(f"{source}: the tarball lacks {', '.join(missing)}.")
    return files


def _check_member(member, allowed: set, source) -> None:
    name = member.name.rstrip("/")
    if name not in allowed:
        raise DatasetError(
            f"{source}: unexpected member {member.name!r}; this is not CIFAR's published "
            f"tarball (which holds only {', '.join(sorted(allowed))}). Refusing to read it."
        )


def _bounded(size: int, label: str) -> None:
    if size > MAX_MEMBER_BYTES:
        raise DatasetError(f"{label}: {size} bytes, more than the {MAX_MEMBER_BYTES} allowed.")


def _parse(data: bytes, label: str, label_key: str, n_classes: int):
    batch = loads(data, label, encoding="bytes")
    if not isinstance(batch, dict):
        raise DatasetError(f"{label}: expected a pickled dict, found {type(batch).__name__}.")
    # Python 2 str keys arrive as bytes; a file re-pickled by Python 3 has str keys.
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    x, y = batch.get("data"), batch.get(label_key)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != PIXELS:
        raise DatasetError(
            f"{label}: expected 'data' to be uint8 pixels of shape (N, {PIXELS}), found "
            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}."
        )
    try:
        y = np.asarray(y, dtype=np.int64)
    except (TypeError, ValueError):
        y = np.empty(0)
    if y.shape != (len(x),) or (y.size and (y.min() < 0 or y.max() >= n_classes)):
        raise DatasetError(
            f"{label}: expected {label_key!r} to hold {len(x)} labels in 0..{n_classes - 1}."
        )
    return x.reshape(-1, 3, 32, 32), y.astype(np.uint8)
