"""Boston and California housing: Keras's shuffle, split and dtypes, on tiny files."""

import dataclasses
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from _dataset_files import (  # noqa: E402
    Server,
    closed_port_url,
    isolated,  # noqa: F401  (fixture)
    listing,
    npz_bytes,
    online,  # noqa: F401  (fixture)
    sha256,
)

from kilnet.datasets import (  # noqa: E402
    ChecksumError,
    DatasetError,
    boston_housing,
    cache_dir,
    california_housing,
)

pytestmark = pytest.mark.usefixtures("isolated")


def table(n, features, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return npz_bytes(x=rng.normal(size=(n, features)).astype(dtype),
                     y=rng.uniform(10, 50, n).astype(dtype))


def write(tmp_path, name, body):
    file = tmp_path / name
    file.write_bytes(body)
    return file


def keras_loader(monkeypatch, module_name, file):
    import importlib

    module = importlib.import_module(f"keras.src.datasets.{module_name}")
    monkeypatch.setattr(module, "get_file", lambda *args, **kwargs: str(file))
    return module.load_data


def assert_same(ours, theirs):
    for got, want in zip((a for split in ours for a in split), (a for split in theirs for a in split)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("arguments", [{}, {"test_split": 0.33, "seed": 4}, {"test_split": 0.0}])
def test_boston_equals_keras(tmp_path, monkeypatch, arguments):
    file = write(tmp_path, "boston_housing.npz", table(31, 13))
    ours = boston_housing.load_data(path=str(file), **arguments)
    assert_same(ours, keras_loader(monkeypatch, "boston_housing", file)(**arguments))


@pytest.mark.parametrize("version", ["small", "large"])
def test_california_equals_keras(tmp_path, monkeypatch, version):
    file = write(tmp_path, "california_housing.npz", table(650, 8, np.float32))
    ours = california_housing.load_data(version=version, path=str(file), seed=5)
    theirs = keras_loader(monkeypatch, "california_housing", file)(version=version, seed=5)
    assert_same(ours, theirs)
    assert len(ours[0][0]) + len(ours[1][0]) == (600 if version == "small" else 650)


def test_split_by_hand(tmp_path):
    x = np.arange(10.0).repeat(13).reshape(10, 13)
    file = write(tmp_path, "boston_housing.npz", npz_bytes(x=x, y=np.arange(10.0)))
    (x_train, y_train), (x_test, y_test) = boston_housing.load_data(path=str(file), seed=3)
    order = np.arange(10)
    np.random.RandomState(3).shuffle(order)
    np.testing.assert_array_equal(y_train, order[:8])
    np.testing.assert_array_equal(y_test, order[8:])
    np.testing.assert_array_equal(x_train[:, 0], order[:8])


def test_download_is_verified_and_cached(monkeypatch, online):
    body = table(20, 8)
    remote = dataclasses.replace(california_housing.DATA, digest=sha256(body))
    monkeypatch.setattr(california_housing, "DATA", remote)
    with Server({"california_housing.npz": body}) as server:
        monkeypatch.setenv("KILNET_CALIFORNIA_HOUSING_URL", server.url)
        (x_train, _), (x_test, _) = california_housing.load_data()
        california_housing.load_data()
    assert (x_train.shape, x_test.shape) == ((16, 8), (4, 8))
    assert server.hits == ["california_housing.npz"]
    assert listing(cache_dir() / "california_housing") == ["california_housing.npz"]


def test_wrong_checksum_caches_nothing(monkeypatch, online):
    monkeypatch.setattr(boston_housing, "DATA",
                        dataclasses.replace(boston_housing.DATA, digest="f" * 64))
    with Server({"boston_housing.npz": table(20, 13)}) as server:
        with pytest.raises(ChecksumError, match="expected SHA-256 f{64}"):
            boston_housing.load_data(base_url=server.url)
    assert listing(cache_dir() / "boston_housing") == []


def test_offline_error_says_what_to_do(online):
    with pytest.raises(DatasetError, match=r"boston_housing\.npz is not in kilnet's cache.*KILNET_BOSTON_HOUSING_URL"):
        boston_housing.load_data(base_url=closed_port_url())


def test_kilnet_data_file_of_that_name_is_used(tmp_path, monkeypatch):
    file = write(tmp_path, "boston_housing.npz", table(20, 13))
    monkeypatch.setenv("KILNET_DATA", str(file))
    (x_train, _), _ = boston_housing.load_data()
    assert x_train.shape == (16, 13)


def test_wrong_feature_count_is_named(tmp_path):
    file = write(tmp_path, "boston_housing.npz", table(20, 8))
    with pytest.raises(DatasetError, match=r"\['x'\]: expected numbers of shape \(N, 13\), found float64 \(20, 8\)"):
        boston_housing.load_data(path=str(file))


def test_pickled_table_is_refused(tmp_path):
    x = np.empty((2, 8), dtype=object)
    x[:] = 1.0
    file = write(tmp_path, "california_housing.npz", npz_bytes(x=x, y=np.zeros(2)))
    with pytest.raises(DatasetError, match=r"expected numbers of shape \(N, 8\), found object"):
        california_housing.load_data(path=str(file))


@pytest.mark.parametrize("test_split", [1.0, -0.1, "0.2"])
def test_bad_test_split_is_named(test_split):
    with pytest.raises(ValueError, match=rf"Received: test_split={test_split!r}"):
        boston_housing.load_data(test_split=test_split)


def test_bad_version_is_named():
    with pytest.raises(ValueError, match=r"'small', 'large'\. Received: version='medium'"):
        california_housing.load_data(version="medium")
