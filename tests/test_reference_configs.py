"""Smart Social Distancing's own configuration files (../shared/seeds/ssd-configs): they load
with one warning per key or section Lookout does not act on, and `lookout migrate-config`
turns each into a Lookout file that keeps its comments and starts on a clip."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnxruntime as ort
import pytest

from libs.config import ConfigError, load_config
from libs.config.compat import REFERENCE_IGNORED, ignored_entry
from processor.cli import main
from tests.conftest import PETS, REPO, SHARED, TUD

SEEDS = SHARED / "seeds" / "ssd-configs"
FILES = sorted(p.name for p in SEEDS.glob("config-*.ini"))
CLIP = TUD / "tud_campus.mp4"


def test_all_seven_reference_files_are_here() -> None:
    assert len(FILES) == 7, FILES


def reference_copy(name: str, folder: Path, extra: dict[str, str] | None = None) -> Path:
    """The reference file ``name`` with VideoPath on the TUD clip (and ``extra`` lines
    replaced), in ``folder``."""
    lines = []
    for line in (SEEDS / name).read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if extra and key in extra:
            line = extra[key]
        elif key == "VideoPath":
            line = f"VideoPath = {CLIP}"
        lines.append(line)
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return settled(path)


def settled(path: Path) -> Path:
    """``path`` dated a minute ago: the loader reads a just-written file only once it has been
    left alone for a moment (libs/config/io.py), which this test need not wait for."""
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


@pytest.fixture(autouse=True)
def _assets(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference files have no AssetsDirectory: the clip and the models are in ../shared.
    monkeypatch.setenv("LOOKOUT_ASSETS_DIR", str(SHARED))


def present(name: str) -> set[tuple[str, str | None]]:
    """(section, key) of the file, sections as (section, None)."""
    out: set[tuple[str, str | None]] = set()
    section = None
    for line in (SEEDS / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip()[1:-1]
            out.add((section, None))
        elif section and "=" in line and not line.lstrip().startswith((";", "#")):
            out.add((section, line.split("=", 1)[0].strip()))
    return out


@pytest.mark.parametrize("name", FILES)
def test_reference_file_loads_with_one_warning_per_ignored_key(name: str,
                                                               tmp_path: Path) -> None:
    cfg = load_config(reference_copy(name, tmp_path))
    where = [(w.section, w.key) for w in cfg.warnings]
    assert len(where) == len(set(where)), f"a key warned twice: {where}"
    keys = present(name)
    expected = {(e.section, e.key) for e in REFERENCE_IGNORED if (e.section, e.key) in keys}
    expected |= {("Detector", "Name")}  # every file names a reference model
    if ("Classifier", None) in keys:
        expected.add(("Classifier", None))
    assert set(where) == expected
    # Not derived from the table: what the issue found unread in every file.
    assert {("App", "Encoder"), ("App", "DashboardURL"), ("App", "DashboardAuthorizationToken"),
            ("App", "EntityConfigDirectory"), ("CORE", None)} <= set(where)
    for w in cfg.warnings:
        text = str(w)
        assert f"[{w.section}]" in text and (w.key is None or w.key in text)
        if ignored_entry(w.section or "", w.key) is not None:
            assert "ignored" in text
    # HistoricalDataMode is acted on: no warning.
    assert ("App", "HistoricalDataMode") not in where

    # Reference model -> Lookout's family, its defaults for the model's keys.
    assert cfg.detector.name == "yolox_nano"
    assert cfg.detector.image_size == (416, 416) and cfg.detector.class_id == 0
    # Device names as the reference writes them, matched to the registry.
    assert cfg.detector.device in {"x86", "x86-gpu", "jetson", "edgetpu"}
    # Empty values: the defaults.
    assert cfg.detector.device_id == 0
    if cfg.classifier is not None:
        assert cfg.classifier.min_image_size == 0
    # Plug-in sections the reference ships disabled are accepted as disabled.
    plugins = {p.name: p.enabled for p in [*cfg.source_loggers, *cfg.periodic_tasks]}
    assert plugins["s3_logger"] is False and plugins["web_hook_logger"] is False
    assert plugins["s3_backup"] is False
    # [Classifier] turns on the face-mask steps, before the anonymizer that blurs faces.
    steps = [(p.name, p.enabled) for p in cfg.source_post_processors]
    if ("Classifier", None) in keys:
        names = [n for n, _ in steps]
        assert names.index("faces") < names.index("facemask") < names.index("anonymizer")
        assert dict(steps)["facemask"] is True
    else:
        assert "facemask" not in dict(steps)


def test_reference_device_names_in_any_case(tmp_path: Path) -> None:
    assert load_config(reference_copy("config-coral.ini", tmp_path)).detector.device == "edgetpu"
    cfg = load_config(reference_copy("config-jetson-nano.ini", tmp_path))
    assert cfg.detector.device == "jetson"


def test_typos_and_missing_devices_are_still_refused(tmp_path: Path) -> None:
    path = reference_copy("config-x86.ini", tmp_path, {"Encoder": "Encodr = x264enc"})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[App] Encodr: unknown key" in str(info.value)
    path = reference_copy("config-x86.ini", tmp_path, {"Device": "Device = Dummy"})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "[Detector] Device: no backend 'Dummy'" in str(info.value)
    assert "use Device = x86" in str(info.value)
    path = reference_copy("config-x86.ini", tmp_path, {"Device": "Device = x68"})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "unknown detector 'x68'; available: edgetpu, jetson" in str(info.value)


@pytest.mark.skipif("TensorrtExecutionProvider" in ort.get_available_providers(),
                    reason="this machine can run Device = jetson")
def test_check_config_refuses_a_device_this_install_cannot_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = reference_copy("config-jetson-nano.ini", tmp_path)
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "[Detector] Device: Detector Device 'jetson' needs TensorrtExecutionProvider" in err
    assert "Traceback" not in err
    assert main(["check-config", "--config", str(reference_copy("config-x86.ini", tmp_path))]) == 0
    out, err = capsys.readouterr()
    assert "valid" in out and "warning:" in err and "[App] Encoder: ignored" in err


def comments(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.lstrip().startswith((";", "#"))]


@pytest.mark.parametrize("name", FILES)
def test_migrate_config_keeps_comments_and_loads_without_warnings(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = reference_copy(name, tmp_path)
    new = tmp_path / "lookout.ini"
    assert main(["migrate-config", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    old_text, new_text = old.read_text(), new.read_text()
    new_lines = new_text.splitlines()
    for line in comments(old_text):
        assert line in new_lines, f"comment lost: {line!r}"
    cfg = load_config(settled(new))
    assert cfg.warnings == []
    assert cfg.detector.name == "yolox_nano"
    assert "[App] Encoder: commented out (ignored by Lookout" in out
    assert "[Detector] Name: " in out and "-> yolox_nano" in out
    if "Device = Jetson" in old_text:
        assert "[Detector] Device: Jetson -> jetson" in out
    # A reference model that chose a runtime moves to Lookout's device for that runtime.
    if "Name = openvino" in old_text:
        assert "[Detector] Device: x86 -> openvino" in out and cfg.detector.device == "openvino"
    if "Name = openpifpaf_tensorrt" in old_text and "Device = x86-gpu" in old_text:
        assert "[Detector] Device: x86-gpu -> tensorrt" in out
        assert cfg.detector.device == "tensorrt"
    if ("Classifier", None) in present(name):
        assert "added Name = facemask" in out
        assert [p.name for p in cfg.source_post_processors if p.enabled][-3:] == \
            ["faces", "facemask", "anonymizer"]
    if "PorcessAreas" in old_text:
        assert "[API] PorcessAreas: commented out" in out
    assert "; QueueAuthKey = shibalba" in new_lines  # a whole ignored section, kept as comments


def test_migrate_config_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = reference_copy("config-x86.ini", tmp_path)
    new = tmp_path / "new.ini"
    new.write_text("keep me\n")

    def refused(*args: str) -> str:
        assert main(["migrate-config", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("lookout migrate-config: ") and err.count("\n") == 1, err
        return err

    assert "exists; use --force" in refused(str(old), str(new))
    assert new.read_text() == "keep me\n"
    assert "is the old file itself" in refused(str(old), str(old))
    assert "is the old file itself" in refused(str(old), str(tmp_path / "." / old.name),
                                               "--force")
    assert "no such file" in refused(str(tmp_path / "none.ini"), str(tmp_path / "x.ini"))
    bad = tmp_path / "bad.ini"
    bad.write_text("VideoPath = x\n[App]\n")
    assert "is not an INI file" in refused(str(bad), str(tmp_path / "x.ini"))
    assert not (tmp_path / "x.ini").exists()
    assert main(["migrate-config", str(old), str(new), "--force"]) == 0
    assert new.read_text().startswith("[API]")


@pytest.mark.parametrize("name", FILES)
def test_each_migrated_reference_file_starts_on_a_clip_or_names_its_device(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every migrated file either runs here (x86, and x86-openvino now on OpenVINO) or is
    refused before anything starts, in one line that names the device and what to do: this
    machine has no Jetson, Coral or NVIDIA GPU."""
    # PETS (795 frames), not TUD (71): the stop below must reach a run still processing.
    old = reference_copy(name, tmp_path, {"VideoPath": f"VideoPath = {PETS / 'vtest.avi'}"})
    new = tmp_path / "lookout.ini"
    assert main(["migrate-config", str(old), str(new)]) == 0
    capsys.readouterr()
    settled(new)
    if main(["check-config", "--config", str(new)]) != 0:
        err = capsys.readouterr().err
        device = load_config(new).detector.device
        assert device in ("edgetpu", "jetson", "x86-gpu", "tensorrt"), err
        assert f"[Detector] Device: Detector Device '{device}' needs " in err, err
        assert " or use Device = " in err and "Traceback" not in err, err
        return
    assert name in ("config-x86.ini", "config-x86-openvino.ini")
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(new), "--no-api",
         "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    status = tmp_path / "data" / "processor" / "status.json"

    def frames() -> int:
        try:
            return int(json.loads(status.read_text())["cameras"]["0"]["frames"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    deadline = time.monotonic() + 120
    try:
        # The first processed frames are enough: the file started (whatever HistoricalDataMode
        # then does at the end of the clip).
        while time.monotonic() < deadline and proc.poll() is None and frames() < 5:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert frames() >= 5, out
    assert "Traceback" not in out, out
    assert proc.returncode == 0, out


def test_classifier_section_gives_mask_data_on_a_clip(tmp_path: Path) -> None:
    """A reference file with [Classifier] (config-coral.ini, run on the CPU here): its camera's
    pipeline judges masks, as the reference's classifier did."""
    from libs.frame import Frame
    from processor.pipeline import CameraPipeline
    from processor.sources import open_source

    cfg = load_config(reference_copy("config-coral.ini", tmp_path, {"Device": "Device = x86"}))
    src = cfg.sources[0]
    pipeline = CameraPipeline(cfg, src, with_loggers=False)
    source = open_source(cfg, src)
    stages = [name for name, _ in pipeline.after]
    assert stages.index("faces") < stages.index("facemask") < stages.index("anonymizer")
    try:
        masks = []
        while len(masks) < 12 and (sf := source.read()) is not None:
            frame = pipeline.process(Frame(src.id, sf.index, sf.timestamp, sf.image))
            masks.append(frame.detections.attributes["mask"])
    finally:
        source.close()
        pipeline.close()
    assert len(masks) == 12 and sum(len(m) for m in masks) > 0
