"""``line_crossing``: people counted in and out across the camera's named lines.

Each ``[Source_N] CountingLines`` entry is a segment from its first point A to its second B.
A tracked person's reference point P (the foot point by default) has the signed distance
``d = cross(B - A, P - A) / |B - A|``; in image coordinates (y down) ``d < 0`` is the left of
someone walking from A to B, ``d > 0`` their right.  A crossing from left to right is
``in``, from right to left ``out``.

Hysteresis: a track's side only changes once the point is more than ``Hysteresis`` pixels
beyond the line, so a person standing on the line, or a box jittering across it, counts
once or not at all, never back and forth.  The crossing must happen within the segment:
the point's projection on the line must fall between A and B (extended by ``Hysteresis``).
A track first seen inside the band has no side until it leaves the band.  A track the
tracker confirmed only after a few matches first walks its tentative boxes
(``Frame.early_boxes``), so a crossing made before it had an id is counted, stamped with the
frame and time it happened.

Output per frame: a ``line_crossing`` record (:class:`libs.records.LineCrossing`: ``frame``,
``line``, ``track_id``, ``direction``) per crossing of this frame, and
``metrics["line_counts"]``, ``{line: {"in": n, "out": m}}`` since the camera started (for the
``zones`` step and the frame summary).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.frame import Frame
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import LineCrossing as LineCrossingEvent

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

FORGET_AFTER_FRAMES = 900  # a track unseen this long is forgotten (its side is stale)


class LineCrossingConfig(PluginConfig):
    hysteresis: float = Field(
        1.0,
        alias="Hysteresis",
        ge=0.0,
        description="Pixels beyond the line a person must reach before their side changes.",
        json_schema_extra=form("a number of pixels >= 0"),
    )
    point: Literal["foot", "center"] = Field(
        "foot",
        alias="Point",
        description="Which point of a person is tested: the bottom centre of the box (foot) "
        "or its centre.",
        json_schema_extra=form("foot or center"),
    )

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        if not self.enabled:
            return []
        if not any(s.counting_lines for s in config.sources):  # disabled ones too
            return [(None, "Name", "line_crossing is enabled but no camera has CountingLines")]
        return []


@POST_PROCESSORS.register("line_crossing")
class LineCrossing(PostProcessor):
    STATE = ("sides", "last_seen", "counts")
    Config: ClassVar[type[PluginConfig]] = LineCrossingConfig
    phase = "after_tracker"

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        if not isinstance(config, LineCrossingConfig):
            config = LineCrossingConfig.model_validate(config.model_dump(by_alias=True))
        super().__init__(config, source, app)
        self.settings = config
        lines = source.counting_lines
        self.names = [line.name for line in lines]
        self.a = np.array([line.start for line in lines], np.float64).reshape(-1, 2)
        b = np.array([line.end for line in lines], np.float64).reshape(-1, 2)
        self.direction = b - self.a
        self.length = np.linalg.norm(self.direction, axis=1)
        self.unit = self.direction / self.length[:, None]
        # Per line: track id -> committed side (-1 left, +1 right).
        self.sides: list[dict[int, int]] = [{} for _ in lines]
        self.last_seen: dict[int, int] = {}
        self.counts = {name: {"in": 0, "out": 0} for name in self.names}

    def points(self, boxes: np.ndarray) -> np.ndarray:
        """The tested point of each ``x1, y1, x2, y2`` box."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        y = b[:, 3] if self.settings.point == "foot" else (b[:, 1] + b[:, 3]) * 0.5
        return np.stack([(b[:, 0] + b[:, 2]) * 0.5, y], axis=1)

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        ids = dets.track_ids
        tracked = ids >= 0
        if self.names and tracked.any():
            ids = ids[tracked]
            # A track confirmed in this frame first walks the path it had while tentative.
            for tid in ids.tolist():
                early = frame.early_boxes.get(tid)
                if early:
                    self._follow(frame, [tid] * len(early),
                                 self.points(np.stack([e.box for e in early])),
                                 [(e.frame, e.timestamp) for e in early])
            self._follow(frame, ids.tolist(), self.points(dets.boxes[tracked]),
                         [(frame.index, frame.timestamp)] * len(ids))
            for tid in ids.tolist():
                self.last_seen[tid] = frame.index
        if frame.index % 300 == 0 and self.last_seen:
            self._forget(frame.index)
        frame.metrics["line_counts"] = {n: dict(c) for n, c in self.counts.items()}
        return frame

    def _follow(self, frame: Frame, ids: list[int], p: np.ndarray,
                when: list[tuple[int, datetime]]) -> None:
        """Move each track to its point, in order, and emit the crossings: point ``k`` of
        track ``ids[k]`` was seen at frame ``when[k]``."""
        h = self.settings.hysteresis
        rel = p[None, :, :] - self.a[:, None, :]  # (L, N, 2)
        # cross(B - A, P - A) / |B - A|; with y down, > 0 is the walker's right.
        signed = rel[..., 1] * self.unit[:, None, 0] - rel[..., 0] * self.unit[:, None, 1]
        along = rel[..., 0] * self.unit[:, None, 0] + rel[..., 1] * self.unit[:, None, 1]
        within = (along >= -h) & (along <= self.length[:, None] + h)
        side = np.where(signed > h, 1, np.where(signed < -h, -1, 0))
        for li, name in enumerate(self.names):
            known = self.sides[li]
            for k in np.flatnonzero(side[li]):
                tid = ids[k]
                new = int(side[li, k])
                old = known.get(tid)
                known[tid] = new
                if old is not None and old != new and within[li, k]:
                    direction = "in" if new > 0 else "out"
                    self.counts[name][direction] += 1
                    index, ts = when[k]
                    frame.emit(LineCrossingEvent, timestamp=ts, frame=index, line=name,
                               track_id=tid, direction=direction)

    def _forget(self, now: int) -> None:
        stale = [t for t, seen in self.last_seen.items() if now - seen > FORGET_AFTER_FRAMES]
        for tid in stale:
            del self.last_seen[tid]
            for known in self.sides:
                known.pop(tid, None)
