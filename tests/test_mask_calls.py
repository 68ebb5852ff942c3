"""Which sequence masks a layer's `call` receives by itself, and what MultiHeadAttention does
with the masks its inputs carry: Keras 3's rules (one tensor argument fills `mask`; several
fill `<argument>_mask`, so an RNN given `initial_state=` gets none; a dtype policy's cast keeps
the mask; MultiHeadAttention applies its inputs' own masks and takes them off, eagerly, inside
a layer's call and in a functional graph run in Keras's order). Compared with Keras 3 from the
same weights."""

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


# -- MultiHeadAttention takes the masks off its inputs ----------------------------------------------
def two_attentions(lib):
    """Two attention layers on one masked tensor, as built: Keras runs the second one first
    (its Functional runs same-depth layers in the order a walk back from the outputs meets
    them), which takes the mask off the tensor: the first one then attends unmasked."""
    tokens = lib.Input((None,), dtype="int32")
    embedded = lib.layers.Embedding(10, 8, mask_zero=True, name="embedding")(tokens)
    first = lib.layers.MultiHeadAttention(2, 4, name="first")(embedded, embedded)
    second = lib.layers.MultiHeadAttention(2, 4, name="second")(embedded, embedded)
    return lib.Model(tokens, [first, second])


def attention_inside_and_beside(lib):
    """A layer of yours attending inside its call, an attention layer on the same tensor that
    runs before it (deeper: the sum uses it), and a pooling whose mask Keras recorded in the
    graph when the model was made (so it keeps it)."""
    class Block(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attention = lib.layers.MultiHeadAttention(2, 4)
            self.supports_masking = True

        def call(self, x):
            return self.attention(x, x)

    tokens = lib.Input((None,), dtype="int32")
    embedded = lib.layers.Embedding(10, 8, mask_zero=True, name="embedding")(tokens)
    inside = Block(name="block")(embedded)
    beside = lib.layers.MultiHeadAttention(2, 4, name="beside")(embedded, embedded)
    summed = lib.layers.Add(name="add")([embedded, beside])
    pooled = lib.layers.GlobalAveragePooling1D(name="pool")(summed)
    return lib.Model(tokens, [inside, beside, pooled])


def cross_attention_stack(lib):
    """Two decoder layers attending to the same masked encoder outputs: the first one's
    attention takes their mask off, so Keras's second one attends to the padding too."""
    class CrossAttention(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.attention = lib.layers.MultiHeadAttention(2, 4)
            self.supports_masking = True

        def call(self, x, context):
            return x + self.attention(x, context)

    tokens = lib.Input((None,), dtype="int32")
    source = lib.Input((None,), dtype="int32")
    x = lib.layers.Embedding(10, 8, name="target_embedding")(tokens)
    context = lib.layers.Embedding(10, 8, mask_zero=True, name="source_embedding")(source)
    x = CrossAttention(name="decoder_1")(x, context)
    return lib.Model([tokens, source], CrossAttention(name="decoder_2")(x, context))


@pytest.mark.parametrize("build", [two_attentions, attention_inside_and_beside])
def test_attention_takes_the_masks_off_its_inputs_in_a_graph(build):
    ours, theirs = both(build)
    got, expected = ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_a_second_cross_attention_on_the_same_context_is_unmasked_as_keras():
    ours, theirs = both(cross_attention_stack)
    inputs = [IDS[::-1], IDS]
    np.testing.assert_allclose(ours.predict(inputs, verbose=0),
                               theirs.predict(inputs, verbose=0), rtol=1e-5, atol=1e-5)
    targets = np.random.default_rng(8).normal(size=(2, 5, 8)).astype("float32")
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
    got = ours.fit(inputs, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    expected = theirs.fit(inputs, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-4)


def test_attention_takes_the_masks_off_its_inputs_eagerly():
    results = []
    for lib in (kilnet, keras):
        embedding = lib.layers.Embedding(10, 8, mask_zero=True)
        first = lib.layers.MultiHeadAttention(2, 4)
        second = lib.layers.MultiHeadAttention(2, 4)
        x = embedding(IDS)
        first(x, x), second(x, x)
        for layer, seed in ((embedding, 0), (first, 1), (second, 2)):
            layer.set_weights([np.random.default_rng(seed).normal(size=w.shape).astype(
                "float32") * 0.5 for w in layer.get_weights()])
        x = embedding(IDS)
        carried = getattr(x, "_keras_mask", None) is not None
        outputs = [first(x, x), second(x, x)]
        outputs.append(lib.layers.GlobalAveragePooling1D()(x))   # no mask left on x
        # the query's own mask, not a given query_mask (keras.io's English-to-Spanish decoder)
        plain = lib.ops.convert_to_tensor(np.asarray(x))
        outputs.append(first(plain, embedding(IDS), query_mask=IDS != 0))
        results.append((carried, getattr(x, "_keras_mask", None), outputs))
    (ours_carried, ours_left, ours), (theirs_carried, theirs_left, theirs) = results
    assert ours_carried and theirs_carried and ours_left is None and theirs_left is None
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(ours[0]), np.asarray(ours[1]))


def test_attention_in_a_subclassed_model_trains_as_keras():
    """keras.io's subclassed transformers call attention layers on one embedded tensor."""
    def model(lib):
        class Model(lib.Model):
            def __init__(self):
                super().__init__()
                self.embedding = lib.layers.Embedding(10, 8, mask_zero=True)
                self.first = lib.layers.MultiHeadAttention(2, 4)
                self.second = lib.layers.MultiHeadAttention(2, 4)
                self.pool = lib.layers.GlobalAveragePooling1D()

            def call(self, tokens):
                x = self.embedding(tokens)
                return self.pool(self.second(self.first(x, x), x))

        built = Model()
        built(IDS)
        return built

    ours, theirs = both(model)
    targets = np.random.default_rng(9).normal(size=(2, 8)).astype("float32")
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), theirs.predict(IDS, verbose=0),
                               rtol=1e-5, atol=1e-5)
    for built, lib in ((ours, kilnet), (theirs, keras)):
        built.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
    got = ours.fit(IDS, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    expected = theirs.fit(IDS, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-4)


def residual_attention(lib):
    """A transformer block written with layers: the sum's first input lost its mask to the
    attention, so Keras's sum carries none (a merge of a masked and an unmasked input), nor
    does the output, and the loss counts the padding steps."""
    tokens = lib.Input((None,), dtype="int32")
    embedded = lib.layers.Embedding(10, 8, mask_zero=True, name="embedding")(tokens)
    attended = lib.layers.MultiHeadAttention(2, 4, name="attention")(embedded, embedded)
    summed = lib.layers.Add(name="add")([embedded, attended])
    normalized = lib.layers.LayerNormalization(name="norm")(summed)
    return lib.Model(tokens, lib.layers.Dense(3, name="dense")(normalized))


def test_the_loss_of_a_residual_attention_block_as_keras():
    ours, theirs = both(residual_attention)
    targets = np.random.default_rng(10).normal(size=(2, 5, 3)).astype("float32")
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.1), loss="mse")
    np.testing.assert_allclose(ours.evaluate(IDS, targets, verbose=0),
                               theirs.evaluate(IDS, targets, verbose=0), rtol=1e-5)
    got = ours.fit(IDS, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    expected = theirs.fit(IDS, targets, epochs=2, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-4)
