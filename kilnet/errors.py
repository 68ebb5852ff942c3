"""Exceptions and warnings kilnet raises on purpose, so users and the CLI can tell them from bugs.

Every error kilnet raises about the user's data or settings is a `KilnetError`, and also a
ValueError, TypeError or FloatingPointError as Keras users expect. The first sentence of each
message states the problem on its own, so a command line can show just that line.
"""


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
