"""Dwell and presence end to end on the real PETS09-S2L1 clip.

The shipped pipeline (detector, filters, KalmanTracker, line_crossing; the session fixture
``pets_pipeline_run``) runs once; the ``zones`` and ``dwell`` steps then run over its frames in
order, configured from INI sections as a user would add them to config-x86.ini.  Time in scene
per ground-truth identity (the track that covers it most, the rule of
``libs.evaluation.evaluate.dwell_errors``) is compared with ``tracks.csv`` at 7 fps.  The real
file_system_logger and report recomputation then write the raw logs and reports, and the
``/metrics`` endpoints must give back what the steps counted.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.optimize import linear_sum_assignment

from api.app import create_app
from libs.clock import IntervalGate
from libs.config import LookoutConfig, load_config
from libs.evaluation.evaluate import dwell_errors
from libs.evaluation.mot import load_mot
from libs.evaluation.runner import to_mot_rows
from libs.evaluation.tracking import load_sequence
from libs.frame import Detections, Frame
from libs.geometry import iou_matrix
from libs.loggers.file_system_logger import SourceFileSystemLogger
from libs.metrics import recompute_all
from libs.post_processors import POST_PROCESSORS
from libs.post_processors.dwell import Dwell
from libs.post_processors.zones import Zones
from libs.storage import sample_interval
from processor.pipeline import finish_stream
from processor.summary import summary_records
from tests.audience_helpers import collect
from tests.conftest import PETS, REPO, core_config_text

pytestmark = pytest.mark.slow

PASSWORD = "password123"
ZONES = "left: 0,150 384,150 384,576 0,576; right: 384,150 768,150 768,576 384,576"
ENTRY_ZONES = "east: 700,150 768,150 768,576 700,576"
# The sections to add to config-x86.ini, after line_crossing.
SECTIONS = """
[SourcePostProcessor_4]
Name = zones
Enabled = True
GapTolerance = 2

[SourcePostProcessor_5]
Name = dwell
Enabled = True
GapTolerance = 2
LoiterSeconds = 60
Buckets = 10,30,60,300

"""


def write_config(folder: Path, shared: Path) -> Path:
    text = core_config_text((REPO / "config-x86.ini").read_text())
    for old, new in (
        ("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}"),
        ("ScreenshotPeriod = 1", "ScreenshotPeriod = 0"),  # the frames keep no images
        ("CountingLines = x384: 384,0 384,576",
         f"CountingLines = x384: 384,0 384,576\nZones = {ZONES}\nEntryZones = {ENTRY_ZONES}"),
        ("[SourceLogger_0]", SECTIONS + "[SourceLogger_0]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "config.ini"
    path.write_text(text)
    return path


def copy_frame(frame: Frame) -> Frame:
    """The fixture's frame with its own detections and metrics (other tests share it)."""
    d = frame.detections
    dets = Detections(d.boxes, d.scores, d.classes, d.track_ids, dict(d.attributes))
    return Frame(frame.camera_id, frame.index, frame.timestamp, frame.image, dets,
                 dict(frame.metrics))


@dataclass
class Run:
    config_path: Path
    config: LookoutConfig
    frames: list[Frame]
    closing: list[dict[str, Any]]  # events the steps put on the end-of-stream frame
    events: list[dict[str, Any]]
    ms_zones: float
    ms_dwell: float


@pytest.fixture(scope="module")
def run(pets_pipeline_run: dict, shared: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The steps over the fixture's frames, the real file_system_logger after them, then the
    pipeline's order at the end: loggers closed, then the steps, then the reports."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        path = write_config(tmp_path_factory.mktemp("dwell_pets"), shared)
        config = load_config(path)
        src = config.sources[0]
        stages = {s.name: POST_PROCESSORS.get(s.name)(s, src, config)
                  for s in config.source_post_processors if s.name in ("zones", "dwell")}
        zones, dwell = stages["zones"], stages["dwell"]
        assert isinstance(zones, Zones) and isinstance(dwell, Dwell)
        fs = next(s for s in config.source_loggers if s.name == "file_system_logger")
        logger = SourceFileSystemLogger(fs, src, config)
        clock = IntervalGate(sample_interval(config))  # the pipeline's sample clock
        frames, spent = [], {"zones": 0.0, "dwell": 0.0}
        for original in pets_pipeline_run["frames"]:
            frame = copy_frame(original)
            frame.sample_due = clock.due(frame.timestamp)
            t0 = time.perf_counter()
            zones.process(frame)
            t1 = time.perf_counter()
            dwell.process(frame)
            spent["zones"] += t1 - t0
            spent["dwell"] += time.perf_counter() - t1
            summary_records(frame)
            logger.log(frame)
            frames.append(frame)
        end = finish_stream(src.id, frames[-1].timestamp, [("zones", zones), ("dwell", dwell)],
                            [("fs", logger)])
        logger.close()
        assert all(r.error is None for r in recompute_all(config))
        closing: list[dict[str, Any]] = []
        collect(end.records, {}, closing)
        events: list[dict[str, Any]] = []
        for frame in frames:
            collect(frame.records, {}, events)
        events += closing
        n = len(frames)
        yield Run(path, config, frames, closing, events, 1000 * spent["zones"] / n,
                  1000 * spent["dwell"] / n)


def scene_seconds(events: list[dict[str, Any]]) -> dict[int, float]:
    """Per track: its time in scene, the sum of its ``scene`` dwell sessions."""
    total: dict[int, float] = defaultdict(float)
    for e in events:
        if e["kind"] == "dwell" and e["Zone"] == "scene":
            total[int(e["TrackId"])] += float(e["Seconds"])
    return dict(total)


def main_tracks(frames: list[Frame]) -> dict[int, int]:
    """Per ground-truth id, the track matched to it (IoU >= 0.5, Hungarian per frame) on the
    most frames: the rule of ``dwell_errors``."""
    gt = load_mot(PETS / "gt" / "gt.txt")
    votes: dict[tuple[int, int], int] = defaultdict(int)
    for index, frame in enumerate(frames):
        g = gt.at(index + 1)
        d = frame.detections
        tracked = d.track_ids >= 0
        if not len(g) or not tracked.any():
            continue
        iou = iou_matrix(g.boxes, d.boxes[tracked].astype(np.float64))
        ids = d.track_ids[tracked]
        for i, j in zip(*linear_sum_assignment(-iou), strict=True):
            if iou[i, j] >= 0.5:
                votes[(int(g.ids[i]), int(ids[j]))] += 1
    best: dict[int, tuple[int, int]] = {}
    for (gid, tid), v in votes.items():
        if gid not in best or (v, tid) > best[gid]:
            best[gid] = (v, tid)
    return {gid: tid for gid, (_, tid) in best.items()}


def test_time_in_scene_against_tracks_csv(run: Run) -> None:
    with open(PETS / "tracks.csv") as fh:
        truth = {int(r["id"]): float(r["span_seconds_at_7fps"]) for r in csv.DictReader(fh)}
    mine = scene_seconds(run.events)
    match = main_tracks(run.frames)
    errors = []
    print("\nPETS09-S2L1 time in scene (s): id truth dwell-sessions error")
    for gid, true_s in sorted(truth.items()):
        est = mine.get(match[gid], 0.0) if gid in match else 0.0
        errors.append(abs(est - true_s))
        print(f"  {gid:3d} {true_s:7.2f} {est:7.2f} {est - true_s:+6.2f}")
    median = statistics.median(errors)
    # The same figure from track row spans (lookout evaluate's rule), for comparison.
    rows = np.concatenate([to_mot_rows(i + 1, f.detections) for i, f in enumerate(run.frames)])
    ref = dwell_errors(load_sequence(PETS), rows[rows[:, 1] >= 0])
    ref_median = statistics.median(r["abs_error_s"] for r in ref)
    print(f"PETS09-S2L1 dwell: median |error| {median:.2f} s, mean {statistics.mean(errors):.2f}"
          f" s over {len(truth)} ids (track row spans: median {ref_median:.2f} s)")
    print(f"per-frame cost: zones {run.ms_zones:.3f} ms, dwell {run.ms_dwell:.3f} ms")
    assert len(errors) == 19
    assert median <= 1.5, f"median time-in-scene error {median:.2f} s"


def test_every_session_closed_and_consistent(run: Run) -> None:
    dwell = [e for e in run.events if e["kind"] == "dwell"]
    # Every track sighted has a scene session, and the flush closed the sessions still open
    # at the end of the clip (stamped at their exit: one frame after the last).
    seen = {int(t) for f in run.frames for t, s in zip(f.detections.track_ids,
                                                       f.detections.scores, strict=True)
            if t >= 0 and s > 0}
    assert {int(e["TrackId"]) for e in dwell if e["Zone"] == "scene"} == seen
    assert any(e["kind"] == "dwell" for e in run.closing)
    assert {e["kind"] for e in run.closing} <= {"dwell", "zone_exit"}
    closed_dwell = [e for e in run.closing if e["kind"] == "dwell"]
    assert max(e["timestamp"] for e in closed_dwell) > run.frames[-1].timestamp
    for e in dwell:
        assert e["Seconds"] > 0 and e["Zone"] in ("scene", "left", "right", "east")
    # Live dwell of a person never exceeds the session it ends up in.
    final = scene_seconds(run.events)
    for frame in run.frames:
        live = frame.detections.attributes["dwell_seconds"]
        for tid, value in zip(frame.detections.track_ids, live, strict=True):
            if tid >= 0 and not np.isnan(value):
                assert value <= final[int(tid)] + 1e-3


def test_estimated_occupancy_never_negative(run: Run) -> None:
    balance, previous = 0, {"in": 0, "out": 0}
    for frame in run.frames:
        counts = frame.metrics["line_counts"]["x384"]
        balance = max(0, balance + counts["in"] - previous["in"]
                      - (counts["out"] - previous["out"]))
        previous = counts
        assert frame.metrics["estimated_occupancy"] == balance >= 0


def login(client: TestClient) -> dict[str, str]:
    client.app.state.context.users.add("viewer1", PASSWORD, "viewer")  # type: ignore[attr-defined]
    r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_reports_and_api_match_the_sessions(run: Run) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        with TestClient(create_app(run.config_path)) as client:
            headers = login(client)
            day = {"from_date": "2009-03-01", "to_date": "2009-03-01"}
            dwell = client.get("/metrics/cameras/dwell/daily", params=day, headers=headers)
            presence = client.get("/metrics/cameras/presence/hourly",
                                  params={"date": "2009-03-01"}, headers=headers)
    assert dwell.status_code == 200 and presence.status_code == 200
    scene = [e for e in run.events if e["kind"] == "dwell" and e["Zone"] == "scene"]
    totals = next(e for e in dwell.json()["entities"] if e["id"] == "pets-view1")["totals"]
    assert totals["SumSessions"] == len(scene)
    assert abs(totals["SumDwellMs"] - sum(e["Seconds"] for e in scene) * 1000) <= len(scene)
    assert totals["MaxLongestMs"] == round(max(e["Seconds"] for e in scene) * 1000)
    buckets = [totals[f"SumBucket{i}"] for i in range(1, 6)]
    assert sum(buckets) == len(scene)
    assert buckets[0] == sum(1 for e in scene if e["Seconds"] <= 10)
    entries = [e for e in run.events if e["kind"] == "zone_entry"]
    rows = next(e for e in presence.json()["entities"] if e["id"] == "pets-view1")["rows"]
    assert [r["Hour"] for r in rows] == ["2009-03-01T10:00:00+00:00"]
    assert rows[0]["SumEntries"] == sum(1 for e in entries if e["Zone"] == "east")
    assert rows[0]["SumZoneEntries"] == sum(1 for e in entries if e["Zone"] != "east")
    assert rows[0]["MaxPeople"] <= 8
    print(f"\nPETS presence: {rows[0]}\nPETS dwell: {totals}")
