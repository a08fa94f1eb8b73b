#!/usr/bin/env python3
"""Post-deploy validation of a running perpbot: every route, every SPEC metric, feeds, books, state, config.

Usage: python validate_perpbot_v2.py [--url http://127.0.0.1:8000] [--token TOKEN | --token-file FILE]
                                     [--exercise-controls]
URL and token default to $PERPBOT_URL and $PERPBOT_API_TOKEN (else $PERPBOT_TOKEN_FILE, the file the bot
generates when no token is configured: `--token "$(perpbot token)"` works too). The token is sent on every
request (read routes need it when http.read_token is set) and never printed. Prints one line per check and
exits 1 when any check fails. Read-only by default: state-changing routes are only probed for
authentication, except POST /api/sync/positions?dry_run=true (reports differences, applies nothing) when a
token is given. --exercise-controls also pauses, checks that active orders empty, and resumes. Standard
library only, so it runs wherever Python 3.11 does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

# SPEC metric names (counters by their exposed *_total name) and the other series dashboards/alerts use.
SPEC_METRICS = (
    "perpbot_system_health",
    "perpbot_websocket_connected",
    "perpbot_orders_total",
    "perpbot_orders_success_total",
    "perpbot_order_execution_duration_seconds",
    "perpbot_capital_utilization_percent",
    "perpbot_arbitrage_opportunities_total",
    "perpbot_active_positions",
    "perpbot_websocket_latency_seconds",
    "perpbot_websocket_latency_current_seconds",
)
OPERATIONS_METRICS = (
    "perpbot_websocket_messages_total",
    "perpbot_websocket_reconnects_total",
    "perpbot_book_resyncs_total",
    "perpbot_books_valid",
    "perpbot_risk_refusals_total",
    "perpbot_orders_rejected_total",
    "perpbot_pnl_realized_usdt",
    "perpbot_pnl_unrealized_usdt",
    "perpbot_fees_paid_usdt",
    "perpbot_funding_pnl_usdt",
    "perpbot_equity_usdt",
    "perpbot_unhedged_notional_usdt",
    "perpbot_trading_state",
    "perpbot_event_loop_lag_seconds",
    "perpbot_component_health",
)
SPEC_ROUTES = (
    ("get", "/api/websocket/status"), ("get", "/api/balances"), ("get", "/api/positions"),
    ("post", "/api/sync/positions"), ("post", "/api/trading/pause"), ("post", "/api/trading/resume"),
    ("get", "/api/orders/active"), ("post", "/api/positions/close-all"), ("get", "/api/config"),
    ("get", "/metrics"),
)
TRADING_STATES = {"ACTIVE", "REDUCING", "PAUSED", "HALTED"}
SECRET_WORDS = ("secret", "api_key", "passphrase", "private_key", "token", "password")
REDACTED = "**********"


@dataclass
class Report:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        self.lines.append(("PASS" if ok else "FAIL", what))
        print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)
        return ok

    def warn(self, what: str) -> None:
        self.lines.append(("WARN", what))
        print(f"WARN  {what}", flush=True)

    @property
    def failed(self) -> list[str]:
        return [what for status, what in self.lines if status == "FAIL"]


class Client:
    def __init__(self, base: str, token: str | None, timeout: float) -> None:
        self.base, self.token, self.timeout = base.rstrip("/"), token, timeout

    def request(self, method: str, path: str, auth: bool = False) -> tuple[int, Any, str]:
        """(status, parsed JSON or None, raw text); status 0 when nothing answered."""
        req = urllib.request.Request(self.base + path, method=method.upper(),
                                     data=b"{}" if method.upper() == "POST" else None)
        req.add_header("Accept", "application/json")
        if method.upper() == "POST":
            req.add_header("Content-Type", "application/json")
        if self.token:  # the trade token also reads (needed for reads once http.read_token is set)
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except OSError as exc:
            return 0, None, str(getattr(exc, "reason", exc))
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text) if text else None, text
        except ValueError:
            return status, None, text


# -- shape helpers (tolerant of a list or a {"<key>": [...]} wrapper) ------------------------------------

def as_list(body: Any, *keys: str) -> list | None:
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        for key in keys:
            if isinstance(body.get(key), list):
                return body[key]
    return None


def venue_entries(body: Any) -> dict[str, dict]:
    """Per-venue feed status from /api/websocket/status, keyed by venue."""
    if isinstance(body, dict):
        for key in ("venues", "exchanges", "feeds", "connections"):
            if key in body:
                return venue_entries(body[key])
        return {str(k): v for k, v in body.items() if isinstance(v, dict) and "connected" in v}
    if isinstance(body, list):
        return {str(i.get("venue") or i.get("exchange") or i.get("name") or n): i
                for n, i in enumerate(body) if isinstance(i, dict) and "connected" in i}
    return {}


def is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        Decimal(str(value))
        return True
    except (InvalidOperation, ValueError):
        return False


def leaked_secrets(node: Any, path: str = "") -> list[str]:
    """Config keys that look secret and hold anything but null or the redaction mark."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if any(w in str(key).lower() for w in SECRET_WORDS) and not isinstance(value, (dict, list)):
                if value not in (None, "", REDACTED):
                    found.append(here)
            else:
                found.extend(leaked_secrets(value, here))
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found.extend(leaked_secrets(value, f"{path}[{n}]"))
    return found


def metric_families(text: str) -> tuple[set[str], dict[str, list[tuple[str, float]]]]:
    """(names declared by # TYPE, with counters also under *_total; samples by name -> [(labels, value)])."""
    declared: set[str] = set()
    samples: dict[str, list[tuple[str, float]]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            declared.add(name)
            if kind.strip() == "counter" and not name.endswith("_total"):
                declared.add(name + "_total")
        elif line and not line.startswith("#"):
            match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if match:
                try:
                    value = float(match.group(3))
                except ValueError:
                    continue
                samples.setdefault(match.group(1), []).append((match.group(2) or "", value))
    return declared, samples


def has_samples(name: str, samples: dict[str, list]) -> bool:
    return any(k == name or k in (f"{name}_bucket", f"{name}_count") for k in samples)


# -- checks ---------------------------------------------------------------------------------------------

def check_health(c: Client, r: Report) -> bool:
    status, _, text = c.request("get", "/health/live")
    if not r.check(status == 200, f"GET /health/live answers 200 (got {status or text})"):
        return False
    status, body, _ = c.request("get", "/health/ready")
    r.check(status == 200, f"GET /health/ready answers 200 (got {status}: {json.dumps(body)[:160]})")
    return True


def check_feeds(c: Client, r: Report, enabled: list[str]) -> None:
    status, body, _ = c.request("get", "/api/websocket/status")
    venues = venue_entries(body)
    if not r.check(status == 200 and bool(venues), f"GET /api/websocket/status lists per-venue feeds (HTTP {status})"):
        return
    for venue in enabled or sorted(venues):
        entry = venues.get(venue)
        if not r.check(entry is not None, f"feed status present for {venue}"):
            continue
        r.check(entry.get("connected") is True, f"{venue} feed connected")
        missing = [k for k in ("reconnects",) if k not in entry]
        if missing or not any("latency" in k for k in entry):
            r.warn(f"{venue} feed status lacks {', '.join(missing + ([] if any('latency' in k for k in entry) else ['latency']))}")


def check_books(c: Client, r: Report, config: dict) -> None:
    venues_cfg = config.get("venues", {}) if isinstance(config, dict) else {}
    for venue, cfg in sorted(venues_cfg.items()):
        if not isinstance(cfg, dict) or not cfg.get("enabled", True):
            continue
        for symbol in cfg.get("symbols", [])[:4]:
            status, body, _ = c.request("get", f"/api/books/{venue}/{symbol}?depth=5")
            if not r.check(status == 200 and isinstance(body, dict), f"GET /api/books/{venue}/{symbol} answers (HTTP {status})"):
                continue
            valid = body.get("valid")
            r.check(valid is True, f"{venue} {symbol} book valid"
                    + ("" if valid is True else f" (invalid_reason: {body.get('invalid_reason')})"))
            bid, ask = body.get("best_bid"), body.get("best_ask")
            if isinstance(bid, dict):
                bid = bid.get("price")
            if isinstance(ask, dict):
                ask = ask.get("price")
            if isinstance(bid, list):
                bid = bid[0] if bid else None
            if isinstance(ask, list):
                ask = ask[0] if ask else None
            if bid is not None and ask is not None and is_number(bid) and is_number(ask):
                r.check(Decimal(str(bid)) < Decimal(str(ask)), f"{venue} {symbol} book not crossed ({bid} < {ask})")
            elif valid is True:
                r.warn(f"{venue} {symbol} book answer has no best_bid/best_ask to compare")


def check_config(c: Client, r: Report) -> dict:
    status, body, text = c.request("get", "/api/config")
    if not r.check(status == 200 and isinstance(body, dict), f"GET /api/config answers a JSON object (HTTP {status})"):
        return {}
    leaks = leaked_secrets(body)
    r.check(not leaks, "config secrets redacted" + (f" (exposed: {', '.join(leaks)})" if leaks else ""))
    token = c.token
    if token:
        r.check(token not in text, "API token absent from /api/config")
    risk = body.get("risk", {})
    for key in ("max_position_size_usdt", "max_leverage"):
        value = risk.get(key) if isinstance(risk, dict) else None
        r.check(is_number(value) and Decimal(str(value)) > 0, f"config risk.{key} set and positive ({value})")
    r.check(body.get("mode") in ("sim", "paper", "live"), f"config mode sane ({body.get('mode')})")
    return body


def check_engine_routes(c: Client, r: Report) -> None:
    status, body, _ = c.request("get", "/api/balances")
    balances = as_list(body, "balances", "venues")
    if isinstance(body, dict) and balances is None:
        balances = [dict(v, venue=k) for k, v in body.items() if isinstance(v, dict)]
    if r.check(status == 200 and balances is not None, f"GET /api/balances answers per-venue balances (HTTP {status})"):
        bad = [b for b in balances if not all(is_number(b.get(k)) for k in ("equity", "available", "used_margin"))]
        r.check(not bad, "every balance has numeric equity, available, used_margin"
                + (f" (bad: {json.dumps(bad)[:160]})" if bad else ""))
    status, body, _ = c.request("get", "/api/positions")
    positions = as_list(body, "positions")
    if r.check(status == 200 and positions is not None, f"GET /api/positions answers a list (HTTP {status})"):
        bad = [p for p in positions if not isinstance(p, dict) or "symbol" not in p or not is_number(p.get("size", p.get("qty")))]
        r.check(not bad, f"{len(positions)} position(s) each with symbol and size")
    status, body, _ = c.request("get", "/api/orders/active")
    r.check(status == 200 and as_list(body, "orders") is not None, f"GET /api/orders/active answers a list (HTTP {status})")
    status, body, _ = c.request("get", "/api/trading/state")
    state = str(body.get("state", "")).upper() if isinstance(body, dict) else ""
    r.check(status == 200 and state in TRADING_STATES, f"GET /api/trading/state is one of {sorted(TRADING_STATES)} ({state or status})")
    if state == "HALTED":
        r.check(False, f"trading HALTED (reason: {body.get('reason')})")
    elif state == "PAUSED":
        r.warn(f"trading PAUSED (reason: {body.get('reason')})")
    status, body, _ = c.request("get", "/api/pnl/today")
    r.check(status == 200 and isinstance(body, dict), f"GET /api/pnl/today answers an object (HTTP {status})")
    status, body, _ = c.request("get", "/api/trades?hours=24")
    r.check(status == 200 and as_list(body, "trades") is not None, f"GET /api/trades?hours=24 answers a list (HTTP {status})")


def check_openapi(c: Client, r: Report) -> None:
    status, body, _ = c.request("get", "/api/openapi.json")
    if not r.check(status == 200 and isinstance(body, dict) and "paths" in body, f"GET /api/openapi.json is an OpenAPI document (HTTP {status})"):
        return
    paths = body["paths"]
    missing = [f"{m.upper()} {p}" for m, p in SPEC_ROUTES if m not in {k.lower() for k in paths.get(p, {})}]
    r.check(not missing, "OpenAPI lists every SPEC route" + (f" (missing: {', '.join(missing)})" if missing else ""))


def check_auth(c: Client, r: Report) -> None:
    """State-changing routes refuse a caller without a token; never sends a valid one here."""
    saved, c.token = c.token, None
    try:
        for path in ("/api/trading/pause", "/api/positions/close-all"):
            status, _, _ = c.request("post", path, auth=False)
            r.check(status in (401, 403), f"POST {path} without a token is refused (HTTP {status})")
    finally:
        c.token = saved


def check_metrics(c: Client, r: Report, enabled: list[str]) -> None:
    status, _, text = c.request("get", "/metrics")
    if not r.check(status == 200 and "perpbot_" in text, f"GET /metrics answers Prometheus text (HTTP {status})"):
        return
    declared, samples = metric_families(text)
    for name in SPEC_METRICS + OPERATIONS_METRICS:
        present = name in declared or has_samples(name, samples)
        r.check(present, f"metric {name} exported")
        if present and name in SPEC_METRICS and not has_samples(name, samples):
            r.warn(f"metric {name} has no sample yet (no event of that kind since start)")
    health = [v for _, v in samples.get("perpbot_system_health", [])]
    if health:
        r.check(health[0] >= 70, f"perpbot_system_health {health[0]:.0f} >= 70")
        if health[0] < 90:
            r.warn(f"perpbot_system_health {health[0]:.0f} below its 90 target")
    connected = {re.search(r'exchange="([^"]*)"', lab).group(1): v
                 for lab, v in samples.get("perpbot_websocket_connected", []) if 'exchange="' in lab}
    for venue in enabled:
        r.check(connected.get(venue) == 1.0, f"perpbot_websocket_connected{{exchange=\"{venue}\"}} == 1 (got {connected.get(venue)})")


def exercise_controls(c: Client, r: Report, settle_s: float) -> None:
    """Pause, wait for active orders to empty, resume: the emergency-stop procedure, end to end."""
    status, body, _ = c.request("post", "/api/trading/pause", auth=True)
    if not r.check(status == 200, f"POST /api/trading/pause with token (HTTP {status})"):
        return
    deadline = time.monotonic() + settle_s
    orders: list | None = None
    while time.monotonic() < deadline:
        _, body, _ = c.request("get", "/api/orders/active")
        orders = as_list(body, "orders")
        if orders == []:
            break
        time.sleep(0.5)
    r.check(orders == [], f"active orders empty after pause ({len(orders or [])} left)")
    _, body, _ = c.request("get", "/api/trading/state")
    r.check(isinstance(body, dict) and str(body.get("state", "")).upper() == "PAUSED", "state PAUSED after pause")
    status, _, _ = c.request("post", "/api/trading/resume", auth=True)
    r.check(status == 200, f"POST /api/trading/resume with token (HTTP {status})")


def sync_dry_run(c: Client) -> tuple[int, Any]:
    """POST /api/sync/positions?dry_run=true; a 202 (still running) is followed through its operation."""
    status, body, _ = c.request("post", "/api/sync/positions?dry_run=true", auth=True)
    deadline = time.monotonic() + 3 * c.timeout
    while status == 202 and isinstance(body, dict) and body.get("poll") and time.monotonic() < deadline:
        status, view, _ = c.request("get", f"{body['poll']}?wait={int(c.timeout * 0.8)}")
        if isinstance(view, dict) and view.get("status") == "done":
            return 200, view.get("result")
        if not isinstance(view, dict) or view.get("status") != "running":
            return status if status != 200 else 503, view
    return status, body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PERPBOT_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("PERPBOT_API_TOKEN"),
                        help="bearer token (default $PERPBOT_API_TOKEN); never printed")
    parser.add_argument("--token-file", default=os.environ.get("PERPBOT_TOKEN_FILE"),
                        help="file holding the token (the bot's generated one, e.g. data/api_token; "
                             "default $PERPBOT_TOKEN_FILE) when no --token is given")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--exercise-controls", action="store_true",
                        help="also pause, check active orders empty, and resume")
    args = parser.parse_args(argv)
    token = args.token
    if not token and args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except OSError as exc:
            print(f"cannot read the token file {args.token_file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    client = Client(args.url, token or None, args.timeout)
    report = Report()
    print(f"perpbot validation of {client.base}", flush=True)
    if check_health(client, report):
        config = check_config(client, report)
        enabled = sorted(v for v, cfg in config.get("venues", {}).items() if isinstance(cfg, dict) and cfg.get("enabled", True))
        check_feeds(client, report, enabled)
        check_books(client, report, config)
        check_engine_routes(client, report)
        check_openapi(client, report)
        check_auth(client, report)
        check_metrics(client, report, enabled)
        if client.token:
            status, body = sync_dry_run(client)
            report.check(status == 200 and isinstance(body, dict),
                         f"POST /api/sync/positions?dry_run=true with token compares with the venues (HTTP {status})")
            if status == 200 and isinstance(body, dict) and body.get("changed"):
                report.warn(f"a sync would change {len(body['changed'])} position(s): POST /api/sync/positions")
        else:
            report.warn("no token given: authenticated routes not exercised")
        if args.exercise_controls:
            exercise_controls(client, report, settle_s=args.timeout)
    passed = sum(1 for s, _ in report.lines if s == "PASS")
    warned = sum(1 for s, _ in report.lines if s == "WARN")
    print(f"\nsummary: PASS {passed}, FAIL {len(report.failed)}, WARN {warned}")
    if report.failed:
        print("FAILED checks:\n  " + "\n  ".join(report.failed))
        return 1
    print("perpbot deployment VALID")
    return 0


if __name__ == "__main__":
    sys.exit(main())
