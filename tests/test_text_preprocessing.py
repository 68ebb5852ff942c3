"""StringLookup, IntegerLookup and TextVectorization.

Keras runs these layers with TensorFlow, which is not installed here, so outputs are compared
with NumPy / collections.Counter references written from Keras's documented rules (vocabulary
by decreasing count, ties by the larger token; layout [mask] + [OOV] + tokens; idf =
log(1 + documents / (1 + document frequency)); OOV buckets from FarmHash, checked against the
bins Keras's own tests assert)."""

import collections
import math

import numpy as np
import pytest

import kilnet
from kilnet.layers import IntegerLookup, StringLookup, TextVectorization


def _reference_vocabulary(tokens, specials, max_tokens=None):
    counts = collections.Counter(tokens)
    for s in specials:
        counts.pop(s, None)
    # Two stable sorts: tokens high to low, then by decreasing count (ties keep that order).
    ranked = sorted(sorted(counts, reverse=True), key=lambda t: -counts[t])
    keep = None if max_tokens is None else max_tokens - len(specials)
    return list(specials) + ranked[:keep]


def test_string_lookup_adapt_order_and_int_output():
    data = np.array([["b", "a", "c", "a"], ["d", "b", "e", "e"]])
    layer = StringLookup(max_tokens=5)
    layer.adapt(data)
    assert layer.get_vocabulary() == _reference_vocabulary(data.ravel(), ["[UNK]"], 5)
    assert layer.get_vocabulary() == ["[UNK]", "e", "b", "a", "d"]
    assert layer.vocabulary_size() == 5
    out = layer(np.array([["a", "zzz"], ["d", "e"]]))
    vocab = layer.get_vocabulary()
    expected = [[vocab.index(t) if t in vocab else 0 for t in row] for row in
                [["a", "zzz"], ["d", "e"]]]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int32


def test_string_lookup_mask_invert_and_oov_buckets():
    layer = StringLookup(vocabulary=["x", "y"], mask_token="[PAD]", num_oov_indices=2)
    assert layer.get_vocabulary() == ["[PAD]", "[UNK]", "[UNK]", "x", "y"]
    out = layer(np.array(["[PAD]", "x", "y", "A", "B"]))
    # OOV strings go to 1 + FarmHash(s) % 2; Keras's tests give A->1, B->0 for % 3 and the
    # fingerprint's parity here: A and B land in different buckets.
    np.testing.assert_array_equal(out[:3], [0, 3, 4])
    assert set(out[3:]) <= {1, 2}
    inverse = StringLookup(vocabulary=["x", "y"], mask_token="[PAD]", invert=True)
    np.testing.assert_array_equal(inverse(np.array([0, 1, 2, 3, 9])),
                                  ["[PAD]", "[UNK]", "x", "y", "[UNK]"])
    three = StringLookup(vocabulary=["zz"], num_oov_indices=3)
    np.testing.assert_array_equal(three(np.array(list("ABCDE"))), [1, 0, 1, 1, 2])


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count", "tf_idf"])
def test_string_lookup_output_modes(mode):
    docs = np.array([["a", "b", "a"], ["c", "a", "q"]])
    idf = [0.5, 0.25, 2.0] if mode == "tf_idf" else None
    layer = StringLookup(vocabulary=["a", "b", "c"], output_mode=mode, idf_weights=idf)
    out = layer(docs)
    ids = np.array([[1, 2, 1], [3, 1, 0]])
    one_hot = np.eye(4, dtype=np.float32)[ids]
    expected = {"one_hot": one_hot, "multi_hot": one_hot.max(1), "count": one_hot.sum(1),
                "tf_idf": one_hot.sum(1) * np.array([np.mean(idf or [0]), 0.5, 0.25, 2.0])}
    np.testing.assert_allclose(out, expected[mode], rtol=1e-6)
    padded = StringLookup(vocabulary=["a", "b", "c"], output_mode="multi_hot",
                          pad_to_max_tokens=True, max_tokens=6)
    assert padded(docs).shape == (2, 6)


def test_tf_idf_adapt_matches_formula():
    docs = np.array([["a", "b"], ["a", "a"], ["c", "a"]])
    layer = StringLookup(output_mode="tf_idf")
    layer.adapt(docs)
    vocab = layer.get_vocabulary()
    assert vocab == ["[UNK]", "a", "c", "b"]
    df = {"a": 3, "b": 1, "c": 1}
    idf = [math.log(1 + 3 / (1 + df[t])) for t in vocab[1:]]
    expected = [np.mean(idf)] + idf
    np.testing.assert_allclose(layer.idf_weights, expected, rtol=1e-6)
    out = layer(np.array([["a", "a", "b"]]))
    np.testing.assert_allclose(out, [[0, 2 * idf[0], 0, idf[2]]], rtol=1e-6)


def test_integer_lookup_host_and_compiled_agree(tmp_path):
    layer = IntegerLookup(vocabulary=[12, 36, 1138, 42], num_oov_indices=2, mask_token=0)
    x = np.array([[12, 0, 7], [42, 1138, 8]])
    # [mask 0] + [2 OOV buckets: token % 2] + tokens
    np.testing.assert_array_equal(layer(x), [[3, 0, 2], [6, 5, 1]])
    inputs = kilnet.Input(shape=(3,), dtype="int32")
    ids = layer(inputs)
    assert ids.dtype == "int32"
    emb = kilnet.layers.Embedding(layer.vocabulary_size(), 4)(ids)
    pooled = kilnet.layers.GlobalAveragePooling1D()(emb)
    encoded = IntegerLookup(vocabulary=[12, 42], output_mode="count")(inputs)
    model = kilnet.Model(inputs, kilnet.layers.Dense(1)(
        kilnet.layers.Concatenate()([pooled, encoded])))
    rng = np.random.default_rng(0)
    xs = rng.choice([12, 36, 1138, 42, 0, 5], size=(40, 3)).astype(np.int32)
    y = (xs == 42).sum(1).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    history = model.fit(xs, y, epochs=10, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(model.predict(xs, verbose=0), loaded.predict(xs, verbose=0))
    inner = [lay for lay in loaded.layers if isinstance(lay, IntegerLookup)]
    assert inner[0].get_vocabulary() == [0, -1, -1, 12, 36, 1138, 42]
    inverse = IntegerLookup(vocabulary=[12, 36], invert=True)
    np.testing.assert_array_equal(inverse(np.array([1, 2, 0, 5])), [12, 36, -1, -1])


def test_integer_lookup_adapt_ties_and_config_round_trip():
    layer = IntegerLookup(max_tokens=4)
    layer.adapt(np.array([5, 5, 3, 3, 8, 9, 9, 9, -1]))
    assert layer.get_vocabulary() == [-1, 9, 5, 3]  # 5 and 3 tie: larger first; -1 is OOV
    config = layer.get_config()
    again = IntegerLookup.from_config(config)
    assert again.get_config() == config
    np.testing.assert_array_equal(again(np.array([3, 9, 8])), layer(np.array([3, 9, 8])))
    keras_keys = {"invert", "max_tokens", "num_oov_indices", "oov_token", "mask_token",
                  "output_mode", "sparse", "pad_to_max_tokens", "vocabulary_dtype",
                  "idf_weights", "vocabulary", "vocabulary_size", "oov_method", "salt"}
    assert keras_keys <= set(config)


def test_lookup_errors(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n")
    with pytest.raises(ValueError, match="not a file path"):
        StringLookup(vocabulary=str(path))
    with pytest.raises(ValueError, match="not a file path"):
        TextVectorization(vocabulary=str(path))
    with pytest.raises(ValueError, match="sparse=True is not supported"):
        StringLookup(sparse=True, output_mode="multi_hot")
    with pytest.raises(ValueError, match="output_mode.*Received: output_mode='bad'"):
        IntegerLookup(output_mode="bad")
    with pytest.raises(ValueError, match="invert=True needs output_mode='int'"):
        StringLookup(invert=True, output_mode="count")
    with pytest.raises(ValueError, match="repeats"):
        StringLookup(vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="num_oov_indices=0"):
        StringLookup(vocabulary=["a"], num_oov_indices=0)(np.array(["b"]))
    with pytest.raises(ValueError, match="cannot adapt"):
        StringLookup(vocabulary=["a"]).adapt(np.array(["a"]))
    with pytest.raises(ValueError, match="needs its vocabulary"):
        StringLookup(output_mode="count")(np.array([["a"]]))
    with pytest.raises(TypeError, match="before fit"):
        StringLookup(vocabulary=["a"])(kilnet.Input(shape=(2,)))
    with pytest.raises(TypeError, match=r"ds.map\(lambda x, y"):
        TextVectorization()(kilnet.Input(shape=(1,)))
    with pytest.raises(ValueError, match="ragged=True"):
        TextVectorization(ragged=True)
    with pytest.raises(ValueError, match="callable standardize cannot be saved"):
        TextVectorization(standardize=lambda s: s).get_config()


def test_text_vectorization_pipeline_reference():
    sentences = np.array(["The CAT, the hat!", "a Cat's   hat", "É\tthe\ndog"])
    layer = TextVectorization(output_sequence_length=5)
    layer.adapt(sentences)
    # Reference: ASCII lowercase, remove ASCII punctuation, split on ASCII whitespace.
    import string
    table = str.maketrans(string.ascii_uppercase, string.ascii_lowercase, string.punctuation)
    tokens = [s.translate(table).split() for s in sentences]
    assert layer.get_vocabulary() == _reference_vocabulary(
        [t for row in tokens for t in row], ["", "[UNK]"])
    out = layer(sentences)
    vocab = layer.get_vocabulary()
    expected = np.zeros((3, 5), np.int32)
    for i, row in enumerate(tokens):
        ids = [vocab.index(t) for t in row][:5]
        expected[i, :len(ids)] = ids
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.int32 and "É" in vocab  # tf.strings.lower is ASCII-only
    long = layer(np.array(["the the the the the the the hat"]))
    np.testing.assert_array_equal(long, [[vocab.index("the")] * 5])
    ragged = TextVectorization(vocabulary=["x", "y"])(np.array(["x y y", "y"]))
    np.testing.assert_array_equal(ragged, [[2, 3, 3], [3, 0, 0]])


def test_text_vectorization_modes_ngrams_and_round_trip():
    layer = TextVectorization(ngrams=2, output_mode="count", split="whitespace",
                              standardize="lower")
    layer.adapt(iter([np.array(["a b", "b c"]), np.array(["c c"])]))  # batches
    vocab = layer.get_vocabulary()
    assert vocab[0] == "[UNK]" and set(vocab[1:]) == {"a", "b", "c", "a b", "b c", "c c"}
    out = layer(np.array(["A b b"]))
    expected = np.zeros((1, len(vocab)), np.float32)
    for t in ["a", "b", "b", "a b", "b b"]:
        expected[0, vocab.index(t) if t in vocab else 0] += 1
    np.testing.assert_array_equal(out, expected)
    chars = TextVectorization(split="character", standardize=None, output_mode="multi_hot")
    chars.adapt(np.array(["abca"]))
    assert chars.get_vocabulary() == ["[UNK]", "a", "c", "b"]
    config = layer.get_config()
    again = TextVectorization.from_config(config)
    assert again.get_config() == config
    np.testing.assert_array_equal(again(np.array(["A b b"])), out)


def test_tiny_text_classifier_trains():
    rng = np.random.default_rng(0)
    good, bad = ["great", "fine", "lovely"], ["awful", "bad", "poor"]
    texts, labels = [], []
    for i in range(64):
        words = list(rng.choice(good if i % 2 else bad, size=3)) + ["movie"]
        texts.append(" ".join(words) + "!")
        labels.append(i % 2)
    texts, labels = np.array(texts), np.array(labels, np.float32)
    vectorize = TextVectorization(max_tokens=20, output_sequence_length=6)
    vectorize.adapt(texts)
    x = vectorize(texts)
    model = kilnet.Sequential([
        kilnet.Input(shape=(6,), dtype="int32"),
        kilnet.layers.Embedding(20, 8),
        kilnet.layers.GlobalAveragePooling1D(),
        kilnet.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=kilnet.optimizers.Adam(0.05), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, labels, epochs=15, batch_size=16, verbose=0, seed=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert history.history["accuracy"][-1] == 1.0  # the words tell the classes apart


def test_a_standardize_function_returning_bytes_is_decoded_as_utf8():
    """tf.strings.lower / regex_replace return UTF-8 bytes (the translation tutorial's
    custom_standardization); accented words must come back as the same text."""
    def to_lower_bytes(text):
        return np.char.encode(np.char.lower(np.asarray(text, dtype=str)), "utf-8")

    layer = TextVectorization(standardize=to_lower_bytes)
    layer.adapt(["Qué tal", "qué pasa", "hola"])
    vocabulary = layer.get_vocabulary()
    assert "qué" in vocabulary and vocabulary.count("qué") == 1
    ids = np.asarray(layer(["QUÉ hola"]))
    assert ids[0, 0] == vocabulary.index("qué") and ids[0, 1] == vocabulary.index("hola")
