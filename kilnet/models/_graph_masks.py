"""The sequence masks of one run of a functional graph, as Keras's tensors carry them.

Why a module of its own: Keras's Functional runs its layers on arrays that carry their masks
(`_keras_mask`), and what a layer receives depends on where its mask comes from. Where Keras's
symbolic call filled `mask` itself (a call taking `mask`, one tensor argument given by
position, no keyword arguments, already of the layer's compute dtype), the mask is recorded in
the node and given again when the graph runs: the mask as the graph made it. Every other mask
argument, and the masks the arrays carry into a layer's own `call`, are those the arrays carry
at that point of the run, and a MultiHeadAttention call (directly in the graph or inside a
layer's `call`) takes the masks off its query, value and key: the layers run after it see none
on that tensor. So two tables: the masks as made, and the masks the arrays still carry."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from kilnet.layers._node import KerasTensor
from kilnet.layers._tensor_masks import attach_mask, mask_of


class GraphMasks:
    """{tensor uid: mask} of a graph's run: `made` (what layers computed or the call gave) and
    `carried` (what the arrays still carry, after MultiHeadAttention took some off).

    Example:
        >>> masks = GraphMasks({7: "m"})
        >>> masks.carried_by([7, 8]), bool(masks)
        (['m', None], True)
    """

    def __init__(self, given: dict):
        self.made = dict(given)
        self.carried = dict(given)

    def __bool__(self) -> bool:
        return bool(self.made)

    def carried_by(self, uids) -> list:
        """The masks the arrays of tensors `uids` carry (None where none)."""
        return [self.carried.get(uid) for uid in uids]

    def previous_masks(self, layer, node) -> tuple:
        """(as made, as the call has it) masks of the node's first argument, taken before the
        call: what `compute_mask` gets for the outputs' masks as the graph made them (Keras's
        symbolic call) and as the arrays will carry them (the call's own `mask`, else the
        first argument's carried masks: Keras's previous_mask)."""
        made = self._first_argument_masks(node, self.made)
        if not self.made or records_its_mask(layer, node):   # no mask yet: nothing to tell apart
            return made, made
        return made, self._first_argument_masks(node, self.carried)

    @staticmethod
    def _first_argument_masks(node, table: dict):
        return jax.tree.map(functools.partial(_mask_in, table=table), node.args[0],
                            is_leaf=_is_tensor)

    def call_masks(self, layer, node) -> dict:
        """The mask arguments the node's call gets by itself. Keras records the masks its
        symbolic call filled in the node, so that when the graph runs they are arguments
        given, and count as tensor arguments for the rule once more: `call(self, inputs,
        inputs_mask=None, mask=None)` gets `mask` when the model is made, then both."""
        table = self.made if records_its_mask(layer, node) else self.carried
        mask_of_tensor = functools.partial(_mask_in, table=table)
        made = layer.automatic_masks(node.args, node.kwargs, mask_of_tensor)
        if not made:
            return made
        return {**made, **layer.automatic_masks(node.args, {**node.kwargs, **made},
                                                mask_of_tensor)}

    def attach_to_arguments(self, node, values: dict) -> None:
        """Let the arrays the node's layer is called on carry their tensors' masks, so that a
        layer called inside its `call` (MultiHeadAttention on the tensor the call received)
        picks them up as Keras's does from `_keras_mask`."""
        for tensor in node.inputs:
            if self.carried.get(tensor.uid) is not None:
                attach_mask(values[tensor.uid], self.carried[tensor.uid])

    def attach_to_outputs(self, outputs, values: dict) -> None:
        """Let the arrays of the graph's `outputs` carry the masks their tensors have at the
        end of the run (none where none), so that a layer called on a model's eager outputs
        finds them as Keras's `_keras_mask`.

        Example:
            >>> import jax.numpy as jnp
            >>> tensor = KerasTensor((None, 2), "float32")
            >>> values = {tensor.uid: jnp.zeros((1, 2))}
            >>> GraphMasks({tensor.uid: jnp.array([[True, False]])}).attach_to_outputs(
            ...     [tensor], values)
            >>> mask_of(values[tensor.uid]).tolist()
            [[True, False]]
        """
        for tensor in outputs:
            attach_mask(values[tensor.uid], self.carried.get(tensor.uid))

    def after_call(self, layer, node, values: dict) -> None:
        """Forget the masks the call took off its arguments: those of a MultiHeadAttention's
        query, value and key, and those a layer's `call` let an inner MultiHeadAttention take
        off the arrays it received."""
        for consumed in layer.mask_consuming_arguments(node.args, node.kwargs):
            for tensor in jax.tree.leaves(consumed, is_leaf=_is_tensor):
                if isinstance(tensor, KerasTensor):
                    self.carried.pop(tensor.uid, None)
                    attach_mask(values[tensor.uid], None)
        for tensor in node.inputs:
            if tensor.uid in self.carried and mask_of(values[tensor.uid]) is None:
                del self.carried[tensor.uid]

    def record(self, layer, node, first_argument, previous: tuple, run_masks=None) -> None:
        """The node's output masks, from `previous` (previous_masks, taken before the call):
        those its outputs were marked to carry (has_mask), and any, when a mask given to the
        model's inputs reached the node. As made and as carried, computed once where the two
        agree. `run_masks`: the masks a nested functional model's own run gave its outputs
        (one per output, None where none), taken as they are."""
        if run_masks is not None:
            for tensor, mask in zip(node.outputs, run_masks):
                if mask is not None:
                    self.made[tensor.uid] = self.carried[tensor.uid] = mask
            return
        made_previous, carried_previous = previous
        given_flows = layer.supports_masking and any(
            m is not None for m in jax.tree.leaves(made_previous))
        if not (given_flows or any(t.has_mask for t in node.outputs)):
            return
        made = layer.compute_mask(first_argument, made_previous)
        carried = made if _same_masks(made_previous, carried_previous) else \
            layer.compute_mask(first_argument, carried_previous)
        _store(node, made, self.made, given_flows)
        _store(node, carried, self.carried, given_flows)


def _store(node, output_masks, table: dict, given_flows: bool) -> None:
    flat = jax.tree.leaves(output_masks, is_leaf=lambda m: m is None)
    if len(flat) == 1 and len(node.outputs) > 1:
        flat = flat * len(node.outputs)
    for tensor, mask in zip(node.outputs, flat):
        if (tensor.has_mask or given_flows) and mask is not None:
            table[tensor.uid] = mask


def _same_masks(first, second) -> bool:
    leaves = functools.partial(jax.tree.leaves, is_leaf=lambda m: m is None)
    a, b = leaves(first), leaves(second)
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def records_its_mask(layer, node) -> bool:
    """Whether Keras's symbolic call recorded the `mask` it filled in the node: a call that
    takes `mask`, on one tensor given by position, with no keyword arguments, of the layer's
    compute dtype (Keras converts the arguments of any other call, and the mask it fills goes
    to that copy)."""
    if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], KerasTensor):
        return False
    if not layer.accepts_mask:
        return False
    try:
        return jnp.dtype(node.args[0].dtype) == jnp.dtype(layer.compute_dtype)
    except TypeError:   # a string tensor, a dtype of no floating kind
        return False


def _mask_in(tensor, table: dict):
    """The mask `table` has for a graph tensor (None for a constant)."""
    return table.get(tensor.uid) if isinstance(tensor, KerasTensor) else None


def _is_tensor(value) -> bool:
    return isinstance(value, KerasTensor)
