"""Model inputs that are not Input tensors, taken as Keras 3 takes them.

`keras.Model(inputs, outputs)` accepts any symbolic tensor among its inputs: a tensor that a
layer computed becomes a new Input of its shape and dtype, and the layers upstream of it are
left out of the model. keras.io's structured-data example builds its model so (it passes
`Normalization(...)(Input(...))` as inputs) and runs on Keras, so it runs here too. The model
is then fed what those tensors would have held, which is rarely what was meant (the raw
features reach the model unnormalized), so kilnet says so in a warning that names the layers
left out and the fix.
"""

from __future__ import annotations

import warnings

from kilnet import _names
from kilnet.errors import KerasQuirkWarning
from kilnet.layers import InputLayer
from kilnet.layers._node import KerasTensor, flatten, source_inputs, substitute, tensors_in
from kilnet.models._graph import walk_back

# How many names a message lists before it says how many more there are.
_LISTED = 6


def start_from_inputs(inputs, outputs):
    """`(inputs, outputs)` with every input that is not an Input tensor replaced by a new
    Input of its shape and dtype, and the layer calls between them and the outputs made again
    on it, as Keras's functional model does; the structures given back as they came when all
    are Input tensors. Warns (KerasQuirkWarning) with the layers left out.

    A new input is named by its key when `inputs` is a dict (the name its data comes by),
    else `<producing layer>CLONE` (Keras names it `<tensor name>CLONE`).

    Example:
        >>> import warnings
        >>> import kilnet
        >>> raw = kilnet.Input(shape=(1,), name="age")
        >>> scaled = kilnet.layers.Normalization(mean=50.0, variance=100.0)(raw)
        >>> out = kilnet.layers.Dense(1)(scaled)
        >>> with warnings.catch_warnings(record=True):
        ...     inputs, outputs = start_from_inputs({"age": scaled}, out)
        >>> inputs["age"].node.is_input, inputs["age"].shape
        (True, (None, 1))
    """
    given = [t for t in flatten(inputs) if isinstance(t, KerasTensor)]
    cut = [t for t in given if t.node is not None and not t.node.is_input]
    if not cut or len({t.uid for t in given}) != len(given):
        return inputs, outputs   # the model's own checks refuse a tensor given twice
    _refuse_masked(cut)
    nodes = walk_back(tensors_in(outputs), {t.uid for t in given})
    values = _fresh_inputs(cut, inputs, nodes)
    kept = _replay(nodes, values)
    if not all(t.meant_as_input for t in cut):   # else the model is what was meant
        _warn(cut, inputs, values, kept)
    return (substitute(inputs, values, keep_others=True),
            substitute(outputs, values, keep_others=True))


def _refuse_masked(cut):
    for tensor in cut:
        if tensor.has_mask:
            raise ValueError(
                f"kilnet.Model(inputs=...): the input {tensor!r} is not an Input tensor but a "
                "layer's output, and it carries a sequence mask made upstream of it, which a "
                "new model input cannot carry (Keras refuses this model too). Pass the Input "
                f"tensors it is computed from ({_names_of(source_inputs(tensor))}) as the "
                "model's inputs.")


def _fresh_inputs(cut, inputs, nodes) -> dict:
    """uid of each cut tensor -> a new Input tensor of its shape and dtype, named apart from
    the layers the model will hold and its other inputs."""
    keys = ({id(t): key for key, t in inputs.items() if isinstance(key, str)}
            if isinstance(inputs, dict) else {})
    # the names already fixed (given ones); the model numbers its other layers around them
    taken = _names.Names(node.layer.name for node in nodes if node.layer.name_is_fixed)
    values = {}
    for tensor in cut:
        base = keys.get(id(tensor), f"{tensor.node.layer.name}CLONE")
        name = _names.unique_among(base, taken)
        taken.add(name)
        layer = InputLayer(batch_shape=tensor.shape, dtype=tensor.dtype, name=name)
        values[tensor.uid] = layer.output_tensor
    return values


def _replay(nodes, values) -> set:
    """Calls again, on the new inputs, each layer call that depends on them (in `nodes`'
    order, parents first), recording the new outputs in `values`; returns the ids of the
    layers the model holds."""
    kept = set()
    for node in nodes:
        kept.add(id(node.layer))
        if node.is_input or not any(t.uid in values for t in node.inputs):
            continue
        outputs = node.layer(*substitute(node.args, values, keep_others=True),
                             **substitute(node.kwargs, values, keep_others=True))
        for old, new in zip(node.outputs, tensors_in(outputs)):
            values[old.uid] = new
    return kept


def _upstream_layers(cut, kept) -> list:
    """The layers (op nodes too) that compute the cut tensors and are not in the model, in the
    order a walk back from them meets them."""
    found, seen, stack = [], set(), list(reversed(cut))
    while stack:
        node = stack.pop().node
        if node is None or node.is_input or id(node) in seen:
            continue
        seen.add(id(node))
        if id(node.layer) not in kept and node.layer not in found:
            found.append(node.layer)
        stack.extend(reversed(node.inputs))
    return found


def _warn(cut, inputs, values, kept):
    """What happened (which inputs, the layers left out), what it means, and the fix."""
    left_out = _upstream_layers(cut, kept)
    several, many_layers = len(cut) > 1, len(left_out) > 1
    shown = _labels(cut, inputs)
    new_names = [repr(values[t.uid].name) for t in cut]
    named = "" if new_names == shown else f" (named {_listed(new_names)})"
    normalizing = any(type(layer).__name__ == "Normalization" for layer in left_out)
    subject = (f"the inputs {_listed(shown)} are not Input tensors but outputs of layers"
               if several else
               f"the input {shown[0]} is not an Input tensor but a layer's output")
    warnings.warn(
        f"kilnet.Model(inputs=...): {subject}. As in Keras, {'each' if several else 'it'} "
        f"becomes a new Input of the model with the tensor's shape and dtype{named}, and the "
        "layers upstream are not part of the model: "
        f"{_listed([repr(layer.name) for layer in left_out])}. So fit, evaluate and predict "
        f"give your arrays to the model in place of {'those tensors' if several else 'that tensor'}, "
        f"without passing them through {'those layers' if many_layers else 'that layer'}"
        f"{' (so the features are not normalized)' if normalizing else ''}. To keep "
        f"{'them' if many_layers else 'it'} in the model, give kilnet.Model the Input tensors "
        f"they start from ({_names_of(_sources(cut))}) as its inputs.",
        KerasQuirkWarning, stacklevel=5)


def _labels(cut, inputs) -> list:
    """How the message names each cut input: its key in a dict of inputs, else its layer."""
    keys = ({id(t): key for key, t in inputs.items()} if isinstance(inputs, dict) else {})
    return [repr(keys[id(t)]) if id(t) in keys else f"made by {t.node.layer.name!r}"
            for t in cut]


def _sources(cut) -> list:
    """The Input tensors the cut tensors are computed from, each once."""
    found = []
    for tensor in cut:
        found.extend(t for t in source_inputs(tensor) if t not in found)
    return found


def _names_of(tensors) -> str:
    return _listed([repr(t.name) for t in tensors])


def _listed(items) -> str:
    shown = ", ".join(items[:_LISTED])
    more = len(items) - _LISTED
    return shown + (f" and {more} more" if more > 0 else "")
