"""kilnet.utils.pad_sequences against keras.utils.pad_sequences itself."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

from kilnet import utils  # noqa: E402

RAGGED = [[1, 2, 3, 4, 5], [6], [], [7, 8, 9]]


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 2, 4, 7])
def test_pad_sequences_equals_keras(padding, truncating, maxlen):
    kwargs = dict(maxlen=maxlen, padding=padding, truncating=truncating, value=-1)
    ours = utils.pad_sequences(RAGGED, **kwargs)
    theirs = keras.utils.pad_sequences(RAGGED, **kwargs)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_pad_sequences_dtypes_and_vector_items_equal_keras():
    seqs = [np.ones((2, 3)), np.zeros((4, 3)) + 2]
    np.testing.assert_array_equal(utils.pad_sequences(seqs, dtype="float32", maxlen=3),
                                  keras.utils.pad_sequences(seqs, dtype="float32", maxlen=3))
    words = [["a", "b"], ["c"]]
    ours = utils.pad_sequences(words, dtype=object, value="<pad>")
    assert ours.tolist() == keras.utils.pad_sequences(words, dtype=object,
                                                      value="<pad>").tolist()


@pytest.mark.parametrize("kwargs, match", [
    (dict(padding="middle"), "padding='middle'"),
    (dict(truncating="both"), "truncating='both'"),
    (dict(maxlen=-1), "maxlen=-1"),
    (dict(value="x"), "dtype=object"),
])
def test_pad_sequences_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.pad_sequences(RAGGED, **kwargs)


@pytest.mark.parametrize("bad", [5, "abc", [[1, 2], 3]])
def test_pad_sequences_refuses_non_sequences(bad):
    with pytest.raises(ValueError, match="sequences"):
        utils.pad_sequences(bad)


def test_pad_sequences_refuses_items_of_different_shapes():
    with pytest.raises(ValueError, match=r"sequences\[1\]"):
        utils.pad_sequences([np.ones((2, 3)), np.ones((2, 4))], dtype="float32")
