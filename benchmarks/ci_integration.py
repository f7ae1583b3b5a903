"""CI integration figures: how long the pytest fixtures take to start and close a lab
(local and docker backends), and a compose export's `up` (until every healthcheck passes)
and `down`.

Usage: python benchmarks/ci_integration.py [--repeat N] [--scenario ID] [--no-docker]

The fixtures are thin wrappers of `lab.harness.start_lab` and `LabHandle.close`, timed
here directly: "start" includes publishing the endpoints on 127.0.0.1. The node image is
found (or built) before any timing starts. Compose figures need docker-compose (or the
`docker compose` plugin).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from lab.catalog import load
from lab.harness import choose_backend, start_lab
from lab.scenario.model import Scenario


def fixture_times(scenario: Scenario, backend_name: str, repeat: int) -> tuple[list[float], ...]:
    backend = choose_backend(backend_name)  # builds the docker image first, untimed
    starts, closes = [], []
    for _ in range(repeat):
        began = time.perf_counter()
        handle = start_lab(scenario, backend)
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        handle.close()
        closes.append(time.perf_counter() - began)
    return starts, closes


def compose_times(scenario: Scenario, repeat: int) -> tuple[list[float], ...]:
    from lab.runtime.docker import DockerBackend
    from lab.runtime.docker.compose import export_compose, wait_healthy

    compose = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]
    backend = DockerBackend()
    backend.ensure_image()
    ups, downs = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="smtplab-compose-") as scratch:
            exported = export_compose(scenario, Path(scratch) / "project", backend)
            began = time.perf_counter()
            try:
                subprocess.run(
                    [*compose, "up", "-d"], cwd=exported.directory, capture_output=True, check=True
                )
                wait_healthy(backend.client, exported)
                ups.append(time.perf_counter() - began)
            finally:
                began = time.perf_counter()
                subprocess.run(
                    [*compose, "down"], cwd=exported.directory, capture_output=True, check=True
                )
                downs.append(time.perf_counter() - began)
    return ups, downs


def row(label: str, first: list[float], second: list[float], names: tuple[str, str]) -> str:
    return (
        f"{label:<22} {names[0]} median {statistics.median(first):7.3f} s  "
        f"(min {min(first):.3f})   {names[1]} median {statistics.median(second):7.3f} s  "
        f"(min {min(second):.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--scenario", default="happy-path")
    parser.add_argument("--no-docker", action="store_true")
    args = parser.parse_args()
    scenario = load(args.scenario)
    print(f"{scenario.id}: {len(scenario.nodes)} nodes, {args.repeat} runs each")
    local = fixture_times(scenario, "local", args.repeat)
    print(row("fixture local", *local, names=("start", "close")))
    if args.no_docker:
        return
    docker = fixture_times(scenario, "docker", args.repeat)
    print(row("fixture docker", *docker, names=("start", "close")))
    compose = compose_times(scenario, args.repeat)
    print(row("compose export", *compose, names=("up   ", "down ")))
    ratio = statistics.median(docker[0]) / statistics.median(local[0])
    print(f"docker start / local start: {ratio:.1f}x")
    print(
        f"compose up / docker fixture start: "
        f"{statistics.median(compose[0]) / statistics.median(docker[0]):.2f}x"
    )


if __name__ == "__main__":
    main()
