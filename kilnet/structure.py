"""x and y as users give them (one array, a list, a dict by name) and as the compiled
programs take them: one array per model input, one label array per output that is trained.

A single input or label stays a bare array all the way to the programs (the seed job's path
does not change); several travel as a tuple, in the model's input order and the objective's
target order (kilnet.objective). A model's own train_step / test_step / predict_step gets them
back in the containers x and y were given in (`container_of`, `in_container`), as Keras hands
a step the user's list, tuple or dict.
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet import data as data_lib
from kilnet.errors import InputError


def inputs_of(model, x, argument: str = "x", own_step: bool = False) -> list:
    """x as a list with one entry per model input (names from model.input_names); for a
    model with string inputs, what its host stage computes from them (one entry per fed
    tensor, kilnet.models._host_stage). `own_step`: the model's own step reads the batch,
    so an x that is not the model's inputs is its batch, its arrays in tree order (a
    dict's by sorted key: is_step_batch)."""
    if isinstance(x, WholeBatch):
        return list(x.items)
    if is_step_batch(model, x, own_step):
        return jax.tree.leaves(x)   # a dict's by sorted key, as Keras's tree orders them
    host_stage = getattr(model, "host_stage", None)
    if host_stage is not None:
        return host_stage.fed_arrays(x, argument)
    specs = model.input_specs
    if specs is None and isinstance(x, dict) and getattr(model, "takes_keyed_inputs", False):
        return [x[key] for key in sorted(x)]   # its call takes the dict (see sample_batch)
    if specs is None or len(specs) == 1:
        if isinstance(x, dict):
            if specs is not None and len(x) == 1 and model.input_names[0] in x:
                return [x[model.input_names[0]]]
            raise InputError(f"{argument} is a dict but the model has one input"
                             + (f" named {model.input_names[0]!r}" if specs else "")
                             + f". Received: {argument} with keys {sorted(map(str, x))}")
        if (specs is not None and isinstance(x, (list, tuple)) and len(x) == 1
                and len(getattr(x[0], "shape", ())) == len(specs[0].shape) + 1):
            return [x[0]]   # [array] for a model of one input (made with inputs=[...]), as Keras
        if (specs is None and isinstance(x, (list, tuple)) and len(x) > 1
                and all(len(getattr(item, "shape", ())) >= 1 for item in x)):
            return list(x)   # a subclassed model's inputs, one array each (Keras's structure)
        return [x]
    names = model.input_names
    if isinstance(x, dict):
        return _from_dict(x, names, argument, "inputs")
    if isinstance(x, (list, tuple)) and not _looks_like_one_array(x, len(names)):
        if len(x) != len(names):
            raise InputError(f"The model has {len(names)} inputs {names}; {argument} must give "
                             f"one array for each, in a list or a dict by name. Received: a "
                             f"{type(x).__name__} of {len(x)}")
        return list(x)
    raise InputError(f"The model has {len(names)} inputs {names}; {argument} must give one "
                     f"array for each, e.g. {argument}={{{names[0]!r}: ..., {names[1]!r}: ...}}. "
                     f"Received: {type(x).__name__}")


class WholeBatch:
    """A batch from a source of batches that the model's own train_step / test_step /
    predict_step gets whole (whole_step_batch), as Keras hands it: a tuple (a list given
    becomes one, as Keras's PyDataset adapter makes it) of arrays nested in any way.
    `items` are its arrays in tree order, `treedef` its structure (container_of).

    Example:
        >>> batch = WholeBatch([(1, 2), 3])
        >>> batch.items, batch.treedef.unflatten(batch.items)
        ((1, 2, 3), ((1, 2), 3))
    """

    def __init__(self, batch):
        leaves, self.treedef = jax.tree.flatten(tuple(batch))
        self.items = tuple(leaves)


def whole_step_batch(model, batch, own_step: bool):
    """A WholeBatch of `batch` (a tuple or list from a source of batches) when the model's
    own step (`own_step`: the model overrides the step that reads it) must get it whole,
    else None. Keras's JAX trainer hands a source's batch to an overridden step as it is;
    only its default steps read it as (x, y, sample_weight). kilnet reads it so to check
    x against the model's inputs and y against the outputs, and keeps that reading where
    it fits; where it cannot, the batch is the step's own: more than 3 entries, a first
    entry that is not the model's inputs (is_step_batch: keras.io's siamese_network yields
    (anchor, positive, negative) for a 3-input network, semisupervised_simclr
    ((unlabeled, dummy labels), (labeled, labels)) for a 2-input one), arrays of different
    numbers of rows (simclr's 16 unlabeled and 8 labeled images), or any batch of a model
    without a call() of its own (Model.defines_call).

    Example:
        >>> import kilnet, numpy as np
        >>> inputs = [kilnet.Input((2,)), kilnet.Input((2,))]
        >>> model = kilnet.Model(inputs, kilnet.layers.Add()(inputs))
        >>> a, labels = np.zeros((4, 2)), np.zeros(4)
        >>> whole_step_batch(model, (a, a), True).items == (a, a)
        True
        >>> whole_step_batch(model, ((a, labels), a), True).items == (a, labels, a)
        True
        >>> whole_step_batch(model, ((a, a), a), True), whole_step_batch(model, (a, a), False)
        (None, None)
    """
    if not own_step or not isinstance(batch, (tuple, list)):
        return None
    if model.input_specs is None and defines_call(model):
        return None   # an unbuilt model is built from x as Keras reads it
    if len(batch) > 3 or is_step_batch(model, batch[0], True) or not _one_row_count(batch):
        return WholeBatch(batch)
    return None


def _one_row_count(batch) -> bool:
    """Whether the arrays of a batch have one number of rows, as (x, y, sample_weight) do."""
    return len({np.shape(a)[0] for a in jax.tree.leaves(batch) if np.ndim(a)}) <= 1


def defines_call(model) -> bool:
    """Whether the model computes outputs from inputs (Model.defines_call); anything else
    passed as a model here does."""
    return getattr(model, "defines_call", True)


def gives_inputs(model, x) -> bool:
    """Whether x gives the built model's inputs: one array for each (inputs_of), and, for
    a list or tuple, each with its input's number of sample axes (one more or fewer where
    a functional model's last axis is 1, which it adds or drops: Model.with_declared_rank).
    An array of another rank in a tuple is not an input (a batch's dummy labels).

    Example:
        >>> import kilnet, numpy as np
        >>> inputs = [kilnet.Input((2,)), kilnet.Input((2,))]
        >>> model = kilnet.Model(inputs, kilnet.layers.Add()(inputs))
        >>> a = np.zeros((4, 2))
        >>> gives_inputs(model, (a, a)), gives_inputs(model, (a, a[:, 0])), gives_inputs(model, a)
        (True, False, False)
    """
    try:
        xs = inputs_of(model, x)
    except InputError:
        return False
    if not isinstance(x, (list, tuple)):
        return True   # one array, or a dict by input name: its shapes are checked as inputs
    slack = 1 if model.is_functional else 0
    return all(abs(np.ndim(array) - 1 - len(spec.shape)) <= slack
               and (np.ndim(array) - 1 == len(spec.shape) or spec.shape[-1:] == (1,))
               for array, spec in zip(xs, model.input_specs))


def is_step_batch(model, x, own_step: bool) -> bool:
    """Whether x is a batch that the model's own train_step / test_step / predict_step
    (`own_step`: the model overrides the step that reads it) unpacks itself: a WholeBatch
    (whole_step_batch), a dict by keys of its own, not the model's input names (keras.io's
    transformer_asr reads `batch["source"]` and `batch["target"]`), any other x that is
    not the built model's inputs (gives_inputs: semisupervised_simclr validates on one
    array of images for a model of two inputs), or any x of a model without a call() of
    its own (keras.io's ddim trains its networks in its steps). Keras hands such a batch
    to the step as it is; so does kilnet, its arrays unchecked against the model's inputs.
    Without an own step x must be the model's inputs (inputs_of says how it is not).

    Example:
        >>> import kilnet
        >>> inputs = kilnet.Input((2,), name="a")
        >>> model = kilnet.Model(inputs, kilnet.layers.Dense(1)(inputs))
        >>> is_step_batch(model, {"source": 0}, True), is_step_batch(model, {"a": 0}, True)
        (True, False)
        >>> is_step_batch(model, {"source": 0}, False)
        False
    """
    if isinstance(x, WholeBatch):
        return True
    if not own_step:
        return False
    if not defines_call(model):
        return True
    if model.input_specs is None:
        return False   # an unbuilt subclassed model takes the dict itself (takes_keyed_inputs)
    if isinstance(x, dict):
        return any(name not in x for name in model.input_names)
    return not gives_inputs(model, x)


def is_step_batch_container(model, container) -> bool:
    """Whether `container` (container_of's) holds a batch that is_step_batch hands to the
    model's own step as given: a WholeBatch's or another step batch's (step_container)."""
    return container is not None and container[0] in ("whole", "tree")


def is_whole_container(container) -> bool:
    """Whether `container` (container_of's) is a WholeBatch's: the step gets it as the
    batch itself, not packed as (x, y, sample_weight)."""
    return container is not None and container[0] == "whole"


def step_container(x):
    """The container of a batch is_step_batch hands to the step as given: ("whole",
    structure) for a WholeBatch, else ("tree", structure); in_container puts the arrays
    back in that structure, nested as they came.

    Example:
        >>> container = step_container({"v": (1, 2), "u": 3})
        >>> container[0], in_container(container, (3, 1, 2))
        ('tree', {'u': 3, 'v': (1, 2)})
    """
    if isinstance(x, WholeBatch):
        return ("whole", x.treedef)
    return ("tree", jax.tree.structure(x))


@jax.tree_util.register_pytree_node_class
class ByBatch:
    """A streamed block's x for batches whose arrays hold different numbers of rows (a step
    of yours unpacking 16 unlabeled and 8 labeled images: keras.io's semisupervised_simclr),
    as Keras hands each such batch to the step as it is: array i holds the block's batches
    one after another, `rows[i]` rows each. A block's batches are in their order
    (kilnet.feeds.BatchFeed), so batch k of the block is rows k * rows[i] onward of each.
    `loss_rows`: for the built-in step, the rows Keras weighs each batch's loss by in the
    epoch's mean (its loss tracker counts the first x array's rows), else None.

    Example:
        >>> import numpy as np
        >>> block = ByBatch([np.arange(4), np.arange(8)], rows=(2, 4))
        >>> [a.tolist() for a in block.batch(1)]
        [[2, 3], [4, 5, 6, 7]]
    """

    def __init__(self, arrays, rows, loss_rows=None):
        self.arrays, self.rows, self.loss_rows = tuple(arrays), tuple(rows), loss_rows

    def tree_flatten(self):
        return self.arrays, (self.rows, self.loss_rows)

    @classmethod
    def tree_unflatten(cls, aux, arrays):
        return cls(arrays, *aux)

    def batch(self, number):
        """Batch `number` of the block (a traced integer in the programs): a tuple."""
        return tuple(jax.lax.dynamic_slice_in_dim(a, number * r, r)
                     for a, r in zip(self.arrays, self.rows))

    def abstract_batch(self, dtypes=None):
        """One batch as jax.ShapeDtypeStructs (in `dtypes` where given), for tracing."""
        dtypes = dtypes or [a.dtype for a in self.arrays]
        return tuple(jax.ShapeDtypeStruct((r,) + tuple(a.shape[1:]), dtype)
                     for a, r, dtype in zip(self.arrays, self.rows, dtypes))


def step_batch_names(x, argument: str = "x") -> list[str]:
    """How messages name the arrays of a batch a step unpacks itself (is_step_batch), in
    inputs_of's order, by where they sit: a dict's by key, a WholeBatch's as `batch`.

    Example:
        >>> step_batch_names({"target": 0, "source": 1})
        ["x['source']", "x['target']"]
        >>> step_batch_names(WholeBatch(((0, 1), 2)))
        ['batch[0][0]', 'batch[0][1]', 'batch[1]']
    """
    if isinstance(x, WholeBatch):
        x, argument = x.treedef.unflatten(x.items), "batch"
    paths = jax.tree_util.tree_flatten_with_path(x)[0]
    return [argument + jax.tree_util.keystr(path) for path, _ in paths]


def targets_of(objective, y, argument: str = "y", own_step: bool = False) -> list:
    """y as a list with one label array per output that has a loss or metrics. `own_step`:
    the model's own train_step / test_step reads y, so with no loss or metric to say which
    outputs have labels, y is kept as given, a dict's entries by sorted key (Keras's JAX
    guide compiles with no loss)."""
    if own_step and y is None:
        return []   # x alone: the step gets the batch itself, as Keras's (the loss unread)
    heads = objective.targets
    names = [h.name for h in heads]
    if not heads:   # no loss or metric reads labels (a model trained on its add_loss terms)
        if own_step and isinstance(y, dict):
            return [y[key] for key in sorted(y)]   # Keras's order of a dict's entries
        if own_step and y is not None:
            return list(y) if isinstance(y, (list, tuple)) else [y]
        return []
    if len(heads) == 1:
        if isinstance(y, dict):
            if names[0] in y:
                return [y[names[0]]]
            raise InputError(f"{argument} is a dict but no key is the trained output's name "
                             f"{names[0]!r}. Received: {argument} with keys {sorted(map(str, y))}")
        if isinstance(y, (list, tuple)) and len(y) == len(objective.heads) and \
                len(objective.heads) > 1 and not _looks_like_one_array(y, len(objective.heads)):
            return [y[heads[0].index]]
        if isinstance(y, (list, tuple)) and len(y) == 1 and len(getattr(y[0], "shape", ())):
            return [y[0]]   # [labels] for a model of one output, as Keras reads it
        return [y]
    if isinstance(y, dict):
        return _from_dict(y, names, argument, "outputs with a loss")
    if isinstance(y, (list, tuple)) and not _looks_like_one_array(y, len(objective.heads)):
        if len(y) == len(objective.heads):  # one entry per output: keep those trained
            return [y[h.index] for h in heads]
        if len(y) == len(heads):
            return list(y)
        raise InputError(f"The model has {len(objective.heads)} outputs; {argument} must give "
                         f"labels for {names}, in a list or a dict by name. Received: a "
                         f"{type(y).__name__} of {len(y)}")
    raise InputError(f"The model has {len(heads)} trained outputs {names}; {argument} must give "
                     f"labels for each, e.g. {argument}={{{names[0]!r}: ..., {names[1]!r}: ...}}. "
                     f"Received: {type(y).__name__}")


def sample_batch(model, x, xs: list):
    """A batch of one sample of inputs_of(model, x), abstractly (jax.ShapeDtypeStruct, in
    the dtype each array has on the device), as build(one_batch) takes it, so that the
    model is built for the data's shapes and traced on its dtypes (integer ids stay
    integers): one array, a list, or a dict by key when the model's call takes x as a dict
    (a subclassed model; its Keras form `call(inputs)` then reads inputs["title"])."""
    specs = [jax.ShapeDtypeStruct((1,) + tuple(np.shape(a)[1:]), data_lib.device_dtype(
        np.asarray(a[:1]))) for a in xs]
    if isinstance(x, dict) and getattr(model, "takes_keyed_inputs", False) and not isinstance(
            model.input_specs, list):
        return dict(zip(sorted(x), specs))
    return specs[0] if len(specs) == 1 else specs


def container_of(data, carried: list):
    """How `data` (x or y as given) holds `carried`, the arrays inputs_of / targets_of took
    from it for the programs: ("list", n) or ("tuple", n) when they are its entries,
    ("dict", keys in carried order) for a dict, step_container's for a WholeBatch; None
    for one array, or for a list whose
    entries are not all carried (the labels of outputs without a loss). A model's own steps
    get the arrays back in that container (in_container), as Keras hands them the user's.

    Example:
        >>> import numpy as np
        >>> a, b = np.zeros(2), np.ones(2)
        >>> container_of([a, b], [a, b]), container_of({"u": a, "v": b}, [b, a])
        (('list', 2), ('dict', ('v', 'u')))
        >>> container_of(a, [a]) is None
        True
    """
    if isinstance(data, WholeBatch):
        return step_container(data)
    if isinstance(data, dict):
        unused, keys = list(data.items()), []
        for array in carried:
            found = next((i for i, (_, value) in enumerate(unused) if value is array), None)
            if found is None:
                return None
            keys.append(unused.pop(found)[0])
        return ("dict", tuple(keys))
    if isinstance(data, (list, tuple)) and len(data) == len(carried) and all(
            given is array for given, array in zip(data, carried)):
        return ("list" if isinstance(data, list) else "tuple", len(data))
    return None


def x_container(model, x, xs: list, own_step: bool):
    """The container of x's arrays `xs` (inputs_of's): step_container's for a batch the
    model's own step unpacks itself (is_step_batch), else container_of's."""
    if is_step_batch(model, x, own_step):
        return step_container(x)
    return container_of(x, xs)


def in_container(container, packed):
    """The programs' arrays (`packed`: one array, or a tuple) in the `container` that
    container_of found; as they are for None.

    Example:
        >>> in_container(("dict", ("v", "u")), (1, 2)), in_container(("list", 1), 7)
        ({'v': 1, 'u': 2}, [7])
    """
    if container is None:
        return packed
    arrays = unpack(packed)
    if container[0] in ("whole", "tree"):
        return container[1].unflatten(arrays)
    if container[0] == "dict":
        return dict(zip(container[1], arrays))
    return list(arrays) if container[0] == "list" else tuple(arrays)


def program_labels(objective, y):
    """Labels as a model's own step hands them to compute_loss (in the container fit got
    them in, or the programs' form) as the programs take them: one array, or a tuple in the
    objective's target order."""
    if isinstance(y, (list, dict)) and objective.targets:
        return pack(targets_of(objective, y, "y"))
    if isinstance(y, tuple) and len(y) == 1 == len(objective.targets):
        return y[0]
    return y


def pack(arrays: list):
    """What the programs take: the array itself for one, a tuple for several."""
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


def pack_labels(arrays: list):
    """The labels (and weights) the programs take: as `pack`, and None when there are none
    (a model trained on its add_loss terms), so that evaluate and fit's validation give the
    programs the same argument and share one compiled program.

    Example:
        >>> pack_labels([]) is None, pack_labels([1])
        (True, 1)
    """
    return pack(arrays) if arrays else None


def unpack(data) -> list:
    return list(data) if isinstance(data, tuple) else [data]


def input_argument_names(model, count: int, argument: str = "x") -> list[str]:
    """How messages name each of `count` inputs: by the model's input names, or (a
    subclassed model not built yet, given several arrays) by position."""
    names = model.input_names or (["x"] if count == 1 else [str(i) for i in range(count)])
    return argument_names(argument, names)


def argument_names(argument: str, names: list) -> list[str]:
    """How error messages name each entry: x, or x['title'] for several."""
    return [argument] if len(names) == 1 else [f"{argument}[{n!r}]" for n in names]


def _from_dict(data: dict, names: list, argument: str, what: str) -> list:
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"{argument} must have one entry per model {what} {names}; missing "
                         f"{missing}. Received: {argument} with keys {sorted(map(str, data))}")
    return [data[n] for n in names]


def _looks_like_one_array(value, count: int) -> bool:
    """A list of numbers (one array written as nested lists) rather than a list of arrays."""
    if not value:
        return True
    first = value[0]
    return not hasattr(first, "shape") and not isinstance(first, (list, tuple, dict))
