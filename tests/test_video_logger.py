"""video_logger: a decodable annotated live.jpg, written off the frame loop."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

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
from libs.loggers import SOURCE_LOGGERS
from libs.loggers.drawing import Annotations, annotate, draw_pair_lines
from libs.loggers.video_logger import PreviewJob, VideoLogger, preview_path

T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each config's data lives in ``<its folder>/data`` (the default DataDirectory)."""
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    return tmp_path / "data"


def make_config(tmp_path: Path, loggers: list[PluginConfig] | None = None) -> LookoutConfig:
    source = SourceConfig.model_validate(
        {"Id": "cam1", "VideoPath": "clip.mp4", "ROI": "5,5; 300,5; 300,200; 5,200"}
    )
    return LookoutConfig(
        path=tmp_path / "config.ini",
        app=AppConfig(TimeZone="Europe/London"),
        api=ApiConfig(),
        core=CoreConfig(),
        detector=DetectorConfig(),
        tracker=TrackerConfig(Name="IOUTracker"),
        sources=[source],
        areas=[],
        source_post_processors=[],
        source_loggers=loggers or [],
        area_loggers=[],
        periodic_tasks=[],
    )


def section(**ini: str) -> PluginConfig:
    return VideoLogger.Config.model_validate({"Name": "video_logger", **ini})


def make_frame(index: int = 0, size: tuple[int, int] = (240, 320)) -> Frame:
    h, w = size
    image = np.full((h, w, 3), 90, np.uint8)
    det = Detections(
        boxes=np.array([[20, 40, 80, 200], [100, 40, 160, 200], [220, 30, 280, 190]]),
        scores=np.array([0.9, 0.8, 0.7]),
        track_ids=np.array([1, 2, -1]),
        attributes={"in_violation": np.array([True, True, False])},
    )
    metrics = {
        "people": 3,
        "violating_people": 2,
        "violating_pairs": 1,
        "violating_pair_indexes": [(0, 1)],
        "occupancy": 3,
        "occupancy_threshold": 2,
    }
    return Frame("cam1", index, T0 + timedelta(seconds=index), image, det, metrics)


def test_registered_and_config_keys() -> None:
    assert SOURCE_LOGGERS.get("video_logger") is VideoLogger
    cfg = section(MaxFPS="2.5", PreviewDirectory="prev", JpegQuality="55")
    assert cfg.model_dump() == {
        "name": "video_logger",
        "enabled": True,
        "max_fps": 2.5,
        "preview_directory": "prev",
        "jpeg_quality": 55,
    }
    for bad in ({"MaxFPS": "0"}, {"JpegQuality": "0"}, {"JpegQuality": "101"}):
        with pytest.raises(ValidationError):
            section(**bad)


def test_preview_jpeg_appears_and_decodes(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path)
    logger = VideoLogger(section(), config.sources[0], config)
    logger.log(make_frame())
    logger.close()
    path = data_dir / "processor/static/previews/cam1/live.jpg"
    assert preview_path(config, "cam1") == path
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (240, 320, 3)
    b, g, r = (int(v) for v in image[120, 20])  # left edge of a violating box: red
    assert r > 150 and g < 100 and b < 100
    b, g, r = (int(v) for v in image[120, 220])  # left edge of the third box: green
    assert g > 150 and r < 100
    assert int(image[235, 160].sum()) < 3 * 120  # untouched background stays grey
    assert sorted(p.name for p in path.parent.iterdir()) == ["live.jpg"]  # no temporaries


def test_preview_directory_setting(tmp_path: Path, data_dir: Path) -> None:
    cfg = section(PreviewDirectory="previews")
    config = make_config(tmp_path, [cfg])
    logger = VideoLogger(cfg, config.sources[0], config)
    logger.log(make_frame())
    logger.close()
    assert (data_dir / "previews/cam1/live.jpg").exists()
    assert preview_path(config, "cam1") == data_dir / "previews/cam1/live.jpg"


def test_log_returns_at_once_and_keeps_only_the_latest(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    logger = VideoLogger(section(MaxFPS="100000"), config.sources[0], config)
    rendered: list[int] = []
    release = threading.Event()
    real_render = logger._render

    def slow_render(job: PreviewJob) -> None:
        release.wait(5)  # an encoder far slower than the frame loop
        stamp = job.annotations.text_lines[0].split()[-1]  # frame k is at 10:00:k
        rendered.append(datetime.fromisoformat(stamp).second)
        real_render(job)

    logger._worker.handler = slow_render
    durations = []
    for k in range(30):
        start = time.perf_counter()
        logger.log(make_frame(k, size=(720, 1280)))
        durations.append(time.perf_counter() - start)
        deadline = time.monotonic() + 5
        while k == 0 and not logger._worker._busy and time.monotonic() < deadline:
            time.sleep(0.001)  # let the encoder take the first frame before the rest arrive
    assert max(durations) < 0.1
    release.set()
    assert logger.flush(10)
    logger.close()
    # the first frame (taken while the loop went on), then only the newest waiting one
    assert rendered == [0, 29]
    assert logger.previews_written == 2
    assert logger._worker.dropped == 28


def test_max_fps_limits_previews(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    logger = VideoLogger(section(MaxFPS="1"), config.sources[0], config)
    for k in range(50):
        logger.log(make_frame(k))
    assert logger.flush(10)
    assert logger.previews_written == 1
    logger.close()
    logger.log(make_frame(99))  # after close: ignored, no error


def test_annotate_draws_in_place_and_skips_bad_pairs() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    out = annotate(
        image,
        Annotations(
            boxes=np.array([[10, 10, 30, 30], [60, 60, 90, 90]], np.float32),
            in_violation=np.array([True, False]),
            pair_indexes=[(0, 1), (0, 7)],
            roi=[(1, 1), (98, 1), (98, 98)],
            text_lines=["hello"],
        ),
    )
    assert out is image
    assert image.any()
    blank = np.zeros((50, 50, 3), np.uint8)
    draw_pair_lines(blank, np.zeros((1, 4)), [(0, 3)])
    assert not blank.any()
