"""Random draws at inference: Monte-Carlo dropout (a layer called with training=True) and
layers of yours that draw from their SeedGenerator whatever the mode (keras.io's "Introduction
to Keras for engineers" MyDropout) run in evaluate, predict and the *_on_batch calls, draw from
the layers' SeedGenerator states, advance them as Keras's test and predict steps do, and so
give new draws at every call. Compared with Keras itself from the same weights (the same
numbers where the draw is keras.random's, the same statistics where kilnet's Dropout masks
are its own), and with the exact mean and spread of the dropped-out outputs."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402
from kilnet.callbacks import BackupAndRestore, Callback  # noqa: E402

RATE = 0.5
ROWS, BATCH = 40, 16   # three batches, the last one partial
CALLS = 60             # Monte-Carlo predictions per model


def inputs(features=6):
    return np.random.default_rng(0).normal(size=(ROWS, features)).astype(np.float32)


def states(model):
    return [np.asarray(getattr(v, "value", v)).tolist() for v in model.non_trainable_variables
            if np.dtype(v.dtype) == np.uint32]


# -- the models, written once for both libraries ------------------------------------------------
def engineers_dropout(lib):
    """keras.io's "Introduction to Keras for engineers": dropout at every call, drawn from the
    layer's own generator, with no training flag."""
    class MyDropout(lib.layers.Layer):
        def __init__(self, rate, name=None):
            super().__init__(name=name)
            self.rate = rate
            self.seed_generator = lib.random.SeedGenerator(1337)

        def call(self, x):
            return lib.random.dropout(x, self.rate, seed=self.seed_generator)

    return MyDropout(RATE)


def with_engineers_dropout(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((6,)), L.Dense(8), engineers_dropout(lib), L.Dense(2)])


def mc_dropout(lib):
    """Monte-Carlo dropout as the tutorials write it for a Sequential model: a Dropout whose
    call always trains."""
    class MCDropout(lib.layers.Dropout):
        def call(self, x):
            return super().call(x, training=True)

    L = lib.layers
    return lib.Sequential([lib.Input((6,)), L.Dense(32, activation="relu"),
                           MCDropout(RATE, seed=3), L.Dense(1)])


def graph_dropout(lib, noise="dropout"):
    """Monte-Carlo dropout in a functional graph: `Dropout(0.5)(x, training=True)` (or a noise
    layer likewise)."""
    L = lib.layers
    layer = {"dropout": lambda: L.Dropout(RATE, seed=3),
             "gaussian_noise": lambda: L.GaussianNoise(RATE, seed=3),
             "gaussian_dropout": lambda: L.GaussianDropout(RATE, seed=3)}[noise]()
    x = lib.Input((6,))
    hidden = L.Dense(32, activation="relu")(x)
    return lib.Model(x, L.Dense(1)(layer(hidden, training=True)))


def both(make, *args):
    ours, theirs = make(kilnet, *args), make(keras, *args)
    theirs.set_weights(ours.get_weights())   # kilnet's, drawn from the test's seed
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    return ours, theirs


def monte_carlo(predict):
    samples = np.stack([np.asarray(predict()) for _ in range(CALLS)])
    return samples.mean(axis=0), samples.std(axis=0, ddof=1)


def exact_spread(model, x, noise="dropout"):
    """The mean and standard deviation of the output over the random layer's draws, from the
    weights: the last Dense is linear, so the mean is the output without noise, and the
    variance is the sum over hidden units of (h_j w_j)^2 times the noise's variance (rate / (1
    - rate) for dropout and Gaussian dropout, stddev^2 for Gaussian noise)."""
    kernel1, bias1, kernel2, bias2 = model.get_weights()
    hidden = np.maximum(x @ kernel1 + bias1, 0.0)
    mean = hidden @ kernel2 + bias2
    if noise == "gaussian_noise":
        variance = np.full_like(mean, RATE ** 2 * float(np.sum(kernel2 ** 2)))
    else:
        variance = (hidden ** 2) @ (kernel2 ** 2) * RATE / (1 - RATE)
    return mean, np.sqrt(variance)


def assert_spread(mean, std, exact_mean, exact_std):
    """Monte-Carlo mean and spread agree with the exact ones: the rows' means off by their
    standard errors (z) with a mean z^2 of about 1 (below 2.5: 6 standard deviations of a
    chi-square over 40 rows; one draw repeated would give about CALLS), the spread on
    average within 10% (5 standard errors of the pooled estimate)."""
    assert exact_std.min() > 0
    z = (mean - exact_mean) / (exact_std / np.sqrt(CALLS))
    assert float(np.mean(z ** 2)) < 2.5
    assert abs(float(np.mean(std / exact_std)) - 1) < 0.1


# -- keras.io's engineers' guide: repeated predict calls draw anew, with Keras's numbers ----------
def test_a_layer_drawing_at_every_call_predicts_keras_s_draws_and_states():
    ours, theirs = both(with_engineers_dropout)
    x = inputs()
    predictions = []
    for _ in range(3):
        predictions.append(ours.predict(x, batch_size=BATCH, verbose=0))
        np.testing.assert_allclose(predictions[-1], theirs.predict(x, batch_size=BATCH,
                                                                   verbose=0),
                                   rtol=1e-5, atol=1e-6)
        assert states(ours) == states(theirs)
    assert states(ours) == [[1337, 9]]   # one draw a batch, three batches a call
    assert not np.allclose(predictions[0], predictions[1])
    assert not np.allclose(predictions[1], predictions[2])
    np.testing.assert_allclose(ours.predict_on_batch(x[:5]), theirs.predict_on_batch(x[:5]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours(x[:5]), np.asarray(theirs(x[:5])), rtol=1e-5, atol=1e-6)
    assert states(ours) == states(theirs) == [[1337, 11]]


def test_evaluate_and_test_on_batch_draw_anew_as_keras():
    ours, theirs = both(with_engineers_dropout)
    x = inputs()
    y = np.zeros((ROWS, 2), np.float32)
    losses = []
    for _ in range(2):
        losses.append(ours.evaluate(x, y, batch_size=BATCH, verbose=0))
        np.testing.assert_allclose(losses[-1], theirs.evaluate(x, y, batch_size=BATCH,
                                                               verbose=0), rtol=1e-5)
    assert losses[0] != losses[1]
    np.testing.assert_allclose(ours.test_on_batch(x[:8], y[:8]),
                               theirs.test_on_batch(x[:8], y[:8]), rtol=1e-5)
    assert states(ours) == states(theirs) == [[1337, 7]]


class OwnSteps(kilnet.Model):
    """Keras's JAX form of test_step and predict_step, handing the non-trainable variables on."""

    def test_step(self, state, data):
        trainable, non_trainable, metric_variables = state
        x, y = data
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x)
        return ({"loss": kilnet.ops.mean((y_pred - y) ** 2)},
                (trainable, non_trainable, metric_variables))

    def predict_step(self, state, data):
        trainable, non_trainable = state
        x = data[0] if isinstance(data, tuple) else data
        return self.stateless_call(trainable, non_trainable, x)


class KerasOwnSteps(keras.Model):
    test_step = OwnSteps.test_step
    predict_step = OwnSteps.predict_step


def test_a_model_s_own_predict_step_hands_the_states_on_as_keras():
    def make(lib):
        x = lib.Input((6,))
        model_class = OwnSteps if lib is kilnet else KerasOwnSteps
        return model_class(x, lib.layers.Dense(2)(engineers_dropout(lib)(x)))

    ours, theirs = both(make)
    x = inputs()
    first = ours.predict(x, batch_size=BATCH, verbose=0)
    np.testing.assert_allclose(first, theirs.predict(x, batch_size=BATCH, verbose=0),
                               rtol=1e-5, atol=1e-6)
    second = ours.predict(x, batch_size=BATCH, verbose=0)
    np.testing.assert_allclose(second, theirs.predict(x, batch_size=BATCH, verbose=0),
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(first, second)
    ours.evaluate(x, x[:, :2], batch_size=BATCH, verbose=0)
    assert states(ours) == [[1337, 9]]


# -- Monte-Carlo dropout ------------------------------------------------------------------------
def test_monte_carlo_dropout_predictions_spread_as_keras_s():
    """The tutorials' MCDropout in a Sequential model: the predictions of repeated predict
    calls spread as Keras's, around the exact mean, with the exact spread; the states advance
    as Keras's."""
    ours, theirs = both(mc_dropout)
    x = inputs()
    exact_mean, exact_std = exact_spread(ours, x)
    mean, std = monte_carlo(lambda: ours.predict(x, batch_size=BATCH, verbose=0))
    assert_spread(mean, std, exact_mean, exact_std)
    keras_mean, keras_std = monte_carlo(lambda: theirs.predict(x, batch_size=BATCH, verbose=0))
    assert_spread(keras_mean, keras_std, exact_mean, exact_std)
    assert states(ours) == states(theirs) == [[3, 3 * CALLS]]
    # an eager call in inference draws from the layer's generator too, as Keras's
    assert not np.allclose(ours(x, training=False), ours(x, training=False))
    theirs(x, training=False), theirs(x, training=False)
    assert states(ours) == states(theirs)


@pytest.mark.parametrize("noise", ["dropout", "gaussian_noise", "gaussian_dropout"])
def test_a_graph_s_training_true_layer_draws_in_every_inference_call(noise):
    """`Dropout(0.5)(x, training=True)` in a functional graph (and the noise layers): fit,
    evaluate, predict, predict_on_batch, test_on_batch and eager calls in either mode run it
    in training mode, each drawing anew. (Keras 3.15 lets predict's training=False override
    the graph's training=True: its eager call, training=None, draws as kilnet's predict does.)"""
    ours, theirs = both(graph_dropout, noise)
    x = inputs()
    y = np.zeros((ROWS, 1), np.float32)
    exact_mean, exact_std = exact_spread(ours, x, noise)
    mean, std = monte_carlo(lambda: ours.predict(x, batch_size=BATCH, verbose=0))
    assert_spread(mean, std, exact_mean, exact_std)
    keras_mean, keras_std = monte_carlo(lambda: theirs(x))
    assert_spread(keras_mean, keras_std, exact_mean, exact_std)
    assert states(ours) == [[3, 3 * CALLS]]
    assert ours.compiled.carries_seed_states("predict")
    evaluated = [ours.evaluate(x, y, batch_size=BATCH, verbose=0) for _ in range(2)]
    tested = [ours.test_on_batch(x, y) for _ in range(2)]
    assert evaluated[0] != evaluated[1] and tested[0] != tested[1]
    for call in (lambda: ours.predict_on_batch(x), lambda: ours(x),
                 lambda: ours(x, training=False)):
        assert not np.allclose(call(), call())
    # two evaluates of three batches, one batch in each other call but model(x), whose
    # training=None gives the layer the call's own key
    assert states(ours) == [[3, 3 * CALLS + 2 * 3 + 2 + 2 + 2]]
    ours.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    assert states(ours) == [[3, 3 * CALLS + 12]]   # fit draws from its own key


def test_a_model_whose_dropout_infers_keeps_its_inference_programs():
    """The seed MLP's and the MNIST convnet's kind of model: Dropout applied in training only.
    Its evaluate and predict programs carry no seed states (they are those compiled before
    random draws at inference were supported) and the states stay."""
    L = kilnet.layers
    model = kilnet.Sequential([kilnet.Input((6,)), L.Dense(8), L.Dropout(RATE, seed=3),
                               L.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    x, y = inputs(), np.zeros((ROWS, 1), np.float32)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, validation_split=0.25)
    np.testing.assert_allclose(model.predict(x, verbose=0), model.predict(x, verbose=0))
    model.evaluate(x, y, verbose=0)
    model.predict_on_batch(x)
    model.test_on_batch(x, y)
    assert not any(model.compiled.carries_seed_states(kind)
                   for kind in ("evaluate", "predict", "predict_batch"))
    assert states(model) == [[3, 0]]


# -- fit: its validation draws from fit's key, so a resumed run validates as the one it resumes --
class Crash(Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("crash")


def test_fit_validates_with_the_draws_of_fit_s_seed_and_resumes_them(tmp_path):
    x = inputs()
    y = (x[:, :1] * 2).astype(np.float32)

    def run(callbacks=()):
        model = graph_dropout(kilnet)
        model.set_weights([np.full(w.shape, 0.1, np.float32) for w in model.get_weights()])
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=4, verbose=0, validation_split=0.25,
                            seed=5, callbacks=list(callbacks))
        return model, history.history["val_loss"]

    reference, losses = run()
    assert len(set(losses)) == 4
    assert states(reference) == [[3, 0]]    # fit leaves the states where they were
    _, again = run()
    assert again == losses
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError):
        run([BackupAndRestore(backup), Crash(2)])
    resumed, tail = run([BackupAndRestore(backup)])
    assert tail == losses[2:]
    for a, b in zip(resumed.get_weights(), reference.get_weights()):
        assert a.tobytes() == b.tobytes()
