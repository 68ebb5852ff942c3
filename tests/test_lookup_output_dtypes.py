"""The dtypes of the lookup layers' outputs, as Keras 3.15 gives them on JAX.

Keras's StringLookup, IntegerLookup and TextVectorization count in TensorFlow's int64, which
JAX receives as int32: their one-hot, multi-hot and count outputs are int32, eagerly and inside
a model, and only tf-idf is float32; their `dtype` names the tokens ("string", "int64") while
the dtype policy in their config stays float32. Hashing, CategoryEncoding and Discretization
encode in float32. (Measured with Keras 3.15.1 and TensorFlow 2.21 outside this suite: Keras
runs these layers with TensorFlow, which the test environment does not install.) keras.io's
multi-label classification prints its binarized labels as integers for that reason.

The int32 multi-hot vectors still train a Dense model as Keras's does: the same weights give
the same losses, as inputs and as labels."""

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.layers import (CategoryEncoding, Hashing, IntegerLookup, StringLookup,  # noqa: E402
                           TextVectorization)

LABELS = np.array([["drama", "crime"], ["comedy", "drama"], ["crime", "crime"],
                   ["horror", "comedy"]] * 6)


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count", "tf_idf"])
def test_lookup_outputs_are_int32_but_tf_idf(mode):
    expected = "float32" if mode == "tf_idf" else "int32"
    strings = StringLookup(output_mode=mode)
    strings.adapt(LABELS)
    integers = IntegerLookup(output_mode=mode)
    integers.adapt(np.array([[3, 1], [1, 2]]))
    one_sample = (lambda x: x[:, 0]) if mode == "one_hot" else (lambda x: x)
    out = np.asarray(strings(one_sample(LABELS[:2])))
    assert out.dtype == expected
    vocab = strings.get_vocabulary()
    rows = LABELS[:2].tolist()
    if mode == "multi_hot":   # Keras's 0/1 rows and counts, as integers
        assert out.tolist() == [[int(t in row) for t in vocab] for row in rows]
    if mode == "count":
        assert out.tolist() == [[row.count(t) for t in vocab] for row in rows]
    assert np.asarray(integers(one_sample(np.array([[1, 3], [2, 2]])))).dtype == expected
    text = TextVectorization(output_mode=mode if mode != "one_hot" else "multi_hot")
    text.adapt(np.array(["the cat sat", "the dog"]))
    text_out = np.asarray(text(np.array(["the cat", "a dog dog"])))
    assert text_out.dtype == ("float32" if mode == "tf_idf" else "int32")


def test_encoding_layers_stay_float32():
    ids = np.array([[1, 3]])
    assert np.asarray(CategoryEncoding(4, output_mode="multi_hot")(ids)).dtype == "float32"
    assert np.asarray(Hashing(4, output_mode="multi_hot")(ids)).dtype == "float32"
    assert np.asarray(StringLookup(vocabulary=["a"])(np.array(["a"]))).dtype == "int32"


def test_lookup_dtypes_name_the_tokens_and_configs_keep_the_policy():
    for layer, dtype in [(StringLookup(vocabulary=["a"]), "string"),
                         (IntegerLookup(vocabulary=[1]), "int64"),
                         (TextVectorization(), "string")]:
        assert (layer.dtype, layer.compute_dtype, layer.variable_dtype) == (dtype,) * 3
        assert layer.get_config()["dtype"]["config"]["name"] == "float32"
    assert Hashing(4).dtype == "float32"


def test_integer_lookup_inside_a_model_gives_int32_and_feeds_dense():
    inputs = kilnet.Input(shape=(2,), dtype="int32")
    encoded = IntegerLookup(vocabulary=[1, 2, 3], output_mode="multi_hot")(inputs)
    assert encoded.dtype == "int32"
    model = kilnet.Model(inputs, encoded)
    x = np.array([[1, 3], [2, 9]], np.int32)
    out = model.predict(x, verbose=0)
    assert out.dtype == "int32" and out.tolist() == [[0, 1, 0, 1], [1, 0, 1, 0]]
    assert np.asarray(model(x)).dtype == "int32"
    # Under a mixed policy a layer's floating outputs come out in bfloat16; IntegerLookup's
    # compute dtype names its tokens, so its tf-idf stays float32, as Keras's.
    kilnet.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        tf_idf = IntegerLookup(vocabulary=[1, 2], idf_weights=[0.5, 2.0], output_mode="tf_idf")
    finally:
        kilnet.mixed_precision.set_global_policy("float32")
    scored = kilnet.Model(inputs, tf_idf(inputs)).predict(x, verbose=0)
    assert scored.dtype == "float32"
    np.testing.assert_allclose(scored, [[1.25, 0.5, 0.0], [1.25, 0.0, 2.0]])   # OOV: the mean
    dense_out = kilnet.layers.Dense(1)(encoded)
    trained = kilnet.Model(inputs, dense_out)
    trained.compile(optimizer="sgd", loss="mse")
    history = trained.fit(x, np.array([1.0, 0.0]), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def _twins(functional):
    """kilnet's and Keras's model of Dense layers on 6-wide multi-hot rows, same weights."""
    made = []
    for lib in (kilnet, keras):
        hidden = lib.layers.Dense(8, activation="relu")
        head = lib.layers.Dense(5, activation="sigmoid")
        if functional:
            inputs = lib.Input((6,))
            made.append(lib.Model(inputs, head(hidden(inputs))))
        else:
            made.append(lib.Sequential([hidden, head]))
    made[0].build((None, 6))
    made[1].build((None, 6))
    made[1].set_weights(made[0].get_weights())
    return made


@pytest.mark.parametrize("functional", [False, True])
def test_multi_hot_lookups_train_dense_models_as_keras(functional):
    inputs = StringLookup(output_mode="multi_hot", num_oov_indices=2)
    inputs.adapt(LABELS)
    labels = StringLookup(output_mode="multi_hot", num_oov_indices=0)
    labels.adapt(LABELS)
    x, y = inputs(LABELS), labels(LABELS[:, ::-1][:, :1])
    assert x.dtype == y.dtype == "int32" and x.shape == (24, 6) and y.shape == (24, 4)
    y = np.concatenate([y, y[:, :1]], axis=1)   # 5 outputs, as the twins have
    losses = []
    for model in _twins(functional):
        model.compile(optimizer="sgd", loss="binary_crossentropy",
                      metrics=["binary_accuracy"])
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
        assert np.asarray(model.predict(x[:2], verbose=0)).dtype == "float32"
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
