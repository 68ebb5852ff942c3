"""Legacy `.h5` model files written by kilnet (`model.save("m.h5")`, `ModelCheckpoint("best.h5")`)
as Keras 3.15 writes them: Keras opens them (predictions, compile configuration and optimizer
state equal), the layout and configs equal those Keras writes for the same model, and kilnet
opens Keras's and its own with the optimizer state, so training continues the same in either
library."""

import json
import os
import warnings

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="Keras is the reference for its own file format")

import kilnet  # noqa: E402
from kilnet.keras_files import _legacy_export  # noqa: E402


def _sequential(lib):
    return lib.Sequential([
        lib.Input((6, 6, 2)), lib.layers.Conv2D(3, 3, activation="relu"),
        lib.layers.BatchNormalization(), lib.layers.Flatten(),
        lib.layers.Dense(4, activation="tanh"), lib.layers.Dense(2)])


def _functional(lib):
    tokens = lib.Input((5,), dtype="int32", name="tokens")
    extra = lib.Input((3,), name="extra")
    h = lib.layers.Embedding(20, 4)(tokens)
    h = lib.layers.LSTM(3)(h)
    inner = lib.Sequential([lib.Input((6,)), lib.layers.Dense(4, activation="relu"),
                            lib.layers.BatchNormalization()], name="block")
    h = inner(lib.layers.Concatenate()([h, extra]))
    return lib.Model([tokens, extra], lib.layers.Dense(2)(h))


def _data(make, rng):
    if make is _sequential:
        x = rng.normal(size=(16, 6, 6, 2)).astype("float32")
    else:
        x = [rng.integers(0, 20, (16, 5)).astype("int32"),
             rng.normal(size=(16, 3)).astype("float32")]
    return x, rng.normal(size=(16, 2)).astype("float32")


def _compile(model, lib):
    # not loss="mse": Keras 3.15 writes it so and then cannot open its own file ('Could not
    # deserialize keras.metrics.mse'); kilnet writes the same and opens it
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="mean_squared_error",
                  metrics=["mae"])


def _kilnet_trained(make, tmp_path, rng):
    """A kilnet model made from Keras's file of `make`'s model (the same architecture and
    starting weights in both libraries), trained two epochs."""
    reference = make(keras)
    reference.save(tmp_path / "start.keras")
    model = kilnet.models.load_model(tmp_path / "start.keras")
    _compile(model, kilnet)
    x, y = _data(make, rng)
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    return model, x, y


def _keras_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.models.load_model(path)


def _kilnet_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the optimizer state is restored, not warned away
        return kilnet.models.load_model(path)


def _save(model, path):
    with pytest.warns(UserWarning, match="legacy .h5"):
        model.save(path)


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_keras_opens_kilnets_h5(make, tmp_path):
    rng = np.random.default_rng(0)
    model, x, y = _kilnet_trained(make, tmp_path, rng)
    _save(model, tmp_path / "m.h5")
    theirs = _keras_load(tmp_path / "m.h5")
    np.testing.assert_allclose(theirs.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert type(theirs.optimizer).__name__ == "Adam"
    assert int(theirs.optimizer.iterations.numpy()) == 4
    assert float(theirs.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    # Keras 3.15 reads back only the step and the rate of any legacy file (its own included:
    # it builds the optimizer for the model's own variables, none), so the moments are
    # compared with the file Keras writes (test_the_file_is_laid_out_as_keras_writes_it)


def _skeleton(entry):
    """A model config's entries as the legacy format spells them: each layer entry's keys and
    class, nested models' layers too (the layer configs inside are the .keras files' own,
    which Keras opens: tests/test_keras_files.py)."""
    config = entry.get("config", {})
    layers = config.get("layers") if isinstance(config, dict) else None
    return entry["class_name"], sorted(entry), [_skeleton(e) for e in layers or []]


def _names(values):
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def _leaf(name, group):
    """A weight's own name (kernel, moving_mean), an optimizer variable's slot (momentum)."""
    leaf = name.split("/")[-1]
    return leaf.split("_")[-1] if group == "optimizer_weights" else leaf


def _arrays(f, group):
    names = _names(f[group].attrs["weight_names"])
    return names, [np.asarray(f[f"{group}/{n}"]) for n in names]


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_the_file_is_laid_out_as_keras_writes_it(make, tmp_path):
    """The same model trained the same way in both libraries: the two files hold the same
    layout, names and numbers."""
    rng = np.random.default_rng(1)
    model, x, y = _kilnet_trained(make, tmp_path, rng)
    reference = keras.models.load_model(tmp_path / "start.keras")
    _compile(reference, keras)
    reference.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    _save(model, tmp_path / "mine.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference.save(tmp_path / "theirs.h5")
    with h5py.File(tmp_path / "mine.h5") as mine, h5py.File(tmp_path / "theirs.h5") as ref:
        assert sorted(mine.attrs) == sorted(ref.attrs)
        assert _skeleton(json.loads(mine.attrs["model_config"])) == _skeleton(
            json.loads(ref.attrs["model_config"]))
        training, keras_training = (json.loads(f.attrs["training_config"]) for f in (mine, ref))
        assert sorted(training) == sorted(keras_training)
        for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            assert training[key] == keras_training[key]
        assert training["optimizer_config"]["class_name"] == "Adam"
        assert training["optimizer_config"]["config"]["learning_rate"] == keras_training[
            "optimizer_config"]["config"]["learning_rate"]
        layer_names = _names(ref["model_weights"].attrs["layer_names"])
        assert list(mine["model_weights"].attrs["layer_names"]) == layer_names
        for group in [f"model_weights/{n}" for n in layer_names] + ["optimizer_weights"]:
            names, arrays = _arrays(mine, group)
            keras_names, keras_arrays = _arrays(ref, group)
            # the same weights in the same order (their paths' prefixes differ with how the
            # model was made: Keras's reloaded model's are its layers', an LSTM's add its cell)
            assert [_leaf(n, group) for n in names] == [_leaf(n, group) for n in keras_names]
            for a, b in zip(arrays, keras_arrays):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [_sequential, _functional], ids=["sequential", "functional"])
def test_kilnet_reopens_keras_h5_with_its_optimizer_state(make, tmp_path):
    """Keras 3's legacy files list the optimizer's variables in Keras 3's order: kilnet reads
    them so, and a further epoch equals Keras's."""
    rng = np.random.default_rng(2)
    x, y = _data(make, rng)
    theirs = make(keras)
    _compile(theirs, keras)
    theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs.save(tmp_path / "k.h5")
    mine = _kilnet_load(tmp_path / "k.h5")
    theirs.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    mine.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_kilnet_reopens_its_own_h5(tmp_path):
    rng = np.random.default_rng(3)
    model, x, y = _kilnet_trained(_functional, tmp_path, rng)
    _save(model, tmp_path / "m.h5")
    again = _kilnet_load(tmp_path / "m.h5")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    again.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(again.get_weights(), model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loss_and_metric_objects_are_written_as_keras_reads_them(tmp_path):
    files = {}
    for lib in (kilnet, keras):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(4)])
        model.compile(optimizer=lib.optimizers.SGD(0.05, momentum=0.9),
                      loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=[lib.metrics.SparseCategoricalAccuracy(name="acc"), "mae"])
        model.fit(np.ones((4, 3), "float32"), np.zeros((4,), "int32"), verbose=0)
        files[lib] = tmp_path / f"{lib.__name__}.h5"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(files[lib])
    mine, theirs = (json.loads(h5py.File(files[lib]).attrs["training_config"])
                    for lib in (kilnet, keras))
    assert mine["metrics"][1] == theirs["metrics"][1] == "mae"
    for entry, keras_entry in [(mine["loss"], theirs["loss"]),
                               (mine["metrics"][0], theirs["metrics"][0]),
                               (mine["optimizer_config"], theirs["optimizer_config"])]:
        assert sorted(entry) == sorted(keras_entry) == ["class_name", "config"]
        assert entry["class_name"] == keras_entry["class_name"]
    opened = _keras_load(files[kilnet])
    assert type(opened.loss).__name__ == "SparseCategoricalCrossentropy"
    assert opened.loss.get_config()["from_logits"] is True
    assert opened.optimizer.get_config()["momentum"] == 0.9
    assert float(opened.optimizer.learning_rate.numpy()) == pytest.approx(0.05)


def test_model_checkpoint_writes_h5_that_keras_opens(tmp_path):
    rng = np.random.default_rng(4)
    model, x, y = _kilnet_trained(_sequential, tmp_path, rng)
    best = kilnet.callbacks.ModelCheckpoint(str(tmp_path / "best.h5"), save_best_only=True,
                                            monitor="loss")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[best])
    np.testing.assert_allclose(_keras_load(tmp_path / "best.h5").predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-5, atol=1e-5)


def test_a_subclassed_model_is_refused_and_nothing_is_lost(tmp_path):
    class Sub(kilnet.Model):
        def __init__(self):
            super().__init__()
            self.d = kilnet.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub.build((None, 3), seed=0)
    (tmp_path / "m.h5").write_bytes(b"the user's earlier file")
    with pytest.raises(ValueError, match=r"subclassed model.*\.keras"):
        sub.save(tmp_path / "m.h5")
    assert (tmp_path / "m.h5").read_bytes() == b"the user's earlier file"


def test_long_name_lists_are_split_as_keras_splits_them(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    names = [f"layer_with_a_long_name_{i:05d}" for i in range(3000)]
    with h5py.File(tmp_path / "n.h5", "w") as f:
        _legacy_export._names_attribute(f, "layer_names", names)
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
    with h5py.File(tmp_path / "n.h5") as f:
        read = legacy_h5_format.load_attributes_from_hdf5_group(f, "layer_names")
    assert list(read) == names
