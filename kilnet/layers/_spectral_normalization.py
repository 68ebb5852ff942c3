"""SpectralNormalization: a wrapper that divides its layer's kernel by the kernel's largest
singular value while training (Miyato et al., 2018), as Keras's SpectralNormalization, to
bound the Lipschitz constant of a GAN's discriminator.

Why it is written this way: the wrapped layer is a sub-layer in kilnet's pure form, as
TimeDistributed's is, so in training `apply` runs it with the normalized kernel put in place of
its own, and returns the power iteration's new `vector_u` as state. The kernel variable keeps
the unnormalized kernel that the optimizer trains, which is what Keras's fit does on JAX (its
stateless training step drops the layer's assignment to a trainable variable); Keras's eager
call with training=True also writes the normalized kernel into the variable, kilnet's does
not. Inference uses the kernel as it is, as Keras's does.

The weights are in Keras's order: the kernel (which Keras's wrapper also tracks as its own),
`vector_u`, then the wrapped layer's other weights.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from kilnet import initializers
from kilnet.layers._input_spec import InputSpec
from kilnet.layers._wrappers import Wrapper
from kilnet.ops import nn
from kilnet.variables import Variable

# The weights Keras normalizes: a kernel (Dense, convolutions), else an Embedding's table.
KERNEL_NAMES = ("kernel", "embeddings")


class SpectralNormalization(Wrapper):
    """Divides the wrapped layer's kernel by its spectral norm in training, as Keras's
    SpectralNormalization.

    The spectral norm sigma is estimated by `power_iterations` steps of the power method on
    the kernel seen as a matrix (its last axis against all the others), starting from the
    non-trainable `vector_u` (1, units), which each training call updates. Inference runs the
    layer with its kernel unchanged.

    Args:
        layer: a layer with a `kernel` (Dense, Conv2D, ...) or `embeddings` (Embedding)
            weight.
        power_iterations: the steps of the power method per training call (default 1).

    Example:
        >>> import numpy as np
        >>> import kilnet
        >>> conv = kilnet.layers.SpectralNormalization(kilnet.layers.Conv2D(2, 2))
        >>> conv(np.ones((1, 10, 10, 1)), training=True).shape
        (1, 9, 9, 2)
        >>> [w.name for w in conv.weights], conv.vector_u.shape
        (['kernel', 'vector_u', 'bias'], (1, 2))
    """

    def __init__(self, layer, power_iterations=1, **kwargs):
        super().__init__(layer, **kwargs)
        if isinstance(power_iterations, bool) or not isinstance(power_iterations, int) \
                or power_iterations < 1:
            raise ValueError("power_iterations must be a positive integer (the steps of the "
                             "power method per training call), e.g. power_iterations=1. "
                             f"Received: power_iterations={power_iterations!r}")
        self.power_iterations = power_iterations

    def get_config(self):
        config = super().get_config()
        config["power_iterations"] = self.power_iterations
        return config

    @property
    def kernel(self):
        """The wrapped layer's kernel (or embeddings) Variable, the one normalized."""
        for name in KERNEL_NAMES:
            variable = getattr(self.layer, name, None)
            if isinstance(variable, Variable):
                return variable
        raise ValueError(f"SpectralNormalization wraps a layer with a 'kernel' or "
                         f"'embeddings' weight (Dense, Conv2D, Embedding, ...). Received: "
                         f"{type(self.layer).__name__} with the weights "
                         f"{[w.name for w in self.layer.weights]}")

    def sample_output_shape(self, input_shape):
        return self.layer.sample_output_shape(input_shape)

    def init(self, rng, input_shape):
        self.layer.build_weights(rng, input_shape)
        units = self.kernel.shape[-1]
        self.input_spec = InputSpec(min_ndim=1, axes={-1: input_shape[-1]})
        vector_u = initializers.TruncatedNormal(stddev=0.02).sample(rng, (1, units))
        return (self.params_tree(), {**self.state_tree(), "vector_u": vector_u},
                self.sample_output_shape(input_shape))

    def variable_paths(self, prefix=()):
        # Keras's order: the kernel first (its wrapper tracks it as its own), then vector_u,
        # then the wrapped layer's other weights.
        if not any(v.name == "vector_u" for v in self._non_trainable_vars):
            yield from super().variable_paths(prefix)   # not built yet
            return
        inner = list(self.layer.variable_paths(prefix + (self.layer.name,)))
        kernel = self.kernel
        yield from (entry for entry in inner if entry[2] is kernel)
        yield prefix + ("vector_u",), "state", self.vector_u
        yield from (entry for entry in inner if entry[2] is not kernel)

    def apply(self, params, state, x, *, training=False, rng=None, sample_mask=None,
              **kwargs):
        inner, state = self.layer, dict(state)
        inner_params = params[inner.name]
        if training:
            name = self.kernel.name
            state["vector_u"], normalized = normalized_kernel(
                inner_params[name], state["vector_u"], self.power_iterations)
            inner_params = {**inner_params, name: normalized}
        y, state[inner.name] = inner.apply(inner_params, state[inner.name], x,
                                           training=training, rng=rng,
                                           sample_mask=sample_mask, **kwargs)
        return y, state


def normalized_kernel(kernel, vector_u, power_iterations: int = 1):
    """(the new vector_u, kernel / sigma): `power_iterations` steps of the power method on the
    kernel as a (-1, units) matrix from `vector_u`, and sigma = v W u^T, the estimate of its
    largest singular value. Gradients flow through the kernel (sigma included), not through
    u and v, as in Keras. An all-zero kernel (sigma 0) is returned as it is, with u unchanged.

    Example:
        >>> import numpy as np
        >>> kernel = np.diag([3.0, 1.0]).astype(np.float32)
        >>> u, normalized = normalized_kernel(kernel, np.ones((1, 2), np.float32), 20)
        >>> np.round(np.asarray(normalized, np.float64), 3).tolist()
        [[1.0, 0.0], [0.0, 0.333]]
    """
    kernel, vector_u = jnp.asarray(kernel), jnp.asarray(vector_u)

    def normalize(_):
        weights = kernel.reshape(-1, kernel.shape[-1])
        u = vector_u
        for _ in range(power_iterations):
            v = nn.normalize(u @ weights.T, axis=None)
            u = nn.normalize(v @ weights, axis=None)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        sigma = (v @ weights) @ u.T   # (1, 1)
        return u.astype(vector_u.dtype), (kernel / sigma).astype(kernel.dtype)

    return jax.lax.cond(jnp.all(kernel == 0), lambda _: (vector_u, kernel), normalize, None)
