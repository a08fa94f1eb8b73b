"""The composition root end to end: in-process with the simulator, and `perpbot run` in a subprocess under SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import yaml

from perpbot.app import App
from perpbot.settings import Settings

from testkit import free_port, wait_started, wait_until

REPO = Path(__file__).resolve().parents[2]


async def test_app_with_the_in_process_simulator_fills_every_book_and_stops_cleanly(tmp_path):
    ports = {venue: free_port() for venue in ("okx", "hyperliquid", "binance", "bybit")}
    settings = Settings(
        mode="sim", log_dir=str(tmp_path / "logs"),
        http={"host": "127.0.0.1", "port": 0},
        # The journal (and the control API's generated token beside it) in the test's directory, not ./data.
        journal={"path": str(tmp_path / "data" / "journal.sqlite")},
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 7, "tick_interval_s": 0.05},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    )
    app = App(settings)
    task = asyncio.get_running_loop().create_task(app.run())
    await wait_started(app, task)
    store = app.store
    await wait_until(lambda: all(book.valid for book in store.books.values()), timeout=15)
    assert {venue for venue, _ in store.books} == {"okx", "hyperliquid", "binance", "bybit"}
    okx_book = store.get("okx", "BTC-USDT-SWAP")
    assert okx_book._contract is not None  # sizes converted from contracts (ctVal 0.01) to BTC
    base = f"http://127.0.0.1:{app.control.port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/websocket/status") as resp:
            status = await resp.json()
        assert all(status[v]["connected"] for v in ports), status
        async with http.get(f"{base}/api/books/binance/BTCUSDT?depth=3") as resp:
            book = await resp.json()
        assert book["valid"] is True and len(book["bids"]) == 3
        assert float(book["best_bid"]) < float(book["best_ask"])
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
        assert 'perpbot_websocket_connected{exchange="okx"} 1.0' in text
        async with http.get(f"{base}/api/balances") as resp:
            assert resp.status in (200, 503)  # 503 while the run is market-data-only
    app.request_stop()
    assert await asyncio.wait_for(task, 10) == 0
    assert all(not c.connected for c in app.supervisor.connections())


async def test_sigterm_stops_perpbot_run_with_exit_code_0(tmp_path):
    dead = free_port()  # nothing listens here: every feed fails and backs off
    http_port = free_port()
    symbols = {"okx": ["BTC-USDT-SWAP"], "hyperliquid": ["BTC"], "binance": ["BTCUSDT"], "bybit": ["BTCUSDT"]}
    venues = {
        venue: {"ws_url": f"ws://127.0.0.1:{dead}/ws", "rest_url": f"http://127.0.0.1:{dead}", "symbols": names}
        for venue, names in symbols.items()
    }
    config = {
        "mode": "paper", "log_dir": str(tmp_path / "logs"), "http": {"host": "127.0.0.1", "port": http_port},
        "sim": {"enabled": False}, "venues": venues,
        "feeds": {"backoff_initial_s": 0.05, "backoff_max_s": 0.2},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env["PYTHONPATH"] = str(REPO)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "perpbot.cli", "run", "--config", str(path), cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{http_port}"
        async with aiohttp.ClientSession() as http:
            async def live() -> bool:
                try:
                    async with http.get(f"{base}/health/live") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            deadline = asyncio.get_running_loop().time() + 20
            while not await live():
                assert proc.returncode is None, (await proc.stderr.read()).decode()
                assert asyncio.get_running_loop().time() < deadline, "control API never came up"
                await asyncio.sleep(0.05)
            async def reconnecting() -> dict:
                async with http.get(f"{base}/api/websocket/status") as resp:
                    return await resp.json()

            deadline = asyncio.get_running_loop().time() + 10
            while (status := await reconnecting())["okx"]["reconnects"] < 2:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            assert status["okx"]["connected"] is False
            async with http.get(f"{base}/health/ready") as resp:
                assert resp.status == 503
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0
    log_text = (tmp_path / "logs" / "perpbot.log").read_text()
    assert "WebSocket connection failed" in log_text
    assert "perpbot stopped cleanly" in log_text


def test_a_broken_import_of_the_trading_side_stops_start_up_with_one_clear_line(tmp_path):
    """The composition root imports what it wires: when perpbot.wiring does not import, `perpbot run`
    starts nothing (no market-data-only run without its trading side) and exits non-zero, saying why."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'perpbot.wiring':\n"
        "            raise ModuleNotFoundError(\"No module named 'ccxt_broken'\", name='ccxt_broken')\n"
        "        return None\n"
        "sys.meta_path.insert(0, _Broken())\n"
    )
    http_port = free_port()
    config = {"mode": "paper", "log_dir": str(tmp_path / "logs"), "http": {"host": "127.0.0.1", "port": http_port},
              "sim": {"enabled": False}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(shadow), str(REPO)])
    proc = subprocess.run([sys.executable, "-m", "perpbot.cli", "run", "--config", str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["perpbot: start-up stopped: a module of the service does not import"
                     " (ModuleNotFoundError: No module named 'ccxt_broken')"], proc.stderr
    assert not (tmp_path / "logs" / "perpbot.log").exists()  # nothing was started


def test_the_composition_root_imports_the_trading_side_it_wires():
    import perpbot.app as app
    import perpbot.wiring as wiring

    assert app.build_engine is wiring.build_engine
    assert not hasattr(app, "load_engine_factory") and "importlib" not in vars(app)
