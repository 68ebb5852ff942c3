"""Keras's global settings (`keras.config`): the backend, the float type, the fuzz factor
epsilon, the image layout and the dtype policy, with Keras's names.

A leaf module: the losses, metrics, constraints and layers that use Keras's epsilon read
`epsilon()` here when they are traced, so `set_epsilon` reaches every program compiled after it
(as in Keras, a program compiled before keeps the value it was traced with). kilnet computes
in float32 with the channels-last image layout; the setters refuse anything else with the fix,
rather than accept a setting nothing would follow.

Example:
    >>> import kilnet
    >>> kilnet.config.backend(), kilnet.config.floatx(), kilnet.config.epsilon()
    ('jax', 'float32', 1e-07)
"""

from __future__ import annotations

import math
import warnings

_settings = {"epsilon": 1e-7, "interactive_logging": True}


def backend() -> str:
    """The backend kilnet runs on: always "jax"."""
    return "jax"


def epsilon() -> float:
    """Keras's fuzz factor (1e-7 by default): clips probabilities in the cross-entropies,
    keeps divisions by norms and counts finite.

    Example:
        >>> import kilnet
        >>> kilnet.config.epsilon()
        1e-07
    """
    return _settings["epsilon"]


def set_epsilon(value) -> None:
    """Set the fuzz factor for every program compiled afterwards.

    Example:
        >>> import kilnet
        >>> kilnet.config.set_epsilon(1e-5)
        >>> kilnet.config.epsilon()
        1e-05
        >>> kilnet.config.set_epsilon(1e-7)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < 1 and math.isfinite(value)):
        raise ValueError(f"epsilon must be a number in (0, 1). Received: value={value!r}")
    _settings["epsilon"] = float(value)


def floatx() -> str:
    """The float type of weights and computations: "float32" (16-bit compute is a dtype
    policy: kilnet.mixed_precision)."""
    return "float32"


def set_floatx(value) -> None:
    """Accepts "float32" only: kilnet's weights and computations are float32.

    Example:
        >>> import kilnet
        >>> kilnet.config.set_floatx("float16")
        Traceback (most recent call last):
        ...
        ValueError: kilnet keeps float32 weights and computes in float32; for 16-bit computations use a mixed-precision policy: kilnet.mixed_precision.set_global_policy("mixed_bfloat16") (or "mixed_float16" on a GPU). Received: value='float16'
    """
    if value != "float32":
        raise ValueError(
            "kilnet keeps float32 weights and computes in float32; for 16-bit computations "
            'use a mixed-precision policy: kilnet.mixed_precision.set_global_policy('
            '"mixed_bfloat16") (or "mixed_float16" on a GPU). Received: '
            f"value={value!r}")


def image_data_format() -> str:
    """The layout of image tensors: "channels_last" (batch, height, width, channels)."""
    return "channels_last"


def set_image_data_format(data_format) -> None:
    """Accepts "channels_last" only: kilnet's image layers take (batch, height, width,
    channels); transpose channels-first data once with `np.moveaxis(x, 1, -1)`."""
    if data_format != "channels_last":
        raise ValueError(
            "kilnet's image layers take channels-last tensors (batch, height, width, "
            "channels); transpose channels-first data once, e.g. np.moveaxis(x, 1, -1). "
            f"Received: data_format={data_format!r}")


def dtype_policy():
    """The global dtype policy (kilnet.mixed_precision.global_policy)."""
    from kilnet import mixed_precision

    return mixed_precision.global_policy()


def set_dtype_policy(policy) -> None:
    """Set the global dtype policy, e.g. "mixed_bfloat16" (kilnet.mixed_precision)."""
    from kilnet import mixed_precision

    mixed_precision.set_global_policy(policy)


def enable_unsafe_deserialization() -> None:
    """Keras's switch for loading Lambda layers stored as Python bytecode. kilnet never runs
    code from a file, so there is nothing to switch on: it warns, and a file's Lambda loads
    when its function is registered (kilnet.saving.register_serializable)."""
    warnings.warn(
        "kilnet has no unsafe deserialization: it never runs code stored in a file. A Lambda "
        "layer loads when the program registers its function with "
        "@kilnet.saving.register_serializable(); nothing else changes.", stacklevel=2)


def enable_interactive_logging() -> None:
    """Progress as live bars on a terminal or in a notebook (the default), as Keras's
    `keras.config.enable_interactive_logging`."""
    _settings["interactive_logging"] = True


def disable_interactive_logging() -> None:
    """Progress as Keras writes it when interactive logging is off: no live bars, one line
    per epoch (and per evaluate / predict / Progbar), sent to Python's `logging` (logger
    "kilnet", level INFO) instead of the screen, so a server or a batch job keeps it in its
    logs.

    Example:
        >>> import kilnet
        >>> kilnet.config.disable_interactive_logging()
        >>> kilnet.config.is_interactive_logging_enabled()
        False
        >>> kilnet.config.enable_interactive_logging()
    """
    _settings["interactive_logging"] = False


def is_interactive_logging_enabled() -> bool:
    """Whether progress is drawn live (True, the default) or logged (see
    disable_interactive_logging)."""
    return _settings["interactive_logging"]


def set_backend(backend_name) -> None:
    """Keras's backend switch: kilnet runs on JAX only, so "jax" is accepted and anything else
    refused with the fix."""
    if backend_name != "jax":
        raise ValueError(f"kilnet runs on JAX only; use Keras itself for the "
                         f"{backend_name!r} backend. Received: backend={backend_name!r}")
