"""HMAC-SHA256 request signatures (webhook)."""

from __future__ import annotations

import hashlib
import hmac
import textwrap
import time

import pytest

from libs.integrations import signing
from libs.integrations.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify,
)

SECRET = b"whsec-test"
BODY = b'{"a":1}'
TS = "1700000000"
# printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec-test'
KNOWN = "fed7a1a6c799a6367d73724d76bc70c16678908a32a879cd1ded6565ac05cece"


def test_known_vector() -> None:
    assert sign(SECRET, TS, BODY) == KNOWN
    assert verify(SECRET, TS, BODY, "sha256=" + KNOWN, now=1_700_000_010)
    assert verify(SECRET, TS, BODY, KNOWN, now=1_700_000_010)  # prefix optional
    assert verify(SECRET, TS, BODY, "sha256=" + KNOWN.upper(), now=1_700_000_010)


@pytest.mark.parametrize(
    ("timestamp", "body", "signature", "secret"),
    [
        (TS, b'{"a":2}', KNOWN, SECRET),  # tampered body
        ("1700000001", BODY, KNOWN, SECRET),  # tampered timestamp
        (TS, BODY, KNOWN, b"another secret"),
        (TS, BODY, KNOWN[:-1] + "0", SECRET),
        (TS, BODY, "", SECRET),
        (TS, BODY, "sha256=é" + KNOWN[2:], SECRET),
        ("", BODY, KNOWN, SECRET),
        ("17e8", BODY, KNOWN, SECRET),
        ("-1700000000", BODY, KNOWN, SECRET),
    ],
)
def test_anything_tampered_fails(
    timestamp: str, body: bytes, signature: str, secret: bytes
) -> None:
    assert not verify(secret, timestamp, body, signature, now=1_700_000_000)


def test_stale_or_future_timestamps_fail() -> None:
    good = "sha256=" + KNOWN
    assert verify(SECRET, TS, BODY, good, now=1_700_000_300)
    assert not verify(SECRET, TS, BODY, good, now=1_700_000_301)  # replayed too late
    assert not verify(SECRET, TS, BODY, good, now=1_699_999_699)  # from the future
    assert verify(SECRET, TS, BODY, good, now=1_700_000_301, tolerance_s=600)


def test_signed_headers_pass_the_documented_receiver_check() -> None:
    body = b'[{"id":"r1","kind":"line_crossing"}]'
    headers = signed_headers(SECRET, body, now=time.time())
    assert set(headers) == {TIMESTAMP_HEADER, SIGNATURE_HEADER}

    # the receiver-side snippet of the module's docstring, run as documented
    doc = signing.__doc__
    assert doc is not None
    snippet = doc.split("set ``SECRET``)::\n", 1)[1].split("\nA retried delivery", 1)[0]
    snippet = textwrap.dedent(snippet)
    namespace: dict[str, object] = {}
    exec(
        snippet.replace(
            'SECRET = b"the shared secret from the webhook\'s configuration"',
            f"SECRET = {SECRET!r}",
        ),
        namespace,
    )
    check = namespace["lookout_request_is_genuine"]
    assert callable(check)
    assert check(headers, body)
    assert not check(headers, body + b" ")
    assert not check({}, body)
    stale = signed_headers(SECRET, body, now=time.time() - 3600)
    assert not check(stale, body)
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], time.time())
    assert hmac.compare_digest(
        headers[SIGNATURE_HEADER],
        "sha256="
        + hmac.new(
            SECRET, headers[TIMESTAMP_HEADER].encode() + b"." + body, hashlib.sha256
        ).hexdigest(),
    )
