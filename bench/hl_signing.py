"""Hyperliquid order signing: perpbot's native signer vs ccxt's vs the official SDK's (issue 15).

`python bench/hl_signing.py [--rounds 7] [--quick]` signs the same one-order `order` action (BTC,
asset 0, IOC buy, cloid set, no builder, mainnet, no vault, a fresh millisecond nonce per order)
with the three signers in one process, interleaved per round, GC off while timing:

* perpbot: `perpbot.venues.hyperliquid.signing.sign_l1_action` (msgspec msgpack, pycryptodome
  keccak, coincurve/libsecp256k1), key loaded once; a second row also builds the wire from
  Decimals (`order_wire` + `sign_order_action`), i.e. everything from the order's numbers to r/s/v;
  a third times `HyperliquidOrderLink.place_frame`, the WebSocket order entry's whole build (wire,
  nonce, signature, the `post` frame as JSON text) from an OrderRequest;
* ccxt: `hyperliquid.sign_l1_action(action, nonce)` of `ccxt.async_support.hyperliquid` built with
  the simulator stand-in key (`perpbot.sim.trading.clients.SIM_PRIVATE_KEY`), no network: what its
  createOrder runs after building the action;
* SDK: `hyperliquid.utils.signing.sign_l1_action(wallet, action, None, nonce, None, True)` with an
  eth-account wallet of the same key (hyperliquid-python-sdk, a test dependency).

Before timing it asserts the three give the same signature (r, s, v as integers: ccxt prints r/s
zero-padded to 64 digits, the SDK and perpbot as hex(int)) for every nonce used. Prints per-order
medians in us over the rounds, the ratios to perpbot's, and each signer's first call in the process
(lazy imports and caches: ccxt imports its ethabi/keccak code on first use).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perpbot.sim.trading.clients import SIM_PRIVATE_KEY, SIM_WALLET  # noqa: E402
from perpbot.venues.hyperliquid import signing  # noqa: E402

PRICE, SIZE, CLOID = Decimal("97123.5"), Decimal("0.00103"), "0x" + "0123456789abcdef" * 2
NONCE0 = 1_764_700_000_000


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (int(a["r"], 16), int(a["s"], 16), int(a["v"])) == (int(b["r"], 16), int(b["s"], 16), int(b["v"]))


def _signers(exchange: Any) -> dict[str, Callable[[int], Any]]:
    from eth_account import Account
    from hyperliquid.utils import signing as sdk

    key = signing.load_private_key(SIM_PRIVATE_KEY)
    wallet = Account.from_key(SIM_PRIVATE_KEY)
    wire = signing.order_wire(0, True, PRICE, SIZE, False, "Ioc", CLOID)
    action = signing.order_action([wire])

    def ours_from_decimals(nonce: int) -> Any:
        w = signing.order_wire(0, True, PRICE, SIZE, False, "Ioc", CLOID)
        return signing.sign_order_action(key, [w], nonce, True)[1]

    return {
        "perpbot sign_l1_action": lambda nonce: signing.sign_l1_action(key, action, None, nonce, None, True),
        "perpbot Decimals -> wire -> signed": ours_from_decimals,
        "ccxt hyperliquid.sign_l1_action": lambda nonce: exchange.sign_l1_action(action, nonce),
        "SDK sign_l1_action (eth-account)": lambda nonce: sdk.sign_l1_action(wallet, action, None, nonce, None, True),
    }


FRAME_ROW = "perpbot OrderLink.place_frame (wire, nonce, sign, JSON)"


def _frame_row() -> tuple[Callable[[int], Any], float]:
    """The bot's whole path from an approved OrderRequest to the text it sends over the WebSocket
    (perpbot.venues.hyperliquid.order_link: wire from Decimals, nonce, signature, the post frame as JSON).
    Checked first: the frame's action is the bench's and its signature is perpbot's for the frame's nonce.
    Returns the timed call and the link's first place_frame in us."""
    import json

    from perpbot.core.orders import OrderRequest
    from perpbot.settings import VenueSettings
    from perpbot.venues.hyperliquid.order_link import HyperliquidOrderLink

    cfg = VenueSettings(environment="mainnet", wallet_address=SIM_WALLET, private_key=SIM_PRIVATE_KEY)
    link = HyperliquidOrderLink("ws://127.0.0.1:1/ws", cfg, {"BTC": 0})
    order = OrderRequest("hyperliquid", "BTC", "buy", SIZE, PRICE, CLOID)
    start = time.perf_counter_ns()
    frame = link.place_frame("1", order)
    first_us = (time.perf_counter_ns() - start) / 1e3
    payload = json.loads(frame)["request"]["payload"]
    action = signing.order_action([signing.order_wire(0, True, PRICE, SIZE, False, "Ioc", CLOID)])
    expected = signing.sign_l1_action(signing.load_private_key(SIM_PRIVATE_KEY), action, None, payload["nonce"],
                                      None, True)
    assert payload["action"] == action and _same(payload["signature"], expected), payload
    return (lambda nonce: link.place_frame(str(nonce), order)), first_us


def _check(signers: dict[str, Callable[[int], Any]], nonces: list[int]) -> dict[str, float]:
    """Asserts identical signatures for every nonce; returns each signer's first (cold) call in us."""
    names = list(signers)
    first: dict[str, float] = {}
    for nonce in nonces:
        sigs = []
        for name in names:
            start = time.perf_counter_ns()
            sigs.append(signers[name](nonce))
            first.setdefault(name, (time.perf_counter_ns() - start) / 1e3)
        for name, sig in zip(names[1:], sigs[1:], strict=True):
            assert _same(sigs[0], sig), f"nonce {nonce}: {names[0]} {sigs[0]} != {name} {sig}"
    assert signing.address_of(signing.load_private_key(SIM_PRIVATE_KEY)) == SIM_WALLET
    return first


def _time(fn: Callable[[int], Any], count: int, nonce: int) -> float:
    """us per call for `count` calls with consecutive nonces."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for i in range(count):
            fn(nonce + i)
        return (time.perf_counter_ns() - start) / count / 1e3
    finally:
        gc.enable()


async def run(rounds: int, quick: bool) -> tuple[dict[str, float], dict[str, float]]:
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

    exchange = ccxt_async.hyperliquid({"privateKey": SIM_PRIVATE_KEY, "walletAddress": SIM_WALLET})
    try:
        signers = _signers(exchange)
        first = _check(signers, [NONCE0 + i for i in range(5 if quick else 25)])
        signers[FRAME_ROW], first[FRAME_ROW] = _frame_row()  # its own nonces (the link's clock): checked apart
        counts = {name: (2000 if name.startswith("perpbot") else 100 if name.startswith("SDK") else 10)
                  for name in signers}
        if quick:
            counts = {name: max(3, count // 5) for name, count in counts.items()}
        samples: dict[str, list[float]] = {name: [] for name in signers}
        nonce = NONCE0 + 1000
        for name, fn in signers.items():  # warm-up (imports, caches)
            _time(fn, 3, nonce)
        for _ in range(rounds):
            gc.collect()
            for name, fn in signers.items():
                samples[name].append(_time(fn, counts[name], nonce))
                nonce += counts[name]
        return {name: statistics.median(values) for name, values in samples.items()}, first
    finally:
        await exchange.close()


def report(medians: dict[str, float], first: dict[str, float], rounds: int) -> str:
    base = medians["perpbot sign_l1_action"]
    lines = [f"Hyperliquid order signing, one order, per-order median over {rounds} rounds "
             "(same action, same key; signatures asserted identical)", "",
             "| signer | us/order | x perpbot | first call in process, us |", "| --- | ---: | ---: | ---: |"]
    for name, value in medians.items():
        lines.append(f"| {name} | {value:,.1f} | {value / base:,.1f} | {first[name]:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds, fewer calls")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else args.rounds
    medians, first = asyncio.run(run(rounds, args.quick))
    print(report(medians, first, rounds))
    return medians


if __name__ == "__main__":
    main()
