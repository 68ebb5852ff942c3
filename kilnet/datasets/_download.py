"""Checksummed, atomic downloads into the dataset cache.

A file reaches its cache path only after it was fully received, flushed to disk
and matched its SHA-256; until then it is a hidden temp file in the same folder
(so `os.replace` is atomic), deleted on any failure, Ctrl-C included.
"""

import contextlib
import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

from ._idx import DatasetError

TIMEOUT_S = 10.0  # per connect / read; short so an offline machine falls through fast
CHUNK = 1 << 16


class DownloadError(OSError):
    """The network failed (no connection, timeout, interrupted transfer)."""


class ChecksumError(DatasetError):
    """A downloaded file does not match its published SHA-256."""


def sha256_file(path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def is_verified(path, sha256: str) -> bool:
    """True when `path` exists and matches `sha256` (guards against bit rot)."""
    return Path(path).is_file() and sha256_file(path) == sha256


def fetch(url: str, dest, sha256: str) -> Path:
    """Downloads `url` to `dest` if its SHA-256 is `sha256`.

    Raises `DownloadError` when the network fails and `ChecksumError` when the
    bytes are wrong; either way nothing is left at `dest` or beside it.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, dest.name)
            out.flush()
            os.fsync(out.fileno())
        if digest != sha256:
            raise ChecksumError(
                f"{url}: expected SHA-256 {sha256}, found {digest}; nothing was cached. "
                "The transfer was corrupted or the mirror serves another file: try again, "
                "or fetch the data another way and pass path= or set KILNET_DATA."
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def _stream(url: str, out, name: str) -> str:
    """Copies the response body into `out`; returns its SHA-256."""
    hasher = hashlib.sha256()
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"cannot download {url}: {error}") from error
    with response, _progress(name, response.length) as advance:
        total, received = response.length, 0
        while chunk := _read(response, url):
            out.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
            advance(len(chunk))
    # http.client returns b"" instead of raising when the server hangs up early.
    if total is not None and received < total:
        raise DownloadError(
            f"cannot download {url}: transfer stopped at {received} of {total} bytes"
        )
    return hasher.hexdigest()


def _read(response, url: str) -> bytes:
    try:
        return response.read(CHUNK)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"cannot download {url}: {error}") from error


@contextlib.contextmanager
def _progress(name: str, total):
    """Yields `advance(n)`; draws a rich bar only when a person watches stderr."""
    if sys.stderr is None or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(f"kilnet: {name}", total=total)
        yield lambda n: bar.advance(task, n)
