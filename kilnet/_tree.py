"""Helpers on the nested dicts that hold a model's arrays (keyed by layer name, then weight
name). A leaf module: it imports nothing from kilnet.
"""

from __future__ import annotations


def get_path(tree: dict, path: tuple):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path: tuple, value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


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
