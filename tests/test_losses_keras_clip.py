"""Cross-entropy on a softmax or sigmoid output, which kilnet computes from the logits: the
probabilities are clipped to [epsilon, 1 - epsilon] as Keras clips them (in log space), so a
confidently wrong model costs Keras's 16.12 per element, not the unclipped 150, and gets
Keras's zero gradient there. Compared with Keras itself."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.ones((4, 4), "float32")
IDS = np.array([2, 2, 1, 0])
ONE_HOT = np.eye(3, dtype="float32")[IDS]


def _softmax_model(lib, scale):
    inputs = lib.Input((4,))
    model = lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(inputs))
    model.set_weights([np.tile(np.array([[scale, 0.0, -scale]], "float32"), (4, 1)),
                       np.array([0.0, 0.5, 0.1], "float32")])
    return model


@pytest.mark.parametrize("loss,labels", [("sparse_categorical_crossentropy", IDS),
                                         ("categorical_crossentropy", ONE_HOT)])
@pytest.mark.parametrize("scale", [30.0, 0.5])   # saturated, and ordinary
def test_softmax_cross_entropy_values_and_step_as_keras(loss, labels, scale):
    found = {}
    for lib in (keras, kilnet):
        model = _softmax_model(lib, scale)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss=loss)
        value = model.evaluate(X, labels, verbose=0)
        model.fit(X, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
        found[lib] = (value, model.get_weights())
    np.testing.assert_allclose(found[kilnet][0], found[keras][0], rtol=1e-5)
    for mine, theirs in zip(found[kilnet][1], found[keras][1]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    if scale == 30.0:
        assert found[kilnet][0] < 16.2   # capped, as Keras's


@pytest.mark.parametrize("weight,label", [(40.0, 0.0), (-40.0, 0.0), (40.0, 1.0), (0.3, 1.0)])
def test_sigmoid_binary_cross_entropy_as_keras(weight, label):
    found = {}
    for lib in (keras, kilnet):
        inputs = lib.Input((1,))
        model = lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(inputs))
        model.set_weights([np.array([[weight]], "float32"), np.zeros(1, "float32")])
        model.compile(optimizer=lib.optimizers.SGD(0.01), loss="binary_crossentropy")
        x, y = np.ones((4, 1), "float32"), np.full((4, 1), label, "float32")
        value = model.evaluate(x, y, verbose=0)
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        found[lib] = (value, model.get_weights())
    np.testing.assert_allclose(found[kilnet][0], found[keras][0], rtol=1e-5, atol=1e-7)
    for mine, theirs in zip(found[kilnet][1], found[keras][1]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
