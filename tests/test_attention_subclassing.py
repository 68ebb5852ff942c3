"""Subclasses of MultiHeadAttention written for Keras, which override its private hooks
(`_compute_attention`, `_masked_softmax`) and read its private members (`_key_dim`,
`_dot_product_equation`, `_dropout_layer`, the projections), as keras.io's vit_small_ds
Locality Self Attention does: outputs, scores, masks, dropout, training and files, each
checked against Keras itself from the same weights."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import math  # noqa: E402
import warnings  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
LIBRARIES = {"kilnet": kilnet, "keras": keras}


def normal(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def lsa_class(library, seen=None):
    """keras.io vit_small_ds's MultiHeadAttentionLSA written against `library` (kilnet or
    Keras): queries scaled by a learned temperature `tau` in place of 1 / sqrt(key_dim). With
    `seen`, a list, each call of its _compute_attention appends its training flag and mask."""
    ops = library.ops

    class MultiHeadAttentionLSA(library.layers.MultiHeadAttention):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.tau = library.Variable(math.sqrt(float(self._key_dim)), trainable=True)

        def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                               *args):
            if seen is not None:
                seen.append((training, attention_mask))
            query = ops.multiply(query, 1.0 / self.tau)
            scores = ops.einsum(self._dot_product_equation, key, query)
            scores = self._masked_softmax(scores, attention_mask)
            dropped = self._dropout_layer(scores, training=training)
            output = ops.einsum(self._combine_equation, dropped, value)
            return output, scores

    return MultiHeadAttentionLSA


def twins(classes, query, value=None, seed=0, **arguments):
    """kilnet's and Keras's layers of `classes` (a class per library) made with `arguments`,
    built on the inputs and holding the same weights, moved off their initial values."""
    value = query if value is None else value
    ours, theirs = classes[0](**arguments), classes[1](**arguments)
    ours(query, value)
    theirs(query, value)
    # (Keras numbers the names of Variables made outside a layer's build in a process)
    assert [tuple(w.shape) for w in theirs.weights] == [tuple(w.shape) for w in ours.weights]
    rng = np.random.default_rng(seed)
    weights = [w + 0.2 * rng.normal(size=w.shape).astype(w.dtype) for w in ours.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    return ours, theirs


def assert_same(ours, theirs):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, **TOLERANCE)


def no_diagonal_mask(batch, steps):
    """vit_small_ds's mask: no token attends to itself."""
    return np.broadcast_to(1 - np.eye(steps, dtype="int8"), (batch, steps, steps))


# -- keras.io's Locality Self Attention ------------------------------------------------------------
def test_locality_self_attention_matches_keras():
    x = normal((2, 5, 8), 1)
    ours, theirs = twins([lsa_class(kilnet), lsa_class(keras)], x, num_heads=2, key_dim=8)
    assert ours.weights[0] is ours.tau and ours.tau.numpy() != math.sqrt(8.0)
    mask = no_diagonal_mask(2, 5)
    (output, scores), (keras_output, keras_scores) = (
        layer(x, x, attention_mask=mask, return_attention_scores=True) for layer in (ours, theirs))
    assert_same(output, keras_output)
    assert_same(scores, keras_scores)
    assert np.all(np.diagonal(np.asarray(scores), axis1=2, axis2=3) == 0)
    assert_same(ours(x, x, attention_mask=mask), theirs(x, x, attention_mask=mask))
    assert_same(ours(x, x, use_causal_mask=True), theirs(x, x, use_causal_mask=True))
    # the temperature decides the numbers: kilnet's default attention differs from them
    plain = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=8)
    plain(x, x)
    plain.set_weights(ours.get_weights()[1:])
    assert not np.allclose(plain(x, x, attention_mask=mask), output, atol=1e-3)


def test_locality_self_attention_over_other_axes_matches_keras():
    x = normal((2, 3, 4, 6), 2)
    ours, theirs = twins([lsa_class(kilnet), lsa_class(keras)], x, num_heads=2, key_dim=3,
                         attention_axes=(2,))
    mask = np.random.default_rng(3).random((2, 3, 4, 4)) > 0.3
    results = [layer(x, x, attention_mask=mask, return_attention_scores=True)
               for layer in (ours, theirs)]
    for mine, keras_one in zip(*results):
        assert_same(mine, keras_one)


def test_what_compute_attention_receives_matches_keras():
    """The training flag and the combined mask (attention_mask, the query's mask, the causal
    mask) reach the override as Keras gives them."""
    x = normal((2, 4, 6), 4)
    seen = {"kilnet": [], "keras": []}
    ours, theirs = twins([lsa_class(kilnet, seen["kilnet"]), lsa_class(keras, seen["keras"])],
                         x, num_heads=2, key_dim=3)
    attention_mask = np.random.default_rng(5).random((2, 4, 4)) > 0.2
    query_mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]], bool)
    for options in ({}, {"use_causal_mask": True}, {"attention_mask": attention_mask},
                    {"attention_mask": attention_mask, "use_causal_mask": True}):
        for name, layer in (("kilnet", ours), ("keras", theirs)):
            seen[name].clear()
            layer(x, x, training=True, **options)
        (training, mask), = seen["kilnet"]
        (keras_training, keras_mask), = seen["keras"]
        assert training is True and keras_training is True
        if keras_mask is None:
            assert mask is None
        else:
            assert np.shape(mask) == np.shape(keras_mask)
            np.testing.assert_array_equal(mask, keras_mask)
    seen["kilnet"].clear()
    ours.apply(ours.params_tree(), ours.state_tree(), x, x, query_mask=query_mask)
    (training, mask), = seen["kilnet"]
    assert training is False
    np.testing.assert_array_equal(np.broadcast_to(mask, (2, 4, 4)),
                                  np.broadcast_to(query_mask[:, :, None], (2, 4, 4)))


def test_locality_self_attention_dropout_follows_the_training_flag():
    x = normal((2, 5, 8), 6)
    lsa = lsa_class(kilnet)(num_heads=2, key_dim=8, dropout=0.5, seed=3)
    inference, inference_scores = lsa(x, x, return_attention_scores=True)
    assert_same(lsa(x, x, training=False), inference)
    trained, trained_scores = lsa(x, x, training=True, return_attention_scores=True)
    assert not np.allclose(trained, inference)
    assert_same(trained_scores, inference_scores)    # Keras's scores: before the dropout
    # the same as Keras's when training is off
    keras_lsa = lsa_class(keras)(num_heads=2, key_dim=8, dropout=0.5, seed=3)
    keras_lsa(x, x)
    keras_lsa.set_weights(lsa.get_weights())
    assert_same(keras_lsa(x, x, training=False), inference)


def lsa_model(library, **arguments):
    inputs = library.Input((5, 8))
    attended = lsa_class(library)(num_heads=2, key_dim=4, name="lsa", **arguments)(inputs,
                                                                                  inputs)
    pooled = library.layers.GlobalAveragePooling1D()(attended)
    return library.Model(inputs, library.layers.Dense(1)(pooled))


def test_the_temperature_trains_in_fit_as_in_keras():
    x, y = normal((16, 5, 8), 7), normal((16, 1), 8)
    ours, theirs = lsa_model(kilnet), lsa_model(keras)
    ours.build(seed=2)
    theirs.set_weights(ours.get_weights())
    tau = float(ours.get_layer("lsa").tau.numpy())
    for model in (ours, theirs):
        model.compile(optimizer=model_optimizer(model), loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    trained = float(ours.get_layer("lsa").tau.numpy())
    assert abs(trained - tau) > 1e-5     # tau has a gradient, and changed
    for mine, keras_one in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_one, rtol=1e-4, atol=1e-5)


def model_optimizer(model):
    library = kilnet if isinstance(model, kilnet.Model) else keras
    return library.optimizers.SGD(learning_rate=0.05)


def test_a_model_holding_the_subclass_saves_and_loads(tmp_path):
    x = normal((3, 5, 8), 9)
    ours = lsa_model(kilnet, dropout=0.1)
    ours.build(seed=4)
    lsa = ours.get_layer("lsa")
    lsa.tau.assign(1.7)
    expected = ours.predict(x, verbose=0)
    kilnet_class, keras_class = lsa_class(kilnet), lsa_class(keras)
    ours.save(tmp_path / "m.kilnet")
    again = kilnet.models.load_model(tmp_path / "m.kilnet",
                                     custom_objects={"MultiHeadAttentionLSA": kilnet_class})
    assert type(again.get_layer("lsa")) is kilnet_class
    assert float(again.get_layer("lsa").tau.numpy()) == pytest.approx(1.7)
    assert_same(again.predict(x, verbose=0), expected)
    # Keras's files, both ways: the temperature is the layer's vars/0, as Keras keeps it
    ours.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras",
                                     custom_objects={"MultiHeadAttentionLSA": keras_class})
    assert float(theirs.get_layer("lsa").tau.numpy()) == pytest.approx(1.7)
    assert_same(theirs.predict(x, verbose=0), expected)
    theirs.get_layer("lsa").tau.assign(2.5)
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opened = kilnet.models.load_model(
            tmp_path / "k.keras", custom_objects={"MultiHeadAttentionLSA": kilnet_class})
    assert float(opened.get_layer("lsa").tau.numpy()) == pytest.approx(2.5)
    assert_same(opened.predict(x, verbose=0), theirs.predict(x, verbose=0))


# -- other hooks and members ----------------------------------------------------------------------
def halved_softmax_class(library):
    """A subclass overriding _masked_softmax only: the scores halved before Keras's softmax."""
    class HalvedSoftmaxAttention(library.layers.MultiHeadAttention):
        def _masked_softmax(self, attention_scores, attention_mask=None):
            return super()._masked_softmax(attention_scores * 0.5, attention_mask)

    return HalvedSoftmaxAttention


@pytest.mark.parametrize("shape, axes", [((2, 4, 6), None), ((2, 3, 4, 6), (1, 2))])
def test_an_overridden_masked_softmax_is_used_as_keras_uses_it(shape, axes):
    x = normal(shape, 10)
    ours, theirs = twins([halved_softmax_class(kilnet), halved_softmax_class(keras)], x,
                         num_heads=2, key_dim=3, attention_axes=axes)
    mask = np.random.default_rng(11).random(shape[:1] + shape[1:-1] * 2) > 0.3
    results = [layer(x, x, attention_mask=mask, return_attention_scores=True)
               for layer in (ours, theirs)]
    for mine, keras_one in zip(*results):
        assert_same(mine, keras_one)
    # without the scores kilnet still uses it (Keras 3's fused path skips it there)
    assert_same(ours(x, x, attention_mask=mask), results[0][0])
    plain = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=axes)
    plain(x, x)
    plain.set_weights(ours.get_weights())
    assert not np.allclose(plain(x, x, attention_mask=mask), results[0][0], atol=1e-3)


def always_causal_class(library):
    """A subclass overriding _compute_attention_mask only: every call causal."""
    class AlwaysCausalAttention(library.layers.MultiHeadAttention):
        def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None,
                                    key_mask=None, attention_mask=None, use_causal_mask=False):
            return super()._compute_attention_mask(
                query, value, query_mask=query_mask, value_mask=value_mask, key_mask=key_mask,
                attention_mask=attention_mask, use_causal_mask=True)

    return AlwaysCausalAttention


def test_an_overridden_attention_mask_is_used_as_keras_uses_it():
    x = normal((2, 4, 6), 18)
    ours, theirs = twins([always_causal_class(kilnet), always_causal_class(keras)], x,
                         num_heads=2, key_dim=3)
    mask = np.random.default_rng(19).random((2, 4, 4)) > 0.2
    (output, scores), (keras_output, keras_scores) = (
        layer(x, x, attention_mask=mask, return_attention_scores=True) for layer in (ours, theirs))
    assert_same(output, keras_output)
    assert_same(scores, keras_scores)
    assert np.all(np.triu(np.asarray(scores), k=1) == 0)
    assert_same(ours(x, x), theirs(x, x))


def test_private_members_read_as_keras_has_them():
    x, value = normal((2, 4, 6), 12), normal((2, 3, 5), 13)
    arguments = dict(num_heads=3, key_dim=4, value_dim=2, dropout=0.25, use_bias=False,
                     kernel_initializer="he_normal")
    ours, theirs = (library.layers.MultiHeadAttention(**arguments) for library in (kilnet, keras))
    for layer in (ours, theirs):
        layer(x, value)
    theirs.set_weights(ours.get_weights())
    for name in ("_num_heads", "_key_dim", "_value_dim", "_dropout", "_use_bias", "_use_gate",
                 "_attention_axes", "_sliding_window", "_output_shape", "_inverse_sqrt_key_dim",
                 "_dot_product_equation", "_combine_equation"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert type(ours._kernel_initializer).__name__ == type(theirs._kernel_initializer).__name__
    assert ours._dropout_layer.rate == theirs._dropout_layer.rate
    for part in ("query_dense", "key_dense", "value_dense", "output_dense"):
        for attribute in (part, "_" + part):
            mine, keras_one = getattr(ours, attribute), getattr(theirs, attribute)
            assert_same(mine.kernel.numpy(), keras_one.kernel.numpy())
    with pytest.raises(AttributeError, match=r"_key_dim is Keras's private name for the "
                                             r"key_dim setting.*Give key_dim=\.\.\."):
        ours._key_dim = 8


def test_equations_of_higher_ranks_are_keras_s():
    for shape, axes in (((2, 3, 4, 6), (2,)), ((2, 3, 4, 6), None),
                        ((2, 2, 3, 4, 6), (3, 1)), ((2, 3, 4, 6), -3)):
        x = normal(shape, 14)
        layers = [library.layers.MultiHeadAttention(num_heads=2, key_dim=3, attention_axes=axes)
                  for library in (kilnet, keras)]
        for layer in layers:
            layer(x, x)
        assert layers[0]._dot_product_equation == layers[1]._dot_product_equation
        assert layers[0]._combine_equation == layers[1]._combine_equation
        assert layers[0]._attention_axes == layers[1]._attention_axes


def grouped_class(library):
    """A subclass of Keras's GroupedQueryAttention overriding its _compute_attention with the
    arguments and equations Keras's gives it: scores scaled by a fixed temperature of 2."""
    ops = library.ops

    class TemperedGroupedAttention(library.layers.GroupQueryAttention):
        def _compute_attention(self, query, key, value, attention_mask=None, training=None):
            scores = ops.einsum(self._dot_product_equation, query, key) * 0.5
            scores = self._masked_softmax(scores, attention_mask=attention_mask)
            dropped = self._dropout_layer(scores, training=training)
            return ops.einsum(self._combine_equation, dropped, value), scores

    return TemperedGroupedAttention


def test_a_grouped_query_attention_subclass_matches_keras():
    query, value = normal((2, 4, 8), 15), normal((2, 6, 8), 16)
    ours, theirs = twins([grouped_class(kilnet), grouped_class(keras)], query, value,
                         head_dim=3, num_query_heads=4, num_key_value_heads=2)
    assert ours._dot_product_equation == theirs._dot_product_equation
    mask = np.random.default_rng(17).random((2, 4, 6)) > 0.3
    results = [layer(query, value, attention_mask=mask, return_attention_scores=True)
               for layer in (ours, theirs)]
    for mine, keras_one in zip(*results):
        assert_same(mine, keras_one)
    assert_same(ours(query, value, use_causal_mask=True),
                theirs(query, value, use_causal_mask=True))
