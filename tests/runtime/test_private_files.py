"""Secrets on disk: every file holding a password or private key is 0600 (docker backend's
node configs, one-shot `docker exec` settings, TLS keys), and no config is world-readable."""

from __future__ import annotations

import stat
from pathlib import Path

from lab.private_files import write_private
from lab.runtime.docker.files import CONFIG_DIR, DATA_ROOT, RUN_DIR, run_file, write_node_files
from lab.scenario.loader import load_scenario
from lab.topology import resolve
from tests.diagnosis.test_scenarios import SCENARIOS


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_docker_node_configs_and_keys_are_owner_only(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "auth-required.yaml")
    write_node_files(resolve(scenario, data_root=DATA_ROOT), tmp_path)
    configs = sorted((tmp_path / CONFIG_DIR).iterdir())
    relay = (tmp_path / CONFIG_DIR / "relay.json").read_text()
    assert "correct-horse" in relay  # the file this test is about does hold the password
    assert mode(tmp_path / CONFIG_DIR) == 0o700
    assert {path.name: mode(path) for path in configs} == {path.name: 0o600 for path in configs}
    keys = sorted(tmp_path.rglob("*.key")) + sorted(tmp_path.rglob("*key*.pem"))
    assert keys, "no private key written"
    assert {mode(key) for key in keys} == {0o600}


def test_run_files_are_owner_only_and_removed(tmp_path: Path) -> None:
    with run_file(tmp_path, "settings", '{"password": "x"}') as inside:
        host = tmp_path / RUN_DIR / inside.name
        assert mode(host) == 0o600
        assert mode(host.parent) == 0o700
    assert not host.exists()


def test_an_existing_world_readable_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert mode(path) == 0o600
    assert path.read_text() == "new"
