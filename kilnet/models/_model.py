"""Model: a layer that can be compiled and trained. Three ways to make one, as in Keras:

- functional: `kilnet.Model(inputs, outputs)` over symbolic tensors from `kilnet.Input`;
- subclassed: `class MyModel(kilnet.Model)` with layers made in `__init__` and a `call`;
- Sequential (kilnet.models.Sequential), a chain that becomes a functional graph once its
  input shape is known.

What fit, saving, summary and checkpoints use is this public surface: `init`/`apply` (pure,
over the params and state pytrees keyed by layer name), `layers`, `weights` and
`variable_paths()` (Keras's get_weights order), `input_specs` / `output_specs` and
`output_names`. The arrays themselves live in the layers' Variables (kilnet.variables); once
compiled, the Trainer holds them while it trains.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import warnings

import jax
import numpy as np

from kilnet import _scope, structure, utils
from kilnet.layers import ActivatedLayer, InputLayer, Layer, Operation, _shared_layers
from kilnet.layers._base import common_batch_size, is_shape, set_untracked, takes_shape
from kilnet.layers._host_call import takes_strings
from kilnet.layers._node import KerasTensor, flatten, is_symbolic, substitute, tensors_in
from kilnet.models._graph import Graph
from kilnet.models._graph_masks import GraphMasks
from kilnet.models import _keras_steps
from kilnet.models._host_stage import HostStage
from kilnet.models._intermediate_inputs import start_from_inputs


class TensorSpec:
    """Shape (batch axis excluded), dtype and name of one model input or output."""

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name

    def __repr__(self):
        return f"TensorSpec(shape={self.shape}, dtype={self.dtype!r}, name={self.name!r})"


def _node_training(layer, training, node_training):
    """A graph layer's training flag: the one its call was made with (Keras:
    base(x, training=False)), else the model's; a model called eagerly without one (None)
    leaves each layer its own default (Layer.training_default), as Keras resolves
    training=None: the augmentation layers augment, Dropout and BatchNormalization infer, a
    call(x, training=True) trains (a nested model passes None on)."""
    if node_training is not None:
        return bool(node_training)
    if training is not None:
        return training
    return layer.training_default


# Whether the graph being built redraws every layer's weights (kilnet.models.Model.build with a
# seed) or only the missing ones; a nested model's init reads it.
_REDRAW_ALL = contextvars.ContextVar("kilnet_redraw_all", default=False)


def kilnets_own(build):
    """Marks Model.build and Sequential.build, which kilnet_build runs (a subclass's build
    of yours is wrapped by _yours_inside_kilnets instead)."""
    build.kilnets_own = True
    return build


class Model(Layer):
    """A model: `kilnet.Model(inputs, outputs)`, or subclass it and define `call`.

    Args:
        inputs: a KerasTensor from kilnet.Input, or a list or dict of them (functional API).
        outputs: KerasTensors computed from the inputs by calling layers, alone or in a list
            or dict (their keys or producing layers' names name the outputs).
        name: the model's name.

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> from kilnet import layers
        >>> inputs = kilnet.Input(shape=(4,))
        >>> hidden = layers.Dense(8, activation="relu")(inputs)
        >>> outputs = layers.Dense(3, activation="softmax")(hidden)
        >>> model = kilnet.Model(inputs, outputs, name="tiny")
        >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        >>> history = model.fit(np.zeros((8, 4)), np.zeros(8, int), epochs=1, verbose=0)
        >>> model.predict(np.zeros((2, 4)), verbose=0).shape
        (2, 3)
    """

    # A model keeps its default name ("functional", "sequential") when none is given, so
    # its files and layer paths are the same on every run (see Layer.numbered_in_process).
    numbered_in_process = False
    # A model's build(input_shape) makes every layer's weights itself (Model.build), and its
    # call is its own (not a built-in layer's override)
    keras_form_hooks = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("build")
        if own is not None and not getattr(own, "kilnets_own", False):
            cls.build = _yours_inside_kilnets(own)
        _keras_steps_for_metric_hooks(cls)

    def __init__(self, *args, **kwargs):
        inputs = kwargs.pop("inputs", args[0] if args else None)
        outputs = kwargs.pop("outputs", args[1] if len(args) > 1 else None)
        if len(args) > 2:
            raise TypeError("Model takes (inputs, outputs) and keyword arguments. Received: "
                            f"{len(args)} positional arguments")
        super().__init__(name=kwargs.pop("name", None),
                         trainable=kwargs.pop("trainable", True), **kwargs)
        set_untracked(self, "graph", None)
        # the nodes a model with string inputs runs on the host, before its programs
        set_untracked(self, "host_stage", None)
        set_untracked(self, "_inputs_structure", None)
        # the outputs given to Model(inputs, outputs), or for a subclassed model those its
        # call returned when traced to build it (KerasTensors in the call's structure)
        set_untracked(self, "_outputs_structure", None)
        set_untracked(self, "compiled", None)    # a kilnet.trainer.Trainer after compile()
        set_untracked(self, "stop_training", False)
        set_untracked(self, "history", None)
        if (inputs is None) != (outputs is None):
            raise ValueError("A functional model needs both inputs and outputs: "
                             "kilnet.Model(inputs, outputs).")
        if inputs is not None:
            self._set_graph(inputs, outputs)

    @property
    def default_name(self) -> str:
        if type(self) is Model:
            return "functional"
        return super().default_name

    # -- the functional graph ---------------------------------------------------------------
    def _set_graph(self, inputs, outputs):
        # inputs that layers computed become new Inputs, as Keras's (with a warning)
        inputs, outputs = start_from_inputs(inputs, outputs)
        graph = Graph(inputs, outputs)
        set_untracked(self, "graph", graph)
        if any(t.dtype == "string" for t in graph.inputs):
            set_untracked(self, "host_stage", HostStage(graph))
        set_untracked(self, "_inputs_structure", inputs)
        set_untracked(self, "_outputs_structure", outputs)
        set_untracked(self, "_sublayers", [layer for layer in graph.layers
                                        if not isinstance(layer, InputLayer)])
        self.build_shape = self._sample_shapes([t.sample_shape for t in self.fed_tensors])
        self.built = all(layer.built for layer in self._sublayers)

    def __call__(self, *args, **kwargs):
        if (self.host_stage is not None and is_symbolic((args, kwargs))
                and not takes_strings((args, kwargs))):
            raise TypeError(
                f"Model {self.name!r} takes strings, whose layers kilnet runs on the host "
                "before the compiled program; inside another model's graph, call it on "
                "string tensors (the outer model's string Inputs). Received: numbers.")
        if (self.host_stage is not None and args and not is_symbolic((args, kwargs))
                and _scope.current() is None):
            # raw text: through the host stage, then the model on the numbers it gives
            fed = self.host_stage.fed_arrays(args[0])
            args = (fed[0] if len(fed) == 1 else fed,) + args[1:]
        return super().__call__(*args, **kwargs)

    def call_on_strings(self, args, kwargs):
        """A model with string inputs called on string tensors in another model's graph: one
        node, which that model's host stage splits (kilnet.models._host_stage.SplitCall):
        this model's string layers run on the host, the rest in the compiled programs.

        Example:
            >>> import kilnet
            >>> text = kilnet.Input((1,), dtype="string")
            >>> lookup = kilnet.layers.StringLookup(vocabulary=["a"], output_mode="one_hot")
            >>> inner = kilnet.Model(text, kilnet.layers.Dense(2)(lookup(text)))
            >>> outer_text = kilnet.Input((1,), dtype="string")
            >>> inner(outer_text).shape
            (None, 2)
        """
        if self.host_stage is None:
            return super().call_on_strings(args, kwargs)
        batch = (common_batch_size(args),)
        outputs = jax.tree.map(lambda t: KerasTensor(batch + t.sample_shape, t.dtype),
                               self._outputs_structure,
                               is_leaf=lambda t: isinstance(t, KerasTensor))
        self.record_node(args, kwargs, outputs)
        return outputs

    @property
    def is_functional(self) -> bool:
        return self.graph is not None

    def _mark_masks(self, args, outputs):
        """A functional model called on symbolic tensors: its outputs carry the sequence masks
        its graph gives them (an Embedding(mask_zero=True) inside, or the masks its inputs
        were called with passed through), so the outer model's layers, loss and metrics
        see them as Keras's do at run time."""
        if not self.is_functional:
            return super()._mark_masks(args, outputs)
        for tensor, flag in zip(tensors_in(outputs), self.output_mask_flags(args[0])):
            tensor.has_mask = flag

    def output_mask_flags(self, inputs) -> list:
        """Per output of a functional model called on `inputs` (symbolic tensors): whether it
        carries a sequence mask. Where some input carries one, found by an abstract run of
        the graph given those masks (before its weights exist, the given masks are taken to
        reach every output).

        Example:
            >>> import kilnet
            >>> ids = kilnet.Input((None,), dtype="int32")
            >>> embed = kilnet.Model(ids, kilnet.layers.Embedding(9, 2, mask_zero=True)(ids))
            >>> embed.output_mask_flags(kilnet.Input((None,), dtype="int32"))
            [True]
        """
        own = [t.has_mask for t in self.graph.outputs]
        if self.host_stage is not None or not any(t.has_mask for t in tensors_in(inputs)):
            return own
        if not self.built:
            return [True] * len(own)
        found = []

        def run(params, state, values, masks):
            with _scope.opened(_scope.Scope(training=False)):
                self.apply(params, state, values, mask=masks, output_masks=found)

        jax.eval_shape(run, self.params_tree(), self.state_tree(),
                       jax.tree.map(_abstract_value, inputs, is_leaf=_is_tensor),
                       jax.tree.map(_abstract_mask, inputs, is_leaf=_is_tensor))
        return [mask is not None for mask in found]

    def positional_call_names(self) -> tuple:
        """A functional model's call takes (inputs, training, mask) by position, as Keras's
        Functional.call; a subclassed model's, its call()'s."""
        if self.is_functional:
            return ("inputs", "training", "mask")
        return super().positional_call_names()

    @property
    def fed_tensors(self) -> list:
        """The symbolic tensors a functional model's compiled programs take: its inputs, or
        with string inputs, its numeric inputs and what its host stage computes from the
        strings (kilnet.models._host_stage)."""
        return self.graph.inputs if self.host_stage is None else self.host_stage.fed

    @property
    def _compiled_nodes(self) -> list:
        """The graph's nodes that run in the compiled programs, in an order that runs them."""
        if self.host_stage is None:
            return self.graph.run_nodes
        return self.host_stage.device_nodes

    @property
    def is_pure(self) -> bool:
        return self.is_functional

    @property
    def names_built_weights(self) -> bool:
        return not self.is_functional

    @property
    def takes_keyed_inputs(self) -> bool:
        """Whether inputs given as a dict reach `call` as that dict: a subclassed model's (a
        functional model takes them by input name, a Sequential takes one array)."""
        return not self.is_functional

    @property
    def operations(self) -> list:
        """Every node of the model in Keras's order: its layers and the ops recorded between
        them (`x / 255`, `ops.relu(x)`), as Keras's `model.operations`."""
        if self.is_functional:
            return list(self.graph.layers)
        return list(self._sublayers)

    @property
    def sublayers(self) -> list:
        """The model's layers (Layer.sublayers): `layers`."""
        return self.layers

    @property
    def layers(self) -> list:
        """The model's layers, in Keras's order (input layers first for a functional model).
        As in Keras, the ops recorded between layers are not among them (they are in
        `operations`), so `model.layers[i]` is the same layer as in Keras."""
        return [node for node in self.operations if not isinstance(node, Operation)]

    def get_layer(self, name=None, index=None):
        """The layer called `name` (or at position `index` of model.layers)."""
        if index is not None:
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No layer named {name!r} in model {self.name!r}. Its layers: "
                         f"{[layer.name for layer in self.layers]}")

    @property
    def inputs(self) -> list:
        self._require_graph("inputs")
        return list(self.graph.inputs)

    @property
    def outputs(self) -> list:
        self._require_graph("outputs")
        return list(self.graph.outputs)

    @property
    def input(self):
        self._require_graph("input")
        return self._inputs_structure

    @property
    def output(self):
        self._require_graph("output")
        return self._outputs_structure

    def _require_graph(self, what):
        if not self.is_functional:
            raise AttributeError(
                f"Model {self.name!r} has no {what}: it is not a functional model (define it "
                "with kilnet.Model(inputs, outputs), or give a Sequential its input shape).")

    # -- inputs and outputs, as the data pipeline sees them -----------------------------------
    @property
    def input_specs(self) -> list[TensorSpec] | None:
        """One TensorSpec per input, or None while the input shape is unknown."""
        if self.is_functional:
            return [TensorSpec(t.sample_shape, t.dtype, t.node.layer.name)
                    for t in self.fed_tensors]
        if self.build_shape is None:
            return None
        # the dtypes of the first call's or the data's arrays (integer ids stay integers)
        dtypes = self._input_dtypes_for(self.build_shape)
        if isinstance(self.build_shape, dict):   # called on a dict: its inputs by key
            return [TensorSpec(self.build_shape[key], dtypes[key], key)
                    for key in sorted(self.build_shape)]
        if not isinstance(self.build_shape, list):
            return [TensorSpec(self.build_shape, dtypes, "input_0")]
        return [TensorSpec(s, d, f"input_{i}")
                for i, (s, d) in enumerate(zip(self.build_shape, dtypes))]

    @property
    def output_specs(self) -> list[TensorSpec] | None:
        tensors = self._output_tensors()
        if tensors is None:
            return None
        return [TensorSpec(t.sample_shape, t.dtype, name)
                for t, name in zip(tensors, self.output_names)]

    def _output_tensors(self) -> list[KerasTensor] | None:
        """One KerasTensor per output, in output order: the graph's, or for a subclassed
        model those its call returned when traced (None before)."""
        if self.is_functional:
            return list(self.graph.outputs)
        if self._outputs_structure is None:
            return None
        return jax.tree.leaves(self._outputs_structure)

    @property
    def input_names(self) -> list[str]:
        if self.is_functional and isinstance(self._inputs_structure, dict) \
                and self.host_stage is None:
            return sorted(self._inputs_structure)  # the order graph.inputs flattens them in
        return [spec.name for spec in (self.input_specs or [])]

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs: dict keys, else the names of the layers producing them."""
        structure = self._outputs_structure
        if isinstance(structure, dict) and not any(
                isinstance(v, (list, tuple, dict)) for v in structure.values()):
            return sorted(structure)  # the order the outputs flatten in
        if self.is_functional:
            return [t.node.layer.name for t in self.graph.outputs]
        return [f"output_{i}" for i in range(len(self._output_tensors() or []))]

    @property
    def input_shape(self):
        """Keras's input_shape: (None, ...) for one input, a list for several."""
        specs = self.input_specs
        if specs is None:
            return None
        if self.is_functional:   # Keras's inputs, a string one too
            shapes = [_batch_of(t) + t.sample_shape for t in self.graph.inputs]
        else:
            shapes = [_batch_of(None) + s.shape for s in specs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        specs = self.output_specs
        if specs is None:
            return None
        tensors = self.graph.outputs if self.is_functional else [None] * len(specs)
        shapes = [_batch_of(t) + s.shape for s, t in zip(specs, tensors)]
        return shapes[0] if len(shapes) == 1 else shapes

    def flatten_inputs(self, x) -> list:
        """The model's inputs as a list in input order, from an array, a list or a dict."""
        specs = self.input_specs or []
        names = self.input_names
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            extra = sorted(set(x) - set(names))
            if missing or extra:
                raise ValueError(f"The model's inputs are named {names}. Received a dict with "
                                 f"keys {sorted(x)}" + (f" (missing {missing})" if missing else "")
                                 + (f" (unknown {extra})" if extra else ""))
            return [x[n] for n in names]
        if isinstance(x, (list, tuple)) and len(specs) > 1:
            if len(x) != len(specs) and _nested_inputs(x, len(specs)):
                return self._flattened_inputs(x)
            if len(x) != len(specs):
                raise ValueError(f"The model has {len(specs)} inputs {names}. Received: a "
                                 f"{type(x).__name__} of {len(x)} arrays")
            return list(x)
        if isinstance(x, (list, tuple)) and len(x) == 1 and len(specs) == 1 \
                and hasattr(x[0], "shape"):
            return [x[0]]   # [array] for a model of one input, as fit hands it to a step
        return [x]

    def _flattened_inputs(self, x) -> list:
        """The arrays of a nested x with one leaf per input, in order, as Keras's functional
        call flattens it (with its warning): a step of yours handed `((a, p, n),)`, the
        batch fit packs from `fit(x=(a, p, n))`, passes it to a 3-input model (keras.io's
        siamese_network)."""
        warnings.warn(f"The structure of the inputs does not match the model's: it has "
                      f"{len(self.input_names)} inputs {self.input_names}; the nested "
                      f"{type(x).__name__} given is read as its arrays in order.",
                      UserWarning, stacklevel=3)
        return jax.tree.leaves(x)

    def with_declared_rank(self, x, index: int = 0):
        """A batch `x` (a NumPy or JAX array) for input `index` as a functional model takes
        it, Keras's Functional rule (`_adjust_input_rank`): one axis short of a declared last
        axis of size 1, it gets that axis ((n, 28, 28) images for `Input((28, 28, 1))`); with
        an extra last axis of size 1, that axis goes. The same rule holds wherever the
        model's inputs come from: fit's data, an eager call, a model or a train_step of yours
        calling it (its graph runs on the adjusted arrays, `apply`). A subclassed model
        takes its inputs as they are.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> inputs = kilnet.Input((4, 4, 1))
            >>> model = kilnet.Model(inputs, kilnet.layers.Flatten()(inputs))
            >>> model.with_declared_rank(np.zeros((2, 4, 4))).shape
            (2, 4, 4, 1)
        """
        if not self.is_functional or getattr(x, "ndim", 0) == 0:
            return x
        adjusted = keras_sample_shape(x.shape[1:], self.fed_tensors[index].sample_shape)
        if len(adjusted) > x.ndim - 1:
            return x[..., None]
        if len(adjusted) < x.ndim - 1:
            return x[..., 0]
        return x

    def integer_input_ranges(self) -> list:
        """Per input: (low, high, layer) when a layer that takes it directly accepts integer
        ids in [low, high) only (an Embedding), else None."""
        if not self.is_functional:
            return [None] * len(self.input_specs or [])
        ranges = []
        for tensor in self.fed_tensors:
            found = None
            for node in self._compiled_nodes:
                if any(t.uid == tensor.uid for t in node.inputs):
                    bounds = node.layer.integer_input_range()
                    if bounds is not None and (found is None or bounds[1] < found[1]):
                        found = (bounds[0], bounds[1], node.layer)
            ranges.append(found)
        return ranges

    def output_list(self, outputs) -> list:
        """The model's outputs as a list in output order, from what apply returned, nested
        structures too (the inverse of pack_outputs)."""
        return jax.tree.leaves(outputs)

    def pack_outputs(self, values: list):
        """Outputs in the structure the model was defined with, or a subclassed model's
        call returns: one array, a list, a dict, or a nesting of them (keras.io's involution
        visualizer takes each layer's (output, kernel) pair; its CaiT returns (logits, dict,
        dict)), tuples as tuples, as Keras gives them.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((2,))
            >>> model = kilnet.Model(inputs, [inputs, {"b": inputs, "a": inputs}])
            >>> model.pack_outputs([1, 2, 3])
            [1, {'a': 2, 'b': 3}]
        """
        structure = self._outputs_structure
        if not isinstance(structure, (list, tuple, dict)):
            return values[0] if len(values) == 1 else list(values)
        treedef = jax.tree.structure(structure, is_leaf=lambda t: isinstance(t, KerasTensor))
        packed = jax.tree.unflatten(treedef, list(values))
        return packed

    def pack_symbolic_outputs(self, tensors: list):
        return self.pack_outputs(tensors)

    def _sample_shapes(self, shapes):
        return shapes[0] if len(shapes) == 1 else list(shapes)

    # -- building -------------------------------------------------------------------------------
    @kilnets_own
    def build(self, input_shape=None, *, seed: int | None = None) -> None:
        """Create the weights for inputs of `input_shape` (batch axis excluded, or Keras's
        (None, ...) form), or for inputs like a batch of data (an array, or a list or dict of
        them), as Keras's distributed-training guide calls it. Without a seed, layers already
        built (e.g. pretrained) keep their weights; with one, every weight is drawn again
        from that seed. A functional model is built from `Model(...)` on: this only checks
        the shape against its inputs, given with or without the batch axis (Keras's
        `build((32, 28, 28, 1))` counts it).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.layers.Dense(2)])
            >>> model.build((3,), seed=0)
            >>> model.count_params()
            8
            >>> model.build(np.zeros((64, 3), "float32"))   # one batch: the same shape
            >>> model.count_params()
            8
        """
        if getattr(self, "in_build_hook", False):
            return  # called by Layer.init as the weight-making hook: the sub-layers build
        if holds_data(input_shape):   # its call is traced on the data's dtypes
            self.note_input_dtype((input_shape,))
        input_shape = shapes_of_data(input_shape)
        if input_shape is not None:
            input_shape = sample_shapes(input_shape)
        if self.is_functional:
            self._check_declared(input_shape)
            self._build_graph_weights(utils.next_seed() if seed is None else seed,
                                      everything=seed is not None)
            return
        input_shape = input_shape if input_shape is not None else self.build_shape
        if input_shape is None:
            raise ValueError(
                "The input shape is unknown: give the first layer input_shape=..., start the "
                "model with kilnet.Input(shape=...), call model.build(input_shape), or call "
                "fit() with data.")
        seed = utils.next_seed() if seed is None else seed
        self.build_weights(utils.numpy_rng(seed, 0), input_shape)
        self._reset_trainer()

    def kilnet_build(self, input_shape=None, *, seed: int | None = None) -> None:
        """kilnet's `build` (see Model.build), also where a subclass of yours defines its own
        `build`: fit and files build through it, and yours runs inside as the weight-making
        hook, as Keras runs it at the first call.

        Example:
            >>> import kilnet
            >>> class Twice(kilnet.Model):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.dense = kilnet.layers.Dense(2)
            ...     def build(self):   # keras.io's GRN/VSN form: no shape argument
            ...         self.built = True
            ...     def call(self, x):
            ...         return self.dense(x) * 2
            >>> model = Twice()
            >>> model.kilnet_build((3,), seed=0)
            >>> model.count_params()
            8
        """
        for klass in type(self).__mro__:   # the nearest build that is kilnet's own
            own = klass.__dict__.get("build")
            if getattr(own, "kilnets_own", False):
                return own(self, input_shape, seed=seed)
        raise TypeError(f"{type(self).__name__} is not a kilnet Model")

    def widen_input_axes(self, sample_shape) -> bool:
        """A built subclassed model given samples whose shape differs from the one it was
        built for only in the length of some axes, which its call takes (a tagger fitted on
        batches of each length, as keras.io's NER example feeds it): those axes become of
        any length, as if built with None there (`model.build((None, None))`), weights and
        training state kept, as Keras traces its call again. `sample_shape`: one shape, or a
        list of them for a model of several inputs (an encoder's and a decoder's sequences).
        Returns whether it did.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> class Tagger(kilnet.Model):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.dense = kilnet.layers.Dense(2)
            ...     def call(self, x):
            ...         return self.dense(x)
            >>> model = Tagger()
            >>> model.build((19, 4))
            >>> model.widen_input_axes((17, 4)), model.build_shape, model.output_shape
            (True, (None, 4), (None, None, 2))
        """
        declared = self.build_shape
        if self.is_functional or not self.built:
            return False
        if isinstance(declared, tuple):
            widened = _widened(declared, sample_shape)
        elif isinstance(declared, list) and isinstance(sample_shape, list) and \
                len(declared) == len(sample_shape) and all(map(is_shape, declared)):
            widened = [_widened(d, g) for d, g in zip(declared, sample_shape)]   # per input
            widened = None if None in widened else widened
        else:
            return False
        if widened is None or widened == declared:
            return False
        try:
            outputs = self.traced_outputs(widened)
        except Exception:   # the call does not take it: the shape check explains
            return False
        self.build_shape = widened
        set_untracked(self, "_outputs_structure", outputs)
        if self.compiled is not None:
            self.compiled.outputs_changed()
        return True

    def _check_declared(self, input_shape):
        if input_shape is None:
            return
        if isinstance(input_shape, dict):  # inputs given by name
            input_shape = self.flatten_inputs(input_shape)
            input_shape = input_shape[0] if len(input_shape) == 1 else input_shape
        declared = self.build_shape
        if _shapes_differ(declared, input_shape) and _shapes_differ(
                declared, _leading_axis_dropped(input_shape)):
            raise ValueError(f"The model was declared for inputs of shape {declared} but is "
                             f"being built for {input_shape}.")

    def _build_graph_weights(self, seed: int, everything: bool):
        """Draw the weights of the graph's layers: every one (`everything`: build(seed=...),
        a file's deterministic start), else only those without weights, so that the layers
        a model shares with another (feature extraction, a pretrained base model) keep
        theirs. A nested model built meanwhile follows the same choice."""
        if self.path is None:   # Keras's model.path (build_weights sets it for a nested one)
            set_untracked(self, "_path", _scope.weight_path(self.name))
        token = _REDRAW_ALL.set(everything)
        try:
            with self._naming_weights():
                self._build_each_layer(seed, everything)
        finally:
            _REDRAW_ALL.reset(token)
        self.built = True
        self._reset_trainer()

    def _build_each_layer(self, seed: int, everything: bool):
        on_host = set() if self.host_stage is None else self.host_stage.layer_ids
        for index, layer in enumerate(self._sublayers):
            if id(layer) in on_host:
                continue   # a string layer: no weights, it runs on the host
            if everything or not layer.built:
                layer.build_weights(utils.numpy_rng(seed, index), layer.build_shape,
                                    call_extras=layer.first_call_extras(),
                                    call_keywords=layer.first_call_keywords())

    def _reset_trainer(self):
        if self.compiled is not None:
            self.compiled.reset_state()

    def _keras_init(self, rng, input_shape, call_extras=(), call_keywords=None,
                    on_arrays=None):
        """A subclassed model's build: its call's traced outputs are kept (they give
        output_specs, and the structure predict returns)."""
        params, state, outputs = super()._keras_init(rng, input_shape, call_extras,
                                                     call_keywords, on_arrays)
        set_untracked(self, "_outputs_structure", outputs)
        return params, state, outputs

    def build_weights(self, rng, input_shape, *, call_extras=(), call_keywords=None,
                      on_arrays=None) -> None:
        """Layer.build_weights; a functional model keeps its declared input shapes as its
        build shape: a parent may build it for inputs of another rank, which its call adjusts
        (with_declared_rank), or for a length where it declared None."""
        super().build_weights(rng, input_shape, call_extras=call_extras,
                              call_keywords=call_keywords, on_arrays=on_arrays)
        if self.is_functional:
            self.build_shape = self._sample_shapes([t.sample_shape for t in self.fed_tensors])

    def init(self, rng, input_shape):
        if not self.is_functional:
            return super().init(rng, input_shape)
        self._check_declared(input_shape)
        # Built by a parent or by its first call: all of its layers when the parent redraws
        # everything, else those without weights (a shared or pretrained layer keeps its own)
        self._build_graph_weights(int(rng.integers(2**31)), everything=_REDRAW_ALL.get())
        return self.params_tree(), self.state_tree(), self.sample_output_shape(input_shape)

    def compute_output_shape(self, input_shape, *more_shapes, **options):
        """The output shape(s) for inputs of these shapes, batch axis first, as Keras's: a
        functional model's in the structure of its outputs (a dict by key, a list, ...).

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input((8, 8, 3))
            >>> model = kilnet.Model(inputs, {"flat": kilnet.layers.Flatten()(inputs)})
            >>> model.compute_output_shape((None, 8, 8, 3))
            {'flat': (None, 192)}
        """
        shapes = super().compute_output_shape(input_shape, *more_shapes, **options)
        structure = self._outputs_structure
        if not self.is_functional or not isinstance(structure, (list, tuple, dict)):
            return shapes
        return jax.tree.unflatten(
            jax.tree.structure(structure, is_leaf=lambda t: isinstance(t, KerasTensor)),
            list(shapes))

    def sample_output_shape(self, input_shape):
        if not self.is_functional:
            return self._traced_output_shape(input_shape)
        self._check_declared(input_shape)
        shapes = [t.sample_shape for t in self.graph.outputs]
        return shapes[0] if len(shapes) == 1 and not isinstance(
            self._outputs_structure, (list, tuple, dict)) else list(shapes)

    # -- the pure forward pass ------------------------------------------------------------------
    def apply(self, params, state, inputs, *args, training=False, rng=None, sample_mask=None,
              logits=False, output_masks=None, mask=None, **kwargs):
        """Run the model: returns (outputs, new_state). Pure: traced in compiled programs.

        logits: True (or one bool per output) returns the pre-activation of outputs whose
        layer ends in an activation that a loss can fold in (see output_activations).
        mask: the inputs' sequence masks (a functional model nested in another gets those of
        the tensors it is called on), given to its graph's inputs, as Keras's Functional."""
        if not self.is_functional:
            if mask is not None:
                kwargs["mask"] = mask
            return super().apply(params, state, self._as_called(inputs), *args,
                                 training=training, rng=rng, sample_mask=sample_mask, **kwargs)
        # a layer reached at several places (inside a nested model too) finds its arrays at each
        given_state = state
        params, state, filled = _shared_layers.expanded(params, state,
                                                        _shared_layers.alias_paths(self))
        values = {}
        for index, (tensor, value) in enumerate(zip(self.fed_tensors,
                                                    self.flatten_inputs(inputs))):
            values[tensor.uid] = self.with_declared_rank(value, index)
        logit_nodes = self._logit_nodes(logits)
        new_state = dict(state)
        # tensor uid -> its sequence mask, where a layer made one or the call gave one (Keras's
        # masks); output_masks (a list, if given) gets the outputs' masks
        masks = GraphMasks(self._given_input_masks(mask))
        for position, node in self._run_schedule():
            layer = node.layer
            node_args = substitute(node.args, values)
            node_kwargs = substitute(node.kwargs, values)
            # training=... given when the graph was made wins (Keras: base(x, training=False))
            node_training = node_kwargs.pop("training", None)
            if id(node) in logit_nodes:
                node_kwargs["logits"] = True
            previous = masks.previous_masks(layer, node)
            node_kwargs.update(masks.call_masks(layer, node))
            if masks:   # a Keras-form call finds them on its arrays, as Keras's _keras_mask
                masks.attach_to_arguments(node, values)
            layer_training = _node_training(layer, training, node_training)
            # a layer in inference gets no key of its own (a draw it makes anyway comes from
            # the model's): folding one was 0.1 ms a layer in every eager model(x) call
            keyed = rng is not None and layer_training is not False
            # a nested functional model tells the masks its own graph gave its outputs: they
            # ride on its outputs, as Keras's arrays carry theirs out of the inner run
            run_masks = [] if getattr(layer, "is_functional", False) else None
            if run_masks is not None:
                node_kwargs["output_masks"] = run_masks
            out, new_state[layer.name] = layer.autocast_apply(  # the layer's dtype policy
                params[layer.name], new_state[layer.name], *node_args,
                training=layer_training,
                rng=jax.random.fold_in(rng, position) if keyed else None,
                sample_mask=sample_mask, **node_kwargs)
            for tensor, value in zip(node.outputs, flatten(out)):
                values[tensor.uid] = value
            if masks:
                masks.after_call(layer, node, values)
            masks.record(layer, node, node_args[0], previous, run_masks)
        if output_masks is not None:
            output_masks.extend(masks.carried_by(t.uid for t in self.graph.outputs))
        if masks:   # the outputs carry their masks out, as Keras's arrays do (model(x) eagerly)
            masks.attach_to_outputs(self.graph.outputs, values)
        return (self.pack_outputs([values[t.uid] for t in self.graph.outputs]),
                _shared_layers.collapsed(new_state, given_state, filled))

    def _run_schedule(self) -> list:
        """(position, node) of the nodes the programs run, in the order Keras's Functional runs
        them (which decides the masks a MultiHeadAttention leaves to the layers after it);
        a node's position (its random key) is its place in the graph's walk."""
        ranks = self.graph.keras_rank
        # a node a host stage runs in two parts stands in for the graph's (SplitCall)
        schedule = [(position, node, id(getattr(node, "replaces", node)))
                    for position, node in enumerate(self._compiled_nodes)]
        if not all(key in ranks for _, _, key in schedule):
            return [(position, node) for position, node, _ in schedule]
        return [(position, node)
                for position, node, key in sorted(schedule, key=lambda item: ranks[item[2]])]

    def _given_input_masks(self, mask) -> dict:
        """{input tensor uid: its mask} for the masks a call gave the graph's inputs."""
        if mask is None:
            return {}
        given = jax.tree.leaves(mask, is_leaf=lambda m: m is None)
        if len(given) != len(self.fed_tensors):
            return {}   # not one per input: Keras sets none either (zip of unequal lengths)
        return {tensor.uid: m for tensor, m in zip(self.fed_tensors, given) if m is not None}

    def _as_called(self, inputs):
        """A subclassed model first called on a dict gets a dict again: fit, evaluate and
        predict pass its inputs as one array per key, in sorted key order (input_specs)."""
        keys = sorted(self.build_shape) if isinstance(self.build_shape, dict) else None
        if keys is None or isinstance(inputs, dict):
            return inputs
        return dict(zip(keys, inputs if isinstance(inputs, (tuple, list)) else [inputs]))

    def _logit_nodes(self, logits) -> set:
        if logits is False or logits is None:
            return set()
        flags = [bool(logits)] * len(self.graph.outputs) if isinstance(logits, bool) else logits
        return {id(t.node) for t, flag in zip(self.graph.outputs, flags)
                if flag and self._activation_of(t) is not None}

    def _activation_of(self, tensor):
        node = tensor.node
        if (not isinstance(node.layer, ActivatedLayer) or len(node.outputs) != 1
                or self.graph.consumers(tensor) or
                sum(t.uid == tensor.uid for t in self.graph.outputs) != 1):
            return None
        return node.layer

    def output_activations(self) -> list:
        """Per output: the name of the activation its layer ends with when the model can
        return its logits instead (apply(..., logits=...)), else None."""
        if not self.is_functional:
            return [None] * len(self.output_specs or [None])
        return [None if (layer := self._activation_of(t)) is None else layer.activation_name
                for t in self.graph.outputs]

    def activate_output(self, index: int, z):
        """Apply output `index`'s final activation to its logits."""
        return self._activation_of(self.graph.outputs[index]).activate(z)

    # -- arrays ----------------------------------------------------------------------------------
    @property
    def params(self):
        """The trainable-declared weights as a pytree keyed by layer name (None if unbuilt)."""
        return self.params_tree() if self.built else None

    @property
    def state(self):
        return self.state_tree() if self.built else None

    def require_built(self):
        """Build a model whose input shapes are declared (Keras has a functional model's
        weights from its construction on); for any other model without weights, raise a
        ValueError saying how to build it."""
        self._build_if_inputs_known()
        if not self.built and not self._weights_held_by_sub_layers():
            raise ValueError(
                "The model has no weights yet: call model.build(input_shape), give the first "
                "layer input_shape=..., or fit it on data first.")

    def build_if_shapes_known(self) -> None:
        """Build a model whose input shapes are known, as Keras has a functional model's
        weights from its construction (model.trainable_variables right after Model(...)); a
        model of unknown shapes stays without weights.

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input(shape=(3,))
            >>> model = kilnet.Model(inputs, kilnet.layers.Dense(2)(inputs))
            >>> model.build_if_shapes_known()
            >>> model.built, kilnet.Sequential([kilnet.layers.Dense(2)]).built
            (True, False)
        """
        if not self.built and not self.__dict__.get("_making_weights") and (
                self.is_functional or self.build_shape is not None):
            object.__setattr__(self, "_making_weights", True)
            try:
                self.build()
            finally:
                object.__setattr__(self, "_making_weights", False)
        elif not self.is_functional:
            # a subclassed model holding models of known shapes (keras.io's VAE, GANs,
            # Distiller; ddim's clone_model copy that its call never runs, built or not
            # itself): Keras has their weights from their construction
            for sub in self._sublayers:
                if isinstance(sub, Model) and not sub.built:
                    sub.build_if_shapes_known()

    def _weights_held_by_sub_layers(self) -> bool:
        """A subclassed model not built yet whose weights all live in built sub-layers (its
        sub-models): its weights can be read and set before its first call, as in Keras."""
        return (not self.is_functional and not self._trainable_vars
                and not self._non_trainable_vars and bool(self._sublayers)
                and all(sub.built for sub in self._sublayers))

    @property
    def weights(self) -> list:
        """Every weight (Variables) in Keras's order, the model built first where its input
        shapes are known."""
        self.build_if_shapes_known()
        return super().weights

    @property
    def trainable_weights(self) -> list:
        """The trained weights (Variables), the model built first where its input shapes
        are known."""
        self.build_if_shapes_known()
        return super().trainable_weights

    @property
    def variables(self) -> list:
        """Every variable (the weights and the SeedGenerator states, Layer.variables), the
        model built first where its input shapes are known."""
        self.build_if_shapes_known()
        return super().variables

    trainable_variables = trainable_weights

    def _build_if_inputs_known(self):
        if not self.built and (self.is_functional or self.build_shape is not None):
            self.build()
        if not self.built:
            self.build_if_shapes_known()

    def get_weights(self) -> list:
        """The weights as NumPy arrays, in Keras's order; [] for a model not built yet whose
        input shapes are unknown (a `Sequential([Dense(1)])` that fit builds later), as Keras.

        Example:
            >>> import kilnet
            >>> kilnet.Sequential([kilnet.layers.Dense(1)]).get_weights()
            []
        """
        self._build_if_inputs_known()
        return super().get_weights()

    def set_weights(self, weights) -> None:
        self.require_built()
        super().set_weights(weights)

    def count_params(self) -> int:
        self.require_built()
        return sum(int(np.prod(v.shape)) for v in self.weights)

    def reset_states(self) -> None:
        """Keras 2's `model.reset_states()`: every stateful layer's states (at any depth)
        back to zeros. Keras 3 keeps only each layer's `reset_state()`; kilnet keeps both.

        Example:
            >>> import numpy as np, kilnet
            >>> model = kilnet.Sequential([kilnet.Input(batch_shape=(2, 3, 1)),
            ...                            kilnet.layers.SimpleRNN(2, stateful=True)])
            >>> first = model.predict(np.ones((2, 3, 1)), verbose=0)
            >>> model.reset_states()
            >>> bool(np.allclose(model.predict(np.ones((2, 3, 1)), verbose=0), first))
            True
        """
        for _, _, variable in self.carried_paths():
            variable.assign(np.zeros(variable.shape, variable.dtype))

    @property
    def run_eagerly(self) -> bool:
        """Keras's setting (compile(run_eagerly=...), or set at any time; read at each call):
        when True, fit, evaluate and predict (and train_on_batch, test_on_batch,
        predict_on_batch) run each batch's step as plain Python on concrete arrays, not as
        a compiled XLA program, so that a print in your train_step, test_step, predict_step
        or call shows each step's values, a Python counter counts steps, an exception points
        at your line, and `float()` of a value works outside `jax.grad` (inside the
        differentiated loss, as in Keras on JAX, values are JAX's gradient tracers: a print
        shows them as `GradTracer(primal=...)`). Everything else is as compiled: callbacks
        around every batch, metrics, validation, the steps' dropout keys, the non-finite
        guard (checked at each step). It is slow, many times slower than compiled, as in
        Keras: use it to debug, not to train.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> from kilnet import ops
            >>> class Shown(kilnet.Sequential):
            ...     def test_step(self, state, data):
            ...         x, y = data
            ...         print("batch mean %.2f" % ops.mean(x))   # concrete: no tracer
            ...         return {"seen": ops.mean(x)}, state
            >>> model = Shown([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.run_eagerly
            False
            >>> model.compile(loss="mse", run_eagerly=True)
            >>> model.evaluate(np.array([[1.0, 1], [3, 3]]), np.zeros((2, 1)), batch_size=1,
            ...                verbose=0)
            batch mean 1.00
            batch mean 3.00
            3.0
        """
        return self.__dict__.get("_run_eagerly", False)

    @run_eagerly.setter
    def run_eagerly(self, value) -> None:
        set_untracked(self, "_run_eagerly", bool(value))

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Quantize the model's weights in place, as Keras's post-training quantization
        (`model.quantize("int8")`): each Dense, EinsumDense, Embedding, ReversibleEmbedding
        and attention projection, at any depth, gets an int8 kernel (table) with a float32
        scale per output channel (row), and quantizes its inputs at each call (abs-max per
        slice), with Keras's numbers; its dtype policy becomes "int8_from_<policy>". Other
        layers keep their float weights (a warning names each one that has weights). The
        model must be built. Saving keeps the quantization (.keras, .kilnet, weights files).

        Args:
            mode: "int8", or "int4" (Keras's weight-only int4 of Dense, EinsumDense, the
                attention projections and Embedding: packed int4 kernels in groups of 128
                rows with a scale and zero point each; kilnet.layers._int4). Keras's "float8", "gptq"
                and "awq" raise NotImplementedError naming the supported modes.
            config: None (Keras's default configuration of the mode), an
                Int8QuantizationConfig, or an Int4QuantizationConfig (its `block_size`:
                None or -1 for one scale per output channel).
            filters: which layers to quantize: a regex searched in each layer's name, a
                list of them, or a function of the layer returning True; None: all.
            type_check: False quantizes subclasses of those layers too (Keras's keyword).

        A compiled model keeps evaluating and predicting with the int8 weights; to train
        again (the float weights left, biases and normalizations, and the layers before a
        quantized one, through its dequantized kernel), compile() again first, as Keras
        requires: its optimizer was made for the float kernels.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(4),
            ...                            kilnet.layers.Dense(1)])
            >>> model.build(seed=0)
            >>> x = np.linspace(-1, 1, 6, dtype="float32").reshape(2, 3)
            >>> before = model.predict(x, verbose=0)
            >>> model.quantize("int8")
            >>> [(w.name, str(w.dtype)) for w in model.layers[0].weights]
            [('bias', 'float32'), ('kernel', 'int8'), ('kernel_scale', 'float32')]
            >>> bool(np.allclose(model.predict(x, verbose=0), before, atol=0.02))
            True
        """
        from kilnet.layers import _int8

        type_check = kwargs.pop("type_check", True)
        if kwargs:
            raise ValueError(f"Unrecognized keyword arguments passed to {type(self).__name__}."
                             f"quantize: {kwargs}. It takes mode, config, filters and "
                             "type_check.")
        mode = _int8.check_mode(mode, config, what="model.quantize")
        _int8.check_filters(filters)
        self.build_if_shapes_known()
        _int8.check_quantizable(self, mode)
        chosen = [layer for layer in _leaf_layers(self) if _int8.selected(layer, filters)]
        targets = [layer for layer in chosen if _int8.quantizes(layer, type_check)]
        for layer in targets:
            _int8.check_quantizable(layer, mode)
        for layer in chosen:
            if layer not in targets and layer.weights:
                warnings.warn(f"Layer {type(layer).__name__} does not have a `quantize` method "
                              f"implemented: {layer.name!r} keeps its float weights.",
                              stacklevel=2)
        if not targets:
            return
        if self.compiled is not None:   # its state holds the float kernels
            self.compiled.weights_replaced("model.quantize(...)")
        for layer in targets:
            try:
                layer.quantize(mode, type_check=type_check, config=config)
            except NotImplementedError as error:   # a quantize of yours that declines
                warnings.warn(str(error), stacklevel=2)

    @property
    def jit_compile(self) -> bool:
        """Keras's setting as its JAX backend resolves it at compile() (False when compiled
        with run_eagerly=True or jit_compile=False, else True). Differs: kilnet compiles its
        programs whatever this says, and runs eagerly only with run_eagerly=True. On JAX
        every operation is XLA's either way; jit_compile=False is mostly passed for other
        backends (TensorFlow's XLA lacks some operations), and an uncompiled step is many
        times slower, so kilnet leaves that to run_eagerly, Keras's setting for debugging."""
        return self.__dict__.get("_jit_compile", True)

    def trainable_count(self) -> int:
        self.require_built()
        return sum(int(np.prod(v.shape)) for v in self.trainable_weights)

    # -- the Keras workflow ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, *, loss_weights=None,
                weighted_metrics=None, on_nonfinite="stop", distribution=None,
                steps_per_execution=None, **unsupported):
        """Build the training, evaluation and prediction programs (see kilnet.trainer.Trainer).

        loss: one loss for every output, or a list / dict (by output name) of them.
        weighted_metrics: metrics weighted by fit's sample_weight / class_weight (the metrics
            in `metrics` are not), as Keras.
        distribution: kilnet.distribution.DataParallel() to split each batch over devices.
        steps_per_execution: the most training steps one compiled chunk runs (kilnet sizes
            chunks by time, about 0.5 s; this caps them), so batch hooks fire at least every
            N steps, as Keras documents it.
        """
        from kilnet.trainer import Trainer

        _reject_unsupported("compile", unsupported, ("jit_compile", "run_eagerly"))
        self.run_eagerly = bool(unsupported.get("run_eagerly", False))
        jit = unsupported.get("jit_compile", "auto")   # Keras's resolution of it, recorded
        set_untracked(self, "_jit_compile", not self.run_eagerly and (jit == "auto" or
                                                                      bool(jit)))
        if steps_per_execution is not None and (
                isinstance(steps_per_execution, bool) or not isinstance(steps_per_execution, int)
                or steps_per_execution < 1):
            raise ValueError("steps_per_execution must be a positive integer (the most steps one "
                             f"compiled chunk runs). Received: steps_per_execution="
                             f"{steps_per_execution!r}")
        loss, loss_weights, metrics, weighted_metrics = self._kept_from_last_compile(
            loss, loss_weights, metrics, weighted_metrics)
        # what `model.optimizer = ...` compiles again with (its setter)
        set_untracked(self, "_compile_arguments", dict(
            loss=loss, metrics=metrics, loss_weights=loss_weights,
            weighted_metrics=weighted_metrics, on_nonfinite=on_nonfinite,
            distribution=distribution, steps_per_execution=steps_per_execution, **unsupported))
        self.__dict__.pop("_optimizer_before_compile", None)
        if self.compiled is not None:
            self.compiled.release_variables()
        self.compiled = Trainer(self, optimizer=optimizer, loss=loss, metrics=metrics,
                                loss_weights=loss_weights, weighted_metrics=weighted_metrics,
                                on_nonfinite=on_nonfinite,
                                distribution=distribution)
        self.compiled.steps_per_execution = steps_per_execution
        self.compiled.prepare()
        if loss is not None:
            self.loss = loss

    def _kept_from_last_compile(self, loss, loss_weights, metrics, weighted_metrics):
        """compile()'s losses and metrics, those of the last compile where this one gives none,
        as Keras's compile keeps them: compiling again with only a new optimizer (fine-tuning
        at a lower rate) trains on the same loss and reports the same metrics."""
        last = self.__dict__.get("_compile_arguments") if self.compiled is not None else None
        if last is None:
            return loss, loss_weights, metrics, weighted_metrics
        if loss is None:
            loss, loss_weights = last["loss"], last["loss_weights"]
        if metrics is None and weighted_metrics is None:
            metrics, weighted_metrics = last["metrics"], last["weighted_metrics"]
        return loss, loss_weights, metrics, weighted_metrics

    def get_compile_config(self):
        """The arguments of the last compile() as data (Keras's): the optimizer's and losses'
        configurations, the metrics; {} before compile(), as Keras's. `compile_from_config`
        compiles a model again from it; clone_model and .kilnet files use it.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
            >>> model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse")
            >>> twin = kilnet.models.clone_model(model)   # compiled as model is
            >>> twin.compile_from_config(model.get_compile_config())
            >>> type(twin.optimizer).__name__, float(twin.optimizer.learning_rate)
            ('SGD', 0.1)
        """
        from kilnet import saving
        if not self.is_compiled:
            return {}
        return saving.compile_config(self.compiled)

    def compile_from_config(self, config) -> None:
        """compile() from what `get_compile_config` returned (Keras's), with a new optimizer
        of the same settings; an empty config compiles with compile()'s defaults, as Keras's
        does."""
        from kilnet import saving
        if config == {}:
            self.compile()
            return
        saving.compile_from_config(self, config)

    @property
    def keeps_own_compile_config(self) -> bool:
        """Whether the model's class overrides get_compile_config or compile_from_config
        (Keras's hooks for a compile() of its own): model files then keep what yours returns
        and load through yours.

        Example:
            >>> import kilnet
            >>> kilnet.Sequential().keeps_own_compile_config
            False
        """
        cls = type(self)
        return (cls.get_compile_config is not Model.get_compile_config
                or cls.compile_from_config is not Model.compile_from_config)

    @property
    def keras_class_name(self) -> str:
        """"Functional" for `kilnet.Model(inputs, outputs)` (Keras's class of such models),
        else the class's own name.

        Example:
            >>> import kilnet
            >>> x = kilnet.Input(shape=(2,))
            >>> kilnet.Model(x, kilnet.layers.Dense(1)(x)).keras_class_name
            'Functional'
        """
        if type(self) is Model and self.is_functional:
            return "Functional"
        return super().keras_class_name

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The training loss of a batch, as Keras's `Model.compute_loss`: override it to train
        on your own loss (it runs inside the compiled step, so write it with kilnet.ops).

        The default is the compiled loss(es), weighted by `sample_weight` as Keras weighs
        them: sum(loss * weight) over the batch's samples (or values, for weights per token),
        divided by their number (Keras's "sum_over_batch_size"); `y` and `sample_weight` as
        a train_step of yours got them (in the list, tuple or dict fit was given; one weights
        array for all outputs, or one per output). When fit calls an override of yours, `y`
        holds the labels and `sample_weight` fit's sample weights with 0 for the padding of a
        last partial batch (1 for each real sample without sample weights): weight your
        per-sample losses with it. add_loss() terms are added by kilnet after this method,
        as Keras adds them.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> from kilnet import ops
            >>> class MeanAbs(kilnet.Sequential):
            ...     def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
            ...                      training=True):
            ...         per_sample = ops.mean(ops.abs(y - y_pred), axis=-1)
            ...         return ops.sum(per_sample * sample_weight) / ops.sum(sample_weight)
            >>> model = MeanAbs([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> logs = model.evaluate(np.ones((4, 2)), np.zeros((4, 1)), verbose=0)
        """
        objective = self.require_compiled().objective
        # y and sample_weight as a train_step of yours got them (in the list, tuple or dict
        # fit was given) or as kilnet's programs carry them
        y = objective.with_sample_weight(structure.program_labels(objective, y), sample_weight)
        per_sample, parts = objective.per_sample_losses(y, self.output_list(y_pred))
        # Keras's compiled loss updates each output's loss tracker when it runs
        _keras_steps.record_output_losses(self, parts)
        return _scope.mean_over_real_samples(per_sample)

    def recording_output_losses(self):
        """A context that collects, in the list it yields, each output's batch loss
        ({"a_loss": ...}) each time the default compute_loss runs inside it: the compiled
        steps log them from it under a compute_loss of yours that calls
        `super().compute_loss(...)`, as Keras's compiled loss tracks them
        (kilnet.models._keras_steps.recording_output_losses).

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> x = kilnet.Input((2,))
            >>> two = kilnet.Model(x, {"p": kilnet.layers.Dense(1)(x),
            ...                        "q": kilnet.layers.Dense(1)(x)})
            >>> two.compile(loss={"p": "mae", "q": "mse"})
            >>> zeros = np.zeros((1, 1))
            >>> with two.recording_output_losses() as recorded:
            ...     _ = two.compute_loss(y={"p": zeros, "q": zeros},
            ...                          y_pred={"p": zeros + 2, "q": zeros + 3})
            >>> {name: float(value) for name, value in recorded[0].items()}
            {'p_loss': 2.0, 'q_loss': 9.0}
        """
        return _keras_steps.recording_output_losses(self)

    def architecture(self) -> dict:
        """The model's configuration for records (checkpoints, run folders, logs): get_config(),
        or, for a subclassed model without one, its class and weight shapes by path."""
        try:
            return self.get_config()
        except NotImplementedError:
            return {"class_name": type(self).__name__,
                    "weights": [["/".join(path), list(v.shape)]
                                for path, _, v in self.variable_paths()]}

    @property
    def defines_call(self) -> bool:
        """Whether the model computes outputs from inputs: a functional graph, a Sequential,
        or a call() (or kilnet's apply) of its class. A subclassed model without one trains
        its sub-networks in its own train_step / test_step and is never called (keras.io's
        ddim DiffusionModel): it has no inputs or outputs, its steps get every batch as
        given, and once you have built its sub-networks you say it is built
        (`model.built = True`), as Keras asks.

        Example:
            >>> import kilnet
            >>> class Trainer(kilnet.Model):
            ...     def train_step(self, state, data):
            ...         return {}, state
            >>> Trainer().defines_call, kilnet.Sequential().defines_call
            (False, True)
        """
        return (self.is_functional or type(self).call is not Layer.call
                or type(self).apply is not Model.apply)

    def check_buildable(self) -> None:
        """Refuse to build a model without a call() of its own (defines_call), which fit,
        evaluate and predict would build by calling it, as Keras's do: say how to build it."""
        if not self.built and not self.defines_call:
            raise RuntimeError(
                f"Unable to build the model {self.name!r}: {type(self).__name__} defines no "
                "call(), so fit, evaluate and predict cannot build it by calling it on a "
                "batch. Build what it holds (call its sub-networks once, or give them "
                "inputs) and then set model.built = True, as Keras asks; or define call(). "
                "Received: an unbuilt model without call()")

    @property
    def overrides_train_step(self) -> bool:
        """The model defines train_step(self, state, data) in Keras's JAX form."""
        return getattr(type(self), "train_step", None) is not None

    @property
    def overrides_test_step(self) -> bool:
        """The model defines test_step(self, state, data) in Keras's JAX form (evaluate and
        fit's validation run it)."""
        return getattr(type(self), "test_step", None) is not None

    @property
    def overridden_metric_hooks(self) -> list:
        """The metric hooks of Keras's steps (compute_metrics, get_metrics_result) the model's
        class overrides: with any, and no train_step / test_step of its own, the model runs
        Keras's default steps, which call them (kilnet's built-in steps would not log what
        they return).

        Example:
            >>> import kilnet
            >>> class Logged(kilnet.Model):
            ...     def compute_metrics(self, x, y, y_pred, sample_weight=None):
            ...         return super().compute_metrics(x, y, y_pred, sample_weight)
            >>> Logged().overridden_metric_hooks, kilnet.Model().overridden_metric_hooks
            (['compute_metrics'], [])
        """
        return _metric_hooks_overridden(type(self))

    @property
    def trains_with_keras_default_step(self) -> bool:
        """Whether fit runs Keras's default train_step (its JAX form) rather than kilnet's
        built-in step or yours: so for a class overriding a metric hook
        (overridden_metric_hooks) without a train_step of its own.

        Example:
            >>> import kilnet
            >>> class Logged(kilnet.Model):
            ...     def get_metrics_result(self):
            ...         return super().get_metrics_result()
            >>> [model.trains_with_keras_default_step for model in (Logged(), kilnet.Model())]
            [True, False]
        """
        return getattr(type(self), "train_step", None) is _keras_steps.keras_train_step

    @property
    def overrides_predict_step(self) -> bool:
        """The model defines predict_step(self, state, data) in Keras's JAX form."""
        return getattr(type(self), "predict_step", None) is not None

    @property
    def metrics(self) -> list:
        """Keras's model.metrics: after compile(), a loss tracker (kilnet.metrics.Mean named
        "loss") and the compiled metrics together as one metric named "compile_metrics"
        (its result a dict by log name, as Keras's); then, compiled or not, the Metric
        objects the model keeps as attributes (`self.tracker = kilnet.metrics.Mean(name="l")`
        in `__init__`) and those its layers keep, in Keras's order. A custom train_step may override it with
        its own list. The built-in steps log an attribute metric's result without updating
        it (Keras's); your own steps update it through `metrics_variables`.

        Example:
            >>> import kilnet
            >>> class Tracked(kilnet.Model):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.dense = kilnet.layers.Dense(1)
            ...         self.tracker = kilnet.metrics.Mean(name="l")
            ...     def call(self, x):
            ...         return self.dense(x)
            >>> model = Tracked()
            >>> [metric.name for metric in model.metrics]
            ['l']
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> [metric.name for metric in model.metrics], len(model.metrics_variables)
            (['loss', 'l'], 4)
        """
        compiled = self.compiled.keras_metrics() if self.is_compiled else []
        return compiled + _held_metrics_in_keras_order(self)

    def compute_metrics(self, x, y, y_pred, sample_weight=None) -> dict:
        """Update the compiled metrics with a batch's labels and predictions and return every
        metric's result (`get_metrics_result`), as Keras's `Model.compute_metrics`. Override
        it (calling `super().compute_metrics(...)`) to update metrics of your own or add
        entries: fit and evaluate then log what it returns, as Keras's do.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"])
            >>> results = model.compute_metrics(None, np.zeros((2, 1)), np.ones((2, 1)))
            >>> {name: float(value) for name, value in results.items()}
            {'loss': 0.0, 'mae': 1.0}
        """
        del x   # the default does not use it, as Keras's
        # (the loss trackers are updated by the steps)
        container = self.compiled.compiled_metrics_container() if self.is_compiled else None
        if container is not None:
            container.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict:
        """Every metric's result by name (a metric whose result is a dict, the compiled
        metrics', gives its entries), as Keras's `Model.get_metrics_result`. Override it to
        rename or add entries: fit and evaluate then log what it returns, as Keras's do.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((2,)), kilnet.layers.Dense(1)])
            >>> model.compile(loss="mse", metrics=["mae"])
            >>> sorted(model.get_metrics_result())
            ['loss', 'mae']
        """
        results = {}
        for metric in self.metrics:
            result = metric.result()
            if isinstance(result, dict):
                results.update(result)
            else:
                results[metric.name] = result
        return results

    def metrics_beyond_compiled(self) -> list:
        """The entries of `metrics` that compile() did not make (the metrics kept as
        attributes, or those of a `metrics` override of yours): the built-in steps log
        their results and leave their state as it starts, as Keras's do."""
        if type(self).metrics is Model.metrics:   # no override: read at every chunk's logs
            return _held_metrics_in_keras_order(self)
        made = ({id(metric) for metric in self.compiled.keras_metrics()}
                if self.is_compiled else set())
        return [metric for metric in self.metrics if id(metric) not in made]

    def reset_metrics(self):
        """Reset the state of every metric in `metrics`, as Keras's `reset_metrics`."""
        for metric in self.metrics:
            metric.reset_state()

    @property
    def metrics_names(self) -> list:
        """The names of evaluate()'s results, in the order it lists them (Keras's order: the
        losses, then the compiled metrics, then the metrics kept as attributes), so
        `dict(zip(model.metrics_names, model.evaluate(...)))` pairs them. Keras 3 names its
        compiled metrics together "compile_metrics" here."""
        objective = self.compiled.objective if self.is_compiled else None
        if objective is None or self.overrides_test_step:
            return [metric.name for metric in self.metrics]
        return objective.result_names + [metric.name for metric in
                                         self.metrics_beyond_compiled()]

    def stateless_call(self, trainable_variables, non_trainable_variables, *args, **kwargs):
        """Keras's JAX stateless_call (kilnet.layers.Layer.stateless_call), on a model that
        has its weights: in a custom train_step, or in a training loop of your own with
        `jax.jit` and no compile()."""
        self.require_built()
        return super().stateless_call(trainable_variables, non_trainable_variables, *args,
                                      **kwargs)

    def stateless_compute_loss(self, trainable_variables, non_trainable_variables,
                               metrics_variables, x=None, y=None, y_pred=None,
                               sample_weight=None, training=True):
        """Keras's JAX stateless_compute_loss, for a custom train_step / test_step: (loss,
        (trainable, non-trainable, metrics variables)), the loss `compute_loss`'s (the
        compiled loss, or your override). The variables come back as given: kilnet's
        compute_loss reads the step's weights from the scope and updates no metric.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input(shape=(2,)), kilnet.layers.Dense(1)])
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> loss, _ = model.stateless_compute_loss([], [], [], y=np.zeros((2, 1)),
            ...                                        y_pred=np.ones((2, 1)))
            >>> float(loss)
            1.0
        """
        # a compute_loss of yours that reads a weight (`self.dense.kernel`) reads these values,
        # so the step's gradients reach it, as Keras's stateless scope does
        bindings = {}
        for variables, values in ((self.trainable_variables, trainable_variables),
                                  (self.non_trainable_variables, non_trainable_variables)):
            if len(variables) == len(values):
                bindings.update((id(v), value) for v, value in zip(variables, values))
        with _scope.opened(_scope.Scope(bindings=bindings)):
            loss = self.compute_loss_as_keras_calls_it(x, y, y_pred, sample_weight, training)
        return loss, (trainable_variables, non_trainable_variables, metrics_variables)

    @property
    def overrides_compute_loss(self) -> bool:
        return type(self).compute_loss is not Model.compute_loss

    def compute_loss_as_keras_calls_it(self, x, y, y_pred, sample_weight, training):
        """`compute_loss`, given `training` only if it takes it, as Keras calls it: overrides
        written for Keras's earlier signature (`allow_empty=False` in its place, as keras.io's
        knowledge-distillation example writes it) work too."""
        parameters = inspect.signature(self.compute_loss).parameters.values()
        takes_training = any(p.name == "training" or p.kind is p.VAR_KEYWORD
                             for p in parameters)
        extra = {"training": training} if takes_training else {}
        return self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, **extra)

    @property
    def is_compiled(self) -> bool:
        """Whether compile() ran, as Keras's `model.compiled` (kilnet's `model.compiled` is
        the Trainer it made). `predict` on a model never compiled runs without compiling it:
        fit and evaluate still ask for compile(), and files hold no training setup.

        Example:
            >>> import kilnet, numpy as np
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
            >>> _ = model.predict(np.ones((2, 3), "float32"), verbose=0)
            >>> model.is_compiled, model.optimizer
            (False, None)
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> model.is_compiled
            True
        """
        return self.compiled is not None and not self.compiled.for_prediction_only

    def require_compiled(self):
        """The Trainer compile() made (kilnet.trainer), or a RuntimeError saying to compile."""
        if not self.is_compiled:
            raise RuntimeError(
                "The model must be compiled before training or evaluation: call "
                "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
                "metrics=['accuracy']) first.")
        return self.compiled

    @property
    def compile_report(self):
        return None if self.compiled is None else self.compiled.report

    @property
    def optimizer(self):
        """The compiled optimizer (None before compile()). Setting it, as Keras's
        `model.optimizer = ...` (a compile() of yours that sets it after super().compile(),
        keras.io's Zero-DCE), compiles the model again with the same other arguments and the
        new optimizer, whose state starts afresh; before compile() it is only kept, and
        compile() replaces it, as in Keras.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
            >>> model.compile(optimizer="sgd", loss="mse")
            >>> model.optimizer = kilnet.optimizers.Adam(learning_rate=0.01)
            >>> type(model.optimizer).__name__, model.loss
            ('Adam', 'mse')
        """
        if not self.is_compiled:
            return self.__dict__.get("_optimizer_before_compile")
        return self.compiled.optimizer

    @optimizer.setter
    def optimizer(self, value):
        if not self.is_compiled:
            set_untracked(self, "_optimizer_before_compile", value)
            return
        # Model.compile, not type(self).compile: a compile() of yours that sets the optimizer
        # would call itself
        Model.compile(self, value, **self.__dict__["_compile_arguments"])

    @property
    def loss(self):
        """The `loss` compile() was given, as given (Keras's `model.loss`): a name stays a
        name. None before compile(); a compile() without a loss keeps the previous one, as
        in Keras. Setting it changes only what it reads: the compiled loss stays.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(1)])
            >>> model.loss is None
            True
            >>> model.compile(optimizer="adam", loss="mse")
            >>> model.loss
            'mse'
        """
        return self.__dict__.get("_compile_loss")

    @loss.setter
    def loss(self, value):
        set_untracked(self, "_compile_loss", value)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            seed=None, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, sample_weight=None, class_weight=None, **unsupported):
        """Train for `epochs` epochs; returns a History. Keras's arguments: verbose 0/1/2/"auto"/
        True/False; validation_freq (every n epochs, or a list of epochs), validation_steps,
        validation_batch_size; sample_weight (one weight per sample) or class_weight ({class:
        weight}) weighting the loss as Keras does; callbacks whose batch hooks fire once per
        compiled chunk (see kilnet.fit.fit). A generator that runs out early warns and stops
        training."""
        _reject_unsupported("fit", unsupported, ())
        from kilnet.fit import fit
        return fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                   callbacks=callbacks, validation_split=validation_split,
                   validation_data=validation_data, shuffle=shuffle,
                   initial_epoch=initial_epoch, seed=seed, steps_per_epoch=steps_per_epoch,
                   validation_steps=validation_steps,
                   validation_batch_size=validation_batch_size,
                   validation_freq=validation_freq, sample_weight=sample_weight,
                   class_weight=class_weight)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", return_dict=False,
                 steps=None, callbacks=None, sample_weight=None, **unsupported):
        """The loss and metrics on (x, y): a list in Keras's order (one value: a float), or a
        dict with return_dict=True. callbacks get on_test_begin / on_test_batch_* /
        on_test_end, as in Keras (see kilnet.fit.evaluate). sample_weight weighs the loss."""
        _reject_unsupported("evaluate", unsupported, ())
        from kilnet.fit import evaluate
        return evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                        return_dict=return_dict, steps=steps, callbacks=callbacks,
                        sample_weight=sample_weight)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None,
                **unsupported):
        """The model's outputs for x, as NumPy arrays. callbacks get on_predict_begin /
        on_predict_batch_* / on_predict_end, as in Keras (see kilnet.fit.predict)."""
        _reject_unsupported("predict", unsupported, ())
        from kilnet.fit import predict
        return predict(self, x, batch_size=batch_size, verbose=verbose, steps=steps,
                       callbacks=callbacks)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One training step on one batch (Keras's): this batch's loss (a float), or with
        metrics a list in Keras's order, or a dict with return_dict=True. The step runs
        fit's compiled program, compiled once per batch size (kilnet.fit.train_on_batch);
        `model.history` is left as the last fit() made it.

        Example:
            >>> import numpy as np
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(
            ...     1, kernel_initializer="ones")])
            >>> model.compile(optimizer=kilnet.optimizers.SGD(0.1), loss="mse", metrics=["mae"])
            >>> model.train_on_batch(np.ones((4, 3)), np.zeros((4, 1)))
            [9.0, 3.0]
            >>> round(model.test_on_batch(np.ones((4, 3)), np.zeros((4, 1)), return_dict=True)
            ...       ["mae"], 4)
            0.6
            >>> [round(float(v), 4) for v in model.predict_on_batch(np.ones((1, 3)))[0]]
            [0.6]
        """
        from kilnet.fit import keras_results, train_on_batch
        logs = train_on_batch(self, x, y, _batch_length(x, "x"), sample_weight=sample_weight,
                              class_weight=class_weight)
        return keras_results(self, logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss and metrics on one batch (Keras's), as evaluate gives them."""
        from kilnet.fit import evaluate
        return evaluate(self, x, y, batch_size=_batch_length(x, "x"), verbose=0,
                        sample_weight=sample_weight, return_dict=return_dict, one_batch=True)

    def predict_on_batch(self, x):
        """The outputs for one batch (Keras's), as NumPy arrays."""
        from kilnet.fit import predict_on_batch
        return predict_on_batch(self, x, _batch_length(x, "x"))

    def summary(self, print_fn=None, **kwargs) -> None:
        """Print the layers, their output shapes and parameter counts (and compile report);
        Keras's options (line_length, expand_nested, show_trainable, ...) as kilnet.summary.
        Without print_fn it goes where progress goes (logged when interactive logging is
        off, kilnet.config)."""
        from kilnet.progress import emit
        from kilnet.summary import model_summary
        (print_fn or emit)(model_summary(self, **kwargs))

    # -- configuration and files -----------------------------------------------------------------
    def get_config(self) -> dict:
        """The model as plain data: a functional model's graph (Keras 3's layout: "layers"
        with their "inbound_nodes", "input_layers", "output_layers"), or a subclassed model's
        {"name", "trainable", "dtype"}, which its own get_config extends with its arguments."""
        from kilnet.models import _config
        return _config.model_config(self)

    get_config.reads_recorded_arguments = True   # Layer.__new__ records them for it

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        """A new model from get_config()'s dict, with new weights.

        A functional graph or a Sequential is rebuilt through the allowlists (kilnet's layers,
        classes registered with kilnet.saving.register_serializable, `custom_objects`); a
        subclassed model is made with `cls(**config)`, as in Keras.

        Args:
            config: what get_config() returned.
            custom_objects: {"Name": cls} for layer classes that are not registered.

        Returns:
            The model (unbuilt).

        Example:
            >>> import kilnet
            >>> inputs = kilnet.Input(shape=(3,))
            >>> model = kilnet.Model(inputs, kilnet.layers.Dense(2, name="out")(inputs))
            >>> copy = kilnet.Model.from_config(model.get_config())
            >>> copy.get_layer("out").units, copy is model
            (2, False)
        """
        from kilnet.models import _config
        return _config.model_from_config(cls, config, custom_objects=custom_objects)

    def to_json(self, **kwargs) -> str:
        """The architecture as JSON (no weights), for kilnet.models.model_from_json.

        Args:
            **kwargs: passed to json.dumps (e.g. indent=2).

        Returns:
            A JSON string: {"class_name", "config"} (and "build_config" for a built subclassed
            model).

        Example:
            >>> import json
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input(shape=(3,)), kilnet.layers.Dense(2)])
            >>> json.loads(model.to_json())["class_name"]
            'Sequential'
        """
        import json

        from kilnet import _safefile
        from kilnet.models import _config
        kwargs.setdefault("default", _safefile.json_default)  # NumPy scalars in configs
        return json.dumps(_config.serialize(self), **kwargs)

    def save(self, filepath, overwrite=True, include_optimizer=True) -> None:
        """Write the architecture, weights (keyed by layer path), compile configuration and
        optimizer state to one safetensors file (suggested extension .kilnet), atomically."""
        from kilnet import distribution
        from kilnet.saving import save_model
        if not distribution.is_chief():
            return  # several processes: process 0 writes the file (kilnet.distribution)
        save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer)

    def save_weights(self, filepath, overwrite=True) -> None:
        """Write the weights (keyed by layer path) to a safetensors file, atomically."""
        from kilnet import distribution
        from kilnet.saving import save_weights
        if not distribution.is_chief():
            return
        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath, skip_mismatch=False) -> None:
        """Set the weights from a file written by save_weights or save: by layer path, or by
        Keras's weight order (types and shapes checked) when the layer names differ. With
        `skip_mismatch=True` (Keras's), the layers the file has no weights of the same shapes
        for keep theirs, named in a warning (see kilnet.saving.load_weights)."""
        from kilnet.saving import load_weights
        load_weights(self, filepath, skip_mismatch=skip_mismatch)


def _held_metrics_in_keras_order(model) -> list:
    """The metrics a model keeps as attributes, then its layers' (`Layer.metrics`), visited
    as Keras's Trainer visits them: each sub-layer before its siblings, the children of one
    layer taken in reverse, nested models skipped (their sub-layers not). Keras lists a
    metric of a layer inside a layer twice (once per level): so does this, as
    `metrics_variables`' positions depend on it."""
    found = list(model.__dict__.get("_held_metrics", []))
    seen, waiting = set(), collections.deque(model.sublayers)
    while waiting:
        layer = waiting.popleft()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        waiting.extendleft(layer.sublayers)
        if not isinstance(layer, Model):
            found.extend(layer.metrics)
    return found


def _leaf_layers(model) -> list:
    """The layers without sub-layers at any depth below `model`, each once, in order (the
    layers Keras's quantize walks: a Dense inside a layer of yours, the projections of an
    attention layer)."""
    leaves, seen, stack = [], set(), list(reversed(model.sublayers))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.sublayers:
            stack.extend(reversed(layer.sublayers))
        else:
            leaves.append(layer)
    return leaves


def _batch_length(data, argument: str) -> int:
    """The number of samples in one batch of arrays (a list or dict of them too)."""
    if isinstance(data, dict) and data:   # by input name: the first input's samples
        return _batch_length(data[sorted(data)[0]], argument)
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], (str, bytes)):
        return len(data)   # a batch of strings for a string Input
    leaves = jax.tree.leaves(data) if isinstance(data, (dict, list, tuple)) else [data]
    if not leaves or not hasattr(leaves[0], "__len__"):
        raise ValueError(f"{argument} must be a batch of arrays (samples on the first axis). "
                         f"Received: {argument}={data!r:.100}")
    return max(len(leaves[0]), 1)


def _metric_hooks_overridden(cls) -> list:
    """The metric hooks of Keras's steps a model class overrides (Model.overridden_metric_hooks)."""
    return [hook for hook in ("compute_metrics", "get_metrics_result")
            if getattr(cls, hook) is not getattr(Model, hook)]


def _keras_steps_for_metric_hooks(cls) -> None:
    """A model class overriding compute_metrics or get_metrics_result, without a train_step /
    test_step of its own, runs Keras's default steps, which call them (kilnet's built-in
    steps compute the compiled metrics themselves and would not log what they return)."""
    if not _metric_hooks_overridden(cls):
        return
    if getattr(cls, "train_step", None) is None:
        cls.train_step = _keras_steps.keras_train_step
    if getattr(cls, "test_step", None) is None:
        cls.test_step = _keras_steps.keras_test_step


def _yours_inside_kilnets(build):
    """A subclassed model's own `build` (Keras's `build(self, input_shape)`, or `build(self)`
    that takes no shape): kilnet's builds (fit's, a file's, each with its seed) make the
    weights, running yours as their weight-making hook; called by you with a shape, yours
    runs as written."""
    named_shape = takes_shape(build, bound=False)

    @functools.wraps(build)
    def build_model(self, input_shape=None, *args, seed=None, **kwargs):
        if self.__dict__.get("in_build_hook"):
            return build(self, input_shape, *args, **kwargs) if named_shape else build(
                self, *args, **kwargs)
        if named_shape and input_shape is not None and seed is None:
            return build(self, input_shape, *args, **kwargs)
        if not named_shape and input_shape is None and seed is None \
                and self.build_shape is None and not self.is_functional:
            build(self, *args, **kwargs)   # nothing to build for yet, as a layer's
            return self._finish_shapeless_build()
        return self.kilnet_build(input_shape, seed=seed)

    return build_model


def _is_data(value) -> bool:
    # an array (NumPy, JAX, a framework tensor) has a dtype and a batch axis; a shape has none
    return hasattr(value, "dtype") and len(getattr(value, "shape", ())) >= 1


def holds_data(value) -> bool:
    """Whether `value` is an array or a list or dict of them (build(one_batch)), not shapes."""
    if isinstance(value, dict):
        return any(map(_is_data, value.values()))
    if isinstance(value, (list, tuple)):
        return any(map(_is_data, value))
    return _is_data(value)


def shapes_of_data(value):
    """Keras's (None, ...) shape of each array in `value` (an array, or a list or dict of
    them): build(one_batch) builds for the batch's sample shapes. A shape is left as given.

    Example:
        >>> import numpy as np
        >>> shapes_of_data(np.zeros((64, 28, 28, 1)))
        (None, 28, 28, 1)
        >>> shapes_of_data({"a": np.zeros((8, 3))}), shapes_of_data((28, 28))
        ({'a': (None, 3)}, (28, 28))
    """
    if _is_data(value):
        return (None,) + tuple(int(d) for d in value.shape[1:])
    if not holds_data(value):
        return value
    if isinstance(value, dict):
        return {key: shapes_of_data(item) for key, item in value.items()}
    return [shapes_of_data(item) for item in value]


def sample_shapes(shape):
    """(28, 28), (None, 28, 28) or a list or dict of them -> shapes without the batch axis (a
    leading None is the batch axis; a shape without one is a sample's already).

    Example:
        >>> sample_shapes((None, 28, 28)), sample_shapes({"a": (3,), "b": [None, 2]})
        ((28, 28), {'a': (3,), 'b': (2,)})
    """
    if isinstance(shape, dict):
        return {key: sample_shapes(tuple(s)) for key, s in shape.items()}
    if isinstance(shape, list) and shape and isinstance(shape[0], (list, tuple)):
        return [sample_shapes(tuple(s)) for s in shape]
    shape = tuple(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    return tuple(int(d) if d is not None else None for d in shape)


def _leading_axis_dropped(shape):
    """A shape (or a list of them) without its first axis: Keras's build((32, 28, 28, 1)),
    whose first axis is the batch, checked against a functional model's declared inputs."""
    if isinstance(shape, list):
        return [_leading_axis_dropped(s) for s in shape]
    return tuple(shape)[1:]


def keras_sample_shape(shape, declared) -> tuple:
    """The sample shape `shape` (batch axis excluded) of an input declared as `declared`,
    after Keras's Functional adjusts its rank (Model.with_declared_rank): a missing last axis
    of size 1 added, an extra one dropped; otherwise `shape` unchanged.

    Example:
        >>> keras_sample_shape((28, 28), (28, 28, 1)), keras_sample_shape((5, 1), (5,))
        ((28, 28, 1), (5,))
    """
    shape, declared = tuple(shape), tuple(declared)
    if len(shape) + 1 == len(declared) and declared[-1] == 1:
        return shape + (1,)
    if len(shape) == len(declared) + 1 and shape and shape[-1] == 1:
        return shape[:-1]
    return shape


def _widened(declared, got):
    """`declared` with None where the sample shape `got` has another length (`declared`
    itself where none has); None when the ranks differ (the shape check explains)."""
    got = tuple(got)
    if len(got) != len(declared):
        return None
    return tuple(None if d is None or d != g else d for d, g in zip(declared, got))


def _shapes_differ(declared, given) -> bool:
    """Whether data of shape `given` cannot feed inputs declared as `declared` (a None axis,
    e.g. a variable sequence length, takes any size)."""
    if isinstance(declared, list) or isinstance(given, list):
        if not (isinstance(declared, list) and isinstance(given, list)) or \
                len(declared) != len(given):
            return True
        return any(_shapes_differ(tuple(d), tuple(g)) for d, g in zip(declared, given))
    # the rank the model's call gives its inputs (Model.with_declared_rank) is what counts
    declared, given = tuple(declared), keras_sample_shape(given, declared)
    return len(declared) != len(given) or any(
        d is not None and g is not None and d != g for d, g in zip(declared, given))


def _reject_unsupported(method: str, kwargs: dict, tolerated: tuple):
    """Keras arguments we accept and ignore, and a clear error for the others."""
    unknown = sorted(set(kwargs) - set(tolerated))
    if unknown:
        raise TypeError(f"{method}() got unsupported arguments: {unknown}.")


def _nested_inputs(x, count: int) -> bool:
    """Whether x nests lists or tuples of arrays that are `count` arrays in all."""
    return (any(isinstance(item, (list, tuple)) for item in x)
            and len(jax.tree.leaves(x)) == count)


def _batch_of(tensor) -> tuple:
    """(batch size,) of a graph's symbolic tensor: None unless its Input was given one."""
    return (None,) if tensor is None else (tensor.shape[0],)


def _is_tensor(value) -> bool:
    return isinstance(value, KerasTensor)


def _abstract_value(tensor):
    """A symbolic tensor as an abstract array (unknown sizes as 1) for an abstract run."""
    if not isinstance(tensor, KerasTensor):
        return tensor
    return jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in tensor.shape),
                                jax.dtypes.canonicalize_dtype(tensor.dtype))


def _abstract_mask(tensor):
    """The abstract (batch, time) mask a symbolic tensor carries, or None."""
    if not isinstance(tensor, KerasTensor) or not tensor.has_mask:
        return None
    return jax.ShapeDtypeStruct(tuple(1 if d is None else d for d in tensor.shape[:2]), bool)
