"""What a request head says (`glb.http1.request_head`): the body's framing (every request
smuggling shape refused), Host, keep-alive, Expect and Upgrade."""

from __future__ import annotations

import pytest

from glb.http1.request_head import parse_request_head
from tests.request_heads import GET, LIMITS, head, refused, request

# --- framing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "length", "chunked"),
    [
        pytest.param([], 0, False, id="no-body"),
        pytest.param([b"Content-Length: 5"], 5, False, id="length"),
        pytest.param([b"Content-Length: 0"], 0, False, id="zero"),
        pytest.param([b"content-LENGTH: 005"], 5, False, id="leading-zeros-any-case"),
        pytest.param([b"Content-Length:  7 \t"], 7, False, id="outer-blanks"),
        pytest.param([b"Content-Length: " + b"9" * 18], 10**18 - 1, False, id="18-digits"),
        pytest.param([b"Transfer-Encoding: chunked"], 0, True, id="chunked"),
        pytest.param([b"transfer-encoding: CHUNKED "], 0, True, id="chunked-any-case"),
    ],
)
def test_framing_accepted(fields: list[bytes], length: int, chunked: bool) -> None:
    """One Content-Length of ASCII digits, or Transfer-Encoding exactly chunked, or no body."""
    parsed = request(b"Host: a", *fields)
    assert (parsed.length, parsed.chunked) == (length, chunked)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([b"Content-Length: 5", b"Transfer-Encoding: chunked"], id="cl-then-te"),
        pytest.param([b"Transfer-Encoding: chunked", b"Content-Length: 5"], id="te-then-cl"),
        pytest.param([b"Transfer-Encoding: chunked, identity"], id="chunked-identity"),
        pytest.param([b"Transfer-Encoding: xchunked"], id="xchunked"),
        pytest.param([b"Transfer-Encoding : chunked"], id="space-before-colon"),
        pytest.param(
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"], id="te-twice"
        ),
        pytest.param([b"Transfer-Encoding:", b" chunked"], id="folded-te"),
        pytest.param([b"Content-Length: 5", b"Content-Length: 6"], id="cl-twice-differing"),
        pytest.param([b"Content-Length: 5", b"Content-Length: 5"], id="cl-twice-equal"),
        pytest.param([b"Content-Length: 5, 5"], id="cl-list"),
        pytest.param(
            [b"Content-Length: 5", b"Transfer-Encoding: identity"], id="cl-and-te-identity"
        ),
        pytest.param([b"Transfer-Encoding: identity"], id="identity"),
        pytest.param([b"Transfer-Encoding: gzip"], id="gzip"),
        pytest.param([b"Transfer-Encoding: gzip, chunked"], id="gzip-chunked"),
        pytest.param([b"Transfer-Encoding: chunked, chunked"], id="chunked-twice-in-list"),
        pytest.param(
            [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], id="chunked-twice"
        ),
        pytest.param([b"Transfer-Encoding: chunked,"], id="empty-member"),
        pytest.param([b"Transfer-Encoding:"], id="empty-te"),
        pytest.param([b"Transfer-Encoding: chun\xe2\x84\xaaed"], id="kelvin-sign-k"),
        pytest.param([b'Transfer-Encoding: "chunked"'], id="quoted"),
        pytest.param([b"Transfer-Encoding: chunked;q=1"], id="parameter"),
        pytest.param([b"Content-Length:"], id="empty-cl"),
        pytest.param([b"Content-Length: -1"], id="negative"),
        pytest.param([b"Content-Length: +5"], id="plus"),
        pytest.param([b"Content-Length: 5 5"], id="space-inside"),
        pytest.param([b"Content-Length: 0x5"], id="hex"),
        pytest.param([b"Content-Length: 1e3"], id="exponent"),
        pytest.param([b"Content-Length: 5_0"], id="underscore"),
        pytest.param([b"Content-Length: " + b"1" * 19], id="19-digits"),
        pytest.param(["Content-Length: \uff15".encode()], id="fullwidth-digit"),
        pytest.param(["Content-Length: \u00b2".encode()], id="superscript-digit"),
        pytest.param(["Content-Length: \u0665".encode()], id="arabic-indic-digit"),
        pytest.param([b"Transfer-Encoding:\tchunked"], id="htab-before-chunked"),
        pytest.param([b"Transfer-Encoding: chunked\t"], id="htab-after-chunked"),
        pytest.param([b"transfer-ENCODING: chunked \t "], id="htab-among-blanks"),
    ],
)
def test_framing_refused(fields: list[bytes]) -> None:
    """Every smuggling shape, every Transfer-Encoding but exactly chunked, every Content-Length
    but one field of ASCII digits: 400."""
    assert refused(head(GET, b"Host: a", *fields)).status == 400


def test_an_htab_elsewhere_leaves_chunked_alone() -> None:
    """Only an HTAB in the Transfer-Encoding line is refused, not one in another field's."""
    parsed = request(b"X-Transfer-Encoding:\tx", b"Transfer-Encoding: chunked", b"Y: \tchunked\t")
    assert parsed.chunked


def test_an_htab_in_transfer_encoding_is_a_400_before_a_failed_expectation() -> None:
    """The HTAB check is one of the 400 checks, which come before the 417 one."""
    assert refused(head(GET, b"Expect: foo", b"Transfer-Encoding:\tchunked")).status == 400


def test_transfer_encoding_in_http_1_0_refused() -> None:
    """HTTP/1.0 has no chunked encoding: 400 (Content-Length is fine)."""
    line = b"POST / HTTP/1.0"
    assert refused(head(line, b"Transfer-Encoding: chunked")).status == 400
    assert request(b"Content-Length: 3", line=line).length == 3


# --- Host -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        pytest.param([b"Host: a"], True, id="one"),
        pytest.param([], True, id="missing-is-the-proxys-to-answer"),
        pytest.param([b"Host:"], True, id="empty"),
        pytest.param([b"Host: a", b"Host: a"], False, id="two-equal"),
        pytest.param([b"Host: a", b"hOST: b"], False, id="two-any-case"),
    ],
)
def test_host_fields(fields: list[bytes], ok: bool) -> None:
    """More than one Host field: 400."""
    raw = head(GET, *fields, b"X: y")
    if ok:
        parse_request_head(raw, LIMITS)
    else:
        assert refused(raw).status == 400


# --- the connection -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "fields", "keep_alive"),
    [
        pytest.param(b"1.1", [], True, id="1.1-default"),
        pytest.param(b"1.1", [b"Connection: close"], False, id="1.1-close"),
        pytest.param(b"1.1", [b"Connection: Close "], False, id="1.1-close-any-case"),
        pytest.param(b"1.1", [b"Connection: keep-alive"], True, id="1.1-keep-alive"),
        pytest.param(b"1.1", [b"Connection: upgrade, close"], False, id="1.1-close-in-list"),
        pytest.param(b"1.1", [b"Connection: x", b"connection: CLOSE"], False, id="1.1-2-fields"),
        pytest.param(b"1.1", [b"Connection: closed"], True, id="1.1-not-close"),
        pytest.param(b"1.1", [b"Connection: clos\xe2\x84\xaae"], True, id="1.1-non-ascii"),
        pytest.param(b"1.0", [], False, id="1.0-default"),
        pytest.param(b"1.0", [b"Connection: keep-alive"], True, id="1.0-keep-alive"),
        pytest.param(b"1.0", [b"Connection: Keep-Alive"], True, id="1.0-keep-alive-any-case"),
        pytest.param(b"1.0", [b"Connection: x, keep-alive"], True, id="1.0-keep-alive-in-list"),
        pytest.param(
            b"1.0", [b"Connection: keep-alive", b"Connection: close"], False, id="1.0-close-wins"
        ),
        pytest.param(b"1.0", [b"Keep-Alive: timeout=5"], False, id="1.0-keep-alive-header"),
        pytest.param(b"1.2", [], True, id="1.2-as-1.1"),
    ],
)
def test_keep_alive(version: bytes, fields: list[bytes], keep_alive: bool) -> None:
    """HTTP/1.1 persists unless Connection lists close; HTTP/1.0 only if it lists keep-alive."""
    assert request(*fields, line=b"GET / HTTP/" + version).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("version", "fields", "expect_continue"),
    [
        pytest.param(b"1.1", [], False, id="none"),
        pytest.param(b"1.1", [b"Expect: 100-continue"], True, id="100-continue"),
        pytest.param(b"1.1", [b"expect:  100-Continue \t"], True, id="any-case-blanks"),
        pytest.param(b"1.1", [b"Expect:"], False, id="empty"),
        pytest.param(b"1.0", [b"Expect: 100-continue"], False, id="1.0-ignored"),
    ],
)
def test_expect_accepted(version: bytes, fields: list[bytes], expect_continue: bool) -> None:
    """Expect: 100-continue counts in HTTP/1.1 only (RFC 9110 10.1.1: ignored in 1.0)."""
    line = b"POST / HTTP/" + version
    parsed = request(b"Content-Length: 1", *fields, line=line)
    assert parsed.expect_continue is expect_continue


@pytest.mark.parametrize(
    ("version", "value"),
    [
        pytest.param(b"1.1", b"100-continue-please", id="other-token"),
        pytest.param(b"1.1", b"200-ok", id="unknown"),
        pytest.param(b"1.1", b"100-continue, foo", id="extra-member"),
        pytest.param(b"1.1", b'100-continue; a="b"', id="parameter"),
        pytest.param(b"1.1", b"100-contin\xe2\x84\xaaue", id="non-ascii"),
        pytest.param(b"1.0", b"foo", id="1.0-unknown"),
    ],
)
def test_expect_refused(version: bytes, value: bytes) -> None:
    """Any expectation but 100-continue: 417 Expectation Failed."""
    raw = head(b"POST / HTTP/" + version, b"Content-Length: 1", b"Expect: " + value)
    assert refused(raw).status == 417


def test_malformed_framing_wins_over_a_failed_expectation() -> None:
    """400 checks come before the 417 one."""
    raw = head(GET, b"Expect: foo", b"Content-Length: x")
    assert refused(raw).status == 400


@pytest.mark.parametrize(
    ("version", "fields", "upgrade"),
    [
        pytest.param(b"1.1", [b"Connection: Upgrade", b"Upgrade: WebSocket"], "websocket", id="ws"),
        pytest.param(
            b"1.1", [b"Upgrade: websocket", b"Connection: keep-alive, upgrade"], "websocket",
            id="upgrade-in-list",
        ),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade: h2c, websocket"], "h2c",
                     id="first-protocol"),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade:  websocket \t"], "websocket",
                     id="blanks"),
        pytest.param(b"1.1", [b"Upgrade: websocket"], None, id="connection-missing"),
        pytest.param(b"1.1", [b"Connection: keep-alive", b"Upgrade: websocket"], None,
                     id="connection-without-upgrade"),
        pytest.param(b"1.1", [b"Connection: upgrade"], None, id="upgrade-missing"),
        pytest.param(b"1.1", [b"Connection: upgrade", b"Upgrade:"], None, id="upgrade-empty"),
        pytest.param(
            b"1.1", [b"Connection: upgrade", b"Upgrade: websocket", b"Upgrade: h2c"], None,
            id="two-upgrade-fields",
        ),
        pytest.param(b"1.0", [b"Connection: upgrade", b"Upgrade: websocket"], None,
                     id="1.0-ignored"),
    ],
)  # fmt: skip
def test_upgrade(version: bytes, fields: list[bytes], upgrade: str | None) -> None:
    """The lowercased first protocol of the one Upgrade field, when Connection lists upgrade
    (HTTP/1.1 only: RFC 9110 7.8 has HTTP/1.0 servers ignore it)."""
    assert request(*fields, line=b"GET /ws HTTP/" + version).upgrade == upgrade
