"""Who may call the control API: the tokens (configured, or generated once into a 0600 file), their
scopes, and the browser-facing checks (Origin, Host, Content-Type) every request passes first.

Pure functions over header strings and the tokens; perpbot.control.server applies them in its guard.
Tokens are compared through their SHA-256 digests with hmac.compare_digest, so neither a token's
value nor its length shows in the time a refusal takes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from perpbot.telemetry.logging import redact_also

log = logging.getLogger("perpbot.control")

Scope = Literal["read", "trade"]
TOKEN_BYTES = 32  # of randomness: 43 URL-safe characters
MAX_TOKEN_CHARS = 512


class TokenFileError(Exception):
    """The token file cannot be read or created (a directory in the way, no permission)."""


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens in force: `trade` may do everything; `read` (optional) only the read routes."""

    trade_digest: bytes
    read_digest: bytes | None
    source: str  # "PERPBOT_API_TOKEN" or the generated file's path (for the start-up log line)

    @property
    def reads_need_token(self) -> bool:
        return self.read_digest is not None

    def scope_of(self, given: str) -> Scope | None:
        """The scope a presented token grants, None for a wrong one. Both digests are always compared."""
        digest = _digest(given)
        trade = hmac.compare_digest(digest, self.trade_digest)
        read = hmac.compare_digest(digest, self.read_digest if self.read_digest is not None else bytes(32))
        if trade:
            return "trade"
        return "read" if read and self.read_digest is not None else None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


def read_or_create_token(path: Path) -> tuple[str, bool]:
    """The token kept in `path`, created (random, mode 0600, O_EXCL) when the file does not exist yet.
    Returns (token, created). A file others may read is narrowed to 0600 with a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read_token_file(path), False
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
        os.chmod(path, 0o600)  # whatever the umask
        return token, True
    except OSError as exc:
        raise TokenFileError(f"control API token file {path}: {exc.strerror or exc}") from None


def _read_token_file(path: Path) -> str:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("Control API token file %s was readable by others (mode %o): narrowed to 0600", path, mode)
        os.chmod(path, 0o600)
    token = path.read_text(encoding="utf-8").strip()
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable() or " " in token:
        raise TokenFileError(f"control API token file {path} holds no usable token (delete it to generate one)")
    return token


def trade_token(settings: Any) -> tuple[str, str, bool]:
    """(token, source, created): PERPBOT_API_TOKEN when configured, else the token file's (created at first use)."""
    if settings.api_token is not None and settings.api_token.get_secret_value():
        return settings.api_token.get_secret_value(), "PERPBOT_API_TOKEN", False
    path = settings.token_file_path()
    token, created = read_or_create_token(path)
    return token, str(path), created


def resolve_tokens(settings: Any) -> Tokens:
    """The tokens the control API checks; generates the token file when no token is configured."""
    token, source, created = trade_token(settings)
    redact_also(token)  # a generated token is no configured secret: the log filter learns it here
    if created:
        log.warning("Control API token generated into %s (mode 0600); `perpbot token` prints it", source)
    else:
        log.info("Control API token from %s", source)
    read = settings.http.read_token
    read_digest = _digest(read.get_secret_value()) if read is not None and read.get_secret_value() else None
    return Tokens(_digest(token), read_digest, source)


class MalformedHeader(ValueError):
    """An Authorization header that is not `Bearer <token>` in printable ASCII."""


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when absent; MalformedHeader for
    anything else (another scheme, no token, bytes that are not printable ASCII)."""
    if header is None:
        return None
    if not header.isascii() or not header.isprintable() or len(header) > MAX_TOKEN_CHARS + 16:
        raise MalformedHeader("malformed Authorization header")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise MalformedHeader("Authorization must be 'Bearer <token>'")
    return token


def is_loopback(host: str) -> bool:
    """A loopback name or address: localhost, 127.0.0.0/8, ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name part of a Host header (port and IPv6 brackets removed), lower-case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host


def host_allowed(host_header: str | None, allowed: list[str]) -> bool:
    """DNS-rebinding guard: the Host a request names is loopback or listed in http.allowed_hosts. A
    request with no Host header (HTTP/1.0 tooling) is not a browser's and passes."""
    if host_header is None:
        return True
    name = host_name(host_header)
    return is_loopback(name) or name in {h.lower() for h in allowed}


def _origin_key(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname, port or default


def origin_allowed(origin: str | None, host_header: str | None, secure: bool, allowed: list[str]) -> bool:
    """A state-changing request's Origin is absent (curl, scripts), the API's own, or listed in
    http.allowed_origins. `null` and anything unreadable are foreign."""
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:
        return False
    if any(key == _origin_key(item) for item in allowed):
        return True
    if host_header is None:
        return False
    own = _origin_key(f"{'https' if secure else 'http'}://{host_header}")
    return own is not None and key == own


JSON_TYPES = ("application/json",)
# The types a browser sends cross-site without a preflight ("simple" requests): never accepted.
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


def json_body_allowed(content_type: str | None, has_body: bool) -> bool:
    """State-changing routes take JSON only: a body must be application/json (or a +json type); the
    types a browser may send cross-site unasked (text/plain, forms) are refused even with no body.
    No body with no Content-Type (curl -X POST) or a tool's default type (aiohttp's
    application/octet-stream) is fine."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return True
    return not has_body and media not in SIMPLE_TYPES
