"""model.summary(): the model's layers as a table, as Keras 3 lays it out.

One row per layer: its name and type, its output shape and its parameter count, and, for a
functional model that is more than a chain (several inputs, merges, branches, shared
layers), the "Connected to" column: the tensors each of its calls in this model takes, as
`layer_name[node_index][tensor_index]`. Functional models list their InputLayers (as Keras);
Sequential models do not. A nested model is one row with its own parameter count
(expand_nested=True lists its layers under it, indented). Below the table: the total,
trainable and non-trainable parameter counts with their size, then the compile report when
the model has been compiled.

A model whose input shape is known (a functional model, a Sequential started with
kilnet.Input or input_shape=...) is built first, so shapes and counts show before compile();
that makes weights only for the layers that have none. A subclassed model shows "?" for the
shapes it cannot know.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

# Keras's defaults: line lengths and column positions (fractions of the line).
_CHAIN_LENGTH, _CHAIN_POSITIONS = 88, (0.45, 0.80, 1.0)
_GRAPH_LENGTH, _GRAPH_POSITIONS = 108, (0.30, 0.56, 0.74, 1.0)
_TRAINABLE_EXTRA = 12  # characters added for the Trainable column
_NESTED_INDENT = "   "


def model_summary(model, line_length=None, positions=None, print_fn=None,
                  expand_nested=False, show_trainable=False, layer_range=None) -> str:
    """The summary of `model` as text (what `model.summary()` prints).

    Args:
        model: a kilnet Model (functional, Sequential or subclassed).
        line_length: the width of the table in characters (default: 88, or 108 with the
            "Connected to" column, plus 12 with show_trainable).
        positions: where each column ends: fractions of line_length (all <= 1) or absolute
            character positions, one per column.
        print_fn: if given, called with the text (which is returned as well).
        expand_nested: list the layers of nested models (and of layers holding sub-layers)
            under their row, indented.
        show_trainable: add a "Trainable" column: Y, N, or - for a layer without weights.
        layer_range: two regular expressions (first and last layer, both included, matched
            against the names of the model's layers with re.match) to show part of the model.

    Returns:
        The table, the parameter counts and, once compiled, the compile report.

    Example:
        >>> import kilnet
        >>> from kilnet import layers
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), layers.Dense(2, name="hidden")],
        ...                           name="tiny")
        >>> print(model_summary(model, line_length=64))
        Model: "tiny"
        ┏━━━━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━┓
        ┃ Layer (type)             ┃ Output Shape         ┃    Param # ┃
        ┡━━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━┩
        │ hidden (Dense)           │ (None, 2)            │          8 │
        └──────────────────────────┴──────────────────────┴────────────┘
         Total params: 8 (32.00 B)
         Trainable params: 8 (32.00 B)
         Non-trainable params: 0 (0.00 B)
    """
    _build_if_input_known(model)
    graph = model.graph if model.is_functional else None
    chain = _is_chain(model)
    header = ["Layer (type)", "Output Shape", "Param #"]
    justify = ["left", "left", "right"]
    if chain:
        default_length, default_positions = _CHAIN_LENGTH, list(_CHAIN_POSITIONS)
    else:
        default_length, default_positions = _GRAPH_LENGTH, list(_GRAPH_POSITIONS)
        header.append("Connected to")
        justify.append("left")
    if show_trainable:
        default_length += _TRAINABLE_EXTRA
        header.append("Trainable")
        justify.append("center")
    line_length = _check_line_length(default_length if line_length is None else line_length)
    if positions is None and show_trainable:
        # A "Trainable" column of 12 characters at the end; the others share the rest.
        rest = line_length - _TRAINABLE_EXTRA
        positions = [int(p * rest) for p in default_positions] + [line_length]
    widths = _column_widths(default_positions if positions is None else positions,
                            line_length, len(header), show_trainable)

    rows = []
    for layer in _layers_in_range(getattr(model, "operations", model.layers), layer_range):
        _add_rows(rows, layer, graph, level=0, chain=chain, expand_nested=expand_nested,
                  show_trainable=show_trainable)

    # A column of `width` characters: its text, a space either side and its right border
    # (the first also holds the table's left border).
    contents = [w - 3 for w in widths]
    contents[0] -= 1
    table = Table(*[Column(name, justify=j, width=w, overflow="fold")
                    for name, j, w in zip(header, justify, contents)],
                  show_lines=True)
    for row in rows:
        table.add_row(*[Text(cell) for cell in row])
    buffer = io.StringIO()
    console = Console(file=buffer, width=sum(widths) + 1, force_terminal=False,
                      color_system=None, highlight=False)
    console.print(Text(f'Model: "{model.name}"'))
    console.print(table)
    lines = [line.rstrip() for line in buffer.getvalue().rstrip().splitlines()]
    if model.built:
        trainable = model.trainable_weights
        non_trainable = model.non_trainable_weights
        optimizer = _trained_optimizer_variables(model)
        weights = trainable + non_trainable
        total = (_count(weights) + sum(a.size for a in optimizer or []),
                 _size(weights) + sum(a.nbytes for a in optimizer or []))
        lines.append(f" Total params: {total[0]:,} ({_readable_size(total[1])})")
        lines.append(f" Trainable params: {_count_and_size(trainable)}")
        lines.append(f" Non-trainable params: {_count_and_size(non_trainable)}")
        if optimizer is not None:   # as Keras, once the optimizer has its variables
            lines.append(f" Optimizer params: {sum(a.size for a in optimizer):,} "
                         f"({_readable_size(sum(a.nbytes for a in optimizer))})")
    else:
        lines.append(" The model is not built yet: its shapes and parameter counts appear once\n"
                     " its input shape is known (give the first layer input_shape=..., start the\n"
                     " model with kilnet.Input(shape=...), call model.build(input_shape), or fit\n"
                     " it).")
    report = model.compile_report
    if report is not None and (report.programs or report.flops_per_step is not None):
        lines.append(str(report))
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


# -- building ------------------------------------------------------------------------------------
def _build_if_input_known(model) -> None:
    """Make the missing weights when the input shape is known (as compile() would)."""
    if model.built:
        return
    if model.is_functional or model.build_shape is not None:
        model.build()


# -- the layout ----------------------------------------------------------------------------------
def _is_chain(model) -> bool:
    """Whether the model is a chain of single calls (no "Connected to" column), as Keras
    decides: Sequential and subclassed models always are; a functional model is unless it has
    several inputs, a call on several tensors, a layer called twice, or a branch."""
    from kilnet.models import Sequential

    graph = model.graph if model.is_functional else None
    if graph is None or isinstance(model, Sequential):
        return True
    if len(graph.inputs) != 1:
        return False
    calls, uses = {}, {}
    for node in graph.run_nodes:
        if len(node.inputs) != 1:
            return False
        calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
        producer = id(node.inputs[0].node)
        uses[producer] = uses.get(producer, 0) + 1
    return all(n == 1 for n in calls.values()) and all(n == 1 for n in uses.values())


def _check_line_length(line_length) -> int:
    if isinstance(line_length, bool) or not isinstance(line_length, (int, np.integer)) \
            or line_length < 20:
        raise ValueError(f"line_length must be an integer of at least 20 (characters). "
                         f"Received: line_length={line_length!r}")
    return int(line_length)


def _column_widths(positions, line_length, columns, show_trainable) -> list[int]:
    """Keras's positions (where each column ends, as fractions of the line or as character
    positions) turned into column widths."""
    try:
        positions = [float(p) for p in positions]
    except (TypeError, ValueError):
        raise ValueError(f"positions must be a list of numbers, one per column. Received: "
                         f"positions={positions!r}") from None
    if show_trainable and len(positions) == columns - 1 and all(p <= 1 for p in positions):
        positions = [p * 0.9 for p in positions] + [1.0]  # as Keras: room for "Trainable"
    if len(positions) != columns:
        raise ValueError(f"positions needs one end position per column ({columns} columns). "
                         f"Received: positions={positions!r}")
    if all(p <= 1 for p in positions):
        positions = [int(p * line_length) for p in positions]
    widths, start = [], 0
    for end in positions:
        width = int(end) - start
        if width < 5:
            raise ValueError(f"The summary's columns are too narrow (each needs at least 5 "
                             f"characters): give a larger line_length or increasing positions. "
                             f"Received: line_length={line_length}, positions={positions}")
        widths.append(width)
        start = int(end)
    return widths


def _layers_in_range(layers, layer_range) -> list:
    if layer_range is None:
        return list(layers)
    if (not isinstance(layer_range, (list, tuple)) or len(layer_range) != 2
            or not all(isinstance(name, str) for name in layer_range)):
        raise ValueError("layer_range must be a list or tuple of two strings: the names (or "
                         "regular expressions) of the first and last layers to show. Received: "
                         f"layer_range={layer_range!r}")
    first = [i for i, layer in enumerate(layers) if re.match(layer_range[0], layer.name)]
    last = [i for i, layer in enumerate(layers) if re.match(layer_range[1], layer.name)]
    if not first or not last:
        raise ValueError(f"layer_range {list(layer_range)} matches no layer of the model. Its "
                         f"layers: {[layer.name for layer in layers]}")
    low, high = min(first), max(last)
    if low > high:
        low, high = min(last), max(first)
    return list(layers)[low:high + 1]


# -- the rows ------------------------------------------------------------------------------------
def _add_rows(rows, layer, graph, *, level, chain, expand_nested, show_trainable):
    prefix = _NESTED_INDENT * level + "└ " if level else ""
    nodes = _nodes_in(layer, graph)
    row = [f"{prefix}{layer.name} ({layer.keras_class_name})", _output_shape(layer, nodes),
           _param_count(layer)]
    if not chain:
        row.append(_connections(nodes))
    if show_trainable:
        row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
    rows.append(row)
    if expand_nested:
        inner_graph = getattr(layer, "graph", None)
        for sub in getattr(layer, "operations", layer.sublayers):
            _add_rows(rows, sub, inner_graph, level=level + 1, chain=chain,
                      expand_nested=expand_nested, show_trainable=show_trainable)


def _nodes_in(layer, graph) -> list:
    """The calls of `layer` that belong to `graph` (a layer may also be used elsewhere)."""
    if graph is None:
        return []
    mine = {id(node) for node in graph.nodes}
    return [node for node in layer.inbound_nodes if id(node) in mine]


def _output_shape(layer, nodes) -> str:
    if nodes:
        shapes = []
        for node in nodes:
            shape = _format_structure(node.outputs_structure)
            if shape not in shapes:
                shapes.append(shape)
        return ", ".join(shapes)
    # Not called on symbolic tensors here (a subclassed model's layer): from the input shape
    # its weights were made for, when it is built.
    if not layer.built or layer.build_shape is None:
        return "?"
    try:
        shape = layer.sample_output_shape(layer.build_shape)
    except Exception:  # noqa: BLE001 - a shape the layer cannot tell on its own
        return "?"
    return _format_structure(shape, batch=True)


def _format_structure(value, batch=False) -> str:
    """'(None, 10)' for one tensor or shape, '[(None, 3), (None, 4)]' for several."""
    if hasattr(value, "shape") and not isinstance(value, tuple):
        return _format_shape(value.shape)
    if isinstance(value, tuple) and all(d is None or isinstance(d, (int, np.integer))
                                        for d in value):
        return _format_shape(((None,) + value) if batch else value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_structure(v, batch)}"
                               for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_format_structure(v, batch) for v in value) + "]"
    return "?"


def _format_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _param_count(layer) -> str:
    if not layer.built:
        return "0 (unbuilt)"
    return f"{_count(layer.weights):,}"


def _connections(nodes) -> str:
    """`name[node_index][tensor_index]` of every tensor the layer's calls take."""
    found = []
    for node in nodes:
        for tensor in node.inputs:
            producer = tensor.node
            node_index = next(i for i, n in enumerate(producer.layer.inbound_nodes)
                              if n is producer)
            found.append(f"{producer.layer.name}[{node_index}][{tensor.index}]")
    return ", ".join(found) or "-"


# -- counts and sizes ----------------------------------------------------------------------------
def _unique(weights) -> list:
    return list({id(v): v for v in weights}.values())


def _count(weights) -> int:
    return sum(math.prod(v.shape) for v in _unique(weights))


def _count_and_size(weights) -> str:
    """'101,770 (397.54 KB)': the count and the memory the weights take."""
    return f"{_count(weights):,} ({_readable_size(_size(weights))})"


def _size(weights) -> int:
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in _unique(weights))


def _trained_optimizer_variables(model):
    """The optimizer's variables as Keras counts them in its summary, once the model has been
    trained (Keras builds its optimizer in fit), else None."""
    from kilnet import optimizers as optimizers_lib   # fit's state, read only
    from kilnet.keras_files import keras_optimizer_variables

    trainer = model.compiled
    if trainer is None or trainer.state is None or not (
            trainer.fit_calls or optimizers_lib.step_count(trainer.state.opt_state)):
        return None
    return keras_optimizer_variables(trainer)


def _readable_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"
