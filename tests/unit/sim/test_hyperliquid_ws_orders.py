"""The simulated Hyperliquid order entry authenticates as the venue does: the signer recovered from
every L1 vector of the official SDK is the SDK's wallet, on the vector's network only; a signature
that is missing, malformed or for other bytes names no one or someone else."""

from __future__ import annotations

import json

import pytest

from perpbot.sim.private.hyperliquid_orders import signer_of


@pytest.fixture(scope="module")
def vectors(shared_fixtures) -> dict:
    return json.loads((shared_fixtures / "hyperliquid" / "sdk_signing_vectors.json").read_text())


def payloads(vectors) -> list[tuple[str, dict, bool]]:
    out = []
    for v in vectors["vectors"]:
        if v["signing_scheme"] != "l1_action" or v["expires_after"] is not None:
            continue
        for network, signature in v["expected"].items():
            if network in ("mainnet", "testnet"):
                payload = {"action": v["action"], "nonce": v["nonce"], "signature": signature,
                           "vaultAddress": v["vault_address"]}
                out.append((v["name"], payload, network == "mainnet"))
    return out


def test_every_sdk_signature_recovers_to_the_sdk_wallet_on_its_own_network_only(vectors):
    wallet = vectors["wallet"]["address_derived_by_collector"].lower()
    cases = payloads(vectors)
    assert len(cases) >= 15
    for name, payload, mainnet in cases:
        assert signer_of(payload, mainnet) == wallet, name
        assert signer_of(payload, not mainnet) != wallet, name


def test_a_signature_over_other_bytes_names_someone_else(vectors):
    wallet = vectors["wallet"]["address_derived_by_collector"].lower()
    name, payload, mainnet = payloads(vectors)[0]
    tampered = {**payload, "nonce": payload["nonce"] + 1}
    assert signer_of(tampered, mainnet) not in (None, wallet)


@pytest.mark.parametrize("signature", [None, {}, {"r": "0x1", "s": "0x1"}, {"r": "zz", "s": "0x1", "v": 27},
                                       {"r": "0x1", "s": "0x1", "v": 29}, "0xabc"])
def test_a_missing_or_malformed_signature_names_no_one(vectors, signature):
    _name, payload, mainnet = payloads(vectors)[0]
    assert signer_of({**payload, "signature": signature}, mainnet) is None
