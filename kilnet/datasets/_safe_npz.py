"""Reading Keras's `.npz` dataset files without `allow_pickle=True`.

Numeric arrays go through `np.load(allow_pickle=False)`'s reader. Object
arrays (IMDB's and Reuters's ragged sequences) are a pickle after the `.npy`
header, so they go through `RestrictedUnpickler`, which can rebuild an
ndarray of lists and nothing else. Every member is size-bounded before it is
read, so a crafted archive cannot exhaust memory by claiming little and
inflating much.
"""

import io
import zipfile

import numpy as np

from ._idx import DatasetError
from ._safe_pickle import loads

# The largest real member is IMDB's x_train, about 40 MB as a pickle.
MAX_MEMBER_BYTES = 1 << 30


def load_npz(file, keys, *, max_member_bytes=None) -> dict:
    """Returns `{key: array}` for `keys` from the `.npz` at `file`, refusing code.

    Example:

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "example.npz")
    >>> seqs = np.empty(2, dtype=object)
    >>> seqs[:] = [[1, 2, 3], [4]]
    >>> np.savez(file, x=seqs, y=np.array([0, 1]))
    >>> arrays = load_npz(file, ["x", "y"])
    >>> list(arrays["x"]), arrays["y"]
    ([[1, 2, 3], [4]], array([0, 1]))
    """
    limit = MAX_MEMBER_BYTES if max_member_bytes is None else max_member_bytes
    try:
        with zipfile.ZipFile(file) as archive:
            return {key: _member(archive, key, file, limit) for key in keys}
    except (OSError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{file}: cannot read it as a .npz archive ({error}).") from error


def _member(archive, key: str, file, limit: int):
    name = f"{file}[{key!r}]"
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        found = ", ".join(n.removesuffix(".npy") for n in archive.namelist())
        raise DatasetError(f"{file}: expected an array named {key!r}; found {found}.") from None
    if info.file_size > limit:
        raise DatasetError(f"{name}: {info.file_size} bytes, more than the {limit} allowed.")
    with archive.open(info) as raw:
        data = raw.read(limit + 1)  # bounded even if the zip directory lies
    if len(data) > limit:
        raise DatasetError(f"{name}: more than the {limit} bytes allowed.")
    return read_npy(data, name)


def read_npy(data: bytes, name: str) -> np.ndarray:
    """Reads one `.npy` stream; object arrays only through the restricted unpickler."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        # Format 3.0 differs from 2.0 only in the header's text encoding.
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read_header(stream)
    except ValueError as error:
        raise DatasetError(f"{name}: not a valid .npy array ({error}).") from error
    if not dtype.hasobject:
        stream.seek(0)
        try:
            return np.lib.format.read_array(stream, allow_pickle=False)
        except ValueError as error:
            raise DatasetError(f"{name}: not a valid .npy array ({error}).") from error
    array = loads(stream.read(), name)
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != shape:
        raise DatasetError(
            f"{name}: its header promises a {dtype} array of shape {shape}, but its "
            f"pickle holds {type(array).__name__} {getattr(array, 'shape', '')}."
        )
    return array
