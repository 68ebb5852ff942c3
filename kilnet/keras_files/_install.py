"""Setting the variables of a Layout from an open Keras weights file.

Why a module of its own: a model's file (_import) and a FeatureSpace's file (_feature_space)
are read the same way once their Layout is known: every slot's array checked and read before
any is assigned, so that a file refused half-way leaves the weights as they were, and a file
that holds arrays nothing reads is refused rather than half-used (it was written for another
model or config).
"""

from __future__ import annotations

import numpy as np

from kilnet import _saving_hooks
from kilnet.errors import ModelFileError
from kilnet.keras_files._h5 import group_reader

SHOWN_STRAYS = 3   # paths named in the error; a count says how many more


def install_layout(layout, weights, scanned, owner) -> None:
    """Set `layout`'s slots from `weights` (an open _h5.WeightsFile), then let its hooked
    layers read their own `vars` groups. Every array is read, its declared shape and dtype
    checked, before the first is assigned. `scanned`: the top-level groups whose every
    dataset must be used by a slot or a hooked layer ("" for the whole file); `owner` names
    what the file is read into in the error ("the model", "the feature space").

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet.keras_files import _h5, _install, _layout
        >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
        >>> space.adapt({"x": [1.0, 2.0, 3.0]})
        >>> layout = _layout.feature_space_layout(space)
        >>> arrays = [(h5, np.full(v.shape, 5.0, "float32")) for h5, _, v in layout.slots]
        >>> with _h5.WeightsFile(_h5.write_weights(arrays, {}), "w.h5") as weights:
        ...     _install.install_layout(layout, weights, [""], "the feature space")
        >>> np.asarray(space.preprocessors["x"].mean).ravel().tolist()
        [5.0]
    """
    arrays = [weights.read(h5, variable.shape, np.dtype(variable.dtype))
              for h5, _, variable in layout.slots]
    refuse_stray_arrays(layout, weights, scanned, owner)
    for (_, _, variable), array in zip(layout.slots, arrays):
        variable.assign(array)
    _saving_hooks.load_own_variables(layout.hooked, group_reader(weights), weights.path)


def refuse_stray_arrays(layout, weights, scanned, owner) -> None:
    """Raise ModelFileError naming the datasets under `scanned` that neither a slot of
    `layout` nor a hooked layer's `vars` group reads (see install_layout)."""
    used = {h5 for h5, _, _ in layout.slots}
    # read by the layers' own load_own_variables, and by the held optimizers' restores
    # (kilnet.keras_files._held_optimizers, which skip a group that does not fit, as Keras)
    for group in [g for g, _ in layout.hooked] + [f"{g}/vars" for g, _ in layout.optimizers]:
        if weights.group(group) is not None:
            used.update(weights.datasets(group))
    stray = [path for under in scanned if not under or under in weights.file
             for path in weights.datasets(under) if path not in used]
    if stray:
        more = len(stray) - SHOWN_STRAYS
        raise ModelFileError(weights.path, f"its weights hold arrays no layer of {owner} uses: "
                             f"{stray[:SHOWN_STRAYS]}{f' and {more} more' if more > 0 else ''}"
                             " (a file written for another model or config).")
