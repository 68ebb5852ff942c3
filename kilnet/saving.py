"""Model files: `model.save(path)`, `kilnet.models.load_model(path)`, `model.save_weights(path)`,
`model.load_weights(path)`.

A model file (suggested extension `.kilnet`) is one safetensors file (kilnet/_safefile.py):

    tensors   params/<layer>/<name>   trainable arrays
              state/<layer>/<name>    non-trainable arrays (BatchNormalization's statistics)
              opt/<path>              optimizer state (path in the Optax state pytree)
              train/rng               the base dropout key of the training state
    info      {"kilnet_version", "model": {"class_name": "Sequential", "config": ...},
               "compile": {"optimizer": {"class_name", "config"}, "loss": {...},
                           "metrics": [name or {"class_name", "config"}], "on_nonfinite"},
               "training": {"seed", "fit_calls"}}

With the optimizer state, the rng key, the seed and the fit count, a loaded model predicts
bitwise the same and continues training bitwise as the original would. A weights file holds
params/ and state/ only, with the architecture for checking.

Loading maps class names only through kilnet's allowlists (kilnet.layers.LAYER_TYPES,
kilnet.optimizers.OPTIMIZER_TYPES, kilnet.losses.LOSS_TYPES, kilnet.metrics.METRIC_TYPES): a
file cannot name anything else, and nothing in it is executed. Every problem is a
kilnet.errors.ModelFileError naming the file. Saving is atomic (_safefile.atomic_write).
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from kilnet import _safefile
from kilnet import losses as losses_lib
from kilnet import metrics as metrics_lib
from kilnet import optimizers as optimizers_lib
from kilnet.errors import ModelFileError
from kilnet.layers import LAYER_TYPES, InputLayer


# -- pytrees <-> named tensors ------------------------------------------------------------------
def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path) -> str:
    return "/".join(_key_name(k) for k in path)


def tree_to_tensors(prefix: str, tree) -> dict:
    """{prefix/path: NumPy array} for every leaf. Host sync: copies the arrays to the host."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    host = jax.device_get([leaf for _, leaf in leaves])
    tensors = {}
    for (path, _), value in zip(leaves, host):
        name = f"{prefix}/{path_name(path)}" if path else prefix
        if name in tensors:
            raise ValueError(f"Two arrays would be saved under the name {name!r}; rename the "
                             "layers so that no name contains '/'.")
        tensors[name] = np.asarray(value)
    return tensors


def tensors_to_tree(prefix: str, template, tensors: dict):
    """The pytree `template` with its leaves read from `tensors` (same names as tree_to_tensors).

    Raises ValueError naming the first missing, extra or differently shaped array."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    values, expected = [], set()
    for path, leaf in leaves:
        name = f"{prefix}/{path_name(path)}" if path else prefix
        expected.add(name)
        if name not in tensors:
            raise ValueError(f"the array {name!r} is missing")
        value, want = tensors[name], (tuple(np.shape(leaf)), np.dtype(leaf.dtype))
        if (value.shape, value.dtype) != want:
            raise ValueError(f"the array {name!r} has shape {value.shape} and dtype {value.dtype}"
                             f"; expected shape {want[0]} and dtype {want[1]}")
        values.append(value)
    extra = sorted(n for n in tensors if n.startswith(prefix + "/") and n not in expected)
    if extra:
        raise ValueError(f"unexpected arrays {extra[:3]}")
    return jax.tree.unflatten(treedef, jax.device_put(values))


def nonfinite(tensors: dict) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return sorted(name for name, a in tensors.items()
                  if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)))


# -- configurations, through the allowlists --------------------------------------------------------
def _object_from(types: dict, spec, what: str, path):
    """An instance of an allowlisted class from {"class_name": ..., "config": {...}}."""
    if (not isinstance(spec, dict) or set(spec) != {"class_name", "config"}
            or not isinstance(spec["config"], dict)
            or not all(isinstance(k, str) for k in spec["config"])):
        raise ModelFileError(path, f"the {what} entry is malformed: expected "
                                   "{'class_name': ..., 'config': {...}}. "
                                   f"Received: {spec!r:.200}")
    name = spec["class_name"]
    cls = types.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ModelFileError(path, f"it names the {what} type {name!r:.100}, which kilnet does not "
                                   f"allow in files. Allowed: {sorted(types)}.")
    try:
        if hasattr(cls, "from_config"):
            return cls.from_config(dict(spec["config"]))
        return cls(**spec["config"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the {what} {name} has an invalid configuration: "
                                   f"{error}") from None


def model_from_config(config, path="the configuration"):
    """An unbuilt Sequential from Sequential.get_config()'s dict, through LAYER_TYPES only."""
    from kilnet.models import Sequential

    if (not isinstance(config, dict) or not isinstance(config.get("layers"), list)
            or not isinstance(config.get("name", ""), str)):
        raise ModelFileError(path, "the model configuration is malformed: expected "
                                   "{'name': str, 'input_shape': [...], 'layers': [...]}.")
    unknown = set(config) - {"name", "input_shape", "layers"}
    if unknown:
        raise ModelFileError(path, f"the model configuration has unknown keys {sorted(unknown)}.")
    input_shape = config.get("input_shape")
    if input_shape is not None and (not isinstance(input_shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)):
        raise ModelFileError(path, f"the input shape {input_shape!r:.100} is invalid.")
    layers = [_object_from(LAYER_TYPES, spec, "layer", path) for spec in config["layers"]]
    try:
        if input_shape is not None and (not layers or layers[0].declared_input_shape is None):
            layers = [InputLayer(shape=tuple(input_shape))] + layers
        model = Sequential(layers, name=config.get("name") or None)
        if input_shape is not None and tuple(model.input_specs[0].shape) != tuple(input_shape):
            raise ValueError(f"input shape {input_shape} disagrees with the first layer's "
                             f"{model.input_specs[0].shape}")
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the model configuration is invalid: {error}") from None
    return model


def _compile_config(trainer):
    """The compile arguments as allowlisted names and configs, or None (with a warning)."""
    problems = []

    def spec(obj, types, what):
        name = type(obj).__name__
        if types.get(name) is not type(obj):
            problems.append(f"the {what} {obj!r} is not one of kilnet's {what} types")
            return None
        try:
            config = obj.get_config()
        except ValueError as error:
            problems.append(str(error))
            return None
        return {"class_name": name, "config": config}

    optimizer = spec(trainer.optimizer, optimizers_lib.OPTIMIZER_TYPES, "optimizer")
    loss = spec(trainer.loss, losses_lib.LOSS_TYPES, "loss")
    metrics = [m if isinstance(m, str) else spec(m, metrics_lib.METRIC_TYPES, "metric")
               for m in trainer.metric_ids]
    if problems:
        warnings.warn("The model file is written without its compile configuration and "
                      f"optimizer state ({'; '.join(problems)}); compile the loaded model "
                      "again before training it.", stacklevel=4)
        return None
    return {"optimizer": optimizer, "loss": loss, "metrics": metrics,
            "on_nonfinite": trainer.on_nonfinite}


def _compile_from_config(model, config, training, path):
    from kilnet.fit import Trainer

    if not isinstance(config, dict) or set(config) != {"optimizer", "loss", "metrics",
                                                       "on_nonfinite"}:
        raise ModelFileError(path, "the compile configuration is malformed.")
    optimizer = _object_from(optimizers_lib.OPTIMIZER_TYPES, config["optimizer"], "optimizer",
                             path)
    loss = _object_from(losses_lib.LOSS_TYPES, config["loss"], "loss", path)
    if not isinstance(config["metrics"], list):
        raise ModelFileError(path, "the metrics of the compile configuration are not a list.")
    metrics = [m if isinstance(m, str) else _object_from(metrics_lib.METRIC_TYPES, m, "metric",
                                                          path) for m in config["metrics"]]
    try:
        trainer = Trainer(model, optimizer=optimizer, loss=loss, metrics=metrics,
                          on_nonfinite=config["on_nonfinite"])
    except (TypeError, ValueError) as error:
        raise ModelFileError(path, f"the compile configuration is invalid: {error}") from None
    model.compiled = trainer
    seed = None
    if training is not None:
        if (not isinstance(training, dict) or set(training) != {"seed", "fit_calls"}
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                           for v in training.values())):
            raise ModelFileError(path, "the training record is malformed.")
        seed = training["seed"]
        trainer.fit_calls = training["fit_calls"]
    trainer.prepare(seed=seed)
    return trainer


# -- weights: checking a file's arrays against a model ---------------------------------------------
def _install_weights(model, tensors, path):
    """Check the file's params/ and state/ arrays against the model's layers (names, shapes,
    dtypes) and make them the model's weights. Shapes are checked abstractly first, so a hostile
    configuration cannot make kilnet allocate more than the file holds."""
    from kilnet import utils

    params, state, shapes = {}, {}, []
    shape = tuple(model.input_specs[0].shape)
    for index, layer in enumerate(model.layers):
        for kind, names, out in (("params", layer.param_names, params),
                                 ("state", layer.state_names, state)):
            out[layer.name] = {}
            for name in names:
                key = f"{kind}/{layer.name}/{name}"
                if key not in tensors:
                    raise ModelFileError(path, f"the array {key!r} is missing.")
                out[layer.name][name] = tensors[key]
        try:
            out_shape = tuple(layer.compute_output_shape(shape))
            spec = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                             tree)
            y, new_state = jax.eval_shape(
                lambda p, s, x: layer.apply(p, s, x, training=False),
                spec(params[layer.name]), spec(state[layer.name]),
                jax.ShapeDtypeStruct((1,) + shape, np.float32))
            if tuple(y.shape) != (1,) + out_shape:
                raise ValueError(f"its arrays give outputs of shape {y.shape[1:]}, "
                                 f"expected {out_shape}")
            # Bounded now: the arrays the layer makes match the file's, which exist.
            p0, s0, _ = layer.init(utils.numpy_rng(0, index), shape)
        except Exception as error:  # shape errors from any layer's own code
            raise ModelFileError(path, f"layer {layer.name!r} ({type(layer).__name__}) does not "
                                       f"fit its arrays: {error}") from None
        for kind, made in (("params", p0), ("state", s0)):
            for name, array in made.items():
                found = tensors[f"{kind}/{layer.name}/{name}"]
                if (found.shape, found.dtype) != (np.shape(array), np.dtype(array.dtype)):
                    raise ModelFileError(
                        path, f"the array '{kind}/{layer.name}/{name}' has shape {found.shape} "
                              f"and dtype {found.dtype}; the layer needs {np.shape(array)} "
                              f"{np.dtype(array.dtype)}.")
        shape = out_shape
        shapes.append(out_shape)
    extra = sorted(n for n in tensors if n.split("/")[0] in ("params", "state")
                   and not _belongs(n, params, state))
    if extra:
        raise ModelFileError(path, f"it holds arrays no layer uses: {extra[:3]}.")
    model.build(seed=0)
    for var_path, kind, variable in model.variable_paths():
        variable.assign(tensors[f"{kind}/{'/'.join(var_path)}"])


def _belongs(name, params, state):
    kind, _, rest = name.partition("/")
    layer, _, array = rest.partition("/")
    tree = params if kind == "params" else state
    return array in tree.get(layer, {})


# -- the public functions -------------------------------------------------------------------------
def save_model(model, filepath, *, overwrite=True, include_optimizer=True):
    from kilnet._version import __version__

    filepath = os.fspath(filepath)
    info = {"kilnet_version": __version__,
            "model": {"class_name": "Sequential", "config": model.get_config()},
            "compile": None, "training": None}
    tensors = {}
    if model.built:
        tensors.update(tree_to_tensors("params", model.params))
        tensors.update(tree_to_tensors("state", model.state))
    trainer = model.compiled
    if trainer is not None and include_optimizer:
        info["compile"] = _compile_config(trainer)
        if info["compile"] is not None and trainer.state is not None:
            tensors.update(tree_to_tensors("opt", trainer.state.opt_state))
            tensors["train/rng"] = np.asarray(jax.device_get(trainer.state.rng))
            info["training"] = {"seed": int(trainer.seed), "fit_calls": int(trainer.fit_calls)}
    _refuse_nonfinite(tensors, filepath)
    _safefile.atomic_write(filepath, _safefile.encode("model", info, tensors),
                           what="the model file", overwrite=overwrite)


def _refuse_nonfinite(tensors, filepath):
    bad = nonfinite(tensors)
    if bad:
        raise ValueError(f"Not saving {filepath}: the model holds NaN or infinite values in "
                         f"{bad[:3]}. Save a model from before training diverged.")


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Load a model saved by model.save(): architecture, weights, and (if compile) the compile
    configuration, optimizer state and training position, ready to predict or train on."""
    if custom_objects:
        raise TypeError("kilnet model files map only to kilnet's own layer, optimizer, loss "
                        f"and metric types; custom_objects are not supported. Received: "
                        f"custom_objects={custom_objects!r}")
    if not safe_mode:
        raise ValueError("kilnet files never hold code, so safe_mode=False has no meaning.")
    filepath = os.fspath(filepath)
    info, tensors = _safefile.read(filepath, "model")
    if set(info) != {"kilnet_version", "model", "compile", "training"}:
        raise ModelFileError(filepath, f"its info has the keys {sorted(info)}; expected "
                                       "['compile', 'kilnet_version', 'model', 'training'].")
    spec = info["model"]
    if not isinstance(spec, dict) or spec.get("class_name") != "Sequential" or set(spec) != {
            "class_name", "config"}:
        raise ModelFileError(filepath, "it does not describe a kilnet Sequential model.")
    model = model_from_config(spec["config"], filepath)
    _check_tensor_names(tensors, ("params", "state", "opt", "train"), filepath)
    if model.input_specs is not None:
        _install_weights(model, tensors, filepath)
    elif tensors:
        raise ModelFileError(filepath, "it holds arrays but no input shape to build the model.")
    if compile and info["compile"] is not None:
        trainer = _compile_from_config(model, info["compile"], info["training"], filepath)
        opt = {n: a for n, a in tensors.items() if n.startswith("opt/")}
        if trainer.state is not None and (opt or "train/rng" in tensors):
            try:
                opt_state = tensors_to_tree("opt", trainer.state.opt_state, opt)
                rng = tensors_to_tree("train/rng", trainer.state.rng, tensors)
            except ValueError as error:
                raise ModelFileError(filepath, f"the optimizer state does not fit the "
                                               f"optimizer: {error}.") from None
            trainer.state = trainer.state._replace(opt_state=opt_state, rng=rng)
    return model


def _check_tensor_names(tensors, prefixes, path):
    for name in tensors:
        if name.split("/")[0] not in prefixes or (name.startswith("train/")
                                                  and name != "train/rng"):
            raise ModelFileError(path, f"it holds an array named {name!r:.100}, which is not "
                                       "part of the format.")


def save_weights(model, filepath, *, overwrite=True):
    model._require_built()
    filepath = os.fspath(filepath)
    tensors = {**tree_to_tensors("params", model.params), **tree_to_tensors("state", model.state)}
    _refuse_nonfinite(tensors, filepath)
    info = {"model": model.get_config()}
    _safefile.atomic_write(filepath, _safefile.encode("weights", info, tensors),
                           what="the weights file", overwrite=overwrite)


def load_weights(model, filepath):
    """Set the model's weights from a weights file or a model file, layer by layer in order;
    the layers' types and array shapes must match (layer names may differ)."""
    filepath = os.fspath(filepath)
    try:
        info, tensors = _safefile.read(filepath, "weights")
        config = info.get("model")
    except ModelFileError as error:
        if "is a kilnet 'model' file" not in error.problem:
            raise
        info, tensors = _safefile.read(filepath, "model")
        config = (info.get("model") or {}).get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list) or not all(
            isinstance(e, dict) and isinstance(e.get("class_name"), str)
            and isinstance(e.get("config"), dict) and isinstance(e["config"].get("name"), str)
            for e in config["layers"]):
        raise ModelFileError(filepath, "its model configuration is malformed.")
    saved = [(e["class_name"], e["config"]["name"]) for e in config["layers"]
             if e["class_name"] != "InputLayer"]
    if not model.built:
        shape = (model.input_specs[0].shape if model.input_specs is not None
                 else config.get("input_shape"))
        if shape is None:
            raise ValueError("load_weights needs a built model or a file with an input shape: "
                             "call model.build(input_shape) first.")
        model.build(tuple(shape))
    mine = [(type(layer).__name__, layer.name) for layer in model.layers]
    if [c for c, _ in saved] != [c for c, _ in mine]:
        raise ValueError(f"{filepath} holds weights for the layers {[c for c, _ in saved]}; this "
                         f"model has {[c for c, _ in mine]}.")
    weights, used = [], set()
    for (cls, saved_name), layer in zip(saved, model.layers):
        for kind, names in (("params", layer.param_names), ("state", layer.state_names)):
            for name in names:
                key = f"{kind}/{saved_name}/{name}"
                if key not in tensors:
                    raise ModelFileError(filepath, f"the array {key!r} is missing.")
                used.add(key)
                weights.append((layer, kind, name, tensors[key]))
    extra = sorted(n for n in tensors if n.split("/")[0] in ("params", "state") and n not in used)
    if extra:
        raise ModelFileError(filepath, f"it holds arrays no layer uses: {extra[:3]}.")
    by_slot = {(layer.name, kind, name): value for layer, kind, name, value in weights}
    model.set_weights([by_slot[(var_path[0], kind, var_path[-1])]
                       for var_path, kind, _ in model.variable_paths()])
