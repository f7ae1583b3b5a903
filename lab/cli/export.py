"""`smtplab export SCENARIO --k8s`: the lab as Kubernetes manifests (a design on paper;
`docs/kubernetes-backend.md`), as multi-document YAML on stdout."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import yaml

from lab.catalog import load
from lab.cli.common import add_command
from lab.errors import LabError, UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `export`."""
    sub = add_command(
        commands, "export", cmd_export, "Render a scenario's lab for another runtime (Kubernetes)."
    )
    sub.add_argument("scenario", metavar="SCENARIO")
    sub.add_argument("--k8s", action="store_true", help="Kubernetes manifests (the only format)")
    sub.add_argument("--image", metavar="TAG", help="the node image (default: this source's tag)")


def cmd_export(args: argparse.Namespace) -> int:
    """`smtplab export SCENARIO --k8s [--image TAG]`."""
    if not args.k8s:
        raise UsageError("say which format: --k8s")
    from lab.export.k8s import manifests
    from lab.topology import resolve

    scenario = load(args.scenario)
    image = args.image
    if image is None:
        from lab.runtime.image import node_image_tag

        try:
            image = node_image_tag()
        except LabError:  # installed without sources: the tag cannot be computed
            image = "smtplab-node:latest"
    documents = manifests(resolve(scenario), image)
    print(yaml.safe_dump_all(documents, sort_keys=False), end="")
    return 0
