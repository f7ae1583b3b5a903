"""The client node: the customer's mail program, sending once with its configured settings.

In a container it runs as `python -m lab.nodes client config.json [--settings-file F]`
and prints the `SendResult` as JSON on stdout; the local backend calls
`run_once` in-process with its emulating connector. Names are resolved through
the lab DNS only: a lab node must never consult the host's resolver (it could
lead to a real mail server).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from lab.net import Connector, DirectConnector
from lab.nodes.config import ClientConfig, load_node_config
from lab.scenario.model import MailSettings
from lab.smtp.mail_program import send_mail
from lab.smtp.result import SendResult


class NoResolver(LookupError):
    """The node has no lab resolver configured, so names cannot be looked up."""

    permanent = True


async def run_once(
    config: ClientConfig,
    *,
    connector: Connector,
    settings_override: MailSettings | None = None,
) -> SendResult:
    """Send one message as the configured mail program (or with `settings_override`)."""
    settings = settings_override or config.settings
    resolver_config = config.resolver

    async def resolve(name: str) -> list[str]:
        if resolver_config is None:
            raise NoResolver(f"cannot resolve {name}: no lab resolver configured")
        # Imported here so that sending to an address literal needs no DNS machinery.
        from lab.nodes.resolver import make_resolver, resolve_addresses

        return await resolve_addresses(make_resolver(resolver_config), name)

    return await send_mail(
        settings,
        connector=connector,
        resolve=resolve,
        helo=config.hostname,
        ca_file=config.ca_file,
    )


def load_config(config_path: str | Path) -> ClientConfig:
    """A client's generated node config file (the bare node config, as every node reads it).

    Raises:
        OSError: the file cannot be read.
        ValueError: not JSON, not a valid node configuration, or not a client's.
    """
    node = load_node_config(Path(config_path))  # the one format every role reads
    if not isinstance(node, ClientConfig):
        raise ValueError(f"{config_path}: a {node.role} configuration, not a client's")
    return node


def main(config_path: str | Path, settings_json: str | None = None) -> int:
    """Send once and print the result as JSON on stdout.

    Returns 0 whenever a result was printed, whatever the outcome (the caller
    reads the outcome from the JSON), and 2 when the configuration or the
    settings cannot be used (one line on stderr).
    """
    try:
        config = load_config(config_path)
        override = (
            MailSettings.model_validate_json(settings_json) if settings_json is not None else None
        )
    except (OSError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        sys.stderr.write(f"client: {_one_line(error)}\n")
        return 2
    result = asyncio.run(run_once(config, connector=DirectConnector(), settings_override=override))
    sys.stdout.write(json.dumps(result.to_json()) + "\n")
    return 0


def _one_line(error: Exception) -> str:
    """The first problem only: the container's caller shows a single line."""
    if isinstance(error, ValidationError) and error.errors():
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return str(error) or type(error).__name__
