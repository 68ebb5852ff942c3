"""Mixed precision (kilnet.mixed_precision, kilnet.loss_scale): dtype policies, autocast, the
float32 loss, loss scaling, against float32 training, Keras 3 and hand computations."""

import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax.numpy as jnp
import numpy as np
import pytest

import kilnet
from kilnet import layers, mixed_precision, optimizers
from kilnet.loss_scale import current_scale


@pytest.fixture(autouse=True)
def float32_afterwards():
    """Every test leaves the global policy as it found it (float32), for the other tests."""
    yield
    mixed_precision.set_global_policy("float32")


# -- policies ---------------------------------------------------------------------------------
def test_policy_names_and_dtypes():
    expected = {"float32": ("float32", "float32"), "mixed_float16": ("float16", "float32"),
                "mixed_bfloat16": ("bfloat16", "float32"), "float16": ("float16", "float16"),
                "bfloat16": ("bfloat16", "bfloat16")}
    for name, (compute, variable) in expected.items():
        policy = mixed_precision.DTypePolicy(name)
        assert (policy.name, policy.compute_dtype, policy.variable_dtype) == (
            name, compute, variable)
        assert repr(policy) == f'<DTypePolicy "{name}">'
        assert mixed_precision.DTypePolicy.from_config(policy.get_config()) == policy
    assert mixed_precision.Policy is mixed_precision.DTypePolicy
    assert kilnet.dtype_policies.DTypePolicy is mixed_precision.DTypePolicy


def test_policy_errors_name_the_argument():
    with pytest.raises(ValueError, match="Received: name='float64'"):
        mixed_precision.DTypePolicy("float64")
    with pytest.raises(TypeError, match="Received: name=3"):
        mixed_precision.DTypePolicy(3)
    with pytest.raises(ValueError, match="Received: policy=3"):
        mixed_precision.set_global_policy(3)
    with pytest.raises(ValueError, match="mixed_bfloat16"):   # 16-bit weights: refused
        mixed_precision.set_global_policy("bfloat16")
    with pytest.raises(ValueError, match="Received: dtype='int8'"):
        layers.Dense(2, dtype="int8")
    with pytest.raises(ValueError, match="Received: dtype='float16'"):
        layers.Dense(2, dtype="float16")
    assert mixed_precision.global_policy().name == "float32"


def test_global_policy_is_the_default_of_new_layers_and_matches_keras_names():
    import keras

    for name in ("set_global_policy", "global_policy", "set_dtype_policy", "dtype_policy",
                 "DTypePolicy", "Policy", "LossScaleOptimizer"):
        assert hasattr(keras.mixed_precision, name)
        target = optimizers if name == "LossScaleOptimizer" else mixed_precision
        assert hasattr(target, name), name
    before = layers.Dense(2)
    mixed_precision.set_dtype_policy("mixed_bfloat16")
    assert mixed_precision.dtype_policy() == mixed_precision.DTypePolicy("mixed_bfloat16")
    after, fixed = layers.Dense(2), layers.Dense(2, dtype="float32")
    assert (before.compute_dtype, after.compute_dtype, fixed.compute_dtype) == (
        "float32", "bfloat16", "float32")
    assert (after.dtype, after.variable_dtype) == ("float32", "float32")
    after.dtype_policy = "mixed_float16"
    assert after.dtype_policy.name == "mixed_float16"


# -- autocast ---------------------------------------------------------------------------------
def test_eager_call_casts_floats_not_integer_ids():
    dense = layers.Dense(3, dtype="mixed_float16")
    y = dense(np.ones((2, 4), np.float32))
    assert y.dtype == jnp.float16 and dense.kernel.value.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(y, np.float32),
                               np.ones((2, 4)) @ dense.kernel.numpy() + dense.bias.numpy(),
                               rtol=2e-3, atol=2e-3)
    embedding = layers.Embedding(10, 4, dtype="mixed_bfloat16")
    out = embedding(np.array([[1, 2, 3]]))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32),
                                  embedding.embeddings.numpy()[[1, 2, 3]].astype(jnp.bfloat16)
                                  .astype(np.float32)[None])


def test_keras_form_layer_weights_cast_unless_autocast_false():
    seen = {}

    class Scale(layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")
            self.v = self.add_weight(shape=(input_shape[-1],), initializer="ones",
                                     autocast=False)

        def call(self, inputs):
            seen["w"], seen["v"] = self.w.value.dtype, self.v.value.dtype
            return inputs * self.w.value

    Scale(dtype="mixed_bfloat16")(np.ones((1, 2), np.float32))
    assert (seen["w"], seen["v"]) == (jnp.bfloat16, jnp.float32)


def _mlp(seed=0):
    inputs = kilnet.Input((12,))
    hidden = layers.Dense(32, activation="relu", name="hidden")(inputs)
    hidden = layers.LayerNormalization(name="norm")(hidden)
    outputs = layers.Dense(3, activation="softmax")(hidden)
    return kilnet.Model(inputs, outputs)


def _convnet():
    inputs = kilnet.Input((10, 10, 2))
    x = layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, activation="softmax")(x)
    return kilnet.Model(inputs, outputs)


def _data(shape, n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + shape).astype(np.float32)
    y = (x.reshape(n, -1)[:, :3].argmax(axis=1)).astype(np.int32)  # learnable labels
    return x, y


def _train(make, policy, shape, **fit):
    mixed_precision.set_global_policy(policy)
    model = make()
    model.compile(optimizer=optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.build((None,) + shape, seed=3)
    x, y = _data(shape)
    history = model.fit(x, y, epochs=2, batch_size=32, seed=5, verbose=0, **fit)
    mixed_precision.set_global_policy("float32")
    return model, history.history["loss"]


# bfloat16 keeps 8 significant bits (relative rounding 2**-9 = 0.2%), float16 11 bits
# (2**-12). Rounding the inputs, weights and activations of three layers and two epochs of
# Adam updates driven by those rounded gradients: we allow 3% of the loss for bfloat16 and
# 1% for float16 (about 15 and 40 times one rounding step), far below the gap between an
# untrained and a trained model here (the loss falls by more than 10%).
TOLERANCE = {"mixed_bfloat16": 3e-2, "mixed_float16": 1e-2}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("make,shape", [(_mlp, (12,)), (_convnet, (10, 10, 2))],
                         ids=["mlp", "convnet"])
def test_training_matches_float32_within_tolerance(policy, make, shape):
    reference, ref_losses = _train(make, "float32", shape)
    model, losses = _train(make, policy, shape)
    assert ref_losses[1] < 0.9 * ref_losses[0]  # it learns, so the comparison means something
    np.testing.assert_allclose(losses, ref_losses, rtol=TOLERANCE[policy])
    assert {str(w.value.dtype) for w in model.weights} == {"float32"}
    assert isinstance(model.optimizer, optimizers.LossScaleOptimizer) == (
        policy == "mixed_float16")
    compute = mixed_precision.DTypePolicy(policy).compute_dtype
    inner_name = "hidden" if make is _mlp else "bn"
    inner = kilnet.Model(model.inputs, model.get_layer(inner_name).output)
    x, _ = _data(shape, n=4)
    assert str(inner.layers[-1].compute_dtype) == compute
    assert inner.get_layer(inner_name).output.dtype == compute
    assert inner(x).dtype == jnp.dtype(compute)   # run eagerly through the sub-model


def test_losses_and_metrics_see_float32_outputs():
    seen = []

    def loss(y_true, y_pred):
        seen.append(y_pred.dtype)
        return jnp.mean(jnp.square(y_true - y_pred), axis=-1)

    mixed_precision.set_global_policy("mixed_bfloat16")
    inputs = kilnet.Input((4,))
    model = kilnet.Model(inputs, layers.Dense(2)(layers.Dense(8)(inputs)))
    assert model.outputs[0].dtype == "bfloat16"
    model.compile(optimizer="sgd", loss=loss)
    x = np.ones((8, 4), np.float32)
    history = model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    assert seen and all(d == jnp.float32 for d in seen)
    assert isinstance(history.history["loss"][0], float)
    assert model.predict(x, verbose=0).dtype == np.float32


def test_same_outputs_as_keras_with_the_same_weights():
    import keras

    x = np.random.default_rng(1).normal(size=(6, 10, 10, 2)).astype(np.float32)
    for policy, tolerance in (("mixed_bfloat16", 3e-2), ("mixed_float16", 4e-3)):
        mixed_precision.set_global_policy(policy)
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = _convnet()
            model.build((None, 10, 10, 2), seed=0)
            reference = keras.Sequential([
                keras.Input((10, 10, 2)), keras.layers.Conv2D(8, 3, activation="relu"),
                keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(2),
                keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
        finally:
            keras.mixed_precision.set_global_policy("float32")
        weights = model.get_weights()
        weights[4] = weights[4] + 0.5   # moving mean/variance away from 0/1: BN does work
        weights[5] = weights[5] * 2.0
        model.set_weights(weights)
        reference.set_weights(weights)
        ours = np.asarray(model(x), np.float32)
        theirs = np.asarray(reference(x), np.float32)
        assert str(reference(x).dtype) == mixed_precision.DTypePolicy(policy).compute_dtype
        np.testing.assert_allclose(ours, theirs, rtol=tolerance, atol=tolerance)


# -- loss scaling -------------------------------------------------------------------------
def test_loss_scale_optimizer_matches_keras_step_by_step():
    import keras

    grads = [np.array([1.0, -2.0], np.float32), np.array([np.inf, 1.0], np.float32),
             np.array([0.5, 0.5], np.float32), np.array([3.0, np.nan], np.float32),
             np.array([-1.0, 4.0], np.float32), np.array([2.0, 2.0], np.float32),
             np.array([1.0, 1.0], np.float32)]
    start = np.array([0.3, -0.7], np.float32)
    variable = keras.Variable(start)
    theirs = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1, momentum=0.9),
                                                 initial_scale=64.0, dynamic_growth_steps=2)
    ours = optimizers.LossScaleOptimizer(optimizers.SGD(0.1, momentum=0.9),
                                         initial_scale=64.0, dynamic_growth_steps=2)
    theirs.build([variable])
    names = [v.name for v in theirs.variables]
    their_vars, their_w = [v.value for v in theirs.variables], [variable.value]
    tx = ours.transformation()
    params = {"w": jnp.asarray(start)}
    state = tx.init(params)
    for g in grads:
        # Keras's JAX trainer applies the optimizer statelessly, as here.
        their_w, their_vars = theirs.stateless_apply(their_vars, [jnp.asarray(g)], their_w)
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = {"w": params["w"] + updates["w"]}
        assert float(current_scale(state)) == float(their_vars[names.index("dynamic_scale")])
        assert int(state.step_counter) == int(their_vars[names.index("step_counter")])
        np.testing.assert_allclose(params["w"], their_w[0], rtol=1e-6)


def test_loss_scale_optimizer_arguments():
    opt = optimizers.LossScaleOptimizer(optimizers.Adam(1e-3))
    assert (opt.initial_scale, opt.dynamic_growth_steps) == (2.0 ** 15, 2000)
    with pytest.raises(ValueError, match="Received: initial_scale=0"):
        optimizers.LossScaleOptimizer(optimizers.Adam(), initial_scale=0)
    with pytest.raises(ValueError, match="Received: dynamic_growth_steps=0"):
        optimizers.LossScaleOptimizer(optimizers.Adam(), dynamic_growth_steps=0)
    with pytest.raises(TypeError, match="Received: inner_optimizer='adam'"):
        optimizers.LossScaleOptimizer("adam")
    with pytest.raises(ValueError, match="dynamic=False"):
        optimizers.LossScaleOptimizer(optimizers.Adam(), dynamic=False)
    with pytest.raises(ValueError, match="clipnorm"):
        optimizers.LossScaleOptimizer(optimizers.Adam(), clipnorm=1.0)


def _float16_model(initial_scale):
    mixed_precision.set_global_policy("mixed_float16")
    inputs = kilnet.Input((4,))
    model = kilnet.Model(inputs, layers.Dense(1)(layers.Dense(8, activation="tanh")(inputs)))
    model.compile(optimizer=optimizers.LossScaleOptimizer(
        optimizers.SGD(0.05), initial_scale=initial_scale), loss="mse")
    model.build((None, 4), seed=0)
    return model


def test_overflowing_steps_are_skipped_with_the_scale_halved_and_fit_goes_on():
    # 2**40 / batch overflows float16 (max 65504) in the backward pass until the scale has
    # been halved down to about 2**15: the first steps are skipped, then training proceeds.
    model = _float16_model(2.0 ** 40)
    before = model.get_weights()
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = x[:, :1] * 0.5
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 8 steps
    assert np.isfinite(history.history["loss"][0])
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)        # every step so far skipped
    assert float(current_scale(model.compiled.state.opt_state)) == 2.0 ** 32
    history = model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0)
    scale = float(current_scale(model.compiled.state.opt_state))
    assert scale < 65504                                # halved until finite
    assert not all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_a_nan_loss_still_stops_fit_under_loss_scaling():
    model = _float16_model(2.0 ** 15)
    assert model.compiled.update_keeps_non_finite(model)
    x = np.ones((16, 4), np.float32)
    y = np.ones((16, 1), np.float32)
    model.compile(optimizer=model.optimizer,
                  loss=lambda t, p: jnp.mean(jnp.log(p - p - 1.0) * t, axis=-1))  # NaN
    with pytest.raises(kilnet.NonFiniteError):
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)


# -- configs and files --------------------------------------------------------------------------
def test_config_carries_the_policy_as_keras_writes_it():
    import keras

    dense = layers.Dense(2, dtype="mixed_bfloat16")
    config = dense.get_config()
    keras_config = keras.layers.Dense(2, dtype="mixed_bfloat16").get_config()
    assert config["dtype"] == keras_config["dtype"]
    assert layers.Dense.from_config(config).dtype_policy.name == "mixed_bfloat16"
    assert layers.Dense(2).get_config()["dtype"] == keras.layers.Dense(2).get_config()["dtype"]
    inputs = kilnet.Input((3,))
    hidden = layers.Dense(4, dtype="mixed_float16")(inputs)
    model = kilnet.Model(inputs, layers.Dense(2)(hidden))
    clone = kilnet.models.model_from_json(model.to_json())
    assert [layer.dtype_policy.name for layer in clone.layers] == [
        layer.dtype_policy.name for layer in model.layers]


def test_kilnet_file_keeps_the_policy(tmp_path):
    mixed_precision.set_global_policy("mixed_bfloat16")
    model = _mlp()
    model.build((None, 12), seed=0)
    mixed_precision.set_global_policy("float32")
    path = tmp_path / "model.kilnet"
    model.save(path)
    loaded = kilnet.saving.load_model(path)
    assert [layer.compute_dtype for layer in loaded.layers][1:] == ["bfloat16"] * 3
    x = np.ones((2, 12), np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x), np.float32),
                                  np.asarray(model(x), np.float32))


def test_keras_file_with_a_mixed_policy_loads(tmp_path):
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        reference = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4),
                                      keras.layers.Dense(2)])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    path = tmp_path / "mixed.keras"
    reference.save(path)
    loaded = kilnet.saving.load_model(path)
    assert [layer.dtype_policy.name for layer in loaded.layers] == ["mixed_bfloat16"] * 2
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(loaded(x), np.float32),
                               np.asarray(reference(x), np.float32), rtol=2e-2, atol=2e-2)


def test_a_loss_scaled_run_saves_and_resumes_with_its_scale(tmp_path):
    """A mixed_float16 model's LossScaleOptimizer (settings, scale and inner state) travels in
    the .kilnet file, so the loaded model continues exactly as the saved one would."""
    model = _float16_model(2.0 ** 40)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = x[:, :1] * 0.5
    model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    path = tmp_path / "scaled.kilnet"
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # saved with its compile configuration, no warning
        model.save(path)
    loaded = kilnet.saving.load_model(path)
    assert type(loaded.compiled.optimizer).__name__ == "LossScaleOptimizer"
    assert loaded.compiled.optimizer.initial_scale == 2.0 ** 40
    assert float(current_scale(loaded.compiled.state.opt_state)) == float(
        current_scale(model.compiled.state.opt_state)) < 2.0 ** 40
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for ours, theirs in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)



def test_loss_scale_optimizer_is_named_where_keras_names_it():
    # keras.mixed_precision.LossScaleOptimizer and keras.optimizers.LossScaleOptimizer
    assert mixed_precision.LossScaleOptimizer is optimizers.LossScaleOptimizer
    wrapped = mixed_precision.LossScaleOptimizer(optimizers.SGD(0.1), initial_scale=8.0)
    assert wrapped.get_config()["initial_scale"] == 8.0
