"""String layers called on a string `Input`: the call is recorded as a node of the functional
graph, as Keras records it, so that `kilnet.Model(inputs, outputs)` can run the node on the
host (NumPy) before its compiled program (kilnet.models._host_stage). JAX has no strings, so
these nodes never enter a compiled program; the numbers they output do.
"""

from __future__ import annotations

from kilnet.layers._node import KerasTensor, tensors_in


def takes_strings(tree) -> bool:
    """Whether a call's arguments hold a symbolic tensor of strings.

    Example:
        >>> import kilnet
        >>> takes_strings((kilnet.Input((1,), dtype="string"),)), takes_strings(
        ...     (kilnet.Input((1,)),))
        (True, False)
    """
    return any(tensor.dtype == "string" for tensor in tensors_in(tree))


def record_host_call(layer, args, kwargs):
    """The symbolic output of `layer` (a string layer) called on string tensors, its node
    recorded in `layer.inbound_nodes`: the shape from `sample_output_shape`, the dtype from
    `compute_output_dtype`, the batch axis the input's.

    Example:
        >>> import kilnet
        >>> text = kilnet.Input((1,), dtype="string")
        >>> ids = kilnet.layers.TextVectorization(output_sequence_length=5)(text)
        >>> ids.shape, ids.dtype
        ((None, 5), 'int32')
    """
    first = tensors_in(args[0])[0]
    sample_shape = ([t.sample_shape for t in args[0]] if isinstance(args[0], (list, tuple))
                    else first.sample_shape)   # HashedCrossing takes a list of features
    out_shape = tuple(layer.sample_output_shape(sample_shape))
    out_dtype = layer.compute_output_dtype("string")
    output = KerasTensor((first.shape[0],) + out_shape, out_dtype)
    layer.build_shape = sample_shape
    layer.built = True   # a string layer has no weights: its model has nothing to draw for it
    layer.record_node(tuple(args), dict(kwargs), output)
    return output


def refuse_strings(layer) -> None:
    """A layer that is not a string layer was called on a string tensor: raise a TypeError
    naming it and the fix. A layer of yours holding a string layer is told apart: its call()
    runs in the compiled model, where strings cannot go, and running all of it on the host
    would leave its weights untrained, so kilnet does neither.

    Example:
        >>> import kilnet
        >>> try:
        ...     kilnet.layers.Dense(2, name="dense")(kilnet.Input((1,), dtype="string"))
        ... except TypeError as error:
        ...     print(str(error)[:60])
        Layer 'dense' (Dense) was called on a string tensor, which o
    """
    held = [sub for sub in _held_layers(layer) if getattr(sub, "runs_on_strings", False)]
    if held:
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) was called on a string tensor "
            f"and holds the string layer {held[0].name!r} ({type(held[0]).__name__}). kilnet "
            "runs string layers on the host, before the compiled model, and a layer's call() "
            "runs in the compiled model, where strings cannot go (run on the host, its weights "
            "would not train). Call the string layer on the Input outside the layer and give "
            f"{type(layer).__name__} its output (the ids), or make the two a "
            "kilnet.Sequential([string layer, ...]), which kilnet splits at the string layer.")
    raise TypeError(
        f"Layer {layer.name!r} ({type(layer).__name__}) was called on a string tensor, which "
        "only the string layers take (TextVectorization, StringLookup, Hashing, "
        "HashedCrossing: kilnet runs them on the host, before the compiled model), and the ops "
        "that only reshape strings (ops.expand_dims, ops.reshape, x[...], ...). Turn the text "
        "into numbers first, e.g. `ids = kilnet.layers.TextVectorization(...)(text)`, "
        f"and call {type(layer).__name__} on the numbers.")


def _held_layers(layer) -> list:
    """The layers `layer` holds, at any depth."""
    found, stack = [], list(layer.sublayers)
    while stack:
        sub = stack.pop()
        found.append(sub)
        stack.extend(sub.sublayers)
    return found
