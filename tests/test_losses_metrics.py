"""Losses and metrics against NumPy transcriptions of Keras 3's formulas
(keras/src/backend/jax/nn.py, keras/src/losses/losses.py, keras/src/metrics/*), loss gradients
against finite differences, and Keras's resolution of the "accuracy" string."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_grad

import kilnet
from kilnet import layers, losses, metrics

EPS = 1e-7  # Keras's backend epsilon


def rng(seed=0):
    return np.random.default_rng(seed)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def probabilities(n=6, k=4, seed=0):
    return np_softmax(rng(seed).normal(size=(n, k))).astype(np.float32)


def call(loss, y_true, y_pred):
    return np.asarray(jax.jit(loss.per_sample)(jnp.asarray(y_true), jnp.asarray(y_pred)))


# -- losses against NumPy ------------------------------------------------------------------------
@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_sparse_categorical_crossentropy(label_shape):
    p = probabilities()
    z = rng(1).normal(size=(6, 4)).astype(np.float32)
    labels = np.array([0, 3, 1, 2, 3, 0])
    y = labels if label_shape == "flat" else labels[:, None]
    picked = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)[np.arange(6), labels]
    np.testing.assert_allclose(call(losses.SparseCategoricalCrossentropy(), y, p),
                               -np.log(picked), rtol=1e-5)
    np.testing.assert_allclose(
        call(losses.SparseCategoricalCrossentropy(from_logits=True), y, z),
        -np_log_softmax(z.astype(np.float64))[np.arange(6), labels], rtol=1e-5)


def test_sparse_crossentropy_clips_like_keras():
    p = np.array([[1.0, 0.0], [0.5, 0.5]], np.float32)
    values = call(losses.SparseCategoricalCrossentropy(), np.array([1, 0]), p)
    np.testing.assert_allclose(values, [-np.log(EPS), -np.log(0.5)], rtol=1e-4)


def test_categorical_crossentropy():
    p = probabilities()
    z = rng(1).normal(size=(6, 4)).astype(np.float32)
    y = rng(2).dirichlet(np.ones(4), 6).astype(np.float32)  # soft labels are allowed
    expected = -(y * np.log(np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS))).sum(-1)
    np.testing.assert_allclose(call(losses.CategoricalCrossentropy(), y, p), expected,
                               rtol=1e-5)
    np.testing.assert_allclose(call(losses.CategoricalCrossentropy(from_logits=True), y, z),
                               -(y * np_log_softmax(z.astype(np.float64))).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("shape, label_shape", [((6, 1), (6,)), ((6, 1), (6, 1)),
                                                ((6, 3), (6, 3))])
def test_binary_crossentropy(shape, label_shape):
    p = rng().uniform(0.01, 0.99, shape).astype(np.float32)
    z = rng(1).normal(scale=3, size=shape).astype(np.float32)
    y = rng(2).integers(0, 2, label_shape).astype(np.float32)
    yy = y.reshape(shape).astype(np.float64)
    pc = np.clip(p, EPS, 1 - EPS).astype(np.float64)
    expected = -(yy * np.log(pc) + (1 - yy) * np.log(1 - pc)).mean(-1)
    np.testing.assert_allclose(call(losses.BinaryCrossentropy(), y, p), expected, rtol=1e-5)
    s = np_sigmoid(z.astype(np.float64))
    expected = -(yy * np.log(s) + (1 - yy) * np.log(1 - s)).mean(-1)
    np.testing.assert_allclose(call(losses.BinaryCrossentropy(from_logits=True), y, z),
                               expected, rtol=1e-5)


def test_binary_crossentropy_from_logits_is_stable():
    z = np.array([[80.0], [-80.0]], np.float32)
    values = call(losses.BinaryCrossentropy(from_logits=True), np.array([0.0, 1.0]), z)
    np.testing.assert_allclose(values, [80.0, 80.0], rtol=1e-6)


def test_regression_losses():
    y = rng().normal(size=(5, 3)).astype(np.float32)
    p = rng(1).normal(scale=2, size=(5, 3)).astype(np.float32)
    err = (p - y).astype(np.float64)
    np.testing.assert_allclose(call(losses.get("mse"), y, p), (err ** 2).mean(-1), rtol=1e-5)
    np.testing.assert_allclose(call(losses.get("mae"), y, p), np.abs(err).mean(-1), rtol=1e-5)
    for delta in (1.0, 0.5):
        a = np.abs(err)
        huber = np.where(a <= delta, 0.5 * err ** 2, delta * a - 0.5 * delta ** 2).mean(-1)
        np.testing.assert_allclose(call(losses.Huber(delta), y, p), huber, rtol=1e-5)
    np.testing.assert_allclose(call(losses.get("huber"), y, p),
                               call(losses.Huber(1.0), y, p), rtol=1e-6)
    # labels of shape (N,) against outputs (N, 1)
    np.testing.assert_allclose(call(losses.get("mse"), y[:, 0], p[:, :1]),
                               err[:, 0] ** 2, rtol=1e-5)


# -- loss gradients against finite differences ---------------------------------------------------
GRAD_CASES = {
    "sparse_ce": (losses.SparseCategoricalCrossentropy(), "probs", "sparse"),
    "sparse_ce_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), "logits",
                         "sparse"),
    "categorical_ce": (losses.CategoricalCrossentropy(), "probs", "onehot"),
    "categorical_ce_logits": (losses.CategoricalCrossentropy(from_logits=True), "logits",
                              "onehot"),
    "binary_ce": (losses.BinaryCrossentropy(), "probs", "binary"),
    "binary_ce_logits": (losses.BinaryCrossentropy(from_logits=True), "logits", "binary"),
    "mse": (losses.MeanSquaredError(), "logits", "real"),
    "mae": (losses.MeanAbsoluteError(), "logits", "real"),
    "huber": (losses.Huber(0.7), "logits", "real"),
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_loss_gradients(name):
    loss, pred_kind, label_kind = GRAD_CASES[name]
    r = rng(3)
    pred = (r.uniform(0.05, 0.95, (4, 3)) if pred_kind == "probs"
            else r.normal(scale=2.0, size=(4, 3)))
    labels = {
        "sparse": np.array([0, 2, 1, 2]),
        "onehot": np.eye(3)[[0, 2, 1, 2]],
        "binary": r.integers(0, 2, (4, 3)).astype(np.float64),
        "real": pred + r.choice([-1, 1], (4, 3)) * r.uniform(0.1, 2.0, (4, 3)),
    }[label_kind]
    if name == "huber":  # keep clear of the kink at |error| = delta
        labels = pred + np.sign(labels - pred) * np.where(np.abs(labels - pred) < 0.8, 0.3, 1.5)
    weights = r.uniform(0.5, 1.5, 4)
    check_grad(lambda p: jnp.sum(loss.per_sample(jnp.asarray(labels), p) * weights), pred)


# -- metrics against NumPy -----------------------------------------------------------------------
def per_sample(metric, y_true, y_pred):
    return np.asarray(metric.per_sample(jnp.asarray(y_true), jnp.asarray(y_pred)))


def test_accuracy_metrics():
    p = probabilities(8, 5, seed=4)
    labels = rng(5).integers(0, 5, 8)
    hits = (p.argmax(-1) == labels).astype(np.float32)
    assert 0 < hits.mean() < 1
    np.testing.assert_array_equal(per_sample(metrics.SparseCategoricalAccuracy(), labels, p), hits)
    np.testing.assert_array_equal(
        per_sample(metrics.SparseCategoricalAccuracy(), labels[:, None], p), hits)
    np.testing.assert_array_equal(
        per_sample(metrics.CategoricalAccuracy(), np.eye(5)[labels], p), hits)


def test_binary_accuracy():
    p = rng().uniform(size=(8, 1)).astype(np.float32)
    y = rng(1).integers(0, 2, 8)
    for threshold in (0.5, 0.7):
        expected = ((p[:, 0] > threshold) == (y == 1)).astype(np.float32)
        np.testing.assert_array_equal(
            per_sample(metrics.BinaryAccuracy(threshold=threshold), y, p), expected)
        np.testing.assert_array_equal(
            per_sample(metrics.BinaryAccuracy(threshold=threshold), y[:, None], p), expected)
    multi_p = rng(2).uniform(size=(8, 3))
    multi_y = rng(3).integers(0, 2, (8, 3))
    np.testing.assert_allclose(per_sample(metrics.BinaryAccuracy(), multi_y, multi_p),
                               ((multi_p > 0.5) == multi_y).mean(-1), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_categorical_accuracy(k):
    p = probabilities(10, 5, seed=6)
    labels = rng(7).integers(0, 5, 10)
    rank = (p > p[np.arange(10), labels][:, None]).sum(-1)  # classes scoring higher
    expected = (rank < k).astype(np.float32)
    metric = metrics.TopKCategoricalAccuracy(k=k)
    np.testing.assert_array_equal(per_sample(metric, np.eye(5)[labels], p), expected)
    np.testing.assert_array_equal(per_sample(metric, labels, p), expected)
    if k == 1:
        np.testing.assert_array_equal(expected, p.argmax(-1) == labels)


def test_regression_metrics():
    y = rng().normal(size=(5, 2))
    p = rng(1).normal(size=(5, 2))
    np.testing.assert_allclose(per_sample(metrics.get("mse"), y, p), ((p - y) ** 2).mean(-1),
                               rtol=1e-5)
    np.testing.assert_allclose(per_sample(metrics.get("mae"), y, p), np.abs(p - y).mean(-1),
                               rtol=1e-5)


# -- "accuracy" resolved as Keras does ------------------------------------------------------------
@pytest.mark.parametrize("loss, kwargs, expected", [
    ("sparse_categorical_crossentropy", {"output_shape": (10,)}, metrics.SparseCategoricalAccuracy),
    ("categorical_crossentropy", {"output_shape": (10,)}, metrics.CategoricalAccuracy),
    ("binary_crossentropy", {"output_shape": (1,)}, metrics.BinaryAccuracy),
    ("mse", {"output_shape": (1,)}, metrics.BinaryAccuracy),
    # Other losses: Keras 3's shape rule (label_shape with the batch axis).
    ("mse", {"output_shape": (4,), "label_shape": (8, 4)}, metrics.CategoricalAccuracy),
    ("mse", {"output_shape": (4,), "label_shape": (8,)}, metrics.SparseCategoricalAccuracy),
    ("mse", {"output_shape": (4,), "label_shape": (8, 1)}, metrics.SparseCategoricalAccuracy),
    ("huber", {"output_shape": (1,), "label_shape": (8,)}, metrics.BinaryAccuracy),
])
def test_accuracy_string_resolution(loss, kwargs, expected):
    for name in ("accuracy", "acc"):
        metric = metrics.get(name, loss=losses.get(loss), **kwargs)
        assert type(metric) is expected
        assert metric.name == name  # logs keep the name the user wrote


def test_metric_errors():
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.get("accuracyy")
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get("crossentropy")


# -- through a compiled model ---------------------------------------------------------------------
def dense_model(units, activation, seed=0):
    model = kilnet.Sequential([layers.Input(shape=(3,)),
                               layers.Dense(units, activation=activation)])
    model.build(seed=seed)
    return model


def forward(model, x):
    kernel, bias = model.get_weights()
    return x.astype(np.float64) @ kernel + bias


def test_accuracy_follows_the_label_shape_for_other_losses():
    """Keras 3 resolves "accuracy" from the shapes: one-hot labels with an mse loss give
    categorical accuracy (keras/src/trainers/compile_utils.py, get_metric)."""
    x = rng().normal(size=(40, 3)).astype(np.float32)
    labels = rng(1).integers(0, 4, 40)
    model = dense_model(4, "softmax")
    model.compile(optimizer="sgd", loss="mse", metrics=["accuracy"])
    logs = model.evaluate(x, np.eye(4, dtype=np.float32)[labels], verbose=0, return_dict=True)
    expected = (forward(model, x).argmax(-1) == labels).mean()
    assert 0 < expected < 1
    assert logs["accuracy"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("loss, activation, units", [
    ("sparse_categorical_crossentropy", "softmax", 4),
    ("categorical_crossentropy", "softmax", 4),
    ("binary_crossentropy", "sigmoid", 1),
])
def test_logits_path_equals_the_probability_formula(loss, activation, units):
    """A softmax/sigmoid last layer trains on its logits (stable); on non-saturated outputs the
    loss equals Keras's formula on the probabilities."""
    x = rng().normal(size=(37, 3)).astype(np.float32)
    classes = rng(1).integers(0, max(units, 2), 37)
    if loss == "categorical_crossentropy":
        y = np.eye(units, dtype=np.float32)[classes]
    else:
        y = classes.astype(np.float32 if loss == "binary_crossentropy" else np.int64)
    model = dense_model(units, activation)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    assert model.compiled.objective.heads[0].use_logits
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)

    z = forward(model, x)
    probs = np_softmax(z) if activation == "softmax" else np_sigmoid(z)
    assert EPS < probs.min() and probs.max() < 1 - EPS  # not saturated: clipping is inactive
    expected = losses.get(loss)(jnp.asarray(y), jnp.asarray(probs, jnp.float32))
    assert logs["loss"] == pytest.approx(float(np.mean(expected)), rel=1e-5)
    if activation == "softmax":
        assert logs["accuracy"] == pytest.approx((probs.argmax(-1) == classes).mean(), abs=1e-6)
    else:
        assert logs["accuracy"] == pytest.approx(((probs[:, 0] > 0.5) == classes).mean(),
                                                 abs=1e-6)
