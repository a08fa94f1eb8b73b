"""Settings: config.yaml, then PERPBOT_* environment variables, then .env; validated, redactable.

Precedence (highest first): environment variables (`PERPBOT_` prefix, `__` between
nested keys, e.g. PERPBOT_VENUES__OKX__WS_URL), the `.env` file, then config.yaml
(path from --config or PERPBOT_CONFIG), then the built-in defaults. The layers are deep-merged
key by key: a variable or a file key replaces only the key it names, never a whole section, so
PERPBOT_VENUES__OKX__REST_URL alone keeps OKX's default symbols (a list is one value: replaced
whole). Secrets are SecretStr and never printed.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIG = "config.yaml"

# docker-compose's stop_grace_period (deploy/docker-compose.yml): after SIGTERM the container is killed this many
# seconds later, so execution.shutdown_grace_s must stay below it.
STOP_GRACE_PERIOD_S = 30.0

# Default public endpoints per venue and environment. Every one is overridable in config/env.
DEFAULT_URLS: dict[str, dict[str, tuple[str, str]]] = {
    "okx": {
        "mainnet": ("wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com"),
        "testnet": ("wss://wspap.okx.com:8443/ws/v5/public?brokerId=9999", "https://www.okx.com"),
    },
    "binance": {
        "mainnet": ("wss://fstream.binance.com", "https://fapi.binance.com"),
        "testnet": ("wss://stream.binancefuture.com", "https://testnet.binancefuture.com"),
    },
    "bybit": {
        "mainnet": ("wss://stream.bybit.com/v5/public/linear", "https://api.bybit.com"),
        "testnet": ("wss://stream-testnet.bybit.com/v5/public/linear", "https://api-testnet.bybit.com"),
    },
    "hyperliquid": {
        "mainnet": ("wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz"),
        "testnet": ("wss://api.hyperliquid-testnet.xyz/ws", "https://api.hyperliquid-testnet.xyz"),
    },
}

# Loopback paths of the built-in simulator, per venue: (ws path, rest path prefix).
# Private streams: Binance's is its WS base + /ws/<listenKey>; Hyperliquid's is the public socket.
DEFAULT_PRIVATE_WS_URLS: dict[str, dict[str, str]] = {
    "okx": {"mainnet": "wss://ws.okx.com:8443/ws/v5/private",
            "testnet": "wss://wspap.okx.com:8443/ws/v5/private?brokerId=9999"},  # OKX's demo URL, as documented
    "binance": {"mainnet": "wss://fstream.binance.com", "testnet": "wss://stream.binancefuture.com"},
    "bybit": {"mainnet": "wss://stream.bybit.com/v5/private", "testnet": "wss://stream-testnet.bybit.com/v5/private"},
    "hyperliquid": {"mainnet": "wss://api.hyperliquid.xyz/ws", "testnet": "wss://api.hyperliquid-testnet.xyz/ws"},
}
SIM_PRIVATE_PATHS = {"okx": "/ws/v5/private", "binance": "", "bybit": "/v5/private", "hyperliquid": "/ws"}
# Order entry over WebSocket (execution.order_entry "ws"): OKX's private WS `order` op, Bybit's WS trade,
# Binance USD-M's WS API, Hyperliquid's `post` on its /ws.
DEFAULT_ORDER_WS_URLS: dict[str, dict[str, str]] = {
    "okx": {"mainnet": "wss://ws.okx.com:8443/ws/v5/private", "testnet": "wss://wspap.okx.com:8443/ws/v5/private"},
    "binance": {"mainnet": "wss://ws-fapi.binance.com/ws-fapi/v1",
                "testnet": "wss://testnet.binancefuture.com/ws-fapi/v1"},
    "bybit": {"mainnet": "wss://stream.bybit.com/v5/trade", "testnet": "wss://stream-testnet.bybit.com/v5/trade"},
    "hyperliquid": {"mainnet": "wss://api.hyperliquid.xyz/ws", "testnet": "wss://api.hyperliquid-testnet.xyz/ws"},
}
SIM_ORDER_PATHS = {"okx": "/ws/v5/private", "binance": "/ws-fapi/v1", "bybit": "/v5/trade", "hyperliquid": "/ws"}

SIM_PATHS = {
    "okx": ("/ws/v5/public", ""),
    "binance": ("", ""),
    "bybit": ("/v5/public/linear", ""),
    "hyperliquid": ("/ws", ""),
}


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt risk key must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(Exception):
    """A bad configuration value: one line naming key, value and what is allowed."""


class VenueSettings(_Strict):
    enabled: bool = True
    environment: Literal["testnet", "mainnet"] = "testnet"
    ws_url: str | None = None
    rest_url: str | None = None
    private_ws_url: str | None = None  # the private stream's endpoint (a backup endpoint, say)
    order_ws_url: str | None = None  # the order-entry WebSocket's endpoint (execution.order_entry "ws")
    symbols: list[str] = Field(default_factory=list)
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    passphrase: SecretStr | None = None  # OKX
    wallet_address: str | None = None  # Hyperliquid
    private_key: SecretStr | None = None  # Hyperliquid
    # Account setup the preflight checks and sets per symbol (perpbot.execution.preflight); positions are
    # always one-way. leverage None: risk.max_leverage.
    margin_mode: Literal["cross", "isolated"] = "cross"
    leverage: Decimal | None = Field(None, gt=0, le=125)

    @field_validator("ws_url", "private_ws_url")
    @classmethod
    def _ws_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value

    @field_validator("rest_url")
    @classmethod
    def _http_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value


def _venue(symbols: list[str]) -> VenueSettings:
    return VenueSettings(symbols=symbols)


class VenuesSettings(_Strict):
    okx: VenueSettings = Field(default_factory=lambda: _venue(["BTC-USDT-SWAP", "ETH-USDT-SWAP"]))
    hyperliquid: VenueSettings = Field(default_factory=lambda: _venue(["BTC", "ETH"]))
    binance: VenueSettings = Field(default_factory=lambda: _venue(["BTCUSDT", "ETHUSDT"]))
    bybit: VenueSettings = Field(default_factory=lambda: _venue(["BTCUSDT", "ETHUSDT"]))

    def items(self) -> list[tuple[str, VenueSettings]]:
        return [(name, getattr(self, name)) for name in ("okx", "hyperliquid", "binance", "bybit")]

    def enabled(self) -> list[tuple[str, VenueSettings]]:
        return [(n, v) for n, v in self.items() if v.enabled]


class HttpSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    max_body_bytes: int = Field(65536, gt=0)
    request_timeout_s: float = Field(10.0, gt=0)
    # A connection that has not delivered a complete request head for this long is closed:
    # idle keep-alive connections and slow or never-finished headers (slowloris).
    idle_timeout_s: float = Field(15.0, gt=0)
    # The trade token (PERPBOT_API_TOKEN) when none is configured: generated at first start into this
    # file (mode 0600); None = `api_token` next to the journal (journal.path's directory).
    token_file: str | None = None
    # A read-only token (PERPBOT_HTTP__READ_TOKEN): when set, the read routes need it or the trade token.
    read_token: SecretStr | None = None
    # Browser origins (scheme://host[:port]) allowed to send state-changing requests besides the API's own.
    allowed_origins: list[str] = Field(default_factory=list)
    # Host names accepted besides loopback ones when bound to loopback (DNS-rebinding guard).
    allowed_hosts: list[str] = Field(default_factory=list)
    # A retry carrying the same Idempotency-Key within this window gets the first answer back.
    idempotency_window_s: float = Field(600.0, gt=0)
    # close-all and sync answer with their result within this (at most 80 % of request_timeout_s), else
    # 202 with an operation to poll.
    operation_wait_s: float = Field(8.0, gt=0)

    def operation_wait(self) -> float:
        """The wait in force: operation_wait_s, capped well inside the request timeout."""
        return min(self.operation_wait_s, 0.8 * self.request_timeout_s)


class RedisSettings(_Strict):
    url: str | None = None  # e.g. redis://127.0.0.1:6379/0; None = journal only


class JournalSettings(_Strict):
    path: str = "data/journal.sqlite"


class FeedSettings(_Strict):
    watchdog_s: float = Field(30.0, gt=0)
    ping_interval_s: float = Field(15.0, gt=0)
    backoff_initial_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    stale_after_s: float = Field(5.0, gt=0)
    okx_book_channel: Literal["books", "books5"] = "books"
    bybit_depth: Literal[1, 50, 200, 1000] = 50


class SimSettings(_Strict):
    """Built-in venue simulator. When enabled, venue URLs default to its loopback ports."""

    enabled: bool = True
    host: str = "127.0.0.1"
    ports: dict[str, int] = Field(
        default_factory=lambda: {"okx": 18001, "hyperliquid": 18002, "binance": 18003, "bybit": 18004}
    )
    admin_port: int = Field(18000, ge=0, le=65535)
    seed: int = 42
    tick_interval_s: float = Field(0.1, gt=0)
    dislocation_rate: float = Field(0.05, ge=0, le=1)  # per tick per symbol
    dislocation_bps: float = Field(40.0, ge=0)
    funding_divergence: float = Field(0.0003, ge=0)
    okx_checksum_zero: bool = False
    scenario: str | None = None  # path of a fault scenario file
    record_timings: bool = False  # benchmarks: stamp jump frames and order arrivals (perpbot.sim.timings)
    # Venue keepalive rules (venue defaults; tests shorten them).
    okx_idle_timeout_s: float = Field(30.0, gt=0)
    hyperliquid_idle_timeout_s: float = Field(60.0, gt=0)
    bybit_idle_timeout_s: float = Field(600.0, gt=0)
    binance_ping_interval_s: float = Field(180.0, gt=0)

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        if value not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("the simulator binds loopback only (127.0.0.1, ::1, localhost)")
        return value


class RiskSettings(_Strict):
    max_position_size_usdt: Decimal = Field(Decimal("1000"), gt=0)
    max_leverage: Decimal = Field(Decimal("3"), gt=0, le=125)
    max_capital_utilization_percent: Decimal = Field(Decimal("80"), gt=0, le=100)
    max_open_positions: int = Field(10, gt=0)
    min_edge_bps: Decimal = Field(Decimal("5"), ge=0)
    daily_loss_limit_usdt: Decimal = Field(Decimal("200"), gt=0)
    max_orders_per_minute: int = Field(60, gt=0)
    unhedged_budget_usdt_seconds: Decimal = Field(Decimal("5000"), gt=0)
    max_book_age_s: float = Field(2.0, gt=0)
    max_leg_failures: int = Field(3, gt=0)
    # Margin safety per leg (issue 16, perpbot.risk.margin): distances from the mark to the liquidation price
    # the venue states, in % of the mark. No entry that would leave a leg closer than liquidation_entry_min_pct;
    # below liquidation_reduce_pct both legs of the trade are closed together; below liquidation_critical_pct
    # no entry anywhere. maintenance_margin_rate estimates a leg's maintenance margin where the venue has not
    # stated one yet. The margin watch looks every margin_check_interval_s.
    liquidation_entry_min_pct: Decimal = Field(Decimal("20"), gt=0, le=100)
    liquidation_reduce_pct: Decimal = Field(Decimal("10"), gt=0, le=100)
    liquidation_critical_pct: Decimal = Field(Decimal("5"), gt=0, le=100)
    maintenance_margin_rate: Decimal = Field(Decimal("0.005"), ge=0, lt=1)
    # Share of the trade both legs are reduced by at once (below the critical distance: the whole trade).
    liquidation_reduce_fraction: Decimal = Field(Decimal("0.5"), gt=0, le=1)
    margin_check_interval_s: float = Field(0.25, gt=0, le=60)
    # USDT per USDC (perpbot.core.quote_rate): Hyperliquid's USDC prices and amounts against the USDT venues'.
    # as_of: when the rate was taken (epoch s; None: the bot's start). Older than max_age_s: entries pairing
    # USDC with USDT are refused (never 1:1 by default).
    usdc_usdt_rate: Decimal = Field(Decimal("1"), gt=Decimal("0.5"), lt=Decimal("1.5"))
    usdc_usdt_rate_as_of: float | None = None
    usdc_usdt_max_age_s: float = Field(604800.0, gt=0)
    # Collateral across venues (perpbot.portfolio.collateral): the smallest transfer worth suggesting.
    collateral_min_transfer_usdt: Decimal = Field(Decimal("100"), gt=0)
    # Internal transfers (perpbot.execution.transfers): off unless switched on. When on, a venue whose trading
    # wallet is short of its collateral target (by at least collateral_min_transfer_usdt) takes the shortfall,
    # at most internal_transfer_max_usdt at a time and once per internal_transfer_interval_s, from that same
    # venue's funding or spot wallet. Never across venues, never a withdrawal.
    internal_transfers: bool = False
    internal_transfer_max_usdt: Decimal = Field(Decimal("1000"), gt=0)
    internal_transfer_interval_s: float = Field(300.0, ge=1)

    @model_validator(mode="after")
    def _liquidation_thresholds_ordered(self) -> "RiskSettings":
        if not self.liquidation_critical_pct < self.liquidation_reduce_pct < self.liquidation_entry_min_pct:
            raise ValueError(
                "risk: need liquidation_critical_pct < liquidation_reduce_pct < liquidation_entry_min_pct, got "
                f"{self.liquidation_critical_pct} / {self.liquidation_reduce_pct} / {self.liquidation_entry_min_pct}")
        return self


class PriceSpreadSettings(_Strict):
    enabled: bool = True
    order_size_usdt: Decimal = Field(Decimal("200"), gt=0)
    min_edge_bps: Decimal = Field(Decimal("8"), ge=0)
    exit_edge_bps: Decimal = Field(Decimal("0"))
    max_hold_s: float = Field(600.0, gt=0)


class FundingSpreadSettings(_Strict):
    enabled: bool = True
    order_size_usdt: Decimal = Field(Decimal("200"), gt=0)
    entry_hourly_spread: Decimal = Field(Decimal("0.0001"), ge=0)
    exit_hourly_spread: Decimal = Field(Decimal("0.00001"), ge=0)
    horizon_hours: Decimal = Field(Decimal("8"), gt=0)
    max_hold_s: float = Field(28800.0, gt=0)


class StrategiesSettings(_Strict):
    price_spread: PriceSpreadSettings = Field(default_factory=PriceSpreadSettings)
    funding_spread: FundingSpreadSettings = Field(default_factory=FundingSpreadSettings)


class RateBudgetSettings(_Strict):
    """The venues' request limits (perpbot.execution.rate_budget): counted per venue, never slept on in front
    of an order (an order over the budget is refused by the risk gate instead)."""

    enabled: bool = True
    # Share of every window orders use that reads leave free for orders (reads wait, orders never).
    read_headroom_percent: float = Field(20.0, ge=0, lt=100)
    # Orders an entry leaves free on each of its venues for the repairs (hedge, unwind) it may need.
    entry_reserve_orders: int = Field(4, ge=0)
    # A read (or cancel) waits at most this long for room or a Retry-After, then fails as rate limited.
    max_read_wait_s: float = Field(2.0, ge=0, le=60)
    # How long a venue stops after a 429 that carries no Retry-After.
    default_retry_after_s: float = Field(1.0, gt=0, le=600)


class ExecutionSettings(_Strict):
    slippage_bps: Decimal = Field(Decimal("10"), ge=0, le=500)
    # Band of corrective orders (hedge/unwind/flatten), doubled per attempt, capped at 10 %.
    repair_slippage_bps: Decimal = Field(Decimal("25"), ge=0, le=1000)
    order_timeout_s: float = Field(5.0, gt=0)
    max_hedge_retries: int = Field(3, ge=0)
    reconcile_interval_s: float = Field(30.0, gt=0)
    # With every venue's private stream live, the periodic reconciliation is a backstop: this often.
    reconcile_backstop_interval_s: float = Field(120.0, gt=0)
    paper_latency_ms: float = Field(20.0, ge=0)
    # Bound of the graceful stop on SIGTERM; below docker's stop_grace_period, after which the process is killed.
    shutdown_grace_s: float = Field(20.0, gt=0)
    # Private streams (orders, fills, positions, balances, funding pushed by each venue): the
    # source of truth for fills when live; REST is asked only when the stream is down, or when an
    # order's final state has not arrived on it within stream_confirm_timeout_s.
    private_streams: bool = True
    # Where orders go: "ws" = the venue's order-entry WebSocket while it is up (REST when it is not,
    # same client order id), "rest" = always REST (ccxt).
    order_entry: Literal["ws", "rest"] = "ws"
    stream_confirm_timeout_s: float = Field(1.0, gt=0, le=30)
    rate_budget: RateBudgetSettings = Field(default_factory=RateBudgetSettings)

    @field_validator("shutdown_grace_s")
    @classmethod
    def _inside_stop_grace_period(cls, value: float) -> float:
        if not value < STOP_GRACE_PERIOD_S:
            raise ValueError(
                f"must be less than {STOP_GRACE_PERIOD_S:g} (seconds; docker-compose stop_grace_period is "
                f"{STOP_GRACE_PERIOD_S:g}s and kills the bot after it)"
            )
        return value


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` on top, mapping by mapping: only the keys `override` names change (lists replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class _LayeredSource(PydanticBaseSettingsSource):
    """defaults <- init (config file / keyword arguments) <- .env <- environment, deep-merged key by key.

    pydantic would otherwise build a nested section from the keys a higher layer names and fill the rest
    from the *field* defaults, dropping the section's own default (e.g. a venue's symbols became []).
    """

    def __init__(self, settings_cls: type[BaseSettings], *layers: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._layers = layers  # lowest precedence first

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover - unused
        return None, field_name, False

    def _defaults(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            default = field.get_default(call_default_factory=True)
            if isinstance(default, BaseModel):
                data[name] = default.model_dump()
        return data

    def __call__(self) -> dict[str, Any]:
        merged = self._defaults()
        for layer in self._layers:
            merged = _deep_merge(merged, layer())
        return merged


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERPBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
    )

    mode: Literal["sim", "paper", "live"] = "sim"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_dir: str = "logs"
    api_token: SecretStr | None = None
    http: HttpSettings = Field(default_factory=HttpSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    feeds: FeedSettings = Field(default_factory=FeedSettings)
    venues: VenuesSettings = Field(default_factory=VenuesSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    strategies: StrategiesSettings = Field(default_factory=StrategiesSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.mode == "sim" and not self.sim.enabled:
            raise ValueError("mode 'sim' needs sim.enabled: true")
        if self.mode == "live" and self.sim.enabled:
            raise ValueError("mode 'live' needs sim.enabled: false")
        if self.feeds.backoff_max_s < self.feeds.backoff_initial_s:
            raise ValueError("feeds.backoff_max_s must be >= feeds.backoff_initial_s")
        for name, venue in self.venues.enabled():
            if not venue.symbols:
                raise ValueError(
                    f"venues.{name}.symbols is empty but venues.{name}.enabled is true: "
                    f"list at least one symbol or set venues.{name}.enabled: false"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_LayeredSource(settings_cls, init_settings, dotenv_settings, env_settings),)

    # -- derived ------------------------------------------------------------------
    def ws_url(self, venue: str) -> str:
        cfg: VenueSettings = getattr(self.venues, venue)
        if cfg.ws_url:
            return cfg.ws_url
        if self.sim.enabled:
            return f"ws://{self.sim.host}:{self.sim.ports[venue]}{SIM_PATHS[venue][0]}"
        return DEFAULT_URLS[venue][cfg.environment][0]

    def private_ws_url(self, venue: str) -> str:
        cfg: VenueSettings = getattr(self.venues, venue)
        if cfg.private_ws_url:
            return cfg.private_ws_url
        if self.sim.enabled:
            return f"ws://{self.sim.host}:{self.sim.ports[venue]}{SIM_PRIVATE_PATHS[venue]}"
        return DEFAULT_PRIVATE_WS_URLS[venue][cfg.environment]

    def order_ws_url(self, venue: str) -> str:
        cfg: VenueSettings = getattr(self.venues, venue)
        if cfg.order_ws_url:
            return cfg.order_ws_url
        if self.sim.enabled:
            return f"ws://{self.sim.host}:{self.sim.ports[venue]}{SIM_ORDER_PATHS[venue]}"
        return DEFAULT_ORDER_WS_URLS[venue][cfg.environment]

    def rest_url(self, venue: str) -> str:
        cfg: VenueSettings = getattr(self.venues, venue)
        if cfg.rest_url:
            return cfg.rest_url
        if self.sim.enabled:
            return f"http://{self.sim.host}:{self.sim.ports[venue]}{SIM_PATHS[venue][1]}"
        return DEFAULT_URLS[venue][cfg.environment][1]

    def token_file_path(self) -> Path:
        """Where the generated control-API token lives: http.token_file, else `api_token` beside the journal."""
        if self.http.token_file:
            return Path(self.http.token_file)
        return Path(self.journal.path).parent / "api_token"

    def redacted(self) -> dict[str, Any]:
        """The configuration in force, JSON-ready, every secret replaced by '**********'."""
        data = self.model_dump(mode="json")  # SecretStr dumps as '**********'
        for venue, _ in self.venues.items():
            data["venues"][venue]["ws_url"] = self.ws_url(venue)
            data["venues"][venue]["rest_url"] = self.rest_url(venue)
            data["venues"][venue]["private_ws_url"] = self.private_ws_url(venue)
        return data


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    if not err["loc"]:  # a cross-key rule (Settings._consistent): its message names the keys itself
        return f"config error: {err['msg'].removeprefix('Value error, ')}"
    key = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    if isinstance(value, dict):
        value = "{...}"
    if "secret" in key or "key" in key.split(".")[-1] or "token" in key or "passphrase" in key:
        value = "**********"
    return f"config error: {key} = {value!r}: {err['msg']}"


def load_settings(path: str | os.PathLike | None = None) -> Settings:
    """Load and validate; raises ConfigError with a single readable line on a bad value."""
    path = path or os.environ.get("PERPBOT_CONFIG") or DEFAULT_CONFIG
    data: dict[str, Any] = {}
    file = Path(path)
    if file.exists():
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config error: {file} is not valid YAML: {exc}".splitlines()[0]) from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config error: {file} must hold a mapping at top level")
        data = loaded
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"config error: config file {file} does not exist")
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc)) from None
