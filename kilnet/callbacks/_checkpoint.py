"""BackupAndRestore (resumable training) and ModelCheckpoint (model files during training).

BackupAndRestore writes the whole training state (kilnet/checkpoint.py) at safe points
(kilnet/_interrupt.py): every epoch, every `save_freq` steps, every `save_every_seconds`, and on
SIGINT/SIGTERM. Running the same fit again restores it in on_train_begin and continues where
the last committed checkpoint left off, bitwise as if never interrupted: the data order depends
only on (trainer.seed, trainer.fit_calls, epoch) and dropout on (state.rng, epoch, step), all
restored. As in Keras, the backups are deleted when training completes.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings

import numpy as np

from kilnet import _tree, checkpoint, saving
from kilnet.callbacks._base import Callback, History
from kilnet.callbacks._early_stopping import monitor_mode


def _is_chief() -> bool:
    """Only process 0 writes files when several processes train together (shared storage)."""
    import jax
    return jax.process_index() == 0


def _positive_int(value, name):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _stateful(callbacks, exclude):
    """{key: callback} for callbacks whose state a checkpoint keeps (get_state/set_state)."""
    found, counts = {}, {}
    for cb in callbacks:
        if cb is exclude or isinstance(cb, (History, BackupAndRestore)):
            continue
        if callable(getattr(cb, "get_state", None)) and callable(getattr(cb, "set_state", None)):
            name = type(cb).__name__
            counts[name] = counts.get(name, -1) + 1
            found[f"{name}:{counts[name]}"] = cb
    return found


class BackupAndRestore(Callback):
    """Back up the training state to `backup_dir`, and resume from it after an interruption.

    save_freq: "epoch", or an int: every that many steps (chunks are cut to end there).
    save_every_seconds: also save when that much time has passed since the last save.
    keep: how many committed checkpoints to keep.
    delete_checkpoint: delete the backups when training completes (Keras's behaviour).
    """

    chunk_batch_hooks = True   # its batch hooks read the chunk's end (kilnet.callbacks)

    def __init__(self, backup_dir, save_freq="epoch", save_every_seconds=None, keep=3,
                 delete_checkpoint=True, verbose=0):
        super().__init__()
        if not backup_dir or not isinstance(backup_dir, (str, os.PathLike)):
            raise ValueError(f"backup_dir must be a directory path. Received: {backup_dir!r}")
        if save_freq != "epoch" and not _positive_int(save_freq, "save_freq"):
            raise ValueError("save_freq must be 'epoch' or a positive number of steps. "
                             f"Received: save_freq={save_freq!r}")
        if save_every_seconds is not None and (
                not isinstance(save_every_seconds, (int, float)) or save_every_seconds <= 0):
            raise ValueError("save_every_seconds must be a positive number or None. "
                             f"Received: save_every_seconds={save_every_seconds!r}")
        if not _positive_int(keep, "keep"):
            raise ValueError(f"keep must be a positive integer. Received: keep={keep!r}")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq, self.save_every_seconds = save_freq, save_every_seconds
        self.keep, self.delete_checkpoint = int(keep), bool(delete_checkpoint)
        self.verbose = verbose
        self.restored_from = None   # path of the checkpoint the last fit resumed from
        self.last_checkpoint = None
        self._pending = None

    # -- hooks ----------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        trainer = self.model.require_compiled()
        self._steps = self.params.get("steps") or 0
        self._last_saved, self._last_global = None, None
        self._last_time = time.monotonic()
        self.restored_from, self._pending = None, None
        if _is_chief():  # every process reads the latest checkpoint; only one locks and tidies
            checkpoint.acquire_lock(self.backup_dir)   # a second trainer stops here
            checkpoint.cleanup(self.backup_dir)
        ckpt = checkpoint.latest(self.backup_dir, steps=self._steps or None)
        if ckpt is not None:
            self._restore(trainer, ckpt)

    def _setup(self, trainer):
        return checkpoint.setup_of(trainer, batch_size=self.params.get("batch_size"),
                                   samples=self.params.get("samples"))

    def _restore(self, trainer, ckpt):
        checkpoint.check_compatible(ckpt, self._setup(trainer))
        checkpoint.restore_state(trainer, ckpt)
        meta = ckpt.meta
        trainer.seed, trainer.fit_calls = int(meta["seed"]), int(meta["fit_calls"])
        epoch, step = ckpt.position
        if meta.get("stopped"):   # EarlyStopping had ended that run: don't train further
            epoch, step = max(epoch, self.params.get("epochs", epoch)), 0
        trainer.resume_point = trainer.position = (epoch, step)
        self._pending = ckpt
        self._last_saved = (epoch, step)
        self._last_global = epoch * self._steps + step
        self.restored_from = ckpt.path
        if self.verbose:
            print(f"BackupAndRestore: resuming from {ckpt.path} (epoch {epoch + 1}, step "
                  f"{step}).", file=sys.stderr)

    def after_train_begin(self, callbacks):
        """All on_train_begin hooks have run: now restore the other callbacks' state."""
        ckpt, self._pending = self._pending, None
        if ckpt is None:
            return
        states, arrays = ckpt.meta.get("callbacks", {}), ckpt.meta.get("callback_arrays", {})
        for key, cb in _stateful(callbacks, self).items():
            if key in states:
                cb.set_state(states[key])
            if key in arrays:
                cb.best_weights = [ckpt.tensors[f"callbacks/{key}/best_weights/{i}"]
                                   for i in range(arrays[key])]

    def on_epoch_begin(self, epoch, logs=None):
        if self._last_global is None:
            self._last_global = epoch * self._steps

    def at_safe_point(self, callbacks):
        trainer = self.model.compiled
        epoch, step = trainer.position
        self._maybe_save(callbacks, epoch, step)

    def steps_until_needed(self):
        """With save_freq=N, the steps until the next save is due (the chunk ends there)."""
        trainer = self.model.compiled if self.model is not None else None
        if self.save_freq == "epoch" or trainer is None:
            return None
        epoch, step = getattr(trainer, "position", None) or (0, 0)   # (0, 0): none run yet
        last = self._last_global if self._last_global is not None else epoch * self._steps
        return max(1, self.save_freq - (epoch * self._steps + step - last))

    def _maybe_save(self, callbacks, epoch, step):
        if self._steps and step >= self._steps:
            return  # the epoch-end safe point follows, with the callbacks' epoch-end state
        if self.model.stop_training or (step == 0 and epoch >= self.params.get("epochs", 0)):
            if not self.delete_checkpoint:
                self._save(callbacks)   # training ends: keep its final state
            return
        since = epoch * self._steps + step - (self._last_global or 0)
        due = ((self.save_freq == "epoch" and step == 0)
               or (self.save_freq != "epoch" and since >= self.save_freq)
               or (self.save_every_seconds is not None
                   and time.monotonic() - self._last_time >= self.save_every_seconds))
        if due:
            self._save(callbacks)

    def on_interrupt(self, callbacks, signum):
        return self._save(callbacks) or self.last_checkpoint

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and _is_chief():
            checkpoint.remove_all(self.backup_dir)   # releases the lock too
        elif _is_chief():
            checkpoint.release_lock(self.backup_dir)

    def after_fit(self):
        """fit() ended, also by an error: the folder is free for another process (the lock
        is this process's; on_train_end, which an error skips, releases it too)."""
        if _is_chief():
            checkpoint.release_lock(self.backup_dir)

    # -- writing ------------------------------------------------------------------------------
    def _save(self, callbacks):
        trainer = self.model.compiled
        epoch, step = position = tuple(int(v) for v in trainer.position)
        if position == self._last_saved or not _is_chief():
            return self.last_checkpoint
        tensors = checkpoint.capture_state(trainer)
        states, arrays = {}, {}
        for key, cb in _stateful(callbacks, self).items():
            states[key] = cb.get_state()
            best = getattr(cb, "best_weights", None)
            if isinstance(best, list):
                arrays[key] = len(best)
                tensors.update({f"callbacks/{key}/best_weights/{i}": np.asarray(a)
                                for i, a in enumerate(best)})
        bad = _tree.nonfinite(tensors)
        if bad:
            warnings.warn(f"BackupAndRestore: no checkpoint written at epoch {epoch + 1}, step "
                          f"{step}: the training state holds NaN or infinity (in {bad[:3]}). "
                          "The last checkpoint is kept.", stacklevel=2)
            return None
        meta = {"position": [epoch, step], "seed": int(trainer.seed),
                "fit_calls": int(trainer.fit_calls), "epochs": self.params.get("epochs"),
                "stopped": bool(self.model.stop_training), "setup": self._setup(trainer),
                "callbacks": states, "callback_arrays": arrays}
        self.last_checkpoint = checkpoint.write(self.backup_dir, meta, tensors, keep=self.keep)
        self._last_saved, self._last_time = position, time.monotonic()
        self._last_global = epoch * self._steps + step
        return self.last_checkpoint


class ModelCheckpoint(Callback):
    """Save the model (or its weights) during training, as Keras's ModelCheckpoint.

    filepath may hold placeholders filled from the epoch (1-based) and the logs, e.g.
    "ckpt/model-{epoch:02d}-{val_loss:.2f}.kilnet". With save_best_only, the file is written
    only when `monitor` improves; `best` is part of BackupAndRestore's checkpoints, so a resumed
    run never overwrites the best file with a worse model. Files are written atomically; a
    model whose weights or optimizer state hold NaN or infinity is never written: that save is
    skipped with a warning and training goes on.
    """

    chunk_batch_hooks = True   # its batch hooks read the chunk's end (kilnet.callbacks)

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None):
        super().__init__()
        if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
            raise ValueError(f"filepath must be a file path. Received: filepath={filepath!r}")
        if save_freq != "epoch" and not _positive_int(save_freq, "save_freq"):
            raise ValueError("save_freq must be 'epoch' or a positive number of steps. "
                             f"Received: save_freq={save_freq!r}")
        self.filepath = os.fspath(filepath)
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = bool(save_best_only), bool(save_weights_only)
        self.mode = monitor_mode(monitor, mode)
        self.save_freq = save_freq
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self._steps_since = 0
        self._last_position = None

    def get_state(self) -> dict:
        return {"best": self.best, "steps_since": self._steps_since}

    def set_state(self, state: dict) -> None:
        self.best, self._steps_since = float(state["best"]), int(state["steps_since"])

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        trainer = self.model.compiled
        epoch, step = trainer.position
        previous = self._last_position
        self._steps_since += step - (previous[1] if previous and previous[0] == epoch else 0)
        self._last_position = (epoch, step)
        if self._steps_since >= self.save_freq:
            self._steps_since = 0
            self._save(epoch, batch, logs)

    def steps_until_needed(self):
        """With save_freq=N, the steps until the next save (the chunk ends there, so a save
        lands after every N steps exactly, as Keras's)."""
        return None if self.save_freq == "epoch" else max(1, self.save_freq - self._steps_since)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _improved(self, current):
        return current < self.best if self.mode == "min" else current > self.best

    def _save(self, epoch, batch, logs):
        if not _is_chief():
            return
        logs = dict(logs or {})
        try:
            # 1-based, as Keras fills {epoch} and {batch}
            path = self.filepath.format(epoch=epoch + 1,
                                        batch=None if batch is None else batch + 1, **logs)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"ModelCheckpoint cannot fill in filepath={self.filepath!r}: "
                             f"{error!r} is not available. Placeholders may use epoch, batch "
                             f"and the logs: {sorted(logs)}.") from None
        current = logs.get(self.monitor)
        if self.save_best_only:
            if current is None:
                warnings.warn(f"ModelCheckpoint can save the best model only when "
                              f"'{self.monitor}' is in the logs; available: {sorted(logs)}. "
                              "Skipping.", stacklevel=2)
                return
            if not math.isfinite(current) or not self._improved(current):
                if self.verbose:
                    print(f"Epoch {epoch + 1}: {self.monitor} did not improve from "
                          f"{self.best:.5f}")
                return
        bad = saving.nonfinite_arrays(self.model,
                                      include_optimizer=not self.save_weights_only)
        if bad:   # what model.save would refuse: skip this save, never end the training
            warnings.warn(f"ModelCheckpoint: not writing {path}: the model holds NaN or "
                          f"infinity (in {bad[:3]}). The previous file is kept.", stacklevel=2)
            return
        if self.verbose:
            told = (f"{self.monitor} improved from {self.best:.5f} to {current:.5f}, "
                    if self.save_best_only else "")
            print(f"Epoch {epoch + 1}: {told}saving model to {path}")
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        try:
            if self.save_weights_only:
                self.model.save_weights(path)
            else:
                self.model.save(path)
        except saving.NonFiniteSaveError as error:   # a format's own check found more
            warnings.warn(f"ModelCheckpoint: not writing {path}: {error}", stacklevel=2)
            return
        if self.save_best_only:
            self.best = current
