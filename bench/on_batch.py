"""The per-batch calls of a training loop written by hand (a GAN's, a reinforcement learner's):
train_on_batch, test_on_batch, predict_on_batch and model(x), kilnet against Keras 3 on JAX.

    python3 bench/on_batch.py [--frameworks kilnet,keras-jax] [--calls 300] [--repeats 3]

Each framework runs in its own process (alternating, `--repeats` times), builds the seed MLP
(784-128-10, Adam, sparse cross-entropy, accuracy) and times each call on one batch of 32
after a warm-up, and times the eager call of Keras's Atari Q-network example (three
convolutions, two Dense layers) on one 84x84x4 state, as its action loop makes it;
the table shows the median microseconds a call over the repeats and each
peer's ratio to kilnet (above 1: kilnet is faster). Interpreters as bench.py's: the repo's
.venv for kilnet, bench/.venv-peers (or KILNET_BENCH_PEERS_PYTHON) for Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (interpreters, environments, the machine's description)

CALLS = ("train_on_batch", "test_on_batch", "predict_on_batch", "model(x)", "q_network(state)")
RESULT = "ON_BATCH_RESULT "


def measure(framework: str, calls: int) -> dict:
    """In the child: microseconds a call (median of `calls`) for each of CALLS."""
    if framework == "kilnet":
        import kilnet as lib
    else:
        os.environ["KERAS_BACKEND"] = framework.split("-", 1)[1]
        import keras as lib
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.random((32, 784), dtype=np.float32)
    y = rng.integers(0, 10, 32).astype(np.int32)
    model = lib.Sequential([lib.Input((784,)), lib.layers.Dense(128, activation="relu"),
                            lib.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    work = {"train_on_batch": lambda: model.train_on_batch(x, y),
            "test_on_batch": lambda: model.test_on_batch(x, y),
            "predict_on_batch": lambda: model.predict_on_batch(x),
            "model(x)": lambda: np.asarray(model(x)),
            "q_network(state)": _q_network_call(lib, rng)}
    result = {}
    for name in CALLS:
        for _ in range(20):   # compilation, caches
            work[name]()
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            work[name]()
            times.append(time.perf_counter() - began)
        result[name] = statistics.median(times) * 1e6
    return result


def _q_network_call(lib, rng):
    """Keras's "Deep Q-Learning for Atari Breakout" network and its action step's call."""
    import numpy as np
    layers = lib.layers
    inputs = layers.Input(shape=(84, 84, 4))
    x = layers.Conv2D(32, 8, strides=4, activation="relu")(inputs)
    x = layers.Conv2D(64, 4, strides=2, activation="relu")(x)
    x = layers.Conv2D(64, 3, strides=1, activation="relu")(x)
    x = layers.Dense(512, activation="relu")(layers.Flatten()(x))
    model = lib.Model(inputs, layers.Dense(4, activation="linear")(x))
    state = rng.random((1, 84, 84, 4), dtype="float32")
    return lambda: np.asarray(model(state, training=False))


def run_child(framework: str, calls: int) -> dict:
    env = bench.child_env(framework)
    done = subprocess.run([bench.interpreter(framework), os.path.abspath(__file__), "--child",
                           framework, "--calls", str(calls)], env=env, capture_output=True,
                          text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT):])
    raise RuntimeError(f"{framework} gave no result:\n{done.stderr[-2000:]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="kilnet,keras-jax")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(RESULT + json.dumps(measure(args.child, args.calls)), flush=True)
        return 0
    frameworks = args.frameworks.split(",")
    runs = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        for framework in bench.rotated(frameworks, repeat):
            runs[framework].append(run_child(framework, args.calls))
    info = bench.machine_info()
    print(f"{info['cpu']}, {info['cores_usable']} usable cores; median us a call over "
          f"{args.repeats} processes of {args.calls} calls each (batch 32, 784-128-10 MLP; the Q-network on one state)")
    header = "| call | " + " | ".join(frameworks) + " |"
    print(header)
    print("|---" * (len(frameworks) + 1) + "|")
    for name in CALLS:
        medians = {f: statistics.median(r[name] for r in runs[f]) for f in frameworks}
        cells = [f"{medians[frameworks[0]]:.0f}"]
        cells += [f"{medians[f]:.0f} ({medians[f] / medians[frameworks[0]]:.2f}x)"
                  for f in frameworks[1:]]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
