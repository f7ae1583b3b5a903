"""`smtplab up`, `down`, `logs`, `labs` and `reap`: labs that outlive one command.

A local lab lives as long as its `smtplab up` process, which leaves a record in the state
directory (`lab.runtime.local_records`); a docker lab is detached and found again by label.
`down` signals only the very `smtplab up` process that wrote a record (pid and start time),
never a process that merely reuses its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import render
from lab.cli.common import (
    add_backend_option,
    add_command,
    add_mta_option,
    engine_errors,
    load_scenario,
    out,
    pick_backend,
    progress,
    run_async,
)
from lab.config import settings
from lab.errors import NoSuchLab, UsageError
from lab.runtime.local_records import (
    LocalLabRecord,
    read_records,
    remove_dead,
    stop,
    write_record,
)

if TYPE_CHECKING:
    from lab.cli.common import Commands
    from lab.runtime.base import Endpoint, Lab
    from lab.runtime.docker import DockerBackend
    from lab.scenario.model import Scenario


def add_parsers(commands: Commands) -> None:
    """Register `up`, `down`, `logs`, `labs` and `reap`."""
    sub = add_command(
        commands,
        "up",
        cmd_up,
        "Start a lab and print its endpoints. A docker lab keeps running after the command "
        "exits (`smtplab down LAB`); a local lab runs until Ctrl-C.",
    )
    sub.add_argument("scenario", metavar="SCENARIO")
    sub.add_argument(
        "--json", action="store_true", help="the endpoints, host names, CA file and DNS as JSON"
    )
    add_backend_option(sub)
    sub.add_argument(
        "--state",
        type=Path,
        metavar="DIR",
        help="local backend: keep the lab's files (relay queue, mailboxes) in DIR and resume "
        "them when a lab is started on the same DIR again; kept after the lab stops",
    )
    add_mta_option(sub)

    sub = add_command(commands, "down", cmd_down, "Stop a lab started with `smtplab up`.")
    sub.add_argument("lab", nargs="?", metavar="LAB", help="a lab id from `smtplab labs`")
    sub.add_argument(
        "--all",
        action="store_true",
        help="every lab started with `smtplab up` and every leftover of a dead run "
        "(labs a running process owns are left to it)",
    )

    sub = add_command(
        commands, "logs", cmd_logs, "Show what a node of a running lab decided (no NODE: list)."
    )
    sub.add_argument("lab", metavar="LAB")
    sub.add_argument("node", nargs="?", metavar="NODE", help="without it: the lab's nodes")
    sub.add_argument("--tail", type=int, default=None, help="only the last N lines of each log")
    sub.add_argument("--json", action="store_true", help="the raw events, one JSON per line")

    sub = add_command(
        commands, "labs", cmd_labs, "List labs of both backends: running ones, then dead ones."
    )
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    add_command(
        commands,
        "reap",
        cmd_reap,
        "Remove docker labs whose owning process is gone (crashed runs).",
    )


def _labs_dir() -> Path:
    """Where each local `smtplab up` keeps the record of its lab."""
    return settings.state_dir / "labs"


def cmd_up(args: argparse.Namespace) -> int:
    """`smtplab up SCENARIO`: docker labs stay up after the command; local ones until Ctrl-C."""
    scenario = load_scenario(args.scenario, args.mta)
    backend = pick_backend(args.backend)
    from lab.runtime.docker import DockerBackend
    from lab.runtime.local import LocalBackend

    if isinstance(backend, DockerBackend):
        if args.state is not None:
            raise UsageError("--state is for the local backend (a docker lab keeps its state)")
        return _up_docker(scenario, backend, as_json=args.json)
    if args.state is not None:
        if args.state.exists() and not args.state.is_dir():
            raise UsageError(f"--state {args.state}: not a directory")
        backend = LocalBackend(state_dir=args.state)

    async def work() -> None:
        with progress(f"starting {scenario.id} on the {backend.name} backend"):
            lab = await backend.up(backend.plan(scenario))
        state: Path | None = None
        try:
            endpoints = await lab.publish_endpoints()
            if not args.json:
                out.print(f"Lab [bold]{lab.id}[/] is up ({scenario.title}).")
            _print_access(lab, endpoints, as_json=args.json)
            if not args.json:
                out.print(f"Stop it with Ctrl-C or `smtplab down {lab.id}`.")
            state = write_record(
                _labs_dir(),
                lab.id,
                scenario.id,
                lab.data_dir(""),
                keep_data=args.state is not None,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            if state is not None:
                state.unlink(missing_ok=True)
            await lab.down()
            out.print(f"Lab {lab.id} is down.")

    run_async(work)
    return 0


def _print_access(lab: Lab, endpoints: list[Endpoint], *, as_json: bool) -> None:
    """The endpoints and what a real client needs besides: host names, CA, DNS, swaks."""
    from lab.connect_info import lab_access

    access = lab_access(lab.id, lab.backend, lab.topology, endpoints, lab.ca_file)
    if as_json:
        out.print_json(
            json.dumps({**access.to_json(), "endpoints": [asdict(e) for e in endpoints]})
        )
        return
    out.print(render.endpoints_table(endpoints))
    out.print(f"Lab CA (verify certificates with it): {access.ca_file or 'none'}", markup=False)
    out.print(f"Lab DNS server (inside the lab): {access.dns or 'none'}", markup=False)
    for server in access.servers:
        out.print(
            f"\n{server.node}: {server.connect} is {server.hostname} "
            f"(SNI and certificate name; TLS {server.tls}"
            f"{', AUTH required' if server.auth_required else ''})",
            markup=False,
        )
        out.print(f"  {server.swaks}", markup=False, highlight=False, soft_wrap=True)


def _up_docker(scenario: Scenario, backend: DockerBackend, *, as_json: bool = False) -> int:
    """A detached docker lab: its containers outlive this command; found again by label."""
    backend.detached = True

    async def work() -> Any:
        with progress(f"starting {scenario.id} on the docker backend"):
            lab = await backend.up(backend.plan(scenario))
            try:
                endpoints = await lab.publish_endpoints()
            except BaseException:
                await lab.down()
                raise
        return lab, endpoints

    lab, endpoints = run_async(work)
    if as_json:
        _print_access(lab, endpoints, as_json=True)
        return 0
    out.print(f"Lab [bold]{lab.id}[/] is up on docker ({scenario.title}); it keeps running.")
    _print_access(lab, endpoints, as_json=False)
    out.print(
        f"Logs: `smtplab logs {lab.id} NODE`; labs: `smtplab labs`; "
        f"stop it with `smtplab down {lab.id}`."
    )
    return 0


def _local_labs() -> dict[str, LocalLabRecord]:
    """Local lab records by lab id, live and dead (unreadable ones skipped)."""
    return read_records(_labs_dir())


def _docker_labs(*, needed: bool = False) -> tuple[Any, list[Any]]:
    """(docker client, labs on it); (None, []) when no engine answers, unless `needed`."""
    from lab.runtime.docker import DockerBackend, describe_labs

    backend = DockerBackend()
    reason = backend.available()
    if reason is not None:
        if needed:
            from lab.errors import BackendUnavailable

            raise BackendUnavailable(reason)
        return None, []
    return backend.client, describe_labs(backend.client)


def _no_such_lab(lab_id: str, local: dict[str, Any], docker: list[Any]) -> NoSuchLab:
    running = [*local, *(info.id for info in docker)]
    return NoSuchLab(f"no running lab {lab_id!r}; running: {', '.join(running) or 'none'}")


@engine_errors
def cmd_down(args: argparse.Namespace) -> int:
    """`smtplab down LAB|--all`: local labs through their `up` process, docker ones by label."""
    from lab.runtime.docker import remove_lab

    if not args.all and not args.lab:
        raise UsageError("name a lab (see `smtplab labs`) or use --all")
    local = _local_labs()
    client, docker = _docker_labs()
    if args.all:
        chosen = list(local.values())
        docker_chosen = []
        for info in docker:
            if info.detached or info.owner_alive is False:
                docker_chosen.append(info)
            else:
                out.print(f"leaving {info.id}: its owner ({info.owner_text}) still runs")
        if chosen or docker_chosen:
            out.print(f"stopping {len(chosen) + len(docker_chosen)} lab(s):")
            for row in [*map(_local_row, chosen), *map(_docker_row, docker_chosen)]:
                out.print(f"  {row['id']} ({row['backend']}, {row['scenario']}): {row['owner']}")
    elif args.lab in local:
        chosen, docker_chosen = [local[args.lab]], []
    elif any(info.id == args.lab for info in docker):
        chosen, docker_chosen = [], [info for info in docker if info.id == args.lab]
    else:
        raise _no_such_lab(args.lab, local, docker)
    for record in chosen:
        _down_local(record)
    for info in docker_chosen:
        remove_lab(client, info.id)
        out.print(f"removed {info.id} (docker)")
    if args.all and not chosen and not docker_chosen:
        out.print("no labs to stop")
    return 0


def _down_local(record: LocalLabRecord) -> None:
    """Signal a live lab's own `up` process; clean up after a dead one."""
    if stop(record):
        out.print(f"stopping {record.id} (pid {record.pid})")
        return
    removed = remove_dead(record)
    if removed is not None:
        out.print(f"{record.id} was no longer running; removed its record and {removed}")
    elif record.keep_data and record.data is not None:
        out.print(f"{record.id} was no longer running; removed its record, kept {record.data}")
    else:
        out.print(f"{record.id} was no longer running; record removed")


@engine_errors
def cmd_logs(args: argparse.Namespace) -> int:
    """`smtplab logs LAB NODE`: the node's events; for docker also its container's output."""
    from lab.nodes.events import read_events

    labs = _local_labs()
    if args.lab in labs:
        data = labs[args.lab].data
        nodes = (
            sorted(path.name for path in data.iterdir() if path.is_dir())
            if data is not None and data.is_dir()
            else []
        )
        if data is None or args.node is None or args.node not in nodes:
            return _list_nodes(args.lab, args.node, nodes)
        _print_events(read_events(data / args.node), args.tail, as_json=args.json)
        return 0
    client, docker = _docker_labs()
    info = next((info for info in docker if info.id == args.lab), None)
    if info is None:
        raise _no_such_lab(args.lab, labs, docker)
    if args.node is None or args.node not in info.nodes:
        return _list_nodes(args.lab, args.node, [n for n in info.nodes if not n.startswith("_")])
    from lab.runtime.docker import container_logs

    events = read_events(info.host_dir / args.node) if info.host_dir is not None else []
    if args.json:
        _print_events(events, args.tail, as_json=True)
        return 0
    out.print(f"--- {args.node}: what it decided ({len(events)} events) ---", markup=False)
    _print_events(events, args.tail, as_json=False)
    out.print(f"--- {args.node}: container output ---", markup=False)
    tail = "all" if args.tail is None else args.tail
    output = container_logs(client, args.lab, args.node, tail).rstrip()
    out.print(output, markup=False, highlight=False, soft_wrap=True)
    return 0


def _list_nodes(lab_id: str, asked: str | None, nodes: list[str]) -> int:
    """No node named (the list, exit 0) or an unknown one (one line, exit 2)."""
    names = ", ".join(sorted(nodes))
    if asked is not None:
        raise UsageError(f"lab {lab_id} has no node {asked!r}; its nodes: {names}")
    out.print(f"Nodes of {lab_id}: {names}", markup=False)
    out.print(f"Show one: smtplab logs {lab_id} NODE", markup=False)
    return 0


def event_line(event: dict[str, Any]) -> str:
    """`14:03:07.412  relay  rcpt  to=bob@example.net code=550`: an event as a person reads it."""
    stamp = event.get("ts")
    clock = (
        datetime.fromtimestamp(float(stamp)).strftime("%H:%M:%S.%f")[:-3]
        if isinstance(stamp, int | float)
        else "--:--:--.---"
    )
    details = " ".join(
        f"{key}={value}" for key, value in event.items() if key not in ("ts", "node", "event")
    )
    return f"{clock}  {event.get('node', '?')}  {event.get('event', '?')}  {details}".rstrip()


def _print_events(events: list[dict[str, Any]], tail: int | None, *, as_json: bool) -> None:
    for event in events if tail is None else events[-tail:]:
        line = json.dumps(event) if as_json else event_line(event)
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _local_row(record: LocalLabRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "backend": "local",
        "scenario": record.scenario,
        "nodes": None,
        "owner": record.owner_text,
        "state": "running" if record.alive else "dead",
    }


def _docker_row(info: Any) -> dict[str, Any]:
    import time

    running = sum(state == "running" for state in info.nodes.values())
    return {
        "id": info.id,
        "backend": "docker",
        "scenario": info.scenario,
        "nodes": f"{running}/{len(info.nodes)} running",
        "owner": info.owner_text,
        "state": "dead" if info.owner_alive is False or running == 0 else "running",
        "age": round(time.time() - info.created) if info.created else None,
    }


@engine_errors
def cmd_labs(args: argparse.Namespace) -> int:
    """`smtplab labs`: local labs from their records, docker labs by label; the dead apart."""
    rows = [_local_row(record) for record in _local_labs().values()]
    rows += [_docker_row(info) for info in _docker_labs()[1]]
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    if not rows:
        out.print("no running labs")
        return 0
    from rich.table import Table

    columns = ("id", "backend", "scenario", "nodes", "owner")
    for state, title in (("running", "Running labs"), ("dead", "Dead labs (smtplab down LAB)")):
        chosen = [row for row in rows if row["state"] == state]
        if not chosen:
            continue
        table = Table(title=title)
        for column in columns:
            table.add_column(column, no_wrap=column == "id")
        for row in chosen:
            table.add_row(*(str(row[key] or "") for key in columns))
        out.print(table)
    return 0


@engine_errors
def cmd_reap(args: argparse.Namespace) -> int:
    """`smtplab reap`: docker labs whose owner process is gone; dead local labs."""
    from lab.runtime.docker import reap

    del args
    for record in _local_labs().values():
        if not record.alive:
            removed = remove_dead(record)
            where = f" and {removed}" if removed is not None else ""
            out.print(f"removed the record of {record.id}{where} (local; its process is gone)")
    client, _ = _docker_labs(needed=True)
    removed_labs = reap(client)
    for lab_id in removed_labs:
        out.print(f"removed {lab_id} (docker; its owner is gone)")
    if not removed_labs:
        out.print("no docker leftovers")
    return 0
