"""file_system_logger for areas: sum of member cameras, rule thresholds, stale cameras."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
from libs.loggers.file_system_logger import AREA_LOG_COLUMNS, AreaFileSystemLogger
from libs.records import OccupancyOver, OccupancyUnder
from processor.areas import STALE_AFTER
from tests.area_helpers import AreaFeed

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each config's data lives in ``<its folder>/data`` (the default DataDirectory)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    return tmp_path / "data"


def make_config(tmp_path: Path, area: AreaConfig, tz: str = "UTC",
                area_loggers: list[PluginConfig] | None = None) -> LookoutConfig:
    return LookoutConfig(
        path=tmp_path / "config.ini",
        app=AppConfig(TimeZone=tz),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[SourceConfig(Id=c, VideoPath="clip.mp4") for c in ("cam1", "cam2", "cam3")],
        areas=[area],
        source_post_processors=[],
        source_loggers=[],
        area_loggers=area_loggers or [],
        periodic_tasks=[],
    )


def area_section(**ini: str) -> PluginConfig:
    return AreaFileSystemLogger.Config.model_validate({"Name": "file_system_logger", **ini})


class Logged(AreaFeed):
    """The area's aggregation feeding its file logger."""

    @property
    def log_dir(self) -> Path:
        sink = self.sinks[0]
        assert isinstance(sink, AreaFileSystemLogger)
        return sink.log_dir


def make_logger(tmp_path: Path, tz: str = "UTC", interval: str = "1", **area: str) -> Logged:
    area_cfg = AreaConfig.model_validate({"Id": "hall", "Cameras": "cam1,cam2", **area})
    section = area_section(TimeInterval=interval)
    config = make_config(tmp_path, area_cfg, tz, [section])
    return Logged(config, area_cfg, AreaFileSystemLogger(section, area_cfg, config))


def rows_of(logger: Logged) -> list[dict[str, str]]:
    logger.close()
    out: list[dict[str, str]] = []
    for path in sorted(logger.log_dir.glob("*.csv")):
        with open(path, newline="") as f:
            out += list(csv.DictReader(f))
    return out


def test_occupancy_is_the_sum_of_member_cameras(tmp_path: Path, data_dir: Path) -> None:
    logger = make_logger(tmp_path)
    logger.update("cam1", T0, 3)
    logger.update("cam2", T0 + timedelta(seconds=0.2), 4)  # same slot: no row
    logger.update("cam1", T0 + timedelta(seconds=1), 5)
    logger.update("cam2", T0 + timedelta(seconds=2.5), 1)
    rows = rows_of(logger)
    assert logger.log_dir == data_dir / "processor/static/data/areas/hall/occupancy_log"
    assert [(r["Timestamp"], r["Occupancy"]) for r in rows] == [
        ("2024-03-04T12:00:00.000+00:00", "3"),
        ("2024-03-04T12:00:01.000+00:00", "9"),
        ("2024-03-04T12:00:02.500+00:00", "6"),
    ]
    assert json.loads(rows[1]["Cameras"]) == {"cam1": 5, "cam2": 4}
    assert json.loads(rows[0]["Cameras"]) == {"cam1": 3, "cam2": 0}
    header = next(logger.log_dir.glob("*.csv")).read_text().splitlines()[0]
    assert header == ",".join(AREA_LOG_COLUMNS)


def test_one_row_per_time_interval_of_the_area_clock(tmp_path: Path) -> None:
    logger = make_logger(tmp_path, interval="1")
    for k in range(20):  # 4 updates per second over 5 s, alternating cameras
        logger.update(("cam1", "cam2")[k % 2], T0 + timedelta(seconds=k * 0.25), 1)
    assert len(rows_of(logger)) == 5


def test_threshold_from_rules_and_default(tmp_path: Path) -> None:
    logger = make_logger(
        tmp_path,
        tz="Europe/Paris",
        interval="60",
        OccupancyThreshold="10",
        OccupancyRules="Mon-Fri 09:00-18:00 5",
    )
    paris_monday_0858 = datetime(2024, 3, 4, 7, 58, tzinfo=UTC)
    for minute in range(4):  # 08:58, 08:59, 09:00, 09:01 in Paris
        logger.update("cam1", paris_monday_0858 + timedelta(minutes=minute), 6)
    saturday = datetime(2024, 3, 9, 10, 0, tzinfo=UTC)
    logger.update("cam1", saturday, 6)
    logger.update("cam1", saturday + timedelta(minutes=1), 11)
    rows = rows_of(logger)
    assert [(r["Threshold"], r["Violation"]) for r in rows] == [
        ("10", "0"),
        ("10", "0"),
        ("5", "1"),
        ("5", "1"),
        ("10", "0"),
        ("10", "1"),
    ]
    assert rows[2]["Timestamp"] == "2024-03-04T09:00:00.000+01:00"


def test_no_threshold_means_no_violation(tmp_path: Path) -> None:
    logger = make_logger(tmp_path)
    logger.update("cam1", T0, 500)
    (row,) = rows_of(logger)
    assert (row["Threshold"], row["Violation"]) == ("0", "0")


def test_a_silent_camera_counts_zero_after_30_seconds(tmp_path: Path) -> None:
    assert timedelta(seconds=30) == STALE_AFTER
    logger = make_logger(tmp_path)
    logger.update("cam2", T0, 4)
    for second in (1, 30, 31):
        logger.update("cam1", T0 + timedelta(seconds=second), 2)
    rows = rows_of(logger)
    assert [r["Occupancy"] for r in rows] == ["4", "6", "6", "2"]
    assert json.loads(rows[-1]["Cameras"]) == {"cam1": 2, "cam2": 0}
    agg = logger.aggregator
    assert agg.clock is not None and sum(agg.counts(agg.clock).values()) == 2


def test_non_members_and_late_updates(tmp_path: Path) -> None:
    logger = make_logger(tmp_path)
    agg = logger.aggregator
    assert agg.clock is None
    logger.update("cam3", T0, 100)  # not in the area
    assert agg.clock is None and logger.records == []
    logger.update("cam1", T0 + timedelta(seconds=5), 2)
    logger.update("cam1", T0 + timedelta(seconds=4), 9)  # older than what cam1 said: ignored
    logger.update("cam2", T0 + timedelta(seconds=3), 1)  # behind the clock but fresh: counted
    assert agg.clock == T0 + timedelta(seconds=5)
    assert agg.counts(agg.clock) == {"cam1": 2, "cam2": 1}
    rows = rows_of(logger)
    assert [r["Occupancy"] for r in rows] == ["2"]  # the clock never entered another slot


def test_rows_split_by_local_date(tmp_path: Path) -> None:
    logger = make_logger(tmp_path, tz="Asia/Tokyo", interval="60")
    start = datetime(2024, 3, 4, 14, 59, tzinfo=UTC)  # 23:59 in Tokyo
    logger.update("cam1", start, 1)
    logger.update("cam1", start + timedelta(minutes=1), 2)
    logger.close()
    assert sorted(p.name for p in logger.log_dir.iterdir()) == ["2024-03-04.csv", "2024-03-05.csv"]


def test_occupancy_over_and_back_under_its_threshold_are_events(tmp_path: Path) -> None:
    logger = make_logger(tmp_path, OccupancyThreshold="5")
    for second, people in enumerate([3, 6, 8, 7, 4, 4, 9]):
        logger.update("cam1", T0 + timedelta(seconds=second), people)
    rows = rows_of(logger)
    assert [r["Violation"] for r in rows] == ["0", "1", "1", "1", "0", "0", "1"]
    events = [r for r in logger.records if isinstance(r, OccupancyOver | OccupancyUnder)]
    assert [(type(e).__name__, e.timestamp - T0, e.occupancy) for e in events] == [
        ("OccupancyOver", timedelta(seconds=1), 6),
        ("OccupancyUnder", timedelta(seconds=4), 4),
        ("OccupancyOver", timedelta(seconds=6), 9),
    ]
    under = events[1]
    assert isinstance(under, OccupancyUnder)
    assert (under.peak, under.seconds, under.threshold) == (8, 3.0, 5)
    assert all(e.source == "area" and e.source_id == "hall" for e in logger.records)


def test_a_restarted_processor_makes_no_area_sample_twice(tmp_path: Path) -> None:
    """The cameras resume at their checkpoints and send frames again whose samples the
    killed run had logged: the new aggregation starts after the log's newest sample, on the
    same slots, so the log ends as one uninterrupted run's."""
    times = [T0 + timedelta(seconds=k * 0.4) for k in range(30)]  # 12 s, slots of 1 s

    def feed(logger: Logged, ks: range) -> None:
        for k in ks:
            logger.update("cam1", times[k], k)

    one = make_logger(tmp_path / "one")
    feed(one, range(30))
    want = rows_of(one)

    def restarted_logger() -> Logged:
        logger = make_logger(tmp_path / "two")
        sink = logger.sinks[0]
        assert isinstance(sink, AreaFileSystemLogger)
        # What the supervisor does at start: the aggregation begins after the log's newest.
        logger.aggregator = type(logger.aggregator)(
            logger.aggregator.area, make_config(tmp_path / "two", logger.aggregator.area),
            after=sink.last_logged())
        return logger

    first = restarted_logger()
    assert first.aggregator.after is None  # nothing logged yet
    feed(first, range(20))  # killed after frame 19 (12:00:07.6) ...
    first.close()
    second = restarted_logger()
    assert second.aggregator.after == datetime(2024, 3, 4, 12, 0, 7, 200000, tzinfo=UTC)
    feed(second, range(12, 30))  # ... its checkpoint was at frame 12 (12:00:04.8)
    got = rows_of(second)
    assert got == want
    assert len({r["Timestamp"] for r in got}) == len(got) == 12

    # Without the log's newest sample, the resumed frames make samples again.
    third = make_logger(tmp_path / "three")
    feed(third, range(20))
    third.close()
    again = make_logger(tmp_path / "three")
    feed(again, range(12, 30))
    assert len(rows_of(again)) > len(want)
