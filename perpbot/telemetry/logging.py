"""Logging setup: stdout plus rotating files under settings.log_dir, with every secret value redacted."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, SecretStr

REDACTED = "**********"
LOG_FILE = "perpbot.log"
MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 10
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARK = "_perpbot_handler"  # tags our handlers so a second setup replaces, not duplicates


def secret_values(model: Any) -> list[str]:
    """Every SecretStr value anywhere in a settings model (walked, not listed by hand)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            if text:
                found.append(text)
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(model)
    # Longest first so a secret containing another is replaced whole.
    return sorted(set(found), key=len, reverse=True)


class SecretFilter(logging.Filter):
    """Rewrites each record so no secret value reaches any handler (message, args, traceback)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def setup_logging(settings: Any, stream: TextIO | None = None) -> Path:
    """Configure the root logger from settings (log_level, log_dir); returns the log file path."""
    log_dir = Path(settings.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    secret_filter = SecretFilter(secret_values(settings))
    formatter = logging.Formatter(FORMAT)
    console = logging.StreamHandler(stream or sys.stdout)
    rotating = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    for handler in (console, rotating):
        handler.setFormatter(formatter)
        handler.addFilter(secret_filter)
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level)
    # Library chatter stays at WARNING unless we debug.
    for noisy in ("websockets", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    return path


def redact_also(secret: str) -> None:
    """A secret known only after start-up (the control API's generated token) redacted like the configured ones."""
    if not secret:
        return
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, SecretFilter) and secret not in found.secrets:
                found.secrets = sorted({*found.secrets, secret}, key=len, reverse=True)


def shutdown_logging() -> None:
    """Flush and close our handlers (files flushed on exit)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            handler.flush()
            root.removeHandler(handler)
            handler.close()
