"""Build the one node image, with or without a container registry.

Every node runs `python3 -m lab.nodes <role> <config.json>` from the same
image, tagged `smtplab-node:<digest>`, the digest covering the project's
sources, the exact dependency versions and the build recipe: an unchanged
project finds its image with one `images.get` and builds nothing.

Two ways to a base with Python 3.11, iproute2 and iptables:

- online: `python:3.11-slim` from a registry, plus iproute2/iptables from apt;
- offline (CI has no registry): `debootstrap --variant=minbase` a Debian
  bookworm root filesystem (cached as a tarball keyed by its package list),
  `docker import` it as `smtplab-base:<key>`.

Either way the node image is built by the docker SDK from a context assembled
here: `compose/node.Dockerfile` plus wheels of pip, the project and its
runtime dependencies, fetched on the host (where PyPI is reachable) for the
image's platform and installed inside with `--no-index`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lab.errors import LabError
from lab.runtime import labels

Progress = Callable[[str], None]

NODE_REPOSITORY = "smtplab-node"
BASE_REPOSITORY = "smtplab-base"
ONLINE_BASE = "python:3.11-slim"
# The Python of both bases (bookworm's python3 is 3.11.2; python:3.11-slim is 3.11.x).
TARGET_PYTHON = (3, 11)
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "iproute2", "iptables", "ca-certificates")
# What the online base lacks (python:3.11-slim has Python and CA certificates).
ONLINE_APT_PACKAGES = ("iproute2", "iptables")
DOCKERFILE = Path("compose") / "node.Dockerfile"
# Bump when the way images are put together changes without the Dockerfile changing
# (ROOTFS_RECIPE: when the root filesystem is made differently).
RECIPE = "3"
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
# Files of the project that go into its wheel and so into the digest.
_SOURCE_SUFFIXES = frozenset({".py", ".pyi", ".typed", ".tcss", ".yaml", ".json", ".toml"})
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE")
_PACKAGES = ("lab", "tui")


class ImageBuildError(LabError):
    """The node image could not be built; the message says which step failed and why."""

    exit_code = 3


@dataclass(frozen=True)
class Dependency:
    """A runtime dependency pinned to the version installed on the host."""

    name: str
    version: str

    @property
    def requirement(self) -> str:
        """`name==version`."""
        return f"{self.name}=={self.version}"


def _say_nothing(message: str) -> None:
    del message


def default_cache_dir() -> Path:
    """Where root filesystems and wheels are kept between builds (`SMTPLAB_CACHE`)."""
    from lab.config import settings

    return settings.cache_dir


# --- what goes in ---------------------------------------------------------------------------


def project_root() -> Path:
    """The source checkout the running `lab` package comes from.

    Raises:
        ImageBuildError: `lab` is installed without its sources (no pyproject.toml).
    """
    import lab

    root = Path(lab.__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / DOCKERFILE).is_file():
        raise ImageBuildError(
            f"building the node image needs the smtp-lab source checkout; {root} has no "
            f"pyproject.toml and {DOCKERFILE}"
        )
    return root


def source_files(root: Path) -> list[Path]:
    """Files (relative to `root`) that make up the project's wheel, sorted."""
    files = [Path(name) for name in _PROJECT_FILES if (root / name).is_file()]
    for package in _PACKAGES:
        if not (root / package).is_dir():
            continue
        for path in sorted((root / package).rglob("*")):
            if (
                path.is_file()
                and path.suffix in _SOURCE_SUFFIXES
                and "__pycache__" not in path.parts
            ):
                files.append(path.relative_to(root))
    return sorted(files)


def _project_metadata(root: Path) -> dict[str, Any]:
    with (root / "pyproject.toml").open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def target_environment() -> dict[str, str]:
    """PEP 508 marker values of the image's Python (Linux, CPython 3.11, this machine's arch)."""
    major, minor = TARGET_PYTHON
    return {
        "implementation_name": "cpython",
        "implementation_version": f"{major}.{minor}.2",
        "os_name": "posix",
        "platform_machine": platform.machine(),
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{major}.{minor}.2",
        "python_version": f"{major}.{minor}",
        "sys_platform": "linux",
    }


def runtime_dependencies(root: Path) -> list[Dependency]:
    """The project's runtime dependency closure, pinned to what the host has installed.

    Read from pyproject.toml (not from possibly stale install metadata), then
    followed through each installed distribution's own requirements, with
    markers evaluated for the image's Python.

    Raises:
        ImageBuildError: a dependency is not installed on the host.
    """
    # packaging is what pip and setuptools use for PEP 508; imported here only,
    # so that nothing else of `lab` needs it.
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = target_environment()
    pending = [(Requirement(text), "") for text in _project_metadata(root).get("dependencies", [])]
    found: dict[str, Dependency] = {}
    extras_seen: set[tuple[str, str]] = set()
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate(
            {**environment, "extra": extra}
        ):
            continue
        key = canonicalize_name(requirement.name)
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise ImageBuildError(
                f"{requirement.name} (needed by the node image) is not installed here; "
                "run `pip install -e .` in the project first"
            ) from None
        wanted = [("", key)] + [(e, key) for e in sorted(requirement.extras)]
        new = [(e, k) for e, k in wanted if (e, k) not in extras_seen]
        if not new and key in found:
            continue
        found[key] = Dependency(key, distribution.version)
        for extra_name, _ in new:
            extras_seen.add((extra_name, key))
            for text in distribution.requires or []:
                pending.append((Requirement(text), extra_name))
    return sorted(found.values(), key=lambda dependency: dependency.name)


def image_digest(root: Path, dependencies: Iterable[Dependency]) -> str:
    """Hex digest over the recipe, the project's source files and the dependency pins."""
    digest = hashlib.sha256()
    digest.update(f"recipe {RECIPE}\n".encode())
    digest.update(f"python {TARGET_PYTHON} {platform.machine()}\n".encode())
    for relative in [DOCKERFILE, *source_files(root)]:
        content = (root / relative).read_bytes()
        digest.update(f"file {relative.as_posix()} {len(content)}\n".encode())
        digest.update(content)
    for dependency in dependencies:
        digest.update(f"dep {dependency.requirement}\n".encode())
    return digest.hexdigest()


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
    if (cache_dir / "rootfs" / f"{SUITE}-{rootfs_key()}.tar").is_file():
        return None
    if os.geteuid() == 0 and shutil.which("debootstrap") is not None:
        return None
    if registry_reachable(client):
        return None
    return (
        f"the node image is not built, no registry answers for {ONLINE_BASE}, and the "
        "offline build needs root and debootstrap"
    )


# --- registry or not ------------------------------------------------------------------------


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


# --- the offline base -----------------------------------------------------------------------


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


def build_rootfs(
    cache_dir: Path,
    progress: Progress = _say_nothing,
    packages: Iterable[str] = BASE_PACKAGES,
    mirror: str = MIRROR,
) -> Path:
    """A tarball of a minimal Debian root filesystem with `packages`, built once and cached.

    Raises:
        ImageBuildError: not root, no debootstrap, or debootstrap failed (its log tail included).
    """
    packages = sorted(packages)
    tarball = cache_dir / "rootfs" / f"{SUITE}-{rootfs_key(packages)}.tar"
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
        for relative in ROOTFS_PRUNE:
            path = target / relative
            if path.is_dir():
                shutil.rmtree(path)
                path.mkdir()
            elif path.exists():
                path.unlink()
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


def ensure_offline_base(
    client: Any,
    cache_dir: Path,
    progress: Progress = _say_nothing,
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
            f"LABEL {labels.VERSION}={_version()}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
        ],
    )
    return tag


def _version() -> str:
    import lab

    return lab.__version__


# --- wheels ---------------------------------------------------------------------------------


def _platform_tags() -> list[str]:
    """manylinux tags the image's glibc (2.36, bookworm) accepts, newest first."""
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux_2_12_{machine}", f"manylinux2010_{machine}"]
    tags += [f"manylinux_2_5_{machine}", f"manylinux1_{machine}", f"linux_{machine}"]
    return tags


@dataclass(frozen=True)
class Wheels:
    """What the build context's wheel folders hold."""

    pip: Path
    dependencies: tuple[Path, ...]
    project: Path


def collect_wheels(
    root: Path,
    dependencies: Iterable[Dependency],
    cache_dir: Path,
    progress: Progress = _say_nothing,
) -> Wheels:
    """Wheels of pip and the dependencies (cached per pin set), and of the project.

    Raises:
        ImageBuildError: pip could not fetch or build a wheel.
    """
    dependencies = list(dependencies)
    pip_pin = Dependency("pip", metadata.version("pip"))
    pins = [*dependencies, pip_pin]
    key = hashlib.sha256(
        "\n".join(d.requirement for d in pins).encode() + platform.machine().encode()
    ).hexdigest()[:16]
    wheel_dir = cache_dir / "wheels" / key
    if not (wheel_dir / ".complete").is_file():
        progress(f"wheels: fetching {len(pins)} for cp311 {platform.machine()}")
        wheel_dir.mkdir(parents=True, exist_ok=True)
        major, minor = TARGET_PYTHON
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--no-deps", "--only-binary=:all:", "--dest", str(wheel_dir),
            "--python-version", f"{major}.{minor}", "--implementation", "cp",
            "--abi", f"cp{major}{minor}", "--abi", "abi3", "--abi", "none",
        ]  # fmt: skip
        for tag in _platform_tags():
            command += ["--platform", tag]
        _pip(command + [d.requirement for d in pins], "downloading dependency wheels")
        (wheel_dir / ".complete").write_text("\n".join(d.requirement for d in pins) + "\n")
    else:
        progress(f"wheels: cached {wheel_dir}")
    pip_wheels = sorted(wheel_dir.glob(f"pip-{pip_pin.version}-*.whl"))
    if not pip_wheels:
        raise ImageBuildError(f"no wheel of pip {pip_pin.version} in {wheel_dir}")
    others = tuple(w for w in sorted(wheel_dir.glob("*.whl")) if w not in pip_wheels)
    return Wheels(pip_wheels[0], others, build_project_wheel(root, cache_dir, progress))


def build_project_wheel(root: Path, cache_dir: Path, progress: Progress = _say_nothing) -> Path:
    """The project's own wheel, built from a copy of exactly the files in the digest.

    A copy, so the build leaves no `build/` or egg-info behind in the checkout.
    """
    out = cache_dir / "project"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smtplab-src-") as scratch:
        source = Path(scratch) / "src"
        for relative in source_files(root):
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / relative, source / relative)
        readme = _project_metadata(root).get("readme")
        if isinstance(readme, str) and not (source / readme).exists():
            # setuptools refuses a missing readme; the image does not need its text.
            (source / readme).write_text("smtp-lab\n", encoding="utf-8")
        built = Path(scratch) / "dist"
        progress("wheels: building the project's wheel")
        command = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check"]
        _pip([*command, "--no-deps", "--wheel-dir", str(built), str(source)], "building the wheel")
        [wheel] = built.glob("*.whl")
        target = out / wheel.name
        shutil.copy2(wheel, target)
    return target


def _pip(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-12:]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n" + "\n".join(tail))


# --- the node image -------------------------------------------------------------------------


def build_context(dockerfile: bytes, wheels: Wheels) -> io.BytesIO:
    """An uncompressed tar build context: the Dockerfile, pip/, deps/ and project/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(dockerfile))
        folders = {"pip": [wheels.pip], "deps": wheels.dependencies, "project": [wheels.project]}
        for folder, files in folders.items():
            for wheel in files:
                archive.add(wheel, arcname=f"{folder}/{wheel.name}", recursive=False)
    buffer.seek(0)
    return buffer


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


def build_node_image(
    offline: bool | None = None,
    progress: Progress = _say_nothing,
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
        base = ONLINE_BASE
        apt_packages = " ".join(ONLINE_APT_PACKAGES)
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
    wheels = collect_wheels(root, dependencies, cache_dir, progress)
    context = build_context((root / DOCKERFILE).read_bytes(), wheels)
    build_args = {"BASE": base, "APT_PACKAGES": apt_packages, "PIP_WHEEL": wheels.pip.name}
    progress(f"image: building {tag} on {base}")
    _run_build(
        client,
        context,
        tag,
        buildargs=build_args,
        labels={labels.IMAGE: "node", labels.BASE: base, labels.VERSION: _version()},
        # Offline means offline: the build itself gets no network, which proves it needs none.
        network_mode="none" if offline else None,
        progress=progress,
    )
    progress(f"image: {tag} built in {time.monotonic() - started:.0f} s")
    removed = remove_stale_images(client, keep={tag, base}) if prune else []
    if removed:
        progress(f"image: removed {len(removed)} older smtp-lab image(s)")
    return tag


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
