"""oneDNN's CPU kernels inside kilnet's compiled programs, through XLA's FFI: the bridge.

`onednn.cc` beside this file holds XLA FFI handlers around oneDNN's primitives
(convolutions: forward, input gradient, kernel gradient; bfloat16 matrix products),
kilnet's own training-mode batch normalization (forward and backward; oneDNN's lost
float32 digits in its sums, see the file) and Keras's Adam update in one pass
(`kilnet.optimizers._adam_kernel`). It is compiled once per machine with the
system's C++ compiler against the oneDNN wheels kilnet depends on (`onednn-cpu-gomp` and its
headers, `onednn-devel-cpu-gomp`), kept under kilnet's cache directory, loaded, and its
handlers registered with XLA. If any step
fails (no wheel on this platform, no compiler), or KILNET_ONEDNN=0 is set, `available()` is
False, `status()` says why, and the layers keep their XLA forms. `call` runs a handler;
`onednn_conv`, `onednn_matmul` and `onednn_batch_norm` wrap them with their gradients.

oneDNN offers several implementations of each convolution and its first choice is not always
the fastest, so the first call of each convolution direction and shape times them all on its
own operands and keeps the fastest. The choices are remembered in a file per machine (CPU
model, usable cores, library build) in the same cache directory: later processes take the
same implementations without measuring, and a resumed run computes as the interrupted one did.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import jax

SOURCE = Path(__file__).with_name("onednn.cc")
LIBRARY_DIST, HEADERS_DIST = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"
_HANDLERS = {"conv_forward": "KilnetConvForward",
             "conv_input_gradient": "KilnetConvInputGradient",
             "conv_kernel_gradient": "KilnetConvKernelGradient",
             "product": "KilnetProduct",
             "batch_norm_forward": "KilnetBatchNormForward",
             "batch_norm_backward": "KilnetBatchNormBackward",
             "adam_update": "KilnetAdamUpdate"}
_TARGET_PREFIX = "kilnet_onednn_"

# Read when a program is traced: False keeps XLA's kernels (KILNET_ONEDNN=0 at start).
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
    """Compile the handlers into the cache (once per source, oneDNN, JAX, compiler and
    processor).

    -march=native: the batch normalization's own loops use this processor's vectors
    (AVX-512 16 floats, AVX2 8; SSE2's 4 ran its forward and backward 1.6x slower on a 2-core
    AMD EPYC). The processor's instruction sets are part of the file's key, so a cache shared
    by different machines holds one build for each. -fopenmp: those loops share oneDNN's
    OpenMP threads. -fno-math-errno: a square root that may set errno is a library call, which
    keeps the Adam update's loop from being vectorized (scalar, it ran 3.4x slower)."""
    compiler = os.environ.get("CXX", "g++")
    flags = ["-O2", "-march=native", "-fopenmp", "-fno-math-errno", "-std=c++17", "-shared",
             "-fPIC", "-w",
             f"-I{include}", f"-I{jax.ffi.include_dir()}", f"-L{libdir}", "-ldnnl",
             f"-Wl,-rpath,{libdir}"]
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), str(libdir).encode(), jax.__version__.encode(),
                 compiler.encode(), " ".join(flags).encode(), _cpu_flags().encode()):
        digest.update(part)
    target = _cache_dir() / f"kilnet_onednn_{digest.hexdigest()[:16]}.so"
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


def _cpu_flags() -> str:
    """This processor's model and instruction-set flags (/proc/cpuinfo; elsewhere Python's
    name for the processor)."""
    lines = []
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("model name", "flags")):
                    lines.append(line.strip())
                if len(lines) == 2:
                    break
    except OSError:
        pass
    return "\n".join(lines) or platform.processor() or platform.machine()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _choices_file(library: Path) -> Path:
    """Where this machine's measured convolution choices are kept: one file per library build,
    CPU model, number of usable cores and OpenMP thread setting (each changes which
    implementation is fastest)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    machine = f"{library.name}|{_cpu_model()}|{cores}|{os.environ.get('OMP_NUM_THREADS', '')}"
    digest = hashlib.sha256(machine.encode()).hexdigest()[:16]
    return library.parent / f"conv_choices_{digest}.txt"


def _load() -> None:
    include = _installed_file(HEADERS_DIST, "oneapi/dnnl/dnnl.hpp").parents[2]
    libdir = _installed_file(LIBRARY_DIST, "libdnnl.so").parent
    built = _build(include, libdir)
    library = ctypes.CDLL(str(built))
    _state["library"] = library  # XLA holds pointers into it for the process's life
    _state["choices"] = _choices_file(built)
    library.KilnetConvChoicesFile(str(_state["choices"]).encode())
    for name, symbol in _HANDLERS.items():
        jax.ffi.register_ffi_target(_TARGET_PREFIX + name,
                                    jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")


def status() -> str:
    """'ready', 'disabled (KILNET_ONEDNN=0)', or why oneDNN's kernels are not in use.

    Builds and registers them on first call.

    Example:
        >>> from kilnet._kernels.onednn import status
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
                # Once a process: the layers still run, on slower kernels.
                warnings.warn(f"kilnet: oneDNN's kernels are unavailable ({error}); "
                              "convolutions and batch normalization run on XLA's slower CPU "
                              "kernels. KILNET_ONEDNN=0 silences this.", RuntimeWarning,
                              stacklevel=2)
    return _state["status"]


def available() -> bool:
    """Whether float32 CPU convolutions and batch normalization go through oneDNN in programs
    traced now.

    Example:
        >>> from kilnet._kernels.onednn import available, status
        >>> available() == (status() == "ready")
        True
    """
    return status() == "ready"


def takes_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 on this processor's own instructions (AVX512-BF16 or AMX):
    then bfloat16 convolutions and large products run in bfloat16 on oneDNN. Elsewhere oneDNN
    would emulate them, slower than float32: the convolutions are widened to float32
    (`onednn_conv`), the products stay XLA's.

    Example:
        >>> from kilnet._kernels.onednn import available, takes_bfloat16
        >>> takes_bfloat16() <= available()
        True
    """
    return available() and bool(_state["library"].KilnetNativeBfloat16())


def call(handler: str, results, *operands, aliases: dict | None = None, **attributes):
    """Run oneDNN handler `handler` (a key of the handler table) on `operands` inside the
    program being traced; `results`: the jax.ShapeDtypeStruct (or tuple of them) it returns;
    `aliases`: {operand index: result index} that may share their buffer (updated in place).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from kilnet._kernels.onednn import available, call
        >>> x, k = jnp.ones((1, 3, 3, 1)), jnp.ones((3, 3, 1, 1))
        >>> geometry = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1], np.int64)  # groups, then per axis
        >>> y = call("conv_forward", jax.ShapeDtypeStruct((1, 3, 3, 1), jnp.float32), x, k,
        ...          geometry=geometry) if available() else jnp.full((1, 3, 3, 1), 4.0)
        >>> float(y[0, 0, 0, 0])
        4.0
    """
    if not available():  # builds and registers the handlers on a process's first call
        raise RuntimeError(f"oneDNN's kernels are not available here: {status()}")
    return jax.ffi.ffi_call(_TARGET_PREFIX + handler, results, vmap_method="sequential",
                            input_output_aliases=aliases)(*operands, **attributes)


def choices_file() -> Path | None:
    """The file in which this machine's measured convolution choices are remembered (one line
    per direction and shape: description, candidate index, implementation); None when
    oneDNN's kernels are not in use. Deleting it makes the next runs measure again.

    Example:
        >>> from kilnet._kernels.onednn import available, choices_file
        >>> (choices_file() is not None) == available()
        True
    """
    return _state["choices"] if available() else None


def remembered_count() -> int:
    """How many convolution directions and shapes `choices_file()` holds choices for (0 when
    there is none yet, or oneDNN's kernels are not in use).

    Example:
        >>> from kilnet._kernels.onednn import remembered_count
        >>> remembered_count() >= 0
        True
    """
    path = choices_file()
    if path is None or not path.exists():
        return 0
    return len({line.split("\t")[0] for line in path.read_text().splitlines()})


def convolution_plans() -> list[str]:
    """One line per convolution plan made in this process: its direction, oneDNN's
    (N, C, spatial) shapes, strides, dilation and pads, then the implementation, how it was
    chosen ("measured" on its first call, "remembered" from an earlier process on this
    machine, "the only candidate", or "forced"), its place among the candidates, and its
    measured milliseconds (0 when not measured).

    Example:
        >>> from kilnet._kernels.onednn import convolution_plans
        >>> isinstance(convolution_plans(), list)
        True
    """
    if not available():
        return []
    library = _state["library"]
    library.KilnetConvPlans.restype = ctypes.c_size_t
    size = library.KilnetConvPlans(None, ctypes.c_size_t(0))
    text = ctypes.create_string_buffer(size + 1)
    library.KilnetConvPlans(text, ctypes.c_size_t(size + 1))
    return text.value.decode().splitlines()


def force_convolution_candidate(index: int | None) -> None:
    """Plans made from now on take oneDNN's implementation number `index` (in its order of
    preference; the last when there are fewer) instead of the fastest measured; None restores
    measuring. For tests that check every implementation's numbers.

    Example:
        >>> from kilnet._kernels.onednn import force_convolution_candidate
        >>> force_convolution_candidate(None)
    """
    if available():
        _state["library"].KilnetConvForceCandidate(ctypes.c_int(-1 if index is None else index))
