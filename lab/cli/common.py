"""What every `smtplab` command group shares: the output consoles, how a command is
registered, the `--backend` option and the backend it picks (building the node image on
first docker use), the asyncio runner, the progress spinner, and the guard that turns a
Docker engine failing mid-command into one line.

Docker is imported only inside functions: `import lab.cli` must not load it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

from rich.console import Console

from lab.errors import LabError
from lab.runtime import BACKENDS, get_backend

if TYPE_CHECKING:
    from rich.table import Table

    from lab.runtime.base import Backend
    from lab.scenario.model import Scenario

    # argparse's subparsers action is generic only to the type checker.
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler: TypeAlias = Callable[[argparse.Namespace], int]

# Terminal columns from which tables show their secondary columns (tags, references):
# below it they would squeeze the titles to a word per line.
WIDE_TABLE = 110

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def add_command(
    commands: Commands, name: str, handler: Handler, text: str
) -> argparse.ArgumentParser:
    """A subcommand whose help and description are `text`, run by `handler`."""
    sub = commands.add_parser(name, help=text, description=text)
    sub.set_defaults(handler=handler)
    return sub


def add_backend_option(sub: argparse.ArgumentParser) -> None:
    """`--backend NAME` for commands that start a lab."""
    sub.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        default=None,
        help="where nodes run (default: $SMTPLAB_BACKEND, else docker when an engine "
        "answers and the node image is built or can be, else local)",
    )


def fitted_table(title: str, columns: list[str]) -> Table:
    """A compact table whose first column (ids) never wraps and whose other columns do."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(columns[0], no_wrap=True)
    for column in columns[1:]:
        table.add_column(column, no_wrap=column in ("level", "severity"))
    return table


def add_mta_option(sub: argparse.ArgumentParser) -> None:
    """`--mta NAME` for commands that run a scenario's mail servers."""
    sub.add_argument(
        "--mta",
        choices=["lab", "postfix"],
        default=None,
        help="run every relay and mx as this program (default: $SMTPLAB_MTA, else each "
        "node's own `software`); postfix needs the docker backend",
    )


def load_scenario(reference: str, mta: str | None) -> Scenario:
    """The scenario `reference` (`lab.catalog.load`), its mail servers run by `--mta`."""
    from lab.catalog import load
    from lab.scenario.mta import chosen_mta, with_mta

    return with_mta(load(reference), chosen_mta(mta))


def run_async(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a command's async work to completion in a fresh event loop."""
    return asyncio.run(work())


@contextmanager
def progress(message: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while long work runs; yields a function that prints a progress
    line above it (plain lines when stderr is not a terminal; nothing when `quiet`)."""

    def say(line: str) -> None:
        if not quiet:
            err.print(f"  {line}", style="dim", markup=False, highlight=False)

    if quiet or not err.is_terminal:
        yield say
        return
    with err.status(message):
        yield say


def pick_backend(name: str | None) -> Backend:
    """The backend to use (`lab.runtime.get_backend`); for docker, the node image is found
    or, on first use, built here with a progress display before any lab starts."""
    from lab.runtime import ENGINE_ANSWERS_BUT, default_backend
    from lab.runtime.docker import DockerBackend

    chosen = name
    if chosen is None:
        chosen, reason = default_backend()
        if reason.startswith(ENGINE_ANSWERS_BUT):  # the user would expect docker: say why not
            err.print(f"smtplab: using the local backend: {reason}", markup=False)
    backend = get_backend(chosen)
    if isinstance(backend, DockerBackend):
        from lab.runtime.image import present_node_image

        tag = present_node_image(backend.client)
        if tag is None:
            err.print(
                "smtplab: first use of the docker backend with these sources: building the "
                "node image (about 80 s without a registry, seconds once its base is cached; "
                "`--backend local` needs none)",
                markup=False,
            )
            with progress("building the node image") as say:
                backend.progress = say
                tag = backend.ensure_image()
        backend.image = tag
    return backend


def engine_errors(handler: Handler) -> Handler:
    """An engine that fails mid-command (restarted, out of space) is one line, not a
    traceback."""

    @functools.wraps(handler)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except LabError:
            raise
        except Exception as error:
            if type(error).__module__.split(".")[0] not in ("docker", "requests", "urllib3"):
                raise
            from lab.errors import BackendUnavailable

            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise BackendUnavailable(
                f"the Docker engine failed: {type(error).__name__}: {first}"
            ) from error

    return guarded
