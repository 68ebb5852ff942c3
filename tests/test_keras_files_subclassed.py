"""Subclassed models in Keras 3 `.keras` files, both ways, checked against Keras itself.

Keras's saving walks a subclassed model's attributes in sorted order, its `layers` list
among them: a layer kept in an attribute that sorts before "layers" is saved under that
attribute (`bn/vars/0`, `blocks/dense/vars/0`), the others under `layers/<class>_<n>`, a
nested functional model under its attribute, a custom layer's sub-layers under theirs. A file
Keras writes must open in kilnet with the same predictions and optimizer state, and a file
kilnet writes must open in Keras (the same classes registered on both sides)."""

import json
import os
import zipfile

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).random((6, 5)).astype("float32")
Y = np.random.default_rng(1).random((6, 2)).astype("float32")


def _classes(lib):
    """The same subclassed model written for each library, registered under one name."""
    layers = lib.layers
    register = lib.saving.register_keras_serializable(package="kilnet_test_subclassed")

    class Block(layers.Layer):
        def __init__(self, units=2, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.inner = layers.Dense(units)
            self.norm = layers.LayerNormalization()

        def build(self, shape):
            self.scale = self.add_weight(shape=(self.units,), name="scale",
                                         initializer="ones")

        def call(self, x):
            return self.norm(self.inner(x)) * self.scale

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    class Net(lib.Model):
        def __init__(self, hidden=4, **kwargs):
            super().__init__(**kwargs)
            self.hidden = hidden
            # no bias before batch normalization: its gradient is rounding noise, which Adam
            # would scale up to whole steps
            self.z_dense = layers.Dense(hidden, use_bias=False)
            self.bn = layers.BatchNormalization()
            self.blocks = [layers.Dense(3), Block(3)]
            self.out = layers.Dense(1)
            self._private = layers.Dense(1)
            inputs = lib.Input((1,))
            self.head = lib.Model(inputs, layers.Dense(2)(inputs))

        def call(self, x, training=None):
            # passed on by hand: Keras 3.15 on JAX runs sub-layers in inference mode in fit
            # otherwise (README), and the moving statistics are part of what is compared
            x = self.bn(self.z_dense(x), training=training)
            for block in self.blocks:
                x = block(x)
            return self.head(self.out(x) + self._private(x))

        def get_config(self):
            return {**super().get_config(), "hidden": self.hidden}

    return register(Block), register(Net)


def _trained(lib, weights=None):
    _, net = _classes(lib)
    model = net()
    model(X[:2])
    if weights is not None:
        model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="mse")
    model.fit(X, Y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    return model


def _datasets(path):
    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as member:
        found = []
        with h5py.File(member, "r") as file:
            file.visititems(lambda name, item: found.append(name)
                            if isinstance(item, h5py.Dataset) else None)
    return sorted(found)


def test_a_keras_subclassed_model_opens_in_kilnet_and_trains_on(tmp_path):
    theirs = _trained(keras)
    theirs.save(tmp_path / "k.keras")
    _classes(kilnet)
    mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert type(mine).__name__ == "Net"
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert int(mine.optimizer.iterations) == int(theirs.optimizer.iterations) == 2
    # the optimizer's moments came with it: one more epoch stays with Keras's
    for model in (mine, theirs):
        model.fit(X, Y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_kilnet_subclassed_model_opens_in_keras(tmp_path):
    start = _classes(keras)[1]()
    start(X[:2])
    mine = _trained(kilnet, start.get_weights())
    mine.save(tmp_path / "m.keras")
    theirs_saved = _trained(keras, start.get_weights())
    theirs_saved.save(tmp_path / "k.keras")
    assert _datasets(tmp_path / "m.keras") == _datasets(tmp_path / "k.keras")
    assert "bn/vars/0" in _datasets(tmp_path / "m.keras")   # under the attribute, as Keras
    theirs = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(theirs.predict(X, verbose=0), mine.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    for model in (mine, theirs):
        model.fit(X, Y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _plain_class(lib):
    class Plain(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.d = lib.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    return Plain


def test_an_unregistered_subclassed_model_saves_as_keras_and_an_unbuilt_one_is_refused(
        tmp_path):
    """As Keras: an unregistered class is written under its name and opens with
    custom_objects, in Keras and kilnet; a model with no weights yet is refused."""
    plain = _plain_class(kilnet)()
    plain.build((None, 5), seed=0)
    plain.save(tmp_path / "plain.keras")
    custom = {"Plain": _plain_class(keras)}
    theirs = keras.models.load_model(tmp_path / "plain.keras", custom_objects=custom)
    np.testing.assert_allclose(theirs.predict(X, verbose=0), plain.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    again = kilnet.models.load_model(tmp_path / "plain.keras",
                                     custom_objects={"Plain": _plain_class(kilnet)})
    np.testing.assert_array_equal(again.predict(X, verbose=0), plain.predict(X, verbose=0))
    _, net = _classes(kilnet)
    with pytest.raises(ValueError, match=r"no weights yet"):
        net().save(tmp_path / "unbuilt.keras")
    assert os.listdir(tmp_path) == ["plain.keras"]


def test_a_subclassed_model_config_has_keras_base_keys(tmp_path):
    """Keras's base config of a model class of yours is name, trainable and dtype (the
    policy as Keras serializes it), and its file entry holds the same."""
    configs = {}
    for lib in (kilnet, keras):
        model = _classes(lib)[1](name="net")
        model(X[:2])
        model.save(tmp_path / f"{lib.__name__}.keras")
        with zipfile.ZipFile(tmp_path / f"{lib.__name__}.keras") as archive:
            entry = json.loads(archive.read("config.json"))
        configs[lib.__name__] = (model.get_config(), entry["config"])
    assert configs["kilnet"] == configs["keras"]
    assert list(configs["kilnet"][0]) == ["name", "trainable", "dtype", "hidden"]


def _holder(lib):
    """A model of yours keeping a functional network in an attribute sorting after `layers`
    (keras.io ddim's `self.network`): Keras saves it in its `layers` list, under the snake-cased
    class of a functional model, `functional`."""
    class Holder(lib.Model):
        def __init__(self):
            super().__init__(name="holder")
            inputs = lib.Input((5,), name="x")
            self.network = lib.Model(inputs, lib.layers.Dense(2, name="d")(inputs), name="net")

        def call(self, x):
            return self.network(x)

    model = Holder()
    model(X)
    return model


def _dataset_names(path):
    names = []
    with h5py.File(path, "r") as f:
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
    return sorted(names)


def test_a_functional_network_in_an_attribute_after_layers_has_keras_weights_file_path(
        tmp_path):
    ours, theirs = _holder(kilnet), _holder(keras)
    ours.set_weights([np.arange(10, dtype="float32").reshape(5, 2), np.ones(2, "float32")])
    theirs.set_weights([-np.arange(10, dtype="float32").reshape(5, 2), np.zeros(2, "float32")])
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs.save_weights(tmp_path / "theirs.weights.h5")
    assert _dataset_names(tmp_path / "ours.weights.h5") == _dataset_names(
        tmp_path / "theirs.weights.h5")
    assert "layers/functional/layers/dense/vars/0" in _dataset_names(tmp_path / "ours.weights.h5")

    keras_reads_ours, kilnet_reads_theirs = _holder(keras), _holder(kilnet)
    keras_reads_ours.load_weights(tmp_path / "ours.weights.h5")
    kilnet_reads_theirs.load_weights(tmp_path / "theirs.weights.h5")
    np.testing.assert_allclose(np.asarray(keras_reads_ours(X)), np.asarray(ours(X)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(kilnet_reads_theirs(X)), np.asarray(theirs(X)),
                               rtol=1e-6)
