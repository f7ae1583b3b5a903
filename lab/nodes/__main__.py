"""`python -m lab.nodes <role> <config.json>`: run one node program (as in a container).

The config file is the bare node config (`AnyNodeConfig` as JSON), as the
runtime backends write it. A relay or mx runs as `--workers` processes
sharing its ports (default: its config's `workers`; see
`mailserver.workers`). The client takes its mail settings from
`--settings-file` (preferred: a password in a file is not visible in the
process list or in `docker inspect`) or `--settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from lab.nodes.config import load_node_config
from lab.scenario.vocabulary import MtaSoftware

ROLES = ("dns", "relay", "mx", "client", "router")


def main(argv: list[str] | None = None) -> int:
    """Dispatch to the role's program."""
    parser = argparse.ArgumentParser(prog="python -m lab.nodes")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("config", type=Path)
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--settings", help="client only: mail settings as JSON, overriding")
    settings.add_argument(
        "--settings-file",
        type=Path,
        help="client only: a file holding the mail settings as JSON (keeps a password off "
        "the command line)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="relay/mx only: processes accepting on the same ports (default: the config's)",
    )
    args = parser.parse_args(argv)
    try:
        config = load_node_config(args.config)
    except (OSError, ValidationError) as error:
        sys.stderr.write(f"lab.nodes: cannot use {args.config}: {error}\n")
        return 2
    expected = {"relay": "relay", "mx": "mx"}.get(args.role, args.role)
    if config.role != expected:
        sys.stderr.write(f"lab.nodes: {args.config} configures a {config.role}, not {args.role}\n")
        return 2
    if config.role == "client":
        from lab.nodes import client

        if args.settings_file is not None:
            try:
                settings_json = args.settings_file.read_text(encoding="utf-8")
            except OSError as error:
                sys.stderr.write(f"client: cannot read {args.settings_file}: {error}\n")
                return 2
            return client.main(args.config, settings_json)
        return client.main(args.config, args.settings)
    try:
        if config.role == "dns":
            from lab.nodes import dns

            asyncio.run(dns.serve(config))
        elif config.role == "router":
            from lab.nodes import router

            asyncio.run(router.serve(config))
        elif config.software is MtaSoftware.POSTFIX:
            from lab.nodes.postfix import program

            return program.serve(config)
        else:
            from lab.nodes.mailserver import server, workers

            count = workers.worker_count(config, args.workers)
            wanted = args.workers or config.workers
            if count < wanted:
                reasons = ", ".join(workers.single_process_reasons(config))
                sys.stderr.write(f"lab.nodes: {config.name} runs in one process ({reasons})\n")
            if count > 1:
                return workers.serve_workers(config, count)
            asyncio.run(server.serve(config))
    except KeyboardInterrupt:
        # Ctrl-C (or SIGINT from a script): the node has stopped cleanly; no traceback.
        return 130
    return 0


def _positive(text: str) -> int:
    """argparse type: a whole number from 1 to 64."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"not a number of workers from 1 to 64: {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
