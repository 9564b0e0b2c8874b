"""A recording detected in parallel leaves exactly what one detected frame by frame leaves.

The PETS clip with every shipped analytic on, twice: through `lookout run` with two detector
sessions (two frames in the detector at once, four in flight, results taken in frame order),
and, as the reference, through the camera's pipeline in this process with each frame detected
before the next is read.  Every session has one thread, so each frame's detections are
computed the same way.  The raw logs (every frame's people, with ``TimeInterval`` below the
frame interval), events, line crossings and heat maps must be the same.  Also: the thread
budget the worker chose is in its log.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from libs.config import load_config
from libs.detectors import create_detector
from libs.detectors.pool import DetectorPool
from libs.frame import Frame
from libs.records import RecordIds
from processor.pipeline import CameraPipeline
from processor.resume import ResumeStore
from processor.sources import open_source
from tests.conftest import REPO

SOURCES = Path("processor/static/data/sources")


def variant(shipped: Path, folder: Path, sessions: int) -> Path:
    text = shipped.read_text()
    for old, new in (("Sessions = 0\nThreads = 0", f"Sessions = {sessions}\nThreads = 1"),
                     ("Name = video_logger\nEnabled = True",
                      "Name = video_logger\nEnabled = False"),
                     ("TimeInterval = 0.5\nLogDirectory", "TimeInterval = 0.1\nLogDirectory")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    folder.mkdir()
    path = folder / "config.ini"
    path.write_text(text)
    return path


def run(config: Path) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "processor.cli", "run", "--config", str(config), "--no-api",
         "--no-progress"],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True,
        timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res.stdout + res.stderr


def outputs(config: Path) -> dict[str, bytes]:
    base = config.parent / "data" / SOURCES
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file() and "reports" not in p.parts}


def serial_run(config: Path) -> None:
    """The reference: the camera's pipeline in this process, each frame detected by one
    one-thread session before the next is read (no pool, no worker)."""
    cfg = load_config(config)
    src = cfg.sources[0]
    detector = create_detector(cfg, src, threads=1)
    assert not isinstance(detector, DetectorPool)
    pipeline = CameraPipeline(cfg, src, detector=detector)
    pipeline.ids = RecordIds.for_recording(ResumeStore(cfg, src).record_key())
    source = open_source(cfg, src)
    try:
        while (sf := source.read()) is not None:
            pipeline.process(Frame(src.id, sf.index, sf.timestamp, sf.image))
    finally:
        source.close()
        pipeline.close()
        detector.close()


def test_parallel_detection_leaves_the_same_logs(tmp_path: Path, shipped_config: Path) -> None:
    one = variant(shipped_config, tmp_path / "one", 1)
    two = variant(shipped_config, tmp_path / "two", 2)
    serial_run(one)
    log_two = run(two)
    assert "each 2 detector sessions x 1 thread (Device x86)" in log_two

    a, b = outputs(one), outputs(two)
    assert sorted(a) == sorted(b)
    objects = [k for k in a if k.startswith("pets-view1/objects_log/")]
    assert objects and any(k.startswith("pets-view1/line_crossings/") for k in a)
    rows = sum(a[k].count(b"\n") - 1 for k in objects)
    assert rows == 795  # every frame of the clip is a row: every detection is compared
    assert any(b'"bbox"' in a[k] for k in objects)
    # A heat map's .npz is a zip whose entries carry the time they were written, and its
    # person-seconds are summed in batches cut by the wall clock (FlushSeconds), so two runs
    # of one setting differ in the last bits too: its arrays, to a part in a billion.
    heatmaps = [k for k in a if k.endswith(".npz")]
    assert heatmaps
    for k in heatmaps:
        with np.load(io.BytesIO(a[k])) as x, np.load(io.BytesIO(b[k])) as y:
            assert sorted(x.files) == sorted(y.files)
            for name in x.files:
                np.testing.assert_allclose(x[name], y[name], rtol=1e-9, atol=0,
                                           err_msg=f"{k}: {name}")
    different = [k for k in a if a[k] != b[k] and k not in heatmaps]
    assert not different, different
