"""The soak's memory figures: glibc's malloc in-use/free split and the OS thread count."""

from __future__ import annotations

import threading

from perpbot.reliability.soak import thread_count
from perpbot.telemetry import memory


def test_malloc_figures_see_a_large_allocation_and_its_release():
    before = memory.malloc_figures()
    assert set(before) == {"malloc_used_mb", "malloc_free_mb"}  # glibc on this machine and in CI
    block = bytearray(8 * 2**20)  # beyond pymalloc: straight from malloc (an mmapped block)
    during = memory.malloc_figures()
    assert during["malloc_used_mb"] >= before["malloc_used_mb"] + 7.5
    del block
    after = memory.malloc_figures()
    assert after["malloc_used_mb"] <= during["malloc_used_mb"] - 7.5
    assert isinstance(memory.trim(), bool)


def test_thread_count_follows_a_started_thread():
    baseline = thread_count()
    started = threading.Event()
    release = threading.Event()
    worker = threading.Thread(target=lambda: (started.set(), release.wait()))
    worker.start()
    try:
        started.wait()
        assert thread_count() == baseline + 1
    finally:
        release.set()
        worker.join()
