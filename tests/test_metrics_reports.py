"""Reports recomputed from raw logs that the real loggers wrote from synthetic frames.

No hand-written CSV: every raw log here comes from SourceFileSystemLogger or
AreaFileSystemLogger, so a change of the raw format breaks these tests too.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from libs.clock import IntervalGate
from libs.config.models import (
    ApiConfig,
    AppConfig,
    AreaConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.frame import Detections, Frame
from libs.loggers.file_system_logger import (
    AreaFileSystemLogger,
    SourceFileSystemLogger,
    source_log_root,
)
from libs.metrics import (
    AREA_REPORTS,
    SOURCE_REPORTS,
    area_dir,
    camera_dir,
    read_report,
    recompute_all,
    update_entity_reports,
)
from libs.periodic_tasks import PERIODIC_TASKS
from libs.periodic_tasks.metrics import MetricsTask
from tests.area_helpers import AreaFeed
from tests.record_helpers import as_pipeline_would

MINUTE = timedelta(minutes=1)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each config's data lives in ``<its folder>/data`` (the default DataDirectory)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    return tmp_path / "data"


def make_config(
    tmp_path: Path,
    tz: str = "UTC",
    periodic_tasks: list[PluginConfig] | None = None,
    area: AreaConfig | None = None,
) -> LookoutConfig:
    return LookoutConfig(
        path=tmp_path / "config.ini",
        app=AppConfig(TimeZone=tz),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[SourceConfig(Id=c, VideoPath="clip.mp4") for c in ("cam1", "cam2")],
        areas=[area] if area is not None else [],
        source_post_processors=[],
        source_loggers=[],
        area_loggers=[],
        periodic_tasks=periodic_tasks or [],
    )


def make_frame(ts: datetime, people: int, violating: int = 0, index: int = 0) -> Frame:
    boxes = np.array([[10 * k, 0, 10 * k + 8, 30] for k in range(people)]).reshape(-1, 4)
    pairs = [(k, k + 1) for k in range(0, violating - 1, 2)]
    det = Detections(
        boxes=boxes,
        scores=np.full(people, 0.9),
        attributes={"in_violation": np.array([k < violating for k in range(people)])},
    )
    metrics = {
        "people": people,
        "violating_people": violating,
        "violating_pairs": len(pairs),
        "violating_pair_indexes": pairs,
    }
    return Frame("cam1", index, ts, np.zeros((8, 8, 3), np.uint8), det, metrics)


def log_frames(config: LookoutConfig, frames: Iterable[Frame], interval: str = "60") -> None:
    section = SourceFileSystemLogger.Config.model_validate(
        {"Name": "file_system_logger", "TimeInterval": interval}
    )
    logger = SourceFileSystemLogger(section, config.sources[0], config)
    clock = IntervalGate(logger.settings.time_interval)
    for frame in frames:
        logger.log(as_pipeline_would(frame, clock))
    logger.close()


def minutes(start: datetime, count: int, people: int, violating: int = 0) -> list[Frame]:
    """Three frames per minute (at :00, :20, :40); with TimeInterval 60 one row per minute."""
    return [
        make_frame(start + k * MINUTE + timedelta(seconds=s), people, violating, index=k)
        for k in range(count)
        for s in (0, 20, 40)
    ]


def week_of_frames() -> list[Frame]:
    monday = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
    return [
        # Monday 10:00-10:59: 2 people for 30 min then 4; 2 violating in the first 10 min
        *minutes(monday, 10, 2, violating=2),
        *minutes(monday + 10 * MINUTE, 20, 2),
        *minutes(monday + 30 * MINUTE, 30, 4),
        # Monday 11:00-11:29: 1 person
        *minutes(monday + 60 * MINUTE, 30, 1),
        # Sunday 10 March 09:00-09:59: 5 people
        *minutes(datetime(2024, 3, 10, 9, 0, tzinfo=UTC), 60, 5),
        # Monday 11 March 08:00-08:09: nobody, then 08:10-08:19: 3 people
        *minutes(datetime(2024, 3, 11, 8, 0, tzinfo=UTC), 10, 0),
        *minutes(datetime(2024, 3, 11, 8, 10, tzinfo=UTC), 10, 3),
    ]


def reports_of(config: LookoutConfig, camera: str = "cam1") -> Path:
    return camera_dir(config, camera) / "reports"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*.csv"))
        if p.is_file()
    }


def by_key(rows: list[dict[str, str]], key: str) -> dict[str, dict[str, str]]:
    return {r[key]: r for r in rows}


def test_hourly_daily_weekly_values(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    (result,) = recompute_all(config)
    assert result.error is None

    sd = reports_of(config) / "social-distancing"
    hourly = read_report(sd / "hourly_2024-03-04.csv")
    assert [r["Hour"] for r in hourly] == ["2024-03-04T10:00:00+00:00", "2024-03-04T11:00:00+00:00"]
    assert hourly[0] == {
        "Hour": "2024-03-04T10:00:00+00:00",
        "Samples": "60",
        "AvgPeople": "3.000",
        "MaxPeople": "4",
        "AvgViolatingPeople": "0.333",
        "MaxViolatingPeople": "2",
        "AvgViolatingPairs": "0.167",
        "MaxViolatingPairs": "1",
        "ViolationSamples": "10",
        "SumPeople": "180",
        "SumViolatingPeople": "20",
        "SumViolatingPairs": "10",
    }
    assert (hourly[1]["Samples"], hourly[1]["AvgPeople"], hourly[1]["MaxPeople"]) == (
        "30",
        "1.000",
        "1",
    )

    daily = by_key(read_report(sd / "daily.csv"), "Date")
    assert list(daily) == ["2024-03-04", "2024-03-10", "2024-03-11"]
    assert daily["2024-03-04"]["Samples"] == "90"
    assert daily["2024-03-04"]["SumPeople"] == "210"
    assert daily["2024-03-04"]["AvgPeople"] == "2.333"
    assert daily["2024-03-04"]["MaxPeople"] == "4"
    assert daily["2024-03-04"]["ViolationSamples"] == "10"
    assert daily["2024-03-10"]["AvgPeople"] == "5.000"
    assert (daily["2024-03-11"]["Samples"], daily["2024-03-11"]["AvgPeople"]) == ("20", "1.500")

    weekly = by_key(read_report(sd / "weekly.csv"), "Week")
    assert list(weekly) == ["2024-03-04", "2024-03-11"]  # the Mondays
    assert weekly["2024-03-04"]["Samples"] == "150"
    assert weekly["2024-03-04"]["SumPeople"] == "510"
    assert weekly["2024-03-04"]["AvgPeople"] == "3.400"
    assert weekly["2024-03-04"]["MaxPeople"] == "5"
    assert weekly["2024-03-11"]["Samples"] == "20"

    occ = reports_of(config) / "occupancy"
    occ_hourly = read_report(occ / "hourly_2024-03-04.csv")
    columns = ["Hour", "Samples", "AvgOccupancy", "MaxOccupancy", "SumOccupancy"]
    assert list(occ_hourly[0]) == columns
    assert (occ_hourly[0]["AvgOccupancy"], occ_hourly[0]["MaxOccupancy"]) == ("3.000", "4")
    assert by_key(read_report(occ / "weekly.csv"), "Week")["2024-03-04"]["SumOccupancy"] == "510"


def test_live_covers_the_last_interval_of_data(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    recompute_all(config, live_interval=timedelta(minutes=15))
    (live,) = read_report(reports_of(config) / "social-distancing" / "live.csv")
    # newest row 08:19; window (08:04, 08:19]: 08:05..08:09 nobody (5), 08:10..08:19 three (10)
    assert live["From"] == "2024-03-11T08:04:00.000+00:00"
    assert live["To"] == "2024-03-11T08:19:00.000+00:00"
    assert (live["Samples"], live["SumPeople"], live["MaxPeople"]) == ("15", "30", "3")


def test_live_window_crossing_midnight(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Europe/Berlin")
    start = datetime(2024, 3, 4, 22, 50, tzinfo=UTC)  # 23:50 in Berlin
    log_frames(config, minutes(start, 20, 2))
    recompute_all(config, live_interval=timedelta(minutes=15))
    (live,) = read_report(reports_of(config) / "occupancy" / "live.csv")
    # newest row 23:09 UTC = 00:09 in Berlin; the window (23:54, 00:09] spans two raw files
    assert live["From"] == "2024-03-04T23:54:00.000+01:00"
    assert live["To"] == "2024-03-05T00:09:00.000+01:00"
    assert live["Samples"] == "15"
    raw = camera_dir(config, "cam1") / "objects_log"
    assert sorted(p.name for p in raw.iterdir()) == ["2024-03-04.csv", "2024-03-05.csv"]


def test_recompute_is_idempotent_byte_for_byte_and_mends_itself(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    recompute_all(config)
    reports = reports_of(config)
    first = snapshot(reports)
    assert len(first) == 2 * (3 + 3)  # two kinds x (3 hourly + daily, weekly, live)
    (again,) = recompute_all(config)
    assert again.recomputed_dates == []  # nothing changed: no raw file read
    assert snapshot(reports) == first
    # a missed or broken run: reports and state lost, or partly deleted
    (reports / "social-distancing" / "daily.csv").unlink()
    (reports / "occupancy" / "hourly_2024-03-10.csv").unlink()
    (reports / "social-distancing" / "live.csv").write_text("garbage")
    recompute_all(config)
    assert snapshot(reports) == first
    shutil.rmtree(reports)
    recompute_all(config)
    assert snapshot(reports) == first


def test_incremental_runs_equal_a_full_recompute(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path)
    frames = week_of_frames()
    log_frames(config, frames[:100])
    recompute_all(config)
    log_frames(config, frames[100:250])  # a new logger appends to the same day files
    recompute_all(config)
    log_frames(config, frames[250:])
    (last,) = recompute_all(config)
    assert 1 <= len(last.recomputed_dates) <= 3

    fresh = make_config(tmp_path / "fresh")
    raw = camera_dir(config, "cam1") / "objects_log"
    shutil.copytree(raw, camera_dir(fresh, "cam1") / "objects_log")
    recompute_all(fresh)
    assert snapshot(reports_of(fresh)) == snapshot(reports_of(config))


def test_a_raw_log_cut_back_by_hand_is_followed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    recompute_all(config)
    raw = camera_dir(config, "cam1") / "objects_log"
    lines = (raw / "2024-03-04.csv").read_text().splitlines(keepends=True)
    (raw / "2024-03-04.csv").write_text("".join(lines[:31]))  # header + 10:00 .. 10:29
    (raw / "2024-03-10.csv").write_text(lines[0])  # the header alone
    recompute_all(config)
    sd = reports_of(config) / "social-distancing"
    assert [(r["Hour"], r["Samples"]) for r in read_report(sd / "hourly_2024-03-04.csv")] == [
        ("2024-03-04T10:00:00+00:00", "30")
    ]
    assert not (sd / "hourly_2024-03-10.csv").exists()
    assert [r["Date"] for r in read_report(sd / "daily.csv")] == ["2024-03-04", "2024-03-11"]
    # deleting a raw log, on the other hand, keeps the reports made from it
    (raw / "2024-03-11.csv").unlink()
    recompute_all(config)
    assert [r["Date"] for r in read_report(sd / "daily.csv")] == ["2024-03-04", "2024-03-11"]


def test_rows_re_logged_by_a_restarted_worker_are_counted_once(tmp_path: Path) -> None:
    once = make_config(tmp_path / "once")
    twice = make_config(tmp_path / "twice")
    frames = week_of_frames()
    log_frames(once, frames)
    log_frames(twice, frames[:200])
    log_frames(twice, frames[150:])  # the restarted worker re-processes a stretch of video
    raw = camera_dir(twice, "cam1") / "objects_log" / "2024-03-04.csv"
    timestamps = [line.split(",")[0] for line in raw.read_text().splitlines()[1:]]
    assert len(timestamps) > len(set(timestamps))  # the raw log does hold duplicates
    recompute_all(once)
    recompute_all(twice)
    assert snapshot(reports_of(twice)) == snapshot(reports_of(once))


def test_dst_fall_back_gives_two_one_oclock_rows(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Europe/London")
    first = datetime(2024, 10, 27, 0, 0, tzinfo=UTC)  # 01:00 BST
    second = datetime(2024, 10, 27, 1, 0, tzinfo=UTC)  # 01:00 GMT, one hour later
    log_frames(config, [*minutes(first, 60, 1), *minutes(second, 60, 3)])
    recompute_all(config)
    sd = reports_of(config) / "social-distancing"
    hourly = read_report(sd / "hourly_2024-10-27.csv")
    assert [(r["Hour"], r["Samples"], r["AvgPeople"]) for r in hourly] == [
        ("2024-10-27T01:00:00+01:00", "60", "1.000"),
        ("2024-10-27T01:00:00+00:00", "60", "3.000"),
    ]
    (day,) = read_report(sd / "daily.csv")
    assert (day["Date"], day["Samples"], day["AvgPeople"]) == ("2024-10-27", "120", "2.000")


def test_dst_spring_forward_skips_the_missing_hour(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Europe/London")
    log_frames(config, minutes(datetime(2024, 3, 31, 0, 30, tzinfo=UTC), 60, 2))
    recompute_all(config)
    hourly = read_report(reports_of(config) / "occupancy" / "hourly_2024-03-31.csv")
    assert [(r["Hour"], r["Samples"]) for r in hourly] == [
        ("2024-03-31T00:00:00+00:00", "30"),
        ("2024-03-31T02:00:00+01:00", "30"),
    ]


def test_torn_and_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    clean = make_config(tmp_path / "clean")
    broken = make_config(tmp_path / "broken")
    frames = week_of_frames()
    log_frames(clean, frames)
    log_frames(broken, frames)
    raw = camera_dir(broken, "cam1") / "objects_log"
    with open(raw / "2024-03-10.csv", "a") as f:  # a garbage line in the middle of the file
        f.write("not,a,row\n2024-03-10T09:00:30.000,1,9,9,9,9,0,[],[]\n")
    log_frames(broken, minutes(datetime(2024, 3, 10, 9, 59, tzinfo=UTC), 1, 5))  # after it
    with open(raw / "2024-03-11.csv", "a") as f:
        # a worker killed in the middle of a line: Occupancy "12" cut to "1" still parses
        f.write("2024-03-11T08:20:00.000+00:00,900,12,0,0,1")
    (result,) = recompute_all(broken)
    recompute_all(clean)
    assert result.skipped_lines == 3
    assert snapshot(reports_of(broken)) == snapshot(reports_of(clean))


def test_time_zone_change_recomputes_everything(tmp_path: Path) -> None:
    utc = make_config(tmp_path)
    log_frames(utc, week_of_frames())
    recompute_all(utc)
    tokyo = make_config(tmp_path, tz="Asia/Tokyo")  # same folders, another time zone
    recompute_all(tokyo)
    hourly = read_report(reports_of(tokyo) / "social-distancing" / "hourly_2024-03-04.csv")
    assert [r["Hour"] for r in hourly] == ["2024-03-04T19:00:00+09:00", "2024-03-04T20:00:00+09:00"]
    daily = by_key(read_report(reports_of(tokyo) / "social-distancing" / "daily.csv"), "Date")
    assert list(daily) == ["2024-03-04", "2024-03-10", "2024-03-11"]

    # raw files named by UTC dates, rows near midnight move to the next Tokyo date
    late = make_config(tmp_path / "late")
    log_frames(late, minutes(datetime(2024, 3, 4, 14, 50, tzinfo=UTC), 20, 1))
    recompute_all(late)
    late_tokyo = make_config(tmp_path / "late", tz="Asia/Tokyo")
    recompute_all(late_tokyo)
    reports = reports_of(late_tokyo) / "occupancy"
    assert [r["Hour"] for r in read_report(reports / "hourly_2024-03-05.csv")] == [
        "2024-03-05T00:00:00+09:00"
    ]
    assert [(r["Date"], r["Samples"]) for r in read_report(reports / "daily.csv")] == [
        ("2024-03-04", "10"),
        ("2024-03-05", "10"),
    ]

    # westwards: the raw file of 5 March (UTC) holds rows of 4 March in New York
    west = make_config(tmp_path / "west")
    log_frames(west, minutes(datetime(2024, 3, 4, 23, 50, tzinfo=UTC), 20, 1))
    recompute_all(west)
    raw = camera_dir(west, "cam1") / "objects_log"
    assert sorted(p.name for p in raw.iterdir()) == ["2024-03-04.csv", "2024-03-05.csv"]
    west_ny = make_config(tmp_path / "west", tz="America/New_York")
    recompute_all(west_ny)
    reports = reports_of(west_ny) / "occupancy"
    assert [(r["Date"], r["Samples"]) for r in read_report(reports / "daily.csv")] == [
        ("2024-03-04", "20")
    ]
    assert [(r["Hour"], r["Samples"]) for r in read_report(reports / "hourly_2024-03-04.csv")] == [
        ("2024-03-04T18:00:00-05:00", "10"),
        ("2024-03-04T19:00:00-05:00", "10"),
    ]
    assert not (reports / "hourly_2024-03-05.csv").exists()  # its UTC rows all moved away


def test_area_reports_count_over_capacity(tmp_path: Path) -> None:
    area = AreaConfig.model_validate(
        {"Id": "hall", "Cameras": "cam1,cam2", "OccupancyThreshold": "5"}
    )
    section = AreaFileSystemLogger.Config.model_validate(
        {"Name": "file_system_logger", "TimeInterval": "60"}
    )
    config = make_config(tmp_path, area=area).model_copy(update={"area_loggers": [section]})
    logger = AreaFeed(config, area, AreaFileSystemLogger(section, area, config))
    start = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
    for k in range(360):  # both cameras report every 10 s
        ts = start + timedelta(seconds=10 * k)
        logger.update("cam1", ts, 3)
        logger.update("cam2", ts + timedelta(seconds=1), 4 if ts < start + 15 * MINUTE else 1)
    logger.close()
    (result,) = [r for r in recompute_all(config) if r.entity_dir == area_dir(config, "hall")]
    assert result.error is None
    (hour,) = read_report(area_dir(config, "hall") / "reports/occupancy/hourly_2024-03-04.csv")
    # a row is written when cam1 opens a minute m; cam2 then still shows its count of
    # (m-1):51, so row 0 sees 3 (cam2 silent), rows 1..15 see 3+4 = 7 (over 5), rows
    # 16..59 see 3+1 = 4: sum 3 + 105 + 176 = 284
    assert hour == {
        "Hour": "2024-03-04T10:00:00+00:00",
        "Samples": "60",
        "AvgOccupancy": "4.733",
        "MaxOccupancy": "7",
        "OverCapacitySamples": "15",
        "SumOccupancy": "284",
    }


def test_metrics_task(tmp_path: Path, data_dir: Path) -> None:
    assert PERIODIC_TASKS.get("metrics") is MetricsTask
    section = MetricsTask.Config.model_validate({"Name": "metrics", "LiveInterval": "5"})
    config = make_config(tmp_path, periodic_tasks=[section])
    task = MetricsTask(section, config)
    assert task.interval_seconds == 300.0
    log_frames(config, week_of_frames())
    task.run()
    assert [r.error for r in task.last_results] == [None]
    (live,) = read_report(reports_of(config) / "social-distancing" / "live.csv")
    assert live["From"] == "2024-03-11T08:14:00.000+00:00"
    assert source_log_root(config) == data_dir / "processor/static/data/sources"
    with pytest.raises(ValueError):
        MetricsTask.Config.model_validate({"Name": "metrics", "LiveInterval": "0"})


def test_concurrent_runs_while_the_logger_writes(tmp_path: Path) -> None:
    import threading

    config = make_config(tmp_path)
    frames = week_of_frames()
    errors: list[str] = []
    stop = threading.Event()

    def keep_recomputing() -> None:
        while not stop.is_set():
            errors.extend(str(r.error) for r in recompute_all(config) if r.error)

    runners = [threading.Thread(target=keep_recomputing) for _ in range(3)]
    for runner in runners:
        runner.start()
    try:
        for start in range(0, len(frames), 60):
            log_frames(config, frames[start : start + 60])
    finally:
        stop.set()
        for runner in runners:
            runner.join()
    assert errors == []
    recompute_all(config)
    fresh = make_config(tmp_path / "fresh")
    shutil.copytree(
        camera_dir(config, "cam1") / "objects_log", camera_dir(fresh, "cam1") / "objects_log"
    )
    recompute_all(fresh)
    assert snapshot(reports_of(config)) == snapshot(reports_of(fresh))


@pytest.mark.skipif(sys.platform == "win32", reason="flock")
def test_an_update_waits_for_the_one_in_progress(tmp_path: Path) -> None:
    import fcntl
    import threading

    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    lock = reports_of(config) / ".lock"
    lock.parent.mkdir(parents=True)
    finished = threading.Event()
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process is updating cam1
        runner = threading.Thread(target=lambda: (recompute_all(config), finished.set()))
        runner.start()
        assert not finished.wait(0.3)
        assert not (reports_of(config) / "social-distancing").exists()
    assert finished.wait(10)  # closing the file released the lock
    runner.join()
    assert (reports_of(config) / "social-distancing" / "daily.csv").exists()


def test_one_broken_camera_does_not_stop_the_others(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_frames(config, week_of_frames())
    broken = camera_dir(config, "cam2")
    (broken / "objects_log").mkdir(parents=True)
    (broken / "objects_log" / "2024-03-04.csv").write_text("Timestamp,Frame\n")  # no columns
    (broken / "reports").write_text("a file where a folder should be")
    results = {r.entity_dir.name: r for r in recompute_all(config)}
    assert results["cam1"].error is None
    assert results["cam2"].error is not None
    assert (reports_of(config) / "social-distancing" / "daily.csv").exists()


def test_entity_update_api_directly(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Europe/London")
    log_frames(config, week_of_frames())
    tz = config.app.tzinfo
    result = update_entity_reports(camera_dir(config, "cam1"), SOURCE_REPORTS, tz)
    assert result.files_read == 3
    assert sorted(d.isoformat() for d in result.recomputed_dates) == [
        "2024-03-04",
        "2024-03-10",
        "2024-03-11",
    ]
    empty = update_entity_reports(tmp_path / "nothing", AREA_REPORTS, tz)
    assert empty.recomputed_dates == []
