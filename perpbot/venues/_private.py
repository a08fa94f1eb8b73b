"""What the four venues' private-stream links share: the parse context and credentials as plain
strings (read from the settings' secrets only here, never logged), and the no-op parts of the
`perpbot.core.ports.PrivateLink` protocol that only Binance's listen key needs."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from perpbot.core.private_events import PrivateContext, PrivateEvent
from perpbot.settings import VenueSettings

Parser = Callable[[str | bytes, float, PrivateContext], list[PrivateEvent]]


def secret(cfg: VenueSettings, name: str) -> str:
    """One credential as a plain string; a clear error naming the key (never its value) when unset."""
    value = getattr(cfg, name)
    if value is None:
        raise ValueError(f"the private stream needs {name} (set it in the environment)")
    return value if isinstance(value, str) else value.get_secret_value()


class LinkBase:
    """The parts most venues share: a fixed URL, no key to keep alive, parsing with a context."""

    venue: str
    ping_frame: str | None = None
    ping_interval_s: float = 15.0
    keepalive_interval_s: float | None = None
    needs_ack: bool = True

    def __init__(self, url: str, contract_sizes: dict[str, Decimal], parser: Parser, quote: str = "USDT") -> None:
        self._url = url
        self._parser = parser
        self.context = PrivateContext(self.venue, dict(contract_sizes), quote)

    async def url(self) -> str:
        return self._url

    def login_frames(self) -> list[str]:
        return []

    def subscribe_frames(self) -> list[str]:
        return []

    def parse(self, frame: str | bytes, recv_ts: float) -> list[PrivateEvent]:
        return self._parser(frame, recv_ts, self.context)

    async def keepalive(self) -> bool:
        return True

    def key_expired(self) -> None:
        return None

    async def close(self) -> None:
        return None
