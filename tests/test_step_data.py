"""The `data` a model's own train_step / test_step / predict_step receives, as Keras 3 packs
it (pack_x_y_sample_weight): the batch itself without labels (the VAE and GAN examples read
it as the images), (x, y), (x, y, sample_weight)."""

import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402


def _describe(data):
    if isinstance(data, (tuple, list)):
        return (type(data).__name__,) + tuple(_describe(item) for item in data)
    if isinstance(data, dict):
        return ("dict",) + tuple((k, _describe(v)) for k, v in sorted(data.items()))
    return tuple(data.shape)


def _recording_model(lib, seen):
    class Recorder(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = lib.layers.Dense(1)
            self.tracker = lib.metrics.Mean(name="loss")

        @property
        def metrics(self):
            return [self.tracker]

        def call(self, x):
            return self.dense(x)

        def train_step(self, state, data):
            seen.append(("train", _describe(data)))
            trainable, non_trainable, optimizer_vars, metric_vars = state
            metric_vars = self.tracker.stateless_update_state(metric_vars, 1.0)
            logs = {"loss": self.tracker.stateless_result(metric_vars)}
            return logs, (trainable, non_trainable, optimizer_vars, metric_vars)

        def test_step(self, state, data):
            seen.append(("test", _describe(data)))
            trainable, non_trainable, metric_vars = state
            metric_vars = self.tracker.stateless_update_state(metric_vars, 1.0)
            return {"loss": self.tracker.stateless_result(metric_vars)}, (
                trainable, non_trainable, metric_vars)

        def predict_step(self, state, data):
            seen.append(("predict", _describe(data)))
            return self.stateless_call(state[0], state[1], data)

    return Recorder()


X = np.random.default_rng(0).random((8, 4)).astype("float32")
Y = np.random.default_rng(1).random((8, 1)).astype("float32")
W = np.linspace(0.5, 1.5, 8).astype("float32")


@pytest.mark.parametrize("given", ["x", "x, y", "x, y, sample_weight"])
def test_fit_and_evaluate_hand_the_batch_as_keras(given):
    kwargs = {"x": {}, "x, y": {"y": Y}, "x, y, sample_weight": {"y": Y, "sample_weight": W}}
    seen = {}
    for lib in (keras, kilnet):
        seen[lib] = []
        model = _recording_model(lib, seen[lib])
        model.compile(optimizer="sgd")
        model.fit(X, batch_size=8, epochs=1, verbose=0, **kwargs[given])
        model.evaluate(X, batch_size=8, verbose=0, **kwargs[given])
        model.predict(X, batch_size=8, verbose=0)
    assert sorted(set(seen[kilnet])) == sorted(set(seen[keras]))



def test_a_subclassed_model_takes_a_list_of_inputs_as_keras():
    """fit([x1, x2], y) on a subclassed model whose call unpacks two inputs: Keras hands the
    list to call; kilnet read it as one stacked array."""
    x1 = np.random.default_rng(2).random((8, 3)).astype("float32")
    x2 = np.random.default_rng(3).random((8, 2)).astype("float32")
    found = {}
    for lib in (keras, kilnet):
        class TwoInputs(lib.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.dense = lib.layers.Dense(1, kernel_initializer="ones")

            def call(self, inputs):
                first, second = inputs
                return self.dense(lib.ops.concatenate([first, second], axis=-1))

        model = TwoInputs()   # not built: fit builds it from the list of arrays
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        history = model.fit([x1, x2], Y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        found[lib] = (history.history["loss"], model.predict([x1, x2], verbose=0),
                      model.evaluate([x1, x2], Y, verbose=0))
    for mine, theirs in zip(found[kilnet], found[keras]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5)


def test_a_subclassed_model_takes_a_dict_of_inputs_as_keras():
    """fit / evaluate / predict with {"tokens": ..., "extra": ...} on a subclassed model whose
    call reads inputs["tokens"]: built by its first eager call, by fit itself, and fed by a
    generator of dict batches; kilnet refused the dict (its call got a tuple, then a list of
    one array)."""
    rng = np.random.default_rng(4)
    x = {"tokens": rng.random((12, 3)).astype("float32"),
         "extra": rng.random((12, 2)).astype("float32")}
    y = rng.random((12, 1)).astype("float32")

    def batches():
        for start in range(0, 12, 4):
            yield {key: value[start:start + 4] for key, value in x.items()}, y[start:start + 4]

    found = {}
    for lib in (keras, kilnet):
        class Keyed(lib.Model):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                self.a = lib.layers.Dense(1, kernel_initializer="ones")
                self.b = lib.layers.Dense(1, kernel_initializer="ones")

            def call(self, inputs):
                return self.a(inputs["tokens"]) - 2.0 * self.b(inputs["extra"])

        runs = []
        for start in ("eager call", "fit", "generator"):
            model = Keyed()
            if start == "eager call":
                model(x)
            model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
            data = (batches(),) if start == "generator" else (x, y)
            history = model.fit(*data, batch_size=None if start == "generator" else 4,
                                epochs=1, shuffle=False, verbose=0)
            runs.append((history.history["loss"], model.predict(x, verbose=0),
                         model.evaluate(x, y, verbose=0)))
        found[lib] = runs
    for mine, theirs in zip(found[kilnet], found[keras]):
        for ours, keras_value in zip(mine, theirs):
            np.testing.assert_allclose(ours, keras_value, rtol=1e-5)


def _tagger(lib):
    class Tagger(lib.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embedding = lib.layers.Embedding(20, 8, embeddings_initializer="ones")
            self.out = lib.layers.Dense(5, activation="softmax", kernel_initializer="ones")

        def call(self, x):
            return self.out(self.embedding(x))

    return Tagger()


def test_a_subclassed_model_predicts_other_lengths_than_it_trained_on():
    """keras.io's NER example trains on 24 padded tokens and predicts an 8-token sentence."""
    ids = np.random.default_rng(5).integers(1, 20, (16, 24))
    found, evaluated = {}, {}
    for lib in (keras, kilnet):
        model = _tagger(lib)
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        model.fit(ids, ids % 5, batch_size=8, epochs=1, shuffle=False, verbose=0)
        found[lib] = model.predict(ids[:2, :8], verbose=0)
        np.testing.assert_allclose(found[lib], np.asarray(model(ids[:2, :8])), rtol=1e-5)
        # and evaluates other lengths too (tests/test_other_lengths.py: fit as well)
        evaluated[lib] = model.evaluate(ids[:, :10], ids[:, :10] % 5, verbose=0)
    assert found[kilnet].shape == (2, 8, 5)
    np.testing.assert_allclose(found[kilnet], found[keras], rtol=1e-5)
    np.testing.assert_allclose(evaluated[kilnet], evaluated[keras], rtol=1e-5)
    free = _tagger(kilnet)
    free.build((None, None))
    free.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    free.fit(ids, ids % 5, epochs=1, verbose=0)
    assert np.isfinite(free.evaluate(ids[:, :10], ids[:, :10] % 5, verbose=0))
