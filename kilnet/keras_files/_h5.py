"""Keras 3 weights files (`model.weights.h5`, `x.weights.h5`) read and written with h5py, with
bounds.

Why a module of its own: HDF5 can do far more than hold arrays. A dataset may declare a
terabyte shape with no stored bytes (reading it would allocate the fill value), keep its bytes
in an external file, be a virtual view of other files, or be reached through a soft or external
link. Reading here follows hard links only, accepts plain uncompressed float datasets only
(and int8 ones for the int8 weights of a quantized layer), and
checks each dataset's declared shape against the layer that will receive it, and its size
against the file's size, before any bytes are read.
"""

from __future__ import annotations

import io

import h5py
import numpy as np

from kilnet._saving_hooks import ARRAY_KINDS
from kilnet.errors import ModelFileError

MAX_OBJECTS = 100_000   # groups and datasets visited when looking for stray arrays
_FLOAT_KINDS = ("f",)
# the kinds a weight may be stored as: floats, and int8 for a quantized layer's kernel
_WEIGHT_KINDS = ("f", "i")


def kinds_read_as(dtype) -> tuple:
    """The dtype kinds a file's array may have to be read into a weight of `dtype`: floats
    for a float weight; any integer for an integer one (a counter Keras on TensorFlow keeps
    in 64 bits), bools for a bool one.

    Example:
        >>> kinds_read_as("float32"), kinds_read_as("int32"), kinds_read_as("bool")
        (('f',), ('i', 'u'), ('b',))
    """
    kind = np.dtype(dtype).kind
    return {"f": _FLOAT_KINDS, "i": ("i", "u"), "u": ("i", "u"), "b": ("b",)}[kind]


class WeightsFile:
    """An open Keras weights file held in memory (`data`: its bytes; `path`: for errors).

    Example:
        >>> import numpy as np
        >>> from kilnet.keras_files import _h5
        >>> data = _h5.write_weights([("layers/d/vars/0", np.ones((2, 3), "float32"))], {})
        >>> with _h5.WeightsFile(data, "w.h5") as f:
        ...     f.shape_of("layers/d/vars/0")
        (2, 3)
    """

    def __init__(self, data: bytes, path):
        self.path, self.size = str(path), len(data)
        try:
            self.file = h5py.File(io.BytesIO(data), "r")
        except OSError as error:
            raise ModelFileError(path, f"its weights are not a valid HDF5 file ({error}).") \
                from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()

    def fail(self, problem):
        raise ModelFileError(self.path, problem)

    def group(self, h5_path):
        """The group at `h5_path`, reached by hard links only, or None if absent."""
        node = self._hard_linked(h5_path)
        return node if isinstance(node, h5py.Group) else None

    def dataset(self, h5_path):
        """The dataset at `h5_path`, reached by hard links only, or None if absent."""
        node = self._hard_linked(h5_path)
        if node is not None and not isinstance(node, h5py.Dataset):
            self.fail(f"{h5_path!r} in its weights is not a dataset.")
        return node

    def _hard_linked(self, h5_path):
        """The object at `h5_path`, or None if absent; a soft or external link on the way is
        refused (a file must not make the reader follow it elsewhere)."""
        node = self.file
        for part in h5_path.split("/"):
            link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None
            if link is None:
                return None
            if not isinstance(link, h5py.HardLink):
                self.fail(f"its weights reach {h5_path!r} through a {type(link).__name__}; "
                          "only plain (hard-linked) groups and datasets are accepted.")
            node = node[part]
        return node

    def shape_of(self, h5_path):
        """The declared shape of a checked dataset (see `checked`; floats, or int8 for a
        quantized layer's weights), or None if absent."""
        ds = self.dataset(h5_path)
        return None if ds is None else tuple(self.checked(ds, h5_path, _WEIGHT_KINDS).shape)

    def dtype_of(self, h5_path):
        """int8 for a quantized layer's int8 weight, float32 (what kilnet keeps) otherwise.

        Example:
            >>> import numpy as np
            >>> from kilnet.keras_files import _h5
            >>> data = _h5.write_weights([("w", np.ones(2, "int8")), ("b", np.ones(2))], {})
            >>> with _h5.WeightsFile(data, "w.h5") as f:
            ...     f.dtype_of("w").name, f.dtype_of("b").name
            ('int8', 'float32')
        """
        ds = self.checked(self.dataset(h5_path), h5_path, _WEIGHT_KINDS)
        quantized = ds.dtype == np.int8 and ds.shape != ()   # not a count (kilnet: float32)
        return np.dtype(np.int8) if quantized else np.dtype(np.float32)

    def checked(self, ds, h5_path, kinds=_FLOAT_KINDS):
        """`ds` if it is a plain array of a dtype kind in `kinds` (floats by default; "i":
        int8 only, a quantized layer's) whose declared bytes fit in the file. An integer
        scalar passes where floats are expected: Keras keeps counts so (an adapted
        Normalization's `count`), kilnet as float32."""
        integer_scalar = ds.shape == () and ds.dtype.kind in "iu" and "f" in kinds
        if ds.dtype.kind not in kinds and not integer_scalar:
            self.fail(f"the weight {h5_path!r} has dtype {ds.dtype}; Keras weights are floats"
                      + (" (int8 for a quantized layer's)." if "i" in kinds else "."))
        if kinds == _WEIGHT_KINDS and ds.dtype.kind == "i" and ds.dtype != np.int8 \
                and not integer_scalar:
            self.fail(f"the weight {h5_path!r} has dtype {ds.dtype}; a quantized layer's "
                      "integer weights are int8.")
        plist = ds.id.get_create_plist()
        if ds.is_virtual or ds.external or plist.get_nfilters():
            self.fail(f"the weight {h5_path!r} is virtual, external or compressed; kilnet reads "
                      "only plain arrays stored in the file.")
        if ds.size * ds.dtype.itemsize > self.size:
            self.fail(f"the weight {h5_path!r} declares shape {ds.shape} "
                      f"({ds.size * ds.dtype.itemsize:,} bytes), more than the whole weights "
                      f"file holds ({self.size:,} bytes).")
        return ds

    def read(self, h5_path, shape, dtype, kinds=None):
        """The array at `h5_path`, after checking it has `shape` and fits in the file; `kinds`
        (see `checked`) defaults to floats, or int8 where `dtype` is (a quantized kernel)."""
        ds = self.dataset(h5_path)
        if ds is None:
            self.fail(f"the weight {h5_path!r} is missing.")
        quantized = np.dtype(dtype) == np.int8
        if kinds is None:
            kinds = ("i",) if quantized else kinds_read_as(dtype)
        self.checked(ds, h5_path, kinds)
        if quantized and ds.dtype.kind == "i" and ds.dtype != np.dtype(dtype) \
                and ds.shape != ():
            self.fail(f"the weight {h5_path!r} has dtype {ds.dtype}; the layer keeps it as "
                      f"{np.dtype(dtype)}.")
        if tuple(ds.shape) != tuple(shape):
            self.fail(f"the weight {h5_path!r} has shape {tuple(ds.shape)}; the layer needs "
                      f"{tuple(shape)}.")
        return np.asarray(ds[()], dtype=dtype)

    def datasets(self, under=""):
        """The paths of every dataset below `under` (hard links only), at most MAX_OBJECTS."""
        found, count = [], 0
        stack = [(under, self.file[under] if under else self.file)]
        while stack:
            prefix, group = stack.pop()
            for name in group:
                count += 1
                if count > MAX_OBJECTS:
                    self.fail(f"its weights hold more than {MAX_OBJECTS:,} objects.")
                if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                    self.fail(f"its weights hold a link {prefix}/{name!r}; only plain groups "
                              "and datasets are accepted.")
                item = group[name]
                full = f"{prefix}/{name}" if prefix else name
                if isinstance(item, h5py.Group):
                    stack.append((full, item))
                else:
                    found.append(full)
        return sorted(found)


def write_weights(arrays, groups: dict) -> bytes:
    """An HDF5 file in memory holding `arrays` [(h5 path, array)]; `groups` {group path:
    name} adds the "name" attribute Keras writes on each `vars` group."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for h5_path, array in arrays:
            f.create_dataset(h5_path, data=np.asarray(array))
        for group, name in groups.items():
            f.require_group(group).attrs["name"] = name
    return buffer.getvalue()


def group_reader(weights):
    """read_group for _saving_hooks: a layer's `vars` group as {key: array}, every dataset
    checked (a plain numeric array within the file's size, no nested groups) before it is
    read; {} where the group is absent (a store the layer left empty)."""
    def read_group(group):
        found = {}
        if weights.group(group) is None:
            return found
        for h5 in weights.datasets(group):
            key = h5[len(group) + 1:]
            if "/" in key:
                weights.fail(f"its group {group!r} holds a nested group ({h5!r}); a layer's "
                             "vars hold arrays only.")
            ds = weights.checked(weights.dataset(h5), h5, kinds=ARRAY_KINDS)
            found[key] = np.asarray(ds[()])
        return found
    return read_group
