"""Hyperliquid native signing (perpbot.venues.hyperliquid.signing): every vector of
../shared/fixtures/hyperliquid/sdk_signing_vectors.json (the official SDK's tests/signing_test.py)
reproduced exactly (hashed bytes, action hash / connection id, r, s, v on each network, the
user-signed usdSend / withdraw), the SDK's order wire examples built from Decimals, the SDK's own
functions agreeing where the vectors stop (expiresAfter, vault + expiry, number formatting), no
``builder`` ever, and bad inputs refused with a ValueError."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpbot.venues.hyperliquid import signing as S

VECTORS_FILE = "sdk_signing_vectors.json"


@pytest.fixture(scope="module")
def vectors(shared_fixtures) -> dict:
    return json.loads((shared_fixtures / "hyperliquid" / VECTORS_FILE).read_text())


@pytest.fixture(scope="module")
def key(vectors):
    return S.load_private_key(vectors["wallet"]["private_key"])


def _l1(vectors) -> list[dict]:
    return [v for v in vectors["vectors"] if v["signing_scheme"] == "l1_action"]


def _cases(vectors, scheme: str) -> list[tuple[dict, bool]]:
    return [(v, net) for v in vectors["vectors"] if v["signing_scheme"] == scheme for net in v["is_mainnet"]]


def test_fixture_inventory(vectors):
    names = [v["name"] for v in vectors["vectors"]]
    assert len(names) == vectors["vector_count"] == 12
    assert {v["signing_scheme"] for v in vectors["vectors"]} == {"l1_action", "user_signed_action"}
    expectations = sum(len(v["expected"]) if "connection_id_hex" not in v["expected"] else 1
                       for v in vectors["vectors"])
    assert expectations == 21  # the README: "checked against all 21 expectations"


def test_every_vector_key_is_the_wallet(vectors, key):
    assert {v["private_key"] for v in vectors["vectors"]} == {vectors["wallet"]["private_key"]}
    assert S.address_of(key) == vectors["wallet"]["address_derived_by_collector"].lower()


def test_l1_hashed_bytes_and_action_hash(vectors):
    for v in _l1(vectors):
        derived = v["derived_by_collector"]
        pre = S.action_hash_preimage(v["action"], v["vault_address"], v["nonce"], v["expires_after"])
        assert pre.hex() == derived["hashed_bytes_hex"], v["name"]
        assert "0x" + S.action_hash(v["action"], v["vault_address"], v["nonce"], v["expires_after"]).hex() \
            == derived["action_hash_keccak_hex"], v["name"]


def test_msgspec_packs_like_the_msgpack_package(vectors):
    msgpack = pytest.importorskip("msgpack")
    for v in _l1(vectors):
        assert S.msgpack_bytes(v["action"]) == msgpack.packb(v["action"]), v["name"]
    edge = {"i": [0, 127, 128, 255, 256, 65535, 65536, 2**32, 2**64 - 1, -1, -33, -2**63],
            "s": ["", "x" * 31, "x" * 32, "x" * 256, "é" * 40], "b": [True, False], "l": [[1] * 16, {}]}
    assert S.msgpack_bytes(edge) == msgpack.packb(edge)


def test_phantom_agent_connection_id(vectors):
    (v,) = [v for v in vectors["vectors"] if "connection_id_hex" in v["expected"]]
    h = S.action_hash(v["action"], v["vault_address"], v["nonce"], v["expires_after"])
    agent = S.construct_phantom_agent(h, True)
    assert agent == {"source": "a", "connectionId": h}
    assert "0x" + agent["connectionId"].hex() == v["expected"]["connection_id_hex"]
    assert S.construct_phantom_agent(h, False)["source"] == "b"


@pytest.mark.parametrize("net", [True, False], ids=["mainnet", "testnet"])
def test_l1_signatures(vectors, key, net):
    checked = 0
    for v, is_mainnet in _cases(vectors, "l1_action"):
        if is_mainnet != net or "connection_id_hex" in v["expected"]:
            continue
        sig = S.sign_l1_action(key, v["action"], v["vault_address"], v["nonce"], v["expires_after"], net)
        assert sig == v["expected"]["mainnet" if net else "testnet"], v["name"]
        checked += 1
    assert checked == 9


def test_user_signed_actions(vectors, key):
    cases = _cases(vectors, "user_signed_action")
    assert {v["name"] for v, _ in cases} == {"usd_send", "withdraw_from_bridge"}
    for v, net in cases:
        assert v["eip712_domain"]["chainId"] == int(S.USER_SIGNED_CHAIN_ID_HEX, 16)
        given_action = dict(v["action_as_passed_to_signer"])
        sent, sig = S.sign_user_signed_action(key, given_action, v["eip712_types"], v["primary_type"], net)
        assert given_action == v["action_as_passed_to_signer"]  # not mutated (the SDK mutates)
        assert sent == {**given_action, **v["fields_added_by_sdk_before_signing"]}
        assert sig == v["expected"]["mainnet" if net else "testnet"], v["name"]
    assert [dict(f) for f in S.USD_SEND_SIGN_TYPES] == cases[0][0]["eip712_types"]
    assert S.WITHDRAW_SIGN_TYPES == S.USD_SEND_SIGN_TYPES


def test_float_to_int_for_hashing_vectors(vectors):
    for case in vectors["float_to_int_for_hashing_vectors"]["cases"]:
        x = Decimal(str(case["input"]))
        if case["expected"] == "raises ValueError":
            with pytest.raises(ValueError):
                S.decimal_to_int_for_hashing(x)
        else:
            assert S.decimal_to_int_for_hashing(x) == case["expected"]
    assert S.decimal_to_int_for_hashing(Decimal(1000)) == 100000000000  # the dummy action's num


# --- the SDK where the vectors stop -----------------------------------------------------------------

@pytest.fixture(scope="module")
def sdk():
    return pytest.importorskip("hyperliquid.utils.signing")


@pytest.fixture(scope="module")
def sdk_wallet(vectors):
    account = pytest.importorskip("eth_account")
    return account.Account.from_key(vectors["wallet"]["private_key"])


@pytest.mark.parametrize(("vault", "expires"), [
    (None, 1_700_000_060_000), ("0x1719884eb866cb12b2287399b15f7db5e7d775ea", 1_700_000_060_000),
    ("0x1719884eb866cb12b2287399b15f7db5e7d775ea", None), (None, None)])
@pytest.mark.parametrize("net", [True, False])
def test_expires_after_and_vault_against_the_sdk(vectors, key, sdk, sdk_wallet, vault, expires, net):
    for v in _l1(vectors):
        nonce = 1_700_000_000_000
        assert S.action_hash(v["action"], vault, nonce, expires) == sdk.action_hash(v["action"], vault, nonce, expires)
        assert S.sign_l1_action(key, v["action"], vault, nonce, expires, net) == \
            sdk.sign_l1_action(sdk_wallet, v["action"], vault, nonce, expires, net)


def test_l1_digest_is_eth_accounts_eip712_hash(sdk):
    messages = pytest.importorskip("eth_account.messages")
    cid = bytes(range(32))
    for net in (True, False):
        signable = messages.encode_typed_data(full_message=sdk.l1_payload(sdk.construct_phantom_agent(cid, net)))
        assert S.l1_digest(cid, net) == S.keccak256(b"\x19" + signable.version + signable.header + signable.body)


def test_other_user_signed_types_against_the_sdk(key, sdk, sdk_wallet):
    action = {"amount": "12.5", "toPerp": True, "nonce": 1_700_000_000_000}
    for net in (True, False):
        _, ours = S.sign_user_signed_action(key, action, sdk.USD_CLASS_TRANSFER_SIGN_TYPES,
                                            "HyperliquidTransaction:UsdClassTransfer", net)
        assert ours == sdk.sign_usd_class_transfer_action(sdk_wallet, dict(action), net)
    agent = {"agentAddress": "0x5e9ee1089755c3435139848e47e6635505d5a13a", "agentName": "perpbot", "nonce": 7}
    _, ours = S.sign_user_signed_action(key, agent, [{"name": "hyperliquidChain", "type": "string"},
                                                     {"name": "agentAddress", "type": "address"},
                                                     {"name": "agentName", "type": "string"},
                                                     {"name": "nonce", "type": "uint64"}],
                                        "HyperliquidTransaction:ApproveAgent", True)
    assert ours == sdk.sign_agent(sdk_wallet, dict(agent), True)


# --- order wire form --------------------------------------------------------------------------------

def test_order_wires_of_the_sdk_examples(vectors, key):
    by_name = {v["name"]: v for v in vectors["vectors"]}
    cloid = "0x00000000000000000000000000000001"
    built = {
        "phantom_agent_ioc_order": S.order_wire(4, True, Decimal("1670.1"), Decimal("0.0147"), False, "Ioc"),
        "order_gtc": S.order_wire(1, True, Decimal("100"), Decimal("100"), False, "Gtc"),
        "order_gtc_with_cloid": S.order_wire(1, True, Decimal("100"), Decimal("100"), False, "Gtc", cloid),
    }
    for name, wire in built.items():
        v = by_name[name]
        action = S.order_action([wire])
        assert action == v["action"]
        assert list(action) == list(v["action"]) and list(wire) == list(v["action"]["orders"][0])  # key order
        assert S.msgpack_bytes(action).hex() == v["derived_by_collector"]["hashed_bytes_hex"][:-18]
        for net in v["is_mainnet"]:
            sent, sig = S.sign_order_action(key, [wire], v["nonce"], net)
            assert sent == v["action"]
            if "connection_id_hex" not in v["expected"]:
                assert sig == v["expected"]["mainnet" if net else "testnet"]
    assert S.decimal_to_wire(Decimal(103)) == by_name["trigger_sl_market_order"]["action"]["orders"][0]["t"][
        "trigger"]["triggerPx"]


@pytest.mark.parametrize(("text", "wire"), [
    ("100", "100"), ("1E+2", "100"), ("100.00000000", "100"), ("1670.1", "1670.1"), ("1670.10000000", "1670.1"),
    ("0.0147", "0.0147"), ("0.00000001", "0.00000001"), ("0.000000010", "0.00000001"), ("0", "0"), ("-0", "0"),
    ("-0.000", "0"), ("0E-12", "0"), ("-1.5", "-1.5"), ("123456789012345678901234567890.5",
                                                        "123456789012345678901234567890.5"),
    ("1.2300E-5", "0.0000123"), ("12.34567891000", "12.34567891")])
def test_decimal_to_wire_table(text, wire):
    assert S.decimal_to_wire(Decimal(text)) == wire


@given(st.decimals(min_value=Decimal("-1e7"), max_value=Decimal("1e7"), places=8, allow_nan=False,
                   allow_infinity=False))
def test_decimal_to_wire_equals_the_sdks_float_to_wire(x):
    sdk = pytest.importorskip("hyperliquid.utils.signing")
    expected = sdk.float_to_wire(float(x))
    assert S.decimal_to_wire(x) == ("0" if expected == "-0" else expected)


def test_no_builder_ever(vectors, key, shared_fixtures):
    action = S.order_action([S.order_wire(0, False, Decimal("50000"), Decimal("0.001"), True, "Ioc")])
    assert set(action) == {"type", "orders", "grouping"}
    with pytest.raises(TypeError):
        S.order_action([], builder={"b": "0x0", "f": 10})  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        S.sign_order_action(key, action["orders"], 1, True, builder={"b": "0x0", "f": 10})  # type: ignore[call-arg]
    with_builder = {**action, "builder": {"b": "0x6530512a6c89c7cfcebc3ba7fcd9ada5f30827a6", "f": 10}}
    with pytest.raises(ValueError, match="builder"):
        S.sign_l1_action(key, with_builder, None, 1, None, True)
    # ccxt's recorded order requests all carry its builder: our signer refuses every one of them
    requests = json.loads((shared_fixtures / "hyperliquid" / "ccxt_rest_requests.json").read_text())
    found = [a for a in _actions(requests) if a.get("type") == "order" and "builder" in a]
    assert found
    for a in found:
        with pytest.raises(ValueError, match="builder"):
            S.sign_l1_action(key, a, None, 1, None, True)


def _actions(node) -> list[dict]:
    if isinstance(node, dict):
        own = [node["action"]] if isinstance(node.get("action"), dict) else []
        return own + [a for value in node.values() for a in _actions(value)]
    if isinstance(node, list):
        return [a for value in node for a in _actions(value)]
    if isinstance(node, str) and node.startswith("{"):
        try:
            return _actions(json.loads(node))
        except ValueError:
            return []
    return []


# --- bad inputs -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "match"), [
    ({"price": Decimal("NaN")}, "finite"), ({"price": Decimal("Infinity")}, "finite"),
    ({"price": Decimal("-Infinity")}, "finite"), ({"price": Decimal("sNaN")}, "finite"),
    ({"size": Decimal("-0.1")}, "size must be positive"), ({"size": Decimal("0")}, "size must be positive"),
    ({"price": Decimal("-5")}, "price must be positive"), ({"price": Decimal("0")}, "price must be positive"),
    ({"price": 100.5}, "Decimal"), ({"size": "1"}, "Decimal"),
    ({"price": Decimal("1.000000001")}, "8 decimal places"), ({"tif": "Fok"}, "tif"),
    ({"asset": -1}, "asset"), ({"asset": True}, "asset"), ({"asset": 1.0}, "asset"),
    ({"is_buy": 1}, "bool"), ({"reduce_only": None}, "bool"),
    ({"cloid": "0x1"}, "cloid"), ({"cloid": "00000000000000000000000000000001"}, "cloid"),
    ({"cloid": "0x0000000000000000000000000000000g"}, "cloid"), ({"cloid": 1}, "cloid"),
])
def test_bad_order_inputs_raise_value_error(kwargs, match):
    args = {"asset": 1, "is_buy": True, "price": Decimal("100"), "size": Decimal("1"), "reduce_only": False,
            "tif": "Gtc", **kwargs}
    with pytest.raises(ValueError, match=match):
        S.order_wire(**args)


def test_bad_signing_inputs_raise_value_error(key):
    action = S.order_action([S.order_wire(1, True, Decimal("100"), Decimal("1"), False, "Gtc")])
    for vault, nonce, expires in [("0x1234", 1, None), ("zz" * 20, 1, None), (None, -1, None), (None, 2**64, None),
                                  (None, True, None), (None, 1, -5)]:
        with pytest.raises(ValueError):
            S.sign_l1_action(key, action, vault, nonce, expires, True)
    with pytest.raises(ValueError):
        S.order_action([])
    with pytest.raises(ValueError):
        S.load_private_key("0x1234")
    with pytest.raises(ValueError):
        S.load_private_key("0x" + "0" * 64)  # zero is not a key
    with pytest.raises(ValueError):
        S.sign_digest(key, b"short")
    with pytest.raises(ValueError):
        S.user_signed_digest("HyperliquidTransaction:UsdSend", S.USD_SEND_SIGN_TYPES, {"amount": "1"})
    with pytest.raises(ValueError, match="unsupported"):
        S.sign_user_signed_action(key, {"x": 1.5}, [{"name": "x", "type": "float"}], "T", True)
    with pytest.raises(ValueError):
        S.decimal_to_int_for_hashing(Decimal("Infinity"))


def test_signatures_are_deterministic_low_s_and_recoverable(key):
    coincurve = pytest.importorskip("coincurve")
    half_order = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141 // 2
    action = S.order_action([S.order_wire(3, False, Decimal("2500.5"), Decimal("0.25"), True, "Ioc",
                                          "0x" + "ab" * 16)])
    for nonce in range(1_700_000_000_000, 1_700_000_000_020):
        sig = S.sign_l1_action(key, action, None, nonce, None, True)
        assert sig == S.sign_l1_action(key, action, None, nonce, None, True)
        r, s = int(sig["r"], 16), int(sig["s"], 16)
        assert s <= half_order and sig["v"] in (27, 28)
        digest = S.l1_digest(S.action_hash(action, None, nonce), True)
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([sig["v"] - 27])
        recovered = coincurve.PublicKey.from_signature_and_message(raw, digest, hasher=None)
        assert recovered.format() == key.public_key.format()
