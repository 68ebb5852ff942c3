"""A `.weights.h5` file keeps a compiled model's optimizer state, as Keras 3's does: the
`optimizer/vars` group (step count, learning rate, slots in Keras's order) is written by
`save_weights` and restored by `load_weights`, so a kilnet file continues in Keras and a Keras
file in kilnet with the same next step; ModelCheckpoint(save_weights_only=True) goes the same
way. Where there is nothing to restore (an uncompiled model, a file without the group, an
optimizer never run) kilnet does what Keras does: ignore, or warn and keep the state."""

import os
import warnings

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _optimizer_parity import assert_same, data, layers, one_more_step  # noqa: E402
from kilnet.keras_files import keras_optimizer_variables  # noqa: E402

def _named(ns, name):
    """Keras's optimizer name argument, set so that both files name the optimizer alike
    (each library numbers its further default names in a process, "adam_3")."""
    return {"name": name}


OPTIMIZERS = {
    "adam": lambda ns: ns.optimizers.Adam(learning_rate=0.01, **_named(ns, "adam")),
    "adam_amsgrad": lambda ns: ns.optimizers.Adam(learning_rate=0.01, amsgrad=True,
                                                  **_named(ns, "adam")),
    "sgd_momentum": lambda ns: ns.optimizers.SGD(learning_rate=0.05, momentum=0.9,
                                                 **_named(ns, "sgd")),
    "rmsprop_centered": lambda ns: ns.optimizers.RMSprop(learning_rate=0.01, momentum=0.5,
                                                         centered=True, **_named(ns, "rmsprop")),
    "adamw_ema": lambda ns: ns.optimizers.AdamW(learning_rate=0.01, weight_decay=0.01,
                                                use_ema=True, **_named(ns, "adamw")),
}


def _model(ns, optimizer, initial=None):
    """The shared two-layer regression model in `ns` (kilnet or keras), compiled; with the
    weights `initial` where given, so that both libraries train alike."""
    model = ns.Sequential(layers(ns))
    if ns is kilnet:
        model.build(seed=3)
    model.compile(optimizer=optimizer, loss="mse")
    if initial is not None:
        model.set_weights(initial)
    return model


def _listing(path):
    """Every group and dataset of an HDF5 file: (name, attributes, shape, dtype), in order."""
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, item: found.append(
            (name, dict(item.attrs), getattr(item, "shape", None),
             str(getattr(item, "dtype", "")))))
    return found


def _iterations(model):
    return int(np.asarray(model.optimizer.iterations))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_kilnet_weights_file_restores_keras_optimizer(name, tmp_path):
    x, y = data()
    model = _model(kilnet, OPTIMIZERS[name](kilnet))
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the whole state is written
        model.save_weights(tmp_path / "m.weights.h5")
    theirs = _model(keras, OPTIMIZERS[name](keras))
    theirs.optimizer.build(theirs.trainable_variables)   # Keras loads into a built optimizer
    theirs.load_weights(tmp_path / "m.weights.h5")
    assert _iterations(theirs) == 4
    mine = keras_optimizer_variables(model.compiled)
    assert len(theirs.optimizer.variables) == len(mine)
    for keras_variable, kilnet_array in zip(theirs.optimizer.variables, mine):
        np.testing.assert_allclose(np.asarray(keras_variable), kilnet_array, rtol=1e-6,
                                   atol=1e-7)
    assert_same(one_more_step(theirs, x, y), one_more_step(model, x, y))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_keras_weights_file_restores_kilnet_optimizer(name, tmp_path):
    x, y = data()
    theirs = _model(keras, OPTIMIZERS[name](keras))
    theirs.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    theirs.save_weights(tmp_path / "k.weights.h5")
    mine = _model(kilnet, OPTIMIZERS[name](kilnet))
    mine.fit(x[:16], y[:16], batch_size=16, epochs=1, verbose=0)   # a state to load into
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is skipped
        mine.load_weights(tmp_path / "k.weights.h5")
    assert _iterations(mine) == 4
    for kilnet_array, keras_variable in zip(keras_optimizer_variables(mine.compiled),
                                            theirs.optimizer.variables):
        np.testing.assert_allclose(kilnet_array, np.asarray(keras_variable), rtol=1e-6,
                                   atol=1e-7)
    # Keras continues from its own file too (a second fit of one Keras model with use_ema
    # fails in Keras 3.15 on JAX: a donated buffer used twice)
    twin = _model(keras, OPTIMIZERS[name](keras))
    twin.optimizer.build(twin.trainable_variables)
    twin.load_weights(tmp_path / "k.weights.h5")
    assert_same(one_more_step(mine, x, y), one_more_step(twin, x, y))


def _checkpointed_run(ns, tmp_path, initial):
    """keras.io's TokenLearner pattern: AdamW on a schedule, ModelCheckpoint(save_weights_
    only=True, save_best_only=True), an epoch more, then load_weights of the checkpoint.
    Returns the model and (step count, learning rate) after the load."""
    x, y = data(samples=48)
    schedule = ns.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5)
    model = _model(ns, ns.optimizers.AdamW(learning_rate=schedule, weight_decay=0.01,
                                           **_named(ns, "adamw")), initial)
    path = str(tmp_path / f"{ns.__name__}_best.weights.h5")
    checkpoint = ns.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True,
                                              save_weights_only=True)
    model.fit(x[:32], y[:32], validation_data=(x[32:], y[32:]), batch_size=16, epochs=3,
              shuffle=False, callbacks=[checkpoint], verbose=0)
    model.fit(x[:32], y[:32], batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert _iterations(model) == 8
    model.load_weights(path)
    return model, (_iterations(model), float(np.asarray(model.optimizer.learning_rate)))


def test_model_checkpoint_weights_only_restores_step_and_scheduled_rate(tmp_path):
    initial = _model(kilnet, "sgd").get_weights()
    mine, (steps, rate) = _checkpointed_run(kilnet, tmp_path, initial)
    theirs, (keras_steps, keras_rate) = _checkpointed_run(keras, tmp_path, initial)
    assert steps == keras_steps and steps < 8   # the checkpoint's, not the last step's
    assert rate == pytest.approx(keras_rate, rel=1e-6)
    assert_same(mine.get_weights(), theirs.get_weights())


@pytest.mark.parametrize("trained", [True, False])
def test_file_listing_is_keras_listing(trained, tmp_path):
    """Group and dataset names, order, attributes (the `vars` groups' names), shapes and
    dtypes: trained (the whole optimizer state) and never trained (Keras's unbuilt optimizer
    holds its step count and learning rate only)."""
    x, y = data()
    listings = []
    for ns in (kilnet, keras):
        model = ns.Sequential([ns.Input(shape=(5,)), ns.layers.Dense(4, name="dense"),
                               ns.layers.Dropout(0.2, name="dropout"),
                               ns.layers.Dense(1, name="dense_1")], name="sequential")
        model.compile(optimizer=ns.optimizers.Adam(0.01, **_named(ns, "adam")), loss="mse")
        if trained:
            model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        else:
            model.build((None, 5)) if ns is keras else model.build(seed=0)
        path = tmp_path / f"{ns.__name__}.weights.h5"
        model.save_weights(path)
        listings.append(_listing(path))
    assert listings[0] == listings[1]
    names = [entry[0] for entry in listings[0]]
    assert ("optimizer/vars/9" in names) == trained and "optimizer/vars/1" in names


def _load_warnings(model, path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path, **kwargs)
    return [str(w.message) for w in caught]


def _trained_files(tmp_path):
    """A compiled, trained model's weights file (with the optimizer group) and an
    uncompiled one's (without), from each library."""
    x, y = data()
    files = {}
    for ns in (kilnet, keras):
        compiled = _model(ns, ns.optimizers.Adam(0.01, **_named(ns, "adam")))
        compiled.fit(x, y, batch_size=16, epochs=1, verbose=0)
        files[ns.__name__] = tmp_path / f"{ns.__name__}.weights.h5"
        compiled.save_weights(files[ns.__name__])
        plain = ns.Sequential(layers(ns))
        plain.build((None, 5)) if ns is keras else plain.build(seed=1)
        files[ns.__name__ + "_plain"] = tmp_path / f"{ns.__name__}_plain.weights.h5"
        plain.save_weights(files[ns.__name__ + "_plain"])
    return files


def test_where_there_is_nothing_to_restore_kilnet_does_as_keras(tmp_path):
    x, y = data()
    files = _trained_files(tmp_path)
    for ns in (kilnet, keras):
        name = ns.__name__
        # an uncompiled model ignores the file's optimizer group, without a warning
        plain = ns.Sequential(layers(ns))
        plain.build((None, 5)) if ns is keras else plain.build(seed=2)
        assert _load_warnings(plain, files[name]) == []
        # a trained model and a file without the group: a warning, the state is kept
        trained = _model(ns, ns.optimizers.Adam(0.01))
        trained.fit(x, y, batch_size=8, epochs=1, verbose=0)
        told = _load_warnings(trained, files[name + "_plain"])
        assert len(told) == 1 and "optimizer" in told[0], (name, told)
        assert _iterations(trained) == 4
        # a model compiled but never trained: its optimizer has no slots to load into
        fresh = _model(ns, ns.optimizers.Adam(0.01))
        told = _load_warnings(fresh, files[name])
        assert len(told) == 1 and "optimizer" in told[0], (name, told)
        assert _iterations(fresh) == 0
        np.testing.assert_allclose(fresh.get_weights()[0], np.asarray(
            h5py.File(files[name], "r")["layers/dense/vars/0"]))


def test_plain_sgd_restores_before_training_as_keras(tmp_path):
    """Keras's plain SGD holds its step count and learning rate before and after it is
    built, so even a never-trained model takes them from the file."""
    x, y = data()
    results = []
    for ns in (kilnet, keras):
        model = _model(ns, ns.optimizers.SGD(0.1))
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        model.save_weights(tmp_path / f"{ns.__name__}.weights.h5")
        fresh = _model(ns, ns.optimizers.SGD(0.3))
        assert _load_warnings(fresh, tmp_path / f"{ns.__name__}.weights.h5") == []
        results.append((_iterations(fresh), float(np.asarray(fresh.optimizer.learning_rate))))
    assert results[0] == pytest.approx(results[1]) and results[0][0] == 4


def _wider(ns):
    return ns.Sequential([ns.Input(shape=(5,)), ns.layers.Dense(6, activation="tanh"),
                          ns.layers.Dense(1)])


def test_skip_mismatch_skips_an_optimizer_state_of_other_shapes(tmp_path):
    """The file's optimizer has as many variables but of other shapes (a wider layer): with
    skip_mismatch both libraries warn and keep the optimizer; without it kilnet refuses the
    file before setting anything (Keras raises after setting the layers that fit)."""
    x, y = data()
    files = _trained_files(tmp_path)
    for ns in (kilnet, keras):
        model = _wider(ns)
        model.compile(optimizer=ns.optimizers.Adam(0.01), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        told = _load_warnings(model, files[ns.__name__], skip_mismatch=True)
        assert any("optimizer" in message for message in told), (ns.__name__, told)
        assert any("dense" in message for message in told), (ns.__name__, told)
    mine = _wider(kilnet)
    mine.compile(optimizer="adam", loss="mse")
    mine.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = [w.copy() for w in mine.get_weights()]
    with pytest.raises((ValueError, kilnet.errors.ModelFileError)):
        mine.load_weights(files["kilnet"])
    assert_same(mine.get_weights(), before)
    assert _iterations(mine) == 4


def test_hostile_optimizer_dataset_is_refused_before_anything_is_set(tmp_path):
    x, y = data()
    files = _trained_files(tmp_path)
    with h5py.File(files["keras"], "r+") as f:
        del f["optimizer/vars/2"]
        f.create_dataset("optimizer/vars/2", shape=(2**20, 2**20), dtype="float32")
    mine = _model(kilnet, kilnet.optimizers.Adam(0.01))
    mine.fit(x, y, batch_size=8, epochs=1, verbose=0)
    before = [w.copy() for w in mine.get_weights()]
    with pytest.raises(kilnet.errors.ModelFileError, match="optimizer/vars/2"):
        mine.load_weights(files["keras"])
    assert_same(mine.get_weights(), before)
    assert _iterations(mine) == 4


def test_an_optimizer_keras_lacks_is_left_out_with_a_warning(tmp_path):
    import optax

    x, y = data()
    model = kilnet.Sequential(layers(kilnet))
    model.compile(optimizer=optax.adam(0.01), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    with pytest.warns(UserWarning, match="optimizer state is left out"):
        model.save_weights(tmp_path / "m.weights.h5")
    assert "optimizer" not in h5py.File(tmp_path / "m.weights.h5", "r")
    told = _load_warnings(model, _trained_files(tmp_path)["keras"])
    assert len(told) == 1 and "not restored" in told[0]
