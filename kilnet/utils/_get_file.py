"""get_file: download a file once into kilnet's cache, check its hash, extract it safely.

A download reaches its cache path only whole and verified (a temp file beside it, then
`os.replace`). Archives are checked member by member before anything is written: a member
that would land outside the target folder (absolute path, `..`, a link pointing out), a
device file, or more than MAX_EXTRACTED_BYTES in all refuses the whole archive. Extraction
goes to a temp folder that replaces the target only when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile

from kilnet.datasets._cache import cache_dir as kilnet_cache_dir
from kilnet.datasets._cache import offline
from kilnet.datasets._download import TIMEOUT_S, DownloadError

MAX_EXTRACTED_BYTES = 16 << 30   # a zip bomb stops here, as does any archive claiming more
_CHUNK = 1 << 16


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder, or too much."""


def get_file(fname=None, origin=None, untar=False, md5_hash=None, file_hash=None,
             cache_subdir="datasets", hash_algorithm="auto", extract=False,
             archive_format="auto", cache_dir=None, force_download=False):
    """The local path of `origin`'s file, downloaded into `cache_dir/cache_subdir` (default:
    kilnet's cache folder, `~/.cache/kilnet/datasets`) unless already there, as
    keras.utils.get_file. `file_hash` (sha256 or md5 hex; `hash_algorithm` "auto" picks by
    length) is checked after downloading, and a cached file that fails it is downloaded
    again. With `extract` (or `untar`), the tar or zip archive is extracted safely next to it
    and the folder's path is returned.

    Example:
        >>> import os, tempfile, kilnet
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, "notes.txt"), "w") as f:
        ...     _ = f.write("hello")
        >>> url = "file://" + os.path.join(folder, "notes.txt")
        >>> path = kilnet.utils.get_file(origin=url, cache_dir=folder)  # doctest: +ELLIPSIS
        Downloading data from file://...
        >>> open(path).read()
        'hello'
    """
    if origin is None:
        raise ValueError("get_file: give origin, the URL of the file to download.")
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    if hash_algorithm not in ("auto", "sha256", "md5"):
        raise ValueError("hash_algorithm must be 'auto', 'sha256' or 'md5'. "
                         f"Received: hash_algorithm={hash_algorithm!r}")
    base = kilnet_cache_dir() if cache_dir is None else os.path.expanduser(str(cache_dir))
    folder = os.path.join(base, cache_subdir)
    os.makedirs(folder, exist_ok=True)
    target, extraction_dir = _targets(fname, origin, folder, extract or untar)
    fresh = force_download or not os.path.exists(target) or (
        file_hash is not None and not validate_file(target, file_hash, hash_algorithm))
    if fresh:
        _download(origin, target, file_hash, hash_algorithm)
    if not (extract or untar):
        return target
    if fresh or not os.path.isdir(extraction_dir):
        formats = "tar" if untar else archive_format
        extract_archive(target, extraction_dir, formats)
    return extraction_dir


def _targets(fname, origin, folder, extracting):
    """(download path, extraction folder), named as Keras names them."""
    given = os.fspath(fname) if fname is not None else None
    if given and os.sep in given:
        raise ValueError("get_file: fname is a file name, not a path; choose the folder with "
                         f"cache_dir and cache_subdir. Received: fname={given!r}")
    name = given or os.path.basename(urllib.parse.urlsplit(origin).path)
    if not name or name in (".", ".."):
        raise ValueError(f"get_file: no file name in origin={origin!r}; pass fname.")
    if not extracting:
        return os.path.join(folder, name), None
    if given and "." in name:
        return os.path.join(folder, name), os.path.join(folder, name[:name.find(".")]
                                                        + "_extracted")
    return os.path.join(folder, name + "_archive"), os.path.join(folder, name)


# -- hashes -----------------------------------------------------------------------------------
def _hasher(algorithm, file_hash=None):
    if algorithm == "sha256" or (algorithm == "auto" and file_hash is not None
                                 and len(file_hash) == 64):
        return hashlib.sha256()
    return hashlib.md5()


def hash_file(fpath, algorithm="sha256", chunk_size=65535) -> str:
    """The hex sha256 (or md5) of a file, as keras.utils's file hash helper.

    Example:
        >>> import tempfile, kilnet
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"")
        >>> kilnet.utils.hash_file(f.name)[:16]
        'e3b0c44298fc1c14'
    """
    hasher = _hasher(algorithm)
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def validate_file(fpath, file_hash, algorithm="auto", chunk_size=65535) -> bool:
    """Whether the file's sha256 (64 hex digits with "auto") or md5 is `file_hash`.

    Example:
        >>> import tempfile, kilnet
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"")
        >>> kilnet.utils.validate_file(f.name, "d41d8cd98f00b204e9800998ecf8427e")
        True
    """
    hasher = _hasher(algorithm, str(file_hash))
    name = "sha256" if hasher.name == "sha256" else "md5"
    return hash_file(fpath, name, chunk_size) == str(file_hash).lower()


# -- downloading ------------------------------------------------------------------------------
def _download(origin, target, file_hash, algorithm):
    if offline():
        raise DownloadError(f"get_file: {origin} is not in the cache ({target}) and "
                            "KILNET_OFFLINE forbids downloading; unset it or put the file there.")
    print(f"Downloading data from {origin}")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target),
                               prefix=f".{os.path.basename(target)}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            hasher = _hasher(algorithm, file_hash)
            _copy_url(origin, out, hasher)
            out.flush()
            os.fsync(out.fileno())
        if file_hash is not None and hasher.hexdigest() != str(file_hash).lower():
            raise ValueError(f"get_file: the file downloaded from {origin} has {hasher.name} "
                             f"{hasher.hexdigest()}, not the file_hash {file_hash} given; it was "
                             "not kept. Check the hash, or the URL.")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy_url(origin, out, hasher):
    try:
        response = urllib.request.urlopen(origin, timeout=TIMEOUT_S)
    except OSError as error:
        raise DownloadError(f"get_file: cannot download {origin}: {error}") from error
    with response:
        expected = getattr(response, "length", None)
        received = 0
        while True:
            try:
                chunk = response.read(_CHUNK)
            except OSError as error:
                raise DownloadError(f"get_file: cannot download {origin}: {error}") from error
            if not chunk:
                break
            out.write(chunk)
            hasher.update(chunk)
            received += len(chunk)
    if expected is not None and received < expected:
        raise DownloadError(f"get_file: the download of {origin} stopped at {received} of "
                            f"{expected} bytes; try again.")


# -- extracting -------------------------------------------------------------------------------
def extract_archive(file_path, path=".", archive_format="auto") -> bool:
    """Extracts a tar or zip archive into `path` safely (see the module's docstring), as
    keras.utils's extract_archive; returns whether it was an archive of those formats.

    Example:
        >>> import os, tarfile, tempfile, kilnet
        >>> folder = tempfile.mkdtemp()
        >>> with open(os.path.join(folder, "a.txt"), "w") as f:
        ...     _ = f.write("a")
        >>> with tarfile.open(os.path.join(folder, "a.tar"), "w") as tar:
        ...     tar.add(os.path.join(folder, "a.txt"), arcname="a.txt")
        >>> kilnet.utils.extract_archive(os.path.join(folder, "a.tar"), os.path.join(folder, "out"))
        True
        >>> os.listdir(os.path.join(folder, "out"))
        ['a.txt']
    """
    if archive_format is None:
        return False
    formats = ["tar", "zip"] if archive_format == "auto" else archive_format
    formats = [formats] if isinstance(formats, str) else list(formats)
    for fmt in formats:
        if fmt not in ("tar", "zip"):
            raise ValueError("archive_format must be 'auto', 'tar', 'zip', a list of them, or "
                             f"None. Received: archive_format={archive_format!r}")
        if fmt == "tar" and tarfile.is_tarfile(file_path):
            _into_folder(path, lambda tmp: _extract_tar(file_path, tmp))
            return True
        if fmt == "zip" and zipfile.is_zipfile(file_path):
            _into_folder(path, lambda tmp: _extract_zip(file_path, tmp))
            return True
    return False


def _into_folder(path, extract):
    """Runs `extract(tmp)` into a fresh temp folder that then replaces `path`."""
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".part")
    try:
        extract(tmp)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _inside(root, name, archive):
    """The path `name` has under `root`; refuses absolute names and names that leave root."""
    if os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in name.split("/")[0]:
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; the "
                                 "archive was not extracted.")
    full = os.path.normpath(os.path.join(root, name))
    if os.path.commonpath([root, full]) != root:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the "
                                 "target folder; the archive was not extracted.")
    return full


def _check_total(total, archive):
    if total > MAX_EXTRACTED_BYTES:
        raise UnsafeArchiveError(f"{archive}: its members hold more than "
                                 f"{MAX_EXTRACTED_BYTES} bytes (a zip bomb?); the archive was "
                                 "not extracted. Extract it yourself if you trust it.")


def _extract_tar(archive, root):
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        total = 0
        for m in members:   # every member is checked before anything is written
            full = _inside(root, m.name, archive)
            if m.issym():
                _inside(root, os.path.join(os.path.dirname(m.name), m.linkname), archive)
            elif m.islnk():
                _inside(root, m.linkname, archive)
            elif not (m.isfile() or m.isdir()):
                raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or special "
                                         "file; the archive was not extracted.")
            total += m.size if m.isfile() else 0
            _check_total(total, archive)
        for m in members:
            full = _inside(root, m.name, archive)
            if m.isdir():
                os.makedirs(full, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if m.issym():
                os.symlink(m.linkname, full)
            elif m.islnk():
                shutil.copyfile(_inside(root, m.linkname, archive), full)
            else:
                with tar.extractfile(m) as src, open(full, "wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
        _check_no_escape(root, archive)


def _extract_zip(archive, root):
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _inside(root, info.filename, archive)
        _check_total(sum(info.file_size for info in infos), archive)
        written = 0
        for info in infos:
            full = _inside(root, info.filename, archive)
            if info.is_dir():
                os.makedirs(full, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with zf.open(info) as src, open(full, "wb") as dst:
                # The sizes in a zip's directory can lie: count what really comes out.
                for chunk in iter(lambda: src.read(_CHUNK), b""):
                    written += len(chunk)
                    _check_total(written, archive)
                    dst.write(chunk)


def _check_no_escape(root, archive):
    """After writing: no path under root resolves outside it (links chained through links)."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            real = os.path.realpath(os.path.join(folder, name))
            if os.path.commonpath([real_root, real]) != real_root:
                raise UnsafeArchiveError(f"{archive}: {os.path.join(folder, name)!r} resolves "
                                         "outside the target folder; the archive was not "
                                         "extracted.")
