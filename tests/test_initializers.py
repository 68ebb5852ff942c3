"""Initializer objects with Keras's classes, arguments, configs and formulas: signatures and
configs against Keras 3, constant values against Keras's, random ones against the formulas and
Keras's own draws (moments of 40,000 values), seeds, layers, files both ways, refusals."""

from __future__ import annotations

import inspect
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import kilnet  # noqa: E402
from kilnet import initializers, layers  # noqa: E402
from kilnet.models import load_model  # noqa: E402

CLASSES = sorted(initializers.CLASSES)
SHAPE = (200, 200)


def signature(cls):
    return [(p.name, p.default) for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self"]


@pytest.mark.parametrize("name", CLASSES)
def test_signature_and_config_are_keras(name):
    ours, theirs = getattr(initializers, name), getattr(keras.initializers, name)
    assert signature(ours) == signature(theirs)
    keras_config = theirs().get_config()
    if name == "Identity":
        assert keras_config == {} and ours().get_config() == {"gain": 1.0}
    else:
        assert ours().get_config() == keras_config
    assert type(initializers.get(name)) is ours
    again = initializers.deserialize(initializers.serialize(ours()))
    assert type(again) is ours and again.get_config() == ours().get_config()


def test_every_keras_name_is_there():
    keras_names = {n for n in dir(keras.initializers) if not n.startswith("_")}
    ours = {n for n in dir(initializers) if not n.startswith("_")}
    assert keras_names - ours == set()
    for alias in ("normal", "uniform", "one", "zero", "IdentityInitializer",
                  "OrthogonalInitializer", "truncated_normal", "variance_scaling", "stft",
                  "STFTInitializer"):
        assert (type(initializers.get(alias)).__name__
                == type(keras.initializers.get(alias)).__name__), alias


@pytest.mark.parametrize("make", [
    lambda ns: ns.Constant(0.25), lambda ns: ns.Constant([1.0, 2.0, 3.0]), lambda ns: ns.Zeros(),
    lambda ns: ns.Ones(), lambda ns: ns.Identity(), lambda ns: ns.Identity(gain=3.0)],
    ids=["constant", "constant_row", "zeros", "ones", "identity", "identity_gain"])
def test_constant_values_are_keras(make):
    shape = (2, 3)
    np.testing.assert_array_equal(np.asarray(make(initializers)(shape)),
                                  np.asarray(make(keras.initializers)(shape)))


RANDOM_CASES = [
    ("RandomNormal", dict(mean=0.5, stddev=0.02)),
    ("RandomUniform", dict(minval=-0.3, maxval=0.1)),
    ("TruncatedNormal", dict(mean=-1.0, stddev=0.5)),
    ("VarianceScaling", dict(scale=2.0, mode="fan_out", distribution="uniform")),
    ("VarianceScaling", dict(scale=0.5, mode="fan_avg", distribution="untruncated_normal")),
    ("VarianceScaling", dict(scale=3.0, mode="fan_in", distribution="normal")),
    ("GlorotUniform", {}), ("GlorotNormal", {}), ("HeUniform", {}), ("HeNormal", {}),
    ("LecunUniform", {}), ("LecunNormal", {}),
]


@pytest.mark.parametrize("name, kwargs", RANDOM_CASES,
                         ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in RANDOM_CASES])
def test_random_draws_have_keras_moments_and_range(name, kwargs):
    shape = (400, 100)   # fans 400 and 100: each mode gives another variance
    ours = np.asarray(getattr(initializers, name)(**kwargs, seed=1)(shape))
    theirs = np.asarray(getattr(keras.initializers, name)(**kwargs, seed=1)(shape))
    assert ours.dtype == np.float32 and ours.shape == shape
    np.testing.assert_allclose(ours.mean(), theirs.mean(), atol=0.02 * theirs.std() + 1e-6)
    np.testing.assert_allclose(ours.std(), theirs.std(), rtol=0.02)
    if name == "RandomNormal" or kwargs.get("distribution") == "untruncated_normal":
        assert abs(ours - ours.mean()).max() > 3.5 * ours.std()    # tails beyond truncation
    else:   # the same support: the uniform limits, the truncation at two standard deviations
        assert ours.min() >= theirs.min() - 0.02 * theirs.std()
        assert ours.max() <= theirs.max() + 0.02 * theirs.std()
        assert abs(ours.min() - theirs.min()) < 0.1 * theirs.std()


def test_variance_scaling_follows_the_formula_and_the_fans():
    """Keras's formula by hand: a 3x3 convolution kernel 3 -> 8 has fan_in 27, fan_out 72."""
    values = np.asarray(initializers.VarianceScaling(
        scale=2.0, mode="fan_avg", distribution="uniform", seed=0)((3, 3, 300, 200)))
    limit = np.sqrt(3 * 2.0 / ((9 * 300 + 9 * 200) / 2))
    assert abs(values).max() <= limit and abs(values).max() > 0.99 * limit
    assert initializers.fans((3, 3, 3, 8)) == (27, 72)
    from keras.src.initializers.random_initializers import compute_fans
    for shape, axes in [((5,), None), ((4, 6), None), ((2, 3, 4, 5), None),
                        ((4, 6, 8), ([0, 1], [2]))]:
        kwargs = {} if axes is None else dict(input_axes=axes[0], output_axes=axes[1])
        assert initializers.fans(shape, **kwargs) == compute_fans(shape, **kwargs)


@pytest.mark.parametrize("shape, gain", [((6, 6), 1.0), ((4, 9), 2.0), ((3, 3, 4, 5), 0.5)])
def test_orthogonal_is_orthogonal_times_its_gain(shape, gain):
    q = np.asarray(initializers.Orthogonal(gain=gain, seed=0)(shape)).reshape(-1, shape[-1])
    small = min(q.shape)
    gram = q.T @ q if q.shape[0] >= q.shape[1] else q @ q.T
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(small), atol=1e-5)


def test_seeds_and_the_model_seed():
    seeded = initializers.RandomNormal(seed=7)
    np.testing.assert_array_equal(seeded((3, 3)), seeded((3, 3)))   # as Keras: same every call
    free = initializers.RandomNormal()
    assert not np.array_equal(free((3, 3)), free((3, 3)))

    def kernel(seed, init):
        model = kilnet.Sequential([kilnet.Input(shape=(4,)),
                                   layers.Dense(3, kernel_initializer=init)])
        model.build(seed=seed)
        return model.layers[0].kernel.numpy()

    init = initializers.RandomNormal(stddev=0.02)
    np.testing.assert_array_equal(kernel(0, init), kernel(0, init))   # the model seed decides
    assert not np.array_equal(kernel(0, init), kernel(1, init))
    np.testing.assert_array_equal(kernel(0, seeded), kernel(1, seeded))  # its own seed decides


def test_the_imbalanced_data_tutorials_output_bias():
    """keras.io's imbalanced classification: `bias_initializer=Constant(np.log([pos / neg]))`."""
    initial_bias = np.log([28.0 / 2840.0])
    model = kilnet.Sequential([kilnet.Input(shape=(5,)), layers.Dense(16, activation="relu"),
                               layers.Dense(1, activation="sigmoid",
                                            bias_initializer=initializers.Constant(initial_bias))])
    model.build(seed=0)
    np.testing.assert_allclose(model.layers[1].bias.numpy(), initial_bias.astype(np.float32))
    predictions = model.predict(np.zeros((4, 5), np.float32), verbose=0)
    assert abs(float(predictions.mean()) - 28.0 / (28.0 + 2840.0)) < 0.01


@kilnet.saving.register_serializable(package="TestInit")
class Halves(initializers.Initializer):
    """Keras's form of a custom initializer: __call__(shape, dtype) and get_config."""

    def __init__(self, scale=0.5):
        self.scale = scale

    def __call__(self, shape, dtype=None):
        return np.full(shape, self.scale, dtype or "float32")

    def get_config(self):
        return {"scale": self.scale}


def test_objects_in_configs_and_kilnet_files(tmp_path):
    inputs = kilnet.Input(shape=(3,))
    h = layers.Dense(4, kernel_initializer=initializers.HeNormal(seed=2),
                     bias_initializer=initializers.Constant(0.1))(inputs)
    h = layers.LSTM(2, recurrent_initializer=initializers.Orthogonal(gain=0.5))(
        layers.Reshape((2, 2))(h))
    outputs = layers.Dense(1, kernel_initializer=Halves(0.25))(h)
    model = kilnet.Model(inputs, outputs)
    config = model.layers[1].get_config()
    assert config["kernel_initializer"] == {
        "module": "keras.initializers", "class_name": "HeNormal",
        "config": {"seed": 2, "input_axes": None, "output_axes": None}, "registered_name": None}
    assert model.layers[-1].get_config()["kernel_initializer"] == {
        "module": Halves.__module__, "class_name": "Halves", "config": {"scale": 0.25},
        "registered_name": "TestInit>Halves"}
    x = np.ones((2, 3), np.float32)
    before = model.predict(x, verbose=0)
    np.testing.assert_array_equal(model.layers[-1].kernel.numpy(), 0.25)
    model.save(tmp_path / "m.kilnet")
    again = load_model(tmp_path / "m.kilnet")
    np.testing.assert_array_equal(again.predict(x, verbose=0), before)
    assert again.get_config() == model.get_config()
    clone = kilnet.models.clone_model(model)
    clone.build(seed=5)
    np.testing.assert_array_equal(clone.layers[-1].kernel.numpy(), 0.25)
    np.testing.assert_allclose(clone.layers[1].bias.numpy(), 0.1)


def test_keras_files_keep_initializers_both_ways(tmp_path):
    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.02),
                           bias_initializer=keras.initializers.Constant(0.3))(inputs)
    outputs = keras.layers.Dense(2, kernel_initializer=keras.initializers.VarianceScaling(
        0.5, "fan_out", "uniform"))(h)
    keras.Model(inputs, outputs).save(tmp_path / "k.keras")
    ours = load_model(tmp_path / "k.keras")
    dense, out = ours.layers[1], ours.layers[2]
    assert initializers.get(dense.kernel_initializer).get_config() == {
        "seed": None, "mean": 0.0, "stddev": 0.02}
    assert initializers.get(dense.bias_initializer).get_config() == {"value": 0.3}
    assert initializers.get(out.kernel_initializer).get_config()["mode"] == "fan_out"
    ours.save(tmp_path / "ours.keras")
    back = keras.models.load_model(tmp_path / "ours.keras")
    kernel_init = back.layers[1].kernel_initializer
    assert type(kernel_init) is keras.initializers.RandomNormal
    assert kernel_init.stddev == 0.02
    assert back.layers[1].bias_initializer.value == 0.3
    assert back.layers[2].kernel_initializer.distribution == "uniform"


def test_bad_initializers_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"Unknown initializer.*glorot_uniform.*Received: "
                                         "'glorot'"):
        layers.Dense(2, kernel_initializer="glorot")
    with pytest.raises(ValueError, match="mode must be one of"):
        initializers.VarianceScaling(mode="fan")
    with pytest.raises(ValueError, match="distribution must be one of"):
        initializers.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="scale must be a positive number"):
        initializers.VarianceScaling(scale=0)
    with pytest.raises(ValueError, match="2-D weights only"):
        initializers.Identity()((2, 2, 2))
    with pytest.raises(ValueError, match="seed must be an integer"):
        initializers.RandomNormal(seed="1")
    with pytest.raises(ValueError, match="Unknown initializer class 'os.system'"):
        initializers.deserialize({"class_name": "os.system", "config": {}})
    with pytest.raises(ValueError, match="invalid config"):
        initializers.deserialize({"class_name": "RandomNormal", "config": {"sigma": 1}})


class _HighestDraws:
    """A NumPy generator stand-in whose every uniform draw is the largest float32 below 1."""

    def random(self, shape, dtype):
        return np.full(shape, np.nextafter(np.float32(1), np.float32(0)), dtype)


@pytest.mark.parametrize("minval, maxval", [(0.1, 0.15), (0.1, 0.11), (-0.05, 0.05), (0.0, 1.0)])
def test_uniform_draws_stay_below_maxval_in_float32(minval, maxval):
    """Uniform numbers are drawn in float32 and scaled there; where that rounding would reach
    maxval itself ((0.1, 0.15) and (0.1, 0.11) do), the largest float32 below it is kept."""
    values = initializers.RandomUniform(minval, maxval).draw(_HighestDraws(), (3,))
    assert values.dtype == np.float32
    assert (values < maxval).all() and (values >= minval).all()
    assert (values >= np.nextafter(np.float32(maxval), np.float32(0)) - 1e-6).all()
