"""Where each kilnet weight lives in a Keras 3 weights file (`model.weights.h5`).

Why a module of its own: Keras names the groups of its weights file by the attributes its
saving code walks (`layers/<layer name>/vars/<i>`, an RNN's `cell/vars`, a stacked cell's
`cell/cells/<cell>/vars`, a Bidirectional's `forward_layer/...`), not by kilnet's layer paths. This closed table is the one place that knows
the correspondence, for reading and for writing; a layer with sub-layers that is not in it is
refused rather than guessed.

A *slot* is (h5 dataset path, kilnet array name "params/<layer path>/<weight>", Variable). A
layer of yours that overrides Keras's `save_own_variables` / `load_own_variables` has no slots:
its own weights are what those methods write and read in its group's `vars` (a *hooked*
layer, kilnet._saving_hooks).
"""

from __future__ import annotations

import dataclasses
import re

from kilnet._metric_held_layers import layer_base_attributes, metric_attributes
from kilnet._metric_held_layers import walk_attribute
from kilnet.layers import GRU, LSTM, RNN, Bidirectional, InputLayer, MultiHeadAttention, SimpleRNN
from kilnet.layers import GroupQueryAttention
from kilnet.layers import Pipeline, SpectralNormalization, StackedRNNCells, TimeDistributed
from kilnet.keras_files._held_optimizers import placed_optimizers
from kilnet.layers import LAYER_TYPES, Layer
from kilnet.metrics import Metric
from kilnet.models import Model

RNN_TYPES = (SimpleRNN, LSTM, GRU)   # Keras keeps their weights in the `cell` sub-object
# MultiHeadAttention's projections: kilnet's sub-layer name -> Keras's attribute
ATTENTION_PARTS = {"query": "query_dense", "key": "key_dense", "value": "value_dense",
                   "attention_output": "output_dense", "gate": "gate_dense"}
# Keras's class names where they differ from the exported names kilnet's classes take: a
# weights file names a layer's group by its class
KERAS_CLASS_NAMES = {"GroupQueryAttention": "GroupedQueryAttention"}


class LayoutError(ValueError):
    """A layer whose weights have no known place in a Keras weights file."""


@dataclasses.dataclass
class Layout:
    """Where a model's state lives in a Keras weights file, in Keras's order.

    slots: (h5 path, kilnet name, Variable) of the weights kilnet writes and reads itself;
    hooked: (vars group, layer) of the layers whose own weights their save_own_variables /
        load_own_variables write and read;
    groups: (group, layer) for every layer reached ("" for the model itself), where
        save_assets / load_assets keep their files (Keras's `assets/<group>/`);
    optimizers: (group, optimizer) for the optimizers those layers hold as attributes, their
        variables in `<group>/vars` (kilnet.keras_files._held_optimizers).
    """
    slots: list = dataclasses.field(default_factory=list)
    hooked: list = dataclasses.field(default_factory=list)
    groups: list = dataclasses.field(default_factory=list)
    optimizers: list = dataclasses.field(default_factory=list)


def model_layout(model) -> Layout:
    """The Layout of a built functional, Sequential or subclassed model; a layer shared by
    several calls appears once.

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _layout
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)),
        ...                            kilnet.layers.Dense(2, name="d")])
        >>> model.build(seed=0)
        >>> layout = _layout.model_layout(model)
        >>> [(h5, name) for h5, name, _ in layout.slots]
        [('layers/dense/vars/0', 'params/d/kernel'), ('layers/dense/vars/1', 'params/d/bias')]
        >>> [group for group, _ in layout.groups]
        ['', 'layers/dense']
    """
    layout, seen = Layout(), set()
    if model.is_functional:
        _functional_slots(model, "", (), layout, seen)
    else:
        _subclassed_slots(model, "", (), layout, seen)
    layout.optimizers = placed_optimizers(layout.groups)
    return layout


def feature_space_layout(space) -> Layout:
    """The Layout of a `kilnet.utils.FeatureSpace`, as Keras's saving walks its Keras twin (a
    layer): the dicts of layers `crossers`, `one_hot_encoders` and `preprocessors`, in that
    (sorted) order, each numbered by class (`preprocessors/normalization/vars/0`).

    Example:
        >>> import kilnet
        >>> from kilnet.keras_files import _layout
        >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
        >>> space.adapt({"x": [1.0, 2.0, 3.0]})
        >>> [h5 for h5, _, _ in _layout.feature_space_layout(space).slots]
        ['preprocessors/normalization/vars/0', 'preprocessors/normalization/vars/1', \
'preprocessors/normalization/vars/2']
    """
    layout, seen = Layout(), set()
    for attribute in ("crossers", "one_hot_encoders", "preprocessors"):
        _value_slots(getattr(space, attribute), f"{attribute}/", (attribute,), {}, layout,
                     seen)
    return layout


def attention_part(layer, part_name: str) -> str:
    """The group of an attention layer's projection in a Keras weights file, named by the
    attribute Keras saves: MultiHeadAttention's public properties (`query_dense`),
    GroupQueryAttention's underscored attributes (`_query_dense`), which have none.

    Example:
        >>> import kilnet
        >>> attention_part(kilnet.layers.MultiHeadAttention(2, 2), "query")
        'query_dense'
        >>> attention_part(kilnet.layers.GroupQueryAttention(2, 2, 1), "query")
        '_query_dense'
    """
    name = ATTENTION_PARTS.get(part_name, part_name)
    return "_" + name if isinstance(layer, GroupQueryAttention) else name


def children(model) -> list:
    """(layer, its h5 name) for a model's layers. Keras names them not by the layers' names but
    by their classes in snake case, numbered in order within the model (`dense`, `dense_1`),
    so that two instances of one architecture share a layout."""
    return numbered(model.layers)


def numbered(layers) -> list:
    """(layer, its h5 name) for a list of layers named as Keras names them (see children)."""
    used, out = {}, []
    for layer in layers:
        base = class_base_name(layer)
        used[base] = used.get(base, -1) + 1
        out.append((layer, base if used[base] == 0 else f"{base}_{used[base]}"))
    return out


def class_base_name(layer) -> str:
    """The name Keras's weights file gives a layer in a list of layers, before its number: its
    Keras class in snake case (a functional model's class is Keras's `Functional`).

    Example:
        >>> import kilnet
        >>> inputs = kilnet.Input((2,))
        >>> class_base_name(kilnet.Model(inputs, kilnet.layers.Dense(1)(inputs)))
        'functional'
    """
    cls = KERAS_CLASS_NAMES.get(type(layer).__name__, type(layer).__name__)
    if isinstance(layer, Model) and cls == "Model":
        cls = "Functional"
    return snake_case(cls)


def snake_case(name: str) -> str:
    """Keras's snake case of a class name (`BatchNormalization` -> `batch_normalization`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _container_slots(model, prefix, path, layout, seen):
    for layer, h5_name in children(model):
        if isinstance(layer, InputLayer) or id(layer) in seen:
            continue
        seen.add(id(layer))
        _layer_slots(layer, f"{prefix}layers/{h5_name}/", path + (layer.name,), layout, seen)


def _functional_slots(model, prefix, path, layout, seen):
    """A functional or Sequential model: its graph's layers under `layers/`, then, for a
    class of yours (`class MyModel(keras.Model)` calling `super().__init__(inputs, outputs)`,
    a Sequential subclass), the layers and metrics its other attributes hold, under their
    attributes' names, as Keras's saving walks `layers` first and then every attribute (a
    graph layer kept in an attribute too keeps its place under `layers/`)."""
    _own_slots(model, prefix, path, layout)
    _container_slots(model, prefix, path, layout, seen)
    if not type(model).__module__.startswith("kilnet."):
        _attribute_slots(model, prefix, path, layout, seen, own=False)


def _layer_slots(layer, prefix, path, layout, seen):
    if isinstance(layer, Model):
        # a model no built model holds (a metric's encoder) is built by nothing else, while
        # Keras has its weights from its construction
        layer.build_if_shapes_known()
        if layer.is_functional:
            _functional_slots(layer, prefix, path, layout, seen)
        else:
            _subclassed_slots(layer, prefix, path, layout, seen)
    elif isinstance(layer, RNN_TYPES):
        _own_slots(layer, prefix + "cell/", path, layout)
    elif isinstance(layer, RNN):
        _layer_slots(layer.cell, prefix + "cell/", path + (layer.cell.name,), layout, seen)
    elif isinstance(layer, StackedRNNCells):
        keys = {id(cell): key for key, cell in layer.keyed_sublayers()}
        for cell, h5_name in numbered(layer.cells):
            _layer_slots(cell, f"{prefix}cells/{h5_name}/", path + (keys[id(cell)],), layout,
                         seen)
    elif isinstance(layer, Bidirectional):
        _layer_slots(layer.forward_layer, prefix + "forward_layer/",
                     path + (layer.forward_layer.name,), layout, seen)
        _layer_slots(layer.backward_layer, prefix + "backward_layer/",
                     path + (layer.backward_layer.name,), layout, seen)
    elif isinstance(layer, TimeDistributed):
        inner = layer.sublayers[0]
        _layer_slots(inner, prefix + "layer/", path + (inner.name,), layout, seen)
    elif isinstance(layer, SpectralNormalization):
        _spectral_slots(layer, prefix, path, layout, seen)
    elif isinstance(layer, MultiHeadAttention):
        _own_slots(layer, prefix, path, layout)   # a subclass's own variables (vars/0, ...)
        for part in layer.sublayers:
            if part.name not in ATTENTION_PARTS:
                raise LayoutError(f"MultiHeadAttention {layer.name!r} has a part named "
                                  f"{part.name!r}, which Keras's layout does not know")
            _own_slots(part, f"{prefix}{attention_part(layer, part.name)}/", path + (part.name,),
                       layout)
    elif isinstance(layer, Pipeline) and not any(inner.weights for inner in layer.sublayers):
        pass   # augmentation steps: no weights, so nothing in the file
    elif layer.sublayers and LAYER_TYPES.get(type(layer).__name__) is not type(layer):
        _attribute_slots(layer, prefix, path, layout, seen)
    elif layer.sublayers:
        raise LayoutError(f"layer {layer.name!r} ({type(layer).__name__}) holds sub-layers "
                          "whose place in a Keras weights file kilnet does not know")
    else:
        _own_slots(layer, prefix, path, layout)


def _attribute_slots(layer, prefix, path, layout, seen, extra=None, own=True):
    """A layer class of yours that holds layers: Keras's saving walks its attributes, so its
    own weights come first (`vars/<i>`), then each attribute holding a layer, under the
    attribute's name, in Keras's order (public names sorted, then private ones); a list,
    tuple or dict of layers numbers them by class (`blocks/dense`, `blocks/dense_1`). A layer
    reached twice keeps its first place. `extra`: attributes of Keras's class that kilnet's
    keeps elsewhere ({"layers": model.layers} for a subclassed model). `own`: whether the
    layer's own weights are still to be placed (a functional model's are already)."""
    if own:
        _own_slots(layer, prefix, path, layout)
    # a Sequential's input layer is none of Keras's saved objects (it has no weights)
    skip = layer_base_attributes() | {"_sublayers", "_input_layer"}
    values = {name: getattr(layer, name) for name in vars(layer) if name not in skip}
    values.update(extra or {})
    # each held layer's arrays are under its key in the layer's trees (two may share a name);
    # of the metrics, only those the layer tracks are walked: compile()'s, kept in kilnet's
    # bookkeeping attributes, are none of Keras's walk
    keys = {id(sub): key for key, sub in layer.keyed_sublayers()}
    keys.update((id(metric), metric.name) for metric in layer.own_metrics)
    _walk_attributes(values, prefix, path, keys, layout, seen)


def _walk_attributes(values, prefix, path, keys, layout, seen):
    """Each of `values` ({attribute: value}) under its attribute's name, in Keras's order:
    public names sorted, then private ones."""
    for attribute in sorted(values, key=lambda name: "~" + name if name[0] == "_" else name):
        _value_slots(values[attribute], f"{prefix}{attribute}/", path, keys, layout, seen)


def _metric_slots(metric, prefix, path, layout, seen):
    """A Metric kept as an attribute (keras.io's KID metric holds an InceptionV3 encoder):
    Keras's saving walks it as it walks a layer of yours, but a metric writes no variables of
    its own (its state is in no weights file), so only the layers it holds have places,
    under their attributes' names (`kid/encoder/layers/...`)."""
    values = metric_attributes(metric)
    # every attribute of a metric is yours: each metric in them is walked
    keys = {id(held): held.name
            for attribute, value in values.items()
            for _, held in walk_attribute(value, (attribute,), set())
            if isinstance(held, Metric)}
    _walk_attributes(values, prefix, path, keys, layout, seen)


def _subclassed_slots(model, prefix, path, layout, seen):
    """A subclassed model, as Keras's saving walks it: a layer of yours whose attributes
    include Keras's `layers` (every layer it tracks, numbered by class), so that a layer
    kept in an attribute sorting before "layers" (`bn`, `blocks`) is saved under that
    attribute and the others under `layers/<class>_<n>` (`layers/dense_2`)."""
    _attribute_slots(model, prefix, path, layout, seen,
                     extra={"layers": [layer for layer in model.layers
                                       if not isinstance(layer, InputLayer)]})


def _value_slots(value, prefix, path, keys, layout, seen):
    if isinstance(value, Layer):
        if id(value) not in seen:
            seen.add(id(value))
            _layer_slots(value, prefix, path + (keys.get(id(value), value.name),), layout,
                         seen)
    elif isinstance(value, Metric):
        if id(value) in keys and id(value) not in seen:
            seen.add(id(value))
            _metric_slots(value, prefix, path + (keys[id(value)],), layout, seen)
    elif isinstance(value, (list, tuple, dict)) and id(value) not in seen:
        seen.add(id(value))   # a container holding itself is walked once
        items = list(value.values()) if isinstance(value, dict) else list(value)
        used = {}
        for item in items:
            if isinstance(item, Layer):
                base = class_base_name(item)
            elif isinstance(item, Metric):   # numbered by class as Keras numbers any saveable
                base = snake_case(type(item).__name__)
            elif isinstance(item, (list, tuple, dict)):
                base = "container"
            else:
                continue
            used[base] = used.get(base, -1) + 1
            name = base if used[base] == 0 else f"{base}_{used[base]}"
            _value_slots(item, f"{prefix}{name}/", path, keys, layout, seen)


def _spectral_slots(layer, prefix, path, layout, seen):
    """Keras's SpectralNormalization tracks the wrapped kernel as its own weight too, so the
    file holds it twice: `vars/0` (with `vars/1` its vector_u) and in the wrapped layer's
    `layer/vars`. Both slots are the one kilnet Variable; reading, the wrapped layer's copy
    comes last and wins, as in Keras."""
    inner = layer.layer
    inner_path = path + (inner.name,)
    kernel = layer.kernel
    layout.slots.append((f"{prefix}vars/0", f"params/{'/'.join(inner_path + (kernel.name,))}",
                         kernel))
    layout.slots.append((f"{prefix}vars/1", f"state/{'/'.join(path + ('vector_u',))}",
                  layer.vector_u))
    _layer_slots(inner, prefix + "layer/", inner_path, layout, seen)


def _own_slots(layer, prefix, path, layout):
    layout.groups.append((prefix.rstrip("/"), layer))
    if layer.keeps_own_variables:
        layout.hooked.append((prefix + "vars", layer))
        return
    own = [(p, kind, v) for p, kind, v in layer.variable_paths(path) if len(p) == len(path) + 1]
    if layer.saved_weight_order:   # a quantized layer: Keras's save_own_variables order
        own.sort(key=lambda entry: layer.saved_weight_order.index(entry[2].name))
    for index, (p, kind, variable) in enumerate(own):
        layout.slots.append((f"{prefix}vars/{index}", f"{kind}/{'/'.join(p)}", variable))



def leaf_names(layer, prefix, path) -> list:
    """(h5 path, kilnet name) of an unbuilt leaf layer's weights, from its declared weight
    names (params then state, as Keras creates them), for checking before building. `prefix`
    is the layer's h5 group ("layers/dense/"), `path` its kilnet layer path."""
    if isinstance(layer, RNN_TYPES):
        prefix += "cell/"
    names = [("params", n) for n in layer.param_names] + [("state", n)
                                                          for n in layer.state_names]
    if layer.saved_weight_order:   # a quantized layer: Keras's save_own_variables order
        names.sort(key=lambda entry: layer.saved_weight_order.index(entry[1]))
    return [(f"{prefix}vars/{i}", f"{kind}/{'/'.join(path + (name,))}")
            for i, (kind, name) in enumerate(names)]

