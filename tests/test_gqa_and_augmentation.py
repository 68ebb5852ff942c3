"""GroupQueryAttention, RandomPerspective, RandomElasticTransform, AugMix and HashedCrossing
against Keras 3 itself: values with kilnet's weights copied into the Keras layer (which also
proves their names, order and shapes), masks, configs with Keras's keys, `.keras` files both
ways; the random layers' deterministic parts equal to Keras's with the same draws, their random
parts by properties, inference, then errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402


def normal(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


# -- GroupQueryAttention --------------------------------------------------------------------------
def gqa_pair(inputs, **kwargs):
    """A kilnet GroupQueryAttention built on `inputs` with random weights, and Keras's with the
    same weights (set_weights: Keras's order and shapes)."""
    arguments = dict(head_dim=3, num_query_heads=4, num_key_value_heads=2)
    arguments.update(kwargs)
    ours, theirs = (layers.GroupQueryAttention(**arguments),
                    keras.layers.GroupQueryAttention(**arguments))
    query, value, *key = inputs
    ours(query, value, key=key[0] if key else None)
    theirs(query, value, key=key[0] if key else None)
    ours.set_weights([normal(w.shape, i, 0.5) for i, w in enumerate(ours.get_weights())])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


GQA_CASES = [
    ("self", {}, {}),
    ("multi_query", {"num_key_value_heads": 1}, {}),
    ("multi_head", {"num_key_value_heads": 4}, {}),
    ("no_bias_gate", {"use_bias": False, "use_gate": True}, {}),
    ("causal", {}, {"use_causal_mask": True}),
    ("window", {"sliding_window": 2}, {"use_causal_mask": True}),
    ("scores", {}, {"return_attention_scores": True}),
    ("masks", {}, {"attention_mask": "random", "return_attention_scores": True}),
]


@pytest.mark.parametrize("kwargs, options", [c[1:] for c in GQA_CASES],
                         ids=[c[0] for c in GQA_CASES])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_gqa_matches_keras(kwargs, options, cross):
    query = normal((2, 5, 6), 10)
    inputs = [query, normal((2, 4, 6), 11), normal((2, 4, 7), 12)] if cross else [query, query]
    ours, theirs = gqa_pair(inputs, **kwargs)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    options = dict(options)
    if options.get("attention_mask") == "random":
        mask = np.random.default_rng(3).random((2, 5, inputs[1].shape[1])) > 0.4
        mask[:, :, 0] = True     # no query without a key
        options["attention_mask"] = mask
    key = inputs[2] if len(inputs) == 3 else None
    got = ours(inputs[0], inputs[1], key=key, **options)
    expected = theirs(inputs[0], inputs[1], key=key, **options)
    if options.get("return_attention_scores"):
        assert got[1].shape == (2, 4, 5, inputs[1].shape[1])
        close(got[1], expected[1], rtol=1e-4)
        got, expected = got[0], expected[0]
    close(got, expected, rtol=1e-4, atol=1e-5)


def test_gqa_shares_key_value_heads():
    """Query heads of one group attend with the same key and value head: with equal query
    projections for heads 0 and 1 (one group), their scores are equal; heads 1 and 2 (two
    groups) differ."""
    gqa = layers.GroupQueryAttention(head_dim=2, num_query_heads=4, num_key_value_heads=2)
    x = normal((1, 3, 4), 1)
    gqa(x, x)
    weights = [np.array(w) for w in gqa.get_weights()]
    kernel = weights[0]                       # query kernel (features, heads, head_dim)
    kernel[:, 1] = kernel[:, 0]
    kernel[:, 2] = kernel[:, 0]
    gqa.set_weights(weights)
    _, scores = gqa(x, x, return_attention_scores=True)
    scores = np.asarray(scores)
    close(scores[:, 0], scores[:, 1])
    assert not np.allclose(scores[:, 1], scores[:, 2], atol=1e-4)


def test_gqa_config_has_keras_keys_and_round_trips():
    ours = layers.GroupQueryAttention(4, 4, 2, dropout=0.1, use_gate=True, sliding_window=3,
                                      seed=7)
    theirs = keras.layers.GroupQueryAttention(4, 4, 2, dropout=0.1, use_gate=True,
                                              sliding_window=3, seed=7)
    config = ours.get_config()
    assert set(config) == set(theirs.get_config())
    for key in ("head_dim", "num_query_heads", "num_key_value_heads", "dropout", "use_gate",
                "sliding_window", "seed", "use_bias"):
        assert config[key] == theirs.get_config()[key]
    again = layers.GroupQueryAttention.from_config(config)
    assert again.get_config() == config
    assert layers.LAYER_TYPES["GroupQueryAttention"] is layers.GroupedQueryAttention
    assert ours.name.startswith("grouped_query_attention")   # Keras's, from its class name


def test_gqa_dropout_only_in_training():
    gqa = layers.GroupQueryAttention(2, 2, 1, dropout=0.5)
    x = normal((2, 6, 4), 2)
    inference = np.asarray(gqa(x, x))
    close(gqa(x, x, training=False), inference)
    params = gqa.params_tree()
    dropped = gqa.apply(params, {}, x, x, training=True, rng=jax.random.key(0),
                        return_attention_scores=False)[0]
    assert not np.allclose(dropped, inference, atol=1e-4)


def test_gqa_in_a_model_keras_file_both_ways(tmp_path):
    """Embedding(mask_zero=True) masks reach the layer as query/value masks, as in Keras; the
    model saved as .keras predicts the same in Keras and in kilnet again."""
    tokens = kilnet.Input(shape=(5,), dtype="int32")
    embedded = layers.Embedding(10, 6, mask_zero=True)(tokens)
    attended = layers.GroupQueryAttention(3, 4, 2, use_gate=True)(embedded, embedded,
                                                                  use_causal_mask=True)
    model = kilnet.Model(tokens, layers.Dense(2)(attended))
    x = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]], np.int32)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "gqa.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.layers[2]).__name__ == "GroupedQueryAttention"
    # Padded query steps attend to no key: kilnet gives them zeros (Keras's masked softmax),
    # Keras's fused path the mean of the values (as for MultiHeadAttention); compare the rest.
    real = x != 0
    close(loaded.predict(x, verbose=0)[real], expected[real], rtol=1e-4)
    again = kilnet.models.load_model(path)
    close(again.predict(x, verbose=0), expected)
    # and back: the Keras model saved by Keras opens in kilnet
    keras_path = tmp_path / "from_keras.keras"
    loaded.save(keras_path)
    close(kilnet.models.load_model(keras_path).predict(x, verbose=0), expected, rtol=1e-4)


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.GroupQueryAttention(4, 6, 4), ValueError,
     r"num_query_heads must be a multiple of num_key_value_heads.*Received: "
     r"num_query_heads=6, num_key_value_heads=4"),
    (lambda: layers.GroupQueryAttention(0, 2, 1), ValueError,
     r"head_dim must be a positive integer. Received: head_dim=0"),
    (lambda: layers.GroupQueryAttention(2, 2, 1.5), ValueError,
     r"num_key_value_heads must be a positive integer. Received"),
    (lambda: layers.GroupQueryAttention(2, 2, 1, flash_attention=True), ValueError,
     r"flash_attention.*Received: flash_attention=True"),
    (lambda: layers.GroupQueryAttention(2, 2, 1)(np.ones((1, 2, 4)), np.ones((1, 3, 5))),
     ValueError, r"value with as many features as query.*Received: query of shape"),
    (lambda: layers.GroupQueryAttention(2, 2, 1, seed="s"), TypeError,
     r"seed must be an integer.*Received: seed='s'"),
])
def test_gqa_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


# -- RandomPerspective, RandomElasticTransform, AugMix --------------------------------------------
def images(shape=(3, 6, 7, 3), seed=0, scale=255.0):
    return (np.random.default_rng(seed).uniform(size=shape) * scale).astype(np.float32)


_COMPILED = {}


def run(layer, x, training=True, key=0):
    """The layer as a compiled model runs it, with the JAX key `key` (one compilation per
    layer and mode)."""
    cache = (id(layer), training)
    if cache not in _COMPILED:
        _COMPILED[cache] = (layer, jax.jit(
            lambda x, k: layer.apply({}, {}, x, training=training, rng=k)[0]))
    return np.asarray(_COMPILED[cache][1](x, jax.random.key(key)))


@pytest.mark.parametrize("interpolation, fill_value", [("bilinear", 0.0), ("nearest", 7.0)])
def test_perspective_warp_matches_keras(interpolation, fill_value):
    """Given the same corner shifts, kilnet's warp is Keras's (images not applied unchanged)."""
    x = images((3, 6, 7, 2))
    shifts = np.random.default_rng(1).uniform(-0.3, 0.3, (3, 4, 2)).astype(np.float32)
    applied = np.array([True, False, True])
    ours = layers.RandomPerspective(interpolation=interpolation, fill_value=fill_value)
    theirs = keras.layers.RandomPerspective(interpolation=interpolation,
                                            fill_value=fill_value)
    start = np.repeat(np.array([[[0, 0], [6, 0], [0, 5], [6, 5]]], np.float32), 3, axis=0)
    expected = theirs.transform_images(x, {"apply_perspective": applied,
                                           "start_points": start,
                                           "end_points": start + start * shifts})
    got = ours.warp(x, shifts, applied)
    close(got, expected, rtol=1e-4, atol=1e-3)
    close(got[1], x[1])
    assert not np.allclose(got[0], x[0])


@pytest.mark.parametrize("fill_mode, interpolation", [("reflect", "bilinear"),
                                                      ("constant", "nearest"),
                                                      ("mirror", "bilinear")])
def test_elastic_distortion_matches_keras(fill_mode, interpolation):
    """One image with the same key and strength: Keras's noise field, blur and resampling."""
    x = images((1, 12, 10, 3), seed=2)
    ours = layers.RandomElasticTransform(scale=(0.6, 0.6), fill_mode=fill_mode,
                                         interpolation=interpolation, fill_value=9.0)
    theirs = keras.layers.RandomElasticTransform(scale=(0.6, 0.6), fill_mode=fill_mode,
                                                 interpolation=interpolation, fill_value=9.0)
    # Keras's image ops turn an integer seed s into the raw key [s, 0]
    key = jax.random.wrap_key_data(np.array([5, 0], np.uint32))
    expected = theirs.transform_images(x, {"apply_transform": np.array([True]),
                                           "distortion_factor": np.float32(0.6), "seed": 5})
    got = ours.distort(x, key[None], np.full((1,), 0.6, np.float32), np.array([True]))
    assert not np.allclose(got, x, atol=1.0)
    close(got, expected, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("make", [
    lambda: layers.RandomPerspective(factor=(1.0, 1.0), scale=0.6),
    lambda: layers.RandomElasticTransform(factor=(1.0, 1.0)),
    lambda: layers.AugMix(num_chains=2, chain_depth=1),
], ids=["perspective", "elastic", "augmix"])
def test_random_layers_properties(make):
    """Training changes images, each by its own draw (an image's output does not depend on
    the others of its batch), within the value range; inference passes them through."""
    layer = make()
    x = images((3, 8, 8, 3), seed=3)
    out = run(layer, x)
    assert out.shape == x.shape and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 255.0 + 1e-3
    assert not np.allclose(out, x, atol=1e-2)
    close(run(layer, x[:2]), out[:2], atol=1e-3)
    assert not np.allclose(run(layer, x, key=1), out, atol=1e-2)
    close(run(layer, x, training=False), x)
    assert layer(x[0], training=True).shape == x[0].shape     # one unbatched image


def test_never_applied_or_zero_strength_is_identity():
    x = images((2, 6, 6, 1), seed=4)
    close(run(layers.RandomPerspective(factor=0.0), x), x)
    close(run(layers.RandomPerspective(scale=0.0), x), x, atol=1e-3)
    close(run(layers.RandomElasticTransform(factor=0.0), x), x)
    close(run(layers.RandomElasticTransform(scale=0.0), x), x)
    # AugMix with no operation in its chains: the image mixed with itself
    close(run(layers.AugMix(chain_depth=0), x), x, atol=1e-3)


@pytest.mark.parametrize("factor, share", [((0.5, 0.5), 0.5), (1.0, 0.5), ((0.8, 1.0), 0.9)])
def test_perspective_probability_follows_factor(factor, share):
    """An image is warped when a threshold drawn in [0, 1) falls below a probability drawn in
    factor, as Keras (so the default factor=1.0 warps about half the images)."""
    layer = layers.RandomPerspective(factor=factor, scale=0.8)
    x = images((200, 5, 5, 1), seed=5)
    changed = np.abs(run(layer, x) - x).reshape(200, -1).max(axis=1) > 1e-3
    assert abs(changed.mean() - share) < 0.1


@pytest.mark.parametrize("name, kwargs", [
    ("RandomPerspective", {"factor": (0.2, 0.7), "scale": 0.4, "interpolation": "nearest",
                           "fill_value": 3.0, "seed": 5}),
    ("RandomElasticTransform", {"factor": 0.5, "scale": (0.1, 0.3), "fill_mode": "constant",
                                "value_range": (0, 1), "seed": 2}),
    ("AugMix", {"value_range": (0, 1), "num_chains": 2, "chain_depth": 1, "factor": 0.4,
                "alpha": 0.5, "all_ops": False, "interpolation": "nearest", "seed": 3}),
])
def test_augmentation_configs_are_kerass(name, kwargs):
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    config, expected = ours.get_config(), theirs.get_config()
    config.pop("name"), expected.pop("name")
    assert config == expected
    assert getattr(layers, name).from_config(ours.get_config()).get_config() == \
        ours.get_config()


def test_augmentation_keras_files_both_ways(tmp_path):
    model = kilnet.Sequential([
        kilnet.Input(shape=(6, 6, 3)), layers.RandomPerspective(scale=0.3),
        layers.RandomElasticTransform(scale=0.5), layers.AugMix(num_chains=2, chain_depth=1),
        layers.Flatten(), layers.Dense(2)])
    x = images((2, 6, 6, 3), seed=7)
    expected = model.predict(x, verbose=0)
    path = tmp_path / "aug.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(layer).__name__ for layer in loaded.layers[:3]] == [
        "RandomPerspective", "RandomElasticTransform", "AugMix"]
    close(loaded.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)
    close(kilnet.models.load_model(path).predict(x, verbose=0), expected)
    keras_path = tmp_path / "from_keras.keras"      # and the file Keras writes, in kilnet
    loaded.save(keras_path)
    again = kilnet.models.load_model(keras_path)
    assert [type(layer).__name__ for layer in again.layers[:3]] == [
        "RandomPerspective", "RandomElasticTransform", "AugMix"]
    close(again.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.RandomPerspective(scale=1.5), ValueError,
     r"scale must be a number in \[0, 1\]. Received: scale=1.5"),
    (lambda: layers.RandomPerspective(factor=2), ValueError, r"factor must be.*factor=2"),
    (lambda: layers.RandomPerspective(interpolation="bicubic"), ValueError,
     r"interpolation must be one of.*Received: interpolation='bicubic'"),
    (lambda: layers.RandomElasticTransform(fill_mode="edge"), ValueError,
     r"fill_mode must be one of.*Received: fill_mode='edge'"),
    (lambda: layers.RandomElasticTransform(scale=-0.5), ValueError, r"scale must be.*-0.5"),
    (lambda: layers.RandomElasticTransform(value_range=3), ValueError,
     r"value_range must be a pair.*Received: value_range=3"),
    (lambda: layers.AugMix(num_chains=0), ValueError,
     r"num_chains must be an integer of at least 1. Received: num_chains=0"),
    (lambda: layers.AugMix(alpha=0), ValueError, r"alpha must be a positive.*alpha=0"),
    (lambda: layers.AugMix(all_ops="yes"), TypeError, r"all_ops must be True or False"),
    (lambda: layers.RandomPerspective(data_format="channels_first"), ValueError,
     r"channels_last.*Received: data_format='channels_first'"),
])
def test_augmentation_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()


# -- HashedCrossing -------------------------------------------------------------------------------
# Keras's HashedCrossing runs TensorFlow's tf.sparse.cross_hashed, and TensorFlow is not a test
# dependency: kilnet's bins were compared with Keras 3.15 + TensorFlow 2.21 (ints to +-1e12,
# int32, short and 80-byte strings, mixed, scalars; 3, 17 and 1000 bins; int and one_hot:
# all equal). Here they are checked against the examples in Keras's own docstring.
def keras_documented_examples():
    """(call source, expected output) of each example in keras.layers.HashedCrossing's
    docstring, with the expected array as Keras prints it."""
    import doctest
    examples = doctest.DocTestParser().get_examples(keras.layers.HashedCrossing.__doc__)
    setup, cases = [], []
    for example in examples:
        if example.want.strip():
            cases.append(("\n".join(setup), example.source, example.want))
        else:
            setup.append(example.source)
    return cases


@pytest.mark.parametrize("setup, call, want", keras_documented_examples())
def test_hashed_crossing_gives_kerass_documented_bins(setup, call, want):
    namespace = {"np": np, "keras": kilnet}    # the examples, on kilnet instead of Keras
    exec(setup, namespace)
    got = eval(call, namespace)
    expected = eval(want, {"array": np.array, "float32": np.float32})
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert np.asarray(got).dtype == (np.int32 if expected.ndim == 1 else np.float32)


def test_hashed_crossing_order_kind_and_shapes():
    layer = layers.HashedCrossing(num_bins=1000)
    a, b = np.array([1, 2, 3, 4]), np.array([5, 6, 7, 8])
    ab, ba = layer((a, b)), layer((b, a))
    assert ab.shape == (4,) and not np.array_equal(ab, ba)      # a cross is ordered
    # an integer's fingerprint is its value, not its text: 7 and "7" cross differently
    assert not np.array_equal(layer((a, b)), layer((a, b.astype(str))))
    np.testing.assert_array_equal(layer((a[:, None], b[:, None])), ab[:, None])
    assert np.ndim(layer((np.array("x"), np.array(3)))) == 0
    np.testing.assert_array_equal(layer((a, b, a)), layer([a, b, a]))
    one_hot = layers.HashedCrossing(1000, output_mode="one_hot")((a, b))
    np.testing.assert_array_equal(one_hot, np.eye(1000, dtype=np.float32)[ab])
    # 64-bit integers keep all their bits on the data
    big = np.array([2**40 + 1, 2**40 + 2])
    assert not np.array_equal(layer((big, b[:2])), layer((big.astype(np.int32), b[:2])))


def test_hashed_crossing_in_a_compiled_model_and_files(tmp_path):
    first = kilnet.Input(shape=(1,), dtype="int32")
    second = kilnet.Input(shape=(1,), dtype="int32")
    model = kilnet.Model([first, second], layers.HashedCrossing(7)([first, second]))
    a = np.arange(6, dtype=np.int32)[:, None]
    b = (np.arange(6, dtype=np.int32) * 3)[:, None]
    expected = layers.HashedCrossing(7)((a, b))
    np.testing.assert_array_equal(model.predict([a, b], verbose=0), expected)
    for name in ("m.keras", "m.kilnet"):
        model.save(tmp_path / name)
        again = kilnet.models.load_model(tmp_path / name)
        np.testing.assert_array_equal(again.predict([a, b], verbose=0), expected)
    config = layers.HashedCrossing(3, output_mode="one_hot").get_config()
    assert {"num_bins", "output_mode", "sparse", "name"} <= set(config)
    assert layers.HashedCrossing.from_config(config).get_config() == config
    # Keras's config says dtype "int64" for ids; kilnet reads it (its ids are int32)
    assert layers.HashedCrossing.from_config({**config, "output_mode": "int",
                                              "dtype": "int64"}).output_mode == "int"


@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.HashedCrossing(0), ValueError,
     r"num_bins must be a positive integer.*Received: num_bins=0"),
    (lambda: layers.HashedCrossing(3, output_mode="count"), ValueError,
     r"output_mode must be one of \['int', 'one_hot'\]. Received: output_mode='count'"),
    (lambda: layers.HashedCrossing(3, sparse=True), ValueError, r"sparse=True"),
    (lambda: layers.HashedCrossing(3)(np.array([1, 2])), ValueError,
     r"list or tuple of at least two features. Received"),
    (lambda: layers.HashedCrossing(3)((np.array([1, 2]), np.array([1, 2, 3]))), ValueError,
     r"must all have one shape. Received"),
    (lambda: layers.HashedCrossing(3)((np.ones((2, 2), int), np.ones((2, 2), int))),
     ValueError, r"shape \(\), \(batch,\) or \(batch, 1\). Received"),
    (lambda: layers.HashedCrossing(3)((np.array([1.5]), np.array([1]))), TypeError,
     r"integer or string features. Received: a feature of dtype float64"),
])
def test_hashed_crossing_bad_arguments_are_named(make, error, match):
    with pytest.raises(error, match=match):
        make()
