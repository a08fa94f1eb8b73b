#!/usr/bin/env bash
# One-command health check of a perpbot deployment: exit 0 when healthy, 1 with readable reasons otherwise.
# Checks: API up and ready, every venue feed connected, Redis reachable (when REDIS_URL is set), trading not
# paused or halted unexpectedly (EXPECT_PAUSED=1 accepts PAUSED), no critical alert firing (when ALERTMANAGER_URL is set).
# Env: PERPBOT_URL (default http://127.0.0.1:8000), REDIS_URL, ALERTMANAGER_URL, EXPECT_PAUSED, HEALTH_TIMEOUT (s, default 5),
# PERPBOT_READ_TOKEN (else PERPBOT_API_TOKEN): sent on the bot's API reads, needed when http.read_token is set.
set -euo pipefail

export PERPBOT_URL="${PERPBOT_URL:-http://127.0.0.1:8000}"
export REDIS_URL="${REDIS_URL:-}"
export ALERTMANAGER_URL="${ALERTMANAGER_URL:-}"
export EXPECT_PAUSED="${EXPECT_PAUSED:-0}"
export HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-5}"
export PERPBOT_READ_TOKEN="${PERPBOT_READ_TOKEN:-${PERPBOT_API_TOKEN:-}}"

if ! command -v python3 >/dev/null 2>&1; then
  echo "FAIL health-check needs python3 on PATH" >&2
  exit 1
fi

exec python3 - <<'PY'
import json, os, socket, sys, urllib.error, urllib.parse, urllib.request

BASE = os.environ["PERPBOT_URL"].rstrip("/")
TIMEOUT = float(os.environ["HEALTH_TIMEOUT"])
READ_TOKEN = os.environ.get("PERPBOT_READ_TOKEN", "")
failures: list[str] = []


def report(ok: bool, what: str) -> None:
    print(("OK   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def get(url: str) -> tuple[int, object]:
    """(status, parsed JSON or text); raises OSError when nothing answers."""
    request = urllib.request.Request(url)
    if READ_TOKEN and url.startswith(BASE):  # never sent to Alertmanager or anywhere else
        request.add_header("Authorization", f"Bearer {READ_TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw or b"null")
    except ValueError:
        return status, raw.decode("utf-8", "replace")[:200]


def venue_entries(payload: object) -> dict[str, dict]:
    """Per-venue status dicts from /api/websocket/status, whichever reasonable shape it has."""
    if isinstance(payload, dict):
        for key in ("venues", "exchanges", "feeds", "connections"):
            if key in payload:
                return venue_entries(payload[key])
        return {str(k): v for k, v in payload.items() if isinstance(v, dict) and "connected" in v}
    if isinstance(payload, list):
        out = {}
        for item in payload:
            if isinstance(item, dict) and "connected" in item:
                out[str(item.get("venue") or item.get("exchange") or item.get("name") or len(out))] = item
        return out
    return {}


# 1. API up
try:
    status, body = get(f"{BASE}/health/live")
except OSError as exc:
    report(False, f"API unreachable at {BASE}: {getattr(exc, 'reason', exc)}")
    print(f"UNHEALTHY: {len(failures)} problem(s)")
    sys.exit(1)
report(status == 200, f"API live at {BASE} (HTTP {status})")

# 2. ready
status, body = get(f"{BASE}/health/ready")
report(status == 200, f"API ready (HTTP {status}{'' if status == 200 else ': ' + json.dumps(body)[:200]})")

# 3. every venue feed connected
try:
    status, body = get(f"{BASE}/api/websocket/status")
    venues = venue_entries(body) if status == 200 else {}
    if status != 200:
        report(False, f"websocket status answered HTTP {status}")
    elif not venues:
        report(False, "websocket status lists no venue feed")
    for name, entry in sorted(venues.items()):
        report(entry.get("connected") is True, f"{name} feed {'connected' if entry.get('connected') is True else 'DISCONNECTED'}")
except OSError as exc:
    report(False, f"websocket status unreachable: {exc}")

# 4. Redis
redis_url = os.environ.get("REDIS_URL")
if redis_url:
    parts = urllib.parse.urlparse(redis_url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=TIMEOUT) as sock:
            if parts.password:
                user = urllib.parse.unquote(parts.username or "default")
                pw = urllib.parse.unquote(parts.password)
                sock.sendall(f"*3\r\n$4\r\nAUTH\r\n${len(user)}\r\n{user}\r\n${len(pw)}\r\n{pw}\r\n".encode())
                sock.recv(64)
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            answer = sock.recv(64)
        report(answer.startswith(b"+PONG"), f"Redis at {parts.hostname}:{parts.port or 6379} answers PING"
               + ("" if answer.startswith(b"+PONG") else f" (got {answer[:40]!r})"))
    except OSError as exc:
        report(False, f"Redis at {parts.hostname}:{parts.port or 6379} unreachable: {exc}")

# 5. trading state
try:
    status, body = get(f"{BASE}/api/trading/state")
    state = str(body.get("state", "")).upper() if isinstance(body, dict) else ""
    reason = body.get("reason") if isinstance(body, dict) else None
    if status != 200 or not state:
        report(False, f"trading state unavailable (HTTP {status})")
    elif state == "HALTED":
        report(False, f"trading HALTED (reason: {reason})")
    elif state == "PAUSED" and os.environ.get("EXPECT_PAUSED") != "1":
        report(False, f"trading PAUSED unexpectedly (reason: {reason}); set EXPECT_PAUSED=1 if intended")
    else:
        report(True, f"trading state {state}")
except OSError as exc:
    report(False, f"trading state unreachable: {exc}")

# 6. no critical alert firing
am = os.environ.get("ALERTMANAGER_URL", "").rstrip("/")
if am:
    query = urllib.parse.urlencode({"active": "true", "silenced": "false", "inhibited": "false",
                                    "filter": 'severity="critical"'})
    try:
        status, alerts = get(f"{am}/api/v2/alerts?{query}")
        if status != 200 or not isinstance(alerts, list):
            report(False, f"Alertmanager at {am} answered HTTP {status}")
        else:
            names = sorted({a.get("labels", {}).get("alertname", "?") for a in alerts})
            report(not names, "no critical alert firing" if not names else f"critical alerts firing: {', '.join(names)}")
    except OSError as exc:
        report(False, f"Alertmanager at {am} unreachable: {exc}")

if failures:
    print(f"UNHEALTHY: {len(failures)} problem(s): " + "; ".join(failures))
    sys.exit(1)
print("HEALTHY")
PY
