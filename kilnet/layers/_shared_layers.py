"""A layer reached more than once in a layer's tree of sub-layers, counted once.

Why a module of its own: a model may hold one layer in two places (keras.io's
transformer_asr keeps `enc_input` as an attribute and also inside its `encoder` Sequential).
Keras has one set of Variables for it and lists them once, at the first place its attribute
tracking reaches the layer (depth first, in the order the attributes were set). kilnet's
weight trees (`params_tree` / `state_tree`, what a Trainer holds and files store) do the same:
the layer's arrays sit at its *first path* only. Its later places are *aliases*: the `apply`
of the tree's root fills them from the first path before running (`expanded`), so that every
container finds its sub-layers' arrays where it looks, and a gradient reaching the layer from
both places adds up on the one array; it folds the new state back after (`collapsed`).

A path is a tuple of sub-layer keys from the root (`("encoder", "speech_feature_embedding")`:
each a layer's name, numbered where two sub-layers of one layer share it, `Layer.keyed_sublayers`).
"""

from __future__ import annotations

import jax

from kilnet import _tree


def alias_paths(root) -> list:
    """(alias path, first path) for each later place of a layer reached more than once
    under `root`, depth first in `sublayers` order; an alias's own sub-layers are not walked
    again (they are under its first path). [] for a tree without shared layers.

    Example:
        >>> import kilnet
        >>> dense = kilnet.layers.Dense(2, name="d")
        >>> class Twice(kilnet.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.head = dense
        ...         self.seq = kilnet.Sequential([dense], name="seq")
        >>> alias_paths(Twice())
        [(('seq', 'd'), ('d',))]
    """
    first, aliases = {id(root): ()}, []

    def visit(layer, path):
        for key, sub in layer.keyed_sublayers():
            where = path + (key,)
            if id(sub) in first:
                aliases.append((where, first[id(sub)]))
            else:
                first[id(sub)] = where
                visit(sub, where)

    visit(root, ())
    return aliases


def without_aliases(tree: dict, aliases) -> dict:
    """`tree` (a layer's full weight tree, sub-layers nested by name) with the alias paths
    left out: each shared layer's arrays once, at its first path."""
    for alias, _ in aliases:
        tree = _without_path(tree, alias)
    return tree


def expanded(params: dict, state: dict, aliases):
    """(params, state, the aliases filled): the trees with every alias absent from them
    given its first path's arrays (the same arrays, not copies). An alias already present
    (a tree that holds every place) is left as it is."""
    filled = [(alias, first) for alias, first in aliases if not _has_path(params, alias)]
    for alias, first in filled:
        params = _tree.replace_path(params, alias, _tree.get_path(params, first))
        state = _tree.replace_path(state, alias, _tree.get_path(state, first))
    return params, state, filled


def collapsed(new_state: dict, given_state: dict, filled) -> dict:
    """The new state tree of a run on `expanded` trees, with the `filled` aliases folded
    back into their first paths. Where the layer ran at one place only, that place's new
    state is kept (the other still holds the array it was given); where it ran at both,
    the first path's."""
    for alias, first in filled:
        given = _tree.get_path(given_state, first)
        at_first, at_alias = _tree.get_path(new_state, first), _tree.get_path(new_state, alias)
        try:
            merged = jax.tree.map(
                lambda old, a, b: b if a is old and b is not old else a,
                given, at_first, at_alias)
        except ValueError:   # the two places' states differ in structure: keep the first's
            merged = at_first
        new_state = _without_path(_tree.replace_path(new_state, first, merged), alias)
    return new_state


def _has_path(tree, path) -> bool:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _without_path(tree: dict, path: tuple) -> dict:
    """A copy of `tree` without the entry at `path` (dicts along the path copied); `tree`
    itself where the path is absent."""
    if not _has_path(tree, path):
        return tree
    if len(path) == 1:
        return {key: value for key, value in tree.items() if key != path[0]}
    return {**tree, path[0]: _without_path(tree[path[0]], path[1:])}
