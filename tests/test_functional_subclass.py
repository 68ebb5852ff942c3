"""Keras's "functional subclassing": a Model subclass whose `__init__` builds a graph and calls
`super().__init__(inputs=..., outputs=...)` (keras.io's packaging_keras_models_for_wide_
distribution). Keras saves it as its class with the constructor's own arguments (the base
config plus what its get_config adds) and `build_config: {"input_shape": null}`, and rebuilds
it with `cls(**config)`; a subclass whose constructor takes `(inputs, outputs, name)` or
`*args, **kwargs` is saved with its graph instead. Checked against Keras itself: the same
weights give the same outputs and fit losses, and files go both ways."""

import json
import os
import zipfile

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

IMAGES = {"image": np.random.default_rng(0).integers(0, 255, (6, 8, 8, 1)).astype("uint8")}
LABELS = np.arange(6) % 3


def _dict_model_class(lib):
    """keras.io's MnistDictModel, small."""
    class DictModel(lib.Model):
        def __init__(self, **kwargs):
            inputs = {"image": lib.layers.Input(shape=(None, None, 1), dtype="uint8",
                                                name="image")}
            y = lib.layers.Rescaling(1 / 255.0)(inputs["image"])
            y = lib.layers.Conv2D(4, 3, padding="same", activation="relu")(y)
            y = lib.layers.GlobalAveragePooling2D()(y)
            outputs = lib.layers.Dense(3, activation="softmax", name="head")(y)
            super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    return DictModel


def _units_model_class(lib):
    """A functional subclass with an argument of its own, returned by its get_config."""
    class UnitsModel(lib.Model):
        def __init__(self, units, **kwargs):
            inputs = lib.Input(shape=(5,))
            hidden = lib.layers.Dense(units, activation="tanh")(inputs)
            super().__init__(inputs, lib.layers.Dense(2)(hidden), **kwargs)
            self.units = units

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return UnitsModel


def _graph_model_class(lib):
    """A subclass that passes Model's arguments on: Keras saves its graph."""
    class Passing(lib.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

    return Passing


def _entry(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def test_saved_to_a_keras_file_as_keras_saves_it_both_ways(tmp_path):
    theirs = _dict_model_class(keras)()
    mine = _dict_model_class(kilnet)()
    mine.set_weights(theirs.get_weights())
    np.testing.assert_allclose(mine.predict(IMAGES, verbose=0), theirs.predict(IMAGES, verbose=0),
                               rtol=1e-5, atol=1e-6)
    mine.save(tmp_path / "m.keras")
    theirs.save(tmp_path / "k.keras")
    written, reference = _entry(tmp_path / "m.keras"), _entry(tmp_path / "k.keras")
    for key in ("class_name", "registered_name", "module", "build_config"):
        assert written[key] == reference[key], key
    assert written["build_config"] == {"input_shape": None}
    assert {k: v for k, v in written["config"].items() if k != "dtype"} == {
        k: v for k, v in reference["config"].items() if k != "dtype"}
    # kilnet writes -> Keras loads, and Keras writes -> kilnet loads
    loaded = keras.saving.load_model(tmp_path / "m.keras",
                                     custom_objects={"DictModel": _dict_model_class(keras)})
    assert type(loaded).__name__ == "DictModel"
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), mine.predict(IMAGES, verbose=0),
                               rtol=1e-5, atol=1e-6)
    cls = _dict_model_class(kilnet)
    back = kilnet.models.load_model(tmp_path / "k.keras", custom_objects={"DictModel": cls})
    assert type(back) is cls and back.is_functional
    np.testing.assert_allclose(back.predict(IMAGES, verbose=0), theirs.predict(IMAGES, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_its_own_arguments_are_its_config_and_fit_matches_keras(tmp_path):
    x = np.random.default_rng(1).random((8, 5)).astype("float32")
    y = np.random.default_rng(2).random((8, 2)).astype("float32")
    theirs = _units_model_class(keras)(3, name="net")
    mine = _units_model_class(kilnet)(3, name="net")
    mine.set_weights(theirs.get_weights())
    assert {k: v for k, v in mine.get_config().items() if k != "dtype"} == {
        "name": "net", "trainable": True, "units": 3}
    losses = []
    for model, lib in ((mine, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        losses.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False,
                                verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    mine.save(tmp_path / "m.keras")
    theirs.save(tmp_path / "k.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras",
                                     custom_objects={"UnitsModel": _units_model_class(keras)})
    assert loaded.units == 3
    np.testing.assert_allclose(loaded.predict(x, verbose=0), mine.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    cls = _units_model_class(kilnet)
    back = kilnet.models.load_model(tmp_path / "k.keras", custom_objects={"UnitsModel": cls})
    assert type(back) is cls and back.units == 3
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_the_kilnet_format_rebuilds_it_from_its_arguments(tmp_path):
    cls = _units_model_class(kilnet)
    model = cls(4)
    x = np.random.default_rng(3).random((3, 5)).astype("float32")
    model.save(tmp_path / "m.kilnet")
    back = kilnet.models.load_model(tmp_path / "m.kilnet", custom_objects={"UnitsModel": cls})
    assert type(back) is cls and back.units == 4
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0))
    # to_json / model_from_json: the same class, the same graph
    copy = kilnet.models.model_from_json(model.to_json(), custom_objects={"UnitsModel": cls})
    assert type(copy) is cls and copy.output_shape == (None, 2)
    # one taking Model's arguments is saved with its graph, and comes back as its class
    passing = _graph_model_class(kilnet)
    inputs = kilnet.Input(shape=(5,))
    model = passing(inputs, kilnet.layers.Dense(3)(inputs))
    model.save(tmp_path / "p.kilnet")
    back = kilnet.models.load_model(tmp_path / "p.kilnet", custom_objects={"Passing": passing})
    assert type(back) is passing and back.is_functional
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_subclass_passing_models_arguments_on_is_saved_with_its_graph(tmp_path):
    def make(lib):
        inputs = lib.Input(shape=(5,))
        return _graph_model_class(lib)(inputs, lib.layers.Dense(2)(inputs), name="passing")

    theirs, mine = make(keras), make(kilnet)
    mine.set_weights(theirs.get_weights())
    assert "layers" in mine.get_config() and "layers" in theirs.get_config()
    mine.save(tmp_path / "m.keras")
    x = np.random.default_rng(4).random((3, 5)).astype("float32")
    loaded = keras.saving.load_model(tmp_path / "m.keras",
                                     custom_objects={"Passing": _graph_model_class(keras)})
    assert type(loaded).__name__ == "Passing"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), mine.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "k.keras")
    cls = _graph_model_class(kilnet)
    back = kilnet.models.load_model(tmp_path / "k.keras", custom_objects={"Passing": cls})
    assert type(back) is cls
    np.testing.assert_allclose(back.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
