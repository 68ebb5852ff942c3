"""Audio spectrograms, as Keras 3's layers: STFTSpectrogram (a short-time Fourier transform
computed as a strided convolution with DFT kernels, which may be trained) and MelSpectrogram
(a fixed mel-scaled power spectrogram in decibels).

STFTSpectrogram takes signals (batch, time, channels) (or (batch, channels, time) with
data_format="channels_first") and transforms each channel with the same kernels, made by
kilnet.initializers.STFT, so the real and imaginary kernels are weights that Keras's files
hold in the same order. MelSpectrogram has no weights: `ops.stft` of centred frames, a
triangular mel filter bank computed once on the host (HTK's mel scale, as Keras's), and
Keras's decibel scaling, whose `top_db` floor is taken from the maximum of the whole batch
(as Keras does, so one signal's output depends on the others in its batch).
"""

from __future__ import annotations

import numbers
import warnings

import jax.numpy as jnp
import numpy as np

from kilnet import config, initializers, ops
from kilnet.layers._base import Layer
from kilnet.layers._conv1d import conv1d_length
from kilnet.layers._node import is_symbolic

MODES = ("log", "magnitude", "psd", "real", "imag", "angle", "stft")
PADDINGS = ("valid", "same")
DATA_FORMATS = ("channels_last", "channels_first")
_KERNEL_SIDES = {"real_kernel": "real", "imag_kernel": "imag"}   # weight -> STFT side
# HTK's mel scale: mel(f) = 1127 ln(1 + f / 700), as Keras's MelSpectrogram.
_MEL_BREAK_HERTZ = 700.0
_MEL_HIGH_Q = 1127.0


def _positive_int(value, argument: str) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument} must be a positive integer. Received: "
                         f"{argument}={value!r}")
    return int(value)


def _number(value, argument: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"{argument} must be a number. Received: {argument}={value!r}")
    return value


def _check_floating(x, layer):
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{type(layer).__name__} takes float16, float32 or float64 signals. "
                        f"Received: inputs of dtype {x.dtype}; cast them with "
                        "ops.cast(x, 'float32').")


# -- STFTSpectrogram ------------------------------------------------------------------------------
class STFTSpectrogram(Layer):
    """Spectrograms of signals (batch, time, channels) by a short-time Fourier transform
    written as a convolution, as `keras.layers.STFTSpectrogram`.

    Each channel is cut into frames of `frame_length` samples every `frame_step`; each frame is
    windowed and transformed into `fft_length // 2 + 1` frequency bins by two kernels
    (frame_length, 1, bins), "real_kernel" and "imag_kernel" (kilnet.initializers.STFT), which
    are weights: trainable unless `trainable=False`.

    Args:
        mode: what each bin holds: "log" (log magnitude, default), "magnitude", "psd" (the
            power, doubled but for the first and last bins), "real", "imag", "angle" (the
            phase), or "stft" (real bins then imaginary bins).
        frame_length: samples per frame. frame_step: samples between frames (default
            frame_length // 2).
        fft_length: the transform's length, at least frame_length (default: the next power of
            two).
        window, periodic, scaling: the window of each frame, as the STFT initializer's.
        padding: "valid" (whole frames only) or "same" (ceil(time / frame_step) frames).
        expand_dims: True for (batch, frames, bins, channels) instead of (batch, frames,
            channels * bins) (channels_last); with channels_first, (batch, channels, frames,
            bins) instead of (batch, channels * bins, frames).
        data_format: "channels_last" (default) or "channels_first" (inputs (batch, channels,
            time)).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.STFTSpectrogram(frame_length=8, frame_step=4)
        >>> layer(np.ones((2, 32, 3), np.float32)).shape
        (2, 7, 15)
        >>> [w.shape for w in layer.get_weights()]
        [(8, 1, 5), (8, 1, 5)]
    """

    config_keys = ("mode", "frame_length", "frame_step", "fft_length", "window", "periodic",
                   "scaling", "padding", "data_format", "expand_dims")

    def __init__(self, mode="log", frame_length=256, frame_step=None, fft_length=None,
                 window="hann", periodic=False, scaling="density", padding="valid",
                 expand_dims=False, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
        if data_format not in (None,) + DATA_FORMATS:
            raise ValueError("data_format must be 'channels_last' or 'channels_first'. "
                             f"Received: data_format={data_format!r}")
        if not isinstance(expand_dims, bool):
            raise TypeError(f"expand_dims must be True or False. Received: "
                            f"expand_dims={expand_dims!r}")
        self.mode, self.padding, self.expand_dims = mode, padding, expand_dims
        self.data_format = data_format or "channels_last"
        self.frame_length = _positive_int(frame_length, "frame_length")
        self.frame_step = self._checked_step(frame_step)
        self.fft_length = self._checked_fft_length(fft_length)
        # The initializer checks window, scaling and periodic as Keras's layer does.
        initializers.STFT("real", window, scaling, periodic)
        self.window = initializers.check_window(window)
        self.scaling, self.periodic = scaling, periodic

    def _checked_step(self, frame_step):
        if frame_step is None:
            return None
        if _positive_int(frame_step, "frame_step") > self.frame_length:
            raise ValueError("frame_step must not exceed frame_length (frames would skip "
                             f"samples). Received: frame_step={frame_step}, "
                             f"frame_length={self.frame_length}")
        return int(frame_step)

    def _checked_fft_length(self, fft_length):
        if fft_length is None:
            return None
        if _positive_int(fft_length, "fft_length") < self.frame_length:
            raise ValueError("fft_length must be at least frame_length. Received: "
                             f"fft_length={fft_length}, frame_length={self.frame_length}")
        if fft_length & (fft_length - 1):
            warnings.warn("fft_length is best a power of two (as Keras advises). Received: "
                          f"fft_length={fft_length}", stacklevel=3)
        return int(fft_length)

    @property
    def step(self) -> int:
        """The samples between frames (frame_step, or half a frame by default)."""
        return self.frame_step or max(self.frame_length // 2, 1)

    @property
    def bins(self) -> int:
        """Frequency bins of one transform: fft_length // 2 + 1 (fft_length by default the
        power of two at or above frame_length)."""
        fft_length = self.fft_length or 1 << (self.frame_length - 1).bit_length()
        return fft_length // 2 + 1

    @property
    def param_names(self):
        # as Keras, only the kernels the mode reads exist
        if self.mode in ("real", "imag"):
            return (f"{self.mode}_kernel",)
        return ("real_kernel", "imag_kernel")

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError("STFTSpectrogram takes signals of shape (batch, time, channels) "
                             f"(channels_first: (batch, channels, time)). Received: an input "
                             f"of shape {(None,) + tuple(input_shape)}; add a channel axis of "
                             "1 to a mono batch (batch, time).")
        time, channels = (input_shape if self.data_format == "channels_last"
                          else input_shape[::-1])
        if channels is None:
            raise ValueError("STFTSpectrogram needs the number of channels known. Received: "
                             f"an input of shape {(None,) + tuple(input_shape)}")
        frames = conv1d_length(time, self.frame_length, self.step, 1, self.padding)
        if frames is not None and frames < 1:
            raise ValueError("the signals are shorter than one frame with padding='valid'. "
                             f"Received: {time} samples, frame_length={self.frame_length}; "
                             "use padding='same' or a shorter frame_length.")
        bins = self.bins * (2 if self.mode == "stft" else 1)
        if self.data_format == "channels_last":
            return (frames, bins, channels) if self.expand_dims else (frames, channels * bins)
        return (channels, frames, bins) if self.expand_dims else (channels * bins, frames)

    def init(self, rng, input_shape):
        out_shape = self.sample_output_shape(input_shape)
        shape = (self.frame_length, 1, self.bins)
        params = {name: initializers.STFT(_KERNEL_SIDES[name], self.window, self.scaling,
                                          self.periodic).sample(rng, shape)
                  for name in self.param_names}
        return params, {}, out_shape

    def apply(self, params, state, x, **_):
        _check_floating(x, self)
        if self.data_format == "channels_first":
            x = jnp.swapaxes(x, 1, 2)
        real = self._transform(x, params["real_kernel"]) if "real_kernel" in params else None
        imag = self._transform(x, params["imag_kernel"]) if "imag_kernel" in params else None
        return self._arranged(self._mode_values(real, imag)), state

    def _transform(self, x, kernel):
        """One kernel over every channel: (batch, channels, frames, bins)."""
        batch, time, channels = x.shape
        signals = jnp.swapaxes(x, 1, 2).reshape(batch * channels, time, 1)
        out = ops.conv(signals, kernel.astype(x.dtype), strides=self.step, padding=self.padding)
        return out.reshape(batch, channels, out.shape[1], out.shape[2])

    def _mode_values(self, real, imag):
        if self.mode == "real":
            return real
        if self.mode == "imag":
            return imag
        if self.mode == "angle":
            return jnp.arctan2(imag, real)
        if self.mode == "stft":
            return jnp.concatenate([real, imag], axis=-1)
        power = jnp.square(real) + jnp.square(imag)
        if self.mode == "psd":
            # a one-sided spectrum: every bin but the first and last stands for two
            interior = jnp.pad(power[..., 1:-1], [(0, 0)] * (power.ndim - 1) + [(1, 1)])
            return power + interior
        epsilon = config.epsilon()
        magnitude = jnp.sqrt(jnp.maximum(power, epsilon))
        if self.mode == "magnitude":
            return magnitude
        return jnp.log(jnp.maximum(magnitude, epsilon))

    def _arranged(self, values):
        """(batch, channels, frames, bins) in Keras's output layout."""
        batch, channels, frames, bins = values.shape
        if self.data_format == "channels_last":
            if self.expand_dims:
                return jnp.transpose(values, (0, 2, 3, 1))
            return jnp.transpose(values, (0, 2, 1, 3)).reshape(batch, frames, channels * bins)
        if self.expand_dims:
            return values
        return jnp.swapaxes(values, 2, 3).reshape(batch, channels * bins, frames)


# -- MelSpectrogram -------------------------------------------------------------------------------
def hertz_to_mel(frequencies):
    """Frequencies in hertz on HTK's mel scale, `1127 ln(1 + f / 700)`.

    Example:
        >>> round(float(hertz_to_mel(1000.0)), 2)
        999.99
    """
    return _MEL_HIGH_Q * np.log1p(np.asarray(frequencies, np.float64) / _MEL_BREAK_HERTZ)


def mel_filter_bank(num_mel_bins, num_spectrogram_bins, sampling_rate, lower_edge_hertz,
                    upper_edge_hertz) -> np.ndarray:
    """The (num_spectrogram_bins, num_mel_bins) matrix that turns linear frequency bins
    (0 to sampling_rate / 2) into mel bands: triangles of peak 1, evenly spaced on the mel
    scale between the two edges, each reaching the centres of its neighbours; the DC bin gets
    no weight (HTK's convention, as Keras's linear_to_mel_weight_matrix).

    Example:
        >>> mel_filter_bank(2, 5, 8000, 0.0, 4000.0).shape
        (5, 2)
    """
    linear = hertz_to_mel(np.linspace(0.0, sampling_rate / 2.0, num_spectrogram_bins)[1:])
    edges = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz),
                        num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (linear[:, None] - lower) / (center - lower)
    falling = (upper - linear[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, [(1, 0), (0, 0)])


class MelSpectrogram(Layer):
    """Mel spectrograms of audio signals, as `keras.layers.MelSpectrogram`: (batch, samples)
    to (batch, num_mel_bins, frames), or one signal (samples,) to (num_mel_bins, frames).

    The signal is cut into centred frames (reflection-padded by fft_length // 2 at both ends)
    every `sequence_stride` samples, windowed over `sequence_length` samples and transformed
    (`ops.stft`); the magnitudes to the power `mag_exp` are summed into `num_mel_bins`
    triangular mel bands between `min_freq` and `max_freq`, then (with `power_to_db`) turned
    into decibels `10 log10(max(S, min_power) / max(ref_power, min_power))`, floored at the
    batch's maximum minus `top_db`. There are no weights: the filter bank follows from the
    config.

    Args:
        fft_length: the transform's length. sequence_stride: samples between frames.
        sequence_length: the window's length (default fft_length).
        window: "hann" (default), "hamming", an array of sequence_length values, or None.
        sampling_rate: samples per second of the signals. num_mel_bins: mel bands.
        min_freq, max_freq: the band edges in hertz (max_freq defaults to sampling_rate / 2).
        power_to_db, top_db, mag_exp, min_power, ref_power: as described above.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.MelSpectrogram(fft_length=64, sequence_stride=32,
        ...                                      num_mel_bins=8, sampling_rate=8000)
        >>> layer(np.random.default_rng(0).uniform(size=(2, 256))).shape
        (2, 8, 9)
        >>> layer(np.zeros(256)).shape
        (8, 9)
    """

    config_keys = ("fft_length", "sequence_stride", "sequence_length", "window",
                   "sampling_rate", "num_mel_bins", "min_freq", "max_freq", "power_to_db",
                   "top_db", "mag_exp", "min_power", "ref_power")

    def __init__(self, fft_length=2048, sequence_stride=512, sequence_length=None,
                 window="hann", sampling_rate=16000, num_mel_bins=128, min_freq=20.0,
                 max_freq=None, power_to_db=True, top_db=80.0, mag_exp=2.0, min_power=1e-10,
                 ref_power=1.0, **kwargs):
        super().__init__(**kwargs)
        self.fft_length = _positive_int(fft_length, "fft_length")
        self.sequence_stride = _positive_int(sequence_stride, "sequence_stride")
        self.sequence_length = _positive_int(sequence_length or fft_length, "sequence_length")
        if self.fft_length < self.sequence_length:
            raise ValueError("fft_length must be at least sequence_length. Received: "
                             f"fft_length={fft_length}, sequence_length={sequence_length}")
        self.window = initializers.check_window(window)
        self.sampling_rate = _positive_int(sampling_rate, "sampling_rate")
        self.num_mel_bins = _positive_int(num_mel_bins, "num_mel_bins")
        self.min_freq = _number(min_freq, "min_freq")
        self.max_freq = _number(max_freq or int(sampling_rate / 2), "max_freq")
        if not 0 <= self.min_freq < self.max_freq:
            raise ValueError("min_freq and max_freq must satisfy 0 <= min_freq < max_freq. "
                             f"Received: min_freq={min_freq}, max_freq={self.max_freq}")
        if not isinstance(power_to_db, bool):
            raise TypeError(f"power_to_db must be True or False. Received: "
                            f"power_to_db={power_to_db!r}")
        self.power_to_db = power_to_db
        self.top_db = _number(top_db, "top_db")
        self.mag_exp = _number(mag_exp, "mag_exp")
        self.min_power = _number(min_power, "min_power")
        self.ref_power = _number(ref_power, "ref_power")

    def call_input_shape(self, args, kwargs):
        # one signal (samples,) is taken as a batch of one, as Keras's layer takes it
        shape = tuple(args[0].shape)
        return shape if len(shape) == 1 and not is_symbolic(args[0]) else shape[1:]

    def sample_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError("MelSpectrogram takes signals of shape (batch, samples) or one "
                             f"signal (samples,). Received: an input of shape "
                             f"{(None,) + tuple(input_shape)}; drop a channel axis of 1 "
                             "with ops.squeeze(x, -1).")
        samples = input_shape[0]
        if samples is None:
            return (self.num_mel_bins, None)
        # centred frames: fft_length // 2 samples of padding at both ends
        padded = samples + 2 * (self.fft_length // 2)
        return (self.num_mel_bins, 1 + (padded - self.fft_length) // self.sequence_stride)

    def apply(self, params, state, x, **_):
        _check_floating(x, self)
        if x.ndim == 1:
            out, state = self.apply(params, state, x[None])
            return out[0], state
        dtype = x.dtype if x.dtype == jnp.float64 else jnp.float32  # ops.stft's dtypes
        real, imag = ops.stft(x.astype(dtype), self.sequence_length, self.sequence_stride,
                              self.fft_length, self.window, center=True)
        magnitude = jnp.sqrt(jnp.square(real) + jnp.square(imag))
        bank = mel_filter_bank(self.num_mel_bins, self.fft_length // 2 + 1, self.sampling_rate,
                               self.min_freq, self.max_freq)
        mel = jnp.tensordot(jnp.power(magnitude, self.mag_exp), bank.astype(dtype), axes=1)
        if self.power_to_db:
            mel = self._decibels(mel)
        return jnp.swapaxes(mel, -1, -2), state

    def _decibels(self, power):
        floor = self.min_power
        decibels = 10.0 * jnp.log10(jnp.maximum(power, floor))
        decibels = decibels - 10.0 * np.log10(max(abs(self.ref_power), floor))
        # Keras's floor comes from the maximum over the whole batch, not per signal
        return jnp.maximum(decibels, jnp.max(decibels) - self.top_db)
