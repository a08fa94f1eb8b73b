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


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def test_trim_hands_a_fragmented_heaps_free_pages_back_to_the_kernel():
    blocks = [bytearray(2000) for _ in range(30_000)]  # ~60 MB of malloc chunks
    kept = blocks[::8]  # every 8th survives: the free space between them cannot shrink the heap's top
    del blocks
    before = _rss_mb()
    assert memory.malloc_figures()["malloc_free_mb"] > 40
    assert memory.trim() is True
    assert _rss_mb() < before - 20
    assert len(kept) == 3750


async def test_the_trim_task_trims_on_its_interval(monkeypatch):
    import asyncio

    calls = []
    done = asyncio.Event()

    def counting_trim() -> bool:
        calls.append(1)
        if len(calls) == 3:
            done.set()
        return True

    monkeypatch.setattr(memory, "trim", counting_trim)
    task = asyncio.ensure_future(memory.trim_forever(0.01))
    try:
        await asyncio.wait_for(done.wait(), 5)
    finally:
        task.cancel()
    assert len(calls) >= 3
