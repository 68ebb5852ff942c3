"""predict() on a model that was never compiled runs without compiling it, as Keras's: fit and
evaluate still ask for compile() (they trained with a made-up SGD and mean squared error),
and model files hold no training setup (they held an SGD and loss "mse")."""

import io
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest

import kilnet

X = np.linspace(-1, 1, 24, dtype="float32").reshape(6, 4)
Y = np.ones((6, 2), "float32")


def _predicted(lib):
    inputs = lib.Input((4,))
    model = lib.Model(inputs, lib.layers.Dense(2)(inputs))
    model.predict(X, verbose=0)
    return model


def _saved(model, path):
    model.save(path)
    archive = zipfile.ZipFile(path)
    config = json.loads(archive.read("config.json"))
    groups = sorted(h5py.File(io.BytesIO(archive.read("model.weights.h5"))))
    return config.get("compile_config"), groups


def test_predict_leaves_the_model_uncompiled_as_keras():
    ours, theirs = _predicted(kilnet), _predicted(keras)
    assert ours.is_compiled is theirs.compiled is False
    assert ours.optimizer is None   # as before compile() (Keras's has no optimizer then)
    assert ours.get_compile_config() == theirs.get_compile_config() == {}
    assert ours.metrics == [] and theirs.metrics == []
    assert ours.metrics_names == theirs.metrics_names == []   # not the made-up "loss"


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_training_after_predict_still_asks_for_compile(call):
    model = _predicted(kilnet)
    before = model.get_weights()
    with pytest.raises(RuntimeError, match=r"model.compile\("):
        getattr(model, call)(X, Y, **({} if "batch" in call else {"verbose": 0}))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_file_saved_after_predict_holds_no_training_setup_as_keras(tmp_path):
    ours = _saved(_predicted(kilnet), tmp_path / "ours.keras")
    theirs = _saved(_predicted(keras), tmp_path / "theirs.keras")
    # an empty compile entry, as Keras writes it, and no optimizer group
    assert ours[0] == theirs[0] == {}
    assert ours[1] == theirs[1] == ["layers", "vars"]
    model = _predicted(kilnet)
    model.save(tmp_path / "m.kilnet")
    assert not kilnet.models.load_model(tmp_path / "m.kilnet").is_compiled


def test_compile_from_an_empty_config_uses_compile_defaults_as_keras():
    ours, theirs = _predicted(kilnet), _predicted(keras)
    ours.compile_from_config(ours.get_compile_config())
    theirs.compile_from_config(theirs.get_compile_config())
    assert ours.is_compiled and theirs.compiled
    assert type(ours.optimizer).__name__ == type(theirs.optimizer).__name__ == "RMSprop"
    clone = kilnet.models.clone_model(_predicted(kilnet))   # not compiled, as its original
    assert not clone.is_compiled


def test_compile_after_predict_keeps_the_weights_and_trains():
    model = _predicted(kilnet)
    before = model.predict(X, verbose=0)
    model.compile(optimizer="sgd", loss="mse")
    np.testing.assert_array_equal(model.predict(X, verbose=0), before)
    model.fit(X, Y, epochs=1, batch_size=6, verbose=0)
    assert model.is_compiled and not np.allclose(model.predict(X, verbose=0), before)
