"""Training checkpoints: the whole training state in a directory committed atomically.

    backup_dir/
      LOCK                  {"pid", "host"} of the trainer using the folder (one at a time)
      ckpt-epoch000007-step00000000/   the state after 7 whole epochs and 0 steps of the
                                       next (Keras's "Epoch 8" starts from it)
        state.safetensors   the TrainState pytree (params, optimizer state, BatchNorm state,
                            RNG key, metric sums of the epoch in progress, fault flags) under
                            state/<path>, the weights of layers a Metric attribute holds (a
                            KID metric's encoder) under held/... (kilnet._metric_held_layers),
                            and callbacks' arrays under callbacks/<key>/...
                            (a kilnet file of kind "checkpoint", kilnet/_safefile.py)
        meta.json           position (epoch, step), trainer seed and fit count (they decide the
                            data order), callbacks' state, and the setup that wrote it (model
                            config, optimizer, loss, metrics, batch size, data size)
        COMMIT              the SHA-256 of the two files; written last

A checkpoint is written into `.tmp-ckpt-<pid>-*` (each file fsynced, COMMIT last, the
directory fsynced), then renamed to its `ckpt-...` name and the parent fsynced: a `ckpt-...`
directory is either complete or absent, whatever moment the process is killed at. Directories
without COMMIT and temporary ones left by dead processes are ignored and removed (never the
in-flight temporary folder of a live process). Old checkpoints are renamed away before being
deleted, so pruning can't leave a half-deleted committed one either. Names of the previous
version (`ckpt-00000007`, a sequence number) are still read, as older than any named by position.

Reading trusts nothing: COMMIT and meta.json are parsed strictly (duplicate keys, nesting),
every field is type- and range-checked (the position against the run's steps per epoch and
epochs, the seed, the counts), and the arrays must be finite (a NaN weight or an infinite
learning rate is a damaged checkpoint, never resumed). A damaged checkpoint is skipped with a
warning that names it, and the previous one is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from kilnet import _metric_held_layers, _safefile, _tree
from kilnet.errors import CheckpointMismatchError, KilnetError, ModelFileError

PREFIX, TMP_PREFIX, DEL_PREFIX = "ckpt-", ".tmp-ckpt-", ".del-ckpt-"
STATE_FILE, META_FILE, COMMIT_FILE = "state.safetensors", "meta.json", "COMMIT"
LOCK_FILE = "LOCK"
MAX_META_BYTES = 64 * 2**20   # a meta.json holds a model configuration: MBs at most
MAX_SEED = 2**63
_NAME = re.compile(r"ckpt-epoch(\d{6,})-step(\d{8,})")
_LEGACY_NAME = re.compile(r"ckpt-(\d+)")


class CheckpointInUseError(KilnetError, RuntimeError):
    """Another live trainer is using the same backup folder (its LOCK names the process)."""
FORMAT = "kilnet.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    path: str
    meta: dict
    tensors: dict

    @property
    def position(self) -> tuple[int, int]:
        epoch, step = self.meta["position"]
        return int(epoch), int(step)


# -- the directory protocol -----------------------------------------------------------------------
def name_of(position) -> str:
    """The directory name of the checkpoint at `position` (epoch, step): the state after
    `epoch` whole epochs and `step` steps of the next one.

    >>> name_of((84, 0))
    'ckpt-epoch000084-step00000000'
    """
    epoch, step = position
    return f"{PREFIX}epoch{int(epoch):06d}-step{int(step):08d}"


def _order(name: str):
    """The sort key of a checkpoint directory name, or None for other names. Names by
    position sort by it; the previous version's sequence numbers sort before them."""
    match = _NAME.fullmatch(name)
    if match:
        return (1, int(match[1]), int(match[2]))
    match = _LEGACY_NAME.fullmatch(name)
    if match:
        return (0, int(match[1]), 0)
    return None


def committed(directory) -> list[tuple[tuple, str]]:
    """(sort key, path) of the committed checkpoints, oldest first."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        key, path = _order(name), os.path.join(directory, name)
        if key is not None and os.path.isfile(os.path.join(path, COMMIT_FILE)):
            found.append((key, path))
    return sorted(found)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True   # another user's process: alive
    except (OverflowError, ValueError):
        return False
    return True


def _tmp_owner(name: str):
    """The process id in a temporary folder's name (.tmp-ckpt-<pid>-...), or None."""
    match = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", name)
    return int(match[1]) if match else None


def cleanup(directory) -> None:
    """Remove what interrupted writes and deletions left: uncommitted dirs and the temporary
    folders of processes that are gone. A live process's in-flight temporary folder is kept."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        path = os.path.join(directory, name)
        owner = _tmp_owner(name)
        if owner is not None and owner != os.getpid() and _pid_alive(owner):
            continue   # another live trainer is writing it
        stale = name.startswith((TMP_PREFIX, DEL_PREFIX)) or (
            _order(name) is not None and not os.path.isfile(os.path.join(path, COMMIT_FILE)))
        if stale and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


# -- one trainer per folder ---------------------------------------------------------------------
def acquire_lock(directory) -> None:
    """Make this process the one trainer using `directory`: a LOCK file naming it.

    A lock held by a live process (on this host, or any process on another host sharing the
    folder) is a CheckpointInUseError; a lock left by a process that is gone (killed) is
    taken over. Calling it again from the process holding the lock keeps it."""
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    lock = os.path.join(directory, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(5):
        fd, tmp = tempfile.mkstemp(prefix=".lock-", dir=directory)
        try:
            os.write(fd, json.dumps(me).encode("utf-8"))
            os.close(fd)
            try:
                os.link(tmp, lock)   # atomic: fails if a LOCK exists
                return
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
        holder = _lock_holder(lock)
        if holder == me:
            return
        if holder is not None and (holder["host"] != me["host"] or _pid_alive(holder["pid"])):
            where = "" if holder["host"] == me["host"] else f" on host {holder['host']!r}"
            raise CheckpointInUseError(
                f"The backup folder {directory} is in use by process {holder['pid']}{where}, "
                "another training run. Two runs on one backup_dir would overwrite each other's "
                "checkpoints: give this run its own backup_dir, or wait for that run to end. "
                f"If no such process is running, delete {lock}.")
        _take_stale(lock)
    raise CheckpointInUseError(f"Could not lock the backup folder {directory}: other processes "
                               "keep taking it.")


def _lock_holder(lock):
    """{"pid", "host"} of a LOCK file, or None when it is gone or unreadable (stale)."""
    try:
        with _safefile.open_regular(lock, "lock file") as f:
            holder = _safefile.parse_json(f.read(4096), "lock file", lock)
    except (OSError, ModelFileError):
        return None
    if (isinstance(holder, dict) and set(holder) == {"pid", "host"}
            and isinstance(holder["pid"], int) and holder["pid"] > 0
            and isinstance(holder["host"], str)):
        return holder
    return None


def _take_stale(lock):
    """Move a stale LOCK away (one renamer wins when several try at once)."""
    try:
        os.rename(lock, f"{lock}.stale-{os.getpid()}")
        os.unlink(f"{lock}.stale-{os.getpid()}")
    except OSError:
        pass


def release_lock(directory) -> None:
    """Remove the LOCK if this process holds it."""
    lock = os.path.join(os.fspath(directory), LOCK_FILE)
    if _lock_holder(lock) == {"pid": os.getpid(), "host": socket.gethostname()}:
        try:
            os.unlink(lock)
        except OSError:
            pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(directory, meta: dict, tensors: dict, *, keep: int) -> str:
    """Commit a new checkpoint in `directory`, keep the newest `keep`; returns its path.
    `meta["position"]` names it; checkpoints at that position or later are from a run that
    did not continue (it fell back past a damaged one) and are replaced."""
    directory = os.fspath(directory)
    state = _safefile.encode("checkpoint", {}, tensors)
    meta_bytes = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta},
                            sort_keys=True, indent=1,
                            default=_safefile.json_default).encode("utf-8")
    commit = json.dumps({"format": FORMAT, "files": {STATE_FILE: _sha256(state),
                                                     META_FILE: _sha256(meta_bytes)}})
    name = name_of(meta["position"])
    tmp = final = None
    try:
        os.makedirs(directory, exist_ok=True)
        final = os.path.join(directory, name)
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=directory)
        for file_name, data in ((STATE_FILE, state), (META_FILE, meta_bytes),
                                (COMMIT_FILE, commit.encode("utf-8"))):
            _safefile.write_new(os.path.join(tmp, file_name), data)
            _safefile.pause_for_tests()
        _safefile.fsync_dir(tmp)
        for key, path in committed(directory):
            if key >= _order(name):
                _remove(path)   # superseded; a rename can't replace a non-empty directory
        if os.path.lexists(final):
            _remove(final)      # uncommitted leftovers of the same name
        os.rename(tmp, final)   # the commit: atomic on POSIX file systems
        tmp = None
        _safefile.fsync_dir(directory)
    except OSError as error:
        raise _safefile.save_error("the checkpoint", final or directory, error,
                                   "The previous checkpoints are unchanged.") from error
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    prune(directory, keep)
    return final


def prune(directory, keep: int) -> None:
    for _, path in committed(directory)[:-keep] if keep else committed(directory):
        _remove(path)


def _remove(path):
    doomed = os.path.join(os.path.dirname(path), DEL_PREFIX + os.path.basename(path))
    try:
        os.rename(path, doomed)   # atomic: the checkpoint is whole or gone
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


def remove_all(directory) -> None:
    """Delete every checkpoint (a finished run), release this process's lock, and remove the
    directory if nothing else is in it."""
    for _, path in committed(directory):
        _remove(path)
    cleanup(directory)
    release_lock(directory)
    try:
        os.rmdir(directory)
    except OSError:
        pass


def load(path, *, steps=None) -> Checkpoint:
    """Read and verify one committed checkpoint; ModelFileError if it is damaged.

    `steps` (the run's steps per epoch, when known) bounds the position's step."""
    path = os.fspath(path)

    def read(name, limit):
        try:
            return _safefile.read_bytes(os.path.join(path, name), name, limit)
        except (OSError, ModelFileError) as error:
            reason = error.problem if isinstance(error, ModelFileError) else error.strerror
            raise ModelFileError(path, f"cannot read {name}: {reason}") from None

    commit = _safefile.parse_json(read(COMMIT_FILE, 4096), COMMIT_FILE, path)
    files = commit.get("files") if isinstance(commit, dict) else None
    if (set(commit) != {"format", "files"} or commit["format"] != FORMAT
            or not isinstance(files, dict) or set(files) != {STATE_FILE, META_FILE}
            or not all(isinstance(v, str) for v in files.values())):
        raise ModelFileError(path, "its COMMIT marker is malformed.")
    contents = {name: read(name, None if name == STATE_FILE else MAX_META_BYTES)
                for name in files}
    for name, data in contents.items():
        if _sha256(data) != files[name]:
            raise ModelFileError(path, f"{name} does not match its checksum in COMMIT.")
    meta = _safefile.parse_json(contents[META_FILE], META_FILE, path)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, "meta.json is not a kilnet checkpoint description.")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(path, f"it has checkpoint format version {meta.get('version')!r}; "
                                   f"this kilnet reads version {FORMAT_VERSION}.")
    _safefile.check_bounds(meta, path, "meta.json")
    _check_meta(meta, path, steps)
    _, tensors = _safefile.decode(contents[STATE_FILE], os.path.join(path, STATE_FILE),
                                  "checkpoint")
    _check_tensors(meta, tensors, path)
    return Checkpoint(path, meta, tensors)


_META_KEYS = {"format", "version", "position", "seed", "fit_calls", "epochs", "stopped",
              "setup", "callbacks", "callback_arrays"}


def _is_int(value, low, high=None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _check_meta(meta, path, steps):
    """Types and ranges of every field of meta.json (ModelFileError names the field)."""
    def bad(field, expected):
        raise ModelFileError(path, f"meta.json's {field} is {meta.get(field)!r:.100}; "
                                   f"expected {expected}.")

    if set(meta) != _META_KEYS:
        raise ModelFileError(path, f"meta.json has the keys {sorted(meta)}; expected "
                                   f"{sorted(_META_KEYS)}.")
    epochs = meta["epochs"]
    if epochs is not None and not _is_int(epochs, 1):
        bad("epochs", "a positive number of epochs")
    position = meta["position"]
    if not (isinstance(position, list) and len(position) == 2
            and all(_is_int(v, 0) for v in position)):
        bad("position", "[epoch, step], two integers >= 0")
    if epochs is not None and position[0] > epochs:
        bad("position", f"an epoch within the run's {epochs} epochs")
    if steps and position[1] > steps:
        bad("position", f"a step within the run's {steps} steps per epoch")
    if not _is_int(meta["seed"], 0, MAX_SEED - 1):
        bad("seed", "an integer in [0, 2**63)")
    if not _is_int(meta["fit_calls"], 0, 2**31):
        bad("fit_calls", "a count >= 0")
    if not isinstance(meta["stopped"], bool):
        bad("stopped", "true or false")
    for field in ("setup", "callbacks", "callback_arrays"):
        if not isinstance(meta[field], dict):
            bad(field, "a JSON object")
    if not all(_is_int(n, 0, 2**20) for n in meta["callback_arrays"].values()):
        bad("callback_arrays", "counts of arrays")
    # Callbacks' states may hold infinities (a best value not yet set); NaN is never valid.
    nan = _safefile.nonfinite_values(meta["callbacks"], "callbacks", nan_only=True)
    elsewhere = _safefile.nonfinite_values({k: v for k, v in meta.items() if k != "callbacks"})
    if nan or elsewhere:
        raise ModelFileError(path, f"meta.json holds NaN or infinity at {(nan + elsewhere)[:3]}.")


# Arrays of the state that hold a non-negative quantity, by the end of their name.
_NON_NEGATIVE = ("/hyperparams/learning_rate", "/moving_variance", "/count", "state/skipped")


def _check_tensors(meta, tensors, path):
    """The arrays: only the format's names, the callbacks' arrays present, all finite, and
    learning rates, variances and counts non-negative."""
    for name in tensors:
        if not name.startswith(("state/", "callbacks/", _metric_held_layers.PREFIX + "/")):
            raise ModelFileError(path, f"it holds an array named {name!r:.100}, which is not "
                                       "part of the format.")
    for key, count in meta["callback_arrays"].items():
        for i in range(count):
            if f"callbacks/{key}/best_weights/{i}" not in tensors:
                raise ModelFileError(path, f"the array 'callbacks/{key}/best_weights/{i}' "
                                           "is missing.")
    bad = _tree.nonfinite(tensors)
    if bad:
        raise ModelFileError(path, f"its training state holds NaN or infinity (in {bad[:3]}); "
                                   "resuming from it could only fail.")
    for name, array in tensors.items():
        if name.endswith(_NON_NEGATIVE) and np.issubdtype(array.dtype, np.number) and \
                array.size and np.min(array) < 0:
            raise ModelFileError(path, f"the array {name!r} holds a negative value "
                                       f"({np.min(array)!r}); it must be >= 0.")


def latest(directory, *, steps=None):
    """The newest committed checkpoint that verifies, or None. A damaged one is skipped with
    a warning naming it (the previous one is used)."""
    for _, path in reversed(committed(directory)):
        try:
            return load(path, steps=steps)
        except ModelFileError as error:
            warnings.warn(f"Skipping a damaged checkpoint: {error}", stacklevel=2)
    return None


# -- the training state ---------------------------------------------------------------------------
def setup_of(trainer, *, batch_size, samples) -> dict:
    """What must be the same for a checkpoint to resume exactly."""
    def describe(obj):
        try:
            config = obj.get_config()
        except (AttributeError, ValueError):
            config = None
        return {"class_name": type(obj).__name__, "config": config}

    optimizer = describe(trainer.optimizer)
    if isinstance(optimizer["config"], dict):
        # its name labels it only (a process numbers its default names: "adam_1" in the run
        # resumed, "adam_2" in the one resuming), and checkpoints before names had none
        optimizer["config"] = {k: v for k, v in optimizer["config"].items() if k != "name"}
    return {
        "model": trainer.model.architecture(),
        "optimizer": optimizer,
        "loss": describe(trainer.loss),
        "metrics": [m if isinstance(m, str) else describe(m) for m in trainer.metric_ids],
        "batch_size": batch_size,
        "samples": samples,
    }


_LABELS = {"model": "model architecture", "optimizer": "optimizer", "loss": "loss",
           "metrics": "metrics", "batch_size": "batch size",
           "samples": "number of training samples (data size)"}


def _difference(saved, current, where=""):
    """The first place where two JSON values differ, as 'where: saved vs current'."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in list(saved) + [k for k in current if k not in saved]:
            if saved.get(key, "<absent>") != current.get(key, "<absent>"):
                return _difference(saved.get(key, "<absent>"), current.get(key, "<absent>"),
                                   f"{where}.{key}" if where else str(key))
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current)):
            if a != b:
                return _difference(a, b, f"{where}[{i}]")
    prefix = f"{where}: " if where else ""
    return f"{prefix}the checkpoint has {saved!r}, this run has {current!r}"


def check_compatible(ckpt: Checkpoint, current: dict) -> None:
    saved = ckpt.meta.get("setup", {})
    current = json.loads(json.dumps(current, default=_safefile.json_default))  # as saved
    for key, label in _LABELS.items():
        if saved.get(key) != current.get(key):
            raise CheckpointMismatchError(
                f"Cannot resume from {ckpt.path}: the {label} differs "
                f"({_difference(saved.get(key), current.get(key))}). Resume with the same "
                "model, compile() and fit() arguments and data, or give BackupAndRestore a new "
                "backup_dir to start afresh.")


def capture_state(trainer) -> dict:
    """The TrainState as named host arrays, with the weights of the layers the model's
    metrics hold, which are no part of it (host sync: one copy of the whole state)."""
    tensors = _tree.tree_to_tensors("state", trainer.state)
    tensors.update(_metric_held_layers.held_tensors(trainer.model))
    return tensors


def restore_state(trainer, ckpt: Checkpoint) -> None:
    """Set the training state and the held layers' weights from `ckpt`, both checked before
    either is set: a refused checkpoint leaves the model as it was."""
    held = _checked_held(trainer.model, ckpt)
    state = {n: a for n, a in ckpt.tensors.items() if n.startswith("state/")}
    try:
        trainer.state = _tree.tensors_to_tree("state", trainer.state, state)
    except ValueError as error:
        raise CheckpointMismatchError(
            f"Cannot resume from {ckpt.path}: its training state does not fit this model and "
            f"optimizer ({error}).") from None
    _metric_held_layers.assign_held(trainer.model, held)


def _checked_held(model, ckpt: Checkpoint) -> list:
    """The held layers' (Variable, array) pairs of `ckpt`, none set yet; none for a
    checkpoint of an earlier kilnet, which kept no held arrays (with a warning)."""
    if not _metric_held_layers.has_held_arrays(ckpt.tensors):
        _metric_held_layers.warn_not_kept(model, ckpt.path)
        return []
    try:
        return _metric_held_layers.checked_held(model, ckpt.tensors)
    except _metric_held_layers.HeldWeightsError as error:
        raise CheckpointMismatchError(f"Cannot resume from {ckpt.path}: {error}.") from None
