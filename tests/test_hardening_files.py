"""Hostile and careless files (issue 14): names that save must load, checkpoints parsed strictly
and locked to one trainer, callbacks that save never crash fit, and loaders that neither stall
on FIFOs nor allocate what a tiny file asks for, nor accept NaN or out-of-range values."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kilnet
from kilnet import _safefile, checkpoint
from kilnet.callbacks import BackupAndRestore, ModelCheckpoint
from kilnet.errors import ModelFileError

sys.path.insert(0, os.path.dirname(__file__))
import _resume_worker as worker  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(name="dense"):
    inputs = kilnet.Input(shape=(3,), name="x")
    model = kilnet.Model(inputs, kilnet.layers.Dense(2, name=name)(inputs))
    model.compile(optimizer="adam", loss="mse")
    return model


def _rewrite(path, kind, edit):
    """Re-encode a kilnet file after edit(info, tensors): a valid checksum, hostile content."""
    info, tensors = _safefile.read(path, kind)
    edit(info, tensors)
    with open(path, "wb") as f:
        f.write(_safefile.encode(kind, info, tensors))


# -- 1. names: whatever the constructor accepts saves and loads -----------------------------------
# Each example puts several drawn names in one model: about as many names as 60 one-name examples
# checked but a quarter of the compiles, saves and loads (each costs the model's training
# step, 0.25 CPU seconds): names side by side in one file are checked as well.
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(names=st.lists(st.text(min_size=1, max_size=20), min_size=2, max_size=8, unique=True))
def test_every_name_the_constructor_accepts_saves_and_loads(tmp_path_factory, names):
    accepted = []
    for name in names:
        try:
            kilnet.layers.Dense(2, name=name)
        except ValueError:
            assert "/" in name or any(0xD800 <= ord(c) <= 0xDFFF for c in name)
            continue
        accepted.append(name if name != "x" else "x_")   # "x" names the input
    accepted = list(dict.fromkeys(accepted))
    if not accepted:
        return
    path = str(tmp_path_factory.mktemp("names") / "m.kilnet")
    outputs = inputs = kilnet.Input(shape=(3,), name="x")
    for name in accepted:
        outputs = kilnet.layers.Dense(2, name=name)(outputs)
    model = kilnet.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="mse")
    model.build(seed=0)
    model.save(path)
    loaded = kilnet.models.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    for got, expected in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["enc/dense", "\ud800", "", 3])
def test_names_a_file_could_not_hold_are_refused_at_construction(name):
    with pytest.raises(ValueError, match="Received: name="):
        kilnet.layers.Dense(2, name=name)
    with pytest.raises(ValueError, match="Received: name="):
        kilnet.Sequential([kilnet.layers.Dense(2)], name=name)


# -- 2. FIFOs are refused at once ------------------------------------------------------------------
@pytest.fixture
def alarm():
    """Fail instead of hanging if an open blocks."""
    def fail(*_):
        raise TimeoutError("the loader blocked on a FIFO")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_fifo_as_model_weights_or_checkpoint_file_is_refused_at_once(tmp_path, alarm):
    fifo = str(tmp_path / "m.kilnet")
    os.mkfifo(fifo)
    with pytest.raises(ModelFileError, match="FIFO"):
        kilnet.models.load_model(fifo)
    model = _mlp()
    model.build(seed=0)
    with pytest.raises(ModelFileError, match="FIFO"):
        model.load_weights(fifo)
    ckpt = tmp_path / "b" / checkpoint.name_of((1, 0))
    ckpt.mkdir(parents=True)
    (ckpt / "COMMIT").write_text(json.dumps({"format": checkpoint.FORMAT, "files": {
        "state.safetensors": "0" * 64, "meta.json": "0" * 64}}))
    for name in ("meta.json", "state.safetensors"):
        os.mkfifo(ckpt / name)
    with pytest.warns(UserWarning, match="Skipping a damaged checkpoint.*FIFO"):
        assert checkpoint.latest(tmp_path / "b") is None


# -- 3. checkpoints --------------------------------------------------------------------------------
class Crash(kilnet.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise RuntimeError("crash")


def _fit(model, callbacks, epochs=4):
    (x, y), val = worker.data()
    return model.fit(x, y, batch_size=6, epochs=epochs, validation_data=val, verbose=0,
                     callbacks=callbacks)


@pytest.fixture
def two_epochs(tmp_path):
    """A backup folder holding the checkpoints of a run that crashed in epoch 3: the newest
    holds the state after 2 epochs."""
    backup = tmp_path / "b"
    with pytest.raises(RuntimeError, match="crash"):
        _fit(worker.build(), [BackupAndRestore(str(backup)), Crash(3)])
    return backup


def test_checkpoint_names_say_the_position_they_hold(two_epochs):
    found = checkpoint.committed(two_epochs)
    assert [os.path.basename(p) for _, p in found][-2:] == [
        "ckpt-epoch000001-step00000000", "ckpt-epoch000002-step00000000"]
    for _, path in found:
        epoch, step = checkpoint.load(path).position
        assert os.path.basename(path) == f"ckpt-epoch{epoch:06d}-step{step:08d}"


def _edit_meta(path, edit_text=None, edit=None):
    """Change a committed checkpoint's meta.json and fix COMMIT's checksum, as an editor or a
    hostile process could."""
    meta_path = os.path.join(path, "meta.json")
    text = open(meta_path).read()
    if edit is not None:
        meta = json.loads(text)
        edit(meta)
        text = json.dumps(meta)
    if edit_text is not None:
        text = edit_text(text)
    open(meta_path, "w").write(text)
    commit = json.load(open(os.path.join(path, "COMMIT")))
    commit["files"]["meta.json"] = hashlib.sha256(text.encode()).hexdigest()
    open(os.path.join(path, "COMMIT"), "w").write(json.dumps(commit))


def _set(key, value):
    def edit(meta):
        meta[key] = value
    return edit


@pytest.mark.parametrize("damage, message", [
    (dict(edit=_set("position", [0, -3])), "position"),
    (dict(edit=_set("position", [0, 10**6])), "steps per epoch"),
    (dict(edit=_set("position", [99, 0])), "within the run's 4 epochs"),
    (dict(edit=_set("seed", -1)), "seed"),
    (dict(edit=_set("seed", "7")), "seed"),
    (dict(edit=_set("fit_calls", 1.5)), "fit_calls"),
    (dict(edit=lambda m: m.pop("seed")), "keys"),
    (dict(edit_text=lambda t: t.replace('"seed":', '"seed": 1, "seed":')), "duplicate key"),
    (dict(edit_text=lambda t: "[" * 100_000 + "]" * 100_000), "nested too deeply"),
    (dict(edit=_set("callbacks", {"EarlyStopping:0": {"best": float("nan")}})), "NaN"),
])
def test_a_damaged_meta_json_is_skipped_for_the_previous_checkpoint(two_epochs, damage,
                                                                     message):
    newest = checkpoint.committed(two_epochs)[-1][1]
    _edit_meta(newest, **damage)
    with pytest.warns(UserWarning, match=f"Skipping a damaged checkpoint.*{newest}.*"):
        ckpt = checkpoint.latest(two_epochs, steps=10)
    assert ckpt.position == (1, 0)
    with pytest.raises(ModelFileError, match=message):
        checkpoint.load(newest, steps=10)


def test_a_nested_commit_marker_is_skipped_not_a_crash(two_epochs):
    newest = checkpoint.committed(two_epochs)[-1][1]
    open(os.path.join(newest, "COMMIT"), "w").write("[" * 100_000 + "]" * 100_000)
    with pytest.warns(UserWarning, match="Skipping a damaged checkpoint.*COMMIT"):
        assert checkpoint.latest(two_epochs).position == (1, 0)


def _poison(path, pick, value):
    """Write a NaN / infinity / negative value into one array of a committed checkpoint."""
    state_path = os.path.join(path, "state.safetensors")
    _, tensors = _safefile.read(state_path, "checkpoint")
    name = next(n for n in sorted(tensors) if pick in n)
    tensors[name] = np.full_like(tensors[name], value)
    data = _safefile.encode("checkpoint", {}, tensors)
    open(state_path, "wb").write(data)
    commit = json.load(open(os.path.join(path, "COMMIT")))
    commit["files"]["state.safetensors"] = hashlib.sha256(data).hexdigest()
    open(os.path.join(path, "COMMIT"), "w").write(json.dumps(commit))


@pytest.mark.parametrize("pick, value, message", [
    ("params/dense/kernel", np.nan, "NaN or infinity"),
    ("hyperparams/learning_rate", np.inf, "NaN or infinity"),
    ("hyperparams/learning_rate", -0.5, "negative"),
    ("moving_variance", -1.0, "negative"),
])
def test_a_checkpoint_holding_nan_or_a_bad_learning_rate_is_not_resumed(two_epochs, pick,
                                                                         value, message):
    newest = checkpoint.committed(two_epochs)[-1][1]
    _poison(newest, pick, value)
    with pytest.raises(ModelFileError, match=message):
        checkpoint.load(newest)
    restorer = BackupAndRestore(str(two_epochs))
    with pytest.warns(UserWarning, match="Skipping a damaged checkpoint"):
        _fit(worker.build(), [restorer])
    assert restorer.restored_from.endswith("ckpt-epoch000001-step00000000")


def test_a_second_trainer_on_one_backup_dir_is_refused_and_a_dead_ones_lock_taken(tmp_path):
    backup = tmp_path / "b"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        backup.mkdir()
        (backup / "LOCK").write_text(json.dumps({"pid": live.pid,
                                                 "host": __import__("socket").gethostname()}))
        with pytest.raises(checkpoint.CheckpointInUseError,
                           match=f"in use by process {live.pid}"):
            _fit(worker.build(), [BackupAndRestore(str(backup))], epochs=1)
        # Its in-flight temporary folder survives another trainer's tidying.
        inflight = backup / f"{checkpoint.TMP_PREFIX}{live.pid}-abc"
        inflight.mkdir()
        checkpoint.cleanup(backup)
        assert inflight.is_dir()
    finally:
        live.kill()
        live.wait()
    orphan = backup / f"{checkpoint.TMP_PREFIX}{live.pid}-def"   # its process is gone now
    orphan.mkdir()
    history = _fit(worker.build(), [BackupAndRestore(str(backup))], epochs=1)
    assert len(history.history["loss"]) == 1
    assert not backup.exists()   # lock taken over, temp folders removed, completed: deleted


def test_a_fit_that_fails_gives_its_backup_folder_back(tmp_path):
    """An error ends fit before on_train_end: the lock goes all the same, so another
    process may resume the run while this one (a notebook's kernel) lives on."""
    backup = tmp_path / "b"
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(1)])
    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=0.01, epsilon=0.0), loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    x[:, 2] = 0.0  # Adam with epsilon 0 divides 0 by 0: the first update is not finite
    with pytest.raises(kilnet.NonFiniteError):
        model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0,
                  callbacks=[BackupAndRestore(str(backup), save_freq=1)])
    assert not (backup / "LOCK").exists()


# -- 4. callbacks that save never crash fit --------------------------------------------------------
def test_model_checkpoint_skips_a_model_with_infinite_optimizer_state(tmp_path):
    import jax

    model = _mlp()
    x = np.ones((8, 3), np.float32)
    model.fit(x, x[:, :2], batch_size=8, epochs=1, verbose=0)
    trainer = model.compiled
    trainer.state = trainer.state._replace(opt_state=jax.tree.map(
        lambda a: a * np.inf if np.issubdtype(a.dtype, np.floating) else a,
        trainer.state.opt_state))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.save(str(tmp_path / "direct.kilnet"))       # what model.save refuses
    callback = ModelCheckpoint(str(tmp_path / "m-{epoch}.kilnet"), save_best_only=False)
    callback.set_model(model)
    with pytest.warns(UserWarning, match="not writing .*m-1.kilnet.*infinity"):
        callback.on_epoch_end(0, {"loss": 1.0})
    assert not os.listdir(tmp_path)


# -- 5. loaders ------------------------------------------------------------------------------------
_PROBE = """
import os, resource, sys
import kilnet
from kilnet import _safefile
model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
model.build(seed=0)
path = os.path.join(sys.argv[1], "w.kilnet")
model.save_weights(path)
info, tensors = _safefile.read(path, "weights")
info["model"]["input_shape"] = [100_000_000]
open(path, "wb").write(_safefile.encode("weights", info, tensors))
print("size", os.path.getsize(path))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    kilnet.Sequential([kilnet.layers.Dense(2)]).load_weights(path)
    print("loaded")
except kilnet.errors.ModelFileError as error:
    print("refused", error)
print("grew_mb", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
"""


def test_a_tiny_weights_file_cannot_make_load_weights_allocate_gigabytes(tmp_path):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert int(lines["size"]) < 2000, out.stderr
    assert "refused" in lines and "does not fit its arrays" in lines["refused"], out.stdout
    assert float(lines["grew_mb"]) < 200    # the hostile build needed 800 MB and more


@pytest.fixture
def saved(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Rescaling(0.5),
                               kilnet.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 3), np.float32), np.ones((8, 2), np.float32), batch_size=8, epochs=1,
              verbose=0)
    path = str(tmp_path / "m.kilnet")
    model.save(path)
    return path


def _opt(key, value):
    def edit(info, tensors):
        info["compile"]["optimizer"]["config"][key] = value
    return edit


def _layer(key, value):
    def edit(info, tensors):
        info["model"]["config"]["layers"][0]["config"][key] = value
    return edit


def _array(pick, transform):
    def edit(info, tensors):
        name = next(n for n in sorted(tensors) if pick in n)
        tensors[name] = transform(tensors[name])
    return edit


@pytest.mark.parametrize("edit, entry", [
    (_opt("beta_1", float("nan")), "compile.optimizer.config.beta_1"),
    (_opt("beta_1", "abc"), "compile.optimizer.config.beta_1"),
    (_opt("beta_2", 1.0), "compile.optimizer.config.beta_2"),
    (_opt("learning_rate", float("inf")), "compile.optimizer.config.learning_rate"),
    (_opt("learning_rate", -1e-3), "compile.optimizer.config.learning_rate"),
    (_opt("epsilon", -1), "compile.optimizer.config.epsilon"),
    (_layer("scale", float("nan")), "model.config.layers[0].config.scale"),
    (_array("params/dense/kernel", lambda a: a * np.nan), "'params/dense/kernel'"),
    (_array("/mu/", lambda a: a + np.inf), "'opt/"),
    (_array("hyperparams/learning_rate", lambda a: -a), "negative"),
])
def test_non_finite_or_out_of_range_values_are_refused_naming_the_entry(saved, edit, entry):
    _rewrite(saved, "model", edit)
    with pytest.raises(ModelFileError, match=f"{re.escape(saved)}.*{re.escape(entry)}"):
        kilnet.models.load_model(saved)


def test_a_transposed_kernel_in_a_weights_file_names_the_file(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
    model.build(seed=0)
    path = str(tmp_path / "w.kilnet")
    model.save_weights(path)
    _rewrite(path, "weights", _array("kernel", lambda a: np.ascontiguousarray(a.T)))
    with pytest.raises(ModelFileError, match=f"{path}.*'params/dense/kernel' has shape"):
        model.load_weights(path)


def test_a_model_whose_configuration_holds_nan_is_not_saved(tmp_path):
    model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Rescaling(float("nan"))])
    with pytest.raises(ValueError, match="configuration holds NaN or infinity"):
        model.save(str(tmp_path / "m.kilnet"))
    assert not os.listdir(tmp_path)
