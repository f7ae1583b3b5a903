"""Lab lifecycle figures: per scenario, time to bring a lab up, run it, and take it down.

Usage: python benchmarks/lab_lifecycle.py [--backend local|docker|both] [--repeat N] [SCENARIO...]

Prints one row per scenario with each backend's up, run and down medians side
by side, and the ratios against DESIGN.md's targets (local up < 0.3 s, whole
catalog verified < 30 s; docker 5-node up < 3 s, down < 2 s). For docker, "up"
is create, start and every readiness check (never a sleep); the node image is
found (or built) before any timing starts.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

from lab.catalog import load_catalog
from lab.runs import run_once
from lab.runtime import get_backend
from lab.scenario.model import Scenario

TARGETS = {"local": {"up": 0.3, "down": 0.3}, "docker": {"up": 3.0, "down": 2.0}}


@dataclass
class Figures:
    scenario: str
    backend: str
    nodes: int
    up: list[float]
    run: list[float]
    down: list[float]


async def measure(scenario: Scenario, backend_name: str, repeat: int) -> Figures:
    backend = get_backend(backend_name)
    ensure_image = getattr(backend, "ensure_image", None)
    if ensure_image is not None:
        await asyncio.to_thread(ensure_image)  # an image build is not a lab start
    figures = Figures(scenario.id, backend_name, len(scenario.nodes), [], [], [])
    for _ in range(repeat):
        started = time.perf_counter()
        lab = await backend.up(backend.plan(scenario))
        figures.up.append(time.perf_counter() - started)
        try:
            started = time.perf_counter()
            await run_once(lab)
            figures.run.append(time.perf_counter() - started)
        finally:
            started = time.perf_counter()
            await lab.down()
            figures.down.append(time.perf_counter() - started)
    return figures


def ms(values: list[float]) -> str:
    """A median in milliseconds, right-aligned."""
    return f"{statistics.median(values) * 1000:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "docker", "both"], default="local")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("scenarios", nargs="*")
    args = parser.parse_args()
    scenarios, _ = load_catalog()
    if args.scenarios:
        scenarios = [s for s in scenarios if s.id in args.scenarios]
    backends = ["local", "docker"] if args.backend == "both" else [args.backend]
    rows: list[Figures] = []
    for backend in backends:
        for scenario in scenarios:
            rows.append(asyncio.run(measure(scenario, backend, args.repeat)))
    header = f"{'scenario':26} {'nodes':>5}"
    for backend in backends:
        header += f" | {backend + ' up':>10} {'run':>7} {'down':>7}"
    print(header + "   (median ms)")
    for scenario in scenarios:
        mine = {r.backend: r for r in rows if r.scenario == scenario.id}
        line = f"{scenario.id:26} {len(scenario.nodes):5d}"
        for backend in backends:
            row = mine[backend]
            line += f" | {ms(row.up):>10} {ms(row.run)} {ms(row.down)}"
        print(line)
    for backend in backends:
        mine = [r for r in rows if r.backend == backend]
        if not mine:
            continue
        worst_up = max(statistics.median(r.up) for r in mine)
        worst_down = max(statistics.median(r.down) for r in mine)
        total = sum(
            statistics.median(r.up) + statistics.median(r.run) + statistics.median(r.down)
            for r in mine
        )
        target = TARGETS[backend]
        five = [statistics.median(r.up) for r in mine if r.nodes == 5]
        if five:
            print(
                f"{backend}: 5-node labs: up median {statistics.median(five) * 1000:.0f} ms, "
                f"slowest {max(five) * 1000:.0f} ms (target {target['up']} s)"
            )
        print(
            f"{backend}: slowest up {worst_up * 1000:.1f} ms "
            f"({worst_up / target['up']:.2f} of the {target['up']} s target), "
            f"slowest down {worst_down * 1000:.1f} ms "
            f"({worst_down / target['down']:.2f} of target), "
            f"whole catalog up+run+down {total:.1f} s"
        )


if __name__ == "__main__":
    main()
