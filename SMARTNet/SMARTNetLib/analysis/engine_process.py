"""Settings of a long-lived engine process (``smartnet serve``, a batch, the anatomy worker).

glibc hands large arrays (above 32 MB at most) straight back to the kernel when they are freed, and trims the
heap, so every analysis faults in hundreds of MB of fresh pages again. On this project's 2-core virtual machines
a fresh page costs up to 35 us, and the served analysis of ``benchmarks/analyze.py``'s head varied from 2.2 to
3.8 s from that alone (2.0 to 2.2 s with the memory kept; 1.0 s steady for the head frame instead of 1.0 to
2.5 s). Kept memory is reused by the next request; the process's resident size stays at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def retain_freed_memory() -> bool:
    """Keep freed memory in this process for reuse (glibc: no mmap'd chunks, no trimming); False where the C
    library is not glibc (macOS, Windows, musl), which is then left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
