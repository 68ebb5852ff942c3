"""Array helpers under Keras's keras.utils names: one-hot labels, norms and padded sequences.

They take and return NumPy arrays on the host: they prepare data before it reaches a model.
"""

from __future__ import annotations

import jax
import numpy as np

from kilnet.variables import Variable

def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot rows for integer class ids, as keras.utils.to_categorical: the class axis is
    added last, a trailing axis of size 1 is dropped first ((n, 1) ids give (n, classes)), and
    `num_classes` defaults to max(x) + 1. Float ids are truncated to integers, as in Keras.

    Returns a float64 NumPy array, as Keras's (fit takes the labels as float32). Ids below 0
    or not below `num_classes` are refused (Keras would wrap a negative id to the last class).

    Example:
        >>> import kilnet
        >>> kilnet.utils.to_categorical([0, 2, 1], num_classes=3)
        array([[1., 0., 0.],
               [0., 0., 1.],
               [0., 1., 0.]])
        >>> kilnet.utils.to_categorical([[1], [0]]).shape
        (2, 2)
    """
    ids = np.array(x, dtype=np.int64)
    shape = ids.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    ids = ids.reshape(-1)
    if not num_classes:  # None (or 0, as Keras): inferred from the ids
        if ids.size == 0:
            raise ValueError("to_categorical needs num_classes when x is empty.")
        num_classes = int(ids.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"num_classes must be a positive integer. Received: "
                         f"num_classes={num_classes!r}")
    num_classes = int(num_classes)
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"to_categorical: class ids must be in [0, {num_classes}) for "
                         f"num_classes={num_classes}. Received ids from {int(ids.min())} to "
                         f"{int(ids.max())}.")
    out = np.zeros((ids.size, num_classes))
    out[np.arange(ids.size), ids] = 1.0
    return out.reshape(tuple(shape) + (num_classes,))


def normalize(x, axis=-1, order=2):
    """`x` divided by its `order`-norm along `axis`, as keras.utils.normalize. On NumPy input
    (and lists): a slice whose norm is 0 is left as it is (divided by 1); `order` is any
    np.linalg.norm order for vectors (1, 2, np.inf, ...); integer input gives float32, float
    input keeps its dtype. On a JAX array (also inside a compiled step, as keras.io's
    supervised contrastive learning calls it on a batch's features) or a Variable:
    `kilnet.ops.nn.normalize`, as Keras hands a backend tensor to `keras.ops.normalize`.

    Example:
        >>> import numpy as np, kilnet
        >>> kilnet.utils.normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
        array([[0.6, 0.8],
               [0. , 0. ]])
        >>> kilnet.utils.normalize(jax.numpy.array([[3.0, 4.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    if isinstance(x, (jax.Array, Variable)):   # a backend tensor, as Keras tells them apart
        from kilnet.ops import nn   # kilnet.ops builds on kilnet.utils: imported when used

        return nn.normalize(x, axis=axis, order=order)
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if x.ndim == 0:
        x = x.reshape(1)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"normalize: axis must be an integer. Received: axis={axis!r}")
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return (x / np.expand_dims(norm, axis)).astype(x.dtype, copy=False)


_SIDES = ("pre", "post")


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0) -> np.ndarray:
    """Sequences of different lengths as one `(len(sequences), maxlen, ...)` array, as
    keras.utils.pad_sequences: shorter ones are filled with `value`, longer ones cut to
    `maxlen` (default: the longest length). `padding` and `truncating` ("pre" or "post") say
    at which end. Each item may itself hold equal-shaped vectors; pass `dtype=object` to pad
    strings.

    Example:
        >>> import kilnet
        >>> kilnet.utils.pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2, padding="post")
        array([[1, 0],
               [2, 3],
               [5, 6]], dtype=int32)
    """
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in _SIDES:
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post'. "
                             f"Received: {name}={side!r}")
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise ValueError("pad_sequences: sequences must be a list of sequences (lists or "
                         f"arrays). Received: sequences of type {type(sequences).__name__}")
    lengths, sample_shape = _lengths_and_sample_shape(sequences)
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise ValueError("pad_sequences: maxlen must be None or a non-negative integer. "
                         f"Received: maxlen={maxlen!r}")
    text_dtype = np.dtype(dtype).kind in "SU"
    if isinstance(value, str) and dtype is not object and not text_dtype:
        raise ValueError(f"pad_sequences: value={value!r} is a string but dtype={dtype!r} is "
                         "not; pass dtype=object to pad variable-length strings.")
    out = np.full((len(sequences), int(maxlen)) + sample_shape, value, dtype=dtype)
    for i, seq in enumerate(sequences):
        if not len(seq) or not maxlen:
            continue
        kept = np.asarray(seq[-maxlen:] if truncating == "pre" else seq[:maxlen], dtype=dtype)
        if kept.shape[1:] != sample_shape:
            raise ValueError(f"pad_sequences: the items of sequences[{i}] have shape "
                             f"{kept.shape[1:]}, but the first non-empty sequence's have "
                             f"{sample_shape}; every item must have the same shape.")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, -len(kept):] = kept
    return out


def _lengths_and_sample_shape(sequences):
    """Each sequence's length, and the shape of one item (from the first non-empty one)."""
    lengths, sample_shape = [], None
    for i, seq in enumerate(sequences):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise ValueError("pad_sequences: sequences must be a list of sequences (lists or "
                             f"arrays). Received: sequences[{i}]={seq!r}")
        lengths.append(len(seq))
        if sample_shape is None and len(seq):
            sample_shape = np.asarray(seq).shape[1:]
    return lengths, sample_shape or ()
