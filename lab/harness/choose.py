"""Which backend a test's lab runs on: asked for by name (`auto` or None: docker where an
engine answers and the node image is built or can be built, else local)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.errors import UsageError
from lab.runtime import BACKENDS, default_backend, get_backend

if TYPE_CHECKING:
    from lab.runtime.base import Backend

CHOICES = ("auto", *sorted(BACKENDS))


def choose_backend(name: str | None) -> Backend:
    """The backend called `name` ("auto"/None: the default); docker with its node image
    found or built here, before any lab starts.

    Raises:
        UsageError: an unknown name.
        BackendUnavailable: the backend asked for cannot run here, with the reason.
    """
    if name not in (None, *CHOICES):
        raise UsageError(f"unknown smtplab backend {name!r}; choose one of: {', '.join(CHOICES)}")
    chosen = default_backend()[0] if name in (None, "auto") else name
    backend = get_backend(chosen)
    ensure_image = getattr(backend, "ensure_image", None)
    if callable(ensure_image):
        ensure_image()
    return backend
