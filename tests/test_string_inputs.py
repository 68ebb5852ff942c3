"""Functional models on raw strings: a string Input whose text layers run on the host before
the compiled program (keras.io's "Text classification from scratch" end-to-end model, the
preprocessing guide's StringLookup inside a model).

Numbers are compared with the hand pipeline (the text layer applied to the data first, then
the numeric model) and, in the tests marked `peers` (`make test ARGS="-m peers"` after
bench/setup_peers.sh), with Keras 3.15 with TensorFlow, which can run string models, in a
subprocess from the same weights.
"""

import json
import os
import pathlib
import subprocess
import textwrap
import warnings

import numpy as np
import pytest

import kilnet
from kilnet import layers

PEERS = pathlib.Path(__file__).resolve().parents[1] / "bench" / ".venv-peers" / "bin" / "python"

TEXTS = np.array(["The cat sat on the mat.", "A dog ran far away!", "the dog sat",
                  "cats and dogs, together", "a cat ran", "unknown words only here",
                  "mat mat mat", "Dog"])
LABELS = np.array([0, 1, 0, 1, 1, 0, 0, 1], "float32")
VOCABULARY = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "and"]
COLOURS = np.array([["red"], ["blue"], ["green"], ["purple"], ["red"], ["blue"], ["x"],
                    ["green"]])


def _text_model(seed=1):
    """keras.io's end-to-end model: a string Input, TextVectorization, then a numeric model
    (nested, as the tutorial calls it)."""
    kilnet.utils.set_random_seed(seed)
    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=6,
                                         vocabulary=VOCABULARY)
    ids = kilnet.Input((6,), dtype="int64")
    hidden = layers.GlobalAveragePooling1D()(layers.Embedding(20, 4)(ids))
    core = kilnet.Model(ids, layers.Dense(1, activation="sigmoid")(hidden))
    text = kilnet.Input(shape=(1,), dtype="string", name="text")
    return kilnet.Model(text, core(vectorize(text))), vectorize, core


def _lookup_model():
    """The preprocessing guide's option 1: a StringLookup inside the model."""
    colour = kilnet.Input(shape=(1,), dtype="string", name="colour")
    lookup = layers.StringLookup(vocabulary=["red", "green", "blue"], output_mode="one_hot")
    hidden = layers.Dense(3, activation="relu")(layers.Flatten()(lookup(colour)))
    return kilnet.Model(colour, layers.Dense(1, activation="sigmoid")(hidden)), lookup


def _compiled(model):
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


# -- the hand pipeline -------------------------------------------------------------------------
def test_string_input_is_keras_input():
    text = kilnet.Input(shape=(1,), dtype="string", name="text")
    assert text.dtype == "string" and text.shape == (None, 1)
    model, vectorize, _ = _text_model()
    assert [layer.name for layer in model.layers][:2] == ["text", vectorize.name]
    assert model.inputs[0].dtype == "string"
    assert model.get_config()["layers"][0]["config"]["dtype"] == "string"
    assert model.input_shape == (None, 1)


def test_predict_evaluate_match_the_hand_pipeline():
    model, vectorize, core = _text_model()
    _compiled(model), _compiled(core)
    ids = vectorize(TEXTS)
    expected = core.predict(ids, verbose=0)
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(list(TEXTS), verbose=0), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict({"text": TEXTS[:, None]}, verbose=0), expected,
                               rtol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(list(TEXTS)), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model(TEXTS)), expected, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(TEXTS, LABELS, verbose=0),
                               core.evaluate(ids, LABELS, verbose=0), rtol=1e-6)


def test_batch_sources_of_strings():
    model, vectorize, core = _text_model()
    _compiled(model), _compiled(core)

    def batches():
        for start in range(0, len(TEXTS), 3):
            yield TEXTS[start:start + 3], LABELS[start:start + 3]

    np.testing.assert_allclose(model.evaluate(batches(), verbose=0),
                               core.evaluate(vectorize(TEXTS), LABELS, batch_size=3,
                                             verbose=0), rtol=1e-5)
    dataset = kilnet.utils.ArrayDataset(TEXTS, LABELS, batch_size=3)
    np.testing.assert_allclose(model.evaluate(dataset, verbose=0),
                               core.evaluate(vectorize(TEXTS), LABELS, batch_size=3,
                                             verbose=0), rtol=1e-5)


def test_fit_on_strings_trains_as_the_hand_pipeline():
    model, vectorize, core = _text_model()
    start = [w.copy() for w in model.get_weights()]
    _compiled(model).fit(TEXTS, LABELS, epochs=2, batch_size=4, shuffle=False, verbose=0)
    trained = model.get_weights()
    core.set_weights(start)
    _compiled(core).fit(vectorize(TEXTS), LABELS, epochs=2, batch_size=4, shuffle=False,
                        verbose=0)
    for ours, hand in zip(trained, core.get_weights()):
        np.testing.assert_allclose(ours, hand, rtol=1e-5, atol=1e-7)
    assert not all(np.allclose(a, b) for a, b in zip(trained, start))


def test_string_lookup_inside_a_model():
    model, lookup = _lookup_model()
    encoded = lookup(COLOURS)
    out = model.predict(COLOURS, verbose=0)
    flat = encoded.reshape(len(COLOURS), -1).astype("float32")
    w1, b1, w2, b2 = model.get_weights()
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-(np.maximum(flat @ w1 + b1, 0) @ w2 + b2))),
                               rtol=1e-5)


def test_string_and_numeric_inputs_together():
    word = kilnet.Input(shape=(1,), dtype="string", name="word")
    count = kilnet.Input(shape=(2,), name="count")
    lookup = layers.StringLookup(vocabulary=["u", "v"], output_mode="one_hot")
    joined = layers.Concatenate()([layers.Flatten()(lookup(word)), count])
    model = kilnet.Model({"word": word, "count": count}, layers.Dense(1)(joined))
    words, counts = ["u", "v", "w"], np.arange(6, dtype="float32").reshape(3, 2)
    kernel, bias = model.get_weights()
    expected = np.concatenate([lookup(np.array(words)), counts], axis=1) @ kernel + bias
    np.testing.assert_allclose(model.predict({"word": words, "count": counts}, verbose=0),
                               expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model({"word": words, "count": counts})), expected,
                               rtol=1e-5)
    with pytest.raises(kilnet.errors.InputError, match="misses \\['word'\\]"):
        model.predict({"count": counts}, verbose=0)


def test_a_numeric_layer_on_strings_is_refused_naming_it():
    text = kilnet.Input(shape=(1,), dtype="string")
    with pytest.raises(TypeError, match="'dense_on_text'.*string layers"):
        layers.Dense(2, name="dense_on_text")(text)


def test_a_string_model_inside_another_graph_runs_its_text_layer_on_the_host():
    model, _, _ = _text_model()   # (more in tests/test_string_graph.py)
    text = kilnet.Input(shape=(1,), dtype="string")
    outer = kilnet.Model(text, model(text))
    np.testing.assert_allclose(outer.predict(TEXTS, verbose=0), model.predict(TEXTS, verbose=0),
                               rtol=1e-6)


def test_numeric_models_do_not_take_the_host_stage(monkeypatch):
    from kilnet.models import _host_stage

    def refuse(*args, **kwargs):
        raise AssertionError("the host stage ran for a numeric model")

    monkeypatch.setattr(_host_stage.HostStage, "fed_arrays", refuse)
    model = kilnet.Sequential([kilnet.Input((4,)), layers.Dense(8, activation="relu"),
                               layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(np.ones((8, 4)), np.ones(8), epochs=1, verbose=0)
    assert model.host_stage is None


FEATURES = {"thal": np.array(["fixed", "normal", "normal", "reversible", "fixed", "normal"]),
            "age": np.array([50.0, 60, 70, 40, 55, 65], "float32"),
            "sex": np.array([0, 1, 1, 0, 1, 0], "int32"),
            "city": np.array(["a", "b", "c", "a", "b", "zz"])}


def _feature_space_models():
    """keras.io's "Structured data classification with FeatureSpace": a model trained on
    the encoded features, and the inference model from get_inputs() on raw values."""
    kilnet.utils.set_random_seed(2)
    space = kilnet.utils.FeatureSpace(
        {"thal": kilnet.utils.FeatureSpace.string_categorical(num_oov_indices=1),
         "age": "float_normalized", "sex": "integer_categorical",
         "city": kilnet.utils.FeatureSpace.string_hashed(8)},
        crosses=[kilnet.utils.FeatureSpace.cross(("sex", "thal"), crossing_dim=4)])
    space.adapt(FEATURES)
    dict_inputs = space.get_inputs()
    encoded = space.get_encoded_features()
    predictions = layers.Dense(1, activation="sigmoid")(
        layers.Dense(8, activation="relu")(encoded))
    with warnings.catch_warnings():
        warnings.simplefilter("error", kilnet.errors.KerasQuirkWarning)
        training_model = kilnet.Model(inputs=encoded, outputs=predictions)
    return space, training_model, kilnet.Model(inputs=dict_inputs, outputs=predictions)


def test_feature_space_inference_model_takes_raw_features():
    space, training_model, inference_model = _feature_space_models()
    assert {key: t.dtype for key, t in space.get_inputs().items()} == {
        "thal": "string", "age": "float32", "sex": "int32", "city": "string"}
    np.testing.assert_allclose(inference_model.predict(FEATURES, verbose=0),
                               training_model.predict(space(FEATURES), verbose=0), rtol=1e-5,
                               atol=1e-6)
    sample = {"thal": "fixed", "age": 60.0, "sex": 1, "city": "b"}
    one = inference_model.predict(
        {name: kilnet.ops.convert_to_tensor([value]) for name, value in sample.items()},
        verbose=0)
    np.testing.assert_allclose(one, training_model.predict(space(sample)[None], verbose=0),
                               rtol=1e-5, atol=1e-6)


# -- Keras with TensorFlow, from the same weights ---------------------------------------------
_KERAS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import tensorflow as tf
    from keras import layers
    data = np.load(sys.argv[1], allow_pickle=False)
    # Keras takes text as tf.string tensors (a NumPy array of str is refused)
    texts, colours = tf.constant(data["texts"]), tf.constant(data["colours"])
    labels = data["labels"]
    out = {}

    vectorize = layers.TextVectorization(max_tokens=20, output_sequence_length=6,
                                         vocabulary=list(data["vocabulary"]))
    ids = keras.Input((6,), dtype="int64")
    hidden = layers.GlobalAveragePooling1D()(layers.Embedding(20, 4)(ids))
    core = keras.Model(ids, layers.Dense(1, activation="sigmoid")(hidden))
    text = keras.Input(shape=(1,), dtype="string", name="text")
    model = keras.Model(text, core(vectorize(text)))
    model.set_weights([data[f"text_{i}"] for i in range(int(data["text_count"]))])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    out["text_predict"] = model.predict(texts, verbose=0).tolist()
    out["text_evaluate"] = model.evaluate(texts, labels, verbose=0)

    colour = keras.Input(shape=(1,), dtype="string", name="colour")
    lookup = layers.StringLookup(vocabulary=["red", "green", "blue"], output_mode="one_hot")
    hidden = layers.Dense(3, activation="relu")(layers.Flatten()(lookup(colour)))
    model = keras.Model(colour, layers.Dense(1, activation="sigmoid")(hidden))
    model.set_weights([data[f"lookup_{i}"] for i in range(int(data["lookup_count"]))])
    out["lookup_predict"] = model.predict(colours, verbose=0).tolist()

    # kilnet's files opened by Keras
    out["kilnet_text_file"] = keras.models.load_model("text.keras").predict(
        texts, verbose=0).tolist()
    out["kilnet_lookup_file"] = keras.models.load_model("lookup.keras").predict(
        colours, verbose=0).tolist()

    # Keras's file of an adapted TextVectorization (its vocabulary in the assets)
    vectorize = layers.TextVectorization(max_tokens=15, output_sequence_length=5)
    vectorize.adapt(texts)
    keras.utils.set_random_seed(3)
    text = keras.Input((1,), dtype="string", name="text")
    hidden = layers.GlobalAveragePooling1D()(layers.Embedding(15, 3)(vectorize(text)))
    model = keras.Model(text, layers.Dense(2, activation="softmax")(hidden))
    model.save("keras_text.keras")
    out["keras_file_predict"] = model.predict(texts, verbose=0).tolist()
    out["keras_file_vocabulary"] = vectorize.get_vocabulary()

    # keras.io's FeatureSpace inference model, kilnet's Dense weights
    FS = keras.utils.FeatureSpace
    features = {key: data[f"feature_{key}"] for key in ("thal", "age", "sex", "city")}
    space = FS({"thal": FS.string_categorical(num_oov_indices=1), "age": "float_normalized",
                "sex": "integer_categorical", "city": FS.string_hashed(8)},
               crosses=[FS.cross(("sex", "thal"), crossing_dim=4)])
    space.adapt(tf.data.Dataset.from_tensor_slices(features).batch(32))
    dict_inputs = space.get_inputs()
    predictions = layers.Dense(1, activation="sigmoid")(
        layers.Dense(8, activation="relu")(space.get_encoded_features()))
    model = keras.Model(inputs=dict_inputs, outputs=predictions)
    model.set_weights([data[f"space_{i}"] for i in range(int(data["space_count"]))])
    out["space_predict"] = model.predict(
        {key: tf.constant(value) for key, value in features.items()}, verbose=0).tolist()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def keras_tf(tmp_path_factory):
    """Keras 3.15 with TensorFlow run on the same data and weights as kilnet's models."""
    assert PEERS.exists(), "the peers tests need Keras with TensorFlow: run bench/setup_peers.sh"
    folder = tmp_path_factory.mktemp("keras_tf")
    text_model, _, _ = _text_model()
    lookup_model, _ = _lookup_model()
    arrays = {"texts": TEXTS, "labels": LABELS, "colours": COLOURS,
              "vocabulary": np.array(VOCABULARY)}
    _, _, space_model = _feature_space_models()
    arrays.update({f"feature_{key}": value for key, value in FEATURES.items()})
    for name, model in (("text", text_model), ("lookup", lookup_model),
                        ("space", space_model)):
        weights = model.get_weights()
        arrays[f"{name}_count"] = np.array(len(weights))
        arrays.update({f"{name}_{i}": w for i, w in enumerate(weights)})
    np.savez(folder / "data.npz", **arrays)
    text_model.save(folder / "text.keras")
    lookup_model.save(folder / "lookup.keras")
    script = folder / "peer.py"
    script.write_text(_KERAS_SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    done = subprocess.run([str(PEERS), str(script), str(folder / "data.npz")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"text": text_model, "lookup": lookup_model, "space": space_model, "folder": folder,
            "keras": json.loads(done.stdout.strip().splitlines()[-1])}


@pytest.mark.peers
def test_text_model_matches_keras_tensorflow(keras_tf):
    model = _compiled(keras_tf["text"])
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0),
                               keras_tf["keras"]["text_predict"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.evaluate(TEXTS, LABELS, verbose=0),
                               keras_tf["keras"]["text_evaluate"], rtol=1e-5, atol=1e-6)


@pytest.mark.peers
def test_lookup_model_matches_keras_tensorflow(keras_tf):
    np.testing.assert_allclose(keras_tf["lookup"].predict(COLOURS, verbose=0),
                               keras_tf["keras"]["lookup_predict"], rtol=1e-5, atol=1e-6)


@pytest.mark.peers
def test_keras_opens_kilnets_string_model_files(keras_tf):
    np.testing.assert_allclose(keras_tf["keras"]["kilnet_text_file"],
                               keras_tf["text"].predict(TEXTS, verbose=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras_tf["keras"]["kilnet_lookup_file"],
                               keras_tf["lookup"].predict(COLOURS, verbose=0), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.peers
def test_kilnet_opens_keras_string_model_files(keras_tf):
    """Keras with TensorFlow writes an adapted TextVectorization's vocabulary in the file's
    assets and its ids as int64 tensors in the config."""
    model = kilnet.models.load_model(keras_tf["folder"] / "keras_text.keras")
    assert model.layers[1].get_vocabulary() == keras_tf["keras"]["keras_file_vocabulary"]
    assert model.inputs[0].dtype == "string"
    np.testing.assert_allclose(model.predict(TEXTS, verbose=0),
                               keras_tf["keras"]["keras_file_predict"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".kilnet"])
def test_string_models_round_trip_through_files(tmp_path, suffix):
    for model, data in ((_text_model()[0], TEXTS), (_lookup_model()[0], COLOURS)):
        path = tmp_path / f"model{suffix}"
        model.save(path)
        again = kilnet.models.load_model(path)
        assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
        assert again.get_config() == model.get_config()
        np.testing.assert_allclose(again.predict(data, verbose=0),
                                   model.predict(data, verbose=0), rtol=1e-6)


@pytest.mark.peers
def test_feature_space_model_matches_keras_tensorflow(keras_tf):
    np.testing.assert_allclose(keras_tf["space"].predict(FEATURES, verbose=0),
                               keras_tf["keras"]["space_predict"], rtol=1e-5, atol=1e-6)
