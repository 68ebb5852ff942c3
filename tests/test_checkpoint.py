"""Training checkpoints: atomic commits, exact resume after kill -9 / SIGTERM / SIGINT, state of
callbacks across a resume, refusals of mismatched resumes, write failures.

The process tests run tests/_resume_worker.py: a tiny model (Dense, Dropout, BatchNorm, Dense)
trained with shuffling on 60 samples, checkpointing every 3 steps. Their final weights must be
bitwise equal to an uninterrupted run's.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import kilnet
from kilnet import checkpoint
from kilnet.callbacks import BackupAndRestore, Callback, EarlyStopping, ModelCheckpoint
from kilnet.errors import CheckpointMismatchError, NonFiniteError, SaveError

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "_resume_worker.py")
sys.path.insert(0, HERE)
import _resume_worker as worker  # noqa: E402

KILLS = 20


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(checkpoint._safefile.PAUSE_ENV, None)
    return env


def _weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def _assert_bitwise(path, reference):
    got = _weights(path)
    assert len(got) == len(reference)
    for a, b in zip(got, reference):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


class Lines:
    """A process's output lines, read by a thread (select() can't see Python's buffer)."""

    def __init__(self, stream):
        self.queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream):
        for line in stream:
            self.queue.put(line.strip())

    def next(self, timeout=60.0):
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the worker said nothing for a minute") from None


@pytest.fixture(scope="module")
def reference(made_once_per_run):
    """Final weights of an uninterrupted run (no BackupAndRestore at all), run once in a test
    run."""
    def run(out):
        subprocess.run([sys.executable, WORKER, str(out)], check=True, env=_env(), timeout=120,
                       capture_output=True)
    return _weights(str(made_once_per_run("checkpoint_reference.npz", run)))


class Server:
    """tests/_resume_worker.py --serve: forks one training child per request."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, WORKER, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=_env())
        self.lines = Lines(self.proc.stdout)
        assert self.lines.next() == "serving"

    def start(self, **kwargs):
        self.proc.stdin.write(json.dumps(kwargs) + "\n")
        self.proc.stdin.flush()
        kind, pid = self.lines.next().split()
        assert kind == "child"
        return int(pid)

    def lines_until_exit(self):
        lines = []
        while True:
            line = self.lines.next()
            if line.startswith("exit "):
                return lines, int(line.split()[2])
            lines.append(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    server = Server()
    yield server
    server.close()


def _latest_position(backup):
    ckpt = checkpoint.latest(backup)
    return (0, 0) if ckpt is None else ckpt.position


# -- kill -9 --------------------------------------------------------------------------------------
def test_kill_9_at_random_moments_resumes_bitwise(tmp_path, reference, server):
    backup, out = str(tmp_path / "backup"), str(tmp_path / "out.npz")
    rng = random.Random(20240611)
    kills = in_write = completed = 0
    while kills < KILLS:
        expected = _latest_position(backup)   # what the next run must resume from
        # Writers pause 10 ms between files, so that kills land inside writes too.
        pid = server.start(out=out, backup=backup, pause=0.01, write_pause=0.01)
        ready = server.lines.next().split()
        assert ready[0] == "ready", ready
        assert (int(ready[1]), int(ready[2])) == expected
        time.sleep(rng.uniform(0.0, 0.35))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        lines, code = server.lines_until_exit()
        if code == -signal.SIGKILL:
            kills += 1
            in_write += any(n.startswith(checkpoint.TMP_PREFIX)
                            for n in (os.listdir(backup) if os.path.isdir(backup) else []))
            # Whatever the moment, the newest committed checkpoint loads.
            for _, path in checkpoint.committed(backup)[-1:]:
                checkpoint.load(path)
        else:   # it finished before the kill: exact, and its backups are gone
            assert code == 0 and "done" in lines
            _assert_bitwise(out, reference)
            assert checkpoint.committed(backup) == []
            completed += 1
    server.start(out=out, backup=backup)
    lines, code = server.lines_until_exit()
    assert code == 0 and "done" in lines
    _assert_bitwise(out, reference)
    print(f"\nkill -9: {kills} kills survived ({in_write} inside a checkpoint write), "
          f"{completed + 1} runs completed, all bitwise equal to the uninterrupted run")


# -- SIGTERM / SIGINT -----------------------------------------------------------------------------
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_exits_and_resumes_bitwise(tmp_path, reference, server, signum,
                                                      code):
    backup, out = str(tmp_path / "backup"), str(tmp_path / "out.npz")
    proc = subprocess.Popen([sys.executable, WORKER, out, "--backup", backup, "--pause", "0.05"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    assert proc.stdout.readline().startswith("ready")
    time.sleep(0.3)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    assert "To resume, run the same training again" in stderr
    ckpt = checkpoint.latest(backup)
    assert ckpt is not None and ckpt.path in stderr
    server.start(out=out, backup=backup)
    lines, code = server.lines_until_exit()
    assert code == 0 and lines == [f"ready {ckpt.position[0]} {ckpt.position[1]}", "done"]
    _assert_bitwise(out, reference)


def _writing(backup):
    return os.path.isdir(backup) and any(n.startswith(checkpoint.TMP_PREFIX)
                                         for n in os.listdir(backup))


def test_second_sigint_exits_at_once_and_keeps_the_last_checkpoint(tmp_path, reference, server):
    backup, out = str(tmp_path / "backup"), str(tmp_path / "out.npz")
    pid = server.start(out=out, backup=backup, pause=0.05)   # 1. a committed checkpoint
    assert server.lines.next().startswith("ready")
    time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    assert server.lines_until_exit()[1] == 143
    committed = checkpoint.committed(backup)
    # 2. Rerun without periodic saves and with slow writes (0.25 s a file): the first SIGINT
    # starts the interrupt's checkpoint, the second lands inside that write.
    pid = server.start(out=out, backup=backup, pause=0.3, save_freq=1000, write_pause=0.25)
    assert server.lines.next().startswith("ready")
    time.sleep(0.1)
    os.kill(pid, signal.SIGINT)
    for _ in range(1000):
        if _writing(backup):
            break
        time.sleep(0.01)
    os.kill(pid, signal.SIGINT)
    _, code = server.lines_until_exit()
    assert code == -signal.SIGINT   # the default action: terminated at once, inside the write
    assert _writing(backup)         # ... which stays uncommitted
    assert checkpoint.committed(backup) == committed
    checkpoint.load(committed[-1][1])
    server.start(out=out, backup=backup)   # 3. resumes from the last committed checkpoint
    lines, code = server.lines_until_exit()
    assert code == 0 and "done" in lines
    _assert_bitwise(out, reference)


def test_signal_handlers_are_restored_after_fit():
    (x, y), _ = worker.data()
    model = worker.build()
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    model.fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


# -- in-process resumes ---------------------------------------------------------------------------
class Crash(Callback):
    """Simulates the process dying when epoch `at` begins."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("crash")


def _fit(model, callbacks, epochs=4, batch_size=6, samples=None):
    (x, y), val = worker.data()
    if samples:
        x, y = x[:samples], y[:samples]
    return model.fit(x, y, batch_size=batch_size, epochs=epochs, validation_data=val,
                     verbose=0, callbacks=callbacks)


def test_uncommitted_and_temporary_directories_are_ignored_and_removed(tmp_path):
    backup = tmp_path / "b"
    model = worker.build()
    with pytest.raises(RuntimeError, match="crash"):
        _fit(model, [BackupAndRestore(str(backup), keep=2), Crash(3)])
    assert [os.path.basename(p) for _, p in checkpoint.committed(backup)] == [
        "ckpt-epoch000002-step00000000", "ckpt-epoch000003-step00000000"]
    os.makedirs(backup / "ckpt-00000009")                 # renamed but no COMMIT
    (backup / "ckpt-00000009" / "state.safetensors").write_bytes(b"garbage")
    os.makedirs(backup / ".tmp-ckpt-abc")                  # an interrupted write
    assert checkpoint.latest(backup).position == (3, 0)
    restorer = BackupAndRestore(str(backup))
    model = worker.build()
    _fit(model, [restorer, Crash(10)])
    assert restorer.restored_from.endswith("ckpt-epoch000003-step00000000")
    assert not backup.exists()   # completed: backups deleted, as Keras does


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    backup = tmp_path / "b"
    with pytest.raises(RuntimeError):
        _fit(worker.build(), [BackupAndRestore(str(backup)), Crash(2)])
    path = checkpoint.committed(backup)[-1][1]
    data = bytearray(open(os.path.join(path, "state.safetensors"), "rb").read())
    data[-3] ^= 0x10
    open(os.path.join(path, "state.safetensors"), "wb").write(bytes(data))
    with pytest.warns(UserWarning, match="Skipping a damaged checkpoint"):
        assert checkpoint.latest(backup).position == (1, 0)


def test_mid_epoch_checkpoints_and_keep(tmp_path):
    backup = tmp_path / "b"
    with pytest.raises(RuntimeError):
        _fit(worker.build(), [BackupAndRestore(str(backup), save_freq=4, keep=3), Crash(2)])
    positions = [checkpoint.load(p).position for _, p in checkpoint.committed(backup)]
    assert positions == [(1, 2), (1, 6), (2, 0)]   # 10 steps/epoch, every 4 steps


@pytest.fixture(scope="module")
def one_epoch_backup(tmp_path_factory):
    backup = str(tmp_path_factory.mktemp("one_epoch") / "b")
    with pytest.raises(RuntimeError):
        _fit(worker.build(), [BackupAndRestore(backup), Crash(1)])
    return backup


@pytest.mark.parametrize("change, message", [
    (dict(units=16), "model architecture differs .*units: the checkpoint has 12, this run has 16"),
    (dict(optimizer="sgd"), "optimizer differs"),
    (dict(batch_size=5), "batch size differs .*6.* 5"),
    (dict(samples=54), r"number of training samples \(data size\) differs"),
])
def test_mismatched_resume_is_refused(tmp_path, one_epoch_backup, change, message):
    backup = shutil.copytree(one_epoch_backup, tmp_path / "b")
    model = worker.build(units=change.get("units", 12), optimizer=change.get("optimizer", "adam"))
    with pytest.raises(CheckpointMismatchError, match=message):
        _fit(model, [BackupAndRestore(str(backup))], batch_size=change.get("batch_size", 6),
             samples=change.get("samples"))
    assert checkpoint.latest(backup).position == (1, 0)   # refused, and left as it was


def _overfitting_model():
    """The worker's model with 32 units and Adam at 0.01: on the worker's data its validation
    loss falls to its lowest, then rises: over five weight draws the lowest came at epochs 9 to
    14, and EarlyStopping (patience 2, from epoch 3) stopped at epochs 11 to 16."""
    return worker.build(units=32, optimizer=kilnet.optimizers.Adam(0.01))


def test_early_stopping_state_survives_a_resume(tmp_path):
    def run(callbacks):
        model = _overfitting_model()
        stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True,
                                start_from_epoch=3)
        history = _fit(model, callbacks + [stopper], epochs=40)
        return model, stopper, history

    ref_model, ref_stop, ref_history = run([])
    assert 3 < ref_stop.stopped_epoch < 39, "the reference must stop early"
    crash_at = ref_stop.stopped_epoch - 1   # after the best epoch, while waiting
    backup = str(tmp_path / "b")
    with pytest.raises(RuntimeError):
        run([BackupAndRestore(backup), Crash(crash_at)])
    model, stopper, history = run([BackupAndRestore(backup)])
    assert history.epoch[0] == crash_at
    assert (stopper.stopped_epoch, stopper.best_epoch, stopper.best) == (
        ref_stop.stopped_epoch, ref_stop.best_epoch, ref_stop.best)
    for a, b in zip(model.get_weights(), ref_model.get_weights()):
        assert a.tobytes() == b.tobytes()


def test_model_checkpoint_best_is_not_overwritten_after_a_restart(tmp_path):
    def run(folder, callbacks, epochs=20):
        model = _overfitting_model()
        keeper = ModelCheckpoint(str(folder / "best.kilnet"), monitor="val_loss",
                                 save_best_only=True)
        history = _fit(model, callbacks + [keeper], epochs=epochs)
        return keeper, history

    ref_keeper, ref_history = run(tmp_path / "ref", [])
    losses = ref_history.history["val_loss"]
    best_epoch = int(np.argmin(losses))
    later_worse = [e for e in range(1, len(losses)) if losses[e] > min(losses[:e])]
    assert later_worse, "the reference run needs an epoch that is worse than an earlier one"
    crash_at = later_worse[0]
    backup = str(tmp_path / "b")
    with pytest.raises(RuntimeError):
        run(tmp_path / "run", [BackupAndRestore(backup), Crash(crash_at)])
    keeper, _ = run(tmp_path / "run", [BackupAndRestore(backup)])
    assert keeper.best == ref_keeper.best == losses[best_epoch]
    got = kilnet.models.load_model(tmp_path / "run" / "best.kilnet").get_weights()
    want = kilnet.models.load_model(tmp_path / "ref" / "best.kilnet").get_weights()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got, want))


def test_model_checkpoint_fills_in_placeholders(tmp_path):
    model = worker.build()
    _fit(model, [ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.2f}.kilnet"),
                                 save_weights_only=True)], epochs=2)
    names = sorted(os.listdir(tmp_path))
    assert [n[:5] for n in names] == ["m-01-", "m-02-"] and all(n.endswith(".kilnet")
                                                               for n in names)
    with pytest.raises(ValueError, match="'nope'"):
        _fit(worker.build(), [ModelCheckpoint(str(tmp_path / "{nope}.kilnet"))], epochs=1)


# -- never a bad checkpoint -----------------------------------------------------------------------
class Poison(Callback):
    def on_epoch_end(self, epoch, logs=None):
        weights = self.model.get_weights()
        weights[0] = np.full_like(weights[0], np.nan)
        self.model.set_weights(weights)


def test_non_finite_state_is_never_checkpointed(tmp_path):
    backup = tmp_path / "b"
    with pytest.warns(UserWarning, match="no checkpoint written"):
        with pytest.raises(NonFiniteError):
            _fit(worker.build(), [BackupAndRestore(str(backup)), Poison()])
    assert checkpoint.committed(backup) == []


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    backup = tmp_path / "b"
    real_fsync = os.fsync

    class FillDisk(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                monkeypatch.setattr(os, "fsync", full)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(SaveError, match="No space left on device.*previous checkpoints are "
                                        "unchanged") as info:
        _fit(worker.build(), [BackupAndRestore(str(backup)), FillDisk()])
    assert info.value.errno == errno.ENOSPC
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert [n for n in os.listdir(backup) if not n.startswith("ckpt-") and n != "LOCK"] == []
    assert checkpoint.latest(backup).position == (1, 0)


class ShortChunks(Callback):
    def steps_until_needed(self):
        return 2   # the trainer ends chunks after 2 steps


def test_save_every_seconds(tmp_path):
    backup = tmp_path / "b"
    with pytest.raises(RuntimeError):
        _fit(worker.build(), [ShortChunks(), Crash(1),
                              BackupAndRestore(str(backup), save_every_seconds=1e-9, keep=9)])
    positions = [checkpoint.load(p).position for _, p in checkpoint.committed(backup)]
    assert positions == [(0, 2), (0, 4), (0, 6), (0, 8), (1, 0)]   # every chunk end


def test_completed_run_deletes_its_backups_unless_asked_to_keep(tmp_path):
    _fit(worker.build(), [BackupAndRestore(str(tmp_path / "a"))], epochs=2)
    assert not (tmp_path / "a").exists()
    _fit(worker.build(), [BackupAndRestore(str(tmp_path / "k"), delete_checkpoint=False)],
         epochs=2)
    assert checkpoint.latest(tmp_path / "k").position == (2, 0)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore("d", save_freq=0)
    with pytest.raises(ValueError, match="keep"):
        BackupAndRestore("d", keep=0)
    with pytest.raises(ValueError, match="save_every_seconds"):
        BackupAndRestore("d", save_every_seconds=-1)
    with pytest.raises(ValueError, match="mode"):
        ModelCheckpoint("f", mode="sideways")



def _every_ten_steps(lib, folder):
    """Keras's training guide's ModelCheckpoint(save_freq=N), on 63 steps of one epoch."""
    rng = np.random.default_rng(0)
    x, y = rng.random((2000, 8), dtype=np.float32), rng.integers(0, 10, 2000)
    model = lib.Sequential([lib.Input((8,)), lib.layers.Dense(10, activation="softmax")])
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    saver = lib.callbacks.ModelCheckpoint(str(folder / "model-{epoch}-{batch}.weights.h5"),
                                          save_weights_only=True, save_freq=10)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[saver])
    return sorted(os.listdir(folder), key=lambda name: (len(name), name))


def test_model_checkpoint_saves_every_n_steps_with_keras_names(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras", reason="the reference is Keras's callback")
    ours = _every_ten_steps(kilnet, tmp_path / "ours")
    theirs = _every_ten_steps(keras, tmp_path / "theirs")
    assert ours == theirs == [f"model-1-{n}.weights.h5" for n in (10, 20, 30, 40, 50, 60)]


def test_callback_list_takes_keras_arguments():
    model = worker.build()
    seen = Callback()
    callbacks = kilnet.callbacks.CallbackList([seen], add_history=True, model=model, epochs=3,
                                              steps=7)
    assert [type(cb).__name__ for cb in callbacks.callbacks] == ["Callback", "History"]
    assert seen.model is model and seen.params == {"epochs": 3, "steps": 7}
