"""kilnet.metrics against Keras 3 and scikit-learn: the same arrays give the same numbers
(eagerly and with sample weights), compile() logs the metric over the whole dataset (a padded
last batch included), Keras-form Metric subclasses and plain functions run inside fit."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

import kilnet  # noqa: E402
from kilnet import metrics, ops  # noqa: E402

RNG = np.random.default_rng(0)
N, C = 23, 4
PROBS = RNG.dirichlet(np.ones(C), N).astype(np.float32)
LABELS = RNG.integers(0, C, N)
ONE_HOT = np.eye(C, dtype=np.float32)[LABELS]
BIN_TRUE = RNG.integers(0, 2, (N, 1)).astype(np.float32)
BIN_PRED = RNG.uniform(size=(N, 1)).astype(np.float32)
REG_TRUE = RNG.uniform(0.5, 2.0, (N, 3)).astype(np.float32)
REG_PRED = (REG_TRUE + RNG.normal(0, 0.3, (N, 3))).astype(np.float32)
WEIGHTS = RNG.integers(0, 3, N).astype(np.float32)  # whole numbers: Keras's IoU casts to int

# (kilnet/keras class name, kwargs, y_true, y_pred)
CASES = [
    ("F1Score", {"average": "macro"}, ONE_HOT, PROBS),
    ("F1Score", {"average": None, "threshold": 0.3}, ONE_HOT, PROBS),
    ("FBetaScore", {"average": "micro", "beta": 2.0, "threshold": 0.25}, ONE_HOT, PROBS),
    ("FBetaScore", {"average": "weighted", "beta": 0.5}, ONE_HOT, PROBS),
    ("TruePositives", {}, BIN_TRUE, BIN_PRED),
    ("FalsePositives", {"thresholds": [0.2, 0.7]}, BIN_TRUE, BIN_PRED),
    ("TrueNegatives", {}, BIN_TRUE, BIN_PRED),
    ("FalseNegatives", {}, BIN_TRUE, BIN_PRED),
    ("Precision", {"top_k": 2}, ONE_HOT, PROBS),
    ("Precision", {"class_id": 1, "thresholds": 0.3}, ONE_HOT, PROBS),
    ("Recall", {"top_k": 1, "class_id": 2}, ONE_HOT, PROBS),
    ("PrecisionAtRecall", {"recall": 0.6, "num_thresholds": 50}, BIN_TRUE, BIN_PRED),
    ("RecallAtPrecision", {"precision": 0.5}, BIN_TRUE, BIN_PRED),
    ("SensitivityAtSpecificity", {"specificity": 0.4}, BIN_TRUE, BIN_PRED),
    ("SpecificityAtSensitivity", {"sensitivity": 0.7, "class_id": 0}, ONE_HOT, PROBS),
    ("AUC", {"multi_label": True, "num_labels": C}, ONE_HOT, PROBS),
    ("AUC", {"multi_label": True, "curve": "PR", "label_weights": [1, 2, 0, 1]}, ONE_HOT,
     PROBS),
    ("AUC", {"label_weights": [1, 2, 0.5, 1]}, ONE_HOT, PROBS),
    ("MeanIoU", {"num_classes": C}, LABELS, PROBS.argmax(-1)),
    ("MeanIoU", {"num_classes": C, "sparse_y_pred": False, "ignore_class": 0}, LABELS, PROBS),
    ("IoU", {"num_classes": C, "target_class_ids": [1, 3]}, LABELS, PROBS.argmax(-1)),
    ("BinaryIoU", {"threshold": 0.4}, BIN_TRUE, BIN_PRED),
    ("OneHotIoU", {"num_classes": C, "target_class_ids": [0, 2]}, ONE_HOT, PROBS),
    ("OneHotIoU", {"num_classes": C, "target_class_ids": [1], "sparse_y_pred": True,
                   "ignore_class": 3}, ONE_HOT, PROBS.argmax(-1)),
    ("OneHotMeanIoU", {"num_classes": C}, ONE_HOT, PROBS),
    ("PearsonCorrelation", {}, REG_TRUE, REG_PRED),
    ("ConcordanceCorrelation", {}, REG_TRUE, REG_PRED),
    ("ConcordanceCorrelation", {"axis": 1}, REG_TRUE, REG_PRED * 1.5 + 0.2),
    ("R2Score", {}, REG_TRUE, REG_PRED),
    ("R2Score", {"class_aggregation": "variance_weighted_average", "num_regressors": 2},
     REG_TRUE, REG_PRED),
    ("R2Score", {"class_aggregation": None}, REG_TRUE, REG_PRED),
    ("RootMeanSquaredError", {}, REG_TRUE, REG_PRED),
    ("MeanAbsolutePercentageError", {}, REG_TRUE, REG_PRED),
    ("MeanSquaredLogarithmicError", {}, REG_TRUE, REG_PRED),
    ("SparseTopKCategoricalAccuracy", {"k": 2}, LABELS, PROBS),
    ("CosineSimilarity", {"axis": -1}, REG_TRUE, REG_PRED),
    ("LogCoshError", {}, REG_TRUE, REG_PRED),
    ("Hinge", {}, BIN_TRUE, BIN_PRED),
    ("SquaredHinge", {}, BIN_TRUE, BIN_PRED),
    ("CategoricalHinge", {}, ONE_HOT, PROBS),
    ("KLDivergence", {}, ONE_HOT, PROBS),
    ("Poisson", {}, REG_TRUE, REG_PRED),
    ("BinaryCrossentropy", {"label_smoothing": 0.1}, BIN_TRUE, BIN_PRED),
    ("BinaryCrossentropy", {"from_logits": True}, BIN_TRUE, BIN_PRED * 6 - 3),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, ONE_HOT, PROBS),
    ("CategoricalCrossentropy", {"from_logits": True}, ONE_HOT, np.log(PROBS) * 2),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, LABELS, np.log(PROBS)),
]


def _both(name, kwargs):
    return getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name, kwargs, y_true, y_pred", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_equals_keras(name, kwargs, y_true, y_pred, weighted):
    ours, theirs = _both(name, kwargs)
    weight = WEIGHTS if weighted else None
    if weighted and kwargs.get("num_regressors"):
        weight = WEIGHTS + 1  # adjusted R2: kilnet counts only entries of non-zero weight
    # two batches: the state accumulates
    for part in (slice(0, 10), slice(10, N)):
        w = None if weight is None else weight[part]
        ours.update_state(y_true[part], y_pred[part], sample_weight=w)
        theirs.update_state(y_true[part], y_pred[part], sample_weight=w)
    expected = np.asarray(theirs.result())
    np.testing.assert_allclose(np.asarray(ours.result()), expected, rtol=1e-5, atol=1e-6)
    # the stateless form gives the same from the starting state
    state = ours.stateless_reset_state()
    for part in (slice(0, 10), slice(10, N)):
        w = None if weight is None else weight[part]
        state = ours.stateless_update_state(state, y_true[part], y_pred[part],
                                            sample_weight=w)
    np.testing.assert_allclose(np.asarray(ours.stateless_result(state)), expected, rtol=1e-5,
                               atol=1e-6)
    ours.reset_state()
    theirs.reset_state()
    # the last 10 samples: other data than the first batch's, in a shape already compiled
    ours.update_state(y_true[-10:], y_pred[-10:])
    theirs.update_state(y_true[-10:], y_pred[-10:])
    np.testing.assert_allclose(np.asarray(ours.result()), np.asarray(theirs.result()),
                               rtol=1e-5, atol=1e-6)
    config = ours.get_config()
    assert set(theirs.get_config()) - {"axis"} <= set(config)
    clone = type(ours).from_config(config)
    assert clone.get_config() == config


# -- against scikit-learn -------------------------------------------------------------------------
def _result(metric, y_true, y_pred, sample_weight=None):
    metric.update_state(y_true, y_pred, sample_weight=sample_weight)
    return np.asarray(metric.result())


@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
def test_f_scores_match_sklearn(average):
    hard = np.eye(C, dtype=np.float32)[PROBS.argmax(-1)]
    for beta in (1.0, 2.0):
        expected = skm.fbeta_score(LABELS, PROBS.argmax(-1), beta=beta, average=average,
                                   labels=range(C), zero_division=0)
        got = _result(metrics.FBetaScore(average=average, beta=beta), ONE_HOT, hard)
        np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(
        _result(metrics.F1Score(average=average), ONE_HOT, hard),
        skm.f1_score(LABELS, PROBS.argmax(-1), average=average, labels=range(C),
                     zero_division=0), atol=1e-5)


def test_counts_precision_recall_iou_r2_match_sklearn():
    truth, predicted = BIN_TRUE[:, 0], (BIN_PRED[:, 0] > 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(truth, predicted, sample_weight=WEIGHTS).ravel()
    for cls, value in ((metrics.TruePositives, tp), (metrics.FalsePositives, fp),
                       (metrics.TrueNegatives, tn), (metrics.FalseNegatives, fn)):
        assert _result(cls(), BIN_TRUE, BIN_PRED, WEIGHTS) == pytest.approx(value, rel=1e-5)
    assert _result(metrics.Precision(), BIN_TRUE, BIN_PRED, WEIGHTS) == pytest.approx(
        skm.precision_score(truth, predicted, sample_weight=WEIGHTS), rel=1e-5)
    assert _result(metrics.Recall(class_id=3), ONE_HOT, PROBS) == pytest.approx(
        skm.recall_score(LABELS == 3, PROBS[:, 3] > 0.5), rel=1e-5)
    assert _result(metrics.AUC(num_thresholds=2000), BIN_TRUE, BIN_PRED) == pytest.approx(
        skm.roc_auc_score(truth, BIN_PRED[:, 0]), abs=1e-2)  # thresholded, as Keras
    assert _result(metrics.MeanIoU(num_classes=C), LABELS, PROBS.argmax(-1)) == pytest.approx(
        skm.jaccard_score(LABELS, PROBS.argmax(-1), average="macro", labels=range(C)),
        rel=1e-5)
    assert _result(metrics.R2Score(), REG_TRUE, REG_PRED) == pytest.approx(
        skm.r2_score(REG_TRUE, REG_PRED), rel=1e-5)
    assert _result(metrics.RootMeanSquaredError(), REG_TRUE, REG_PRED) == pytest.approx(
        np.sqrt(skm.mean_squared_error(REG_TRUE, REG_PRED)), rel=1e-5)
    assert _result(metrics.MeanAbsolutePercentageError(), REG_TRUE, REG_PRED) == \
        pytest.approx(100 * skm.mean_absolute_percentage_error(REG_TRUE, REG_PRED), rel=1e-5)
    assert _result(metrics.SparseTopKCategoricalAccuracy(k=2), LABELS, PROBS) == \
        pytest.approx(skm.top_k_accuracy_score(LABELS, PROBS, k=2, labels=range(C)), rel=1e-6)


# -- Keras-form subclasses --------------------------------------------------------------------------
class BinaryTruePositives(kilnet.metrics.Metric):
    def __init__(self, name="binary_true_positives", **kwargs):
        super().__init__(name=name, **kwargs)
        self.true_positives = self.add_variable(shape=(), initializer="zeros", name="tp")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = kilnet.ops.round(y_pred)
        values = ops.cast((ops.reshape(y_true, (-1,)) == 1) & (ops.reshape(y_pred, (-1,)) == 1),
                          "float32")
        if sample_weight is not None:
            values = values * ops.reshape(sample_weight, (-1,))
        self.true_positives.assign(self.true_positives + kilnet.ops.sum(values))

    def result(self):
        return self.true_positives.value

    def reset_state(self):
        self.true_positives.assign(0.0)


def test_keras_form_subclass_standalone():
    m = BinaryTruePositives()
    assert m.stateful and len(m.variables) == 1 and float(m.variables[0]) == 0.0
    m.update_state(np.array([1, 1, 0, 1]), np.array([0.9, 0.2, 0.8, 0.7]))
    assert float(m.result()) == 2.0
    assert float(m.true_positives.numpy()) == 2.0
    m.update_state(np.array([1]), np.array([0.6]), sample_weight=np.array([3.0]))
    assert float(m.result()) == 5.0
    state = m.stateless_update_state([np.float32(1.0)], np.array([1, 1]), np.array([0.9, 0.9]))
    assert float(state[0]) == 3.0 and float(m.result()) == 5.0  # stateless: m unchanged
    m.reset_state()
    assert float(m.result()) == 0.0
    assert m.get_config() == {"name": "binary_true_positives", "dtype": "float32"}
    assert BinaryTruePositives.from_config(m.get_config()).name == m.name


def tiny_model(units, activation, seed=0):
    inputs = kilnet.Input(shape=(5,))
    model = kilnet.Model(inputs, kilnet.layers.Dense(units, activation=activation)(inputs))
    model.build(seed=seed)
    return model


X = RNG.normal(size=(N, 5)).astype(np.float32)


def custom_error(y_true, y_pred):
    return jnp.mean(jnp.abs(y_true - y_pred) ** 3, axis=-1)


def test_variables_are_the_state_variables_as_keras():
    """The JAX training-loop guide writes its final state back with variable.assign and
    reads result(); stateless_result(m.variables) continues from the eager state."""
    y = np.eye(3, dtype="float32")
    p = np.array([[.9, .1, 0], [.8, .2, 0], [0, .1, .9]], "float32")
    values = {}
    for lib in (kilnet, keras):
        m = lib.metrics.CategoricalAccuracy()
        m.update_state(y, p)
        eager = float(m.stateless_result(m.variables))
        state = m.stateless_update_state(m.variables, y, p)
        for variable, value in zip(m.variables, state):
            variable.assign(value)
        values[lib.__name__] = (type(m.variables[0]).__name__, [v.name for v in m.variables],
                                eager, [float(v.numpy()) for v in m.variables],
                                float(m.result()), len(m.stateless_reset_state()))
    assert values["kilnet"] == values["keras"]
    assert values["kilnet"][3] == [4.0, 6.0]


def test_keras_form_subclass_and_function_inside_fit_and_evaluate():
    y = (X[:, 0] > 0).astype(np.float32)[:, None]
    model = tiny_model(1, "sigmoid")
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=[BinaryTruePositives(), custom_error])
    history = model.fit(X, y, batch_size=8, epochs=2, verbose=0)
    assert set(history.history) == {"loss", "binary_true_positives", "custom_error"}
    logs = model.evaluate(X, y, batch_size=8, verbose=0, return_dict=True)
    p = model.predict(X, verbose=0)
    assert logs["binary_true_positives"] == float(np.sum((y == 1) & (np.round(p) == 1)))
    assert logs["custom_error"] == pytest.approx(np.mean(np.abs(y - p)[:, 0] ** 3), rel=1e-5)


# -- through compile(): the whole dataset, a padded last batch --------------------------------------
def test_compiled_classification_metrics_equal_sklearn_on_predictions():
    model = tiny_model(C, "softmax")
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[
        metrics.F1Score(average="macro"), metrics.FBetaScore(average="weighted", beta=2.0),
        metrics.Precision(top_k=2, name="p_top2"), metrics.Recall(class_id=1, name="r1"),
        metrics.MeanIoU(num_classes=C, sparse_y_true=False, sparse_y_pred=False, name="miou"),
        metrics.AUC(multi_label=True, name="ml_auc"), "top_k_categorical_accuracy",
        metrics.TruePositives(name="tp"), "categorical_crossentropy"])
    logs = model.evaluate(X, ONE_HOT, batch_size=8, verbose=0, return_dict=True)
    p = model.predict(X, verbose=0)
    guess = p.argmax(-1)
    assert logs["f1_score"] == pytest.approx(
        skm.f1_score(LABELS, guess, average="macro", labels=range(C), zero_division=0),
        abs=1e-5)
    assert logs["fbeta_score"] == pytest.approx(
        skm.fbeta_score(LABELS, guess, beta=2.0, average="weighted", labels=range(C),
                        zero_division=0), abs=1e-5)
    top2 = np.argsort(-p, axis=1)[:, :2]
    assert logs["p_top2"] == pytest.approx(np.mean(np.any(top2 == LABELS[:, None], 1)) / 2,
                                           rel=1e-5)
    assert logs["r1"] == pytest.approx(skm.recall_score(LABELS == 1, p[:, 1] > 0.5,
                                                        zero_division=0), abs=1e-6)
    assert logs["miou"] == pytest.approx(
        skm.jaccard_score(LABELS, guess, average="macro", labels=range(C)), rel=1e-5)
    assert logs["tp"] == float(np.sum((ONE_HOT == 1) & (p > 0.5)))
    expected_auc = keras.metrics.AUC(multi_label=True)
    expected_auc.update_state(ONE_HOT, p)
    assert logs["ml_auc"] == pytest.approx(float(expected_auc.result()), rel=1e-5)
    assert logs["categorical_crossentropy"] == pytest.approx(logs["loss"], rel=1e-5)


def test_compiled_regression_metrics_equal_sklearn_on_predictions():
    model = tiny_model(3, None)
    y = REG_TRUE
    model.compile(optimizer="sgd", loss="mse",
                  metrics=["mape", "msle", metrics.RootMeanSquaredError(), metrics.R2Score(),
                           "cosine_similarity", "log_cosh_error"])
    logs = model.evaluate(X, y, batch_size=8, verbose=0, return_dict=True)
    p = model.predict(X, verbose=0)
    assert logs["root_mean_squared_error"] == pytest.approx(
        np.sqrt(skm.mean_squared_error(y, p)), rel=1e-5)
    assert logs["r2_score"] == pytest.approx(skm.r2_score(y, p), rel=1e-4)
    assert logs["mape"] == pytest.approx(100 * skm.mean_absolute_percentage_error(y, p),
                                         rel=1e-5)
    cos = np.sum(y * p, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(p, axis=1)
    assert logs["cosine_similarity"] == pytest.approx(cos.mean(), rel=1e-5)
    msle = np.mean((np.log1p(np.maximum(p, 1e-7)) - np.log1p(y)) ** 2)
    assert logs["msle"] == pytest.approx(msle, rel=1e-4)


def test_compiled_correlations_equal_scipy_and_a_float64_formula():
    """Each sample's correlation along the last axis, averaged over the samples: 23 samples
    in batches of 8, so the padded rows of the last batch must not count."""
    from scipy import stats

    model = tiny_model(3, None)
    model.compile(optimizer="sgd", loss="mse", metrics=[
        "pearson_correlation", metrics.ConcordanceCorrelation(name="ccc"),
        metrics.OneHotMeanIoU(num_classes=3, name="iou")])
    logs = model.evaluate(X, REG_TRUE, batch_size=8, verbose=0, return_dict=True)
    y, p = REG_TRUE.astype(np.float64), model.predict(X, verbose=0).astype(np.float64)
    pearson = [stats.pearsonr(a, b).statistic for a, b in zip(y, p)]
    assert logs["pearson_correlation"] == pytest.approx(np.mean(pearson), rel=1e-4)
    mt, mp = y.mean(1, keepdims=True), p.mean(1, keepdims=True)
    ccc = 2 * ((y - mt) * (p - mp)).mean(1) / (y.var(1) + p.var(1) + (mt - mp)[:, 0] ** 2)
    assert logs["ccc"] == pytest.approx(np.mean(ccc), rel=1e-4)
    # the labels' argmax is the class of a one-hot metric
    assert logs["iou"] == pytest.approx(skm.jaccard_score(
        y.argmax(-1), p.argmax(-1), average="macro", labels=range(3)), rel=1e-5)


@pytest.mark.parametrize("suffix", [".kilnet", ".keras"])
def test_new_metrics_are_kept_in_model_files(tmp_path, suffix):
    model = tiny_model(3, None)
    model.compile(optimizer="sgd", loss="mse", metrics=[
        metrics.PearsonCorrelation(), metrics.ConcordanceCorrelation(axis=-1),
        metrics.OneHotIoU(num_classes=3, target_class_ids=[0, 2]),
        metrics.OneHotMeanIoU(num_classes=3, ignore_class=1)])
    expected = model.evaluate(X, REG_TRUE, verbose=0, return_dict=True)
    model.save(tmp_path / f"m{suffix}")
    loaded = kilnet.models.load_model(tmp_path / f"m{suffix}")
    got = loaded.evaluate(X, REG_TRUE, verbose=0, return_dict=True)
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-6)


# -- names and errors ------------------------------------------------------------------------------
def test_names_as_keras_resolves_them():
    for name in ("mape", "MAPE", "msle", "bce", "f1_score", "F1Score", "r2_score",
                 "root_mean_squared_error", "sparse_top_k_categorical_accuracy", "logcosh"
                 if False else "log_cosh_error", "true_positives", "kl_divergence"):
        ours, theirs = metrics.get(name), keras.metrics.get(name)
        assert type(ours).__name__ == type(theirs).__name__ and ours.name == name
    with pytest.raises(ValueError, match="Unknown metric"):
        metrics.get("rmse")  # Keras does not accept it either
    with pytest.raises(ValueError, match="num_classes"):
        metrics.get("mean_io_u")
    for name in ("pearson_correlation", "PearsonCorrelation", "concordance_correlation"):
        ours, theirs = metrics.get(name), keras.metrics.get(name)
        assert type(ours).__name__ == type(theirs).__name__ and ours.name == name
    for ours, theirs in ((metrics.OneHotIoU(3, [0, 1]), keras.metrics.OneHotIoU(3, [0, 1])),
                         (metrics.OneHotMeanIoU(3), keras.metrics.OneHotMeanIoU(3)),
                         (metrics.PearsonCorrelation(), keras.metrics.PearsonCorrelation())):
        # both number a default name per process, each counting its own objects
        assert re.sub(r"_\d+$", "", ours.name) == re.sub(r"_\d+$", "", theirs.name)
        assert set(ours.get_config()) == set(theirs.get_config())
    assert isinstance(metrics.get(metrics.RootMeanSquaredError), metrics.RootMeanSquaredError)


@pytest.mark.parametrize("make, message", [
    (lambda: metrics.F1Score(average="mean"), "average must be one of"),
    (lambda: metrics.FBetaScore(beta=2), "beta must be a Python float"),
    (lambda: metrics.MeanIoU(num_classes=0), "num_classes must be a positive integer"),
    (lambda: metrics.IoU(num_classes=2, target_class_ids=[2]), "target_class_ids"),
    (lambda: metrics.R2Score(class_aggregation="sum"), "class_aggregation"),
    (lambda: metrics.R2Score(num_regressors=-1), "num_regressors"),
    (lambda: metrics.PrecisionAtRecall(1.5), "recall must be a number in"),
    (lambda: metrics.Recall(class_id=-1), "class_id"),
    (lambda: metrics.AUC(num_labels=3), "num_labels is needed only"),
    (lambda: metrics.SparseTopKCategoricalAccuracy(k=0), "k must be a positive integer"),
    (lambda: metrics.BinaryCrossentropy(label_smoothing=2), "label_smoothing"),
    (lambda: metrics.Mean(dtype="float16"), "float32 only"),
    (lambda: metrics.MeanMetricWrapper(3), "needs a function"),
    (lambda: metrics.PearsonCorrelation(axis=(0, 1)), "axis must be an integer"),
    (lambda: metrics.OneHotMeanIoU(num_classes=-2), "num_classes must be a positive integer"),
    (lambda: metrics.PearsonCorrelation().update_state(1.0, 2.0), "needs arrays of shape"),
])
def test_bad_arguments_are_refused_clearly(make, message):
    with pytest.raises(ValueError if "function" not in message else TypeError,
                       match=message) as info:
        make()
    assert "Received" in str(info.value)


FUNCTIONS = ["binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy",
             "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy",
             "pearson_correlation", "concordance_correlation", "binary_crossentropy",
             "binary_focal_crossentropy", "categorical_crossentropy",
             "categorical_focal_crossentropy", "categorical_hinge", "hinge", "huber",
             "kl_divergence", "log_cosh", "mean_absolute_error",
             "mean_absolute_percentage_error", "mean_squared_error",
             "mean_squared_logarithmic_error", "poisson", "sparse_categorical_crossentropy",
             "squared_hinge"]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_keras_metric_functions_give_keras_values(name):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=8).astype(np.float32)
    ids = rng.integers(0, 6, size=8)
    if name.startswith("sparse"):
        y_true, y_pred = ids, probs
    elif "categorical" in name or name == "kl_divergence":
        y_true, y_pred = np.eye(6, dtype=np.float32)[ids], probs
    else:
        y_true = (rng.random((8, 6)) > 0.5).astype(np.float32)
        y_pred = rng.random((8, 6)).astype(np.float32)
    ours = getattr(kilnet.metrics, name)(y_true, y_pred)
    theirs = getattr(keras.metrics, name)(y_true, y_pred)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-6)
    if hasattr(kilnet.losses, name):
        assert getattr(kilnet.metrics, name) is getattr(kilnet.losses, name)
    assert name not in kilnet.metrics.METRIC_TYPES


def test_a_metric_function_in_compile_logs_under_its_name():
    x = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = kilnet.Sequential([kilnet.Input(shape=(4,)),
                               kilnet.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=[kilnet.metrics.sparse_categorical_accuracy, "accuracy"])
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["sparse_categorical_accuracy"] == pytest.approx(logs["accuracy"])


def test_default_names_are_numbered_per_process_as_keras_numbers_them():
    """keras.io's active-learning example compiles new FalseNegatives() for each fit: Keras's
    history keys are false_negatives, false_negatives_1, ...; metrics whose class gives a
    fixed default (Mean's "mean") and names given stay as they are."""
    def names(lib):
        lib.utils.clear_session()
        made = [lib.metrics.FalseNegatives(), lib.metrics.FalseNegatives(), lib.metrics.AUC(),
                lib.metrics.AUC(), lib.metrics.MeanIoU(2), lib.metrics.PrecisionAtRecall(0.5),
                lib.metrics.PrecisionAtRecall(0.5), lib.metrics.Mean(), lib.metrics.Mean(),
                lib.metrics.AUC(name="auc")]
        return [m.name for m in made]

    assert names(kilnet) == names(keras)
    assert names(kilnet)[:4] == ["false_negatives", "false_negatives_1", "auc", "auc_1"]
    x = np.linspace(0, 1, 12, dtype="float32").reshape(6, 2)
    y = (x[:, :1] > 0.5).astype("float32")
    keys = []
    for _ in range(2):
        model = kilnet.Sequential([kilnet.Input((2,)),
                                   kilnet.layers.Dense(1, activation="sigmoid")])
        model.compile("sgd", "binary_crossentropy", metrics=[kilnet.metrics.Recall(),
                                                              "precision"])
        keys.append(sorted(model.fit(x, y, epochs=1, verbose=0).history))
    assert keys[1] == ["loss", "precision", keys[0][2] + "_1"]


ODD_LABELS = [  # (function, y_true, y_pred): labels that are not class ids or 0/1
    ("sparse_categorical_accuracy", [0.5, 1.7, 2.0, 1.0], np.eye(4, 3)[[0, 1, 2, 1]]),
    ("sparse_categorical_accuracy", [[0.5], [1.7], [2.0], [1.0]], np.eye(4, 3)[[0, 1, 2, 1]]),
    ("binary_accuracy", [[0.7], [0.2], [1.0], [-1.0]], [[0.9], [0.1], [0.8], [0.1]]),
    ("binary_accuracy", [[True], [False]], [[0.9], [0.6]]),
]


@pytest.mark.parametrize("name, y_true, y_pred", ODD_LABELS)
def test_accuracies_compare_the_labels_as_given_as_keras(name, y_true, y_pred):
    """keras.io's saving guide compiles metrics=["accuracy"] on labels drawn from [0, 1):
    Keras compares each label as given with the predicted class (a fractional label matches
    none), so its accuracy is 0 where reading labels as class ids gave 1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred, np.float32)
    ours = getattr(kilnet.metrics, name)(y_true, y_pred)
    theirs = getattr(keras.metrics, name)(y_true, y_pred)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_compiled_accuracy_on_fractional_labels_is_keras_s():
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = np.random.default_rng(1).random(8).astype(np.float32)
    def accuracy(lib, weights=None):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(4, activation="softmax",
                                                                  name="probs")])
        if weights is not None:
            model.set_weights(weights)
        model.compile("sgd", loss=lambda t, p: lib.ops.mean(lib.ops.square(p[:, 0] - t)),
                      metrics=["accuracy"])
        return model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"], model

    theirs, keras_model = accuracy(keras)
    ours, _ = accuracy(kilnet, keras_model.get_weights())
    assert ours == pytest.approx(theirs, abs=1e-7)
