"""Arrays on their way to the device: kilnet.data.to_device and the host memory it copies into."""

import gc
import sys

import numpy as np
import pytest

from kilnet import data


def _unaligned(array):
    """The same values starting 4 bytes into a buffer: never 64-byte aligned."""
    raw = np.empty(array.nbytes + array.itemsize, np.uint8)
    view = raw[array.itemsize:].view(array.dtype).reshape(array.shape)
    view[...] = array
    assert view.ctypes.data % 64 != 0
    return view


@pytest.mark.parametrize("dtype, device_dtype", [(np.float32, np.float32),
                                                 (np.float64, np.float32),
                                                 (np.uint8, np.uint8),
                                                 (np.int64, np.int32)])
def test_to_device_keeps_the_values_of_an_unaligned_array(dtype, device_dtype):
    values = (np.arange(6 * 7 * 5) % 251).reshape(6, 7, 5).astype(dtype)
    on_device = data.to_device(_unaligned(values))
    assert on_device.dtype == device_dtype
    np.testing.assert_array_equal(np.asarray(on_device), values.astype(device_dtype))


def test_the_device_copy_outlives_the_host_copy():
    # On CPU the device may use the page-aligned host copy in place: it must keep that memory
    # mapped after kilnet drops its own reference.
    values = np.random.default_rng(0).normal(size=(300, 257)).astype(np.float32)
    on_device = data.to_device(_unaligned(values))
    gc.collect()
    filler = [np.full((300, 257), -1.0, np.float32) for _ in range(8)]  # reuse freed memory
    np.testing.assert_array_equal(np.asarray(on_device), values)
    del filler


@pytest.mark.parametrize("shape", [(0, 3), (1,), (4, 5, 6), (1000, 1001)])
def test_host_zeros_is_zero_filled_writable_and_page_aligned(shape):
    array = data.host_zeros(shape, np.float32)
    assert array.shape == shape and array.dtype == np.float32
    assert not array.any()
    assert array.ctypes.data % 4096 == 0
    array[...] = 2.0
    assert array.size == 0 or float(array.min()) == 2.0


def _resident_bytes(address: int) -> int:
    """The resident size of the memory map that starts at `address` (Linux's smaps)."""
    with open("/proc/self/smaps") as maps:
        lines = maps.read().splitlines()
    for i, line in enumerate(lines):
        if line.split("-", 1)[0] == f"{address:08x}":
            for detail in lines[i + 1:]:
                if detail.startswith("Rss:"):
                    return int(detail.split()[1]) * 1024
    raise AssertionError(f"no memory map starts at {address:#x}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's smaps")
def test_host_zeros_pages_are_present_before_the_first_write():
    """The copy into a dataset's host buffer does not fault page by page: the pages are there
    already (and still zero)."""
    array = data.host_zeros((1024, 1024), np.float32)  # 4 MiB
    assert _resident_bytes(array.ctypes.data) >= array.nbytes
    assert not array.any()
