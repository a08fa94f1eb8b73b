"""The four venues' documented request limits as data, for perpbot.execution.rate_budget.

Figures are the venues' defaults for a regular account (higher tiers get more: the usage headers and a
429 correct the estimate at run time). Sources: Binance USD-M "General Info / Limits" and each
endpoint's "Weight" (ccxt's binance `api` table mirrors them); Bybit v5 "Rate Limit Rules" (per UID per
endpoint, rolling second; 600 requests per 5 s per IP, a 403 "access too frequent" bans the IP for 10
minutes); OKX v5 per-endpoint "Rate Limit" lines (per user, rolling 2 s; new orders also 1000 per 2 s per
sub-account; no usage headers); Hyperliquid "Rate limits and user limits" (1200 weight per minute per IP;
actions weigh 1 + floor(batch / 40); info requests 2 or 20, userRole 60). Hyperliquid's address-based
action allowance (10 000 plus 1 per USDC traded) is not knowable in advance: its 429 is learnt.

Routes are (HTTP method, path) as ccxt calls them; a path not listed falls to the venue's default
endpoint (counted like an ordinary read) so nothing goes uncounted.
"""

from __future__ import annotations

from perpbot.execution.rate_budget import CANCEL, ORDER, BodyRoute, Endpoint, RemainingHeaders, VenueLimits, \
    WindowSpec


def _binance() -> VenueLimits:
    weight, orders_10s, orders_1m = "weight_1m", "orders_10s", "orders_1m"

    def read(name: str, cost: int) -> Endpoint:
        return Endpoint(name, ((weight, cost),))

    endpoints = (
        # New order: 1 on each order count, 0 on the IP weight (Binance USD-M "New Order (TRADE)").
        Endpoint(ORDER, ((orders_10s, 1), (orders_1m, 1), (weight, 0)), kind="order"),
        Endpoint(CANCEL, ((weight, 1),), kind="cancel"),
        read("order_query", 1), read("user_trades", 5), read("open_orders", 1), read("position_risk", 5),
        read("balance", 5), read("account", 5), read("income", 30), read("exchange_info", 1),
        read("premium_index", 1), read("leverage", 1), read("listen_key", 1), read("depth", 10), read("other", 1),
    )
    routes: dict[tuple[str, str], str | BodyRoute] = {
        ("POST", "/fapi/v1/order"): ORDER, ("DELETE", "/fapi/v1/order"): CANCEL,
        ("GET", "/fapi/v1/order"): "order_query", ("GET", "/fapi/v1/userTrades"): "user_trades",
        ("GET", "/fapi/v1/openOrders"): "open_orders",
        ("GET", "/fapi/v2/positionRisk"): "position_risk", ("GET", "/fapi/v3/positionRisk"): "position_risk",
        ("GET", "/fapi/v2/balance"): "balance", ("GET", "/fapi/v3/balance"): "balance",
        ("GET", "/fapi/v2/account"): "account", ("GET", "/fapi/v3/account"): "account",
        ("GET", "/fapi/v1/income"): "income", ("GET", "/fapi/v1/exchangeInfo"): "exchange_info",
        ("GET", "/fapi/v1/premiumIndex"): "premium_index", ("POST", "/fapi/v1/leverage"): "leverage",
        ("POST", "/fapi/v1/listenKey"): "listen_key", ("PUT", "/fapi/v1/listenKey"): "listen_key",
        ("GET", "/fapi/v1/depth"): "depth",
    }
    return VenueLimits(
        venue="binance",
        windows=(
            WindowSpec(weight, 2400, 60.0, aligned=True, used_header="X-MBX-USED-WEIGHT-1m"),
            WindowSpec(orders_10s, 300, 10.0, aligned=True, used_header="X-MBX-ORDER-COUNT-10s"),
            WindowSpec(orders_1m, 1200, 60.0, aligned=True, used_header="X-MBX-ORDER-COUNT-1m"),
        ),
        endpoints=endpoints, routes=routes, default_endpoint="other",
        # 429: back off for Retry-After; 418: the IP is banned (2 minutes up to 3 days) for Retry-After.
        stop_statuses={429: None, 418: 120.0},
        source="developers.binance.com derivatives/usds-margined-futures general-info (limits) + endpoint weights",
    )


def _bybit() -> VenueLimits:
    ip = "ip_5s"

    def per_second(name: str, limit: int, kind: str = "read") -> tuple[WindowSpec, Endpoint]:
        window = WindowSpec(f"{name}_1s", limit, 1.0)
        return window, Endpoint(name, ((window.name, 1), (ip, 1)), kind=kind,  # type: ignore[arg-type]
                                header_window=window.name)

    pairs = [
        per_second(ORDER, 10, "order"), per_second(CANCEL, 10, "cancel"), per_second("order_realtime", 50),
        per_second("order_history", 50), per_second("executions", 50), per_second("positions", 50),
        per_second("wallet_balance", 50), per_second("transaction_log", 30), per_second("leverage", 10),
        per_second("account_info", 50), per_second("fee_rate", 10),
    ]
    windows = (WindowSpec(ip, 600, 5.0),) + tuple(w for w, _ in pairs)
    endpoints = tuple(e for _, e in pairs) + (Endpoint("public", ((ip, 1),)),)
    routes: dict[tuple[str, str], str | BodyRoute] = {
        ("POST", "/v5/order/create"): ORDER, ("POST", "/v5/order/cancel"): CANCEL,
        ("GET", "/v5/order/realtime"): "order_realtime", ("GET", "/v5/order/history"): "order_history",
        ("GET", "/v5/execution/list"): "executions", ("GET", "/v5/position/list"): "positions",
        ("GET", "/v5/account/wallet-balance"): "wallet_balance",
        ("GET", "/v5/account/transaction-log"): "transaction_log",
        ("POST", "/v5/position/set-leverage"): "leverage", ("GET", "/v5/account/info"): "account_info",
        ("GET", "/v5/account/fee-rate"): "fee_rate",
    }
    return VenueLimits(
        venue="bybit", windows=windows, endpoints=endpoints, routes=routes, default_endpoint="public",
        remaining_headers=RemainingHeaders("X-Bapi-Limit-Status", "X-Bapi-Limit", "X-Bapi-Limit-Reset-Timestamp"),
        stop_statuses={429: None, 403: 600.0},
        source="bybit-exchange.github.io/docs/v5/rate-limit",
    )


def _okx() -> VenueLimits:
    def endpoint(name: str, limit: int, period_s: float = 2.0, kind: str = "read",
                 extra: tuple[tuple[str, int], ...] = ()) -> tuple[WindowSpec, Endpoint]:
        window = WindowSpec(f"{name}_{period_s:g}s", limit, period_s)
        return window, Endpoint(name, ((window.name, 1),) + extra, kind=kind)  # type: ignore[arg-type]

    account_orders = WindowSpec("account_orders_2s", 1000, 2.0)
    pairs = [
        # 60 per 2 s per instrument; counted per account here (stricter when several instruments trade).
        endpoint(ORDER, 60, kind="order", extra=((account_orders.name, 1),)),
        endpoint(CANCEL, 60, kind="cancel"), endpoint("order_query", 60), endpoint("orders_pending", 60),
        endpoint("fills", 60), endpoint("fills_history", 10), endpoint("positions", 10), endpoint("balance", 10),
        endpoint("bills", 5, 1.0), endpoint("bills_archive", 5), endpoint("instruments", 20),
        endpoint("account_config", 5), endpoint("leverage", 20), endpoint("public_other", 20),
    ]
    routes: dict[tuple[str, str], str | BodyRoute] = {
        # ccxt places one order as a one-order batch: OKX counts it against "Place order" (60 per 2 s).
        ("POST", "/api/v5/trade/order"): ORDER, ("POST", "/api/v5/trade/batch-orders"): ORDER,
        ("POST", "/api/v5/trade/cancel-order"): CANCEL,
        ("GET", "/api/v5/trade/order"): "order_query", ("GET", "/api/v5/trade/orders-pending"): "orders_pending",
        ("GET", "/api/v5/trade/fills"): "fills", ("GET", "/api/v5/trade/fills-history"): "fills_history",
        ("GET", "/api/v5/account/positions"): "positions", ("GET", "/api/v5/account/balance"): "balance",
        ("GET", "/api/v5/account/bills"): "bills", ("GET", "/api/v5/account/bills-archive"): "bills_archive",
        ("GET", "/api/v5/public/instruments"): "instruments", ("GET", "/api/v5/account/config"): "account_config",
        ("POST", "/api/v5/account/set-leverage"): "leverage",
    }
    return VenueLimits(
        venue="okx", windows=(account_orders,) + tuple(w for w, _ in pairs),
        endpoints=tuple(e for _, e in pairs), routes=routes, default_endpoint="public_other",
        # OKX's 50011 / HTTP 429 carries no Retry-After: its windows are 2 s long.
        stop_statuses={429: 2.0}, source="okx.com/docs-v5 per-endpoint Rate Limit lines",
    )


def _hyperliquid() -> VenueLimits:
    weight = "weight_1m"
    info_types = {kind: "info_light" for kind in (
        "l2Book", "allMids", "clearinghouseState", "orderStatus", "spotClearinghouseState", "exchangeStatus")}
    info_types["userRole"] = "info_user_role"
    actions = {"order": ORDER, "cancel": CANCEL, "cancelByCloid": CANCEL}
    return VenueLimits(
        venue="hyperliquid",
        windows=(WindowSpec(weight, 1200, 60.0),),
        endpoints=(
            Endpoint(ORDER, ((weight, 1),), kind="order"), Endpoint(CANCEL, ((weight, 1),), kind="cancel"),
            Endpoint("action", ((weight, 1),)), Endpoint("info_light", ((weight, 2),)),
            Endpoint("info", ((weight, 20),)), Endpoint("info_user_role", ((weight, 60),)),
        ),
        routes={
            ("POST", "/info"): BodyRoute(("type",), info_types, "info"),
            ("POST", "/exchange"): BodyRoute(("action", "type"), actions, "action"),
        },
        default_endpoint="info",
        # No Retry-After on Hyperliquid's answers: an address over its allowance gets one request per 10 s.
        stop_statuses={429: 10.0, 418: 10.0},
        order_stops_reads=False,  # the address limits count actions only; info requests go on
        source="hyperliquid.gitbook.io api/rate-limits-and-user-limits",
    )


def venue_limits() -> dict[str, VenueLimits]:
    """Every venue's limits, by venue name."""
    return {limits.venue: limits for limits in (_binance(), _bybit(), _okx(), _hyperliquid())}
