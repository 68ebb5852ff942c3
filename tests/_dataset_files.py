"""Tiny dataset files in Keras's real formats, a local HTTP server, hostile pickles.

Used by tests/test_datasets_*.py. CIFAR's batches are Python 2 pickles
(protocol 2, str keys and raw bytes as BINSTRING, which Python 3 reads as
bytes); `py2_pickle` writes them that way. The text datasets are `.npz`
files of object arrays, written by `np.savez` as Keras's were.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from kilnet.datasets import _download


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A private cache, no user data, no network unless a test asks for it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in list(os.environ):
        if var == "KILNET_DATA" or (var.startswith("KILNET_") and var.endswith("_URL")):
            monkeypatch.delenv(var)
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.setattr(_download, "TIMEOUT_S", 2.0)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("KILNET_OFFLINE", raising=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def listing(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


class Server:
    """Serves `files` ({name: bytes}) on 127.0.0.1; `truncate` names files cut short."""

    def __init__(self, files, truncate=()):
        self.files, self.truncate, self.hits = files, set(truncate), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.hits.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                body, cut = server.files[name], name in server.truncate
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if cut else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/data/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- Python 2 style pickles (CIFAR) ------------------------------------------------


class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str opcodes (Python 3's protocol 2 would call _codecs)."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_pickle(obj) -> bytes:
    out = io.BytesIO()
    _Py2Pickler(out, protocol=2).dump(obj)
    # NumPy 2 names its private module `numpy._core`; Python 2 era files say `numpy.core`.
    return out.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(rng, n: int, label_keys: dict) -> tuple[dict, np.ndarray]:
    """A batch dict as CIFAR's (bytes keys) and its pixels (n, 3072)."""
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"training batch", b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    for key, n_classes in label_keys.items():
        batch[key.encode()] = [int(v) for v in rng.integers(0, n_classes, n)]
    return batch, data


def tar_bytes(members: dict, folder: str | None = None) -> bytes:
    """A .tar.gz of {name: bytes}; `folder` adds its directory entry first, as CIFAR's do."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        if folder:
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def cifar10_files(seed=0, per_batch=4, test=3):
    """({member name: bytes} of a cifar-10-python tarball, x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    files, xs, ys = {}, [], []
    for i in range(1, 6):
        batch, data = cifar_batch(rng, per_batch, {"labels": 10})
        files[f"data_batch_{i}"] = py2_pickle(batch)
        xs.append(data)
        ys.append(batch[b"labels"])
    batch, data = cifar_batch(rng, test, {"labels": 10})
    files["test_batch"] = py2_pickle(batch)
    files["batches.meta"] = py2_pickle({b"label_names": [b"airplane"] * 10})
    files["readme.html"] = b"<meta http-equiv='refresh'>"
    return files, _images(np.concatenate(xs)), _labels(ys), _images(data), _labels([batch[b"labels"]])


def cifar100_files(seed=0, train=6, test=3):
    """({member name: bytes} of a cifar-100-python tarball, {split: (x, fine, coarse)})."""
    rng = np.random.default_rng(seed)
    files, expected = {}, {}
    for name, n in (("train", train), ("test", test)):
        batch, data = cifar_batch(rng, n, {"fine_labels": 100, "coarse_labels": 20})
        files[name] = py2_pickle(batch)
        expected[name] = (_images(data), _labels([batch[b"fine_labels"]]),
                          _labels([batch[b"coarse_labels"]]))
    files["meta"] = py2_pickle({b"fine_label_names": [b"apple"] * 100})
    files["file.txt~"] = b""
    return files, expected


def in_folder(files: dict, folder: str) -> dict:
    return {f"{folder}/{name}": data for name, data in files.items()}


def write_folder(root: Path, files: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def _images(data):
    """Independent reference: CIFAR rows are 1024 red, 1024 green, 1024 blue values."""
    n = len(data)
    red, green, blue = (data[:, c * 1024:(c + 1) * 1024].reshape(n, 32, 32) for c in range(3))
    return np.stack([red, green, blue], axis=-1)


def _labels(parts):
    return np.concatenate([np.asarray(p) for p in parts]).astype(np.uint8).reshape(-1, 1)


# --- .npz files with object arrays (IMDB, Reuters) ---------------------------------


def sequences(rng, n: int, vocabulary=60, longest=25) -> np.ndarray:
    """`n` word-index lists of different lengths, as a 1-D object array."""
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = [int(w) for w in rng.integers(1, vocabulary, rng.integers(1, longest))]
    return out


def npz_bytes(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)  # object arrays are pickled inside, as in Keras's files
    return out.getvalue()


def imdb_npz(seed=0, n_train=40, n_test=30) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(x_train=sequences(rng, n_train), y_train=rng.integers(0, 2, n_train),
                     x_test=sequences(rng, n_test), y_test=rng.integers(0, 2, n_test))


def reuters_npz(seed=0, n=50) -> bytes:
    rng = np.random.default_rng(seed)
    return npz_bytes(x=sequences(rng, n), y=rng.integers(0, 46, n))


# --- hostile pickles ----------------------------------------------------------------


class Call:
    """Pickles as a call of `function(argument)`, the way an attack would."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


def hostile_calls(marker: Path) -> dict:
    """Each creates `marker` when unpickled by the standard unpickler."""
    return {
        "os.system": Call(os.system, f"touch {marker}"),
        "builtins.eval": Call(eval, f"open({str(marker)!r}, 'w').close()"),
    }


def hostile_npy(payload) -> bytes:
    """A `.npy` stream whose header promises an object array and whose pickle is `payload`."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        out, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    pickle.dump(payload, out, protocol=4)
    return out.getvalue()
