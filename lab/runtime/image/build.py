"""The node image itself: its tag for the current sources, whether it is here or can be
built, the build (on either base, from the assembled context), and pruning older tags."""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.runtime import labels
from lab.runtime.image.base import (
    BASE_REPOSITORY,
    ONLINE_APT_PACKAGES,
    ONLINE_BASE,
    ensure_offline_base,
    ensure_online_base,
    registry_reachable,
    rootfs_key,
    rootfs_tarball,
)
from lab.runtime.image.sources import (
    DOCKERFILE,
    ImageBuildError,
    image_digest,
    lab_version,
    project_root,
    runtime_dependencies,
)
from lab.runtime.image.wheels import build_context, collect_wheels
from lab.runtime.progress import Progress, say_nothing

NODE_REPOSITORY = "smtplab-node"


def default_cache_dir() -> Path:
    """Where root filesystems and wheels are kept between builds (`SMTPLAB_CACHE`)."""
    from lab.config import settings

    return settings.cache_dir


def node_image_tag(root: Path | None = None) -> str:
    """`smtplab-node:<first 16 hex digits of image_digest>` for the current sources."""
    root = root or project_root()
    return f"{NODE_REPOSITORY}:{image_digest(root, runtime_dependencies(root))[:16]}"


def present_node_image(client: Any) -> str | None:
    """The node image's tag when the engine has it for the current sources, else None."""
    import docker.errors

    tag = node_image_tag()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None
    return tag


def why_unbuildable(client: Any, cache_dir: Path | None = None) -> str | None:
    """None when the node image can be built here (or exists), else why not.

    Cheapest evidence first: the image itself, an offline base image, a cached
    root filesystem, root with debootstrap, and last a registry that answers.
    """
    import docker.errors

    try:
        project_root()
        if present_node_image(client) is not None:
            return None
        client.images.get(f"{BASE_REPOSITORY}:{rootfs_key()}")
        return None
    except ImageBuildError as error:
        return str(error)
    except docker.errors.ImageNotFound:
        pass
    cache_dir = cache_dir or default_cache_dir()
    if rootfs_tarball(cache_dir).is_file():
        return None
    if os.geteuid() == 0 and shutil.which("debootstrap") is not None:
        return None
    if registry_reachable(client):
        return None
    return (
        f"the node image is not built, no registry answers for {ONLINE_BASE}, and the "
        "offline build needs root and debootstrap"
    )


def build_node_image(
    offline: bool | None = None,
    progress: Progress = say_nothing,
    *,
    client: Any | None = None,
    cache_dir: Path | None = None,
    force: bool = False,
    prune: bool = False,
    repository: str = NODE_REPOSITORY,
    base_repository: str = BASE_REPOSITORY,
) -> str:
    """The node image for the current sources: found, or built. Returns its tag.

    Args:
        offline: True builds on a debootstrap base, False on `python:3.11-slim`;
            None picks offline when that image can be neither found nor pulled.
        progress: receives one line per step.
        client: a docker client (default: from the environment).
        cache_dir: where root filesystems and wheels are cached.
        force: build even when an image with the tag exists.
        prune: after a build, untag older node and base images (`remove_stale_images`).
            Off by default: another process may still be about to use them.
        repository, base_repository: image names (benchmarks build under their own,
            so that measuring a cold build never removes the images labs use).

    Raises:
        ImageBuildError: with the failing step's output.
    """
    import docker
    import docker.errors

    started = time.monotonic()
    client = client or docker.from_env()
    cache_dir = cache_dir or default_cache_dir()
    root = project_root()
    dependencies = runtime_dependencies(root)
    tag = f"{repository}:{image_digest(root, dependencies)[:16]}"
    if not force:
        try:
            client.images.get(tag)
            progress(f"image: {tag} is up to date")
            return tag
        except docker.errors.ImageNotFound:
            pass
    if offline is None:
        offline = not registry_reachable(client)
        progress(f"image: registry {'unreachable: offline' if offline else 'reachable'} build")
    if offline:
        base = ensure_offline_base(client, cache_dir, progress, repository=base_repository)
        apt_packages = ""
    else:
        base = ensure_online_base(client, progress)
        apt_packages = " ".join(ONLINE_APT_PACKAGES)
    wheels = collect_wheels(root, dependencies, cache_dir, progress)
    context = build_context((root / DOCKERFILE).read_bytes(), wheels)
    build_args = {"BASE": base, "APT_PACKAGES": apt_packages, "PIP_WHEEL": wheels.pip.name}
    progress(f"image: building {tag} on {base}")
    _run_build(
        client,
        context,
        tag,
        buildargs=build_args,
        labels={labels.IMAGE: "node", labels.BASE: base, labels.VERSION: lab_version()},
        # Offline means offline: the build itself gets no network, which proves it needs none.
        network_mode="none" if offline else None,
        progress=progress,
    )
    progress(f"image: {tag} built in {time.monotonic() - started:.0f} s")
    removed = remove_stale_images(client, keep={tag, base}) if prune else []
    if removed:
        progress(f"image: removed {len(removed)} older smtp-lab image(s)")
    return tag


_STEP = re.compile(r"^Step \d+/\d+ : ")


def _run_build(client: Any, context: io.BytesIO, tag: str, **options: Any) -> None:
    """Stream a classic-builder build, passing step lines on; raise on its error message."""
    log: list[str] = []
    progress: Progress = options.pop("progress")
    for chunk in client.api.build(
        fileobj=context,
        custom_context=True,
        tag=tag,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
        **options,
    ):
        if "error" in chunk:
            detail = "\n".join(log[-15:])
            raise ImageBuildError(f"building {tag} failed: {chunk['error'].strip()}\n{detail}")
        text = str(chunk.get("stream", "")).rstrip()
        if text:
            log.extend(text.splitlines())
            if _STEP.match(text):
                progress(f"image: {text}")


def remove_stale_images(client: Any, keep: Iterable[str]) -> list[str]:
    """Untag older node and base images (not `keep`); ones still in use stay.

    Each source change makes a new tag; without this every edit would leave a
    few megabytes of project layer behind (base and dependency layers are shared).
    """
    import docker.errors

    keep = set(keep)
    removed: list[str] = []
    for kind in ("node", "base"):
        for image in client.images.list(filters={"label": f"{labels.IMAGE}={kind}"}):
            for tag in image.tags:
                if tag in keep:
                    continue
                try:
                    client.images.remove(tag, noprune=False)
                except docker.errors.APIError:
                    continue  # used by a container of a running lab: keep it
                removed.append(tag)
    return removed
