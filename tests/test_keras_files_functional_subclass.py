"""A functional or Sequential model class of yours (`class MyModel(keras.Model)` calling
`super().__init__(inputs, outputs)`, a Sequential subclass) that keeps more layers as
attributes (a layer, a metric holding an encoder): Keras's saving walks the graph's `layers`
first, then every attribute, so those layers are in its weights files under their attributes'
names (`extra/vars/0`, `kid/encoder/layers/dense/vars/0`); a graph layer also kept as an
attribute stays under `layers/`. kilnet's `.weights.h5` and `.keras` files hold the same
datasets, and each side loads the other's with equal arrays."""

from __future__ import annotations

import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).random((2, 3)).astype("float32")


def _classes(lib):
    layers = lib.layers
    register = lib.saving.register_keras_serializable(package="kilnet_test_functional_sub")

    class Kid(lib.metrics.Metric):
        def __init__(self, name="kid", **kwargs):
            super().__init__(name=name, **kwargs)
            self.encoder = lib.Sequential([lib.Input((3,)), layers.Rescaling(2.0, name="sc"),
                                           layers.Dense(2, name="enc_dense")], name="enc")

        def update_state(self, x, y, sample_weight=None):
            pass

        def result(self):
            return 0.0

    class Graph(lib.Model):
        def __init__(self, **kwargs):
            inputs = lib.Input((3,), name="in")
            head = layers.Dense(2, name="head")
            super().__init__(inputs, head(inputs), **kwargs)
            self.head = head   # a graph layer: it stays under layers/
            self.extra = layers.Dense(4, name="extra")
            self.extra.build((None, 5))
            self.kid = Kid()

    class Stack(lib.Sequential):
        def __init__(self, **kwargs):
            super().__init__([lib.Input((3,)), layers.Dense(2, name="d")], **kwargs)
            self.extra = layers.Dense(4, name="extra")
            self.extra.build((None, 5))

        def get_config(self):   # its layers are made by __init__, not given (Keras's too)
            return {"name": self.name}

        @classmethod
        def from_config(cls, config):
            return cls(**config)

    return register(Graph), register(Stack)


def _model(lib, which, seed):
    model = _classes(lib)[which]()
    rng = np.random.default_rng(seed)
    for part in _parts(model):
        part.set_weights([rng.random(w.shape).astype("float32") for w in part.get_weights()])
    return model


def _parts(model):
    parts = [model.extra] + [layer for layer in model.layers if layer.weights]
    return parts + ([model.kid.encoder] if hasattr(model, "kid") else [])


def _assert_same_weights(got, expected):
    pairs = list(zip(_parts(got), _parts(expected)))
    assert len(pairs) >= 2
    for mine, theirs in pairs:
        a, b = mine.get_weights(), theirs.get_weights()
        assert len(a) == len(b) > 0
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def _listing(path):
    found = []

    def visit(file):
        file.visititems(lambda name, item: found.append((name, item.shape))
                        if isinstance(item, h5py.Dataset) else None)

    if str(path).endswith(".keras"):
        with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as member:
            with h5py.File(member, "r") as file:
                visit(file)
    else:
        with h5py.File(path, "r") as file:
            visit(file)
    return sorted(found)


@pytest.mark.parametrize("which", [0, 1], ids=["functional", "sequential"])
def test_weights_files_of_a_model_subclass_with_extra_attributes(tmp_path, which):
    keras.utils.clear_session()
    ours, theirs = _model(kilnet, which, seed=1), _model(keras, which, seed=2)
    ours.save_weights(tmp_path / "m.weights.h5")
    theirs.save_weights(tmp_path / "k.weights.h5")
    listing = _listing(tmp_path / "k.weights.h5")
    assert ("extra/vars/0", (5, 4)) in listing
    if which == 0:   # the metric's encoder under its attribute; the graph layer under layers/
        names = [name for name, _ in listing]
        assert "kid/encoder/layers/dense/vars/0" in names
        assert "layers/dense/vars/0" in names and not any(n.startswith("head/") for n in names)
    assert _listing(tmp_path / "m.weights.h5") == listing
    fresh_keras = _classes(keras)[which]()
    fresh_keras.load_weights(tmp_path / "m.weights.h5")
    _assert_same_weights(fresh_keras, ours)
    fresh_kilnet = _classes(kilnet)[which]()
    fresh_kilnet.load_weights(tmp_path / "k.weights.h5")
    _assert_same_weights(fresh_kilnet, theirs)


@pytest.mark.parametrize("which", [0, 1], ids=["functional", "sequential"])
def test_keras_files_of_a_model_subclass_with_extra_attributes(tmp_path, which):
    keras.utils.clear_session()
    ours, theirs = _model(kilnet, which, seed=4), _model(keras, which, seed=5)
    ours.save(tmp_path / "m.keras")
    theirs.save(tmp_path / "k.keras")
    assert _listing(tmp_path / "m.keras") == _listing(tmp_path / "k.keras")
    _assert_same_weights(keras.models.load_model(tmp_path / "m.keras"), ours)
    _assert_same_weights(kilnet.models.load_model(tmp_path / "k.keras"), theirs)


@pytest.mark.parametrize("which", [0, 1], ids=["functional", "sequential"])
def test_kilnet_files_of_a_model_subclass_with_extra_attributes(tmp_path, which):
    ours = _model(kilnet, which, seed=6)
    ours.save(tmp_path / "m.kilnet")
    _assert_same_weights(kilnet.models.load_model(tmp_path / "m.kilnet"), ours)
