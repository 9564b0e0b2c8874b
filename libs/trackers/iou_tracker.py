"""The IoU tracker: detections join the live track whose last box they overlap most.

Association is greedy by descending IoU: the best-overlapping (track, detection) pair is
matched first, then the best of what is left, and so on, as long as the IoU is at least
``TrackerIOUThreshold`` (and above 0).  It is computed in rounds of *mutually best* pairs, a
track whose best detection has that track as its best track: every such pair is the one the
greedy order would pick for both, so the result is the same as sorting all pairs, but each
round is a handful of vectorised operations.

Detections scoring less than ``MinScore`` are dropped first (the detector's ``MinScore`` may
be lower, set for a tracker that uses low-score boxes).  Unmatched detections start new
tracks (ids 1, 2, 3... per tracker); a track unmatched for more than ``MaxLost`` consecutive
frames ends.  Every other detection is confirmed at once.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from pydantic import Field

from libs.config.models import DetectorConfig, TrackerConfig, form
from libs.frame import Frame
from libs.geometry import iou_matrix
from libs.trackers import TRACKERS, Track, Tracker

HISTORY_LENGTH = 64


class IOUTrackerConfig(TrackerConfig):
    """``[Tracker] Name = IOUTracker``."""

    min_score: float = Field(
        DetectorConfig.model_fields["min_score"].default,
        alias="MinScore",
        ge=0.0,
        le=1.0,
        description="Least score of a detection the tracker takes; lower-scored ones are "
        "dropped (the detector's MinScore drops boxes too: the higher of the two holds).",
        json_schema_extra=form("a number from 0 to 1"),
    )


@TRACKERS.register("IOUTracker")
class IOUTracker(Tracker):
    STATE = ("_tracks", "_boxes", "_next_id")
    Config = IOUTrackerConfig

    def __init__(self, config: TrackerConfig) -> None:
        if not isinstance(config, IOUTrackerConfig):
            # Keys set on a plain TrackerConfig carry over; MinScore takes its default.
            config = IOUTrackerConfig.model_validate(
                config.model_dump(by_alias=True, exclude_unset=True)
            )
        super().__init__(config)
        self.max_lost = int(config.max_lost)
        self.iou_threshold = float(config.tracker_iou_threshold)
        self._min_score = float(config.min_score)
        self._tracks: list[Track] = []
        self._boxes = np.zeros((0, 4), dtype=np.float32)  # last box of each live track
        self._next_id = 1

    def _associate(self, det_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Greedy (track index, detection index) pairs, by descending IoU."""
        n_tracks, n_dets = len(self._boxes), len(det_boxes)
        if n_tracks == 0 or n_dets == 0:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        iou = iou_matrix(self._boxes, det_boxes)
        weight = np.where((iou >= self.iou_threshold) & (iou > 0.0), iou, -1.0)
        rows_out: list[np.ndarray] = []
        cols_out: list[np.ndarray] = []
        all_rows = np.arange(n_tracks)
        while True:
            best_col = weight.argmax(axis=1)
            best_w = weight[all_rows, best_col]
            best_row = weight.argmax(axis=0)
            mutual = (best_w >= 0.0) & (best_row[best_col] == all_rows)
            if not mutual.any():
                break
            rows = np.flatnonzero(mutual)
            cols = best_col[rows]
            rows_out.append(rows)
            cols_out.append(cols)
            weight[rows, :] = -1.0
            weight[:, cols] = -1.0
        if not rows_out:
            empty = np.zeros(0, dtype=np.intp)
            return empty, empty
        return np.concatenate(rows_out), np.concatenate(cols_out)

    @property
    def min_score(self) -> float:
        return self._min_score

    def update(self, frame: Frame) -> Frame:
        dets = frame.detections
        if len(dets) and (dets.scores < self._min_score).any():
            dets = frame.detections = dets.select(dets.scores >= self._min_score)
        det_boxes = np.array(dets.boxes, dtype=np.float32)  # private copy: tracks keep rows
        n_dets = len(det_boxes)
        rows, cols = self._associate(det_boxes)
        ts, index = frame.timestamp, frame.index

        ids = np.full(n_dets, -1, dtype=np.int64)
        matched_track = np.zeros(len(self._tracks), dtype=bool)
        matched_track[rows] = True
        tracks = self._tracks
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            track = tracks[r]
            box = det_boxes[c]
            track.box = box
            track.history.append(box)
            track.last_seen = ts
            track.last_frame = index
            track.hits += 1
            track.lost = 0
            ids[c] = track.track_id

        boxes = self._boxes
        boxes[rows] = det_boxes[cols]
        alive = np.ones(len(tracks), dtype=bool)
        survivors: list[Track] = []
        for k, (track, matched) in enumerate(zip(tracks, matched_track.tolist(), strict=True)):
            if not matched:
                track.lost += 1
                if track.lost > self.max_lost:
                    alive[k] = False
                    continue
            survivors.append(track)

        new = np.flatnonzero(ids < 0)
        for c in new.tolist():
            box = det_boxes[c]
            track = Track(
                track_id=self._next_id,
                box=box,
                first_seen=ts,
                last_seen=ts,
                first_frame=index,
                last_frame=index,
                history=deque([box], maxlen=HISTORY_LENGTH),
            )
            self._next_id += 1
            ids[c] = track.track_id
            survivors.append(track)

        self._tracks = survivors
        self._boxes = np.concatenate([boxes[alive], det_boxes[new]])
        dets.track_ids = ids
        return frame

    def active_tracks(self) -> list[Track]:
        return list(self._tracks)
