"""get_file against a local HTTP server: one download, hash checks, Keras's paths, and safe
extraction (traversal, absolute paths, outside links, device files and bombs refused)."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import tarfile
import threading
import zipfile

import pytest

from kilnet import utils
from kilnet.utils import _get_file


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1; yields (folder, base URL, request log)."""
    www = tmp_path / "www"
    www.mkdir()
    log = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):
            log.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}", log
    httpd.shutdown()
    httpd.server_close()


def test_downloads_once_and_checks_hashes(server, tmp_path):
    www, url, log = server
    (www / "data.bin").write_bytes(b"payload" * 100)
    sha = hashlib.sha256(b"payload" * 100).hexdigest()
    md5 = hashlib.md5(b"payload" * 100).hexdigest()
    cache = tmp_path / "cache"
    path = utils.get_file(origin=f"{url}/data.bin", file_hash=sha, cache_dir=cache)
    assert path == os.path.join(cache, "datasets", "data.bin")
    assert open(path, "rb").read() == b"payload" * 100
    assert utils.get_file(origin=f"{url}/data.bin", md5_hash=md5, cache_dir=cache) == path
    assert len(log) == 1                           # the second call used the cache
    utils.get_file("data.bin", f"{url}/data.bin", cache_dir=cache, force_download=True)
    assert len(log) == 2
    with pytest.raises(ValueError, match="not the file_hash"):
        utils.get_file("other.bin", f"{url}/data.bin", file_hash="0" * 64, cache_dir=cache)
    assert not os.path.exists(cache / "datasets" / "other.bin")
    assert [p for p in os.listdir(cache / "datasets") if p.endswith(".part")] == []


def test_default_cache_is_kilnets(server, tmp_path, monkeypatch):
    www, url, _ = server
    (www / "a.txt").write_text("a")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = utils.get_file(origin=f"{url}/a.txt")
    assert path == str(tmp_path / "xdg" / "kilnet" / "datasets" / "a.txt")


def test_network_errors_and_bad_names(server, tmp_path):
    _, url, _ = server
    with pytest.raises(OSError, match="cannot download"):
        utils.get_file(origin=f"{url}/missing.bin", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fname"):
        utils.get_file(fname="a/b.txt", origin=f"{url}/x", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="origin"):
        utils.get_file("x.txt", cache_dir=tmp_path)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _member(name, data=b"", kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, len(data)
    return info, data if kind == tarfile.REGTYPE else None


def test_extracts_tar_and_zip_where_keras_does(server, tmp_path):
    www, url, _ = server
    _tar(www / "pack.tar.gz", [_member("pack/a.txt", b"A"), _member("pack/sub/b.txt", b"B")])
    with zipfile.ZipFile(www / "z.zip", "w") as zf:
        zf.writestr("z/c.txt", "C")
    out = utils.get_file("pack.tar.gz", f"{url}/pack.tar.gz", extract=True, cache_dir=tmp_path)
    assert out == os.path.join(tmp_path, "datasets", "pack_extracted")
    assert open(os.path.join(out, "pack", "sub", "b.txt")).read() == "B"
    out = utils.get_file(origin=f"{url}/z.zip", extract=True, cache_dir=tmp_path)
    assert out == os.path.join(tmp_path, "datasets", "z.zip")   # Keras: folder named as URL
    assert open(os.path.join(out, "z", "c.txt")).read() == "C"


@pytest.mark.parametrize("members, match", [
    ([_member("ok.txt", b"x"), _member("../evil.txt", b"pwned")], "outside"),
    ([_member("/tmp/kilnet_evil_abs.txt", b"pwned")], "absolute"),
    ([_member("link", kind=tarfile.SYMTYPE, linkname="../../..")], "outside"),
    ([_member("hard", kind=tarfile.LNKTYPE, linkname="../evil.txt")], "outside"),
    ([_member("dev", kind=tarfile.CHRTYPE)], "device"),
])
def test_unsafe_tar_is_refused_and_nothing_written(server, tmp_path, members, match):
    www, url, _ = server
    _tar(www / "bad.tar.gz", members)
    cache = tmp_path / "cache"
    with pytest.raises(_get_file.UnsafeArchiveError, match=match):
        utils.get_file("bad.tar.gz", f"{url}/bad.tar.gz", extract=True, cache_dir=cache)
    assert not (cache / "evil.txt").exists() and not (cache / "datasets" / "evil.txt").exists()
    assert not os.path.exists("/tmp/kilnet_evil_abs.txt")
    assert sorted(os.listdir(cache / "datasets")) == ["bad.tar.gz"]   # no folder, no temp


def test_unsafe_zip_and_zip_bomb_are_refused(server, tmp_path, monkeypatch):
    www, url, _ = server
    with zipfile.ZipFile(www / "trav.zip", "w") as zf:
        zf.writestr("fine.txt", "x")
        zf.writestr("../../escaped.txt", "pwned")
    with pytest.raises(_get_file.UnsafeArchiveError, match="outside"):
        utils.get_file("trav.zip", f"{url}/trav.zip", extract=True, cache_dir=tmp_path)
    assert not (tmp_path / "escaped.txt").exists()
    with zipfile.ZipFile(www / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 200_000)
    monkeypatch.setattr(_get_file, "MAX_EXTRACTED_BYTES", 100_000)
    with pytest.raises(_get_file.UnsafeArchiveError, match="zip bomb"):
        utils.get_file("bomb.zip", f"{url}/bomb.zip", extract=True, cache_dir=tmp_path)
    assert not (tmp_path / "datasets" / "bomb_extracted").exists()
