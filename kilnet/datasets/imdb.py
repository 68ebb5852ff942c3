"""IMDB movie reviews: 25,000 training and 25,000 test reviews, labelled by sentiment.

Each review is a list of word indices, words ranked by frequency (index 1 is
the most frequent word in the training set); labels are 0 (negative) and
1 (positive). The loader reads Keras's `imdb.npz` without `allow_pickle`.
"""

import numpy as np

from . import _remote, _sequences
from ._safe_npz import load_npz

URL_ENV = "KILNET_IMDB_URL"
# Hashes published by Keras (keras/src/datasets/imdb.py). Keras gives only MD5
# for the word index, so it is checked with MD5.
DATA = _remote.Remote(
    "imdb", "imdb.npz", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
    _remote.KERAS_URL, URL_ENV,
)
WORD_INDEX = _remote.Remote(
    "imdb", "imdb_word_index.json", "bfafd718b763782e994055a2d397834f",
    _remote.KERAS_URL, URL_ENV,
)
KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_data(path="imdb.npz", num_words=None, skip_top=0, maxlen=None, seed=113,
              start_char=1, oov_char=2, index_from=3, *, base_url=None):
    """Loads IMDB as `(x_train, y_train), (x_test, y_test)`, like Keras.

    `x_*` are 1-D object arrays of lists of word indices and `y_*` integer
    labels. The arguments mean what they mean in Keras: shuffle with `seed`,
    mark each start with `start_char`, shift real words by `index_from`, keep
    only sequences shorter than `maxlen`, and replace words outside
    `[skip_top, num_words)` with `oov_char` (drop them when it is None).

    `path`: a bare file name is the file's name in kilnet's cache, as in Keras;
    a path with a folder (`"./imdb.npz"`, `"/data/imdb.npz"`) names your own
    copy. Without one, `$KILNET_DATA/imdb.npz` (or `$KILNET_DATA/imdb/imdb.npz`)
    is used when it exists, else the verified cache entry, else a download from
    `base_url`, `$KILNET_IMDB_URL` or Keras's mirror (not when `KILNET_OFFLINE=1`).

    Example:

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "imdb.npz")
    >>> reviews = np.empty(3, dtype=object)
    >>> reviews[:] = [[1, 14, 22], [1, 5], [7, 1, 9, 2]]
    >>> np.savez(file, x_train=reviews, y_train=np.array([1, 0, 1]),
    ...          x_test=reviews, y_test=np.array([0, 0, 1]))
    >>> (x_train, y_train), (x_test, y_test) = load_data(path=file)
    >>> x_train.shape, sorted(len(review) for review in x_train)
    ((3,), [3, 4, 5])
    """
    _sequences.check_arguments(num_words=num_words, skip_top=skip_top, maxlen=maxlen,
                               start_char=start_char, oov_char=oov_char, index_from=index_from)
    arrays = _read(_remote.locate(DATA, path, base_url))
    rng = np.random.RandomState(seed)
    parts = [_sequences.shuffle(rng, arrays[x], arrays[y]) for x, y in (KEYS[:2], KEYS[2:])]
    processed = []
    for (x, y), name in zip(parts, ("x_train", "x_test")):
        x = _sequences.offset(x, start_char, index_from, name)
        processed.append(_sequences.drop_long(maxlen, x, y))
    if maxlen is not None and not all(x for x, _ in processed):
        raise ValueError(
            f"After dropping the sequences not shorter than maxlen={maxlen}, one of the "
            "splits is empty. Increase maxlen."
        )
    (x_train, y_train), (x_test, y_test) = processed
    limited = _sequences.limit_vocabulary(x_train + x_test, num_words, skip_top, oov_char)
    split = len(x_train)
    return ((_sequences.object_array(limited[:split]), y_train),
            (_sequences.object_array(limited[split:]), y_test))


def get_word_index(path="imdb_word_index.json", *, base_url=None):
    """Returns Keras's IMDB word index, `{word: index}` (index 1 = most frequent word).

    To read a loaded sequence, subtract `index_from` (3 by default) from each
    index; `path` and the sources work as in `load_data`.

    Example:

    >>> import json, os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "imdb_word_index.json")
    >>> with open(file, "w") as f:
    ...     json.dump({"the": 1, "and": 2}, f)
    >>> get_word_index(path=file)["and"]
    2
    """
    return _sequences.read_word_index(_remote.locate(WORD_INDEX, path, base_url))


def _read(file) -> dict:
    arrays = load_npz(file, KEYS)
    for x, y in (KEYS[:2], KEYS[2:]):
        _sequences.check_sequences(arrays[x], arrays[y], f"{file}[{x!r}]", f"{file}[{y!r}]")
    return arrays
