"""`smtplab export SCENARIO --compose DIR`: a scenario's docker lab as a compose project."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lab.catalog import load
from lab.cli.common import add_command, engine_errors, out, pick_backend
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `export`."""
    sub = add_command(
        commands,
        "export",
        cmd_export,
        "Write a scenario's docker lab as a docker compose project (services, networks, "
        "configs) for CI that runs compose.",
    )
    sub.add_argument("scenario", metavar="SCENARIO", help="an id from `smtplab list` or a file")
    sub.add_argument(
        "--compose", type=Path, required=True, metavar="DIR", help="the project directory"
    )


@engine_errors
def cmd_export(args: argparse.Namespace) -> int:
    """`smtplab export SCENARIO --compose DIR`."""
    from lab.runtime.docker import DockerBackend
    from lab.runtime.docker.compose import export_compose

    scenario = load(args.scenario)
    directory: Path = args.compose
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(f"{directory}: not an empty directory; choose a new one")
    backend = pick_backend("docker")
    assert isinstance(backend, DockerBackend)
    exported = export_compose(scenario, directory, backend)
    out.print(f"wrote {exported.compose_file} (lab {exported.lab_id})", markup=False)
    out.print(
        f"  cd {directory} && docker-compose up -d\n"
        f"  docker-compose exec -T {exported.client} {' '.join(exported.send_command())}\n"
        f"  docker-compose down",
        markup=False,
    )
    return 0
