"""The `.keras` zip container, read and written without touching the disk beyond the one file.

Why a module of its own: a `.keras` file is a zip archive from anywhere, and zip readers have
their own classes of attack (members named `../../etc/passwd`, zip bombs whose members inflate a
thousandfold, special files in place of the archive). Reading here never extracts anything: the
path must be a regular file of bounded size, only Keras 3's three member names are accepted
(and the files layers' save_assets wrote, under `assets/` with plain relative names), every
member's declared size is capped and compared with its compressed size before it is inflated,
and the bytes come back in memory.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile

from kilnet._saving_hooks import ASSETS, is_asset_name
from kilnet.errors import ModelFileError

CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"
MEMBERS = (CONFIG, METADATA, WEIGHTS)
MAX_ASSETS = 10_000

# Caps on what a file may hold. Real configs are kB to a few MB; weights files are as large as
# the model, so their cap is generous but finite.
MAX_FILE_BYTES = 8 * 2**30
MAX_MEMBER_BYTES = {CONFIG: 16 * 2**20, METADATA: 2**20, WEIGHTS: 8 * 2**30}
# A member that inflates more than this ratio (and past 1 MiB) is a zip bomb: Keras stores its
# members uncompressed, and float weights compress by a factor of two at most.
MAX_RATIO = 100


def regular_file_size(path) -> int:
    """The size of `path`, refusing what is not a regular file (a FIFO would block reading, a
    device or directory is not a model) and files above MAX_FILE_BYTES.

    Example:
        >>> import tempfile
        >>> from kilnet.keras_files import _archive
        >>> _archive.regular_file_size(tempfile.mkdtemp())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load ...: it is a directory, not a regular file...
    """
    try:
        info = os.stat(path)
    except OSError as error:
        raise ModelFileError(path, f"it cannot be read ({error.strerror}).") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a FIFO, device or socket"
        raise ModelFileError(path, f"it is {kind}, not a regular file. Give the path of a "
                                   "model file.")
    if info.st_size > MAX_FILE_BYTES:
        raise ModelFileError(path, f"it is {info.st_size:,} bytes, above kilnet's cap of "
                                   f"{MAX_FILE_BYTES:,} bytes for a model file.")
    return info.st_size


def is_zip(path) -> bool:
    """Whether the regular file at `path` starts like a zip archive."""
    regular_file_size(path)
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_members(path) -> dict:
    """{member name: bytes} of a `.keras` archive, checked as the module docstring says.

    Example:
        >>> import os, tempfile, zipfile
        >>> from kilnet.keras_files import _archive
        >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
        >>> with zipfile.ZipFile(path, "w") as z:
        ...     z.writestr("../evil.py", "print('hi')")
        >>> _archive.read_members(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load ...: it holds the member '../evil.py', ...
    """
    path = os.fspath(path)
    regular_file_size(path)
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as archive:
            entries = archive.infolist()
            _check_entries(entries, path)
            return {e.filename: _read_entry(archive, e, path) for e in entries}
    except zipfile.BadZipFile as error:
        raise ModelFileError(path, f"it is not a valid .keras (zip) file ({error}).") from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise ModelFileError(path, f"its archive cannot be read ({error}).") from None


def _check_entries(entries, path):
    names = [e.filename for e in entries]
    for name in names:
        if name not in MEMBERS and not is_asset_name(name):
            raise ModelFileError(path, f"it holds the member {name!r:.100}, which is not part "
                                       f"of a Keras 3 model file (expected {list(MEMBERS)} "
                                       f"and files under {ASSETS!r} with plain relative names).")
    if sum(name.startswith(ASSETS) for name in names) > MAX_ASSETS:
        raise ModelFileError(path, f"it holds more than {MAX_ASSETS:,} asset files.")
    if len(set(names)) != len(names):
        raise ModelFileError(path, "it holds the same member twice.")
    if CONFIG not in names:
        raise ModelFileError(path, f"it has no {CONFIG}; it is not a Keras 3 model file.")
    total = 0
    for entry in entries:
        cap = MAX_MEMBER_BYTES.get(entry.filename, MAX_FILE_BYTES)
        if entry.file_size > cap:
            raise ModelFileError(path, f"its member {entry.filename} declares "
                                       f"{entry.file_size:,} bytes, above the cap of {cap:,}.")
        if entry.file_size > 2**20 and entry.file_size > MAX_RATIO * max(entry.compress_size, 1):
            raise ModelFileError(path, f"its member {entry.filename} would inflate "
                                       f"{entry.compress_size:,} bytes to {entry.file_size:,}: "
                                       "a zip bomb.")
        total += entry.file_size
    if total > MAX_FILE_BYTES:
        raise ModelFileError(path, f"its members declare {total:,} bytes in all, above the cap "
                                   f"of {MAX_FILE_BYTES:,}.")


def _read_entry(archive, entry, path) -> bytes:
    # Read one byte past the declared size: a member that inflates past what its header
    # declares is refused without holding more than that in memory.
    with archive.open(entry) as member:
        data = member.read(entry.file_size + 1)
    if len(data) != entry.file_size:
        raise ModelFileError(path, f"its member {entry.filename} does not hold the "
                                   f"{entry.file_size:,} bytes its header declares.")
    return data


def write_members(members: dict) -> bytes:
    """A `.keras` archive holding {member name: bytes}, stored uncompressed as Keras does.

    Example:
        >>> from kilnet.keras_files import _archive
        >>> data = _archive.write_members({"config.json": b"{}"})
        >>> data[:4]
        b'PK\\x03\\x04'
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()
