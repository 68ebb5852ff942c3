"""ReduceLROnPlateau and LearningRateScheduler, with Keras's semantics.

The learning rate lives in the optimizer state inside the compiled training program
(`optax.inject_hyperparams`), so changing it between epochs costs no recompilation:
`model.compiled.learning_rate = value` replaces that scalar in the state. Both callbacks add
the rate in use to the epoch logs as "learning_rate", as Keras does.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from kilnet.callbacks._base import Callback


def get_learning_rate(model) -> float:
    """The learning rate the compiled training step uses now (a host sync: callbacks only)."""
    return float(_trainer(model).learning_rate)


def set_learning_rate(model, value: float) -> None:
    """Set the learning rate the compiled training step uses, without recompiling."""
    trainer = _trainer(model)
    optimizer = getattr(trainer, "optimizer", None)
    if callable(getattr(optimizer, "learning_rate", None)):
        raise TypeError("This optimizer was created with a learning-rate schedule, so its "
                        "learning rate cannot be set by a callback. Pass a number as "
                        "learning_rate, or drop the callback.")
    trainer.learning_rate = float(value)
    if optimizer is not None and hasattr(optimizer, "learning_rate"):
        # Keep model.optimizer.learning_rate telling the rate in use, as in Keras.
        optimizer.learning_rate = float(value)


def _trainer(model):
    trainer = getattr(model, "compiled", None)
    if trainer is None or trainer.state is None:
        raise RuntimeError("The learning rate is known once the model is compiled and built: "
                           "use this callback inside model.fit(...).")
    return trainer


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs; then wait `cooldown` epochs; never go below `min_lr`.

        model.fit(x, y, validation_split=0.1, epochs=30,
                  callbacks=[kilnet.callbacks.ReduceLROnPlateau(factor=0.2, patience=3)])
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:  # the old Keras name of min_delta
            min_delta = kwargs.pop("epsilon")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments {sorted(kwargs)}.")
        if not factor < 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received: factor={factor}")
        self.monitor = monitor
        self.factor = float(factor)
        self.min_lr = float(min_lr)
        self.min_delta = float(min_delta)
        self.patience = int(patience)
        self.verbose = verbose
        self.cooldown = int(cooldown)
        self.mode = mode
        self._reset()

    def _reset(self):
        if self.mode not in ("auto", "min", "max"):
            warnings.warn(f"Learning rate reduction mode {self.mode} is unknown, fallback to "
                          "auto mode.", stacklevel=2)
            self.mode = "auto"
        if self.mode == "min" or (self.mode == "auto" and "acc" not in self.monitor):
            self.monitor_op = lambda a, b: np.less(a, b - self.min_delta)
            self.best = np.inf
        else:
            self.monitor_op = lambda a, b: np.greater(a, b + self.min_delta)
            self.best = -np.inf
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    # What a checkpoint (BackupAndRestore) keeps; the rate itself is in the optimizer state.
    def get_state(self) -> dict:
        return {"wait": self.wait, "best": float(self.best),
                "cooldown_counter": self.cooldown_counter}

    def set_state(self, state: dict) -> None:
        self.wait, self.best = int(state["wait"]), float(state["best"])
        self.cooldown_counter = int(state["cooldown_counter"])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = get_learning_rate(self.model)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = get_learning_rate(self.model)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    set_learning_rate(self.model, new_lr)
                    if self.verbose > 0:
                        print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate "
                              f"to {new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """At the start of each epoch, set the learning rate to `schedule(epoch, lr)` (epoch counts
    from 0, lr is the current rate). A one-argument `schedule(epoch)` also works.

        def schedule(epoch, lr):
            return lr if epoch < 10 else lr * 0.9
        model.fit(x, y, epochs=15, callbacks=[kilnet.callbacks.LearningRateScheduler(schedule)])
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError("schedule must be a function (epoch, lr) -> lr. "
                            f"Received: schedule={schedule!r}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = get_learning_rate(self.model)
        try:
            new_lr = self.schedule(epoch, lr)
        except TypeError:  # the old one-argument form, as Keras accepts
            new_lr = self.schedule(epoch)
        if isinstance(new_lr, np.ndarray) and new_lr.ndim == 0:
            new_lr = new_lr.item()
        if isinstance(new_lr, bool) or not isinstance(new_lr, numbers.Real):
            raise ValueError("The output of the `schedule` function should be a float. "
                             f"Got: {new_lr!r}")
        set_learning_rate(self.model, float(new_lr))
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new_lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = get_learning_rate(self.model)
