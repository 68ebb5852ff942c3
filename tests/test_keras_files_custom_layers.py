"""Keras weights files (`.weights.h5`) of models with a layer class of the user's that holds
layers (the ViT tutorial's PatchEncoder, which ModelCheckpoint(save_weights_only=True) saves):
Keras's saving walks such a layer's attributes, so its own weights come first and each held
layer lies under its attribute's name; both directions against Keras itself."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference files are Keras's")

import kilnet  # noqa: E402


def encoder_class(lib):
    """The same layer class written for Keras or kilnet: an own weight, two layers held as
    attributes (declared in an order other than Keras's sorted walk), a list of layers and a
    private attribute."""

    class Encoder(lib.layers.Layer):
        def __init__(self, width, **kwargs):
            super().__init__(**kwargs)
            self.width = width
            self.projection = lib.layers.Dense(width)
            self.embedding = lib.layers.Embedding(6, width)
            self.blocks = [lib.layers.Dense(width, activation="tanh"),
                           lib.layers.Dense(width)]
            self._gate = lib.layers.Dense(width, activation="sigmoid")

        def build(self, input_shape):
            self.scale = self.add_weight(shape=(self.width,), initializer="random_normal",
                                         name="scale")

        def call(self, x):
            positions = lib.ops.expand_dims(lib.ops.arange(6), 0)
            h = self.projection(x) + self.embedding(positions)
            for block in self.blocks:
                h = block(h)
            return h * self.scale * self._gate(x)

        def get_config(self):
            return {**super().get_config(), "width": self.width}

    return Encoder


def model_of(lib):
    inputs = lib.Input((6, 5))
    hidden = encoder_class(lib)(4, name="encoder")(inputs)
    return lib.Model(inputs, lib.layers.Dense(2, name="head")(hidden))


X = np.random.default_rng(0).normal(size=(3, 6, 5)).astype("float32")


def _randomized(model, seed):
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def test_keras_file_loads_into_kilnet(tmp_path):
    theirs = _randomized(model_of(keras), 1)
    theirs.save_weights(tmp_path / "m.weights.h5")
    mine = model_of(kilnet)
    mine.load_weights(tmp_path / "m.weights.h5")   # unbuilt: built, then filled
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_kilnet_file_loads_into_keras(tmp_path):
    mine = model_of(kilnet)
    mine.build()
    _randomized(mine, 2)
    mine.save_weights(tmp_path / "m.weights.h5")
    theirs = model_of(keras)
    theirs.load_weights(tmp_path / "m.weights.h5")
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_checkpoint_of_a_trained_model_reloads(tmp_path):
    """The tutorial's loop: fit with ModelCheckpoint(save_weights_only=True), then
    load_weights into the built, trained model."""
    mine = model_of(kilnet)
    mine.compile(optimizer="adam", loss="mse")
    path = tmp_path / "best.weights.h5"
    y = np.ones((3, 6, 2), "float32")
    mine.fit(X, y, epochs=2, verbose=0, callbacks=[kilnet.callbacks.ModelCheckpoint(
        path, save_weights_only=True, monitor="loss", save_best_only=True)])
    best = mine.predict(X, verbose=0)
    mine.fit(X, y, epochs=1, verbose=0)
    mine.load_weights(path)
    np.testing.assert_allclose(mine.predict(X, verbose=0), best, rtol=1e-6)


def _registered_model(lib):
    cls = lib.saving.register_keras_serializable(package="WholeFile")(encoder_class(lib))
    inputs = lib.Input((6, 5))
    return lib.Model(inputs, lib.layers.Dense(2, name="head")(cls(4, name="encoder")(inputs)))


def test_a_whole_keras_file_with_a_registered_layer_of_yours_opens_in_keras(tmp_path):
    """model.save("m.keras") with a layer class of yours registered on both sides (the same
    code): Keras rebuilds the model from kilnet's file, weights and optimizer state."""
    _registered_model(keras)   # registers Keras's copy of the class
    mine = _registered_model(kilnet)
    mine.compile(optimizer="adam", loss="mse")
    mine.fit(X, np.ones((3, 6, 2), "float32"), epochs=2, verbose=0)
    mine.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.get_layer("encoder")).__name__ == "Encoder"
    np.testing.assert_allclose(theirs.predict(X, verbose=0), mine.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert int(theirs.optimizer.iterations) == 2
    again = kilnet.models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(again.predict(X, verbose=0), mine.predict(X, verbose=0))


def _layer_entry(path, name):
    import json
    import zipfile
    config = json.loads(zipfile.ZipFile(path).read("config.json"))
    entry = next(e for e in config["config"]["layers"] if e["name"] == name)
    return {key: entry[key] for key in ("module", "class_name", "registered_name")}


def test_an_unregistered_layer_of_yours_is_saved_as_keras_saves_it(tmp_path):
    """As Keras: written under its class name, with its module; opened with
    custom_objects={"Encoder": Encoder}, by Keras and by kilnet; refused by both without."""
    mine = _randomized(model_of(kilnet), 3)
    mine.save(tmp_path / "mine.keras")
    model_of(keras).save(tmp_path / "theirs.keras")
    assert _layer_entry(tmp_path / "mine.keras", "encoder") == _layer_entry(
        tmp_path / "theirs.keras", "encoder")
    theirs = keras.models.load_model(tmp_path / "mine.keras",
                                     custom_objects={"Encoder": encoder_class(keras)})
    np.testing.assert_allclose(theirs.predict(X, verbose=0), mine.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-5)
    again = kilnet.models.load_model(tmp_path / "mine.keras",
                                     custom_objects={"Encoder": encoder_class(kilnet)})
    np.testing.assert_array_equal(again.predict(X, verbose=0), mine.predict(X, verbose=0))
    with pytest.raises(TypeError, match="Encoder"):
        keras.models.load_model(tmp_path / "mine.keras")
    with pytest.raises(kilnet.errors.ModelFileError, match="Encoder.*custom_objects"):
        kilnet.models.load_model(tmp_path / "mine.keras")
