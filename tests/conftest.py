"""Shared fixtures: where ../shared is, and configs written into temporary folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    env = os.environ.get("LOOKOUT_ASSETS_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared").resolve()


SHARED = shared_dir()
PETS = SHARED / "data" / "pets09_s2l1"
TUD = SHARED / "data" / "tud_campus"
MODELS = SHARED / "models"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "models").exists():
        pytest.fail(f"../shared not found at {SHARED}; set LOOKOUT_ASSETS_DIR")
    return SHARED


# Post-processors of the audience analytics; tests that add their own sections start from
# the shipped configuration without them (core_config_text).
ANALYTICS = {"zones", "dwell", "faces", "facemask", "head_pose", "demographics", "engagement",
             "audience", "heatmap", "anonymizer"}


def core_config_text(text: str) -> str:
    """The configuration text without the analytics' [SourcePostProcessor_N] sections."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        names = [ln.split("=", 1)[1].strip() for ln in block if ln.startswith("Name =")]
        is_analytic = block and block[0].startswith("[SourcePostProcessor_") and names \
            and names[0] in ANALYTICS
        if not is_analytic:
            out.extend(block)

    for line in text.splitlines():
        if line.startswith("["):
            flush()
            block = []
        block.append(line)
    flush()
    return "\n".join(out) + "\n"


def _copy_config(tmp_path: Path, shared: Path, core: bool) -> Path:
    text = (REPO / "config-x86.ini").read_text()
    if core:
        text = core_config_text(text)
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    path = tmp_path / "config.ini"
    path.write_text(text)
    return path


@pytest.fixture
def x86_config(tmp_path: Path, shared: Path) -> Path:
    """config-x86.ini without the analytics sections (tests add the ones they need), copied
    into a temporary folder, pointing at ../shared and a temp data dir."""
    return _copy_config(tmp_path, shared, core=True)


@pytest.fixture
def shipped_config(tmp_path: Path, shared: Path) -> Path:
    """config-x86.ini exactly as shipped (every analytic section), in a temporary folder."""
    return _copy_config(tmp_path, shared, core=False)


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def pets_frames(shared: Path) -> list:
    """The first ten frames of vtest.avi."""
    import cv2

    cap = cv2.VideoCapture(str(PETS / "vtest.avi"))
    frames = []
    while len(frames) < 10:
        ok, image = cap.read()
        assert ok
        frames.append(image)
    cap.release()
    return frames


@pytest.fixture(scope="session")
def pets_pipeline_run(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The bundled configuration's pipeline over all of vtest.avi, once per test session.

    Returns per frame (0-based index) the raw detector boxes and the people left after the
    filters and the tracker.
    """
    from libs.config import load_config
    from libs.frame import Frame
    from processor.pipeline import CameraPipeline
    from processor.sources import open_source

    folder = tmp_path_factory.mktemp("pets_run")
    text = core_config_text((REPO / "config-x86.ini").read_text())
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}")
    path = folder / "config.ini"
    path.write_text(text)
    cfg = load_config(path)
    src_cfg = cfg.sources[0]
    pipeline = CameraPipeline(cfg, src_cfg, with_loggers=False)
    source = open_source(cfg, src_cfg)
    raw, final, timestamps = [], [], []
    try:
        while (sf := source.read()) is not None:
            frame = Frame(src_cfg.id, sf.index, sf.timestamp, sf.image)
            frame.detections = pipeline.detector.detect(frame.image)
            raw.append(frame.detections.boxes.copy())
            frame = pipeline.process_detections(frame)
            final.append(frame)
            frame.image = None  # type: ignore[assignment]  # keep memory small
            timestamps.append(sf.timestamp)
    finally:
        source.close()
        pipeline.close()
    return {"config": cfg, "raw": raw, "frames": final, "timestamps": timestamps}


TEST_PASSWORD = "correct horse battery"


def app_with_users(config: Path):
    """The API app on ``config`` with an admin ``admin1`` and a viewer ``viewer1``, both with
    :data:`TEST_PASSWORD`."""
    from api.app import create_app

    app = create_app(config)
    users = app.state.context.users
    users.add("admin1", TEST_PASSWORD, "admin")
    users.add("viewer1", TEST_PASSWORD, "viewer")
    return app
