"""kilnet's file container: a safetensors file whose header carries JSON, read defensively and
written atomically. Used by model files, weights files and checkpoints (kilnet/saving.py,
kilnet/checkpoint.py).

Layout: the standard safetensors file (8-byte little-endian header length, JSON header, raw
little-endian tensor bytes). `__metadata__` holds four strings:

    format          "kilnet"
    kind            "model", "weights" or "checkpoint"
    format_version  "1"
    info            JSON: what the kind needs (architecture, compile configuration, ...)
    sha256          digest of kind, version, info and every tensor's name, dtype, shape, bytes

Reading trusts nothing: the header size is bounded before anything is parsed, the JSON is parsed
strictly (no duplicate keys), only numeric dtypes are accepted, and the digest is checked before
any of the info is interpreted, so a corrupted file fails with one clear message. Nothing in a
file is ever executed: the info is plain JSON, interpreted against allowlists by the caller.
"""

from __future__ import annotations

import errno as errno_lib
import hashlib
import json
import math
import os
import stat
import tempfile
import time

import numpy as np

from kilnet.errors import ModelFileError, SaveError

FORMAT_VERSION = "1"
# A header above this size is refused before parsing. Real ones are a few kB (a config plus one
# entry per tensor); safetensors itself caps headers at 100 MB.
MAX_HEADER_BYTES = 16 * 2**20
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I8": np.int8,
           "I32": np.int32, "I64": np.int64, "U8": np.uint8, "U32": np.uint32, "BOOL": np.bool_}
_METADATA_KEYS = {"format", "kind", "format_version", "info", "sha256"}
# Tests set this to make writers pause between files, so that kills land inside writes.
PAUSE_ENV = "KILNET_TEST_WRITE_PAUSE"


# -- encoding -------------------------------------------------------------------------------
def json_default(value):
    """NumPy scalars and arrays in configs and callback states, as plain JSON values."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if callable(value):
        raise TypeError(
            f"The Python function {getattr(value, '__qualname__', value)!r:.80} cannot be saved: "
            "kilnet files hold no code. Register it with "
            "@kilnet.saving.register_keras_serializable(package=..., name=...) (kilnet's "
            "register_serializable) and it is saved by name (a layer's activation, a Lambda "
            "layer's function, an initializer, regularizer or constraint; Keras opens a .keras "
            "file naming it when it is registered under the same name with "
            "keras.saving.register_keras_serializable), "
            "or write a Layer or kilnet.initializers.Initializer subclass with get_config. "
            "model.save_weights() saves the weights alone.")
    raise TypeError(f"{type(value).__name__} values cannot be saved: {value!r:.100}")


def digest(kind: str, info_json: str, tensors: dict) -> str:
    h = hashlib.sha256()
    for part in ("kilnet", kind, FORMAT_VERSION, info_json):
        h.update(part.encode("utf-8") + b"\0")
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")
        h.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode("utf-8"))
        h.update(array.reshape(-1).view(np.uint8))
    return h.hexdigest()


def encode(kind: str, info: dict, tensors: dict) -> bytes:
    """The bytes of a kilnet file holding `info` (JSON-able) and `tensors` (name -> array)."""
    import safetensors.numpy

    tensors = {name: np.asarray(a, order="C") for name, a in tensors.items()}
    for name, array in tensors.items():
        if array.dtype not in [np.dtype(d) for d in _DTYPES.values()]:
            raise TypeError(f"Cannot save tensor {name!r} of dtype {array.dtype}.")
    info_json = json.dumps(info, sort_keys=True, default=json_default)
    metadata = {"format": "kilnet", "kind": kind, "format_version": FORMAT_VERSION,
                "info": info_json, "sha256": digest(kind, info_json, tensors)}
    return safetensors.numpy.save(tensors, metadata=metadata)


# -- decoding -------------------------------------------------------------------------------
def _no_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json(text, what: str, path):
    """A JSON document read strictly: a duplicate key (which plain json.loads resolves silently
    to the last value) and nesting deep enough to exhaust the stack are ModelFileErrors naming
    `path` and `what` ("header", "meta.json", ...).

    >>> parse_json('{"a": 1}', "info", "f.kilnet")
    {'a': 1}
    >>> parse_json('{"a": 1, "a": 2}', "info", "f.kilnet")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kilnet.errors.ModelFileError: Cannot load f.kilnet: the info is not valid JSON (duplicate key 'a').
    """
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ModelFileError(path, f"the {what} is nested too deeply for a kilnet file.") from None
    except (ValueError, TypeError) as error:  # JSONDecodeError, duplicate keys, bad UTF-8
        raise ModelFileError(path, f"the {what} is not valid JSON ({error}).") from None


_strict_json = parse_json


MAX_DEPTH = 64            # nesting of lists and dicts in a configuration or a description
MAX_VALUES = 1_000_000    # values of every kind, all levels together


def check_bounds(value, path, what="model configuration", *, max_depth=None, max_values=None):
    """Refuse JSON data nested deeper than MAX_DEPTH or holding more than MAX_VALUES values,
    and values that are not JSON data. Iterative, so it cannot overflow the stack.

    >>> check_bounds({"a": [1, 2]}, "f.kilnet")
    >>> check_bounds([[[1]]] * 2, "f.kilnet") is None
    True
    """
    max_depth, max_values = max_depth or MAX_DEPTH, max_values or MAX_VALUES
    stack, count = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > max_values:
            raise ModelFileError(path, f"the {what} holds more than {max_values:,} values; "
                                       "kilnet refuses configurations that large.")
        if depth > max_depth:
            raise ModelFileError(path, f"the {what} is nested more than {max_depth} levels "
                                       "deep; kilnet refuses configurations that deep.")
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    raise ModelFileError(path, f"the {what} has a non-string key {key!r:.50}.")
                stack.append((sub, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((sub, depth + 1) for sub in item)
        elif not (item is None or isinstance(item, (bool, int, float, str))):
            raise ModelFileError(path, f"the {what} holds a {type(item).__name__}, which is "
                                       "not JSON data.")


def nonfinite_values(value, where="", *, nan_only=False) -> list[str]:
    """Where JSON data holds NaN or infinity (only NaN with nan_only), as paths
    ("optimizer.config.beta_1"). Iterative, like check_bounds.

    >>> nonfinite_values({"a": {"b": float("nan")}, "c": [1.0, float("inf")]})
    ['a.b', 'c[1]']
    """
    found, stack = [], [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, float) and (math.isnan(item) if nan_only
                                        else not math.isfinite(item)):
            found.append(at)
        elif isinstance(item, dict):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))
    return sorted(found)


def _check_tensor_entry(name, entry, path):
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ModelFileError(path, f"the header entry of tensor {name!r} is malformed.")
    if entry["dtype"] not in _DTYPES:
        raise ModelFileError(path, f"tensor {name!r} has dtype {entry['dtype']!r}; kilnet files "
                                   f"hold only {sorted(_DTYPES)}.")
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelFileError(path, f"tensor {name!r} has an invalid shape {shape!r}.")


def decode(data: bytes, path, kind: str) -> tuple[dict, dict]:
    """(info, tensors) from the bytes of a kilnet file of `kind`; ModelFileError otherwise."""
    import safetensors.numpy

    if len(data) < 8:
        raise ModelFileError(path, f"the file is {len(data)} bytes long, too short to be a kilnet "
                                   "file (truncated?).")
    header_len = int.from_bytes(data[:8], "little")
    if header_len > MAX_HEADER_BYTES:
        raise ModelFileError(path, f"the header claims {header_len:,} bytes, more than the "
                                   f"{MAX_HEADER_BYTES:,} a kilnet file may have; this is not a "
                                   "kilnet file (a pickle, a zip, ...) or it is damaged.")
    if 8 + header_len > len(data):
        raise ModelFileError(path, f"the header claims {header_len:,} bytes but the file has only "
                                   f"{len(data) - 8:,} after the length field: it is truncated "
                                   "or not a kilnet file.")
    try:
        header_text = data[8:8 + header_len].decode("utf-8")
    except UnicodeDecodeError:
        raise ModelFileError(path, "the header is not UTF-8 text: this is not a kilnet file "
                                   "(a pickle, a zip, ...) or it is damaged.") from None
    header = _strict_json(header_text, "header", path)
    if not isinstance(header, dict):
        raise ModelFileError(path, "the header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    if (not isinstance(metadata, dict) or metadata.get("format") != "kilnet"
            or not all(isinstance(v, str) for v in metadata.values())):
        raise ModelFileError(path, "it is a safetensors file without kilnet's metadata, not a "
                                   "file written by kilnet.")
    if set(metadata) != _METADATA_KEYS:
        raise ModelFileError(path, f"its metadata has the keys {sorted(metadata)}; expected "
                                   f"{sorted(_METADATA_KEYS)}.")
    if metadata["format_version"] != FORMAT_VERSION:
        raise ModelFileError(path, f"it has format version {metadata['format_version']!r}; this "
                                   f"kilnet reads version {FORMAT_VERSION}. Upgrade kilnet.")
    if metadata["kind"] != kind:
        raise ModelFileError(path, f"it is a kilnet {metadata['kind']!r} file, not a {kind!r} "
                                   "file" + _kind_hint(metadata["kind"], kind))
    for name, entry in header.items():
        _check_tensor_entry(name, entry, path)
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as error:  # safetensors' own structural checks (offsets, sizes)
        raise ModelFileError(path, f"the tensor data is malformed or truncated "
                                   f"({error}).") from None
    if set(tensors) != set(header):
        raise ModelFileError(path, "the tensor index is inconsistent.")
    if digest(kind, metadata["info"], tensors) != metadata["sha256"]:
        raise ModelFileError(path, "its checksum does not match its contents: the file is "
                                   "corrupted (damaged storage, an interrupted copy) or was "
                                   "edited. Use another copy.")
    info = _strict_json(metadata["info"], "info", path)
    if not isinstance(info, dict):
        raise ModelFileError(path, "its info is not a JSON object.")
    return info, tensors


def _kind_hint(found: str, wanted: str) -> str:
    if found == "weights" and wanted == "model":
        return "; load it with model.load_weights(path) into a model of the same architecture."
    if found == "model" and wanted == "weights":
        return "; load it with kilnet.models.load_model(path)."
    return "."


def open_regular(path, what="file"):
    """Open `path` for reading in binary mode, only if it is a regular file.

    A FIFO, a device or a socket given as a model, weights or checkpoint path would block the
    reader forever (or never end): it is opened without blocking, checked with fstat and
    refused with a ModelFileError before anything is read.

    >>> import os, tempfile
    >>> fifo = os.path.join(tempfile.mkdtemp(), "pipe")
    >>> os.mkfifo(fifo)
    >>> open_regular(fifo)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kilnet.errors.ModelFileError: Cannot load ...pipe: it is a FIFO (named pipe), not a regular file...
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"No such {what}: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(path, "it is a directory, not a file.") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ModelFileError(path, f"it is {_file_kind(mode)}, not a regular file; kilnet "
                                   f"reads a {what} only from a regular file (a FIFO or a "
                                   "device could stall the reader forever).")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _file_kind(mode) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path, what="file", limit=None) -> bytes:
    """The whole content of the regular file `path` (see open_regular); a file larger than
    `limit` bytes is refused before it is read."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if limit is not None and size > limit:
            raise ModelFileError(path, f"it is {size:,} bytes long, more than the {limit:,} a "
                                       f"{what} may have.")
        return f.read(size + 1)


def read(path, kind: str) -> tuple[dict, dict]:
    with open_regular(path, f"kilnet {kind} file") as f:
        size = os.fstat(f.fileno()).st_size
        # Read the length field first: a huge claimed header is refused without reading more.
        head = f.read(8)
        if len(head) == 8 and int.from_bytes(head, "little") > MAX_HEADER_BYTES:
            return decode(head, path, kind)
        data = head + f.read(size)
    return decode(data, path, kind)


# -- durable, atomic writes -------------------------------------------------------------------
def pause_for_tests():
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        time.sleep(float(seconds))


def _write_all(fd: int, data: bytes):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path):
    """Make a rename or a new entry in `path` durable (a no-op where directories can't sync)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno_lib.EINVAL, errno_lib.ENOTSUP, errno_lib.EBADF):
            raise
    finally:
        os.close(fd)


def write_new(path, data: bytes):
    """Create `path` (it must not exist), write, flush and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def save_error(what: str, path, error: OSError, keeps: str) -> SaveError:
    reason = error.strerror or str(error)
    return SaveError(f"Could not write {what} {path}: {reason} (errno {error.errno}). {keeps}",
                     errno=error.errno)


def atomic_write(path, data: bytes, *, what="the file", overwrite=True):
    """Replace `path` by `data` atomically: a temporary file in the same folder, fsync, rename,
    fsync of the folder. On any failure the previous file is untouched and no temporary file
    is left behind; OS errors become a SaveError that says so."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False.")
    keeps = ("The previous file is unchanged." if os.path.exists(path)
             else "No file was written.")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=folder)
        try:
            os.fchmod(fd, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
            _write_all(fd, data)
            pause_for_tests()
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        tmp = None
        fsync_dir(folder)
    except OSError as error:
        raise save_error(what, path, error, keeps) from error
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
