"""The Postfix node's generated files follow the scenario's policy, and what Postfix cannot
express is refused in one line before anything starts (no Postfix needed: pure functions)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.catalog import load
from lab.nodes.config import MailServerConfig
from lab.nodes.postfix.policy import refusals
from lab.nodes.postfix.setup import SaslUser, postfix_setup
from lab.runtime.local import LocalBackend
from lab.runtime.software import SoftwareUnsupported, unexpressible
from lab.scenario.mta import chosen_mta, with_mta
from lab.scenario.vocabulary import MtaSoftware
from lab.topology import resolve

DATA_ROOT = Path("/var/lib/smtplab")
ETC = Path("/etc/postfix")


def postfix_config(scenario_id: str, node: str) -> MailServerConfig:
    topology = resolve(with_mta(load(scenario_id), MtaSoftware.POSTFIX), data_root=DATA_ROOT)
    config = topology.nodes[node].config
    assert isinstance(config, MailServerConfig)
    return config


def settings_of(text: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line)


def test_relay_trusts_its_networks_and_logins_and_delivers_to_the_lab_mailboxes() -> None:
    config = postfix_config("relay-denied", "relay")
    setup = postfix_setup(config)
    main = settings_of(setup.files[ETC / "main.cf"])
    office = config.permit_relay.networks
    assert office
    assert main["mynetworks"] == " ".join(["127.0.0.0/8", *office])
    assert main["smtpd_relay_restrictions"] == (
        "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
    )
    assert main["virtual_mailbox_base"] == "/var/lib/smtplab/relay/mailboxes"
    assert main["maillog_file"] == "/dev/stdout"
    assert setup.files[ETC / "vmailbox"] == "alice@example.com alice@example.com/\n"
    assert setup.sasl_users == [SaslUser("alice", "example.com", "correct-horse")]
    assert main["maximal_queue_lifetime"].endswith("s")


def test_a_connector_tries_the_bridgeheads_in_dns_order_as_the_lab_relay_does() -> None:
    """Postfix shuffles a name's addresses by default: the failover would show in half the
    runs only (bridgehead-failover's diagnosis then said "healthy")."""
    main = settings_of(
        postfix_setup(postfix_config("bridgehead-failover", "relay")).files[ETC / "main.cf"]
    )
    assert main["smtp_randomize_addresses"] == "no"


def test_listeners_become_smtpd_services_with_their_tls_and_auth_policy() -> None:
    master = postfix_setup(postfix_config("relay-denied", "relay")).files[ETC / "master.cf"]
    port_25, port_587 = master.split("\n587 ")[0], master.split("\n587 ")[1].split("\npickup")[0]
    assert port_25.startswith("25 inet n - n - - smtpd")
    assert "smtpd_tls_security_level=may" in port_25
    assert "smtpd_sasl_auth_enable=yes" in port_25
    # 587: STARTTLS before anything, AUTH only under TLS, MAIL refused until logged in
    assert "smtpd_tls_security_level=encrypt" in port_587
    assert "smtpd_tls_auth_only=yes" in port_587
    assert "smtpd_sender_restrictions=permit_sasl_authenticated,reject" in port_587
    assert "smtpd_delay_reject=no" in port_587


@pytest.mark.parametrize(
    ("scenario_id", "node", "setting", "value"),
    [
        ("message-too-large", "relay", "message_size_limit", None),
        ("dnsbl-listed", "mx", "smtpd_recipient_restrictions", "reject_rbl_client"),
        ("missing-ptr", "mx", "smtpd_recipient_restrictions", "reject_unknown_client_hostname"),
        ("greylisted", "mx", "smtpd_recipient_restrictions", "check_policy_service"),
        ("rate-limited", "mx", "smtpd_client_connection_rate_limit", None),  # refused: relay
        ("send-as-denied", "relay", "smtpd_sender_restrictions", "login_mismatch"),
    ],
)
def test_each_policy_has_its_postfix_setting(
    scenario_id: str, node: str, setting: str, value: str | None
) -> None:
    main = settings_of(postfix_setup(postfix_config(scenario_id, node)).files[ETC / "main.cf"])
    assert setting in main
    if value is not None:
        assert value in main[setting]


def test_greylisting_starts_postgrey_with_the_lab_time_delay() -> None:
    setup = postfix_setup(postfix_config("greylisted", "mx"))
    assert setup.postgrey is not None
    assert setup.postgrey[0] == "postgrey"
    assert "--delay=1" in setup.postgrey  # 5 min of world time is well under a lab second


def test_extra_postfix_settings_win_over_the_generated_ones(tmp_path: Path) -> None:
    config = postfix_config("happy-path", "mx").model_copy(
        update={"postfix": {"smtpd_client_connection_count_limit": "1", "mynetworks": "x"}}
    )
    main = settings_of(postfix_setup(config).files[ETC / "main.cf"])
    assert main["smtpd_client_connection_count_limit"] == "1"
    assert main["mynetworks"] == "x"


@pytest.mark.parametrize(
    ("scenario_id", "reason"),
    [
        ("no-banner-tarpit", "never greets"),
        ("helo-only-server", "ESMTP"),
        ("dropped-during-data", "during DATA"),
        ("mailbox-full", "per-mailbox state"),
        ("spf-fail", "SPF"),
        ("tls-unavailable", "STARTTLS"),
        ("tls-handshake-failure", "legacy TLS"),
        ("rate-limited", "whole seconds"),
    ],
)
def test_what_postfix_cannot_express_is_refused_with_a_reason(
    scenario_id: str, reason: str
) -> None:
    topology = resolve(with_mta(load(scenario_id), MtaSoftware.POSTFIX), data_root=DATA_ROOT)
    found = unexpressible(topology)
    assert any(reason in text for reasons in found.values() for text in reasons), found


def test_the_lab_server_refuses_postfix_settings() -> None:
    config = postfix_config("happy-path", "mx").model_copy(
        update={"software": MtaSoftware.LAB, "postfix": {"x": "y"}}
    )
    assert refusals(config) == ["extra 'postfix' settings need software: postfix"]


def test_the_local_backend_refuses_postfix_nodes() -> None:
    scenario = with_mta(load("happy-path"), MtaSoftware.POSTFIX)
    with pytest.raises(SoftwareUnsupported, match="only the docker backend runs"):
        LocalBackend().plan(scenario)


def test_mta_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTPLAB_MTA", raising=False)
    assert chosen_mta(None) is None
    monkeypatch.setenv("SMTPLAB_MTA", "postfix")
    assert chosen_mta(None) is MtaSoftware.POSTFIX
    assert chosen_mta("lab") is MtaSoftware.LAB


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "happy-path", "--mta", "postfix", "--backend", "local"], "only the docker"),
        (["run", "happy-path", "--mta", "exim"], "invalid choice"),
        (
            [
                "diagnose",
                "--server",
                "h",
                "--from",
                "a@x.org",
                "--to",
                "b@x.org",
                "--mta",
                "postfix",
            ],
            "--mta is for scenarios",
        ),
    ],
)
def test_mta_errors_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "SMTPLAB_MTA"}
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_relays_smarthost_login_becomes_a_password_map() -> None:
    from lab.scenario.repair import repaired

    scenario = repaired(with_mta(load("smarthost-auth-required"), MtaSoftware.POSTFIX))
    config = resolve(scenario, data_root=DATA_ROOT).nodes["relay"].config
    assert isinstance(config, MailServerConfig)
    setup = postfix_setup(config)
    main = settings_of(setup.files[ETC / "main.cf"])
    assert main["relayhost"] == "[smtp.isp.example]:25"
    assert main["smtp_sasl_auth_enable"] == "yes"
    assert main["smtp_sasl_password_maps"] == f"texthash:{ETC / 'sasl_passwd'}"
    assert main["smtp_sasl_tls_security_options"] == "noanonymous"
    assert (
        setup.files[ETC / "sasl_passwd"]
        == "[smtp.isp.example]:25 corp@isp.example:isp-relay-pass\n"
    )
    # Unrepaired, the relay has no login to give: no password map at all.
    unrepaired = postfix_setup(postfix_config("smarthost-auth-required", "relay"))
    assert ETC / "sasl_passwd" not in unrepaired.files
    assert "smtp_sasl_auth_enable" not in settings_of(unrepaired.files[ETC / "main.cf"])
