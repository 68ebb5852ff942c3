"""Tests for kilnet.datasets: every source in order, on tiny files made here.

The network is never used: an autouse fixture sets KILNET_OFFLINE=1, and the
download tests serve their own files from a local HTTP server.
"""

import gzip
import hashlib
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from kilnet.datasets import (
    ChecksumError,
    DatasetError,
    OfflineSubsetWarning,
    _download,
    cache_dir,
    fashion_mnist,
    mnist,
    read_idx,
)

STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# --- tiny data -------------------------------------------------------------------


def tiny_arrays(seed=0, n_train=12, n_test=6):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def idx_bytes(array, magic=None):
    magic = magic if magic is not None else (0x803 if array.ndim == 3 else 0x801)
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx_folder(folder, arrays, *, gz):
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in STEMS.items():
        data = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return folder


def write_npz(file, arrays):
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savez(file, **arrays)
    return file


def assert_loaded(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"), (y_test, "y_test")):
        assert got.dtype == np.uint8
        assert got.shape == arrays[key].shape
        np.testing.assert_array_equal(got, arrays[key])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache, no user data, no network, no Debian folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("KILNET_DATA", "KILNET_MNIST_URL", "KILNET_FASHION_MNIST_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(_download, "TIMEOUT_S", 2.0)


# --- a local HTTP server ---------------------------------------------------------


from _dataset_files import Server  # noqa: E402  (the local server the dataset tests share)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("KILNET_OFFLINE")


def mnist_npz_bytes(tmp_path, arrays):
    return write_npz(tmp_path / "served" / "mnist.npz", arrays).read_bytes()


# --- cache_dir -------------------------------------------------------------------


def test_cache_dir_uses_xdg_cache_home(tmp_path):
    assert cache_dir() == tmp_path / "xdg" / "kilnet"


def test_cache_dir_ignores_relative_xdg_and_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "kilnet"


# --- explicit path and KILNET_DATA -----------------------------------------------


def test_mnist_from_npz_path(tmp_path):
    arrays = tiny_arrays()
    assert_loaded(mnist.load_data(write_npz(tmp_path / "mnist.npz", arrays)), arrays)


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_mnist_from_idx_folder(tmp_path, gz):
    arrays = tiny_arrays()
    folder = write_idx_folder(tmp_path / "idx", arrays, gz=gz)
    assert_loaded(mnist.load_data(path=str(folder)), arrays)


def test_fashion_mnist_from_npz_path(tmp_path):
    arrays = tiny_arrays(seed=3)
    assert_loaded(fashion_mnist.load_data(write_npz(tmp_path / "f.npz", arrays)), arrays)


def test_kilnet_data_names_the_file(tmp_path, monkeypatch):
    arrays = tiny_arrays()
    monkeypatch.setenv("KILNET_DATA", str(write_npz(tmp_path / "mine.npz", arrays)))
    assert_loaded(mnist.load_data(), arrays)


def test_kilnet_data_as_a_root_serves_each_dataset(tmp_path, monkeypatch):
    digits, clothes = tiny_arrays(seed=1), tiny_arrays(seed=2)
    write_npz(tmp_path / "root" / "mnist.npz", digits)
    write_idx_folder(tmp_path / "root" / "fashion-mnist", clothes, gz=True)
    monkeypatch.setenv("KILNET_DATA", str(tmp_path / "root"))
    assert_loaded(mnist.load_data(), digits)
    assert_loaded(fashion_mnist.load_data(), clothes)


def test_path_argument_wins_over_kilnet_data(tmp_path, monkeypatch):
    mine, other = tiny_arrays(seed=1), tiny_arrays(seed=2)
    monkeypatch.setenv("KILNET_DATA", str(write_npz(tmp_path / "other.npz", other)))
    assert_loaded(mnist.load_data(write_npz(tmp_path / "mine.npz", mine)), mine)


def test_missing_path_is_named(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"does not exist\. Received: path=.*nowhere"):
        mnist.load_data(tmp_path / "nowhere")
    monkeypatch.setenv("KILNET_DATA", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match=r"Received: KILNET_DATA=.*gone"):
        mnist.load_data()


def test_wrong_kind_of_file_is_named(tmp_path):
    (tmp_path / "mnist.csv").write_text("1,2,3")
    with pytest.raises(DatasetError, match=r"\.npz file .* or a folder .*Received: path=.*mnist\.csv"):
        mnist.load_data(tmp_path / "mnist.csv")


def test_npz_missing_key_is_named(tmp_path):
    arrays = tiny_arrays()
    del arrays["y_test"]
    with pytest.raises(DatasetError, match=r"bad\.npz: expected arrays .*missing y_test"):
        mnist.load_data(write_npz(tmp_path / "bad.npz", arrays))


def test_npz_float_images_are_rejected(tmp_path):
    arrays = tiny_arrays()
    arrays["x_train"] = arrays["x_train"] / 255.0
    with pytest.raises(DatasetError, match=r"x_train.*expected uint8 images .*found float64"):
        mnist.load_data(write_npz(tmp_path / "f.npz", arrays))


def test_npz_int64_labels_become_uint8(tmp_path):
    arrays = tiny_arrays()
    wide = {**arrays, "y_train": arrays["y_train"].astype(np.int64)}
    assert_loaded(mnist.load_data(write_npz(tmp_path / "w.npz", wide)), arrays)


# --- corrupt IDX files -----------------------------------------------------------


def corrupt_folder(tmp_path, stem, data, *, gz=True):
    folder = write_idx_folder(tmp_path / "idx", tiny_arrays(), gz=gz)
    name = f"{stem}.gz" if gz else stem
    (folder / name).write_bytes(gzip.compress(data) if gz else data)
    return folder, name


def test_idx_wrong_magic_names_the_file(tmp_path):
    labels = idx_bytes(np.zeros(12, np.uint8))  # a labels file where images belong
    folder, _ = corrupt_folder(tmp_path, STEMS["x_train"], labels)
    with pytest.raises(
        DatasetError,
        match=r"train-images-idx3-ubyte\.gz: expected magic number 2051 \(images\), found 2049 \(labels\)",
    ):
        mnist.load_data(folder)


def test_idx_wrong_dtype_byte_names_the_file(tmp_path):
    data = idx_bytes(np.zeros(6, np.uint8), magic=0x00000D01)  # float32 labels
    folder, _ = corrupt_folder(tmp_path, STEMS["y_test"], data, gz=False)
    match = r"t10k-labels-idx1-ubyte: expected data-type byte 0x08 .*found 0x0d"
    with pytest.raises(DatasetError, match=match):
        mnist.load_data(folder)


def test_idx_truncated_file_names_the_file(tmp_path):
    data = idx_bytes(tiny_arrays()["x_test"])[:-100]
    folder, _ = corrupt_folder(tmp_path, STEMS["x_test"], data, gz=False)
    match = r"t10k-images-idx3-ubyte: the header promises .*\(6, 28, 28\).*truncated"
    with pytest.raises(DatasetError, match=match):
        mnist.load_data(folder)


def test_idx_too_short_for_header(tmp_path):
    (tmp_path / "labels").write_bytes(b"\x00\x00\x08")
    with pytest.raises(DatasetError, match=r"labels: expected an IDX labels header of 8 bytes, found a 3-byte"):
        read_idx(tmp_path / "labels", kind="labels")


def test_idx_truncated_gzip_names_the_file(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", tiny_arrays(), gz=True)
    file = folder / f"{STEMS['x_train']}.gz"
    file.write_bytes(file.read_bytes()[:-50])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: cannot decompress the gzip data"):
        mnist.load_data(folder)


def test_idx_count_mismatch_names_both_files(tmp_path):
    folder, _ = corrupt_folder(tmp_path, STEMS["y_train"], idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(
        DatasetError,
        match=r"train-images-idx3-ubyte\.gz holds 12 images but .*train-labels-idx1-ubyte\.gz holds 11 labels",
    ):
        mnist.load_data(folder)


def test_idx_wrong_image_size_is_named(tmp_path):
    small = np.zeros((12, 14, 14), np.uint8)
    folder, _ = corrupt_folder(tmp_path, STEMS["x_train"], idx_bytes(small))
    match = r"train-images-idx3-ubyte\.gz: expected uint8 images of shape \(N, 28, 28\)"
    with pytest.raises(DatasetError, match=match):
        mnist.load_data(folder)


def test_idx_folder_missing_file_is_named(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", tiny_arrays(), gz=True)
    (folder / f"{STEMS['y_test']}.gz").unlink()
    with pytest.raises(DatasetError, match=r"missing t10k-labels-idx1-ubyte"):
        mnist.load_data(folder)


# --- cache and download ----------------------------------------------------------


def test_mnist_from_cache(tmp_path, monkeypatch):
    arrays = tiny_arrays()
    file = write_npz(cache_dir() / "mnist" / "mnist.npz", arrays)
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", sha256(file.read_bytes()))
    assert_loaded(mnist.load_data(), arrays)  # KILNET_OFFLINE=1: no download tried


def test_mnist_download_is_verified_cached_and_reused(tmp_path, monkeypatch, online):
    arrays = tiny_arrays()
    body = mnist_npz_bytes(tmp_path, arrays)
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", sha256(body))
    with Server({"mnist.npz": body}) as server:
        assert_loaded(mnist.load_data(base_url=server.url), arrays)
        assert_loaded(mnist.load_data(base_url=server.url), arrays)
    assert server.hits == ["mnist.npz"]
    assert leftovers(cache_dir() / "mnist") == ["mnist.npz"]


def test_mnist_url_from_environment(tmp_path, monkeypatch, online):
    arrays = tiny_arrays()
    body = mnist_npz_bytes(tmp_path, arrays)
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", sha256(body))
    with Server({"mnist.npz": body}) as server:
        monkeypatch.setenv("KILNET_MNIST_URL", server.url.rstrip("/"))
        assert_loaded(mnist.load_data(), arrays)
    assert server.hits == ["mnist.npz"]


def test_damaged_cache_entry_is_downloaded_again(tmp_path, monkeypatch, online):
    arrays = tiny_arrays()
    body = mnist_npz_bytes(tmp_path, arrays)
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", sha256(body))
    (cache_dir() / "mnist").mkdir(parents=True)
    (cache_dir() / "mnist" / "mnist.npz").write_bytes(body[:-10])
    with Server({"mnist.npz": body}) as server:
        assert_loaded(mnist.load_data(base_url=server.url), arrays)
    assert server.hits == ["mnist.npz"]


def test_checksum_mismatch_raises_and_caches_nothing(tmp_path, monkeypatch, online):
    body = mnist_npz_bytes(tmp_path, tiny_arrays())
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", "0" * 64)
    with Server({"mnist.npz": body}) as server:
        with pytest.raises(ChecksumError, match=r"mnist\.npz: expected SHA-256 0{64}, found [0-9a-f]{64}"):
            mnist.load_data(base_url=server.url)
    assert leftovers(cache_dir() / "mnist") == []


def test_interrupted_download_caches_nothing_and_falls_through(tmp_path, monkeypatch, online):
    body = mnist_npz_bytes(tmp_path, tiny_arrays())
    monkeypatch.setitem(mnist.SHA256, "mnist.npz", sha256(body))
    with Server({"mnist.npz": body}, truncate={"mnist.npz"}) as server:
        with pytest.warns(OfflineSubsetWarning, match=r"offline \(no download\)"):
            (x_train, _), _ = mnist.load_data(base_url=server.url)
    assert x_train.shape == (4000, 28, 28)
    assert leftovers(cache_dir() / "mnist") == []


def test_interrupted_fetch_raises_download_error(tmp_path):
    with Server({"f.bin": b"x" * 5000}, truncate={"f.bin"}) as server:
        with pytest.raises(_download.DownloadError, match="transfer stopped at 2500 of 6000 bytes"):
            _download.fetch(server.url + "f.bin", tmp_path / "c" / "f.bin", sha256(b"x" * 5000))
    assert leftovers(tmp_path / "c") == []


def test_ctrl_c_during_download_leaves_no_temp_file(tmp_path, monkeypatch):
    def interrupted(response, url):
        raise KeyboardInterrupt

    monkeypatch.setattr(_download, "_read", interrupted)
    with Server({"f.bin": b"x" * 5000}) as server:
        with pytest.raises(KeyboardInterrupt):
            _download.fetch(server.url + "f.bin", tmp_path / "c" / "f.bin", sha256(b"x" * 5000))
    assert leftovers(tmp_path / "c") == []


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys, tty):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    with Server({"f.bin": b"x" * 5000}) as server:
        _download.fetch(server.url + "f.bin", tmp_path / "f.bin", sha256(b"x" * 5000))
    assert (tmp_path / "f.bin").read_bytes() == b"x" * 5000
    assert ("f.bin" in capsys.readouterr().err) == tty


def test_refused_connection_falls_through(monkeypatch, online):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.warns(OfflineSubsetWarning, match=r"offline \(no download\)") as record:
        mnist.load_data(base_url=f"http://127.0.0.1:{port}/")
    text = str(record[0].message)  # one short line: no URL, no socket error
    assert "http" not in text and "urlopen" not in text and len(text) < 130


def test_timeout_falls_through(monkeypatch, online):
    monkeypatch.setattr(_download, "TIMEOUT_S", 0.2)
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.warns(OfflineSubsetWarning, match=r"offline \(no download\)"):
            mnist.load_data(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/")
    assert leftovers(cache_dir() / "mnist") == []


# --- offline MNIST subset --------------------------------------------------------


def test_offline_mnist_is_a_stratified_5000_digit_subset():
    with pytest.warns(OfflineSubsetWarning, match=r"5,000-digit subset.*KILNET_DATA") as record:
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == x_test.dtype == y_train.dtype == y_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [100] * 10)
    assert x_train.max() > 200 and x_train.mean() > 10  # real 0-255 digits, not blanks
    # Train and test are disjoint: no test image also appears in the training set.
    train_rows = {row.tobytes() for row in x_train}
    assert not any(row.tobytes() in train_rows for row in x_test)
    # A fixed seed: the same split every call.
    with pytest.warns(OfflineSubsetWarning):
        (again, _), _ = mnist.load_data()
    np.testing.assert_array_equal(again, x_train)


def test_offline_split_is_deterministic():
    labels = np.repeat(np.arange(10), 50)
    first = mnist._stratified_split(labels, test_fraction=0.2, seed=0)
    second = mnist._stratified_split(labels, test_fraction=0.2, seed=0)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert len(np.intersect1d(*first)) == 0 and len(first[0]) + len(first[1]) == 500


# --- Fashion-MNIST ---------------------------------------------------------------


def fashion_served(arrays, monkeypatch):
    files = {f"{STEMS[key]}.gz": gzip.compress(idx_bytes(arrays[key])) for key in STEMS}
    for name, body in files.items():
        monkeypatch.setitem(fashion_mnist.SHA256, name, sha256(body))
    return files


def test_fashion_mnist_download_is_cached(monkeypatch, online):
    arrays = tiny_arrays(seed=5)
    with Server(fashion_served(arrays, monkeypatch)) as server:
        monkeypatch.setenv("KILNET_FASHION_MNIST_URL", server.url)
        assert_loaded(fashion_mnist.load_data(), arrays)
        assert_loaded(fashion_mnist.load_data(), arrays)
    assert len(server.hits) == 4
    assert leftovers(cache_dir() / "fashion-mnist") == sorted(f"{s}.gz" for s in STEMS.values())


def test_fashion_mnist_from_cache_offline(monkeypatch):
    arrays = tiny_arrays(seed=5)
    folder = cache_dir() / "fashion-mnist"
    folder.mkdir(parents=True)
    for name, body in fashion_served(arrays, monkeypatch).items():
        (folder / name).write_bytes(body)
    assert_loaded(fashion_mnist.load_data(), arrays)


def test_fashion_mnist_interrupted_download_falls_back_to_debian(tmp_path, monkeypatch, online):
    arrays, debian = tiny_arrays(seed=5), tiny_arrays(seed=6)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", write_idx_folder(tmp_path / "deb", debian, gz=True))
    name = f"{STEMS['x_train']}.gz"
    with Server(fashion_served(arrays, monkeypatch), truncate={name}) as server:
        assert_loaded(fashion_mnist.load_data(base_url=server.url), debian)
    assert name not in leftovers(cache_dir() / "fashion-mnist")
    assert not any(n.endswith(".part") for n in leftovers(cache_dir() / "fashion-mnist"))


def test_fashion_mnist_from_debian_folder(tmp_path, monkeypatch):
    arrays = tiny_arrays(seed=7)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", write_idx_folder(tmp_path / "deb", arrays, gz=True))
    assert_loaded(fashion_mnist.load_data(), arrays)


def test_fashion_mnist_unavailable_says_how_to_fix():
    with pytest.raises(DatasetError, match=r"not available.*KILNET_OFFLINE is set.*dataset-fashion-mnist"):
        fashion_mnist.load_data()


REAL_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_real_debian_folder(monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", REAL_DEBIAN)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
