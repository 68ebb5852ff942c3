"""EarlyStopping, with Keras's semantics (and the plateau stop of the MNIST lesson)."""

from __future__ import annotations

import math
import warnings

from kilnet.callbacks._base import Callback


def monitor_mode(monitor: str, mode: str) -> str:
    """"min" or "max": which way `monitor` improves, as Keras's "auto" guesses it (accuracies
    and AUCs go up, the rest down), or as `mode` says.

    Example:
        >>> monitor_mode("val_accuracy", "auto"), monitor_mode("val_loss", "auto")
        ('max', 'min')
    """
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when `monitor` has stopped improving by at least `min_delta` for `patience` epochs.

    This is also kilnet's plateau stop ("PlateauStopping"): training ends once the model has
    reached its learning plateau, i.e. the monitored metric no longer beats its best value by
    `min_delta` for `patience` epochs in a row. With the thresholds that
    `history.plateau()` (kilnet.insight.analyze_plateau) uses by default:

        stop = kilnet.callbacks.EarlyStopping(monitor="accuracy", min_delta=0.005, patience=2,
                                              restore_best_weights=True)
        model.fit(x_train, y_train, epochs=50, callbacks=[stop])

    stops when accuracy gains less than 0.5 percentage points for 2 epochs, and keeps the
    weights of the best epoch. For a loss, min_delta is absolute (e.g. 0.002), not relative.
    Use monitor="val_loss" with validation data to stop when the model starts overfitting.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = monitor_mode(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def _improved(self, current, reference):
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"EarlyStopping is conditioned on '{self.monitor}', which is not in "
                          f"the logs; available: {sorted(logs or {})}.", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improved(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improved(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_state(self) -> dict:
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state: dict) -> None:
        self.wait, self.best = int(state["wait"]), float(state["best"])
        self.best_epoch, self.stopped_epoch = int(state["best_epoch"]), int(state["stopped_epoch"])
