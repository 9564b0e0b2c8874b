"""``zones``: the per-person ``zones`` attribute, people per region, entries (with jitter at
an edge and occlusion gaps), the line-based occupancy estimate, raw rows in step with the
logger, and the ``presence`` reports through the real logger, reports and API.

Synthetic tracks: a person is a track id and a foot point; boxes are 20 px wide and 60 px
tall above the foot.  Every figure below is worked out by hand from the schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from libs.clock import IntervalGate
from libs.config import ConfigError, load_config, parse_config_text
from libs.config.models import PluginConfig, SourceConfig
from libs.frame import Detections, Frame
from libs.loggers.file_system_logger import SourceFileSystemLogger
from libs.metrics import recompute_all
from libs.post_processors import POST_PROCESSORS
from libs.post_processors.zones import PRESENCE_LOG, Zones
from libs.records import PresenceSample, ZoneEntry, ZoneExit
from libs.storage import sample_interval
from processor.pipeline import finish_stream
from processor.summary import summary_records

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
PASSWORD = "password123"
# "shop" is a region of interest, "door" an entrance strip on its left; x = 100 is both
# the door's right edge and the shop's left edge.
ZONES = "shop: 100,0 300,0 300,200 100,200"
ENTRY = "door: 0,0 100,0 100,200 0,200"

Person = tuple[int, float, float] | tuple[int, float, float, float]  # id, x, y[, score]


def make(zones: str = ZONES, entry: str = ENTRY, gap: float = 2.0, app: Any = None) -> Zones:
    cls = POST_PROCESSORS.get("zones")
    cfg = cls.Config(Name="zones", GapTolerance=gap)
    src = SourceConfig(Id="cam", VideoPath="x", Zones=zones, EntryZones=entry)
    stage = cls(cfg, src, app)
    assert isinstance(stage, Zones)
    return stage


def frame_at(t: float, people: list[Person], metrics: dict[str, Any] | None = None,
             index: int = 0) -> Frame:
    boxes = [[p[1] - 10, p[2] - 60, p[1] + 10, p[2]] for p in people]
    dets = Detections(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.array([p[3] if len(p) == 4 else 0.9 for p in people], np.float32),
        track_ids=np.array([p[0] for p in people], np.int64),
    )
    return Frame("cam", index, T0 + timedelta(seconds=t), np.zeros((1, 1, 3), np.uint8), dets,
                 dict(metrics or {}))


def entries(frame: Frame) -> list[tuple[str, int]]:
    return [(r.zone, r.track_id) for r in frame.records if isinstance(r, ZoneEntry)]


def exits(frame: Frame) -> list[ZoneExit]:
    return [r for r in frame.records if isinstance(r, ZoneExit)]


def sample(frame: Frame) -> PresenceSample | None:
    found = [r for r in frame.records if isinstance(r, PresenceSample)]
    assert len(found) <= 1
    return found[0] if found else None


def run(stage: Zones, schedule: list[tuple[float, list[Person]]]) -> list[Frame]:
    return [stage.process(frame_at(t, people, index=i)) for i, (t, people) in
            enumerate(schedule)]


# ---------------------------------------------------------------------------------------
# Membership
# ---------------------------------------------------------------------------------------


def test_zones_attribute_per_person() -> None:
    stage = make(zones="a: 0,0 100,0 100,100 0,100; b: 50,0 150,0 150,100 50,100",
                 entry="door: 140,0 200,0 200,100 140,100")
    frame = stage.process(frame_at(0, [(1, 75, 50), (2, 10, 50), (3, 500, 500),
                                       (4, 100, 50), (5, 145, 50), (-1, 20, 20)]))
    zones = frame.detections.attributes["zones"]
    assert zones.dtype == object and len(zones) == 6
    assert list(zones) == [("a", "b"), ("a",), (), ("a", "b"), ("b", "door"), ("a",)]
    counts = frame.metrics["zone_counts"]
    # The untracked row (-1) has its attribute but is nobody's count.
    assert counts == {"a": {"people": 3, "entries": 3}, "b": {"people": 3, "entries": 3},
                      "door": {"people": 1, "entries": 1}}
    empty = stage.process(frame_at(0.5, []))
    assert len(empty.detections.attributes["zones"]) == 0


def test_a_name_in_zones_and_entry_zones_is_one_entrance_region() -> None:
    stage = make(zones="hall: 0,0 10,0 10,10", entry="hall: 0,0 10,0 10,10")
    assert [(r.name, r.roi, r.entrance) for r in stage.regions] == [("hall", True, True)]
    with pytest.raises(ValueError, match="different points"):
        make(zones="hall: 0,0 10,0 10,10", entry="hall: 0,0 20,0 20,20")


# ---------------------------------------------------------------------------------------
# Entries
# ---------------------------------------------------------------------------------------


def test_person_walks_in_through_the_door_and_out() -> None:
    stage = make()
    # Outside (x < 0), through the door, across the shop, out on its right.
    xs = [-50, 50, 150, 250, 350, 350]
    frames = run(stage, [(0.5 * i, [(7, x, 100)]) for i, x in enumerate(xs)])
    assert [entries(f) for f in frames] == [[], [("door", 7)], [("shop", 7)], [], [], []]
    assert [f.metrics["zone_counts"]["shop"]["people"] for f in frames] == [0, 0, 1, 1, 0, 0]
    assert frames[-1].metrics["zone_counts"] == {"shop": {"people": 0, "entries": 1},
                                                 "door": {"people": 0, "entries": 1}}


def test_jitter_at_the_edge_enters_once() -> None:
    stage = make()
    # The foot point hops across x = 100 (door | shop) every frame for 5 s.
    frames = run(stage, [(0.2 * i, [(1, 99 if i % 2 else 101, 100)]) for i in range(25)])
    assert sum(len(entries(f)) for f in frames) == 2  # once into each region
    assert entries(frames[0]) == [("shop", 1)] and entries(frames[1]) == [("door", 1)]


@pytest.mark.parametrize("gap,new_entry", [(1.5, False), (2.0, False), (2.5, True)])
def test_occlusion_gap_against_the_tolerance(gap: float, new_entry: bool) -> None:
    stage = make(gap=2.0)
    run(stage, [(0.0, [(3, 200, 100)]), (0.5, [(3, 200, 100)])])
    # Hidden (no row at all) for a while, then seen again in the shop.
    back = stage.process(frame_at(0.5 + gap, [(3, 205, 100)]))
    assert entries(back) == ([("shop", 3)] if new_entry else [])


def test_leaving_and_coming_back_later_is_a_new_entry() -> None:
    stage = make()
    frames = run(stage, [(0, [(1, 200, 100)]), (1, [(1, 350, 100)]), (2, [(1, 350, 100)]),
                         (3, [(1, 350, 100)]), (4, [(1, 200, 100)])])
    assert [len(entries(f)) for f in frames] == [1, 0, 0, 0, 1]  # out 3 s > 2 s
    # The first visit ends once it is more than 2 s old: stamped at its last sighting plus
    # one frame interval (1 s here).
    assert [len(exits(f)) for f in frames] == [0, 0, 0, 1, 0]
    (left,) = exits(frames[3])
    assert (left.zone, left.track_id, left.enter, left.timestamp, left.seconds) == (
        "shop", 1, T0, T0 + timedelta(seconds=1), 1.0)
    end = Frame("cam", -1, T0 + timedelta(seconds=4.001), np.zeros((1, 1, 3), np.uint8),
                sample_due=True)
    stage.finish(end)  # the visit still open ends with the stream; its entry is sampled
    assert [(r.zone, r.seconds) for r in exits(end)] == [("shop", 1.0)]
    last = sample(end)
    assert last is not None and last.zones["shop"].entries == 2  # no sample ran before


def test_coasting_rows_count_as_present_but_never_enter() -> None:
    stage = make()
    # A coasting row (score 0) drifts into the shop: present, but no entry until a sighting.
    a = stage.process(frame_at(0, [(1, 150, 100, 0.0)]))
    assert a.metrics["zone_counts"]["shop"]["people"] == 1 and entries(a) == []
    b = stage.process(frame_at(0.5, [(1, 150, 100, 0.8)]))
    assert entries(b) == [("shop", 1)]


# ---------------------------------------------------------------------------------------
# Occupancy estimated from the counting lines
# ---------------------------------------------------------------------------------------


def test_estimated_occupancy_clamps_the_running_balance_at_zero() -> None:
    stage = make()
    # Cumulative counts as line_crossing gives them: two people already inside walk out
    # first, then three come in and one leaves; a second line adds one in.
    steps = [
        ({"door": {"in": 0, "out": 1}}, 0),
        ({"door": {"in": 0, "out": 2}}, 0),   # in - out = -2, the estimate stays 0
        ({"door": {"in": 2, "out": 2}}, 2),   # the naive max(0, in - out) would say 0
        ({"door": {"in": 3, "out": 3}}, 2),   # one in and one out in the same frame
        ({"door": {"in": 3, "out": 4}, "back": {"in": 1, "out": 0}}, 2),
        ({"door": {"in": 3, "out": 7}, "back": {"in": 1, "out": 0}}, 0),
    ]
    for i, (counts, expected) in enumerate(steps):
        frame = frame_at(i, [], {"line_counts": counts})
        frame.sample_due = True
        frame = stage.process(frame)
        assert frame.metrics["estimated_occupancy"] == expected
        got = sample(frame)
        assert got is not None and got.estimated_occupancy == expected
    assert frame.metrics["line_occupancy"] == {"door": 0, "back": 1}


def test_no_line_counts_no_estimate() -> None:
    frame = frame_at(0, [(1, 200, 100)])
    frame.sample_due = True
    frame = make().process(frame)
    assert "estimated_occupancy" not in frame.metrics
    got = sample(frame)
    assert got is not None and got.estimated_occupancy == 0


# ---------------------------------------------------------------------------------------
# Raw rows in step with the logger
# ---------------------------------------------------------------------------------------


def test_entries_count_from_one_sample_to_the_next() -> None:
    stage = make()
    clock = IntervalGate(0.5)  # the pipeline's sample clock at the default TimeInterval
    # Frames every 0.2 s; new people enter the shop at frames 1, 2 and 4.
    people: list[Person] = []
    samples = []
    for i in range(6):
        if i in (1, 2, 4):
            people.append((i, 200, 100))
        frame = frame_at(0.2 * i, list(people))
        frame.sample_due = clock.due(frame.timestamp)
        samples.append(sample(stage.process(frame)))
    # Samples on the first frame of each 0.5 s slot only: t = 0, 0.6, 1.0.
    assert [s is not None for s in samples] == [True, False, False, True, False, True]
    taken = [s for s in samples if s is not None]
    assert [s.zones["shop"].entries for s in taken] == [0, 2, 1]
    assert [s.zone_entries for s in taken] == [0, 2, 1]
    assert [s.people for s in taken] == [0, 2, 3]
    assert list(taken[0].zones) == ["shop", "door"]


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

MINIMAL = """
[Source_0]
Id = cam
VideoPath = x.avi
{extra}
[SourcePostProcessor_0]
Name = {first}
[SourcePostProcessor_1]
Name = {second}
"""


def test_cross_checks() -> None:
    ok = MINIMAL.format(extra=f"Zones = {ZONES}", first="line_crossing", second="zones")
    with pytest.raises(ConfigError, match="no camera has CountingLines"):
        parse_config_text(ok, "x.ini", check_files=False)  # line_crossing's own check
    lines = "CountingLines = x: 0,0 10,10\nZones = " + ZONES
    cfg = parse_config_text(MINIMAL.format(extra=lines, first="line_crossing", second="zones"),
                            "x.ini", check_files=False)
    assert [p.name for p in cfg.source_post_processors] == ["line_crossing", "zones"]
    with pytest.raises(ConfigError, match="after line_crossing"):
        parse_config_text(MINIMAL.format(extra=lines, first="zones", second="line_crossing"),
                          "x.ini", check_files=False)
    with pytest.raises(ConfigError, match="no camera has Zones"):
        parse_config_text(MINIMAL.format(extra="", first="zones", second="occupancy"),
                          "x.ini", check_files=False)
    clash = "Zones = hall: 0,0 10,0 10,10\nEntryZones = hall: 0,0 9,0 9,9"
    with pytest.raises(ConfigError, match="different points"):
        parse_config_text(MINIMAL.format(extra=clash, first="occupancy", second="zones"),
                          "x.ini", check_files=False)


def test_config_given_as_plain_plugin_section() -> None:
    src = SourceConfig(Id="cam", VideoPath="x", Zones=ZONES)
    stage = Zones(PluginConfig(Name="zones"), src, None)  # type: ignore[arg-type]
    assert stage.gap == 2.0 and stage.names == ["shop"]


# ---------------------------------------------------------------------------------------
# Logger, reports and API
# ---------------------------------------------------------------------------------------

SECTIONS = """
[SourcePostProcessor_4]
Name = zones
Enabled = True
GapTolerance = 2

"""


def write_config(x86_config: Path) -> Path:
    text = x86_config.read_text()
    for old, new in (
        ("FrameRate = 7", "FrameRate = 2"),
        ("TimeInterval = 0.5", "TimeInterval = 1"),
        ("ScreenshotPeriod = 1", "ScreenshotPeriod = 0"),
        ("CountingLines = x384: 384,0 384,576",
         f"CountingLines = x384: 384,0 384,576\nZones = {ZONES}\nEntryZones = {ENTRY}"),
        ("[SourceLogger_0]", SECTIONS + "[SourceLogger_0]"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    x86_config.write_text(text)
    return x86_config


# Frames every 0.5 s from 10:00:00 (t = 0) to 10:00:09.5, then 11:00:00 to 11:00:04.5.
# 10:00 - track 1 comes in through the door (t 0-1.5) into the shop (t 2-5.5), then leaves;
#         track 2 appears in the shop (t 1-3.5);
#         track 3 hops across the door's edge (t 6-9.5, door on even frames): one entry.
# 11:00 - track 4 in the door (t 0-1) and the shop (t 1.5-4.5).
# Line counts: a phantom out at 10:00:00, two ins at 10:00:03, an out at 11:00:02.
def presence_schedule() -> list[tuple[datetime, list[Person], dict[str, Any]]]:
    out = []
    for hour, n in ((10, 20), (11, 10)):
        for i in range(n):
            t = 0.5 * i
            people: list[Person] = []
            if hour == 10:
                if t < 2:
                    people.append((1, 50, 100))
                elif t < 6:
                    people.append((1, 200, 100))
                if 1 <= t < 4:
                    people.append((2, 250, 150))
                if t >= 6:
                    people.append((3, 99 if i % 2 == 0 else 101, 50))
                ins, outs = (2 if t >= 3 else 0), 1
            else:
                people.append((4, 50 if t <= 1 else 200, 100))
                ins, outs = 2, (2 if t >= 2 else 1)
            ts = T0.replace(hour=hour) + timedelta(seconds=t)
            out.append((ts, people, {"line_counts": {"x384": {"in": ins, "out": outs}}}))
    return out


@pytest.fixture
def presence_api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    path = write_config(x86_config)
    config = load_config(path)
    src = config.sources[0]
    section = next(s for s in config.source_post_processors if s.name == "zones")
    stage = POST_PROCESSORS.get("zones")(section, src, config)
    fs = next(s for s in config.source_loggers if s.name == "file_system_logger")
    logger = SourceFileSystemLogger(fs, src, config)
    clock = IntervalGate(sample_interval(config))  # as the pipeline runs it
    for i, (ts, people, metrics) in enumerate(presence_schedule()):
        frame = frame_at(0, people, metrics, index=i)
        frame.timestamp = ts
        frame.sample_due = clock.due(ts)
        frame = stage.process(frame)
        summary_records(frame)
        logger.log(frame)
    finish_stream("pets-view1", frame.timestamp, [("zones", stage)], [("fs", logger)])
    logger.close()
    assert all(r.error is None for r in recompute_all(config))
    with TestClient(create_app(path)) as client:
        client.app.state.context.users.add("viewer1", PASSWORD, "viewer")  # type: ignore[attr-defined]
        r = client.post("/auth/token", data={"username": "viewer1", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        hourly = client.get("/metrics/cameras/presence/hourly", params={"date": "2026-01-05"},
                            headers=headers)
        daily = client.get("/metrics/cameras/presence/daily",
                           params={"from_date": "2026-01-05", "to_date": "2026-01-05"},
                           headers=headers)
        kinds = client.get("/metrics/kinds", headers=headers)
    assert hourly.status_code == daily.status_code == kinds.status_code == 200
    raw = (config.data_path("processor/static/data/sources") / "pets-view1" / PRESENCE_LOG
           / "2026-01-05.csv").read_text().splitlines()
    events = (config.data_path("processor/static/data/sources") / "pets-view1" / "events"
              / "zone_entry" / "2026-01-05.csv").read_text().splitlines()
    return {"hourly": hourly.json(), "daily": daily.json(), "kinds": kinds.json(),
            "raw": raw, "events": events}


def test_presence_raw_log_and_events(presence_api: dict[str, Any]) -> None:
    raw = presence_api["raw"]
    assert raw[0] == ("Timestamp,People,Entries,ZoneEntries,EstimatedOccupancy,People_shop,"
                      "Entries_shop,People_door,Entries_door")
    assert len(raw) == 1 + 10 + 5  # one row per second; no entry left for a final row
    assert raw[1] == "2026-01-05T10:00:00.000+00:00,0,1,0,0,0,0,1,1"
    assert presence_api["events"] == [
        "Timestamp,Zone,TrackId",
        "2026-01-05T10:00:00.000+00:00,door,1",
        "2026-01-05T10:00:01.000+00:00,shop,2",
        "2026-01-05T10:00:02.000+00:00,shop,1",
        "2026-01-05T10:00:06.000+00:00,door,3",
        "2026-01-05T10:00:06.500+00:00,shop,3",
        "2026-01-05T11:00:00.000+00:00,door,4",
        "2026-01-05T11:00:01.500+00:00,shop,4",
    ]


def test_presence_reports_over_the_api(presence_api: dict[str, Any]) -> None:
    rows = presence_api["hourly"]["entities"][0]["rows"]
    assert [r["Hour"] for r in rows] == ["2026-01-05T10:00:00+00:00", "2026-01-05T11:00:00+00:00"]
    # 10:00 rows at t = 0..9 s (the first frame of each second): people in the shop
    # 0, 1, 2, 2, 1, 1, then 0: track 3 stands in the door (x = 99) on the logged frames.
    ten = rows[0]
    assert ten["Samples"] == 10
    assert ten["SumPeople"] == 0 + 1 + 2 + 2 + 1 + 1 + 0 + 0 + 0 + 0
    assert ten["MaxPeople"] == 2
    assert ten["SumEntries"] == 2  # tracks 1 and 3 through the door
    assert ten["SumZoneEntries"] == 3  # tracks 2, 1, 3 into the shop
    assert ten["MaxEstimatedOccupancy"] == 2 and ten["SumEstimatedOccupancy"] == 7 * 2
    eleven = rows[1]
    # 11:00 rows at t = 0..4 s: track 4 in the door at t 0 and 1, in the shop at t 2, 3, 4.
    assert (eleven["Samples"], eleven["SumPeople"], eleven["SumEntries"],
            eleven["SumZoneEntries"]) == (5, 3, 1, 1)
    # Balance 2 from 10:00:03 on; the out at 11:00:02 leaves 1.
    assert eleven["SumEstimatedOccupancy"] == 2 + 2 + 1 + 1 + 1
    totals = presence_api["daily"]["entities"][0]["totals"]
    assert (totals["SumEntries"], totals["SumZoneEntries"], totals["Samples"]) == (3, 4, 15)
    kinds = {(k["kind"], k["entity_type"]) for k in presence_api["kinds"]}
    assert ("presence", "camera") in kinds and ("dwell", "camera") in kinds
