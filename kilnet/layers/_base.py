"""The Layer contract. A layer is written in one of two forms, and both mix in one model:

- **kilnet's pure form** (the layers shipped with kilnet): `init(rng, input_shape) -> (params,
  state, output_shape)` makes the arrays (NumPy, drawn from the Generator `rng`) and
  `apply(params, state, inputs, *, training, rng, sample_mask) -> (outputs, new_state)` is a
  pure function, traced inside the compiled programs.
- **Keras's form**: `build(input_shape)` with `self.add_weight(...)`, and `call(inputs,
  training=None)` reading `self.kernel` and calling sub-layers held as attributes. The base
  class turns it into the pure form: `apply` binds every Variable to the array passed in for
  the duration of `call` (kilnet._scope), so `call` is pure too.

`rng` in apply is a JAX key (randomness is explicit); `sample_mask` marks the real samples of a
padded last batch (it is not Keras's sequence `mask`).

Calling a layer (`layer(x)`) records a node on symbolic tensors (the functional API), runs
inside an enclosing `call` with the arrays that call provides, or computes eagerly on arrays,
building the layer's weights on first use, as Keras does.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import os
import sys
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import (_names, _registry, _scope, _tree, activations, backend, constraints,
                    initializers, mixed_precision, random, regularizers, utils)
from kilnet.layers import _auto_config, _batch_axis, _shared_layers, _tracking
from kilnet.layers._call_context import described_call
from kilnet.layers._host_call import refuse_strings, takes_strings
from kilnet.layers._tensorflow_calls import takes_tensorflow_tensors
from kilnet.layers._input_spec import check_input_spec
from kilnet.layers import _tensor_masks as tensor_masks
from kilnet.layers._mask_arguments import CallArguments, arguments_named, automatic_masks
from kilnet.layers._node import KerasTensor, Node, is_symbolic
from kilnet.layers._positional_values import (described, positional_parameter_names,
                                              refuse_positional_training,
                                              refuse_positional_values, several_inputs_hint)
from kilnet.layers._value_reads import CallReadsValues, reading_values
from kilnet.metrics import Metric
from kilnet.variables import Variable, to_array

Shape = tuple  # a shape without its batch axis, e.g. (28, 28)
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# A call given no `training` at all: unlike `training=None` passed by the caller, which Keras
# hands to `call` as it is (and under which inner layers take their own defaults).
UNSAID = object()


def _read_by_kilnet(frame) -> bool:
    """Whether `frame` (the reader of a missing layer attribute) is kilnet's own code: its
    probes (`getattr(layer, "num_key_value_heads", heads)` while a file is checked before
    anything is built) must not draw weights; only yours read weights that way."""
    return frame.f_code.co_filename.startswith(_PACKAGE_DIR)


class Layer:
    """Base class of every layer and model.

    Subclass it the Keras way: create weights in `build` with `add_weight`, compute in `call`
    with `kilnet.ops`; sub-layers assigned as attributes are tracked.

    Args:
        name: unique name of the layer (default: from the class name, e.g. "dense_1").
        input_shape: the input shape without the batch axis, on a model's first layer.
        trainable: whether fit() updates its weights.
        dtype: the layer's dtype policy (kilnet.mixed_precision): a name such as
            "mixed_bfloat16" or a DTypePolicy; default: the global policy. Weights stay
            float32; the layer computes in the policy's compute dtype.
        autocast: whether the floating inputs and weights are cast to the compute dtype
            before the layer runs (Keras's `autocast`).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet import ops
        >>> class Scale(kilnet.layers.Layer):
        ...     def build(self, input_shape):
        ...         self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")
        ...     def call(self, inputs):
        ...         return ops.multiply(inputs, self.w)
        >>> layer = Scale()
        >>> np.asarray(layer(np.array([[1.0, 2.0]]))).tolist()
        [[1.0, 2.0]]
        >>> [w.name for w in layer.weights]
        ['variable']
    """

    param_names: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    # The training flag of a layer called on its own on arrays, when the call does not say
    # (Keras: False; its augmentation layers: True).
    eager_training_default = False
    # Constructor arguments saved in a config, beyond name/input_shape.
    config_keys: tuple[str, ...] = ()
    # Keras's base-layer argument: set by the constructor (None: no penalty on the outputs)
    activity_regularizer = None
    # Keras's argument prefix of a weight whose name does not say it: DepthwiseConv2D's
    # "kernel" takes depthwise_regularizer / depthwise_constraint (see regularizer_for).
    weight_arguments: dict = {}

    # Whether the layer's own weights are cast to its compute dtype before it runs (Keras's
    # add_weight(autocast=...)); BatchNormalization keeps float32 weights to compute its
    # statistics in float32 (autocast_apply).
    autocast_weights = True
    # Whether a subclass's own build and call get the Keras-form handling below: your
    # `layer.build(shape)` leaves the layer built (_completing_build), your call() on a
    # built-in layer's subclass is what runs (_apply_through_call). A Model does both itself.
    keras_form_hooks = True
    # A name between the layer's and its weights' in their paths: Keras's LSTM keeps its
    # weights in a cell layer ("lstm/lstm_cell/kernel"), kilnet's LSTM holds them itself.
    weight_scope = None
    # Whether a layer made without a name reads Keras's per-process name until a model fixes
    # one (_names.numbered_in_process); a model keeps its own default name (its files and
    # paths stay the same on every run) and an op node is named by its graph.
    numbered_in_process = True
    # Whether Python values (ints, bools, strings) may follow the input by position. Keras
    # refuses them for every layer (_positional_values); an op recorded as a graph node
    # (`ops.not_equal(x, 0)`) is Keras's Operation, which takes them.
    positional_values_allowed = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:   # a TensorFlow tensor is seen before your own code
            cls.__call__ = takes_tensorflow_tensors(cls.__dict__["__call__"])
        if "compute_output_shape" in cls.__dict__ and "sample_output_shape" not in cls.__dict__:
            # your compute_output_shape (Keras's form) is the class's shape rule, as in Keras
            cls.sample_output_shape = _batch_axis.sample_rule_from_yours
        if not cls.keras_form_hooks:
            return
        own = cls.__dict__.get("build")
        if own is not None and not getattr(own, "completes_build", False):
            cls.build = _completing_build(own)
        if ("call" in cls.__dict__ and "apply" not in cls.__dict__
                and cls.apply is not Layer.apply and not hasattr(cls.apply, "built_in_apply")):
            cls.apply = _apply_through_call(cls.apply)
            if "compute_call_output_shape" not in cls.__dict__:
                cls.compute_call_output_shape = _traced_call_output_shape

    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        # Keras's automatic config: a class of yours without get_config() is configured by
        # the arguments it was made with, which only its constructor call sees
        if not cls.config_keys and getattr(cls.get_config, "reads_recorded_arguments", False):
            set_untracked(layer, "_recorded_arguments",
                          _auto_config.recorded_arguments(cls, args, kwargs))
        return layer

    def __init__(self, *, name: str | None = None, input_shape=None, dtype=None,
                 trainable: bool = True, batch_input_shape=None, input_dim=None,
                 autocast: bool = True, activity_regularizer=None, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments "
                            f"{sorted(kwargs)}.")
        # Keras's base layer takes an activity_regularizer for any layer: a class that does
        # not apply one itself (Dense, the convolutions... take theirs by name) passes it on
        # to here, and autocast_apply penalizes the outputs with it
        set_untracked(self, "_base_activity_regularizer",
                      regularizers.get(activity_regularizer, "activity_regularizer"))
        if activity_regularizer is not None:
            set_untracked(self, "activity_regularizer", self._base_activity_regularizer)
        if name is not None:
            _names.check_name(name)   # the rule model files need: what saves, loads
        set_untracked(self, "_dtype_policy", self._checked_policy(dtype, "dtype"))
        set_untracked(self, "autocast", bool(autocast))
        if input_shape is None and batch_input_shape is not None:
            input_shape = tuple(batch_input_shape)[1:]
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        set_untracked(self, "_sublayers", [])
        set_untracked(self, "_trainable_vars", [])
        set_untracked(self, "_non_trainable_vars", [])
        # state carried from call to call that is not a weight (a stateful RNN's states):
        # in the state tree the compiled programs carry, not in weights or files (as Keras)
        set_untracked(self, "_carried_vars", [])
        # the SeedGenerators kept as attributes: their states are variables, not weights
        set_untracked(self, "_seed_generators", [])
        # the Metric objects kept as attributes (Keras's tracked metrics): `metrics`
        set_untracked(self, "_held_metrics", [])
        self._track_attributes_set_before_init()
        set_untracked(self, "_inbound_nodes", [])
        set_untracked(self, "_eager_losses", [])
        set_untracked(self, "_trainable", bool(trainable))
        set_untracked(self, "_name", name)  # None until a model names it (see `name`)
        set_untracked(self, "_process_name", _names.numbered_in_process(self.default_name)
                      if name is None and self.numbered_in_process else None)
        self.declared_input_shape = (as_shape(input_shape, "input_shape")
                                     if input_shape is not None else None)
        self.built = False
        self.build_shape = None   # the input shape the weights were made for
        self.build_dtype = None   # the input dtype(s) seen on the first call
        # the batch size of the first call, where known: an eager call's arrays, a symbolic
        # tensor from an Input given batch_size or batch_shape (a stateful RNN needs it)
        self.build_batch_size = None

    @property
    def default_name(self) -> str:
        return _names.snake_case(type(self).__name__)

    @property
    def name(self) -> str:
        """The layer's name: given, else numbered within the first model that holds it
        ("dense", "dense_1", ...), else numbered per process by its default name as Keras
        names it (the second layer of a kind made on its own is "dense_1").

        Example:
            >>> import kilnet
            >>> kilnet.utils.clear_session()
            >>> first, second = kilnet.layers.Dense(2), kilnet.layers.Dense(3)
            >>> first.name, second.name
            ('dense', 'dense_1')
            >>> model = kilnet.Sequential([kilnet.Input((4,)), second])
            >>> second.name   # numbered within its model from now on
            'dense'
        """
        return self._name or self.__dict__.get("_process_name") or self.default_name

    @property
    def stable_name(self) -> str:
        """The given or fixed name, else the unnumbered default: what a name derived from
        this layer is built on (Bidirectional's "forward_lstm"), so that it does not depend
        on how many layers the process made before.

        Example:
            >>> import kilnet
            >>> kilnet.utils.clear_session()
            >>> _, lstm = kilnet.layers.LSTM(2), kilnet.layers.LSTM(2)
            >>> lstm.name, lstm.stable_name
            ('lstm_1', 'lstm')
        """
        return self._name or self.default_name

    @name.setter
    def name(self, value: str):
        _names.check_name(value)
        set_untracked(self, "_name", value)

    @property
    def path(self):
        """Keras's `layer.path`: the names of the layers it was built inside, then its own
        ("sequential/dense"; "dense" for a functional model's layer); None until built. A
        LayoutMap key "<path>/output" lays out its output (kilnet.distribution).

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2)])
            >>> model.build()   # built: the path is known
            >>> model.path, model.layers[0].path
            ('sequential', 'sequential/dense')
        """
        return self.__dict__.get("_path")

    @property
    def name_is_fixed(self) -> bool:
        """True once the name was given or fixed by a model (it no longer changes)."""
        return self._name is not None

    def take_name(self, taken) -> str:
        """Fix a default name unique among `taken` (the names of its siblings in a model);
        a given or already fixed name is kept."""
        if self._name is None:
            before = self.name
            set_untracked(self, "_name", _names.unique_among(self.default_name, taken))
            # Weights made in __init__ took the name it had then in their paths; several
            # instances of one class would share "tree/variable" (Keras's are told apart).
            for variable in self._trainable_vars + self._non_trainable_vars:
                variable.rename_owner(before, self._name)
        return self._name

    # -- the dtype policy (kilnet.mixed_precision) ---------------------------------------------
    @property
    def dtype_policy(self) -> mixed_precision.DTypePolicy:
        """The layer's dtype policy: float32 weights, computing in `compute_dtype`."""
        return self._dtype_policy

    @dtype_policy.setter
    def dtype_policy(self, value):
        set_untracked(self, "_dtype_policy", self._checked_policy(value, "dtype_policy"))

    def _checked_policy(self, value, argument):
        policy = mixed_precision.get(value, argument)
        if policy.quantization_mode is not None and \
                policy.quantization_mode not in self.quantization_modes:
            raise ValueError(
                f"{type(self).__name__} has no quantized form in {policy.quantization_mode}: kilnet "
                f"quantizes it with the modes {self.quantization_modes} (int8: Dense, EinsumDense, "
                "Embedding, ReversibleEmbedding; int4: Dense, EinsumDense). Use a float policy "
                f"such as 'float32'. Received: {argument}={policy.name!r}")
        return policy

    @property
    def compute_dtype(self) -> str:
        """The dtype the layer computes in: its floating inputs and weights are cast to it."""
        return self._dtype_policy.compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype of the layer's weights (float32 in kilnet)."""
        return self._dtype_policy.variable_dtype

    # The modes whose QuantizedDTypePolicy the layer computes under (Dense, EinsumDense:
    # "int8" and "int4"; Embedding: "int8"; kilnet.layers._int8); others refuse them.
    quantization_modes = ()

    @property
    def quantization_mode(self):
        """The layer's quantization mode ("int8" once `model.quantize("int8")` quantized it,
        or when made with a quantized dtype policy), else None: Keras's attribute.

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dense(2).quantization_mode is None
            True
            >>> kilnet.layers.Dense(2, dtype="int8_from_float32").quantization_mode
            'int8'
        """
        return self._dtype_policy.quantization_mode

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantize the layer's weights in place (Keras's `Layer.quantize`): kilnet's Dense,
        EinsumDense, Embedding, ReversibleEmbedding and attention projections implement "int8"
        (`model.quantize("int8")` calls it on each); other layers keep their float weights
        and raise NotImplementedError, with Keras's message.

        Example:
            >>> import kilnet
            >>> kilnet.layers.Flatten().quantize("int8")
            Traceback (most recent call last):
            ...
            NotImplementedError: Layer Flatten does not have a `quantize` method implemented.
        """
        raise NotImplementedError(f"Layer {type(self).__name__} does not have a `quantize` "
                                  "method implemented.")

    @property
    def dtype(self) -> str:
        """The dtype of the layer's weights, as Keras's `layer.dtype` (an InputLayer's is the
        dtype of the input it declares)."""
        return self.__dict__.get("_declared_dtype") or self.variable_dtype

    @dtype.setter
    def dtype(self, value):
        set_untracked(self, "_declared_dtype", value)

    # -- attribute tracking: sub-layers and variables assigned as attributes ------------------
    def __setattr__(self, name, value):
        if not name.startswith("__") and name not in _BOOKKEEPING:
            if "_sublayers" in self.__dict__:
                # a list or dict that may hold layers reports the ones added to it later
                value = _tracking.tracked(value, self)
                for item in _tracking.contents(value):
                    self.track_attribute_item(item)
            else:
                # Before Layer.__init__ (keras.io's Switch Transformer sets its experts and
                # router first, then calls super().__init__()): Keras tracks these too, so
                # Layer.__init__ tracks them, in the order they were set
                self.__dict__.setdefault("_set_before_init", {})[name] = None
        object.__setattr__(self, name, value)

    def _track_attributes_set_before_init(self) -> None:
        """Track the attributes a subclass's __init__ set before calling Layer.__init__, as
        if set now: its sub-layers, weights and SeedGenerators, in the order it set them."""
        for name in self.__dict__.pop("_set_before_init", {}):
            if name in self.__dict__:
                setattr(self, name, self.__dict__[name])

    def track_attribute_item(self, item):
        """Keep `item`, found in an attribute (or a list or dict kept as one), among this
        layer's sub-layers or weights when it is a layer or a Variable."""
        if isinstance(item, Layer) and item is not self and not any(
                item is s for s in self._sublayers):
            item.take_name({s.name for s in self._sublayers} | self._own_weight_keys())
            self._sublayers.append(item)
        elif isinstance(item, Variable):
            self._track_variable(item, yours=True)
        elif isinstance(item, random.SeedGenerator) and not any(
                item is g for g in self._seed_generators):
            self._seed_generators.append(item)
        elif isinstance(item, Metric) and not any(item is m for m in self._held_metrics):
            self._held_metrics.append(item)

    def untrack_attribute_item(self, item):
        """A layer removed from a list or dict attribute is no longer a sub-layer (Keras's)."""
        if isinstance(item, Layer):
            self._sublayers[:] = [s for s in self._sublayers if s is not item]

    def _track_variable(self, variable: Variable, yours: bool = False):
        """Keep `variable` among the layer's weights. `yours`: made by your code (add_weight,
        a Variable kept as an attribute); one made outside build (in __init__, the
        subclassing guide's Linear) is made by no build again, so unbuild keeps it."""
        if any(variable is v for v in self._trainable_vars + self._non_trainable_vars):
            return
        # Keras keeps two weights of one name apart by position; kilnet's trees need keys
        taken = self._own_weight_keys() | {key for key, _ in self.keyed_sublayers()}
        if variable.tree_key in taken:
            variable.key_apart_from(taken)
        (self._trainable_vars if variable.trainable else self._non_trainable_vars).append(
            variable)
        if yours and not self.__dict__.get("in_build_hook"):
            if "_weights_made_in_init" not in self.__dict__:
                set_untracked(self, "_weights_made_in_init", set())
            self._weights_made_in_init.add(id(variable))

    def _own_weight_keys(self) -> set:
        return {v.tree_key for v in self._trainable_vars + self._non_trainable_vars}

    # -- what the pure form implements ---------------------------------------------------------
    @property
    def is_pure(self) -> bool:
        """True for layers written in kilnet's init/apply form (they override apply)."""
        return type(self).apply is not Layer.apply

    def compute_output_shape(self, input_shape, *more_shapes, **options):
        """The output shape for an input of `input_shape`, as Keras's: the shape with its
        batch axis first (None, or a known size), answered with it; a list of shapes for a
        layer of several inputs (a merge layer), or one argument each where Keras's layer
        takes them so. A class of yours may override it in this form (calling a sub-layer's
        `compute_output_shape`, or `super().compute_output_shape`); kilnet's graph reads
        your answer.

        Example:
            >>> from kilnet import layers
            >>> layers.Conv2D(4, 3).compute_output_shape((None, 8, 8, 1))
            (None, 6, 6, 4)
            >>> layers.Flatten().compute_output_shape((32, 8, 8, 3))
            (32, 192)
        """
        shapes = [input_shape, *more_shapes] if more_shapes else input_shape
        batch, samples = _batch_axis.split_batch(shapes)
        rule = _batch_axis.built_in_rule(type(self))
        return _batch_axis.with_batch(batch, rule(self, samples, **options))

    def sample_output_shape(self, input_shape):
        """The output shape (batch axis excluded) for an input of `input_shape` (batch axis
        excluded): kilnet's per-sample form of `compute_output_shape`, which the functional
        graph and `init` use."""
        if self.is_pure:
            return input_shape
        return self._traced_output_shape(input_shape)

    def init(self, rng, input_shape) -> tuple[dict, dict, Any]:
        """Return (params, state, output_shape) for an input of `input_shape`; Keras-form
        layers run `build` and trace `call` once (building sub-layers on their first call)."""
        if self.is_pure:
            return {}, {}, self.sample_output_shape(input_shape)
        params, state, outputs = self._keras_init(rng, input_shape)
        return params, state, output_shapes(outputs)

    def apply(self, params, state, *args, training=False, rng=None, sample_mask=None,
              **kwargs):
        """Return (outputs, new_state): runs `call` with every weight bound to `params` /
        `state` (pure, so it can be traced). A layer reached at several places finds its
        arrays at each (kilnet.layers._shared_layers)."""
        given_state = state
        params, state, filled = _shared_layers.expanded(params, state,
                                                        _shared_layers.alias_paths(self))
        scope = self.scope_for(params, state, training=training, rng=rng,
                               sample_mask=sample_mask)
        layers = scope.layers
        with _scope.opened(scope):
            outputs = self._run_call(args, kwargs, training)
            # add_weight(regularizer=...) penalties, once per call, as Keras's layer.losses
            if self.trainable:
                regularizers.add_weight_penalties(
                    self.__dict__.get("_weight_regularizers", {}), params, self)
        new_state = {v.tree_key: scope.assigned.get(id(v), state[v.tree_key])
                     for v in self._non_trainable_vars}
        for key, sub in self.keyed_sublayers():
            new_state[key] = layers[id(sub)][1]
        return outputs, _shared_layers.collapsed(new_state, given_state, filled)

    def scope_for(self, params, state, *, training=False, rng=None, sample_mask=None):
        """The scope `call` runs in (kilnet._scope): each of this layer's Variables bound to
        its array of `params` / `state`, each sub-layer to its part of them. A model's own
        compute_loss runs in it too, so the layers it calls read the traced weights."""
        bindings = {id(v): params[v.tree_key] for v in self._trainable_vars}
        bindings.update({id(v): state[v.tree_key] for v in self._non_trainable_vars})
        layers = {id(sub): [params.get(key, {}), state.get(key, {})]
                  for key, sub in self.keyed_sublayers()}
        return _scope.Scope(bindings=bindings, training=bool(training), rng=rng,
                            training_given=training is not None,
                            sample_mask=sample_mask, layers=layers,
                            sublayers=list(self._sublayers),
                            kept_writes=_scope.kept_writes_here())

    # -- what the Keras form implements --------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create the layer's weights with `add_weight` (Keras's form; default: none). On
        kilnet's own layers (the init/apply form) it makes their weights for inputs of
        `input_shape`, batch axis first, as Keras's `build` does. A shape of one known
        length, `(10,)`, is read as Keras's layers read it (sample_shape_readings): a batch
        of scalars where the layer takes scalars, else one sample's 10 features.

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((None, 3))
            >>> dense.kernel.shape, dense.bias.shape
            ((3, 2), (2,))
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((10,))   # keras.io's quantization guide
            >>> dense.kernel.shape, dense(np.ones((4, 10))).shape
            ((10, 2), (4, 2))
        """
        if self.is_pure and not self.built and type(self).init is Layer.init:
            # no weights to make: as Keras's default build, any shape (None too) will do, and
            # the first call checks what the layer takes
            set_untracked(self, "_shape_given_to_build", input_shape)
            self.built = True
            return
        if self.is_pure and not self.built:
            rng = _drawing_rng()
            # each reading draws from the same start, so the weights do not depend on the tries
            first_reading_that_builds(
                input_shape, lambda shape: self.build_weights(copy.deepcopy(rng), shape),
                self.sample_rank)

    def call(self, inputs, *args, **kwargs):
        """The computation (Keras's form), written with kilnet.ops. On kilnet's own layers it
        runs their built-in computation, so a subclass's call can use super().call(inputs)."""
        built_in = getattr(type(self).apply, "built_in_apply", None)
        if built_in is not None:
            return self._built_in_call(built_in, inputs, *args, **kwargs)
        raise NotImplementedError(
            f"{type(self).__name__} defines neither call(self, inputs) (Keras's form) nor "
            "init/apply (kilnet's form): implement call() to say what the layer computes.")

    def _built_in_call(self, built_in_apply, inputs, *args, **kwargs):
        """super().call(inputs) in a built-in layer's subclass: the built-in computation on
        the weights bound in the running call; its new state (a BatchNormalization's
        statistics) is assigned as a call's assign would."""
        params = {v.tree_key: to_array(v) for v in self._trainable_vars}
        state = {v.tree_key: to_array(v) for v in self._non_trainable_vars}
        keyed = self.keyed_sublayers()
        for key, sub in keyed:
            params[key], state[key] = _scope.layer_entry(sub) or (
                sub.params_tree(), sub.state_tree())
        # super().call(inputs, training=True) (keras.io's Monte-Carlo dropout) trains the
        # built-in computation whatever the call's mode, as Keras's
        training = kwargs.pop("training", UNSAID)
        outputs, new_state = built_in_apply(
            self, params, state, inputs, *args,
            training=bool(self.resolved_training(training)), rng=_scope.next_rng(),
            sample_mask=_scope.sample_mask(), **kwargs)
        for v in self._non_trainable_vars:
            if v.tree_key in new_state:
                v.assign(new_state[v.tree_key])
        for key, sub in keyed:
            entry = _scope.layer_entry(sub)
            if entry is not None and key in new_state:
                entry[1] = new_state[key]
        return outputs

    def add_weight(self, shape=None, initializer=None, dtype=None, trainable=True,
                   name=None, regularizer=None, constraint=None, autocast=True,
                   aggregation=None, overwrite_with_gradient=False):
        """Create a weight of this layer, as Keras's `Layer.add_weight`.

        Args:
            shape: the weight's shape (default: a scalar).
            initializer: a kilnet initializer name ("glorot_uniform", "zeros", ...) or a
                callable `f(shape, dtype)`. Default: "glorot_uniform" (as Keras for floats).
            trainable: whether the optimizer updates it; non-trainable weights are state
                (update them in `call` with `variable.assign`).
            name: the name inside the layer (default "variable", "variable_1", ...).
            regularizer: a penalty of the weight ("l1", "l2", "l1_l2", a
                kilnet.regularizers object or a callable) added to the loss at each call
                while the weight is trainable, as Keras's `layer.losses`.
            constraint: a projection applied after each optimizer update
                (kilnet.constraints).

        Returns:
            The kilnet.variables.Variable, to keep as an attribute (`self.kernel = ...`).
        """
        if overwrite_with_gradient:
            # Keras's float8 training sets it (the optimizer then writes a custom gradient into
            # the weight); kilnet's optimizers would update such a weight as any other
            raise NotImplementedError(
                "add_weight: overwrite_with_gradient=True (the optimizer replacing the weight "
                "by its gradient, Keras's float8 scales) is not supported by kilnet. Keep the "
                "value as a non-trainable weight you assign in call() instead.")
        regularizer = regularizers.get(regularizer, "regularizer")
        constraint = constraints.get(constraint, "constraint")
        dtype = weight_dtype(dtype, trainable)
        shape = () if shape is None else tuple(int(d) for d in shape)
        if name is None:
            name = _names.unique_among("variable", self._own_weight_keys())
        rng = _scope.init_rng() or utils.numpy_rng(utils.next_seed())
        value = _initial_value(initializer, rng, shape, dtype)
        with _scope.weights_owned_by(self):
            variable = Variable(value, name=name, trainable=trainable, constraint=constraint,
                                dtype=dtype)
        self._track_variable(variable, yours=True)
        if not autocast:  # kept in float32 when the layer computes in 16 bits (Keras)
            if "_uncast_weights" not in self.__dict__:
                set_untracked(self, "_uncast_weights", set())
            self._uncast_weights.add(variable.tree_key)
        if regularizer is not None:
            # Kept by tree key: regularizer_for finds it, and apply adds its penalty.
            if "_weight_regularizers" not in self.__dict__:
                set_untracked(self, "_weight_regularizers", {})
            self._weight_regularizers[variable.tree_key] = regularizer
        return variable

    def add_loss(self, value) -> None:
        """Add a term to the training loss (e.g. activity regularization, a VAE's KL term).

        Inside a compiled step it joins that step's loss; called eagerly it is kept in
        `layer.losses`."""
        from kilnet.variables import to_array

        if not _scope.add_loss(jnp.sum(to_array(value))):
            self._eager_losses.append(jnp.sum(to_array(value)))

    @property
    def losses(self) -> list:
        """Keras's `layer.losses`: the add_loss values of the last eager call (this layer's,
        then its sub-layers'), then the penalties of the regularized trainable weights,
        computed from their current values (so they follow assign, set_weights and fit).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2, kernel_regularizer=kilnet.regularizers.L1(0.1))
            >>> dense.build((None, 3))
            >>> _ = dense.kernel.assign(np.ones((3, 2)))
            >>> [round(float(v), 4) for v in dense.losses]
            [0.6]
        """
        return self._call_losses() + regularizers.current_weight_penalties(self)

    def _call_losses(self) -> list:
        found = list(self._eager_losses)
        for sub in self._sublayers:
            found.extend(sub._call_losses())
        return found

    # -- calling ---------------------------------------------------------------------------------
    input_spec = None   # Keras's InputSpec (or a list of them) that calls are checked against
    # Names of call arguments whose sequence masks a call takes off the arrays it is given
    # (Keras's MultiHeadAttention clears its query's, value's and key's `_keras_mask`)
    consumes_masks_of: tuple = ()
    # the rank of one sample the layer takes, where it is fixed (an RNN's 2: time, features):
    # how `build` reads a shape of one known length (sample_shape_readings)
    sample_rank: int | None = None

    # TensorFlow's AutoGraph calls an object with this attribute as it is, without rewriting
    # the layer's Python (a call inside tf.data's map runs kilnet's host call, below)
    autograph_info__ = None

    @takes_tensorflow_tensors   # in a tf.data map: the call runs on the host (NumPy)
    def __call__(self, *args, **kwargs):
        if not args:
            args, kwargs = self._inputs_by_name(kwargs)
        if len(args) > 1 and not self.positional_values_allowed:
            names = self.positional_call_names()
            refuse_positional_values(self.name, names, args)
            refuse_positional_training(self.name, names, args)
        if self.input_spec is not None:   # a layer of yours declared what it accepts
            check_input_spec(self.input_spec, args[0], self.name)
        if any(_tree.has_dict(a) for a in args):   # its call sees the keys in your order
            args = _tree.keep_key_order(args)
        if is_symbolic((args, kwargs)):
            return self._call_symbolic(args, kwargs)
        # Outside a functional graph, a sequence mask rides on the arrays (Keras's _keras_mask)
        kwargs = {**kwargs, **self.automatic_masks(args, kwargs, tensor_masks.mask_of)}
        mask = kwargs.get("mask")
        if mask is None:   # what compute_mask passes on: the first argument's, as in Keras
            mask = tensor_masks.masks_of(args[0])
        outputs = self._call_arrays(args, kwargs)
        if self.supports_masking:
            tensor_masks.attach_masks(outputs, self.compute_mask(args[0], mask))
        for consumed in self.mask_consuming_arguments(args, kwargs):
            tensor_masks.attach_masks(consumed, None)
        return outputs

    def positional_call_names(self) -> tuple:
        """The names the layer's call takes by position, its input first: what each positional
        argument of a call is bound to.

        Example:
            >>> import kilnet
            >>> class Noisy(kilnet.layers.Layer):
            ...     def call(self, x, training=None):
            ...         return x
            >>> Noisy().positional_call_names()
            ('x', 'training')
        """
        return positional_parameter_names(type(self).call)

    def _inputs_by_name(self, kwargs):
        """(args, kwargs) of a call whose inputs come by keyword, as Keras takes them: the
        first argument of `call` (`apply`'s input) given by name (`layer(logits=...,
        targets=...)`, keras.io's endpoint-layer pattern) becomes the positional input."""
        names = (parameter_names(type(self).call)[1:2] if not self.is_pure
                 else parameter_names(type(self).apply)[3:4])
        if not names or names[0] not in kwargs:
            raise TypeError(f"Layer {self.name!r} was called without inputs; call it on a "
                            "tensor, e.g. layer(x)"
                            + (f" or layer({names[0]}=x)." if names else "."))
        kwargs = dict(kwargs)
        return (kwargs.pop(names[0]),), kwargs

    def _call_arrays(self, args, kwargs):
        if _scope.in_own_call(self):
            return self._call_itself(args, kwargs)
        entry = _scope.layer_entry(self)
        if entry is None and _scope.init_rng() is not None:
            entry = self._build_inside_call(args, kwargs)
        if entry is not None:
            return self._call_in_scope(entry, args, kwargs)
        if _scope.current() is not None:
            return self._call_unowned(args, kwargs)
        return self._call_eager(args, kwargs)

    def _call_itself(self, args, kwargs):
        """The layer called inside its own call(): keras.io's GAT model, called on node
        indices, calls itself on [features, integer edges]. Keras's __call__ runs call() again
        on the same weights; so does kilnet, in the scope already open (its sub-layers' weights,
        the same training flag and randomness), building nothing anew."""
        kwargs = dict(kwargs)
        training = self.resolved_training(kwargs.pop("training", UNSAID))
        args = jax.tree.map(_as_input_array, args)
        if self.autocast:
            args = _cast_keeping_masks(args, self.compute_dtype)
        return self._run_call(args, kwargs, training)

    def _call_unowned(self, args, kwargs):
        """A layer called inside another's call() and not kept as its attribute: Keras runs
        it (`layers.Dot(axes=1)([u, v])` written in `call`; keras.io's Perceiver calls a
        module-level, adapted augmentation Sequential), and so does kilnet, its weights as
        constants. One with trainable weights is refused (nothing would train them), except
        inside a metric, where nothing trains in Keras either (keras.io's KID metric calls
        the InceptionV3 encoder it holds)."""
        if not self.built:
            self._build_for_call(utils.numpy_rng(utils.next_seed()), args, kwargs)
        if self.trainable_weights and not _scope.trains_nothing():
            raise ValueError(
                f"Layer {self.name!r} is called inside the call() of another layer or model "
                "but is not one of its attributes, so its trainable weights would not train. "
                f"Create it in __init__ and keep it as an attribute (self.{self.name} = ...), "
                "or freeze it (trainable = False) to use its weights as they are.")
        return self._call_in_scope([self.params_tree(), self.state_tree()], args, kwargs)

    def _run_call(self, args, kwargs, training):
        # None included: a call run in no mode gets training=None, as Keras's
        if self._accepts("training"):
            kwargs = dict(kwargs)
            kwargs.setdefault("training", training)
        # A call may return one of its Variables (a running total it just assigned): as in
        # Keras, the output is that Variable's current value, and an eager call returns the
        # Variable itself (the subclassing guide's ComputeSum prints y.numpy()).
        with _scope.running_call(self), self._described_call(args, kwargs), \
                reading_values(self):
            result = self.call(*args, **kwargs)
        if isinstance(result, Variable):
            set_untracked(self, "_returned_variable", result)
        return jax.tree.map(to_array, result)

    def _described_call(self, args, kwargs):
        """Around a run of `call`: an error it raises names this call and its arguments, as
        Keras's does. Not in a trace for shapes only (building, a symbolic call), whose
        probe batch is not the user's: there the symbolic call names the input's shape."""
        if _scope.tracing_shapes_only():
            return contextlib.nullcontext()
        return described_call(self, args, kwargs)

    def autocast_apply(self, params, state, *args, **kwargs):
        """`apply` under the layer's dtype policy (Keras's autocast), the one place where
        kilnet casts: a model runs each of its layers through it, as do eager calls and
        calls inside a Keras-form `call`.

        Floating inputs are cast to `compute_dtype` (integer ids and boolean masks stay as
        they are), and so are the layer's own floating weights when the policy's compute and
        variable dtypes differ; the non-trainable state is not cast, and the new state comes
        back in its own dtype (as Keras's `assign` casts to the variable's dtype). Floating
        outputs come out in `compute_dtype`. A functional model runs as it is: each of its
        layers casts for itself.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> dense = layers.Dense(2, dtype="mixed_bfloat16")
            >>> y = dense(np.ones((1, 3), np.float32))
            >>> str(y.dtype), str(dense.kernel.value.dtype)
            ('bfloat16', 'float32')
        """
        if getattr(self, "is_functional", False):
            outputs, new_state = self.apply(params, state, *args, **kwargs)
            return _scope.laid_out(self.path, outputs), new_state
        compute = self.compute_dtype
        if self.autocast:
            args = _cast_keeping_masks(args, compute)
            kwargs = {k: _cast_keeping_masks(v, compute) if _is_array(v) else v
                      for k, v in kwargs.items()}
            if self.autocast_weights and compute != self.variable_dtype:
                params = self._cast_own_weights(params, compute)
        outputs, new_state = self.apply(params, state, *args, **kwargs)
        outputs = _scope.laid_out(self.path, mixed_precision.cast_floating(outputs, compute))
        activity = self.__dict__.get("_base_activity_regularizer")
        if activity is not None:   # each output, as Keras's Layer.__call__ penalizes them
            for output in jax.tree.leaves(outputs):
                regularizers.add_activity_penalty(activity, output, kwargs.get("sample_mask"))
        if jax.tree.structure(new_state) == jax.tree.structure(state):
            new_state = jax.tree.map(_as_dtype_of, new_state, state)
        return outputs, new_state

    def _cast_own_weights(self, params, dtype):
        """The params with this layer's own floating weights cast: every array of a pure
        layer (which runs its inner layers itself), only the own Variables of a Keras-form
        layer (its sub-layers are called through autocast_apply with their own policies)."""
        if self.is_pure:
            return mixed_precision.cast_floating(params, dtype)
        own = {v.tree_key for v in self._trainable_vars
               if v.tree_key not in self.__dict__.get("_uncast_weights", ())}
        return {name: mixed_precision.cast_floating(value, dtype) if name in own else value
                for name, value in params.items()}

    def _accepts(self, argument: str) -> bool:
        return _call_arguments(type(self)).get(argument, False)

    def resolved_training(self, given=UNSAID):
        """The training flag a call runs with, by Keras's rule: `given` (the call's own
        `training`) when the caller passed one, None included; else the running outer
        call's, when it has a mode; else `training_default`. None means no mode: a
        Keras-form `call` gets training=None and the layers it calls take their own
        defaults; kilnet's own layers infer.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> class Noisy(kilnet.layers.Layer):
            ...     def call(self, x, training=True):
            ...         return x + 1 if training else x
            >>> Noisy().resolved_training(), Noisy().resolved_training(None)
            (True, None)
            >>> Noisy()(np.zeros(1, np.float32)).tolist()   # the call's default: training
            [1.0]
        """
        if given is not UNSAID:
            return _explicit_training(given, None, self.name)
        outer = _scope.outer_training()
        return outer if outer is not None else self.training_default

    @property
    def training_default(self):
        """The training flag of a call given none, outside any other call: the call
        signature's `training` default when it is not None (`call(self, x, training=True)`,
        as Keras takes it), else eager_training_default when True (the augmentation layers);
        else False for kilnet's own layers and None for a Keras-form layer or a functional
        model (its inner layers then each take their own call's default).

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dropout(0.5).training_default
            False
        """
        declared = _call_training_default(type(self))
        if declared is not None:
            return bool(declared)
        if self.eager_training_default:
            return True
        return None if self.passes_training_none else False

    @property
    def passes_training_none(self) -> bool:
        """Whether a call run in no mode (training None) reaches `call` as None, as Keras
        passes it: a Keras-form layer's (its `call` sees None, the layers it calls take
        their own defaults) and a functional model's (likewise for its graph's layers).
        kilnet's own layers run it as inference, as Keras's built-in layers treat None.

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dropout(0.5).passes_training_none
            False
        """
        return not self.is_pure or getattr(self, "is_functional", False)

    def training_for_apply(self, training):
        """The `training` that `apply` runs with for a call resolved to `training`: None kept
        where it passes on (`passes_training_none`), else inference (False).

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dropout(0.5).training_for_apply(None)
            False
        """
        return training if training is not None or self.passes_training_none else False

    def _call_in_scope(self, entry, args, kwargs):
        kwargs = dict(kwargs)
        training = self.training_for_apply(
            self.resolved_training(kwargs.pop("training", UNSAID)))
        params, state = entry
        outputs, entry[1] = self.autocast_apply(params, state, *args, training=training,
                                                rng=_scope.next_rng(),
                                                sample_mask=_scope.sample_mask(), **kwargs)
        return outputs

    def _build_inside_call(self, args, kwargs):
        """A sub-layer called for the first time while its parent is being built."""
        if not self.built:
            self.note_batch_size(args)
            self.note_input_dtype(args)
            self._build_for_call(_drawing_rng(), args, kwargs)
        entry = [self.params_tree(), self.state_tree()]
        _scope.current().layers[id(self)] = entry
        return entry

    def _call_eager(self, args, kwargs):
        kwargs = dict(kwargs)
        training = kwargs.pop("training", UNSAID)
        args = jax.tree.map(_as_input_array, args)
        if not self.built:
            self.note_batch_size(args)
            self.note_input_dtype(args)
            self._build_for_call(utils.numpy_rng(utils.next_seed()), args, kwargs)
        # None where nothing says (a functional model's, or a Keras-form layer's whose call
        # has no default) or the caller passed None: each inner layer then takes its own
        # call's default, as in Keras
        training = self.training_for_apply(self.resolved_training(training))
        self._eager_losses.clear()
        self.__dict__.pop("_returned_variable", None)
        trainable_writes = {}
        own_draws = _scope.draws_from_seed_generators()   # a host call for tf.data
        scope = _scope.Scope(training=bool(training), collect_penalties=False, eager=True,
                             training_given=training is not None,
                             kept_writes=trainable_writes, host_keys=own_draws)
        rng = (utils.raw_key(utils.next_seed())
               if (training or training is None) and not own_draws else None)
        with _scope.opened(scope):
            outputs, new_state = self.autocast_apply(self.params_tree(), self.state_tree(),
                                                     *args, training=training, rng=rng,
                                                     **kwargs)
        self._eager_losses.extend(scope.losses)
        # What the call assigned stays, as a Keras variable's assign does in an eager call: a
        # running total of yours, trainable (keras.io's mnist_moe counts its experts' use in
        # a keras.Variable) or not; BatchNormalization changes its statistics only in
        # training. The building trace or run before it kept nothing, so nothing counts twice.
        self.assign_state_tree(new_state)
        for variable, value in trainable_writes.values():
            variable.assign(value)
        returned = self.__dict__.pop("_returned_variable", None)
        return outputs if returned is None else returned

    def _build_for_call(self, rng, args, kwargs) -> None:
        """Build the weights for a first call on `args`: by one abstract trace of `call`
        (build_weights), or, for a call that reads a tensor's value into Python
        (CallReadsValues) and is given concrete arrays, by running `call` on them as Keras's
        eager first call runs it, building the sub-layers it meets. Such a layer is
        remembered, so that building it again runs on the arrays at once."""
        shape = self.call_input_shape(args, kwargs)
        on_arrays = (args, kwargs) if _all_concrete((args, kwargs)) else None
        if on_arrays is not None and self.__dict__.get("_call_reads_values"):
            self.build_weights(rng, shape, call_keywords=kwargs, on_arrays=on_arrays)
            return
        untouched_rng, built_before = copy.deepcopy(rng), self._built_sublayers()
        try:
            self.build_weights(rng, shape, call_extras=_array_extras(args),
                               call_keywords=kwargs)
        except CallReadsValues:
            if on_arrays is None or self.is_pure:
                raise
            self.unbuild(keep=built_before)   # what the failed trace built
            set_untracked(self, "_call_reads_values", True)
            self.build_weights(untouched_rng, shape, call_keywords=kwargs,
                               on_arrays=on_arrays)

    def call_input_shape(self, args, kwargs):
        """The input shape(s) of a call, batch axis excluded: what the weights are built for
        and what sample_output_shape receives. Default: the first argument's (one tensor, or
        a list for merge layers); a layer called on several arguments (attention's query,
        value and key) gives all of theirs."""
        return _shape_of(args[0])

    def compute_call_output_shape(self, input_shape, kwargs):
        """The output shape(s) of a call with these keyword arguments: a list for several
        outputs (e.g. attention scores asked for). Default: sample_output_shape."""
        return self.sample_output_shape(input_shape)

    def _call_symbolic(self, args, kwargs):
        if takes_strings((args, kwargs)):
            return self.call_on_strings(args, kwargs)
        outputs = self.symbolic_outputs(args, kwargs)
        self._mark_masks(args, outputs)
        self.record_node(args, kwargs, outputs)
        return outputs

    def call_on_strings(self, args, kwargs):
        """A call on symbolic tensors among which are strings: kilnet runs what takes strings
        on the host, before the compiled model (kilnet.models._host_stage), so only the
        layers that can run there take them (the string layers override `__call__`, shape
        ops and models holding string layers override this). Other layers: a TypeError
        naming the fix.

        Example:
            >>> import kilnet
            >>> text = kilnet.Input((2,), dtype="string")
            >>> kilnet.ops.reshape(text, (-1, 2, 1)).dtype   # Operation's: a host-side op
            'string'
            >>> try:
            ...     kilnet.layers.Flatten(name="flatten")(text)
            ... except TypeError as error:
            ...     print(str(error)[:48])
            Layer 'flatten' (Flatten) was called on a string
        """
        refuse_strings(self)

    def record_node(self, args, kwargs, outputs) -> None:
        """Record a call on symbolic tensors (`args`, `kwargs`) that gave `outputs` as one of
        the layer's inbound nodes (the functional graph's edges)."""
        self._inbound_nodes.append(Node(self, args, kwargs, outputs))

    def symbolic_outputs(self, args, kwargs):
        """The symbolic tensor(s) a call on symbolic tensors returns: shapes from
        sample_output_shape (or a trial trace of a Keras-form layer not built yet), the dtype
        from compute_output_dtype. The call's node is recorded by the caller."""
        input_shape = self.call_input_shape(args, kwargs)
        self.note_input_dtype(args)
        self.note_batch_size(args)
        try:
            out_shape = (self.compute_call_output_shape(input_shape, kwargs)
                         if self.is_pure or self.built
                         else self._trial_output_shape(input_shape,
                                                       self.trace_keywords(args, kwargs),
                                                       call_extras=tuple(args[1:])))
        except ValueError as error:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) cannot take an "
                             f"input of shape {_with_batch(input_shape)}: {error}") from None
        if self.build_shape is None or (self.__dict__.get("_shape_given_to_build") is not None
                                        and self.build_shape != input_shape):
            # a shape given to your build() may lack the batch axis (Keras does not mind:
            # keras.io's `build(input_shape=(8,))`); the shape called with is the one to keep
            self.build_shape = input_shape
        out_dtype = self.compute_output_dtype(self.build_dtype)
        batch = (common_batch_size(args),)   # as Keras, a known batch size carries through
        if isinstance(out_shape, list):
            outputs = self.pack_symbolic_outputs(
                [KerasTensor(batch + tuple(s), out_dtype) for s in out_shape])
        else:
            outputs = KerasTensor(batch + tuple(out_shape), out_dtype)
        return outputs

    def note_input_dtype(self, args) -> None:
        """Keep the dtype of each array of a first call's input (build_dtype, in the
        structure of its shapes): the trace that builds a Keras-form layer runs `call` on
        those dtypes, as Keras traces the call on the arrays given, so that integer indices
        next to float features stay integers (keras.io's GAT: `ops.take(x, edges)`)."""
        if self.build_dtype is None:
            self.build_dtype = _dtype_of(args[0])

    def note_batch_size(self, args) -> None:
        """Keep the batch size of a first call's inputs (build_batch_size), when known: a
        number (not the symbolic size of a trace at no particular batch size)."""
        if self.build_batch_size is None:
            size = common_batch_size(args)
            self.build_batch_size = size if isinstance(size, int) else None

    def trace_keywords(self, args, kwargs) -> dict:
        """The keyword arguments of a symbolic call for the traces that build a Keras-form
        layer, with the sequence mask the input carries when `call` takes one (Keras passes it
        to the call), and the call's `training` when it says one and `call` takes it (the
        trace runs in that mode, as Keras's symbolic call does)."""
        keywords = {k: v for k, v in kwargs.items()
                    if k != "training" or (v is not None and self._accepts("training"))}

        def mask_spec(tensor):
            if not isinstance(tensor, KerasTensor) or not tensor.has_mask:
                return None
            return jax.ShapeDtypeStruct(tuple(tensor.shape[:2]), jnp.bool_)

        keywords.update(self.automatic_masks(args, keywords, mask_spec))
        return keywords

    def _mark_masks(self, args, outputs):
        """Which symbolic outputs will carry a sequence mask: what compute_mask gives for the
        first argument's masks, traced abstractly (as Keras computes masks on symbolic
        tensors). A mask that meets a layer without masking support is dropped, with a
        warning, as Keras warns."""
        first = args[0]
        tensors = [t for t in jax.tree.leaves(first, is_leaf=lambda t: isinstance(
            t, KerasTensor)) if isinstance(t, KerasTensor)]
        masked = [t.has_mask for t in tensors]
        if not self.supports_masking:
            if any(masked):
                warnings.warn(
                    f"Layer {self.name!r} ({type(self).__name__}) gets an input with a sequence "
                    "mask but does not support masking, so the layers after it will not see "
                    "the mask (as in Keras).", stacklevel=4)
            return
        if not any(masked) and type(self).compute_mask is Layer.compute_mask:
            return

        def spec(t):
            return jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in t.shape), t.dtype)

        def mask_spec(t):
            if not isinstance(t, KerasTensor) or not t.has_mask:   # a constant has no mask
                return None
            return jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in t.shape[:2]),
                                        jnp.bool_)

        inputs = jax.tree.map(spec, first, is_leaf=lambda t: isinstance(t, KerasTensor))
        previous = jax.tree.map(mask_spec, first, is_leaf=lambda t: isinstance(t, KerasTensor))
        with jax.ensure_compile_time_eval():
            out_masks = jax.eval_shape(lambda x: self.compute_mask(x[0], x[1]),
                                       (inputs, previous))
        flat_out = [t for t in jax.tree.leaves(outputs, is_leaf=lambda t: isinstance(
            t, KerasTensor)) if isinstance(t, KerasTensor)]
        flat_masks = jax.tree.leaves(out_masks, is_leaf=lambda m: m is None)
        if len(flat_masks) == 1 and len(flat_out) > 1:
            flat_masks = flat_masks * len(flat_out)
        for tensor, mask in zip(flat_out, flat_masks):
            tensor.has_mask = mask is not None

    # -- sequence masks (Keras's, not the sample mask) ------------------------------------------
    @property
    def supports_masking(self) -> bool:
        """Whether the layer passes a sequence mask on (compute_mask): set it in __init__, or
        override compute_mask (which implies it), as in Keras."""
        given = getattr(self, "_supports_masking", None)
        if given is not None:
            return given
        return type(self).compute_mask is not Layer.compute_mask

    @supports_masking.setter
    def supports_masking(self, value: bool):
        set_untracked(self, "_supports_masking", bool(value))

    def compute_mask(self, inputs, previous_mask=None):
        """The mask of the outputs (bool, (batch, time)) from the inputs and their mask: the
        same mask by default. Traced in the compiled programs."""
        return previous_mask

    def automatic_masks(self, args, kwargs, mask_of) -> dict:
        """{argument name: mask} for the mask arguments a call on `args` / `kwargs` fills by
        itself (kilnet.layers._mask_arguments: Keras's rule for `mask` and `<argument>_mask`);
        `mask_of(tensor)` gives each tensor's mask or None.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> class Decoder(layers.Layer):
            ...     def call(self, inputs, encoder_outputs, inputs_mask=None, mask=None):
            ...         return inputs + encoder_outputs
            >>> x, m = np.ones((1, 2, 3)), np.array([[True, False]])
            >>> list(Decoder().automatic_masks((x, x + 1), {}, lambda t: m if t is x else None))
            ['inputs_mask']
        """
        fn, skipped = (type(self).apply, 3) if self.is_pure else (type(self).call, 1)
        return automatic_masks(CallArguments.of(fn, skipped), args, kwargs, mask_of)

    def mask_consuming_arguments(self, args, kwargs) -> list:
        """The arguments of a call on `args` / `kwargs` whose sequence masks the call takes off
        (`consumes_masks_of`): after Keras's MultiHeadAttention, its query, value and key
        carry no mask, so a second attention layer on the same tensor gets none.

        Example:
            >>> import numpy as np
            >>> from kilnet import layers
            >>> x = np.ones((1, 2, 4), np.float32)
            >>> attention = layers.MultiHeadAttention(num_heads=1, key_dim=2)
            >>> len(attention.mask_consuming_arguments((x, x), {"key": x}))
            3
        """
        if not self.consumes_masks_of:
            return []
        fn, skipped = (type(self).apply, 3) if self.is_pure else (type(self).call, 1)
        return arguments_named(CallArguments.of(fn, skipped), args, kwargs,
                               self.consumes_masks_of)

    @property
    def accepts_mask(self) -> bool:
        """Whether apply (kilnet's form) or call (Keras's form) takes the mask argument."""
        return "mask" in parameter_names(type(self).apply if self.is_pure else type(self).call)

    def integer_input_range(self):
        """(low, high) when the layer takes integer ids in [low, high) (Embedding), else None:
        fit/evaluate/predict check the data against it before training."""
        return None

    def pack_symbolic_outputs(self, tensors: list):
        """Several symbolic outputs in the structure the layer's call returned when last
        traced (a tuple, a dict, a nesting of them), as Keras's symbolic call keeps it; a
        list where no trace says (a layer giving its output shapes itself)."""
        structure = self.__dict__.get("_traced_structure")
        if structure is None or structure.num_leaves != len(tensors):
            return tensors
        return jax.tree.unflatten(structure, tensors)

    def compute_output_dtype(self, input_dtype) -> str:
        """The dtype of the outputs: the layer's compute dtype (kilnet.mixed_precision)."""
        return self.compute_dtype

    # -- building weights ------------------------------------------------------------------------
    def build_weights(self, rng, input_shape, *, call_extras=(), call_keywords=None,
                      on_arrays=None) -> None:
        """Make the weights for inputs of `input_shape`, drawing from the NumPy Generator
        `rng`: the pure form's `init`, kept as Variables. A built layer is made anew.

        `call_extras`: the positional arguments a Keras-form `call` takes after its input
        (an RNN cell's states), as arrays or jax.ShapeDtypeStruct with a batch axis, for the
        one abstract trace of `call` that builds its sub-layers; `call_keywords`: the call's
        keyword arguments (a mask, options), given to that trace too. `on_arrays`: the
        (args, kwargs) of an eager first call, concrete arrays: `call` runs on them in place
        of the trace, for a call that reads a tensor's value (kilnet.layers._value_reads)."""
        call_keywords = {k: v for k, v in (call_keywords or {}).items() if k != "training"}
        if self.built and not self.is_pure:
            # A class that keeps its own build configuration (a build() taking more than the
            # shape) is made again through its build_from_config, as a file loads it
            if self.keeps_own_build_config:
                set_untracked(self, "_rebuild_config", self.get_build_config())
            self.unbuild()  # Keras's form: build() runs again and draws new weights
        # Keras's layer.path: the names of the layers it is built inside, then its own
        set_untracked(self, "_path", _scope.weight_path(self.name))
        # Sub-layers are built on their first call while the parent's call is traced: their
        # weights must be concrete arrays, not values of that trace. Reading this layer's
        # weights meanwhile must not start another build (build_if_shapes_known).
        object.__setattr__(self, "_making_weights", True)
        try:
            with jax.ensure_compile_time_eval(), self._naming_weights():
                try:
                    params, state, _ = (
                        self._keras_init(rng, input_shape, call_extras, call_keywords,
                                         on_arrays)
                        if (call_extras or call_keywords or on_arrays) and not self.is_pure
                        else self.init(rng, input_shape))
                except ValueError as error:
                    raise ValueError(f"Layer {self.name!r}: {error}") from None
                self._adopt(params, state)
        finally:
            object.__setattr__(self, "_making_weights", False)
        self.built = True
        self.build_shape = input_shape

    # Whether the weights made while this layer builds have its name in their path (Keras's
    # name scope of a layer building); a functional model's layers are built when the graph
    # is made, outside any model's scope, so theirs have only their own layer's name.
    names_built_weights = True

    def _naming_weights(self):
        return (_scope.weights_owned_by(self) if self.names_built_weights
                else _scope.weights_owned_by_none())

    def _adopt(self, params: dict, state: dict):
        """Keep the arrays `init` made as this layer's Variables (creating them if needed)."""
        if not self.is_pure:
            return  # Keras's form: add_weight made the Variables already
        subs = dict(self.keyed_sublayers())
        carried = {name: state.pop(name) for name in self.carried_state_names
                   if name in state}
        self._adopt_carried(carried)
        for tree, trainable in ((params, True), (state, False)):
            own = {v.name: v for v in (self._trainable_vars if trainable
                                       else self._non_trainable_vars)}
            for name, value in tree.items():
                if name in subs:
                    continue  # a sub-layer's arrays: adopted by it when it was built
                if name in own:
                    own[name].assign(value)
                else:
                    with _scope.weights_owned_by(self), _scope.weights_named(self.weight_scope):
                        variable = Variable(value, name=name, trainable=trainable,
                                            constraint=self.constraint_for(name) if trainable
                                            else None)
                    self._track_variable(variable)
                    # As Keras: dense.kernel, batch_normalization.moving_mean (unless the name
                    # is taken by another attribute, e.g. a `scale` setting).
                    current = self.__dict__.get(name, variable)
                    if not hasattr(type(self), name) and isinstance(current, Variable):
                        object.__setattr__(self, name, variable)

    def replace_own_weights(self, params: dict, state: dict) -> None:
        """Make the layer's own weights the arrays of `params` (trainable) and `state`
        (non-trainable), as Keras's `quantize` replaces a float kernel by an int8 one and
        its scale: a weight of the same name and kind keeps its Variable and takes the new
        value; the others are dropped, and new Variables are made after the kept ones, under
        the same path (`dense/kernel_scale`) and as attributes (`layer.kernel_scale`). Any
        Trainer holding the old weights must have released them first.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((None, 3))
            >>> dense.replace_own_weights({"bias": np.ones(2)},
            ...                           {"kernel": np.zeros((3, 2), np.int8)})
            >>> [(w.name, str(w.dtype)) for w in dense.weights], dense.kernel.trainable
            ([('bias', 'float32'), ('kernel', 'int8')], False)
        """
        own = [(v, True) for v in self._trainable_vars] + [
            (v, False) for v in self._non_trainable_vars]
        prefix = own[0][0].path.rpartition("/")[0] if own else (self.path or "")
        wanted = {(name, True): value for name, value in params.items()}
        wanted.update({(name, False): value for name, value in state.items()})
        for variable, trainable in own:
            if (variable.name, trainable) in wanted:
                variable.assign(wanted.pop((variable.name, trainable)))
                continue
            variable.release()
            (self._trainable_vars if trainable else self._non_trainable_vars).remove(variable)
            if self.__dict__.get(variable.name) is variable:
                object.__delattr__(self, variable.name)
        for (name, trainable), value in wanted.items():
            with _scope.weights_named(prefix or None):
                variable = Variable(value, name=name, trainable=trainable)
            self._track_variable(variable)
            if not hasattr(type(self), name) and name not in self.__dict__:
                object.__setattr__(self, name, variable)

    # The order of the layer's own weights in Keras's files when it differs from the weight
    # order (a quantized Dense writes kernel, bias, kernel_scale, as Keras's
    # save_own_variables does, and lists bias, kernel, kernel_scale among its weights)
    saved_weight_order = None

    @property
    def carried_state_names(self) -> tuple:
        """The names of the entries of `init`'s state that are carried state, not weights (a
        stateful RNN's states): kept as Variables outside `weights`."""
        return ()

    def _adopt_carried(self, carried: dict) -> None:
        own = {v.name: v for v in self._carried_vars}
        for name, value in carried.items():
            if name in own:
                own[name].assign(value)
                continue
            with _scope.weights_owned_by(self), _scope.weights_named(self.weight_scope):
                variable = Variable(value, name=name, trainable=False)
            self._carried_vars.append(variable)

    def carried_paths(self, prefix=()):
        """(path, "state", Variable) for every carried state (see carried_state_names), at
        any depth: in the state tree, not among the weights. A layer reached at several
        places: at the first, once (as variable_paths)."""
        seen = set()
        for v in self._carried_vars:
            seen.add(id(v))
            yield prefix + (v.name,), "state", v
        for key, sub in self.keyed_sublayers():
            for entry in sub.carried_paths(prefix + (key,)):
                if id(entry[2]) not in seen:
                    seen.add(id(entry[2]))
                    yield entry

    def constraint_for(self, weight_name: str):
        """The constraint of one of this layer's own weights: Keras's `<weight>_constraint`
        argument (`kernel_constraint`, `embeddings_constraint`; `depthwise_constraint` for
        `depthwise_kernel`, `recurrent_constraint` for `recurrent_kernel`), or None."""
        return self._weight_argument(weight_name, "constraint")

    def regularizer_for(self, weight_name: str):
        """The regularizer of one of this layer's own weights, or None: the one given to
        `add_weight(regularizer=...)`, else Keras's `<weight>_regularizer` argument
        (`kernel_regularizer`; `depthwise_regularizer` for `depthwise_kernel`,
        `recurrent_regularizer` for `recurrent_kernel`).

        Example:
            >>> import kilnet
            >>> lstm = kilnet.layers.LSTM(2, recurrent_regularizer="l2")
            >>> lstm.regularizer_for("recurrent_kernel")
            L2(l2=0.01)
            >>> lstm.regularizer_for("kernel") is None
            True
        """
        given = self.__dict__.get("_weight_regularizers", {}).get(weight_name)
        return given if given is not None else self._weight_argument(weight_name, "regularizer")

    def _weight_argument(self, weight_name: str, kind: str):
        """The callable held in the `<...>_<kind>` argument that names this weight."""
        names = [weight_name + "_" + kind]
        if weight_name in self.weight_arguments:
            names.insert(0, f"{self.weight_arguments[weight_name]}_{kind}")
        if weight_name.endswith("_kernel"):
            names.append(weight_name[:-len("_kernel")] + "_" + kind)
        for name in names:
            value = getattr(self, name, None)
            if value is not None:
                return value if callable(value) else None
        return None

    def _keras_init(self, rng, input_shape, call_extras=(), call_keywords=None,
                    on_arrays=None):
        """Keras's form: build() makes the weights, then one abstract trace of call() (on the
        input and `call_extras`) builds the sub-layers it calls and gives the outputs
        (traced_outputs: KerasTensors in the structure `call` returns); with `on_arrays`,
        call() runs on those concrete (args, kwargs) instead, building them as it goes."""
        if not self.built:
            # `in_build_hook` lets a Model's build() (Keras's user-facing method of the same
            # name) tell that it runs as the weight-making hook and must not recurse.
            set_untracked(self, "in_build_hook", True)
            own_config = self.__dict__.pop("_rebuild_config", None)
            try:
                with _scope.opened(_scope.Scope(init_rng=rng)), self._noting_sublayers_made():
                    if own_config is not None:
                        self.build_from_config(own_config)
                    elif takes_shape(self.build):
                        self.build(with_batch_axis(input_shape))
                    else:   # a Model's build(self) of yours (a layer's adapts itself)
                        self.build()
            finally:
                set_untracked(self, "in_build_hook", False)
        if on_arrays is not None:
            return self.params_tree(), self.state_tree(), self._outputs_on_arrays(rng,
                                                                                   *on_arrays)
        outputs = self.traced_outputs(input_shape, init_rng=rng, call_extras=call_extras,
                                      call_keywords=call_keywords)
        return self.params_tree(), self.state_tree(), outputs

    def _build_called_directly(self, build, input_shape, args=(), kwargs=None) -> None:
        """`layer.build(shape)` called by you on a Keras-form layer, as Keras's tutorials do:
        your `build` makes the layer's weights; then, as a first call would, one trace of
        `call` builds the sub-layers it calls that have no weights yet. The layer is then
        built (Keras's `built` is True after build)."""
        if self.built:
            self.unbuild()  # build() again draws new weights, as a first build would
        rng = _drawing_rng()
        set_untracked(self, "in_build_hook", True)
        try:
            with _scope.opened(_scope.Scope(init_rng=rng)), self._noting_sublayers_made():
                build(self, input_shape, *args, **(kwargs or {}))
        finally:
            set_untracked(self, "in_build_hook", False)
        if input_shape is None:
            self._finish_shapeless_build()
            return
        set_untracked(self, "_shape_given_to_build", input_shape)   # Keras's build config
        shape = without_batch_axis(input_shape)
        if self._sublayers and not all(sub.built for sub in self._sublayers):
            try:
                with jax.ensure_compile_time_eval():
                    shape = first_reading_that_builds(
                        input_shape,
                        lambda reading: self._traced_output_shape(reading, init_rng=rng))
            except CallReadsValues:
                # no trace builds what a call reading values calls (Keras builds it at the
                # first call): as after a build without a shape, the first call builds it all
                self.unbuild()
                set_untracked(self, "_call_reads_values", True)
                return
        self.built = True
        self.build_shape = shape

    def _finish_shapeless_build(self) -> None:
        """After your `build()` without a shape (keras.io's GRN/VSN layers): built if it left
        nothing to build, else unbuilt, so the first call builds it all for its input
        (Keras marks it built and builds the sub-layers at that call)."""
        if all(sub.built for sub in self._sublayers):
            self.built = True
            return
        self.unbuild()
        self.built = False

    def _traced_output_shape(self, input_shape, init_rng=None, call_extras=(),
                             call_keywords=None):
        """The output shape(s), batch axis excluded, of `call` traced abstractly
        (traced_outputs): one shape, or a flat list of them for a call returning a list or
        tuple."""
        traced = self.traced_outputs(input_shape, init_rng, call_extras, call_keywords)
        # the structure `call` returns (a tuple, a dict, nested), for pack_symbolic_outputs
        set_untracked(self, "_traced_structure", jax.tree.structure(
            traced, is_leaf=lambda t: isinstance(t, KerasTensor)))
        return output_shapes(traced)

    def traced_outputs(self, input_shape, init_rng=None, call_extras=(), call_keywords=None):
        """The outputs of `call` traced abstractly: a KerasTensor (batch axis None) per
        output, in the structure `call` returns them (a dict, a tuple holding dicts...). The
        inputs have the dtypes of the first call's arrays (build_dtype), float32 where none
        was seen (a build from a shape, as Keras's build(input_shape)). An axis of unknown
        length (None: a sequence's) is traced at two lengths; an output axis that follows
        them is unknown too (None), one that does not is fixed.

        A call that fails so (keras.io's Switch Transformer reshapes its input to a fixed
        total of tokens, which a batch of 1 does not have) is traced once more as Keras traces
        every call: the batch axis and the axes of unknown length as one symbolic size."""
        dtypes = self._input_dtypes_for(input_shape)
        extras = (tuple(call_extras), dict(call_keywords or {}))
        try:
            if not any(d is None for d in jax.tree.leaves(
                    jax.tree.map(list, input_shape, is_leaf=is_shape),
                    is_leaf=lambda d: d is None)):
                return self._outputs_at(input_shape, dtypes, extras, init_rng, None)
            first, second = (self._outputs_at(input_shape, dtypes, extras, init_rng, length)
                             for length in _TRIAL_LENGTHS)
        except Exception as error:  # the call's own code, at these sizes
            size = _symbolic_size()
            try:
                return self._outputs_at(input_shape, dtypes, extras, init_rng, size,
                                        batch=size)
            except Exception as retry_error:
                # the first error names concrete shapes; the retry's stays attached, as it
                # may be the real cause (a sub-layer the call cannot run at any batch size)
                raise error from retry_error
        return jax.tree.map(
            lambda a, b: KerasTensor(tuple(x if x == y else None
                                           for x, y in zip(a.shape, b.shape)), a.dtype),
            first, second)

    def _input_dtypes_for(self, input_shape):
        """The dtype of each input of `input_shape` for the build trace: the first call's
        (build_dtype) when it has their structure, else float32 for every one."""
        floats = jax.tree.map(lambda _: "float32", input_shape, is_leaf=is_shape)
        seen = self.build_dtype
        if seen is not None and jax.tree.structure(seen) == jax.tree.structure(floats):
            return seen
        return floats

    def _outputs_at(self, input_shape, dtypes, extras, init_rng, unknown_length, batch=None):
        """The traced outputs (KerasTensors, batch axis None) with each None input axis given
        `unknown_length`; `extras`: (positional arguments after the input, keyword arguments),
        arrays or tensors among them traced abstractly (at `batch`, else the layer's
        build_batch_size, else 1), other values passed as they are."""
        # a stateful layer inside makes states for the build batch size
        batch = batch if batch is not None else (self.build_batch_size or 1)

        def sized(shape):
            return (batch,) + tuple(unknown_length if d is None else d for d in shape[1:])

        specs = jax.tree.map(lambda s, d: jax.ShapeDtypeStruct(sized((1,) + tuple(s)), d),
                             input_shape, dtypes, is_leaf=is_shape)
        positional, keywords = extras
        tensors = {k: v for k, v in keywords.items() if _is_tensor_tree(v)}
        options = {k: v for k, v in keywords.items() if k not in tensors}
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(sized(a.shape), a.dtype),
                                (positional, tensors),
                                is_leaf=lambda a: isinstance(a, KerasTensor))

        training = self._building_training(options)

        def run(x, extras):
            with _scope.opened(self._building_scope(init_rng, training)), _scope.shapes_only():
                return self._run_call((x, *extras[0]), {**options, **extras[1]}, training)

        out = jax.eval_shape(run, specs, abstract)
        # an axis of the symbolic size (not an int) is of unknown length
        return jax.tree.map(lambda o: KerasTensor((None,) + tuple(
            d if isinstance(d, int) else None for d in o.shape[1:]), o.dtype), out)

    def _building_training(self, options: dict):
        """The mode a building run of `call` runs in, taken out of its keyword `options`.
        Keras traces a symbolic call as it would run: `training` as given (None included),
        else the call's default (a call returning two outputs in training makes a two-output
        graph); in no mode, the layers it calls take their own defaults."""
        given = options.pop("training", UNSAID)
        return given if given is not UNSAID else _call_training_default(type(self))

    def _building_scope(self, init_rng, training):
        """The scope of a run of `call` that builds: the weights made so far bound to their
        values, sub-layers built on their first call drawing from `init_rng`."""
        bindings = {id(v): v.value for v in self._trainable_vars + self._non_trainable_vars}
        layers = {id(sub): [sub.params_tree(), sub.state_tree()]
                  for sub in self._sublayers if sub.built}
        return _scope.Scope(bindings=bindings, layers=layers, init_rng=init_rng,
                            training=bool(training), training_given=training is not None)

    def _outputs_on_arrays(self, init_rng, args, kwargs):
        """The outputs of `call` run on concrete arrays while building, as Keras runs an
        eager first call: the sub-layers it meets are built as it goes (for a call that reads
        a tensor's value into Python, which no trace can run). As traced_outputs, they come
        as KerasTensors, batch axis None."""
        options = dict(kwargs)
        training = self._building_training(options)
        args = jax.tree.map(_as_input_array, args)
        with _scope.opened(self._building_scope(init_rng, training)):
            outputs = self._run_call(args, options, training)
        # described as a trace describes them: any batch size
        return jax.tree.map(lambda o: KerasTensor((None,) + tuple(o.shape[1:]), o.dtype),
                            outputs)

    def _trial_output_shape(self, input_shape, call_keywords=None, call_extras=()):
        """The output shape of an unbuilt Keras-form layer: build it on a throwaway draw, trace,
        then forget the weights, so that the model's seed decides them when it is built.
        `call_extras`: the call's positional tensors after its input (Keras's guide's
        `LogisticEndpoint()(targets, logits)`). Sub-layers built before keep their weights
        (a Normalization adapted inside a Sequential, a pretrained block)."""
        built_before = self._built_sublayers()
        self.build_weights(utils.numpy_rng(0), input_shape, call_extras=call_extras,
                           call_keywords=call_keywords)
        try:
            return self._traced_output_shape(input_shape, call_extras=call_extras,
                                             call_keywords=call_keywords)
        finally:
            self.unbuild(keep=built_before)

    def _built_sublayers(self) -> set:
        """The ids of the built layers among this layer's sub-layers, at any depth."""
        found = set()
        for sub in self._sublayers:
            if sub.built:
                found.add(id(sub))
            found |= sub._built_sublayers()
        return found

    @contextlib.contextmanager
    def _noting_sublayers_made(self):
        """Around your build(): the sub-layers it makes (keras.io's Involution makes its
        kernel generator there) are remembered, so that unbuild forgets them, as the next
        build() makes them anew (a model holds no orphaned copy's weights)."""
        before = {id(sub) for sub in self._sublayers}
        try:
            yield
        finally:
            made = [sub for sub in self._sublayers if id(sub) not in before]
            set_untracked(self, "_sublayers_made_by_build",
                          self.__dict__.get("_sublayers_made_by_build", []) + made)

    def unbuild(self, keep=frozenset()) -> None:
        """Forget the weights (they are made again by the next build); the sub-layers whose
        ids are in `keep` keep theirs; those your build() made are forgotten."""
        made = {id(sub) for sub in self.__dict__.pop("_sublayers_made_by_build", [])
                if id(sub) not in keep}
        if made:
            self._sublayers[:] = [sub for sub in self._sublayers if id(sub) not in made]
        for sub in self._sublayers:
            if id(sub) not in keep:
                sub.unbuild(keep)
        made_in_init = self.__dict__.get("_weights_made_in_init", set())
        for v in self._trainable_vars + self._non_trainable_vars + self._carried_vars:
            v.release()
        self._carried_vars.clear()
        for name in [n for n, v in vars(self).items()
                     if isinstance(v, Variable) and id(v) not in made_in_init]:
            object.__delattr__(self, name)
        self._trainable_vars[:] = [v for v in self._trainable_vars if id(v) in made_in_init]
        self._non_trainable_vars[:] = [v for v in self._non_trainable_vars
                                       if id(v) in made_in_init]
        self.built = False

    # -- the weights -----------------------------------------------------------------------------
    def params_tree(self) -> dict:
        """{weight name: array} of the declared-trainable weights, sub-layers nested by name;
        a layer reached at several places is there once, at the first (as Keras counts it:
        kilnet.layers._shared_layers).

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2, name="d")
            >>> model = kilnet.Sequential([kilnet.Input((3,)), dense,
            ...                            kilnet.Sequential([dense], name="again")])
            >>> model.build(seed=0)
            >>> {name: sorted(sub) for name, sub in model.params_tree().items()}
            {'d': ['bias', 'kernel'], 'again': []}
        """
        return _shared_layers.without_aliases(self._every_params_tree(),
                                              _shared_layers.alias_paths(self))

    def _every_params_tree(self) -> dict:
        tree = {v.tree_key: v.value for v in self._trainable_vars}
        for key, sub in self.keyed_sublayers():
            tree[key] = sub._every_params_tree()
        return tree

    def state_tree(self) -> dict:
        """The same for non-trainable weights (moving statistics and other state)."""
        return _shared_layers.without_aliases(self._every_state_tree(),
                                              _shared_layers.alias_paths(self))

    def _every_state_tree(self) -> dict:
        tree = {v.tree_key: v.value for v in self._non_trainable_vars + self._carried_vars}
        for key, sub in self.keyed_sublayers():
            tree[key] = sub._every_state_tree()
        return tree

    def assign_state_tree(self, state: dict) -> None:
        for v in self._non_trainable_vars + self._carried_vars:
            if state.get(v.tree_key) is not None:
                v.assign(state[v.tree_key])
        for key, sub in self.keyed_sublayers():
            if key in state:
                sub.assign_state_tree(state[key])

    def variable_paths(self, prefix=()):
        """(path, kind, Variable) for every weight, kind "params" or "state", in Keras's
        weight order: own trainable, own non-trainable, then sub-layers'. Each Variable
        once: a layer reached at several places is listed at the first, as Keras's
        `weights` lists it (the path `params_tree` holds it at)."""
        seen = set()
        for entry in self._own_then_sublayer_paths(prefix):
            if id(entry[2]) not in seen:
                seen.add(id(entry[2]))
                yield entry

    def _own_then_sublayer_paths(self, prefix):
        for v in self._trainable_vars:
            yield prefix + (v.tree_key,), "params", v
        for v in self._non_trainable_vars:
            yield prefix + (v.tree_key,), "state", v
        for key, sub in self.keyed_sublayers():
            yield from sub.variable_paths(prefix + (key,))

    def keyed_sublayers(self) -> list:
        """(key, sub-layer) for each sub-layer, in `sublayers` order: its key in this
        layer's weight trees (`params_tree`, `variable_paths`, kilnet's files and
        checkpoints). The key is the sub-layer's name, or name_1, name_2, ... where an earlier
        sub-layer or one of this layer's own weights already took it: Keras tracks layers by
        object and two sub-layers may share a name (keras.io's DDIM keeps a network and its
        `clone_model` copy, which keeps the name), so the trees keep them apart, as
        `Variable.tree_key` does two weights of one name.

        Example:
            >>> import kilnet
            >>> class Two(kilnet.layers.Layer):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.a = kilnet.layers.Dense(1, name="d")
            ...         self.b = kilnet.layers.Dense(1, name="d")
            ...     def call(self, x):
            ...         return self.a(x) + self.b(x)
            >>> [(key, sub.name) for key, sub in Two().keyed_sublayers()]
            [('d', 'd'), ('d_1', 'd')]
        """
        if not self._sublayers:
            return []
        named = [(sub.name, sub) for sub in self._sublayers]
        own = self._own_weight_keys()
        names = {name for name, _ in named}
        if len(names) == len(named) and names.isdisjoint(own):
            return named   # the common case, read at every call: each keyed by its name
        taken, keyed = _names.Names(own), []
        for name, sub in named:
            key = _names.unique_among(name, taken)
            taken.add(key)
            keyed.append((key, sub))
        return keyed

    @property
    def sublayers(self) -> list:
        """The layers this one holds, one level down: a Keras-form layer's sub-layers, a
        model's layers, a Pipeline's steps. (Only a model and a Pipeline have Keras's
        `layers` attribute: code that walks a model with `hasattr(layer, "layers")`, as
        keras.io's packaging recipe does, treats every other layer as a leaf.)

        Example:
            >>> import kilnet
            >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=4)
            >>> _ = attention(kilnet.Input((3, 4)), kilnet.Input((3, 4)))
            >>> [sub.name for sub in attention.sublayers][:2], hasattr(attention, "layers")
            (['query', 'key'], False)
        """
        return list(self._sublayers)

    @property
    def metrics(self) -> list:
        """The Metric objects this layer keeps as attributes (in the order they were set),
        then each sub-layer's `metrics`, as Keras's `Layer.metrics`. They are no weights:
        neither in `weights` nor in weight files, as in Keras.

        Example:
            >>> import kilnet
            >>> class Gate(kilnet.layers.Layer):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.dense = kilnet.layers.Dense(1)
            ...         self.opened = kilnet.metrics.Mean(name="opened")
            ...     def call(self, x):
            ...         return self.dense(x)
            >>> [metric.name for metric in Gate().metrics]
            ['opened']
        """
        found = list(self.__dict__.get("_held_metrics", []))
        for sub in self._sublayers:
            found.extend(sub.metrics)
        return found

    @property
    def own_metrics(self) -> list:
        """The Metric objects this layer itself keeps as attributes (also inside lists and
        dicts kept as attributes), in the order they were set: `metrics` without the
        sub-layers'. Keras's saving walks them, so the layers such a metric holds (keras.io's
        KID metric and its encoder) have places in Keras's weights files; the metrics
        compile() is given are not among them.

        Example:
            >>> import kilnet
            >>> class Gate(kilnet.layers.Layer):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.inner = kilnet.layers.Dense(1)
            ...         self.trackers = [kilnet.metrics.Mean(name="a"), kilnet.metrics.Sum(name="b")]
            ...     def call(self, x):
            ...         return self.inner(x)
            >>> [metric.name for metric in Gate().own_metrics]
            ['a', 'b']
        """
        return list(self.__dict__.get("_held_metrics", []))

    @property
    def metrics_variables(self) -> list:
        """The state Variables of `metrics`, in their order (Keras's)."""
        return [variable for metric in self.metrics for variable in metric.variables]

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool):
        # As Keras: freezing a layer freezes its weights and every sub-layer.
        value = bool(value)
        object.__setattr__(self, "_trainable", value)
        for v in self._trainable_vars:
            v.trainable = value
        for sub in self._sublayers:
            sub.trainable = value

    def __getattr__(self, name):
        """A weight attribute read before anything drew the weights of a layer called on
        symbolic tensors (`layer1.kernel`, a layer of yours's `self.w` made in build): drawn
        now, as Keras has them from that call. Python reaches this only after the normal
        lookup failed, so ordinary attribute reads cost nothing more.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((3,))
            >>> layer1 = kilnet.layers.Dense(4)
            >>> model = kilnet.Model(inputs, layer1(inputs))
            >>> layer1.kernel.shape
            (3, 4)
        """
        if self._weights_drawable_on_read(name) and not _read_by_kilnet(sys._getframe(1)):
            self.build_if_shapes_known()
            return object.__getattribute__(self, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}",
                             name=name, obj=self)

    def _weights_drawable_on_read(self, name: str) -> bool:
        """Whether reading the missing attribute `name` should draw the weights first: the
        layer was called on symbolic tensors and is not built, and no build is under way (a
        build() that probes its own attributes must not start another). Read from __dict__:
        a half-made or unpickled layer has none of these yet, and must not recurse here."""
        known = self.__dict__
        return (not name.startswith("__") and not known.get("built", True)
                and bool(known.get("_inbound_nodes")) and known.get("build_shape") is not None
                and not known.get("_making_weights") and not known.get("in_build_hook")
                and _scope.init_rng() is None)

    def build_if_shapes_known(self) -> None:
        """Draw the weights of a layer called on symbolic tensors (a functional model's, a
        Sequential's that starts with Input) when they are first read: Keras has them from
        that call (the transfer-learning guide reads `layer1.get_weights()` of a layer of
        `Sequential([Input(...), layer1, ...])` right away). Its model builds the others when
        first needed, keeping these.

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(3)
            >>> model = kilnet.Sequential([kilnet.Input((4,)), dense])
            >>> [w.shape for w in dense.get_weights()]
            [(4, 3), (3,)]
        """
        if self.built or self.__dict__.get("_making_weights") or not self._inbound_nodes \
                or self.build_shape is None:
            return
        self.build_weights(utils.numpy_rng(utils.next_seed()), self.build_shape,
                           call_extras=self.first_call_extras(),
                           call_keywords=self.first_call_keywords())

    @property
    def weights(self) -> list:
        """Every weight (Variables), in Keras's get_weights order."""
        self.build_if_shapes_known()
        seen, out = set(), []
        for _, _, v in self.variable_paths():
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def variables(self) -> list:
        """Every variable, as Keras's `layer.variables`: the weights plus the state of each
        SeedGenerator kept as an attribute, in Keras's order (a layer's own weights, its own
        generators' states, then its sub-layers' variables).

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2),
            ...                            kilnet.layers.Dropout(0.5, seed=1)])
            >>> [v.name for v in model.variables], len(model.weights)
            (['kernel', 'bias', 'seed_generator_state'], 2)
        """
        seen, out = set(), []
        for v in self._variables_in_order():
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    # The sub-layer (an attribute name) the layer's own seed states come before in
    # `variables`, where Keras's layer keeps its generator on a sub-layer that kilnet's does not
    # have (MultiHeadAttention's dropout layer); None: right after the layer's own weights.
    seed_states_before = None

    def _variables_in_order(self):
        if type(self).variable_paths is not Layer.variable_paths:
            # a layer that orders its weights itself (SpectralNormalization): its order
            yield from (v for _, _, v in self.variable_paths())
            yield from self.seed_states()
            return
        yield from self._trainable_vars + self._non_trainable_vars
        before = (None if self.seed_states_before is None
                  else self.__dict__.get(self.seed_states_before))
        if before is None:
            yield from self.seed_states()
        for sub in self._sublayers:
            if sub is before:
                yield from self.seed_states()
            yield from sub._variables_in_order()

    def seed_states(self) -> list:
        """The state Variables of this layer's own SeedGenerators (not its sub-layers').

        Example:
            >>> from kilnet import layers
            >>> [v.numpy().tolist() for v in layers.Dropout(0.5, seed=4).seed_states()]
            [[4, 0]]
            >>> layers.Dropout(0.0).seed_states()   # as Keras's: nothing dropped, no generator
            []
        """
        return [generator.state for generator in self._seed_generators]

    def all_seed_states(self) -> list:
        """The state Variables of every SeedGenerator of this layer and the layers inside it,
        in `variables` order: what evaluate and predict carry from batch to batch for a model
        that draws at inference.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)),
            ...                            kilnet.layers.Dropout(0.5, seed=1),
            ...                            kilnet.layers.Dense(2),
            ...                            kilnet.layers.GaussianNoise(0.1, seed=2)])
            >>> [v.numpy().tolist() for v in model.all_seed_states()]
            [[1, 0], [2, 0]]
        """
        seeds = set()
        pending = [self]
        while pending:
            layer = pending.pop()
            seeds.update(id(state) for state in layer.seed_states())
            pending.extend(layer.sublayers)
        return [v for v in self.variables if id(v) in seeds]

    def bound_key(self):
        """The next key of this layer's first SeedGenerator whose state is bound in the
        active scope (stateless_call binds them), advancing that state; None when none is.

        Example:
            >>> import numpy as np
            >>> from kilnet import _scope, layers
            >>> dropout = layers.Dropout(0.5, seed=4)
            >>> dropout.bound_key() is None   # nothing bound: eager calls get their own keys
            True
            >>> state = dropout.seed_states()[0]
            >>> scope = _scope.Scope(bindings={id(state): np.array([4, 7], np.uint32)})
            >>> with _scope.opened(scope):
            ...     key = dropout.bound_key()
            >>> key.tolist(), scope.assigned[id(state)].tolist()
            ([4, 7], [4, 8])
        """
        for generator in self._seed_generators:
            if _scope.lookup(generator.state) is not None:
                return generator.next()
        return None

    def random_key(self, rng):
        """The JAX key a random layer draws from in training: `rng` when its caller gave one
        (fit's step, an eager call in training); else the next key of the layer's
        SeedGenerator whose state is bound (`stateless_call`, under your own `jax.jit` too;
        evaluate and predict, for a layer called with training=True), which advances it;
        in an eager call that infers, its generator's stored state, which advances (Keras's
        draw); in a trace for shapes only, a key that draws nothing; else a fresh host key in
        an eager stateless_call. Refused where there is no key.

        Example:
            >>> import jax
            >>> from kilnet import layers
            >>> layers.Dropout(0.5).random_key(jax.random.key(0)).shape
            ()
            >>> dropout = layers.Dropout(0.5, seed=4)
            >>> from kilnet import _scope
            >>> with _scope.opened(_scope.Scope(eager=True)):
            ...     dropout.random_key(None).tolist()
            [4, 0]
            >>> dropout.seed_states()[0].numpy().tolist()
            [4, 1]
        """
        if rng is not None:
            return rng
        key = self.bound_key()
        if key is not None:
            return key
        generator = self._seed_generators[0] if self._seed_generators else None
        if _scope.tracing_shapes_only():   # a symbolic call or a build: nothing is drawn
            return (jnp.zeros((2,), jnp.uint32) if generator is None
                    else jnp.asarray(generator.state.numpy()))
        if generator is not None:
            if _scope.in_eager_call():
                return generator.next()
            _scope.unkeyed_draw()   # in an inference program's first trace: traced again
        if _scope.host_keys():
            return utils.raw_key(utils.next_seed())
        raise ValueError(
            f"{type(self).__name__} {self.name!r} was applied in training mode without a random "
            "key, and no SeedGenerator state of it is bound to draw from (stateless_call binds "
            "those given in non_trainable_variables; this layer has none). Pass rng=... to "
            "apply, call the layer or model eagerly, or train with compile() and fit, whose "
            "steps give keys.")

    @property
    def trainable_weights(self) -> list:
        self.build_if_shapes_known()
        if not self.trainable:
            return []
        out = [v for v in self._trainable_vars if v.trainable]
        for sub in self._sublayers:
            out.extend(v for v in sub.trainable_weights if not any(v is o for o in out))
        return out

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self) -> list:
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    @property
    def non_trainable_variables(self) -> list:
        """The variables the optimizer does not update, as Keras's: the non-trainable weights
        and the SeedGenerator states, in `variables` order (all variables when frozen).

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dropout(0.5),
            ...                            kilnet.layers.BatchNormalization()])
            >>> [v.name for v in model.non_trainable_variables]
            ['seed_generator_state', 'moving_mean', 'moving_variance']
        """
        if not self.trainable:
            return self.variables
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.variables if id(v) not in trainable]

    def get_weights(self) -> list:
        """The weights as NumPy arrays, in Keras's order."""
        return [v.numpy() for v in self.weights]

    def set_weights(self, weights) -> None:
        """Set the weights from NumPy arrays in get_weights() order (shapes must match)."""
        mine = self.weights
        if len(weights) != len(mine):
            raise ValueError(
                f"set_weights expected a list of {len(mine)} arrays (as get_weights returns). "
                f"Received: {len(weights)} arrays")
        names = {id(v): "/".join(path) for path, _, v in self.variable_paths()}
        for v, value in zip(mine, weights):
            if tuple(np.shape(value)) != v.shape:
                raise ValueError(f"set_weights: {names[id(v)]} expects shape {v.shape}. "
                                 f"Received: shape {tuple(np.shape(value))}")
        for v, value in zip(mine, weights):
            v.assign(np.asarray(value))

    def count_params(self) -> int:
        self.build_if_shapes_known()
        if not self.built:
            raise ValueError(f"Layer {self.name!r} has no weights yet: it is built on its first "
                             "call, or by model.build(input_shape).")
        return sum(int(np.prod(v.shape)) for v in self.weights)

    # -- Keras's JAX stateless call ---------------------------------------------------------------
    def stateless_call(self, trainable_variables, non_trainable_variables, *args,
                       return_losses=False, **kwargs):
        """Keras's JAX `stateless_call`: the outputs of a call with these weight values, and
        the new non-trainable values, as lists in the order of `trainable_variables` and
        `non_trainable_variables`; nothing stored changes, so it runs inside `jax.jit` and
        `jax.grad` (a custom train_step, or a training loop of your own without compile()).
        `return_losses=True` adds the call's `add_loss` values.

        With `training=True` the random layers (Dropout, noise, augmentation) draw keys
        from the compiled step's key inside a model's own train_step (the seed states in
        `non_trainable_variables` then come back as given); elsewhere, eagerly or inside
        your own `jax.jit`, they draw from the SeedGenerator states given in
        `non_trainable_variables` and the returned list holds them advanced, as Keras's: pass
        them back at the next step for a new mask.

        Example:
            >>> import jax, numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
            >>> weights = [np.ones((3, 2), np.float32), np.zeros(2, np.float32)]
            >>> y, _ = jax.jit(model.stateless_call)(weights, [], np.ones((1, 3), np.float32))
            >>> y.tolist()
            [[3.0, 3.0]]
        """
        params, state, paths, seeds = self._stateless_trees(trainable_variables,
                                                            non_trainable_variables)
        # Keras's stateless_call is a call: given no training, each layer takes its call's
        # default (a Keras-form call sees None, Dropout infers, augmentation augments). The
        # mode of a compiled step it runs in is not a layer call's, so it is not inherited.
        training = self.training_for_apply(
            _explicit_training(kwargs.pop("training", UNSAID), self.training_default,
                               self.name))
        # Inside a compiled kilnet step the step's key; elsewhere (your own jax.jit, an eager
        # call) the random layers draw from the seed states given, as Keras's do.
        rng = _scope.next_rng() if training else None
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(
            (trainable_variables, non_trainable_variables, args)))
        mask = _scope.sample_mask()
        if mask is not None:
            kwargs["sample_mask"] = mask
        # the seed states bound: SeedGenerator.next reads them and records the advanced ones
        scope = _scope.Scope(training=bool(training), bindings=seeds,
                             training_given=training is not None,
                             host_keys=training is not False and not traced)
        with _scope.opened(scope):
            outputs, new_state = self.autocast_apply(params, state, *args, training=training,
                                                     rng=rng, **kwargs)
        new_values = [self._stateless_new_value(v, value, paths, new_state, scope.assigned)
                      for v, value in zip(self.non_trainable_variables, non_trainable_variables)]
        # A stateful layer's states are in neither list (as Keras's): inside a compiled model's
        # own test_step / predict_step, whose scope binds them, their new values are recorded
        # there for the next batch; in a loop of your own they stay as they were.
        for path, _, variable in self.carried_paths():
            _scope.record_assign(variable, _tree.get_path(new_state, path))
        return (outputs, new_values, list(scope.losses)) if return_losses else (outputs,
                                                                                 new_values)

    @staticmethod
    def _stateless_new_value(variable, given, paths, new_state, assigned):
        """A non-trainable variable's value after a stateless_call: a state's from the new
        state tree, a seed state's as the draws advanced it, a frozen weight's as given."""
        if id(variable) not in paths:   # a SeedGenerator's state
            return assigned.get(id(variable), given)
        kind, path = paths[id(variable)]
        return _tree.get_path(new_state, path) if kind == "state" else given

    def _stateless_trees(self, trainable_variables, non_trainable_variables):
        """(params tree, state tree, {id(Variable): (kind, path)}, {id(seed state): value})
        with the lists' values in place of the stored ones; a clear error when a list does not
        match its variables."""
        given = {}
        for argument, variables, values in (
                ("trainable_variables", self.trainable_variables, trainable_variables),
                ("non_trainable_variables", self.non_trainable_variables,
                 non_trainable_variables)):
            values = list(values)
            if len(values) != len(variables):
                raise ValueError(
                    f"stateless_call: {argument} must hold one value for each of "
                    f"{self.name!r}'s {len(variables)} {argument.replace('_', ' ')[:-1]}s, "
                    f"in that order (`model.{argument}`). Received: {len(values)} values")
            for v, value in zip(variables, values):
                given[id(v)] = value.value if isinstance(value, Variable) else value
        params, state, paths = self.params_tree(), self.state_tree(), {}
        for path, kind, v in self.variable_paths():
            paths.setdefault(id(v), (kind, path))
            if kind == "params":
                params = _tree.replace_path(params, path, given[id(v)])
            else:
                state = _tree.replace_path(state, path, given[id(v)])
        seeds = {key: value for key, value in given.items() if key not in paths}
        return params, state, paths, seeds

    # -- the functional API's view of a layer ----------------------------------------------------
    @property
    def inbound_nodes(self) -> list:
        """Every call of this layer on symbolic tensors (kilnet.layers._node.Node), in order."""
        return list(self._inbound_nodes)

    @property
    def input(self):
        """The symbolic inputs of the layer's first call on symbolic tensors: the one tensor,
        or a flat list of all the call's tensors, as Keras's (a call on two tensors gives
        both).

        Example:
            >>> import kilnet
            >>> a, b = kilnet.Input((2,)), kilnet.Input((2,))
            >>> add = kilnet.layers.Add()
            >>> _ = add([a, b])
            >>> len(add.input), add.output.shape
            (2, (None, 2))
        """
        return _one_or_list(self._first_node("input").inputs)

    @property
    def output(self):
        """The symbolic outputs of the layer's first call on symbolic tensors: the one tensor,
        or a flat list of them, as Keras's (a layer returning a tuple or a dict gives a list,
        dict values in sorted key order)."""
        return _one_or_list(self._first_node("output").outputs)

    def first_call_keywords(self):
        """The keyword arguments of the layer's first call on symbolic tensors, for the traces
        that build it (trace_keywords), or None if it has never been called so."""
        if not self._inbound_nodes:
            return None
        node = self._inbound_nodes[0]
        return self.trace_keywords(node.args, node.kwargs)

    def first_call_extras(self) -> tuple:
        """The positional arguments after the input of the layer's first call on symbolic
        tensors (for the traces that build it), or () if it has never been called so."""
        return tuple(self._inbound_nodes[0].args[1:]) if self._inbound_nodes else ()

    def _first_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer {self.name!r} has never been called on symbolic "
                                 f"tensors, so it has no {what}.")
        return self._inbound_nodes[0]

    # -- configuration -------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """The layer's settings as plain data (Keras's keys, in Keras's order): `name`,
        `trainable`, `dtype`, then the layer's arguments; for a class of yours that takes
        constructor arguments and defines no get_config, the arguments it was made with
        (Keras 3's automatic config).

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dense(2, name="d").get_config()["units"]
            2
        """
        config = {"name": self.name, "trainable": self.trainable,
                  "dtype": mixed_precision.serialize(self._dtype_policy)}   # Keras's form
        # Keras's base layer writes a set activity regularizer here, before the layer's own
        # keys (a layer whose own keys hold it, Conv2D, keeps it in this place when set)
        activity = getattr(self, "activity_regularizer", None)
        if activity is not None:
            config["activity_regularizer"] = regularizers.serialize(activity)
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        for key in self.config_keys:
            value = getattr(self, key)
            if isinstance(value, initializers.Initializer) or (
                    key.endswith("_initializer") and _registry.name_of(value) is not None):
                # an object: its config; a registered function of yours: its name (an
                # unregistered one stays as it is, refused when saved, with the fix)
                value = initializers.serialize(value)
            elif key.endswith("activation") and callable(value):   # a function: its name
                value = activations.config_name(value)
            config[key] = value
        if (not self.config_keys and not self.is_pure
                and _auto_config.configures_automatically(self, Layer)):
            config = _auto_config.with_constructor_arguments(self, config)
        return config

    # Layer.__new__ records the constructor's arguments for this method (not for a class's own)
    get_config.reads_recorded_arguments = True

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def save_own_variables(self, store) -> None:
        """Write the layer's own weights (not its sub-layers') into `store`, a dict-like
        store, under "0", "1", ... in Keras's order (trainable, then non-trainable), as
        Keras's default does. Override it with `load_own_variables` to keep more (a
        Variable your `__init__` made, an array): model files and weights files in Keras's
        format then call yours, as Keras's do.

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((None, 3))
            >>> store = {}
            >>> dense.save_own_variables(store)
            >>> {key: tuple(value.shape) for key, value in store.items()}
            {'0': (3, 2), '1': (2,)}
        """
        for index, variable in enumerate(self._saved_own_variables()):
            store[str(index)] = variable

    # Keras's Dense, EinsumDense, Embedding and Conv1D/2D/3D save only their declared weights
    # (kernel and bias, embeddings), not a Variable a subclass of yours adds: so do theirs
    saves_declared_weights_only = False

    def _saved_own_variables(self) -> list:
        own = self._trainable_vars + self._non_trainable_vars
        if not self.saves_declared_weights_only:
            return own
        by_name = {variable.name: variable for variable in own}
        names = self.saved_weight_order or (*self.param_names, *self.state_names)
        return [by_name[name] for name in names if name in by_name]

    def load_own_variables(self, store) -> None:
        """Set the layer's own weights from `store`, as `save_own_variables` wrote them
        ("0", "1", ...); keys that are not numbers belong to an override of yours and are
        left to it. ValueError, naming the layer, when the numbered entries do not match
        its weights in count or shape.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((None, 3))
            >>> dense.load_own_variables({"0": np.ones((3, 2)), "1": np.zeros(2)})
            >>> float(dense.kernel.numpy().sum())
            6.0
        """
        own = self._saved_own_variables()
        numbered = sorted((key for key in store.keys() if str(key).isdigit()), key=int)
        if numbered != [str(index) for index in range(len(own))]:
            raise ValueError(f"Layer {self.name!r} ({type(self).__name__}) has {len(own)} "
                             f"weights of its own {[v.name for v in own]}; the store holds "
                             f"the numbered entries {numbered[:8]}. Load a file saved from "
                             "the same architecture, or override load_own_variables to read "
                             "what your save_own_variables wrote.")
        for index, variable in enumerate(own):
            value = np.asarray(store[str(index)])
            if value.shape != tuple(variable.shape):
                raise ValueError(f"Layer {self.name!r}: the entry {str(index)!r} has shape "
                                 f"{value.shape}; its weight {variable.name!r} has shape "
                                 f"{tuple(variable.shape)}.")
            variable.assign(value)

    def get_build_config(self):
        """What `build_from_config` needs to make the weights again (Keras's): the shape given
        to your `layer.build(shape)`, else the input shape the layer was built for (or is
        called on in a model's graph), batch axis first; None before either. A layer of yours
        may add what its build needs beyond the shape (a vocabulary size found by `adapt`);
        files then keep it and loading passes it to your `build_from_config`.

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build((None, 3))
            >>> dense.get_build_config()
            {'input_shape': (None, 3)}
        """
        given = self.__dict__.get("_shape_given_to_build")
        if given is not None and self.built:   # your layer.build(shape): that shape, as Keras
            return {"input_shape": tuple(given) if is_shape(given) else given}
        if self.build_shape is None:  # neither built nor placed in a model's graph
            return None
        return {"input_shape": with_batch_axis(self.build_shape)}

    def build_from_config(self, config) -> None:
        """Build the layer from what `get_build_config` returned (Keras's; default: build for
        its "input_shape").

        Example:
            >>> import kilnet
            >>> dense = kilnet.layers.Dense(2)
            >>> dense.build_from_config({"input_shape": [None, 3]})
            >>> dense.kernel.shape
            (3, 2)
        """
        if config and config.get("input_shape") is not None:
            self.build(config["input_shape"])

    @property
    def keeps_own_variables(self) -> bool:
        """Whether the layer's class overrides save_own_variables or load_own_variables:
        files in Keras's format then keep its own weights as those methods write them.

        Example:
            >>> import kilnet
            >>> class Tagged(kilnet.layers.Dense):
            ...     def save_own_variables(self, store):
            ...         super().save_own_variables(store)
            ...         store["tag"] = 1
            >>> Tagged(2).keeps_own_variables, kilnet.layers.Dense(2).keeps_own_variables
            (True, False)
        """
        cls = type(self)
        return (cls.save_own_variables is not Layer.save_own_variables
                or cls.load_own_variables is not Layer.load_own_variables)

    @property
    def keeps_own_build_config(self) -> bool:
        """Whether the layer's class writes or reads its own build configuration
        (get_build_config or build_from_config of yours): model files then keep it."""
        cls = type(self)
        return (cls.get_build_config is not Layer.get_build_config
                or cls.build_from_config is not Layer.build_from_config)

    @property
    def keras_class_name(self) -> str:
        """The class name Keras shows for this layer (reprs, `summary()`): the class's own,
        "Functional" for `kilnet.Model(inputs, outputs)`, an op node's op ("TrueDivide").

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dense(2).keras_class_name
            'Dense'
        """
        return type(self).__name__

    def __repr__(self):
        """Keras's repr: the class and name, and whether the weights exist (`get_config()`
        has the settings).

        Example:
            >>> import kilnet
            >>> kilnet.layers.Dense(2, name="dense")
            <Dense name=dense, built=False>
        """
        return f"<{self.keras_class_name} name={self.name}, built={self.built}>"


class ActivatedLayer(Layer):
    """A layer that ends with an activation, so a model can ask for its pre-activation.

    Losses computed from the logits are stable where the same loss on softmax/sigmoid
    outputs is not; the model uses `apply(..., logits=True)` on an output layer for that.
    """

    def __init__(self, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation

    # The activation function, as Keras's `layer.activation` (`linear` for None). Setting it
    # (a name, a function or None) changes what the layer computes from then on, in the
    # models built with it too: keras.io's Grad-CAM sets `model.layers[-1].activation = None`
    # to take the gradient of the logits.
    activation = activations.Setting()

    @property
    def activation_name(self):
        """What the layer's config holds for its activation (`activations.config_name`)."""
        return activations.config_name(self._activation_fn)

    def pre_activation(self, params, state, x, *, training, rng, sample_mask):
        raise NotImplementedError

    def activate(self, z):
        """The activation alone (applied to logits computed with logits=True)."""
        return self._activation_fn(z)

    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              logits=False, **_):
        z, state = self.pre_activation(params, state, x, training=training, rng=rng,
                                       sample_mask=sample_mask)
        return (z if logits else self._activation_fn(z)), state


class KernelLayer(ActivatedLayer):
    """A layer whose weights are a kernel and, with use_bias, a bias (Dense, convolutions)."""

    @property
    def param_names(self):
        return ("kernel", "bias") if self.use_bias else ("kernel",)


# -- helpers ----------------------------------------------------------------------------------------
def _completing_build(build):
    """A Keras-form layer's own `build`, wrapped so that calling it yourself leaves the layer
    built (Layer._build_called_directly); called by kilnet while making weights, or by a
    subclass's super().build(), it runs as written."""
    run = build if takes_shape(build, bound=False) else _shape_dropped(build)

    @functools.wraps(build)
    def build_and_complete(self, input_shape=None, *args, **kwargs):
        if self.is_pure or self.__dict__.get("in_build_hook"):
            return run(self, input_shape, *args, **kwargs)
        return self._build_called_directly(run, input_shape, args, kwargs)

    build_and_complete.completes_build = True
    return build_and_complete


def takes_shape(build, bound: bool = True) -> bool:
    """Whether a `build` method names an argument, which gets the input shape. Keras calls a
    `build(self)` that names none without it (keras.io's GRN/VSN layers build nothing
    themselves: their sub-layers build at their first call).

    Example:
        >>> class Gate:
        ...     def build(self):
        ...         self.built = True
        >>> takes_shape(Gate().build), takes_shape(Gate.build, bound=False)
        (False, False)
        >>> takes_shape(lambda input_shape: None)
        True
    """
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in inspect.signature(build).parameters.values() if p.kind in kinds]
    return len(named) > (0 if bound else 1)


def _shape_dropped(build):
    """`build(self)` called as kilnet calls every build, with the input shape, which it
    does not take."""
    @functools.wraps(build)
    def build_without_shape(self, input_shape=None, *args, **kwargs):
        return build(self, *args, **kwargs)

    return build_without_shape


def _apply_through_call(built_in_apply):
    """The apply of a built-in layer's subclass that overrides call (the saving guide's
    Dense subclass): your call runs, with the weights bound as in any Keras-form layer, and
    its super().call(inputs) runs `built_in_apply` (Layer._built_in_call)."""
    def apply_your_call(self, params, state, *args, **kwargs):
        return Layer.apply(self, params, state, *args, **kwargs)

    apply_your_call.built_in_apply = built_in_apply
    return apply_your_call


def _traced_call_output_shape(self, input_shape, kwargs):
    """The output shape of your call, traced (a built-in layer's own shape rule does not know
    what your call returns): on the layer's weights, or on a throwaway build's."""
    keywords = {k: v for k, v in kwargs.items() if k != "training"}
    if self.built:
        return self._traced_output_shape(input_shape, call_keywords=keywords)
    return self._trial_output_shape(input_shape, keywords)


def _drawing_rng():
    """The NumPy Generator new weights draw from: from the build under way (so a model's seed
    decides a sub-layer built inside its parent's build), else from a new seed."""
    rng = _scope.init_rng()
    if rng is not None:
        return utils.numpy_rng(int(rng.integers(2**31)))
    return utils.numpy_rng(utils.next_seed())


@functools.lru_cache(maxsize=None)
def parameter_names(fn) -> tuple:
    """The names of function `fn`'s parameters, () when Python cannot tell. Cached per
    function: every eager model call asks this of each layer's call, and inspect.signature
    took about 0.1 of the seed MLP's 1.0 ms eager call (2-core Intel Xeon).

    Example:
        >>> parameter_names(lambda inputs, mask=None: inputs)
        ('inputs', 'mask')
    """
    try:
        return tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return ()


def set_untracked(obj, name, value):
    object.__setattr__(obj, name, value)


def _explicit_training(given, default, layer_name):
    """`training` as a caller passed it (None included), else `default`. Anything with a truth
    value is taken, as Keras takes it (a 0-d array too); an array of several values, which
    Keras refuses as NumPy does, is refused naming the argument."""
    if given is UNSAID:
        return default
    try:
        return None if given is None else bool(given)
    except ValueError:
        raise ValueError(
            f"Layer {layer_name!r} takes a Python bool or None as training= (the mode: True "
            f"runs dropout and the like). Received: training={described(given)}. "
            + several_inputs_hint(layer_name)) from None


@functools.lru_cache(maxsize=None)
def _call_training_default(cls):
    """The default of `training` in the signature of cls.call (None when it has none)."""
    try:
        parameter = inspect.signature(cls.call).parameters.get("training")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


@functools.lru_cache(maxsize=None)
def _call_arguments(cls) -> dict:
    try:
        parameters = inspect.signature(cls.call).parameters
    except (TypeError, ValueError):
        return {}
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    return {name: name in parameters or accepts_any for name in ("training", "mask")}


def _is_array(value) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _cast_keeping_masks(tree, dtype):
    """A call's arguments cast to its compute dtype, each cast array carrying its original's
    sequence mask (Keras's autocast keeps `_keras_mask`)."""
    cast = mixed_precision.cast_floating(tree, dtype)
    tensor_masks.carry_masks(tree, cast)
    return cast


def _all_concrete(tree) -> bool:
    """Whether no leaf of `tree` is a JAX trace's value (so Python can read them)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _array_extras(args) -> tuple:
    """The positional arguments after a call's input when they are all arrays (an RNN cell's
    states): what the first build's trace of a Keras-form call needs besides the input.
    Empty when there are none, or when one is not an array (the trace then takes the input
    alone, as before)."""
    extras = tuple(args[1:])
    leaves = jax.tree.leaves(extras)
    return extras if leaves and all(_is_array(a) for a in leaves) else ()


def common_batch_size(args):
    """The batch size the inputs among `args` share, or None when one is unknown or they
    differ: the symbolic tensors' where there are any (an array beside them is a constant),
    else the arrays'.

    Example:
        >>> import numpy as np
        >>> common_batch_size((np.zeros((4, 3)), [np.ones((4, 2))])), common_batch_size(
        ...     (KerasTensor((None, 3)),)), common_batch_size((KerasTensor((4, 3)), np.ones(3)))
        (4, None, 4)
    """
    leaves = jax.tree.leaves(args, is_leaf=lambda t: isinstance(t, KerasTensor))
    inputs = [t for t in leaves if isinstance(t, KerasTensor)] or [
        t for t in leaves if _is_array(t) or isinstance(t, jax.core.Tracer)]
    sizes = {t.shape[0] if t.shape else None for t in inputs}
    return sizes.pop() if len(sizes) == 1 else None


def _is_tensor_tree(value) -> bool:
    """Whether a call argument is arrays or symbolic tensors (nested or not), to be traced
    abstractly, rather than an option (a flag, a string) passed as it is."""
    leaves = jax.tree.leaves(value, is_leaf=lambda a: isinstance(a, KerasTensor))
    return bool(leaves) and all(isinstance(a, (KerasTensor, jax.ShapeDtypeStruct))
                                or _is_array(a) for a in leaves)


def _as_dtype_of(new, old):
    """A new state value in the dtype of the value it replaces."""
    if _is_array(new) and _is_array(old) and new.dtype != old.dtype:
        return new.astype(old.dtype)
    return new


# The lengths an axis of unknown length (None) takes in the two abstract traces of a Keras-form
# call: even, so a call that halves or quarters a sequence traces.
_TRIAL_LENGTHS = (8, 12)
# Attributes of kilnet's own bookkeeping that hold shapes and dtypes, never layers: kept as
# given (a dict of input shapes stays a dict, not a tracked one; keras.io's variable
# selection network calls its layer on a dict of inputs).
_BOOKKEEPING = frozenset({"build_shape", "build_dtype", "declared_input_shape"})


def _symbolic_size():
    """One symbolic size for the batch axis and the axes of unknown length, as Keras's JAX
    backend traces calls (at least 2, so that JAX does not take it for a broadcast axis)."""
    return jax.export.symbolic_shape("(size)", constraints=["size>=2"])[0]


def is_shape(value) -> bool:
    """A single shape (a tuple of ints or None), as opposed to a list or dict of shapes."""
    return isinstance(value, tuple) and all(d is None or isinstance(d, int) for d in value)


def _shape_of(inputs):
    """The shape (batch axis excluded) of an input, or a list/dict of them for several."""
    if isinstance(inputs, (KerasTensor,)) or hasattr(inputs, "shape"):
        return tuple(None if d is None else int(d) for d in inputs.shape[1:])
    if isinstance(inputs, dict):
        return {k: _shape_of(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return [_shape_of(v) for v in inputs]
    raise TypeError(f"A layer's inputs must be arrays or symbolic tensors. Received: "
                    f"{type(inputs).__name__}")


def _dtype_of(inputs):
    """The dtype name(s) of an input, in the structure `_shape_of` gives its shapes (a tuple
    of tensors, as `Sampling()((z_mean, z_log_var))` passes them, as a list)."""
    if isinstance(inputs, dict):
        return {k: _dtype_of(v) for k, v in inputs.items()}
    if isinstance(inputs, (list, tuple)) and not hasattr(inputs, "dtype"):
        return [_dtype_of(v) for v in inputs]
    return backend.standardize_dtype(inputs.dtype)   # a tf.Tensor's tf.float32 too


def output_shapes(outputs):
    """The shape(s), batch axis excluded, of traced outputs (KerasTensors in any structure):
    one shape, or a flat list of them for outputs in a structure (a dict's by sorted key)."""
    if isinstance(outputs, KerasTensor):
        return outputs.sample_shape
    return [tensor.sample_shape for tensor in jax.tree.leaves(
        outputs, is_leaf=lambda t: isinstance(t, KerasTensor))]


def _with_batch(shape):
    if is_shape(shape):
        return (None,) + tuple(shape)
    return shape


def without_batch_axis(shape):
    """A shape as Keras's `build` takes it (batch axis first; a tuple or list), or a list or
    dict of them, without the batch axis: what `build_weights` takes.

    Example:
        >>> from kilnet.layers._base import without_batch_axis
        >>> without_batch_axis((None, 5, 3)), without_batch_axis([[None, 2], (None, 4)])
        ((5, 3), [(2,), (4,)])
    """
    if _is_flat_shape(shape):
        return tuple(shape)[1:]
    if isinstance(shape, dict):
        return {key: without_batch_axis(s) for key, s in shape.items()}
    if isinstance(shape, (list, tuple)) and shape:
        return [without_batch_axis(s) for s in shape]
    raise ValueError("build takes the input shape with its batch axis first, e.g. (None, 3), "
                     f"or a list of such shapes. Received: input_shape={shape!r:.100}")


def with_batch_axis(shape):
    """kilnet's input shape(s) (batch axis excluded) as Keras's `build` and build_config take
    them: batch axis (None) first.

    Example:
        >>> from kilnet.layers._base import with_batch_axis
        >>> with_batch_axis((5, 3)), with_batch_axis([(2,), (4,)])
        ((None, 5, 3), [(None, 2), (None, 4)])
    """
    if is_shape(shape):
        return (None,) + tuple(shape)
    return jax.tree.map(lambda s: (None,) + tuple(s), shape, is_leaf=is_shape)


def sample_shape_readings(shape, sample_rank=None) -> list:
    """The sample shapes (batch axis excluded, what `build_weights` takes) a shape given to
    `build` can mean, in the order to try them. Keras's layers read their feature axis from
    the end of the shape, whatever its rank, so a rank-1 shape of known length, `(10,)`, is
    a batch of 10 scalars to a layer that takes scalars (StringLookup, Embedding, PReLU) and
    one sample of 10 features to one that needs a feature axis (`Dense(32).build((10,))`
    makes a (10, 32) kernel in Keras). No shape (None) builds, as Keras's, a layer whose
    weights need none (Embedding, Dropout): it reads as scalars. Every other shape has its
    batch axis first. A layer whose samples have a fixed rank (`sample_rank`: an RNN's 2,
    time and features) reads the 10 features with its other axes unknown, as Keras's RNNs and
    transposed convolutions read the last axis only (`LSTM(8).build((10,))` makes a (10, 32)
    kernel).

    Example:
        >>> from kilnet.layers._base import sample_shape_readings
        >>> sample_shape_readings((None, 10)), sample_shape_readings((10,))
        ([(10,)], [(), (10,)])
        >>> sample_shape_readings((10,), sample_rank=2)
        [(None, 10)]
        >>> sample_shape_readings((None,)), sample_shape_readings([(None, 2), (None, 4)])
        ([()], [[(2,), (4,)]])
        >>> sample_shape_readings(None)
        [()]
    """
    if shape is None:
        return [()]
    if not (_is_flat_shape(shape) and len(shape) == 1 and shape[0] is not None):
        return [without_batch_axis(shape)]
    if sample_rank is not None:   # the rank says which: (10,) can be only its features
        return [(None,) * (sample_rank - 1) + tuple(shape)]
    # Otherwise both readings stay, tried in order: which one a layer takes is its own
    # knowledge, declared nowhere. Measured over the 33 built-in layers with weights given
    # (10,) (tests/test_build_shape_parity.py): 3 take the batch reading (Embedding,
    # ReversibleEmbedding, PReLU), 10 the feature reading, 13 refuse both, and the 7 that
    # declare sample_rank (RNNs, transposed convolutions) try one; a class of yours may take
    # either, so its sub-layers' build (Layer._build_called_directly) keeps the two tries.
    return [without_batch_axis(shape), tuple(shape)]


def first_reading_that_builds(shape, build, sample_rank=None):
    """Call `build(sample_shape)` with each of `shape`'s sample_shape_readings until one
    succeeds, and return that one; where none does, raise the first reading's error (the
    batch-axis-first reading, kilnet's and Keras's usual one), or, for no shape, say that
    this layer needs one.

    Example:
        >>> from kilnet.layers._base import first_reading_that_builds
        >>> def needs_features(sample_shape):
        ...     return sample_shape[-1]
        >>> first_reading_that_builds((None, 3), needs_features), first_reading_that_builds((10,), needs_features)
        ((3,), (10,))
    """
    first_error = None
    for reading in sample_shape_readings(shape, sample_rank):
        try:
            build(reading)
            return reading
        except CallReadsValues:
            raise   # no trace runs such a call, whatever the reading
        except (ValueError, IndexError, TypeError) as error:
            first_error = first_error or error
    if shape is None:
        raise ValueError(
            "build(None) builds only a layer whose weights do not depend on its input's shape "
            "(Embedding, Dropout, as in Keras); this one needs the input shape: pass it, batch "
            "axis first, e.g. build((None, 3)). Received: input_shape=None") from first_error
    raise first_error


def _is_flat_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and all(
        d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in value)


def _as_input_array(x):
    from kilnet.variables import to_array

    x = to_array(x)
    if isinstance(x, (np.ndarray, list, float, int)) and not isinstance(x, bool):
        array = np.asarray(x)
        if np.issubdtype(array.dtype, np.floating):
            return jnp.asarray(array, jnp.float32)
        return jnp.asarray(array)
    return x


def weight_dtype(dtype, trainable: bool) -> str:
    """The dtype `add_weight` makes a weight in: float32 by default (Keras's variable dtype,
    also under a mixed-precision policy) and for float64 (JAX computes without 64 bits, as
    Keras on JAX does, which names such a weight float64 but holds float32); an integer or
    bool dtype for a weight the optimizer leaves alone (a counter, an index).

    Example:
        >>> weight_dtype(None, True), weight_dtype("int", False), weight_dtype("float64", True)
        ('float32', 'int32', 'float32')
    """
    name = backend.standardize_dtype(dtype)
    if name in ("float32", "float64"):
        return "float32"
    if name in ("float16", "bfloat16"):
        raise ValueError("add_weight: weights are float32, also under a mixed-precision "
                         "policy, which computes in 16 bits from them (Keras's "
                         f"mixed_float16). Received: dtype={dtype!r}; leave dtype out.")
    if trainable:
        raise ValueError("add_weight: a trainable weight must be a float (the optimizer "
                         f"needs its gradient). Received: dtype={dtype!r} with "
                         "trainable=True; pass trainable=False for a counter or an index.")
    if not (np.issubdtype(np.dtype(name), np.integer) or name == "bool"):
        raise ValueError("add_weight: a weight is a float, an integer or a bool. "
                         f"Received: dtype={dtype!r}")
    return name


def _initial_value(initializer, rng, shape, dtype="float32"):
    """A weight's starting values: a number or an array broadcast to its shape (kilnet's
    shorthand), else anything initializers.get takes (a name, an Initializer or its class, a
    config, a function f(shape, dtype=None)), as Keras's add_weight, whose default is
    glorot_uniform for a float weight and zeros for an integer or bool one."""
    if initializer is None:
        initializer = "glorot_uniform" if dtype == "float32" else "zeros"
    if isinstance(initializer, (int, float, np.ndarray)) and not isinstance(initializer, bool):
        return np.broadcast_to(np.asarray(initializer, dtype), shape).copy()
    return initializers.initial_values(initializer, rng, shape, dtype)


def as_shape(value, argument: str) -> Shape:
    """A declared sample shape checked: positive ints (None for a variable axis); () is a
    scalar per sample (`Input(shape=())`, a batch of numbers), as Keras allows."""
    if isinstance(value, int):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not all((isinstance(d, int) and d > 0) or d is None for d in shape):
        raise ValueError(
            f"{argument} must be a tuple of positive integers without the batch axis, "
            f"e.g. {argument}=(28, 28). Received: {argument}={value!r}"
        )
    return shape


def as_pair(value, argument: str) -> tuple[int, int]:
    """Keras accepts `3` or `(3, 3)` for kernel sizes, strides and pool sizes."""
    if isinstance(value, int):
        value = (value, value)
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(
            f"{argument} must be a positive integer or a pair of them. Received: {argument}={value!r}"
        )
    return pair


def check_padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
    return padding.lower()


def check_channels_last(data_format) -> str:
    """Keras's `data_format` argument as kilnet's layers take it: None (Keras's default,
    `keras.config.image_data_format()`, which kilnet fixes) or "channels_last"; the value
    their configs keep, as Keras's.

    Example:
        >>> check_channels_last(None)
        'channels_last'
    """
    if data_format not in (None, "channels_last"):
        raise ValueError("Only data_format='channels_last' is supported: kilnet's layers take "
                         "the channels on the last axis. Move them there (np.moveaxis(x, 1, -1)"
                         " or a Permute layer) and leave data_format out. Received: "
                         f"data_format={data_format!r}")
    return "channels_last"


def float32(x):
    return jnp.asarray(x, jnp.float32)


def _one_or_list(tensors: list):
    """A node's tensors as Keras's layer.input / layer.output give them."""
    return tensors[0] if len(tensors) == 1 else list(tensors)
