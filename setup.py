"""Packaging beyond pyproject.toml: a wheel has no checkout around `lab`, so the build copies
in what an installed smtp-lab needs from the checkout (the scenario catalog, and what the
docker node image is built from) to `lab/_bundled/` (see `lab.config.BUNDLED`)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLE = {
    "scenarios": "scenarios",
    "compose/node.Dockerfile": "compose/node.Dockerfile",
    "pyproject.toml": "pyproject.toml",
    "README.md": "README.md",
}


class BuildWithBundle(build_py):
    """`build_py` that also copies the bundle into the built `lab` package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout itself
        target = Path(self.build_lib) / "lab" / "_bundled"
        for source, destination in BUNDLE.items():
            origin = ROOT / source
            if not origin.exists():
                continue  # building from an sdist that already carries lab/_bundled
            out = target / destination
            out.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(origin, out, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(origin, out)


setup(cmdclass={"build_py": BuildWithBundle})
