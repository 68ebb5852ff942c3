"""Honest verdicts: no pretending to see overfitting without validation data, no wording that
contradicts itself, long runs summarised, and validation every k-th epoch kept in its place.
All on hand-made histories.
"""

from __future__ import annotations

import pytest

from kilnet import insight

# The CLI's old default: no validation, training accuracy reaches 1.0 and stays there.
MEMORISED = {"loss": [0.40, 0.10, 0.02, 0.005, 0.004, 0.004],
             "accuracy": [0.88, 0.97, 0.995, 1.0, 1.0, 1.0]}


def test_without_validation_the_verdict_says_overfitting_cannot_be_judged():
    report = insight.analyze_plateau(MEMORISED)
    assert report.verdict == insight.PLATEAUED
    text = str(report)
    assert "overfitting cannot be judged" in text
    assert "validation_split=0.1" in text and "--validation-split" in text
    assert "bigger" not in text.replace("a bigger model is not the answer", "")
    assert "model already fits the training data" in text


def test_with_validation_no_such_note():
    history = dict(MEMORISED, val_loss=[0.4, 0.2, 0.15, 0.14, 0.139, 0.1385],
                   val_accuracy=[0.87, 0.93, 0.94, 0.942, 0.943, 0.943])
    assert "cannot be judged" not in str(insight.analyze_plateau(history))


def test_a_worse_last_epoch_does_not_read_as_a_contradiction():
    history = {"loss": [0.5, 0.4, 0.35], "accuracy": [0.80, 0.85, 0.86],
               "val_loss": [0.5, 0.42, 0.41], "val_accuracy": [0.80, 0.84, 0.8375]}
    report = insight.analyze_plateau(history)
    assert report.verdict == insight.IMPROVING
    assert "got worse" not in report.message
    assert "fell back by 0.25 percentage points" in report.message
    assert "gained up to 4.00 percentage points" in report.message


def test_a_long_plateau_is_summarised_not_listed():
    accuracy = [0.80, 0.90, 0.95] + [0.96 + 0.0001 * (i % 3) for i in range(40)]
    report = insight.analyze_plateau({"accuracy": accuracy, "loss": [1.0 / (i + 1) ** 0.01
                                                                     for i in range(43)]})
    assert report.verdict == insight.PLATEAUED
    assert report.message.count("+0.0") <= 5
    # the plateau starts at epoch 5: its 39 gains are 3 listed and 36 as a range
    assert "then 36 epochs between" in report.message


def test_validation_every_second_epoch_sits_at_its_epochs():
    history = {"loss": [0.9, 0.6, 0.5, 0.45], "accuracy": [0.7, 0.8, 0.84, 0.86],
               "val_loss": [0.62, 0.47], "val_accuracy": [0.79, 0.85]}
    table = insight.analyze_plateau(history).table().splitlines()
    header = table[0]
    column = header.index("val_loss")
    cells = {row.split()[0]: row[column:column + 6].strip() for row in table[1:]}
    assert cells == {"1": "", "2": "0.6200", "3": "", "4": "0.4700"}
    assert "0.4700 (-0.1500)" in table[4]


def test_overfitting_is_seen_with_validation_every_second_epoch():
    history = {"loss": [0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08, 0.06],
               "val_loss": [0.45, 0.40, 0.46, 0.55]}  # validated at epochs 2, 4, 6, 8
    report = insight.analyze_plateau(history, monitor="val_loss")
    assert report.verdict == insight.OVERFITTING
    assert report.best_epoch == 4
    assert "best at epoch 4 (0.4000)" in report.message
    assert "(0.2000 -> 0.0600)" in report.message


@pytest.mark.parametrize("count,epochs,expected", [
    (3, 3, {0: 0, 1: 1, 2: 2}), (2, 4, {1: 0, 3: 1}), (2, 5, {1: 0, 3: 1}),
    (3, 4, {1: 0, 2: 1, 3: 2})])
def test_epoch_positions(count, epochs, expected):
    assert insight.epoch_positions(count, epochs) == expected
