"""Property: what `validate` accepts, `run` can run; what it refuses, it refuses in one line
per problem. Broken scenarios are made from the schema: a field of a model (any field the
model class declares, set or not) in the working happy-path world gets a hostile value.
Fixed seed (derandomize), bounded examples, no example database.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lab.cli import main
from lab.scenario.model import (
    AuthPolicy,
    CertificateFault,
    ClientNode,
    DnsNode,
    DnsRecord,
    Expect,
    LabTime,
    ListenerTls,
    MailSettings,
    MxNode,
    Network,
    PortPolicy,
    RelayNode,
    RouterNode,
    Scenario,
    Security,
    TlsVersions,
    Zone,
)

HAPPY = Path(__file__).parents[2] / "scenarios" / "happy-path.yaml"
BASE: dict[str, Any] = yaml.safe_load(HAPPY.read_text())

# Where each model sits in the happy-path world.
MODELS: dict[tuple[str | int, ...], type[BaseModel]] = {
    (): Scenario,
    ("lab_time",): LabTime,
    ("networks", "office"): Network,
    ("nodes", "laptop"): ClientNode,
    ("nodes", "laptop", "settings"): MailSettings,
    ("nodes", "isp"): RouterNode,
    ("nodes", "dns"): DnsNode,
    ("nodes", "dns", "zones", "example.com"): Zone,
    ("nodes", "dns", "zones", "example.com", "records", 0): DnsRecord,
    ("nodes", "relay"): RelayNode,
    ("nodes", "mx"): MxNode,
    ("expect",): Expect,
}
FIELDS = sorted(
    (parent, field.alias or name)
    for parent, model in MODELS.items()
    for name, field in model.model_fields.items()
)

# Values that have broken loaders and servers before, and plain values a field may take.
VOCABULARIES = (AuthPolicy, CertificateFault, ListenerTls, PortPolicy, Security, TlsVersions)
HOSTILE_TEXT = [
    "",
    " ",
    "mäil.example.com",
    "mail.example.com\r\nRSET",
    "pc\nMAIL FROM:<x@y>",
    "a" * 300,
    "10 mx.example.net.",
    "999.1.1.1",
    "mx:smtp",
    "mx:70000",
    "1000GB",
    "9" * 50 + "d",
    "127.0.0.0/24",
    "10.20.0.0/29",
    "<bob@example.net>",
    "bob@example.net",
    "*",
    "@",
    "-1",
    "\x00",
    "\u202e",
]
NUMBERS = [0, -1, 1, 25, 65536, 10**14, 2**64, 1e300, float("inf"), float("nan"), 2.5]
# Plausible values, so that a good share of the examples is accepted and then run.
PLAUSIBLE: list[Any] = [
    *(member.value for vocabulary in VOCABULARIES for member in vocabulary),
    587, 465, 2525, 3, 0.5, "2s", "10KB", "1MB", "alice@example.com", "bob@example.net",
    "mx", "relay", "mail.example.com", "example.net", "office", "internet", [],
]  # fmt: skip
leaf = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(NUMBERS),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
)
values = st.one_of(
    st.sampled_from(PLAUSIBLE),
    leaf,
    st.lists(leaf, max_size=3),
    st.dictionaries(st.sampled_from(["a", "25", "x.y", "port"]), leaf, max_size=2),
)


def mutated(parent: tuple[str | int, ...], key: str, value: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(BASE))  # a deep copy
    target: Any = data
    for part in parent:
        target = target.setdefault(part, {}) if isinstance(target, dict) else target[part]
    target[key] = value
    return data


class _Collect(logging.Handler):
    """Keeps the records logged (asyncio logs a task's exception instead of raising it)."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_cli(argv: list[str]) -> tuple[int | None, str, list[logging.LogRecord]]:
    """`smtplab ARGV` in this process: exit code, everything printed, logged exceptions."""
    output = io.StringIO()
    handler = _Collect(level=logging.ERROR)
    records = handler.records
    logging.getLogger().addHandler(handler)
    try:
        with contextlib.redirect_stderr(output), contextlib.redirect_stdout(output):
            code = main(argv)
    finally:
        logging.getLogger().removeHandler(handler)
    return code, output.getvalue(), records


@settings(
    max_examples=120,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(field=st.sampled_from(FIELDS), value=values)
def test_validate_refuses_in_one_line_or_run_runs(
    field: tuple[tuple[str | int, ...], str], value: Any, tmp_path: Path
) -> None:
    parent, key = field
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(mutated(parent, key, value), allow_unicode=True))
    code, output, logged = run_cli(["validate", str(path)])
    assert "Traceback" not in output
    if code == 2:
        shape = re.compile(rf"^{re.escape(str(path))}(:\d+)?: \S")
        lines = output.splitlines()
        assert lines, output
        assert all(shape.match(line) for line in lines), output
        event("refused")
        return
    assert code == 0, output
    # accepted: the local backend runs it to an outcome, whatever that outcome is
    code, output, logged = run_cli(["run", str(path), "--backend", "local", "--json"])
    assert "Traceback" not in output, output
    assert not [record for record in logged if record.exc_info], [
        record.getMessage() for record in logged
    ]
    assert code is not None
    event("accepted and run")
