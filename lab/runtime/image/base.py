"""The node image's base, with Python 3.11, iproute2, iptables and tcpdump: `python:3.11-slim`
from a registry, or (offline, as in CI) a debootstrap Debian root filesystem, cached as a tarball
keyed by its package list and imported as `smtplab-base:<key>`."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lab.runtime import labels
from lab.runtime.image.sources import ImageBuildError, lab_version
from lab.runtime.progress import Progress, say_nothing

BASE_REPOSITORY = "smtplab-base"
ONLINE_BASE = "python:3.11-slim"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# Postfix, postgrey (greylisting policy server, with the perl TLS defaults it needs) and Cyrus
# SASL (saslpasswd2, sasldb) run real-MTA nodes (`software: postfix`, `lab.nodes.postfix`).
MTA_PACKAGES = ("postfix", "postgrey", "sasl2-bin", "libsasl2-modules", "perl-openssl-defaults")
BASE_PACKAGES = ("python3", "iproute2", "iptables", "ca-certificates", "tcpdump", *MTA_PACKAGES)
# What the online base lacks (python:3.11-slim has Python and CA certificates).
ONLINE_APT_PACKAGES = ("iproute2", "iptables", "tcpdump", *MTA_PACKAGES)
# Bump when the root filesystem is made differently (RECIPE in `lab.runtime.image.sources`:
# when the way images are put together changes).
ROOTFS_RECIPE = "1"
# Trimmed from the debootstrap tree before import: about half of its size, none of it used.
ROOTFS_PRUNE = (
    "var/cache/apt/archives",
    "var/cache/apt/pkgcache.bin",
    "var/cache/apt/srcpkgcache.bin",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
)


def registry_reachable(client: Any, image: str = ONLINE_BASE) -> bool:
    """Whether `image` can be had: present locally, or its registry answers for it."""
    import docker.errors

    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError:
        return False
    try:
        # Asks the registry for the manifest only; fails fast when no registry resolves.
        client.images.get_registry_data(image)
    except (docker.errors.APIError, OSError):
        return False
    return True


def rootfs_key(packages: Iterable[str] = BASE_PACKAGES) -> str:
    """Cache key of a debootstrap root filesystem: suite, arch and package list."""
    text = json.dumps(
        {
            "suite": SUITE,
            "arch": platform.machine(),
            "packages": sorted(packages),
            "recipe": ROOTFS_RECIPE,
            "prune": ROOTFS_PRUNE,
        }
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rootfs_tarball(cache_dir: Path, packages: Iterable[str] = BASE_PACKAGES) -> Path:
    """Where the root filesystem with `packages` is cached under `cache_dir`."""
    return cache_dir / "rootfs" / f"{SUITE}-{rootfs_key(packages)}.tar"


def build_rootfs(
    cache_dir: Path,
    progress: Progress = say_nothing,
    packages: Iterable[str] = BASE_PACKAGES,
    mirror: str = MIRROR,
) -> Path:
    """A tarball of a minimal Debian root filesystem with `packages`, built once and cached.

    Raises:
        ImageBuildError: not root, no debootstrap, or debootstrap failed (its log tail included).
    """
    packages = sorted(packages)
    tarball = rootfs_tarball(cache_dir, packages)
    if tarball.is_file():
        progress(f"root filesystem: cached {tarball}")
        return tarball
    if os.geteuid() != 0:
        raise ImageBuildError(
            "the offline image build runs debootstrap, which needs root; "
            "run `smtplab image build --offline` as root once (the result is cached)"
        )
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageBuildError(
            "no registry is reachable and debootstrap is missing: apt-get install debootstrap"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smtplab-rootfs-", dir=tarball.parent) as scratch:
        target = Path(scratch) / "root"
        command = [
            debootstrap,
            "--variant=minbase",
            f"--include={','.join(packages)}",
            SUITE,
            str(target),
            mirror,
        ]
        progress(f"root filesystem: {' '.join(command)}")
        started = time.monotonic()
        log = Path(scratch) / "debootstrap.log"
        with log.open("wb") as output:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise ImageBuildError(
                f"debootstrap failed (exit {result.returncode}):\n" + "\n".join(tail)
            )
        progress(f"root filesystem: debootstrap took {time.monotonic() - started:.0f} s")
        _prune(target)
        partial = tarball.with_suffix(".partial")
        # GNU tar keeps device nodes, ownership and xattrs as they are; --numeric-owner
        # so that the host's user names never leak into the image's ownership.
        subprocess.run(
            ["tar", "-C", str(target), "--numeric-owner", "-cf", str(partial), "."],
            check=True,
        )
        partial.replace(tarball)
    progress(f"root filesystem: cached {tarball} ({tarball.stat().st_size >> 20} MiB)")
    return tarball


def _prune(target: Path) -> None:
    """Empty or remove `ROOTFS_PRUNE` in the root filesystem at `target`."""
    for relative in ROOTFS_PRUNE:
        path = target / relative
        if path.is_dir():
            shutil.rmtree(path)
            path.mkdir()
        elif path.exists():
            path.unlink()


def ensure_offline_base(
    client: Any,
    cache_dir: Path,
    progress: Progress = say_nothing,
    *,
    repository: str = BASE_REPOSITORY,
) -> str:
    """`smtplab-base:<key>`, imported from the cached root filesystem unless present."""
    import docker.errors

    tag = f"{repository}:{rootfs_key()}"
    try:
        client.images.get(tag)
        progress(f"base image: {tag} present")
        return tag
    except docker.errors.ImageNotFound:
        pass
    tarball = build_rootfs(cache_dir, progress)
    progress(f"base image: importing {tarball.name} as {tag}")
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(
        str(tarball),
        repository=repository,
        tag=version,
        changes=[
            f"LABEL {labels.IMAGE}=base",
            f"LABEL {labels.VERSION}={lab_version()}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
        ],
    )
    return tag


def ensure_online_base(client: Any, progress: Progress = say_nothing) -> str:
    """`python:3.11-slim`, pulled unless present.

    Raises:
        ImageBuildError: the pull failed.
    """
    import docker.errors

    base = ONLINE_BASE
    try:
        client.images.get(base)
    except docker.errors.ImageNotFound:
        progress(f"image: pulling {base}")
        try:
            client.images.pull(base)
        except docker.errors.APIError as error:
            raise ImageBuildError(
                f"cannot pull {base} ({error.explanation or error}); "
                "build offline instead (`smtplab image build --offline`)"
            ) from None
    return base
