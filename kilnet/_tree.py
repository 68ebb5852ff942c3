"""Helpers on the nested dicts that hold a model's arrays (keyed by layer name, then weight
name), and on pytrees as named tensors ("params/dense/kernel") for files and checkpoints.
A leaf module: it imports nothing from kilnet.
"""

from __future__ import annotations

import jax
import numpy as np


class KeyOrderDict(dict):
    """A dict whose pytree keeps its keys in insertion order. JAX's pytrees put a dict's keys
    in sorted order, so a dict a layer is called on would reach its `call` re-ordered (a
    layer looping `for name in inputs` would see other features first than in Keras, whose
    trees restore the order they were given)."""

    def __reduce_ex__(self, protocol):   # copies and pickles are plain dicts
        return dict, (dict(self),)


jax.tree_util.register_pytree_with_keys(
    KeyOrderDict,
    lambda d: ([(jax.tree_util.DictKey(k), v) for k, v in d.items()], tuple(d)),
    lambda keys, children: KeyOrderDict(zip(keys, children)),
    flatten_func=lambda d: (list(d.values()), tuple(d)))


def keep_key_order(tree):
    """`tree` with its plain dicts (inside lists, tuples and dicts) made KeyOrderDicts, so
    that mapping over it keeps each dict's key order.

    Example:
        >>> mapped = jax.tree.map(lambda v: v * 2, keep_key_order({"zeta": 1, "alpha": 2}))
        >>> list(mapped)
        ['zeta', 'alpha']
    """
    if type(tree) is dict:
        return KeyOrderDict((k, keep_key_order(v)) for k, v in tree.items())
    if type(tree) in (list, tuple):
        return type(tree)(keep_key_order(v) for v in tree)
    return tree


def tuples_as_lists(tree):
    """`tree` with every tuple a list, at any depth (dicts kept): as JSON gives a config
    back, and as Keras gives a nested model's outputs.

    Example:
        >>> tuples_as_lists({"a": (1, [2, (3,)])})
        {'a': [1, [2, [3]]]}
    """
    if isinstance(tree, (list, tuple)):
        return [tuples_as_lists(item) for item in tree]
    if isinstance(tree, dict):
        return {key: tuples_as_lists(value) for key, value in tree.items()}
    return tree


def has_dict(tree) -> bool:
    """Whether a plain dict is in `tree` (lists and tuples opened)."""
    if type(tree) is dict:
        return True
    return type(tree) in (list, tuple) and any(has_dict(v) for v in tree)


def get_path(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def replace_path(tree: dict, path: tuple, value) -> dict:
    """A copy of `tree` with the leaf at `path` replaced (dicts along the path are copied;
    the other arrays are shared, not copied)."""
    if len(path) == 1:
        return {**tree, path[0]: value}
    return {**tree, path[0]: replace_path(tree[path[0]], path[1:], value)}


def split(tree: dict, keep) -> tuple[dict, dict]:
    """(kept, rest): two trees of the same nesting, `keep(path)` deciding each leaf's side.
    Empty sub-dicts stay on both sides, so `merge` gives back the original structure."""
    kept, rest = {}, {}
    for key, value in tree.items():
        if isinstance(value, dict):
            kept[key], rest[key] = split(value, lambda p, k=key: keep((k,) + p))
        elif keep((key,)):
            kept[key] = value
        else:
            rest[key] = value
    return kept, rest


def merge(a: dict, b: dict) -> dict:
    """The union of two trees made by `split`."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# -- pytrees <-> named tensors (model files, checkpoints) ----------------------------------------
def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path) -> str:
    return "/".join(_key_name(k) for k in path)


def tree_to_tensors(prefix: str, tree) -> dict:
    """{prefix/path: NumPy array} for every leaf. Host sync: copies the arrays to the host."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    host = jax.device_get([leaf for _, leaf in leaves])
    tensors = {}
    for (path, _), value in zip(leaves, host):
        name = f"{prefix}/{path_name(path)}" if path else prefix
        if name in tensors:
            raise ValueError(f"Two arrays would be saved under the name {name!r}; rename the "
                             "layers so that no name contains '/'.")
        tensors[name] = np.asarray(value)
    return tensors


def tensors_to_tree(prefix: str, template, tensors: dict):
    """The pytree `template` with its leaves read from `tensors` (same names as tree_to_tensors).

    Raises ValueError naming the first missing, extra or differently shaped array."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    values, expected = [], set()
    for path, leaf in leaves:
        name = f"{prefix}/{path_name(path)}" if path else prefix
        expected.add(name)
        if name not in tensors:
            raise ValueError(f"the array {name!r} is missing")
        value, want = tensors[name], (tuple(np.shape(leaf)), np.dtype(leaf.dtype))
        if (value.shape, value.dtype) != want:
            raise ValueError(f"the array {name!r} has shape {value.shape} and dtype {value.dtype}"
                             f"; expected shape {want[0]} and dtype {want[1]}")
        values.append(value)
    extra = sorted(n for n in tensors if n.startswith(prefix + "/") and n not in expected)
    if extra:
        raise ValueError(f"unexpected arrays {extra[:3]}")
    return jax.tree.unflatten(treedef, jax.device_put(values))


def nonfinite(tensors: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return sorted(name for name, a in tensors.items()
                  if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)))
