"""Functions of yours registered with `register_keras_serializable` in `.keras` files, both ways
against Keras itself: a loss and a metric function given to compile() (the file loads
compiled, evaluate gives Keras's loss), and functions as a layer's kernel_initializer,
kernel_regularizer and kernel_constraint (the loaded layers hold your functions). A file
naming a function this program has not registered is refused, saying how to register it; a
function that is not registered is not written."""

import json
import os
import warnings
import zipfile

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the functions use keras.ops
keras = pytest.importorskip("keras", reason="the reference files are Keras's")

import kilnet  # noqa: E402
from kilnet.errors import ModelFileError  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

X = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
Y = np.random.default_rng(1).normal(size=(8, 2)).astype("float32")


def registered_in_both(name):
    """Register a function under the same name in Keras and in kilnet."""
    def register(fn):
        keras.saving.register_keras_serializable(package="tests_fns", name=name)(fn)
        return kilnet.saving.register_keras_serializable(package="tests_fns", name=name)(fn)
    return register


@registered_in_both("cubed_error")
def cubed_error(y_true, y_pred):
    return keras.ops.mean(keras.ops.abs(y_true - y_pred) ** 3, axis=-1)


@registered_in_both("doubled_error")
def doubled_error(y_true, y_pred):
    return 2 * keras.ops.mean(keras.ops.abs(y_true - y_pred), axis=-1)


@registered_in_both("ramp")
def ramp(shape, dtype=None):
    return np.arange(np.prod(shape), dtype=dtype or "float32").reshape(shape) / 10 - 0.4


@registered_in_both("small_l1")
def small_l1(weights):
    return 0.01 * keras.ops.sum(keras.ops.abs(weights))


@registered_in_both("clipped")
def clipped(weights):
    return keras.ops.clip(weights, -0.5, 0.5)


def model_of(lib, loss=cubed_error, metric=doubled_error, initializer=ramp,
             regularizer=small_l1, constraint=clipped):
    inputs = lib.Input((4,), name="x")
    hidden = lib.layers.Dense(3, kernel_initializer=initializer, kernel_regularizer=regularizer,
                              kernel_constraint=constraint, name="hidden")(inputs)
    model = lib.Model(inputs, lib.layers.Dense(2, name="head")(hidden), name="net")
    model.compile(optimizer="adam", loss=loss, metrics=[metric])
    return model


def assert_holds_the_functions(model):
    hidden = model.get_layer("hidden")
    assert (hidden.kernel_initializer, hidden.kernel_regularizer, hidden.kernel_constraint) \
        == (ramp, small_l1, clipped)


def assert_same_model(loaded, reference):
    np.testing.assert_allclose(loaded.predict(X, verbose=0), reference.predict(X, verbose=0),
                               rtol=1e-6, atol=1e-6)
    ours = loaded.evaluate(X, Y, verbose=0, return_dict=True)
    theirs = reference.evaluate(X, Y, verbose=0, return_dict=True)
    assert sorted(ours) == sorted(theirs) == ["doubled_error", "loss"]
    for key in ours:   # the loss holds the kernel's penalty too
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-6)


def test_a_keras_file_loads_compiled_with_your_functions(tmp_path):
    theirs = model_of(keras)
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert mine.is_compiled and mine.loss is cubed_error
    assert_holds_the_functions(mine)
    assert_same_model(mine, theirs)


def test_a_kilnet_file_loads_in_keras_and_kilnet_compiled_with_your_functions(tmp_path):
    mine = model_of(kilnet)
    mine.build(seed=0)
    mine.save(tmp_path / "m.keras")
    config = json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json"))
    assert config["compile_config"]["loss"] == {   # as Keras writes it
        "module": "builtins", "class_name": "function", "config": "tests_fns>cubed_error",
        "registered_name": "function"}
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.compiled and theirs.loss is cubed_error
    assert_holds_the_functions(theirs)
    assert_same_model(theirs, mine)
    again = kilnet.models.load_model(tmp_path / "m.keras")
    assert again.is_compiled and again.loss is cubed_error
    assert_holds_the_functions(again)
    assert_same_model(again, mine)


def test_a_function_not_registered_here_is_refused_with_the_fix(tmp_path):
    def keras_only(y_true, y_pred):
        return keras.ops.mean(y_pred - y_true, axis=-1)

    keras.saving.register_keras_serializable(package="tests_fns", name="keras_only")(keras_only)
    model_of(keras, loss=keras_only).save(tmp_path / "k.keras")
    with pytest.raises(ModelFileError, match="tests_fns>keras_only.*not registered.*"
                                             "register_keras_serializable"):
        kilnet.models.load_model(tmp_path / "k.keras")


def test_compile_false_opens_files_naming_functions_not_registered_here(tmp_path):
    """load_model(compile=False) reads no compile configuration, as Keras's: a file naming a
    loss or metric function of someone else's opens for inference, uncompiled."""
    def elsewhere_loss(y_true, y_pred):
        return keras.ops.mean(y_pred - y_true, axis=-1)

    def elsewhere_metric(y_true, y_pred):
        return keras.ops.mean(y_pred * y_true, axis=-1)

    for fn in (elsewhere_loss, elsewhere_metric):
        keras.saving.register_keras_serializable(package="tests_fns", name=fn.__name__)(fn)
        kilnet.saving.register_keras_serializable(package="tests_fns", name=fn.__name__)(fn)
    theirs = model_of(keras, loss=elsewhere_loss, metric=elsewhere_metric)
    theirs.save(tmp_path / "k.keras")
    theirs.save(tmp_path / "k.h5")
    mine = model_of(kilnet, loss=elsewhere_loss, metric=elsewhere_metric)
    mine.set_weights(theirs.get_weights())
    mine.save(tmp_path / "m.kilnet")
    for name in ("tests_fns>elsewhere_loss", "tests_fns>elsewhere_metric"):
        del kilnet.saving.get_custom_objects()[name]
    expected = theirs.predict(X, verbose=0)
    np.testing.assert_allclose(
        keras.models.load_model(tmp_path / "k.keras", compile=False).predict(X, verbose=0),
        expected)
    for file in ("k.keras", "k.h5", "m.kilnet"):
        loaded = kilnet.models.load_model(tmp_path / file, compile=False)
        assert not loaded.is_compiled, file
        np.testing.assert_allclose(loaded.predict(X, verbose=0), expected, rtol=1e-6,
                                   atol=1e-6, err_msg=file)


def test_a_function_not_registered_is_not_written(tmp_path):
    def unregistered(y_true, y_pred):
        return keras.ops.mean(y_pred - y_true, axis=-1)

    with pytest.warns(UserWarning, match="compile configuration is left out.*unregistered.*"
                                         "register_keras_serializable"):
        model_of(kilnet, loss=unregistered).save(tmp_path / "m.keras")
    assert config_loss(tmp_path / "m.keras") is None   # the architecture and weights only
    for argument, unregistered in (
            ("initializer", lambda shape, dtype=None: np.zeros(shape, dtype or "float32")),
            ("regularizer", lambda weights: 0.0 * keras.ops.sum(weights)),
            ("constraint", lambda weights: weights)):
        with pytest.raises((TypeError, ValueError), match="register_keras_serializable"):
            model_of(kilnet, **{argument: unregistered}).save(tmp_path / f"{argument}.keras")
        assert not (tmp_path / f"{argument}.keras").exists()


def config_loss(path):
    return json.loads(zipfile.ZipFile(path).read("config.json"))["compile_config"].get("loss")


def test_a_function_given_as_custom_objects_is_found(tmp_path):
    def keras_only_init(shape, dtype=None):
        return np.full(shape, 0.1, dtype or "float32")

    keras.saving.register_keras_serializable(package="tests_fns", name="keras_only_init")(
        keras_only_init)
    theirs = model_of(keras, initializer=keras_only_init)
    theirs.save(tmp_path / "k.keras")
    mine = kilnet.models.load_model(tmp_path / "k.keras", custom_objects={
        "tests_fns>keras_only_init": keras_only_init})
    assert mine.get_layer("hidden").kernel_initializer is keras_only_init
    assert_same_model(mine, theirs)
    assert kilnet.saving.get_registered_object("tests_fns>keras_only_init") is None


def test_keras_own_loss_and_metric_functions_load_compiled(tmp_path):
    theirs = model_of(keras, loss=keras.losses.mean_squared_error,
                      metric=keras.metrics.mean_absolute_error)
    theirs.save(tmp_path / "k.keras")
    mine = kilnet.models.load_model(tmp_path / "k.keras")
    assert mine.is_compiled
    ours = mine.evaluate(X, Y, verbose=0, return_dict=True)
    expected = theirs.evaluate(X, Y, verbose=0, return_dict=True)
    assert sorted(ours) == sorted(expected) == ["loss", "mean_absolute_error"]
    for key in ours:
        np.testing.assert_allclose(ours[key], expected[key], rtol=1e-6)


def test_a_kilnet_file_keeps_the_compile_configuration_with_your_functions(tmp_path):
    mine = model_of(kilnet)
    mine.fit(X, Y, batch_size=4, epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine.save(tmp_path / "m.kilnet")
        again = kilnet.models.load_model(tmp_path / "m.kilnet")
    assert again.is_compiled and again.loss is cubed_error
    assert_holds_the_functions(again)
    assert again.evaluate(X, Y, verbose=0) == mine.evaluate(X, Y, verbose=0)


def test_a_kilnet_file_naming_a_function_no_longer_registered_is_refused(tmp_path):
    def scaled_error(y_true, y_pred):
        return keras.ops.mean(keras.ops.abs(y_pred - y_true), axis=-1)

    kilnet.saving.register_keras_serializable(package="tests_fns", name="gone")(scaled_error)
    model_of(kilnet, loss=scaled_error).save(tmp_path / "m.kilnet")
    del kilnet.saving.get_custom_objects()["tests_fns>gone"]
    with pytest.raises(ModelFileError, match="tests_fns>gone.*not registered.*"
                                             "register_keras_serializable"):
        kilnet.models.load_model(tmp_path / "m.kilnet")


def test_kilnet_own_loss_and_metric_functions_are_written_as_keras_writes_its_own(tmp_path):
    mine = model_of(kilnet, loss=kilnet.losses.mean_squared_error,
                    metric=kilnet.metrics.mean_absolute_error)
    mine.build(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # nothing is left out
        mine.save(tmp_path / "m.keras")
    assert config_loss(tmp_path / "m.keras") == {
        "module": "builtins", "class_name": "function", "config": "mean_squared_error",
        "registered_name": "function"}
    theirs = keras.models.load_model(tmp_path / "m.keras")
    assert theirs.compiled and theirs.loss is keras.losses.mean_squared_error
    again = kilnet.models.load_model(tmp_path / "m.keras")   # and kilnet holds its own again
    assert again.is_compiled and again.loss is kilnet.losses.mean_squared_error
    for loaded in (theirs, again):
        ours = mine.evaluate(X, Y, verbose=0, return_dict=True)
        expected = loaded.evaluate(X, Y, verbose=0, return_dict=True)
        assert sorted(ours) == sorted(expected) == ["loss", "mean_absolute_error"]
        for key in ours:
            np.testing.assert_allclose(ours[key], expected[key], rtol=1e-6)
