"""Keras's math ops: log-sum-exp, top-k, segment reductions, distances, the float-returning
special functions, and Fourier transforms (`fft`, `rfft`, `stft`, ...) that take and give
complex numbers as `(real, imaginary)` pairs of float arrays, as Keras's do.

Example:
    >>> import numpy as np
    >>> values, indices = top_k(np.array([3.0, 1.0, 2.0]), k=2)
    >>> values.tolist(), indices.tolist()
    ([3.0, 2.0], [0, 2])
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np

from kilnet.ops._convert import as_array, as_float, dispatch_symbolic

__all__ = [
    "logsumexp", "top_k", "segment_sum", "segment_max", "rsqrt", "erf",
    "segment_min", "segment_prod", "in_top_k", "logdet", "cdist", "erfc", "erfinv",
    "view_as_complex", "view_as_real", "fft", "fft2", "ifft2", "rfft", "irfft",
    "extract_sequences", "stft", "istft",
]


# -- reductions ---------------------------------------------------------------------------------

def logsumexp(x, axis=None, keepdims=False):
    """`log(sum(exp(x)))` over `axis`, computed without overflow."""
    return jax.nn.logsumexp(as_array(x), axis=axis, keepdims=keepdims)



# -- shapes and indexing ------------------------------------------------------------------------

def top_k(x, k, sorted=True):
    """The `k` largest values along the last axis and their indices, largest first (JAX always
    sorts, which `sorted=False` allows)."""
    values, indices = jax.lax.top_k(as_array(x), k)
    return values, indices


def segment_sum(data, segment_ids, num_segments=None, sorted=False):
    """Sum of the rows of `data` that share a segment id; `num_segments` must be static
    under `jax.jit`."""
    return jax.ops.segment_sum(as_array(data), as_array(segment_ids), num_segments,
                               indices_are_sorted=sorted)


def segment_max(data, segment_ids, num_segments=None, sorted=False):
    """Maximum of the rows of `data` that share a segment id."""
    return jax.ops.segment_max(as_array(data), as_array(segment_ids), num_segments,
                               indices_are_sorted=sorted)



# -- elementwise math ---------------------------------------------------------------------------

def rsqrt(x):
    """Elementwise `1 / sqrt(x)`."""
    return jax.lax.rsqrt(as_float(x))


def erf(x):
    """Elementwise Gauss error function."""
    return jax.lax.erf(as_float(x))



# -- more reductions and segments ---------------------------------------------------------------

def segment_min(data, segment_ids, num_segments=None, sorted=False):
    """Minimum of the rows of `data` that share a segment id (the dtype's largest value for an
    empty segment)."""
    return jax.ops.segment_min(as_array(data), as_array(segment_ids), num_segments,
                               indices_are_sorted=sorted)


def segment_prod(data, segment_ids, num_segments=None, sorted=False):
    """Product of the rows of `data` that share a segment id (1 for an empty segment)."""
    return jax.ops.segment_prod(as_array(data), as_array(segment_ids), num_segments,
                                indices_are_sorted=sorted)


def in_top_k(targets, predictions, k):
    """Whether each target class is among the `k` highest `predictions` of its row (ties count
    in its favour; a NaN prediction never does), as booleans.

    Example:
        >>> in_top_k(np.array([0, 2]), np.array([[0.1, 0.9, 0.0], [0.2, 0.3, 0.5]]), k=1).tolist()
        [False, True]
    """
    targets, predictions = as_array(targets), as_array(predictions)
    at_target = jnp.take_along_axis(predictions, targets[..., None], axis=-1)
    at_target = jnp.where(jnp.isnan(at_target), -jnp.inf, at_target)
    higher = jnp.sum(predictions > at_target, axis=-1)
    return higher < k


def logdet(x):
    """Natural log of the determinant of positive definite matrices (`slogdet`'s second part:
    stable where `det` overflows)."""
    return jnp.linalg.slogdet(as_array(x))[1]


def cdist(x, y):
    """Euclidean distances between the rows of `x` (..., m, d) and of `y` (..., n, d): shape
    (..., m, n)."""
    x, y = as_array(x), as_array(y)
    if x.ndim < 2 or y.ndim < 2 or x.shape[-1] != y.shape[-1]:
        raise ValueError("ops.cdist takes two arrays of rank >= 2 with the same last axis. "
                         f"Received: x.shape={x.shape}, y.shape={y.shape}")
    difference = x[..., :, None, :] - y[..., None, :, :]
    return jnp.sqrt(jnp.sum(difference * difference, axis=-1))



# -- elementwise special functions --------------------------------------------------------------

def erfc(x):
    """Elementwise complementary error function `1 - erf(x)`, accurate for large `x`."""
    return jax.scipy.special.erfc(as_float(x))


def erfinv(x):
    """Elementwise inverse error function, on (-1, 1)."""
    return jax.scipy.special.erfinv(as_float(x))



# -- complex numbers as (real, imaginary) pairs -------------------------------------------------

def view_as_complex(x):
    """Complex64 numbers from a real array whose last axis (length 2) holds the real and
    imaginary parts."""
    x = as_array(x)
    if x.ndim < 1 or x.shape[-1] != 2:
        raise ValueError("ops.view_as_complex takes an array whose last axis has length 2 "
                         f"(real, imaginary). Received: x.shape={x.shape}")
    return jax.lax.complex(x[..., 0].astype("float32"), x[..., 1].astype("float32"))


def view_as_real(x):
    """A complex array's real and imaginary parts, stacked on a new last axis."""
    x = as_array(x)
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def _complex(x, name):
    """The complex array of a `(real, imaginary)` pair of float arrays of one shape, the form
    Keras's FFT functions take."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise ValueError(f"ops.{name} takes a tuple (real, imaginary) of two float arrays. "
                         f"Received: x={type(x).__name__}")
    real, imaginary = as_array(x[0]), as_array(x[1])
    if real.shape != imaginary.shape:
        raise ValueError(f"ops.{name}: the real and imaginary parts must have one shape. "
                         f"Received: shapes {real.shape} and {imaginary.shape}")
    if not (jnp.issubdtype(real.dtype, jnp.floating)
            and jnp.issubdtype(imaginary.dtype, jnp.floating)):
        raise ValueError(f"ops.{name}: the real and imaginary parts must be floats; cast them "
                         f"with ops.cast(part, 'float32'). Received: dtypes {real.dtype} and "
                         f"{imaginary.dtype}")
    return jax.lax.complex(real, imaginary)


def _pair(z):
    return jnp.real(z), jnp.imag(z)



# -- Fourier transforms -------------------------------------------------------------------------

def fft(x):
    """Discrete Fourier transform over the last axis of `x = (real, imaginary)`; returns a
    `(real, imaginary)` pair too.

    Example:
        >>> real, imaginary = fft((np.array([1.0, 0.0, 0.0, 0.0]), np.zeros(4)))
        >>> real.tolist(), imaginary.tolist()
        ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0])
    """
    return _pair(jnp.fft.fft(_complex(x, "fft")))


def fft2(x):
    """2-D discrete Fourier transform over the last two axes of `(real, imaginary)`."""
    return _pair(jnp.fft.fft2(_complex(x, "fft2")))


def ifft2(x):
    """Inverse of `fft2`, over the last two axes of `(real, imaginary)`."""
    return _pair(jnp.fft.ifft2(_complex(x, "ifft2")))


def rfft(x, fft_length=None):
    """Fourier transform of a real signal over its last axis (padded or cut to `fft_length`):
    the `fft_length // 2 + 1` non-negative frequencies, as `(real, imaginary)`."""
    return _pair(jnp.fft.rfft(as_array(x), n=fft_length, axis=-1))


def irfft(x, fft_length=None):
    """The real signal (of length `fft_length`, by default `2 * (n - 1)`) whose `rfft` is the
    `(real, imaginary)` pair `x`."""
    return jnp.fft.irfft(_complex(x, "irfft"), n=fft_length, axis=-1)


def extract_sequences(x, sequence_length, sequence_stride):
    """Frames of the last axis: windows of `sequence_length` samples every `sequence_stride`,
    on a new second-to-last axis (only whole windows).

    Example:
        >>> extract_sequences(np.arange(5), 3, 2).tolist()
        [[0, 1, 2], [2, 3, 4]]
    """
    x = as_array(x)
    count = 1 + (x.shape[-1] - sequence_length) // sequence_stride
    starts = np.arange(count)[:, None] * sequence_stride
    return x[..., starts + np.arange(sequence_length)]


def stft(x, sequence_length, sequence_stride, fft_length, window="hann", center=True):
    """Short-time Fourier transform of real signals (the last axis): `rfft` of windowed frames
    of `sequence_length` every `sequence_stride`, as `(real, imaginary)` of shape
    (..., frames, fft_length // 2 + 1). `window`: "hann", "hamming" (periodic), an array of
    `sequence_length` or None; `center` pads the signal by reflection so frame t is centred on
    sample t * sequence_stride."""
    x = as_array(x)
    if x.dtype not in (jnp.float32, jnp.float64):
        raise TypeError(f"ops.stft takes float32 or float64 signals. Received: x.dtype="
                        f"{x.dtype}")
    _check_framing(sequence_length, sequence_stride, fft_length)
    if center:
        half = fft_length // 2
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)], mode="reflect")
    frames = extract_sequences(x, fft_length, sequence_stride)
    spectrum = jnp.fft.rfft(frames * _padded_window(window, sequence_length, fft_length,
                                                    x.dtype), n=fft_length, axis=-1)
    return _pair(spectrum)


def istft(x, sequence_length, sequence_stride, fft_length, length=None, window="hann",
          center=True):
    """Inverse of `stft`: the signal from its `(real, imaginary)` frames, by windowed
    overlap-add (`length` samples, by default all that the frames cover, less the
    centring)."""
    spectrum = _complex(x, "istft")
    if spectrum.ndim < 2:
        raise ValueError(f"ops.istft takes frames of shape (..., frames, bins). Received: "
                         f"shape {spectrum.shape}")
    _check_framing(sequence_length, sequence_stride, fft_length)
    dtype = jnp.real(spectrum).dtype
    padded_window = _padded_window(window, sequence_length, fft_length, dtype)
    frames = jnp.fft.irfft(spectrum, n=fft_length, axis=-1) * padded_window
    signal, weight = _overlap_add(frames, padded_window ** 2, sequence_stride)
    # Dividing by the summed squared window undoes the windowing twice applied (stft's and
    # this one); where no window reaches, the signal stays 0.
    signal = signal / jnp.where(weight > 1e-10, weight, 1.0)
    start = fft_length // 2 if center else 0
    end = signal.shape[-1] - (fft_length // 2 if center else 0) if length is None else (
        start + length)
    return signal[..., start:end]


def _check_framing(sequence_length, sequence_stride, fft_length):
    if not isinstance(sequence_stride, int) or sequence_stride <= 0:
        raise ValueError(f"Argument `sequence_stride` must be a positive int. Received: "
                         f"sequence_stride={sequence_stride!r}")
    if fft_length < sequence_length:
        raise ValueError("Argument `fft_length` must be at least `sequence_length`. Received: "
                         f"fft_length={fft_length}, sequence_length={sequence_length}")


def _padded_window(window, sequence_length, fft_length, dtype):
    """The analysis window of `sequence_length` samples, zero-padded to `fft_length` around
    its centre (None: ones over all `fft_length` samples)."""
    if window is None:
        # Keras's rectangular window spans the whole fft_length frame, padding included
        return jnp.ones(fft_length, dtype)
    if isinstance(window, str):
        if window not in ("hann", "hamming"):
            raise ValueError(f"Argument `window` must be 'hann', 'hamming', an array or None. "
                             f"Received: window={window!r}")
        # periodic windows (as SciPy's get_window gives for spectral analysis)
        phase = 2 * np.pi * np.arange(sequence_length) / sequence_length
        weight = 0.5 if window == "hann" else 0.54
        samples = jnp.asarray(weight - (1 - weight) * np.cos(phase), dtype)
    else:
        samples = as_array(window).astype(dtype)
        if samples.shape != (sequence_length,):
            raise ValueError(f"Argument `window` must have shape (sequence_length,) = "
                             f"({sequence_length},). Received: shape {samples.shape}")
    left = (fft_length - sequence_length) // 2
    return jnp.pad(samples, (left, fft_length - sequence_length - left))


def _overlap_add(frames, frame_weight, stride):
    """Sum of `frames` (..., count, n) placed every `stride` samples, and the same sum of
    `frame_weight` (n,): the signal and the weight at each sample."""
    count, size = frames.shape[-2:]
    positions = (np.arange(count)[:, None] * stride + np.arange(size)).ravel()
    total = (count - 1) * stride + size
    signal = jnp.zeros(frames.shape[:-2] + (total,), frames.dtype)
    signal = signal.at[..., positions].add(frames.reshape(frames.shape[:-2] + (-1,)))
    weight = jnp.zeros(total, frame_weight.dtype).at[positions].add(
        jnp.tile(frame_weight, count))
    return signal, weight


dispatch_symbolic(globals(), __all__)
