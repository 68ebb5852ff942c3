"""Keras 3 model configurations (config.json) mapped to kilnet's, and back, through a closed
table.

Why a module of its own: a Keras config is an instruction to import modules and call what they
name (`{"module": "os", "class_name": "function", "config": "system"}` is valid Keras JSON).
kilnet reads it as data: every object it names must be one of kilnet's layers (same class
name, module `keras.layers`), a Sequential or functional model, or a class the program passed
as `custom_objects` / registered; every argument must be one kilnet's layer accepts, or one
whose value changes nothing (`kernel_constraint: null`). Anything else is a ModelFileError
naming the layer and why, raised before anything is built. The result is kilnet's own
configuration, which kilnet.models._config then plans and builds.
"""

from __future__ import annotations

import inspect
import warnings

from kilnet import _registry, initializers, quantizers, saving
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet.errors import ModelFileError
from kilnet.layers import (CELL_TYPES, LAYER_TYPES, RNN, Bidirectional, InputLayer, Layer,
                           Pipeline, StackedRNNCells, Wrapper)
from kilnet.models import Model, Sequential
from kilnet.models._config import functional_like_constructor
from kilnet.models._constants import KINDS
from kilnet.layers import _nested
from kilnet.layers._encoding import ID_DTYPES
from kilnet.layers._application_layers import KERAS_MODULES as APPLICATION_MODULES
from kilnet.layers._operation import OPERATIONS, OPS

# The only modules a Keras config may name: Keras's own public namespaces. Nothing is
# imported from them; a module only confirms that a class name means Keras's class.
MODULES = frozenset({"keras", "keras.layers", "keras.models", "keras.src.models.functional",
                     "keras.src.models.sequential", "keras.initializers",
                     "keras.regularizers", "keras.constraints", "keras.activations",
                     "keras.optimizers", "keras.optimizers.schedules", "keras.losses",
                     "keras.metrics", "keras.dtype_policies", "keras.quantizers"})
# Where Keras's graph-node ops live; a config may name them only for the ops of kilnet's
# closed table (kilnet.layers.Operation), which kilnet computes itself.
OPERATION_MODULES = frozenset(module for _, module, _ in OPS.values())
# structure and data, not objects: tensors, tuples, an index's slices and `...`, constant
# arrays (read as numbers by kilnet.models._constants)
MARKERS = frozenset({"__keras_tensor__", "__tuple__", "__slice__", "__ellipsis__"}) | KINDS
MODEL_CLASSES = frozenset({"Functional", "Sequential", "Model"})
# Classes Keras has and kilnet refuses on purpose, with the reason given to the user.
REFUSED = {
    "Lambda": "a Lambda layer holds Python code (marshalled bytecode), which kilnet never runs",
    "TFSMLayer": "a TFSMLayer loads an external TensorFlow SavedModel from a path",
}
INITIALIZERS = {"GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
                "HeUniform": "he_uniform", "HeNormal": "he_normal", "Zeros": "zeros",
                "Ones": "ones", "RandomUniform": "random_uniform",
                "RandomNormal": "random_normal", "Orthogonal": "orthogonal"}
_NEUTRAL_INIT = {"seed": (None,), "input_axes": (None,), "output_axes": (None,),
                 "gain": (1.0,), "minval": (-0.05,), "maxval": (0.05,), "mean": (0.0,),
                 "stddev": (0.05,)}
# Keras arguments kilnet's layers do not take, and the values with which they change nothing.
ANY = object()
NEUTRAL = {"kernel_constraint": (None,), "bias_constraint": (None,),
           "beta_constraint": (None,), "gamma_constraint": (None,),
           "beta_regularizer": (None,), "gamma_regularizer": (None,),
           "quantization_config": (None,), "sparse": (False, None), "ragged": (False,),
           "optional": (False,), "batch_size": (None,), "synchronized": (False,),
           "renorm": (False,), "renorm_clipping": (None,), "renorm_momentum": ANY,
           "data_format": ("channels_last",), "keepdims": (False,),
           "zero_output_for_mask": (False,), "seed": (None,), "activity_regularizer": (None,),
           "noise_shape": (None,), "lora_rank": (None,), "lora_alpha": (None,)}
ENTRY_KEYS = ("module", "class_name", "config", "registered_name")
POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
          "registered_name": None}

class Reader:
    """Where the config comes from (for errors) and the caller's custom_objects."""

    def __init__(self, path, custom_objects=None):
        self.path, self.custom = str(path), dict(custom_objects or {})

    def fail(self, where, problem):
        raise ModelFileError(self.path, f"{where}: {problem}")

    def custom_class(self, entry):
        """The user's class an entry names (custom_objects, then the registry), or None."""
        for name in (entry.get("registered_name"), entry.get("class_name")):
            if isinstance(name, str):
                found = self.custom.get(name) or self.custom.get(name.rpartition(">")[2])
                found = found or saving.get_registered_object(name)
                if found is not None:
                    return name if name in self.custom or ">" in name else found.__name__
        return None


    def class_named(self, name):
        """The class of yours that custom_class named."""
        return self.custom.get(name) or saving.get_registered_object(name)

    def custom_function(self, entry):
        """The function of yours a Keras function entry names ({"class_name": "function",
        "config": "package>name", ...}): registered, or in custom_objects; None otherwise."""
        return _registry.function_named(entry, self.custom)


# -- Keras -> kilnet -------------------------------------------------------------------------
def scan(value, reader, where):
    """Refuse any object reference in `value` that is not a plain Keras class name from
    Keras's own modules (or a class or function of yours, registered or in custom_objects):
    other functions, lambdas, bytes, module paths. Iterative."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            if "class_name" not in item:
                continue
            name, module = item.get("class_name"), item.get("module")
            if not isinstance(name, str):
                reader.fail(where, f"it names a class that is not a string: {name!r:.100}.")
            if name == "function" and (reader.custom_function(item) is not None
                                       or keras_function(item)):
                continue   # a function of yours, registered, or Keras's: named, not code
            if name == "function" and isinstance(item.get("config"), str):
                reader.fail(where, f"it names the function {item['config']!r:.80}, which is "
                                   "not registered in this program. If it is yours, register "
                                   "it under that name with @kilnet.saving."
                                   "register_keras_serializable(package=..., name=...) or pass "
                                   "it as custom_objects={name: function} before loading; "
                                   "kilnet never imports or runs what a file names.")
            if name == "function" or name == "__lambda__" or (
                    name.startswith("__") and name not in MARKERS):
                reader.fail(where, f"it holds a {name!r} object ({item.get('config')!r:.100}):"
                                   " code or raw bytes, which kilnet never loads.")
            if module is not None and module not in MODULES and reader.custom_class(item) \
                    is None and not (module in OPERATION_MODULES and name in OPERATIONS) \
                    and module != APPLICATION_MODULES.get(name):
                reader.fail(where, f"it names the module path {module!r:.100}; kilnet imports "
                                   "nothing a file names (only Keras's own layers are mapped, "
                                   "and your classes through custom_objects=).")
        elif isinstance(item, list):
            stack.extend(item)


def keras_function(entry) -> bool:
    """Whether a function entry names one of Keras's own loss or metric functions (compile's
    `loss=keras.losses.mean_squared_error`, which Keras writes as {"module": "builtins",
    "class_name": "function", "config": "mean_squared_error"}) by a name kilnet's losses or
    metrics know: data, which compile() takes by that name.

    Example:
        >>> keras_function({"module": "builtins", "class_name": "function",
        ...                 "config": "mean_squared_error", "registered_name": "function"})
        True
        >>> keras_function({"module": "os", "class_name": "function", "config": "system"})
        False
    """
    name, module = entry.get("config"), entry.get("module")
    if not isinstance(name, str) or not (module in (None, "builtins")
                                         or str(module).startswith("keras.")):
        return False
    for get in (losses_lib.get, metrics_lib.get):
        try:
            get(name)
            return True
        except (TypeError, ValueError):
            continue
    return False


def kilnet_function_of(entry):
    """kilnet's own loss or metric function that a function entry names when it names one of
    Keras's (keras_function), as Keras's loaded model holds Keras's function; else None.

    Example:
        >>> import kilnet
        >>> kilnet_function_of({"module": "builtins", "class_name": "function",
        ...     "config": "mean_squared_error"}) is kilnet.losses.mean_squared_error
        True
    """
    if not keras_function(entry):
        return None
    for lib in (losses_lib, metrics_lib):
        found = getattr(lib, entry["config"], None)
        if inspect.isfunction(found):
            return found
    return None


def keras_function_entry(fn):
    """Keras's entry for one of kilnet's own loss or metric functions (compile's
    `loss=kilnet.losses.mean_squared_error`), written as Keras writes its own
    (`keras.losses.mean_squared_error`); None for any other function.

    Example:
        >>> import kilnet
        >>> keras_function_entry(kilnet.metrics.mean_absolute_error)["config"]
        'mean_absolute_error'
        >>> keras_function_entry(print) is None
        True
    """
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not any(getattr(lib, name, None) is fn
                                            for lib in (losses_lib, metrics_lib)):
        return None
    entry = {"module": "builtins", "class_name": _registry.FUNCTION, "config": name,
             "registered_name": _registry.FUNCTION}
    return entry if keras_function(entry) else None


def model_spec(entry, reader):
    """kilnet's {"class_name", "config"} for a Keras model entry (top level or nested)."""
    name = entry.get("class_name")
    config = entry.get("config")
    where = f"model {config.get('name')!r}" if isinstance(config, dict) else "the model"
    if not isinstance(config, dict):
        reader.fail(where, "its config is not a dict.")
    # the model's own fields here; each layer is scanned by layer_spec, naming the layer
    scan([{k: v for k, v in entry.items() if k != "config"},
          {k: v for k, v in config.items() if k != "layers"}], reader, where)
    if name == "Sequential":
        return {"class_name": "Sequential", "config": _sequential(config, reader, where)}
    if name in ("Functional", "Model") and "layers" in config:
        return {"class_name": "Functional", "config": _functional(config, reader, where)}
    custom = reader.custom_class(entry)
    cls = reader.class_named(custom) if custom is not None else None
    if "layers" in config and isinstance(cls, type) and issubclass(cls, Model) \
            and not issubclass(cls, Sequential) and functional_like_constructor(cls):
        # a class of yours taking Model's arguments: Keras wrote its graph (see keras_model)
        return {"class_name": custom, "config": _functional(config, reader, where)}
    if custom is not None:
        spec = {"class_name": custom, "config": config}
        if isinstance(entry.get("build_config"), dict):   # for a build_from_config of yours
            spec["build_config"] = entry["build_config"]
        return spec
    reader.fail(where, f"its class {name!r:.100} is a subclassed model, whose code is not in "
                       "the file; pass the class as custom_objects={...} to load it.")


def _sequential(config, reader, where):
    if config.get("trainable", True) is not True:
        reader.fail(where, "it is a frozen Sequential (trainable=false); kilnet loads frozen "
                           "Sequentials only at the top level or inside a functional model.")
    layers = config.get("layers")
    if not isinstance(layers, list):
        reader.fail(where, "its 'layers' is not a list.")
    _refuse_keys(config, {"name", "trainable", "dtype", "layers", "build_input_shape"},
                 reader, where)
    _check_policy(config.get("dtype"), reader, where)
    out = [layer_spec(e, reader) for e in layers]
    shape = config.get("build_input_shape")
    input_shape = None
    if shape is not None and not (out and out[0]["class_name"] == "InputLayer"):
        input_shape = list(shape)[1:] if isinstance(shape, list) else None
    return {"name": config.get("name"), "input_shape": input_shape, "layers": out}


def _functional(config, reader, where):
    _refuse_keys(config, {"name", "trainable", "layers", "input_layers", "output_layers",
                          "dtype"}, reader, where)
    _check_policy(config.get("dtype"), reader, where)
    layers = []
    for entry in config["layers"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("inbound_nodes"), list):
            reader.fail(where, f"a layer entry is malformed: {entry!r:.200}")
        spec = layer_spec(entry, reader)
        layers.append({**spec, "name": entry.get("name"),
                       "inbound_nodes": [_node(n, reader, where) for n in entry["inbound_nodes"]]})
    shifted = _functional_names(layers)
    return {"name": config.get("name"), "trainable": config.get("trainable", True),
            "layers": layers,
            "input_layers": _shift_calls(config.get("input_layers"), shifted, -1),
            "output_layers": _shift_calls(config.get("output_layers"), shifted, -1)}


def _functional_names(layers) -> set:
    """The names of the nested functional models among a graph's layer entries (either
    form): Keras counts a functional model's own construction as its call 0, so the model's
    input_layers / output_layers number their calls from 1 (Sequential from 0)."""
    return {e.get("name") for e in layers
            if isinstance(e.get("config"), dict) and "input_layers" in e["config"]}


def _shift_calls(refs, names, step):
    """input_layers / output_layers with the call index of each reference to a layer in
    `names` moved by `step` (never below 0: a file that numbered them from 0 reads as is).

    Example:
        >>> _shift_calls([["inner", 1, 0], ["dense", 0, 0]], {"inner"}, -1)
        [['inner', 0, 0], ['dense', 0, 0]]
    """
    if isinstance(refs, dict):
        return {k: _shift_calls(v, names, step) for k, v in refs.items()}
    if not isinstance(refs, list):
        return refs
    if len(refs) == 3 and isinstance(refs[0], str) and isinstance(refs[1], int):
        return [refs[0], max(refs[1] + step, 0) if refs[0] in names else refs[1], refs[2]]
    return [_shift_calls(r, names, step) for r in refs]


def _node(node, reader, where):
    """A Keras 3 node ({"args", "kwargs"}) without its recorded `training` flag: in Keras the
    training mode of the model's call (fit, predict) overrides it, as kilnet's programs do."""
    if not isinstance(node, dict) or set(node) != {"args", "kwargs"} or not isinstance(
            node["kwargs"], dict):
        reader.fail(where, f"a node is not in Keras 3's format ({{'args', 'kwargs'}}): "
                           f"{node!r:.200}")
    return {"args": node["args"],
            "kwargs": {k: v for k, v in node["kwargs"].items() if k != "training"}}


def layer_spec(entry, reader):
    """kilnet's {"class_name", "config"} for one Keras layer entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        reader.fail("the model", f"a layer entry is malformed: {entry!r:.200}")
    name, config = entry.get("class_name"), entry["config"]
    where = f"layer {config.get('name', entry.get('name'))!r:.80} ({name!s:.50})"
    scan(entry, reader, where)
    if name in MODEL_CLASSES:
        return model_spec(entry, reader)
    custom = reader.custom_class(entry)
    if custom is not None:
        spec = {"class_name": custom,
                "config": _without_neutral_keys(reader.class_named(custom), config)}
        if isinstance(entry.get("build_config"), dict):   # for a build_from_config of yours
            spec["build_config"] = entry["build_config"]
        return spec
    if name in REFUSED:
        reader.fail(where, f"{REFUSED[name]}.")
    if entry.get("module") in OPERATION_MODULES:
        return _operation_spec(name, config, reader, where)
    cls = (LAYER_TYPES.get(name) or CELL_TYPES.get(name)) if isinstance(name, str) else None
    # A few classes Keras keeps in its applications' modules (ConvNeXt's LayerScale, ...).
    if cls is None or entry.get("module", "keras.layers") != APPLICATION_MODULES.get(
            name, "keras.layers"):
        reader.fail(where, f"kilnet has no layer {name!r:.100} from module "
                           f"{entry.get('module')!r:.60}; kilnet maps only Keras's layers that "
                           f"it implements ({len(LAYER_TYPES)} types) and your classes given "
                           "as custom_objects=.")
    return {"class_name": name, "config": layer_config(cls, config, reader, where)}


def _without_neutral_keys(cls, config):
    """The config of your subclass of one of kilnet's layers (a Dense of yours) without the
    arguments Keras's base class writes at their neutral values and kilnet's does not take
    (Keras 3.15's Dense writes quantization_config=None): your __init__ passes the rest on."""
    bases = [base for base in getattr(cls, "__mro__", ())
             if LAYER_TYPES.get(base.__name__) is base]
    if not bases:
        return config
    accepted = _arguments(cls) | _arguments(bases[0])
    return {key: value for key, value in config.items()
            if key in accepted or key not in NEUTRAL
            or not (NEUTRAL[key] is ANY or value in NEUTRAL[key])}


def _operation_spec(name, config, reader, where):
    """kilnet's Operation for one of Keras's graph-node ops (x + y, a mask's NotEqual, ...):
    the op's config holds its settings (Keras's constructor arguments), under their names."""
    if name not in OPERATIONS:
        reader.fail(where, f"kilnet has no op {name!r:.100}; a graph node may be one of "
                           f"{sorted(OPERATIONS)}.")
    settings = {k: v for k, v in config.items() if k != "name"}
    unknown = sorted(set(settings) - set(OPS[name][2]))
    if unknown:
        reader.fail(where, f"the op {name} has unknown settings {unknown}; kilnet knows "
                           f"{list(OPS[name][2])}.")
    if isinstance(settings.get("dtype"), dict):   # a DTypePolicy-like entry
        settings["dtype"] = (settings["dtype"].get("config") or {}).get("name")
    out = {"operation": name, "arguments": settings}
    if "name" in config:
        out["name"] = config["name"]
    return {"class_name": "Operation", "config": out}


def layer_config(cls, config, reader, where):
    """A Keras layer config as the kilnet layer's constructor arguments."""
    accepted = _arguments(cls) | {"name", "trainable", "activity_regularizer"}   # any layer's
    out = {}
    for key, value in config.items():
        if key == "dtype" and cls is not InputLayer:
            if _check_policy(value, reader, where, quantized=cls.quantization_modes,
                             ids=getattr(cls, "accepts_id_dtype", False)) != "float32":
                out[key] = value  # a mixed policy: the layer takes it (kilnet.mixed_precision)
        elif key == "quantization_config" and value is not None:
            if _check_quantization_config(value, cls, reader, where):
                out[key] = value   # a custom int8 configuration: the layer computes with it
        elif key in ("layer", "backward_layer") and (cls is Bidirectional
                                                     or issubclass(cls, Wrapper)):
            out[key] = None if value is None else layer_spec(value, reader)
        elif key == "cell" and cls is RNN:
            out[key] = layer_spec(value, reader)
        elif (key, cls) in (("cells", StackedRNNCells), ("layers", Pipeline)):
            if not isinstance(value, list):
                reader.fail(where, f"its {key} must be a list of {key}. Received: "
                                   f"{value!r:.100}")
            out[key] = [layer_spec(inner, reader) for inner in value]
        elif key.endswith("_initializer"):
            init = _initializer(key, value, reader, where)
            if key in accepted and init is not None:
                out[key] = init
            elif key not in accepted:
                reader.fail(where, f"kilnet's {cls.__name__} has no {key}. Received: "
                                   f"{key}={value!r:.100}")
        elif key.endswith(("_regularizer", "_constraint")) and key in accepted \
                and isinstance(value, dict):
            # Keras's entry as it is: its registered_name finds a registered class of yours
            out[key] = {k: value[k] for k in ENTRY_KEYS if k in value}
        elif key in accepted:
            out[key] = value
        elif key in NEUTRAL and (NEUTRAL[key] is ANY or value in NEUTRAL[key]):
            continue
        else:
            reader.fail(where, f"kilnet's {cls.__name__} does not support the Keras argument "
                               f"{key}={value!r:.100}; save the model without it, or as "
                               "weights only.")
    return out


def _arguments(cls) -> set:
    """The arguments a kilnet layer class takes: its constructor's, and the config keys it
    passes on to its base (an RNN's zero_output_for_mask, which Keras's Bidirectional sets)."""
    named = {p.name for p in inspect.signature(cls.__init__).parameters.values()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
    return named | set(getattr(cls, "config_keys", ()))


def _initializer(key, value, reader, where):
    """kilnet's form of a Keras initializer: its name when Keras's settings are the defaults,
    else {"class_name", "config"} with its settings (RandomNormal(stddev=0.02), Constant(0.1),
    ...); None (kilnet's default, with a warning) for one kilnet does not have. Loaded weights
    come from the file, so this only matters when the layer is initialized again."""
    if value is None or isinstance(value, str):
        return value
    if not isinstance(value, dict):
        reader.fail(where, f"{key} is malformed: {value!r:.100}")
    if _registry.is_function_entry(value) and reader.custom_function(value) is not None:
        return {k: value[k] for k in ENTRY_KEYS if k in value}   # a function of yours
    name, config = value.get("class_name"), dict(value.get("config") or {})
    registered = value.get("registered_name")
    mine = saving.get_registered_object(registered) if isinstance(registered, str) else None
    if isinstance(mine, type) and issubclass(mine, initializers.Initializer):
        return {k: value[k] for k in ENTRY_KEYS if k in value}   # a class of yours
    if name in INITIALIZERS and all(
            k in _NEUTRAL_INIT and v in _NEUTRAL_INIT[k] for k, v in config.items()):
        return INITIALIZERS[name]
    if name in initializers.CLASSES:
        numpy_value = config.get("value")
        if isinstance(numpy_value, dict) and numpy_value.get("class_name") == "__numpy__":
            config["value"] = (numpy_value.get("config") or {}).get("value")  # Keras's array
        if isinstance(config.get("seed"), dict):
            config["seed"] = None   # a SeedGenerator's state: the model's seed decides
        spec = {"class_name": name, "config": config}
        try:
            initializers.deserialize(spec)
        except ValueError as error:
            reader.fail(where, f"{key}: {error}")
        return spec
    warnings.warn(f"{where}: kilnet has no initializer {name}{config}; the loaded weights are "
                  f"used as they are, but {key} falls back to kilnet's default if the layer is "
                  "initialized again.", stacklevel=6)
    return None


def _check_policy(value, reader, where, quantized=(), ids=False):
    """The policy's name: float32 or a mixed one (float32 weights), or Keras's quantized
    policy of a mode in `quantized` (the modes kilnet quantizes the layer with: int8's
    "int8_from_float32", int4's "int4/128_from_float32"), or where `ids` (a hashing layer)
    the integer dtype of Keras's ids; others are refused."""
    if isinstance(value, dict) and value.get("class_name") in ("QuantizedDTypePolicy",
                                                               "Int4DTypePolicy"):
        config = value.get("config") if isinstance(value.get("config"), dict) else {}
        name = f"{config.get('mode')}_from_{config.get('source_name')}"
        mode = str(config.get("mode")).partition("/")[0]
        if mode not in quantized or mode not in ("int8", "int4") or config.get(
                "source_name") not in ("float32", "mixed_bfloat16"):
            reader.fail(where, f"it is quantized with dtype policy {name!r:.60}; kilnet reads "
                               "Keras's int8 quantization ('int8_from_float32', "
                               "'int8_from_mixed_bfloat16') of Dense, EinsumDense, Embedding and "
                               "ReversibleEmbedding layers, and its int4 quantization "
                               "('int4/128_from_float32', ...) of Dense, EinsumDense and "
                               "Embedding layers.")
        return name
    name = value.get("config", {}).get("name") if isinstance(value, dict) else value
    if ids and name in ID_DTYPES:
        return name
    if name not in (None, "float32", "mixed_float16", "mixed_bfloat16"):
        reader.fail(where, f"it computes in dtype policy {name!r:.50}; kilnet layers take "
                           "'float32', 'mixed_float16' and 'mixed_bfloat16' (float32 weights).")
    return name or "float32"


def _check_quantization_config(value, cls, reader, where) -> bool:
    """A quantized layer's `quantization_config`: Keras's int8 default (False: the layers
    compute with it anyway), or, for Dense and EinsumDense, an Int8QuantizationConfig of
    kilnet's quantizers, or for the layers kilnet quantizes to int4 an Int4QuantizationConfig
    (True: the layer takes it)."""
    if quantizers.is_int8_config(value):
        return False
    name = value.get("class_name") if isinstance(value, dict) else None
    custom = name == "Int8QuantizationConfig" and cls.__name__ in ("Dense", "EinsumDense") or \
        name == "Int4QuantizationConfig" and "int4" in cls.quantization_modes
    if custom:
        try:
            quantizers.deserialize(value)
            return True
        except (TypeError, ValueError) as error:
            reader.fail(where, f"its quantization_config cannot be read: {error}")
    reader.fail(where, f"its quantization_config is {value!r:.300}; kilnet computes Keras's "
                       "int8 quantization (Int8QuantizationConfig; custom quantizers on Dense "
                       "and EinsumDense only) and its int4 quantization (Int4QuantizationConfig: "
                       "Dense, EinsumDense, Embedding).")


def _refuse_keys(config, known, reader, where):
    unknown = sorted(set(config) - known)
    if unknown:
        reader.fail(where, f"its config has keys kilnet does not know: {unknown[:5]}.")


# -- kilnet -> Keras -------------------------------------------------------------------------
def keras_model(spec, path):
    """The Keras 3 config entry of kilnet's model spec (kilnet.models._config.serialize)."""
    name, config = spec["class_name"], spec["config"]
    if name == "Sequential":
        shape, batch = config.get("input_shape"), config.get("batch_size")
        layers = [keras_layer(e, path) for e in config["layers"]]
        if shape is not None:
            dtype = config.get("input_dtype")   # a chain starting with a string layer
            layers.insert(0, keras_layer({"class_name": "InputLayer", "config": {
                "shape": shape, "name": f"{config['name']}_input",
                **({} if batch is None else {"batch_size": batch}),
                **({} if dtype is None else {"dtype": dtype})}}, path))
        entry = {"module": "keras", "class_name": "Sequential",
                 "config": {"name": config["name"], "trainable": True, "dtype": POLICY,
                            "layers": layers}, "registered_name": None}
        if shape is not None:
            entry["build_config"] = {"input_shape": [batch] + list(shape)}
        return entry
    if name == "Functional":
        return {"module": "keras.src.models.functional", "class_name": "Functional",
                "config": _keras_functional(config, path), "registered_name": "Functional"}
    return _keras_custom_model(spec, path)


def _keras_functional(config, path):
    """Keras's config of a functional graph (kilnet's, with each layer's entry in Keras's
    form)."""
    layers = []
    for e in config["layers"]:
        _refuse_fixed_training(e, path)
        converted = keras_layer({k: v for k, v in e.items()
                                 if k not in ("name", "inbound_nodes")}, path)
        nodes = e["inbound_nodes"]
        if e["class_name"] == "Operation":   # Keras writes an op's tuples (an index) as lists
            nodes = _tuples_as_lists(nodes)
        layers.append({**converted, "name": e["name"], "inbound_nodes": nodes})
    shifted = _functional_names(config["layers"])
    return {**config, "layers": layers,
            "input_layers": _shift_calls(config["input_layers"], shifted, 1),
            "output_layers": _shift_calls(config["output_layers"], shifted, 1)}


def _tuples_as_lists(value):
    if isinstance(value, dict):
        if value.get("class_name") == "__tuple__":
            return [_tuples_as_lists(v) for v in value["config"]["value"]]
        return {k: _tuples_as_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tuples_as_lists(v) for v in value]
    return value


def _refuse_fixed_training(entry, path):
    """A node called with a fixed training= behaves otherwise in Keras: Keras 3's functional
    model passes the training mode of fit/evaluate/predict to every layer, overriding the one
    recorded in the node (keras/src/models/functional.py, operation_fn), where kilnet keeps
    the fixed one. Refused rather than written with a different meaning."""
    for node in entry["inbound_nodes"]:
        flag = node.get("kwargs", {}).get("training")
        if flag is not None:
            raise ValueError(
                f"Cannot save {path} as a Keras file: layer {entry['name']!r} is called with "
                f"training={flag} fixed, and Keras 3 replaces a fixed training flag with the "
                "mode of fit/predict, so the model would behave otherwise in Keras. Call the "
                "layer without training= (to keep a BatchNormalization in inference mode, set "
                "its trainable=False, which both honour), or save with the extension .kilnet.")


def keras_layer(spec, path):
    """The Keras 3 config entry of one kilnet layer spec."""
    name, config = spec["class_name"], dict(spec["config"])
    if name in MODEL_CLASSES or name == "Functional":
        return keras_model(spec, path)
    if name not in LAYER_TYPES and name not in CELL_TYPES:
        return _keras_custom_layer(spec, path)
    if name == "Operation":
        return _keras_operation(config)
    if name == "Lambda":
        raise ValueError(f"Cannot save {path} as a Keras file: layer {config.get('name')!r} is "
                         "a Lambda, whose function Keras stores as Python bytecode, which "
                         "kilnet never writes. Save it with the extension .kilnet (its function "
                         "registered with kilnet.saving.register_serializable), or write a Layer "
                         "subclass.")
    if name == "InputLayer":   # Keras's keys, from either form kilnet writes
        config = InputLayer.from_config(config).get_config()
    for key in ("layer", "backward_layer", "cell"):
        if isinstance(config.get(key), dict):
            config[key] = _keras_held_layer(config[key], path)
    if name in ("StackedRNNCells", "Pipeline"):
        key = "cells" if name == "StackedRNNCells" else "layers"
        config[key] = [_keras_held_layer(inner, path) for inner in config[key]]
    policy = config.get("dtype")
    if isinstance(policy, dict) and policy.get("class_name") == "QuantizedDTypePolicy":
        # what Keras records: the layer's own configuration, else Keras's default
        config["quantization_config"] = config.get("quantization_config") or \
            quantizers.int8_config()
    for key, value in config.items():
        if key.endswith("_regularizer") and isinstance(value, dict):
            config[key] = _keras_object_entry(value, "keras.regularizers")
        elif key.endswith("_constraint") and isinstance(value, dict):
            config[key] = _keras_object_entry(value, "keras.constraints")
        elif key.endswith("_initializer") and isinstance(value, dict):
            config[key] = _keras_initializer(key, value, path)
    if name in APPLICATION_MODULES:   # Keras names these by their module (and class)
        return {"module": APPLICATION_MODULES[name], "class_name": name, "config": config,
                "registered_name": name}
    return {"module": "keras.layers", "class_name": name, "config": config,
            "registered_name": None}


def _keras_held_layer(entry, path):
    """Keras's entry of a layer held in another's config (either form kilnet writes), with
    its build_config where it has one, as Keras nests it."""
    converted = keras_layer(_nested.as_spec(entry), path)
    if "build_config" in entry and "build_config" not in converted:
        converted["build_config"] = entry["build_config"]
    return converted


def _keras_custom_model(spec, path):
    """Keras's entry of a subclassed model of yours, registered as _keras_custom_layer's
    classes are: its config, and the input shape Keras's build_from_config builds it for
    (batch axis first, as Keras writes it)."""
    name, config = spec["class_name"], spec["config"]
    cls = saving.get_registered_object(name) or _class_named(name, Model)
    if {"layers", "input_layers", "output_layers"} <= set(config):
        # a class of yours taking Model's own arguments: Keras saves its graph, to be
        # rebuilt through them, and a Functional's build_config (no input shape)
        return {"module": _module_of(cls), "class_name": _class_name(cls, name),
                "config": _keras_functional(config, path), "registered_name": name,
                "build_config": {"input_shape": None}}
    if "build_config" not in spec:
        raise ValueError(f"Cannot save {path} as a Keras file: the model {config.get('name')!r}"
                         f" is of the class {name!r}, a subclassed model that is not built: "
                         "call it on data or build it first, or save it with the extension "
                         ".kilnet.")
    shape = spec["build_config"]["input_shape"]
    # None: a class of yours that makes its functional graph in __init__ (built from then on)
    return {"module": _module_of(cls), "class_name": _class_name(cls, name), "config": config,
            "registered_name": name,
            "build_config": {"input_shape": None if shape is None else _with_batch_axis(shape)}}


def _keras_nested_model(spec, path):
    """Keras's entry of a subclassed model of yours called as a layer of another model (a
    backbone written as a Model subclass, a head added functionally): the top-level entry,
    with the empty compile configuration Keras writes for a model inside another (loading
    compiles only the outer model)."""
    return {**_keras_custom_model(spec, path), "compile_config": {}}


def _with_batch_axis(shape):
    """A sample shape (or a list or dict of them) with Keras's free batch axis first."""
    if isinstance(shape, dict):
        return {key: _with_batch_axis(value) for key, value in shape.items()}
    if shape and all(isinstance(item, list) for item in shape):
        return [_with_batch_axis(item) for item in shape]
    return [None] + list(shape)


def _keras_custom_layer(spec, path):
    """Keras's entry of a layer class of yours, as Keras writes it: under the name its registry
    finds it by ("package>Name" when registered, with `keras.saving.register_keras_serializable`
    on Keras's side), else under the class's name, which loading finds in `custom_objects`
    (`load_model(path, custom_objects={"Name": Name})`, in Keras and in kilnet)."""
    name, config = spec["class_name"], spec["config"]
    cls = saving.get_registered_object(name) or _class_named(name, Layer)
    if isinstance(cls, type) and issubclass(cls, Model):
        return _keras_nested_model(spec, path)
    entry = {"module": _module_of(cls), "class_name": _class_name(cls, name), "config": config,
             "registered_name": name}
    if "build_config" in spec:
        entry["build_config"] = spec["build_config"]
    return entry


def _class_named(name, base):
    """A subclass of `base` with that name, for the module Keras writes with an unregistered
    class: None when there is none, or several in different modules."""
    found, stack = {}, [base]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__name__ == name:
                found[sub.__module__] = sub
            stack.append(sub)
    return next(iter(found.values())) if len(found) == 1 else None


def _class_name(cls, registered_name):
    return cls.__name__ if isinstance(cls, type) else registered_name.rpartition(">")[2]


def _module_of(cls):
    """The module Keras writes for a class of yours: None for one defined in the script."""
    return _registry.user_module(cls)


def _keras_object_entry(value, module):
    """Keras's four-key entry of an initializer, regularizer or constraint: the layers'
    configs hold it already (a registered class of yours keeps its module and registered
    name); kilnet's older {"class_name", "config"} gets Keras's `module`."""
    entry = {"module": module, **value}
    entry.setdefault("registered_name", None)
    return entry


def _keras_initializer(key, value, path):
    """Keras's entry of a kilnet initializer: one of the classes both have, or a class or
    function of yours registered with kilnet.saving.register_serializable (which Keras finds
    under the same registered name, registered with keras.saving.register_keras_serializable)."""
    registered = value.get("registered_name")
    if value.get("class_name") not in initializers.CLASSES and not (
            isinstance(registered, str) and saving.get_registered_object(registered)) \
            and _registry.function_named(value) is None:   # nor a function of yours
        raise ValueError(f"Cannot save {path} as a Keras file: its {key} is your initializer "
                         f"class {value.get('class_name')!r}, which Keras cannot rebuild. "
                         "Register it with @kilnet.saving.register_serializable() (and with "
                         "keras.saving.register_keras_serializable() on Keras's side), or save "
                         "it with the extension .kilnet instead.")
    return _keras_object_entry(value, "keras.initializers")


def _keras_operation(config):
    """Keras's graph-node entry of a kilnet Operation (the inverse of _operation_spec)."""
    op = config["operation"]
    return {"module": OPS[op][1], "class_name": op,
            "config": {"name": config["name"], **config.get("arguments", {})},
            "registered_name": op}
