"""Training on several devices and several hosts, with JAX's sharding (docs/architecture.md).

    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  distribution=kilnet.distribution.DataParallel())   # all devices
    model.fit(x, y, batch_size=256)                                   # 256 = the global batch

Data parallelism, the GSPMD way: a `jax.sharding.Mesh` over the devices with one "batch" axis.
The compiled programs (kilnet.programs) take the training state replicated on every device and
constrain each batch, right after it is gathered from the dataset, to be split along the batch
axis. XLA partitions the program from there: each device runs the forward and backward pass on
its slice of the batch, and XLA inserts the all-reduce of the gradients, of the loss and metric
sums and of BatchNorm's batch statistics (so BatchNorm sees the global batch, as on one
device). There is no communication code of ours.

Model parallelism, Keras's way: `ModelParallel(layout_map=LayoutMap(DeviceMesh((2, 4),
["batch", "model"])))`, where a LayoutMap names, by variable path or regular expression, the
mesh axis each weight axis is split over ("dense.*kernel": (None, "model")). The compiled
programs take each weight, and what mirrors it (its optimizer slots, a frozen copy), with
that layout (`Placement`), pin their results to it, and split each batch over the mesh's
batch axis; a "<layer path>/output" key constrains that layer's output. XLA partitions the
program from these layouts (GSPMD) and adds the collectives. The layouts change where the
arithmetic happens, never its result: a model trains as on one device (up to the order of
floating-point sums), as it does under Keras's ModelParallel.

Policies:

- batch_size is the global batch, as in Keras; it must be a multiple of the number of devices,
  else fit/evaluate/predict raise a ValueError naming the nearest valid sizes. We do not pad:
  a padded batch would spend devices on dummy samples on every step, silently. The last partial
  batch of an epoch is still exact (padded and masked, as on one device).
- The dataset is replicated: every device holds all samples. The epoch order is a shuffle of
  the whole dataset, so a device's share of a batch can be any samples; with the dataset on
  every device, the gather stays local (XLA slices the replicated index vector per device) and
  training takes exactly the batches it would take on one device, so the results agree with a
  single device up to the order of floating-point sums. The price is memory: each device needs
  room for the whole dataset, which kilnet already needs on a single device (the programs
  index a device-resident dataset), so no job that fits one device stops fitting.
- Several processes (multi-host, after `initialize`): all processes run the same script with
  the same arguments (SPMD). Each process passes its own shard of the data to fit / evaluate /
  predict (see `process_shard`); the global dataset is the shards concatenated in process
  order, assembled once per call with JAX's multi-host collectives. Evaluate and predict return
  the full result on every process. Process 0 (`is_chief()`) alone writes files and logs:
  model.save / save_weights do nothing elsewhere, fit and evaluate print nothing elsewhere, and
  `kilnet train` keeps one run folder; every process reads the files it restores from, so
  they must be on storage all processes see. Host decisions that could differ between
  processes (chunk lengths from timings) are taken by process 0 (`chief_value`).
"""

from __future__ import annotations

import collections.abc
import contextlib
import math
import os
import re
import warnings

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from kilnet import _scope

__all__ = ["DataParallel", "ModelParallel", "DeviceMesh", "LayoutMap", "TensorLayout",
           "Distribution", "distribute_tensor", "distribution",
           "set_distribution", "get_distribution", "initialize", "is_chief",
           "process_shard", "process_count", "process_index", "shared_seed", "chief_value",
           "any_process", "initialize_from_args", "list_devices", "get_device_count",
           "device"]

BATCH_AXIS = "batch"


# -- the devices, as Keras names them ("cpu:0", "gpu:1") --------------------------------------------
def _platform_devices(device_type):
    """JAX's devices of a type ("cpu", "gpu", "tpu"), or all of the default platform's; [] for a
    type this machine has none of."""
    if device_type is None:
        return jax.devices()
    try:
        return jax.devices(str(device_type).lower())
    except RuntimeError:   # JAX raises for a platform that is not present
        return []


def list_devices(device_type=None) -> list:
    """The devices as Keras lists them: "cpu:0", "gpu:0", ... (all of the default platform's
    when `device_type` is None).

    Example:
        >>> import kilnet
        >>> kilnet.distribution.list_devices("cpu")[0]
        'cpu:0'
    """
    devices = _platform_devices(device_type)
    if not devices and device_type is not None:
        raise ValueError(f"This machine has no {device_type!r} device; JAX sees "
                         f"{sorted({d.platform for d in jax.devices()})}. "
                         f"Received: device_type={device_type!r}")
    return [f"{d.platform}:{d.id}" for d in devices]


def get_device_count(device_type=None) -> int:
    """How many devices of a type this process sees (0 for a type it has none of; Keras raises
    there).

    Example:
        >>> import kilnet
        >>> kilnet.distribution.get_device_count("cpu") >= 1
        True
    """
    return len(_platform_devices(device_type))


def device(device_name):
    """A context in which new arrays and eager computations go to one device, as Keras's
    `keras.device("gpu:0")` (JAX's default_device): a name "type:index" or a jax.Device.

    Example:
        >>> import kilnet
        >>> with kilnet.device("cpu:0"):
        ...     kilnet.ops.ones((2,)).devices() == {jax.devices("cpu")[0]}
        True
    """
    if isinstance(device_name, jax.Device):
        return jax.default_device(device_name)
    if not isinstance(device_name, str):
        raise ValueError("device_name must be a string like 'gpu:0' or a jax.Device. "
                         f"Received: device_name={device_name!r}")
    found = _named_device(device_name)
    if found is None:
        raise ValueError(f"No device {device_name!r} here; the devices are "
                         f"{list_devices()}. Received: device_name={device_name!r}")
    return jax.default_device(found)


def _named_device(name: str):
    """The jax.Device a Keras device name ("cpu:0", "gpu"; index 0 by default) names, or
    None when this machine has no such device."""
    kind, _, index = name.lower().partition(":")
    devices = _platform_devices(kind)
    position = int(index) if index.isdigit() else 0
    return devices[position] if position < len(devices) else None


# -- meshes and layouts, as Keras names them ----------------------------------------------------------
def _as_device(device):
    """A jax.Device from a jax.Device or a Keras device name ("cpu:0")."""
    if isinstance(device, jax.Device):
        return device
    found = _named_device(device) if isinstance(device, str) else None
    if found is not None:
        return found
    raise ValueError("devices must be jax devices or names such as 'cpu:0' (see "
                     f"list_devices(): {list_devices()}). Received: {device!r}")


class DeviceMesh:
    """Devices arranged on named axes, as `keras.distribution.DeviceMesh` (JAX's
    `jax.sharding.Mesh`): e.g. shape (2, 4) with axis names ("batch", "model") for two
    model replicas, each split over four devices.

    Args:
        shape: the number of devices along each axis; their product is the device count.
        axis_names: one name per axis.
        devices: jax devices or names ("cpu:0"); None means all of them (`list_devices()`).

    Example:
        >>> import jax
        >>> from kilnet.distribution import DeviceMesh
        >>> mesh = DeviceMesh((1,), ["batch"], devices=jax.devices()[:1])
        >>> mesh.shape, mesh.axis_names, mesh.backend_mesh.axis_names
        ((1,), ('batch',), ('batch',))
    """

    def __init__(self, shape, axis_names, devices=None):
        if not shape or not axis_names:
            raise ValueError("DeviceMesh needs a shape and axis_names, e.g. shape=(2, 4), "
                             "axis_names=['batch', 'model']. Received: "
                             f"shape={shape!r}, axis_names={axis_names!r}")
        shape, axis_names = tuple(int(n) for n in shape), tuple(axis_names)
        if len(shape) != len(axis_names) or len(set(axis_names)) != len(axis_names):
            raise ValueError("DeviceMesh needs one distinct name per axis of its shape. "
                             f"Received: shape={shape}, axis_names={list(axis_names)}")
        flat = [_as_device(d) for d in np.ravel(np.asarray(
            jax.devices() if devices is None else devices, dtype=object))]
        if math.prod(shape) != len(flat):
            raise ValueError(f"DeviceMesh of shape {shape} needs {math.prod(shape)} devices. "
                             f"Received: {len(flat)} devices")
        if len({d.id for d in flat}) != len(flat):
            raise ValueError(f"DeviceMesh got a device twice. Received: devices={flat!r}")
        self._shape, self._axis_names = shape, axis_names
        self._devices = np.array(flat, dtype=object).reshape(shape)
        self._backend_mesh = Mesh(self._devices, axis_names)

    shape = property(lambda self: self._shape, doc="Devices along each axis.")
    axis_names = property(lambda self: self._axis_names, doc="The axes' names.")
    devices = property(lambda self: self._devices, doc="The devices, an array of `shape`.")
    backend_mesh = property(lambda self: self._backend_mesh, doc="The jax.sharding.Mesh.")

    def axis_size(self, name: str) -> int:
        return self._shape[self._axis_names.index(name)]

    def __repr__(self):
        return f"<DeviceMesh shape={self.shape}, axis_names={list(self.axis_names)}>"


class TensorLayout:
    """How one array is split over a mesh, as `keras.distribution.TensorLayout` (JAX's
    `NamedSharding`): one entry per array axis, a mesh axis name to split that axis over,
    or None to keep it whole.

    Example:
        >>> import jax
        >>> from kilnet.distribution import DeviceMesh, TensorLayout
        >>> mesh = DeviceMesh((1,), ["model"], devices=jax.devices()[:1])
        >>> tuple(TensorLayout((None, "model"), mesh).backend_layout.spec)
        (None, 'model')
    """

    def __init__(self, axes, device_mesh=None):
        self._axes = tuple(axes)
        self._device_mesh = None
        if device_mesh is not None:
            self.device_mesh = device_mesh

    axes = property(lambda self: self._axes, doc="A mesh axis name or None per array axis.")

    @property
    def device_mesh(self):
        return self._device_mesh

    @device_mesh.setter
    def device_mesh(self, device_mesh):
        if self._device_mesh is not None:
            raise ValueError(f"This TensorLayout already has its mesh, {self._device_mesh}.")
        unknown = set(self._axes) - {None} - set(device_mesh.axis_names)
        if unknown:
            raise ValueError(f"TensorLayout axes {self._axes} name {sorted(unknown)}, which "
                             f"the mesh does not have; its axes are "
                             f"{list(device_mesh.axis_names)}.")
        self._device_mesh = device_mesh

    @property
    def backend_layout(self) -> NamedSharding:
        if self._device_mesh is None:
            raise ValueError("This TensorLayout has no DeviceMesh yet: give it one "
                             "(TensorLayout(axes, device_mesh)) or put it in a LayoutMap.")
        return NamedSharding(self._device_mesh.backend_mesh, PartitionSpec(*self._axes))

    def __repr__(self):
        return f"<TensorLayout axes={self._axes}, device_mesh={self._device_mesh}>"


class LayoutMap(collections.abc.MutableMapping):
    """Layouts by variable path, as `keras.distribution.LayoutMap`: a key is the path itself
    (`variable.path`, e.g. "dense/kernel") or a regular expression that matches the whole
    path ("dense.*kernel"); a value is a TensorLayout or a tuple of its axes. A path matching
    two keys is an error; a path matching none is replicated. A key ending in "/output"
    lays out a layer's output ("dense_1/output").

    Example:
        >>> import jax
        >>> from kilnet.distribution import DeviceMesh, LayoutMap
        >>> layout_map = LayoutMap(DeviceMesh((1,), ["model"], devices=jax.devices()[:1]))
        >>> layout_map[".*dense.*kernel"] = (None, "model")
        >>> layout_map["dense_1/kernel"].axes, layout_map["dense_1/bias"]
        ((None, 'model'), None)
    """

    def __init__(self, device_mesh):
        if not isinstance(device_mesh, DeviceMesh):
            raise ValueError("LayoutMap needs a kilnet.distribution.DeviceMesh. Received: "
                             f"device_mesh={device_mesh!r}")
        self._layouts = {}
        self._device_mesh = device_mesh

    device_mesh = property(lambda self: self._device_mesh, doc="The mesh of every layout.")

    def __getitem__(self, key):
        if key in self._layouts:
            return self._layouts[key]
        matching = [pattern for pattern in self._layouts if re.fullmatch(pattern, key)]
        if len(matching) > 1:
            raise ValueError(f"The path {key!r} matches several LayoutMap keys: {matching}; "
                             "make the keys match each path once at most.")
        return self._layouts[matching[0]] if matching else None

    def __setitem__(self, key, layout):
        if key in self._layouts:
            raise ValueError(f"LayoutMap already has the key {key!r} (layout "
                             f"{self._layouts[key].axes}); delete it first to change it.")
        if isinstance(layout, (tuple, list)):
            layout = TensorLayout(layout)
        if not isinstance(layout, TensorLayout):
            raise ValueError("A LayoutMap value must be a TensorLayout or a tuple of axis "
                             f"names and None, e.g. (None, 'model'). Received: {layout!r}")
        if layout.device_mesh is None:
            layout.device_mesh = self._device_mesh
        self._layouts[key] = layout

    def __delitem__(self, key):
        del self._layouts[key]

    def __len__(self):
        return len(self._layouts)

    def __iter__(self):
        return iter(self._layouts)


# -- distributions -------------------------------------------------------------------------------------
class Distribution:
    """What DataParallel and ModelParallel share (Keras's `Distribution`): a mesh, the axis
    the batch is split over, the layout of each variable, and the placement of a training
    run's arrays on the mesh (`placement`). `scope()` makes it the default of compile()
    within a block.

    Example:
        >>> import kilnet
        >>> dp = kilnet.distribution.DataParallel(devices=jax.devices()[:1])
        >>> with dp.scope():
        ...     kilnet.distribution.distribution() is dp
        True
        >>> dp.get_data_layout((32, 784)).axes, dp.num_model_replicas
        (('batch', None), 1)
    """

    def __init__(self, device_mesh, batch_dim_name, auto_shard_dataset=True):
        self._device_mesh = device_mesh
        self._batch_dim_name = batch_dim_name
        self.auto_shard_dataset = auto_shard_dataset
        self.mesh = device_mesh.backend_mesh
        self.devices = list(device_mesh.devices.flat)
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(batch_dim_name))

    device_mesh = property(lambda self: self._device_mesh, doc="The DeviceMesh.")
    batch_dim_name = property(lambda self: self._batch_dim_name,
                              doc="The mesh axis each batch is split over.")

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def num_model_replicas(self) -> int:
        """Devices along the batch axis: each holds a different part of every batch."""
        return self._device_mesh.axis_size(self._batch_dim_name)

    @contextlib.contextmanager
    def scope(self):
        """Within the block, compile() without distribution=... uses this one."""
        before = get_distribution()
        set_distribution(self)
        try:
            yield self
        finally:
            set_distribution(before)

    def get_data_layout(self, data_shape) -> TensorLayout:
        """A batch's layout: split along its first axis over the batch axis."""
        return TensorLayout((self._batch_dim_name,) + (None,) * (len(data_shape) - 1),
                            self._device_mesh)

    def get_variable_layout(self, variable) -> TensorLayout:
        """A variable's layout: replicated here; ModelParallel reads its LayoutMap."""
        return TensorLayout((None,) * len(variable.shape), self._device_mesh)

    def get_tensor_layout(self, path):
        """The layout of the intermediate array at `path` ("dense/output"), or None."""
        return None

    # -- the batch size ------------------------------------------------------------------------
    def check_batch_size(self, batch_size: int, argument: str = "batch_size") -> int:
        """batch_size is global; it must split evenly over the model replicas (no padding)."""
        d = self.num_model_replicas
        if batch_size % d:
            below, above = (batch_size // d) * d, (batch_size // d + 1) * d
            nearest = " or ".join(str(v) for v in (below, above) if v > 0)
            raise ValueError(
                f"{argument} is the global batch and must be a multiple of the number of "
                f"{self._replicas()}, {d}, so that each gets the same share; nearest valid "
                f"sizes: {nearest}. Received: {argument}={batch_size} with {d} "
                f"{self._replicas()}")
        return batch_size

    def _replicas(self) -> str:
        return f"model replicas (devices along the mesh's {self._batch_dim_name!r} axis)"

    def whole_batch_size(self, batch_size: int, n: int) -> int:
        """A batch holding the whole dataset (batch_size >= n, as Keras allows) is rounded up
        to a multiple of the replica count: the extra rows are masked padding, so every
        result is unchanged. Any other batch_size is returned as is, and checked at
        compilation."""
        if batch_size >= n:
            return -(-batch_size // self.num_model_replicas) * self.num_model_replicas
        return batch_size

    # -- where a training run's arrays live ----------------------------------------------------
    def placement(self, model) -> "Placement":
        """The layout of each of `model`'s weights on the mesh, for the compiled programs."""
        layouts = {}
        for path, _, variable in model.variable_paths():
            layout = self.get_variable_layout(variable)
            if layout is not None and any(axis is not None for axis in layout.axes):
                layouts[tuple(path)] = (self._checked_sharding(variable, layout),
                                        tuple(variable.shape))
        return Placement(self, layouts)

    def _checked_sharding(self, variable, layout) -> NamedSharding:
        shape = tuple(variable.shape)
        if len(layout.axes) != len(shape):
            raise ValueError(
                f"The layout {layout.axes} of {variable.path!r} (shape {shape}) needs one "
                f"entry per axis ({len(shape)}): a mesh axis name or None.")
        for size, axis in zip(shape, layout.axes):
            if axis is not None and size % self._device_mesh.axis_size(axis):
                raise ValueError(
                    f"{variable.path!r} (shape {shape}) cannot be split over the mesh axis "
                    f"{axis!r} of {self._device_mesh.axis_size(axis)} devices: {size} is not "
                    f"a multiple of it. Choose a layout whose split axes divide evenly, or "
                    f"another mesh shape. Received: layout {layout.axes}")
        return NamedSharding(self.mesh, PartitionSpec(*layout.axes))


class DataParallel(Distribution):
    """Split every batch over the devices, with parameters and optimizer state replicated, as
    `keras.distribution.DataParallel`.

    Args:
        device_mesh: a DeviceMesh; its first axis is the batch axis (a mesh of more axes
            replicates over the others). A list of devices is also taken here.
        devices: a list of jax devices (or names, "cpu:0"); with neither argument, all
            devices (`jax.devices()`: in one process, all local devices; after
            `initialize`, the devices of every process).
        auto_shard_dataset: Keras's argument; kilnet always reads the data each process
            passes as its shard (see the module docstring).

    Example:
        >>> import kilnet
        >>> kilnet.distribution.DataParallel().num_devices == len(jax.devices())
        True
    """

    def __init__(self, device_mesh=None, devices=None, auto_shard_dataset=True):
        if device_mesh is not None and not isinstance(device_mesh, DeviceMesh):
            devices, device_mesh = device_mesh, None   # DataParallel(jax.devices()[:2])
        if device_mesh is None:
            devices = jax.devices() if devices is None else list(devices)
            if not devices:
                raise ValueError("DataParallel needs a non-empty list of jax devices, e.g. "
                                 f"devices=jax.devices()[:4]. Received: devices={devices!r}")
            device_mesh = DeviceMesh((len(devices),), [BATCH_AXIS], devices)
        elif device_mesh.devices.ndim != 1:
            warnings.warn(f"DataParallel expects a mesh of one axis; {device_mesh} splits the "
                          f"batch over its first axis, {device_mesh.axis_names[0]!r}, and "
                          "replicates over the others.", stacklevel=2)
        super().__init__(device_mesh, device_mesh.axis_names[0], auto_shard_dataset)

    @property
    def num_model_replicas(self) -> int:
        if self._device_mesh.devices.ndim == 1:
            return self.num_devices
        return super().num_model_replicas

    def _replicas(self) -> str:
        return "devices" if self._device_mesh.devices.ndim == 1 else super()._replicas()

    def __repr__(self):
        return f"DataParallel({self.num_devices} devices: {self.devices[0].platform})"


class ModelParallel(Distribution):
    """Split weights over devices as a LayoutMap says, and every batch over the batch axis,
    as `keras.distribution.ModelParallel`: a mesh such as (2, 4) with axes ("batch",
    "model") trains two replicas of the model, each kernel laid out on ("model") split over
    four devices. XLA partitions the compiled programs from the layouts (GSPMD) and adds
    the communication; the optimizer's slots take their weight's layout.

    Args:
        layout_map: a LayoutMap (its DeviceMesh is the distribution's).
        batch_dim_name: the mesh axis each batch is split over; default its first axis.
        auto_shard_dataset: Keras's argument (see DataParallel).

    Example:
        >>> import jax
        >>> from kilnet.distribution import DeviceMesh, LayoutMap, ModelParallel
        >>> mesh = DeviceMesh((1, 1), ["batch", "model"], devices=jax.devices()[:1])
        >>> layout_map = LayoutMap(mesh)
        >>> layout_map["dense.*kernel"] = (None, "model")
        >>> ModelParallel(layout_map=layout_map).batch_dim_name
        'batch'
    """

    def __init__(self, *, layout_map=None, batch_dim_name=None, auto_shard_dataset=True,
                 **kwargs):
        kwargs.pop("device_mesh", None)   # Keras's earlier argument: the LayoutMap's mesh
        if kwargs:
            raise TypeError(f"ModelParallel got unexpected arguments {sorted(kwargs)}; it "
                            "takes layout_map, batch_dim_name and auto_shard_dataset.")
        if not isinstance(layout_map, LayoutMap):
            raise ValueError("ModelParallel needs layout_map=kilnet.distribution.LayoutMap"
                             f"(mesh). Received: layout_map={layout_map!r}")
        mesh = layout_map.device_mesh
        batch_dim_name = batch_dim_name or mesh.axis_names[0]
        if batch_dim_name not in mesh.axis_names:
            raise ValueError(f"batch_dim_name must be an axis of the mesh, one of "
                             f"{list(mesh.axis_names)}. Received: "
                             f"batch_dim_name={batch_dim_name!r}")
        _refuse_several_processes()
        super().__init__(mesh, batch_dim_name, auto_shard_dataset)
        self._layout_map = layout_map

    def placement(self, model) -> "Placement":
        _refuse_several_processes()   # initialize() may have come after the constructor
        return super().placement(model)

    layout_map = property(lambda self: self._layout_map, doc="The LayoutMap.")

    def get_variable_layout(self, variable) -> TensorLayout:
        layout = self._layout_map[variable.path]
        return super().get_variable_layout(variable) if layout is None else layout

    def get_tensor_layout(self, path):
        return self._layout_map[path]

    def __repr__(self):
        return (f"ModelParallel(mesh {self.device_mesh.shape} {list(self.device_mesh.axis_names)}"
                f", batch axis {self.batch_dim_name!r}, {len(self._layout_map)} layouts)")


def _refuse_several_processes():
    if jax.process_count() > 1:
        # Weights split over several processes' devices are not addressable from one
        # process, and model.save runs in process 0 alone: reading them back would need
        # every process to join in.
        raise ValueError("ModelParallel runs in one process for now: kilnet cannot yet read "
                         "back or save weights split over the devices of several processes. "
                         "Use DataParallel() across processes.")


class Placement:
    """Where the arrays of one training run live on a distribution's mesh: each weight, and
    whatever mirrors it (its optimizer slots, a frozen copy), with its layout; everything
    else (keys, sums, the dataset) replicated. A leaf is matched by the keys of its
    path in any of the programs' argument or result trees: the longest tail of those keys
    that is a weight's path in the model, with the weight's shape (an optimizer slot of
    another shape, Adafactor's factored ones, stays replicated).

    Example:
        >>> import kilnet
        >>> from kilnet.distribution import DeviceMesh, LayoutMap, ModelParallel
        >>> layout_map = LayoutMap(DeviceMesh((1, 1), ["batch", "model"],
        ...                                   devices=jax.devices()[:1]))
        >>> layout_map["d/kernel"] = (None, "model")
        >>> inputs = kilnet.Input((3,))
        >>> model = kilnet.Model(inputs, kilnet.layers.Dense(4, name="d")(inputs))
        >>> model.build()
        >>> placement = ModelParallel(layout_map=layout_map).placement(model)
        >>> slot = (jax.tree_util.GetAttrKey("mu"), jax.tree_util.DictKey("d"),
        ...         jax.tree_util.DictKey("kernel"))   # Adam's first moment of d's kernel
        >>> tuple(placement.sharding_of(slot, (3, 4)).spec)
        (None, 'model')
        >>> placement.sharding_of(slot, (4,)) == placement.replicated   # another shape
        True
    """

    def __init__(self, distribution, layouts: dict):
        self.distribution = distribution
        self.replicated = distribution.replicated
        # a weight's path in the params / state tree -> (its sharding, its shape)
        self.layouts = layouts

    def sharding_of(self, key_path, shape) -> NamedSharding:
        """The sharding of the leaf at `key_path` (JAX's key path) of shape `shape`."""
        if not self.layouts:
            return self.replicated
        keys = tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                     for k in key_path)
        for start in range(len(keys)):
            found = self.layouts.get(keys[start:])
            if found is not None:
                sharding, weight_shape = found
                return sharding if tuple(shape) == weight_shape else self.replicated
        return self.replicated

    def shardings(self, tree):
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: self.sharding_of(path, np.shape(leaf)), tree)

    def abstract(self, tree):
        """Shapes, dtypes and shardings of a program's arguments."""
        return jax.tree_util.tree_map_with_path(
            lambda path, a: jax.ShapeDtypeStruct(np.shape(a), _dtype(a),
                                                 sharding=self.sharding_of(path, np.shape(a))),
            tree)

    def program(self, fn):
        """fn traced with the layers' outputs laid out as the distribution says, and every
        result pinned to its layout: the state keeps its layout from one call to the next
        (replicated results stay identical on every device)."""
        def laid_out_fn(*args):
            with _scope.output_layouts(self.lay_out_output):
                out = fn(*args)
            return jax.lax.with_sharding_constraint(out, self.shardings(out))
        return laid_out_fn

    def wrap(self, compiled, example_args):
        """A compiled program that first places its arguments as it was compiled for.

        Arrays made outside the programs (a fresh state, the epoch order, the loop bounds,
        weights from set_weights) live on one device; those already placed pass through as
        they are, so the donated state is not copied on every chunk."""
        wanted = jax.tree.leaves(self.shardings(example_args))

        def place(leaf, sharding):
            if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
                return leaf
            return jax.device_put(leaf, sharding)

        def run(*args):
            leaves, treedef = jax.tree.flatten(args)
            if len(leaves) != len(wanted):   # not the compiled structure: the program says why
                return compiled(*args)
            return compiled(*treedef.unflatten(
                [place(leaf, s) for leaf, s in zip(leaves, wanted)]))
        run.compiled = compiled
        return run

    def lay_out_output(self, path, value):
        """A layer's output constrained to the LayoutMap's layout for "<path>/output" (as
        Keras's layers do under ModelParallel), or unchanged."""
        layout = self.distribution.get_tensor_layout(f"{path}/output")
        if layout is None:
            return value
        sharding = layout.backend_layout
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, sharding)
                            if np.ndim(a) == len(sharding.spec) else a, value)


def distribute_tensor(tensor, layout):
    """`tensor` laid out as `layout` says (a TensorLayout or a NamedSharding), as
    `keras.distribution.distribute_tensor`: a sharding constraint inside a compiled program,
    a transfer to the devices outside one.

    Example:
        >>> import jax, numpy as np
        >>> from kilnet.distribution import DeviceMesh, TensorLayout, distribute_tensor
        >>> mesh = DeviceMesh((1,), ["batch"], devices=jax.devices()[:1])
        >>> y = distribute_tensor(np.ones((2, 3)), TensorLayout(("batch", None), mesh))
        >>> tuple(y.sharding.spec)
        ('batch', None)
    """
    sharding = layout.backend_layout if isinstance(layout, TensorLayout) else layout
    if isinstance(tensor, jax.core.Tracer):
        return jax.lax.with_sharding_constraint(tensor, sharding)
    if not hasattr(tensor, "shape") or hasattr(tensor, "sample_shape"):
        return tensor   # a symbolic tensor of a functional model: laid out when it runs
    return jax.device_put(tensor, sharding)


def global_arrays(trainer, *arrays):
    """The global dataset from each process's shard: the shards concatenated in process order,
    on every process. Unchanged in a single process. A tuple (validation_data) is gathered
    item by item; None stays None. Collective: every process must call it, in the same order."""
    if trainer.distribution is None or jax.process_count() == 1:
        return arrays
    return tuple(_gather_item(a) for a in arrays)


def _gather_item(value):
    from kilnet import data as data_lib
    from kilnet import feeds

    if value is None:
        return None
    if isinstance(value, tuple) or (isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, (np.ndarray, jax.Array)) for v in value)):  # validation_data
        return type(value)(_gather_item(v) for v in value)
    if feeds.is_stream(value):
        raise ValueError(
            "In a multi-process run, fit/evaluate/predict take each process's shard as arrays "
            "in memory (kilnet.distribution.process_shard); streamed data (memmaps, "
            f"generators) is not supported there yet. Received: {type(value).__name__}")
    return _gather_process_shards(data_lib.as_array(value, "x"))


def _dtype(a):
    return a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype


def _gather_process_shards(array) -> np.ndarray:
    """Every process's `array` (shards of one dataset, of any lengths), concatenated in process
    order. Collective: every process must call it, in the same order."""
    from jax.experimental import multihost_utils

    array = np.asarray(array)
    header = np.full(10, -1, np.int32)  # length, rank, trailing dims: to check they agree
    header[0], header[1] = len(array), array.ndim
    header[2:2 + min(array.ndim - 1, 8)] = array.shape[1:9]
    headers = np.asarray(multihost_utils.process_allgather(header))
    if (headers[:, 1:] != headers[0, 1:]).any():
        shapes = [tuple(int(v) for v in h[2:2 + h[1] - 1]) for h in headers]
        raise ValueError("Every process must pass data with the same per-sample shape. "
                         f"Received per process: {shapes}")
    lengths = [int(n) for n in headers[:, 0]]
    padded = np.zeros((max(lengths),) + array.shape[1:], array.dtype)
    padded[:len(array)] = array
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return np.concatenate([gathered[p, :n] for p, n in enumerate(lengths)]).astype(
        array.dtype, copy=False)


_default = {"distribution": None}


def set_distribution(distribution) -> None:
    """The distribution of models compiled (or loaded with kilnet.models.load_model) later
    without distribution=..., as keras.distribution.set_distribution; None resets it.

    Example:
        >>> import kilnet
        >>> kilnet.distribution.set_distribution(kilnet.distribution.DataParallel())
        >>> type(kilnet.distribution.distribution()).__name__
        'DataParallel'
        >>> kilnet.distribution.set_distribution(None)
    """
    if distribution is not None and not isinstance(distribution, Distribution):
        get(distribution)  # raises the TypeError
    _default["distribution"] = distribution


def get_distribution():
    """The distribution set by set_distribution (or a Distribution's scope()), or None."""
    return _default["distribution"]


def distribution():
    """Keras's name for get_distribution: the distribution compile() uses by default."""
    return get_distribution()


def get(distribution):
    """compile(distribution=...) resolved: None (one device) or a Distribution.

    None means the default of set_distribution; failing that, one device, except in a
    multi-process run, where it means DataParallel over all devices: training each process
    alone on its shard would silently give different models."""
    if distribution is None:
        distribution = _default["distribution"]
    if distribution is None:
        return DataParallel() if jax.process_count() > 1 else None
    if isinstance(distribution, Distribution):
        return distribution
    raise TypeError("distribution must be a kilnet.distribution.DataParallel, a "
                    "ModelParallel or None, e.g. distribution=kilnet.distribution."
                    f"DataParallel(). Received: distribution={distribution!r}")


# -- several processes ---------------------------------------------------------------------------
def initialize(job_addresses=None, num_processes=None, process_id=None, *,
               coordinator_address=None, timeout_seconds: int = 300):
    """Join a multi-process run, as `keras.distribution.initialize`: `jax.distributed
    .initialize`, before any other JAX work.

    job_addresses: "host:port" of process 0, reachable by every process, or Keras's
        comma-separated addresses of every process (the first is the coordinator; there
        must be num_processes of them). `coordinator_address` is kilnet's earlier name.
    num_processes, process_id: the run's size and this process's place in it (0 is the
        coordinator).
    Each argument left None is read from Keras's environment variables
    KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES and
    KERAS_DISTRIBUTION_PROCESS_ID; with none of them anywhere, JAX finds the cluster itself
    (Cloud TPU, SLURM, ...). Afterwards jax.devices() lists the devices of every process,
    DataParallel() spans them all, and, unless kilnet.utils.set_random_seed was called, all
    processes share one random seed (chosen by process 0) so that they build the same
    initial model.
    """
    given = _from_environment(job_addresses if job_addresses is not None
                              else coordinator_address, num_processes, process_id)
    if given == (None, None, None):
        jax.distributed.initialize(initialization_timeout=int(timeout_seconds))
    else:
        coordinator, num_processes, process_id = _checked_cluster(*given)
        jax.distributed.initialize(coordinator_address=coordinator,
                                   num_processes=num_processes, process_id=process_id,
                                   initialization_timeout=int(timeout_seconds))
    _share_seed()


def _from_environment(job_addresses, num_processes, process_id) -> tuple:
    """The arguments, each None one from Keras's environment variable (still None if unset)."""
    environ = {"job_addresses": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
               "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
               "process_id": "KERAS_DISTRIBUTION_PROCESS_ID"}
    values = {"job_addresses": job_addresses, "num_processes": num_processes,
              "process_id": process_id}
    for name, variable in environ.items():
        if values[name] is None and os.environ.get(variable):
            text = os.environ[variable]
            values[name] = text if name == "job_addresses" else _integer(variable, text)
    return values["job_addresses"], values["num_processes"], values["process_id"]


def _integer(name, text):
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer. Received: {name}={text!r}") from None


def _checked_cluster(job_addresses, num_processes, process_id) -> tuple:
    """(coordinator address, num_processes, process_id), checked, with errors that name them."""
    addresses = job_addresses.split(",") if isinstance(job_addresses, str) else [job_addresses]
    if not all(isinstance(a, str) and re.fullmatch(r"[^\s,:]+:\d+", a.strip())
               for a in addresses):
        raise ValueError("job_addresses must be 'host:port' of process 0, e.g. "
                         "'10.0.0.1:1234', or the comma-separated addresses of every process. "
                         f"Received: job_addresses={job_addresses!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError("Need num_processes >= 1 and 0 <= process_id < num_processes. "
                         f"Received: num_processes={num_processes}, process_id={process_id}")
    if len(addresses) > 1 and len(addresses) != num_processes:
        raise ValueError(f"job_addresses lists {len(addresses)} processes but num_processes "
                         f"is {num_processes}: give every process's address, or process 0's "
                         f"alone. Received: job_addresses={job_addresses!r}")
    return addresses[0].strip(), int(num_processes), int(process_id)


def _share_seed():
    from kilnet import utils

    if jax.process_count() == 1 or utils.seed_is_set():
        return  # one process, or the user seeded every process already
    utils.set_random_seed(shared_seed(int.from_bytes(os.urandom(4), "little") % 2**31))


def shared_seed(seed: int) -> int:
    """Process 0's `seed` on every process (unchanged in a single process): a seed drawn at
    random in each process must agree for all of them to build the same model."""
    if jax.process_count() == 1:
        return seed
    from jax.experimental import multihost_utils
    return int(multihost_utils.broadcast_one_to_all(np.int32(seed)))


def chief_value(value: float) -> float:
    """Process 0's `value` on every process (unchanged in a single process), for host decisions
    that must agree across processes, such as chunk lengths from measured times. Collective."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils
    return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def any_process(flag: bool) -> bool:
    """True on every process if `flag` is true on any (unchanged in a single process): for
    host decisions such as stopping on a signal, which all processes must take together."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils
    return bool(np.any(multihost_utils.process_allgather(np.int32(bool(flag)))))


def process_count() -> int:
    return jax.process_count()


def process_index() -> int:
    return jax.process_index()


def is_chief() -> bool:
    """True in the process that writes files and logs (process 0); True when alone."""
    return jax.process_index() == 0


def process_shard(array, *, process_id: int | None = None, num_processes: int | None = None):
    """This process's contiguous shard of `array` (np.array_split): the shards of all processes,
    concatenated in process order, are `array` again."""
    process_id = jax.process_index() if process_id is None else process_id
    num_processes = jax.process_count() if num_processes is None else num_processes
    return np.array_split(np.asarray(array), num_processes)[process_id]


# -- the command line (kilnet train) --------------------------------------------------------------
def initialize_from_args(args) -> bool:
    """`kilnet train --coordinator H:P --num-processes N --process-id I`: call `initialize`
    if the options were given; returns whether it did."""
    given = [args.coordinator is not None, args.num_processes is not None,
             args.process_id is not None]
    if not any(given):
        return False
    if not all(given):
        raise ValueError("--coordinator, --num-processes and --process-id go together. "
                         f"Received: --coordinator={args.coordinator} "
                         f"--num-processes={args.num_processes} --process-id={args.process_id}")
    initialize(args.coordinator, args.num_processes, args.process_id)
    return True
