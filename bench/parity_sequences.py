"""Accuracy parity of kilnet and Keras 3 (JAX) on two sequence tasks, same data, same seeds.

    .venv/bin/python bench/parity_sequences.py              # both tasks, seeds 0-9 (~3 min)
    .venv/bin/python bench/parity_sequences.py --tasks timeseries --seeds 0

Why: the benchmark tables show speed; this shows that kilnet trains the models a learner
builds next (a text classifier, a Conv1D timeseries classifier) to the accuracy Keras reaches.
Both frameworks run in this one process (kilnet from the working tree, Keras 3 on JAX from the
repo's .venv) on identical NumPy arrays; each run calls `set_random_seed(seed)` first. The
weights are drawn by each framework's own generator, so one seed is not one initialisation:
compare the means over seeds. Target: means within 1 point.

Tasks (synthetic, learnable, made with NumPy from a fixed seed):
  text        bench/_data.text_classification with 5 markers of the class and up to 4 of the
              other among 200 tokens (vocabulary 20,000): 5,000 train / 2,000 test.
              Embedding(20000, 16), GlobalAveragePooling1D, Dense 16 relu, Dense 1 sigmoid;
              adam, binary cross-entropy, batch 32, 4 epochs.
  timeseries  128-step univariate series of three classes (a sine burst, a square pulse, a
              linear ramp, each at a random position, amplitude and width, in Gaussian noise
              of standard deviation 1): 3,000 train / 1,000 test.
              Conv1D 16x7 relu, MaxPooling1D 2, Conv1D 32x5 relu, GlobalAveragePooling1D,
              Dense 3 softmax; adam, sparse categorical cross-entropy, batch 32, 15 epochs.
Prints each run's test accuracy and a summary, and one PARITY_RESULT {json} line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # bench/_data.py and the working tree's kilnet

import numpy as np  # noqa: E402

import _data  # noqa: E402

TASKS = ("text", "timeseries")


# -- data ---------------------------------------------------------------------------------------
def text_data(seed=0):
    return _data.text_classification(5_000, 2_000, seed=seed, own=5, other_max=4)


def timeseries_data(seed=0, n_train=3_000, n_test=1_000, length=128):
    """Class 0: a sine burst; 1: a square pulse; 2: a linear ramp; at a random place, width
    and amplitude, in unit Gaussian noise. Labels int32 in {0, 1, 2}; series (n, length, 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64)

    def make(n):
        y = rng.integers(0, 3, size=n)
        x = rng.normal(size=(n, length))
        width = rng.integers(16, 40, size=n)
        start = rng.integers(0, length - 40, size=n)
        amplitude = rng.uniform(1.0, 2.0, size=n)
        for i in range(n):
            inside = (t >= start[i]) & (t < start[i] + width[i])
            phase = (t - start[i]) / width[i]
            shape = (np.sin(2 * np.pi * 2 * phase), np.ones(length), 2 * phase - 1)[y[i]]
            x[i] += amplitude[i] * inside * shape
        return x[..., None].astype(np.float32), y.astype(np.int32)

    return make(n_train), make(n_test)


# -- models: the same code for both frameworks --------------------------------------------------
def text_model(keras, layers):
    return keras.Sequential([
        keras.Input(shape=(_data.TEXT_LENGTH,), dtype="int32"),
        layers.Embedding(_data.TEXT_VOCAB, 16),
        layers.GlobalAveragePooling1D(),
        layers.Dense(16, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ])


def timeseries_model(keras, layers):
    return keras.Sequential([
        keras.Input(shape=(128, 1)),
        layers.Conv1D(16, 7, activation="relu"),
        layers.MaxPooling1D(2),
        layers.Conv1D(32, 5, activation="relu"),
        layers.GlobalAveragePooling1D(),
        layers.Dense(3, activation="softmax"),
    ])


SETUPS = {
    # task: (data, model, loss, epochs, batch size)
    "text": (text_data, text_model, "binary_crossentropy", 4, 32),
    "timeseries": (timeseries_data, timeseries_model, "sparse_categorical_crossentropy", 15, 32),
}


def run(framework: str, task: str, seed: int, data) -> dict:
    if framework == "kilnet":
        import kilnet as keras
        from kilnet import layers
    else:
        import keras
        from keras import layers
    (x, y), (x_test, y_test) = data
    _, make_model, loss, epochs, batch_size = SETUPS[task]
    keras.utils.set_random_seed(seed)
    t0 = time.perf_counter()
    model = make_model(keras, layers)
    model.compile(optimizer="adam", loss=loss, metrics=["accuracy"])
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return {"framework": framework, "task": task, "seed": seed, "test_acc": float(accuracy),
            "train_acc": [round(float(a), 4) for a in history.history["accuracy"]],
            "seconds": round(time.perf_counter() - t0, 2)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated: text,timeseries")
    p.add_argument("--seeds", default="0,1,2,3,4,5,6,7,8,9", help="model seeds, comma-separated")
    p.add_argument("--data-seed", type=int, default=0)
    args = p.parse_args(argv)
    tasks = args.tasks.split(",")
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        p.error(f"--tasks must be among {','.join(TASKS)}. Received: {','.join(bad)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    results = []
    for task in tasks:
        data = SETUPS[task][0](args.data_seed)
        for seed in seeds:
            for framework in ("kilnet", "keras-jax"):
                r = run(framework, task, seed, data)
                results.append(r)
                print(f"{task:10s} seed {seed} {framework:9s} test acc {r['test_acc']:.4f}  "
                      f"train acc by epoch {' '.join(f'{a:.3f}' for a in r['train_acc'])}  "
                      f"({r['seconds']:.1f} s)", flush=True)
    print()
    summary = {}
    for task in tasks:
        means = {fw: statistics.mean(r["test_acc"] for r in results
                                     if r["task"] == task and r["framework"] == fw)
                 for fw in ("kilnet", "keras-jax")}
        gap = 100 * (means["kilnet"] - means["keras-jax"])
        summary[task] = {**means, "gap_points": gap}
        print(f"{task:10s} mean test acc over seeds {seeds}: kilnet {means['kilnet']:.4f}, "
              f"Keras 3 (JAX) {means['keras-jax']:.4f}: {gap:+.2f} points "
              f"({'within' if abs(gap) <= 1.0 else 'OUTSIDE'} 1 point)")
    print("PARITY_RESULT " + json.dumps({"results": results, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
