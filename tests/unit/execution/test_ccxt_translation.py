"""ccxt exceptions -> perpbot errors; every ccxt URL re-pointed; hidden ccxt defaults switched off."""

import ccxt
import pytest

from perpbot.core import errors
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.ccxt_errors import point_urls, translate
from perpbot.settings import VenueSettings

CASES = [
    (ccxt.InsufficientFunds("x"), True, errors.InsufficientFunds),
    (ccxt.InvalidOrder("x"), True, errors.OrderRejected),
    (ccxt.OrderNotFound("x"), False, errors.OrderNotFound),
    (ccxt.RateLimitExceeded("x"), True, errors.RateLimited),
    (ccxt.OnMaintenance("x"), True, errors.TemporaryError),
    (ccxt.RequestTimeout("x"), True, errors.UnknownOutcome),
    (ccxt.NetworkError("x"), True, errors.UnknownOutcome),
    (ccxt.ExchangeNotAvailable("x"), True, errors.UnknownOutcome),
    (ccxt.RequestTimeout("x"), False, errors.TemporaryError),
    (ccxt.ExchangeError("x"), False, errors.TemporaryError),
    (ccxt.OperationFailed('{"code":-2019,"msg":"Margin is insufficient."}'), True, errors.InsufficientFunds),
]


@pytest.mark.parametrize("exc,placing,expected", CASES, ids=[f"{type(c[0]).__name__}-{c[1]}" for c in CASES])
def test_ccxt_exception_translation_table(exc, placing, expected):
    assert type(translate("binance", exc, placing, funds_markers=("-2019",))) is expected


def test_translated_messages_drop_signed_queries_and_secrets():
    exc = ccxt.RequestTimeout("GET https://x/fapi/v1/order?symbol=BTCUSDT&signature=abc123 key=topsecret")
    error = translate("binance", exc, True, secrets=("topsecret",))
    assert "abc123" not in error.message and "topsecret" not in error.message


def test_every_nested_url_is_rebased_with_its_path_kept():
    urls = {"rest": "https://{hostname}", "fapi": "https://fapi.binance.com/fapi/v1", "n": {"x": "https://a/b"}}
    assert point_urls(urls, "http://127.0.0.1:9/") == {
        "rest": "http://127.0.0.1:9", "fapi": "http://127.0.0.1:9/fapi/v1", "n": {"x": "http://127.0.0.1:9/b"}}


async def test_clients_carry_no_broker_ids_or_builder_fees_and_hide_secrets():
    settings = VenueSettings(api_key="k-123", api_secret="s-456", passphrase="p-789",
                             wallet_address="0x7e5f4552091a69125d5dfcb7b8c2659029395bdf", private_key="0x" + "0" * 63 + "1")
    for venue in ("okx", "binance", "bybit", "hyperliquid"):
        client = CcxtClient(venue, settings, "http://127.0.0.1:9", timeout_s=2.5)
        try:
            options = client.exchange.options
            assert client.exchange.timeout == 2500
            assert all(u.startswith("http://127.0.0.1:9") for u in _flat(client.exchange.urls["api"]))
            assert "s-456" not in repr(client)
            if venue == "okx":
                assert options["brokerId"] is None
            if venue == "binance":
                assert options["broker"] == {}
            if venue == "bybit":
                assert options["brokerId"] == ""
                # ccxt falls back to 'CCXT' for an empty brokerId and sends it as Referer on every POST.
                signed = client.exchange.sign("v5/order/create", ["private"], "POST", {"category": "linear"})
                assert "Referer" not in signed["headers"] and "X-BAPI-SIGN" in signed["headers"]
            if venue == "hyperliquid":
                # No builder on orders (ccxt attaches one whenever approvedBuilderFee is True) and no
                # approval or referrer call signed on the first private request.
                assert options["approvedBuilderFee"] is False and options["refSet"] and options["builderFee"] is False
                approvals = []

                async def approve(*args):
                    approvals.append(args)

                client.exchange.approve_builder_fee = approve
                assert await client.exchange.handle_builder_fee_approval() is True and approvals == []
        finally:
            await client.close()


def _flat(urls):
    for value in urls.values():
        yield from (_flat(value) if isinstance(value, dict) else [value])
