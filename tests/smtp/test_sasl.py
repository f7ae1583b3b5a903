"""SASL client computations against published vectors, and the masking helpers."""

from __future__ import annotations

import pytest

from lab.smtp import sasl

# RFC 2195 section 2, the example exchange.
RFC2195_CHALLENGE_B64 = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"
RFC2195_CHALLENGE = b"<1896.697170952@postoffice.reston.mci.net>"
RFC2195_RESPONSE_B64 = "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"


@pytest.mark.parametrize(
    ("user", "password", "authzid", "expected"),
    [
        ("test", "test", "", "AHRlc3QAdGVzdA=="),
        ("tim", "tanstaaftanstaaf", "", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"),
        ("tim", "pw", "admin", "YWRtaW4AdGltAHB3"),
        ("jürgen", "pässword", "", "AGrDvHJnZW4AcMOkc3N3b3Jk"),
    ],
)
def test_plain_response(user: str, password: str, authzid: str, expected: str) -> None:
    assert sasl.plain_response(user, password, authzid) == expected


@pytest.mark.parametrize(
    ("user", "password", "expected"),
    [
        ("test", "test", ("dGVzdA==", "dGVzdA==")),
        ("alice@example.com", "hunter2", ("YWxpY2VAZXhhbXBsZS5jb20=", "aHVudGVyMg==")),
    ],
)
def test_login_responses(user: str, password: str, expected: tuple[str, str]) -> None:
    assert sasl.login_responses(user, password) == expected


def test_cram_md5_digest_rfc2195() -> None:
    digest = sasl.cram_md5_digest("tim", "tanstaaftanstaaf", RFC2195_CHALLENGE)
    assert digest == "tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_response_rfc2195() -> None:
    response = sasl.cram_md5_response("tim", "tanstaaftanstaaf", RFC2195_CHALLENGE_B64)
    assert response == RFC2195_RESPONSE_B64


def test_cram_md5_rejects_non_base64_challenge() -> None:
    with pytest.raises(ValueError, match="not base64"):
        sasl.cram_md5_response("tim", "pw", "<not base64>")


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        ("VXNlcm5hbWU6", "Username:"),
        ("UGFzc3dvcmQ6", "Password:"),
        (RFC2195_CHALLENGE_B64, RFC2195_CHALLENGE.decode()),
        ("", ""),
        ("not base64!", None),
    ],
)
def test_decode_challenge(challenge: str, expected: str | None) -> None:
    assert sasl.decode_challenge(challenge) == expected


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["PLAIN", "LOGIN"], "PLAIN"),
        (["LOGIN", "PLAIN"], "PLAIN"),
        (["CRAM-MD5", "LOGIN"], "LOGIN"),
        (["cram-md5"], "CRAM-MD5"),
        (["XOAUTH2", "GSSAPI"], None),
        ([], None),
    ],
)
def test_pick_mechanism_prefers_plain_then_login_then_cram(
    offered: list[str], expected: str | None
) -> None:
    assert sasl.pick_mechanism(offered) == expected


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("AUTH PLAIN AHRlc3QAdGVzdA==", "AUTH PLAIN ****"),
        ("auth plain AHRlc3QAdGVzdA==", "auth plain ****"),
        ("AUTH LOGIN dGVzdA==", "AUTH LOGIN ****"),
        ("AUTH LOGIN", "AUTH LOGIN"),
        ("AUTH CRAM-MD5", "AUTH CRAM-MD5"),
        ("MAIL FROM:<a@b.example> SIZE=100", "MAIL FROM:<a@b.example> SIZE=100"),
        ("EHLO pc.customer.lan", "EHLO pc.customer.lan"),
    ],
)
def test_mask_command(line: str, shown: str) -> None:
    assert sasl.mask_command(line) == shown


def test_secret_forms_and_redact() -> None:
    forms = sasl.secret_forms("hunter2", "", "ab")
    assert forms == {"hunter2", "aHVudGVyMg=="}
    text = "S: 535 bad password hunter2 (aHVudGVyMg==)"
    assert sasl.redact(text, forms) == "S: 535 bad password **** (****)"
    assert sasl.redact("nothing secret", forms) == "nothing secret"
