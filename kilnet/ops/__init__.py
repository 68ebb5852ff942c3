"""Keras's `keras.ops`, on JAX: the array functions a Keras-style layer's `call` is written in.

Why it exists: code ported from Keras says `ops.matmul(x, self.kernel)`, and it should run here
unchanged. Each function keeps Keras's name, argument names and defaults and is a thin wrapper
over `jax.numpy`, `jax.nn` or `jax.lax`; the wrapper adds only what Keras does differently:

- every array argument may be a `kilnet.variables.Variable` (JAX refuses to convert one
  implicitly, so each argument goes through `to_array`), a NumPy array, a list or a scalar;
- Keras's dtypes: creation functions default to float32, rounding and `rsqrt`/`erf` turn integers
  into float32, `shape` is a tuple of ints;
- Keras's control-flow conventions (`while_loop` unpacks its loop variables, `slice` reads -1 as
  "to the end").

Every function is traceable, so a `call` built from them compiles into the training step.

The functions live in modules named as Keras's: `kilnet.ops.numpy`, `kilnet.ops.nn`,
`kilnet.ops.linalg`, `kilnet.ops.image` (also public, as in Keras), and the core and math
functions (control flow, casts, segment sums, FFTs); this package re-exports them all.

Example:
    >>> import numpy as np
    >>> from kilnet import ops
    >>> from kilnet.variables import Variable
    >>> kernel = Variable(np.eye(2, dtype=np.float32), name="kernel")
    >>> y = ops.relu(ops.matmul(np.array([[1.0, -2.0]], np.float32), kernel))
    >>> ops.convert_to_numpy(y).tolist(), ops.shape(y)
    ([[1.0, 0.0]], (1, 2))
"""

from __future__ import annotations

from kilnet.ops import image, linalg, nn, numpy
from kilnet.ops._core import *  # noqa: F401,F403  (each module's __all__ is its public list)
from kilnet.ops._core import __all__ as _core_names
from kilnet.ops._einops import rearrange  # noqa: F401
from kilnet.ops._math import *  # noqa: F401,F403
from kilnet.ops._math import __all__ as _math_names
from kilnet.ops.linalg import *  # noqa: F401,F403
from kilnet.ops.nn import *  # noqa: F401,F403
from kilnet.ops.numpy import *  # noqa: F401,F403

__all__ = sorted({*_core_names, "rearrange", *_math_names, *linalg.__all__, *nn.__all__, *numpy.__all__}
                 | {"image", "linalg", "nn", "numpy"})
