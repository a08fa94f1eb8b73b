"""The control API's pure admission rules (perpbot.control.auth): Host, Origin, Content-Type, the
Authorization header, the token file and the constant-time token check."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from perpbot.control import auth
from perpbot.control.auth import (
    MalformedHeader, TokenFileError, Tokens, bearer, host_allowed, json_body_allowed, origin_allowed,
    read_or_create_token,
)


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8000", True), ("localhost", True), ("LOCALHOST:1", True), ("[::1]:8000", True), ("127.9.9.9", True),
    (None, True), ("evil.example", False), ("127.0.0.1.evil.example", False), ("localhost.evil", False),
    ("10.0.0.1:8000", False), ("[::ffff:1.2.3.4]", False), ("", False), ("perpbot:8000", False),
])
def test_only_loopback_hosts_pass_the_rebinding_guard(host, ok):
    assert host_allowed(host, []) is ok


def test_listed_hosts_pass_the_rebinding_guard():
    assert host_allowed("perpbot:8000", ["perpbot"]) and not host_allowed("perpbot.evil:8000", ["perpbot"])


@pytest.mark.parametrize("origin, ok", [
    (None, True), ("http://127.0.0.1:8000", True), ("HTTP://127.0.0.1:8000", True),
    ("http://127.0.0.1:8001", False), ("https://127.0.0.1:8000", False), ("null", False), ("", False),
    ("http://evil.example", False), ("http://127.0.0.1.evil.example:8000", False), ("file:///etc", False),
    ("http://127.0.0.1:99999", False),
])
def test_only_the_apis_own_origin_may_change_state(origin, ok):
    assert origin_allowed(origin, "127.0.0.1:8000", False, []) is ok


def test_a_listed_origin_may_change_state_default_ports_included():
    assert origin_allowed("https://ops.example.com", "127.0.0.1:8000", False, ["https://ops.example.com:443"])
    assert not origin_allowed("http://ops.example.com", "127.0.0.1:8000", False, ["https://ops.example.com"])


@pytest.mark.parametrize("content_type, has_body, ok", [
    (None, False, True), ("application/json", True, True), ("application/json; charset=utf-8", True, True),
    ("application/merge-patch+json", True, True), ("application/octet-stream", False, True),
    (None, True, False), ("text/plain", True, False), ("text/plain", False, False),
    ("application/x-www-form-urlencoded", False, False), ("multipart/form-data; boundary=x", True, False),
    ("application/octet-stream", True, False),
])
def test_state_changing_bodies_are_json_only(content_type, has_body, ok):
    assert json_body_allowed(content_type, has_body) is ok


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "bearer\tabc", "Bearer \udcff\udcfe",
                                    "Bearer t\u00f6ken", "Bearer " + "x" * 600, "Bearer a\x00b"])
def test_a_malformed_authorization_header_is_refused_not_raised(header):
    with pytest.raises(MalformedHeader):
        bearer(header)


def test_a_bearer_token_is_read_and_an_absent_header_is_none():
    assert bearer("Bearer abc-123") == "abc-123" and bearer("bearer  abc ") == "abc" and bearer(None) is None


def test_tokens_compare_fixed_length_digests_so_the_length_of_a_wrong_token_does_not_matter(monkeypatch):
    compared: list[tuple[int, int]] = []
    real = auth.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    tokens = Tokens(hashlib.sha256(b"trade-token").digest(), hashlib.sha256(b"read-token").digest(), "test")
    for given in ["", "t", "trade-toke", "trade-token!", "x" * 500, "read-token"[:-1]]:
        assert tokens.scope_of(given) is None
    assert tokens.scope_of("trade-token") == "trade" and tokens.scope_of("read-token") == "read"
    assert compared and set(compared) == {(32, 32)}
    assert len(compared) == 2 * 8  # both digests compared every time, whichever matched


def test_no_read_token_means_no_read_scope():
    tokens = Tokens(hashlib.sha256(b"trade").digest(), None, "test")
    assert not tokens.reads_need_token and tokens.scope_of("") is None


def test_the_token_file_is_created_once_with_mode_0600_whatever_the_umask(tmp_path):
    path = tmp_path / "data" / "api_token"
    old = os.umask(0)
    try:
        token, created = read_or_create_token(path)
    finally:
        os.umask(old)
    assert created and len(token) >= 40 and token.isprintable()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_token(path) == (token, False)


def test_a_token_file_others_can_read_is_narrowed_and_an_empty_one_refused(tmp_path):
    path = tmp_path / "api_token"
    path.write_text("operator-chosen-token\n")
    path.chmod(0o644)
    assert read_or_create_token(path) == ("operator-chosen-token", False)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("\n")
    with pytest.raises(TokenFileError, match="no usable token"):
        read_or_create_token(path)
    with pytest.raises(TokenFileError):
        read_or_create_token(tmp_path)  # a directory in the way
