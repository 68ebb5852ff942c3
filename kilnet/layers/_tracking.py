"""Lists and dicts of sub-layers kept as a layer's attributes, tracked as Keras tracks them.

Why a module of its own: Keras's layers wrap a list or dict assigned as an attribute, so that a
layer added to it later is one of the owner's sub-layers too. keras.io's code fills such
containers after assigning them (`self.grns = []` then `self.grns.append(GatedResidualNetwork())`
in the variable-selection network; `self.blocks["a"] = Dense(3)`), and nests them. The owner
learns of each layer when it enters a container, so its sub-layers keep the order in which they
were added, which is Keras's weight order.

The containers are registered as JAX pytree nodes, flattening as a list and a dict do.
"""

from __future__ import annotations

import jax


def tracked(value, owner):
    """`value` ready to be kept as an attribute of `owner` (a layer): a list or dict that may
    hold layers (empty, or holding some, at any depth) becomes a TrackedList / TrackedDict
    reporting additions to `owner`; anything else is returned as it is."""
    if type(value) is list and _may_hold_layers(value):
        return TrackedList(value, owner)
    if type(value) is dict and _may_hold_layers(list(value.values())):
        return TrackedDict(value, owner)
    return value


def contents(value) -> list:
    """Every item inside `value` (lists, tuples and dicts opened, at any depth), in order."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, (list, tuple)):
        return [value]
    return [item for entry in value for item in contents(entry)]


def _may_hold_layers(items) -> bool:
    from kilnet.layers._base import Layer

    found = contents(items)   # empty containers, nested or not, are filled later
    return not found or any(isinstance(item, Layer) for item in found)


class TrackedList(list):
    """A list kept as a layer's attribute: layers appended, inserted or set later become the
    owner's sub-layers (and leave them when removed), as in Keras.

    Example:
        >>> import kilnet
        >>> class Stack(kilnet.layers.Layer):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.blocks = []
        ...         for _ in range(2):
        ...             self.blocks.append(kilnet.layers.Dense(3))
        ...     def call(self, x):
        ...         for block in self.blocks:
        ...             x = block(x)
        ...         return x
        >>> len(Stack().sublayers)
        2
    """

    def __init__(self, items, owner):
        super().__init__(tracked(item, owner) for item in items)
        self._owner = owner

    def _add(self, items):
        items = [tracked(item, self._owner) for item in items]
        for item in contents(items):
            self._owner.track_attribute_item(item)
        return items

    def _drop(self, items):
        for item in contents(list(items)):
            self._owner.untrack_attribute_item(item)

    def append(self, item):
        super().append(self._add([item])[0])

    def extend(self, items):
        super().extend(self._add(list(items)))

    def __iadd__(self, items):
        self.extend(items)
        return self

    def insert(self, index, item):
        super().insert(index, self._add([item])[0])

    def __setitem__(self, index, value):
        old = self[index]
        new = self._add(list(value)) if isinstance(index, slice) else self._add([value])[0]
        super().__setitem__(index, new)
        self._drop(old if isinstance(index, slice) else [old])

    def __delitem__(self, index):
        old = self[index]
        super().__delitem__(index)
        self._drop(old if isinstance(index, slice) else [old])

    def pop(self, index=-1):
        item = super().pop(index)
        self._drop([item])
        return item

    def remove(self, item):
        super().remove(item)
        self._drop([item])

    def clear(self):
        old = list(self)
        super().clear()
        self._drop(old)

    def __reduce_ex__(self, protocol):   # copies and pickles are plain lists
        return list, (list(self),)


class TrackedDict(dict):
    """A dict kept as a layer's attribute: layers set under a key later become the owner's
    sub-layers, in the order they were added, as in Keras.

    Example:
        >>> import kilnet
        >>> class Heads(kilnet.layers.Layer):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.heads = {}
        ...         self.heads["price"] = kilnet.layers.Dense(1)
        ...         self.heads["rating"] = kilnet.layers.Dense(1)
        ...     def call(self, x):
        ...         return self.heads["price"](x) + self.heads["rating"](x)
        >>> [layer.name for layer in Heads().sublayers]
        ['dense', 'dense_1']
    """

    def __init__(self, items, owner):
        super().__init__((key, tracked(value, owner)) for key, value in items.items())
        self._owner = owner

    def __setitem__(self, key, value):
        old = self.get(key)
        value = tracked(value, self._owner)
        for item in contents(value):
            self._owner.track_attribute_item(item)
        super().__setitem__(key, value)
        if old is not None and old is not value:
            self._drop([old])

    def _drop(self, items):
        for item in contents(list(items)):
            self._owner.untrack_attribute_item(item)

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key):
        old = self[key]
        super().__delitem__(key)
        self._drop([old])

    def pop(self, key, *default):
        if key not in self:
            return super().pop(key, *default)
        old = super().pop(key)
        self._drop([old])
        return old

    def popitem(self):
        key, old = super().popitem()
        self._drop([old])
        return key, old

    def clear(self):
        old = list(self.values())
        super().clear()
        self._drop(old)

    def __reduce_ex__(self, protocol):   # copies and pickles are plain dicts
        return dict, (dict(self),)


jax.tree_util.register_pytree_node(TrackedList, lambda items: (list(items), None),
                                   lambda _, children: list(children))
jax.tree_util.register_pytree_node(
    TrackedDict, lambda items: (list(items.values()), list(items.keys())),
    lambda keys, children: dict(zip(keys, children)))
