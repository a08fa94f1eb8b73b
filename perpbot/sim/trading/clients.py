"""ccxt client settings that point a real ccxt class at a simulated venue and nowhere else."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import urlsplit

CCXT_CLASSES = {"okx": "okx", "binance": "binanceusdm", "bybit": "bybit", "hyperliquid": "hyperliquid"}

# A throwaway secp256k1 key (value 1) and its address: the simulator accepts any signature.
SIM_PRIVATE_KEY = "0x" + "0" * 63 + "1"
SIM_WALLET = "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"

# Options that keep each ccxt class on the endpoints the simulator serves (no spot/option/sapi markets,
# no currency or referral/builder-fee side calls to other hosts).
VENUE_OPTIONS: dict[str, dict[str, Any]] = {
    "okx": {"fetchMarkets": {"types": ["swap"]}, "defaultType": "swap"},
    "binance": {"fetchMarkets": {"types": ["linear"]}, "fetchCurrencies": False, "defaultType": "swap",
                "warnOnFetchOpenOrdersWithoutSymbol": False},
    "bybit": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap", "enableUnifiedAccount": True,
              "enableUnifiedMargin": False, "fetchOrder": {"acknowledged": True}},
    "hyperliquid": {"approvedBuilderFee": False, "refSet": True, "builderFee": False, "defaultType": "swap",
                    "fetchMarkets": {"types": ["swap"]}},
}


def rebase_urls(api_urls: Any, base_url: str) -> Any:
    """Replace scheme and host of every URL in ccxt's urls['api'] with `base_url`, keeping the paths."""
    base = base_url.rstrip("/")
    if isinstance(api_urls, str):
        parts = urlsplit(api_urls.replace("{hostname}", "sim.invalid"))
        return base + parts.path.rstrip("/")
    if isinstance(api_urls, dict):
        return {key: rebase_urls(value, base) for key, value in api_urls.items()}
    return api_urls


def ccxt_config(venue: str, base_url: str, template_urls: dict[str, Any]) -> dict[str, Any]:
    """Constructor config for the venue's ccxt class; `template_urls` is that class's describe()['urls']."""
    urls = copy.deepcopy(template_urls)
    urls["api"] = rebase_urls(urls["api"], base_url)
    config: dict[str, Any] = {"urls": urls, "options": dict(VENUE_OPTIONS[venue]), "enableRateLimit": False}
    if venue == "hyperliquid":
        config.update(walletAddress=SIM_WALLET, privateKey=SIM_PRIVATE_KEY)
    else:
        config.update(apiKey="sim-key", secret="sim-secret")
        if venue == "okx":
            config["password"] = "sim-pass"
    return config


def make_ccxt_client(venue: str, base_url: str, **overrides: Any) -> Any:
    """An async ccxt client of the real class for `venue`, talking only to the simulator at `base_url`."""
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

    cls = getattr(ccxt_async, CCXT_CLASSES[venue])
    config = ccxt_config(venue, base_url, cls().describe()["urls"])
    config.update(overrides)
    client = cls(config)
    if venue == "binance":
        merge_linear_error_table(client)
    if venue == "hyperliquid":
        # As the bot's client does (perpbot.venues.hyperliquid.orders.no_builder): with
        # approvedBuilderFee True ccxt names its own builder on every order, which the venue (and
        # this simulator) refuse for a wallet that never approved it; with it False ccxt would sign an
        # approval first. Neither goes on the wire: the approval step answers "done" and sends nothing.
        async def approval_skipped() -> bool:
            return True

        client.handle_builder_fee_approval = approval_skipped
    return client


def merge_linear_error_table(client: Any) -> None:
    """ccxt picks Binance's USD-M error table by hostname (fapi.binance.com); on any other base URL (a backup
    endpoint, this simulator) -2019 margin or -2022 reduce-only errors fall back to a bare ExchangeError.
    Merging the linear table into the generic one restores the mapping the real host gets."""
    linear = client.exceptions.get("linear", {})
    for kind in ("exact", "broad"):
        client.exceptions[kind] = {**client.exceptions.get(kind, {}), **linear.get(kind, {})}
