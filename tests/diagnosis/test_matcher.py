"""The catalog as data: the pure matcher, templates, and validation of faults.yaml."""

from __future__ import annotations

from typing import Any

import pytest

from lab.diagnosis.catalog import (
    UNKNOWN,
    CatalogError,
    Entry,
    RemedySpec,
    check,
    load_catalog,
    lookup,
    match,
    matches,
    parse_catalog,
    render,
    render_settings,
)

FACTS: dict[str, Any] = {
    "settings": {"server": "mail.example.com", "port": 25, "auth": False},
    "ports": {
        "state": "timeout",
        "timeout": 3.0,
        "open": [465, 587],
        "others_open": [465, 587],
        "suggested": {"port": 587, "security": "starttls", "ms": 4.2},
        "refused": [],
    },
    "problem": {"probe": "ports", "kind": "timeout", "code": None, "text": "timed out"},
    "rcpt": {"code": 550, "enhanced": "5.1.1", "text": "User unknown"},
    "outcome": "failed",
}


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        # plain values: equality, or membership when the fact is a list
        ("timeout", "timeout", True),
        ("timeout", "refused", False),
        (587, [465, 587], True),
        (25, [465, 587], False),
        # a list of values: one of them
        (["refused", "timeout"], "timeout", True),
        ([5, 6], [1, 2], False),
        # booleans never equal numbers
        (True, 1, False),
        (1, True, False),
        (True, True, True),
        (None, None, True),
        # regular expressions, case-insensitive, on strings or lists of strings
        ({"re": "relay"}, "Relay access denied", True),
        ({"re": "^5"}, 550, False),
        ({"re": "grey"}, ["451 greylisted", "x"], True),
        # present: set and not empty
        ({"present": True}, [587], True),
        ({"present": True}, [], False),
        ({"present": False}, None, True),
        ({"present": False}, "", True),
        # numbers
        ({"gte": 500}, 550, True),
        ({"gte": 400, "lt": 500}, 451, True),
        ({"gte": 400, "lt": 500}, 550, False),
        ({"lte": 3}, "3", False),
        ({"gt": 0}, True, False),
        # negation
        ({"not": ["resolve", "ports"]}, "rcpt", True),
        ({"not": ["resolve", "ports"]}, "ports", False),
        ({"not": "x"}, None, True),
    ],
)
def test_conditions(condition: Any, value: Any, expected: bool) -> None:
    assert check(condition, value) is expected


def test_lookup_walks_dicts_and_list_indexes() -> None:
    assert lookup(FACTS, "ports.suggested.port") == 587
    assert lookup(FACTS, "ports.open.1") == 587
    assert check({"present": False}, lookup(FACTS, "ports.nothing.here"))
    assert check({"present": False}, lookup(FACTS, "ports.open.9"))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"ports.state": "timeout", "ports.suggested": {"present": True}}, True),
        ({"ports.state": "timeout", "settings.auth": True}, False),
        ({"any": [{"ports.state": "refused"}, {"rcpt.enhanced": "5.1.1"}]}, True),
        ({"any": [{"ports.state": "refused"}, {"rcpt.enhanced": "5.1.2"}]}, False),
        ({"all": [{"outcome": "failed"}, {"problem.probe": "ports"}]}, True),
        ({"not": {"outcome": "failed"}}, False),
        ({"problem.missing.path": {"present": False}}, True),
    ],
)
def test_patterns(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, FACTS) is expected


def test_the_most_specific_match_wins_and_the_rest_are_alternatives() -> None:
    found = match(FACTS)
    ids = [entry.id for entry in found]
    assert ids[0] == "port-blocked-timeout"
    assert "unclassified" in ids  # the catch-all always matches a failure
    assert found == sorted(found, key=lambda e: (-e.specificity, -e.weight, e.id))


def test_healthy_facts_match_healthy_only_among_the_failures() -> None:
    facts = {"settings": {"port": 587}, "outcome": "delivered"}
    assert match(facts)[0].id == "healthy"


def test_templates_fill_paths_fall_back_and_mark_the_missing() -> None:
    context = {**FACTS, "account": {"user": "alice@example.com"}}
    assert render("{settings.server}:{ports.suggested.port}", context) == "mail.example.com:587"
    assert render("{ports.timeout} s, {ports.suggested.ms} ms", context) == "3 s, 4.2 ms"
    assert render("{ports.open}", context) == "465, 587"
    assert render("{nothing.here|the words}", context) == "the words"
    assert render("{nothing.here|account.user|words}", context) == "alice@example.com"
    assert render("{nothing.here}", context) == UNKNOWN


def test_settings_templates_keep_types_and_drop_what_cannot_be_filled() -> None:
    context = {**FACTS, "account": {"user": "alice@example.com", "password": "pw"}}
    spec = RemedySpec(
        text="",
        settings={"port": "{ports.suggested.port}", "security": "{ports.suggested.security}"},
        optional={"auth": {"user": "{account.user}", "password": "{account.password}"}},
    )
    assert render_settings(spec, context) == {
        "port": 587,
        "security": "starttls",
        "auth": {"user": "alice@example.com", "password": "pw"},
    }
    without_account = render_settings(spec, FACTS)
    assert without_account == {"port": 587, "security": "starttls"}
    impossible = RemedySpec(text="", settings={"server": "{tls.cert.name}"})
    assert render_settings(impossible, FACTS) == {}


def test_a_settings_template_falls_back_to_the_next_fact_that_is_there() -> None:
    spec = RemedySpec(text="", settings={"size": "{delivery.size_suggestion|ehlo.size}"})
    both = {"delivery": {"size_suggestion": 500_000}, "ehlo": {"size": 25_000_000}}
    assert render_settings(spec, both) == {"size": 500_000}  # the first present wins
    assert render_settings(spec, {"ehlo": {"size": 25_000_000}}) == {"size": 25_000_000}
    assert render_settings(spec, {}) == {}


# --- validation ------------------------------------------------------------------------------

GOOD = """
entries:
  - id: sample
    title: A sample
    specificity: 10
    match: {problem.code: 550}
    cause: "It is {problem.text}."
    explanation: Words.
    confirm: swaks
    remedy: {text: Do something.}
    references: ["RFC 5321"]
"""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("{problem.code: 550}", "{problem.code: {near: 550}}"), "unknown operator 'near'"),
        (("{problem.code: 550}", '{problem.text: {re: "(unclosed"}}'), "bad regular expression"),
        (("{problem.code: 550}", "{problm.code: 550}"), "unknown fact section 'problm'"),
        (("{problem.code: 550}", "{problem.code: []}"), "an empty list never matches"),
        (("{problem.code: 550}", "{problem.code: {gte: high}}"), "'gte' needs a number"),
        (
            ("remedy: {text: Do something.}", "remedy: {text: x, settings: {colour: red}}"),
            "not a mail settings field: colour",
        ),
        (('"It is {problem.text}."', '"It is {secret.text}."'), "unknown section 'secret'"),
        (("specificity: 10", "specificity: 1000"), "less than or equal to 100"),
        (("    title: A sample\n", ""), "title: Field required"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_entry(change: tuple[str, str], message: str) -> None:
    text = GOOD.replace(*change)
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "faults.yaml")
    assert "entry 0 (sample)" in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_ids_and_broken_yaml_are_refused() -> None:
    doubled = GOOD + GOOD.split("entries:\n", 1)[1]
    with pytest.raises(CatalogError, match="duplicate entry id 'sample'"):
        parse_catalog(doubled)
    with pytest.raises(CatalogError, match="not valid YAML"):
        parse_catalog("entries: [")


def test_the_packaged_catalog_is_valid_and_complete() -> None:
    catalog = load_catalog()
    assert len(catalog.entries) >= 30
    assert isinstance(catalog.get("port-blocked-timeout"), Entry)
    with pytest.raises(KeyError):
        catalog.get("no-such-entry")
    # the ids the list requires, among others
    required = {
        "port-blocked-timeout", "connection-refused", "no-banner", "smtp-inspection",
        "rate-limited", "no-ptr", "ptr-mismatch", "dnsbl-listed", "relay-denied",
        "auth-required", "auth-bad-credentials", "auth-not-offered-before-tls",
        "cleartext-auth-refused", "auth-mechanism-mismatch", "tls-required",
        "tls-unavailable", "tls-handshake-failure", "certificate-name-mismatch",
        "certificate-expired", "wrong-tls-mode", "server-name-not-found",
        "dns-temporary-failure", "null-mx", "no-mx-a-fallback", "sender-domain-rejected",
        "unknown-user", "mailbox-full", "mailbox-disabled", "message-too-large",
        "greylisting", "spf-fail", "dmarc-reject", "dropped-during-data",
        "destination-unreachable", "helo-only", "domain-not-found", "healthy",
    }  # fmt: skip
    assert required <= {entry.id for entry in catalog.entries}
