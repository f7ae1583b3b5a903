"""The shared reading of addresses and hosts (lab.addresses): RFC 5321's rules, edge by edge."""

from __future__ import annotations

import ipaddress

import pytest

from lab.addresses import (
    domain_of,
    host_in_domain,
    ip_literal,
    is_ip_literal,
    mta_host,
    without_extension,
)


@pytest.mark.parametrize(
    ("address", "domain"),
    [
        ("bob@example.net", "example.net"),
        ("Bob@Example.NET", "example.net"),  # domains compare case-insensitively (§2.4)
        ("bob@example.net.", "example.net"),  # a final dot names the same domain
        ("<bob@example.net>", "example.net"),  # a path as it appears in MAIL FROM / RCPT TO
        ("  bob@example.net \t", "example.net"),
        ('"a@b"@example.net', "example.net"),  # the domain follows the *last* "@" (§4.1.2)
        ("bob@[192.0.2.7]", "[192.0.2.7]"),  # an address literal is the domain as written
        ("<>", ""),  # the null sender has no domain
        ("", ""),
        ("postmaster", ""),  # no "@": no domain (RFC 5321 §4.5.1's bare Postmaster)
        ("bob@", ""),
    ],
)
def test_domain_of(address: str, domain: str) -> None:
    assert domain_of(address) == domain


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("10.0.0.5", "10.0.0.5"),  # bare, as mail programs and configs accept it
        ("[10.0.0.5]", "10.0.0.5"),  # RFC 5321 §4.1.3 address literal
        (" [10.0.0.5] ", "10.0.0.5"),
        ("::1", "::1"),
        ("[IPv6:2001:db8::1]", "2001:db8::1"),  # IPv6 literals carry the tag
        ("[ipv6:2001:db8::1]", "2001:db8::1"),  # ... case-insensitively
        ("[2001:db8::1]", "2001:db8::1"),  # untagged, as some programs write it
        ("mx.example.net", None),
        ("[x]", None),
        ("[10.0.0.5", None),
        ("10.0.0.256", None),
        ("", None),
    ],
)
def test_ip_literal(host: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.ip_address(address)
    assert ip_literal(host) == expected
    assert is_ip_literal(host) is (address is not None)


@pytest.mark.parametrize(
    ("address", "delimiters", "mailbox"),
    [
        ("bob+orders@example.net", "+", "bob@example.net"),
        ("bob+orders+2026@example.net", "+", "bob@example.net"),  # the first one splits
        ("bob-orders@example.net", "+-", "bob@example.net"),
        ("bob+orders@example.net", None, "bob+orders@example.net"),  # no subaddressing
        ("bob+orders@example.net", "-", "bob+orders@example.net"),
        ("+orders@example.net", "+", "+orders@example.net"),  # no user part left
        ("bob+orders", "+", "bob+orders"),  # no domain: not an address
    ],
)
def test_without_extension(address: str, delimiters: str | None, mailbox: str) -> None:
    assert without_extension(address, delimiters) == mailbox


@pytest.mark.parametrize(
    ("field", "host"),
    [
        ("dns; mx.example.net", "mx.example.net"),
        ("dns;MX.Example.NET.", "mx.example.net"),
        ("mx2.example.net", "mx2.example.net"),  # a bare name, as some MTAs write it
        ("", ""),
    ],
)
def test_mta_host(field: str, host: str) -> None:
    assert mta_host(field) == host


@pytest.mark.parametrize(
    ("host", "domain", "inside"),
    [
        ("mx2.example.net", "example.net", True),
        ("MX2.Example.NET.", "example.net.", True),
        ("example.net", "example.net", True),  # the domain's own host: its implicit MX
        ("badexample.net", "example.net", False),  # a suffix that is not a label boundary
        ("mx.example.org", "example.net", False),
        ("mx.example.net", "", False),  # no recipient domain: never inside
    ],
)
def test_host_in_domain(host: str, domain: str, inside: bool) -> None:
    assert host_in_domain(host, domain) is inside
