"""The node image's build context: wheels of pip, the runtime dependencies and the project,
fetched or built on the host (where PyPI is reachable) for the image's platform, and the
tar of them with the Dockerfile that the engine builds from (installed with `--no-index`)."""

from __future__ import annotations

import hashlib
import io
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lab.runtime.image.sources import (
    TARGET_PYTHON,
    Dependency,
    ImageBuildError,
    project_metadata,
    source_files,
)
from lab.runtime.progress import Progress, say_nothing


def platform_tags() -> list[str]:
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
    progress: Progress = say_nothing,
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
        for tag in platform_tags():
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


def build_project_wheel(root: Path, cache_dir: Path, progress: Progress = say_nothing) -> Path:
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
        readme = project_metadata(root).get("readme")
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
