"""Engagement and audience end to end on a real clip: TUD-Campus (71 frames, 25 fps, people
walking along a sidewalk) through the real pipeline of the bundled configuration (detector,
tracker, the shipped post-processors, loggers), then the real report recomputation.

The ``faces`` and ``head_pose`` stages are used when they are registered (engagement then
takes the head yaw where a face is seen); otherwise directions come from the motion only.
Demographics stay off, as shipped.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from libs.config import load_config
from libs.frame import Frame
from libs.metrics import camera_dir, recompute_all, reports_dir
from libs.post_processors import POST_PROCESSORS
from processor.pipeline import CameraPipeline
from processor.sources import open_source
from tests.audience_helpers import write_config

pytestmark = pytest.mark.slow

TUD_SECTION = """
[Source_1]
Id = tud
Name = TUD campus
VideoPath = data/tud_campus/tud_campus.mp4
StartTime = 2009-03-01T12:00:00+00:00
"""
# A display at the right end of the sidewalk: people walking right face it.
ENGAGEMENT_TARGET = "CameraTargets = tud: 639,0 639,479\n"
# TUD's faces are 15-30 px wide: measure them anyway (the default MinFaceSize is 32).
DEMOGRAPHICS_SETTINGS = "MinFaceSize = 16\nEveryFrames = 2\n"
FRAMES = 71
FRAME_MS = 40


def stage_sections(demographics: bool = False) -> tuple[str, list[str]]:
    """INI sections of faces/head_pose (when registered and usable with their defaults),
    demographics (when asked), engagement and audience, in the shipped order."""
    names: list[str] = []
    for name in ("faces", "head_pose"):
        if name in POST_PROCESSORS.names():
            try:
                POST_PROCESSORS.get(name).Config.model_validate({"Name": name})
            except ValueError:
                continue
            names.append(name)
    if demographics and "faces" in names:
        names.append("demographics")
    names += ["engagement", "audience"]
    extra = {"engagement": ENGAGEMENT_TARGET, "demographics": DEMOGRAPHICS_SETTINGS}
    text = "".join(
        f"\n[SourcePostProcessor_{10 + k}]\nName = {name}\nEnabled = True\n"
        + extra.get(name, "")
        for k, name in enumerate(names)
    )
    return text, names


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def rows_of(folder: Path) -> list[dict[str, str]]:
    return [row for path in sorted(folder.glob("*.csv")) for row in read_rows(path)]


def run_tud(folder: Path, shared: Path, demographics: bool) -> dict[str, Any]:
    sections, names = stage_sections(demographics)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("LOOKOUT_DATA_DIR", raising=False)
        config = load_config(write_config(folder, shared, TUD_SECTION + sections))
        source_cfg = config.source("tud")
        pipeline = CameraPipeline(config, source_cfg)
        assert [n for n, _ in pipeline.after][-len(names):] == names
        source = open_source(config, source_cfg)
        frames: list[Frame] = []
        try:
            while (sf := source.read()) is not None:
                frame = pipeline.process(Frame("tud", sf.index, sf.timestamp, sf.image))
                frame.image = None  # type: ignore[assignment]  # keep memory small
                frames.append(frame)
        finally:
            source.close()
            pipeline.close()
        results = recompute_all(config)
    assert all(r.error is None for r in results)
    return {"config": config, "frames": frames, "names": names,
            "root": camera_dir(config, "tud")}


@pytest.fixture(scope="module")
def tud_run(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_tud(tmp_path_factory.mktemp("tud_audience"), shared, demographics=False)


def test_every_track_gets_one_audience_and_one_engagement_event(tud_run) -> None:
    frames: list[Frame] = tud_run["frames"]
    assert len(frames) == FRAMES
    seen = {int(t) for f in frames for t in f.detections.track_ids}
    assert len(seen) >= 5  # 8 people in the ground truth, 5 of them in view >= 1 s
    root: Path = tud_run["root"]
    audience = rows_of(root / "events" / "audience")
    engagement = rows_of(root / "events" / "engagement")
    assert sorted(int(r["TrackId"]) for r in audience) == sorted(seen)
    assert sorted(int(r["TrackId"]) for r in engagement) == sorted(seen)
    # every row of the frames carries the attributes of the contract
    for frame in frames:
        attrs = frame.detections.attributes
        assert attrs["direction"].shape == (len(frame.detections), 2)
        assert attrs["engaged"].shape == (len(frame.detections),)
    # both stages count time alike: present = observed = last seen - first seen
    by_id = {r["TrackId"]: r for r in engagement}
    for row in audience:
        eng = by_id[row["TrackId"]]
        assert row["Present"] == eng["ObservedSeconds"]
        assert row["Timestamp"] == eng["LastSeen"]
        assert float(eng["EngagedSeconds"]) <= float(eng["ObservedSeconds"])
        span = datetime.fromisoformat(eng["LastSeen"]) - datetime.fromisoformat(eng["FirstSeen"])
        assert float(eng["ObservedSeconds"]) == pytest.approx(span.total_seconds(), abs=1e-3)
        assert int(row["PassingBy"]) == (float(row["Present"]) >= 1.0)
        # nobody stands 3 s in a 2.84 s clip of people walking by
        assert row["Interested"] == "0"
        assert (row["AgeBand"], row["Gender"], row["Emotion"]) == ("", "", "")
        if "head_pose" not in tud_run["names"] and "faces" not in tud_run["names"]:
            assert row["Looking"] != ""  # from the engagement stage's `engaged`


def test_raw_logs_and_reports_sum_to_the_events(tud_run) -> None:
    root: Path = tud_run["root"]
    audience = rows_of(root / "events" / "audience")
    engagement = rows_of(root / "events" / "engagement")
    raw = rows_of(root / "audience_log")
    passing = sum(int(r["PassingBy"]) for r in audience)
    assert passing >= 3
    assert sum(int(r["People"]) for r in raw) == len(audience)
    assert sum(int(r["PassingBy"]) for r in raw) == passing
    assert sum(int(r["Interested"]) for r in raw) == 0
    eng_raw = rows_of(root / "engagement_log")
    assert sum(int(r["People"]) for r in eng_raw) == len(engagement)
    engaged = [r for r in engagement if float(r["EngagedSeconds"]) > 0]
    assert engaged  # people walking right face the display (the motion or their head)
    assert sum(int(r["EngagedPeople"]) for r in eng_raw) == len(engaged)
    assert sum(int(r["EngagementMs"]) for r in eng_raw) == sum(
        round(float(r["EngagedSeconds"]) * 1000) for r in engaged)
    assert sum(int(r["ObservedMs"]) for r in eng_raw) == (FRAMES - 1) * FRAME_MS
    # the reports: one day, the same sums
    (day,) = read_rows(reports_dir(root) / "audience" / "daily.csv")
    assert (int(day["SumPeople"]), int(day["SumPassingBy"])) == (len(audience), passing)
    (eday,) = read_rows(reports_dir(root) / "engagement" / "daily.csv")
    assert int(eday["SumPeople"]) == len(engagement)
    assert int(eday["SumObservedMs"]) == (FRAMES - 1) * FRAME_MS


def test_stage_costs_are_small(tud_run) -> None:
    frames: list[Frame] = tud_run["frames"]
    for name in ("engagement", "audience"):
        mean_ms = sum(f.timings[name] for f in frames) / len(frames)
        assert mean_ms < 5.0, (name, mean_ms)


def test_with_demographics_enabled(shared: Path, tmp_path: Path) -> None:
    if "faces" not in POST_PROCESSORS.names():
        pytest.skip("the faces stage is not registered")
    run = run_tud(tmp_path, shared, demographics=True)
    assert "demographics" in run["names"]
    root: Path = run["root"]
    audience = rows_of(root / "events" / "audience")
    assert audience and all(r["Gender"] in ("male", "female", "unknown") for r in audience)
    assert all(r["AgeBand"] and r["Emotion"] for r in audience)
    assert any(r["Gender"] != "unknown" for r in audience)  # faces of 16 px and more measured
    # the only images are the shipped loggers' (live preview, screenshots): none of faces
    images = [p.relative_to(tmp_path) for p in tmp_path.rglob("*")
              if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp")]
    assert images and all(
        {"previews", "screenshots"} & set(p.parts) for p in images), images
