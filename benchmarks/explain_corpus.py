"""`smtplab explain` figures: top-1 / top-3 on the corpus, and the time per text.

Usage: python benchmarks/explain_corpus.py [--repeat N]

Reads tests/data/explain_corpus.yaml (real-world texts with their established
causes), explains each text N times and prints the rates, the per-cause misses,
and the median and worst time per text (the catalog and signatures are loaded
once, before timing, as in a long-running TUI). Then the same rates for
tests/data/explain_heldout.yaml, texts the signatures were never tuned on: the
figure to quote for texts `explain` has not seen.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

import yaml

from lab.explain import explain
from lab.explain.signatures import load_signatures

CORPUS = Path(__file__).parents[1] / "tests" / "data" / "explain_corpus.yaml"
HELD_OUT = CORPUS.with_name("explain_heldout.yaml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    load_signatures()
    print(f"corpus ({CORPUS.name}, tuned against)")
    measure(yaml.safe_load(CORPUS.read_text())["cases"], args.repeat)
    print(f"\nheld out ({HELD_OUT.name}, never tuned against)")
    measure(yaml.safe_load(HELD_OUT.read_text())["cases"], args.repeat)


def measure(cases: list[dict[str, str]], repeat: int) -> None:
    """Explain every case `repeat` times; print the rates, the time and the misses."""
    top1 = top3 = 0
    misses: Counter[str] = Counter()
    timings: list[float] = []
    for case in cases:
        runs = []
        for _ in range(repeat):
            started = time.perf_counter()
            _, candidates = explain(case["text"])
            runs.append(time.perf_counter() - started)
        timings.append(statistics.median(runs))
        ids = [candidate.entry.id for candidate in candidates]
        top1 += ids[:1] == [case["cause"]]
        top3 += case["cause"] in ids[:3]
        if ids[:1] != [case["cause"]]:
            misses[case["cause"]] += 1
    total = len(cases)
    print(f"texts            {total} ({len({c['cause'] for c in cases})} causes)")
    print(f"top-1            {top1} ({top1 / total:.1%}; target >= 90%)")
    print(f"top-3            {top3} ({top3 / total:.1%}; target >= 97%)")
    print(f"median per text  {statistics.median(timings) * 1000:.2f} ms")
    print(f"worst per text   {max(timings) * 1000:.2f} ms")
    for cause, count in misses.most_common():
        print(f"  not first: {cause} x{count}")


if __name__ == "__main__":
    main()
