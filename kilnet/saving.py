"""Model files: `model.save(path)`, `kilnet.models.load_model(path)`, `model.save_weights(path)`,
`model.load_weights(path)`, and the registry of user classes a file may name.

A model file (suggested extension `.kilnet`) is one safetensors file (kilnet/_safefile.py):

    tensors   params/<layer path>/<name>   trainable-declared arrays, keyed by the path of
                                           layer names ("params/encoder/dense/kernel")
              state/<layer path>/<name>    non-trainable arrays (BatchNormalization's statistics)
              opt/<path>                   optimizer state (path in the Optax state pytree)
              train/rng                    the base dropout key of the training state
              hooks/<layer path>/<key>     what a layer's own save_own_variables wrote
              held/<kind>/<metric>/...     the weights of layers a Metric attribute holds
                                           (a KID metric's encoder; kilnet._metric_held_layers)
              heldopt/<holder>/<attr>/<i>  the variables of the built optimizers the model or
                                           its layers keep as attributes (a GAN's; kilnet.
                                           _optimizer_attributes), with the optimizer state
              assets/<layer path>/<file>   the bytes of the files its save_assets wrote
    info      {"kilnet_version",
               "model": {"class_name", "config"[, "build_config"]} (kilnet.models._config),
               "compile": {"optimizer": {"class_name", "config"}, "loss": ..., "metrics": [...],
                           "on_nonfinite"[, "loss_weights"]}
                          or {"keras_compile_config": a model's own get_compile_config},
               "training": {"seed", "fit_calls"},
               "weights": [[array name, owning layer's class], ...] in Keras's weight order}

For a Sequential the layer path is the layer's name, so its array names are those of the
previous version of kilnet, whose files (no "weights" list) still load. With the optimizer
state, the rng key, the seed and the fit count, a loaded model predicts bitwise the same and
continues training bitwise as the original would. A weights file holds params/ and state/ with
the "weights" list, so load_weights matches arrays by layer path (reordering the code that
makes the layers does not scramble them) and falls back to Keras's weight order, with the layer
types and shapes checked, when the paths differ.

Why it is safe to load a file from elsewhere: class names map only through allowlists
(kilnet.layers.LAYER_TYPES and CELL_TYPES, the optimizer/loss/metric types, classes the program
registered with `register_serializable` or passed as `custom_objects`); nothing in a file is
imported, evaluated or called except those classes' from_config; configurations are bounded in
size and depth; the arrays' shapes are checked against kilnet's layers abstractly before their
weights are made. Every problem is a kilnet.errors.ModelFileError naming the file. Saving is
atomic (_safefile.atomic_write) and refuses non-finite weights.
"""

from __future__ import annotations

import inspect
import math
import os
import warnings

import jax
import numpy as np

from kilnet import _metric_held_layers, _optimizer_attributes, _registry, _safefile
from kilnet import _saving_hooks
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet._tree import nonfinite, tensors_to_tree, tree_to_tensors
from kilnet.errors import ModelFileError
from kilnet.loss_scale import LossScaleOptimizer
from kilnet.layers import InputLayer

_MODEL_INFO_KEYS = {"kilnet_version", "model", "compile", "training"}
_WEIGHT_KINDS = ("params", "state")
PER_OUTPUT = "__outputs__"   # class_name of a compile argument given per output, as a dict


# -- the registry of user classes (kept in kilnet._registry, which layers read too) -------------


def register_serializable(package="Custom", name=None):
    """Allow a class of yours (a layer or a model), or a function (a `Lambda` layer's), in
    model files and configurations.

    A file names it "package>name"; loading maps that name back to the class registered in the
    running program. Nothing else of yours can be named by a file, so register only classes
    whose `from_config` is safe to call with data from a file.

    Args:
        package: the first part of the registered name (default "Custom").
        name: the second part (default: the class's name).

    Returns:
        A class decorator that registers the class and returns it unchanged.

    Example:
        >>> import kilnet
        >>> @kilnet.saving.register_serializable(package="Doc")
        ... class Twice(kilnet.layers.Layer):
        ...     def call(self, inputs):
        ...         return inputs * 2
        >>> kilnet.saving.get_registered_name(Twice)
        'Doc>Twice'
    """
    for argument, value in (("package", package), ("name", name)):
        if value is not None and (not isinstance(value, str) or not value or ">" in value):
            raise ValueError(f"register_serializable: {argument} must be a non-empty string "
                             f"without '>'. Received: {argument}={value!r}")

    def decorator(obj):
        if isinstance(obj, type) and not hasattr(obj, "get_config"):
            raise ValueError(f"Cannot register {obj.__name__}: it has no get_config() method, "
                             "so it could not be saved.")
        if not callable(obj):
            raise TypeError(f"register_serializable registers classes and functions. Received: {obj!r:.100}")
        registered = f"{package}>{name or obj.__name__}"
        _registry.register(registered, obj)   # re-running a definition replaces the class
        return obj

    return decorator


register_keras_serializable = register_serializable   # Keras's name for it


def get_registered_name(obj) -> str:
    """The name a file uses for a class (or instance): "package>Name" if registered, else
    the class's own name.

    Args:
        obj: a class, function or instance.

    Returns:
        The registered name, or the class's `__name__`.

    Example:
        >>> import kilnet
        >>> kilnet.saving.get_registered_name(kilnet.layers.Dense)
        'Dense'
    """
    if not isinstance(obj, type) and not inspect.isroutine(obj):
        obj = type(obj)   # an instance: its class's name
    return _registry.name_of(obj) or getattr(obj, "__name__", type(obj).__name__)


def get_registered_object(name, custom_objects=None, module_objects=None):
    """The class registered under `name` ("package>Name"), looked up in `custom_objects`
    first and `module_objects` last, or None.

    Args:
        name: the registered name.
        custom_objects: {"name": object} searched first.
        module_objects: {"name": object} searched last.

    Returns:
        The object, or None if no one has that name.

    Example:
        >>> import kilnet
        >>> @kilnet.saving.register_keras_serializable(package="Doc", name="Half")
        ... class Half(kilnet.layers.Layer):
        ...     def call(self, inputs):
        ...         return inputs / 2
        >>> kilnet.saving.get_registered_object("Doc>Half") is Half
        True
        >>> kilnet.saving.get_registered_object("Doc>Unknown") is None
        True
    """
    for table in (custom_objects or {}, _registry.registered(), module_objects or {}):
        if name in table:
            return table[name]
    return None


def registered_objects() -> dict:
    """A copy of the registry: {"package>Name": class}."""
    return _registry.registered()


def get_custom_objects() -> dict:
    """The live table of your registered objects (Keras's `get_custom_objects`): adding an
    entry registers it under that key, as `register_serializable` does, so configurations and
    model files may name it (a custom activation by its name, for example).

    Returns:
        The registry's own dict (not a copy); objects of an open `custom_object_scope` are
        not in it.

    Example:
        >>> import kilnet
        >>> def scaled_tanh(x):
        ...     return 2 * kilnet.ops.tanh(x)
        >>> kilnet.saving.get_custom_objects()["scaled_tanh"] = scaled_tanh
        >>> kilnet.saving.get_registered_object("scaled_tanh") is scaled_tanh
        True
    """
    return _registry.global_table()


class CustomObjectScope:
    """Within `with CustomObjectScope({"Name": obj})`, configurations and model files may
    name those objects (Keras's `custom_object_scope`): `load_model`, `model_from_config`,
    `from_config` and the `get` functions find them. Like Keras's, a scope replaces an outer
    one while it is open instead of adding to it, and nothing stays registered afterwards.

    Args:
        custom_objects: {"Name": class or function}.

    Example:
        >>> import kilnet
        >>> class Twice(kilnet.layers.Layer):
        ...     def call(self, inputs):
        ...         return inputs * 2
        >>> with kilnet.saving.custom_object_scope({"Twice": Twice}):
        ...     kilnet.saving.get_registered_object("Twice") is Twice
        True
        >>> kilnet.saving.get_registered_object("Twice") is None
        True
    """

    def __init__(self, custom_objects):
        if custom_objects is not None and not isinstance(custom_objects, dict):
            raise TypeError("custom_object_scope takes a dict {name: class or function}. "
                            f"Received: {type(custom_objects).__name__}")
        self.custom_objects = dict(custom_objects or {})
        self._previous = None

    def __enter__(self):
        self._previous = _registry.open_scope(self.custom_objects)
        return self

    def __exit__(self, *exc_info):
        _registry.close_scope(self._previous)


custom_object_scope = CustomObjectScope   # Keras's other name for it


# -- a model's weights by layer path ------------------------------------------------------------
def weight_entries(model) -> list:
    """[(array name, owning layer's class name, Variable)] in Keras's weight order; the name is
    "params/<layer path>/<weight>" or "state/..." (a Sequential's: "params/dense/kernel")."""
    owners = {}
    entries = []
    for path, kind, variable in model.variable_paths():
        layer_path = tuple(path[:-1])
        if layer_path not in owners:
            owners[layer_path] = _layer_at(model, layer_path)
        entries.append((f"{kind}/{'/'.join(path)}", owners[layer_path], variable))
    return entries


def _layer_at(model, keys) -> str:
    layer = model
    for key in keys:
        layer = dict(layer.keyed_sublayers()).get(key)
        if layer is None:
            return "?"
    return type(layer).__name__


def _weight_tensors(model):
    """({name: host array}, the "weights" list) of a built model. Host sync."""
    entries = weight_entries(model)
    values = jax.device_get([variable.value for _, _, variable in entries])
    tensors = {}
    for (name, _, variable), value in zip(entries, values):
        if name in tensors:
            raise ValueError(f"Two weights would be saved under the name {name!r}; give the "
                             "layers distinct names.")
        tensors[name] = np.asarray(value)
    return tensors, [[name, owner] for name, owner, _ in entries]


def _layer_types(order) -> list:
    """The owning layers' classes along a weight order, one per layer (for messages)."""
    types, last = [], None
    for name, owner in order:
        layer_path = name.split("/")[1:-1]
        if layer_path != last:
            types.append(owner)
            last = layer_path
    return types


# -- configurations through the allowlists ------------------------------------------------------
def _object_from(types: dict, spec, what: str, path):
    """An instance of an allowlisted class from {"class_name": ..., "config": {...}}."""
    if (not isinstance(spec, dict) or set(spec) != {"class_name", "config"}
            or not isinstance(spec["config"], dict)
            or not all(isinstance(k, str) for k in spec["config"])):
        raise ModelFileError(path, f"the {what} entry is malformed: expected "
                                   "{'class_name': ..., 'config': {...}}. "
                                   f"Received: {spec!r:.200}")
    name = spec["class_name"]
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(path, f"it names the {what} type {name!r:.100}, which kilnet does not "
                                   f"allow in files. Allowed: {sorted(types)}.")
    try:
        if hasattr(cls, "from_config"):
            return cls.from_config(dict(spec["config"]))
        return cls(**spec["config"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the {what} {name} has an invalid configuration: "
                                   f"{error}") from None


def model_from_config(config, path="the configuration"):
    """An unbuilt Sequential from Sequential.get_config()'s dict, through the allowlists."""
    from kilnet.models import Sequential
    from kilnet.models import _config

    return _config.model_from_config(Sequential, config, path=path)


def compile_config(trainer):
    """The compile arguments as allowlisted names and configs, or None (with a warning): what
    `.kilnet` files keep and `Model.get_compile_config` returns."""
    problems = []

    def spec(obj, types, what):
        if obj is None or isinstance(obj, str):
            return obj   # no loss for that output; a metric given by name
        if isinstance(obj, (list, tuple)):
            return [spec(item, types, what) for item in obj]
        if isinstance(obj, dict):
            return {"class_name": PER_OUTPUT,
                    "config": {k: spec(v, types, what) for k, v in obj.items()}}
        function = _function_of(obj)
        if function is not None:   # a function of yours: by its registered name, as Keras
            try:
                return _registry.function_entry(function, what)
            except ValueError as error:
                problems.append(str(error))
                return None
        name = type(obj).__name__
        if types.get(name) is not type(obj):
            problems.append(f"the {what} {obj!r} is not one of kilnet's {what} types")
            return None
        try:
            config = obj.get_config()
        except ValueError as error:
            problems.append(str(error))
            return None
        return {"class_name": name, "config": config}

    def optimizer_spec(optimizer):
        if not isinstance(optimizer, LossScaleOptimizer):
            return spec(optimizer, optimizers_lib.OPTIMIZER_TYPES, "optimizer")
        inner = spec(optimizer.inner_optimizer, optimizers_lib.OPTIMIZER_TYPES, "optimizer")
        if inner is None:
            return None
        config = {k: v for k, v in optimizer.get_config().items() if k != "inner_optimizer"}
        return {"class_name": "LossScaleOptimizer", "config": {**config, "inner_optimizer": inner}}

    config = {"optimizer": optimizer_spec(trainer.optimizer),
              "loss": spec(trainer.loss, losses_lib.LOSS_TYPES, "loss"),
              "metrics": spec(trainer.metric_ids, metrics_lib.METRIC_TYPES, "metric"),
              "on_nonfinite": trainer.on_nonfinite}
    if getattr(trainer, "loss_weights", None) is not None:
        config["loss_weights"] = trainer.loss_weights
    if problems:
        warnings.warn("The compile configuration cannot be written as data "
                      f"({'; '.join(problems)}): a model file is written without it and its "
                      "optimizer state, a clone_model copy is not compiled; compile the loaded "
                      "model or the copy again before training it.", stacklevel=4)
        return None
    return config


def _function_of(obj):
    """The function of yours a compile() argument is (a metric function) or wraps (a loss
    function, in compile's LossFunctionWrapper), else None."""
    if isinstance(obj, losses_lib.LossFunctionWrapper):
        return obj.plain_function
    return obj if inspect.isroutine(obj) else None


def _decode(value, types, what, path, names=False):
    """The inverse of compile_config's spec(): objects through the allowlist `types`, and
    functions registered under the names the file gives."""
    if value is None or (names and isinstance(value, str)):
        return value
    if _registry.is_function_entry(value):
        try:
            return _registry.function_from_entry(value, what)
        except ValueError as error:
            raise ModelFileError(path, str(error)) from None
    if isinstance(value, list):
        return [_decode(item, types, what, path, names) for item in value]
    if isinstance(value, dict) and value.get("class_name") == PER_OUTPUT:
        if set(value) != {"class_name", "config"} or not isinstance(value["config"], dict):
            raise ModelFileError(path, f"the per-output {what} entry is malformed.")
        return {k: _decode(v, types, what, path, names) for k, v in value["config"].items()}
    return _object_from(types, value, what, path)


def _optimizer_from(spec, path):
    """The optimizer of a compile configuration: an allowlisted optimizer, or a
    LossScaleOptimizer around one (mixed_float16 training), rebuilt with its settings."""
    if not (isinstance(spec, dict) and spec.get("class_name") == "LossScaleOptimizer"):
        return _object_from(optimizers_lib.OPTIMIZER_TYPES, spec, "optimizer", path)
    config = spec.get("config")
    keys = {"name", "inner_optimizer", "initial_scale", "dynamic_growth_steps"}
    if set(spec) != {"class_name", "config"} or not isinstance(config, dict) \
            or not set(config) <= keys or "inner_optimizer" not in config:
        raise ModelFileError(path, "the LossScaleOptimizer entry is malformed: expected "
                                   f"{sorted(keys)}. Received: {spec!r:.200}")
    inner = _object_from(optimizers_lib.OPTIMIZER_TYPES, config["inner_optimizer"], "optimizer",
                         path)
    try:
        return LossScaleOptimizer(inner, **{k: v for k, v in config.items()
                                            if k != "inner_optimizer"})
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the LossScaleOptimizer has an invalid configuration: "
                                   f"{error}") from None


def _loss_weights(value, path):
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

    if value is None or number(value) or (isinstance(value, list) and all(map(number, value))) \
            or (isinstance(value, dict) and all(map(number, value.values()))):
        return value
    raise ModelFileError(path, f"the loss weights {value!r:.100} are not numbers.")


def compile_from_config(model, config, training=None, path="the compile configuration",
                        prepare=True):
    """Compile `model` from what `compile_config` returned (objects only through kilnet's
    allowlists); `training`: a file's training record (the seed, the fit calls), or None."""
    from kilnet.trainer import Trainer

    if isinstance(config, dict) and set(config) == {OWN_COMPILE}:
        return _compile_own_way(model, config[OWN_COMPILE], training, path, prepare)
    required = {"optimizer", "loss", "metrics", "on_nonfinite"}
    if not isinstance(config, dict) or not required <= set(config) <= required | {
            "loss_weights"}:
        raise ModelFileError(path, "the compile configuration is malformed.")
    optimizer = _optimizer_from(config["optimizer"], path)
    loss = _decode(config["loss"], losses_lib.LOSS_TYPES, "loss", path)
    metrics = config["metrics"]
    if not isinstance(metrics, list) and not (isinstance(metrics, dict)
                                              and metrics.get("class_name") == PER_OUTPUT):
        raise ModelFileError(path, "the metrics of the compile configuration are not a list "
                                   "(or a dict by output).")
    metrics = _decode(metrics, metrics_lib.METRIC_TYPES, "metric", path, names=True)
    try:
        trainer = Trainer(model, optimizer=optimizer, loss=loss, metrics=metrics,
                          loss_weights=_loss_weights(config.get("loss_weights"), path),
                          on_nonfinite=config["on_nonfinite"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the compile configuration is invalid: {error}") from None
    model.compiled = trainer
    if loss is not None:   # as Model.compile keeps it (a .kilnet file holds Loss objects)
        model.loss = loss
    return _resume(trainer, training, path, prepare)


def _compile_own_way(model, config, training, path, prepare):
    """A model class's own compile_from_config with what its get_compile_config wrote."""
    if not model.keeps_own_compile_config:
        raise ModelFileError(path, f"its compile configuration was written by a "
                                   f"get_compile_config of the model's class, which "
                                   f"{type(model).__name__} does not have.")
    _saving_hooks.compile_own_way(model, config, path)
    if model.compiled is None:
        raise ModelFileError(path, f"{type(model).__name__}.compile_from_config did not "
                                   "compile the model.")
    return _resume(model.compiled, training, path, prepare)


def _resume(trainer, training, path, prepare):
    """Apply a file's training record (the seed, the fit calls) and prepare the trainer."""
    seed = None
    if training is not None:
        if (not isinstance(training, dict) or set(training) != {"seed", "fit_calls"}
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                           for v in training.values())):
            raise ModelFileError(path, "the training record is malformed.")
        seed = training["seed"]
        trainer.fit_calls = training["fit_calls"]
    if prepare:
        trainer.prepare(seed=seed)
    return trainer


# -- weights: checking a file's arrays against a model -------------------------------------------
def _install_weights(model, spec, tensors, path):
    """Build the model and make the file's params/ and state/ arrays its weights.

    kilnet's own layers in a graph are checked abstractly first (jax.eval_shape with the file's
    arrays), so a hostile configuration (Dense(units=10**9)) is refused before kilnet allocates
    more than the file holds. A subclassed model and Keras-form layers make their weights with
    their own (registered) code; their arrays are checked right after."""
    from kilnet.models import _config

    if model.is_functional:
        precheck_graph(model, (), tensors, path)
        model.build(seed=0)
    else:
        build_config = spec.get("build_config")
        if build_config is None:
            raise ModelFileError(path, "it holds arrays but no input shape to build the model.")
        _config.build_from_config(model, build_config, path)
    names = set()
    for name, _, variable in weight_entries(model):
        names.add(name)
        if name not in tensors:
            raise ModelFileError(path, f"the array {name!r} is missing.")
        found = tensors[name]
        if (found.shape, found.dtype) != (tuple(variable.shape), np.dtype(variable.dtype)):
            raise ModelFileError(path, f"the array {name!r} has shape {found.shape} and dtype "
                                       f"{found.dtype}; the layer needs {tuple(variable.shape)} "
                                       f"{np.dtype(variable.dtype)}.")
    extra = sorted(n for n in tensors if n.split("/")[0] in _WEIGHT_KINDS and n not in names)
    if extra:
        raise ModelFileError(path, f"it holds arrays no layer uses: {extra[:3]}.")
    for name, _, variable in weight_entries(model):
        variable.assign(tensors[name])


def _refuse_unrecorded_quantization(model, path) -> None:
    """A MultiHeadAttention (or GroupQueryAttention) whose projections model.quantize made
    int8: its config, Keras's, records no quantization of its projections, so a model file
    would be rebuilt with float ones that cannot take the int8 arrays (Keras 3.15 cannot load
    the file it writes for such a model either). Refused, with the way that works."""
    from kilnet.layers import MultiHeadAttention

    stack = list(model.sublayers)
    while stack:
        layer = stack.pop()
        stack.extend(layer.sublayers)
        if isinstance(layer, MultiHeadAttention) and any(
                part.quantization_mode for part in layer.sublayers):
            raise ValueError(
                f"Cannot save {path}: the projections of {type(layer).__name__} "
                f"{layer.name!r} are quantized, and its config (Keras's) does not record it, "
                "so the file could not be loaded (Keras 3.15 cannot load the file it writes "
                "for such a model either). Save the weights instead: "
                "model.save_weights('m.weights.h5'); to load them, build the same model, "
                "call model.quantize('int8'), then model.load_weights('m.weights.h5').")


def precheck_graph(model, prefix, tensors, path):
    """Check, abstractly (jax.eval_shape), that each of kilnet's own leaf layers in a functional
    graph takes the arrays `tensors` names for it ({"params/<layer path>/<weight>": anything
    with .shape and .dtype}) and gives its output shape, before any weight is allocated.
    ModelFileError otherwise."""
    from kilnet.models import Model

    for layer in model.layers:
        where = prefix + (layer.name,)
        if isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Model):
            if layer.is_functional:
                precheck_graph(layer, where, tensors, path)
        elif layer.is_pure:
            _precheck_layer(layer, where, tensors, path)


def _precheck_layer(layer, where, tensors, path):
    """Does `layer`, for its input shape, take the file's arrays and give its output shape?
    A layer holding sub-layers (wrappers, attention) is checked after building, like one of
    several inputs: its arrays nest under the sub-layers' names. A stateful layer (states
    made for its batch size, not in the file) is checked after building too."""
    if layer.sublayers or layer.carried_state_names or checked_once_built(layer):
        return
    arrays = {}
    for kind, names in (("params", layer.param_names), ("state", layer.state_names)):
        arrays[kind] = {}
        for name in names:
            key = f"{kind}/{'/'.join(where)}/{name}"
            if key not in tensors:
                raise ModelFileError(path, f"the array {key!r} is missing.")
            arrays[kind][name] = jax.ShapeDtypeStruct(tensors[key].shape, tensors[key].dtype)
    shape = layer.build_shape
    if not isinstance(shape, tuple):
        return   # several inputs: checked after building
    shape = sizes_the_layer_takes(layer, shape)
    dtype = layer.build_dtype if isinstance(layer.build_dtype, str) else "float32"
    try:
        expected = layer.sample_output_shape(shape)
        expected = [tuple(s) for s in (expected if isinstance(expected, list) else [expected])]
        out, _ = jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, training=False),
                                arrays["params"], arrays["state"],
                                jax.ShapeDtypeStruct((1,) + shape, dtype))
        got = [tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(out)]
        if got != expected:
            raise ValueError(f"its arrays give outputs of shape {got}, expected {expected}")
    except Exception as error:  # shape errors from any layer's own code
        raise ModelFileError(path, f"layer {'/'.join(where)!r} ({type(layer).__name__}) does "
                                   f"not fit its arrays: {error}") from None


# The largest size tried for an unknown axis: a window (pooling, a "valid" or dilated
# convolution, a cropping) needing more along one axis is not expected of any real model.
_LARGEST_TRIED_SIZE = 2 ** 20


def sizes_the_layer_takes(layer, shape: tuple) -> tuple:
    """`shape` (batch axis excluded) with each unknown axis (None) given the smallest power of
    two the layer takes, by its own output-shape rule: the pre-check traces the layer on one
    concrete input, and its arrays' shapes do not depend on those axes (the model is built
    with them unknown), but a pooling, a cropping or a "valid" convolution refuses an input
    smaller than its window. All unknown axes get one size; 1 where no size up to 2**20 fits
    (the layer's own error then says why).

    Example:
        >>> import kilnet
        >>> sizes_the_layer_takes(kilnet.layers.MaxPooling2D(), (None, None, 4))
        (2, 2, 4)
        >>> sizes_the_layer_takes(kilnet.layers.Conv1D(8, 7, strides=3), (None, 8))
        (8, 8)
        >>> sizes_the_layer_takes(kilnet.layers.Dense(2), (None, 3))
        (1, 3)
    """
    def filled(size):
        return tuple(size if d is None else d for d in shape)

    if None not in shape:
        return shape
    # A search, not a derivation: the smallest size is each layer's own window arithmetic
    # (kernel, dilation, strides, pool size, cropping), which no layer states apart from its
    # output-shape rule. That rule is shape arithmetic, no trace: the doctest's convolution
    # takes 4 tries, and no size up to 2**20 is 21. Only its refusal (ValueError) moves on;
    # any other error is a real one and is raised.
    size = 1
    while size <= _LARGEST_TRIED_SIZE:
        try:
            layer.sample_output_shape(filled(size))
            return filled(size)
        except ValueError:   # the layer refuses this size
            size *= 2
    return filled(1)


def checked_once_built(layer) -> bool:
    """Whether a leaf layer's arrays in a file are checked once it is built rather than
    abstractly before: a class of yours that loads its own variables (its entries are what
    its save_own_variables wrote), or a layer that has weights already (a Variable your
    `__init__` made: the arrays then include it).

    Example:
        >>> import kilnet
        >>> checked_once_built(kilnet.layers.Dense(2))
        False
    """
    return layer.keeps_own_variables or next(iter(layer.variable_paths()), None) is not None


def _check_weights_list(order, tensors, path):
    """The file's "weights" list: [name, class] pairs naming exactly its params/state arrays."""
    if not isinstance(order, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(isinstance(s, str) for s in e)
            for e in order) or len({e[0] for e in order}) != len(order):
        raise ModelFileError(path, "its list of weights is malformed: expected distinct "
                                   "[array name, layer class] pairs.")
    listed = {e[0] for e in order}
    missing = sorted(listed - set(tensors))
    if missing:
        raise ModelFileError(path, f"the array {missing[0]!r} is missing.")
    extra = sorted(n for n in tensors if n.split("/")[0] in _WEIGHT_KINDS and n not in listed)
    if extra:
        raise ModelFileError(path, f"it holds arrays no layer uses: {extra[:3]}.")
    return [tuple(e) for e in order]


# -- the public functions -------------------------------------------------------------------------
def save_model(model, filepath, *, overwrite=True, include_optimizer=True):
    """Write a model to one file, atomically: architecture, weights, compile configuration,
    optimizer state and training position (see the module docstring). `model.save` calls it.

    Args:
        model: a built or unbuilt kilnet model.
        filepath: where to write (suggested extension .kilnet).
        overwrite: replace an existing file (else FileExistsError).
        include_optimizer: save the compile configuration and optimizer state.

    Returns:
        None.

    Raises:
        ValueError: the weights hold NaN or infinity (nothing is written).
        NotImplementedError: a subclassed model or custom layer without get_config() was made
            with arguments that are not plain data (its automatic config cannot hold them).
        kilnet.errors.SaveError: the file could not be written (the previous one is intact).

    Example:
        >>> import os, tempfile
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> folder = tempfile.mkdtemp()
        >>> kilnet.saving.save_model(model, os.path.join(folder, "m.kilnet"))
        >>> os.listdir(folder)
        ['m.kilnet']
    """
    from kilnet._version import __version__
    from kilnet.models import _config

    filepath = os.fspath(filepath)
    _refuse_unrecorded_quantization(model, filepath)
    if _keras_format(filepath, "model"):
        from kilnet import keras_files
        save = (keras_files.save_legacy_h5 if keras_files.is_keras_weights_path(filepath)
                else keras_files.save_keras)
        save(model, filepath, overwrite=overwrite, include_optimizer=include_optimizer)
        return
    info = {"kilnet_version": __version__, "model": _config.serialize(model),
            "compile": None, "training": None, "weights": []}
    tensors = {}
    # A functional model has its weights from its construction on, as in Keras: saved with it
    # (a model saved before its first call or fit held none, and loaded with new ones)
    model.build_if_shapes_known()
    if model.built:
        tensors, info["weights"] = _weight_tensors(model)
    tensors.update(_hook_tensors(model, filepath))
    tensors.update(_metric_held_layers.held_tensors(model))
    trainer = model.compiled
    if model.is_compiled and include_optimizer:
        info["compile"] = _compile_entry(model)
        if info["compile"] is not None and trainer.state is not None:
            tensors.update(tree_to_tensors("opt", trainer.state.opt_state))
            tensors["train/rng"] = np.asarray(jax.device_get(trainer.state.rng))
            info["training"] = {"seed": int(trainer.seed), "fit_calls": int(trainer.fit_calls)}
    if include_optimizer:
        tensors.update(_optimizer_attributes.held_optimizer_tensors(model))
    _refuse_nonfinite(tensors, filepath, info)
    _safefile.atomic_write(filepath, _safefile.encode("model", info, tensors),
                           what="the model file", overwrite=overwrite)


class NonFiniteSaveError(ValueError):
    """model.save / save_weights refused to write a model holding NaN or infinity (in its
    weights, optimizer state or configuration): such a file could never be used."""


def nonfinite_arrays(model, include_optimizer=True) -> list:
    """The names of the arrays `model.save` (`include_optimizer`) or `save_weights` (not)
    would refuse because they hold NaN or infinity; [] when saving may go ahead. Callbacks
    that save check this first, so a refusal is a skipped save, not a crash. Host sync.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> kilnet.saving.nonfinite_arrays(model)
        []
    """
    if not model.built:
        return []
    tensors, _ = _weight_tensors(model)
    trainer = model.compiled
    if include_optimizer and model.is_compiled and trainer.state is not None:
        tensors.update(tree_to_tensors("opt", trainer.state.opt_state))
    if include_optimizer:
        tensors.update(_optimizer_attributes.held_optimizer_tensors(model))
    return nonfinite(tensors)


def _refuse_nonfinite(tensors, filepath, info=None):
    bad = nonfinite(tensors)
    if bad:
        raise NonFiniteSaveError(f"Not saving {filepath}: the model holds NaN or infinite "
                                 f"values in {bad[:3]}. Save a model from before training "
                                 "diverged.")
    bad = _safefile.nonfinite_values(info or {})
    if bad:
        raise NonFiniteSaveError(f"Not saving {filepath}: its configuration holds NaN or "
                                 f"infinity at {bad[:3]}; such a file could not be loaded.")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by `model.save()`: architecture, weights and (if compile) the compile
    configuration, optimizer state and training position, ready to predict or train on.

    Args:
        filepath: a file written by model.save.
        custom_objects: {"Name": cls} for layer and model classes of yours that are not
            registered with `register_serializable`.
        compile: restore the compile configuration and optimizer state.
        safe_mode: accepted as Keras's, and changes nothing: kilnet never runs code from a
            file (Keras's `safe_mode=False` lets a Lambda's stored bytecode run; kilnet
            refuses such a layer either way, naming the fix).

    Returns:
        The model.

    Raises:
        kilnet.errors.ModelFileError: the file is damaged, malformed, or names a class that is
            not allowed (nothing from it was run).

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import kilnet
        >>> inputs = kilnet.Input(shape=(3,))
        >>> model = kilnet.Model(inputs, kilnet.layers.Dense(2, name="out")(inputs))
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.kilnet")
        >>> model.save(path)
        >>> loaded = kilnet.models.load_model(path)
        >>> all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), model.get_weights()))
        True
    """
    from kilnet.models import Model
    from kilnet.models import _config

    del safe_mode   # nothing in a file is ever run, so there is nothing it could allow
    filepath = os.fspath(filepath)
    from kilnet import keras_files
    if keras_files.is_keras_weights_path(filepath):
        return keras_files.load_legacy_h5(filepath, custom_objects=custom_objects,
                                          compile=compile)
    if keras_files.is_keras_model_path(filepath) and _is_zip(filepath):
        return keras_files.load_keras(filepath, custom_objects=custom_objects, compile=compile)
    info, tensors = _safefile.read(filepath, "model")
    if set(info) not in (_MODEL_INFO_KEYS, _MODEL_INFO_KEYS | {"weights"}):
        raise ModelFileError(filepath, f"its info has the keys {sorted(info)}; expected "
                                       f"{sorted(_MODEL_INFO_KEYS | {'weights'})}.")
    _config.check_bounds(info, filepath, "description of the model")
    _check_tensor_names(tensors, ("params", "state", "opt", "train", _HOOKS,
                                  _saving_hooks.ASSETS.rstrip("/"),
                                  _metric_held_layers.PREFIX, _optimizer_attributes.PREFIX),
                        filepath)
    if not compile:
        info, tensors = _without_compile_entries(info, tensors)
    check_values(info, tensors, filepath)
    if "weights" in info:
        _check_weights_list(info["weights"], tensors, filepath)
    spec = info["model"]
    model = _config.deserialize(spec, custom_objects, path=filepath, what="model",
                                keys=_config.SPEC_KEYS)
    if not isinstance(model, Model):
        raise ModelFileError(filepath, f"it describes a {type(model).__name__}, not a model.")
    # Built when saved (it has weights, or a training state): build it now, from the checked
    # arrays. Else it stays unbuilt, even when compiled, until it meets data, as it was.
    built = "train/rng" in tensors or any(n.split("/")[0] in _WEIGHT_KINDS for n in tensors)
    if built:
        _install_weights(model, spec, tensors, filepath)
    elif any(n.startswith("opt/") for n in tensors):
        raise ModelFileError(filepath, "it holds an optimizer state but no weights.")
    _load_hook_tensors(model, tensors, filepath)
    load_held_weights(model, tensors, filepath)
    if compile and info["compile"] is not None:
        trainer = compile_from_config(model, info["compile"], info["training"], filepath,
                                       prepare=built)
        opt = {n: a for n, a in tensors.items() if n.startswith("opt/")}
        opt = optimizers_lib.upgrade_saved_state(trainer.optimizer, opt)
        if trainer.state is not None and (opt or "train/rng" in tensors):
            try:
                opt_state = tensors_to_tree("opt", trainer.state.opt_state, opt)
                rng = tensors_to_tree("train/rng", trainer.state.rng, tensors)
            except ValueError as error:
                raise ModelFileError(filepath, f"the optimizer state does not fit the "
                                               f"optimizer: {error}.") from None
            trainer.state = trainer.state._replace(opt_state=opt_state, rng=rng)
    if compile:   # after your compile_from_config, which may make them (a GAN's)
        _optimizer_attributes.restore_held_optimizers(model, tensors, filepath)
    return model


def _without_compile_entries(info, tensors):
    """A model file's info and arrays for `load_model(compile=False)`: its compile
    configuration, training position and optimizer state are not read at all, as Keras reads
    no compile configuration then (the dropout key stays: it says the model was built).

    Example:
        >>> info = {"model": {}, "compile": {"loss": "mse"}, "training": {"seed": 0}}
        >>> _without_compile_entries(info, {"opt/0": 0, "params/d/kernel": 1})
        ({'model': {}, 'compile': None, 'training': None}, {'params/d/kernel': 1})
    """
    tensors = {name: array for name, array in tensors.items()
               if name.split("/")[0] not in ("opt", _optimizer_attributes.PREFIX)}
    return {**info, "compile": None, "training": None}, tensors


def _keras_format(filepath, what) -> bool:
    """Whether `filepath`'s extension asks for Keras's format (.keras and legacy .h5 models,
    .weights.h5 weights); refuses the Keras extensions kilnet does not write."""
    from kilnet import keras_files

    lower = filepath.lower()
    if what == "weights" and keras_files.is_keras_weights_path(lower) and not \
            lower.endswith(".weights.h5"):
        raise ValueError(f"Cannot save {filepath}: Keras weights files end in .weights.h5. "
                         f"Received: filepath={filepath!r}")
    if what == "model":   # .keras, or .h5 / .hdf5: the legacy format Keras 3 still writes
        return keras_files.is_keras_model_path(lower) or keras_files.is_keras_weights_path(lower)
    return keras_files.is_keras_weights_path(lower)


def _is_zip(filepath) -> bool:
    """A .keras path holding a zip (a Keras 3 file), not a kilnet file of an older version."""
    from kilnet import keras_files

    return keras_files.is_zip(filepath)


def _check_tensor_names(tensors, prefixes, path):
    for name in tensors:
        if name.split("/")[0] not in prefixes or (name.startswith("train/")
                                                  and name != "train/rng"):
            raise ModelFileError(path, f"it holds an array named {name!r:.100}, which is not "
                                       "part of the format.")


def save_weights(model, filepath, *, overwrite=True):
    """Write the model's weights, keyed by layer path, to a file, atomically. `model.
    save_weights` calls it.

    Args:
        model: a built model (any kind: its configuration is not needed).
        filepath: where to write.
        overwrite: replace an existing file (else FileExistsError).

    Returns:
        None.

    Example:
        >>> import os, tempfile
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "w.kilnet")
        >>> kilnet.saving.save_weights(model, path)
        >>> os.path.getsize(path) > 0
        True
    """
    from kilnet._version import __version__
    from kilnet.models import _config

    model.require_built()
    filepath = os.fspath(filepath)
    if _keras_format(filepath, "weights"):
        from kilnet import keras_files
        keras_files.save_keras_weights(model, filepath, overwrite=overwrite)
        return
    tensors, order = _weight_tensors(model)
    tensors.update(_hook_tensors(model, filepath, assets=False))
    tensors.update(_metric_held_layers.held_tensors(model))
    _refuse_nonfinite(tensors, filepath)
    shape = model.build_shape
    info = {"kilnet_version": __version__,
            "model": {"class_name": _config.class_name(model), "name": model.name,
                      "input_shape": None if shape is None else _config.shape_to_json(shape)},
            "weights": order}
    _safefile.atomic_write(filepath, _safefile.encode("weights", info, tensors),
                           what="the weights file", overwrite=overwrite)


def load_weights(model, filepath, skip_mismatch=False):
    """Set the model's weights from a weights file or a model file. Arrays are matched by
    layer path; if the paths differ (other layer names), by Keras's weight order, with the
    owning layers' types and the shapes checked. An unbuilt model is built first.

    Args:
        model: the model to set.
        filepath: a file written by save_weights or save.
        skip_mismatch: as Keras's: set each layer whose weights the file holds (matched by
            layer path) with the same shapes, keep the others as they are (a new head in
            transfer learning) and name them in a warning.

    Returns:
        None.

    Raises:
        ValueError: the file's weights do not fit this model's layers.
        kilnet.errors.ModelFileError: the file is damaged or malformed.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import kilnet
        >>> def make():
        ...     return kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model = make()
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "w.kilnet")
        >>> model.save_weights(path)
        >>> other = make()
        >>> other.load_weights(path)
        >>> np.array_equal(other.get_weights()[0], model.get_weights()[0])
        True
    """
    filepath = os.fspath(filepath)
    from kilnet import keras_files
    if keras_files.is_keras_weights_path(filepath) or keras_files.is_keras_model_path(filepath):
        keras_files.load_keras_weights(model, filepath, skip_mismatch=skip_mismatch)
        _metric_held_layers.retrace_after_held_change(model)
        return
    info, tensors, order, input_shape = _read_weights(filepath)
    if not model.built:
        if not skip_mismatch:
            _precheck_for_weights(model, input_shape, tensors, filepath)
        _build_for_weights(model, input_shape, filepath)
    mine = weight_entries(model)
    weights = {n: a for n, a in tensors.items() if n.split("/")[0] in _WEIGHT_KINDS}
    if skip_mismatch:
        by_layer = {}
        for name, _, variable in mine:
            by_layer.setdefault(name.split("/", 1)[1].rpartition("/")[0], []).append(
                (name, variable))
        set_matching_layers(by_layer, lambda name: getattr(weights.get(name), "shape", None),
                            lambda name: weights[name], filepath)
        try:
            _load_hook_tensors(model, tensors, filepath, assets=False)
            load_held_weights(model, tensors, filepath)
        except ModelFileError as error:
            warnings.warn(f"{filepath}: a layer's own load_own_variables or a layer a metric "
                          f"holds did not take the file's entries, and keeps its weights "
                          f"(skip_mismatch=True): {error.problem}", stacklevel=3)
        return
    hooks = {n: a for n, a in tensors.items() if n.split("/")[0] == _HOOKS}
    if {name for name, _, _ in mine} == set(weights):
        pairs = [(name, variable) for name, _, variable in mine]
    else:   # other layer names: Keras's weight order
        if order is None:
            order = _legacy_order(info, model, filepath)
        if [owner for _, owner in order] != [owner for _, owner, _ in mine]:
            raise ValueError(f"{filepath} holds weights for the layers {_layer_types(order)}; "
                             f"this model has {_layer_types([(n, o) for n, o, _ in mine])}.")
        pairs = [(name, variable) for (name, _), (_, _, variable) in zip(order, mine)]
        missing = [name for name, _ in pairs if name not in weights]
        if missing:
            raise ModelFileError(filepath, f"the array {missing[0]!r} is missing.")
        extra = sorted(set(weights) - {name for name, _ in pairs})
        if extra:
            raise ModelFileError(filepath, f"it holds arrays no layer uses: {extra[:3]}.")
        hooks = _hooks_renamed(hooks, order, mine)
    for name, variable in pairs:
        found = weights[name]
        if (found.shape, found.dtype) != (tuple(variable.shape), np.dtype(variable.dtype)):
            raise ModelFileError(filepath, f"the array {name!r} has shape {found.shape} and "
                                           f"dtype {found.dtype}; this model's weight needs "
                                           f"{tuple(variable.shape)} "
                                           f"{np.dtype(variable.dtype)}.")
    load_held_weights(model, tensors, filepath)
    for name, variable in pairs:
        variable.assign(weights[name])
    _load_hook_tensors(model, hooks, filepath, assets=False)


def load_held_weights(model, tensors, filepath) -> None:
    """Set the layers the model's metrics hold (keras.io's KID encoder) from a file's `held/`
    arrays (kilnet._metric_held_layers), every one checked first. A file of an earlier
    kilnet, which kept none, leaves them as they are, with a warning when there are some.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
        >>> load_held_weights(model, {}, "m.kilnet")   # no metric holds layers: nothing to set
    """
    if not _metric_held_layers.has_held_arrays(tensors):
        _metric_held_layers.warn_not_kept(model, filepath)
        return
    try:
        pairs = _metric_held_layers.checked_held(model, tensors)
    except _metric_held_layers.HeldWeightsError as error:
        raise ModelFileError(filepath, f"{error}.") from None
    _metric_held_layers.assign_held(model, pairs)


# -- Keras's saving hooks in .kilnet files (kilnet._saving_hooks calls them) -----------------
# A layer of yours with its own save_own_variables keeps its entries as
# "hooks/<layer path>/<key>" (its weights stay under params/ and state/ too); the files its
# save_assets writes are "assets/<layer path>/<file>" uint8 arrays; a model's own
# get_compile_config is kept as info["compile"] = {OWN_COMPILE: what it returned, serialized}.
_HOOKS = "hooks"
OWN_COMPILE = "keras_compile_config"


def _layer_groups(model) -> list:
    """(layer path, layer) for the model ("") and every layer it holds, once each."""
    groups, seen = [], set()

    def visit(layer, path):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        groups.append(("/".join(path), layer))
        for key, sub in layer.keyed_sublayers():
            visit(sub, path + (key,))

    visit(model, ())
    return groups


def _hooked(groups) -> list:
    return [(f"{_HOOKS}/{path}" if path else _HOOKS, layer) for path, layer in groups
            if layer.keeps_own_variables and layer.built]


def _hook_tensors(model, filepath, assets=True) -> dict:
    """The arrays of your layers' save_own_variables and (with `assets`: a model file, not a
    weights file, as Keras's) save_assets, named as above."""
    groups = _layer_groups(model)
    tensors = dict(_saving_hooks.own_variables_arrays(_hooked(groups), filepath))
    for name, data in (_saving_hooks.saved_assets(groups, filepath).items() if assets else ()):
        tensors[name] = np.frombuffer(data, dtype=np.uint8)
    return tensors


def _load_hook_tensors(model, tensors, filepath, assets=True) -> None:
    """Call your layers' load_own_variables and (with `assets`) load_assets with the file's
    entries for them; an entry no layer reads is an error, as a stray weight is."""
    groups = _layer_groups(model)
    hooked = _hooked(groups)
    read = set()

    def read_group(group):
        found = {name[len(group) + 1:]: array for name, array in tensors.items()
                 if name.startswith(group + "/") and "/" not in name[len(group) + 1:]}
        read.update(f"{group}/{key}" for key in found)
        return found

    _saving_hooks.load_own_variables(hooked, read_group, filepath)
    stray = sorted(n for n in tensors if n.split("/")[0] == _HOOKS and n not in read)
    if stray:
        raise ModelFileError(filepath, f"it holds entries no layer's load_own_variables "
                                       f"reads: {stray[:3]}.")
    if assets:
        _load_asset_tensors(groups, tensors, filepath)


def _hooks_renamed(hooks, order, mine) -> dict:
    """The hook entries of a weights file matched by weight order: each under the path of
    the model's layer that takes the weights of the file's layer of that path."""
    def layer_path(name):
        return name.split("/", 1)[1].rpartition("/")[0]

    paths = {layer_path(theirs): layer_path(ours)
             for (theirs, _), (ours, _, _) in zip(order, mine)}
    renamed = {}
    for name, array in hooks.items():
        path, _, key = name[len(_HOOKS) + 1:].rpartition("/")
        path = paths.get(path, path)
        renamed[f"{_HOOKS}/{path}/{key}" if path else f"{_HOOKS}/{key}"] = array
    return renamed


def _load_asset_tensors(groups, tensors, filepath) -> None:
    assets = {}
    for name, array in tensors.items():
        if name.startswith(_saving_hooks.ASSETS):
            if array.dtype != np.uint8 or array.ndim != 1 or \
                    not _saving_hooks.is_asset_name(name):
                raise ModelFileError(filepath, f"its asset {name!r:.100} is not a file's bytes "
                                               "under a plain relative name.")
            assets[name] = array.tobytes()
    _saving_hooks.load_assets(groups, assets, filepath)


def _compile_entry(model):
    """info["compile"]: kilnet's compile configuration, or what the model's own
    get_compile_config returns (serialized as Keras writes it); None, with a warning, when
    it cannot be written as data."""
    if not model.keeps_own_compile_config:
        return compile_config(model.compiled)
    try:
        return {OWN_COMPILE: _saving_hooks.own_compile_config(model)}
    except ValueError as error:
        warnings.warn(f"The model's own compile configuration cannot be written as data "
                      f"({error}): the file is written without it and its optimizer state; "
                      "compile the loaded model again before training it.", stacklevel=4)
        return None


def set_matching_layers(by_layer, shape_of, read, filepath):
    """load_weights(skip_mismatch=True): set each layer of `by_layer` ({layer: [(array name,
    Variable)]}) whose arrays the file holds with the same shapes (`shape_of(name)`: the shape,
    None if absent; `read(name)`: the array); keep the others and name them in a warning."""
    skipped = []
    for layer, entries in by_layer.items():
        if all(shape_of(name) is not None and tuple(shape_of(name)) == tuple(variable.shape)
               for name, variable in entries):
            for name, variable in entries:
                variable.assign(read(name))
        else:
            skipped.append(layer)
    if skipped:
        warnings.warn(f"load_weights(skip_mismatch=True): {os.fspath(filepath)} holds no "
                      f"weights of the same shapes for {len(skipped)} layer(s), which keep "
                      f"their current weights: {skipped[:10]}", UserWarning, stacklevel=3)


def _read_weights(filepath):
    """(info, tensors, the weights list or None for a previous version's file, the saved
    input shape or None) of a weights file or a model file."""
    from kilnet.models import _config

    try:
        info, tensors = _safefile.read(filepath, "weights")
        kind = "weights"
    except ModelFileError as error:
        if "is a kilnet 'model' file" not in error.problem:
            raise
        info, tensors = _safefile.read(filepath, "model")
        kind = "model"
    _config.check_bounds(info, filepath, "description of the model")
    check_values(info, tensors, filepath)
    if "weights" not in info:
        config = info.get("model") if kind == "weights" else (info.get("model") or {}).get(
            "config")
        shape = config.get("input_shape") if isinstance(config, dict) else None
        return info, tensors, None, _config.shape_from_json(shape)
    order = _check_weights_list(info["weights"], tensors, filepath)
    spec = info.get("model") if isinstance(info.get("model"), dict) else {}
    if kind == "weights":
        shape = spec.get("input_shape")
    else:
        config = spec.get("config") if isinstance(spec.get("config"), dict) else {}
        build = spec.get("build_config") if isinstance(spec.get("build_config"), dict) else {}
        shape = config.get("input_shape", build.get("input_shape"))
    return info, tensors, order, _config.shape_from_json(shape)


def _precheck_for_weights(model, input_shape, tensors, filepath):
    """Before an unbuilt Sequential is built for the input shape a weights file names, check
    abstractly (on a weightless copy of its layers) that this shape gives the file's arrays:
    a hostile input shape ([100000000]) is refused before gigabytes are allocated."""
    from kilnet.models import Sequential
    from kilnet.models import _config

    if not (type(model) is Sequential and model.input_specs is None
            and isinstance(input_shape, tuple)):
        return
    from kilnet.layers import Input

    try:
        probe = Sequential([Input(shape=input_shape)]
                           + [_config.clone_model(layer) if hasattr(layer, "graph")
                              else type(layer).from_config(layer.get_config())
                              for layer in model.layers])
    except (TypeError, ValueError) as error:
        raise ModelFileError(filepath, f"its input shape {list(input_shape)} does not fit "
                                       f"this model: {error}") from None
    try:
        precheck_graph(probe, (), tensors, filepath)
    except ModelFileError as error:
        if not (error.problem.startswith("the array") and error.problem.endswith("missing.")):
            raise   # other layer names: the arrays are matched by order after building


# Optimizer hyperparameters a file may set, with the range each must lie in (None allowed
# where the optimizer takes None): a NaN, a string or beta_1=1 would only fail in training.
_UNIT = (0.0, 1.0, False)          # [0, 1)
_HYPERPARAMETERS = {"learning_rate": (0.0, math.inf, False), "beta_1": _UNIT, "beta_2": _UNIT,
                    "rho": _UNIT, "momentum": (0.0, 1.0, True), "epsilon": (0.0, math.inf, False),
                    "weight_decay": (0.0, math.inf, False),
                    "initial_accumulator_value": (0.0, math.inf, False)}
# Arrays holding a non-negative quantity, by the end of their name.
_NON_NEGATIVE = ("/hyperparams/learning_rate", "/moving_variance", "/count")


def check_values(info, tensors, path):
    """Refuse what a file could hold that would load and then fail or mislead: NaN or
    infinity in any array or configuration value, negative learning rates, variances and
    counts, and optimizer hyperparameters of the wrong type or out of range. Each refusal is a
    ModelFileError naming the file and the entry.

    Example:
        >>> import numpy as np
        >>> from kilnet.saving import check_values
        >>> check_values({}, {"params/d/kernel": np.array([1.0, np.nan])}, "m.kilnet")
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load m.kilnet: the array 'params/d/kernel' holds NaN or infinity.
    """
    bad = nonfinite(tensors)
    if bad:
        raise ModelFileError(path, f"the array {bad[0]!r} holds NaN or infinity.")
    for name, array in tensors.items():
        if name.endswith(_NON_NEGATIVE) and array.size and np.min(array) < 0:
            raise ModelFileError(path, f"the array {name!r} holds a negative value "
                                       f"({np.min(array)!r}); it must be >= 0.")
    bad = _safefile.nonfinite_values(info)
    if bad:
        raise ModelFileError(path, f"the entry {bad[0]} holds NaN or infinity.")
    compile_config = info.get("compile")
    optimizer = compile_config.get("optimizer") if isinstance(compile_config, dict) else None
    config = optimizer.get("config") if isinstance(optimizer, dict) else None
    for key, value in (config.items() if isinstance(config, dict) else ()):
        if key == "learning_rate" and isinstance(value, dict):
            continue   # a schedule: its class checks its own arguments when it is made
        if key in _HYPERPARAMETERS and not (value is None and key == "weight_decay"):
            low, high, closed = _HYPERPARAMETERS[key]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or value < low or value > high or (value == high and not closed):
                interval = f"[{low:g}, {high:g}{']' if closed else ')'}"
                raise ModelFileError(path, f"the entry compile.optimizer.config.{key} is "
                                           f"{value!r:.50}; expected a number in {interval}.")


def _build_for_weights(model, input_shape, filepath):
    if model.input_specs is not None:
        model.build()
    elif input_shape is not None:   # kilnet's build: a build of yours runs inside it
        model.kilnet_build(input_shape)
    else:
        raise ValueError(f"load_weights needs a built model or a file with an input shape, and "
                         f"{filepath} has none: call model.build(input_shape) first.")


def _legacy_order(info, model, filepath):
    """The weight order of a file from the previous version of kilnet (a Sequential's, with no
    "weights" list): its layers' names, mapped onto this model's layers of the same types."""
    config = info.get("model")
    if isinstance(config, dict) and "config" in config and "layers" not in config:
        config = config["config"]   # a model file: {"class_name", "config"}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list) or not all(
            isinstance(e, dict) and isinstance(e.get("class_name"), str)
            and isinstance(e.get("config"), dict) and isinstance(e["config"].get("name"), str)
            for e in config["layers"]):
        raise ModelFileError(filepath, "its model configuration is malformed.")
    saved = [(e["class_name"], e["config"]["name"]) for e in config["layers"]
             if e["class_name"] != "InputLayer"]
    layers = [layer for layer in model.layers if not isinstance(layer, InputLayer)]
    if [c for c, _ in saved] != [type(layer).__name__ for layer in layers]:
        raise ValueError(f"{filepath} holds weights for the layers {[c for c, _ in saved]}; "
                         f"this model has {[type(layer).__name__ for layer in layers]}.")
    return [(f"{kind}/{'/'.join(path)}", type(layer).__name__)
            for (_, saved_name), layer in zip(saved, layers)
            for path, kind, _ in layer.variable_paths((saved_name,))]


# Keras's serialize_keras_object / deserialize_keras_object live in kilnet.serialization, which
# builds on the Keras-file reader, which builds on this module: looked up when first used
# (PEP 562), as Keras's keras.saving names them.
_SERIALIZATION = ("serialize_keras_object", "deserialize_keras_object")


def __getattr__(name):
    if name in _SERIALIZATION:
        import importlib
        return getattr(importlib.import_module("kilnet.serialization"), name)
    raise AttributeError(f"module 'kilnet.saving' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SERIALIZATION))
