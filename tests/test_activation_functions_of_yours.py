"""A function of yours as a layer's activation (`Dense(1, activation=custom_fn)`, keras.io's
saving guide): it trains as Keras's does, a registered one is saved by its name in .kilnet and
.keras files, an unregistered one is refused when saving with the way to register it. And a
functional model saved right after its construction keeps its weights."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)


@kilnet.saving.register_serializable(package="tests_activation", name="squared")
def squared(x):
    return x ** 2


# What Keras 3 writes for a registered function (layer configs and .keras files alike)
SQUARED_ENTRY = {"module": "builtins", "class_name": "function",
                 "config": "tests_activation>squared", "registered_name": "function"}


@keras.saving.register_keras_serializable(package="tests_activation", name="squared")
def keras_squared(x):
    return x ** 2


@keras.saving.register_keras_serializable(package="tests_activation", name="cubed")
def keras_cubed(x):
    return x ** 3


def cubed(x):   # kilnet's twin of keras_cubed, left unregistered (given as custom_objects)
    return x ** 3


def model_with(lib, activation):
    inputs = lib.Input((4,))
    hidden = lib.layers.Dense(3, activation=activation)(inputs)
    return lib.Model(inputs, lib.layers.Activation(activation)(lib.layers.Dense(1)(hidden)))


def test_a_function_of_yours_trains_as_keras():
    half_swish = lambda x: 0.5 * x * keras.ops.sigmoid(x)  # noqa: E731  (same ops in both)
    ours, theirs = model_with(kilnet, half_swish), model_with(keras, half_swish)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    y = np.ones((16, 1), np.float32)
    our_loss = ours.fit(X, y, batch_size=16, epochs=2, verbose=0).history["loss"]
    their_loss = theirs.fit(X, y, batch_size=16, epochs=2, verbose=0).history["loss"]
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)


@pytest.mark.parametrize("extension", ["kilnet", "keras"])
def test_a_registered_function_is_saved_by_name(tmp_path, extension):
    model = model_with(kilnet, squared)
    path = tmp_path / f"m.{extension}"
    model.save(path)   # right after construction: the weights go with it
    again = kilnet.models.load_model(path)
    assert again.layers[1].activation is squared
    assert again.layers[1].get_config()["activation"] == SQUARED_ENTRY
    np.testing.assert_allclose(again.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)


def test_an_unregistered_function_is_refused_when_saving(tmp_path):
    model = model_with(kilnet, lambda x: x * 2)
    with pytest.raises(TypeError, match="cannot be saved.*register"):
        model.save(tmp_path / "m.kilnet")
    assert not (tmp_path / "m.kilnet").exists()


def test_the_config_names_a_registered_function_as_keras_does():
    ours = kilnet.layers.Dense(2, activation=squared).get_config()["activation"]
    assert ours == keras.layers.Dense(2, activation=keras_squared).get_config()["activation"]
    assert kilnet.layers.Dense.from_config(
        kilnet.layers.Dense(2, activation=squared).get_config()).activation is squared


def keras_file_with(activation, path):
    """A .keras file written by Keras: a Dense and an LSTM (whose recurrent_activation is
    the function too) using a registered function of yours."""
    keras.backend.clear_session()
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, activation=activation, name="dense")(inputs)
    sequence = keras.layers.Reshape((3, 1), name="reshape")(hidden)
    outputs = keras.layers.LSTM(2, recurrent_activation=activation, name="lstm")(sequence)
    keras.Model(inputs, outputs).save(path)
    return keras.models.load_model(path).predict(X, verbose=0)


@pytest.mark.parametrize("extension", ["keras", "h5"])
def test_a_keras_file_naming_a_registered_activation_opens(tmp_path, extension):
    path = tmp_path / f"keras.{extension}"   # Keras 3's format, and its legacy HDF5 one
    expected = keras_file_with(keras_squared, path)
    model = kilnet.models.load_model(path)
    assert model.get_layer("dense").activation is squared
    assert model.get_layer("lstm").get_config()["recurrent_activation"] == SQUARED_ENTRY
    np.testing.assert_allclose(model.predict(X, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_a_keras_file_naming_an_activation_in_custom_objects_opens(tmp_path):
    path = tmp_path / "keras.keras"
    expected = keras_file_with(keras_cubed, path)
    model = kilnet.models.load_model(path, custom_objects={"tests_activation>cubed": cubed})
    assert model.get_layer("dense").activation is cubed
    np.testing.assert_allclose(model.predict(X, verbose=0), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="tests_activation>cubed.*not registered"):
        kilnet.models.load_model(path)


def test_keras_opens_a_kilnet_file_with_a_registered_activation(tmp_path):
    model = model_with(kilnet, squared)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.layers[1].activation is keras_squared
    np.testing.assert_allclose(theirs.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_an_unregistered_function_is_refused_in_a_keras_file(tmp_path):
    with pytest.raises(TypeError, match="activation.*register_keras_serializable"):
        model_with(kilnet, lambda x: x * 2).save(tmp_path / "m.keras")


@pytest.mark.parametrize("name", ["relu", "gelu", "swish", "softmax"])
def test_an_ops_function_as_activation_is_written_by_its_name_as_keras_writes_it(name, tmp_path):
    """keras.io's ViViT: `Dense(units, activation=ops.gelu)`; Keras writes the op by its
    function's name, and both libraries reload the activation of that name (for gelu the
    exact one, where ops.gelu defaults to the tanh approximation, in Keras too)."""
    def saved(lib):
        model = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, activation=getattr(
            lib.ops, name), name="dense")])
        model.save(tmp_path / f"{lib.__name__}.keras")
        return model

    saved(kilnet), saved(keras)
    written = [kilnet.models.load_model(tmp_path / f"{lib}.keras").get_layer("dense")
               .get_config()["activation"] for lib in ("kilnet", "keras")]
    assert written[0] == written[1] == keras.activations.serialize(getattr(keras.ops, name))
    theirs = keras.models.load_model(tmp_path / "kilnet.keras")   # Keras opens kilnet's file
    ours = kilnet.models.load_model(tmp_path / "kilnet.keras")
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
