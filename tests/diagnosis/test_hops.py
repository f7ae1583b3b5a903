"""The failing hop: which leg of the route the relays' decisions and the failed step name,
who must act on it, and how the reports show it."""

from __future__ import annotations

import json
from typing import Any

from lab.diagnosis import report
from lab.diagnosis.events import Diagnosis, FailingHop, Probe, Remedy, describe_hop
from lab.diagnosis.hops import delivery_hop, failing_hop, who_acts
from lab.diagnosis.probes.delivery import routes_taken
from lab.diagnosis.requests import Deferral, DeliveryResult, RecipientOutcome, RouteTaken
from lab.scenario.model import HopKind, MailSettings

SETTINGS = MailSettings.model_validate(
    {
        "server": "mail.example.com",
        "port": 587,
        "from": "alice@example.com",
        "to": ["bob@example.net", "carol@example.org"],
    }
)


def _bounced(*routes: RouteTaken, address: str = "bob@example.net") -> DeliveryResult:
    recipient = RecipientOutcome(address, "bounced", status="5.7.1")
    return DeliveryResult("bounced", recipients=(recipient,), routes=routes)


def test_a_smart_host_refusal_names_the_smart_host_and_where_it_was_tried() -> None:
    route = RouteTaken(
        "relay",
        "example.net",
        "smarthost",
        hops=("relay.isp.net[10.0.0.5]:25",),
        tried=("relay.isp.net[10.0.0.5]:25",),
    )
    hop = delivery_hop(_bounced(route))
    assert hop is not None
    assert (hop["kind"], hop["where"], hop["node"]) == (
        "smart host",
        "relay.isp.net[10.0.0.5]:25",
        "relay",
    )


def test_the_connector_of_the_failing_domain_is_named_with_its_address_space() -> None:
    other = RouteTaken("relay", "example.org", "mx", tried=("mx.example.org[10.0.0.9]:25",))
    connector = RouteTaken(
        "relay",
        "example.net",
        "connector",
        pattern="*.net",
        hops=("partner.example.com[10.0.0.7]:25",),
    )
    deferred = DeliveryResult(
        "deferred",
        recipients=(RecipientOutcome("carol@example.org", "delivered"),),
        deferrals=(Deferral("bob@example.net", "4.4.1", "connect to partner: refused"),),
        routes=(other, connector),
    )
    hop = delivery_hop(deferred)
    assert hop is not None
    assert (hop["kind"], hop["pattern"], hop["where"]) == (
        "connector",
        "*.net",
        "partner.example.com[10.0.0.7]:25",
    )


def test_the_furthest_relay_is_the_failing_one_and_an_mx_after_an_mx_is_a_backup() -> None:
    via_smarthost = RouteTaken("relay", "example.net", "smarthost", tried=("sh[10.0.0.5]:25",))
    at_mx = RouteTaken("smarthost", "example.net", "mx", tried=("mx.example.net[10.0.0.8]:25",))
    hop = delivery_hop(_bounced(via_smarthost, at_mx))
    assert hop is not None
    assert hop["kind"] == "recipient MX"
    assert hop["node"] == "smarthost"

    to_backup = RouteTaken("relay", "example.net", "mx", tried=("mx2.example.net[10.0.0.9]:25",))
    at_backup = RouteTaken("backup", "example.net", "mx", tried=("mx.example.net[10.0.0.8]:25",))
    hop = delivery_hop(_bounced(to_backup, at_backup))
    assert hop is not None
    assert (hop["kind"], hop["where"]) == ("backup MX", "backup")


def test_a_delivered_message_has_no_failing_hop() -> None:
    route = RouteTaken("relay", "example.net", "smarthost")
    arrived = DeliveryResult(
        "delivered", recipients=(RecipientOutcome("bob@example.net", "delivered"),), routes=(route,)
    )
    assert delivery_hop(arrived) is None


def test_route_events_become_routes_with_the_attempts_of_the_same_relay_and_entry() -> None:
    events: list[dict[str, Any]] = [
        {"event": "route", "node": "relay", "queue_id": "Q1", "domain": "example.net",
         "method": "connector", "pattern": "*.net", "hops": ["p[10.0.0.7]:25"]},
        {"event": "delivery-attempt", "node": "relay", "queue_id": "Q1",
         "recipients": ["bob@example.net"], "host": "p", "address": "10.0.0.7", "port": 25},
        {"event": "delivery-attempt", "node": "other", "queue_id": "Q1",
         "recipients": ["bob@example.net"], "host": "x", "address": "10.0.0.1", "port": 25},
    ]  # fmt: skip
    (route,) = routes_taken(events)
    assert route == RouteTaken(
        "relay", "example.net", "connector", "*.net", ("p[10.0.0.7]:25",), None, ("p[10.0.0.7]:25",)
    )


def test_session_failures_name_submission_the_path_or_a_recipient_mx() -> None:
    facts: dict[str, Any] = {"ports": {"address": "10.0.0.2"}}
    hop = failing_hop(Probe.AUTH, facts, SETTINGS, on_path=False, node="relay", middlebox="isp")
    assert hop == FailingHop(HopKind.SUBMISSION, "mail.example.com[10.0.0.2]:587", "relay")
    hop = failing_hop(Probe.EHLO, facts, SETTINGS, on_path=True, node="relay", middlebox="isp")
    assert hop == FailingHop(HopKind.PATH, "isp", "isp")
    direct = SETTINGS.model_copy(update={"server": "mx2.example.net"})
    exchangers = ["mx1.example.net", "mx2.example.net"]  # the lookup lists them by preference
    facts["resolve"] = {"recipients": [{"domain": "example.net", "mx": exchangers}]}
    hop = failing_hop(Probe.RCPT, facts, direct, on_path=False, node="mx2", middlebox=None)
    assert hop is not None
    assert hop.kind is HopKind.BACKUP_MX
    assert failing_hop(None, facts, SETTINGS, on_path=False, node=None, middlebox=None) is None


def test_who_acts_on_later_hops_unless_a_setting_fixes_it() -> None:
    smart = FailingHop(HopKind.SMART_HOST, "relay.isp.net[10.0.0.5]:25", "relay")
    acts = who_acts(smart, None, fixed_by_settings=False)
    assert "relay admin" in str(acts)
    assert "relay.isp.net" in str(acts)
    connector = FailingHop(HopKind.CONNECTOR, "p[10.0.0.7]:25", "relay", "*.net")
    acts = who_acts(connector, None, fixed_by_settings=False)
    assert "customer's IT" in str(acts)
    assert "*.net" in str(acts)
    recipient = FailingHop(HopKind.RECIPIENT_MX, "mx.example.net[10.0.0.8]:25")
    assert "recipient's admin" in str(who_acts(recipient, None, fixed_by_settings=False))
    assert who_acts(recipient, "the sender's provider", fixed_by_settings=False) == (
        "the sender's provider"
    )
    assert who_acts(recipient, None, fixed_by_settings=True) is None
    submission = FailingHop(HopKind.SUBMISSION, "mail.example.com[10.0.0.2]:587")
    assert who_acts(submission, None, fixed_by_settings=False) is None


def test_reports_show_the_hop_where_the_node_was() -> None:
    hop = FailingHop(HopKind.SMART_HOST, "relay.isp.net[10.0.0.5]:25", "relay")
    diagnosis = Diagnosis(
        entry="smarthost-auth-required",
        title="The smart host wants a login",
        cause="c",
        explanation="e",
        confirm="k",
        remedy=Remedy("r", acts="the relay admin"),
        failed_probe=Probe.DELIVERY,
        node="relay",
        hop=hop,
    )
    assert report.failed_at(diagnosis) == "delivery, hop smart host relay.isp.net[10.0.0.5]:25"
    markdown = report.to_markdown([], diagnosis)
    assert "failed at: delivery, hop smart host relay.isp.net[10.0.0.5]:25" in markdown
    data = json.loads(json.dumps(report.to_json_report([], diagnosis)))
    assert data["hop"]["kind"] == "smart host"
    assert data["remedy"]["acts"] == "the relay admin"
    assert data["exit_code"] == 30
    connector = FailingHop(HopKind.CONNECTOR, "p[10.0.0.7]:25", "relay", "*.net")
    assert describe_hop(connector) == "connector *.net to p[10.0.0.7]:25"
