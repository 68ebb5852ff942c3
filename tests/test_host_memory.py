"""kilnet keeps the host memory XLA frees for the next execution (kilnet._host_memory)."""

import os
import subprocess
import sys

import pytest

from kilnet import _host_memory

# A program whose loop carries two 88 MB buffers (reversed each turn, so not in place): its
# temporary buffer is allocated and freed by every execution on XLA's worker threads. The
# script prints the page faults of each of 14 executions.
FAULTS_PER_EXECUTION = """
import resource
import kilnet  # sets malloc before JAX's first computation
import jax, jax.numpy as jnp
step = lambda i, c: jnp.tanh(c[::-1] * 1.01)
f = jax.jit(lambda x: jax.lax.fori_loop(0, 2, step, jnp.sin(x)).sum())
x = jnp.zeros(22_000_000, "float32")
for _ in range(14):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES_OF_TWO_BUFFERS = 2 * 88_000_000 // 4096


def _faults(extra_env):
    env = {k: v for k, v in os.environ.items()
           if k != "KILNET_SYSTEM_MALLOC" and not k.startswith("MALLOC_")}
    env.update(extra_env)
    run = subprocess.run([sys.executable, "-c", FAULTS_PER_EXECUTION], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    return [int(line) for line in run.stdout.split()]


pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's malloc options (Linux)")


def _refaulted(faults):
    """How many of the last 12 executions faulted on more than half of their buffers' pages."""
    return sum(count > PAGES_OF_TWO_BUFFERS // 2 for count in faults[-12:])


def test_repeated_executions_reuse_the_freed_buffers():
    faults = _faults({})
    # Now and then the heap grows by a buffer (small blocks allocated between executions split
    # the freed space): measured 0-2 of 12 executions, 4 of 150; all the others fault on
    # nothing.
    assert _refaulted(faults) <= 4, faults


def test_system_malloc_setting_leaves_glibc_as_it_was():
    # The control that makes the test above meaningful: with glibc's defaults every
    # execution maps its buffers afresh and faults on each of their pages.
    faults = _faults({"KILNET_SYSTEM_MALLOC": "1"})
    assert _refaulted(faults) == 12, faults


@pytest.mark.parametrize("name, value", [("KILNET_SYSTEM_MALLOC", "1"),
                                         ("MALLOC_ARENA_MAX", "4"),
                                         ("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")])
def test_users_own_malloc_settings_are_left_alone(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert _host_memory.keep_freed_memory() is False
