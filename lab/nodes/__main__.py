"""`python -m lab.nodes <role> <config.json>`: run one node program (as in a container)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from lab.nodes.config import AnyNodeConfig

ROLES = ("dns", "relay", "mx", "client", "router")


def load_config(path: Path) -> AnyNodeConfig:
    """Read a generated node config file."""
    adapter: TypeAdapter[AnyNodeConfig] = TypeAdapter(AnyNodeConfig)
    return adapter.validate_json(path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the role's program."""
    parser = argparse.ArgumentParser(prog="python -m lab.nodes")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("config", type=Path)
    parser.add_argument("--settings", help="client only: mail settings as JSON, overriding")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except (OSError, ValidationError) as error:
        sys.stderr.write(f"lab.nodes: cannot use {args.config}: {error}\n")
        return 2
    expected = {"relay": "relay", "mx": "mx"}.get(args.role, args.role)
    if config.role != expected:
        sys.stderr.write(f"lab.nodes: {args.config} configures a {config.role}, not {args.role}\n")
        return 2
    if config.role == "client":
        from lab.nodes import client

        return client.main(args.config, args.settings)
    if config.role == "dns":
        from lab.nodes import dns

        asyncio.run(dns.serve(config))
    elif config.role == "router":
        from lab.nodes import router

        asyncio.run(router.serve(config))
    else:
        from lab.nodes.mailserver import server

        asyncio.run(server.serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
