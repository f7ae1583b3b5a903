"""The diagnosis engine: walk the path, name the fault, prove the fix.

`diagnose(target, settings)` is an async iterator: each `Step` is yielded the
moment it is known (the TUI shows them live), then, when the catalog names a
remedy that changes the settings and `verify_fix` is on, one `Probe.FIX` step
for the re-send with the remedy applied, and finally exactly one `Diagnosis`.

The loop itself is small on purpose: the planner decides, the runner does the
I/O, the catalog matches the facts. Nothing here knows a scenario.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from lab.addresses import domain_of
from lab.diagnosis.catalog import (
    Entry,
    load_catalog,
    match,
    render,
    render_settings,
    settings_placeholders,
)
from lab.diagnosis.events import Diagnosis, Probe, Remedy, Status, Step, describe_settings
from lab.diagnosis.hops import failing_hop, who_acts
from lab.diagnosis.planner import ALTERNATIVE_PORTS, Planner, suggest_addresses
from lab.diagnosis.probes import ProbeRunner
from lab.diagnosis.target import Account, DiagnosisTarget
from lab.scenario.model import HopKind, MailSettings, MailSettingsPatch, Outcome

_SEVERITY = {"fail": Status.FAIL, "warn": Status.WARN, "info": Status.INFO, "ok": Status.OK}
# What a remedy's settings may need that only the customer knows, in words.
_CUSTOMER_KNOWS = {
    "account.user": "the mailbox's login",
    "account.password": "its password",
    "account.server": "the provider's server name",
    "suggest.to": "the intended recipient's address",
}
_SESSION = {
    Probe.BANNER,
    Probe.EHLO,
    Probe.STARTTLS,
    Probe.AUTH,
    Probe.MAIL,
    Probe.RCPT,
    Probe.DATA,
}


async def diagnose(
    target: DiagnosisTarget,
    settings: MailSettings,
    *,
    verify_fix: bool = True,
    alternatives: Sequence[int] = ALTERNATIVE_PORTS,
) -> AsyncGenerator[Step | Diagnosis, None]:
    """Diagnose sending with `settings` through `target`, step by step.

    Args:
        target: the world to diagnose (`LabTarget` or `ServerTarget`).
        settings: the mail program's settings as the customer has them.
        verify_fix: re-send with the remedy applied and report whether it delivers.
        alternatives: ports probed next to the configured one.

    Yields:
        Each `Step` as soon as it is known, then one `Diagnosis` (always last).
    """
    started = time.monotonic()
    planner = Planner(
        settings,
        helo=target.helo,
        alternatives=alternatives,
        can_follow=target.can_follow,
        can_audit=target.outsider() is not None,
    )
    runner = ProbeRunner(target, settings)
    steps: list[Step] = []
    try:
        while (request := planner.next_request()) is not None:
            result = await runner.run(request)
            for step in planner.record(result):
                located = _locate(step, target, planner.facts)
                steps.append(located)
                yield located
    finally:
        await runner.close()
    facts = planner.facts
    found = match(facts)
    # "unclassified" and "healthy" between them match every walk; this only guards the file.
    entry = found[0] if found else load_catalog().get("unclassified")
    context = _context(facts, target, settings)
    remedy_settings = _remedy_settings(entry, context, settings)
    problem = planner.problem
    failed_probe = Probe(problem["probe"]) if problem else None
    severity = Status.FAIL if problem else _SEVERITY[entry.severity]
    if problem is None and severity is Status.FAIL:
        # Handed over without complaint, yet the evidence says it cannot arrive (a recipient
        # domain that does not exist, a null MX): it will fail after the hand-off.
        failed_probe = Probe.DELIVERY
    node = _node_of(steps, failed_probe)
    hop = failing_hop(
        failed_probe,
        facts,
        settings,
        on_path=entry.hop is HopKind.PATH,
        node=node,
        middlebox=_middlebox(target, facts, settings),
    )
    if hop is not None:
        context["hop"] = {"kind": str(hop.kind), "where": hop.where, "pattern": hop.pattern}
    acts = who_acts(
        hop,
        render(entry.remedy.acts, context) if entry.remedy.acts else None,
        fixed_by_settings=bool(entry.remedy.settings),
    )
    remedy_text = render(entry.remedy.text, context)
    if acts:
        remedy_text += f" Who must act: {acts}."
    diagnosis = Diagnosis(
        entry=entry.id,
        title=entry.title,
        cause=render(entry.cause, context),
        explanation=render(entry.explanation, context),
        confirm=render(entry.confirm, context),
        remedy=Remedy(remedy_text, remedy_settings, acts),
        references=tuple(entry.references),
        failed_probe=failed_probe,
        node=node,
        hop=hop,
        alternatives=tuple(other.id for other in found[1:] if other.id != "unclassified"),
        severity=severity,
        outcome=str(facts.get("outcome", "")),
        fix_outcome=_unproven(entry, remedy_settings) if severity is Status.FAIL else None,
    )
    if verify_fix and remedy_settings:
        fixed = MailSettingsPatch.model_validate(remedy_settings).apply(settings)
        step, verified, outcome = await _verify_fix(target, fixed, remedy_settings)
        steps.append(step)
        yield step
        diagnosis = replace(diagnosis, fix_verified=verified, fix_outcome=outcome)
    yield replace(diagnosis, duration=round(time.monotonic() - started, 3))


async def run_diagnosis(
    target: DiagnosisTarget,
    settings: MailSettings,
    *,
    verify_fix: bool = True,
    alternatives: Sequence[int] = ALTERNATIVE_PORTS,
) -> tuple[list[Step], Diagnosis]:
    """`diagnose` collected: every step (the fix's re-send included) and the verdict."""
    steps: list[Step] = []
    events = diagnose(target, settings, verify_fix=verify_fix, alternatives=alternatives)
    # Closed explicitly: returning from inside `async for` leaves the generator suspended.
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Diagnosis):
                return steps, event
            steps.append(event)
    raise AssertionError("diagnose() always ends with a Diagnosis")  # pragma: no cover


# --- helpers ---------------------------------------------------------------------------------


def _locate(step: Step, target: DiagnosisTarget, facts: dict[str, Any]) -> Step:
    """Point the step at the lab node it concerns (for the TUI's topology view)."""
    if step.status is Status.SKIPPED:
        return step
    ports = facts.get("ports") or {}
    resolve = facts.get("resolve") or {}
    address = ports.get("address") or resolve.get("address")
    node: str | None = None
    if step.probe is Probe.PORTS and address:
        node = target.node_for(address, ports.get("configured"))
    elif (step.probe in _SESSION or step.probe is Probe.RELAY) and address:
        node = target.node_for(address)
    elif step.probe in (Probe.DELIVERY, Probe.RECIPIENT):
        remote = (facts.get("delivery") or {}).get("remote_address")
        node = target.node_for(remote) if remote else None
    return replace(step, node=node) if node else step


def _middlebox(
    target: DiagnosisTarget, facts: dict[str, Any], settings: MailSettings
) -> str | None:
    """The router between the mail program and its server, when the target knows it."""
    address = (facts.get("ports") or {}).get("address") or (facts.get("resolve") or {}).get(
        "address"
    )
    return target.middlebox(str(address), settings.port) if address else None


def _node_of(steps: Sequence[Step], probe: Probe | None) -> str | None:
    if probe is None:
        return None
    for step in steps:
        if step.probe is probe and step.status is Status.FAIL:
            return step.node
    return None


def _context(
    facts: dict[str, Any], target: DiagnosisTarget, settings: MailSettings
) -> dict[str, Any]:
    """The facts plus what templates may use besides: the customer's login, corrected addresses."""
    context = dict(facts)
    account = target.account(settings)
    if account is not None:
        context["account"] = {
            "user": account.user,
            "password": account.password,
            "server": account.server,
        }
    refused = [
        *((facts.get("rcpt") or {}).get("refused_addresses") or []),
        *((facts.get("delivery") or {}).get("bounced_addresses") or []),
    ]
    directory = target.directory()
    suggestion = suggest_addresses(settings.to, refused, directory) if refused else None
    if suggestion is None and (facts.get("resolve") or {}).get("nxdomain_domains"):
        missing = set((facts.get("resolve") or {}).get("nxdomain_domains") or [])
        typos = [a for a in settings.to if domain_of(a) in missing]
        suggestion = suggest_addresses(settings.to, typos, directory)
    context["suggest"] = {"to": suggestion, "login": _full_login(settings, account)}
    problem = facts.get("problem")
    if isinstance(problem, dict):
        problem = dict(problem)
        problem.setdefault("address", (refused or [None])[0])
        context["problem"] = problem
    return context


def _full_login(settings: MailSettings, account: Account | None) -> str | None:
    """The full address to log in with, only when the login given is not one."""
    if settings.auth is None or "@" in settings.auth.user:
        return None
    if account is not None and "@" in account.user:
        return account.user
    return settings.sender


def _unproven(entry: Entry, remedy_settings: dict[str, Any]) -> str | None:
    """Why a remedy that would change the settings cannot be re-sent from here, if so."""
    if remedy_settings or not entry.remedy.settings:
        return None
    needed = [
        _CUSTOMER_KNOWS[p] for p in settings_placeholders(entry.remedy) if p in _CUSTOMER_KNOWS
    ]
    what = " and ".join(needed) or "facts this diagnosis does not have"
    return f"not proven: the fix needs {what}, which only the customer knows, so it was not re-sent"


def _remedy_settings(
    entry: Entry, context: dict[str, Any], settings: MailSettings
) -> dict[str, Any]:
    """The remedy's settings correction, or {} when it cannot be filled or changes nothing."""
    rendered = render_settings(entry.remedy, context)
    if not rendered:
        return {}
    try:
        patch = MailSettingsPatch.model_validate(rendered)
    except ValidationError:
        return {}
    if patch.apply(settings) == settings:
        return {}
    return rendered


async def _verify_fix(
    target: DiagnosisTarget, fixed: MailSettings, changes: dict[str, Any]
) -> tuple[Step, bool, str]:
    """Send again with the remedy applied; follow it when the target can."""
    start = time.monotonic()
    send = await target.send(fixed)
    outcome, stage, text = send.outcome, send.stage, send.text
    code, enhanced = send.code, send.enhanced
    if send.delivered and target.can_follow:
        report = await target.follow(fixed, send)
        if report is not None:
            outcome, stage, text = report.outcome, report.stage, report.text
            code, enhanced = report.code, report.enhanced
    verified = outcome is Outcome.DELIVERED
    shown = describe_settings(changes)
    where = f" at {stage}" if stage and not verified else ""
    summary = f"{outcome}{where}: {text}"
    proves = (
        f"With {shown} the message goes through: {text}."
        if verified
        else f"Even with {shown} it does not go through ({outcome}{where}: {text})."
    )
    step = Step(
        probe=Probe.FIX,
        status=Status.OK if verified else Status.FAIL,
        title="Re-send with the fix applied",
        tried=f"Sent the test message again as the mail program would, with {shown}.",
        evidence={
            "changes": _masked(changes),
            "outcome": str(outcome),
            "stage": str(stage) if stage else None,
            "code": code,
            "enhanced": enhanced,
            "text": text,
        },
        proves=proves,
        transcript=tuple(send.transcript.lines),
        duration=round(time.monotonic() - start, 4),
    )
    return step, verified, summary


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("****" if k == "password" else _masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value
