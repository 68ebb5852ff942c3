"""`model.quantize("int8")`, Keras's post-training quantization, against Keras 3 itself: from
the same float weights both give the same int8 kernels and scales (bit for bit) and the same
outputs (eager calls and predict, with a partial last batch), the quantized model crosses
`.keras` files both ways and kilnet's own files, trains after compile() again as Keras's does,
and the refusals are Keras's."""

import os
import warnings

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the parity tests need keras (JAX backend)")

import kilnet  # noqa: E402
from _quantized_twins import assert_same_weights, dense_built_with_policy, twins  # noqa: E402

pytestmark = pytest.mark.usefixtures("keras_draws_on_host")


def _twins(build, seed=0, scale=0.3):
    return twins(keras, kilnet, build, seed, scale)


def _quantized(*models):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # Keras warns for each layer it leaves float
        for model in models:
            model.quantize("int8")


def _assert_close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


def _guide_mlp(lib):
    """keras.io's INT8 guide's functional model."""
    inputs = lib.Input(shape=(10,))
    x = lib.layers.Dense(32, activation="relu")(inputs)
    return lib.Model(inputs, lib.layers.Dense(1, name="target")(x))


def _embedding_model(lib):
    inputs = lib.Input((6,), dtype="int32")
    x = lib.layers.Embedding(20, 8)(inputs)
    x = lib.layers.EinsumDense("abc,cd->abd", output_shape=(6, 5), bias_axes="d")(x)
    x = lib.layers.Dense(7, activation="relu")(lib.layers.Flatten()(x))
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(x))


def test_guide_mlp_quantizes_to_keras_weights_and_outputs():
    km, nm = _twins(_guide_mlp)
    x = np.random.default_rng(1).random((45, 10)).astype("float32")
    float_outputs = np.asarray(nm(x))
    _quantized(km, nm)
    assert_same_weights(km, nm)
    assert [w.path for w in nm.trainable_weights] == ["dense/bias", "target/bias"]
    assert nm.layers[1].dtype_policy.name == "int8_from_float32"
    assert nm.layers[1].quantization_mode == "int8"
    _assert_close(np.asarray(nm(x)), np.asarray(km(x)))
    # a partial last batch (45 = 2 * 16 + 13)
    _assert_close(nm.predict(x, batch_size=16, verbose=0),
                  km.predict(x, batch_size=16, verbose=0))
    # close to float32, not equal to it (keras.io's guide prints the MSE)
    error = np.mean((np.asarray(nm(x)) - float_outputs) ** 2)
    assert 0 < error < 1e-3


@pytest.mark.parametrize("equation,output_shape,bias_axes,sample", [
    ("ab,bc->ac", (4,), "c", (6,)),
    ("abc,cd->abd", (None, 4), "d", (5, 6)),
    ("abc,cde->abde", (None, 2, 4), "de", (5, 6)),     # MultiHeadAttention's query
    ("abcd,cde->abe", (None, 4), "e", (5, 2, 3)),      # and its output projection
    ("abc,bcd->ad", (4,), "d", (5, 6)),
])
def test_einsum_dense_scales_and_outputs_are_keras(equation, output_shape, bias_axes, sample):
    def build(lib):
        inputs = lib.Input(sample)
        layer = lib.layers.EinsumDense(equation, output_shape=output_shape,
                                       bias_axes=bias_axes)
        return lib.Model(inputs, layer(inputs))

    km, nm = _twins(build, scale=1.0)
    x = np.random.default_rng(2).normal(size=(7,) + sample).astype("float32")
    _quantized(km, nm)
    assert_same_weights(km, nm)   # kernel_scale laid out as Keras's (1, 1, 2, 4) ...
    _assert_close(np.asarray(nm(x)), np.asarray(km(x)))
    _assert_close(nm.predict(x, batch_size=3, verbose=0), km.predict(x, batch_size=3, verbose=0))


def test_attention_projections_quantize_as_keras_einsum_dense():
    def mha(lib):
        inputs = lib.Input((5, 8))
        return lib.Model(inputs, lib.layers.MultiHeadAttention(2, 4)(inputs, inputs))

    def gqa(lib):
        inputs = lib.Input((5, 8))
        layer = lib.layers.GroupQueryAttention(head_dim=4, num_query_heads=4,
                                                 num_key_value_heads=2)
        return lib.Model(inputs, layer(inputs, inputs))

    x = np.random.default_rng(3).normal(size=(7, 5, 8)).astype("float32")
    for build in (mha, gqa):
        km, nm = _twins(build)
        _quantized(km, nm)
        assert_same_weights(km, nm)
        assert nm.weights[1].path.endswith("query/kernel") and nm.weights[1].dtype == np.int8
        _assert_close(np.asarray(nm(x)), np.asarray(km(x)))
        _assert_close(nm.predict(x, batch_size=4, verbose=0),
                      km.predict(x, batch_size=4, verbose=0))


@pytest.mark.parametrize("tie_weights", [True, False])
def test_reversible_embedding_both_ways_is_keras(tie_weights):
    rng = np.random.default_rng(4)
    x, ids = rng.normal(size=(7, 3, 8)).astype("float32"), rng.integers(0, 20, (7, 3))
    results = []
    for lib in (keras, kilnet):
        layer = lib.layers.ReversibleEmbedding(20, 8, tie_weights=tie_weights,
                                               logit_soft_cap=5.0)
        layer.build((None, 3))
        layer.set_weights([np.random.default_rng(5 + i).normal(size=w.shape).astype("float32")
                           for i, w in enumerate(layer.weights)])
        layer.quantize("int8")
        results.append(([w.name for w in layer.weights], [np.asarray(w) for w in layer.weights],
                        np.asarray(layer(x, reverse=True)), np.asarray(layer(ids))))
    (k_names, k_weights, k_reverse, k_rows), (n_names, n_weights, n_reverse, n_rows) = results
    assert n_names == k_names
    for kw, nw in zip(k_weights, n_weights):
        np.testing.assert_array_equal(nw, kw)
    _assert_close(n_reverse, k_reverse)
    _assert_close(n_rows, k_rows)


def test_mixed_bfloat16_source_policy_computes_as_keras():
    def build(lib):
        inputs = lib.Input((5, 8))
        x = lib.layers.Dense(6, dtype="mixed_bfloat16")(inputs)
        return lib.Model(inputs, lib.layers.EinsumDense(
            "abc,cd->abd", output_shape=(None, 4), bias_axes="d", dtype="mixed_bfloat16")(x))

    km, nm = _twins(build, scale=1.0)
    _quantized(km, nm)
    assert [layer.dtype_policy.name for layer in nm.layers[1:]] == ["int8_from_mixed_bfloat16"] * 2
    x = np.random.default_rng(6).normal(size=(7, 5, 8)).astype("float32")
    got, expected = np.asarray(nm(x)), np.asarray(km(x))
    assert got.dtype == expected.dtype == "bfloat16"
    np.testing.assert_array_equal(got.astype("float32"), expected.astype("float32"))


def test_quantized_keras_files_cross_both_ways(tmp_path):
    km, nm = _twins(_embedding_model)
    x = np.random.default_rng(7).integers(0, 20, (9, 6)).astype("int32")
    _quantized(km, nm)
    expected = km.predict(x, verbose=0)
    # kilnet -> Keras
    nm.save(tmp_path / "kilnet.keras")
    in_keras = keras.saving.load_model(tmp_path / "kilnet.keras")
    assert_same_weights(in_keras, nm)
    _assert_close(in_keras.predict(x, verbose=0), expected)
    # Keras -> kilnet (read as data: no code from the file runs)
    km.save(tmp_path / "keras.keras")
    in_kilnet = kilnet.saving.load_model(tmp_path / "keras.keras")
    assert [layer.dtype_policy.name for layer in in_kilnet.layers[1:]] == [
        "int8_from_float32", "int8_from_float32", "float32", "int8_from_float32",
        "int8_from_float32"]
    assert_same_weights(km, in_kilnet)
    _assert_close(in_kilnet.predict(x, verbose=0), expected)
    _assert_close(np.asarray(in_kilnet(x)), expected)


def test_quantized_kilnet_files_and_weights_files_round_trip(tmp_path):
    km, nm = _twins(_embedding_model)
    x = np.random.default_rng(8).integers(0, 20, (9, 6)).astype("int32")
    _quantized(km, nm)
    expected = nm.predict(x, verbose=0)
    nm.save(tmp_path / "m.kilnet")
    _assert_close(kilnet.saving.load_model(tmp_path / "m.kilnet").predict(x, verbose=0),
                  expected)
    nm.save(tmp_path / "m.h5")   # Keras's legacy format
    _assert_close(kilnet.saving.load_model(tmp_path / "m.h5").predict(x, verbose=0), expected)
    for name in ("w.kilnet", "w.weights.h5"):
        nm.save_weights(tmp_path / name)
        twin = _embedding_model(kilnet)
        twin.quantize("int8")
        twin.load_weights(tmp_path / name)
        _assert_close(twin.predict(x, verbose=0), expected)
    # Keras's weights file of its quantized twin, into a quantized kilnet model, and back
    km.save_weights(tmp_path / "k.weights.h5")
    twin = _embedding_model(kilnet)
    twin.quantize("int8")
    twin.load_weights(tmp_path / "k.weights.h5")
    _assert_close(twin.predict(x, verbose=0), expected)
    back = _embedding_model(keras)
    _quantized(back)
    back.load_weights(tmp_path / "w.weights.h5")
    _assert_close(back.predict(x, verbose=0), expected)


def test_quantized_attention_refuses_a_model_file_that_could_not_load(tmp_path):
    inputs = kilnet.Input((5, 8))
    model = kilnet.Model(inputs, kilnet.layers.MultiHeadAttention(2, 4)(inputs, inputs))
    model.quantize("int8")
    for name in ("m.keras", "m.kilnet"):
        with pytest.raises(ValueError, match="save_weights"):
            model.save(tmp_path / name)
    model.save_weights(tmp_path / "w.weights.h5")   # the way the error gives


def test_summary_and_count_params_are_keras():
    km, nm = _twins(_embedding_model)
    _quantized(km, nm)
    assert nm.count_params() == km.count_params() == 481
    lines = {}
    for name, model in (("keras", km), ("kilnet", nm)):
        printed = []
        model.summary(print_fn=lambda line, **_: printed.append(line))
        lines[name] = [line.strip() for line in "\n".join(printed).splitlines()
                       if "params:" in line]
    # int8 kernels count one byte each: 466 non-trainable params in 571 bytes
    assert lines["kilnet"] == lines["keras"] == [
        "Total params: 481 (631.00 B)", "Trainable params: 15 (60.00 B)",
        "Non-trainable params: 466 (571.00 B)"]


def test_training_after_quantize_needs_compile_then_matches_keras(tmp_path):
    km, nm = _twins(_guide_mlp)
    rng = np.random.default_rng(9)
    x, y = rng.random((96, 10)).astype("float32"), rng.random((96, 1)).astype("float32")
    for model, lib in ((km, keras), (nm, kilnet)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    _quantized(km, nm)
    # evaluate and predict work on the compiled model; fit wants compile() first (Keras's
    # fit fails there too: its optimizer was built for the float kernels)
    _assert_close(nm.evaluate(x, y, verbose=0), km.evaluate(x, y, verbose=0))
    # keras.io's guide: the compiled, quantized model saved and loaded back
    nm.save(tmp_path / "int8.keras")
    for reloaded in (keras.saving.load_model(tmp_path / "int8.keras"),
                     kilnet.saving.load_model(tmp_path / "int8.keras")):
        _assert_close(np.asarray(reloaded(x)), np.asarray(km(x)))
    with pytest.raises(ValueError, match="compile"):
        nm.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="compile"):
        nm.train_on_batch(x, y)
    for model, lib in ((km, keras), (nm, kilnet)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    k_history = km.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    n_history = nm.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0).history
    np.testing.assert_allclose(n_history["loss"], k_history["loss"], rtol=1e-5)
    # the biases trained (the first through the second layer's dequantized kernel), the int8
    # kernels and their scales did not
    for kw, nw in zip(km.weights, nm.weights):
        np.testing.assert_allclose(nw.numpy(), np.asarray(kw), rtol=1e-5, atol=1e-7,
                                   err_msg=kw.path)
    assert not np.allclose(nm.layers[1].bias.numpy(), nm.layers[1].bias.numpy() * 0)


def test_refusals_are_keras():
    unbuilt = kilnet.Sequential([kilnet.layers.Dense(3)])
    with pytest.raises(ValueError, match="isn't yet built"):
        unbuilt.quantize("int8")
    model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(3)])
    model.build()
    with pytest.raises(ValueError, match=r"Invalid quantization mode.*Received: mode=int9"):
        model.quantize("int9")
    with pytest.raises(ValueError, match="provide either `mode` or `config`"):
        model.quantize()
    for mode in ("float8", "gptq", "awq"):
        with pytest.raises(NotImplementedError, match=r"\('int8', 'int4'\)"):
            model.quantize(mode)
    with pytest.raises(ValueError, match="instance of `QuantizationConfig`"):   # Keras's
        model.quantize("int8", config=object())
    with pytest.raises(ValueError, match="`filters` argument"):
        model.quantize("int8", filters=3)
    model.quantize("int8")
    with pytest.raises(ValueError, match="already quantized with dtype_policy="
                                         "'int8_from_float32'"):
        model.quantize("int8")
    half = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(3, dtype="mixed_float16")])
    half.build()
    with pytest.raises(ValueError, match="compute_dtype='float16'"):
        half.quantize("int8")
    with pytest.raises(ValueError, match="no quantized form"):
        kilnet.layers.Conv2D(3, 3, dtype="int8_from_float32")


def test_filters_type_check_and_warnings():
    class MyDense(kilnet.layers.Dense):
        pass

    model = kilnet.Sequential([kilnet.Input((4,)), kilnet.layers.Dense(3, name="first"),
                               MyDense(3, name="mine"), kilnet.layers.LayerNormalization(),
                               kilnet.layers.Dense(2, name="last")])
    model.build()
    model.quantize("int8", filters=["first", "^l"])
    assert [layer.quantization_mode for layer in model.layers] == ["int8", None, None, "int8"]
    with pytest.warns(UserWarning, match="MyDense does not have a `quantize` method"):
        model.quantize("int8", filters=lambda layer: layer.name == "mine")
    model.quantize("int8", filters="mine", type_check=False)   # Keras's keyword
    assert model.layers[1].quantization_mode == "int8"


def test_policy_builds_quantized_layers_and_serializes_as_keras():
    policy = kilnet.dtype_policies.get("int8_from_float32")
    assert kilnet.dtype_policies.serialize(policy) == keras.dtype_policies.serialize(
        keras.dtype_policies.get("int8_from_float32"))
    for lib in (keras, kilnet):
        assert lib.dtype_policies.get(lib.dtype_policies.serialize(policy) if lib is kilnet
                                      else "int8_from_mixed_bfloat16").quantization_mode == "int8"
    dense = dense_built_with_policy(keras, kilnet, "int8_from_float32", 4)
    config = dense.get_config()
    assert config["dtype"]["class_name"] == "QuantizedDTypePolicy"
    assert kilnet.layers.Dense.from_config(config).quantization_mode == "int8"


def test_input_gradient_is_the_dequantized_kernels():
    """Keras's custom gradient: the inputs' gradient through a quantized Dense is that of
    kernel / kernel_scale (straight through the inputs' rounding)."""
    import jax

    dense = kilnet.layers.Dense(3)
    dense.build((None, 4))
    dense.quantize("int8")
    x = np.random.default_rng(10).normal(size=(2, 4)).astype("float32")
    weights = [dense.bias.value]
    state = [dense.kernel.value, dense.kernel_scale.value]
    gradient = jax.grad(lambda x: dense.stateless_call(weights, state, x)[0].sum())(x)
    dequantized = dense.kernel.numpy() / dense.kernel_scale.numpy()
    _assert_close(np.asarray(gradient), np.tile(dequantized.sum(axis=1), (2, 1)))
