"""What kilnet's input checks cost, against the fit they protect.

    python bench/check_cost.py               # 60,000 x 28 x 28, 5 epochs, 7 repeats of the checks
    python bench/check_cost.py --epochs 1 --repeats 3

Times the checks fit() runs on its data before compiling (kilnet.validation.check_fit_inputs,
then check_targets once the model is built) on an MNIST-sized float32 array and on the same
data as uint8, and a 5-epoch fit of the seed MLP (Flatten, Dense 128 relu, Dense 10 softmax;
adam, batch 32) on the float32 data, the whole fit() call as a user sees it (compile included)
and a second, warm fit. The data is synthetic: the checks and the epoch cost the same on
random values as on MNIST's. Prints one table; the target is checks < 5% of the fit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import kilnet  # noqa: E402
from kilnet import layers, validation  # noqa: E402


def seed_mlp():
    model = kilnet.Sequential([layers.Flatten(input_shape=(28, 28)),
                               layers.Dense(128, activation="relu"),
                               layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def time_checks(model, x, y, repeats):
    """Median seconds of the checks fit() runs, as fit() calls them."""
    loss = model.compiled.loss
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the uint8 case warns (no Rescaling layer)
            cx, cy, val, _ = validation.check_fit_inputs(
                model, loss, x, y, batch_size=32, epochs=5, validation_split=0.0,
                validation_data=None, initial_epoch=0, verbose=0)
            validation.check_targets(model, loss, cy, val)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((args.samples, 28, 28), dtype=np.float32)
    x_uint8 = (x * 255).astype(np.uint8)
    y = rng.integers(0, 10, args.samples).astype(np.int64)

    model = seed_mlp()
    began = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, seed=0)
    fit_cold = time.perf_counter() - began
    began = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, seed=0)
    fit_warm = time.perf_counter() - began

    checks = {"float32": time_checks(model, x, y, args.repeats),
              "uint8": time_checks(model, x_uint8, y, args.repeats)}

    print(f"input checks vs a {args.epochs}-epoch seed-MLP fit, {args.samples:,} x 28 x 28 "
          f"(checks: median of {args.repeats})")
    print(f"{'x dtype':<10}{'checks ms':>11}{'fit s (cold)':>14}{'% of cold':>11}"
          f"{'fit s (warm)':>14}{'% of warm':>11}")
    for name, seconds in checks.items():
        print(f"{name:<10}{seconds * 1e3:>11.1f}{fit_cold:>14.2f}{100 * seconds / fit_cold:>10.1f}%"
              f"{fit_warm:>14.2f}{100 * seconds / fit_warm:>10.1f}%")
    print("target: < 5%")


if __name__ == "__main__":
    main()
