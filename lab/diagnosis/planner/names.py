"""Names and addresses as the planner reads them: an address's domain, an IP literal.

Kept apart because the probes (which look names up) and several stages (the
settings, the certificate's names) need the same reading.
"""

from __future__ import annotations

import ipaddress


def domain_of(address: str) -> str:
    """The domain of an address, lower case ("" when there is none)."""
    return address.rpartition("@")[2].strip().lower()


def is_ip_literal(server: str) -> bool:
    """True for "192.0.2.1" or "[192.0.2.1]"."""
    candidate = server[1:-1] if server.startswith("[") and server.endswith("]") else server
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True
