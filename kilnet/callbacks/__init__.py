"""Callbacks with Keras's hooks (`on_epoch_end(epoch, logs)`, ...) and semantics."""

from kilnet.callbacks._base import (
    Callback,
    CallbackList,
    History,
    LambdaCallback,
    TerminateOnNaN,
)
from kilnet.callbacks._checkpoint import BackupAndRestore, ModelCheckpoint
from kilnet.callbacks._early_stopping import EarlyStopping
from kilnet.callbacks._ema import SwapEMAWeights
from kilnet.callbacks._loggers import CSVLogger, RemoteMonitor, TensorBoard
from kilnet.callbacks._lr import LearningRateScheduler, ReduceLROnPlateau

__all__ = ["BackupAndRestore", "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History",
           "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "ReduceLROnPlateau",
           "RemoteMonitor", "SwapEMAWeights", "TensorBoard", "TerminateOnNaN"]
