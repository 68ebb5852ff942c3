"""`model.quantize("int4")`, Keras 3.15's weight-only int4, against Keras itself: from the same
float weights both give the same packed kernels, scales, zero points and group indices (bit
for bit), per channel and in groups of `block_size` rows, for Dense, EinsumDense, the
attention projections and Embedding; the outputs are equal in eager calls and within float32 rounding in
predict; `.keras` files cross both ways; training through the layer matches Keras's."""

import json
import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _quantized_twins import assert_same_weights, dense_built_with_policy, twins  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")

# predict compiles its own program; XLA may order the float sums differently from the eager
# call's (measured: at most 4.8e-7 absolute on outputs of magnitude ~2)
PREDICT_ATOL = 2e-6


def _twins(build, seed=0, scale=0.3):
    return twins(keras, kilnet, build, seed, scale)


def _int4(models_and_libs, block_size="default", **quantizers):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras warns for each layer it leaves float
        for model, lib in models_and_libs:
            if block_size == "default":
                model.quantize("int4")
            else:
                model.quantize(config=lib.quantizers.Int4QuantizationConfig(
                    block_size=block_size, **{k: v(lib) for k, v in quantizers.items()}))


def _einsum(equation, output_shape, bias_axes, sample):
    def build(lib):
        inputs = lib.Input(sample)
        return lib.Model(inputs, lib.layers.EinsumDense(equation, output_shape=output_shape,
                                                        bias_axes=bias_axes, name="e")(inputs))
    return build, sample


def _dense(lib):
    inputs = lib.Input((5,))
    return lib.Model(inputs, lib.layers.Dense(3, name="d")(inputs))


def _attention(lib):
    inputs = lib.Input((5, 8))
    return lib.Model(inputs, lib.layers.MultiHeadAttention(2, 4, name="m")(inputs, inputs))


CASES = {"dense": (_dense, (5,)),
         "einsum": _einsum("abc,cd->abd", (None, 4), "d", (5, 6)),
         "query": _einsum("abc,cde->abde", (None, 2, 4), "de", (5, 6)),
         "output": _einsum("abcd,cde->abe", (None, 4), "e", (5, 2, 3)),
         "two summed": _einsum("abc,bcd->ad", (4,), "d", (5, 6)),
         "attention": (_attention, (5, 8))}


@pytest.mark.parametrize("block_size", ["default", None, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_int4_weights_and_outputs_are_keras(case, block_size):
    build, sample = CASES[case]
    km, nm = _twins(build)
    _int4([(km, keras), (nm, kilnet)], block_size)
    assert_same_weights(km, nm)
    leaves = [part for layer in nm.layers for part in [layer, *getattr(layer, "sublayers", [])]]
    layer = next(layer for layer in leaves if layer.quantization_mode)
    expected_block = {"default": 128, None: -1, 2: 2}[block_size]
    assert layer.dtype_policy.name == f"int4/{expected_block}_from_float32"
    x = np.random.default_rng(2).normal(size=(7,) + sample).astype("float32")
    np.testing.assert_array_equal(np.asarray(nm(x)), np.asarray(km(x)))
    np.testing.assert_allclose(nm.predict(x, batch_size=3, verbose=0),
                               km.predict(x, batch_size=3, verbose=0), rtol=0,
                               atol=PREDICT_ATOL)


@pytest.mark.parametrize("build", [_dense, _einsum("abc,cd->abd", (None, 4), "d", (5, 6))[0]])
def test_int4_with_an_inputs_quantizer_is_keras(build):
    km, nm = _twins(build)
    _int4([(km, keras), (nm, kilnet)], None,
          activation_quantizer=lambda lib: lib.quantizers.AbsMaxQuantizer(),
          weight_quantizer=lambda lib: lib.quantizers.AbsMaxQuantizer(axis=0,
                                                                     value_range=(-8, 7)))
    assert_same_weights(km, nm)
    sample = km.inputs[0].shape[1:]
    x = np.random.default_rng(3).normal(size=(4,) + tuple(sample)).astype("float32")
    np.testing.assert_array_equal(np.asarray(nm(x)), np.asarray(km(x)))
    assert json.dumps(nm.layers[1].get_config()["quantization_config"]) == json.dumps(
        keras.saving.serialize_keras_object(km.layers[1].quantization_config))


def _stack(lib):
    inputs = lib.Input((6,))
    x = lib.layers.Dense(8, activation="relu", name="a")(inputs)
    x = lib.layers.Reshape((2, 4))(x)
    x = lib.layers.EinsumDense("abc,cd->abd", output_shape=(2, 5), bias_axes="d", name="e")(x)
    return lib.Model(inputs, lib.layers.Dense(3, name="b")(lib.layers.Flatten()(x)))


def test_int4_keras_files_cross_both_ways(tmp_path):
    km, nm = _twins(_stack)
    _int4([(km, keras), (nm, kilnet)], 4)
    x = np.random.default_rng(4).normal(size=(9, 6)).astype("float32")
    expected = km.predict(x, verbose=0)
    nm.save(tmp_path / "kilnet.keras")
    in_keras = keras.saving.load_model(tmp_path / "kilnet.keras")
    assert_same_weights(in_keras, nm)
    np.testing.assert_allclose(in_keras.predict(x, verbose=0), expected, atol=PREDICT_ATOL)
    km.save(tmp_path / "keras.keras")
    in_kilnet = kilnet.saving.load_model(tmp_path / "keras.keras")
    assert [layer.dtype_policy.name for layer in in_kilnet.layers if layer.quantization_mode
            ] == ["int4/4_from_float32"] * 3
    assert_same_weights(km, in_kilnet)
    np.testing.assert_allclose(in_kilnet.predict(x, verbose=0), expected, atol=PREDICT_ATOL)
    # kilnet's own format and Keras's weights file
    nm.save(tmp_path / "m.kilnet")
    np.testing.assert_allclose(kilnet.saving.load_model(tmp_path / "m.kilnet").predict(
        x, verbose=0), expected, atol=PREDICT_ATOL)
    km.save_weights(tmp_path / "k.weights.h5")
    twin = _stack(kilnet)
    twin.quantize(config=kilnet.quantizers.Int4QuantizationConfig(block_size=4))
    twin.load_weights(tmp_path / "k.weights.h5")
    np.testing.assert_allclose(twin.predict(x, verbose=0), expected, atol=PREDICT_ATOL)


def test_training_through_int4_layers_matches_keras():
    km, nm = _twins(_stack)
    _int4([(km, keras), (nm, kilnet)])
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(12, 6)).astype("float32"), rng.normal(size=(12, 3)).astype("float32")
    for model, lib in ((km, keras), (nm, kilnet)):
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
    k_loss = km.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    n_loss = nm.fit(x, y, batch_size=4, epochs=3, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(n_loss, k_loss, rtol=1e-6)
    assert [w.path for w in nm.trainable_weights] == ["a/bias", "e/bias", "b/bias"]
    for kw, nw in zip(km.weights, nm.weights):   # the biases trained as Keras's did
        np.testing.assert_allclose(nw.numpy(), np.asarray(kw), rtol=1e-5, atol=1e-6,
                                   err_msg=kw.path)


def test_int4_policies_and_refusals():
    policy = kilnet.dtype_policies.get("int4/64_from_mixed_bfloat16")
    assert kilnet.dtype_policies.serialize(policy) == keras.dtype_policies.serialize(
        keras.dtype_policies.get("int4/64_from_mixed_bfloat16"))
    dense_built_with_policy(keras, kilnet, "int4/2_from_float32", 5)
    with pytest.raises(ValueError, match="block_size"):
        kilnet.dtype_policies.get("int4/0_from_float32")
    with pytest.raises(ValueError, match="no quantized form in int4"):
        kilnet.layers.ReversibleEmbedding(5, 3, dtype="int4/-1_from_float32")
    # kilnet's ReversibleEmbedding quantizes to int8 only: model.quantize leaves it float,
    # saying so
    inputs = kilnet.Input((4,), dtype="int32")
    table = kilnet.layers.ReversibleEmbedding(5, 3)
    model = kilnet.Model(inputs, kilnet.layers.Dense(2)(table(inputs)))
    with pytest.warns(UserWarning, match=r"ReversibleEmbedding.*\('int8',\)"):
        model.quantize("int4")
    assert [layer.quantization_mode for layer in model.layers[1:]] == [None, "int4"]


def _embedding(lib):
    inputs = lib.Input((6,), dtype="int32")
    x = lib.layers.Embedding(20, 7, name="emb")(inputs)
    return lib.Model(inputs, lib.layers.Dense(3, name="d")(x))


@pytest.mark.parametrize("block_size", ["default", None, 3])
def test_int4_embedding_is_keras_and_crosses_files(tmp_path, block_size):
    km, nm = _twins(_embedding)
    _int4([(km, keras), (nm, kilnet)], block_size)
    assert_same_weights(km, nm)
    x = np.random.default_rng(6).integers(0, 20, (5, 6)).astype("int32")
    expected = np.asarray(km(x))
    np.testing.assert_array_equal(np.asarray(nm(x)), expected)
    km.save(tmp_path / "keras.keras")
    nm.save(tmp_path / "kilnet.keras")
    in_kilnet = kilnet.saving.load_model(tmp_path / "keras.keras")
    assert_same_weights(km, in_kilnet)
    for reloaded in (in_kilnet, keras.saving.load_model(tmp_path / "kilnet.keras")):
        np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=0,
                                   atol=PREDICT_ATOL)


@pytest.mark.parametrize("block_size", [None, 4])
def test_int4_under_mixed_bfloat16_and_its_summary_are_keras(block_size):
    def build(lib):
        inputs = lib.Input((6,))
        x = lib.layers.Dense(8, name="a", dtype="mixed_bfloat16")(inputs)
        return lib.Model(inputs, lib.layers.EinsumDense(
            "ab,bc->ac", output_shape=(5,), bias_axes="c", name="e",
            dtype="mixed_bfloat16")(x))

    km, nm = _twins(build, scale=1.0)
    _int4([(km, keras), (nm, kilnet)], block_size)
    assert nm.layers[1].dtype_policy.name == f"int4/{block_size or -1}_from_mixed_bfloat16"
    x = np.random.default_rng(7).normal(size=(4, 6)).astype("float32")
    got, expected = np.asarray(nm(x)), np.asarray(km(x))
    assert got.dtype == expected.dtype == "bfloat16"
    np.testing.assert_array_equal(got.astype("float32"), expected.astype("float32"))
    lines = []
    for model in (km, nm):
        printed = []
        model.summary(print_fn=lambda line, **_: printed.append(line))
        lines.append([line.strip() for line in "\n".join(printed).splitlines()
                      if "params:" in line])
    assert lines[0] == lines[1]
