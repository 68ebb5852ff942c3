"""compile(weighted_metrics=...): metrics weighted by sample_weight / class_weight, named as
Keras names them, against Keras itself and NumPy / scikit-learn on the same predictions."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.metrics import precision_score  # noqa: E402

import kilnet  # noqa: E402


def classifier(lib, units=3, activation="softmax"):
    inputs = lib.Input(shape=(4,))
    return lib.Model(inputs, lib.layers.Dense(units, activation=activation)(inputs))


def data(n=23, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    return x, rng.integers(0, 3, n), rng.uniform(0, 3, n).astype(np.float32)


def compiled_pair(**compile_args):
    ours, theirs = classifier(kilnet), classifier(keras)
    ours.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", **compile_args)
    ours.build(seed=0)
    theirs.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", **compile_args)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("batch_size", [23, 5])
def test_weighted_and_plain_accuracy_match_keras_names_and_values(batch_size):
    x, y, w = data()
    ours, theirs = compiled_pair(metrics=["accuracy"], weighted_metrics=["accuracy"])
    got = ours.evaluate(x, y, sample_weight=w, batch_size=batch_size, verbose=0,
                        return_dict=True)
    expected = theirs.evaluate(x, y, sample_weight=w, batch_size=batch_size, verbose=0,
                               return_dict=True)
    assert set(got) == set(expected) == {"loss", "accuracy", "weighted_accuracy"}
    assert list(got) == list(expected)   # by name, as Keras's
    for name in expected:
        assert got[name] == pytest.approx(expected[name], rel=1e-5), name
    hits = ours.predict(x, verbose=0).argmax(-1) == y
    assert got["weighted_accuracy"] == pytest.approx(np.sum(hits * w) / np.sum(w), rel=1e-6)
    assert got["accuracy"] == pytest.approx(hits.mean(), rel=1e-6)
    assert got["weighted_accuracy"] != pytest.approx(got["accuracy"])  # the weights matter


def test_weighted_metric_alone_keeps_its_name_and_without_weights_is_the_plain_mean():
    x, y, _ = data()
    ours, _ = compiled_pair(weighted_metrics=["accuracy"])
    logs = ours.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    hits = ours.predict(x, verbose=0).argmax(-1) == y
    assert logs["accuracy"] == pytest.approx(hits.mean(), rel=1e-6)


def test_class_weight_weighs_the_weighted_metrics_during_fit():
    # a vanishing learning rate: the epoch's logs are the metrics of the unchanged model
    x, y, _ = data(n=30, seed=4)
    model = classifier(kilnet)
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=1e-20),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  weighted_metrics=["accuracy"])
    model.build(seed=1)
    class_weight = {0: 0.2, 1: 5.0, 2: 1.0}
    history = model.fit(x, y, class_weight=class_weight, batch_size=8, epochs=1, verbose=0)
    w = np.array([class_weight[int(c)] for c in y])
    hits = model.predict(x, verbose=0).argmax(-1) == y
    assert history.history["weighted_accuracy"][0] == pytest.approx(
        np.sum(hits * w) / np.sum(w), rel=1e-6)
    assert history.history["accuracy"][0] == pytest.approx(hits.mean(), rel=1e-6)


def test_weighted_precision_matches_scikit_learn():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(41, 4)).astype(np.float32)
    y = rng.integers(0, 2, 41)
    w = rng.uniform(0, 2, 41).astype(np.float32)
    model = classifier(kilnet, units=1, activation="sigmoid")
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[kilnet.metrics.Precision(name="precision")],
                  weighted_metrics=[kilnet.metrics.Precision(name="precision")])
    model.build(seed=2)
    logs = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    predicted = (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int)
    assert logs["precision"] == pytest.approx(precision_score(y, predicted), rel=1e-6)
    assert logs["weighted_precision"] == pytest.approx(
        precision_score(y, predicted, sample_weight=w), rel=1e-6)


def test_weighted_metrics_by_output_name_on_two_outputs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(17, 4)).astype(np.float32)
    ya, yb = rng.integers(0, 3, 17), rng.normal(size=(17, 1)).astype(np.float32)
    w = rng.uniform(0, 2, 17).astype(np.float32)
    inputs = kilnet.Input(shape=(4,))
    a = kilnet.layers.Dense(3, activation="softmax", name="a")(inputs)
    b = kilnet.layers.Dense(1, name="b")(inputs)
    model = kilnet.Model(inputs, {"a": a, "b": b})
    model.compile(optimizer="sgd", loss={"a": "sparse_categorical_crossentropy", "b": "mse"},
                  weighted_metrics={"a": ["accuracy"], "b": ["mae"]})
    model.build(seed=5)
    logs = model.evaluate(x, {"a": ya, "b": yb}, sample_weight=w, batch_size=6, verbose=0,
                          return_dict=True)
    out = model.predict(x, verbose=0)
    hits = out["a"].argmax(-1) == ya
    mae = np.abs(out["b"] - yb)[:, 0]
    assert logs["a_accuracy"] == pytest.approx(np.sum(hits * w) / np.sum(w), rel=1e-6)
    assert logs["b_mae"] == pytest.approx(np.sum(mae * w) / np.sum(w), rel=1e-5)


def test_weighted_metrics_must_be_a_list_or_dict():
    model = classifier(kilnet)
    with pytest.raises(TypeError, match="weighted_metrics must be a list"):
        model.compile(loss="sparse_categorical_crossentropy", weighted_metrics="accuracy")
    with pytest.raises(ValueError, match="Unknown metric"):
        model.compile(loss="sparse_categorical_crossentropy", weighted_metrics=["nope"])


def test_a_metric_with_one_value_per_class_logs_a_list(capsys):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
    model = classifier(kilnet)
    model.compile(optimizer="sgd", loss="categorical_crossentropy",
                  metrics=[kilnet.metrics.F1Score(average=None, threshold=0.34)])
    model.build(seed=0)
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=2)
    assert "f1_score: " in capsys.readouterr().out  # shown as the classes' mean, as Keras
    logs = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    from sklearn.metrics import f1_score
    predicted = (model.predict(x, verbose=0) > 0.34).astype(int)
    np.testing.assert_allclose(logs["f1_score"], f1_score(y.astype(int), predicted,
                                                          average=None), rtol=1e-5)
    assert len(history.history["f1_score"][-1]) == 3
    assert kilnet.insight.analyze_plateau(history).message  # the verdict skips the list
