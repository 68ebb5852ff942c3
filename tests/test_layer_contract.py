"""One contract test for every layer kilnet can save (kilnet.layers.LAYER_TYPES).

Each layer family has its own detailed tests; this harness makes sure that no layer misses a
part of the contract the others keep: output shape and dtype as declared, values as Keras 3
computes them (with the same weights), gradients against finite differences, a config that
round-trips, bitwise-equal predictions after save/load, masks honoured, and a compiled fit.
The spec table is in tests/_layer_specs.py; a layer added to LAYER_TYPES without a spec fails
`test_every_layer_type_has_a_spec`.
"""

from __future__ import annotations

import dataclasses
import json
import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _layer_specs import SPECS  # noqa: E402
from conftest import check_grad  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers  # noqa: E402

# Keras's twins here get kilnet's weights or only need random ones (conftest).
pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

BATCH = 2


def params_of(specs):
    return [pytest.param(s, id=s.name, marks=s.marks) for s in specs]


def make_inputs(spec, batch=BATCH, seed=0):
    """Inputs away from 0 (the kinks of relu-like layers); ids 1..6 for Embedding (0 masks)."""
    r = np.random.default_rng(seed)
    if spec.dtype == "int32":
        return [r.integers(1, 7, (batch,) + s).astype(np.int32) for s in spec.shapes]
    return [(r.choice([-1.0, 1.0], (batch,) + s) * r.uniform(0.2, 2.0, (batch,) + s))
            .astype(np.float32) for s in spec.shapes]


def pack(spec, xs):
    """The positional arguments of a call on the inputs `xs`."""
    if spec.call == "one":
        return (xs[0],)
    if spec.call == "list":
        return (list(xs),)
    return tuple(xs)


def init_shape(spec):
    return spec.shapes[0] if spec.call == "one" else [tuple(s) for s in spec.shapes]


def symbolic_inputs(spec):
    return [kilnet.Input(shape=s, dtype=spec.dtype) for s in spec.shapes]


def built(spec, seed=0):
    """A kilnet layer with its weights drawn (the pure form: params, state)."""
    layer = spec.make(layers)
    params, state, out_shape = layer.init(np.random.default_rng(seed), init_shape(spec))
    return layer, params, state, out_shape


def run(layer, spec, params, state, xs):
    return jax.jit(lambda p, s, xs: layer.apply(p, s, *pack(spec, xs))[0])(params, state, xs)


def canonical(config):
    """A config as JSON text: arrays and tuples compare as lists."""
    return json.dumps(config, sort_keys=True,
                      default=lambda o: np.asarray(o).tolist())


# -- the table is complete ----------------------------------------------------------------------
def test_every_layer_type_has_a_spec():
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names)), "a layer has two specs"
    # the string layers run on the host, not in a compiled program: test_string_inputs and
    # the preprocessing tests compare them with Keras
    assert set(names) == set(layers.LAYER_TYPES) - {"InputLayer", "StringLookup",
                                                     "TextVectorization"}
    for spec in SPECS:
        assert type(spec.make(layers)) is layers.LAYER_TYPES[spec.name]


# -- shape and dtype ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", params_of(SPECS))
def test_output_shape_and_dtype(spec):
    layer, params, state, declared = built(spec)
    xs = make_inputs(spec)
    y = run(layer, spec, params, state, xs)
    symbolic = spec.make(layers)(*pack(spec, symbolic_inputs(spec)))
    assert tuple(declared) == tuple(layer.sample_output_shape(init_shape(spec)))
    assert y.shape == (BATCH,) + tuple(declared)
    assert symbolic.shape == (None,) + tuple(declared)
    assert y.dtype == np.dtype(symbolic.dtype) == np.dtype(spec.out_dtype)


# -- values -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", params_of(SPECS))
def test_values_match_keras_or_numpy(spec):
    layer = spec.make(layers)
    xs = make_inputs(spec, seed=1)
    y = np.asarray(layer(*pack(spec, xs), training=False))
    weights = layer.get_weights()
    if spec.reference is not None:
        expected = spec.reference(xs, weights)
    else:
        assert spec.keras, f"{spec.name}: a spec needs Keras or a NumPy reference"
        twin = spec.make(keras.layers)
        twin(*pack(spec, xs), training=False)  # builds the Keras weights
        twin.set_weights(weights)  # proves the weight order and shapes too
        expected = np.asarray(twin(*pack(spec, xs), training=False))
    np.testing.assert_allclose(y, expected, rtol=spec.rtol, atol=spec.atol)


# -- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", params_of([s for s in SPECS if s.grad]))
def test_gradients_match_finite_differences(spec):
    layer, params, state, out_shape = built(spec)
    leaves, treedef = jax.tree.flatten(params)
    xs = make_inputs(spec, seed=2)
    weights = np.random.default_rng(3).normal(size=(BATCH,) + tuple(out_shape))
    n = len(xs)

    def loss(*args):
        y, _ = layer.apply(jax.tree.unflatten(treedef, list(args[n:])), state,
                           *pack(spec, list(args[:n])))
        return (y * weights).sum()

    check_grad(loss, *xs, *leaves, rtol=1e-4, atol=1e-6)


# -- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", params_of(SPECS))
def test_config_round_trip(spec):
    layer = spec.make(layers)
    config = layer.get_config()
    again = type(layer).from_config(config)
    assert canonical(again.get_config()) == canonical(config)


# Keys kilnet always writes that some Keras configs leave out: Keras's SpatialDropout drops
# "trainable", and its Dense writes "activity_regularizer" only when one is set.
ALWAYS_WRITTEN = {"trainable", "activity_regularizer"}


@pytest.mark.parametrize("spec", params_of([s for s in SPECS if s.keras]))
def test_config_keys_are_keras_keys(spec):
    ours = set(spec.make(layers).get_config()) - ALWAYS_WRITTEN
    theirs = set(spec.make(keras.layers).get_config())
    assert ours - theirs == set(), f"keys Keras does not have: {sorted(ours - theirs)}"


# RandomShear's x_factor / y_factor stay as given: Keras 3.15 writes the (-f, f) pair its own
# constructor refuses (tests/test_augmentation_more.py).
AS_GIVEN = {("RandomShear", "x_factor"), ("RandomShear", "y_factor")}


@pytest.mark.parametrize("spec", params_of([s for s in SPECS if s.keras]))
def test_config_keeps_keras_tuples(spec):
    """Where Keras's get_config() gives a tuple (kernel_size, strides, pool_size, padding,
    target_shape, ...), kilnet's gives the same tuple: code such as `config["kernel_size"] ==
    (5, 5)` reads the same in both."""
    ours, theirs = spec.make(layers).get_config(), spec.make(keras.layers).get_config()
    name = type(spec.make(layers)).__name__
    for key, value in theirs.items():
        if isinstance(value, tuple) and key in ours and (name, key) not in AS_GIVEN:
            assert isinstance(ours[key], tuple) and ours[key] == value, (key, ours[key], value)


# -- saving -------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", params_of(SPECS))
@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_save_load_predictions_are_bitwise_equal(spec, tmp_path):
    inputs = symbolic_inputs(spec)
    outputs = spec.make(layers)(*pack(spec, inputs))
    model = kilnet.Model(inputs if len(inputs) > 1 else inputs[0], outputs)
    xs = make_inputs(spec, batch=3)
    feed = xs if len(xs) > 1 else xs[0]
    before = np.asarray(model.predict(feed, verbose=0))
    model.save(tmp_path / "m.kilnet")
    after = np.asarray(kilnet.models.load_model(tmp_path / "m.kilnet").predict(feed, verbose=0))
    np.testing.assert_array_equal(after, before)


# -- masking ------------------------------------------------------------------------------------
MASKING_SPECS = [s for s in SPECS
                 if s.make(layers).supports_masking and not s.no_mask_check]
PADDED = 2  # masked steps at the end of each sequence


def masking_model(spec):
    """Masking (or Embedding(mask_zero=True) itself) -> the layer -> a masked mean over time,
    on sequences of any length."""
    steps = spec.mask_shape or (4,) + spec.shapes[0][-1:]
    inputs = kilnet.Input(shape=(None,) + tuple(steps[1:]), dtype=spec.dtype)
    layer = (spec.mask_make or spec.make)(layers)
    masked = inputs if spec.dtype == "int32" else layers.Masking()(inputs)
    if spec.name == "Embedding":
        out = layer(masked)
    else:
        out = layer(*pack(spec, [masked] * len(spec.shapes)))
    if len(out.shape) == 3:
        out = layers.GlobalAveragePooling1D()(out)  # consumes the mask
    return kilnet.Model(inputs, out), steps


@pytest.mark.parametrize("spec", params_of(MASKING_SPECS))
def test_masked_steps_change_nothing(spec):
    """A sequence padded with masked steps gives what its unpadded prefix gives."""
    model, steps = masking_model(spec)
    full = make_inputs(dataclasses.replace(spec, shapes=[tuple(steps)]), batch=3, seed=4)[0]
    full[:, -PADDED:] = 0  # the mask value (and Embedding's mask id)
    padded = np.asarray(model.predict(full, verbose=0))
    prefix = np.asarray(model.predict(full[:, :-PADDED], verbose=0))
    np.testing.assert_allclose(padded, prefix, rtol=1e-5, atol=1e-6)


# Layers Keras lets a mask through that kilnet does not (each an xfail naming the gap).
MASK_GAPS: dict = {}  # layer name -> why its masking differs from Keras (none today)


@pytest.mark.parametrize("spec", [pytest.param(
    s, id=s.name, marks=[pytest.mark.xfail(strict=True, reason=MASK_GAPS[s.name])]
    if s.name in MASK_GAPS else []) for s in SPECS if s.keras])
def test_supports_masking_as_keras(spec):
    assert spec.make(layers).supports_masking == spec.make(keras.layers).supports_masking


def test_masking_specs_are_the_masking_layers():
    """The masking check covers the layers Keras lets a mask through (a sanity floor)."""
    names = {s.name for s in MASKING_SPECS}
    assert {"Dense", "Embedding", "LSTM", "LayerNormalization", "Dropout"} <= names


# -- a compiled fit -----------------------------------------------------------------------------
GROUP = 13
FIT_GROUPS = [SPECS[i:i + GROUP] for i in range(0, len(SPECS), GROUP)]


@pytest.mark.parametrize("group", [pytest.param(
    g, id="+".join(s.name for s in g),
    marks=[m for s in g for m in s.marks]) for g in FIT_GROUPS])
@pytest.mark.filterwarnings("ignore:.*does not support masking")
def test_fit_one_epoch_has_a_finite_loss(group):
    """Several layers side by side in one model (one compilation for the group): each branch
    is flattened and all meet in one Dense unit, so every layer gets a gradient."""
    inputs, branches, feed = [], [], []
    for spec in group:
        ins = symbolic_inputs(spec)
        out = spec.make(layers)(*pack(spec, ins))
        branches.append(layers.Flatten()(out) if len(out.shape) > 2 else out)
        inputs += ins
        feed += make_inputs(spec, batch=6, seed=5)
    model = kilnet.Model(inputs, layers.Dense(1)(layers.Concatenate()(branches)))
    model.compile(optimizer="adam", loss="mse")
    y = np.random.default_rng(6).normal(size=(6, 1)).astype(np.float32)
    history = model.fit(feed, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


ALIASES = ["AvgPool1D", "AvgPool2D", "AvgPool3D", "MaxPool1D", "MaxPool2D", "MaxPool3D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D",
           "GlobalAvgPool3D", "GlobalMaxPool3D",
           "Convolution1D", "Convolution2D", "Convolution3D", "Convolution1DTranspose",
           "Convolution2DTranspose", "SeparableConvolution1D", "SeparableConvolution2D"]


@pytest.mark.parametrize("alias", ALIASES)
def test_keras_aliases_are_the_same_classes(alias):
    """`layers.MaxPool2D` is `layers.MaxPooling2D`, as in Keras, and is saved under the
    class's own name (what Keras writes and reads)."""
    ours = getattr(layers, alias)
    assert ours is layers.LAYER_TYPES[getattr(keras.layers, alias).__name__]
    assert alias in layers.__all__
