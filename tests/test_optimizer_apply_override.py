"""An optimizer subclass overriding apply(grads, trainable_variables) changes training as in
Keras (keras.io's gradient centralization, ported to Keras 3's apply): fit, a model's own JAX
train_step through stateless_apply, and an eager loop of your own all pass the gradients
through your apply once. A Keras-style update_step optimizer is refused with the reason."""

import os

import jax
import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402


def centralizing(base):
    """keras.io's gradient centralization: each gradient of rank > 1 less its mean over all
    axes but the last, as an apply() override of `base` (a kilnet or Keras optimizer class)."""

    class Centralized(base):
        calls = 0

        def apply(self, grads, trainable_variables=None):
            type(self).calls += 1
            centred = []
            for g in grads:
                if len(g.shape) > 1:
                    g = g - g.mean(axis=tuple(range(len(g.shape) - 1)), keepdims=True)
                centred.append(g)
            return super().apply(centred, trainable_variables)

    return Centralized


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (x @ rng.normal(size=(6, 1)) + 0.3).astype("float32")
    return x, y


def model_of(ns, seed_weights=None):
    model = ns.Sequential([ns.Input((6,)), ns.layers.Dense(5, activation="tanh"),
                           ns.layers.Dense(1)])
    if seed_weights is not None:
        model.set_weights(seed_weights)
    return model


def starting_weights():
    model = model_of(kilnet)
    model.build(seed=2)
    return model.get_weights()


@pytest.mark.parametrize("name,kwargs", [
    ("RMSprop", dict(learning_rate=0.01)),
    ("Adam", dict(learning_rate=0.02)),            # kilnet's one-pass CPU update too
    ("SGD", dict(learning_rate=0.05, momentum=0.9, clipnorm=0.5)),
])
def test_fit_passes_gradients_through_your_apply_as_keras(name, kwargs):
    x, y = data()
    start = starting_weights()
    results = {}
    for ns in (kilnet, keras):
        model = model_of(ns, start)
        optimizer = centralizing(getattr(ns.optimizers, name))(**kwargs)
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        results[ns.__name__] = (model.get_weights(), type(optimizer).calls)
    for got, want in zip(results["kilnet"][0], results["keras"][0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert results["kilnet"][1] >= 1   # traced: once per compiled program, as Keras's jit
    plain = model_of(kilnet, start)
    plain.compile(optimizer=getattr(kilnet.optimizers, name)(**kwargs), loss="mse")
    plain.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    assert not np.allclose(plain.get_weights()[0], results["kilnet"][0][0], atol=1e-5)


def test_an_eager_loop_of_your_own_applies_your_apply_once():
    x, y = data()
    start = starting_weights()
    results = {}
    for ns in (kilnet, keras):
        model = model_of(ns, start)
        optimizer = centralizing(ns.optimizers.SGD)(learning_rate=0.1)
        grads = [np.full(w.shape, 0.5, np.float32) + np.arange(w.size, dtype=np.float32)
                 .reshape(w.shape) for w in start]
        optimizer.apply(grads, model.trainable_variables)
        results[ns.__name__] = model.get_weights()
    for got, want in zip(results["kilnet"], results["keras"]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_a_jax_train_step_through_stateless_apply_uses_your_apply():
    x, y = data()
    start = starting_weights()

    def model_with_own_step(ns):
        class Regressor(ns.Model):
            def train_step(self, state, batch):
                trainable, non_trainable, opt_vars, metric_vars = state
                xb, yb = batch

                def loss_fn(trainable):
                    pred, nt = self.stateless_call(trainable, non_trainable, xb)
                    return ns.ops.mean((pred - yb) ** 2), nt

                (loss, non_trainable), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                    trainable)
                trainable, opt_vars = self.optimizer.stateless_apply(opt_vars, grads, trainable)
                return {"loss": loss}, (trainable, non_trainable, opt_vars, metric_vars)

        inputs = ns.Input((6,))
        hidden = ns.layers.Dense(5, activation="tanh")(inputs)
        model = Regressor(inputs, ns.layers.Dense(1)(hidden))
        model.set_weights(start)
        model.compile(optimizer=centralizing(ns.optimizers.SGD)(learning_rate=0.05))
        return model

    results = {}
    for ns in (kilnet, keras):
        model = model_with_own_step(ns)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        results[ns.__name__] = model.get_weights()
    for got, want in zip(results["kilnet"], results["keras"]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_an_apply_that_skips_super_is_refused_with_the_reason():
    class Forgetful(kilnet.optimizers.SGD):
        def apply(self, grads, trainable_variables=None):
            return None

    x, y = data()
    model = model_of(kilnet)
    model.compile(optimizer=Forgetful(0.1), loss="mse")
    with pytest.raises(ValueError, match=r"without calling super\(\).apply"):
        model.fit(x, y, epochs=1, verbose=0)


def test_a_keras_style_update_step_optimizer_is_refused_with_the_reason():
    class PlainSGD(kilnet.optimizers.Optimizer):
        def update_step(self, gradient, variable, learning_rate):
            self.assign_sub(variable, learning_rate * gradient)

    x, y = data()
    model = model_of(kilnet)
    with pytest.raises(NotImplementedError, match="update_step.*not run.*override apply"):
        model.compile(optimizer=PlainSGD(0.1), loss="mse")
        model.fit(x, y, epochs=1, verbose=0)
