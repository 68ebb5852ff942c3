"""Which of a call's mask arguments get a sequence mask without being given one: Keras 3's rule.

Why a module of its own: the same rule decides what a layer receives wherever it is called (a
functional graph's node, an array carrying `_keras_mask` outside a graph, the trace that builds
a Keras-form layer), and those three places must agree, or a layer gets a mask in one and not
in another (a `call` that needs `inputs_mask` then fails while its model is built).

The rule, as Keras applies it to the arguments of `call` bound to their names:
- with ONE tensor argument (an array, or a list/tuple/dict of arrays), `mask` gets its mask;
- with SEVERAL, each argument `<name>` whose call also takes `<name>_mask` gets its mask there,
  and `mask` gets nothing (`call(self, inputs, encoder_outputs, mask=None)` receives None;
  `call(self, inputs, encoder_outputs, inputs_mask=None)` receives the mask of `inputs`).
A mask argument given by the caller is never replaced. kilnet's own layers follow it too: an
RNN called with `initial_state=` has two tensor arguments, so its input's mask is not applied,
as in Keras 3 (keras.io's seq2seq encoder-decoders feed the encoder's states this way; the
output still carries the input's mask, which `compute_mask` passes on from the first argument).
"""

from __future__ import annotations

import functools
import inspect

import jax


def automatic_masks(signature: "CallArguments", args, kwargs, mask_of) -> dict:
    """{mask argument name: mask} for the masks a call on `args` / `kwargs` gets by itself.

    `mask_of(leaf)` gives a tensor's mask (or None); an argument whose tensors carry none
    fills nothing.

    Example:
        >>> import numpy as np
        >>> names = CallArguments(("inputs", "encoder_outputs"), ("inputs_mask", "mask"))
        >>> x, e, m = np.ones((1, 2, 3)), np.ones((1, 2, 3)), np.array([[True, False]])
        >>> sorted(automatic_masks(names, (x, e), {}, lambda t: m if t is x else None))
        ['inputs_mask']
        >>> sorted(automatic_masks(names, (x,), {}, lambda t: m if t is x else None))
        ['mask']
    """
    bound = dict(zip(signature.positional, args))
    bound.update(kwargs)
    tensors = {name: value for name, value in bound.items() if is_tensor_argument(value)}
    targets = {}
    if "mask" in signature.names and bound.get("mask") is None and len(tensors) == 1:
        targets["mask"] = next(iter(tensors.values()))
    if len(tensors) > 1:
        for name, value in tensors.items():
            wanted = f"{name}_mask"
            if wanted in signature.names and bound.get(wanted) is None:
                targets[wanted] = value
    found = {}
    for name, source in targets.items():
        masks = jax.tree.map(mask_of, source, is_leaf=_is_tensor)
        if any(m is not None for m in jax.tree.leaves(masks, is_leaf=lambda m: m is None)):
            found[name] = masks
    return found


def arguments_named(signature: "CallArguments", args, kwargs, names) -> list:
    """The values of the call arguments called `names` that the call was given (not None).

    Example:
        >>> names = CallArguments(("query", "value", "key"))
        >>> arguments_named(names, ("q", "v"), {}, ("query", "value", "key"))
        ['q', 'v']
    """
    bound = dict(zip(signature.positional, args))
    bound.update(kwargs)
    return [bound[name] for name in names if bound.get(name) is not None]


class CallArguments:
    """The argument names of a call: those that can come by position, in order, and all of
    them (keyword-only ones too), as the mask rule binds a call's arguments.

    Example:
        >>> def call(self, inputs, encoder_outputs, *, inputs_mask=None): ...
        >>> arguments = CallArguments.of(call, skipped=1)
        >>> arguments.positional, arguments.names
        (('inputs', 'encoder_outputs'), ('inputs', 'encoder_outputs', 'inputs_mask'))
    """

    def __init__(self, positional: tuple, keyword_only: tuple = ()):
        self.positional = tuple(positional)
        self.names = self.positional + tuple(keyword_only)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def of(fn, skipped: int) -> "CallArguments":
        """The arguments of function `fn` after its first `skipped` ones (self; params, state)."""
        try:
            parameters = list(inspect.signature(fn).parameters.values())[skipped:]
        except (TypeError, ValueError):
            return CallArguments(())
        positional = [p.name for p in parameters
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword_only = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        return CallArguments(positional, keyword_only)


def is_tensor_argument(value) -> bool:
    """Whether a call argument counts as a tensor for the mask rule: a tensor, or a non-empty
    list/tuple/dict whose leaves are all tensors (or None), as Keras counts them.

    Example:
        >>> import numpy as np
        >>> is_tensor_argument(np.ones(2)), is_tensor_argument([np.ones(2)]), is_tensor_argument(3)
        (True, True, False)
    """
    if _is_tensor(value):
        return True
    if isinstance(value, (list, tuple, dict)) and len(value) > 0:
        leaves = jax.tree.leaves(value, is_leaf=lambda v: v is None or _is_tensor(v))
        return any(_is_tensor(v) for v in leaves) and all(
            v is None or _is_tensor(v) for v in leaves)
    return False


def _is_tensor(value) -> bool:
    # arrays, tracers and symbolic tensors alike (KerasTensor has shape and dtype)
    return hasattr(value, "shape") and hasattr(value, "dtype")
