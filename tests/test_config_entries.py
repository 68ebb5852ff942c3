"""Initializers, regularizers and constraints in configs, as Keras 3 has them: kilnet's layers
hold Initializer objects (`Dense(2).kernel_initializer` is a GlorotUniform), their get_config
and `initializers` / `regularizers` / `constraints.serialize` give Keras's four-key entries
{"module", "class_name", "config", "registered_name"}, and a loss's config has Keras's keys.
Each is compared with Keras itself; older two-key entries are still read."""

import json
import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

SUFFIXES = ("_initializer", "_regularizer", "_constraint")


def _layers(lib):
    """(name, layer) pairs with initializers, regularizers and constraints set, made alike
    from `lib` (keras or kilnet)."""
    ini, reg, con, L = lib.initializers, lib.regularizers, lib.constraints, lib.layers
    return [
        ("Dense", L.Dense(3, kernel_initializer="he_normal",
                          bias_initializer=ini.Constant(0.1),
                          kernel_regularizer=reg.L2(0.01), bias_regularizer="l1",
                          activity_regularizer=reg.L1L2(0.01, 0.02),
                          kernel_constraint=con.MaxNorm(2.0), bias_constraint="non_neg")),
        ("DenseDefaults", L.Dense(2)),
        ("Conv1D", L.Conv1D(2, 3, kernel_initializer=ini.RandomNormal(stddev=0.02, seed=3),
                            kernel_regularizer="l2")),
        ("Conv2D", L.Conv2D(2, 3, bias_initializer="ones",
                            kernel_constraint=con.UnitNorm(axis=0))),
        ("Conv3D", L.Conv3D(2, 2, kernel_initializer="lecun_uniform")),
        ("Conv2DTranspose", L.Conv2DTranspose(2, 3, kernel_initializer="glorot_normal",
                                              bias_regularizer=reg.L2(0.1))),
        ("SeparableConv2D", L.SeparableConv2D(
            3, 2, depthwise_initializer="he_uniform",
            pointwise_initializer=ini.TruncatedNormal(stddev=0.1),
            depthwise_regularizer="l2", pointwise_constraint="unit_norm")),
        ("DepthwiseConv2D", L.DepthwiseConv2D(
            3, depthwise_initializer="ones", depthwise_constraint=con.MinMaxNorm(0.1, 1.0))),
        ("Embedding", L.Embedding(7, 3, embeddings_regularizer=reg.L1(0.001),
                                  embeddings_constraint="max_norm")),
        ("LSTM", L.LSTM(2, kernel_initializer=ini.VarianceScaling(2.0, "fan_out", "uniform"),
                        recurrent_initializer=ini.Orthogonal(gain=0.5),
                        recurrent_regularizer=reg.L2(0.01), bias_constraint="non_neg")),
        ("GRU", L.GRU(2, bias_initializer="random_uniform")),
        ("SimpleRNN", L.SimpleRNN(2, kernel_initializer="zeros",
                                  kernel_regularizer=reg.OrthogonalRegularizer(0.1))),
        ("ConvLSTM2D", L.ConvLSTM2D(2, 2, kernel_initializer="he_normal")),
        ("BatchNormalization", L.BatchNormalization(beta_regularizer="l2",
                                                    gamma_constraint="non_neg",
                                                    moving_variance_initializer="he_normal")),
        ("LayerNormalization", L.LayerNormalization(gamma_initializer=ini.Constant(2.0),
                                                    beta_regularizer=reg.L2(0.1))),
        ("MultiHeadAttention", L.MultiHeadAttention(
            num_heads=2, key_dim=2, kernel_initializer="he_normal",
            kernel_regularizer=reg.L2(0.01), bias_constraint="non_neg")),
        ("EinsumDense", L.EinsumDense("ab,bc->ac", output_shape=3, bias_axes="c",
                                      kernel_initializer="orthogonal",
                                      kernel_regularizer="l1")),
        ("PReLU", L.PReLU(alpha_initializer="ones", alpha_regularizer="l2",
                          alpha_constraint="non_neg")),
    ]


NAMES = [name for name, _ in _layers(kilnet)]


def _entries(config):
    return {key: value for key, value in config.items() if key.endswith(SUFFIXES)}


def _pair(name):
    ours = dict(_layers(kilnet))[name]
    theirs = dict(_layers(keras))[name]
    return ours, theirs


@pytest.mark.parametrize("name", NAMES)
def test_layer_config_entries_equal_keras(name):
    ours, theirs = _pair(name)
    mine, keras_entries = _entries(ours.get_config()), _entries(theirs.get_config())
    # kilnet's base Layer writes activity_regularizer only when one is set
    # and Keras's Dense and a few others write it only when one is set
    missing = {key for key in set(keras_entries) - set(mine)
               if key != "activity_regularizer" or keras_entries[key] is not None}
    assert missing == set()
    if "activity_regularizer" not in keras_entries:
        assert mine.pop("activity_regularizer", None) is None
    # (Keras keeps a regularizer's factor as a float32 tensor: 0.01 reads 0.009999999776...)
    assert _approx(mine) == {key: keras_entries[key] for key in mine}
    # the config comes back equal, from kilnet's config and from Keras's
    again = type(ours).from_config(ours.get_config())
    assert again.get_config() == ours.get_config()
    keras_config = {**ours.get_config(), **{key: keras_entries[key] for key in mine}}
    from_keras = type(ours).from_config(json.loads(json.dumps(keras_config)))
    assert _entries(from_keras.get_config()) == {**_entries(ours.get_config()),
                                                 **{key: keras_entries[key] for key in mine}}


@pytest.mark.parametrize("name", NAMES)
def test_layers_hold_initializer_objects(name):
    ours, theirs = _pair(name)
    keys = [key for key in ours.get_config() if key.endswith("_initializer")]
    for key in keys:
        held = getattr(ours, key)
        assert isinstance(held, kilnet.initializers.Initializer), key
        keras_held = getattr(theirs, key, None) or getattr(theirs, "_" + key)
        assert type(held).__name__ == type(keras_held).__name__, key
        shape = (3, 3, 4) if name == "LSTM" and key == "recurrent_initializer" else (3, 4)
        values = np.asarray(held(shape))
        assert values.shape == shape and np.isfinite(values).all()


def test_the_reset_weights_recipe_works():
    # keras.io's recipe: layer.kernel.assign(layer.kernel_initializer(layer.kernel.shape))
    for layer, weight, initializer in (
            (kilnet.layers.Dense(64), "kernel", "kernel_initializer"),
            (kilnet.layers.Conv2D(8, 3), "kernel", "kernel_initializer"),
            (kilnet.layers.Embedding(50, 8), "embeddings", "embeddings_initializer")):
        layer.build((None, 5, 5, 3) if isinstance(layer, kilnet.layers.Conv2D) else (None, 16))
        variable = getattr(layer, weight)
        before = variable.numpy().copy()
        variable.assign(getattr(layer, initializer)(variable.shape))
        after = variable.numpy()
        assert after.shape == before.shape and np.isfinite(after).all()
        assert not np.array_equal(after, before)
    dense = kilnet.layers.Dense(4)
    dense.build((None, 3))
    dense.bias.assign(dense.bias_initializer(dense.bias.shape) + 1.0)
    np.testing.assert_array_equal(dense.bias.numpy(), 1.0)


def test_a_layer_of_yours_keeps_what_it_stores():
    class Scaled(kilnet.layers.Layer):
        config_keys = ("kernel_initializer",)

        def __init__(self, kernel_initializer="ones", **kwargs):
            super().__init__(**kwargs)
            self.kernel_initializer = kernel_initializer

    assert Scaled().kernel_initializer == "ones"
    assert Scaled().get_config()["kernel_initializer"] == "ones"
    held = Scaled(kilnet.initializers.Constant(3.0)).get_config()["kernel_initializer"]
    assert held == keras.initializers.serialize(keras.initializers.Constant(3.0))


def _initializer_cases(lib):
    ini = lib.initializers
    return [ini.GlorotUniform(), ini.GlorotNormal(seed=2), ini.HeNormal(seed=1),
            ini.HeUniform(), ini.LecunNormal(), ini.LecunUniform(),
            ini.RandomNormal(stddev=0.02), ini.TruncatedNormal(mean=1.0, seed=4),
            ini.RandomUniform(-1.0, 1.0), ini.Constant(0.5), ini.Zeros(), ini.Ones(),
            ini.Orthogonal(gain=2.0, seed=3), ini.VarianceScaling(2.0, "fan_out", "uniform")]


def _regularizer_cases(lib):
    reg = lib.regularizers
    return [reg.L1(0.1), reg.L2(0.2), reg.L1L2(0.1, 0.2),
            reg.OrthogonalRegularizer(0.1, "columns")]


def _constraint_cases(lib):
    con = lib.constraints
    return [con.MaxNorm(3.0, axis=1), con.NonNeg(), con.UnitNorm(axis=1),
            con.MinMaxNorm(0.1, 2.0, rate=0.5, axis=0)]


@pytest.mark.parametrize("kind, cases", [("initializers", _initializer_cases),
                                         ("regularizers", _regularizer_cases),
                                         ("constraints", _constraint_cases)])
def test_serialize_equals_keras(kind, cases):
    ours_module, theirs_module = getattr(kilnet, kind), getattr(keras, kind)
    for ours, theirs in zip(cases(kilnet), cases(keras)):
        entry = ours_module.serialize(ours)
        # (Keras keeps a regularizer's factor as a float32 tensor: 0.1 reads 0.10000000149...)
        assert _approx(entry) == theirs_module.serialize(theirs), type(ours).__name__
        assert kilnet.saving.serialize_keras_object(ours) == entry
        assert ours_module.deserialize(entry) == ours
        assert ours_module.get(entry) == ours
        # kilnet's older form and Keras's in-memory one are read alike
        assert ours_module.get({"class_name": entry["class_name"],
                                "config": entry["config"]}) == ours
        assert type(theirs_module.deserialize(json.loads(json.dumps(entry)))) is type(theirs)
    name = {"initializers": "he_normal", "regularizers": "l2", "constraints": "non_neg"}[kind]
    assert ours_module.serialize(name) == theirs_module.serialize(name) == name
    assert ours_module.serialize(None) is theirs_module.serialize(None) is None


@kilnet.saving.register_serializable(package="ConfigEntries")
class Halving(kilnet.regularizers.Regularizer):
    def __init__(self, rate=0.5):
        self.rate = rate

    def __call__(self, x):
        return self.rate * kilnet.ops.sum(kilnet.ops.abs(x))

    def get_config(self):
        return {"rate": self.rate}


@keras.saving.register_keras_serializable(package="ConfigEntries")
class KerasHalving(keras.regularizers.Regularizer):
    def __init__(self, rate=0.5):
        self.rate = rate

    def __call__(self, x):
        return self.rate * keras.ops.sum(keras.ops.abs(x))

    def get_config(self):
        return {"rate": self.rate}


@kilnet.saving.register_serializable(package="ConfigEntries")
class Positive(kilnet.constraints.Constraint):
    def __call__(self, w):
        return kilnet.ops.abs(w)


def test_registered_classes_of_yours():
    entry = kilnet.regularizers.serialize(Halving(0.25))
    theirs = keras.regularizers.serialize(KerasHalving(0.25))
    assert entry == {"module": __name__, "class_name": "Halving", "config": {"rate": 0.25},
                     "registered_name": "ConfigEntries>Halving"}
    assert {k: theirs[k] for k in ("module", "registered_name")} == {
        "module": __name__, "registered_name": "ConfigEntries>KerasHalving"}
    dense = kilnet.layers.Dense(2, kernel_regularizer=Halving(0.25),
                                bias_constraint=Positive())
    config = dense.get_config()
    assert config["kernel_regularizer"] == entry
    assert config["bias_constraint"]["registered_name"] == "ConfigEntries>Positive"
    again = kilnet.layers.Dense.from_config(json.loads(json.dumps(config)))
    assert again.kernel_regularizer == Halving(0.25)
    assert isinstance(again.bias_constraint, Positive)
    assert kilnet.regularizers.get(entry) == Halving(0.25)


def _file_model(lib):
    L, ini, reg, con = lib.layers, lib.initializers, lib.regularizers, lib.constraints
    inputs = lib.Input((5, 3))
    h = L.Conv1D(4, 2, kernel_initializer=ini.HeNormal(seed=1),
                 bias_initializer=ini.Constant(0.1), kernel_regularizer=reg.L2(0.01),
                 kernel_constraint=con.MaxNorm(2.0), name="conv")(inputs)
    h = L.LSTM(3, recurrent_initializer=ini.Orthogonal(gain=0.5),
               bias_regularizer=reg.L1(0.01), bias_constraint="non_neg", name="lstm")(h)
    h = L.LayerNormalization(gamma_initializer="ones", beta_regularizer="l2", name="norm")(h)
    outputs = L.Dense(2, kernel_initializer="glorot_normal",
                      activity_regularizer=reg.L1L2(0.01, 0.02), name="head")(h)
    return lib.Model(inputs, outputs)


def _file_entries(model):
    return {layer.name: _entries(layer.get_config()) for layer in model.layers
            if layer.name in ("conv", "lstm", "norm", "head")}


def _approx(entries):
    """Keras reads the factors it saved back as float32 numbers."""
    if isinstance(entries, dict):
        return {k: _approx(v) for k, v in entries.items()}
    if isinstance(entries, float):
        return pytest.approx(entries, rel=1e-6)
    return entries


def test_keras_files_carry_the_entries_both_ways(tmp_path):
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    ours = _file_model(kilnet)
    ours.build(seed=0)
    ours.save(tmp_path / "ours.keras")
    theirs = keras.models.load_model(tmp_path / "ours.keras")
    mine = _file_entries(ours)
    assert mine["conv"]["kernel_initializer"]["module"] == "keras.initializers"
    assert _file_entries(theirs) == _approx(mine)
    assert _file_entries(_file_model(keras)) == _approx(mine)
    np.testing.assert_allclose(np.asarray(theirs(x)), np.asarray(ours(x)), rtol=1e-5,
                               atol=1e-5)
    reference = _file_model(keras)
    reference.save(tmp_path / "theirs.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = kilnet.models.load_model(tmp_path / "theirs.keras")
    assert _file_entries(loaded) == _approx(_file_entries(reference))
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(reference(x)), rtol=1e-5,
                               atol=1e-5)


def test_kilnet_files_and_older_two_key_configs(tmp_path):
    model = _file_model(kilnet)
    model.build(seed=0)
    model.save(tmp_path / "m.kilnet")
    again = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert _file_entries(again) == _file_entries(model)
    assert _file_entries(again)["conv"]["kernel_regularizer"] == {
        "module": "keras.regularizers", "class_name": "L2", "config": {"l2": 0.01},
        "registered_name": None}
    assert isinstance(again.get_layer("head").kernel_initializer,
                      kilnet.initializers.GlorotNormal)
    assert again.get_config() == model.get_config()
    # what older versions wrote: names, and {"class_name", "config"} without module and
    # registered_name
    config = json.loads(json.dumps(model.get_config()))
    for layer in config["layers"]:
        for key, value in layer["config"].items():
            if key.endswith(SUFFIXES) and isinstance(value, dict):
                layer["config"][key] = {"class_name": value["class_name"],
                                        "config": value["config"]}
    layer = next(layer for layer in config["layers"] if layer["name"] == "head")
    layer["config"]["kernel_initializer"] = "glorot_normal"
    old = kilnet.Model.from_config(config)
    assert _file_entries(old) == _file_entries(model)


def test_loss_configs_have_kerass_keys():
    # Keras's Loss.get_config writes name and reduction (and the class's own arguments),
    # never the dtype; Keras 3.15 leaves out CosineSimilarity's axis and Huber's delta,
    # which kilnet keeps so that its files rebuild the loss given
    keeps = {"CosineSimilarity": {"axis"}, "Huber": {"delta"}}
    for cls_name in sorted(kilnet.losses.LOSS_TYPES):
        ours = getattr(kilnet.losses, cls_name)().get_config()
        theirs = getattr(keras.losses, cls_name)().get_config()
        assert "dtype" not in ours, cls_name
        assert list(ours) == list(theirs) + sorted(keeps.get(cls_name, ())), cls_name  # order too
        assert {k: ours[k] for k in theirs} == theirs, cls_name
    loss = kilnet.losses.MeanSquaredError(dtype="float16")
    assert loss.dtype == "float16"
    assert loss.get_config() == keras.losses.MeanSquaredError(dtype="float16").get_config()
    assert kilnet.losses.serialize(loss) == keras.losses.serialize(
        keras.losses.MeanSquaredError())
