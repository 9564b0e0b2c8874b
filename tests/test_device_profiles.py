"""The device table (libs/config/devices.py) is the one source of the per-device files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from libs.config import load_config
from libs.config.devices import DEVICE_PROFILES, render, stale_configs, write_configs
from libs.detectors import DETECTORS

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_are_what_the_table_makes() -> None:
    assert stale_configs() == [], "run: python -m libs.config.devices"
    shipped = {p.name for p in REPO.glob("config-*.ini")}
    assert shipped == {p.config for p in DEVICE_PROFILES.values()}, (
        "every config-*.ini at the root is a device of libs/config/devices.py"
    )


def test_a_change_to_the_base_reaches_every_device_file(tmp_path: Path) -> None:
    for profile in DEVICE_PROFILES.values():
        shutil.copy(REPO / profile.config, tmp_path / profile.config)
    assert stale_configs(tmp_path) == []
    base = tmp_path / "config-x86.ini"
    base.write_text(base.read_text().replace("MaxLostSeconds = 2.0", "MaxLostSeconds = 3.0"))
    stale = stale_configs(tmp_path)
    assert sorted(stale) == sorted(p.config for p in DEVICE_PROFILES.values() if p.header)
    assert sorted(write_configs(tmp_path)) == sorted(stale)
    assert stale_configs(tmp_path) == []
    gpu = (tmp_path / "config-x86-gpu.ini").read_text()
    assert "MaxLostSeconds = 3.0" in gpu and "Device = x86-gpu" in gpu


def test_check_command_names_a_stale_file() -> None:
    ok = subprocess.run([sys.executable, "-m", "libs.config.devices", "--check"], cwd=REPO,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    extras = subprocess.run([sys.executable, "-m", "libs.config.devices", "--extras",
                             "openvino"], cwd=REPO, capture_output=True, text=True)
    assert extras.stdout.strip() == "api,integrations,openvino"
    bad = subprocess.run([sys.executable, "-m", "libs.config.devices", "--extras", "vax"],
                         cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "x86-gpu" in bad.stderr


def test_render_keeps_everything_but_the_device_keys() -> None:
    base = (REPO / "config-x86.ini").read_text()
    for profile in DEVICE_PROFILES.values():
        text = render(profile, base)
        keys = {k.key for k in (profile.device, *profile.detector)}
        body = [line for line in text.splitlines()
                if line.partition("=")[0].strip() not in keys and not line.startswith("#")]
        base_body = [line for line in base.splitlines()
                     if line.partition("=")[0].strip() not in keys and not line.startswith("#")]
        assert body == base_body, profile.name


def test_every_device_names_a_registered_backend_and_real_extras() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for profile in DEVICE_PROFILES.values():
        assert profile.device.value in DETECTORS.names(), (
            profile.device.value, DETECTORS.unavailable())
        for extra in profile.extras:
            assert extra in extras, f"{profile.name}: no [{extra}] extra in pyproject.toml"


@pytest.mark.parametrize("profile", list(DEVICE_PROFILES.values()), ids=list(DEVICE_PROFILES))
def test_every_shipped_config_loads(profile, shared: Path, tmp_path: Path) -> None:
    text = (REPO / profile.config).read_text().replace(
        "AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    path = tmp_path / profile.config
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.sources and cfg.detector.model_path
    assert cfg.detector.device == profile.device.value
    assert cfg.asset_path(cfg.detector.model_path).is_file()
