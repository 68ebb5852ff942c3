"""Merge layers (Add ... Dot) and weightless reshaping layers (Permute ... Cropping2D): shapes
and dtypes, values against Keras 3 and NumPy, gradients against finite differences, configs
against Keras's, models that train and survive save/load, and clear errors."""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported: the reference runs on JAX

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402
from kilnet.models import load_model  # noqa: E402
from _training import assert_fit_lowers_loss  # noqa: E402

# (id, class name, constructor arguments, input shape(s) without the batch axis, output shape).
# A list of shapes means a list of inputs (a merge).
CASES = [
    ("add", "Add", {}, [(4, 3), (4, 3)], (4, 3)),
    ("add_broadcast_ranks", "Add", {}, [(4, 3), (1, 3), (3,)], (4, 3)),
    ("add_one_input", "Add", {}, [(5,)], (5,)),
    ("subtract", "Subtract", {}, [(5,), (5,)], (5,)),
    ("multiply_broadcast", "Multiply", {}, [(2, 4, 3), (4, 1)], (2, 4, 3)),
    ("average", "Average", {}, [(3, 2), (3, 2), (3, 2)], (3, 2)),
    ("maximum", "Maximum", {}, [(6,), (6,)], (6,)),
    ("minimum", "Minimum", {}, [(2, 3), (1, 3)], (2, 3)),
    ("concatenate", "Concatenate", {}, [(4, 2), (4, 3)], (4, 5)),
    ("concatenate_axis1", "Concatenate", {"axis": 1}, [(2, 3), (4, 3), (1, 3)], (7, 3)),
    ("concatenate_axis_neg2", "Concatenate", {"axis": -2}, [(2, 3, 2), (2, 1, 2)], (2, 4, 2)),
    ("dot_vectors", "Dot", {"axes": 1}, [(4,), (4,)], (1,)),
    ("dot_pair", "Dot", {"axes": (1, 2)}, [(3, 5), (4, 3)], (5, 4)),
    ("dot_last_normalize", "Dot", {"axes": -1, "normalize": True}, [(3, 4), (5, 4)], (3, 5)),
    ("dot_matrix_vector", "Dot", {"axes": (2, 1)}, [(3, 4), (4,)], (3,)),
    ("permute", "Permute", {"dims": (2, 1)}, (3, 4), (4, 3)),
    ("permute_3d", "Permute", {"dims": (3, 1, 2)}, (2, 3, 4), (4, 2, 3)),
    ("repeat_vector", "RepeatVector", {"n": 3}, (4,), (3, 4)),
    ("upsampling1d", "UpSampling1D", {}, (3, 2), (6, 2)),
    ("upsampling1d_3", "UpSampling1D", {"size": 3}, (3, 2), (9, 2)),
    ("upsampling2d", "UpSampling2D", {}, (3, 4, 2), (6, 8, 2)),
    ("upsampling2d_bilinear", "UpSampling2D", {"size": (2, 3), "interpolation": "bilinear"},
     (3, 4, 2), (6, 12, 2)),
    ("upsampling2d_bicubic", "UpSampling2D", {"size": 2, "interpolation": "bicubic"},
     (3, 4, 1), (6, 8, 1)),
    ("upsampling2d_lanczos3", "UpSampling2D", {"interpolation": "lanczos3"}, (4, 4, 1),
     (8, 8, 1)),
    ("upsampling2d_lanczos5", "UpSampling2D", {"size": (3, 2), "interpolation": "lanczos5"},
     (4, 3, 1), (12, 6, 1)),
    ("zeropadding1d", "ZeroPadding1D", {}, (3, 2), (5, 2)),
    ("zeropadding1d_pair", "ZeroPadding1D", {"padding": (0, 2)}, (3, 2), (5, 2)),
    ("zeropadding2d", "ZeroPadding2D", {}, (3, 4, 2), (5, 6, 2)),
    ("zeropadding2d_int", "ZeroPadding2D", {"padding": 2}, (3, 4, 2), (7, 8, 2)),
    ("zeropadding2d_rows_cols", "ZeroPadding2D", {"padding": (1, 0)}, (3, 4, 2), (5, 4, 2)),
    ("zeropadding2d_sides", "ZeroPadding2D", {"padding": ((1, 0), (2, 3))}, (3, 4, 2),
     (4, 9, 2)),
    ("cropping1d", "Cropping1D", {}, (5, 2), (3, 2)),
    ("cropping1d_end", "Cropping1D", {"cropping": (0, 2)}, (5, 2), (3, 2)),
    ("cropping2d", "Cropping2D", {}, (5, 6, 2), (5, 6, 2)),
    ("cropping2d_int", "Cropping2D", {"cropping": 1}, (5, 6, 2), (3, 4, 2)),
    ("cropping2d_sides", "Cropping2D", {"cropping": ((1, 0), (2, 1))}, (5, 6, 2), (4, 3, 2)),
]
IDS = [c[0] for c in CASES]
ARGS = [c[1:] for c in CASES]


def make(name, kwargs):
    return getattr(layers, name)(**kwargs)


def data(in_shape, batch=3, seed=0):
    """Float32 inputs for one case: an array, or a list of arrays for a merge."""
    r = np.random.default_rng(seed)
    if isinstance(in_shape, list):
        return [r.normal(size=(batch,) + s).astype(np.float32) for s in in_shape]
    return r.normal(size=(batch,) + in_shape).astype(np.float32)


def run(layer, x):
    """The pure form: init, then apply as one compiled program."""
    shapes = [a.shape[1:] for a in x] if isinstance(x, list) else x.shape[1:]
    params, state, _ = layer.init(np.random.default_rng(0), shapes)
    y, _ = jax.jit(lambda p, s, x: layer.apply(p, s, x))(params, state, x)
    return np.asarray(y)


def plain(value):
    """A config value with tuples as lists (what JSON keeps), to compare with Keras's."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# -- shapes and dtypes ------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, in_shape, out_shape", ARGS, ids=IDS)
def test_output_shape_and_dtype(name, kwargs, in_shape, out_shape):
    layer = make(name, kwargs)
    params, state, declared = layer.init(np.random.default_rng(0), in_shape)
    assert params == {} and state == {} and layer.param_names == () == layer.state_names
    assert declared == out_shape == layer.sample_output_shape(in_shape)
    specs = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2,) + s, jnp.float32), in_shape,
                         is_leaf=lambda s: isinstance(s, tuple))
    y, _ = jax.eval_shape(lambda x: layer.apply(params, state, x), specs)
    assert y.shape == (2,) + out_shape and y.dtype == jnp.float32
    # The functional API: the symbolic tensor says the same.
    inputs = ([kilnet.Input(shape=s) for s in in_shape] if isinstance(in_shape, list)
              else kilnet.Input(shape=in_shape))
    tensor = make(name, kwargs)(inputs)
    assert tensor.shape == (None,) + out_shape and tensor.dtype == "float32"


INT_CASES = [("Concatenate", {}, [(2,), (3,)], "int32"),
             ("Add", {}, [(2,), (2,)], "int32"),
             ("Average", {}, [(2,), (2,)], "float32"),
             ("Dot", {"axes": 1}, [(2,), (2,)], "int32"),
             ("Dot", {"axes": 1, "normalize": True}, [(2,), (2,)], "float32"),
             ("Cropping1D", {}, (4, 1), "int32"),
             ("RepeatVector", {"n": 2}, (3,), "int32"),
             ("Permute", {"dims": (2, 1)}, (3, 2), "int32"),
             ("UpSampling2D", {}, (2, 2, 1), "int32"),
             ("UpSampling2D", {"interpolation": "bilinear"}, (2, 2, 1), "float32")]


@pytest.mark.parametrize("name, kwargs, in_shape, dtype", INT_CASES)
def test_integer_inputs_give_the_dtype_the_symbolic_tensor_declares(name, kwargs, in_shape,
                                                                      dtype):
    # Token ids that are only moved or joined stay integers, as in Keras.
    is_list = isinstance(in_shape, list)
    inputs = ([kilnet.Input(shape=s, dtype="int32") for s in in_shape] if is_list
              else kilnet.Input(shape=in_shape, dtype="int32"))
    layer = make(name, kwargs)
    assert layer(inputs).dtype == dtype
    specs = jax.tree.map(lambda s: jax.ShapeDtypeStruct((2,) + s, jnp.int32), in_shape,
                         is_leaf=lambda s: isinstance(s, tuple))
    y, _ = jax.eval_shape(lambda x: layer.apply({}, {}, x), specs)
    assert str(y.dtype) == dtype


@pytest.mark.parametrize("name, kwargs, in_shape, out_shape", [
    ("Add", {}, [(None, 3), (1, 3)], (None, 3)),
    ("Add", {}, [(None, 3), (5, 3)], (5, 3)),
    ("Concatenate", {"axis": 1}, [(None, 3), (4, 3)], (None, 3)),
    ("Concatenate", {}, [(None, 3), (4, 2)], (4, 5)),
    ("Dot", {"axes": 2}, [(None, 3), (5, 3)], (None, 5)),
    ("Permute", {"dims": (2, 1)}, (None, 3), (3, None)),
    ("UpSampling1D", {}, (None, 3), (None, 3)),
    ("ZeroPadding1D", {}, (None, 3), (None, 3)),
    ("Cropping1D", {}, (None, 3), (None, 3)),
    ("Cropping2D", {"cropping": 1}, (None, 4, 3), (None, 2, 3)),
])
def test_variable_length_axes_stay_unknown(name, kwargs, in_shape, out_shape):
    assert make(name, kwargs).sample_output_shape(in_shape) == out_shape


# -- values -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, in_shape, out_shape", ARGS, ids=IDS)
def test_values_match_keras(name, kwargs, in_shape, out_shape):
    layer = make(name, kwargs)
    x = data(in_shape)
    ours = run(layer, x)
    reference = getattr(keras.layers, name)(**kwargs)
    expected = np.asarray(reference(x))
    # No weights on either side: set_weights takes kilnet's (empty) list in Keras's order.
    assert layer.get_weights() == [] and reference.get_weights() == []
    reference.set_weights(layer.get_weights())
    assert ours.shape == expected.shape == (3,) + out_shape
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


NUMPY_REFERENCES = {
    "add_broadcast_ranks": lambda a, b, c: a + b + c[:, None, :],
    "subtract": lambda a, b: a - b,
    "multiply_broadcast": lambda a, b: a * b[:, None],
    "average": lambda a, b, c: (a + b + c) / 3,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "concatenate_axis1": lambda *xs: np.concatenate(xs, axis=1),
    "dot_vectors": lambda a, b: np.sum(a * b, axis=1, keepdims=True),
    "dot_pair": lambda a, b: np.einsum("nij,nki->njk", a, b),
    "dot_last_normalize": lambda a, b: np.einsum(
        "nik,njk->nij", a / np.linalg.norm(a, axis=-1, keepdims=True),
        b / np.linalg.norm(b, axis=-1, keepdims=True)),
    "dot_matrix_vector": lambda a, b: np.einsum("nij,nj->ni", a, b),
    "permute_3d": lambda x: x.transpose(0, 3, 1, 2),
    "repeat_vector": lambda x: np.stack([x] * 3, axis=1),
    "upsampling1d_3": lambda x: np.repeat(x, 3, axis=1),
    "upsampling2d": lambda x: x.repeat(2, axis=1).repeat(2, axis=2),
    "zeropadding1d_pair": lambda x: np.pad(x, ((0, 0), (0, 2), (0, 0))),
    "zeropadding2d_sides": lambda x: np.pad(x, ((0, 0), (1, 0), (2, 3), (0, 0))),
    "cropping1d_end": lambda x: x[:, :3],
    "cropping2d_sides": lambda x: x[:, 1:, 2:5],
}


@pytest.mark.parametrize("case", sorted(NUMPY_REFERENCES))
def test_values_match_numpy(case):
    name, kwargs, in_shape, _ = ARGS[IDS.index(case)]
    x = data(in_shape, seed=1)
    expected = NUMPY_REFERENCES[case](*(x if isinstance(x, list) else [x]))
    np.testing.assert_allclose(run(make(name, kwargs), x), expected, rtol=1e-5, atol=1e-6)


def test_bilinear_upsampling_interpolates_between_pixels():
    # A ramp 0, 1 doubled: half-pixel centers give 0, .25, .75, 1 (Keras on JAX, TF's
    # half_pixel_centers), edges clamped.
    x = np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1)
    y = run(layers.UpSampling2D((1, 2), interpolation="bilinear"), x)
    np.testing.assert_allclose(y[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_called_eagerly_on_lists_of_arrays():
    a, b = data([(2, 3), (2, 3)])
    add = layers.Add()
    np.testing.assert_allclose(np.asarray(add([a, b])), a + b, rtol=1e-6)
    # Built once, called again: other shapes are checked, not broadcast silently.
    with pytest.raises(ValueError, match=r"\(None, 2, 3\) and \(None, 4\)"):
        add([a, np.ones((3, 4), np.float32)])
    np.testing.assert_allclose(np.asarray(layers.Concatenate()((a, b))),
                               np.concatenate([a, b], -1))


# -- gradients --------------------------------------------------------------------------------
def weighted_sum(*shape_of_output):
    """A scalar of an output that weighs every element differently (a plain sum would hide
    a misplaced value)."""
    weights = np.random.default_rng(5).normal(size=shape_of_output)
    return lambda y: jnp.sum(jnp.asarray(weights) * y)


def test_merge_gradients_match_finite_differences():
    r = np.random.default_rng(3)
    dot = layers.Dot(axes=(1, 2), normalize=True)
    w = weighted_sum(2, 5, 4)
    check_grad(lambda a, b: w(dot.apply({}, {}, [a, b])[0]),
               r.normal(size=(2, 3, 5)), r.normal(size=(2, 4, 3)))
    # Broadcasting in the forward pass is a sum in the backward pass.
    multiply = layers.Multiply()
    w = weighted_sum(2, 4, 3)
    check_grad(lambda a, b, c: w(multiply.apply({}, {}, [a, b, c])[0]),
               r.normal(size=(2, 4, 3)), r.normal(size=(2, 1, 3)), r.normal(size=(2, 3)))
    concatenate = layers.Concatenate(axis=1)
    w = weighted_sum(2, 5, 2)
    check_grad(lambda a, b: w(concatenate.apply({}, {}, [a, b])[0]),
               r.normal(size=(2, 2, 2)), r.normal(size=(2, 3, 2)))


def test_reshaping_gradients_match_finite_differences():
    r = np.random.default_rng(4)
    chain = [layers.ZeroPadding2D(((1, 0), (0, 2))), layers.UpSampling2D(
        interpolation="bilinear"), layers.Cropping2D(((1, 2), (0, 3))), layers.Permute((3, 1, 2))]

    def forward(x):
        for layer in chain:
            x = layer.apply({}, {}, x)[0]
        return x

    w = weighted_sum(2, 2, 5, 9)
    check_grad(lambda x: w(forward(x)), r.normal(size=(2, 3, 4, 2)))
    repeat, up = layers.RepeatVector(2), layers.UpSampling1D(3)
    w = weighted_sum(2, 6, 3)
    check_grad(lambda x: w(up.apply({}, {}, repeat.apply({}, {}, x)[0])[0]),
               r.normal(size=(2, 3)))


# -- configs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, in_shape, out_shape", ARGS, ids=IDS)
def test_config_round_trips_with_keras_keys(name, kwargs, in_shape, out_shape):
    layer = make(name, kwargs)
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    assert kilnet.layers.LAYER_TYPES[name] is type(layer)
    theirs = getattr(keras.layers, name)(**kwargs).get_config()
    assert set(config) == set(theirs) and config["dtype"] == theirs["dtype"]
    for key in layer.config_keys:
        assert plain(config[key]) == plain(theirs[key]), key
    # A Keras config makes the same kilnet layer.
    from_keras = type(layer).from_config(theirs)
    assert {k: v for k, v in from_keras.get_config().items() if k != "name"} == {
        k: v for k, v in config.items() if k != "name"}


# -- models -----------------------------------------------------------------------------------
def fits_and_reloads(model, x, y, tmp_path, *, loss="mse", epochs=6):
    """Train a few epochs (the loss must fall), then save, load, predict bitwise the same."""
    # Weights drawn from seed 0, not from the OS; the loss judged on the whole data before and
    # after training: the first epoch's mean training loss already includes its own progress,
    # and with Adam's default rate the fall was 2-8% only (10 weight draws: 1.8% at worst).
    # At 0.01, after/before over 11 weight and data draws: 0.77 at worst (Concatenate).
    model.build(seed=0)
    model.compile(optimizer=kilnet.optimizers.Adam(0.01), loss=loss)
    assert_fit_lowers_loss(model, x, y, 0.9, epochs=epochs, batch_size=16, seed=0)
    path = tmp_path / "m.kilnet"
    model.save(path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    return loaded


def test_two_inputs_merged_by_concatenate_train_and_reload(tmp_path):
    left, right = kilnet.Input(shape=(5,), name="left"), kilnet.Input(shape=(3,), name="right")
    hidden = layers.Dense(4, activation="relu", name="hidden")(left)
    joined = layers.Concatenate(name="join")([hidden, right])
    model = kilnet.Model([left, right], layers.Dense(1, name="head")(joined))
    r = np.random.default_rng(0)
    x = [r.normal(size=(48, 5)).astype(np.float32), r.normal(size=(48, 3)).astype(np.float32)]
    y = (x[0][:, :1] - 2 * x[1][:, 1:2]).astype(np.float32)
    loaded = fits_and_reloads(model, x, y, tmp_path)
    assert type(loaded.get_layer("join")) is layers.Concatenate
    # The model computes what its layers say: Dense(concat(relu(left @ k + b), right)).
    (k1, b1), (k2, b2) = (model.get_layer(n).get_weights() for n in ("hidden", "head"))
    expected = np.concatenate([np.maximum(x[0] @ k1 + b1, 0), x[1]], -1) @ k2 + b2
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)


def test_residual_connection_with_add_trains_and_reloads(tmp_path):
    inputs = kilnet.Input(shape=(6,))
    h = layers.Dense(6, activation="relu")(inputs)
    h = layers.Dense(6, name="block_out")(h)
    out = layers.Dense(1, name="head")(layers.Add(name="residual")([inputs, h]))
    model = kilnet.Model(inputs, out)
    r = np.random.default_rng(1)
    x = r.normal(size=(48, 6)).astype(np.float32)
    y = (x.sum(axis=1, keepdims=True) + np.abs(x[:, :1])).astype(np.float32)
    fits_and_reloads(model, x, y, tmp_path)
    # The skip path is an identity: with the block's last kernel and bias zeroed, the model
    # is the head on the input alone.
    block = model.get_layer("block_out")
    block.set_weights([np.zeros_like(w) for w in block.get_weights()])
    kernel, bias = model.get_layer("head").get_weights()
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ kernel + bias, rtol=1e-5,
                               atol=1e-5)


def test_every_merge_in_one_model_trains_and_reloads(tmp_path):
    a, b = kilnet.Input(shape=(4,)), kilnet.Input(shape=(4,))
    ha, hb = layers.Dense(4, activation="tanh")(a), layers.Dense(4, activation="tanh")(b)
    parts = [layers.Subtract()([ha, hb]), layers.Multiply()([ha, hb]),
             layers.Average()([ha, hb, a]), layers.Maximum()([ha, hb]),
             layers.Minimum()([ha, hb]), layers.Dot(axes=1, normalize=True)([ha, hb]),
             layers.Dot(axes=(1, 1))([a, hb])]
    model = kilnet.Model([a, b], layers.Dense(1)(layers.Concatenate()(parts)))
    r = np.random.default_rng(2)
    x = [r.normal(size=(48, 4)).astype(np.float32) for _ in range(2)]
    y = (x[0] * x[1]).sum(axis=1, keepdims=True).astype(np.float32)
    fits_and_reloads(model, x, y, tmp_path)


def test_image_reshaping_layers_in_a_sequential_train_and_reload(tmp_path):
    model = kilnet.Sequential([
        kilnet.Input(shape=(6, 6, 1)),
        layers.ZeroPadding2D(1),
        layers.Conv2D(2, 3, activation="relu"),
        layers.Cropping2D(((1, 1), (0, 2))),
        layers.UpSampling2D((1, 2), interpolation="bilinear"),
        layers.UpSampling2D(),
        layers.Flatten(),
        layers.Dense(1),
    ])
    r = np.random.default_rng(3)
    x = r.normal(size=(32, 6, 6, 1)).astype(np.float32)
    y = x[:, 2:4, 2:4, 0].mean(axis=(1, 2))[:, None]
    fits_and_reloads(model, x, y, tmp_path)


def test_sequence_reshaping_layers_in_a_sequential_train_and_reload(tmp_path):
    model = kilnet.Sequential([
        kilnet.Input(shape=(3,)),
        layers.RepeatVector(4),
        layers.Permute((2, 1)),
        layers.ZeroPadding1D((1, 0)),
        layers.UpSampling1D(2),
        layers.Cropping1D((1, 2)),
        layers.Flatten(),
        layers.Dense(2),
    ])
    r = np.random.default_rng(4)
    x = r.normal(size=(32, 3)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2]], axis=1)
    fits_and_reloads(model, x, y, tmp_path)


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, kwargs, error, match", [
    ("Concatenate", {"axis": 0}, ValueError, r"batch axis.*axis=0"),
    ("Concatenate", {"axis": 1.5}, TypeError, r"axis must be an integer.*axis=1.5"),
    ("Dot", {"axes": (1, 2, 3)}, ValueError, r"pair of them.*axes=\(1, 2, 3\)"),
    ("Dot", {"axes": "1"}, TypeError, r"axes must be an integer.*axes='1'"),
    ("Dot", {"axes": (0, 1)}, ValueError, r"batch axis.*axes=0"),
    ("Dot", {"axes": 1, "normalize": "yes"}, TypeError, r"normalize=.yes."),
    ("Permute", {"dims": (1, 3)}, ValueError, r"permutation of 1..n.*dims=\(1, 3\)"),
    ("Permute", {"dims": (0, 1)}, ValueError, r"dims=\(0, 1\)"),
    ("Permute", {"dims": 2}, ValueError, r"dims=2"),
    ("Permute", {"dims": ()}, ValueError, r"dims=\(\)"),
    ("RepeatVector", {"n": 0}, ValueError, r"positive.*n=0"),
    ("RepeatVector", {"n": 2.0}, TypeError, r"integer.*n=2.0"),
    ("UpSampling1D", {"size": 0}, ValueError, r"size=0"),
    ("UpSampling1D", {"size": (2,)}, TypeError, r"size=\(2,\)"),
    ("UpSampling2D", {"size": (2, 0)}, ValueError, r"positive.*size=\(2, 0\)"),
    ("UpSampling2D", {"size": (2, 2, 2)}, ValueError, r"tuple of 2.*size=\(2, 2, 2\)"),
    ("UpSampling2D", {"interpolation": "area"}, ValueError,
     r"'nearest', 'bilinear'.*interpolation='area'"),
    ("UpSampling2D", {"data_format": "channels_first"}, ValueError,
     r"channels_last.*data_format='channels_first'"),
    ("ZeroPadding1D", {"padding": -1}, ValueError, r"non-negative.*padding=-1"),
    ("ZeroPadding1D", {"data_format": "channels_first"}, ValueError, r"channels_last"),
    ("ZeroPadding2D", {"padding": (1, 2, 3)}, ValueError, r"pair of pairs.*padding=\(1, 2, 3\)"),
    ("ZeroPadding2D", {"padding": ((1, 2), (3,))}, ValueError, r"padding=\(3,\)"),
    ("ZeroPadding2D", {"data_format": "channels_first"}, ValueError, r"channels_last"),
    ("Cropping1D", {"cropping": (1, -1)}, ValueError, r"cropping=\(1, -1\)"),
    ("Cropping2D", {"cropping": "1"}, ValueError, r"cropping='1'"),
    ("Cropping2D", {"data_format": "channels_first"}, ValueError, r"channels_last"),
    ("Add", {"axis": 1}, TypeError, r"unexpected keyword arguments \['axis'\]"),
])
def test_bad_arguments_are_clear_errors(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(name, kwargs)


@pytest.mark.parametrize("name, kwargs, in_shape, match", [
    ("Add", {}, (3,), r"list of tensors, e.g. Add\(\)\(\[a, b\]\).*\(None, 3\)"),
    ("Add", {}, [(3,), (4,)], r"incompatible shapes: \(None, 3\) and \(None, 4\)"),
    ("Maximum", {}, [(2, 3), (3, 3)], r"\(None, 2, 3\) and \(None, 3, 3\)"),
    ("Subtract", {}, [(3,)] * 3, r"exactly 2 inputs.*3 inputs"),
    ("Concatenate", {}, [(2, 3), (3, 3)], r"same sizes except.*\(None, 2, 3\), \(None, 3, 3\)"),
    ("Concatenate", {}, [(2, 3), (3,)], r"same rank"),
    ("Concatenate", {"axis": 3}, [(2, 3), (2, 3)], r"axis=3 is out of range"),
    ("Dot", {"axes": 1}, [(3,), (4,)], r"axis 1 of the first input has 3.*has 4"),
    ("Dot", {"axes": 1}, [(3,)], r"exactly 2 inputs"),
    ("Dot", {"axes": 3}, [(3, 2), (3, 2)], r"axes=3 is out of range"),
    ("Permute", {"dims": (2, 1)}, (2, 3, 4), r"Permute expects samples.*\(None, 2, 3, 4\)"),
    ("RepeatVector", {"n": 2}, (2, 3), r"\(features,\).*\(None, 2, 3\)"),
    ("UpSampling2D", {}, (4, 4), r"\(height, width, channels\).*\(None, 4, 4\)"),
    ("Cropping1D", {"cropping": (2, 1)}, (3, 1), r"nothing would be left.*\(None, 3, 1\)"),
    ("Cropping2D", {"cropping": 2}, (5, 4, 1), r"crop 2 \+ 2 of an axis of size 4"),
])
def test_bad_input_shapes_are_clear_errors(name, kwargs, in_shape, match):
    with pytest.raises(ValueError, match=match):
        make(name, kwargs).sample_output_shape(in_shape)
    # The same error, with the layer named, when a model is being made.
    inputs = ([kilnet.Input(shape=s) for s in in_shape] if isinstance(in_shape, list)
              else kilnet.Input(shape=in_shape))
    with pytest.raises(ValueError, match=f"cannot take an input.*{match}"):
        make(name, kwargs)(inputs)


def test_reshape_and_flatten_of_an_axis_of_any_length_as_keras():
    """keras.io's CTC speech model reshapes Input((None, 193)) with Reshape((-1, 193, 1)):
    the -1 axis is unknown too (as Keras's symbolic shapes), and the arrays of any length
    reshape when they come."""
    for target in [(-1, 4, 1), (2, -1), (-1, 2, 2)]:
        ours = kilnet.layers.Reshape(target)(kilnet.Input((None, 4))).shape
        assert ours == keras.layers.Reshape(target)(keras.Input((None, 4))).shape
    assert kilnet.layers.Flatten()(kilnet.Input((None, 4))).shape == \
        keras.layers.Flatten()(keras.Input((None, 4))).shape == (None, None)
    inputs = kilnet.Input((None, 6))
    x = kilnet.layers.Reshape((-1, 6, 1))(inputs)
    x = kilnet.layers.Conv2D(2, 3, padding="same")(x)
    outputs = kilnet.layers.Dense(3)(kilnet.layers.Reshape((-1, 12))(x))
    model = kilnet.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 7, 6), np.float32), np.ones((4, 7, 3), np.float32), verbose=0)
    assert model.predict(np.ones((2, 5, 6), np.float32), verbose=0).shape == (2, 5, 3)
