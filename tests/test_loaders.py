"""Data from any loader (kilnet.loaders): generators, PyDatasets (kilnet's and Keras's), torch
DataLoaders and Datasets, tf.data Datasets train bitwise like the same batches in memory; batches
carry several inputs, outputs and sample weights; running out warns; bad batches are named.

torch and tensorflow are not installed: small fakes reproduce the interfaces kilnet reads (a
DataLoader class from module "torch.utils.data.dataloader" whose tensors have .detach/.cpu/.numpy,
a dataset with as_numpy_iterator and cardinality).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers, loaders  # noqa: E402
from kilnet.errors import InputError  # noqa: E402
from test_loaders_helpers import Picklable  # noqa: E402  (spawned workers import it)

N, FEATURES, CLASSES, BATCH = 40, 4, 3, 8   # 5 batches


def blobs(n=N, seed=0):
    r = np.random.default_rng(seed)
    y = r.integers(0, CLASSES, n).astype(np.int64)
    x = 3.0 * np.eye(CLASSES, FEATURES)[y] + 0.7 * r.normal(size=(n, FEATURES))
    return x.astype(np.float32), y


def mlp(seed=0):
    model = kilnet.Sequential([layers.Input(shape=(FEATURES,)),
                               layers.Dense(8, activation="relu"), layers.Dropout(0.2),
                               layers.Dense(CLASSES, activation="softmax")])
    model.build(seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def batches(x, y, size=BATCH, w=None):
    for i in range(0, len(x), size):
        if w is None:
            yield x[i:i + size], y[i:i + size]
        else:
            yield x[i:i + size], y[i:i + size], w[i:i + size]


# -- fakes of the libraries' interfaces ------------------------------------------------------------
class FakeTensor:
    """What kilnet reads of a torch tensor."""

    def __init__(self, array):
        self.array = np.asarray(array)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


class DataLoader:
    """A torch DataLoader over (x, y) arrays: batches are lists of tensors (torch's collation)."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        for i in range(0, len(self.x), self.batch_size):
            yield [FakeTensor(self.x[i:i + self.batch_size]),
                   FakeTensor(self.y[i:i + self.batch_size])]


DataLoader.__module__ = "torch.utils.data.dataloader"


class TorchDataset:
    """A map-style torch Dataset: item i is one sample (x_i, y_i) of tensors."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return FakeTensor(self.x[i]), FakeTensor(self.y[i])


TorchDataset.__module__ = "torch.utils.data.dataset"


class TFDataset:
    """A batched tf.data.Dataset: as_numpy_iterator() per pass, cardinality() its length."""

    def __init__(self, x, y, batch_size, cardinality=None):
        self.x, self.y, self.batch_size = x, y, batch_size
        self._cardinality = cardinality

    def cardinality(self):
        if self._cardinality is not None:
            return np.int64(self._cardinality)
        return np.int64(-(-len(self.x) // self.batch_size))

    def as_numpy_iterator(self):
        return batches(self.x, self.y, self.batch_size)

    def __iter__(self):
        raise AssertionError("kilnet reads a tf.data.Dataset through as_numpy_iterator()")


class Slices(loaders.PyDataset):
    """kilnet's PyDataset over arrays, recording its calls."""

    def __init__(self, x, y, size=BATCH, delay=0.0, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.size, self.delay = x, y, size, delay
        self.calls, self.epochs = [], []
        self.lock = threading.Lock()

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        if self.delay:  # later batches finish first in a pool: order must still hold
            time.sleep(self.delay * (len(self) - i))
        with self.lock:
            self.calls.append(i)
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]

    def on_epoch_begin(self):
        self.epochs.append("begin")

    def on_epoch_end(self):
        self.epochs.append("end")


class KerasSlices(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y

    def __len__(self):
        return -(-len(self.x) // BATCH)

    def __getitem__(self, i):
        return self.x[i * BATCH:(i + 1) * BATCH], self.y[i * BATCH:(i + 1) * BATCH]


# -- bitwise parity --------------------------------------------------------------------------------
def test_every_source_trains_bitwise_like_arrays():
    x, y = blobs()
    reference = mlp()
    reference.fit(x, y, batch_size=BATCH, epochs=3, shuffle=False, seed=4, verbose=0)
    sources = {
        "generator": lambda: (b for _ in range(3) for b in batches(x, y)),
        "PyDataset": lambda: Slices(x, y),
        "keras PyDataset": lambda: KerasSlices(x, y),
        "torch DataLoader": lambda: DataLoader(x, y, BATCH),
        "torch Dataset": lambda: TorchDataset(x, y),
        "tf.data": lambda: TFDataset(x, y, BATCH),
    }
    for name, make in sources.items():
        model = mlp()
        # a one-shot generator of unknown length needs steps_per_epoch, as in Keras
        steps = 5 if name == "generator" else None
        history = model.fit(make(), batch_size=BATCH, epochs=3, shuffle=False, seed=4,
                            steps_per_epoch=steps, verbose=0)
        assert history.epoch == [0, 1, 2], name
        assert same_weights(reference, model), name


def test_shuffled_torch_dataset_and_pydataset():
    x, y = blobs()
    # A map-style Dataset is shuffled sample by sample with the arrays' permutation.
    arrays, samples = mlp(), mlp()
    arrays.fit(x, y, batch_size=BATCH, epochs=2, seed=7, verbose=0)
    samples.fit(TorchDataset(x, y), batch_size=BATCH, epochs=2, seed=7, verbose=0)
    assert same_weights(arrays, samples)
    # A PyDataset's batch order is shuffled per epoch from the seed: reproducibly.
    first, second = Slices(x, y), Slices(x, y)
    mlp().fit(first, epochs=3, seed=7, verbose=0)
    mlp().fit(second, epochs=3, seed=7, verbose=0)
    assert first.calls[1:] == second.calls[1:]  # calls[0] is the shape probe
    epochs = [first.calls[1 + 5 * e:6 + 5 * e] for e in range(3)]
    assert all(sorted(e) == [0, 1, 2, 3, 4] for e in epochs)
    assert epochs != [[0, 1, 2, 3, 4]] * 3


# -- several inputs and outputs, sample weights ----------------------------------------------------
def two_by_two(seed=0):
    a = kilnet.Input(shape=(3,), name="a")
    b = kilnet.Input(shape=(2,), name="b")
    h = layers.Dense(6, activation="relu")(layers.Concatenate()([a, b]))
    cls = layers.Dense(CLASSES, activation="softmax", name="cls")(h)
    reg = layers.Dense(1, name="reg")(h)
    model = kilnet.Model([a, b], [cls, reg])
    model.build(seed=seed)
    model.compile(optimizer="adam", loss={"cls": "sparse_categorical_crossentropy",
                                          "reg": "mse"})
    return model


def two_by_two_data(n=N):
    r = np.random.default_rng(3)
    xa, xb = r.normal(size=(n, 3)), r.normal(size=(n, 2)).astype(np.float32)
    return xa, xb, r.integers(0, CLASSES, n), r.normal(size=(n, 1)), r.random(n) + 0.5


def test_dict_batches_with_sample_weights_train_like_arrays():
    xa, xb, yc, yr, w = two_by_two_data()
    arrays, streamed = two_by_two(), two_by_two()
    arrays.fit({"a": xa, "b": xb}, {"cls": yc, "reg": yr}, sample_weight=w, batch_size=BATCH,
               epochs=2, shuffle=False, seed=1, verbose=0)

    def gen():
        for _ in range(2):
            for i in range(0, N, BATCH):
                s = slice(i, i + BATCH)
                yield {"b": xb[s], "a": xa[s]}, {"reg": yr[s], "cls": yc[s]}, w[s]

    streamed.fit(gen(), steps_per_epoch=5, epochs=2, seed=1, verbose=0)
    assert same_weights(arrays, streamed)
    # tuples in the model's order work too, and evaluate agrees with arrays
    tuples = [((xa[i:i + BATCH], xb[i:i + BATCH]), (yc[i:i + BATCH], yr[i:i + BATCH]))
              for i in range(0, N, BATCH)]
    expected = streamed.evaluate({"a": xa, "b": xb}, {"cls": yc, "reg": yr}, batch_size=BATCH,
                                 verbose=0)
    np.testing.assert_allclose(streamed.evaluate(iter(tuples), verbose=0), expected, rtol=1e-6)
    # predict takes dict batches of x alone, and reads a one-shot generator to its end
    out = streamed.predict(({"a": xa[i:i + 5], "b": xb[i:i + 5]} for i in range(0, N, 5)),
                           verbose=0)
    ref = streamed.predict({"a": xa, "b": xb}, batch_size=5, verbose=0)
    assert len(out[0]) == N
    np.testing.assert_array_equal(out[0], ref[0])
    np.testing.assert_array_equal(out[1], ref[1])


def test_class_weight_with_a_generator_matches_arrays():
    x, y = blobs()
    weights = {0: 1.0, 1: 3.0, 2: 0.5}
    arrays, streamed = mlp(), mlp()
    arrays.fit(x, y, batch_size=BATCH, class_weight=weights, shuffle=False, seed=2, verbose=0)
    streamed.fit(batches(x, y), class_weight=weights, seed=2, verbose=0)
    assert same_weights(arrays, streamed)
    with pytest.raises(InputError, match="not both"):
        mlp().fit(batches(x, y, w=np.ones(N)), class_weight=weights, verbose=0)


def test_arguments_that_belong_in_the_batches_are_refused():
    x, y = blobs()
    with pytest.raises(InputError, match="y must not be passed"):
        mlp().fit(batches(x, y), y, verbose=0)
    with pytest.raises(InputError, match="sample_weight must not be passed"):
        mlp().fit(batches(x, y), sample_weight=np.ones(N), verbose=0)
    with pytest.raises(InputError, match=r"\(x, y, sample_weight\)"):
        mlp().fit(iter([(x, y, np.ones(N), y)]), verbose=0)


# -- PyDataset -------------------------------------------------------------------------------------
def test_pydataset_hooks_steps_and_workers():
    x, y = blobs()
    data = Slices(x, y)
    model = mlp()
    model.fit(data, epochs=2, shuffle=False, seed=0, verbose=0)
    assert data.epochs == ["begin", "end"] * 2
    assert data.calls == [0] + [0, 1, 2, 3, 4] * 2   # steps_per_epoch = len(data)
    # Threads prepare batches ahead; a later batch finishing first changes nothing.
    threaded = Slices(x, y, delay=0.01, workers=3, max_queue_size=4)
    twin = mlp()
    twin.fit(threaded, epochs=2, shuffle=False, seed=0, verbose=0)
    assert same_weights(model, twin)
    assert sorted(threaded.calls[1:]) == sorted([0, 1, 2, 3, 4] * 2)


def test_pydataset_in_a_process_pool():
    x, y = blobs()
    model, pooled = mlp(), mlp()
    model.fit(Picklable(x, y), epochs=1, shuffle=False, seed=0, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # JAX's note about os.fork
        pooled.fit(Picklable(x, y, workers=2, use_multiprocessing=True), epochs=1,
                   shuffle=False, seed=0, verbose=0)
    assert same_weights(model, pooled)


_UNGUARDED = """
import os, sys
import numpy as np
if sys.argv[1] == "keras":
    import keras
else:
    import kilnet as keras
print("body", flush=True)   # once: a spawned worker would run the script again
class DS(keras.utils.PyDataset):
    def __init__(self, x, y, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y = x, y
    def __len__(self):
        return len(self.x) // 32
    def __getitem__(self, i):
        x = self.x[i * 32:(i + 1) * 32]
        if sys.argv[2] == "jax" and i > 0:   # batch 0 is read in the script's process
            x = np.asarray(keras.ops.tanh(x))
        return x, self.y[i * 32:(i + 1) * 32]
x = np.random.default_rng(0).normal(size=(128, 4)).astype("float32")
inputs = keras.Input(shape=(4,))
model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
model.compile(optimizer="sgd", loss="mse")
try:
    model.fit(DS(x, x.sum(1, keepdims=True), workers=2, use_multiprocessing=True), verbose=0)
    print("trained", flush=True)
except RuntimeError as error:
    print("refused:", error, flush=True)
"""


def _run_unguarded(tmp_path, lib, dataset_uses="numpy"):
    script = tmp_path / "guide.py"
    script.write_text(_UNGUARDED)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(kilnet.__file__)),
               KERAS_BACKEND="jax")
    done = subprocess.run([sys.executable, str(script), lib, dataset_uses], env=env,
                          capture_output=True, text=True, timeout=240)
    return done.stdout.splitlines()


def test_pydataset_workers_in_a_script_without_a_main_guard_as_keras(tmp_path):
    """keras.io's guide writes PyDataset(workers=2, use_multiprocessing=True) in a plain
    script: the workers are forked as Keras's are, and the script runs once (spawned ones
    ran it again in every worker)."""
    assert _run_unguarded(tmp_path, "kilnet") == _run_unguarded(tmp_path, "keras") == [
        "body", "trained"]


def test_a_forked_worker_calling_jax_is_refused_with_the_fix(tmp_path):
    """JAX cannot compile in a forked worker (it hangs): kilnet's workers say so at once."""
    lines = _run_unguarded(tmp_path, "kilnet", dataset_uses="jax")
    assert lines[0] == "body" and lines[1].startswith("refused: A PyDataset worker forked")
    assert 'if __name__ == "__main__":' in lines[1]


def test_a_guarded_script_is_told_from_an_unguarded_one(tmp_path, monkeypatch):
    main = sys.modules["__main__"]
    for text, guarded in [("print(1)\n", False),
                          ("def f():\n    pass\nif __name__ == '__main__':\n    f()\n", True),
                          ('if "__main__" == __name__:\n    pass\n', True),
                          ("def f():\n    if __name__ == '__main__':\n        pass\n", False)]:
        script = tmp_path / "script.py"
        script.write_text(text)
        monkeypatch.setattr(main, "__file__", str(script), raising=False)
        assert loaders.main_is_guarded() is guarded, text
    monkeypatch.delattr(main, "__file__")   # a notebook, python -c
    assert loaders.main_is_guarded() is False


def test_an_unguarded_script_is_refused_where_workers_cannot_fork(tmp_path, monkeypatch):
    script = tmp_path / "script.py"
    script.write_text("print(1)\n")
    monkeypatch.setattr(sys.modules["__main__"], "__file__", str(script), raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    x, y = blobs()
    with pytest.raises(InputError, match=r'if __name__ == "__main__":.*Received: a script'):
        mlp().fit(Picklable(x, y, workers=2, use_multiprocessing=True), verbose=0)


def test_pydataset_steps_per_epoch_continues_the_pass_as_keras():
    x, y = blobs()
    data = Slices(x, y)
    # 5 batches, 2 steps per epoch: epochs read 0-1, 2-3, then 4 alone (the pass ends), 0-1
    with pytest.warns(UserWarning, match="ran out of data in epoch 3, after 1 of its 2"):
        history = mlp().fit(data, steps_per_epoch=2, epochs=4, shuffle=False, seed=0,
                            verbose=0)
    assert data.calls[1:] == [0, 1, 2, 3, 4, 0, 1]
    assert history.epoch == [0, 1, 2, 3]


def test_pydataset_constructor_checks_and_endless_dataset():
    with pytest.raises(ValueError, match="workers"):
        loaders.PyDataset(workers=0)

    class Endless(loaders.PyDataset):
        num_batches = None

        def __getitem__(self, i):
            return np.ones((4, FEATURES), np.float32), np.zeros(4, np.int64)

    with pytest.raises(InputError, match="steps_per_epoch"):
        mlp().fit(Endless(), verbose=0)
    history = mlp().fit(Endless(), steps_per_epoch=3, epochs=2, verbose=0)
    assert history.epoch == [0, 1]


def test_tf_dataset_cardinality_and_validation():
    x, y = blobs()
    model = mlp()
    history = model.fit(TFDataset(x, y, BATCH), validation_data=TFDataset(x, y, BATCH),
                        epochs=2, seed=0, verbose=0)
    expected = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    assert history.history["val_loss"][-1] == pytest.approx(expected["loss"], rel=1e-6)
    endless = TFDataset(x, y, BATCH, cardinality=-1)  # tf.data.INFINITE_CARDINALITY
    assert loaders.adapt(endless).steps is None


# -- running out ----------------------------------------------------------------------------------
def test_a_finite_generator_that_runs_out_warns_with_keras_words():
    x, y = blobs()
    with pytest.warns(UserWarning) as record:
        history = mlp().fit(batches(x, y), steps_per_epoch=3, epochs=3, verbose=0)
    message = str(record[0].message)
    assert message.startswith(
        "Your input ran out of data; interrupting training. Make sure that your dataset or "
        "generator can generate at least `steps_per_epoch * epochs` batches.")
    assert history.epoch == [0, 1]


def test_an_endless_validation_generator_needs_validation_steps():
    x, y = blobs()

    def endless():
        while True:
            yield from batches(x, y)

    with pytest.raises(InputError, match="validation_steps"):
        mlp().fit(x, y, epochs=1, verbose=0, validation_data=endless())
    history = mlp().fit(x, y, epochs=1, verbose=0, validation_data=endless(),
                        validation_steps=2)
    assert len(history.history["val_loss"]) == 1


def test_evaluate_reads_a_one_shot_generator_to_its_end():
    x, y = blobs()
    model = mlp()
    expected = model.evaluate(x, y, batch_size=BATCH, verbose=0, return_dict=True)
    got = model.evaluate(batches(x, y), verbose=0, return_dict=True)
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])


# -- checks on streamed batches -------------------------------------------------------------------
def test_a_label_out_of_range_names_its_batch():
    x, y = blobs()
    y = y.copy()
    y[2 * BATCH + 3] = 7
    with pytest.raises(InputError, match=r"y \(batch 2\).*class ids up to 7"):
        mlp().fit(batches(x, y), verbose=0)


def test_a_label_shape_that_changes_mid_epoch_names_its_batch():
    x, y = blobs()

    def gen():
        yield x[:BATCH], y[:BATCH]
        yield x[BATCH:2 * BATCH], y[BATCH:2 * BATCH, None, None]

    # batches may change shape (each padded to its own length), but not to labels the loss
    # cannot read
    with pytest.raises(InputError, match=r"y \(batch 1\) must hold one integer class id"):
        mlp().fit(gen(), verbose=0)


def test_nan_in_a_batch_names_it():
    x, y = blobs()
    x = x.copy()
    x[3 * BATCH, 1] = np.inf
    with pytest.raises(InputError, match=r"x \(batch 3\) contains 1 non-finite"):
        mlp().fit(DataLoader(x, y, BATCH), verbose=0)


# -- pandas in memory ------------------------------------------------------------------------------
def test_pandas_objects_go_the_array_path():
    pd = pytest.importorskip("pandas")
    x, y = blobs()
    frame = pd.DataFrame(x, columns=list("abcd"))
    series = pd.Series(y, name="label")
    assert not loaders.is_loader(frame) and not loaders.is_loader(series)
    arrays, pandas = mlp(), mlp()
    arrays.fit(x, y, batch_size=BATCH, epochs=2, seed=3, verbose=0)
    pandas.fit(frame, series, batch_size=BATCH, epochs=2, seed=3, verbose=0)
    assert same_weights(arrays, pandas)
    np.testing.assert_array_equal(pandas.predict(frame, verbose=0), pandas.predict(x, verbose=0))


def test_array_dataset_batches_answer_numpy_as_tf_tensors():
    """Tutorials written for tf.data call .numpy() on the batches (`images[i].numpy()`,
    `inputs.numpy().shape`); an ArrayDataset's arrays answer it and stay NumPy arrays."""
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    ds = kilnet.utils.ArrayDataset(x, np.arange(6), batch_size=4).map(lambda a, b: (a * 2, b))
    inputs, labels = next(iter(ds))
    assert type(inputs.numpy()) is np.ndarray and type(inputs[1].numpy()) is np.ndarray
    np.testing.assert_array_equal(inputs[1].numpy(), x[1] * 2)
    np.testing.assert_array_equal(labels.numpy(), np.arange(4))
    assert repr(labels) == repr(np.arange(4))
    sample = next(iter(kilnet.utils.ArrayDataset(x, batch_size=None)))
    np.testing.assert_array_equal(sample.numpy(), x[0])


def test_array_dataset_elements_and_text_answer_numpy_as_tf_tensors():
    """As a tf.Tensor's: an element of a batch (`y[0]`, `x[0, 0, 0]`) still answers .numpy()
    with a NumPy scalar (keras.io's weather forecasting plots `y[0].numpy()`), text comes
    out of .numpy() as UTF-8 bytes (`text.numpy()[0].decode("utf-8")`, as a tf.string's),
    and cardinality() is the number of batches, read by int() (keras.io's text
    classification prints it)."""
    x = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    ds = kilnet.utils.ArrayDataset(x, np.arange(6) * 1.5, batch_size=4)
    inputs, labels = next(iter(ds))
    assert labels[1].numpy() == np.float64(1.5) and type(labels[1].numpy()) is np.float64
    assert inputs[1, 0, 1].numpy() == np.float32(5.0) and type(inputs[1, 0, 1].numpy()) is np.float32
    np.testing.assert_array_equal(inputs[0][:, 1].numpy(), x[0][:, 1])
    assert int(ds.cardinality()) == len(ds) == 2 and ds.cardinality().numpy() == 2
    assert int(ds.unbatch().cardinality()) == 6
    names = ["a", "b", "c", "d", "e", "f"]
    assert names[next(iter(kilnet.utils.ArrayDataset(np.arange(6), batch_size=6)))[3]] == "d"

    texts = np.array(["the cat", "a dog ü", "x"], dtype=object)
    batch, _ = next(iter(kilnet.utils.ArrayDataset(texts, np.zeros(3), batch_size=3)))
    assert batch[1] == "a dog ü"   # the array keeps Python strings for the text layers
    assert batch.numpy().tolist() == [b"the cat", "a dog ü".encode("utf-8"), b"x"]
    assert batch.numpy()[1].decode("utf-8") == "a dog ü"
    fixed = next(iter(kilnet.utils.ArrayDataset(np.array(["ab", "c"]), batch_size=2)))
    assert fixed.numpy().tolist() == [b"ab", b"c"] and fixed.numpy().dtype == object


def test_an_array_dataset_is_read_by_index_not_as_tf_data():
    """It answers tf.data's cardinality() and as_numpy_iterator(), yet fit reads it by index
    as before."""
    from kilnet import loaders
    ds = kilnet.utils.ArrayDataset(np.zeros((4, 2)), np.zeros(4), batch_size=2)
    assert not loaders.is_tf_dataset(ds) and loaders.is_indexed(ds)
    x, y = loaders.to_numpy(ds[0])   # what fit reads: plain arrays
    assert type(x) is np.ndarray and type(y) is np.ndarray
