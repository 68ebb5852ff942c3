"""JAX settings kilnet makes at import, before any computation runs.

The persistent compilation cache lets a repeated job skip XLA compilation (measured on a 2-core CPU:
a cold compile of the epoch program took 0.35 - 1.9 s). KILNET_COMPILATION_CACHE=0 disables it;
a path moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def _cache_path() -> Path | None:
    setting = os.environ.get("KILNET_COMPILATION_CACHE", "")
    if setting.lower() in ("0", "false", "no", "off"):
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kilnet" / "xla"


def _configure():
    path = _cache_path()
    if path is None or jax.config.jax_compilation_cache_dir:
        return  # disabled, or the user configured JAX's cache themselves
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Our epoch programs compile in 0.3 - 2 s; JAX's default threshold (1 s) would skip most.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_configure()


# XLA's CPU options for kilnet's compiled programs. YNNPACK's fusions of matrix products and
# convolutions are off: measured with bench/_floor.py, the seed MLP's matrix products in one
# loop ran 0.31-0.37 s an epoch with them and 0.23-0.25 s without (2-core AMD EPYC), 77 against
# 142-149 GFLOP/s on a 2-core Intel Xeon (Sapphire Rapids); a 3x3 convolution's training step
# inside a loop, 0.57 s against 0.28 s. KILNET_XLA_CPU_DEFAULTS=1 keeps XLA's own defaults.
_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options() -> dict:
    """The options kilnet compiles its programs with on this backend (none off the CPU)."""
    if os.environ.get("KILNET_XLA_CPU_DEFAULTS", "") not in ("", "0"):
        return {}
    return dict(_CPU_OPTIONS) if jax.default_backend() == "cpu" else {}
