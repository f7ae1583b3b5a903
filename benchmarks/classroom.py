"""A class on one machine: N labs started at once, as N trainees opening a case together.

Usage: python benchmarks/classroom.py [--labs N] [--backend docker|local] [--scenario ID]

Starts N labs of one scenario concurrently, waits until every one is ready,
then prints per lab its up time (from the common start to its own readiness)
and its memory (docker: the sum of its containers' usage as the engine reports
it), then the host's total memory in use before and with the class running,
and the ratios against the classroom bar (each lab up in < 5 s, < 150 MB per
lab). For docker it also prints where the up time went (the mean and slowest
seconds of each step a lab records in `timings`: planning, networks, node
files, container create, start, routers ready, the other nodes ready,
colleague sessions) and how many engine API requests the class made per lab.
Every lab is taken down at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import statistics
import threading
import time
from collections import Counter
from typing import Any

from lab.catalog import load
from lab.runtime import get_backend
from lab.runtime.labels import LAB

UP_BAR = 5.0  # seconds per lab
MEMORY_BAR = 150.0  # MB per lab
MB = 1024 * 1024


def host_used_mb() -> float:
    """Memory in use on the host (MemTotal - MemAvailable), in MB."""
    fields: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            name, value = line.split(":", 1)
            fields[name] = int(value.split()[0]) * 1024
    return (fields["MemTotal"] - fields["MemAvailable"]) / MB


def docker_lab_mb(client: Any, lab_id: str) -> float:
    """The lab's containers' memory as the engine counts it (usage minus page cache)."""
    api = client.api

    def used(container_id: str) -> float:
        # One sample (API 1.41): the default waits for a second one, a second per container.
        stats = api.stats(container_id, stream=False, one_shot=True)
        memory = stats.get("memory_stats", {})
        cache = memory.get("stats", {}).get("inactive_file", 0)
        return float(max(memory.get("usage", 0) - cache, 0))

    found = api.containers(filters={"label": f"{LAB}={lab_id}"})
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return sum(pool.map(used, [container["Id"] for container in found])) / MB


def count_requests(client: Any) -> Counter[str]:
    """Count the engine API requests `client` makes from now on, by HTTP method."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    api = client.api
    for method in ("_get", "_post", "_put", "_delete"):
        original = getattr(api, method)

        def counted(*args: Any, _original: Any = original, _method: str = method, **kw: Any) -> Any:
            with lock:
                counts[_method.strip("_").upper()] += 1
            return _original(*args, **kw)

        setattr(api, method, counted)
    return counts


def print_steps(labs: list[Any]) -> None:
    """Mean and slowest seconds per step of `up`, over the labs that recorded them."""
    steps: dict[str, list[float]] = {}
    for lab in labs:
        for step, seconds in getattr(lab, "timings", {}).items():
            steps.setdefault(step, []).append(seconds)
    if not steps:
        return
    print(f"\n{'step of up':>16} {'mean (s)':>9} {'slowest (s)':>12}")
    for step, values in steps.items():
        print(f"{step:>16} {statistics.mean(values):>9.3f} {max(values):>12.3f}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", type=int, default=30)
    parser.add_argument("--backend", default="docker", choices=["docker", "local"])
    parser.add_argument("--scenario", default="blocked-port-25")
    args = parser.parse_args()
    scenario = load(args.scenario)
    backend = get_backend(args.backend)
    ensure_image = getattr(backend, "ensure_image", None)
    if ensure_image is not None:
        await asyncio.to_thread(ensure_image)  # an image build is not a lab start

    client = getattr(backend, "client", None)
    requests: Counter[str] = count_requests(client) if client is not None else Counter()
    before = host_used_mb()
    started = time.perf_counter()
    up_times: dict[int, float] = {}

    async def one(number: int) -> Any:
        lab = await backend.up(backend.plan(scenario))
        up_times[number] = time.perf_counter() - started
        return number, lab

    outcomes = await asyncio.gather(*(one(n) for n in range(args.labs)), return_exceptions=True)
    numbered = [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
    labs = [lab for _, lab in numbered]
    failures = [error for error in outcomes if isinstance(error, BaseException)]
    made = sum(requests.values())  # by the class's ups, before the measuring below
    try:
        everyone = time.perf_counter() - started
        with_class = host_used_mb()
        print(
            f"{len(labs)} of {args.labs} {scenario.id} labs up on {backend.name} "
            f"({len(scenario.nodes)} nodes each) in {everyone:.2f} s"
        )
        print(f"{'lab':>4} {'up (s)':>8} {'memory (MB)':>12}")
        memories = []
        for number, lab in numbered:
            memory = (
                await asyncio.to_thread(docker_lab_mb, client, lab.id)
                if client is not None
                else float("nan")
            )
            memories.append(memory)
            print(f"{number:>4} {up_times.get(number, float('nan')):>8.2f} {memory:>12.1f}")
        for error in failures:
            print(f"failed: {type(error).__name__}: {error}")
        print_steps(labs)
        if client is not None:
            print(
                f"engine API requests during the ups: {made} "
                f"({made / max(args.labs, 1):.1f} per lab)"
            )
        slowest = max(up_times.values(), default=float("nan"))
        print(
            f"\nup: median {statistics.median(up_times.values()):.2f} s, slowest {slowest:.2f} s"
            f" ({slowest / UP_BAR:.2f} x the {UP_BAR:.0f} s bar)"
        )
        if client is not None and memories:
            per_lab = statistics.mean(memories)
            print(
                f"memory per lab: mean {per_lab:.1f} MB ({per_lab / MEMORY_BAR:.2f} x the "
                f"{MEMORY_BAR:.0f} MB bar)"
            )
        print(
            f"host memory in use: {before:.0f} MB before, {with_class:.0f} MB with the class "
            f"({(with_class - before) / max(len(labs), 1):.1f} MB per lab by the host's count)"
        )
    finally:
        await asyncio.gather(*(lab.down() for lab in labs), return_exceptions=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
