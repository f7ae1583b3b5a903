"""The fault fields of the scenario schema: what is refused, and how `resolve` carries the
rest into node configs (real seconds stay real, world time is compressed, DNSBL listings
become records, a router's inspection becomes its config and `inspection_for`)."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab.errors import ScenarioError
from lab.nodes.config import DnsConfig, InspectionConfig, MailServerConfig, RouterConfig
from lab.scenario.loader import load_scenario, parse_scenario
from lab.scenario.model import SendAsPolicy, TlsVersions
from lab.topology import Topology, dnsbl_name, inspection_for, path_verdict, resolve

SCENARIOS = Path(__file__).parents[1] / "scenarios"
HAPPY = SCENARIOS / "happy-path.yaml"
MX_LINE = "    hostname: mx.example.net\n"
RELAY_LINE = "    hostname: mail.example.com\n"


def topology(name: str) -> Topology:
    return resolve(load_scenario(SCENARIOS / f"{name}.yaml"))


def happy_with(old: str, new: str) -> str:
    text = HAPPY.read_text()
    assert old in text, f"fixture drift: {old!r} not in happy-path.yaml"
    return text.replace(old, new, 1)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "case.yaml", default_id="case")
    return [str(problem) for problem in caught.value.problems]


def mail_config(topo: Topology, node: str) -> MailServerConfig:
    config = topo.nodes[node].config
    assert isinstance(config, MailServerConfig)
    return config


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        (MX_LINE, MX_LINE + "    tarpit: true\n    no_service: true\n", "exclude each other"),
        (MX_LINE, MX_LINE + "    tarpitt: true\n", "tarpitt"),
        (MX_LINE, MX_LINE + "    rate_limit: {connections: 0}\n", "connections"),
        (MX_LINE, MX_LINE + "    rate_limit: {per: 1m}\n", "connections"),
        (MX_LINE, MX_LINE + "    ptr_reject_code: 451\n", "ptr_reject_code"),
        (MX_LINE, MX_LINE + "    limits: {connections: 0}\n", "connections"),
        (MX_LINE, MX_LINE + "    limits: {per_client: -1}\n", "per_client"),
        (MX_LINE, MX_LINE + "    limits: {idle_timeout: 0}\n", "idle_timeout"),
        (MX_LINE, MX_LINE + "    limits: {sessions: 5}\n", "sessions"),
        (MX_LINE, MX_LINE + "    max_recipients: 0\n", "max_recipients"),
        (MX_LINE, MX_LINE + "    dnsbl: [localhost]\n", "dnsbl"),
        (MX_LINE, MX_LINE + "    banner_delay: soon\n", "banner_delay"),
        (MX_LINE, MX_LINE + "    send_as: enforce\n", "send_as"),  # relays only
        (
            MX_LINE,
            MX_LINE + "    listeners: [{port: 25, tls: none, starttls_broken: true}]\n",
            "starttls_broken",
        ),
        (
            MX_LINE,
            MX_LINE + "    listeners: [{port: 25, tls: none, tls_versions: legacy}]\n",
            "tls_versions",
        ),
        (
            MX_LINE,
            MX_LINE + "    esmtp: false\n    listeners: [{port: 25, auth: offered}]\n",
            "AUTH",
        ),
        (
            MX_LINE,
            MX_LINE + "    esmtp: false\n    listeners: [{port: 25, require_tls: true}]\n",
            "STARTTLS",
        ),
        (
            "    outside: internet\n",
            "    outside: internet\n    inspection: {ports: []}\n",
            "inspection",
        ),
    ],
)
def test_refused(old: str, new: str, fragment: str) -> None:
    problems = problems_of(happy_with(old, new))
    assert len(problems) == 1
    assert fragment in problems[0]
    assert problems[0].startswith("case.yaml:")


def test_a_helo_only_server_keeps_a_plain_starttls_listener() -> None:
    # Listeners default to tls: starttls; a HELO-only server simply cannot offer it.
    scenario = parse_scenario(happy_with(MX_LINE, MX_LINE + "    esmtp: false\n"), "x.yaml", "x")
    assert not mail_config(resolve(scenario), "mx").esmtp


# --- resolve -------------------------------------------------------------------------------------


def test_defaults_leave_servers_well_behaved() -> None:
    config = mail_config(topology("happy-path"), "mx")
    assert (config.banner_delay, config.tarpit, config.no_service) == (0.0, False, False)
    assert config.rate_limit is None
    assert config.esmtp
    assert not config.checks.enabled
    assert config.max_recipients is None
    assert not config.drop_during_data
    assert config.send_as is SendAsPolicy.ANY
    assert all(
        not listener.starttls_broken and listener.tls_versions is TlsVersions.MODERN
        for listener in config.listeners
    )


def test_the_servers_own_address_is_spared_by_greeting_faults() -> None:
    topo = topology("no-banner-tarpit")
    config = mail_config(topo, "old-relay")
    assert config.tarpit
    assert config.fault_exempt == [str(topo.nodes["old-relay"].address)]


def test_banner_delay_is_real_seconds_and_the_rate_window_world_time() -> None:
    text = happy_with(
        MX_LINE, MX_LINE + "    banner_delay: 2s\n    rate_limit: {connections: 3, per: 1h}\n"
    )
    config = mail_config(resolve(parse_scenario(text, "x.yaml", "x")), "mx")
    assert config.banner_delay == 2.0  # what the client waits: never compressed
    assert config.rate_limit is not None
    assert config.rate_limit.connections == 3
    assert config.rate_limit.per == pytest.approx(1.0)  # 1 h at speedup 3600


def test_session_limits_have_defaults_and_the_idle_timeout_is_real_seconds() -> None:
    default = mail_config(
        resolve(parse_scenario(happy_with(MX_LINE, MX_LINE), "x.yaml", "x")), "mx"
    )
    assert (default.limits.connections, default.limits.per_client) == (1000, 50)
    assert default.limits.idle_timeout == 300.0  # RFC 5321 §4.5.3.2: at least 5 minutes
    text = happy_with(
        MX_LINE, MX_LINE + "    limits: {connections: 20, per_client: 2, idle_timeout: 10m}\n"
    )
    config = mail_config(resolve(parse_scenario(text, "x.yaml", "x")), "mx")
    assert (config.limits.connections, config.limits.per_client) == (20, 2)
    assert config.limits.idle_timeout == 600.0  # what the client waits: never compressed


def test_client_checks_carried_with_absolute_zones() -> None:
    text = happy_with(
        MX_LINE,
        MX_LINE + "    require_ptr: true\n    ptr_reject_code: 550\n"
        "    dnsbl: [zen.dnsbl.example]\n    check_spf: true\n"
        "    reject_unknown_sender_domain: true\n    max_recipients: 50\n"
        "    drop_during_data: true\n",
    )
    config = mail_config(resolve(parse_scenario(text, "x.yaml", "x")), "mx")
    checks = config.checks
    assert (checks.require_ptr, checks.ptr_reject_code) == (True, 550)
    assert checks.dnsbl == ["zen.dnsbl.example."]
    assert checks.check_spf
    assert checks.reject_unknown_sender_domain
    assert checks.enabled
    assert config.max_recipients == 50
    assert config.drop_during_data


def test_listener_tls_faults_and_send_as() -> None:
    relay = mail_config(topology("tls-handshake-failure"), "relay")
    versions = {listener.port: listener.tls_versions for listener in relay.listeners}
    assert versions == {25: "modern", 587: "legacy", 465: "modern"}
    broken = mail_config(topology("tls-unavailable"), "relay")
    assert [lis.port for lis in broken.listeners if lis.starttls_broken] == [587]
    assert mail_config(topology("send-as-denied"), "relay").send_as is SendAsPolicy.ENFORCE
    assert not mail_config(topology("helo-only-server"), "relay").esmtp


def test_listed_on_publishes_dnsbl_records_for_what_servers_see() -> None:
    topo = topology("dnsbl-listed")
    dns = topo.nodes["dns"].config
    assert isinstance(dns, DnsConfig)
    # The router is listed by its outside address: the one it masquerades behind.
    outside = topo.nodes["isp"].addresses["internet"]
    owner = dnsbl_name(outside, "zen.dnsbl.example")
    assert owner == f"{'.'.join(reversed(str(outside).split('.')))}.zen.dnsbl.example."
    records = {(r.name, r.type, r.value) for r in dns.records}
    assert (owner, "A", "127.0.0.2") in records
    assert any(name == owner and rtype == "TXT" for name, rtype, _ in records)
    assert "zen.dnsbl.example." in dns.zones
    assert mail_config(topo, "mx").checks.dnsbl == ["zen.dnsbl.example."]


def test_listed_on_for_a_mail_server() -> None:
    text = happy_with(RELAY_LINE, RELAY_LINE + "    listed_on: [bl.example]\n")
    topo = resolve(parse_scenario(text, "x.yaml", "x"))
    dns = topo.nodes["dns"].config
    assert isinstance(dns, DnsConfig)
    owner = dnsbl_name(topo.nodes["relay"].address, "bl.example.")
    assert owner == "11.1.213.10.bl.example."
    assert (owner, "A", "127.0.0.2") in {(r.name, r.type, r.value) for r in dns.records}


def test_router_inspection_config_and_who_inspects() -> None:
    topo = topology("firewall-smtp-inspection")
    router = topo.nodes["firewall"].config
    assert isinstance(router, RouterConfig)
    assert router.inspection == InspectionConfig(ports=[25])
    relay = str(topo.nodes["relay"].address)
    through_25 = path_verdict(topo, "laptop", relay, 25)
    assert inspection_for(topo, through_25, 25) == router.inspection
    assert inspection_for(topo, path_verdict(topo, "laptop", relay, 587), 587) is None
    # Same network: no router, no inspection.
    assert inspection_for(topo, path_verdict(topo, "mx", relay, 25), 25) is None
    plain = topology("happy-path").nodes["isp"].config
    assert isinstance(plain, RouterConfig)
    assert plain.inspection is None


def test_inspection_only_on_allowed_connections() -> None:
    text = happy_with(
        "    outside: internet\n",
        "    outside: internet\n    inspection: {ports: [25]}\n    ports: {25: reject}\n",
    )
    topo = resolve(parse_scenario(text, "x.yaml", "x"))
    verdict = path_verdict(topo, "laptop", str(topo.nodes["relay"].address), 25)
    assert inspection_for(topo, verdict, 25) is None
    assert topo.nodes["relay"].address == IPv4Address("10.213.1.11")
