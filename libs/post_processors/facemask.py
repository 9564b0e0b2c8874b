"""``facemask``: mask / no mask / unknown per tracked person, smoothed per track.

Needs the ``faces`` step before it.  For each person whose face was searched on this frame
(``face_fresh``) and found (finite ``face_box``) at least ``MinFaceSize`` pixels wide, one
**observation** is made with the masked-face model ``facemask_rfb640_masked_face_v2``:

* when ``faces`` found the face with that model (``face_mask_prob`` finite), its probability is
  used as it is (the model is not run twice);
* otherwise the model classifies a square crop of ``CropScale`` times the face box (parts
  outside the frame repeat the border pixels), stretched to 640x480: the anchor with the best
  face score whose centre lies in the middle half of the crop gives the mask probability.  An
  anchor scoring below ``MinScore`` gives no observation (not a face the model recognises).

An observation votes *mask* when the probability is at least 0.5, else *no mask*.  Smaller
faces are skipped because the model rarely recognises them: on TUD-Campus it gave a decisive
score to 3 % of the faces under 15 px and 6 % of those of 15-20 px, against 30 % at 25-40 px,
and each try costs a model run (about 9 ms on 2 cores).

**Smoothing.**  A track keeps its last ``Window`` votes.  With fewer than ``MinObservations``
votes its ``mask`` is -1 (unknown); otherwise 1 when more than half of the kept votes say mask,
0 when fewer than half do, and on a tie the previous decided value (-1 if none).  People without
a track id (-1) are judged on their single observation (``MinObservations`` = 1 decides it).
A track unseen for ``ForgetSeconds`` of the frame clock is forgotten.

**Output.**  ``attributes["mask"]`` int8 ``(N,)``: 1 mask, 0 no mask, -1 unknown.
On the frames of the pipeline's sample clock (``frame.sample_due``) a ``facemask_log`` sample
(:class:`libs.records.FacemaskSample`): ``WithMask``, ``WithoutMask`` and ``NoFace`` (people
whose mask is unknown: no face seen, or not enough votes yet), counted over the people of
the frame; the file logger writes it to
``<camera dir>/facemask_log/<date>.csv`` and the ``facemask`` reports (hourly, daily, weekly,
live) give ``AvgWithMask``, ``MaxWithMask``, ..., ``WithoutMaskSamples`` (samples with at least
one person without a mask) and the ``Sum*`` columns: the usage rate of a period is
``SumWithMask / (SumWithMask + SumWithoutMask)``.  A tracked person whose smoothed verdict
changes (unknown to mask, mask to no mask...) is a ``mask_state`` record
(:class:`libs.records.MaskState`; no CSV log).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.detectors.budget import thread_budget
from libs.frame import Frame
from libs.metrics.reports import Counter, Measure, RawLogSpec, ReportKind, register_source_spec
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.post_processors.faces import (
    MASK_MODEL,
    MaskedFaceModel,
    crop_region,
    model_file,
    square_around,
)
from libs.records import FacemaskSample, MaskState

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig, SourceConfig

log = logging.getLogger(__name__)

FACEMASK_LOG_FOLDER = "facemask_log"
FACEMASK = ReportKind(
    "facemask",
    (
        Measure("WithMask", "WithMask"),
        Measure("WithoutMask", "WithoutMask"),
        Measure("NoFace", "NoFace"),
    ),
    (Counter("WithoutMaskSamples", "WithoutMask"),),
    description=("People with a mask, without one and unknown (NoFace: no face seen or not "
                 "enough evidence yet) per camera (facemask step); usage = SumWithMask / "
                 "(SumWithMask + SumWithoutMask); WithoutMaskSamples: samples with someone "
                 "unmasked."),
)
FACEMASK_REPORTS = register_source_spec(RawLogSpec(FACEMASK_LOG_FOLDER, (FACEMASK,)))

UNKNOWN, NO_MASK, MASK = -1, 0, 1
MASK_STATES: dict[int, Literal["mask", "no_mask", "unknown"]] = {
    MASK: "mask", NO_MASK: "no_mask", UNKNOWN: "unknown",
}


def decide(votes: Iterable[bool], min_observations: int, previous: int = UNKNOWN) -> int:
    """The smoothed label of a track's kept votes (True = mask); see the module docstring."""
    kept = list(votes)
    if len(kept) < max(min_observations, 1):
        return UNKNOWN
    masked = sum(1 for v in kept if v)
    if 2 * masked > len(kept):
        return MASK
    if 2 * masked < len(kept):
        return NO_MASK
    return previous


def mask_vote(
    model: MaskedFaceModel,
    image: np.ndarray,
    face_box: np.ndarray,
    known_prob: float = math.nan,
    crop_scale: float = 1.7,
    min_score: float = 0.35,
) -> bool | None:
    """One observation of a face: True = mask, False = no mask, None = the model does not see
    a face in the crop (its best central anchor scores below ``min_score``)."""
    if math.isfinite(known_prob):
        return known_prob >= 0.5
    crop, _ = crop_region(image, square_around(np.asarray(face_box, np.float64), crop_scale))
    score, prob = model.classify(crop)
    if score < min_score:
        return None
    return prob >= 0.5


def requires_faces_before(
    config: LookoutConfig, step: PluginConfig, name: str
) -> list[tuple[str | None, str | None, str]]:
    """A problem unless an enabled ``faces`` step comes before ``step``."""
    if not step.enabled:
        return []
    for other in config.source_post_processors:
        if other is step:
            break
        if other.enabled and other.name == "faces":
            return []
    return [(None, "Name", f"{name} needs an enabled faces step before it")]


class FacemaskConfig(PluginConfig):
    """``[SourcePostProcessor_N] Name = facemask``."""

    mask_model_path: str = Field(
        MASK_MODEL,
        alias="MaskModelPath",
        description="Masked-face model (relative paths are inside AssetsDirectory).",
        json_schema_extra=form("a path to facemask_rfb640_masked_face_v2.onnx"),
    )
    crop_scale: float = Field(
        1.7,
        alias="CropScale",
        ge=1.0,
        le=4.0,
        description="The classified crop is a square this many times the face box.",
        json_schema_extra=form("a number from 1 to 4"),
    )
    min_score: float = Field(
        0.35,
        alias="MinScore",
        ge=0.0,
        lt=1.0,
        description="Least face score of the model on a face crop for an observation.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    min_face_size: float = Field(
        20.0,
        alias="MinFaceSize",
        ge=0.0,
        description="Faces narrower than this many pixels give no observation.",
        json_schema_extra=form("a number of pixels >= 0"),
    )
    window: int = Field(
        7,
        alias="Window",
        ge=1,
        description="Votes kept per track (the last ones).",
        json_schema_extra=form("an integer >= 1"),
    )
    min_observations: int = Field(
        3,
        alias="MinObservations",
        ge=1,
        description="Votes a track needs before its mask is known.",
        json_schema_extra=form("an integer >= 1"),
    )
    forget_seconds: float = Field(
        30.0,
        alias="ForgetSeconds",
        gt=0.0,
        description="A track unseen this many seconds is forgotten.",
        json_schema_extra=form("a number of seconds > 0"),
    )
    threads: int = Field(
        0,
        alias="Threads",
        ge=0,
        description="ONNX Runtime threads of the masked-face model (0 = the thread budget's "
        "threads per detector session).",
        json_schema_extra=form("an integer >= 0"),
    )

    def cross_check(self, config: LookoutConfig) -> list[tuple[str | None, str | None, str]]:
        return requires_faces_before(config, self, "facemask")


@dataclass
class _TrackVotes:
    votes: deque[bool]
    seen: float
    label: int = UNKNOWN


@POST_PROCESSORS.register("facemask")
class Facemask(PostProcessor):
    STATE = ("tracks", "classified")
    Config = FacemaskConfig
    phase = "after_tracker"
    needs_image = True

    def __init__(self, config: PluginConfig, source: SourceConfig, app: LookoutConfig) -> None:
        settings = plugin_settings(FacemaskConfig, config)
        super().__init__(settings, source, app)
        self.settings = settings
        self._model_path = model_file(app, settings.mask_model_path, "MaskModelPath")
        self._model: MaskedFaceModel | None = None
        self.tracks: dict[int, _TrackVotes] = {}
        self.classified = 0

    @property
    def model(self) -> MaskedFaceModel:
        if self._model is None:
            threads = self.settings.threads or thread_budget(self.app).threads
            self._model = MaskedFaceModel.shared(self._model_path, threads, self.app.detector)
        return self._model

    def observe(self, image: np.ndarray, face_box: np.ndarray, known_prob: float) -> bool | None:
        """One vote for a face (True = mask), or None when the model does not see a face."""
        if not math.isfinite(known_prob):
            self.classified += 1
        s = self.settings
        return mask_vote(self.model, image, face_box, known_prob, s.crop_scale, s.min_score)

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        n = len(dets)
        s = self.settings
        now = frame.timestamp.timestamp()
        attrs = dets.attributes
        boxes = attrs.get("face_box")
        fresh = attrs.get("face_fresh")
        probs = attrs.get("face_mask_prob")
        mask = np.full(n, UNKNOWN, np.int8)
        for k, tid in enumerate(dets.track_ids.tolist()):
            vote = None
            box = None if boxes is None else np.asarray(boxes[k], np.float64)
            if (
                box is not None and fresh is not None and fresh[k] and np.isfinite(box).all()
                and box[2] - box[0] >= s.min_face_size
            ):
                known = float(probs[k]) if probs is not None else math.nan
                vote = self.observe(frame.image, box, known)
            if tid < 0:
                mask[k] = decide([] if vote is None else [vote], s.min_observations)
                continue
            state = self.tracks.get(tid)
            if state is None:
                state = self.tracks[tid] = _TrackVotes(deque(maxlen=s.window), now)
            state.seen = now
            if vote is not None:
                state.votes.append(vote)
                label = decide(state.votes, s.min_observations, state.label)
                if label != state.label:
                    frame.emit(MaskState, track_id=tid, mask=MASK_STATES[label],
                               previous=MASK_STATES[state.label])
                    state.label = label
            mask[k] = state.label
        for tid in [t for t, st in self.tracks.items() if now - st.seen > s.forget_seconds]:
            del self.tracks[tid]
        attrs["mask"] = mask
        if frame.sample_due:
            frame.emit(FacemaskSample, with_mask=int(np.count_nonzero(mask == MASK)),
                       without_mask=int(np.count_nonzero(mask == NO_MASK)),
                       no_face=int(np.count_nonzero(mask == UNKNOWN)))
        return frame
