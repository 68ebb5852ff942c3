"""get_build_config / build_from_config, Keras's way for a layer to keep what its build needs
beyond the input shape: kilnet's default answers as Keras's, and a layer of yours that keeps
a size found after construction (by an adapt-like step) is rebuilt at that size when its
model is loaded from a .kilnet file, from its config, and from a Keras 3 .keras file."""

import json
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _table_class(lib):
    """A layer whose table size is set after construction, not an argument (not in
    get_config): only its build config tells a loader the size."""
    class Table(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.size = 2

        def adapt(self, size):
            self.size = size

        def build(self, input_shape):
            self.table = self.add_weight(shape=(self.size, input_shape[-1]), name="table",
                                         initializer="glorot_uniform")

        def call(self, x):
            return lib.ops.matmul(x, lib.ops.transpose(self.table))

        def get_build_config(self):
            return {**super().get_build_config(), "size": self.size}

        def build_from_config(self, config):
            self.size = config["size"]
            self.build(config["input_shape"])

    return lib.saving.register_keras_serializable(package=f"Tables{lib.__name__}")(Table)


def _model(lib, size=5):
    table = _table_class(lib)()
    table.adapt(size)
    inputs = lib.Input((3,))
    return lib.Model(inputs, table(inputs))


X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")


def test_the_default_build_config_is_keras_s():
    for shape in [(None, 3), (None, 6, 2)]:
        mine, theirs = kilnet.layers.Dense(2), keras.layers.Dense(2)
        assert mine.get_build_config() is None and theirs.get_build_config() is None
        mine.build(shape)
        theirs.build(shape)
        assert mine.get_build_config() == theirs.get_build_config()
        again = kilnet.layers.Dense(2)
        again.build_from_config(json.loads(json.dumps(mine.get_build_config())))
        assert again.kernel.shape == mine.kernel.shape


def test_a_layer_keeping_its_own_build_config_loads_at_its_size(tmp_path):
    model = _model(kilnet)
    assert model.layers[1].get_build_config() == {"input_shape": (None, 3), "size": 5}
    model.save(tmp_path / "t.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "t.kilnet")
    assert loaded.layers[1].size == 5 and loaded.layers[1].table.shape == (5, 3)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), model.predict(X, verbose=0))
    again = kilnet.Model.from_config(json.loads(json.dumps(model.get_config())))
    assert again.layers[1].table.shape == (5, 3)
    entry = kilnet.saving.serialize_keras_object(model.layers[1])
    assert entry["build_config"]["size"] == 5
    assert kilnet.saving.deserialize_keras_object(entry).table.shape == (5, 3)


def test_a_keras_file_with_such_a_layer_loads_with_keras_s_numbers(tmp_path):
    theirs = _model(keras, size=4)
    theirs.save(tmp_path / "t.keras")
    cls = _table_class(kilnet)
    loaded = kilnet.models.load_model(tmp_path / "t.keras",
                                      custom_objects={"Table": cls})
    assert loaded.layers[1].size == 4
    np.testing.assert_allclose(loaded.predict(X, verbose=0),
                               theirs.predict(X, verbose=0), rtol=1e-6, atol=1e-6)


def test_the_shape_you_build_with_is_the_build_config_as_keras_s():
    """The saving guide builds its layer with layer.build((8,)): Keras keeps that shape."""
    configs = {}
    for lib in (keras, kilnet):
        class Projection(lib.layers.Layer):
            def build(self, input_shape):
                self.w = self.add_weight(shape=(input_shape[-1], 4), name="w")

            def call(self, x):
                return lib.ops.matmul(x, self.w)

        layer = Projection()
        layer.build((8,))
        configs[lib] = layer.get_build_config()
        again = Projection()
        again.build_from_config(configs[lib])
        assert [tuple(w.shape) for w in again.weights] == [(8, 4)]
    assert configs[kilnet] == configs[keras] == {"input_shape": (8,)}
