"""Runs kilnet on several CPU devices, in a subprocess of tests/test_distribution.py.

JAX fixes its device count when it starts, and the pytest process has already started with one
CPU device, so the multi-device runs happen here, with XLA's forced host device count:

    python tests/_dist_worker.py devices OUT.npz
        one process, 4 CPU devices: 1-device vs 4- and 2-device training, the batch-size
        policy, weights moved between 1 and 4 devices
    python tests/_dist_worker.py process PORT PROCESS_ID NUM_PROCESSES OUT.npz
        one process (2 CPU devices) of a jax.distributed run over 127.0.0.1:PORT; trains on its
        own shard of the data

Results go to OUT.npz as plain arrays; the test compares them. The helpers `make_data`,
`make_model` and `train` are imported by the test for its one-device reference.
"""

from __future__ import annotations

import os
import sys

DEVICES = {"devices": 4, "process": 2}

if __name__ == "__main__":
    # Before JAX starts: the device count, the CPU backend, no persistent compilation cache
    # (tests must not depend on, or fill, the user's cache).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_"
                               f"device_count={DEVICES[sys.argv[1]]}").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["KILNET_COMPILATION_CACHE"] = "0"

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


def one_weights(results):
    return [results[f"w{i}"] for i in range(sum(k.startswith("w") for k in results))]


def run_process(port, process_id, num_processes, out_path):
    import jax

    from kilnet import distribution

    distribution.initialize(f"127.0.0.1:{port}", num_processes, process_id, timeout_seconds=60)
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
    elif scenario == "process":
        run_process(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
