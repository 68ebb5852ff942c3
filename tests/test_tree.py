"""kilnet.tree against keras.tree (Keras 3, the reference) on the structures a custom layer or
train_step meets: lists, tuples, dicts (plain, ordered, default), namedtuples, None leaves,
arrays and Variables as leaves."""

import collections
import os

import numpy as np
import pytest

os.environ["KERAS_BACKEND"] = "jax"
keras = pytest.importorskip("keras", reason="the reference is keras.tree")

import kilnet  # noqa: E402
from kilnet import tree  # noqa: E402

Point = collections.namedtuple("Point", ["x", "y"])
OtherPoint = collections.namedtuple("OtherPoint", ["x", "y"])

STRUCTURES = [
    1, None, "text", [], (), {},
    [1, 2, 3], (1, [2, None]), {"b": 1, "a": [2, 3]},
    collections.OrderedDict([("b", 1), ("a", 2)]),
    collections.defaultdict(list, {"z": 1, "y": (2, 3)}),
    Point(1, [2, {"k": None}]),
    [{"c": (1, 2), "a": {"e": 3, "d": [4, None]}}, 5],
    {3: "three", 1: "one"},
]


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_flatten_and_paths_equal_keras(structure):
    assert tree.flatten(structure) == keras.tree.flatten(structure)
    assert tree.flatten_with_path(structure) == keras.tree.flatten_with_path(structure)
    assert tree.is_nested(structure) == keras.tree.is_nested(structure)


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
def test_pack_and_map_equal_keras(structure):
    flat = [f"v{i}" for i in range(len(keras.tree.flatten(structure)))]
    mine, theirs = tree.pack_sequence_as(structure, flat), keras.tree.pack_sequence_as(
        structure, flat)
    assert mine == theirs and type(mine) is type(theirs)
    if isinstance(theirs, dict):
        assert list(mine) == list(theirs)   # the structure's own key order, as Keras
    assert tree.map_structure(repr, structure) == keras.tree.map_structure(repr, structure)
    assert (tree.map_structure(repr, structure, none_is_leaf=False)
            == keras.tree.map_structure(repr, structure, none_is_leaf=False))
    assert tree.lists_to_tuples(structure) == keras.tree.lists_to_tuples(structure)


def test_traverse_equals_keras_both_ways():
    structure = [(1, 2), [3], {"a": 4, "b": [5, None]}]
    for top_down in (True, False):
        mine, theirs = [], []
        assert (tree.traverse(mine.append, structure, top_down=top_down)
                == keras.tree.traverse(theirs.append, structure, top_down=top_down))
        assert mine == theirs

    def prune(node):   # replaces lists of length 1 with None, and 4 with "four"
        if isinstance(node, list) and len(node) == 1:
            return tree.MAP_TO_NONE
        return "four" if node == 4 else None

    def keras_prune(node):
        result = prune(node)
        return keras.tree.MAP_TO_NONE if result is tree.MAP_TO_NONE else result
    assert tree.traverse(prune, structure) == keras.tree.traverse(keras_prune, structure)


def test_map_structure_several_and_up_to_equal_keras():
    a, b = [1, (2, {"x": 3})], [10, (20, {"x": 30})]
    assert tree.map_structure(lambda u, v: u + v, a, b) == keras.tree.map_structure(
        lambda u, v: u + v, a, b)
    shallow, deep = [0, [0, 0]], [[1, 1], [2, (3, 4)]]
    assert tree.map_structure_up_to(shallow, str, deep) == keras.tree.map_structure_up_to(
        shallow, str, deep)
    # Keras documents None as the shallow structure's leaf ([None, None] maps len over two
    # lists); Keras 3.15 refuses its own example (its leaf check counts None as a node).
    assert (tree.map_structure_up_to([None, [None, None]], str, deep)
            == ["[1, 1]", ["2", "(3, 4)"]])
    assert tree.map_structure_up_to([None, None], len, [[1, 1], [2, 2, 2]]) == [2, 3]
    shapes = {"a": (None, 3), "b": [(1, 2), ()], "c": None}
    assert (tree.map_shape_structure(lambda s: ("shape",) + tuple(s or ()), shapes)
            == keras.tree.map_shape_structure(lambda s: ("shape",) + tuple(s or ()), shapes))


@pytest.mark.parametrize("a, b", [
    ([1, 2], (1, 2)),                 # list vs tuple
    ([1, [2]], [1, 2]),               # deeper on one side
    ({"a": 1}, {"b": 1}),             # other keys
    (Point(1, 2), OtherPoint(1, 2)),  # other namedtuple class
    ([1, 2], [1, 2, 3]),              # other length
])
def test_structure_mismatches_are_refused_as_keras(a, b):
    with pytest.raises(ValueError):
        keras.tree.assert_same_structure(a, b)
    with pytest.raises(ValueError, match="same nested structure"):
        tree.assert_same_structure(a, b)
    with pytest.raises(ValueError):
        tree.map_structure(lambda u, v: u, a, b)


def test_assert_same_paths_ignores_container_types_as_keras():
    tree.assert_same_paths([0, 1], (2, 3))
    keras.tree.assert_same_paths([0, 1], (2, 3))
    tree.assert_same_paths(Point(0, 1), OtherPoint(2, 3))
    tree.assert_same_structure({"a": 1}, collections.OrderedDict(a=2))   # dict kinds match
    with pytest.raises(ValueError, match=r"in a, not in b: \[\('a',\)\]"):
        tree.assert_same_paths({"a": 1, "c": 2}, {"b": 1, "c": 2})
    with pytest.warns(DeprecationWarning):
        tree.assert_same_structure([1], [2], check_types=True)


def test_arrays_variables_and_symbolic_tensors_are_leaves():
    variable = kilnet.Variable(np.ones(2, "float32"))
    symbolic = kilnet.Input((3,))
    structure = {"w": variable, "x": np.zeros((2, 2)), "s": symbolic,
                 "j": kilnet.ops.ones((2,))}
    assert [type(v) for v in tree.flatten(structure)] == [
        type(structure[k]) for k in sorted(structure)]
    assert not tree.is_nested(variable) and not tree.is_nested(symbolic)


def test_pack_sequence_as_refuses_a_wrong_count_with_the_fix():
    with pytest.raises(ValueError, match="2 leaves but flat_sequence has 3 items"):
        tree.pack_sequence_as([0, (0,)], [1, 2, 3])
    assert tree.pack_sequence_as(7, [8]) == keras.tree.pack_sequence_as(7, [8])
