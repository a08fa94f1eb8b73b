"""Internal transfers (perpbot.execution.transfers) as an operator who switched them on would expect: the venue
short of its collateral target takes the shortfall from its own funding wallet, capped, once per interval,
written to the audit trail before it leaves; a refusal waits out the interval; a transfer whose answer was lost
is never sent again before the venue's balance has been read. The venues' transfer calls are a scripted client
(the simulator's real endpoints: tests/integration/test_internal_transfers.py)."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest
from engine_fakes import OKX, make_desk, ready

from perpbot.core import errors
from perpbot.core.transfers import TransferCall
from perpbot.execution.transfers import DONE, REFUSED, UNKNOWN, InternalTransfers
from perpbot.journal.audit import last_bot_changes, record_bot_change
from perpbot.journal.sqlite import Journal
from perpbot.settings import VenueSettings
from perpbot.venues.hyperliquid.transfers import HyperliquidTransfers
from perpbot.venues.okx.transfers import OkxTransfers

NOW = 1_800_000_000.0
OK = {"code": "0", "msg": "", "data": [{"transId": "9001", "ccy": "USDT", "from": "6", "to": "18"}]}


class TransferClient:
    """A venue's transfer endpoint, scripted: each call takes the next answer (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[TransferCall] = []

    async def transfer(self, call: TransferCall) -> Any:
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def desk():
    desk = ready(make_desk())
    desk.settings.risk.internal_transfers = True
    desk.settings.risk.internal_transfer_max_usdt = D("500")
    desk.settings.risk.internal_transfer_interval_s = 300.0
    # OKX carries 0.3 BTC of legs (9,000 USDT): at 3x it needs far more than its half of the 20,000 equity.
    desk.portfolio.set_position("okx", OKX.symbol, D("3"), D("30000"))
    desk.portfolio.set_position("hyperliquid", "BTC", D("-0.3"), D("30000"))
    return desk


def transfers(desk, okx: TransferClient, clock: Clock, audit: list | None = None) -> InternalTransfers:
    async def record(kind: str, details: dict) -> None:
        if audit is not None:
            audit.append((kind, dict(details)))
    return InternalTransfers(desk, {"okx": okx}, {"okx": OkxTransfers()}, audit=record, clock=clock)


async def test_off_by_default_nothing_is_ever_sent():
    desk = ready(make_desk())
    desk.portfolio.set_position("okx", OKX.symbol, D("3"), D("30000"))
    client = TransferClient(OK)
    assert await InternalTransfers(desk, {"okx": client}, {"okx": OkxTransfers()}).check() == []
    assert client.calls == []


async def test_the_short_venue_takes_the_capped_shortfall_once_per_interval_audited_before_it_leaves(desk):
    client, clock, audit = TransferClient(OK, OK), Clock(), []
    watch = transfers(desk, client, clock, audit)
    [record] = await watch.check()
    assert (record.venue, record.outcome, record.amount, record.currency) == ("okx", DONE, D("500.00"), "USDT")
    assert client.calls[0].params == {"ccy": "USDT", "amt": "500.00", "type": "0", "from": "6", "to": "18"}
    assert [(kind, d["outcome"]) for kind, d in audit] == [("internal_transfer", "sending"),
                                                           ("internal_transfer", "done: venue id 9001")]
    assert audit[0][1]["id"] == record.transfer_id and audit[0][1]["amount"] == "500.00 USDT"
    assert desk.metrics.internal_transfers.labels("okx", DONE)._value.get() == 1
    assert desk.metrics.internal_transfer_usdt.labels("okx")._value.get() == 500.0
    clock.now += 299
    assert await watch.check() == [] and len(client.calls) == 1  # inside the interval: nothing
    assert "last transfer 299s ago" in watch.ready("okx", clock.now)
    clock.now += 1
    [again] = await watch.check()
    assert again.outcome == DONE and len(client.calls) == 2


async def test_a_refusal_is_recorded_and_waits_out_the_interval(desk):
    client, clock, audit = TransferClient(errors.InsufficientFunds("okx", "58350 Insufficient balance")), Clock(), []
    watch = transfers(desk, client, clock, audit)
    [record] = await watch.check()
    assert record.outcome == REFUSED and "58350" in record.detail
    assert audit[-1][1]["outcome"] == "refused: 58350 Insufficient balance"
    assert desk.metrics.internal_transfers.labels("okx", REFUSED)._value.get() == 1
    clock.now += 10
    assert await watch.check() == [] and len(client.calls) == 1


async def test_a_lost_answer_is_not_sent_again_until_the_balance_was_read_after_it(desk):
    client, clock = TransferClient(errors.UnknownOutcome("okx", "timed out"), OK), Clock()
    watch = transfers(desk, client, clock)
    [record] = await watch.check()
    assert record.outcome == UNKNOWN
    clock.now += 3600  # the interval long past
    assert await watch.check() == [] and len(client.calls) == 1
    assert "outcome is unknown" in watch.ready("okx", clock.now)
    desk.balance_read_at["okx"] = NOW - 1  # a read begun before the transfer answers nothing
    assert await watch.check() == []
    desk.balance_read_at["okx"] = NOW + 5  # the reconciliation read the balance after it
    [again] = await watch.check()
    assert again.outcome == DONE and len(client.calls) == 2


async def test_a_venue_blocked_or_not_yet_read_takes_nothing_nor_does_a_paused_bot(desk):
    client, clock = TransferClient(OK), Clock()
    watch = transfers(desk, client, clock)
    desk.state = "PAUSED"
    assert await watch.check() == []
    desk.state = "HALTED"  # a HALT stops entries; adding collateral to a venue is still what it needs
    assert watch.due() != []
    desk.state = "ACTIVE"
    desk.venues_blocked["okx"] = "position mode hedge refused"
    assert await watch.check() == []
    del desk.venues_blocked["okx"]
    del desk.portfolio.balances["okx"]
    assert await watch.check() == [] and client.calls == []


async def test_a_usdc_venue_moves_the_usdt_shortfall_at_the_rate(desk):
    desk.portfolio.usdc_venues = frozenset({"hyperliquid"})
    desk.portfolio.usdc_usdt = D("0.9990")
    # Now Hyperliquid carries the legs.
    desk.portfolio.set_position("okx", OKX.symbol, D("0"), D("30000"))
    desk.portfolio.set_position("hyperliquid", "BTC", D("-3"), D("30000"))
    client = TransferClient({"status": "ok", "response": {"type": "default"}})
    link = HyperliquidTransfers(VenueSettings(private_key="0x" + "01" * 32), clock=lambda: NOW)
    watch = InternalTransfers(desk, {"hyperliquid": client}, {"hyperliquid": link}, clock=Clock())
    [record] = await watch.check()
    assert (record.currency, record.amount_usdt) == ("USDC", D("500.00"))
    assert record.amount == D("500.50")  # 500 USDT / 0.999 = 500.5005 USDC, down to the cent
    assert client.calls[0].params["action"]["amount"] == "500.5"


async def test_a_restart_keeps_each_venues_interval_from_the_audit_trail(desk, tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.open()
    try:
        await record_bot_change(journal, "internal_transfer", {"venue": "okx", "outcome": "done"})
        await record_bot_change(journal, "preflight_fix", {"venue": "bybit", "fix": "leverage"})
        last = await last_bot_changes(journal, "internal_transfer")
    finally:
        await journal.close()
    assert set(last) == {"okx"}
    client, clock = TransferClient(OK), Clock()
    clock.now = last["okx"] + 60
    watch = transfers(desk, client, clock)
    watch.restore(last)
    assert await watch.check() == [] and client.calls == []
