"""Command line: `perpbot run | sim | check-config | token` on a uvloop event loop; a bad config exits 2 with one
line, a module of the service that does not import exits 3 with one line (nothing is started). `perpbot token`
prints the control API's trade token (PERPBOT_API_TOKEN, else the generated token file's, created if missing)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from perpbot.settings import ConfigError, Settings, _format_error, load_settings

EXIT_CONFIG = 2
EXIT_IMPORT = 3
SIM_VENUES = ("okx", "hyperliquid", "binance", "bybit")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perpbot", description="Cross-venue perpetual futures arbitrage service.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the service (feeds, scanner, risk, execution, control API)")
    run.add_argument("--config", help="config file (default: $PERPBOT_CONFIG or config.yaml)")

    sim = commands.add_parser("sim", help="run only the built-in venue simulator on loopback")
    sim.add_argument("--config", help="config file (default: $PERPBOT_CONFIG or config.yaml)")
    sim.add_argument("--seed", type=int, help="market seed")
    for venue in SIM_VENUES:
        sim.add_argument(f"--{venue}-port", type=int, dest=f"{venue}_port", help=f"{venue} simulator port")
    sim.add_argument("--admin-port", type=int, help="simulator admin port")
    sim.add_argument("--scenario", help="fault scenario file")

    check = commands.add_parser("check-config", help="validate the configuration and print it (secrets redacted)")
    check.add_argument("--config", help="config file (default: $PERPBOT_CONFIG or config.yaml)")

    token = commands.add_parser("token", help="print the control API's trade token (for scripts: "
                                              "AUTH=\"Authorization: Bearer $(perpbot token)\")")
    token.add_argument("--config", help="config file (default: $PERPBOT_CONFIG or config.yaml)")
    return parser


def _print_token(settings: Settings) -> int:
    """The trade token on stdout (nothing else), where it comes from on stderr."""
    from perpbot.control.auth import TokenFileError, trade_token

    try:
        token, source, created = trade_token(settings)
    except TokenFileError as exc:
        print(f"perpbot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(token)
    print(f"control API token from {source}{' (generated now)' if created else ''}", file=sys.stderr)
    return 0


def _sim_settings(settings: Settings, args: argparse.Namespace) -> Settings:
    sim = settings.sim.model_copy(deep=True)
    if args.seed is not None:
        sim.seed = args.seed
    for venue in SIM_VENUES:
        port = getattr(args, f"{venue}_port")
        if port is not None:
            sim.ports[venue] = port
    if args.admin_port is not None:
        sim.admin_port = args.admin_port
    if args.scenario is not None:
        sim.scenario = args.scenario
    # Re-validate the whole model so a bad override fails like a bad config file.
    data = settings.model_dump()
    data["sim"] = sim.model_dump()
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:  # the same one line as a bad config file: key, value, rule
        raise ConfigError(_format_error(exc)) from None


def _loop_runner(coro) -> int | None:
    try:
        import uvloop
    except ImportError:  # uvloop is a dependency; stay usable where it cannot build
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _sim_forever(settings: Settings) -> int:
    import signal

    from perpbot.sim.server import run_forever
    from perpbot.telemetry.logging import setup_logging, shutdown_logging

    setup_logging(settings)
    task = asyncio.ensure_future(run_forever(settings))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        shutdown_logging()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command == "sim":
            settings = _sim_settings(settings, args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "token":
        return _print_token(settings)
    if args.command == "check-config":
        print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
        print("config ok", file=sys.stderr)
        return 0
    if args.command == "sim":
        return _loop_runner(_sim_forever(settings)) or 0
    try:  # the composition root imports everything it wires: a broken import stops start-up here
        from perpbot.app import run
    except ImportError as exc:
        print(f"perpbot: start-up stopped: a module of the service does not import"
              f" ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return EXIT_IMPORT
    return _loop_runner(run(settings)) or 0


if __name__ == "__main__":
    sys.exit(main())
