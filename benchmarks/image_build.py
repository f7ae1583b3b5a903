"""Node image build times, in one run: cold, cold with the root filesystem cached, cached.

Usage: python benchmarks/image_build.py [--offline|--online]

1. cold: an empty cache directory (debootstrap, wheel downloads, `docker import`,
   the whole build): what CI and a first-time user pay;
2. cold with the cached root filesystem and wheels: the base image and the
   node image are gone, the cache directory stays (a machine that pruned its
   images; also about what a source change costs, minus the import);
3. cached: the image exists for these sources: one lookup.

Everything is built under names of its own (`smtplab-bench-node`,
`smtplab-bench-base`), removed at the end: measuring never touches the images
labs on this engine use. Needs root and debootstrap for the offline path.
Targets (DESIGN.md): from nothing < 120 s, from cache < 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import docker.errors

from lab.runtime.image import build_node_image

NODE = "smtplab-bench-node"
BASE = "smtplab-bench-base"
TARGETS = {"cold": 120.0, "cached": 5.0}


def remove_bench_images(client: Any) -> None:
    """The benchmark's own images (node before base: the base is its parent)."""
    for repository in (NODE, BASE):
        for image in client.images.list(name=repository):
            for tag in image.tags:
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag, force=True)


def timed(client: Any, cache: Path, offline: bool | None, force: bool) -> tuple[float, str]:
    started = time.perf_counter()
    tag = build_node_image(
        offline,
        lambda line: print(f"    {line}", flush=True),
        client=client,
        cache_dir=cache,
        force=force,
        repository=NODE,
        base_repository=BASE,
    )
    return time.perf_counter() - started, tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--offline", action="store_true")
    where.add_argument("--online", action="store_true")
    args = parser.parse_args()
    offline = True if args.offline else False if args.online else None
    client = docker.from_env(timeout=600)
    remove_bench_images(client)
    figures: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="smtplab-bench-cache-") as scratch:
            cache = Path(scratch)
            print("1. cold: empty cache, no images", flush=True)
            figures["cold"], _ = timed(client, cache, offline, force=True)
            remove_bench_images(client)
            print("2. cold, cached root filesystem and wheels", flush=True)
            figures["cold, cached rootfs"], tag = timed(client, cache, offline, force=True)
            print("3. cached: the image exists", flush=True)
            figures["cached"], again = timed(client, cache, offline, force=False)
            if again != tag:  # the sources changed meanwhile: that was a build, not a lookup
                print(f"    sources changed during the run ({tag} -> {again})")
    finally:
        remove_bench_images(client)
    print()
    print(f"{'node image build':32} {'seconds':>8}  target")
    for name, seconds in figures.items():
        target = TARGETS.get(name.split(",")[0] if name != "cached" else "cached")
        shown = f"< {target:g} s ({seconds / target:.2f} of it)" if target else ""
        print(f"{name:32} {seconds:8.1f}  {shown}")


if __name__ == "__main__":
    main()
