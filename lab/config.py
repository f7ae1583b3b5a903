"""Settings from the environment (`SMTPLAB_*`), read in this one module only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
# A wheel has no source checkout around `lab`: the build puts the catalog and what the node
# image is built from here, inside the package (setup.py).
BUNDLED = Path(__file__).resolve().parent / "_bundled"


def _shipped_scenarios() -> Path:
    checkout = _PROJECT_ROOT / "scenarios"
    return checkout if checkout.is_dir() else BUNDLED / "scenarios"


@dataclass(frozen=True)
class Settings:
    """Where things live and which backend to use by default."""

    scenarios_dir: Path
    shipped_scenarios_dir: Path  # the catalog that comes with smtp-lab
    state_dir: Path
    cache_dir: Path
    backend: str | None  # None: docker when an engine answers, else local
    require_docker: bool  # tests: no engine is a failure, not a skip (CI sets it)

    @classmethod
    def from_environment(cls) -> Settings:
        """Read `SMTPLAB_SCENARIOS`, `SMTPLAB_STATE`, `SMTPLAB_CACHE`, `SMTPLAB_BACKEND`,
        `SMTPLAB_REQUIRE_DOCKER`."""
        home = Path.home()
        state = os.environ.get("XDG_STATE_HOME") or str(home / ".local" / "state")
        cache = os.environ.get("XDG_CACHE_HOME") or str(home / ".cache")
        shipped = _shipped_scenarios()
        return cls(
            scenarios_dir=Path(os.environ.get("SMTPLAB_SCENARIOS", shipped)),
            shipped_scenarios_dir=shipped,
            state_dir=Path(os.environ.get("SMTPLAB_STATE", Path(state) / "smtplab")),
            cache_dir=Path(os.environ.get("SMTPLAB_CACHE", Path(cache) / "smtplab")),
            backend=os.environ.get("SMTPLAB_BACKEND") or None,
            require_docker=os.environ.get("SMTPLAB_REQUIRE_DOCKER", "") not in ("", "0"),
        )


settings = Settings.from_environment()
