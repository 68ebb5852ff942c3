"""BatchNormalization with a sequence mask: in training its statistics count the unmasked
steps only (Keras 3's masked moments), against NumPy and Keras itself."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def sequences(seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((4, 6, 3)) * 2 + 1).astype(np.float32)
    mask = np.arange(6)[None, :] < np.array([6, 4, 2, 5])[:, None]
    x[~mask] = 50.0  # padding far from the data: counted, it would move the statistics
    return x, mask


def test_masked_statistics_match_numpy_and_keras():
    x, mask = sequences()
    ours = layers.BatchNormalization(momentum=0.5)
    params, state, _ = ours.init(np.random.default_rng(0), x.shape[1:])
    y, new_state = ours.apply(params, state, jnp.asarray(x), training=True,
                              mask=jnp.asarray(mask))
    real = x[mask].astype(np.float64)
    mean, var = real.mean(0), real.var(0)
    np.testing.assert_allclose(new_state["moving_mean"], 0.5 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_state["moving_variance"], 0.5 + 0.5 * var, rtol=1e-5)
    expected = (x - mean) / np.sqrt(var + 1e-3)
    np.testing.assert_allclose(np.asarray(y)[mask], expected[mask], rtol=1e-4, atol=1e-5)

    theirs = keras.layers.BatchNormalization(momentum=0.5)
    keras_y = theirs(x, training=True, mask=mask)
    np.testing.assert_allclose(np.asarray(y)[mask], np.asarray(keras_y)[mask], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(new_state["moving_mean"], theirs.moving_mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(new_state["moving_variance"], theirs.moving_variance.numpy(),
                               rtol=1e-5)


def test_a_mask_of_the_wrong_rank_is_named():
    layer = layers.BatchNormalization()
    params, state, _ = layer.init(np.random.default_rng(0), (6, 3))
    with pytest.raises(ValueError, match=r"one dimension less.*mask.shape=\(4, 6, 3\)"):
        layer.apply(params, state, jnp.ones((4, 6, 3)), training=True,
                    mask=jnp.ones((4, 6, 3), bool))


def test_the_mask_from_an_embedding_reaches_the_statistics_in_fit():
    """Embedding(mask_zero=True) -> BatchNormalization in a model: one full-batch step with
    momentum 0 leaves the moving mean at the mean of the unpadded tokens' vectors."""
    tokens = np.array([[3, 5, 7, 0, 0], [2, 4, 0, 0, 0], [6, 1, 2, 3, 4]])
    inputs = kilnet.Input((5,), dtype="int32")
    h = layers.Embedding(8, 3, mask_zero=True)(inputs)
    h = layers.BatchNormalization(momentum=0.0)(h)
    outputs = layers.Dense(1)(layers.GlobalAveragePooling1D()(h))
    model = kilnet.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    embedding, bn = (next(layer for layer in model.layers if isinstance(layer, kind))
                     for kind in (layers.Embedding, layers.BatchNormalization))
    table = embedding.get_weights()[0]
    model.fit(tokens, np.zeros((3, 1), np.float32), batch_size=3, epochs=1, verbose=0)
    vectors = table[tokens[tokens != 0]]
    moving_mean = bn.get_weights()[2]  # Keras's order: gamma, beta, moving mean, variance
    np.testing.assert_allclose(moving_mean, vectors.mean(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(moving_mean, table[tokens].reshape(-1, 3).mean(0), atol=1e-4)
