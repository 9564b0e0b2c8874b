"""The ``heatmap`` post-processor and the hourly grids, on synthetic tracks with answers
worked out by hand; and end to end on the PETS clip.

Synthetic set-up: an 800x600 frame and an 8x6 grid, so image cells are 100 px squares and
a foot point ``(x, y)`` lands in row ``y // 100``, column ``x // 100``.  Frame rates of 4 or
8 fps give intervals of 0.25 / 0.125 s, exact in binary, so most sums are compared exactly.
"""

from __future__ import annotations

import itertools
import json
import threading
import time as wallclock
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from libs.config import LookoutConfig, load_config
from libs.frame import Detections, Frame
from libs.metrics.heatmap import (
    HourGrids,
    days_of,
    floor_grid_for,
    heat_levels,
    hour_files,
    merge_into,
    parse_hours,
    read_hour,
    sum_hours,
)
from libs.post_processors import POST_PROCESSORS
from libs.post_processors.heatmap import Heatmap, HeatmapConfig
from libs.records import Clusters
from libs.state import dumps, loads
from tests.conftest import REPO, core_config_text

TZ_NAME = "Asia/Kolkata"  # UTC+05:30: local hours are not UTC hours
TZ = ZoneInfo(TZ_NAME)
IMAGE = np.zeros((600, 800, 3), np.uint8)
DAY = date(2024, 3, 4)

# Camera "scaled": 1 px = 1 cm, floor x = x_px / 100 - 4, floor y = 3 - y_px / 100, so the
# image maps onto the floor rectangle -4..4 x -3..3 m (8x6 cells of exactly 1 m).
SCALED = (
    "\n[Source_scaled]\nId = scaled\nVideoPath = data/pets09_s2l1/vtest.avi\n"
    "CalibrationImagePoints = 0,0; 800,0; 800,600; 0,600\n"
    "CalibrationFloorPoints = -4,3; 4,3; 4,-3; -4,-3\n"
)
FLAT = "\n[Source_flat]\nId = flat\nVideoPath = data/pets09_s2l1/vtest.avi\n"


def write_config(folder: Path, shared: Path, extra: str = "", tz: str = TZ_NAME) -> Path:
    text = core_config_text((REPO / "config-x86.ini").read_text())
    for old, new in (
        ("AssetsDirectory = ../shared", f"AssetsDirectory = {shared}"),
        ("TimeZone = UTC", f"TimeZone = {tz}"),
        ("HeatmapResolution = 150,150", "HeatmapResolution = 8,6"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "config.ini"
    path.write_text(text + FLAT + SCALED + extra)
    return path


@pytest.fixture
def config(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> LookoutConfig:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    return load_config(write_config(tmp_path, shared), check_files=False)


def processor(config: LookoutConfig, camera: str = "flat", **keys: object) -> Heatmap:
    settings = HeatmapConfig.model_validate({"Name": "heatmap", "FlushSeconds": 3600, **keys})
    return Heatmap(settings, config.source(camera), config)


def person(x: float, y: float) -> list[float]:
    """A box whose foot point (bottom centre) is ``(x, y)``."""
    return [x - 20, y - 120, x + 20, y]


def frame(ts: datetime, feet: Sequence[tuple[float, float]], index: int = 0,
          **attributes: Iterable[object]) -> Frame:
    boxes = np.array([person(x, y) for x, y in feet], np.float32).reshape(-1, 4)
    det = Detections(boxes=boxes, scores=np.full(len(boxes), 0.9),
                     track_ids=np.arange(len(boxes)),
                     attributes={k: np.asarray(list(v)) for k, v in attributes.items()})
    return Frame("cam", index, ts, IMAGE, det)


def at(hour: int, minute: int = 0, second: float = 0.0, day: date = DAY) -> datetime:
    start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)
    return start + timedelta(seconds=second)


def run(proc: Heatmap, start: datetime, seconds: float, fps: float,
        feet: Sequence[tuple[float, float]] | Callable[[int], Sequence[tuple[float, float]]],
        first_index: int = 0, **attributes: Iterable[object]) -> list[Frame]:
    """Frames ``k / fps`` seconds after ``start``, ``k = 0 .. seconds * fps - 1``."""
    out = []
    for k in range(first_index, round(seconds * fps)):
        where = feet(k) if callable(feet) else feet
        f = frame(start + timedelta(seconds=k / fps), where, k, **attributes)
        out.append(proc.process(f))
    return out


def flush_now(proc: Heatmap) -> None:
    """Write what the processor holds, as its periodic flush does (after the watermark
    look-ups queued so far have answered: a flush never waits for them)."""
    proc.writer.flush()
    proc.flush()
    proc.writer.flush()


def hours_of(proc: Heatmap, first: date = DAY, last: date = DAY) -> dict[str, HourGrids]:
    return {key: read_hour(path) for key, path in hour_files(proc.folder, first, last)}


def cells(grid: np.ndarray | None) -> dict[tuple[int, int], float]:
    assert grid is not None
    return {(int(r), int(c)): float(grid[r, c]) for r, c in zip(*np.nonzero(grid), strict=True)}


# ---------------------------------------------------------------------------------------
# Person-seconds
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [7, 25, 8])
def test_standing_still_for_10_s_is_10_person_seconds_at_any_frame_rate(
        config: LookoutConfig, fps: int) -> None:
    proc = processor(config)
    run(proc, at(10), 10, fps, [(250, 350)])
    proc.close()
    (key, hour), = hours_of(proc).items()
    assert key == "2024-03-04T10"
    # the first frame stands for the interval to the second: 10 s of frames = 10 s
    assert cells(hour.image_presence) == {(3, 2): pytest.approx(10.0, abs=1e-5)}
    assert hour.seconds == pytest.approx(10.0, abs=1e-5)
    assert (hour.frames, hour.samples) == (10 * fps, 10 * fps)
    assert hour.image_size == (800, 600)
    assert not hour.image_violations.any()
    assert hour.floor is None  # "flat" has no calibration


def test_people_and_violations(config: LookoutConfig) -> None:
    proc = processor(config)
    run(proc, at(9), 4, 4, [(50, 50), (750, 550), (760, 590)],
        in_violation=[False, True, True])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert cells(hour.image_presence) == {(0, 0): 4.0, (5, 7): 8.0}
    assert cells(hour.image_violations) == {(5, 7): 8.0}
    assert hour.samples == 48


def test_points_outside_the_image_count_at_the_border(config: LookoutConfig) -> None:
    proc = processor(config)
    run(proc, at(9), 2, 4, [(-30, 700), (900, -10)])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert cells(hour.image_presence) == {(5, 0): 2.0, (0, 7): 2.0}


def test_a_gap_counts_at_most_max_frame_interval(config: LookoutConfig) -> None:
    proc = processor(config, MaxFrameInterval=2)
    for k, second in enumerate((0.0, 0.25, 60.25, 60.5)):
        proc.process(frame(at(9, 0, second), [(250, 350)], k))
    proc.close()
    (hour,) = hours_of(proc).values()
    assert hour.seconds == 0.25 + 0.25 + 2.0 + 0.25
    assert cells(hour.image_presence) == {(3, 2): 2.75}


def test_an_hour_boundary_splits_into_two_files(config: LookoutConfig) -> None:
    proc = processor(config)
    run(proc, at(10, 59, 55), 10.25, 4, [(250, 350)])  # 10:59:55.00 .. 11:00:05.00
    proc.close()
    hours = hours_of(proc)
    assert sorted(hours) == ["2024-03-04T10", "2024-03-04T11"]
    ten, eleven = hours["2024-03-04T10"], hours["2024-03-04T11"]
    assert (ten.frames, ten.seconds) == (20, 5.0)
    assert (eleven.frames, eleven.seconds) == (21, 5.25)
    assert cells(ten.image_presence) == {(3, 2): 5.0}
    assert cells(eleven.image_presence) == {(3, 2): 5.25}
    # the file names are local hours; the instants inside are exact
    assert datetime.fromtimestamp(ten.first_us / 1e6, TZ) == at(10, 59, 55)
    assert datetime.fromtimestamp(eleven.last_us / 1e6, TZ) == at(11, 0, 5)


def test_the_repeated_hour_of_a_dst_fall_back_shares_its_file(
        tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Europe/London, 2024-10-27: 01:00-02:00 local happens twice (BST, then GMT)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    config = load_config(write_config(tmp_path, shared, tz="Europe/London"), check_files=False)
    proc = processor(config, MaxFrameInterval=120)
    utc = ZoneInfo("UTC")
    start = datetime(2024, 10, 27, 0, 0, tzinfo=utc)  # 01:00 BST
    for k in range(121):  # a frame a minute up to 02:00 UTC = 02:00 GMT
        proc.process(frame(start + timedelta(minutes=k), [(250, 350)], k))
    proc.close()
    hours = hours_of(proc, date(2024, 10, 27), date(2024, 10, 27))
    assert sorted(hours) == ["2024-10-27T01", "2024-10-27T02"]
    assert hours["2024-10-27T01"].seconds == 2 * 3600.0  # both 01:00 hours
    assert hours["2024-10-27T01"].frames == 120
    assert hours["2024-10-27T02"].seconds == 60.0


def test_flushes_while_running_add_up(config: LookoutConfig) -> None:
    proc = processor(config)
    run(proc, at(10), 5, 4, [(250, 350)])
    flush_now(proc)
    assert hours_of(proc)["2024-03-04T10"].seconds == 5.0  # readable before the hour ends
    run(proc, at(10), 10, 4, [(250, 350)], first_index=20)
    proc.close()
    assert hours_of(proc)["2024-03-04T10"].seconds == 10.0


# ---------------------------------------------------------------------------------------
# Range sums
# ---------------------------------------------------------------------------------------


def test_range_sums_are_exact(config: LookoutConfig) -> None:
    day2 = DAY + timedelta(days=1)
    a, b = (50, 50), (750, 550)  # cells (0, 0) and (5, 7)
    for start, feet in ((at(9), [a]), (at(14), [a, b]), (at(9, day=day2), [b])):
        proc = processor(config)  # a new run (a restarted worker) each time
        run(proc, start, 10, 8, feet)
        proc.close()
    folder = proc.folder

    def total(first: date, last: date, hours: str | None = None) -> dict:
        files = hour_files(folder, first, last, parse_hours(hours) if hours else None)
        return cells(sum_hours(files, "image", "presence", 8, 6).grid)

    assert total(DAY, DAY) == {(0, 0): 20.0, (5, 7): 10.0}
    assert total(day2, day2) == {(5, 7): 10.0}
    assert total(DAY, day2) == {(0, 0): 20.0, (5, 7): 20.0}
    assert total(DAY, day2, "9") == {(0, 0): 10.0, (5, 7): 10.0}
    assert total(DAY, day2, "10-23") == {(0, 0): 10.0, (5, 7): 10.0}
    assert total(DAY - timedelta(days=3), DAY - timedelta(days=1)) == {}

    result = sum_hours(hour_files(folder, DAY, day2), "image", "presence", 8, 6)
    assert [h["hour"] for h in result.hours] == ["2024-03-04T09", "2024-03-04T14",
                                                  "2024-03-05T09"]
    assert result.seconds == 30.0 and result.total == 40.0 and result.skipped == []
    assert days_of(result.hours) == [
        {"date": "2024-03-04", "hours": 2, "seconds": 20.0, "total": 30.0},
        {"date": "2024-03-05", "hours": 1, "seconds": 10.0, "total": 10.0},
    ]


def test_hours_filter_parsing() -> None:
    assert parse_hours("9-11, 20") == frozenset({9, 10, 11, 20})
    assert parse_hours("0,23") == frozenset({0, 23})
    for bad in ("", "24", "9-", "11-9", "a", "1-2-3", "-1", "007"):
        with pytest.raises(ValueError):
            parse_hours(bad)


def test_grids_of_another_shape_are_skipped_not_added(tmp_path: Path) -> None:
    small = HourGrids.zeros(8, 6, None)
    small.image_presence[0, 0] = 3.0
    small.frames, small.seconds = 1, 3.0
    big = HourGrids.zeros(16, 12, None)
    big.image_presence[1, 1] = 5.0
    big.frames, big.seconds = 1, 5.0
    merge_into(tmp_path / "2024-03-04T09.npz", small)
    merge_into(tmp_path / "2024-03-04T10.npz", big)
    result = sum_hours(hour_files(tmp_path, DAY, DAY), "image", "presence", 8, 6)
    assert result.grid.shape == (12, 16)  # the newest file sets the grid
    assert cells(result.grid) == {(1, 1): 5.0}
    assert [s["hour"] for s in result.skipped] == ["2024-03-04T09"]
    floor = sum_hours(hour_files(tmp_path, DAY, DAY), "floor", "presence", 8, 6)
    assert floor.grid.shape == (6, 8) and not floor.grid.any() and len(floor.skipped) == 2


# ---------------------------------------------------------------------------------------
# Restarts
# ---------------------------------------------------------------------------------------


def walk(k: int) -> list[tuple[float, float]]:
    """Two people: one walks right 10 px per frame, one stands."""
    return [(20 + 10 * (k % 78), 250), (420, 480)]


def test_a_restart_neither_loses_nor_double_counts(tmp_path: Path, shared: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = load_config(write_config(tmp_path / "a", shared), check_files=False)
    crashing = load_config(write_config(tmp_path / "b", shared), check_files=False)
    start = at(10, 59, 30)  # a minute at 4 fps across an hour boundary

    whole = processor(straight)
    run(whole, start, 60, 4, walk)
    whole.close()

    first = processor(crashing)
    frames = [frame(start + timedelta(seconds=k / 4), walk(k), k) for k in range(240)]
    for f in frames[:100]:
        first.process(f)
    flush_now(first)  # frames 0-99 reach the files
    for f in frames[100:150]:
        first.process(f)  # 100-149 only in memory: the worker dies here
    first.writer.flush()

    # the restarted worker replays the recording from its start
    again = processor(crashing)
    for f in frames:
        again.process(f)
    again.close()
    # 0-99 were flushed, and so were 100-119: frame 120 opened hour 11, which wrote hour 10
    # (and frame 120 too when hour 11's watermark look-up had answered by then)
    assert again.frames_skipped in (120, 121)

    expected, got = hours_of(whole), hours_of(again)
    assert sorted(expected) == sorted(got) == ["2024-03-04T10", "2024-03-04T11"]
    for key in expected:
        assert got[key].frames == expected[key].frames
        assert got[key].seconds == expected[key].seconds
        np.testing.assert_array_equal(got[key].image_presence, expected[key].image_presence)
        np.testing.assert_array_equal(got[key].floor_presence is None, True)

    # processing the same recording once more adds nothing
    third = processor(crashing)
    for f in frames:
        third.process(f)
    third.close()
    assert third.frames_skipped == 240
    for key, hour in hours_of(third).items():
        np.testing.assert_array_equal(hour.image_presence, expected[key].image_presence)


def test_a_resumed_worker_continues_exactly(config: LookoutConfig) -> None:
    """The supervisor's resume (the next frame index) after a crash that lost nothing."""
    frames = [frame(at(10, 0, k / 4), walk(k), k) for k in range(80)]
    first = processor(config)
    for f in frames[:30]:
        first.process(f)
    flush_now(first)
    resumed = processor(config)
    for f in frames[30:]:
        resumed.process(f)
    resumed.close()
    (hour,) = hours_of(resumed).values()
    assert hour.frames == 80 and hour.seconds == 20.0
    assert hour.image_presence.sum() == 40.0


def test_a_checkpoint_is_confirmed_once_its_counts_are_on_disk(
        tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's resume checkpoint: the stage merges what it holds and confirms on the
    writer thread once the file has it.  A run killed later (what it held since is lost)
    and resumed from that frame, with the state saved there and the worker's warm-up
    replay, ends with exactly one run's grids (before: the frames since the last periodic
    flush were lost)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = load_config(write_config(tmp_path / "a", shared), check_files=False)
    crashing = load_config(write_config(tmp_path / "b", shared), check_files=False)
    frames = [frame(at(10, 0, k / 4), walk(k), k) for k in range(120)]

    whole = processor(straight)
    for f in frames:
        whole.process(f)
    whole.close()

    first = processor(crashing)
    for f in frames[:60]:
        first.process(f)
    first.writer.flush()  # the hour's watermark look-up has answered
    state = dumps(first.snapshot())
    on_disk: list[int] = []
    assert first.checkpoint(lambda sizes: on_disk.append(
        read_hour(hour_files(first.folder, DAY, DAY)[0][1]).frames))
    first.writer.flush()
    assert on_disk == [60]  # called back after the merge, which holds every frame so far
    for f in frames[60:100]:
        first.process(f)  # only in memory: the worker is killed here

    resumed = processor(crashing)
    for f in frames[60 - 25:60]:
        resumed.process(f)  # the warm-up replay: frames the file has already
    resumed.restore(loads(state))
    for f in frames[60:]:
        resumed.process(f)
    resumed.close()
    expected, got = hours_of(whole), hours_of(resumed)
    assert sorted(got) == sorted(expected) == ["2024-03-04T10"]
    for key in expected:
        assert got[key].frames == expected[key].frames == 120
        assert got[key].seconds == pytest.approx(expected[key].seconds)
        np.testing.assert_allclose(got[key].image_presence, expected[key].image_presence)


def test_no_checkpoint_while_an_hour_waits_for_its_watermark(config: LookoutConfig) -> None:
    """Frames held for their hour's watermark are not counted yet: the stage does not
    confirm a checkpoint then (the pipeline's resume point stays where it was)."""
    proc = processor(config)
    release = threading.Event()
    proc.writer.submit(release.wait)  # the writer is busy: the look-up cannot answer
    try:
        run(proc, at(10), 2, 4, walk)
        called: list[dict[str, int]] = []
        assert proc.checkpoint(called.append)
    finally:
        release.set()
    proc.writer.flush()
    assert called == []
    assert proc.checkpoint(called.append)  # answered now: this one is confirmed
    proc.writer.flush()
    assert called == [{}]
    proc.close()
    assert not proc.checkpoint(called.append)  # a closed stage keeps nothing more


def test_an_unreadable_file_is_set_aside(config: LookoutConfig) -> None:
    proc = processor(config)
    proc.folder.mkdir(parents=True)
    (proc.folder / "2024-03-04T10.npz").write_bytes(b"not a zip file")
    run(proc, at(10), 2, 4, [(250, 350)])
    proc.close()
    assert (proc.folder / "2024-03-04T10.npz.corrupt").read_bytes() == b"not a zip file"
    assert hours_of(proc)["2024-03-04T10"].seconds == 2.0


# ---------------------------------------------------------------------------------------
# Floor plane
# ---------------------------------------------------------------------------------------


def test_floor_grid_with_a_known_homography(config: LookoutConfig) -> None:
    proc = processor(config, "scaled")
    # foot (250, 350) px -> floor (-1.5, -0.5) m -> cell column 2 (-2..-1), row 2 (-1..0)
    run(proc, at(10), 3, 4, [(250, 350), (750, 50)], in_violation=[True, False])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert hour.floor is not None
    assert hour.floor.extent == pytest.approx((-4, -3, 4, 3))
    assert hour.floor.cell == pytest.approx(1.0)
    # (750, 50) px -> (3.5, 2.5) m -> column 7, row 5 (image row 0: the floor's y is flipped)
    assert cells(hour.floor_presence) == {(2, 2): pytest.approx(3.0),
                                          (5, 7): pytest.approx(3.0)}
    assert cells(hour.floor_violations) == {(2, 2): pytest.approx(3.0)}
    assert cells(hour.image_presence) == {(3, 2): 3.0, (0, 7): 3.0}
    assert hour.floor_outside.tolist() == [0.0, 0.0]


def test_floor_extent_and_people_outside_it(config: LookoutConfig) -> None:
    proc = processor(config, "scaled", FloorExtent="-8,-6,8,6")
    run(proc, at(10), 2, 4, [(250, 350)])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert hour.floor is not None and hour.floor.cell == 2.0
    assert cells(hour.floor_presence) == {(2, 3): 2.0}  # (-1.5 + 8) // 2, (-0.5 + 6) // 2

    small = processor(config, "scaled", FloorExtent="0,0,4,3")
    run(small, at(11), 2, 4, [(250, 350), (650, 150)], in_violation=[True, False])
    small.close()
    hour = hours_of(small)["2024-03-04T11"]
    assert hour.floor is not None and hour.floor.cell == 0.5
    assert cells(hour.floor_presence) == {(3, 5): 2.0}  # (2.5, 1.5) m
    assert hour.floor_outside.tolist() == [2.0, 2.0]  # presence and violations outside


def test_floor_xy_of_an_earlier_stage_is_used(config: LookoutConfig) -> None:
    proc = processor(config, "scaled")
    run(proc, at(10), 1, 4, [(250, 350)], floor_xy=[(0.5, 0.5)])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert cells(hour.floor_presence) == {(3, 4): 1.0}


def test_floor_grid_follows_the_roi(tmp_path: Path, shared: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    extra = SCALED.replace("Id = scaled", "Id = roi").replace(
        "[Source_scaled]", "[Source_roi]") + "ROI = 400,300; 800,300; 800,600; 400,600\n"
    config = load_config(write_config(tmp_path, shared, extra), check_files=False)
    proc = processor(config, "roi")
    run(proc, at(10), 1, 4, [(500, 400)])
    proc.close()
    (hour,) = hours_of(proc).values()
    assert hour.floor is not None
    # ROI -> floor 0..4 x -3..0 m: cell = max(4 / 8, 3 / 6) = 0.5 m
    assert hour.floor.extent == pytest.approx((0, -3, 4, 0))


def test_floor_grid_is_cut_at_the_horizon() -> None:
    # w = y / 100 - 1: the horizon is the image line y = 100, everything above it is sky
    h = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0.01, -1.0]])
    image = np.array([[0, 0], [800, 0], [800, 600], [0, 600]], np.float64)
    calibration_px = np.array([[0, 300], [800, 300], [800, 600], [0, 600]], np.float64)
    projected = (h[:, :2] @ calibration_px.T + h[:, 2:3]).T
    ref = projected[:, :2] / projected[:, 2:3]  # (0, 150) (400, 150) (160, 120) (0, 120)
    grid = floor_grid_for(h, image, ref, 8, 6, max_distance=200.0)
    assert grid is not None
    # Cut at the horizon, the image shows the floor x >= 0, y >= 120 m (the bottom edge) out
    # to infinity; capped to 200 m around the calibration points' centre (140, 135): x 0..340,
    # y 120..335; square cells of max(340 / 8, 215 / 6) = 42.5 m centred on that box.
    assert grid.cell == pytest.approx(42.5)
    assert grid.extent == pytest.approx((0.0, 100.0, 340.0, 355.0))
    bottom = ref[2:]  # the bottom corners are on the floor and inside the grid
    assert (grid.cells(bottom) >= 0).all()
    sky = np.array([[0, 0], [800, 0], [800, 50], [0, 50]], np.float64)
    assert floor_grid_for(h, sky, ref, 8, 6) is None


def test_heat_levels() -> None:
    grid = np.array([[0.0, 1.0, 4.0]])
    assert heat_levels(grid).tolist() == [[0, 64, 255]]
    assert heat_levels(grid, "sqrt").tolist() == [[0, 128, 255]]
    assert heat_levels(grid, "log").tolist() == [[0, round(255 * np.log(2) / np.log(5)), 255]]
    assert heat_levels(np.array([[0.0, 0.001, 1000.0]])).tolist() == [[0, 1, 255]]  # visible
    assert heat_levels(np.zeros((2, 2))).tolist() == [[0, 0], [0, 0]]
    assert heat_levels(np.array([[np.nan, -1.0, 2.0]])).tolist() == [[0, 0, 255]]
    spot = np.zeros((5, 5))
    spot[2, 2] = 1.0
    blurred = heat_levels(spot, blur=1.0)
    assert blurred[2, 2] == 255 and 0 < blurred[2, 1] < 255 and blurred[1, 1] < blurred[2, 1]


# ---------------------------------------------------------------------------------------
# Clusters of engaged people
# ---------------------------------------------------------------------------------------


def test_clusters_of_engaged_people(config: LookoutConfig) -> None:
    proc = processor(config, Eps=40, MinSamples=2, WindowSeconds=60, UpdatePeriod=5)
    frames = run(proc, at(10), 10.25, 4, [(100, 500), (110, 500), (600, 300)],
                 engaged=[True, True, False])
    proc.close()
    # updates at the first frame of each 5 s slot: t = 0, 5 and 10 s
    events = [r for f in frames for r in f.records]
    assert all(isinstance(e, Clusters) for e in events) and len(events) == 3
    assert [e.frame for e in events] == [0, 20, 40]
    assert (events[-1].space, events[-1].eps, events[-1].min_samples) == ("image", 40.0, 2)
    latest = frames[-1].metrics["engagement_clusters"]
    assert latest["space"] == "image" and latest["eps"] == 40.0
    assert latest["engaged_attribute"] is True
    # at t = 10 s the window holds frames 0-40: 41 frames x 2 engaged people x 0.25 s
    assert latest["clusters"] == [{"position": [105.0, 500.0], "intensity": 20.5,
                                   "radius": 5.0, "samples": 82}]
    assert [c.to_dict() for c in events[-1].clusters] == [
        {**c, "image_position": None} for c in latest["clusters"]]  # image space: none
    saved = json.loads((proc.folder / "clusters.json").read_text())
    assert saved["camera_id"] == "flat" and saved["clusters"] == latest["clusters"]


def test_everybody_counts_without_an_engagement_stage(config: LookoutConfig) -> None:
    proc = processor(config, Eps=40, MinSamples=2, UpdatePeriod=5)
    frames = run(proc, at(10), 5.25, 4, [(100, 500), (600, 300)])
    proc.close()
    latest = frames[-1].metrics["engagement_clusters"]
    assert latest["engaged_attribute"] is False
    assert sorted(c["position"][0] for c in latest["clusters"]) == [100.0, 600.0]


def test_floor_clusters_of_a_calibrated_camera(config: LookoutConfig) -> None:
    proc = processor(config, "scaled", EpsMetres=0.5, MinSamples=2, UpdatePeriod=5)
    frames = run(proc, at(10), 5.25, 4, [(250, 350)])
    proc.close()
    latest = frames[-1].metrics["engagement_clusters"]
    assert latest["space"] == "floor" and latest["eps"] == 0.5
    (cluster,) = latest["clusters"]
    assert cluster["position"] == [-1.5, -0.5]
    assert cluster["image_position"] == [250.0, 350.0]


def test_clusters_can_be_turned_off(config: LookoutConfig) -> None:
    proc = processor(config, Clusters=False)
    frames = run(proc, at(10), 1, 4, [(100, 500)])
    proc.close()
    assert "engagement_clusters" not in frames[-1].metrics
    assert not (proc.folder / "clusters.json").exists()


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------


def test_the_ini_section(tmp_path: Path, shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    section = HEATMAP_SECTION
    config = load_config(write_config(tmp_path, shared, section), check_files=False)
    (pp,) = [p for p in config.source_post_processors if p.name == "heatmap"]
    assert isinstance(pp, HeatmapConfig)
    assert (pp.window_seconds, pp.eps, pp.min_samples, pp.update_period) == (3600, 40, 2, 10)
    assert POST_PROCESSORS.get("heatmap") is Heatmap
    assert pp.to_ini()["FloorExtent"] == ""
    bad = section.replace("MinSamples = 2", "MinSamples = 0")
    with pytest.raises(Exception, match="MinSamples"):
        load_config(write_config(tmp_path, shared, bad), check_files=False)
    bad = section.replace("FloorExtent =", "FloorExtent = 3,0,1,2")
    with pytest.raises(Exception, match="FloorExtent"):
        load_config(write_config(tmp_path, shared, bad), check_files=False)


HEATMAP_SECTION = """
[SourcePostProcessor_heatmap]
Name = heatmap
Enabled = True
MaxFrameInterval = 2
FlushSeconds = 10
FloorExtent =
FloorMaxDistance = 100
Clusters = True
WindowSeconds = 3600
Eps = 40
EpsMetres = 1
MinSamples = 2
UpdatePeriod = 10
"""


# ---------------------------------------------------------------------------------------
# End to end: the PETS clip through the shipped pipeline
# ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pets_end_to_end(pets_pipeline_run: dict, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped pipeline's frames of all of vtest.avi through the heatmap step (configured
    by the INI section) with real files: the grid holds every person-second of the clip, on
    the image and on the floor (pets-view1 is calibrated)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    base: LookoutConfig = pets_pipeline_run["config"]
    path = tmp_path / "config.ini"
    path.write_text(base.path.read_text() + HEATMAP_SECTION)
    config = load_config(path)
    (section,) = [p for p in config.source_post_processors if p.name == "heatmap"]
    source = config.sources[0]
    proc = POST_PROCESSORS.get("heatmap")(section, source, config)
    assert isinstance(proc, Heatmap)
    image = np.broadcast_to(np.zeros(1, np.uint8), (576, 768, 3))  # frames kept no pixels
    frames: list[Frame] = pets_pipeline_run["frames"]
    spent = 0.0
    for f in frames:
        copy = Frame(f.camera_id, f.index, f.timestamp, image, f.detections, dict(f.metrics))
        t0 = wallclock.perf_counter()
        proc.process(copy)
        spent += wallclock.perf_counter() - t0
    t0 = wallclock.perf_counter()
    proc.close()
    closing = wallclock.perf_counter() - t0
    per_frame_ms = spent / len(frames) * 1000
    print(f"\nheatmap step on PETS: {per_frame_ms:.3f} ms per frame over {len(frames)} frames "
          f"(close {closing * 1000:.1f} ms)")

    ts = [f.timestamp.timestamp() for f in frames]
    intervals = [min(b - a, 2.0) for a, b in itertools.pairwise(ts)]
    weights = [intervals[0], *intervals]
    people = [len(f.detections) for f in frames]
    expected = sum(n * w for n, w in zip(people, weights, strict=True))
    assert sum(weights) == pytest.approx(795 / 7, abs=0.01)  # 7 fps: 113.6 s of video

    (key, hour), = hours_of(proc, date(2009, 3, 1), date(2009, 3, 1)).items()
    assert key == "2009-03-01T10"  # StartTime 10:00 UTC, TimeZone UTC, 114 s
    assert hour.frames == len(frames) and hour.samples == sum(people)
    assert hour.seconds == pytest.approx(sum(weights), abs=1e-4)
    assert hour.image_presence.shape == (150, 150)
    assert hour.image_presence.sum() == pytest.approx(expected, abs=1e-3)
    assert expected > 400  # about 6 people on average
    violating = sum(int(np.count_nonzero(f.detections.attributes["in_violation"])) * w
                    for f, w in zip(frames, weights, strict=True))
    assert hour.image_violations.sum() == pytest.approx(violating, abs=1e-3)

    # the floor grid exists because pets-view1 is calibrated; the ROI bounds it
    assert hour.floor is not None and hour.floor_presence is not None
    x0, y0, x1, y1 = hour.floor.extent
    assert 25 < x1 - x0 < 40 and 25 < y1 - y0 < 40
    assert hour.floor_presence.sum() + hour.floor_outside[0] == pytest.approx(expected, abs=1e-3)
    assert hour.floor_outside[0] == pytest.approx(0.0, abs=1e-6)  # feet are inside the ROI

    saved = json.loads((proc.folder / "clusters.json").read_text())
    assert saved["space"] == "floor" and saved["clusters"]
    assert sum(c["intensity"] for c in saved["clusters"]) <= expected + 1e-6
    assert per_frame_ms < 5.0
