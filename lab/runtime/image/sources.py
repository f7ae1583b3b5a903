"""What the node image is made of: the project's source files, its runtime dependencies
pinned to what the host has installed, and the digest over both that names the image."""

from __future__ import annotations

import hashlib
import platform
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from lab.errors import LabError

# The Python of both bases (bookworm's python3 is 3.11.2; python:3.11-slim is 3.11.x).
TARGET_PYTHON = (3, 11)
DOCKERFILE = Path("compose") / "node.Dockerfile"
# Bump when the way images are put together changes without the Dockerfile changing
# (ROOTFS_RECIPE in `lab.runtime.image.base`: when the root filesystem is made differently).
RECIPE = "3"
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


def lab_version() -> str:
    """The project's version, as the images' labels carry it."""
    import lab

    return lab.__version__


def project_root() -> Path:
    """The source tree the node image is built from: the checkout the running `lab` package
    comes from, or, for an installed wheel, one assembled from the installed packages and
    what the wheel bundles (`lab/_bundled`: pyproject.toml, README, the Dockerfile).
    Both give the same digest for the same sources.

    Raises:
        ImageBuildError: neither a checkout nor a bundle is there.
    """
    import lab
    from lab.config import BUNDLED, settings

    root = Path(lab.__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / DOCKERFILE).is_file():
        return root
    if not (BUNDLED / "pyproject.toml").is_file() or not (BUNDLED / DOCKERFILE).is_file():
        raise ImageBuildError(
            f"building the node image needs the smtp-lab sources; {root} has no "
            f"pyproject.toml and {DOCKERFILE}, and the package bundles none"
        )
    return _assemble_tree(root, BUNDLED, settings.cache_dir / "source" / lab.__version__)


def _assemble_tree(site: Path, bundle: Path, tree: Path) -> Path:
    """A checkout-like tree at `tree`: the installed packages beside the bundled files."""
    import shutil

    shutil.rmtree(tree, ignore_errors=True)
    for package in _PACKAGES:
        if (site / package).is_dir():
            shutil.copytree(
                site / package,
                tree / package,
                ignore=shutil.ignore_patterns("__pycache__", "_bundled"),
            )
    for name in (*_PROJECT_FILES, str(DOCKERFILE)):
        if (bundle / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(bundle / name, tree / name)
    return tree


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


def project_metadata(root: Path) -> dict[str, Any]:
    """The `[project]` table of `root`'s pyproject.toml."""
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
    pending = [(Requirement(text), "") for text in project_metadata(root).get("dependencies", [])]
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
