"""Unpickling dataset files that can only rebuild NumPy arrays, never run code.

Keras ships CIFAR as Python pickles and IMDB/Reuters as `.npz` files whose
ragged sequences are object arrays (a pickle inside each `.npy`). A pickle
runs whatever callable its stream names, so the standard unpickler would let
a tampered file execute code. `RestrictedUnpickler` resolves only the few
names that rebuilding an ndarray needs; any other name (`os.system`,
`builtins.eval`, ...) stops the load before anything is called.
"""

import io
import pickle

import numpy as np

from ._idx import DatasetError

# The function NumPy's own pickles call to rebuild an array. It is taken from
# ndarray's public reduce protocol, so no private NumPy module is imported
# (importing `numpy.core` also warns on NumPy 2).
_RECONSTRUCT = np.empty(0).__reduce__()[0]

# (module, name) -> object, exactly what the Keras files reference: Python 2
# era pickles name `numpy.core.multiarray`, NumPy 2 writes `numpy._core...`.
# Builtin containers (list, dict, str, int, bytes) need no name at all.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(DatasetError):
    """A dataset file's pickle names something other than NumPy's array rebuild."""


class RestrictedUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only NumPy's array-rebuilding names.

    Example:

    >>> import os, pickle
    >>> data = pickle.dumps({"data": np.arange(3, dtype=np.uint8), "labels": [0, 1, 2]})
    >>> RestrictedUnpickler(io.BytesIO(data)).load()["data"]
    array([0, 1, 2], dtype=uint8)
    >>> RestrictedUnpickler(io.BytesIO(pickle.dumps(os.getcwd))).load()  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kilnet.datasets._safe_pickle.UnsafePickleError: refusing to unpickle `posix.getcwd` ...
    """

    def __init__(self, file, *, source="a dataset pickle", encoding="ASCII"):
        super().__init__(file, encoding=encoding)
        self.source = source

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle `{module}.{name}` ({self.source}): a dataset file "
                "may only rebuild NumPy arrays, lists and numbers. The file is damaged "
                "or was tampered with; delete it and download it again."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refusing a persistent id in {self.source}.")


def loads(data: bytes, source: str, *, encoding: str = "ASCII"):
    """Unpickles `data` (read from `source`, named in errors) with `RestrictedUnpickler`.

    `encoding="bytes"` reads Python 2 pickles (CIFAR's) with their str keys as bytes.

    Example:

    >>> import pickle
    >>> loads(pickle.dumps([1, 2, 3]), "example")
    [1, 2, 3]
    """
    unpickler = RestrictedUnpickler(io.BytesIO(data), source=source, encoding=encoding)
    try:
        return unpickler.load()
    except UnsafePickleError:
        raise
    # A damaged stream fails in many ways (truncation, bad opcodes, a bad array state).
    except Exception as error:
        raise DatasetError(f"{source}: cannot read it as a pickle ({error!r}).") from error
