"""Runtime backends, picked by name: `local` (in-process) and `docker` (containers).

Without a name: `SMTPLAB_BACKEND`, else docker where an engine answers and the
node image exists or can be built, else local (see `default_backend`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.config import settings
from lab.errors import BackendUnavailable, UsageError
from lab.runtime.progress import Progress

if TYPE_CHECKING:
    from lab.runtime.base import Backend


def _local(progress: Progress | None) -> Backend:
    from lab.runtime.local import LocalBackend

    del progress  # nothing slow to report
    return LocalBackend()


def _docker(progress: Progress | None) -> Backend:
    from lab.runtime.docker import DockerBackend

    return DockerBackend(progress=progress) if progress is not None else DockerBackend()


BACKENDS: dict[str, Callable[[Progress | None], Backend]] = {"local": _local, "docker": _docker}


# How `default_backend` says that docker was passed over although an engine answers.
ENGINE_ANSWERS_BUT = "a Docker engine answers, but "
BUILD_HINT = "`sudo apt-get install debootstrap && sudo smtplab image build --offline`"


def default_backend() -> tuple[str, str]:
    """The backend to use when none is named, and why.

    `SMTPLAB_BACKEND` when set; else docker when an engine answers and the node
    image is built or can be built here (the first docker run then builds it,
    about 80 s without a registry); else local, the embedded default.
    """
    if settings.backend:
        return settings.backend, "SMTPLAB_BACKEND"
    from lab.runtime.docker import DockerBackend

    docker = DockerBackend()
    reason = docker.available()
    if reason is not None:
        return "local", reason
    from lab.runtime.image import why_unbuildable

    try:
        reason = why_unbuildable(docker.client)
    except Exception as error:  # an engine that fails mid-question: the embedded default
        reason = f"the Docker engine failed to answer ({type(error).__name__}: {error})"
    if reason is not None:
        return "local", f"{ENGINE_ANSWERS_BUT}{reason}; {BUILD_HINT} makes it work"
    return "docker", "a Docker engine answers"


def get_backend(name: str | None = None, *, progress: Progress | None = None) -> Backend:
    """The backend called `name`; by default `default_backend()`'s.

    Args:
        name: "local" or "docker"; None picks the default.
        progress: receives a line per slow step (the docker node image build).

    Raises:
        UsageError: unknown name.
        BackendUnavailable: the backend cannot run here, with the reason.
    """
    name = name or default_backend()[0]
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    backend = BACKENDS[name](progress)
    reason = backend.available()
    if reason is not None:
        raise BackendUnavailable(f"the {name} backend cannot run here: {reason}")
    return backend
