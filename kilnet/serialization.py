"""Keras's `serialize_keras_object` / `deserialize_keras_object`: any kilnet object (a layer
or model, an initializer, regularizer, constraint, loss, metric, optimizer, schedule, dtype
policy or function) and the plain data around it, to Keras's JSON entries and back.

Why a module of its own: a custom layer that holds another layer or an initializer writes it
into its `get_config` with `serialize_keras_object` and rebuilds it in `from_config` with
`deserialize_keras_object`, as Keras's serialization guide does. Each kind of object already
has its module's `serialize` / `deserialize`; this module routes an entry to the right one by
its Keras module ("keras.initializers", ...) or, for kilnet's plain {"class_name", "config"},
by where the class name is found. As everywhere in kilnet, only kilnet's classes, classes
registered with `kilnet.saving.register_serializable` and the `custom_objects` you pass are
created: an entry naming anything else, or holding a lambda's bytecode, is refused.

Example:
    >>> import kilnet
    >>> from kilnet.serialization import deserialize_keras_object, serialize_keras_object
    >>> entry = serialize_keras_object(kilnet.initializers.HeNormal(seed=1))
    >>> entry["module"], entry["class_name"], entry["config"]["seed"]
    ('keras.initializers', 'HeNormal', 1)
    >>> deserialize_keras_object(entry)
    HeNormal(seed=1, input_axes=None, output_axes=None)
"""

from __future__ import annotations

import types

from kilnet import (_registry, _tree, activations, constraints, initializers, losses, metrics,
                    mixed_precision, optimizers, regularizers)
from kilnet.keras_files import _config as keras_config
from kilnet.layers import LAYER_TYPES, Layer
from kilnet.layers._base import with_batch_axis
from kilnet.models import _config as model_config
from kilnet.models import _constants as constants
from kilnet.optimizers import schedules

__all__ = ["deserialize_keras_object", "deserialize_layer", "serialize_keras_object",
           "serialize_layer"]

PLAIN_TYPES = (str, int, float, bool)

# (base class, Keras's module, the kilnet module that serializes and deserializes it)
_KINDS = (
    (initializers.Initializer, "keras.initializers", initializers),
    (regularizers.Regularizer, "keras.regularizers", regularizers),
    (constraints.Constraint, "keras.constraints", constraints),
    (losses.Loss, "keras.losses", losses),
    (metrics.Metric, "keras.metrics", metrics),
    (optimizers.Optimizer, "keras.optimizers", optimizers),
    (schedules.LearningRateSchedule, "keras.optimizers.schedules", schedules),
)
_BY_MODULE = {module: kilnet_module for _, module, kilnet_module in _KINDS}
_LAYER_MODULES = frozenset({"keras", "keras.layers", "keras.models",
                            "keras.src.models.functional", "keras.src.models.sequential"})
# Where a function named in an entry is looked for (Keras's activations, then the loss and
# metric functions), by public name only.
_FUNCTION_MODULES = (activations, losses, metrics)


# -- to plain data ---------------------------------------------------------------------------------
def serialize_keras_object(obj):
    """`obj` as Keras's JSON-ready entry, for a `get_config` that holds objects.

    Plain values, lists, tuples and dicts stay as they are (their items serialized); NumPy
    and JAX arrays become Keras's "__numpy__" / "__tensor__" entries; kilnet's objects become
    {"module", "class_name", "config", "registered_name"} (a built layer also gets Keras's
    "build_config"); a function becomes Keras's {"class_name": "function", "config": name}.

    Args:
        obj: the object to serialize.

    Returns:
        JSON-ready data that `deserialize_keras_object` turns back into the object.

    Raises:
        ValueError: `obj` is a lambda or an object kilnet could not rebuild (a class that is
            neither kilnet's nor registered), with the fix.

    Example:
        >>> import kilnet
        >>> import numpy as np
        >>> from kilnet.serialization import serialize_keras_object
        >>> entry = serialize_keras_object(kilnet.layers.Dense(3, name="head"))
        >>> entry["module"], entry["class_name"], entry["config"]["units"]
        ('keras.layers', 'Dense', 3)
        >>> serialize_keras_object({"sizes": (2, 3), "rate": np.float32(0.5)})
        {'sizes': (2, 3), 'rate': 0.5}
    """
    if obj is None or isinstance(obj, PLAIN_TYPES):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [serialize_keras_object(item) for item in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        return {key: serialize_keras_object(value) for key, value in obj.items()}
    structural = _structural_entry(obj)
    if structural is not None:
        return structural
    if isinstance(obj, Layer):
        return _layer_entry(obj)
    if isinstance(obj, mixed_precision.DTypePolicy):
        return mixed_precision.serialize(obj)
    for base, module, kilnet_module in _KINDS:
        if isinstance(obj, base):
            return _keras_entry(kilnet_module.serialize(obj), module, type(obj))
    if isinstance(obj, types.FunctionType):
        return _function_entry(obj)
    raise ValueError(f"serialize_keras_object: kilnet cannot write a {type(obj).__name__} "
                     "into a config; it writes plain values, arrays, and kilnet's layers, "
                     "initializers, regularizers, constraints, losses, metrics, optimizers, "
                     "schedules, dtype policies and functions (yours registered with "
                     f"@kilnet.saving.register_serializable()). Received: {obj!r:.100}")


def _structural_entry(obj):
    """Keras's entries for bytes, slices, `...`, NumPy and JAX values; None for others."""
    if isinstance(obj, bytes):
        return {"class_name": "__bytes__", "config": {"value": obj.decode("utf-8")}}
    if isinstance(obj, slice):
        return {"class_name": "__slice__", "config": {
            "start": serialize_keras_object(obj.start), "stop": serialize_keras_object(obj.stop),
            "step": serialize_keras_object(obj.step)}}
    if obj is Ellipsis:
        return {"class_name": "__ellipsis__", "config": {}}
    if constants.is_array(obj):
        return constants.array_config(obj)
    return None


def _layer_entry(layer) -> dict:
    spec = model_config.serialize(layer, build_config=False)
    registered = _registry.name_of(type(layer))
    if registered is None and spec["class_name"] not in ("Functional", "Sequential"):
        module = "keras.layers"
    elif registered is None:
        module = "keras"
    else:
        module = _registry.user_module(type(layer))
    entry = {"module": module, "class_name": type(layer).__name__ if registered else
             spec["class_name"], "config": spec["config"], "registered_name": registered}
    shape = getattr(layer, "build_shape", None) if layer.built else None
    if "build_config" in spec:   # a layer of yours that keeps its own
        entry["build_config"] = spec["build_config"]
    elif shape is not None:
        # Keras's build_config holds the shape its build takes: batch axis first
        entry["build_config"] = {"input_shape": model_config.shape_to_json(
            with_batch_axis(shape))}
    return entry


def _keras_entry(entry, module, cls) -> dict:
    """A module's entry as Keras's four keys: the initializers', regularizers', constraints',
    losses', metrics' and optimizers' serialize write them already; a schedule's
    {"class_name", "config"} is completed (_registry.config_entry)."""
    if "module" in entry:
        return entry
    builtin = _registry.name_of(cls) is None
    return _registry.config_entry(cls, entry["config"], module if builtin else None)


def _function_entry(fn) -> dict:
    if fn.__name__ == "<lambda>":
        raise ValueError("serialize_keras_object: a lambda cannot be written into a config "
                         "(Keras stores its bytecode, which kilnet never runs). Write a named "
                         "function and register it with @kilnet.saving.register_serializable(). "
                         f"Received: {fn!r}")
    if _registry.name_of(fn) is not None:   # yours, by its registered name, as Keras's
        return _registry.function_entry(fn)
    for module in _FUNCTION_MODULES:
        if getattr(module, fn.__name__, None) is fn:
            name = activations.serialize(fn) if module is activations else fn.__name__
            # Keras 3 writes its own functions so, "builtins" and "function" included.
            return {"module": "builtins", "class_name": "function", "config": name,
                    "registered_name": "function"}
    raise ValueError(f"serialize_keras_object: the function {fn.__name__!r} is neither one of "
                     "kilnet's activations, losses or metrics nor registered; register it with "
                     f"@kilnet.saving.register_serializable(). Received: {fn!r}")


def serialize_layer(layer) -> dict:
    """A layer or model as Keras's entry (`keras.layers.serialize`, kilnet.layers.serialize).

    Example:
        >>> import kilnet
        >>> kilnet.layers.serialize(kilnet.layers.Dropout(0.2))["class_name"]
        'Dropout'
    """
    if not isinstance(layer, Layer):
        raise ValueError("layers.serialize takes a layer or a model; use "
                         "kilnet.saving.serialize_keras_object for other objects. Received: "
                         f"{layer!r:.100}")
    return serialize_keras_object(layer)


# -- from plain data -------------------------------------------------------------------------------
def deserialize_keras_object(config, custom_objects=None, safe_mode=True, **kwargs):
    """The object `config` describes: what `serialize_keras_object` (kilnet's or Keras's)
    wrote, or kilnet's plain {"class_name", "config"}.

    Only kilnet's classes and functions, those registered with
    `kilnet.saving.register_serializable` (or in an open `custom_object_scope`) and those in
    `custom_objects` are created. `safe_mode` is accepted as Keras's: kilnet is always safe
    (a lambda's bytecode is refused either way).

    Args:
        config: the entry (plain values, lists and dicts of entries pass through).
        custom_objects: {"Name": class or function} for your objects not registered.
        safe_mode: accepted for Keras compatibility.
        **kwargs: `module_objects`, Keras's table of names for a plain string config.

    Returns:
        The object.

    Raises:
        ValueError: the entry names something kilnet may not create, with the fix.

    Example:
        >>> import kilnet
        >>> from kilnet.serialization import deserialize_keras_object
        >>> entry = {"module": "keras.layers", "class_name": "Dense",
        ...          "config": {"units": 4, "activation": "relu"}, "registered_name": None}
        >>> layer = deserialize_keras_object(entry)
        >>> type(layer).__name__, layer.units
        ('Dense', 4)
        >>> deserialize_keras_object({"class_name": "__tuple__", "config": {"value": [1, 2]}})
        (1, 2)
    """
    del safe_mode   # kilnet never runs code from a config
    custom = {**_registry.registered(), **(custom_objects or {})}
    return _deserialize(config, custom, kwargs.get("module_objects") or {})


def _deserialize(config, custom, module_objects):
    if config is None or isinstance(config, (int, float, bool)):
        return config
    if isinstance(config, str):   # a name means an object only in Keras's module_objects table
        found = module_objects.get(config)
        return config if found is None else _instantiate(found, None)
    if isinstance(config, (list, tuple)):
        items = [_deserialize(item, custom, module_objects) for item in config]
        return tuple(items) if isinstance(config, tuple) else items
    if not isinstance(config, dict):
        raise ValueError(f"deserialize_keras_object: expected a config entry (a dict, list or "
                         f"plain value). Received: {config!r:.100}")
    if "class_name" not in config or "config" not in config:   # plain data, as Keras reads it
        return {key: _deserialize(value, custom, module_objects) for key, value in config.items()}
    structural = _structural_object(config, custom, module_objects)
    if structural is not _NOT_STRUCTURAL:
        return structural
    if config["class_name"] == "function":
        return _function_named(config, custom)
    return _object(config, custom)


_NOT_STRUCTURAL = object()


def _structural_object(config, custom, module_objects):
    name, inner = config["class_name"], config.get("config") or {}
    if name == "__tuple__":
        return tuple(_deserialize(item, custom, module_objects) for item in inner["value"])
    if name == "__bytes__":
        return inner["value"].encode("utf-8")
    if name == "__slice__":
        return slice(*(_deserialize(inner.get(k), custom, module_objects)
                       for k in ("start", "stop", "step")))
    if name == "__ellipsis__":
        return Ellipsis
    if name in constants.KINDS:
        try:
            return constants.array_from_config(config)
        except ValueError as error:
            raise ValueError(f"deserialize_keras_object: {error}") from None
    if name in ("__lambda__", "__keras_tensor__", "__typespec__"):
        raise ValueError(f"deserialize_keras_object: a {name} entry is not data kilnet "
                         "rebuilds (a lambda is Python bytecode, which kilnet never runs; "
                         "symbolic tensors live inside a model's config). Write a named "
                         "function or a Layer and register it with "
                         f"@kilnet.saving.register_serializable(). Received: {config!r:.100}")
    return _NOT_STRUCTURAL


def _function_named(config, custom):
    name = config.get("registered_name")
    name = name if isinstance(name, str) and name != "function" else config.get("config")
    found = _registry.function_named(config, custom)
    for module in _FUNCTION_MODULES:
        if found is None and isinstance(name, str) and name in getattr(module, "__all__", ()):
            candidate = getattr(module, name)
            found = candidate if isinstance(candidate, types.FunctionType) else None
    if found is None and isinstance(name, str):
        try:
            found = activations.get(name)   # Keras's other names for the same activation
        except ValueError:
            found = None
    if found is None:
        raise ValueError(f"deserialize_keras_object: unknown function {name!r:.80}; kilnet "
                         "makes its activations, losses and metrics, and functions registered "
                         "with @kilnet.saving.register_serializable() or given as "
                         f"custom_objects. Received: {config!r:.120}")
    return found


def _object(config, custom):
    module = config.get("module")
    if module in _BY_MODULE:
        return _BY_MODULE[module].deserialize(config)
    if config["class_name"] == "DTypePolicy" or module == "keras.dtype_policies":
        return mixed_precision.get(config)
    user_class = _user_class(config, custom)
    if user_class is not None and not issubclass(user_class, Layer):
        return _instantiate(user_class, config.get("config"))
    if user_class is not None or module in _LAYER_MODULES or _is_layer_name(config):
        return _layer(config, custom)
    for _, _, kilnet_module in _KINDS:
        try:
            return kilnet_module.deserialize(config)
        except (ValueError, KeyError, TypeError):
            continue
    raise ValueError(f"deserialize_keras_object: unknown class {config['class_name']!r:.80}; "
                     "kilnet makes its own classes, classes registered with "
                     "@kilnet.saving.register_serializable() and the custom_objects you pass. "
                     f"Received: {config!r:.120}")


def _user_class(config, custom):
    for name in (config.get("registered_name"), config.get("class_name")):
        if isinstance(name, str) and isinstance(custom.get(name), type):
            return custom[name]
    return None


def _is_layer_name(config) -> bool:
    return config["class_name"] in LAYER_TYPES or config["class_name"] in (
        "Functional", "Sequential", "Model")


def _layer(config, custom):
    """A layer or model through the checked paths that files take: Keras's entries through
    the closed Keras table, kilnet's through kilnet's configuration reader."""
    reader = keras_config.Reader("the config given to deserialize_keras_object", custom)
    # as a config read from JSON has it (Keras's entries made in Python keep tuples)
    spec = keras_config.layer_spec(_tree.tuples_as_lists(config), reader)
    layer = model_config.deserialize(spec, custom, path=reader.path)
    build = config.get("build_config")
    shape = _keras_build_shape(build.get("input_shape")) if isinstance(build, dict) else None
    if layer.built or getattr(layer, "is_functional", False) or not isinstance(build, dict):
        return layer
    if layer.keeps_own_build_config:
        layer.build_from_config(dict(build))
    elif shape is not None:
        layer.build(shape)
    return layer


def _keras_build_shape(value):
    """A build_config's input shape as Keras writes it (batch axis first, None for a size
    not fixed; or a list / dict of such shapes; lists in JSON, tuples in Keras's in-memory
    entries) as `build` takes it, else None."""
    def one(v):
        return isinstance(v, (list, tuple)) and bool(v) and all(
            d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in v)

    if one(value):
        return tuple(value)
    if isinstance(value, (list, tuple)) and value and all(one(v) for v in value):
        return [tuple(v) for v in value]
    if isinstance(value, dict) and value and all(one(v) for v in value.values()):
        return {key: tuple(v) for key, v in value.items()}
    return None


def _instantiate(obj, config):
    if isinstance(obj, type):
        config = config if isinstance(config, dict) else {}
        return obj.from_config(config) if hasattr(obj, "from_config") else obj(**config)
    return obj


def deserialize_layer(config, custom_objects=None):
    """The layer or model a Keras (or kilnet) entry describes (`keras.layers.deserialize`,
    kilnet.layers.deserialize); the same closed tables as deserialize_keras_object.

    Example:
        >>> import kilnet
        >>> kilnet.layers.deserialize({"class_name": "Dense", "config": {"units": 3}}).units
        3
    """
    layer = deserialize_keras_object(config, custom_objects=custom_objects)
    if not isinstance(layer, Layer):
        raise ValueError("layers.deserialize takes a layer's entry {'class_name', 'config'}; "
                         "use kilnet.saving.deserialize_keras_object for other objects. "
                         f"Received: {config!r:.100}")
    return layer
