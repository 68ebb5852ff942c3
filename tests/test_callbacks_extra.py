"""Tests for ReduceLROnPlateau, LearningRateScheduler, CSVLogger and TensorBoard against
Keras's semantics, on tiny runs.

The learning-rate tests train a linear model with SGD on a mean absolute error whose gradient
is constant (every prediction stays far below its target), so each parameter moves by exactly
the learning rate at every step: the parameter update shows the rate the compiled step used.
"""

import csv
import json
import sys

import numpy as np
import pytest

import kilnet
from kilnet import layers
from kilnet.callbacks import (
    CSVLogger,
    LambdaCallback,
    LearningRateScheduler,
    ReduceLROnPlateau,
    TensorBoard,
)


# -- helpers ----------------------------------------------------------------------------------
def constant_gradient_run(callbacks, epochs, lr=0.01):
    """Fit one step per epoch; returns (bias after each epoch, history, model)."""
    model = kilnet.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=lr), loss="mae")
    x = np.ones((8, 2), np.float32)
    y = np.full((8, 1), 100.0, np.float32)  # d(mae)/d(bias) = -1 at every step
    biases = []
    record = LambdaCallback(on_epoch_end=lambda epoch, logs: biases.append(
        float(model.get_weights()[1][0])))
    history = model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, shuffle=False, seed=0,
                        callbacks=[record] + list(callbacks))
    start = 0.0  # Keras initialises the bias at zero
    return np.diff([start] + biases), history, model


def classifier_run(callbacks, epochs=3, validation_split=0.25):
    model = kilnet.Sequential([layers.Dense(4, activation="relu", input_shape=(3,)),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    history = model.fit(x, y, epochs=epochs, batch_size=8, verbose=0, seed=0,
                        validation_split=validation_split, callbacks=callbacks)
    return history, model


class FakeTrainer:
    state = "built"
    optimizer = None
    learning_rate = 1.0


class FakeModel:
    def __init__(self):
        self.compiled = FakeTrainer()
        self.stop_training = False


# -- ReduceLROnPlateau ----------------------------------------------------------------------------
def test_reduce_lr_on_plateau_changes_the_rate_of_the_compiled_step():
    # min_delta=1e9: only the first epoch counts as an improvement of the loss, so with
    # patience=1 the rate is cut by 10 at the end of epochs 2 and 3.
    reduce = ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, min_delta=1e9)
    deltas, history, model = constant_gradient_run([reduce], epochs=4)
    np.testing.assert_allclose(deltas, [0.01, 0.01, 0.001, 0.0001], rtol=1e-3)
    # Keras logs the rate each epoch was trained with
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.01, 0.001, 0.0001],
                               rtol=1e-5)
    assert model.compiled.learning_rate == pytest.approx(1e-5)
    assert model.optimizer.learning_rate == pytest.approx(1e-5)


def test_reduce_lr_on_plateau_patience_cooldown_and_min_lr_as_keras():
    model = FakeModel()
    reduce = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1,
                               min_lr=0.3)
    reduce.set_model(model)
    reduce.on_train_begin()
    rates, logged = [], []
    for epoch in range(7):
        logs = {"val_loss": 1.0}
        reduce.on_epoch_end(epoch, logs)
        rates.append(model.compiled.learning_rate)
        logged.append(logs["learning_rate"])
    # hand-traced from keras/src/callbacks/reduce_lr_on_plateau.py
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.3, 0.3, 0.3]
    assert logged == [1.0] + rates[:-1]  # the rate the epoch was trained with
    # a checkpoint keeps the counters (BackupAndRestore calls get_state / set_state)
    resumed = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1)
    resumed.set_state(json.loads(json.dumps(reduce.get_state())))
    assert resumed.get_state() == reduce.get_state() == {"wait": 2, "best": 1.0,
                                                         "cooldown_counter": 0}


def test_reduce_lr_on_plateau_modes():
    model = FakeModel()
    reduce = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1)  # auto: max
    reduce.set_model(model)
    reduce.on_train_begin()
    for epoch, acc in enumerate([0.5, 0.6, 0.7]):  # rising accuracy is an improvement
        reduce.on_epoch_end(epoch, {"val_accuracy": acc})
    assert model.compiled.learning_rate == 1.0
    reduce.on_epoch_end(3, {"val_accuracy": 0.7})
    assert model.compiled.learning_rate == 0.5
    with pytest.raises(ValueError, match="factor >= 1.0"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.warns(UserWarning, match="not available"):
        reduce.on_epoch_end(4, {"loss": 1.0})


# -- LearningRateScheduler ------------------------------------------------------------------------
def test_learning_rate_scheduler_sets_the_rate_at_epoch_begin():
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return 0.01 / (epoch + 1)

    deltas, history, _ = constant_gradient_run([LearningRateScheduler(schedule)], epochs=3,
                                               lr=0.5)
    np.testing.assert_allclose(deltas, [0.01, 0.005, 0.01 / 3], rtol=1e-3)
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.005, 0.01 / 3],
                               rtol=1e-5)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert seen[0][1] == pytest.approx(0.5) and seen[1][1] == pytest.approx(0.01)


def test_learning_rate_scheduler_one_argument_form_and_errors(capsys):
    deltas, _, _ = constant_gradient_run([LearningRateScheduler(lambda epoch: 0.02, verbose=1)],
                                         epochs=2)
    np.testing.assert_allclose(deltas, [0.02, 0.02], rtol=1e-3)
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.02." in capsys.readouterr().out
    with pytest.raises(ValueError, match="should be a float"):
        constant_gradient_run([LearningRateScheduler(lambda epoch, lr: "fast")], epochs=1)
    with pytest.raises(TypeError, match="schedule must be a function"):
        LearningRateScheduler(0.1)


# -- CSVLogger --------------------------------------------------------------------------------------
def read_rows(path, delimiter=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=delimiter))


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    history, _ = classifier_run([CSVLogger(path)], epochs=3)
    rows = read_rows(path)
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]  # Keras: sorted
    assert len(rows) == 1 + 3
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], history.history["loss"])
    np.testing.assert_allclose([float(r[4]) for r in rows[1:]], history.history["val_loss"])


def test_csv_logger_append_and_separator(tmp_path):
    path = tmp_path / "log.csv"
    classifier_run([CSVLogger(path, separator=";")], epochs=2, validation_split=0.0)
    classifier_run([CSVLogger(path, separator=";", append=True)], epochs=2,
                   validation_split=0.0)
    rows = read_rows(path, ";")
    assert rows[0] == ["epoch", "accuracy", "loss"]
    assert len(rows) == 1 + 4 and [r[0] for r in rows[1:]] == ["0", "1", "0", "1"]
    classifier_run([CSVLogger(path)], epochs=1, validation_split=0.0)  # append=False rewrites
    assert len(read_rows(path)) == 2


# -- TensorBoard ------------------------------------------------------------------------------------
def load_events(path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0,
                                                            "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_event_files_read_back_with_tensorboard(tmp_path):
    callback = TensorBoard(log_dir=tmp_path / "logs", histogram_freq=1, update_freq="batch")
    history, _ = classifier_run([callback], epochs=3)
    train = load_events(tmp_path / "logs" / "train")
    validation = load_events(tmp_path / "logs" / "validation")
    assert {"epoch_loss", "epoch_accuracy"} <= set(train.Tags()["scalars"])
    assert {"epoch_loss", "epoch_accuracy"} == set(validation.Tags()["scalars"])
    for events, prefix in ((train, ""), (validation, "val_")):
        for name in ("loss", "accuracy"):
            scalars = events.Scalars("epoch_" + name)
            assert [s.step for s in scalars] == [0, 1, 2]
            np.testing.assert_allclose([s.value for s in scalars],
                                       history.history[prefix + name], rtol=1e-6)
    assert "batch_loss" in train.Tags()["scalars"]  # update_freq="batch"
    for tag in ("dense/kernel", "dense/bias", "dense_1/kernel"):  # histogram_freq=1
        assert train.SummaryMetadata(tag).plugin_data.plugin_name == "histograms"
        assert [e.step for e in train.Tensors(tag)] == [0, 1, 2]
    summary = train.Tensors("model_summary")[0].tensor_proto.string_val[0].decode()
    assert "dense (Dense)" in summary and "Total params" in summary


def test_tensorboard_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="profile_batch is not supported"):
        TensorBoard(tmp_path, profile_batch=2)
    with pytest.raises(ValueError, match="update_freq"):
        TensorBoard(tmp_path, update_freq="sometimes")
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorBoard(tmp_path)
