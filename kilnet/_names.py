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
    batch_normalization."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower().replace("2_d", "2d")


def unique_among(base: str, taken) -> str:
    """`base`, or base_1, base_2, ... : the first not in `taken`."""
    if base not in taken:
        return base
    i = 1
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"
