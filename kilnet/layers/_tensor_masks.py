"""The sequence mask an array carries from one layer call to the next, outside a functional
graph: Keras's `_keras_mask`.

Why a module of its own: in a subclassed model, `self.lstm(self.embedding(x))` must see the
padding mask the embedding made, as in Keras, with no `mask=` written by the user; the same for
eager calls (`embedding(x)._keras_mask`) and a Sequential without a declared input. A functional
graph passes masks along its edges (kilnet.models); everywhere else the mask rides on the
output array itself. Concrete arrays take it as an attribute, as Keras sets it; traced arrays
(inside a compiled step) refuse attributes, so their masks are kept in a table by identity,
each entry removed when its array is freed.
"""

from __future__ import annotations

import weakref

import jax

ATTRIBUTE = "_keras_mask"   # Keras's attribute name, which tutorials print

_by_id: dict = {}   # id(traced array) -> its mask, for arrays that take no attribute


def attach_mask(array, mask) -> None:
    """Let `array` carry `mask` (None: carry none).

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((1, 3))
        >>> attach_mask(x, jnp.array([[True, True, False]]))
        >>> mask_of(x).tolist()
        [[True, True, False]]
    """
    try:
        setattr(array, ATTRIBUTE, mask)
        if getattr(array, ATTRIBUTE, None) is mask:
            return
    except AttributeError:
        pass
    key = id(array)
    if mask is None:
        _by_id.pop(key, None)
        return
    if key not in _by_id:
        weakref.finalize(array, _by_id.pop, key, None)
    _by_id[key] = mask


def mask_of(array):
    """The mask `array` carries, or None.

    Example:
        >>> import numpy as np
        >>> mask_of(np.ones(2)) is None
        True
    """
    mask = getattr(array, ATTRIBUTE, None)
    return mask if mask is not None else _by_id.get(id(array))


def masks_of(structure):
    """The masks of a call's first argument, in its structure, or None if none carries one."""
    masks = jax.tree.map(mask_of, structure, is_leaf=_is_array_like)
    return None if all(m is None for m in jax.tree.leaves(masks)) else masks


def attach_masks(outputs, masks) -> None:
    """Attach `masks` (compute_mask's result) to a call's outputs: one mask per output, or one
    mask for every output."""
    leaves = [o for o in jax.tree.leaves(outputs) if _is_array_like(o)]
    found = jax.tree.leaves(masks, is_leaf=lambda m: m is None)
    if len(found) == 1 and len(leaves) > 1:
        found = found * len(leaves)
    for output, mask in zip(leaves, found):
        attach_mask(output, mask)


def carry_masks(originals, copies) -> None:
    """Let each array of `copies` that is not its original (`originals`, the same structure)
    carry its original's mask: the cast a layer's dtype policy makes of its inputs, as Keras's
    autocast keeps `_keras_mask`, so a layer called inside a mixed-precision `call` still sees
    the padding mask.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.ones((1, 2))
        >>> attach_mask(x, jnp.array([[True, False]]))
        >>> y = x.astype("bfloat16")
        >>> carry_masks((x,), (y,))
        >>> mask_of(y).tolist()
        [[True, False]]
    """
    for original, copy in zip(jax.tree.leaves(originals), jax.tree.leaves(copies)):
        if copy is not original and _is_array_like(copy):
            mask = mask_of(original)
            if mask is not None:
                attach_mask(copy, mask)


def _is_array_like(value) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")
