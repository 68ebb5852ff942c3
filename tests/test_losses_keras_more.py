"""kilnet's CTC, Dice, Tversky, Circle and CategoricalGeneralizedCrossEntropy against Keras 3
(JAX backend): values under every reduction and sample weights, function forms, gradients,
configs and errors; the batch-level losses in fit/evaluate with a padded last batch (one SGD
epoch against Keras's, batch by batch); CTC training end to end. Then Keras's
serialize/deserialize of losses, metrics, activations, constraints and regularizers, and the
activations silu, hard_swish, glu and threshold."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import _ctc, activations, constraints, layers, losses, metrics, regularizers

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras reference tests need KERAS_BACKEND=jax", allow_module_level=True)

REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none"]
N = 8


def rng(seed=0):
    return np.random.default_rng(seed)


def ctc_data(seed=0, batch=N, steps=9, classes=5, max_label=4):
    """Labels 1..classes-1 padded with 0 (the blank), scores (batch, steps, classes)."""
    r = rng(seed)
    scores = r.normal(size=(batch, steps, classes)).astype(np.float32)
    labels = np.zeros((batch, max_label), np.int32)
    for row, length in enumerate(r.integers(1, max_label + 1, batch)):
        labels[row, :length] = r.integers(1, classes, length)
    labels[0, :2] = 3  # a repeated label needs a blank between its two emissions
    return labels, scores


def masks(seed, shape=(N, 3, 3, 1)):
    r = rng(seed)
    return ((r.uniform(size=shape) > 0.5).astype(np.float32),
            r.uniform(0.02, 0.98, shape).astype(np.float32))


def embeddings(seed=0, n=N, dim=4):
    e = rng(seed).normal(size=(n, dim)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


# Keras 3.15.x weighs Tversky's false negatives by alpha (fixed after 3.15, keras #23333);
# kilnet follows the fix, so Tversky(a, b) here equals Keras 3.15's Tversky(b, a).
# name: (kilnet kwargs, Keras kwargs, class name, data)
CASES = {
    "ctc": ({}, {}, "CTC", lambda: ctc_data(1)),
    "dice": ({}, {}, "Dice", lambda: masks(2)),
    "dice_axis": ({"axis": (1, 2, 3)}, {"axis": (1, 2, 3)}, "Dice", lambda: masks(3)),
    "dice_axis_1": ({"axis": 1}, {"axis": 1}, "Dice", lambda: masks(3, (N, 5))),
    "tversky": ({}, {}, "Tversky", lambda: masks(4)),
    "tversky_weighted": ({"alpha": 0.3, "beta": 0.7}, {"alpha": 0.7, "beta": 0.3}, "Tversky",
                         lambda: masks(5)),
    "tversky_axis": ({"alpha": 0.6, "beta": 0.2, "axis": (1, 2)},
                     {"alpha": 0.2, "beta": 0.6, "axis": (1, 2)}, "Tversky", lambda: masks(6)),
    # class 3 has one sample: its loss is 0 and it is left out of the mean (Keras's mask)
    "circle": ({"gamma": 4.0}, {"gamma": 4.0}, "Circle",
               lambda: (np.array([0, 1, 0, 2, 1, 2, 0, 3]), embeddings(7))),
    "circle_defaults": ({}, {}, "Circle",
                        lambda: (np.array([0, 1, 0, 1, 1, 2, 0, 2]), embeddings(8))),
    "circle_diagonal": ({"remove_diagonal": False, "margin": 0.25}, {"remove_diagonal": False,
                        "margin": 0.25}, "Circle",
                        lambda: (np.array([0, 1, 0, 2, 1, 2, 0, 3]), embeddings(9))),
    "gce": ({}, {}, "CategoricalGeneralizedCrossEntropy",
            lambda: (rng(10).integers(0, 4, N), np.asarray(
                jax.nn.softmax(rng(11).normal(size=(N, 4)))).astype(np.float32))),
    "gce_q": ({"q": 0.8}, {"q": 0.8}, "CategoricalGeneralizedCrossEntropy",
              lambda: (rng(12).integers(0, 4, N), np.asarray(
                  jax.nn.softmax(rng(13).normal(size=(N, 4)))).astype(np.float32))),
}


def pair(name, **extra):
    ours_kw, theirs_kw, cls, data = CASES[name]
    y, p = data()
    return (getattr(losses, cls)(**ours_kw, **extra), getattr(keras.losses, cls)(**theirs_kw,
                                                                               **extra), y, p)


def close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **{"rtol": 2e-5, "atol": 1e-6,
                                                                **kw})


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_equal_keras(name, reduction):
    ours, theirs, y, p = pair(name, reduction=reduction)
    close(ours(y, p), theirs(y, p))
    w = rng(20).uniform(0.0, 2.0, N).astype(np.float32)
    close(ours(y, p, sample_weight=w), theirs(y, p, sample_weight=w))
    if reduction == "sum_over_batch_size":  # traced too
        close(jax.jit(ours.__call__)(y, p, w), theirs(y, p, sample_weight=w))


@pytest.mark.parametrize("name", sorted(CASES))
def test_values_the_programs_average_give_keras_batch_loss(name):
    """compile()'s copy: one value per sample whose plain mean (times the sample weights) is
    Keras's batch loss, also for the losses of the whole batch and Circle's mask."""
    ours, theirs, y, p = pair(name)
    values = np.asarray(jax.jit(losses.get(ours).__call__)(y, p))
    assert values.shape[0] == N
    assert values.reshape(N, -1).mean(1).mean() == pytest.approx(float(theirs(y, p)),
                                                                   rel=2e-5, abs=1e-6)
    w = rng(21).uniform(0.0, 2.0, N).astype(np.float32)
    weighted = (values.reshape(N, -1).mean(1) * w).mean()
    assert weighted == pytest.approx(float(theirs(y, p, sample_weight=w)), rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_equal_keras(name):
    ours, theirs, y, p = pair(name)
    if name == "circle_defaults":  # gamma 80: Keras's own values are too steep to compare
        return
    ours_grad = jax.grad(lambda q: ours(y, q))(jnp.asarray(p))
    theirs_grad = jax.grad(lambda q: theirs(y, q))(jnp.asarray(p))
    assert np.all(np.isfinite(np.asarray(ours_grad)))
    close(ours_grad, theirs_grad, rtol=1e-4, atol=1e-6)


def test_function_forms_equal_keras():
    labels, scores = ctc_data(30)
    close(losses.ctc(labels, scores), keras.losses.ctc(labels, scores))
    y, p = masks(31)
    close(losses.dice(y, p), keras.losses.dice(y, p))
    close(losses.dice(y, p, axis=(1, 2)), keras.losses.dice(y, p, axis=(1, 2)))
    close(losses.tversky(y, p, 0.4, 0.4, (1, 2, 3)), keras.losses.tversky(y, p, 0.4, 0.4,
                                                                          (1, 2, 3)))
    close(losses.tversky(y, p, 0.2, 0.9), keras.losses.tversky(y, p, 0.9, 0.2))
    labels, emb = np.array([0, 1, 0, 2, 1, 2, 0, 3]), embeddings(32)
    ref_labels, refs = np.array([0, 1, 2, 3, 0]), embeddings(33, n=5)
    close(losses.circle(labels, emb, gamma=3.0), keras.losses.circle(labels, emb, gamma=3.0))
    close(losses.circle(labels, emb, ref_labels, refs, remove_diagonal=False, gamma=3.0),
          keras.losses.circle(labels, emb, ref_labels, refs, remove_diagonal=False, gamma=3.0))
    y, p = CASES["gce"][3]()
    close(losses.categorical_generalized_cross_entropy(y, p, 0.3),
          keras.losses.categorical_generalized_cross_entropy(y, p, 0.3))


def test_ctc_loss_equals_keras_ops_with_lengths_and_mask_index():
    labels, scores = ctc_data(40, classes=6)
    r = rng(41)
    label_length = np.minimum(r.integers(1, 5, N), (labels != 0).sum(1).clip(1))
    output_length = r.integers(5, 10, N)
    for mask_index in (0, 5):
        close(_ctc.ctc_loss(labels, scores, label_length, output_length, mask_index),
              keras.ops.ctc_loss(labels, scores, label_length, output_length, mask_index))


def test_gce_takes_column_labels_as_class_ids():
    """Keras documents (batch, 1) labels as class ids; Keras 3.15 broadcasts them against
    every sample instead. kilnet gives the documented value: that of (batch,) labels."""
    y, p = CASES["gce"][3]()
    loss = losses.CategoricalGeneralizedCrossEntropy()
    close(loss(y[:, None], p), keras.losses.CategoricalGeneralizedCrossEntropy()(y, p))


# -- in fit and evaluate: padded last batches ---------------------------------------------------
def seg_models(seed=0):
    """A tiny per-pixel sigmoid model, in kilnet and in Keras with the same weights."""
    ours = kilnet.Sequential([layers.Input(shape=(3, 3, 2)), layers.Dense(1,
                                                                          activation="sigmoid")])
    ours.build(seed=seed)
    theirs = keras.Sequential([keras.Input(shape=(3, 3, 2)), keras.layers.Dense(
        1, activation="sigmoid")])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def embed_models(seed=0):
    ours = kilnet.Sequential([layers.Input(shape=(5,)), layers.Dense(4),
                              layers.UnitNormalization()])
    ours.build(seed=seed)
    theirs = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(4),
                               keras.layers.UnitNormalization()])
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def seg_data(n=10):
    r = rng(50)
    x = r.normal(size=(n, 3, 3, 2)).astype(np.float32)
    return x, (r.uniform(size=(n, 3, 3, 1)) > 0.5).astype(np.float32)


def embed_data(n=10):
    r = rng(51)
    return r.normal(size=(n, 5)).astype(np.float32), np.array([0, 1, 0, 1, 2, 2, 0, 1, 2, 0])


BATCH_LEVEL = {
    "dice": (lambda: losses.Dice(), lambda: keras.losses.Dice(), seg_models, seg_data),
    "tversky": (lambda: losses.Tversky(alpha=0.3, beta=0.7),
                lambda: keras.losses.Tversky(alpha=0.7, beta=0.3), seg_models, seg_data),
    "dice_per_channel": (lambda: losses.Dice(axis=(0, 1, 2)),
                         lambda: keras.losses.Dice(axis=(0, 1, 2)), seg_models, seg_data),
    "circle": (lambda: losses.Circle(gamma=8.0), lambda: keras.losses.Circle(gamma=8.0),
               embed_models, embed_data),
}


def keras_batch_losses(model, loss, x, y, batch_size):
    """Keras's loss of each batch (in order) and its size (traced: Keras's eager ops are
    slow to start)."""
    batch_loss = jax.jit(lambda y, p: loss(y, p))
    return [(float(batch_loss(y[start:start + batch_size], model(x[start:start + batch_size]))),
             len(x[start:start + batch_size])) for start in range(0, len(x), batch_size)]


@pytest.mark.parametrize("name", sorted(BATCH_LEVEL))
def test_padded_last_batch_evaluates_as_keras(name):
    make_ours, make_theirs, models, data = BATCH_LEVEL[name]
    (ours, theirs), (x, y) = models(), data()
    ours.compile(optimizer="sgd", loss=make_ours())
    per_batch = keras_batch_losses(theirs, make_theirs(), x, y, 4)  # 4, 4 and 2 rows
    expected = sum(v * n for v, n in per_batch) / len(x)   # Keras's evaluate: by batch size
    assert ours.evaluate(x, y, batch_size=4, verbose=0) == pytest.approx(expected, rel=1e-5)
    # the last batch alone is Keras's loss of its two rows, not of a padded batch of four
    assert ours.evaluate(x[8:], y[8:], batch_size=4, verbose=0) == pytest.approx(
        per_batch[-1][0], rel=1e-5)


@pytest.mark.parametrize("name", sorted(BATCH_LEVEL))
def test_padded_batches_train_as_keras(name):
    """One SGD epoch of batches 4, 4, 2 (the last one padded in kilnet), with and without
    sample weights (zero ones too): the weights equal Keras's."""
    make_ours, make_theirs, models, data = BATCH_LEVEL[name]
    x, y = data()
    sample_weight = rng(52).uniform(0.0, 2.0, len(x)).astype(np.float32)
    sample_weight[[1, 9]] = 0.0
    for weights in (None, sample_weight):
        ours, theirs = models()
        ours.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.5), loss=make_ours())
        theirs.compile(optimizer=keras.optimizers.SGD(learning_rate=0.5), loss=make_theirs())
        ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                 sample_weight=weights)
        theirs.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                   sample_weight=weights)
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)


def test_batch_level_flags():
    assert losses.Dice().batch_level and losses.Tversky().batch_level
    assert losses.Circle().batch_level
    assert not losses.CTC().batch_level and not losses.MeanSquaredError().batch_level
    assert not losses.CategoricalGeneralizedCrossEntropy().batch_level


# -- CTC end to end ----------------------------------------------------------------------------
def ctc_model(steps=8, features=3, classes=4, seed=0):
    m = kilnet.Sequential([layers.Input(shape=(steps, features)),
                           layers.Dense(classes + 1, activation="softmax")])
    m.build(seed=seed)
    return m


def test_ctc_model_trains_and_its_first_step_equals_keras():
    r = rng(60)
    x = r.normal(size=(12, 8, 3)).astype(np.float32)
    y, _ = ctc_data(61, batch=12, steps=8, classes=5, max_label=3)
    m = ctc_model()
    m.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.05), loss=losses.CTC())
    history = m.fit(x, y, batch_size=12, epochs=2, shuffle=False, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    # one SGD step from the same weights as Keras's (softmax outputs read as scores, as Keras)
    m = ctc_model(seed=1)
    k = keras.Sequential([keras.Input(shape=(8, 3)), keras.layers.Dense(5,
                                                                        activation="softmax")])
    k.set_weights(m.get_weights())
    m.compile(optimizer=kilnet.optimizers.SGD(learning_rate=1.0), loss="ctc")
    k.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="ctc")
    m.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    k.fit(x, y, batch_size=5, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(m.get_weights(), k.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert m.evaluate(x, y, batch_size=5, verbose=0) == pytest.approx(
        k.evaluate(x, y, batch_size=5, verbose=0), rel=1e-5)


# -- names, configs, errors --------------------------------------------------------------------
NEW = ["CTC", "Dice", "Tversky", "Circle", "CategoricalGeneralizedCrossEntropy"]


@pytest.mark.parametrize("cls_name", NEW)
def test_names_and_configs_follow_keras(cls_name):
    ours, theirs = getattr(losses, cls_name)(), getattr(keras.losses, cls_name)()
    assert ours.name == theirs.name
    ours_config, theirs_config = ours.get_config(), theirs.get_config()
    assert ours_config == theirs_config
    assert list(ours_config) == list(theirs_config)
    assert type(losses.get(ours.name)) is type(ours)
    assert type(losses.get(cls_name)) is type(ours)
    again = losses.deserialize(keras.losses.serialize(theirs))
    assert type(again) is type(ours) and again.get_config() == ours.get_config()


def test_positional_arguments_follow_keras():
    assert losses.Dice("sum", "d", (1, 2)).axis == (1, 2)
    tversky = losses.Tversky(0.2, 0.8, "sum", "t", 1)
    assert (tversky.alpha, tversky.beta, tversky.reduction, tversky.name, tversky.axis) == (
        0.2, 0.8, "sum", "t", 1)
    circle = losses.Circle(2.0, 0.3, False, "none")
    assert (circle.gamma, circle.margin, circle.remove_diagonal, circle.reduction) == (
        2.0, 0.3, False, "none")
    assert losses.CategoricalGeneralizedCrossEntropy(0.7, "sum").q == 0.7
    assert losses.CTC("sum", "my_ctc").name == "my_ctc"
    assert losses.Dice.from_config({"axis": [1, 2], "name": "d"}).axis == [1, 2]
    y, p = masks(70)
    close(losses.Dice(axis=[1, 2, 3], reduction=None)(y, p),
          keras.losses.Dice(axis=(1, 2, 3), reduction=None)(y, p))


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match=r"q must be in the open interval.*Received: q=1"):
        losses.CategoricalGeneralizedCrossEntropy(q=1)
    with pytest.raises(TypeError, match="q must be a number"):
        losses.CategoricalGeneralizedCrossEntropy(q="0.5")
    with pytest.raises(ValueError, match="axis must be None, an int or a tuple.*Received"):
        losses.Dice(axis="channels")
    with pytest.raises(TypeError, match="alpha must be a number"):
        losses.Tversky(alpha=None)
    with pytest.raises(TypeError, match="margin must be a number"):
        losses.Circle(margin="wide")
    with pytest.raises(ValueError, match=r"CTC loss needs labels.*Received: y_true.shape"):
        losses.CTC()(np.zeros((2, 3, 1)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="ctc_loss needs target"):
        _ctc.ctc_loss(np.zeros((2,)), np.zeros((2, 4, 3)), [1, 1], [4, 4])


# -- serialize / deserialize -------------------------------------------------------------------
def test_losses_serialize_as_keras():
    theirs = keras.losses.serialize(keras.losses.MeanSquaredError())
    ours = losses.serialize(losses.MeanSquaredError())
    assert set(ours) == set(theirs)
    assert {k: ours[k] for k in ("module", "class_name", "registered_name")} == {
        k: theirs[k] for k in ("module", "class_name", "registered_name")}
    assert theirs["config"].items() <= ours["config"].items()
    for entry in (theirs, ours, {"class_name": "MeanSquaredError", "config": {"name": "m"}},
                  "mse", "MeanSquaredError", "mean_squared_error",
                  keras.losses.serialize(keras.losses.mean_squared_error)):
        assert type(losses.deserialize(entry)) is losses.MeanSquaredError
    focal = losses.deserialize(keras.losses.serialize(
        keras.losses.BinaryFocalCrossentropy(gamma=3.0, from_logits=True)))
    assert focal.gamma == 3.0 and focal.from_logits
    # compile() takes Keras's four-key entry too
    assert type(losses.get(theirs)) is losses.MeanSquaredError
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="Unknown loss.*Received"):
        losses.deserialize("mean_sqared_error")
    with pytest.raises(ValueError, match="register_serializable"):
        losses.serialize(losses.LossFunctionWrapper(lambda a, b: a - b))


def test_registered_loss_classes_round_trip_by_registered_name():
    @kilnet.saving.register_serializable(package="LossTest")
    class Cubed(losses.Loss):
        def call(self, y_true, y_pred):
            return jnp.mean(jnp.abs(y_pred - y_true) ** 3, axis=-1)

    entry = losses.serialize(Cubed(name="cubed"))
    assert (entry["module"], entry["class_name"], entry["registered_name"]) == (
        Cubed.__module__, "Cubed", "LossTest>Cubed")   # as Keras writes it
    again = losses.deserialize(entry)
    assert type(again) is Cubed and again.name == "cubed"


def test_metrics_serialize_as_keras():
    for ours, theirs in ((metrics.MeanSquaredError(), keras.metrics.MeanSquaredError()),
                         (metrics.AUC(num_thresholds=7), keras.metrics.AUC(num_thresholds=7))):
        a, b = metrics.serialize(ours), keras.metrics.serialize(theirs)
        assert set(a) == set(b)
        assert (a["module"], a["class_name"], a["registered_name"]) == (
            b["module"], b["class_name"], b["registered_name"])
        again = metrics.deserialize(b)
        # Keras numbers a second metric of a class in one process (auc_1): the entry's name
        # is what must come back, whichever tests ran before in this worker.
        assert type(again) is type(ours) and again.name == b["config"]["name"]
    assert metrics.deserialize(keras.metrics.serialize(
        keras.metrics.AUC(num_thresholds=7))).num_thresholds == 7
    assert type(metrics.deserialize("mse")) is metrics.MeanSquaredError
    assert type(metrics.deserialize({"class_name": "Recall", "config": {}})) is metrics.Recall
    assert type(metrics.deserialize(keras.metrics.serialize(
        keras.metrics.mean_squared_error))) is metrics.MeanSquaredError
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.deserialize({"class_name": "Nope", "config": {}})
    with pytest.raises(ValueError, match="Received"):
        metrics.serialize("mse")


def test_activations_serialize_as_keras():
    for name in sorted(activations._FUNCTIONS):
        ours_fn = activations.deserialize(name)
        theirs_fn = keras.activations.get(name)
        assert activations.serialize(ours_fn) == keras.activations.serialize(theirs_fn), name
    entry = {"module": "keras.activations", "class_name": "function", "config": "silu",
             "registered_name": None}
    assert activations.deserialize(entry) is activations.silu
    with pytest.raises(ValueError, match="Unknown activation.*Received"):
        activations.deserialize("swishy")
    def unregistered(x):
        return x

    with pytest.raises(ValueError, match="Received"):
        activations.serialize(unregistered)


def test_constraints_and_regularizers_deserialize_keras_entries():
    for theirs in (keras.constraints.MaxNorm(3, axis=1), keras.constraints.NonNeg(),
                   keras.constraints.MinMaxNorm(0.5, 2.0, 0.5)):
        ours = constraints.deserialize(keras.constraints.serialize(theirs))
        assert type(ours).__name__ == type(theirs).__name__
        assert ours.get_config() == theirs.get_config()
    assert constraints.deserialize("max_norm") == constraints.MaxNorm()
    for theirs in (keras.regularizers.L2(0.3), keras.regularizers.L1L2(0.1, 0.2)):
        ours = regularizers.deserialize(keras.regularizers.serialize(theirs))
        assert type(ours).__name__ == type(theirs).__name__
        assert ours.get_config() == pytest.approx(theirs.get_config())
    assert regularizers.deserialize({"class_name": "L1", "config": {"l1": 0.5}}).l1 == 0.5
    with pytest.raises(ValueError, match="Unknown constraint"):
        constraints.deserialize({"class_name": "Lambda", "config": {}})
    with pytest.raises(ValueError, match="Unknown regularizer.*Received"):
        regularizers.deserialize("l3")


# -- activations -------------------------------------------------------------------------------
def test_new_activations_equal_keras():
    x = rng(80).normal(size=(3, 6)).astype(np.float32) * 3
    close(activations.silu(x), keras.activations.silu(x))
    close(activations.hard_swish(x), keras.activations.hard_swish(x))
    close(activations.glu(x), keras.activations.glu(x))
    close(activations.glu(x, axis=0 if x.shape[0] % 2 == 0 else -1),
          keras.activations.glu(x, axis=0 if x.shape[0] % 2 == 0 else -1))
    close(activations.threshold(x, 0.3, -2.0), keras.activations.threshold(x, 0.3, -2.0))
    assert activations.silu is activations.swish
    assert activations.hard_swish is activations.hard_silu
    with pytest.raises(ValueError, match="even size.*Received"):
        activations.glu(np.zeros((2, 3)))


@pytest.mark.parametrize("name", ["silu", "swish", "hard_swish", "hard_silu"])
def test_activation_names_in_layers_as_keras(name):
    ours = kilnet.Sequential([layers.Input(shape=(4,)), layers.Dense(3, activation=name)])
    ours.build(seed=0)
    theirs = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3,
                                                                            activation=name)])
    theirs.set_weights(ours.get_weights())
    assert ours.layers[-1].get_config()["activation"] == \
        theirs.layers[-1].get_config()["activation"]
    x = rng(81).normal(size=(5, 4)).astype(np.float32)
    close(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5)


def test_glu_and_threshold_are_not_layer_activations():
    with pytest.raises(ValueError, match="halves the last axis"):
        layers.Dense(4, activation="glu")
    with pytest.raises(ValueError, match="threshold and default_value"):
        layers.Dense(4, activation="threshold")


def test_keras_files_carry_the_new_losses_both_ways(tmp_path):
    ours = kilnet.Sequential([layers.Input(shape=(3, 3, 2)), layers.Dense(1,
                                                                          activation="silu")])
    ours.build(seed=0)
    ours.compile(optimizer="sgd", loss=losses.Tversky(alpha=0.3, beta=0.7, axis=(1, 2)))
    ours.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    assert theirs.loss.get_config()["alpha"] == 0.3
    theirs.compile(optimizer="sgd", loss=keras.losses.Circle(gamma=5.0))
    theirs.save(tmp_path / "theirs.keras")
    loaded = kilnet.models.load_model(tmp_path / "theirs.keras").compiled.objective.heads[0]
    assert type(loaded.loss) is losses.Circle and loaded.loss.gamma == 5.0


def _feature_matching_loss(lib):
    """keras.io's GauGAN FeatureMatchingLoss: the mean absolute error of each of the
    discriminator's feature maps but the last, on lists of maps of different shapes."""

    class FeatureMatchingLoss(lib.losses.Loss):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.mae = lib.losses.MeanAbsoluteError()

        def call(self, y_true, y_pred):
            if isinstance(y_true, dict):
                return sum(self.mae(y_true[key], y_pred[key]) for key in sorted(y_true))
            loss = 0
            for i in range(len(y_true) - 1):
                loss += self.mae(y_true[i], y_pred[i])
            return loss

    return FeatureMatchingLoss()


@pytest.mark.parametrize("form", ["list", "tuple", "dict", "same shapes"])
def test_a_loss_of_yours_takes_structures_of_arrays_as_keras(form):
    rng = np.random.default_rng(0)
    shapes = ([(2, 4, 4, 3)] * 3 if form == "same shapes"
              else [(2, 16, 16, 1), (2, 8, 8, 2), (2, 1, 1, 1)])
    real = [rng.random(shape).astype(np.float32) for shape in shapes]
    fake = [rng.random(shape).astype(np.float32) for shape in shapes]
    if form == "tuple":
        real, fake = tuple(real), tuple(fake)
    elif form == "dict":
        real, fake = dict(zip("abc", real)), dict(zip("abc", fake))
    ours = float(_feature_matching_loss(kilnet)(real, fake))
    theirs = float(_feature_matching_loss(keras)(real, fake))
    assert ours == pytest.approx(theirs, rel=1e-6)


def _model_reducing_its_own_loss(lib):
    """keras.io's image captioning: compile(loss=...(reduction=None)) and a train_step of
    the model's own that masks the per-token losses of `self.loss` and averages them."""
    ops = lib.ops

    class Captioner(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(4, name="tokens")
            self.tracker = lib.metrics.Mean(name="loss")

        def call(self, x, training=False):
            return self.dense(x)

        def masked_loss(self, y, logits):
            values = self.loss(y, logits)
            mask = ops.cast(ops.not_equal(y, 0), values.dtype)
            return ops.sum(values * mask) / ops.sum(mask)

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metric_vars = state
            x, y = data

            def loss_of(trainable, non_trainable):
                logits, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                            training=True)
                return self.masked_loss(y, logits), non_trainable

            (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(
                trainable, non_trainable)
            trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                       trainable)
            updated, logs = [], {}
            for metric in self.metrics:   # the model's metrics' variables, in their order
                own = list(metric_vars[len(updated):len(updated) + len(metric.variables)])
                if metric is self.tracker:
                    own = metric.stateless_update_state(own, loss)
                    logs["loss"] = metric.stateless_result(own)
                updated += own
            return logs, (trainable, non_trainable, optimizer_vars, updated)

    return Captioner()


def test_a_loss_your_train_step_reduces_compiles_with_any_reduction_as_keras():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5, 3)).astype(np.float32)
    y = rng.integers(1, 4, (8, 5))
    y[:, 3:] = 0   # padding tokens
    histories = []
    weights = None
    for lib in (keras, kilnet):
        model = _model_reducing_its_own_loss(lib)
        model(x)
        if weights is None:
            weights = model.get_weights()
        else:
            model.set_weights(weights)
        model.compile(optimizer=lib.optimizers.SGD(0.1),
                      loss=lib.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                    reduction=None))
        histories.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False,
                                   verbose=0).history["loss"])
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
    # kilnet's own test_step would reduce it: refused there, with the same explanation
    with pytest.raises(ValueError, match="reduction='sum_over_batch_size' only"):
        model.evaluate(x, y, verbose=0)
    plain = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
    with pytest.raises(ValueError, match="reduction='sum_over_batch_size' only"):
        plain.compile(loss=kilnet.losses.MeanSquaredError(reduction=None))
