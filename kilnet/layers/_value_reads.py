"""A layer's call() that reads a tensor's value into Python (`int(...)`, `.numpy()`,
`ops.convert_to_numpy(...)`, `if tensor:`): it needs concrete arrays.

Keras on JAX runs an eager call (`layer(x)` on arrays) op by op, so such a call runs there;
kilnet builds a layer by tracing its call abstractly, which such a call cannot take. JAX's
error from that read becomes CallReadsValues (`reading_values`), which the eager call catches
to build the layer on its concrete arrays instead (kilnet.layers._base). Under a trace
nothing can run it (fit's compiled step, jax.jit, a symbolic call), as in Keras: there the
error says why and what to write instead.
"""
from __future__ import annotations

import contextlib

import jax

# JAX's errors for a traced value read into Python (bool, int, float, NumPy conversion)
_VALUE_READ_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                      jax.errors.TracerBoolConversionError,
                      jax.errors.TracerIntegerConversionError)


class CallReadsValues(TypeError):
    """A layer's call() read a traced value into Python: it runs only on concrete arrays.

    Example:
        >>> issubclass(CallReadsValues, TypeError)   # as JAX's errors for it are
        True
    """


@contextlib.contextmanager
def reading_values(layer):
    """Around a run of `layer.call`: JAX's error for a value read into Python there comes
    out as CallReadsValues, naming the layer and the fix (the first layer met names it).

    Example:
        >>> import jax, kilnet
        >>> layer = kilnet.layers.Identity(name="reader")
        >>> def read(x):
        ...     with reading_values(layer):
        ...         return int(x)
        >>> try:
        ...     jax.jit(read)(1)
        ... except CallReadsValues as error:
        ...     print(str(error)[:56])
        Layer 'reader' (Identity) reads a tensor's value into Py
    """
    try:
        yield
    except _VALUE_READ_ERRORS as error:
        raise CallReadsValues(_explained(layer, error)) from error


def _explained(layer, error) -> str:
    first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
    said = f"JAX said: {type(error).__name__}: {first_line}"
    reads = (f"Layer {layer.name!r} ({type(layer).__name__}) reads a tensor's value into "
             "Python in call() (int(), float(), bool(), .numpy(), ops.convert_to_numpy, or "
             "`if` on a tensor). ")
    if jax.config.jax_disable_jit:
        # run eagerly (run_eagerly=True): only the differentiated loss's values are traced
        return reads + ("Run eagerly, the values inside the differentiated loss are JAX's "
                        "gradient tracers, as in Keras: read the value of "
                        "ops.stop_gradient(tensor) (nothing differentiates through a Python "
                        "value), or compute it with tensor ops (ops.take, ops.where). " + said)
    return reads + (
        "That needs concrete arrays: it runs in an eager call (layer(x) on arrays), but not "
        "where the call is traced: inside fit, evaluate or predict (compiled programs, as in "
        "Keras), jax.jit, or a call on symbolic inputs (keras.Input). Either compute the "
        "value with tensor ops instead (ops.take, ops.take_along_axis, ops.where, ops.cond), "
        "or build the model with an eager call (model(x)) and compile it with "
        "run_eagerly=True: kilnet then runs fit, evaluate and predict on concrete arrays "
        "(Keras on JAX does not). " + said)
