"""IMDB and Reuters: read without allow_pickle, processed exactly as Keras processes them.

Keras's own loaders are run on the same tiny `.npz` files (their `get_file`
patched to return the local file) and must give the same arrays.
"""

import dataclasses
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from _dataset_files import (  # noqa: E402
    Server,
    closed_port_url,
    hostile_calls,
    hostile_npy,
    imdb_npz,
    isolated,  # noqa: F401  (fixture)
    listing,
    md5,
    npz_bytes,
    online,  # noqa: F401  (fixture)
    reuters_npz,
    sha256,
)

from kilnet.datasets import ChecksumError, DatasetError, cache_dir, imdb, reuters  # noqa: E402
from kilnet.datasets._safe_pickle import UnsafePickleError  # noqa: E402

pytestmark = pytest.mark.usefixtures("isolated")

# Argument sets that exercise each step of Keras's processing.
CASES = [
    {},
    {"num_words": 20, "skip_top": 3},
    {"maxlen": 12, "seed": 7},
    {"start_char": None, "oov_char": None, "index_from": 0, "num_words": 30},
    {"start_char": None, "index_from": 5, "skip_top": 8, "oov_char": 4},
]


def write(tmp_path, name, body):
    file = tmp_path / name
    file.write_bytes(body)
    return file


def assert_same(ours, theirs):
    for (x, y), (kx, ky) in zip(ours, theirs):
        assert x.dtype == object and x.ndim == 1 and len(x) == len(kx)
        assert [list(s) for s in x] == [list(s) for s in kx]
        assert y.dtype == ky.dtype
        np.testing.assert_array_equal(y, ky)


def keras_loader(monkeypatch, module_name, file):
    """Keras's own `load_data`, reading `file` instead of downloading."""
    import importlib

    module = importlib.import_module(f"keras.src.datasets.{module_name}")
    monkeypatch.setattr(module, "get_file", lambda *args, **kwargs: str(file))
    return module.load_data


@pytest.mark.parametrize("arguments", CASES)
def test_imdb_equals_keras(tmp_path, monkeypatch, arguments):
    file = write(tmp_path, "imdb.npz", imdb_npz())
    keras_load = keras_loader(monkeypatch, "imdb", file)
    assert_same(imdb.load_data(path=str(file), **arguments), keras_load(**arguments))


@pytest.mark.parametrize("arguments", CASES + [{"test_split": 0.35}])
def test_reuters_equals_keras(tmp_path, monkeypatch, arguments):
    file = write(tmp_path, "reuters.npz", reuters_npz())
    keras_load = keras_loader(monkeypatch, "reuters", file)
    assert_same(reuters.load_data(path=str(file), **arguments), keras_load(**arguments))


def test_imdb_by_hand(tmp_path):
    """Keras's documented rules on a file small enough to follow by hand."""
    x = np.empty(2, dtype=object)
    x[:] = [[1, 2, 3], [7]]
    file = write(tmp_path, "imdb.npz", npz_bytes(x_train=x, y_train=np.array([0, 1]),
                                                 x_test=x, y_test=np.array([1, 0])))
    (x_train, y_train), _ = imdb.load_data(path=str(file), seed=0, num_words=6, skip_top=4)
    # The order is whatever RandomState(0) draws, computed here rather than assumed.
    order = np.arange(2)
    np.random.RandomState(0).shuffle(order)
    # start 1 (< skip_top: oov 2), words shifted by 3: 4 5 6 -> 4 5 oov, 10 -> oov.
    by_row = {0: [2, 4, 5, 2], 1: [2, 2]}
    assert [list(s) for s in x_train] == [by_row[i] for i in order]
    np.testing.assert_array_equal(y_train, np.array([0, 1])[order])


def test_equal_length_sequences_stay_a_list_array(tmp_path):
    x = np.empty(2, dtype=object)
    x[:] = [[1, 2], [3, 4]]
    file = write(tmp_path, "reuters.npz", npz_bytes(x=x, y=np.array([0, 1])))
    (x_train, _), (x_test, _) = reuters.load_data(path=str(file), test_split=0.5)
    assert x_train.shape == (1,) and isinstance(x_train[0], list)


def test_maxlen_that_empties_a_split_is_refused(tmp_path):
    file = write(tmp_path, "imdb.npz", imdb_npz())
    with pytest.raises(ValueError, match="maxlen=2.*Increase maxlen"):
        imdb.load_data(path=str(file), maxlen=2)


@pytest.mark.parametrize("argument, value", [
    ("num_words", 0), ("skip_top", -1), ("maxlen", 2.5), ("index_from", None), ("oov_char", "x"),
])
def test_bad_arguments_are_named(argument, value):
    with pytest.raises(ValueError, match=rf"Received: {argument}={value!r}"):
        imdb.load_data(**{argument: value})


def test_bad_test_split_is_named():
    with pytest.raises(ValueError, match=r"Received: test_split=1\.5"):
        reuters.load_data(test_split=1.5)


def test_reuters_label_names_match_keras():
    import keras

    assert reuters.get_label_names() == tuple(keras.datasets.reuters.get_label_names())


# --- sources and downloads ----------------------------------------------------------


def test_imdb_download_is_verified_cached_and_reused(monkeypatch, online, tmp_path):
    body = imdb_npz()
    expected = imdb.load_data(path=str(write(tmp_path, "imdb.npz", body)))
    monkeypatch.setattr(imdb, "DATA", dataclasses.replace(imdb.DATA, digest=sha256(body)))
    with Server({"imdb.npz": body}) as server:
        assert_same(imdb.load_data(base_url=server.url), expected)
        assert_same(imdb.load_data(base_url=server.url), expected)
    assert server.hits == ["imdb.npz"]
    assert listing(cache_dir() / "imdb") == ["imdb.npz"]


def test_bare_path_is_the_cache_name_as_in_keras(monkeypatch, online):
    body = reuters_npz()
    monkeypatch.setattr(reuters, "DATA", dataclasses.replace(reuters.DATA, digest=sha256(body)))
    with Server({"reuters.npz": body}) as server:
        monkeypatch.setenv("KILNET_REUTERS_URL", server.url)
        reuters.load_data(path="my_reuters.npz")
    assert listing(cache_dir() / "reuters") == ["my_reuters.npz"]


def test_kilnet_data_folder_serves_the_files(tmp_path, monkeypatch):
    (tmp_path / "data" / "reuters").mkdir(parents=True)
    write(tmp_path / "data", "imdb.npz", imdb_npz())
    write(tmp_path / "data" / "reuters", "reuters.npz", reuters_npz())
    monkeypatch.setenv("KILNET_DATA", str(tmp_path / "data"))
    (x_train, _), _ = imdb.load_data()  # offline: no network needed
    assert len(x_train) == 40
    (x_train, _), (x_test, _) = reuters.load_data()
    assert (len(x_train), len(x_test)) == (40, 10)


def test_wrong_checksum_is_refused_and_caches_nothing(monkeypatch, online):
    monkeypatch.setattr(imdb, "DATA", dataclasses.replace(imdb.DATA, digest="0" * 64))
    with Server({"imdb.npz": imdb_npz()}) as server:
        with pytest.raises(ChecksumError, match="expected SHA-256 0{64}"):
            imdb.load_data(base_url=server.url)
    assert listing(cache_dir() / "imdb") == []


def test_offline_error_says_what_to_do(online):
    with pytest.raises(DatasetError, match=r"imdb\.npz is not in kilnet's cache .*cannot download"):
        imdb.load_data(base_url=closed_port_url())
    assert listing(cache_dir() / "imdb") == []


def test_kilnet_offline_error_names_the_fixes():
    with pytest.raises(DatasetError, match="KILNET_OFFLINE is set.*KILNET_REUTERS_URL"):
        reuters.load_data()


def test_missing_user_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match=r"Received: path='.*missing\.npz'.*bare file name"):
        imdb.load_data(path=str(tmp_path / "missing.npz"))


# --- word indices (Keras publishes MD5 for these) ---------------------------------------


def test_word_index_download_is_md5_checked_and_cached(monkeypatch, online):
    body = json.dumps({"the": 1, "film": 2}).encode()
    monkeypatch.setattr(imdb, "WORD_INDEX", dataclasses.replace(imdb.WORD_INDEX, digest=md5(body)))
    with Server({"imdb_word_index.json": body}) as server:
        assert imdb.get_word_index(base_url=server.url) == {"the": 1, "film": 2}
        assert imdb.get_word_index(base_url=server.url) == {"the": 1, "film": 2}
    assert server.hits == ["imdb_word_index.json"]
    assert listing(cache_dir() / "imdb") == ["imdb_word_index.json"]


def test_word_index_wrong_md5_caches_nothing(monkeypatch, online):
    monkeypatch.setattr(reuters, "WORD_INDEX", dataclasses.replace(reuters.WORD_INDEX, digest="0" * 32))
    with Server({"reuters_word_index.json": b'{"a": 1}'}) as server:
        with pytest.raises(ChecksumError, match="expected MD5 0{32}"):
            reuters.get_word_index(base_url=server.url)
    assert listing(cache_dir() / "reuters") == []


def test_word_index_interrupted_download_caches_nothing(monkeypatch, online):
    body = json.dumps({"word": 1}).encode()
    monkeypatch.setattr(imdb, "WORD_INDEX", dataclasses.replace(imdb.WORD_INDEX, digest=md5(body)))
    with Server({"imdb_word_index.json": body}, truncate={"imdb_word_index.json"}) as server:
        with pytest.raises(DatasetError, match=r"transfer stopped at \d+ of \d+ bytes"):
            imdb.get_word_index(base_url=server.url)
    assert listing(cache_dir() / "imdb") == []


def test_word_index_that_is_not_one_is_named(tmp_path):
    file = write(tmp_path, "idx.json", b'["not", "a", "dict"]')
    with pytest.raises(DatasetError, match="mapping words to integer indices"):
        reuters.get_word_index(path=str(file))


# --- refusing hostile or damaged files ---------------------------------------------------


def npz_with(members: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return out.getvalue()


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval"])
def test_hostile_object_array_is_refused_and_runs_nothing(tmp_path, attack):
    marker = tmp_path / "marker"
    payload = hostile_calls(marker)[attack]
    pickle.loads(pickle.dumps(payload))  # it does run under the standard unpickler
    assert marker.exists()
    marker.unlink()
    y = io.BytesIO()
    np.save(y, np.array([0]))
    file = write(tmp_path, "reuters.npz", npz_with({"x": hostile_npy(payload), "y": y.getvalue()}))
    with pytest.raises(UnsafePickleError, match=r"refusing to unpickle .*reuters\.npz\['x'\]"):
        reuters.load_data(path=str(file))
    assert not marker.exists()


def test_np_load_with_allow_pickle_is_never_used(tmp_path, monkeypatch):
    real_load = np.load

    def guarded(*args, **kwargs):
        assert not kwargs.get("allow_pickle"), "np.load(allow_pickle=True) was called"
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", guarded)
    file = write(tmp_path, "imdb.npz", imdb_npz())
    (x_train, _), _ = imdb.load_data(path=str(file))
    assert len(x_train) == 40


def test_object_array_of_wrong_things_is_named(tmp_path):
    x = np.empty(2, dtype=object)
    x[:] = ["a string", "another"]
    file = write(tmp_path, "reuters.npz", npz_bytes(x=x, y=np.array([0, 1])))
    with pytest.raises(DatasetError, match=r"\['x'\]: expected a 1-D object array of lists"):
        reuters.load_data(path=str(file))


def test_missing_array_is_named(tmp_path):
    file = write(tmp_path, "imdb.npz", npz_bytes(x_train=np.zeros(2), y_train=np.zeros(2)))
    with pytest.raises(DatasetError, match="expected an array named 'x_test'; found x_train, y_train"):
        imdb.load_data(path=str(file))


def test_oversized_member_is_refused_before_reading(tmp_path, monkeypatch):
    from kilnet.datasets import _safe_npz

    monkeypatch.setattr(_safe_npz, "MAX_MEMBER_BYTES", 100)
    file = write(tmp_path, "imdb.npz", imdb_npz())
    with pytest.raises(DatasetError, match="more than the 100 allowed"):
        imdb.load_data(path=str(file))


def test_path_of_the_wrong_type_is_named():
    with pytest.raises(DatasetError, match=r"Received: path=None"):
        imdb.load_data(path=None)
