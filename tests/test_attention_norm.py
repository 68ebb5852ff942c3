"""Attention (MultiHeadAttention, Attention) and per-sample normalizations (LayerNormalization,
GroupNormalization, UnitNormalization): shapes and dtypes, values against Keras 3 (kilnet's
weights copied into the Keras layer with set_weights, which also proves their order and shapes)
and NumPy, gradients against finite differences, configs, training and saving, then errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet.models import load_model  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402

KEY = jax.random.PRNGKey(0)


def normal(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def randomize(layer, seed=1):
    """Weights away from their initial values (ones, zeros), so that parity tests see them."""
    layer.set_weights([normal(w.shape, seed + i, 0.5) + (1.0 if not w.shape else 0.0)
                       for i, w in enumerate(layer.get_weights())])


def close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


def mask_with_a_key_per_row(shape, seed=0):
    """A random attention mask in which query i may attend to key i, so that no row is empty
    even with a causal mask or a sliding window."""
    mask = np.random.default_rng(seed).random(shape) > 0.4
    diagonal = np.arange(min(shape[-2:]))
    mask[..., diagonal, diagonal] = True
    return mask


# -- shapes and dtypes ----------------------------------------------------------------------------
# (name, layer, input shapes without the batch axis, call options, output shapes)
SHAPE_CASES = [
    ("layernorm", lambda: layers.LayerNormalization(), [(4, 6)], {}, [(4, 6)]),
    ("layernorm_axes", lambda: layers.LayerNormalization(axis=[1, 2]), [(3, 4, 5)], {},
     [(3, 4, 5)]),
    ("groupnorm", lambda: layers.GroupNormalization(groups=3), [(5, 5, 6)], {}, [(5, 5, 6)]),
    ("unitnorm", lambda: layers.UnitNormalization(axis=[-2, -1]), [(3, 4)], {}, [(3, 4)]),
    ("mha_self", lambda: layers.MultiHeadAttention(2, 3), [(5, 6), (5, 6)], {}, [(5, 6)]),
    ("mha_cross", lambda: layers.MultiHeadAttention(2, 3, value_dim=4, output_shape=(2, 3)),
     [(5, 6), (7, 4), (7, 3)], {"return_attention_scores": True}, [(5, 2, 3), (2, 5, 7)]),
    ("attention", lambda: layers.Attention(), [(5, 4), (7, 3), (7, 4)],
     {"return_attention_scores": True}, [(5, 3), (5, 7)]),
]


def _arguments(layer, xs, options):
    """How each layer takes its inputs: one array, [query, value, key], or query, value and
    key=..."""
    if isinstance(layer, layers.Attention):
        return (list(xs),), options
    if isinstance(layer, layers.MultiHeadAttention):
        return tuple(xs[:2]), ({**options, "key": xs[2]} if len(xs) == 3 else options)
    return (xs[0],), options


@pytest.mark.parametrize("make, in_shapes, options, out_shapes",
                         [c[1:] for c in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES])
def test_output_shapes_and_dtypes(make, in_shapes, options, out_shapes):
    layer = make()
    build = in_shapes if len(in_shapes) > 1 else in_shapes[0]
    params, state, declared = layer.init(np.random.default_rng(0), build)
    assert declared == out_shapes[0] == layer.sample_output_shape(build)
    specs = [jax.ShapeDtypeStruct((3,) + s, jnp.float32) for s in in_shapes]

    def run(p, s, xs):
        args, kwargs = _arguments(layer, xs, options)
        return layer.apply(p, s, *args, training=True, rng=KEY, **kwargs)

    # Traced, not run: shapes and dtypes need no compilation (values are tested below).
    out, new_state = jax.eval_shape(run, params, state, specs)
    out = list(out) if isinstance(out, tuple) else [out]
    assert [o.shape for o in out] == [(3,) + s for s in out_shapes]
    assert all(o.dtype == jnp.float32 for o in out)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    # The same shapes on symbolic tensors (the functional API).
    args, kwargs = _arguments(make(), [kilnet.Input(shape=s) for s in in_shapes], options)
    symbolic = make()(*args, **kwargs)
    symbolic = list(symbolic) if isinstance(symbolic, tuple) else [symbolic]
    assert [t.shape for t in symbolic] == [(None,) + s for s in out_shapes]


# -- normalizations: values against Keras and NumPy -----------------------------------------------
NORM_CASES = [
    ("layernorm", dict(cls="LayerNormalization"), (3, 4, 6)),
    ("layernorm_axes_eps", dict(cls="LayerNormalization", axis=[1, 2], epsilon=0.1), (2, 3, 4, 5)),
    ("layernorm_axis1_no_center", dict(cls="LayerNormalization", axis=1, center=False),
     (3, 4, 6)),
    ("layernorm_no_scale", dict(cls="LayerNormalization", scale=False), (3, 4, 6)),
    ("groupnorm_images", dict(cls="GroupNormalization", groups=3), (2, 4, 3, 6)),
    ("groupnorm_instance", dict(cls="GroupNormalization", groups=-1, epsilon=0.01), (3, 4, 6)),
    ("groupnorm_axis1", dict(cls="GroupNormalization", groups=2, axis=1, scale=False),
     (3, 4, 6)),
    ("unitnorm_axes", dict(cls="UnitNormalization", axis=[1, 2]), (3, 4, 6)),
]


@pytest.mark.parametrize("spec, shape", [c[1:] for c in NORM_CASES],
                         ids=[c[0] for c in NORM_CASES])
def test_normalizations_match_keras(spec, shape):
    arguments = {k: v for k, v in spec.items() if k != "cls"}
    layer = getattr(layers, spec["cls"])(**arguments)
    x = normal(shape, 3, 2.0) + 1.0
    layer(x)  # builds
    randomize(layer)
    ours = layer(x)
    theirs = getattr(keras.layers, spec["cls"])(**arguments)
    theirs(x)
    theirs.set_weights(layer.get_weights())
    assert [w.shape for w in theirs.weights] == [w.shape for w in layer.weights]
    assert [w.name for w in theirs.weights] == [w.name for w in layer.weights]
    assert ours.shape == x.shape and ours.dtype == jnp.float32
    close(ours, theirs(x))


def test_layer_and_group_normalization_match_numpy():
    x = normal((4, 3, 6), 5, 3.0).astype(np.float64)
    layer = layers.LayerNormalization(epsilon=0.01)
    layer(x.astype(np.float32))
    randomize(layer)
    gamma, beta = layer.get_weights()
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    close(layer(x.astype(np.float32)), (x - mean) / np.sqrt(var + 0.01) * gamma + beta)

    group = layers.GroupNormalization(groups=2, epsilon=0.01)
    group(x.astype(np.float32))
    randomize(group)
    gamma, beta = group.get_weights()
    grouped = x.reshape(4, 3, 2, 3)   # the two groups of three channels
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = grouped.var(axis=(1, 3), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + 0.01)).reshape(x.shape) * gamma + beta
    close(group(x.astype(np.float32)), expected)

    unit = layers.UnitNormalization()
    close(unit(x.astype(np.float32)), x / np.linalg.norm(x, axis=-1, keepdims=True))
    assert np.asarray(unit(np.zeros((1, 3), np.float32))).tolist() == [[0.0, 0.0, 0.0]]


def test_normalizations_ignore_the_batch_and_padding_rows():
    """Per-sample statistics: a sample's output does not depend on the rest of the batch,
    in training or not (so padded rows of a last batch cannot matter)."""
    x = normal((4, 3, 6), 7)
    for layer in (layers.LayerNormalization(), layers.GroupNormalization(groups=3)):
        params, state, _ = layer.init(np.random.default_rng(0), (3, 6))
        whole, _ = layer.apply(params, state, x, training=True,
                               sample_mask=jnp.array([True, True, False, False]))
        alone, _ = layer.apply(params, state, x[:1], training=False)
        close(whole[:1], alone, rtol=1e-6, atol=1e-6)


def test_normalization_gradients_match_finite_differences():
    x = normal((2, 3, 4), 1, 2.0)
    r = normal((2, 3, 4), 2)
    norm = layers.LayerNormalization(axis=[1, 2], epsilon=0.1)
    group = layers.GroupNormalization(groups=2, epsilon=0.1)
    unit = layers.UnitNormalization()

    def objective(x_, gamma, beta, group_gamma, group_beta):
        y = norm.apply({"gamma": gamma, "beta": beta}, {}, x_)[0]
        y = y + group.apply({"gamma": group_gamma, "beta": group_beta}, {}, x_)[0]
        return jnp.sum((y + unit.apply({}, {}, x_)[0]) * r)

    check_grad(objective, x, normal((3, 4), 3), normal((3, 4), 4), normal((4,), 5),
               normal((4,), 6))


# -- MultiHeadAttention: values against Keras -----------------------------------------------------
MHA_LAYERS = {
    "self": dict(num_heads=2, key_dim=3),
    "cross": dict(num_heads=2, key_dim=3, value_dim=4, dropout=0.3),
    "output_shape_no_bias": dict(num_heads=3, key_dim=2, output_shape=(4, 2), use_bias=False),
    "gate_window": dict(num_heads=2, key_dim=4, use_gate=True, sliding_window=2),
}
MHA_INPUTS = {"self": [(2, 5, 6)], "cross": [(2, 5, 6), (2, 7, 4), (2, 7, 3)],
              "output_shape_no_bias": [(2, 5, 6), (2, 7, 6)], "gate_window": [(2, 6, 4)]}
MASKS = {
    "no_mask": {},
    "causal": {"use_causal_mask": True},
    "attention_mask": {"attention_mask": "mask"},
    "mask_and_causal": {"attention_mask": "mask", "use_causal_mask": True},
}


def _mha_call(layer, xs, options, scores):
    query, value = xs[0], (xs[1] if len(xs) > 1 else xs[0])
    kwargs = dict(options)
    if len(xs) == 3:
        kwargs["key"] = xs[2]
    return layer(query, value, return_attention_scores=scores, **kwargs)


@pytest.mark.parametrize("case, masks", [
    ("self", "no_mask"), ("self", "mask_and_causal"), ("cross", "attention_mask"),
    ("output_shape_no_bias", "causal"), ("gate_window", "mask_and_causal"),
])
def test_multi_head_attention_matches_keras(case, masks):
    xs = [normal(s, i) for i, s in enumerate(MHA_INPUTS[case])]
    t, s = xs[0].shape[1], xs[-1].shape[1] if len(xs) > 1 else xs[0].shape[1]
    options = {k: (mask_with_a_key_per_row((2, t, s)) if v == "mask" else v)
               for k, v in MASKS[masks].items()}
    layer = layers.MultiHeadAttention(**MHA_LAYERS[case])
    _mha_call(layer, xs, options, False)  # builds
    randomize(layer)
    out, scores = _mha_call(layer, xs, options, True)
    theirs = keras.layers.MultiHeadAttention(**MHA_LAYERS[case])
    _mha_call(theirs, xs, options, True)
    theirs.set_weights(layer.get_weights())
    assert [w.path.split("/", 1)[1] for w in theirs.weights] == [
        "/".join(path[1:]) for path, _, _ in layer.variable_paths((layer.name,))]
    assert [tuple(w.shape) for w in theirs.weights] == [w.shape for w in layer.weights]
    keras_out, keras_scores = _mha_call(theirs, xs, options, True)
    close(out, keras_out)
    close(scores, keras_scores)
    assert out.dtype == scores.dtype == jnp.float32
    # Without the scores kilnet computes the same; so does Keras's fused path where Keras can
    # take it (its JAX path needs value_dim == key_dim).
    plain = _mha_call(layer, xs, options, False)
    np.testing.assert_array_equal(plain, out)
    if layer.value_dim == layer.key_dim:
        close(plain, _mha_call(theirs, xs, options, False))


def test_multi_head_attention_matches_numpy():
    """One head, no biases: softmax(q k^T / sqrt(d)) v, projected."""
    layer = layers.MultiHeadAttention(num_heads=1, key_dim=3, use_bias=False)
    x = normal((2, 4, 5), 1)
    layer(x, x)
    randomize(layer)
    wq, wk, wv, wo = layer.get_weights()   # (5, 1, 3) x 3 and (1, 3, 5): one head
    wq, wk, wv, wo = wq[:, 0], wk[:, 0], wv[:, 0], wo[0]
    xd = x.astype(np.float64)
    scores = (xd @ wq) @ (xd @ wk).transpose(0, 2, 1) / np.sqrt(3)
    causal = np.tril(np.ones((4, 4), bool))
    scores = np.where(causal, scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    close(layer(x, x, use_causal_mask=True), probs @ (xd @ wv) @ wo)


def test_a_fully_masked_query_attends_to_nothing_as_keras_masked_softmax():
    """Keras's masked Softmax zeroes the probabilities of masked keys, so a query that may
    attend to no key gets zeros (then the output projection's bias). Keras's fused path (taken
    without return_attention_scores) gives that row a uniform average instead; kilnet gives
    the same in both cases."""
    x = normal((1, 3, 4), 2)
    mask = np.ones((1, 3, 3), bool)
    mask[0, 1] = False
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=2)
    layer(x, x)
    randomize(layer)
    out, scores = layer(x, x, attention_mask=mask, return_attention_scores=True)
    assert not np.asarray(scores)[0, :, 1].any()
    close(out[0, 1], layer.get_weights()[-1])   # the output bias alone
    theirs = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)
    theirs(x, x)
    theirs.set_weights(layer.get_weights())
    close(out, theirs(x, x, attention_mask=mask, return_attention_scores=True)[0])


def test_multi_head_attention_gradients_match_finite_differences():
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=2, value_dim=3)
    query, value = normal((1, 3, 4), 1), normal((1, 4, 2), 2)
    params, state, _ = layer.init(np.random.default_rng(0), [(3, 4), (4, 2)])
    mask = mask_with_a_key_per_row((1, 3, 4), 3)
    r = normal((1, 3, 4), 4)

    def objective(q, v, query_kernel):
        p = {**params, "query": {**params["query"], "kernel": query_kernel}}
        out, _ = layer.apply(p, state, q, v, attention_mask=mask, use_causal_mask=True)
        return jnp.sum(out * r)

    check_grad(objective, query, value, np.asarray(params["query"]["kernel"]))


def test_attention_dropout_uses_the_key_and_only_in_training():
    layer = layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.5)
    x = normal((2, 5, 6), 1)
    params, state, _ = layer.init(np.random.default_rng(0), (5, 6))
    run = jax.jit(lambda training, key: layer.apply(params, state, x, x, training=training,
                                                    rng=key), static_argnums=0)
    inference = run(False, None)[0]
    np.testing.assert_array_equal(inference, run(False, KEY)[0])
    first, again = run(True, KEY)[0], run(True, KEY)[0]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, inference)
    assert not np.allclose(first, run(True, jax.random.PRNGKey(1))[0])
    with pytest.raises(ValueError, match="without a random key"):
        layer.apply(params, state, x, x, training=True, rng=None)


# -- Attention: values against Keras --------------------------------------------------------------
ATTENTION_LAYERS = {
    "dot": dict(),
    "dot_scale": dict(use_scale=True),
    "concat": dict(score_mode="concat"),
    "concat_scale": dict(score_mode="concat", use_scale=True),
}
ATTENTION_CALLS = {
    "plain": {},
    "key_and_masks": {"key": True, "mask": True},
    "causal_and_value_mask": {"use_causal_mask": True, "mask": True},
}


@pytest.mark.parametrize("case, call", [
    ("dot", "plain"), ("dot", "causal_and_value_mask"), ("dot_scale", "key_and_masks"),
    ("concat", "causal_and_value_mask"), ("concat_scale", "key_and_masks"),
])
def test_attention_matches_keras(case, call):
    query, value, key = normal((2, 4, 3), 1), normal((2, 5, 6), 2), normal((2, 5, 3), 3)
    if "key" not in ATTENTION_CALLS[call]:
        value = value[..., :3]   # the value is the key
    inputs = [query, value, key] if "key" in ATTENTION_CALLS[call] else [query, value]
    options = {k: v for k, v in ATTENTION_CALLS[call].items() if k in ("use_causal_mask",)}
    if "mask" in ATTENTION_CALLS[call]:
        query_mask = np.array([[True, False, True, True], [True, True, True, False]])
        options["mask"] = [query_mask, mask_with_a_key_per_row((2, 5), 4)]
    layer = layers.Attention(**ATTENTION_LAYERS[case])
    layer(inputs)  # builds
    randomize(layer)
    out, scores = layer(inputs, return_attention_scores=True, **options)
    theirs = keras.layers.Attention(**ATTENTION_LAYERS[case])
    theirs(inputs)
    theirs.set_weights(layer.get_weights())
    assert [w.name for w in theirs.weights] == [w.name for w in layer.weights]
    keras_out, keras_scores = theirs(inputs, return_attention_scores=True, **options)
    close(out, keras_out)
    close(scores, keras_scores)
    np.testing.assert_array_equal(layer(inputs, **options), out)
    assert out.shape == query.shape[:2] + (value.shape[-1],)


def test_attention_matches_numpy():
    query, value = normal((2, 3, 4), 1).astype(np.float64), normal((2, 5, 4), 2).astype(np.float64)
    scores = query @ value.transpose(0, 2, 1)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    close(layers.Attention()([query.astype(np.float32), value.astype(np.float32)]),
          probs @ value)


def test_attention_dropout_drops_probabilities_and_rescales():
    """With the identity as value, the output is the dropped-out probabilities."""
    layer = layers.Attention(dropout=0.5)
    query, value = normal((1, 6, 8), 1), np.eye(8, dtype=np.float32)[None]
    params, state, _ = layer.init(np.random.default_rng(0), [(6, 8), (8, 8)])
    (out, probs), _ = jax.jit(lambda k: layer.apply(params, state, [query, value], training=True,
                                                    rng=k, return_attention_scores=True))(KEY)
    out, probs = np.asarray(out), np.asarray(probs)
    kept = out != 0
    assert 0.2 < kept.mean() < 0.8
    close(out[kept], probs[kept] / 0.5, rtol=1e-6, atol=0)
    inference, _ = layer.apply(params, state, [query, value], training=False)
    close(inference, probs, rtol=1e-6, atol=1e-7)


def test_attention_gradients_match_finite_differences():
    layer = layers.Attention(use_scale=True, score_mode="concat")
    query, value = normal((1, 3, 2), 1), normal((1, 4, 2), 2)
    value_mask = np.array([[True, True, False, True]])
    r = normal((1, 3, 2), 3)

    def objective(q, v, scale, weight):
        out, _ = layer.apply({"scale": scale, "concat_score_weight": weight}, {}, [q, v],
                             mask=[None, value_mask], use_causal_mask=True)
        return jnp.sum(out * r)

    check_grad(objective, query, value, np.float32(0.7), np.float32(1.3))


# -- configs ------------------------------------------------------------------------------------
CONFIG_CASES = [
    ("LayerNormalization", dict(axis=[1, 2], epsilon=0.01, center=False)),
    ("GroupNormalization", dict(groups=4, axis=-1, epsilon=0.1, scale=False)),
    ("UnitNormalization", dict(axis=[1, 2])),
    ("MultiHeadAttention", dict(num_heads=2, key_dim=3, value_dim=5, dropout=0.1,
                                use_bias=False, output_shape=(4, 2), sliding_window=3,
                                use_gate=True)),
    ("Attention", dict(use_scale=True, score_mode="concat", dropout=0.2)),
]


@pytest.mark.parametrize("name, arguments", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_round_trip_with_keras_keys(name, arguments):
    layer = getattr(layers, name)(**arguments)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    keras_config = getattr(keras.layers, name)(**arguments).get_config()
    assert set(config) - {"name", "trainable"} <= set(keras_config)
    for key, value in arguments.items():
        expected = keras_config[key]
        assert config[key] == expected, key
    if name == "MultiHeadAttention":
        assert config["value_dim"] == 5 and config["output_shape"] == (4, 2)
        assert layers.MultiHeadAttention(2, 3).get_config()["value_dim"] == 3  # as Keras


# -- models: training, saving, the functional API and custom layers -------------------------------
def _fit_and_round_trip(model, x, y, tmp_path, epochs=4, fall=0.5):
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy")
    # Judged on the whole data with the dropout off, before and after: the epochs' mean
    # training losses fell by only 9-22% for the attention-and-norms model (11 weight and data
    # draws; after/before: transformer 0.14-0.24, attention and norms 0.63-0.85 in 10 epochs).
    assert_fit_lowers_loss(model, x, y, fall, batch_size=16, epochs=epochs)
    model.save(tmp_path / "m.kilnet")
    loaded = load_model(tmp_path / "m.kilnet")
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    return loaded


def test_transformer_block_trains_and_round_trips(tmp_path):
    kilnet.utils.set_random_seed(0)
    inputs = kilnet.Input(shape=(8, 16))
    attended = layers.MultiHeadAttention(num_heads=2, key_dim=8, dropout=0.1)(inputs, inputs)
    x = layers.LayerNormalization()(layers.Add()([inputs, attended]))
    outputs = layers.Dense(3, activation="softmax")(layers.Flatten()(x))
    model = kilnet.Model(inputs, outputs)
    x = normal((48, 8, 16), 1)
    y = np.random.default_rng(2).integers(0, 3, 48)
    loaded = _fit_and_round_trip(model, x, y, tmp_path)
    assert [p for p, _, _ in loaded.variable_paths()][:2] == [
        ("multi_head_attention", "query", "kernel"), ("multi_head_attention", "query", "bias")]


def test_attention_and_group_unit_norms_train_and_round_trip(tmp_path):
    kilnet.utils.set_random_seed(0)
    inputs = kilnet.Input(shape=(6, 4))
    x = layers.Attention(use_scale=True, score_mode="concat")([inputs, inputs])
    x = layers.UnitNormalization()(layers.GroupNormalization(groups=2)(x))
    model = kilnet.Model(inputs, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))
    x = normal((48, 6, 4), 3)
    y = np.random.default_rng(4).integers(0, 3, 48)
    _fit_and_round_trip(model, x, y, tmp_path, epochs=10, fall=0.95)


def test_cross_attention_with_a_key_a_mask_and_scores_in_a_model(tmp_path):
    """mha(query, value, key=..., attention_mask=..., return_attention_scores=True) on
    symbolic tensors: built from every input's shape, two outputs, saved and replayed."""
    query, value, key = (kilnet.Input(shape=(5, 6)), kilnet.Input(shape=(7, 4)),
                         kilnet.Input(shape=(7, 3)))
    mask = kilnet.Input(shape=(5, 7), dtype="bool")
    mha = layers.MultiHeadAttention(num_heads=2, key_dim=3, value_dim=2)
    out, scores = mha(query, value, key=key, attention_mask=mask, use_causal_mask=True,
                      return_attention_scores=True)
    assert mha.build_shape == [(5, 6), (7, 4), (7, 3)]
    model = kilnet.Model([query, value, key, mask], [out, scores])
    model.build(seed=0)
    arrays = [normal((3, 5, 6), 1), normal((3, 7, 4), 2), normal((3, 7, 3), 3),
              mask_with_a_key_per_row((3, 5, 7), 4)]
    predicted = model.predict(arrays, verbose=0)
    eager = mha(*arrays[:2], key=arrays[2], attention_mask=arrays[3], use_causal_mask=True,
                return_attention_scores=True)
    for a, b in zip(predicted, eager):
        close(a, b, rtol=1e-6, atol=1e-6)
    model.save(tmp_path / "cross.kilnet")
    loaded = load_model(tmp_path / "cross.kilnet")
    for a, b in zip(loaded.predict(arrays, verbose=0), predicted):
        np.testing.assert_array_equal(a, b)


class Block(layers.Layer):
    """A Keras-form layer holding attention: cross-attention to a context of another size."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = layers.MultiHeadAttention(num_heads=2, key_dim=4)
        self.norm = layers.LayerNormalization()

    def call(self, inputs):
        x, context = inputs
        return self.norm(x + self.attention(x, context))


def test_attention_inside_a_keras_form_layer_builds_from_every_input():
    x, context = normal((2, 3, 6), 1), normal((2, 5, 9), 2)
    block = Block()
    out = block([x, context])
    assert out.shape == (2, 3, 6)
    assert [w.shape for w in block.attention.weights][2] == (9, 2, 4)   # the key kernel
    params, state = block.params_tree(), block.state_tree()
    again, _ = block.apply(params, state, [x, context])
    close(again, out, rtol=1e-6, atol=1e-6)


def test_keyword_call_and_a_shared_layer():
    x = normal((2, 4, 6), 1)
    mha = layers.MultiHeadAttention(num_heads=1, key_dim=2)
    np.testing.assert_array_equal(mha(query=x, value=x), mha(x, x))
    a, b = kilnet.Input(shape=(4, 6)), kilnet.Input(shape=(3, 6))
    mha(a, b), mha(b, a)   # shared: the feature sizes it was built for
    with pytest.raises(ValueError, match="built for value with 6 features"):
        mha(a, kilnet.Input(shape=(3, 5)))


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.MultiHeadAttention(0, 2), ValueError, "num_heads must be a positive"),
    (lambda: layers.MultiHeadAttention(2, 2.5), ValueError, "key_dim must be a positive"),
    (lambda: layers.MultiHeadAttention(2, 2, value_dim=0), ValueError, "value_dim"),
    (lambda: layers.MultiHeadAttention(2, 2, dropout=1.0), ValueError, r"dropout.*\[0, 1\)"),
    (lambda: layers.MultiHeadAttention(2, 2, attention_axes=(0, 1)), ValueError,
     r"attention_axes must be None, an axis or a tuple of distinct axes between the batch"),
    (lambda: layers.MultiHeadAttention(2, 2, output_shape=(0,)), ValueError, "output_shape"),
    (lambda: layers.MultiHeadAttention(2, 2, flash_attention=True), ValueError, "flash"),
    (lambda: layers.MultiHeadAttention(2, 2, kernel_regularizer="l3"), ValueError,
     "kernel_regularizer must be None"),
    (lambda: layers.MultiHeadAttention(2, 2, kernel_initializer="nope"), ValueError,
     "Unknown initializer"),
    (lambda: layers.MultiHeadAttention(2, 2, use_bias="yes"), TypeError, "use_bias"),
    (lambda: layers.Attention(score_mode="add"), ValueError, "score_mode"),
    (lambda: layers.Attention(dropout=-0.1), ValueError, "dropout"),
    (lambda: layers.LayerNormalization(axis=0), ValueError, "batch axis"),
    (lambda: layers.LayerNormalization(axis="last"), TypeError, "axis must be an integer"),
    (lambda: layers.LayerNormalization(epsilon=-1), ValueError, "epsilon"),
    (lambda: layers.LayerNormalization(rms_scaling=True), ValueError, "rms_scaling"),
    (lambda: layers.LayerNormalization(gamma_constraint="positive"), ValueError,
     "gamma_constraint must be None"),
    (lambda: layers.GroupNormalization(groups=0), ValueError, "groups must be a positive"),
    (lambda: layers.GroupNormalization(groups=-2), ValueError, "groups must be a positive"),
    (lambda: layers.GroupNormalization(axis=[1, 2]), TypeError, "channels axis"),
    (lambda: layers.UnitNormalization(axis=0), ValueError, "batch axis"),
])
def test_bad_arguments_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_group_normalization_needs_groups_that_divide_the_channels():
    with pytest.raises(ValueError, match="groups=4 must divide the 6 channels of axis -1"):
        layers.GroupNormalization(groups=4)(kilnet.Input(shape=(3, 6)))
    with pytest.raises(ValueError, match="groups=32 must divide"):
        layers.GroupNormalization()(np.zeros((1, 6), np.float32))
    assert layers.GroupNormalization(groups=3)(kilnet.Input(shape=(3, 6))).shape == (None, 3, 6)


def test_bad_inputs_are_clear_errors():
    seq = kilnet.Input(shape=(4, 6))
    with pytest.raises(ValueError, match=r"axis 3 is out of bounds.*\(None, 4, 6\)"):
        layers.LayerNormalization(axis=3)(seq)
    mha = layers.MultiHeadAttention(2, 2)
    with pytest.raises(ValueError, match=r"query of shape \(batch, sequence, features\)"):
        mha(kilnet.Input(shape=(6,)), kilnet.Input(shape=(6,)))
    with pytest.raises(ValueError, match="value and key must have the same sequence length"):
        mha(seq, seq, key=kilnet.Input(shape=(5, 6)))
    with pytest.raises(TypeError, match="called on a query and a value"):
        mha(seq)
    with pytest.raises(ValueError, match=r"value_mask must have the shape \(batch, 4\)"):
        mha(seq, seq, value_mask=np.ones((1, 3), bool))
    with pytest.raises(TypeError, match=r"unexpected call arguments \['mask'\]"):
        mha(seq, seq, mask=None)
    with pytest.raises(ValueError, match=r"attention_mask must have the shape .*\(batch, 4, 4\)"):
        mha(normal((1, 4, 6)), normal((1, 4, 6)), attention_mask=np.ones((1, 4, 3), bool))
    with pytest.raises(ValueError, match=r"attention_mask must have the shape .*\(batch, 4, 4\)"):
        mha(seq, seq, attention_mask=kilnet.Input(shape=(4, 5), dtype="bool"))
    attention = layers.Attention()
    with pytest.raises(ValueError, match=r"called on a list \[query, value\]"):
        attention(seq)
    with pytest.raises(ValueError, match="query and key must have the same number of features"):
        attention([seq, kilnet.Input(shape=(3, 5))])
    with pytest.raises(ValueError, match=r"mask must be a list \[query_mask, value_mask\]"):
        attention([seq, seq], mask=np.ones((1, 4), bool))


@pytest.mark.parametrize("lib", [kilnet, keras], ids=["kilnet", "keras"])
def test_attention_kernels_count_fans_over_einsum_axes_as_keras(lib):
    """Keras's EinsumDense projections count a Glorot kernel's fans over its input and output
    axes: a (256, 4, 64) query kernel has fans 256 and 256 (limit sqrt(6 / 512)), not the
    convolution rule's 4 * 256 and 64 * 256 (a start six times smaller)."""
    mha = lib.layers.MultiHeadAttention(num_heads=4, key_dim=64)
    x = np.zeros((1, 8, 256), np.float32)
    mha(x, x)
    kernels = [np.asarray(w) for w in mha.weights if len(w.shape) == 3]
    assert [k.shape for k in kernels] == [(256, 4, 64)] * 3 + [(4, 64, 256)]
    limit = np.sqrt(6.0 / 512)
    for kernel in kernels:
        assert np.abs(kernel).max() <= limit
        assert np.std(kernel) == pytest.approx(limit / np.sqrt(3.0), rel=0.05)


@pytest.mark.parametrize("length", [5, 32, 33, 200, 263, 1000])
def test_row_max_is_the_maximum_without_a_windowed_reduction(length):
    """The attention's row maxima (`row_max`) are NumPy's to the bit, NaN and infinities
    included, and on the CPU XLA runs them without the windowed reduction it makes of a long
    row's maximum (unvectorized: 4.4 ms a step for the bench Transformer's scores)."""
    from kilnet.layers._attention import row_max
    x = normal((3, 4, length), seed=length)
    x[0, 1, length // 2] = np.inf
    x[1, 2, length - 1] = np.nan
    x[2, 3] = -np.inf
    got = np.asarray(jax.jit(row_max)(x))
    want = x.max(axis=-1, keepdims=True)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[1, 2, 0]) and got[0, 1, 0] == np.inf and got[2, 3, 0] == -np.inf
    optimized = jax.jit(row_max).lower(x).compile().as_text()
    assert ("reduce-window" in optimized) == (jax.default_backend() != "cpu" and length > 32)
    if length == 200:  # what row_max avoids: XLA's own program for the plain maximum
        plain = jax.jit(lambda a: a.max(axis=-1, keepdims=True)).lower(x).compile().as_text()
        assert ("reduce-window" in plain) == (jax.default_backend() == "cpu")
