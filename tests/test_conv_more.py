"""Conv1DTranspose, DepthwiseConv2D, SeparableConv2D, Conv3D, 3-D pooling and Conv2D's
dilation_rate/groups: shapes and dtypes, values against Keras 3 (weights copied with
set_weights, which also checks their order), the CPU formulations against the native
convolutions, gradients against finite differences, configs, tiny models that train and
round-trip through save/load, then errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"

import jax  # noqa: E402
import jax.extend  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet._kernels.conv import conv2d_native, conv2d_patches  # noqa: E402
from kilnet.layers._conv3d import conv3d_native, conv3d_patches  # noqa: E402
from kilnet.layers._conv_more import depthwise_native, depthwise_views  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402

# Keras's twins here get kilnet's weights or only need random ones (conftest).
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def rng(seed=0):
    return np.random.default_rng(seed)


def normal(shape, seed=0):
    return rng(seed).normal(size=shape).astype(np.float32)


def run(layer, x):
    return np.asarray(jax.jit(lambda p, x: layer.apply(p, {}, x)[0])(layer.params_tree(), x))


def against_keras(layer, keras_layer, x):
    """Outputs of the kilnet layer and of the Keras layer given the same (random) weights."""
    layer.build_weights(rng(), x.shape[1:])
    layer.set_weights([normal(w.shape, 1 + i) for i, w in enumerate(layer.get_weights())])
    y = run(layer, x)
    keras_layer.build(x.shape)
    keras_layer.set_weights(layer.get_weights())
    return y, np.asarray(keras_layer(x))


# (name, kwargs, input shape with batch)
KERAS_CASES = [
    ("Conv2D", dict(filters=4, kernel_size=3, dilation_rate=2), (2, 9, 8, 3)),
    ("Conv2D", dict(filters=4, kernel_size=(3, 2), dilation_rate=(2, 3), padding="same"),
     (2, 7, 8, 3)),
    ("Conv2D", dict(filters=6, kernel_size=3, groups=3, padding="same"), (2, 6, 5, 6)),
    ("Conv2D", dict(filters=4, kernel_size=3, groups=2, strides=2, activation="relu"),
     (2, 9, 8, 4)),
    ("Conv2D", dict(filters=4, kernel_size=2, groups=2, dilation_rate=2, use_bias=False),
     (2, 7, 7, 2)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=3, strides=2, padding="same"), (2, 5, 4)),
    ("Conv1DTranspose", dict(filters=3, kernel_size=4, strides=3), (2, 5, 4)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, strides=2, output_padding=1,
                             padding="same"), (2, 5, 4)),
    ("Conv1DTranspose", dict(filters=2, kernel_size=3, dilation_rate=2, use_bias=False),
     (2, 6, 3)),
    ("DepthwiseConv2D", dict(kernel_size=3), (2, 7, 6, 3)),
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2, padding="same", strides=2,
                             activation="tanh"), (2, 7, 6, 3)),
    ("DepthwiseConv2D", dict(kernel_size=(2, 3), dilation_rate=2, use_bias=False),
     (2, 7, 8, 2)),
    ("SeparableConv2D", dict(filters=4, kernel_size=3), (2, 7, 6, 3)),
    ("SeparableConv2D", dict(filters=5, kernel_size=3, depth_multiplier=2, padding="same",
                             strides=2, activation="relu"), (2, 7, 6, 3)),
    ("SeparableConv2D", dict(filters=2, kernel_size=2, dilation_rate=(2, 1), use_bias=False),
     (2, 6, 6, 3)),
    ("Conv3D", dict(filters=3, kernel_size=2), (2, 4, 5, 4, 2)),
    ("Conv3D", dict(filters=3, kernel_size=(3, 2, 3), strides=2, padding="same"),
     (2, 5, 4, 5, 2)),
    ("Conv3D", dict(filters=2, kernel_size=2, dilation_rate=(1, 2, 2), use_bias=False),
     (2, 4, 5, 5, 2)),
    ("MaxPooling3D", dict(), (2, 4, 4, 6, 2)),
    ("MaxPooling3D", dict(pool_size=3, strides=2, padding="same"), (2, 5, 4, 6, 2)),
    ("AveragePooling3D", dict(pool_size=(2, 3, 2)), (2, 4, 6, 5, 2)),
    ("AveragePooling3D", dict(pool_size=3, strides=2, padding="same"), (2, 5, 4, 6, 2)),
]


@pytest.mark.parametrize("name, kwargs, shape", KERAS_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(KERAS_CASES)])
def test_matches_keras_with_its_shape_and_dtype(name, kwargs, shape):
    layer = getattr(layers, name)(**kwargs)
    keras_layer = getattr(keras.layers, name)(**kwargs)
    x = normal(shape)
    y, expected = against_keras(layer, keras_layer, x)
    assert y.shape[1:] == layer.sample_output_shape(shape[1:]) == expected.shape[1:]
    assert y.dtype == np.float32
    assert [w.shape for w in layer.get_weights()] == [
        tuple(w.shape) for w in keras_layer.weights]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_depthwise_against_numpy():
    x, kernel = normal((1, 4, 5, 2)), normal((2, 2, 2, 3), 1)
    layer = layers.DepthwiseConv2D(2, depth_multiplier=3, use_bias=False)
    layer.build_weights(rng(), x.shape[1:])
    layer.set_weights([kernel])
    expected = np.zeros((1, 3, 4, 6), np.float32)
    for i in range(3):
        for j in range(4):
            window = x[0, i:i + 2, j:j + 2, :]  # (2, 2, C)
            expected[0, i, j] = np.einsum("abc,abcm->cm", window, kernel).reshape(-1)
    np.testing.assert_allclose(run(layer, x), expected, rtol=1e-5, atol=1e-5)


def test_conv1d_transpose_equals_conv2d_transpose_on_one_column():
    x = normal((2, 5, 3))
    layer = layers.Conv1DTranspose(2, 3, strides=2, padding="same")
    layer.build_weights(rng(), x.shape[1:])
    twin = layers.Conv2DTranspose(2, (3, 1), strides=(2, 1), padding="same")
    twin.build_weights(rng(), (5, 1, 3))
    twin.set_weights([layer.get_weights()[0][:, None], layer.get_weights()[1]])
    np.testing.assert_allclose(run(layer, x), run(twin, x[:, :, None])[:, :, 0], rtol=1e-6)


# -- the CPU formulations against the native convolutions ----------------------------------------
@pytest.mark.parametrize("strides, padding, dilation, groups", [
    ((1, 1), "valid", (2, 3), 1), ((1, 1), "same", (2, 2), 2), ((2, 1), "same", (1, 1), 4),
    ((2, 2), "valid", (1, 1), 2),
])
def test_conv2d_patches_equal_native(strides, padding, dilation, groups):
    x, kernel = normal((2, 9, 8, 4)), normal((3, 2, 4 // groups, 8), 1)
    np.testing.assert_allclose(conv2d_patches(x, kernel, strides, padding, dilation, groups),
                               conv2d_native(x, kernel, strides, padding, dilation, groups),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides, padding, dilation", [
    ((1, 1), "valid", (2, 1)), ((2, 2), "same", (1, 1)), ((1, 2), "same", (2, 2))])
def test_depthwise_views_equal_native(strides, padding, dilation):
    x, kernel = normal((2, 8, 7, 3)), normal((3, 2, 3, 2), 1)
    np.testing.assert_allclose(depthwise_views(x, kernel, strides, padding, dilation),
                               depthwise_native(x, kernel, strides, padding, dilation),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides, padding, dilation", [
    ((1, 1, 1), "valid", (1, 2, 1)), ((2, 1, 2), "same", (1, 1, 1))])
def test_conv3d_patches_equal_native(strides, padding, dilation):
    x, kernel = normal((2, 5, 6, 5, 2)), normal((2, 3, 2, 2, 3), 1)
    np.testing.assert_allclose(conv3d_patches(x, kernel, strides, padding, dilation),
                               conv3d_native(x, kernel, strides, padding, dilation),
                               rtol=1e-5, atol=1e-5)


# -- gradients -----------------------------------------------------------------------------------
def _check_layer_grad(layer, x_shape):
    x = rng().normal(size=x_shape)
    params, _, out_shape = layer.init(rng(), x_shape[1:])
    names = list(params)
    r = rng(3).normal(size=(x_shape[0],) + out_shape)

    def out(*args):
        return jnp.sum(layer.apply(dict(zip(names, args[:-1])), {}, args[-1])[0] * r)

    weights = [rng(1 + i).normal(size=np.shape(params[n])) * 0.5 for i, n in enumerate(names)]
    check_grad(out, *weights, x)


@pytest.mark.parametrize("make, x_shape", [
    (lambda: layers.Conv2D(4, 2, dilation_rate=2, groups=2, activation="tanh"), (2, 5, 5, 2)),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, padding="same"), (2, 3, 2)),
    (lambda: layers.SeparableConv2D(2, 2, depth_multiplier=2, padding="same",
                                    activation="tanh"), (2, 3, 3, 2)),
    (lambda: layers.Conv3D(2, 2, padding="same"), (1, 2, 3, 2, 2)),
    (lambda: layers.AveragePooling3D(2, strides=1, padding="same"), (1, 2, 3, 2, 2)),
    (lambda: layers.MaxPooling3D(2), (1, 2, 4, 2, 2)),
])
def test_gradients(make, x_shape):
    _check_layer_grad(make(), x_shape)


# -- configs -------------------------------------------------------------------------------------
CONFIG_CASES = [
    lambda m: m.Conv2D(4, 3, dilation_rate=(2, 1), groups=2),
    lambda m: m.Conv1DTranspose(3, 4, strides=2, output_padding=1, dilation_rate=1,
                                activation="relu"),
    lambda m: m.DepthwiseConv2D(3, strides=2, depth_multiplier=3, padding="same",
                                use_bias=False),
    lambda m: m.SeparableConv2D(8, (3, 2), dilation_rate=2, depth_multiplier=2),
    lambda m: m.Conv3D(4, (3, 2, 1), strides=(1, 2, 1), padding="same"),
    lambda m: m.MaxPooling3D((2, 1, 2), padding="same"),
    lambda m: m.AveragePooling3D(3, strides=2),
]


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


@pytest.mark.parametrize("make", CONFIG_CASES)
def test_config_round_trip_with_keras_keys_and_values(make):
    layer = make(layers)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    keras_config = make(keras.layers).get_config()
    ours = set(config) - {"name", "trainable"}
    assert ours <= set(keras_config), ours - set(keras_config)
    for key in ours - {k for k in ours if k.endswith("_initializer")}:
        assert _plain(config[key]) == _plain(keras_config[key]), key
    assert type(layer).__name__ in kilnet.layers.LAYER_TYPES


# -- tiny models that train and round-trip through save/load --------------------------------------
def _trains_and_round_trips(model, x, y, tmp_path, epochs=8):
    # Weights from seed 0, not from the OS, and the loss judged on the whole data before and
    # after training (the first epoch's mean training loss already holds its own progress; the
    # depthwise model's fell by 2-15% only). 11 weight and data draws: after/before <= 0.66.
    model.build(seed=0)
    assert_fit_lowers_loss(model, x, y, 0.8, epochs=epochs, seed=0, batch_size=8)
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = kilnet.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_image_model_with_depthwise_separable_and_grouped_convs_trains(tmp_path):
    x = normal((32, 8, 8, 2))
    y = (x[:, 2:6, 2:6, 0].mean(axis=(1, 2)) > 0).astype(np.float32)[:, None]
    model = kilnet.Sequential([
        kilnet.Input(shape=(8, 8, 2)),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
        layers.Conv2D(4, 3, dilation_rate=2, groups=2, activation="relu"),
        layers.SeparableConv2D(4, 2, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="binary_crossentropy")
    _trains_and_round_trips(model, x, y, tmp_path, epochs=16)


def test_volume_and_sequence_models_train(tmp_path):
    x = normal((24, 4, 6, 6, 1))
    y = x.mean(axis=(1, 2, 3))
    inputs = kilnet.Input(shape=(4, 6, 6, 1))
    h = layers.Conv3D(4, 3, padding="same", activation="relu")(inputs)
    h = layers.MaxPooling3D(2)(h)
    h = layers.AveragePooling3D((2, 3, 3))(h)
    h = layers.Reshape((1, 4))(h)
    h = layers.Conv1DTranspose(2, 3, strides=2, padding="same")(h)
    outputs = layers.Dense(1)(layers.Flatten()(h))
    model = kilnet.Model(inputs, outputs)
    assert h.shape == (None, 2, 2)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss="mse")
    (tmp_path / "a").mkdir()
    _trains_and_round_trips(model, x, y, tmp_path / "a")


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, error, match", [
    (lambda: layers.Conv2D(4, 3, groups=3), ValueError, "groups=3"),
    (lambda: layers.Conv2D(4, 3, groups=0), ValueError, "groups"),
    (lambda: layers.Conv2D(4, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate"),
    (lambda: layers.Conv2D(4, 3, dilation_rate=(1, 0)), ValueError, "dilation_rate"),
    (lambda: layers.DepthwiseConv2D(3, depth_multiplier=0), ValueError, "depth_multiplier=0"),
    (lambda: layers.DepthwiseConv2D(3, depthwise_regularizer="l3"), ValueError,
     "depthwise_regularizer must be None"),
    (lambda: layers.SeparableConv2D(0, 3), ValueError, "filters=0"),
    (lambda: layers.SeparableConv2D(2, 3, pointwise_constraint="positive"), ValueError,
     "pointwise_constraint must be None"),
    (lambda: layers.SeparableConv2D(2, 3, data_format="channels_first"), ValueError,
     "data_format"),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, output_padding=2), ValueError,
     "output_padding=2"),
    (lambda: layers.Conv1DTranspose(2, 3, strides=2, dilation_rate=2), ValueError, "strides"),
    (lambda: layers.Conv3D(2, (3, 3)), ValueError, "kernel_size"),
    (lambda: layers.Conv3D(2, 3, groups=2), ValueError, "groups=2"),
    (lambda: layers.MaxPooling3D(pool_size=0), ValueError, "pool_size"),
    (lambda: layers.AveragePooling3D(padding="full"), ValueError, "padding"),
])
def test_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("layer, shape, match", [
    (layers.Conv2D(4, 3, groups=2), (8, 8, 3), "divisible by groups"),
    (layers.Conv2D(4, 3, dilation_rate=4), (8, 8, 3), "does not fit"),
    (layers.DepthwiseConv2D(3), (8, 8), "height, width, channels"),
    (layers.SeparableConv2D(2, 5), (4, 8, 3), "does not fit"),
    (layers.Conv1DTranspose(2, 3), (8, 8, 3), "steps, channels"),
    (layers.Conv3D(2, 3), (8, 8, 3), "depth, height, width, channels"),
    (layers.Conv3D(2, 3), (2, 8, 8, 3), "does not fit"),
    (layers.MaxPooling3D(), (1, 4, 4, 3), "larger than the input"),
])
def test_shape_errors(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.sample_output_shape(shape)


@pytest.mark.parametrize("kernel, strides, dilation", [
    ((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 3), (1, 1)),
    ((3, 2), (1, 1), (2, 1)), ((1, 1), (2, 2), (1, 1)), ((5, 2), (1, 1), (1, 2)),
    ((3, 3), (2, 1), (1, 1)), ((3, 3), (3, 3), (1, 1)), ((2, 2), (3, 3), (1, 1)),
    ((5, 4), (2, 3), (1, 1)), ((1, 1), (1, 1), (1, 1)), ((1, 1), (3, 2), (1, 1))])
@pytest.mark.parametrize("padding", ["same", "valid", ((2, 1), (0, 3))])
@pytest.mark.parametrize("size", [(9, 9), (8, 11)])
def test_cpu_convolution_gradients_equal_jax(kernel, strides, dilation, padding, size):
    """The CPU convolution (kilnet._kernels.conv: 1x1 kernels as products, the others with
    hand-written gradients in canonical layouts, strided input gradients phase by phase)
    against JAX's own differentiation of lax.conv, in float64."""
    from kilnet._kernels.conv import conv2d_cpu

    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2,) + size + (3,)))
        k = jnp.asarray(rng.standard_normal(kernel + (3, 4)))

        def ours(x, k):
            return jnp.sum(jnp.sin(conv2d_cpu(x, k, strides, padding, dilation)))

        def theirs(x, k):
            pads = padding.upper() if isinstance(padding, str) else padding
            return jnp.sum(jnp.sin(lax.conv_general_dilated(
                x, k, strides, pads,
                rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"))))

        # both values and gradients traced into one compiled program, not op by op
        ours_value, theirs_value, ours_grads, theirs_grads = jax.jit(lambda x, k: (
            ours(x, k), theirs(x, k), jax.grad(ours, (0, 1))(x, k),
            jax.grad(theirs, (0, 1))(x, k)))(x, k)
        np.testing.assert_allclose(ours_value, theirs_value, rtol=1e-12)
        for a, b in zip(ours_grads, theirs_grads):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_kilnet_compiles_for_the_cpu_with_its_measured_options(monkeypatch):
    from kilnet import _runtime

    assert _runtime.compiler_options() == {"xla_cpu_experimental_ynn_fusion_type": ""}
    monkeypatch.setenv("KILNET_XLA_CPU_DEFAULTS", "1")
    assert _runtime.compiler_options() == {}


@pytest.mark.parametrize("batch", [40, 67])
def test_kernel_gradient_in_batch_chunks_equals_jax(batch):
    """Batches of 32+ samples with 16+ channels take the kernel gradient in chunks of the
    batch (67: uneven chunks); the sum equals JAX's own gradient, in float64."""
    from kilnet._kernels import conv as kernel_conv

    assert batch // kernel_conv.KERNEL_GRADIENT_MIN_CHUNK >= 2  # the chunked path runs
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        channels = kernel_conv.KERNEL_GRADIENT_MIN_CHANNELS
        x = jnp.asarray(rng.standard_normal((batch, 6, 5, channels)))
        k = jnp.asarray(rng.standard_normal((3, 3, x.shape[-1], 4)))

        def loss(conv, k):
            return jnp.sum(jnp.sin(conv(x, k)))

        ours = jax.grad(loss, 1)(
            lambda x, k: kernel_conv.conv2d_cpu(x, k, (1, 1), "same", (1, 1)), k)
        theirs = jax.grad(loss, 1)(lambda x, k: conv2d_native(x, k, (1, 1), "same"), k)
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pool_size, strides, padding", [
    ((2, 2), None, "valid"), ((2, 2), None, "same"), ((3, 3), (2, 2), "valid"),
    ((3, 2), (1, 2), "same")])
def test_max_pooling_gradient_goes_to_the_first_maximum_as_keras(pool_size, strides, padding):
    """With ties in a window (small integers), Keras gives the window's gradient to its first
    maximum; kilnet's MaxPooling2D gives the same gradient (and the same output)."""
    x = np.random.default_rng(2).integers(0, 3, size=(2, 7, 6, 3)).astype(np.float32)
    weights = np.random.default_rng(3).normal(size=3).astype(np.float32)
    ours = layers.MaxPooling2D(pool_size, strides, padding)
    theirs = keras.layers.MaxPooling2D(pool_size, strides, padding)

    def loss(pool, x):
        return jnp.sum(pool(x) * weights)

    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    np.testing.assert_array_equal(jax.grad(lambda x: loss(ours, x))(jnp.asarray(x)),
                                  jax.grad(lambda x: loss(theirs, x))(jnp.asarray(x)))


def test_max_pooling_propagates_nan():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 1, 0] = np.nan
    y = np.asarray(layers.MaxPooling2D()(x))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 1, 1, 0])


def test_max_pooling_3d_gradient_goes_to_the_first_maximum_as_keras():
    x = np.random.default_rng(4).integers(0, 3, size=(2, 5, 4, 6, 2)).astype(np.float32)
    ours, theirs = layers.MaxPooling3D(2, padding="same"), keras.layers.MaxPooling3D(2, padding="same")
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(ours(x) * 1.5))(jnp.asarray(x)),
                                  jax.grad(lambda x: jnp.sum(theirs(x) * 1.5))(jnp.asarray(x)))


def _equations(jaxpr):
    """Every equation of a jaxpr, sub-jaxprs included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _equations(sub)


def _primitives(jaxpr):
    return (eqn.primitive.name for eqn in _equations(jaxpr))


def test_tiled_max_pooling_gradient_is_one_masked_pass():
    """Windows that tile the image get a gradient with no zero-padded array per window
    position (JAX's own gradient of the strided views has one `pad` each)."""
    from kilnet._kernels.conv import window_slices
    from kilnet.layers._pooling import first_maximum

    x = jnp.ones((2, 8, 6, 3))
    ours = jax.make_jaxpr(jax.grad(lambda x: layers.MaxPooling2D(2)(x).sum()))(x).jaxpr
    views = jax.make_jaxpr(jax.grad(
        lambda x: first_maximum(window_slices(x, (2, 2), (2, 2))).sum()))(x).jaxpr
    assert "pad" not in set(_primitives(ours))
    assert list(_primitives(views)).count("pad") == 4


@pytest.mark.parametrize("make, shape", [
    (lambda: layers.MaxPooling2D(2), (2, 7, 6, 3)),
    (lambda: layers.MaxPooling2D((3, 2), padding="same"), (2, 7, 5, 3)),
    (lambda: layers.MaxPooling1D(2), (2, 9, 3)),
    (lambda: layers.MaxPooling3D(2), (1, 5, 4, 4, 2)),
])
def test_tiled_max_pooling_forward_and_second_order_derivatives(make, shape):
    """Forward mode (jvp) and second derivatives go through the tiled pooling and equal JAX's
    own derivatives of the same max written as strided views (float64, ties included)."""
    from kilnet.layers._pooling import first_maximum

    layer = make()
    rank = len(shape) - 2
    sizes = tuple(np.broadcast_to(layer.pool_size, (rank,)))

    def ours(x):
        return layer.apply({}, {}, x)[0]

    def reference(x):
        if layer.padding == "same":
            x = pool_pad_same(x, sizes)
        views = [x[(slice(None),) + tuple(slice(o, n - n % k, k) for o, n, k
                                          in zip(offsets, x.shape[1:-1], sizes))]
                 for offsets in np.ndindex(*sizes)]
        return first_maximum(views)

    def hessian_times(f, x, x_dot):
        return jax.jvp(jax.grad(lambda v: jnp.sum(jnp.sin(f(v)))), (x,), (x_dot,))[1]

    def derivatives(f, x, x_dot):   # the value, jvp and Hessian product of f
        return f(x), jax.jvp(f, (x,), (x_dot,))[1], hessian_times(f, x, x_dot)

    with jax.enable_x64(True):
        x = jnp.asarray(rng(6).integers(0, 3, size=shape), jnp.float64)
        x_dot = jnp.asarray(normal(shape, 7), jnp.float64)
        # ours and the reference traced into one compiled program, not op by op
        (value, tangent, hvp), (want_value, want_tangent, want_hvp) = jax.jit(
            lambda x, x_dot: (derivatives(ours, x, x_dot), derivatives(reference, x, x_dot)))(
                x, x_dot)
        np.testing.assert_array_equal(value, want_value)
        np.testing.assert_array_equal(tangent, want_tangent)
        np.testing.assert_allclose(hvp, want_hvp, rtol=1e-12, atol=0)
        assert np.abs(hvp).max() > 0


@pytest.mark.parametrize("pool_size, strides, shape", [
    ((3, 3), (2, 2), (2, 9, 8, 3)),        # overlapping windows
    ((2, 3), (3, 1), (2, 8, 7, 2)),        # gaps between windows along one axis
    ((3,), (2,), (3, 11, 2)),              # 1-D
    ((2, 3, 2), (1, 2, 2), (1, 5, 7, 6, 2)),  # 3-D
])
def test_strided_max_pooling_gradients_equal_jax_derivative_of_the_views(pool_size, strides,
                                                                         shape):
    """Windows that do not tile the input: the phase-by-phase gradient equals JAX's own
    derivative of the same first maximum over strided views (float64, ties included), and so
    does the gradient of that gradient."""
    from kilnet.layers._pooling import first_maximum, strided_maximum

    def reference(x):
        counts = [(n - k) // s + 1 for n, k, s in zip(x.shape[1:-1], pool_size, strides)]
        return first_maximum([x[(slice(None),) + tuple(slice(o, o + (c - 1) * s + 1, s)
                                                       for o, c, s in zip(offs, counts, strides))]
                              for offs in np.ndindex(*pool_size)])

    def ours(x):
        return strided_maximum(x, pool_size, strides)

    with jax.enable_x64(True):
        x = jnp.asarray(rng(11).integers(0, 3, size=shape), jnp.float64)
        r = jnp.asarray(normal(jax.eval_shape(reference, x).shape, 12), jnp.float64)

        def gradient(f):
            return jax.grad(lambda v: jnp.sum(jnp.sin(f(v)) * r))

        def derivatives(f, x):   # the value, gradient and gradient of the gradient's norm
            return f(x), gradient(f)(x), jax.grad(lambda v: jnp.sum(gradient(f)(v) ** 2))(x)

        # ours and the reference traced into one compiled program, not op by op
        (value, grad, second), (want_value, want_grad, want_second) = jax.jit(
            lambda x: (derivatives(ours, x), derivatives(reference, x)))(x)
        np.testing.assert_array_equal(value, want_value)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-14, atol=0)
        np.testing.assert_allclose(second, want_second, rtol=1e-12, atol=1e-12)
        assert np.abs(second).max() > 0


def test_strided_max_pooling_gradient_spreads_no_zeros_between_windows():
    """JAX's derivative of strided views pads each one with zeros between its elements
    (`pad` with interior padding); the phase-by-phase gradient has no such pad."""
    from kilnet._kernels.conv import window_slices
    from kilnet.layers._pooling import first_maximum

    def interior_pads(f):
        jaxpr = jax.make_jaxpr(jax.grad(lambda x: f(x).sum()))(jnp.ones((2, 9, 9, 3))).jaxpr
        return [e for e in _equations(jaxpr) if e.primitive.name == "pad"
                and any(interior for _, _, interior in e.params["padding_config"])]

    assert not interior_pads(layers.MaxPooling2D(3, strides=2))
    assert len(interior_pads(
        lambda x: first_maximum(window_slices(x, (3, 3), (2, 2))))) == 9


def pool_pad_same(x, sizes):
    """'same' padding with -inf for windows equal to strides: the remainder padded at the end
    first, as Keras (and TensorFlow) place the extra padding."""
    pads = [(((-n) % k) // 2, (-n) % k - ((-n) % k) // 2) for n, k in zip(x.shape[1:-1], sizes)]
    return jnp.pad(x, [(0, 0)] + pads + [(0, 0)], constant_values=-jnp.inf)


def test_max_pooling_with_more_than_127_window_positions_as_keras():
    """A 12x12 window has 144 positions: more than an int8 position can name."""
    x = rng(8).integers(0, 4, size=(2, 24, 26, 2)).astype(np.float32)
    weights = normal((2, 2, 2, 2), 9).astype(np.float32)
    ours, theirs = layers.MaxPooling2D(12), keras.layers.MaxPooling2D(12)
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    np.testing.assert_array_equal(
        jax.grad(lambda x: jnp.sum(ours(x) * weights))(jnp.asarray(x)),
        jax.grad(lambda x: jnp.sum(theirs(x) * weights))(jnp.asarray(x)))


def test_max_pooling_1d_gradient_goes_to_the_first_maximum_as_keras():
    x = rng(10).integers(0, 3, size=(3, 11, 4)).astype(np.float32)
    for kwargs in ({"pool_size": 2}, {"pool_size": 3, "padding": "same"}):
        ours, theirs = layers.MaxPooling1D(**kwargs), keras.layers.MaxPooling1D(**kwargs)
        np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
        np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(ours(x) * 1.5))(jnp.asarray(x)),
                                      jax.grad(lambda x: jnp.sum(theirs(x) * 1.5))(jnp.asarray(x)))


def test_kernel_gradient_chunks_add_in_float32_under_bfloat16():
    """Under a 16-bit policy the chunks' partial kernel gradients add before rounding: every
    entry is the float32 gradient rounded once to bfloat16 (relative error 2^-8 at most)."""
    from kilnet._kernels import conv as kernel_conv

    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((64, 8, 8, 16)), jnp.bfloat16)
    dy = jnp.asarray(rng.standard_normal((64, 8, 8, 4)), jnp.bfloat16)
    pads = ((1, 1), (1, 1))
    ours = kernel_conv._kernel_gradient(x, dy, (3, 3), (1, 1), pads, (1, 1))
    exact = kernel_conv._kernel_gradient(x.astype(jnp.float32), dy.astype(jnp.float32), (3, 3),
                                   (1, 1), pads, (1, 1))
    assert ours.dtype == jnp.bfloat16
    error = np.abs(np.asarray(ours, np.float32) - np.asarray(exact))
    assert np.all(error <= 2.0 ** -8 * np.abs(np.asarray(exact)) + 1e-6)
