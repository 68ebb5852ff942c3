"""Connectionist temporal classification (CTC) loss with Keras's `ops.ctc_loss` conventions.

Why a leaf module: both kilnet.losses (the CTC loss class) and kilnet.ops can offer it, and
neither should import the other for it. The computation is optax's CTC forward pass, which is
the algorithm (and the log-space floor of -1e5) Keras's JAX backend uses; this module only
turns Keras's arguments (lengths) into optax's (paddings).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def _paddings(lengths, max_length: int, dtype):
    """1.0 at the positions at or past each row's length, 0.0 before (optax's paddings)."""
    positions = jnp.arange(max_length)[None, :]
    return (positions >= jnp.asarray(lengths, jnp.int32)[:, None]).astype(dtype)


def ctc_loss(target, output, target_length, output_length, mask_index=0):
    """The CTC loss of each sequence, shape (batch,), as Keras's `ops.ctc_loss`.

    `target`: integer labels (batch, max_label_length); `output`: unnormalized scores
    (batch, max_time, num_classes), log-softmaxed here; `target_length` / `output_length`:
    the real length of each label row / each output sequence; `mask_index`: the blank class.

    Example:
        >>> import numpy as np
        >>> scores = np.zeros((1, 2, 2), np.float32)   # 2 steps, blank 0 and one class
        >>> round(float(ctc_loss(np.array([[1]]), scores, np.array([1]), np.array([2]))[0]),
        ...       4)   # three of the four equally likely paths read "1": -log(3/4)
        0.2877
    """
    output = jnp.asarray(output)
    if not jnp.issubdtype(output.dtype, jnp.floating):
        output = output.astype(jnp.float32)
    output = output.astype(jnp.promote_types(output.dtype, jnp.float32))
    target = jnp.asarray(target).astype(jnp.int32)
    if target.ndim != 2 or output.ndim != 3 or target.shape[0] != output.shape[0]:
        raise ValueError(
            "ctc_loss needs target (batch, max_label_length) and output (batch, max_time, "
            f"num_classes) with the same batch size. Received: target.shape={target.shape}, "
            f"output.shape={output.shape}")
    return optax.ctc_loss(
        output, _paddings(output_length, output.shape[1], output.dtype),
        target, _paddings(target_length, target.shape[1], output.dtype),
        blank_id=mask_index, log_epsilon=-1e5)
