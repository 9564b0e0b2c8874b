"""The Kalman tracker: motion-predicted boxes, optimal assignment, and a second chance for
low-score detections.

**Motion model.**  Each track carries a constant-velocity Kalman filter on its box centre and
size ``cx, cy, w, h`` and their rates.  Time is in seconds, taken from the frame timestamps, so
the same settings serve 7 and 25 fps cameras and a dropped frame is just a longer step.  The
process noise is a random acceleration and the measurement noise a fraction of the box size,
both scaled by the box height, so near and far people are treated alike.  Every filter step
runs on all tracks at once (numpy arrays of means and covariances).

**The scene sets the motion noise.**  The base acceleration suits people walking in front of a
fixed camera.  Where the camera moves (a vehicle, a walking platform) or people move more
abruptly, detections land further from the predictions than the filter expects.  After each
association the tracker measures that: the median normalised innovation squared (NIS) of the
box centres of the clean matches (confirmed, not coasting, not shared), smoothed over frames.
It raises the process noise of every filter while that median is above ``NIS_TARGET``, and
lowers it back towards the base (never under) while it is below, so a moving camera's tracks
follow their detections and a fixed camera's keep their smoothing, with one set of defaults.

**Association** per frame, each stage an optimal (Hungarian) assignment maximising the IoU
between predicted track boxes and detections, pairs below the stage's IoU forbidden:

1. confirmed tracks (matched last frame, or coasting within their lost budget) with the
   high-score detections (``score >= HighScore``), at ``TrackerIOUThreshold``;
2. confirmed tracks still unmatched with the low-score detections
   (``LowScore <= score < HighScore``), at ``LowScoreIOUThreshold``: a half-hidden or blurred
   person keeps their track, but such a detection never starts one (ByteTrack's idea);
3. confirmed tracks still unmatched with the high-score detections left, by the box where the
   track was *last observed* instead of its prediction: someone who stopped or turned while
   hidden is found where they were last seen (OC-SORT's observation-centric recovery);
4. tentative tracks with the high-score detections left, at ``TrackerIOUThreshold``.

**Contested detections.**  When two or more predictions overlap one detection (IoU >=
``AMBIGUOUS_IOU``), people are passing one behind the other and the detector sees the one in
front: the pairs of that detection are scored by IoU minus ``FOOT_PENALTY`` times the
distance between the box bottoms (in box heights), so the track whose feet the box shows
takes it, rather than one standing further back whose box happens to overlap as much.

**Shared detections.**  When another track's prediction also overlaps a matched detection
(IoU >= ``AMBIGUOUS_IOU``), the detection probably covers two people passing each other; the
track still takes it, but trusts it ``AMBIGUOUS_NOISE`` times less, so the passer-by does not
drag its velocity along and each track comes out of the crossing on its own path.

**Life cycle.**  A high-score detection left over with ``score >= NewTrackScore`` starts a
tentative track; ``MinHits`` consecutive matches confirm it, and a tentative track that misses
a frame is dropped, so one-frame false positives never get an id.  Tracks started on the
tracker's very first frame are confirmed at once, as ByteTrack does: there is nothing to tell
the people already in view from newcomers, and holding all of them back would only blank the
first frames (measured: it lowers HOTA on TUD-Campus and changes nothing else).  A confirmed
track ends once unmatched for longer than its prediction can be trusted: when the standard
deviation of its predicted centre exceeds ``MaxLostUncertainty`` box widths (long behind a
pillar in a fixed camera's view, soon where the camera moves and the noise is high), or
after ``MaxLost`` frames or ``MaxLostSeconds`` seconds, whichever comes first.  When a track
that went unseen for some frames is matched again, its filter is rewound to its last
observation and re-run along the straight path to the new one, so it carries on with the
velocity of the gap rather than the drift it coasted with (OC-SORT's observation-centric
re-update).

**Re-linking.**  Where the camera is fixed (the scene's process-noise multiplier at most
``RELINK_MAX_Q_SCALE``), a confirmed track that ended, after being followed for at least
``RELINK_MIN_AGE`` seconds, is remembered for ``RelinkSeconds``.  A new track confirmed in
that time takes its id when its first box lies within reach of where the ended one was last
seen (``RELINK_SPEED`` box heights per second of the gap plus ``RELINK_MARGIN`` box widths)
with a height within ``RELINK_SIZE`` times its, and the pairing is the only one either could
make: someone who walked behind a group or a pillar for a second or two keeps their id, and
the line counter sees the side they came back on.  Where the camera moves no track is
re-linked: a prediction there is a guess.

**Output.**  Confirmed tracks matched in this frame, at their filtered box (the detection box
corrected by the track's motion: on the evaluation sequences it scores better than the raw box
and halves the identity switches), plus confirmed tracks unmatched for at most ``OutputLost``
frames at their predicted box (score 0), so a person missed by the detector for a frame or two
is still counted, as long as that prediction is sure (``OUTPUT_UNCERTAINTY``).  Every other
detection is removed from the frame.  The frame that confirms a track also carries the
track's tentative boxes (``Frame.early_boxes``), so the line counter sees a crossing made
during the ``MinHits`` frames before the track had an id.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

import numpy as np
from pydantic import Field
from scipy.optimize import linear_sum_assignment

from libs.config.models import TrackerConfig, form
from libs.frame import Detections, EarlyBox, Frame
from libs.geometry import iou_matrix
from libs.trackers import TRACKERS, Track, Tracker

HISTORY_LENGTH = 64
STATE = 8  # cx, cy, w, h and their rates per second
MEAS = 4  # cx, cy, w, h

# Motion and noise model, in box heights and seconds.
CENTRE_ACCEL = 0.3  # std of the random acceleration of the box centre, heights per s^2
SIZE_ACCEL = 0.05  # the same for the box width and height
MEAS_NOISE = 0.09  # std of a detection's centre and size, as a fraction of the box size
INIT_SPEED = 2.0  # std of a new track's unknown speed, heights per s
# The scene's process-noise multiplier (see "The scene sets the motion noise"): the median
# NIS of the centres (2 degrees of freedom) it steers to, the smoothing weight of one frame
# with NIS_FULL_WEIGHT or more clean matches (fewer count proportionally less), the most it
# changes per frame, and its ceiling (the floor is 1, the base noise).
NIS_TARGET = 1.0
NIS_RATE = 0.1
NIS_FULL_WEIGHT = 10
Q_STEP = 1.25
Q_SCALE_MAX = 100.0
# A coasting track is reported (OutputLost) only while its predicted centre is known within
# this many box widths (standard deviation): where the camera moves, a prediction is a guess.
OUTPUT_UNCERTAINTY = 0.15
# A matched detection that another track's prediction overlaps at least this much (IoU) is
# taken with AMBIGUOUS_NOISE times the usual measurement noise (standard deviation).
AMBIGUOUS_IOU = 0.3
AMBIGUOUS_NOISE = 4.0
# A detection that two or more predictions overlap by AMBIGUOUS_IOU goes preferably to the
# track whose box bottom is nearest its own: each pair's similarity loses this many IoU
# points per track box height between the two bottoms (see contested_by_depth).
FOOT_PENALTY = 0.5
DEFAULT_STEP = 0.1  # seconds, until two distinct timestamps have been seen
# Re-linking (see "Re-linking"): only while the scene's process-noise multiplier is at most
# this (a fixed camera), of a track followed at least RELINK_MIN_AGE seconds, by a new track
# whose first box is within RELINK_SPEED box heights per second of the gap plus
# RELINK_MARGIN box widths of the ended track's last one, heights within RELINK_SIZE times.
RELINK_MAX_Q_SCALE = 1.5
RELINK_MIN_AGE = 1.0
RELINK_SPEED = 0.8
RELINK_MARGIN = 0.5
RELINK_SIZE = 1.15


class KalmanTrackerConfig(TrackerConfig):
    """``[Tracker] Name = KalmanTracker``."""

    max_lost: int = Field(
        60,
        alias="MaxLost",
        ge=0,
        description="Frames a confirmed track may go unmatched before it ends; it also ends "
        "after MaxLostSeconds, whichever comes first.",
        json_schema_extra=form("an integer >= 0"),
    )
    max_lost_seconds: float = Field(
        2.0,
        alias="MaxLostSeconds",
        ge=0.0,
        description="Seconds (by the frame timestamps) a confirmed track may go unmatched "
        "before it ends; 0 leaves only the MaxLost limit.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    tracker_iou_threshold: float = Field(
        0.2,
        alias="TrackerIOUThreshold",
        ge=0.0,
        le=1.0,
        description="Least IoU between a track's predicted box and a high-score detection to "
        "match them.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    low_score_iou_threshold: float = Field(
        0.4,
        alias="LowScoreIOUThreshold",
        ge=0.0,
        le=1.0,
        description="Least IoU between a track's predicted box and a low-score detection to "
        "match them.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    high_score: float = Field(
        0.6,
        alias="HighScore",
        ge=0.0,
        le=1.0,
        description="Detections scoring at least this are matched first and may start tracks.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    low_score: float = Field(
        0.1,
        alias="LowScore",
        ge=0.0,
        le=1.0,
        description="Detections scoring from this up to HighScore only continue existing "
        "tracks; detections scoring less are dropped.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    new_track_score: float = Field(
        0.7,
        alias="NewTrackScore",
        ge=0.0,
        le=1.0,
        description="Least score of an unmatched detection to start a new track (only "
        "high-score detections start tracks, whatever this says).",
        json_schema_extra=form("a number from 0 to 1"),
    )
    min_hits: int = Field(
        3,
        alias="MinHits",
        ge=1,
        description="Consecutive matches that confirm a new track; only confirmed tracks are "
        "reported.",
        json_schema_extra=form("an integer >= 1"),
    )
    max_lost_uncertainty: float = Field(
        0.5,
        alias="MaxLostUncertainty",
        gt=0.0,
        description="An unmatched confirmed track ends once the standard deviation of its "
        "predicted centre exceeds this many box widths (sooner where the camera moves); "
        "MaxLost and MaxLostSeconds still cap it.",
        json_schema_extra=form("a number > 0"),
    )
    relink_seconds: float = Field(
        2.0,
        alias="RelinkSeconds",
        ge=0.0,
        description="Seconds after it ended that a track's id may be taken up by a new track "
        "starting where that person could have walked meanwhile (fixed cameras only); 0 "
        "turns re-linking off.",
        json_schema_extra=form("a number of seconds >= 0"),
    )
    output_lost: int = Field(
        2,
        alias="OutputLost",
        ge=0,
        description="Also report a confirmed track unmatched for at most this many frames, at "
        "its predicted box, while that prediction is sure; 0 reports matched tracks only.",
        json_schema_extra=form("an integer >= 0"),
    )


def boxes_to_state(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` corner boxes ``x1, y1, x2, y2`` as ``cx, cy, w, h`` (float64)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([(b[:, :2] + b[:, 2:]) * 0.5, b[:, 2:] - b[:, :2]], axis=1)


def state_to_boxes(cxcywh: np.ndarray) -> np.ndarray:
    """``(N, >=4)`` states (first columns ``cx, cy, w, h``) as corner boxes."""
    half = cxcywh[:, 2:4] * 0.5
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def contested_by_depth(iou: np.ndarray, predicted: np.ndarray, boxes: np.ndarray
                       ) -> np.ndarray:
    """``iou`` (tracks x detections) with the pairs of a *contested* detection, one that two or
    more predicted boxes overlap by ``AMBIGUOUS_IOU``, lowered by ``FOOT_PENALTY`` times the
    distance between the pair's box bottoms in track box heights: of two people one behind
    the other, the detector sees the one in front, whose feet are where the box ends."""
    contested = (iou >= AMBIGUOUS_IOU).sum(axis=0) >= 2
    if not contested.any():
        return iou
    height = np.maximum(predicted[:, 3] - predicted[:, 1], 1.0)[:, None]
    apart = np.abs(predicted[:, 3][:, None] - boxes[:, 3][None, :]) / height
    return np.where(contested[None, :] & (iou > 0.0), iou - FOOT_PENALTY * apart, iou)


def match_by_iou(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the assignment with the largest total IoU, among pairs with
    IoU >= ``min_iou`` and > 0.  Rows and columns with a single candidate, whose candidate has
    no other either, are paired directly; the Hungarian algorithm runs on the rest."""
    valid = (iou >= min_iou) & (iou > 0.0)
    rows_n = valid.sum(axis=1)
    if not rows_n.any():
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    cols_n = valid.sum(axis=0)
    if rows_n.max() <= 1 and cols_n.max() <= 1:
        pair_rows, pair_cols = np.nonzero(valid)
        return pair_rows, pair_cols
    rows = np.flatnonzero(rows_n)
    cols = np.flatnonzero(cols_n)
    sub = np.ix_(rows, cols)
    sub_valid = valid[sub]
    cost = np.where(sub_valid, 1.0 - iou[sub], 2.0 * max(len(rows), len(cols)) + 2.0)
    r, c = linear_sum_assignment(cost)
    ok = sub_valid[r, c]
    return rows[r[ok]], cols[c[ok]]


class KalmanBank:
    """Constant-velocity Kalman filters of many boxes, stepped together.

    ``mean`` is ``(N, 8)``: ``cx, cy, w, h`` in pixels and their rates in pixels per second;
    ``cov`` is ``(N, 8, 8)``.  Noise scales with the box height (see the module constants).
    """

    def __init__(self) -> None:
        self.mean = np.zeros((0, STATE), dtype=np.float64)
        self.cov = np.zeros((0, STATE, STATE), dtype=np.float64)
        self._step = -1.0  # the step the two matrices below are for
        self._f = np.eye(STATE)
        self._q_unit = np.zeros((STATE, STATE), dtype=np.float64)
        #: Multiplier of the process noise (variance) of every filter, set by the scene.
        self.q_scale = 1.0

    def __len__(self) -> int:
        return len(self.mean)

    @staticmethod
    def initial(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and covariances of new filters from first measurements ``z`` ``(M, 4)``."""
        m = len(z)
        mean = np.zeros((m, STATE), dtype=np.float64)
        mean[:, :MEAS] = z
        w = np.maximum(z[:, 2], 1.0)
        h = np.maximum(z[:, 3], 1.0)
        std = np.empty((m, STATE), dtype=np.float64)
        std[:, 0] = std[:, 2] = 2.0 * MEAS_NOISE * w
        std[:, 1] = std[:, 3] = 2.0 * MEAS_NOISE * h
        std[:, 4:6] = INIT_SPEED * h[:, None]
        std[:, 6:8] = 0.1 * INIT_SPEED * h[:, None]
        cov = np.zeros((m, STATE, STATE), dtype=np.float64)
        diag = np.arange(STATE)
        cov[:, diag, diag] = std * std
        return mean, cov

    def append(self, z: np.ndarray) -> None:
        if len(z) == 0:
            return
        mean, cov = self.initial(z)
        self.mean = np.concatenate([self.mean, mean])
        self.cov = np.concatenate([self.cov, cov])

    def keep(self, mask: np.ndarray) -> None:
        self.mean = self.mean[mask]
        self.cov = self.cov[mask]

    def _matrices(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Transition ``F`` of one step of ``dt`` seconds and its process noise for a box of
        height 1: white acceleration, ``a^2 [[dt^4/4, dt^3/2], [dt^3/2, dt^2]]`` per
        coordinate."""
        if abs(dt - self._step) > 1e-9:
            f = np.eye(STATE)
            q = np.zeros((STATE, STATE), dtype=np.float64)
            for i, a in enumerate((CENTRE_ACCEL, CENTRE_ACCEL, SIZE_ACCEL, SIZE_ACCEL)):
                f[i, i + MEAS] = dt
                a2 = a * a
                q[i, i] = a2 * dt**4 / 4.0
                q[i, i + MEAS] = q[i + MEAS, i] = a2 * dt**3 / 2.0
                q[i + MEAS, i + MEAS] = a2 * dt**2
            self._step, self._f, self._q_unit = dt, f, q
        return self._f, self._q_unit

    def predicted(
        self, mean: np.ndarray, cov: np.ndarray, dt: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filters ``(N, 8)``, ``(N, 8, 8)`` advanced by ``dt`` seconds (new arrays)."""
        mean = mean.copy()
        mean[:, :MEAS] += dt * mean[:, MEAS:]
        np.maximum(mean[:, 2:4], 1.0, out=mean[:, 2:4])  # a coasting box never turns inside out
        f, q = self._matrices(dt)
        cov = f @ cov @ f.T
        cov += (self.q_scale * np.square(mean[:, 3]))[:, None, None] * q
        return mean, cov

    @staticmethod
    def measurement_std(mean: np.ndarray) -> np.ndarray:
        """``(N, 4)`` standard deviation of a detection's ``cx, cy, w, h`` for filters
        ``(N, 8)``: ``MEAS_NOISE`` of the box width (x, w) and height (y, h)."""
        r = np.empty((len(mean), MEAS), dtype=np.float64)
        r[:, 0] = r[:, 2] = np.maximum(mean[:, 2], 1.0)
        r[:, 1] = r[:, 3] = np.maximum(mean[:, 3], 1.0)
        r *= MEAS_NOISE
        return r

    @staticmethod
    def centre_nis(mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Normalised innovation squared of the box centres of measurements ``z`` ``(N, 4)``
        against predicted filters ``(N, 8)``, ``(N, 8, 8)``: about 2 on average when the
        filters' noise matches how the boxes really move."""
        s = cov[:, :2, :2].copy()
        r = KalmanBank.measurement_std(mean)
        s[:, 0, 0] += r[:, 0] * r[:, 0]
        s[:, 1, 1] += r[:, 1] * r[:, 1]
        d = z[:, :2] - mean[:, :2]
        det = s[:, 0, 0] * s[:, 1, 1] - s[:, 0, 1] * s[:, 1, 0]
        quad = (d[:, 0] * d[:, 0] * s[:, 1, 1] - 2.0 * d[:, 0] * d[:, 1] * s[:, 0, 1]
                + d[:, 1] * d[:, 1] * s[:, 0, 0])
        out: np.ndarray = quad / np.maximum(det, 1e-12)
        return out

    @staticmethod
    def corrected(
        mean: np.ndarray, cov: np.ndarray, z: np.ndarray, noise: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filters corrected with measurements ``z`` ``(N, 4)``; ``noise`` scales each
        measurement's standard deviation (new arrays)."""
        r = KalmanBank.measurement_std(mean)
        if noise is not None:
            r *= noise[:, None]
        s = cov[:, :MEAS, :MEAS].copy()
        diag = np.arange(MEAS)
        s[:, diag, diag] += r * r
        gain = cov[:, :, :MEAS] @ np.linalg.inv(s)  # P H^T S^-1, (N, 8, 4)
        innovation = z - mean[:, :MEAS]
        mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
        cov = cov - gain @ cov[:, :MEAS, :]
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))  # keep rounding from skewing it
        return mean, cov

    def predict(self, dt: float) -> None:
        if len(self.mean):
            self.mean, self.cov = self.predicted(self.mean, self.cov, dt)

    def update(self, index: np.ndarray, z: np.ndarray, noise: np.ndarray | None = None) -> None:
        if len(index):
            self.mean[index], self.cov[index] = self.corrected(
                self.mean[index], self.cov[index], z, noise
            )

    def replay(
        self,
        mean: np.ndarray,
        cov: np.ndarray,
        z_from: np.ndarray,
        z_to: np.ndarray,
        steps: int,
        dt: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filters ``(N, 8)``, ``(N, 8, 8)`` taken right after their observations ``z_from``
        ``(N, 4)`` and run ``steps`` steps of ``dt`` seconds towards ``z_to``, due at the last
        step.  Each step but the last observes the straight path between the two; the last
        only predicts, for the ordinary update with ``z_to`` that follows."""
        for k in range(1, steps):
            mean, cov = self.predicted(mean, cov, dt)
            mean, cov = self.corrected(mean, cov, z_from + (z_to - z_from) * (k / steps))
        return self.predicted(mean, cov, dt)


@TRACKERS.register("KalmanTracker")
class KalmanTracker(Tracker):
    STATE = (
        "_nis", "_kf", "_tracks", "_confirmed", "_hits", "_lost", "_seen_at", "_last_obs",
        "_obs_mean", "_obs_cov", "_origin", "_now", "_step", "_next_id", "_ended",
        "_born_at", "_first_obs",
    )
    Config = KalmanTrackerConfig

    def __init__(self, config: TrackerConfig) -> None:
        if not isinstance(config, KalmanTrackerConfig):
            # Keys set on a plain TrackerConfig carry over; the rest take this tracker's
            # own defaults.
            config = KalmanTrackerConfig.model_validate(
                config.model_dump(by_alias=True, exclude_unset=True)
            )
        super().__init__(config)
        self.max_lost = int(config.max_lost)
        self.max_lost_seconds = float(config.max_lost_seconds)
        self.iou_threshold = float(config.tracker_iou_threshold)
        self.low_iou_threshold = float(config.low_score_iou_threshold)
        self.high_score = float(config.high_score)
        self.low_score = float(config.low_score)
        self.new_track_score = float(config.new_track_score)
        self.min_hits = int(config.min_hits)
        self.output_lost = int(config.output_lost)
        self.max_lost_uncertainty = float(config.max_lost_uncertainty)
        self.relink_seconds = float(config.relink_seconds)
        self._nis = NIS_TARGET  # the scene's smoothed median NIS

        self._kf = KalmanBank()
        self._tracks: list[Track] = []
        # Per-track arrays, aligned with _tracks.
        self._confirmed = np.zeros(0, dtype=bool)
        self._hits = np.zeros(0, dtype=np.int64)
        self._lost = np.zeros(0, dtype=np.int64)
        self._seen_at = np.zeros(0, dtype=np.float64)  # seconds, of the last match
        self._last_obs = np.zeros((0, MEAS), dtype=np.float64)  # cx, cy, w, h last matched
        self._obs_mean = np.zeros((0, STATE), dtype=np.float64)  # filter right after it
        self._obs_cov = np.zeros((0, STATE, STATE), dtype=np.float64)
        self._born_at = np.zeros(0, dtype=np.float64)  # seconds, of the first detection
        self._first_obs = np.zeros((0, MEAS), dtype=np.float64)  # its cx, cy, w, h
        # Ended tracks a new one may still take up: the track, when it was last seen
        # (seconds) and its last observed cx, cy, w, h.
        self._ended: list[tuple[Track, float, np.ndarray]] = []

        self._origin: datetime | None = None
        self._now = 0.0
        self._step = DEFAULT_STEP
        self._next_id = 1

    # -- one frame -----------------------------------------------------------------------

    def _advance_clock(self, ts: datetime) -> float:
        """Seconds since the previous frame (the last good step when time stood still or
        went back)."""
        if self._origin is None:
            self._origin = ts
            return self._step
        now = (ts - self._origin).total_seconds()
        if now > self._now:
            self._step = now - self._now
        self._now = max(now, self._now)
        return self._step

    @property
    def min_score(self) -> float:
        return self.low_score

    def update(self, frame: Frame) -> Frame:
        first_frame = self._origin is None
        dt = self._advance_clock(frame.timestamp)
        kf = self._kf
        kf.predict(dt)

        dets = frame.detections
        boxes = np.asarray(dets.boxes, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(dets.scores, dtype=np.float64).reshape(-1)
        n_tracks, n_dets = len(self._tracks), len(boxes)
        high = scores >= self.high_score
        track_det = np.full(n_tracks, -1, dtype=np.intp)
        det_track = np.full(n_dets, -1, dtype=np.intp)
        ambiguous = np.zeros(n_tracks, dtype=bool)
        if n_tracks and n_dets:
            predicted = state_to_boxes(kf.mean)
            iou = iou_matrix(predicted, boxes)
            self._associate(contested_by_depth(iou, predicted, boxes), boxes, scores, high,
                            track_det, det_track)
            ambiguous = self._shared(iou, track_det)

        hit = track_det >= 0
        matched = np.flatnonzero(hit)
        if len(matched):
            z = boxes_to_state(boxes[track_det[matched]])
            self._adapt_noise(matched, z, ambiguous)
            self._rewind_recovered(matched, z)
            kf.update(matched, z, np.where(ambiguous[matched], AMBIGUOUS_NOISE, 1.0))
            self._last_obs[matched] = z
            self._obs_mean[matched] = kf.mean[matched]
            self._obs_cov[matched] = kf.cov[matched]
            self._seen_at[matched] = self._now

        # Life cycle of the existing tracks.
        self._hits[hit] += 1
        self._lost[hit] = 0
        self._lost[~hit] += 1
        confirmed = self._confirmed | (hit & (self._hits >= self.min_hits))
        if self._ended:
            self._relink(np.flatnonzero(confirmed & ~self._confirmed))
        alive = hit | (confirmed & (self._lost <= self.max_lost))
        if self.max_lost_seconds > 0.0:
            alive &= hit | (self._now - self._seen_at <= self.max_lost_seconds + 1e-9)
        spread = np.sqrt(kf.cov[:, 0, 0]) / np.maximum(kf.mean[:, 2], 1.0)
        alive &= hit | (spread <= self.max_lost_uncertainty)
        reported = hit & confirmed
        coasting = (~hit & alive & confirmed & (self._lost <= self.output_lost)
                    & (spread <= OUTPUT_UNCERTAINTY))
        filtered = state_to_boxes(kf.mean).astype(np.float32)
        ts, index = frame.timestamp, frame.index
        was_confirmed = self._confirmed
        for k, track in enumerate(self._tracks):
            if hit[k]:
                box = filtered[k].copy() if reported[k] else boxes[track_det[k]].astype(np.float32)
                if not was_confirmed[k]:
                    if reported[k]:  # confirmed now: hand its tentative path on
                        if track.early:
                            frame.early_boxes[track.track_id] = track.early
                        track.early = []
                    else:
                        track.early.append(EarlyBox(index, ts, box))
                track.box = box
                track.history.append(box)
                track.last_seen = ts
                track.last_frame = index
                track.hits = int(self._hits[k])
            track.lost = int(self._lost[k])

        # New tracks from the high-score detections nobody took.
        born = np.flatnonzero(high & (det_track < 0) & (scores >= self.new_track_score))
        born_confirmed = first_frame or self.min_hits <= 1
        new_tracks: list[Track] = []
        for d in born.tolist():
            box = boxes[d].astype(np.float32)
            new_tracks.append(
                Track(
                    track_id=self._next_id,
                    box=box,
                    first_seen=ts,
                    last_seen=ts,
                    first_frame=index,
                    last_frame=index,
                    history=deque([box], maxlen=HISTORY_LENGTH),
                    early=[] if born_confirmed else [EarlyBox(index, ts, box)],
                )
            )
            self._next_id += 1

        # Output, in detection order: matched confirmed tracks at their filtered box (a new
        # track confirmed at birth at its detection box), then coasting tracks.
        out_det = track_det[reported]
        out_boxes = filtered[reported]
        out_ids = np.array(
            [self._tracks[k].track_id for k in np.flatnonzero(reported)], dtype=np.int64
        )
        if born_confirmed and len(born):
            out_det = np.concatenate([out_det, born])
            out_boxes = np.concatenate([out_boxes, boxes[born].astype(np.float32)])
            out_ids = np.concatenate([out_ids, [t.track_id for t in new_tracks]])
        order = np.argsort(out_det, kind="stable")
        out = dets.select(out_det[order])
        out.boxes = out_boxes[order].reshape(-1, 4)
        out.track_ids = out_ids[order].reshape(-1)
        if coasting.any():
            out = self._append_coasting(out, np.flatnonzero(coasting), filtered)
        frame.detections = out

        # Drop ended tracks (remembering confirmed ones for re-linking), add the new ones.
        self._remember_ended(np.flatnonzero(~alive & confirmed))
        z_new = boxes_to_state(boxes[born])
        self._tracks = [t for t, a in zip(self._tracks, alive.tolist(), strict=True) if a]
        self._tracks += new_tracks
        kf.keep(alive)
        kf.append(z_new)
        n_new = len(born)
        self._confirmed = np.concatenate([confirmed[alive], np.full(n_new, born_confirmed)])
        self._hits = np.concatenate([self._hits[alive], np.ones(n_new, dtype=np.int64)])
        self._lost = np.concatenate([self._lost[alive], np.zeros(n_new, dtype=np.int64)])
        self._seen_at = np.concatenate([self._seen_at[alive], np.full(n_new, self._now)])
        self._last_obs = np.concatenate([self._last_obs[alive], z_new])
        self._obs_mean = np.concatenate([self._obs_mean[alive], kf.mean[len(kf) - n_new :]])
        self._obs_cov = np.concatenate([self._obs_cov[alive], kf.cov[len(kf) - n_new :]])
        self._born_at = np.concatenate([self._born_at[alive], np.full(n_new, self._now)])
        self._first_obs = np.concatenate([self._first_obs[alive], z_new])
        return frame

    def _associate(
        self,
        iou: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        high: np.ndarray,
        track_det: np.ndarray,
        det_track: np.ndarray,
    ) -> None:
        """The four matching stages (see the module documentation); fills ``track_det``
        and ``det_track`` in place."""

        def assign(tracks: np.ndarray, cands: np.ndarray, sim: np.ndarray, gate: float) -> None:
            if len(tracks) == 0 or len(cands) == 0:
                return
            r, c = match_by_iou(sim, gate)
            track_det[tracks[r]] = cands[c]
            det_track[cands[c]] = tracks[r]

        confirmed = self._confirmed
        tracks = np.flatnonzero(confirmed)
        cands = np.flatnonzero(high)
        assign(tracks, cands, iou[np.ix_(tracks, cands)], self.iou_threshold)

        low = (scores >= self.low_score) & ~high
        tracks = np.flatnonzero(confirmed & (track_det < 0))
        cands = np.flatnonzero(low)
        assign(tracks, cands, iou[np.ix_(tracks, cands)], self.low_iou_threshold)

        tracks = np.flatnonzero(confirmed & (track_det < 0))
        cands = np.flatnonzero(high & (det_track < 0))
        if len(tracks) and len(cands):
            last_iou = iou_matrix(state_to_boxes(self._last_obs[tracks]), boxes[cands])
            assign(tracks, cands, last_iou, self.iou_threshold)

        tracks = np.flatnonzero(~confirmed)
        cands = np.flatnonzero(high & (det_track < 0))
        assign(tracks, cands, iou[np.ix_(tracks, cands)], self.iou_threshold)

    @staticmethod
    def _shared(iou: np.ndarray, track_det: np.ndarray) -> np.ndarray:
        """Tracks whose matched detection another track's prediction overlaps by at least
        ``AMBIGUOUS_IOU``."""
        matched = np.flatnonzero(track_det >= 0)
        shared = np.zeros(len(track_det), dtype=bool)
        if len(matched) and len(track_det) > 1:
            others = iou[:, track_det[matched]]  # (tracks, matched detections)
            others[matched, np.arange(len(matched))] = 0.0
            shared[matched] = others.max(axis=0) >= AMBIGUOUS_IOU
        return shared

    def _adapt_noise(self, matched: np.ndarray, z: np.ndarray, ambiguous: np.ndarray) -> None:
        """Steer the scene's process noise by the NIS of this frame's clean matches
        (before their update): see "The scene sets the motion noise"."""
        clean = self._confirmed[matched] & (self._lost[matched] == 0) & ~ambiguous[matched]
        if not clean.any():
            return
        k = matched[clean]
        kf = self._kf
        nis = float(np.median(kf.centre_nis(kf.mean[k], kf.cov[k], z[clean])))
        weight = NIS_RATE * min(1.0, len(k) / NIS_FULL_WEIGHT)
        self._nis += weight * (nis - self._nis)
        step = min(max(self._nis / NIS_TARGET, 1.0 / Q_STEP), Q_STEP)
        kf.q_scale = min(max(kf.q_scale * step, 1.0), Q_SCALE_MAX)

    def _rewind_recovered(self, matched: np.ndarray, z: np.ndarray) -> None:
        """Re-run tracks matched again after missing frames from their last observation
        along the straight path to this one (left predicted, for the update that follows).
        Tracks that missed the same number of frames were last seen together, so they are
        re-run together."""
        gaps = self._lost[matched]
        if not gaps.any():
            return
        kf = self._kf
        for gap in np.unique(gaps[gaps > 0]).tolist():
            j = np.flatnonzero(gaps == gap)
            k = matched[j]
            steps = gap + 1
            step = float(self._now - self._seen_at[k[0]]) / steps
            if step <= 0.0:
                step = self._step
            kf.mean[k], kf.cov[k] = kf.replay(
                self._obs_mean[k], self._obs_cov[k], self._last_obs[k], z[j], steps, step
            )

    def _remember_ended(self, ended: np.ndarray) -> None:
        """Keep the confirmed tracks ending now that were followed long enough, for
        re-linking; forget those that ended too long ago."""
        horizon = self._now - self.relink_seconds
        kept = [e for e in self._ended if e[1] >= horizon]
        if self.relink_seconds > 0.0:
            for k in ended.tolist():
                track = self._tracks[k]
                followed = (track.last_seen - track.first_seen).total_seconds()
                if self._seen_at[k] >= horizon and followed >= RELINK_MIN_AGE:
                    kept.append((track, float(self._seen_at[k]), self._last_obs[k].copy()))
        self._ended = kept

    def _relink(self, newly: np.ndarray) -> None:
        """Give tracks confirmed in this frame the id of an ended track they continue (see
        "Re-linking"): only pairs within reach that are the one choice of both."""
        if len(newly) == 0 or self._kf.q_scale > RELINK_MAX_Q_SCALE:
            return
        old_seen = np.array([e[1] for e in self._ended])
        old_obs = np.array([e[2] for e in self._ended])
        new_obs = self._first_obs[newly]
        gap = self._born_at[newly][:, None] - old_seen[None, :]  # (new, ended) seconds
        height = np.maximum(np.minimum(new_obs[:, None, 3], old_obs[None, :, 3]), 1.0)
        width = np.maximum(0.5 * (new_obs[:, None, 2] + old_obs[None, :, 2]), 1.0)
        reach = RELINK_SPEED * height * gap + RELINK_MARGIN * width
        dist = np.hypot(new_obs[:, None, 0] - old_obs[None, :, 0],
                        new_obs[:, None, 1] - old_obs[None, :, 1])
        ratio = new_obs[:, None, 3] / np.maximum(old_obs[None, :, 3], 1.0)
        ok = (gap > 0.0) & (dist <= reach) & (ratio <= RELINK_SIZE) & \
            (ratio >= 1.0 / RELINK_SIZE)
        ok &= (ok.sum(axis=1, keepdims=True) == 1) & (ok.sum(axis=0, keepdims=True) == 1)
        taken = set()
        for i, j in zip(*np.nonzero(ok), strict=True):
            old = self._ended[int(j)][0]
            track = self._tracks[int(newly[i])]
            track.track_id = old.track_id
            track.first_seen = old.first_seen
            track.first_frame = old.first_frame
            taken.add(int(j))
        if taken:
            self._ended = [e for j, e in enumerate(self._ended) if j not in taken]

    def _append_coasting(
        self, out: Detections, coasting: np.ndarray, predicted: np.ndarray
    ) -> Detections:
        """``out`` plus a row per coasting track at its predicted box, score 0, class 0 and
        zeros in every attribute."""
        n = len(coasting)
        attributes = {
            key: np.concatenate([value, np.zeros((n, *value.shape[1:]), dtype=value.dtype)])
            for key, value in out.attributes.items()
        }
        ids = np.array([self._tracks[k].track_id for k in coasting.tolist()], dtype=np.int64)
        return Detections(
            boxes=np.concatenate([out.boxes, predicted[coasting]]),
            scores=np.concatenate([out.scores, np.zeros(n, dtype=np.float32)]),
            classes=np.concatenate([out.classes, np.zeros(n, dtype=np.int32)]),
            track_ids=np.concatenate([out.track_ids, ids]),
            attributes=attributes,
        )

    def active_tracks(self) -> list[Track]:
        """Confirmed tracks, matched in the last frame or coasting within their budget."""
        return [t for t, c in zip(self._tracks, self._confirmed.tolist(), strict=True) if c]
