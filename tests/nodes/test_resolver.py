"""Lookups through `lab.nodes.resolver` against a real lab DNS on a loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import pytest

from lab.nodes.config import DnsConfig, ResolverConfig
from lab.nodes.dns import start
from lab.nodes.resolver import (
    DnsLookupError,
    DnsTemporaryFailure,
    InvalidName,
    MxAnswer,
    NameNotFound,
    NoRecords,
    mail_exchangers,
    make_resolver,
    resolve_addresses,
    reverse_name,
)

HOST = "127.0.0.1"
TIMEOUT = 1.0  # generous: loopback answers take milliseconds, even on a busy CI machine
SHORT = 0.15  # for names that never answer: each such test costs this (+ 0.1 s backoff)

RECORDS = [
    # MX order on the wire is deliberately not the preference order.
    ("example.com.", "MX", "20 backup.example.com."),
    ("example.com.", "MX", "10 mx2.example.com."),
    ("example.com.", "MX", "10 MX1.example.com."),
    ("mx1.example.com.", "A", "10.0.2.11"),
    ("mx2.example.com.", "A", "10.0.2.12"),
    ("mx2.example.com.", "A", "10.0.2.13"),
    ("alias.example.com.", "CNAME", "mx1.example.com."),
    ("host-only.example.com.", "A", "10.0.2.20"),
    ("nomail.example.com.", "MX", "0 ."),
    ("nomail.example.com.", "A", "10.0.2.30"),
    ("mixed.example.com.", "MX", "0 ."),
    ("mixed.example.com.", "MX", "5 mx1.example.com."),
    ("11.2.0.10.in-addr.arpa.", "PTR", "mx1.example.com."),
]
FAULTS = {
    "broken.example.com.": "servfail",
    "silent.example.com.": "timeout",
    "12.2.0.10.in-addr.arpa.": "servfail",
}


@pytest.fixture
async def resolver(tmp_path: Path) -> AsyncIterator[dns.asyncresolver.Resolver]:
    config = DnsConfig.model_validate(
        {
            "name": "dns",
            "data_dir": tmp_path,
            "listen_host": HOST,
            "port": 0,
            "zones": ["example.com.", "2.0.10.in-addr.arpa."],
            "records": [{"name": n, "type": t, "value": v} for n, t, v in RECORDS],
            "faults": FAULTS,
        }
    )
    running = await start(config)
    yield make_resolver(ResolverConfig(nameserver=HOST, port=running.ports[53], timeout=TIMEOUT))
    await running.stop()


def impatient(resolver: dns.asyncresolver.Resolver) -> dns.asyncresolver.Resolver:
    """The same lab DNS with a short timeout, for the cases that expect silence."""
    return make_resolver(ResolverConfig(nameserver=HOST, port=resolver.port, timeout=SHORT))


def test_make_resolver_asks_only_the_lab_dns() -> None:
    resolver = make_resolver(ResolverConfig(nameserver="10.0.0.53", port=5353, timeout=1.5))
    assert (resolver.nameservers, resolver.port) == (["10.0.0.53"], 5353)
    assert (resolver.timeout, resolver.lifetime) == (1.5, 1.5)
    assert (resolver.search, resolver.use_search_by_default, resolver.cache) == ([], False, None)


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "addresses"),
    [
        ("mx1.example.com", ["10.0.2.11"]),
        ("MX2.Example.Com.", ["10.0.2.12", "10.0.2.13"]),
        ("alias.example.com", ["10.0.2.11"]),  # CNAME followed
        ("192.0.2.7", ["192.0.2.7"]),  # a literal never touches DNS
        ("[192.0.2.7]", ["192.0.2.7"]),
    ],
)
async def test_resolve_addresses(
    resolver: dns.asyncresolver.Resolver, name: str, addresses: list[str]
) -> None:
    assert sorted(await resolve_addresses(resolver, name)) == addresses


ERROR_CASES = [
    # name, exception, permanent, message (None: checked by prefix only)
    ("nope.example.com", NameNotFound, True, "nope.example.com: NXDOMAIN (domain does not exist)"),
    ("example.com", NoRecords, True, "example.com: no A records (NODATA)"),
    ("www.example.org.", NameNotFound, True, "www.example.org: NXDOMAIN (domain does not exist)"),
    ("a..b", InvalidName, True, None),
    ("mx.broken.example.com", DnsTemporaryFailure, False, "mx.broken.example.com: SERVFAIL ("),
    (
        "silent.example.com",
        DnsTemporaryFailure,
        False,
        "silent.example.com: timeout: no answer from",
    ),
]


@pytest.mark.parametrize(("name", "error", "permanent", "message"), ERROR_CASES)
async def test_resolve_addresses_errors(
    resolver: dns.asyncresolver.Resolver,
    name: str,
    error: type[DnsLookupError],
    permanent: bool,
    message: str | None,
) -> None:
    with pytest.raises(error) as caught:
        await resolve_addresses(impatient(resolver), name)
    assert caught.value.permanent is permanent
    assert caught.value.rdtype == "A"
    if message is not None:
        assert str(caught.value).startswith(message)
    if error is InvalidName:
        assert isinstance(caught.value, NameNotFound)
        assert str(caught.value).startswith("a..b: not a valid domain name")


async def test_servfail_message_names_the_server(resolver: dns.asyncresolver.Resolver) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolve_addresses(resolver, "broken.example.com")
    port = resolver.port
    assert str(caught.value) == f"broken.example.com: SERVFAIL ({HOST}:{port} answered SERVFAIL)"


async def test_no_nameserver_listening_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    resolver = make_resolver(ResolverConfig(nameserver=HOST, port=port, timeout=SHORT))
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolve_addresses(resolver, "mx1.example.com")
    assert not caught.value.permanent
    assert str(caught.value).startswith("mx1.example.com: ")


# --- MX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "answer"),
    [
        (
            "example.com",
            MxAnswer(
                "example.com",
                [(10, "mx1.example.com"), (10, "mx2.example.com"), (20, "backup.example.com")],
            ),
        ),
        # RFC 5321 §5.1: no MX but the name exists -> the domain itself, preference 0.
        (
            "host-only.example.com.",
            MxAnswer("host-only.example.com", [(0, "host-only.example.com")], implicit=True),
        ),
        # RFC 7505: the domain accepts no mail, even though it has an address.
        ("nomail.example.com", MxAnswer("nomail.example.com", [], null_mx=True)),
        # A null MX among real ones is meaningless: the real ones count.
        ("mixed.example.com", MxAnswer("mixed.example.com", [(5, "mx1.example.com")])),
        ("[10.0.2.11]", MxAnswer("[10.0.2.11]", [(0, "10.0.2.11")], implicit=True)),
    ],
)
async def test_mail_exchangers(
    resolver: dns.asyncresolver.Resolver, domain: str, answer: MxAnswer
) -> None:
    assert await mail_exchangers(resolver, domain) == answer


async def test_implicit_mx_falls_back_to_the_address(resolver: dns.asyncresolver.Resolver) -> None:
    answer = await mail_exchangers(resolver, "host-only.example.com")
    assert [await resolve_addresses(resolver, host) for _, host in answer.hosts] == [["10.0.2.20"]]


@pytest.mark.parametrize(
    ("domain", "error", "permanent"),
    [
        ("nope.example.com", NameNotFound, True),
        ("broken.example.com", DnsTemporaryFailure, False),
        ("silent.example.com", DnsTemporaryFailure, False),
    ],
)
async def test_mail_exchangers_errors(
    resolver: dns.asyncresolver.Resolver,
    domain: str,
    error: type[DnsLookupError],
    permanent: bool,
) -> None:
    with pytest.raises(error) as caught:
        await mail_exchangers(impatient(resolver), domain)
    assert (caught.value.name, caught.value.rdtype, caught.value.permanent) == (
        domain,
        "MX",
        permanent,
    )


# --- PTR ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "name"),
    [
        ("10.0.2.11", "mx1.example.com"),
        ("10.0.2.13", None),  # inside the reverse zone, no PTR: NXDOMAIN
        ("192.0.2.1", None),  # outside every zone
    ],
)
async def test_reverse_name(
    resolver: dns.asyncresolver.Resolver, address: str, name: str | None
) -> None:
    assert await reverse_name(resolver, address) == name


async def test_reverse_name_temporary_failure_raises(
    resolver: dns.asyncresolver.Resolver,
) -> None:
    with pytest.raises(DnsTemporaryFailure, match=r"^12\.2\.0\.10\.in-addr\.arpa: SERVFAIL"):
        await reverse_name(resolver, "10.0.2.12")


async def test_reverse_name_rejects_a_non_address(resolver: dns.asyncresolver.Resolver) -> None:
    with pytest.raises(ValueError, match="is not an IP address"):
        await reverse_name(resolver, "mail.example.com")
