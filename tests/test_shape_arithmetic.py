"""Shapes, repeats and sizes computed with kilnet.ops from `ops.shape(x)` while tracing (a
functional model's build, fit, predict, jax.jit) stay concrete, so `tile`, `reshape`,
`broadcast_to`, `zeros`, `repeat` and `slice` take them: Keras's text-generation tutorial
(miniature GPT) builds its causal attention mask that way."""

import jax
import numpy as np
import pytest

import kilnet
from kilnet import layers, ops

RNG = np.random.default_rng(0)


def _batch_vector(x, *rest):
    """The tutorial's way: [batch, *rest] as an array made by ops from ops.shape(x)[0]."""
    return ops.concatenate([ops.expand_dims(ops.shape(x)[0], -1),
                            ops.convert_to_tensor(list(rest))], 0)


# -- ops under jax.jit ---------------------------------------------------------------------------

def test_tile_takes_repeats_concatenated_from_the_batch_length():
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    batch = np.zeros((4, 1))
    tiled = jax.jit(lambda x, b: ops.tile(x, _batch_vector(b, 1, 1)))(x, batch)
    np.testing.assert_array_equal(tiled, np.tile(x, (4, 1, 1)))


def test_reshape_broadcast_to_and_zeros_take_shapes_made_by_ops():
    def shapes(x):
        n = ops.multiply(ops.shape(x)[1], ops.shape(x)[2])  # a traced scalar before
        flat = ops.reshape(x, ops.stack([ops.shape(x)[0], n]))
        wide = ops.broadcast_to(x[:, :1], _batch_vector(x, 3, 4))
        return flat, wide, ops.zeros(_batch_vector(x, 2))
    x = RNG.normal(size=(5, 3, 4)).astype(np.float32)
    flat, wide, zeros = jax.jit(shapes)(x)
    np.testing.assert_array_equal(flat, x.reshape(5, 12))
    np.testing.assert_array_equal(wide, np.broadcast_to(x[:, :1], (5, 3, 4)))
    np.testing.assert_array_equal(zeros, np.zeros((5, 2)))


def test_repeat_and_slice_take_counts_and_sizes_made_by_ops():
    def counts(x):
        half = ops.floor_divide(ops.shape(x)[1], 2)
        return (ops.repeat(x, ops.add(half, 1), axis=1),
                ops.slice(x, [0, 1], ops.stack([ops.shape(x)[0], half])))
    x = RNG.normal(size=(2, 4)).astype(np.float32)
    repeated, block = jax.jit(counts)(x)
    np.testing.assert_array_equal(repeated, np.repeat(x, 3, axis=1))
    np.testing.assert_array_equal(block, x[:, 1:3])


def test_repeats_computed_from_tensor_values_name_the_argument():
    def from_values(x):
        return ops.tile(x, ops.cast(ops.stack([ops.sum(x), 1.0]), "int32"))
    with pytest.raises(ValueError, match="`repeats` must be known when the function is traced"):
        jax.jit(from_values)(np.ones((2, 2), np.float32))


# -- the tutorial's causal mask in a model ---------------------------------------------------------

def causal_attention_mask(batch_size, n_dest, n_src, dtype):
    """The tutorial's function, as written there."""
    i = ops.arange(n_dest)[:, None]
    j = ops.arange(n_src)
    m = i >= j - n_src + n_dest
    mask = ops.cast(m, dtype)
    mask = ops.reshape(mask, [1, n_dest, n_src])
    mult = ops.concatenate(
        [ops.expand_dims(batch_size, -1), ops.convert_to_tensor([1, 1])], 0)
    return ops.tile(mask, mult)


def broadcast_causal_mask(batch_size, n_dest, n_src, dtype):
    """The same mask written with broadcast_to (which took Python ints before)."""
    lower = np.tril(np.ones((n_dest, n_src), bool))
    return ops.broadcast_to(ops.cast(lower, dtype), (batch_size, n_dest, n_src))


class CausalBlock(layers.Layer):
    """The tutorial's TransformerBlock, its mask made by `make_mask`."""

    def __init__(self, make_mask, **kwargs):
        super().__init__(**kwargs)
        self.make_mask = make_mask
        self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=4)
        self.norm = layers.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        batch_size, seq_len = ops.shape(inputs)[0], ops.shape(inputs)[1]
        mask = self.make_mask(batch_size, seq_len, seq_len, "bool")
        attended = self.attention(inputs, inputs, attention_mask=mask)
        return self.norm(inputs + attended)


def mini_gpt(make_mask, vocab=11, maxlen=6):
    tokens = kilnet.Input((maxlen,), dtype="int32")
    x = layers.Embedding(vocab, 8)(tokens)
    x = CausalBlock(make_mask)(x)
    return kilnet.Model(tokens, layers.Dense(vocab)(x))


def test_the_tutorials_mask_is_the_broadcast_lower_triangle_in_a_model():
    tokens = kilnet.Input((4,), dtype="int32")
    mask = layers.Lambda(lambda t: causal_attention_mask(ops.shape(t)[0], 4, 4, "int32"))(tokens)
    model = kilnet.Model(tokens, mask)
    assert model.output.shape == (None, 4, 4)
    for batch in (3, 5):
        got = model.predict(np.zeros((batch, 4), np.int32), verbose=0)
        np.testing.assert_array_equal(got, np.broadcast_to(np.tril(np.ones((4, 4))), (batch, 4, 4)))


def test_a_mini_gpt_with_the_tutorials_mask_predicts_and_trains_as_with_broadcast_to():
    tiled, broadcast = mini_gpt(causal_attention_mask), mini_gpt(broadcast_causal_mask)
    broadcast.set_weights(tiled.get_weights())
    for batch in (3, 5):
        x = RNG.integers(0, 11, size=(batch, 6))
        np.testing.assert_allclose(tiled.predict(x, verbose=0), broadcast.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-6)
    x, y = RNG.integers(0, 11, size=(10, 6)), RNG.integers(0, 11, size=(10, 6))
    histories = []
    for model in (tiled, broadcast):   # batches of 4, 4 and a last one of 2
        model.compile(optimizer="adam", loss=kilnet.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        histories.append(model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0))
    np.testing.assert_allclose(histories[0].history["loss"], histories[1].history["loss"],
                               rtol=1e-5)
    for a, b in zip(tiled.get_weights(), broadcast.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
