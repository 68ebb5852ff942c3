"""Seeding. Randomness is always an explicit JAX key; this module only decides where the
first key comes from."""

from __future__ import annotations

import os
import random

import jax
import numpy as np

from kilnet import _names

_seed = {"value": None, "drawn": 0}


def set_random_seed(seed: int) -> None:
    """Make model initialization and training reproducible, as keras.utils.set_random_seed.

    Also seeds Python's and NumPy's global generators, for user code that relies on them.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    _seed["value"], _seed["drawn"] = int(seed), 0
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def clear_session() -> None:
    """Free JAX's compiled-program caches (Keras's clear_session frees its backend's state on
    TensorFlow and torch, not JAX's caches; freeing them returns about 1 GB after a heavy
    session), and number the default names of layers made on their own from the bare name
    again, as Keras does (a model numbers its layers' names itself).

    Example:
        >>> import kilnet
        >>> kilnet.utils.clear_session()
        >>> kilnet.layers.Dense(2).name, kilnet.layers.Dense(2).name
        ('dense', 'dense_1')
    """
    jax.clear_caches()
    _names.reset_process_numbering()


def seed_is_set() -> bool:
    """Whether set_random_seed decided the seeds of this process."""
    return _seed["value"] is not None


def next_seed() -> int:
    """A fresh integer seed: derived from set_random_seed's seed if set, else from the OS."""
    if _seed["value"] is None:
        return int.from_bytes(os.urandom(4), "little")
    _seed["drawn"] += 1
    return (_seed["value"] * 1_000_003 + _seed["drawn"]) % 2**31


def numpy_rng(seed: int, *purpose: int) -> np.random.Generator:
    """A NumPy generator for (seed, purpose...): used for weight init and data order."""
    return np.random.default_rng([int(seed), *map(int, purpose)])


def raw_key(seed: int, *purpose: int):
    """A JAX PRNG key (raw uint32[2]) for (seed, purpose...), made on the host: no XLA op."""
    state = np.random.SeedSequence([int(seed), *map(int, purpose)]).generate_state(2, np.uint32)
    return jax.device_put(state)
