"""Trackers, registered by the INI ``[Tracker] Name``.

A tracker takes the frame's detections and writes ``track_ids``; only confirmed tracks
reach the analytics (detections the tracker does not vouch for are removed from the frame).
Tracks carry their box history and first/last-seen timestamps.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

import numpy as np

from libs.config.models import TrackerConfig
from libs.frame import EarlyBox, Frame
from libs.registry import Registry
from libs.state import Stateful

TRACKERS: Registry[type[Tracker]] = Registry("tracker", __name__)


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # last box x1, y1, x2, y2
    first_seen: datetime
    last_seen: datetime
    first_frame: int
    last_frame: int
    history: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=64))
    hits: int = 1
    lost: int = 0
    # Boxes while tentative (a tracker that confirms after several matches); handed to the
    # frame that confirms the track as Frame.early_boxes, then emptied.
    early: list[EarlyBox] = field(default_factory=list)


class Tracker(Stateful, ABC):
    Config: ClassVar[type[TrackerConfig]] = TrackerConfig
    STATE: ClassVar[tuple[str, ...]] = ("_next_id",)

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._next_id = 1

    @property
    def next_track_id(self) -> int:
        """The id the next new track gets.  A resumed camera sets it from its checkpoint,
        so ids never repeat across restarts."""
        return self._next_id

    @next_track_id.setter
    def next_track_id(self, value: int) -> None:
        self._next_id = max(1, int(value))

    @property
    def min_score(self) -> float:
        """Least detection score this tracker takes; it drops the detections scoring less.

        The detector's ``MinScore`` may sit lower for another tracker's sake (the shipped
        ``KalmanTracker`` continues tracks with boxes down to 0.1), so each tracker applies
        its own; ``lookout evaluate`` reads it to score the boxes the tracker was given."""
        return 0.0

    @abstractmethod
    def update(self, frame: Frame) -> Frame:
        """Assign ``frame.detections.track_ids``; drop detections of unconfirmed tracks."""

    @abstractmethod
    def active_tracks(self) -> list[Track]:
        """Tracks alive after the last update (matched or within their lost budget)."""
