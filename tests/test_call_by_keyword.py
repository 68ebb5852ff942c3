"""A layer's inputs given by keyword, as Keras takes them: the first argument of `call`
named in the call (`layer(logits=..., targets=...)`), as keras.io's endpoint-layer pattern
calls its LogisticEndpoint from a subclassed model."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def endpoint_model(lib):
    """The recipe's LogisticEndpoint (its loss added in call) inside a subclassed model that
    names every argument of the endpoint's call."""

    class LogisticEndpoint(lib.layers.Layer):
        def __init__(self, name=None):
            super().__init__(name=name)
            self.loss_fn = lib.losses.BinaryCrossentropy(from_logits=True)

        def call(self, logits, targets=None, sample_weight=None):
            if targets is not None:
                self.add_loss(self.loss_fn(targets, logits, sample_weight))
            return lib.ops.sigmoid(logits)

    class LogReg(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(1)
            self.logistic_endpoint = LogisticEndpoint()

        def call(self, inputs):
            logits = self.dense(inputs["inputs"])
            return self.logistic_endpoint(logits=logits, targets=inputs["targets"],
                                          sample_weight=inputs["sample_weight"])

    return LogReg(), LogisticEndpoint()


def recipe_data(n=96):
    rng = np.random.default_rng(0)
    return {"inputs": rng.random((n, 16), dtype=np.float32),
            "targets": rng.random((n, 1), dtype=np.float32),
            "sample_weight": rng.random((n, 1), dtype=np.float32)}


def test_a_subclassed_model_calling_its_endpoint_by_keyword_trains_as_keras():
    data = recipe_data()
    histories, outputs = [], []
    for lib in (kilnet, keras):
        model, _ = endpoint_model(lib)
        model(data)   # built, then the same starting weights for both
        if lib is kilnet:
            start = [np.asarray(w) for w in model.get_weights()]
        else:
            model.set_weights(start)
        model.compile(lib.optimizers.SGD(0.1))   # the loss is the endpoint's add_loss
        histories.append(model.fit(data, epochs=2, batch_size=32, shuffle=False,
                                   verbose=0).history["loss"])
        outputs.append(np.asarray(model.predict(data, verbose=0)))
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)
    assert histories[0][1] < histories[0][0]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)


def test_an_eager_call_by_keyword_equals_the_positional_call():
    data = recipe_data(8)
    _, ours = endpoint_model(kilnet)
    _, theirs = endpoint_model(keras)
    by_name = ours(logits=data["inputs"][:, :1], targets=data["targets"])
    positional = ours(data["inputs"][:, :1], targets=data["targets"])
    np.testing.assert_array_equal(np.asarray(by_name), np.asarray(positional))
    np.testing.assert_allclose(np.asarray(by_name), np.asarray(
        theirs(logits=data["inputs"][:, :1], targets=data["targets"])), rtol=1e-6)
    np.testing.assert_allclose(float(ours.losses[-1]), float(theirs.losses[-1]), rtol=1e-5)


def test_a_call_without_its_inputs_names_the_argument():
    _, endpoint = endpoint_model(kilnet)
    with pytest.raises(TypeError, match=r"called without inputs; call it on a tensor, e\.g\. "
                                        r"layer\(x\) or layer\(logits=x\)"):
        endpoint(targets=np.ones((2, 1), np.float32))
    with pytest.raises(TypeError, match="called without inputs"):
        kilnet.layers.Dense(2)()
