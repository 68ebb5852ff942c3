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

import os
import re

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["DataParallel", "set_distribution", "get_distribution", "initialize", "is_chief",
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
    kind, _, index = device_name.lower().partition(":")
    devices = _platform_devices(kind)
    position = int(index) if index.isdigit() else 0
    if position >= len(devices):
        raise ValueError(f"No device {device_name!r} here; the devices are "
                         f"{list_devices()}. Received: device_name={device_name!r}")
    return jax.default_device(devices[position])


class DataParallel:
    """Split every batch over `devices`, with parameters and optimizer state replicated.

    devices: a list of jax devices; None means all devices (`jax.devices()`: in one process,
    all local devices; after `initialize`, the devices of every process).
    """

    def __init__(self, devices=None):
        devices = jax.devices() if devices is None else list(devices)
        if not devices or not all(isinstance(d, jax.Device) for d in devices):
            raise ValueError("DataParallel needs a non-empty list of jax devices, e.g. "
                             f"devices=jax.devices()[:4]. Received: devices={devices!r}")
        if len({d.id for d in devices}) != len(devices):
            raise ValueError(f"DataParallel got a device twice. Received: devices={devices!r}")
        self.devices = devices
        self.mesh = Mesh(np.array(devices), (BATCH_AXIS,))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    def __repr__(self):
        return f"DataParallel({self.num_devices} devices: {self.devices[0].platform})"

    # -- the batch size ------------------------------------------------------------------------
    def check_batch_size(self, batch_size: int, argument: str = "batch_size") -> int:
        """batch_size is global; it must split evenly over the devices (no padding)."""
        d = self.num_devices
        if batch_size % d:
            below, above = (batch_size // d) * d, (batch_size // d + 1) * d
            nearest = " or ".join(str(v) for v in (below, above) if v > 0)
            raise ValueError(
                f"{argument} is the global batch and must be a multiple of the number of "
                f"devices ({d}) so that every device gets the same share; nearest valid sizes: "
                f"{nearest}. Received: {argument}={batch_size} with {d} devices")
        return batch_size

    def whole_batch_size(self, batch_size: int, n: int) -> int:
        """A batch holding the whole dataset (batch_size >= n, as Keras allows) is rounded up
        to a multiple of the device count: the extra rows are masked padding, so every result
        is unchanged. Any other batch_size is returned as is, and checked at compilation."""
        if batch_size >= n:
            return -(-batch_size // self.num_devices) * self.num_devices
        return batch_size

    # -- what the compiled programs see ---------------------------------------------------------
    def abstract(self, tree):
        """Shapes and dtypes of a program's arguments, all replicated over the mesh."""
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), _dtype(a),
                                                           sharding=self.replicated), tree)

    def replicate_outputs(self, fn):
        """fn with every output pinned replicated: the state stays identical on all devices."""
        def replicated_fn(*args):
            return jax.lax.with_sharding_constraint(fn(*args), self.replicated)
        return replicated_fn

    def wrap(self, compiled):
        """A compiled program that first places its arguments replicated over the mesh.

        Arrays made outside the programs (a fresh state, the epoch order, the loop bounds,
        weights from set_weights) live on one device; those already placed pass through as
        they are, so the donated state is not copied on every chunk."""
        replicated = self.replicated

        def place(leaf):
            if isinstance(leaf, jax.Array) and leaf.sharding == replicated:
                return leaf
            return jax.device_put(leaf, replicated)

        def run(*args):
            return compiled(*jax.tree.map(place, args))
        run.compiled = compiled
        return run


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
    without distribution=..., as keras.distribution.set_distribution; None resets it."""
    if distribution is not None and not isinstance(distribution, DataParallel):
        get(distribution)  # raises the TypeError
    _default["distribution"] = distribution


def get_distribution():
    """The distribution set by set_distribution, or None."""
    return _default["distribution"]


def get(distribution):
    """compile(distribution=...) resolved: None (one device) or a DataParallel.

    None means the default of set_distribution; failing that, one device, except in a
    multi-process run, where it means DataParallel over all devices: training each process
    alone on its shard would silently give different models."""
    if distribution is None:
        distribution = _default["distribution"]
    if distribution is None:
        return DataParallel() if jax.process_count() > 1 else None
    if isinstance(distribution, DataParallel):
        return distribution
    raise TypeError("distribution must be a kilnet.distribution.DataParallel or None, e.g. "
                    "distribution=kilnet.distribution.DataParallel(). "
                    f"Received: distribution={distribution!r}")


# -- several processes ---------------------------------------------------------------------------
def initialize(coordinator_address: str, num_processes: int, process_id: int, *,
               timeout_seconds: int = 300):
    """Join a multi-process run: `jax.distributed.initialize`, before any other JAX work.

    coordinator_address: "host:port" of process 0, reachable by every process.
    Afterwards jax.devices() lists the devices of every process, DataParallel() spans them all,
    and, unless kilnet.utils.set_random_seed was called, all processes share one random seed
    (chosen by process 0) so that they build the same initial model.
    """
    if not isinstance(coordinator_address, str) or not re.fullmatch(r"\S+:\d+",
                                                                     coordinator_address):
        raise ValueError("coordinator_address must be 'host:port', e.g. '10.0.0.1:1234'. "
                         f"Received: coordinator_address={coordinator_address!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an integer. Received: {name}={value!r}")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError("Need num_processes >= 1 and 0 <= process_id < num_processes. "
                         f"Received: num_processes={num_processes}, process_id={process_id}")
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=int(num_processes), process_id=int(process_id),
                               initialization_timeout=int(timeout_seconds))
    _share_seed()


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
