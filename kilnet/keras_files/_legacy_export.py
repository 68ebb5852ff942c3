"""Writing a kilnet model as a legacy Keras `.h5` model file, as Keras 3's `model.save("m.h5")`.

Why a module of its own: tutorials, and the `ModelCheckpoint("best_model.h5")` they copy, still
save models under `.h5`, and Keras 3 writes them (it says the format is legacy). The layout is
Keras 3.15's legacy writer's, so that `keras.models.load_model("m.h5")` (and kilnet's own
loader, kilnet.keras_files._legacy) opens it:

- attributes `keras_version`, `backend`, `model_config` (the model's Keras config, its own entry
  and its layers' entries in the legacy spelling: no module, registered_name, build_config or
  compile_config) and, for a compiled model, `training_config` (compile's arguments with
  `optimizer_config`);
- `model_weights/`: the layer names in model order (`layer_names`), one group per layer listing
  its weights (`weight_names`: the layer's trainable weights, then the others), and
  `top_level_model_weights`;
- `optimizer_weights/`: the optimizer's variables in Keras's order (`weight_names`).

Only Sequential and functional models are written, with no subclassed model among their layers:
the format has no place for a subclassed model's code or its attributes' weights, as in Keras 2,
which refused them too; `.keras` takes them.
"""

from __future__ import annotations

import io
import json
import os
import warnings

import h5py
import jax
import numpy as np

from kilnet import _safefile
from kilnet.keras_files import _config, _optimizer
from kilnet.keras_files._export import KERAS_VERSION, refuse_non_finite, training_setup
from kilnet.models import Model, Sequential
from kilnet.models import _config as kilnet_config

# An HDF5 attribute kept in an object's header holds at most this many bytes; Keras splits a
# longer list of names into `name0`, `name1`, ... (its loader and kilnet's join them).
HEADER_LIMIT = 64512
_NEW_STYLE_KEYS = ("module", "registered_name", "build_config", "compile_config")


def save_legacy_h5(model, filepath, overwrite=True, include_optimizer=True):
    """Write `model` (Sequential or functional, built) as a legacy Keras `.h5` model file,
    atomically, with its compile configuration and optimizer state when it is compiled
    (include_optimizer), as Keras 3 writes `model.save("m.h5")`.

    Example:
        >>> import os, tempfile
        >>> import h5py
        >>> import kilnet
        >>> from kilnet.keras_files import save_legacy_h5
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.h5")
        >>> save_legacy_h5(model, path)
        >>> sorted(h5py.File(path, "r")["model_weights"])
        ['dense', 'top_level_model_weights']
    """
    path = os.fspath(filepath)
    if not (isinstance(model, Sequential) or model.is_functional):
        raise ValueError(
            f"Cannot save {path}: a legacy .h5 model file holds Sequential and functional "
            f"models only, and {type(model).__name__} is a subclassed model. Save it with the "
            "extension .keras (Keras 3) or .kilnet (kilnet's own).")
    model.require_built()
    _refuse_nested_subclassed(model, path)
    entry = _config.keras_model(kilnet_config.serialize(model, build_config=False), path)
    attributes = {"keras_version": KERAS_VERSION, "backend": "jax",
                  "model_config": _json(legacy_model_config(entry))}
    optimizer = None
    if include_optimizer and model.is_compiled:
        compile_config, optimizer = training_setup(model, path, own_config=False)
        if compile_config is not None:
            attributes["training_config"] = _json(legacy_training_config(compile_config))
    data = _file_bytes(model, attributes, optimizer, path)
    _warn_legacy(path)
    _safefile.atomic_write(path, data, what="the Keras model file", overwrite=overwrite)


def _refuse_nested_subclassed(model, path):
    """A subclassed model called as a layer has no place in the legacy format either (its
    weights are found by walking its attributes, which the format does not record)."""
    for layer in model.layers:
        if isinstance(layer, Sequential) or (isinstance(layer, Model) and layer.is_functional):
            _refuse_nested_subclassed(layer, path)
        elif isinstance(layer, Model):
            raise ValueError(
                f"Cannot save {path}: a legacy .h5 model file holds Sequential and functional "
                f"models only, and its layer {layer.name!r} is the subclassed model class "
                f"{type(layer).__name__!r}. Save it with the extension .keras (Keras 3) or "
                ".kilnet (kilnet's own).")


def legacy_model_config(entry) -> dict:
    """A Keras 3 model entry (config.json's) in the legacy file's spelling: the model's and its
    layers' own entries (nested models' too) lose the keys of Keras 3's object registry; the
    objects inside a layer's config keep them, as Keras's layers write them either way.

    Example:
        >>> entry = {"module": "keras", "class_name": "Sequential", "registered_name": None,
        ...          "build_config": {"input_shape": [None, 3]}, "config": {"name": "s",
        ...          "layers": [{"module": "keras.layers", "class_name": "InputLayer",
        ...                      "registered_name": None, "config": {"batch_shape": [None, 3]}}]}}
        >>> legacy_model_config(entry)
        {'class_name': 'Sequential', 'config': {'name': 's', 'layers': [{'class_name': \
'InputLayer', 'config': {'batch_shape': [None, 3]}}], 'build_input_shape': [None, 3]}}
    """
    legacy = _legacy_entry(entry)
    config = legacy.get("config")
    if isinstance(config, dict) and isinstance(config.get("layers"), list):
        config = {**config, "layers": [legacy_model_config(e) for e in config["layers"]]}
        first = config["layers"][0] if config["layers"] else {}
        if entry["class_name"] == "Sequential" and first.get("class_name") == "InputLayer":
            config["build_input_shape"] = first["config"]["batch_shape"]
        legacy["config"] = config
    return legacy


def legacy_training_config(compile_config) -> dict:
    """Keras 3's compile_config as the legacy file's training_config: the optimizer moves to
    `optimizer_config`, and losses and metrics given as objects are written in the legacy
    spelling ({"class_name", "config"}; a function by its name).

    Example:
        >>> legacy_training_config({"optimizer": {"module": "keras.optimizers",
        ...     "class_name": "SGD", "config": {"learning_rate": 0.1}, "registered_name": None},
        ...     "loss": "mse", "metrics": ["mae"]})
        {'loss': 'mse', 'metrics': ['mae'], 'optimizer_config': {'class_name': 'SGD', \
'config': {'learning_rate': 0.1}}}
    """
    training = {key: _legacy_objects(value) for key, value in compile_config.items()
                if key != "optimizer"}
    optimizer = compile_config["optimizer"]
    if isinstance(optimizer, dict):
        training["optimizer_config"] = _legacy_entry(optimizer)
    else:   # a name: Keras writes the optimizer it made from it
        training["optimizer_config"] = {"class_name": optimizer, "config": {}}
    return training


def _legacy_entry(entry):
    """One object's Keras 3 entry without the registry's keys; a registered class under its
    registered name, as Keras's legacy serializer names it."""
    legacy = {k: v for k, v in entry.items() if k not in _NEW_STYLE_KEYS}
    legacy["class_name"] = entry.get("registered_name") or entry["class_name"]
    return legacy


def _legacy_objects(value):
    """Compile arguments (names, objects' entries, lists and dicts of them) in the legacy
    spelling."""
    if isinstance(value, list):
        return [_legacy_objects(v) for v in value]
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        if value["class_name"] == "function":   # a loss or metric function: its name
            return value["config"]
        return {"class_name": value.get("registered_name") or value["class_name"],
                "config": value["config"]}
    if isinstance(value, dict):
        return {k: _legacy_objects(v) for k, v in value.items()}
    return value


def _json(value) -> bytes:
    return json.dumps(value, default=_safefile.json_default).encode("utf8")


def _file_bytes(model, attributes, optimizer, path) -> bytes:
    """The whole HDF5 file in memory. Host sync."""
    layers = [(layer.name, list(layer.trainable_weights) + list(layer.non_trainable_weights))
              for layer in model.layers]
    values = jax.device_get([[w.value for w in weights] for _, weights in layers])
    refuse_non_finite(path, [w.path for _, weights in layers for w in weights],
                      [a for arrays in values for a in arrays])
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for key, value in attributes.items():
            f.attrs[key] = value
        group = f.create_group("model_weights")
        _names_attribute(group, "layer_names", [name for name, _ in layers])
        group.attrs["backend"] = attributes["backend"]
        group.attrs["keras_version"] = attributes["keras_version"]
        for (name, weights), arrays in sorted(zip(layers, values), key=lambda p: p[0][0]):
            _weights_group(group.create_group(name), [w.path for w in weights], arrays)
        _weights_group(group.create_group("top_level_model_weights"), [], [])
        if optimizer is not None:
            name, arrays = optimizer
            _weights_group(f.create_group("optimizer_weights"),
                           _optimizer.keras_variable_paths(model.compiled, name), arrays)
    return buffer.getvalue()


def _weights_group(group, names, arrays):
    _names_attribute(group, "weight_names", names)
    for name, array in zip(names, arrays):
        group.create_dataset(name, data=np.asarray(array))


def _names_attribute(group, key, names):
    """names as Keras writes them: encoded strings, split into numbered attributes when the
    list outgrows an object header."""
    encoded = [n.encode("utf8") for n in names]
    data = np.asarray(encoded)
    if data.nbytes <= HEADER_LIMIT:
        group.attrs[key] = encoded   # h5py keeps a list as variable-length strings, as Keras's
        return
    chunks = int(np.ceil(data.nbytes / HEADER_LIMIT))
    while any(part.nbytes > HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    for i, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{key}{i}"] = part


def _warn_legacy(path):
    warnings.warn(f"{path}: the legacy .h5 format (as Keras 3 writes it) keeps Sequential and "
                  "functional models; the .keras format is Keras 3's own and keeps every model.",
                  UserWarning, stacklevel=4)
