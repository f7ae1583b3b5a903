"""Every catalog entry, produced with real servers on real sockets, gets its verdict.

Faults the lab's nodes cannot stage are played by small purpose-built servers
(`fakesmtp`: aiosmtpd would hide most of them) behind a `ServerTarget`, with a
lab DNS for example.org and certificates from a lab CA. Entries the lab itself
produces (a relay's queue expiring, greylisting then delivery) are covered by
`test_scenarios.py`; `test_every_entry_is_covered` checks the union is the catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.catalog import scenario_files
from lab.diagnosis.catalog import UNKNOWN, load_catalog
from lab.diagnosis.engine import run_diagnosis
from lab.diagnosis.events import Diagnosis, Probe
from lab.diagnosis.target import LabTarget
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.scenario.model import Scenario
from tests.diagnosis.conftest import Pki, World, settings
from tests.diagnosis.fakesmtp import Behaviour

SCENARIOS = Path(__file__).parents[2] / "scenarios"
ANY = object()  # do not check fix_verified
BOB = "bob@example.org"


@dataclass(frozen=True)
class Case:
    """One staged fault: the server(s), the mail program's settings, the expected verdict."""

    entry: str
    name: str
    behaviour: Callable[[Pki], Behaviour] | None  # on the configured port; None: see `port`
    mail: dict[str, Any] = field(default_factory=dict)
    port: str = "serve"  # "serve", "blackhole" or "closed": what the configured port does
    alternatives: dict[int, Callable[[Pki], Behaviour]] = field(default_factory=dict)
    unmapped: str = "closed"  # what the other alternative ports do
    fix: object = ANY  # expected fix_verified (True, False, None) or ANY
    failed: Probe | object | None = ANY  # expected failed probe


def healthy(pki: Pki, **changes: Any) -> Behaviour:
    """A submission server that takes everything, with STARTTLS and AUTH after it."""
    changes.setdefault("tls", pki.context())
    return Behaviour(**changes)


def implicit(pki: Pki, **changes: Any) -> Behaviour:
    """Port-465 style: TLS from the first byte."""
    return Behaviour(implicit_tls=pki.context(), **changes)


def plain(**changes: Any) -> Callable[[Pki], Behaviour]:
    return lambda pki: healthy(pki, **changes)


NO_AUTH = {"auth": None, "security": "none"}
MASKED_EHLO = ("PIPELINING", "XXXXXXXA", "8BITMIME")

CASES = [
    # --- DNS ------------------------------------------------------------------------------
    Case(
        "server-name-not-found",
        "nxdomain",
        plain(),
        {"server": "nosuch.example.org"},
        failed=Probe.RESOLVE,
    ),
    Case("server-name-no-address", "nodata", plain(), {"server": "nohost.example.org"}),
    Case("dns-temporary-failure", "servfail", plain(), {"server": "servfail.example.org"}),
    Case("dns-temporary-failure", "dns-silent", plain(), {"server": "silent.example.org"}),
    # --- ports ----------------------------------------------------------------------------
    Case(
        "port-blocked-timeout",
        "25-dropped-587-open",
        None,
        {"port": 25, "timeout": 0.5, **NO_AUTH},
        port="blackhole",
        alternatives={587: plain()},
        fix=True,
        failed=Probe.PORTS,
    ),
    Case(
        "connect-timeout-everywhere",
        "all-dropped",
        None,
        {"timeout": 0.5},
        port="blackhole",
        unmapped="blackhole",
        fix=None,
    ),
    Case(
        "port-filtered",
        "25-dropped-others-reset",
        None,
        {"port": 25, "timeout": 0.5, **NO_AUTH},
        port="blackhole",
        unmapped="closed",
        fix=None,
    ),
    Case(
        "connection-refused",
        "25-refused-587-open",
        None,
        {"port": 25, **NO_AUTH},
        port="closed",
        alternatives={587: plain(), 465: implicit},
        fix=True,
    ),
    # --- greeting -------------------------------------------------------------------------
    Case(
        "wrong-tls-mode",
        "starttls-on-465",
        implicit,
        {"port": 465, "timeout": 1.0},
        fix=True,
        failed=Probe.BANNER,
    ),
    Case(
        "wrong-tls-mode",
        "tls-on-587",
        plain(),
        {"security": "tls"},
        fix=True,
        failed=Probe.STARTTLS,
    ),
    Case("no-banner", "tarpit", plain(banner=None), {"timeout": 0.5}),
    Case(
        "slow-banner",
        "greet-pause",
        # slow: at least half the timeout; the delay runs from the accept, so never less
        plain(banner_delay=0.9),
        {"timeout": 1.5},
        fix=None,
        failed=None,
    ),
    Case("connection-closed-before-greeting", "hang-up", plain(close_at_connect=True)),
    Case("not-an-smtp-server", "ssh", plain(raw_greeting=b"SSH-2.0-OpenSSH_9.2p1\r\n")),
    Case(
        "greeting-refused",
        "554-greeting",
        plain(banner="554 5.7.1 {hostname} No SMTP service here"),
    ),
    Case(
        "smtp-inspection",
        "cisco-fixup",
        plain(banner="220 ******************************", ehlo=MASKED_EHLO),
        alternatives={465: implicit},
        fix=True,
    ),
    Case(
        "banner-ptr-mismatch",
        "banner-is-not-ptr",
        plain(hostname="smtp.other.example"),
        {"port": 25, **NO_AUTH},
        fix=None,
        failed=None,
    ),
    # --- EHLO -----------------------------------------------------------------------------
    Case(
        "helo-only",
        "ehlo-502",
        plain(ehlo_reply="502 5.5.1 EHLO not implemented"),
        NO_AUTH,
        failed=None,
    ),
    Case(
        "helo-rejected",
        "helo-550",
        plain(
            ehlo_reply="550 5.7.1 <client>: Helo command rejected: need fully-qualified hostname",
            helo_reply="550 5.7.1 <client>: Helo command rejected: need fully-qualified hostname",
        ),
    ),
    # --- TLS ------------------------------------------------------------------------------
    Case("tls-not-offered", "no-starttls", plain(ehlo=("PIPELINING", "8BITMIME"))),
    Case("tls-unavailable", "454", lambda pki: Behaviour()),
    Case(
        "certificate-name-mismatch",
        "wrong-name",
        lambda pki: healthy(pki, tls=pki.context("wrong.example.org")),
        {"server": "wrong.example.org"},
        fix=True,
    ),
    Case(
        "certificate-expired",
        "expired",
        lambda pki: healthy(pki, tls=pki.context("expired.example.org")),
        {"server": "expired.example.org"},
    ),
    Case(
        "certificate-untrusted",
        "self-signed",
        lambda pki: healthy(pki, tls=pki.context("self.example.org")),
        {"server": "self.example.org"},
    ),
    Case(
        "tls-handshake-failure",
        "tls1.0-only",
        lambda pki: healthy(pki, tls=pki.context(old_tls_only=True)),
    ),
    Case("tls-handshake-error", "garbage-after-220", plain(starttls_garbage=True)),
    # --- AUTH -----------------------------------------------------------------------------
    Case(
        "tls-required",
        "530-starttls-first",
        plain(auth_reply_plain="530 5.7.0 Must issue a STARTTLS command first"),
        {
            "security": "none",
            "auth": {"user": "alice@example.org", "password": "pw", "mechanism": "PLAIN"},
        },
        fix=True,
    ),
    Case(
        "cleartext-auth-refused",
        "538",
        plain(
            ehlo=("STARTTLS", "AUTH PLAIN LOGIN"),
            auth_reply_plain=(
                "538 5.7.11 Encryption required for requested authentication mechanism"
            ),
        ),
        {"security": "none"},
        fix=True,
    ),
    Case(
        "auth-not-offered-before-tls",
        "auth-after-tls-only",
        plain(),
        {"security": "none"},
        fix=True,
    ),
    Case("auth-not-offered", "no-auth-at-all", plain(ehlo_after_tls=("PIPELINING", "8BITMIME"))),
    Case("auth-no-common-mechanism", "gssapi-ntlm", plain(ehlo_after_tls=("AUTH GSSAPI NTLM",))),
    Case(
        "auth-mechanism-mismatch",
        "cram-md5-forced",
        plain(auth_replies={"CRAM-MD5": "504 5.5.4 Unrecognized authentication type"}),
        {"auth": {"user": "alice@example.org", "password": "pw", "mechanism": "CRAM-MD5"}},
        fix=True,
        failed=Probe.AUTH,
    ),
    Case(
        "auth-bad-credentials",
        "535",
        plain(auth_reply="535 5.7.8 Authentication credentials invalid"),
        fix=None,
    ),
    Case(
        "auth-required",
        "530-auth",
        plain(mail_reply="530 5.7.0 Authentication required"),
        {"auth": None},
    ),
    # --- envelope -------------------------------------------------------------------------
    Case(
        "relay-denied",
        "554-relay",
        plain(rcpt_reply=f"554 5.7.1 <{BOB}>: Relay access denied"),
        {"auth": None},
    ),
    Case(
        "send-as-denied",
        "5.7.60",
        plain(
            mail_replies={
                "boss@example.org": (
                    "550 5.7.60 Client does not have permissions to send as this sender"
                )
            }
        ),
        {"from": "boss@example.org"},
        fix=True,
    ),
    Case(
        "sender-domain-rejected",
        "4.1.8",
        plain(
            mail_replies={
                "alice@nosuch.example.org": (
                    "450 4.1.8 <alice@nosuch.example.org>: Sender address rejected: "
                    "Domain not found"
                )
            }
        ),
        {"from": "alice@nosuch.example.org"},
        fix=True,
    ),
    Case(
        "sender-rejected",
        "5.1.7",
        plain(mail_reply="553 5.1.7 <alice@example.org>: Sender address syntax invalid"),
    ),
    Case(
        "unknown-user",
        "5.1.1",
        plain(
            rcpt_replies={
                "bbo@example.org": (
                    "550 5.1.1 <bbo@example.org>: Recipient address rejected: User unknown"
                )
            }
        ),
        {"to": ["bbo@example.org"]},
        failed=Probe.RCPT,
    ),
    Case(
        "domain-not-found",
        "accepted-but-nxdomain",
        plain(),
        {"to": ["bob@nosuch.example.org"]},
        failed=Probe.DELIVERY,
    ),
    Case(
        "domain-not-found",
        "5.1.2-at-rcpt",
        plain(
            rcpt_reply="550 5.1.2 <bob@example.nte>: Recipient address rejected: Domain not found"
        ),
        {"to": ["bob@example.nte"]},
    ),
    Case("null-mx", "null-mx", plain(), {"to": ["bob@nullmx.example.org"]}),
    Case(
        "null-mx",
        "556",
        plain(
            rcpt_reply=(
                "556 5.1.10 <bob@nullmx.example.org>: Recipient address rejected: "
                "Domain does not accept mail"
            )
        ),
        {"to": ["bob@nullmx.example.org"]},
    ),
    Case("domain-no-mail-host", "no-mx-no-a", plain(), {"to": ["bob@nohost.example.org"]}),
    Case("no-mx-a-fallback", "implicit-mx", plain(), {"to": ["bob@nomx.example.org"]}, failed=None),
    Case(
        "mailbox-full",
        "452-4.2.2",
        plain(rcpt_reply=f"452 4.2.2 <{BOB}>: Mailbox full, try again later"),
    ),
    Case("mailbox-disabled", "5.2.1", plain(rcpt_reply=f"550 5.2.1 <{BOB}>: Mailbox disabled")),
    Case(
        "message-too-large",
        "size",
        plain(size_limit=2000),
        {"size": 5000},
        fix=True,
        failed=Probe.MAIL,
    ),
    Case(
        "too-many-recipients",
        "4.5.3",
        plain(rcpt_replies={"carol@example.org": "452 4.5.3 Error: too many recipients"}),
        {"to": [BOB, "carol@example.org"]},
    ),
    Case(
        "greylisting",
        "451-4.7.1",
        plain(
            rcpt_reply=f"451 4.7.1 <{BOB}>: Recipient address rejected: Greylisted, try again later"
        ),
        fix=None,
    ),
    Case(
        "spf-fail",
        "5.7.23",
        plain(
            data_end_reply="550 5.7.23 SPF validation failed: example.org does not permit "
            "[127.0.0.1] to send its mail"
        ),
    ),
    Case(
        "dmarc-reject",
        "5.7.26",
        plain(
            data_end_reply="550 5.7.26 Unauthenticated email from example.org is not "
            "accepted due to domain's DMARC policy"
        ),
    ),
    Case(
        "dnsbl-listed",
        "spamhaus",
        plain(
            rcpt_reply="554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked "
            "using zen.spamhaus.org"
        ),
    ),
    Case(
        "no-ptr",
        "no-ptr-record",
        plain(rcpt_reply="450 4.7.25 Client host rejected: cannot find your hostname, [127.0.0.9]"),
    ),
    Case(
        "ptr-mismatch",
        "fcrdns",
        plain(rcpt_reply="550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.8]"),
    ),
    Case(
        "reverse-dns-rejected",
        "unknown-address",
        plain(rcpt_reply="550 5.7.25 Client host rejected: cannot find your hostname"),
    ),
    Case(
        "connection-limit",
        "421-too-many",
        plain(banner="421 4.7.0 {hostname} Too many connections, try again later"),
    ),
    Case(
        "client-rejected",
        "client-host-rejected-no-auth",
        plain(
            ehlo_after_tls=("PIPELINING", "SIZE 10240000", "8BITMIME"),
            rcpt_reply="554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied",
        ),
        {"auth": None},
        fix=None,
    ),
    Case(
        "service-unavailable",
        "421-shutdown",
        plain(banner="421 4.3.2 Service shutting down and closing transmission channel"),
    ),
    # --- DATA and the rest ----------------------------------------------------------------
    Case("dropped-during-data", "hang-up-in-data", plain(drop_in_data=True), failed=Probe.DATA),
    Case(
        "message-rejected-content",
        "5.6.0",
        plain(data_end_reply="554 5.6.0 Message content rejected"),
    ),
    Case("connection-lost", "hang-up-at-mail", plain(close_on="MAIL")),
    Case(
        "recipient-rejected",
        "access-denied",
        plain(rcpt_reply=f"550 5.7.1 <{BOB}>: Recipient address rejected: Access denied"),
    ),
    Case(
        "temporary-failure",
        "451-local-error",
        plain(data_end_reply="451 4.3.0 Error: local error in processing"),
    ),
    Case("permanent-failure", "500-at-auth", plain(auth_reply="500 5.5.2 Error: bad syntax")),
    Case("unclassified", "not-smtp-at-mail", plain(mail_reply="HTTP/1.1 400 Bad Request")),
    Case("healthy", "everything-works", plain(), fix=None, failed=None),
]


async def run_case(world: World, case: Case) -> Diagnosis:
    ports: dict[int, int] = {}
    mail = settings(**case.mail)
    if case.port == "serve":
        assert case.behaviour is not None
        ports[mail.port] = await world.serve(case.behaviour(world.pki))
    elif case.port == "blackhole":
        ports[mail.port] = world.blackhole.port
    else:
        ports[mail.port] = world.closed.port
    for port, make in case.alternatives.items():
        ports[port] = await world.serve(make(world.pki))
    _, diagnosis = await world.diagnose(mail, ports, unmapped=case.unmapped)
    return diagnosis


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.entry}[{case.name}]")
async def test_catalog_entry_from_real_servers(world: World, case: Case) -> None:
    diagnosis = await run_case(world, case)
    assert diagnosis.entry == case.entry, (diagnosis.cause, diagnosis.alternatives)
    for text in (diagnosis.cause, diagnosis.explanation, diagnosis.remedy.text, diagnosis.confirm):
        assert UNKNOWN not in text, text
    if case.fix is not ANY:
        assert diagnosis.fix_verified is case.fix, diagnosis.fix_outcome
    if case.failed is not ANY:
        assert diagnosis.failed_probe is case.failed


# --- entries that need a lab (its network emulation or its relay's queue) ------------------


def scenario_variant(name: str, change: Callable[[dict[str, Any]], None]) -> Scenario:
    """A catalog scenario, changed: the same loader, the same validation."""
    import yaml

    data = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    data["id"] = f"{name}-variant"
    change(data)
    return Scenario.model_validate(data)


def _no_router(data: dict[str, Any]) -> None:
    del data["nodes"]["isp"]


async def test_host_unreachable_without_a_route() -> None:
    scenario = scenario_variant("happy-path", _no_router)
    async with running_lab(scenario, LocalBackend()) as lab:
        mail = scenario.client[1].settings.model_copy(update={"timeout": 0.5})
        _, diagnosis = await run_diagnosis(LabTarget(lab), mail)
    assert diagnosis.entry == "host-unreachable", diagnosis.cause
    assert diagnosis.failed_probe is Probe.PORTS
    assert diagnosis.fix_verified is None


def test_every_entry_is_covered() -> None:
    """The union of the cases above and the scenarios' expectations is the whole catalog."""
    covered = {case.entry for case in CASES} | {"host-unreachable"}
    for path in scenario_files(SCENARIOS):
        expected = load_scenario(path).expect.diagnosis
        if expected:
            covered.add(expected)
    catalog = {entry.id for entry in load_catalog().entries}
    assert catalog - covered == set()
    assert covered - catalog == set(), "cases name entries the catalog does not have"


def test_catalog_is_big_enough_and_every_entry_is_documented() -> None:
    entries = load_catalog().entries
    assert len(entries) >= 30
    for entry in entries:
        assert entry.references, entry.id
        assert entry.confirm, entry.id
        assert entry.explanation, entry.id
        assert entry.cause, entry.id
