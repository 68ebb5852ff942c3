"""CategoryEncoding, Discretization and Hashing: outputs against Keras 3 (the JAX backend runs
CategoryEncoding and Discretization without TensorFlow) and against Keras's own published
Hashing bins; inside compiled models, with save/load round trips."""

import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.layers import CategoryEncoding, Discretization, Hashing  # noqa: E402
from kilnet.layers._fingerprints import fingerprint64, siphash24  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
@pytest.mark.parametrize("shape", [(6,), (6, 1), (4, 3)])
def test_category_encoding_matches_keras(mode, shape):
    if mode != "one_hot" and shape == (6,):
        shape = (6, 2)
    ids = np.random.default_rng(0).integers(0, 5, size=shape)
    ours = CategoryEncoding(num_tokens=5, output_mode=mode)
    theirs = keras.layers.CategoryEncoding(num_tokens=5, output_mode=mode)
    out = np.asarray(ours(ids))
    np.testing.assert_array_equal(out, np.asarray(theirs(ids)))
    assert out.shape[1:] == ours.sample_output_shape(shape[1:])
    assert out.dtype == np.float32


def test_category_encoding_count_weights_and_config():
    ids, w = np.array([[0, 1, 1], [2, 2, 2]]), np.array([[0.5, 1.0, 2.0], [1.0, 1.0, 1.5]])
    out = np.asarray(CategoryEncoding(3, output_mode="count")(ids, count_weights=w))
    np.testing.assert_allclose(out, [[0.5, 3.0, 0.0], [0.0, 0.0, 3.5]])
    layer = CategoryEncoding(4, output_mode="one_hot", name="enc")
    config = layer.get_config()
    assert CategoryEncoding.from_config(config).get_config() == config
    keras_keys = set(keras.layers.CategoryEncoding(4).get_config())
    assert set(config) <= keras_keys and {"num_tokens", "output_mode"} <= set(config)
    with pytest.raises(ValueError, match="count_weights"):
        CategoryEncoding(3)(ids, count_weights=w)


def test_encoding_errors():
    with pytest.raises(ValueError, match="num_tokens"):
        CategoryEncoding()
    with pytest.raises(ValueError, match="output_mode.*Received: output_mode='tf_idf'"):
        CategoryEncoding(3, output_mode="tf_idf")
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        CategoryEncoding(3, sparse=True)
    with pytest.raises(ValueError, match="not both"):
        Discretization(bin_boundaries=[1.0], num_bins=3)
    with pytest.raises(ValueError, match="sorted"):
        Discretization(bin_boundaries=[2.0, 1.0])
    with pytest.raises(ValueError, match="adapt"):
        Discretization(num_bins=3)(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="salt"):
        Hashing(3, salt="x")
    with pytest.raises(ValueError, match="num_bins"):
        Hashing(0)
    inputs = kilnet.Input(shape=(2, 3), dtype="int32")
    with pytest.raises(ValueError, match="tokens"):
        CategoryEncoding(3)(inputs)


@pytest.mark.parametrize("mode", ["int", "one_hot", "multi_hot", "count"])
def test_discretization_matches_keras(mode):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(500,)).astype(np.float32)
    ours = Discretization(num_bins=4, output_mode=mode)
    ours.adapt([data[:200], data[200:]])
    theirs = keras.layers.Discretization(num_bins=4, output_mode=mode)
    # Keras's adapt() needs TensorFlow for its dataset check; its update/finalize do not.
    theirs.update_state(data[:200])
    theirs.update_state(data[200:])
    theirs.finalize_state()
    assert ours.bin_boundaries == theirs.bin_boundaries
    x = rng.normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(ours(x)), np.asarray(theirs(x)))
    np.testing.assert_array_equal(np.asarray(ours(x[:, :1])), np.asarray(theirs(x[:, :1])))


def test_discretization_boundaries_numpy_and_config():
    layer = Discretization(bin_boundaries=[0.0, 1.0, 2.5])
    x = np.array([[-1.0, 0.0, 0.99, 1.0, 3.0]], np.float32)
    np.testing.assert_array_equal(np.asarray(layer(x)), np.digitize(x, [0.0, 1.0, 2.5]))
    assert np.asarray(layer(x)).dtype == np.int32
    adapted = Discretization(num_bins=3, epsilon=0.05)
    adapted.adapt(np.arange(30.0))
    config = adapted.get_config()
    again = Discretization.from_config(config)
    assert again.get_config() == config and again.bin_boundaries == adapted.bin_boundaries
    assert set(keras.layers.Discretization(num_bins=3).get_config()) - {"dtype"} <= set(config)


def test_hashing_matches_keras_published_bins():
    # The bins asserted by Keras's own hashing tests (computed there with TensorFlow).
    letters = np.array([["A"], ["B"], ["C"], ["D"], ["E"]])
    np.testing.assert_array_equal(Hashing(3)(letters).ravel(), [1, 0, 1, 1, 2])
    np.testing.assert_array_equal(Hashing(3, salt=[133, 137])(letters).ravel(), [1, 2, 1, 0, 2])
    np.testing.assert_array_equal(Hashing(3, salt=133)(letters).ravel(), [0, 0, 2, 1, 0])
    masked = np.array([["A"], ["B"], [""], ["C"], ["D"]])
    np.testing.assert_array_equal(Hashing(3, mask_value="")(masked).ravel(), [1, 1, 0, 2, 2])
    words = np.array(["omar", "stringer", "marlo", "wire", "skywalker"])
    np.testing.assert_array_equal(Hashing(2)(words), [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(Hashing(2, salt=[211, 137])(words), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(Hashing(3, mask_value="omar")(words), [0, 1, 2, 1, 1])
    ints = np.array([[0], [1], [2], [3], [4]])
    np.testing.assert_array_equal(np.asarray(Hashing(3)(ints)).ravel(), [1, 0, 1, 0, 2])
    np.testing.assert_array_equal(np.asarray(Hashing(3, salt=[133, 137])(ints)).ravel(),
                                  [1, 1, 2, 0, 1])
    one_hot = np.asarray(Hashing(3, output_mode="one_hot")(np.array([0, 1, 2, 3, 4])))
    np.testing.assert_array_equal(one_hot, np.eye(3)[[1, 0, 1, 0, 2]])


def test_fingerprints_published_vectors():
    # SipHash-2-4 reference vector (Aumasson & Bernstein): key 00..0f, message 00..0e.
    key = (int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)),
                                                                      "little"))
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    assert fingerprint64(b"") == 0x9AE16A3B2F90404F
    # Every length branch of FarmHash gives distinct, stable values.
    digests = {fingerprint64(bytes(range(n))) for n in (3, 7, 15, 30, 60, 200)}
    assert len(digests) == 6


def _train_and_roundtrip(model, x, y, tmp_path):
    # Weights and data order from seed 0, not from the OS, and the loss judged on the whole
    # data before and after training (the epochs' mean losses fell by 11-26% only; at 0.01,
    # after/before over 11 weight draws: 0.11-0.37).
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="mse")
    assert_fit_lowers_loss(model, x, y, 0.6, epochs=8, batch_size=8, seed=0)
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(model.predict(x, verbose=0)),
                                  np.asarray(loaded.predict(x, verbose=0)))
    return loaded


def test_models_with_encoding_layers_train_and_save(tmp_path):
    rng = np.random.default_rng(0)
    x_num = rng.normal(size=(48, 1)).astype(np.float32)
    x_ids = rng.integers(0, 6, size=(48, 3)).astype(np.int32)
    y = (x_num[:, 0] > 0).astype(np.float32) + (x_ids == 2).sum(1).astype(np.float32)
    num_in = kilnet.Input(shape=(1,))
    ids_in = kilnet.Input(shape=(3,), dtype="int32")
    bucket = Discretization(bin_boundaries=[-1.0, 0.0, 1.0], output_mode="one_hot")(num_in)
    counts = CategoryEncoding(6, output_mode="count")(ids_in)
    hashed = Hashing(4, output_mode="multi_hot")(ids_in)
    merged = kilnet.layers.Concatenate()([bucket, counts, hashed])
    model = kilnet.Model([num_in, ids_in], kilnet.layers.Dense(1)(merged))
    loaded = _train_and_roundtrip(model, [x_num, x_ids], y, tmp_path)
    types = [type(layer).__name__ for layer in loaded.layers]
    assert {"Discretization", "CategoryEncoding", "Hashing"} <= set(types)
