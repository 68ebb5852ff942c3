"""kilnet.ops.nn's pooling, convolution, normalization, attention, CTC, rearrangement and
extra activation functions against keras.ops itself (Keras 3 on JAX): values, dtypes and
shapes, eagerly and under jax.jit; gradients against finite differences; the op nodes they
make in a functional model save and load."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import kilnet
from kilnet import ops
from kilnet.layers._operation import OPS, op_function

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(0)


def _f(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape).astype(np.float32)


X = _f(2, 5)
IMAGES = _f(2, 6, 7, 3)
SEQ = _f(2, 9, 3)
VOLUME = _f(1, 4, 5, 4, 2)
Q, K, V = _f(2, 4, 2, 8), _f(2, 6, 2, 8), _f(2, 6, 2, 8)
MASK = RNG.uniform(size=(2, 1, 4, 6)) > 0.3
LABELS = np.array([[1, 2, 0], [3, 3, 1]], np.int32)

# name: (positional arrays, keyword settings); each compared with keras.ops.<name>
CASES = {
    "celu": ((X,), {"alpha": 0.7}),
    "glu": ((_f(2, 6),), {"axis": -1}),
    "hard_shrink": ((X,), {"threshold": 0.4}),
    "hard_swish": ((X,), {}),
    "hard_tanh": ((X,), {}),
    "soft_shrink": ((X,), {"threshold": 0.3}),
    "sparse_plus": ((X,), {}),
    "sparse_sigmoid": ((X,), {}),
    "squareplus": ((X,), {"b": 2}),
    "tanh_shrink": ((X,), {}),
    "threshold": ((X,), {"threshold": 0.1, "default_value": -3.0}),
    "max_pool_2d": ((IMAGES,), {"pool_size": 2, "strides": 2}),
    "max_pool_same": ((IMAGES,), {"pool_size": (3, 2), "strides": (2, 1), "padding": "same"}),
    "max_pool_1d": ((SEQ,), {"pool_size": 3, "strides": 2}),
    "average_pool_2d": ((IMAGES,), {"pool_size": (2, 3), "strides": 1}),
    "average_pool_same": ((IMAGES,), {"pool_size": 3, "strides": 2, "padding": "SAME"}),
    "average_pool_3d": ((VOLUME,), {"pool_size": 2, "strides": 2, "padding": "same"}),
    "adaptive_average_pool_1d": ((SEQ,), {"output_size": 4}),
    "adaptive_average_pool_2d": ((IMAGES,), {"output_size": (4, 3)}),
    "adaptive_average_pool_3d": ((VOLUME,), {"output_size": (3, 2, 3)}),
    "adaptive_max_pool_2d": ((IMAGES,), {"output_size": (4, 5)}),
    "adaptive_max_pool_1d": ((SEQ,), {"output_size": 2}),
    "conv_2d": ((IMAGES, _f(3, 2, 3, 4)), {"strides": (1, 2), "padding": "same"}),
    "conv_1d_dilated": ((SEQ, _f(2, 3, 5)), {"dilation_rate": 2}),
    "conv_grouped": ((_f(1, 5, 5, 4), _f(2, 2, 2, 6)), {}),
    "conv_3d": ((VOLUME, _f(2, 2, 2, 2, 3)), {"padding": "same"}),
    "depthwise_conv": ((IMAGES, _f(3, 3, 3, 2)), {"strides": 2, "padding": "same"}),
    "separable_conv": ((IMAGES, _f(2, 2, 3, 2), _f(1, 1, 6, 4)), {"dilation_rate": 2}),
    "conv_transpose_valid": ((IMAGES, _f(3, 3, 4, 3)), {"strides": 2}),
    "conv_transpose_same": ((IMAGES, _f(3, 2, 4, 3)), {"strides": (2, 3), "padding": "same"}),
    "conv_transpose_output_padding": ((SEQ, _f(3, 2, 3)),
                                      {"strides": 2, "padding": "same", "output_padding": 0}),
    "conv_transpose_dilated": ((SEQ, _f(2, 2, 3)), {"dilation_rate": 2}),
    "batch_normalization": ((IMAGES, _f(3, low=-1, high=1), _f(3, low=0.5, high=2)),
                            {"axis": -1, "offset": _f(3), "scale": _f(3), "epsilon": 0.01}),
    "batch_normalization_axis1": ((IMAGES, _f(6), _f(6, low=0.5, high=2)), {"axis": 1}),
    "layer_normalization": ((IMAGES,), {"gamma": _f(3), "beta": _f(3)}),
    "layer_normalization_axes": ((IMAGES,), {"axis": (1, 2), "gamma": _f(6, 7),
                                             "epsilon": 1e-3}),
    "layer_normalization_rms_scaling": ((IMAGES,), {"gamma": _f(3), "rms_scaling": True}),
    "rms_normalization": ((IMAGES,), {"scale": _f(3)}),
    "rms_normalization_axes": ((IMAGES,), {"axis": (1, 3), "epsilon": 0.1}),
    "dot_product_attention": ((Q, K, V), {}),
    "dot_product_attention_masked": ((Q, K, V), {"mask": MASK, "bias": _f(1, 2, 4, 6),
                                                 "scale": 0.3}),
    "dot_product_attention_causal": ((Q, Q, Q), {"is_causal": True}),
    "dot_product_attention_grouped": ((_f(2, 4, 4, 8), K[:, :, :1], V[:, :, :1]), {}),
    "multi_hot": ((LABELS, 5), {}),
    "multi_hot_1d": ((np.array([0, 2, 2]), 4), {"dtype": "int32"}),
    "psnr": ((IMAGES, IMAGES * 0.9 + 0.05), {"max_val": 2.0}),
    "ctc_loss": ((LABELS, _f(2, 7, 4), np.array([3, 2]), np.array([7, 5])), {}),
    "ctc_loss_mask_index": ((LABELS, _f(2, 7, 4), np.array([2, 3]), np.array([6, 7])),
                            {"mask_index": 3}),
    "ctc_decode": ((_f(2, 8, 4), np.array([8, 5])), {}),
    "ctc_decode_no_merge": ((_f(2, 8, 4), np.array([8, 6])),
                            {"merge_repeated": False, "mask_index": 2}),
    "ctc_decode_beam": ((_f(2, 8, 4), np.array([8, 5])),
                        {"strategy": "beam_search", "beam_width": 4, "top_paths": 3}),
    "ctc_decode_beam_wide": ((_f(3, 6, 3), np.array([6, 4, 1])),
                             {"strategy": "beam_search", "beam_width": 10, "top_paths": 2,
                              "mask_index": 1}),
    "depth_to_space": ((_f(2, 3, 2, 8), 2), {}),
    "depth_to_space_first": ((_f(2, 8, 3, 2), 2), {"data_format": "channels_first"}),
    "space_to_depth": ((_f(2, 4, 6, 3), 2), {}),
    "space_to_depth_first": ((_f(2, 3, 4, 6), 2), {"data_format": "channels_first"}),
    "polar": ((X, _f(2, 5)), {}),
    "unfold": ((_f(2, 3, 6, 5), (2, 3)), {"dilation": (1, 2), "padding": 1, "stride": 2}),
    "fold": ((_f(2, 12, 9), (4, 6), 2), {"padding": (1, 0), "stride": (2, 2)}),
}


def _function(case):
    """The function a case calls: its name less the case's suffixes (conv_2d -> conv)."""
    name = case
    while name not in ops.nn.__all__:
        name = name.rsplit("_", 1)[0]
    return name


def _call(function, args, kwargs, jit):
    if not jit:
        return function(*args, **kwargs)
    arrays = [i for i, a in enumerate(args) if isinstance(a, np.ndarray)]

    def run(*values):
        full = list(args)
        for i, v in zip(arrays, values):
            full[i] = v
        return function(*full, **kwargs)

    return jax.jit(run)(*[args[i] for i in arrays])


def _same(ours, theirs, rtol=2e-5, atol=2e-5):
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, (a.shape, b.shape)
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    assert len(jax.tree.leaves(ours)) == len(jax.tree.leaves(theirs))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras(case, jit):
    name = _function(case)
    args, kwargs = CASES[case]
    ours = _call(getattr(ops.nn, name), args, kwargs, jit)
    theirs = getattr(keras.ops.nn, name)(*args, **kwargs)
    _same(ours, theirs)
    assert getattr(ops, name) is getattr(ops.nn, name)   # also at kilnet.ops, as Keras


def test_sparsemax_is_the_simplex_projection():
    """The sort-based projection (Martins & Astudillo) in NumPy; Keras 3.15 agrees where a
    row has one non-zero, and errs (its rows need not sum to 1) otherwise."""
    x = _f(4, 6)

    def reference(row):
        z = np.sort(row)[::-1]
        k = np.arange(1, row.size + 1)
        support = k[1 + k * z > np.cumsum(z)].max()
        return np.maximum(row - (np.cumsum(z)[support - 1] - 1) / support, 0)

    ours = np.asarray(ops.sparsemax(x))
    np.testing.assert_allclose(ours, np.stack([reference(r) for r in x]), atol=1e-6)
    np.testing.assert_allclose(ours.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ops.sparsemax(x.T, axis=0)), ours.T, atol=1e-6)
    peaked = np.array([[1.0, 2.0, 5.0], [0.0, -1.0, 3.0]], np.float32)
    _same(ops.sparsemax(peaked), keras.ops.sparsemax(peaked))


# differentiable cases and the argument differentiated: the gradient of sum(sin(f)) against
# finite differences (smooth cases) and against Keras's own gradient (its JAX ops are
# differentiable; exact where finite differences are coarse, as at a max or a norm)
GRADIENTS = {
    "average_pool_same": 0, "conv_2d": 1, "depthwise_conv": 1, "conv_transpose_same": 0,
    "separable_conv": 2, "dot_product_attention_masked": 0, "ctc_loss": 1,
    "rms_normalization": 0, "batch_normalization": 0,
}
KERAS_GRADIENTS = dict(GRADIENTS, max_pool_same=0, adaptive_max_pool_2d=0,
                       adaptive_average_pool_2d=0, conv_transpose_valid=1,
                       ctc_loss_mask_index=1, layer_normalization=0,
                       dot_product_attention_causal=0)


def _loss(function, args, kwargs, position):
    def loss(value):
        full = list(args)
        full[position] = value
        return jnp.sum(jnp.sin(function(*full, **kwargs)))
    return loss


@pytest.mark.parametrize("case", sorted(GRADIENTS))
def test_gradients_match_finite_differences(case):
    args, kwargs = CASES[case]
    loss = _loss(getattr(ops.nn, _function(case)), args, kwargs, GRADIENTS[case])
    check_grads(loss, (jnp.asarray(args[GRADIENTS[case]], jnp.float32),), order=1,
                modes=["rev"], atol=5e-2, rtol=5e-2, eps=1e-2)


@pytest.mark.parametrize("case", sorted(KERAS_GRADIENTS))
def test_gradients_match_keras(case):
    args, kwargs = CASES[case]
    position, name = KERAS_GRADIENTS[case], _function(case)
    ours, theirs = (jax.grad(_loss(f, args, kwargs, position))(args[position])
                    for f in (getattr(ops.nn, name), getattr(keras.ops.nn, name)))
    _same(ours, theirs, rtol=1e-4, atol=1e-5)


def test_pooling_strides_default_to_the_pool_size():
    """Keras 3.15 on JAX fails on strides=None (it expands the pool size twice); kilnet
    reads it as documented: the pool size."""
    for pool in (ops.max_pool, ops.average_pool):
        ours, explicit = pool(IMAGES, (2, 3)), pool(IMAGES, (2, 3), strides=(2, 3))
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(explicit))


def test_fold_covers_output_size_where_blocks_stop_short():
    """Blocks that do not reach the last row/column leave zeros there (PyTorch's fold; Keras
    3.15 on JAX drops those positions)."""
    x = _f(1, 1, 5, 5)
    folded = np.asarray(ops.fold(ops.unfold(x, 2, stride=2), (5, 5), 2, stride=2))
    np.testing.assert_array_equal(folded[..., :4, :4], x[..., :4, :4])
    assert folded.shape == x.shape and not folded[..., 4, :].any() and not folded[..., 4].any()


def test_fold_undoes_unfold_where_blocks_do_not_overlap():
    x = _f(2, 3, 6, 4)
    blocks = ops.unfold(x, 2, stride=2)
    np.testing.assert_array_equal(np.asarray(ops.fold(blocks, (6, 4), 2, stride=2)), x)
    back = ops.depth_to_space(ops.space_to_depth(IMAGES[:, :6, :6], 3), 3)
    np.testing.assert_array_equal(np.asarray(back), IMAGES[:, :6, :6])


def test_variables_are_accepted():
    kernel = kilnet.Variable(_f(3, 3, 3, 2), name="kernel")
    _same(ops.conv(IMAGES, kernel), keras.ops.conv(IMAGES, np.asarray(kernel.value)))


@pytest.mark.parametrize("call, message", [
    (lambda: ops.conv(IMAGES, _f(3, 3, 3, 2), data_format="channels_first"),
     "moveaxis"),
    (lambda: ops.max_pool(IMAGES, 2, data_format="channels_first"), "channels_last"),
    (lambda: ops.max_pool(IMAGES, 2, padding="full"), "padding"),
    (lambda: ops.conv(IMAGES, _f(3, 3, 2, 2)), "multiple"),
    (lambda: ops.depthwise_conv(IMAGES, _f(3, 3, 2, 2)), "in_channels"),
    (lambda: ops.average_pool(IMAGES, (2, 2, 2)), "pool_size"),
    (lambda: ops.dot_product_attention(Q, K, V, flash_attention=True), "flash_attention"),
    (lambda: ops.dot_product_attention(Q[0], K[0], V[0]), "4-D"),
    (lambda: ops.dot_product_attention(Q, K, V, attn_logits_soft_cap=5.0), "TPU"),
    (lambda: ops.ctc_decode(_f(2, 8, 4), np.array([8, 5]), strategy="best"), "strategy"),
    (lambda: ops.multi_hot(LABELS), "num_classes"),
    (lambda: ops.psnr(X, X[:1], 1.0), "shape"),
    (lambda: ops.glu(_f(2, 5)), "even"),
    (lambda: ops.depth_to_space(IMAGES, 2, data_format="nchw"), "data_format"),
])
def test_bad_arguments_say_what_was_received(call, message):
    if message == "flash_attention" and jax.devices()[0].platform == "gpu":
        pytest.skip("flash attention runs on a GPU")
    with pytest.raises(ValueError, match="Received") as error:
        call()
    assert message in str(error.value)


def test_the_new_ops_are_keras_s_op_classes_with_their_settings():
    """Every nn op kilnet records is a Keras class taking those settings, and Keras's
    constructor plus call take the kilnet function's arguments."""
    import importlib
    import inspect
    for name, (function, module, settings) in OPS.items():
        if not module.endswith(".nn"):
            continue
        cls = getattr(importlib.import_module(module), name)
        init = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "name", "args", "kwargs")]
        call = [p for p in inspect.signature(cls.call).parameters if p != "self"]
        assert init == list(settings), name
        assert sorted(init + call) == sorted(inspect.signature(op_function(name)).parameters)


def test_a_functional_model_with_nn_ops_saves_and_loads(tmp_path):
    """(Int pool sizes and no adaptive pooling: Keras 3.15 cannot reopen its own files
    with a tuple pool size or an AdaptiveAveragePool node, which JSON gives back as lists.)"""
    data = _f(2, 6, 8, 4)
    inputs = kilnet.Input(shape=(6, 8, 4))   # also read as (time, heads, depth)
    x = ops.max_pool(inputs, 2, strides=1, padding="same")
    x = ops.layer_normalization(ops.celu(x, alpha=0.5), epsilon=1e-3)
    x = ops.space_to_depth(ops.average_pool(x, 4, strides=4, padding="same"), 2)
    attended = ops.dot_product_attention(inputs, inputs, inputs, is_causal=True)
    model = kilnet.Model(inputs, [x, attended])
    expected = model.predict(data, verbose=0)
    k = keras.ops
    reference = [k.space_to_depth(k.average_pool(k.layer_normalization(
        k.celu(k.max_pool(data, 2, strides=1, padding="same"), alpha=0.5), epsilon=1e-3),
        4, strides=4, padding="same"), 2),
        k.dot_product_attention(data, data, data, is_causal=True)]
    _same(expected, reference, rtol=1e-4, atol=1e-4)
    for extension in ("kilnet", "keras"):
        path = str(tmp_path / f"model.{extension}")
        model.save(path)
        _same(kilnet.models.load_model(path).predict(data, verbose=0), expected)
    restored = keras.models.load_model(str(tmp_path / "model.keras"))
    _same(restored.predict(data, verbose=0), expected, rtol=1e-4, atol=1e-4)
