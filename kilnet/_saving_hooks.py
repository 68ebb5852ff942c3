"""Keras's saving hooks, called by every model file kilnet writes and reads (Keras's `.keras`
and `.weights.h5`, kilnet's `.kilnet`): a layer's `save_own_variables` / `load_own_variables`
and `save_assets` / `load_assets`, a model's own `get_compile_config` / `compile_from_config`.

Why a module of its own: a layer of yours may keep state Keras's default saving does not know
(a Variable made in `__init__`, a vocabulary file) by overriding these methods, as keras.io's
"Customizing Saving and Serialization" guide teaches. Each file format finds the layers and
names their places (its *groups*: Keras's `layers/dense`, kilnet's layer paths); this module
calls the methods for them and keeps what they give within the bounds of the rest of a file:
a store holds named numeric arrays only, and asset files are written from the file's checked
entries into a fresh temporary folder that is removed afterwards.

The methods called are those of your classes (registered or given as custom objects), never
anything a file names; the file supplies data only.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from kilnet.errors import ModelFileError

ARRAY_KINDS = ("f", "i", "u", "b")   # what a store holds: numbers and booleans
ASSETS = "assets/"   # where asset files are kept, by group (Keras's `assets/<group>/...`)


class VariablesStore(dict):
    """What `save_own_variables` writes into and `load_own_variables` reads from: one layer's
    {name: NumPy array}, as Keras's store gives them (names without "/"; values numeric).

    Example:
        >>> import numpy as np
        >>> from kilnet._saving_hooks import VariablesStore
        >>> store = VariablesStore()
        >>> store["0"] = [1.0, 2.0]
        >>> store["0"].dtype, len(store)
        (dtype('float64'), 1)
        >>> store["a/b"] = 1.0
        Traceback (most recent call last):
        ...
        ValueError: A saving store's keys are names without '/': received 'a/b'.
    """

    def __setitem__(self, key, value):
        if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
            raise ValueError(f"A saving store's keys are names without '/': received {key!r}.")
        array = np.asarray(value)
        if array.dtype.kind not in ARRAY_KINDS:
            raise ValueError(f"A saving store holds numeric arrays; the value for {key!r} has "
                             f"dtype {array.dtype}. Keep text (a vocabulary) in save_assets.")
        super().__setitem__(key, array)


def own_variables_arrays(hooked, path) -> list:
    """[(name, array)] that the layers' save_own_variables write; `hooked`: [(group, layer)],
    each layer's entries named "<group>/<key>", in order."""
    arrays = []
    for group, layer in hooked:
        store = VariablesStore()
        _call(layer.save_own_variables, store, layer, "save_own_variables", path, ValueError)
        arrays += [(f"{group}/{key}", value) for key, value in store.items()]
    return arrays


def load_own_variables(hooked, read_group, path) -> None:
    """Call each layer's load_own_variables (`hooked`: [(group, layer)]) with the entries
    `read_group(group)` gives ({key: NumPy array}, checked by the file format's reader)."""
    for group, layer in hooked:
        store = VariablesStore()
        for key, value in read_group(group).items():
            dict.__setitem__(store, key, value)
        _call(layer.load_own_variables, store, layer, "load_own_variables", path,
              ModelFileError)


def _call(method, argument, layer, name, path, error_type):
    try:
        method(argument)
    except Exception as error:  # your method's own failure: its traceback is kept
        message = (f"{type(layer).__name__}.{name} of layer {layer.name!r} failed: "
                   f"{type(error).__name__}: {error}")
        raise (ModelFileError(path, message) if error_type is ModelFileError
               else error_type(f"Cannot save {path}: {message}")) from error


# -- assets ----------------------------------------------------------------------------------------
def saved_assets(groups, path) -> dict:
    """{"assets/<group>/<file>": bytes} of the files each layer's save_assets writes into
    its folder (`groups`: [(group, layer)] for every layer, "" for the model itself); {}
    when no layer has save_assets."""
    savers = [(group, layer) for group, layer in groups
              if callable(getattr(layer, "save_assets", None))]
    if not savers:
        return {}
    with tempfile.TemporaryDirectory(prefix="kilnet-assets-") as root:
        for group, layer in savers:
            folder = os.path.join(root, *group.split("/")) if group else root
            os.makedirs(folder, exist_ok=True)
            _call(layer.save_assets, folder, layer, "save_assets", path, ValueError)
        return _read_folder(root, path)


def _read_folder(root, path) -> dict:
    members = {}
    for folder, _, files in os.walk(root):
        for name in sorted(files):
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                raise ValueError(f"Cannot save {path}: save_assets left {full!r}, which is not "
                                 "a regular file; write plain files into the asset folder.")
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                members[f"{ASSETS}{relative}"] = f.read()
    return dict(sorted(members.items()))


def is_asset_name(name) -> bool:
    """Whether a file's entry name is an asset file (or folder) as Keras names them: under
    "assets/", every part a plain name (no "..", no absolute path, no backslash or drive),
    so that it lands inside the folder it is written to.

    Example:
        >>> from kilnet._saving_hooks import is_asset_name
        >>> is_asset_name("assets/layers/lookup/vocabulary.txt")
        True
        >>> is_asset_name("assets/../../.bashrc"), is_asset_name("assets//etc/passwd")
        (False, False)
    """
    if not name.startswith(ASSETS) or len(name) > 4096:
        return False
    parts = name[len(ASSETS):].split("/")
    if parts[-1] == "":   # a folder entry, as some zip tools write them
        parts = parts[:-1]
    return bool(parts) and all(
        part and part not in (".", "..") and len(part) <= 255
        and not any(c in part for c in "\\:\0") for part in parts)


def load_assets(groups, members, path) -> None:
    """Call each layer's load_assets (`groups`: [(group, layer)]) with a temporary folder
    holding the file's assets for it (`members`: {"assets/<group>/<file>": bytes}, names
    checked by the format's reader to be plain relative paths), as Keras's loading does; a
    layer with no files there is not called. The folder is removed afterwards."""
    assets = {name[len(ASSETS):]: data for name, data in members.items()
              if name.startswith(ASSETS) and not name.endswith("/")}
    loaders = [(group, layer) for group, layer in groups
               if callable(getattr(layer, "load_assets", None))
               and any(_inside(name, group) for name in assets)]
    if not loaders:
        return
    with tempfile.TemporaryDirectory(prefix="kilnet-assets-") as root:
        for name, data in assets.items():
            full = os.path.join(root, *name.split("/"))
            try:
                os.makedirs(os.path.dirname(full), exist_ok=True)
                with open(full, "xb") as f:
                    f.write(data)
            except OSError as error:
                raise ModelFileError(path, f"its asset {name!r} cannot be written to a "
                                           f"temporary folder ({error.strerror}).") from None
        for group, layer in loaders:
            folder = os.path.join(root, *group.split("/")) if group else root
            _call(layer.load_assets, folder, layer, "load_assets", path, ModelFileError)


def _inside(name, group) -> bool:
    return not group or name.startswith(group + "/")


# -- a model's own compile configuration ---------------------------------------------------------
def own_compile_config(model):
    """What your get_compile_config returns, as Keras writes it (objects serialized), or
    None when the model was not compiled."""
    # kilnet.serialization reads layer entries through kilnet.keras_files, which imports
    # this module: imported here, when a model of yours is saved, not at import time.
    from kilnet.serialization import serialize_keras_object

    config = model.get_compile_config()
    return None if config is None else serialize_keras_object(config)


def compile_own_way(model, config, path) -> None:
    """Your compile_from_config with the file's compile entry, as Keras calls it."""
    _call(model.compile_from_config, config, model, "compile_from_config", path,
          ModelFileError)
