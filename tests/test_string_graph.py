"""String tensors further into a functional graph: the ops that only move strings
(`ops.expand_dims(text, -1)`, reshape, squeeze, `x[...]`, concatenate, stack) run on the host
before the string layers, as keras.io's wide & deep `encode_inputs` does, and a Sequential (or
a functional model) holding string layers takes a string tensor inside another model, as
keras.io's recommenders' `embedding_encoder` does: its string layers run on the host, the rest
compiled.

Numbers are compared with the lookups computed by hand, with the same numeric model fed the
looked-up values, and with Keras 3.15 on the TensorFlow backend (Keras on JAX takes no string
tensors) in a subprocess, from the same weights: predictions, a fit, and `.keras` files both
ways.
"""

import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kilnet
from kilnet import layers, ops

SOILS = np.array(["b", "c", "a", "b", "a", "c"])
USERS = np.array(["u3", "u1", "zz", "u2", "u1", "u3"])
TARGETS = np.array([[1.0], [0.0], [1.0], [0.5], [0.2], [0.9]], "float32")


def _multi_hot(values, vocabulary):
    return np.array([[float(v == word) for word in vocabulary] for v in values])


def test_expand_dims_on_a_string_input_feeds_a_multi_hot_lookup():
    """keras.io's wide & deep: `lookup(ops.expand_dims(inputs[name], -1))`, shape=() Input."""
    soil = kilnet.Input(name="Soil_Type", shape=(), dtype="string")
    lookup = layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=None,
                                 num_oov_indices=0, output_mode="binary")
    model = kilnet.Model({"Soil_Type": soil}, lookup(ops.expand_dims(soil, -1)))
    assert model.outputs[0].shape == (None, 3)
    out = model.predict({"Soil_Type": np.array(["b", "c", "a"], dtype=object)}, verbose=0)
    np.testing.assert_array_equal(out, [[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    lines = []
    model.summary(print_fn=lines.append)
    assert "unbuilt" not in "\n".join(lines)   # the host op has no weights to build


@pytest.mark.parametrize("move, on_numpy", [
    (lambda t: ops.reshape(t, (-1, 2, 1)), lambda a: a.reshape(-1, 2, 1)),
    (lambda t: ops.squeeze(ops.expand_dims(t, 1), axis=1), lambda a: a),
    (lambda t: t[:, ::-1], lambda a: a[:, ::-1]),
    (lambda t: ops.concatenate([t, t[:, :1]], axis=-1),
     lambda a: np.concatenate([a, a[:, :1]], axis=-1)),
    (lambda t: ops.stack([t[:, 1], t[:, 0]], axis=1), lambda a: a[:, ::-1]),
    (lambda t: ops.transpose(ops.expand_dims(t, -1), (0, 2, 1)), lambda a: a[:, None, :]),
])
def test_shape_ops_on_strings_run_on_the_host(move, on_numpy):
    text = kilnet.Input(shape=(2,), dtype="string")
    model = kilnet.Model(text, layers.StringLookup(vocabulary=["a", "b", "c"])(move(text)))
    data = np.array([["a", "c"], ["b", "zz"], ["c", "a"]])
    ids = {"a": 1, "b": 2, "c": 3}
    expected = np.vectorize(lambda word: ids.get(word, 0))(on_numpy(data))
    out = model.predict(data, verbose=0)
    assert out.shape[1:] == model.outputs[0].shape[1:]
    np.testing.assert_array_equal(out, expected)


def test_expand_dims_model_trains_as_on_the_looked_up_values():
    soil = kilnet.Input(name="soil", shape=(), dtype="string")
    lookup = layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=None,
                                 num_oov_indices=0, output_mode="binary")
    kilnet.utils.set_random_seed(1)
    model = kilnet.Model(soil, layers.Dense(1)(lookup(ops.expand_dims(soil, -1))))
    numbers = kilnet.Input(shape=(3,))
    numeric = kilnet.Model(numbers, layers.Dense(1)(numbers))
    numeric.set_weights(model.get_weights())
    histories = []
    for each, data in ((model, SOILS), (numeric, _multi_hot(SOILS, ["a", "b", "c"]))):
        each.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
        histories.append(each.fit(data, TARGETS, epochs=3, batch_size=2, shuffle=False,
                                  verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-6)
    np.testing.assert_allclose(model.get_weights()[0], numeric.get_weights()[0], rtol=1e-6)


def _encoder():
    """keras.io's recommenders' `embedding_encoder`: a Sequential([StringLookup, Embedding])."""
    return kilnet.Sequential([
        layers.StringLookup(vocabulary=["u1", "u2", "u3"], mask_token=None),
        layers.Embedding(4, 2)], name="user_embedding")


def test_a_sequential_with_a_string_lookup_takes_a_string_input():
    user = kilnet.Input(name="user", shape=(), dtype="string")
    encoder = _encoder()
    model = kilnet.Model(user, encoder(user))
    table = encoder.layers[1].get_weights()[0]
    ids = [3, 1, 0, 2, 1, 3]   # the lookup's ids, by hand (0: out of vocabulary)
    np.testing.assert_allclose(model.predict(USERS, verbose=0), table[ids], rtol=1e-6)
    assert [layer.name for layer in model.layers] == ["user", "user_embedding"]
    assert encoder.inputs[0].dtype == "string"
    # called eagerly on strings, as Keras's
    np.testing.assert_allclose(encoder(USERS[:2]), table[[3, 1]], rtol=1e-6)


def test_a_sequential_not_starting_with_a_string_layer_is_refused_naming_that_layer():
    chain = kilnet.Sequential([layers.Dense(2, name="first"),
                               layers.StringLookup(vocabulary=["u1"])])
    with pytest.raises(TypeError, match="'first' \\(Dense\\) was called on a string"):
        chain(kilnet.Input(shape=(), dtype="string"))
    assert chain.input_layer is None   # left as it was


def test_a_sequential_string_encoder_trains_as_on_ids():
    user = kilnet.Input(name="user", shape=(), dtype="string")
    kilnet.utils.set_random_seed(2)
    model = kilnet.Model(user, layers.Dense(1)(_encoder()(user)))
    ids = kilnet.Input(shape=(), dtype="int32")
    numeric = kilnet.Model(ids, layers.Dense(1)(layers.Embedding(4, 2)(ids)))
    numeric.set_weights(model.get_weights())
    histories = []
    for each, data in ((model, USERS), (numeric, np.array([3, 1, 0, 2, 1, 3]))):
        each.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
        histories.append(each.fit(data, TARGETS, epochs=3, batch_size=2, shuffle=False,
                                  verbose=0).history["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-6)
    for trained, reference in zip(model.get_weights(), numeric.get_weights()):
        np.testing.assert_allclose(trained, reference, rtol=1e-6)


def test_a_string_encoder_shared_by_two_inputs_looks_up_each():
    encoder = _encoder()
    first = kilnet.Input(shape=(), dtype="string", name="first")
    second = kilnet.Input(shape=(), dtype="string", name="second")
    model = kilnet.Model([first, second], layers.Subtract()([encoder(first), encoder(second)]))
    table = encoder.layers[1].get_weights()[0]
    out = model.predict([USERS, USERS[::-1]], verbose=0)
    ids = np.array([3, 1, 0, 2, 1, 3])
    np.testing.assert_allclose(out, table[ids] - table[ids[::-1]], rtol=1e-6)


def test_a_functional_string_model_nests_in_another_graph():
    text = kilnet.Input(shape=(1,), dtype="string", name="text")
    lookup = layers.StringLookup(vocabulary=["red", "green"], output_mode="one_hot")
    inner = kilnet.Model(text, layers.Dense(2)(layers.Flatten()(lookup(text))))
    outer_text = kilnet.Input(shape=(1,), dtype="string", name="outer")
    outer = kilnet.Model(outer_text, inner(outer_text))
    data = np.array([["red"], ["blue"], ["green"]])
    np.testing.assert_allclose(outer.predict(data, verbose=0), inner.predict(data, verbose=0),
                               rtol=1e-6)
    with pytest.raises(TypeError, match="takes strings.*Received: numbers"):
        inner(kilnet.Input(shape=(1,)))


def test_a_custom_layer_holding_a_string_layer_is_refused_saying_why():
    class Encoder(layers.Layer):
        def __init__(self):
            super().__init__()
            self.lookup = layers.StringLookup(vocabulary=["u1"])
            self.embed = layers.Embedding(2, 2)

        def call(self, inputs):
            return self.embed(self.lookup(inputs))

    with pytest.raises(TypeError, match="holds the string layer.*would not train.*Sequential"):
        Encoder()(kilnet.Input(shape=(), dtype="string"))


def test_ops_that_compute_on_strings_are_refused_naming_the_shape_ops():
    text = kilnet.Input(shape=(2,), dtype="string")
    with pytest.raises(TypeError, match="ops.mean.*ExpandDims"):
        ops.mean(text, axis=-1)


@pytest.mark.parametrize("suffix", [".keras", ".kilnet"])
def test_string_graph_models_round_trip_through_files(tmp_path, suffix):
    model = _wide_model(kilnet)
    data = {"soil": SOILS, "user": USERS}
    model.save(tmp_path / f"model{suffix}")
    again = kilnet.models.load_model(tmp_path / f"model{suffix}")
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(again.predict(data, verbose=0), model.predict(data, verbose=0),
                               rtol=1e-6)


def _wide_model(library):
    """Both string paths in one model, the same code for kilnet and Keras (`library`)."""
    soil = library.Input(name="soil", shape=(), dtype="string")
    user = library.Input(name="user", shape=(), dtype="string")
    lookup = library.layers.StringLookup(vocabulary=["a", "b", "c"], mask_token=None,
                                         num_oov_indices=0, output_mode="binary",
                                         name="soil_lookup")
    encoder = library.Sequential([
        library.layers.StringLookup(vocabulary=["u1", "u2", "u3"], mask_token=None,
                                    name="user_lookup"),
        library.layers.Embedding(4, 2, name="user_vectors")], name="user_embedding")
    joined = library.layers.concatenate(
        [encoder(user), lookup(library.ops.expand_dims(soil, -1))], name="joined")
    return library.Model({"soil": soil, "user": user},
                         library.layers.Dense(1, name="out")(joined))


# -- Keras with TensorFlow, from the same weights ---------------------------------------------
_KERAS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    import tensorflow as tf
    folder = sys.argv[1]
    SOILS, USERS = np.array(json.loads(sys.argv[2])), np.array(json.loads(sys.argv[3]))
    TARGETS = np.array(json.loads(sys.argv[4]), "float32")
""")
# after the model's code (_wide_model, shared with kilnet's side)
_KERAS_RUN = textwrap.dedent("""
    weights = np.load(folder + "/weights.npz")
    model = _wide_model(keras)
    model.set_weights([weights[f"w{i}"] for i in range(len(weights.files))])
    data = {"soil": tf.constant(SOILS), "user": tf.constant(USERS)}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    out = {"predict": model.predict(data, verbose=0).tolist()}
    out["history"] = model.fit(data, TARGETS, epochs=3, batch_size=2, shuffle=False,
                               verbose=0).history["loss"]
    out["weights"] = [w.tolist() for w in model.get_weights()]
    model.save(folder + "/keras.keras")
    out["kilnet_file"] = keras.models.load_model(folder + "/kilnet.keras").predict(
        data, verbose=0).tolist()
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def keras_tf(tmp_path_factory):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("Keras on TensorFlow (string tensors) needs tensorflow installed")
    folder = tmp_path_factory.mktemp("keras_tf")
    kilnet.utils.set_random_seed(5)
    model = _wide_model(kilnet)
    np.savez(folder / "weights.npz",
             **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    model.save(folder / "kilnet.keras")
    saved = model.predict({"soil": SOILS, "user": USERS}, verbose=0)
    (folder / "peer.py").write_text(_KERAS_SCRIPT + inspect.getsource(_wide_model)
                                    + _KERAS_RUN)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1"}
    arguments = [json.dumps(a.tolist()) for a in (SOILS, USERS, TARGETS)]
    done = subprocess.run([sys.executable, "-W", "ignore", str(folder / "peer.py"),
                           str(folder), *arguments], env=env,
                          capture_output=True, text=True, timeout=600, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"model": model, "saved": saved, "folder": folder,
            "keras": json.loads(done.stdout.strip().splitlines()[-1])}


def test_string_graph_matches_keras_tensorflow(keras_tf):
    model, keras = keras_tf["model"], keras_tf["keras"]
    data = {"soil": SOILS, "user": USERS}
    np.testing.assert_allclose(model.predict(data, verbose=0), keras["predict"], rtol=1e-6,
                               atol=1e-7)
    model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
    history = model.fit(data, TARGETS, epochs=3, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], keras["history"], rtol=1e-5)
    for mine, theirs in zip(model.get_weights(), keras["weights"]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)


def test_string_graph_files_open_in_keras_and_kilnet(keras_tf):
    keras = keras_tf["keras"]
    np.testing.assert_allclose(keras["kilnet_file"], keras_tf["saved"], rtol=1e-6, atol=1e-7)
    trained = kilnet.models.load_model(keras_tf["folder"] / "keras.keras")
    data = {"soil": SOILS, "user": USERS}
    reference = _wide_model(kilnet)
    reference.set_weights([np.array(w) for w in keras["weights"]])
    np.testing.assert_allclose(trained.predict(data, verbose=0),
                               reference.predict(data, verbose=0), rtol=1e-6, atol=1e-7)
