"""Hostile scenario files: every one ends in exit 2 and one `file[:line]: what` line per
problem, inside a process whose data segment is capped (a file that made the loader grow
past the cap would end in a MemoryError traceback), and none of them breaks `smtplab list`
for the others.

The corpus is `tests/data/hostile/` (each file's header says what it must produce) plus the
files made here at test time: the large ones, FIFOs, devices, links, directories.
The cap is a generous limit (the issue saw 4 GB and four minutes); the figures, CPU time and
peak RSS per file, are printed by `benchmarks/hostile_files.py`, not asserted here.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lab.errors import MAX_PROBLEMS

Results = dict[str, dict[str, object]]
CORPUS = Path(__file__).parents[1] / "data" / "hostile"
HAPPY = Path(__file__).parents[2] / "scenarios" / "happy-path.yaml"
SECONDS = 5.0  # per file, for the whole run's timeout: a file that blocks ends the run
DATA_CAP = 512 * 1024**2  # RLIMIT_DATA of the validating process (it starts near 40 MB)

# name -> (how to make it in a directory, what the line must say)
GENERATED: dict[str, tuple[Callable[[Path], object], str]] = {
    "sparse-61MB": (lambda p: _sparse(p, 61 * 1024**2), "larger than 256 KiB"),
    "comments-300KB": (lambda p: p.write_text("# padding\n" * 30_000), "larger than 256 KiB"),
    "many-values-250KB": (
        lambda p: p.write_text("".join(f"k{i}: 1\n" for i in range(25_000))),
        "more than 20000 YAML values",
    ),
    "long-value-200KB": (
        lambda p: p.write_text(HAPPY.read_text().replace("port: 587", f"port: {'x' * 200_000}")),
        "input should be a valid integer",
    ),
    "flow-open-240KB": (
        lambda p: p.write_text("title: " + "[" * 240_000),
        "nested deeper than 32 levels",
    ),
    "flow-mapping-240KB": (
        lambda p: p.write_text("title: " + "{a: " * 60_000),
        "nested deeper than 32 levels",
    ),
    "alias-chain-6000": (
        lambda p: p.write_text(
            "k0: &a0 [1]\n" + "".join(f"k{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 6_000))
        ),
        "nested deeper than 32 levels (via aliases)",
    ),
    "fifo": (lambda p: os.mkfifo(p), "not a regular file (a FIFO)"),
    "symlink-dev-zero": (lambda p: p.symlink_to("/dev/zero"), "(a character device)"),
    "symlink-dev-urandom": (lambda p: p.symlink_to("/dev/urandom"), "(a character device)"),
    "directory": (lambda p: p.mkdir(), "not a regular file (a directory)"),
    "symlink-loop": (lambda p: p.symlink_to(p), "cannot read: Too many levels of symbolic links"),
    "dangling-symlink": (lambda p: p.symlink_to(p.parent / "gone"), "cannot read: No such file"),
    "empty": (lambda p: p.write_bytes(b""), "the file is empty"),
    "utf16": (lambda p: p.write_bytes("title: x\n".encode("utf-16")), "not UTF-8 text"),
    "bom-then-garbage": (lambda p: p.write_bytes(b"\xef\xbb\xbf\xff\xfe"), "not UTF-8 text"),
}

# Runs every file through `smtplab validate` in one child process, in turn, and reports for
# each its exit code and stderr (a MemoryError under the cap is a traceback there).
DRIVER = r"""
import io, json, sys, traceback
from lab.cli import main
from lab.cli import common
for path in sys.argv[1:]:
    buffer = io.StringIO()
    common.err.file = buffer
    try:
        code = main(["validate", path])
    except BaseException:
        code, buffer = None, io.StringIO(traceback.format_exc())
    print(json.dumps({"path": path, "code": code, "stderr": buffer.getvalue()}), flush=True)
"""


def cap_data_segment() -> None:
    """In the child, before exec: a loader that balloons hits MemoryError, not the host."""
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_CAP, DATA_CAP))


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as stream:
        stream.truncate(size)


def expectation(path: Path) -> tuple[str, int | None]:
    """The `# expect:` fragment and `# line:` of a corpus file's header."""
    header = path.read_bytes()[:600].decode("utf-8", "replace").splitlines()
    expect = header[1].removeprefix("# expect: ")
    line = header[2].removeprefix("# line: ")
    return expect, None if line == "-" else int(line)


STATIC = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hostile")
    for path in STATIC:
        shutil.copyfile(path, directory / path.name)
    for name, (make, _) in GENERATED.items():
        make(directory / f"{name}.yaml")
    return directory


@pytest.fixture(scope="module")
def results(hostile_dir: Path) -> Results:
    paths = sorted(str(path) for path in hostile_dir.glob("*.yaml"))
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *paths],
        capture_output=True,
        text=True,
        timeout=SECONDS * len(paths) + 60,
        preexec_fn=cap_data_segment,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    return {Path(str(row["path"])).stem: row for row in rows}


def test_the_corpus_is_large_enough() -> None:
    assert len(STATIC) + len(GENERATED) >= 80
    assert not any(path.stat().st_size > 20_000 for path in STATIC), "generate large ones"


def check(row: dict[str, object], path: Path, expect: str, line: int | None) -> None:
    stderr = str(row["stderr"])
    assert "Traceback" not in stderr, stderr
    assert row["code"] == 2, stderr
    lines = stderr.splitlines()
    assert 1 <= len(lines) <= MAX_PROBLEMS + 1, stderr
    shape = re.compile(rf"^{re.escape(str(path))}(:\d+)?: \S")
    for text in lines:
        assert shape.match(text), f"not `file[:line]: what`: {text!r}"
        assert len(text) < 800, "one readable line"
    assert expect in stderr, stderr
    if line is not None:
        assert any(text.startswith(f"{path}:{line}: ") for text in lines), stderr


@pytest.mark.parametrize("name", [path.stem for path in STATIC])
def test_static_hostile_file(name: str, results: Results, hostile_dir: Path) -> None:
    expect, line = expectation(CORPUS / f"{name}.yaml")
    check(results[name], hostile_dir / f"{name}.yaml", expect, line)


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_generated_hostile_file(name: str, results: Results, hostile_dir: Path) -> None:
    check(results[name], hostile_dir / f"{name}.yaml", GENERATED[name][1], None)


def test_many_problems_are_capped(results: Results) -> None:
    lines = str(results["many-unknown-keys"]["stderr"]).splitlines()
    assert len(lines) == MAX_PROBLEMS + 1
    assert lines[-1].endswith(f"... and {500 - MAX_PROBLEMS} more problems")


@pytest.mark.parametrize("name", ["fifo", "symlink-dev-zero", "alias-bomb-lists"])
def test_cli_process_ends_with_one_line(name: str, hostile_dir: Path) -> None:
    """The real command, in its own process under the data cap: exit 2, one line."""
    path = hostile_dir / f"{name}.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=cap_data_segment,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stdout + done.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:"), lines
    assert "Traceback" not in done.stdout + done.stderr


def test_list_shows_the_good_and_marks_the_broken(hostile_dir: Path, tmp_path: Path) -> None:
    catalog = tmp_path / "scenarios"
    catalog.mkdir()
    for entry in hostile_dir.iterdir():
        (catalog / entry.name).symlink_to(entry)  # a link to a FIFO is a FIFO to the loader
    shutil.copyfile(HAPPY, catalog / "happy-path.yaml")
    environment = {**os.environ, "SMTPLAB_SCENARIOS": str(catalog)}
    done = subprocess.run(
        [sys.executable, "-m", "lab.cli", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    rows = json.loads(done.stdout)
    good = [row["id"] for row in rows if not row.get("broken")]
    assert good == ["happy-path"]
    broken = {row["id"]: row["error"] for row in rows if row.get("broken")}
    # every hostile file is listed as broken (the directory entry is not a *.yaml file
    # glob skips nothing: it is named like one), each with its first problem
    assert set(broken) == {entry.stem for entry in hostile_dir.iterdir()}
    assert "not a regular file (a FIFO)" in broken["fifo"]
    for entry in catalog.iterdir():  # the table, on a smaller catalog
        if entry.stem not in ("happy-path", "fifo", "alias-bomb-lists"):
            entry.unlink()
    table = subprocess.run(
        [sys.executable, "-m", "lab.cli", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, "COLUMNS": "300"},
    )
    assert table.returncode == 0, table.stderr[-2000:]
    assert "happy-path" in table.stdout
    assert table.stdout.count("broken:") == 2
