"""Ingest speed of the lab's mx against Postfix's smtp-sink, driven by Postfix's smtp-source.

Usage: python benchmarks/ingest.py [--messages 10000] [--size 1024] [--postfix-dir DIR]
                                   [--workers N] [--profile FILE]

Each case sends `--messages` messages of `--size` bytes with smtp-source: 20
sessions with a new connection per message, 200 sessions likewise, and 20
sessions reusing their connections (`-d`). The same cases run first against
the mx (`python -m lab.nodes mx`, its own process, storing durably: each file
and its directory fsynced before the 250) and then against smtp-sink (which
discards). Every message the mx acknowledged is counted in its Maildir
afterwards; the table gives msg/s, what landed on disk and the ratio to
smtp-sink. The bar (issue 12): durable >= 1,500 msg/s on 2 cores.

Where smtp-source and smtp-sink come from, first found wins:

1. `--postfix-dir DIR` or `$SMTPLAB_POSTFIX_DIR`: an extracted Debian postfix
   package (`DIR/usr/sbin/smtp-source`, libraries in `DIR/usr/lib/postfix`);
2. both programs on `$PATH`;
3. the cache `~/.cache/smtp-lab/postfix`, filled on first use with
   `apt-get download postfix` and `dpkg -x` (Postfix is never installed on
   the host: nothing is configured, no service starts).

`--workers N` runs the mx as N processes sharing its port (SO_REUSEPORT,
`lab.nodes.mailserver.workers`); the default is one per CPU this process
may use. `--profile FILE` runs the mx in one process under cProfile, for
the first case only, and writes the stats to FILE (read them with
`python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.nodes.config import ListenerConfig, MailServerConfig, SessionLimitsConfig
from lab.scenario.model import AuthPolicy, ListenerTls, MailboxState

HOST = "127.0.0.1"
RECIPIENT = "alice@example.com"
SENDER = "bench@remote.example"
CACHE = Path.home() / ".cache" / "smtp-lab" / "postfix"
BAR = 1500.0  # durable msg/s on 2 cores


@dataclass(frozen=True)
class Case:
    name: str
    sessions: int
    reuse: bool


CASES = [
    Case("20 sessions, new connection per message", 20, False),
    Case("200 sessions, new connection per message", 200, False),
    Case("20 sessions, connections reused", 20, True),
]


@dataclass
class Result:
    case: Case
    target: str
    seconds: float
    acknowledged: int
    on_disk: int | None  # None: smtp-sink keeps nothing

    @property
    def rate(self) -> float:
        return self.acknowledged / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Postfix:
    """Where smtp-source and smtp-sink are, and the environment they need."""

    source: Path
    sink: Path
    env: dict[str, str]


def find_postfix(explicit: Path | None) -> Postfix:
    """smtp-source/smtp-sink: an extracted package, $PATH, or the cache (filled here)."""
    from_env = os.environ.get("SMTPLAB_POSTFIX_DIR")
    root = explicit or (Path(from_env) if from_env else None)
    if root is None:
        on_path = shutil.which("smtp-source"), shutil.which("smtp-sink")
        if on_path[0] and on_path[1]:
            return Postfix(Path(on_path[0]), Path(on_path[1]), dict(os.environ))
        root = CACHE / "root"
        if not (root / "usr/sbin/smtp-source").exists():
            _extract_package(CACHE)
    source, sink = root / "usr/sbin/smtp-source", root / "usr/sbin/smtp-sink"
    if not source.exists() or not sink.exists():
        sys.exit(f"ingest.py: no smtp-source/smtp-sink under {root}/usr/sbin")
    env = dict(os.environ)
    libs = str(root / "usr/lib/postfix")
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [libs, env.get("LD_LIBRARY_PATH")]))
    return Postfix(source, sink, env)


def _extract_package(cache: Path) -> None:
    """`apt-get download postfix` into `cache`, unpacked with `dpkg -x` (nothing installed)."""
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching Debian's postfix package into {cache} (not installed) ...", file=sys.stderr)
    try:
        download = ["apt-get", "download", "postfix"]
        subprocess.run(download, cwd=cache, check=True, capture_output=True)
        (deb,) = sorted(cache.glob("postfix_*.deb"))[-1:]
        subprocess.run(["dpkg", "-x", str(deb), str(cache / "root")], check=True)
    except (OSError, subprocess.CalledProcessError, ValueError) as error:
        sys.exit(f"ingest.py: cannot unpack Debian's postfix package: {error}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_banner(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as sock:
            if sock.recv(100).startswith(b"220"):
                return
        time.sleep(0.05)
    sys.exit(f"ingest.py: nothing answered on {HOST}:{port}")


@contextlib.contextmanager
def running(command: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[None]:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_banner(port)
        yield
    finally:
        process.send_signal(signal.SIGINT)  # a clean stop: cProfile writes its stats
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if b"Traceback" in stderr:
            print(stderr.decode(errors="replace")[-3000:], file=sys.stderr)


def mx_command(data_dir: Path, port: int, workers: int, profile: Path | None) -> list[str]:
    config = MailServerConfig(
        name="mx",
        data_dir=data_dir,
        listen_host=HOST,
        role="mx",
        hostname="mx.example.com",
        listeners=[
            ListenerConfig(
                port=25,
                bind_port=port,
                tls=ListenerTls.NONE,
                auth=AuthPolicy.OFF,
                require_tls=False,
                auth_requires_tls=False,
            )
        ],
        auth_mechanisms=[],
        domains=["example.com"],
        mailboxes={RECIPIENT: MailboxState.ACTIVE},
        limits=SessionLimitsConfig(connections=10_000, per_client=10_000),
    )
    config_file = data_dir.parent / f"{data_dir.name}.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config.model_dump_json())
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
        workers = 1  # cProfile sees only its own process
    return [*command, "-m", "lab.nodes", "mx", str(config_file), "--workers", str(workers)]


def count_on_disk(data_dir: Path) -> int:
    new = data_dir / "mailboxes" / RECIPIENT / "new"
    return len(os.listdir(new)) if new.exists() else 0


def send(postfix: Postfix, case: Case, port: int, messages: int, size: int) -> tuple[float, int]:
    """Run smtp-source; (seconds, messages acknowledged)."""
    command = [
        str(postfix.source),
        "-s", str(case.sessions),
        "-l", str(size),
        "-m", str(messages),
        "-f", SENDER,
        "-t", RECIPIENT,
    ]  # fmt: skip
    if case.reuse:
        command.append("-d")
    started = time.perf_counter()
    done = subprocess.run(
        [*command, f"{HOST}:{port}"], env=postfix.env, capture_output=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-500:]
        print(f"smtp-source: {detail}", file=sys.stderr)
        return seconds, 0
    return seconds, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024, help="bytes per message")
    parser.add_argument("--postfix-dir", type=Path, default=None)
    parser.add_argument(
        "--workers", type=int, default=len(os.sched_getaffinity(0)), help="mx processes"
    )
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    postfix = find_postfix(args.postfix_dir)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="smtplab-ingest-") as tmp:
        for index, case in enumerate(CASES):
            data_dir = Path(tmp) / f"mx{index}"
            port = free_port()
            profile = args.profile if index == 0 else None
            with running(mx_command(data_dir, port, args.workers, profile), port):
                seconds, acknowledged = send(postfix, case, port, args.messages, args.size)
            results.append(Result(case, "mx", seconds, acknowledged, count_on_disk(data_dir)))
        for case in CASES:
            port = free_port()
            sink = [str(postfix.sink), "-u", "nobody", "-c", f"{HOST}:{port}", "1024"]
            if os.geteuid() != 0:
                sink = [sink[0], *sink[3:]]
            with running(sink, port, postfix.env):
                seconds, acknowledged = send(postfix, case, port, args.messages, args.size)
            results.append(Result(case, "smtp-sink", seconds, acknowledged, None))
    print_table(results, args)


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    cpus = len(os.sched_getaffinity(0))
    print(
        f"{args.messages} x {args.size} B per case; mx workers {args.workers}; "
        f"{cpus} CPUs; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'case':44} {'target':10} {'seconds':>8} {'msg/s':>8} {'on disk':>8} {'vs sink':>8}")
    sinks = {r.case: r for r in results if r.target == "smtp-sink"}
    for result in results:
        sink = sinks[result.case]
        ratio = result.rate / sink.rate if sink.rate else 0.0
        disk = "-" if result.on_disk is None else str(result.on_disk)
        print(
            f"{result.case.name:44} {result.target:10} {result.seconds:8.2f} "
            f"{result.rate:8.0f} {disk:>8} {ratio:8.2f}"
        )
    for result in results:
        lost = result.acknowledged - (result.on_disk or 0) if result.target == "mx" else 0
        if lost > 0:
            print(f"LOST: {result.case.name}: {lost} acknowledged but not on disk")
    best = max(r.rate for r in results if r.target == "mx")
    print(f"durable bar {BAR:.0f} msg/s: best case {best:.0f} ({best / BAR:.2f} of it)")


if __name__ == "__main__":
    main()
