"""Idempotency-Key replay (perpbot.control.idempotency): first answer returned within the window, a
retry waits for a first still running, conflicts refused, 5xx and failures not kept."""

from __future__ import annotations

import asyncio

import pytest

from perpbot.control.idempotency import BadKey, Conflict, IdempotencyCache, Stored, check_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_retry_within_the_window_gets_the_first_answer_and_after_it_acts_again():
    clock = Clock()
    cache = IdempotencyCache(60.0, clock)
    acted: list[int] = []

    async def act() -> Stored:
        acted.append(1)
        return Stored(200, b'{"n": %d}' % len(acted))

    assert await cache.run("/r", "k", "f", act) == (Stored(200, b'{"n": 1}'), False)
    clock.now += 59
    assert await cache.run("/r", "k", "f", act) == (Stored(200, b'{"n": 1}'), True)
    assert await cache.run("/other", "k", "f", act) == (Stored(200, b'{"n": 2}'), False)  # keys are per route
    clock.now += 2
    assert await cache.run("/r", "k", "f", act) == (Stored(200, b'{"n": 3}'), False)
    assert len(acted) == 3


async def test_the_same_key_for_another_request_is_a_conflict():
    cache = IdempotencyCache(60.0, Clock())

    async def act() -> Stored:
        return Stored(200, b"{}")

    await cache.run("/r", "k", "body-1", act)
    with pytest.raises(Conflict):
        await cache.run("/r", "k", "body-2", act)


async def test_a_retry_while_the_first_runs_waits_for_it_and_acts_once():
    cache = IdempotencyCache(60.0, Clock())
    release, started = asyncio.Event(), asyncio.Event()
    acted: list[int] = []

    async def act() -> Stored:
        acted.append(1)
        started.set()
        await release.wait()
        return Stored(200, b"done")

    first = asyncio.ensure_future(cache.run("/r", "k", "f", act))
    await started.wait()
    second = asyncio.ensure_future(cache.run("/r", "k", "f", act))
    release.set()
    assert await first == (Stored(200, b"done"), False)
    assert await second == (Stored(200, b"done"), True)
    assert acted == [1]


async def test_server_errors_and_exceptions_are_not_kept_so_a_retry_acts():
    cache = IdempotencyCache(60.0, Clock())
    answers = [Stored(503, b"down"), Stored(200, b"ok")]

    async def act() -> Stored:
        return answers.pop(0)

    async def boom() -> Stored:
        raise RuntimeError("engine exploded")

    with pytest.raises(RuntimeError):
        await cache.run("/r", "x", "f", boom)
    assert await cache.run("/r", "k", "f", act) == (Stored(503, b"down"), False)
    assert await cache.run("/r", "k", "f", act) == (Stored(200, b"ok"), False)
    assert await cache.run("/r", "k", "f", act) == (Stored(200, b"ok"), True)


def test_keys_are_bounded_printable_ascii():
    assert check_key("  retry-1 ") == "retry-1"
    for bad in ("", "   ", "x" * 201, "caf\u00e9", "a\x00b"):
        with pytest.raises(BadKey):
            check_key(bad)
