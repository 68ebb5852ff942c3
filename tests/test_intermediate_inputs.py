"""kilnet.Model(inputs, outputs) whose inputs are layer outputs, not Input tensors, as Keras 3
takes them (keras.io's structured_data_classification_from_scratch passes
`Normalization(...)(Input(...))` as inputs): each becomes a new Input of its shape and dtype,
the layers upstream are left out of the model, and kilnet says so in a KerasQuirkWarning.
Compared with Keras 3 built the same way: inputs, parameters, layers, predictions from the same
weights, and .keras files both ways."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import kilnet
from kilnet.errors import KerasQuirkWarning

keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)


def structured(lib):
    """keras.io's structured-data model in small: numeric features normalized by layers whose
    outputs are given as the model's inputs, a one-hot categorical feature given as its Input."""
    inputs = {}
    for name, mean in (("age", 50.0), ("chol", 240.0)):
        raw = lib.Input(shape=(1,), name=name)
        inputs[name] = lib.layers.Normalization(mean=mean, variance=100.0)(raw)
    inputs["thal"] = lib.Input(shape=(3,), name="thal", dtype="int64")
    features = lib.layers.concatenate(list(inputs.values()))
    hidden = lib.layers.Dense(4, activation="relu")(features)
    return lib.Model(inputs, lib.layers.Dense(1, activation="sigmoid")(hidden))


def structured_data(n=6):
    return {"age": RNG.uniform(30, 70, (n, 1)).astype("float32"),
            "chol": RNG.uniform(150, 350, (n, 1)).astype("float32"),
            "thal": np.eye(3, dtype="int64")[RNG.integers(0, 3, n)]}


def kilnet_model(build):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = build(kilnet)
    quirks = [w for w in caught if issubclass(w.category, KerasQuirkWarning)]
    assert len(quirks) == 1, [str(w.message) for w in caught]
    return model, str(quirks[0].message)


def keras_model(build):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras's note that the dict keys are not the names
        return build(keras)


def test_layer_outputs_as_inputs_become_new_inputs_as_keras_and_predict_alike():
    ours, message = kilnet_model(structured)
    theirs = keras_model(structured)
    assert [t.shape for t in ours.inputs] == [t.shape for t in theirs.inputs]
    assert [t.dtype for t in ours.inputs] == [t.dtype for t in theirs.inputs]
    assert ours.count_params() == theirs.count_params() == 5 * 4 + 4 + 4 + 1
    assert [type(layer).__name__ for layer in ours.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    assert "Normalization" not in [type(layer).__name__ for layer in ours.layers]
    assert [t.name for t in ours.inputs] == ["age", "chol", "thal"]   # by their dict keys
    ours.set_weights(theirs.get_weights())
    x = structured_data()
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    # the raw values reach the Dense layers: the Normalization layers are not applied
    features = np.concatenate([x["age"], x["chol"], x["thal"]], axis=1)
    w1, b1, w2, b2 = theirs.get_weights()
    expected = 1 / (1 + np.exp(-(np.maximum(features @ w1 + b1, 0) @ w2 + b2)))
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-5)
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    assert list(ours_config["input_layers"]) == list(theirs_config["input_layers"])
    assert [(e["class_name"], len(e["inbound_nodes"])) for e in ours_config["layers"]] == \
        [(e["class_name"], len(e["inbound_nodes"])) for e in theirs_config["layers"]]
    # the warning says what happened, which layers are left out, and the fix
    for part in ("'age', 'chol'", "not Input tensors", "As in Keras", "'normalization",
                 "not normalized", "give kilnet.Model the Input tensors"):
        assert part in message, message


def test_the_model_trains_on_the_raw_features_as_keras():
    ours, _ = kilnet_model(structured)
    x, y = structured_data(32), RNG.integers(0, 2, (32, 1)).astype("float32")
    ours.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = ours.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), verbose=0)
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert np.isfinite(history.history["loss"]).all()


def test_keras_files_both_ways(tmp_path):
    ours, _ = kilnet_model(structured)
    theirs = keras_model(structured)
    ours.set_weights(theirs.get_weights())
    x = structured_data()
    expected = theirs.predict(x, verbose=0)

    ours.save(tmp_path / "kilnet.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_keras = keras.saving.load_model(tmp_path / "kilnet.keras")
    assert [t.shape for t in in_keras.inputs] == [t.shape for t in theirs.inputs]
    np.testing.assert_allclose(in_keras.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)

    theirs.save(tmp_path / "keras.keras")
    in_kilnet = kilnet.models.load_model(tmp_path / "keras.keras")
    assert [t.name for t in in_kilnet.inputs] == [t.name for t in theirs.inputs]  # ...CLONE
    assert in_kilnet.count_params() == theirs.count_params()
    np.testing.assert_allclose(in_kilnet.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)

    again = kilnet.models.load_model(tmp_path / "kilnet.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, rtol=1e-6, atol=1e-7)


def deeper(lib):
    """A list input that is a hidden layer's output, followed by op nodes."""
    x = lib.Input(shape=(4,), name="x")
    hidden = lib.layers.Dense(3, name="hidden")(x)
    out = lib.layers.Dense(2, name="head")(hidden * 2.0 + 1.0)
    return lib.Model([hidden], out)


def test_a_hidden_output_as_the_input_keeps_the_ops_after_it():
    ours, message = kilnet_model(deeper)
    theirs = keras_model(deeper)
    assert [t.name for t in ours.inputs] == ["hiddenCLONE"]   # Keras: <tensor name>CLONE
    assert [t.shape for t in ours.inputs] == [t.shape for t in theirs.inputs] == [(None, 3)]
    assert [layer.name for layer in ours.layers][1:] == ["head"]
    assert len(ours.operations) == len(theirs.operations) == 4   # input, *, +, head
    assert ours.count_params() == theirs.count_params() == 8
    ours.set_weights(theirs.get_weights())
    h = RNG.normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(ours.predict(h, verbose=0), theirs.predict(h, verbose=0),
                               rtol=1e-6, atol=1e-6)
    assert "made by 'hidden'" in message and "'hidden'" in message and "('x')" in message


def test_the_original_graph_still_makes_the_whole_model():
    raw = kilnet.Input(shape=(1,), name="age")
    scaled = kilnet.layers.Normalization(mean=50.0, variance=100.0)(raw)
    out = kilnet.layers.Dense(1, kernel_initializer="ones")(scaled)
    with pytest.warns(KerasQuirkWarning):
        cut = kilnet.Model(scaled, out)
    whole = kilnet.Model(raw, out)
    x = np.array([[60.0]], "float32")
    assert [type(layer).__name__ for layer in whole.layers] == [
        "InputLayer", "Normalization", "Dense"]
    np.testing.assert_allclose(whole.predict(x, verbose=0), [[1.0]])   # (60 - 50) / 10
    np.testing.assert_allclose(cut.predict(x, verbose=0), [[60.0]])


def test_input_tensors_alone_give_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", KerasQuirkWarning)
        x = kilnet.Input(shape=(2,))
        kilnet.Model(x, kilnet.layers.Dense(1)(x))


def add_of_cut(lib):
    raw = lib.Input(shape=(1,), name="age")
    scaled = lib.layers.Normalization(mean=50.0, variance=100.0)(raw)
    return lib.Model(scaled, lib.layers.Add()([scaled, raw]))


def test_an_input_upstream_of_the_cut_and_used_after_it_is_refused_as_keras():
    with pytest.raises(ValueError, match="depend on the input 'age'"):
        add_of_cut(kilnet)
    with pytest.raises(ValueError):
        keras_model(add_of_cut)


def test_a_masked_layer_output_as_an_input_is_refused_as_keras():
    def masked(lib):
        tokens = lib.Input(shape=(5,), dtype="int32", name="tokens")
        embedded = lib.layers.Embedding(10, 4, mask_zero=True)(tokens)
        return lib.Model(embedded, lib.layers.GRU(3)(embedded))

    with pytest.raises(ValueError, match="sequence mask.*'tokens'"):
        masked(kilnet)
    with pytest.raises(ValueError):
        keras_model(masked)


def test_the_same_layer_output_twice_is_refused():
    raw = kilnet.Input(shape=(1,))
    scaled = kilnet.layers.Normalization(mean=0.0, variance=1.0)(raw)
    with pytest.raises(ValueError, match="given twice"):
        kilnet.Model([scaled, scaled], kilnet.layers.Add()([scaled, scaled]))
