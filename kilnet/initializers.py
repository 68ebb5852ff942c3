"""Weight initializers with Keras's classes, names, arguments, configs and formulas.

`kernel_initializer=` and the other `*_initializer` arguments take a name ("glorot_uniform",
"he_normal", "zeros", ...), an initializer object (`RandomNormal(stddev=0.02)`,
`Constant(0.1)`, `VarianceScaling(2.0, mode="fan_out")`, ...), its config
(Keras's {"module", "class_name", "config", "registered_name"}, as files hold it, or
kilnet's older {"class_name", "config"}), your own `Initializer` subclass, or, as Keras, a
function or other callable `f(shape, dtype=None)` (`initial_values` calls it). kilnet's layers hold
the Initializer object (`set_layer_initializers`), and their configs its entry, as Keras's. Called as Keras
calls them, `init(shape, dtype=None)` returns the values.

Inside a model the values are drawn from a NumPy Generator that the model's seed decides
(`sample(rng, shape)`), not from jax.random: building the seed MLP with eager jax.random ops
cost 1.9 s of op-by-op XLA compilation on our 2-core CPU, against milliseconds here. An
initializer given its own `seed` draws the same values at every call, whatever the model's
seed, as Keras's seeded initializers do (the values are NumPy's draws, not JAX's).
"""

from __future__ import annotations

import math

import numpy as np

from kilnet import _registry, _small_objects


class Initializer(_small_objects.SmallObject):
    """Base class of the initializers, as Keras's `keras.initializers.Initializer`.

    Subclass it the Keras way, with `__call__(self, shape, dtype=None)` returning the values
    (and `get_config` for its arguments), or kilnet's way, with `draw(self, rng, shape)`
    drawing from the NumPy Generator `rng` (the model's, so its seed decides the values).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Halves(kilnet.initializers.Initializer):
        ...     def __call__(self, shape, dtype=None):
        ...         return np.full(shape, 0.5, dtype or "float32")
        >>> layer = kilnet.layers.Dense(2, kernel_initializer=Halves())
        >>> np.asarray(layer(np.ones((1, 3)))).tolist()
        [[1.5, 1.5]]
    """

    seed = None

    def __call__(self, shape, dtype=None):
        """The values of a weight of `shape`, as an array of `dtype` (default float32)."""
        import jax.numpy as jnp

        from kilnet import utils

        rng = np.random.default_rng(self.seed) if self.seed is not None else utils.numpy_rng(
            utils.next_seed())
        return jnp.asarray(self.draw(rng, tuple(shape)), dtype or "float32")

    def draw(self, rng, shape) -> np.ndarray:
        """kilnet's form: float32 values of `shape` drawn from the NumPy Generator `rng`."""
        raise NotImplementedError(
            f"{type(self).__name__} defines neither __call__(shape, dtype) (Keras's form) nor "
            "draw(rng, shape) (kilnet's form): implement one of them.")

    def sample(self, rng, shape) -> np.ndarray:
        """The values a layer's weight of `shape` starts from: drawn from `rng` (the model's
        Generator), or from the initializer's own seed when it has one."""
        shape = tuple(int(d) for d in shape)
        if type(self).draw is Initializer.draw:   # written the Keras way
            return np.asarray(self(shape, dtype="float32"), np.float32)
        if self.seed is not None:
            rng = np.random.default_rng(self.seed)
        return np.asarray(self.draw(rng, shape), np.float32)



# -- constants -------------------------------------------------------------------------------------
class Constant(Initializer):
    """Every value `value` (a scalar, or an array that broadcasts to the weight's shape, as
    Keras's `ops.ones(shape) * value`), as Keras's Constant.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.Constant(0.5)(shape=(2,)).tolist()
        [0.5, 0.5]
    """

    def __init__(self, value=0.0):
        array = np.asarray(value, np.float64)   # checked numeric; kept as given in the config
        self.value = float(array) if array.ndim == 0 else array.tolist()

    def draw(self, rng, shape):
        return np.broadcast_to(np.asarray(self.value, np.float32), shape).copy()

    def get_config(self):
        return {"value": self.value}


class Zeros(Initializer):
    """Zeros, as Keras's Zeros.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.Zeros()(shape=(2,)).tolist()
        [0.0, 0.0]
    """

    def draw(self, rng, shape):
        return np.zeros(shape, np.float32)


class Ones(Initializer):
    """Ones, as Keras's Ones.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.Ones()(shape=(2,)).tolist()
        [1.0, 1.0]
    """

    def draw(self, rng, shape):
        return np.ones(shape, np.float32)


class Identity(Initializer):
    """`gain` times the identity matrix (2-D weights only), as Keras's Identity; its config
    keeps `gain` (Keras 3.15 writes an empty config, so its files lose a gain other than 1).

    Example:
        >>> import kilnet
        >>> kilnet.initializers.Identity(gain=2.0)(shape=(2, 3)).tolist()
        [[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]]
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def draw(self, rng, shape):
        if len(shape) != 2:
            raise ValueError("The Identity initializer makes 2-D weights only. Received: "
                             f"shape={shape}")
        return (self.gain * np.eye(*shape)).astype(np.float32)

    def get_config(self):
        return {"gain": self.gain}


# -- random ----------------------------------------------------------------------------------------
class RandomInitializer(Initializer):
    """What the random initializers share: `seed` (None: the model's seed decides; an int: the
    same values at every call)."""

    def __init__(self, seed=None):
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError(f"seed must be an integer or None. Received: seed={seed!r}")
        self.seed = seed

    def get_config(self):
        return {"seed": self.seed}


class RandomNormal(RandomInitializer):
    """Normal(mean, stddev), as Keras's RandomNormal (not truncated).

    Example:
        >>> import kilnet
        >>> init = kilnet.initializers.RandomNormal(mean=1.0, stddev=0.02, seed=3)
        >>> bool(abs(float(init(shape=(1000,)).mean()) - 1.0) < 0.01)
        True
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def draw(self, rng, shape):
        return _affine(rng.standard_normal(shape, dtype=np.float32), self.stddev, self.mean)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomInitializer):
    """Normal(mean, stddev) with values beyond two standard deviations redrawn, as Keras's
    TruncatedNormal.

    Example:
        >>> import kilnet
        >>> values = kilnet.initializers.TruncatedNormal(stddev=0.02, seed=0)(shape=(500,))
        >>> bool(abs(values).max() <= 0.04)
        True
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def draw(self, rng, shape):
        return _affine(_truncated_unit_normal(rng, shape), self.stddev, self.mean)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class RandomUniform(RandomInitializer):
    """Uniform in [minval, maxval), as Keras's RandomUniform.

    Example:
        >>> import kilnet
        >>> values = kilnet.initializers.RandomUniform(-1.0, 1.0, seed=0)(shape=(100,))
        >>> bool(values.min() >= -1.0 and values.max() < 1.0)
        True
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def draw(self, rng, shape):
        return _uniform(rng, self.minval, self.maxval, shape)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")
MODES = ("fan_in", "fan_out", "fan_avg")


class VarianceScaling(RandomInitializer):
    """Values of variance `scale / n`, n the fan-in, the fan-out or their average (`mode`),
    from a truncated normal, a normal or a uniform distribution, as Keras's VarianceScaling
    (fans as Keras counts them: a kernel (..., in, out) has fan-in `in` times its receptive
    field; `input_axes` / `output_axes` name the axes to count instead).

    Example:
        >>> import kilnet
        >>> init = kilnet.initializers.VarianceScaling(2.0, "fan_in", "uniform", seed=0)
        >>> values = init(shape=(200, 300))
        >>> bool(abs(float(values.var()) - 2.0 / 200) < 5e-4)
        True
    """

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ValueError(f"scale must be a positive number. Received: scale={scale!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}. Received: mode={mode!r}")
        given = distribution.lower() if isinstance(distribution, str) else distribution
        given = "truncated_normal" if given == "normal" else given   # Keras's older name
        if given not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)} (or 'normal', "
                             f"Keras's name for truncated_normal). Received: "
                             f"distribution={distribution!r}")
        self.scale, self.mode, self.distribution = float(scale), mode, given
        self.input_axes, self.output_axes = _axes(input_axes), _axes(output_axes)

    def draw(self, rng, shape):
        fan_in, fan_out = fans(shape, self.input_axes, self.output_axes)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[
            self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "truncated_normal":
            # 0.8796... is the standard deviation of a unit normal truncated at +-2.
            return _affine(_truncated_unit_normal(rng, shape),
                           math.sqrt(variance) / 0.87962566103423978)
        if self.distribution == "untruncated_normal":
            return _affine(rng.standard_normal(shape, dtype=np.float32), math.sqrt(variance))
        limit = math.sqrt(3.0 * variance)
        return _uniform(rng, -limit, limit, shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class _NamedScaling(VarianceScaling):
    """A VarianceScaling with fixed settings (Glorot, He, LeCun), whose config is its seed and
    axes only, as Keras's."""

    SETTINGS: tuple = ()

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        scale, mode, distribution = self.SETTINGS
        super().__init__(scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": self.input_axes,
                "output_axes": self.output_axes}


class GlorotUniform(_NamedScaling):
    """Uniform in +-sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010), as Keras's; the
    default kernel initializer.

    Example:
        >>> import kilnet
        >>> values = kilnet.initializers.GlorotUniform(seed=0)(shape=(30, 20))
        >>> bool(abs(values).max() <= (6 / 50) ** 0.5)
        True
    """

    SETTINGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_NamedScaling):
    """Truncated normal of standard deviation sqrt(2 / (fan_in + fan_out)), as Keras's.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.GlorotNormal(seed=0)(shape=(3, 2)).shape
        (3, 2)
    """

    SETTINGS = (1.0, "fan_avg", "truncated_normal")


class HeUniform(_NamedScaling):
    """Uniform in +-sqrt(6 / fan_in) (He et al., 2015), as Keras's.

    Example:
        >>> import kilnet
        >>> values = kilnet.initializers.HeUniform(seed=0)(shape=(24, 8))
        >>> bool(abs(values).max() <= 0.5)
        True
    """

    SETTINGS = (2.0, "fan_in", "uniform")


class HeNormal(_NamedScaling):
    """Truncated normal of standard deviation sqrt(2 / fan_in), as Keras's.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.HeNormal(seed=0)(shape=(3, 3, 8, 16)).shape
        (3, 3, 8, 16)
    """

    SETTINGS = (2.0, "fan_in", "truncated_normal")


class LecunUniform(_NamedScaling):
    """Uniform in +-sqrt(3 / fan_in), as Keras's.

    Example:
        >>> import kilnet
        >>> values = kilnet.initializers.LecunUniform(seed=0)(shape=(12, 4))
        >>> bool(abs(values).max() <= 0.5)
        True
    """

    SETTINGS = (1.0, "fan_in", "uniform")


class LecunNormal(_NamedScaling):
    """Truncated normal of standard deviation sqrt(1 / fan_in), as Keras's (SELU networks).

    Example:
        >>> import kilnet
        >>> kilnet.initializers.LecunNormal(seed=0)(shape=(4, 4)).shape
        (4, 4)
    """

    SETTINGS = (1.0, "fan_in", "truncated_normal")


class Orthogonal(RandomInitializer):
    """`gain` times an orthogonal matrix (the weight flattened to (rows, last axis)): the Q of a
    normal matrix's QR, its columns' signs fixed by R's diagonal so that Q is uniform over the
    orthogonal matrices, as Keras's Orthogonal; the recurrent kernels' default.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> q = np.asarray(kilnet.initializers.Orthogonal(seed=0)(shape=(4, 4)))
        >>> bool(np.allclose(q @ q.T, np.eye(4), atol=1e-5))
        True
    """

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def draw(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"The orthogonal initializer needs a shape of rank 2 or more. "
                             f"Received: shape={tuple(shape)}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        q = q * np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return np.ascontiguousarray(self.gain * q.reshape(shape), dtype=np.float32)

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}



# -- signal processing -----------------------------------------------------------------------------
WINDOWS = ("hann", "hamming")
SCALINGS = ("density", "spectrum")


class STFT(Initializer):
    """The real or imaginary half of a discrete Fourier transform as a convolution kernel
    (frame_length, 1, bins), windowed and scaled, as Keras's STFT initializer (also named
    STFTInitializer and stft): kernel[t, 0, k] is cos (side "real") or sin (side "imag") of
    -2 pi t k / ((bins - 1) * 2), times the window, divided by the window's L2 norm
    (scaling "density") or its sum (scaling "spectrum"). STFTSpectrogram's kernels.

    Args:
        side: "real" or "imag".
        window: "hann", "hamming", an array of frame_length values, or None (no window).
        scaling: "density", "spectrum" or None (no scaling).
        periodic: True for the periodic window (spectral analysis's), False for the
            symmetric one.

    The values are computed in float64 and then cast, where Keras computes the angles in the
    weight's dtype; they agree to about 1e-5.

    Example:
        >>> import kilnet
        >>> init = kilnet.initializers.STFT("real", window=None, scaling=None)
        >>> init(shape=(2, 1, 3))[:, 0, :].round(6).tolist()
        [[1.0, 1.0, 1.0], [1.0, 0.0, -1.0]]
    """

    def __init__(self, side="real", window="hann", scaling="density", periodic=False):
        if side not in ("real", "imag"):
            raise ValueError(f"side must be 'real' or 'imag'. Received: side={side!r}")
        self.window = check_window(window)
        if scaling is not None and scaling not in SCALINGS:
            raise ValueError("scaling must be None, 'density' or 'spectrum'. Received: "
                             f"scaling={scaling!r}")
        if not isinstance(periodic, bool):
            raise TypeError(f"periodic must be True or False. Received: periodic={periodic!r}")
        self.side, self.scaling, self.periodic = side, scaling, periodic

    def __call__(self, shape, dtype=None):
        import jax.numpy as jnp

        return jnp.asarray(self.kernel(tuple(shape)), dtype or "float32")

    def draw(self, rng, shape):
        return self.kernel(shape).astype(np.float32)

    def kernel(self, shape) -> np.ndarray:
        """The float64 kernel of `shape` (frame_length, input_channels, bins)."""
        if len(shape) != 3:
            raise ValueError("The STFT initializer makes kernels of shape (frame_length, "
                             f"input_channels, bins). Received: shape={tuple(shape)}")
        frame_length, _, bins = shape
        time = np.arange(frame_length).reshape(frame_length, 1, 1)
        # bins = fft_length // 2 + 1, so (bins - 1) * 2 is the FFT length (an even one)
        frequency = np.arange(bins).reshape(1, 1, bins) / ((bins - 1) * 2)
        angle = -2.0 * np.pi * time * frequency
        values = np.cos(angle) if self.side == "real" else np.sin(angle)
        if self.window is None:
            return np.broadcast_to(values, shape).copy()
        window = window_values(self.window, frame_length, self.periodic).reshape(-1, 1, 1)
        scale = {"density": np.sqrt(np.sum(window ** 2)), "spectrum": np.sum(np.abs(window)),
                 None: 1.0}[self.scaling]
        return np.broadcast_to(values * window / scale, shape).copy()

    def get_config(self):
        return {"side": self.side, "window": self.window, "periodic": self.periodic,
                "scaling": self.scaling}


def check_window(window):
    """A window argument as a config keeps it: a name of WINDOWS, None, or a list of values
    (an array becomes a list).

    Example:
        >>> check_window("blackman")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: window must be 'hann', 'hamming', ... Received: window='blackman'
    """
    if window is None or (isinstance(window, str) and window in WINDOWS):
        return window
    if not isinstance(window, str):
        values = np.asarray(window, dtype=np.float64)
        if values.ndim == 1 and values.size and np.all(np.isfinite(values)):
            return values.tolist()
    raise ValueError("window must be 'hann', 'hamming', an array of window values or None. "
                     f"Received: window={window!r:.80}")


def window_values(window, length, periodic=False) -> np.ndarray:
    """The float64 values of a window of `length` samples: Hann or Hamming, symmetric or
    periodic (as SciPy's get_window with fftbins=periodic), or the given values.

    Example:
        >>> window_values("hann", 4, periodic=True).tolist()
        [0.0, 0.5, 1.0, 0.5]
    """
    if not isinstance(window, str):
        values = np.asarray(window, dtype=np.float64)
        if values.shape != (length,):
            raise ValueError(f"The window must have frame_length={length} values. Received: "
                             f"a window of shape {values.shape}")
        return values
    if length == 1:
        return np.ones(1)
    # A periodic window of n samples is the symmetric one of n + 1, its last sample dropped.
    make = np.hanning if window == "hann" else np.hamming
    return make(length + 1)[:-1] if periodic else make(length)


# Keras's lower-case names for the same classes.
constant, zeros, ones, identity = Constant, Zeros, Ones, Identity
random_normal, truncated_normal, random_uniform = RandomNormal, TruncatedNormal, RandomUniform
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal, he_uniform, he_normal = (GlorotUniform, GlorotNormal, HeUniform,
                                                        HeNormal)
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
IdentityInitializer, OrthogonalInitializer = Identity, Orthogonal
stft = STFTInitializer = STFT

CLASSES = {cls.__name__: cls for cls in (
    Constant, Zeros, Ones, Identity, RandomNormal, TruncatedNormal, RandomUniform,
    VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform,
    LecunNormal, Orthogonal, STFT)}
# Every name Keras's `initializers.get` takes: the classes' names, their snake case, and
# Keras's older aliases ("uniform" and "normal" with their defaults: U(-0.05, 0.05), N(0, 0.05)).
_BY_NAME = {**CLASSES, "constant": Constant, "zeros": Zeros, "zero": Zeros, "ones": Ones,
            "one": Ones, "identity": Identity, "IdentityInitializer": Identity,
            "random_normal": RandomNormal, "normal": RandomNormal,
            "truncated_normal": TruncatedNormal, "random_uniform": RandomUniform,
            "uniform": RandomUniform, "variance_scaling": VarianceScaling,
            "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
            "he_uniform": HeUniform, "he_normal": HeNormal, "lecun_uniform": LecunUniform,
            "lecun_normal": LecunNormal, "orthogonal": Orthogonal,
            "OrthogonalInitializer": Orthogonal, "stft": STFT, "STFTInitializer": STFT}


def get(identifier):
    """The initializer an argument names, as Keras's `initializers.get`: a name, an
    Initializer, a config {"class_name", "config"}, an Initializer class (made with its
    defaults), a function or other callable `f(shape, dtype=None)` (kept as it is), an array
    (the values of a weight of its shape), or None (None stays None).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> kilnet.initializers.get("he_normal")
        HeNormal(seed=None, input_axes=None, output_axes=None)
        >>> kilnet.initializers.get({"class_name": "RandomNormal", "config": {"stddev": 0.02}})
        RandomNormal(seed=None, mean=0.0, stddev=0.02)
        >>> halves = lambda shape, dtype=None: np.full(shape, 0.5, dtype or "float32")
        >>> kilnet.initializers.get(halves) is halves
        True
    """
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if _registry.is_function_entry(identifier):   # a registered function of yours, by name
        return _registry.function_from_entry(identifier, "initializer")
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()   # as Keras: a class stands for its default instance
    if hasattr(identifier, "shape") and hasattr(identifier, "dtype"):
        return _given_values(identifier)
    if callable(identifier) and not isinstance(identifier, type):
        return identifier
    raise ValueError(
        "Unknown initializer: expected a name (one of "
        f"{sorted(n for n in _BY_NAME if n.islower())}), a kilnet.initializers object such as "
        "RandomNormal(stddev=0.02), its config, a function f(shape, dtype=None) or an array "
        f"of the weight's values. Received: {identifier!r:.100}")


def initial_values(initializer, rng, shape, dtype="float32") -> np.ndarray:
    """The values (of `dtype`) a weight of `shape` starts from, whatever `get` accepts:
    an Initializer draws from `rng` (the model's NumPy Generator) or its own seed; a function
    of yours is called as Keras calls it, `f(shape, dtype=dtype)`.

    Example:
        >>> import numpy as np
        >>> initial_values(lambda shape, dtype=None: np.ones(shape), None, (2,)).tolist()
        [1.0, 1.0]
        >>> initial_values("zeros", np.random.default_rng(0), (1, 2)).tolist()
        [[0.0, 0.0]]
        >>> initial_values(Ones, None, (2,), "int32").tolist()   # a class: its default instance
        [1, 1]
    """
    initializer = get(initializer)
    if isinstance(initializer, Initializer):
        return np.asarray(initializer.sample(rng, shape), dtype)
    shape = tuple(int(d) for d in shape)
    _require_dtype_argument(initializer)
    values = np.asarray(initializer(shape, dtype=dtype), dtype)
    if values.shape != shape:
        raise ValueError(f"The initializer {initializer!r:.80} returned values of shape "
                         f"{values.shape} for a weight of shape {shape}: return an array of "
                         "the shape it is given.")
    return values


def _require_dtype_argument(function) -> None:
    """Refuse, before calling it, a function that cannot be called as Keras calls an
    initializer, f(shape, dtype=...): an error raised inside a function that does take it is
    the function's own and is left as it is."""
    import inspect

    try:
        inspect.signature(function).bind((1,), dtype="float32")
    except ValueError:   # no signature to read (a builtin): let the call decide
        return
    except TypeError:
        raise TypeError(
            "An initializer function is called as Keras calls it, f(shape, dtype=...), and "
            f"{function!r:.80} does not take those arguments. Define it as "
            "`def f(shape, dtype=None)`.") from None


def _given_values(array):
    """An initializer giving `array`'s values, for a weight of its shape only (as Keras)."""
    def initialize_fn(shape, dtype=None):
        if tuple(shape) != tuple(array.shape):
            raise ValueError(f"Expected `shape` to be {tuple(array.shape)} for an array given as "
                             f"the initializer. Received shape={tuple(shape)}")
        return np.asarray(array, dtype or "float32")
    return initialize_fn


def set_layer_initializers(layer, **given) -> None:
    """Resolve a layer's `*_initializer` arguments onto it as Initializer objects, as Keras's
    layers hold them (`Dense(2).kernel_initializer` is a GlorotUniform, whose call gives new
    values: `layer.kernel.assign(layer.kernel_initializer(layer.kernel.shape))`). Each is
    checked, the argument named in the error. kilnet's layers call it; a layer of yours keeps
    what it stores itself.

    Example:
        >>> import kilnet
        >>> layer = kilnet.layers.Layer()
        >>> set_layer_initializers(layer, kernel_initializer="he_normal")
        >>> layer.kernel_initializer
        HeNormal(seed=None, input_axes=None, output_axes=None)
        >>> set_layer_initializers(layer, bias_initializer="zeroes")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: bias_initializer: Unknown initializer: ...
    """
    for argument, value in given.items():
        try:
            initializer = get(value)
        except ValueError as error:
            raise ValueError(f"{argument}: {error}") from None
        setattr(layer, argument, initializer)


def serialize(initializer):
    """An initializer as Keras's `initializers.serialize` writes it: {"module":
    "keras.initializers", "class_name", "config", "registered_name": None} (a class of yours
    under its module and registered name, its class name when not registered, as Keras; a
    function of yours registered with `kilnet.saving.register_keras_serializable` as Keras's
    function entry, by its registered name); None, a name and an entry already made stay as
    they are.

    Example:
        >>> import kilnet
        >>> kilnet.initializers.serialize(kilnet.initializers.Constant(0.1))
        {'module': 'keras.initializers', 'class_name': 'Constant', 'config': {'value': 0.1}, \
'registered_name': None}
        >>> kilnet.initializers.serialize("he_normal")
        'he_normal'
    """
    if initializer is None or isinstance(initializer, (str, dict)):
        return initializer
    if not isinstance(initializer, Initializer) and callable(initializer):
        return _registry.function_entry(initializer, "initializer")
    return _registry.to_config_entry(initializer, CLASSES, "keras.initializers",
                                     "initializer", strict=False)


def deserialize(config) -> Initializer:
    """The initializer a config describes: one of kilnet's classes, or a class registered with
    kilnet.saving.register_serializable (nothing else is created).

    Example:
        >>> import kilnet
        >>> kilnet.initializers.deserialize({"class_name": "Orthogonal",
        ...                                  "config": {"gain": 2.0, "seed": 1}})
        Orthogonal(seed=1, gain=2.0)
    """
    return _registry.from_config_entry(config, CLASSES, Initializer, "initializer class")


# -- helpers ---------------------------------------------------------------------------------------
def fans(shape, input_axes=None, output_axes=None) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight, as Keras counts them: a vector (n,) has n for both; a
    kernel (..., in, out) has in and out times its receptive field (the product of the leading
    axes); `input_axes` / `output_axes` give the axes to multiply instead."""
    if input_axes is not None or output_axes is not None:
        fan_in = math.prod(shape[a] for a in (input_axes or ()))
        fan_out = math.prod(shape[a] for a in (output_axes or ()))
        return int(fan_in), int(fan_out)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


# The random initializers draw float32 numbers, as the weights are float32: drawing float64
# and rounding took 2.4x as long (10 million uniform numbers: 51 against 21 ms; 2-core Intel
# Xeon) and twice the memory: building ConvNeXtBase 0.64 -> 0.41 s, ConvNeXtLarge 1.10 -> 0.65 s.
def _truncated_unit_normal(rng, shape):
    """Unit normal float32 values, those beyond two standard deviations redrawn (Keras's
    truncation)."""
    values = rng.standard_normal(shape, dtype=np.float32)
    bad = np.abs(values) > 2
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()), dtype=np.float32)
        bad = np.abs(values) > 2
    return values


def _affine(values, scale, shift=0.0):
    """values * scale + shift, in place, in float32."""
    values *= np.float32(scale)
    if shift:
        values += np.float32(shift)
    return values


def _uniform(rng, low, high, shape):
    """float32 numbers uniform in [low, high)."""
    values = _affine(rng.random(shape, dtype=np.float32), high - low, low)
    if high > low:  # float32 rounding may reach `high` itself
        np.minimum(values, np.nextafter(np.float32(high), np.float32(low)), out=values)
    return values


def _axes(axes):
    if axes is None:
        return None
    axes = [axes] if isinstance(axes, int) else list(axes)
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise ValueError(f"input_axes / output_axes are lists of axis indices. Received: {axes!r}")
    return axes
