"""Relay crash at full size: 2,000 messages through a relay killed with SIGKILL twice.

Usage: python benchmarks/relay_crash.py [--count 2000] [--seed 12] [--runs 1]

The run of `tests/nodes/test_relay_crash.py` at the size of issue 12: the MX is
down at first (the queue fills), the relay is killed and restarted on the same
data directory, the MX comes up, and the relay is killed again while it
accepts and delivers. Prints, per run, what was acknowledged, what was on disk
at each kill, what the restarted relay resumed, the redeliveries the MX
absorbed, and the verdict by Message-ID: lost and delivered twice (both must
be 0), with messages per second over the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests.nodes.relay_crash import crash_run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--runs", type=int, default=1, help="seeds SEED, SEED+1, ...")
    args = parser.parse_args()
    print(
        f"{'seed':>5} {'acked':>6} {'queued at kills':>16} {'resumed':>8} {'absorbed':>9} "
        f"{'lost':>5} {'twice':>6} {'msg/s':>7}"
    )
    failures = 0
    for seed in range(args.seed, args.seed + args.runs):
        with tempfile.TemporaryDirectory(prefix="smtplab-crash-") as root:
            run = asyncio.run(crash_run(Path(root), args.count, seed, timeout=600))
        kills = "+".join(str(n) for n in run.queued_at_kill)
        rate = args.count / run.seconds if run.seconds else 0.0
        print(
            f"{seed:>5} {run.acknowledged:>6} {kills:>16} {run.resumed:>8} "
            f"{run.suppressed:>9} {len(run.lost):>5} {len(run.twice):>6} {rate:>7.0f}"
        )
        failures += bool(run.lost or run.twice or run.refused)
    verdict = f"{failures} run(s) failed" if failures else "nothing lost, nothing twice"
    print("verdict:", verdict)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
