"""Keras's einops-style `rearrange`: axes reordered, merged and split by a pattern such as
"b h w c -> b (h w) c", as one reshape, one transpose and one reshape.

Example:
    >>> import numpy as np
    >>> rearrange(np.zeros((2, 4, 6, 3)), "b h w c -> b c (h w)").shape
    (2, 3, 24)
"""

from __future__ import annotations

import math
import re

import jax.numpy as jnp

from kilnet.ops._convert import as_array, dispatch_symbolic

__all__ = ["rearrange"]

_GROUP_OR_AXIS = re.compile(r"\(([^()]*)\)|(\w+)")


def rearrange(tensor, pattern, **axes_lengths):
    """`tensor` with its axes rearranged by an einops `pattern` "input axes -> output axes":
    named axes are reordered, "(h w)" merges axes into one, and on the input side splits one
    into several (all lengths but one of each split given as `axes_lengths`).

    Example:
        >>> import numpy as np
        >>> images = np.zeros((8, 30, 40, 3))
        >>> rearrange(images, "b h w c -> b c h w").shape
        (8, 3, 30, 40)
        >>> rearrange(images, "b (h1 h) w c -> (b h1) h w c", h1=2).shape
        (16, 15, 40, 3)
    """
    tensor = as_array(tensor)
    if not isinstance(pattern, str) or pattern.count("->") != 1:
        raise ValueError("Argument `pattern` must be a string 'input axes -> output axes', "
                         f"e.g. 'b h w c -> b (h w) c'. Received: pattern={pattern!r}")
    source, target = (_groups(side) for side in pattern.split("->"))
    if len(source) != tensor.ndim:
        raise ValueError(f"The input side of `pattern` names {len(source)} axes but the "
                         f"tensor has {tensor.ndim}. Received: pattern={pattern!r}, "
                         f"tensor.shape={tensor.shape}")
    lengths = _axis_lengths(source, tensor.shape, dict(axes_lengths), pattern)
    source_axes = [axis for group in source for axis in group]
    target_axes = [axis for group in target for axis in group]
    if sorted(source_axes) != sorted(target_axes):
        raise ValueError("Both sides of `pattern` must name the same axes, each once. "
                         f"Received: pattern={pattern!r}")
    split = tensor.reshape([lengths[axis] for axis in source_axes])
    moved = jnp.transpose(split, [source_axes.index(axis) for axis in target_axes])
    return moved.reshape([math.prod(lengths[axis] for axis in group) for group in target])


def _groups(side):
    """A pattern side's axes, each a list of names: "b (h w)" -> [["b"], ["h", "w"]]."""
    return [[axis] if axis else group.split() for group, axis in _GROUP_OR_AXIS.findall(side)]


def _axis_lengths(source, shape, lengths, pattern):
    """The length of every input axis name: a lone axis has its dimension's; in a split group,
    the one length not given is what the dimension leaves."""
    for group, dimension in zip(source, shape):
        unknown = [axis for axis in group if axis not in lengths]
        known = math.prod(lengths[axis] for axis in group if axis in lengths)
        if len(unknown) > 1:
            raise ValueError(f"Give the lengths of all but one of the axes {unknown} split from "
                             f"one axis, as keyword arguments. Received: pattern={pattern!r}, "
                             f"axes_lengths={lengths}")
        if unknown:
            lengths[unknown[0]] = dimension // known
        if math.prod(lengths[axis] for axis in group) != dimension:
            raise ValueError(f"The axes {group} do not divide the dimension {dimension} "
                             f"exactly. Received: pattern={pattern!r}, axes_lengths={lengths}")
    return lengths


dispatch_symbolic(globals(), __all__)
