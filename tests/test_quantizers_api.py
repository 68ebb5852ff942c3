"""kilnet.quantizers' Keras 3.15 API: the arithmetic functions, the quantizer and
configuration classes, compared with Keras's own numbers and configs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

kq = pytest.importorskip("keras.quantizers", reason="the parity tests need keras (JAX backend)")

from kilnet import quantizers as q  # noqa: E402

RNG = np.random.default_rng(0)
X = (RNG.normal(size=(7, 5)) * 3).astype(np.float32)


def same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_keras_names_present_and_namespace_clean():
    public = {n for n in dir(kq) if not n.startswith("_")} - {"compute_quantization_parameters",
                                                                "dequantize_with_sz_map",
                                                                "quantize_with_sz_map"}
    assert public <= set(q.__all__)
    assert not {"annotations", "jnp", "np"} & set(dir(q))


@pytest.mark.parametrize("to_numpy", [True, False])
@pytest.mark.parametrize("block_size", [2, 3, 7])
def test_grouped_with_zero_point_as_keras(to_numpy, block_size):
    x = X.copy()
    x[:2, 0] = 0.5   # a group whose values are equal
    theirs = kq.abs_max_quantize_grouped_with_zero_point(x, block_size=block_size,
                                                         to_numpy=to_numpy)
    ours = q.abs_max_quantize_grouped_with_zero_point(x, block_size=block_size,
                                                      to_numpy=to_numpy)
    assert all(same(a, b) for a, b in zip(theirs, ours))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_pack_and_unpack_int4_as_keras(axis):
    values = RNG.integers(-8, 8, size=(5, 3, 4)).astype(np.int8)
    theirs, ours = kq.pack_int4(values, axis=axis), q.pack_int4(values, axis=axis)
    assert same(theirs[0], ours[0]) and theirs[1:] == ours[1:]
    assert same(kq.unpack_int4(theirs[0], theirs[2], axis=axis),
                q.unpack_int4(ours[0], ours[2], axis=axis))
    nibbles = RNG.integers(0, 16, size=(5, 4)).astype(np.uint8)
    theirs, ours = kq.pack_int4(nibbles, dtype="uint8"), q.pack_int4(nibbles, dtype="uint8")
    assert same(theirs[0], ours[0])
    assert same(kq.unpack_int4(theirs[0], 5, dtype="uint8"),
                q.unpack_int4(ours[0], 5, dtype="uint8"))
    with pytest.raises(TypeError, match="int8"):
        q.pack_int4(values.astype(np.int32))


@pytest.mark.parametrize("settings", [{}, {"num_bits": 4, "narrow_range": True}])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fake_quant_and_its_gradient_as_keras(settings, per_channel):
    x = RNG.normal(size=(6, 3)).astype(np.float32)
    if per_channel:
        bounds = (jnp.array([-0.5, -1.0, -0.2]), jnp.array([0.5, 1.2, 0.3]))
        settings = {**settings, "axis": -1}
    else:
        bounds = (jnp.float32(-0.6), jnp.float32(0.4))
    weights = jnp.sin(jnp.arange(18.0).reshape(6, 3))

    def gradients(fn):
        return jax.grad(lambda *args: jnp.sum(weights * fn(*args, **settings)),
                        argnums=(0, 1, 2))(jnp.asarray(x), *bounds)

    assert same(kq.fake_quant_with_min_max_vars(x, *bounds, **settings),
                q.fake_quant_with_min_max_vars(x, *bounds, **settings))
    assert all(same(a, b) for a, b in zip(gradients(kq.fake_quant_with_min_max_vars),
                                          gradients(q.fake_quant_with_min_max_vars)))


def test_float8_helpers_as_keras():
    for amax in (np.float32(3.0), np.float32(0.0), np.float32(np.inf),
                 np.array([2.0, 0.0, np.nan], np.float32)):
        for margin in (0, 2):
            assert same(kq.compute_float8_scale(amax, np.float32(0.5), 448.0, margin),
                        q.compute_float8_scale(amax, np.float32(0.5), 448.0, margin))
    history = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    assert same(kq.compute_float8_amax_history(X, history),
                q.compute_float8_amax_history(X, history))
    for quantized in ("float8_e4m3fn", "float8_e5m2"):
        for compute in ("float32", "bfloat16"):
            assert same(kq.quantize_and_dequantize(X * 100, np.float32(0.7), quantized, compute),
                        q.quantize_and_dequantize(X * 100, np.float32(0.7), quantized, compute))


@pytest.mark.parametrize("made, called", [
    ({}, {}), ({"axis": 0, "value_range": (-100, 100)}, {}),
    ({"value_range": (-8, 7), "epsilon": 1e-3}, {"axis": 0, "to_numpy": True})])
def test_abs_max_quantizer_as_keras(made, called):
    theirs, ours = kq.AbsMaxQuantizer(**made), q.AbsMaxQuantizer(**made)
    assert all(same(a, b) for a, b in zip(theirs(X, **called), ours(X, **called)))
    assert theirs.get_config() == ours.get_config()
    with pytest.raises(ValueError, match="value_range"):
        q.AbsMaxQuantizer(value_range=(-200, 200))


def _configs(module):
    absmax = module.AbsMaxQuantizer
    return [absmax(axis=0, value_range=(-100, 100)),
            module.Int8QuantizationConfig(),
            module.Int8QuantizationConfig(weight_quantizer=absmax(value_range=(-100, 100), axis=0),
                                          activation_quantizer=None),
            module.Int4QuantizationConfig(),
            module.Int4QuantizationConfig(weight_quantizer=absmax(value_range=(-8, 7), axis=0),
                                          block_size=None),
            module.Float8QuantizationConfig(),
            module.GPTQConfig(None, None, weight_bits=8, group_size=64),
            module.AWQConfig(None, None, num_grid_points=10)]


def test_configs_serialize_as_keras_and_round_trip():
    for theirs, ours in zip(_configs(kq), _configs(q)):
        entry = kq.serialize(theirs)
        assert q.serialize(ours) == entry
        assert q.serialize(q.deserialize(entry)) == entry
        assert getattr(ours, "mode", None) == getattr(theirs, "mode", None)
    assert q.get("abs_max_quantizer", axis=0).axis == (0,)
    assert q.get(None) is None
    with pytest.raises(NotImplementedError):
        q.Quantizer().get_config()
    with pytest.raises(ValueError, match="block_size"):
        q.Int4QuantizationConfig(weight_quantizer=q.AbsMaxQuantizer(value_range=(-8, 7)))


def test_fake_quant_on_a_symbolic_tensor_is_refused_clearly():
    import kilnet
    with pytest.raises(TypeError, match="inside a Layer's call"):
        q.fake_quant_with_min_max_vars(kilnet.Input((3,)), -1.0, 1.0)
