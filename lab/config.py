"""Settings from the environment (`SMTPLAB_*`), read in this one module only."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Where things live and which backend to use by default."""

    scenarios_dir: Path
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
        return cls(
            scenarios_dir=Path(os.environ.get("SMTPLAB_SCENARIOS", _PROJECT_ROOT / "scenarios")),
            state_dir=Path(os.environ.get("SMTPLAB_STATE", Path(state) / "smtplab")),
            cache_dir=Path(os.environ.get("SMTPLAB_CACHE", Path(cache) / "smtplab")),
            backend=os.environ.get("SMTPLAB_BACKEND") or None,
            require_docker=os.environ.get("SMTPLAB_REQUIRE_DOCKER", "") not in ("", "0"),
        )


settings = Settings.from_environment()
