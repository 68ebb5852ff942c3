"""The Callback contract, CallbackList, History, LambdaCallback and TerminateOnNaN.

Callbacks have Keras's hooks and semantics. Hooks run on the host between compiled chunks
(several batches run as one compiled program). The training batch hooks of your callbacks fire
for every batch, as Keras's do (CallbackList.batch_hooks_mode):
- a callback with an `on_train_batch_end` / `on_batch_end` only (a loss recorder) is called for
  each batch of a chunk after the chunk has run, with that batch's logs (the epoch's running
  means after it, recorded by the chunk), so training keeps its speed;
- a callback with an `on_train_batch_begin` / `on_batch_begin` (one that acts before a batch)
  makes every chunk one batch long, so each hook runs between exactly those batches.
kilnet's own callbacks written for chunks (`chunk_batch_hooks`) get one call per chunk: begin
with the chunk's first batch, end with its last batch and its logs, as Keras's hooks with
compile(steps_per_execution=N). `on_test_batch_*` and `on_predict_batch_*` fire once per
evaluated or predicted block (kilnet.fit)."""

from __future__ import annotations

import math

from kilnet import _step_logs

# Every hook a callback can have, as Keras names them.
HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_batch_begin", "on_batch_end",
         "on_train_batch_begin", "on_train_batch_end",
         "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
         "on_predict_begin", "on_predict_end", "on_predict_batch_begin",
         "on_predict_batch_end")


class Callback:
    """The base of every callback: Keras's hooks, each a no-op to override.

    `self.model` is the model being trained, evaluated or predicted with; `self.params` holds
    Keras's parameters ("epochs", "steps", "verbose"). `on_train_batch_begin` / `_end` call
    `on_batch_begin` / `_end` by default, as in Keras."""

    # True for a callback whose training batch hooks are written for kilnet's chunks: called
    # once per chunk with its last batch, they never make fit report each batch
    chunk_batch_hooks = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...

    def steps_until_needed(self):
        """kilnet's one addition to the contract: how many more training steps may run before
        this callback needs its `on_train_batch_end` (a save due every N steps), or None for no
        such need. fit() ends each compiled chunk at the nearest one, so a hook due at step N
        runs after step N exactly. Default: None."""
        return None


def _overrides(callback, hook: str) -> bool:
    """Whether `callback` does something in `hook` (its class, or the instance, replaces the
    base no-op; the train batch hooks also count an on_batch_* override)."""
    if hook in vars(callback):  # set on the instance (LambdaCallback)
        return True
    if getattr(type(callback), hook) is not getattr(Callback, hook):
        return True
    alias = {"on_train_batch_begin": "on_batch_begin",
             "on_train_batch_end": "on_batch_end"}.get(hook)
    return alias is not None and _overrides(callback, alias)


class CallbackList(Callback):
    """Calls each hook on every callback, in list order. Logs given as None reach the callbacks
    as {}, as in Keras; the same logs dict is passed to all, so a callback sees what the ones
    before it added."""

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        """Keras's signature: the callbacks, whether to append a History (`add_history`; a
        progress bar is kilnet's fit's own, so `add_progbar` adds none), the model, and the
        params every callback gets ("epochs", "steps", "verbose")."""
        super().__init__()
        self.callbacks = list(callbacks or [])
        if add_history and not any(isinstance(cb, History) for cb in self.callbacks):
            self.callbacks.append(History())
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError("callbacks must be kilnet.callbacks.Callback objects. "
                                f"Received: {cb!r}")
        self.set_model(model)
        self.set_params(params)

    def set_model(self, model):
        self.model = model
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params):
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def steps_until_needed(self):
        """The fewest steps any callback lets run before it needs a batch hook, or None."""
        needs = [n for n in (cb.steps_until_needed() for cb in self.callbacks) if n is not None]
        return max(1, min(needs)) if needs else None

    def batch_hooks_mode(self) -> str:
        """How fit calls the training batch hooks (see the module's docstring): "exact" (one
        batch per chunk) when a callback of yours acts before a batch, "each" (every batch,
        after its chunk) when one reads the batches' ends, else "chunk"."""
        yours = [cb for cb in self.callbacks if not cb.chunk_batch_hooks]
        if any(_overrides(cb, "on_train_batch_begin") for cb in yours):
            return "exact"
        if any(_overrides(cb, "on_train_batch_end") for cb in yours):
            return "each"
        return "chunk"

    def reads_each_batch(self, kind: str) -> bool:
        """Whether a callback of yours (not written for chunks) has batch hooks of `kind`
        ("test", "predict"): evaluate and predict then run one batch per call, so that each
        batch gets its hooks, as in Keras."""
        return any(not cb.chunk_batch_hooks and (_overrides(cb, f"on_{kind}_batch_begin")
                                                 or _overrides(cb, f"on_{kind}_batch_end"))
                   for cb in self.callbacks)

    def on_batch_of_chunk(self, batch: int, logs: dict):
        """A batch of a chunk that has run ("each" mode): its begin and end hooks, the end
        with that batch's logs, on the callbacks not written for chunks."""
        _sorted_in_place(logs)
        for cb in self.callbacks:
            if not cb.chunk_batch_hooks:
                cb.on_train_batch_begin(batch, {})
                cb.on_train_batch_end(batch, logs)

    def on_chunk_end(self, batch: int, logs: dict):
        """The end hook of a chunk's last batch on the callbacks written for chunks ("each"
        mode, where the others had theirs from on_batch_of_chunk)."""
        _sorted_in_place(logs)
        for cb in self.callbacks:
            if cb.chunk_batch_hooks:
                cb.on_train_batch_end(batch, logs)

    def overrides(self, hook: str) -> bool:
        """Whether any callback does something in `hook`: the loops skip work (a host sync for
        batch logs) that no callback would see."""
        return any(_overrides(cb, hook) for cb in self.callbacks)

    def _call(self, hook, *args, logs=None):
        logs = _sorted_in_place({} if logs is None else logs)
        for cb in self.callbacks:
            getattr(cb, hook)(*args, logs)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs=logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs=logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs=logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs=logs)
    def on_batch_begin(self, batch, logs=None): self._call("on_batch_begin", batch, logs=logs)
    def on_batch_end(self, batch, logs=None): self._call("on_batch_end", batch, logs=logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, logs=logs)

    def on_test_begin(self, logs=None): self._call("on_test_begin", logs=logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs=logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, logs=logs)

    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs=logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs=logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs=logs)


def _sorted_in_place(logs: dict) -> dict:
    """`logs` with its keys in sorted order, as Keras hands logs to every callback (History's
    keys read "accuracy", "loss", "val_accuracy", ...; a model's own step's logs as Keras
    flattens them, see kilnet._step_logs). The same dict, reordered: the caller keeps the one
    callbacks write into (a rate a callback logs reaches the progress line)."""
    ordered = _step_logs.keras_sorted(logs)
    logs.clear()
    logs.update(ordered)
    return logs


class History(Callback):
    """Per-epoch logs: `history.history["loss"]` is a list with one value per epoch."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        # Like Keras, a History object collects the epochs of one fit call.
        self.history, self.epoch = {}, []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(value)

    def plateau(self, **thresholds):
        from kilnet.insight import analyze_plateau
        return analyze_plateau(self.history, **thresholds)


class LambdaCallback(Callback):
    """A callback made of functions, as Keras's: each argument names a hook
    (on_epoch_end=lambda epoch, logs: ...); any hook of Callback can be given by keyword."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 **kwargs):
        super().__init__()
        unknown = sorted(set(kwargs) - set(HOOKS))
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks: {unknown}. The hooks are: "
                            f"{', '.join(HOOKS)}.")
        hooks = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                 "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end, **kwargs}
        for hook, fn in hooks.items():
            if fn is not None:
                setattr(self, hook, fn)


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite (checked at chunk ends)."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Batch {batch}: invalid loss, terminating training")
            self.model.stop_training = True
