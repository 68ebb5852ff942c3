"""plot_model: a picture of a model's layer graph.

`model_graph` reads the graph through the model's public contract (`model.inputs`,
`model.outputs`, each KerasTensor's producing `node`, whose `layer` and `inputs` lead back)
into boxes with a depth and a column, and arrows. Graphviz draws it when both the `graphviz`
package and its `dot` program are installed, as Keras does; otherwise matplotlib (a kilnet
dependency) draws the boxes row by row.
"""

from __future__ import annotations

import os
import shutil

_RANKDIRS = ("TB", "LR", "BT", "RL")


def model_graph(model, show_shapes=False, show_dtype=False, show_layer_names=False,
                show_layer_activations=False, show_trainable=False) -> dict:
    """The drawing's structure: {"nodes": [{"id", "label", "depth", "column"}],
    "edges": [(from id, to id)]}, one node per layer, depth 0 for the inputs.

    Example:
        >>> import kilnet
        >>> from kilnet import layers
        >>> x = kilnet.Input((3,), name="x")
        >>> model = kilnet.Model(x, layers.Dense(2, name="out")(x))
        >>> graph = model_graph(model, show_layer_names=True)
        >>> [(n["label"], n["depth"]) for n in graph["nodes"]], graph["edges"]
        ([('x (InputLayer)', 0), ('out (Dense)', 1)], [('x', 'out')])
    """
    inputs, outputs = _graph_ends(model)
    depth, edges, order = {}, [], []

    def visit(tensor):
        node = tensor.node
        layer = node.layer
        if id(layer) in depth:
            return depth[id(layer)]
        parents = [visit(t) for t in node.inputs]
        for t in node.inputs:
            edge = (t.node.layer.name, layer.name)
            if edge not in edges:
                edges.append(edge)
        depth[id(layer)] = 1 + max(parents, default=-1)
        order.append((layer, tensor))
        return depth[id(layer)]

    for tensor in inputs + outputs:
        visit(tensor)
    columns = {}
    nodes = []
    for layer, tensor in order:
        d = depth[id(layer)]
        columns[d] = columns.get(d, -1) + 1
        label = _label(layer, tensor, show_shapes, show_dtype, show_layer_names,
                       show_layer_activations, show_trainable)
        nodes.append({"id": layer.name, "label": label, "depth": d, "column": columns[d]})
    return {"nodes": nodes, "edges": edges}


def _graph_ends(model):
    try:
        return list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError) as error:
        raise ValueError(f"plot_model draws functional and Sequential models whose input shape "
                         f"is known. Received a model without a layer graph ({error}). Build "
                         "it first (give the first layer input_shape, or call model.build).") \
            from error


def _label(layer, tensor, show_shapes, show_dtype, show_names, show_activations,
           show_trainable):
    kind = type(layer).__name__
    lines = [f"{layer.name} ({kind})" if show_names else kind]
    activation = getattr(layer, "activation", None)
    if show_activations and activation is not None:
        lines.append(f"Activation: {getattr(activation, '__name__', activation)}")
    if show_shapes:
        lines.append(f"Output shape: {tensor.shape}")
    if show_dtype:
        lines.append(f"Output dtype: {tensor.dtype}")
    if show_trainable:
        lines.append(f"Trainable: {'Y' if getattr(layer, 'trainable', False) else 'N'}")
    return "\n".join(lines)


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=False, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False, splines="ortho", **kwargs):
    """Draws the model's layer graph into `to_file`, as keras.utils.plot_model: one box per
    layer (its class, and with the flags its name, output shape, dtype, activation,
    trainability), arrows from inputs to outputs, `rankdir` "TB" (top to bottom) or "LR".
    Returns an IPython Image of the file when IPython is installed (and the file is not a
    PDF), else None.

    Uses graphviz when the `graphviz` package and the `dot` program are installed, else
    matplotlib (`splines` then has no effect). `expand_nested=True` is refused: a nested model
    is drawn as one box.

    Example:
        >>> import os, tempfile, kilnet
        >>> from kilnet import layers
        >>> model = kilnet.Sequential([kilnet.Input((4,)), layers.Dense(2)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.png")
        >>> _ = kilnet.utils.plot_model(model, to_file=path, show_shapes=True)
        >>> os.path.getsize(path) > 0
        True
    """
    if kwargs:
        raise ValueError(f"plot_model: unrecognized keyword arguments {sorted(kwargs)}; "
                         "layer_range is not supported (Keras 3 dropped it too).")
    if rankdir not in _RANKDIRS:
        raise ValueError(f"plot_model: rankdir must be one of {_RANKDIRS}. "
                         f"Received: rankdir={rankdir!r}")
    if expand_nested:
        raise ValueError("plot_model: expand_nested=True is not supported by kilnet; a nested "
                         "model is drawn as one box. Plot the nested model on its own.")
    graph = model_graph(model, show_shapes, show_dtype, show_layer_names,
                        show_layer_activations, show_trainable)
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:] or "png"
    if _has_graphviz():
        _draw_graphviz(graph, to_file, extension, rankdir, dpi, splines)
    else:
        _draw_matplotlib(graph, to_file, extension, rankdir, dpi)
    if extension == "pdf":
        return None
    try:
        from IPython import display
    except ImportError:
        return None
    return display.Image(filename=to_file)


def _has_graphviz() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


def _draw_graphviz(graph, to_file, extension, rankdir, dpi, splines):
    import graphviz

    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "dpi": str(dpi),
                                       "splines": splines},
                           node_attr={"shape": "box"})
    for node in graph["nodes"]:
        dot.node(node["id"], node["label"])
    for a, b in graph["edges"]:
        dot.edge(a, b)
    with open(to_file, "wb") as f:
        f.write(dot.pipe(format=extension))


def _draw_matplotlib(graph, to_file, extension, rankdir, dpi):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(n["depth"] for n in graph["nodes"]) + 1
    cols = max(n["column"] for n in graph["nodes"]) + 1
    vertical = rankdir in ("TB", "BT")
    width, height = (3.2 * cols, 1.1 * rows) if vertical else (3.2 * rows, 1.1 * cols)
    figure = Figure(figsize=(max(width, 3.2), max(height, 1.1)))
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_axis_off()
    places = {n["id"]: _place(n, rows, cols, rankdir) for n in graph["nodes"]}
    for a, b in graph["edges"]:
        axes.annotate("", xy=places[b], xytext=places[a],
                      arrowprops={"arrowstyle": "->", "shrinkA": 14, "shrinkB": 14})
    for node in graph["nodes"]:
        axes.text(*places[node["id"]], node["label"], ha="center", va="center", fontsize=8,
                  bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "black"})
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    figure.savefig(to_file, format=extension, dpi=dpi)


def _place(node, rows, cols, rankdir):
    """(x, y) in [0, 1] of a box: its depth along rankdir, its column across it."""
    along = (node["depth"] + 0.5) / rows
    across = (node["column"] + 0.5) / cols
    if rankdir == "TB":
        return across, 1 - along
    if rankdir == "BT":
        return across, along
    if rankdir == "LR":
        return along, 1 - across
    return 1 - along, 1 - across
