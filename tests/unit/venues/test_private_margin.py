"""Private-stream parsers read each leg's margin state, and the venue's own closes, from the frames the
simulator pushes: OKX `positions` and Bybit `position` carry the liquidation price, maintenance margin and
ADL rank exactly as the simulator's margin engine has them; a liquidation or ADL fill and Binance's
MARGIN_CALL become MarginEvents."""

from __future__ import annotations

from decimal import Decimal as D

from perpbot.core.private_events import MarginEvent, PositionUpdate, PrivateContext, VenueFill
from perpbot.sim.faults import FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.private.binance import BinancePrivate
from perpbot.sim.private.bybit import BybitPrivate
from perpbot.sim.private.okx import OkxPrivate
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.ws_common import SimStats
from perpbot.venues.binance.private import parse_private as parse_binance
from perpbot.venues.bybit.private import parse_private as parse_bybit
from perpbot.venues.okx.private import parse_private as parse_okx

SYMBOLS = {"okx": ["BTC-USDT-SWAP"], "binance": ["BTCUSDT"], "bybit": ["BTCUSDT"]}
NOW_MS = 1_700_000_000_000


def leveraged_long(venue: str, symbol: str) -> SimExchange:
    market = Market(3, SYMBOLS, clock=lambda: NOW_MS / 1000)
    sim = SimExchange(venue, market, FaultBoard(), clock=lambda: NOW_MS, start_balance=D(6000))
    sim.set_leverage(symbol, D(10))
    sim.set_position(symbol, D(1), market.mark(venue, symbol))
    return sim


def okx_frames(stream: OkxPrivate, event: SimEvent) -> list[str]:
    out = []
    for frame in stream.render(event):
        channel = frame.key[0]
        out.append('{"arg":{"channel":"' + channel + '","instType":"SWAP"},"data":' + frame.text + "}")
    return out


def test_okx_positions_push_carries_the_engines_liquidation_price_maintenance_margin_and_adl_rank():
    sim = leveraged_long("okx", "BTC-USDT-SWAP")
    stream = OkxPrivate(sim, SimStats())
    ctx = PrivateContext("okx", {"BTC-USDT-SWAP": D("0.01")})
    events = [e for text in okx_frames(stream, SimEvent("account", NOW_MS, symbol="BTC-USDT-SWAP"))
              for e in parse_okx(text, 1.0, ctx)]
    update = next(e for e in events if isinstance(e, PositionUpdate))
    leg = sim.leg_risk("BTC-USDT-SWAP")
    assert update.margin is not None and leg is not None
    assert update.size == D(1)
    assert update.margin.liquidation_price == leg.liquidation_price
    assert update.margin.maintenance_margin == leg.maintenance_margin
    assert update.margin.adl_rank == leg.adl_rank
    assert update.margin.margin_mode == "cross"
    assert update.margin.distance_pct == leg.distance_pct


def test_bybit_position_push_carries_the_engines_figures_and_a_flat_leg_none():
    sim = leveraged_long("bybit", "BTCUSDT")
    stream = BybitPrivate(sim, SimStats())
    ctx = PrivateContext("bybit", {})
    frames = stream.render(SimEvent("account", NOW_MS, symbol="BTCUSDT"))
    update = next(e for f in frames for e in parse_bybit(f.text, 1.0, ctx) if isinstance(e, PositionUpdate))
    leg = sim.leg_risk("BTCUSDT")
    assert update.margin is not None and leg is not None
    assert (update.margin.liquidation_price, update.margin.maintenance_margin, update.margin.adl_rank) == (
        leg.liquidation_price, leg.maintenance_margin, leg.adl_rank)
    sim.set_position("BTCUSDT", D(0), D(0))
    frames = stream.render(SimEvent("account", NOW_MS, symbol="BTCUSDT"))
    flat = next(e for f in frames for e in parse_bybit(f.text, 1.0, ctx) if isinstance(e, PositionUpdate))
    assert flat.size == 0 and flat.margin is not None and flat.margin.liquidation_price is None


def test_a_simulated_liquidation_reaches_each_parser_as_a_fill_and_a_liquidation_event():
    for venue, stream_type, parse in (("okx", OkxPrivate, parse_okx), ("bybit", BybitPrivate, parse_bybit),
                                      ("binance", BinancePrivate, parse_binance)):
        symbol = SYMBOLS[venue][0]
        sim = leveraged_long(venue, symbol)
        stream = stream_type(sim, SimStats())
        if venue == "binance":
            stream.live_key = lambda: object()  # a listen key is live: the stream renders
        ctx = PrivateContext(venue, {"BTC-USDT-SWAP": D("0.01")})
        captured: list[SimEvent] = []
        sim.add_listener(captured.append)
        sim.force_close(symbol, "liquidation")
        fill_event = next(e for e in captured if e.kind == "fill")
        frames = okx_frames(stream, fill_event) if venue == "okx" else [f.text for f in stream.render(fill_event)]
        parsed = [e for text in frames for e in parse(text, 1.0, ctx)]
        assert any(isinstance(e, VenueFill) for e in parsed), venue
        kinds = [e.kind for e in parsed if isinstance(e, MarginEvent)]
        assert kinds == ["liquidation"], (venue, parsed)


def test_binance_margin_call_push_is_a_margin_call_event_naming_the_leg():
    sim = leveraged_long("binance", "BTCUSDT")
    stream = BinancePrivate(sim, SimStats())
    stream.live_key = lambda: object()
    frames = stream.render(SimEvent("margin_call", NOW_MS, symbol="BTCUSDT", reason="margin ratio 0.9"))
    parsed = [e for f in frames for e in parse_binance(f.text, 1.0, PrivateContext("binance", {}))]
    assert [(e.kind, e.symbol) for e in parsed if isinstance(e, MarginEvent)] == [("margin_call", "BTCUSDT")]
