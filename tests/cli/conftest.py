"""CLI test fixtures, borrowed from the packages the commands drive.

The diagnosis world (DNS, certificates, fake servers) for `smtplab diagnose --server`;
the Docker engine, node image, skip-without-engine hook and end-of-session cleanliness
check for the docker lab commands. Imported, not copied: one definition each.
"""

from __future__ import annotations

from tests.diagnosis.conftest import dns_port, pki, world
from tests.runtime.conftest import (
    docker_client,
    docker_session_clean,
    node_image,
    pytest_runtest_setup,
)

__all__ = [
    "dns_port",
    "docker_client",
    "docker_session_clean",
    "node_image",
    "pki",
    "pytest_runtest_setup",
    "world",
]
