"""`keras.Variable` as Keras takes it: an initial value or an initializer (keras.io's Swin
Transformer makes `Variable(initializer=index, shape=index.shape, dtype="int",
trainable=False)` in build()), the dtype of its value kept (an int index stays int32)."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

CASES = [
    ("int initializer", dict(initializer=np.array([2, 0, 1]), shape=(3,), dtype="int")),
    ("zeros by name", dict(initializer="zeros", shape=(2, 2))),
    ("Ones object", dict(initializer="Ones", shape=(3,), dtype="float32")),
    ("int value", dict(value=np.array([2, 0, 1], "int32"))),
    ("float list", dict(value=[1.5, 2.5])),
    ("bool value", dict(value=np.array([True, False]))),
]


def _variable(lib, kwargs):
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("initializer"), str) and kwargs["initializer"] == "Ones":
        kwargs["initializer"] = lib.initializers.Ones()
    value = kwargs.pop("value", None)
    return lib.Variable(value, **kwargs) if value is not None else lib.Variable(**kwargs)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_a_variable_gets_keras_value_and_dtype(name, kwargs):
    ours, theirs = _variable(kilnet, kwargs), _variable(keras, kwargs)
    assert str(ours.dtype) == str(theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_array_equal(np.asarray(ours.numpy()), np.asarray(theirs.numpy()))


def _indexed(lib):
    class Permute(lib.layers.Layer):
        def build(self, input_shape):
            index = np.array([2, 0, 1])
            self.index = lib.Variable(initializer=index, shape=index.shape, dtype="int",
                                      trainable=False)

        def call(self, x):
            return lib.ops.take(x, self.index, axis=1)

    inputs = lib.Input((3,))
    return lib.Model(inputs, Permute(name="permute")(inputs))


def test_a_variable_made_in_build_from_an_initializer_works_as_keras():
    x = np.array([[10.0, 20.0, 30.0]], "float32")
    ours, theirs = _indexed(kilnet), _indexed(keras)
    np.testing.assert_array_equal(ours.predict(x, verbose=0), theirs.predict(x, verbose=0))
    # (Keras numbers an unnamed variable per process: compare its layer and dtype)
    assert [(w.path.split("/")[0], str(w.dtype), w.trainable) for w in ours.weights] == [
        (w.path.split("/")[0], str(w.dtype), w.trainable) for w in theirs.weights]


def test_an_initializer_needs_a_shape_and_not_a_value_too():
    with pytest.raises(ValueError, match=r"needs its shape: Variable\(initializer, shape"):
        kilnet.Variable(initializer="zeros")
    with pytest.raises(ValueError, match=r"its initial value or an initializer, not both"):
        kilnet.Variable(np.zeros(2), initializer="zeros", shape=(2,))
