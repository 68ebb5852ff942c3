"""Every kind of model through files, JSON and cloning (kilnet.saving, kilnet.models._config).

Round trips must be bitwise: the same predictions, the same weights, and a loaded compiled
model continues training exactly as a model that was never saved. Files naming classes outside
the allowlists must be refused before anything in them runs.
"""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest

import kilnet
from kilnet import _safefile, layers, ops
from kilnet.errors import ModelFileError
from kilnet.models import _config, clone_model, load_model, model_from_json

rs = np.random.RandomState(0)
X4 = rs.rand(12, 4).astype(np.float32)
Y3 = rs.randint(0, 3, 12)
TWO_X = {"a": rs.rand(12, 3).astype(np.float32), "b": rs.rand(12, 2).astype(np.float32)}
TWO_Y = {"x": rs.rand(12, 2).astype(np.float32), "y": rs.rand(12, 1).astype(np.float32)}


# -- user classes ---------------------------------------------------------------------------------
@kilnet.saving.register_serializable(package="GraphTest")
class Scale(layers.Layer):
    """A Keras-form layer with a constructor argument, a weight and get_config."""

    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(input_shape[-1],), initializer="glorot_uniform",
                                    name="gain")

    def call(self, inputs):
        return ops.multiply(inputs, self.gain) * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@kilnet.saving.register_keras_serializable(package="GraphTest")
class TwoDense(kilnet.Model):
    """A subclassed model with a constructor argument and get_config."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = layers.Dense(units, activation="relu", name="hidden")
        self.head = layers.Dense(3, activation="softmax", name="head")

    def call(self, inputs):
        return self.head(self.hidden(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


MADE = []   # names of the classes below whose __init__ ran


@kilnet.saving.register_serializable(package="GraphTest")
class Marker(layers.Layer):
    """Registered: records that it was created (to prove a refused file created nothing)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        MADE.append("Marker")

    def call(self, inputs):
        return inputs


class Unregistered(layers.Layer):
    """Not registered: a file may name it only through custom_objects."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        MADE.append("Unregistered")

    def call(self, inputs):
        return inputs


# -- the models ------------------------------------------------------------------------------------
def _sequential():
    block = kilnet.Sequential([kilnet.Input(shape=(8,)), layers.Dense(6, activation="relu")],
                              name="block")
    chain = kilnet.Sequential([layers.Dense(5, activation="relu")], name="chain")  # no input
    return kilnet.Sequential([kilnet.Input(shape=(4,)), layers.Dense(8, activation="relu"),
                              layers.Dropout(0.2), layers.BatchNormalization(), block, chain,
                              layers.Dense(3, activation="softmax")])


def _two_io():
    a, b = kilnet.Input(shape=(3,), name="a"), kilnet.Input(shape=(2,), name="b")
    x = layers.Dense(2, name="x")(layers.Dense(4, activation="relu", name="da")(a))
    y = layers.Dense(1, name="y")(layers.Dense(4, activation="relu", name="db")(b))
    return kilnet.Model({"a": a, "b": b}, {"x": x, "y": y}, name="two_io")


def _shared():
    inputs = kilnet.Input(shape=(4,))
    shared = layers.Dense(4, activation="tanh", name="shared")
    x = shared(shared(inputs))   # one layer called twice: one set of weights
    return kilnet.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def _autoencoder():
    x = kilnet.Input(shape=(4,))
    encoder = kilnet.Model(x, layers.Dense(2, activation="relu", name="code")(x), name="encoder")
    z = kilnet.Input(shape=(2,))
    decoder = kilnet.Model(z, layers.Dense(4, name="reconstruction")(z), name="decoder")
    inputs = kilnet.Input(shape=(4,))
    return kilnet.Model(inputs, decoder(encoder(inputs)), name="autoencoder")


def _custom_layer():
    inputs = kilnet.Input(shape=(4,))
    x = Scale(0.5, name="scale")(layers.Dense(5, name="dense")(inputs))
    return kilnet.Model(inputs, layers.Dense(3, activation="softmax", name="out")(x))


def _subclassed():
    model = TwoDense(6, name="two_dense")
    model.build((4,))
    return model


CLASSIFIER = dict(optimizer=kilnet.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
KINDS = {   # name: (make, compile arguments, x, y)
    "sequential": (_sequential, CLASSIFIER, X4, Y3),
    "two_inputs_two_outputs": (_two_io, dict(
        optimizer="adam", loss={"x": "mse", "y": "mae"}, loss_weights={"x": 1.0, "y": 0.5},
        metrics={"x": ["mae"]}), TWO_X, TWO_Y),
    "shared_layer": (_shared, CLASSIFIER, X4, Y3),
    "nested_autoencoder": (_autoencoder, dict(optimizer="rmsprop", loss="mse"), X4, X4),
    "custom_layer": (_custom_layer, CLASSIFIER, X4, Y3),
    "subclassed": (_subclassed, CLASSIFIER, X4, Y3),
}


def _make(kind, seed=0, fits=1):
    make, compile_args, x, y = KINDS[kind]
    kilnet.utils.set_random_seed(seed)
    model = make()
    # A fresh optimizer object per model: a compiled optimizer belongs to its model.
    model.compile(**{k: (v.__class__.from_config(v.get_config())
                         if isinstance(v, kilnet.optimizers.Optimizer) else v)
                     for k, v in compile_args.items()})
    for _ in range(fits):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return model


def _arrays(outputs) -> list:
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def _same(a_list, b_list) -> bool:
    return len(a_list) == len(b_list) and all(
        a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        for a, b in zip(a_list, b_list))


def _paths(model) -> list:
    return [(name, owner, tuple(v.shape)) for name, owner, v in
            kilnet.saving.weight_entries(model)]


def _architecture(model) -> list:
    return [(type(layer).__name__, layer.name) for layer in model.layers]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each kind trained once and saved: {kind: (model, path)}."""
    folder = tmp_path_factory.mktemp("graph_saving")
    out = {}
    for kind in KINDS:
        model = _make(kind)
        path = folder / f"{kind}.kilnet"
        model.save(path)
        out[kind] = (model, path)
    return out


# -- files -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_a_saved_model_loads_bitwise(saved, kind):
    model, path = saved[kind]
    x = KINDS[kind][2]
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.name == model.name
    assert _paths(loaded) == _paths(model)
    assert _same(loaded.get_weights(), model.get_weights())
    assert _same(_arrays(loaded.predict(x, verbose=0)), _arrays(model.predict(x, verbose=0)))
    assert json.loads(loaded.to_json()) == json.loads(model.to_json())


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_loaded_model_continues_training_as_if_never_saved(saved, kind):
    _, path = saved[kind]
    x, y = KINDS[kind][2:]
    loaded = load_model(path)
    before = loaded.get_weights()
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)
    never_saved = _make(kind, fits=2)   # the same history as the saved model, plus one fit
    assert not _same(loaded.get_weights(), before)
    assert _same(loaded.get_weights(), never_saved.get_weights())


def test_the_file_keys_weights_by_layer_path(saved):
    _, path = saved["nested_autoencoder"]
    _, tensors = _safefile.read(path, "model")
    assert {n for n in tensors if n.startswith("params/")} == {
        "params/encoder/code/kernel", "params/encoder/code/bias",
        "params/decoder/reconstruction/kernel", "params/decoder/reconstruction/bias"}
    _, tensors = _safefile.read(saved["sequential"][1], "model")
    assert {"params/block/dense/kernel", "params/chain/dense/kernel",
            "state/batch_normalization/moving_mean"} <= set(tensors)


def test_shared_and_nested_layers_stay_one_layer(saved):
    loaded = load_model(saved["shared_layer"][1])
    shared = loaded.get_layer("shared")
    assert len(shared.inbound_nodes) == 2 and len(loaded.get_weights()) == 4
    nested = load_model(saved["nested_autoencoder"][1])
    encoder = nested.get_layer("encoder")
    assert isinstance(encoder, kilnet.Model) and encoder.is_functional
    assert [layer.name for layer in nested.layers] == ["input_layer", "encoder", "decoder"]


def test_the_dict_structures_and_compile_arguments_are_kept(saved):
    model, path = saved["two_inputs_two_outputs"]
    loaded = load_model(path)
    assert loaded.input_names == ["a", "b"] and loaded.output_names == ["x", "y"]
    assert sorted(loaded.predict(TWO_X, verbose=0)) == ["x", "y"]
    assert loaded.compiled.loss_weights == {"x": 1.0, "y": 0.5}
    assert set(loaded.compiled.loss) == {"x", "y"}
    assert loaded.compiled.metric_ids == {"x": ["mae"]}
    assert not load_model(path, compile=False).compiled


# -- JSON and cloning ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_to_json_and_back_gives_the_same_architecture(saved, kind):
    model = saved[kind][0]
    text = model.to_json()
    copy = model_from_json(text)
    assert type(copy) is type(model) and _architecture(copy) == _architecture(model)
    assert json.loads(copy.to_json()) == json.loads(text)
    if not copy.built:
        copy.build(seed=5)
    assert _paths(copy) == _paths(model)


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_clone_has_the_structure_and_new_weights(saved, kind):
    model = saved[kind][0]
    x = KINDS[kind][2]
    clone = clone_model(model)
    assert type(clone) is type(model) and _architecture(clone) == _architecture(model)
    assert all(a is not b for a, b in zip(clone.layers, model.layers))
    clone.build(model.build_shape if kind == "subclassed" else None, seed=7)
    assert _paths(clone) == _paths(model)
    assert not _same(clone.get_weights(), model.get_weights())
    clone.set_weights(model.get_weights())
    assert _same(_arrays(clone.predict(x, verbose=0)), _arrays(model.predict(x, verbose=0)))


def test_from_config_and_clone_function():
    model = _shared()
    again = kilnet.Model.from_config(model.get_config())
    assert _architecture(again) == _architecture(model)
    assert len(again.get_layer("shared").inbound_nodes) == 2
    kept = clone_model(model, clone_function=lambda layer: layer)   # share every layer
    assert all(a is b for a, b in zip(kept.layers[1:], model.layers[1:]))
    with pytest.raises(TypeError, match="must return a kilnet layer"):
        clone_model(model, clone_function=lambda layer: "not a layer")


# -- weights files ---------------------------------------------------------------------------------
class Ordered(kilnet.Model):
    """The same layers, made in either order: Keras's weight order differs, paths do not."""

    def __init__(self, swap=False, **kwargs):
        super().__init__(**kwargs)
        if swap:
            self.second = layers.Dense(4, name="second")
            self.first = layers.Dense(4, name="first")
        else:
            self.first = layers.Dense(4, name="first")
            self.second = layers.Dense(4, name="second")

    def call(self, inputs):
        return self.second(ops.relu(self.first(inputs)))


def test_load_weights_matches_by_layer_path(tmp_path):
    original = Ordered()
    original.build((4,), seed=0)
    original.save_weights(tmp_path / "w.kilnet")
    swapped = Ordered(swap=True)
    swapped.build((4,), seed=1)
    assert not _same(swapped.get_weights(), original.get_weights())
    swapped.load_weights(tmp_path / "w.kilnet")
    # Keras's order lists `second` first here, so loading by order would scramble the weights.
    assert [w.shape for w in swapped.get_weights()] == [w.shape for w in original.get_weights()]
    assert not _same(swapped.get_weights(), original.get_weights())
    assert _same(_arrays(swapped.predict(X4, verbose=0)), _arrays(original.predict(X4, verbose=0)))


def test_load_weights_falls_back_to_keras_order_for_other_names(saved, tmp_path):
    model = saved["custom_layer"][0]
    model.save_weights(tmp_path / "w.kilnet")
    kilnet.utils.set_random_seed(3)
    inputs = kilnet.Input(shape=(4,))
    x = Scale(0.5, name="s")(layers.Dense(5, name="d")(inputs))
    other = kilnet.Model(inputs, layers.Dense(3, activation="softmax", name="o")(x))
    other.load_weights(tmp_path / "w.kilnet")
    assert _same(other.get_weights(), model.get_weights())
    wrong = kilnet.Model(inputs, layers.Dense(3, name="o2")(layers.Dense(5, name="d2")(inputs)))
    with pytest.raises(ValueError, match=r"holds weights for the layers \['Dense', 'Scale'"):
        wrong.load_weights(tmp_path / "w.kilnet")


def test_a_previous_version_file_still_loads(saved, tmp_path):
    """Files of the previous version: a Sequential's config and no "weights" list; the array
    names were the same ("params/<layer>/<name>")."""
    kilnet.utils.set_random_seed(0)   # a model the previous version could save
    model = kilnet.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                               layers.Dropout(0.2), layers.BatchNormalization(),
                               layers.Dense(3, activation="softmax")])
    model.compile(**{**CLASSIFIER, "optimizer": "adam"})
    model.fit(X4, Y3, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "new.kilnet")
    info, tensors = _safefile.read(tmp_path / "new.kilnet", "model")
    del info["weights"]
    old = tmp_path / "old.kilnet"
    old.write_bytes(_safefile.encode("model", info, tensors))
    loaded = load_model(old)
    assert _same(loaded.get_weights(), model.get_weights())
    assert _same(_arrays(loaded.predict(X4, verbose=0)), _arrays(model.predict(X4, verbose=0)))
    weights = {n: a for n, a in tensors.items() if n.split("/")[0] in ("params", "state")}
    old_weights = tmp_path / "old_weights.kilnet"
    old_weights.write_bytes(_safefile.encode("weights", {"model": model.get_config()}, weights))
    renamed = kilnet.Sequential([layers.Dense(8, activation="relu", input_shape=(4,), name="a"),
                                 layers.Dropout(0.2, name="b"),
                                 layers.BatchNormalization(name="c"),
                                 layers.Dense(3, activation="softmax", name="d")])
    renamed.load_weights(old_weights)   # other names: the previous version's layer order
    assert _same(renamed.get_weights(), model.get_weights())


# -- refusals --------------------------------------------------------------------------------------
def _marker_model():
    inputs = kilnet.Input(shape=(4,))
    x = Marker(name="marker")(inputs)
    return kilnet.Model(inputs, layers.Dense(2, name="dense")(x))


@pytest.mark.parametrize("name", ["os.system", "TFSMLayer", "builtins.eval", "Unregistered",
                                  "GraphTest>Unregistered", "kilnet.layers.Dense"])
def test_unregistered_classes_are_refused_before_anything_runs(tmp_path, name):
    model = _marker_model()
    model.build(seed=0)
    model.save(tmp_path / "m.kilnet")
    info, tensors = _safefile.read(tmp_path / "m.kilnet", "model")
    layer = info["model"]["config"]["layers"][-1]
    assert layer["name"] == "dense"
    layer["class_name"] = name
    layer["config"] = {"name": "dense", "command": "touch PWNED"}
    crafted = tmp_path / "crafted.kilnet"
    crafted.write_bytes(_safefile.encode("model", info, tensors))
    MADE.clear()
    with pytest.raises(ModelFileError, match="register_serializable") as error:
        load_model(crafted)
    assert repr(name)[:20] in str(error.value) and str(crafted) in str(error.value)
    assert MADE == []   # not even the registered Marker listed before it was created


def test_a_hostile_configuration_cannot_make_loading_allocate(saved, tmp_path):
    info, tensors = _safefile.read(saved["nested_autoencoder"][1], "model")
    decoder = info["model"]["config"]["layers"][2]["config"]
    assert decoder["layers"][1]["name"] == "reconstruction"
    decoder["layers"][1]["config"]["units"] = 10**9   # 4 GB per input feature, if built
    crafted = tmp_path / "huge.kilnet"
    crafted.write_bytes(_safefile.encode("model", info, tensors))
    with pytest.raises(ModelFileError, match="'decoder/reconstruction' .*does not fit its arr"):
        load_model(crafted)
    # Without arrays the model was never built: it stays unbuilt (compiled) until it meets data.
    info = dict(info, training=None, weights=[])
    crafted.write_bytes(_safefile.encode("model", info, {}))
    loaded = load_model(crafted)
    assert not loaded.built and loaded.compiled is not None


def test_custom_objects_allow_an_unregistered_class(tmp_path):
    inputs = kilnet.Input(shape=(4,))
    model = kilnet.Model(inputs, Unregistered(name="u")(layers.Dense(2)(inputs)))
    model.build(seed=0)
    model.save(tmp_path / "u.kilnet")
    MADE.clear()
    with pytest.raises(ModelFileError, match="'Unregistered'"):
        load_model(tmp_path / "u.kilnet")
    assert MADE == []
    loaded = load_model(tmp_path / "u.kilnet", custom_objects={"Unregistered": Unregistered})
    assert MADE == ["Unregistered"] and isinstance(loaded.get_layer("u"), Unregistered)
    assert _same(loaded.get_weights(), model.get_weights())


def test_a_subclassed_model_without_get_config_is_saved_with_its_arguments(tmp_path):
    class Bare(kilnet.Model):
        def __init__(self, units, **kwargs):   # **kwargs: the config's name, trainable, dtype
            super().__init__(**kwargs)
            self.dense = layers.Dense(units)

        def call(self, inputs):
            return self.dense(inputs)

    model = Bare(2)
    model.build((3,), seed=0)
    model.save(tmp_path / "bare.kilnet")   # Keras's automatic config: {"units": 2, ...}
    loaded = load_model(tmp_path / "bare.kilnet", custom_objects={"Bare": Bare})
    assert loaded.get_config()["units"] == 2
    assert _same(loaded.get_weights(), model.get_weights())
    model.save_weights(tmp_path / "bare_weights.kilnet")   # weights need no configuration
    other = Bare(2)
    other.load_weights(tmp_path / "bare_weights.kilnet")
    assert _same(other.get_weights(), model.get_weights())


def _graph_json(model) -> dict:
    return json.loads(model.to_json())


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"].update(
        keras_history=["nowhere", 0, 0]), "does not have"),
    (lambda s: s["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"].update(
        keras_history=["dense", 1, 0]), "cannot be ordered|does not have"),
    (lambda s: s["config"]["layers"][1]["inbound_nodes"][0]["args"][0]["config"].update(
        shape=[None, 7]), "shape"),
    (lambda s: s["config"].update(input_layers=["dense", 0, 0]), "not an InputLayer"),
    (lambda s: s["config"].update(output_layers=["dense", 0, 5]), "output 5"),
    (lambda s: s["config"]["layers"][1]["config"].update(name="other"), "is named 'other'"),
    (lambda s: s["config"].update(extra=1), "keys"),
    (lambda s: s.update(class_name="Sequential"), "model configuration"),
])
def test_malformed_graphs_are_refused(edit, match):
    inputs = kilnet.Input(shape=(4,))
    spec = _graph_json(kilnet.Model(inputs, layers.Dense(2, name="dense")(inputs)))
    edit(spec)
    with pytest.raises(ModelFileError, match=match):
        model_from_json(json.dumps(spec))


def test_a_cycle_is_refused():
    inputs = kilnet.Input(shape=(4,))
    a = layers.Dense(4, name="a")
    spec = _graph_json(kilnet.Model(inputs, layers.Dense(4, name="b")(a(inputs))))
    layer_a = spec["config"]["layers"][1]
    layer_a["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["b", 0, 0]
    with pytest.raises(ModelFileError, match="cannot be ordered"):
        model_from_json(json.dumps(spec))


def test_deep_and_huge_configurations_are_refused(monkeypatch):
    deep = {"class_name": "Dense", "config": {"units": 2, "name": "d"}}
    for _ in range(80):
        deep = {"class_name": "Sequential", "config": {"name": "s", "layers": [deep]}}
    with pytest.raises(ModelFileError, match="nested more than"):
        model_from_json(json.dumps(deep))
    very_deep = '{"class_name": "Functional", "config": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(ModelFileError, match="nested too deeply|not valid JSON"):
        model_from_json(very_deep)
    monkeypatch.setattr(_config, "MAX_VALUES", 1000)
    huge = {"class_name": "Dense", "config": {"units": 2, "pad": list(range(2000))}}
    with pytest.raises(ModelFileError, match="more than 1,000 values"):
        model_from_json(json.dumps(huge))


def test_registry_names():
    assert kilnet.saving.get_registered_name(Scale) == "GraphTest>Scale"
    assert kilnet.saving.get_registered_name(Scale(1.0)) == "GraphTest>Scale"
    assert kilnet.saving.get_registered_object("GraphTest>TwoDense") is TwoDense
    assert kilnet.saving.get_registered_object("TwoDense") is None
    assert kilnet.saving.get_registered_object("X", custom_objects={"X": Scale}) is Scale
    assert kilnet.saving.get_registered_name(Unregistered) == "Unregistered"
    with pytest.raises(ValueError, match="without '>'"):
        kilnet.saving.register_serializable(package="a>b")


@pytest.mark.parametrize("module", [_config, kilnet.saving])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, verbose=False)
    assert result.attempted > 0 and result.failed == 0
