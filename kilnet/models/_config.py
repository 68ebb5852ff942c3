"""Models and layers as plain JSON data, and back: `model.get_config()`, `model.to_json()`,
`Model.from_config`, `kilnet.models.model_from_json` and `kilnet.models.clone_model`.

Why a module of its own: a model file must describe every kind of model (a Sequential, a
functional graph with shared layers and nested models, a user's subclassed model or Keras-form
layer) while never naming code to import. So configurations are read in two phases:

1. *plan*: the whole configuration is checked (its size and depth bounded, every class name
   mapped through an allowlist: kilnet's layers, classes registered with
   `kilnet.saving.register_serializable`, or the caller's `custom_objects`), the graph's
   references resolved and an order to replay its nodes found. Nothing is created yet, so a
   file naming an unknown class is refused before any of its classes runs.
2. *build*: the allowlisted classes are created with `from_config` and the graph's nodes are
   replayed on symbolic tensors, which rebuilds the same graph (a layer called twice is one
   layer, so its weights stay shared; a nested model is rebuilt from its own configuration).

A functional model's configuration has Keras 3's shape:

    {"name", "trainable",
     "layers": [{"class_name", "name", "config",
                 "inbound_nodes": [{"args": [...], "kwargs": {...}}]}],
     "input_layers": ..., "output_layers": ...}

where a symbolic tensor in a node's arguments is {"class_name": "__keras_tensor__", "config":
{"shape", "dtype", "keras_history": [layer_name, node_index, tensor_index]}} (an index's slices
and `...` are {"class_name": "__slice__", "config": {"start", "stop", "step"}} and
{"class_name": "__ellipsis__", "config": {}}, and a constant array {"class_name":
"__tensor__" or "__numpy__", "config": {"value", "dtype"}} (kilnet.models._constants), as
Keras writes them), node_index counts
the calls of that layer within this model (from 0), and input_layers / output_layers keep the
structure the model was defined with (one [layer_name, node_index, tensor_index], a list or a
dict of them). A Sequential keeps its own format {"name", "input_shape", "layers": [{"class_name",
"config"}]}; nested models appear as layers with class_name "Functional", "Sequential" or the
registered name ("package>Name").
"""

from __future__ import annotations

import contextvars
import inspect
import json
import math
import types
from dataclasses import dataclass, field

from kilnet import _safefile, mixed_precision, saving
from kilnet._toposort import calls_in_order
from kilnet.errors import ModelFileError
from kilnet.layers import (CELL_TYPES, LAYER_TYPES, InputLayer, Layer, configures_automatically,
                           with_constructor_arguments)
from kilnet.layers._node import KerasTensor, flatten, substitute, tensors_in
from kilnet.models import _constants as constants
from kilnet.models._model import Model
from kilnet.models._sequential import Sequential

# Bounds on a configuration read from a file or a string: a 16 MiB header could otherwise hold
# structures deep enough to exhaust Python's stack, or large enough to take minutes to replay.
MAX_DEPTH = _safefile.MAX_DEPTH      # nesting of lists and dicts
MAX_VALUES = _safefile.MAX_VALUES    # values of every kind, all levels together
# Values per sample of any one layer output a file's graph may declare (4 GiB of float32):
# a file could otherwise name a Tile(repeats=10**9) or an UpSampling2D(size=10**5), which load
# abstractly but would allocate that much the first time the model runs.
MAX_ACTIVATION_VALUES = 2**30

TENSOR = "__keras_tensor__"
TUPLE = "__tuple__"
SLICE = "__slice__"        # an index of x[...] (Keras's markers for both)
ELLIPSIS = "__ellipsis__"
FUNCTIONAL_KEYS = {"name", "trainable", "layers", "input_layers", "output_layers"}
SEQUENTIAL_KEYS = {"name", "input_shape", "batch_size", "input_dtype", "layers"}
SPEC_KEYS = frozenset({"class_name", "config", "build_config"})   # a layer's or model's entry

# The custom_objects of the deserialization under way, so that a registered class whose own
# from_config deserializes a nested model (Model.from_config) sees them too.
_custom_objects = contextvars.ContextVar("kilnet_custom_objects", default=None)


# -- to plain data ---------------------------------------------------------------------------------
def serialize(obj, *, build_config: bool = True) -> dict:
    """A layer or model as {"class_name", "config"}: the data that `deserialize` rebuilds it
    from.

    class_name is "Functional" for a `kilnet.Model(inputs, outputs)`, the registered name
    ("package>Name") for a class registered with `kilnet.saving.register_serializable`, else
    the class's name. A built subclassed model also gets "build_config": {"input_shape": ...},
    since only its input shape tells how to make its weights.

    Args:
        obj: a kilnet layer or model.
        build_config: whether to add the build configuration of a subclassed model.

    Returns:
        A dict of plain JSON data.

    Example:
        >>> import kilnet
        >>> from kilnet.models import _config
        >>> spec = _config.serialize(kilnet.layers.Dense(3, name="d"))
        >>> spec["class_name"], spec["config"]["units"]
        ('Dense', 3)
    """
    spec = {"class_name": class_name(obj), "config": _plain_config(obj.get_config())}
    own_build_config = obj.get_build_config() if obj.keeps_own_build_config else None
    if own_build_config is not None:
        # what a layer of yours needs beyond its input shape, wherever it sits
        spec["build_config"] = _plain_config(own_build_config)
    elif (build_config and isinstance(obj, Model) and not obj.is_functional
            and not isinstance(obj, Sequential) and obj.built and obj.build_shape is not None):
        spec["build_config"] = {"input_shape": shape_to_json(obj.build_shape)}
    elif (build_config and isinstance(obj, Model) and obj.is_functional
            and not _is_functional_config(spec["config"])):
        # a class of yours whose __init__ makes its graph (Keras's "functional subclassing"):
        # its own arguments rebuild it, graph and all, so no input shape is needed; Keras's
        # Functional writes this build_config for it
        spec["build_config"] = {"input_shape": None}
    return spec


def _plain_config(config: dict) -> dict:
    """get_config()'s dict as JSON data: the objects a layer of yours returns in it (a layer,
    a regularizer, an initializer...) become Keras's entries, as Keras writes them, and come
    back to its from_config as those entries. Built-in configs are plain and pass unchanged."""
    if _is_plain(config):
        return config
    return saving.serialize_keras_object(config)


def _is_plain(value) -> bool:
    # a function (an activation of yours) is written by the files' own JSON writer: by its
    # registered name, or refused with the way to register it
    if value is None or isinstance(value, (str, int, float, bool, types.FunctionType)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_plain(item) for key, item in value.items())
    return False


def class_name(obj) -> str:
    """The name a configuration gives the class of `obj` (see serialize)."""
    cls = type(obj)
    if cls is Model:
        return "Functional"  # Keras's name for the class of functional models
    return saving.get_registered_name(cls)


def model_config(model) -> dict:
    """`Model.get_config()`: a functional model's graph, or a subclassed model's base config
    ({"name", "trainable", "dtype"}), which the subclass's own get_config extends with its
    arguments."""
    if model.is_functional and functional_like_constructor(type(model)):
        return _functional_config(model)
    config = {"name": model.name, "trainable": model.trainable,
              "dtype": mixed_precision.serialize(model.dtype_policy)}   # Keras's three keys
    if configures_automatically(model, Model):
        # Keras's automatic config: the arguments the model was made with
        return with_constructor_arguments(model, config)
    return config


def functional_like_constructor(cls) -> bool:
    """Whether a functional model of class `cls` is rebuilt from its graph's configuration,
    as Keras decides it (`functional_like_constructor`): Model's own constructor, one taking
    `(inputs, outputs, name)`, or one passing `*args, **kwargs` on. Any other `__init__` of a
    subclass makes the graph itself, and its arguments are its configuration.

    Example:
        >>> import kilnet
        >>> class Head(kilnet.Model):
        ...     def __init__(self, units=2, **kwargs):
        ...         inputs = kilnet.Input(shape=(3,))
        ...         super().__init__(inputs, kilnet.layers.Dense(units)(inputs), **kwargs)
        >>> functional_like_constructor(kilnet.Model), functional_like_constructor(Head)
        (True, False)
    """
    if cls.__init__ is Model.__init__:
        return True
    spec = inspect.getfullargspec(cls.__init__)
    return spec.args[1:] == ["inputs", "outputs", "name"] or (
        spec.varargs is not None and spec.varkw is not None)


def _functional_config(model) -> dict:
    graph = model.graph
    index = _node_indices(graph)
    layers = []
    for layer in graph.layers:
        spec = serialize(layer)
        nodes = [_node_config(node, index) for node in layer.inbound_nodes
                 if id(node) in index and not node.is_input]
        layers.append({**spec, "name": layer.name, "inbound_nodes": nodes})
    return {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": _structure_config(model.input, index),
            "output_layers": _structure_config(model.output, index)}


def _node_indices(graph) -> dict:
    """id(node) -> the node's position among its layer's calls that belong to this graph (a
    layer may also have been called outside it: in another model, or before)."""
    own = {id(node) for node in graph.nodes}
    index = {}
    for layer in graph.layers:
        count = 0
        for node in layer.inbound_nodes:
            if id(node) in own:
                index[id(node)] = count
                count += 1
    return index


def _history(tensor, index) -> list:
    return [tensor.node.layer.name, index[id(tensor.node)], tensor.index]


def _node_config(node, index) -> dict:
    return {"args": [_argument_config(a, index) for a in node.args],
            "kwargs": {k: _argument_config(v, index) for k, v in node.kwargs.items()}}


def _argument_config(value, index):
    """A layer call's argument as data: symbolic tensors by reference, containers kept."""
    if isinstance(value, KerasTensor):
        return {"class_name": TENSOR, "config": {"shape": list(value.shape),
                                                 "dtype": value.dtype,
                                                 "keras_history": _history(value, index)}}
    if isinstance(value, tuple):
        return {"class_name": TUPLE,
                "config": {"value": [_argument_config(v, index) for v in value]}}
    if isinstance(value, list):
        return [_argument_config(v, index) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _argument_config(v, index) for k, v in value.items()}
    if isinstance(value, slice):
        return {"class_name": SLICE, "config": {"start": value.start, "stop": value.stop,
                                                "step": value.step}}
    if value is Ellipsis:
        return {"class_name": ELLIPSIS, "config": {}}
    if constants.is_array(value):   # a constant operand, kept in the graph as Keras keeps it
        return constants.array_config(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"A layer was called with an argument of type {type(value).__name__}, "
                    "which a model configuration cannot hold (it holds symbolic tensors, "
                    "numbers, strings, arrays and lists, tuples and dicts of them). Received: "
                    f"{value!r:.100}")


def _structure_config(structure, index):
    if isinstance(structure, KerasTensor):
        return _history(structure, index)
    if isinstance(structure, dict):
        return {k: _structure_config(v, index) for k, v in structure.items()}
    return [_structure_config(v, index) for v in structure]


def shape_to_json(shape):
    """An input shape (a tuple, or a list / dict of tuples) as JSON lists."""
    if isinstance(shape, dict):
        return {k: shape_to_json(v) for k, v in shape.items()}
    if isinstance(shape, list):
        return [shape_to_json(s) for s in shape]
    return list(shape)


# -- bounds ------------------------------------------------------------------------------------
def check_bounds(value, path, what="model configuration"):
    """Refuse configurations nested deeper than MAX_DEPTH or holding more than MAX_VALUES
    values, and values that are not JSON data (kilnet._safefile.check_bounds)."""
    _safefile.check_bounds(value, path, what, max_depth=MAX_DEPTH, max_values=MAX_VALUES)


# -- phase 1: the plan -----------------------------------------------------------------------------
@dataclass
class _Reader:
    """Where a configuration comes from (for errors) and the caller's custom_objects."""

    path: str
    custom_objects: dict

    def error(self, problem) -> ModelFileError:
        return ModelFileError(self.path, problem)

    def fail(self, problem):
        raise self.error(problem)


@dataclass
class _ObjectPlan:
    """A layer or model made by its class's from_config (the config is the class's own)."""

    cls: type
    class_name: str
    config: dict
    build_config: dict | None = None   # given to the class's own build_from_config


@dataclass
class _SequentialPlan:
    cls: type
    name: str | None
    input_shape: tuple | None
    layers: list
    batch_size: int | None = None
    input_dtype: str = "float32"


@dataclass
class _Ref:
    """A symbolic tensor in a configuration: output `tensor` of call `node` of `layer`."""

    layer: str
    node: int
    tensor: int
    shape: list | None = None
    dtype: str | None = None


@dataclass
class _GraphLayer:
    name: str
    plan: object
    is_input: bool
    nodes: list = field(default_factory=list)   # [(args, kwargs)] with _Refs inside


@dataclass
class _FunctionalPlan:
    cls: type
    name: str
    trainable: bool
    layers: list
    inputs: object      # structure of _Refs
    outputs: object
    order: list         # (layer name, node index) in an order that can be replayed


def _builtin_types() -> dict:
    return {**LAYER_TYPES, **CELL_TYPES, "Sequential": Sequential, "Functional": Model}


def _resolve(class_name, reader, what="layer") -> type:
    """The class a configuration names, from custom_objects, the registry or kilnet's own
    layers and models; ModelFileError for anything else. Nothing is imported."""
    if isinstance(class_name, str):
        short = class_name.rpartition(">")[2]
        custom = reader.custom_objects
        cls = custom.get(class_name, custom.get(short)) if custom else None
        if cls is None:
            cls = saving.get_registered_object(class_name) or _builtin_types().get(class_name)
        if cls is not None:
            if not (isinstance(cls, type) and issubclass(cls, Layer)):
                reader.fail(f"{class_name!r} maps to {cls!r}, which is not a kilnet layer or "
                            "model class.")
            return cls
    short = class_name.rpartition(">")[2] if isinstance(class_name, str) else ""
    short = short[:50] if short.isidentifier() else "MyLayer"
    registered = sorted(n for n, c in saving.registered_objects().items()
                        if isinstance(c, type) and issubclass(c, Layer))
    reader.fail(
        f"it names the {what} type {class_name!r:.100}, which kilnet does not allow in files: "
        f"it is neither one of kilnet's layers and models nor a registered class. Allowed: "
        f"{sorted(_builtin_types())}, registered: {registered}. If it is your class, register "
        "it before loading, with @kilnet.saving.register_serializable() on the class (it is "
        f"then named 'Custom>{short}'), or pass custom_objects={{'{short}': {short}}}.")


def _spec_parts(spec, reader, keys, what="layer"):
    """The class_name and config of a {"class_name", "config", ...} entry, checked."""
    if (not isinstance(spec, dict) or not {"class_name", "config"} <= set(spec)
            or not set(spec) <= keys or not isinstance(spec["config"], dict)):
        reader.fail(f"the {what} entry is malformed: expected "
                    "{'class_name': ..., 'config': {...}}. "
                    f"Received: {spec!r:.200}")
    return spec["class_name"], spec["config"]


def _plan(spec, reader, keys=SPEC_KEYS, what="layer"):
    """The checked plan of a {"class_name", "config"} entry (see the module docstring)."""
    class_name, config = _spec_parts(spec, reader, keys, what)
    cls = _resolve(class_name, reader, what)
    plan = _plan_class(cls, class_name, config, reader)
    build_config = spec.get("build_config")
    if isinstance(plan, _ObjectPlan) and build_config is not None and (
            cls.get_build_config is not Layer.get_build_config
            or cls.build_from_config is not Layer.build_from_config):
        if not isinstance(build_config, dict):
            reader.fail(f"the build configuration of a {class_name!r:.100} layer is not a "
                        f"dict. Received: {build_config!r:.100}")
        plan.build_config = build_config
    return plan


def _plan_class(cls, class_name, config, reader):
    # Model classes that keep Model's own from_config are rebuilt from their graph here, so
    # that every class in the graph is checked before anything is made.
    if issubclass(cls, Model) and getattr(cls.from_config, "__func__", None) is \
            Model.from_config.__func__:
        if issubclass(cls, Sequential):
            return _plan_sequential(cls, config, reader)
        if cls is Model or (_is_functional_config(config)
                            and functional_like_constructor(cls)):
            return _plan_functional(cls, config, reader)
    return _ObjectPlan(cls, class_name, config)


def _is_functional_config(config) -> bool:
    return isinstance(config, dict) and {"layers", "input_layers", "output_layers"} <= set(
        config)


def _plan_sequential(cls, config, reader):
    if (not isinstance(config, dict) or not isinstance(config.get("layers"), list)
            or not isinstance(config.get("name", ""), (str, type(None)))):
        reader.fail("the model configuration is malformed: expected "
                    "{'name': str, 'input_shape': [...], 'layers': [...]}.")
    unknown = set(config) - SEQUENTIAL_KEYS
    if unknown:
        reader.fail(f"the model configuration has unknown keys {sorted(unknown)}.")
    input_shape = config.get("input_shape")
    if input_shape is not None and not _is_shape_json(input_shape) \
            and input_shape != []:   # [] : one string per sample (Input(shape=(), "string"))
        reader.fail(f"the input shape {input_shape!r:.100} is invalid.")
    batch_size = config.get("batch_size")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(
            batch_size, bool) or batch_size < 1):
        reader.fail(f"the batch size {batch_size!r:.100} is invalid.")
    input_dtype = config.get("input_dtype", "float32")
    if input_dtype not in ("float32", "string"):
        reader.fail(f"the input dtype {input_dtype!r:.100} is invalid: expected 'string'.")
    layers = [_plan(entry, reader) for entry in config["layers"]]
    return _SequentialPlan(cls, config.get("name") or None,
                           None if input_shape is None else tuple(input_shape), layers,
                           batch_size, input_dtype)


def _is_shape_json(shape) -> bool:
    return isinstance(shape, list) and bool(shape) and all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)


def _plan_functional(cls, config, reader):
    keys = set(config) if isinstance(config, dict) else set()
    if not {"name", "layers", "input_layers", "output_layers"} <= keys <= FUNCTIONAL_KEYS:
        reader.fail(f"the Functional configuration is malformed: it has the keys "
                    f"{sorted(keys)}; expected {sorted(FUNCTIONAL_KEYS)}.")
    name, trainable = config["name"], config.get("trainable", True)
    if not isinstance(name, str) or not name or not isinstance(trainable, bool):
        reader.fail(f"the Functional configuration has an invalid name {name!r:.100} or "
                    f"trainable flag {trainable!r:.20}.")
    if not isinstance(config["layers"], list):
        reader.fail("the Functional configuration's 'layers' is not a list.")
    layers = {}
    for entry in config["layers"]:
        layer = _plan_graph_layer(entry, reader)
        if layer.name in layers:
            reader.fail(f"two layers of the Functional configuration {name!r} are named "
                        f"{layer.name!r}.")
        layers[layer.name] = layer
    inputs = _plan_structure(config["input_layers"], reader, "input_layers")
    outputs = _plan_structure(config["output_layers"], reader, "output_layers")
    for ref in _flatten_refs(inputs):
        if ref.layer not in layers or not layers[ref.layer].is_input:
            reader.fail(f"the model input {ref.layer!r:.100} is not an InputLayer of the "
                        "configuration.")
    return _FunctionalPlan(cls, name, trainable, list(layers.values()), inputs, outputs,
                           _replay_order(layers, _flatten_refs(outputs), reader))


def _plan_graph_layer(entry, reader) -> _GraphLayer:
    keys = {"class_name", "config", "name", "inbound_nodes"}
    if not isinstance(entry, dict) or not keys <= set(entry) <= keys | {"build_config"}:
        reader.fail(f"a layer of the Functional configuration is malformed: expected the keys "
                    f"{sorted(keys)}. Received: {entry!r:.200}")
    name, nodes = entry["name"], entry["inbound_nodes"]
    if not isinstance(name, str) or not name or "/" in name:
        reader.fail(f"a layer of the Functional configuration has an invalid name "
                    f"{name!r:.100}.")
    if not isinstance(nodes, list):
        reader.fail(f"the inbound_nodes of layer {name!r} are not a list.")
    layer_plan = _plan({k: v for k, v in entry.items() if k not in ("name", "inbound_nodes")},
                       reader)
    is_input = isinstance(layer_plan, _ObjectPlan) and issubclass(layer_plan.cls, InputLayer)
    if is_input and nodes:
        reader.fail(f"the input layer {name!r} has inbound nodes; an input has none.")
    layer = _GraphLayer(name, layer_plan, is_input)
    for node in nodes:
        if (not isinstance(node, dict) or set(node) != {"args", "kwargs"}
                or not isinstance(node["args"], list) or not isinstance(node["kwargs"], dict)):
            reader.fail(f"an inbound node of layer {name!r} is malformed: expected "
                        f"{{'args': [...], 'kwargs': {{...}}}}. Received: {node!r:.200}")
        layer.nodes.append((_plan_argument(node["args"], reader),
                            _plan_argument(node["kwargs"], reader)))
    return layer


def _plan_argument(value, reader):
    """A node's argument with tensor references as _Refs and tuples restored."""
    if isinstance(value, list):
        return [_plan_argument(v, reader) for v in value]
    if isinstance(value, dict):
        if value.get("class_name") == TENSOR:
            return _plan_tensor(value, reader)
        if value.get("class_name") == TUPLE:
            if set(value) != {"class_name", "config"} or not isinstance(
                    value["config"], dict) or set(value["config"]) != {"value"} or \
                    not isinstance(value["config"]["value"], list):
                reader.fail(f"a tuple argument is malformed. Received: {value!r:.200}")
            return tuple(_plan_argument(v, reader) for v in value["config"]["value"])
        if value.get("class_name") == SLICE:
            return _plan_slice(value, reader)
        if value.get("class_name") == ELLIPSIS:
            if value != {"class_name": ELLIPSIS, "config": {}}:
                reader.fail(f"an ellipsis argument is malformed. Received: {value!r:.200}")
            return Ellipsis
        if constants.is_array_config(value):
            try:
                return constants.array_from_config(value)
            except ValueError as error:
                reader.fail(f"a constant argument is invalid: {error}")
        return {k: _plan_argument(v, reader) for k, v in value.items()}
    return value


def _plan_slice(value, reader) -> slice:
    config = value.get("config")
    if (set(value) != {"class_name", "config"} or not isinstance(config, dict)
            or set(config) != {"start", "stop", "step"} or not all(
                v is None or isinstance(v, int) and not isinstance(v, bool)
                for v in config.values())):
        reader.fail(f"a slice argument is malformed: expected {{'class_name': '{SLICE}', "
                    "'config': {'start', 'stop', 'step'}} of integers or null. "
                    f"Received: {value!r:.200}")
    return slice(config["start"], config["stop"], config["step"])


def _plan_tensor(value, reader) -> _Ref:
    config = value.get("config")
    if (set(value) != {"class_name", "config"} or not isinstance(config, dict)
            or set(config) != {"shape", "dtype", "keras_history"}
            or not isinstance(config["shape"], list) or not isinstance(config["dtype"], str)):
        reader.fail(f"a symbolic tensor is malformed: expected {{'class_name': '{TENSOR}', "
                    "'config': {'shape', 'dtype', 'keras_history'}}. "
                    f"Received: {value!r:.200}")
    ref = _plan_history(config["keras_history"], reader)
    ref.shape, ref.dtype = config["shape"], config["dtype"]
    return ref


def _is_history(value) -> bool:
    return (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                    for i in value[1:]))


def _plan_history(value, reader) -> _Ref:
    if not _is_history(value):
        reader.fail(f"a tensor reference is malformed: expected [layer_name, node_index, "
                    f"tensor_index]. Received: {value!r:.100}")
    return _Ref(*value)


def _plan_structure(value, reader, what):
    """input_layers / output_layers: one reference, or a list or dict of them."""
    if _is_history(value):
        return _plan_history(value, reader)
    if isinstance(value, dict) and value:
        return {k: _plan_history(v, reader) for k, v in value.items()}
    if isinstance(value, list) and value:
        return [_plan_history(v, reader) for v in value]
    reader.fail(f"the model's {what} are malformed: expected [layer_name, node_index, "
                f"tensor_index], or a list or dict of them. Received: {value!r:.200}")


def _flatten_refs(tree) -> list:
    if isinstance(tree, _Ref):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree
    return [ref for item in items if isinstance(item, (_Ref, list, tuple, dict))
            for ref in _flatten_refs(item)]


def _replay_order(layers, outputs, reader) -> list:
    """The nodes in an order where every node comes after the nodes it reads and after its
    layer's earlier calls (Kahn's algorithm: linear, and it finds cycles)."""
    def check(ref, where):
        layer = layers.get(ref.layer)
        calls = 0 if layer is None else 1 if layer.is_input else len(layer.nodes)
        if ref.node >= calls:
            reader.fail(f"{where} reads call {ref.node} of layer {ref.layer!r:.100}, which the "
                        "configuration does not have.")
        return None if layer.is_input else (ref.layer, ref.node)

    needs = {}
    for layer in layers.values():
        for k, node in enumerate(layer.nodes):
            needs[(layer.name, k)] = {check(ref, f"call {k} of layer {layer.name!r}")
                                      for ref in _flatten_refs(list(node))} - {None}
            if k:
                needs[(layer.name, k)].add((layer.name, k - 1))
    for ref in outputs:
        check(ref, "a model output")
    order, left = calls_in_order(needs)
    if left:
        stuck = sorted({name for name, _ in left})
        reader.fail(f"the graph's nodes cannot be ordered (a cycle through the layers "
                    f"{stuck[:5]}).")
    return order


# -- phase 2: building -----------------------------------------------------------------------------
def _build(item, reader):
    """The layer or model a plan describes (only allowlisted classes are created)."""
    if isinstance(item, _SequentialPlan):
        return _build_sequential(item, reader)
    if isinstance(item, _FunctionalPlan):
        return _build_functional(item, reader)
    return _build_object(item, reader)


def _build_object(item, reader):
    try:
        obj = item.cls.from_config(dict(item.config))
    except (TypeError, ValueError) as error:
        problem = reader.error(f"the layer {item.class_name} has an invalid configuration: "
                               f"{error}")
        # kilnet's own layers say all there is to say; a user's class keeps its traceback
        raise problem from (None if item.cls in _builtin_types().values() else error)
    except Exception as error:  # a registered class's own from_config failed otherwise
        raise reader.error(f"{item.class_name}.from_config failed: "
                           f"{type(error).__name__}: {error}") from error
    if not isinstance(obj, Layer):
        reader.fail(f"{item.class_name}.from_config returned {type(obj).__name__}, not a "
                    "kilnet layer.")
    if item.build_config is not None:
        try:
            obj.build_from_config(dict(item.build_config))
        except Exception as error:  # the class's own method: its traceback is kept
            raise reader.error(f"{item.class_name}.build_from_config failed: "
                               f"{type(error).__name__}: {error}") from error
    return obj


def _build_sequential(item, reader):
    layers = [_build(p, reader) for p in item.layers]
    try:
        if item.input_shape is not None and (
                not layers or layers[0].declared_input_shape is None):
            layers = [InputLayer(shape=item.input_shape, batch_size=item.batch_size,
                                 dtype=item.input_dtype)] + layers
        model = item.cls(layers, name=item.name)
        if item.input_shape is not None and tuple(model.input_layer.shape) != \
                item.input_shape:
            raise ValueError(f"input shape {list(item.input_shape)} disagrees with the first "
                             f"layer's {model.input_layer.shape}")
    except (TypeError, ValueError) as error:
        raise reader.error(f"the model configuration is invalid: {error}") from None
    return _check_activation_sizes(model, reader)


def _build_functional(item, reader):
    made, produced = {}, {}
    for entry in item.layers:
        layer = _build(entry.plan, reader)
        if not layer.name_is_fixed:
            layer.name = entry.name
        if layer.name != entry.name:
            reader.fail(f"the layer listed as {entry.name!r} is named {layer.name!r} by its "
                        "own configuration.")
        if entry.is_input:
            produced[(entry.name, 0)] = [layer.output_tensor]
        made[entry.name] = layer
    nodes = {entry.name: entry.nodes for entry in item.layers}
    for name, k in item.order:
        args, kwargs = nodes[name][k]
        args = _substitute(args, produced, reader)
        kwargs = _substitute(kwargs, produced, reader)
        try:
            out = made[name](*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise reader.error(f"calling layer {name!r} on its inputs failed: "
                               f"{error}") from None
        produced[(name, k)] = tensors_in(out)
    inputs = _substitute(item.inputs, produced, reader)
    outputs = _substitute(item.outputs, produced, reader)
    try:
        model = item.cls(inputs=inputs, outputs=outputs, name=item.name,
                         trainable=item.trainable)
    except (TypeError, ValueError) as error:
        raise reader.error(f"the Functional configuration {item.name!r} is invalid: "
                           f"{error}") from None
    return _check_activation_sizes(model, reader)


def _check_activation_sizes(model, reader):
    """Refuse a model whose graph has a layer output of more than MAX_ACTIVATION_VALUES values
    per sample (axes of unknown length do not count), before anything runs. A Sequential
    without an input shape has no graph yet: its shapes are checked when data builds it."""
    graph = getattr(model, "graph", None)
    for node in (graph.run_nodes if graph is not None else ()):
        for tensor in node.outputs:
            values = math.prod(d for d in tensor.shape[1:] if d is not None)
            if values > MAX_ACTIVATION_VALUES:
                reader.fail(f"layer {node.layer.name!r:.80} would make outputs of shape "
                            f"{tensor.shape} ({values:,} values per sample), more than the "
                            f"{MAX_ACTIVATION_VALUES:,} kilnet accepts from a file.")
    return model


def _substitute(tree, produced, reader):
    if isinstance(tree, _Ref):
        tensors = produced[(tree.layer, tree.node)]
        if tree.tensor >= len(tensors):
            reader.fail(f"it reads output {tree.tensor} of layer {tree.layer!r}, which makes "
                        f"{len(tensors)}.")
        tensor = tensors[tree.tensor]
        if tree.shape is not None and (tree.shape != list(tensor.shape)
                                       or not _same_dtype(tree.dtype, tensor)):
            reader.fail(f"the configuration says layer {tree.layer!r} makes a tensor of shape "
                        f"{tree.shape} and dtype {tree.dtype!r:.20}; the rebuilt layer makes "
                        f"{list(tensor.shape)} {tensor.dtype}.")
        return tensor
    if isinstance(tree, list):
        return [_substitute(v, produced, reader) for v in tree]
    if isinstance(tree, tuple):
        return tuple(_substitute(v, produced, reader) for v in tree)
    if isinstance(tree, dict):
        return {k: _substitute(v, produced, reader) for k, v in tree.items()}
    return tree


def _same_dtype(in_file, tensor) -> bool:
    """Whether a tensor's dtype in a file is the rebuilt layer's (`tensor`'s): the same, or
    int64 where kilnet computes int32 (Keras with TensorFlow writes its lookups' and
    TextVectorization's ids as int64; JAX's, and so kilnet's, are int32), or float32 for a
    string layer's one-hot / multi-hot / count encoding (Keras's symbolic dtype, its float
    policy, where the values it computes are integers, as kilnet's)."""
    rebuilt = tensor.dtype
    return in_file == rebuilt or (in_file == "int64" and rebuilt == "int32") or (
        in_file == "float32" and rebuilt == "int32"
        and getattr(tensor.node.layer, "runs_on_strings", False))


_TOO_DEEP = "the configuration's graph is chained or nested too deeply to rebuild."


# -- entry points --------------------------------------------------------------------------------
def deserialize(spec, custom_objects=None, *, path="the configuration", what="layer",
                keys=SPEC_KEYS):
    """The layer or model that `serialize` described, made only from allowlisted classes.

    The whole configuration is checked first (bounds, class names, graph references), then the
    objects are created, so a configuration naming an unknown class creates nothing.

    Args:
        spec: {"class_name", "config"} as `serialize` returns it.
        custom_objects: {"Name": cls} for classes not registered with
            kilnet.saving.register_serializable.
        path: what to name in errors (a file, "the JSON string", ...).
        what: what `spec` describes, for errors ("layer" or "model").
        keys: the keys `spec` may have.

    Returns:
        The layer or model (unbuilt: it has no weights yet).

    Raises:
        ModelFileError: the configuration is malformed or names a class that is not allowed.

    Example:
        >>> import kilnet
        >>> from kilnet.models import _config
        >>> layer = _config.deserialize({"class_name": "Dense", "config": {"units": 2}})
        >>> type(layer).__name__, layer.units
        ('Dense', 2)
        >>> spec = {"class_name": "os.system", "config": {}}
        >>> _config.deserialize(spec)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load ...: it names the layer type 'os.system', ...
    """
    custom = dict(_custom_objects.get() or {}, **(custom_objects or {}))
    reader = _Reader(str(path), custom)
    check_bounds(spec, reader.path)
    token = _custom_objects.set(custom)
    try:
        return _build(_plan(spec, reader, keys, what), reader)
    except RecursionError:
        raise reader.error(_TOO_DEEP) from None
    finally:
        _custom_objects.reset(token)


def model_from_config(cls, config, custom_objects=None, path="the configuration"):
    """`Model.from_config`: a functional model of class `cls` from its graph, a Sequential from
    its layers, else a subclassed model from its own arguments (`cls(**config)`, as Keras)."""
    custom = dict(_custom_objects.get() or {}, **(custom_objects or {}))
    reader = _Reader(str(path), custom)
    check_bounds(config, reader.path)
    if issubclass(cls, Sequential) or cls is Model or (
            _is_functional_config(config) and functional_like_constructor(cls)):
        token = _custom_objects.set(custom)
        try:
            planned = (_plan_sequential(cls, config, reader) if issubclass(cls, Sequential)
                       else _plan_functional(cls, config, reader))
            return _build(planned, reader)
        except RecursionError:
            raise reader.error(_TOO_DEEP) from None
        finally:
            _custom_objects.reset(token)
    return cls(**config)


def build_from_config(model, build_config, path="the configuration"):
    """Build a subclassed model for the input shape its configuration recorded."""
    if build_config is None or model.is_functional:
        return   # a functional model has its graph (and shapes) from its construction
    shape = shape_from_json(build_config.get("input_shape") if isinstance(build_config, dict)
                            else None)
    if shape is None or set(build_config) != {"input_shape"}:
        raise ModelFileError(path, f"the build configuration {build_config!r:.100} is "
                                   "malformed: expected {'input_shape': [...]}.")
    model.build(shape, seed=0)


def shape_from_json(value):
    """The inverse of shape_to_json, or None if `value` is not a valid input shape."""
    if _is_shape_json(value):
        return tuple(value)
    if isinstance(value, list) and value and all(_is_shape_json(v) for v in value):
        return [tuple(v) for v in value]
    if isinstance(value, dict) and value and all(_is_shape_json(v) for v in value.values()):
        return {k: tuple(v) for k, v in value.items()}
    return None


def parse_json(text, path):
    """A JSON document read strictly: duplicate keys and runaway nesting are errors."""
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(f"Expected a JSON string. Received: {type(text).__name__}")

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate key in {keys[:5]}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise ModelFileError(path, "the JSON is nested too deeply.") from None
    except ValueError as error:
        raise ModelFileError(path, f"it is not valid JSON ({error}).") from None


def model_from_json(json_string, custom_objects=None):
    """A model from `model.to_json()`: the same architecture, with new weights.

    Only kilnet's layers and models, classes registered with
    `kilnet.saving.register_serializable`, and `custom_objects` may be named.

    Args:
        json_string: what `model.to_json()` returned.
        custom_objects: {"Name": cls} for classes that are not registered.

    Returns:
        The model: unbuilt for a functional or Sequential model (its weights are made by
        build() or the first fit), built with fresh weights for a subclassed model that was
        built when it was converted.

    Raises:
        ModelFileError: the JSON is malformed or names a class that is not allowed.

    Example:
        >>> import kilnet
        >>> inputs = kilnet.Input(shape=(4,), name="x")
        >>> model = kilnet.Model(inputs, kilnet.layers.Dense(2, name="out")(inputs))
        >>> copy = kilnet.models.model_from_json(model.to_json())
        >>> [layer.name for layer in copy.layers], copy.output_shape
        (['x', 'out'], (None, 2))
    """
    path = "the JSON string"
    spec = parse_json(json_string, path)
    model = deserialize(spec, custom_objects, path=path, what="model",
                        keys=SPEC_KEYS)
    if not isinstance(model, Model):
        raise ModelFileError(path, f"it describes a {type(model).__name__}, not a model.")
    build_from_config(model, spec.get("build_config"), path)
    return model


# -- cloning ---------------------------------------------------------------------------------------
def clone_model(model, input_tensors=None, clone_function=None):
    """A new model with the same architecture and new (unbuilt) weights, as `keras.models.
    clone_model`: every layer is remade from its configuration and the graph is called again.

    Args:
        model: a Sequential, functional or subclassed model (a subclassed one is remade with
            `type(model).from_config(model.get_config())`).
        input_tensors: symbolic inputs (from kilnet.Input) to build the clone on, in the
            structure of the model's inputs (or as a flat list); default: new ones alike.
        clone_function: `f(layer) -> new layer` for every layer but the inputs (default: the
            layer's class from its config; nested models are cloned in turn). Return the layer
            itself to share it (and its weights) with the original.

    Returns:
        The new model (weights made by build() or the first fit, so they differ from the
        original's until set with set_weights), compiled as the original if it was, with a
        new optimizer of the same settings.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> twin = kilnet.models.clone_model(model)
        >>> twin.build(seed=1)
        >>> [l.name for l in twin.layers] == [l.name for l in model.layers]
        True
        >>> bool((twin.get_weights()[0] == model.get_weights()[0]).all())
        False
    """
    clone_function = clone_function or _clone_layer
    if isinstance(model, Sequential):
        clone = _clone_sequential(model, input_tensors, clone_function)
    elif isinstance(model, Model) and model.is_functional:
        clone = _clone_functional(model, input_tensors, clone_function)
    elif isinstance(model, Model):
        clone = type(model).from_config(model.get_config())
    else:
        raise TypeError(f"clone_model takes a kilnet model. Received: {type(model).__name__}")
    compile_config = model.get_compile_config()
    if compile_config:   # compiled as the original, a new optimizer (Keras)
        clone.compile_from_config(compile_config)
    return clone


def _clone_layer(layer):
    if isinstance(layer, Model):
        return clone_model(layer)
    return type(layer).from_config(layer.get_config())


def _cloned(layer, clone_function):
    new = clone_function(layer)
    if not isinstance(new, Layer):
        raise TypeError(f"clone_function must return a kilnet layer. Received: {new!r:.100} "
                        f"for layer {layer.name!r}")
    return new


def _clone_sequential(model, input_tensors, clone_function):
    layers = [_cloned(layer, clone_function) for layer in model.layers]
    if input_tensors is not None:
        first = flatten(input_tensors)
        if len(first) != 1 or not isinstance(first[0], KerasTensor):
            raise ValueError("A Sequential takes one input tensor (from kilnet.Input). "
                             f"Received: {input_tensors!r:.100}")
        layers = [first[0]] + layers
    elif model.input_layer is not None:
        old = model.input_layer
        layers = [InputLayer(shape=old.shape, dtype=old.dtype, name=old.name)] + layers
    return type(model)(layers, name=model.name)


def _clone_functional(model, input_tensors, clone_function):
    old_inputs = model.inputs
    if input_tensors is None:
        new_inputs = [InputLayer(shape=t.sample_shape, dtype=t.dtype,
                                 name=t.node.layer.name).output_tensor for t in old_inputs]
    else:
        new_inputs = flatten(input_tensors)
        if len(new_inputs) != len(old_inputs) or not all(
                isinstance(t, KerasTensor) for t in new_inputs):
            raise ValueError(f"input_tensors must be {len(old_inputs)} symbolic tensors (from "
                             f"kilnet.Input). Received: {input_tensors!r:.200}")
    values = {old.uid: new for old, new in zip(old_inputs, new_inputs)}
    clones = {}
    for node in model.graph.run_nodes:
        layer = node.layer
        if id(layer) not in clones:
            clones[id(layer)] = _cloned(layer, clone_function)
        out = clones[id(layer)](*substitute(node.args, values),
                                **substitute(node.kwargs, values))
        for old, new in zip(node.outputs, tensors_in(out)):
            values[old.uid] = new
    return type(model)(substitute(model.input, values), substitute(model.output, values),
                       name=model.name)
