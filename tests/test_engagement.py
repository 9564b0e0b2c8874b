"""``engagement``: direction vectors towards point and segment targets, engaged time per track,
the raw-log counts, the real-time window and the flush at close, on synthetic tracks."""

from __future__ import annotations

import csv
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from libs.config import ConfigError
from libs.post_processors.engagement import (
    ENGAGEMENT_LOG_FOLDER,
    Engagement,
    EngagementConfig,
    bottom_edge,
    motion_directions,
    parse_camera_targets,
    parse_target,
    target_angles,
    yaw_directions,
)
from libs.records import EngagementPerson, EngagementUpdate
from processor.pipeline import finish_stream
from tests.audience_helpers import (
    START,
    config_in,
    file_logger,
    run_scene,
    standing,
    walking,
)

LOG = ENGAGEMENT_LOG_FOLDER


def stage(tmp_path: Path, shared: Path, **settings: object) -> Engagement:
    config = config_in(tmp_path, shared)
    section = EngagementConfig.model_validate({"Name": "engagement", **settings})
    return Engagement(section, config.sources[0], config)


# ---------------------------------------------------------------------------------------
# Geometry, by hand
# ---------------------------------------------------------------------------------------


def test_angles_to_a_point_target() -> None:
    p = np.array([[100.0, 100.0]] * 6)
    d = np.array([[1, 0], [0, 1], [1, 1], [-1, 0], [3, -3], [np.nan, np.nan]], float)
    got = target_angles(p, d, parse_target("200,100"))
    assert got[:5] == pytest.approx([0.0, 90.0, 45.0, 180.0, 45.0])
    assert math.isnan(got[5])
    # a zero vector is no direction; a person standing on the point faces it whatever they do
    assert math.isnan(target_angles(p[:1], np.zeros((1, 2)), parse_target("200,100"))[0])
    assert target_angles(p[:1], np.array([[0.0, -1.0]]), parse_target("100,100"))[0] == 0.0


def test_angles_to_a_segment_target() -> None:
    seg = parse_target("0,200 200,200")  # a horizontal segment below the person
    p = np.array([[100.0, 100.0]] * 5)
    d = np.array([[0, 1], [1, 1], [1, 0], [0, -1], [-2, 1]], float)
    got = target_angles(p, d, seg)
    # the nearest point is (100, 200), straight below: 0, 45, 90, 180 degrees, and (-2, 1)
    # is atan2(2, 1) off the vertical
    assert got[:4] == pytest.approx([0.0, 45.0, 90.0, 180.0])
    assert got[4] == pytest.approx(math.degrees(math.atan2(2, 1)))  # 63.43
    # on the segment's line beyond its end: the nearest point is the end (200, 200)
    q = np.array([[300.0, 200.0]] * 2)
    assert target_angles(q, np.array([[-1.0, 0.0], [0.0, 1.0]]), seg) == pytest.approx([0, 90])
    # beyond the end and below it: the vector to the end is (-100, -100)
    r = np.array([[300.0, 300.0]])
    assert target_angles(r, np.array([[-1.0, 0.0]]), seg)[0] == pytest.approx(45.0)
    # on the segment itself
    assert target_angles(np.array([[50.0, 200.0]]), np.array([[0.0, -1.0]]), seg)[0] == 0.0
    # the order of the two ends does not matter
    back = target_angles(p, d, parse_target("200,200 0,200"))
    assert back == pytest.approx(got)


def test_target_parsing_and_default() -> None:
    assert parse_target("10,20").tolist() == [[10.0, 20.0]]
    assert parse_target(" 1,2   3,4 ").tolist() == [[1, 2], [3, 4]]
    assert parse_target("5,5 5,5").shape == (1, 2)  # a zero-length segment is its point
    for bad in ("", "1,2,3", "1,2 3,4 5,6", "a,b", "nan,1"):
        with pytest.raises(ValueError):
            parse_target(bad)
    targets = parse_camera_targets("cam1: 1,2; cam2: 0,0 10,0")
    assert targets["cam1"].shape == (1, 2) and targets["cam2"].shape == (2, 2)
    with pytest.raises(ValueError):
        parse_camera_targets("cam1 1,2")
    assert bottom_edge(640, 480).tolist() == [[0, 479], [639, 479]]
    with pytest.raises(ValidationError):
        EngagementConfig.model_validate({"Name": "engagement", "Target": "1,2,3"})
    with pytest.raises(ValidationError):
        EngagementConfig.model_validate({"Name": "engagement", "AngleTolerance": 0})


def test_yaw_and_motion_directions() -> None:
    got = yaw_directions(np.array([0.0, 90.0, -90.0, 30.0, np.nan]))
    assert got[:4] == pytest.approx(
        np.array([[0, 1], [1, 0], [-1, 0], [0.5, math.sqrt(3) / 2]]), abs=1e-12
    )
    assert np.isnan(got[4]).all()
    v = np.array([[30.0, 40.0], [3.0, 4.0], [np.nan, np.nan]])
    m = motion_directions(v, np.array([100.0, 100.0, 100.0]), min_speed=0.2)
    assert m[0] == pytest.approx([0.6, 0.8])  # 50 px/s = 0.5 heights/s: fast enough
    assert np.isnan(m[1:]).all()  # 5 px/s is standing; unknown speed is no direction


def test_camera_targets_must_name_cameras(tmp_path: Path, shared: Path) -> None:
    extra = "\n[SourcePostProcessor_9]\nName = engagement\nCameraTargets = nope: 1,2\n"
    with pytest.raises(ConfigError, match="nope"):
        config_in(tmp_path, shared, extra)
    extra = "\n[SourcePostProcessor_9]\nName = engagement\nCameraTargets = pets-view1: 1,2\n"
    config = config_in(tmp_path, shared, extra)
    section = next(p for p in config.source_post_processors if p.name == "engagement")
    target = Engagement(section, config.sources[0], config).target
    assert target is not None and target.tolist() == [[1.0, 2.0]]


# ---------------------------------------------------------------------------------------
# Head yaw first, motion otherwise
# ---------------------------------------------------------------------------------------


def test_motion_direction_engages_a_walker_heading_for_the_target(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared, Target="600,400", AngleTolerance=10)
    walker = walking(1, range(0, 21))  # right along y = 400, 1 box height per second
    run = run_scene(eng, [walker], range(0, 21))
    first, second, last = (run.frames[k].detections.attributes for k in (0, 1, 20))
    assert np.isnan(first["direction"]).all() and not first["engaged"][0]  # no motion yet
    assert second["direction"][0] == pytest.approx([1.0, 0.0])
    assert second["engaged"][0] and last["engaged"][0]
    assert first["direction"].dtype == np.float32 and first["engaged"].dtype == bool
    # engaged from frame 1 on: intervals 1->2 ... 19->20 = 1.9 s of the 2.0 s observed
    (event,) = run.events
    assert (event["ObservedSeconds"], event["EngagedSeconds"]) == ("2.000", "1.900")


def test_head_yaw_overrides_the_motion(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared, Target="600,400", AngleTolerance=10)
    walker = walking(1, range(0, 11))
    # facing the camera (down the image) for frames 0-4, then head turned to their left
    # (the image's right, towards the target) from frame 5
    walker.attributes["head_yaw"] = {k: (0.0 if k < 5 else 90.0) for k in range(11)}
    run = run_scene(eng, [walker], range(0, 11))
    attrs = [f.detections.attributes for f in run.frames]
    assert attrs[3]["direction"][0] == pytest.approx([0.0, 1.0], abs=1e-7)
    assert not attrs[3]["engaged"][0]  # 90 degrees off, though they walk towards it
    assert attrs[5]["direction"][0] == pytest.approx([1.0, 0.0], abs=1e-7)
    assert attrs[5]["engaged"][0]
    assert run.events[0]["EngagedSeconds"] == "0.500"  # frames 5 -> 10
    # unknown yaw (NaN) falls back to the motion
    walker.attributes["head_yaw"] = {k: np.nan for k in range(11)}
    eng2 = stage(tmp_path, shared, Target="600,400", AngleTolerance=10)
    run2 = run_scene(eng2, [walker], range(0, 11))
    assert run2.frames[3].detections.attributes["engaged"][0]


def test_default_target_is_the_bottom_edge(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared)
    person = standing(1, range(0, 11))
    person.attributes["head_yaw"] = {k: 20.0 for k in range(11)}  # facing the camera
    run = run_scene(eng, [person], range(0, 11))
    assert all(f.detections.attributes["engaged"][0] for f in run.frames)
    # a standing person without head pose has no direction and is never engaged
    eng2 = stage(tmp_path, shared)
    run2 = run_scene(eng2, [standing(2, range(0, 11))], range(0, 11))
    assert not any(f.detections.attributes["engaged"].any() for f in run2.frames)


# ---------------------------------------------------------------------------------------
# Engagement time, raw-log counts, totals
# ---------------------------------------------------------------------------------------


def test_engagement_seconds_and_exact_average(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared, Target="300,0", AngleTolerance=5)
    up = 180.0  # head yaw 180: facing away from the camera, up the image, towards (300, 0)
    a = standing(1, range(0, 30), x=300.0)  # engaged frames 0-19: 2.0 s of 2.9 s
    a.attributes["head_yaw"] = {k: (up if k < 20 else 0.0) for k in range(30)}
    b = standing(2, range(10, 31), x=300.0)  # engaged frames 10-19 and 25-29: 1.0 + 0.5 s
    b.attributes["head_yaw"] = {k: (up if k < 20 or k >= 25 else 0.0) for k in range(10, 31)}
    c = standing(3, range(0, 5), x=300.0)  # never engaged
    c.attributes["head_yaw"] = {k: 0.0 for k in range(5)}
    run = run_scene(eng, [a, b, c], range(0, 80))
    events = {e["TrackId"]: e for e in run.events}
    assert (events[1]["ObservedSeconds"], events[1]["EngagedSeconds"]) == ("2.900", "2.000")
    assert (events[2]["ObservedSeconds"], events[2]["EngagedSeconds"]) == ("2.000", "1.500")
    assert (events[3]["ObservedSeconds"], events[3]["EngagedSeconds"]) == ("0.400", "0.000")
    assert events[1]["FirstSeen"] == START.isoformat(timespec="milliseconds")
    assert events[2]["LastSeen"] == (START + timedelta(seconds=3)).isoformat(
        timespec="milliseconds")
    # ended tracks leave when unseen > 3 s: c at 0.4 + 3.1, a at 2.9 + 3.1, b at 3.0 + 3.1
    assert [e["TrackId"] for e in run.events] == [3, 1, 2]
    assert [e["timestamp"] for e in run.events] == [
        START + timedelta(seconds=s) for s in (0.4, 2.9, 3.0)]
    assert run.total(LOG, "People") == 3
    assert run.total(LOG, "EngagedPeople") == 2
    assert run.total(LOG, "EngagementMs") == 3500
    assert run.total(LOG, "ObservedMs") == 7900  # frames 0 .. 79, 0.1 s apart
    # average engagement = total / engaged, exactly
    assert run.total(LOG, "EngagementMs") / run.total(LOG, "EngagedPeople") == 1750
    totals = run.frames[-1].metrics["engagement"]["totals"]
    assert totals == {"detected_people": 3, "engaged_people": 2,
                      "total_engagement_seconds": 3.5, "observed_seconds": 7.9}
    # samples only on the frames the logger writes (TimeInterval 0.5 s): 16 + the final one
    assert len(run.samples[LOG]) == 17


def test_per_person_figures_and_gaps(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared, Target="300,0", MaxGapSeconds=0.5)
    p = standing(1, [*range(0, 5), *range(15, 20)], x=300.0)  # gone for 1.1 s in between
    p.attributes["head_yaw"] = {k: 180.0 for k in p.feet}
    run = run_scene(eng, [p], range(0, 20))
    people = run.frames[4].metrics["engagement"]["people"]
    assert people[1]["engaged"] and people[1]["engagement_seconds"] == pytest.approx(0.4)
    # the 1.1 s gap is longer than MaxGapSeconds: not counted (frames 0-4 and 15-19: 0.8 s)
    assert run.events[0]["EngagedSeconds"] == "0.800"


def test_real_time_window(tmp_path, shared) -> None:
    eng = stage(tmp_path, shared, Target="300,0", UpdatePeriod=1.0)
    a = standing(1, range(0, 30), x=300.0)
    a.attributes["head_yaw"] = {k: 180.0 for k in range(30)}
    b = standing(2, range(12, 16), x=100.0)
    b.attributes["head_yaw"] = {k: 0.0 for k in range(12, 16)}
    run = run_scene(eng, [a, b], range(0, 30))
    first = run.frames[0].metrics["engagement_window"]
    assert first["unique_people"] == 1 and first["engagement_seconds"] == 0.0
    at2 = run.frames[20].metrics["engagement_window"]  # updated at 10:00:02, window (1, 2]
    assert at2["to"] == START + timedelta(seconds=2)
    assert at2["from"] == START + timedelta(seconds=1)
    assert (at2["unique_people"], at2["engaged_people"]) == (2, 1)
    assert at2["person_ids"] == [1, 2] and at2["engaged_ids"] == [1]
    assert at2["engagement_seconds"] == pytest.approx(1.0)  # frames 1.1 .. 2.0 credit 0.1 s
    assert run.frames[25].metrics["engagement_window"] is at2  # held until the next update
    # the same figures leave as engagement_update records, one per update, for bus sinks
    updates = [r for r in run.records() if isinstance(r, EngagementUpdate)]
    assert [u.timestamp for u in updates] == [START + timedelta(seconds=s) for s in (0, 1, 2)]
    u = updates[2]
    assert u.window_from == at2["from"] and u.timestamp == at2["to"]
    assert (u.unique_people, u.engaged_people, u.person_ids, u.engaged_ids) == (
        2, 1, (1, 2), (1,))
    assert u.engagement_seconds == pytest.approx(1.0)
    totals = run.frames[20].metrics["engagement"]["totals"]
    assert (u.detected_people, u.total_engaged_people) == (2, 1) == (
        totals["detected_people"], totals["engaged_people"])
    assert u.total_engagement_seconds == pytest.approx(2.0)
    assert u.observed_seconds == pytest.approx(2.0)
    assert u.people == (
        EngagementPerson(track_id=1, engaged=True, engagement_seconds=2.0,
                         last_seen=START + timedelta(seconds=2)),
        EngagementPerson(track_id=2, engaged=False, engagement_seconds=0.0,
                         last_seen=START + timedelta(seconds=1.5)),
    )


def test_close_writes_the_open_tracks_to_the_logs(tmp_path, shared, monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    eng = stage(tmp_path, shared, Target="300,0")
    logger = file_logger(eng.app)
    p = standing(7, range(0, 12), x=300.0)
    p.attributes["head_yaw"] = {k: 180.0 for k in range(12)}
    run = run_scene(eng, [p], range(0, 12), finish=False, logger=logger)
    last = run.frames[-1].timestamp
    finish_stream("pets-view1", last, [("engagement", eng)], [("fs", logger)])
    logger.close()
    root = tmp_path / "data" / "processor/static/data/sources" / "pets-view1"
    with open(root / "events" / "engagement" / "2024-05-06.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["TrackId"] == "7" and row["EngagedSeconds"] == "1.100"
    assert row["Timestamp"] == "2024-05-06T10:00:01.100+00:00"
    with open(root / LOG / "2024-05-06.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    # the logger's rows at 0.0, 0.5 and 1.0 s, then the last one 1 ms after the last frame
    assert [r["Timestamp"][17:23] for r in rows] == ["00.000", "00.500", "01.000", "01.101"]
    assert rows[-1] == {"Timestamp": "2024-05-06T10:00:01.101+00:00", "People": "1",
                        "EngagedPeople": "1", "EngagementMs": "1100", "ObservedMs": "100"}
    assert sum(int(r["ObservedMs"]) for r in rows) == 1100
    again = finish_stream("pets-view1", last, [("engagement", eng)], [])
    assert again.metrics == {}  # twice: nothing more
    assert len((root / LOG / "2024-05-06.csv").read_text().splitlines()) == 5


def test_close_writes_nothing_where_no_logger_ran(tmp_path, shared, monkeypatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    eng = stage(tmp_path, shared, Target="300,0")
    run = run_scene(eng, [standing(7, range(0, 12))], range(0, 12), finish=False)
    finish_stream("pets-view1", run.frames[-1].timestamp, [("engagement", eng)], [])
    eng.close()  # a pipeline without loggers (an evaluation): no records written
    assert not (tmp_path / "data").exists()
