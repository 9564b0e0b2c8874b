"""ResumeStore: what a restart continues from, and how it undoes writes past a checkpoint."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from libs.config import load_config
from libs.config.models import LookoutConfig, SourceConfig
from libs.loggers.writer import atomic_write_bytes
from libs.metrics.heatmap import heatmaps_dir
from processor.resume import ResumeStore
from tests.conftest import PETS


def _config(x86_config: Path, video: Path) -> tuple[LookoutConfig, SourceConfig]:
    text = x86_config.read_text().replace("VideoPath = data/pets09_s2l1/vtest.avi",
                                          f"VideoPath = {video}")
    x86_config.write_text(text)
    cfg = load_config(x86_config)
    return cfg, cfg.sources[0]


@pytest.fixture
def folder_source(tmp_path: Path, x86_config: Path) -> tuple[LookoutConfig, SourceConfig, Path]:
    videos = tmp_path / "data" / "recordings"  # sources must be inside the data or assets
    videos.mkdir(parents=True)
    os.symlink(PETS / "vtest.avi", videos / "a.avi")
    cfg, src = _config(x86_config, videos)
    return cfg, src, videos


def test_new_source_starts_at_zero_and_a_checkpoint_is_continued(folder_source) -> None:
    cfg, src, _ = folder_source
    store = ResumeStore(cfg, src)
    ck = store.load()
    assert (ck.next_index, ck.finished, ck.next_track_id) == (0, False, 1)
    assert store.path.exists()  # written at once: the reference time of a crash
    store.save(120, 17, {})
    again = ResumeStore(cfg, src).load()
    assert (again.next_index, again.finished, again.next_track_id) == (120, False, 17)
    store.save(795, 30, {}, finished=True)
    assert ResumeStore(cfg, src).load().finished


def test_recordings_added_to_a_folder_continue_it_and_a_replaced_file_restarts(
        folder_source) -> None:
    cfg, src, videos = folder_source
    store = ResumeStore(cfg, src)
    store.load()
    store.save(795, 30, {}, finished=True)
    os.symlink(PETS / "vtest.avi", videos / "b.avi")  # a new recording at the end
    ck = ResumeStore(cfg, src).load()
    assert (ck.next_index, ck.finished, ck.next_track_id) == (795, False, 30)
    # Replacing the first recording is another source: from frame 0, ids still go on.
    (videos / "a.avi").unlink()
    shutil.copy(PETS / "vtest.avi", videos / "a.avi")
    ck = ResumeStore(cfg, src).load()
    assert (ck.next_index, ck.finished, ck.next_track_id) == (0, False, 30)


def test_restore_cuts_logs_back_and_removes_files_made_after_the_checkpoint(
        folder_source) -> None:
    cfg, src, _ = folder_source
    store = ResumeStore(cfg, src)
    store.load()
    log = store.log_root / "objects_log" / "2009-03-01.csv"
    report = store.log_root / "reports" / "occupancy" / "daily.csv"
    old_other = store.log_root / "objects_log" / "2009-02-28.csv"
    for p in (log, report, old_other):
        p.parent.mkdir(parents=True, exist_ok=True)
    old_other.write_text("Timestamp\nold\n")
    past = time.time() - 3600
    os.utime(old_other, (past, past))
    log.write_text("Timestamp\nrow1\nrow2\n")
    store.save(50, 5, {str(log): log.stat().st_size})
    time.sleep(0.01)
    # The killed run wrote on past the checkpoint.
    with open(log, "a") as fh:
        fh.write("row3\nrow4\n")
    late = store.log_root / "events" / "dwell" / "2009-03-01.csv"
    late.parent.mkdir(parents=True)
    late.write_text("Timestamp\nlate\n")
    report.write_text("Date\n")
    # The heatmap merged its hour grid again (it holds the hour's frames since its start).
    grid = heatmaps_dir(store.log_root) / "2009-03-01T10.npz"
    grid.parent.mkdir(parents=True)
    grid.write_bytes(b"the whole hour")

    again = ResumeStore(cfg, src)
    again.load()
    assert again.restore_files() == (1, 1)
    assert log.read_text() == "Timestamp\nrow1\nrow2\n"
    assert not late.exists()
    assert report.exists() and old_other.exists()  # reports and older logs are kept
    assert grid.read_bytes() == b"the whole hour"  # and the heatmap's grids


def test_a_finished_recording_is_never_cut(folder_source) -> None:
    cfg, src, _ = folder_source
    store = ResumeStore(cfg, src)
    store.load()
    log = store.log_root / "objects_log" / "2009-03-01.csv"
    log.parent.mkdir(parents=True)
    log.write_text("Timestamp\nrow1\n")
    store.save(10, 2, {str(log): 10})
    store.save(795, 2, {}, finished=True)
    again = ResumeStore(cfg, src)
    again.load()
    assert again.restore_files() == (0, 0)
    assert log.read_text() == "Timestamp\nrow1\n"


def test_an_unreadable_progress_file_starts_over(folder_source) -> None:
    cfg, src, _ = folder_source
    store = ResumeStore(cfg, src)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("{not json")
    assert ResumeStore(cfg, src).load().next_index == 0


def test_the_state_read_back_is_always_the_progress_file_s_own(folder_source) -> None:
    """One state file per checkpoint: a late save of an older checkpoint, or a kill between
    writing a state and its progress file, never pairs the progress file with another
    frame's state; a finished recording keeps none."""
    from libs.state import dumps

    cfg, src, _ = folder_source
    store = ResumeStore(cfg, src)
    store.load()
    store.save(100, 5, {}, state=dumps({"frame": 100}))
    store.save(90, 4, {}, state=dumps({"frame": 90}))  # an older checkpoint, saved late
    # Killed after writing the next state, before its progress file:
    atomic_write_bytes(store.state_file(110), dumps((110, dumps({"frame": 110}))))
    again = ResumeStore(cfg, src)
    assert again.load().next_index == 100
    assert again.load_state() == {"frame": 100}
    again.save(120, 6, {}, state=dumps({"frame": 120}))
    left = sorted(p.name for p in store.state_file(0).parent.glob("*.state"))
    assert left == [store.state_file(120).name]
    again.save(200, 7, {}, finished=True)
    assert list(store.state_file(0).parent.glob("*.state")) == []
    assert ResumeStore(cfg, src).load_state() is None
