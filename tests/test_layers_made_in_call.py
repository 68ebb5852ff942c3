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
    with pytest.raises(ValueError, match=r"'made_in_call'.*trainable weights would not train"
                                         r".*__init__"):
        model.predict(np.ones((2, 3), np.float32), verbose=0)


def _normalized(lib, norm):
    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(2)

        def call(self, inputs):
            return self.dense(norm(inputs))   # a module-level layer, not an attribute

    return Net()


def test_a_built_layer_without_trainable_weights_runs_with_them_as_constants():
    """keras.io's Perceiver calls its module-level augmentation Sequential (an adapted
    Normalization first) in its model's call: Keras runs it with its weights as they are,
    and so does kilnet; the losses equal Keras's from the same weights."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(3.0, 2.0, (32, 4)).astype("float32"), rng.random((32, 2))
    models = []
    for lib in (kilnet, keras):
        norm = lib.layers.Normalization()
        norm.adapt(x)
        models.append(_normalized(lib, norm))
        models[-1].predict(x[:2], verbose=0)
    ours, theirs = models
    theirs.set_weights(ours.get_weights())
    losses = [m.compile(optimizer="sgd", loss="mse") or m.fit(
        x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history["loss"]
              for m in models]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    assert len(ours.trainable_weights) == 2


def test_a_module_level_layer_with_trainable_weights_is_refused():
    dense = kilnet.layers.Dense(3, name="outside")
    dense.build((None, 4))
    model = _normalized(kilnet, dense)
    with pytest.raises(ValueError, match=r"'outside'.*trainable weights would not train.*"
                                         r"trainable = False"):
        model.predict(np.ones((2, 4), "float32"), verbose=0)
    dense.trainable = False   # frozen: used as it is
    assert model.predict(np.ones((2, 4), "float32"), verbose=0).shape == (2, 2)
