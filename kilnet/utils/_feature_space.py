"""FeatureSpace: Keras's one-stop preprocessing of structured (tabular) data.

A FeatureSpace names, for each column of a table, how to encode it (a float as it is, a float
normalized or bucketed, a category looked up or hashed), optionally crosses categories, and
turns a dict of columns into one float32 matrix (or a dict of encoded columns), as
`keras.utils.FeatureSpace` does, with Keras's feature order, widths and numbers.

It is built from kilnet's preprocessing layers (Normalization, Discretization, StringLookup,
IntegerLookup, Hashing, HashedCrossing, CategoryEncoding). Keras runs it on TensorFlow; kilnet
runs it on the host, on NumPy arrays: strings cannot enter a kilnet model, so the encoding
happens on the data, before the model (`ds.map(lambda x, y: (feature_space(x), y))`).
"""

from __future__ import annotations

import numpy as np

from kilnet import _names, serialization
from kilnet.layers import (CategoryEncoding, Concatenate, Discretization, HashedCrossing,
                           Hashing, Identity, Input, IntegerLookup, Normalization, Rescaling,
                           StringLookup)
from kilnet.layers._node import tensors_in
from kilnet.layers._tensorflow_calls import takes_tensorflow_columns

# Keras's module for its Feature, Cross and TFDIdentity entries in a config.
_KERAS_MODULE = "keras.src.layers.preprocessing.feature_space"
_ADAPT_BATCH = 32  # Keras batches unbatched data by 32 rows to adapt (it shows in quantiles)
_FEATURE_MODES = ("int", "one_hot", "float")
_FEATURE_DTYPES = ("float32", "int32", "string")


def _keras_entry(class_name, config):
    return {"module": _KERAS_MODULE, "class_name": class_name, "config": config,
            "registered_name": class_name}


# -- one feature, one cross ------------------------------------------------------------------
class Feature:
    """One feature of a FeatureSpace: its input dtype, the layer that preprocesses it and
    whether its output is one-hot encoded ("one_hot"), kept as integers ("int") or as floats
    ("float"), as Keras's `Feature`. Made by FeatureSpace's constructors (`FeatureSpace.float()`,
    `FeatureSpace.feature(...)`, ...).

    Example:
        >>> import kilnet
        >>> feature = kilnet.utils.FeatureSpace.string_categorical(max_tokens=10)
        >>> feature.dtype, feature.output_mode, type(feature.preprocessor).__name__
        ('string', 'one_hot', 'StringLookup')
    """

    def __init__(self, dtype, preprocessor, output_mode):
        if output_mode not in _FEATURE_MODES:
            raise ValueError(f"Feature: output_mode must be one of {list(_FEATURE_MODES)}. "
                             f"Received: output_mode={output_mode!r}")
        if dtype not in _FEATURE_DTYPES:
            raise ValueError(f"Feature: dtype must be one of {list(_FEATURE_DTYPES)}. "
                             f"Received: dtype={dtype!r}")
        if isinstance(preprocessor, dict):
            preprocessor = _preprocessor_from_entry(preprocessor)
        if not callable(preprocessor):
            raise TypeError("Feature: preprocessor must be a layer (e.g. kilnet.layers."
                            f"StringLookup()). Received: preprocessor={preprocessor!r}")
        self.dtype, self.preprocessor, self.output_mode = dtype, preprocessor, output_mode

    def get_config(self):
        return {"dtype": self.dtype, "preprocessor": _preprocessor_entry(self.preprocessor),
                "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Cross:
    """A cross of features of a FeatureSpace: their (preprocessed) values hashed together into
    `crossing_dim` bins, one-hot encoded ("one_hot") or kept as the bin ("int"), as Keras's
    `Cross`. Its name is the feature names joined by "_X_".

    Example:
        >>> import kilnet
        >>> kilnet.utils.FeatureSpace.cross(("sex", "age"), crossing_dim=8).name
        'sex_X_age'
    """

    def __init__(self, feature_names, crossing_dim, output_mode="one_hot"):
        if output_mode not in ("int", "one_hot"):
            raise ValueError("Cross: output_mode must be one of ['int', 'one_hot']. Received: "
                             f"output_mode={output_mode!r}")
        if isinstance(feature_names, str) or len(tuple(feature_names)) < 2:
            raise ValueError("Cross: feature_names must name two or more features, e.g. "
                             f"('sex', 'age'). Received: feature_names={feature_names!r}")
        self.feature_names = tuple(feature_names)
        self.crossing_dim = crossing_dim
        self.output_mode = output_mode

    @property
    def name(self):
        return "_X_".join(self.feature_names)

    def get_config(self):
        return {"feature_names": self.feature_names, "crossing_dim": self.crossing_dim,
                "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _preprocessor_entry(layer):
    """A preprocessor's config entry, as Keras writes it; two differences keep an adapted
    space whole in its config: a plain float's Identity is written as Keras's TFDIdentity, and
    an adapted Normalization carries its mean and variance (Keras keeps them in weights)."""
    entry = serialization.serialize_keras_object(layer)
    if type(layer) is Identity:
        return _keras_entry("TFDIdentity", entry["config"])
    if isinstance(layer, Normalization) and layer.input_mean is None and layer.built:
        entry["config"].update(mean=np.asarray(layer.adapt_mean).tolist(),
                               variance=np.asarray(layer.adapt_variance).tolist())
    return entry


def _preprocessor_from_entry(entry):
    name, config = entry.get("class_name"), entry.get("config", {})
    if name == "TFDIdentity":
        return Identity(**{k: v for k, v in config.items() if k == "name"})
    if name in _LOOKUPS and isinstance(config, dict):
        # Model files refuse lookup layers (Keras's may name vocabulary files); kilnet's take
        # the vocabulary as a list only, refusing a path, so a feature space's config is safe.
        return _LOOKUPS[name].from_config(config)
    return serialization.deserialize_keras_object(entry)


_LOOKUPS = {"StringLookup": StringLookup, "IntegerLookup": IntegerLookup}


def _object_from_entry(entry, cls):
    """A Feature or Cross from its config entry (Keras's or kilnet's)."""
    if entry.get("class_name") != cls.__name__ or not isinstance(entry.get("config"), dict):
        raise ValueError(f"FeatureSpace: expected a {cls.__name__} entry "
                         f"({{'class_name': '{cls.__name__}', 'config': {{...}}}}). Received: "
                         f"{entry!r:.200}")
    return cls.from_config(entry["config"])


def _encoded_spec(space, shapes):
    """(static shape, dtype) of the space's output, or a dict of them ("dict" mode), for
    columns of the given static shapes (a tf.data map's element): the widths and dtypes of
    `get_encoded_features()`, after the columns' batch axis, or without one for a sample of
    scalars; an unknown shape where a column's rank is unknown."""
    encoded = space.get_encoded_features()
    if any(shape is None for shape in shapes.values()):
        lead = None
    elif all(len(shape) == 0 for shape in shapes.values()):
        lead = []   # one sample: the call drops the batch axis
    else:
        sizes = [shape[0] for shape in shapes.values() if shape and shape[0] is not None]
        lead = [sizes[0] if sizes else None]

    def spec(tensor):
        return (None if lead is None else lead + list(tensor.shape[1:])), tensor.dtype

    if isinstance(encoded, dict):
        return {key: spec(tensor) for key, tensor in encoded.items()}
    return spec(encoded)


# -- the feature space -------------------------------------------------------------------------
class FeatureSpace:
    """One-stop preprocessing and encoding of structured data, as `keras.utils.FeatureSpace`.

    Args:
        features: {name: type}: a type is a string shorthand ("float", "float_rescaled",
            "float_normalized", "float_discretized", "integer_categorical",
            "string_categorical", "integer_hashed", "string_hashed", with default arguments)
            or a constructor's result, e.g. `FeatureSpace.integer_categorical(max_tokens=10)`.
        output_mode: "concat" (default: one float32 matrix, features in sorted name order, then
            crosses in sorted name order, as Keras) or "dict" ({name: encoded feature}).
        crosses: features to cross, e.g. `[("sex", "age")]` or `[FeatureSpace.cross(...)]`.
        crossing_dim: the default number of bins of a cross (default 32).
        hashing_dim: the bins of the "integer_hashed" / "string_hashed" shorthands (32).
        num_discretization_bins: the bins of the "float_discretized" shorthand (32).
        name: a name for the space.

    Call `adapt(data)` first (vocabularies, statistics, quantiles), then call the space on a
    dict of columns (a batch, or one sample of scalars): it returns float32 NumPy arrays,
    (batch, width) in "concat" mode. `preprocessors`, `crossers` and `one_hot_encoders` hold
    the underlying layers, under Keras's names.

    Differences from Keras: called on data, the space runs on the host (NumPy); called on a
    dict of TensorFlow tensors in a tf.data map or a tf.function (keras.io's
    `train_ds.map(lambda x, y: (feature_space(x), y))`), it is one `tf.numpy_function` node
    there, with Keras's static output shapes.
    `get_inputs()` and `get_encoded_features()` are Keras's symbolic tensors, connected through
    the space's layers (a model from `get_inputs()` runs its string layers on the host, the
    rest compiled); the space itself is not a layer of that model (its layers are).
    Integer outputs ("int" mode) are int32 (Keras: int64). Default preprocessor names are not
    numbered per process. `save()` is not supported: keep `get_config()` (JSON-ready, and it
    carries the adapted vocabularies, boundaries and statistics) and use `from_config`.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> data = {"age": [30.0, 40.0, 50.0, 60.0], "sex": [0, 1, 1, 0],
        ...         "thal": ["fixed", "normal", "normal", "reversible"]}
        >>> space = kilnet.utils.FeatureSpace(
        ...     {"age": "float_normalized", "sex": "integer_categorical",
        ...      "thal": "string_categorical"}, crosses=[("sex", "thal")], crossing_dim=4)
        >>> space.adapt(data)
        >>> space(data).shape  # age 1 + sex 3 + thal 4 + cross 4
        (4, 12)
        >>> space({"age": 45.0, "sex": 1, "thal": "unknown"}).shape
        (12,)
    """

    # TensorFlow's AutoGraph calls an object with this attribute as it is: a call in tf.data's
    # map runs on the host (takes_tensorflow_columns) instead of being rewritten
    autograph_info__ = None

    # -- feature constructors (Keras's classmethods) -------------------------------------------
    @classmethod
    def cross(cls, feature_names, crossing_dim, output_mode="one_hot"):
        """A cross of features (see Cross).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.cross(("a", "b"), 16).crossing_dim
            16
        """
        return Cross(feature_names, crossing_dim, output_mode=output_mode)

    @classmethod
    def feature(cls, dtype, preprocessor, output_mode):
        """A feature with your own preprocessing layer; dtype is "float32", "int32" or
        "string", output_mode "int", "one_hot" or "float".

        Example:
            >>> import kilnet
            >>> layer = kilnet.layers.Rescaling(0.5)
            >>> kilnet.utils.FeatureSpace.feature("float32", layer, "float").output_mode
            'float'
        """
        return Feature(dtype, preprocessor, output_mode)

    @classmethod
    def float(cls, name=None):
        """Float values as they are.

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.float().dtype
            'float32'
        """
        return Feature("float32", Identity(name=_preprocessor_name(name, "float")), "float")

    @classmethod
    def float_rescaled(cls, scale=1.0, offset=0.0, name=None):
        """Float values times `scale` plus `offset` (a Rescaling layer).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.float_rescaled(scale=0.1).preprocessor.scale
            0.1
        """
        layer = Rescaling(scale=scale, offset=offset,
                          name=_preprocessor_name(name, "float_rescaled"))
        return Feature("float32", layer, "float")

    @classmethod
    def float_normalized(cls, name=None):
        """Float values standardized with the mean and variance `adapt` measures.

        Example:
            >>> import kilnet
            >>> type(kilnet.utils.FeatureSpace.float_normalized().preprocessor).__name__
            'Normalization'
        """
        layer = Normalization(axis=-1, name=_preprocessor_name(name, "float_normalized"))
        return Feature("float32", layer, "float")

    @classmethod
    def float_discretized(cls, num_bins, bin_boundaries=None, output_mode="one_hot", name=None):
        """Float values bucketed at the quantiles `adapt` finds (a Discretization layer).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.float_discretized(num_bins=4).preprocessor.num_bins
            4
        """
        layer = Discretization(num_bins=num_bins, bin_boundaries=bin_boundaries,
                               name=_preprocessor_name(name, "float_discretized"))
        return Feature("float32", layer, output_mode)

    @classmethod
    def integer_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot",
                            name=None):
        """Integer categories indexed by the vocabulary `adapt` builds (IntegerLookup).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.integer_categorical().dtype
            'int32'
        """
        layer = IntegerLookup(max_tokens=max_tokens, num_oov_indices=num_oov_indices,
                              name=_preprocessor_name(name, "integer_categorical"))
        return Feature("int32", layer, output_mode)

    @classmethod
    def string_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot",
                           name=None):
        """String categories indexed by the vocabulary `adapt` builds (StringLookup).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.string_categorical().dtype
            'string'
        """
        layer = StringLookup(max_tokens=max_tokens, num_oov_indices=num_oov_indices,
                             name=_preprocessor_name(name, "string_categorical"))
        return Feature("string", layer, output_mode)

    @classmethod
    def string_hashed(cls, num_bins, output_mode="one_hot", name=None):
        """Strings hashed into `num_bins` bins (Hashing).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.string_hashed(8).preprocessor.num_bins
            8
        """
        layer = Hashing(num_bins=num_bins, name=_preprocessor_name(name, "string_hashed"))
        return Feature("string", layer, output_mode)

    @classmethod
    def integer_hashed(cls, num_bins, output_mode="one_hot", name=None):
        """Integers hashed into `num_bins` bins (Hashing of their decimal text, as Keras).

        Example:
            >>> import kilnet
            >>> kilnet.utils.FeatureSpace.integer_hashed(8).dtype
            'int32'
        """
        layer = Hashing(num_bins=num_bins, name=_preprocessor_name(name, "integer_hashed"))
        return Feature("int32", layer, output_mode)

    # -- construction ----------------------------------------------------------------------------
    def __init__(self, features, output_mode="concat", crosses=None, crossing_dim=32,
                 hashing_dim=32, num_discretization_bins=32, name=None):
        if not isinstance(features, dict) or not features:
            raise ValueError("FeatureSpace: features must be a non-empty dict {name: type}, "
                             "e.g. {'age': 'float_normalized'}. Received: "
                             f"features={features!r:.200}")
        if output_mode not in ("concat", "dict"):
            raise ValueError("FeatureSpace: output_mode must be one of ['concat', 'dict']. "
                             f"Received: output_mode={output_mode!r}")
        self.name = name
        self.output_mode = output_mode
        self.crossing_dim, self.hashing_dim = crossing_dim, hashing_dim
        self.num_discretization_bins = num_discretization_bins
        self.features = {key: self._standardize_feature(key, value)
                         for key, value in features.items()}
        self.crosses = [self._standardize_cross(cross) for cross in crosses or ()]
        self.crosses_by_name = {cross.name: cross for cross in self.crosses}
        self.preprocessors = {key: f.preprocessor for key, f in self.features.items()}
        self.crossers = {cross.name: HashedCrossing(cross.crossing_dim, name=cross.name)
                         for cross in self.crosses}
        self.one_hot_encoders = {}
        self._is_adapted = False
        self._inputs = None
        self._encoded_features = None

    def _standardize_feature(self, key, feature):
        if isinstance(feature, Feature):
            return feature
        if isinstance(feature, dict):
            return _object_from_entry(feature, Feature)
        shorthands = {
            "float": lambda: self.float(name=key),
            "float_normalized": lambda: self.float_normalized(name=key),
            "float_rescaled": lambda: self.float_rescaled(name=key),
            "float_discretized": lambda: self.float_discretized(
                self.num_discretization_bins, name=key),
            "integer_categorical": lambda: self.integer_categorical(name=key),
            "string_categorical": lambda: self.string_categorical(name=key),
            "integer_hashed": lambda: self.integer_hashed(self.hashing_dim, name=key),
            "string_hashed": lambda: self.string_hashed(self.hashing_dim, name=key),
        }
        if isinstance(feature, str) and feature in shorthands:
            return shorthands[feature]()
        raise ValueError(f"FeatureSpace: feature {key!r} has an unknown type. Expected one of "
                         f"{list(shorthands)} or a FeatureSpace.<type>(...) feature. Received: "
                         f"{feature!r:.200}")

    def _standardize_cross(self, cross):
        if isinstance(cross, dict):
            cross = _object_from_entry(cross, Cross)
        if not isinstance(cross, Cross):
            if not self.crossing_dim:
                raise ValueError("FeatureSpace: crosses need crossing_dim (the number of "
                                 "bins of a cross). Received: "
                                 f"crossing_dim={self.crossing_dim!r}")
            cross = Cross(cross, crossing_dim=self.crossing_dim)
        unknown = [key for key in cross.feature_names if key not in self.features]
        if unknown:
            raise ValueError(f"FeatureSpace: crosses may only name features of `features`; "
                             f"{unknown} are not among {list(self.features)}. Received: "
                             f"cross {cross.feature_names!r}")
        return cross

    # -- adapt -------------------------------------------------------------------------------------
    def adapt(self, dataset, verbose=1):
        """Learn what the preprocessors need (vocabularies, mean and variance, quantiles).

        Args:
            dataset: a dict of columns (NumPy arrays or lists, one per feature), a pandas
                DataFrame, or an iterable of such dicts (batches or single samples): a
                generator, a list, a tf.data.Dataset. An `(x, y)` batch counts as its x.
                Unbatched data is read 32 rows at a time, as Keras's adapt does.
            verbose: accepted for Keras's signature (kilnet adapts without a progress bar).

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"color": "string_categorical"})
            >>> space.adapt({"color": ["red", "blue", "red"]})
            >>> space.preprocessors["color"].get_vocabulary()
            ['[UNK]', 'red', 'blue']
        """
        names = [key for key in self.features if _is_adaptable(self.preprocessors[key])]
        batches = list(_adapt_batches(dataset, names))
        for key in names:
            columns = [_as_column(batch[key], key) for batch in batches]
            layer = self.preprocessors[key]
            if isinstance(layer, (Normalization, Discretization, StringLookup, IntegerLookup)):
                if isinstance(layer, Normalization):
                    columns = [c.astype(np.float32) for c in columns]
                layer.adapt(iter(columns))  # an iterator: batches, not one array
            else:  # a layer of yours: all the data at once
                layer.adapt(np.concatenate(columns))
        self._is_adapted = True
        self._build_encoders()

    def _check_adapted(self):
        if not self._is_adapted:
            waiting = [key for key, layer in self.preprocessors.items() if _needs_adapt(layer)]
            if waiting:
                raise ValueError("FeatureSpace: call `.adapt(data)` before using the space; "
                                 f"the features {waiting} learn from the data.")
            self._is_adapted = True
        if len(self.one_hot_encoders) != self._one_hot_count():
            self._build_encoders()

    def _one_hot_count(self):
        return sum(spec.output_mode == "one_hot"
                   for spec in [*self.features.values(), *self.crosses])

    def _build_encoders(self):
        """Keras's one-hot encoders (multi-hot CategoryEncoding layers as wide as the
        preprocessor's output space), and the check that "concat" can concatenate."""
        for key, spec in self._specs():
            if spec.output_mode == "one_hot":
                layer = self.preprocessors.get(key) or self.crossers[key]
                self.one_hot_encoders[key] = CategoryEncoding(
                    num_tokens=_cardinality(key, layer), output_mode="multi_hot")
            elif spec.output_mode == "int" and self.output_mode == "concat":
                raise ValueError(f"FeatureSpace: cannot concatenate feature {key!r}: it has "
                                 "output_mode='int' (integer indices, not encoded). Use "
                                 "output_mode='dict' for the space, or 'one_hot' for the "
                                 "feature. Received: output_mode='concat'")

    def _specs(self):
        """(name, Feature or Cross) in Keras's output order: features, then crosses, each
        sorted by name."""
        return ([(key, self.features[key]) for key in sorted(self.features)]
                + [(key, self.crosses_by_name[key]) for key in sorted(self.crosses_by_name)])

    # -- calling -----------------------------------------------------------------------------------
    @takes_tensorflow_columns(_encoded_spec)
    def __call__(self, data):
        """Encode a dict of columns (a batch, or one sample of scalars): see the class."""
        self._check_adapted()
        columns, one_sample = self._columns(data)
        preprocessed = {key: _preprocess(self.preprocessors[key], columns[key])
                        for key in self.features}
        crossed = {cross.name: self._cross(cross, preprocessed) for cross in self.crosses}
        encoded = {}
        for key, _ in self._specs():
            value = preprocessed[key] if key in preprocessed else crossed[key]
            encoder = self.one_hot_encoders.get(key)
            encoded[key] = np.asarray(encoder(value) if encoder else value)
        if self.output_mode == "concat":
            merged = np.concatenate([v.astype(np.float32) for v in encoded.values()], axis=-1)
            return merged[0] if one_sample else merged
        return {key: (v[0] if one_sample and v.ndim == 2 and len(v) == 1 else v)
                for key, v in encoded.items()}

    def _cross(self, cross, preprocessed):
        values = [preprocessed[key] for key in cross.feature_names]
        for key, value in zip(cross.feature_names, values):
            if value.dtype.kind not in "iuUSO":
                raise ValueError(f"FeatureSpace: cross {cross.name!r} takes categorical "
                                 f"features; feature {key!r} preprocesses to {value.dtype} "
                                 "values. Cross categorical or discretized features. Received: "
                                 f"feature {key!r} of type {type(self.preprocessors[key]).__name__}")
        return np.asarray(self.crossers[cross.name](values))

    def _columns(self, data):
        """The data's columns as (batch, 1) NumPy arrays of the features' dtypes, and whether
        it was one sample of scalars."""
        if not isinstance(data, dict) and hasattr(data, "columns"):  # a pandas DataFrame
            data = {key: data[key] for key in data.columns}
        if not isinstance(data, dict):
            raise TypeError("FeatureSpace is called on a dict of columns {name: values}. "
                            f"Received: data of type {type(data).__name__}")
        missing = [key for key in self.features if key not in data]
        extra = [key for key in data if key not in self.features]
        if missing or extra:
            raise ValueError(f"FeatureSpace: the data must hold exactly the features "
                             f"{list(self.features)}; missing {missing}, unknown {extra} "
                             "(drop labels and other columns first). Received: keys "
                             f"{list(data)}")
        columns = {key: _typed(np.asarray(data[key]), key, self.features[key].dtype)
                   for key in self.features}
        one_sample = all(c.ndim == 0 for c in columns.values())
        return {key: _as_column(c, key) for key, c in columns.items()}, one_sample

    # -- models ------------------------------------------------------------------------------------
    def get_inputs(self):
        """Keras's dict of model inputs, one `kilnet.Input(shape=(1,))` per feature, of the
        feature's dtype ("float32", "int32", or "string" for text: a model's string inputs
        run through their string layers on the host, before its compiled program).

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"x": "float", "city": "string_hashed"})
            >>> {key: t.dtype for key, t in space.get_inputs().items()}
            {'x': 'float32', 'city': 'string'}
        """
        if self._inputs is None:
            self._inputs = {key: Input(shape=(1,), dtype=f.dtype, name=key)
                            for key, f in self.features.items()}
        return self._inputs

    def get_encoded_features(self):
        """The encoded features as symbolic tensors computed from `get_inputs()` through the
        space's layers, as Keras's: one tensor of the concat width ("concat") or a dict of
        them ("dict"). keras.io's pattern: train
        `kilnet.Model(encoded, outputs)` on `feature_space(x)` (its input becomes a new
        Input of the encoded width, without the warning such a model otherwise gets), and
        predict on raw features with `kilnet.Model(feature_space.get_inputs(), outputs)`.

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"n": "integer_hashed"}, hashing_dim=8)
            >>> space.get_encoded_features().shape
            (None, 8)
        """
        self._check_adapted()
        if self._encoded_features is None:
            inputs = self.get_inputs()
            preprocessed = {key: self.preprocessors[key](inputs[key]) for key in self.features}
            crossed = {cross.name: self.crossers[cross.name](
                [preprocessed[key] for key in cross.feature_names]) for cross in self.crosses}
            encoded = {}
            for key, _ in self._specs():
                value = preprocessed[key] if key in preprocessed else crossed[key]
                encoder = self.one_hot_encoders.get(key)
                encoded[key] = encoder(value) if encoder else value
            if self.output_mode == "concat":
                encoded = Concatenate(axis=-1)(list(encoded.values()))
            for tensor in tensors_in(encoded):   # keras.io trains a model started here
                tensor.meant_as_input = True
            self._encoded_features = encoded
        return self._encoded_features

    # -- configuration -----------------------------------------------------------------------------
    def get_config(self):
        """Keras's config keys; JSON-ready. An adapted space's config carries what it learned.

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"x": "float"}, output_mode="dict")
            >>> again = kilnet.utils.FeatureSpace.from_config(space.get_config())
            >>> again.output_mode, list(again.features)
            ('dict', ['x'])
        """
        return {
            "features": {key: _keras_entry("Feature", f.get_config())
                         for key, f in self.features.items()},
            "output_mode": self.output_mode,
            "crosses": [_keras_entry("Cross", c.get_config()) for c in self.crosses],
            "crossing_dim": self.crossing_dim,
            "hashing_dim": self.hashing_dim,
            "num_discretization_bins": self.num_discretization_bins,
        }

    @classmethod
    def from_config(cls, config):
        """The space a `get_config()` (kilnet's or Keras's) describes.

        Example:
            >>> import kilnet
            >>> config = kilnet.utils.FeatureSpace({"x": "float"}).get_config()
            >>> type(kilnet.utils.FeatureSpace.from_config(config)).__name__
            'FeatureSpace'
        """
        return cls(**config)

    def keras_file_config(self) -> dict:
        """get_config() as a Keras `.keras` file holds it: an adapted Normalization's mean and
        variance are left to the weights file, where Keras keeps them (its `vars/0` to
        `vars/2`); an adapted vocabulary stays in the config, which Keras reads too.

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
            >>> space.adapt({"x": [1.0, 2.0, 3.0]})
            >>> entry = space.keras_file_config()["features"]["x"]["config"]["preprocessor"]
            >>> entry["config"]["mean"], space.get_config()["features"]["x"]["config"][
            ...     "preprocessor"]["config"]["mean"]
            (None, [2.0])
        """
        config = self.get_config()
        for key, layer in self.preprocessors.items():
            if isinstance(layer, Normalization) and layer.input_mean is None:
                entry = config["features"][key]["config"]["preprocessor"]["config"]
                entry.update(mean=None, variance=None)
        return config

    def get_build_config(self) -> dict:
        """What each preprocessor was built for, by feature name, as Keras's: a `.keras`
        file's `build_config`, which `build_from_config` reads back.

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
            >>> space.adapt({"x": [1.0, 2.0, 3.0]})
            >>> space.get_build_config()
            {'x': {'input_shape': [None, 1]}}
        """
        self._check_adapted()
        return {key: _json_ready(layer.get_build_config() or {})
                for key, layer in self.preprocessors.items()}

    def build_from_config(self, config) -> None:
        """Build the preprocessors for what `get_build_config` gave (Keras's), so that a
        file's weights and vocabularies can be set into them; the space then counts as
        adapted, as Keras's does.

        Example:
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
            >>> space.build_from_config({"x": {"input_shape": [None, 1]}})
            >>> space.preprocessors["x"].built
            True
        """
        if not isinstance(config, dict) or not set(config) <= set(self.preprocessors):
            raise ValueError("FeatureSpace.build_from_config: expected a dict of build "
                             "configs by feature name, for the features "
                             f"{list(self.preprocessors)}. Received: {config!r:.200}")
        for key, layer_config in config.items():
            layer = self.preprocessors[key]
            if not layer.built and layer_config:
                layer.build_from_config(layer_config)
        self._is_adapted = True

    def save(self, filepath):
        """Write the space, adapted, as a Keras `.keras` file, which
        `kilnet.saving.load_model` and Keras's `keras.models.load_model` open.

        Example:
            >>> import os, tempfile
            >>> import kilnet
            >>> space = kilnet.utils.FeatureSpace({"color": "string_categorical"})
            >>> space.adapt({"color": ["red", "blue", "red"]})
            >>> path = os.path.join(tempfile.mkdtemp(), "space.keras")
            >>> space.save(path)
            >>> again = kilnet.saving.load_model(path)
            >>> again({"color": ["blue"]}).tolist()
            [[0.0, 0.0, 1.0]]
        """
        # files come after the data in kilnet's order: the writer is reached when saving;
        # it refuses an unadapted space (get_build_config checks) before writing anything
        from kilnet.keras_files import save_feature_space

        save_feature_space(self, filepath)


# -- helpers -----------------------------------------------------------------------------------------
def _preprocessor_name(name, kind):
    """The preprocessor's name: Keras's default numbers the kind per process (a second
    `string_categorical()` is string_categorical_1_preprocessor), so that the layers of a
    space made with the constructors keep distinct names in its model and files."""
    return f"{name or _names.numbered_in_process(kind)}_preprocessor"


def _is_adaptable(layer):
    """Whether FeatureSpace.adapt adapts the layer: Keras skips a Normalization given its
    statistics and a layer given its vocabulary."""
    if isinstance(layer, Normalization) and layer.input_mean is not None:
        return False
    if getattr(layer, "has_input_vocabulary", False):
        return False
    if isinstance(layer, Discretization) and layer.num_bins is None:
        return False
    return hasattr(layer, "adapt")


def _json_ready(value):
    """A build config with tuples as lists, as JSON gives them back."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _needs_adapt(layer):
    """Whether the layer cannot run before adapt (a config can carry the adapted state)."""
    if isinstance(layer, Normalization):
        return layer.input_mean is None and not layer.built
    if isinstance(layer, Discretization):
        return layer.bin_boundaries is None
    if isinstance(layer, (StringLookup, IntegerLookup)):
        return not layer.tokens
    return _is_adaptable(layer)


def _cardinality(key, layer):
    """The width of a one-hot feature: the preprocessor's number of indices or bins."""
    if isinstance(layer, (StringLookup, IntegerLookup)):
        return layer.vocabulary_size()
    if isinstance(layer, CategoryEncoding):
        return layer.num_tokens
    if isinstance(layer, (Discretization, Hashing, HashedCrossing)):
        if isinstance(layer, Discretization) and layer.num_bins is None:
            return len(layer.bin_boundaries) + 1
        return layer.num_bins
    raise ValueError(f"FeatureSpace: feature {key!r} has output_mode='one_hot', but the width "
                     f"of its preprocessor's output is not known, so it cannot be one-hot "
                     f"encoded; use output_mode='int' or 'float'. Received: a "
                     f"{type(layer).__name__} preprocessor")


def _preprocess(layer, column):
    """A preprocessor's output for a (batch, 1) column, as a NumPy array."""
    if isinstance(layer, Hashing) and layer.output_mode == "int":
        return layer.hash_values(column)  # on the host: int64 values hash exactly
    return np.asarray(layer(column))


def _typed(values, key, dtype):
    """Column values checked against the feature's dtype (strings stay strings)."""
    kind = values.dtype.kind
    is_text = kind in "US" or (kind == "O" and values.size > 0 and all(
        isinstance(v, (str, bytes)) for v in values.reshape(-1)))
    if dtype == "string":
        if not is_text:
            raise TypeError(f"FeatureSpace: feature {key!r} is a string feature; give it "
                            f"strings. Received: values of dtype {values.dtype}")
        return values
    if is_text or kind not in "biuf":
        raise TypeError(f"FeatureSpace: feature {key!r} is a {dtype} feature; give it numbers "
                        "(or declare it a string feature, e.g. 'string_categorical'). "
                        f"Received: values of dtype {values.dtype}")
    if dtype == "int32":
        if kind == "f" and not np.all(np.mod(values, 1) == 0):
            raise TypeError(f"FeatureSpace: feature {key!r} is an integer feature; give it "
                            f"whole numbers. Received: values such as "
                            f"{values[np.mod(values, 1) != 0].reshape(-1)[:3].tolist()}")
        return values.astype(np.int64)
    return values.astype(np.float32)


def _as_column(values, key):
    """Keras's input layout: one value per row, (batch, 1)."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values.reshape(1, 1)
    if values.ndim == 1:
        return values.reshape(-1, 1)
    return values


def _adapt_batches(dataset, names):
    """adapt's data as dicts of batch columns, unbatched data grouped by 32 rows."""
    if hasattr(dataset, "as_numpy_iterator"):  # a tf.data.Dataset
        dataset = dataset.as_numpy_iterator()
    if not isinstance(dataset, dict) and hasattr(dataset, "columns"):  # a pandas DataFrame
        dataset = {key: np.asarray(dataset[key]) for key in dataset.columns}
    if isinstance(dataset, dict):
        columns = _picked(dataset, names)
        rows = len(_as_column(next(iter(columns.values())), "")) if columns else 0
        for start in range(0, rows, _ADAPT_BATCH):
            yield {key: _as_column(c, key)[start:start + _ADAPT_BATCH]
                   for key, c in columns.items()}
        return
    if isinstance(dataset, (str, bytes)) or not hasattr(dataset, "__iter__"):
        raise TypeError("FeatureSpace.adapt takes a dict of columns, a pandas DataFrame, or "
                        "an iterable of dicts (e.g. a generator or a tf.data.Dataset). "
                        f"Received: {type(dataset).__name__}")
    samples = []
    for batch in dataset:
        if isinstance(batch, tuple) and batch and isinstance(batch[0], dict):
            batch = batch[0]  # (x, y): the x
        if not isinstance(batch, dict):
            raise TypeError("FeatureSpace.adapt: each element of the data must be a dict of "
                            f"columns. Received: an element of type {type(batch).__name__}")
        columns = _picked(batch, names)
        if all(np.ndim(c) == 0 for c in columns.values()):
            samples.append(columns)   # one sample: grouped by 32 below, as Keras batches
            if len(samples) == _ADAPT_BATCH:
                yield _stacked(samples)
                samples = []
        else:
            yield columns
    if samples:
        yield _stacked(samples)


def _picked(data, names):
    missing = [key for key in names if key not in data]
    if missing:
        raise ValueError(f"FeatureSpace.adapt: the data lacks the features {missing}, which "
                         f"learn from the data. Received: keys {list(data)}")
    return {key: np.asarray(data[key]) for key in names}


def _stacked(samples):
    return {key: np.stack([s[key] for s in samples]) for key in samples[0]}
