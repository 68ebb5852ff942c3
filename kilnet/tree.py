"""kilnet.tree: Keras's `keras.tree`, functions over nested structures (lists, tuples, dicts,
namedtuples and their leaves), as a custom layer or a `train_step` uses them on inputs, states
and logs.

Built on optree, the library Keras's own tree functions use, with Keras's conventions: `None` is
a leaf, dict values are taken in sorted key order (an `OrderedDict` in its own order), arrays,
Variables and symbolic tensors are leaves. kilnet's own nested dicts of weights use JAX's tree
functions; this module is the Keras-compatible public face.

Example:
    >>> from kilnet import tree
    >>> tree.flatten({"b": [1, 2], "a": None})
    [None, 1, 2]
    >>> tree.map_structure(lambda v: v * 10, {"b": [1, 2], "a": 3})
    {'b': [10, 20], 'a': 30}
"""

from __future__ import annotations

import warnings

import optree

# A namespace of kilnet's own, so that types registered for other libraries' trees (optree's
# global registry) do not change how kilnet splits a structure.
_NAMESPACE = "kilnet"

__all__ = [
    "MAP_TO_NONE", "assert_same_paths", "assert_same_structure", "flatten", "flatten_with_path",
    "is_nested", "lists_to_tuples", "map_shape_structure", "map_structure",
    "map_structure_up_to", "pack_sequence_as", "traverse",
]


class MAP_TO_NONE:
    """The value a `traverse` function returns to replace a sub-structure with None (returning
    None itself means "go on into it").

    Example:
        >>> from kilnet import tree
        >>> tree.traverse(lambda s: tree.MAP_TO_NONE if s == [1] else None, [[1], 2])
        [None, 2]
    """


def _is_leaf(structure, none_is_leaf=True) -> bool:
    return optree.tree_is_leaf(structure, none_is_leaf=none_is_leaf, namespace=_NAMESPACE)


def _mismatch(a, b, where="") -> ValueError:
    return ValueError(f"The structures don't have the same nested structure{where}: one has "
                      f"{type(a).__name__} where the other has {type(b).__name__}. "
                      f"Received: {a!r:.120} and {b!r:.120}")


def is_nested(structure) -> bool:
    """Whether `structure` is a list, tuple, dict or namedtuple (a string or an array is not).

    Example:
        >>> from kilnet import tree
        >>> tree.is_nested({"a": 1}), tree.is_nested("ab"), tree.is_nested(None)
        (True, False, False)
    """
    return not _is_leaf(structure)


def flatten(structure) -> list:
    """The leaves of `structure` in order (dict values by sorted key); a leaf gives [leaf].

    Example:
        >>> from kilnet import tree
        >>> tree.flatten([[1, 2], (3, {"y": 5, "x": 4})]), tree.flatten(None)
        ([1, 2, 3, 4, 5], [None])
    """
    return optree.tree_leaves(structure, none_is_leaf=True, namespace=_NAMESPACE)


def flatten_with_path(structure) -> list:
    """[(path, leaf)] in `flatten`'s order; a path is the tuple of indices and keys that leads
    to the leaf.

    Example:
        >>> from kilnet import tree
        >>> tree.flatten_with_path([{"foo": 42}, 7])
        [((0, 'foo'), 42), ((1,), 7)]
    """
    paths, leaves, _ = optree.tree_flatten_with_path(structure, none_is_leaf=True,
                                                     namespace=_NAMESPACE)
    return list(zip(paths, leaves))


def pack_sequence_as(structure, flat_sequence):
    """`flat_sequence`'s items put into `structure`'s shape, in `flatten`'s order (so a dict
    keeps its own key order but takes its values by sorted key).

    Example:
        >>> from kilnet import tree
        >>> tree.pack_sequence_as({"b": 0, "a": (0, 0)}, [1, 2, 3])
        {'b': 3, 'a': (1, 2)}
    """
    spec = optree.tree_structure(structure, none_is_leaf=True, namespace=_NAMESPACE)
    flat = list(flat_sequence)
    if len(flat) != spec.num_leaves:
        raise ValueError(f"pack_sequence_as: the structure has {spec.num_leaves} leaves but "
                         f"flat_sequence has {len(flat)} items; give one item per leaf of "
                         f"flatten(structure). Received: flat_sequence={flat!r:.120}")
    return optree.tree_unflatten(spec, flat)


def map_structure(func, *structures, none_is_leaf=True):
    """`func` applied to the leaves of `structures` (which must be nested alike), in their
    shape. With `none_is_leaf=False`, None entries are kept and not passed to `func`.

    Example:
        >>> from kilnet import tree
        >>> tree.map_structure(lambda x, y: x + y, [1, (2, 3)], [10, (20, 30)])
        [11, (22, 33)]
    """
    if not structures:
        raise ValueError("map_structure needs at least one structure. Received: none")
    if len(structures) == 1:
        return optree.tree_map(func, structures[0], none_is_leaf=none_is_leaf,
                               namespace=_NAMESPACE)

    def checked(*leaves):
        # optree maps up to the first structure's leaves: a deeper structure elsewhere is a
        # mismatch for Keras, not a leaf to hand over.
        for leaf in leaves[1:]:
            if not _is_leaf(leaf, none_is_leaf):
                raise _mismatch(leaves[0], leaf)
        return func(*leaves)
    try:
        return optree.tree_map(checked, *structures, none_is_leaf=none_is_leaf,
                               namespace=_NAMESPACE)
    except ValueError as error:
        if "Received:" in str(error):
            raise
        raise ValueError(f"The structures don't have the same nested structure: {error} "
                         f"Received: {len(structures)} structures") from None


def map_structure_up_to(shallow_structure, func, *structures):
    """`func` applied to the parts of `structures` at the leaves of `shallow_structure`; what
    lies deeper is handed over whole.

    Example:
        >>> from kilnet import tree
        >>> tree.map_structure_up_to([None, None], len, [[1, 1], [2, 2, 2]])
        [2, 3]
    """
    if not structures:
        raise ValueError("map_structure_up_to needs at least one structure. Received: none")

    def at_shallow_leaf(shallow, *parts):
        if not _is_leaf(shallow):
            raise _mismatch(shallow, parts[0], " (the shallow structure is deeper)")
        return func(*parts)
    return optree.tree_map(at_shallow_leaf, shallow_structure, *structures, none_is_leaf=True,
                           namespace=_NAMESPACE)


def assert_same_structure(a, b, check_types=None):
    """Raises ValueError unless `a` and `b` are nested alike, container types included (a
    list and a tuple differ; dicts of any kind with the same keys match). `check_types` is
    accepted as Keras accepts it and has no effect.

    Example:
        >>> from kilnet import tree
        >>> tree.assert_same_structure([(0, 1)], [(2, 3)])
        >>> tree.assert_same_structure([0, 1], (0, 1))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: The structures don't have the same nested structure: ...
    """
    if check_types is not None:
        warnings.warn("assert_same_structure's check_types argument has no effect (as in "
                      "Keras 3); use assert_same_paths for a check that ignores container "
                      "types.", DeprecationWarning, stacklevel=2)

    def check(leaf_a, leaf_b):
        if not (_is_leaf(leaf_a) and _is_leaf(leaf_b)):
            raise _mismatch(leaf_a, leaf_b)
    try:
        optree.tree_map(check, a, b, none_is_leaf=True, namespace=_NAMESPACE)
    except ValueError as error:
        if "Received:" in str(error):
            raise
        raise ValueError(f"The structures don't have the same nested structure: {error} "
                         f"Received: a={a!r:.120}, b={b!r:.120}") from None


def assert_same_paths(a, b):
    """Raises ValueError unless `a` and `b` have the same leaf paths, whatever their container
    types (a list and a tuple of two items match), naming the paths that differ.

    Example:
        >>> from kilnet import tree
        >>> tree.assert_same_paths([0, 1], (2, 3))
        >>> tree.assert_same_paths({"a": 1}, {"b": 1})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `a` and `b` don't have the same paths. Paths in a, not in b: [('a',)]...
    """
    paths_a = set(optree.tree_paths(a, none_is_leaf=True, namespace=_NAMESPACE))
    paths_b = set(optree.tree_paths(b, none_is_leaf=True, namespace=_NAMESPACE))
    if paths_a != paths_b:
        raise ValueError(f"`a` and `b` don't have the same paths. Paths in a, not in b: "
                         f"{sorted(paths_a - paths_b, key=repr)}; in b, not in a: "
                         f"{sorted(paths_b - paths_a, key=repr)}")


def traverse(func, structure, top_down=True):
    """Walks `structure` depth first, calling `func` on every sub-structure and leaf.

    Top down (the default), `func` sees a parent before its children; a result other than
    None replaces that sub-structure without going into it (`MAP_TO_NONE` replaces it with
    None). Bottom up, `func` sees each sub-structure after its children were traversed.

    Example:
        >>> from kilnet import tree
        >>> seen = []
        >>> tree.traverse(seen.append, [(1, 2), {"a": 3}])
        [(1, 2), {'a': 3}]
        >>> seen
        [[(1, 2), {'a': 3}], (1, 2), 1, 2, {'a': 3}, 3]
    """
    def children_traversed(node):
        if _is_leaf(node):
            return node
        children, spec = optree.tree_flatten(node, is_leaf=lambda x: x is not node,
                                             none_is_leaf=True, namespace=_NAMESPACE)
        return optree.tree_unflatten(spec, [traverse(func, child, top_down)
                                            for child in children])

    if top_down:
        result = func(structure)
        if result is None:
            return children_traversed(structure)
    else:
        structure = children_traversed(structure)
        result = func(structure)
        if result is None:
            return structure
    return None if result is MAP_TO_NONE else result


def lists_to_tuples(structure):
    """`structure` with every list turned into a tuple, at every depth.

    Example:
        >>> from kilnet import tree
        >>> tree.lists_to_tuples([1, [2, {"a": [3]}]])
        (1, (2, {'a': (3,)}))
    """
    return traverse(lambda node: tuple(node) if isinstance(node, list) else None, structure,
                    top_down=False)


def map_shape_structure(func, structure):
    """`func` applied to every shape in `structure`, a shape being a list or tuple of ints and
    Nones (as `compute_output_shape` returns them).

    Example:
        >>> from kilnet import tree
        >>> tree.map_shape_structure(lambda s: (None,) + tuple(s), {"x": (3,), "y": [(2, 4)]})
        {'x': (None, 3), 'y': [(None, 2, 4)]}
    """
    def is_shape(node):
        return isinstance(node, (list, tuple)) and all(
            isinstance(item, (int, type(None))) for item in node)
    return optree.tree_map(func, structure, is_leaf=is_shape, none_is_leaf=True,
                           namespace=_NAMESPACE)
