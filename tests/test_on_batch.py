"""train_on_batch / test_on_batch / predict_on_batch as Keras 3's: one step on one batch,
this batch's loss and metrics (a float, a list in Keras's order, or a dict), the same
numbers as Keras's from the same weights."""

import os

import jax
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is Keras itself")

import kilnet  # noqa: E402

X = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
Y = np.random.default_rng(1).integers(0, 2, size=(6, 1)).astype("float32")
W = np.array([1, 2, 1, 0, 1, 1], "float32")


def _model(lib, metrics):
    model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(4, activation="relu"),
                            lib.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lib.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=metrics)
    return model


@pytest.mark.parametrize("metrics", [[], ["accuracy", "mae"]])
def test_the_same_steps_and_results_as_keras(metrics):
    mine, theirs = _model(kilnet, metrics), _model(keras, metrics)
    mine.build()
    mine.set_weights(theirs.get_weights())
    for step in range(3):
        weights = W if step == 1 else None
        got = mine.train_on_batch(X, Y, sample_weight=weights)
        want = theirs.train_on_batch(X, Y, sample_weight=weights)
        np.testing.assert_allclose(got, want, rtol=1e-5)
        assert isinstance(got, float) == (not metrics)
    np.testing.assert_allclose(mine.test_on_batch(X, Y), theirs.test_on_batch(X, Y), rtol=1e-5)
    got = mine.train_on_batch(X, Y, return_dict=True)
    want = theirs.train_on_batch(X, Y, return_dict=True)
    assert sorted(got) == sorted(want)
    np.testing.assert_allclose([got[k] for k in sorted(got)], [want[k] for k in sorted(want)],
                               rtol=1e-5)
    np.testing.assert_allclose(mine.predict_on_batch(X[:2]), theirs.predict_on_batch(X[:2]),
                               rtol=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_history_stays_the_last_fit_s():
    model = _model(kilnet, [])
    history = model.fit(X, Y, epochs=2, verbose=0)
    model.train_on_batch(X, Y)
    assert model.history is history and len(history.history["loss"]) == 2
    with pytest.raises(ValueError, match="batch of arrays"):
        model.train_on_batch(3.0, Y)


def test_use_ema_leaves_the_raw_weights_between_calls_as_keras():
    """Keras's train_on_batch does not swap the moving averages in (fit does, at its end): the
    next call trains from the raw weights. Through fit() each call swapped them in, and the
    third step's loss differed from Keras's (1.49 against 0.84)."""
    x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    y = np.ones((6, 1), "float32")
    losses, weights = [], []
    for lib in (kilnet, keras):
        model = lib.Sequential([lib.Input((3,)), lib.layers.Dense(1, kernel_initializer="ones")])
        model.compile(optimizer=lib.optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5),
                      loss="mse")
        losses.append([model.train_on_batch(x, y) for _ in range(4)])
        weights.append(model.get_weights())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _dropout_model():
    model = kilnet.Sequential([kilnet.Input((64,)), kilnet.layers.Dropout(0.5),
                               kilnet.layers.Dense(1, kernel_initializer="ones",
                                                   use_bias=False)])
    model.compile(optimizer=kilnet.optimizers.SGD(0.0), loss="mae")  # weights stay put
    return model


def test_each_training_call_draws_new_dropout_masks():
    """Each train_on_batch or fit call draws new masks, as Keras's seed generator moves on;
    the loss of a mean-absolute error over dropped inputs tells the masks apart (before,
    every call was epoch 0, step 0 and drew the same masks: one loss, four times)."""
    x, y = np.ones((4, 64), "float32"), np.zeros((4, 1), "float32")
    model = _dropout_model()
    on_batch = [model.train_on_batch(x, y) for _ in range(4)]
    assert len(set(on_batch)) == 4
    fits = [model.fit(x, y, verbose=0).history["loss"][0] for _ in range(3)]
    assert len(set(fits)) == 3
    # a seed still decides them: the same seed, the same masks
    seeded = [model.fit(x, y, verbose=0, seed=7).history["loss"][0] for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_the_draws_continue_across_a_saved_model(tmp_path):
    """The key a training call leaves is the model's: a copy saved after a call and trained
    on draws what the original draws next."""
    x, y = np.ones((4, 64), "float32"), np.zeros((4, 1), "float32")
    model = _dropout_model()
    model.train_on_batch(x, y)
    path = str(tmp_path / "model.kilnet")
    model.save(path)
    again = kilnet.models.load_model(path)
    assert again.train_on_batch(x, y) == model.train_on_batch(x, y)


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_non_finite_step_is_not_applied(on_nonfinite):
    """train_on_batch keeps fit's guard without fit's copy of the state: the program leaves its
    input intact, so a step whose update is not finite is replayed checked from it."""
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
    model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", on_nonfinite=on_nonfinite)
    small, y = np.full((4, 3), 0.1, "float32"), np.zeros((4, 2), "float32")
    model.train_on_batch(small, y)  # a finite step
    before = model.get_weights()
    huge = np.full((4, 3), 3e38, "float32")  # finite, so the input checks accept it
    if on_nonfinite == "stop":
        with pytest.raises(kilnet.NonFiniteError, match="not applied"):
            model.train_on_batch(huge, y)
    else:
        model.train_on_batch(huge, y)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.train_on_batch(small, y))  # training goes on
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


class _OwnStep(kilnet.Model):
    """A subclassed model with its own train_step (Keras's JAX form), through train_on_batch."""

    def __init__(self):
        super().__init__()
        self.dense = kilnet.layers.Dense(1, kernel_initializer="ones", use_bias=False)

    def call(self, x):
        return self.dense(x)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        x, y = data

        def loss_fn(weights):
            pred, _ = self.stateless_call(weights, non_trainable, x)
            return kilnet.ops.mean((pred - y) ** 2)

        loss, grads = jax.value_and_grad(loss_fn)(trainable)
        trainable, optimizer_variables = self.optimizer.stateless_apply(
            optimizer_variables, grads, trainable)
        return {"loss": loss}, (trainable, non_trainable, optimizer_variables, metrics_variables)


def test_a_model_with_its_own_train_step():
    model = _OwnStep()
    model.compile(optimizer=kilnet.optimizers.SGD(0.5))
    x, y = np.ones((2, 2), "float32"), np.zeros((2, 1), "float32")
    assert model.train_on_batch(x, y, return_dict=True) == {"loss": 4.0}
    # the step was applied: the prediction is w1 + w2 = 2, each weight's gradient
    # 2 * (2 - 0) * 1 = 4, so w <- 1 - 0.5 * 4 = -1
    np.testing.assert_array_equal(model.get_weights()[0], np.full((2, 1), -1.0, "float32"))


def test_predict_on_batch_of_several_inputs_and_outputs_is_predict_s():
    """predict_on_batch runs predict's program without its loop over blocks: the same numbers,
    for inputs given as a dict or a list and a model of two outputs; bad input is refused."""
    a, b = kilnet.Input((3,), name="a"), kilnet.Input((2,), name="b")
    joined = kilnet.layers.Concatenate()([a, b])
    model = kilnet.Model([a, b], [kilnet.layers.Dense(1)(joined),
                                  kilnet.layers.Dense(4, activation="softmax")(joined)])
    rng = np.random.default_rng(2)
    xa, xb = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=(5, 2)).astype("float32")
    want = model.predict([xa, xb], verbose=0)
    for given in ({"a": xa, "b": xb}, [xa, xb]):
        got = model.predict_on_batch(given)
        assert [g.shape for g in got] == [(5, 1), (5, 4)]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    with pytest.raises(ValueError, match="shape"):
        model.predict_on_batch([xa[:, :2], xb])


def test_predict_on_batch_under_mixed_precision_and_of_uint8_images():
    """The one-batch program casts the batch to the input's dtype and returns float32, as
    predict does: bfloat16 outputs widened, uint8 images read as they are stored."""
    kilnet.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = kilnet.Sequential([kilnet.Input((4, 4, 1)), kilnet.layers.Rescaling(1 / 255),
                                   kilnet.layers.Flatten(), kilnet.layers.Dense(3)])
    finally:
        kilnet.mixed_precision.set_global_policy("float32")
    images = np.random.default_rng(3).integers(0, 256, (6, 4, 4, 1)).astype("uint8")
    got = model.predict_on_batch(images)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, model.predict(images, verbose=0))
    np.testing.assert_array_equal(got, model.predict_on_batch(images.astype("float32")))


def test_the_per_batch_calls_with_data_parallelism_on_one_device():
    """compile(distribution=DataParallel()) takes the distributed path (the batch placed with
    its sharding, predict_on_batch through predict): on one device, the plain path's numbers."""
    x = np.random.default_rng(4).normal(size=(8, 3)).astype("float32")
    y = (np.arange(8) % 2).astype("float32").reshape(8, 1)
    results = []
    for distribution in (None, kilnet.distribution.DataParallel()):
        kilnet.utils.set_random_seed(5)
        model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(4, activation="relu"),
                                   kilnet.layers.Dropout(0.3), kilnet.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse", metrics=["mae"], distribution=distribution)
        losses = [model.train_on_batch(x, y) for _ in range(3)]
        results.append((losses, model.test_on_batch(x, y), model.predict_on_batch(x)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-6)
    np.testing.assert_allclose(results[0][2], results[1][2], rtol=1e-6)


def test_a_fit_on_one_batch_runs_the_one_step_program_as_keras_fits():
    """A reinforcement learner's fit on its replay batch at every step: the epoch is one
    batch, so fit runs train_on_batch's one-step program (no loop, no copy of the state),
    with the same numbers as Keras's fit."""
    mine, theirs = _model(kilnet, ["accuracy"]), _model(keras, ["accuracy"])
    mine.build()
    mine.set_weights(theirs.get_weights())
    for _ in range(3):
        got = mine.fit(X, Y, epochs=2, shuffle=False, verbose=0).history
        want = theirs.fit(X, Y, epochs=2, shuffle=False, verbose=0).history
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5)
    for a, b in zip(mine.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    names = [program["name"] for program in mine.compile_report.programs]
    assert any(n.startswith("train step") for n in names), names
    assert not any(n.startswith("train loop") for n in names), names


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_a_non_finite_step_of_a_one_batch_fit_is_not_applied(on_nonfinite):
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
    model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", on_nonfinite=on_nonfinite)
    small, y = np.full((4, 3), 0.1, "float32"), np.zeros((4, 2), "float32")
    model.fit(small, y, verbose=0)
    before = model.get_weights()
    huge = np.full((4, 3), 3e38, "float32")  # finite, so the input checks accept it
    if on_nonfinite == "stop":
        with pytest.raises(kilnet.NonFiniteError, match="not applied"):
            model.fit(huge, y, verbose=0)
    else:
        model.fit(huge, y, verbose=0)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(model.fit(small, y, verbose=0).history["loss"][-1])
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))
