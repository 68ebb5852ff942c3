"""load_model(path, safe_mode=False), which Keras's own error tells Lambda users to pass and so
many scripts carry: accepted as Keras's, changing nothing, since kilnet never runs code from a
file (it refused the argument itself, even for a file without code)."""

import warnings

import keras
import numpy as np
import pytest

import kilnet
from kilnet.errors import ModelFileError


def _model(lib):
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(2)])
    model.build((None, 3))
    return model


@pytest.mark.parametrize("suffix", [".keras", ".kilnet", ".h5"])
def test_safe_mode_false_loads_a_file_as_keras_does(tmp_path, suffix):
    model = _model(kilnet)
    path = tmp_path / f"m{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the legacy .h5 format's warning
        model.save(path)
    loaded = kilnet.models.load_model(path, safe_mode=False)
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keras_file_loads_with_safe_mode_false_in_both(tmp_path):
    theirs = _model(keras)
    theirs.save(tmp_path / "k.keras")
    ours = kilnet.models.load_model(tmp_path / "k.keras", safe_mode=False)
    again = keras.models.load_model(tmp_path / "k.keras", safe_mode=False)
    x = np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3)
    np.testing.assert_allclose(ours.predict(x, verbose=0), again.predict(x, verbose=0),
                               rtol=1e-6)


def test_a_lambda_in_a_keras_file_is_still_refused_with_safe_mode_false(tmp_path):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2.0)(inputs)).save(
        tmp_path / "lambda.keras")
    with pytest.raises(ModelFileError, match="Lambda"):
        kilnet.models.load_model(tmp_path / "lambda.keras", safe_mode=False)

