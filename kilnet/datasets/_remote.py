"""Finding one of Keras's dataset files: the user's copy, the cache, or a download.

Every loader looks in the same order: the file the user names, the folder
`KILNET_DATA` names, kilnet's cache (re-verified on every load, so a damaged
entry is fetched again), and last a checked, atomic download from Keras's URL,
whose base the caller or an environment variable can override (tests point it
at a local server). Offline, the error says what was tried and how to fix it.

Keras publishes SHA-256 for its data files but only MD5 for the word-index
JSON files; `_download.fetch` checks SHA-256, so the MD5 files (about 1 MB)
are fetched here, whole in memory, with the same atomic write.
"""

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import _download, _sources
from ._cache import cache_dir, offline
from ._download import ChecksumError, DownloadError
from ._idx import DatasetError

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
MAX_MD5_FILE_BYTES = 64 << 20  # the word-index files are 0.5-1.6 MB


@dataclass(frozen=True)
class Remote:
    """A file Keras downloads: its name, published hash and where it comes from.

    Example:

    >>> Remote("imdb", "imdb.npz", "0" * 64, KERAS_URL, "KILNET_IMDB_URL").algorithm
    'sha256'
    """

    folder: str  # kilnet's cache subfolder, also looked for under KILNET_DATA
    name: str  # the file's name at the URL
    digest: str  # as Keras publishes it: 64 hex digits SHA-256, 32 MD5
    default_url: str
    url_env: str  # the environment variable that overrides default_url

    @property
    def algorithm(self) -> str:
        return "sha256" if len(self.digest) == 64 else "md5"


def keras_path(path, argument: str = "path"):
    """Splits Keras's `path` argument into `(user_file or None, cache_name)`.

    In Keras, `path="imdb.npz"` is a name inside the cache. Here a bare file
    name keeps that meaning, and a path with a folder part (`./imdb.npz`,
    `/data/imdb.npz`, `~/imdb.npz`) names the user's own file, which must exist.

    Example:

    >>> keras_path("imdb.npz")
    (None, 'imdb.npz')
    """
    try:
        text = os.fspath(path)
    except TypeError:
        text = None
    if not isinstance(text, str) or not text:
        raise DatasetError(
            f"Expected {argument} to be a file name (a name in kilnet's cache) or a path "
            f"to your own copy of the file. Received: {argument}={path!r}"
        )
    if not os.path.dirname(text):
        return None, text
    file = Path(text).expanduser()
    if not file.is_file():
        raise DatasetError(
            f"Expected {argument} to name an existing file, but there is none. Received: "
            f"{argument}={text!r}. Give the right path, or a bare file name (no folder) "
            "to use kilnet's cache and download."
        )
    return file, file.name


def locate(remote: Remote, path, base_url=None) -> Path:
    """The file for Keras's `path` argument: the user's, KILNET_DATA's, or the cache's.

    Example:

    >>> remote = Remote("imdb", "imdb.npz", "0" * 64, KERAS_URL, "KILNET_IMDB_URL")
    >>> locate(remote, "imdb.npz")  # doctest: +SKIP
    PosixPath('/home/me/.cache/kilnet/imdb/imdb.npz')
    """
    own, name = keras_path(path)
    return (own or from_kilnet_data(remote.folder, [name])
            or cached_or_downloaded(remote, name, base_url))


def from_kilnet_data(folder: str, names):
    """The first of `names` found in `$KILNET_DATA` or `$KILNET_DATA/<folder>`, else None.

    `KILNET_DATA` may also name the file (or folder) itself; it is used when its
    name is one of `names`, and ignored when it names another dataset's file.

    Example:

    >>> import os, tempfile
    >>> from unittest import mock
    >>> folder = tempfile.mkdtemp()
    >>> Path(folder, "imdb.npz").touch()
    >>> with mock.patch.dict(os.environ, {"KILNET_DATA": folder}):
    ...     from_kilnet_data("imdb", ["imdb.npz"]).name
    'imdb.npz'
    """
    value = os.environ.get("KILNET_DATA")
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.exists():
        raise DatasetError(
            "Expected KILNET_DATA to name a folder of dataset files or one file, but it "
            f"does not exist. Received: KILNET_DATA={value!r}"
        )
    if root.name in names:  # it names this dataset's file (or extracted folder) itself
        return root
    if not root.is_dir():
        return None
    for name in names:
        for candidate in (root / name, root / folder / name):
            if candidate.exists():
                return candidate
    return None


def cached_or_downloaded(remote: Remote, cache_name=None, base_url=None) -> Path:
    """The verified cache entry for `remote`, downloading it first when needed.

    Example:

    >>> remote = Remote("imdb", "imdb.npz", "0" * 64, KERAS_URL, "KILNET_IMDB_URL")
    >>> cached_or_downloaded(remote)  # doctest: +SKIP
    PosixPath('/home/me/.cache/kilnet/imdb/imdb.npz')
    """
    cached = cache_dir() / remote.folder / (cache_name or remote.name)
    if is_verified(cached, remote):
        return cached
    url = _sources.url(base_url, remote.url_env, remote.default_url, remote.name)
    if offline():
        raise DatasetError(_unavailable(remote, url, "KILNET_OFFLINE is set"))
    try:
        if remote.algorithm == "sha256":
            _download.fetch(url, cached, remote.digest)
        else:
            _fetch_md5(url, cached, remote.digest)
    except DownloadError as error:
        raise DatasetError(_unavailable(remote, url, str(error))) from error
    return cached


def is_verified(file: Path, remote: Remote) -> bool:
    if remote.algorithm == "sha256":
        return _download.is_verified(file, remote.digest)
    return file.is_file() and hashlib.md5(file.read_bytes()).hexdigest() == remote.digest


def _unavailable(remote: Remote, url: str, reason: str) -> str:
    return (
        f"{remote.name} is not in kilnet's cache ({cache_dir() / remote.folder}) and cannot "
        f"be downloaded ({' '.join(reason.split())}). Connect to the internet; or fetch "
        f"{url} another way and pass its path (path='/folder/{remote.name}') or put it in "
        f"the folder KILNET_DATA names; or set {remote.url_env} to a mirror's base URL."
    )


def _fetch_md5(url: str, dest: Path, md5: str) -> None:
    body = _get(url)
    found = hashlib.md5(body).hexdigest()
    if found != md5:
        raise ChecksumError(
            f"{url}: expected MD5 {md5}, found {found}; nothing was cached. The transfer "
            "was corrupted or the mirror serves another file: try again, or fetch the "
            "file another way and pass path= or set KILNET_DATA."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=_download.TIMEOUT_S) as response:
            total = response.length
            body = response.read(MAX_MD5_FILE_BYTES + 1)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"cannot download {url}: {error}") from error
    if len(body) > MAX_MD5_FILE_BYTES:
        raise DatasetError(f"{url}: more than the {MAX_MD5_FILE_BYTES} bytes expected.")
    # http.client returns short reads instead of raising when the server hangs up early.
    if total is not None and len(body) < total:
        raise DownloadError(
            f"cannot download {url}: transfer stopped at {len(body)} of {total} bytes"
        )
    return body
