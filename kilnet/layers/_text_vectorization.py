"""TextVectorization: raw sentences -> token ids (or bag-of-words vectors), on the host.

Text never enters kilnet's compiled programs (they hold numbers only), so this layer is applied
to the data before training, the pattern of Keras's text classification tutorial:
`x_ids = vectorize_layer(sentences)` (or `ds.map(lambda x, y: (vectorize_layer(x), y))`), and
the model starts with `kilnet.Input(shape=(sequence_length,), dtype="int32")`.

It reproduces Keras's pipeline step by step without TensorFlow: standardize (ASCII lowercase as
tf.strings.lower, strip ASCII punctuation as Keras's regex), split (on the six ASCII whitespace
characters as tf.strings.split, or into characters), n-grams joined by spaces (all n-grams of
each width in turn, as tf.strings.ngrams), then a StringLookup with mask token "" (index 0, the
padding) and OOV token "[UNK]" (index 1).
"""

from __future__ import annotations

import itertools
import numbers
import re
import string

import numpy as np

from kilnet import _scope
from kilnet.layers._base import Layer, set_untracked
from kilnet.layers._encoding import refuse_sparse
from kilnet.layers._host_call import record_host_call, takes_strings
from kilnet.layers._lookup import StringLookup, as_text_array, host_only_message
from kilnet.layers._node import is_symbolic

_STANDARDIZE = ("lower_and_strip_punctuation", "lower", "strip_punctuation")
_SPLIT = ("whitespace", "character")
_MODES = ("int", "multi_hot", "count", "tf_idf")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)
_TOKEN = re.compile("[^ \t\n\v\f\r]+")


class TextVectorization(Layer):
    """Turns strings into int32 token ids (or int32 multi-hot / count, float32 tf-idf
    vectors), as `keras.layers.TextVectorization` on JAX; its `dtype` is "string".

    Args:
        max_tokens: the largest vocabulary size, padding "" and OOV "[UNK]" included.
        standardize: "lower_and_strip_punctuation" (default), "lower", "strip_punctuation",
            None, or a callable on a NumPy array of strings (in memory only: a config with a
            callable cannot be saved).
        split: "whitespace" (default), "character", None (inputs are already tokens, shape
            (batch, tokens)), or a callable taking a 1-D NumPy array of strings and returning
            one list of tokens per string.
        ngrams: None, an integer n (all n-grams of 1..n), or a tuple of widths.
        output_mode: "int" (default), "multi_hot", "count" or "tf_idf".
        output_sequence_length: "int" mode: pad with 0 or truncate every row to this length
            (default: pad to the longest row of the batch).
        pad_to_max_tokens: encoded outputs have max_tokens entries.
        vocabulary: a list of strings (a file path is refused); idf_weights for "tf_idf".
        sparse, ragged: only False. encoding: of bytes inputs (default "utf-8").

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.TextVectorization(output_sequence_length=4)
        >>> layer.adapt(np.array(["The cat sat.", "The dog sat!", "A dog"]))
        >>> layer.get_vocabulary()
        ['', '[UNK]', 'the', 'sat', 'dog', 'cat', 'a']
        >>> layer(np.array(["the Dog ran", "a cat"])).tolist()
        [[2, 4, 1, 0], [6, 5, 0, 0]]
    """

    runs_on_strings = True   # a model runs it on the host (kilnet.models._host_stage)

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation",
                 split="whitespace", ngrams=None, output_mode="int",
                 output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8",
                 vocabulary_size=None, **kwargs):
        super().__init__(**kwargs)
        _check_choice("standardize", standardize, _STANDARDIZE)
        _check_choice("split", split, _SPLIT)
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        if output_mode not in _MODES:
            raise ValueError(f"TextVectorization: output_mode must be one of {list(_MODES)} "
                             "(one_hot is not supported: use multi_hot, or int ids with "
                             f"CategoryEncoding). Received: output_mode={output_mode!r}")
        self.ngrams = _as_ngrams(ngrams)
        if output_sequence_length is not None and (
                output_mode != "int" or not isinstance(output_sequence_length, numbers.Integral)
                or isinstance(output_sequence_length, bool) or output_sequence_length < 1):
            raise ValueError("TextVectorization: output_sequence_length must be None or a "
                             "positive integer, and is only used with output_mode='int'. "
                             f"Received: output_sequence_length={output_sequence_length!r}, "
                             f"output_mode={output_mode!r}")
        refuse_sparse("TextVectorization", sparse)
        if ragged is not False:
            raise ValueError("TextVectorization: ragged=True is not supported (kilnet returns "
                             "padded arrays); leave ragged=False. Received: ragged="
                             f"{ragged!r}")
        self.standardize, self.split, self.output_mode = standardize, split, output_mode
        self.output_sequence_length = output_sequence_length
        self.sparse, self.ragged, self.encoding = False, False, encoding
        # The lookup is a helper, not a sub-layer: it has no weights and is saved in this
        # layer's config.
        set_untracked(self, "lookup_layer", StringLookup(
            max_tokens=max_tokens, mask_token="", output_mode=output_mode,
            pad_to_max_tokens=pad_to_max_tokens, vocabulary=vocabulary,
            idf_weights=idf_weights, encoding=encoding, vocabulary_size=vocabulary_size))

    # -- the text pipeline ---------------------------------------------------------------------
    def tokenize(self, data) -> list:
        """Standardize and split strings (a 1-D array, or (batch, 1)) into one token list per
        string, with n-grams; with split=None, the rows of a (batch, tokens) array.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> layer = kilnet.layers.TextVectorization(ngrams=2)
            >>> layer.tokenize(np.array(["Hello, World!"]))
            [['hello', 'world', 'hello world']]
        """
        text = as_text_array(data, self.encoding, "TextVectorization")
        if text.ndim == 0:
            raise ValueError("TextVectorization takes a batch of strings (a 1-D array). "
                             f"Received: a single string {str(text)!r}; wrap it in a list.")
        text = self._standardized(text)
        if self.split is None:
            rows = [list(row) for row in text.reshape(len(text), -1).tolist()]
        else:
            if text.ndim > 1:
                if text.shape[-1] != 1 or text.ndim > 2:
                    raise ValueError("TextVectorization splits a batch of strings: shape "
                                     f"(batch,) or (batch, 1). Received: shape {text.shape}")
                text = text.reshape(-1)
            rows = self._split(text)
        if self.ngrams is not None:
            rows = [_ngrams(row, self.ngrams) for row in rows]
        return rows

    def _standardized(self, text):
        if callable(self.standardize):
            # bytes (what tf.strings functions return) decoded as the inputs are
            return as_text_array(self.standardize(text), self.encoding,
                                 "TextVectorization's standardize")
        if self.standardize is None:
            return text
        lower = self.standardize in ("lower", "lower_and_strip_punctuation")
        strip = self.standardize in ("strip_punctuation", "lower_and_strip_punctuation")

        def one(s):
            if lower:
                s = s.translate(_ASCII_LOWER)
            return s.translate(_NO_PUNCTUATION) if strip else s

        return np.vectorize(one, otypes=[str])(text) if text.size else text

    def _split(self, text):
        if callable(self.split):
            return [[str(t) for t in row] for row in self.split(text)]
        if self.split == "whitespace":
            return [_TOKEN.findall(s) for s in text.tolist()]
        return [list(s) for s in text.tolist()]

    # -- vocabulary ----------------------------------------------------------------------------
    def adapt(self, data, batch_size=None, steps=None) -> None:
        """Build the vocabulary from strings: a 1-D array or list (one document each), or an
        iterable of batches (a generator, kilnet's datasets; (x, y) batches use x).

        Tokens are ranked by frequency, ties broken by the larger string first, as Keras."""
        if batch_size is not None:
            raise ValueError("TextVectorization.adapt: batch_size is not supported; pass an "
                             f"iterable of batches instead. Received: batch_size={batch_size!r}")
        self.lookup_layer.adapt_from_documents(
            itertools.islice(self._document_batches(data), steps))

    def _document_batches(self, data):
        if isinstance(data, (np.ndarray, list, tuple)) or hasattr(data, "__array__"):
            yield self.tokenize(np.asarray(data, dtype=object))
            return
        if not hasattr(data, "__iter__"):
            raise TypeError("TextVectorization.adapt takes strings: an array, a list or an "
                            f"iterable of batches. Received: {type(data).__name__}")
        for batch in data:
            if isinstance(batch, tuple):
                batch = batch[0]
            yield self.tokenize(np.asarray(batch, dtype=object))

    def get_vocabulary(self, include_special_tokens=True) -> list:
        """The vocabulary: "" (padding, index 0), "[UNK]" (index 1), then the tokens."""
        return self.lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self) -> int:
        return self.lookup_layer.vocabulary_size()

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Replace the vocabulary (and idf weights for output_mode="tf_idf")."""
        self.lookup_layer.set_vocabulary(vocabulary, idf_weights)

    # -- calling -------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if args and takes_strings((args, kwargs)) and _scope.current() is None:
            return record_host_call(self, args, kwargs)   # a model runs it on the host
        if is_symbolic((args, kwargs)) or _scope.current() is not None:
            raise TypeError(host_only_message("TextVectorization", "vectorize"))
        if not args:
            raise TypeError("TextVectorization was called without inputs; call it on strings.")
        return self.compute(args[0])

    def compute(self, data):
        """The layer's output for a batch of strings: int32 ids, int32 multi-hot or count
        vectors (as Keras's on JAX), or float32 tf-idf vectors."""
        lookup = self.lookup_layer
        rows = self.tokenize(data)
        flat = np.asarray([t for row in rows for t in row], dtype=str)
        ids = lookup.lookup(flat) if flat.size else np.zeros(0, np.int32)
        bounds = np.cumsum([0] + [len(row) for row in rows])
        if self.output_mode == "int":
            length = self.output_sequence_length or int(max(np.diff(bounds), default=0))
            out = np.zeros((len(rows), length), np.int32)
            for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
                row = ids[a:min(b, a + length)]
                out[i, :len(row)] = row
            return out
        return self._encoded(ids, bounds)

    def _encoded(self, ids, bounds):
        lookup = self.lookup_layer
        if not lookup.pad_to_max_tokens and not lookup.tokens:
            raise ValueError(f"TextVectorization with output_mode={self.output_mode!r} needs "
                             "its vocabulary first: call adapt(data) or pass vocabulary=[...].")
        rows = [lookup.encode(ids[a:b].reshape(1, -1)) for a, b in zip(bounds[:-1], bounds[1:])]
        dtype = lookup.compute_output_dtype(None)
        if not rows:
            return np.zeros((0, lookup.depth()), dtype)
        return np.concatenate(rows).astype(dtype)

    def compute_output_dtype(self, input_dtype):
        return self.lookup_layer.compute_output_dtype(input_dtype)

    # Keras reports "string", the input's type, as this layer's dtype; its dtype policy, which
    # configs hold, stays float32.
    @property
    def compute_dtype(self) -> str:
        """"string", as Keras's."""
        return "string"

    @property
    def variable_dtype(self) -> str:
        """"string", as Keras's."""
        return "string"

    def sample_output_shape(self, input_shape):
        if self.output_mode == "int":
            return (self.output_sequence_length,)
        depth = self.lookup_layer.vocabulary_size()
        return (self.lookup_layer.max_tokens if self.lookup_layer.pad_to_max_tokens else depth,)

    # -- Keras's saving hooks: those of its lookup, as Keras's ----------------------------------
    def save_own_variables(self, store) -> None:
        """The lookup's (Keras's layout): the idf weights with output_mode="tf_idf"."""
        self.lookup_layer.save_own_variables(store)

    def load_own_variables(self, store) -> None:
        """The idf weights a Keras file keeps with output_mode="tf_idf"."""
        self.lookup_layer.load_own_variables(store)

    def load_assets(self, dir_path) -> None:
        """An adapted vocabulary from a Keras file's asset vocabulary.txt (Keras writes a
        TextVectorization's vocabulary there, its config saying only its size)."""
        self.lookup_layer.load_assets(dir_path)

    # -- configuration -------------------------------------------------------------------------
    def get_config(self):
        for name in ("standardize", "split"):
            if callable(getattr(self, name)):
                raise ValueError(f"TextVectorization with a callable {name} cannot be saved: "
                                 "kilnet configs hold data, never code. Use one of the named "
                                 f"options, or keep the layer in memory. Received: {name}="
                                 f"{getattr(self, name)!r}")
        lookup = self.lookup_layer
        vocabulary, idf = lookup.config_vocabulary()
        return {**super().get_config(), "max_tokens": lookup.max_tokens,
                "standardize": self.standardize, "split": self.split, "ngrams": self.ngrams,
                "output_mode": self.output_mode,
                "output_sequence_length": self.output_sequence_length,
                "pad_to_max_tokens": lookup.pad_to_max_tokens, "sparse": False,
                "ragged": False, "vocabulary": vocabulary, "idf_weights": idf,
                "encoding": self.encoding, "vocabulary_size": lookup.vocabulary_size()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        return cls(**config)


def _check_choice(argument, value, allowed):
    if value is None or callable(value) or value in allowed:
        return
    raise ValueError(f"TextVectorization: {argument} must be one of {list(allowed)}, None or "
                     f"a callable. Received: {argument}={value!r}")


def _as_ngrams(ngrams):
    if ngrams is None:
        return None
    if isinstance(ngrams, numbers.Integral) and not isinstance(ngrams, bool) and ngrams >= 1:
        return int(ngrams)
    if isinstance(ngrams, (tuple, list)) and ngrams and all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
            for n in ngrams):
        return tuple(int(n) for n in ngrams)
    raise ValueError("TextVectorization: ngrams must be None, a positive integer or a tuple "
                     f"of them. Received: ngrams={ngrams!r}")


def _ngrams(tokens, ngrams):
    """All n-grams of each width in turn (an integer n: widths 1..n), joined by spaces."""
    widths = range(1, ngrams + 1) if isinstance(ngrams, int) else ngrams
    out = []
    for n in widths:
        out.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return out
