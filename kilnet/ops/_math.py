"""Keras's math ops: log-sum-exp, top-k, segment reductions and the float-returning special
functions.

Example:
    >>> import numpy as np
    >>> values, indices = top_k(np.array([3.0, 1.0, 2.0]), k=2)
    >>> values.tolist(), indices.tolist()
    ([3.0, 2.0], [0, 2])
"""

from __future__ import annotations

import jax

from kilnet.ops._convert import as_array, as_float, dispatch_symbolic

__all__ = [
    "logsumexp", "top_k", "segment_sum", "segment_max", "rsqrt", "erf",
]


# -- reductions ---------------------------------------------------------------------------------

def logsumexp(x, axis=None, keepdims=False):
    """`log(sum(exp(x)))` over `axis`, computed without overflow."""
    return jax.nn.logsumexp(as_array(x), axis=axis, keepdims=keepdims)



# -- shapes and indexing ------------------------------------------------------------------------

def top_k(x, k, sorted=True):
    """The `k` largest values along the last axis and their indices, largest first (JAX always
    sorts, which `sorted=False` allows)."""
    values, indices = jax.lax.top_k(as_array(x), k)
    return values, indices


def segment_sum(data, segment_ids, num_segments=None, sorted=False):
    """Sum of the rows of `data` that share a segment id; `num_segments` must be static
    under `jax.jit`."""
    return jax.ops.segment_sum(as_array(data), as_array(segment_ids), num_segments,
                               indices_are_sorted=sorted)


def segment_max(data, segment_ids, num_segments=None, sorted=False):
    """Maximum of the rows of `data` that share a segment id."""
    return jax.ops.segment_max(as_array(data), as_array(segment_ids), num_segments,
                               indices_are_sorted=sorted)



# -- elementwise math ---------------------------------------------------------------------------

def rsqrt(x):
    """Elementwise `1 / sqrt(x)`."""
    return jax.lax.rsqrt(as_float(x))


def erf(x):
    """Elementwise Gauss error function."""
    return jax.lax.erf(as_float(x))


dispatch_symbolic(globals(), __all__)
