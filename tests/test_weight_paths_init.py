"""Weights a layer or model makes in its __init__ (add_weight with no name) get a path under
the name its model gives it, so several instances of one class do not share a path (keras.io's
deep neural decision forests: 25 trees, each with its unnamed `pi`)."""

import collections

import keras
import numpy as np

import kilnet


def _forest(lib, trees=3):
    class Tree(lib.Model):
        def __init__(self):
            super().__init__()
            self.pi = self.add_weight(initializer="random_normal", shape=[4, 2])
            self.d = lib.layers.Dense(4)

        def call(self, x):
            return lib.ops.matmul(self.d(x), self.pi)

    class Forest(lib.Model):
        def __init__(self):
            super().__init__()
            self.ensemble = [Tree() for _ in range(trees)]

        def call(self, x):
            return sum(t(x) for t in self.ensemble)

    inputs = lib.Input((5,))
    return lib.Model(inputs, Forest()(inputs))


def _init_weight_owners(model):
    """The owner segment of each path ending in an unnamed weight ("tree_1/variable_1")."""
    return [w.path.split("/")[0] for w in model.weights if w.name.startswith("variable")]


def test_unnamed_init_weights_of_several_instances_have_their_own_paths_as_keras():
    kilnet.utils.clear_session()
    ours = _forest(kilnet)
    keras.utils.clear_session()
    theirs = _forest(keras)
    paths = [w.path for w in ours.weights]
    assert [p for p, n in collections.Counter(paths).items() if n > 1] == []
    assert _init_weight_owners(ours) == _init_weight_owners(theirs) == ["tree", "tree_1", "tree_2"]


def test_a_layer_made_on_its_own_takes_its_model_name_in_its_init_weight_paths():
    class Scale(kilnet.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.w = self.add_weight(shape=(3,), initializer="ones")

        def call(self, x):
            return x * self.w

    kilnet.utils.clear_session()
    Scale()                               # the process numbering moves on: "scale_1" next
    loose, named = Scale(), Scale(name="mine")
    assert loose.w.path == "scale_1/variable"
    model = kilnet.Sequential([kilnet.Input((3,)), loose, named])
    assert [w.path for w in model.weights] == ["scale/variable", "mine/variable"]
    np.testing.assert_array_equal(model.predict(np.ones((2, 3), "float32"), verbose=0), 1.0)
