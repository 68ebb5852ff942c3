"""Reader for the IDX files MNIST and Fashion-MNIST ship in, gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a data-type byte, the
number of dimensions), one big-endian uint32 per dimension, then the raw data.
Every check here names the file, because a bad download is the usual cause and
the fix is to delete that file.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

# Unsigned bytes (data-type 0x08) in 3 dimensions (N, rows, cols) or 1 (N,).
MAGIC = {"images": 0x00000803, "labels": 0x00000801}
UBYTE = 0x08


class DatasetError(ValueError):
    """A dataset file is missing, malformed, or fails its checksum."""


def read_idx(path, *, kind: str) -> np.ndarray:
    """Reads an IDX `kind` ("images" or "labels") file into a writable uint8 array."""
    if kind not in MAGIC:
        raise ValueError(f'Expected kind="images" or kind="labels". Received: kind={kind!r}')
    path = Path(path)
    data = _read_bytes(path)
    ndim = MAGIC[kind] & 0xFF
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetError(
            f"{path}: expected an IDX {kind} header of {header_len} bytes, "
            f"found a {len(data)}-byte file. Delete it and download it again."
        )
    _check_magic(path, data, kind)
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header_len + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(
            f"{path}: the header promises {kind} of shape {shape}, i.e. {expected} bytes, "
            f"found {len(data)} bytes; the file is truncated or corrupt. "
            "Delete it and download it again."
        )
    # .copy() so users can modify the arrays in place, as with Keras's loaders.
    return np.frombuffer(data, np.uint8, offset=header_len).reshape(shape).copy()


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    # EOFError: truncated stream; BadGzipFile (an OSError): bad header or CRC.
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(
            f"{path}: cannot decompress the gzip data ({error}); the file is truncated "
            "or corrupt. Delete it and download it again."
        ) from error


def _check_magic(path: Path, data: bytes, kind: str) -> None:
    found = int.from_bytes(data[:4], "big")
    expected = MAGIC[kind]
    if found == expected:
        return
    if found & 0xFFFF00FF == expected & 0xFFFF00FF:
        raise DatasetError(
            f"{path}: expected data-type byte 0x{UBYTE:02x} (unsigned byte), "
            f"found 0x{data[2]:02x}. kilnet reads only uint8 IDX files."
        )
    other = {v: k for k, v in MAGIC.items()}.get(found)
    hint = f" ({other}): are the images and labels files swapped?" if other else "."
    raise DatasetError(
        f"{path}: expected magic number {expected} ({kind}), found {found}{hint}"
    )
