"""A FeatureSpace as a Keras 3 `.keras` file, both ways.

Why a module of its own: Keras's `FeatureSpace.save("space.keras")` writes the space alone
(config.json with its class "FeatureSpace", its preprocessors' build configs, a Normalization's
statistics in model.weights.h5, an adapted vocabulary as an asset), and
`keras.models.load_model` gives the space back; its docs show that round trip. kilnet writes
the same layout, so the file opens in Keras, and reads Keras's (vocabularies from the assets),
as data, through the same checked readers as model files.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from kilnet import _safefile, _saving_hooks
from kilnet._version import __version__
from kilnet.errors import ModelFileError
from kilnet.keras_files import _archive, _h5, _layout
from kilnet.keras_files._export import KERAS_VERSION, refuse_non_finite
from kilnet.keras_files._install import install_layout

CLASS_NAME = "FeatureSpace"


def save_feature_space(space, filepath, overwrite=True) -> None:
    """Write an adapted `kilnet.utils.FeatureSpace` as Keras writes one, atomically.

    Example:
        >>> import os, tempfile, zipfile
        >>> import kilnet
        >>> from kilnet.keras_files import save_feature_space
        >>> space = kilnet.utils.FeatureSpace({"x": "float_normalized"})
        >>> space.adapt({"x": [1.0, 2.0, 3.0]})
        >>> path = os.path.join(tempfile.mkdtemp(), "space.keras")
        >>> save_feature_space(space, path)
        >>> sorted(zipfile.ZipFile(path).namelist())
        ['config.json', 'metadata.json', 'model.weights.h5']
    """
    path = os.fspath(filepath)
    build_config = space.get_build_config()   # first: it refuses an unadapted space
    entry = {"module": "keras.utils", "class_name": CLASS_NAME, "config":
             space.keras_file_config(), "registered_name": None,
             "build_config": build_config}
    metadata = {"keras_version": KERAS_VERSION, "kilnet_version": __version__,
                "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")}
    layout = _layout.feature_space_layout(space)
    data = _archive.write_members({
        _archive.METADATA: json.dumps(metadata).encode(),
        _archive.CONFIG: json.dumps(entry, default=_safefile.json_default).encode(),
        _archive.WEIGHTS: _weights_bytes(layout, path),
        **_saving_hooks.saved_assets(layout.groups, path)})
    _safefile.atomic_write(path, data, what="the feature space file", overwrite=overwrite)


def is_feature_space(spec) -> bool:
    """Whether a `.keras` file's config entry is a FeatureSpace (Keras's or kilnet's)."""
    return isinstance(spec, dict) and spec.get("class_name") == CLASS_NAME


def load_feature_space(spec, members, path):
    """The FeatureSpace a `.keras` file's config entry `spec` and `members` describe, its
    statistics and vocabularies set from the weights and assets."""
    from kilnet.utils import FeatureSpace

    try:
        space = FeatureSpace.from_config(spec.get("config"))
        space.build_from_config(spec.get("build_config") or {})
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"its FeatureSpace config is not one kilnet can make: "
                                   f"{error}") from None
    layout = _layout.feature_space_layout(space)
    if _archive.WEIGHTS not in members:
        raise ModelFileError(path, f"it has no {_archive.WEIGHTS}.")
    with _h5.WeightsFile(members[_archive.WEIGHTS], path) as weights:
        install_layout(layout, weights, [""], "the feature space")
    _saving_hooks.load_assets(layout.groups, members, path)
    return space


def _weights_bytes(layout, path) -> bytes:
    """The preprocessors' weights in Keras's groups, with the empty `vars` groups Keras's
    file lists for the space, its `concat` layer and each layer reached."""
    values = jax.device_get([variable.value for _, _, variable in layout.slots])
    arrays = [(h5, np.asarray(value)) for (h5, _, _), value in zip(layout.slots, values)]
    refuse_non_finite(path, [name for _, name, _ in layout.slots], values)
    arrays += _saving_hooks.own_variables_arrays(layout.hooked, path)
    groups = {"vars": "feature_space", "concat/vars": "concat"}
    groups.update({f"{group}/vars": layer.name for group, layer in layout.groups})
    return _h5.write_weights(arrays, groups)
