"""MultiHeadAttention over inputs of rank > 3 and over chosen `attention_axes`, as Keras 3's:
rank-4 (batch, patches, tokens, dim) inputs as MobileViT feeds them, axial attention over one
axis, several axes, negative axes, cross-attention, masks, the causal mask, the scores,
gradients, configs, `.keras` files and training, each checked against Keras itself from the
same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from tests._training import assert_fit_lowers_loss  # noqa: E402

TOLERANCE = dict(rtol=1e-5, atol=1e-5)


def normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def twin_layers(query, value, key=None, seed=0, **arguments):
    """kilnet's and Keras's MultiHeadAttention(**arguments), built on the inputs, holding the
    same weights (moved off their initial values, biases included); checks that Keras's
    weights have kilnet's order, names and shapes."""
    ours = kilnet.layers.MultiHeadAttention(**arguments)
    theirs = keras.layers.MultiHeadAttention(**arguments)
    ours(query, value, key=key)
    theirs(query, value, key=key)
    assert [(w.name, tuple(w.shape)) for w in theirs.weights] == [
        (w.name, tuple(w.shape)) for w in ours.weights]
    rng = np.random.default_rng(seed)
    weights = [w + 0.2 * rng.normal(size=w.shape).astype(w.dtype) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def both(layers, *args, **kwargs):
    """The two layers' results (an output, or (output, scores)) as NumPy arrays."""
    results = [layer(*args, **kwargs) for layer in layers]
    return [tuple(np.asarray(r) for r in result) if isinstance(result, tuple)
            else np.asarray(result) for result in results]


def assert_same_results(layers, *args, **kwargs):
    ours, theirs = both(layers, *args, **kwargs)
    if isinstance(ours, tuple):
        for mine, keras_one in zip(ours, theirs):
            assert mine.shape == keras_one.shape
            np.testing.assert_allclose(mine, keras_one, **TOLERANCE)
    else:
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, **TOLERANCE)
    return ours


# -- outputs and scores against Keras --------------------------------------------------------------
AXES_CASES = [
    ((2, 3, 5, 8), None, (2, 2, 3, 5, 3, 5)),       # default: every axis but batch and features
    ((2, 3, 5, 8), (2,), (2, 3, 2, 5, 5)),           # tokens attend, patches batch-like (MobileViT)
    ((2, 3, 5, 8), 2, (2, 3, 2, 5, 5)),              # an int, as Keras takes it
    ((2, 3, 5, 8), (1, 2), (2, 2, 3, 5, 3, 5)),
    ((2, 3, 5, 8), (2, 1), (2, 2, 5, 3, 5, 3)),      # the scores' axes in the order given
    ((2, 3, 5, 8), -2, (2, 3, 2, 5, 5)),             # negative: counted from the input's end
    ((2, 3, 5, 8), (-3,), (2, 5, 2, 3, 3)),
    ((2, 3, 5, 8), (1,), (2, 5, 2, 3, 3)),           # axial attention over the rows
    ((2, 2, 3, 4, 6), (1, 3), (2, 3, 2, 2, 4, 2, 4)),   # rank 5, a batch-like axis between
    ((2, 4, 6), None, (2, 2, 4, 4)),                 # sequences: the usual kernels
    ((2, 4, 6), (-2,), (2, 2, 4, 4)),
]


@pytest.mark.parametrize("shape, axes, scores_shape", AXES_CASES,
                         ids=[f"{len(c[0])}d-{c[1]}" for c in AXES_CASES])
def test_self_attention_over_axes_matches_keras(shape, axes, scores_shape):
    x = normal(shape, 1)
    layers = twin_layers(x, x, num_heads=2, key_dim=4, attention_axes=axes)
    output, scores = assert_same_results(layers, x, x, return_attention_scores=True)
    assert output.shape == shape and scores.shape == scores_shape
    attended = len(shape) - 2 if axes is None else len(np.atleast_1d(axes))
    summed = scores.sum(axis=tuple(range(-attended, 0)))
    np.testing.assert_allclose(summed, 1.0, rtol=1e-5)   # normalized over the key's axes
    assert_same_results(layers, x, x)                    # the fused path, no scores
    built = layers[1].get_config()["attention_axes"]
    assert layers[0].get_config()["attention_axes"] == tuple(built)   # resolved, as Keras's


def test_cross_attention_with_other_key_lengths_matches_keras():
    query, value, key = normal((2, 3, 5, 8), 1), normal((2, 3, 7, 6), 2), normal((2, 3, 7, 4), 3)
    layers = twin_layers(query, value, key, num_heads=3, key_dim=4, value_dim=5,
                         attention_axes=(2,), output_shape=(2, 3))
    output, scores = assert_same_results(layers, query, value, key=key,
                                         return_attention_scores=True)
    assert output.shape == (2, 3, 5, 2, 3) and scores.shape == (2, 3, 3, 5, 7)
    # every axis attended: the query's and the value's sizes may all differ
    query, value = normal((2, 3, 5, 8), 4), normal((2, 4, 2, 6), 5)
    layers = twin_layers(query, value, num_heads=2, key_dim=4)
    _, scores = assert_same_results(layers, query, value, return_attention_scores=True)
    assert scores.shape == (2, 2, 3, 5, 4, 2)


def test_gate_and_bias_free_layers_match_keras():
    x = normal((2, 3, 4, 6), 1)
    layers = twin_layers(x, x, num_heads=2, key_dim=3, attention_axes=(1,), use_gate=True,
                         use_bias=False)
    assert_same_results(layers, x, x, return_attention_scores=True)


# -- masks ----------------------------------------------------------------------------------------
MASK_CASES = [
    ((2,), (2, 3, 5, 5)),          # (batch, patches, T, S): heads added before T, S
    ((2,), (2, 1, 5, 5)),
    ((2,), (2, 5, 5)),             # (batch, T, S): heads and patches added
    ((2,), (5, 5)),
    ((1,), (2, 5, 3, 3)),
    (None, (2, 3, 5, 3, 5)),       # (batch, T1, T2, S1, S2)
    (None, (2, 1, 3, 5, 3, 5)),
    ((2, 1), (2, 5, 3, 5, 3)),
]


@pytest.mark.parametrize("axes, mask_shape", MASK_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in MASK_CASES])
def test_attention_mask_broadcasts_as_keras(axes, mask_shape):
    x = normal((2, 3, 5, 8), 1)
    mask = np.random.default_rng(2).random(mask_shape) > 0.4   # some rows allow no key
    layers = twin_layers(x, x, num_heads=2, key_dim=4, attention_axes=axes)
    assert_same_results(layers, x, x, attention_mask=mask, return_attention_scores=True)
    assert_same_results(layers, x, x, attention_mask=mask)


def test_input_masks_of_a_rank_4_model_match_keras():
    """Masking's (batch, patches, tokens) mask becomes the query's and value's masks."""
    x = normal((2, 3, 5, 8), 1)
    x[0, 1, 3:] = 0.0
    x[1, :, 4] = 0.0

    def model(lib):
        inputs = lib.Input(shape=(3, 5, 8))
        masked = lib.layers.Masking()(inputs)
        return lib.Model(inputs, lib.layers.MultiHeadAttention(2, 4, attention_axes=(2,))(
            masked, masked))

    ours, theirs = model(kilnet), model(keras)
    ours.build(seed=2)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               **TOLERANCE)


def test_symbolic_attention_mask_input_matches_keras():
    def model(lib):
        inputs = lib.Input(shape=(3, 5, 8))
        mask = lib.Input(shape=(3, 5, 5), dtype="bool")
        attention = lib.layers.MultiHeadAttention(2, 4, attention_axes=(2,))
        return lib.Model([inputs, mask], attention(inputs, inputs, attention_mask=mask))

    ours, theirs = model(kilnet), model(keras)
    ours.build(seed=2)
    theirs.set_weights(ours.get_weights())
    x, mask = normal((2, 3, 5, 8), 1), np.random.default_rng(3).random((2, 3, 5, 5)) > 0.3
    np.testing.assert_allclose(ours.predict([x, mask], verbose=0),
                               theirs.predict([x, mask], verbose=0), **TOLERANCE)


@pytest.mark.parametrize("shape, axes", [((2, 5, 3, 8), (1,)), ((2, 5, 3, 8), (-3,)),
                                         ((2, 4, 4, 8), (2,))])
def test_causal_mask_and_sliding_window_over_one_axis_match_keras(shape, axes):
    """Keras builds them from axis 1's length: they match its numbers where that is the
    attended axis's (axis 1, or an axis as long as axis 1)."""
    x = normal(shape, 1)
    layers = twin_layers(x, x, num_heads=2, key_dim=4, attention_axes=axes)
    assert_same_results(layers, x, x, use_causal_mask=True, return_attention_scores=True)
    assert_same_results(layers, x, x, use_causal_mask=True)
    windowed = twin_layers(x, x, num_heads=2, key_dim=4, attention_axes=axes, sliding_window=2)
    assert_same_results(windowed, x, x, use_causal_mask=True, return_attention_scores=True)


def test_causal_mask_orders_the_attended_axis():
    """Over axis 2 of (batch, 3, 5, dim) Keras's causal mask, built from axis 1, fails; kilnet's
    orders the attended axis: the same as Keras given that triangle as attention_mask."""
    x = normal((2, 3, 5, 8), 1)
    ours, theirs = twin_layers(x, x, num_heads=2, key_dim=4, attention_axes=(2,))
    triangle = np.tril(np.ones((5, 5), bool))
    np.testing.assert_allclose(ours(x, x, use_causal_mask=True),
                               theirs(x, x, attention_mask=triangle), **TOLERANCE)


def test_causal_mask_over_several_axes_is_a_clear_error():
    x = normal((2, 3, 5, 8), 1)
    layer = kilnet.layers.MultiHeadAttention(2, 4)
    with pytest.raises(ValueError, match=r"use_causal_mask and sliding_window order the "
                                         r"positions of one attended axis.*attention_axes="
                                         r"\(1, 2\)"):
        layer(x, x, use_causal_mask=True)


# -- dropout, gradients, training --------------------------------------------------------------
def test_dropout_drops_probabilities_and_returns_them_undropped():
    x = normal((2, 3, 5, 8), 1)
    layer = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=(2,), dropout=0.5, seed=3)
    inferred = layer(x, x)
    trained, scores = layer(x, x, training=True, return_attention_scores=True)
    assert trained.shape == inferred.shape == x.shape
    assert not np.allclose(trained, inferred)
    np.testing.assert_allclose(np.asarray(scores).sum(-1), 1.0, rtol=1e-5)   # as Keras's


def kilnet_loss(layer, weight, query, value, mask):
    state = layer.state_tree()

    def loss(params, query):
        output = layer.apply(params, state, query, value, attention_mask=mask)[0]
        return jnp.sum(output * weight)

    return loss


def keras_loss(layer, weight, value, mask):
    def loss(trainable, query):
        output, _ = layer.stateless_call(trainable, [], query, value, attention_mask=mask)
        return jnp.sum(output * weight)

    return loss


@pytest.mark.parametrize("axes, mask_shape", [((2,), (2, 3, 5, 5)), (None, None)])
def test_gradients_match_keras(axes, mask_shape):
    query, value = normal((2, 3, 5, 8), 1), normal((2, 3, 5, 6), 2)
    mask = None if mask_shape is None else np.random.default_rng(3).random(mask_shape) > 0.3
    ours, theirs = twin_layers(query, value, num_heads=2, key_dim=4, attention_axes=axes)
    weight = normal((2, 3, 5, 8), 4)
    d_params, d_query = jax.grad(kilnet_loss(ours, weight, query, value, mask), (0, 1))(
        ours.params_tree(), query)
    theirs_grads, theirs_d_query = jax.grad(keras_loss(theirs, weight, value, mask), (0, 1))(
        [v.value for v in theirs.trainable_variables], query)
    ours_grads = [d_params[part][name] for part in ("query", "key", "value", "attention_output")
                  for name in ("kernel", "bias")]
    for mine, keras_grad in zip(ours_grads, theirs_grads, strict=True):
        np.testing.assert_allclose(mine, keras_grad, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(d_query, theirs_d_query, rtol=1e-4, atol=1e-5)


def rank_4_model(lib, axes=(2,)):
    """MobileViT's shape of attention: (batch, patches, tokens, dim) in, a class out."""
    inputs = lib.Input(shape=(4, 6, 8))
    attended = lib.layers.MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=axes)(
        inputs, inputs)
    pooled = lib.layers.GlobalAveragePooling2D()(attended)
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(pooled))


def test_rank_4_model_trains_and_predicts_as_keras():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4, 6, 8)).astype("float32")
    y = (x[:, :, :, :3].mean(axis=(1, 2)).argmax(-1)).astype("int32")
    model = rank_4_model(kilnet)
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy")
    assert_fit_lowers_loss(model, x, y, 0.8, batch_size=16, epochs=5)
    theirs = rank_4_model(keras)
    theirs.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               **TOLERANCE)


def test_symbolic_call_gives_keras_shapes():
    inputs = kilnet.Input(shape=(4, 6, 8))
    layer = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=(2,), output_shape=5)
    output, scores = layer(inputs, inputs, return_attention_scores=True)
    # Keras's symbolic scores read (None, 2, 4, 4); these are the shape its eager scores have
    assert output.shape == (None, 4, 6, 5) and scores.shape == (None, 4, 2, 6, 6)


# -- configs and files ----------------------------------------------------------------------------
@pytest.mark.parametrize("axes", [2, (2,), [1, 2], (-2,), None])
def test_config_writes_attention_axes_as_keras(axes):
    ours = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=axes)
    theirs = keras.layers.MultiHeadAttention(2, 4, attention_axes=axes)
    assert ours.get_config()["attention_axes"] == theirs.get_config()["attention_axes"]
    x = normal((2, 3, 5, 8), 1)
    ours(x, x)
    theirs(x, x)
    config = ours.get_config()
    assert config["attention_axes"] == theirs.get_config()["attention_axes"]
    again = kilnet.layers.MultiHeadAttention.from_config(config)
    assert again.get_config() == config
    again(x, x)
    again.set_weights(ours.get_weights())
    np.testing.assert_allclose(again(x, x), ours(x, x), **TOLERANCE)


def test_keras_files_with_attention_axes_open_in_both(tmp_path):
    x = normal((2, 4, 6, 8), 1)
    made_by_keras = rank_4_model(keras, axes=(2,))
    made_by_keras.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(opened.predict(x, verbose=0),
                               made_by_keras.predict(x, verbose=0), **TOLERANCE)
    ours = rank_4_model(kilnet, axes=-2)
    ours.build(seed=1)
    ours.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert theirs.layers[1].attention_axes == (2,)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), ours.predict(x, verbose=0),
                               **TOLERANCE)


# -- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("axes", [0, -1, (1, 1), (), (1, 0), "1", (1.0,), True, {1: 2}])
def test_impossible_attention_axes_are_refused_when_made(axes):
    with pytest.raises(ValueError, match=r"attention_axes must be None, an axis or a tuple of "
                                         r"distinct axes between the batch axis \(0\) and the "
                                         r"features \(-1\).*Received: attention_axes="):
        kilnet.layers.MultiHeadAttention(2, 4, attention_axes=axes)


@pytest.mark.parametrize("axes, received", [(3, r"\(3,\)"), (4, r"\(4,\)"),
                                            ((1, -4), r"\(1, -4\)"),
                                            ((2, -2), r"\(2, -2\)")])
def test_attention_axes_outside_the_inputs_are_refused_when_called(axes, received):
    """3 is the features of (batch, 3, 5, 8) inputs, -4 their batch axis, 4 beyond them;
    2 and -2 the same axis twice: Keras computes with these, over the heads or the batch."""
    inputs = kilnet.Input(shape=(3, 5, 8))
    layer = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=axes)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\): attention_axes must be None.*"
                                         r"inputs of rank 4 have them from 1 to 2 \(or -3 to "
                                         rf"-2\). Received: attention_axes={received}\."):
        layer(inputs, inputs)


def test_inputs_that_cannot_pair_are_clear_errors():
    layer = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=(2,))
    with pytest.raises(ValueError, match=r"query and value must have the same sizes on the "
                                         r"axes not attended over \(1,\).*query of shape "
                                         r"\(None, 3, 5, 8\), value of shape \(None, 4, 5, 8\)"):
        layer(kilnet.Input(shape=(3, 5, 8)), kilnet.Input(shape=(4, 5, 8)))
    with pytest.raises(ValueError, match="query, value and key must have the same rank"):
        layer(kilnet.Input(shape=(3, 5, 8)), kilnet.Input(shape=(5, 8)))
    with pytest.raises(ValueError, match="value and key must have the same sequence length"):
        layer(kilnet.Input(shape=(3, 5, 8)), kilnet.Input(shape=(3, 5, 8)),
              key=kilnet.Input(shape=(3, 4, 8)))
    x = normal((2, 3, 5, 8), 1)
    layer(x, x)
    with pytest.raises(ValueError, match=r"built for query of rank 4"):
        layer(normal((2, 5, 8), 1), normal((2, 5, 8), 1))


def test_a_mask_that_does_not_broadcast_is_a_clear_error():
    x = normal((2, 3, 5, 8), 1)
    layer = kilnet.layers.MultiHeadAttention(2, 4, attention_axes=(2,))
    with pytest.raises(ValueError, match=r"attention_mask must broadcast to the attention "
                                         r"scores, of shape .* = \(2, 3, 2, 5, 5\).*Received: "
                                         r"attention_mask of shape \(2, 3, 4, 5\)"):
        layer(x, x, attention_mask=np.ones((2, 3, 4, 5), bool))
    inputs = kilnet.Input(shape=(3, 5, 8))
    with pytest.raises(ValueError, match=r"attention_mask must broadcast .* = \(batch, 3, 2, 5, "
                                         r"5\).*Received: attention_mask of shape \(None, 3, 4, "
                                         r"5\)"):
        layer(inputs, inputs, attention_mask=kilnet.Input(shape=(3, 4, 5), dtype="bool"))
    with pytest.raises(ValueError, match=r"query_mask must have the shape \(batch, 3, 5\)"):
        layer(inputs, inputs, query_mask=np.ones((1, 5), bool))


def test_grouped_query_attention_still_takes_sequences_only():
    x = normal((2, 3, 5, 8), 1)
    layer = kilnet.layers.GroupQueryAttention(head_dim=4, num_query_heads=4,
                                             num_key_value_heads=2)
    with pytest.raises(ValueError, match=r"GroupQueryAttention takes query, value and key of "
                                         r"shape \(batch, sequence, features\)"):
        layer(x, x)


def test_sequences_take_the_same_program_whatever_the_default_is_written_as():
    """None, 1, -2 and (1,) all mean the sequence axis of (batch, T, dim) inputs: one program."""
    x = normal((2, 4, 6), 1)
    programs = set()
    for axes in (None, 1, -2, (1,)):
        layer = kilnet.layers.MultiHeadAttention(2, 3, attention_axes=axes)
        layer(x, x)
        params, state = layer.params_tree(), layer.state_tree()
        programs.add(str(jax.make_jaxpr(
            lambda p, q: layer.apply(p, state, q, q, use_causal_mask=True)[0])(params, x)))
    assert len(programs) == 1
