"""Internal transfers end to end, as an operator who switched them on sees them: the running bot, its real ccxt
clients (and its own Hyperliquid signer) and the simulator's transfer endpoints. A venue short of its collateral
target takes the shortfall from its own funding wallet, capped; each venue's request moves exactly what was
decided; a refusal moves nothing; a lost answer is resolved by reading the balance, never by sending again; every
attempt is in the audit trail before and after, and in the metrics."""

from __future__ import annotations

from decimal import Decimal as D

import aiohttp

from perpbot.execution.transfers import DONE, REFUSED, UNKNOWN
from perpbot.portfolio.collateral import TopUp
from perpbot.settings import Settings

from test_e2e_trading_core import start_app, stop_app
from testkit import free_port, wait_until

SYMBOLS = {"okx": "BTC-USDT-SWAP", "hyperliquid": "BTC", "binance": "BTCUSDT", "bybit": "BTCUSDT"}
TOKEN = "transfer-operator-token"


def settings(tmp_path, admin_port: int) -> Settings:
    """All four venues, no trading (an edge no spread reaches), transfers on: at most 400 USDT a time, once an hour."""
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token=TOKEN,
        venues={venue: {"enabled": True, "symbols": [symbol]} for venue, symbol in SYMBOLS.items()},
        sim={"enabled": True, "ports": {venue: free_port() for venue in SYMBOLS}, "admin_port": admin_port,
             "seed": 11, "tick_interval_s": 3600.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_book_age_s": 7200.0, "internal_transfers": True,
              "internal_transfer_max_usdt": 400, "internal_transfer_interval_s": 3600},
        strategies={"price_spread": {"min_edge_bps": 100000}, "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": 3600.0, "order_timeout_s": 5.0},
    )


async def get(app, path: str):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{app.control.port}{path}",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200, await response.text()
            return await response.json() if path.startswith("/api") else await response.text()


async def inject(admin_port: int, fault: dict) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{admin_port}/admin/faults", json=fault) as response:
            assert response.status == 201, await response.text()


def wallets(app, venue: str) -> tuple[D, D]:
    account = app.simulator.exchanges[venue].account
    return account.balances[account.currency], account.funding_wallet.get(account.currency, D(0))


async def test_internal_transfers_top_up_the_short_venue_and_move_exactly_what_was_decided(tmp_path):
    admin_port = free_port()
    app, task = await start_app(settings(tmp_path, admin_port))
    service, engine = app.engine, app.engine.engine
    watch = service.transfers
    assert watch is not None and sorted(watch.links) == sorted(SYMBOLS)
    sims = app.simulator.exchanges
    try:
        for venue, sim in sims.items():
            sim.account.funding_wallet[sim.account.currency] = D(5000)
        # OKX's trading wallet drops far below the others': the watch's own pass tops it up, 400 (the cap) at most.
        okx = sims["okx"].account
        okx.balances[okx.currency] = D(2000)
        await engine.sync_positions()
        await wait_until(lambda: any(r.venue == "okx" for r in watch.history), timeout=15)
        [first] = watch.history
        assert (first.outcome, first.amount, first.currency) == (DONE, D("400.00"), "USDT")
        assert wallets(app, "okx") == (D(2400), D(4600))
        assert [t.amount for t in okx.transfers] == [D("400.00")]

        # Each venue's own request, through its real client: exactly the amount, out of that venue's funding wallet.
        before = {venue: wallets(app, venue) for venue in SYMBOLS}
        for venue in ("binance", "bybit", "hyperliquid"):
            record = await watch.send(TopUp(venue, D("250.75")))
            assert record.outcome == DONE, record
            trading, funding = before[venue]
            assert wallets(app, venue) == (trading + D("250.75"), funding - D("250.75")), venue
        assert wallets(app, "okx") == before["okx"]  # nothing else moved

        # No funds left in Bybit's funding wallet: refused with the venue's code, nothing moved.
        sims["bybit"].account.funding_wallet["USDT"] = D(0)
        held = wallets(app, "bybit")
        refused = await watch.send(TopUp("bybit", D("100")))
        assert refused.outcome == REFUSED and "131212" in refused.detail, refused
        assert wallets(app, "bybit") == held

        # The answer lost after Binance moved the money: not sent again until the balance was read after it.
        await inject(admin_port, {"kind": "lost_response", "venue": "binance", "params": {"on": "transfer"}})
        held = wallets(app, "binance")
        lost = await watch.send(TopUp("binance", D("100")))
        assert lost.outcome == UNKNOWN, lost
        assert wallets(app, "binance") == (held[0] + 100, held[1] - 100)  # it did arrive
        watch.last_at.pop("binance")  # the interval aside: only the unknown outcome holds it back now
        assert "outcome is unknown" in (watch.ready("binance", watch.clock()) or "")
        await engine.sync_positions()  # the reconciliation reads Binance's balance: the transfer is seen
        assert watch.ready("binance", watch.clock()) is None
        assert engine.portfolio.balances["binance"].equity >= held[0] + 100

        # The audit trail has every attempt, before it left and with its outcome; the metrics count them.
        audit = await get(app, "/api/audit?since=0")
        rows = [row for row in (audit["entries"] if isinstance(audit, dict) else audit)
                if row["path"].startswith("internal_transfer/")]
        outcomes = [row["outcome"].split("outcome ", 1)[1].split(":")[0] for row in rows]
        assert outcomes.count("sending") == 6 and outcomes.count(DONE) == 4
        assert outcomes.count(REFUSED) == 1 and outcomes.count(UNKNOWN) == 1
        metrics = await get(app, "/metrics")
        assert 'perpbot_internal_transfers_total{exchange="okx",outcome="done"} 1.0' in metrics
        assert 'perpbot_internal_transfers_total{exchange="bybit",outcome="refused"} 1.0' in metrics
        assert 'perpbot_internal_transfer_usdt_total{exchange="okx"} 400.0' in metrics
    finally:
        await stop_app(app, task)
