"""Plain helpers shared by tests (importable as `testkit`; conftest modules are not importable reliably)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from perpbot.reliability.ports import free_port  # noqa: F401 - below the ephemeral range, never twice


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll a condition owned by code under test (no event to wait on) with a hard timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


async def wait_started(app: Any, task: asyncio.Task, timeout: float = 30.0) -> None:
    """Wait for `app.started`; if the app's run task ends first, raise what ended it (a bind error,
    a config error) at once instead of a bare timeout."""
    started = asyncio.ensure_future(app.started.wait())
    try:
        done, _ = await asyncio.wait({started, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        started.cancel()
    if task in done:
        task.result()  # raises the run's own error
        raise AssertionError("the app's run() returned before it started")
    if started not in done:
        raise TimeoutError(f"app did not start within {timeout} s")


def approved(request: Any, purpose: str = "test") -> Any:
    """An ApprovedOrder for `request`, for tests that drive a venue client directly (the venue port
    accepts nothing else). Minted the way only the risk gate mints; product code never calls this."""
    from perpbot.risk.approved import _mint

    return _mint(request, purpose, f"test-{request.client_order_id}")


def private_ws_frames(shared_fixtures: Any, venue: str) -> list[dict]:
    """The recorded private-stream frames of `venue` (../shared/fixtures/<venue>/private_ws_frames.json)."""
    import json

    frames: list[dict] = json.loads((shared_fixtures / venue / "private_ws_frames.json").read_text())["frames"]
    return frames


def with_changes(obj: dict, change: dict) -> dict:
    """`obj` with each key of `change` set to its value, or removed where the value is None (in place)."""
    for key, value in change.items():
        if value is None:
            del obj[key]
        else:
            obj[key] = value
    return obj


def sim_venue_settings(venue: str) -> Any:
    """A venue's settings holding the simulator's account credentials (its REST ignores the secret; its
    private streams and order sockets check it)."""
    from perpbot.settings import VenueSettings
    from perpbot.venue_instruments import SIM_CREDENTIALS

    if venue == "hyperliquid":
        return VenueSettings(wallet_address=SIM_CREDENTIALS["wallet_address"],
                             private_key=SIM_CREDENTIALS["private_key"])
    return VenueSettings(api_key=SIM_CREDENTIALS["api_key"], api_secret=SIM_CREDENTIALS["api_secret"],
                         passphrase=SIM_CREDENTIALS["passphrase"])
