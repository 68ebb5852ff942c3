"""Keras 2 functional `.h5` files (tf.keras 2.x / tf_keras): list-form nodes with no shapes,
written here with h5py in the layout of tf_keras/saving/legacy/hdf5_format.py and
tf_keras/engine/functional.py (get_network_config), opened by kilnet, and compared with the
same architecture built in Keras 3 with the same weights (to 1e-5).

The model has two inputs and three outputs, a layer shared by two calls (node index 1), merge
layers (Concatenate, Add, Multiply), a nested Sequential built on an Input (its calls numbered
from 1, as Keras 2 does) whose Dense-BatchNormalization-Dense weights are listed trainable first
as Keras 2's writer does, and a nested functional model called twice."""

import json
import os
import warnings

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference predictions come from keras")

import kilnet  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402

INIT = {"class_name": "GlorotUniform", "config": {"seed": None}}
ZEROS = {"class_name": "Zeros", "config": {}}
ONES = {"class_name": "Ones", "config": {}}


def _input(name, width):
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [], "config": {
        "batch_input_shape": [None, width], "dtype": "float32", "sparse": False,
        "ragged": False, "name": name}}


def _dense(name, units, activation="linear"):
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "dtype": "float32", "units": units,
        "activation": activation, "use_bias": True, "kernel_initializer": INIT,
        "bias_initializer": ZEROS, "kernel_regularizer": None, "bias_regularizer": None,
        "activity_regularizer": None, "kernel_constraint": None, "bias_constraint": None}}


def _batch_norm(name):
    return {"class_name": "BatchNormalization", "config": {
        "name": name, "trainable": True, "dtype": "float32", "axis": [1], "momentum": 0.99,
        "epsilon": 0.001, "center": True, "scale": True, "beta_initializer": ZEROS,
        "gamma_initializer": ONES, "moving_mean_initializer": ZEROS,
        "moving_variance_initializer": ONES, "beta_regularizer": None,
        "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None}}


def _merge(kind, name, **extra):
    return {"class_name": kind, "config": {"name": name, "trainable": True,
                                           "dtype": "float32", **extra}}


def _called(entry, *nodes):
    """A layer entry of a functional config with its calls in Keras 2's list form."""
    return {**entry, "name": entry["config"]["name"],
            "inbound_nodes": [[[name, node, 0, {}] for name, node in call] for call in nodes]}


def _config(frozen_bn=False):
    bn = _batch_norm("block_bn")
    bn["config"]["trainable"] = not frozen_bn
    block = {"class_name": "Sequential", "config": {"name": "block", "layers": [
        {"class_name": "InputLayer", "config": {
            "batch_input_shape": [None, 6], "dtype": "float32", "sparse": False,
            "ragged": False, "name": "block_input"}},
        _dense("block_d1", 5, "relu"), bn, _dense("block_d2", 4)]}}
    encoder = {"class_name": "Functional", "config": {
        "name": "enc", "layers": [_input("enc_in", 4),
                                  _called(_dense("enc_d", 2, "tanh"), [("enc_in", 0)])],
        "input_layers": [["enc_in", 0, 0]], "output_layers": [["enc_d", 0, 0]]}}
    layers = [
        _input("in_a", 4), _input("in_b", 4),
        _called(_dense("shared", 3, "relu"), [("in_a", 0)], [("in_b", 0)]),
        _called({**encoder}, [("in_a", 0)], [("in_b", 0)]),
        _called(_merge("Concatenate", "concat", axis=-1), [("shared", 0), ("shared", 1)]),
        _called(_dense("proj", 4), [("in_a", 0)]),
        _called(block, [("concat", 0)]),
        _called(_merge("Add", "add"), [("block", 1), ("proj", 0)]),
        _called(_merge("Multiply", "mul"), [("enc", 1), ("enc", 2)]),
        _called(_dense("out1", 1), [("add", 0)]),
        _called(_dense("out2", 2, "softmax"), [("shared", 1)]),
    ]
    return {"class_name": "Functional", "config": {
        "name": "model", "layers": layers, "input_layers": [["in_a", 0, 0], ["in_b", 0, 0]],
        "output_layers": [["out1", 0, 0], ["out2", 0, 0], ["mul", 0, 0]]}}


def _weights(rng):
    """{leaf layer: [arrays in the layer's own order]}."""
    def dense(n_in, n_out):
        return [rng.normal(size=(n_in, n_out)).astype("float32"),
                rng.normal(size=(n_out,)).astype("float32")]
    return {"shared": dense(4, 3), "enc_d": dense(4, 2), "proj": dense(4, 4),
            "block_d1": dense(6, 5), "block_d2": dense(5, 4), "out1": dense(4, 1),
            "out2": dense(3, 2),
            "block_bn": [rng.uniform(0.5, 1.5, 5).astype("float32"),
                         rng.normal(size=5).astype("float32"),
                         rng.normal(size=5).astype("float32"),
                         rng.uniform(0.5, 2.0, 5).astype("float32")]}


def _write(path, config, weights, training_config=None, frozen_bn=False):
    """The file tf_keras's save_model_to_hdf5 writes: JSON attributes as UTF-8 bytes, each
    layer's group listing `weight_names` (layer.trainable_weights +
    layer.non_trainable_weights: a frozen layer's weights all come after the trainable ones)
    and holding datasets at those names."""
    dense = ["kernel:0", "bias:0"]
    groups = {name: [(f"{name}/{w}", a) for w, a in zip(dense, weights[name])]
              for name in ("shared", "proj", "out1", "out2")}
    bn = weights["block_bn"]
    gamma_beta = [("block_bn/gamma:0", bn[0]), ("block_bn/beta:0", bn[1])]
    stats = [("block_bn/moving_mean:0", bn[2]), ("block_bn/moving_variance:0", bn[3])]
    groups["block"] = (
        [(f"block_d1/{w}", a) for w, a in zip(dense, weights["block_d1"])]
        + ([] if frozen_bn else gamma_beta)
        + [(f"block_d2/{w}", a) for w, a in zip(dense, weights["block_d2"])]
        + (gamma_beta if frozen_bn else []) + stats)
    groups["enc"] = [(f"enc_d/{w}", a) for w, a in zip(dense, weights["enc_d"])]
    names = [entry["name"] for entry in config["config"]["layers"]]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        if training_config is not None:
            f.attrs["training_config"] = json.dumps(training_config).encode("utf8")
        root = f.create_group("model_weights")
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.15.0"
        root.attrs["layer_names"] = [n.encode("utf8") for n in names]
        for name in names + ["top_level_model_weights"]:
            group = root.create_group(name)
            listed = groups.get(name, [])
            group.attrs["weight_names"] = np.asarray([w.encode("utf8") for w, _ in listed])
            for weight_name, array in listed:
                group.create_dataset(weight_name, data=array)


def _keras_reference(weights):
    """The same architecture in Keras 3, with the same weights."""
    layers = keras.layers
    a, b = keras.Input((4,), name="in_a"), keras.Input((4,), name="in_b")
    shared = layers.Dense(3, activation="relu", name="shared")
    enc_in = keras.Input((4,), name="enc_in")
    enc = keras.Model(enc_in, layers.Dense(2, activation="tanh", name="enc_d")(enc_in),
                      name="enc")
    block = keras.Sequential([keras.Input((6,)), layers.Dense(5, activation="relu",
                                                              name="block_d1"),
                              layers.BatchNormalization(name="block_bn"),
                              layers.Dense(4, name="block_d2")], name="block")
    sa, sb = shared(a), shared(b)
    added = layers.Add(name="add")([block(layers.Concatenate(name="concat")([sa, sb])),
                                    layers.Dense(4, name="proj")(a)])
    model = keras.Model([a, b], [layers.Dense(1, name="out1")(added),
                                 layers.Dense(2, activation="softmax", name="out2")(sb),
                                 layers.Multiply(name="mul")([enc(a), enc(b)])])
    for name in ("shared", "proj", "out1", "out2"):
        model.get_layer(name).set_weights(weights[name])
    enc.get_layer("enc_d").set_weights(weights["enc_d"])
    for name in ("block_d1", "block_bn", "block_d2"):
        block.get_layer(name).set_weights(weights[name])
    return model


def _data(rng):
    return [rng.normal(size=(8, 4)).astype("float32") for _ in range(2)]


@pytest.mark.parametrize("frozen_bn", [False, True], ids=["trainable", "frozen_bn"])
def test_keras2_functional_file_predicts_as_keras(frozen_bn, tmp_path):
    rng = np.random.default_rng(0)
    weights = _weights(rng)
    _write(tmp_path / "k2.h5", _config(frozen_bn), weights, frozen_bn=frozen_bn)
    mine = kilnet.models.load_model(tmp_path / "k2.h5")
    assert mine.get_layer("block").get_layer("block_bn").trainable is not frozen_bn
    x = _data(rng)
    want = _keras_reference(weights).predict(x, verbose=0)
    got = mine.predict(x, verbose=0)
    assert len(got) == 3
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # the shared layer is one layer with one set of weights
    assert [layer.name for layer in mine.layers].count("shared") == 1
    assert mine.get_layer("block").get_layer("block_bn").get_weights()[3] == pytest.approx(
        weights["block_bn"][3])


def test_keras2_file_compiles_and_trains(tmp_path):
    rng = np.random.default_rng(1)
    training = {"loss": ["mse", "sparse_categorical_crossentropy", "mse"], "metrics": None,
                "weighted_metrics": None, "loss_weights": None,
                "optimizer_config": {"class_name": "Custom>Adam", "config": {
                    "name": "Adam", "weight_decay": None, "clipnorm": None,
                    "global_clipnorm": None, "clipvalue": None, "use_ema": False,
                    "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                    "jit_compile": True, "is_legacy_optimizer": False,
                    "learning_rate": 0.005, "beta_1": 0.9, "beta_2": 0.999,
                    "epsilon": 1e-07, "amsgrad": False}}}
    _write(tmp_path / "k2.h5", _config(), _weights(rng), training)
    mine = kilnet.models.load_model(tmp_path / "k2.h5")
    assert type(mine.optimizer).__name__ == "Adam"
    assert mine.optimizer.learning_rate == pytest.approx(0.005)
    x = _data(rng)
    y = [rng.normal(size=(8, 1)).astype("float32"), rng.integers(0, 2, 8),
         rng.normal(size=(8, 2)).astype("float32")]
    history = mine.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert history["loss"][1] < history["loss"][0]


def _edited(edit):
    config = _config()
    edit(config["config"]["layers"])
    return config


@pytest.mark.parametrize("edit,pattern", [
    (lambda layers: layers[4]["inbound_nodes"][0].__setitem__(0, ["_CONSTANT_VALUE", -1, 3.0,
                                                                  {}]), "constant"),
    (lambda layers: layers[4]["inbound_nodes"][0][0].__setitem__(0, "nowhere"), "'nowhere'"),
    (lambda layers: layers[2]["inbound_nodes"].__setitem__(0, [["out1", 0, 0, {}]]), "cycle"),
    (lambda layers: layers[9]["inbound_nodes"][0][0].__setitem__(1, 5), "call 5"),
    (lambda layers: layers[9].update(class_name="Lambda"), "Lambda"),
    (lambda layers: layers[9].update(class_name="TFOpLambda"), "TFOpLambda"),
    (lambda layers: layers[3]["config"]["layers"][1].update(module="os",
                                                            class_name="system"), "'os'"),
], ids=["constant", "missing layer", "cycle", "missing call", "lambda", "tf op",
        "nested module path"])
def test_malformed_or_hostile_keras2_graphs_are_refused(edit, pattern, tmp_path):
    _write(tmp_path / "bad.h5", _edited(edit), _weights(np.random.default_rng(2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ModelFileError, match=pattern):
            kilnet.models.load_model(tmp_path / "bad.h5")


def _small_file(path, weights, optimizer_config, slots):
    """A Keras 2 functional model (x -> Dense h -> Dense o) with Keras 2's optimizer_weights:
    `slots` is [(weight name, array)] after the iteration count."""
    config = {"class_name": "Functional", "config": {
        "name": "small", "input_layers": [["x", 0, 0]], "output_layers": [["o", 0, 0]],
        "layers": [_input("x", 4), _called(_dense("h", 3, "tanh"), [("x", 0)]),
                   _called(_dense("o", 1), [("h", 0)])]}}
    training = {"loss": "mse", "metrics": None, "weighted_metrics": None,
                "loss_weights": None, "optimizer_config": optimizer_config}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode("utf8")
        f.attrs["training_config"] = json.dumps(training).encode("utf8")
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [b"x", b"h", b"o"]
        root.create_group("x").attrs["weight_names"] = np.asarray([])
        for name in ("h", "o"):
            group = root.create_group(name)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            for w, array in zip(("kernel:0", "bias:0"), weights[name]):
                group.create_dataset(f"{name}/{w}", data=array)
        opt = f.create_group("optimizer_weights")
        legacy = slots[0][0].endswith(("/m:0", "/momentum:0"))   # optimizer_v2's names
        count = f"{optimizer_config['config']['name']}/iter:0" if legacy else "iteration:0"
        listed = [(count, np.int64(5))] + slots
        opt.attrs["weight_names"] = [n.encode() for n, _ in listed]
        for name, array in listed:
            opt.create_dataset(name, data=array)


OPTIMIZER_CASES = {
    "adam": ({"class_name": "Custom>Adam", "config": {
        "name": "Adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999,
        "epsilon": 1e-07, "amsgrad": False, "jit_compile": True,
        "is_legacy_optimizer": False}}, ["m", "v"], "Adam/{slot}/{var}:0", True),
    "adam_legacy": ({"class_name": "Adam", "config": {
        "name": "Adam", "learning_rate": 0.01, "decay": 0.0, "beta_1": 0.9, "beta_2": 0.999,
        "epsilon": 1e-07, "amsgrad": False}}, ["m", "v"], "Adam/{var}/{slot}:0", False),
    "adam_amsgrad": ({"class_name": "Custom>Adam", "config": {
        "name": "Adam", "learning_rate": 0.01, "beta_1": 0.9, "beta_2": 0.999,
        "epsilon": 1e-07, "amsgrad": True, "jit_compile": True,
        "is_legacy_optimizer": False}}, ["m", "v", "vhat"], "Adam/{slot}/{var}:0", False),
    "sgd_momentum": ({"class_name": "Custom>SGD", "config": {
        "name": "SGD", "learning_rate": 0.05, "momentum": 0.9, "nesterov": False,
        "jit_compile": True, "is_legacy_optimizer": False}}, ["m"],
        "SGD/{slot}/{var}:0", True),
    "sgd_legacy": ({"class_name": "SGD", "config": {
        "name": "SGD", "learning_rate": 0.05, "decay": 0.0, "momentum": 0.9,
        "nesterov": False}}, ["momentum"], "SGD/{var}/{slot}:0", True),
}


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_keras2_optimizer_state_continues_as_keras(case, tmp_path):
    optimizer_config, slot_words, pattern, interleaved = OPTIMIZER_CASES[case]
    rng = np.random.default_rng(3)
    weights = {"h": [rng.normal(size=(4, 3)).astype("float32"),
                     rng.normal(size=3).astype("float32")],
               "o": [rng.normal(size=(3, 1)).astype("float32"),
                     rng.normal(size=1).astype("float32")]}
    variables = ["h/kernel", "h/bias", "o/kernel", "o/bias"]
    shapes = [(4, 3), (3,), (3, 1), (1,)]
    state = {(v, s): (rng.uniform(0.01, 0.1, shape) if s in ("v", "vhat") else
                      rng.normal(0, 0.1, shape)).astype("float32")
             for v, shape in zip(variables, shapes) for s in slot_words}
    order = ([(v, s) for v in variables for s in slot_words] if interleaved else
             [(v, s) for s in slot_words for v in variables])
    _small_file(tmp_path / "o.h5", weights, optimizer_config,
                [(pattern.format(slot=s, var=v), state[(v, s)]) for v, s in order])
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the state is restored, nothing left out
        mine = kilnet.models.load_model(tmp_path / "o.h5")
    # Keras 3 given the same weights and optimizer state
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    inputs = keras.Input((4,))
    km = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(3, activation="tanh")(
        inputs)))
    km.set_weights(weights["h"] + weights["o"])
    config = {k: v for k, v in optimizer_config["config"].items()
              if k not in ("jit_compile", "is_legacy_optimizer", "decay")}
    km.compile(optimizer=getattr(keras.optimizers, config.pop("name"))(**config), loss="mse")
    km.optimizer.build(km.trainable_variables)
    km.optimizer.iterations.assign(5)
    # Keras 3 lists momentum and velocity variable by variable, then amsgrad's velocity_hats
    paired = [s for s in slot_words if s != "vhat"]
    keras_slots = [km.optimizer.variables[2 + i * len(paired) + k if s != "vhat" else
                                          2 + 4 * len(paired) + i]
                   for i in range(4) for k, s in enumerate(slot_words)]
    for slot, (v, s) in zip(keras_slots, [(v, s) for v in variables for s in slot_words]):
        slot.assign(state[(v, s)])
    for model in (mine, km):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for got, want in zip(mine.get_weights(), km.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mine.get_weights()[0], weights["h"][0])
