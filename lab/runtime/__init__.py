"""Runtime backends, picked by name: `local` (in-process) and `docker` (containers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.config import settings
from lab.errors import BackendUnavailable, UsageError

if TYPE_CHECKING:
    from lab.runtime.base import Backend


def _local() -> Backend:
    from lab.runtime.local import LocalBackend

    return LocalBackend()


def _docker() -> Backend:
    from lab.runtime.docker import DockerBackend

    return DockerBackend()


BACKENDS: dict[str, Callable[[], Backend]] = {"local": _local, "docker": _docker}


def get_backend(name: str | None = None) -> Backend:
    """The backend called `name`; by default `SMTPLAB_BACKEND`, else local.

    Raises:
        UsageError: unknown name.
        BackendUnavailable: the backend cannot run here, with the reason.
    """
    name = name or settings.backend or "local"
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    backend = BACKENDS[name]()
    reason = backend.available()
    if reason is not None:
        raise BackendUnavailable(f"the {name} backend cannot run here: {reason}")
    return backend
