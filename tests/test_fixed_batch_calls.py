"""A layer whose call runs at one batch size only (keras.io's Switch Transformer reshapes its
tokens to a fixed `num_tokens_per_batch`): Keras traces a call on symbolic tensors with a
symbolic batch size, so the functional model is made and trains at that batch size. kilnet
traces a call at batch 1 first, and at a symbolic size when that fails; compile() costs the
step where it can and leaves the rest to fit(). Checked against Keras from the same weights."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

BATCH, TOKENS, DIM = 5, 4, 6
X = np.random.default_rng(0).normal(size=(20, TOKENS, DIM)).astype("float32")
Y = np.random.default_rng(1).integers(0, 2, size=(20,))


def _model(lib):
    """A block of attention and a token-mixing layer that reshapes to BATCH * TOKENS rows,
    inside another layer, as the Switch Transformer's block holds its Switch."""
    ops, layers = lib.ops, lib.layers

    class TokenMix(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mix = layers.Dense(DIM)

        def call(self, x):
            batch = ops.shape(x)[0]
            rows = ops.reshape(x, [BATCH * TOKENS, DIM])   # the fixed total of tokens
            return ops.reshape(self.mix(rows), [batch, TOKENS, DIM])

    class Block(layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=3)
            self.mix = TokenMix()
            self.norm = layers.LayerNormalization()

        def call(self, x):
            return self.norm(x + self.mix(x + self.attention(x, x)))

    inputs = layers.Input((TOKENS, DIM))
    block = Block()(inputs)
    outputs = layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(block))
    return lib.Model(inputs, outputs), block


def test_the_symbolic_call_gives_keras_shapes():
    model, block = _model(kilnet)
    _, theirs = _model(keras)
    assert tuple(block.shape) == tuple(theirs.shape) == (None, TOKENS, DIM)
    assert model.count_params() == _model(keras)[0].count_params()


def test_it_trains_at_its_batch_size_as_keras():
    model, _ = _model(kilnet)
    reference, _ = _model(keras)
    reference.set_weights(model.get_weights())
    for m in (model, reference):
        m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    ours = model.fit(X, Y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history
    theirs = reference.fit(X, Y, batch_size=BATCH, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(ours["loss"], theirs["loss"], rtol=1e-5)
    for a, b in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(model.predict(X, batch_size=BATCH, verbose=0),
                               reference.predict(X, batch_size=BATCH, verbose=0), atol=1e-5)


def test_a_call_that_fits_no_batch_fails_on_the_data():
    """As in Keras, the symbolic call cannot tell a reshape that fits no batch; the data's
    call fails with the reshape's own message."""
    class Broken(kilnet.layers.Layer):
        def call(self, x):
            return kilnet.ops.reshape(x, [7, 5])   # fits no batch of (4, 6) samples

    inputs = kilnet.Input((TOKENS, DIM))
    model = kilnet.Model(inputs, Broken()(inputs))
    with pytest.raises(TypeError, match=r"cannot reshape array of shape \(3, 4, 6\)"):
        model.predict(np.ones((3, TOKENS, DIM), "float32"), verbose=0)
