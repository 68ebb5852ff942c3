"""Exceptions and warnings kilnet raises on purpose, so users and the CLI can tell them from bugs.

Every error kilnet raises about the user's data or settings is a `KilnetError`, and also a
ValueError, TypeError or FloatingPointError as Keras users expect. The first sentence of each
message states the problem on its own, so a command line can show just that line.
"""

import os
import sys
import warnings

_KILNET_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class KilnetError(Exception):
    """Base of the errors kilnet raises on purpose (bad input, numeric faults)."""


class InputError(KilnetError, ValueError):
    """The data or an argument of fit/evaluate/predict is invalid; the message says the fix."""


class InputTypeError(KilnetError, TypeError):
    """The data has a type kilnet cannot train on (strings, Python objects, ...)."""


class NonFiniteError(KilnetError, FloatingPointError):
    """Training met a non-finite loss or gradient; the step was not applied.

    `epoch` and `step` are 0-based (the message counts from 1, as the progress bar does).
    """

    def __init__(self, message, *, epoch=None, step=None, history=None):
        super().__init__(message)
        self.epoch, self.step, self.history = epoch, step, history


class InputWarning(UserWarning):
    """The data will train, but probably not as the user meant (unscaled pixels, ...)."""


class KerasQuirkWarning(UserWarning):
    """kilnet did what Keras does, so a program written for Keras runs as it does there, but
    what Keras does here is probably not what was meant (a model that leaves layers out, a fit
    with no loss to train on). The message says what happened, why it matters and the fix.

    Example:
        >>> issubclass(KerasQuirkWarning, UserWarning)
        True
    """


class ModelFileError(KilnetError, ValueError):
    """A model, weights or checkpoint file is malformed, truncated, corrupted, or names a type
    kilnet does not allow. Nothing from it was used. `path` is the file, `problem` what is wrong.
    """

    def __init__(self, path, problem):
        super().__init__(f"Cannot load {path}: {problem}")
        self.path, self.problem = str(path), problem


class CheckpointMismatchError(KilnetError, ValueError):
    """A checkpoint was written by a different training setup (model, optimizer, batch size,
    data size) than the one trying to resume from it."""


class SaveError(KilnetError, OSError):
    """A model or checkpoint could not be written (disk full, permission denied, ...). The
    previous file or checkpoint is left as it was. `errno` is the OS error number."""

    def __init__(self, message, errno=None):
        super().__init__(message)
        self.errno = errno


class TrainingInterrupted(SystemExit):
    """fit() stopped on SIGINT or SIGTERM after finishing its chunk in flight (and writing a
    checkpoint if a BackupAndRestore callback was active). A SystemExit, so an uncaught one ends
    the program quietly with code 130 (SIGINT) or 143 (SIGTERM), as the shell expects.
    """

    def __init__(self, signum, message, checkpoint=None):
        super().__init__(128 + int(signum))
        self.signum, self.message, self.checkpoint = int(signum), message, checkpoint

    def __str__(self):
        return self.message


def warn_at_your_line(message, category, skipping=()) -> None:
    """`warnings.warn(message, category)` attributed to the line of yours that called into
    kilnet: the first frame of the call stack outside kilnet and the modules named in
    `skipping` (a warning given while JAX traces a step skips "jax"), so the warning shows
    your line, and Python's once-per-line rule applies to it.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_at_your_line("careful", InputWarning)
        >>> caught[0].category.__name__, str(caught[0].message)
        ('InputWarning', 'careful')
    """
    prefixes = (_KILNET_DIR,) + tuple(
        os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        for module in (sys.modules.get(name) for name in skipping)
        if module is not None and getattr(module, "__file__", None))
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(prefixes):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
