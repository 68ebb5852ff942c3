"""Integer and bool weights from `add_weight(dtype=..., trainable=False)` (a counter a layer
assigns in `call`, an index), as Keras's: they count the same steps as Keras's through fit,
evaluate and predict, keep their dtype under a mixed-precision policy, and travel in every
file form both ways with Keras. A trainable integer weight or a 16-bit float weight is refused
with the fix."""

import numpy as np
import pytest

import keras
import kilnet

X = np.random.default_rng(0).random((64, 4)).astype("float32")
Y = np.random.default_rng(1).random((64, 2)).astype("float32")


def _counting_model(lib):
    """A Sequential whose one custom layer counts its calls in an int32 weight and keeps a bool
    and an int32 vector beside its float kernel."""

    class Counter(lib.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], 2), name="kernel")
            self.count = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                         trainable=False, name="count")
            self.flag = self.add_weight(shape=(2,), dtype="bool", trainable=False, name="flag")
            self.index = self.add_weight(shape=(3,), dtype="int32", initializer="ones",
                                         trainable=False, name="index")

        def call(self, x):
            self.count.assign(self.count + 1)
            return x @ self.kernel

    # registered under one name in both libraries, so each opens the other's files
    registered = lib.saving.register_keras_serializable(package="integer_weights")(Counter)
    model = lib.Sequential([lib.Input((4,)), registered(name="counter")])
    model.compile("adam", "mse")
    return model


def _layer_state(model):
    layer = model.get_layer("counter")
    return [(str(np.asarray(w.numpy()).dtype), np.asarray(w.numpy()).tolist())
            for w in (layer.count, layer.flag, layer.index)]


@pytest.fixture(scope="module")
def trained_pair():
    keras.backend.clear_session()
    theirs, ours = _counting_model(keras), _counting_model(kilnet)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.fit(X, Y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    return theirs, ours


def test_counts_and_dtypes_follow_keras_through_fit_evaluate_and_predict(trained_pair):
    theirs, ours = trained_pair
    assert _layer_state(ours) == _layer_state(theirs)
    assert _layer_state(ours)[0] == ("int32", 8)   # 4 batches a epoch, 2 epochs
    np.testing.assert_allclose(ours.get_layer("counter").kernel.numpy(),
                               theirs.get_layer("counter").kernel.numpy(), atol=1e-6)
    assert ([str(w.dtype) for w in ours.get_weights()]
            == [str(w.dtype) for w in theirs.get_weights()])
    for model in (theirs, ours):
        model.evaluate(X, Y, batch_size=32, verbose=0)
        model.predict(X[:16], verbose=0)
    assert _layer_state(ours) == _layer_state(theirs)


def test_files_carry_integer_weights_both_ways(trained_pair, tmp_path):
    theirs, ours = trained_pair
    theirs.save(tmp_path / "keras.keras")
    ours.save(tmp_path / "kilnet.keras")
    ours.save(tmp_path / "kilnet.kilnet")
    ours.save_weights(tmp_path / "kilnet.weights.h5")
    expected = _layer_state(ours)
    assert _layer_state(kilnet.saving.load_model(tmp_path / "keras.keras")) == expected
    assert _layer_state(keras.saving.load_model(tmp_path / "kilnet.keras")) == expected
    assert _layer_state(kilnet.saving.load_model(tmp_path / "kilnet.kilnet")) == expected
    into_keras = _counting_model(keras)
    into_keras.load_weights(tmp_path / "kilnet.weights.h5")
    assert _layer_state(into_keras) == expected


def test_integer_weights_stay_integer_under_mixed_precision():
    kilnet.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _counting_model(kilnet)
        model.fit(X, Y, epochs=1, batch_size=16, verbose=0)
    finally:
        kilnet.mixed_precision.set_global_policy("float32")
    assert _layer_state(model)[0] == ("int32", 4)


def test_default_initializer_is_zeros_for_integers_as_keras():
    layer = kilnet.layers.Layer()
    made = layer.add_weight(shape=(3,), dtype="int32", trainable=False)
    floats = layer.add_weight(shape=(3,))
    assert made.numpy().tolist() == [0, 0, 0]
    assert float(np.abs(floats.numpy()).sum()) > 0   # glorot_uniform, as Keras's default


@pytest.mark.parametrize("dtype, trainable, match", [
    ("int32", True, "trainable=False"),
    ("float16", False, "leave dtype out"),
    ("complex64", False, "float, an integer or a bool"),
])
def test_weights_kilnet_cannot_train_or_keep_are_refused_with_the_fix(dtype, trainable, match):
    with pytest.raises(ValueError, match=match):
        kilnet.layers.Layer().add_weight(shape=(2,), dtype=dtype, trainable=trainable)


def test_overwrite_with_gradient_is_refused_rather_than_trained_as_any_weight():
    with pytest.raises(NotImplementedError, match="overwrite_with_gradient"):
        kilnet.layers.Layer().add_weight(shape=(2,), overwrite_with_gradient=True)
