"""A layer whose call runs at one batch size only (keras.io's Switch Transformer reshapes its
tokens to a fixed `num_tokens_per_batch`): Keras traces a call on symbolic tensors with a
symbolic batch size, so the functional model is made and trains at that batch size. kilnet
traces a call at batch 1 first, and at a symbolic size when that fails; compile() costs the
step where it can and leaves the rest to fit(). The example itself, as keras.io writes it
(its layers kept before super().__init__()), builds, trains and predicts as Keras's, and a
call at another batch size fails with Keras's error. Checked against Keras from the same
weights."""

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

# keras.io's text_classification_with_switch_transformer at a small size
SWITCH_VOCAB, SWITCH_TOKENS, SWITCH_EMBED, SWITCH_EXPERTS, SWITCH_BATCH = 30, 6, 8, 3, 4
SWITCH_TOKENS_PER_BATCH = SWITCH_BATCH * SWITCH_TOKENS


def switch_transformer(lib, router_noise=True):
    """The example's classifier at a small size, written as keras.io writes it (attributes set
    before super().__init__(), experts in a list, the Router's load-balancing add_loss)."""
    ops, layers = lib.ops, lib.layers

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self):
            super().__init__()
            self.token_emb = layers.Embedding(SWITCH_VOCAB, SWITCH_EMBED)
            self.pos_emb = layers.Embedding(SWITCH_TOKENS, SWITCH_EMBED)

        def call(self, x):
            positions = self.pos_emb(ops.arange(0, ops.shape(x)[-1], 1))
            return self.token_emb(x) + positions

    def feedforward():
        return lib.Sequential([layers.Dense(SWITCH_EMBED, activation="relu"),
                               layers.Dense(SWITCH_EMBED)])

    def load_balanced_loss(router_probs, expert_mask):
        num_experts = ops.shape(expert_mask)[-1]
        density = ops.mean(expert_mask, axis=0)
        density_proxy = ops.mean(router_probs, axis=0)
        return ops.mean(density_proxy * density) * ops.cast(num_experts ** 2, "float32")

    class Router(layers.Layer):
        def __init__(self, num_experts, expert_capacity):
            self.num_experts = num_experts
            self.route = layers.Dense(units=num_experts)
            self.expert_capacity = expert_capacity
            super().__init__()
            self.seed_generator = lib.random.SeedGenerator(1337)

        def call(self, inputs, training=False):
            router_logits = self.route(inputs)
            if training and router_noise:
                router_logits += lib.random.uniform(shape=router_logits.shape, minval=0.9,
                                                    maxval=1.1, seed=self.seed_generator)
            router_probs = lib.activations.softmax(router_logits, axis=-1)
            expert_gate, expert_index = ops.top_k(router_probs, k=1)
            expert_mask = ops.one_hot(expert_index, self.num_experts)
            self.add_loss(load_balanced_loss(router_probs, expert_mask))
            position_in_expert = ops.cast(ops.cumsum(expert_mask, axis=0) * expert_mask, "int32")
            expert_mask *= ops.cast(ops.less(position_in_expert, self.expert_capacity), "float32")
            expert_mask_flat = ops.sum(expert_mask, axis=-1)
            expert_gate *= expert_mask_flat
            combined = ops.expand_dims(
                expert_gate * expert_mask_flat
                * ops.squeeze(ops.one_hot(expert_index, self.num_experts), 1), -1
            ) * ops.squeeze(ops.one_hot(position_in_expert, self.expert_capacity), 1)
            return ops.cast(combined, "float32"), combined

    class Switch(layers.Layer):
        def __init__(self, num_experts, embed_dim, num_tokens_per_batch):
            self.num_experts = num_experts
            self.embed_dim = embed_dim
            self.experts = [feedforward() for _ in range(num_experts)]
            self.expert_capacity = num_tokens_per_batch // num_experts
            self.router = Router(num_experts, self.expert_capacity)
            super().__init__()

        def call(self, inputs):
            batch_size, tokens = ops.shape(inputs)[0], ops.shape(inputs)[1]
            inputs = ops.reshape(inputs, [SWITCH_TOKENS_PER_BATCH, self.embed_dim])
            dispatch, combine = self.router(inputs)
            expert_inputs = ops.einsum("ab,acd->cdb", inputs, dispatch)
            expert_inputs = ops.reshape(expert_inputs, [self.num_experts, self.expert_capacity,
                                                        self.embed_dim])
            outputs = [expert(part) for expert, part in zip(
                self.experts, ops.unstack(expert_inputs, axis=0))]
            combined = ops.einsum("abc,xba->xc", ops.stack(outputs, axis=1), combine)
            return ops.reshape(combined, [batch_size, tokens, self.embed_dim])

    class TransformerBlock(layers.Layer):
        def __init__(self, ffn):
            super().__init__()
            self.att = layers.MultiHeadAttention(num_heads=2, key_dim=SWITCH_EMBED)
            self.ffn = ffn
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)

        def call(self, inputs, training=None):
            out1 = self.layernorm1(inputs + self.att(inputs, inputs))
            return self.layernorm2(out1 + self.ffn(out1))

    inputs = layers.Input(shape=(SWITCH_TOKENS,))
    x = TokenAndPositionEmbedding()(inputs)
    x = TransformerBlock(Switch(SWITCH_EXPERTS, SWITCH_EMBED, SWITCH_TOKENS_PER_BATCH))(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    return lib.Model(inputs=inputs, outputs=outputs)


def switch_data():
    rng = np.random.default_rng(0)
    samples = 3 * SWITCH_BATCH
    return (rng.integers(0, SWITCH_VOCAB, (samples, SWITCH_TOKENS)),
            rng.integers(0, 2, samples))


@pytest.fixture(scope="module")
def twins():
    """The example as written (router noise in training) in Keras and kilnet, kilnet's with
    Keras's weights."""
    theirs, ours = switch_transformer(keras), switch_transformer(kilnet)
    ours.set_weights(theirs.get_weights())
    return theirs, ours


def test_the_model_builds_with_keras_shapes_and_weights(twins):
    theirs, ours = twins
    assert ours.count_params() == theirs.count_params() == 1365
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert [(layer.output.shape, layer.count_params()) for layer in ours.layers] == [
        (tuple(layer.output.shape), layer.count_params()) for layer in theirs.layers]
    # the batch axis unknown, as in Keras's symbolic call
    assert ours.layers[2].output.shape == (None, SWITCH_TOKENS, SWITCH_EMBED)


def test_predict_and_evaluate_give_keras_numbers_at_the_fixed_batch(twins):
    theirs, ours = twins
    x, y = switch_data()
    np.testing.assert_allclose(ours.predict(x, batch_size=SWITCH_BATCH, verbose=0),
                               theirs.predict(x, batch_size=SWITCH_BATCH, verbose=0), atol=1e-6)
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    # the loss includes the routers' load-balancing losses (add_loss), as Keras's
    np.testing.assert_allclose(
        ours.evaluate(x, y, batch_size=SWITCH_BATCH, verbose=0),
        theirs.evaluate(x, y, batch_size=SWITCH_BATCH, verbose=0), rtol=1e-6)


def test_fit_trains_as_keras_at_the_fixed_batch():
    """The router's training noise left out: kilnet's compiled fit draws from the step's key,
    not from the SeedGenerator's stored state (README: keras.random)."""
    x, y = switch_data()
    theirs, ours = (switch_transformer(lib, router_noise=False) for lib in (keras, kilnet))
    ours.set_weights(theirs.get_weights())
    losses = []
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        losses.append(model.fit(x, y, batch_size=SWITCH_BATCH, epochs=3, shuffle=False,
                                verbose=0).history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, atol=1e-5)


def test_another_batch_size_fails_as_in_keras(twins):
    """Keras's error: the reshape's TypeError, naming the failing call and its arguments."""
    x, _ = switch_data()
    messages = []
    for model in twins:
        with pytest.raises(TypeError) as caught:
            model.predict(x[:6], batch_size=3, verbose=0)
        messages.append(str(caught.value).replace("\x1b[1m", "").replace("\x1b[0m", ""))
    for message in messages:
        assert message.startswith("Exception encountered when calling Switch.call().")
        assert "cannot reshape array of shape (3, 6, 8)" in message
        assert message.endswith("Arguments received by Switch.call():\n"
                                "  • inputs=jnp.ndarray(shape=(3, 6, 8), dtype=float32)")


def test_a_layer_first_built_in_the_symbolic_trace_keeps_no_symbolic_batch_size():
    """The inner layer is first called in the trace at no particular batch size (the batch-1
    trace failed before reaching it): it records no batch size, not that symbolic one."""
    ops = kilnet.ops

    class Inner(kilnet.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 3), initializer="ones")

        def call(self, x):
            return ops.matmul(x, self.w)

    class Outer(kilnet.layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = Inner()

        def call(self, x):
            fixed = ops.reshape(x, [4 * 5, 3])
            return self.inner(x) + ops.reshape(fixed, ops.shape(x))

    inputs = kilnet.Input((5, 3))
    outer = Outer()
    model = kilnet.Model(inputs, outer(inputs))
    assert outer.inner.build_batch_size is None
    got = model.predict(np.ones((4, 5, 3), np.float32), batch_size=4, verbose=0)
    np.testing.assert_allclose(got, np.full((4, 5, 3), 4.0))


def test_when_the_symbolic_trace_fails_too_its_error_is_attached():
    """A call that fails at the probe batch and at no particular batch size for another
    reason (a sub-layer with weights made in call(), which kilnet refuses): the error names
    the reshape and carries the other as its cause."""
    ops = kilnet.ops

    class MadeInCall(kilnet.layers.Layer):
        def call(self, x):
            flat = ops.reshape(x, [4 * 5, 3])
            return kilnet.layers.Dense(3, name="made_in_call")(flat)

    inputs = kilnet.Input((5, 3))
    with pytest.raises(TypeError, match="cannot reshape") as caught:
        MadeInCall()(inputs)
    assert "'made_in_call'" in str(caught.value.__cause__)
    assert "would not train" in str(caught.value.__cause__)
