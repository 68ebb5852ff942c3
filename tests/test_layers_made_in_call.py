"""A layer made inside a model's call() and not kept as an attribute: Keras runs it, and so
does kilnet when it holds no weights (keras.io's collaborative filtering writes
`layers.Dot(axes=1)([u, v])` in call); one with weights is refused, since nothing would keep
them from one step to the next."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def recommender(lib):
    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.users = lib.layers.Embedding(10, 4)
            self.items = lib.layers.Embedding(10, 4)

        def call(self, inputs):
            dot = lib.layers.Dot(axes=1)([self.users(inputs[:, 0]), self.items(inputs[:, 1])])
            return lib.ops.sigmoid(dot)

    model = Net()
    model.compile(loss="binary_crossentropy", optimizer=lib.optimizers.SGD(0.5))
    return model


def test_a_weightless_layer_made_in_call_trains_as_in_keras():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10, (64, 2)), rng.random(64).astype(np.float32)
    ours, theirs = recommender(kilnet), recommender(keras)
    ours.predict(x[:4], verbose=0)
    theirs.predict(x[:4], verbose=0)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-6)
    our_loss = ours.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0).history["loss"]
    their_loss = theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False,
                            verbose=0).history["loss"]
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
    assert our_loss[1] < our_loss[0]


def test_a_layer_with_weights_made_in_call_is_refused():
    class Net(kilnet.Model):
        def call(self, inputs):
            return kilnet.layers.Dense(2, name="made_in_call")(inputs)

    model = Net()
    with pytest.raises(ValueError, match=r"'made_in_call'.*weights have no home.*__init__"):
        model.predict(np.ones((2, 3), np.float32), verbose=0)
