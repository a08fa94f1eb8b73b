"""Each venue's internal transfer as it goes on the wire: the funding or spot wallet into the futures trading
wallet, the amount in whole cents (never rounded up), nothing else; Hyperliquid's usdClassTransfer signed
exactly as the official SDK signs it; the venues' answers read as accepted or not."""

from __future__ import annotations

import uuid
from decimal import Decimal as D

import pytest

from perpbot.settings import VenueSettings
from perpbot.venues.binance.transfers import BinanceTransfers
from perpbot.venues.bybit.transfers import BybitTransfers
from perpbot.venues.hyperliquid.transfers import USD_CLASS_TRANSFER_SIGN_TYPES, HyperliquidTransfers
from perpbot.venues.okx.transfers import OkxTransfers
from perpbot.venues.registry import transfer_link

SDK_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
TID = "0f8e6a2b4c1d4e7fa9b3c5d7e9f1a2b3"


def test_okx_funding_to_trading_as_ccxt_shapes_it_and_nothing_more():
    call = OkxTransfers().to_trading(D("250.129"), TID)
    assert call.method == "privatePostAssetTransfer"
    assert call.params == {"ccy": "USDT", "amt": "250.12", "type": "0", "from": "6", "to": "18"}


def test_binance_spot_to_usdm_futures():
    call = BinanceTransfers().to_trading(D("99.999"), TID)
    assert call.method == "sapiPostAssetTransfer"
    assert call.params == {"type": "MAIN_UMFUTURE", "asset": "USDT", "amount": "99.99"}


def test_bybit_fund_to_unified_with_our_uuid_as_its_transfer_id():
    call = BybitTransfers().to_trading(D("1000"), TID)
    assert call.method == "privatePostV5AssetTransferInterTransfer"
    assert call.params == {"transferId": str(uuid.UUID(hex=TID)), "coin": "USDT", "amount": "1000.00",
                           "fromAccountType": "FUND", "toAccountType": "UNIFIED"}


@pytest.mark.parametrize("environment, chain", [("mainnet", "Mainnet"), ("testnet", "Testnet")])
def test_hyperliquid_usd_class_transfer_is_signed_as_the_sdk_signs_it(environment, chain):
    sdk = pytest.importorskip("hyperliquid.utils.signing")
    wallet = pytest.importorskip("eth_account").Account.from_key(SDK_KEY)
    link = HyperliquidTransfers(VenueSettings(environment=environment, private_key=SDK_KEY),
                                clock=lambda: 1_700_000_000.0)
    call = link.to_trading(D("12.509"), TID)
    assert call.method == "privatePostExchange"
    action = call.params["action"]
    assert action == {"type": "usdClassTransfer", "amount": "12.5", "toPerp": True, "nonce": 1_700_000_000_000,
                      "signatureChainId": "0x66eee", "hyperliquidChain": chain}
    assert set(call.params) == {"action", "nonce", "signature"}  # no vaultAddress, no builder, nothing else
    assert call.params["nonce"] == action["nonce"]
    unsigned = {"amount": "12.5", "toPerp": True, "nonce": 1_700_000_000_000}
    assert call.params["signature"] == sdk.sign_usd_class_transfer_action(wallet, unsigned, environment == "mainnet")
    assert [f["name"] for f in USD_CLASS_TRANSFER_SIGN_TYPES] == \
        [f["name"] for f in sdk.USD_CLASS_TRANSFER_SIGN_TYPES]
    # Two transfers in one millisecond: the nonce still goes up.
    assert link.to_trading(D("1"), TID).params["nonce"] == 1_700_000_000_001


def test_hyperliquid_needs_its_key_and_says_which_without_echoing_anything():
    with pytest.raises(ValueError, match="private_key"):
        transfer_link("hyperliquid", VenueSettings())


@pytest.mark.parametrize("link, accepted, refused, venue_id", [
    (OkxTransfers(), {"code": "0", "msg": "", "data": [{"transId": "754147", "ccy": "USDT"}]},
     {"code": "58350", "msg": "Insufficient balance", "data": []}, "754147"),
    (BinanceTransfers(), {"tranId": 13526853623}, {"code": -5013, "msg": "insufficient balance"}, "13526853623"),
    (BybitTransfers(), {"retCode": 0, "result": {"transferId": "a-b", "status": "SUCCESS"}},
     {"retCode": 0, "result": {"transferId": "a-b", "status": "FAILED"}}, "a-b"),
    (HyperliquidTransfers(VenueSettings(private_key=SDK_KEY)), {"status": "ok", "response": {"type": "default"}},
     {"status": "err", "response": "Insufficient balance"}, "ok"),
])
def test_answers_read_as_accepted_or_not(link, accepted, refused, venue_id):
    assert link.venue_id(accepted) == venue_id
    with pytest.raises(ValueError, match="not accepted"):
        link.venue_id(refused)
    with pytest.raises(ValueError, match="not accepted"):
        link.venue_id(None)
