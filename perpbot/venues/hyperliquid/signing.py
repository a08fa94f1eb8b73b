"""Hyperliquid action signing on compiled primitives (issue 15: native signing where ccxt is slow).

A byte-for-byte twin of the official SDK's ``hyperliquid/utils/signing.py`` (hyperliquid-python-sdk)
for what perpbot signs, with no I/O and no eth-account / pure-Python crypto:

* keccak-256: pycryptodome (``Crypto.Hash.keccak``, C);
* msgpack: ``msgspec.msgpack`` (C; already a dependency). It packs every value an action holds
  (str, int, bool, list, dict in insertion order) to the same bytes as the ``msgpack`` package the SDK
  uses (smallest int/str/array/map headers); the tests compare both on every vector;
* ECDSA: coincurve (libsecp256k1), RFC 6979 deterministic nonces, low-s, recoverable (v = 27 + recid),
  i.e. the same signature eth-account produces.

L1 actions (orders, cancels, ...): ``action_hash`` = keccak(msgpack(action) + nonce (8 bytes BE) +
(0x00 | 0x01 + 20-byte vault) [+ 0x00 + expires_after (8 bytes BE)]); it becomes the ``connectionId``
of a phantom agent {source: "a" mainnet / "b" testnet}, signed as EIP-712 ``Agent(string source,bytes32
connectionId)`` under domain {name "Exchange", version "1", chainId 1337, verifyingContract 0x0}.
User-signed actions (usdSend, withdraw3, ...) are EIP-712 structs of their own under domain
{name "HyperliquidSignTransaction", version "1", chainId int(signatureChainId), verifyingContract 0x0}.

Signatures are returned as the SDK prints them: ``{"r": hex(r), "s": hex(s), "v": 27|28}``, where
``hex`` drops leading zero nibbles (eth_utils.to_hex of an int), so r or s can be shorter than 64 digits.

Prices and sizes are Decimals and never go through float. ``decimal_to_wire`` is the SDK's
``float_to_wire`` (``f"{x:.8f}"``, then Decimal-normalised: at most 8 decimal *places*, no trailing
zeros, no exponent) done exactly; differences from the SDK, both on inputs the SDK cannot represent:
the SDK silently rounds away a remainder smaller than 1e-12 past the 8th decimal (we raise: nothing is
rounded), and above ~15-16 significant digits the SDK formats the nearest float's digits (we format
the Decimal's own). The SDK prints -0.0 as "-0"; we print "0".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, NotRequired, TypedDict

import msgspec
from coincurve import PrivateKey
from Crypto.Hash import keccak as _keccak

Tif = Literal["Alo", "Ioc", "Gtc"]
_TIFS = frozenset(("Alo", "Ioc", "Gtc"))

MAINNET_SOURCE = "a"
TESTNET_SOURCE = "b"
USER_SIGNED_CHAIN_ID_HEX = "0x66eee"  # what the SDK puts in signatureChainId (421614)
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


class Signature(TypedDict):
    r: str
    s: str
    v: int


class LimitWire(TypedDict):
    tif: Tif


class OrderTypeWire(TypedDict):
    limit: LimitWire


class OrderWire(TypedDict):
    a: int
    b: bool
    p: str
    s: str
    r: bool
    t: OrderTypeWire
    c: NotRequired[str]


class OrderAction(TypedDict):
    type: Literal["order"]
    orders: list[OrderWire]
    grouping: Literal["na"]


# --- primitives -------------------------------------------------------------------------------------

_ENCODER = msgspec.msgpack.Encoder()


def keccak256(data: bytes) -> bytes:
    return _keccak.new(data=data, digest_bits=256).digest()


def msgpack_bytes(action: Any) -> bytes:
    """The action packed as the SDK's ``msgpack.packb(action)`` packs it (keys in insertion order)."""
    return _ENCODER.encode(action)


def load_private_key(key_hex: str) -> PrivateKey:
    """A 32-byte secp256k1 key from its hex form (with or without 0x). Build it once, sign many times."""
    raw = _hex_bytes(key_hex, 32, "private key")
    try:
        return PrivateKey(raw)
    except ValueError as exc:
        raise ValueError(f"invalid secp256k1 private key: {exc}") from None


def address_of(key: PrivateKey) -> str:
    """The key's Ethereum address, lower-case 0x-hex (what the venue calls the user or agent)."""
    return "0x" + keccak256(key.public_key.format(compressed=False)[1:])[-20:].hex()


def sign_digest(key: PrivateKey, digest: bytes) -> Signature:
    """ECDSA over a 32-byte digest, as the SDK's ``sign_inner`` returns it."""
    if len(digest) != 32:
        raise ValueError(f"digest must be 32 bytes, got {len(digest)}")
    sig = key.sign_recoverable(digest, hasher=None)
    return {
        "r": hex(int.from_bytes(sig[:32], "big")),
        "s": hex(int.from_bytes(sig[32:64], "big")),
        "v": 27 + sig[64],
    }


def _hex_bytes(value: str, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string, got {type(value).__name__}")
    text = value[2:] if value[:2] in ("0x", "0X") else value
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} is not hex: {value!r}") from None
    if len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(raw)}: {value!r}")
    return raw


def _uint_bytes(value: int, what: str, bits: int = 64) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be an integer in [0, 2**{bits}), got {value!r}")
    return value.to_bytes(bits // 8, "big")


# --- L1 actions -------------------------------------------------------------------------------------

def action_hash_preimage(action: Any, vault_address: str | None, nonce: int,
                         expires_after: int | None = None) -> bytes:
    """The bytes the SDK's ``action_hash`` feeds to keccak."""
    tail = b"\x00" if vault_address is None else b"\x01" + _hex_bytes(vault_address, 20, "vault address")
    data = msgpack_bytes(action) + _uint_bytes(nonce, "nonce") + tail
    if expires_after is not None:
        data += b"\x00" + _uint_bytes(expires_after, "expires_after")
    return data


def action_hash(action: Any, vault_address: str | None, nonce: int, expires_after: int | None = None) -> bytes:
    """The SDK's ``action_hash``: the 32-byte connection id of the phantom agent."""
    return keccak256(action_hash_preimage(action, vault_address, nonce, expires_after))


def construct_phantom_agent(connection_id: bytes, is_mainnet: bool) -> dict[str, Any]:
    return {"source": MAINNET_SOURCE if is_mainnet else TESTNET_SOURCE, "connectionId": connection_id}


def _type_hash(primary_type: str, fields: tuple[tuple[str, str], ...]) -> bytes:
    return keccak256(f"{primary_type}({','.join(f'{t} {n}' for n, t in fields)})".encode())


@lru_cache(maxsize=16)
def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str = ZERO_ADDRESS) -> bytes:
    """EIP-712 hashStruct(EIP712Domain) for the four-field domain both Hyperliquid schemes use."""
    fields = (("name", "string"), ("version", "string"), ("chainId", "uint256"), ("verifyingContract", "address"))
    return keccak256(_type_hash("EIP712Domain", fields) + keccak256(name.encode()) + keccak256(version.encode())
                     + _uint_bytes(chain_id, "chainId", 256)
                     + b"\x00" * 12 + _hex_bytes(verifying_contract, 20, "verifyingContract"))


_L1_DOMAIN = domain_separator("Exchange", "1", 1337)
_AGENT_TYPE_HASH = _type_hash("Agent", (("source", "string"), ("connectionId", "bytes32")))
_AGENT_PREFIX = {True: _AGENT_TYPE_HASH + keccak256(MAINNET_SOURCE.encode()),
                 False: _AGENT_TYPE_HASH + keccak256(TESTNET_SOURCE.encode())}


def eip712_digest(domain_sep: bytes, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01" + domain_sep + struct_hash)


def l1_digest(connection_id: bytes, is_mainnet: bool) -> bytes:
    """The EIP-712 digest of the phantom agent {source, connectionId} (the SDK's ``l1_payload``)."""
    if len(connection_id) != 32:
        raise ValueError(f"connectionId must be 32 bytes, got {len(connection_id)}")
    return eip712_digest(_L1_DOMAIN, keccak256(_AGENT_PREFIX[bool(is_mainnet)] + connection_id))


def sign_l1_action(key: PrivateKey, action: Mapping[str, Any], vault_address: str | None, nonce: int,
                   expires_after: int | None, is_mainnet: bool) -> Signature:
    """The SDK's ``sign_l1_action`` (same argument order). Refuses an action carrying ``builder``:
    perpbot never attaches a builder (ccxt's order path does, with a fee)."""
    if "builder" in action:
        raise ValueError("refusing to sign an action with a 'builder' field: perpbot sends no builder")
    digest = l1_digest(action_hash(action, vault_address, nonce, expires_after), is_mainnet)
    return sign_digest(key, digest)


# --- user-signed actions ----------------------------------------------------------------------------

def _encode_field(type_: str, value: Any, name: str) -> bytes:
    if type_ == "string":
        if not isinstance(value, str):
            raise ValueError(f"{name}: string field needs a str, got {value!r}")
        return keccak256(value.encode())
    if type_ == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: bool field needs a bool, got {value!r}")
        return (b"\x00" * 31) + (b"\x01" if value else b"\x00")
    if type_ == "address":
        return b"\x00" * 12 + _hex_bytes(value, 20, name)
    if type_ == "bytes32":
        return value if isinstance(value, bytes) and len(value) == 32 else _hex_bytes(value, 32, name)
    if type_.startswith("uint") and type_[4:].isdigit() and int(type_[4:]) in range(8, 257, 8):
        return _uint_bytes(value, name, int(type_[4:])).rjust(32, b"\x00")
    raise ValueError(f"{name}: unsupported EIP-712 field type {type_!r}")


def user_signed_digest(primary_type: str, payload_types: Sequence[Mapping[str, str]],
                       action: Mapping[str, Any]) -> bytes:
    """EIP-712 digest of a user-signed action (the SDK's ``user_signed_payload``): the action must
    already carry ``signatureChainId`` and ``hyperliquidChain`` (see ``prepare_user_signed_action``)."""
    fields = tuple((f["name"], f["type"]) for f in payload_types)
    missing = [n for n, _ in fields if n not in action]
    if missing or "signatureChainId" not in action:
        raise ValueError(f"{primary_type}: action lacks {missing or ['signatureChainId']}")
    struct = _type_hash(primary_type, fields) + b"".join(_encode_field(t, action[n], n) for n, t in fields)
    domain = domain_separator("HyperliquidSignTransaction", "1", int(action["signatureChainId"], 16))
    return eip712_digest(domain, keccak256(struct))


def prepare_user_signed_action(action: Mapping[str, Any], is_mainnet: bool) -> dict[str, Any]:
    """A copy of the action with the two fields the SDK sets before signing (and sends)."""
    return {**action, "signatureChainId": USER_SIGNED_CHAIN_ID_HEX,
            "hyperliquidChain": "Mainnet" if is_mainnet else "Testnet"}


def sign_user_signed_action(key: PrivateKey, action: Mapping[str, Any], payload_types: Sequence[Mapping[str, str]],
                            primary_type: str, is_mainnet: bool) -> tuple[dict[str, Any], Signature]:
    """The SDK's ``sign_user_signed_action`` without mutating the input: returns the action to send
    (with signatureChainId and hyperliquidChain) and its signature."""
    prepared = prepare_user_signed_action(action, is_mainnet)
    return prepared, sign_digest(key, user_signed_digest(primary_type, payload_types, prepared))


USD_SEND_SIGN_TYPES = ({"name": "hyperliquidChain", "type": "string"}, {"name": "destination", "type": "string"},
                       {"name": "amount", "type": "string"}, {"name": "time", "type": "uint64"})
WITHDRAW_SIGN_TYPES = USD_SEND_SIGN_TYPES  # HyperliquidTransaction:Withdraw has the same fields


# --- numbers and the order wire form ----------------------------------------------------------------

def decimal_to_wire(x: Decimal) -> str:
    """The SDK's ``float_to_wire`` on an exact Decimal: at most 8 decimal places (else ValueError),
    plain notation, no trailing zeros, no sign on zero."""
    if not isinstance(x, Decimal):
        raise ValueError(f"wire numbers must be Decimal, got {type(x).__name__}: {x!r}")
    if not x.is_finite():
        raise ValueError(f"wire number must be finite, got {x}")
    sign, digits, exp = x.as_tuple()
    assert isinstance(exp, int)
    coeff = int("".join(map(str, digits)))
    if coeff == 0:
        return "0"
    while exp < 0 and coeff % 10 == 0:
        coeff //= 10
        exp += 1
    if exp < -8:
        raise ValueError(f"{x} has more than 8 decimal places: Hyperliquid's wire form would round it")
    if exp >= 0:
        text = str(coeff) + "0" * exp
    else:
        padded = str(coeff).rjust(1 - exp, "0")
        text = padded[:exp] + "." + padded[exp:]
    return "-" + text if sign else text


def decimal_to_int_for_hashing(x: Decimal, power: int = 8) -> int:
    """The SDK's ``float_to_int(x, power)`` (x * 10**power as an int), exactly: raises unless integral."""
    if not isinstance(x, Decimal) or not x.is_finite():
        raise ValueError(f"need a finite Decimal, got {x!r}")
    scaled = x.scaleb(power)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{x} * 10**{power} is not an integer")
    return int(scaled)


def _check_cloid(cloid: str) -> str:
    """The SDK's Cloid rule ("0x" + 32 hex digits), sent as given."""
    if not isinstance(cloid, str) or not cloid.startswith("0x"):
        raise ValueError(f"cloid must be a 0x-prefixed hex string, got {cloid!r}")
    _hex_bytes(cloid, 16, "cloid")
    return cloid


def order_wire(asset: int, is_buy: bool, price: Decimal, size: Decimal, reduce_only: bool,
               tif: Tif, cloid: str | None = None) -> OrderWire:
    """A limit order in the SDK's ``order_request_to_order_wire`` form (key order a, b, p, s, r, t, c)."""
    if isinstance(asset, bool) or not isinstance(asset, int) or asset < 0:
        raise ValueError(f"asset index must be a non-negative int, got {asset!r}")
    if not isinstance(is_buy, bool) or not isinstance(reduce_only, bool):
        raise ValueError(f"is_buy and reduce_only must be bool, got {is_buy!r}, {reduce_only!r}")
    if tif not in _TIFS:
        raise ValueError(f"tif must be one of {sorted(_TIFS)}, got {tif!r}")
    p, s = decimal_to_wire(price), decimal_to_wire(size)
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    wire: OrderWire = {"a": asset, "b": is_buy, "p": p, "s": s, "r": reduce_only, "t": {"limit": {"tif": tif}}}
    if cloid is not None:
        wire["c"] = _check_cloid(cloid)
    return wire


def order_action(orders: Sequence[OrderWire]) -> OrderAction:
    """``{"type": "order", "orders": [...], "grouping": "na"}``; there is deliberately no builder."""
    if not orders:
        raise ValueError("an order action needs at least one order")
    return {"type": "order", "orders": list(orders), "grouping": "na"}


def sign_order_action(key: PrivateKey, orders: Sequence[OrderWire], nonce: int, is_mainnet: bool,
                      vault_address: str | None = None,
                      expires_after: int | None = None) -> tuple[OrderAction, Signature]:
    """The order action for these wires and its L1 signature."""
    action = order_action(orders)
    return action, sign_l1_action(key, action, vault_address, nonce, expires_after, is_mainnet)
