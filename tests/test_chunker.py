"""How fit() sizes its compiled chunks (kilnet.fit.Chunker): by time, longer for programs whose
temporary buffer is mapped afresh at each execution, with no short tail of its own."""

import types

import jax
import jax.numpy as jnp
import pytest

from kilnet import fit as fit_lib
from kilnet import programs

MB = 2**20


def program_with_temp(nbytes):
    """A stand-in for a compiled program whose memory analysis reports `nbytes` of temp."""
    analysis = types.SimpleNamespace(temp_size_in_bytes=nbytes)
    return types.SimpleNamespace(memory_analysis=lambda: analysis)


def test_temp_bytes_of_a_compiled_program_and_of_anything_else():
    compiled = jax.jit(lambda x: jnp.sin(x) * 2 + jnp.cos(x)).lower(jnp.ones(1000)).compile()
    assert programs.temp_bytes(compiled) == compiled.memory_analysis().temp_size_in_bytes
    assert programs.temp_bytes(lambda x: x) is None


@pytest.mark.parametrize("temp, expected", [
    (None, None),                   # no memory analysis: the default length
    (10 * MB, None),                # below glibc's 32 MB: reused heap memory, no fresh pages
    (46 * MB, 30 * 46 * 0.6e-3),    # the LSTM bench's buffer: 0.83 s
    (122 * MB, 30 * 122 * 0.6e-3),  # ResNet-8's: 2.2 s
    (400 * MB, fit_lib.MAX_CHUNK_SECONDS),
])
def test_chunks_of_programs_with_large_temporary_buffers_run_longer(temp, expected):
    chunker = fit_lib.Chunker(total=1000, steps=1)
    chunker.fit_to(program_with_temp(temp) if temp is not None else object())
    if expected is None:
        assert chunker.seconds is None
    else:
        assert chunker.seconds == pytest.approx(expected)
    chunker.observe(steps_run=40, seconds=4.0)  # 10 steps a second
    target = fit_lib.CHUNK_SECONDS if expected is None else expected
    assert chunker.steps == int(10 * target)


def test_a_short_tail_joins_the_chunk_before_it():
    chunker = fit_lib.Chunker(total=79, steps=20)
    assert chunker.next_stop(40) == 60   # 19 steps would remain: a chunk of their own
    assert chunker.next_stop(57) == 79   # 2 would remain: they join this chunk
    assert chunker.next_stop(60) == 79
    stream = fit_lib.Chunker(total=None, steps=20)
    assert stream.next_stop(57) == 77    # a stream of unknown length has no tail to join
