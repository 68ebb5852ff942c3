"""Training checkpoints: the whole training state in a directory committed atomically.

    backup_dir/
      ckpt-00000007/
        state.safetensors   the TrainState pytree (params, optimizer state, BatchNorm state,
                            RNG key, metric sums of the epoch in progress, fault flags) under
                            state/<path>, and callbacks' arrays under callbacks/<key>/...
                            (a kilnet file of kind "checkpoint", kilnet/_safefile.py)
        meta.json           position (epoch, step), trainer seed and fit count (they decide the
                            data order), callbacks' state, and the setup that wrote it (model
                            config, optimizer, loss, metrics, batch size, data size)
        COMMIT              the SHA-256 of the two files; written last

A checkpoint is written into `.tmp-ckpt-*` (each file fsynced, COMMIT last, the directory
fsynced), then renamed to `ckpt-<n>` and the parent fsynced: a `ckpt-<n>` directory is either
complete or absent, whatever moment the process is killed at. Directories without COMMIT and
leftover temporary ones are ignored and removed. Old checkpoints are renamed away before being
deleted, so pruning can't leave a half-deleted committed one either.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass

from kilnet import _safefile, _tree
from kilnet.errors import CheckpointMismatchError, ModelFileError

PREFIX, TMP_PREFIX, DEL_PREFIX = "ckpt-", ".tmp-ckpt-", ".del-ckpt-"
STATE_FILE, META_FILE, COMMIT_FILE = "state.safetensors", "meta.json", "COMMIT"
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
def _seq(name: str):
    if name.startswith(PREFIX) and name[len(PREFIX):].isdigit():
        return int(name[len(PREFIX):])
    return None


def committed(directory) -> list[tuple[int, str]]:
    """(sequence number, path) of the committed checkpoints, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        seq, path = _seq(name), os.path.join(directory, name)
        if seq is not None and os.path.isfile(os.path.join(path, COMMIT_FILE)):
            found.append((seq, path))
    return sorted(found)


def cleanup(directory) -> None:
    """Remove what interrupted writes and deletions left: temporary and uncommitted dirs."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        stale = name.startswith((TMP_PREFIX, DEL_PREFIX)) or (
            _seq(name) is not None and not os.path.isfile(os.path.join(path, COMMIT_FILE)))
        if stale and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(directory, meta: dict, tensors: dict, *, keep: int) -> str:
    """Commit a new checkpoint in `directory`, keep the newest `keep`; returns its path."""
    directory = os.fspath(directory)
    state = _safefile.encode("checkpoint", {}, tensors)
    meta_bytes = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta},
                            sort_keys=True, indent=1,
                            default=_safefile.json_default).encode("utf-8")
    commit = json.dumps({"format": FORMAT, "files": {STATE_FILE: _sha256(state),
                                                     META_FILE: _sha256(meta_bytes)}})
    tmp = final = None
    try:
        os.makedirs(directory, exist_ok=True)
        taken = [_seq(n) for n in os.listdir(directory)]
        seq = max([s for s in taken if s is not None] + [0]) + 1
        final = os.path.join(directory, f"{PREFIX}{seq:08d}")
        tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=directory)
        for name, data in ((STATE_FILE, state), (META_FILE, meta_bytes),
                           (COMMIT_FILE, commit.encode("utf-8"))):
            _safefile.write_new(os.path.join(tmp, name), data)
            _safefile.pause_for_tests()
        _safefile.fsync_dir(tmp)
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
    """Delete every checkpoint (a finished run), and the directory if nothing else is in it."""
    for _, path in committed(directory):
        _remove(path)
    cleanup(directory)
    try:
        os.rmdir(directory)
    except OSError:
        pass


def load(path) -> Checkpoint:
    """Read and verify one committed checkpoint; ModelFileError if it is damaged."""
    path = os.fspath(path)

    def read(name):
        try:
            with open(os.path.join(path, name), "rb") as f:
                return f.read()
        except OSError as error:
            raise ModelFileError(path, f"cannot read {name}: {error.strerror}.") from None

    try:
        commit = json.loads(read(COMMIT_FILE))
        files = commit["files"]
        if commit.get("format") != FORMAT or set(files) != {STATE_FILE, META_FILE}:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ModelFileError(path, "its COMMIT marker is malformed.") from None
    contents = {name: read(name) for name in files}
    for name, data in contents.items():
        if _sha256(data) != files[name]:
            raise ModelFileError(path, f"{name} does not match its checksum in COMMIT.")
    try:
        meta = json.loads(contents[META_FILE])
    except ValueError:
        raise ModelFileError(path, "meta.json is not valid JSON.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(path, "meta.json is not a kilnet checkpoint description.")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(path, f"it has checkpoint format version {meta.get('version')!r}; "
                                   f"this kilnet reads version {FORMAT_VERSION}.")
    _, tensors = _safefile.decode(contents[STATE_FILE], os.path.join(path, STATE_FILE),
                                  "checkpoint")
    return Checkpoint(path, meta, tensors)


def latest(directory):
    """The newest committed checkpoint that verifies, or None. A damaged one is skipped with
    a warning (the previous one is used)."""
    for _, path in reversed(committed(directory)):
        try:
            return load(path)
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

    return {
        "model": trainer.model.architecture(),
        "optimizer": describe(trainer.optimizer),
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
    """The TrainState as named host arrays (host sync: one copy of the whole state)."""
    return _tree.tree_to_tensors("state", trainer.state)


def restore_state(trainer, ckpt: Checkpoint) -> None:
    state = {n: a for n, a in ckpt.tensors.items() if n.startswith("state/")}
    try:
        trainer.state = _tree.tensors_to_tree("state", trainer.state, state)
    except ValueError as error:
        raise CheckpointMismatchError(
            f"Cannot resume from {ckpt.path}: its training state does not fit this model and "
            f"optimizer ({error}).") from None
