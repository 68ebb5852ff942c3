"""Keras files keep the training setup: a compiled kilnet model saved as .keras opens in Keras
compiled as it was (optimizer, loss, metrics) and with its optimizer state, so one more step
in Keras gives the weights one more step in kilnet gives; and the reverse for a model Keras
trained. Checked for SGD with momentum, Adam and the other optimizers whose update kilnet
computes as Keras does."""

import json
import os
import warnings
import zipfile

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _optimizer_parity import assert_same, data, layers, one_more_step  # noqa: E402

OPTIMIZERS = {
    "sgd_momentum": lambda ns: ns.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    "sgd_nesterov": lambda ns: ns.optimizers.SGD(learning_rate=0.05, momentum=0.8,
                                                 nesterov=True),
    "adam": lambda ns: ns.optimizers.Adam(learning_rate=0.01),
    "adamw": lambda ns: ns.optimizers.AdamW(learning_rate=0.01, weight_decay=0.01),
    "rmsprop": lambda ns: ns.optimizers.RMSprop(learning_rate=0.01),
    "adagrad": lambda ns: ns.optimizers.Adagrad(learning_rate=0.05),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_kilnet_trained_model_continues_in_keras(name, tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.build(seed=3)
    model.compile(optimizer=OPTIMIZERS[name](kilnet), loss="mse", metrics=["mae"])
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert type(theirs.optimizer).__name__ == type(model.optimizer).__name__
    assert int(theirs.optimizer.iterations.numpy()) == 4
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_keras_trained_model_continues_in_kilnet(name, tmp_path):
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=OPTIMIZERS[name](keras), loss="mse", metrics=["mae"])
    km.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    km.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert type(mine.optimizer).__name__ == type(km.optimizer).__name__
    assert_same(one_more_step(mine, x, y), one_more_step(km, x, y))


def test_compile_config_keeps_losses_metrics_and_weights(tmp_path):
    inputs = kilnet.Input(shape=(5,), name="x")
    h = kilnet.layers.Dense(4, activation="relu")(inputs)
    reg = kilnet.layers.Dense(1, name="reg")(h)
    cls = kilnet.layers.Dense(3, activation="softmax", name="cls")(h)
    model = kilnet.Model(inputs, [reg, cls])
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.002),
                  loss={"reg": kilnet.losses.Huber(delta=0.5),
                        "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 0.5, "cls": 2.0},
                  metrics={"reg": [kilnet.metrics.MeanAbsoluteError()], "cls": ["accuracy"]},
                  weighted_metrics={"cls": ["accuracy"]})
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        config = json.loads(archive.read("config.json"))["compile_config"]
    assert config["loss"]["reg"]["class_name"] == "Huber"
    assert config["loss"]["reg"]["config"]["delta"] == 0.5
    assert config["loss_weights"] == {"reg": 0.5, "cls": 2.0}
    assert config["weighted_metrics"] == {"cls": ["accuracy"]}
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.optimizer.learning_rate.numpy() == pytest.approx(0.002)
    back = kilnet.models.load_model(tmp_path / "m.keras")
    assert back.compiled.loss_weights == {"reg": 0.5, "cls": 2.0}
    assert back.compiled.loss["reg"].get_config()["delta"] == 0.5
    rng = np.random.default_rng(1)
    xs = rng.normal(size=(16, 5)).astype("float32")
    ys = {"reg": rng.normal(size=(16, 1)).astype("float32"), "cls": rng.integers(0, 3, 16)}
    ours = back.evaluate(xs, ys, verbose=0, return_dict=True)
    keras_logs = theirs.evaluate(xs, ys, verbose=0, return_dict=True)
    assert ours["loss"] == pytest.approx(keras_logs["loss"], rel=1e-5)


def test_nadam_state_travels_and_include_optimizer_false_drops_it(tmp_path):
    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.compile(optimizer=kilnet.optimizers.Nadam(0.01, beta_1=0.8), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # kilnet's Nadam is Keras's: its state is written
        model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.optimizer.beta_1 == 0.8
    assert int(theirs.optimizer.iterations.numpy()) == 2
    u_product = 0.8 * (1 - 0.5 * 0.96) * 0.8 * (1 - 0.5 * 0.96 ** 2)
    assert float(np.asarray(theirs.optimizer.variables[-1])) == pytest.approx(u_product,
                                                                              rel=1e-6)
    model.save(tmp_path / "plain.keras", include_optimizer=False)
    with zipfile.ZipFile(tmp_path / "plain.keras") as archive:
        assert json.loads(archive.read("config.json"))["compile_config"] == {}   # Keras's "none"


def test_hostile_optimizer_shapes_are_refused_before_reading(tmp_path):
    import h5py
    x, y = data()
    km = keras.Sequential(layers(keras))
    km.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    km.fit(x, y, batch_size=16, epochs=1, verbose=0)
    km.save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    path = tmp_path / "w.h5"
    path.write_bytes(members["model.weights.h5"])
    with h5py.File(path, "r+") as f:
        del f["optimizer/vars/2"]
        f.create_dataset("optimizer/vars/2", shape=(2**20, 2**20), dtype="float32")
    members["model.weights.h5"] = path.read_bytes()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    with pytest.raises(kilnet.errors.ModelFileError, match="optimizer/vars/2"):
        kilnet.models.load_model(tmp_path / "bad.keras")


@pytest.mark.parametrize("flag", [True, False])
def test_fixed_training_flag_is_refused_on_export(flag, tmp_path):
    inputs = kilnet.Input(shape=(3,))
    hidden = kilnet.layers.Dropout(0.5, name="drop")(inputs, training=flag)
    model = kilnet.Model(inputs, kilnet.layers.Dense(2)(hidden))
    model.build(seed=0)
    with pytest.raises(ValueError, match=rf"'drop' is called with training={flag} fixed.*"
                                         r"\.kilnet"):
        model.save(tmp_path / "m.keras")
    assert not os.listdir(tmp_path)
    # the same layer left to the caller's mode is exported, and Keras's predict agrees
    plain_in = kilnet.Input(shape=(3,))
    plain = kilnet.Model(plain_in, kilnet.layers.Dense(2)(
        kilnet.layers.Dropout(0.5)(plain_in)))
    plain.build(seed=0)
    plain.save(tmp_path / "plain.keras")
    x = np.ones((2, 3), "float32")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "plain.keras").predict(
        x, verbose=0), plain.predict(x, verbose=0), rtol=1e-6)


def test_fixed_training_flag_inside_a_nested_model_is_refused(tmp_path):
    inner_in = kilnet.Input(shape=(3,))
    inner = kilnet.Model(inner_in, kilnet.layers.BatchNormalization(name="bn")(
        inner_in, training=False), name="inner")
    outer_in = kilnet.Input(shape=(3,))
    outer = kilnet.Model(outer_in, kilnet.layers.Dense(1)(inner(outer_in)))
    outer.build(seed=0)
    with pytest.raises(ValueError, match="'bn' is called with training=False"):
        outer.save(tmp_path / "m.keras")


def test_a_compiled_keras_model_that_never_trained_loads_without_a_warning(tmp_path):
    """Keras saves only the step count and learning rate of an optimizer that never ran: there
    is no state to restore, and nothing to warn about."""
    import warnings

    theirs = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3)])
    theirs.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    theirs.save(tmp_path / "fresh.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = kilnet.models.load_model(tmp_path / "fresh.keras")
    assert ours.compiled is not None
    assert abs(ours.compiled.learning_rate - 0.01) < 1e-9


def _loss_reads(lib, tmp_path):
    """model.loss before compile, after compile with each form, after save / load_model."""
    inputs = lib.Input(shape=(4,))
    model = lib.Model(inputs, lib.layers.Dense(2, name="out")(inputs))
    reads = [model.loss]
    for loss in ["mse", ["mae"], {"out": "huber"}, lib.losses.mean_squared_error]:
        model.compile(optimizer="adam", loss=loss)
        reads.append(model.loss if not callable(model.loss) else model.loss.__name__)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    model.save(tmp_path / f"{lib.__name__}.keras")
    reads.append(lib.models.load_model(tmp_path / f"{lib.__name__}.keras").loss)
    reads.append(lib.models.load_model(tmp_path / f"{lib.__name__}.keras", compile=False).loss)
    return reads


def test_model_loss_is_what_compile_was_given_as_keras(tmp_path):
    ours = _loss_reads(kilnet, tmp_path)
    assert ours == _loss_reads(keras, tmp_path)
    assert ours == [None, "mse", ["mae"], {"out": "huber"}, "mean_squared_error", "mse", None]
    # files cross: each library's file gives the other 'mse' back
    assert keras.models.load_model(tmp_path / "kilnet.keras").loss == "mse"
    assert kilnet.models.load_model(tmp_path / "keras.keras").loss == "mse"


def test_a_loss_name_keras_does_not_read_is_written_as_its_class(tmp_path):
    for name in kilnet.losses._BY_NAME:   # the exceptions are exactly Keras's unknown names
        try:
            keras.losses.get(name)
            known = True
        except ValueError:
            known = False
        assert known == (name not in kilnet.losses.NOT_KERAS_NAMES), name
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="huber_loss")
    model.save(tmp_path / "m.keras")
    assert type(keras.models.load_model(tmp_path / "m.keras").loss).__name__ == "Huber"
