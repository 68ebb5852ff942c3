"""Callbacks with Keras's hooks (`on_epoch_end(epoch, logs)`, ...) and semantics."""

from kilnet.callbacks._base import (
    Callback,
    CallbackList,
    History,
    LambdaCallback,
    TerminateOnNaN,
)
from kilnet.callbacks._early_stopping import EarlyStopping

__all__ = ["Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
           "TerminateOnNaN"]
