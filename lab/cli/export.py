"""`smtplab export SCENARIO --compose DIR | --k8s`: a scenario's lab for another runtime —
a docker compose project in DIR, or Kubernetes manifests (a design on paper;
`docs/kubernetes-backend.md`) as multi-document YAML on stdout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lab.catalog import load
from lab.cli.common import add_command, engine_errors, out, pick_backend
from lab.errors import LabError, UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands
    from lab.scenario.model import Scenario


def add_parsers(commands: Commands) -> None:
    """Register `export`."""
    sub = add_command(
        commands,
        "export",
        cmd_export,
        "Render a scenario's lab for another runtime: a docker compose project (services, "
        "networks, configs) for CI that runs compose, or Kubernetes manifests.",
    )
    sub.add_argument("scenario", metavar="SCENARIO", help="an id from `smtplab list` or a file")
    formats = sub.add_mutually_exclusive_group()
    formats.add_argument("--compose", type=Path, metavar="DIR", help="the project directory")
    formats.add_argument("--k8s", action="store_true", help="Kubernetes manifests on stdout")
    sub.add_argument(
        "--image", metavar="TAG", help="with --k8s: the node image (default: this source's tag)"
    )


@engine_errors
def cmd_export(args: argparse.Namespace) -> int:
    """`smtplab export SCENARIO --compose DIR` or `--k8s [--image TAG]`."""
    if args.compose is None and not args.k8s:
        raise UsageError("say which format: --compose DIR or --k8s")
    if args.image is not None and not args.k8s:
        raise UsageError("--image goes with --k8s; --compose uses the lab's built node image")
    scenario = load(args.scenario)
    if args.k8s:
        return _export_k8s(scenario, args.image)
    return _export_compose(scenario, args.compose)


def _export_k8s(scenario: Scenario, image: str | None) -> int:
    """Kubernetes manifests, one YAML document each, on stdout."""
    import yaml

    from lab.export.k8s import manifests
    from lab.topology import resolve

    if image is None:
        from lab.runtime.image import node_image_tag

        try:
            image = node_image_tag()
        except LabError:  # installed without sources: the tag cannot be computed
            image = "smtplab-node:latest"
    documents = manifests(resolve(scenario), image)
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0


def _export_compose(scenario: Scenario, directory: Path) -> int:
    """A compose project in a new (or empty) directory, and how to run it."""
    from lab.runtime.docker import DockerBackend
    from lab.runtime.docker.compose import export_compose

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
