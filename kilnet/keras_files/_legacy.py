"""Legacy Keras HDF5 model files (`model.h5`: Keras 2, and Keras 3's `model.save("m.h5")`).

Why a module of its own: the legacy format keeps the model's JSON config in an HDF5 attribute
(`model_config`), the compile arguments in another (`training_config`), and each layer's
weights under `model_weights/<layer name>/` listed by a `weight_names` attribute, in the
layer's weight order. Keras 2 also spelled some config keys otherwise (`batch_input_shape`, `input_length`,
`implementation`). This module rewrites that into the Keras 3
config the closed table of _config reads, so the same refusals apply (no Lambda, no module
paths, no custom class without custom_objects), and reads the weights with the same bounds:
hard links only, plain uncompressed arrays, and every declared shape checked against kilnet's
layers abstractly (kilnet.saving.precheck_graph) before the model makes its weights.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from kilnet import saving
from kilnet.errors import ModelFileError
from kilnet.keras_files import _archive, _h5
from kilnet.layers import InputLayer
from kilnet.models import Model
from kilnet.models import _config as kilnet_config

MAX_ATTRIBUTE_BYTES = 16 * 2**20   # a config attribute, as config.json in a .keras file
ROOT = "model_weights"


def load_legacy_h5(filepath, custom_objects=None, compile=True):
    """The kilnet model a legacy Keras `.h5` model file describes, with its weights and, where
    kilnet has the same objects, its compile configuration.

    Example:
        >>> import os, tempfile
        >>> import kilnet
        >>> from kilnet.keras_files import load_legacy_h5
        >>> path = os.path.join(tempfile.mkdtemp(), "weights_only.h5")
        >>> import h5py
        >>> with h5py.File(path, "w") as f:
        ...     f["x"] = [1.0]
        >>> load_legacy_h5(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load ...: it has no model_config attribute...
    """
    from kilnet.keras_files import _import   # the .keras loader's shared steps

    path = os.fspath(filepath)
    _archive.regular_file_size(path)
    with open(path, "rb") as f:
        data = f.read()
    with _h5.WeightsFile(data, path) as weights:
        config = _json_attribute(weights, "model_config", required=True)
        spec = keras3_model_entry(config, path)
        kilnet_config.check_bounds(spec, path)
        model = _import.model_from_keras_config(spec, path, custom_objects)
        install_legacy_weights(model, weights)
        training = _json_attribute(weights, "training_config", required=False)
        if compile and training:
            _import.compile_from_keras(model, _keras3_compile(training, path), path)
            if "optimizer_weights" in weights.file:
                warnings.warn(f"{path}: the optimizer state of a legacy .h5 file is not "
                              "restored; training continues from a fresh optimizer state "
                              "(a .keras file keeps it).", stacklevel=2)
    return model


def _json_attribute(weights, name, required):
    attrs = weights.file.attrs
    if name not in attrs:
        if required:
            weights.fail(f"it has no {name} attribute: it is not a Keras model file (a "
                         "weights-only .h5 file loads with model.load_weights).")
        return None
    value = attrs[name]
    if isinstance(value, np.ndarray) or not isinstance(value, (str, bytes)):
        weights.fail(f"its {name} attribute is not a JSON string.")
    if len(value) > MAX_ATTRIBUTE_BYTES:
        weights.fail(f"its {name} attribute is {len(value):,} bytes, above the cap of "
                     f"{MAX_ATTRIBUTE_BYTES:,}.")
    return kilnet_config.parse_json(value, weights.path)


# -- Keras 2 config -> Keras 3 config ----------------------------------------------------------
def keras3_model_entry(entry, path):
    """A legacy model config entry in Keras 3's form (`batch_input_shape` as an InputLayer,
    list-form nodes as {"args", "kwargs"}); what is already Keras 3's stays as it is."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise ModelFileError(path, "its model_config is not a Keras model config.")
    config = dict(entry["config"])
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise ModelFileError(path, "its model_config has no list of layers.")
    if entry.get("class_name") == "Sequential":
        layers = _sequential_layers(layers, config.pop("build_input_shape", None), path)
    elif entry.get("class_name") in ("Functional", "Model"):
        layers = [_functional_layer(e, path) for e in layers]
    else:
        layers = [_nested(e, path) for e in layers]
    config["layers"] = layers
    if isinstance(config.get("dtype"), str) or config.get("dtype") is None:
        config.pop("dtype", None)
    return {"class_name": entry.get("class_name"), "config": config,
            **({"module": entry["module"]} if "module" in entry else {})}


def _nested(entry, path):
    if isinstance(entry, dict) and entry.get("class_name") in ("Sequential", "Functional",
                                                               "Model"):
        return {**entry, **keras3_model_entry(entry, path)}
    if isinstance(entry, dict) and isinstance(entry.get("config"), dict) and entry.get(
            "class_name") != "InputLayer":
        config = {k: v for k, v in entry["config"].items()
                  if k not in ("batch_input_shape", "input_length")}   # shapes come from nodes
        if config.get("time_major") is False:
            del config["time_major"]   # Keras 2's default; True stays, and is refused
        config.pop("implementation", None)   # Keras 2's kernel choice, same result
        return {**entry, "config": config}
    return entry


def _sequential_layers(layers, build_input_shape, path):
    out = [_nested(e, path) for e in layers]
    first = layers[0] if layers else None
    shape = first.get("config", {}).get("batch_input_shape") if isinstance(first, dict) else None
    if isinstance(first, dict) and first.get("class_name") == "InputLayer":
        config = dict(first["config"])
        if "batch_input_shape" in config:
            config["batch_shape"] = config.pop("batch_input_shape")
        return [{**first, "config": config}] + out[1:]
    shape = shape or build_input_shape
    if isinstance(shape, list):
        return [{"class_name": "InputLayer", "config": {"batch_shape": shape,
                                                        "name": "input_layer"}}] + out
    return out


def _functional_layer(entry, path):
    entry = _nested(entry, path)
    if entry.get("class_name") == "InputLayer":
        config = dict(entry["config"])
        if "batch_input_shape" in config:
            config["batch_shape"] = config.pop("batch_input_shape")
        entry = {**entry, "config": config}
    nodes = entry.get("inbound_nodes")
    if isinstance(nodes, list):
        entry = {**entry, "inbound_nodes": [_node(n, path) for n in nodes]}
    return entry


def _node(node, path):
    """A Keras 3 node as it is; Keras 2's list form ([[layer, node, tensor, kwargs], ...])
    records no tensor shapes, which kilnet's graph reader checks, so it is refused."""
    if isinstance(node, dict):
        return node
    raise ModelFileError(path, "it is a Keras 2 functional model, whose nodes (in the list "
                               "form [[layer, node, tensor, kwargs]]) kilnet does not read yet; "
                               "Keras 2 Sequential models load. Open the model in Keras and "
                               "save it as .keras.")


def _keras3_compile(training, path):
    if not isinstance(training, dict):
        raise ModelFileError(path, "its training_config is not a dict.")
    config = {k: v for k, v in training.items() if k not in ("optimizer_config",)}
    optimizer = training.get("optimizer_config")
    if isinstance(optimizer, dict):
        config["optimizer"] = optimizer
    config.pop("sample_weight_mode", None)   # Keras 2's; None is its only modern meaning
    return config


# -- weights ------------------------------------------------------------------------------------
def install_legacy_weights(model, weights):
    """Build `model` and set its weights from `model_weights/<layer>/<weight name>`, every
    declared shape checked against kilnet's layers before anything is allocated."""
    path = weights.path
    if ROOT not in weights.file:
        weights.fail(f"it has no {ROOT} group.")
    groups = _layer_groups(model, weights)
    if not model.is_functional:
        weights.fail("its model has no input shape to build it with.")
    declared = {}
    for layer, names in groups:
        declared.update(_declared(layer, (layer.name,), names, weights))
    saving.precheck_graph(model, (), declared, path)
    model.build(seed=0)
    for layer, names in groups:
        variables = [v for p, _, v in model.variable_paths() if p[0] == layer.name]
        if len(variables) != len(names):
            weights.fail(f"layer {layer.name!r} has {len(variables)} weights; the file lists "
                         f"{len(names)}.")
        arrays = [weights.read(h5, v.shape, np.dtype(v.dtype)) for h5, v in zip(names, variables)]
        for variable, array in zip(variables, arrays):
            variable.assign(array)


def _layer_groups(model, weights):
    """[(kilnet layer, [h5 paths of its weights in order])] for the layers that have weights."""
    root = weights.file[ROOT]
    listed = _names_attribute(root, "layer_names", weights)
    out = []
    for layer in model.layers:
        if isinstance(layer, InputLayer):
            continue
        if layer.name not in listed:
            weights.fail(f"its weights have no group for layer {layer.name!r}.")
        group = weights.group(f"{ROOT}/{layer.name}")
        names = _names_attribute(group, "weight_names", weights)
        out.append((layer, [f"{ROOT}/{layer.name}/{n}" for n in names]))
    return out


def _names_attribute(group, name, weights):
    value = group.attrs.get(name) if group is not None else None
    if value is None or not hasattr(value, "__len__") or len(value) > _h5.MAX_OBJECTS:
        weights.fail(f"its weights lack a proper {name} attribute.")
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in value]


def _declared(layer, where, names, weights) -> dict:
    """{kilnet array name: ShapeDtypeStruct} for the leaf layers under `layer`, their weights
    taken from `names` in Keras's weight order; a layer with sub-layers is refused."""
    found = {}
    queue = list(names)
    for leaf, leaf_path in _leaves(layer, where, weights):
        own = [("params", n) for n in leaf.param_names] + [("state", n)
                                                          for n in leaf.state_names]
        if len(queue) < len(own):
            weights.fail(f"layer {leaf.name!r} needs {len(own)} weights; the file lists fewer.")
        for kind, name in own:
            h5 = queue.pop(0)
            shape = weights.shape_of(h5)
            if shape is None:
                weights.fail(f"the weight {h5!r} of layer {leaf.name!r} is missing.")
            found[f"{kind}/{'/'.join(leaf_path + (name,))}"] = jax.ShapeDtypeStruct(
                shape, np.float32)
    if queue:
        weights.fail(f"layer {layer.name!r} lists weights no layer uses: {queue[:3]}.")
    return found


def _leaves(layer, where, weights):
    if isinstance(layer, InputLayer):
        return []
    if isinstance(layer, Model):
        if not layer.is_functional:
            weights.fail(f"the nested model {layer.name!r} has no input shape.")
        return [pair for sub in layer.layers for pair in _leaves(sub, where + (sub.name,),
                                                                 weights)]
    if layer.layers or not layer.is_pure:
        weights.fail(f"layer {layer.name!r} ({type(layer).__name__}) holds sub-layers, which "
                     "kilnet does not read from legacy .h5 files yet; open the model in Keras "
                     "and save it as .keras.")
    return [(layer, where)]
