"""``dwell``: sessions per person and region, gap tolerance, edge jitter, loitering, buckets,
live dwell, sessions closed at the end of a run, and the ``dwell`` reports through the real
logger, reports and API.

Synthetic tracks at 2 frames per second (``FrameRate = 2``: one frame interval is 0.5 s, so a
track seen on frames ``t1..t2`` lasts ``t2 - t1 + 0.5`` s).  A person is a track id and a foot
point; boxes are 20 px wide and 60 px tall above the foot.  Every figure is worked out by hand.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from libs.clock import IntervalGate
from libs.config import load_config
from libs.config.models import SourceConfig
from libs.frame import Detections, Frame
from libs.loggers.file_system_logger import SourceFileSystemLogger, csv_columns
from libs.metrics import recompute_all
from libs.post_processors import POST_PROCESSORS
from libs.post_processors.dwell import DWELL_LOG, Dwell
from libs.records import DwellSample, DwellSession, Loitering
from libs.storage import sample_interval
from processor.pipeline import finish_stream
from processor.summary import summary_records

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
PASSWORD = "password123"
SHOP = "shop: 100,0 300,0 300,200 100,200"

Person = tuple[int, float, float] | tuple[int, float, float, float]  # id, x, y[, score]


def make(zones: str = "", gap: float = 2.0, loiter: float = 60.0,
         buckets: str = "10,30,60,300", frame_rate: float | None = 2.0) -> Dwell:
    cls = POST_PROCESSORS.get("dwell")
    cfg = cls.Config(Name="dwell", GapTolerance=gap, LoiterSeconds=loiter, Buckets=buckets)
    src = SourceConfig(Id="cam", VideoPath="x", Zones=zones, FrameRate=frame_rate)
    stage = cls(cfg, src, None)  # type: ignore[arg-type]
    assert isinstance(stage, Dwell)
    return stage


def frame_at(t: float, people: list[Person], index: int = 0) -> Frame:
    """A frame at ``t``; a sample-clock tick (frames are 0.5 s apart, the default
    TimeInterval: every frame of these tests is the first of its slot)."""
    boxes = [[p[1] - 10, p[2] - 60, p[1] + 10, p[2]] for p in people]
    dets = Detections(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.array([p[3] if len(p) == 4 else 0.9 for p in people], np.float32),
        track_ids=np.array([p[0] for p in people], np.int64),
    )
    return Frame("cam", index, T0 + timedelta(seconds=t), np.zeros((1, 1, 3), np.uint8), dets,
                 sample_due=True)


def times(until: float, start: float = 0.0) -> list[float]:
    """Frame times every 0.5 s from ``start`` to ``until`` inclusive."""
    return [start + 0.5 * i for i in range(round((until - start) / 0.5) + 1)]


def run(stage: Dwell, until: float, who: Any) -> list[Frame]:
    """Frames every 0.5 s from 0 to ``until``; ``who(t)`` lists the people of frame t."""
    return [stage.process(frame_at(t, who(t), i)) for i, t in enumerate(times(until))]


def sessions(frames: list[Frame], kind: str = "dwell") -> list[Any]:
    """The ``dwell`` (DwellSession) or ``loitering`` (Loitering) records of ``frames``."""
    return [r for f in frames for r in f.records if r.kind == kind]


def brief(events: list[Any]) -> list[tuple[str, int, float]]:
    return [(e.zone, e.track_id, e.seconds) for e in events]


def samples(frames: list[Frame]) -> list[DwellSample]:
    return [r for f in frames for r in f.records if isinstance(r, DwellSample)]


def end_frame(stage: Dwell, t: float) -> Frame:
    """The pipeline's end-of-stream frame at ``t``, after the stage finished on it."""
    end = frame_at(t, [], -1)
    stage.finish(end)
    return end


# ---------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------


def test_person_enters_a_zone_and_leaves_the_scene() -> None:
    stage = make(zones=SHOP)

    def who(t: float) -> list[Person]:
        if t > 4.5:
            return []
        return [(1, 50 if t < 1 else 200 if t < 4 else 350, 100)]

    frames = run(stage, 8.0, who)
    events = sessions(frames)
    # The shop visit (sightings 1.0 .. 3.5) closes at 6.0, the first frame more than 2 s
    # after its last sighting; the scene visit (0 .. 4.5) at 7.0.
    closed_at = [f.timestamp - T0 for f in frames for _ in sessions([f])]
    assert closed_at == [timedelta(seconds=6), timedelta(seconds=7)]
    assert brief(events) == [("shop", 1, 3.0), ("scene", 1, 5.0)]
    scene = events[1]
    assert isinstance(scene, DwellSession)
    assert scene.enter == T0
    assert scene.exit == T0 + timedelta(seconds=5)
    assert scene.timestamp == T0 + timedelta(seconds=5)  # stamped at the exit


@pytest.mark.parametrize(
    "back,expected",
    [
        (7.0, [10.5]),        # unseen 5.0 -> 7.0: 2.0 s apart, one visit 0 .. 10.5
        (7.5, [5.5, 3.0]),    # 2.5 s apart: two visits, 0 .. 5.5 and 7.5 .. 10.5
    ],
)
def test_occlusion_gap_shorter_and_longer_than_the_tolerance(
        back: float, expected: list[float]) -> None:
    stage = make()
    frames = run(stage, 10.0, lambda t: [(1, 200, 100)] if t <= 5 or t >= back else [])
    frames.append(end_frame(stage, 10.5))
    assert [e.seconds for e in sessions(frames)] == expected


def test_jitter_at_a_zone_edge_keeps_one_session() -> None:
    stage = make(zones=SHOP)
    # The foot hops across the shop's edge x = 100 every frame: in the shop at 0.5, 1.5, ...
    frames = run(stage, 4.5, lambda t: [(1, 101 if (2 * t) % 2 else 99, 100)])
    frames.append(end_frame(stage, 5.0))
    assert sorted(brief(sessions(frames))) == [("scene", 1, 5.0), ("shop", 1, 4.5)]


def test_coasting_rows_do_not_extend_a_session() -> None:
    stage = make()
    # Seen 0 .. 1.0, then the tracker coasts (score 0) until 3.5: the visit is 1.5 s and
    # closes at 3.5, more than 2 s after the last sighting, coasting row or not.
    frames = run(stage, 4.0, lambda t: [(1, 200, 100, 0.9 if t <= 1 else 0.0)] if t <= 3.5
                 else [])
    events = sessions(frames)
    assert brief(events) == [("scene", 1, 1.5)]
    assert frames[7].timestamp == T0 + timedelta(seconds=3.5) and sessions([frames[7]])


def test_the_zones_attribute_is_used_when_present() -> None:
    stage = make(zones=SHOP)
    frame = frame_at(0, [(1, 500, 500)])  # outside the shop by its foot point...
    frame.detections.attributes["zones"] = np.array([("shop",)], dtype=object)
    stage.process(frame)  # ...but the zones step said it is in
    assert frame.metrics["dwell_live"] == {"scene": {1: 0.5}, "shop": {1: 0.5}}


def test_time_unit_without_frame_rate_is_the_median_step() -> None:
    stage = make(frame_rate=None)
    frames = [stage.process(frame_at(0.25 * i, [(1, 200, 100)])) for i in range(5)]
    frames.append(end_frame(stage, 1.25))
    assert brief(sessions(frames)) == [("scene", 1, 1.25)]  # 0 .. 1.0 + 0.25


# ---------------------------------------------------------------------------------------
# Live dwell, loitering, buckets
# ---------------------------------------------------------------------------------------


def test_live_dwell_attribute_and_metric() -> None:
    stage = make()
    frames = run(stage, 1.5, lambda t: [(1, 200, 100, 0.9 if t <= 1 else 0.0), (-1, 0, 0)])
    live = [f.detections.attributes["dwell_seconds"] for f in frames]
    assert live[0].dtype == np.float32
    assert [float(v[0]) for v in live] == [0.5, 1.0, 1.5, 1.5]  # the coasting row: 1.5
    assert all(math.isnan(v[1]) for v in live)  # untracked
    assert frames[2].metrics["dwell_live"] == {"scene": {1: 1.5}}
    assert frames[3].metrics["dwell_live"] == {}  # nobody sighted


def test_loitering_once_per_session() -> None:
    stage = make(loiter=3.0)
    frames = run(stage, 6.0, lambda t: [(1, 200, 100)])
    events = sessions(frames, "loitering")
    assert len(events) == 1
    assert isinstance(events[0], Loitering)
    assert events[0].timestamp == T0 + timedelta(seconds=2.5)  # 2.5 + 0.5 = 3.0 s
    assert (events[0].zone, events[0].track_id, events[0].seconds) == ("scene", 1, 3.0)
    assert events[0].enter == T0
    rows = samples(frames)
    assert len(rows) == len(frames)  # every frame is a sample-clock tick (0.5 s)
    assert sum(r.loitering for r in rows) == 1


def test_buckets_and_row_sums() -> None:
    stage = make(buckets="1,2")
    lasts = {1: 0.0, 2: 0.5, 3: 1.0, 4: 1.5, 5: 4.5}  # visits of 0.5, 1, 1.5, 2 and 5 s
    frames = run(stage, 8.0, lambda t: [(k, 50 * k, 100) for k, last in lasts.items()
                                        if t <= last])
    assert sorted(e.seconds for e in sessions(frames)) == [0.5, 1.0, 1.5, 2.0, 5.0]
    rows = samples(frames)
    names = {"Sessions": "sessions", "DwellMs": "dwell_ms", "LongestMs": "longest_ms",
             "Loitering": "loitering", **{f"Bucket{i}": f"bucket{i}" for i in range(1, 6)}}
    total = {k: sum(getattr(r, name) for r in rows) for k, name in names.items()}
    # Every frame is a logged row here (0.5 s) and the visits close in different rows (at
    # 2.5, 3.0, 3.5, 4.0 and 7.0 s), so LongestMs sums to the total too; the report's
    # MaxLongestMs is the longest visit.
    assert total == {"Sessions": 5, "DwellMs": 10_000, "LongestMs": 10_000,
                     "Loitering": 0, "Bucket1": 2, "Bucket2": 2, "Bucket3": 1, "Bucket4": 0,
                     "Bucket5": 0}
    assert max(r.longest_ms for r in rows) == 5000


@pytest.mark.parametrize("bad", ["30,10", "1,2,3,4,5", "0,5", "", "x"])
def test_bucket_edges_are_checked(bad: str) -> None:
    with pytest.raises(ValidationError):
        POST_PROCESSORS.get("dwell").Config(Name="dwell", Buckets=bad)


def test_per_zone_columns() -> None:
    stage = make(zones=SHOP)
    frames = run(stage, 6.0, lambda t: [(1, 200, 100)] if t <= 1 else [])
    rows = samples(frames)
    assert csv_columns(rows[0])[0][-4:] == ("Sessions_shop", "DwellMs_shop", "LongestMs_shop",
                                            "Loitering_shop")
    assert sum(r.zones["shop"].dwell_ms for r in rows) == 1500 == sum(r.dwell_ms for r in rows)


# ---------------------------------------------------------------------------------------
# End of the run
# ---------------------------------------------------------------------------------------


def test_finish_closes_open_sessions_on_the_end_frame() -> None:
    stage = make(zones=SHOP)
    run(stage, 3.0, lambda t: [(1, 200, 100), (2, 50, 100)] if t >= 1 else [(1, 200, 100)])
    end = end_frame(stage, 3.5)
    assert brief(sessions([end])) == [("scene", 1, 3.5), ("shop", 1, 3.5), ("scene", 2, 2.5)]
    (last,) = samples([end])
    assert (last.sessions, last.dwell_ms) == (2, 6000)
    again = finish_stream("pets-view1", end.timestamp, [("dwell", stage)], [])
    assert again.records == []  # finished already: nothing more


def test_finish_without_flush_puts_the_last_sessions_on_the_end_frame() -> None:
    stage = make()
    frames = run(stage, 1.0, lambda t: [(1, 200, 100)])
    end = finish_stream("pets-view1", frames[-1].timestamp, [("dwell", stage)], [])
    assert end.timestamp == frames[-1].timestamp + timedelta(milliseconds=1)
    assert brief(sessions([end])) == [("scene", 1, 1.5)]
    assert [r.sessions for r in samples([end])] == [1]


# ---------------------------------------------------------------------------------------
# Logger, reports and API
# ---------------------------------------------------------------------------------------

SECTIONS = """
[SourcePostProcessor_4]
Name = dwell
Enabled = True
GapTolerance = 2
LoiterSeconds = 12
Buckets = 10,30,60,300

"""


def write_config(x86_config: Path) -> Path:
    text = x86_config.read_text()
    for old, new in (
        ("FrameRate = 7", "FrameRate = 2"),
        ("TimeInterval = 0.5", "TimeInterval = 1"),
        ("ScreenshotPeriod = 1", "ScreenshotPeriod = 0"),
        ("[SourceLogger_0]", SECTIONS + "[SourceLogger_0]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    x86_config.write_text(text)
    return x86_config


def seen(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in spans)


# Frames every 0.5 s, 10:00:00 - 10:00:29.5 and 11:00:00 - 11:00:09.5 (t from the hour).
# 10:00  track 1 seen 0 - 4.5: 5.0 s, closes at 7.0 (row 7)
#        track 2 seen 2 - 7.5 and 9.5 - 14.5 (gap 2.0 s: bridged): 13.0 s, loiters (12 s)
#          at 13.5 (row 14), closes at 17.0 (row 17)
#        track 3 seen 5 - 9.5 and 12.5 - 15 (gap 3.0 s): 5.0 s closed at 12.0 (row 12) and
#          3.0 s closed at 17.5 (row 18)
# 11:00  track 4 seen 0 - 9.5, still there at the end: 10.0 s, closed by close()
#        track 5 seen 0 - 2: 2.5 s, closes at 4.5 (row 4)
SCHEDULE = {
    10: (29.5, {1: [(0, 4.5)], 2: [(2, 7.5), (9.5, 14.5)], 3: [(5, 9.5), (12.5, 15)]}),
    11: (9.5, {4: [(0, 9.5)], 5: [(0, 2)]}),
}


@pytest.fixture
def dwell_api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    path = write_config(x86_config)
    config = load_config(path)
    src = config.sources[0]
    section = next(s for s in config.source_post_processors if s.name == "dwell")
    stage = POST_PROCESSORS.get("dwell")(section, src, config)
    fs = next(s for s in config.source_loggers if s.name == "file_system_logger")
    logger = SourceFileSystemLogger(fs, src, config)
    clock = IntervalGate(sample_interval(config))  # as the pipeline runs it
    index = 0
    for hour, (until, tracks) in SCHEDULE.items():
        for t in times(until):
            people: list[Person] = [(k, 100 * k, 300) for k, spans in tracks.items()
                                    if seen(t, spans)]
            frame = frame_at(0, people, index)
            frame.timestamp = T0.replace(hour=hour) + timedelta(seconds=t)
            frame.sample_due = clock.due(frame.timestamp)
            frame = stage.process(frame)
            summary_records(frame)
            logger.log(frame)
            index += 1
    finish_stream("pets-view1", frame.timestamp, [("dwell", stage)], [("fs", logger)])
    logger.close()
    assert all(r.error is None for r in recompute_all(config))
    out: dict[str, Any] = {}
    with TestClient(create_app(path)) as client:
        client.app.state.context.users.add("viewer1", PASSWORD, "viewer")  # type: ignore[attr-defined]
        r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        span = {"from_date": "2026-01-05", "to_date": "2026-01-05"}
        for period, params in (("hourly", {"date": "2026-01-05"}), ("daily", span),
                               ("weekly", span), ("live", {})):
            got = client.get(f"/metrics/cameras/dwell/{period}", params=params,
                             headers=headers)
            assert got.status_code == 200, got.text
            out[period] = next(e for e in got.json()["entities"] if e["id"] == "pets-view1")
    root = config.data_path("processor/static/data/sources") / "pets-view1"
    out["raw"] = (root / DWELL_LOG / "2026-01-05.csv").read_text().splitlines()
    out["events"] = (root / "events" / "dwell" / "2026-01-05.csv").read_text().splitlines()
    out["loitering"] = (root / "events" / "loitering" / "2026-01-05.csv").read_text()
    return out


def test_dwell_raw_log_and_events(dwell_api: dict[str, Any]) -> None:
    raw = dwell_api["raw"]
    assert raw[0] == ("Timestamp,Sessions,DwellMs,LongestMs,Loitering,Bucket1,Bucket2,"
                      "Bucket3,Bucket4,Bucket5")
    assert len(raw) == 1 + 30 + 10 + 1  # a row a second, and the end-of-stream row
    assert raw[1 + 7] == "2026-01-05T10:00:07.000+00:00,1,5000,5000,0,1,0,0,0,0"
    assert raw[1 + 14] == "2026-01-05T10:00:14.000+00:00,0,0,0,1,0,0,0,0,0"
    # the end-of-stream row, 1 ms after the last frame (11:00:09.5)
    assert raw[-1] == "2026-01-05T11:00:09.501+00:00,1,10000,10000,0,1,0,0,0,0"
    day = "2026-01-05T1"
    assert dwell_api["events"] == [
        "Timestamp,Zone,TrackId,Enter,Exit,Seconds",
        f"{day}0:00:05.000+00:00,scene,1,{day}0:00:00.000+00:00,{day}0:00:05.000+00:00,5.0",
        f"{day}0:00:10.000+00:00,scene,3,{day}0:00:05.000+00:00,{day}0:00:10.000+00:00,5.0",
        f"{day}0:00:15.000+00:00,scene,2,{day}0:00:02.000+00:00,{day}0:00:15.000+00:00,13.0",
        f"{day}0:00:15.500+00:00,scene,3,{day}0:00:12.500+00:00,{day}0:00:15.500+00:00,3.0",
        f"{day}1:00:02.500+00:00,scene,5,{day}1:00:00.000+00:00,{day}1:00:02.500+00:00,2.5",
        f"{day}1:00:10.000+00:00,scene,4,{day}1:00:00.000+00:00,{day}1:00:10.000+00:00,10.0",
    ]
    assert dwell_api["loitering"].splitlines() == [
        "Timestamp,Zone,TrackId,Enter,Seconds",
        f"{day}0:00:13.500+00:00,scene,2,{day}0:00:02.000+00:00,12.0",
    ]


def test_dwell_reports_over_the_api(dwell_api: dict[str, Any]) -> None:
    rows = dwell_api["hourly"]["rows"]
    assert [r["Hour"] for r in rows] == ["2026-01-05T10:00:00+00:00", "2026-01-05T11:00:00+00:00"]
    ten, eleven = rows
    assert (ten["Samples"], ten["SumSessions"], ten["SumDwellMs"], ten["MaxLongestMs"],
            ten["SumLoitering"]) == (30, 4, 26_000, 13_000, 1)
    assert [ten[f"SumBucket{i}"] for i in range(1, 6)] == [3, 1, 0, 0, 0]
    assert (eleven["Samples"], eleven["SumSessions"], eleven["SumDwellMs"],
            eleven["MaxLongestMs"], eleven["SumLoitering"]) == (11, 2, 12_500, 10_000, 0)
    assert [eleven[f"SumBucket{i}"] for i in range(1, 6)] == [2, 0, 0, 0, 0]
    for period in ("daily", "weekly"):
        totals = dwell_api[period]["totals"]
        assert (totals["Samples"], totals["SumSessions"], totals["SumDwellMs"],
                totals["MaxLongestMs"], totals["SumLoitering"]) == (41, 6, 38_500, 13_000, 1)
        assert [totals[f"SumBucket{i}"] for i in range(1, 6)] == [5, 1, 0, 0, 0]
        # The average visit of the period, exactly: 38.5 s / 6.
        assert totals["SumDwellMs"] / totals["SumSessions"] / 1000 == pytest.approx(38.5 / 6)
    assert dwell_api["daily"]["rows"][0]["Date"] == "2026-01-05"
    assert dwell_api["weekly"]["rows"][0]["Week"] == "2026-01-05"  # a Monday
    live = dwell_api["live"]["rows"]
    assert len(live) == 1 and live[0]["To"] == "2026-01-05T11:00:09.501+00:00"
    assert (live[0]["Samples"], live[0]["SumSessions"], live[0]["SumDwellMs"]) == (11, 2, 12_500)
