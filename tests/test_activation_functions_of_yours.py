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
    assert again.layers[1].get_config()["activation"] == "tests_activation>squared"
    np.testing.assert_allclose(again.predict(X, verbose=0), model.predict(X, verbose=0),
                               rtol=1e-6)


def test_an_unregistered_function_is_refused_when_saving(tmp_path):
    model = model_with(kilnet, lambda x: x * 2)
    with pytest.raises(TypeError, match="cannot be saved.*register"):
        model.save(tmp_path / "m.kilnet")
    assert not (tmp_path / "m.kilnet").exists()
