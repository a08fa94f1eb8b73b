"""The crash rig's private-stream relay recognises a pushed fill on each relayed venue's wire (the
`fill_pushed` kill point fires on it) and nothing else."""

from __future__ import annotations

import json

from perpbot.reliability.relay import PushedFill, fills_in


def test_fill_frames_of_okx_bybit_and_binance_are_recognised_with_trade_and_client_ids():
    okx = {"arg": {"channel": "orders", "instType": "SWAP"},
           "data": [{"clOrdId": "pbA", "tradeId": "17", "fillSz": "0.3", "state": "filled"}]}
    assert fills_in("okx", json.dumps(okx)) == [PushedFill("okx", "pbA", "17")]
    bybit = {"topic": "execution", "data": [{"orderLinkId": "pbB", "execId": "e-1", "execQty": "0.003"}]}
    assert fills_in("bybit", json.dumps(bybit)) == [PushedFill("bybit", "pbB", "e-1")]
    lite = {"e": "TRADE_LITE", "c": "pbC", "t": 9, "l": "0.002"}
    assert fills_in("binance", json.dumps(lite)) == [PushedFill("binance", "pbC", "9")]
    update = {"e": "ORDER_TRADE_UPDATE", "o": {"x": "TRADE", "c": "pbC", "t": 9}}
    assert fills_in("binance", json.dumps(update)) == [PushedFill("binance", "pbC", "9")]


def test_order_states_acks_and_garbage_are_not_fills():
    working = {"arg": {"channel": "orders"}, "data": [{"clOrdId": "pbA", "tradeId": "", "fillSz": "0"}]}
    assert fills_in("okx", json.dumps(working)) == []
    assert fills_in("bybit", json.dumps({"topic": "order", "data": [{"orderLinkId": "pbB"}]})) == []
    assert fills_in("binance", json.dumps({"e": "ORDER_TRADE_UPDATE", "o": {"x": "NEW", "c": "pbC"}})) == []
    assert fills_in("okx", '{"event": "login", "code": "0"}') == []
    assert fills_in("bybit", "pong") == []
    assert fills_in("binance", "[1, 2]") == []
