"""The lab DNS node: the pure handler table-driven, then the real server over UDP and TCP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.rcode
import pytest

from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.nodes.dns import DnsHandler, RunningDns, parse_record, serve, start
from lab.nodes.events import read_events

HOST = "127.0.0.1"
SOA = "example.com. 300 IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 300"
REVERSE_SOA = (
    "2.0.10.in-addr.arpa. 300 IN SOA ns.2.0.10.in-addr.arpa. "
    "hostmaster.2.0.10.in-addr.arpa. 1 3600 600 86400 300"
)
SPF = "v=spf1 a:mail.example.com -all"
MANY_A = [f"10.9.0.{i}" for i in range(1, 41)]  # 40 x 16 bytes: too big for 512-byte UDP


def record(name: str, rdtype: str, value: str, ttl: int = 300) -> DnsRecordConfig:
    return DnsRecordConfig.model_validate(
        {"name": name, "type": rdtype, "value": value, "ttl": ttl}
    )


RECORDS = [
    record("example.com.", "MX", "10 mail.example.com."),
    record("example.com.", "TXT", SPF),
    record("mail.example.com.", "A", "10.0.2.5"),
    record("www.example.com.", "CNAME", "mail.example.com."),
    record("loop1.example.com.", "CNAME", "loop2.example.com."),
    record("loop2.example.com.", "CNAME", "loop1.example.com."),
    record("dangling.example.com.", "CNAME", "nowhere.example.com."),
    record("sick.example.com.", "CNAME", "host.broken.example.com."),
    record("deep.sub.example.com.", "A", "10.0.2.6"),
    record("big.example.com.", "A", MANY_A[0]),
    *(record("big.example.com.", "A", address) for address in MANY_A[1:]),
    record("nomail.example.com.", "MX", "0 ."),
    record("5.2.0.10.in-addr.arpa.", "PTR", "mail.example.com."),
]
ZONES = ["example.com.", "2.0.10.in-addr.arpa."]
FAULTS = {
    "broken.example.com.": "servfail",
    "gone.example.com.": "nxdomain",
    "silent.example.com.": "timeout",
}


def make_config(data_dir: Path) -> DnsConfig:
    return DnsConfig.model_validate(
        {
            "name": "dns",
            "data_dir": data_dir,
            "listen_host": HOST,
            "port": 0,
            "zones": ZONES,
            "records": RECORDS,
            "faults": FAULTS,
        }
    )


@pytest.fixture
def handler(tmp_path: Path) -> DnsHandler:
    return DnsHandler.from_config(make_config(tmp_path))


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningDns]:
    running = await start(make_config(tmp_path))
    yield running
    await running.stop()


def text(rrsets: list[dns.rrset.RRset]) -> list[str]:
    return [line for rrset in rrsets for line in rrset.to_text().splitlines()]


# --- the pure handler -------------------------------------------------------------------------

NXDOMAIN = dns.rcode.NXDOMAIN
NOERROR = dns.rcode.NOERROR

HANDLER_CASES = [
    # qname, qtype, rcode, answer, authority
    ("mail.example.com.", "A", NOERROR, ["mail.example.com. 300 IN A 10.0.2.5"], []),
    ("MAIL.Example.COM.", "A", NOERROR, ["MAIL.Example.COM. 300 IN A 10.0.2.5"], []),
    ("example.com.", "MX", NOERROR, ["example.com. 300 IN MX 10 mail.example.com."], []),
    ("nomail.example.com.", "MX", NOERROR, ["nomail.example.com. 300 IN MX 0 ."], []),
    ("example.com.", "TXT", NOERROR, [f'example.com. 300 IN TXT "{SPF}"'], []),
    ("example.com.", "SOA", NOERROR, [SOA], []),
    ("example.com.", "NS", NOERROR, ["example.com. 300 IN NS ns.example.com."], []),
    (
        "5.2.0.10.in-addr.arpa.",
        "PTR",
        NOERROR,
        ["5.2.0.10.in-addr.arpa. 300 IN PTR mail.example.com."],
        [],
    ),
    (
        "www.example.com.",
        "A",
        NOERROR,
        ["www.example.com. 300 IN CNAME mail.example.com.", "mail.example.com. 300 IN A 10.0.2.5"],
        [],
    ),
    ("www.example.com.", "CNAME", NOERROR, ["www.example.com. 300 IN CNAME mail.example.com."], []),
    (
        "dangling.example.com.",
        "A",
        NXDOMAIN,
        ["dangling.example.com. 300 IN CNAME nowhere.example.com."],
        [SOA],
    ),
    (
        "loop1.example.com.",
        "A",
        NOERROR,
        [
            "loop1.example.com. 300 IN CNAME loop2.example.com.",
            "loop2.example.com. 300 IN CNAME loop1.example.com.",
        ],
        [],
    ),
    # NODATA: the name exists, the type does not; an empty non-terminal exists too.
    ("mail.example.com.", "MX", NOERROR, [], [SOA]),
    ("sub.example.com.", "A", NOERROR, [], [SOA]),
    ("6.2.0.10.in-addr.arpa.", "PTR", NXDOMAIN, [], [REVERSE_SOA]),
    ("nope.example.com.", "A", NXDOMAIN, [], [SOA]),
    ("www.example.org.", "A", NXDOMAIN, [], []),  # outside every zone: no other DNS exists
    # Faults apply to the name and every name below it.
    ("gone.example.com.", "A", NXDOMAIN, [], [SOA]),
    ("a.b.gone.example.com.", "MX", NXDOMAIN, [], [SOA]),
    ("broken.example.com.", "A", dns.rcode.SERVFAIL, [], []),
    ("x.broken.example.com.", "TXT", dns.rcode.SERVFAIL, [], []),
    ("sick.example.com.", "A", dns.rcode.SERVFAIL, [], []),  # a CNAME into a broken zone
]


@pytest.mark.parametrize(("qname", "qtype", "rcode", "answer", "authority"), HANDLER_CASES)
def test_handler_answers(
    handler: DnsHandler,
    qname: str,
    qtype: str,
    rcode: dns.rcode.Rcode,
    answer: list[str],
    authority: list[str],
) -> None:
    response = handler.handle(dns.message.make_query(qname, qtype))
    assert isinstance(response, dns.message.Message)
    assert response.rcode() == rcode
    assert text(response.answer) == answer
    assert text(response.authority) == authority
    assert bool(response.flags & dns.flags.AA) == (rcode != dns.rcode.SERVFAIL)


@pytest.mark.parametrize("qname", ["silent.example.com.", "mx.silent.example.com."])
def test_handler_timeout_fault_is_silence(handler: DnsHandler, qname: str) -> None:
    assert handler.handle(dns.message.make_query(qname, "A")) is None


def test_handler_refuses_what_it_does_not_serve(handler: DnsHandler) -> None:
    chaos = dns.message.make_query("version.bind.", "TXT", "CH")
    axfr = dns.message.make_query("example.com.", "AXFR")
    notify = dns.message.make_query("example.com.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    results = [handler.handle(query) for query in (chaos, axfr, notify)]
    assert [r.rcode() for r in results if isinstance(r, dns.message.Message)] == [
        dns.rcode.REFUSED,
        dns.rcode.REFUSED,
        dns.rcode.NOTIMP,
    ]


def test_handler_ignores_responses(handler: DnsHandler) -> None:
    response = dns.message.make_response(dns.message.make_query("example.com.", "A"))
    assert handler.handle(response) is None


JUNK_CASES = [
    # wire, rcode logged, a reply with this id (None: no reply)
    (b"", "silent", None),
    (b"\x12", "silent", None),
    (b"\x12\x34junk", "FORMERR", 0x1234),
    (b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example", "FORMERR", 0xABCD),
    (b"\x12\x34\x80\x00" + b"\xff" * 8, "silent", None),  # QR set: never answer a response
    (bytes(range(256)) * 2, "FORMERR", 0x0001),
]


@pytest.mark.parametrize(("wire", "rcode", "reply_id"), JUNK_CASES)
def test_handler_survives_junk(
    handler: DnsHandler, wire: bytes, rcode: str, reply_id: int | None
) -> None:
    outcome = handler.handle_wire(wire, "udp")
    assert outcome.rcode == rcode
    assert outcome.error is not None
    if reply_id is None:
        assert outcome.reply is None
    else:
        assert outcome.reply is not None
        reply = dns.message.from_wire(outcome.reply, question_only=True)
        assert (reply.id, reply.rcode()) == (reply_id, dns.rcode.FORMERR)


def test_handler_truncates_big_udp_answers(handler: DnsHandler) -> None:
    wire = dns.message.make_query("big.example.com.", "A").to_wire()
    udp = handler.handle_wire(wire, "udp")
    tcp = handler.handle_wire(wire, "tcp")
    assert udp.reply is not None
    assert tcp.reply is not None
    assert len(udp.reply) <= 512
    assert dns.message.from_wire(udp.reply).flags & dns.flags.TC
    assert len(dns.message.from_wire(tcp.reply).answer[0]) == len(MANY_A)


def test_handler_bug_answers_servfail(handler: DnsHandler, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(request: dns.message.Message) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(handler, "handle", broken)
    outcome = handler.handle_wire(dns.message.make_query("example.com.", "A").to_wire(), "tcp")
    assert outcome.rcode == "SERVFAIL"
    assert outcome.error == "handler failed: RuntimeError('bug')"


def test_records_parse_forgivingly_and_fail_clearly() -> None:
    assert parse_record(record("Example.com", "MX", "10 mail.example.com")).to_text() == (
        "Example.com. 300 IN MX 10 mail.example.com."
    )
    long_text = "k" * 300  # a DKIM key is longer than one 255-byte character-string
    assert parse_record(record("d._domainkey.example.com.", "TXT", long_text)).to_text() == (
        f'd._domainkey.example.com. 300 IN TXT "{"k" * 255}" "{"k" * 45}"'
    )
    assert parse_record(record("x.", "TXT", '"a" "b"')).to_text() == 'x. 300 IN TXT "a" "b"'
    with pytest.raises(ValueError, match=r"dns record mail.example.com. A 'not-an-ip': "):
        parse_record(record("mail.example.com.", "A", "not-an-ip"))


# --- the real server --------------------------------------------------------------------------


async def ask(
    running: RunningDns, qname: str, qtype: str, transport: str = "udp", timeout: float = 1.0
) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype)
    port = running.ports[53]
    if transport == "udp":
        return await dns.asyncquery.udp(query, HOST, timeout=timeout, port=port)
    return await dns.asyncquery.tcp(query, HOST, timeout=timeout, port=port)


TRANSPORTS = ["udp", "tcp"]

SERVER_CASES = [
    ("mail.example.com.", "A", "NOERROR", ["mail.example.com. 300 IN A 10.0.2.5"], []),
    ("example.com.", "MX", "NOERROR", ["example.com. 300 IN MX 10 mail.example.com."], []),
    ("nomail.example.com.", "MX", "NOERROR", ["nomail.example.com. 300 IN MX 0 ."], []),
    ("example.com.", "TXT", "NOERROR", [f'example.com. 300 IN TXT "{SPF}"'], []),
    (
        "5.2.0.10.in-addr.arpa.",
        "PTR",
        "NOERROR",
        ["5.2.0.10.in-addr.arpa. 300 IN PTR mail.example.com."],
        [],
    ),
    (
        "www.example.com.",
        "A",
        "NOERROR",
        ["www.example.com. 300 IN CNAME mail.example.com.", "mail.example.com. 300 IN A 10.0.2.5"],
        [],
    ),
    ("mail.example.com.", "MX", "NOERROR", [], [SOA]),
    ("nope.example.com.", "A", "NXDOMAIN", [], [SOA]),
    ("gone.example.com.", "A", "NXDOMAIN", [], [SOA]),
    ("broken.example.com.", "MX", "SERVFAIL", [], []),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_answers_over_udp_and_tcp(server: RunningDns, transport: str) -> None:
    for qname, qtype, rcode, answer, authority in SERVER_CASES:
        response = await ask(server, qname, qtype, transport)
        got = (dns.rcode.to_text(response.rcode()), text(response.answer), text(response.authority))
        assert got == (rcode, answer, authority), (qname, qtype)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_timeout_fault_stays_silent(server: RunningDns, transport: str) -> None:
    with pytest.raises(dns.exception.Timeout):
        await ask(server, "mx.silent.example.com.", "A", transport, timeout=0.2)
    # ...and still answers everything else afterwards.
    assert (await ask(server, "example.com.", "MX", transport)).rcode() == dns.rcode.NOERROR


async def test_server_big_answer_truncated_on_udp_whole_on_tcp(server: RunningDns) -> None:
    udp = await ask(server, "big.example.com.", "A", "udp")
    tcp = await ask(server, "big.example.com.", "A", "tcp")
    assert udp.flags & dns.flags.TC
    assert sorted(rdata.to_text() for rdata in tcp.answer[0]) == sorted(MANY_A)


async def test_server_answers_records_in_the_zone_order_every_time(server: RunningDns) -> None:
    """Never shuffled: Postfix tries addresses as given (smtp_randomize_addresses = no), and
    a failover to the second address must happen on every run, not on half of them."""
    orders = set()
    for _ in range(12):
        response = await ask(server, "big.example.com.", "A", "tcp")  # 40 records: whole on TCP
        orders.add(tuple(rdata.to_text() for rdata in response.answer[0]))
    assert orders == {tuple(MANY_A)}


async def test_server_survives_junk_over_udp(server: RunningDns) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((HOST, server.ports[53]))
        await loop.sock_sendall(sock, b"\x01")  # unreadable: ignored
        await loop.sock_sendall(sock, b"\x12\x34\x01\x00" + b"\xff" * 40)  # an id: FORMERR
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(sock, 65535), 1.0))
        assert (reply.id, reply.rcode()) == (0x1234, dns.rcode.FORMERR)
    assert (await ask(server, "mail.example.com.", "A")).answer


async def test_server_survives_junk_over_tcp(server: RunningDns) -> None:
    reader, writer = await asyncio.open_connection(HOST, server.ports[53])
    try:
        junk = b"\x56\x78\x01\x00" + b"\xee" * 20
        writer.write(len(junk).to_bytes(2, "big") + junk)
        # The same connection keeps working for a real query after the junk.
        query = dns.message.make_query("example.com.", "TXT")
        writer.write(query.to_wire(prepend_length=True))
        replies = []
        for _ in range(2):
            length = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 1.0), "big")
            replies.append(dns.message.from_wire(await reader.readexactly(length)))
    finally:
        writer.close()
        await writer.wait_closed()
    assert [(r.id, r.rcode()) for r in replies] == [
        (0x5678, dns.rcode.FORMERR),
        (query.id, dns.rcode.NOERROR),
    ]
    assert text(replies[1].answer) == [f'example.com. 300 IN TXT "{SPF}"']


async def test_server_logs_every_query(server: RunningDns, tmp_path: Path) -> None:
    await ask(server, "example.com.", "MX", "udp")
    await ask(server, "nope.example.com.", "A", "tcp")
    with pytest.raises(dns.exception.Timeout):
        await ask(server, "silent.example.com.", "TXT", "udp", timeout=0.05)
    events = [e for e in read_events(tmp_path) if e["event"] == "query"]
    fields = [
        (e["qname"], e["qtype"], e["rcode"], e["answers"], e["transport"], e["node"])
        for e in events
    ]
    assert fields == [
        (
            "example.com.",
            "MX",
            "NOERROR",
            ["example.com. 300 IN MX 10 mail.example.com."],
            "udp",
            "dns",
        ),
        ("nope.example.com.", "A", "NXDOMAIN", [], "tcp", "dns"),
        ("silent.example.com.", "TXT", "silent", [], "udp", "dns"),
    ]
    assert all(e["peer"].startswith(f"{HOST}:") for e in events)


async def test_udp_and_tcp_share_the_port_and_stop_is_idempotent(tmp_path: Path) -> None:
    running = await start(make_config(tmp_path))
    port = running.ports[53]
    assert list(running.ports) == [53]
    assert port > 0
    # An open TCP connection must not keep the server from stopping.
    _reader, writer = await asyncio.open_connection(HOST, port)
    await running.stop()
    await running.stop()
    assert await _reader.read() == b""  # the server closed our connection
    writer.close()
    await writer.wait_closed()
    # Both sockets are really gone: the same port binds again for UDP and TCP.
    again = await start(make_config(tmp_path).model_copy(update={"port": port}))
    assert again.ports == {53: port}
    await again.stop()


async def test_start_rejects_a_bad_record(tmp_path: Path) -> None:
    config = make_config(tmp_path).model_copy(
        update={"records": [record("mail.example.com.", "MX", "ten mail.example.com.")]}
    )
    with pytest.raises(ValueError, match=r"dns record mail\.example\.com\. MX"):
        await start(config)


async def test_serve_runs_until_cancelled(tmp_path: Path) -> None:
    task = asyncio.create_task(serve(make_config(tmp_path)))
    # serve() never returns: its "ready" event is how a caller learns the port.
    ready: list[dict[str, Any]] = []
    for _ in range(100):
        ready = [e for e in read_events(tmp_path) if e["event"] == "ready"]
        if ready:
            break
        await asyncio.sleep(0.01)
    assert ready, "serve() never became ready"
    query = dns.message.make_query("mail.example.com.", "A")
    response = await dns.asyncquery.tcp(query, HOST, timeout=1.0, port=ready[0]["port"])
    assert text(response.answer) == ["mail.example.com. 300 IN A 10.0.2.5"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ConnectionRefusedError):  # the listener is gone
        await asyncio.open_connection(HOST, ready[0]["port"])
