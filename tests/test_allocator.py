"""The allocator setting really keeps freed memory in the process (glibc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest
import torch

from benchmark.training import allocator

glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version")


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@pytest.mark.skipif(not glibc, reason="mallopt settings are glibc's")
def test_freed_activations_stay_in_the_heap():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    assert allocator.keep_freed_memory() and allocator.applied()
    n = 48 << 20  # larger than glibc's largest default mmap threshold (32 MiB)
    x = torch.empty(n // 4, dtype=torch.float32)
    assert libc.mallinfo2().hblkhd < n  # served from the heap, not by mmap
    del x
    assert libc.mallinfo2().fordblks >= n  # and kept there once freed, for the next step
