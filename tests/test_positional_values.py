"""Python values after a layer's input, passed positionally, are refused before the call as
Keras 3 refuses them, with the keyword form to write; passed by keyword they run (keras.io's
focal_modulation_network passes `block(x, height, width, channels)` with ints)."""

import numpy as np
import pytest

import kilnet

keras = pytest.importorskip("keras")

X = np.linspace(-1, 1, 2 * 3 * 5 * 2, dtype="float32").reshape(2, 3, 5, 2)


def block_class(lib):
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(4, name="dense")

        def call(self, x, height, width, training=None):
            return lib.ops.reshape(self.dense(x), (-1, height * width * 4))

    return Block


def subclassed_model(lib):
    class Scaled(lib.Model):
        def call(self, x, factor=None):
            return x * (factor or 1)

    return Scaled(name="scaled")


POSITIONAL_CALLS = {
    "ints": lambda lib: block_class(lib)(name="block")(X, 3, 5),
    "a float after a keyword-able int": lambda lib: block_class(lib)(name="block")(X, 3.0, width=5),
    "a bool as training": lambda lib: lib.layers.Dropout(0.5, name="dropout")(X, True),
    "a string": lambda lib: block_class(lib)(name="block")(X, "3", 5),
    "an int in a list": lambda lib: block_class(lib)(name="block")(X, [3], 5),
    "a subclassed model's option": lambda lib: subclassed_model(lib)(X, 2),
    "Sequential's training": lambda lib: lib.Sequential(
        [lib.layers.Dense(2, name="d")], name="seq")(X, True),
}


@pytest.mark.parametrize("case", sorted(POSITIONAL_CALLS))
def test_python_values_given_positionally_are_refused_as_keras_refuses_them(case):
    with pytest.raises(ValueError, match="Only input tensors may be passed as positional"):
        POSITIONAL_CALLS[case](keras)
    with pytest.raises(ValueError, match="takes only tensors as positional arguments") as error:
        POSITIONAL_CALLS[case](kilnet)
    assert "Pass it by keyword" in str(error.value)


def test_the_message_names_the_argument_and_writes_the_keyword_form():
    with pytest.raises(ValueError) as error:
        block_class(kilnet)(name="block")(X, 3, 5)
    message = str(error.value)
    assert "argument 'height' was given the Python value 3 (int)" in message
    assert "block(x, height=3, width=5)" in message


def test_values_by_keyword_run_and_give_keras_numbers():
    ours, theirs = block_class(kilnet)(name="block"), block_class(keras)(name="block")
    ours(X, height=3, width=5)
    theirs(X, height=3, width=5)
    ours.set_weights([np.asarray(w) for w in theirs.get_weights()])
    np.testing.assert_allclose(np.asarray(ours(X, height=3, width=5)),
                               np.asarray(theirs(X, height=3, width=5)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lib", [kilnet, keras], ids=["kilnet", "keras"])
def test_arrays_none_and_numpy_scalars_stay_allowed_positionally(lib):
    class Scale(lib.layers.Layer):
        def call(self, x, factor=None):
            return x * 2 if factor is None else x * factor

    layer = Scale(name="scale")
    for factor, expected in [(None, 2), (np.float32(3), 3), (np.array(4.0, "float32"), 4)]:
        np.testing.assert_allclose(np.asarray(layer(X, factor)), X * expected, rtol=1e-6)


def test_a_functional_model_refuses_training_given_positionally():
    """Keras's functional model lets the value through and fails in its call ("got multiple
    values for argument 'training'"); kilnet ran it in inference, the True unseen."""
    def model(lib):
        inputs = lib.Input((3, 5, 2), name="x")
        return lib.Model(inputs, lib.layers.Dropout(0.99, name="drop")(inputs), name="fm")

    with pytest.raises(TypeError, match="multiple values for argument 'training'"):
        model(keras)(X, True)
    with pytest.raises(ValueError, match="Layer .fm. takes only tensors as positional arguments"):
        model(kilnet)(X, True)
    assert not np.allclose(np.asarray(model(kilnet)(X, training=True)), X)


def dropout_model(lib, kind):
    """A functional model, a Sequential and a subclassed model, each only a Dropout."""
    if kind == "functional":
        inputs = lib.Input((3, 5, 2), name="x")
        return lib.Model(inputs, lib.layers.Dropout(0.99, name="drop")(inputs), name="fm")
    if kind == "sequential":
        return lib.Sequential([lib.Input((3, 5, 2)), lib.layers.Dropout(0.99, name="drop")],
                              name="seq")

    class Dropping(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.drop = lib.layers.Dropout(0.99, name="drop")

        def call(self, x, training=None):
            return self.drop(x, training=training)

    return Dropping(name="dropping")


TRAINING_ARRAYS = {"a second input": np.ones((2, 3)), "a 0-d array": np.array(True)}


@pytest.mark.parametrize("kind", ["functional", "sequential", "subclassed"])
@pytest.mark.parametrize("value", sorted(TRAINING_ARRAYS))
def test_an_array_given_positionally_as_training_is_refused_as_keras_refuses_it(kind, value):
    """keras.io's masking guide ends with `model(x, np.random.random(...))`: Keras refuses
    the array (its positional `training`); kilnet ran the model in inference, unseen."""
    training = TRAINING_ARRAYS[value]
    with pytest.raises((TypeError, ValueError)):
        dropout_model(keras, kind)(X, training)
    with pytest.raises(TypeError) as error:
        dropout_model(kilnet, kind)(X, training)
    message = str(error.value)
    assert "Python bool or None as its argument 'training'" in message
    assert f"was an array of shape {np.shape(training)}" in message
    assert "as one list or dict" in message


@pytest.mark.parametrize("lib", [kilnet, keras], ids=["kilnet", "keras"])
def test_what_keras_takes_by_keyword_as_training_runs(lib):
    """Keras takes anything with a truth value as training= (a 0-d array, 1, None)."""
    model = dropout_model(lib, "functional")
    for training in (True, 1, np.array(True), np.bool_(True)):
        assert not np.allclose(np.asarray(model(X, training=training)), X)
    for training in (None, False, 0, np.array(False)):
        np.testing.assert_array_equal(np.asarray(model(X, training=training)), X)


def test_an_array_of_several_values_as_training_is_refused_naming_the_argument():
    """Keras fails with NumPy's "truth value of an array ... is ambiguous"."""
    with pytest.raises(ValueError, match="ambiguous"):
        keras.layers.Dropout(0.5, name="drop")(X, training=np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"Python bool or None as training=.*Received: "
                                         r"training=an array of shape \(2, 3\)"):
        kilnet.layers.Dropout(0.5, name="drop")(X, training=np.ones((2, 3)))
