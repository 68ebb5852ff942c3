"""The private names of Keras's MultiHeadAttention that its subclasses read, on kilnet's.

Keras's MultiHeadAttention has no public hook for changing how the heads attend, so
tutorials subclass it and override its private methods (`_compute_attention`,
`_masked_softmax`, `_build_attention`), reading its private settings (`self._key_dim`,
`self._num_heads`, `self._dropout`, ...) and the einsum equations its build makes
(`self._dot_product_equation`, `self._combine_equation`): keras.io's vit_small_ds scales its
queries by a learned temperature that way. These names are, in practice, its subclassing
API, so kilnet's MultiHeadAttention has them with Keras's meanings: this module gives the
settings under Keras's private names (`KerasPrivateSettings`, each one reading kilnet's
public setting of the same meaning) and builds Keras's equations (`attention_equations`).
The methods themselves are MultiHeadAttention's (kilnet.layers._attention).
"""

from __future__ import annotations

import math
import string

# Keras's private attribute -> the public setting of kilnet's layer that means the same
_KERAS_PRIVATE_SETTINGS = {
    "_num_heads": "num_heads", "_key_dim": "key_dim", "_value_dim": "value_dim",
    "_dropout": "dropout", "_use_bias": "use_bias", "_use_gate": "use_gate",
    "_attention_axes": "attention_axes", "_sliding_window": "sliding_window",
    "_kernel_initializer": "kernel_initializer", "_bias_initializer": "bias_initializer",
    "_kernel_regularizer": "kernel_regularizer", "_bias_regularizer": "bias_regularizer",
    "_activity_regularizer": "activity_regularizer",
    "_kernel_constraint": "kernel_constraint", "_bias_constraint": "bias_constraint",
}


def _reading(private: str, public: str) -> property:
    """A property `private` that reads the setting `public`, and refuses to be set (the
    projections are made from the settings when the layer is constructed, so a later
    change would not reach them)."""
    def read(self):
        return getattr(self, public)

    def refuse(self, value):
        raise AttributeError(
            f"{type(self).__name__}.{private} is Keras's private name for the {public} "
            f"setting, read-only in kilnet. Received: {private}={value!r:.100}. Give "
            f"{public}=... to the constructor (super().__init__({public}=...)) instead")

    return property(read, refuse, doc=f"Keras's private name for `{public}` (read-only).")


class KerasPrivateSettings:
    """MultiHeadAttention's settings under Keras's private names, as subclasses written for
    Keras read them: `_num_heads`, `_key_dim`, `_value_dim`, `_dropout` (the rate),
    `_use_bias`, `_use_gate`, `_attention_axes` (resolved once built), `_sliding_window`, the
    initializers, regularizers and constraints (`_kernel_initializer`, ...),
    `_inverse_sqrt_key_dim` (the scale of the scores) and `_flash_attention` (False: kilnet
    computes attention with XLA operations).

    Example:
        >>> import kilnet
        >>> attention = kilnet.layers.MultiHeadAttention(num_heads=2, key_dim=16)
        >>> attention._num_heads, attention._key_dim, attention._inverse_sqrt_key_dim
        (2, 16, 0.25)
    """

    _flash_attention = False

    @property
    def _inverse_sqrt_key_dim(self) -> float:
        """1 / sqrt(key_dim): Keras's scale of the queries before their product with the keys."""
        return 1.0 / math.sqrt(float(self.key_dim))


for _private, _public in _KERAS_PRIVATE_SETTINGS.items():
    setattr(KerasPrivateSettings, _private, _reading(_private, _public))
del _private, _public


def attention_equations(rank: int, attention_axes) -> tuple[str, str]:
    """Keras's einsum equations of multi-head attention over `attention_axes`, for projected
    query, key and value of `rank` axes (batch, ..., heads, features): the scores
    `einsum(dot_product, key, query)`, of axes (<batch and batch-like axes>, heads, <query's
    attended axes>, <key's attended axes>), and the output `einsum(combine, probabilities,
    value)`, laid out as the query. The key's attended axes take fresh letters, in axis
    order, after those of the query's axes; the scores list the query's other axes in order,
    then the attended ones in the order `attention_axes` gives.

    Example:
        >>> attention_equations(4, (1,))
        ('aecd,abcd->acbe', 'acbe,aecd->abcd')
        >>> attention_equations(6, (2, 3))
        ('abghef,abcdef->abecdgh', 'abecdgh,abghef->abcdef')
    """
    query = string.ascii_lowercase[:rank]
    fresh = iter(string.ascii_lowercase[rank:])
    key = "".join(next(fresh) if axis in attention_axes else letter
                  for axis, letter in enumerate(query))
    kept = [axis for axis in range(rank - 1) if axis not in attention_axes]
    scores = ("".join(query[axis] for axis in kept)
              + "".join(query[axis] for axis in attention_axes)
              + "".join(key[axis] for axis in attention_axes))
    return f"{key},{query}->{scores}", f"{scores},{key}->{query}"
