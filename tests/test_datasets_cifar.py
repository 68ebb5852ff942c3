"""CIFAR-10/100 as Keras loads them, read safely from tiny tarballs made here.

The files are in the published formats (a .tar.gz holding Python 2 protocol-2
pickles with bytes keys); downloads come from a local HTTP server.
"""

import dataclasses
import os
import pickle

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from _dataset_files import (  # noqa: E402
    Server,
    cifar10_files,
    cifar100_files,
    closed_port_url,
    hostile_calls,
    in_folder,
    isolated,  # noqa: F401  (fixture)
    listing,
    online,  # noqa: F401  (fixture)
    py2_pickle,
    sha256,
    tar_bytes,
    write_folder,
)

from kilnet.datasets import ChecksumError, DatasetError, cache_dir, cifar10, cifar100  # noqa: E402
from kilnet.datasets._safe_pickle import UnsafePickleError  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated")
C10, C100 = "cifar-10-batches-py", "cifar-100-python"


def cifar10_tarball(**kwargs):
    files, *expected = cifar10_files(**kwargs)
    return tar_bytes(in_folder(files, C10), folder=C10), expected


def assert_cifar(result, x_train, y_train, x_test, y_test):
    (xa, ya), (xb, yb) = result
    for got, want in ((xa, x_train), (ya, y_train), (xb, x_test), (yb, y_test)):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _with_digest(remote, digest):
    return dataclasses.replace(remote, digest=digest)


# --- sources ---------------------------------------------------------------------


def test_cifar10_download_is_verified_cached_and_reused(monkeypatch, online):
    body, expected = cifar10_tarball()
    monkeypatch.setattr(cifar10, "DATA", _with_digest(cifar10.DATA, sha256(body)))
    with Server({"cifar-10-python.tar.gz": body}) as server:
        assert_cifar(cifar10.load_data(base_url=server.url), *expected)
        assert_cifar(cifar10.load_data(base_url=server.url), *expected)
    assert server.hits == ["cifar-10-python.tar.gz"]
    assert listing(cache_dir() / "cifar10") == ["cifar-10-python.tar.gz"]


def test_cifar10_shapes_follow_keras(tmp_path):
    # 20 train, 3 test images in the tiny file; Keras's layout (N, 32, 32, 3) and (N, 1).
    body, _ = cifar10_tarball()
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(body)
    (x_train, y_train), (x_test, y_test) = cifar10.load_data(path=tmp_path)
    assert x_train.shape == (20, 32, 32, 3) and y_train.shape == (20, 1)
    assert x_test.shape == (3, 32, 32, 3) and y_test.shape == (3, 1)


def test_cifar10_url_from_environment(monkeypatch, online):
    body, expected = cifar10_tarball()
    monkeypatch.setattr(cifar10, "DATA", _with_digest(cifar10.DATA, sha256(body)))
    with Server({"cifar-10-python.tar.gz": body}) as server:
        monkeypatch.setenv("KILNET_CIFAR10_URL", server.url)
        assert_cifar(cifar10.load_data(), *expected)
    assert server.hits == ["cifar-10-python.tar.gz"]


def test_cifar10_from_extracted_folder_and_its_parent(tmp_path):
    files, *expected = cifar10_files()
    folder = write_folder(tmp_path / "keras" / C10, files)
    assert_cifar(cifar10.load_data(path=folder), *expected)
    assert_cifar(cifar10.load_data(path=folder.parent), *expected)


def test_cifar10_from_kilnet_data(tmp_path, monkeypatch):
    body, expected = cifar10_tarball()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cifar-10-python.tar.gz").write_bytes(body)
    monkeypatch.setenv("KILNET_DATA", str(tmp_path / "data"))
    assert_cifar(cifar10.load_data(), *expected)  # offline: KILNET_DATA needs no network


def test_cifar10_damaged_cache_entry_is_downloaded_again(monkeypatch, online):
    body, expected = cifar10_tarball()
    monkeypatch.setattr(cifar10, "DATA", _with_digest(cifar10.DATA, sha256(body)))
    (cache_dir() / "cifar10").mkdir(parents=True)
    (cache_dir() / "cifar10" / "cifar-10-python.tar.gz").write_bytes(body[:-7])
    with Server({"cifar-10-python.tar.gz": body}) as server:
        assert_cifar(cifar10.load_data(base_url=server.url), *expected)
    assert server.hits == ["cifar-10-python.tar.gz"]


def test_cifar10_wrong_checksum_is_refused_and_caches_nothing(monkeypatch, online):
    body, _ = cifar10_tarball()
    monkeypatch.setattr(cifar10, "DATA", _with_digest(cifar10.DATA, "0" * 64))
    with Server({"cifar-10-python.tar.gz": body}) as server:
        with pytest.raises(ChecksumError, match="expected SHA-256 0{64}"):
            cifar10.load_data(base_url=server.url)
    assert listing(cache_dir() / "cifar10") == []


def test_cifar10_offline_error_says_what_to_do(online):
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz is not in kilnet's cache") as info:
        cifar10.load_data(base_url=closed_port_url())
    message = str(info.value)
    assert "cannot download" in message and "KILNET_CIFAR10_URL" in message and "path=" in message
    assert listing(cache_dir() / "cifar10") == []


def test_kilnet_offline_is_named():
    with pytest.raises(DatasetError, match="KILNET_OFFLINE is set"):
        cifar100.load_data()


def test_missing_path_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"Received: path='.*nowhere'"):
        cifar10.load_data(path=tmp_path / "nowhere")


# --- Keras's processing ---------------------------------------------------------------


def test_cifar10_batches_parse_as_keras_parses_them(tmp_path):
    from keras.src.datasets.cifar import load_batch

    files, x_train, y_train, x_test, y_test = cifar10_files()
    folder = write_folder(tmp_path / C10, files)
    (xa, ya), (xb, yb) = cifar10.load_data(path=folder)
    batches = [load_batch(str(folder / f"data_batch_{i}")) for i in range(1, 6)]
    keras_x = np.concatenate([x for x, _ in batches]).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(xa, keras_x)
    np.testing.assert_array_equal(ya[:, 0], np.concatenate([y for _, y in batches]))
    keras_test_x, keras_test_y = load_batch(str(folder / "test_batch"))
    np.testing.assert_array_equal(xb, keras_test_x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(yb[:, 0], keras_test_y)


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_cifar100_equals_keras(tmp_path, monkeypatch, label_mode):
    import keras
    from keras.src.datasets import cifar100 as keras_cifar100

    files, expected = cifar100_files()
    write_folder(tmp_path / "keras" / C100, files)
    monkeypatch.setattr(keras_cifar100, "get_file", lambda **kw: str(tmp_path / "keras"))
    keras_result = keras.datasets.cifar100.load_data(label_mode=label_mode)
    tarball = tmp_path / "cifar-100-python.tar.gz"
    tarball.write_bytes(tar_bytes(in_folder(files, C100), folder=C100))
    ours = cifar100.load_data(label_mode=label_mode, path=tarball)
    column = 1 if label_mode == "fine" else 2
    for (x, y), (kx, ky), split in zip(ours, keras_result, ("train", "test")):
        np.testing.assert_array_equal(x, kx)
        np.testing.assert_array_equal(y, ky)
        np.testing.assert_array_equal(y, expected[split][column])
        assert x.dtype == np.uint8 and y.dtype == np.uint8 and y.shape == (len(x), 1)


def test_cifar100_rejects_unknown_label_mode():
    with pytest.raises(ValueError, match=r'"fine" or "coarse"\. Received: label_mode=\'medium\''):
        cifar100.load_data(label_mode="medium")


# --- refusing hostile or damaged files ------------------------------------------------


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_hostile_pickle_in_tarball_is_refused_and_runs_nothing(tmp_path, attack):
    marker = tmp_path / "marker"
    payload = hostile_calls(marker)[attack]
    # The payload really runs under the standard unpickler (what the test guards against).
    pickle.loads(pickle.dumps(payload))
    assert marker.exists()
    marker.unlink()
    files, *_ = cifar10_files()
    files["data_batch_3"] = py2_pickle({b"data": payload, b"labels": [0]})
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(tar_bytes(in_folder(files, C10), folder=C10))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle .*data_batch_3"):
        cifar10.load_data(path=tarball)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", f"{C10}/extra", f"{C10}/sub/data_batch_1"])
def test_unexpected_tar_member_is_refused(tmp_path, name):
    files, *_ = cifar10_files()
    members = in_folder(files, C10)
    members[name] = b"x"
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(tar_bytes(members, folder=C10))
    with pytest.raises(DatasetError, match="unexpected member"):
        cifar10.load_data(path=tarball)
    assert listing(tmp_path) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_oversized_member_is_refused_before_reading(tmp_path, monkeypatch):
    from kilnet.datasets import _cifar

    monkeypatch.setattr(_cifar, "MAX_MEMBER_BYTES", 1000)
    body, _ = cifar10_tarball()
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(body)
    with pytest.raises(DatasetError, match="more than the 1000 allowed"):
        cifar10.load_data(path=tarball)


def test_missing_batch_is_named(tmp_path):
    files, *_ = cifar10_files()
    del files["data_batch_5"]
    tarball = tmp_path / "cifar-10-python.tar.gz"
    tarball.write_bytes(tar_bytes(in_folder(files, C10), folder=C10))
    with pytest.raises(DatasetError, match="lacks data_batch_5"):
        cifar10.load_data(path=tarball)


def test_wrong_pixels_and_labels_are_named(tmp_path):
    files, *_ = cifar10_files()
    files["test_batch"] = py2_pickle({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]})
    with pytest.raises(DatasetError, match=r"test_batch: expected 'data' to be uint8 pixels"):
        cifar10.load_data(path=write_folder(tmp_path / "a" / C10, files))
    files["test_batch"] = py2_pickle({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]})
    with pytest.raises(DatasetError, match=r"'labels' to hold 2 labels in 0\.\.9"):
        cifar10.load_data(path=write_folder(tmp_path / "b" / C10, files))


def test_not_a_tarball_is_named(tmp_path):
    file = tmp_path / "cifar-10-python.tar.gz"
    file.write_bytes(b"not a tar file at all" * 50)
    with pytest.raises(DatasetError, match="cannot read it as a tar archive"):
        cifar10.load_data(path=file)


def test_kilnet_data_naming_the_extracted_folder(tmp_path, monkeypatch):
    files, *expected = cifar10_files()
    monkeypatch.setenv("KILNET_DATA", str(write_folder(tmp_path / C10, files)))
    assert_cifar(cifar10.load_data(), *expected)


def test_kilnet_data_naming_another_dataset_is_not_used(tmp_path, monkeypatch):
    (tmp_path / "mnist.npz").write_bytes(b"")
    monkeypatch.setenv("KILNET_DATA", str(tmp_path / "mnist.npz"))
    with pytest.raises(DatasetError, match="KILNET_OFFLINE is set"):
        cifar10.load_data()


def test_path_of_the_wrong_type_is_named():
    with pytest.raises(DatasetError, match=r"Received: path=3"):
        cifar10.load_data(path=3)
