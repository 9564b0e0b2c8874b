"""Recordings stamped with their own clock; live sources that keep only the newest frame and
reconnect with backoff.  All on real video files."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from processor.sources import LiveSource, RecordingSource, SourceError, list_recordings
from tests.conftest import PETS, TUD

START = datetime(2026, 1, 5, 8, 30, tzinfo=UTC)


def write_clip(path: Path, frames: int, fps: float, shade: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    assert writer.isOpened()
    for i in range(frames):
        image = np.full((48, 64, 3), shade, np.uint8)
        cv2.putText(image, str(i), (5, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(image)
    writer.release()


def drain(source: RecordingSource) -> list:
    out = []
    try:
        while (sf := source.read()) is not None:
            out.append(sf)
    finally:
        source.close()
    return out


def test_recording_uses_video_clock(shared: Path) -> None:
    frames = drain(RecordingSource([TUD / "tud_campus.mp4"], START, UTC))
    assert len(frames) == 71
    assert [f.index for f in frames] == list(range(71))
    assert frames[0].timestamp == START
    assert frames[50].timestamp == START + timedelta(seconds=2)  # 25 fps
    assert frames[0].image.shape == (480, 640, 3)


def test_frame_rate_override_and_resume(shared: Path) -> None:
    src = RecordingSource([PETS / "vtest.avi"], START, UTC, fps_override=7, start_index=700)
    assert src.total_frames == 795
    frames = drain(src)
    assert [f.index for f in frames] == list(range(700, 795))
    assert frames[0].timestamp == START + timedelta(seconds=100)


def test_resize_and_naive_start_time_in_zone(shared: Path) -> None:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Paris")
    src = RecordingSource([TUD / "tud_campus.mp4"], datetime(2026, 7, 1, 12, 0), tz,
                          resize_to=(320, 240))
    first = src.read()
    src.close()
    assert first is not None
    assert first.image.shape == (240, 320, 3)
    assert first.timestamp.isoformat() == "2026-07-01T12:00:00+02:00"


def test_folder_of_recordings_is_one_continuous_clock(tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    write_clip(folder / "b_second.avi", 10, 5.0, 200)
    write_clip(folder / "a_first.avi", 10, 5.0, 50)
    (folder / "notes.txt").write_text("not a video")
    paths = list_recordings(folder)
    assert [p.name for p in paths] == ["a_first.avi", "b_second.avi"]
    frames = drain(RecordingSource(paths, START, UTC))
    assert [f.index for f in frames] == list(range(20))
    assert frames[10].timestamp == START + timedelta(seconds=2)
    assert frames[9].image.mean() < 120 < frames[10].image.mean()
    # Resuming inside the second file skips the first entirely.
    resumed = drain(RecordingSource(paths, START, UTC, start_index=13))
    assert [f.index for f in resumed] == list(range(13, 20))
    assert resumed[0].timestamp == START + timedelta(seconds=13 / 5)


def test_default_start_time_is_modification_time_minus_duration(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    write_clip(clip, 20, 10.0, 100)
    mtime = datetime(2026, 3, 3, 12, 0, 10, tzinfo=UTC)
    os.utime(clip, (mtime.timestamp(), mtime.timestamp()))
    src = RecordingSource([clip], None, UTC)
    assert src.start_time == mtime - timedelta(seconds=2)
    src.close()


def test_empty_folder_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no video files"):
        list_recordings(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot open"):
        RecordingSource([bad], START, UTC)


def damaged_copy(path: Path) -> Path:
    """vtest.avi with 25 % of its bytes, a stretch in the middle, zeroed (how the issue
    reproduced it: OpenCV then skipped 214 frames and stamped the rest 31 s early)."""
    data = bytearray((PETS / "vtest.avi").read_bytes())
    a, b = int(len(data) * 0.35), int(len(data) * 0.6)
    data[a:b] = bytes(b - a)
    path.write_bytes(bytes(data))
    return path


def test_corrupt_stretch_is_counted_and_later_frames_keep_their_time(
        tmp_path: Path, shared: Path, caplog: pytest.LogCaptureFixture) -> None:
    clip = damaged_copy(tmp_path / "damaged.avi")
    caplog.set_level(logging.WARNING, logger="processor.sources")
    src = RecordingSource([clip], START, UTC, fps_override=7)
    frames = []
    degraded_after_gap = held = None
    try:
        while (sf := src.read()) is not None:
            frames.append(sf)
            if sf.skipped:
                degraded_after_gap = src.problem()
            elif frames[-2:-1] and frames[-2].skipped:
                held = src.problem()  # still degraded a frame later (held 2 s)
    finally:
        src.close()
    assert held == degraded_after_gap
    gaps = [(f.index, f.skipped) for f in frames if f.skipped]
    assert gaps == [(486, 214)]
    assert len(frames) == 795 - 214 and src.skipped_frames == 214
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))
    # Every frame keeps the time of its place in the clip: the last one is 794 / 7 s in.
    assert frames[-1].index == 794
    assert frames[-1].timestamp == START + timedelta(seconds=794 / 7)
    for f in frames[::50]:
        assert f.timestamp == START + timedelta(seconds=f.index / 7)
    assert degraded_after_gap is not None and degraded_after_gap[0] == "degraded"
    assert "214 undecodable frame(s) skipped before frame 486" in degraded_after_gap[1]
    assert any("214 frame(s) could not be decoded before frame 486" in r.getMessage()
               for r in caplog.records)


def test_intact_clip_has_no_gap(shared: Path) -> None:
    src = RecordingSource([PETS / "vtest.avi"], START, UTC, fps_override=7, start_index=300)
    frames = drain(src)
    assert [f.index for f in frames] == list(range(300, 795))
    assert not any(f.skipped for f in frames) and src.skipped_frames == 0
    assert src.problem() is None


def test_live_source_keeps_only_the_newest_frame(shared: Path) -> None:
    src = LiveSource(str(PETS / "vtest.avi"), UTC, "slow-consumer")
    try:
        seen = []
        for _ in range(3):
            sf = src.read(timeout=5)
            assert sf is not None
            seen.append(sf.index)
            time.sleep(0.05)  # a slow pipeline: the capture thread runs ahead
        assert seen == sorted(seen)
        assert all(b - a > 1 for a, b in itertools.pairwise(seen)), seen
        assert abs((datetime.now(UTC) - sf.timestamp).total_seconds()) < 5  # wall clock
    finally:
        src.close()
    assert src.state == "stopped"


def test_live_source_reconnects_with_backoff(tmp_path: Path, shared: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "camera.mp4"
    caplog.set_level(logging.INFO, logger="processor.sources")
    src = LiveSource(str(target), UTC, "cam-x", backoff_initial=0.05, backoff_max=0.2)
    try:
        assert src.read(timeout=0.5) is None  # nothing there yet
        assert src.reconnects >= 2 and src.state in ("connecting", "disconnected")
        problem = src.problem()
        assert problem is not None and problem[0] == "connecting"
        assert problem[1] in ("opening the stream", f"OpenCV cannot open {target}",
                              f"OpenCV cannot open {target}; retrying every 0.2 s")
        shutil.copy(TUD / "tud_campus.mp4", target)  # the camera comes back
        sf = src.read(timeout=5)
        assert sf is not None and sf.image.shape == (480, 640, 3)
    finally:
        src.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("cam-x: connecting -> disconnected" in m for m in messages)
    assert any("-> connected" in m for m in messages)
