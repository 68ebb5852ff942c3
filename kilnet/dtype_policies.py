"""Keras's `keras.dtype_policies` names: the dtype policies of kilnet.mixed_precision,
re-exported so code written for Keras 3 finds them where it looks.

Example:
    >>> from kilnet import dtype_policies
    >>> dtype_policies.get("mixed_bfloat16")
    <DTypePolicy "mixed_bfloat16">
"""

from kilnet.mixed_precision import (  # noqa: F401  (re-exported)
    DTypePolicy,
    FloatDTypePolicy,
    Int4DTypePolicy,
    QuantizedDTypePolicy,
    deserialize,
    get,
    serialize,
)

from kilnet.quantizers import QUANTIZATION_MODES  # noqa: F401  (re-exported)

__all__ = ["DTypePolicy", "FloatDTypePolicy", "Int4DTypePolicy", "QUANTIZATION_MODES",
           "QuantizedDTypePolicy", "deserialize", "get", "serialize"]
