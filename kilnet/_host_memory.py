"""Host memory that XLA frees is kept for its next execution (glibc's malloc options).

Each execution of a compiled program on the CPU allocates its temporary buffer (every
activation and gradient of the chunk's step: 79 MB for the bench's Transformer block at batch
64) on one of XLA's worker threads, and frees it when the execution ends. With glibc's
defaults a block that size is a fresh `mmap` each time, returned to the system by `munmap`, so
every execution touches every page of it anew: 19,400 page faults a step for the Transformer,
whose 10 steps took 1.20-1.23 s with glibc's defaults and 0.80-0.85 s with the memory kept
(2-core AMD EPYC, one execution a step). The ResNet's epoch gained 1.1-1.2x, the LSTM's
1.07-1.11x; the MNIST convnet and the seed MLP, whose blocks are smaller, within noise.

So kilnet asks glibc, when it is imported, for one heap shared by all threads (a worker
thread's own heap is at most 64 MB, larger blocks always go to `mmap`), no `mmap` for large
blocks, and no return of the heap's top to the system until more than 2 GiB of it is free.
The process then keeps what it freed, up to its peak, for the next allocation of the size.
It must happen before XLA's threads first allocate, that is before JAX's first computation;
threads that already have a heap keep theirs.

Left alone: platforms without glibc, a malloc replaced through LD_PRELOAD (jemalloc,
tcmalloc), malloc settings of the user's own (MALLOC_ARENA_MAX and the like, GLIBC_TUNABLES),
and KILNET_SYSTEM_MALLOC=1.
"""

from __future__ import annotations

import ctypes
import os

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8

KEPT_FREE_BYTES = 2**31 - 1  # the largest threshold mallopt takes (an int)


def _user_configured_malloc() -> bool:
    if os.environ.get("KILNET_SYSTEM_MALLOC", "") not in ("", "0"):
        return True
    if "malloc" in os.environ.get("GLIBC_TUNABLES", "") or "malloc" in os.environ.get(
            "LD_PRELOAD", ""):
        return True
    return any(name.startswith("MALLOC_") for name in os.environ)


def _glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system
        return False


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory for reuse; True when it was set.

    >>> from kilnet import _host_memory
    >>> isinstance(_host_memory.keep_freed_memory(), bool)
    True
    """
    if _user_configured_malloc() or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEPT_FREE_BYTES))
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
