"""Operators and kilnet.ops functions on the symbolic tensors of the functional API: each
becomes an op node (kilnet.layers.Operation) that computes what NumPy computes, trains,
and saves in kilnet's and Keras's files, which Keras itself opens (and the reverse)."""

import importlib
import inspect
import json
import os
import zipfile

import jax
import numpy as np
import pytest

import kilnet
from kilnet import layers, ops
from kilnet.layers._operation import OPS, op_function

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)


def _x(*shape):
    return RNG.normal(size=shape).astype(np.float32)


# -- values ----------------------------------------------------------------------------------
# (what the graph computes from x of shape (batch, 6, 4), the same in NumPy)
CASES = {
    "add": (lambda x: x + 1.5, lambda x: x + 1.5),
    "radd": (lambda x: 2 + x, lambda x: 2 + x),
    "rsub": (lambda x: 1.0 - x, lambda x: 1.0 - x),
    "mul_self": (lambda x: x * x, lambda x: x * x),
    "div": (lambda x: x / 4.0, lambda x: x / 4.0),
    "rdiv": (lambda x: 1.0 / (ops.abs(x) + 1.0), lambda x: 1.0 / (np.abs(x) + 1.0)),
    "floordiv_mod": (lambda x: (x * 10) // 3 + (x * 10) % 3,
                     lambda x: (x * 10) // 3 + (x * 10) % 3),
    "pow_neg_abs": (lambda x: -(abs(x) ** 1.5), lambda x: -(np.abs(x) ** 1.5)),
    "matmul": (lambda x: x @ ops.transpose(x, (0, 2, 1)),
               lambda x: x @ np.transpose(x, (0, 2, 1))),
    "compare_logic": (lambda x: ops.cast((x > 0) & ~(x > 1) | (x <= -1) ^ (x < -2), "float32"),
                      lambda x: (((x > 0) & ~(x > 1)) | ((x <= -1) ^ (x < -2))).astype("f4")),
    "ne": (lambda x: ops.cast(ops.round(x) != 0, "int32"),
           lambda x: (np.round(x) != 0).astype("int32")),
    "index": (lambda x: x[:, 0], lambda x: x[:, 0]),
    "slices": (lambda x: x[:, 1:5:2, ::-1], lambda x: x[:, 1:5:2, ::-1]),
    "ellipsis_newaxis": (lambda x: x[..., None, 2], lambda x: x[..., None, 2]),
    "mean_keepdims": (lambda x: ops.mean(x, axis=1, keepdims=True),
                      lambda x: x.mean(axis=1, keepdims=True)),
    "sum_axes": (lambda x: ops.sum(x, axis=[1, 2]), lambda x: x.sum(axis=(1, 2))),
    "max_argmax": (lambda x: ops.max(x, axis=-1) + ops.cast(ops.argmax(x, axis=-1), "float32"),
                   lambda x: x.max(-1) + x.argmax(-1).astype("f4")),
    "concatenate": (lambda x: ops.concatenate([x, x * 2], axis=-1),
                    lambda x: np.concatenate([x, x * 2], axis=-1)),
    "stack": (lambda x: ops.stack([x[:, 0], x[:, 1]], axis=1), lambda x: x[:, :2]),
    "reshape": (lambda x: ops.reshape(x, (-1, 24)), lambda x: x.reshape(-1, 24)),
    "expand_squeeze": (lambda x: ops.squeeze(ops.expand_dims(x, 1), axis=1), lambda x: x),
    "where": (lambda x: ops.where(x > 0, x, 0.0), lambda x: np.where(x > 0, x, 0.0)),
    "softmax": (lambda x: ops.softmax(x, axis=1),
                lambda x: np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
    "sqrt_exp_log": (lambda x: ops.sqrt(ops.exp(x)) + ops.log(ops.square(x) + 1),
                     lambda x: np.sqrt(np.exp(x)) + np.log(x ** 2 + 1)),
    "einsum": (lambda x: ops.einsum("bij,bkj->bik", x, x),
               lambda x: np.einsum("bij,bkj->bik", x, x)),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5)),
    "take": (lambda x: ops.take(x, [3, 0], axis=2), lambda x: np.take(x, [3, 0], axis=2)),
    "tile_repeat": (lambda x: ops.repeat(ops.tile(x, (1, 1, 2)), 2, axis=1),
                    lambda x: np.repeat(np.tile(x, (1, 1, 2)), 2, axis=1)),
    "pad": (lambda x: ops.pad(x, [[0, 0], [1, 2], [0, 0]]),
            lambda x: np.pad(x, [[0, 0], [1, 2], [0, 0]])),
    "swish_alias": (lambda x: ops.swish(x), lambda x: x / (1 + np.exp(-x))),
    "trigonometry": (
        lambda x: (ops.arctan2(ops.sin(x), ops.cos(x)) + ops.tan(x * 0.1) + ops.arctan(x)
                   + ops.arcsin(ops.tanh(x) * 0.5) + ops.arccos(ops.tanh(x) * 0.5)),
        lambda x: (np.arctan2(np.sin(x), np.cos(x)) + np.tan(x * 0.1) + np.arctan(x)
                   + np.arcsin(np.tanh(x) * 0.5) + np.arccos(np.tanh(x) * 0.5))),
    "hyperbolic_and_logs": (
        lambda x: (ops.sinh(x) + ops.cosh(x) + ops.arcsinh(x) + ops.arccosh(abs(x) + 1)
                   + ops.arctanh(ops.tanh(x) * 0.5) + ops.exp2(x) + ops.expm1(x)
                   + ops.log2(abs(x) + 1) + ops.log10(abs(x) + 1)
                   + ops.reciprocal(abs(x) + 1) + ops.trunc(x * 3)),
        lambda x: (np.sinh(x) + np.cosh(x) + np.arcsinh(x) + np.arccosh(np.abs(x) + 1)
                   + np.arctanh(np.tanh(x) * 0.5) + np.exp2(x) + np.expm1(x)
                   + np.log2(np.abs(x) + 1) + np.log10(np.abs(x) + 1)
                   + 1 / (np.abs(x) + 1) + np.trunc(x * 3))),
    "tril_triu_cumprod": (lambda x: ops.tril(x, -1) + ops.triu(x, 1) + ops.cumprod(x, axis=1),
                          lambda x: np.tril(x, -1) + np.triu(x, 1) + np.cumprod(x, axis=1)),
    "hard_activations": (
        lambda x: ops.hard_sigmoid(x) + ops.hard_silu(x) + ops.softsign(x),
        lambda x: (np.clip(x + 3, 0, 6) / 6 + x * np.clip(x + 3, 0, 6) / 6
                   + x / (1 + np.abs(x)))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_op_on_symbolic_tensors_computes_what_numpy_computes(case):
    graph, reference = CASES[case]
    inputs = kilnet.Input(shape=(6, 4))
    outputs = graph(inputs)
    model = kilnet.Model(inputs, outputs)
    x = _x(3, 6, 4)
    expected = reference(x)
    got = model.predict(x, verbose=0)
    assert outputs.shape == (None,) + expected.shape[1:]
    assert got.dtype == expected.dtype, (got.dtype, expected.dtype)
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_the_ops_table_is_keras_s_and_every_op_is_a_kilnet_function():
    """Each recorded op: a Keras 3 class of that name in the module kilnet writes, whose
    constructor takes the settings kilnet keeps in its config, and whose constructor and call
    together take the kilnet.ops function's arguments."""
    for name, (_, module, settings) in OPS.items():
        cls = getattr(importlib.import_module(module), name)
        init = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "name", "args", "kwargs")]
        call = [p for p in inspect.signature(cls.call).parameters if p != "self"]
        params = list(inspect.signature(op_function(name)).parameters)
        assert init == list(settings), (name, init, settings)
        assert sorted(init + call) == sorted(params), (name, init, call, params)


def test_unknown_lengths_stay_unknown_and_known_ones_are_kept():
    tokens = kilnet.Input(shape=(None, 8))
    assert (tokens * 2).shape == (None, None, 8)
    assert ops.mean(tokens, axis=1).shape == (None, 8)
    assert ops.reshape(ops.mean(tokens, axis=1), (-1, 4, 2)).shape == (None, 4, 2)
    with pytest.raises(ValueError, match="batch axis"):
        ops.reshape(tokens, (-1, 4))           # samples and steps mixed in one axis
    assert tokens[:, :3].shape == (None, None, 8)               # 3 at most: not known
    assert ops.shape(tokens) == (None, None, 8)
    halves = ops.split(tokens, 2, axis=-1)
    assert [h.shape for h in halves] == [(None, None, 4)] * 2
    assert halves[0].node is halves[1].node                    # one node, two outputs


def test_a_residual_written_with_plus_trains_as_the_add_layer_does():
    """x + Dense(x) and Add()([x, Dense(x)]): the same weights give the same losses."""
    def build(residual):
        kilnet.utils.set_random_seed(3)
        inputs = kilnet.Input(shape=(8,))
        h = layers.Dense(8, activation="relu")(inputs)
        h = residual(inputs, h)
        outputs = layers.Dense(3, activation="softmax")(ops.mean(ops.stack([h, h * 0.5], 1), 1))
        model = kilnet.Model(inputs, outputs)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return model

    x, y = _x(64, 8), RNG.integers(0, 3, size=64)
    with_ops = build(lambda a, b: a + b)
    with_layers = build(lambda a, b: layers.Add()([a, b]))
    with_layers.set_weights(with_ops.get_weights())
    first = with_ops.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    second = with_layers.fit(x, y, epochs=4, batch_size=16, shuffle=False, verbose=0)
    np.testing.assert_allclose(first.history["loss"], second.history["loss"], rtol=1e-5)
    assert first.history["loss"][-1] < first.history["loss"][0]


def _graph_of_many_ops():
    inputs = kilnet.Input(shape=(6, 4), name="x")
    tokens = kilnet.Input(shape=(5,), dtype="int32", name="tokens")
    h = layers.Dense(4)(inputs) + inputs
    counted = ops.sum(ops.cast(tokens > 2, "float32"), axis=-1, keepdims=True)
    pooled = ops.concatenate([ops.mean(h, axis=1), h[:, 0], counted], axis=-1)
    outputs = [pooled, h[:, 1:3, ::2], ops.einsum("bij,bkj->bik", h, h),
               ops.softmax(h @ ops.transpose(h, (0, 2, 1)), axis=-1), h[..., None],
               ops.where(h > 0, h, 0.0) ** 2, ops.top_k(pooled, 3)[0],
               ops.one_hot(tokens, 10), ops.logsumexp(h, axis=-1)]
    return kilnet.Model([inputs, tokens], outputs)


def _data():
    return [_x(3, 6, 4), RNG.integers(0, 10, size=(3, 5)).astype(np.int32)]


def test_op_nodes_save_and_load_in_kilnet_files(tmp_path):
    model = _graph_of_many_ops()
    data = _data()
    before = model.predict(data, verbose=0)
    model.save(tmp_path / "m.kilnet")
    loaded = kilnet.models.load_model(tmp_path / "m.kilnet")
    for a, b in zip(before, loaded.predict(data, verbose=0)):
        np.testing.assert_array_equal(a, b)
    assert kilnet.models.model_from_json(model.to_json()).count_params() == model.count_params()


def test_keras_opens_kilnet_s_op_nodes_and_computes_the_same(tmp_path):
    model = _graph_of_many_ops()
    data = _data()
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    for ours, keras_out in zip(model.predict(data, verbose=0), theirs.predict(data, verbose=0)):
        np.testing.assert_allclose(ours, np.asarray(keras_out), rtol=1e-5, atol=1e-5)


def test_kilnet_opens_keras_s_op_nodes_and_computes_the_same(tmp_path):
    kops = keras.ops
    inputs = keras.Input(shape=(6, 4))
    h = keras.layers.Dense(4)(inputs) + inputs
    outputs = [kops.mean(h, axis=1) - h[:, -1], kops.moments(h, axes=[1])[1],
               kops.leaky_relu(h), kops.gelu(h), kops.clip(h, -0.5, 0.5) * 2.0,
               h[:, :, None, 1:], kops.expand_dims(kops.max(h, axis=(1, 2)), -1)]
    theirs = keras.Model(inputs, outputs)
    theirs.save(tmp_path / "k.keras")
    ours = kilnet.models.load_model(tmp_path / "k.keras")
    x = _x(3, 6, 4)
    for a, b in zip(ours.predict(x, verbose=0), theirs.predict(x, verbose=0)):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-5)
    assert [layer.operation for layer in ours.operations if isinstance(
        layer, layers.Operation)][:2] == ["Add", "Mean"]
    # as Keras's: model.layers holds the layers only, model.operations the ops too
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert [op.name for op in ours.operations] == [op.name for op in theirs.operations]


def test_ops_nodes_keep_their_inputs_dtypes_under_mixed_precision():
    kilnet.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        inputs = kilnet.Input(shape=(4,))
        scaled = layers.Dense(4)(inputs) * 2.0       # bfloat16, as the Dense computes
        widened = ops.cast(scaled, "float32") + inputs
    finally:
        kilnet.mixed_precision.set_global_policy("float32")
    assert (scaled.dtype, widened.dtype) == ("bfloat16", "float32")
    out = kilnet.Model(inputs, [scaled, widened]).predict(_x(2, 4), verbose=0)
    assert [str(o.dtype) for o in out] == ["float32", "float32"]   # predict returns float32


def test_an_old_kilnet_op_config_still_loads():
    """kilnet 0.1 wrote Any / Cast nodes with axis / keepdims / dtype_to."""
    any_op = layers.Operation.from_config({"name": "any", "operation": "Any", "axis": -1,
                                           "keepdims": False})
    cast_op = layers.Operation.from_config({"name": "cast", "operation": "Cast",
                                            "dtype_to": "int32"})
    assert any_op.arguments == {"axis": -1, "keepdims": False}
    assert np.asarray(cast_op(np.array([1.7]))).dtype == np.int32


# -- refusals --------------------------------------------------------------------------------
def test_an_op_without_the_batch_axis_first_is_refused_with_the_fix():
    x = kilnet.Input(shape=(3,))
    with pytest.raises(ValueError, match="without the batch axis first.*axis=1"):
        ops.sum(x)
    with pytest.raises(ValueError, match="batch axis"):
        x[0]


def test_control_flow_and_symbolic_settings_are_refused_by_name():
    x = kilnet.Input(shape=(3,))
    with pytest.raises(TypeError, match=r"kilnet.ops.cond cannot be a node.*Received"):
        ops.cond(x, lambda: 1.0, lambda: 0.0)
    with pytest.raises(TypeError, match=r"'x_min' of kilnet.ops.clip.*Received: a symbolic"):
        ops.clip(x, x, 1.0)
    with pytest.raises(TypeError, match="no value to test"):
        bool(x > 0)
    with pytest.raises(TypeError, match="cannot be iterated"):
        list(x)
    with pytest.raises(ValueError, match="cannot be computed on inputs of shapes"):
        ops.reshape(x, (-1, 7))


def test_ops_on_arrays_are_unchanged_inside_a_traced_call():
    """The dispatch looks for symbolic tensors only; arrays and tracers go straight through."""
    f = jax.jit(lambda a: ops.mean(a * 2.0 + 1.0, axis=0))
    np.testing.assert_allclose(f(np.array([1.0, 3.0])), 5.0)
    np.testing.assert_allclose(ops.outer(np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0])),
                               np.outer([1.0, 2.0], [3.0, 4.0, 5.0]))
    assert ops.arctan(np.int32(1)).dtype == np.float32      # integers give float32, as Keras


def test_a_model_of_one_input_takes_it_in_a_list_of_one_as_keras_does():
    inputs = kilnet.Input(shape=(3, 4))
    model = kilnet.Model([inputs], ops.sum(inputs, axis=-1))
    model.compile(optimizer="sgd", loss="mse")
    x = _x(6, 3, 4)
    np.testing.assert_allclose(model.predict([x], verbose=0), x.sum(-1), rtol=1e-5)
    assert np.isfinite(model.fit([x], np.zeros((6, 3)), epochs=1, verbose=0)
                       .history["loss"][0])


# -- constant operands -------------------------------------------------------------------------
# A concrete array in the graph (keras.io's masked language model adds the output of an
# Embedding called on ops.arange to the word embeddings): Keras keeps it in the node as
# {"class_name": "__tensor__" / "__numpy__", "config": {"value", "dtype"}}, a NumPy scalar as a
# number, and so does kilnet.
def _graph_with_constants(lib):
    kops, klayers = lib.ops, lib.layers
    tokens = lib.Input(shape=(4,), dtype="int32", name="tokens")
    words = klayers.Embedding(10, 3, name="word_embedding")(tokens)
    positions = klayers.Embedding(4, 3, name="position_embedding")(kops.arange(0, 4, 1))
    h = klayers.Dense(3, name="dense")(words + positions)                 # a JAX array
    h = kops.multiply(h, np.linspace(0.5, 2.0, 3).astype("float32"))    # a NumPy array
    h = h * kops.convert_to_tensor(3.0) + np.float32(0.25)             # 0-d tensor, scalar
    h = kops.subtract(np.ones(3, "float32"), h)                        # the constant first
    mask = np.tril(np.ones((4, 4), bool))[None]                        # a layer's argument
    h = klayers.MultiHeadAttention(2, 2, name="attention")(h, h, attention_mask=mask)
    ids = kops.cast(tokens + kops.arange(4), "float32")                  # an integer one
    return lib.Model(tokens, klayers.Concatenate(name="joined")([h, ids[..., None]]))


_TOKENS = np.array([[1, 2, 3, 4], [0, 0, 9, 1], [5, 6, 7, 8]], "int32")


def _constants_in(config) -> list:
    """The arrays and numbers the graph's nodes hold, layer by layer, in order."""
    found = []

    def walk(value):
        if isinstance(value, dict) and value.get("class_name") in ("__tensor__", "__numpy__"):
            found.append(value)
        elif isinstance(value, dict) and value.get("class_name") != "__keras_tensor__":
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append(value)

    for layer in config["layers"]:
        walk(layer["inbound_nodes"])
    return found


def test_constant_operands_are_kept_in_the_config_as_keras_writes_them():
    ours = _graph_with_constants(kilnet).get_config()
    theirs = _graph_with_constants(keras).get_config()
    mine, keras_s = _constants_in(ours), _constants_in(theirs)
    kinds = [c["class_name"] if isinstance(c, dict) else c for c in mine]
    assert kinds == ["__tensor__", "__numpy__", "__tensor__", 0.25, "__tensor__", "__numpy__",
                     "__numpy__"], kinds
    assert [c["config"]["dtype"] for c in mine if isinstance(c, dict)] == [
        "float32", "float32", "float32", "int32", "float32", "bool"]
    # the position embeddings are drawn: the same kind, dtype and shape as Keras's; the
    # others are the same values
    assert _shape_of(mine[0]) == _shape_of(keras_s[0]) == (4, 3)
    assert mine[1:] == keras_s[1:]
    assert mine[0]["class_name"] == keras_s[0]["class_name"] and \
        mine[0]["config"]["dtype"] == keras_s[0]["config"]["dtype"]


def _shape_of(entry):
    return np.asarray(entry["config"]["value"]).shape


def test_a_graph_with_constants_saves_and_loads_in_kilnet_files_and_configs(tmp_path):
    model = _graph_with_constants(kilnet)
    before = model.predict(_TOKENS, verbose=0)
    model.save(tmp_path / "m.kilnet")
    model.save(tmp_path / "m.keras")
    rebuilt = [kilnet.models.load_model(tmp_path / "m.kilnet"),
               kilnet.models.load_model(tmp_path / "m.keras"),
               kilnet.Model.from_config(model.get_config()),
               kilnet.models.model_from_json(model.to_json())]
    for copy in rebuilt:
        copy.set_weights(model.get_weights())
        np.testing.assert_array_equal(copy.predict(_TOKENS, verbose=0), before)
        # each constant keeps its kind, dtype and values
        assert _constants_in(copy.get_config()) == _constants_in(model.get_config())
    # the constant is no layer: the position Embedding's weights are not the model's (Keras)
    assert [layer.name for layer in model.layers if layer.weights] == [
        "word_embedding", "dense", "attention"]
    _assert_summarized_as_keras(rebuilt[1], _graph_with_constants(keras))


def _assert_summarized_as_keras(model, keras_model):
    """The constants are no rows and connect nothing: the rows are Keras's layers and ops,
    with their output shapes and counts."""
    lines = []
    model.summary(print_fn=lines.append, line_length=160)
    cells = [[c.strip() for c in line.strip("│").split("│")]
             for line in "\n".join(lines).splitlines() if line.startswith("│")]
    ours = [(c[0].rpartition(" (")[2].rstrip(")"), c[1], c[2]) for c in cells]
    assert ours == [(type(op).__name__, str(op.output.shape),
                     str(op.count_params() if isinstance(op, keras.layers.Layer) else 0))
                    for op in keras_model.operations]
    assert [c[3] for c in cells if c[0].startswith("add (")] == ["word_embedding[0][0]"]


def test_keras_and_kilnet_open_each_other_s_constants_and_compute_the_same(tmp_path):
    keras.utils.set_random_seed(5)
    theirs = _graph_with_constants(keras)
    theirs.save(tmp_path / "k.keras")
    ours = kilnet.models.load_model(tmp_path / "k.keras")
    np.testing.assert_allclose(ours.predict(_TOKENS, verbose=0),
                               np.asarray(theirs.predict(_TOKENS, verbose=0)),
                               rtol=1e-5, atol=1e-6)
    mine = _graph_with_constants(kilnet)
    mine.save(tmp_path / "m.keras")
    in_keras = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(in_keras.predict(_TOKENS, verbose=0)),
                               mine.predict(_TOKENS, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_merge_layer_takes_a_constant_among_its_inputs(tmp_path):
    """Add()([x, array]) records the array in the node (it made kilnet fail looking for the
    array's mask), computes x + array and saves in both formats."""
    inputs = kilnet.Input(shape=(4, 3))
    shift = np.linspace(-1, 1, 12).astype("float32").reshape(1, 4, 3)
    model = kilnet.Model(inputs, layers.Add()([inputs, shift]))
    x = _x(2, 4, 3)
    np.testing.assert_allclose(model.predict(x, verbose=0), x + shift, rtol=1e-6)
    for name in ("m.kilnet", "m.keras"):
        model.save(tmp_path / name)
        np.testing.assert_allclose(
            kilnet.models.load_model(tmp_path / name).predict(x, verbose=0), x + shift,
            rtol=1e-6)


@pytest.mark.parametrize("value, dtype, problem", [
    ([1.0, 2.0], "object", "dtype 'object'"),
    ([[1.0], [2.0, 3.0]], "float32", "one regular shape"),
    ([1.0, "2.0"], "float32", "numbers only"),
    ([1.0, None], "float32", "numbers only"),
    ([1.5, 2.0], "int32", "fractional"),
    ([300, 1], "int8", "outside the range"),
])
def test_a_malformed_constant_is_refused_as_data(tmp_path, value, dtype, problem):
    """A constant in a Keras file or a config is read as numbers of a closed set of dtypes,
    nothing else."""
    def spoiled(config):
        node = next(layer for layer in config["layers"]
                    if layer["class_name"] in ("Add", "Operation"))["inbound_nodes"][0]
        node["args"][1]["config"] = {"value": value, "dtype": dtype}
        return config

    inputs = keras.Input(shape=(2,))
    keras.Model(inputs, inputs + np.ones(2, "float32")).save(tmp_path / "k.keras")
    with zipfile.ZipFile(tmp_path / "k.keras") as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    entry = json.loads(members["config.json"])
    spoiled(entry["config"])
    members["config.json"] = json.dumps(entry)
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(kilnet.errors.ModelFileError, match=f"constant argument.*{problem}"):
        kilnet.models.load_model(tmp_path / "bad.keras")
    ours = kilnet.Input(shape=(2,))
    config = spoiled(kilnet.Model(ours, ours + np.ones(2, "float32")).get_config())
    with pytest.raises(kilnet.errors.ModelFileError, match=f"constant argument.*{problem}"):
        kilnet.Model.from_config(config)
