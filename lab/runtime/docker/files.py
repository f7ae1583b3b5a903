"""A docker lab's files: the host directory bind-mounted at `DATA_ROOT` in every container,
holding node configs, TLS files, node data dirs and one-shot files for `docker exec`."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from lab.config import settings
from lab.errors import LabStartError
from lab.private_files import private_directory, write_private
from lab.topology import Topology

# Where the lab's host directory appears in every container; node data dirs are below it.
DATA_ROOT = Path("/var/lib/smtplab")
# Node configs live beside the data dirs; "_" cannot start a node name, so no clash.
CONFIG_DIR = "_config"
TLS_DIR = "_tls"  # the lab CA and every server's certificate and key
RUN_DIR = "_run"  # one-shot files for `docker exec` (mail settings with a password)
# Files the init scripts and the runtime create to signal each other (`signal_file`).
SIGNALS_DIR = "_signals"
ROUTERS_READY = "routers-ready"  # created by the runtime: the nodes behind routers may start


def lab_state_dir(lab_id: str) -> Path:
    """The host directory bind-mounted into lab `lab_id`'s containers.

    Under `docker/`, apart from `labs/`, where the CLI keeps the records of
    local labs: a docker lab is found by its label, never by a file.
    """
    return settings.state_dir / "docker" / lab_id


def config_path(node: str) -> str:
    """Where `node`'s config file appears inside the containers."""
    return str(DATA_ROOT / CONFIG_DIR / f"{node}.json")


def signal_file(name: str, host_dir: Path | None = None) -> Path:
    """Signal file `name`: as the containers see it, or under `host_dir` as the host does."""
    return (host_dir if host_dir is not None else DATA_ROOT) / SIGNALS_DIR / name


def routes_set_file(node: str, host_dir: Path | None = None) -> Path:
    """The file `node`'s init script creates once its routes are set (`signal_file`)."""
    return signal_file(f"{node}.routes-set", host_dir)


def write_node_files(topology: Topology, host_dir: Path) -> Path:
    """Node configs under `_config/`, certificates under `_tls/`, empty data dirs.

    Returns:
        The lab CA certificate (host path) that signs every server certificate.

    Raises:
        LabStartError: a node's data dir is not under `DATA_ROOT`.
    """
    from lab.nodes.config import ClientConfig, MailServerConfig, TlsFiles
    from lab.nodes.tls import issue_certificates
    from lab.scenario.model import MailServerNode

    # Configs hold passwords (relay users, the client's login): owner-only, like the keys.
    private_directory(host_dir / CONFIG_DIR)
    (host_dir / SIGNALS_DIR).mkdir(parents=True, exist_ok=True)
    servers = {
        name: spec.certificate
        for name, spec in topology.scenario.nodes.items()
        if isinstance(spec, MailServerNode)
    }
    hostnames = {
        spec.hostname: fault
        for name, fault in servers.items()
        if isinstance(spec := topology.scenario.nodes[name], MailServerNode)
    }
    host_ca_file, issued = issue_certificates(host_dir / TLS_DIR, hostnames)
    # The same files, as the containers see them.
    ca_file = DATA_ROOT / TLS_DIR / host_ca_file.name
    for node in topology.nodes.values():
        if node.config.data_dir != DATA_ROOT / node.name:
            raise LabStartError(
                f"node {node.name}: data_dir {node.config.data_dir} is not under "
                f"{DATA_ROOT}; resolve the topology with data_root={DATA_ROOT}"
            )
        (host_dir / node.name).mkdir(parents=True, exist_ok=True)
        config = node.config
        if isinstance(config, MailServerConfig):
            files = issued[config.hostname]
            tls = TlsFiles(
                cert_file=DATA_ROOT / TLS_DIR / files.cert_file.name,
                key_file=DATA_ROOT / TLS_DIR / files.key_file.name,
                fault=files.fault,
            )
            config = config.model_copy(update={"tls": tls, "ca_file": ca_file})
        elif isinstance(config, ClientConfig):
            config = config.model_copy(update={"ca_file": ca_file})
        path = host_dir / CONFIG_DIR / f"{node.name}.json"
        write_private(path, config.model_dump_json(indent=2) + "\n")
    return host_ca_file


@contextlib.contextmanager
def run_file(host_dir: Path, prefix: str, text: str) -> Iterator[Path]:
    """A one-shot file with `text` under `_run/`, removed on exit; yields its container path.

    Only root and the containers can read it: what goes through it (mail
    settings with a password) must never appear on a command line, which
    `ps` and `docker inspect` show.
    """
    name = f"{prefix}-{secrets.token_hex(8)}.json"
    host_file = host_dir / RUN_DIR / name
    private_directory(host_file.parent)
    write_private(host_file, text, exclusive=True)
    try:
        yield DATA_ROOT / RUN_DIR / name
    finally:
        host_file.unlink(missing_ok=True)
