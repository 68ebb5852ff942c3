"""Reuters newswires: 11,228 newswires over 46 topics, as lists of word indices.

Words are ranked by frequency (index 1 is the most frequent); the topic
names are `get_label_names()`. The loader reads Keras's `reuters.npz`
without `allow_pickle` and splits it as Keras does.
"""

import numpy as np

from . import _remote, _sequences
from ._safe_npz import load_npz
from ._tabular import check_test_split

URL_ENV = "KILNET_REUTERS_URL"
# Hashes published by Keras (keras/src/datasets/reuters.py). Keras gives only
# MD5 for the word index, so it is checked with MD5.
DATA = _remote.Remote(
    "reuters", "reuters.npz", "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916",
    _remote.KERAS_URL, URL_ENV,
)
WORD_INDEX = _remote.Remote(
    "reuters", "reuters_word_index.json", "4d44cc38712099c9e383dc6e5f11a921",
    _remote.KERAS_URL, URL_ENV,
)
# The topic of each label, in label order (Keras's `get_label_names`).
LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing",
    "money-supply", "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass",
    "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum",
    "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi",
    "iron-steel", "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem",
    "dlr", "gas", "silver", "wpi", "hog", "lead",
)


def load_data(path="reuters.npz", num_words=None, skip_top=0, maxlen=None, test_split=0.2,
              seed=113, start_char=1, oov_char=2, index_from=3, *, base_url=None):
    """Loads Reuters as `(x_train, y_train), (x_test, y_test)`, like Keras.

    `x_*` are 1-D object arrays of lists of word indices and `y_*` integer
    topic labels (0-45). As in Keras the newswires are shuffled with `seed`,
    processed as `kilnet.datasets.imdb.load_data` describes, and the first
    `int(n * (1 - test_split))` become the training set.

    `path`: a bare file name is the file's name in kilnet's cache, as in Keras;
    a path with a folder names your own copy. Without one,
    `$KILNET_DATA/reuters.npz` (or `$KILNET_DATA/reuters/reuters.npz`) is used
    when it exists, else the verified cache entry, else a download from
    `base_url`, `$KILNET_REUTERS_URL` or Keras's mirror.

    Example:

    >>> import os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "reuters.npz")
    >>> wires = np.empty(5, dtype=object)
    >>> wires[:] = [[1, 2], [3], [4, 5, 6], [7], [8, 9]]
    >>> np.savez(file, x=wires, y=np.array([3, 4, 3, 1, 19]))
    >>> (x_train, y_train), (x_test, y_test) = load_data(path=file)
    >>> len(x_train), len(x_test), y_train.dtype
    (4, 1, dtype('int64'))
    """
    _sequences.check_arguments(num_words=num_words, skip_top=skip_top, maxlen=maxlen,
                               start_char=start_char, oov_char=oov_char, index_from=index_from)
    check_test_split(test_split)
    file = _remote.locate(DATA, path, base_url)
    arrays = load_npz(file, ("x", "y"))
    _sequences.check_sequences(arrays["x"], arrays["y"], f"{file}['x']", f"{file}['y']")
    x, y = _sequences.shuffle(np.random.RandomState(seed), arrays["x"], arrays["y"])
    x = _sequences.offset(x, start_char, index_from, f"{file}['x']")
    x, y = _sequences.drop_long(maxlen, x, y)
    x = _sequences.limit_vocabulary(x, num_words, skip_top, oov_char)
    split = int(len(x) * (1 - test_split))
    return ((_sequences.object_array(x[:split]), y[:split]),
            (_sequences.object_array(x[split:]), y[split:]))


def get_word_index(path="reuters_word_index.json", *, base_url=None):
    """Returns Keras's Reuters word index, `{word: index}` (index 1 = most frequent word).

    To read a loaded sequence, subtract `index_from` (3 by default) from each
    index; `path` and the sources work as in `load_data`.

    Example:

    >>> import json, os, tempfile
    >>> file = os.path.join(tempfile.mkdtemp(), "reuters_word_index.json")
    >>> with open(file, "w") as f:
    ...     json.dump({"the": 1, "of": 2}, f)
    >>> get_word_index(path=file)["of"]
    2
    """
    return _sequences.read_word_index(_remote.locate(WORD_INDEX, path, base_url))


def get_label_names():
    """Returns the 46 topic names, indexed by label, as Keras does.

    Example:

    >>> names = get_label_names()
    >>> len(names), names[3]
    (46, 'earn')
    """
    return LABEL_NAMES
