"""Layers called on TensorFlow tensors: inside a tf.data pipeline's `map` (keras.io's
`ds.map(lambda x, y: (data_augmentation(x), y))`), a `tf.function`, or eagerly.

Keras's preprocessing layers switch to TensorFlow ops there. kilnet's layers compute with JAX
and NumPy, so a call on a TensorFlow graph tensor becomes one `tf.numpy_function` node: when
the pipeline runs, the layer's own kilnet computation runs on the host, eagerly, on the NumPy
value of each element or batch, and the node's output carries the static shape and dtype the
layer computes for the input's static shape. Random layers draw there from their own
SeedGenerators, as Keras's do (a new draw per call). A call on an eager TensorFlow tensor
runs on its NumPy value. Strings arrive as NumPy arrays of bytes, which kilnet's text layers read.

kilnet.utils.FeatureSpace, called on a dict of columns, is taken the same way
(`takes_tensorflow_columns`): the dict's graph tensors are one node's inputs, and its output
is the encoded matrix or the dict of encoded features.

kilnet never imports TensorFlow: an argument whose type comes from a `tensorflow` module
means the caller has imported it, and it is taken from `sys.modules`.
"""

from __future__ import annotations

import functools
import sys
import threading

import jax
import numpy as np

from kilnet import _scope
from kilnet.errors import InputTypeError

# The tf.data threads run host calls one at a time: a first call builds the layer, and a
# random layer advances its SeedGenerator's state; neither may interleave with another
# thread's call.
_HOST_CALLS = threading.RLock()


def takes_tensorflow_tensors(call):
    """Wrap a layer class's `__call__` so that TensorFlow tensors among its arguments are
    taken as described in this module's docstring; any other call goes through unchanged.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Twice(kilnet.layers.Layer):
        ...     def call(self, x):
        ...         return 2 * x
        >>> Twice.__call__ is takes_tensorflow_tensors(Twice.__call__)   # already wrapped
        True
        >>> Twice()(np.ones(2, np.float32)).tolist()
        [2.0, 2.0]
    """
    if getattr(call, "takes_tensorflow_tensors", False):
        return call

    @functools.wraps(call)
    def __call__(self, *args, **kwargs):
        tf = _tensorflow_behind((args, kwargs))
        if tf is None:
            return call(self, *args, **kwargs)
        refuse_under_gradient_tape(self)
        if not any(_is_graph_tensor(tf, leaf) for leaf in jax.tree.leaves((args, kwargs))):
            args, kwargs = jax.tree.map(_eager_as_numpy, (args, kwargs))
            return call(self, *args, **kwargs)
        return _call_in_tensorflow_graph(tf, self, call, args, kwargs)

    __call__.takes_tensorflow_tensors = True
    return __call__


def takes_tensorflow_columns(output_spec):
    """Decorate the `__call__(self, data)` of an object called on a dict of columns
    (kilnet.utils.FeatureSpace) so that TensorFlow tensors among the dict's values are taken
    as layers take them: graph tensors become one `tf.numpy_function` node whose inputs are
    the dict's values as a flat list, rebuilt into the dict (of NumPy values, strings as
    bytes) for the call on the host; eager tensors are called with their NumPy values.

    `output_spec(obj, shapes)` answers, for the static shapes of the dict's values
    ({key: list of dims, or None for an unknown rank}), the output's (shape, dtype name), or
    a dict of them when the call returns a dict.

    Example:
        >>> import numpy as np
        >>> class Total:
        ...     @takes_tensorflow_columns(lambda total, shapes: ([None], "float32"))
        ...     def __call__(self, data):
        ...         return sum(np.asarray(v, np.float32) for v in data.values())
        >>> Total()({"a": np.ones(2), "b": np.ones(2)}).tolist()
        [2.0, 2.0]
    """
    def decorate(call):
        @functools.wraps(call)
        def __call__(self, data):
            tf = _tensorflow_behind(data) if isinstance(data, dict) else None
            if tf is None:
                return call(self, data)
            if not any(_is_graph_tensor(tf, value) for value in data.values()):
                return call(self, {key: _eager_as_numpy(v) for key, v in data.items()})
            return _call_on_graph_columns(tf, self, call, data, output_spec)

        return __call__

    return decorate


def _call_on_graph_columns(tf, obj, call, data, output_spec):
    """The call on a dict of graph tensors as a `tf.numpy_function` node."""
    keys = list(data)
    tensors = [_dense_column(tf, obj, key, data[key]) for key in keys]
    shapes = {key: t.shape.as_list() if t.shape.rank is not None else None
              for key, t in zip(keys, tensors)}

    def on_host(*arrays):
        return call(obj, dict(zip(keys, arrays)))

    return _host_node(tf, on_host, tensors, output_spec(obj, shapes),
                      f"kilnet_{type(obj).__name__}")


def _dense_column(tf, obj, key, value):
    """A dict value as a dense tf.Tensor (NumPy values and lists as constants); ragged and
    sparse tensors refused, naming the key."""
    if _from_tensorflow(value) and not isinstance(value, tf.Tensor):
        raise TypeError(
            f"{type(obj).__name__} was called in a tf.data map or a tf.function with "
            f"{type(value).__name__} {key!r}: kilnet runs that call on the host through "
            "tf.numpy_function, which takes dense tensors. Received: "
            f"{key!r} of type {type(value).__name__}. Convert it first in the map "
            "(`x.to_tensor()`, `tf.sparse.to_dense(x)`).")
    return tf.convert_to_tensor(value)


def _from_tensorflow(value) -> bool:
    return type(value).__module__.split(".")[0] == "tensorflow"


class GradientTapeError(InputTypeError):
    """A kilnet layer or model was called on TensorFlow tensors while a `tf.GradientTape`
    records (keras.io's "writing a training loop from scratch in TensorFlow")."""


def refuse_under_gradient_tape(layer) -> None:
    """Refuse a call on TensorFlow tensors while a `tf.GradientTape` records: kilnet computes
    with JAX, which a tape cannot see, so `tape.gradient` could only fail on the outputs
    (Keras 3 on JAX fails there too, on an array without `_id`). The error shows the JAX form
    of the same loop. Called only when the caller has imported TensorFlow.

    Example:
        >>> refuse_under_gradient_tape(None)   # without TensorFlow's tape module: nothing to do
    """
    # TensorFlow has no public "is a tape recording" query; its eager `record` module, loaded
    # with TensorFlow, has one. Without it (another TensorFlow layout) the call goes on.
    record = sys.modules.get("tensorflow.python.eager.record")
    could_record = getattr(record, "could_possibly_record", None)
    if could_record is None or not could_record():
        return
    raise GradientTapeError(
        f"{type(layer).__name__} was called on TensorFlow tensors inside a tf.GradientTape. "
        "kilnet computes with JAX, which the tape cannot differentiate: tape.gradient would "
        "find no gradients. Write the step the JAX way (Keras's \"writing a training loop "
        "from scratch in JAX\" guide):\n"
        "    def loss_fn(trainable, non_trainable, x, y):\n"
        "        y_pred, non_trainable = model.stateless_call(trainable, non_trainable, x,\n"
        "                                                     training=True)\n"
        "        return loss(y, y_pred), non_trainable\n"
        "    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)\n"
        "and apply the gradients with optimizer.stateless_apply, or let model.fit train "
        "(override train_step for a step of your own).")


def _tensorflow_behind(tree):
    """The `tensorflow` module when an argument is one of its objects, else None (at once
    when the caller never imported TensorFlow)."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not any(_from_tensorflow(leaf) for leaf in jax.tree.leaves(tree)):
        return None
    return tf


def _is_graph_tensor(tf, value) -> bool:
    """Whether `value` is a TensorFlow tensor with no value yet (tf.data's map, tf.function)."""
    if not _from_tensorflow(value):
        return False
    if isinstance(value, tf.Tensor):
        return tf.is_symbolic_tensor(value)
    return not tf.executing_eagerly()   # a RaggedTensor or SparseTensor in a graph


def _eager_as_numpy(value):
    """An eager TensorFlow tensor as its NumPy value (strings as bytes); the rest as given."""
    return value.numpy() if _from_tensorflow(value) and hasattr(value, "numpy") else value


def _call_in_tensorflow_graph(tf, layer, call, args, kwargs):
    """The layer's call on one graph tensor as a `tf.numpy_function` node."""
    tensor = _the_one_tensor(tf, layer, args, kwargs)
    extra_args = args[1:]

    def on_host(array):
        return _one_output(layer, call(layer, array, *extra_args, **kwargs))

    return _host_node(tf, on_host, [tensor], _output_spec(layer, tensor),
                      f"kilnet_{type(layer).__name__}")


def _host_node(tf, compute, tensors, output_spec, name):
    """One `tf.numpy_function` node that runs `compute(*arrays)` on the host, one call at a
    time, on the NumPy values of `tensors`. `output_spec` is (static shape, dtype name), or a
    dict of them when `compute` returns a dict; the node's outputs carry them, in that
    structure (the dict's order kept)."""
    keys = list(output_spec) if isinstance(output_spec, dict) else None
    specs = [output_spec[key] for key in keys] if keys else [output_spec]
    dtypes = [dtype for _, dtype in specs]

    def on_host(*arrays):
        with _HOST_CALLS, _scope.seed_generator_draws():
            result = compute(*arrays)
        results = [result[key] for key in keys] if keys else [result]
        return [_as_numpy(value, dtype) for value, dtype in zip(results, dtypes)]

    outputs = tf.numpy_function(on_host, list(tensors), [tf.as_dtype(d) for d in dtypes],
                                stateful=True, name=name)
    for output, (shape, _) in zip(outputs, specs):
        output.set_shape(shape)
    return dict(zip(keys, outputs)) if keys else outputs[0]


def _the_one_tensor(tf, layer, args, kwargs):
    """The call's input when it is a single dense tf.Tensor and no other argument is a
    TensorFlow object; else a TypeError that says what is taken."""
    others = [leaf for leaf in jax.tree.leaves((args[1:], kwargs)) if _from_tensorflow(leaf)]
    first = args[0] if args else None
    if isinstance(first, tf.Tensor) and not others:
        return first
    received = (type(first).__name__ if not others
                else f"{len(others) + 1} TensorFlow arguments")
    raise TypeError(
        f"Layer {layer.name!r} ({type(layer).__name__}) was called on TensorFlow graph "
        "tensors (in a tf.data map or a tf.function): kilnet runs such a call on the host "
        "through tf.numpy_function and takes a single dense tf.Tensor as its only TensorFlow "
        f"argument, as Keras's preprocessing layers do. Received: {received}. Call the layer "
        "once per tensor (e.g. `ds.map(lambda x, y: (layer(x), y))`), or convert ragged and "
        "sparse tensors first (`x.to_tensor()`, `tf.sparse.to_dense(x)`).")


def _output_spec(layer, tensor) -> tuple:
    """(static shape, dtype name) of the layer's output for `tensor`: its
    compute_output_shape for the tensor's static shape (unknown axes stay None; an
    unbatched element is answered as a batch of one; an unknown shape where the layer
    cannot say) and its compute_output_dtype."""
    dtype = tensor.dtype.name
    shape = tensor.shape.as_list() if tensor.shape.rank is not None else None
    return _output_shape(layer, shape), layer.compute_output_dtype(dtype)


def _output_shape(layer, shape):
    if shape is None:
        return None
    for attempt in (tuple(shape), (1,) + tuple(shape)):
        try:
            answer = layer.compute_output_shape(attempt)
        except Exception:   # the layer cannot say for this shape: try the next form
            continue
        if not isinstance(answer, tuple):
            return None   # several outputs: the single node's shape stays unknown
        return list(answer) if len(attempt) == len(shape) else list(answer[1:])
    return None


def _one_output(layer, result):
    """The layer's host result, refused when it is several outputs."""
    if isinstance(result, (list, tuple, dict)):
        raise TypeError(
            f"Layer {layer.name!r} ({type(layer).__name__}) returned "
            f"{type(result).__name__} in a tf.data map or tf.function; kilnet's host call "
            "there gives back one tensor. Call a layer of one output there.")
    return result


def _as_numpy(result, dtype):
    """A host result as the NumPy array its node declared (`dtype`)."""
    array = np.asarray(result)
    if dtype == "string":   # TensorFlow takes strings as bytes
        return np.char.encode(array, "utf-8").astype(object) if array.dtype.kind == "U" \
            else array
    return array.astype(dtype, copy=False)
