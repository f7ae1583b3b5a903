"""`smtplab image build`: the docker node image, built offline from a debootstrap root
filesystem or online from python:3.11-slim, and found in seconds when its sources are
unchanged. `smtplab image` alone says what to add."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lab.cli.common import add_command, engine_errors, out, progress
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `image` and its `build` command."""
    sub = add_command(commands, "image", _image_help, "Manage the docker node image.")
    image_commands = sub.add_subparsers(title="image commands", metavar="COMMAND")
    build = image_commands.add_parser(
        "build",
        help="Build the node image (found in seconds when the sources are unchanged).",
        description="Build the node image: offline from a debootstrap root filesystem "
        "(about 80 s the first time) or online from python:3.11-slim; chosen by whether a "
        "registry answers, unless a flag says.",
    )
    build.set_defaults(handler=cmd_image_build)
    where = build.add_mutually_exclusive_group()
    where.add_argument("--offline", action="store_true", help="debootstrap base, no registry")
    where.add_argument("--online", action="store_true", help="python:3.11-slim from a registry")
    build.add_argument("--force", action="store_true", help="build even if the image exists")


def _image_help(args: argparse.Namespace) -> int:
    del args
    raise UsageError("say what to do with the image: `smtplab image build [--offline|--online]`")


@engine_errors
def cmd_image_build(args: argparse.Namespace) -> int:
    """`smtplab image build [--offline|--online] [--force]`."""
    import time

    from lab.runtime.docker import DockerBackend
    from lab.runtime.image import build_node_image

    backend = DockerBackend()
    reason = backend.available()
    if reason is not None:
        from lab.errors import BackendUnavailable

        raise BackendUnavailable(reason)
    offline = True if args.offline else False if args.online else None
    started = time.monotonic()
    with progress("building the node image") as say:
        tag = build_node_image(offline, say, client=backend.client, force=args.force)
    out.print(f"{tag} ready in {time.monotonic() - started:.1f} s", markup=False)
    return 0
