"""oneDNN's convolutions (kilnet/_kernels/onednn_conv.py): numbers against JAX's own
convolution and derivative in float64, use inside compiled loops, and the way back to XLA's
convolution when oneDNN cannot be built or is switched off."""

import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import kilnet
from kilnet import layers
from kilnet._kernels import conv as kernel_conv, onednn, onednn_conv
from _onednn_compare import assert_matches_xla

import platform

# The oneDNN wheels kilnet depends on exist for x86-64 Linux; there oneDNN must be in use.
pytestmark = pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64"),
    reason="oneDNN's wheels are for x86-64 Linux only")


def test_onednn_is_built_and_registered():
    assert onednn.status() == "ready"


def reference(x, k, strides, pads, dilation):
    return lax.conv_general_dilated(x, k, strides, pads, rhs_dilation=dilation,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def assert_equals_float64(ours, theirs, arrays, rng):
    """`ours` on float32 copies of `arrays` against `theirs` in float64: the output, and the
    gradient for each array under one random output gradient, each to 1e-5 of its largest
    value (float32 sums)."""
    def value_and_vjp(f):   # one compiled program: the output and its pullback of dy
        def run(dy, *arrays):
            y, vjp = jax.vjp(f, *arrays)
            return (y,) + vjp(dy)
        return jax.jit(run)

    with jax.enable_x64(True):
        arrays64 = tuple(map(jnp.asarray, arrays))
        dy = rng.standard_normal(jax.eval_shape(theirs, *arrays64).shape)
        expected = value_and_vjp(theirs)(jnp.asarray(dy), *arrays64)
    got = value_and_vjp(ours)(jnp.asarray(dy, jnp.float32),
                              *(jnp.asarray(a, jnp.float32) for a in arrays))
    names = ["output"] + [f"gradient {i}" for i in range(len(arrays))]
    for name, a, b in zip(names, got, expected):
        assert a.shape == b.shape, name
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5 * np.abs(b).max(),
                                   err_msg=name)


@pytest.mark.parametrize("kernel, strides, dilation", [
    ((3, 3), (1, 1), (1, 1)), ((3, 3), (2, 2), (1, 1)), ((2, 3), (1, 3), (1, 1)),
    ((3, 2), (1, 1), (2, 1)), ((5, 2), (1, 1), (1, 2)), ((3, 3), (3, 3), (1, 1)),
    ((2, 2), (3, 3), (1, 1)), ((5, 4), (2, 3), (1, 1)), ((1, 1), (1, 1), (1, 1)),
    ((1, 1), (2, 2), (1, 1))])
@pytest.mark.parametrize("padding", ["same", "valid", ((2, 1), (0, 3))])
@pytest.mark.parametrize("size, channels", [((9, 9), (3, 4)), ((8, 11), (1, 32)),
                                            ((7, 6), (17, 5))])
def test_forward_and_gradients_equal_jax_in_float64(kernel, strides, dilation, padding, size,
                                                   channels):
    """Output, input gradient and kernel gradient of float32 oneDNN against JAX's float64
    convolution and derivative, relative to the largest value (float32 sums: 1e-5)."""
    rng = np.random.default_rng(0)
    cin, cout = channels
    x = rng.standard_normal((2,) + size + (cin,))
    k = rng.standard_normal(kernel + (cin, cout))
    pads = kernel_conv._explicit_padding(x.shape, k.shape, strides, padding, dilation)
    assert_equals_float64(
        jax.jit(lambda x, k: onednn_conv.conv_onednn(x, k, strides, pads, dilation)),
        lambda x, k: reference(x, k, strides, pads, dilation), (x, k), rng)


@pytest.mark.parametrize("channels, groups, strides, padding", [
    ((6, 9), 3, (1, 1), "same"), ((4, 4), 4, (2, 2), "valid"), ((4, 8), 4, (1, 1), "same"),
    ((8, 4), 2, (2, 1), "same"), ((5, 15), 5, (1, 2), ((1, 0), (2, 1)))])
def test_grouped_and_depthwise_equal_jax_in_float64(channels, groups, strides, padding):
    """Grouped convolutions (XLA's feature_group_count; groups = input channels is
    depthwise) against JAX's float64 convolution and derivative."""
    rng = np.random.default_rng(5)
    cin, cout = channels
    x = rng.standard_normal((2, 9, 8, cin))
    k = rng.standard_normal((3, 2, cin // groups, cout))
    pads = kernel_conv._explicit_padding(x.shape, k.shape, strides, padding, (1, 1))

    def expected_conv(x, k):
        return lax.conv_general_dilated(x, k, strides, pads, feature_group_count=groups,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    assert_equals_float64(
        lambda x, k: onednn_conv.conv_onednn(x, k, strides, pads, (1, 1), groups),
        expected_conv, (x, k), rng)


def test_negative_padding_is_refused_and_conv2d_cpu_crops_with_xla():
    """oneDNN has no cropping: conv_onednn refuses negative padding by name, and the CPU
    convolution gives such a call to XLA (the same numbers as lax)."""
    x, k = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 3))
    pads = ((-1, 1), (0, -1))
    with pytest.raises(ValueError, match="no negative padding"):
        onednn_conv.conv_onednn(x, k, (1, 1), pads, (1, 1))
    np.testing.assert_allclose(kernel_conv.conv2d_cpu(x, k, (1, 1), pads, (1, 1)),
                               reference(x, k, (1, 1), pads, (1, 1)))


@pytest.mark.parametrize("kernel, stride, dilation, pads, groups", [
    (3, 1, 1, (0, 0), 1), (7, 3, 1, (2, 4), 1), (3, 1, 2, (4, 0), 1), (5, 2, 1, (2, 2), 3),
    (3, 1, 1, (1, 1), 6)])
def test_one_column_images_equal_jax_in_float64(kernel, stride, dilation, pads, groups):
    """Conv1D's form (steps as the rows of a one-column image), which the handlers run as
    oneDNN's 1-D convolution, grouped or not, against JAX's float64 convolution."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 17, 1, 6))
    k = rng.standard_normal((kernel, 1, 6 // groups, 12))
    strides, dilations, pads2 = (stride, 1), (dilation, 1), (pads, (0, 0))

    def expected_conv(x, k):
        return lax.conv_general_dilated(x, k, strides, pads2, rhs_dilation=dilations,
                                        feature_group_count=groups,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    assert_equals_float64(
        lambda x, k: onednn_conv.conv_onednn(x, k, strides, pads2, dilations, groups),
        expected_conv, (x, k), rng)


@pytest.mark.parametrize("kernel, strides, dilation, padding", [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1), "same"), ((2, 3, 2), (2, 1, 2), (1, 1, 1), "valid"),
    ((3, 2, 3), (1, 1, 1), (2, 1, 1), "same")])
def test_conv3d_equals_jax_in_float64(kernel, strides, dilation, padding):
    """Conv3D's CPU form (oneDNN's 3-D convolution) against JAX's float64 convolution, and its
    program calls oneDNN."""
    from kilnet.layers._conv3d import conv3d, conv3d_native

    rng = np.random.default_rng(8)
    x, k = rng.standard_normal((2, 6, 7, 5, 3)), rng.standard_normal(kernel + (3, 4))
    ours = jax.jit(lambda x, k: conv3d(x, k, strides, padding, dilation))
    assert "kilnet_onednn_conv_forward" in ours.lower(jnp.asarray(x, jnp.float32),
                                                      jnp.asarray(k, jnp.float32)).as_text()
    assert_equals_float64(ours, lambda x, k: conv3d_native(x, k, strides, padding, dilation),
                          (x, k), rng)


def test_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="do not make 3 groups"):
        onednn_conv.conv_onednn(jnp.ones((1, 5, 5, 4)), jnp.ones((3, 3, 1, 4)), (1, 1),
                                   ((0, 0), (0, 0)), (1, 1), 3)


@pytest.mark.parametrize("layer", [
    lambda: layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    lambda: layers.SeparableConv2D(5, 3, strides=2),
    lambda: layers.Conv2D(6, 3, groups=3, padding="same")])
def test_depthwise_separable_and_grouped_layers_take_onednn(layer, monkeypatch):
    """Those layers' float32 programs call oneDNN, with the numbers of their other CPU form
    (strided views or patches: KILNET_ONEDNN=0's flag)."""
    layer = layer()
    x = jnp.asarray(np.random.default_rng(4).standard_normal((2, 9, 9, 3)), jnp.float32)
    params, state, _ = layer.init(np.random.default_rng(0), (9, 9, 3))

    def run(x):
        return jnp.sum(jnp.sin(layer.apply(params, state, x)[0]))

    def program():  # traced afresh each time (jit caches traces by function)
        return jax.jit(lambda x: run(x)).lower(x).as_text()

    assert "kilnet_onednn_conv_forward" in program()
    with_onednn = jax.value_and_grad(run)(x)
    monkeypatch.setattr(onednn, "ENABLED", False)
    assert "kilnet_onednn_conv_forward" not in program()
    for a, b in zip(with_onednn, jax.value_and_grad(run)(x)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel, strides, dilation, padding, output_padding, on_onednn", [
    ((3, 3), (1, 1), (1, 1), "valid", None, True), ((3, 3), (2, 2), (1, 1), "same", None, True),
    ((4, 4), (2, 2), (1, 1), "same", (1, 0), True), ((3, 3), (1, 1), (2, 1), "same", None, True),
    ((5, 5), (2, 2), (1, 1), "same", None, True), ((2, 2), (2, 2), (1, 1), "valid", None, True),
    # a stride past the kernel crops the convolution it transposes: the scatter form runs
    ((3, 2), (2, 3), (1, 1), "valid", None, False),
    ((1, 2), (3, 3), (1, 1), "valid", (2, 0), False)])
def test_conv2d_transpose_equals_jax_in_float64(kernel, strides, dilation, padding,
                                                output_padding, on_onednn):
    """Conv2DTranspose's CPU form (oneDNN's input gradient where the convolution it transposes
    has no negative padding) against lax.conv_transpose and its derivative in float64."""
    from kilnet._kernels.conv_transpose import (
        conv2d_transpose,
        conv2d_transpose_native,
        transpose_padding,
    )

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 5, 4, 3))
    k = rng.standard_normal(kernel + (2, 3))
    pads = [transpose_padding(kernel[i], strides[i], dilation[i], padding,
                              None if output_padding is None else output_padding[i])
            for i in range(2)]

    def ours(x, k):
        return conv2d_transpose(x, k, strides, dilation, padding, output_padding)

    x32, k32 = jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)
    assert ("kilnet_onednn_conv_input_gradient" in jax.jit(ours).lower(x32, k32).as_text()) \
        == on_onednn
    assert_equals_float64(
        ours, lambda x, k: conv2d_transpose_native(x, k, strides, dilation, pads), (x, k), rng)


def test_conv2d_transpose_onednn_checks_its_output_size():
    with pytest.raises(ValueError, match="convolved back gives"):
        onednn_conv.conv2d_transpose_onednn(jnp.ones((1, 2, 2, 1)), jnp.ones((2, 2, 1, 1)),
                                             (2, 2), ((0, 0), (0, 0)), (1, 1), (6, 6))


def test_output_shape_matches_lax():
    for x_shape, k_shape, strides, pads, dilation in [
            ((2, 9, 8, 3), (3, 3, 3, 4), (2, 2), ((1, 1), (0, 1)), (1, 1)),
            ((1, 10, 10, 1), (3, 2, 1, 2), (3, 1), ((0, 0), (2, 2)), (2, 3))]:
        expected = jax.eval_shape(lambda x, k: reference(x, k, strides, pads, dilation),
                                  jax.ShapeDtypeStruct(x_shape, jnp.float32),
                                  jax.ShapeDtypeStruct(k_shape, jnp.float32)).shape
        assert onednn_conv.output_shape(x_shape, k_shape, strides, pads, dilation) == expected


def test_gradient_steps_in_a_scan_equal_xla_convolution():
    """Twenty gradient steps of a two-convolution model inside lax.scan (as kilnet's epoch
    programs run them), through oneDNN and through XLA's convolution: the same weights."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((20, 8, 10, 10, 2)), jnp.float32)
    k1 = jnp.asarray(rng.standard_normal((3, 3, 2, 8)) * 0.3, jnp.float32)
    k2 = jnp.asarray(rng.standard_normal((3, 3, 8, 4)) * 0.3, jnp.float32)

    def train(conv):
        def loss(ks, xb):
            h = jax.nn.relu(conv(xb, ks[0], (1, 1), ((1, 1), (1, 1)), (1, 1)))
            return jnp.mean(conv(h, ks[1], (2, 2), ((0, 0), (0, 0)), (1, 1)) ** 2)

        def step(ks, xb):
            grads = jax.grad(loss)(ks, xb)
            return tuple(k - 0.05 * g for k, g in zip(ks, grads)), loss(ks, xb)

        return jax.jit(lambda ks: lax.scan(step, ks, x))((k1, k2))

    (a1, a2), losses_a = train(onednn_conv.conv_onednn)
    (b1, b2), losses_b = train(lambda x, k, s, p, d: reference(x, k, s, p, d))
    assert losses_a[-1] < losses_a[0]
    np.testing.assert_allclose(losses_a, losses_b, rtol=1e-4)
    np.testing.assert_allclose(a1, b1, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a2, b2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel_size", [3, 1])
def test_conv2d_layer_takes_onednn_in_float32_only(monkeypatch, kernel_size):
    """Conv2D's float32 program calls oneDNN (1x1 kernels too); switched off (KILNET_ONEDNN=0's
    flag) it is XLA's convolution or a product, with the same numbers."""
    x = jnp.asarray(np.random.default_rng(1).standard_normal((2, 9, 9, 3)), jnp.float32)
    layer = layers.Conv2D(4, kernel_size, strides=2, padding="same")
    params, state, _ = layer.init(np.random.default_rng(0), (9, 9, 3))

    def program(x):
        return jax.jit(lambda x: layer.apply(params, state, x)[0]).lower(x).as_text()

    assert "kilnet_onednn_conv_forward" in program(x)
    with_onednn = layer.apply(params, state, x)[0]
    monkeypatch.setattr(onednn, "ENABLED", False)
    assert "kilnet_onednn_conv_forward" not in program(x)
    np.testing.assert_allclose(layer.apply(params, state, x)[0], with_onednn, rtol=1e-5,
                               atol=1e-5)


def test_a_convnet_trains_the_same_with_and_without_onednn(monkeypatch):
    """A small convnet fitted with oneDNN's convolutions and with XLA's: the same losses to
    float32 precision, epoch by epoch."""
    rng = np.random.default_rng(2)
    X = rng.random((96, 12, 12, 1), dtype=np.float32)
    y = (X[:, :6].mean(axis=(1, 2, 3)) > X[:, 6:].mean(axis=(1, 2, 3))).astype("int32")

    def fit():
        kilnet.utils.set_random_seed(0)
        model = kilnet.Sequential([kilnet.Input((12, 12, 1)),
                                   layers.Conv2D(8, 3, activation="relu"),
                                   layers.MaxPooling2D(2), layers.Conv2D(8, 3, padding="same"),
                                   layers.Flatten(), layers.Dense(2, activation="softmax")])
        model.compile(optimizer=kilnet.optimizers.Adam(0.01),
                      loss="sparse_categorical_crossentropy")
        before = model.evaluate(X, y, verbose=0)
        losses = model.fit(X, y, batch_size=16, epochs=5, verbose=0).history["loss"]
        return losses, before, model.evaluate(X, y, verbose=0)

    with_onednn, before, after = fit()
    monkeypatch.setattr(onednn, "ENABLED", False)
    np.testing.assert_allclose(with_onednn, fit()[0], rtol=1e-4)
    # Judged on the whole data before and after: at Adam's default rate the epochs' mean
    # training losses fell by 1.6-5% only (10 data and weight draws); at 0.01 for 5 epochs,
    # after/before is 0.47-0.80 (11 draws).
    assert after < 0.9 * before, (before, after)


def run_fresh(code, **env):
    """`code` in a new interpreter (oneDNN's status is settled once per process)."""
    import os

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip(), done.stderr


def test_first_call_in_a_process_registers_the_handlers():
    """conv_onednn called before anything asked for oneDNN's status builds and registers it
    itself (XLA would otherwise find no handler when the program runs)."""
    code = ("import jax.numpy as jnp\n"
            "from kilnet._kernels.onednn_conv import conv_onednn\n"
            "y = conv_onednn(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2)), (1, 1),\n"
            "                  ((1, 1), (1, 1)), (1, 1))\n"
            "print(float(y[0, 1, 1, 0]), float(y[0, 0, 0, 1]))\n")
    assert run_fresh(code)[0].splitlines()[-1] == "9.0 4.0"


def test_switched_off_by_the_environment():
    out, err = run_fresh("from kilnet._kernels import onednn as o; print(o.status())",
                         KILNET_ONEDNN="0")
    assert out == "disabled (KILNET_ONEDNN=0)" and "oneDNN" not in err


def test_without_a_compiler_conv2d_falls_back_to_xla(tmp_path):
    """No C++ compiler and nothing built in the cache: one warning and the status name the
    compiler, and a Conv2D still runs (XLA's convolution)."""
    code = ("import jax.numpy as jnp, kilnet\n"
            "from kilnet._kernels import onednn as o\n"
            "print(o.status())\n"
            "m = kilnet.Sequential([kilnet.Input((5, 5, 1)), kilnet.layers.Conv2D(2, 3)])\n"
            "print(m.predict(jnp.ones((1, 5, 5, 1)), verbose=0).shape)\n")
    out, err = run_fresh(code, CXX=str(tmp_path / "no-such-compiler"),
                         XDG_CACHE_HOME=str(tmp_path / "cache"))
    status, shape = out.splitlines()[-2:]
    assert status.startswith("unavailable: no C++ compiler") and "no-such-compiler" in status
    assert err.count("oneDNN's kernels are unavailable") == 1 and "slower" in err
    assert shape == "(1, 3, 3, 2)"


def test_a_missing_package_is_named(monkeypatch):
    monkeypatch.setattr(onednn, "LIBRARY_DIST", "no-such-onednn-wheel")
    with pytest.raises(OSError, match="'no-such-onednn-wheel' package is not installed"):
        onednn._load()


def test_data_parallel_convnet_on_four_devices_trains_like_one():
    """oneDNN's calls (convolutions, and batch normalization: its statistics are the whole
    batch's) inside a program sharded over 4 CPU devices (DataParallel): the same losses and
    weights as one device."""
    code = '''
import numpy as np, kilnet
from kilnet import layers
from kilnet._kernels import onednn_batch_norm, onednn

onednn_batch_norm.MIN_SIZE = 1  # this small image's batch norm goes to oneDNN too

def run(distribution):
    kilnet.utils.set_random_seed(0)
    model = kilnet.Sequential([kilnet.Input((10, 10, 2)), layers.Conv2D(8, 3, activation="relu"),
                               layers.Conv2D(4, 3, strides=2, use_bias=False),
                               layers.BatchNormalization(), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  distribution=distribution)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 10, 10, 2), dtype=np.float32), rng.integers(0, 3, 64)
    losses = model.fit(x, y, batch_size=16, epochs=3, verbose=0, seed=0).history["loss"]
    return losses, model.get_weights()

(a, wa), (b, wb) = run(None), run(kilnet.distribution.DataParallel())
assert kilnet.distribution.DataParallel().num_devices == 4 and onednn.available()
print(max(abs(p - q) for p, q in zip(a, b)), max(float(np.abs(p - q).max()) for p, q in zip(wa, wb)))
'''
    import os

    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    out, _ = run_fresh(code, XLA_FLAGS=flags)
    loss_gap, weight_gap = map(float, out.splitlines()[-1].split())
    assert loss_gap < 1e-5 and weight_gap < 1e-5


# ---- Choosing among oneDNN's implementations ------------------------------------------------
PLAN_LINE = re.compile(r"^(?P<description>.*): (?P<implementation>[^,]+), "
                       r"(?P<chosen_by>measured|remembered|the only candidate|forced), "
                       r"(?P<index>\d+) of (?P<candidates>\d+), ")


def plans_of(src_text):
    """The plan lines of the convolutions whose oneDNN source shape is `src_text`, parsed."""
    lines = [PLAN_LINE.match(line) for line in onednn.convolution_plans()]
    return [m.groupdict() for m in lines if m and f" src {src_text} " in m["description"]]


# (x shape without the batch, kernel shape, strides, pads, dilation, groups); each case runs
# with its own batch size so that its plans are told apart by their shapes.
IMPLEMENTATION_CASES = [
    ((9, 9, 8), (3, 3, 8, 16), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
    ((10, 10, 8), (3, 3, 8, 16), (2, 2), ((0, 1), (0, 1)), (1, 1), 1),
    ((10, 10, 16), (1, 1, 16, 32), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    ((9, 9, 8), (3, 3, 4, 8), (1, 1), ((1, 1), (1, 1)), (1, 1), 2),
    ((9, 9, 8), (3, 3, 1, 8), (1, 1), ((1, 1), (1, 1)), (1, 1), 8),
    ((9, 9, 8), (3, 3, 8, 8), (1, 1), ((2, 2), (2, 2)), (2, 2), 1),
    ((20, 8), (5, 8, 16), (1,), ((2, 2),), (1,), 1),
    ((5, 6, 7, 4), (3, 3, 3, 4, 8), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 1),
]


@pytest.mark.parametrize("case", range(len(IMPLEMENTATION_CASES)))
def test_every_implementation_computes_the_same_convolution(case):
    """The plan measured fastest, then each other implementation oneDNN offers (forced one
    by one), against JAX's convolution in float64: any of them may be chosen on a machine."""
    spatial, kernel, strides, pads, dilation, groups = IMPLEMENTATION_CASES[case]
    batch = 3 + case
    rng = np.random.default_rng(case)
    arrays = [rng.standard_normal((batch, *spatial)), rng.standard_normal(kernel)]
    image = "NWC NHWC NDHWC".split()[len(strides) - 1]
    numbers = (image, image[1:-1] + "IO", image)

    def ours(x, k):
        return onednn_conv.conv_onednn(x, k, strides, pads, dilation, groups)

    def theirs(x, k):
        return lax.conv_general_dilated(x, k, strides, pads, rhs_dilation=dilation,
                                        dimension_numbers=numbers, feature_group_count=groups)

    onednn.force_convolution_candidate(None)
    assert_equals_float64(ours, theirs, arrays, rng)
    src = "x".join(map(str, (batch, spatial[-1], *spatial[:-1])))
    plans = plans_of(src)
    assert sorted(p["description"].split()[0] for p in plans) == [
        "forward", "input_gradient", "kernel_gradient"]
    assert all(p["chosen_by"] != "forced" for p in plans)
    most = max(int(p["candidates"]) for p in plans)
    if len(strides) == 2 and groups == 1:  # oneDNN offers several of these on any x86-64
        assert most > 1
    try:
        for index in range(most):
            onednn.force_convolution_candidate(index)
            assert_equals_float64(ours, theirs, arrays, rng)
    finally:
        onednn.force_convolution_candidate(None)
    forced = [p for p in plans_of(src) if p["chosen_by"] == "forced"]
    assert {int(p["index"]) for p in forced} == set(range(most))


def test_choices_are_measured_once_and_remembered_on_the_machine(tmp_path):
    """A process measures each new convolution's implementations and writes its choices in
    kilnet's cache; the next process takes the same ones without measuring; a remembered name
    that no longer matches oneDNN's implementation at that place is measured again."""
    code = ("import jax, jax.numpy as jnp\n"
            "from kilnet._kernels import onednn_conv, onednn\n"
            "f = lambda x, k: onednn_conv.conv_onednn(x, k, (2, 2), ((0, 1), (0, 1)),\n"
            "                                          (1, 1)).sum()\n"
            "jax.grad(f, (0, 1))(jnp.ones((3, 12, 12, 8)), jnp.ones((3, 3, 8, 16)))\n"
            "print('\\n'.join(onednn.convolution_plans()))\n")
    cache = tmp_path / "cache"
    # The fresh cache gets the library this machine built (a build is about 6 s of CPU); the
    # choices, what this test is about, start unknown.
    assert onednn.available()
    (cache / "kilnet" / "native").mkdir(parents=True)
    for library in onednn._cache_dir().glob("kilnet_onednn_*.so"):
        shutil.copy(library, cache / "kilnet" / "native")

    def plans():
        out = run_fresh(code, XDG_CACHE_HOME=str(cache))[0].splitlines()
        parsed = [PLAN_LINE.match(line) for line in out]
        return {m["description"]: m.groupdict() for m in parsed if m}

    first = plans()
    measured = {d: p for d, p in first.items() if p["chosen_by"] == "measured"}
    assert len(first) == 3 and measured
    second = plans()
    for description, plan in measured.items():
        again = second[description]
        assert again["chosen_by"] == "remembered"
        assert (again["implementation"], again["index"]) == (plan["implementation"],
                                                             plan["index"])
    (choices,) = (tmp_path / "cache" / "kilnet" / "native").glob("conv_choices_*.txt")
    lines = choices.read_text().splitlines()
    assert len(lines) == len(measured)
    choices.write_text("".join(line.rsplit("\t", 1)[0] + "\tno-such-implementation\n"
                               for line in lines))
    third = plans()
    assert all(third[d]["chosen_by"] == "measured" for d in measured)


# ---- bfloat16 (the mixed_bfloat16 policy) ---------------------------------------------------
def _cpu_flags():
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def test_bfloat16_runs_natively_exactly_where_the_processor_has_bfloat16_instructions():
    """oneDNN runs bfloat16 on processors with AVX512-BF16 or AMX (the kernel's flags, read
    independently of oneDNN), and only there (elsewhere it would emulate them: the handlers
    then get float32). float32, bfloat16 and float16 operands are taken, mixed or integer ones
    not."""
    native = bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert onednn.takes_bfloat16() == native
    x, k = jnp.ones((1, 5, 5, 2), jnp.bfloat16), jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    assert onednn_conv.accepts((x, k), ((1, 1), (1, 1)))
    assert not onednn_conv.accepts((x, k.astype(jnp.float32)), ((1, 1), (1, 1)))
    assert onednn_conv.accepts((x.astype(jnp.float16), k.astype(jnp.float16)),
                                ((1, 1), (1, 1)))
    assert not onednn_conv.accepts((x.astype(jnp.int32), k.astype(jnp.int32)),
                                    ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="float32, bfloat16 or float16.*Received: x int32, "
                                         "kernel int32"):
        onednn_conv.conv_onednn(x.astype(jnp.int32), k.astype(jnp.int32), (1, 1),
                                 ((1, 1), (1, 1)), (1, 1))


def assert_equals_rounded_float64(ours, theirs, arrays, rng):
    """`ours` on bfloat16 copies of `arrays` against `theirs` in float64 on the same rounded
    numbers: the output and each gradient under one random (rounded) output gradient, each to
    2**-8 of its largest value (float32 sums, then one rounding to bfloat16's 8 bits)."""
    rounded = [np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64) for a in arrays]
    y, vjp = jax.vjp(ours, *(jnp.asarray(a, jnp.bfloat16) for a in rounded))
    assert y.dtype == jnp.bfloat16
    dy = np.asarray(jnp.asarray(rng.standard_normal(y.shape), jnp.bfloat16), np.float64)
    got = (y,) + vjp(jnp.asarray(dy, jnp.bfloat16))
    with jax.enable_x64(True):
        y64, vjp64 = jax.vjp(theirs, *map(jnp.asarray, rounded))
        expected = (y64,) + vjp64(jnp.asarray(dy))
    for name, a, b in zip(["output", "input gradient", "kernel gradient"], got, expected):
        assert a.dtype == jnp.bfloat16 and a.shape == b.shape, name
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a, np.float64), b, rtol=0,
                                   atol=2 ** -8 * np.abs(b).max(), err_msg=name)


BFLOAT16_CASES = [  # (x shape without the batch, kernel, strides, pads, dilation, groups)
    ((13, 13, 32), (3, 3, 32, 64), (1, 1), ((0, 0), (0, 0)), (1, 1), 1),
    ((12, 12, 8), (3, 3, 8, 16), (2, 2), ((0, 1), (0, 1)), (1, 1), 1),
    ((9, 9, 8), (3, 3, 1, 8), (1, 1), ((1, 1), (1, 1)), (1, 1), 8),
    ((9, 9, 8), (3, 3, 8, 8), (1, 1), ((2, 2), (2, 2)), (2, 2), 1),
    ((20, 8), (5, 8, 16), (1,), ((2, 2),), (1,), 1),
    ((5, 6, 7, 4), (3, 3, 3, 4, 8), (1, 1, 1), ((1, 1),) * 3, (1, 1, 1), 1)]


@pytest.mark.parametrize("case", range(len(BFLOAT16_CASES)))
def test_bfloat16_convolutions_equal_float64_on_the_rounded_numbers(case):
    """Where oneDNN runs bfloat16 (`takes_bfloat16`), its output and gradients, each
    implementation it offers in turn, against JAX's float64 convolution of the same rounded
    numbers; the kernel gradient, summed in float32, to float32 precision before its rounding."""
    spatial, kernel, strides, pads, dilation, groups = BFLOAT16_CASES[case]
    batch = 21 + case  # plans told apart from the float32 tests' by their shapes
    rng = np.random.default_rng(40 + case)
    arrays = [rng.standard_normal((batch, *spatial)), rng.standard_normal(kernel)]
    image = "NWC NHWC NDHWC".split()[len(strides) - 1]
    numbers = (image, image[1:-1] + "IO", image)
    x, k = (jnp.asarray(a, jnp.bfloat16) for a in arrays)
    if not onednn.takes_bfloat16():
        pytest.skip("no bfloat16 instructions here: the widened path is tested below")

    def ours(x, k):
        return onednn_conv.conv_onednn(x, k, strides, pads, dilation, groups)

    def theirs(x, k):
        return lax.conv_general_dilated(x, k, strides, pads, rhs_dilation=dilation,
                                        dimension_numbers=numbers, feature_group_count=groups)

    src = "x".join(map(str, (batch, spatial[-1], *spatial[:-1])))
    try:
        for index in [None, *range(8)]:
            onednn.force_convolution_candidate(index)
            assert_equals_rounded_float64(ours, theirs, arrays, rng)
    finally:
        onednn.force_convolution_candidate(None)
    plans = plans_of(src)
    assert {p["description"].split()[1] for p in plans} == {
        "forward", "input_gradient", "kernel_gradient"}
    assert all(p["description"].startswith("bf16 ") for p in plans)

    # The kernel gradient's own float32 result, before the custom VJP rounds it.
    dy = jnp.asarray(rng.standard_normal(ours(x, k).shape), jnp.bfloat16)
    geometry = onednn_conv._geometry(strides, pads, dilation, groups)
    dk = onednn.call("conv_kernel_gradient", jax.ShapeDtypeStruct(k.shape, jnp.float32), x,
                      dy, geometry=geometry)
    with jax.enable_x64(True):
        _, vjp64 = jax.vjp(lambda k: theirs(jnp.asarray(x, jnp.float64), k),
                           jnp.asarray(k, jnp.float64))
        (expected,) = vjp64(jnp.asarray(dy, jnp.float64))
    assert dk.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(dk), np.asarray(expected), rtol=0,
                               atol=1e-5 * np.abs(np.asarray(expected)).max())


@pytest.mark.parametrize("policy, native", [("mixed_bfloat16", True), ("mixed_bfloat16", False),
                                           ("mixed_float16", False)],
                         ids=["bfloat16-native", "bfloat16-widened", "float16-widened"])
@pytest.mark.parametrize("layer", [
    lambda dtype: layers.Conv2D(6, 3, strides=2, padding="same", dtype=dtype),
    lambda dtype: layers.DepthwiseConv2D(3, padding="same", dtype=dtype),
    lambda dtype: layers.Conv2DTranspose(4, 3, strides=2, padding="same", dtype=dtype)])
def test_mixed_precision_layers_take_onednn(layer, policy, native, monkeypatch):
    """Under mixed_bfloat16 the layers' programs call oneDNN: in bfloat16 where the processor
    has bfloat16 instructions, else on operands widened to float32 (forced here by saying it
    has none); under mixed_float16 always widened. Either way with the numbers of XLA's 16-bit
    convolution (KILNET_ONEDNN=0's flag) to 16-bit precision, and the kernel gradient reaches
    its float32 variable as float32."""
    if native and not onednn.takes_bfloat16():
        pytest.skip("no bfloat16 instructions here: only the widened path runs")
    if not native:
        monkeypatch.setattr(onednn, "takes_bfloat16", lambda: False)
    layer = layer(policy)
    compute = jnp.dtype(layer.compute_dtype)
    x = jnp.asarray(np.random.default_rng(7).standard_normal((2, 9, 9, 3)), jnp.float32)
    params, state, _ = layer.init(np.random.default_rng(0), (9, 9, 3))

    def run(params, x):
        return jnp.sum(jnp.sin(layer.autocast_apply(params, state, x)[0].astype(jnp.float32)))

    def program():
        return jax.jit(lambda p, x: jax.grad(run)(p, x)).lower(params, x).as_text()

    calls = re.findall(r"custom_call @kilnet_onednn_conv_\w+\((.*)\) .*: \((tensor<[^,]*)",
                       program())
    assert calls and all(("xbf16>" if native else "xf32>") in operand for _, operand in calls)
    assert layer.autocast_apply(params, state, x)[0].dtype == compute
    assert_matches_xla(run, program, params, x, monkeypatch, "kilnet_onednn_conv")


def test_the_handlers_refuse_mixed_or_unknown_data_types():
    """The C++ handlers check the buffers XLA hands them, whatever the Python side asked: a
    float32 result of bfloat16 operands, operands of two types, float16."""
    geometry = onednn_conv._geometry((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    x, k = jnp.ones((1, 4, 4, 2), jnp.bfloat16), jnp.ones((3, 3, 2, 3), jnp.bfloat16)
    cases = [((x, k), jnp.float32, "result's data type"),
             ((x, k.astype(jnp.float32)), jnp.bfloat16, "operands differ"),
             ((x.astype(jnp.float16), k.astype(jnp.float16)), jnp.float16,
              "take float32 or bfloat16")]
    for operands, dtype, message in cases:
        with pytest.raises(Exception, match=message):
            jax.block_until_ready(onednn.call(
                "conv_forward", jax.ShapeDtypeStruct((1, 4, 4, 3), dtype), *operands,
                geometry=geometry))


def _penalty_gradient(convolve, x, k):
    """keras.io WGAN-GP's gradient penalty: the input gradient's norm, differentiated again
    for the kernel (a second derivative through the convolution)."""
    def penalty(k, x):
        g = jax.grad(lambda x: jnp.sum(jnp.tanh(convolve(x, k))))(x)
        return jnp.mean((jnp.sqrt(jnp.sum(g ** 2, axis=(1, 2, 3))) - 1.0) ** 2)
    return jax.jit(jax.value_and_grad(penalty))(k, x)   # one program, not op by op


def test_second_derivatives_run_on_onednn_and_equal_xla_s():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(4, 9, 9, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(0, 0.3, size=(3, 3, 3, 5)), jnp.float32)
    pads = ((1, 1), (1, 1))
    ours = _penalty_gradient(lambda x, k: onednn_conv.conv_onednn(x, k, (2, 2), pads, (1, 1)),
                             x, k)
    theirs = _penalty_gradient(lambda x, k: reference(x, k, (2, 2), pads, (1, 1)), x, k)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-5)

    kt = jnp.asarray(rng.normal(0, 0.3, size=(3, 3, 2, 3)), jnp.float32)   # (kh, kw, out, in)
    out_size = (17, 17)

    def transposed_reference(x, kt):   # the input gradient of the convolution it undoes
        _, pullback = jax.vjp(lambda image: reference(image, kt, (2, 2), pads, (1, 1)),
                              jnp.zeros((x.shape[0], *out_size, kt.shape[2]), x.dtype))
        return pullback(x)[0]

    ours = _penalty_gradient(lambda x, kt: onednn_conv.conv2d_transpose_onednn(
        x, kt, (2, 2), pads, (1, 1), out_size), x[:, :9, :9, :3], kt)
    theirs = _penalty_gradient(transposed_reference, x[:, :9, :9, :3], kt)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-5)
