"""ArrayDataset (through kilnet's fit/evaluate/predict), split_dataset and
timeseries_dataset_from_array against hand computations of Keras's rules."""

from __future__ import annotations

import random

import numpy as np
import pytest

import kilnet
from kilnet import layers, utils


def _data(n=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return x, (x.sum(axis=1) > 0).astype(np.int32)


def test_length_indexing_and_batches():
    x, y = _data(10)
    ds = utils.ArrayDataset(x, y, batch_size=4)
    assert len(ds) == 3
    bx, by = ds[2]
    np.testing.assert_array_equal(bx, x[8:])
    np.testing.assert_array_equal(by, y[8:])
    np.testing.assert_array_equal(ds[-1][0], x[8:])
    joined = ds.as_arrays()
    np.testing.assert_array_equal(joined[0], x)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    with pytest.raises(IndexError):
        ds[3]


def test_fit_evaluate_predict_take_the_dataset():
    x, y = _data()
    ds = utils.ArrayDataset(x, y, batch_size=8).shuffle(100, seed=1).cache().prefetch(2)
    model = kilnet.Sequential([kilnet.Input((3,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(ds, epochs=2, validation_data=utils.ArrayDataset(x, y, 8), verbose=0)
    assert len(history.history["loss"]) == 2 and "val_loss" in history.history
    loss, _ = model.evaluate(utils.ArrayDataset(x, y, batch_size=8), verbose=0)
    reference, _ = model.evaluate(x, y, batch_size=8, verbose=0)
    assert loss == pytest.approx(reference, rel=1e-5)
    predicted = model.predict(utils.ArrayDataset(x, y, batch_size=8), verbose=0)
    np.testing.assert_allclose(predicted, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_shuffle_reshuffles_every_pass_and_keeps_every_sample():
    x = np.arange(20)
    ds = utils.ArrayDataset(x, batch_size=5).shuffle(20, seed=3)
    first = np.concatenate(list(ds))
    second = np.concatenate(list(ds))
    assert sorted(first) == sorted(second) == list(range(20))
    assert not np.array_equal(first, second)
    again = np.concatenate(list(utils.ArrayDataset(x, batch_size=5).shuffle(20, seed=3)))
    np.testing.assert_array_equal(first, again)  # the same seed gives the same passes


def test_map_take_batch_unbatch():
    x, y = np.arange(10.0), np.arange(10)
    ds = utils.ArrayDataset(x, y, batch_size=4).map(lambda a, b: (a * 2, b + 1)).take(2)
    batches = list(ds)
    assert len(ds) == len(batches) == 2
    np.testing.assert_array_equal(batches[1][0], x[4:8] * 2)
    np.testing.assert_array_equal(batches[1][1], y[4:8] + 1)
    samples = utils.ArrayDataset(x, y, batch_size=4).unbatch()
    assert len(samples) == 10 and samples[3] == (3.0, 3)
    rebatched = samples.map(lambda a, b: (a + 100, b)).batch(3, drop_remainder=True)
    assert len(rebatched) == 3
    np.testing.assert_array_equal(rebatched[0][0], [100.0, 101.0, 102.0])


def test_tf_only_methods_name_the_alternative():
    ds = utils.ArrayDataset(np.zeros(4), batch_size=2)
    with pytest.raises(AttributeError, match="drop .repeat"):
        ds.repeat()
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ds.nonsense
    with pytest.raises(ValueError, match="batch_size=0"):
        utils.ArrayDataset(np.zeros(4), batch_size=0)
    with pytest.raises(ValueError, match="len\\(y\\)=3"):
        utils.ArrayDataset(np.zeros(4), np.zeros(3))
    with pytest.raises(ValueError, match="filename"):
        ds.cache("file.tfcache")


# -- split_dataset --------------------------------------------------------------------------
def test_split_dataset_sizes_and_keras_shuffle_order():
    x, y = np.arange(10) * 10, np.arange(10)
    left, right = utils.split_dataset((x, y), left_size=0.7, shuffle=True, seed=5)
    order = list(range(10))
    random.Random(5).shuffle(order)   # Keras: random.seed(seed); random.shuffle(samples)
    np.testing.assert_array_equal(left.y, order[:7])
    np.testing.assert_array_equal(right.x, np.array(order[7:]) * 10)
    left, right = utils.split_dataset(x, right_size=3)
    assert (len(left), len(right)) == (7, 3) and right[0] == 70
    batched = utils.ArrayDataset(x, y, batch_size=4)
    left, right = utils.split_dataset(batched, left_size=6)
    assert left.batch_size == 4 and len(left) == 2 and len(right) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "left_size or right_size"),
    (dict(left_size=1.5), "left_size=1.5"),
    (dict(left_size=10), "left_size=10"),
    (dict(left_size=6, right_size=6), "together"),
])
def test_split_dataset_refuses_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.split_dataset(np.arange(10), **kwargs)


# -- timeseries_dataset_from_array -----------------------------------------------------------
def _windows(data, targets, length, stride, rate, start, end):
    """Keras's documented rule, by hand: window i starts at start + i * stride."""
    xs, ys = [], []
    for s in range(start, end - (length - 1) * rate, stride):
        if targets is not None and s - start >= len(targets):
            break
        xs.append(data[s:s + length * rate:rate])
        ys.append(None if targets is None else targets[s])
    return np.array(xs), ys


@pytest.mark.parametrize("length, stride, rate, start, end", [
    (10, 1, 1, None, None), (5, 3, 2, None, None), (4, 2, 3, 7, 90)])
def test_timeseries_windows_follow_keras_rule(length, stride, rate, start, end):
    data = np.arange(100) * 10
    targets = np.arange(100)
    ds = utils.timeseries_dataset_from_array(data, targets, length, sequence_stride=stride,
                                             sampling_rate=rate, batch_size=7,
                                             start_index=start, end_index=end)
    x, y = ds.as_arrays()
    want_x, want_y = _windows(data, targets, length, stride, rate, start or 0, end or 100)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert len(ds) == -(-len(want_x) // 7)


def test_timeseries_keras_docstring_example_and_shuffle():
    # Keras's example: data[:-10] windows of 10, target data[10 + i].
    data = np.arange(100)
    ds = utils.timeseries_dataset_from_array(data[:-10], data[10:], 10, batch_size=128)
    x, y = ds[0]
    np.testing.assert_array_equal(x[0], data[:10])
    assert y[0] == data[10] and len(x) == 81
    shuffled = utils.timeseries_dataset_from_array(data, None, 5, shuffle=True, seed=4,
                                                   batch_size=200)
    starts = np.arange(96)
    np.random.RandomState(4).shuffle(starts)   # Keras shuffles the start positions so
    np.testing.assert_array_equal(shuffled[0][:, 0], starts)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sequence_stride=0), "sequence_stride=0"),
    (dict(sampling_rate=100), "sampling_rate=100"),
    (dict(start_index=200), "start_index=200"),
    (dict(start_index=10, end_index=5), "end_index=5"),
])
def test_timeseries_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.timeseries_dataset_from_array(np.arange(100), None, 5, **kwargs)


def _rows_fit_reads(dataset, epochs):
    """The mean target of each batch fit trains on, in order, per epoch (from the batch logs:
    the loss is the batch's mean target, and the logs hold the epoch's running mean)."""
    logged = []

    class Batches(kilnet.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            logged.append([])

        def on_train_batch_end(self, batch, logs=None):
            logged[-1].append(logs["loss"])

    def mean_target(y_true, y_pred):
        return kilnet.ops.mean(y_true) + 0.0 * kilnet.ops.mean(y_pred)

    model = kilnet.Sequential([kilnet.Input((1,)), kilnet.layers.Dense(1)])
    model.compile(optimizer="sgd", loss=mean_target)
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[Batches()])   # shuffle=True
    return [[round((i + 1) * running[i] - i * running[i - 1] if i else running[0], 3)
             for i in range(len(running))] for running in logged]


def test_fit_trains_an_unshuffled_dataset_in_its_own_order_as_keras_a_tf_dataset():
    # Keras's timeseries_dataset_from_array gives a tf.data dataset, whose order fit keeps
    # (keras.io's weather forecasting trains on it in time order).
    x = np.arange(24, dtype="float32").reshape(24, 1)
    dataset = kilnet.utils.ArrayDataset(x, x, batch_size=4)
    assert _rows_fit_reads(dataset, epochs=2) == [[1.5, 5.5, 9.5, 13.5, 17.5, 21.5]] * 2


def test_fit_draws_a_new_order_of_a_shuffled_dataset_each_epoch():
    x = np.arange(16, dtype="float32").reshape(16, 1)
    dataset = kilnet.utils.ArrayDataset(x, x, batch_size=1, shuffle=True, seed=3)
    first, second = _rows_fit_reads(dataset, epochs=2)
    assert sorted(first) == sorted(second) == x[:, 0].tolist()   # every sample once an epoch
    assert first != second and first != sorted(first)
