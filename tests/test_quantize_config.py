"""`quantize(config=Int8QuantizationConfig(...))`: custom weight and inputs quantizers on
kilnet's int8 layers, compared with Keras 3.15's kernels, scales, outputs and configs."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402

X = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32) * 2


def _per_tensor(lib):
    class PerTensorQuantizer(lib.quantizers.Quantizer):
        """One scale for the whole tensor (the guide's custom quantizer form)."""

        def __call__(self, x, axis=None, to_numpy=False):
            ops = lib.ops
            scale = ops.divide(100.0, ops.add(ops.max(ops.abs(x)), 1e-7))
            quantized = ops.clip(ops.round(ops.multiply(x, scale)), -100, 100)
            # a kernel's scale has one entry per output channel; the inputs' one broadcasts
            per_channel = (1,) * (len(x.shape) - 1) + (x.shape[-1],)
            scale = ops.ones(per_channel if axis is None else (1,) * len(x.shape)) * scale
            return ops.cast(quantized, "int8"), scale

        def get_config(self):
            return {"output_dtype": self.output_dtype}
    return PerTensorQuantizer


CASES = {
    "both ranges": lambda q: q.Int8QuantizationConfig(
        weight_quantizer=q.AbsMaxQuantizer(value_range=(-100, 100), axis=0),
        activation_quantizer=q.AbsMaxQuantizer(value_range=(-100, 100), axis=-1)),
    "weights only": lambda q: q.Int8QuantizationConfig(
        weight_quantizer=q.AbsMaxQuantizer(value_range=(-50, 50), axis=0, epsilon=1e-3),
        activation_quantizer=None),
    "inputs only": lambda q: q.Int8QuantizationConfig(
        activation_quantizer=q.AbsMaxQuantizer(value_range=(-20, 20))),
}


def _dense_model(lib, seed_weights=None):
    model = lib.Sequential([lib.Input(shape=(10,)), lib.layers.Dense(32, activation="relu",
                                                                     name="d0"),
                            lib.layers.Dense(1, name="d1")])
    if seed_weights is not None:
        model.set_weights(seed_weights)
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_dense_with_config_as_keras(case):
    keras.backend.clear_session()
    theirs = _dense_model(keras)
    ours = _dense_model(kilnet, theirs.get_weights())
    theirs.quantize(config=CASES[case](keras.quantizers))
    ours.quantize(config=CASES[case](kilnet.quantizers))
    for a, b in zip(theirs.weights, ours.weights):
        assert a.path == b.path and np.array_equal(np.asarray(a), np.asarray(b)), a.path
    np.testing.assert_allclose(ours.predict(X, verbose=0), theirs.predict(X, verbose=0),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ours(X)), np.asarray(theirs(X)), rtol=0, atol=1e-6)
    assert ours.layers[0].get_config()["quantization_config"] == \
        theirs.layers[0].get_config()["quantization_config"]


def test_einsum_dense_with_config_as_keras():
    def build(lib):
        inputs = lib.Input(shape=(3, 10))
        layer = lib.layers.EinsumDense("abc,cd->abd", output_shape=(None, 6), bias_axes="d",
                                       name="e")
        return lib.Model(inputs, layer(inputs))
    keras.backend.clear_session()
    theirs, ours = build(keras), build(kilnet)
    ours.set_weights(theirs.get_weights())

    def config(q):
        return q.Int8QuantizationConfig(
            weight_quantizer=q.AbsMaxQuantizer(value_range=(-90, 90), axis=0),
            activation_quantizer=q.AbsMaxQuantizer(value_range=(-60, 60)))
    theirs.quantize(config=config(keras.quantizers))
    ours.quantize(config=config(kilnet.quantizers))
    for a, b in zip(theirs.weights, ours.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    x = np.stack([X] * 3, axis=1)
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0),
                               rtol=0, atol=1e-6)


def test_attention_projections_with_config_as_keras():
    def build(lib):
        inputs = lib.Input((3, 8))
        return lib.Model(inputs, lib.layers.MultiHeadAttention(2, 4, name="m")(inputs, inputs))
    keras.backend.clear_session()
    theirs, ours = build(keras), build(kilnet)
    ours.set_weights(theirs.get_weights())
    for model, q in ((theirs, keras.quantizers), (ours, kilnet.quantizers)):
        model.quantize(config=q.Int8QuantizationConfig(
            activation_quantizer=q.AbsMaxQuantizer(value_range=(-30, 30))))
    for a, b in zip(theirs.weights, ours.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    x = np.stack([X[:, :8]] * 3, axis=1)
    np.testing.assert_allclose(np.asarray(ours(x)), np.asarray(theirs(x)), rtol=0, atol=1e-6)


def test_custom_quantizer_subclass_as_keras():
    keras.backend.clear_session()
    theirs = _dense_model(keras)
    ours = _dense_model(kilnet, theirs.get_weights())
    for model, lib in ((theirs, keras), (ours, kilnet)):
        quantizer = _per_tensor(lib)
        model.quantize(config=lib.quantizers.Int8QuantizationConfig(
            weight_quantizer=quantizer(), activation_quantizer=quantizer()))
    for a, b in zip(theirs.weights, ours.weights):
        assert np.array_equal(np.asarray(a), np.asarray(b)), a.path
    np.testing.assert_allclose(np.asarray(ours(X)), np.asarray(theirs(X)), rtol=0, atol=1e-6)


def test_layer_quantize_with_config_and_refusals():
    q = kilnet.quantizers
    layer = kilnet.layers.Dense(4)
    layer.build((None, 3))
    layer.quantize("int8", config=q.Int8QuantizationConfig(
        weight_quantizer=q.AbsMaxQuantizer(value_range=(-10, 10), axis=0)))
    assert np.abs(layer.kernel.numpy()).max() == 10
    model = _dense_model(kilnet)
    for config in (q.Float8QuantizationConfig(), q.GPTQConfig(None, None),
                   q.AWQConfig(None, None)):
        with pytest.raises(NotImplementedError, match="'int8', 'int4'"):
            model.quantize(config=config)
    with pytest.raises(ValueError, match="Contradictory"):
        model.quantize("int4", config=q.Int8QuantizationConfig())
    with pytest.raises(ValueError, match="QuantizationConfig"):
        model.quantize(config={"mode": "int8"})
    with pytest.raises(ValueError, match="axis"):
        model.quantize(config=q.Int8QuantizationConfig(
            weight_quantizer=q.AbsMaxQuantizer(axis=-1)))


@pytest.mark.parametrize("extension", [".keras", ".kilnet"])
def test_files_keep_the_configuration(tmp_path, extension):
    keras.backend.clear_session()
    theirs = _dense_model(keras)
    ours = _dense_model(kilnet, theirs.get_weights())
    theirs.quantize(config=CASES["both ranges"](keras.quantizers))
    ours.quantize(config=CASES["both ranges"](kilnet.quantizers))
    expected = theirs.predict(X, verbose=0)
    path = str(tmp_path / f"ours{extension}")
    ours.save(path)
    reloaded = kilnet.models.load_model(path)
    np.testing.assert_allclose(reloaded.predict(X, verbose=0), expected, rtol=0, atol=1e-6)
    as_json = [json.loads(json.dumps(model.layers[0].get_config()["quantization_config"]))
               for model in (reloaded, theirs)]
    assert as_json[0] == as_json[1]
    if extension == ".keras":   # Keras opens kilnet's file, and kilnet Keras's
        np.testing.assert_allclose(keras.models.load_model(path).predict(X, verbose=0),
                                   expected, rtol=0, atol=1e-6)
        theirs.save(str(tmp_path / "theirs.keras"))
        np.testing.assert_allclose(
            kilnet.models.load_model(str(tmp_path / "theirs.keras")).predict(X, verbose=0),
            expected, rtol=0, atol=1e-6)
