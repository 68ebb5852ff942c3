"""Two add_weight calls under one name, and a call's own `training` default, as Keras 3.

keras.io's DeiT makes its positional embedding a second time under the same name (Keras keeps
both weights apart by position), and its `call(self, inputs, training=True)` returns two
outputs when called without `training` (Keras takes the signature's default). Each test builds
the same thing in Keras (JAX backend) and in kilnet, from the same weights, and compares.
"""

from __future__ import annotations

import numpy as np
import pytest

import kilnet

keras = pytest.importorskip("keras", reason="the reference is Keras itself")


def _two_scales_layer(lib, registered_name):
    """A layer whose two weights are both called "scale", each with its own regularizer."""

    @lib.saving.register_keras_serializable(package="names_test", name=registered_name) \
        if lib is keras else kilnet.saving.register_serializable(
            package="names_test", name=registered_name)
    class TwoScales(lib.layers.Layer):
        def build(self, input_shape):
            self.gain = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                        name="scale", regularizer=lib.regularizers.L2(0.1))
            self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros",
                                         name="scale", regularizer=lib.regularizers.L1(0.5))

        def call(self, x):
            return x * self.gain + self.shift

    return TwoScales


def _model(lib, registered_name):
    layer_class = _two_scales_layer(lib, registered_name)
    return lib.Sequential([lib.Input((3,)), layer_class(name="two"),
                           lib.layers.Dense(1, name="out")], name="seq")


def _models(registered_name="TwoScales"):
    theirs, ours = _model(keras, registered_name), _model(kilnet, registered_name)
    rng = np.random.default_rng(0)
    ours.set_weights([rng.normal(size=w.shape).astype("float32") for w in theirs.weights])
    theirs.set_weights(ours.get_weights())
    return theirs, ours


def _batch():
    rng = np.random.default_rng(1)
    return rng.normal(size=(8, 3)).astype("float32"), rng.normal(size=(8, 1)).astype("float32")


def test_two_weights_of_one_name_are_kept_apart_with_keras_names_and_paths():
    theirs, ours = _models()
    x, _ = _batch()
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights] == [
        "scale", "scale", "kernel", "bias"]
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-6)
    two = ours.get_layer("two")
    assert not np.allclose(two.gain.numpy(), two.shift.numpy())
    # each weight's own regularizer, as Keras's layer.losses
    np.testing.assert_allclose([float(v) for v in ours.losses],
                               [float(v) for v in theirs.losses], rtol=1e-6)


def test_two_weights_of_one_name_train_as_keras():
    theirs, ours = _models()
    x, y = _batch()
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ours.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
    their_losses = [float(theirs.train_on_batch(x, y)) for _ in range(3)]
    our_losses = [float(ours.train_on_batch(x, y)) for _ in range(3)]
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5)
    for mine, reference in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
def test_two_weights_of_one_name_cross_keras_files_both_ways(tmp_path, suffix):
    theirs, ours = _models("TwoScalesFiles")
    x, _ = _batch()
    want = np.asarray(theirs(x))
    for writer, reader_lib in ((ours, keras), (theirs, kilnet)):
        path = str(tmp_path / f"{reader_lib.__name__}{suffix}")
        if suffix == ".keras":
            writer.save(path)
            again = reader_lib.saving.load_model(path)
        else:
            writer.save_weights(path)
            again = _model(reader_lib, "TwoScalesFiles")
            again.set_weights([np.zeros(w.shape, "float32") for w in again.weights])
            again.load_weights(path)
        got = [w.numpy() if hasattr(w, "numpy") else np.asarray(w) for w in again.weights]
        for mine, reference in zip(got, theirs.get_weights()):
            np.testing.assert_array_equal(mine, reference)
        np.testing.assert_allclose(np.asarray(again(x)), want, rtol=1e-6)


def test_two_weights_of_one_name_in_kilnet_files(tmp_path):
    _, ours = _models("TwoScalesKilnet")
    x, _ = _batch()
    ours.save(str(tmp_path / "m.kilnet"))
    again = kilnet.models.load_model(str(tmp_path / "m.kilnet"))
    for mine, reference in zip(again.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(mine, reference)
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(ours(x)), rtol=1e-6)


def _deit_like(lib):
    """keras.io DeiT's pattern: a subclass makes the parent's weight again, same name."""

    class Base(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pos = self.add_weight(shape=(1, 3, 4), initializer="zeros",
                                       name="pos_embedding")
            self.head = lib.layers.Dense(2, name="head")   # Keras numbers unnamed per process

        def call(self, x):
            return self.head(x + self.pos)

    class Again(Base):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pos = self.add_weight(shape=(1, 3, 4), initializer="ones",
                                       name="pos_embedding")

    return Again(name="again")


def test_subclass_making_a_parents_weight_again_builds_and_runs_as_keras():
    theirs, ours = _deit_like(keras), _deit_like(kilnet)
    x = np.random.default_rng(2).normal(size=(2, 3, 4)).astype("float32")
    theirs(x), ours(x)
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-6)


# -- a call's own `training` default ----------------------------------------------------------
def _training_default_classes(lib):
    class Tenfold(lib.layers.Layer):
        def call(self, x, training=True):
            return x * 10 if training else x

    class TwoWhenTraining(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(2)

        def call(self, x, training=True):
            y = self.dense(x)
            return (y, y * 2) if training else y

    class Holder(lib.Model):   # a call without `training`: its inner layer takes its own
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = Tenfold()

        def call(self, x):
            return self.inner(x)

    class Inheriting(lib.Model):   # call(training=True) passes its mode on to inner layers
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dropout = lib.layers.Dropout(0.999, seed=1)

        def call(self, x, training=True):
            return self.dropout(x)

    return Tenfold, TwoWhenTraining, Holder, Inheriting


def _structure(outputs):
    if isinstance(outputs, tuple):
        return ("tuple", [tuple(np.shape(o)) for o in outputs])
    return ("one", tuple(np.shape(outputs)))


def test_eager_calls_take_the_call_signatures_training_default_as_keras():
    x = np.ones((3, 4), "float32")
    results = {}
    for lib in (keras, kilnet):
        tenfold, two, holder, inheriting = _training_default_classes(lib)
        results[lib.__name__] = (
            float(np.asarray(tenfold()(x))[0, 0]),
            float(np.asarray(tenfold()(x, training=False))[0, 0]),
            _structure(two()(x)),
            _structure(two()(x, training=False)),
            float(np.asarray(holder()(x))[0, 0]),
            float(np.asarray(holder()(x, training=False))[0, 0]),
            bool(np.all(np.asarray(inheriting()(x)) == 1.0)),   # dropped, not kept as is
        )
    assert results["kilnet"] == results["keras"]
    assert results["kilnet"][:2] == (10.0, 1.0)
    assert results["kilnet"][2] == ("tuple", [(3, 2), (3, 2)])


def test_symbolic_call_traces_at_the_call_signatures_training_default_as_keras():
    results = {}
    for lib in (keras, kilnet):
        _, two, _, _ = _training_default_classes(lib)
        inputs = lib.Input((4,))
        results[lib.__name__] = (_structure(two()(inputs)),
                                 _structure(two()(inputs, training=False)))
    assert results["kilnet"][0][0] == results["keras"][0][0] == "tuple"
    assert results["kilnet"][1][0] == results["keras"][1][0] == "one"


def test_functional_model_called_eagerly_gives_each_layer_its_call_default_as_keras():
    x = np.ones((2, 4), "float32")
    results = {}
    for lib in (keras, kilnet):
        tenfold, _, _, _ = _training_default_classes(lib)
        inputs = lib.Input((4,))
        model = lib.Model(inputs, tenfold()(inputs))
        results[lib.__name__] = (float(np.asarray(model(x))[0, 0]),
                                 float(np.asarray(model(x, training=False))[0, 0]),
                                 float(np.asarray(model.predict(x, verbose=0))[0, 0]))
    assert results["kilnet"] == results["keras"] == (10.0, 1.0, 1.0)
