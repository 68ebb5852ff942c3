"""Keras's form of a layer's shapes, batch axis first, and kilnet's per-sample form.

Why both: kilnet's layers compute their shapes per sample (`Layer.sample_output_shape`, what
the graph builder, `init` and the file readers use), while Keras's public
`compute_output_shape(input_shape)` takes and returns whole shapes, batch axis first, and a
layer of yours answers in that form (often with a sub-layer's `compute_output_shape`). This
module turns one form into the other: the public method runs the per-sample rule between
them, and the per-sample rule of a class of yours that answers in Keras's form asks it.
"""

from __future__ import annotations


def _is_single_shape(value) -> bool:
    """One shape: a tuple or list of ints (NumPy's too) and Nones, not a list of shapes."""
    return isinstance(value, (list, tuple)) and all(
        d is None or (hasattr(d, "__index__") and not isinstance(d, bool)) for d in value)


def _as_dims(shape) -> tuple:
    return tuple(None if d is None else int(d) for d in shape)


def _shape_leaves(shapes) -> list:
    """The single shapes in `shapes` (one shape, or a list, tuple or dict of them), in order."""
    if _is_single_shape(shapes):
        return [shapes]
    if isinstance(shapes, dict):
        items = shapes.values()
    elif isinstance(shapes, (list, tuple)):
        items = shapes
    else:
        return []
    return [leaf for item in items for leaf in _shape_leaves(item)]


def _mapped(shapes, fn):
    """`fn` applied to each single shape in `shapes`, keeping lists, tuples and dicts."""
    if _is_single_shape(shapes):
        return fn(_as_dims(shapes))
    if isinstance(shapes, dict):
        return {key: _mapped(s, fn) for key, s in shapes.items()}
    if isinstance(shapes, (list, tuple)):
        return type(shapes)(_mapped(s, fn) for s in shapes)
    raise TypeError(f"Expected a shape (a tuple of ints and None) or a list, tuple or dict of "
                    f"shapes. Received: {shapes!r:.100}")


def split_batch(shapes, argument="input_shape"):
    """(batch size, per-sample shapes) of Keras's input shape(s): the first shape's first axis
    (None or an int), and every shape without its first axis.

    Example:
        >>> from kilnet.layers._batch_axis import split_batch
        >>> split_batch((None, 8, 8, 1)), split_batch([(4, 5), (4, 3)])
        ((None, (8, 8, 1)), (4, [(5,), (3,)]))
    """
    leaves = _shape_leaves(shapes) if isinstance(shapes, (list, tuple, dict)) else []
    if not leaves or any(len(leaf) == 0 for leaf in leaves):
        raise ValueError(
            f"compute_output_shape takes the input's shape with its batch axis first, as "
            f"Keras's layers do, e.g. (None, 8, 8, 3) (or a list of such shapes for a layer of "
            f"several inputs). Received: {argument}={shapes!r:.100}")
    batch = _as_dims(leaves[0])[0]
    return batch, _mapped(shapes, lambda shape: shape[1:])


def with_batch(batch, shapes):
    """Per-sample output shape(s) with `batch` put first, in the structure given.

    Example:
        >>> from kilnet.layers._batch_axis import with_batch
        >>> with_batch(None, (6, 6, 3)), with_batch(4, [(7, 2), (2,)])
        ((None, 6, 6, 3), [(4, 7, 2), (4, 2)])
    """
    return _mapped(shapes, lambda shape: (batch,) + shape)


def without_batch(shapes):
    """Keras-form output shape(s) without their first axis (what a compute_output_shape of
    yours answers, as kilnet's per-sample rule needs it).

    Example:
        >>> from kilnet.layers._batch_axis import without_batch
        >>> without_batch([None, 4, 4, 8]), without_batch({"a": (None, 2)})
        ((4, 4, 8), {'a': (2,)})
    """
    return _mapped(shapes, lambda shape: shape[1:])


def built_in_rule(cls):
    """The per-sample shape rule `cls` inherits from kilnet (its nearest class's own
    `sample_output_shape`, not one standing for a compute_output_shape of yours): what
    Keras's `super().compute_output_shape(...)` reaches from a compute_output_shape of
    yours.

    Example:
        >>> from kilnet import layers
        >>> from kilnet.layers._batch_axis import built_in_rule
        >>> class Wide(layers.Dense):
        ...     def compute_output_shape(self, input_shape):
        ...         return super().compute_output_shape(input_shape)[:-1] + (7,)
        >>> built_in_rule(Wide) is layers.Dense.sample_output_shape
        True
    """
    for klass in cls.__mro__:
        rule = klass.__dict__.get("sample_output_shape")
        if rule is not None and not getattr(rule, "asks_your_compute_output_shape", False):
            return rule
    raise TypeError(f"{cls.__name__} has no per-sample shape rule")


def sample_rule_from_yours(layer, input_shape, **options):
    """The per-sample output shape(s) of a layer whose class defines Keras's
    `compute_output_shape` (batch axis first): its answer for the input with an unknown batch
    axis, that axis dropped. The functional graph, `summary` and the built-in wrappers read
    a layer of yours through this, as Keras reads your compute_output_shape.

    Example:
        >>> from kilnet import layers
        >>> class Wide(layers.Dense):
        ...     def compute_output_shape(self, input_shape):
        ...         return super().compute_output_shape(input_shape)[:-1] + (7,)
        >>> Wide(3).sample_output_shape((5,))   # the graph's per-sample question
        (7,)
    """
    return without_batch(layer.compute_output_shape(with_batch(None, input_shape), **options))


sample_rule_from_yours.asks_your_compute_output_shape = True
