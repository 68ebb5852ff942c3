"""Keras's `keras.ops.linalg`: norms, factorizations and solvers, over `jax.numpy.linalg`.

Example:
    >>> import numpy as np
    >>> float(norm(np.array([3.0, 4.0])))
    5.0
"""

from __future__ import annotations

import jax.numpy as jnp

from kilnet.ops._convert import as_float, dispatch_symbolic

__all__ = [
    "norm",
]


# -- linear algebra -----------------------------------------------------------------------------

def norm(x, ord=None, axis=None, keepdims=False):
    """Vector or matrix norm (NumPy's `ord` conventions); integers give float32."""
    return jnp.linalg.norm(as_float(x), ord=ord, axis=axis, keepdims=keepdims)


dispatch_symbolic(globals(), __all__)
