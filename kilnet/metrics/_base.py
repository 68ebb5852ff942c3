"""The Metric base class: Keras's form (variables made with `add_variable`, `update_state`
assigning to them, `result` reading them) turned into Keras's stateless form, which the
compiled programs need because a loop can only carry arrays.

Why it works: a metric's variables are kilnet Variables, so the mechanism that makes a
Keras-form layer's `call` pure (kilnet._scope) applies unchanged. `stateless_update_state`
opens a scope binding each Variable to the array it is given, runs the user's `update_state`
(whose `assign` calls are recorded in the scope instead of mutating anything) and returns the
recorded values. Called eagerly, outside any scope, the same `update_state` mutates the
Variables, as in Keras.

Also here: the reduction metrics every other metric builds on, `Mean`, `Sum` and
`MeanMetricWrapper` (a per-sample function averaged over samples).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _names, _scope
from kilnet import initializers as initializers_lib
from kilnet import losses as losses_lib
from kilnet.variables import Variable, to_array


def snake_case(name: str) -> str:
    """Keras's default metric name from a class name ("MeanIoU" -> "mean_io_u").

    Example:
        >>> snake_case("RootMeanSquaredError")
        'root_mean_squared_error'
    """
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _check_dtype(dtype):
    if dtype not in (None, "float32", np.float32, jnp.float32):
        raise ValueError("kilnet metrics compute in float32 only; leave dtype unset. "
                         f"Received: dtype={dtype!r}")
    return "float32"


def _initial_value(initializer, shape, dtype):
    """The starting array of a metric variable: a number or an array broadcast to its shape,
    else anything kilnet.initializers.get takes (a name, an Initializer or its class, a
    function f(shape, dtype=None))."""
    if initializer is None:
        initializer = "zeros"
    if isinstance(initializer, (int, float, np.ndarray)) or hasattr(initializer, "shape"):
        return jnp.broadcast_to(jnp.asarray(initializer, dtype), shape)
    values = initializers_lib.initial_values(initializer, np.random.default_rng(0), shape,
                                             np.dtype(dtype))
    return jnp.asarray(values, dtype)


class Metric:
    """A metric as Keras writes one: state in variables, `update_state`, `result`.

    Subclass it as in Keras: make the state in `__init__` with `self.add_variable(...)`,
    update it in `update_state` with `variable.assign(...)` (or `assign_add`), compute the
    value in `result`. Such a metric runs eagerly (`update_state` on NumPy arrays) and inside
    `model.compile(metrics=[...])`, whose compiled loop carries its state through
    `stateless_update_state` / `stateless_result`.

    `variables` are the metric's state Variables in creation order, as in Keras: they hold
    the current eager state, and a training loop of your own writes its final state back
    with `variable.assign(value)`. `stateless_reset_state()` gives the arrays a state starts
    from.

    Example:
        >>> import numpy as np
        >>> from kilnet import metrics, ops
        >>> class CountPositives(metrics.Metric):
        ...     def __init__(self, name="count_positives", **kwargs):
        ...         super().__init__(name=name, **kwargs)
        ...         self.positives = self.add_variable(shape=(), initializer="zeros",
        ...                                            name="positives")
        ...     def update_state(self, y_true, y_pred, sample_weight=None):
        ...         self.positives.assign_add(ops.sum(ops.cast(y_pred > 0.5, "float32")))
        ...     def result(self):
        ...         return self.positives.value
        >>> m = CountPositives()
        >>> m.update_state(np.zeros(3), np.array([0.9, 0.2, 0.7]))
        >>> float(m.result())
        2.0
        >>> state = m.stateless_update_state(m.variables, np.zeros(2), np.array([0.8, 0.6]))
        >>> float(m.stateless_result(state)), float(m.result())
        (4.0, 2.0)
        >>> for variable, value in zip(m.variables, state):
        ...     _ = variable.assign(value)
        >>> float(m.result())
        4.0
    """

    #: True: compile() carries the metric's variables through the loop (update_state /
    #: result); False: it sums `per_sample` values over the real samples (mean metrics).
    stateful = True

    def __init__(self, name=None, dtype=None):
        object.__setattr__(self, "_tracked_variables", [])
        object.__setattr__(self, "_initial_values", [])
        object.__setattr__(self, "_submetrics", [])
        # Keras's default: the class in snake case, numbered per process (a second AUC() is
        # auc_1, as history keys show it); kilnet.utils.clear_session starts again
        self.name = name or _names.numbered_in_process(snake_case(type(self).__name__))
        self._dtype = _check_dtype(dtype)

    def __setattr__(self, name, value):
        # a metric held by a metric: its variables are part of this one's state, as in Keras
        if isinstance(value, Metric) and "_submetrics" in self.__dict__ and not any(
                value is m for m in self._submetrics):
            self._submetrics.append(value)
        object.__setattr__(self, name, value)

    def _require_init(self):
        if "_tracked_variables" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call "
                               "super().__init__(name=name, **kwargs) before add_variable.")

    @property
    def dtype(self) -> str:
        return self._dtype

    # -- state -------------------------------------------------------------------------------
    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum",
                     name=None):
        """A state variable of this metric (not trainable), as Keras's
        `Metric.add_variable`. initializer: "zeros", "ones", a number or f(shape, dtype)."""
        self._require_init()
        if aggregation not in ("sum", "mean", "none", "only_first_replica", None):
            raise ValueError("add_variable: aggregation must be 'sum', 'mean', 'none' or "
                             f"'only_first_replica'. Received: aggregation={aggregation!r}")
        dtype = dtype or self._dtype
        shape = tuple(int(d) for d in shape)
        name = name or f"variable_{len(self._tracked_variables)}"
        value = _initial_value(initializer, shape, dtype)
        # Keras's path: the metric's name (at creation) before the variable's ("mean/total")
        with _scope.weights_owned_by(self):
            variable = Variable(value, name=name, trainable=False, dtype=dtype)
        self._tracked_variables.append(variable)
        self._initial_values.append(value)
        return variable

    def add_weight(self, shape=(), initializer=None, dtype=None, name=None):
        """Keras's older name for `add_variable`."""
        return self.add_variable(shape=shape, initializer=initializer, dtype=dtype, name=name)

    def state_variables(self) -> list:
        """The metric's Variables (its own, then its sub-metrics'), in creation order."""
        own = list(self.__dict__.get("_tracked_variables", []))
        for sub in self.__dict__.get("_submetrics", []):
            own.extend(sub.state_variables())
        return own

    def _initial_bindings(self) -> dict:
        bindings = {}
        for variable, value in zip(self.__dict__.get("_tracked_variables", []),
                                   self.__dict__.get("_initial_values", [])):
            bindings[id(variable)] = value
        for sub in self.__dict__.get("_submetrics", []):
            bindings.update(sub._initial_bindings())
        return bindings

    @property
    def variables(self) -> list:
        """The metric's state Variables (its own, then its sub-metrics'), as Keras's
        `Metric.variables`: assignable, reading the current state."""
        return self.state_variables()

    def _check_state(self, metric_variables):
        expected = len(self.state_variables())
        if len(metric_variables) != expected:
            raise ValueError(
                f"metric_variables must be a list of {expected} arrays, one per variable of "
                f"{type(self).__name__}().variables. Received: a list of "
                f"{len(metric_variables)}")

    def _bound(self, metric_variables):
        self._check_state(metric_variables)
        # a Variable given as state (`m.variables`, as Keras allows) counts with its value
        return _scope.Scope(bindings={id(v): jnp.asarray(to_array(a)) for v, a in
                                      zip(self.state_variables(), metric_variables)},
                            trains_nothing=True)

    # -- Keras's stateless interface ---------------------------------------------------------
    def stateless_update_state(self, metric_variables, *args, **kwargs) -> list:
        """The new state after `update_state(*args, **kwargs)`, from the given state (a list
        of arrays as `variables`), without changing the metric: a pure function."""
        def run(sample_weight_kw):
            scope = self._bound(metric_variables)
            with _scope.opened(scope):
                self.update_state(*args, **{**kwargs, **sample_weight_kw})
            return [_value_in(scope, v) for v in self.state_variables()]

        if "sample_weight" not in kwargs or self._weighs_padding_itself():
            return run({})
        return _with_padding_weight(kwargs["sample_weight"], run)

    def stateless_result(self, metric_variables):
        """`result()` computed from the given state (a list of arrays as `variables`): an
        array, or a dict of them for a metric whose result is a dict (the compiled metrics
        together, `model.metrics[1]`), as Keras's."""
        scope = self._bound(metric_variables)
        with _scope.opened(scope):   # a result that is a Variable reads its bound state
            result = self.result()
            if isinstance(result, dict):
                return {name: jnp.asarray(value) for name, value in result.items()}
            return jnp.asarray(result)

    def stateless_reset_state(self) -> list:
        """The state `reset_state()` gives, as a list of arrays, without changing the metric:
        what compile()'s loops start an epoch from (a fresh copy each time, since the
        compiled loop donates its buffers).

        Example:
            >>> from kilnet import metrics
            >>> m = metrics.Mean()
            >>> m.update_state(3.0)
            >>> [float(a) for a in m.stateless_reset_state()], float(m.result())
            ([0.0, 0.0], 3.0)
        """
        scope = _scope.Scope(bindings=self._initial_bindings(), trains_nothing=True)
        with _scope.opened(scope):
            self.reset_state()
        return [jnp.array(_value_in(scope, v), copy=True) for v in self.state_variables()]

    def _weighs_padding_itself(self) -> bool:
        # kilnet's own update_state methods take sample_weight as it comes; a user's may
        # ignore it, so compile()'s padding weight reaches them only in a padded batch
        return type(self).update_state.__module__.startswith("kilnet.metrics")

    # -- Keras's eager interface (a subclass defines update_state and result) -------------------
    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define update_state(y_true, "
                                  "y_pred, sample_weight=None), as a Keras metric does.")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must define result(), as a Keras "
                                  "metric does.")

    def reset_state(self) -> None:
        """Every variable back to zeros (Keras's default; override for another start)."""
        for variable in self.state_variables():
            variable.assign(jnp.zeros(variable.shape, variable.dtype))

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    # -- configuration -----------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _value_in(scope, variable):
    """The variable's value at the end of a scope that binds it: assigned, else as bound."""
    key = id(variable)
    return scope.assigned[key] if key in scope.assigned else scope.bindings[key]


def _with_padding_weight(sample_weight, run):
    """Run a user's update_state with sample_weight only where it matters: compile() weighs
    the padding rows of a last partial batch 0, and a metric that ignores sample_weight would
    count them. A full batch (all weights 1) runs with sample_weight=None, as Keras's compile
    does when fit() gets no sample weights."""
    if sample_weight is None:
        return run({"sample_weight": None})
    weight = jnp.asarray(sample_weight)
    all_ones = jnp.all(weight == 1)
    if isinstance(all_ones, jax.core.Tracer):
        return jax.lax.cond(all_ones, lambda: run({"sample_weight": None}),
                            lambda: run({"sample_weight": weight}))
    return run({"sample_weight": None if bool(all_ones) else sample_weight})


# -- helpers shared by the metric modules ------------------------------------------------------
def divide_no_nan(a, b):
    """a / b, and 0 where b is 0 (Keras's ops.divide_no_nan).

    Example:
        >>> float(divide_no_nan(1.0, 0.0)), float(divide_no_nan(1.0, 4.0))
        (0.0, 0.25)
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    return jnp.where(b != 0, a / jnp.where(b != 0, b, 1.0), 0.0)


def default_weight(sample_weight, batch):
    """The weight of each sample: the given one, else the scope's sample mask (compile()'s
    padding rows weigh 0) when it matches the batch, else None.

    Example:
        >>> default_weight(None, 3) is None
        True
    """
    if sample_weight is not None:
        return jnp.asarray(sample_weight, jnp.float32)
    mask = _scope.sample_mask()
    if mask is not None and mask.shape == (batch,):
        return mask.astype(jnp.float32)
    return None


def _samplewise(values, sample_weight, reduce_fn):
    """Keras's reduction of values and weights to one value (and weight) per sample."""
    values = jnp.asarray(values, jnp.float32)
    if sample_weight is not None:
        sample_weight = jnp.asarray(sample_weight, jnp.float32)
        values, sample_weight = losses_lib.squeeze_or_expand(values, sample_weight)
        if values.ndim > sample_weight.ndim:
            values = reduce_fn(values, axis=tuple(range(sample_weight.ndim, values.ndim)))
        sample_weight = jnp.broadcast_to(sample_weight, values.shape)
        values = values * sample_weight
        if sample_weight.ndim > 1:
            sample_weight = reduce_fn(sample_weight, axis=tuple(range(1, sample_weight.ndim)))
    if values.ndim > 1:
        values = reduce_fn(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


class Sum(Metric):
    """The (weighted) sum of the values it is given, as keras.metrics.Sum.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.Sum()
        >>> m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        4.0
    """

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, values, sample_weight=None):
        values = jnp.asarray(values, jnp.float32)
        weight = default_weight(sample_weight, values.shape[0]) if values.ndim else None
        values, _ = _samplewise(values, weight, jnp.sum)
        self.total.assign_add(jnp.sum(values))

    def result(self):
        return self.total.value


class Mean(Metric):
    """The (weighted) mean of the values it is given, as keras.metrics.Mean: a loss tracker in
    a custom train_step (`self.loss_tracker = kilnet.metrics.Mean(name="loss")`). Inside a
    compiled step without sample_weight, the padding rows of a last partial batch weigh 0.

    Example:
        >>> from kilnet import metrics
        >>> m = metrics.Mean()
        >>> m.update_state(2.0)
        >>> m.update_state(4.0)
        >>> float(m.result())
        3.0
    """

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, values, sample_weight=None):
        values = jnp.asarray(values, jnp.float32)
        weight = default_weight(sample_weight, values.shape[0]) if values.ndim else None
        if sample_weight is not None and values.ndim == 0:
            weight = jnp.asarray(sample_weight, jnp.float32)
        values, weight = _samplewise(values, weight, jnp.mean)
        self.total.assign_add(jnp.sum(values))
        if weight is not None:
            count = jnp.sum(weight)
        else:
            count = values.shape[0] if values.ndim else 1
        self.count.assign_add(jnp.asarray(count, jnp.float32))

    def result(self):
        return divide_no_nan(self.total.value, self.count.value)


class MeanMetricWrapper(Mean):
    """The mean over samples of `fn(y_true, y_pred, **kwargs)` (one value per sample), as
    keras.metrics.MeanMetricWrapper. `compile(metrics=[my_fn])` wraps a function this way,
    named `my_fn.__name__`.

    Example:
        >>> import numpy as np
        >>> import jax.numpy as jnp
        >>> from kilnet import metrics
        >>> def abs_error(y_true, y_pred):
        ...     return jnp.abs(y_true - y_pred)
        >>> m = metrics.MeanMetricWrapper(abs_error, name="abs_error")
        >>> m.update_state(np.array([1.0, 2.0]), np.array([2.0, 2.0]))
        >>> float(m.result())
        0.5
    """

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        if not callable(fn):
            raise TypeError("MeanMetricWrapper needs a function fn(y_true, y_pred) giving one "
                            f"value per sample. Received: fn={fn!r}")
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper",
                         dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs

    @property
    def stateful(self) -> bool:
        # a subclass that changes update_state or result needs its own state in compile()
        cls = type(self)
        return cls.update_state is not MeanMetricWrapper.update_state or \
            cls.result is not Mean.result

    def per_sample(self, y_true, y_pred):
        """The wrapped function's values (compile() sums them over the real samples)."""
        return self._fn(jnp.asarray(y_true), jnp.asarray(y_pred), **self._fn_kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = jnp.asarray(self.per_sample(y_true, y_pred), jnp.float32)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        fn = self._fn
        if type(self) is not MeanMetricWrapper:
            return {"name": self.name, "dtype": self.dtype}
        raise ValueError(
            f"MeanMetricWrapper({getattr(fn, '__name__', fn)!r}) wraps a Python function, "
            "which kilnet does not write into files; subclass kilnet.metrics.Metric (or "
            "register the class with kilnet.saving) to save it.")
