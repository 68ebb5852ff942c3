"""Streamed data gets the checks arrays get: a memmap's labels and file size, argument values,
and validation_split (a memmap's last rows, as for arrays; refused for a source of batches, as
Keras refuses it). Each case used to train silently on garbage, crash with a raw error, or kill
the process with SIGBUS."""

from __future__ import annotations

import os

import numpy as np
import pytest

import kilnet
from kilnet.errors import InputError


def model():
    m = kilnet.Sequential([kilnet.Input(shape=(4,)),
                           kilnet.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return m


def memmap(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    out[:] = array
    out.flush()
    del out
    return np.load(path, mmap_mode="r"), path


def features(n=40):
    return np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)


def test_memmap_labels_out_of_range_are_refused(tmp_path):
    x, _ = memmap(tmp_path, "x", features())
    y, _ = memmap(tmp_path, "y", np.full(40, -1, np.int32))
    with pytest.raises(InputError, match=r"class ids from 0 to 2.*negative"):
        model().fit(x, y, epochs=1, verbose=0)


def test_a_truncated_memmap_is_refused_before_it_is_read(tmp_path):
    x, path = memmap(tmp_path, "x", np.ones((1000, 4), np.float32))
    os.truncate(path, 2000)
    with pytest.raises(InputError, match=r"x maps 16,128 bytes .* holds 2,000: it was cut short"):
        model().fit(x, np.zeros(1000, np.int32), epochs=1, verbose=0)


def test_batch_size_zero_with_a_memmap_is_an_argument_error(tmp_path):
    x, _ = memmap(tmp_path, "x", features())
    with pytest.raises(InputError, match=r"batch_size must be a positive integer.*batch_size=0"):
        model().fit(x, np.zeros(40, np.int32), batch_size=0, epochs=1, verbose=0)


def test_validation_split_with_a_generator_is_refused_as_in_keras():
    def batches():
        while True:
            yield features(8), np.zeros(8, np.int32)

    with pytest.raises(InputError, match=r"validation_split needs the whole dataset.*"
                                         r"validation_data"):
        model().fit(batches(), steps_per_epoch=2, validation_split=0.2, epochs=1, verbose=0)


def test_validation_split_of_a_memmap_holds_out_its_last_rows(tmp_path):
    data = features()
    labels = (np.arange(40) % 3).astype(np.int32)
    x, _ = memmap(tmp_path, "x", data)
    y, _ = memmap(tmp_path, "y", labels)
    streamed = model()
    streamed.build(seed=0)
    history = streamed.fit(x, y, validation_split=0.25, batch_size=10, epochs=1, verbose=0,
                           shuffle=False)
    in_memory = model()
    in_memory.build(seed=0)
    expected = in_memory.fit(data, labels, validation_split=0.25, batch_size=10, epochs=1,
                             verbose=0, shuffle=False)
    assert history.history["val_loss"][0] == pytest.approx(expected.history["val_loss"][0],
                                                             rel=1e-6)
