"""Writing a kilnet model as a Keras 3 `.keras` file, and weights as a Keras `.weights.h5` file.

Why a module of its own: users hand their models to people who use Keras, TensorFlow Serving or
TFLite. What kilnet writes here is what Keras 3 writes (config.json in Keras's layout with
Keras's module names, metadata.json, model.weights.h5 with Keras's group names), so that
`keras.models.load_model(path)` opens it in safe mode. A model Keras could not rebuild (a
subclassed model or a layer class of the user's, not registered) is refused, naming `.kilnet`,
kilnet's own format; a registered one is written for Keras to find under the same registration.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from kilnet import _safefile, _saving_hooks
from kilnet._version import __version__
from kilnet.keras_files import _archive, _config, _h5, _held_optimizers, _layout, _optimizer
from kilnet.models import _config as kilnet_config

KERAS_VERSION = "3.6.0"   # the Keras 3 file format version kilnet writes


def save_keras(model, filepath, overwrite=True, include_optimizer=True):
    """Write `model` (Sequential, functional, or a registered subclassed model; built) as a
    Keras 3 `.keras` file, atomically.
    A compiled model keeps its compile configuration and optimizer state (include_optimizer),
    where Keras can express them; otherwise they are left out with a warning.

    Example:
        >>> import os, tempfile, zipfile
        >>> import kilnet
        >>> from kilnet.keras_files import save_keras
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
        >>> save_keras(model, path)
        >>> sorted(zipfile.ZipFile(path).namelist())
        ['config.json', 'metadata.json', 'model.weights.h5']
    """
    path = os.fspath(filepath)
    model.require_built()
    # a subclassed model's build_config: the input shape Keras builds it for when loading
    # (none for a class of yours that makes a functional graph in its __init__)
    entry = _config.keras_model(kilnet_config.serialize(model), path)
    compile_config, optimizer = None, None
    if include_optimizer and model.is_compiled:
        compile_config, optimizer = training_setup(model, path)
    entry["compile_config"] = {} if compile_config is None else compile_config   # Keras's {}
    config = json.dumps(entry, default=_safefile.json_default)
    metadata = json.dumps({"keras_version": KERAS_VERSION, "kilnet_version": __version__,
                           "date_saved": time.strftime("%Y-%m-%d@%H:%M:%S")})
    layout = _model_layout(model, path)
    data = _archive.write_members({_archive.METADATA: metadata.encode(),
                                   _archive.CONFIG: config.encode(),
                                   _archive.WEIGHTS: weights_bytes(model, path, optimizer,
                                                                   layout),
                                   **_saving_hooks.saved_assets(layout.groups, path)})
    _safefile.atomic_write(path, data, what="the Keras model file", overwrite=overwrite)


def training_setup(model, path, own_config=True):
    """(Keras's compile_config or None, (optimizer name, its variables) or None) of a
    compiled model; with `own_config`, a model class of yours with its own
    get_compile_config writes what that returns (the legacy format has no place for it)."""
    trainer = model.compiled
    try:
        compile_config = (_saving_hooks.own_compile_config(model)
                          if own_config and model.keeps_own_compile_config
                          else _optimizer.keras_compile_config(trainer))
    except (_optimizer.Unsupported, ValueError) as error:
        _optimizer.warn_left_out(path, f"its compile configuration is left out ({error})")
        return None, None
    if trainer.state is None:
        return compile_config, None   # compiled, never built: Keras builds it fresh too
    return compile_config, optimizer_state(trainer, path)


def optimizer_state(trainer, path):
    """(optimizer name, its variables in Keras's order) of a compiled model whose optimizer
    state exists, for the file's `optimizer/vars`; None, with a warning, where kilnet's state
    has no Keras layout (the file then starts Keras from a fresh optimizer state)."""
    try:
        arrays = _optimizer.export_arrays(trainer)
    except _optimizer.Unsupported as error:
        _optimizer.warn_left_out(path, f"its optimizer state is left out ({error}); Keras "
                                       "starts from a fresh optimizer state", stacklevel=5)
        return None
    return trainer.optimizer.name, arrays


def weights_file_optimizer(model, path):
    """What Keras's save_weights writes under `optimizer/vars` for `model`: nothing for a
    model never compiled; the step count (and learning rate) alone for an optimizer that
    never ran, as Keras's unbuilt optimizer holds; else the whole state (optimizer_state)."""
    trainer = model.compiled
    if trainer is None:
        return None
    if not _optimizer.keras_built(trainer):
        fresh = _optimizer.fresh_arrays(trainer.optimizer)
        return None if fresh is None else (trainer.optimizer.name, fresh)
    return optimizer_state(trainer, path)


def _model_layout(model, path):
    try:
        return _layout.model_layout(model)
    except _layout.LayoutError as error:
        raise ValueError(f"Cannot save {path} in Keras's format: {error}. Save it with the "
                         "extension .kilnet instead.") from None


def weights_bytes(model, path, optimizer=None, layout=None) -> bytes:
    """The model's weights as a Keras 3 weights file (HDF5), in memory, with the optimizer's
    variables when `optimizer` is (its name, [arrays in Keras's order]); a layer of yours
    with its own save_own_variables writes its entries (`layout`: the model's, if known).
    Host sync."""
    layout = layout or _model_layout(model, path)
    slots = layout.slots
    values = jax.device_get([variable.value for _, _, variable in slots])
    arrays = [(h5, np.asarray(v)) for (h5, _, _), v in zip(slots, values)]
    hooked = _saving_hooks.own_variables_arrays(layout.hooked, path)
    refuse_non_finite(path, [name for _, name, _ in slots] + [h5 for h5, _ in hooked],
                      values + [value for _, value in hooked])
    # each weights group is labelled with its layer (the model itself for its own weights)
    groups = {h5.rpartition("/")[0]: (h5.split("/")[-3] if h5.count("/") >= 2 else model.name)
              for h5, _, _ in slots}
    groups.update({group: layer.name for group, layer in layout.hooked
                   if any(h5.startswith(group + "/") for h5, _ in hooked)})
    # Keras makes a named `vars` group for the model and for every layer it walks, weights or
    # none (a Dropout's is empty): the same listing as Keras's file
    for group, layer in layout.groups:
        groups.setdefault(f"{group}/vars" if group else "vars", layer.name)
    arrays += hooked
    held_arrays, held_groups = _held_optimizers.arrays_to_write(layout.optimizers, path)
    arrays += held_arrays
    groups.update(held_groups)
    if optimizer is not None:
        name, opt_arrays = optimizer
        arrays += [(f"{_optimizer.PREFIX}{i}", a) for i, a in enumerate(opt_arrays)]
        groups[_optimizer.PREFIX.rstrip("/")] = name
    return _h5.write_weights(arrays, groups)


def refuse_non_finite(path, names, values):
    """A ValueError naming the first weights (of `names`, with host `values`) that hold NaN or
    infinity: nothing is written from a diverged model."""
    bad = [name for name, value in zip(names, values) if not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"Not saving {path}: the model holds NaN or infinite values in "
                         f"{bad[:3]}. Save a model from before training diverged.")


def save_keras_weights(model, filepath, overwrite=True):
    """Write the weights in Keras's `.weights.h5` layout (what `keras.Model.save_weights`
    writes), atomically; a compiled model's optimizer variables go with them under
    `optimizer/vars`, as Keras writes them (see weights_file_optimizer), for load_weights to
    restore.

    Example:
        >>> import os, tempfile
        >>> import kilnet
        >>> from kilnet.keras_files import save_keras_weights
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
        >>> save_keras_weights(model, path)
        >>> os.path.getsize(path) > 0
        True
    """
    path = os.fspath(filepath)
    model.require_built()
    data = weights_bytes(model, path, weights_file_optimizer(model, path))
    _safefile.atomic_write(path, data, what="the weights file", overwrite=overwrite)
