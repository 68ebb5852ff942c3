"""Keras's `keras.ops.nn`: activations, normalizations, one-hot, cross-entropies and the
neural-network primitives, over `jax.nn` and `jax.lax`.

Example:
    >>> import numpy as np
    >>> relu(np.array([-1.0, 2.0])).tolist()
    [0.0, 2.0]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import config
from kilnet.ops._convert import as_array, as_float, FLOATX, dispatch_symbolic

__all__ = [
    "relu", "relu6", "sigmoid", "log_sigmoid", "softmax", "log_softmax", "softplus", "silu",
    "swish", "hard_sigmoid", "hard_silu", "softsign", "gelu", "leaky_relu", "elu", "selu",
    "one_hot", "moments", "normalize", "binary_crossentropy", "categorical_crossentropy",
    "sparse_categorical_crossentropy",
]


# -- neural network functions -------------------------------------------------------------------

def relu(x):
    """`max(x, 0)`."""
    return jax.nn.relu(as_array(x))


def relu6(x):
    """`min(max(x, 0), 6)`."""
    return jax.nn.relu6(as_array(x))


def sigmoid(x):
    """`1 / (1 + exp(-x))`."""
    return jax.nn.sigmoid(as_array(x))


def log_sigmoid(x):
    """`log(sigmoid(x))`, computed without overflow."""
    return jax.nn.log_sigmoid(as_array(x))


def softmax(x, axis=-1):
    """`exp(x) / sum(exp(x))` along `axis`."""
    return jax.nn.softmax(as_array(x), axis=axis)


def log_softmax(x, axis=-1):
    """`log(softmax(x))` along `axis`, computed without overflow."""
    return jax.nn.log_softmax(as_array(x), axis=axis)


def softplus(x):
    """`log(1 + exp(x))`, computed without overflow."""
    return jax.nn.softplus(as_array(x))


def silu(x):
    """`x * sigmoid(x)` (also called swish)."""
    return jax.nn.silu(as_array(x))


swish = silu  # Keras exports the same function under both names


def hard_sigmoid(x):
    """`relu6(x + 3) / 6` (Keras 3's hard sigmoid)."""
    return jax.nn.hard_sigmoid(as_array(x))


def hard_silu(x):
    """`x * hard_sigmoid(x)` (also called hard swish)."""
    return jax.nn.hard_silu(as_array(x))


def softsign(x):
    """`x / (1 + |x|)`."""
    return jax.nn.soft_sign(as_array(x))


def gelu(x, approximate=True):
    """Gaussian error linear unit; the tanh approximation by default, as keras.ops.gelu (the
    "gelu" activation string uses the exact form)."""
    return jax.nn.gelu(as_array(x), approximate=approximate)


def leaky_relu(x, negative_slope=0.2):
    """`x` for positive values, `negative_slope * x` otherwise (Keras's default slope 0.2)."""
    return jax.nn.leaky_relu(as_array(x), negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """`x` for positive values, `alpha * (exp(x) - 1)` otherwise."""
    return jax.nn.elu(as_array(x), alpha=alpha)


def selu(x):
    """Scaled exponential linear unit (the self-normalizing constants)."""
    return jax.nn.selu(as_array(x))


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    """One-hot encoding of integer labels along a new `axis` (float32 by default); labels
    outside `[0, num_classes)` encode as all zeros."""
    if sparse:
        raise ValueError("kilnet has no sparse tensors. Received: sparse=True")
    return jax.nn.one_hot(as_array(x), num_classes, dtype=dtype or FLOATX, axis=axis)


def moments(x, axes, keepdims=False, synchronized=False):
    """`(mean, variance)` of `x` over `axes`. Half-precision inputs are reduced in float32,
    as in Keras, and the results cast back."""
    if synchronized:
        raise ValueError("moments(synchronized=True) is not supported: statistics are "
                         "computed per device. Received: synchronized=True")
    x = as_array(x)
    wide = x.astype(FLOATX) if x.dtype in (jnp.float16, jnp.bfloat16) else x
    mean_, variance = (jnp.mean(wide, axis=axes, keepdims=keepdims),
                       jnp.var(wide, axis=axes, keepdims=keepdims))
    # mean/var of an integer input are floats; only half precision is cast back
    if wide is not x:
        mean_, variance = mean_.astype(x.dtype), variance.astype(x.dtype)
    return mean_, variance


def normalize(x, axis=-1, order=2, epsilon=None):
    """`x / max(norm(x, order), epsilon)` along `axis` (order=2 is L2 normalization)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"Argument `order` must be an int >= 1. Received: order={order!r}")
    x = as_float(x)
    epsilon = config.epsilon() if epsilon is None else epsilon
    if order == 2:
        # Clamp the squared norm before rsqrt: a zero vector then has a finite gradient
        # (the gradient of the norm itself is 0/0 there).
        squares = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
        return x * jax.lax.rsqrt(jnp.maximum(squares, epsilon * epsilon))
    norms = jnp.linalg.norm(x, ord=order, axis=axis, keepdims=True)
    return x / jnp.maximum(norms, epsilon)


def _same_shape(target, output):
    if target.shape != output.shape:
        raise ValueError("Arguments `target` and `output` must have the same shape. "
                         f"Received: target.shape={target.shape}, output.shape={output.shape}")


def binary_crossentropy(target, output, from_logits=False):
    """Elementwise binary cross-entropy (no reduction). `output` is a probability, clipped to
    `[1e-7, 1 - 1e-7]`, or a logit with `from_logits=True`."""
    target, output = as_array(target), as_array(output)
    _same_shape(target, output)
    if from_logits:
        # log(sigmoid(z)) and log(1 - sigmoid(z)) = log(sigmoid(-z)), without overflow
        return -(target * jax.nn.log_sigmoid(output)
                 + (1.0 - target) * jax.nn.log_sigmoid(-output))
    output = jnp.clip(output, config.epsilon(), 1.0 - config.epsilon())
    return -(target * jnp.log(output) + (1.0 - target) * jnp.log1p(-output))


def _log_probs(output, from_logits, axis):
    """Log-probabilities along `axis`: log_softmax of logits, or of probabilities rescaled to
    sum to 1 and clipped away from 0 and 1 (as Keras)."""
    if from_logits:
        return jax.nn.log_softmax(output, axis=axis)
    output = output / jnp.sum(output, axis=axis, keepdims=True)
    return jnp.log(jnp.clip(output, config.epsilon(), 1.0 - config.epsilon()))


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between one-hot (or soft) `target` and `output` along `axis`, reducing
    that axis only."""
    target, output = as_array(target), as_array(output)
    _same_shape(target, output)
    if target.ndim < 1:
        raise ValueError("Arguments `target` and `output` must be at least rank 1. "
                         f"Received: target.shape={target.shape}")
    return -jnp.sum(target * _log_probs(output, from_logits, axis), axis=axis)


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    """Cross-entropy between integer class `target` and `output` (classes along `axis`); a
    trailing length-1 axis on `target` is dropped."""
    target, output = as_array(target).astype("int32"), as_array(output)
    if target.ndim == output.ndim and target.shape[-1] == 1:
        target = jnp.squeeze(target, axis=-1)
    if output.ndim < 1 or target.shape != output.shape[:-1]:
        raise ValueError("Argument `target` must have the shape of `output` without its last "
                         f"axis. Received: target.shape={target.shape}, "
                         f"output.shape={output.shape}")
    labels = jax.nn.one_hot(target, output.shape[axis], dtype=output.dtype, axis=axis)
    return -jnp.sum(labels * _log_probs(output, from_logits, axis), axis=axis)


dispatch_symbolic(globals(), __all__)
