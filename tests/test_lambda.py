"""kilnet.layers.Lambda: Keras's arguments, shapes and dtypes traced, masks, training, and
files that hold a registered function's name and never code."""

import inspect
import json
import os

import numpy as np
import pytest

import kilnet
from kilnet import layers, ops

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)


@kilnet.saving.register_serializable(package="LambdaTests")
def halve_and_shift(x, shift=0.0):
    return x / 2.0 + shift


def test_keras_s_arguments_and_defaults():
    ours = inspect.signature(layers.Lambda.__init__).parameters
    theirs = inspect.signature(keras.layers.Lambda.__init__).parameters
    assert [(p.name, p.default) for p in ours.values()] == [
        (p.name, p.default) for p in theirs.values()]


def test_a_lambda_in_sequential_trains_and_computes_its_function():
    x = RNG.integers(0, 256, size=(64, 6)).astype(np.float32)
    y = (x.sum(axis=1) > 6 * 127.5).astype(np.int32)
    kilnet.utils.set_random_seed(0)
    model = kilnet.Sequential([kilnet.Input(shape=(6,)), layers.Lambda(lambda t: t / 255.0),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    kernel, bias = model.layers[-1].get_weights()
    logits = (x / 255.0) @ kernel + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_shapes_and_dtypes_are_traced_for_lists_and_unknown_lengths():
    a, b = kilnet.Input(shape=(None, 4)), kilnet.Input(shape=(4,))
    product = layers.Lambda(lambda t: t[0] * ops.expand_dims(t[1], 1))([a, b])
    ids = layers.Lambda(lambda t: ops.argmax(t, axis=-1))(product)
    assert (product.shape, product.dtype) == ((None, None, 4), "float32")
    assert (ids.shape, ids.dtype) == ((None, None), "int32")
    model = kilnet.Model([a, b], ids)
    xa, xb = RNG.normal(size=(3, 5, 4)).astype("f4"), RNG.normal(size=(3, 4)).astype("f4")
    got = model.predict([xa, xb], verbose=0)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(xa * xb[:, None], axis=-1))


def test_output_shape_given_as_a_tuple_or_a_function_of_the_whole_shape():
    x = kilnet.Input(shape=(6,))
    given = layers.Lambda(lambda t: ops.reshape(t, (-1, 2, 3)), output_shape=(2, 3))(x)
    computed = layers.Lambda(lambda t: ops.reshape(t, (-1, 3, 2)),
                             output_shape=lambda s: (s[0], 3, s[1] // 3))(x)
    assert given.shape == (None, 2, 3) and computed.shape == (None, 3, 2)


def test_a_function_that_takes_training_gets_the_mode():
    scale = layers.Lambda(lambda t, training=False: t * (2.0 if training else 1.0))
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(scale(x, training=True)), 2 * x)
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), scale])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_a_mask_function_passes_the_sequence_mask_on():
    """Embedding(mask_zero) -> Lambda(mask=...) -> GlobalAveragePooling1D averages the real
    steps only: the same as without the Lambda, doubled; without mask= the padding counts."""
    tokens = np.array([[3, 5, 0, 0], [2, 0, 0, 0]], np.int32)

    def pooled(mask):
        kilnet.utils.set_random_seed(1)
        inputs = kilnet.Input(shape=(4,), dtype="int32")
        h = layers.Embedding(8, 3, mask_zero=True)(inputs)
        h = layers.Lambda(lambda t: t * 2.0, mask=mask)(h)
        model = kilnet.Model(inputs, layers.GlobalAveragePooling1D()(h))
        pooled_values = model.predict(tokens, verbose=0)   # builds the model: its weights
        return pooled_values, model.layers[1].get_weights()[0]

    with_mask, table = pooled(lambda inputs, mask: mask)
    expected = np.stack([2 * table[[3, 5]].mean(0), 2 * table[[2]].mean(0)])
    np.testing.assert_allclose(with_mask, expected, rtol=1e-6)
    with pytest.warns(UserWarning, match="does not support masking"):
        without, table = pooled(None)
    np.testing.assert_allclose(without, 2 * table[tokens].mean(axis=1), rtol=1e-6)


def test_a_registered_function_is_saved_by_name_and_loads(tmp_path):
    inputs = kilnet.Input(shape=(3,))
    outputs = layers.Dense(2)(layers.Lambda(halve_and_shift, arguments={"shift": 1.0})(inputs))
    model = kilnet.Model(inputs, outputs)
    x = RNG.normal(size=(4, 3)).astype("f4")
    before = model.predict(x, verbose=0)   # builds the model: its weights are saved
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    config = json.loads(model.to_json())["config"]["layers"][1]["config"]
    assert config["function"] == "LambdaTests>halve_and_shift"
    assert config["arguments"] == {"shift": 1.0}


def test_a_file_naming_an_unregistered_function_is_refused():
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Lambda(halve_and_shift)])
    text = model.to_json().replace("LambdaTests>halve_and_shift", "Elsewhere>system")
    with pytest.raises(Exception, match="names no function registered"):
        kilnet.models.model_from_json(text)


def test_an_unregistered_function_clones_but_is_not_saved(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Lambda(lambda t: t + 1.0)])
    x = np.zeros((1, 3), np.float32)
    np.testing.assert_array_equal(kilnet.models.clone_model(model).predict(x, verbose=0), x + 1)
    target = tmp_path / "m.kilnet"
    target.write_bytes(b"an earlier file")
    with pytest.raises(TypeError, match="register_serializable.*save_weights"):
        model.save(target)
    assert target.read_bytes() == b"an earlier file"
    with pytest.raises(ValueError, match="Lambda.*bytecode"):
        model.save(tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()
