"""serialize_keras_object / deserialize_keras_object (kilnet.saving, kilnet.utils) against
Keras 3's: the entries Keras writes for each kind of object, Keras's entries read back into
kilnet's objects, the serialization guide's layer that holds a sub-layer, and the refusals."""

import json
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference entries are Keras's")

import kilnet  # noqa: E402
from kilnet.saving import deserialize_keras_object, serialize_keras_object  # noqa: E402

K, N = keras, kilnet
# (kilnet object, the same object in Keras)
PAIRS = {
    "initializer": (N.initializers.HeNormal(seed=3), K.initializers.HeNormal(seed=3)),
    "regularizer": (N.regularizers.L1L2(l1=0.1, l2=0.2), K.regularizers.L1L2(l1=0.1, l2=0.2)),
    "constraint": (N.constraints.MaxNorm(3.0), K.constraints.MaxNorm(3.0)),
    "loss": (N.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
             K.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)),
    "metric": (N.metrics.AUC(num_thresholds=50), K.metrics.AUC(num_thresholds=50)),
    "optimizer": (N.optimizers.Adam(learning_rate=0.01, name="adam"),
                  K.optimizers.Adam(learning_rate=0.01, name="adam")),
    "schedule": (N.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9),
                 K.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
    "policy": (N.DTypePolicy("mixed_float16"), K.DTypePolicy("mixed_float16")),
    "activation": (N.activations.relu, K.activations.relu),
    "swish": (N.activations.swish, K.activations.swish),
    "loss function": (N.losses.mean_squared_error, K.losses.mean_squared_error),
    "layer": (N.layers.Dense(3, activation="tanh", name="head"),
              K.layers.Dense(3, activation="tanh", name="head")),
}


@pytest.mark.parametrize("kind", list(PAIRS))
def test_entries_name_what_keras_names(kind):
    mine = serialize_keras_object(PAIRS[kind][0])
    theirs = keras.saving.serialize_keras_object(PAIRS[kind][1])
    for key in ("module", "class_name", "registered_name"):
        assert mine[key] == theirs[key], key
    if isinstance(theirs["config"], dict):   # kilnet's configs hold Keras's keys it uses
        assert set(mine["config"]) <= set(theirs["config"]) | {"activity_regularizer", "dtype"}
        shared = set(mine["config"]) & {"seed", "l1", "l2", "max_value", "delta",
                                         "num_thresholds", "decay_steps", "name", "units",
                                         "from_logits", "label_smoothing"}
        assert {k: mine["config"][k] for k in shared} == {k: theirs["config"][k]
                                                          for k in shared}
    else:
        assert mine["config"] == theirs["config"]


@pytest.mark.parametrize("kind", list(PAIRS))
def test_keras_entries_become_kilnet_objects(kind):
    mine, theirs = PAIRS[kind]
    rebuilt = deserialize_keras_object(keras.saving.serialize_keras_object(theirs))
    if callable(mine) and not hasattr(mine, "get_config"):
        assert rebuilt is mine
        return
    assert type(rebuilt) is type(mine)
    assert serialize_keras_object(rebuilt) == serialize_keras_object(mine)


def test_plain_data_arrays_and_markers_as_keras():
    value = {"sizes": (2, 3), "names": ["a", None], "rate": np.float32(0.5),
             "table": np.arange(4, dtype="int32").reshape(2, 2), "raw": b"bytes",
             "index": slice(1, None, 2), "rest": Ellipsis}
    mine, theirs = serialize_keras_object(value), keras.saving.serialize_keras_object(value)
    assert mine == theirs
    back = deserialize_keras_object(theirs)
    np.testing.assert_array_equal(back.pop("table"), value.pop("table"))
    assert back == value
    assert deserialize_keras_object({"class_name": "__tuple__", "config": {"value": [1, 2]}}) \
        == (1, 2)
    tensor = serialize_keras_object(kilnet.ops.ones((2,), dtype="float32"))
    assert tensor == keras.saving.serialize_keras_object(keras.ops.ones((2,)))
    np.testing.assert_array_equal(deserialize_keras_object(tensor), np.ones(2, "float32"))
    assert deserialize_keras_object("relu") == "relu"   # a bare name stays a name, as Keras


def test_an_array_entry_is_read_as_numbers_of_a_numeric_dtype_only():
    entry = keras.saving.serialize_keras_object(np.array([[True, False]]))
    np.testing.assert_array_equal(deserialize_keras_object(entry), [[True, False]])
    for config, problem in [({"value": [1, 2], "dtype": "object"}, "dtype 'object'"),
                            ({"value": ["1", "2"], "dtype": "float32"}, "numbers only"),
                            ({"value": [1, 2]}, "malformed")]:
        with pytest.raises(ValueError, match=f"deserialize_keras_object: .*{problem}"):
            deserialize_keras_object({"class_name": "__numpy__", "config": config})
    with pytest.raises(ValueError, match="dtypes .* Received: an array of dtype <U1"):
        serialize_keras_object(np.array(["a"]))


def test_a_keras_functional_model_entry_becomes_a_kilnet_model():
    inputs = keras.Input((4,), name="features")
    hidden = keras.layers.Dense(5, activation="relu", name="hidden")(inputs)
    theirs = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden), name="small")
    mine = deserialize_keras_object(keras.saving.serialize_keras_object(theirs))
    assert isinstance(mine, kilnet.Model) and mine.name == "small"
    assert [layer.name for layer in mine.layers] == ["features", "hidden", "out"]
    mine.set_weights([w.numpy() for w in theirs.weights])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    np.testing.assert_allclose(mine.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


@kilnet.saving.register_serializable(package="SerializationGuide")
class Residual(kilnet.layers.Layer):
    """The serialization guide's pattern: a layer that holds a sub-layer and an initializer,
    written with serialize_keras_object and rebuilt with deserialize_keras_object."""

    def __init__(self, inner, scale_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.scale_initializer = kilnet.initializers.get(scale_initializer)

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],),
                                     initializer=self.scale_initializer, name="scale")

    def call(self, inputs):
        return inputs + self.scale * self.inner(inputs)

    def get_config(self):
        return {**super().get_config(), "inner": serialize_keras_object(self.inner),
                "scale_initializer": serialize_keras_object(self.scale_initializer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        inner = deserialize_keras_object(config.pop("inner"))
        scale = deserialize_keras_object(config.pop("scale_initializer"))
        return cls(inner, scale, **config)


def test_a_layer_holding_a_sub_layer_saves_and_loads(tmp_path):
    inputs = kilnet.Input((6,))
    block = Residual(kilnet.layers.Dense(6, activation="tanh", name="inner"),
                     kilnet.initializers.RandomNormal(seed=2), name="block")
    model = kilnet.Model(inputs, kilnet.layers.Dense(1)(block(inputs)))
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(1).normal(size=(16, 6)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, verbose=0)
    entry = serialize_keras_object(block)
    assert entry["registered_name"] == "SerializationGuide>Residual"
    assert entry["config"]["inner"]["class_name"] == "Dense"
    assert entry["config"]["scale_initializer"]["class_name"] == "RandomNormal"
    copy = deserialize_keras_object(entry)
    assert isinstance(copy.inner, kilnet.layers.Dense) and copy.inner.units == 6
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_classes_from_custom_objects_and_the_utils_names():
    class Halve(kilnet.layers.Layer):
        def call(self, inputs):
            return inputs / 2

    entry = {"module": "my.code", "class_name": "Halve", "config": {"name": "h"},
             "registered_name": "Halve"}
    with pytest.raises(ValueError, match="Halve"):
        deserialize_keras_object(entry)
    layer = deserialize_keras_object(entry, custom_objects={"Halve": Halve})
    assert isinstance(layer, Halve) and layer.name == "h"
    assert kilnet.utils.deserialize_keras_object is deserialize_keras_object
    assert kilnet.utils.serialize_keras_object is serialize_keras_object
    assert "serialize_keras_object" in dir(kilnet.utils)
    assert "deserialize_keras_object" in dir(kilnet.saving)


@pytest.mark.parametrize("entry, message", [
    ({"module": "os", "class_name": "system", "config": {}, "registered_name": None},
     "unknown class 'system'"),
    ({"module": "builtins", "class_name": "function", "config": "eval",
      "registered_name": "function"}, "unknown function 'eval'"),
    ({"class_name": "__lambda__", "config": {"value": "abc"}}, "never runs"),
    ({"module": "keras.layers", "class_name": "Lambda", "config": {"function": {}},
      "registered_name": None}, "bytecode"),
])
def test_entries_naming_code_are_refused(entry, message):
    with pytest.raises((ValueError, kilnet.ModelFileError), match=message):
        deserialize_keras_object(entry)


def test_unwritable_objects_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="named function"):
        serialize_keras_object(lambda x: x)

    def unregistered(x):
        return x
    with pytest.raises(ValueError, match="register_serializable"):
        serialize_keras_object(unregistered)
    with pytest.raises(ValueError, match="Received: <object"):
        serialize_keras_object(object())


def test_layers_serialize_and_deserialize_as_keras():
    entry = kilnet.layers.serialize(kilnet.layers.Conv2D(4, 3, name="c"))
    theirs = keras.layers.serialize(keras.layers.Conv2D(4, 3, name="c"))
    assert {k: entry[k] for k in ("module", "class_name", "registered_name")} == {
        k: theirs[k] for k in ("module", "class_name", "registered_name")}
    layer = kilnet.layers.deserialize(theirs)
    assert isinstance(layer, kilnet.layers.Conv2D) and layer.filters == 4
    assert "serialize" in kilnet.layers.__all__
    with pytest.raises(ValueError, match="takes a layer or a model"):
        kilnet.layers.serialize(kilnet.initializers.Zeros())
    with pytest.raises(ValueError, match="takes a layer's entry"):
        kilnet.layers.deserialize(keras.saving.serialize_keras_object(keras.initializers.Zeros()))


def test_a_built_layers_build_config_is_keras_and_builds_it_again():
    ours, theirs = kilnet.layers.Dense(2), keras.layers.Dense(2)
    ours.build((None, 3))
    theirs.build((None, 3))
    theirs_entry = keras.saving.serialize_keras_object(theirs)
    as_json = lambda entry: json.loads(json.dumps(entry["build_config"]))  # noqa: E731
    assert as_json(serialize_keras_object(ours)) == as_json(theirs_entry) == {
        "input_shape": [None, 3]}
    layer = deserialize_keras_object(theirs_entry)   # Keras's entry: batch axis first
    assert layer.built and layer.kernel.shape == (3, 2)
    again = deserialize_keras_object(serialize_keras_object(ours))
    assert again.built and [v.shape for v in again.weights] == [(3, 2), (2,)]


def _layer_returning_objects(lib):
    """The serialization guide's layers whose get_config returns objects as they are (a
    sub-layer, a regularizer), the same class for Keras and kilnet; defined as a script's."""
    class Holder(lib.layers.Layer):
        def __init__(self, first_layer, units=3, kernel_regularizer=None, **kwargs):
            super().__init__(**kwargs)
            self.first_layer, self.units = first_layer, units
            self.kernel_regularizer = kernel_regularizer

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(self.first_layer.units, self.units), name="kernel",
                                          initializer="ones",
                                          regularizer=self.kernel_regularizer)

        def call(self, inputs):
            return lib.ops.matmul(self.first_layer(inputs), self.kernel)

        def get_config(self):
            return {**super().get_config(), "first_layer": self.first_layer,
                    "units": self.units, "kernel_regularizer": self.kernel_regularizer}

        @classmethod
        def from_config(cls, config):
            config = dict(config, first_layer=lib.layers.deserialize(config["first_layer"]))
            return cls(**config)

    Holder.__module__ = "__main__"
    return lib.saving.register_keras_serializable(package=f"Held{lib.__name__}")(Holder)


def test_objects_a_get_config_returns_are_written_as_keras_writes_them(tmp_path):
    entries, models = {}, {}
    for lib in (keras, kilnet):
        holder = _layer_returning_objects(lib)(
            lib.layers.Dense(4, name="first"), units=3, name="holder",
            kernel_regularizer=lib.regularizers.L1L2(l1=0.01, l2=0.02))
        inputs = lib.Input((5,))
        models[lib] = lib.Model(inputs, holder(inputs))
        entries[lib] = json.loads(json.dumps(lib.layers.serialize(holder)))
    mine, theirs = entries[kilnet], entries[keras]
    assert mine["module"] is None and theirs["module"] is None
    for key in ("first_layer", "kernel_regularizer"):
        assert {k: mine["config"][key][k] for k in ("module", "class_name")} == {
            k: theirs["config"][key][k] for k in ("module", "class_name")}
    assert mine["config"]["kernel_regularizer"]["config"] == {"l1": 0.01, "l2": 0.02}
    model = models[kilnet]
    again = kilnet.Model.from_config(json.loads(json.dumps(model.get_config())))
    assert again.layers[1].first_layer.units == 4
    x = np.random.default_rng(0).normal(size=(6, 5)).astype("float32")
    model.save(tmp_path / "h.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "h.kilnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded(x)
    model(x)
    penalty = 0.01 * 12 + 0.02 * 12   # the ones kernel, 4x3
    np.testing.assert_allclose([float(v) for v in loaded.losses], [penalty], rtol=1e-6)
    np.testing.assert_allclose([float(v) for v in model.losses], [penalty], rtol=1e-6)


def _two_layers_of_yours(lib):
    """Two unnamed instances of a registered layer class of yours, and two of Dense, each
    pair made after the library's names were numbered afresh (clear_session)."""
    @lib.saving.register_keras_serializable(package="naming_test")
    class MyDense(lib.layers.Layer):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def call(self, x):
            return x

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    lib.utils.clear_session()
    return [MyDense(), MyDense(4), lib.layers.Dense(2), lib.layers.Dense(3)]


def test_layers_made_on_their_own_are_numbered_as_keras_numbers_them():
    """Keras names the second unnamed layer of a kind "<kind>_1", in its name, its config
    and its serialized entry; kilnet too, for a layer of yours and for its own, until a
    model numbers its layers itself."""
    ours, theirs = _two_layers_of_yours(kilnet), _two_layers_of_yours(keras)
    expected = ["my_dense", "my_dense_1", "dense", "dense_1"]
    assert [layer.name for layer in theirs] == expected
    assert [layer.name for layer in ours] == expected
    assert [layer.get_config()["name"] for layer in ours] == expected
    assert [serialize_keras_object(layer)["config"]["name"] for layer in ours] == [
        keras.saving.serialize_keras_object(layer)["config"]["name"] for layer in theirs]
    model = kilnet.Sequential([kilnet.Input((3,)), ours[3], ours[1]])
    assert [layer.name for layer in model.layers] == ["dense", "my_dense"]   # per model
