"""Tests for kilnet.insight (plateau analysis, per-epoch gains), the gains in the progress
lines, the summary fit prints, and the progress display in Jupyter.

The analysis is checked on hand-made histories, one per verdict; the fit tests use a tiny
model on a few dozen samples.
"""

import json
import math

import numpy as np
import pytest

import kilnet
from kilnet import insight, layers, progress
from kilnet.callbacks import EarlyStopping, History

RISING = {"loss": [0.90, 0.60, 0.45, 0.35, 0.28], "accuracy": [0.70, 0.78, 0.83, 0.86, 0.89]}
# The MNIST lesson: fast gains first, then 0.3 - 0.4 points per epoch.
PLATEAU = {"loss": [0.55, 0.40, 0.35, 0.33, 0.32], "accuracy": [0.83, 0.85, 0.86, 0.864, 0.867]}
NOISY = {"loss": [0.60, 0.45, 0.50, 0.42, 0.48, 0.41],
         "accuracy": [0.80, 0.86, 0.82, 0.87, 0.83, 0.88]}
DIVERGING = {"loss": [0.50, 0.45, 0.60, 0.90, 1.50], "accuracy": [0.80, 0.82, 0.78, 0.70, 0.60]}
OVERFITTING = {"loss": [0.50, 0.30, 0.20, 0.12, 0.08, 0.05],
               "accuracy": [0.80, 0.90, 0.93, 0.96, 0.975, 0.985],
               "val_loss": [0.45, 0.35, 0.33, 0.36, 0.40, 0.45],
               "val_accuracy": [0.82, 0.88, 0.89, 0.885, 0.884, 0.88]}


# -- gains ------------------------------------------------------------------------------------
def test_gain_labels_in_points_for_accuracy_and_differences_for_losses():
    previous = {"loss": 0.1000, "accuracy": 0.9671, "val_accuracy": 0.95, "learning_rate": 0.1}
    logs = {"loss": 0.0877, "accuracy": 0.9712, "val_accuracy": 0.94, "learning_rate": 0.01}
    assert insight.gain_labels(None, logs) == {}
    assert insight.gain_labels(previous, logs) == {
        "loss": "-0.0123", "accuracy": "+0.41", "val_accuracy": "-1.00"}
    gains = insight.epoch_gains(previous, logs)
    assert gains["accuracy"] == pytest.approx(0.41)
    assert gains["loss"] == pytest.approx(-0.0123)
    assert insight.gain_labels({"loss": math.nan}, {"loss": 0.5}) == {}


def test_progress_line_shows_gains():
    assert progress.format_logs({"loss": 0.0877, "accuracy": 0.9712},
                                {"loss": "-0.0123", "accuracy": "+0.41"}) == \
        "loss: 0.0877 (-0.0123) - accuracy: 0.9712 (+0.41)"


# -- verdicts -----------------------------------------------------------------------------------
def test_rising_history_is_still_improving():
    report = insight.analyze_plateau(RISING)
    assert report.verdict == insight.IMPROVING == "still improving"
    assert not report.reached and report.epoch is None
    assert report.metric == "accuracy" and report.best_epoch == 5
    assert report.gains["accuracy"][0] is None
    assert report.gains["accuracy"][1] == pytest.approx(8.0)
    assert report.gains["loss"][1] == pytest.approx(-0.3)
    assert any("more epochs" in s for s in report.suggestions)


def test_plateaued_history():
    report = insight.analyze_plateau(PLATEAU)
    assert report.verdict == "plateaued"
    assert report.reached and report.epoch == 4  # epochs 4 and 5 gained 0.4 and 0.3 points
    text = str(report)
    assert "Verdict: plateaued" in text and "From epoch 4 on" in text
    assert "0.8670 (+0.30)" in text  # the per-epoch table
    assert any("Stop earlier: 3 epochs" in s and "EarlyStopping" in s
               for s in report.suggestions)
    assert any("bigger model" in s for s in report.suggestions)  # 86.7 % on training data


def test_plateau_thresholds_are_configurable():
    assert insight.analyze_plateau(PLATEAU, min_accuracy_points=0.2).verdict == "still improving"
    assert insight.analyze_plateau(PLATEAU, patience=3).verdict == "still improving"
    assert insight.analyze_plateau(PLATEAU, min_accuracy_points=1.5, patience=3).epoch == 3
    # Judged on the loss: relative improvements of 5.7 % and 3.0 % at the end.
    by_loss = insight.analyze_plateau(PLATEAU, monitor="loss")
    assert by_loss.verdict == "still improving"
    assert insight.analyze_plateau(PLATEAU, monitor="loss", min_loss_improvement=0.06).reached


def test_loss_only_history_plateaus_on_relative_improvement():
    report = insight.analyze_plateau({"loss": [1.0, 0.5, 0.3, 0.295, 0.294]})
    assert report.metric == "loss"
    assert report.verdict == "plateaued" and report.epoch == 4


def test_noisy_history():
    report = insight.analyze_plateau(NOISY)
    assert report.verdict == "noisy"
    assert any("learning rate" in s for s in report.suggestions)


def test_diverging_history():
    report = insight.analyze_plateau(DIVERGING)
    assert report.verdict == "diverging"
    assert any("Lower the learning rate" in s for s in report.suggestions)
    nan = insight.analyze_plateau({"loss": [0.5, float("nan")]})
    assert nan.verdict == "diverging" and "NaN" in nan.message
    # run folders store NaN as JSON null
    assert insight.analyze_plateau({"epoch": [0, 1], "loss": [0.5, None]}).verdict == "diverging"


def test_overfitting_history():
    report = insight.analyze_plateau(OVERFITTING)
    assert report.verdict == "overfitting"
    assert report.best_epoch == 3 and report.reached and report.epoch == 4
    assert any("Dropout" in s for s in report.suggestions)
    assert any("restore_best_weights=True" in s for s in report.suggestions)


def test_validation_gap_suggests_more_data_or_regularization():
    hist = {"loss": [0.5, 0.3, 0.25, 0.24, 0.235], "accuracy": [0.85, 0.95, 0.97, 0.972, 0.974],
            "val_loss": [0.5, 0.4, 0.38, 0.379, 0.378],
            "val_accuracy": [0.85, 0.90, 0.91, 0.912, 0.913]}
    report = insight.analyze_plateau(hist)
    assert report.metric == "val_accuracy" and report.verdict == "plateaued"
    assert any("above validation" in s for s in report.suggestions)


def test_one_epoch_is_too_short_and_errors():
    assert insight.analyze_plateau({"loss": [0.5], "accuracy": [0.8]}).verdict == "too short"
    with pytest.raises(ValueError, match="patience"):
        insight.analyze_plateau(PLATEAU, patience=0)
    with pytest.raises(ValueError, match="min_accuracy_points"):
        insight.analyze_plateau(PLATEAU, min_accuracy_points=-1)
    with pytest.raises(ValueError, match="monitor='val_loss'"):
        insight.analyze_plateau(PLATEAU, monitor="val_loss")
    with pytest.raises(TypeError, match="History"):
        insight.analyze_plateau([0.5, 0.4])


def test_history_plateau_and_as_dict():
    history = History()
    history.on_train_begin()
    for epoch, (loss, acc) in enumerate(zip(PLATEAU["loss"], PLATEAU["accuracy"])):
        history.on_epoch_end(epoch, {"loss": loss, "accuracy": acc})
    report = history.plateau(min_accuracy_points=0.5)
    assert report.verdict == "plateaued"
    data = json.loads(json.dumps(report.as_dict()))
    assert data["epoch"] == 4 and data["reached"] is True and data["suggestions"]


def test_long_histories_keep_the_table_short():
    hist = {"loss": list(np.linspace(1.0, 0.5, 40))}
    lines = insight.analyze_plateau(hist).table().splitlines()
    assert len(lines) <= 14 and any(line.strip() == "..." for line in lines)


def test_early_stopping_is_the_plateau_stop():
    """EarlyStopping(min_delta=0.005, patience=2) on accuracy stops where the analysis finds
    the plateau of a run that gains 2, 1, then 0.3 and 0.2 points."""
    accuracy = [0.83, 0.85, 0.86, 0.863, 0.865, 0.866, 0.867]

    class Model:
        stop_training = False

    stopper = EarlyStopping(monitor="accuracy", min_delta=0.005, patience=2)
    stopper.set_model(Model())
    stopper.on_train_begin()
    for epoch, value in enumerate(accuracy):
        stopper.on_epoch_end(epoch, {"accuracy": value})
        if stopper.model.stop_training:
            break
    report = insight.analyze_plateau({"accuracy": accuracy[:epoch + 1]})
    assert report.verdict == "plateaued" and report.epoch == 4
    assert epoch + 1 == 5  # stopped after epoch 5: two epochs without 0.5 points
    assert "plateau" in EarlyStopping.__doc__.lower()


# -- in fit -----------------------------------------------------------------------------------
def tiny_model():
    model = kilnet.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def tiny_data(n=48):
    x = np.random.default_rng(0).normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32")


def test_fit_prints_gains_and_the_plateau_summary(capsys):
    x, y = tiny_data()
    history = tiny_model().fit(x, y, epochs=3, batch_size=16, verbose=2, seed=0)
    lines = capsys.readouterr().out.splitlines()
    epoch_lines = [line for line in lines if line.startswith("Epoch ")]
    assert len(epoch_lines) == 3
    assert "(" not in epoch_lines[0]  # the first epoch has nothing to compare with
    gains = insight.gain_labels({k: v[0] for k, v in history.history.items()},
                                {k: v[1] for k, v in history.history.items()})
    assert f"accuracy: {history.history['accuracy'][1]:.4f} ({gains['accuracy']})" \
        in epoch_lines[1]
    assert f"loss: {history.history['loss'][1]:.4f} ({gains['loss']})" in epoch_lines[1]
    assert any(line.startswith("Verdict: ") for line in lines)
    assert any("What each epoch gained" in line for line in lines)


def test_fit_verbose_0_prints_nothing(capsys):
    x, y = tiny_data()
    tiny_model().fit(x, y, epochs=2, batch_size=16, verbose=0, seed=0)
    assert capsys.readouterr().out == ""


# -- Jupyter ------------------------------------------------------------------------------------
def test_progress_is_a_live_display_in_jupyter(monkeypatch):
    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    assert progress.EpochProgress(1, 5, 10).mode == "notebook"  # a display updated in place
    assert not progress.EpochProgress(2, 5, 10).live  # verbose=2: one line per epoch
    # a stream given explicitly is written to, not the notebook's display
    import io
    assert progress.EpochProgress(1, 5, 10, stream=io.StringIO()).mode == "lines"
