"""file_system_logger for cameras: rows per TimeInterval of video time, time zones, day
split, row content, screenshots, config keys."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from libs.clock import IntervalGate
from libs.config.models import (
    ApiConfig,
    AppConfig,
    CoreConfig,
    DetectorConfig,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.frame import Detections, Frame
from libs.loggers import AREA_LOGGERS, SOURCE_LOGGERS
from libs.loggers.file_system_logger import (
    SOURCE_LOG_COLUMNS,
    AreaFileSystemLogger,
    SourceFileSystemLogger,
    area_log_root,
    csv_columns,
    screenshots_root,
    source_log_root,
)
from libs.records import (
    AudienceSession,
    Clusters,
    DwellSample,
    DwellSession,
    LineCrossing,
    ZoneDwell,
)
from libs.records import Cluster as ClusterPart
from libs.registry import UnknownPluginError
from processor.summary import frame_figures, summary_records

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each config's data lives in ``<its folder>/data`` (the default DataDirectory)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    return tmp_path / "data"


def make_config(
    tmp_path: Path, tz: str = "UTC", source_loggers: list[PluginConfig] | None = None
) -> LookoutConfig:
    return LookoutConfig(
        path=tmp_path / "config.ini",
        app=AppConfig(TimeZone=tz),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[SourceConfig(Id="cam1", VideoPath="clip.mp4")],
        areas=[],
        source_post_processors=[],
        source_loggers=source_loggers or [],
        area_loggers=[],
        periodic_tasks=[],
    )


def logger_config(**ini: str) -> PluginConfig:
    """The section as the INI loader validates it: string values under INI keys."""
    return SourceFileSystemLogger.Config.model_validate({"Name": "file_system_logger", **ini})


def make_frame(
    ts: datetime,
    index: int = 0,
    people: int = 0,
    violating: int = 0,
    metrics: bool = True,
    image: np.ndarray | None = None,
) -> Frame:
    boxes = np.array([[10 + 30 * k, 20, 35.4 + 30 * k, 80.6] for k in range(people)])
    flags = np.array([k < violating for k in range(people)], dtype=bool)
    pairs = [(k, k + 1) for k in range(0, violating - 1, 2)]
    det = Detections(
        boxes=boxes.reshape(-1, 4),
        scores=np.full(people, 0.87654),
        track_ids=np.arange(people) + 100,
        attributes={"in_violation": flags},
    )
    m: dict[str, object] = {}
    if metrics:
        m = {
            "people": people,
            "violating_people": violating,
            "violating_pairs": len(pairs),
            "violating_pair_indexes": pairs,
        }
    img = image if image is not None else np.zeros((48, 64, 3), np.uint8)
    return Frame("cam1", index, ts, img, det, m)


def with_records(frames: list[Frame], interval: float) -> list[Frame]:
    """What the pipeline does before its loggers: the sample clock's ticks and the records
    it makes from every frame (frame summary, ``objects_log`` sample on a tick)."""
    clock = IntervalGate(interval)
    for frame in frames:
        frame.records.clear()  # a frame run twice gets its records made again
        frame.sample_due = clock.due(frame.timestamp)
        summary_records(frame)
    return frames


def run_logger(config: LookoutConfig, section: PluginConfig, frames: list[Frame],
               made: bool = False) -> Path:
    """Log ``frames`` (their records made here unless ``made``)."""
    logger = SourceFileSystemLogger(section, config.sources[0], config)
    if not made:
        frames = with_records(frames, logger.settings.time_interval)
    for frame in frames:
        logger.log(frame)
    logger.close()
    return logger.log_dir


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_registered_in_both_registries() -> None:
    assert SOURCE_LOGGERS.get("file_system_logger") is SourceFileSystemLogger
    assert AREA_LOGGERS.get("file_system_logger") is AreaFileSystemLogger


def test_config_keys_and_validation() -> None:
    cfg = logger_config(
        TimeInterval="2.5",
        LogDirectory="logs/src",
        ScreenshotPeriod="1.5",
        ScreenshotsDirectory="shots",
    )
    assert cfg.model_dump() == {
        "name": "file_system_logger",
        "enabled": True,
        "time_interval": 2.5,
        "log_directory": "logs/src",
        "screenshot_period": 1.5,
        "screenshots_directory": "shots",
    }
    with pytest.raises(ValidationError):
        logger_config(TimeInterval="0")
    with pytest.raises(ValidationError):
        logger_config(ScreenshotPeriod="-1")
    with pytest.raises(ValidationError):
        logger_config(Unknown="1")
    area = AreaFileSystemLogger.Config.model_validate({"Name": "file_system_logger"})
    assert area.model_dump()["time_interval"] == 1.0


def test_loaded_through_the_ini_parser(tmp_path: Path) -> None:
    from libs.config import parse_config_text

    ini = (
        "[App]\nTimeZone = Europe/London\n"
        "[Source_0]\nId = cam1\nVideoPath = clip.mp4\n"
        "[SourceLogger_0]\nName = file_system_logger\nTimeInterval = 2\n"
        "LogDirectory = raw/sources\n"
        "[AreaLogger_0]\nName = file_system_logger\nLogDirectory = raw/areas\n"
    )
    try:
        config = parse_config_text(ini, tmp_path / "config.ini", check_files=False)
    except UnknownPluginError as exc:
        if "tracker" not in str(exc):
            raise
        pytest.skip(f"no default tracker registered yet: {exc}")
    section = config.source_loggers[0]
    assert isinstance(section, SourceFileSystemLogger.Config)
    assert section.model_dump()["time_interval"] == 2.0
    assert source_log_root(config) == config.data_dir / "raw" / "sources"
    assert area_log_root(config) == config.data_dir / "raw" / "areas"


def test_log_roots_follow_the_enabled_section(tmp_path: Path, data_dir: Path) -> None:
    default = make_config(tmp_path)
    assert source_log_root(default) == data_dir / "processor/static/data/sources"
    assert area_log_root(default) == data_dir / "processor/static/data/areas"
    assert screenshots_root(default) == data_dir / "processor/static/screenshots"
    disabled = logger_config(LogDirectory="elsewhere", Enabled="False")
    enabled = logger_config(LogDirectory="mine", ScreenshotsDirectory="/abs/shots")
    config = make_config(tmp_path, source_loggers=[disabled, enabled])
    assert source_log_root(config) == data_dir / "mine"
    assert screenshots_root(config) == Path("/abs/shots")


def test_one_row_per_time_interval_of_video_time(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    # 10 s of a 7 fps recording, processed as fast as the test runs
    frames = [make_frame(T0 + timedelta(seconds=k / 7), index=k) for k in range(70)]
    log_dir = run_logger(config, logger_config(TimeInterval="0.5"), frames)
    rows = read_rows(log_dir / "2024-03-04.csv")
    # slots of 0.5 s: the first frame of slot s is ceil(3.5 * s)
    expected = [-(-7 * s // 2) for s in range(20)]
    assert [int(r["Frame"]) for r in rows] == expected
    assert rows[1]["Timestamp"] == "2024-03-04T10:00:00.571+00:00"


def test_slots_are_aligned_so_a_rerun_logs_the_same_rows(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    frames = [make_frame(T0 + timedelta(seconds=0.3 + k * 0.25), index=k) for k in range(40)]
    log_dir = run_logger(config, logger_config(TimeInterval="1"), frames[5:])
    first = (log_dir / "2024-03-04.csv").read_text()
    (log_dir / "2024-03-04.csv").unlink()
    run_logger(config, logger_config(TimeInterval="1"), frames)
    again = (log_dir / "2024-03-04.csv").read_text()
    # after its first (partial) slot, the later start logs exactly the rows of the full run
    later_rows = first.split("\n", 2)[2]
    assert later_rows.count("\n") == 9  # slots 2 .. 10
    assert again.endswith(later_rows)


def test_timestamps_carry_the_app_time_zone_offset(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="Europe/London")
    summer = datetime(2024, 7, 1, 9, 0, 0, 250000, tzinfo=UTC)
    winter = datetime(2024, 12, 2, 9, 0, tzinfo=timezone(timedelta(hours=-5)))  # 14:00 UTC
    log_dir = run_logger(config, logger_config(), [make_frame(summer), make_frame(winter)])
    assert read_rows(log_dir / "2024-07-01.csv")[0]["Timestamp"] == (
        "2024-07-01T10:00:00.250+01:00"
    )
    assert read_rows(log_dir / "2024-12-02.csv")[0]["Timestamp"] == (
        "2024-12-02T14:00:00.000+00:00"
    )


def test_files_split_at_local_midnight(tmp_path: Path) -> None:
    config = make_config(tmp_path, tz="America/New_York")
    start = datetime(2024, 3, 2, 4, 58, tzinfo=UTC)  # 23:58 on 1 March in New York
    frames = [make_frame(start + timedelta(seconds=30 * k), index=k) for k in range(8)]
    log_dir = run_logger(config, logger_config(TimeInterval="30"), frames)
    assert sorted(p.name for p in log_dir.iterdir()) == ["2024-03-01.csv", "2024-03-02.csv"]
    before = read_rows(log_dir / "2024-03-01.csv")
    after = read_rows(log_dir / "2024-03-02.csv")
    assert [r["Timestamp"] for r in before] == [
        "2024-03-01T23:58:00.000-05:00",
        "2024-03-01T23:58:30.000-05:00",
        "2024-03-01T23:59:00.000-05:00",
        "2024-03-01T23:59:30.000-05:00",
    ]
    assert after[0]["Timestamp"] == "2024-03-02T00:00:00.000-05:00"
    assert len(after) == 4
    header = (log_dir / "2024-03-02.csv").read_text().splitlines()[0]
    assert header == ",".join(SOURCE_LOG_COLUMNS)


def test_row_content_with_post_processor_metrics(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_dir = run_logger(config, logger_config(), [make_frame(T0, 42, people=3, violating=2)])
    (row,) = read_rows(log_dir / "2024-03-04.csv")
    assert row["Frame"] == "42"
    assert row["DetectedObjects"] == "3"
    assert row["ViolatingObjects"] == "2"
    assert row["ViolatingPairs"] == "1"
    assert row["Occupancy"] == "3"
    assert float(row["EnvironmentScore"]) == pytest.approx(1 - 2 / 3, abs=1e-4)
    detections = json.loads(row["Detections"])
    assert detections[0] == {"id": 100, "bbox": [10, 20, 35, 81], "score": 0.877, "violating": True}
    assert [d["violating"] for d in detections] == [True, True, False]
    assert json.loads(row["ViolationsIndexes"]) == [[0, 1]]
    assert " " not in row["Detections"]  # compact JSON


def test_row_without_post_processors_falls_back(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    frames = [make_frame(T0, people=4, violating=1, metrics=False)]
    frames[0].detections.attributes.pop("in_violation")
    log_dir = run_logger(config, logger_config(), frames)
    (row,) = read_rows(log_dir / "2024-03-04.csv")
    assert (row["DetectedObjects"], row["ViolatingObjects"], row["ViolatingPairs"]) == (
        "4",
        "0",
        "0",
    )
    assert row["Occupancy"] == "4"
    assert row["EnvironmentScore"] == "1.0"
    assert row["ViolationsIndexes"] == "[]"


def test_frame_figures_count_flags_when_metrics_are_missing() -> None:
    frame = make_frame(T0, people=5, violating=3, metrics=False)
    summary = frame_figures(frame)
    assert (summary.people, summary.violating_people, summary.violating_pairs) == (5, 3, 0)
    assert summary.environment_score == pytest.approx(0.4)
    nobody = frame_figures(make_frame(T0))
    assert nobody.environment_score == 1.0


def test_screenshots_every_period_of_video_time(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path, tz="Europe/Paris")
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :40] = (0, 0, 255)
    frames = [
        make_frame(T0 + timedelta(seconds=10 * k), index=k, image=image) for k in range(21)
    ]  # 10:00:00 .. 10:03:20 UTC
    run_logger(config, logger_config(ScreenshotPeriod="1", TimeInterval="60"), frames)
    shots = sorted((data_dir / "processor/static/screenshots/cam1").iterdir())
    assert [p.name for p in shots] == [
        "20240304T110000+0100.jpg",
        "20240304T110100+0100.jpg",
        "20240304T110200+0100.jpg",
        "20240304T110300+0100.jpg",
    ]
    decoded = cv2.imread(str(shots[0]))
    assert decoded is not None and decoded.shape == (60, 80, 3)
    assert decoded[30, 10, 2] > 200 and decoded[30, 70, 2] < 50


def test_no_screenshots_by_default(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path)
    run_logger(config, logger_config(), [make_frame(T0 + timedelta(minutes=k)) for k in range(3)])
    assert not (data_dir / "processor/static/screenshots").exists()


def test_torn_line_from_a_killed_worker_is_repaired_on_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    log_dir = run_logger(config, logger_config(TimeInterval="1"), [make_frame(T0, 0, people=1)])
    path = log_dir / "2024-03-04.csv"
    with open(path, "a") as f:
        f.write("2024-03-04T10:00:01.000+00:00,1,2,0,0,2,1.0,\"[{\"\"id")  # killed here
    run_logger(config, logger_config(TimeInterval="1"), [make_frame(T0 + timedelta(seconds=2), 2)])
    rows = read_rows(path)
    assert [r["Frame"] for r in rows] == ["0", "2"]
    assert path.read_text().count("Timestamp,") == 1


def test_shared_writer_is_flushed_not_closed(tmp_path: Path) -> None:
    from libs.loggers.writer import BackgroundWriter

    config = make_config(tmp_path)
    with BackgroundWriter() as writer:
        logger = SourceFileSystemLogger(logger_config(), config.sources[0], config, writer=writer)
        first, later = with_records([make_frame(T0, 1), make_frame(T0 + timedelta(seconds=5), 2)],
                                    0.5)
        logger.log(first)
        logger.close()
        assert not writer.closed
        assert len(read_rows(logger.log_dir / "2024-03-04.csv")) == 1
        logger.log(later)  # after close: ignored
        assert writer.flush(5)
        assert len(read_rows(logger.log_dir / "2024-03-04.csv")) == 1


def test_samples_and_events_of_analytics(tmp_path: Path, data_dir: Path) -> None:
    """Samples go to ``<kind>/``, events to ``events/<kind>/``, each file by the local date
    of its record; per-region columns spread over the regions."""
    config = make_config(tmp_path, tz="Europe/Paris")
    t0 = datetime(2026, 6, 1, 21, 59, 59, tzinfo=UTC)  # 23:59:59 in Paris
    frames = []
    for k in range(4):
        f = make_frame(t0 + timedelta(seconds=0.5 * k), index=k, people=1)
        frames.append(f)
    for k, f in enumerate(with_records(frames, 0.5)):
        f.emit(DwellSample, sessions=k, dwell_ms=1000 * k, longest_ms=k, loitering=k % 2,
               bucket1=0, bucket2=0, bucket3=0, bucket4=0, bucket5=0,
               zones={"door": ZoneDwell(sessions=k, dwell_ms=0, longest_ms=0, loitering=0)})
        if k == 2:
            f.emit(DwellSession, timestamp=f.timestamp, zone="scene", track_id=7,
                   enter=f.timestamp - timedelta(seconds=12.5), exit=f.timestamp, seconds=12.5)
    log_dir = run_logger(config, logger_config(TimeInterval="0.5"), frames, made=True)
    cam = log_dir.parent
    day1, day2 = sorted((cam / "dwell_log").glob("*.csv"))
    assert (day1.name, day2.name) == ("2026-06-01.csv", "2026-06-02.csv")
    assert day1.read_text().splitlines()[0] == (
        "Timestamp,Sessions,DwellMs,LongestMs,Loitering,Bucket1,Bucket2,Bucket3,Bucket4,"
        "Bucket5,Sessions_door,DwellMs_door,LongestMs_door,Loitering_door")
    rows = read_rows(day1) + read_rows(day2)
    assert [(r["Sessions"], r["Loitering"], r["Sessions_door"]) for r in rows] == [
        ("0", "0", "0"), ("1", "1", "1"), ("2", "0", "2"), ("3", "1", "3")]
    (event_file,) = (cam / "events" / "dwell").glob("*.csv")
    (event,) = read_rows(event_file)
    assert event == {"Timestamp": "2026-06-02T00:00:00.000+02:00", "Zone": "scene",
                     "TrackId": "7", "Enter": "2026-06-01T23:59:47.500+02:00",
                     "Exit": "2026-06-02T00:00:00.000+02:00", "Seconds": "12.5"}
    # frame summaries have no CSV log: only the kinds above and the raw log were written
    assert sorted(p.name for p in cam.iterdir()) == ["dwell_log", "events", "objects_log"]


def test_event_formats_match_the_logs(tmp_path: Path) -> None:
    """Line crossings keep their own folder; booleans are 1/0, null an empty cell, track
    seconds three decimals, image-space clusters carry no image position."""
    config = make_config(tmp_path)
    (frame,) = with_records([make_frame(T0, 5)], 0.5)
    frame.emit(LineCrossing, frame=5, line="door", track_id=3, direction="in")
    frame.emit(AudienceSession, track_id=3, present=2.5, stopped=1.0, looking=None,
               passing_by=True, interested=False)
    frame.emit(Clusters, frame=5, space="image", eps=40.0, min_samples=5, window_seconds=60.0,
               clusters=(ClusterPart(position=(1.5, 2.0), intensity=3.25, radius=4.0,
                                     samples=9),))
    cam = run_logger(config, logger_config(), [frame], made=True).parent
    assert (cam / "line_crossings" / "2024-03-04.csv").read_text() == (
        "Timestamp,Frame,Line,TrackId,Direction\n"
        "2024-03-04T10:00:00.000+00:00,5,door,3,in\n")
    assert (cam / "events" / "audience" / "2024-03-04.csv").read_text().splitlines()[1] == (
        "2024-03-04T10:00:00.000+00:00,3,2.500,1.000,,1,0,,,")
    assert (cam / "events" / "clusters" / "2024-03-04.csv").read_text().splitlines()[1] == (
        '2024-03-04T10:00:00.000+00:00,5,image,'
        '"[{""position"":[1.5,2.0],""intensity"":3.25,""radius"":4.0,""samples"":9}]"')


def test_columns_come_from_the_record_metadata() -> None:
    """The raw log's columns are those the ObjectsSample fields name (one source of truth)."""
    (frame,) = with_records([make_frame(T0, 5, people=2)], 0.5)
    (sample,) = [r for r in frame.records if r.kind == "objects_log"]
    assert csv_columns(sample)[0] == SOURCE_LOG_COLUMNS
    crossing = frame.emit(LineCrossing, frame=5, line="door", track_id=3, direction="in")
    assert csv_columns(crossing)[0] == ("Timestamp", "Frame", "Line", "TrackId", "Direction")
