"""Training mode: the short list of causes, per-case results, the score and the session file.

Pure Python (no Textual). A trainee commits to a cause from a short list
before the verdict is shown; each answer is recorded with the time the case
took, and the whole session is saved after every case as one JSON file a
trainer can collect (`--training-dir`, by default `$SMTPLAB_STATE/training/`,
i.e. `~/.local/state/smtplab/training/<date>-<time>-<trainee>-<token>.json`; the
random token keeps two sessions started in the same second apart). Saving
after every case means a crash or a closed terminal loses nothing already
answered. Only the first answer to a case counts: a retake shows it again.
`smtplab training report DIR` (`lab.classroom.report`) reads the files.
"""

from __future__ import annotations

import getpass
import json
import os
import random
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lab.classroom.report import SCHEMA

SHORT_LIST_SIZE = 4
# Words of entry ids that say nothing about the kind of fault.
_STOP_WORDS = frozenset({"", "a", "an", "the", "no", "not", "on", "of", "to", "before"})

Clock = Callable[[], float]


class CatalogEntry(Protocol):
    """What training needs of a diagnosis catalog entry (`lab.diagnosis.catalog`)."""

    @property
    def id(self) -> str:
        """The entry id, e.g. "port-blocked-timeout"."""
        ...

    @property
    def title(self) -> str:
        """A short name for the cause, shown in the short list."""
        ...


@dataclass(frozen=True)
class Choice:
    """One cause in the short list."""

    entry: str
    title: str


def _probes(entry: object) -> set[str]:
    """The probe(s) an entry is about: a `probe` field, or what its match pattern requires.

    The diagnosis catalog says it in its pattern (`problem.probe: ports`); other
    catalogs may have a plain `probe` field.
    """
    found: set[str] = set()
    for name in ("probe", "failed_probe", "probes"):
        found |= _strings(getattr(entry, name, None))
    match = getattr(entry, "match", None)
    if isinstance(match, Mapping):
        found |= _pattern_values(match, "problem.probe")
    return found


def _sections(entry: object) -> set[str]:
    """Which fact sections an entry's pattern looks at (`ports`, `auth`...): a likeness hint."""
    match = getattr(entry, "match", None)
    if not isinstance(match, Mapping):
        return set()
    keys = _pattern_keys(match)
    return {key.split(".", 1)[0] for key in keys} - {"problem", "outcome", "settings"}


def _strings(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, Iterable):
        return {str(item) for item in value}
    return set()


def _pattern_keys(pattern: Mapping[str, Any]) -> set[str]:
    keys: set[str] = set()
    for key, condition in pattern.items():
        if key in ("any", "all") and isinstance(condition, list):
            for sub in condition:
                if isinstance(sub, Mapping):
                    keys |= _pattern_keys(sub)
        elif key != "not":  # a negated condition says what the entry is *not* about
            keys.add(key)
    return keys


def _pattern_values(pattern: Mapping[str, Any], wanted: str) -> set[str]:
    values: set[str] = set()
    for key, condition in pattern.items():
        if key in ("any", "all") and isinstance(condition, list):
            for sub in condition:
                if isinstance(sub, Mapping):
                    values |= _pattern_values(sub, wanted)
        elif key == wanted and isinstance(condition, str | list):
            values |= _strings(condition)
    return values


def _tags(entry: object) -> set[str]:
    """Declared tags plus the words of the id: `auth-bad-credentials` is about "auth"."""
    value = getattr(entry, "tags", None)
    tags = {str(item) for item in value} if isinstance(value, list | tuple | set) else set()
    words = set(str(getattr(entry, "id", "")).split("-")) - _STOP_WORDS
    return tags | words


def short_list(
    correct: str,
    entries: Sequence[CatalogEntry],
    *,
    probe: str | None = None,
    tags: Iterable[str] = (),
    seed: str = "",
    size: int = SHORT_LIST_SIZE,
) -> list[Choice]:
    """The correct cause and `size - 1` plausible distractors, shuffled.

    Distractors are the catalog entries most alike the correct one: those
    about the same probe first, then those sharing the most tags (the case's
    tags and the correct entry's own) and fact sections, then the rest in
    catalog order. The
    order is shuffled with `seed` (use the scenario id), so a case always shows
    the same list and the right answer is not always first; add the trainee's
    name to it and neighbours in a class see different orders.

    Args:
        correct: id of the right entry; included even if the catalog lacks it.
        entries: the diagnosis catalog.
        probe: the probe that failed in this case, if known.
        tags: the scenario's tags.
        seed: makes the shuffle deterministic per case.
        size: how many choices in all.
    """
    by_id = {entry.id: entry for entry in entries}
    right = by_id.get(correct)
    wanted_tags = set(tags) | (_tags(right) if right is not None else set(correct.split("-")))
    wanted_probes = ({probe} if probe else set()) | (_probes(right) if right is not None else set())
    wanted_sections = _sections(right) if right is not None else set()

    def likeness(indexed: tuple[int, CatalogEntry]) -> tuple[int, int, int]:
        index, entry = indexed
        same_probe = bool(_probes(entry) & wanted_probes)
        shared = len(_tags(entry) & wanted_tags) + len(_sections(entry) & wanted_sections)
        # sort ascending: more alike first, catalog order breaks ties
        return (-int(same_probe), -shared, index)

    candidates = sorted(
        ((index, entry) for index, entry in enumerate(entries) if entry.id != correct),
        key=likeness,
    )
    choices = [Choice(correct, right.title if right is not None else correct)]
    choices.extend(Choice(entry.id, entry.title) for _, entry in candidates[: size - 1])
    random.Random(f"smtplab-training:{seed or correct}").shuffle(choices)
    return choices


# --- results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    """One answered case."""

    scenario: str
    title: str
    expected: str  # the right catalog entry
    chosen: str  # what the trainee picked
    correct: bool
    seconds: float  # from the lab being up to the answer
    steps_seen: int  # diagnosis steps revealed before answering
    choices: tuple[str, ...] = ()
    fix_verified: bool | None = None  # the trainee's re-send with the fix delivered
    chosen_title: str = ""  # the causes by title, for feedback and the trainer's report
    expected_title: str = ""
    answered: str = ""  # ISO time of the answer: orders attempts across sessions


@dataclass(frozen=True)
class Score:
    """How a session went so far."""

    correct: int
    total: int
    seconds: float

    @property
    def percent(self) -> int:
        """Share of right answers, rounded; 0 when nothing was answered."""
        return round(100 * self.correct / self.total) if self.total else 0

    def __str__(self) -> str:
        return f"{self.correct}/{self.total} correct ({self.percent}%)"


def _safe_user(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "trainee"


def current_user() -> str:
    """The login name, for the file name; "trainee" when it cannot be found."""
    try:
        return _safe_user(getpass.getuser())
    except (OSError, KeyError):  # no passwd entry (containers) or no login name at all
        return "trainee"


@dataclass
class CaseTimer:
    """Measures how long a case takes, on a monotonic clock."""

    clock: Clock = time.monotonic
    started: float | None = None

    def start(self) -> None:
        """Start (or restart) timing."""
        self.started = self.clock()

    def elapsed(self) -> float:
        """Seconds since `start`; 0 when not started."""
        return 0.0 if self.started is None else self.clock() - self.started


@dataclass
class TrainingSession:
    """The trainee's answers in one run of the TUI, saved as JSON after each case."""

    directory: Path
    user: str = field(default_factory=current_user)
    backend: str = "local"
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    cases: list[CaseResult] = field(default_factory=list)
    course: tuple[str, ...] = ()  # the trainer's order of cases, recorded for the report
    # Two trainees starting in the same second (a class under --serve) must not share a file.
    token: str = field(default_factory=lambda: secrets.token_hex(4))

    @property
    def path(self) -> Path:
        """`<directory>/<date>-<time>-<trainee>-<token>.json`: one file per session."""
        stamp = self.started.astimezone().strftime("%Y-%m-%d-%H%M%S")
        return self.directory / f"{stamp}-{_safe_user(self.user)}-{self.token}.json"

    @property
    def score(self) -> Score:
        """Right answers so far."""
        return Score(
            correct=sum(case.correct for case in self.cases),
            total=len(self.cases),
            seconds=sum(case.seconds for case in self.cases),
        )

    def answered(self, scenario: str) -> CaseResult | None:
        """The first (the only counted) answer for `scenario` in this session, if any."""
        return next((case for case in self.cases if case.scenario == scenario), None)

    def record(
        self,
        *,
        scenario: str,
        title: str,
        expected: str,
        chosen: str,
        seconds: float,
        steps_seen: int,
        choices: Sequence[Choice] = (),
    ) -> CaseResult:
        """Add the first answer to `scenario` and save; a later one returns the first unchanged."""
        earlier = self.answered(scenario)
        if earlier is not None:
            return earlier
        titles = {choice.entry: choice.title for choice in choices}
        result = CaseResult(
            scenario=scenario,
            title=title,
            expected=expected,
            chosen=chosen,
            correct=chosen == expected,
            seconds=round(seconds, 1),
            steps_seen=steps_seen,
            choices=tuple(choice.entry for choice in choices),
            chosen_title=titles.get(chosen, chosen),
            expected_title=titles.get(expected, expected),
            answered=datetime.now(UTC).isoformat(timespec="microseconds"),
        )
        self.cases.append(result)
        self.save()
        return result

    def fix_result(self, scenario: str, verified: bool) -> None:
        """Note whether the trainee's first re-send with the fix delivered, and save."""
        for index in range(len(self.cases)):
            if self.cases[index].scenario == scenario and self.cases[index].fix_verified is None:
                case = self.cases[index]
                self.cases[index] = CaseResult(**{**asdict(case), "fix_verified": verified})
                self.save()
                return

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        score = self.score
        return {
            "schema": SCHEMA,
            "user": self.user,
            "backend": self.backend,
            "started": self.started.isoformat(timespec="seconds"),
            "course": list(self.course),
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "score": {
                "correct": score.correct,
                "total": score.total,
                "percent": score.percent,
                "seconds": round(score.seconds, 1),
            },
            "cases": [{**asdict(case), "choices": list(case.choices)} for case in self.cases],
        }

    def save(self) -> Path:
        """Write the file atomically (a trainer may collect it at any moment)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path
        descriptor, temporary = tempfile.mkstemp(
            prefix=".training-", suffix=".json", dir=self.directory
        )
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(self.to_json(), handle, indent=2)
                handle.write("\n")
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target


def default_directory() -> Path:
    """Where session files go: `<state dir>/training`."""
    from lab.config import settings

    return settings.state_dir / "training"


__all__ = [
    "CaseResult",
    "CaseTimer",
    "CatalogEntry",
    "Choice",
    "Score",
    "TrainingSession",
    "default_directory",
    "short_list",
]
