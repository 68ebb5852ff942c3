"""Keras 2 functional graphs (list-form nodes, no shapes) wired into kilnet's functional API.

Why a module of its own: Keras 2 (tf.keras 2.x, the tf_keras package) records each call of a
layer in a functional model as a list with one entry per tensor of the call's first argument,
`[[inbound layer, node index, tensor index, kwargs], ...]`, and records no tensor shapes.
kilnet's graph reader (kilnet.models._config) reads Keras 3's form, whose tensors carry shapes.
Rather than computing shapes by hand, the graph is rebuilt directly: every layer entry is first
mapped through the closed table (_config.layer_spec, which refuses before anything is made),
then the layers are created and called on kilnet's symbolic tensors in an order where each
call's inputs exist (Kahn's algorithm), so kilnet's own layers infer every shape from the
InputLayers' shapes, as Keras 2's loader does.

Node indices follow Keras 2: they count a layer's calls within this model, and for a nested
model built on an Input (Functional, or Sequential with an input shape) they start at 1, its
first node being the one that links its own input to its output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax

from kilnet._toposort import calls_in_order
from kilnet.keras_files import _config
from kilnet.models import Model
from kilnet.models import _config as kilnet_config

MODEL_CLASSES = ("Functional", "Model")
CONSTANT = "_CONSTANT_VALUE"   # Keras 2's marker for a constant written into a node


def has_list_nodes(entry) -> bool:
    """Whether a model config entry is a Keras 2 functional model (list-form nodes).

    Example:
        >>> from kilnet.keras_files import _keras2_graph
        >>> entry = {"class_name": "Functional", "config": {"layers": [
        ...     {"name": "d", "inbound_nodes": [[["x", 0, 0, {}]]]}]}}
        >>> _keras2_graph.has_list_nodes(entry)
        True
    """
    config = entry.get("config") if isinstance(entry, dict) else None
    if entry.get("class_name") not in MODEL_CLASSES or not isinstance(config, dict) \
            or not isinstance(config.get("layers"), list):
        return False
    return any(isinstance(layer, dict) and isinstance(layer.get("inbound_nodes"), list)
               and any(isinstance(node, list) for node in layer["inbound_nodes"])
               for layer in config["layers"])


@dataclass(frozen=True)
class _Ref:
    """Output `tensor` of call `node` (counted from 0 in this model) of layer `layer`."""

    layer: str
    node: int
    tensor: int


@dataclass
class _Layer:
    name: str
    spec: object            # kilnet's layer spec, or a _Graph for a nested Keras 2 model
    is_input: bool
    nodes: list = field(default_factory=list)   # [(first argument, kwargs)] with _Refs


@dataclass
class _Graph:
    name: str
    trainable: bool
    layers: list
    inputs: object
    outputs: object


def build_model(entry, path, custom_objects=None) -> Model:
    """The kilnet functional model of a Keras 2 functional config entry (after
    kilnet.keras_files._legacy has rewritten Keras 2's spellings), every class mapped through
    the closed table before any layer is made.

    Example:
        >>> from kilnet.keras_files import _keras2_graph
        >>> entry = {"class_name": "Functional", "config": {
        ...     "name": "m", "input_layers": [["x", 0, 0]], "output_layers": [["d", 0, 0]],
        ...     "layers": [
        ...         {"class_name": "InputLayer", "name": "x", "inbound_nodes": [],
        ...          "config": {"batch_shape": [None, 3], "name": "x"}},
        ...         {"class_name": "Dense", "name": "d", "config": {"units": 2, "name": "d"},
        ...          "inbound_nodes": [[["x", 0, 0, {}]]]}]}}
        >>> _keras2_graph.build_model(entry, "m.h5").output_shape
        (None, 2)
    """
    reader = _config.Reader(path, custom_objects)
    graph = _plan(entry, reader)
    return _build(graph, reader, custom_objects)


# -- phase 1: plan (nothing is created) -------------------------------------------------------
def _plan(entry, reader) -> _Graph:
    config = entry.get("config")
    where = f"model {config.get('name')!r:.80}" if isinstance(config, dict) else "the model"
    if not isinstance(config, dict):
        reader.fail(where, "its config is not a dict.")
    _config.scan([{k: v for k, v in entry.items() if k != "config"},
                  {k: v for k, v in config.items() if k != "layers"}], reader, where)
    unknown = sorted(set(config) - {"name", "trainable", "layers", "input_layers",
                                    "output_layers", "dtype"})
    if unknown:
        reader.fail(where, f"its config has keys kilnet does not know: {unknown[:5]}.")
    name, trainable = config.get("name"), config.get("trainable", True)
    if not isinstance(name, str) or not name or not isinstance(trainable, bool):
        reader.fail(where, f"its name {name!r:.80} or trainable flag {trainable!r:.20} is "
                           "invalid.")
    layers = {}
    for layer_entry in config["layers"]:
        layer = _plan_layer(layer_entry, reader, where)
        if layer.name in layers:
            reader.fail(where, f"two of its layers are named {layer.name!r}.")
        layers[layer.name] = layer
    inputs = _structure(config.get("input_layers"), reader, where, "input_layers")
    outputs = _structure(config.get("output_layers"), reader, where, "output_layers")
    base = _bases(layers, [inputs, outputs] + [n for layer in layers.values()
                                               for n in layer.nodes], reader, where)
    for layer in layers.values():
        layer.nodes = [_shift(node, base) for node in layer.nodes]
    inputs, outputs = _shift(inputs, base), _shift(outputs, base)
    for layer in layers.values():
        for node in layer.nodes:
            _check_refs(node, layers, reader, f"{where}, layer {layer.name!r:.80}")
    _check_refs([inputs, outputs], layers, reader, f"{where}, its inputs or outputs")
    for ref in _refs(inputs):
        if not layers[ref.layer].is_input:
            reader.fail(where, f"its input {ref.layer!r:.80} is not an InputLayer.")
    return _Graph(name, trainable, list(layers.values()), inputs, outputs)


def _plan_layer(entry, reader, where) -> _Layer:
    if not isinstance(entry, dict) or not isinstance(entry.get("inbound_nodes"), list) \
            or not isinstance(entry.get("config"), dict):
        reader.fail(where, f"a layer entry is malformed: {entry!r:.200}")
    name = entry.get("name", entry["config"].get("name"))
    if not isinstance(name, str) or not name or "/" in name:
        reader.fail(where, f"a layer has an invalid name {name!r:.100}.")
    if has_list_nodes(entry):
        spec = _plan(entry, reader)
    else:
        spec = _config.layer_spec({k: v for k, v in entry.items() if k != "inbound_nodes"},
                                  reader)
    is_input = entry.get("class_name") == "InputLayer"
    if is_input and entry["inbound_nodes"]:
        reader.fail(where, f"the input layer {name!r} has inbound nodes; an input has none.")
    layer = _Layer(name, spec, is_input)
    layer.nodes = [_plan_node(node, reader, f"call {k} of layer {name!r:.80}")
                   for k, node in enumerate(entry["inbound_nodes"])]
    return layer


def _plan_node(node, reader, where):
    """(first argument, kwargs) of one call, tensors as _Refs (node indices as written)."""
    items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    if any(isinstance(v, list) and v and v[0] == CONSTANT for v in items):
        _entry_ref([CONSTANT], reader, where)
    if isinstance(node, dict) and node and all(_is_entry(v) for v in node.values()):
        entries = list(node.values())
        first = {k: _entry_ref(v, reader, where) for k, v in node.items()}
    elif isinstance(node, list) and node and all(_is_entry(v) for v in node):
        entries = node
        refs = [_entry_ref(v, reader, where) for v in node]
        first = refs[0] if len(refs) == 1 else refs   # Keras 2 unnests a single tensor
    else:
        reader.fail(where, "it is not in Keras 2's node form [[layer, node, tensor, kwargs], "
                           f"...]. Received: {node!r:.200}")
    kwargs = entries[0][3] if len(entries[0]) == 4 else {}
    if not isinstance(kwargs, dict):
        reader.fail(where, f"its call arguments are not a dict: {kwargs!r:.100}")
    if kwargs.get("training") not in (None, True, False):
        reader.fail(where, f"its training flag is not a boolean: {kwargs['training']!r:.50}")
    return first, {k: _kwarg(v) for k, v in kwargs.items()}


def _is_entry(value) -> bool:
    return (isinstance(value, list) and len(value) in (3, 4) and isinstance(value[0], str)
            and all(isinstance(i, int) and not isinstance(i, bool) for i in value[1:3]))


def _entry_ref(value, reader, where) -> _Ref:
    if value[0] == CONSTANT:
        reader.fail(where, "its input is a constant written into the config (Keras 2's "
                           f"{CONSTANT}), which kilnet does not read; make it an Input or a "
                           "layer's weight.")
    if value[1] < 0 or value[2] < 0:
        reader.fail(where, f"it reads a negative node or tensor index: {value[:3]}.")
    return _Ref(value[0], value[1], value[2])


def _kwarg(value):
    """A call argument: Keras 2 writes a tensor there as [layer, node, tensor]."""
    if _is_entry(value) and len(value) == 3:
        return _Ref(*value)
    if isinstance(value, list):
        return [_kwarg(v) for v in value]
    if isinstance(value, dict):
        return {k: _kwarg(v) for k, v in value.items()}
    return value


def _bases(layers, trees, reader, where) -> dict:
    """{layer name: the node index its first call has in references}: 1 for a nested model
    built on an Input (see the module docstring), told apart by the indices themselves."""
    referenced = {}
    for ref in _refs(trees):
        if ref.layer not in layers:
            reader.fail(where, f"it reads layer {ref.layer!r:.80}, which it does not have.")
        referenced.setdefault(ref.layer, set()).add(ref.node)
    base = {}
    for name, indices in referenced.items():
        layer = layers[name]
        if layer.is_input:
            base[name] = min(indices)   # Keras 2 reads an input's one node whatever the index
            continue
        nested = isinstance(layer.spec, _Graph) or layer.spec.get("class_name") in (
            "Sequential", "Functional")
        base[name] = int(nested and min(indices) >= 1 and max(indices) == len(layer.nodes))
    return base


def _check_refs(tree, layers, reader, where):
    for ref in _refs(tree):
        layer = layers[ref.layer]
        calls = 1 if layer.is_input else len(layer.nodes)
        if not 0 <= ref.node < calls:
            reader.fail(where, f"it reads call {ref.node} of layer {ref.layer!r:.80}, which "
                               "the model does not have.")


def _structure(value, reader, where, what):
    """input_layers / output_layers: [[layer, node, tensor], ...] or a dict of them; one
    tensor as Keras 2 wraps it ([[...]]) becomes that tensor."""
    if isinstance(value, dict) and value and all(_is_entry(v) for v in value.values()):
        return {k: _entry_ref(v, reader, where) for k, v in value.items()}
    if _is_entry(value):
        return _entry_ref(value, reader, where)
    if isinstance(value, list) and value and all(_is_entry(v) for v in value):
        refs = [_entry_ref(v, reader, where) for v in value]
        return refs[0] if len(refs) == 1 else refs
    reader.fail(where, f"its {what} are malformed: expected [[layer, node, tensor], ...]. "
                       f"Received: {value!r:.200}")


def _shift(tree, base):
    if isinstance(tree, _Ref):
        return _Ref(tree.layer, tree.node - base.get(tree.layer, 0), tree.tensor)
    if isinstance(tree, (list, tuple)):
        return type(tree)(_shift(v, base) for v in tree)
    if isinstance(tree, dict):
        return {k: _shift(v, base) for k, v in tree.items()}
    return tree


def _refs(tree) -> list:
    if isinstance(tree, _Ref):
        return [tree]
    items = tree.values() if isinstance(tree, dict) else tree if isinstance(
        tree, (list, tuple)) else ()
    return [ref for item in items for ref in _refs(item)]


# -- phase 2: build -----------------------------------------------------------------------------
def _build(graph, reader, custom_objects) -> Model:
    where = f"model {graph.name!r:.80}"
    made, produced = {}, {}
    for entry in graph.layers:
        layer = _make_layer(entry, reader, custom_objects)
        if not layer.name_is_fixed:
            layer.name = entry.name
        if layer.name != entry.name:
            reader.fail(where, f"the layer listed as {entry.name!r} is named {layer.name!r} by "
                               "its own configuration.")
        if entry.is_input:
            produced[(entry.name, 0)] = [layer.output_tensor]
        made[entry.name] = layer
    entries = {entry.name: entry for entry in graph.layers}
    for name, k in _order(graph, reader, where):
        first, kwargs = entries[name].nodes[k]
        try:
            out = made[name](_tensors(first, produced, reader, where),
                             **_tensors(kwargs, produced, reader, where))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            # the call's arguments come from the file: any refusal of them is the file's fault
            reader.fail(where, f"calling layer {name!r} on its inputs failed: "
                               f"{type(error).__name__}: {error}")
        produced[(name, k)] = jax.tree.leaves(out)
    try:
        return Model(inputs=_tensors(graph.inputs, produced, reader, where),
                     outputs=_tensors(graph.outputs, produced, reader, where),
                     name=graph.name, trainable=graph.trainable)
    except (TypeError, ValueError) as error:
        reader.fail(where, f"its graph is invalid: {error}")


def _make_layer(entry, reader, custom_objects):
    if isinstance(entry.spec, _Graph):
        return _build(entry.spec, reader, custom_objects)
    return kilnet_config.deserialize(entry.spec, custom_objects, path=reader.path,
                                     what="layer")


def _order(graph, reader, where) -> list:
    """The (layer, call) pairs in an order where each call comes after the calls it reads and
    after its layer's earlier calls (Kahn's algorithm: linear, and it finds cycles)."""
    inputs = {e.name for e in graph.layers if e.is_input}
    needs = {}
    for entry in graph.layers:
        for k, node in enumerate(entry.nodes):
            needs[(entry.name, k)] = {(r.layer, r.node) for r in _refs(node)
                                      if r.layer not in inputs}
            if k:
                needs[(entry.name, k)].add((entry.name, k - 1))
    order, left = calls_in_order(needs)
    if left:
        stuck = sorted({name for name, _ in left})
        reader.fail(where, f"its calls cannot be ordered (a cycle through the layers "
                           f"{stuck[:5]}).")
    return order


def _tensors(tree, produced, reader, where):
    """`tree` with each _Ref replaced by the symbolic tensor it names."""
    if isinstance(tree, _Ref):
        tensors = produced[(tree.layer, tree.node)]
        if tree.tensor >= len(tensors):
            reader.fail(where, f"it reads output {tree.tensor} of layer {tree.layer!r:.80}, "
                               f"which makes {len(tensors)}.")
        return tensors[tree.tensor]
    if isinstance(tree, (list, tuple)):
        return type(tree)(_tensors(v, produced, reader, where) for v in tree)
    if isinstance(tree, dict):
        return {k: _tensors(v, produced, reader, where) for k, v in tree.items()}
    return tree
