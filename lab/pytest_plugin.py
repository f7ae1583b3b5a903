"""The pytest plugin (`pytest11` entry point `smtplab`): labs of scenarios as fixtures.

    def test_invoice(smtp_lab):
        lab = smtp_lab("greylisted")            # a catalog id or a path to a scenario file
        send_invoice(host=lab.host, port=lab.port("relay", 587))
        assert lab.mailbox("bob@example.net").wait_for(1, timeout=10)[0]["Subject"]

- `smtp_lab`: starts labs for one test; every lab it started is taken down when the
  test ends, passed, failed or interrupted (at the latest when the session ends).
- `smtp_lab_session`: the same, but one lab per scenario and backend for the whole
  session (per worker under pytest-xdist: each worker runs its own labs).
- The backend: `@pytest.mark.smtplab(backend=...)`, else `--smtplab-backend`, else
  `$SMTPLAB_BACKEND`, else docker where an engine answers, local otherwise.
- When a test using a lab fails, each node's log is added to its report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from lab.harness import LabHandle
    from lab.runtime.base import Backend

LabFactory = Callable[..., "LabHandle"]

_USED = pytest.StashKey[list["LabHandle"]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--smtplab-backend`."""
    from lab.harness.choose import CHOICES

    group = parser.getgroup("smtplab", "smtp-lab labs")
    group.addoption(
        "--smtplab-backend",
        choices=CHOICES,
        default=None,
        help="where smtp_lab fixtures run their nodes (default: $SMTPLAB_BACKEND, else "
        "docker where an engine answers, else local)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Declare the `smtplab` marker."""
    config.addinivalue_line(
        "markers",
        "smtplab(backend=None): the backend this test's smtp_lab labs run on "
        "('local', 'docker' or 'auto')",
    )


class _Backends:
    """Backends by name, made once per session (docker's node image is checked once)."""

    def __init__(self) -> None:
        self._made: dict[str | None, Backend] = {}

    def get(self, name: str | None) -> Backend:
        from lab.harness import choose_backend

        if name not in self._made:
            self._made[name] = choose_backend(name)
        return self._made[name]


@pytest.fixture(scope="session")
def _smtplab_backends() -> _Backends:
    return _Backends()


def _backend_name(request: pytest.FixtureRequest, asked: str | None) -> str | None:
    if asked is not None:
        return asked
    marker = request.node.get_closest_marker("smtplab")
    if marker is not None and marker.kwargs.get("backend"):
        return str(marker.kwargs["backend"])
    option: str | None = request.config.getoption("smtplab_backend")
    return option


def _start(backends: _Backends, reference: str, backend: str | None) -> LabHandle:
    from lab.catalog import load
    from lab.harness import start_lab

    return start_lab(load(reference), backends.get(backend))


def _record(request: pytest.FixtureRequest, handle: LabHandle) -> None:
    request.node.stash.setdefault(_USED, []).append(handle)


@pytest.fixture
def smtp_lab(request: pytest.FixtureRequest, _smtplab_backends: _Backends) -> Iterator[LabFactory]:
    """`smtp_lab(scenario, backend=None)` starts a lab for this test; all are taken down
    when the test ends, however it ends."""
    started: list[LabHandle] = []

    def start(scenario: str, backend: str | None = None) -> LabHandle:
        handle = _start(_smtplab_backends, scenario, _backend_name(request, backend))
        started.append(handle)
        _record(request, handle)
        return handle

    try:
        yield start
    finally:
        _close_all(started)


@pytest.fixture(scope="session")
def _smtplab_session_labs(_smtplab_backends: _Backends) -> Iterator[dict[Any, LabHandle]]:
    labs: dict[Any, LabHandle] = {}
    try:
        yield labs
    finally:
        _close_all(list(labs.values()))


@pytest.fixture
def smtp_lab_session(
    request: pytest.FixtureRequest,
    _smtplab_backends: _Backends,
    _smtplab_session_labs: dict[Any, LabHandle],
) -> LabFactory:
    """`smtp_lab_session(scenario, backend=None)`: one lab per scenario and backend, shared
    by every test of the session (mailboxes keep what earlier tests sent)."""

    def start(scenario: str, backend: str | None = None) -> LabHandle:
        name = _backend_name(request, backend)
        key = (scenario, name)
        if key not in _smtplab_session_labs:
            _smtplab_session_labs[key] = _start(_smtplab_backends, scenario, name)
        handle = _smtplab_session_labs[key]
        _record(request, handle)
        return handle

    return start


def _close_all(handles: list[LabHandle]) -> None:
    errors: list[BaseException] = []
    for handle in handles:
        try:
            handle.close()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test that used labs gets each node's log as a report section."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or call.when == "teardown":
        return
    for handle in item.stash.get(_USED, []):
        for node, text in handle.logs().items():
            report.sections.append((f"smtplab {handle.id} {node} log", text))
        if handle.sends:
            report.sections.append((f"smtplab {handle.id} client transcript", handle.transcript))
