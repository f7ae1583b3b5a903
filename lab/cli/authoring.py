"""`smtplab new` and `smtplab schema`: writing scenarios of one's own, from a commented
scaffold that validates and verifies as it is, with a reference of every key."""

from __future__ import annotations

import argparse
import json
import re
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from lab.cli.common import add_command, out
from lab.errors import UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def add_parsers(commands: Commands) -> None:
    """Register `new` and `schema`."""
    sub = add_command(
        commands,
        "new",
        cmd_new,
        "Write NAME.yaml: a commented working scenario to break in one place.",
    )
    sub.add_argument("name", metavar="NAME", help="the scenario id: lowercase, digits, dashes")
    sub.add_argument("--dir", type=Path, default=Path(), help="where to write it (default: here)")

    sub = add_command(
        commands, "schema", cmd_schema, "Print the scenario schema (JSON Schema by default)."
    )
    sub.add_argument(
        "--markdown",
        action="store_true",
        help="the reference of every key (type, default, meaning, example) as Markdown",
    )


def cmd_new(args: argparse.Namespace) -> int:
    """`smtplab new NAME`."""
    name = str(args.name).removesuffix(".yaml")
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"{args.name!r} is not a scenario id: use lowercase letters, digits and dashes"
        )
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir}: no such directory")
    path = args.dir / f"{name}.yaml"
    if path.exists():
        raise UsageError(f"{path} exists already; choose another name or remove it")
    template = resources.files("lab.scenario").joinpath("new-scenario.yaml").read_text("utf-8")
    path.write_text(Template(template).substitute(name=name), encoding="utf-8")
    out.print(f"wrote {path}; check it with `smtplab verify {path}`", markup=False)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """`smtplab schema [--markdown]`."""
    if args.markdown:
        out.print(schema_markdown(), markup=False, highlight=False, soft_wrap=True, end="")
        return 0
    from lab.scenario.model import Scenario

    out.print_json(json.dumps(Scenario.model_json_schema(by_alias=True)))
    return 0


def schema_markdown() -> str:
    """docs/scenario-schema.md as it should read, examples from the scenarios shipped."""
    from lab.catalog import load_catalog
    from lab.config import settings
    from lab.scenario.reference import catalog_examples, markdown

    scenarios, _ = load_catalog(settings.shipped_scenarios_dir)
    return markdown(catalog_examples(scenarios))
