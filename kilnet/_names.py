"""Default names for layers and models ("dense", "dense_1", ...).

Keras numbers default names per process, so the same model code gets other names when it runs
again in a notebook; kilnet numbers them per model (Sequential.add, kilnet.Model(...), a
sub-layer assigned as an attribute), so names, files and checkpoints are the same on every run.
A leaf module.
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


def unique_among(base: str, taken) -> str:
    """`base`, or base_1, base_2, ... : the first not in `taken`."""
    if base not in taken:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"
