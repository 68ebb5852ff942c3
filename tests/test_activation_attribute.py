"""`layer.activation` as Keras's: the function itself (`linear` for None), which you may
set: keras.io's Grad-CAM sets `model.layers[-1].activation = None` on a trained classifier
to take the gradient of the top class's logit. The layer, its model's eager calls and new
models built from its output then compute the new activation, as in Keras; programs compiled
before keep theirs until compile() runs again (Keras's cached functions do the same)."""

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import jax  # noqa: E402
import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")


def classifier(ns):
    inputs = ns.Input((4,))
    hidden = ns.layers.Dense(6, activation="relu", name="hidden")(inputs)
    return ns.Model(inputs, ns.layers.Dense(3, activation="softmax", name="predictions")(hidden))


def twins():
    ours, theirs = classifier(kilnet), classifier(keras)
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize("make", [
    lambda ns: ns.layers.Dense(2), lambda ns: ns.layers.Dense(2, activation="softmax"),
    lambda ns: ns.layers.Conv2D(2, 3, activation="relu"),
    lambda ns: ns.layers.Activation("tanh"),
    lambda ns: ns.layers.LSTM(3), lambda ns: ns.layers.GRU(3, activation="relu"),
    lambda ns: ns.layers.SimpleRNN(3), lambda ns: ns.layers.ConvLSTM2D(2, 3),
    lambda ns: ns.layers.LSTMCell(3),
], ids=["dense-none", "dense-softmax", "conv-relu", "activation-tanh", "lstm", "gru-relu",
        "simple-rnn", "conv-lstm", "lstm-cell"])
def test_the_attribute_is_the_function_as_keras_s(make):
    ours, theirs = make(kilnet), make(keras)
    assert callable(ours.activation)
    assert ours.activation.__name__ == theirs.activation.__name__
    assert ours.get_config()["activation"] == theirs.get_config()["activation"]
    if hasattr(theirs, "recurrent_activation") and "recurrent_activation" in theirs.get_config():
        assert ours.recurrent_activation.__name__ == theirs.recurrent_activation.__name__
        assert ours.get_config()["recurrent_activation"] == \
            theirs.get_config()["recurrent_activation"]


def test_setting_none_gives_the_logits_as_keras():
    ours, theirs = twins()
    for model in (ours, theirs):
        np.testing.assert_allclose(np.asarray(model(X)).sum(axis=1), 1.0, rtol=1e-5)
        model.get_layer("predictions").activation = None
    np.testing.assert_allclose(ours(X), np.asarray(theirs(X)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(ours(X)).sum(axis=1), 1.0)
    layer_in = ours.get_layer("hidden")(X)
    np.testing.assert_allclose(ours.get_layer("predictions")(layer_in),
                               np.asarray(theirs.get_layer("predictions")(layer_in)),
                               rtol=1e-5, atol=1e-6)
    # (Keras's own get_config fails on the None it keeps; kilnet keeps `linear`)
    assert ours.get_layer("predictions").get_config()["activation"] == "linear"
    # Grad-CAM's model: the hidden activations and the predictions, built after the change
    grad_models = [ns.Model(m.inputs, [m.get_layer("hidden").output, m.output])
                   for ns, m in ((kilnet, ours), (keras, theirs))]
    for a, b in zip(grad_models[0](X), grad_models[1](X)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)
    # the gradient of the top class's logit, which the softmax would have flattened
    top = int(np.argmax(np.asarray(ours(X))[0]))
    gradient = jax.grad(lambda x: grad_models[0](x)[1][0, top])(X)
    assert np.abs(np.asarray(gradient)).sum() > 1e-3


def test_setting_a_name_or_function_and_compiling_again():
    ours, _ = twins()
    layer = ours.get_layer("predictions")
    layer.activation = "sigmoid"
    assert layer.activation.__name__ == "sigmoid" and layer.get_config()["activation"] == "sigmoid"
    outputs = np.asarray(ours(X))
    assert ((outputs > 0) & (outputs < 1)).all() and not np.allclose(outputs.sum(axis=1), 1.0)
    layer.activation = kilnet.activations.softmax
    ours.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    np.testing.assert_allclose(ours.predict(X, verbose=0).sum(axis=1), 1.0, rtol=1e-5)
    layer.activation = None
    ours.compile(optimizer="sgd", loss="mse")   # compile again: the programs take the change
    np.testing.assert_allclose(ours.predict(X, verbose=0), np.asarray(ours(X)), rtol=1e-5)
    assert ours.output_activations() == ["linear"]
    with pytest.raises(ValueError, match="activation must be a name"):
        layer.activation = 3
