"""The node image: what its tag covers, its build context, and (with Docker) the image itself."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from lab.runtime import image, labels
from lab.runtime.image import (
    BASE_PACKAGES,
    DOCKERFILE,
    Dependency,
    Wheels,
    build_context,
    image_digest,
    project_root,
    registry_reachable,
    rootfs_key,
    runtime_dependencies,
    source_files,
)
from lab.runtime.image.sources import lab_version
from lab.runtime.image.wheels import platform_tags


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A minimal source tree shaped like the project."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "smtp-lab"\nversion = "0"\n')
    (tmp_path / "compose").mkdir()
    (tmp_path / DOCKERFILE).write_text("FROM scratch\n")
    package = tmp_path / "lab"
    (package / "nodes" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nodes" / "router.py").write_text("RULES = 1\n")
    (package / "nodes" / "__pycache__" / "router.cpython-311.pyc").write_bytes(b"\0")
    (package / "py.typed").write_text("")
    (package / "notes.txt").write_text("not packaged")
    return tmp_path


DEPS = [Dependency("pydantic", "2.14.3"), Dependency("dnspython", "2.9.2")]


def test_source_files_are_what_the_wheel_holds(project: Path) -> None:
    assert [path.as_posix() for path in source_files(project)] == [
        "lab/__init__.py",
        "lab/nodes/router.py",
        "lab/py.typed",
        "pyproject.toml",
    ]


def test_digest_is_stable(project: Path) -> None:
    assert image_digest(project, DEPS) == image_digest(project, list(DEPS))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda root: (root / "lab/nodes/router.py").write_text("RULES = 2\n"), id="src"
        ),
        pytest.param(lambda root: (root / "lab/new.py").write_text(""), id="new-file"),
        pytest.param(lambda root: (root / DOCKERFILE).write_text("FROM x\n"), id="dockerfile"),
        pytest.param(lambda root: (root / "pyproject.toml").write_text("[project]\n"), id="meta"),
    ],
)
def test_digest_changes_with_sources(project: Path, change: Any) -> None:
    before = image_digest(project, DEPS)
    change(project)
    assert image_digest(project, DEPS) != before


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda root: (root / "lab/notes.txt").write_text("x"), id="non-source"),
        pytest.param(
            lambda root: (root / "lab/nodes/__pycache__/x.pyc").write_bytes(b"1"), id="bytecode"
        ),
    ],
)
def test_digest_ignores_what_is_not_packaged(project: Path, change: Any) -> None:
    before = image_digest(project, DEPS)
    change(project)
    assert image_digest(project, DEPS) == before


def test_digest_changes_with_a_dependency_version(project: Path) -> None:
    bumped = [Dependency("pydantic", "2.14.4"), DEPS[1]]
    assert image_digest(project, DEPS) != image_digest(project, bumped)


def test_runtime_dependencies_of_this_project() -> None:
    dependencies = {d.name: d.version for d in runtime_dependencies(project_root())}
    # Declared ones and what they pull in, pinned to what is installed here.
    for name in ("aiosmtpd", "dnspython", "pydantic", "pydantic-core", "cryptography", "docker"):
        assert name in dependencies
    assert "pytest" not in dependencies  # test extras stay out
    assert "pywin32" not in dependencies  # markers are evaluated for Linux
    assert all(version for version in dependencies.values())


def test_rootfs_key_follows_the_package_list() -> None:
    assert rootfs_key() == rootfs_key(reversed(BASE_PACKAGES))
    assert rootfs_key() != rootfs_key([*BASE_PACKAGES, "python3-pip"])


def test_build_context_layout(tmp_path: Path) -> None:
    def wheel(name: str) -> Path:
        path = tmp_path / name
        path.write_bytes(b"PK")
        return path

    wheels = Wheels(
        pip=wheel("pip-26.3-py3-none-any.whl"),
        dependencies=(wheel("a-1-py3-none-any.whl"), wheel("b-2-cp311-abi3-linux.whl")),
        project=wheel("smtp_lab-0.1.0-py3-none-any.whl"),
    )
    with tarfile.open(fileobj=build_context(b"FROM x\n", wheels)) as archive:
        names = archive.getnames()
        dockerfile = archive.extractfile("Dockerfile")
        assert dockerfile is not None
        assert dockerfile.read() == b"FROM x\n"
    assert names == [
        "Dockerfile",
        "pip/pip-26.3-py3-none-any.whl",
        "deps/a-1-py3-none-any.whl",
        "deps/b-2-cp311-abi3-linux.whl",
        "project/smtp_lab-0.1.0-py3-none-any.whl",
    ]


def test_platform_tags_cover_old_manylinux() -> None:
    tags = platform_tags()
    machine = tags[0].rsplit("_", 2)[-2:]
    assert tags[0].startswith("manylinux_2_36_")
    assert any(tag.startswith("manylinux2014_") for tag in tags)
    assert len(machine) == 2


class FakeImages:
    def __init__(self, local: bool, registry: bool) -> None:
        self.local, self.registry = local, registry

    def get(self, name: str) -> object:
        import docker.errors

        if not self.local:
            raise docker.errors.ImageNotFound(name)
        return object()

    def get_registry_data(self, name: str) -> object:
        import docker.errors

        if not self.registry:
            raise docker.errors.APIError("no such host")
        return object()


class FakeClient:
    def __init__(self, local: bool, registry: bool) -> None:
        self.images = FakeImages(local, registry)


@pytest.mark.parametrize(
    ("local", "registry", "expected"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_registry_reachable(local: bool, registry: bool, expected: bool) -> None:
    assert registry_reachable(FakeClient(local, registry)) is expected


def test_dockerfile_installs_from_files_only() -> None:
    text = (project_root() / DOCKERFILE).read_text()
    assert "--no-index" in text
    assert "pip check" in text


@pytest.mark.docker
class TestBuiltImage:
    """The image the session fixture found or built."""

    def test_cached_build_reuses_the_image(self, docker_client: Any, node_image: str) -> None:
        # Built again first: sources edited since the session fixture ran mean a new tag.
        tag = image.build_node_image(None, client=docker_client)
        before = docker_client.api.inspect_image(tag)
        assert image.build_node_image(None, client=docker_client) == tag
        after = docker_client.api.inspect_image(tag)
        assert (after["Id"], after["Created"]) == (before["Id"], before["Created"])

    def test_labelled(self, docker_client: Any, node_image: str) -> None:
        info = docker_client.api.inspect_image(node_image)
        assert info["Config"]["Labels"][labels.IMAGE] == "node"

    def test_runs_the_project_without_network(self, docker_client: Any, node_image: str) -> None:
        api = docker_client.api
        script = (
            "import lab, aiosmtpd, dns, pydantic, cryptography, yaml, shutil, sys; "
            "assert sys.version_info[:2] == (3, 11); "
            "assert all(shutil.which(t) for t in ('ip', 'iptables', 'setpriv', 'sh')); "
            "print(lab.__version__)"
        )
        container = api.create_container(
            node_image,
            ["python3", "-c", script],
            labels=labels.create_labels(f"test-image-{labels.SESSION_ID[:8]}"),
            network_disabled=True,
        )
        try:
            api.start(container["Id"])
            status = api.wait(container["Id"], timeout=60)
            output = api.logs(container["Id"]).decode()
            assert status["StatusCode"] == 0, output
            assert output.strip() == lab_version()
        finally:
            api.remove_container(container["Id"], force=True)


def test_context_is_a_plain_tar(tmp_path: Path) -> None:
    pip = tmp_path / "pip-1-py3-none-any.whl"
    pip.write_bytes(b"")
    context = build_context(b"", Wheels(pip, (), pip))
    assert isinstance(context, io.BytesIO)
    assert context.read(512)[257:262] == b"ustar"
