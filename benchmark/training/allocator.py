"""Keep freed CPU memory in the process instead of handing it back to the OS every step.

glibc's malloc serves blocks of 128 KiB and more with mmap, moves that threshold as blocks
are freed, and trims the heap top back to the OS once more than twice the threshold lies
free. A training step allocates and frees the same activations every step, so by default
each step page-faults on memory it has just given back, and how often depends on heap
history: timings wander, and they grow faster than T. Measured on the 2-core CI machine
(LSTM, batch 64, hidden 128, 2 threads, forward+backward): nn.LSTM at T=200 took 68–76 ms
by default and 44–52 ms with the settings below; at T=50 both took about 12 ms.

PyTorch's CPU performance guide gives the same advice (or jemalloc/tcmalloc via
LD_PRELOAD); mallopt does it from inside the process, with nothing to install.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
KEEP_BYTES = 1 << 30  # up to 1 GiB of freed memory stays in the heap for reuse

_applied = False  # a fact about this process, reported in metrics.json's env


def applied() -> bool:
    """True once `keep_freed_memory` has taken effect in this process."""
    return _applied


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory (and serve large blocks from the heap). Idempotent.

    Returns False, changing nothing, where the C library is not glibc (macOS, musl): those
    allocators keep their own policy.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "gnu_get_libc_version"):  # musl has a mallopt that does nothing
        return False
    global _applied
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
    return _applied
