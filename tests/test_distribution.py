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
    # The worker sets its own device count; the other flags (the tests' cheap XLA
    # optimization level, tests/conftest.py) carry over, so its programs compile as fast as
    # this process's and at the same level as the one-device references computed here.
    flags = os.environ.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(f for f in flags if "host_platform_device_count" not in f)
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
def _worker_results(made_once_per_run, scenario):
    """The arrays tests/_dist_worker.py saves for `scenario`, run in its own process once in
    a test run (both xdist workers compare with the same run)."""
    def run(out):
        with _processes([[sys.executable, str(WORKER), scenario, str(out)]],
                        env=_env()) as procs:
            _wait(procs)
    return dict(np.load(made_once_per_run(f"dist_{scenario}.npz", run)))


@pytest.fixture(scope="module")
def devices_run(made_once_per_run):
    return _worker_results(made_once_per_run, "devices")


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
    with pytest.raises(ValueError, match="job_addresses must be 'host:port' of process 0"):
        distribution.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="job_addresses lists 3 processes but num_processes "
                                         "is 2"):
        distribution.initialize("a:1,b:2,c:3", 2, 0)
    with pytest.raises(ValueError, match="process_id=2"):
        distribution.initialize("localhost:1234", 2, 2)
    assert distribution.DataParallel().check_batch_size(7) == 7  # one device: any size


def test_initialize_reads_keras_environment_variables(monkeypatch):
    """Arguments left None come from KERAS_DISTRIBUTION_*, as Keras's initialize reads them
    (the two-process run below starts one process so); their errors name the variable."""
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "a:1,b:2,c:3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    with pytest.raises(ValueError, match="lists 3 processes but num_processes is 2"):
        distribution.initialize()
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "first")
    with pytest.raises(ValueError, match="KERAS_DISTRIBUTION_PROCESS_ID must be an integer. "
                                         "Received: KERAS_DISTRIBUTION_PROCESS_ID='first'"):
        distribution.initialize()


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


def _one_device_mesh(axes=("data", "model")):
    return distribution.DeviceMesh((1,) * len(axes), list(axes), devices=jax.devices()[:1])


def test_layout_map_finds_layouts_as_keras_does():
    """Exact keys first, else the one key whose regular expression matches the whole path,
    None when none does, an error when several do: the same answers as Keras 3's LayoutMap."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keys = {"d1/kernel": (None, "model"), ".*dense.*kernel": ("model", None),
            "dense_1/bias": ("model",), "conv.*": (None, None, None, "model"),
            ".*conv2d_1.*": ("model", None, None, None)}
    paths = ["d1/kernel", "dense_1/kernel", "seq/dense/kernel", "dense_1/bias", "dense_2/bias",
             "d1/kernel/extra", "conv2d/kernel", "conv2d_1/kernel", "x/conv2d_1/bias", "d1"]
    ours = distribution.LayoutMap(_one_device_mesh())
    theirs = keras.distribution.LayoutMap(keras.distribution.DeviceMesh(
        (1, 1), ["data", "model"], devices=keras.distribution.list_devices()[:1]))
    for key, axes in keys.items():
        ours[key], theirs[key] = axes, axes

    def answer(layout_map, path):
        try:
            found = layout_map[path]
        except ValueError:
            return "several"
        return None if found is None else tuple(found.axes)

    answers = [answer(ours, path) for path in paths]
    assert answers == [answer(theirs, path) for path in paths]
    assert answers.count(None) >= 2 and "several" in answers   # every kind of answer
    assert len(ours) == 5 and list(ours) == list(keys)
    del ours["d1/kernel"]
    assert ours["d1/kernel"] is None


def test_layer_paths_are_keras_paths():
    """`layer.path` (what "<path>/output" keys lay out) as Keras's: a Sequential's layers
    under its name, a functional model's under none, a subclassed model's attributes under
    its name, nested models under their own."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    def paths(lib):
        seq = lib.Sequential([lib.Input((4,)), lib.layers.Dense(3, name="a"),
                              lib.layers.Flatten(name="f")], name="seq")
        inner_input = lib.Input((3,))
        inner = lib.Model(inner_input, lib.layers.Dense(2, name="b")(inner_input),
                          name="inner")
        inputs = lib.Input((4,))
        outer = lib.Model(inputs, lib.layers.Dense(1, name="c")(inner(seq(inputs))),
                          name="outer")

        class Sub(lib.Model):
            def __init__(self):
                super().__init__(name="sub")
                self.dense = lib.layers.Dense(2, name="e")

            def call(self, x):
                return self.dense(x)

        sub = Sub()
        sub(np.ones((1, 4), "float32"))
        outer.predict(np.ones((1, 4), "float32"), verbose=0)
        return [layer.path for layer in [seq, *seq.layers, inner, inner.layers[-1], outer,
                                         outer.layers[-1], sub, sub.dense]]

    ours = paths(kilnet)
    assert ours == paths(keras)
    assert ours[:3] == ["seq", "seq/a", "seq/f"] and ours[-1] == "sub/e"


def test_an_output_layout_constrains_that_layer_in_the_program():
    """A "<layer path>/output" key puts a sharding constraint on that layer's output in the
    traced program (as Keras's layers relayout their outputs); without it, none."""
    import re

    def constraints(keys):
        layout_map = distribution.LayoutMap(_one_device_mesh())
        for key, axes in keys.items():
            layout_map[key] = axes
        inputs = kilnet.Input((6,))
        y = kilnet.layers.Dense(8, name="d2")(kilnet.layers.Dense(4, name="d1")(inputs))
        model = kilnet.Model(inputs, y)
        model.build()
        placement = distribution.ModelParallel(layout_map=layout_map).placement(model)
        forward = placement.program(lambda p, s, x: model.apply(p, s, x)[0])
        text = jax.jit(forward).lower(model.params_tree(), model.state_tree(),
                                      np.ones((2, 6), np.float32)).as_text()
        return re.findall(r"sharding_constraint[^\n]*tensor<2x(\d)xf32>", text), text

    plain, _ = constraints({})
    laid_out, text = constraints({"d2/output": ("data", "model")})
    assert len(laid_out) == len(plain) + 1 and laid_out.count("8") == plain.count("8") + 1
    assert '[{"data"}, {"model"}]' in text


def test_meshes_and_layouts_refuse_what_cannot_work():
    with pytest.raises(ValueError, match=r"needs 8 devices\. Received: 1 devices"):
        distribution.DeviceMesh((2, 4), ["data", "model"], devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="one distinct name per axis"):
        distribution.DeviceMesh((1,), ["data", "model"], devices=jax.devices()[:1])
    with pytest.raises(ValueError, match="names such as 'cpu:0'"):
        distribution.DeviceMesh((1,), ["data"], devices=["tpu:7"])
    with pytest.raises(ValueError, match="needs layout_map=kilnet.distribution.LayoutMap"):
        distribution.ModelParallel(layout_map={"d1/kernel": (None, "model")})
    layout_map = distribution.LayoutMap(_one_device_mesh())
    with pytest.raises(ValueError, match="a TensorLayout or a tuple of axis names"):
        layout_map["d1/kernel"] = "model"
    with pytest.raises(ValueError, match="has no DeviceMesh yet"):
        distribution.TensorLayout((None, "model")).backend_layout


def test_data_parallel_takes_keras_arguments():
    """DataParallel(device_mesh=DeviceMesh(...)) and DataParallel(devices=[...]) as Keras; a
    mesh of device names ("cpu:0", as list_devices gives them) too; and scope()."""
    mesh = distribution.DeviceMesh((1,), ["batch"], devices=distribution.list_devices()[:1])
    dp = distribution.DataParallel(device_mesh=mesh)
    assert dp.batch_dim_name == "batch" and dp.num_devices == 1 and dp.device_mesh is mesh
    assert distribution.DataParallel(devices=jax.devices()[:1]).devices == jax.devices()[:1]
    with dp.scope():
        assert distribution.distribution() is dp
        assert worker.make_model().compiled.distribution is dp
    assert distribution.distribution() is None


def test_distribute_tensor_places_arrays_and_constrains_traced_ones():
    layout = distribution.TensorLayout(("data", None), _one_device_mesh())
    placed = distribution.distribute_tensor(np.ones((2, 3)), layout)
    assert placed.sharding == layout.backend_layout
    text = jax.jit(lambda a: distribution.distribute_tensor(a * 2, layout)).lower(
        np.ones((2, 3), np.float32)).as_text()
    assert 'sharding_constraint' in text and '[{"data"}, {}]' in text
    symbolic = kilnet.Input((3,))
    assert distribution.distribute_tensor(symbolic, layout) is symbolic


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


# -- ModelParallel: one process, 4 CPU devices as a 2 x 2 mesh ("data", "model") --------------------
@pytest.fixture(scope="module")
def model_parallel_run(made_once_per_run):
    return _worker_results(made_once_per_run, "model")


def test_model_parallel_trains_as_one_device(model_parallel_run):
    """Keras's distribution guide's model and LayoutMap (d1 split over "model", the batch
    over "data"), Dropout and Adam included: the same losses, results and weights as on one
    device; d1's kernel really is split in two on each replica, and Adam's slots for it
    take its layout."""
    one = _prefix(model_parallel_run, "guide/one/")
    assert {"loss", "evaluate", "predict", "w0", "w3"} <= set(one)
    _compare(model_parallel_run, "guide/mp/", one)
    assert model_parallel_run["guide/kernel_shards"].tolist() == [[64, 10]] * 4
    assert model_parallel_run["guide/slot_specs"].tolist() == ["P(None, 'model')"] * 2
    assert str(model_parallel_run["guide/d2_spec"]) == "P()"   # no layout: replicated


def test_model_parallel_trains_as_keras_model_parallel(model_parallel_run):
    """Keras 3's own ModelParallel on the same mesh and LayoutMap, from the same weights:
    the same loss history, results and trained weights."""
    theirs = _prefix(model_parallel_run, "keras/theirs/")
    assert {"loss", "evaluate", "predict", "w0", "w3"} <= set(theirs)
    assert str(model_parallel_run["keras/theirs_kernel_spec"]) == "P(None, 'model')"
    _compare(model_parallel_run, "keras/ours/", theirs)


def test_the_jax_distributed_guide_on_four_devices_trains_as_on_one(model_parallel_run):
    """Keras's "Distributed training with JAX" guide as written (tests/
    test_jax_distributed_guide.py: jax.device_put of the Variables, each batch split over
    the mesh, Dropout drawing from its seed state): the same losses, weights, BatchNorm
    statistics and seed state on 4 devices as on 1."""
    one = _prefix(model_parallel_run, "jax_guide/one/")
    assert {"loss", "w0", "n0"} <= set(one) and len(one["loss"]) == 8
    for key, value in one.items():
        np.testing.assert_allclose(model_parallel_run[f"jax_guide/four/{key}"], value,
                                   rtol=1e-5, atol=1e-4 if key[0] == "w" else 1e-6,
                                   err_msg=key)


def test_model_parallel_files_move_between_layouts(model_parallel_run):
    """Saved from the mesh, loaded on one device: the same predictions; loaded within the
    distribution's scope(): laid out again, and training continues as the original's."""
    assert bool(model_parallel_run["file/one_devices"])
    np.testing.assert_allclose(model_parallel_run["file/one_predict"],
                               model_parallel_run["file/original_predict"], **TOL)
    assert str(model_parallel_run["file/loaded_kind"]) == "ModelParallel"
    original = _prefix(model_parallel_run, "file/original/")
    assert {"loss", "w0"} <= set(original)
    _compare(model_parallel_run, "file/loaded/", original)


def test_model_parallel_errors_name_the_cause(model_parallel_run):
    batch, rank, uneven, axis, duplicate, ambiguous, batch_axis = (
        str(m) for m in model_parallel_run["errors"])
    assert "multiple of the number of model replicas (devices along the mesh's 'data' axis)" \
        in batch and "nearest valid sizes: 14 or 16. Received: batch_size=15" in batch
    assert "The layout ('model',) of 'd1/kernel' (shape (64, 20)) needs one entry per axis" \
        in rank
    assert "'odd/kernel' (shape (4, 3)) cannot be split over the mesh axis 'model' of 2 " \
           "devices" in uneven
    assert "name ['tensor'], which the mesh does not have; its axes are ['data', 'model']" \
        in axis
    assert "already has the key 'd1/kernel'" in duplicate
    assert "'d1/kernel' matches several LayoutMap keys: ['d1.*', '.*kernel']" in ambiguous
    assert "batch_dim_name must be an axis of the mesh" in batch_axis
