"""What `kilnet train` trains: the datasets it loads by name or path, and its two models.

Kept apart from kilnet/cli.py (argument parsing, exit codes, commands) so each reads alone.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

NAMED_DATASETS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist",
                  "fashion-mnist": "fashion_mnist"}
MODELS = ("mlp", "cnn")
# What each class id means, as the datasets document them.
CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


@dataclass
class Dataset:
    name: str      # "mnist", "fashion_mnist", or the file's stem
    source: str    # where the arrays came from, for config.json
    train: tuple   # (x, y) uint8
    test: tuple
    class_names: list | None = None  # class id -> name, when the dataset names its classes


def load_dataset(spec: str) -> Dataset:
    """A named dataset (through its loader and cache) or a .npz / IDX folder path."""
    from kilnet import datasets
    from kilnet.datasets import OfflineSubsetWarning

    key = spec.strip().lower()
    if key not in NAMED_DATASETS:
        path = Path(spec).expanduser()
        if not path.exists():
            if os.sep not in spec and not path.suffix:
                raise ValueError(f"unknown dataset {spec!r}: expected mnist, fashion_mnist, or "
                                 "the path of a .npz file or a folder of IDX files")
            raise FileNotFoundError(f"--dataset {spec}: no such file or folder")
        train, test = datasets.mnist.load_data(path=path)
        name = path.stem if path.is_file() else path.name
        return Dataset(name or "data", str(path.resolve()), train, test)

    name = NAMED_DATASETS[key]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, test = getattr(datasets, name).load_data()
    offline = any(issubclass(w.category, OfflineSubsetWarning) for w in caught)
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return Dataset(name, _named_source(name, offline), train, test, CLASS_NAMES.get(name))


def recorded_dataset(config: dict) -> str | None:
    """What to pass to load_dataset for the data a run folder's config.json recorded: the
    dataset's name, or the absolute path of its file or folder.

    >>> recorded_dataset({"dataset": {"name": "fashion_mnist", "spec": "fashion-mnist"}})
    'fashion-mnist'
    >>> recorded_dataset({"dataset": {"name": "tiny", "spec": "tiny.npz",
    ...                               "source": "/data/tiny.npz"}})
    '/data/tiny.npz'
    """
    dataset = config.get("dataset") or {}
    spec = dataset.get("spec") or (config.get("options") or {}).get("dataset")
    if spec is None:
        return None
    if str(spec).strip().lower() in NAMED_DATASETS:
        return spec
    return dataset.get("source") or spec  # a path: the resolved one, as it was found


def _named_source(name: str, offline: bool) -> str:
    from kilnet.datasets import cache_dir, fashion_mnist, mnist

    if os.environ.get("KILNET_DATA"):
        return f"KILNET_DATA={os.environ['KILNET_DATA']}"
    if offline:  # kilnet.datasets.mnist's fallback when MNIST cannot be downloaded
        return (f"offline subset of MNIST: 5,000 of its real digits, not all 70,000; "
                f"{cache_dir() / mnist.SUBSET_FILE}")
    if name == "mnist":
        return str(cache_dir() / "mnist" / "mnist.npz")
    folder = cache_dir() / "fashion-mnist"
    cached = folder.is_dir() and len(list(folder.glob("*-ubyte.gz"))) == 4
    return str(folder if cached else fashion_mnist.SYSTEM_DIR)


def scale_images(x):
    """uint8 images -> float32 in [0, 1], as the seed tutorial does before fit."""
    import numpy as np

    return np.asarray(x, np.float32) / np.float32(255.0)


def build_model(kind: str, num_classes: int = 10):
    """The two architectures `kilnet train --model` offers, for 28x28 images."""
    import kilnet
    from kilnet import layers

    if kind == "mlp":
        return kilnet.Sequential([
            layers.Flatten(input_shape=(28, 28)),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ], name="mlp")
    if kind == "cnn":  # keras.io/examples/vision/mnist_convnet
        return kilnet.Sequential([
            layers.Reshape((28, 28, 1), input_shape=(28, 28)),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ], name="cnn")
    raise ValueError(f"unknown model {kind!r}: expected one of {', '.join(MODELS)}")


def compile_model(model, learning_rate=0.001):
    import kilnet

    model.compile(optimizer=kilnet.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def load_model(path: Path):
    """A model.kilnet file, or a run folder holding one."""
    from kilnet import run_dir

    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / run_dir.MODEL).is_file():
            raise FileNotFoundError(f"{path}: a folder without a {run_dir.MODEL} (expected a "
                                    "model file or a run folder of kilnet train)")
        path = path / run_dir.MODEL
    elif not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    from kilnet.models import load_model as load

    return load(path)


def _ensure_accuracy(model):
    """A loaded model may come uncompiled, or compiled without accuracy: evaluate needs it."""
    trainer = model.compiled
    if trainer is None or "accuracy" not in getattr(trainer, "metric_ids", []):
        compile_model(model)


def format_metrics(logs: dict, prefix="test") -> str:
    return " - ".join(f"{prefix} {name.replace('_', ' ')}: {value:.4f}"
                      for name, value in logs.items())
