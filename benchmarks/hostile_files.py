"""Hostile scenario files: CPU time and peak memory of `smtplab validate` per file.

Usage: python benchmarks/hostile_files.py [--top 10]

Builds the corpus of `tests/scenario/test_hostile.py` (the files in `tests/data/hostile/`
and the generated large ones, FIFOs, devices, links) in a temporary directory and
validates each in a fresh process, so each file's peak RSS (VmHWM, which starts over at
exec, unlike ru_maxrss) is its own. Prints the slowest files, the largest peaks, and the
ratio of the worst peak to the peak of validating the happy-path scenario.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests package

from tests.scenario.test_hostile import GENERATED, HAPPY, STATIC  # noqa: E402

PROBE = r"""
import io, json, sys, time
from lab.cli import common, main
common.err.file = io.StringIO()
started = time.process_time()
code = main(["validate", sys.argv[1]])
seconds = time.process_time() - started
peak = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"code": code, "seconds": seconds, "peak_mb": int(peak.split()[1]) / 1024}))
"""


def measure(path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return {"code": -1, "seconds": float("nan"), "peak_mb": float("nan")}
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smtplab-hostile-") as root:
        directory = Path(root)
        for path in STATIC:
            shutil.copyfile(path, directory / path.name)
        for name, (make, _) in GENERATED.items():
            make(directory / f"{name}.yaml")
        rows = {path.stem: measure(path) for path in sorted(directory.glob("*.yaml"))}
    baseline = measure(HAPPY)
    failed = sorted(name for name, row in rows.items() if row["code"] != 2)
    print(f"{len(rows)} hostile files; exit 2 for {len(rows) - len(failed)}")
    print(f"happy-path: {baseline['seconds']:.3f} CPU-s, peak {baseline['peak_mb']:.1f} MB")
    print(f"\nslowest {args.top} (CPU seconds in validate):")
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["seconds"])[: args.top]:
        print(f"  {row['seconds']:7.3f}  {name}")
    print(f"\nlargest {args.top} peaks (VmHWM of the process, MB):")
    for name, row in sorted(rows.items(), key=lambda item: -item[1]["peak_mb"])[: args.top]:
        print(f"  {row['peak_mb']:7.1f}  {name}")
    worst = max(row["peak_mb"] for row in rows.values())
    print(f"\nworst peak / happy-path peak: {worst / baseline['peak_mb']:.2f}")
    if failed:
        print("not exit 2: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
