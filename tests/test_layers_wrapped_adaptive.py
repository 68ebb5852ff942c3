"""Wrapper, SpectralNormalization, the adaptive poolings and ReversibleEmbedding against Keras 3
(weights copied with set_weights, which also checks their order): values, SpectralNormalization's
training mode (output, vector_u update, a short fit), gradients against finite differences,
configs, Keras files both ways, then errors. The layer contract (tests/test_layer_contract.py)
checks each once more with the other layers."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet.layers._spectral_normalization import normalized_kernel  # noqa: E402

# The Keras twins take kilnet's weights (set_weights): their own starting draws need only be
# random, so they come from NumPy rather than compiling one XLA program per shape.
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def normal(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def twin_of(ours, theirs, *args, **kwargs):
    """Build Keras's layer on the same call and give it our weights."""
    theirs(*args, **kwargs)
    theirs.set_weights(ours.get_weights())
    return theirs


# -- Wrapper ---------------------------------------------------------------------------------------
def make_scaled(ns):
    """The same user wrapper written against kilnet's or Keras's Wrapper."""
    class Scaled(ns.Wrapper):
        def __init__(self, layer, scale=2.0, **kwargs):
            super().__init__(layer, **kwargs)
            self.scale = scale

        def build(self, input_shape):
            super().build(input_shape)
            # the wrapped layer is built by now, as in Keras
            self.units = self.layer.kernel.shape[-1]

        def call(self, inputs):
            return self.scale * self.layer(inputs)

        def get_config(self):
            return {**super().get_config(), "scale": self.scale}

    return Scaled


def test_a_user_wrapper_computes_as_keras_and_round_trips():
    x = normal((3, 4))
    ours = make_scaled(layers)(layers.Dense(2), scale=3.0)
    y = np.asarray(ours(x))
    theirs = twin_of(ours, make_scaled(keras.layers)(keras.layers.Dense(2), scale=3.0), x)
    np.testing.assert_allclose(y, np.asarray(theirs(x)), rtol=1e-6, atol=1e-6)
    assert ours.units == 2 and [w.shape for w in ours.weights] == [(4, 2), (2,)]
    config = ours.get_config()
    assert config["layer"]["class_name"] == "Dense" and config["scale"] == 3.0
    assert set(config) - {"trainable"} <= set(theirs.get_config())
    again = type(ours).from_config(config)
    assert type(again.layer) is layers.Dense and again.scale == 3.0
    assert again.layer.units == 2


def test_a_user_wrapper_trains_in_a_model_and_saves(tmp_path):
    scaled = kilnet.saving.register_serializable(package="WrapperTest")(make_scaled(layers))
    inputs = kilnet.Input(shape=(4,))
    model = kilnet.Model(inputs, scaled(layers.Dense(1))(inputs))
    model.compile(optimizer="sgd", loss="mse")
    x, y = normal((8, 4)), normal((8, 1), seed=1)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert model.evaluate(x, y, verbose=0) < before
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_time_distributed_is_a_wrapper():
    td = layers.TimeDistributed(layers.Dense(2))
    assert isinstance(td, layers.Wrapper) and isinstance(td.layer, layers.Dense)
    assert not isinstance(layers.Bidirectional(layers.LSTM(2)), layers.Wrapper)  # as Keras


def test_wrapper_refuses_what_is_not_a_layer():
    with pytest.raises(ValueError, match="wraps a kilnet layer.*Received: layer="):
        layers.Wrapper("dense")
    with pytest.raises(ValueError, match="SpectralNormalization wraps.*Received"):
        layers.SpectralNormalization(keras.layers.Dense(2))


# -- SpectralNormalization -------------------------------------------------------------------------
SN_CASES = {
    "dense": (lambda ns: ns.Dense(3), (4, 5)),
    "conv2d": (lambda ns: ns.Conv2D(3, 2, padding="same"), (2, 4, 4, 2)),
    "embedding": (lambda ns: ns.Embedding(6, 3), None),
}


def sn_input(case):
    shape = SN_CASES[case][1]
    # Float ids for the Embedding: Keras's wrapper casts its output to the input's dtype,
    # which would turn the vectors of integer ids into integers (kilnet's does not cast).
    return np.array([[1.0, 5.0, 0.0], [2.0, 3.0, 4.0]], np.float32) if shape is None \
        else normal(shape, seed=2)


@pytest.mark.parametrize("iterations", [1, 3])
@pytest.mark.parametrize("case", sorted(SN_CASES))
def test_spectral_normalization_matches_keras_in_both_modes(case, iterations):
    x = sn_input(case)
    make = SN_CASES[case][0]
    ours = layers.SpectralNormalization(make(layers), power_iterations=iterations)
    ours(x)
    ours.set_weights([w + 0.1 * normal(w.shape, seed=3) for w in ours.get_weights()])
    theirs = twin_of(ours, keras.layers.SpectralNormalization(
        make(keras.layers), power_iterations=iterations), x)
    # the same weights, in Keras's order and under Keras's names
    assert [w.path.split("/")[-1] for w in theirs.weights] == [w.name for w in ours.weights]
    assert [w.name for w in ours.non_trainable_weights] == ["vector_u"]
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-5,
                               atol=1e-6)
    # training: the kernel over its spectral norm, and vector_u moved by the power method
    for _ in range(2):
        y = np.asarray(ours(x, training=True))
        expected = np.asarray(theirs(x, training=True))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ours.vector_u.numpy(), theirs.vector_u.numpy(), rtol=1e-5,
                                   atol=1e-6)
        # Keras's eager training call also writes the normalized kernel into the variable
        # (kilnet's keeps it, as Keras's fit on JAX does): line the twins up again
        theirs.set_weights(ours.get_weights())


def test_spectral_normalization_trains_as_keras_fit():
    x, y = normal((12, 5), seed=4), normal((12, 3), seed=5)

    def model(ns, inputs_fn, model_cls):
        inputs = inputs_fn(shape=(5,))
        hidden = ns.SpectralNormalization(ns.Dense(4, activation="tanh"))(inputs)
        return model_cls(inputs, ns.SpectralNormalization(ns.Dense(3), power_iterations=2)(
            hidden))

    ours = model(layers, kilnet.Input, kilnet.Model)
    ours.build(seed=0)
    theirs = model(keras.layers, keras.Input, keras.Model)
    theirs.set_weights(ours.get_weights())
    ours.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    for m in (ours, theirs):
        m.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for mine, keras_weight in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(mine, keras_weight, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-5)


def test_spectral_normalization_gradient_in_training_mode():
    """The gradient goes through the kernel and through sigma, with u and v held fixed: once
    the power method has converged, u and v are the singular vectors and sigma's derivative
    through them vanishes, so finite differences (which move u and v too) agree."""
    layer = layers.SpectralNormalization(layers.Conv2D(2, 2), power_iterations=40)
    x = normal((2, 3, 3, 2), seed=6)
    layer(x)
    params, state = layer.params_tree(), layer.state_tree()
    leaves, treedef = jax.tree.flatten(params)
    weights = normal((2, 2, 2, 2), seed=7)

    def loss(x, *leaves):
        y, _ = layer.apply(jax.tree.unflatten(treedef, list(leaves)), state, x, training=True)
        return (y * weights).sum()

    check_grad(loss, x, *leaves, rtol=1e-4, atol=1e-6)


def test_normalized_kernel_divides_by_the_largest_singular_value():
    kernel = normal((6, 4), seed=8)
    u, normalized = normalized_kernel(kernel, normal((1, 4), seed=9), power_iterations=50)
    np.testing.assert_allclose(np.asarray(normalized),
                               kernel / np.linalg.svd(kernel, compute_uv=False)[0], rtol=1e-4)
    np.testing.assert_allclose(abs(np.asarray(u).ravel()),
                               abs(np.linalg.svd(kernel)[2][0]), rtol=1e-3, atol=1e-4)


def test_a_zero_kernel_is_left_alone_in_training():
    layer = layers.SpectralNormalization(layers.Dense(2, kernel_initializer="zeros",
                                                      bias_initializer="ones"))
    x = normal((3, 4))
    layer(x)
    u = layer.vector_u.numpy()
    np.testing.assert_array_equal(np.asarray(layer(x, training=True)), np.ones((3, 2)))
    np.testing.assert_array_equal(layer.vector_u.numpy(), u)
    grads = jax.grad(lambda p: layer.apply(p, layer.state_tree(), x, training=True)[0].sum())(
        layer.params_tree())
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_spectral_normalization_config_and_keras_files_both_ways(tmp_path):
    layer = layers.SpectralNormalization(layers.Conv2D(2, 3), power_iterations=2, name="sn")
    config = layer.get_config()
    assert config["power_iterations"] == 2 and config["layer"]["class_name"] == "Conv2D"
    assert set(config) - {"trainable"} <= set(keras.layers.SpectralNormalization(
        keras.layers.Conv2D(2, 3)).get_config())
    again = layers.SpectralNormalization.from_config(config)
    assert again.power_iterations == 2 and again.layer.kernel_size == (3, 3)
    inputs = kilnet.Input(shape=(5, 5, 2))
    model = kilnet.Model(inputs, layers.SpectralNormalization(layers.Conv2D(2, 3))(inputs))
    model.build(seed=0)
    x = normal((2, 5, 5, 2), seed=10)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(theirs(x)), model.predict(x, verbose=0), rtol=1e-5,
                               atol=1e-6)
    assert [w.shape for w in theirs.get_weights()] == [w.shape for w in model.get_weights()]
    theirs.set_weights([w + 0.1 for w in theirs.get_weights()])
    theirs.save(tmp_path / "k.keras")
    back = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), np.asarray(theirs(x)), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(back.get_weights()[1], theirs.get_weights()[1])  # vector_u


def test_spectral_normalization_errors():
    with pytest.raises(ValueError, match="power_iterations must be a positive.*Received"):
        layers.SpectralNormalization(layers.Dense(2), power_iterations=0)
    with pytest.raises(ValueError, match="'kernel' or 'embeddings'.*Received: LayerNorm"):
        layers.SpectralNormalization(layers.LayerNormalization())(normal((2, 3)))


# -- adaptive pooling ------------------------------------------------------------------------------
ADAPTIVE = [("AdaptiveAveragePooling1D", 3, (2, 7, 3)),
            ("AdaptiveMaxPooling1D", (4,), (2, 9, 2)),
            ("AdaptiveAveragePooling2D", (3, 2), (2, 7, 5, 3)),
            ("AdaptiveMaxPooling2D", 4, (1, 9, 6, 2)),
            ("AdaptiveAveragePooling3D", (2, 3, 1), (1, 5, 7, 3, 2)),
            ("AdaptiveMaxPooling3D", 2, (1, 3, 5, 4, 2))]


@pytest.mark.parametrize("name, size, shape", ADAPTIVE, ids=[a[0] for a in ADAPTIVE])
def test_adaptive_pooling_matches_keras(name, size, shape):
    x = normal(shape, seed=11)
    ours, theirs = getattr(layers, name)(size), getattr(keras.layers, name)(size)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=1e-6,
                               atol=1e-6)
    config = ours.get_config()
    keras_config = theirs.get_config()
    assert list(config["output_size"]) == list(keras_config["output_size"])
    assert config["data_format"] == keras_config["data_format"]
    assert set(config) - {"trainable"} <= set(keras_config)
    assert type(ours).from_config(config).output_size == ours.output_size
    symbolic = getattr(layers, name)(size)(kilnet.Input(shape=(None,) * (len(shape) - 2)
                                                        + shape[-1:]))
    assert symbolic.shape == (None,) + tuple(ours(x).shape[1:])


@pytest.mark.parametrize("name", ["AdaptiveAveragePooling2D", "AdaptiveMaxPooling2D"])
def test_adaptive_pooling_gradient(name):
    layer = getattr(layers, name)((2, 3))
    x = np.random.default_rng(12).permutation(35).reshape(1, 5, 7, 1).astype(np.float32)
    weights = normal((1, 2, 3, 1), seed=13)
    check_grad(lambda x: (layer.apply({}, {}, x)[0] * weights).sum(), x, rtol=1e-4)


def test_adaptive_pooling_in_a_model_of_any_image_size():
    inputs = kilnet.Input(shape=(None, None, 2))
    model = kilnet.Model(inputs, layers.AdaptiveAveragePooling2D(3)(inputs))
    for size in (3, 8, 11):
        assert model.predict(normal((2, size, size + 1, 2)), verbose=0).shape == (2, 3, 3, 2)


def test_adaptive_pooling_errors():
    with pytest.raises(ValueError, match="channels_last.*Received: data_format='channels_first'"):
        layers.AdaptiveAveragePooling2D(2, data_format="channels_first")
    with pytest.raises(TypeError, match="output_size must be .*Received: output_size='2'"):
        layers.AdaptiveMaxPooling1D("2")
    with pytest.raises(ValueError, match="tuple of 3 positive.*Received: output_size=\\(2, 2\\)"):
        layers.AdaptiveMaxPooling3D((2, 2))
    with pytest.raises(ValueError, match="Received: output_size=0$"):
        layers.AdaptiveAveragePooling1D(0)
    with pytest.raises(ValueError, match="expects \\(height, width, channels\\)"):
        layers.AdaptiveAveragePooling2D(2)(kilnet.Input(shape=(4, 2)))


# -- ReversibleEmbedding ---------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {}, {"tie_weights": False}, {"logit_soft_cap": 0.05},
    {"tie_weights": False, "reverse_dtype": "float32", "logit_soft_cap": 2.0}])
def test_reversible_embedding_matches_keras(options):
    ids = np.array([[1, 2, 9], [0, 4, 4]])
    ours = layers.ReversibleEmbedding(10, 4, **options)
    hidden = ours(ids)
    ours.set_weights([w + normal(w.shape, seed=14) for w in ours.get_weights()])
    theirs = twin_of(ours, keras.layers.ReversibleEmbedding(10, 4, **options), ids)
    assert [w.path.split("/")[-1] for w in theirs.weights] == [w.name for w in ours.weights]
    np.testing.assert_allclose(np.asarray(ours(ids)), np.asarray(theirs(ids)), rtol=1e-6)
    hidden = normal((2, 3, 4), seed=15)
    np.testing.assert_allclose(np.asarray(ours(hidden, reverse=True)),
                               np.asarray(theirs(hidden, reverse=True)), rtol=1e-5,
                               atol=1e-6)
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) - {"trainable"} <= set(keras_config)
    for key in ("tie_weights", "reverse_dtype", "logit_soft_cap", "mask_zero"):
        assert config[key] == keras_config[key]
    again = layers.ReversibleEmbedding.from_config(config)
    assert (again.tie_weights, again.logit_soft_cap) == (ours.tie_weights, ours.logit_soft_cap)


def test_reversible_embedding_gradient_of_the_reverse_projection():
    layer = layers.ReversibleEmbedding(5, 3, tie_weights=False, logit_soft_cap=1.5)
    layer(np.array([[1, 2]]))
    hidden, weights = normal((2, 3), seed=16), normal((2, 5), seed=17)
    params = layer.params_tree()

    def loss(hidden, embeddings, reverse):
        p = {"embeddings": embeddings, "reverse_embeddings": reverse}
        return (layer.apply(p, {}, hidden, reverse=True)[0] * weights).sum()

    check_grad(loss, hidden, params["embeddings"], params["reverse_embeddings"], rtol=1e-4)


def test_reversible_embedding_masks_its_forward_call_only():
    layer = layers.ReversibleEmbedding(10, 4, mask_zero=True)
    ids = np.array([[3, 1, 0, 0]])
    hidden = layer(ids)
    np.testing.assert_array_equal(layer.compute_mask(ids), ids != 0)
    assert layer.compute_mask(np.asarray(hidden)) is None
    inputs = kilnet.Input(shape=(None,), dtype="int32")
    pooled = layers.GlobalAveragePooling1D()(layer(inputs))
    model = kilnet.Model(inputs, pooled)
    np.testing.assert_allclose(model.predict(ids, verbose=0),
                               model.predict(ids[:, :2], verbose=0), rtol=1e-6)


def test_a_tied_language_model_head_saves_as_keras_and_back(tmp_path):
    inputs = kilnet.Input(shape=(5,), dtype="int32")
    embedding = layers.ReversibleEmbedding(12, 4, logit_soft_cap=3.0)
    hidden = layers.Dense(4, activation="tanh")(embedding(inputs))
    model = kilnet.Model(inputs, embedding(hidden, reverse=True))
    assert model.output.shape == (None, 5, 12)
    model.compile(optimizer="adam", loss=kilnet.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    ids = np.random.default_rng(18).integers(0, 12, (8, 5))
    model.fit(ids, ids, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(np.asarray(theirs(ids)), model.predict(ids, verbose=0),
                               rtol=1e-5, atol=1e-5)
    theirs.save(tmp_path / "k.keras")
    back = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(back.predict(ids, verbose=0), np.asarray(theirs(ids)),
                               rtol=1e-5, atol=1e-5)


def test_reversible_embedding_errors():
    with pytest.raises(ValueError, match="tie_weights must be True or False. Received"):
        layers.ReversibleEmbedding(4, 2, tie_weights="yes")
    with pytest.raises(ValueError, match="reverse_dtype must be a floating.*Received"):
        layers.ReversibleEmbedding(4, 2, reverse_dtype="int32")
    with pytest.raises(ValueError, match="logit_soft_cap must be a positive.*Received"):
        layers.ReversibleEmbedding(4, 2, logit_soft_cap=0)
