"""kilnet.config and kilnet.backend against Keras 3's keras.config and keras.backend: the
values, the dtype helpers, set_epsilon reaching a loss and a metric compiled afterwards, and the
settings kilnet refuses with the fix."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import backend as K  # noqa: E402


def test_the_settings_are_keras_defaults():
    for name in ("backend", "epsilon", "floatx", "image_data_format"):
        assert getattr(kilnet.config, name)() == getattr(keras.config, name)(), name
        assert getattr(K, name)() == getattr(keras.backend, name)(), name
    assert str(kilnet.config.dtype_policy().name) == keras.config.dtype_policy().name


@pytest.mark.parametrize("dtype", ["float32", "float64", "int8", "uint16", "bool", float, int,
                                   bool, np.float16, np.int64, "bfloat16", None])
def test_dtype_helpers_are_keras(dtype):
    assert K.standardize_dtype(dtype) == keras.backend.standardize_dtype(dtype)
    if dtype is not None:
        assert K.is_float_dtype(dtype) == keras.backend.is_float_dtype(dtype)
        assert K.is_int_dtype(dtype) == keras.backend.is_int_dtype(dtype)


@pytest.mark.parametrize("dtypes", [("int32", "float32"), ("bfloat16", "float16"),
                                    ("int8", "uint8"), ("bool", "int32"), ("float16",)])
def test_result_type_is_keras(dtypes):
    assert K.result_type(*dtypes) == keras.backend.result_type(*dtypes)


def test_set_epsilon_reaches_losses_and_metrics_compiled_afterwards():
    y_true = np.array([[1.0], [0.0]], np.float32)
    y_pred = np.array([[0.0], [1.0]], np.float32)   # certain and wrong: clipped by epsilon
    default = float(kilnet.losses.BinaryCrossentropy()(y_true, y_pred))
    keras_default = float(keras.losses.BinaryCrossentropy()(y_true, y_pred))
    try:
        kilnet.config.set_epsilon(1e-3)
        keras.config.set_epsilon(1e-3)
        ours = float(kilnet.losses.BinaryCrossentropy()(y_true, y_pred))
        theirs = float(keras.losses.BinaryCrossentropy()(y_true, y_pred))
        metric = kilnet.metrics.BinaryCrossentropy()
        metric.update_state(y_true, y_pred)
        from_metric = float(metric.result())
    finally:
        kilnet.config.set_epsilon(1e-7)
        keras.config.set_epsilon(1e-7)
    assert ours == pytest.approx(theirs, rel=1e-5)
    assert ours == pytest.approx(-np.log(1e-3), rel=1e-2)   # the clip at 1e-3 decides it
    assert from_metric == pytest.approx(ours, rel=1e-5)
    assert default == pytest.approx(keras_default, rel=1e-5) and default > 2 * ours


def test_what_kilnet_does_not_follow_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="mixed_precision.set_global_policy"):
        kilnet.config.set_floatx("float64")
    kilnet.config.set_floatx("float32")
    with pytest.raises(ValueError, match=r"np.moveaxis\(x, 1, -1\)"):
        K.set_image_data_format("channels_first")
    with pytest.raises(ValueError, match=r"epsilon must be a number in \(0, 1\)"):
        K.set_epsilon(0)
    with pytest.warns(UserWarning, match="never runs code stored in a file"):
        kilnet.config.enable_unsafe_deserialization()


def test_set_dtype_policy_is_the_global_policy():
    try:
        kilnet.config.set_dtype_policy("mixed_bfloat16")
        assert kilnet.layers.Dense(2).compute_dtype == "bfloat16"
        assert kilnet.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        kilnet.config.set_dtype_policy("float32")


def test_backend_odds_and_ends():
    assert K.is_keras_tensor(kilnet.Input(shape=(2,))) and not K.is_keras_tensor(np.ones(2))
    assert kilnet.KerasTensor is kilnet.layers.KerasTensor
    first = K.get_uid("test_backend_prefix")
    assert K.get_uid("test_backend_prefix") == first + 1
    K.clear_session()   # frees JAX's caches; a model still builds and runs afterwards
    model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
    assert model.predict(np.ones((1, 2), np.float32), verbose=0).shape == (1, 1)


def test_without_interactive_logging_progress_goes_to_the_log(caplog, capsys):
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    assert kilnet.config.is_interactive_logging_enabled() and keras.config.\
        is_interactive_logging_enabled()
    kilnet.config.disable_interactive_logging()
    try:
        with caplog.at_level("INFO", logger="kilnet"):
            model.fit(x, y, epochs=2, verbose=1)
            model.evaluate(x, y, verbose=1)
            model.summary()
    finally:
        kilnet.config.enable_interactive_logging()
    lines = [r.getMessage() for r in caplog.records if r.name == "kilnet"]
    assert [line.split(" - ")[0] for line in lines[:2]] == ["Epoch 1/2", "Epoch 2/2"]
    assert any(line.startswith("Evaluate") for line in lines)
    assert any("Verdict" in line for line in lines)    # fit's closing report too
    assert any(line.startswith('Model: "sequential"') for line in lines)   # and the summary
    out = capsys.readouterr().out
    assert "Epoch 1/2" not in out and "\r" not in out   # nothing drawn on the screen
    model.fit(x, y, epochs=1, verbose=1)
    assert "Epoch 1/1" in capsys.readouterr().out      # back on the screen


def test_set_backend_takes_jax_only():
    kilnet.config.set_backend("jax")
    with pytest.raises(ValueError, match="Received: backend='torch'"):
        kilnet.config.set_backend("torch")


def test_utils_names_keras_keeps_there_too():
    assert kilnet.utils.standardize_dtype is kilnet.backend.standardize_dtype
    assert kilnet.utils.standardize_dtype(np.float64) == keras.utils.standardize_dtype(np.float64)
    for name in ("enable_interactive_logging", "disable_interactive_logging",
                 "is_interactive_logging_enabled"):
        assert getattr(kilnet.utils, name) is getattr(kilnet.config, name)
        assert name in dir(kilnet.utils)


def test_top_level_names_and_devices_as_keras():
    assert kilnet.version() == kilnet.__version__
    assert kilnet.Operation is kilnet.layers.Operation
    assert kilnet.FloatDTypePolicy("mixed_float16").compute_dtype == "float16"
    assert kilnet.distribution.list_devices() == keras.distribution.list_devices()
    assert kilnet.distribution.list_devices("cpu") == keras.distribution.list_devices("cpu")
    assert kilnet.distribution.get_device_count() == keras.distribution.get_device_count()
    with kilnet.device("cpu:0"):
        assert kilnet.ops.ones((2,)).devices() == {jax.devices("cpu")[0]}
    with pytest.raises(ValueError, match="Received: device_name='cpu:99'"):
        kilnet.device("cpu:99")
    with pytest.raises(ValueError, match="no 'tpu' device"):
        kilnet.distribution.list_devices("tpu")
    assert kilnet.distribution.get_device_count("tpu") == 0
