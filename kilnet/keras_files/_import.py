"""Opening a Keras 3 `.keras` file (or a Keras `.weights.h5` file) as a kilnet model.

Why a module of its own: this is the order of checks that makes a file from elsewhere safe to
open. The archive is read in memory with bounds (_archive), the config is mapped through the
closed table (_config) and planned by kilnet.models._config before anything is made, the
weights file's declared shapes are checked against kilnet's layers abstractly
(kilnet.saving.precheck_graph) so a hostile config cannot make kilnet allocate more than the
file holds, and only then is the model built and its arrays read (_h5, _layout).
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet import _registry, _saving_hooks, saving
from kilnet.errors import ModelFileError
from kilnet.keras_files import _archive, _config, _h5, _layout, _legacy, _precheck
from kilnet.keras_files import _feature_space, _held_optimizers
from kilnet.keras_files._h5 import group_reader
from kilnet.keras_files._install import install_layout
from kilnet.keras_files import _optimizer as _opt_layout
from kilnet.layers import InputLayer
from kilnet.models import Model
from kilnet.models import _config as kilnet_config

TOP_KEYS = {"module", "class_name", "config", "registered_name", "build_config",
            "compile_config"}


def load_keras(filepath, custom_objects=None, compile=True):
    """The kilnet model a Keras 3 `.keras` file describes, with its weights (see the module
    docstring); its compile configuration is applied where kilnet has the same objects.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet.keras_files import load_keras, save_keras
        >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
        >>> save_keras(model, path)
        >>> twin = load_keras(path)
        >>> np.array_equal(twin.get_weights()[0], model.get_weights()[0])
        True
    """
    path = os.fspath(filepath)
    members = _archive.read_members(path)
    spec = kilnet_config.parse_json(members[_archive.CONFIG], path)
    kilnet_config.check_bounds(spec, path)
    if not compile and isinstance(spec, dict):
        # as Keras: the compile configuration is not read at all, so a file naming loss or
        # metric functions this program does not have opens for inference
        spec = {key: value for key, value in spec.items() if key != "compile_config"}
    if _feature_space.is_feature_space(spec):   # FeatureSpace.save's file, Keras's or ours
        return _feature_space.load_feature_space(spec, members, path)
    # the functions of yours that layers and compile() get by name may be custom_objects
    previous = _registry.widen_scope(custom_objects or {})
    try:
        return _model_with_weights(spec, members, path, custom_objects, compile)
    finally:
        _registry.close_scope(previous)


def _model_with_weights(spec, members, path, custom_objects, compile):
    """load_keras's model from its parsed config and archive members."""
    model = model_from_keras_config(spec, path, custom_objects)
    if _archive.WEIGHTS not in members:
        raise ModelFileError(path, f"it has no {_archive.WEIGHTS}.")
    with _h5.WeightsFile(members[_archive.WEIGHTS], path) as weights:
        layout = install_weights(model, weights, spec.get("build_config"))
        if compile and spec.get("compile_config"):
            if model.keeps_own_compile_config:
                _saving_hooks.compile_own_way(model, spec["compile_config"], path)
                if model.compiled is not None and "optimizer" in weights.file:
                    restore_optimizer(model.compiled, weights)
            else:
                compile_from_keras(model, spec["compile_config"], path, weights)
    _saving_hooks.load_assets(layout.groups, members, path)
    return model


def model_from_keras_config(spec, path, custom_objects=None):
    """The unbuilt kilnet model of a Keras config entry ({"module", "class_name", "config",
    ...}); ModelFileError for anything outside the closed table."""
    reader = _config.Reader(path, custom_objects)
    if not isinstance(spec, dict) or not {"class_name", "config"} <= set(spec) <= TOP_KEYS:
        raise ModelFileError(path, f"its config.json is not a Keras 3 model config (keys "
                                   f"{sorted(spec)[:8] if isinstance(spec, dict) else spec!r:.100}"
                                   ").")
    kilnet_spec = _config.model_spec(spec, reader)
    frozen = spec["class_name"] == "Sequential" and spec["config"].get("trainable") is False
    if frozen:
        spec = {**spec, "config": {**spec["config"], "trainable": True}}
        kilnet_spec = _config.model_spec(spec, reader)
    model = kilnet_config.deserialize(kilnet_spec, custom_objects, path=path, what="model")
    if not isinstance(model, Model):
        raise ModelFileError(path, f"it describes a {type(model).__name__}, not a model.")
    if frozen:
        model.trainable = False
    return model


def install_weights(model, weights, build_config=None, skip_mismatch=False):
    """Build `model` and set its weights from an open Keras weights file, every dataset's
    declared shape checked before it is read; with `skip_mismatch` (Keras's), the layers whose
    datasets are missing or of other shapes keep their weights (saving.set_matching_layers).
    Layers of yours with their own load_own_variables read their entries after the others
    are set. Returns the model's _layout.Layout."""
    path = weights.path
    if model.is_functional and not model.built:   # a built model's arrays exist already
        if not skip_mismatch:
            saving.precheck_graph(model, (), _declared(model, "", (), weights), path)
            _precheck.check_composites(model, "", weights)   # layers with sub-layers
        model.build(seed=0)
    elif not model.built:
        shape = build_config.get("input_shape") if isinstance(build_config, dict) else None
        if not isinstance(shape, (list, dict)) or not shape:
            raise ModelFileError(path, "its model has no input shape to build it with.")
        model.build(_free_batch_axis(shape, path), seed=0)
    try:
        layout = _layout.model_layout(model)
    except _layout.LayoutError as error:
        raise ModelFileError(path, f"{error}.") from None
    slots = layout.slots
    if skip_mismatch:
        by_layer = {}
        for h5, name, variable in slots:   # by kilnet's layer path, "params/<path>/<weight>"
            by_layer.setdefault(name.split("/", 1)[1].rpartition("/")[0], []).append(
                (h5, variable))
        shapes = {h5: weights.shape_of(h5) for h5, _, _ in slots}
        dtypes = {h5: np.dtype(variable.dtype) for h5, _, variable in slots}
        saving.set_matching_layers(by_layer, shapes.get,
                                   lambda h5: weights.read(h5, shapes[h5], dtypes[h5]), path)
        _load_hooked_or_skip(layout, weights)
        for restore in _held_optimizers.planned_restores(layout.optimizers, weights):
            restore()
        return layout
    # a subclassed model's layers sit under its attributes' names too (kilnet.keras_files.
    # _layout), not only under "layers"; its optimizers kept as attributes under theirs
    held = {group for group, _ in layout.optimizers if "/" not in group}
    if not model.is_functional:
        held.update(_held_optimizers.skipped_optimizer_groups(model, weights))
    scanned = ["layers"] if model.is_functional else [g for g in weights.file
                                                      if g != "optimizer" and g not in held]
    restores = _held_optimizers.planned_restores(layout.optimizers, weights)
    install_layout(layout, weights, scanned, "the model")
    for restore in restores:
        restore()
    return layout


def _load_hooked_or_skip(layout, weights):
    """load_weights(skip_mismatch=True) for the layers of yours that load their own
    variables: one whose load_own_variables fails keeps its weights, named in a warning."""
    failed = []
    for entry in layout.hooked:
        try:
            _saving_hooks.load_own_variables([entry], group_reader(weights),
                                             weights.path)
        except ModelFileError as error:
            failed.append(f"{entry[1].name!r} ({error.__cause__ or error})")
    if failed:
        warnings.warn(f"{weights.path}: skipped loading the layers {failed[:5]}: their "
                      "load_own_variables did not take the file's entries (skip_mismatch=True).",
                      stacklevel=4)


def _free_batch_axis(shape, path):
    """A build_config's input shape as Keras writes it (the first call's, batch axis first:
    [2, 5]; a list or dict of them for several inputs) with the batch axis free: what
    model.build takes."""
    if isinstance(shape, dict):
        return {key: _free_batch_axis(value, path) for key, value in shape.items()}
    if shape and all(isinstance(item, list) for item in shape):
        return [_free_batch_axis(item, path) for item in shape]
    if not shape or not all(d is None or (isinstance(d, int) and d >= 0) for d in shape):
        raise ModelFileError(path, f"its build_config's input shape {shape!r:.100} is not a "
                                   "list of sizes.")
    return (None,) + tuple(shape[1:])


def _declared(model, h5_prefix, prefix, weights) -> dict:
    """{kilnet array name: ShapeDtypeStruct} of the leaf layers' datasets, as declared."""
    found = {}
    for layer, h5_name in _layout.children(model):
        where = prefix + (layer.name,)
        group = f"{h5_prefix}layers/{h5_name}/"
        if isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Model):
            if layer.is_functional:
                found.update(_declared(layer, group, where, weights))
        elif layer.is_pure and not layer.sublayers and not saving.checked_once_built(layer):
            for h5, name in _layout.leaf_names(layer, group, where):
                shape = weights.shape_of(h5)
                if shape is None:
                    raise ModelFileError(weights.path, f"the weight {h5!r} of layer "
                                                       f"{layer.name!r} is missing.")
                found[name] = jax.ShapeDtypeStruct(shape, weights.dtype_of(h5))
    return found


# -- the compile configuration and optimizer state -------------------------------------------
COMPILE_KEYS = {"optimizer", "loss", "loss_weights", "metrics", "weighted_metrics",
                "run_eagerly", "steps_per_execution", "jit_compile"}


def compile_from_keras(model, config, path, weights=None):
    """Compile `model` as Keras's compile_config says, where kilnet has the same optimizer,
    losses and metrics (otherwise warn and leave it uncompiled), and restore the optimizer's
    variables from the open weights file where kilnet's optimizer keeps Keras's state."""
    try:
        if not isinstance(config, dict) or not set(config) <= COMPILE_KEYS:
            raise ValueError(f"its keys {sorted(config)[:8] if isinstance(config, dict) else config!r:.100} "
                             "are not Keras 3's")
        optimizer = _optimizer(config.get("optimizer"))
        loss = _objects(config.get("loss"), losses_lib.LOSS_TYPES, "loss")
        metrics = _objects(config.get("metrics"), metrics_lib.METRIC_TYPES, "metric")
        weighted = _objects(config.get("weighted_metrics"), metrics_lib.METRIC_TYPES, "metric")
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted,
                      loss_weights=_loss_weights(config.get("loss_weights")))
    except (TypeError, ValueError, KeyError) as error:
        warnings.warn(f"{path}: the model is loaded uncompiled, since kilnet cannot apply its "
                      f"Keras compile configuration ({error}); call model.compile(...) before "
                      "training it.", stacklevel=3)
        return
    if weights is not None and "optimizer" in weights.file:
        restore_optimizer(model.compiled, weights)


def restore_optimizer(trainer, weights):
    """Set the trainer's optimizer state from the file's `optimizer/vars/<i>`, each declared
    shape checked before it is read; warn and keep a fresh state where it does not fit."""
    if _mappable(trainer, weights.path):
        if trainer.state is None:
            trainer.ensure_state()
        arrays = read_optimizer_state(trainer, weights)
        if arrays is not None:
            _opt_layout.import_arrays(trainer, arrays)


def _mappable(trainer, path, stacklevel=5) -> bool:
    """Whether kilnet's optimizer keeps its state in Keras's layout; if not, warn that the
    file's state is not restored."""
    try:
        _opt_layout.slot_names(trainer.optimizer)
    except _opt_layout.Unsupported as error:
        warnings.warn(f"{path}: Keras's optimizer state is not restored ({error}); training "
                      "continues from a fresh optimizer state.", stacklevel=stacklevel)
        return False
    return True


def read_optimizer_state(trainer, weights, shapes=None):
    """The file's optimizer variables (Keras's list, see _optimizer.export_arrays) for the
    trainer's optimizer state (`shapes`: those it needs, by default its state's), each
    declared shape checked before it is read; None, with a warning, where their number is not
    the state's (another optimizer: Keras skips it so too), and None without one where the
    file holds only the step count and learning rate of a Keras optimizer that never ran."""
    path = weights.path
    shapes = _opt_layout.expected_shapes(trainer) if shapes is None else shapes
    stored = weights.datasets("optimizer")
    fixed = _opt_layout.has_rate_variable(trainer.optimizer)
    scalars = 2 if fixed else 1   # the step count (and the learning rate)
    if len(stored) <= scalars < len(shapes):
        return None  # only those, where the optimizer has slots: Keras's optimizer never ran
    if len(stored) != len(shapes):
        warnings.warn(f"{path}: Keras's optimizer state holds {len(stored)} variables where "
                      f"kilnet's {type(trainer.optimizer).__name__} (slots "
                      f"{_opt_layout.slot_names(trainer.optimizer)}) needs {len(shapes)}; "
                      "training continues from the optimizer state it has.", stacklevel=5)
        return None
    # Scalars may be integers: the step count, and Adafactor's int32 placeholders.
    arrays = [weights.read(f"{_opt_layout.PREFIX}{i}", shape, np.float32,
                           kinds=("f", "i", "u") if shape == () else ("f",))
              for i, shape in enumerate(shapes)]
    if not (0 <= arrays[0] < 2**31 and (not fixed or (np.isfinite(arrays[1])
                                                        and arrays[1] > 0))):
        raise ModelFileError(path, f"its optimizer's step count {arrays[0]} or learning rate "
                                   f"{arrays[1] if fixed else '(a schedule)'} is invalid.")
    return arrays


def _loss_weights(value):
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

    if value is None or number(value) or (isinstance(value, list) and all(map(number, value))) \
            or (isinstance(value, dict) and all(map(number, value.values()))):
        return value
    raise ValueError(f"loss_weights {value!r:.100} are not numbers")


_OPTIMIZER_NEUTRAL = {"weight_decay": (None,), "clipnorm": (None,), "global_clipnorm": (None,),
                      "clipvalue": (None,), "use_ema": (False,), "ema_momentum": (0.99,),
                      "ema_overwrite_frequency": (None,), "loss_scale_factor": (None,),
                      "gradient_accumulation_steps": (None,), "name": "any",
                      "amsgrad": (False,), "nesterov": (False,), "centered": (False,)}


def _optimizer(spec):
    if isinstance(spec, str):
        return spec
    if not isinstance(spec, dict) or spec.get("class_name") not in \
            optimizers_lib.OPTIMIZER_TYPES:
        raise ValueError(f"optimizer {_name(spec)!r:.60} is not one of kilnet's")
    cls = optimizers_lib.OPTIMIZER_TYPES[spec["class_name"]]
    kwargs = {}
    for key, value in (spec.get("config") or {}).items():
        neutral = _OPTIMIZER_NEUTRAL.get(key, ())
        if neutral != "any" and value not in neutral:
            kwargs[key] = value   # the constructor refuses what kilnet's optimizer lacks
    rate = kwargs.get("learning_rate", 0.0)
    if isinstance(rate, dict):   # a schedule: Keras's own classes only
        if rate.get("module", "keras.optimizers.schedules") != "keras.optimizers.schedules" \
                or rate.get("class_name") not in optimizers_lib.schedules.SCHEDULES:
            raise ValueError(f"the learning-rate schedule {_name(rate)!r:.60} is not one of "
                             "Keras's")
        kwargs["learning_rate"] = optimizers_lib.schedules.deserialize(
            {"class_name": rate["class_name"], "config": rate.get("config") or {}})
    elif not isinstance(rate, (int, float)):
        raise ValueError(f"the learning rate {rate!r:.60} is neither a number nor a schedule")
    return cls(**kwargs)


def _objects(value, types, what):
    """Losses and metrics: names stay names; Keras's {"class_name", "config"} through the
    allowlist `types`; a function of yours by its registered name (as Keras's compile
    takes it), one of Keras's by its name; lists and dicts (per output) kept."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return [_objects(v, types, what) for v in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _objects(v, types, what) for k, v in value.items()}
    if _registry.is_function_entry(value):
        if _registry.function_named(value) is None and _config.keras_function(value):
            # one of Keras's functions: kilnet's of the same name
            return _config.kilnet_function_of(value) or value["config"]
        return _registry.function_from_entry(value, what)
    if not isinstance(value, dict) or value.get("class_name") not in types or not isinstance(
            value.get("config") or {}, dict):
        raise ValueError(f"{what} {_name(value)!r:.60} is not one of kilnet's")
    config = dict(value.get("config") or {})
    if _policy_name(config.get("dtype")) in (None, "float32"):
        config.pop("dtype", None)
    if config.get("reduction") == "sum_over_batch_size":
        config.pop("reduction")
    if what == "loss":
        config.pop("name", None)   # a loss's name is not in the logs
    return types[value["class_name"]](**config)


def _policy_name(value):
    if isinstance(value, dict):
        inner = value.get("config")
        return inner.get("name") if isinstance(inner, dict) else value
    return value


def _name(spec):
    return spec.get("class_name") if isinstance(spec, dict) else spec


def load_keras_weights(model, filepath, skip_mismatch=False):
    """Set `model`'s weights from a Keras `.weights.h5` file (what `keras.Model.save_weights`
    writes) or the weights of a `.keras` model file (as `keras.Model.load_weights` takes
    one), every dataset's shape checked before it is read; an unbuilt functional model is
    built first.

    Example:
        >>> import os, tempfile
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet.keras_files import load_keras_weights, save_keras_weights
        >>> def make():
        ...     return kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
        >>> model, twin = make(), make()
        >>> model.build(seed=0)
        >>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
        >>> save_keras_weights(model, path)
        >>> load_keras_weights(twin, path)
        >>> np.array_equal(twin.get_weights()[1], model.get_weights()[1])
        True
    """
    path = os.fspath(filepath)
    if _archive.is_zip(path):   # a .keras model file, whose weights Keras's load_weights takes
        members = _archive.read_members(path)
        if _archive.WEIGHTS not in members:
            raise ModelFileError(path, f"it has no {_archive.WEIGHTS}.")
        data = members[_archive.WEIGHTS]
    else:
        _archive.regular_file_size(path)
        with open(path, "rb") as f:
            data = f.read()
    with _h5.WeightsFile(data, path) as weights:
        if _legacy.is_legacy_weights_file(weights):   # Keras 2's save_weights("w.h5")
            if skip_mismatch:
                raise ValueError(f"load_weights(skip_mismatch=True) reads Keras 3 weights "
                                 f"files; {path} is a Keras 2 file, matched by layer order. "
                                 "Load it without skip_mismatch.")
            _legacy.install_weights_by_order(model, weights)
        else:
            # read (and checked) before any weight is set: a bad file changes nothing
            optimizer_arrays = _weights_file_optimizer(model, weights, skip_mismatch)
            install_weights(model, weights, skip_mismatch=skip_mismatch)
            if optimizer_arrays is not None:
                model.compiled.ensure_state()   # plain SGD's, whose state never ran yet
                _opt_layout.import_arrays(model.compiled, optimizer_arrays)


def _weights_file_optimizer(model, weights, skip_mismatch):
    """The optimizer variables of a weights file for load_weights to restore, as Keras's
    load_weights restores them: into a compiled model whose optimizer has run (Keras's
    optimizer built, see _optimizer.keras_built), or whose optimizer has no variables but the
    step count and learning rate (plain SGD, whose Keras optimizer holds the same before and
    after it is built).
    None where there is nothing to restore: an uncompiled model ignores the file's optimizer,
    as Keras's; a warning says where the file's and the optimizer's states differ (as Keras
    warns), and with skip_mismatch where their shapes differ (Keras raises without it, as
    kilnet does, before any weight is set)."""
    trainer, path = model.compiled, weights.path
    if trainer is None:
        return None
    if "optimizer" not in weights.file:
        if _opt_layout.keras_built(trainer):   # a state of its own, which the file lacks
            warnings.warn(f"{path}: the file holds no optimizer variables; the optimizer "
                          "keeps its state (Keras's load_weights skips it so too).",
                          stacklevel=5)
        return None
    if not _mappable(trainer, path, stacklevel=6):
        return None
    if not _opt_layout.keras_built(trainer):
        return _fresh_optimizer_state(trainer, weights)
    if not skip_mismatch:
        return read_optimizer_state(trainer, weights)
    try:
        return read_optimizer_state(trainer, weights)
    except ModelFileError as error:
        warnings.warn(f"{path}: the optimizer's variables are not loaded ({error.problem}); "
                      "it keeps its state (skip_mismatch=True).", stacklevel=5)
        return None


def _fresh_optimizer_state(trainer, weights):
    """The file's optimizer variables for a compiled model that has not trained yet: Keras's
    optimizer then holds its step count and learning rate only, and loads a file's only where
    it holds as many (plain SGD's; a never-run Adam's, whose kilnet state starts fresh
    anyway); else it is skipped with a warning, as Keras's."""
    optimizer, path = trainer.optimizer, weights.path
    fresh = _opt_layout.fresh_arrays(optimizer)
    stored = len(weights.datasets("optimizer"))
    if fresh is not None and stored == len(fresh):
        if _opt_layout.holds_more_once_built(optimizer):
            return None
        return read_optimizer_state(trainer, weights, shapes=[()] * len(fresh))
    warnings.warn(f"{path}: the file's optimizer variables are not loaded: the model has not "
                  f"trained since compile(), so its {type(optimizer).__name__} has no state "
                  "to load them into (Keras's load_weights skips an optimizer not yet built "
                  "so too). To resume training with its optimizer state, keep the model in a "
                  ".kilnet file (model.save).", stacklevel=5)
    return None
