"""Checking layers with sub-layers (MultiHeadAttention, Bidirectional, TimeDistributed, RNN) against
a Keras weights file before the model is built.

Why a module of its own: building a model makes its weights, so a config that declares
MultiHeadAttention(num_heads=10**6) in a 10 KB file would make kilnet allocate gigabytes before
any array of the file is compared. kilnet.saving.precheck_graph checks kilnet's leaf layers
abstractly; this module does the same for the layers holding sub-layers: every weight shape
their config and input shape declare is compared with the shape the file declares (which the
file's size bounds, see _h5.WeightsFile.checked), and a wrapped layer is traced abstractly
(jax.eval_shape) on the file's shapes, all before anything is allocated.
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet.errors import ModelFileError
from kilnet.keras_files import _layout
from kilnet.layers import LAYER_TYPES
from kilnet.layers import (RNN, Bidirectional, InputLayer, MultiHeadAttention, Pipeline,
                           SpectralNormalization, StackedRNNCells, TimeDistributed)
from kilnet.layers._conv_lstm import ConvLSTMCell
from kilnet.layers._rnn import RNNCell
from kilnet.models import Model


def check_composites(model, h5_prefix, weights):
    """Check every layer with sub-layers in `model` (unbuilt, shapes known from its graph)
    against the declared shapes in the open weights file; ModelFileError on a mismatch.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet.keras_files import _h5, _precheck
        >>> inputs = kilnet.Input(shape=(2, 3))
        >>> model = kilnet.Model(inputs, kilnet.layers.TimeDistributed(
        ...     kilnet.layers.Dense(10**6))(inputs))
        >>> small = [("layers/time_distributed/layer/vars/0", np.zeros((3, 2), "float32")),
        ...          ("layers/time_distributed/layer/vars/1", np.zeros((2,), "float32"))]
        >>> with _h5.WeightsFile(_h5.write_weights(small, {}), "m.keras") as f:
        ...     _precheck.check_composites(model, "", f)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        kilnet.errors.ModelFileError: Cannot load m.keras: layer 'dense' ... does not fit ...
    """
    for layer, h5_name in _layout.children(model):
        group = f"{h5_prefix}layers/{h5_name}/"
        if isinstance(layer, InputLayer):
            continue
        if isinstance(layer, Model):
            if layer.is_functional:
                check_composites(layer, group, weights)
        elif layer.sublayers:
            _check(layer, layer.build_shape, group, weights)


def _check(layer, shape, group, weights):
    if isinstance(layer, MultiHeadAttention):
        _attention(layer, shape, group, weights)
    elif isinstance(layer, Bidirectional):
        _check(layer.forward_layer, shape, group + "forward_layer/", weights)
        _check(layer.backward_layer, shape, group + "backward_layer/", weights)
    elif isinstance(layer, TimeDistributed):
        if not isinstance(shape, tuple) or len(shape) < 2:
            _fail(weights, layer, f"its input shape {shape} has no time axis")
        _check(layer.sublayers[0], tuple(shape[1:]), group + "layer/", weights)
    elif isinstance(layer, SpectralNormalization):
        _spectral(layer, shape, group, weights)
    elif isinstance(layer, RNN):
        _recurrent(layer, shape, group, weights)
    elif isinstance(layer, Pipeline) and all(
            inner.is_pure and not (inner.param_names or inner.state_names or inner.sublayers)
            for inner in layer.sublayers):
        pass   # augmentation steps: no weights, so nothing in the file to check
    elif layer.sublayers and LAYER_TYPES.get(type(layer).__name__) is not type(layer):
        # A class of yours (custom_objects or registered) makes its sub-layers in its own
        # build: kilnet cannot trace that before building, and trusts your code as Keras
        # does; every array is still checked against its Variable's shape when read.
        pass
    elif layer.sublayers or isinstance(layer, Model) or not layer.is_pure:
        _fail(weights, layer, "it is a layer with sub-layers inside a wrapper, which kilnet "
                              "cannot check against the file before building it")
    else:
        _leaf(layer, shape, group, weights)


def _spectral(layer, shape, group, weights):
    """The wrapped layer against `layer/vars`, and the wrapper's own copy of the kernel and
    its vector_u (1, units) against `vars/0` and `vars/1`."""
    _check(layer.layer, shape, group + "layer/", weights)
    kernel = _declared(weights, group + "layer/vars/0", layer)
    if _declared(weights, group + "vars/0", layer) != kernel:
        _fail(weights, layer, f"its copy of the kernel {group}vars/0 does not have the "
                              f"wrapped kernel's shape {kernel}")
    if _declared(weights, group + "vars/1", layer) != (1, kernel[-1]):
        _fail(weights, layer, f"its vector_u must have the shape {(1, kernel[-1])}")


def _declared(weights, h5_path, layer):
    shape = weights.shape_of(h5_path)
    if shape is None:
        _fail(weights, layer, f"its weight {h5_path!r} is missing")
    return shape


def _leaf(layer, shape, group, weights):
    """Trace the unbuilt leaf layer on the file's declared shapes (nothing allocated)."""
    arrays = {"params": {}, "state": {}}
    for h5, name in _layout.leaf_names(layer, group, ()):
        kind, _, weight = name.partition("/")
        arrays[kind][weight] = jax.ShapeDtypeStruct(_declared(weights, h5, layer),
                                                    weights.dtype_of(h5))   # int8: quantized
    if not isinstance(shape, tuple) or None in shape:
        _fail(weights, layer, f"its input shape {shape} is not fully known")
    try:
        expected = tuple(layer.sample_output_shape(shape))
        out, _ = jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, training=False),
                                arrays["params"], {**arrays["state"], **_carried(layer, 1)},
                                jax.ShapeDtypeStruct((1,) + shape, np.float32))
        got = [tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(out)]
        if got != [expected]:
            raise ValueError(f"its arrays give outputs of shape {got}, expected {[expected]}")
    except Exception as error:  # shape errors from any layer's own code
        _fail(weights, layer, f"does not fit its arrays: {error}")


def _recurrent(layer, shape, group, weights):
    """RNN(cell) with kilnet's own cells: the layer traced on the file's declared shapes. A
    cell of your own (custom_objects) is built and then compared, as your own leaf layers
    are: its weights exist only once its build() has run."""
    if isinstance(layer.cell, ConvLSTMCell):
        _conv_lstm(layer, shape, group, weights)
        return
    stacked = isinstance(layer.cell, StackedRNNCells)
    cells = [(c, f"{group}cell/cells/{h5}/") for c, h5 in _layout.numbered(layer.cell.cells)] \
        if stacked else [(layer.cell, group + "cell/")]
    if not all(isinstance(cell, RNNCell) for cell, _ in cells):
        return
    params, state = {}, {}
    for cell, prefix in cells:
        params[cell.name] = {name.partition("/")[2]: jax.ShapeDtypeStruct(
            _declared(weights, h5, layer), np.float32)
            for h5, name in _layout.leaf_names(cell, prefix, ())}
        state[cell.name] = {}
    if stacked:
        params, state = {layer.cell.name: params}, {layer.cell.name: state}
    if not isinstance(shape, tuple) or None in shape[1:]:
        _fail(weights, layer, f"its input shape {shape} has steps of unknown shape")
    steps = (2 if shape[0] is None else shape[0],) + tuple(shape[1:])
    try:
        expected = layer.sample_output_shape(steps)
        expected = expected if isinstance(expected, list) else [expected]
        out, _ = jax.eval_shape(lambda p, s, x: layer.apply(p, s, x, training=False),
                                params, {**state, **_carried(layer, 1)},
                                jax.ShapeDtypeStruct((1,) + steps, np.float32))
        got = [tuple(leaf.shape[1:]) for leaf in jax.tree.leaves(out)]
        if got != [tuple(e) for e in expected]:
            raise ValueError(f"its arrays give outputs of shape {got}, expected {expected}")
    except Exception as error:  # shape errors from any layer's own code
        _fail(weights, layer, f"does not fit its arrays: {error}")


def _conv_lstm(layer, shape, group, weights):
    """A ConvLSTM's weight shapes, from its config and its steps' channels, against the
    file's (its states' shape depends on the frames' size, so it is not traced here)."""
    if not isinstance(shape, tuple) or not shape or shape[-1] is None:
        _fail(weights, layer, f"its input shape {shape} has no known number of channels")
    wanted = layer.cell.weight_shapes(shape[-1])
    for h5, name in _layout.leaf_names(layer.cell, group + "cell/", ()):
        weight = name.partition("/")[2]
        found = _declared(weights, h5, layer)
        if found != wanted[weight]:
            _fail(weights, layer, f"its config (filters={layer.filters}, kernel_size="
                                  f"{layer.kernel_size}) declares a {weight} of shape "
                                  f"{wanted[weight]}, but the file holds {found}")


def _attention(layer, shape, group, weights):
    """Each projection's kernel and bias shape, from the config, against the file's."""
    shapes = [tuple(shape)] * 3 if shape and isinstance(shape[0], (int, type(None))) \
        else [tuple(s) for s in shape]
    if len(shapes) == 2:
        shapes.append(shapes[1])   # the key defaults to the value, as in Keras
    query, value, key = shapes
    heads = layer.num_heads
    shared = getattr(layer, "num_key_value_heads", heads)   # GroupedQueryAttention's key/value
    out = tuple(layer.sample_output_shape(shapes)[len(query) - 1:])
    kernels = {"query": (query[-1], heads, layer.key_dim),
               "key": (key[-1], shared, layer.key_dim),
               "gate": (query[-1], heads, layer.value_dim),
               "value": (value[-1], shared, layer.value_dim),
               "attention_output": (heads, layer.value_dim) + out}
    biases = {"query": (heads, layer.key_dim), "key": (shared, layer.key_dim),
              "gate": (heads, layer.value_dim), "value": (shared, layer.value_dim),
              "attention_output": out}
    for part in layer.sublayers:
        prefix = f"{group}{_layout.attention_part(layer, part.name)}/vars/"
        wanted = [kernels[part.name]] + ([biases[part.name]] if layer.use_bias else [])
        for index, need in enumerate(wanted):
            found = _declared(weights, f"{prefix}{index}", layer)
            if found != need:
                _fail(weights, layer, f"its config (num_heads={heads}, key_dim="
                                      f"{layer.key_dim}, value_dim={layer.value_dim}) declares "
                                      f"{part.name} weights of shape {need}, but the file holds "
                                      f"{found}")


def _carried(layer, batch) -> dict:
    """A stateful layer's carried states (not in files) for a trace at `batch`."""
    return layer.carried_state_specs(batch) if layer.carried_state_names else {}


def _fail(weights, layer, problem):
    raise ModelFileError(weights.path, f"layer {layer.name!r} ({type(layer).__name__}) "
                                       f"{problem}.")
