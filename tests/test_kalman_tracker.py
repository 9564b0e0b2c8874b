"""KalmanTracker on hand-checkable synthetic scenes, from the INI, and on real MOT sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from libs.config import ConfigError, parse_config_text
from libs.config.models import TrackerConfig
from libs.frame import Detections, Frame
from libs.geometry import iou_matrix
from libs.trackers import TRACKERS, Tracker
from libs.trackers.kalman_tracker import KalmanTracker, KalmanTrackerConfig
from tests.conftest import PETS, TUD

START = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
IMAGE = np.zeros((1, 1, 3), np.uint8)
FPS = 7.0


def make_tracker(name: str = "KalmanTracker", **keys: object) -> Tracker:
    cls = TRACKERS.get(name)
    return cls(cls.Config.model_validate({"Name": name, **keys}))


def frame_at(
    index: int,
    boxes: list[list[float]] | np.ndarray,
    scores: list[float] | np.ndarray | None = None,
    fps: float = FPS,
) -> Frame:
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.full(len(arr), 0.9) if scores is None else np.asarray(scores, dtype=np.float32)
    return Frame(
        camera_id="cam",
        index=index,
        timestamp=START + timedelta(seconds=index / fps),
        image=IMAGE,
        detections=Detections(boxes=arr, scores=s),
    )


def walker(x0: float, y0: float, vx: float, k: float) -> list[float]:
    """A 40x100 box moving ``vx`` pixels per frame."""
    x = x0 + vx * k
    return [x, y0, x + 40.0, y0 + 100.0]


def id_near(frame: Frame, box: list[float], tol: float = 6.0) -> int | None:
    """Track id of the output box within ``tol`` pixels of ``box``, if any."""
    for out, track_id in zip(frame.detections.boxes, frame.detections.track_ids, strict=True):
        if np.abs(out - np.asarray(box)).max() <= tol:
            return int(track_id)
    return None


# -- registry and configuration ----------------------------------------------------------------


def test_registered_with_its_own_config() -> None:
    cls = TRACKERS.get("KalmanTracker")
    assert cls is KalmanTracker
    assert issubclass(cls, Tracker)
    assert cls.Config is KalmanTrackerConfig
    assert issubclass(KalmanTrackerConfig, TrackerConfig)
    assert "KalmanTracker" in TRACKERS.names() and "IOUTracker" in TRACKERS.names()


def test_keys_of_a_plain_tracker_config_carry_over() -> None:
    # The evaluation runner builds trackers from a plain TrackerConfig.
    plain = TrackerConfig.model_validate(
        {"Name": "KalmanTracker", "MaxLost": 5, "TrackerIOUThreshold": 0.3}
    )
    tracker = KalmanTracker(plain)
    assert tracker.max_lost == 5
    assert tracker.iou_threshold == pytest.approx(0.3)
    assert tracker.max_lost_seconds == pytest.approx(2.0)  # not set: this tracker's default
    assert tracker.high_score == pytest.approx(0.6)


def _ini(tracker_lines: str) -> str:
    return f"[Tracker]\n{tracker_lines}\n[Source_0]\nId = cam1\nVideoPath = video.avi\n"


def test_ini_keys_load_into_the_tracker() -> None:
    text = _ini(
        "Name = KalmanTracker\n"
        "MaxLost = 40\n"
        "MaxLostSeconds = 1.5\n"
        "TrackerIOUThreshold = 0.25\n"
        "LowScoreIOUThreshold = 0.45\n"
        "HighScore = 0.55\n"
        "LowScore = 0.2\n"
        "NewTrackScore = 0.75\n"
        "MinHits = 4\n"
        "OutputLost = 1\n"
    )
    config = parse_config_text(text, "test.ini", check_files=False)
    cfg = config.tracker
    assert isinstance(cfg, KalmanTrackerConfig)
    assert (cfg.max_lost, cfg.max_lost_seconds, cfg.min_hits, cfg.output_lost) == (40, 1.5, 4, 1)
    assert (cfg.tracker_iou_threshold, cfg.low_score_iou_threshold) == (0.25, 0.45)
    assert (cfg.high_score, cfg.low_score, cfg.new_track_score) == (0.55, 0.2, 0.75)
    tracker = TRACKERS.get(cfg.name)(cfg)
    assert isinstance(tracker, KalmanTracker)
    assert (tracker.max_lost, tracker.min_hits, tracker.new_track_score) == (40, 4, 0.75)
    ini = cfg.to_ini()
    assert ini["MaxLostSeconds"] == "1.5" and ini["OutputLost"] == "1"


def test_ini_defaults() -> None:
    config = parse_config_text(_ini("Name = KalmanTracker"), "test.ini", check_files=False)
    cfg = config.tracker
    assert isinstance(cfg, KalmanTrackerConfig)
    assert (cfg.max_lost, cfg.max_lost_seconds, cfg.min_hits, cfg.output_lost) == (60, 2.0, 3, 2)
    assert cfg.max_lost_uncertainty == 0.5
    assert (cfg.tracker_iou_threshold, cfg.low_score_iou_threshold) == (0.2, 0.4)
    assert (cfg.high_score, cfg.low_score, cfg.new_track_score) == (0.6, 0.1, 0.7)


@pytest.mark.parametrize(
    ("line", "key"),
    [("HighScore = 1.5", "HighScore"), ("MinHits = 0", "MinHits"), ("Nonsense = 1", "Nonsense")],
)
def test_ini_errors_name_the_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(_ini(f"Name = KalmanTracker\n{line}"), "test.ini", check_files=False)
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Tracker", key)


# -- identities ------------------------------------------------------------------------------


def _crossing(name: str, hidden: tuple[int, ...]) -> tuple[list[int | None], list[int | None]]:
    """Two people walking towards each other at 12 px/frame (7 fps) along nearly the same
    line; they pass between frames 19 and 20.  ``hidden`` frames lack the first person."""
    tracker = make_tracker(name)
    ids_a: list[int | None] = []
    ids_b: list[int | None] = []
    for k in range(40):
        a, b = walker(0.0, 0.0, 12.0, k), walker(474.0, 6.0, -12.0, k)
        frame = tracker.update(frame_at(k, [b] if k in hidden else [a, b]))
        if k not in hidden:
            ids_a.append(id_near(frame, a))
        ids_b.append(id_near(frame, b))
    return ids_a, ids_b


@pytest.mark.parametrize("hidden", [(), (19, 20, 21)], ids=["both-seen", "one-hidden"])
def test_ids_stay_with_people_through_a_crossing(hidden: tuple[int, ...]) -> None:
    ids_a, ids_b = _crossing("KalmanTracker", hidden)
    assert set(ids_a) == {1}
    assert set(ids_b) == {2}
    # The IoU tracker, matching last boxes, swaps the two (or starts a new id).
    iou_a, iou_b = _crossing("IOUTracker", hidden)
    assert len(set(iou_a)) > 1 and len(set(iou_b)) > 1


def test_a_three_frame_gap_is_bridged_with_the_same_id() -> None:
    # 12 px/frame with 40 px wide boxes: after 3 missing frames the person is 48 px from
    # the last box, which no longer overlaps it; the motion prediction still does.
    hidden = (10, 11, 12)
    seen: dict[str, list[int]] = {}
    for name in ("KalmanTracker", "IOUTracker"):
        tracker = (
            make_tracker(name, OutputLost=0) if name == "KalmanTracker" else make_tracker(name)
        )
        ids: list[int] = []
        for k in range(25):
            frame = tracker.update(frame_at(k, [] if k in hidden else [walker(0, 0, 12, k)]))
            if k in hidden:
                assert len(frame.detections) == 0  # OutputLost = 0: nothing while unseen
            else:
                ids.extend(frame.detections.track_ids.tolist())
        seen[name] = ids
    assert set(seen["KalmanTracker"]) == {1}
    assert set(seen["IOUTracker"]) == {1, 2}


@pytest.mark.parametrize("output_lost", [0, 1, 2, 4])
def test_output_lost_reports_coasting_tracks_at_their_prediction(output_lost: int) -> None:
    # At 25 fps three frames are short enough for the prediction to stay sure (the test
    # below shows the other limit, OUTPUT_UNCERTAINTY).
    tracker = make_tracker(OutputLost=output_lost)
    for k in range(10):
        tracker.update(frame_at(k, [walker(0, 0, 4, k)], fps=25))
    for k in range(10, 13):  # unseen for three frames
        frame = tracker.update(frame_at(k, [], fps=25))
        if k - 9 <= output_lost:
            assert frame.detections.track_ids.tolist() == [1]
            assert frame.detections.scores.tolist() == [0.0]
            np.testing.assert_allclose(frame.detections.boxes[0], walker(0, 0, 4, k), atol=4)
        else:
            assert len(frame.detections) == 0
    frame = tracker.update(frame_at(13, [walker(0, 0, 4, 13)], fps=25))
    assert frame.detections.track_ids.tolist() == [1]


def test_a_coasting_track_is_reported_only_while_its_prediction_is_sure() -> None:
    # At 4 fps the walker's predicted centre is known within about 0.12 box widths after
    # one unseen frame and 0.19 after two (OUTPUT_UNCERTAINTY is 0.15): only the first is
    # reported, though OutputLost allows four; the track lives on and is matched again.
    tracker = make_tracker(OutputLost=4)
    for k in range(10):
        tracker.update(frame_at(k, [walker(0, 0, 21, k)], fps=4))
    reported = []
    for k in range(10, 13):
        frame = tracker.update(frame_at(k, [], fps=4))
        reported.append(frame.detections.track_ids.tolist())
    assert reported == [[1], [], []]
    frame = tracker.update(frame_at(13, [walker(0, 0, 21, 13)], fps=4))
    assert frame.detections.track_ids.tolist() == [1]


def test_tentative_tracks_are_never_reported() -> None:
    tracker = make_tracker(MinHits=3)
    person = lambda k: walker(0, 300, 5, k)  # noqa: E731
    blips = {5: [400.0, 0.0, 440.0, 100.0]}  # one frame
    pair = {9: [600.0, 0.0, 640.0, 100.0], 10: [600.0, 0.0, 640.0, 100.0]}  # two frames
    late = {k: [200.0, 0.0, 240.0, 100.0] for k in range(14, 20)}  # from frame 14 on
    first_id_of_late: int | None = None
    for k in range(20):
        boxes = [person(k)] + [d[k] for d in (blips, pair, late) if k in d]
        frame = tracker.update(frame_at(k, boxes, [0.95] * len(boxes)))
        out_ids = frame.detections.track_ids.tolist()
        confirmed = {t.track_id for t in tracker.active_tracks()}
        assert set(out_ids) <= confirmed
        assert id_near(frame, blips.get(k, [-1e3] * 4)) is None
        assert id_near(frame, pair.get(k, [-1e3] * 4)) is None
        late_id = id_near(frame, late[k]) if k in late else None
        if k in (14, 15):
            assert late_id is None  # tentative for its first MinHits - 1 frames
        elif k >= 16:
            assert late_id is not None
            first_id_of_late = first_id_of_late or late_id
            assert late_id == first_id_of_late
        assert len(out_ids) == 1 + (late_id is not None)


def test_a_track_confirmed_late_hands_its_tentative_boxes_to_that_frame() -> None:
    tracker = make_tracker(MinHits=3)
    early_seen: dict[int, list] = {}
    for k in range(8):
        boxes = [walker(0, 300, 5, k)] + ([walker(100, 0, 10, k)] if k >= 3 else [])
        frame = tracker.update(frame_at(k, boxes))
        for tid, path in frame.early_boxes.items():
            assert tid not in early_seen  # handed over once
            early_seen[tid] = path
            assert tid in frame.detections.track_ids.tolist()  # and the track is out now
            confirmed_at = k
    # The person of frame 0 was confirmed at birth: nothing to hand over.  The newcomer of
    # frame 3 is confirmed at frame 5 with its boxes of frames 3 and 4, raw detections.
    assert list(early_seen) == [2]
    assert confirmed_at == 5
    path = early_seen[2]
    assert [e.frame for e in path] == [3, 4]
    assert [e.timestamp for e in path] == [START + timedelta(seconds=k / FPS) for k in (3, 4)]
    for e, k in zip(path, (3, 4), strict=True):
        assert np.allclose(e.box, walker(100, 0, 10, k))
    assert all(not t.early for t in tracker.active_tracks())  # nothing kept after


def test_people_in_the_first_frame_are_reported_at_once() -> None:
    tracker = make_tracker(MinHits=3)
    boxes = [walker(0, 0, 5, 0), walker(300, 0, -5, 0)]
    frame = tracker.update(frame_at(0, boxes))
    assert sorted(frame.detections.track_ids.tolist()) == [1, 2]


def test_low_score_detections_extend_tracks_but_never_start_them() -> None:
    tracker = make_tracker(OutputLost=0)  # HighScore 0.6, NewTrackScore 0.7, LowScore 0.1
    a_ids: list[int | None] = []
    for k in range(20):
        a = walker(0, 0, 6, k)
        b = walker(0, 300, 6, k)  # always weak: never a track
        c = walker(500, 300, -6, k)  # high enough to match, too low to start a track
        a_score = 0.9 if k < 5 else 0.3
        frame = tracker.update(frame_at(k, [a, b, c], [a_score, 0.3, 0.65]))
        a_ids.append(id_near(frame, a))
        assert id_near(frame, b) is None and id_near(frame, c) is None
        assert len(frame.detections) == 1
    assert set(a_ids) == {1}
    assert [t.track_id for t in tracker.active_tracks()] == [1]
    # Below LowScore a detection is ignored, even where a track waits for it.
    frame = tracker.update(frame_at(20, [walker(0, 0, 6, 20)], [0.05]))
    assert len(frame.detections) == 0
    assert tracker.active_tracks()[0].lost == 1


@pytest.mark.parametrize("max_lost", [0, 2, 5])
def test_a_track_ends_after_max_lost_frames(max_lost: int) -> None:
    tracker = make_tracker(MaxLost=max_lost, MaxLostSeconds=0, OutputLost=0)
    k = 0
    for _ in range(5):
        tracker.update(frame_at(k, [walker(0, 0, 2, k)]))
        k += 1
    for missing in range(1, max_lost + 3):
        tracker.update(frame_at(k, []))
        k += 1
        alive = [t.track_id for t in tracker.active_tracks()]
        assert alive == ([1] if missing <= max_lost else []), missing
        if alive:
            assert tracker.active_tracks()[0].lost == missing
    outputs = [tracker.update(frame_at(k + j, [walker(0, 0, 2, k + j)])) for j in range(3)]
    # A new person: tentative for two frames, then confirmed with a new id.
    assert [f.detections.track_ids.tolist() for f in outputs] == [[], [], [2]]


@pytest.mark.parametrize(("fps", "frames_kept"), [(7.0, 7), (25.0, 25)])
def test_a_track_ends_after_max_lost_seconds(fps: float, frames_kept: int) -> None:
    tracker = make_tracker(MaxLost=1000, MaxLostSeconds=1.0, OutputLost=0,
                           MaxLostUncertainty=1000)  # the time cap alone
    k = 0
    for _ in range(5):
        tracker.update(frame_at(k, [walker(0, 0, 0, k)], fps=fps))
        k += 1
    for missing in range(1, frames_kept + 2):
        tracker.update(frame_at(k, [], fps=fps))
        k += 1
        alive = bool(tracker.active_tracks())
        assert alive == (missing <= frames_kept), (missing, fps)


def test_the_motion_model_runs_on_timestamps() -> None:
    # A fast walker (20 px/frame at 7 fps, 40 px wide boxes); the camera drops two frames,
    # so the next box is 60 px on and does not overlap the last one.  The prediction uses the
    # time between the frames, not a frame count.
    tracker = make_tracker()
    for k in range(10):
        tracker.update(frame_at(k, [walker(0, 0, 20, k)]))
    frame = tracker.update(frame_at(12, [walker(0, 0, 20, 12)]))
    assert frame.detections.track_ids.tolist() == [1]
    # The same walk filmed at 25 fps is one track too.
    tracker = make_tracker()
    ids: set[int] = set()
    for k in range(40):
        frame = tracker.update(frame_at(k, [walker(0, 0, 20 * 7 / 25, k)], fps=25.0))
        ids |= set(frame.detections.track_ids.tolist())
    assert ids == {1}


def test_history_and_first_and_last_seen() -> None:
    tracker = make_tracker(OutputLost=0)
    for k in range(10):
        tracker.update(frame_at(k, [walker(0, 0, 4, k)]))
    for k in range(10, 12):
        tracker.update(frame_at(k, []))
    (track,) = tracker.active_tracks()
    assert (track.first_frame, track.last_frame, track.hits, track.lost) == (0, 9, 10, 2)
    assert track.first_seen == START
    assert track.last_seen == START + timedelta(seconds=9 / FPS)
    assert len(track.history) == 10
    history = np.stack(list(track.history))
    # The reported (filtered) boxes of a steady walk stay on the walk.
    np.testing.assert_allclose(history, [walker(0, 0, 4, k) for k in range(10)], atol=2.0)
    np.testing.assert_allclose(track.box, walker(0, 0, 4, 9), atol=2.0)


def test_output_contract_on_random_scenes() -> None:
    rng = np.random.default_rng(3)
    tracker = make_tracker()
    for k in range(60):
        n = int(rng.integers(0, 15))
        xy = rng.uniform(0, 600, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(20, 80, (n, 2))], axis=1)
        scores = rng.uniform(0.0, 1.0, n).astype(np.float32)
        frame = frame_at(k, boxes, scores)
        frame.detections.attributes["zone"] = np.arange(n, dtype=np.int32) + 1
        zone_of_score = dict(zip(scores.tolist(), range(1, n + 1), strict=True))
        frame = tracker.update(frame)
        dets = frame.detections
        ids = dets.track_ids.tolist()
        assert len(set(ids)) == len(ids) and all(i >= 1 for i in ids)
        assert set(ids) <= {t.track_id for t in tracker.active_tracks()}
        assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
        assert np.isfinite(dets.boxes).all()
        assert len(dets.attributes["zone"]) == len(dets)
        for score, zone in zip(dets.scores.tolist(), dets.attributes["zone"].tolist(), strict=True):
            # Matched rows keep their own attributes; coasting rows (score 0) carry zeros.
            assert zone == (zone_of_score[score] if score > 0.0 else 0)


# -- real sequences ----------------------------------------------------------------------------


@pytest.mark.parametrize("root", [PETS, TUD], ids=["PETS09-S2L1", "TUD-Campus"])
def test_public_detections_beat_the_iou_tracker(shared: Path, root: Path) -> None:
    from libs.evaluation.runner import make_tracker as runner_tracker
    from libs.evaluation.runner import track_detections
    from libs.evaluation.tracking import load_sequence, score_tracks

    seq = load_sequence(root)
    assert seq.det is not None
    scores = {}
    for name in ("IOUTracker", "KalmanTracker"):
        keys = {} if name == "KalmanTracker" else {"MaxLost": 5, "TrackerIOUThreshold": 0.3}
        config = TrackerConfig.model_validate({"Name": name, **keys})
        rows, ms, _ = track_detections(runner_tracker(config), seq, seq.det)
        scores[name] = {**score_tracks(seq, rows), "ms": ms}
        s = scores[name]
        print(
            f"{seq.name} {name}: HOTA {s['HOTA']:.3f} IDF1 {s['IDF1']:.3f} MOTA {s['MOTA']:.3f} "
            f"IDSW {s['IDSW']} IDs {s['IDs']} ({ms:.3f} ms/frame)"
        )
    iou, kalman = scores["IOUTracker"], scores["KalmanTracker"]
    assert kalman["IDF1"] > iou["IDF1"]
    assert kalman["HOTA"] > iou["HOTA"]
    assert kalman["IDSW"] <= iou["IDSW"] / 2


def _walk_then_vanish(jitter: float, seed: int = 0, frames: int = 60) -> tuple[float, int]:
    """Five people walking at 7 fps, their boxes displaced by ``jitter`` box heights of
    random shake per frame (a moving camera's), then gone: the scene's process-noise
    multiplier when they vanish, and how many frames their tracks outlive them."""
    rng = np.random.default_rng(seed)
    tracker = make_tracker(MaxLost=1000, MaxLostSeconds=100.0, OutputLost=0)
    assert isinstance(tracker, KalmanTracker)
    shake = np.zeros(2)
    for k in range(frames):
        shake += rng.normal(0.0, jitter * 100.0, 2)
        boxes = [np.add(walker(150.0 * i, 50.0, 3.0, k), np.tile(shake, 2)) for i in range(5)]
        tracker.update(frame_at(k, boxes))
    q_scale = tracker._kf.q_scale
    for gone in range(1, 200):
        tracker.update(frame_at(frames + gone, []))
        if not tracker.active_tracks():
            return q_scale, gone
    return q_scale, 200


def test_the_scene_sets_the_motion_noise_and_how_long_a_lost_track_lasts() -> None:
    """Steady walkers (a fixed camera) keep the base noise and a lost track coasts on its
    trusted prediction; the same walkers shaken as by a moving camera raise the noise, and
    their lost tracks end within a few frames instead of coasting into other people."""
    steady_q, steady_kept = _walk_then_vanish(0.0)
    shaken_q, shaken_kept = _walk_then_vanish(0.15)
    assert steady_q == pytest.approx(1.0)
    assert shaken_q > 5.0
    assert steady_kept >= 4 * shaken_kept and shaken_kept >= 1
    # The same scene at 25 fps: the time-based model gives the base noise too.
    tracker = make_tracker()
    for k in range(60):
        tracker.update(frame_at(k, [walker(150.0 * i, 50.0, 3.0 * 7 / 25, k) for i in range(5)],
                                fps=25.0))
    assert isinstance(tracker, KalmanTracker) and tracker._kf.q_scale == pytest.approx(1.0)


# -- re-linking ----------------------------------------------------------------------------


def _hidden_walk(tracker: Tracker, hidden: range, frames: int = 40,
                 people: int = 1, gap_x: float = 300.0) -> list[Frame]:
    """``people`` walkers 100 px tall at 7 px per frame (0.5 heights per second at 7 fps),
    none detected during ``hidden``."""
    out = []
    for k in range(frames):
        boxes = [] if k in hidden else [walker(20.0 + gap_x * i, 50.0, 7.0, k)
                                        for i in range(people)]
        out.append(tracker.update(frame_at(k, boxes)))
    return out


def test_someone_hidden_for_under_two_seconds_keeps_their_id() -> None:
    """Behind a pillar for 1.6 s: the track ends (its prediction is no longer sure), and the
    new track confirmed when they come out takes the old id, its tentative boxes too."""
    hidden = range(14, 25)
    out = _hidden_walk(make_tracker(MaxLostSeconds=0.5), hidden)
    assert set(out[13].detections.track_ids.tolist()) == {1}
    assert all(len(f.detections) == 0 for f in out[20:27])  # ended, then tentative
    confirmed = out[27]
    assert confirmed.detections.track_ids.tolist() == [1]
    assert sorted(confirmed.early_boxes) == [1]
    assert {tuple(f.detections.track_ids.tolist()) for f in out[27:]} == {(1,)}
    # Off: a new id, as for anybody else.
    out = _hidden_walk(make_tracker(MaxLostSeconds=0.5, RelinkSeconds=0), hidden)
    assert out[27].detections.track_ids.tolist() == [2]
    # Hidden longer than RelinkSeconds: a new id.
    out = _hidden_walk(make_tracker(MaxLostSeconds=0.5, RelinkSeconds=1.0), hidden)
    assert out[27].detections.track_ids.tolist() == [2]


def test_a_track_followed_under_a_second_is_not_taken_up() -> None:
    out = _hidden_walk(make_tracker(MaxLostSeconds=0.5), range(5, 14), frames=25)
    assert out[16].detections.track_ids.tolist() == [2]


def test_no_relink_when_the_choice_is_not_unique() -> None:
    """Two people 60 px apart vanish together; one of them comes back: either old id could
    be theirs, so they get a new one."""
    tracker = make_tracker(MaxLostSeconds=0.5)
    for k in range(14):
        tracker.update(frame_at(k, [walker(20.0, 50.0, 7.0, k), walker(80.0, 50.0, 7.0, k)]))
    for k in range(14, 25):
        tracker.update(frame_at(k, []))
    out = [tracker.update(frame_at(k, [walker(50.0, 50.0, 7.0, k)])) for k in range(25, 30)]
    assert out[2].detections.track_ids.tolist() == [3]


def test_no_relink_where_the_camera_moves() -> None:
    """The same walkers, their boxes shaken as by a moving camera: a prediction there is a
    guess, so a track that ended is never taken up."""
    rng = np.random.default_rng(1)
    tracker = make_tracker(MaxLostSeconds=0.5)
    assert isinstance(tracker, KalmanTracker)
    shake = np.zeros(2)
    outs = []
    for k in range(40):
        shake += rng.normal(0.0, 8.0, 2)
        boxes = [] if 14 <= k < 25 else [
            np.add(walker(20.0 + 300.0 * i, 50.0, 7.0, k), np.tile(shake, 2)) for i in range(3)]
        outs.append(tracker.update(frame_at(k, boxes)))
    assert tracker._kf.q_scale > 1.5
    before = set(outs[13].detections.track_ids.tolist())
    after = set(outs[-1].detections.track_ids.tolist())
    assert len(before) == len(after) == 3 and not before & after


# -- contested detections --------------------------------------------------------------------


def _passing_in_front(tracker: Tracker) -> tuple[list[int | None], list[int | None]]:
    """A walker (box bottom at 285) passes in front of someone standing further back (bottom
    at 250), who is not detected while the two overlap; the walker quickens right there, so
    its prediction lags and the stander's box overlaps the walker's detection as much.  The
    ids given to the walker's and the stander's boxes, frame by frame."""
    stander = [100.0, 150.0, 140.0, 250.0]
    xs = [20.0 + 3.0 * k for k in range(22)]
    xs += [xs[-1] + 14.0 + 3.0 * k for k in range(1, 30)]
    walker_ids, stander_ids = [], []
    for k, x in enumerate(xs):
        walker_box = [x, 185.0, x + 40.0, 285.0]
        behind = abs(x - stander[0]) < 30.0
        out = tracker.update(frame_at(k, [walker_box] if behind else [walker_box, stander]))
        walker_ids.append(id_near(out, walker_box, 15.0))
        stander_ids.append(id_near(out, stander, 15.0))
    return walker_ids, stander_ids


def test_a_contested_detection_goes_to_the_person_in_front(
        monkeypatch: pytest.MonkeyPatch) -> None:
    walker_ids, stander_ids = _passing_in_front(make_tracker())
    walker, stander = walker_ids[10], stander_ids[10]
    assert walker is not None and stander is not None and walker != stander
    assert {i for i in walker_ids[10:] if i is not None} == {walker}
    assert stander not in walker_ids
    # Scored by IoU alone, the standing track takes the walker's box where it quickens, and
    # the two end up with each other's ids.
    import libs.trackers.kalman_tracker as kalman

    monkeypatch.setattr(kalman, "FOOT_PENALTY", 0.0)
    walker_ids, stander_ids = _passing_in_front(make_tracker())
    assert walker_ids[-1] == stander and stander_ids[-1] == walker


def test_only_contested_detections_are_rescored() -> None:
    from libs.trackers.kalman_tracker import FOOT_PENALTY, contested_by_depth

    predicted = np.array([[0, 0, 40, 100], [22, 30, 62, 130], [300, 0, 340, 100]], np.float64)
    boxes = np.array([[8, 22, 48, 122], [302, 2, 342, 102]], np.float64)
    iou = iou_matrix(predicted, boxes)
    got = contested_by_depth(iou, predicted, boxes)
    # The first detection overlaps the first two predictions: each pair loses FOOT_PENALTY
    # per box height between the bottoms (22 and 8 px of 100); the second is untouched.
    assert min(iou[0, 0], iou[1, 0]) >= 0.3
    assert got[0, 0] == pytest.approx(iou[0, 0] - FOOT_PENALTY * 0.22)
    assert got[1, 0] == pytest.approx(iou[1, 0] - FOOT_PENALTY * 0.08)
    assert got[2, 0] == iou[2, 0] == 0.0
    np.testing.assert_array_equal(got[:, 1], iou[:, 1])
    assert iou[0, 0] > iou[1, 0] and got[1, 0] > got[0, 0]  # the box's feet decide
