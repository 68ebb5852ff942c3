"""The functional API: kilnet.Input, layers called on symbolic tensors, kilnet.Model(inputs,
outputs) with several inputs and outputs, shared layers, nested models, feature extraction."""

from __future__ import annotations

import os

import numpy as np
import pytest

import kilnet
from kilnet import layers
from kilnet.errors import InputError
from _training import assert_fit_lowers_loss


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


def mnist_like(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 6, 6)).astype(np.float32)
    y = (x.reshape(n, -1).sum(axis=1) * 7).astype(int) % 4
    return x, y


# -- symbolic tensors ----------------------------------------------------------------------------
def test_layers_called_on_inputs_infer_shapes_and_record_nodes():
    inputs = kilnet.Input(shape=(8, 8, 1), name="image")
    conv = layers.Conv2D(3, 3, padding="same")
    x = conv(inputs)
    assert x.shape == (None, 8, 8, 3) and x.dtype == "float32"
    y = layers.Flatten()(layers.MaxPooling2D()(x))
    assert y.shape == (None, 48)
    assert x.node.layer is conv and x.node.inputs == [inputs]
    assert conv.inbound_nodes[0].outputs == [x]
    with pytest.raises(TypeError, match="no values"):
        np.asarray(inputs)


def test_a_shape_error_names_the_layer_and_the_input_shape():
    inputs = kilnet.Input(shape=(28, 28))
    with pytest.raises(ValueError, match=r"conv.*\(None, 28, 28\).*Reshape"):
        layers.Conv2D(2, 3, name="conv")(inputs)


# -- a functional model equals the same Sequential -------------------------------------------------
def test_functional_model_equals_the_same_sequential_bitwise():
    x, y = mnist_like()

    def compile_(model):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model

    seq = compile_(kilnet.Sequential([
        layers.Flatten(input_shape=(6, 6)), layers.Dense(16, activation="relu"),
        layers.Dropout(0.25), layers.Dense(4, activation="softmax")]))
    inputs = kilnet.Input(shape=(6, 6))
    h = layers.Dense(16, activation="relu")(layers.Flatten()(inputs))
    outputs = layers.Dense(4, activation="softmax")(layers.Dropout(0.25)(h))
    fun = compile_(kilnet.Model(inputs, outputs))
    seq.build(seed=3)
    fun.build(seed=3)
    assert same(seq.get_weights(), fun.get_weights())
    h1 = seq.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0)
    h2 = fun.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0)
    assert same(seq.get_weights(), fun.get_weights())
    assert h1.history == h2.history
    np.testing.assert_array_equal(seq.predict(x, verbose=0), fun.predict(x, verbose=0))
    assert [l.name for l in fun.layers] == ["input_layer", "flatten", "dense", "dropout",
                                            "dense_1"]


# -- several inputs and outputs --------------------------------------------------------------------
def two_in_two_out():
    title = kilnet.Input(shape=(5,), name="title")
    body = kilnet.Input(shape=(7,), name="body")
    t = layers.Dense(6, activation="relu", name="t")(title)
    b = layers.Dense(6, activation="relu", name="b")(body)
    priority = layers.Dense(3, activation="softmax", name="priority")(t)
    dept = layers.Dense(1, name="dept")(b)
    return kilnet.Model({"title": title, "body": body}, {"priority": priority, "dept": dept})


def two_in_two_out_data(n=64, seed=1):
    rng = np.random.default_rng(seed)
    x = {"title": rng.random((n, 5)).astype(np.float32),
         "body": rng.random((n, 7)).astype(np.float32)}
    y = {"priority": rng.integers(0, 3, n), "dept": rng.random((n, 1)).astype(np.float32)}
    return x, y


def test_two_inputs_two_outputs_train_with_a_loss_dict_and_loss_weights():
    model = two_in_two_out()
    assert model.input_names == ["body", "title"] and model.output_names == ["dept", "priority"]
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01),
                  loss={"priority": "sparse_categorical_crossentropy", "dept": "mse"},
                  loss_weights={"priority": 1.0, "dept": 0.5},
                  metrics={"priority": ["accuracy"], "dept": ["mae"]})
    x, y = two_in_two_out_data()
    # Targets the inputs decide (fitting the helper's random ones by heart is slow), weights
    # from a seed, not the OS, and the loss judged on the whole data before and after: the
    # epochs' mean training losses on random targets fell by 0.7-7% only (10 weight draws);
    # here after/before is 0.25-0.78 (11 weight and data draws).
    y = {"priority": x["title"][:, :3].argmax(axis=1),
         "dept": x["body"].mean(axis=1, keepdims=True)}
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0, seed=0)
    assert list(history.history) == ["dept_loss", "dept_mae", "loss", "priority_accuracy",
                                     "priority_loss"]   # by name, as Keras's
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] < 0.9 * before, (before, logs["loss"])
    # Each logged value against NumPy on the predictions: the total is the weighted sum.
    pred = model.predict(x, verbose=0)
    probs = pred["priority"][np.arange(64), y["priority"]]
    ce = -np.log(np.clip(probs, 1e-7, 1))
    mse = np.mean((pred["dept"] - y["dept"]) ** 2, axis=1)
    np.testing.assert_allclose(logs["priority_loss"], ce.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["dept_loss"], mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(logs["loss"], ce.mean() + 0.5 * mse.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        logs["priority_accuracy"], np.mean(pred["priority"].argmax(1) == y["priority"]))
    np.testing.assert_allclose(logs["dept_mae"], np.mean(np.abs(pred["dept"] - y["dept"])),
                               rtol=1e-5)


def test_inputs_and_labels_as_lists_in_model_order():
    model = two_in_two_out()
    model.compile(optimizer="sgd", loss=["mse", "sparse_categorical_crossentropy"])
    x, y = two_in_two_out_data()
    as_lists = model.evaluate([x["body"], x["title"]], [y["dept"], y["priority"]], verbose=0)
    as_dicts = model.evaluate(x, y, verbose=0)
    assert as_lists == as_dicts and len(as_lists) == 3


def test_an_output_without_a_loss_needs_no_labels():
    model = two_in_two_out()
    model.compile(optimizer="adam", loss={"priority": "sparse_categorical_crossentropy"})
    x, y = two_in_two_out_data()
    history = model.fit(x, {"priority": y["priority"]}, epochs=1, verbose=0)
    assert list(history.history) == ["loss"]
    dept_before = model.get_layer("dept").get_weights()
    model.fit(x, {"priority": y["priority"]}, epochs=1, verbose=0)
    assert same(dept_before, model.get_layer("dept").get_weights())  # no loss: no gradient


def test_wrong_input_structures_are_clear_errors():
    model = two_in_two_out()
    model.compile(optimizer="adam", loss={"priority": "sparse_categorical_crossentropy",
                                          "dept": "mse"})
    x, y = two_in_two_out_data()
    with pytest.raises(InputError, match=r"missing \['title'\]"):
        model.fit({"body": x["body"]}, y, verbose=0)
    with pytest.raises(InputError, match=r"2 inputs"):
        model.fit(x["body"], y, verbose=0)
    with pytest.raises(InputError, match=r"x\['title'\] has samples of shape \(7,\)"):
        model.fit({"title": x["body"], "body": x["body"]}, y, verbose=0)
    with pytest.raises(ValueError, match="not outputs of the model"):
        model.compile(optimizer="adam", loss={"nope": "mse"})


# -- shared layers, nesting, feature extraction -----------------------------------------------------
def test_a_shared_layer_has_one_set_of_weights_and_learns_from_both_calls():
    a, b = kilnet.Input(shape=(3,)), kilnet.Input(shape=(3,))
    shared = layers.Dense(2, name="shared")
    out = layers.Dense(1, name="head")(layers.Flatten()(layers.Reshape((2, 2))(
        layers.Dense(4)(shared(a)))))
    other = shared(b)
    model = kilnet.Model([a, b], [out, other])
    assert len(shared.inbound_nodes) == 2
    model.build(seed=0)
    assert [w.name for w in shared.weights] == ["kernel", "bias"]
    assert model.count_params() == (3 * 2 + 2) + (2 * 4 + 4) + (4 + 1)
    # The second output is shared(b) alone: its loss moves the shared kernel.
    model.compile(optimizer="sgd", loss=[None, "mse"])
    rng = np.random.default_rng(0)
    xa, xb = rng.random((16, 3)), rng.random((16, 3))
    before = shared.get_weights()
    model.fit([xa, xb], rng.random((16, 2)), epochs=1, verbose=0)
    assert not same(before, shared.get_weights())
    kernel, bias = shared.get_weights()
    np.testing.assert_allclose(model.predict([xa, xb], verbose=0)[1], xb @ kernel + bias,
                               rtol=1e-5, atol=1e-6)


def test_nested_autoencoder_trains_and_its_encoder_predicts_alone():
    rng = np.random.default_rng(2)
    # Centred low-rank data that a 3-unit ReLU code can hold (no unit is dead on all of it):
    # on uniform noise the loss starts near its floor and fell by 1-8% only.
    x = (rng.normal(size=(80, 3)) @ rng.normal(size=(3, 10))).astype(np.float32)
    e_in = kilnet.Input(shape=(10,))
    encoder = kilnet.Model(e_in, layers.Dense(3, activation="relu")(e_in), name="encoder")
    d_in = kilnet.Input(shape=(3,))
    decoder = kilnet.Model(d_in, layers.Dense(10)(d_in), name="decoder")
    a_in = kilnet.Input(shape=(10,))
    autoencoder = kilnet.Model(a_in, decoder(encoder(a_in)), name="autoencoder")
    assert [l.name for l in autoencoder.layers] == ["input_layer", "encoder", "decoder"]
    # Weights from a seed, not the OS, and the loss judged on the whole data before and after
    # (11 data and weight draws: after/before 0.10-0.24).
    autoencoder.build(seed=0)
    autoencoder.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="mse")
    assert_fit_lowers_loss(autoencoder, x, x, 0.5, epochs=25, batch_size=16, seed=0)
    # The encoder holds the trained weights: alone, it computes relu(x @ W + b).
    kernel, bias = encoder.get_weights()
    expected = np.maximum(x @ kernel + bias, 0)
    np.testing.assert_allclose(encoder.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(encoder(x)), expected, rtol=1e-5, atol=1e-6)
    # Weights are keyed by path inside the whole model.
    paths = ["/".join(p) for p, _, _ in autoencoder.variable_paths()]
    assert paths == ["encoder/dense/kernel", "encoder/dense/bias",
                     "decoder/dense/kernel", "decoder/dense/bias"]


def test_intermediate_outputs_extract_features():
    x, y = mnist_like(40)
    inputs = kilnet.Input(shape=(6, 6))
    h = layers.Dense(5, activation="relu", name="hidden")(layers.Flatten()(inputs))
    model = kilnet.Model(inputs, layers.Dense(4, activation="softmax")(h))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    features = kilnet.Model(model.input, model.get_layer("hidden").output)
    kernel, bias = model.get_layer("hidden").get_weights()
    np.testing.assert_allclose(features.predict(x, verbose=0),
                               np.maximum(x.reshape(40, -1) @ kernel + bias, 0),
                               rtol=1e-5, atol=1e-6)
    assert model.inputs[0] is inputs and model.outputs[0].shape == (None, 4)
    with pytest.raises(ValueError, match="No layer named 'nope'"):
        model.get_layer("nope")


def test_layers_and_models_called_on_arrays_compute_eagerly():
    dense = layers.Dense(3)
    x = np.ones((2, 4), np.float32)
    y = np.asarray(dense(x))
    kernel, bias = dense.get_weights()
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-6)
    inputs = kilnet.Input(shape=(4,))
    model = kilnet.Model(inputs, layers.Dense(2)(inputs))
    assert not model.built
    out = np.asarray(model(x))  # builds on first call, as Keras
    assert model.built and out.shape == (2, 2)


def test_names_are_numbered_per_model_and_stable():
    def make():
        inputs = kilnet.Input(shape=(3,))
        return kilnet.Model(inputs, layers.Dense(2)(layers.Dense(4)(inputs)))
    first, second = make(), make()
    assert [l.name for l in first.layers] == [l.name for l in second.layers] == [
        "input_layer", "dense", "dense_1"]
    with pytest.raises(ValueError, match="named 'twin'"):
        inputs = kilnet.Input(shape=(3,))
        kilnet.Model(inputs, layers.Dense(2, name="twin")(layers.Dense(4, name="twin")(inputs)))


def test_a_nested_model_with_dict_outputs_gives_a_dict_of_tensors():
    i = kilnet.Input(shape=(3,))
    inner = kilnet.Model(i, {"zeta": layers.Dense(2, name="z")(i),
                             "alpha": layers.Dense(5, name="a")(i)})
    o = kilnet.Input(shape=(3,))
    out = inner(o)
    assert {k: v.shape for k, v in out.items()} == {"zeta": (None, 2), "alpha": (None, 5)}
    outer = kilnet.Model(o, [out["zeta"], out["alpha"]])
    outer.build(seed=0)
    x = np.ones((2, 3), np.float32)
    zeta, alpha = outer.predict(x, verbose=0)
    kz, bz = inner.get_layer("z").get_weights()
    np.testing.assert_allclose(zeta, x @ kz + bz, rtol=1e-6)
    assert alpha.shape == (2, 5)


def test_models_with_declared_inputs_have_weights_from_construction():
    """As in Keras, a functional model (or a Sequential starting with Input) gives and takes
    its weights right after construction: transfer-learning code does exactly that."""
    os.environ.setdefault("KERAS_BACKEND", "jax")  # the reference runs on JAX
    import keras

    def graph(lib):
        inputs = lib.Input((4,))
        hidden = lib.layers.Dense(3, activation="relu")(inputs)
        return lib.Model(inputs, lib.layers.Dense(2)(hidden))

    ours, theirs = graph(kilnet), graph(keras)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    sequential = kilnet.Sequential([kilnet.Input((4,)), layers.Dense(3)])
    assert sequential.count_params() == 15


@pytest.mark.parametrize("dtype", ["string", "str"])
def test_a_string_input_is_keras_string_input(dtype):
    """keras.io's text tutorials write Input(shape=(1,), dtype="string") for an end-to-end
    model (tests/test_string_inputs.py runs them); objects are refused, naming "string"."""
    assert kilnet.Input(shape=(1,), dtype=dtype).dtype == "string"
    with pytest.raises(ValueError, match=r"for text, give dtype='string'.*Received: "
                                         r"dtype='object'"):
        kilnet.Input(shape=(1,), dtype="object")
    with pytest.raises(ValueError, match=r"Input dtype must be one of .*Received: dtype="):
        kilnet.Input(shape=(1,), dtype="complex64")
