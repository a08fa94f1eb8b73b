"""The C heap under the process, as glibc's malloc sees it: what it holds for live allocations and
what it keeps free, and a way to hand free pages back to the kernel.

Python objects live in pymalloc arenas and in malloc blocks; SQLite (aiosqlite's thread), OpenSSL
and the C extensions allocate with malloc directly. RSS counts all of it, including free space
malloc keeps in its arenas (fragmentation, and one arena per thread that ever allocated), so RSS
can rise in steps while the live heap is flat. `malloc_figures` tells the two apart; `trim`
returns the free pages (glibc's malloc_trim(0)). Elsewhere than glibc both are no-ops.

Why the service trims: a 30-minute soak with faults (docs/RELIABILITY.md, finding 8) had its traced
Python heap and malloc's in-use bytes flat while RSS rose 0.19 MB/min, and malloc's free bytes rose
by as much: fragmentation that glibc keeps, not data the bot holds. `trim_forever` hands it back once
a minute (a few milliseconds of the loop when the heap is badly fragmented, ~1 ms otherwise).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time

log = logging.getLogger(__name__)


class _MallInfo2(ctypes.Structure):
    # glibc >= 2.33; every field a size_t.
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
    )]


def _libc():
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(lib, "malloc_trim"):
        return None
    lib.malloc_trim.argtypes = [ctypes.c_size_t]
    lib.malloc_trim.restype = ctypes.c_int
    if hasattr(lib, "mallinfo2"):
        lib.mallinfo2.restype = _MallInfo2
        lib.mallinfo2.argtypes = []
    return lib


_LIBC = _libc()


def malloc_figures() -> dict[str, float]:
    """{"malloc_used_mb", "malloc_free_mb"} of the main and thread arenas plus mmapped blocks, or {}
    where glibc's mallinfo2 is not available."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return {}
    info = _LIBC.mallinfo2()
    return {
        "malloc_used_mb": round((info.uordblks + info.hblkhd) / 2**20, 2),
        "malloc_free_mb": round(info.fordblks / 2**20, 2),
    }


def trim() -> bool:
    """Return malloc's free pages to the kernel; True when glibc released some memory."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))


async def trim_forever(interval_s: float) -> None:
    """Trim malloc's free pages every `interval_s` seconds, for the life of the service."""
    while True:
        await asyncio.sleep(interval_s)
        started = time.perf_counter()
        released = trim()
        log.debug("malloc_trim: released=%s in %.2f ms", released, (time.perf_counter() - started) * 1000)
