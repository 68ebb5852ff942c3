"""Keras's Adam update giving the new weights in one pass over each weight, on the CPU.

Why: XLA runs the update of a weight as three passes (the first moment, the second, then the
weight), each split over its threads. The seed MLP's 784x128 kernel spent 57 us a step in
them, a sixth of the epoch (2-core Xeon, XLA's per-kernel trace); the native handler
(`onednn.cc`, "adam_update") reads the gradient, moments and weight once and writes the
moments and weight once, on XLA's own threads: 40 us, and the seed MLP's epoch 0.30 -> 0.26 s
in a hand-written training loop.

The numbers are XLA's to the bit: `first_moment`, `second_moment` and `change` below are the update's
operations in Keras's order (kilnet.optimizers.keras_adam computes its updates with them),
and the handler performs the same operations, contracted into fused multiply-adds as XLA's
CPU code contracts them. So whether a weight goes through the handler (float32, on the CPU,
the native library built: `accepts`) changes the speed, not the result.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from kilnet._kernels import onednn

# Below this many float32 numbers in all, the weights stay in XLA's fusions: the handler's
# call and its threads cost more than they save on tiny models.
MIN_ELEMENTS = 4096


def first_moment(m, g, beta_1: float):
    """Adam's first moment after gradient `g`: m + (g - m)(1 - beta_1)."""
    return m + (g - m) * (1 - beta_1)


def second_moment(v, g, beta_2: float):
    """Adam's second moment after gradient `g`: v + (g^2 - v)(1 - beta_2)."""
    return v + (g * g - v) * (1 - beta_2)


def change(m, v, neg_alpha, epsilon: float, decay=None, p=None):
    """The step Keras's Adam adds to a weight: -alpha m / (sqrt(v) + epsilon), less
    `decay` * p with decoupled weight decay (AdamW; `decay` is learning rate * weight decay).
    The division is a multiplication by a reciprocal: XLA's precise division was the largest
    elementwise cost of an early CPU epoch measurement."""
    step = neg_alpha * m * jnp.reciprocal(jnp.sqrt(v) + epsilon)
    return step if decay is None else step - decay * p


def accepts(weights) -> bool:
    """Whether the float32 ones among `weights` (a list of arrays being traced) go through the
    native handler: on the CPU, with kilnet's native kernels available, and at least
    MIN_ELEMENTS numbers in all."""
    count = sum(w.size for w in weights if w.dtype == jnp.float32)
    return (count >= MIN_ELEMENTS and jax.default_backend() == "cpu"
            and onednn.available())


def new_weights(grads, mu, nu, params, neg_alpha, *, beta_1: float, beta_2: float,
                epsilon: float, decay=None, decayed=None):
    """(mu, nu, params) after one Adam step, as trees shaped like `params`: the float32
    weights in one native pass where `accepts` them, the others as XLA computes them.
    `neg_alpha`: minus the step's rate with Keras's bias corrections; `decay`: learning rate
    times weight decay (AdamW), or None; `decayed`: a tree of bools shaped like `params`, the
    weights `decay` applies to (those excluded from weight decay are False), or None: all.

    Example:
        >>> import jax.numpy as jnp
        >>> from kilnet.optimizers._adam_kernel import new_weights
        >>> g, m, v, p = (jnp.full((3,), x) for x in (0.5, 0.0, 0.0, 1.0))
        >>> mu, nu, params = new_weights(g, m, v, p, jnp.float32(-0.1), beta_1=0.9,
        ...                              beta_2=0.999, epsilon=1e-7)
        >>> [round(float(x), 5) for x in (mu[0], nu[0], params[0])]
        [0.05, 0.00025, 0.68377]
    """
    g_leaves, treedef = jax.tree.flatten(grads)
    m_leaves, v_leaves, p_leaves = (treedef.flatten_up_to(t) for t in (mu, nu, params))
    native = [i for i, p in enumerate(p_leaves) if p.dtype == jnp.float32] \
        if accepts(p_leaves) else []
    decay_of = ([decay] * len(p_leaves) if decayed is None or decay is None else
                [decay if d else None for d in treedef.flatten_up_to(decayed)])
    in_xla = set(range(len(p_leaves))) - set(native)
    out_m, out_v, out_p = list(m_leaves), list(v_leaves), list(p_leaves)
    for i in sorted(in_xla):
        g, m, v, p = g_leaves[i], m_leaves[i], v_leaves[i], p_leaves[i]
        out_m[i], out_v[i] = first_moment(m, g, beta_1), second_moment(v, g, beta_2)
        step = change(out_m[i], out_v[i], neg_alpha, epsilon, decay_of[i], p)
        out_p[i] = (p + step).astype(p.dtype)   # optax.apply_updates's sum, in p's dtype
    # One native call per decay: the handler takes one for all the weights it is given.
    for group in _by_decay(native, decay_of):
        results = _native(group, g_leaves, m_leaves, v_leaves, p_leaves, neg_alpha,
                          beta_1, beta_2, epsilon, decay_of[group[0]])
        for k, i in enumerate(group):
            out_m[i], out_v[i], out_p[i] = results[3 * k: 3 * k + 3]
    return tuple(jax.tree.unflatten(treedef, leaves) for leaves in (out_m, out_v, out_p))


def _by_decay(indices, decay_of) -> list:
    """`indices` in groups of one decay each (the decayed weights, then the excluded ones),
    in their order; no group is empty."""
    decayed = [i for i in indices if decay_of[i] is not None]
    excluded = [i for i in indices if decay_of[i] is None]
    return [group for group in (decayed, excluded) if group]


def _native(indices, g_leaves, m_leaves, v_leaves, p_leaves, neg_alpha, beta_1, beta_2,
            epsilon, decay):
    """One call of the native handler for the weights at `indices`: results m, v, p per
    weight, each in its operand's buffer where XLA can (in place)."""
    scalars = jnp.stack([jnp.asarray(neg_alpha, jnp.float32),
                         jnp.asarray(0.0 if decay is None else decay, jnp.float32)])
    operands, results, aliases = [scalars], [], {}
    for k, i in enumerate(indices):
        operands += [g_leaves[i], m_leaves[i], v_leaves[i], p_leaves[i]]
        shape = jax.ShapeDtypeStruct(p_leaves[i].shape, jnp.float32)
        results += [shape, shape, shape]
        first = 1 + 4 * k   # operand index of this weight's gradient
        aliases.update({first + 1: 3 * k, first + 2: 3 * k + 1, first + 3: 3 * k + 2})
    return onednn.call("adam_update", tuple(results), *operands, aliases=aliases,
                        c1=np.float32(1 - beta_1), c2=np.float32(1 - beta_2),
                        epsilon=np.float32(epsilon), decoupled=decay is not None)
