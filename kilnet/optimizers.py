"""Optimizers with Keras's names and defaults, built on Optax.

`"adam"` means Keras's Adam (learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7), whose
epsilon is added to sqrt(v) before bias correction; Optax's `adam` adds it after. Adam and AdamW
are therefore written here as one fused Optax transformation following Keras's formula
(tests/test_optimizers.py checks one step against a NumPy transcription of Keras's update and
a run against optax.adam). Nadam is written out the same way: Keras's keeps a momentum schedule
(and its running product) that Optax's `nadam` does not have (tests/test_nadam.py compares
training against Keras's). The learning rate lives in the optimizer state
(`optax.inject_hyperparams`), so callbacks such as ReduceLROnPlateau change it without a
recompilation.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.extend import core as jax_core

from kilnet import optimizers_schedules as schedules  # kilnet.optimizers.schedules, as Keras


class KerasAdamState(NamedTuple):
    count: jax.Array
    mu: Any
    nu: Any


def keras_adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
    """Keras's Adam/AdamW update as one Optax transformation.

    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    p <- p - lr * wd * p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
    The division is written as a multiplication by a reciprocal: XLA's precise division was
    the largest elementwise cost of an early CPU epoch measurement (with jax 0.10.2 we
    measured no difference either way: 0.191 s against 0.192 s per seed-MLP epoch).
    """

    def update(grads, state, params=None):
        count = state.count + 1
        t = count.astype(jnp.float32)
        alpha = learning_rate * jnp.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - beta_2), state.nu, grads)
        updates = jax.tree.map(lambda m, v: -alpha * m * jnp.reciprocal(jnp.sqrt(v) + epsilon),
                               mu, nu)
        if weight_decay:
            if params is None:
                raise ValueError("AdamW needs the parameters to apply weight decay.")
            updates = jax.tree.map(lambda u, p: u - learning_rate * weight_decay * p,
                                   updates, params)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(_moments_init, update)


def _moments_init(params) -> KerasAdamState:
    """A step count and two zero moments per weight (Adam's m and v, Adamax's m and u)."""
    zeros = lambda p: jnp.zeros_like(p)
    return KerasAdamState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                          jax.tree.map(zeros, params))


class KerasNadamState(NamedTuple):
    """Keras's Nadam state: the step count, the moments, and the product of the momentum
    schedule so far (Keras's `u_product`, 1.0 before the first step).

    Example:
        >>> import jax.numpy as jnp
        >>> state = keras_nadam(0.01).init({"w": jnp.zeros(2)})
        >>> int(state.count), float(state.u_product), state.mu["w"].shape
        (0, 1.0, (2,))
    """

    count: jax.Array
    mu: Any
    nu: Any
    u_product: jax.Array


def nadam_momentum(beta_1, step):
    """Keras's Nadam momentum schedule u_t = beta_1 * (1 - 0.5 * 0.96 ** t), in float32 (t is
    the 1-based step, as an array or a number).

    Example:
        >>> round(float(nadam_momentum(0.9, 1)), 6)
        0.468
    """
    t = jnp.asarray(step, jnp.float32)
    return beta_1 * (1.0 - 0.5 * jnp.power(jnp.float32(0.96), t))


def keras_nadam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None):
    """Keras 3's Nadam update (Dozat's Nesterov Adam with a momentum schedule) as one Optax
    transformation; Optax's `nadam` is a different algorithm (no schedule), so it is written
    out here.

    u_t = b1 (1 - 0.5 * 0.96^t);  P_t = u_1 ... u_t (the state's u_product)
    m <- m + (g - m)(1 - b1);  v <- v + (g^2 - v)(1 - b2)
    m_hat = u_{t+1} m / (1 - P_t u_{t+1}) + (1 - u_t) g / (1 - P_t);  v_hat = v / (1 - b2^t)
    p <- p - lr * wd * p - lr * m_hat / (sqrt(v_hat) + eps)

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_nadam(0.1)
        >>> params = {"w": jnp.array([1.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5])}, tx.init(params), params)
        >>> round(float(updates["w"][0]), 4), round(float(state.u_product), 3)
        (-0.1063, 0.468)
    """

    def init(params):
        zeros = lambda p: jnp.zeros_like(p)
        return KerasNadamState(jnp.zeros((), jnp.int32), jax.tree.map(zeros, params),
                               jax.tree.map(zeros, params), jnp.ones((), jnp.float32))

    # Keras casts the betas to float32 before forming 1 - beta: 1 - float32(0.999) is
    # 0.0009999871, which changes v and its bias correction by 1e-5 relative unless the same.
    b1, b2 = jnp.float32(beta_1), jnp.float32(beta_2)

    def update(grads, state, params=None):
        count = state.count + 1
        t = count.astype(jnp.float32)
        u_t, u_next = nadam_momentum(b1, t), nadam_momentum(b1, t + 1)
        u_product = state.u_product * u_t
        # The schedule's factors are scalars: computed once per step, not per element.
        m_scale = u_next / (1 - u_product * u_next)
        g_scale = (1 - u_t) / (1 - u_product)
        v_scale = 1 / (1 - b2 ** t)
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - b1), state.mu, grads)
        nu = jax.tree.map(lambda v, g: v + (g * g - v) * (1 - b2), state.nu, grads)
        updates = jax.tree.map(
            lambda m, v, g: -learning_rate * (m_scale * m + g_scale * g)
            / (jnp.sqrt(v * v_scale) + epsilon), mu, nu, grads)
        if weight_decay:
            if params is None:
                raise ValueError("Nadam with weight_decay needs the parameters to decay them.")
            updates = jax.tree.map(lambda u, p: u - learning_rate * weight_decay * p,
                                   updates, params)
        return updates, KerasNadamState(count, mu, nu, u_product)

    return optax.GradientTransformation(init, update)


def keras_adamax(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Keras's Adamax update as one Optax transformation (Optax's `adamax` adds epsilon to
    |g| inside the maximum; Keras adds it to the norm in the denominator):

    m <- m + (g - m)(1 - b1);  u <- max(b2 u, |g|);  p <- p - lr m / ((1 - b1^t)(u + eps))

    Example:
        >>> import jax.numpy as jnp
        >>> tx = keras_adamax(0.1)
        >>> params = {"w": jnp.array([1.0])}
        >>> updates, state = tx.update({"w": jnp.array([0.5])}, tx.init(params), params)
        >>> round(float(updates["w"][0]), 4), float(state.nu["w"][0])
        (-0.1, 0.5)
    """

    def update(grads, state, params=None):
        count = state.count + 1
        scale = learning_rate / (1 - beta_1 ** count.astype(jnp.float32))
        mu = jax.tree.map(lambda m, g: m + (g - m) * (1 - beta_1), state.mu, grads)
        nu = jax.tree.map(lambda u, g: jnp.maximum(beta_2 * u, jnp.abs(g)), state.nu, grads)
        updates = jax.tree.map(lambda m, u: -scale * m / (u + epsilon), mu, nu)
        return updates, KerasAdamState(count, mu, nu)

    return optax.GradientTransformation(_moments_init, update)


def decoupled_weight_decay(learning_rate, weight_decay) -> optax.GradientTransformation:
    """Keras's `weight_decay` of its other optimizers: `p <- p - lr * wd * p` beside the
    update (Keras applies it to the variables before the update step, which reads only the
    gradient); chained after an update already scaled by the learning rate."""

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight_decay needs the parameters to decay them.")
        return jax.tree.map(lambda u, p: u - learning_rate * weight_decay * p, updates,
                            params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def clip_by_tensor_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras's `clipnorm`: each gradient tensor is clipped to its own L2 norm."""

    def update(grads, state, params=None):
        def clip(g):
            norm = jnp.sqrt(jnp.sum(g * g))
            return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12))
        return jax.tree.map(clip, grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


class Optimizer:
    """Base class: a named, configurable factory of an Optax transformation."""

    name = "optimizer"
    defaults: dict[str, Any] = {}

    def __init__(self, learning_rate=0.001, *, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, **hyper):
        _check_learning_rate(learning_rate)
        for arg, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                           ("global_clipnorm", global_clipnorm)):
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"{arg} must be a positive number. Received: {arg}={value!r}")
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("Pass clipnorm or global_clipnorm, not both. "
                             f"Received: clipnorm={clipnorm}, global_clipnorm={global_clipnorm}")
        unknown = set(hyper) - set(self.defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(unknown)}; "
                            f"it accepts {sorted(self.defaults)}.")
        self._trainer = None  # set by compile(): where the rate in use lives
        self._learning_rate = learning_rate
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.hyper = {**self.defaults, **hyper}

    def attach(self, trainer) -> None:
        """compile() tells the optimizer which Trainer holds its state (a weak reference), so
        that setting learning_rate reaches the compiled step."""
        self._trainer = weakref.ref(trainer)

    @property
    def learning_rate(self):
        """The learning rate; setting it on a compiled model changes the rate the compiled
        step uses at once, without recompiling (`model.optimizer.learning_rate = 1e-4`)."""
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        _check_learning_rate(value)
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None and trainer.state is not None:
            if callable(value) or callable(self._learning_rate):
                raise TypeError(
                    "A compiled model's learning rate can be changed from one number to "
                    "another; to use a schedule, compile again with it. "
                    f"Received: learning_rate={value!r}")
            trainer.learning_rate = float(value)
        self._learning_rate = value

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """Keras's JAX stateless_apply, for a custom train_step: (new trainable variables,
        new optimizer variables), all lists, after one update of the compiled optimizer."""
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is None or trainer.state is None:
            raise RuntimeError("stateless_apply needs the optimizer of a compiled, built model "
                               "(it runs inside train_step).")
        return trainer.stateless_apply(optimizer_variables, grads, trainable_variables)

    def core(self, learning_rate) -> optax.GradientTransformation:
        raise NotImplementedError

    def build(self) -> optax.GradientTransformation:
        """The full transformation: gradient clipping, then the update with an injected lr."""
        parts = []
        if self.clipvalue is not None:
            parts.append(optax.clip(self.clipvalue))
        if self.clipnorm is not None:
            parts.append(clip_by_tensor_norm(self.clipnorm))
        if self.global_clipnorm is not None:
            parts.append(optax.clip_by_global_norm(self.global_clipnorm))
        parts.append(optax.inject_hyperparams(self.core)(learning_rate=self.learning_rate))
        return optax.chain(*parts)

    def get_config(self) -> dict:
        rate = self.learning_rate
        config = {"learning_rate": schedules.serialize(rate) if callable(rate) else float(rate),
                  **self.hyper}
        for key in ("clipnorm", "clipvalue", "global_clipnorm"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):   # a schedule's config
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}(learning_rate={self.learning_rate!r})"


class Adam(Optimizer):
    name = "adam"
    # Keras's Adam takes weight_decay too (decoupled, as AdamW's; None: off).
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        return keras_adam(learning_rate, **self.hyper)


class AdamW(Optimizer):
    name = "adamw"
    defaults = {"weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}

    def core(self, learning_rate):
        return keras_adam(learning_rate, **self.hyper)


class SGD(Optimizer):
    name = "sgd"
    defaults = {"momentum": 0.0, "nesterov": False}

    def __init__(self, learning_rate=0.01, **kwargs):
        super().__init__(learning_rate, **kwargs)

    def core(self, learning_rate):
        momentum = self.hyper["momentum"] or None
        return optax.sgd(learning_rate, momentum=momentum, nesterov=self.hyper["nesterov"])


class RMSprop(Optimizer):
    name = "rmsprop"
    defaults = {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7, "centered": False}

    def core(self, learning_rate):
        h = self.hyper
        # Keras adds epsilon inside the square root, as optax's default eps_in_sqrt does.
        return optax.rmsprop(learning_rate, decay=h["rho"], eps=h["epsilon"],
                             momentum=h["momentum"] or None, centered=h["centered"])


class Adagrad(Optimizer):
    name = "adagrad"
    defaults = {"initial_accumulator_value": 0.1, "epsilon": 1e-7}

    def core(self, learning_rate):
        return optax.adagrad(learning_rate, **{
            "initial_accumulator_value": self.hyper["initial_accumulator_value"],
            "eps": self.hyper["epsilon"]})


class Nadam(Optimizer):
    """Keras 3's Nadam, update for update (`keras_nadam`: Adam with Nesterov momentum and
    Keras's momentum schedule; Optax's `nadam` differs), with Keras's arguments and defaults.

    Example:
        >>> import kilnet
        >>> opt = kilnet.optimizers.Nadam(learning_rate=0.01, beta_1=0.8)
        >>> opt.learning_rate, opt.hyper["beta_1"], opt.hyper["epsilon"]
        (0.01, 0.8, 1e-07)
    """

    name = "nadam"
    # Keras's Nadam takes weight_decay too (decoupled, as AdamW's; None: off).
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        return keras_nadam(learning_rate, **self.hyper)


class Adamax(Optimizer):
    """Keras's Adamax (Adam with the infinity norm; Kingma & Ba, 2014), update for update
    (`keras_adamax`), with Keras's arguments and defaults.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.get("adamax").hyper
        {'beta_1': 0.9, 'beta_2': 0.999, 'epsilon': 1e-07, 'weight_decay': None}
    """

    name = "adamax"
    defaults = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        parts = [keras_adamax(learning_rate, h["beta_1"], h["beta_2"], h["epsilon"])]
        return _with_decay(parts, learning_rate, h["weight_decay"])


class Adadelta(Optimizer):
    """Keras's Adadelta (Zeiler, 2012) with Keras's arguments and defaults (rho 0.95, epsilon
    1e-7, learning_rate 0.001): Optax's scale_by_adadelta is Keras's update step.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.Adadelta(learning_rate=1.0).hyper["rho"]
        0.95
    """

    name = "adadelta"
    defaults = {"rho": 0.95, "epsilon": 1e-7, "weight_decay": None}

    def core(self, learning_rate):
        h = self.hyper
        parts = [optax.scale_by_adadelta(h["rho"], h["epsilon"]),
                 optax.scale_by_learning_rate(learning_rate)]
        return _with_decay(parts, learning_rate, h["weight_decay"])


class Lion(Optimizer):
    """Keras's Lion (Chen et al., 2023: the sign of an interpolated momentum), with Keras's
    arguments and defaults: Optax's lion is Keras's update, its weight decay decoupled as
    Keras's.

    Example:
        >>> import kilnet
        >>> kilnet.optimizers.Lion(beta_1=1.5)
        Traceback (most recent call last):
        ...
        ValueError: Lion's beta_1 must be in (0, 1]; otherwise it is sign SGD. Received: beta_1=1.5
    """

    name = "lion"
    defaults = {"beta_1": 0.9, "beta_2": 0.99, "weight_decay": None}

    def __init__(self, learning_rate=0.001, **kwargs):
        super().__init__(learning_rate, **kwargs)
        beta_1 = self.hyper["beta_1"]
        if not 0 < beta_1 <= 1:
            raise ValueError(f"Lion's beta_1 must be in (0, 1]; otherwise it is sign SGD. "
                             f"Received: beta_1={beta_1}")

    def core(self, learning_rate):
        h = self.hyper
        return optax.lion(learning_rate, b1=h["beta_1"], b2=h["beta_2"],
                          weight_decay=h["weight_decay"] or 0.0)


def _with_decay(parts, learning_rate, weight_decay):
    if weight_decay:
        parts = parts + [decoupled_weight_decay(learning_rate, weight_decay)]
    return optax.chain(*parts)


OPTIMIZER_TYPES = {cls.__name__: cls for cls in (Adam, AdamW, SGD, RMSprop, Adagrad, Nadam,
                                                 Adamax, Adadelta, Lion)}
_BY_NAME = {cls.name: cls for cls in OPTIMIZER_TYPES.values()}


def get(identifier):
    """Resolve a name, a kilnet Optimizer, or any Optax GradientTransformation."""
    if isinstance(identifier, (Optimizer, optax.GradientTransformation)):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"Unknown optimizer: expected one of {sorted(_BY_NAME)}, a kilnet.optimizers object or "
        f"an optax.GradientTransformation. Received: optimizer={identifier!r}"
    )


def upgrade_saved_state(optimizer, tensors: dict) -> dict:
    """Optimizer-state arrays ("opt/..." names) saved by an earlier kilnet, in today's layout.
    kilnet 0.1's Nadam was Optax's, whose state is (count, mu, nu) under `inner_state/0`;
    Keras's Nadam, today's, keeps the same two moments (the same running averages) plus
    u_product, the product of the momentum schedule, which the step count determines. Other
    optimizers and current files come back unchanged.

    Example:
        >>> import numpy as np
        >>> from kilnet import optimizers
        >>> old = {"opt/0/inner_state/0/count": np.int32(2),
        ...        "opt/0/inner_state/0/mu/w": np.zeros(2, np.float32)}
        >>> new = optimizers.upgrade_saved_state(optimizers.Nadam(), old)
        >>> sorted(new), round(float(new["opt/0/inner_state/u_product"]), 4)
        (['opt/0/inner_state/count', 'opt/0/inner_state/mu/w', 'opt/0/inner_state/u_product'], 0.2271)
    """
    if not isinstance(optimizer, Nadam):
        return tensors
    counts = [n for n in tensors if n.endswith("/inner_state/0/count")]
    if len(counts) != 1:
        return tensors
    old = counts[0][:-len("count")]
    new = old[:-len("0/")]
    if new + "count" in tensors:
        return tensors
    out = {(new + n[len(old):] if n.startswith(old) else n): a for n, a in tensors.items()}
    steps = np.arange(1, int(np.asarray(tensors[counts[0]])) + 1, dtype=np.float32)
    # Keras's schedule (nadam_momentum) for every step at once, in NumPy: a long run's file
    # loads without one JAX call per step. cumprod multiplies in order, as the update does.
    u = np.float32(optimizer.hyper["beta_1"]) * (
        np.float32(1.0) - np.float32(0.5) * np.power(np.float32(0.96), steps))
    u_product = np.cumprod(u, dtype=np.float32)[-1] if steps.size else np.float32(1.0)
    out[new + "u_product"] = np.asarray(u_product, np.float32)
    return out


def keeps_non_finite(optimizer) -> bool:
    """Whether a non-finite gradient always leaves a non-finite value in the weights or the
    optimizer state after one update of `optimizer`: true of kilnet's own optimizers (each
    one's update of an inf or NaN gradient is inf or NaN, tests/test_nonfinite_update.py checks
    every one), false with clipvalue (it clips inf to a finite bound) and for an Optax
    transformation of the user's, whose update kilnet cannot know. The compiled step checks
    the gradient itself only where this is false (kilnet.programs).

    Example:
        >>> from kilnet import optimizers
        >>> optimizers.keeps_non_finite(optimizers.Adam()), optimizers.keeps_non_finite(
        ...     optimizers.SGD(clipvalue=1.0))
        (True, False)
    """
    return (isinstance(optimizer, Optimizer) and type(optimizer) in OPTIMIZER_TYPES.values()
            and optimizer.clipvalue is None)


def transformation(optimizer) -> optax.GradientTransformation:
    return optimizer.build() if isinstance(optimizer, Optimizer) else optimizer


def _check_learning_rate(value):
    if callable(value):
        return
    # A non-finite rate would turn finite gradients into non-finite parameters.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(
            "learning_rate must be a positive number or a schedule (a function of the step). "
            f"Received: learning_rate={value!r}"
        )


# -- the learning rate inside an optimizer state, for callbacks ----------------------------------
# Recent optax (0.2.8 here) builds inject_hyperparams on InjectStatefulHyperparamsState, a
# class distinct from InjectHyperparamsState: match either.
_INJECT_STATES = tuple(getattr(optax, name) for name in
                       ("InjectHyperparamsState", "InjectStatefulHyperparamsState")
                       if hasattr(optax, name))


def _hyperparam_states(opt_state):
    is_inject = lambda s: isinstance(s, _INJECT_STATES)
    return [s for s in jax.tree.leaves(opt_state, is_leaf=is_inject) if is_inject(s)]


def get_learning_rate(opt_state) -> float:
    states = _hyperparam_states(opt_state)
    if not states:
        raise ValueError(
            "This optimizer does not expose its learning rate (a raw Optax transformation). "
            "Use a kilnet.optimizers class, e.g. kilnet.optimizers.Adam(learning_rate=1e-3)."
        )
    return float(states[0].hyperparams["learning_rate"])  # host sync: callbacks only


def set_learning_rate(opt_state, value: float):
    """A new optimizer state with the learning rate replaced (same structure: no recompile)."""
    _check_learning_rate(value)
    is_inject = lambda s: isinstance(s, _INJECT_STATES)

    def replace(s):
        if not is_inject(s):
            return s
        old = s.hyperparams["learning_rate"]
        return s._replace(hyperparams={**s.hyperparams,
                                       "learning_rate": jnp.asarray(value, old.dtype)})

    if not _hyperparam_states(opt_state):
        get_learning_rate(opt_state)  # raises the explanatory error
    return jax.tree.map(replace, opt_state, is_leaf=is_inject)


# -- the initial optimizer state, without compiling --------------------------------------------
# Optax's init functions only fill arrays with constants (zeros, a learning rate, an initial
# accumulator). Run eagerly, each jnp op compiles on first use (0.42 s for Adam on the seed
# MLP); jitted, the one program still compiles in 0.10 s of a 1.8 s cold fit. Evaluating the
# traced init with NumPy costs a few milliseconds; other primitives fall back to jax.jit.
_HOST_PRIMITIVES = {
    "broadcast_in_dim": lambda x, *, shape, broadcast_dimensions, **_: np.broadcast_to(
        np.expand_dims(x, tuple(i for i in range(len(shape)) if i not in broadcast_dimensions))
        if np.ndim(x) else x, shape),
    "mul": lambda a, b, **_: np.multiply(a, b),
    "add": lambda a, b, **_: np.add(a, b),
    "convert_element_type": lambda x, *, new_dtype, **_: np.asarray(x, new_dtype),
}


def init_state(tx: optax.GradientTransformation, params):
    """tx.init(params), evaluated on the host when its trace allows, then put on the device."""
    closed = jax.make_jaxpr(tx.init)(params)
    jaxpr = closed.jaxpr
    if any(eqn.primitive.name not in _HOST_PRIMITIVES for eqn in jaxpr.eqns):
        return jax.jit(tx.init)(params)
    env = {}

    def read(atom):
        return atom.val if isinstance(atom, jax_core.Literal) else env[atom]

    for var, value in zip(jaxpr.constvars, closed.consts):
        env[var] = np.asarray(value)
    for var, value in zip(jaxpr.invars, jax.tree.leaves(params)):
        env[var] = value
    for eqn in jaxpr.eqns:
        inputs = [np.asarray(read(v)) for v in eqn.invars]
        out = _HOST_PRIMITIVES[eqn.primitive.name](*inputs, **eqn.params)
        env[eqn.outvars[0]] = out
    leaves = [np.array(read(v), dtype=v.aval.dtype) for v in jaxpr.outvars]
    structure = jax.tree.structure(jax.eval_shape(tx.init, params))
    return jax.device_put(jax.tree.unflatten(structure, leaves))

from kilnet.loss_scale import LossScaleOptimizer  # noqa: E402,F401  (Keras's name here)
