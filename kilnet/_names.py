"""Default names for layers and models ("dense", "dense_1", ...).

Keras numbers default names per process, so the same model code gets other names when it runs
again in a notebook; kilnet numbers them per model (Sequential.add, kilnet.Model(...), a
sub-layer assigned as an attribute), so names, files and checkpoints are the same on every run.
A layer that no model has named yet reads Keras's per-process name (numbered_in_process), so
two layers made on their own are told apart, and serialized, as Keras's are. A leaf module.
"""

from __future__ import annotations

import re


def snake_case(class_name: str) -> str:
    """Keras's default name for a class: Conv2D -> conv2d, BatchNormalization ->
    batch_normalization, Conv2DTranspose -> conv2d_transpose, MaxPooling1D -> max_pooling1d.

    The rule: an underscore before each capitalised word (a capital followed by lower-case
    letters) that follows another character, and between a lower-case letter and a capital."""
    name = re.sub(r"(?<=.)(?=[A-Z][a-z]+)", "_", re.sub(r"\W+", "", class_name))
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


class Names(set):
    """The names taken in one model, remembering per base where numbering stopped, so that
    naming n layers of one kind costs n lookups, not n^2 (a chain of 60,000 Dense layers).
    Names are only added to it: a number passed over stays taken.

    >>> names = Names({"dense"})
    >>> unique_among("dense", names), unique_among("dense", names | {"dense_1"})
    ('dense_1', 'dense_2')
    """

    def __init__(self, names=()):
        super().__init__(names)
        self.next_suffix = {}


# How many layers of each base name this process has named so far (numbered_in_process).
_PROCESS_COUNTS: dict = {}


def numbered_in_process(base: str) -> str:
    """Keras's default name for a new layer: `base` for the first of its kind made in the
    process, then base_1, base_2, ... (Keras's `uniquify`, counted per base name). A layer
    reads it until a model fixes its name per model (`unique_among`).

    >>> reset_process_numbering()
    >>> numbered_in_process("my_dense"), numbered_in_process("my_dense")
    ('my_dense', 'my_dense_1')
    """
    count = _PROCESS_COUNTS.get(base, 0)
    _PROCESS_COUNTS[base] = count + 1
    return base if count == 0 else f"{base}_{count}"


def reset_process_numbering() -> None:
    """Start numbered_in_process again from the bare names, as Keras's clear_session does.

    >>> reset_process_numbering()
    >>> numbered_in_process("dense")
    'dense'
    """
    _PROCESS_COUNTS.clear()


def unique_among(base: str, taken) -> str:
    """`base`, or base_1, base_2, ... : the first not in `taken`."""
    if base not in taken:
        return base
    i = taken.next_suffix.get(base, 1) if isinstance(taken, Names) else 1
    while f"{base}_{i}" in taken:
        i += 1
    if isinstance(taken, Names):
        taken.next_suffix[base] = i
    return f"{base}_{i}"


def name_problem(name) -> str | None:
    """Why `name` cannot name a layer or model, or None if it can.

    The rule is the one model files need, so that every model that saves also loads: a
    non-empty string (as Keras) without "/" (Keras's rule: "/" separates the layer path in
    weight names, "params/encoder/dense/kernel"), and encodable as UTF-8 (file headers are
    UTF-8 JSON; a lone surrogate such as "\\ud800" is not).

    >>> name_problem("dense_1") is None
    True
    >>> name_problem("enc/dense")
    "it contains '/', which separates the layers of a weight's path in model files"
    """
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if "/" in name:
        return "it contains '/', which separates the layers of a weight's path in model files"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds a character that UTF-8 cannot encode (a lone surrogate)"
    return None


def check_name(name, argument: str = "name") -> str:
    """`name` if it may name a layer or model (see `name_problem`), else ValueError.

    >>> check_name("encoder")
    'encoder'
    >>> check_name("a/b")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: name must be a non-empty string without '/' (it contains '/', ...). Received: name='a/b'. ...
    """
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{argument} must be a non-empty string without '/' ({problem}). "
                         f"Received: {argument}={name!r:.100}. Use '_' instead of '/' "
                         "(e.g. 'encoder_dense').")
    return name
