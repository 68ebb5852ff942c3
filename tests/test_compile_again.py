"""compile() again keeps what it is not given, as Keras's compile does: a new optimizer alone
(fine-tuning at a lower rate, keras.io's subclassing guide compiling a model that already had a
loss) trains on the last compile's loss and reports its metrics. Compared with Keras itself."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras's")

import kilnet  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.random((8, 3)).astype("float32")
Y = RNG.random((8, 2)).astype("float32")


def history_after_compiling_again(lib, **again):
    """fit's first logs after compile(loss, metrics) then compile(**again): the model adds a
    term of its own (add_loss), so the loss says which losses were trained on."""
    class Penalized(lib.layers.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * lib.ops.mean(inputs))
            return inputs

    inputs = lib.Input((3,), name="x")
    hidden = Penalized(name="penalized")(inputs)
    model = lib.Model(inputs, lib.layers.Dense(2, kernel_initializer="ones", name="d")(hidden))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    model.fit(X, Y, batch_size=4, shuffle=False, verbose=0)
    model.compile(**again)
    history = model.fit(X, Y, batch_size=4, shuffle=False, verbose=0).history
    return {key: values[0] for key, values in history.items()}


@pytest.mark.parametrize("again", [
    dict(optimizer="adam"),                                   # loss and metrics kept
    dict(optimizer="adam", metrics=["mse"]),                  # loss kept, metrics replaced
    dict(optimizer="adam", loss="mae"),                       # metrics kept, loss replaced
    dict(optimizer="adam", weighted_metrics=["mse"]),         # both metric lists replaced
], ids=["optimizer", "metrics", "loss", "weighted_metrics"])
def test_compile_again_keeps_what_it_is_not_given_as_keras(again):
    ours = history_after_compiling_again(kilnet, **again)
    theirs = history_after_compiling_again(keras, **again)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-5, err_msg=key)


def test_a_first_compile_without_a_loss_trains_on_the_added_losses_alone():
    class Penalized(kilnet.layers.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * kilnet.ops.mean(inputs))
            return inputs

    inputs = kilnet.Input((3,))
    model = kilnet.Model(inputs, kilnet.layers.Dense(2)(Penalized()(inputs)))
    model.compile(optimizer="sgd")
    loss = model.fit(X, Y, batch_size=8, verbose=0).history["loss"][0]
    assert loss == pytest.approx(1e-2 * X.mean(), rel=1e-6)
