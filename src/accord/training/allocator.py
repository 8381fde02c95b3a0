"""The C allocator's thresholds for training (``train.malloc``): large tensors reuse freed memory, not fresh pages.

glibc's ``malloc`` serves a request above its mmap threshold with a fresh ``mmap`` and gives the pages back to the
kernel on ``free``; below it, freed memory above the trim threshold at the top of the heap is also given back. Its
thresholds adapt upwards only to 32 MiB. A training step allocates and frees the same large buffers every step
(activations, dropout masks, weight gradients: ``zero_grad(set_to_none=True)`` frees them), so with the defaults
each step maps them again and the kernel zeroes every page on first touch. For TFN's 140,481-wide fused vector
(MMSA's MOSI sizes) that is about a third of an epoch, spent in the kernel (``benchmarks/malloc_effect.py``: epochs
of 4.2-4.9 s -> 2.9-3.0 s, system time 6.5 s -> 1.6 s over a 3-epoch run, identical metrics).

:func:`tune_malloc` sets, through ``mallopt``, a fixed mmap threshold of 32 MiB (glibc's largest; requests up to it
come from the heap and are reused) and a trim threshold of 256 MiB (up to that much freed memory stays mapped for
the next step). The cost is resident memory: at most the trim threshold more than the peak (79 MB in that run).
The setting is process-wide and stays for the life of the process (glibc has no way to read back the previous
values); ``train.malloc=system`` leaves the allocator alone. Numerics are unchanged: where memory comes
from does not change a single float. Elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform
from typing import Any

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_malloc"]

M_TRIM_THRESHOLD = -1
"""``mallopt`` parameter numbers from glibc's ``<malloc.h>``."""
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Requests up to this size come from the heap (glibc refuses more than 32 MiB on 64-bit: HEAP_MAX_SIZE / 2)."""
TRIM_THRESHOLD = 256 * 1024 * 1024
"""Free memory at the top of the heap kept mapped, up to this size, instead of being given back each step."""


def _libc() -> Any | None:
    """The process's glibc (its ``mallopt``), or ``None`` where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # pragma: no cover - a glibc system without the usual soname
        return None


@functools.cache
def tune_malloc() -> bool:
    """Apply :data:`MMAP_THRESHOLD` and :data:`TRIM_THRESHOLD` with ``mallopt`` once per process (the answer is
    cached); True when both are in force (glibc), False where the C library is another one or refused a value."""
    libc = _libc()
    return libc is not None and all(libc.mallopt(param, value) == 1 for param, value in
                                    ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD)))
