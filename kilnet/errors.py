"""Exceptions kilnet raises on purpose, so users and the CLI can tell them from bugs."""


class NonFiniteError(FloatingPointError):
    """Training met a non-finite loss or gradient; the step was not applied."""

    def __init__(self, message, *, epoch=None, step=None, history=None):
        super().__init__(message)
        self.epoch, self.step, self.history = epoch, step, history
