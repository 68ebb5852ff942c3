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
    if data is None:
        return ("None",)
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


# -- the containers x and y were given in --------------------------------------------------------
def _functional_recorder(lib, seen, keyed=False, outputs=1):
    """A functional model of three inputs (named a, b, c; a dict of them when `keyed`) and
    `outputs` outputs (named o0, o1), whose own steps record (x, y) of the `data` they get."""
    names = ("a", "b", "c")
    inputs = [lib.Input((4,), name=name) for name in names]
    summed = lib.layers.Add()([lib.layers.Dense(2)(tensor) for tensor in inputs])
    heads = [lib.layers.Dense(1, name=f"o{i}")(summed) for i in range(outputs)]

    class Recorder(lib.Model):
        def train_step(self, state, data):
            seen.append(("train", _describe(lib.utils.unpack_x_y_sample_weight(data))))
            return {"n": 0.0}, state

        def test_step(self, state, data):
            seen.append(("test", _describe(lib.utils.unpack_x_y_sample_weight(data))))
            return {"n": 0.0}, state

        def predict_step(self, state, data):
            x = lib.utils.unpack_x_y_sample_weight(data)[0]
            seen.append(("predict", _describe(x)))
            return self.stateless_call(state[0], state[1], x)

    return Recorder(dict(zip(names, inputs)) if keyed else inputs,
                    heads if outputs > 1 else heads[0])


X3 = [X, X * 2, X * 3]
Y2 = [Y, Y * 2]
CONTAINERS = {   # (x, y, sample_weight, keyed inputs, outputs)
    "x=list": (X3, None, None, False, 1),
    "x=tuple": (tuple(X3), None, None, False, 1),
    "x=dict": (dict(zip("abc", X3)), None, None, True, 1),
    "x=list, y": (X3, Y, None, False, 1),
    "x=list, y, sample_weight": (X3, Y, W, False, 1),
    "x=tuple, y": (tuple(X3), Y, None, False, 1),
    "x=dict, y, sample_weight": (dict(zip("abc", X3)), Y, W, True, 1),
    "x, y=[y]": (X3, [Y], W, False, 1),
    "y=list, sample_weight": (X3, Y2, W, False, 2),
    "y=tuple": (X3, tuple(Y2), None, False, 2),
    "y=dict, sample_weight": (X3, {"o0": Y, "o1": Y * 2}, W, False, 2),
}


@pytest.mark.parametrize("given", list(CONTAINERS))
def test_steps_get_the_containers_x_and_y_were_given_in(given):
    """Keras hands a model's own steps the user's list, tuple or dict (fit([a, b, c]) gives
    ([a, b, c],)), and the sample weight once per label array in y's container; kilnet
    turned every list and dict into a tuple."""
    x, y, weight, keyed, outputs = CONTAINERS[given]
    seen = {}
    for lib in (keras, kilnet):
        seen[lib] = []
        model = _functional_recorder(lib, seen[lib], keyed, outputs)
        model.compile(optimizer="sgd")
        labels = {} if y is None else {"y": y, "sample_weight": weight}
        model.fit(x, batch_size=4, epochs=1, verbose=0, **labels)
        model.evaluate(x, batch_size=4, verbose=0, **labels)
        if y is None:
            model.predict(x, batch_size=4, verbose=0)
    assert seen[kilnet]
    assert sorted(set(seen[kilnet]), key=repr) == sorted(set(seen[keras]), key=repr)


def _repeat(batch):
    while True:
        yield batch


def test_batch_calls_and_generators_keep_the_containers():
    """train_on_batch, test_on_batch, predict_on_batch and sources of batches hand a step x
    and y in their containers too (compared as unpack_x_y_sample_weight reads `data`: Keras's
    *_on_batch calls also hand (x, y, None) and (x,))."""
    seen = {}
    for lib in (keras, kilnet):
        seen[lib] = []
        model = _functional_recorder(lib, seen[lib], keyed=True)
        model.compile(optimizer="sgd")
        batch = {"a": X[:4], "b": X[:4], "c": X[:4]}
        model.train_on_batch(batch, [Y[:4]])
        model.test_on_batch(batch, Y[:4])
        model.predict_on_batch(batch)
        model.fit(_repeat((batch, (Y[:4],))), steps_per_epoch=2, verbose=0)
        model.evaluate(_repeat((batch, {"o0": Y[:4]})), steps=2, verbose=0)
        model.predict(_repeat(([X[:4]] * 3,)), steps=2, verbose=0)
    assert len(seen[kilnet]) >= 6
    assert sorted(set(seen[kilnet]), key=repr) == sorted(set(seen[keras]), key=repr)


def _loss_stepper(lib):
    """Two outputs trained by the train_step of Keras's "customizing fit() with JAX" guide:
    compute_loss on y and sample_weight as the step gets them."""
    import jax

    inputs = [lib.Input((4,), name=name) for name in ("a", "b")]
    summed = lib.layers.Concatenate()(inputs)
    heads = [lib.layers.Dense(1, name=name)(summed) for name in ("o0", "o1")]

    class Stepper(lib.Model):
        def loss_and_updates(self, trainable, non_trainable, metric_vars, x, y, weight):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                        training=True)
            loss, (trainable, non_trainable, metric_vars) = self.stateless_compute_loss(
                trainable, non_trainable, metric_vars, x=x, y=y, y_pred=y_pred,
                sample_weight=weight, training=True)
            return loss, (non_trainable, metric_vars)

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metric_vars = state
            x, y, weight = data
            assert isinstance(x, list) and isinstance(y, dict) and isinstance(weight, dict)
            grad_fn = jax.value_and_grad(self.loss_and_updates, has_aux=True)
            (loss, (non_trainable, metric_vars)), grads = grad_fn(
                trainable, non_trainable, metric_vars, x, y, weight)
            trainable, optimizer_vars = self.optimizer.stateless_apply(
                optimizer_vars, grads, trainable)
            return {"loss": loss}, (trainable, non_trainable, optimizer_vars, metric_vars)

    return Stepper(inputs, {"o0": heads[0], "o1": heads[1]})


def test_compute_loss_takes_y_and_sample_weight_in_their_containers():
    x = [X, X[:, ::-1] * 2]
    y = {"o0": Y, "o1": 1 - Y}
    losses = []
    models = [_loss_stepper(lib) for lib in (kilnet, keras)]
    models[1].set_weights(models[0].get_weights())
    for model, lib in zip(models, (kilnet, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss={"o0": "mse", "o1": "mae"})
        history = model.fit(x, y, sample_weight=W, batch_size=4, epochs=3, shuffle=False,
                            verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_labels_in_a_list_of_one_train_a_model_of_one_output_as_keras():
    """fit(x, [y]) on a model of one output: Keras reads the list as that output's labels;
    kilnet read it as one array of one sample."""
    losses = []
    models = []
    for lib in (kilnet, keras):
        inputs = lib.Input((4,))
        models.append(lib.Model(inputs, lib.layers.Dense(1)(inputs)))
    models[1].set_weights(models[0].get_weights())
    for model, lib in zip(models, (kilnet, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        history = model.fit(X, [Y], batch_size=4, epochs=2, shuffle=False, verbose=0)
        losses.append(history.history["loss"] + [model.evaluate(X, [Y], verbose=0)])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
