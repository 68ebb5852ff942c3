"""Vocabulary lookups: StringLookup and IntegerLookup map tokens to indices (or back, with
invert=True), with Keras's index layout, out-of-vocabulary (OOV) buckets, mask token, adapted
vocabulary order and output modes.

Keras builds these on TensorFlow hash tables. kilnet keeps the vocabulary as a plain list
(in the layer's config, so a saved model carries it as data) and looks tokens up with a sorted
copy and `searchsorted`, written once for NumPy and jax.numpy: strings are looked up on the host
(call the layer on the data before training), integers also inside compiled models.

The index layout, as Keras: [mask token (output_mode "int" only)] + [OOV indices] + tokens.
"""

from __future__ import annotations

import collections
import itertools
import numbers
import os

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope
from kilnet.layers._base import Layer, set_untracked
from kilnet.layers._encoding import (ENCODINGS, as_salt, check_output_mode,
                                     encode_categorical, encoded_shape, refuse_sparse)
from kilnet.layers._fingerprints import hash_bucket
from kilnet.layers._host_call import record_host_call, takes_strings
from kilnet.layers._node import is_symbolic

_MODES = ("int",) + ENCODINGS + ("tf_idf",)
_INT32 = np.iinfo(np.int32)


class _IndexLookup(Layer):
    """What StringLookup and IntegerLookup share: the vocabulary, adapt, lookup, encoding."""

    _string = True  # the token type: strings or integers

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                 idf_weights, invert, output_mode, sparse, pad_to_max_tokens, salt,
                 vocabulary_size, **kwargs):
        super().__init__(**kwargs)
        kind = type(self).__name__
        if max_tokens is not None and (not isinstance(max_tokens, numbers.Integral)
                                       or isinstance(max_tokens, bool) or max_tokens <= 1):
            raise ValueError(f"{kind}: max_tokens must be None or an integer > 1 (it counts "
                             f"the mask and OOV indices too). Received: max_tokens={max_tokens!r}")
        if not isinstance(num_oov_indices, numbers.Integral) or num_oov_indices < 0:
            raise ValueError(f"{kind}: num_oov_indices must be an integer >= 0. Received: "
                             f"num_oov_indices={num_oov_indices!r}")
        if not isinstance(pad_to_max_tokens, bool):
            raise TypeError(f"{kind}: pad_to_max_tokens must be True or False. Received: "
                            f"pad_to_max_tokens={pad_to_max_tokens!r}")
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{kind}: pad_to_max_tokens=True needs max_tokens. Received: "
                             "max_tokens=None")
        self.output_mode = check_output_mode(kind, output_mode, _MODES)
        if not isinstance(invert, bool):
            raise TypeError(f"{kind}: invert must be True or False. Received: invert={invert!r}")
        if invert and self.output_mode != "int":
            raise ValueError(f"{kind}: invert=True needs output_mode='int'. Received: "
                             f"output_mode={output_mode!r}")
        refuse_sparse(kind, sparse)
        if idf_weights is not None and self.output_mode != "tf_idf":
            raise ValueError(f"{kind}: idf_weights are only used with output_mode='tf_idf'. "
                             f"Received: output_mode={output_mode!r}")
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.num_oov_indices = int(num_oov_indices)
        self.mask_token = self._token_or_none(mask_token, "mask_token")
        self.oov_token = self._token_or_none(oov_token, "oov_token")
        self.invert, self.pad_to_max_tokens, self.sparse = invert, pad_to_max_tokens, False
        self.salt = salt
        self.tokens = []            # the vocabulary without mask and OOV entries
        self.idf_weights = None     # float32 per index when output_mode="tf_idf"
        self.has_input_vocabulary = vocabulary is not None
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)
            # as given, for the config (Keras's), while these tokens are the vocabulary
            set_untracked(self, "_given_vocabulary",
                          (_listed(vocabulary), _listed(idf_weights), self.tokens))
            if vocabulary_size is not None and vocabulary_size != self.vocabulary_size():
                raise ValueError(f"{kind}: vocabulary_size={vocabulary_size!r} disagrees with "
                                 f"the vocabulary given ({self.vocabulary_size()} entries).")
        elif vocabulary_size is not None:
            # Keras's config of an adapted layer: its vocabulary is in the model file's
            # assets, which load_assets reads; until then the layer refuses to run
            if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, int) \
                    or vocabulary_size < 1:
                raise ValueError(f"{kind}: vocabulary_size must be a positive integer. "
                                 f"Received: vocabulary_size={vocabulary_size!r}")
            self._vocabulary_in_assets = vocabulary_size
        elif self.output_mode == "tf_idf" and idf_weights is not None:
            raise ValueError(f"{kind}: idf_weights need a vocabulary of the same length.")

    # -- tokens ----------------------------------------------------------------------------
    def _token_or_none(self, value, argument):
        if value is None:
            return None
        return self._as_token(value, argument)

    def _as_token(self, value, argument):
        kind = type(self).__name__
        if self._string:
            if isinstance(value, bytes):
                value = value.decode(self.encoding)
            if not isinstance(value, str):
                raise TypeError(f"{kind}: {argument} must hold strings. Received: "
                                f"{argument}={value!r}")
            return str(value)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{kind}: {argument} must hold integers. Received: "
                            f"{argument}={value!r}")
        return int(value)

    def _oov_start(self):
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start(self):
        return self._oov_start() + self.num_oov_indices

    # -- the vocabulary ----------------------------------------------------------------------
    def get_vocabulary(self, include_special_tokens=True) -> list:
        """The vocabulary: entry i is the token of index i (mask and OOV entries first, unless
        include_special_tokens=False)."""
        special = ([self.mask_token] * self._oov_start()
                   + [self.oov_token] * self.num_oov_indices)
        return (special if include_special_tokens else []) + list(self.tokens)

    def vocabulary_size(self) -> int:
        """The number of indices, mask and OOV indices included (the config's, for a
        vocabulary still to be read from a model file's assets)."""
        pending = self.__dict__.get("_vocabulary_in_assets")
        return pending if pending is not None else self._token_start() + len(self.tokens)

    def set_vocabulary(self, vocabulary, idf_weights=None) -> None:
        """Replace the vocabulary (a list or 1-D array of tokens; with or without the mask and
        OOV entries at its start) and, for output_mode="tf_idf", the idf weights."""
        kind = type(self).__name__
        if isinstance(vocabulary, (str, bytes)) or hasattr(vocabulary, "__fspath__"):
            raise ValueError(
                f"{kind}: vocabulary must be a list of tokens, not a file path: kilnet never "
                "reads files named in a layer config (a model file could otherwise read any "
                "file, see Keras CVE-2025-12058). Read the file yourself, e.g. "
                "vocabulary=open(path, encoding='utf-8').read().splitlines(). Received: "
                f"vocabulary={vocabulary!r}")
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise ValueError(f"{kind}: output_mode='tf_idf' needs idf_weights with the "
                             "vocabulary (or adapt the layer instead).")
        if self.output_mode != "tf_idf" and idf_weights is not None:
            raise ValueError(f"{kind}: idf_weights are only used with output_mode='tf_idf'. "
                             f"Received: output_mode={self.output_mode!r}")
        tokens = [self._as_token(t, "vocabulary") for t in np.asarray(vocabulary).tolist()] \
            if np.ndim(vocabulary) == 1 else None
        if not tokens:
            raise ValueError(f"{kind}: vocabulary must be a non-empty 1-D list of tokens. "
                             f"Received: vocabulary={vocabulary!r:.200}")
        special = self.get_vocabulary()[:self._token_start()]
        has_special = tokens[:len(special)] == special
        if has_special:
            tokens = tokens[len(special):]
        self._check_tokens(tokens, special)
        size = self._token_start() + len(tokens)
        if self.max_tokens is not None and size > self.max_tokens:
            raise ValueError(f"{kind}: the vocabulary has {size} entries (mask and OOV "
                             f"included), more than max_tokens={self.max_tokens}.")
        if idf_weights is not None:
            self.idf_weights = self._padded_idf(idf_weights, len(tokens) + (
                len(special) if has_special else 0), has_special)
        self.tokens = tokens
        self.has_input_vocabulary = True

    def _check_tokens(self, tokens, special):
        kind = type(self).__name__
        repeated = [t for t, n in collections.Counter(tokens).items() if n > 1]
        if repeated:
            raise ValueError(f"{kind}: the vocabulary repeats {repeated[:10]!r}; each token "
                             "must appear once.")
        for name, token, applies in (("mask_token", self.mask_token, True),
                                     ("oov_token", self.oov_token, self.invert)):
            if applies and token is not None and token in tokens:
                raise ValueError(
                    f"{kind}: the vocabulary holds the {name} {token!r} among its tokens. "
                    "Give the vocabulary without mask and OOV tokens, or with them only at "
                    f"its start, in this order: {special!r}.")

    def _padded_idf(self, idf_weights, expected, has_special):
        kind = type(self).__name__
        weights = np.asarray(idf_weights, np.float64)
        if weights.ndim != 1 or len(weights) != expected:
            raise ValueError(f"{kind}: idf_weights must be 1-D, as long as the vocabulary "
                             f"({expected}). Received: shape {weights.shape}")
        # As Keras: the special indices get the mean weight (their true document frequency is
        # unknown), and padding to max_tokens gets 0.
        front = 0 if has_special else self._token_start()
        weights = np.concatenate([np.full(front, weights.mean()), weights])
        return weights.astype(np.float32)

    # -- Keras's saving hooks: an adapted vocabulary in the assets, idf weights as variables --
    def save_own_variables(self, store) -> None:
        """Keras's layout: with output_mode="tf_idf", the idf weights (special indices
        included) under "idf_weights"; nothing otherwise (the vocabulary is data).

        Example:
            >>> from kilnet import layers
            >>> lookup = layers.IntegerLookup(vocabulary=[4, 7], output_mode="tf_idf",
            ...                               idf_weights=[0.5, 1.5])
            >>> store = {}
            >>> lookup.save_own_variables(store)
            >>> store["idf_weights"].tolist()
            [1.0, 0.5, 1.5]
        """
        if self.output_mode == "tf_idf" and self.idf_weights is not None:
            store["idf_weights"] = np.asarray(self.idf_weights[:self.vocabulary_size()],
                                              np.float32)

    def load_own_variables(self, store) -> None:
        """The idf weights Keras's file keeps for output_mode="tf_idf" (read before the
        vocabulary they belong to, as Keras reads them)."""
        if self.output_mode != "tf_idf":
            return
        if "idf_weights" not in store:
            if self.__dict__.get("_vocabulary_in_assets") is None and self.tokens:
                return   # a vocabulary given with its idf weights in the config
            raise ValueError(f"{type(self).__name__} {self.name!r}: output_mode='tf_idf' and "
                             "the file holds no idf_weights for it.")
        weights = np.asarray(store["idf_weights"], np.float32)
        if weights.ndim != 1:
            raise ValueError(f"{type(self).__name__} {self.name!r}: idf_weights must be 1-D. "
                             f"Received: shape {weights.shape}")
        set_untracked(self, "_idf_from_file", weights)
        if self.tokens:
            self.idf_weights = self._padded_idf(weights, len(weights), True)

    def load_assets(self, dir_path) -> None:
        """An adapted vocabulary from Keras's asset `vocabulary.txt` (one token a line,
        special tokens first), as Keras's load_assets reads it; nothing when the config gave
        the vocabulary. The vocabulary is checked as set_vocabulary checks one, and against
        the config's vocabulary_size."""
        pending = self.__dict__.get("_vocabulary_in_assets")
        if pending is None:
            return
        path = os.path.join(dir_path, "vocabulary.txt")
        if not os.path.isfile(path):
            raise ValueError(f"{type(self).__name__} {self.name!r}: the file's assets hold no "
                             "vocabulary.txt for this layer.")
        with open(path, encoding=self.encoding if self._string else "utf-8") as f:
            lines = f.read().splitlines()
        while lines and lines[-1] == "":
            lines.pop()
        tokens = lines if self._string else [_integer_line(line, self) for line in lines]
        idf = self.__dict__.get("_idf_from_file")
        self.__dict__.pop("_vocabulary_in_assets")
        self.set_vocabulary(tokens, idf_weights=idf)
        self.has_input_vocabulary = False   # adapted, as in the file
        if self.vocabulary_size() != pending:
            raise ValueError(f"{type(self).__name__} {self.name!r}: the assets' vocabulary "
                             f"has {self.vocabulary_size()} entries; the config says {pending}.")

    # -- adapt -------------------------------------------------------------------------------
    def adapt(self, data, steps=None) -> None:
        """Build the vocabulary from data: tokens by decreasing frequency, ties broken by the
        larger token first (as Keras), truncated to max_tokens.

        Args:
            data: an array or list of tokens (a 1-D array is one token per document), or an
                iterable of batches (each a document or a (documents, tokens) array).
            steps: how many batches of an iterable to read (default: all).
        """
        self.adapt_from_documents(itertools.islice(self.adapt_documents(data), steps))

    def adapt_from_documents(self, batches) -> None:
        """adapt() on batches already split into documents (lists of tokens)."""
        if self.has_input_vocabulary:
            raise ValueError(f"{type(self).__name__}: cannot adapt a layer whose vocabulary "
                             "was set (vocabulary= or set_vocabulary()).")
        counts, documents, n_docs = collections.Counter(), collections.Counter(), 0
        for batch in batches:
            for document in batch:
                tokens = [self._as_token(t, "data") for t in document]
                counts.update(tokens)
                documents.update(set(tokens))
                n_docs += 1
        for special in (self.mask_token, self.oov_token):
            counts.pop(special, None)
        ranked = sorted(counts, key=lambda t: (counts[t], t), reverse=True)
        if self.max_tokens is not None:
            ranked = ranked[:self.max_tokens - self._token_start()]
        self.tokens = ranked
        if self.output_mode == "tf_idf":
            idf = np.log(1 + n_docs / (1 + np.array([documents[t] for t in ranked],
                                                    np.float64))).astype(np.float32)
            mean = idf.mean() if len(idf) else np.float32(0)
            self.idf_weights = np.concatenate(
                [np.full(self._token_start(), mean, np.float32), idf])

    def adapt_documents(self, data):
        """The batches of adapt's data, each as a list of documents (lists of tokens)."""
        if isinstance(data, (np.ndarray, list, tuple)) or hasattr(data, "__array__"):
            array = np.asarray(data)
            if array.ndim <= 1:  # one token per document, as Keras's adapt of an array
                array = array.reshape(-1, 1)
            yield [list(row.reshape(-1).tolist()) for row in array]
            return
        if not hasattr(data, "__iter__"):
            raise TypeError(f"{type(self).__name__}.adapt takes an array, a list or an "
                            f"iterable of batches. Received: {type(data).__name__}")
        for batch in data:
            if isinstance(batch, tuple):  # (x, y): the x
                batch = batch[0]
            array = np.asarray(batch)
            if array.ndim <= 1:  # a batch of rank 1 is one document, as Keras
                array = array.reshape(1, -1)
            yield [list(row.reshape(-1).tolist()) for row in array]

    # -- the computation -----------------------------------------------------------------------
    def depth(self) -> int:
        """The length of encoded outputs: max_tokens with pad_to_max_tokens, else the
        vocabulary size."""
        return self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()

    def check_ready(self):
        """Encoded outputs need the vocabulary size: refuse a call before it is known."""
        pending = self.__dict__.get("_vocabulary_in_assets")
        if pending is not None:
            raise ValueError(f"{type(self).__name__} {self.name!r} has no vocabulary yet: "
                             f"its config says {pending} entries, which Keras keeps for an "
                             "adapted layer in the model file's assets (vocabulary.txt). Load "
                             "the whole .keras file with kilnet.models.load_model (a file "
                             "without that asset is incomplete), or pass vocabulary=[...].")
        if self.output_mode != "int" and not self.pad_to_max_tokens and not self.tokens:
            raise ValueError(f"{type(self).__name__} with output_mode={self.output_mode!r} "
                             "needs its vocabulary before it is called: pass vocabulary=[...] "
                             "or call adapt(data) first.")

    def lookup(self, values, xp=np):
        """Indices of `values` (an array of tokens) in the layer's layout: vocabulary tokens
        from the token start, OOV tokens in the OOV indices, the mask token at 0 (or dropped
        as -1 outside output_mode="int")."""
        vocab = np.asarray(self.tokens if self.tokens else [self._empty_token()])
        order = np.argsort(vocab, kind="stable")
        sorted_vocab = self._device_table(vocab[order], xp)
        pos = xp.clip(xp.searchsorted(sorted_vocab, values), 0, len(vocab) - 1)
        found = (sorted_vocab[pos] == values) & bool(self.tokens)
        ids = self._token_start() + xp.asarray(order.astype(np.int32))[pos]
        ids = xp.where(found, ids, self._oov_ids(values, xp))
        if self.mask_token is not None:
            ids = xp.where(values == self.mask_token, 0 if self.output_mode == "int" else -1,
                           ids)
        return ids.astype(xp.int32)

    def _oov_ids(self, values, xp):
        if self.num_oov_indices == 0:
            return xp.full(values.shape, -1, xp.int32)
        if self.num_oov_indices == 1:
            return xp.full(values.shape, self._oov_start(), xp.int32)
        return self._oov_start() + self._oov_buckets(values, xp)

    def invert_lookup(self, ids, xp=np):
        """Tokens of indices (invert=True): indices outside the vocabulary give oov_token."""
        table = self._device_table(np.asarray(self.get_vocabulary(), self._table_dtype()), xp)
        inside = (ids >= 0) & (ids < self.vocabulary_size())
        tokens = table[xp.clip(ids, 0, self.vocabulary_size() - 1)]
        return xp.where(inside, tokens, self.oov_token)

    @staticmethod
    def _device_table(table, xp):
        # Inside a model (jax.numpy) integers are int32: IntegerLookup checked the range.
        return jnp.asarray(table.astype(np.int32)) if xp is jnp else table

    def encode(self, ids, xp=np):
        """The output of `output_mode` from indices (batch axis first)."""
        if self.output_mode == "int":
            return ids
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        out = encode_categorical(ids, mode, self.depth(), xp=xp,
                                 dtype=self.compute_output_dtype(None))
        if self.output_mode == "tf_idf":
            weights = np.zeros(self.depth(), np.float32)
            weights[:len(self.idf_weights)] = self.idf_weights[:self.depth()]
            out = out * xp.asarray(weights)
        return out

    def compute_output_dtype(self, input_dtype):
        # Keras's lookups count in integers (TensorFlow's int64, int32 once on JAX): one-hot,
        # multi-hot and count outputs are int32 as the ids are; tf-idf's are float32.
        return "float32" if self.output_mode == "tf_idf" else "int32"

    # Keras reports the token type as these layers' dtypes ("string" or "int64"); their dtype
    # policy, which configs hold, stays float32. Nothing is cast to it (mixed_precision).
    @property
    def compute_dtype(self) -> str:
        """The dtype of the tokens, as Keras's: "string" or "int64"."""
        return self.vocabulary_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype of the tokens, as Keras's: "string" or "int64"."""
        return self.vocabulary_dtype

    def sample_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        if self.__dict__.get("_vocabulary_in_assets") is None:   # else its size is known
            self.check_ready()
        return encoded_shape(input_shape, self.output_mode, self.depth())

    # -- configuration -----------------------------------------------------------------------
    def get_config(self):
        config = {**super().get_config(), "invert": self.invert, "max_tokens": self.max_tokens,
                  "num_oov_indices": self.num_oov_indices, "oov_token": self.oov_token,
                  "mask_token": self.mask_token, "output_mode": self.output_mode,
                  "sparse": self.sparse, "pad_to_max_tokens": self.pad_to_max_tokens}
        if not self._string:
            config["vocabulary_dtype"] = "int64"
        vocabulary, idf = self.config_vocabulary()
        return {**config, "idf_weights": idf, "vocabulary": vocabulary,
                "vocabulary_size": self.vocabulary_size() if self.tokens else None,
                "oov_method": "floormod", "salt": self.salt}

    def config_vocabulary(self) -> tuple:
        """(vocabulary, idf_weights) as the config holds them: as given to the constructor,
        as Keras's; an adapted or replaced vocabulary as data, with its special entries, so
        a saved model carries it (Keras saves an adapted one in an asset file instead).

        Example:
            >>> from kilnet import layers
            >>> layers.IntegerLookup(vocabulary=[5, 7]).config_vocabulary()
            ([5, 7], None)
            >>> adapted = layers.IntegerLookup()
            >>> adapted.adapt([7, 7, 5])
            >>> adapted.config_vocabulary()
            ([-1, 7, 5], None)
        """
        given = self.__dict__.get("_given_vocabulary")
        if given is not None and given[2] is self.tokens:
            return given[0], given[1]
        if not self.tokens:
            return None, None
        idf = (None if self.idf_weights is None
               else [float(w) for w in self.idf_weights[:self.vocabulary_size()]])
        return self.get_vocabulary(), idf


class StringLookup(_IndexLookup):
    """Maps strings to integer indices from a vocabulary (or back, with invert=True), as
    `keras.layers.StringLookup`.

    Args:
        max_tokens: the largest vocabulary size (mask and OOV indices included); None: no
            limit.
        num_oov_indices: how many indices out-of-vocabulary strings share (default 1; more
            than 1: a string's bucket is its FarmHash fingerprint, as Keras; 0: an OOV string
            is an error).
        mask_token: a string that maps to index 0 (output_mode="int") or is dropped.
        oov_token: the string invert=True returns for OOV indices (default "[UNK]").
        vocabulary: a list or 1-D array of strings (a file path is refused).
        idf_weights: for output_mode="tf_idf" with a given vocabulary.
        invert: map indices to strings instead.
        output_mode: "int" (default), "one_hot", "multi_hot", "count" or "tf_idf".
        pad_to_max_tokens: encoded outputs have max_tokens entries, not the vocabulary size.
        sparse: only False.
        encoding: the text encoding of bytes inputs (default "utf-8").
        salt: with num_oov_indices > 1, hash OOV strings with SipHash keyed by it.

    It runs on the host (NumPy): call it on the data, e.g. in a dataset map, before the model.
    Outputs are int32 (indices, and the one-hot, multi-hot and count vectors, as Keras's on
    JAX; TensorFlow's are int64), float32 for tf_idf. `dtype` is "string", as Keras's.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.StringLookup(vocabulary=["a", "b", "c"])
        >>> layer(np.array([["a", "c"], ["d", "b"]])).tolist()
        [[1, 3], [0, 2]]
        >>> layer.get_vocabulary()
        ['[UNK]', 'a', 'b', 'c']
        >>> kilnet.layers.StringLookup(vocabulary=["a", "b"], invert=True)(
        ...     np.array([2, 0])).tolist()
        ['b', '[UNK]']
    """

    runs_on_strings = True   # a model runs it on the host (kilnet.models._host_stage)

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]",
                 vocabulary=None, idf_weights=None, invert=False, output_mode="int",
                 pad_to_max_tokens=False, sparse=False, encoding="utf-8", salt=None,
                 oov_method="floormod", vocabulary_size=None, **kwargs):
        try:
            "".encode(encoding)
        except (LookupError, TypeError):
            raise ValueError(f"StringLookup: encoding must be a text encoding Python knows. "
                             f"Received: encoding={encoding!r}") from None
        self.encoding, self.vocabulary_dtype = encoding, "string"
        if oov_method != "floormod":  # Keras accepts it, but strings always use FarmHash
            raise ValueError("StringLookup: oov_method only applies to IntegerLookup; strings "
                             f"always hash with FarmHash. Received: oov_method={oov_method!r}")
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, sparse, pad_to_max_tokens,
                         as_salt(salt, "StringLookup"), vocabulary_size, **kwargs)

    def _empty_token(self):
        return ""

    def _table_dtype(self):
        return object

    def _oov_buckets(self, values, xp):
        flat = [hash_bucket(v, self.num_oov_indices, self.salt)
                for v in np.asarray(values).reshape(-1).tolist()]
        return np.asarray(flat, np.int32).reshape(np.shape(values))

    def get_config(self):
        return {**super().get_config(), "encoding": self.encoding}

    def compute_output_dtype(self, input_dtype):
        """int32 ids (float32 for tf_idf), or strings with invert=True.

        Example:
            >>> StringLookup(vocabulary=["a"], invert=True).compute_output_dtype("int32")
            'string'
        """
        return "string" if self.invert else super().compute_output_dtype(input_dtype)

    def __call__(self, *args, **kwargs):
        if args and takes_strings((args, kwargs)) and _scope.current() is None \
                and not self.invert:
            return record_host_call(self, args, kwargs)   # a model runs it on the host
        if is_symbolic((args, kwargs)) or _scope.current() is not None:
            raise TypeError(host_only_message("StringLookup", "lookup"))
        if not args:
            raise TypeError("StringLookup was called without inputs; call it on data.")
        return self.compute(args[0])

    def compute(self, data):
        """The layer's output for host data (strings, or indices with invert=True)."""
        self.check_ready()
        if self.invert:
            ids = np.asarray(data)
            if ids.dtype.kind not in "iu":
                raise TypeError("StringLookup(invert=True) takes integer indices. Received: "
                                f"an array of dtype {ids.dtype}")
            return self.invert_lookup(ids.astype(np.int64)).astype(str)
        values = as_text_array(data, self.encoding, "StringLookup")
        ids = self.lookup(values)
        check_no_oov(self, ids, values)
        return self.encode(ids)


class IntegerLookup(_IndexLookup):
    """Maps integer tokens to contiguous indices from a vocabulary (or back, with invert=True),
    as `keras.layers.IntegerLookup`.

    Args: as StringLookup, with integer tokens: mask_token (default None), oov_token (default
    -1), vocabulary_dtype (only "int64", as Keras), oov_method (only "floormod": with
    num_oov_indices > 1 an OOV token goes to bucket `token % num_oov_indices`).

    With a vocabulary it also works inside a compiled model (pure jax.numpy): declare an
    integer input, `kilnet.Input(shape=(n,), dtype="int32")`. Called on host arrays it computes
    with NumPy. Outputs are int32 (indices, and the one-hot, multi-hot and count vectors, as
    Keras's on JAX; TensorFlow's are int64), float32 for tf_idf; `dtype` is "int64", as
    Keras's. An OOV token with num_oov_indices=0 is an error on the host and -1 inside a
    compiled model.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> layer = kilnet.layers.IntegerLookup(vocabulary=[12, 36, 1138, 42])
        >>> layer(np.array([[12, 1138, 42], [42, 1000, 36]])).tolist()
        [[1, 3, 4], [4, 0, 2]]
        >>> adapted = kilnet.layers.IntegerLookup()
        >>> adapted.adapt(np.array([7, 7, 3, 9, 9, 9]))
        >>> adapted.get_vocabulary()
        [-1, 9, 7, 3]
    """

    _string = False

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1,
                 vocabulary=None, vocabulary_dtype="int64", idf_weights=None, invert=False,
                 output_mode="int", sparse=False, pad_to_max_tokens=False,
                 oov_method="floormod", salt=None, vocabulary_size=None, **kwargs):
        if vocabulary_dtype != "int64":
            raise ValueError("IntegerLookup: only vocabulary_dtype='int64' is supported, as "
                             f"Keras. Received: vocabulary_dtype={vocabulary_dtype!r}")
        if oov_method != "floormod" or salt is not None:
            raise ValueError("IntegerLookup: only oov_method='floormod' (without salt) is "
                             "supported; FarmHash buckets for integers are not. Received: "
                             f"oov_method={oov_method!r}, salt={salt!r}")
        self.vocabulary_dtype, self.oov_method = "int64", "floormod"
        super().__init__(max_tokens, num_oov_indices, mask_token, oov_token, vocabulary,
                         idf_weights, invert, output_mode, sparse, pad_to_max_tokens, None,
                         vocabulary_size, **kwargs)

    def _empty_token(self):
        return 0

    def _table_dtype(self):
        return np.int64

    def _oov_buckets(self, values, xp):
        return xp.mod(values, self.num_oov_indices).astype(xp.int32)

    def get_config(self):
        config = super().get_config()
        for key in ("oov_token", "mask_token"):   # as Keras's: Python integers
            config[key] = None if config[key] is None else int(config[key])
        if config["vocabulary"] is not None:
            config["vocabulary"] = [int(token) for token in config["vocabulary"]]
        return config

    def __call__(self, *args, **kwargs):
        if args and not is_symbolic((args, kwargs)) and _scope.current() is None \
                and not isinstance(args[0], jax.core.Tracer):
            return self.compute(args[0])
        return super().__call__(*args, **kwargs)

    def compute(self, data):
        """The layer's output for host data, with NumPy (int64 tokens stay exact)."""
        self.check_ready()
        values = np.asarray(data)
        if values.dtype.kind not in "iub":
            if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
                values = values.astype(np.int64)
            else:
                raise TypeError("IntegerLookup takes integer tokens. Received: an array of "
                                f"dtype {values.dtype}")
        values = values.astype(np.int64)
        if self.invert:
            return self.invert_lookup(values).astype(np.int64)
        ids = self.lookup(values)
        check_no_oov(self, ids, values)
        return self.encode(ids)

    def apply(self, params, state, x, **_):
        self.check_ready()
        self._check_int32()
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.integer):
            x = x.astype(jnp.int32)
        if self.invert:
            return self.invert_lookup(x, xp=jnp).astype(jnp.int32), state
        return self.encode(self.lookup(x, xp=jnp), xp=jnp), state

    def _check_int32(self):
        values = self.tokens + [t for t in (self.mask_token, self.oov_token) if t is not None]
        if values and (min(values) < _INT32.min or max(values) > _INT32.max):
            raise ValueError("IntegerLookup inside a model computes in int32; its vocabulary "
                             "holds tokens outside the int32 range. Apply it to the data "
                             "on the host instead.")


def _listed(values):
    """A vocabulary or weights as a config holds them: arrays as lists, the rest as given."""
    return np.asarray(values).tolist() if isinstance(values, np.ndarray) else values


def _integer_line(line, layer):
    try:
        return int(line)
    except ValueError:
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: its vocabulary.txt holds "
                         f"{line[:40]!r}, not an integer token.") from None


# -- helpers shared with TextVectorization ---------------------------------------------------
def host_only_message(layer_name, verb):
    return (f"{layer_name} works on strings on the host and cannot run inside a compiled "
            "program (kilnet programs hold numbers only). In a functional model, call it on "
            "a string Input (kilnet.Input(shape=(1,), dtype='string')): the model runs it on "
            "the host before its program. Otherwise apply it to the data before fit, e.g. "
            f"`x_ids = {verb}_layer(x_strings)`, or in a dataset: "
            f"`ds = ds.map(lambda x, y: ({verb}_layer(x), y))`, and give the model an integer "
            "input: kilnet.Input(shape=(length,), dtype='int32').")


def as_text_array(data, encoding, layer_name):
    """Host data as a NumPy array of Python strings (bytes decoded)."""
    array = np.asarray(data, dtype=object)
    if array.size and not all(isinstance(v, (str, bytes)) for v in array.reshape(-1)):
        raise TypeError(f"{layer_name} takes strings. Received: {type(data).__name__} holding "
                        f"{type(array.reshape(-1)[0]).__name__}")
    decode = np.vectorize(lambda v: v.decode(encoding) if isinstance(v, bytes) else v,
                          otypes=[object])
    return decode(array).astype(str) if array.size else array.astype(str)


def check_no_oov(layer, ids, values):
    """With num_oov_indices=0 an out-of-vocabulary token is an error, as Keras."""
    if layer.num_oov_indices == 0:
        bad = np.asarray(ids) == -1
        if layer.mask_token is not None:
            bad &= np.asarray(values) != layer.mask_token
        if bad.any():
            raise ValueError(f"{type(layer).__name__}: with num_oov_indices=0 every input must "
                             f"be in the vocabulary; found {np.asarray(values)[bad][:5].tolist()}. "
                             "Set num_oov_indices=1 to map unknown tokens to an OOV index.")
