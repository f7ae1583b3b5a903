"""The diagnosis planner: every decision of a diagnosis, and no I/O.

Like dnspython's `_Resolution`, the planner says which probe comes next
(`next_request`) and turns what the probe saw into `Step`s (`record`); the
runners in `probes.py` own the sockets and only carry requests out. So the
path an expert walks (DNS, ports in parallel, banner, EHLO, STARTTLS and the
certificate, AUTH, MAIL, RCPT, DATA, then the message's fate) and the words
that say what each result proves are tested with no network at all.

The planner also collects the *facts*: one nested dict of plain values per
probe (the `evidence` of each step) plus a few derived ones (`problem`,
`outcome`, the best alternative port). The fault catalog matches these facts;
it never sees a scenario or its expectations.

The plan is written as a generator (`_plan`): each `yield` hands a request
(`lab.diagnosis.requests`) out and receives its result, which keeps the order
of the walk readable.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from lab.diagnosis.events import Probe, Status, Step
from lab.diagnosis.requests import (
    Authenticate,
    CheckReverseDns,
    DeliveryResult,
    DnsResult,
    DomainLookup,
    EndSession,
    Failure,
    FollowMessage,
    HelloResult,
    InspectResult,
    InspectTls,
    Lines,
    LookupDns,
    MailFrom,
    ModeResult,
    OpenSession,
    PeekAfterStarttls,
    PeekResult,
    PortProbe,
    PortsResult,
    RcptResult,
    RcptTo,
    ReadBanner,
    Request,
    Result,
    ReverseResult,
    SayHello,
    ScanPorts,
    SendData,
    SessionResult,
    StartTls,
    StartTlsResult,
    TryOtherTlsMode,
)
from lab.scenario.model import MailSettings, Security
from lab.smtp import sasl
from lab.smtp.client import SmtpReply, TlsInfo

# The ports a mail program could be told to use instead: the configured one plus these.
ALTERNATIVE_PORTS: tuple[int, ...] = (25, 465, 587, 2525)
# Which alternative to recommend first: submission with STARTTLS (RFC 6409), then
# implicit TLS (RFC 8314), then the unofficial 2525, and relaying port 25 last.
PORT_PREFERENCE: tuple[int, ...] = (587, 465, 2525, 25)
IMPLICIT_TLS_PORTS = frozenset({465})
# A greeting later than this (or than half the timeout) is slow: greet-pause, tarpit, load.
SLOW_BANNER_MS = 1000.0
# A masked EHLO keyword: Cisco's "fixup smtp" turns STARTTLS into XXXXXXXA, others into ****.
_MANGLED_KEYWORD = re.compile(r"^(?:X{4,}A?|\*{3,}.*|.*\*{3,})$", re.IGNORECASE)
_MANGLED_TEXT = re.compile(r"\*{4,}")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
# A refusal naming the client's address and speaking of its name (Postfix, Exchange, Gmail).
_BRACKETED_IP = re.compile(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]")
_RDNS_WORDS = re.compile(r"hostname|reverse|\bptr\b|rdns|fcrdns", re.IGNORECASE)
SESSION_PROBES: tuple[Probe, ...] = (
    Probe.BANNER,
    Probe.EHLO,
    Probe.STARTTLS,
    Probe.AUTH,
    Probe.MAIL,
    Probe.RCPT,
    Probe.DATA,
)
ORDER: tuple[Probe, ...] = (Probe.RESOLVE, Probe.PORTS, *SESSION_PROBES, Probe.DELIVERY)


_R = TypeVar("_R")


# --- small pure helpers --------------------------------------------------------------------------


def domain_of(address: str) -> str:
    """The domain of an address, lower case ("" when there is none)."""
    return address.rpartition("@")[2].strip().lower()


def is_ip_literal(server: str) -> bool:
    """True for "192.0.2.1" or "[192.0.2.1]"."""
    candidate = server[1:-1] if server.startswith("[") and server.endswith("]") else server
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def port_list(configured: int, alternatives: Sequence[int] = ALTERNATIVE_PORTS) -> tuple[int, ...]:
    """The configured port first, then the alternatives, without repeats."""
    return tuple(dict.fromkeys((configured, *alternatives)))


def human_size(size: int) -> str:
    """Bytes as people say them: 10240000 -> "10.2 MB" (decimal units, as SIZE is written)."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def classify_tls_error(reason: str) -> str:
    """A family for OpenSSL's reason text, so that the catalog need not parse OpenSSL.

    hostname-mismatch, expired, self-signed, unknown-ca, untrusted (other verify
    failures), not-tls (the peer spoke plain text), protocol-version,
    handshake-failure, timeout, closed, other.
    """
    text = reason.lower()
    table: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("hostname-mismatch", ("hostname mismatch", "ip address mismatch", "not valid for")),
        ("expired", ("has expired", "certificate expired", "not yet valid")),
        ("self-signed", ("self-signed", "self signed")),
        ("unknown-ca", ("unable to get local issuer", "unable to get issuer", "unknown ca")),
        ("untrusted", ("certificate_verify_failed", "certificate verify failed")),
        (
            "not-tls",
            ("wrong_version_number", "packet_length_too_long", "http_request", "record_layer"),
        ),
        (
            "protocol-version",
            ("protocol_version", "unsupported_protocol", "no_protocols_available", "version"),
        ),
        ("handshake-failure", ("handshake_failure", "no_shared_cipher", "cipher", "alert")),
        ("timeout", ("timed out",)),
        ("closed", ("connection closed", "reset", "eof", "closed")),
    )
    for family, needles in table:
        if any(needle in text for needle in needles):
            return family
    return "other"


def suggest_addresses(
    wanted: Sequence[str], refused: Sequence[str], directory: Sequence[str]
) -> list[str] | None:
    """`wanted` with each refused address replaced by the closest known one ("Did you mean").

    None when a refused address has no plausible match: then there is no
    settings change to propose, only words.
    """
    known = {address.lower(): address for address in directory}
    fixed: list[str] = []
    refused_lower = {address.lower() for address in refused}
    for address in wanted:
        if address.lower() not in refused_lower:
            fixed.append(address)
            continue
        matches = difflib.get_close_matches(address.lower(), list(known), n=1, cutoff=0.75)
        if not matches or matches[0] == address.lower():
            return None
        fixed.append(known[matches[0]])
    return fixed if fixed != list(wanted) else None


def _reply_facts(reply: SmtpReply | None) -> dict[str, Any]:
    if reply is None:
        return {"code": None, "enhanced": None, "text": None, "reply": None}
    return {
        "code": reply.code,
        "enhanced": reply.enhanced,
        "text": reply.message,
        "reply": str(reply),
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _secs(seconds: float) -> str:
    return f"{seconds:g}"


def _banner_host(reply: SmtpReply | None) -> str | None:
    if reply is None or not reply.lines:
        return None
    words = reply.lines[0].split()
    if not words or not _HOSTNAME.match(words[0]) or words[0].isdigit():
        return None
    return words[0].lower()


def _cert_facts(info: TlsInfo | None, server: str, now: datetime) -> dict[str, Any] | None:
    if info is None or info.subject is None:
        return None
    not_after = info.not_after
    names = list(info.names)
    dns_names = [name for name in names if not name.startswith("*") and not is_ip_literal(name)]
    return {
        "subject": info.subject,
        "issuer": info.issuer,
        "names": names,
        "name": dns_names[0] if dns_names else (names[0] if names else None),
        "not_after": not_after.strftime("%Y-%m-%d %H:%M UTC") if not_after else None,
        "expired": bool(not_after and not_after < now),
        "days_left": (not_after - now).days if not_after else None,
        "self_signed": info.subject == info.issuer,
        "matches_server": _name_matches(server, names),
    }


def _name_matches(server: str, names: Sequence[str]) -> bool:
    server = server.lower().strip("[]")
    for name in names:
        name = name.lower()
        if name == server:
            return True
        if name.startswith("*.") and server.partition(".")[2] == name[2:]:
            return True
    return False


def settings_facts(settings: MailSettings) -> dict[str, Any]:
    """The mail program's settings as facts (never the password)."""
    auth = settings.auth
    return {
        "server": settings.server,
        "port": settings.port,
        "security": str(settings.security),
        "auth": auth is not None,
        "user": auth.user if auth else None,
        "mechanism": auth.mechanism if auth else None,
        "sender": settings.sender,
        "sender_domain": domain_of(settings.sender),
        "recipients": list(settings.to),
        "recipient_domains": list(dict.fromkeys(domain_of(a) for a in settings.to)),
        "timeout": settings.timeout,
        "size": settings.size,
        "size_text": human_size(settings.size),
        "verify_tls": settings.verify_tls,
    }


def _security_of(greeting_mode: str, starttls: bool) -> str:
    if greeting_mode == "tls":
        return str(Security.TLS)
    return str(Security.STARTTLS if starttls else Security.NONE)


# --- the planner ---------------------------------------------------------------------------------


class Planner:
    """Decides each probe and explains each result; see the module docstring.

    Args:
        settings: the mail program's settings, as the customer has them.
        helo: the name the mail program greets with (its machine's name).
        alternatives: ports tried next to the configured one.
        can_follow: the target can tell what became of an accepted message.
        now: the time certificates are judged against (injectable for tests).
    """

    def __init__(
        self,
        settings: MailSettings,
        *,
        helo: str,
        alternatives: Sequence[int] = ALTERNATIVE_PORTS,
        can_follow: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.helo = settings.helo or helo
        self.alternatives = tuple(alternatives)
        self.can_follow = can_follow
        self.now = now or datetime.now(UTC)
        self.facts: dict[str, Any] = {"settings": settings_facts(settings)}
        self._emitted: list[Step] = []
        self._seen: set[Probe] = set()
        self._finished = False
        self._plan_steps = self._plan()
        self._request: Request | None = next(self._plan_steps)

    # -- the public loop ----------------------------------------------------------------------

    def next_request(self) -> Request | None:
        """The probe to run next; None when the walk is over."""
        return self._request

    def record(self, result: Result) -> list[Step]:
        """Take the result of the current request; return the steps it completes."""
        if self._request is None:
            raise RuntimeError("the diagnosis is over: nothing was asked")
        self._emitted = []
        try:
            self._request = self._plan_steps.send(result)
        except StopIteration:
            self._request = None
            self._finish()
        return self._emitted

    @property
    def done(self) -> bool:
        """True once every step has been emitted."""
        return self._finished

    @property
    def problem(self) -> dict[str, Any] | None:
        """The decisive failure, if any."""
        problem = self.facts.get("problem")
        return problem if isinstance(problem, dict) else None

    # -- bookkeeping --------------------------------------------------------------------------

    def _emit(
        self,
        probe: Probe,
        status: Status,
        title: str,
        tried: str,
        proves: str,
        *,
        evidence: dict[str, Any] | None = None,
        transcript: Lines = (),
        duration: float = 0.0,
    ) -> None:
        self._seen.add(probe)
        if evidence is None:
            evidence = self.facts.get(_FACT_KEYS.get(probe, str(probe))) or {}
        self._emitted.append(
            Step(
                probe=probe,
                status=status,
                title=title,
                tried=tried,
                # A copy: the facts keep growing after the step is out.
                evidence=copy.deepcopy(evidence),
                proves=proves,
                transcript=transcript,
                duration=round(duration, 4),
            )
        )

    def _fail(
        self,
        probe: Probe,
        kind: str,
        text: str,
        reply: SmtpReply | None = None,
        *,
        code: int | None = None,
        enhanced: str | None = None,
        **extra: Any,
    ) -> None:
        """Record the decisive failure: the first one wins."""
        if "problem" in self.facts:
            return
        facts = _reply_facts(reply)
        self.facts["problem"] = {
            **extra,
            "probe": str(probe),
            "kind": kind,
            "code": facts["code"] if reply else code,
            "enhanced": facts["enhanced"] if reply else enhanced,
            "text": facts["text"] if reply else text,
            "reply": facts["reply"],
            "summary": text,
            "permanent": (reply.is_permanent if reply else None),
        }
        self.facts["outcome"] = "failed"

    def _finish(self) -> None:
        """Steps the walk never reached are shown as skipped, in the usual order."""
        if self._finished:
            return
        self._finished = True
        self.facts.setdefault("outcome", "failed" if "problem" in self.facts else "accepted")
        problem = self.problem
        reason = f"Not reached: the {problem['probe']} step failed." if problem else "Not reached."
        for probe in ORDER:
            if probe in self._seen:
                continue
            if probe is Probe.DELIVERY and not self.can_follow:
                continue
            self._emit(
                probe,
                Status.SKIPPED,
                _TITLES[probe],
                "Nothing: an earlier step failed.",
                reason,
                evidence={},
            )

    @staticmethod
    def _expect(result: object, kind: type[_R]) -> _R:
        if not isinstance(result, kind):
            raise TypeError(f"expected a {kind.__name__}, got {type(result).__name__}")
        return result

    # -- the walk -----------------------------------------------------------------------------

    def _plan(self) -> Generator[Request, Result, None]:
        settings = self.settings
        recipients = tuple(dict.fromkeys(domain_of(address) for address in settings.to))
        dns = self._expect(
            (yield LookupDns(settings.server, recipients, domain_of(settings.sender))), DnsResult
        )
        address = self._on_dns(dns)
        if address is None:
            return
        ports = self._expect(
            (
                yield ScanPorts(
                    address,
                    settings.port,
                    port_list(settings.port, self.alternatives),
                    settings.timeout,
                )
            ),
            PortsResult,
        )
        if not self._on_ports(ports):
            return
        yield from self._session(address)
        yield from self._check_client_rdns()

    def _session(self, address: str) -> Generator[Request, Result, None]:
        settings = self.settings
        port = settings.port
        implicit = settings.security is Security.TLS
        opened = self._expect((yield OpenSession(address, port, implicit)), SessionResult)
        if opened.failure is not None:
            if opened.failure.kind == "tls":
                yield from self._tls_failed(opened.failure, opened, address, implicit=True)
            else:
                self._reconnect_failed(opened)
            return
        if implicit:
            self._on_implicit_tls(opened)
        banner = self._expect((yield ReadBanner()), SessionResult)
        if not implicit:
            # The connection's own notes ("connected to … in 3 ms") belong with the greeting.
            banner = replace(banner, transcript=opened.transcript + banner.transcript)
        if not (yield from self._on_banner(banner, address)):
            return
        hello = self._expect((yield SayHello(self.helo)), HelloResult)
        if not self._on_hello(hello):
            yield EndSession(polite=hello.failure is None)
            return
        extensions = dict(hello.extensions)
        encrypted = implicit
        if settings.security is Security.STARTTLS:
            if "STARTTLS" not in extensions:
                self._tls_not_offered()
                yield EndSession(polite=True)
                return
            started = self._expect((yield StartTls(self.helo)), StartTlsResult)
            if not (yield from self._on_starttls(started, address)):
                return
            assert started.hello is not None
            extensions = dict(started.hello.extensions)
            encrypted = True
        elif settings.security is Security.NONE:
            self._tls_not_used(extensions)
        if settings.auth is not None:
            if not (
                yield from self._authenticate(extensions, encrypted=encrypted, address=address)
            ):
                return
        else:
            self._auth_not_configured(extensions, encrypted=encrypted)
        mail = self._expect((yield MailFrom(settings.sender)), SessionResult)
        if not self._on_mail(mail):
            yield EndSession(polite=_polite(mail))
            return
        rcpt = self._expect((yield RcptTo(tuple(settings.to))), RcptResult)
        if not self._on_rcpt(rcpt):
            yield EndSession(polite=rcpt.failure is None)
            return
        data = self._expect((yield SendData()), SessionResult)
        delivered = self._on_data(data)
        yield EndSession(polite=_polite(data))
        if not delivered:
            return
        if not self.can_follow:
            self.facts["outcome"] = "accepted" if "problem" not in self.facts else "failed"
            return
        delivery = self._expect((yield FollowMessage()), DeliveryResult)
        self._on_delivery(delivery)

    # -- reverse DNS of a refused client ------------------------------------------------------

    def _check_client_rdns(self) -> Generator[Request, Result, None]:
        """A refusal for reverse DNS names the client's address: look it up as an expert would."""
        problem = self.problem
        if problem is None:
            return
        text = f"{problem.get('reply') or ''} {problem.get('text') or ''}"
        enhanced = str(problem.get("enhanced") or "")
        found = _BRACKETED_IP.search(text)
        if found is None or not (enhanced.endswith(".7.25") or _RDNS_WORDS.search(text)):
            return
        address = found.group(1)
        result = self._expect((yield CheckReverseDns(address)), ReverseResult)
        if result.ptr is None:
            status = "unknown" if result.error else "missing"
        elif address in result.forward:
            status = "confirmed"
        else:
            status = "mismatch"
        problem.update(
            {
                "client_address": address,
                "client_ptr": result.ptr,
                "client_ptr_forward": list(result.forward),
                "client_ptr_status": status,
            }
        )
        tried = f"Looked up the PTR record of {address} (the address the server refused)"
        if result.ptr:
            tried += f", then the A record of {result.ptr}"
        proves = {
            "missing": f"{address} has no PTR record: servers that demand reverse DNS refuse it.",
            "mismatch": (
                f"{address} is named {result.ptr}, but {result.ptr} points to "
                f"{', '.join(result.forward) or 'nothing'}: the reverse DNS is not confirmed "
                "by the forward lookup (FCrDNS fails)."
            ),
            "confirmed": (
                f"{address} is named {result.ptr} and that name points back to it: reverse DNS "
                "is fine from here; the server may see another address or stale data."
            ),
            "unknown": f"The reverse lookup of {address} failed: {result.error}.",
        }[status]
        self._emit(
            Probe.RESOLVE,
            Status.FAIL if status in ("missing", "mismatch") else Status.INFO,
            f"Reverse DNS of {address}",
            tried + ".",
            proves,
            evidence={
                "address": address,
                "ptr": result.ptr,
                "forward": list(result.forward),
                "status": status,
            },
            duration=result.duration,
        )

    # -- DNS ----------------------------------------------------------------------------------

    def _on_dns(self, dns: DnsResult) -> str | None:
        server = dns.server
        domains = [self._domain_facts(lookup) for lookup in dns.recipients]
        facts: dict[str, Any] = {
            "server": server.name,
            "literal": server.status == "literal",
            "status": server.status,
            "addresses": list(server.addresses),
            "address": server.addresses[0] if server.addresses else None,
            "error": server.error,
            "ms": server.ms,
            "ptr": dns.ptr,
            "sender": self._domain_facts(dns.sender) if dns.sender else None,
            "recipients": domains,
        }
        for status, key in (
            ("nxdomain", "nxdomain"),
            ("null-mx", "null_mx"),
            ("no-mx", "no_mx"),
            ("temporary", "temporary"),
            ("no-host", "no_host"),
        ):
            matching = [d["domain"] for d in domains if d["status"] == status]
            facts[f"{key}_domains"] = matching
            facts[f"any_recipient_{key}"] = bool(matching)
        self.facts["resolve"] = facts
        title = f"Resolve {server.name}"
        notes = self._domain_notes(dns)
        if server.status == "literal":
            tried = f"Nothing to look up: {server.name} is an IP address."
            if dns.recipients:
                tried += " Looked up where the recipients' domains receive mail."
            proves = f"The mail program connects to {server.name} directly. {notes}".strip()
            status = Status.WARN if self._domain_trouble(dns) else Status.OK
            self._emit(Probe.RESOLVE, status, title, tried, proves, duration=dns.duration)
            return server.addresses[0] if server.addresses else server.name.strip("[]")
        looked_up = ", ".join(d.domain for d in dns.recipients) or "the recipients' domains"
        tried = f"Looked up the A record of {server.name}, and the MX records of {looked_up}."
        if server.status == "ok" and server.addresses:
            shown = ", ".join(server.addresses)
            proves = f"{server.name} exists and points to {shown} ({server.ms:.0f} ms). {notes}"
            status = Status.WARN if self._domain_trouble(dns) else Status.OK
            self._emit(Probe.RESOLVE, status, title, tried, proves.strip(), duration=dns.duration)
            return server.addresses[0]
        if server.status == "nxdomain":
            proves = (
                f"{server.name} does not exist in DNS (NXDOMAIN): the mail program cannot find "
                "its server at all. The server name is most likely mistyped."
            )
            kind = "nxdomain"
        elif server.status == "nodata":
            proves = (
                f"{server.name} exists in DNS but has no address (no A record): "
                "there is nothing to connect to."
            )
            kind = "nodata"
        else:
            proves = (
                f"DNS could not answer for {server.name} ({server.error}): a temporary failure "
                "of the resolver or of the domain's name servers. The name may well be right."
            )
            kind = "temporary"
        self._fail(Probe.RESOLVE, kind, server.error or proves)
        self._emit(Probe.RESOLVE, Status.FAIL, title, tried, proves, duration=dns.duration)
        return None

    @staticmethod
    def _domain_facts(lookup: DomainLookup) -> dict[str, Any]:
        return {
            "domain": lookup.domain,
            "status": lookup.status,
            "mx": list(lookup.mx),
            "a_fallback": list(lookup.a_fallback),
            "error": lookup.error,
        }

    @staticmethod
    def _domain_trouble(dns: DnsResult) -> bool:
        lookups = [*dns.recipients, *([dns.sender] if dns.sender else [])]
        return any(lookup.status not in ("ok", "no-mx") for lookup in lookups)

    @staticmethod
    def _domain_notes(dns: DnsResult) -> str:
        notes: list[str] = []
        for lookup in dns.recipients:
            if lookup.status == "ok":
                notes.append(f"Mail for {lookup.domain} goes to {', '.join(lookup.mx)}.")
            elif lookup.status == "no-mx":
                notes.append(
                    f"{lookup.domain} has no MX record: senders fall back to its A record "
                    f"({', '.join(lookup.a_fallback)})."
                )
            elif lookup.status == "null-mx":
                notes.append(f"{lookup.domain} publishes a null MX: it accepts no mail at all.")
            elif lookup.status == "nxdomain":
                notes.append(f"The recipient domain {lookup.domain} does not exist (NXDOMAIN).")
            elif lookup.status == "no-host":
                notes.append(f"{lookup.domain} has neither an MX nor an A record.")
            else:
                notes.append(f"DNS could not answer for {lookup.domain} ({lookup.error}).")
        sender = dns.sender
        if sender is not None and sender.status in ("nxdomain", "no-host"):
            notes.append(f"The sender's domain {sender.domain} cannot receive replies or bounces.")
        return " ".join(notes)

    # -- ports --------------------------------------------------------------------------------

    def _on_ports(self, result: PortsResult) -> bool:
        settings = self.settings
        by_port = {probe.port: probe for probe in result.ports}
        configured = by_port.get(settings.port) or PortProbe(settings.port, "error", 0.0)
        rows: list[dict[str, Any]] = []
        for probe in sorted(result.ports, key=lambda p: p.port):
            greeting = probe.greeting
            rows.append(
                {
                    "port": probe.port,
                    "state": probe.state,
                    "ms": probe.ms,
                    "detail": probe.detail,
                    "mode": greeting.mode if greeting else None,
                    "banner_code": greeting.code if greeting else None,
                    "banner": greeting.text if greeting else None,
                    "starttls": greeting.starttls if greeting else None,
                    "auth": list(greeting.auth) if greeting else None,
                    "smtp": bool(greeting and greeting.code == 220),
                    "security": (
                        _security_of(greeting.mode, greeting.starttls)
                        if greeting and greeting.code == 220
                        else None
                    ),
                }
            )
        opened = [row["port"] for row in rows if row["state"] == "open"]
        others = [port for port in opened if port != settings.port]
        suggested = self._suggest(rows)
        implicit = next((row["port"] for row in rows if row["smtp"] and row["mode"] == "tls"), None)
        facts: dict[str, Any] = {
            "address": result.address,
            "configured": settings.port,
            "state": configured.state,
            "ms": configured.ms,
            "detail": configured.detail,
            "timeout": result.timeout,
            "results": rows,
            "by_port": {str(row["port"]): row for row in rows},
            "open": opened,
            "others_open": others,
            "timed_out": [row["port"] for row in rows if row["state"] == "timeout"],
            "refused": [row["port"] for row in rows if row["state"] == "refused"],
            "all_timeout": all(row["state"] == "timeout" for row in rows),
            "all_refused": all(row["state"] == "refused" for row in rows),
            "suggested": suggested,
            "implicit_port": implicit,
        }
        self.facts["ports"] = facts
        listed = ", ".join(str(row["port"]) for row in rows)
        tried = (
            f"Opened TCP connections to {result.address} on ports {listed} at the same time "
            f"(timeout {_secs(result.timeout)} s); greeted on the open alternatives."
        )
        title = f"Connect to {settings.server}:{settings.port}"
        summary = "; ".join(_port_phrase(row) for row in rows)
        if configured.state == "open":
            proves = (
                f"Port {settings.port} accepts connections ({configured.ms:.0f} ms). {summary}."
            )
            self._emit(Probe.PORTS, Status.OK, title, tried, proves, duration=result.duration)
            return True
        alternative = ""
        if suggested is not None:
            alternative = (
                f" Port {suggested['port']} answered in {suggested['ms']:.0f} ms and speaks SMTP "
                f"({suggested['label']})."
            )
        if configured.state == "timeout":
            proves = (
                f"Nothing answered on port {settings.port} within {_secs(result.timeout)} s: the "
                "connection attempt was silently dropped, typically by a firewall or the "
                f"provider.{alternative}"
            )
        elif configured.state == "refused":
            proves = (
                f"Port {settings.port} refused the connection: nothing listens there, or a "
                f"firewall answers with a reset.{alternative}"
            )
        elif configured.state == "unreachable":
            proves = f"There is no route to {result.address}: the network path is broken."
        else:
            proves = f"The connection to port {settings.port} failed: {configured.detail}."
        self._fail(Probe.PORTS, configured.state, configured.detail or proves)
        self._emit(
            Probe.PORTS, Status.FAIL, title, tried, f"{proves} {summary}.", duration=result.duration
        )
        return False

    def _suggest(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The best port to use instead: answering 220 unmangled, encrypted first, by preference."""
        usable = [
            row
            for row in rows
            if row["smtp"]
            and row["port"] != self.settings.port
            and not _MANGLED_TEXT.search(row["banner"] or "")
        ]
        order = {port: index for index, port in enumerate(PORT_PREFERENCE)}
        usable.sort(
            key=lambda row: (row["security"] == "none", order.get(row["port"], 99), row["port"])
        )
        if not usable:
            return None
        row = usable[0]
        security = row["security"]
        label = {
            "tls": "SSL/TLS (implicit TLS)",
            "starttls": "STARTTLS",
            "none": "no encryption (none offered)",
        }[security]
        return {"port": row["port"], "security": security, "ms": row["ms"], "label": label}

    # -- the session: connect, banner, EHLO --------------------------------------------------

    def _reconnect_failed(self, opened: SessionResult) -> None:
        failure = opened.failure
        assert failure is not None
        self.facts["banner"] = {"state": failure.kind, "error": failure.detail}
        self._fail(Probe.BANNER, failure.kind, failure.detail)
        self._emit(
            Probe.BANNER,
            Status.FAIL,
            "Read the greeting",
            f"Connected again to port {self.settings.port} for the conversation.",
            f"The second connection failed ({failure.detail}) although the port scan got "
            "through: the server is unstable or limits connections.",
            transcript=opened.transcript,
            duration=opened.duration,
        )

    def _on_implicit_tls(self, opened: SessionResult) -> None:
        info = opened.tls
        facts = self._tls_base("implicit")
        facts.update(self._tls_info_facts(info))
        facts["state"] = "ok"
        self.facts["tls"] = facts
        version = info.version if info else "?"
        self._emit(
            Probe.STARTTLS,
            Status.OK,
            "TLS handshake (implicit TLS)",
            f"Started TLS as soon as the connection was open, as port {self.settings.port} "
            "with security 'tls' (SMTPS) requires, verifying the certificate.",
            f"The server speaks implicit TLS ({version}) and its certificate is valid "
            f"for {self.settings.server}.",
            transcript=opened.transcript,
            duration=opened.duration,
        )

    def _on_banner(self, banner: SessionResult, address: str) -> Generator[Request, Result, bool]:
        settings = self.settings
        reply = banner.reply
        ms = _ms(banner.duration)
        ptr = self.facts.get("resolve", {}).get("ptr")
        host = _banner_host(reply)
        facts: dict[str, Any] = {
            "state": "ok",
            **_reply_facts(reply),
            "ms": ms,
            "hostname": host,
            "mangled": bool(reply and _MANGLED_TEXT.search(reply.text)),
            "slow": ms >= min(SLOW_BANNER_MS, settings.timeout * 500),
            "ptr": ptr,
            "ptr_matches": (host == ptr.lower()) if (host and ptr) else None,
            "mode_check": None,
        }
        self.facts["banner"] = facts
        title = "Read the greeting"
        tried = f"Waited up to {_secs(settings.timeout)} s for the server's 220 greeting."
        failure = banner.failure
        if failure is not None:
            facts["state"] = failure.kind
            facts["error"] = failure.detail
            if failure.kind == "timeout" and settings.security is not Security.TLS:
                yield EndSession(polite=False)
                mode = self._expect(
                    (yield TryOtherTlsMode(address, settings.port, True, self.helo)), ModeResult
                )
                facts["mode_check"] = self._mode_facts(mode)
                if mode.banner is not None and mode.banner.code == 220:
                    proves = (
                        f"The server said nothing for {_secs(settings.timeout)} s over plain TCP, "
                        f"but answered at once when spoken to in TLS: port {settings.port} "
                        "expects implicit TLS (SMTPS) from the first byte, and the mail program "
                        "is waiting for a plain-text greeting that never comes."
                    )
                    self._fail(
                        Probe.BANNER,
                        "wrong-tls-mode",
                        failure.detail,
                        expected_mode="implicit TLS from the first byte",
                        fix_security=str(Security.TLS),
                    )
                    self._emit(
                        Probe.BANNER,
                        Status.FAIL,
                        title,
                        tried + " Then tried implicit TLS on a new connection.",
                        proves,
                        transcript=banner.transcript + mode.transcript,
                        duration=banner.duration + mode.duration,
                    )
                    return False
                tried += " Then tried implicit TLS on a new connection, in vain."
                transcript = banner.transcript + mode.transcript
                duration = banner.duration + mode.duration
            else:
                yield EndSession(polite=False)
                transcript, duration = banner.transcript, banner.duration
            proves = {
                "timeout": (
                    f"TCP connected but no greeting came within {_secs(settings.timeout)} s: "
                    "the server is overloaded, deliberately slow (greet-pause, tarpit), or "
                    "something in the path holds the session."
                ),
                "closed": (
                    "The server closed the connection before greeting: it refuses this client "
                    "(access rules, too many connections) or is shutting down."
                ),
                "malformed": (
                    f"Something answers on port {settings.port}, but not an SMTP server "
                    f"({failure.detail})."
                ),
            }.get(failure.kind, f"The greeting could not be read: {failure.detail}.")
            self._fail(Probe.BANNER, failure.kind, failure.detail)
            self._emit(
                Probe.BANNER,
                Status.FAIL,
                title,
                tried,
                proves,
                transcript=transcript,
                duration=duration,
            )
            return False
        assert reply is not None
        if not reply.is_positive:
            facts["state"] = "rejected"
            meaning = "for now (4xx)" if reply.is_transient else "(5xx)"
            proves = f"The server refuses to talk to this client {meaning}: {reply}."
            self._fail(Probe.BANNER, "reply", str(reply), reply)
            self._emit(
                Probe.BANNER,
                Status.FAIL,
                title,
                tried,
                proves,
                transcript=banner.transcript,
                duration=banner.duration,
            )
            yield EndSession(polite=reply.code != 421)
            return False
        notes: list[str] = []
        status = Status.OK
        if facts["mangled"]:
            status = Status.WARN
            notes.append(
                "The greeting is masked with asterisks: a firewall with SMTP inspection sits in "
                "the path and rewrites the session."
            )
        if facts["slow"]:
            status = Status.WARN
            notes.append(
                f"The greeting took {ms:.0f} ms: the server delays it on purpose or is loaded; "
                "mail programs with short timeouts give up."
            )
        if facts["ptr_matches"] is False:
            notes.append(
                f"The greeting names {host} but the address's PTR record says {ptr}: "
                "receiving servers and blocklist checkers flag such mismatches."
            )
        proves = f"An SMTP server answers: {reply} ({ms:.0f} ms). " + " ".join(notes)
        self._emit(
            Probe.BANNER,
            status,
            title,
            tried,
            proves.strip(),
            transcript=banner.transcript,
            duration=banner.duration,
        )
        return True

    def _mode_facts(self, mode: ModeResult) -> dict[str, Any]:
        works = mode.banner is not None and mode.banner.code == 220
        security = None
        if works:
            security = str(Security.TLS) if mode.implicit else _security_of("plain", mode.starttls)
        return {
            "tried": "tls" if mode.implicit else "plain",
            "works": works,
            "code": mode.banner.code if mode.banner else None,
            "starttls": mode.starttls,
            "security": security,
            "error": mode.failure.detail if mode.failure else None,
            "version": mode.tls.version if mode.tls else None,
        }

    def _on_hello(self, hello: HelloResult) -> bool:
        reply = hello.reply
        extensions = dict(hello.extensions)
        mangled = [key for key in extensions if _MANGLED_KEYWORD.match(key)]
        size = _int_or_none(extensions.get("SIZE"))
        facts: dict[str, Any] = {
            "state": "ok",
            **_reply_facts(reply),
            "ehlo_code": hello.ehlo_reply.code if hello.ehlo_reply else None,
            "ehlo_reply": str(hello.ehlo_reply) if hello.ehlo_reply else None,
            "helo_fallback": hello.helo_fallback,
            "esmtp": not hello.helo_fallback and bool(reply and reply.is_positive),
            "extensions": extensions,
            "keywords": sorted(extensions),
            "starttls": "STARTTLS" in extensions,
            "auth": extensions.get("AUTH", "").upper().split(),
            "size": size,
            "size_text": human_size(size) if size else None,
            # Half the limit: attachments grow by a third when encoded, and headers add more.
            "size_suggestion": size // 2 if size else None,
            "size_suggestion_text": human_size(size // 2) if size else None,
            "mangled": bool(mangled),
            "mangled_keywords": mangled,
        }
        self.facts["ehlo"] = facts
        title = "EHLO and extensions"
        tried = f"Sent EHLO {self.helo} (HELO if EHLO is refused) and read the extensions."
        if hello.failure is not None:
            facts["state"] = hello.failure.kind
            self._fail(Probe.EHLO, hello.failure.kind, hello.failure.detail)
            proves = f"The server stopped answering during EHLO ({hello.failure.detail})."
            self._emit(
                Probe.EHLO,
                Status.FAIL,
                title,
                tried,
                proves,
                transcript=hello.transcript,
                duration=hello.duration,
            )
            return False
        assert reply is not None
        if not reply.is_positive:
            facts["state"] = "rejected"
            self._fail(Probe.EHLO, "reply", str(reply), reply)
            proves = (
                f"The server refused the greeting ({reply}): it does not accept the name "
                f"{self.helo} or this client."
            )
            self._emit(
                Probe.EHLO,
                Status.FAIL,
                title,
                tried,
                proves,
                transcript=hello.transcript,
                duration=hello.duration,
            )
            return False
        status = Status.OK
        if hello.helo_fallback:
            status = Status.WARN
            ehlo = hello.ehlo_reply
            proves = (
                f"The server refused EHLO ({ehlo}) and accepted HELO: an old server without "
                "ESMTP, so no STARTTLS, no AUTH and no SIZE are possible."
            )
        else:
            offered = ", ".join(
                f"{key} {value}".strip() for key, value in sorted(extensions.items())
            )
            proves = f"The server speaks ESMTP and offers: {offered or 'nothing'}."
            if mangled:
                status = Status.WARN
                proves += (
                    f" Masked keywords ({', '.join(mangled)}) show that a firewall's SMTP "
                    "inspection rewrites the session (and hides STARTTLS)."
                )
        self._emit(
            Probe.EHLO,
            status,
            title,
            tried,
            proves,
            transcript=hello.transcript,
            duration=hello.duration,
        )
        return True

    # -- TLS ----------------------------------------------------------------------------------

    def _tls_base(self, mode: str) -> dict[str, Any]:
        ehlo = self.facts.get("ehlo") or {}
        return {
            "mode": mode,
            "state": "ok",
            "offered": bool(ehlo.get("starttls")),
            "code": None,
            "enhanced": None,
            "text": None,
            "reply": None,
            "error": None,
            "error_class": None,
            "verify_error": None,
            "version": None,
            "cipher": None,
            "verified": None,
            "cert": None,
            "inspect": None,
            "mode_check": None,
            "after": None,
        }

    def _tls_info_facts(self, info: TlsInfo | None) -> dict[str, Any]:
        if info is None:
            return {}
        return {
            "version": info.version,
            "cipher": info.cipher,
            "verified": info.verified,
            "cert": _cert_facts(info, self.settings.server, self.now),
        }

    def _tls_not_offered(self) -> None:
        ehlo = self.facts.get("ehlo") or {}
        facts = self._tls_base("starttls")
        facts["state"] = "not-offered"
        self.facts["tls"] = facts
        self._fail(Probe.STARTTLS, "not-offered", "STARTTLS is not offered")
        if ehlo.get("mangled"):
            proves = (
                "STARTTLS is missing from the EHLO reply and other keywords are masked: a "
                "firewall strips encryption from the session."
            )
        elif ehlo.get("helo_fallback"):
            proves = "The server only speaks HELO, so it cannot offer STARTTLS."
        else:
            proves = (
                "The mail program is set to STARTTLS, but the server does not offer it on this "
                "port: it has no certificate here, or this is not the submission port."
            )
        self._emit(
            Probe.STARTTLS,
            Status.FAIL,
            "STARTTLS",
            "Looked for STARTTLS in the EHLO reply.",
            proves,
        )

    def _tls_not_used(self, extensions: Mapping[str, str]) -> None:
        facts = self._tls_base("none")
        facts["state"] = "not-used"
        self.facts["tls"] = facts
        if "STARTTLS" in extensions:
            proves = (
                "The mail program is set to send unencrypted although the server offers "
                "STARTTLS: passwords and mail cross the network in clear text."
            )
            status = Status.INFO
        else:
            proves = "Not used: the mail program is set to no encryption, and none is offered."
            status = Status.INFO
        self._emit(
            Probe.STARTTLS, status, "STARTTLS", "Nothing: encryption is switched off.", proves
        )

    def _on_starttls(
        self, started: StartTlsResult, address: str
    ) -> Generator[Request, Result, bool]:
        facts = self._tls_base("starttls")
        facts.update(self._tls_info_facts(started.tls))
        facts.update(_reply_facts(started.reply))
        self.facts["tls"] = facts
        title = "STARTTLS and certificate"
        tried = (
            "Sent STARTTLS, negotiated TLS verifying the certificate against "
            f"{self.settings.server}, then EHLO again."
        )
        reply = started.reply
        if started.failure is not None and started.failure.kind == "tls":
            yield from self._tls_failed(started.failure, started, address, implicit=False)
            return False
        if started.failure is not None:
            facts["state"] = started.failure.kind
            facts["error"] = started.failure.detail
            self._fail(Probe.STARTTLS, started.failure.kind, started.failure.detail)
            self._emit(
                Probe.STARTTLS,
                Status.FAIL,
                title,
                tried,
                f"The session broke during STARTTLS ({started.failure.detail}).",
                transcript=started.transcript,
                duration=started.duration,
            )
            return False
        assert reply is not None
        if reply.code != 220:
            facts["state"] = "refused"
            self._fail(Probe.STARTTLS, "reply", str(reply), reply)
            proves = (
                f"The server offers STARTTLS but refuses to start it ({reply}): its TLS "
                "setup is broken (no usable certificate or key)."
            )
            self._emit(
                Probe.STARTTLS,
                Status.FAIL,
                title,
                tried,
                proves,
                transcript=started.transcript,
                duration=started.duration,
            )
            yield EndSession(polite=True)
            return False
        hello = started.hello
        if hello is None or hello.reply is None or not hello.reply.is_positive:
            facts["state"] = "ehlo-failed"
            detail = (
                hello.failure.detail
                if hello and hello.failure
                else str(hello.reply)
                if hello and hello.reply
                else "no answer"
            )
            self._fail(
                Probe.STARTTLS, "reply", detail, hello.reply if hello and hello.reply else None
            )
            self._emit(
                Probe.STARTTLS,
                Status.FAIL,
                title,
                tried,
                f"TLS was established, but EHLO afterwards failed ({detail}).",
                transcript=started.transcript,
                duration=started.duration,
            )
            yield EndSession(polite=hello is not None and hello.failure is None)
            return False
        after = dict(hello.extensions)
        facts["after"] = {
            "extensions": after,
            "keywords": sorted(after),
            "auth": after.get("AUTH", "").upper().split(),
        }
        cert = facts.get("cert") or {}
        proves = (
            f"TLS works ({facts['version']}, {facts['cipher']}); the certificate for "
            f"{cert.get('name') or cert.get('subject') or '?'} issued by "
            f"{cert.get('issuer') or '?'} is valid until {cert.get('not_after') or '?'} and "
            f"matches {self.settings.server}."
        )
        self._emit(
            Probe.STARTTLS,
            Status.OK,
            title,
            tried,
            proves,
            transcript=started.transcript,
            duration=started.duration,
        )
        return True

    def _tls_failed(
        self,
        failure: Failure,
        result: SessionResult | StartTlsResult,
        address: str,
        *,
        implicit: bool,
    ) -> Generator[Request, Result, None]:
        """A handshake failed: learn why with a second look, then explain."""
        settings = self.settings
        facts = self.facts.get("tls") or self._tls_base("implicit" if implicit else "starttls")
        self.facts["tls"] = facts
        family = classify_tls_error(failure.detail)
        facts.update(
            {
                "state": "failed",
                "error": failure.detail,
                "error_class": family,
                "verify_error": family
                if family
                in ("hostname-mismatch", "expired", "self-signed", "unknown-ca", "untrusted")
                else None,
            }
        )
        transcript = result.transcript
        duration = result.duration
        tried = (
            "Started TLS at once (implicit TLS), verifying the certificate."
            if implicit
            else "Sent STARTTLS and negotiated TLS, verifying the certificate."
        )
        if implicit and family in ("not-tls", "closed", "timeout", "other"):
            # Maybe the port speaks plain SMTP: the classic "SSL/TLS on 587" mistake.
            mode = self._expect(
                (yield TryOtherTlsMode(address, settings.port, False, self.helo)), ModeResult
            )
            facts["mode_check"] = self._mode_facts(mode)
            transcript += mode.transcript
            duration += mode.duration
            tried += " Then connected again and waited for a plain-text greeting."
            if facts["mode_check"]["works"]:
                proves = (
                    f"Port {settings.port} speaks plain SMTP first (it greeted with "
                    f"{mode.banner}), so a TLS handshake from the first byte fails "
                    f"({failure.detail}). The mail program is set to SSL/TLS where this port "
                    "wants STARTTLS."
                )
                self._fail(
                    Probe.STARTTLS,
                    "wrong-tls-mode",
                    failure.detail,
                    expected_mode="plain text first, then STARTTLS",
                    fix_security=facts["mode_check"]["security"],
                )
                self._emit(
                    Probe.STARTTLS,
                    Status.FAIL,
                    "TLS handshake (implicit TLS)",
                    tried,
                    proves,
                    transcript=transcript,
                    duration=duration,
                )
                return
        inspected = self._expect(
            (yield InspectTls(address, settings.port, implicit, self.helo)), InspectResult
        )
        transcript += inspected.transcript
        duration += inspected.duration
        facts["inspect"] = {
            "version": inspected.tls.version if inspected.tls else None,
            "error": inspected.failure.detail if inspected.failure else None,
        }
        if inspected.tls is not None:
            facts["cert"] = _cert_facts(inspected.tls, settings.server, self.now)
            facts["version"] = facts["version"] or inspected.tls.version
        tried += " Then looked again accepting any certificate and old TLS versions."
        cert = facts.get("cert") or {}
        verify_error = facts["verify_error"]
        if verify_error == "hostname-mismatch":
            proves = (
                f"The certificate is valid for {', '.join(cert.get('names') or []) or '?'} but "
                f"the mail program connects to {settings.server}: the names do not match."
            )
        elif verify_error == "expired":
            proves = f"The server's certificate expired on {cert.get('not_after') or '?'}."
        elif verify_error in ("self-signed", "unknown-ca", "untrusted"):
            proves = (
                f"The certificate ({cert.get('subject') or '?'}, issued by "
                f"{cert.get('issuer') or '?'}) does not chain to a trusted authority: "
                "self-signed, a private CA, or an incomplete chain."
            )
        elif inspected.tls is not None and family not in ("not-tls",):
            proves = (
                f"The handshake failed ({failure.detail}); accepting old versions it works "
                f"with {inspected.tls.version}: the server only offers outdated TLS that the "
                "mail program (rightly) refuses."
            )
        else:
            proves = f"The TLS handshake failed: {failure.detail}."
        self._fail(Probe.STARTTLS, "tls", failure.detail)
        self._emit(
            Probe.STARTTLS,
            Status.FAIL,
            "TLS handshake (implicit TLS)" if implicit else "STARTTLS and certificate",
            tried,
            proves,
            transcript=transcript,
            duration=duration,
        )

    # -- AUTH ---------------------------------------------------------------------------------

    def _auth_facts(self, extensions: Mapping[str, str], *, encrypted: bool) -> dict[str, Any]:
        settings = self.settings
        ehlo = self.facts.get("ehlo") or {}
        tls = self.facts.get("tls") or {}
        after = (tls.get("after") or {}).get("auth")
        mechanism = settings.auth.mechanism if settings.auth else None
        offered = extensions.get("AUTH", "").upper().split()
        return {
            "configured": settings.auth is not None,
            "state": "ok",
            "user": settings.auth.user if settings.auth else None,
            "mechanism": mechanism,
            "forced": mechanism not in (None, "auto"),
            "offered": offered,
            "offered_plain": ehlo.get("auth", []),
            "offered_after_tls": after,
            "mechanism_offered": (mechanism in offered)
            if mechanism not in (None, "auto")
            else None,
            "encrypted": encrypted,
            "code": None,
            "enhanced": None,
            "text": None,
            "reply": None,
        }

    def _auth_not_configured(self, extensions: Mapping[str, str], *, encrypted: bool) -> None:
        facts = self._auth_facts(extensions, encrypted=encrypted)
        facts["state"] = "not-configured"
        self.facts["auth"] = facts
        offered = facts["offered"]
        proves = (
            f"The mail program does not log in; the server offers AUTH {' '.join(offered)}."
            if offered
            else "The mail program does not log in, and the server offers no AUTH here."
        )
        self._emit(Probe.AUTH, Status.INFO, "AUTH", "Nothing: no login is configured.", proves)

    def _authenticate(
        self, extensions: Mapping[str, str], *, encrypted: bool, address: str
    ) -> Generator[Request, Result, bool]:
        settings = self.settings
        auth = settings.auth
        assert auth is not None
        facts = self._auth_facts(extensions, encrypted=encrypted)
        self.facts["auth"] = facts
        offered: list[str] = facts["offered"]
        mechanism: str = auth.mechanism
        title = "AUTH"
        if mechanism == "auto":
            if not offered:
                tried = "Looked for AUTH in the EHLO reply."
                transcript: Lines = ()
                duration = 0.0
                if not encrypted and (self.facts.get("ehlo") or {}).get("starttls"):
                    yield EndSession(polite=True)
                    peek = self._expect(
                        (yield PeekAfterStarttls(address, settings.port, self.helo)), PeekResult
                    )
                    after = (peek.extensions or {}).get("AUTH", "").upper().split()
                    facts["offered_after_tls"] = after if peek.extensions is not None else None
                    transcript, duration = peek.transcript, peek.duration
                    tried += " Then, on a new connection, issued STARTTLS and EHLO again."
                else:
                    yield EndSession(polite=True)
                facts["state"] = "not-offered"
                self._fail(Probe.AUTH, "not-offered", "AUTH is not offered")
                if facts["offered_after_tls"]:
                    proves = (
                        "The server offers AUTH only after STARTTLS "
                        f"({' '.join(facts['offered_after_tls'])}); the mail program, set to no "
                        "encryption, never sees it and cannot log in."
                    )
                else:
                    proves = (
                        f"The server offers no AUTH on port {settings.port} at all: this port "
                        "is for receiving mail, not for submission by users."
                    )
                self._emit(
                    Probe.AUTH,
                    Status.FAIL,
                    title,
                    tried,
                    proves,
                    transcript=transcript,
                    duration=duration,
                )
                return False
            picked = sasl.pick_mechanism(offered)
            if picked is None:
                facts["state"] = "no-common-mechanism"
                self._fail(Probe.AUTH, "no-common-mechanism", "no common AUTH mechanism")
                proves = (
                    f"The server offers AUTH {' '.join(offered)}, none of which the mail "
                    "program speaks (PLAIN, LOGIN, CRAM-MD5)."
                )
                self._emit(Probe.AUTH, Status.FAIL, title, "Compared AUTH mechanisms.", proves)
                yield EndSession(polite=True)
                return False
            mechanism = picked
        facts["mechanism"] = mechanism
        result = self._expect(
            (yield Authenticate(mechanism, auth.user, auth.password)), SessionResult
        )
        facts.update(_reply_facts(result.reply))
        tried = f"Logged in as {auth.user} with AUTH {mechanism} (password masked)."
        if result.failure is not None:
            facts["state"] = result.failure.kind
            self._fail(Probe.AUTH, result.failure.kind, result.failure.detail)
            self._emit(
                Probe.AUTH,
                Status.FAIL,
                title,
                tried,
                f"The session broke during AUTH ({result.failure.detail}).",
                transcript=result.transcript,
                duration=result.duration,
            )
            return False
        reply = result.reply
        assert reply is not None
        if reply.code == 235:
            self._emit(
                Probe.AUTH,
                Status.OK,
                title,
                tried,
                f"The login {auth.user} is accepted ({reply}).",
                transcript=result.transcript,
                duration=result.duration,
            )
            return True
        facts["state"] = "rejected"
        self._fail(Probe.AUTH, "reply", str(reply), reply)
        self._emit(
            Probe.AUTH,
            Status.FAIL,
            title,
            tried,
            f"The server refused the login: {reply}.",
            transcript=result.transcript,
            duration=result.duration,
        )
        yield EndSession(polite=_polite(result))
        return False

    # -- the envelope and the message ---------------------------------------------------------

    def _on_mail(self, mail: SessionResult) -> bool:
        facts = {"state": "ok", **_reply_facts(mail.reply)}
        self.facts["mail"] = facts
        title = f"MAIL FROM:<{self.settings.sender}>"
        tried = "Announced the sender (with the message size when SIZE is offered)."
        if mail.failure is not None:
            facts["state"] = mail.failure.kind
            self._fail(Probe.MAIL, mail.failure.kind, mail.failure.detail)
            proves = f"The session broke at MAIL ({mail.failure.detail})."
        elif mail.reply is not None and not mail.reply.is_positive:
            facts["state"] = "rejected"
            self._fail(Probe.MAIL, "reply", str(mail.reply), mail.reply)
            proves = f"The server refused the sender: {mail.reply}."
        else:
            self._emit(
                Probe.MAIL,
                Status.OK,
                title,
                tried,
                f"The sender is accepted ({mail.reply}).",
                transcript=mail.transcript,
                duration=mail.duration,
            )
            return True
        self._emit(
            Probe.MAIL,
            Status.FAIL,
            title,
            tried,
            proves,
            transcript=mail.transcript,
            duration=mail.duration,
        )
        return False

    def _on_rcpt(self, rcpt: RcptResult) -> bool:
        accepted = [address for address, reply in rcpt.replies if reply.is_positive]
        refused = {address: reply for address, reply in rcpt.replies if not reply.is_positive}
        first = next(iter(refused.values()), None)
        facts: dict[str, Any] = {
            "state": "ok",
            **_reply_facts(first),
            "accepted": accepted,
            "refused": [
                {"address": address, **_reply_facts(reply)} for address, reply in refused.items()
            ],
            "refused_addresses": list(refused),
            "count": len(self.settings.to),
        }
        self.facts["rcpt"] = facts
        title = "RCPT TO"
        tried = f"Named the recipients: {', '.join(self.settings.to)}."
        if rcpt.failure is not None:
            facts["state"] = rcpt.failure.kind
            self._fail(Probe.RCPT, rcpt.failure.kind, rcpt.failure.detail)
            self._emit(
                Probe.RCPT,
                Status.FAIL,
                title,
                tried,
                f"The session broke at RCPT ({rcpt.failure.detail}).",
                transcript=rcpt.transcript,
                duration=rcpt.duration,
            )
            return False
        if first is None:
            self._emit(
                Probe.RCPT,
                Status.OK,
                title,
                tried,
                "Every recipient is accepted.",
                transcript=rcpt.transcript,
                duration=rcpt.duration,
            )
            return True
        refusals = "; ".join(f"{address}: {reply}" for address, reply in refused.items())
        self._fail(Probe.RCPT, "reply", str(first), first)
        if accepted:
            facts["state"] = "partial"
            self._emit(
                Probe.RCPT,
                Status.FAIL,
                title,
                tried,
                f"Some recipients are refused ({refusals}); the others are accepted.",
                transcript=rcpt.transcript,
                duration=rcpt.duration,
            )
            return True
        facts["state"] = "rejected"
        self._emit(
            Probe.RCPT,
            Status.FAIL,
            title,
            tried,
            f"The server refused the recipients: {refusals}.",
            transcript=rcpt.transcript,
            duration=rcpt.duration,
        )
        return False

    def _on_data(self, data: SessionResult) -> bool:
        facts = {"state": "ok", **_reply_facts(data.reply), "ms": _ms(data.duration)}
        self.facts["data"] = facts
        size = human_size(self.settings.size)
        title = "DATA"
        tried = f"Sent the test message ({size})."
        if data.failure is not None:
            facts["state"] = data.failure.kind
            facts["error"] = data.failure.detail
            self._fail(Probe.DATA, data.failure.kind, data.failure.detail)
            proves = (
                "The connection died while the message was being sent "
                f"({data.failure.detail}): the server, or something in the path, drops "
                "the session during the transfer."
            )
        elif data.reply is not None and not data.reply.is_positive:
            facts["state"] = "rejected"
            self._fail(Probe.DATA, "reply", str(data.reply), data.reply)
            proves = f"The server refused the message: {data.reply}."
        else:
            if "problem" not in self.facts:
                self.facts["outcome"] = "accepted"
            self._emit(
                Probe.DATA,
                Status.OK,
                title,
                tried,
                f"The server took the message: {data.reply}.",
                transcript=data.transcript,
                duration=data.duration,
            )
            return True
        self._emit(
            Probe.DATA,
            Status.FAIL,
            title,
            tried,
            proves,
            transcript=data.transcript,
            duration=data.duration,
        )
        return False

    # -- delivery -----------------------------------------------------------------------------

    def _on_delivery(self, delivery: DeliveryResult) -> None:
        statuses = [d.status for d in delivery.deferrals if d.status]
        bounced = [r for r in delivery.recipients if r.fate == "bounced"]
        first = bounced[0] if bounced else None
        facts: dict[str, Any] = {
            "state": delivery.state,
            "attempts": delivery.attempts,
            "deferrals": [
                {"recipient": d.recipient, "status": d.status, "reason": d.reason}
                for d in delivery.deferrals
            ],
            "deferred": bool(delivery.deferrals),
            "deferral_statuses": statuses,
            "deferral_text": " | ".join(d.reason for d in delivery.deferrals),
            "expired": delivery.expired,
            "route_failure": delivery.route_failure,
            "recipients": [
                {
                    "address": r.address,
                    "fate": r.fate,
                    "node": r.node,
                    "status": r.status,
                    "diagnostic": r.diagnostic,
                }
                for r in delivery.recipients
            ],
            "status": first.status if first else None,
            "diagnostic": first.diagnostic if first else None,
            "code": first.reply_code if first else None,
            "remote_mta": first.remote_mta if first else None,
            "bounced_addresses": [r.address for r in bounced],
            "remote_address": delivery.remote_address,
            "text": delivery.text,
        }
        self.facts["delivery"] = facts
        title = "Follow the message"
        tried = "Followed the accepted message through the relay's queue to its destination."
        retries = ""
        if delivery.deferrals:
            shown = "; ".join(f"{d.reason}" for d in delivery.deferrals[:3])
            retries = f" On the way it was deferred {len(delivery.deferrals)} time(s): {shown}."
        if delivery.state == "delivered":
            self.facts["outcome"] = "delivered" if "problem" not in self.facts else "failed"
            status = Status.WARN if delivery.deferrals else Status.OK
            proves = f"The message arrived: {delivery.text}.{retries}"
            self._emit(
                Probe.DELIVERY,
                status,
                title,
                tried,
                proves,
                transcript=delivery.transcript,
                duration=delivery.duration,
            )
            return
        if delivery.state == "bounced" and first is not None:
            self._fail(
                Probe.DELIVERY,
                "expired" if delivery.expired else "bounce",
                first.diagnostic or f"bounced with {first.status}",
                code=first.reply_code,
                enhanced=first.status,
            )
            self.facts["outcome"] = "bounced"
            why = "the queue lifetime ran out" if delivery.expired else "a permanent failure"
            proves = (
                f"The server accepted the message, but it came back to the sender ({why}): "
                f"status {first.status}, {first.diagnostic or 'no diagnostic'}.{retries}"
            )
        elif delivery.state == "deferred":
            last = delivery.deferrals[-1] if delivery.deferrals else None
            self._fail(
                Probe.DELIVERY,
                "deferred",
                last.reason if last else delivery.text,
                enhanced=last.status if last else None,
            )
            self.facts["outcome"] = "deferred"
            proves = f"The message is still queued: {delivery.text}.{retries}"
        else:
            self.facts["outcome"] = "accepted"
            self._emit(
                Probe.DELIVERY,
                Status.INFO,
                title,
                tried,
                f"What became of the message is unknown: {delivery.text}",
                transcript=delivery.transcript,
                duration=delivery.duration,
            )
            return
        self._emit(
            Probe.DELIVERY,
            Status.FAIL,
            title,
            tried,
            proves,
            transcript=delivery.transcript,
            duration=delivery.duration,
        )


# Facts sections named differently from their probe.
_FACT_KEYS: dict[Probe, str] = {Probe.STARTTLS: "tls"}

_TITLES: dict[Probe, str] = {
    Probe.RESOLVE: "Resolve the server name",
    Probe.PORTS: "Connect",
    Probe.BANNER: "Read the greeting",
    Probe.EHLO: "EHLO and extensions",
    Probe.STARTTLS: "STARTTLS and certificate",
    Probe.AUTH: "AUTH",
    Probe.MAIL: "MAIL FROM",
    Probe.RCPT: "RCPT TO",
    Probe.DATA: "DATA",
    Probe.DELIVERY: "Follow the message",
    Probe.FIX: "Re-send with the fix",
}


def _polite(result: SessionResult) -> bool:
    """QUIT makes sense when the conversation is intact and the server is not closing."""
    return result.failure is None and not (result.reply is not None and result.reply.code == 421)


def _port_phrase(row: Mapping[str, Any]) -> str:
    port, state = row["port"], row["state"]
    if state == "open":
        if row["banner_code"] is not None:
            what = row["security"] or f"greets {row['banner_code']}"
            return f"{port} open ({row['ms']:.0f} ms, {what})"
        return f"{port} open ({row['ms']:.0f} ms)"
    return {"timeout": f"{port} timed out", "refused": f"{port} refused"}.get(
        state, f"{port} {state}"
    )


def _int_or_none(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split()[0])
    except ValueError:
        return None
