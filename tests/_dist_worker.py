"""Runs kilnet on several CPU devices, in a subprocess of tests/test_distribution.py.

JAX fixes its device count when it starts, and the pytest process has already started with one
CPU device, so the multi-device runs happen here, with XLA's forced host device count:

    python tests/_dist_worker.py devices OUT.npz
        one process, 4 CPU devices: 1-device vs 4- and 2-device training, the batch-size
        policy, weights moved between 1 and 4 devices
    python tests/_dist_worker.py model OUT.npz
        one process, 4 CPU devices as a 2 x 2 mesh ("data", "model"): ModelParallel against
        one device and against Keras's own ModelParallel, its errors, its model files
    python tests/_dist_worker.py process PORT PROCESS_ID NUM_PROCESSES OUT.npz
        one process (2 CPU devices) of a jax.distributed run over 127.0.0.1:PORT; trains on its
        own shard of the data

Results go to OUT.npz as plain arrays; the test compares them. The helpers `make_data`,
`make_model` and `train` are imported by the test for its one-device reference.
"""

from __future__ import annotations

import os
import sys

DEVICES = {"devices": 4, "model": 4, "process": 2}

if __name__ == "__main__":
    # Before JAX starts: the device count, the CPU backend, no persistent compilation cache
    # (tests must not depend on, or fill, the user's cache).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={DEVICES[sys.argv[1]]}").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["KILNET_COMPILATION_CACHE"] = "0"
    os.environ["KERAS_BACKEND"] = "jax"   # the ModelParallel reference: Keras 3 on JAX

import numpy as np  # noqa: E402

N_SAMPLES = 61        # not a multiple of the batch size: the last batch is partial and masked
BATCH_SIZE = 8
EPOCHS = 3
SEED = 7


def make_data(n=N_SAMPLES, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    return x, y


def make_model(distribution=None):
    """Dense + BatchNormalization (batch statistics over the global batch) + Dropout (random
    masks), so the comparison covers every cross-device reduction and the RNG."""
    import kilnet
    from kilnet import layers

    kilnet.utils.set_random_seed(SEED)
    model = kilnet.Sequential([
        layers.Dense(16, activation="relu", input_shape=(6,)),
        layers.BatchNormalization(),
        layers.Dropout(0.25),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], distribution=distribution)
    return model


def train(distribution, x, y, validation_data=None, *, epochs=EPOCHS, batch_size=BATCH_SIZE):
    """Train, evaluate and predict; returns (model, {name: array})."""
    model = make_model(distribution)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, seed=SEED,
                        validation_data=validation_data)
    out = {"loss": history.history["loss"], "accuracy": history.history["accuracy"],
           "evaluate": model.evaluate(x, y, batch_size=batch_size, verbose=0),
           "predict": model.predict(x, batch_size=batch_size, verbose=0)}
    if validation_data is not None:
        out["val_loss"] = history.history["val_loss"]
    for i, w in enumerate(model.get_weights()):
        out[f"w{i}"] = w
    return model, {k: np.asarray(v) for k, v in out.items()}


def _prefixed(prefix, results):
    return {f"{prefix}/{k}": v for k, v in results.items()}


def run_devices(out_path):
    import jax

    import kilnet
    from kilnet.distribution import DataParallel

    assert jax.device_count() == 4, jax.devices()
    x, y = make_data()
    results = {}

    # The same global batch on 1, 4 and 2 devices.
    model1, one = train(None, x, y)
    model4, four = train(DataParallel(), x, y)
    _, two = train(DataParallel(jax.devices()[:2]), x, y)
    results.update({**_prefixed("one", one), **_prefixed("four", four), **_prefixed("two", two)})
    state = model4.compiled.state
    results["four_replicated"] = np.array(all(
        leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
        for leaf in jax.tree.leaves(state.params)))

    # Uneven batch sizes: a clear error, whatever the call.
    messages = []
    for call in ("fit", "evaluate", "predict"):
        model = make_model(DataParallel())
        args = (x,) if call == "predict" else (x, y)
        try:
            getattr(model, call)(*args, batch_size=6, verbose=0)
            messages.append("no error")
        except ValueError as error:
            messages.append(str(error))
    results["uneven_messages"] = np.array(messages)
    # ... except a batch larger than the data (one whole batch): padded, exact.
    results["whole_batch_one"] = np.asarray(make_model(None).evaluate(
        x, y, batch_size=1000, verbose=0))
    results["whole_batch_four"] = np.asarray(make_model(DataParallel()).evaluate(
        x, y, batch_size=1000, verbose=0))

    # A stateful LSTM (its states carried in the model state, replicated) on 1 and 4 devices.
    for name, dist in (("stateful1", None), ("stateful4", DataParallel())):
        kilnet.utils.set_random_seed(SEED)
        model = kilnet.Sequential([kilnet.Input(batch_shape=(8, 4, 3)),
                                   kilnet.layers.LSTM(3, stateful=True),
                                   kilnet.layers.Dense(2)])
        model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", distribution=dist)
        sequences = np.random.default_rng(SEED).normal(size=(16, 4, 3)).astype("float32")
        model.fit(sequences, sequences[:, -1, :2], epochs=2, shuffle=False, verbose=0)
        results[f"{name}/predict"] = model.predict(sequences, verbose=0)
        for i, state in enumerate(model.layers[0].states):
            results[f"{name}/state{i}"] = np.asarray(state)

    # Weights trained on 4 devices, used on 1; weights trained on 1, trained on from 4.
    on_one = make_model(None)
    on_one.set_weights(model4.get_weights())
    results["moved41/evaluate"] = np.asarray(on_one.evaluate(x, y, batch_size=8, verbose=0))
    results["moved41/predict"] = on_one.predict(x, batch_size=8, verbose=0)
    start = [np.asarray(w) for w in one_weights(one)]
    for name, dist in (("resume1", None), ("resume4", DataParallel())):
        model = make_model(dist)
        model.set_weights(start)
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, seed=SEED + 1)
        results[f"{name}/loss"] = np.asarray(history.history["loss"])
        for i, w in enumerate(model.get_weights()):
            results[f"{name}/w{i}"] = w

    # Through model files: saved on 4 devices and trained on from 1; saved on 1, from 4. Each
    # must continue exactly as the original model continues on its own devices.
    import tempfile

    from kilnet.models import load_model
    with tempfile.TemporaryDirectory() as folder:
        for name, original, dist in (("file41", model4, None), ("file14", model1,
                                                                DataParallel())):
            path = os.path.join(folder, name + ".kilnet")
            original.save(path)
            kilnet.distribution.set_distribution(dist)  # what load_model compiles with
            loaded = load_model(path)
            kilnet.distribution.set_distribution(None)
            results[f"{name}/devices"] = np.asarray(
                1 if loaded.compiled.distribution is None
                else loaded.compiled.distribution.num_devices)
            for label, model in (("loaded", loaded), ("original", original)):
                history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
                results[f"{name}/{label}/loss"] = np.asarray(history.history["loss"])
                for i, w in enumerate(model.get_weights()):
                    results[f"{name}/{label}/w{i}"] = w
    np.savez(out_path, **results)


# -- ModelParallel on a 2 x 2 mesh ------------------------------------------------------------------
def guide_model(lib, distribution=None, *, rate=0.4, optimizer="adam"):
    """Keras's distribution guide's model (Flatten, Dense "d1", Dropout, Dense "d2"), on
    small images; `distribution` goes to kilnet's compile (Keras takes the global one)."""
    inputs = lib.layers.Input(shape=(8, 8, 1))
    y = lib.layers.Flatten()(inputs)
    y = lib.layers.Dense(units=20, activation="relu", name="d1")(y)
    y = lib.layers.Dropout(rate)(y)
    y = lib.layers.Dense(units=10, activation="softmax", name="d2")(y)
    model = lib.Model(inputs=inputs, outputs=y)
    kwargs = {} if lib.__name__ == "keras" else {"distribution": distribution}
    model.compile(loss="mse", optimizer=optimizer, **kwargs)
    return model


def guide_layouts(lib, mesh):
    """The guide's LayoutMap: d1's kernel and bias split over "model", d2's output over
    "data"; the batch over "data"."""
    layout_map = lib.distribution.LayoutMap(mesh)
    layout_map["d1/kernel"] = (None, "model")
    layout_map["d1/bias"] = ("model",)
    layout_map["d2/output"] = ("data", None)
    return lib.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="data")


def _guide_run(model, x, y, prefix, **fit_kwargs):
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, **fit_kwargs)
    out = {"loss": history.history["loss"], "evaluate": model.evaluate(x, y, verbose=0),
           "predict": model.predict(x, batch_size=16, verbose=0)}
    out.update({f"w{i}": w for i, w in enumerate(model.get_weights())})
    return _prefixed(prefix, {k: np.asarray(v) for k, v in out.items()})


def run_model_parallel(out_path):
    import jax

    import kilnet
    from kilnet.distribution import DeviceMesh

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype(np.float32)
    y = rng.normal(size=(64, 10)).astype(np.float32)
    mesh = DeviceMesh(shape=(2, 2), axis_names=["data", "model"])
    results = {}

    # kilnet's ModelParallel against one device, Dropout and Adam included
    for name, dist in (("one", None), ("mp", guide_layouts(kilnet, mesh))):
        kilnet.utils.set_random_seed(SEED)
        model = guide_model(kilnet, dist)
        results.update(_guide_run(model, x, y, f"guide/{name}", seed=SEED))
    state = model.compiled.state
    results["guide/kernel_shards"] = np.array(
        [s.data.shape for s in state.params["d1"]["kernel"].addressable_shards])
    results["guide/slot_specs"] = np.array([
        str(leaf.sharding.spec) for path, leaf in jax.tree_util.tree_leaves_with_path(
            state.opt_state) if jax.tree_util.keystr(path).endswith("['d1']['kernel']")])
    results["guide/d2_spec"] = np.array(str(state.params["d2"]["kernel"].sharding.spec))

    results.update(_against_keras(x, y))
    results.update(_jax_guide())
    results.update(_model_parallel_files(mesh, x, y, model))
    results["errors"] = np.array(_model_parallel_errors(mesh, x, y))
    np.savez(out_path, **results)


def _against_keras(x, y):
    """Keras 3's own ModelParallel (JAX backend) on the same mesh and layouts, from the same
    weights, plain SGD, no dropout, no shuffling: kilnet's must train the same."""
    import keras

    import kilnet

    keras.utils.set_random_seed(SEED)
    keras_mesh = keras.distribution.DeviceMesh(shape=(2, 2), axis_names=["data", "model"])
    keras.distribution.set_distribution(guide_layouts(keras, keras_mesh))
    try:
        theirs = guide_model(keras, rate=0.0, optimizer=keras.optimizers.SGD(0.1))
        start = theirs.get_weights()
        out = _guide_run(theirs, x, y, "keras/theirs", shuffle=False)
        out["keras/theirs_kernel_spec"] = np.array(str(theirs.layers[2].kernel.value.sharding
                                                       .spec))
    finally:
        keras.distribution.set_distribution(None)
    mesh = kilnet.distribution.DeviceMesh(shape=(2, 2), axis_names=["data", "model"])
    ours = guide_model(kilnet, guide_layouts(kilnet, mesh), rate=0.0,
                       optimizer=kilnet.optimizers.SGD(0.1))
    ours.set_weights(start)
    out.update(_guide_run(ours, x, y, "keras/ours", shuffle=False))
    return out


def _jax_guide():
    """Keras's "Distributed training with JAX" guide as written (tests/
    test_jax_distributed_guide.py), Dropout and BatchNormalization training, its batches
    split over 4 devices and over 1."""
    import jax

    from test_jax_distributed_guide import train_as_the_guide

    out = {}
    for name, devices in (("four", jax.devices()), ("one", jax.devices()[:1])):
        losses, weights, non_trainable = train_as_the_guide(devices=devices)
        out[f"jax_guide/{name}/loss"] = np.asarray(losses)
        out.update({f"jax_guide/{name}/w{i}": w for i, w in enumerate(weights)})
        out.update({f"jax_guide/{name}/n{i}": v for i, v in enumerate(non_trainable)})
    return out


def _model_parallel_files(mesh, x, y, trained):
    """A model trained split over the mesh, saved, loaded on one device (the same
    predictions) and loaded under set_distribution (training continues as the original's)."""
    import tempfile

    import kilnet
    from kilnet.models import load_model

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mp.kilnet")
        trained.save(path)
        on_one = load_model(path)
        out["file/one_devices"] = np.asarray(on_one.compiled.distribution is None)
        out["file/one_predict"] = on_one.predict(x, verbose=0)
        out["file/original_predict"] = trained.predict(x, verbose=0)
        with guide_layouts(kilnet, mesh).scope():
            loaded = load_model(path)
        out["file/loaded_kind"] = np.array(type(loaded.compiled.distribution).__name__)
        for label, model in (("loaded", loaded), ("original", trained)):
            history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
            out[f"file/{label}/loss"] = np.asarray(history.history["loss"])
            for i, w in enumerate(model.get_weights()):
                out[f"file/{label}/w{i}"] = w
    return out


def _model_parallel_errors(mesh, x, y):
    """The messages of what ModelParallel refuses, in order (see the test)."""
    import kilnet
    from kilnet.distribution import LayoutMap, ModelParallel

    def message(action):
        try:
            action()
        except (ValueError, TypeError) as error:
            return str(error)
        return "no error"

    def layouts(**keys):
        layout_map = LayoutMap(mesh)
        for key, axes in keys.items():
            layout_map[key.replace("__", "/")] = axes
        return ModelParallel(layout_map=layout_map, batch_dim_name="data")

    def fit(dist, batch_size=16):
        guide_model(kilnet, dist).fit(x, y, batch_size=batch_size, epochs=1, verbose=0)

    def fit_odd_units():   # 3 units cannot be split over 2 devices
        inputs = kilnet.Input((4,))
        model = kilnet.Model(inputs, kilnet.layers.Dense(3, name="odd")(inputs))
        model.compile(loss="mse", distribution=layouts(odd__kernel=(None, "model")))
        model.fit(x[:, 0, :4, 0], y[:, :3], batch_size=16, epochs=1, verbose=0)

    layout_map = LayoutMap(mesh)
    layout_map["d1/kernel"] = (None, "model")
    return [
        message(lambda: fit(layouts(d1__kernel=(None, "model")), batch_size=15)),
        message(lambda: fit(layouts(d1__kernel=("model",)))),
        message(fit_odd_units),
        message(lambda: layouts(d1__kernel=(None, "tensor"))),
        message(lambda: layout_map.__setitem__("d1/kernel", ("model", None))),
        message(lambda: fit(layouts(**{"d1.*": (None, "model"), ".*kernel": (None, "model")}))),
        message(lambda: ModelParallel(layout_map=layout_map, batch_dim_name="batch")),
    ]


def one_weights(results):
    return [results[f"w{i}"] for i in range(sum(k.startswith("w") for k in results))]


def run_process(port, process_id, num_processes, out_path):
    import jax

    from kilnet import distribution

    if process_id == 0:   # kilnet's arguments
        distribution.initialize(f"127.0.0.1:{port}", num_processes, process_id,
                                timeout_seconds=60)
    else:   # Keras's environment variables, every process's address
        os.environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"] = ",".join(
            f"127.0.0.1:{port + i}" for i in range(num_processes))
        os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"] = str(num_processes)
        os.environ["KERAS_DISTRIBUTION_PROCESS_ID"] = str(process_id)
        distribution.initialize(timeout_seconds=60)
    x, y = make_data()
    xv, yv = make_data(23, seed=1)
    shard = distribution.process_shard
    # No distribution given: a multi-process run defaults to DataParallel over all devices.
    model, results = train(None, shard(x), shard(y), validation_data=(shard(xv), shard(yv)))
    results["process_index"] = np.asarray(jax.process_index())
    results["is_chief"] = np.asarray(distribution.is_chief())
    results["global_devices"] = np.asarray(jax.device_count())
    results["local_rows"] = np.asarray(len(shard(x)))
    results["num_devices"] = np.asarray(model.compiled.distribution.num_devices)
    np.savez(out_path, **results)
    jax.distributed.shutdown()


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "devices":
        run_devices(sys.argv[2])
    elif scenario == "model":
        run_model_parallel(sys.argv[2])
    elif scenario == "process":
        run_process(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
