"""Layers that hold another layer: Wrapper (Keras's public base of the layers that wrap one
layer), Bidirectional (a recurrent layer read both ways) and TimeDistributed (a layer applied to
every time step), with Keras 3's arguments and configs.

Why they are written this way: the inner layers are sub-layers in kilnet's pure form, as
MultiHeadAttention's projections are: their arrays live in `params[inner.name]`, they are built
in `init`, and `apply` calls their `apply`. So their weights are exactly the inner layers'
(Bidirectional: the forward layer's, then the backward layer's, as Keras orders them), and a
config nests the inner layer's Keras entry (kilnet.layers._nested), rebuilt through the
model-file allowlist by `from_config`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import _scope, utils
from kilnet.layers import _nested
from kilnet.layers._base import Layer, is_shape, without_batch_axis
from kilnet.layers._recurrent import RNNBase, check_call_options
from kilnet.layers._rnn import RNN

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Wrapper(Layer):
    """The base of the layers that wrap one layer and change what it does, as Keras's
    Wrapper: TimeDistributed and SpectralNormalization derive from it, and so can yours.

    The wrapped layer is `self.layer`, a sub-layer (its weights are the wrapper's). `build`
    builds it for the wrapper's input shape, so a subclass's build can read its weights after
    `super().build(input_shape)`; the config holds its Keras entry under "layer", and
    `from_config` rebuilds it from there.

    Args:
        layer: the kilnet layer to wrap.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> class Doubled(kilnet.layers.Wrapper):
        ...     def call(self, inputs):
        ...         return 2.0 * self.layer(inputs)
        >>> doubled = Doubled(kilnet.layers.Dense(1, kernel_initializer="ones"))
        >>> np.asarray(doubled(np.ones((1, 3)))).tolist()
        [[6.0]]
        >>> again = Doubled.from_config(doubled.get_config())
        >>> type(again.layer).__name__, again.layer.units
        ('Dense', 1)
    """

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(f"{type(self).__name__} wraps a kilnet layer; create it first, "
                             f"e.g. {type(self).__name__}(kilnet.layers.Dense(4)). Received: "
                             f"layer={layer!r:.100}")
        super().__init__(**kwargs)
        self.layer = layer

    def build(self, input_shape=None):
        """Build the wrapped layer for the wrapper's input shape (batch axis included, as
        Keras passes it), unless it is built already. kilnet's own wrappers (pure form) build
        it in `init`, for the shape it sees there (TimeDistributed's: one step's)."""
        if not self.is_pure and not self.layer.built:
            rng = _scope.init_rng() or utils.numpy_rng(utils.next_seed())
            self.layer.build_weights(utils.numpy_rng(int(rng.integers(2**31))),
                                     without_batch_axis(input_shape))

    def get_config(self):
        config = super().get_config()
        config["layer"] = _nested.keras_entry(self.layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        layer = _nested.rebuilt(config.pop("layer"))
        return cls(layer, **config)


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy of it backwards over the same sequence, and
    merges the two outputs, as Keras's Bidirectional.

    Args:
        layer: a SimpleRNN, LSTM, GRU or RNN(cell). As Keras, it is copied (from its config) into
            `forward_layer`, named "forward_<name>", and, unless backward_layer is given,
            into `backward_layer` with go_backwards=True, named "backward_<name>".
        merge_mode: "concat" (default), "sum", "mul", "ave", or None (both outputs, as a list).
        backward_layer: the recurrent layer for the backward direction (its go_backwards must
            differ from the forward layer's; return_sequences and return_state must agree).

    With return_sequences the backward outputs are flipped back to the input's time order
    before merging. With return_state the outputs are `[merged, *forward states, *backward
    states]`; initial_state takes the forward states then the backward states. A sequence
    mask is passed to both directions (their masked outputs are zeros, as Keras forces).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> bi = kilnet.layers.Bidirectional(kilnet.layers.LSTM(4, return_sequences=True))
        >>> bi(np.ones((2, 5, 3))).shape
        (2, 5, 8)
        >>> [layer.name for layer in bi.sublayers]
        ['forward_lstm', 'backward_lstm']
        >>> kilnet.layers.Bidirectional(kilnet.layers.GRU(4), merge_mode="sum")(
        ...     kilnet.Input(shape=(None, 3))).shape
        (None, 4)
    """

    @property
    def sample_rank(self):   # its layer's: how build((10,)) reads
        return self.forward_layer.sample_rank

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None,
                 **kwargs):
        super().__init__(**kwargs)
        _check_recurrent(layer, "layer")
        if backward_layer is not None:
            _check_recurrent(backward_layer, "backward_layer")
        if merge_mode not in MERGE_MODES:
            raise ValueError(f"merge_mode must be one of {list(MERGE_MODES)}. Received: "
                             f"merge_mode={merge_mode!r}")
        if weights is not None:
            raise ValueError("Bidirectional(weights=...) is not supported: set them after the "
                             "layer is built, with set_weights. Received: weights of type "
                             f"{type(weights).__name__}")
        self.merge_mode = merge_mode
        self.forward_layer = _copy(layer, name=f"forward_{_strip(layer.stable_name, 'forward_')}")
        if backward_layer is None:
            backward_layer = _copy(layer, name=f"backward_{_strip(layer.stable_name, 'backward_')}",
                                   go_backwards=not layer.go_backwards)
        self.backward_layer = backward_layer
        self._check_directions()
        # As Keras: masked steps give zero outputs, so the two directions line up.
        for inner in (self.forward_layer, self.backward_layer):
            inner.zero_output_for_mask = inner.return_sequences
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self.stateful = self.forward_layer.stateful

    @property
    def states(self):
        """The forward layer's carried states, then the backward layer's (stateful), else
        None, as Keras's."""
        forward, backward = self.forward_layer.states, self.backward_layer.states
        return tuple(forward + backward) if forward and backward else None

    def reset_state(self, states=None) -> None:
        """Both directions' states to zeros (or to `states`: the forward layer's, then the
        backward layer's), as Keras's reset_state."""
        if not self.stateful:
            raise AttributeError("Layer must be stateful.")
        half = None if states is None else len(states) // 2
        self.forward_layer.reset_state(None if states is None else states[:half])
        self.backward_layer.reset_state(None if states is None else states[half:])

    def reset_states(self, states=None) -> None:
        """Keras's alias of reset_state."""
        self.reset_state(states)

    def _check_directions(self):
        forward, backward = self.forward_layer, self.backward_layer
        if forward.go_backwards == backward.go_backwards:
            raise ValueError("Bidirectional's forward and backward layers must read in "
                             "opposite directions. Received: go_backwards="
                             f"{forward.go_backwards} for both")
        for attribute in ("return_sequences", "return_state", "stateful"):
            if getattr(forward, attribute) != getattr(backward, attribute):
                raise ValueError(
                    f"Bidirectional's forward and backward layers must agree on {attribute}. "
                    f"Received: {getattr(forward, attribute)} (forward), "
                    f"{getattr(backward, attribute)} (backward)")
        if forward.name == backward.name:
            raise ValueError("Bidirectional's forward and backward layers need different "
                             f"names. Received: {forward.name!r} for both")

    def get_config(self):
        config = super().get_config()
        config["merge_mode"] = self.merge_mode
        config["layer"] = _nested.keras_entry(self.forward_layer)
        config["backward_layer"] = _nested.keras_entry(self.backward_layer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = _nested.rebuilt(config["layer"])
        if config.get("backward_layer") is not None:
            config["backward_layer"] = _nested.rebuilt(config["backward_layer"])
        return cls(**config)

    # -- shapes ----------------------------------------------------------------------------------
    def sample_output_shape(self, input_shape):
        shapes = self.forward_layer.sample_output_shape(input_shape)
        output, states = (shapes[0], shapes[1:]) if self.return_state else (shapes, [])
        if self.merge_mode == "concat":
            outputs = [output[:-1] + (2 * output[-1],)]
        elif self.merge_mode is None:
            outputs = [output, output]
        else:
            outputs = [output]
        if len(outputs) == 1 and not states:
            return outputs[0]
        return outputs + states + states

    def compute_call_output_shape(self, input_shape, kwargs):
        check_call_options(self, kwargs)
        if kwargs.get("initial_state") is not None:
            self._split_states(kwargs["initial_state"])
        return self.sample_output_shape(input_shape)

    def compute_mask(self, inputs, previous_mask=None):
        if self.return_sequences:
            output_mask = [previous_mask, previous_mask] if self.merge_mode is None else (
                previous_mask)
        else:
            output_mask = [None, None] if self.merge_mode is None else None
        if not self.return_state:
            return output_mask
        heads = output_mask if isinstance(output_mask, list) else [output_mask]
        return heads + [None] * (2 * self.forward_layer.STATES)

    # -- weights and calling ---------------------------------------------------------------------
    def init(self, rng, input_shape):
        for inner in (self.forward_layer, self.backward_layer):
            inner.build_batch_size = self.build_batch_size   # a stateful layer's states
            inner.build_weights(rng, input_shape)
        return self.params_tree(), self.state_tree(), self.sample_output_shape(input_shape)

    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              mask=None, initial_state=None):
        forward_state, backward_state = (self._split_states(initial_state)
                                         if initial_state is not None else (None, None))
        state = dict(state)
        results = []
        for index, (inner, states) in enumerate(((self.forward_layer, forward_state),
                                                 (self.backward_layer, backward_state))):
            key = None if rng is None else jax.random.fold_in(rng, index)
            out, state[inner.name] = inner.apply(
                params[inner.name], state[inner.name], x, training=training, rng=key,
                sample_mask=sample_mask, mask=mask, initial_state=states)
            results.append(out if self.return_state else [out])
        (y, *forward_states), (y_rev, *backward_states) = results
        # RNN(cell) keeps a stacked cell's states nested; here they come flat, in order.
        forward_states, backward_states = (jax.tree.leaves(forward_states),
                                           jax.tree.leaves(backward_states))
        if self.return_sequences:
            y_rev = jnp.flip(y_rev, axis=1)  # back to the input's time order
        merged = self._merge(y, y_rev)
        if not self.return_state:
            return merged, state
        heads = merged if isinstance(merged, list) else [merged]
        return heads + forward_states + backward_states, state

    def _merge(self, y, y_rev):
        if self.merge_mode == "concat":
            return jnp.concatenate([y, y_rev], axis=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "mul":
            return y * y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        return [y, y_rev]

    def _split_states(self, initial_state):
        """initial_state as (forward states, backward states): the first half, the second."""
        count = self.forward_layer.STATES + self.backward_layer.STATES
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != count:
            raise ValueError(f"Bidirectional takes initial_state as a list of {count} tensors: "
                             "the forward layer's states, then the backward layer's. Received: "
                             f"{_count(initial_state)}")
        half = self.forward_layer.STATES
        return list(initial_state[:half]), list(initial_state[half:])


class TimeDistributed(Wrapper):
    """Applies a layer to every time step of its input, as Keras's TimeDistributed: an input
    (batch, time, ...) gives (batch, time, *the layer's output for one step).

    The steps are folded into the batch axis, so the inner layer runs once on (batch * time,
    ...) and its weights (the only weights) are shared by every step.

    Args:
        layer: a kilnet layer taking one input and giving one output.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> td = kilnet.layers.TimeDistributed(kilnet.layers.Dense(2))
        >>> td(np.ones((4, 7, 3))).shape
        (4, 7, 2)
        >>> [w.shape for w in td.weights]
        [(3, 2), (2,)]
    """

    def _step_shape(self, input_shape):
        if not is_shape(input_shape) or len(input_shape) < 2:
            raise ValueError("TimeDistributed takes inputs of shape (batch, time, ...) with at "
                             f"least 3 dimensions. Received: input of shape "
                             f"{_with_batch(input_shape)}")
        return tuple(input_shape[1:])

    def sample_output_shape(self, input_shape):
        step = self.layer.sample_output_shape(self._step_shape(input_shape))
        if not is_shape(step):
            raise ValueError("TimeDistributed wraps layers with one output. Received: a layer "
                             f"giving outputs of shapes {step}")
        return (input_shape[0],) + tuple(step)

    def compute_mask(self, inputs, previous_mask=None):
        return previous_mask  # each step keeps its place, so the sequence keeps its mask

    def init(self, rng, input_shape):
        self.layer.build_weights(rng, self._step_shape(input_shape))
        return self.params_tree(), self.state_tree(), self.sample_output_shape(input_shape)

    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              mask=None):
        # mask (batch, time) marks padding steps: each step is computed on its own, so the
        # real steps' outputs do not depend on it, and it goes on with the output.
        x = jnp.asarray(x)
        batch, time = x.shape[:2]
        folded = x.reshape((batch * time,) + x.shape[2:])
        step_mask = None if sample_mask is None else jnp.repeat(sample_mask, time)
        inner, state = self.layer, dict(state)
        y, state[inner.name] = inner.apply(params[inner.name], state[inner.name], folded,
                                           training=training, rng=rng, sample_mask=step_mask)
        if not hasattr(y, "shape"):
            raise ValueError("TimeDistributed wraps layers with one output. Received: "
                             f"{type(inner).__name__} giving {type(y).__name__}")
        return y.reshape((batch, time) + y.shape[1:]), state


# -- helpers ---------------------------------------------------------------------------------------
def _check_recurrent(layer, argument):
    if not isinstance(layer, (RNNBase, RNN)):
        raise ValueError(f"Bidirectional's {argument} must be a recurrent layer (SimpleRNN, "
                         f"LSTM, GRU or RNN(cell)). Received: {argument}={layer!r:.100}")


def _copy(layer, *, name, **changes):
    """A new layer of the same class and config (Keras's Bidirectional copies its layer)."""
    config = dict(layer.get_config(), name=name, **changes)
    config.pop("input_shape", None)
    return type(layer).from_config(config)


def _strip(name: str, prefix: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def _count(value) -> str:
    return (f"{len(value)} tensors" if isinstance(value, (list, tuple))
            else f"a {type(value).__name__}")


def _with_batch(shape):
    return (None,) + tuple(shape) if is_shape(shape) else shape
