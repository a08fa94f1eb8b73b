"""Market-data faults and keepalive rules of the simulator, observed by plain WebSocket clients on loopback."""

from __future__ import annotations

import asyncio
import json
import zlib

import aiohttp
import pytest

from perpbot.settings import Settings
from perpbot.sim.faults import Fault
from perpbot.sim.server import Simulator

VENUES = ("okx", "binance", "bybit", "hyperliquid")
OKX_BOOKS = json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT-SWAP"}]})


def settings(**sim: object) -> Settings:
    base = {"ports": {v: 0 for v in VENUES}, "admin_port": 0, "tick_interval_s": 0.02, "seed": 5}
    base.update(sim)
    return Settings(sim=base)


async def recv_text(ws: aiohttp.ClientWebSocketResponse, timeout: float = 3.0) -> str:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.data


async def okx_updates(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict]:
    out = []
    while len(out) < count:
        frame = json.loads(await recv_text(ws))
        if frame.get("action") == "update":
            out.append(frame["data"][0])
    return out


def crc(bids: list, asks: list) -> int:
    parts = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    value = zlib.crc32(":".join(parts).encode())
    return value - (1 << 32) if value >= 1 << 31 else value


async def test_okx_gap_fault_breaks_prevseqid_chain_once() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        assert json.loads(await recv_text(ws))["event"] == "subscribe"
        snapshot = json.loads(await recv_text(ws))["data"][0]
        assert snapshot["prevSeqId"] == -1
        await sim.advance(2)
        first = await okx_updates(ws, 2)
        assert first[0]["prevSeqId"] == snapshot["seqId"] and first[1]["prevSeqId"] == first[0]["seqId"]
        sim.faults.add(Fault(kind="gap", venue="okx", symbol="BTC-USDT-SWAP"))
        await sim.advance(3)
        after = await okx_updates(ws, 2)
        assert after[0]["prevSeqId"] != first[1]["seqId"]  # one update was lost
        assert after[1]["prevSeqId"] == after[0]["seqId"]
        assert sim.faults.fired[("okx", "gap")] == 1


async def test_okx_bad_checksum_fault_sends_one_mismatching_checksum() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        await recv_text(ws)
        snap = json.loads(await recv_text(ws))["data"][0]
        bids = {b[0]: b for b in snap["bids"]}
        asks = {a[0]: a for a in snap["asks"]}
        assert crc(snap["bids"], snap["asks"]) == snap["checksum"] != 0
        sim.faults.add(Fault(kind="bad_checksum", venue="okx"))
        await sim.advance(3)
        verdicts = []
        for update in await okx_updates(ws, 3):
            for side, levels in ((bids, update["bids"]), (asks, update["asks"])):
                for level in levels:
                    if level[1] == "0":
                        side.pop(level[0], None)
                    else:
                        side[level[0]] = level
            ordered_bids = sorted(bids.values(), key=lambda x: -float(x[0]))
            ordered_asks = sorted(asks.values(), key=lambda x: float(x[0]))
            verdicts.append(crc(ordered_bids, ordered_asks) == update["checksum"])
        assert verdicts == [False, True, True]


@pytest.mark.parametrize(
    ("venue", "path", "subscribe"),
    [
        ("binance", "/public/stream?streams=btcusdt@depth@100ms", None),
        ("bybit", "/v5/public/linear", json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})),
    ],
)
async def test_gap_fault_breaks_binance_pu_and_bybit_u_continuity(venue: str, path: str, subscribe: str | None) -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports[venue]}{path}")
        if subscribe:
            await ws.send_str(subscribe)
            assert json.loads(await recv_text(ws))["success"] is True

        def last_id() -> int:
            if venue == "binance":
                return sim.feeds["binance"].depth["BTCUSDT"].final_id
            return sim.feeds["bybit"].streams["orderbook.50.BTCUSDT"].update_id

        async def deltas_until_current() -> list[tuple[int, int]]:
            """(previous id, id) of every book frame up to the simulator's latest id."""
            out: list[tuple[int, int]] = []
            while not out or out[-1][1] != last_id():
                frame = json.loads(await recv_text(ws))
                if venue == "binance":
                    out.append((frame["data"]["pu"], frame["data"]["u"]))
                elif frame.get("topic", "").startswith("orderbook"):
                    data = frame["data"]
                    out.append((data["u"] - 1 if frame["type"] == "delta" else -1, data["u"]))
            return out

        await sim.advance(4)
        clean = await deltas_until_current()
        assert len(clean) >= 3 and all(b[0] == a[1] for a, b in zip(clean[1:], clean[2:]))
        sim.faults.add(Fault(kind="gap", venue=venue))
        await sim.advance(4)
        broken = await deltas_until_current()
        assert broken[0][0] != clean[-1][1]  # previous id not the last one seen: a gap


async def test_malformed_fault_sends_one_frame_that_is_not_json() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['hyperliquid']}/ws")
        await ws.send_str(json.dumps({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}}))
        assert json.loads(await recv_text(ws))["channel"] == "subscriptionResponse"
        json.loads(await recv_text(ws))
        sim.faults.add(Fault(kind="malformed", venue="hyperliquid"))
        await sim.advance(3)
        texts = [await recv_text(ws) for _ in range(3)]
        parsed = []
        for text in texts:
            try:
                parsed.append(json.loads(text)["channel"])
            except json.JSONDecodeError:
                parsed.append("invalid")
        assert parsed == ["invalid", "l2Book", "l2Book"]


async def test_drop_fault_closes_the_connection() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['bybit']}/v5/public/linear")
        await ws.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}))
        await recv_text(ws)
        await recv_text(ws)
        sim.faults.add(Fault(kind="drop", venue="bybit"))
        await sim.advance(2)
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert ws.closed or msg.type != aiohttp.WSMsgType.TEXT


async def test_stall_fault_keeps_connection_open_but_silent_then_resumes() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        await recv_text(ws)
        await recv_text(ws)
        sim.faults.add(Fault(kind="stall", venue="okx", duration_s=0.4))
        await sim.advance(3)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.25)  # silence during the stall
        assert not ws.closed
        await ws.send_str("ping")  # even pongs are held back while stalled
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.05)
        await asyncio.sleep(0.2)  # let the 0.4 s stall expire (the fault's own clock)
        await sim.advance(1)
        frame = json.loads(await recv_text(ws))
        assert frame["action"] == "update"


async def test_reorder_fault_swaps_two_consecutive_frames() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        await recv_text(ws)
        await recv_text(ws)
        sim.faults.add(Fault(kind="reorder", venue="okx"))
        await sim.advance(3)
        updates = await okx_updates(ws, 3)
        assert updates[0]["seqId"] > updates[1]["seqId"]
        assert updates[0]["prevSeqId"] == updates[1]["seqId"]


async def test_price_jump_fault_moves_every_venue_mark() -> None:
    async with Simulator(settings(dislocation_rate=0.0), autotick=False) as sim:
        before = {v: sim.market.mark(v, sim.market.symbols(v)[0]) for v in VENUES}
        sim.faults.add(Fault(kind="price_jump", venue="*", params={"bps": 200}))
        await sim.advance(1)
        for venue in VENUES:
            moved = sim.market.mark(venue, sim.market.symbols(venue)[0]) / before[venue] - 1
            assert 0.015 < moved < 0.025, (venue, moved)


async def test_delay_fault_holds_frames_for_the_given_milliseconds() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        await recv_text(ws)
        await recv_text(ws)
        sim.faults.add(Fault(kind="delay", venue="okx", params={"ms": 300}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await sim.advance(1)
        await recv_text(ws)
        assert loop.time() - started >= 0.29


async def test_okx_drops_a_silent_client_and_keeps_a_pinging_one() -> None:
    async with Simulator(settings(okx_idle_timeout_s=0.3), autotick=False) as sim, aiohttp.ClientSession() as http:
        url = f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public"
        silent = await http.ws_connect(url)
        pinging = await http.ws_connect(url)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(8):
            await pinging.send_str("ping")
            assert await recv_text(pinging) == "pong"
            await asyncio.sleep(0.1)
        msg = await asyncio.wait_for(silent.receive(), 2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert not pinging.closed and loop.time() - started >= 0.3


@pytest.mark.parametrize(
    ("venue", "path", "ping", "pong"),
    [
        ("bybit", "/v5/public/linear", '{"req_id":"7","op":"ping"}', {"success": True, "ret_msg": "pong", "op": "ping"}),
        ("hyperliquid", "/ws", '{"method":"ping"}', {"channel": "pong"}),
    ],
)
async def test_json_pings_answered_like_the_venue(venue: str, path: str, ping: str, pong: dict) -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports[venue]}{path}")
        await ws.send_str(ping)
        answer = json.loads(await recv_text(ws))
        assert pong.items() <= answer.items()


async def test_hyperliquid_closes_connection_without_traffic() -> None:
    async with Simulator(settings(hyperliquid_idle_timeout_s=0.2), autotick=False) as sim, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['hyperliquid']}/ws")
        msg = await asyncio.wait_for(ws.receive(), 2)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_admin_api_adds_lists_counts_and_clears_faults() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        admin = f"http://127.0.0.1:{sim.admin_port}/admin"
        async with http.post(f"{admin}/faults", json={"kind": "nonsense", "venue": "okx"}) as r:
            assert r.status == 400
        async with http.post(f"{admin}/faults", json={"kind": "gap", "venue": "okx", "count": 2}) as r:
            assert r.status == 201
        async with http.get(f"{admin}/faults") as r:
            assert (await r.json())["pending"][0]["kind"] == "gap"
        ws = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await ws.send_str(OKX_BOOKS)
        await recv_text(ws)
        await recv_text(ws)
        await sim.advance(3)
        await okx_updates(ws, 1)
        async with http.get(f"{admin}/stats") as r:
            stats = await r.json()
        assert stats["faults_fired"]["okx"]["gap"] == 2 and stats["frames_sent"]["okx"] >= 3
        async with http.post(f"{admin}/jump", json={"bps": 100}) as r:
            assert r.status == 200
        async with http.delete(f"{admin}/faults") as r:
            assert (await r.json())["cleared"] == 0


async def test_scenario_file_schedules_faults(tmp_path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text("- {at_s: 0.0, kind: malformed, venue: bybit}\n- {at_s: 0.05, kind: gap, venue: okx, count: 3}\n")
    async with Simulator(settings(scenario=str(path)), autotick=False) as sim:
        async def both_added() -> None:
            while len(sim.faults.pending()) < 2:
                await asyncio.sleep(0.01)
        await asyncio.wait_for(both_added(), 2)
        assert [f["kind"] for f in sim.faults.pending()] == ["malformed", "gap"]


async def test_subscribe_errors_use_each_venue_error_frame() -> None:
    async with Simulator(settings(), autotick=False) as sim, aiohttp.ClientSession() as http:
        okx = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/public")
        await okx.send_str(json.dumps({"op": "subscribe", "args": [{"channel": "books", "instId": "NOPE"}]}))
        assert json.loads(await recv_text(okx))["code"] == "60018"
        bybit = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['bybit']}/v5/public/linear")
        await bybit.send_str(json.dumps({"op": "subscribe", "args": ["orderbook.51.BTCUSDT"]}))
        assert json.loads(await recv_text(bybit))["success"] is False
        binance = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['binance']}/ws")
        await binance.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["nope@depth"], "id": 3}))
        answer = json.loads(await recv_text(binance))
        assert answer["id"] == 3 and answer["error"]["code"] == 2
        await binance.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 4}))
        assert json.loads(await recv_text(binance)) == {"result": None, "id": 4}
        hl = await http.ws_connect(f"ws://127.0.0.1:{sim.ports['hyperliquid']}/ws")
        await hl.send_str(json.dumps({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "NOPE"}}))
        assert json.loads(await recv_text(hl))["channel"] == "error"
