"""The word-index sequence processing that Keras's IMDB and Reuters loaders share.

Each step reproduces Keras's loaders exactly, quirks included, so that the
same arguments give the same arrays as `keras.datasets.imdb.load_data`:

- shuffling uses `np.random.RandomState(seed)` (IMDB draws the train and then
  the test permutation from one generator);
- `maxlen` keeps the sequences *shorter* than `maxlen`, counting the start
  character, and drops the rest (it does not truncate);
- with `num_words=None` the limit becomes the largest index seen, which
  itself is then out of vocabulary (`skip_top <= w < num_words`).
"""

import json
import numbers

import numpy as np

from ._idx import DatasetError


def check_arguments(**arguments) -> None:
    """Refuses values Keras's loaders would mis-handle, naming the argument.

    Example:

    >>> check_arguments(num_words=10, skip_top=0, maxlen=None, start_char=1,
    ...                 oov_char=2, index_from=3)
    """
    rules = {
        "num_words": (1, True), "maxlen": (1, True), "skip_top": (0, False),
        "index_from": (0, False), "start_char": (0, True), "oov_char": (0, True),
    }
    for name, value in arguments.items():
        least, may_be_none = rules[name]
        if value is None and may_be_none:
            continue
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < least:
            kind = f"an integer >= {least}" + (" or None" if may_be_none else "")
            raise ValueError(f"Expected {name} to be {kind}. Received: {name}={value!r}")


def check_sequences(x, y, x_name: str, y_name: str) -> None:
    """Checks a file's arrays: `x` a 1-D array of lists, `y` as many integer labels.

    Example:

    >>> x = np.empty(2, dtype=object)
    >>> x[:] = [[1, 2], [3]]
    >>> check_sequences(x, np.array([0, 1]), "x", "y")
    """
    if x.ndim != 1 or x.dtype != object or not all(isinstance(s, list) for s in x):
        raise DatasetError(f"{x_name}: expected a 1-D object array of lists of word indices.")
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
        raise DatasetError(
            f"{y_name}: expected {len(x)} integer labels, found {y.dtype} {y.shape}."
        )


def shuffle(rng: np.random.RandomState, x, y):
    """Both arrays in the order of one permutation drawn from `rng`, as Keras draws it.

    Example:

    >>> shuffle(np.random.RandomState(0), np.arange(3), np.arange(3))[0].shape
    (3,)
    """
    indices = np.arange(len(x))
    rng.shuffle(indices)
    return x[indices], y[indices]


def offset(sequences, start_char, index_from: int, name: str) -> list:
    """Shifts every index by `index_from` and prepends `start_char` (unless None).

    Example:

    >>> offset([[1, 2]], 1, 3, "x")
    [[1, 4, 5]]
    """
    head = [] if start_char is None else [start_char]
    try:
        return [head + [w + index_from for w in seq] for seq in sequences]
    except TypeError as error:
        raise DatasetError(f"{name}: expected lists of integer word indices ({error}).") from None


def drop_long(maxlen, sequences: list, labels):
    """Keeps the sequences shorter than `maxlen` (all when None) and their labels.

    Example:

    >>> drop_long(3, [[1, 2], [1, 2, 3]], np.array([0, 1]))
    ([[1, 2]], array([0]))
    """
    if maxlen is None:
        return sequences, labels
    keep = np.array([len(seq) < maxlen for seq in sequences], dtype=bool)
    return [seq for seq, k in zip(sequences, keep) if k], labels[keep]


def limit_vocabulary(sequences: list, num_words, skip_top: int, oov_char) -> list:
    """Replaces (or drops, when `oov_char` is None) indices outside `[skip_top, num_words)`.

    Example:

    >>> limit_vocabulary([[1, 5, 9]], 6, 2, 2)
    [[2, 5, 2]]
    """
    if num_words is None:
        # As Keras: the largest index seen, which then falls outside the range.
        num_words = max((max(seq) for seq in sequences if seq), default=0)
    if oov_char is None:
        return [[w for w in seq if skip_top <= w < num_words] for seq in sequences]
    return [[w if skip_top <= w < num_words else oov_char for w in seq] for seq in sequences]


def object_array(sequences: list) -> np.ndarray:
    """A 1-D object array of the lists, even when all have the same length.

    Example:

    >>> object_array([[1, 2], [3, 4]]).shape
    (2,)
    """
    array = np.empty(len(sequences), dtype=object)
    for i, seq in enumerate(sequences):
        array[i] = seq
    return array


def read_word_index(file):
    """Reads a `{word: index}` JSON file, checking that it is one.

    Example:

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "index.json")
    >>> with open(file, "w") as f:
    ...     _ = f.write('{"cat": 7}')
    >>> read_word_index(file)
    {'cat': 7}
    """
    try:
        with open(file, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{file}: cannot read it as a JSON word index ({error}).") from error
    if not isinstance(index, dict) or not all(
        isinstance(word, str) and isinstance(i, int) for word, i in index.items()
    ):
        raise DatasetError(f"{file}: expected a JSON object mapping words to integer indices.")
    return index
