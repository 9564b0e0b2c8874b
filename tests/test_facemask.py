"""``facemask``: votes smoothed per track, the raw-log samples, the report kind, and the
masked-face model's answer on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libs.config import ConfigError
from libs.metrics.reports import source_specs
from libs.post_processors.facemask import (
    FACEMASK,
    FACEMASK_LOG_FOLDER,
    Facemask,
    decide,
    mask_vote,
)
from libs.post_processors.faces import MASK_MODEL, MaskedFaceModel
from libs.records import FacemaskSample, MaskState
from tests.faces_helpers import (
    MASKED_FACE,
    UNMASKED_FACE,
    frame_of,
    load,
    person_with_face,
    read_face,
    scene,
    section,
)

NAN = float("nan")


def facemask_stage(tmp_path: Path, shared: Path, **keys: object) -> Facemask:
    config = load(tmp_path, shared, section(4, "faces") + "\n" + section(5, "facemask", **keys))
    settings = next(p for p in config.source_post_processors if p.name == "facemask")
    return Facemask(settings, config.sources[0], config)


def faces_given(n: int, fresh: list[bool], probs: list[float],
                found: list[bool] | None = None) -> dict[str, np.ndarray]:
    """The faces step's attributes for ``n`` people, with known mask probabilities."""
    found = [True] * n if found is None else found
    box = np.array([[10, 10, 40, 40] if f else [NAN] * 4 for f in found], np.float32)
    return {
        "face_box": box.reshape(n, 4),
        "face_fresh": np.array(fresh, bool),
        "face_mask_prob": np.array(probs, np.float32),
    }


# ---------------------------------------------------------------------------------------
# Smoothing, by hand
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("votes", "min_obs", "previous", "expected"),
    [
        ([], 1, -1, -1),
        ([True, True], 3, -1, -1),  # not enough votes
        ([True, True, False], 3, -1, 1),  # 2 of 3 say mask
        ([True, False, False], 3, 1, 0),  # 1 of 3
        ([True, False], 2, -1, -1),  # a tie keeps the previous value...
        ([True, False], 2, 0, 0),
        ([True, False, True, False], 2, 1, 1),  # ...whatever it was
        ([False], 1, 1, 0),
    ],
)
def test_decide(votes: list[bool], min_obs: int, previous: int, expected: int) -> None:
    assert decide(votes, min_obs, previous) == expected


def test_a_track_sequence_is_smoothed_over_the_last_votes(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, Window=3, MinObservations=2)
    probs = [0.9, 0.2, 0.1, 0.8, 0.9, 0.95]
    # votes M, N, N, M, M, M; kept (window 3) and decided:
    #   [M] -1 (one vote) | [M N] tie -> -1 | [M N N] 0 | [N N M] 0 | [N M M] 1 | [M M M] 1
    expected = [-1, -1, 0, 0, 1, 1]
    got = []
    for k, p in enumerate(probs):
        frame = frame_of(scene(), [[0, 0, 50, 200]], [9], 0.04 * k, k,
                         faces_given(1, [True], [p]))
        got.append(int(stage.process(frame).detections.attributes["mask"][0]))
    assert got == expected
    assert stage.classified == 0  # known probabilities: the model never ran


def test_carried_and_missing_faces_do_not_vote(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, Window=5, MinObservations=1)
    steps = [
        ([True], [0.9], [True], 1),  # one mask vote decides (MinObservations 1)
        ([False], [0.1], [True], 1),  # carried forward: no vote, the label stays
        ([True], [NAN], [False], 1),  # searched, no face: no vote, the label stays
        ([True], [0.2], [True], 1),  # M N: a tie keeps 1
        ([True], [0.2], [True], 0),  # M N N
    ]
    for k, (fresh, probs, found, expected) in enumerate(steps):
        frame = frame_of(scene(), [[0, 0, 50, 200]], [4], 0.1 * k, k,
                         faces_given(1, fresh, probs, found))
        assert stage.process(frame).detections.attributes["mask"][0] == expected, k


def test_faces_below_min_face_size_do_not_vote(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, MinObservations=1, MinFaceSize=20)
    attrs = faces_given(2, [True, True], [0.9, 0.9])
    attrs["face_box"][0] = [10, 10, 29, 40]  # 19 px wide
    out = stage.process(frame_of(scene(), [[0, 0, 50, 200]] * 2, [1, 2], attributes=attrs))
    assert out.detections.attributes["mask"].tolist() == [-1, 1]


def test_people_without_track_and_tracks_are_independent(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, MinObservations=1)
    frame = frame_of(scene(), [[0, 0, 50, 200]] * 3, [-1, 1, 2], 0.0, 0,
                     faces_given(3, [True, True, True], [0.9, 0.1, NAN], [True, True, False]))
    frame.sample_due = True  # a tick of the pipeline's sample clock
    out = stage.process(frame)
    mask = out.detections.attributes["mask"]
    assert mask.dtype == np.int8 and mask.tolist() == [1, 0, -1]
    assert [(r.with_mask, r.without_mask, r.no_face) for r in out.records
            if isinstance(r, FacemaskSample)] == [(1, 1, 1)]
    # track 1 decided "no mask" (the untracked person has no state to change)
    assert [(r.track_id, r.mask, r.previous) for r in out.records
            if isinstance(r, MaskState)] == [(1, "no_mask", "unknown")]


def test_forgotten_tracks_start_over(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, MinObservations=1, ForgetSeconds=5)
    stage.process(frame_of(scene(), [[0, 0, 50, 200]], [1], 0.0, 0,
                           faces_given(1, [True], [0.9])))
    stage.process(frame_of(scene(), [[0, 0, 50, 200]], [2], 6.0, 1,
                           faces_given(1, [True], [0.9])))  # track 1 unseen for 6 s
    assert 1 not in stage.tracks and 2 in stage.tracks


def test_without_the_faces_attributes_everybody_is_unknown(
    tmp_path: Path, shared: Path
) -> None:
    stage = facemask_stage(tmp_path, shared)
    frame = frame_of(scene(), [[0, 0, 50, 200]] * 2, [1, 2])
    frame.sample_due = True
    out = stage.process(frame)
    assert out.detections.attributes["mask"].tolist() == [-1, -1]
    assert [r.no_face for r in out.records if isinstance(r, FacemaskSample)] == [2]
    assert not any(isinstance(r, MaskState) for r in out.records)  # still unknown


# ---------------------------------------------------------------------------------------
# Configuration and reports
# ---------------------------------------------------------------------------------------


def test_facemask_needs_faces_before_it(tmp_path: Path, shared: Path) -> None:
    with pytest.raises(ConfigError, match="facemask needs an enabled faces step before it"):
        load(tmp_path, shared, section(4, "facemask") + "\n" + section(5, "faces"))
    with pytest.raises(ConfigError, match="facemask needs an enabled faces step"):
        load(tmp_path, shared, section(4, "facemask"))


def test_the_raw_log_is_reported_as_the_facemask_kind() -> None:
    spec = next(s for s in source_specs() if s.folder == FACEMASK_LOG_FOLDER)
    assert spec.kinds == (FACEMASK,)
    assert spec.columns == ("WithMask", "WithoutMask", "NoFace")
    assert FACEMASK.header(["Date"]) == [
        "Date", "Samples", "AvgWithMask", "MaxWithMask", "AvgWithoutMask", "MaxWithoutMask",
        "AvgNoFace", "MaxNoFace", "WithoutMaskSamples", "SumWithMask", "SumWithoutMask",
        "SumNoFace",
    ]


# ---------------------------------------------------------------------------------------
# The model on real faces
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_model(shared: Path) -> MaskedFaceModel:
    return MaskedFaceModel.shared(shared / MASK_MODEL, 1)


@pytest.mark.parametrize(("path", "expected"), [(MASKED_FACE, True), (UNMASKED_FACE, False)])
def test_the_classifier_on_a_real_face_in_a_frame(
    masked_model: MaskedFaceModel, path: Path, expected: bool
) -> None:
    image, _, pasted = person_with_face(read_face(path), face_side=64)
    assert mask_vote(masked_model, image, np.array(pasted, np.float64)) is expected


def test_the_stage_classifies_yunet_faces_itself(tmp_path: Path, shared: Path) -> None:
    stage = facemask_stage(tmp_path, shared, MinObservations=1)
    image, _, pasted = person_with_face(read_face(UNMASKED_FACE), face_side=64)
    attrs = {
        "face_box": np.array([pasted], np.float32),
        "face_fresh": np.array([True]),
        "face_mask_prob": np.array([NAN], np.float32),  # found by YuNet: no probability
    }
    out = stage.process(frame_of(image, [[250, 80, 420, 420]], [1], attributes=attrs))
    assert out.detections.attributes["mask"].tolist() == [0]
    assert stage.classified == 1
