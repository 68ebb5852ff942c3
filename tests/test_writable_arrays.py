"""The NumPy arrays kilnet hands out are writable copies, as Keras's: learners edit them in place
(keras.io's neural style transfer does `x = image.numpy(); x[:, :, 0] += 103.939`; weight surgery
does `w = layer.get_weights(); w[0][:, 0] = 0; layer.set_weights(w)`), and editing one never
changes the model."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras's")

import kilnet  # noqa: E402

X = np.ones((4, 3), "float32")


def handed_out(lib):
    """What each library hands out, by how a learner gets it."""
    lib.utils.set_random_seed(0)
    variable = lib.Variable(np.zeros((2, 3), "float32"))
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(2, name="dense")])
    return model, {
        "Variable.numpy()": lambda: variable.numpy(),
        "np.array(variable)": lambda: np.array(variable),
        "np.array(variable, dtype=float64)": lambda: np.array(variable, dtype="float64"),
        "layer.get_weights()": lambda: model.get_layer("dense").get_weights()[0],
        "model.get_weights()": lambda: model.get_weights()[0],
        "layer.kernel.numpy()": lambda: model.get_layer("dense").kernel.numpy(),
        "model.predict()": lambda: model.predict(X, verbose=0),
        "model.predict_on_batch()": lambda: model.predict_on_batch(X),
    }


@pytest.mark.parametrize("lib", [keras, kilnet], ids=["keras", "kilnet"])
def test_arrays_handed_out_are_writable_copies(lib):
    model, getters = handed_out(lib)
    before = [w.copy() for w in model.get_weights()]
    for how, get in getters.items():
        array = get()
        assert array.flags.writeable, how
        array[...] += 1.0   # the learner's in-place edit
    for weight, kept in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, kept)   # the model is untouched


def test_asarray_of_a_variable_reads_its_values_in_the_dtype_asked():
    variable = kilnet.Variable(np.arange(6, dtype="float32").reshape(2, 3))
    np.testing.assert_array_equal(np.asarray(variable), variable.numpy())
    assert np.asarray(variable, dtype="float64").dtype == np.float64
