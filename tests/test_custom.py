"""Keras's ways of writing your own: Layer subclasses (build / add_weight / call with
kilnet.ops), Model subclasses with call(), add_loss, and freezing with trainable = False."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import layers, ops
from tests.conftest import check_grad
from _training import assert_fit_lowers_loss


class Linear(layers.Layer):
    """y = tanh(x @ w + b) * scale, the way the Keras guides write a layer."""

    def __init__(self, units=4, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units),
                                 initializer="glorot_uniform", name="w")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="b")
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, inputs):
        return ops.tanh(ops.matmul(inputs, self.w) + self.b) * self.scale

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_matches_numpy_and_finite_difference_gradients():
    layer = Linear(3)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y = np.asarray(layer(x))  # builds on first call
    w, b, scale = layer.get_weights()
    assert [v.name for v in layer.weights] == ["w", "b", "scale"]
    np.testing.assert_allclose(y, np.tanh(x @ w + b) * scale, rtol=1e-5, atol=1e-6)
    params = layer.params_tree()
    assert sorted(params) == ["b", "scale", "w"]
    r = np.random.default_rng(1).normal(size=(5, 3))

    def objective(w_, b_, s_, x_):
        out, _ = layer.apply({"w": w_, "b": b_, "scale": s_}, {}, x_)
        return jnp.sum(out * r)

    check_grad(objective, w, b, np.asarray(scale), x)


def test_custom_layer_in_a_functional_model_trains():
    rng = np.random.default_rng(0)
    x = rng.random((64, 4)).astype(np.float32)
    y = (x.sum(1) > 2).astype(np.float32)[:, None]
    inputs = kilnet.Input(shape=(4,))
    outputs = layers.Dense(1, activation="sigmoid")(Linear(6, name="lin")(inputs))
    model = kilnet.Model(inputs, outputs)
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="binary_crossentropy",
                  metrics=["accuracy"])
    # Weights from a seed, not the OS, and the loss judged on the whole data before and after:
    # with Adam's default rate the epochs' mean losses fell by 1.4-7% only (10 weight draws);
    # here after/before is 0.42-0.62 (11 weight and data draws).
    assert_fit_lowers_loss(model, x, y, 0.75, epochs=20, batch_size=16, seed=0)
    lin = model.get_layer("lin")
    w = lin.w.numpy()  # reads the trained value from the training state
    assert w.shape == (4, 6) and np.array_equal(w, model.get_weights()[0])


class Sampler(layers.Layer):
    """Uses a SeedGenerator and a non-trainable counter updated with assign."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = kilnet.random.SeedGenerator(3)

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                     name="calls")

    def call(self, inputs, training=None):
        self.calls.assign(self.calls + 1.0)
        if training:
            return inputs + kilnet.random.normal(ops.shape(inputs), seed=self.seed_generator)
        return inputs


def test_state_assigned_in_call_and_randomness_inside_the_compiled_step():
    inputs = kilnet.Input(shape=(2,))
    sampler = Sampler(name="sampler")
    model = kilnet.Model(inputs, layers.Dense(1)(sampler(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 2), np.float32), np.zeros((8, 1), np.float32)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert float(sampler.calls.numpy()) == 6.0  # 3 epochs x 2 steps, counted on the device
    assert [v.name for v in model.non_trainable_weights] == ["calls"]
    out1, out2 = model.predict(x, verbose=0), model.predict(x, verbose=0)
    np.testing.assert_array_equal(out1, out2)  # no noise at inference


class MLP(kilnet.Model):
    def __init__(self, hidden=8, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(hidden, activation="relu")
        self.dropout = layers.Dropout(0.1)
        self.out = layers.Dense(3, activation="softmax")

    def call(self, inputs, training=None):
        return self.out(self.dropout(self.hidden(inputs), training=training))


def test_subclassed_model_trains_predicts_and_round_trips_its_weights():
    rng = np.random.default_rng(0)
    x = rng.random((60, 5)).astype(np.float32)
    y = (x[:, 0] * 3).astype(int) % 3
    model = MLP()
    model.build((5,), seed=1)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    # The loss judged with the dropout off (evaluate) before and after: with Adam's default
    # rate the epochs' mean training losses under dropout fell by 1.5-8% only (10 draws);
    # here after/before is 0.48-0.77 (11 weight and data draws).
    assert_fit_lowers_loss(model, x, y, 0.9, epochs=16, batch_size=12, seed=1)
    assert [l.name for l in model.layers] == ["dense", "dropout", "dense_1"]
    assert model.output_shape == (None, 3)
    k1, b1, k2, b2 = model.get_weights()
    expected = np.maximum(x @ k1 + b1, 0) @ k2 + b2
    expected = np.exp(expected) / np.exp(expected).sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
    other = MLP()
    other.build((5,))
    other.set_weights(model.get_weights())
    np.testing.assert_array_equal(other.predict(x, verbose=0), model.predict(x, verbose=0))


# -- add_loss --------------------------------------------------------------------------------------
class Penalized(layers.Layer):
    def __init__(self, strength=0.0, **kwargs):
        super().__init__(**kwargs)
        self.strength = strength

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], 1), initializer="ones", name="w")

    def call(self, inputs):
        if self.strength:
            self.add_loss(self.strength * 0.5 * ops.sum(ops.square(self.w)))
        return ops.matmul(inputs, self.w)


def test_add_loss_changes_the_gradient_by_exactly_the_added_term():
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 3)).astype(np.float32), rng.random((16, 1)).astype(np.float32)

    def one_step(strength):
        inputs = kilnet.Input(shape=(3,))
        layer = Penalized(strength)
        model = kilnet.Model(inputs, layer(inputs))
        model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="mse")
        history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        return layer.w.numpy(), history.history["loss"][0]

    w_plain, loss_plain = one_step(0.0)
    w_pen, loss_pen = one_step(2.0)
    # d/dw [2 * 0.5 * sum(w^2)] = 2 w, with w = 1 before the step: the step moves w by -0.1 * 2.
    np.testing.assert_allclose(w_pen - w_plain, np.full((3, 1), -0.2), rtol=1e-5)
    np.testing.assert_allclose(loss_pen - loss_plain, 2.0 * 0.5 * 3.0, rtol=1e-5)


def test_add_loss_called_eagerly_is_kept_in_layer_losses():
    layer = Penalized(1.0)
    layer(np.ones((2, 3), np.float32))
    assert len(layer.losses) == 1 and float(layer.losses[0]) == pytest.approx(1.5)


# -- freezing ------------------------------------------------------------------------------------
def frozen_first_model():
    inputs = kilnet.Input(shape=(4,))
    base = layers.Dense(6, activation="relu", name="base")
    norm = layers.BatchNormalization(name="norm")
    head = layers.Dense(2, activation="softmax", name="head")
    return kilnet.Model(inputs, head(norm(base(inputs)))), base, norm, head


def test_frozen_weights_stay_bitwise_unchanged_while_the_rest_train():
    rng = np.random.default_rng(0)
    x, y = rng.random((48, 4)).astype(np.float32), rng.integers(0, 2, 48)
    model, base, norm, head = frozen_first_model()
    base.trainable = False
    norm.trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    base_before, norm_before = base.get_weights(), norm.get_weights()
    head_before = head.get_weights()
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    for before, after in zip(base_before + norm_before, base.get_weights() + norm.get_weights()):
        np.testing.assert_array_equal(before, after)  # frozen BatchNorm runs in inference mode
    assert not np.array_equal(head_before[0], head.get_weights()[0])
    assert model.trainable_count() == 6 * 2 + 2
    assert [v.name for v in model.trainable_weights] == ["kernel", "bias"]
    # No optimizer state for frozen weights: Adam keeps two moments for the head's 2 arrays.
    opt_leaves = [a for a in jax.tree.leaves(model.compiled.state.opt_state)
                  if np.ndim(a) > 0]
    assert sorted(np.shape(a) for a in opt_leaves) == sorted([(6, 2), (2,)] * 2)
    lines = []
    model.summary(print_fn=lines.append)
    # frozen: base 4*6 + 6, and all of BatchNorm's 4 x 6
    assert "Non-trainable params: 54 " in "\n".join(lines)
    assert model.count_params() - model.trainable_count() == 54


def test_changing_trainable_takes_effect_at_the_next_compile():
    rng = np.random.default_rng(1)
    x, y = rng.random((32, 4)).astype(np.float32), rng.integers(0, 2, 32)
    model, base, _, _ = frozen_first_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    base.trainable = False
    before = base.get_weights()
    model.fit(x, y, epochs=1, verbose=0)  # still compiled with base trainable
    assert not np.array_equal(before[0], base.get_weights()[0])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    before = base.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(before[0], base.get_weights()[0])


def test_freezing_a_nested_model_freezes_all_its_layers():
    e_in = kilnet.Input(shape=(4,))
    encoder = kilnet.Model(e_in, layers.Dense(3)(layers.Dense(5)(e_in)), name="encoder")
    inputs = kilnet.Input(shape=(4,))
    model = kilnet.Model(inputs, layers.Dense(1)(encoder(inputs)))
    model.build(seed=0)
    encoder.trainable = False
    assert all(not layer.trainable for layer in encoder.layers[1:])  # after its InputLayer
    assert len(model.trainable_weights) == 2
    assert len(model.non_trainable_weights) == 4
    model.compile(optimizer="adam", loss="mse")
    before = encoder.get_weights()
    model.fit(np.ones((8, 4)), np.zeros((8, 1)), epochs=2, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, encoder.get_weights()))


# -- compute_loss --------------------------------------------------------------------------------
class HalfMSE(kilnet.Model):
    """Overrides compute_loss: 0.5 * mean squared error, weighted by the real samples."""

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        per_sample = 0.5 * ops.mean(ops.square(y - y_pred), axis=-1)
        return ops.sum(per_sample * sample_weight) / ops.sum(sample_weight)


def test_an_overridden_compute_loss_is_the_trained_and_logged_loss():
    rng = np.random.default_rng(3)
    x, y = rng.random((20, 3)).astype(np.float32), rng.random((20, 2)).astype(np.float32)

    def make(cls):
        inputs = kilnet.Input(shape=(3,))
        model = cls(inputs, layers.Dense(2, activation="sigmoid")(inputs))
        model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="mse",
                      metrics=["mae"])
        model.build(seed=0)
        return model

    custom, plain = make(HalfMSE), make(kilnet.Model)
    logs = custom.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)  # 8 + 8 + 4 padded
    pred = custom.predict(x, verbose=0)
    assert logs["loss"] == pytest.approx(0.5 * np.mean((pred - y) ** 2), rel=1e-5)
    assert logs["mae"] == pytest.approx(np.mean(np.abs(pred - y)), rel=1e-5)
    # Half the loss, half the gradient: one SGD step moves the weights half as far.
    w0 = custom.get_weights()[0]
    custom.fit(x, y, epochs=1, batch_size=20, verbose=0)
    plain.fit(x, y, epochs=1, batch_size=20, verbose=0)
    np.testing.assert_allclose(custom.get_weights()[0] - w0,
                               0.5 * (plain.get_weights()[0] - w0), rtol=1e-4, atol=1e-7)


# -- a model's own train_step, in Keras's JAX form ---------------------------------------------
class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * eps, eps from a SeedGenerator (the Keras VAE example)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = kilnet.random.SeedGenerator(1337)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        eps = kilnet.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps


class VAE(kilnet.Model):
    """The structure of Keras's "customizing fit() with JAX" guide: compute_loss_and_updates
    with stateless_call, optimizer.stateless_apply, metrics updated statelessly."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = layers.Dense(16, activation="relu")
        self.z_mean = layers.Dense(2)
        self.z_log_var = layers.Dense(2)
        self.sampling = Sampling()
        self.decode_hidden = layers.Dense(16, activation="relu")
        self.decoded = layers.Dense(8, activation="sigmoid")
        self.loss_tracker = kilnet.metrics.Mean(name="loss")
        self.kl_tracker = kilnet.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.kl_tracker]

    def call(self, inputs, training=None):
        h = self.hidden(inputs)
        z_mean, z_log_var = self.z_mean(h), self.z_log_var(h)
        z = self.sampling([z_mean, z_log_var])
        return [self.decoded(self.decode_hidden(z)), z_mean, z_log_var]

    def compute_loss_and_updates(self, trainable, non_trainable, x, training=False):
        (recon, z_mean, z_log_var), non_trainable = self.stateless_call(
            trainable, non_trainable, x, training=training)
        reconstruction = ops.mean(ops.sum(ops.square(x - recon), axis=1))
        kl = ops.mean(-0.5 * ops.sum(1 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var),
                                     axis=1))
        return reconstruction + kl, (kl, non_trainable)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        x = data   # fit(x) without labels: the batch itself, as Keras hands it
        grad_fn = jax.value_and_grad(self.compute_loss_and_updates, has_aux=True)
        (loss, (kl, non_trainable)), grads = grad_fn(trainable, non_trainable, x, training=True)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        loss_vars = self.loss_tracker.stateless_update_state(metric_vars[:2], loss)
        kl_vars = self.kl_tracker.stateless_update_state(metric_vars[2:], kl)
        logs = {"loss": self.loss_tracker.stateless_result(loss_vars),
                "kl_loss": self.kl_tracker.stateless_result(kl_vars)}
        return logs, (trainable, non_trainable, optimizer_vars, loss_vars + kl_vars)


def test_a_custom_train_step_trains_a_vae_inside_the_compiled_loop():
    rng = np.random.default_rng(0)
    centers = rng.random((2, 8))
    x = (centers[rng.integers(0, 2, 96)] + 0.05 * rng.normal(size=(96, 8))).astype(np.float32)
    x = np.clip(x, 0, 1)
    vae = VAE()
    vae.build((8,), seed=0)
    vae.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01))

    def inference_loss():  # reconstruction + KL on the whole data, one sampling-noise draw
        recon, z_mean, z_log_var = vae.predict(x, verbose=0)
        kl = -0.5 * np.sum(1 + z_log_var - z_mean ** 2 - np.exp(z_log_var), axis=1)
        return np.mean(np.sum((x - recon) ** 2, axis=1)) + np.mean(kl)

    before = inference_loss()
    history = vae.fit(x, epochs=15, batch_size=32, verbose=0, seed=0)
    assert list(history.history) == ["kl_loss", "loss"]   # by name, as Keras's
    losses = history.history["loss"]
    assert losses == sorted(losses, reverse=True)[:1] + losses[1:]
    # Judged from the untrained model on the inference loss: the last epoch's mean against the
    # first's reached 0.6965 < 0.7 for some data and weight draws, a plateau that more epochs
    # do not lower; the inference loss after/before ranged 0.16-0.74 over 22 draws.
    after = inference_loss()
    assert after < 0.85 * before, (before, after)
    # The logged loss is the tracker's mean over the epoch's steps: recompute the last epoch's
    # reconstruction + KL at inference (no sampling noise differs, so only roughly equal).
    recon, z_mean, z_log_var = vae.predict(x, verbose=0)
    assert recon.shape == (96, 8) and z_mean.shape == (96, 2)
    rec = np.mean(np.sum((x - recon) ** 2, axis=1))
    assert rec < losses[0]
    # The weights trained in the compiled step are the model's: same as get_weights.
    assert np.array_equal(vae.hidden.get_weights()[0], vae.get_weights()[0])


def test_train_step_sees_the_sample_mask_and_the_step_key():
    seen = {}

    class Probe(kilnet.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(1)
            self.count = kilnet.metrics.Mean(name="rows")

        @property
        def metrics(self):
            return [self.count]

        def call(self, inputs, training=None):
            return self.dense(inputs)

        def train_step(self, state, data):
            trainable, non_trainable, optimizer_vars, metric_vars = state
            x, y = data
            # A per-row value through the Mean: padding rows of the last batch weigh 0.
            rows = self.count.stateless_update_state(metric_vars, ops.ones((x.shape[0],)))
            seen["traced"] = True
            return {"rows": self.count.stateless_result(rows),
                    "real": rows[1]}, (trainable, non_trainable, optimizer_vars, rows)

    model = Probe()
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(np.ones((10, 3)), np.zeros((10, 1)), batch_size=4, epochs=1,
                        verbose=0)
    assert seen["traced"]
    assert history.history["real"] == [10.0]  # 4 + 4 + 2 real rows of 12 positions
    assert history.history["rows"] == [1.0]


def test_built_in_layers_expose_their_weights_as_attributes():
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Dense(2),
                               layers.BatchNormalization()])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), batch_size=8, verbose=0)
    dense, norm = model.layers
    assert dense.kernel.shape == (3, 2) and dense.bias.trainable
    np.testing.assert_array_equal(dense.kernel.numpy(), model.get_weights()[0])
    assert not norm.moving_mean.trainable
    np.testing.assert_array_equal(norm.moving_mean.numpy(), model.get_weights()[4])
    assert norm.scale is True  # the setting, not the weight (named gamma)


# -- eager calls that assign (Keras's subclassing guide: ComputeSum) ---------------------------

def _compute_sum(lib):
    class ComputeSum(lib.layers.Layer):
        def __init__(self, input_dim):
            super().__init__()
            self.total = self.add_weight(initializer="zeros", shape=(input_dim,),
                                         trainable=False)

        def call(self, inputs):
            self.total.assign_add(lib.ops.sum(inputs, axis=0))
            return self.total   # a Variable returned: its current value

    return ComputeSum(2)


def test_an_eager_call_keeps_what_it_assigns_and_may_return_a_variable_as_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    x = np.ones((2, 2), np.float32)
    ours, theirs = _compute_sum(kilnet), _compute_sum(keras)
    for _ in range(2):
        mine, keras_y = ours(x), theirs(x)
        # the guide prints y.numpy(): the eager call returns the Variable itself, as Keras's
        assert mine is ours.total and type(keras_y).__name__ == "Variable"
        np.testing.assert_array_equal(mine.numpy(), keras_y.numpy())
    np.testing.assert_array_equal(np.asarray(ours.total.value), [4.0, 4.0])
    assert len(ours.non_trainable_weights) == 1 and not ours.trainable_weights


def test_an_eager_inference_call_leaves_batch_norm_statistics():
    bn = layers.BatchNormalization()
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(16, 3)).astype(np.float32)
    bn(x)   # builds; inference: statistics unchanged
    np.testing.assert_array_equal(np.asarray(bn.moving_mean.value), np.zeros(3))
    bn(x, training=True)
    assert np.all(np.asarray(bn.moving_mean.value) > 0.01)


# -- a model whose only loss is add_loss (Keras's subclassing guide: compile(optimizer)) ----------

def test_compile_without_a_loss_trains_on_add_loss_terms_as_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")

    def model_of(lib):
        class ActivityRegularization(lib.layers.Layer):
            def call(self, inputs):
                self.add_loss(0.5 * lib.ops.mean(lib.ops.square(inputs)))
                return inputs

        inputs = lib.Input(shape=(3,))
        outputs = ActivityRegularization()(lib.layers.Dense(2)(inputs))
        model = lib.Model(inputs, outputs)
        model.compile(optimizer=lib.optimizers.SGD(0.1))
        return model

    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    ours, theirs = model_of(kilnet), model_of(keras)
    ours.set_weights(theirs.get_weights())
    history = ours.fit(x, epochs=2, batch_size=8, verbose=0).history["loss"]
    expected = theirs.fit(x, epochs=2, batch_size=8, verbose=0).history["loss"]
    np.testing.assert_allclose(history, expected, rtol=1e-5)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-5, atol=1e-6)


class _OwnMSE(kilnet.Model):
    """Keras's JAX guide's train_step and test_step with a Loss object."""

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        x, y = data

        def loss_of(weights):
            y_pred, _ = self.stateless_call(weights, non_trainable, x, training=True)
            return kilnet.losses.MeanSquaredError()(y, y_pred)

        loss, grads = jax.value_and_grad(loss_of)(trainable)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        return {"loss": loss}, (trainable, non_trainable, optimizer_vars, metric_vars)

    def test_step(self, state, data):
        trainable, non_trainable, metric_vars = state
        x, y = data
        y_pred, _ = self.stateless_call(trainable, non_trainable, x, training=False)
        return {"mse": kilnet.losses.MeanSquaredError()(y, y_pred)}, state


def test_a_custom_train_step_gets_the_labels_when_compile_has_no_loss():
    """Keras's JAX guide ("going lower-level") compiles with an optimizer only and computes
    its loss from y in train_step: y must reach the step. One full-batch SGD step of a zero
    Dense(1) on MSE, against the gradient by hand."""

    inputs = kilnet.Input((3,))
    model = _OwnMSE(inputs, layers.Dense(1, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1))
    x = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(float(np.mean(y ** 2)), rel=1e-5)
    kernel, bias = model.get_weights()
    np.testing.assert_allclose(kernel, 0.1 * 2 / 8 * x.T @ y, rtol=1e-5)
    np.testing.assert_allclose(bias, [0.1 * 2 / 8 * y.sum()], rtol=1e-5)


def test_a_loss_object_in_a_custom_step_leaves_out_the_padding_of_the_last_batch():
    """40 samples in batches of 32: kilnet pads the last batch to 32 rows; a Loss called in
    the model's own step averages over its 8 real rows, as Keras's shorter last batch does.
    Two SGD steps of a zero Dense(1) against the updates by hand."""
    inputs = kilnet.Input((1,))
    model = _OwnMSE(inputs, layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1))
    x = (np.arange(40, dtype=np.float32) / 40)[:, None]
    y = np.ones((40, 1), np.float32)
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    w = 0.0
    for rows in (slice(0, 32), slice(32, 40)):
        xb, yb = x[rows, 0].astype(np.float64), y[rows, 0]
        w -= 0.1 * np.mean(2 * xb * (w * xb - yb))
    assert model.get_weights()[0][0, 0] == pytest.approx(w, rel=1e-5)
    # evaluate reports the last batch's logs: its 8 real rows only
    logs = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)
    assert logs["mse"] == pytest.approx(np.mean((w * x[32:, 0] - 1.0) ** 2), rel=1e-5)


class _GuideStep(kilnet.Model):
    """Keras's JAX guide's train_step: stateless_compute_loss, then every metric of
    model.metrics updated from its slice of metrics_variables."""

    def compute_loss_and_updates(self, trainable, non_trainable, metric_vars, x, y):
        y_pred, non_trainable = self.stateless_call(trainable, non_trainable, x, training=True)
        loss, (trainable, non_trainable, metric_vars) = self.stateless_compute_loss(
            trainable, non_trainable, metric_vars, x=x, y=y, y_pred=y_pred, training=True)
        return loss, (y_pred, non_trainable, metric_vars)

    def train_step(self, state, data):
        trainable, non_trainable, optimizer_vars, metric_vars = state
        x, y = data
        (loss, (y_pred, non_trainable, metric_vars)), grads = jax.value_and_grad(
            self.compute_loss_and_updates, has_aux=True)(trainable, non_trainable,
                                                         metric_vars, x, y)
        trainable, optimizer_vars = self.optimizer.stateless_apply(optimizer_vars, grads,
                                                                   trainable)
        new_vars, logs = [], {}
        for metric in self.metrics:
            own = metric_vars[len(new_vars):len(new_vars) + len(metric.variables)]
            own = (metric.stateless_update_state(own, loss) if metric.name == "loss"
                   else metric.stateless_update_state(own, y, y_pred))
            logs[metric.name] = metric.stateless_result(own)
            new_vars += own
        return logs, (trainable, non_trainable, optimizer_vars, new_vars)


def test_the_jax_guides_stateless_compute_loss_trains_as_the_built_in_step():
    def make(cls):
        inputs = kilnet.Input((3,))
        model = cls(inputs, layers.Dense(1)(inputs))
        model.compile(optimizer=kilnet.optimizers.SGD(learning_rate=0.1), loss="mse",
                      metrics=["mae"])
        return model

    guide, built_in = make(_GuideStep), make(kilnet.Model)
    built_in.set_weights(guide.get_weights())
    assert len(guide.metrics_variables) == sum(len(m.variables) for m in guide.metrics) > 0
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    ours = guide.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    theirs = built_in.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    for mine, reference in zip(guide.get_weights(), built_in.get_weights()):
        np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-6)
    # The guide feeds its loss tracker one value per batch (an unweighted mean of batches, as
    # in Keras), fit's own tracker weighs each batch by its rows; the compiled metric counts
    # real rows both ways.
    np.testing.assert_allclose(ours["mae"], theirs["mae"], rtol=1e-5)


class Product(layers.Layer):
    """The VAE's Sampling pattern: a layer of yours whose call unpacks a tuple of tensors."""

    def call(self, inputs):
        first, second = inputs
        return first * second


def test_a_layer_of_yours_takes_a_tuple_of_tensors_in_a_functional_model():
    inputs = kilnet.Input(shape=(4,))
    first, second = layers.Dense(2)(inputs), layers.Dense(2)(inputs)
    product = Product()((first, second))   # Sampling()((z_mean, z_log_var)) in Keras's VAE
    assert product.shape == (None, 2)
    model = kilnet.Model(inputs, product)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    k1, b1, k2, b2 = model.get_weights()
    expected = (x @ k1 + b1) * (x @ k2 + b2)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((3, 2), np.float32), epochs=1, verbose=0)


# -- weights made in __init__ (Keras's subclassing guide: Linear(units, input_dim)) ----------------

def _init_weight_layers(lib):
    class Linear(lib.layers.Layer):
        def __init__(self, units=32, input_dim=32):
            super().__init__()
            self.w = self.add_weight(shape=(input_dim, units), initializer="random_normal",
                                     trainable=True)
            self.b = self.add_weight(shape=(units,), initializer="zeros", trainable=True)

        def call(self, inputs):
            return lib.ops.matmul(inputs, self.w) + self.b

    class ComputeSum(lib.layers.Layer):
        def __init__(self, input_dim):
            super().__init__()
            self.total = self.add_weight(initializer="zeros", shape=(input_dim,),
                                         trainable=False)

        def call(self, inputs):
            self.total.assign_add(lib.ops.sum(inputs, axis=0))
            return inputs + self.total

    return Linear, ComputeSum


def test_weights_made_in_init_work_in_sequential_and_functional_models_as_keras():
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    y = np.random.default_rng(2).normal(size=(8, 4)).astype(np.float32)
    results = {}
    for lib in (keras, kilnet):
        linear_cls, sum_cls = _init_weight_layers(lib)
        linear = linear_cls(4, 3)
        linear.set_weights([np.full((3, 4), 0.3, np.float32), np.zeros(4, np.float32)])
        model = lib.Sequential([lib.Input((3,)), linear])
        assert [tuple(w.shape) for w in model.weights] == [(3, 4), (4,)]
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        losses = model.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0)
        inputs = lib.Input((3,))
        summed = lib.Model(inputs, sum_cls(3)(inputs))
        results[lib] = (losses.history["loss"], model.get_weights(),
                        summed.predict(x[:2], verbose=0))
    np.testing.assert_allclose(results[kilnet][0], results[keras][0], rtol=1e-5)
    for mine, theirs in zip(results[kilnet][1], results[keras][1]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results[kilnet][2], results[keras][2], rtol=1e-6)
