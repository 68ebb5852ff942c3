"""Data-parallel and multi-process training (kilnet.distribution).

The multi-device runs happen in subprocesses (tests/_dist_worker.py) that start JAX with 4 (or,
per process, 2) CPU devices; this process has one and computes the one-device references.

Tolerance: the same global batches are used on every device count, so only the order of the
floating-point sums differs (per-device partial sums, then XLA's all-reduce): measured
differences are ~1e-7 absolute; we allow rtol=1e-5, atol=1e-6.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import _dist_worker as worker
import kilnet
from kilnet import distribution

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_dist_worker.py"
TIMEOUT = 240  # seconds for a whole subprocess run; a hung collective fails, not hangs, a test
TOL = dict(rtol=1e-5, atol=1e-6)


def _env():
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    root = str(HERE.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _processes(commands, **kwargs):
    """Start every command; always kill what is still running on the way out."""
    procs = []
    try:
        for command in commands:
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, **kwargs))
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def _wait(procs, timeout=TIMEOUT):
    """Wait for all; returns their outputs, failing with them if any exit non-zero."""
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"{p.args} did not finish within {timeout} s")
        outputs.append(out)
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, f"{p.args} exited {p.returncode}:\n{out[-4000:]}"
    return outputs


def _compare(results, prefix, reference):
    for key, value in reference.items():
        np.testing.assert_allclose(results[f"{prefix}{key}"], value, **TOL, err_msg=key)


# -- one process, 4 CPU devices -------------------------------------------------------------------
@pytest.fixture(scope="module")
def devices_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist") / "devices.npz"
    with _processes([[sys.executable, str(WORKER), "devices", str(out)]], env=_env()) as procs:
        _wait(procs)
    return dict(np.load(out))


def _prefix(results, prefix):
    return {k[len(prefix):]: v for k, v in results.items() if k.startswith(prefix)}


def test_four_and_two_devices_train_like_one(devices_run):
    one = _prefix(devices_run, "one/")
    assert {"loss", "accuracy", "evaluate", "predict", "w0"} <= set(one)
    _compare(devices_run, "four/", one)
    _compare(devices_run, "two/", one)
    assert devices_run["four_replicated"]  # parameters replicated on all 4 devices


def test_a_stateful_lstm_on_four_devices_carries_its_states_as_on_one(devices_run):
    """The states ride in the replicated model state: fit, then predict, carry them from
    batch to batch on 4 devices as on one."""
    one = _prefix(devices_run, "stateful1/")
    assert {"predict", "state0", "state1"} <= set(one) and np.abs(one["state0"]).sum() > 0
    _compare(devices_run, "stateful4/", one)


def test_multi_device_run_matches_this_process(devices_run):
    """The subprocess's one-device run is the same computation as here (same seeds, data)."""
    _, here = worker.train(None, *worker.make_data())
    _compare(devices_run, "one/", here)


def test_uneven_batch_size_is_a_clear_error(devices_run):
    for message in devices_run["uneven_messages"]:
        assert "batch_size=6 with 4 devices" in message
        assert "nearest valid sizes: 4 or 8" in message


def test_a_batch_larger_than_the_data_is_padded_exactly(devices_run):
    np.testing.assert_allclose(devices_run["whole_batch_four"], devices_run["whole_batch_one"],
                               **TOL)


def test_weights_move_between_device_counts(devices_run):
    np.testing.assert_allclose(devices_run["moved41/evaluate"], devices_run["four/evaluate"],
                               **TOL)
    np.testing.assert_allclose(devices_run["moved41/predict"], devices_run["four/predict"],
                               **TOL)
    _compare(devices_run, "resume4/", _prefix(devices_run, "resume1/"))


def test_model_files_resume_on_another_device_count(devices_run):
    """model.save on 4 devices, load_model and train on 1 (and 1 -> 4): optimizer state, rng
    and position travel with the file, so training continues as the original's does."""
    assert int(devices_run["file41/devices"]) == 1
    assert int(devices_run["file14/devices"]) == 4  # set_distribution(DataParallel())
    for name in ("file41", "file14"):
        original = _prefix(devices_run, f"{name}/original/")
        assert {"loss", "w0"} <= set(original)
        _compare(devices_run, f"{name}/loaded/", original)


# -- two processes, jax.distributed on 127.0.0.1 --------------------------------------------------
def test_two_processes_train_like_one_device(tmp_path):
    if jax.config.jax_cpu_collectives_implementation != "gloo":
        pytest.skip("this JAX has no multi-process CPU collectives (gloo)")
    port = _free_port()
    outs = [tmp_path / f"p{i}.npz" for i in range(2)]
    commands = [[sys.executable, str(WORKER), "process", str(port), str(i), "2", str(outs[i])]
                for i in range(2)]
    with _processes(commands, env=_env()) as procs:
        _wait(procs)
    x, y = worker.make_data()
    _, reference = worker.train(None, x, y, validation_data=worker.make_data(23, seed=1))
    for i, path in enumerate(outs):
        results = dict(np.load(path))
        assert int(results["process_index"]) == i
        assert bool(results["is_chief"]) == (i == 0)
        assert int(results["global_devices"]) == 4 and int(results["num_devices"]) == 4
        assert int(results["local_rows"]) == (31 if i == 0 else 30)  # its shard of 61
        _compare(results, "", reference)  # full evaluate/predict results on every process


# -- the API, in this process ----------------------------------------------------------------------
def test_data_parallel_on_one_device_is_the_plain_path():
    x, y = worker.make_data()
    _, plain = worker.train(None, x, y, epochs=1)
    _, dp = worker.train(distribution.DataParallel(), x, y, epochs=1)
    _compare(dp, "", plain)


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="distribution must be a kilnet.distribution"):
        worker.make_model(distribution="mirrored")
    with pytest.raises(ValueError, match="non-empty list of jax devices"):
        distribution.DataParallel(devices=[])
    with pytest.raises(ValueError, match="coordinator_address must be 'host:port'"):
        distribution.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id=2"):
        distribution.initialize("localhost:1234", 2, 2)
    assert distribution.DataParallel().check_batch_size(7) == 7  # one device: any size


def test_batch_size_message_for_a_pretend_mesh():
    dp = distribution.DataParallel()
    dp.devices = [dp.devices[0]] * 8  # only the count matters to the check
    with pytest.raises(ValueError, match=r"nearest valid sizes: 8 or 16\. Received: "
                                         r"batch_size=12 with 8 devices"):
        dp.check_batch_size(12)
    with pytest.raises(ValueError, match=r"nearest valid sizes: 8\. Received: batch_size=5"):
        dp.check_batch_size(5)
    assert dp.whole_batch_size(50, 40) == 56  # one whole batch: rounded up, masked
    assert dp.whole_batch_size(16, 40) == 16


def test_process_helpers_in_a_single_process():
    assert distribution.is_chief()
    assert distribution.shared_seed(5) == 5
    a = np.arange(10)
    shards = [distribution.process_shard(a, process_id=i, num_processes=3) for i in range(3)]
    assert [len(s) for s in shards] == [4, 3, 3]
    np.testing.assert_array_equal(np.concatenate(shards), a)
    np.testing.assert_array_equal(distribution.process_shard(a), a)
    assert kilnet.distribution is distribution


# -- kilnet train --coordinator ... --num-processes 2 --process-id I -------------------------------
def test_cli_two_processes_write_one_run_folder(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=rng.integers(0, 256, (50, 28, 28), dtype=np.uint8),
             y_train=rng.integers(0, 10, 50, dtype=np.uint8),
             x_test=rng.integers(0, 256, (21, 28, 28), dtype=np.uint8),
             y_test=rng.integers(0, 10, 21, dtype=np.uint8))
    out = tmp_path / "run"
    port = _free_port()
    env = {**_env(), "JAX_PLATFORMS": "cpu", "KILNET_COMPILATION_CACHE": "0"}
    commands = [[sys.executable, "-m", "kilnet", "train", "--dataset", str(data), "--epochs", "2",
                 "--batch-size", "8", "--seed", "3", "--out", str(out),
                 "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                 "--process-id", str(i)] for i in range(2)]
    with _processes(commands, env=env, cwd=tmp_path) as procs:
        chief, other = _wait(procs)
    assert "Epoch 2/2" in chief and "test accuracy" in chief
    assert "Epoch" not in other and "test accuracy" not in other  # logs once
    assert (out / "history.json").is_file() and (out / "model.kilnet").is_file()
    assert not list(tmp_path.glob("runs"))  # the other process wrote no run folder of its own
    model = kilnet.models.load_model(out / "model.kilnet")
    assert model.predict(np.zeros((2, 28, 28), np.float32), verbose=0).shape == (2, 10)


def test_set_distribution_is_the_default_of_compile():
    dp = distribution.DataParallel()
    try:
        distribution.set_distribution(dp)
        assert distribution.get_distribution() is dp
        assert worker.make_model().compiled.distribution is dp
        assert worker.make_model(distribution.DataParallel()).compiled.distribution is not dp
    finally:
        distribution.set_distribution(None)
    assert worker.make_model().compiled.distribution is None
    with pytest.raises(TypeError, match="Received: distribution='mirrored'"):
        distribution.set_distribution("mirrored")
