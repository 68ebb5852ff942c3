"""Streamed data (memmaps, iterables and generators of batches) trains exactly like arrays in
memory, compiles once whatever the number of blocks, and is checked for NaN/inf."""

import numpy as np
import pytest

import kilnet
from kilnet import feeds, layers

N, BATCH = 200, 16  # 13 steps, the last one partial


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.random((N, 6, 6), dtype=np.float32)
    y = (x.reshape(N, -1).sum(axis=1) > 18).astype(np.int32)
    return x, y


def make_model():
    model = kilnet.Sequential([layers.Flatten(input_shape=(6, 6)),
                               layers.Dense(8, activation="relu"), layers.Dropout(0.25),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.build(seed=5)
    return model


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


@pytest.fixture
def small_blocks(monkeypatch):
    # 3 steps per streamed block: an epoch of 13 steps spans 5 blocks
    monkeypatch.setattr(feeds, "STREAM_BLOCK_BYTES", 3 * BATCH * 36 * 4)


def test_memmap_trains_bitwise_like_arrays_in_memory(data, tmp_path, small_blocks):
    x, y = data
    np.save(tmp_path / "x.npy", x)
    x_map = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert feeds.is_stream(x_map) and not feeds.is_stream(x)
    in_memory, streamed = make_model(), make_model()
    h1 = in_memory.fit(x, y, batch_size=BATCH, epochs=2, seed=3, verbose=0)
    h2 = streamed.fit(x_map, y, batch_size=BATCH, epochs=2, seed=3, verbose=0)
    assert same_weights(in_memory, streamed)
    assert h1.history == h2.history
    # one training program for all five blocks of every epoch
    names = [p["name"] for p in streamed.compile_report.programs if p["name"].startswith("train")]
    assert len(names) == 1
    np.testing.assert_array_equal(streamed.predict(x_map, batch_size=BATCH),
                                  streamed.predict(x, batch_size=BATCH))


def test_iterable_of_batches_equals_unshuffled_arrays(data, small_blocks):
    x, y = data

    class Batches:  # re-iterable: a fresh pass per epoch
        def __iter__(self):
            return ((x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, N, BATCH))

    arrays, batches = make_model(), make_model()
    arrays.fit(x, y, batch_size=BATCH, epochs=2, seed=1, shuffle=False, verbose=0)
    history = batches.fit(Batches(), epochs=2, seed=1, verbose=0)
    assert same_weights(arrays, batches)
    assert len(history.epoch) == 2
    assert batches.evaluate(Batches(), verbose=0) == pytest.approx(
        batches.evaluate(x, y, batch_size=BATCH, verbose=0), rel=1e-6)


def test_endless_generator_uses_steps_per_epoch(data, small_blocks):
    x, y = data

    def endless():
        while True:
            for i in range(0, N, BATCH):
                yield x[i:i + BATCH], y[i:i + BATCH]

    arrays, generated = make_model(), make_model()
    arrays.fit(x, y, batch_size=BATCH, epochs=2, seed=2, shuffle=False, verbose=0)
    generated.fit(endless(), steps_per_epoch=13, epochs=2, seed=2, verbose=0)
    assert same_weights(arrays, generated)


def test_nan_in_a_streamed_batch_is_rejected(data):
    x, y = data
    x = x.copy()
    x[37, 2, 3] = np.nan

    def batches():
        for i in range(0, N, BATCH):
            yield x[i:i + BATCH], y[i:i + BATCH]

    with pytest.raises(kilnet.InputError, match="non-finite.*NaN"):
        make_model().fit(batches(), epochs=1, verbose=0)


def test_batches_of_the_wrong_shape_are_rejected(data):
    """Batches may change shape (each padded to its own length), within the model's input
    shape only."""
    x, y = data

    def batches():
        yield x[:BATCH], y[:BATCH]
        yield x[:BATCH, :5], y[:BATCH]

    with pytest.raises(kilnet.InputError,
                       match=r"x \(batch 1\) has samples of shape \(5, 6\) but the model "
                             r"expects \(6, 6\)"):
        make_model().fit(batches(), epochs=1, verbose=0)


def test_a_short_source_of_unknown_length_is_not_padded_to_a_whole_block(data, small_blocks):
    """A generator that fits in one block is held in the power of two of batches at or above
    its length (it was padded to the whole streamed block, 64 MB: 4 M rows of 4 numbers); a
    longer one keeps one block size, so one program."""
    x, y = data
    model = make_model()

    def batches(count):
        return ((x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH])
                for i in range(count))

    short = model.evaluate(batches(2), verbose=0)   # 2 batches: blocks hold 3
    assert short == pytest.approx(model.evaluate(x[:2 * BATCH], y[:2 * BATCH],
                                                 batch_size=BATCH, verbose=0), rel=1e-6)
    model.evaluate(batches(13), verbose=0)           # 5 blocks, the last holding 1 batch
    evaluations = [p["name"] for p in model.compile_report.programs
                   if p["name"].startswith("evaluate")]
    assert evaluations == [f"evaluate loop ({2 * BATCH} samples, batch {BATCH})",
                           f"evaluate loop ({3 * BATCH} samples, batch {BATCH})"]
