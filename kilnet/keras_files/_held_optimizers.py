"""Optimizers a model or one of its layers keeps as attributes (a GAN's `self.d_optimizer =
Adam(...)` set in a compile() of yours, a block's `self.block.opt`) in Keras weights files,
both ways.

Why a module of its own: Keras's saving walks a model's attributes, and those of every layer
and sub-model it reaches, and writes every optimizer it meets under the attribute's name in
that object's group (`d_optimizer/vars/0` its step count, `vars/1` its learning rate unless a
schedule gives it, then its slots; `block/opt/vars/...`, `layers/sequential/opt/vars/...`), as
it writes the compiled one under `optimizer` (kilnet.keras_files._optimizer); an optimizer met
twice is written once, where it is met first. Keras's optimizer reads such a group back only
into an optimizer holding as many variables, and otherwise skips it with a warning (one not
yet built holds its step count and learning rate only).

kilnet's optimizer holds its own variables once `build(var_list)` or `apply` made them. Where
they are Keras's list (`optimizer.variables` starting with `iteration`), they are written and
restored as they are; an optimizer not yet built writes and reads its step count (0) and
learning rate, as Keras's; anything else is left out, or skipped on loading, with a warning
naming the arrays.
"""

from __future__ import annotations

import warnings

import numpy as np

from kilnet._optimizer_attributes import held_optimizers
from kilnet.keras_files import _optimizer


def placed_optimizers(groups) -> list:
    """[(h5 group, optimizer)] of the optimizers held as attributes by the objects of
    `groups` ([(group, layer)] in Keras's walk order, "" for the model: a Layout's groups),
    each optimizer once, at the first place met: where Keras's saving writes them.

    Example:
        >>> import kilnet
        >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
        >>> model.g_optimizer = kilnet.optimizers.Adam()
        >>> model.layers[0].opt = kilnet.optimizers.SGD()
        >>> [group for group, _ in placed_optimizers([("", model),
        ...                                            ("layers/dense", model.layers[0])])]
        ['g_optimizer', 'layers/dense/opt']
    """
    placed, seen = [], set()
    for group, owner in groups:
        for name, optimizer in held_optimizers(owner):
            if id(optimizer) not in seen:
                seen.add(id(optimizer))
                placed.append((f"{group}/{name}" if group else name, optimizer))
    return placed


def _keras_list(optimizer):
    """The optimizer's Variables where they are Keras's list (built, step count first); None
    where it has none (not built) or keeps them in another layout."""
    if not optimizer.built:
        return None
    variables = optimizer.variables
    return variables if variables and variables[0].name == "iteration" else None


def arrays_to_write(placed, path) -> tuple:
    """([(h5 path, array)], {group: optimizer name}) for the optimizers held as attributes
    (`placed`: placed_optimizers), as Keras's save_weights writes them; one whose state has no
    Keras layout is left out with a warning (Keras then starts it afresh). Host sync.

    Example:
        >>> import kilnet
        >>> placed = [("g_optimizer", kilnet.optimizers.Adam(0.5, name="adam"))]
        >>> arrays, groups = arrays_to_write(placed, "m.weights.h5")
        >>> [(h5, a.tolist()) for h5, a in arrays], groups
        ([('g_optimizer/vars/0', 0), ('g_optimizer/vars/1', 0.5)], {'g_optimizer/vars': 'adam'})
    """
    arrays, groups = [], {}
    for name, optimizer in placed:
        variables = _keras_list(optimizer)
        if variables is not None:
            values = [np.array(v.numpy()) for v in variables]
        elif not optimizer.built and _optimizer.fresh_arrays(optimizer) is not None:
            values = _optimizer.fresh_arrays(optimizer)
        else:
            _optimizer.warn_left_out(path, f"the state of the optimizer {name!r} "
                                           f"({type(optimizer).__name__}) is left out (kilnet "
                                           "keeps it in another layout); Keras starts it afresh",
                                     stacklevel=5)
            continue
        arrays += [(f"{name}/vars/{i}", value) for i, value in enumerate(values)]
        groups[f"{name}/vars"] = optimizer.name
    return arrays, groups


def planned_restores(placed, weights) -> list:
    """The restores of the optimizers held as attributes (`placed`: placed_optimizers) from
    their groups in the open weights file, as Keras's load_weights does them, to call once the
    model's weights are set: every array is read and its shape checked here, before anything
    is set. A group that does not fit (another number of variables, or a state kilnet keeps
    in another layout) is skipped with a warning naming its arrays, as Keras skips it."""
    planned = []
    for name, optimizer in placed:
        stored = weights.datasets(name) if weights.group(name) is not None else []
        if not stored:
            continue
        variables = _keras_list(optimizer)
        if variables is not None and len(variables) == len(stored):
            arrays = [weights.read(f"{name}/vars/{i}", tuple(v.shape), np.dtype(v.dtype),
                                   kinds=("f", "i", "u")) for i, v in enumerate(variables)]
            planned.append(_assigning(variables, arrays))
        elif not optimizer.built and len(stored) == len(_optimizer.fresh_arrays(optimizer)
                                                         or ()):
            planned.append(_rate_restore(name, optimizer, weights))
        else:
            _warn_skipped(weights.path, name, optimizer, stored, variables)
    return planned


def skipped_optimizer_groups(model, weights) -> list:
    """The file's top-level groups holding the state of an optimizer kept as an attribute that
    `model` does not have (a `.keras` file loads before the compile() of yours that makes
    them): only `vars/<i>`, the first an integer scalar (the step count). Keras's loading
    walks the model, not the file, and never reads them; kilnet skips them with a warning
    naming them, where any other array no layer uses is refused."""
    held = {name for name, _ in held_optimizers(model)} | {"optimizer"}
    found = []
    for name in weights.file:
        group = weights.group(name)
        if name in held or group is None or set(group) != {"vars"}:
            continue
        stored = weights.datasets(name)
        first = weights.dataset(f"{name}/vars/0")
        if first is not None and first.shape == () and first.dtype.kind in "iu" and all(
                path.rpartition("/")[0] == f"{name}/vars" for path in stored):
            found.append(name)
    if found:
        arrays = [path for name in found for path in weights.datasets(name)]
        more = f" and {len(arrays) - 3} more" if len(arrays) > 3 else ""
        warnings.warn(f"{weights.path}: skipped the arrays {arrays[:3]}{more}: the state of "
                      f"the optimizers {found} kept as attributes, which the model does not "
                      "have (yet). Call compile() (yours, which makes them), then load_weights "
                      "to restore them.", stacklevel=5)
    return found


def _assigning(variables, arrays):
    """Setting each of an optimizer's Variables (Keras's list) to its array, read already."""
    def restore():
        for variable, array in zip(variables, arrays):
            variable.assign(array)
    return restore


def _warn_skipped(path, name, optimizer, stored, variables) -> None:
    have = "no variables yet" if not optimizer.built else (
        f"{len(variables)} variables" if variables is not None
        else "its state in another layout")
    warnings.warn(f"{path}: skipped loading the optimizer {name!r} ({type(optimizer).__name__})"
                  f": the file holds {len(stored)} variables for it ({stored[:3]}"
                  f"{' ...' if len(stored) > 3 else ''}) and kilnet's has {have}; it keeps its "
                  "state (Keras's load_weights skips an optimizer that does not fit so too).",
                  stacklevel=6)


def _rate_restore(name, optimizer, weights):
    """For an optimizer not yet built: setting the file's learning rate (nothing where a
    schedule gives it); its step count is 0 as a Keras optimizer's before its first update,
    else (plain SGD, which has no slots) a warning says it is not kept."""
    steps = int(weights.read(f"{name}/vars/0", (), np.int64, kinds=("i", "u")))
    if steps:   # Keras's SGD without momentum: no slots, but it has run
        warnings.warn(f"{weights.path}: the step count {steps} of the optimizer {name!r} is "
                      "not restored: kilnet's optimizer holds one once built (build or apply); "
                      "it starts from 0.", stacklevel=6)
    if len(_optimizer.fresh_arrays(optimizer)) < 2:
        return lambda: None
    rate = float(weights.read(f"{name}/vars/1", (), np.float32))
    if not (np.isfinite(rate) and rate > 0):
        weights.fail(f"the learning rate {rate} of the optimizer {name!r} is invalid.")

    def restore():
        optimizer.learning_rate = rate
    return restore
