"""Legacy Keras HDF5 model files (`model.h5`: Keras 2, and Keras 3's `model.save("m.h5")`).

Why a module of its own: the legacy format keeps the model's JSON config in an HDF5 attribute
(`model_config`), the compile arguments in another (`training_config`), and each layer's
weights under `model_weights/<layer name>/` listed by a `weight_names` attribute, in the order
`layer.trainable_weights + layer.non_trainable_weights` (so a nested model lists every trainable
weight before any moving statistic). Keras 2 also spelled some config keys otherwise
(`batch_input_shape`, `input_length`, `implementation`, BatchNormalization's `axis: [3]`,
optimizers registered as `Custom>Adam`). This module rewrites that into the Keras 3 config the
closed table of _config reads, so the same refusals apply (no Lambda, no module paths, no custom
class without custom_objects); a Keras 2 functional graph (list-form nodes without shapes) is
wired by _keras2_graph. The weights are read with the same bounds: hard links only, plain
uncompressed arrays, and every declared shape checked against kilnet's layers abstractly
(kilnet.saving.precheck_graph) before the model makes its weights.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from kilnet import saving
from kilnet.errors import ModelFileError
from kilnet.keras_files import _archive, _h5, _keras2_graph
from kilnet.layers import InputLayer
from kilnet.models import Model
from kilnet.models import _config as kilnet_config
from kilnet.optimizers import keras_variables

MAX_ATTRIBUTE_BYTES = 16 * 2**20   # a config attribute, as config.json in a .keras file
ROOT = "model_weights"
CLAIMED_AXIS = " keras2_axis"   # not a Keras key (it has a space): removed before planning


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
        claimed = _pop_claimed(spec, {})
        if _keras2_graph.has_list_nodes(spec):
            model = _keras2_graph.build_model(spec, path, custom_objects)
        else:
            model = _import.model_from_keras_config(spec, path, custom_objects)
        if claimed:
            _check_batch_norm_axes(model, claimed, path)
        install_legacy_weights(model, weights)
        # as Keras: with compile=False the training configuration is not read at all
        training = _json_attribute(weights, "training_config", required=False) if compile \
            else None
        if training:
            _import.compile_from_keras(model, _keras3_compile(training, path), path)
            if "optimizer_weights" in weights.file and model.compiled is not None:
                _restore_legacy_optimizer(model.compiled, weights)
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
        if entry.get("class_name") == "BatchNormalization":
            config = _batch_norm_axis(config)
        return {**entry, "config": config}
    return entry


def _batch_norm_axis(config):
    """Keras 2 writes BatchNormalization's axis as a list of positive axes ([3] for the last
    axis of an image batch); kilnet's is -1. The claimed axis travels in the config under
    CLAIMED_AXIS and _check_batch_norm_axes compares it with the input's rank once the graph is
    built."""
    axis = config.get("axis")
    if isinstance(axis, list) and len(axis) == 1 and isinstance(axis[0], int) and axis[0] > 0:
        return {**config, "axis": -1, CLAIMED_AXIS: axis[0]}
    return config


def _check_batch_norm_axes(model, claimed, path):
    """Refuse a BatchNormalization whose Keras 2 axis is not its input's last axis."""
    for layer in _all_layers(model):
        if layer.name in claimed and type(layer).__name__ == "BatchNormalization":
            rank = len(layer.input.shape)
            if any(k != rank - 1 for k in claimed[layer.name]):
                raise ModelFileError(path, f"layer {layer.name!r} normalizes axis "
                                           f"{claimed[layer.name]} of a rank-{rank} input; "
                                           "kilnet's BatchNormalization normalizes the last "
                                           "axis only.")


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, Model):
            yield from _all_layers(layer)


def _pop_claimed(value, claimed):
    """Remove the CLAIMED_AXIS marks from a converted config, collecting them by layer."""
    if isinstance(value, dict):
        if CLAIMED_AXIS in value:
            claimed.setdefault(value.get("name"), set()).add(value.pop(CLAIMED_AXIS))
        for item in value.values():
            _pop_claimed(item, claimed)
    elif isinstance(value, list):
        for item in value:
            _pop_claimed(item, claimed)
    return claimed


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
    """A node as it is: Keras 3's {"args", "kwargs"}, or Keras 2's list form
    ([[layer, node, tensor, kwargs], ...]), which _keras2_graph wires (it has no shapes)."""
    if isinstance(node, (dict, list)):
        return node
    raise ModelFileError(path, f"a node of its model_config is malformed: {node!r:.200}")


def _keras3_compile(training, path):
    if not isinstance(training, dict):
        raise ModelFileError(path, "its training_config is not a dict.")
    config = {k: v for k, v in training.items() if k not in ("optimizer_config",)}
    optimizer = training.get("optimizer_config")
    if isinstance(optimizer, dict):
        config["optimizer"] = _keras3_optimizer(optimizer)
    config.pop("sample_weight_mode", None)   # Keras 2's; None is its only modern meaning
    return config


def _keras3_optimizer(entry):
    """Keras 2's optimizer entry in Keras 3's spelling: tf_keras registers its optimizers as
    "Custom>Adam"; its config adds `jit_compile` and `is_legacy_optimizer` (how TensorFlow
    ran the update, not what it computes), and the legacy optimizers add `decay` (kept unless 0,
    so that kilnet refuses a decaying learning rate)."""
    name = entry.get("class_name")
    if isinstance(name, str) and name.startswith("Custom>"):
        name = name[len("Custom>"):]
    config = entry.get("config")
    if isinstance(config, dict):
        config = {k: v for k, v in config.items()
                  if k not in ("jit_compile", "is_legacy_optimizer")
                  and not (k == "decay" and v == 0)}
    return {**entry, "class_name": name, "config": config}


# Keras 2's slot names in optimizer_weights' weight_names, per kilnet slot: tf_keras's
# optimizers write "Adam/m/dense/kernel:0" and "SGD/m/dense/kernel:0", its legacy ones
# (optimizer_v2) "Adam/dense/kernel/m:0" and "SGD/dense/kernel/momentum:0". Adam and SGD compute
# the same update from the same state in Keras 2 and kilnet.
LEGACY_SLOTS = {"Adam": {"momentum": ("m",), "velocity": ("v",), "velocity_hat": ("vhat",)},
                "SGD": {"momentum": ("m", "momentum")}}


def _restore_legacy_optimizer(trainer, weights):
    """Set the trainer's optimizer state from Keras 2's `optimizer_weights` (iteration, then
    each slot of each trainable variable, told apart by name), each shape checked before it is
    read; warn and keep a fresh state where it cannot be mapped."""
    from kilnet.keras_files import _optimizer

    if str(weights.file.attrs.get("keras_version", "")).startswith("3."):
        _restore_keras3_optimizer(trainer, weights)
        return
    kind = type(trainer.optimizer).__name__
    try:
        names = _optimizer.slot_names(trainer.optimizer)
        keywords = LEGACY_SLOTS[kind]
        if trainer.state is None:
            trainer.ensure_state()
        group = weights.group("optimizer_weights")
        listed = _names_attribute(group, "weight_names", weights)
        count, slots = _legacy_slots(listed, [keywords[n] for n in names])
        shapes = _optimizer.expected_shapes(trainer)[2:]
        if count is None or any(len(s) != len(shapes) // max(len(names), 1) for s in slots):
            raise _optimizer.Unsupported(f"its optimizer_weights {listed[:4]} are not Keras "
                                         f"2's {kind} slots {names} for "
                                         f"{len(shapes) // max(len(names), 1)} variables")
    except (_optimizer.Unsupported, KeyError) as error:
        warnings.warn(f"{weights.path}: the optimizer state of this legacy .h5 file is not "
                      f"restored ({error or kind}); training continues from a fresh optimizer "
                      "state.", stacklevel=3)
        return
    in_order = keras_variables.keras_order(trainer.optimizer, slots)
    arrays = [weights.read(f"optimizer_weights/{count}", (), np.float32,
                           kinds=("f", "i", "u")),
              np.float32(trainer.optimizer.learning_rate)]
    arrays += [weights.read(f"optimizer_weights/{h5}", shape, np.float32)
               for h5, shape in zip(in_order, shapes)]
    if not 0 <= arrays[0] < 2**31:
        weights.fail(f"its optimizer's iteration count {arrays[0]} is invalid.")
    _optimizer.import_arrays(trainer, arrays)


def _restore_keras3_optimizer(trainer, weights):
    """Set the trainer's optimizer state from a Keras 3 legacy file's `optimizer_weights`:
    Keras 3's `optimizer.variables` in order (the step, the learning rate, each trainable
    variable's slots), each shape checked before it is read; warn and keep a fresh state
    where they are not kilnet's optimizer's."""
    from kilnet.keras_files import _optimizer

    try:
        if trainer.state is None:
            trainer.ensure_state()
        shapes = _optimizer.expected_shapes(trainer)
        listed = _chunked_names(weights.group("optimizer_weights"), "weight_names", weights)
        if len(listed) != len(shapes):
            raise _optimizer.Unsupported(
                f"it lists {len(listed)} optimizer variables where kilnet's "
                f"{type(trainer.optimizer).__name__} has {len(shapes)}")
    except _optimizer.Unsupported as error:
        warnings.warn(f"{weights.path}: the optimizer state of this legacy .h5 file is not "
                      f"restored ({error}); training continues from a fresh optimizer state.",
                      stacklevel=3)
        return
    arrays = [weights.read(f"optimizer_weights/{name}", shape, np.float32,
                           kinds=("f", "i", "u") if shape == () else ("f",))
              for name, shape in zip(listed, shapes)]
    if not 0 <= arrays[0] < 2**31:
        weights.fail(f"its optimizer's iteration count {arrays[0]} is invalid.")
    _optimizer.import_arrays(trainer, arrays)


def _legacy_slots(listed, keywords):
    """(the iteration count's name, [[names of slot k in order] for each keyword])."""
    count, slots = None, [[] for _ in keywords]
    for name in listed:
        parts = name.split(":")[0].split("/")
        if parts[-1] in ("iter", "iteration"):
            count = name
            continue
        for k, words in enumerate(keywords):
            if parts[-1] in words or any(word in parts[:2] for word in words):
                slots[k].append(name)
                break
        else:
            raise KeyError(f"optimizer weight {name!r:.80}")
    return count, slots


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
    declared, slots, built_first = {}, [], []
    for layer, names in groups:
        if _known_once_built(layer):
            built_first.append((layer, names))
            continue
        trainable, frozen = _legacy_order(layer, (layer.name,), weights)
        order = trainable + frozen
        _check_count(layer, order, names, weights)
        for (kind, where), h5 in zip(order, names):
            shape = weights.shape_of(h5)
            if shape is None:
                weights.fail(f"the weight {h5!r} of layer {layer.name!r} is missing.")
            declared[f"{kind}/{'/'.join(where)}"] = jax.ShapeDtypeStruct(shape, np.float32)
            slots.append((h5, (kind, where)))
    saving.precheck_graph(model, (), declared, path)
    model.build(seed=0)
    variables = {(kind, tuple(where)): v for where, kind, v in model.variable_paths()}
    targets = [(h5, variables[key]) for h5, key in slots]
    for layer, names in built_first:
        order = list(layer.trainable_weights) + list(layer.non_trainable_weights)
        _check_count(layer, order, names, weights)
        targets.extend(zip(names, order))
    arrays = [weights.read(h5, variable.shape, np.dtype(variable.dtype))
              for h5, variable in targets]
    for (_, variable), array in zip(targets, arrays):
        variable.assign(array)


def _known_once_built(layer) -> bool:
    """Whether a layer's weights are known only once it is built: a layer of yours in Keras's
    form (its `build` makes them) or one holding sub-layers (not a nested model). Keras's
    legacy writer lists such a layer's `trainable_weights` then `non_trainable_weights`; the
    file's arrays are read into them after the model is built, each shape checked first."""
    return not isinstance(layer, (Model, InputLayer)) and (bool(layer.sublayers)
                                                          or not layer.is_pure)


def _check_count(layer, order, names, weights) -> None:
    if len(order) != len(names):
        weights.fail(f"layer {layer.name!r} has {len(order)} weights; the file lists "
                     f"{len(names)}.")


# -- weights-only files: Keras 2's `save_weights("w.h5")`, and Keras's application weights --
def is_legacy_weights_file(weights) -> bool:
    """Whether an open HDF5 file is a legacy weights-only file: a `layer_names` attribute at
    its root (split into layer_names0, layer_names1, ... when long), one group per layer.

    Example:
        >>> import io, h5py
        >>> from kilnet.keras_files import _h5, _legacy
        >>> buffer = io.BytesIO()
        >>> with h5py.File(buffer, "w") as f:
        ...     f.attrs["layer_names"] = [b"dense"]
        >>> with _h5.WeightsFile(buffer.getvalue(), "w.h5") as weights:
        ...     _legacy.is_legacy_weights_file(weights)
        True
    """
    attrs = weights.file.attrs
    return ROOT not in weights.file and "layers" not in weights.file and (
        "layer_names" in attrs or "layer_names0" in attrs)


def install_weights_by_order(model, weights):
    """Set `model`'s weights from a legacy weights-only file as Keras's legacy loader does:
    the model's layers that have weights, in order, take the file's layers that list weights,
    in order (names may differ: Keras 2 numbered unnamed layers from 1), each layer's arrays
    in its `weight_names` order (trainable weights, then the others). Every count and shape
    is checked before anything is read; an unbuilt model is built first."""
    saved = [(name, names) for name, names in _saved_layers(weights) if names]
    if not model.built:
        model.build(seed=0)
    variables = {(kind, tuple(where)): v for where, kind, v in model.variable_paths()}
    mine = []
    for layer in model.layers:
        if _known_once_built(layer):   # built above: its Variables in Keras's legacy order
            order = list(layer.trainable_weights) + list(layer.non_trainable_weights)
        else:
            trainable, rest = _legacy_order(layer, (layer.name,), weights)
            order = [variables[(kind, tuple(where))] for kind, where in trainable + rest]
        if order:
            mine.append((layer, order))
    if len(saved) != len(mine):
        weights.fail(f"it holds weights for {len(saved)} layers; this model has {len(mine)} "
                     "layers with weights. Build the model the file was saved from (same "
                     "include_top and architecture).")
    slots = []
    for (layer, order), (saved_name, names) in zip(mine, saved):
        if len(order) != len(names):
            weights.fail(f"layer {layer.name!r} has {len(order)} weights; the file's layer "
                         f"{saved_name!r} lists {len(names)}.")
        for variable, weight_name in zip(order, names):
            h5 = f"{saved_name}/{weight_name}"
            # A scalar may be an integer: Normalization's "count" (EfficientNet's files); an
            # integer or bool weight of yours is read as its own kind.
            kinds = (("f", "i", "u") if tuple(variable.shape) == () else ("f",)) \
                if np.dtype(variable.dtype).kind == "f" else _h5.kinds_read_as(variable.dtype)
            dataset = weights.dataset(h5)
            if dataset is None:
                weights.fail(f"the weight {h5!r} is missing.")
            shape = tuple(weights.checked(dataset, h5, kinds).shape)
            if shape != tuple(variable.shape):
                weights.fail(f"the weight {h5!r} has shape {shape}; layer {layer.name!r} "
                             f"({type(layer).__name__}) needs {tuple(variable.shape)}.")
            slots.append((h5, variable, kinds))
    arrays = [weights.read(h5, v.shape, np.dtype(v.dtype), kinds) for h5, v, kinds in slots]
    for (_, variable, _), array in zip(slots, arrays):
        variable.assign(array)


def _saved_layers(weights):
    """[(layer name, [its weight names])] in the file's `layer_names` order."""
    root = weights.file
    out = []
    for name in _chunked_names(root, "layer_names", weights):
        group = weights.group(name)
        if group is None:
            weights.fail(f"its layer_names lists {name!r}, which has no group.")
        out.append((name, _chunked_names(group, "weight_names", weights)))
    return out


def _chunked_names(group, name, weights):
    """A names attribute, joined from its chunks (name0, name1, ...) when Keras split it."""
    if name in group.attrs:
        return _names_attribute(group, name, weights)
    names, chunk = [], 0
    while f"{name}{chunk}" in group.attrs and chunk <= _h5.MAX_OBJECTS:
        names += _names_attribute(group, f"{name}{chunk}", weights)
        chunk += 1
    if not chunk:
        weights.fail(f"its weights lack a proper {name} attribute.")
    return names


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


def _legacy_order(layer, where, weights, frozen=False):
    """The weights under `layer` as Keras's legacy writer lists them, `trainable_weights`
    then `non_trainable_weights` ([("params"|"state", kilnet path)] each): in a nested model
    every trainable weight of its layers comes before any moving statistic, and a frozen
    layer's weights are all non-trainable."""
    frozen = frozen or not layer.trainable
    if isinstance(layer, InputLayer):
        return [], []
    if isinstance(layer, Model):
        if not layer.is_functional:
            weights.fail(f"the nested model {layer.name!r} has no input shape.")
        parts = [_legacy_order(sub, where + (sub.name,), weights, frozen)
                 for sub in layer.sublayers]
        if frozen:
            return [], [w for trainable, rest in parts for w in trainable + rest]
        return ([w for trainable, _ in parts for w in trainable],
                [w for _, rest in parts for w in rest])
    if layer.sublayers or not layer.is_pure:
        weights.fail(f"layer {layer.name!r} ({type(layer).__name__}) holds sub-layers or makes "
                     "its weights in its own build; kilnet reads such a layer from a legacy .h5 "
                     "model file at the model's top level or from a weights-only file, not yet "
                     "inside a nested model; open the model in Keras and save it as .keras.")
    params = [("params", where + (n,)) for n in layer.param_names]
    state = [("state", where + (n,)) for n in layer.state_names]
    return ([], params + state) if frozen else (params, state)
