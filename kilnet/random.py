"""Keras's `keras.random`, on JAX: random numbers for layers (dropout, noise) and user code.

Why it exists: JAX has no hidden random state; every draw takes an explicit key. Keras code
instead passes a `seed`, usually a `SeedGenerator` kept on the layer, and expects a fresh draw on
each call. This module turns each kind of `seed` into a key:

- a `SeedGenerator`: inside a training step (an apply scope that carries a key, see
  kilnet._scope) the key comes from that step's key, so every draw in a compiled step differs,
  every step differs, and re-tracing the step gives the same keys. Where its `state` is bound
  (`Layer.stateless_call`, under your own `jax.jit` too; kilnet's evaluate and predict
  programs, which carry the model's states from batch to batch and store them after each
  call) the bound value is the key and the advanced state is returned with the
  non-trainable variables, as Keras's; outside any scope
  the stored state is the key and advances, so successive eager calls differ, reproducibly
  for a given seed (the same numbers as Keras's generator on JAX).
- an int: the key `SeedGenerator(seed)` draws first (`[seed, 0]`, uint32), as Keras's
  `draw_seed`: the same numbers on every call, eagerly and inside a compiled step, and the
  same numbers as Keras's on JAX from the same int. Seeds outside [0, 2**32) are taken modulo
  2**32, as a generator's are (Keras refuses them).
- None: the scope's next key inside a step; otherwise a key from `kilnet.utils.next_seed()`
  (reproducible after `kilnet.utils.set_random_seed`).
- a JAX key array (typed, or raw uint32): used as is.

Example:
    >>> from kilnet import random
    >>> x = random.normal((2, 3), seed=42)
    >>> x.shape, str(x.dtype), bool((x == random.normal((2, 3), seed=42)).all())
    ((2, 3), 'float32', True)
    >>> gen = random.SeedGenerator(7)
    >>> bool((random.uniform((4,), seed=gen) == random.uniform((4,), seed=gen)).all())
    False
"""

from __future__ import annotations

import itertools
import numbers
import random as python_random

import jax
import jax.numpy as jnp
import numpy as np

from kilnet import _scope, utils
from kilnet.variables import Variable, to_array

__all__ = [
    "SeedGenerator",
    "beta",
    "binomial",
    "categorical",
    "draw_key",
    "dropout",
    "gamma",
    "normal",
    "randint",
    "shuffle",
    "truncated_normal",
    "uniform",
]

FLOATX = "float32"  # Keras's default float dtype


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class SeedGenerator:
    """A source of fresh keys for the random functions' `seed` argument, as
    `keras.random.SeedGenerator`: keep one on a layer and pass it on every call.

    Its `state` is Keras's: a uint32 Variable of shape (2,) named "seed_generator_state",
    starting at `[seed, 0]`, not trainable, listed in its layer's `variables` and
    `non_trainable_variables` (not in `weights` or saved files). Each draw uses the state as
    the raw JAX key and advances it by `[0, 1]`, so an eager sequence of draws gives the same
    numbers as Keras's on JAX.

    Args:
        seed: an int; None draws one as Keras's does (Python's `random`, which
            `kilnet.utils.set_random_seed` seeds).
        name: the generator's name (default "seed_generator", "seed_generator_1", ...): the
            first segment of its state's path, as Keras's.

    Example:
        >>> import numpy as np
        >>> from kilnet import random
        >>> a, b = random.SeedGenerator(3), random.SeedGenerator(3)
        >>> [bool((random.normal((2,), seed=a) == random.normal((2,), seed=b)).all())
        ...  for _ in range(2)]
        [True, True]
        >>> a.state.numpy().tolist(), str(a.state.dtype), a.state.trainable
        ([3, 2], 'uint32', False)
    """

    def __init__(self, seed=None, name=None):
        if seed is not None and not _is_int(seed):
            raise TypeError("Argument `seed` of SeedGenerator must be an int or None. "
                            f"Received: seed={seed!r} (of type {type(seed).__name__})")
        self._initial_seed = seed
        # None: Keras's default seed, from Python's generator (set_random_seed seeds it); not
        # from utils.next_seed, whose stream decides the models' own seeds
        self.seed = python_random.randint(1, 10**9) if seed is None else int(seed)
        self.name = name or _auto_name()
        with _scope.weights_named(self.name):
            self.state = Variable(_first_key(self.seed),
                                  name="seed_generator_state", trainable=False, dtype="uint32")

    def next(self):
        """A fresh JAX key, as Keras's `next()`:

        - inside a compiled kilnet step (its scope carries a key): derived from that step's
          key, so every draw and every step differs and the state is left as it is;
        - where the state is bound to a value (`stateless_call`, also under your own
          `jax.jit`): that value is the key, and the advanced value (+[0, 1]) is recorded as
          the state's new value, which stateless_call returns;
        - in a trace for shapes only (a symbolic call, a layer's build): the state's value,
          which stays as it is (Keras's symbolic calls leave it too);
        - in kilnet's evaluate and predict programs (and the `*_on_batch` calls) the model's
          states are bound, as in stateless_call: each batch draws from them and they
          advance, so every call draws anew, as Keras's;
        - otherwise (an eager call): the state's current value is the key and the state
          advances by [0, 1]. Under a trace with no binding this key is fixed when tracing.

        Example:
            >>> from kilnet import random
            >>> gen = random.SeedGenerator(5)
            >>> gen.next().tolist(), gen.next().tolist(), gen.state.numpy().tolist()
            ([5, 0], [5, 1], [5, 2])
        """
        # An eager call draws from the stored state, as Keras's does, whatever its mode
        # (its own key serves kilnet's layers; one given no training may still carry one)
        scope_key = None if _scope.in_eager_call() else _scope.next_rng()
        if scope_key is not None:
            # Distinct generators drawing in the same step get distinct keys.
            return jax.random.fold_in(scope_key, self.seed % 2**32)
        bound = _scope.lookup(self.state)
        if bound is not None:
            bound = jnp.asarray(bound, jnp.uint32)
            self.state.assign(bound + jnp.asarray([0, 1], jnp.uint32))
            return bound
        current = self.state.numpy()
        if _scope.tracing_shapes_only():   # a symbolic call or a build: nothing is drawn
            return jnp.asarray(current)
        # the first trace of an inference program: it is traced again with the states bound
        _scope.unkeyed_draw()
        # a host value even while tracing: the stored state must stay a concrete array
        with jax.ensure_compile_time_eval():
            self.state.assign(current + np.array([0, 1], np.uint32))
        return jnp.asarray(current)

    def get_config(self) -> dict:
        return {"seed": self._initial_seed, "name": self.name}

    @classmethod
    def from_config(cls, config: dict) -> "SeedGenerator":
        return cls(**config)

    def __repr__(self):
        return f"<SeedGenerator {self.name!r} seed={self.seed}>"


_generator_count = itertools.count()


def _auto_name() -> str:
    """Keras's default generator names: "seed_generator", then "seed_generator_1", ..."""
    count = next(_generator_count)
    return "seed_generator" if count == 0 else f"seed_generator_{count}"


def _first_key(seed: int) -> np.ndarray:
    """A generator's starting state, which is also the key of an int seed: Keras derives
    both from the seed the same way, so `seed=s` and `seed=SeedGenerator(s)` draw alike."""
    return np.array([int(seed) % 2**32, 0], np.uint32)


def _is_key(seed) -> bool:
    if not isinstance(seed, jax.Array):
        return False
    if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return True
    return seed.dtype == jnp.uint32 and seed.ndim == 1


def draw_key(seed=None):
    """The JAX key a random function uses for `seed` (see the module docstring).

    Example:
        >>> draw_key(1).tolist()   # an int's key is Keras's: [seed, 0], uint32
        [1, 0]
    """
    if isinstance(seed, SeedGenerator):
        return seed.next()
    if _is_int(seed):
        # made on the host, as the generator's eager keys: a constant even under a trace
        return jax.device_put(_first_key(seed))
    if seed is None:
        key = _scope.next_rng()
        return utils.raw_key(utils.next_seed()) if key is None else key
    if _is_key(seed):
        return seed
    raise TypeError("Argument `seed` must be an int, a kilnet.random.SeedGenerator, a JAX key "
                    f"array or None. Received: seed={seed!r} (of type {type(seed).__name__})")


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Samples from a normal distribution with the given mean and standard deviation."""
    sample = jax.random.normal(draw_key(seed), shape, dtype=dtype or FLOATX)
    return sample * stddev + mean


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
    """Samples from the uniform distribution on `[minval, maxval)`."""
    return jax.random.uniform(draw_key(seed), shape, dtype=dtype or FLOATX,
                              minval=minval, maxval=maxval)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
    """Normal samples redrawn beyond two standard deviations (as Keras: the bounds are
    `mean -/+ 2 * stddev`)."""
    sample = jax.random.truncated_normal(draw_key(seed), -2.0, 2.0, shape,
                                         dtype=dtype or FLOATX)
    return sample * stddev + mean


def randint(shape, minval, maxval, dtype="int32", seed=None):
    """Integers drawn uniformly from `[minval, maxval)`."""
    return jax.random.randint(draw_key(seed), shape, minval, maxval, dtype=dtype)


def categorical(logits, num_samples, dtype="int32", seed=None):
    """`num_samples` class indices per row of `logits` (shape `(batch, classes)`, unnormalized
    log-probabilities); returns shape `(batch, num_samples)`.

    Example:
        >>> import numpy as np
        >>> categorical(np.log([[0.5, 0.5, 1e-9]]), 4, seed=0).shape
        (1, 4)
    """
    logits = jnp.asarray(to_array(logits))
    if logits.ndim != 2:
        raise ValueError("Argument `logits` must be 2-D, of shape (batch_size, num_classes). "
                         f"Received: logits of shape {logits.shape}; add a batch axis with "
                         "`logits[None]` for a single row")
    # Keras's layout: the classes on axis 1 and the samples broadcast along a trailing axis,
    # so the Gumbel noise is drawn in the same order (batch, classes, samples) as Keras's.
    samples = jax.random.categorical(draw_key(seed), logits[..., None], axis=1,
                                     shape=(logits.shape[0], num_samples))
    return samples.astype(dtype)


def dropout(inputs, rate, noise_shape=None, seed=None):
    """Zero each element of `inputs` with probability `rate` and scale the kept ones by
    `1 / (1 - rate)`, so the expected value is unchanged. `noise_shape` (broadcast against
    the input's shape; None entries take the input's size) shares one draw across an axis."""
    if isinstance(rate, numbers.Real) and not 0 <= rate < 1:
        raise ValueError(f"Argument `rate` must be in [0, 1). Received: rate={rate!r}")
    inputs = to_array(inputs)
    if not isinstance(inputs, (np.ndarray, jax.Array)):
        inputs = jnp.asarray(inputs)
    if isinstance(rate, numbers.Real) and rate == 0:
        return inputs   # as Keras: nothing dropped, no key drawn
    if noise_shape is None:
        noise_shape = inputs.shape
    noise_shape = tuple(inputs.shape[i] if size is None else size
                        for i, size in enumerate(noise_shape))
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(draw_key(seed), keep_prob, noise_shape)
    # A NumPy input is scaled by NumPy, as in Keras: its float32 division rounds differently
    # from XLA's in the last bit, so this keeps the kept values equal to Keras's.
    scaled = inputs / keep_prob
    # broadcast_to, not implicit broadcasting: a noise_shape that does not fit is an error
    return jnp.where(jnp.broadcast_to(keep, inputs.shape), scaled, 0)


def shuffle(x, axis=0, seed=None):
    """`x` with its slices along `axis` in a random order.

    A 1-D `x` comes out in Keras's order on JAX. An N-D `x` keeps each slice whole (as
    keras.random.shuffle on the TensorFlow and PyTorch backends; Keras 3 on JAX shuffles each
    column on its own), its slices in the order a 1-D `arange` of their count would take.

    Example:
        >>> import numpy as np
        >>> shuffle(np.arange(10), seed=1).tolist()   # Keras's numbers for seed=1
        [9, 4, 7, 0, 1, 6, 5, 2, 3, 8]
        >>> pairs = shuffle(np.arange(6).reshape(3, 2), seed=2)
        >>> bool((pairs[:, 1] - pairs[:, 0] == 1).all())
        True
    """
    return jax.random.permutation(draw_key(seed), jnp.asarray(to_array(x)), axis=axis,
                                  independent=False)


def gamma(shape, alpha, dtype=None, seed=None):
    """Samples from the gamma distribution with concentration `alpha` (scale 1)."""
    return jax.random.gamma(draw_key(seed), jnp.asarray(to_array(alpha)), shape,
                            dtype=dtype or FLOATX)


def binomial(shape, counts, probabilities, dtype=None, seed=None):
    """Number of successes in `counts` trials of probability `probabilities` (floats, as
    Keras)."""
    return jax.random.binomial(draw_key(seed), jnp.asarray(to_array(counts)),
                               jnp.asarray(to_array(probabilities)), shape,
                               dtype=dtype or FLOATX)


def beta(shape, alpha, beta, dtype=None, seed=None):
    """Samples from the beta distribution with concentrations `alpha` and `beta` (values in
    [0, 1]; mean `alpha / (alpha + beta)`), as Keras's `keras.random.beta`.

    Example:
        >>> sample = beta((1000,), 2.0, 6.0, seed=0)
        >>> bool(0.2 < float(sample.mean()) < 0.3)
        True
    """
    return jax.random.beta(draw_key(seed), jnp.asarray(to_array(alpha)),
                           jnp.asarray(to_array(beta)), shape, dtype=dtype or FLOATX)
