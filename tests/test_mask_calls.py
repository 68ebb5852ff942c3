"""Which sequence masks a layer's `call` receives by itself, and what MultiHeadAttention does
with the masks its inputs carry inside another layer's call: Keras 3's rules (one tensor
argument fills `mask`; several fill `<argument>_mask`; MultiHeadAttention applies its inputs'
own masks). Compared with Keras 3 from the same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402

IDS = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0]], "int32")


def same_weights(ours, theirs, seed=0):
    """Give both models the same random weights (scaled, so that masks change the numbers)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype("float32") * 0.5 for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)


def both(build):
    """The model `build(lib)` makes, for kilnet and for Keras, with the same weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras warns while it builds G6's decoder
        ours, theirs = build(kilnet), build(keras)
    same_weights(ours, theirs)
    return ours, theirs


def predict_both(build, inputs):
    ours, theirs = both(build)
    return (np.asarray(ours.predict(inputs, verbose=0)),
            np.asarray(theirs.predict(inputs, verbose=0)))


# -- which argument's mask a call gets (Keras's rule) ---------------------------------------------
def decoder_needing_inputs_mask(lib):
    """keras.io's FNet decoder in Keras 3's form: its call needs the mask of `inputs`."""
    class Decoder(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(4)
            self.supports_masking = True

        def call(self, inputs, encoder_outputs, inputs_mask=None):
            if inputs_mask is not None:
                padding = lib.ops.cast(inputs_mask, "float32")[..., None]
            return self.dense(inputs + encoder_outputs) * padding

    tokens = lib.Input((None,), dtype="int32")
    encoded = lib.Input((None, 4))
    embedded = lib.layers.Embedding(10, 4, mask_zero=True)(tokens)
    return lib.Model([tokens, encoded], Decoder()(embedded, encoded))


def test_inputs_mask_reaches_the_trace_that_builds_the_layer():
    encoded = np.random.default_rng(1).normal(size=(2, 5, 4)).astype("float32")
    ours, theirs = predict_both(decoder_needing_inputs_mask, [IDS, encoded])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert np.all(ours[IDS == 0] == 0) and np.any(ours[IDS != 0] != 0)


def decoder_with_mask_argument(lib, seen):
    """keras.io's original FNet decoder: two tensor arguments and `mask=None`."""
    class Decoder(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, encoder_outputs, mask=None):
            seen.append(mask is not None)
            if mask is None:
                return inputs + encoder_outputs
            return (inputs + encoder_outputs) * lib.ops.cast(mask, "float32")[..., None]

    tokens = lib.Input((None,), dtype="int32")
    encoded = lib.Input((None, 4))
    embedded = lib.layers.Embedding(10, 4, mask_zero=True)(tokens)
    return lib.Model([tokens, encoded], Decoder()(embedded, encoded))


def test_two_tensor_arguments_get_no_mask_argument():
    ours_seen, theirs_seen = [], []
    ours, theirs = both(lambda lib: decoder_with_mask_argument(
        lib, ours_seen if lib is kilnet else theirs_seen))
    encoded = np.ones((2, 5, 4), "float32")
    got = np.asarray(ours.predict([IDS, encoded], verbose=0))
    expected = np.asarray(theirs.predict([IDS, encoded], verbose=0))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not any(ours_seen) and not any(theirs_seen)
    assert np.all(got[IDS == 0] != 0)   # the padded rows are not zeroed: no mask came


class Recorder:
    """Layers of each library that record which mask arguments their call received."""

    def __init__(self, lib):
        self.seen = {}
        seen = self.seen

        class OneTensor(lib.layers.Layer):
            def call(self, inputs, inputs_mask=None, mask=None):
                seen["one"] = (inputs_mask is not None, mask is not None)
                return inputs

        class TwoTensors(lib.layers.Layer):
            def call(self, inputs, other, inputs_mask=None, other_mask=None, mask=None):
                seen["two"] = (inputs_mask is not None, other_mask is not None,
                               mask is not None)
                return inputs + other

        self.one, self.two = OneTensor(), TwoTensors()
        self.embedding = lib.layers.Embedding(10, 4, mask_zero=True)


@pytest.mark.parametrize("where", ["graph", "eager"])
def test_which_mask_arguments_are_filled(where):
    results = []
    for lib in (kilnet, keras):
        record = Recorder(lib)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if where == "graph":
                tokens = lib.Input((None,), dtype="int32")
                other = lib.Input((None, 4))
                embedded = record.embedding(tokens)
                model = lib.Model([tokens, other], [record.one(embedded),
                                                    record.two(embedded, other)])
                model.predict([IDS, np.ones((2, 5, 4), "float32")], verbose=0)
            else:   # the mask rides on the array (Keras's _keras_mask)
                embedded = record.embedding(IDS)
                record.one(embedded)
                record.two(embedded, np.ones((2, 5, 4), "float32"))
        results.append(record.seen)
    ours, theirs = results
    assert ours == theirs
    # In a graph, the mask the model's making filled in is an argument given when it runs,
    # a second tensor argument: `inputs_mask` is filled too, as Keras's graph does
    assert ours == {"one": (where == "graph", True), "two": (True, False, False)}


# -- MultiHeadAttention inside a layer's call ------------------------------------------------------
def attention_block(lib, explicit=False, dropout=0.0):
    """A layer of yours calling MultiHeadAttention on the tensor it received (a transformer
    decoder): Keras applies that tensor's padding mask by itself."""
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attention = lib.layers.MultiHeadAttention(2, 4, dropout=dropout)
            self.supports_masking = True

        def call(self, x, mask=None):
            if explicit:
                keys = lib.ops.cast(mask, "int32")[:, None, :]
                return self.attention(query=x, value=x, key=x, attention_mask=keys)
            return self.attention(query=x, value=x, key=x)

    tokens = lib.Input((None,), dtype="int32")
    embedded = lib.layers.Embedding(10, 8, mask_zero=True)(tokens)
    return lib.Model(tokens, Block()(embedded))


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_attention_inside_a_call_applies_the_inputs_masks(explicit, dropout):
    ours, theirs = predict_both(
        lambda lib: attention_block(lib, explicit=explicit, dropout=dropout), IDS)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_attention_inside_a_call_trains_as_keras():
    ours, theirs = both(attention_block)
    targets = np.random.default_rng(2).normal(size=(2, 5, 8)).astype("float32")
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
    got = ours.fit(IDS, targets, epochs=3, batch_size=2, shuffle=False, verbose=0)
    expected = theirs.fit(IDS, targets, epochs=3, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layer", ["MultiHeadAttention", "GroupQueryAttention"])
@pytest.mark.parametrize("dropout, scores", [(0.0, False), (0.2, False), (0.0, True)])
def test_a_query_allowed_no_key_as_keras(layer, dropout, scores):
    """Keras's fused attention (no dropout, no scores returned) gives such a query the mean of
    the values; its einsum path (dropout, or scores asked for) gives zeros."""
    x = np.random.default_rng(3).normal(size=(1, 3, 8)).astype("float32")
    allowed = np.array([[[1, 1, 0], [1, 1, 0], [0, 0, 0]]], bool)
    arguments = (2, 4) if layer == "MultiHeadAttention" else (4, 4, 2)
    outputs = []
    for lib in (kilnet, keras):
        attention = getattr(lib.layers, layer)(*arguments, dropout=dropout)
        attention(x, x)
        weights = [np.random.default_rng(4).normal(size=w.shape).astype("float32") * 0.5
                   for w in attention.get_weights()]
        attention.set_weights(weights)
        result = attention(x, x, attention_mask=allowed, return_attention_scores=scores)
        outputs.append(np.asarray(result[0] if scores else result))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    bias_only = np.allclose(outputs[0][0, 2], weights[-1])
    assert bias_only == (dropout > 0 or scores)


def test_unmasked_models_are_unchanged():
    """No mask anywhere (the seed MLP's kind of model): the outputs are Keras's."""
    def mlp(lib):
        inputs = lib.Input((6,))
        hidden = lib.layers.Dense(8, activation="relu")(inputs)
        return lib.Model(inputs, lib.layers.Dense(3)(hidden))

    x = np.random.default_rng(5).normal(size=(4, 6)).astype("float32")
    ours, theirs = predict_both(mlp, x)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# -- a recurrent layer given its initial state ------------------------------------------------------
def recurrent_with_initial_state(lib, kind, bidirectional, sequences):
    """keras.io's seq2seq decoder: a masked sequence and the encoder's states. Two tensor
    arguments, so Keras 3 gives the recurrent layer no mask (the padding steps run)."""
    embedding = lib.layers.Embedding(10, 4, mask_zero=True, name="embedding")
    recurrent = getattr(lib.layers, kind)(3, return_sequences=sequences, return_state=True,
                                          name="recurrent")
    if bidirectional:
        recurrent = lib.layers.Bidirectional(recurrent, name="bidirectional")
    tokens = lib.Input((5,), dtype="int32")
    states = [lib.Input((3,)) for _ in initial_states(kind, bidirectional)]
    outputs = recurrent(embedding(tokens), initial_state=states)
    return lib.Model([tokens, *states], outputs), embedding, recurrent


def initial_states(kind, bidirectional):
    rng = np.random.default_rng(6)
    count = (2 if kind == "LSTM" else 1) * (2 if bidirectional else 1)
    return [rng.normal(size=(2, 3)).astype("float32") for _ in range(count)]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("sequences", [False, True])
def test_an_initial_state_leaves_the_input_mask_unapplied(kind, bidirectional, sequences):
    ours, theirs = both(lambda lib: recurrent_with_initial_state(
        lib, kind, bidirectional, sequences)[0])
    states = initial_states(kind, bidirectional)
    got = ours.predict([IDS, *states], verbose=0)
    expected = theirs.predict([IDS, *states], verbose=0)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # eagerly, on the array carrying the embedding's mask, with the same weights
    eager = []
    for model in (ours, theirs):
        embedding, recurrent = model.get_layer("embedding"), model.layers[-1]
        embedded = embedding(IDS)
        outputs = recurrent(embedded, initial_state=states)
        eager.append(outputs)
        masked = recurrent(embedded, initial_state=states, mask=IDS != 0)
        assert not np.allclose(np.asarray(masked[0]), np.asarray(outputs[0]))
    for a, b in zip(*eager):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # the output still carries the input's mask where it is a sequence, as Keras's
    mask = getattr(eager[0][0], "_keras_mask", None)
    assert (mask is not None) == sequences == (getattr(eager[1][0], "_keras_mask", None)
                                              is not None)


# -- a mixed-precision layer's own call -------------------------------------------------------------
def pooling_block(lib, policy):
    """A layer of yours computing in bfloat16 on a float32 masked input: the cast its policy
    makes carries the mask (Keras's autocast keeps `_keras_mask`), so the pooling it calls in
    `call` averages the real steps only."""
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pool = lib.layers.GlobalAveragePooling1D()

        def call(self, x):
            return self.pool(x)

    features = lib.Input((5, 4))
    masked = lib.layers.Masking(dtype="float32", name="masking")(features)
    return lib.Model(features, Block(dtype=policy, name="block")(masked))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", None])
@pytest.mark.parametrize("where", ["graph", "eager"])
def test_a_mixed_precision_call_sees_the_mask_of_its_input(policy, where):
    x = np.random.default_rng(7).normal(size=(2, 5, 4)).astype("float32")
    x[0, 3:] = 0.0
    x[1, 1:] = 0.0
    outputs = []
    for lib in (kilnet, keras):
        if policy is None:   # the global policy
            lib.mixed_precision.set_global_policy("mixed_bfloat16")
        try:
            model = pooling_block(lib, policy)
        finally:
            lib.mixed_precision.set_global_policy("float32")
        if where == "graph":
            outputs.append(np.asarray(model.predict(x, verbose=0), "float32"))
        else:
            masked = model.get_layer("masking")(x)
            outputs.append(np.asarray(model.get_layer("block")(masked), "float32"))
    real = (x != 0).any(-1, keepdims=True)
    masked_mean = (x * real).sum(1) / real.sum(1)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(outputs[0], masked_mean, rtol=2e-2, atol=2e-2)
