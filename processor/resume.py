"""Durable progress of each camera, so that a restart resumes instead of redoing.

One small JSON file per camera, ``<DataDirectory>/processor/progress/<camera>.json``, written
atomically.  It says which source it belongs to (a fingerprint of the recordings and of the
settings that give their frames a time), the first frame whose records are *not* yet on
disk, whether the recording is finished, the next track id to hand out, and the size of every
log file the camera had written at that moment.

A checkpoint is only taken once the log writer has written every line queued before it (the
checkpoint is a job on the writer's own queue), so ``next_index`` never runs ahead of what
is on disk.  A process killed between two checkpoints has written lines past the checkpoint;
:meth:`ResumeStore.restore_files` cuts each log back to its checkpointed size and removes
files made after the checkpoint, so the resumed run writes those records exactly once.  The
heatmap's hour grids are the exception: the checkpoint waits until they hold every frame
before it, and each file's newest frame keeps a resumed run from adding one twice.

* A finished recording is not processed again, across restarts and disable/enable.
* An interrupted recording resumes at its next frame, where the tracker and every stage take
  back what they knew at the checkpoint (``<camera>.<frame>.state`` beside the progress file,
  written with it: :mod:`libs.state`): the same tracks and ids, the same open dwell,
  engagement and audience sessions, the same sides of the counting lines, as if the run had
  never stopped.  The frames just before it are also run through the pipeline again without
  being logged (``Frame.replay``), for what keeps no such state (the heatmap's clock) and
  for a checkpoint without a state (another configuration, a damaged file): there the
  tracker at least learns who is where, though the ids and sessions start afresh.
* Track ids continue from the checkpoint, so ids of a resumed run never meet ids that an
  earlier run left in the logs.
* A changed source (another file, a file replaced, other StartTime/FrameRate/resolution)
  starts from frame 0; files added at the end of a folder of recordings continue it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from libs.config.loader import is_device, is_stream_url
from libs.config.models import LookoutConfig, SourceConfig
from libs.loggers.writer import atomic_write_bytes
from libs.metrics.heatmap import heatmaps_dir
from libs.state import dumps, loads
from libs.storage import source_log_root

log = logging.getLogger(__name__)

SCHEMA = 1
PROGRESS_FOLDER = "processor/progress"
# Frames run again, unlogged, before the resume point (tracker and line state warm up).
WARMUP_FRAMES = 25
# A file of the checkpoint's map untouched this long before the checkpoint is dropped from it.
KEEP_UNCHANGED_SECONDS = 2 * 24 * 3600


def is_live(source: SourceConfig) -> bool:
    return is_stream_url(source.video_path) or is_device(source.video_path)


def source_fingerprint(config: LookoutConfig, source: SourceConfig) -> dict[str, Any]:
    """What decides the frames and their times: the recordings and the clock settings."""
    from processor.sources import list_recordings

    common = {
        "start_time": source.start_time.isoformat() if source.start_time else None,
        "frame_rate": source.frame_rate,
        "resolution": list(config.app.resolution) if config.app.resolution else None,
        "timezone": str(config.app.tzinfo),
    }
    if is_live(source):
        # A hash, not the URL: it may carry credentials.
        digest = hashlib.sha256(source.video_path.encode()).hexdigest()[:16]
        return {"live": digest, **common}
    path = config.asset_path(source.video_path)
    try:
        files = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in list_recordings(path)]
    except (OSError, RuntimeError):
        files = []
    return {"path": str(path), "files": files, **common}


def _continues(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """``new`` is the same source as ``old``, possibly with recordings added at the end."""
    if {k: v for k, v in old.items() if k != "files"} != \
            {k: v for k, v in new.items() if k != "files"}:
        return False
    old_files, new_files = old.get("files", []), new.get("files", [])
    return new_files[: len(old_files)] == old_files


@dataclass
class Checkpoint:
    camera_id: str
    fingerprint: dict[str, Any]
    next_index: int = 0
    finished: bool = False
    next_track_id: int = 1
    saved_at: float = field(default_factory=time.time)
    files: dict[str, int] = field(default_factory=dict)
    schema: int = SCHEMA


class ResumeStore:
    """The checkpoint file of one camera.  ``save`` may be called from any thread."""

    def __init__(self, config: LookoutConfig, source: SourceConfig) -> None:
        self.config = config
        self.source = source
        self.path = config.data_path(PROGRESS_FOLDER) / f"{source.id}.json"
        self.log_root = source_log_root(config) / source.id
        self.fingerprint = source_fingerprint(config, source)
        self.live = is_live(source)
        self.checkpoint = Checkpoint(source.id, self.fingerprint)
        self._lock = threading.Lock()
        self._save_failing = False

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> Checkpoint | None:
        try:
            data = json.loads(self.path.read_text())
            if data.get("schema") != SCHEMA or data.get("camera_id") != self.source.id:
                raise ValueError("another schema or camera")
            return Checkpoint(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.warning("camera %s: unreadable progress file %s (%s); starting from frame 0",
                        self.source.id, self.path, exc)
            return None

    def load(self) -> Checkpoint:
        """The checkpoint this start continues from (a fresh one for a new or changed
        source).  Also writes it back, so a crash before the first checkpoint still has
        a reference time for :meth:`restore_files`."""
        old = self._read()
        ck = Checkpoint(self.source.id, self.fingerprint)
        if old is not None:
            ck.next_track_id = max(1, old.next_track_id)  # ids never repeat, whatever else
            if self.live:
                ck.files = old.files
                ck.saved_at = old.saved_at
            elif _continues(old.fingerprint, self.fingerprint):
                grown = len(self.fingerprint.get("files", [])) > \
                    len(old.fingerprint.get("files", []))
                ck.next_index = old.next_index
                ck.finished = old.finished and not grown
                ck.files = old.files
                ck.saved_at = old.saved_at
            else:
                log.warning("camera %s: the source changed since the last run; processing "
                            "it from frame 0", self.source.id)
        self.checkpoint = ck
        if old is None or old.fingerprint != ck.fingerprint or old.finished != ck.finished:
            self._write(ck)
        return ck

    def state_file(self, next_index: int) -> Path:
        """The tracker and stage state saved with the checkpoint at ``next_index``: one file
        per checkpoint, so a kill between writing it and the progress file, or a late save
        of an older checkpoint, never leaves the progress file beside another frame's state."""
        return self.path.with_name(f"{self.source.id}.{next_index}.state")

    def _drop_states(self, keep: int | None) -> None:
        """Remove the state files of every checkpoint but ``keep``."""
        pattern = re.compile(rf"{re.escape(self.source.id)}\.(\d+)\.state")
        for path in self.path.parent.glob(f"{glob.escape(self.source.id)}.*.state"):
            m = pattern.fullmatch(path.name)
            if m and int(m.group(1)) != keep:
                path.unlink(missing_ok=True)

    def load_state(self) -> Any | None:
        """The tracker and stage state saved with the checkpoint being resumed (for
        ``CameraPipeline.restore``); None when there is none for its frame."""
        ck = self.checkpoint
        if ck.finished or self.live or ck.next_index == 0:
            return None
        try:
            index, blob = loads(self.state_file(ck.next_index).read_bytes())
            return loads(blob) if index == ck.next_index else None
        except FileNotFoundError:
            return None
        except Exception as exc:  # any damage: fall back to the warm-up
            log.warning("camera %s: unreadable tracker state %s (%s); tracks start afresh at "
                        "the resume point", self.source.id, self.state_file(ck.next_index),
                        exc)
            return None

    # -- undoing what came after the checkpoint ---------------------------------------------
    def restore_files(self) -> tuple[int, int]:
        """Cut the camera's logs back to the checkpoint.  Returns (files cut, files removed).

        Must run before the loggers open their files.  Finished recordings are left alone.
        """
        ck = self.checkpoint
        if ck.finished or self.live:  # a live stream's frames cannot be run again
            return 0, 0
        cut = removed = 0
        for name, size in ck.files.items():
            path = Path(name)
            try:
                if path.stat().st_size > size:
                    os.truncate(path, size)
                    cut += 1
            except FileNotFoundError:
                continue
        if self.log_root.is_dir():
            known = set(ck.files)
            # Never cut: the reports, recomputed from the logs; the heatmap's hour grids,
            # rewritten whole at each merge (its newest frame inside keeps a resumed run from
            # adding a frame twice, and a checkpoint is taken only once they hold every frame
            # before it: removing one would lose the whole hour).
            keep = (self.log_root / "reports", heatmaps_dir(self.log_root))
            for path in self.log_root.rglob("*"):
                if any(path.is_relative_to(folder) for folder in keep):
                    continue
                try:
                    if path.is_file() and str(path) not in known and \
                            path.stat().st_mtime > ck.saved_at:
                        path.unlink()
                        removed += 1
                except FileNotFoundError:
                    continue
        if cut or removed:
            log.info("camera %s: logs cut back to the checkpoint at frame %d (%d files cut, "
                     "%d removed)", self.source.id, ck.next_index, cut, removed)
        return cut, removed

    # -- writing ---------------------------------------------------------------------------
    def _write(self, ck: Checkpoint) -> None:
        data = json.dumps(asdict(ck), indent=1, sort_keys=True).encode()
        atomic_write_bytes(self.path, data, fsync=True)

    def record_key(self) -> str:
        """What the ids of this recording's records derive from: the camera and the
        fingerprint of its recordings (so a source that changes gets new ids)."""
        first = {k: v for k, v in self.fingerprint.items() if k != "files"}
        files = self.fingerprint.get("files", [])[:1]  # a folder that grows keeps its ids
        return json.dumps([self.source.id, first, files], sort_keys=True, default=str)

    def save(self, next_index: int, next_track_id: int, sizes: dict[str, int],
             finished: bool = False, state: bytes | None = None) -> None:
        """Record that every frame before ``next_index`` is on disk, with the log sizes
        measured right after the writer wrote them, and ``state``, what the camera's
        tracker and stages knew after frame ``next_index - 1`` (:func:`libs.state.dumps` of
        ``CameraPipeline.snapshot``; a recording only)."""
        with self._lock:
            ck = self.checkpoint
            now = time.time()
            if state is not None and not (finished or self.live):
                path = self.state_file(next_index)
                try:  # first: the progress file never points at a state not yet written
                    atomic_write_bytes(path, dumps((next_index, state)), fsync=True)
                except OSError:  # a full disk: the progress file below fails too
                    path.unlink(missing_ok=True)
            files = dict(ck.files)
            files.update(sizes)
            # Forget files nobody has written to for days (a day's log is closed by then).
            for name in list(files):
                if name in sizes:
                    continue
                try:
                    if os.stat(name).st_mtime < now - KEEP_UNCHANGED_SECONDS:
                        del files[name]
                except FileNotFoundError:
                    del files[name]
            new = Checkpoint(ck.camera_id, ck.fingerprint,
                             next_index=max(next_index, ck.next_index if not self.live else 0),
                             finished=finished, next_track_id=max(next_track_id,
                                                                  ck.next_track_id),
                             saved_at=now, files=files)
            try:
                self._write(new)
            except OSError as exc:  # a full disk: the last checkpoint stays valid
                if not self._save_failing:
                    log.warning("camera %s: cannot save progress (%s); the last checkpoint "
                                "stands", self.source.id, exc)
                self._save_failing = True
                return
            if self._save_failing:
                log.info("camera %s: progress saved again", self.source.id)
                self._save_failing = False
            self.checkpoint = new
            self._drop_states(keep=None if finished or self.live else new.next_index)
