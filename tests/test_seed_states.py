"""SeedGenerator states as Keras 3 keeps them: a uint32 (2,) Variable "seed_generator_state"
per generator, starting at [seed, 0], listed in `variables` / `non_trainable_variables` in
Keras's order (not in `weights` or files), advanced by [0, 1] at each draw. Compared with Keras
itself on the same models; the JAX training loop of Keras's guide with Dropout under your own
`jax.jit` draws from the states and hands them on."""

from __future__ import annotations

import os
import zipfile

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import h5py  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras  # noqa: E402
import kilnet  # noqa: E402


def value_of(v):
    return np.asarray(getattr(v, "value", v))


def signature(variables):
    """What must agree with Keras: name, dtype, shape, and a seed state's value."""
    return [(v.name, str(np.dtype(v.dtype)), tuple(v.shape),
             value_of(v).tolist() if np.dtype(v.dtype) == np.uint32 else None)
            for v in variables]


# -- the models, written once for both libraries ------------------------------------------------
def noisy_sequential(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((8,)), L.Dense(4), L.Dropout(0.5, seed=3),
                           L.GaussianNoise(0.1, seed=5), L.Dropout(0.0),
                           L.BatchNormalization(), L.Dense(2)])


def attention_and_lstm(lib):
    L = lib.layers
    inputs = lib.Input((6, 8))
    x = L.BatchNormalization()(inputs)
    x = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1, seed=11)(x, x)
    x = L.LSTM(4, dropout=0.2, seed=13)(x)
    x = L.Dropout(0.3, seed=17)(x)
    return lib.Model(inputs, L.Dense(1)(L.BatchNormalization()(x)))


def augmentation(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((8, 8, 3)), L.RandomFlip(seed=1),
                           L.RandomRotation(0.1, seed=2), L.Conv2D(2, 3),
                           L.BatchNormalization()])


def subclassed(lib):
    class Noise(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = lib.random.SeedGenerator(21)

        def call(self, x, training=False):
            if training:
                return x + lib.random.normal(lib.ops.shape(x), seed=self.seed_generator)
            return x

    class Net(lib.Model):
        def __init__(self):
            super().__init__()
            self.dense = lib.layers.Dense(3)
            self.noise = Noise()
            self.norm = lib.layers.BatchNormalization()

        def call(self, x, training=False):
            return self.norm(self.noise(self.dense(x), training=training), training=training)

    model = Net()
    model(np.ones((2, 4), np.float32))
    return model


def composite_augmentation(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((8, 8, 3)),
                           L.RandomColorJitter(brightness_factor=0.2, hue_factor=0.1, seed=5),
                           L.RandAugment(seed=6), L.AugMix(seed=7)])


def frozen_attention(lib):
    inputs = lib.Input((4, 8))
    grouped = (lib.layers.GroupQueryAttention if lib is keras
               else kilnet.layers.GroupedQueryAttention)(4, 2, 1, dropout=0.1, seed=3)
    x = lib.layers.MultiHeadAttention(2, 4, dropout=0.1, seed=5)(inputs, inputs)
    model = lib.Model(inputs, grouped(x, x))
    model.trainable = False
    return model


def frozen(lib):
    model = noisy_sequential(lib)
    model.trainable = False
    return model


@pytest.mark.parametrize("make", [noisy_sequential, attention_and_lstm, augmentation,
                                  subclassed, composite_augmentation, frozen,
                                  frozen_attention])
def test_non_trainable_variables_are_keras_s(make):
    ours, theirs = make(kilnet), make(keras)
    assert signature(ours.non_trainable_variables) == signature(theirs.non_trainable_variables)
    assert signature(ours.variables) == signature(theirs.variables)
    assert len(ours.weights) == len(theirs.weights)
    assert all(np.dtype(v.dtype) != np.uint32 for v in ours.weights)
    assert len(ours.get_weights()) == len(theirs.get_weights())


def test_generators_follow_keras_s_conditions():
    L = kilnet.layers
    without = [L.Dropout(0.0), L.GaussianNoise(0.0), L.GaussianDropout(0.0),
               L.AlphaDropout(0.0), L.SpatialDropout1D(0.0), L.Attention(),
               L.MultiHeadAttention(2, 4), L.AutoContrast()]
    with_one = [L.Dropout(0.1), L.GaussianNoise(0.1), L.GaussianDropout(0.1),
                L.AlphaDropout(0.1), L.SpatialDropout2D(0.1), L.Attention(dropout=0.1),
                L.MultiHeadAttention(2, 4, dropout=0.1), L.LSTMCell(2), L.GRU(2),
                L.SimpleRNN(2), L.RandomFlip(), L.RandomCrop(2, 2), L.MixUp()]
    assert [len(layer.seed_states()) for layer in without] == [0] * len(without)
    assert [len(layer.seed_states()) for layer in with_one] == [1] * len(with_one)


# -- Keras's JAX training loop with Dropout, under your own jax.jit ------------------------------
def small_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 1))).astype(np.float32)
    return x, y


def dropout_model(lib):
    L = lib.layers
    return lib.Sequential([lib.Input((8,)), L.Dense(16, activation="relu"),
                           L.Dropout(0.3, seed=3), L.Dense(1)])


def jitted_loop(lib, model, steps=30):
    """The guide's loop with training=True: (losses, the seed states after each step,
    the outputs of the first two steps)."""
    x, y = small_problem()
    optimizer = lib.optimizers.SGD(learning_rate=0.05)
    optimizer.build(model.trainable_variables)

    def loss_fn(trainable, non_trainable):
        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x,
                                                     training=True)
        return jnp.mean((y_pred - y) ** 2), (non_trainable, y_pred)

    @jax.jit
    def step(trainable, non_trainable, optimizer_vars):
        (loss, (non_trainable, y_pred)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable)
        trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, grads, trainable)
        return loss, trainable, non_trainable, optimizer_vars, y_pred

    trainable = [value_of(v) for v in model.trainable_variables]
    non_trainable = [value_of(v) for v in model.non_trainable_variables]
    optimizer_vars = [value_of(v) for v in optimizer.variables]
    losses, states, outputs = [], [], []
    for _ in range(steps):
        loss, trainable, non_trainable, optimizer_vars, y_pred = step(
            trainable, non_trainable, optimizer_vars)
        losses.append(float(loss))
        states.append([value_of(s).tolist() for s in non_trainable])
        outputs.append(np.asarray(y_pred))
    return losses, states, outputs


def test_dropout_under_your_own_jit_draws_from_the_states_as_keras():
    ours, theirs = dropout_model(kilnet), dropout_model(keras)
    ours.set_weights(theirs.get_weights())
    losses, states, outputs = jitted_loop(kilnet, ours)
    _, keras_states, _ = jitted_loop(keras, theirs)
    assert states == keras_states                      # [[3, 1]], [[3, 2]], ...
    assert states[:2] == [[[3, 1]], [[3, 2]]]
    assert not np.array_equal(outputs[0], outputs[1])  # a new mask every step
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert ours.non_trainable_variables[0].numpy().tolist() == [3, 0]   # nothing stored


def test_the_same_states_give_the_same_output_and_training_false_draws_nothing():
    model = dropout_model(kilnet)
    trainable = [value_of(v) for v in model.trainable_variables]
    states = [np.array([3, 5], np.uint32)]
    x, _ = small_problem()
    call = jax.jit(lambda t, n, training: model.stateless_call(t, n, x, training=training),
                   static_argnums=2)
    first, after = call(trainable, states, True)
    again, _ = call(trainable, states, True)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(again))
    assert np.asarray(after[0]).tolist() == [3, 6]
    _, untouched = call(trainable, states, False)
    assert np.asarray(untouched[0]).tolist() == [3, 5]


def test_a_rnn_with_dropout_under_your_own_jit_draws_once_per_call():
    model = kilnet.Sequential([kilnet.Input((5, 3)), kilnet.layers.LSTM(4, dropout=0.3, seed=9)])
    trainable = [value_of(v) for v in model.trainable_variables]
    x = np.ones((2, 5, 3), np.float32)
    step = jax.jit(lambda t, n: model.stateless_call(t, n, x, training=True))
    first, states = step(trainable, [value_of(model.non_trainable_variables[0])])
    second, _ = step(trainable, states)
    assert np.asarray(states[0]).tolist() == [9, 1]
    assert not np.array_equal(np.asarray(first), np.asarray(second))


# -- eager draws ----------------------------------------------------------------------------------
def test_eager_draws_advance_the_state_and_equal_keras_s_numbers():
    ours, theirs = kilnet.random.SeedGenerator(42), keras.random.SeedGenerator(42)
    for count in range(1, 4):
        np.testing.assert_array_equal(
            np.asarray(kilnet.random.normal((5,), seed=ours)),
            np.asarray(keras.random.normal((5,), seed=theirs)))
        assert ours.state.numpy().tolist() == [42, count]
        assert np.asarray(theirs.state.value).tolist() == [42, count]
    assert ours.state.path == "seed_generator_state" or ours.state.path.endswith(
        "/seed_generator_state")


def always_noisy(lib):
    """keras.io's VAE: a layer drawing from its own generator at every call, in a functional
    model."""
    class Sampling(lib.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = lib.random.SeedGenerator(1337)

        def call(self, x):
            return x + lib.random.normal(lib.ops.shape(x), seed=self.seed_generator)

    inputs = lib.Input((2,))
    return lib.Model(inputs, Sampling()(lib.layers.Dense(2)(inputs)))


def test_building_and_stateless_calls_leave_the_states_and_draw_as_keras():
    """Building (the symbolic calls, the weights made on first use) draws nothing, and
    stateless_call returns the advanced state without changing the variable, as Keras's; then
    eager calls draw Keras's numbers from [1337, 0] on."""
    ours, theirs = always_noisy(kilnet), always_noisy(keras)
    ours.set_weights(theirs.get_weights())
    assert signature(ours.non_trainable_variables) == signature(theirs.non_trainable_variables)
    assert value_of(ours.non_trainable_variables[0]).tolist() == [1337, 0]
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    results = [model.stateless_call([v.value for v in model.trainable_variables],
                                    [v.value for v in model.non_trainable_variables], x)
               for model in (ours, theirs)]
    np.testing.assert_allclose(results[0][0], np.asarray(results[1][0]), rtol=1e-6)
    assert [value_of(v).tolist() for v in results[0][1]] == [
        value_of(v).tolist() for v in results[1][1]] == [[1337, 1]]
    assert signature(ours.non_trainable_variables) == signature(theirs.non_trainable_variables)
    for count in (1, 2):
        np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=1e-6)
        assert value_of(ours.non_trainable_variables[0]).tolist() == [1337, count]


def test_a_random_layer_without_any_key_is_refused_clearly():
    with pytest.raises(ValueError, match="Dropout 'd' was applied in training mode without a "
                                         "random key.*Pass rng="):
        kilnet.layers.Dropout(0.5, name="d").apply({}, {}, jnp.ones((2, 3)), training=True)
    model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.StochasticDepth(0.5)])
    x = np.ones((4, 3), np.float32)
    eager, _ = model.stateless_call([], [], x, training=True)   # a fresh host key
    assert eager.shape == (4, 3)
    with pytest.raises(ValueError, match="StochasticDepth .* has none"):
        jax.jit(lambda x: model.stateless_call([], [], x, training=True))(x)


# -- a model's own train_step (Keras's JAX form) ------------------------------------------------
class StepModel(kilnet.Model):
    """Keras's "customizing fit() with JAX" guide's train_step."""

    received = None

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metrics_vars = state
        StepModel.received = len(non_trainable)
        x, y = data

        def loss_fn(trainable, non_trainable):
            y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x,
                                                        training=True)
            return self.compute_loss(x, y, y_pred), non_trainable

        (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            trainable, non_trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        return {"loss": loss}, (trainable, non_trainable, optimizer_vars, metrics_vars)


def test_a_model_s_own_train_step_with_dropout_trains():
    inputs = kilnet.Input((8,))
    hidden = kilnet.layers.Dense(16, activation="relu")(inputs)
    hidden = kilnet.layers.BatchNormalization()(kilnet.layers.Dropout(0.2, seed=4)(hidden))
    model = StepModel(inputs, kilnet.layers.Dense(1)(hidden))
    model.compile(optimizer=kilnet.optimizers.SGD(0.05), loss="mse")
    x, y = small_problem()
    history = model.fit(x, y, epochs=8, batch_size=16, verbose=0, seed=0)
    assert StepModel.received == len(model.non_trainable_variables) == 3
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    # kilnet's compiled step draws from its own key: the stored state is not advanced
    assert model.non_trainable_variables[0].numpy().tolist() == [4, 0]


# -- files --------------------------------------------------------------------------------------
def test_files_hold_no_seed_state_and_keras_s_file_loads(tmp_path):
    model = dropout_model(kilnet)
    model.save(tmp_path / "ours.keras")
    with zipfile.ZipFile(tmp_path / "ours.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    names = []
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        weights.visit(names.append)
    assert names and not any("seed" in name for name in names)
    model.save(tmp_path / "ours.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "ours.kilnet")
    assert not any("seed" in name for name, _, _ in kilnet.saving.weight_entries(loaded))
    assert [(v.name, v.shape) for v in loaded.non_trainable_variables] == [
        ("seed_generator_state", (2,))]

    theirs = dropout_model(keras)
    theirs.save(tmp_path / "theirs.keras")
    ours = kilnet.models.load_model(tmp_path / "theirs.keras")
    x, _ = small_problem()
    np.testing.assert_allclose(np.asarray(ours.predict(x, verbose=0)),
                               np.asarray(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6)
    assert len(ours.non_trainable_variables) == len(theirs.non_trainable_variables) == 1
