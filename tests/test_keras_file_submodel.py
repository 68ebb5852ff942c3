"""A `Model` subclass called as a layer of a functional or Sequential model (keras.io's
deep_neural_decision_forests: a forest model holding tree models, each with a weight made by
`add_weight` in `__init__` and sub-layers in attributes and lists; the "backbone written as a
subclassed Model, head added functionally" pattern), in `.keras` files, against Keras itself:
kilnet writes Keras's entry for it (module, registered_name, build_config, compile_config) and
its weights in Keras's groups and order; Keras opens kilnet's file (in a process of its own,
with the classes defined there) and kilnet opens Keras's, with equal predictions; loading
needs the classes given, as in Keras."""

import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import h5py
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402

# The user's classes, written once for either library (`lib`): run here for kilnet and Keras,
# and in Keras's own process, as a user would define them on each side.
CLASSES = textwrap.dedent("""
    class Tree(lib.Model):
        def __init__(self, leaves=4, **kwargs):
            super().__init__(**kwargs)
            self.leaves = leaves
            self.pi = self.add_weight(shape=(leaves, 3), initializer="random_normal",
                                      name="pi")
            self.decision = lib.layers.Dense(leaves, name="decision")
            self.blocks = [lib.layers.Dense(3, activation="tanh"), lib.layers.Dense(3)]

        def call(self, x):
            mu = lib.activations.softmax(self.decision(x))
            return lib.ops.matmul(mu, self.pi) + self.blocks[1](self.blocks[0](x))

        def get_config(self):
            return {**super().get_config(), "leaves": self.leaves}

    class Forest(lib.Model):
        def __init__(self, trees=2, **kwargs):
            super().__init__(**kwargs)
            self.trees = trees
            self.ensemble = [Tree() for _ in range(trees)]

        def call(self, x):
            out = self.ensemble[0](x)
            for tree in self.ensemble[1:]:
                out = out + tree(x)
            return out / self.trees

        def get_config(self):
            return {**super().get_config(), "trees": self.trees}

    class Backbone(lib.Model):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.d = lib.layers.Dense(3)

        def call(self, x):
            return self.d(x)

    def forest_model(lib):
        inputs = lib.Input((5,))
        hidden = lib.layers.Dense(5, name="features")(inputs)
        return lib.Model(inputs, lib.layers.Dense(1, name="head")(Forest(name="forest")(hidden)))

    def backbone_sequential(lib):
        return lib.Sequential([lib.Input((5,)), Backbone(name="backbone"),
                               lib.layers.Dense(1, name="head")])

    CUSTOM = {"Tree": Tree, "Forest": Forest, "Backbone": Backbone}
    """)

X = np.random.default_rng(0).random((8, 5)).astype("float32")
Y = np.random.default_rng(1).random((8, 1)).astype("float32")


def _classes(lib):
    space = {"lib": lib}
    exec(CLASSES, space)
    return space


def _keras_entry(path, name):
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
    return next(e for e in config["config"]["layers"] if e.get("name") == name)


def _datasets(path):
    """(h5 path, shape) of the weights a .keras file holds, the optimizer's left out."""
    found = []
    with zipfile.ZipFile(path) as archive:
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as file:
            file.visititems(lambda name, item: found.append((name, item.shape))
                            if isinstance(item, h5py.Dataset) else None)
    return sorted(item for item in found if not item[0].startswith("optimizer"))


def _twins(build):
    """The same model in Keras and in kilnet, with Keras's weights in both."""
    theirs = build(_classes(keras))
    mine = build(_classes(kilnet))
    mine.set_weights(theirs.get_weights())
    return theirs, mine


def _forest(space):
    return space["forest_model"](space["lib"])


def _sequential(space):
    return space["backbone_sequential"](space["lib"])


def _compiled(model, lib):
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="mse")
    return model


def test_the_file_holds_kerass_entry_and_weight_layout(tmp_path):
    theirs, mine = _twins(_forest)
    theirs.save(tmp_path / "theirs.keras")
    mine.save(tmp_path / "mine.keras")
    entry, expected = (_keras_entry(tmp_path / f, "forest") for f in ("mine.keras",
                                                                       "theirs.keras"))
    for key in ("module", "class_name", "registered_name", "build_config", "compile_config",
                "name"):
        assert entry[key] == expected[key], key
    assert entry["build_config"] == {"input_shape": [None, 5]}
    assert entry["config"]["trees"] == 2 and entry["config"]["name"] == "forest"
    # the trees' own weights (pi) first, then their attributes' layers, as Keras walks them
    assert _datasets(tmp_path / "mine.keras") == _datasets(tmp_path / "theirs.keras")
    assert ("layers/forest/ensemble/tree_1/vars/0", (4, 3)) in _datasets(tmp_path / "mine.keras")
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)


KERAS_LOADS = textwrap.dedent("""
    import os, sys
    os.environ["KERAS_BACKEND"] = "jax"
    import numpy as np
    import keras
    space = {"lib": keras}
    exec(sys.stdin.read(), space)
    folder = sys.argv[1]
    x = np.load(os.path.join(folder, "x.npy"))
    for name in ("forest", "sequential"):
        model = keras.models.load_model(os.path.join(folder, name + ".keras"),
                                        custom_objects=space["CUSTOM"])
        np.save(os.path.join(folder, name + "_keras.npy"), model.predict(x, verbose=0))
        np.save(os.path.join(folder, name + "_steps.npy"), int(model.optimizer.iterations))
    """)


def test_keras_opens_kilnets_file_in_its_own_process(tmp_path):
    models = {"forest": _forest(_classes(kilnet)),
              "sequential": _sequential(_classes(kilnet))}
    np.save(tmp_path / "x.npy", X)
    for name, model in models.items():
        _compiled(model, kilnet).fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        model.save(tmp_path / f"{name}.keras")
    done = subprocess.run([sys.executable, "-c", KERAS_LOADS, str(tmp_path)], input=CLASSES,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, model in models.items():
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_keras.npy"),
                                   model.predict(X, verbose=0), rtol=1e-5, atol=1e-6)
        assert int(np.load(tmp_path / f"{name}_steps.npy")) == 2   # its optimizer came too


@pytest.mark.parametrize("build", [_forest, _sequential])
def test_kilnet_opens_kerass_file_and_trains_on_as_keras(tmp_path, build):
    theirs = _compiled(build(_classes(keras)), keras)
    theirs.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    theirs.save(tmp_path / "theirs.keras")
    classes = _classes(kilnet)
    mine = kilnet.models.load_model(tmp_path / "theirs.keras", custom_objects=classes["CUSTOM"])
    np.testing.assert_allclose(mine.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert int(mine.optimizer.iterations) == 2
    for model in (mine, theirs):   # the optimizer's moments came with the weights
        model.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_kilnet_reopens_its_file_only_with_the_classes_given(tmp_path):
    classes = _classes(kilnet)
    inputs = kilnet.Input((5,))   # the sweep's model: a class without get_config, **kw
    model = kilnet.Model(inputs, classes["Backbone"](name="forest")(inputs))
    model.save(tmp_path / "m.keras")
    again = kilnet.models.load_model(tmp_path / "m.keras", custom_objects=classes["CUSTOM"])
    assert type(again.get_layer("forest")).__name__ == "Backbone"
    np.testing.assert_array_equal(again.predict(X, verbose=0), model.predict(X, verbose=0))
    with pytest.raises(ModelFileError, match=r"Backbone.*custom_objects"):
        kilnet.models.load_model(tmp_path / "m.keras")


def test_a_legacy_h5_file_refuses_it_naming_keras(tmp_path):
    model = _forest(_classes(kilnet))
    with pytest.raises(ValueError, match=r"layer 'forest' is the subclassed model class "
                                         r"'Forest'.*\.keras"):
        model.save(tmp_path / "m.h5")
    assert os.listdir(tmp_path) == []
