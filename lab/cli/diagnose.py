"""`smtplab diagnose` and `smtplab catalog`: walk the SMTP path of a scenario's lab or of
any server (`--server HOST` and its options), name the fault and prove the fix; and list
the faults the diagnosis engine can name.

Steps print as the engine yields them, unless the output is JSON or Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.cli.common import (
    WIDE_TABLE,
    add_backend_option,
    add_command,
    add_mta_option,
    err,
    fitted_table,
    load_scenario,
    out,
    pick_backend,
    progress,
    run_async,
)
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands

DIAGNOSE_HELP = (
    "Walk the SMTP path step by step (DNS, ports, banner, EHLO, STARTTLS, AUTH, MAIL, RCPT, "
    "DATA, delivery), name the fault, and prove the fix by re-sending."
)
# Where a password can come from without showing in `ps` (the command line does).
PASSWORD_ENV = "SMTPLAB_PASSWORD"
PASSWORD_FILE_LIMIT = 4096
SECURITY_CHOICES = ("none", "starttls", "tls")
MECHANISM_CHOICES = ("auto", "PLAIN", "LOGIN", "CRAM-MD5")
# Options that describe a server: only meaningful with --server.
_SERVER_OPTIONS = (
    "port",
    "security",
    "user",
    "password",
    "password_file",
    "mechanism",
    "sender",
    "to",
    "timeout",
    "ca_file",
    "insecure",
    "dns",
    "helo",
    "size",
)


def add_parsers(commands: Commands) -> None:
    """Register `diagnose` and `catalog`."""
    sub = add_command(commands, "diagnose", cmd_diagnose, DIAGNOSE_HELP)
    _diagnose_parser(sub)
    add_backend_option(sub)
    add_mta_option(sub)

    sub = add_command(
        commands, "catalog", cmd_catalog, "List the faults the diagnosis engine can name."
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")


def _diagnose_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "scenario", nargs="?", metavar="SCENARIO|PATH", help="an id from `smtplab list` or a file"
    )
    output = sub.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--markdown", action="store_true", help="a report to paste in a ticket")
    sub.add_argument("--no-fix", action="store_true", help="do not re-send with the remedy")
    server = sub.add_argument_group("any server (instead of a scenario)")
    server.add_argument("--server", metavar="HOST", help="the outgoing server (name or address)")
    server.add_argument("--port", type=int, default=None, help="port (default 587)")
    server.add_argument(
        "--security", choices=SECURITY_CHOICES, default=None, help="default starttls"
    )
    server.add_argument("--user", metavar="USER", help="login name")
    password = server.add_mutually_exclusive_group()
    password.add_argument(
        "--password-file",
        type=Path,
        metavar="FILE",
        help=f"read the login password from FILE (its first line); or set ${PASSWORD_ENV}",
    )
    password.add_argument(
        "--password",
        metavar="PASSWORD",
        help="login password (visible to other users in `ps`: prefer --password-file)",
    )
    server.add_argument("--mechanism", choices=MECHANISM_CHOICES, default=None)
    server.add_argument("--from", dest="sender", metavar="ADDRESS", help="envelope sender")
    server.add_argument(
        "--to", action="append", metavar="ADDRESS", help="recipient (repeat, or comma-separated)"
    )
    server.add_argument("--timeout", type=float, default=None, help="seconds (default 10)")
    server.add_argument("--ca-file", type=Path, default=None, help="trust this CA (PEM)")
    server.add_argument("--insecure", action="store_true", help="do not verify certificates")
    server.add_argument("--dns", metavar="HOST[:PORT]", help="ask this DNS server only")
    server.add_argument("--helo", metavar="NAME", help="the name to greet with")
    server.add_argument("--size", metavar="SIZE", help="test message size (e.g. 20KB)")


def _server_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """MailSettings and a ServerTarget from `--server …`; UsageError for bad input."""
    from pydantic import ValidationError

    from lab.diagnosis.target import ServerTarget, nameserver_resolver
    from lab.scenario.model import MailSettings

    if not args.sender or not args.to:
        raise UsageError("--server needs --from ADDRESS and --to ADDRESS")
    password = _password(args)
    if args.mechanism and args.user is None:
        raise UsageError("--mechanism needs --user and --password")
    if args.ca_file is not None and args.insecure:
        raise UsageError("--ca-file and --insecure exclude each other")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    timeout = 10.0 if args.timeout is None else args.timeout
    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    recipients = [a.strip() for item in args.to for a in item.split(",") if a.strip()]
    data: dict[str, Any] = {
        "server": args.server,
        "port": 587 if args.port is None else args.port,
        "security": args.security or "starttls",
        "from": args.sender,
        "to": recipients,
        "timeout": timeout,
        "verify_tls": not args.insecure,
    }
    if args.user is not None:
        data["auth"] = {
            "user": args.user,
            "password": password,
            "mechanism": args.mechanism or "auto",
        }
    if args.helo:
        data["helo"] = args.helo
    if args.size:
        data["size"] = args.size
    try:
        settings_ = MailSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        where = {"from": "--from", "to": "--to", "auth.user": "--user"}.get(where, f"--{where}")
        raise UsageError(f"{where}: {first['msg']}") from None
    resolver = None
    if args.dns:
        host, _, port = args.dns.rpartition(":") if ":" in args.dns else (args.dns, "", "53")
        if not port.isdigit():
            raise UsageError(f"--dns {args.dns}: expected HOST or HOST:PORT")
        resolver = nameserver_resolver(host or args.dns, int(port), timeout=min(timeout, 5.0))
    target = ServerTarget(
        resolver=resolver,
        ca_file=args.ca_file,
        helo=args.helo,
        label=f"server {args.server}",
    )
    return settings_, target


def _password(args: argparse.Namespace) -> str | None:
    """The login password for `--user`: --password-file, --password, else $SMTPLAB_PASSWORD.

    Raises:
        UsageError: a password without `--user`, `--user` without one, an unreadable file.
    """
    if args.user is None:
        if args.password is not None or args.password_file is not None:
            raise UsageError("--password and --password-file need --user")
        return None  # $SMTPLAB_PASSWORD may be set for other runs: not an error
    if args.password_file is not None:
        return _read_password_file(args.password_file)
    if args.password is not None:
        err.print(
            f"smtplab: note: --password is visible in `ps`; prefer --password-file FILE "
            f"or ${PASSWORD_ENV}",
            markup=False,
        )
        return str(args.password)
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        raise UsageError(
            f"--user needs a password: --password-file FILE, ${PASSWORD_ENV} or --password"
        )
    return password


def _read_password_file(path: Path) -> str:
    """The first line of a small regular file (a FIFO or /dev/zero would block or never end)."""
    try:
        if not path.exists():
            raise UsageError(f"--password-file {path}: no such file")
        if not path.is_file():
            raise UsageError(f"--password-file {path}: not a regular file")
        with path.open("rb") as file:
            head = file.read(PASSWORD_FILE_LIMIT + 1)
    except OSError as error:
        raise UsageError(f"--password-file {path}: {error.strerror or error}") from None
    if len(head) > PASSWORD_FILE_LIMIT:
        raise UsageError(f"--password-file {path}: longer than {PASSWORD_FILE_LIMIT} bytes")
    try:
        password = head.decode("utf-8").splitlines()[0] if head.strip() else ""
    except UnicodeDecodeError:
        raise UsageError(f"--password-file {path}: not UTF-8 text") from None
    if not password:
        raise UsageError(f"--password-file {path}: the first line is empty")
    return password


def cmd_diagnose(args: argparse.Namespace) -> int:
    """`smtplab diagnose SCENARIO|PATH` or `smtplab diagnose --server HOST …`."""
    from lab.diagnosis import report

    given = [f"--{name.replace('_', '-')}" for name in _SERVER_OPTIONS if _given(args, name)]
    if args.scenario and args.server:
        raise UsageError("name a scenario or give --server HOST, not both")
    if not args.scenario and not args.server:
        raise UsageError("name a scenario (see `smtplab list`) or give --server HOST")
    if args.scenario and given:
        raise UsageError(f"{', '.join(given)}: only with --server (a scenario has its settings)")
    if args.server and args.mta:
        raise UsageError("--mta is for scenarios; --server talks to the server directly")
    if args.server and args.backend:
        raise UsageError("--backend is for scenarios; --server talks to the server directly")
    quiet = args.json or args.markdown

    async def work() -> Any:
        if args.server:
            settings_, target = _server_settings(args)
            return await _diagnose_streaming(target, settings_, args, quiet=quiet)
        scenario = load_scenario(args.scenario, args.mta)
        backend = pick_backend(args.backend)
        from lab.diagnosis.target import LabTarget

        with progress(f"starting {scenario.id} on the {backend.name} backend", quiet=quiet):
            lab = await backend.up(backend.plan(scenario))
        try:
            return await _diagnose_streaming(
                LabTarget(lab), scenario.client[1].settings, args, quiet=quiet
            )
        finally:
            await lab.down()

    steps, diagnosis, target_name, settings_ = run_async(work)
    if args.json:
        data = report.to_json_report(steps, diagnosis, target=target_name, settings=settings_)
        out.print_json(json.dumps(data))
    elif args.markdown:
        sys.stdout.write(
            report.to_markdown(steps, diagnosis, target=target_name, settings=settings_) + "\n"
        )
    return report.exit_code(diagnosis)


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name, None)
    return value not in (None, False)


async def _diagnose_streaming(
    target: Any, settings_: Any, args: argparse.Namespace, *, quiet: bool
) -> tuple[list[Any], Any, str, Any]:
    """Run the engine; print each step as it comes unless the output is JSON or Markdown."""
    from lab.diagnosis import report
    from lab.diagnosis.engine import diagnose
    from lab.diagnosis.events import Diagnosis

    steps: list[Any] = []
    if not quiet:
        out.print(
            f"Diagnosing {target.name}: {report.settings_line(settings_)}",
            markup=False,
            soft_wrap=True,
        )
    events = diagnose(target, settings_, verify_fix=not args.no_fix)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Diagnosis):
                if not quiet:
                    out.print()
                    out.print(report.diagnosis_renderable(event))
                return steps, event, target.name, settings_
            steps.append(event)
            if not quiet:
                out.print(report.step_renderable(event), soft_wrap=True)
    raise AssertionError("the engine ends with a Diagnosis")  # pragma: no cover


def cmd_catalog(args: argparse.Namespace) -> int:
    """`smtplab catalog [--json]`."""
    from lab.diagnosis.catalog import load_catalog

    catalog = load_catalog()
    if args.json:
        out.print_json(json.dumps([entry.model_dump(mode="json") for entry in catalog.entries]))
        return 0
    wide = out.width >= WIDE_TABLE
    table = fitted_table(f"Known faults ({len(catalog.entries)})", ["id", "title", "severity"])
    if wide:  # references would squeeze titles to a word per line on 80 columns
        table.add_column("references")
    for entry in catalog.entries:
        references = ["; ".join(entry.references)] if wide else []
        table.add_row(entry.id, entry.title, entry.severity, *references)
    out.print(table)
    return 0
