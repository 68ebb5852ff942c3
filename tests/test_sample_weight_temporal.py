"""Per-value ("temporal") sample weights: sample_weight of shape (samples, timesteps) weighs
each token of a sequence loss (keras.io's masked language model weighs the masked tokens so),
as Keras does; compared with Keras 3 from the same weights and with a NumPy computation."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet.errors import InputError  # noqa: E402

N, T, VOCAB, CLASSES = 40, 6, 12, 5


def tagger(lib, mask_zero=False):
    inputs = lib.Input(shape=(T,), dtype="int32")
    hidden = lib.layers.Embedding(VOCAB, 4, mask_zero=mask_zero)(inputs)
    return lib.Model(inputs, lib.layers.Dense(CLASSES)(hidden))


def data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, VOCAB, (N, T)).astype(np.int32)
    x[: N // 2, T - 2:] = 0   # padding tokens, for the masked models
    y = rng.integers(0, CLASSES, (N, T))
    weights = (rng.random((N, T)) < 0.4).astype(np.float32) * rng.uniform(0.5, 2.0, (N, T))
    return x, y, weights.astype(np.float32)


def pair(mask_zero=False, seed=0):
    ours, theirs = tagger(kilnet, mask_zero), tagger(keras, mask_zero)
    for model, lib in ((ours, kilnet), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(learning_rate=0.5),
                      loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], weighted_metrics=["accuracy"])
    ours.build(seed=seed)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def token_losses(model, x, y):
    logits = model.predict(x, verbose=0).astype(np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, y[..., None], -1)[..., 0], logits.argmax(-1) == y


@pytest.mark.parametrize("batch_size", [N, 16])
@pytest.mark.parametrize("trailing_axis", [False, True])
def test_evaluate_with_per_token_weights_matches_keras(batch_size, trailing_axis):
    x, y, w = data()
    given = w[..., None] if trailing_axis else w   # (N, T, 1) is aligned as Keras aligns it
    ours, theirs = pair()
    got = ours.evaluate(x, y, sample_weight=given, batch_size=batch_size, verbose=0,
                        return_dict=True)
    expected = theirs.evaluate(x, y, sample_weight=given, batch_size=batch_size, verbose=0,
                               return_dict=True)
    for name in ("loss", "accuracy", "weighted_accuracy"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name
    losses, correct = token_losses(ours, x, y)
    if batch_size == N:   # Keras's sum_over_batch_size: sum(loss * w) / (samples * timesteps)
        assert got["loss"] == pytest.approx((losses * w).sum() / losses.size, rel=1e-5)
    assert got["weighted_accuracy"] == pytest.approx((correct * w).sum() / w.sum(), rel=1e-5)
    assert got["accuracy"] == pytest.approx(correct.mean(), rel=1e-5)


def test_fit_with_per_token_weights_matches_keras_step_by_step():
    x, y, w = data(seed=1)
    ours, theirs = pair(seed=2)
    h1 = ours.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for name in ("loss", "weighted_accuracy"):
        np.testing.assert_allclose(h1.history[name], h2.history[name], rtol=1e-5)


def test_zero_weighted_tokens_do_not_train():
    """Only the weighted tokens move the weights: the same step on the weighted tokens alone."""
    x, y, _ = data(seed=3)
    w = np.zeros((N, T), np.float32)
    w[:, 0] = 1.0
    ours, _ = pair(seed=4)
    before = [np.array(v) for v in ours.get_weights()]
    ours.fit(x, y, sample_weight=w, batch_size=N, epochs=1, verbose=0)
    embeddings_after = ours.get_weights()[0]
    seen_first = np.unique(x[:, 0])
    unseen = np.setdiff1d(np.arange(VOCAB), seen_first)
    assert unseen.size > 0
    # rows of tokens only at zero-weighted positions keep their values; the others moved
    np.testing.assert_array_equal(embeddings_after[unseen], before[0][unseen])
    assert not np.allclose(embeddings_after[seen_first], before[0][seen_first])


def test_per_token_weights_with_a_sequence_mask_match_keras():
    x, y, w = data(seed=5)
    ours, theirs = pair(mask_zero=True, seed=6)
    got = ours.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0, return_dict=True)
    expected = theirs.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0,
                               return_dict=True)
    for name in ("loss", "accuracy", "weighted_accuracy"):
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name
    ours.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0)
    theirs.fit(x, y, sample_weight=w, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_per_sample_weights_on_a_sequence_loss_weigh_each_sample():
    """One weight per sample weighs all of its tokens (Keras 3 fails to broadcast (samples,)
    against (samples, timesteps) here; kilnet says so in its README)."""
    x, y, _ = data(seed=7)
    per_sample = np.random.default_rng(8).uniform(0, 2, N).astype(np.float32)
    ours, _ = pair(seed=9)
    got = ours.evaluate(x, y, sample_weight=per_sample, batch_size=N, verbose=0,
                        return_dict=True)
    losses, correct = token_losses(ours, x, y)
    assert got["loss"] == pytest.approx((losses * per_sample[:, None]).mean(), rel=1e-5)
    same = ours.evaluate(x, y, sample_weight=np.repeat(per_sample[:, None], T, axis=1),
                         batch_size=N, verbose=0, return_dict=True)
    assert got == pytest.approx(same, rel=1e-6)


def test_streamed_batches_carry_per_token_weights():
    x, y, w = data(seed=10)
    ours, _ = pair(seed=11)
    from_arrays = ours.evaluate(x, y, sample_weight=w, batch_size=16, verbose=0,
                                return_dict=True)

    def batches():
        for start in range(0, N, 16):
            yield x[start:start + 16], y[start:start + 16], w[start:start + 16]

    streamed = ours.evaluate(batches(), verbose=0, return_dict=True)
    assert streamed == pytest.approx(from_arrays, rel=1e-5)
    assert from_arrays["loss"] != pytest.approx(
        ours.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["loss"], rel=1e-3)


def test_weights_that_fit_no_loss_value_are_refused_clearly():
    x, y, _ = data()
    ours, _ = pair()
    with pytest.raises(InputError, match=r"a batch of it has shape \(\d+, 7\), the values "
                                         r"\(\d+, 6\).*one per value, shape \(samples, 6\)"):
        ours.fit(x, y, sample_weight=np.ones((N, T + 1), np.float32), verbose=0)
    with pytest.raises(InputError, match=r"one weight per sample, shape \(40,\), or one per "
                                         r"loss value"):
        ours.fit(x, y, sample_weight=np.ones((N - 1, T), np.float32), verbose=0)
