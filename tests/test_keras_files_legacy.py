"""Legacy Keras `.h5` model files: written by Keras 3.15's legacy writer (`model.save("m.h5")`)
and rewritten into Keras 2's spelling (batch_input_shape, list-form nodes), opened by kilnet
with the same closed class table and bounded reads; predictions equal Keras's to 1e-5."""

import json
import os
import warnings

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the legacy files are written by keras")

import kilnet  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402


def _sequential():
    return keras.Sequential([
        keras.Input((6, 6, 2)), keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.BatchNormalization(), keras.layers.Flatten(),
        keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(2)])


def _functional():
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    extra = keras.Input((3,), name="extra")
    h = keras.layers.Embedding(20, 4)(tokens)
    h = keras.layers.LSTM(3)(h)
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.BatchNormalization()], name="block")
    h = inner(keras.layers.Concatenate()([h, extra]))
    return keras.Model([tokens, extra], keras.layers.Dense(1)(h))


def _inputs(model, rng):
    if len(model.inputs) == 1:
        return rng.normal(size=(4, 6, 6, 2)).astype("float32")
    return [rng.integers(0, 20, (4, 5)).astype("int32"),
            rng.normal(size=(4, 3)).astype("float32")]


def _trained(make, rng):
    model = make()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    x = _inputs(model, rng)
    model.fit(x, rng.normal(size=(4,) + tuple(model.outputs[0].shape[1:])), epochs=2,
              verbose=0)
    return model, x


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_legacy_h5_from_keras_predicts_the_same(make, tmp_path):
    rng = np.random.default_rng(0)
    km, x = _trained(make, rng)
    km.save(tmp_path / "m.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = kilnet.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(mine.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert type(mine.optimizer).__name__ == "Adam"
    assert mine.optimizer.learning_rate == pytest.approx(0.01)
    history = mine.fit(x, km.predict(x, verbose=0), epochs=1, verbose=0).history
    assert "mae" in history and np.isfinite(history["loss"][0])


def _as_keras2(config):
    """Keras 3's legacy config rewritten the way Keras 2 spelled it."""
    def layer(entry):
        c = entry["config"]
        c["dtype"] = "float32"
        if entry["class_name"] == "InputLayer":
            c["batch_input_shape"] = c.pop("batch_shape")
        for key, value in list(c.items()):
            if isinstance(value, dict) and "module" in value:
                c[key] = {"class_name": value["class_name"], "config": value["config"]}
        if "inbound_nodes" in entry:
            nodes = []
            for node in entry["inbound_nodes"]:
                args = node["args"][0]
                args = args if isinstance(args, list) else [args]
                nodes.append([t["config"]["keras_history"] + [node["kwargs"]] for t in args])
            entry["inbound_nodes"] = nodes
        if entry["class_name"] in ("Sequential", "Functional"):
            for sub in c["layers"]:
                layer(sub)
        entry.pop("module", None)
        entry.pop("registered_name", None)

    layer(config)
    return config


def _keras2_file(make, path, rng):
    km, x = _trained(make, rng)
    km.save(path)
    with h5py.File(path, "r+") as f:
        config = _as_keras2(json.loads(f.attrs["model_config"]))
        assert "batch_input_shape" in json.dumps(config)
        f.attrs["model_config"] = json.dumps(config)
    return km, x


def test_keras2_sequential_spelling_loads(tmp_path):
    km, x = _keras2_file(_sequential, tmp_path / "m.h5", np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = kilnet.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(mine.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_keras2_functional_nodes_load(tmp_path):
    km, x = _keras2_file(_functional, tmp_path / "f.h5", np.random.default_rng(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mine = kilnet.models.load_model(tmp_path / "f.h5")
    np.testing.assert_allclose(mine.predict(x, verbose=0), km.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        last = config["config"]["layers"][-1]["config"]["name"]   # Keras's session-wide name
        edit(config, f, f"model_weights/{last}/{config['config']['name']}/{last}")
        f.attrs["model_config"] = json.dumps(config)


def test_hostile_legacy_files_are_refused(tmp_path):
    marker = tmp_path / "marker"
    rng = np.random.default_rng(2)
    km, _ = _trained(_sequential, rng)
    cases = {}
    for name, edit, pattern in [
        ("lambda", lambda c, f, w: c["config"]["layers"].append(
            {"class_name": "Lambda", "config": {"name": "lam", "function": {
                "class_name": "__lambda__", "config": {"code": "AAAA"}}}}), "code"),
        ("module path", lambda c, f, w: c["config"]["layers"][1].update(
            module="subprocess", class_name="Popen"), "module path 'subprocess'"),
        ("huge units", lambda c, f, w: c["config"]["layers"][4]["config"].update(units=10**9),
         "does not fit"),
        ("terabyte shape", lambda c, f, w: (
            f[w].__delitem__("kernel"),
            f.create_dataset(f"{w}/kernel", shape=(2**20, 2**20), dtype="float32")),
         "more than the whole weights file"),
        ("external link", lambda c, f, w: (
            f[w].__delitem__("bias"),
            f.__setitem__(f"{w}/bias", h5py.ExternalLink(str(marker), "/x"))),
         "ExternalLink"),
    ]:
        path = tmp_path / f"{name}.h5"
        km.save(path)
        _edit(path, edit)
        cases[name] = (path, pattern)
    for name, (path, pattern) in cases.items():
        with pytest.raises(ModelFileError, match=pattern):
            kilnet.models.load_model(path)
    assert not marker.exists()
    weights_only = tmp_path / "w.weights.h5"
    km.save_weights(weights_only)
    with pytest.raises(ModelFileError, match="model_config"):
        kilnet.models.load_model(weights_only)


def _layers_known_once_built(lib):
    """A model whose layers' weights are known only once built: MultiHeadAttention and a
    Bidirectional LSTM (sub-layers), a layer of yours holding two Dense, and a Keras-form
    layer of yours with a float and an int32 weight."""
    layers = lib.layers

    class Scale(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="random_normal",
                                     name="w")
            self.count = self.add_weight(shape=(), dtype="int32", trainable=False,
                                         name="count")

        def call(self, x):
            self.count.assign(self.count + 1)
            return x * self.w

    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first, self.second = layers.Dense(5, name="d1"), layers.Dense(4, name="d2")

        def call(self, x):
            return self.second(self.first(x))

    register = lib.saving.register_keras_serializable(package="legacy_built")
    scale, block = register(Scale), register(Block)
    inputs = layers.Input((6, 4), name="x")
    h = layers.MultiHeadAttention(2, 3, name="mha")(inputs, inputs)
    h = layers.Bidirectional(layers.LSTM(3, return_sequences=True), name="bi")(h)
    h = scale(name="scale")(block(name="block")(h))
    outputs = layers.Dense(2, name="out")(layers.GlobalAveragePooling1D(name="gap")(h))
    return lib.Model(inputs, outputs)


def test_layers_known_once_built_load_from_legacy_h5_both_ways(tmp_path):
    """Keras's legacy .h5 lists such a layer's trainable then non-trainable weights; kilnet
    refused them ("holds sub-layers") and now reads them after building, shapes checked."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(3, 6, 4)).astype(np.float32)
    theirs = _layers_known_once_built(keras)
    expected = theirs.predict(x, verbose=0)
    theirs.save(tmp_path / "keras.h5")
    _layers_known_once_built(kilnet)   # registers kilnet's classes under the same names
    ours = kilnet.saving.load_model(tmp_path / "keras.h5", compile=False)
    assert int(ours.get_layer("scale").count.numpy()) == int(
        theirs.get_layer("scale").count.numpy()) == 1   # the count Keras's predict left
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, atol=1e-6)
    ours.save(tmp_path / "kilnet.h5")
    back = keras.saving.load_model(tmp_path / "kilnet.h5", compile=False)
    np.testing.assert_allclose(back.predict(x, verbose=0), expected, atol=1e-6)
    from keras.src.legacy.saving import legacy_h5_format   # Keras 2's save_weights("w.h5")
    with h5py.File(tmp_path / "weights_only.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    fresh = _layers_known_once_built(kilnet)
    fresh.load_weights(tmp_path / "weights_only.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), expected, atol=1e-6)
    with h5py.File(tmp_path / "keras.h5", "r+") as f:   # a weight of the wrong shape
        group = f["model_weights/scale"]
        name = [n.decode() if isinstance(n, bytes) else n
                for n in group.attrs["weight_names"]][0]
        del group[name]
        group[name] = np.zeros((7,), np.float32)
    with pytest.raises(ModelFileError, match="shape"):
        kilnet.saving.load_model(tmp_path / "keras.h5", compile=False)
