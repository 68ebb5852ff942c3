"""Sequential: structure, parameter counts and summary, weights in Keras's order, errors."""

from __future__ import annotations

import numpy as np
import pytest

import kilnet
from kilnet import layers


def rng(seed=0):
    return np.random.default_rng(seed)


def seed_mlp():
    return kilnet.Sequential([
        layers.Flatten(input_shape=(28, 28)),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def small_convnet():
    return kilnet.Sequential([
        kilnet.Input(shape=(8, 8, 1)),
        layers.Conv2D(4, 3, activation="relu"),     # 3*3*1*4 + 4 = 40
        layers.BatchNormalization(),                # 4 gamma + 4 beta, 4 + 4 moving stats
        layers.MaxPooling2D(),                      # (3, 3, 4)
        layers.Flatten(),                           # 36
        layers.Dense(10, activation="softmax"),     # 36*10 + 10 = 370
    ])


def summary_text(model):
    lines = []
    model.summary(print_fn=lines.append)
    return "\n".join(lines)


def test_seed_mlp_parameter_count_and_summary():
    model = seed_mlp()
    model.build(seed=0)
    assert model.count_params() == 101_770
    assert model.trainable_count() == 101_770
    text = summary_text(model)
    assert "Total params: 101,770 (397.54 KB)" in text
    assert "Trainable params: 101,770 (397.54 KB)" in text
    assert "Non-trainable params: 0" in text
    for name, count in (("flatten", "0"), ("dense", "100,480"), ("dense_1", "1,290")):
        assert any(line.count(name + " (") and line.rstrip(" │|").endswith(count)
                   for line in text.splitlines()), (name, text)
    assert "(None, 784)" in text and "(None, 128)" in text and "(None, 10)" in text


def test_convnet_with_batchnorm_counts_non_trainable_params():
    model = small_convnet()
    model.build(seed=0)
    assert model.output_shape == (None, 10)
    assert model.count_params() == 426
    assert model.trainable_count() == 418
    text = summary_text(model)
    assert "Total params: 426" in text
    assert "Trainable params: 418" in text
    assert "Non-trainable params: 8" in text


def test_summary_of_an_unbuilt_model():
    model = kilnet.Sequential([layers.Dense(3)])
    assert not model.built
    text = summary_text(model)
    assert "not built yet" in text and "Total params" not in text
    assert any("dense (Dense)" in line and "0 (unbuilt)" in line and "?" in line
               for line in text.splitlines()), text
    with pytest.raises(ValueError, match="no weights yet"):
        model.count_params()


def test_get_weights_in_keras_order():
    model = small_convnet()
    model.build(seed=0)
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 3, 1, 4), (4,),                 # conv kernel, bias
                      (4,), (4,), (4,), (4,),             # gamma, beta, moving mean, variance
                      (36, 10), (10,)]
    assert all(w.dtype == np.float32 for w in model.get_weights())
    gamma, beta, mean, var = model.get_weights()[2:6]
    np.testing.assert_array_equal(gamma, 1)
    np.testing.assert_array_equal(beta, 0)
    np.testing.assert_array_equal(mean, 0)
    np.testing.assert_array_equal(var, 1)


def test_set_weights_round_trip_and_forward_pass():
    model = kilnet.Sequential([layers.Input(shape=(4,)), layers.Dense(3, activation="tanh"),
                               layers.Dense(2)])
    model.build(seed=0)
    new = [rng(i).normal(size=w.shape).astype(np.float32)
           for i, w in enumerate(model.get_weights())]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_array_equal(a, b)
    x = rng(9).normal(size=(5, 4)).astype(np.float32)
    expected = np.tanh(x @ new[0] + new[1]) @ new[2] + new[3]
    np.testing.assert_allclose(np.asarray(model(x)), expected, rtol=1e-5, atol=1e-6)


def test_set_weights_after_compile_reaches_the_compiled_state():
    model = kilnet.Sequential([layers.Input(shape=(4,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    new = [np.ones((4, 2), np.float32), np.float32([1.0, -1.0])]
    model.set_weights(new)
    x = rng().normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ new[0] + new[1], rtol=1e-6)
    np.testing.assert_array_equal(model.get_weights()[0], new[0])


def test_set_weights_errors():
    model = seed_mlp()
    model.build(seed=0)
    weights = model.get_weights()
    with pytest.raises(ValueError, match="expected a list of 4 arrays.*Received: 3 arrays"):
        model.set_weights(weights[:3])
    wrong = list(weights)
    wrong[2] = np.zeros((10, 128), np.float32)
    with pytest.raises(ValueError, match=r"dense_1/kernel expects shape \(128, 10\).*"
                                         r"Received: shape \(10, 128\)"):
        model.set_weights(wrong)


@pytest.mark.parametrize("library", ["kilnet", "keras"])
def test_an_unbuilt_sequential_has_no_weights_as_keras(library):
    """keras.io's scripts read get_weights() of a Sequential that fit builds later: [] in
    both; counting its parameters is refused in both."""
    lib = kilnet if library == "kilnet" else pytest.importorskip("keras")
    model = lib.Sequential([lib.layers.Dense(2)])
    assert model.get_weights() == []
    assert model.weights == model.trainable_weights == model.non_trainable_weights == []
    with pytest.raises(ValueError, match="build"):
        model.count_params()
    assert not model.built


def test_seeded_builds_are_reproducible():
    a, b, c = seed_mlp(), seed_mlp(), seed_mlp()
    a.build(seed=3)
    b.build(seed=3)
    c.build(seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    kilnet.utils.set_random_seed(11)
    first = [seed_mlp(), seed_mlp()]
    for m in first:
        m.build()
    kilnet.utils.set_random_seed(11)
    second = [seed_mlp(), seed_mlp()]
    for m in second:
        m.build()
    for m1, m2 in zip(first, second):
        assert all(np.array_equal(x, y) for x, y in zip(m1.get_weights(), m2.get_weights()))
    assert not np.array_equal(first[0].get_weights()[0], first[1].get_weights()[0])


def test_layer_names_are_unique_and_keras_like():
    model = kilnet.Sequential([layers.Input(shape=(2, 2, 1)), layers.Conv2D(1, 1),
                               layers.Conv2D(1, 1), layers.Flatten(),
                               layers.Dense(2, name="head")])
    assert [layer.name for layer in model.layers] == ["conv2d", "conv2d_1", "flatten", "head"]
    config = model.get_config()
    assert config["input_shape"] == [2, 2, 1]
    assert [entry["class_name"] for entry in config["layers"]] == [
        "Conv2D", "Conv2D", "Flatten", "Dense"]


def test_structure_errors():
    with pytest.raises(TypeError, match="Sequential takes kilnet layers"):
        kilnet.Sequential(["dense"])
    with pytest.raises(ValueError, match="must be the first element"):
        kilnet.Sequential([layers.Dense(2), kilnet.Input(shape=(3,))])
    with pytest.raises(ValueError, match="only the first layer may declare"):
        kilnet.Sequential([layers.Dense(2, input_shape=(3,)), layers.Dense(2, input_shape=(2,))])
    with pytest.raises(ValueError, match="Two layers are named 'x'"):
        kilnet.Sequential([layers.Dense(2, name="x"), layers.Dense(2, name="x")])
    with pytest.raises(ValueError, match="The input shape is unknown"):
        kilnet.Sequential([layers.Dense(2)]).build()
    with pytest.raises(ValueError, match="declared for inputs of shape"):
        kilnet.Sequential([layers.Dense(2, input_shape=(3,))]).build((4,))
    with pytest.raises(ValueError, match="The model has no layers"):
        kilnet.Sequential().build((3,))


def test_workflow_errors():
    model = kilnet.Sequential([layers.Dense(2, input_shape=(3,))])
    x, y = np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32)
    with pytest.raises(RuntimeError, match="must be compiled"):
        model.fit(x, y)
    model.compile(optimizer="adam")   # no loss and no add_loss: trains nothing, as Keras
    before = model.get_weights()
    with pytest.warns(kilnet.KerasQuirkWarning, match="Training with no loss"):
        assert model.fit(x, y, verbose=0).history == {"loss": [0.0]}
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(TypeError, match="unsupported arguments: \\['foo'\\]"):
        model.compile(optimizer="adam", loss="mse", foo=1)
    model.compile(optimizer="adam", loss="mse", jit_compile=True)  # tolerated, as in Keras
    with pytest.raises(TypeError, match="unsupported arguments"):
        model.fit(x, y, steps_per_execution=4)
    with pytest.raises(ValueError, match="samples of shape \\(4,\\) but the model expects"):
        model.fit(np.zeros((4, 4), np.float32), y)


def test_clone_model_of_a_compiled_model_is_compiled_as_keras_s():
    """Keras's clone_model compiles the copy from get_compile_config (a new optimizer of the
    same settings), so the serialization guide's clone trains at once."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.ones((8, 1), "float32")
    for lib in (keras, kilnet):
        inputs = lib.Input((4,))
        model = lib.Model(inputs, lib.layers.Dense(1)(inputs))
        model.compile(optimizer=lib.optimizers.RMSprop(learning_rate=0.005), loss="mse",
                      metrics=["mae"])
        clone = lib.models.clone_model(model)
        assert type(clone.optimizer).__name__ == "RMSprop"
        assert clone.optimizer is not model.optimizer
        assert float(clone.optimizer.learning_rate) == pytest.approx(0.005)
        history = clone.fit(x, y, epochs=1, verbose=0).history
        assert sorted(history) == ["loss", "mae"]
    model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(1)])
    assert kilnet.models.clone_model(model).compiled is None   # not compiled: nor the clone
    model.compile(optimizer="adam", loss=lambda t, p: kilnet.ops.mean((t - p) ** 2))
    with pytest.warns(UserWarning, match="clone_model copy is not compiled"):
        assert kilnet.models.clone_model(model).compiled is None


def test_a_sequential_starting_with_a_functional_model_takes_its_input_as_keras():
    """The Sequential guide's transfer recipe, Sequential([base_model, Dense(...)]): built at
    once from the base's input, the base's weights kept."""
    keras = pytest.importorskip("keras")
    found = {}
    for lib in (keras, kilnet):
        inputs = lib.Input((8,))
        base = lib.Model(inputs, lib.layers.Dense(4)(inputs), name="base")
        base.trainable = False
        before = [np.array(w) for w in base.get_weights()]
        model = lib.Sequential([base, lib.layers.Dense(2)])
        # (kilnet makes the weights when first needed: `built` turns True then)
        found[lib] = (model.input_shape, model.output_shape, len(model.trainable_weights),
                      model.count_params(), model.built)
        for a, b in zip(before, base.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert found[kilnet] == found[keras]


def test_a_subclassed_model_holding_built_models_has_their_weights_before_a_call():
    """keras.io's VAE, GANs and Distiller hold functional sub-models: Keras lists, reads and
    sets their weights before the wrapper's first call."""
    keras = pytest.importorskip("keras")
    x = np.random.default_rng(0).random((5, 4)).astype("float32")
    found = {}
    for lib in (keras, kilnet):
        inputs = lib.Input((4,))
        encoder = lib.Model(inputs, lib.layers.Dense(2)(inputs))
        code = lib.Input((2,))
        decoder = lib.Model(code, lib.layers.Dense(4)(code))

        class AutoEncoder(lib.Model):
            def __init__(self, encoder, decoder, **kwargs):
                super().__init__(**kwargs)
                self.encoder, self.decoder = encoder, decoder

            def call(self, x):
                return self.decoder(self.encoder(x))

        model = AutoEncoder(encoder, decoder)
        shapes = [tuple(w.shape) for w in model.weights]
        model.set_weights([np.full(s, 0.1 * (i + 1), "float32") for i, s in enumerate(shapes)])
        found[lib] = (shapes, len(model.trainable_variables), model.predict(x, verbose=0))
    assert found[kilnet][:2] == found[keras][:2]
    np.testing.assert_allclose(found[kilnet][2], found[keras][2], rtol=1e-6)
