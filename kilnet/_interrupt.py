"""SIGINT/SIGTERM during fit(), and the safe points where callbacks may write checkpoints.

fit() installs a SignalGuard for its duration (main thread only; the previous handlers are put
back after). The first SIGINT or SIGTERM only sets a flag: the chunk in flight finishes, and at
the next safe point callbacks that define `on_interrupt(callbacks, signum)` (BackupAndRestore)
write a checkpoint, a message says how to resume, and TrainingInterrupted (a SystemExit with
code 130 or 143) ends fit. After the first signal the handlers are reset to the default
action, so a second one terminates the process at once; a checkpoint being written then is
left uncommitted and ignored (kilnet/checkpoint.py), never half-committed.

Safe points are the moments when every callback has seen the same training position: after
all `on_train_batch_end` hooks of a chunk, and after all `on_epoch_end` hooks. Callbacks that
define `at_safe_point(callbacks)` are called there; `after_train_begin(callbacks)` is called
once all `on_train_begin` hooks have run (where restored callback state is applied, so no
callback's own on_train_begin reset can undo it).
"""

from __future__ import annotations

import signal
import sys
import threading

import jax

from kilnet import distribution
from kilnet.errors import TrainingInterrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    def __init__(self):
        self.signum = None          # the first signal received, if any
        self.handled = False
        self._previous = {}

    def install(self) -> "SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in SIGNALS:
            previous = signal.getsignal(signum)
            if previous is None or previous == signal.SIG_IGN:
                continue  # installed outside Python, or deliberately ignored: leave it
            self._previous[signum] = previous
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:
            return
        self.signum = signum
        for other in self._previous:  # a second signal acts at once
            signal.signal(other, signal.SIG_DFL)
        print(f"\nkilnet: {signal.Signals(signum).name} received; stopping after the current "
              "chunk (send it again to stop at once).", file=sys.stderr, flush=True)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
        if self.signum is not None and not self.handled:
            # Arrived after the last safe point: deliver it to the restored handler.
            self.handled = True
            signal.raise_signal(self.signum)


def install(trainer) -> SignalGuard:
    trainer.signal_guard = SignalGuard().install()
    return trainer.signal_guard


def uninstall(trainer) -> None:
    guard = getattr(trainer, "signal_guard", None)
    trainer.signal_guard = None
    if guard is not None:
        guard.restore()


def after_train_begin(cb_list) -> None:
    for cb in cb_list.callbacks:
        hook = getattr(cb, "after_train_begin", None)
        if hook is not None:
            hook(cb_list.callbacks)


def after_fit(cb_list) -> None:
    """Whatever way fit() ends (done, stopped by an error or a signal): callbacks give back
    what they hold for the run (BackupAndRestore's lock on its folder)."""
    for cb in cb_list.callbacks:
        hook = getattr(cb, "after_fit", None)
        if hook is not None:
            hook()


def safe_point(trainer, cb_list) -> None:
    """Let callbacks checkpoint; then, if a signal arrived, checkpoint and stop."""
    callbacks = cb_list.callbacks
    for cb in callbacks:
        hook = getattr(cb, "at_safe_point", None)
        if hook is not None:
            hook(callbacks)
    guard = getattr(trainer, "signal_guard", None)
    signalled = guard is not None and guard.signum is not None
    if jax.process_count() > 1:
        # All processes stop together, or the others would wait in the next collective.
        signalled = distribution.any_process(signalled)
        if signalled and guard is not None and guard.signum is None:
            guard.signum = signal.SIGTERM  # another process was signalled
    if not signalled or guard is None:
        return
    guard.handled = True
    saved = [path for cb in callbacks if hasattr(cb, "on_interrupt")
             for path in [cb.on_interrupt(callbacks, guard.signum)] if path]
    name = signal.Signals(guard.signum).name
    epoch, step = getattr(trainer, "position", None) or (0, 0)
    where = f"epoch {epoch + 1}, step {step}" if step else f"the end of epoch {epoch}"
    if saved:
        message = (f"kilnet: training stopped by {name} at {where}. Checkpoint written: "
                   f"{saved[-1]}\nTo resume, run the same training again (with the same "
                   "BackupAndRestore backup_dir): it continues from this checkpoint.")
    else:
        message = (f"kilnet: training stopped by {name} at {where}. No checkpoint was "
                   "written: add kilnet.callbacks.BackupAndRestore(backup_dir) to the callbacks "
                   "to be able to resume an interrupted run.")
    print(message, file=sys.stderr, flush=True)
    raise TrainingInterrupted(guard.signum, message, saved[-1] if saved else None)
