"""Variable: a named weight of a layer, as Keras's `keras.Variable`.

A Variable is a handle. Its value lives in one place at a time:

- at rest, in the Variable itself (a JAX array);
- while a compiled model trains, in that model's training state (kilnet.trainer.Trainer): the
  Trainer becomes the variable's *holder* and the variable reads through it, so there is one
  copy of every weight and `layer.kernel.numpy()` is always current;
- inside `Layer.apply`, bound to the (possibly traced) array passed in (kilnet._scope), so a
  Keras-style `call` that reads `self.kernel` is a pure function of its arguments.

JAX no longer converts foreign objects implicitly (`__jax_array__` is refused while tracing),
so a Variable converts explicitly: through `kilnet.ops` functions, Python operators, or
`variable.value`; and JAX's transformations see it as the array it stands for (a pytree of
that one leaf), so `jax.device_put`, `jax.jit` and `jax.grad` take lists of Variables.
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet import _names, _scope


# Keras's short dtype names, as its standardize_dtype reads them (JAX keeps 32 bits).
_DTYPE_NAMES = {"int": "int32", "float": "float32", "uint": "uint32", "bool": "bool"}


def _standard_dtype(dtype):
    """A dtype argument as NumPy's, Keras's short names included; None stays None."""
    if dtype is None:
        return None
    return np.dtype(_DTYPE_NAMES.get(dtype, dtype) if isinstance(dtype, str) else dtype)


class Variable:
    """A named, shaped weight whose value is read through the active apply scope.

    Args:
        value: the initial value (array-like), or an initializer (a name such as "zeros",
            an Initializer, a function of (shape, dtype)) called with `shape`, as Keras's
            first argument takes either; None for a variable whose value is made later.
        name: the name inside its layer, e.g. "kernel".
        trainable: whether the optimizer updates it.
        shape: required with an initializer, or when value is None.
        dtype: the value's own dtype by default (an int array stays int32), float32 for an
            initializer; Keras's names ("int", "float32", ...).
        initializer: Keras's keyword for the first argument.

    Example:
        >>> import numpy as np
        >>> from kilnet.variables import Variable
        >>> v = Variable(np.ones((2, 3), np.float32), name="kernel")
        >>> v.shape, str(v.dtype), float((v * 2).sum())
        ((2, 3), 'float32', 12.0)
        >>> index = Variable(initializer=np.array([2, 0, 1]), shape=(3,), dtype="int")
        >>> str(index.dtype), Variable("ones", shape=(2,)).numpy().tolist()
        ('int32', [1.0, 1.0])
    """

    def __init__(self, value=None, *, name: str = "variable", trainable: bool = True,
                 shape=None, dtype=None, initializer=None, constraint=None):
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError("A variable's name must be a non-empty string without '/'. "
                             f"Received: name={name!r}")
        if value is not None and initializer is not None:
            raise ValueError(f"Variable {name!r}: give its initial value or an initializer, "
                             "not both (Keras's Variable takes one, as its first argument).")
        self.name = name
        # Its key in the owning layer's weight trees (params_tree, variable_paths): the name,
        # unless the layer holds another weight of that name (see tree_key)
        self._tree_key = name
        # Keras's path: the names of the layers that made it, then its own
        self._path = _scope.weight_path(name)
        self.trainable = bool(trainable)
        source = value if value is not None else initializer
        self.initializer = initializer
        # projects the value after each optimizer update (kilnet.constraints), as in Keras
        self.constraint = constraint
        self._holder = None   # a Trainer holding the live value, or None
        dtype = _standard_dtype(dtype)
        if source is None:
            if shape is None:
                raise ValueError(f"Variable {name!r} needs a value or a shape.")
            self._shape = tuple(int(d) for d in shape)
            self._dtype = np.dtype(dtype or "float32")
            self._value = None
        elif isinstance(source, str) or (callable(source) and not hasattr(source, "shape")):
            if shape is None:
                raise ValueError(f"Variable {name!r} is made from the initializer {source!r} "
                                 "and needs its shape: Variable(initializer, shape=(...)).")
            from kilnet import initializers   # initializers import this module

            init = initializers.get(source) if isinstance(source, str) else source
            self._set(init(tuple(int(d) for d in shape), dtype=dtype or "float32"),
                      dtype or "float32")
        else:
            self._set(source, dtype)
            if shape is not None and tuple(int(d) for d in shape) != self._shape:
                raise ValueError(f"Variable {name!r}: its value has shape {self._shape}; "
                                 f"shape={tuple(shape)} was given.")

    # -- the value ----------------------------------------------------------------------------
    def _set(self, value, dtype=None):
        import jax.numpy as jnp

        array = jnp.asarray(value, dtype)
        self._value, self._shape, self._dtype = array, tuple(array.shape), np.dtype(array.dtype)

    @property
    def value(self):
        """The current value: bound in an apply scope, held by a Trainer, or stored here."""
        bound = _scope.lookup(self)
        if bound is not None:
            return bound
        if self._holder is not None:
            return self._holder.read_variable(self)
        if self._value is None:
            raise ValueError(f"The variable {self.name!r} has no value yet: the layer that owns "
                             "it is not built. Build the model (model.build(input_shape)) or "
                             "call it on data first.")
        return self._value

    @property
    def path(self) -> str:
        """Where the variable sits: the names of the layers that made it, outermost first,
        then its own name, as Keras's `Variable.path`.

        Example:
            >>> import kilnet
            >>> model = kilnet.Sequential([kilnet.Input((3,)), kilnet.layers.Dense(2, name="d")],
            ...                          name="seq")
            >>> [v.path for v in model.weights]
            ['seq/d/kernel', 'seq/d/bias']
        """
        return self._path

    @property
    def tree_key(self) -> str:
        """Its key among its layer's weights in kilnet's weight trees (`params_tree`,
        `variable_paths`, .kilnet and weights files): its name, or name_1, name_2, ... where
        its layer already held a weight of that name when it was added (Keras allows two
        add_weight calls under one name; both keep the name and the path Keras gives them).

        Example:
            >>> import kilnet
            >>> layer = kilnet.layers.Layer()
            >>> first = layer.add_weight(shape=(2,), name="pos")
            >>> second = layer.add_weight(shape=(2,), name="pos")
            >>> (first.name, first.tree_key), (second.name, second.tree_key)
            (('pos', 'pos'), ('pos', 'pos_1'))
        """
        return self._tree_key

    def key_apart_from(self, taken) -> None:
        """Take the first of name, name_1, ... not in `taken` (the keys its layer already
        holds) as tree_key; the name and path stay.

        Example:
            >>> import numpy as np
            >>> v = Variable(np.zeros(2, np.float32), name="pos")
            >>> v.key_apart_from({"pos"})
            >>> v.name, v.tree_key
            ('pos', 'pos_1')
        """
        self._tree_key = _names.unique_among(self.name, taken)

    def rename_owner(self, old: str, new: str) -> None:
        """Put the path under `new` where it starts with the owner name `old` (a layer whose
        default name a model fixed after the variable was made).

        Example:
            >>> import kilnet
            >>> class Scale(kilnet.layers.Layer):
            ...     def __init__(self):
            ...         super().__init__()
            ...         self.w = self.add_weight(shape=(3,), initializer="ones")
            ...     def call(self, x):
            ...         return x * self.w
            >>> model = kilnet.Sequential([kilnet.Input((3,)), Scale(), Scale()])
            >>> [v.path for v in model.weights]   # each named as its layer (rename_owner)
            ['scale/variable', 'scale_1/variable']
        """
        head, sep, rest = self._path.partition("/")
        if head == old:
            self._path = new + sep + rest

    @property
    def has_value(self) -> bool:
        return self._value is not None or self._holder is not None

    def assign(self, value):
        """Set the value. Inside a layer's `call` this records the new value as the layer's
        updated state (e.g. moving statistics) instead of mutating anything."""
        import jax.numpy as jnp

        value = jnp.asarray(value, self._dtype)
        if tuple(value.shape) != self._shape:
            raise ValueError(f"Variable {self.name!r} has shape {self._shape}. Received: a "
                             f"value of shape {tuple(value.shape)}")
        if _scope.record_assign(self, value):
            return value
        if self._holder is not None:  # training: the new value goes into the training state
            self._holder.write_variable(self, value)
            return value
        self._value = value
        return value

    def assign_add(self, delta):
        return self.assign(self.value + to_array(delta))

    def assign_sub(self, delta):
        return self.assign(self.value - to_array(delta))

    @property
    def holder(self):
        """The Trainer holding the live value while it trains, or None."""
        return self._holder

    def hold_by(self, holder) -> None:
        """Hand the value to `holder` (a Trainer that has put it in its training state):
        from now on the variable reads through `holder.read_variable(self)`."""
        if self._holder is holder:
            return
        self.release()
        self._holder, self._value = holder, None

    def release(self):
        """Take the value back from the Trainer holding it (a copy: the Trainer's buffers are
        donated to its next step)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            import jax.numpy as jnp

            self._value = jnp.array(holder.read_variable(self), copy=True)

    def numpy(self) -> np.ndarray:
        # host sync: a writable copy, as Keras's (learners edit it in place: `w[0] += 1`)
        return np.array(self.value)

    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def dtype(self):
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def __array__(self, dtype=None, copy=None):
        # np.array(v) asks for a copy (copy=True) and trusts what it gets: a view of the
        # device buffer would be read-only; np.asarray(v) (copy=None) may share it
        array = np.asarray(self.value, dtype=dtype)
        return array.copy() if copy else array

    def __repr__(self):
        return (f"<Variable {self.name!r} shape={self._shape} dtype={self._dtype} "
                f"trainable={self.trainable}>")

    # -- arithmetic, so `x @ self.kernel + self.bias` works in a layer's call ------------------
    def __getitem__(self, index):
        return self.value[index]

    def __len__(self):
        return self._shape[0]

    @property
    def T(self):
        return self.value.T

    def __neg__(self):
        return -self.value

    def __pos__(self):
        return self.value

    def __abs__(self):
        return abs(self.value)

    def __float__(self):
        return float(self.value)

    def __int__(self):
        return int(self.value)


def _binary(name):
    def method(self, other):
        return getattr(self.value, name)(to_array(other))
    method.__name__ = name
    return method


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__floordiv__", "__rfloordiv__", "__pow__",
              "__rpow__", "__matmul__", "__rmatmul__", "__mod__", "__lt__", "__le__", "__gt__",
              "__ge__"):
    setattr(Variable, _name, _binary(_name))


def to_array(x):
    """A Variable's current value; anything else unchanged (kilnet.ops calls this first).

    Example:
        >>> import numpy as np
        >>> from kilnet.variables import Variable, to_array
        >>> to_array(Variable(np.zeros(2, np.float32), name="b")).shape
        (2,)
        >>> to_array(3.0)
        3.0
    """
    return x.value if isinstance(x, Variable) else x


# JAX sees a Variable as the array it stands for: `jax.device_put(model.trainable_variables,
# sharding)`, `jax.jit(step)(model.trainable_variables, ...)` and `jax.grad` take lists of
# Variables and give back arrays (Keras's "Distributed training with JAX" guide passes them
# so; Keras's own Variables relied on `__jax_array__`, which JAX refuses now). A structure
# rebuilt by JAX holds the arrays, not new Variables: nothing outside a layer owns a weight.
jax.tree_util.register_pytree_node(Variable, lambda v: ((v.value,), None),
                                   lambda _, children: children[0])
