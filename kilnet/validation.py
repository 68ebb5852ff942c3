"""Input checks that run before anything is traced or compiled.

Keras on JAX trains silently on several data mistakes (a label >= the number of classes gives a
loss of 0.0, NaN inputs train on with a nan loss, uint8 images train badly). kilnet checks the
data once per fit/evaluate/predict call, before compiling:

- `check_fit_inputs`, `check_eval_inputs`, `check_predict_inputs`: the arguments, and the arrays
  on their own and against the model's declared input shape. No built model needed.
- `check_targets`: the labels against the loss and the model's output shape, so it runs after
  the model is built (building is cheap; nothing is compiled yet).
- `assert_all_finite`: for code that writes checkpoints, which must never hold NaN or inf.

Every error names the argument, what was expected, what was received (with the index and
value of the first offending element where there is one) and the likely fix. The checks are
vectorized whole-array reductions: on a 60,000 x 28 x 28 float32 array they cost one min and
one max (about 10 ms; bench/check_cost.py), and find the offending index only once they know
there is one.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import NamedTuple

import numpy as np

from kilnet import data
from kilnet import losses as losses_lib
from kilnet.errors import (InputError, InputTypeError, InputWarning, NonFiniteError,
                           warn_at_your_line)

# What fit/evaluate/predict raise about the user's data and arguments, and about numeric faults.
DOCUMENTED_ERRORS = (InputError, InputTypeError, NonFiniteError)

_INT32 = np.iinfo(np.int32)


# -- arguments ------------------------------------------------------------------------------------
def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_batch_size(batch_size, n, warn=True):
    if not _is_int(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, e.g. batch_size=32. "
                         f"Received: batch_size={batch_size!r}")
    if batch_size > n:
        if warn:  # fit only: in evaluate/predict a smaller last batch is normal, as in Keras
            _warn(f"batch_size={batch_size} is larger than the {n} training samples; using one "
                  f"full batch of {n}. Received: batch_size={batch_size}")
        return int(n)
    return int(batch_size)


def check_epochs(epochs, initial_epoch):
    if not _is_int(epochs) or epochs < 0:
        raise InputError(f"epochs must be a non-negative integer, e.g. epochs=5. "
                         f"Received: epochs={epochs!r}")
    if not _is_int(initial_epoch) or initial_epoch < 0:
        raise InputError(f"initial_epoch must be a non-negative integer (the epoch to resume "
                         f"from). Received: initial_epoch={initial_epoch!r}")


def check_memmap(array, argument):
    """A memmap must be as long as its file says: a file cut short (a copy that failed, a
    disk that filled up) would kill the process with SIGBUS on the first read past its end,
    with no message."""
    filename = getattr(array, "filename", None)
    if not isinstance(array, np.memmap) or filename is None:
        return
    needed = int(getattr(array, "offset", 0)) + int(array.nbytes)
    size = os.path.getsize(filename)
    if size < needed:
        raise InputError(
            f"{argument} maps {needed:,} bytes of {filename}, but the file holds {size:,}: it "
            "was cut short (an interrupted copy or a full disk?). Write the array again, or "
            f"map the rows the file holds. Received: {argument} of shape {array.shape}")


def check_streamed_fit(x, y, *, batch_size, validation_split):
    """The checks a memmap (or a source of batches) gets before fit: the argument values, and
    for a memmap the file sizes (its labels are checked once the model's outputs are known:
    check_targets). Sources of batches are checked batch by batch (kilnet.loaders)."""
    if isinstance(x, np.ndarray):  # a memmap
        _check_batch_size(batch_size, len(x), warn=False)
        check_memmap(x, "x")
        check_memmap(y, "y")
        if validation_split:
            _check_validation_split(validation_split, len(x))
    elif validation_split:
        raise InputError(
            "validation_split needs the whole dataset to hold the last part out, and a source "
            "of batches (a generator, a PyDataset, a DataLoader) does not have it: pass "
            "validation_data=... instead, as Keras requires. Received: "
            f"validation_split={_py(validation_split)!r} with x of type {type(x).__name__}")


def _check_validation_split(validation_split, n, used=True):
    split = validation_split
    if (isinstance(split, (bool, np.bool_)) or not isinstance(split, numbers.Real)
            or not 0 <= split < 1):
        raise InputError("validation_split must be a number in [0, 1), the fraction of the "
                         "samples held out for validation, e.g. 0.1. "
                         f"Received: validation_split={validation_split!r}")
    n_val = data.held_out(n, split) if used else 0  # as data.split_validation splits
    if used and split and (n_val == 0 or n_val == n):
        raise InputError(
            f"validation_split={_py(split)} leaves {n - n_val} training and {n_val} validation "
            f"samples out of {n}; both need at least one. Use more data, another "
            f"validation_split, or validation_split=0. Received: validation_split={_py(split)!r}")
    return n - n_val


# -- arrays on their own --------------------------------------------------------------------------
def _numeric(value, argument):
    """`value` as a NumPy array of numbers, with a batch axis and at least one sample."""
    if value is None:
        raise InputError(f"{argument} is required. Received: {argument}=None")
    try:
        array = np.asarray(value)
    except Exception as error:  # ragged nested lists and the like
        raise InputError(
            f"{argument} must be an array of numbers (a NumPy or JAX array, or nested lists of "
            f"equal length). Received: {type(value).__name__} that NumPy cannot convert "
            f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if array.ndim == 0:
        raise InputError(f"{argument} must have a batch axis (one entry per sample). "
                         f"Received: a scalar {argument}={value!r}")
    kind = array.dtype.kind
    if kind not in "biuf":
        what = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers",
                "M": "dates", "m": "time deltas"}.get(kind, f"values of dtype {array.dtype}")
        fix = (f"convert it to numbers first, e.g. np.asarray({argument}, dtype='float32'), or "
               "encode text and categories as integers" if kind in "USO" else
               f"convert it to real numbers, e.g. np.asarray({argument}, dtype='float32')")
        raise InputTypeError(f"{argument} must hold numbers (int, float or bool) but holds {what}; "
                             f"{fix}. Received: {argument} with dtype={array.dtype}")
    if len(array) == 0:
        raise InputError(f"{argument} is empty: it needs at least one sample. "
                         f"Received: {argument}.shape={array.shape}")
    return array


def _first(mask, array, argument):
    """Index and value of the first True of `mask`, formatted as `arg[i, j] = v`."""
    index = np.unravel_index(int(np.argmax(mask)), array.shape)  # argmax: first True
    return f"{argument}[{', '.join(str(int(i)) for i in index)}]={_py(array[index])!r}", index


def _py(value):
    """A NumPy scalar as the Python number it is, so messages read `5`, not `np.int64(5)`."""
    return value.item() if hasattr(value, "item") else value


def check_finite(array, argument, source=None):
    """Raise if a float array holds NaN or inf; returns its (min, max).

    One min and one max pass: NaN propagates through both and an infinity is one of them, so
    only arrays that fail pay for locating the offenders.
    """
    lo, hi = np.min(array), np.max(array)
    if np.isfinite(lo) and np.isfinite(hi):
        return lo, hi
    bad = ~np.isfinite(array)
    count = int(np.count_nonzero(bad))
    nans = int(np.count_nonzero(np.isnan(array)))
    samples = int(np.count_nonzero(bad.reshape(len(array), -1).any(axis=1)))
    where, index = _first(bad, array, argument)
    note = ""
    if source is not None and np.isfinite(source[index]):
        note = (f" ({argument} is {source.dtype} and kilnet computes in float32: values beyond "
                f"float32's range, about 3.4e38, become infinity; rescale the data)")
    raise InputError(
        f"{argument} contains {count} non-finite values ({nans} NaN, {count - nans} infinite) "
        f"in {samples} of its {len(array)} samples{note}. Remove those samples or replace the "
        f"values (e.g. np.nan_to_num, or impute a mean) before training. Received: {where}")


def _as_float32(array):
    """Floats are computed in float32 on the device; check what the device will see."""
    if array.dtype.kind == "f" and array.dtype != np.float32:
        with np.errstate(over="ignore"):
            return array.astype(np.float32)
    return array


def _check_features(model, value, argument, index=0, any_shape_call_takes=False):
    """x (or validation x): numbers, finite, shaped as the model expects. Returns the array
    in the dtype it will have on the device (see kilnet.data.device_dtype)."""
    source = with_keras_input_rank(model, _numeric(value, argument), index)
    check_input_shape(model, source, argument, index, any_shape_call_takes)
    array = _check_numbers(source, argument)
    _check_id_range(model, array, argument, index)
    return array


def _check_numbers(source, argument):
    """The array in its device dtype (float32 for floats), finite, integers within int32."""
    array = _as_float32(source)
    if array.dtype.kind == "f":
        check_finite(array, argument, source if array is not source else None)
    elif array.dtype.kind in "iu" and array.dtype != np.uint8:
        lo, hi = np.min(array), np.max(array)
        if lo < _INT32.min or hi > _INT32.max:
            where, _ = _first((array < _INT32.min) | (array > _INT32.max), array, argument)
            raise InputError(
                f"{argument} holds integers beyond the int32 range, which kilnet would wrap "
                f"around on the device. Convert it to floats, e.g. "
                f"{argument}.astype('float32'), and rescale it. Received: {where}")
    return array


def _check_id_range(model, array, argument, index):
    """Token ids against the vocabulary of the Embedding that reads them: out of range, Keras
    on JAX trains on a row of zeros or a wrapped row, without a word."""
    ranges = getattr(model, "integer_input_ranges", lambda: [])()
    if index >= len(ranges) or ranges[index] is None:
        return
    low, high, layer = ranges[index]
    bad = (array < low) | (array >= high)
    if bad.any():
        where, _ = _first(bad, array, argument)
        raise InputError(
            f"{argument} holds ids outside [{low}, {high}) for {type(layer).__name__} "
            f"{layer.name!r} (input_dim={high}): such ids have no row. Give the layer a larger "
            f"input_dim, or map unknown ids to a reserved id (e.g. 1 for out-of-vocabulary). "
            f"Received: {where}")


def _warn_unscaled_images(model, array, argument):
    """uint8 (or integer image) pixels in 0-255 fed to a model with nothing that scales them
    (a Rescaling or Normalization layer, or an x / 255 in the graph, nested models included)."""
    if array.dtype.kind not in "iu" or (array.dtype != np.uint8 and array.ndim < 3):
        return
    if _scales_inputs(model):
        return
    hi = np.max(array)
    if 1 < hi <= 255 and (array.dtype == np.uint8 or np.min(array) >= 0):
        _warn(f"{argument} holds integer pixel values up to {int(hi)} (dtype {array.dtype}) and "
              f"the model has no Rescaling layer: unscaled inputs train slowly or not at all. "
              f"Divide by 255 ({argument} = {argument} / 255.0) or start the model with "
              f"kilnet.layers.Rescaling(1 / 255). Received: {argument} with dtype="
              f"{array.dtype} and max={int(hi)}")


def _scales_inputs(layer) -> bool:
    from kilnet.layers import Normalization, Operation, Rescaling
    if isinstance(layer, (Rescaling, Normalization)):
        return True
    if isinstance(layer, Operation):
        return layer.operation in _SCALING_OPS
    return any(_scales_inputs(inner) for inner in getattr(layer, "operations", layer.sublayers))


_SCALING_OPS = frozenset({"TrueDivide", "Divide", "Multiply"})


def _check_labels_alone(value, argument):
    """y on its own: numbers, finite. Class-id checks need the model (check_targets)."""
    source = _numeric(value, argument)
    array = _as_float32(source)
    if array.dtype.kind == "f":
        check_finite(array, argument, source if array is not source else None)
    return source


def _check_same_length(x, y, x_name, y_name):
    if len(x) != len(y):
        raise InputError(f"{x_name} and {y_name} must have the same number of samples (one "
                         f"label per input). Received: {x_name} with {len(x)} samples "
                         f"(shape {x.shape}) and {y_name} with {len(y)} (shape {y.shape})")


def with_keras_input_rank(model, x, index=0):
    """x as Keras's functional models take it: samples one axis short of a declared last axis
    of size 1 get that axis ((n, 28, 28) images for Input((28, 28, 1)), which keras.io's
    Siamese example feeds), and an extra last axis of size 1 is dropped.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> inputs = kilnet.Input((4, 4, 1))
        >>> model = kilnet.Model(inputs, kilnet.layers.Flatten()(inputs))
        >>> with_keras_input_rank(model, np.zeros((2, 4, 4))).shape
        (2, 4, 4, 1)
    """
    if model.input_specs is None or not model.is_functional:
        return x
    return model.with_declared_rank(x, index)   # the rule of the model's own call


def check_input_shape(model, x, argument="x", index=0, any_shape_call_takes=False):
    """x's samples against the model input's declared shape. `any_shape_call_takes`
    (predict): a subclassed model also takes a shape its call can be traced on (a tagger
    trained on 24 tokens predicts 8), as Keras's call does."""
    specs = model.input_specs
    expected = None if specs is None else specs[index].shape
    if expected is None or _shape_fits(x.shape[1:], expected):
        return
    got, expected = tuple(x.shape[1:]), tuple(expected)
    if any_shape_call_takes and _subclassed_call_takes(model, got, expected, len(specs)):
        return
    if not model.is_functional and len(got) == len(expected):
        free = ", ".join(["None"] * (len(expected) + 1))
        fix = ("a subclassed model trains and evaluates on the sample shape it was first "
               "built for; declare the axes of any length before fit, e.g. "
               f"model.build(({free}))")
    elif got + (1,) == expected:
        fix = f"add the missing last axis: {argument} = {argument}[..., None]"
    elif None not in expected and math.prod(got) == math.prod(expected):
        fix = (f"reshape the data ({argument}.reshape(len({argument}), "
               f"{', '.join(map(str, expected))})), or declare the model's input as "
               f"input_shape={got} and add a Flatten or Reshape layer")
    else:
        fix = ("give the model's first layer the data's shape (input_shape=..., or "
               "kilnet.Input(shape=...)), or reshape the data")
    raise InputError(f"{argument} has samples of shape {got} but the model expects {expected}; "
                     f"{fix}. Received: {argument}.shape={x.shape}")


def _shape_fits(got, expected) -> bool:
    """A sample shape against a declared one, where None (a variable length) takes any size."""
    return len(got) == len(expected) and all(e is None or g == e
                                              for g, e in zip(got, expected))


# -- the public checks, before the model is built ------------------------------------------------
# x and y arrive as lists (one array per model input / trained output, kilnet.structure);
# `x_names` / `y_names` say how messages name each one ("x", or "x['title']").
def _subclassed_call_takes(model, got, expected, inputs: int) -> bool:
    """True when a built subclassed model of one input traces its call on samples of shape
    `got` (same rank as `expected`), abstractly."""
    if model.is_functional or not model.built or inputs != 1 or len(got) != len(expected):
        return False
    try:
        model.sample_output_shape(got)
    except Exception:   # your call fails on that shape: the shape check speaks instead
        return False
    return True


def check_features(model, xs, names, any_shape_call_takes=False, against_inputs=True):
    """Each x on its own and against its model input's declared shape. Returns the arrays.
    `against_inputs=False`: the arrays of a batch the model's own step unpacks itself
    (kilnet.structure.is_step_batch), checked on their own only (numbers, finite)."""
    if not against_inputs:
        return [_check_numbers(_numeric(x, name), name) for x, name in zip(xs, names)]
    return [_check_features(model, x, name, index, any_shape_call_takes)
            for index, (x, name) in enumerate(zip(xs, names))]


def _labels(ys, names):
    return [_check_labels_alone(y, name) for y, name in zip(ys, names)]


def _same_length(arrays, names):
    for array, name in zip(arrays[1:], names[1:]):
        _check_same_length(arrays[0], array, names[0], name)


class ValidationData(NamedTuple):
    """fit()'s validation_data unpacked (`check_validation_data`): y and sample_weight are
    None where not given; x_argument is how messages name x_val."""
    x: object
    y: object
    sample_weight: object
    x_argument: str


def check_validation_data(validation_data) -> ValidationData:
    """validation_data unpacked as Keras unpacks it: a tuple or list is (x_val, y_val),
    (x_val, y_val, sample_weight_val) or (x_val,); anything else (a dict by input name, one
    array) is x_val alone, for a model that needs no targets (its loss from add_loss:
    keras.io's endpoint and OCR models; `check_validation_targets` says when one is needed).

    Example:
        >>> import numpy as np
        >>> check_validation_data({"a": np.zeros(2)}).x_argument
        'validation_data'
        >>> check_validation_data((np.zeros(2), np.ones(2))).y
        array([1., 1.])
    """
    if not isinstance(validation_data, (tuple, list)):
        return ValidationData(validation_data, None, None, "validation_data")
    if len(validation_data) not in (1, 2, 3):
        raise InputError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, "
                         "sample_weight_val), or x_val alone ((x_val,), a dict by input name) "
                         "for a model that needs no targets. Received: validation_data of type "
                         f"{type(validation_data).__name__} with {len(validation_data)} "
                         "elements")
    padded = tuple(validation_data) + (None,) * (3 - len(validation_data))
    return ValidationData(*padded, "validation_data[0]")


def check_validation_targets(objective, val: ValidationData, own_step: bool = False):
    """validation_data with no targets (x_val alone, or (x_val,)) for a model whose loss or
    metrics read them: the error names validation_data, not a label deep in the checks. A
    model's own test_step (`own_step`) decides for itself what it reads."""
    if val.y is not None or own_step or not objective.targets:
        return
    given = ("(x_val,)" if val.x_argument != "validation_data"
             else f"x_val alone (a {type(val.x).__name__}, which Keras reads as inputs only)")
    raise InputError("validation_data must give targets: the model's loss or metrics read "
                     "labels for " + ", ".join(repr(h.name) for h in objective.targets)
                     + ". Pass validation_data=(x_val, y_val). Received: validation_data as "
                     + given)


def sample_weights(objective, ys, sample_weight, class_weight, argument="sample_weight"):
    """The float32 weight arrays the programs find after the labels (kilnet.objective): []
    for none, [weights] for every output, or one array per trained output. They come from
    sample_weight or from class_weight (a dict class -> weight, read from the labels of the
    one trained output, as Keras). sample_weight holds one weight per sample, shape
    (samples,), or, as Keras takes it for a sequence loss, one per loss value ("temporal"
    weights, e.g. (samples, timesteps)); for a model with several trained outputs, also a
    list of such arrays, one per output, or a dict by output name (as Keras)."""
    if sample_weight is not None and class_weight is not None:
        raise InputError("Give sample_weight or class_weight, not both (as Keras). Received: "
                         "both")
    if sample_weight is not None and not ys:
        return _weights_without_targets(objective, argument)
    n = len(ys[0]) if ys else None
    if sample_weight is not None:
        per_output = objective.weights_per_output(sample_weight, argument)
        if per_output is not None:
            return [_weight_array(w, n, f"{argument}[{key!r}]") for key, w in per_output]
        return [_weight_array(sample_weight, n, argument)]
    if class_weight is None:
        return []
    return [_class_weights(objective, ys, class_weight)]


def _weights_without_targets(objective, argument):
    """sample_weight for a model whose loss reads no targets (its loss from add_loss): it
    weights nothing, and Keras ignores it; kilnet ignores it too, and says so."""
    if objective.targets:   # your compute_loss, given no y: the weights have no labels to go with
        raise InputError(f"{argument} needs the targets it weights: the model's loss reads "
                         "labels for " + ", ".join(repr(h.name) for h in objective.targets)
                         + f". Pass y (or (x_val, y_val, sample_weight_val)). Received: "
                         f"{argument} with no targets")
    warn_at_your_line(f"{argument} has no effect: sample weights weight the losses that "
                      "compile(loss=...) computes from targets, and this model has none (its "
                      "loss comes from add_loss, which Keras does not weight either). Remove "
                      f"{argument}, or weight the add_loss terms in your layer.", InputWarning)
    return []


def _weight_array(sample_weight, n, argument):
    """One float32 weights array: one weight per sample, or one per loss value."""
    weights = _numeric(sample_weight, argument).astype(np.float64)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.ndim == 0 or len(weights) != n:
        raise InputError(f"{argument} must hold one weight per sample, shape ({n},), or "
                         f"one per loss value, e.g. ({n}, timesteps) for a sequence "
                         f"loss. Received: {argument}.shape={weights.shape}")
    check_finite(weights.astype(np.float32), argument)
    return weights.astype(np.float32)


def _class_weights(objective, ys, class_weight):
    """One weight per sample from class_weight and the labels of the one trained output."""
    if not isinstance(class_weight, dict) or not all(
            _is_int(k) and isinstance(v, numbers.Real) and not isinstance(v, bool)
            for k, v in class_weight.items()):
        raise InputError("class_weight must be a dict {class id: weight}, e.g. {0: 1.0, 1: 5.0}. "
                         f"Received: class_weight={class_weight!r:.200}")
    if len(objective.targets) != 1:
        raise InputError("class_weight needs a model with one trained output (as Keras); for "
                         "several, pass sample_weight. Received: class_weight with "
                         f"{len(objective.targets)} trained outputs")
    labels = np.asarray(ys[0])
    if labels.ndim >= 2 and labels.shape[-1] > 1:   # one-hot labels: their class
        ids = labels.argmax(axis=-1)
    else:
        ids = labels.reshape(len(labels), -1)[:, 0]
    ids = np.rint(ids).astype(np.int64)
    table = np.ones(max(max(class_weight) + 1, int(ids.max()) + 1), np.float32)
    for cls, weight in class_weight.items():
        table[int(cls)] = float(weight)
    if ids.ndim > 1:
        ids = ids[:, 0]
    return table[ids]


def check_fit_inputs(model, xs, ys, *, x_names, y_names, batch_size, epochs, validation_split,
                     validation_data, initial_epoch, verbose,
                     validation_x_argument="validation_data[0]", validation_x_names=None):
    """Arguments and arrays of fit(); xs were checked already (check_features, before the
    model is built). validation_data, if given, is (xs_val, ys_val) as lists, and
    validation_x_argument how messages name xs_val (ValidationData.x_argument);
    `validation_x_names`, when given, names xs_val's arrays of a batch the model's own
    test_step unpacks itself (kilnet.structure.is_step_batch), checked on their own only.
    Returns (xs, ys, (xs_val, ys_val) or None, batch_size)."""
    check_epochs(epochs, initial_epoch)
    ys = _labels(ys, y_names)
    _same_length(xs + ys, x_names + y_names)
    val = None
    if validation_data is not None:
        as_given = validation_x_names is not None
        v_x_names = validation_x_names if as_given else [
            n.replace("x", validation_x_argument, 1) for n in x_names]
        v_y_names = [n.replace("y", "validation_data[1]", 1) for n in y_names]
        vxs = check_features(model, validation_data[0], v_x_names, against_inputs=not as_given)
        vys = _labels(validation_data[1], v_y_names)
        _same_length(vxs + vys, v_x_names + v_y_names)
        for vx, x, name in zip([] if as_given else vxs, xs, v_x_names):
            if vx.shape[1:] != x.shape[1:]:
                raise InputError(f"{name} must have samples shaped like x's, "
                                 f"{x.shape[1:]}. Received: {name}.shape={vx.shape}")
        val = (vxs, vys)
        # Keras ignores validation_split when validation_data is given.
        n_train = _check_validation_split(validation_split, len(xs[0]), used=False)
    else:
        n_train = _check_validation_split(validation_split, len(xs[0]))
    batch_size = _check_batch_size(batch_size, n_train)
    for x, name in zip(xs, x_names):  # once per fit: x is representative of x_val
        _warn_unscaled_images(model, x, name)
    return xs, ys, val, batch_size


def check_eval_inputs(model, xs, ys, *, x_names, y_names, batch_size):
    """evaluate()'s arrays; xs were checked already (check_features)."""
    ys = _labels(ys, y_names)
    _same_length(xs + ys, x_names + y_names)
    batch_size = _check_batch_size(batch_size, len(xs[0]), warn=False)
    for x, name in zip(xs, x_names):
        _warn_unscaled_images(model, x, name)
    return xs, ys, batch_size


def check_predict_inputs(model, xs, *, x_names, batch_size, against_inputs=True):
    """predict()'s arrays (`against_inputs`: see check_features)."""
    xs = check_features(model, xs, x_names, any_shape_call_takes=True,
                        against_inputs=against_inputs)
    _same_length(xs, x_names)
    batch_size = _check_batch_size(batch_size, len(xs[0]), warn=False)
    for x, name in zip(xs, x_names):
        _warn_unscaled_images(model, x, name)
    return xs, batch_size


# -- after the model is built: labels against the loss and the output shape -----------------------
def check_targets(model, objective, ys, val=None, *, y_names, job="fit"):
    """Labels against each trained output's loss and shape; warnings about the last layer."""
    for index, head in enumerate(objective.targets[:len(ys)]):
        out = tuple(head.shape)
        if not out or head.loss is None:  # a model without a feature axis: nothing to compare
            continue
        _check_labels(head.given_loss, ys[index], out, y_names[index])
        if val is not None:
            name = y_names[index].replace("y", "validation_data[1]", 1)
            _check_labels(head.given_loss, val[index], out, name)
        if job == "fit" and len(objective.heads) == 1:
            _warn_last_layer(model, head.given_loss, out)


def _check_labels(loss, y, out, argument):
    y = np.asarray(y)
    # An axis the model leaves open (a variable-length sequence's time axis) takes the
    # labels' length, so (batch, 5) class ids fit an output of shape (None, None, 30).
    given = y.shape[1:]
    out = tuple(given[i] if d is None and i < len(given) else d for i, d in enumerate(out))
    if isinstance(loss, losses_lib.SparseCategoricalCrossentropy):
        _check_sparse(y, out, argument)
    elif isinstance(loss, losses_lib.CategoricalCrossentropy):
        _check_one_hot(y, out, argument)
    elif isinstance(loss, (losses_lib.BinaryCrossentropy, losses_lib._Elementwise)):
        _check_elementwise(loss, y, out, argument)


def _batch_shape(n, shape):
    return (n,) + tuple(shape)


def _received_shapes(y, out, argument):
    return f"Received: {argument}.shape={y.shape} for model.output_shape={(None,) + out}"


def _check_sparse(y, out, argument):
    width, class_shape, n = out[-1], out[:-1], len(y)
    shape = tuple(y.shape[1:])
    if shape == out and width > 1:
        raise InputError(
            f"{argument} looks one-hot (shape {y.shape}) but loss="
            f"'sparse_categorical_crossentropy' expects integer class ids of shape "
            f"{_batch_shape(n, class_shape)}. Use loss='categorical_crossentropy' for one-hot "
            f"labels, or pass {argument}.argmax(axis=-1). {_received_shapes(y, out, argument)}")
    if shape not in (class_shape, class_shape + (1,)):
        raise InputError(
            f"{argument} must hold one integer class id per sample, shape "
            f"{_batch_shape(n, class_shape)}, for loss='sparse_categorical_crossentropy'. "
            f"Reshape the labels, or pick the loss that matches them. "
            f"{_received_shapes(y, out, argument)}")
    if y.dtype.kind == "f":
        fractional = y != np.floor(y)
        if fractional.any():
            where, _ = _first(fractional, y, argument)
            raise InputError(
                f"{argument} must hold integer class ids for loss="
                f"'sparse_categorical_crossentropy', but has values with a fractional part. "
                f"For regression targets use loss='mse'; for probabilities, "
                f"loss='binary_crossentropy' or 'categorical_crossentropy'. Received: {where}")
    values = y.astype(np.int8) if y.dtype.kind == "b" else y
    lo, hi = _py(values.min()), _py(values.max())
    if lo < 0:
        where, _ = _first(values < 0, values, argument)
        raise InputError(
            f"{argument} must hold class ids from 0 to {width - 1} (the last layer has {width} "
            f"units), but has negative values. Re-map the labels to 0..{width - 1}. "
            f"Received: {where}")
    if hi >= width:
        where, _ = _first(values >= width, values, argument)
        if width == 1:
            fix = ("a last layer of 1 unit can only predict class 0: for two classes use "
                   "Dense(1, activation='sigmoid') with loss='binary_crossentropy', or "
                   "Dense(2, activation='softmax')")
        elif lo >= 1 and hi == width:
            fix = f"the labels look 1-based: subtract 1 ({argument} - 1)"
        else:
            fix = (f"give the last layer one unit per class, Dense({int(hi) + 1}), or re-map "
                   f"the labels to 0..{width - 1}")
        raise InputError(
            f"{argument} has class ids up to {hi!r} but the model's last layer has {width} "
            f"units, so class ids must be 0 to {width - 1}; {fix}. Received: {where}")


def _check_probabilities(y, argument, loss_name, fix):
    values = y.astype(np.int8) if y.dtype.kind == "b" else y
    lo, hi = _py(values.min()), _py(values.max())
    if lo < 0 or hi > 1:
        where, _ = _first((values < 0) | (values > 1), values, argument)
        raise InputError(f"{argument} must hold values in [0, 1] for loss='{loss_name}' (0/1 "
                         f"labels or probabilities), but has values in [{lo!r}, {hi!r}]; "
                         f"{fix}. Received: {where}")


def _check_one_hot(y, out, argument):
    width, shape, n = out[-1], tuple(y.shape[1:]), len(y)
    if width > 1 and shape in (out[:-1], out[:-1] + (1,)):
        raise InputError(
            f"{argument} holds one class id per sample (shape {y.shape}) but loss="
            f"'categorical_crossentropy' expects one-hot labels of shape "
            f"{_batch_shape(n, out)}. Use loss='sparse_categorical_crossentropy' for integer "
            f"labels, or one-hot encode them (np.eye({width})[{argument}]). "
            f"{_received_shapes(y, out, argument)}")
    if shape != out:
        if len(shape) == len(out) and shape[:-1] == out[:-1]:
            raise InputError(
                f"{argument} has {shape[-1]} classes (one-hot width {shape[-1]}) but the model's "
                f"last layer has {width} units; give the last layer one unit per class, "
                f"Dense({shape[-1]}). {_received_shapes(y, out, argument)}")
        raise InputError(f"{argument} must have one-hot labels of shape {_batch_shape(n, out)} "
                         f"for loss='categorical_crossentropy'. "
                         f"{_received_shapes(y, out, argument)}")
    _check_probabilities(y, argument, "categorical_crossentropy",
                         "use loss='sparse_categorical_crossentropy' for class ids")


def _check_elementwise(loss, y, out, argument):
    """Binary and regression losses compare labels and outputs element by element."""
    shape, n = tuple(y.shape[1:]), len(y)
    # What losses.match_rank accepts without broadcasting one against the other.
    if shape == out or shape == out + (1,) or (out[-1] == 1 and shape == out[:-1]):
        if isinstance(loss, losses_lib.BinaryCrossentropy):
            _check_probabilities(
                y, argument, "binary_crossentropy",
                "for class ids 0..K-1 use loss='sparse_categorical_crossentropy' with a last "
                "layer Dense(K, activation='softmax')")
        return
    name = getattr(loss, "name", type(loss).__name__)
    if out[-1] > 1 and shape in (out[:-1], out[:-1] + (1,)):
        fix = (f"with one label per sample the last layer needs 1 unit "
               f"(Dense(1{', activation=' + repr('sigmoid') if name == 'binary_crossentropy' else ''})"
               f"), or give {out[-1]} labels per sample")
    elif len(shape) == len(out) and shape[:-1] == out[:-1]:
        fix = f"give the last layer {shape[-1]} units, Dense({shape[-1]})"
    else:
        fix = "reshape the labels to the model's output shape"
    raise InputError(f"{argument} must have the model's output shape, {_batch_shape(n, out)}, "
                     f"for loss='{name}', which compares them element by element; {fix}. "
                     f"{_received_shapes(y, out, argument)}")


def _warn_last_layer(model, loss, out):
    activation = model.output_activations()[0]
    if getattr(loss, "from_logits", False) and activation in ("softmax", "sigmoid"):
        _warn(f"The loss has from_logits=True but the last layer already applies {activation}, "
              f"so the loss treats probabilities as logits and trains poorly. Remove the "
              f"activation from the last layer (e.g. Dense({out[-1]})), or use "
              f"from_logits=False (kilnet then computes the loss from the logits itself). "
              f"Received: loss={loss!r} with a last layer activation='{activation}'")
    if activation == "softmax" and out[-1] == 1:
        _warn("The last layer applies softmax to a single unit, which always outputs 1.0, so "
              "the model cannot learn. For two classes use Dense(1, activation='sigmoid') with "
              "loss='binary_crossentropy'. Received: a last layer of 1 unit with "
              "activation='softmax'")


# -- for code that writes checkpoints -------------------------------------------------------------
def assert_all_finite(tree, what="the model"):
    """Raise NonFiniteError if any floating-point array of `tree` holds NaN or inf.

    For checkpoint and model writers: a file with non-finite values must never be written.
    `what` names the thing in the message, e.g. "checkpoint 'ckpt/epoch_3'". Copies each array
    to the host (a host sync), which the caller is about to do anyway to write it.
    """
    import jax
    import jax.numpy as jnp

    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        array = np.asarray(leaf)
        if array.dtype.kind not in "fc":  # bfloat16 and other ml_dtypes floats
            array = array.astype(np.float32)
        count = int(array.size - np.count_nonzero(np.isfinite(array)))
        if count:
            bad.append(f"{jax.tree_util.keystr(path) or '<array>'} ({count} of {array.size})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteError(
            f"Refusing to save {what}: it holds NaN or infinite values, which would make the "
            f"file useless. Save from the last finite state instead (fit's default "
            f"on_nonfinite='stop' keeps it), and lower the learning rate or clip gradients. "
            f"Received: non-finite values in {shown}")


# -- warnings ---------------------------------------------------------------------------------------
def _warn(message):
    """warnings.warn, attributed to the user's line that called into kilnet."""
    warn_at_your_line(message, InputWarning)
