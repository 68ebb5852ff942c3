"""oneDNN's CPU convolutions, called from kilnet's compiled programs through XLA's FFI.

Why: XLA's CPU convolution is slowest at the gradients, its kernel gradient most of all.
Measured in a loop on a 2-core AMD EPYC (batch 128), the MNIST convnet's 3x3 32 -> 64
convolution on 13x13 images: XLA forward 3.1 ms, input gradient 5.0, kernel gradient 9.4;
oneDNN 2.8 / 3.1 / 2.9. Keras on TensorFlow runs oneDNN's kernels too.

How: `_conv_onednn.cc` beside this file is compiled once per machine with the system's C++
compiler against the oneDNN wheels kilnet depends on (`onednn-cpu-gomp` and its headers,
`onednn-devel-cpu-gomp`), kept under kilnet's cache directory, loaded, and its three handlers
registered with XLA. If any step fails (no wheel on this platform, no compiler), or
KILNET_ONEDNN=0 is set, `available()` is False, `status()` says why, and the convolution layers
keep their XLA forms. Only float32 on CPU goes through oneDNN; other dtypes and devices keep
XLA's. Used by Conv1D, Conv2D (groups and 1x1 included), Conv3D, DepthwiseConv2D,
SeparableConv2D and Conv2DTranspose.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("_conv_onednn.cc")
LIBRARY_DIST, HEADERS_DIST = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"
_HANDLERS = {"forward": "KilnetConvForward", "input_gradient": "KilnetConvInputGradient",
             "kernel_gradient": "KilnetConvKernelGradient"}
_TARGET_PREFIX = "kilnet_onednn_conv_"

# Read when a program is traced: False keeps XLA's convolution (KILNET_ONEDNN=0 at start).
ENABLED = os.environ.get("KILNET_ONEDNN", "1").lower() not in ("0", "false", "no", "off")

_lock = threading.Lock()
_state: dict = {}


def _installed_file(dist: str, suffix: str) -> Path:
    """The absolute path of the file of installed distribution `dist` ending in `suffix`."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise OSError(f"the '{dist}' package is not installed (pip install {dist})") from None
    for f in files:
        if str(f).endswith(suffix):
            return Path(f.locate()).resolve()
    raise OSError(f"'{dist}' has no file ending in {suffix}")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kilnet" / "native"


def _build(include: Path, libdir: Path) -> Path:
    """Compile the handlers into the cache (once per source, oneDNN, JAX and compiler)."""
    compiler = os.environ.get("CXX", "g++")
    flags = ["-O2", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{include}",
             f"-I{jax.ffi.include_dir()}", f"-L{libdir}", "-ldnnl", f"-Wl,-rpath,{libdir}"]
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), str(libdir).encode(), jax.__version__.encode(),
                 compiler.encode(), " ".join(flags).encode()):
        digest.update(part)
    target = _cache_dir() / f"kilnet_conv_onednn_{digest.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name, then renamed: two processes building at once both succeed.
    fd, scratch = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, str(SOURCE), "-o", scratch, *flags],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{compiler} could not build {SOURCE.name}: "
                          f"{done.stderr.strip()[-800:]}")
        os.replace(scratch, target)
    except FileNotFoundError:
        raise OSError(f"no C++ compiler '{compiler}' (set CXX, or install g++)") from None
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return target


def _load() -> None:
    include = _installed_file(HEADERS_DIST, "oneapi/dnnl/dnnl.hpp").parents[2]
    libdir = _installed_file(LIBRARY_DIST, "libdnnl.so").parent
    library = ctypes.CDLL(str(_build(include, libdir)))
    _state["library"] = library  # XLA holds pointers into it for the process's life
    for name, symbol in _HANDLERS.items():
        jax.ffi.register_ffi_target(_TARGET_PREFIX + name,
                                    jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")


def status() -> str:
    """'ready', 'disabled (KILNET_ONEDNN=0)', or why oneDNN's convolutions are not in use.

    Builds and registers them on first call.

    Example:
        >>> from kilnet.layers._conv_onednn import status
        >>> status() in ("ready", "disabled (KILNET_ONEDNN=0)") or status().startswith("unavailable")
        True
    """
    if not ENABLED:
        return "disabled (KILNET_ONEDNN=0)"
    with _lock:
        if "status" not in _state:
            try:
                _load()
                _state["status"] = "ready"
            except OSError as error:
                _state["status"] = f"unavailable: {error}"
                # Once a process: the convolutions still run, on slower kernels.
                warnings.warn(f"kilnet: oneDNN's convolutions are unavailable ({error}); "
                              "convolutions run on XLA's slower CPU kernels. "
                              "KILNET_ONEDNN=0 silences this.", RuntimeWarning, stacklevel=2)
    return _state["status"]


def available() -> bool:
    """Whether float32 CPU convolutions go through oneDNN in programs traced now."""
    return status() == "ready"


def accepts(arrays, pads) -> bool:
    """Whether oneDNN can take a convolution of these operands with these explicit pads in a
    program traced now: float32 operands, no negative (cropping) pad, oneDNN available."""
    return (all(a.dtype == jnp.float32 for a in arrays) and not _crops(pads) and available())


def _crops(pads) -> bool:
    return any(side < 0 for axis in pads for side in axis)


def _check_pads(pads):
    if _crops(pads):
        raise ValueError(f"oneDNN takes no negative padding (cropping). Received: pads={pads}")


def _geometry(strides, pads, dilation, groups):
    """The handlers' attribute: groups, then (stride, pad before, pad after, dilation) an axis."""
    per_axis = [(s, low, high, d) for s, (low, high), d in zip(strides, pads, dilation)]
    return np.array([groups] + [v for axis in per_axis for v in axis], np.int64)


def output_shape(x_shape, kernel_shape, strides, pads, dilation):
    """(batch, out spatial..., filters) of the convolution."""
    sizes = [(x_shape[1 + a] + sum(pads[a]) - dilation[a] * (kernel_shape[a] - 1) - 1)
             // strides[a] + 1 for a in range(len(strides))]
    return (x_shape[0], *sizes, kernel_shape[-1])


def _call(handler, shape, a, b, geometry):
    result = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.ffi.ffi_call(_TARGET_PREFIX + handler, result, vmap_method="sequential")(
        a, b, geometry=geometry)


def conv_onednn(x, kernel, strides, pads, dilation, groups=1):
    """The float32 convolution of (batch, spatial..., in) x by a (window..., in / groups, out)
    kernel, 1 to 3 spatial axes, explicit ((before, after), ...) zero padding, on oneDNN (see
    `available`). With groups, XLA's `feature_group_count` (depthwise: groups = in).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from kilnet.layers._conv_onednn import available, conv_onednn
        >>> x, k = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2))
        >>> y = conv_onednn(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1)) if available() else (
        ...     jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
        ...                                  dimension_numbers=("NHWC", "HWIO", "NHWC")))
        >>> y[0, :, :, 0].tolist()
        [[4.0, 6.0, 6.0, 4.0], [6.0, 9.0, 9.0, 6.0], [6.0, 9.0, 9.0, 6.0], [4.0, 6.0, 6.0, 4.0]]
    """
    if not available():
        raise RuntimeError(f"oneDNN's convolutions are not available here: {status()}")
    _check_pads(pads)
    if not 3 <= x.ndim <= 5 or x.ndim != kernel.ndim:
        raise ValueError(f"conv_onednn: 1 to 3 spatial axes. Received: x {x.shape}, "
                         f"kernel {kernel.shape}")
    if x.shape[-1] != kernel.shape[-2] * groups or kernel.shape[-1] % groups:
        raise ValueError(f"conv_onednn: input channels {x.shape[-1]} and kernel "
                         f"{kernel.shape} do not make {groups} groups")
    return _convolve(x, kernel, strides, pads, dilation, groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _convolve(x, kernel, strides, pads, dilation, groups):
    shape = output_shape(x.shape, kernel.shape, strides, pads, dilation)
    return _call("forward", shape, x, kernel, _geometry(strides, pads, dilation, groups))


def _forward(x, kernel, strides, pads, dilation, groups):
    return _convolve(x, kernel, strides, pads, dilation, groups), (x, kernel)


def _backward(strides, pads, dilation, groups, residuals, dy):
    x, kernel = residuals
    geometry = _geometry(strides, pads, dilation, groups)
    return (_call("input_gradient", x.shape, dy, kernel, geometry),
            _call("kernel_gradient", kernel.shape, x, dy, geometry))


_convolve.defvjp(_forward, _backward)


def conv2d_transpose_onednn(x, kernel, strides, pads, dilation, out_size):
    """Keras's transposed convolution of (batch, h, w, in) x by a (kh, kw, filters, in) kernel
    on oneDNN: the input gradient of the convolution of a (batch, *out_size, filters) image by
    that kernel with explicit `pads`, whose output has x's size. Its gradients are that
    convolution (for x) and its kernel gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet.layers._conv_onednn import available, conv2d_transpose_onednn
        >>> x, k = jnp.ones((1, 2, 2, 1)), jnp.ones((2, 2, 1, 1))
        >>> if available():
        ...     y = conv2d_transpose_onednn(x, k, (2, 2), ((0, 0), (0, 0)), (1, 1), (4, 4))
        ...     print(y.shape, float(y.sum()))
        ... else:
        ...     print((1, 4, 4, 1), 16.0)
        (1, 4, 4, 1) 16.0
    """
    if not available():
        raise RuntimeError(f"oneDNN's convolutions are not available here: {status()}")
    _check_pads(pads)
    expected = output_shape((x.shape[0], *out_size, kernel.shape[2]), kernel.shape, strides,
                            pads, dilation)
    if expected != x.shape[:-1] + (kernel.shape[3],):
        raise ValueError(f"conv2d_transpose_onednn: a {out_size} output convolved back gives "
                         f"{expected[1:3]}, not the input's {x.shape[1:3]}")
    return _transpose(x, kernel, strides, pads, dilation, tuple(out_size))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _transpose(x, kernel, strides, pads, dilation, out_size):
    shape = (x.shape[0], *out_size, kernel.shape[2])
    return _call("input_gradient", shape, x, kernel, _geometry(strides, pads, dilation, 1))


def _transpose_forward(x, kernel, strides, pads, dilation, out_size):
    return _transpose(x, kernel, strides, pads, dilation, out_size), (x, kernel)


def _transpose_backward(strides, pads, dilation, out_size, residuals, dy):
    x, kernel = residuals
    geometry = _geometry(strides, pads, dilation, 1)
    return (_call("forward", x.shape, dy, kernel, geometry),
            _call("kernel_gradient", kernel.shape, dy, x, geometry))


_transpose.defvjp(_transpose_forward, _transpose_backward)
