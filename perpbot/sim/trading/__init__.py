"""Trading side of the built-in simulator: REST APIs per venue that the real ccxt classes trade against."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from perpbot.sim.faults import FaultBoard
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, drop_connection_middleware
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.trading.usage import usage_middleware
from perpbot.sim.trading.public_rest import add_public_rest_routes

VENUE_MODULES = {"okx": "Okx", "binance": "Binance", "bybit": "Bybit", "hyperliquid": "Hyperliquid"}
# Venues whose matching engine exists but whose REST wire is not served yet (ccxt calls get 404).
ENGINE_ONLY_VENUES: tuple[str, ...] = ()
log = logging.getLogger(__name__)
APP_KEY: web.AppKey[SimExchange] = web.AppKey("perpbot_sim_exchange", SimExchange)


def add_trading_routes(app: web.Application, venue: str, market: Any, faults: FaultBoard | None = None,
                       clock: Any = None, *, stats: Any = None, feed: Any = None,
                       private: bool = True) -> SimExchange:
    """Mount `venue`'s simulated REST trading API on `app` and return its SimExchange (also app[APP_KEY]).

    With `private` (default) the venue's private stream is mounted too (perpbot.sim.private; Hyperliquid's
    needs its public `feed`, whose /ws carries the user subscriptions); mount this before the public routes.
    """
    import importlib

    if venue in ENGINE_ONLY_VENUES:
        log.warning("simulator: %s REST trading API is not served; only its SimExchange engine exists", venue)
        sim = SimExchange(venue, market, faults, clock)
        app[APP_KEY] = sim
        return sim
    if venue not in VENUE_MODULES:
        raise ValueError(f"unknown venue {venue!r}; allowed: {', '.join(VENUE_MODULES)}")
    module = importlib.import_module(f"perpbot.sim.trading.{venue}")
    prefix = VENUE_MODULES[venue]
    sim = SimExchange(venue, market, faults, clock)
    gate = FaultGate(sim, getattr(module, f"{prefix}Wire")(), app)
    app.middlewares.append(drop_connection_middleware)
    usage = usage_middleware(venue)  # Binance / Bybit usage headers on every answer (perpbot.sim.trading.usage)
    if usage is not None:
        app.middlewares.append(usage)
    getattr(module, f"add_{venue}_routes")(app, sim, gate)
    from perpbot.sim.trading.account_routes import add_account_routes

    add_account_routes(app, venue, sim, gate)  # position/margin mode, leverage reads, fee rates (issue 16)
    from perpbot.sim.trading.transfers import add_transfer_routes

    add_transfer_routes(app, venue, sim, gate)  # funding/spot wallet <-> trading wallet transfers
    add_public_rest_routes(app, venue, sim, gate, feed)  # REST books, funding-rate history
    app[APP_KEY] = sim
    if private:
        from perpbot.sim.private import mount_private

        mount_private(app, venue, sim, stats, feed)
    return sim


__all__ = ["APP_KEY", "SimExchange", "SimReject", "add_trading_routes"]
