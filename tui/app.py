"""The Textual app: owns the running lab, switches screens, and always takes the lab down.

`make_app` builds the app for the CLI (`smtplab tui`) and for the tests. The
app holds at most one running lab at a time: starting a case takes any
previous lab down first, leaving the workbench takes it down, and so do `q`,
an unhandled error (the app's unmount) and, as a last resort, `run` after the
app has exited. Screens and widgets never start or stop labs themselves.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from lab.catalog import load
from lab.config import settings as lab_settings
from tui.host import Diagnose, Progress
from tui.training import Choice, TrainingSession, default_directory, short_list

if TYPE_CHECKING:
    from lab.diagnosis.events import Diagnosis, Step
    from lab.runtime.base import Backend, Lab
    from lab.scenario.model import MailSettings, Scenario
    from tui.training import CatalogEntry

Causes = Callable[[], Sequence["CatalogEntry"]]
# How long `q` waits for cancelled workers before taking the lab down regardless.
WORKER_GRACE = 5.0


def engine_diagnose(lab: Lab, settings: MailSettings) -> AsyncIterator[Step | Diagnosis]:
    """The real diagnosis engine on a running lab.

    The fix is not re-sent by the engine: in the TUI the trainee does that
    with `f`, and sees the delivery happen.
    """
    from lab.diagnosis.engine import diagnose
    from lab.diagnosis.target import LabTarget

    return diagnose(LabTarget(lab), settings, verify_fix=False)


def _get_backend(name: str | None, progress: Progress | None) -> Backend:
    """`lab.runtime.get_backend`, saying so when choosing may take a while."""
    from lab import runtime

    if name is None and progress is not None:
        progress("choosing a backend (docker when an engine answers, else local)…")
    return runtime.get_backend(name, progress=progress)


def catalog_causes() -> Sequence[CatalogEntry]:
    """The diagnosis catalog's entries (for the training short list)."""
    from lab.diagnosis.catalog import load_catalog

    return list(load_catalog().entries)


class SmtpLabApp(App[None]):
    """smtp-lab's trainer and workbench."""

    CSS_PATH = "app.tcss"
    TITLE = "smtp-lab"
    # The command palette would offer Textual's own commands, not ours: keys and `?` suffice.
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("ctrl+t", "training_summary", "Score"),
    ]

    def __init__(
        self,
        *,
        scenario: Scenario | None = None,
        backend: str | None = None,
        training: bool = False,
        training_dir: Path | None = None,
        trainee: str | None = None,
        course: tuple[str, ...] = (),
        diagnose: Diagnose | None = None,
        causes: Causes | None = None,
        clock: Callable[[], float] = time.monotonic,
        show_timings: bool = True,
    ) -> None:
        super().__init__()
        self.course = course
        self.initial_scenario = scenario
        self.backend_name = backend
        self.diagnose: Diagnose = diagnose or engine_diagnose
        self.causes: Causes = causes or catalog_causes
        self.clock = clock
        self.show_timings = show_timings
        self.lab: Lab | None = None
        self.training: TrainingSession | None = None
        self.ask_trainee = training and not trainee
        if training:
            self.training = TrainingSession(
                directory=training_dir or default_directory(),
                backend=self.backend_label,
                course=course,
            )
            if trainee:
                self.training.user = trainee
        self._quitting = False
        self._chosen_backend: str | None = None

    @property
    def backend_label(self) -> str:
        """The backend labs will run on, as the user would name it.

        "auto" until the first lab starts: choosing may mean asking a Docker
        engine, which is not done before the user starts a case.
        """
        return self.backend_name or lab_settings.backend or self._chosen_backend or "auto"

    # --- screens --------------------------------------------------------------------------

    def on_mount(self) -> None:
        from tui.screens.library import LibraryScreen

        if self.training is not None:
            self.title = "smtp-lab · training"
        self.push_screen(LibraryScreen(self))
        if self.initial_scenario is not None:
            self.open_briefing(self.initial_scenario)
        if self.ask_trainee:
            from tui.screens.trainee import TraineeScreen

            self.push_screen(TraineeScreen(id="trainee"), self._named)

    def _named(self, name: str | None) -> None:
        """The trainee typed their name: it goes on the score file."""
        if self.training is not None and name:
            self.training.user = name
            self.sub_title = f"trainee {name}"
            if self.screen.id == "library":
                self.screen.refresh_intro()  # type: ignore[attr-defined]

    def open_briefing(self, scenario: Scenario) -> None:
        """Show a case's ticket and topology."""
        from tui.screens.briefing import BriefingScreen

        self.push_screen(BriefingScreen(scenario, self))

    def open_explain(self) -> None:
        """The "paste an error" screen: from a customer's error text to the causes."""
        from tui.screens.explain import ExplainScreen

        self.push_screen(ExplainScreen(self))

    def open_workbench(self, scenario: Scenario, lab: Lab) -> None:
        """Replace the briefing (or a workbench, for a repaired case) with the workbench of
        the lab that just came up."""
        from tui.screens.workbench import WorkbenchScreen

        bench = WorkbenchScreen(scenario, lab, self)
        if isinstance(self.screen, WorkbenchScreen):
            # Two screens with the workbench's id cannot coexist: the old one goes first.
            self.run_worker(self._replace_workbench(bench), group="screens")
        else:
            self.switch_screen(bench)

    async def _replace_workbench(self, bench: Screen[None]) -> None:
        await self.pop_screen()
        await self.push_screen(bench)

    def close_workbench(self) -> None:
        """Back to the library; the lab goes down in the background."""
        self.pop_screen()
        self.run_worker(self.take_down(), group="lab-down", exclusive=False)

    def action_help(self) -> None:
        """Keys of the current screen and how a case is worked."""
        from tui.screens.help import HelpScreen

        if self.screen.id == "help":
            return
        self.push_screen(HelpScreen(self.screen))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The score binding exists in training mode only (hidden from the footer otherwise)."""
        if action == "training_summary":
            return self.training is not None
        return True

    def action_training_summary(self) -> None:
        """The training session's score (training mode only)."""
        from tui.screens.training_summary import TrainingSummaryScreen

        if self.training is None:
            self.notify("Training mode is off: start with `smtplab tui --training`.")
            return
        if isinstance(self.screen, TrainingSummaryScreen):
            return
        self.push_screen(TrainingSummaryScreen(self.training))

    def cause_choices(
        self, scenario: Scenario, expected: str, diagnosis: Diagnosis
    ) -> list[Choice]:
        """The short list the trainee picks from: the right cause and look-alikes."""
        try:
            entries = self.causes()
        except Exception as error:  # a broken catalog must not end the session
            self.log.error("cannot read the diagnosis catalog", error)
            entries = []
        return short_list(
            expected,
            entries,
            probe=str(diagnosis.failed_probe) if diagnosis.failed_probe else None,
            tags=scenario.tags,
            # Per trainee: neighbours in a class do not see the right answer in the same place.
            seed=f"{self.training.user}:{scenario.id}" if self.training else scenario.id,
        )

    # --- the lab --------------------------------------------------------------------------

    async def bring_up(self, scenario: Scenario, progress: Progress | None = None) -> Lab:
        """Take any running lab down, then start `scenario`'s.

        Args:
            scenario: the case.
            progress: receives a line per slow step (choosing the backend, building
                the docker node image); may be called from another thread.

        Raises:
            LabError: the backend is unavailable or a node did not start.
        """
        await self.take_down()
        # Choosing and checking a backend may talk to a Docker engine: not on the event loop.
        backend = await asyncio.to_thread(_get_backend, self.backend_name, progress)
        self._chosen_backend = backend.name
        if self.training is not None:
            self.training.backend = backend.name
        topology = backend.plan(scenario)
        lab = await backend.up(topology)
        self.lab = lab
        return lab

    async def take_down(self) -> None:
        """Stop the running lab, if any; idempotent."""
        lab, self.lab = self.lab, None
        if lab is not None:
            await lab.down()

    async def shutdown(self) -> None:
        """Cancel every worker (engine, sends, a lab starting) and take the lab down."""
        workers = list(self.workers)
        for worker in workers:
            worker.cancel()
        if workers:
            waits = [asyncio.ensure_future(worker.wait()) for worker in workers]
            done, pending = await asyncio.wait(waits, timeout=WORKER_GRACE)
            for future in pending:
                future.cancel()
            for future in done:
                future.exception()  # consumed: a cancelled worker's WorkerCancelled is expected
        await self.take_down()

    async def action_quit(self) -> None:
        """Quit, taking the lab down first."""
        if self._quitting:
            return
        self._quitting = True
        await self.shutdown()
        self.exit(message=self.exit_message())

    def exit_message(self) -> str | None:
        """Printed after the app closes: where the training summary went."""
        if self.training is not None and self.training.cases:
            return f"Training summary ({self.training.score}) saved to {self.training.path}"
        return None

    async def on_unmount(self) -> None:
        """Safety net: whatever ended the app (an error included), no lab is left running."""
        await self.take_down()


def make_app(
    scenario: str | None = None,
    backend: str | None = None,
    training: bool = False,
    *,
    training_dir: Path | None = None,
    trainee: str | None = None,
    course: tuple[str, ...] = (),
    diagnose: Diagnose | None = None,
    causes: Causes | None = None,
    clock: Callable[[], float] = time.monotonic,
    show_timings: bool = True,
) -> SmtpLabApp:
    """The app, for the CLI and the tests.

    Args:
        scenario: a case id (or scenario file) to open straight at its briefing.
        backend: "local" or "docker"; by default `$SMTPLAB_BACKEND`, else local.
        training: training mode (pick a cause before the verdict; score saved).
        training_dir: where the session file goes (default: the state directory).
        trainee: who is answering (training mode); None asks on the first screen.
        course: the trainer's cases in order; the library offers only these.
        diagnose: the diagnosis engine (default: `lab.diagnosis`); tests may feed steps.
        causes: the catalog entries for the training short list.
        clock: monotonic seconds, for timing cases.
        show_timings: False renders no durations (stable snapshots).

    Raises:
        UnknownScenario, ScenarioError: `scenario` cannot be loaded.
    """
    return SmtpLabApp(
        scenario=load(scenario) if scenario else None,
        backend=backend,
        training=training,
        training_dir=training_dir,
        trainee=trainee,
        course=course,
        diagnose=diagnose,
        causes=causes,
        clock=clock,
        show_timings=show_timings,
    )


async def _run(app: SmtpLabApp) -> None:
    loop = asyncio.get_running_loop()
    # A closed terminal (SIGHUP) or `kill` (SIGTERM) must not leave a lab behind:
    # exit the app normally, so its unmount takes the lab down.
    for signum in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(signum, app.exit)
    try:
        await app.run_async()
    finally:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # The app takes its lab down on quit and unmount; this covers an app that
        # never got as far as mounting.
        await app.take_down()


def run(
    scenario: str | None = None,
    backend: str | None = None,
    training: bool = False,
    *,
    training_dir: Path | None = None,
    trainee: str | None = None,
    course: tuple[str, ...] = (),
) -> int:
    """Run the TUI in this terminal until the user quits; the exit status."""
    app = make_app(
        scenario, backend, training, training_dir=training_dir, trainee=trainee, course=course
    )
    asyncio.run(_run(app))
    return app.return_code or 0


def serve(
    argv: Sequence[str],
    *,
    host: str = "localhost",
    port: int = 8000,
    public_url: str | None = None,
) -> int:
    """Serve the TUI in a browser with textual-serve: one app per browser tab.

    Args:
        argv: the `smtplab tui` options each browser session runs with.
        host: the address the web server listens on.
        port: its port.
        public_url: the address browsers reach it at (see `page_url`).
    """
    import shlex
    import sys

    try:
        from textual_serve.server import Server
    except ImportError:
        print(  # noqa: T201 (this is the CLI's message, before any app exists)
            "smtplab: serving in a browser needs textual-serve: "
            "pip install 'smtp-lab[serve]' (or pip install textual-serve)",
            file=sys.stderr,
        )
        return 2
    command = shlex.join([sys.executable, "-m", "lab.cli", "tui", *argv])
    url = page_url(host, port, public_url)
    Server(command, host=host, port=port, title="smtp-lab", public_url=url).serve()
    return 0


def page_url(host: str, port: int, public_url: str | None = None) -> str:
    """Where the served page points its assets and websocket.

    Listening on every address (`0.0.0.0`) is not an address a browser can
    reach: use this machine's name instead, unless the trainer gave the URL
    (e.g. behind a proxy).
    """
    if public_url:
        return public_url.rstrip("/")
    if host in ("0.0.0.0", "::", ""):
        import socket

        fqdn = socket.getfqdn()
        # getfqdn() says "localhost" where /etc/hosts maps the name there: useless to others.
        host = fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()
    return f"http://{host}:{port}"
