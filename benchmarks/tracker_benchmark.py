"""Lookout's trackers against the trackers people would otherwise pick, on the same detections.

    .venv/bin/python benchmarks/tracker_benchmark.py [SEQUENCE ...] [--repeats 5] [--write]

Needs the peers: ``.venv/bin/python -m pip install --no-deps -r requirements/bench-peers.txt``
(see the header of that file for why ``--no-deps``).

In one process, every tracker registered in ``libs.trackers`` (``TRACKERS.names()``) and the
peers (SORT, ByteTrack, OC-SORT, BoT-SORT without camera-motion compensation and C-BIoU from
Roboflow's ``trackers`` package, and ``norfair``) run over each sequence given (MOT folders;
by default the development set: PETS09-S2L1, TUD-Campus and every sequence in
``../shared/data/mot``):

* with its public ``det/det.txt`` (Faster R-CNN, scores >= 0.5);
* where the sequence has frames, with Lookout's YOLOX-nano detections (the ``x86`` detector
  run once at MinScore 0.1 and cached as ``.npz``; each tracker then gets the score range it
  is designed for, see :data:`LOW_SCORE` / :data:`DEFAULT_SCORE`).

Each run is scored with :func:`libs.evaluation.tracking.score_tracks` (TrackEval HOTA, CLEAR,
Identity) and timed on the tracker's own update call only (input conversion and output reading
are outside the clock); the time is the median over ``--repeats`` runs, taken in rounds through
all trackers, which must give the same tracks.  On static-camera scenes
(:data:`STATIC_CAMERA`) the line crossings on a vertical line through the middle of the image,
counted by the product's own ``line_crossing`` step on each tracker's output, are matched to
the ground truth's (same direction, within 1 s).  A summary gives
each tracker's mean over the sequences and its worst sequence against that sequence's best
peer.  Results are printed; with ``--write`` they are also written as a Markdown report
(``docs/benchmarks.md``) and as JSON beside it (``docs/benchmarks.json``), which
``tests/test_tracker_benchmark_doc.py`` checks against each other.

:func:`score_tracker` scores any tracker factory on a sequence and is meant for reuse (for
example by ``lookout evaluate``); the peer adapters live in this file only and are never
imported by the product.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from libs.config.models import (  # noqa: E402
    CountingLine,
    DetectorConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.detectors import DETECTORS  # noqa: E402
from libs.evaluation.crossings import Crossing, reference_crossings  # noqa: E402
from libs.evaluation.mot import MotBoxes  # noqa: E402
from libs.evaluation.runner import (  # noqa: E402
    detect_sequence,
    frame_time,
    make_tracker,
    track_detections,
)
from libs.evaluation.tracking import Sequence, load_sequence, score_tracks  # noqa: E402
from libs.frame import Detections, EarlyBox, Frame, imageless  # noqa: E402
from libs.post_processors import POST_PROCESSORS  # noqa: E402
from libs.post_processors.line_crossing import LineCrossingConfig  # noqa: E402
from libs.records import LineCrossing as LineCrossingRecord  # noqa: E402
from libs.trackers import TRACKERS, Tracker  # noqa: E402

MODEL_FILE = "models/person_yolox_nano_416.onnx"
#: Scenes filmed by a fixed camera (``../shared/data/DATA.md``; every sequence of
#: ``data/mot`` is filmed from a moving platform, see its README): crossings are counted on
#: a vertical line through the middle of the image there.
STATIC_CAMERA = frozenset({"PETS09-S2L1", "TUD-Campus"})
#: A tracked crossing matches a ground-truth one in the same direction within this time.
CROSSING_TOLERANCE_S = 1.0
#: The shipped ``line_crossing`` hysteresis the crossings are counted with.
LINE_HYSTERESIS = LineCrossingConfig.model_fields["hysteresis"].default

#: YOLOX detections are computed once at this score and filtered per tracker.
DETECT_SCORE = 0.1
#: Detections given to trackers that split high/low scores themselves (ByteTrack's design).
LOW_SCORE = 0.1
#: Detections given to the others: Lookout's default detector MinScore.
DEFAULT_SCORE = DetectorConfig.model_fields["min_score"].default
#: Shipped settings (config-*.ini) that differ from, or pin, a Config class's defaults.
OURS_SETTINGS: dict[str, dict[str, Any]] = {
    "IOUTracker": {"MaxLost": 5, "TrackerIOUThreshold": 0.3},
}
#: norfair's IoU distance is ``1 - IoU``; 0.7 is the bounding-box threshold of norfair's own
#: YOLO demos (``DISTANCE_THRESHOLD_BBOX``), i.e. a match needs IoU >= 0.3.
NORFAIR_IOU_DISTANCE_THRESHOLD = 0.7

METRIC_COLUMNS = ("HOTA", "IDF1", "MOTA")

#: Per MOT frame number, the tentative boxes a Lookout tracker handed over with the tracks it
#: confirmed in that frame (``Frame.early_boxes``).
EarlyBoxes = dict[int, dict[int, list[EarlyBox]]]


def shared_dir() -> Path:
    env = os.environ.get("LOOKOUT_ASSETS_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared").resolve()


def development_set(shared: Path) -> list[Path]:
    """PETS09-S2L1, TUD-Campus, then every sequence folder of ``data/mot``, by name."""
    mot = sorted(p.parent for p in (shared / "data" / "mot").glob("*/seqinfo.ini"))
    return [shared / "data" / "pets09_s2l1", shared / "data" / "tud_campus", *mot]


# ---------------------------------------------------------------------------------------
# Line crossings
# ---------------------------------------------------------------------------------------


def middle_line(seq: Sequence) -> CountingLine:
    """A vertical line through the middle of the image, top to bottom."""
    if seq.width <= 0 or seq.height <= 0:
        raise ValueError(f"{seq.name}: seqinfo.ini gives no imWidth/imHeight")
    x = seq.width / 2.0
    return CountingLine(name=f"x{x:g}", start=(x, 0.0), end=(x, float(seq.height)))


def counted_crossings(seq: Sequence, rows: np.ndarray, early: EarlyBoxes,
                      line: CountingLine) -> list[Crossing]:
    """The crossings Lookout's ``line_crossing`` step (shipped settings) counts on tracker
    rows ``frame, id, left, top, width, height``, with the tentative boxes ``early`` that a
    Lookout tracker handed over at confirmation (none for a peer).  Frames are MOT numbers."""
    source = SourceConfig.model_validate(
        {"Id": "bench", "VideoPath": "bench", "CountingLines": [line]})
    settings = LineCrossingConfig.model_validate({"Name": "line_crossing"})
    counter = POST_PROCESSORS.get("line_crossing")(settings, source, None)  # type: ignore[arg-type]
    frames = rows[:, 0].astype(int)
    order = np.argsort(frames, kind="stable")
    rows, frames = rows[order], frames[order]
    bounds = np.searchsorted(frames, np.arange(1, seq.length + 2))
    image = imageless(seq.width, seq.height)
    out: list[Crossing] = []
    for frame_no in range(1, seq.length + 1):
        r = rows[bounds[frame_no - 1]:bounds[frame_no]]
        boxes = r[:, 2:6].copy()
        boxes[:, 2:] += boxes[:, :2]
        frame = Frame("bench", frame_no - 1, frame_time(seq, frame_no), image,
                      Detections(boxes=boxes, scores=np.ones(len(r)),
                                 track_ids=r[:, 1].astype(np.int64)),
                      early_boxes=early.get(frame_no, {}))
        counter.process(frame)
        out += [Crossing(rec.frame + 1, rec.track_id, rec.direction) for rec in frame.records
                if isinstance(rec, LineCrossingRecord)]
    out.sort(key=lambda c: (c.frame, c.track_id))
    return out


def match_crossings(truth: list[Crossing], got: list[Crossing], max_frames: float) -> int:
    """One-to-one matches of the same direction at most ``max_frames`` apart, closest first."""
    return len(matched_truth(truth, got, max_frames))


def matched_truth(truth: list[Crossing], got: list[Crossing], max_frames: float) -> list[int]:
    """Indices into ``truth`` of the crossings :func:`match_crossings` matches."""
    pairs = sorted(
        (abs(g.frame - t.frame), i, j)
        for i, t in enumerate(truth) for j, g in enumerate(got)
        if g.direction == t.direction and abs(g.frame - t.frame) <= max_frames
    )
    used_t: set[int] = set()
    used_g: set[int] = set()
    for _, i, j in pairs:
        if i not in used_t and j not in used_g:
            used_t.add(i)
            used_g.add(j)
    return sorted(used_t)


def crossing_counts(seq: Sequence, rows: np.ndarray, early: EarlyBoxes | None = None
                    ) -> dict[str, Any]:
    """Ground-truth crossings of the middle line, the crossings counted on the tracks, and
    matches."""
    line = middle_line(seq)
    scored = seq.gt.conf == 1
    truth = reference_crossings(MotBoxes(seq.gt.frames[scored], seq.gt.ids[scored],
                                         seq.gt.boxes[scored], seq.gt.conf[scored]), line)
    got = counted_crossings(seq, rows, early or {}, line)
    matched = matched_truth(truth, got, CROSSING_TOLERANCE_S * seq.frame_rate)
    return {"line": line.name, "truth": len(truth), "counted": len(got),
            "matched": len(matched), "matched_truth": matched,
            "truth_crossings": [[t.frame, t.track_id, t.direction] for t in truth]}


def split_truth(results: list[dict[str, Any]]) -> dict[str, list[list[Any]]]:
    """Moves each result's ``truth_crossings`` (the same for every tracker of a sequence)
    into one list per sequence, returned."""
    out: dict[str, list[list[Any]]] = {}
    for r in results:
        if r.get("crossings"):
            out[r["sequence"]] = r["crossings"].pop("truth_crossings")
    return out


def crossing_reach(results: list[dict[str, Any]],
                   truth: dict[str, list[list[Any]]]) -> list[dict[str, Any]]:
    """Per detection source: the ground-truth crossings (``truth``: per sequence, ``[frame,
    id, direction]`` in the order the results' ``matched_truth`` index) that at least one
    tracker matched, the most the detections let any tracker count, and those none did."""
    out: list[dict[str, Any]] = []
    for source in dict.fromkeys(r["detections"] for r in results):
        total = 0
        reached = 0
        missed: list[dict[str, Any]] = []
        rows = [r for r in results if r["detections"] == source and r.get("crossings")]
        for seq in dict.fromkeys(r["sequence"] for r in rows):
            crossings = truth[seq]
            hit = set().union(*(r["crossings"]["matched_truth"] for r in rows
                                if r["sequence"] == seq))
            total += len(crossings)
            reached += len(hit)
            missed += [{"sequence": seq, "frame": f, "id": i, "direction": d}
                       for k, (f, i, d) in enumerate(crossings) if k not in hit]
        if total:
            out.append({"detections": source, "truth": total, "matched_by_any": reached,
                        "missed_by_all": missed})
    return out


def reach_sentence(reach: list[dict[str, Any]]) -> str:
    parts = []
    for r in reach:
        missed = ", ".join(f"{m['sequence']} frame {m['frame']} id {m['id']} {m['direction']}"
                           for m in r["missed_by_all"]) or "none"
        parts.append(f"{r['detections']} {r['matched_by_any']} / {r['truth']} (matched by no "
                     f"tracker: {missed})")
    return ("Crossings that at least one tracker above matched, the most these detections "
            "let any tracker count: " + "; ".join(parts) + ".")


# ---------------------------------------------------------------------------------------
# Running and scoring one tracker
# ---------------------------------------------------------------------------------------


@runtime_checkable
class PeerTracker(Protocol):
    """A third-party tracker behind three steps, so only its own update call is timed."""

    def prepare(self, boxes: np.ndarray, scores: np.ndarray) -> Any:
        """One frame's corner boxes ``(N, 4)`` and scores in the peer's input type."""

    def update(self, prepared: Any) -> Any:
        """The peer's update call on ``prepare``'s output (the only timed step)."""

    def tracked(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, corner boxes)`` of what the peer reports as tracked in this frame."""


TrackerFactory = Callable[[Sequence], Tracker | PeerTracker]


@dataclass
class TrackerRun:
    scores: dict[str, float]
    ms_per_frame: float
    ms_runs: list[float]
    rows: np.ndarray = field(repr=False)
    early: EarlyBoxes = field(default_factory=dict, repr=False)


def run_peer(tracker: PeerTracker, seq: Sequence, det: MotBoxes) -> tuple[np.ndarray, float]:
    """MOT rows ``frame, id, left, top, width, height`` and mean ms per update call."""
    rows: list[np.ndarray] = []
    spent = 0.0
    for frame in range(1, seq.length + 1):
        d = det.at(frame)
        prepared = tracker.prepare(d.boxes.astype(np.float32), d.conf.astype(np.float32))
        t0 = time.perf_counter()
        result = tracker.update(prepared)
        spent += time.perf_counter() - t0
        ids, boxes = tracker.tracked(result)
        if len(ids):
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            rows.append(np.column_stack([np.full(len(b), frame), ids, b[:, 0], b[:, 1],
                                         b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]))
    out = np.concatenate(rows) if rows else np.zeros((0, 6))
    return out, 1000.0 * spent / max(1, seq.length)


def run_tracker(tracker: Tracker | PeerTracker, seq: Sequence, det: MotBoxes
                ) -> tuple[np.ndarray, float, EarlyBoxes]:
    """Rows of the tracked objects (ids >= 0 only), the tracker's ms per frame and, for a
    Lookout tracker, the tentative boxes it handed over at confirmation."""
    early: EarlyBoxes = {}
    if isinstance(tracker, Tracker):
        rows, ms, frames = track_detections(tracker, seq, det)
        rows = rows[:, :6]
        early = {f.index + 1: f.early_boxes for f in frames if f.early_boxes}
    else:
        rows, ms = run_peer(tracker, seq, det)
    return rows[rows[:, 1] >= 0], ms, early


def score_tracker(make: TrackerFactory, seq: Sequence, det: MotBoxes, repeats: int = 1
                  ) -> TrackerRun:
    """Run a fresh tracker from ``make(seq)`` over ``det`` ``repeats`` times and score it.

    ``make`` returns a Lookout :class:`~libs.trackers.Tracker` (run by
    :func:`libs.evaluation.runner.track_detections`) or a :class:`PeerTracker`.  The scores
    are TrackEval's (:func:`~libs.evaluation.tracking.score_tracks`); ``ms_per_frame`` is the
    median over the repeats of the mean time of the tracker's update call.  Every repeat must
    give the same tracks.
    """
    first: np.ndarray | None = None
    early: EarlyBoxes = {}
    ms_runs: list[float] = []
    for _ in range(max(1, repeats)):
        rows, ms, got_early = run_tracker(make(seq), seq, det)
        ms_runs.append(ms)
        if first is None:
            first, early = rows, got_early
        elif not np.array_equal(first, rows):
            raise RuntimeError("tracker output differs between repeats: not deterministic")
    assert first is not None
    return TrackerRun(score_tracks(seq, first), statistics.median(ms_runs), ms_runs, first,
                      early)


# ---------------------------------------------------------------------------------------
# Peer adapters (benchmark only)
# ---------------------------------------------------------------------------------------


class RoboflowAdapter:
    """``trackers`` (Roboflow): ``update(sv.Detections) -> sv.Detections`` whose rows with
    ``tracker_id >= 0`` are the confirmed tracks matched in this frame (boxes as detected)."""

    def __init__(self, tracker: Any) -> None:
        import supervision as sv

        self._sv = sv
        self.tracker = tracker

    def prepare(self, boxes: np.ndarray, scores: np.ndarray) -> Any:
        return self._sv.Detections(xyxy=boxes.reshape(-1, 4), confidence=scores)

    def update(self, prepared: Any) -> Any:
        return self.tracker.update(prepared)

    def tracked(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(result.tracker_id, dtype=np.int64)
        keep = ids >= 0
        return ids[keep], np.asarray(result.xyxy)[keep]


class NorfairAdapter:
    """``norfair``: ``Tracker.update(list[Detection]) -> list[TrackedObject]``, the active
    (initialized, not expired) objects, each written with its ``.estimate`` box, as norfair's
    own MOTChallenge evaluation (``norfair.metrics``) writes them."""

    def __init__(self, tracker: Any) -> None:
        import norfair

        self._detection = norfair.Detection
        self.tracker = tracker

    def prepare(self, boxes: np.ndarray, scores: np.ndarray) -> Any:
        make = self._detection
        return [make(points=b.reshape(2, 2), scores=np.array([s, s]))
                for b, s in zip(boxes, scores, strict=True)]

    def update(self, prepared: Any) -> Any:
        return self.tracker.update(detections=prepared)

    def tracked(self, result: Any) -> tuple[np.ndarray, np.ndarray]:
        if not result:
            return np.zeros(0, np.int64), np.zeros((0, 4))
        ids = np.array([obj.id for obj in result], dtype=np.int64)
        boxes = np.array([np.asarray(obj.estimate).reshape(4) for obj in result])
        return ids, boxes


def _scalar_defaults(func: Callable[..., Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Keyword defaults of ``func`` that are plain values (what a user leaves as is)."""
    out: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in skip or param.default is inspect.Parameter.empty:
            continue
        if param.default is None or isinstance(param.default, bool | int | float | str):
            out[name] = param.default
    return out


# ---------------------------------------------------------------------------------------
# The contenders
# ---------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    library: str
    make: TrackerFactory
    settings: dict[str, Any]
    own_score_split: bool  # gets YOLOX detections down to LOW_SCORE
    note: str = ""


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def our_contenders() -> list[Contender]:
    out = []
    for name in TRACKERS.names():
        cls = TRACKERS.get(name)
        config: TrackerConfig = cls.Config.model_validate(
            {"Name": name, **OURS_SETTINGS.get(name, {})}
        )
        settings = config.model_dump(by_alias=True, exclude={"name", "enabled"})

        def make(seq: Sequence, config: TrackerConfig = config) -> Tracker:
            return make_tracker(config)

        note = ("shipped settings" if name in OURS_SETTINGS else "defaults of its Config class")
        # A tracker that takes boxes below the detector's default MinScore splits them itself.
        own_split = make_tracker(config).min_score < DEFAULT_SCORE
        out.append(Contender(name, f"lookout {version_of('lookout')}", make, settings,
                             own_split, note))
    return out


def peer_contenders() -> list[Contender]:
    import norfair
    from trackers import (
        BoTSORTTracker,
        ByteTrackTracker,
        CBIoUTracker,
        OCSORTTracker,
        SORTTracker,
    )

    lib = f"trackers {version_of('trackers')}"
    out = []
    for label, cls, extra, own_split, note in (
        ("SORT", SORTTracker, {}, False, "defaults + frame_rate"),
        ("ByteTrack", ByteTrackTracker, {}, True,
         "defaults + frame_rate; splits high/low scores itself"),
        ("OC-SORT", OCSORTTracker, {}, True,
         "defaults + frame_rate; drops scores < high_conf_det_threshold itself"),
        ("BoT-SORT", BoTSORTTracker, {"enable_cmc": False}, True,
         "defaults + frame_rate, without camera-motion compensation (it needs the frames); "
         "splits high/low scores itself"),
        ("C-BIoU", CBIoUTracker, {}, True,
         "defaults + frame_rate; splits high/low scores itself"),
    ):
        settings = _scalar_defaults(cls.__init__, skip=("self", "iou"))
        settings.update(extra)
        settings["frame_rate"] = "seqinfo.ini frameRate"

        def make(seq: Sequence, cls: Any = cls, extra: dict[str, Any] = extra) -> PeerTracker:
            return RoboflowAdapter(cls(frame_rate=seq.frame_rate, **extra))

        out.append(Contender(label, lib, make, settings, own_split, note))

    nf_kwargs: dict[str, Any] = {"distance_function": "iou",
                                 "distance_threshold": NORFAIR_IOU_DISTANCE_THRESHOLD}
    nf_settings = {**nf_kwargs, **_scalar_defaults(norfair.Tracker.__init__,
                                                    skip=("self", *nf_kwargs))}

    def make_norfair(seq: Sequence) -> PeerTracker:
        return NorfairAdapter(norfair.Tracker(**nf_kwargs))

    out.append(Contender("norfair", f"norfair {version_of('norfair')}", make_norfair,
                         nf_settings, False, "IoU distance, defaults otherwise (no frame rate)"))
    return out


# ---------------------------------------------------------------------------------------
# Detections
# ---------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def yolox_detections(seq: Sequence, model: Path, cache_dir: Path | None
                     ) -> tuple[MotBoxes, bool]:
    """The x86 YOLOX detector over ``seq`` at :data:`DETECT_SCORE`, cached by model hash;
    and whether they came from the cache."""
    cache: Path | None = None
    if cache_dir is not None:
        key = f"{seq.name}-{file_sha256(model)[:16]}-{file_sha256(seq.frames_path)[:12]}"
        cache = cache_dir / f"yolox-{key}-s{DETECT_SCORE:g}.npz"
        if cache.exists():
            data = np.load(cache)
            print(f"YOLOX detections for {seq.name} from cache {cache}", flush=True)
            return MotBoxes(data["frames"], np.full(len(data["frames"]), -1), data["boxes"],
                            data["conf"]), True
    detector = DETECTORS.get("x86")(DetectorConfig.model_validate({"MinScore": DETECT_SCORE}),
                                    model)
    t0 = time.perf_counter()
    try:
        det = detect_sequence(detector, seq)
    finally:
        detector.close()
    print(f"YOLOX over {seq.name}: {len(det)} boxes in {time.perf_counter() - t0:.1f} s",
          flush=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, frames=det.frames, boxes=det.boxes, conf=det.conf)
        tmp.replace(cache)
    return det, False


def at_least(det: MotBoxes, score: float) -> MotBoxes:
    keep = det.conf >= score
    return MotBoxes(det.frames[keep], det.ids[keep], det.boxes[keep], det.conf[keep])


@dataclass
class DetectionSet:
    title: str  # the Markdown heading of its table
    sequence: Sequence
    source: str  # "public" or "yolox"
    det: MotBoxes


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """Short HEAD commit, with a mark when the tracker or evaluation code has uncommitted
    changes (read-only: no index refresh)."""
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "libs/trackers", "libs/evaluation",
             "benchmarks"], capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} + uncommitted changes" if dirty else head


def machine_info() -> dict[str, Any]:
    packages = ("numpy", "scipy", "opencv-python-headless", "onnxruntime", "trackeval",
                "trackers", "supervision", "norfair", "filterpy")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": affinity,
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: version_of(p) for p in packages},
        "lookout_commit": git_commit(),
    }


def command_line(argv: list[str]) -> str:
    def rel(p: str) -> str:
        path = Path(p)
        try:
            return str(path.absolute().relative_to(REPO))
        except ValueError:
            return p

    return shlex.join([rel(sys.executable), rel(argv[0]), *argv[1:]])


def fmt_pct(value: float) -> str:
    return f"{100.0 * value:.1f}"


def fmt_ms(value: float) -> str:
    return f"{value:.3f}"


def given_label(res: dict[str, Any]) -> str:
    return "all" if res["min_score"] is None else f">= {res['min_score']:g}"


TABLE_HEADER = ("| Tracker | Library | Detections given | HOTA | IDF1 | MOTA | ID switches "
                "| ms/frame |\n|---|---|---|---:|---:|---:|---:|---:|")


def table_rows(results: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {r['tracker']} | {r['library']} | {given_label(r)} | {fmt_pct(r['HOTA'])} "
        f"| {fmt_pct(r['IDF1'])} | {fmt_pct(r['MOTA'])} | {r['IDSW']} "
        f"| {fmt_ms(r['ms_per_frame'])} |"
        for r in results
    ]


SUMMARY_TITLE = "Development set: mean over the sequences"
SUMMARY_HEADER = (
    "| Detections | Tracker | Sequences | HOTA | IDF1 | MOTA | ID switches (sum) | ms/frame "
    "| Worst HOTA vs best peer | Line crossings matched / truth (counted) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---|---|")


def summary_rows(summary: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in summary:
        worst = ("-" if r["worst_gap_HOTA"] is None else
                 f"{100.0 * r['worst_gap_HOTA']:+.1f} on {r['worst_sequence']} "
                 f"({r['worst_best_peer']})")
        crossings = ("-" if not r["crossings_truth"] else
                     f"{r['crossings_matched']} / {r['crossings_truth']} "
                     f"({r['crossings_counted']})")
        rows.append(
            f"| {r['detections']} | {r['tracker']} | {r['sequences']} | {fmt_pct(r['HOTA'])} "
            f"| {fmt_pct(r['IDF1'])} | {fmt_pct(r['MOTA'])} | {r['IDSW']} "
            f"| {fmt_ms(r['ms_per_frame'])} | {worst} | {crossings} |")
    return rows


def other_sections(path: Path) -> str:
    """Sections other benchmark scripts keep in the same file, between their
    ``<!-- name:start -->`` / ``<!-- name:end -->`` markers: carried over unchanged."""
    if not path.exists():
        return ""
    text = path.read_text()
    starts = [m.start() for m in re.finditer(r"<!-- [a-z-]+:start -->", text)]
    return ("\n" + text[starts[0]:].rstrip("\n") + "\n") if starts else ""


def render_markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    pk = m["packages"]
    lines = [
        "# Tracker benchmark",
        "",
        "Generated by `benchmarks/tracker_benchmark.py`; do not edit by hand: re-run the "
        "command below, which rewrites this file and `docs/benchmarks.json` (the same "
        "figures, unrounded, which `tests/test_tracker_benchmark_doc.py` checks this file "
        "against).",
        "",
        f"* Command: `{report['command']}` (in the repository root, after "
        "`.venv/bin/python -m pip install --no-deps -r requirements/bench-peers.txt`)",
        f"* Date: {report['date']}",
        f"* Machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {m['os']}",
        f"* Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in pk.items())
        + f"; lookout at commit {m['lookout_commit']}",
        f"* Load average (1 min) when it started: {m['load_average_1min_at_start']:.2f}",
        f"* Tracker time: median of {report['repeats']} runs in this one process, taken in "
        "rounds through all trackers so a passing load hits them alike. Whole run "
        f"{report['runtime_s']:.0f} s"
        + (" (YOLOX detections from the cache)" if report["yolox_from_cache"]
           else " (YOLOX detector included)") + ".",
        "",
        "HOTA, IDF1 and MOTA are percentages from TrackEval (MOTChallenge devkit settings, "
        "IoU 0.5 for CLEAR and Identity; flag-0 ground truth ignored, as "
        "`libs/evaluation/tracking.py` scores it). ms/frame is the mean time of the tracker's "
        "own update call per frame; building its input (a `Frame`, `sv.Detections` or "
        "norfair `Detection` objects) and reading its output are not timed.",
        "",
    ]
    lines += [
        f"## {SUMMARY_TITLE}", "",
        "Per detection source, each tracker's mean over the sequences it ran on; the worst "
        "sequence is where its HOTA falls furthest below that sequence's best peer (negative: "
        "behind; the peer named). Line crossings: on the static-camera sequences ("
        + ", ".join(sorted(STATIC_CAMERA)) + "), the tracks' crossings of a vertical line "
        "through the middle of the image, as Lookout's `line_crossing` step counts them with "
        f"its shipped settings (foot point, {LINE_HYSTERESIS:g} px hysteresis; for Lookout's "
        "trackers, with the boxes a track had before it was confirmed), matched one to one to "
        "the ground truth's (a foot point changing side between two consecutive rows of an "
        f"identity), same direction, within {CROSSING_TOLERANCE_S:g} s.", "",
        SUMMARY_HEADER, *summary_rows(report["summary"]), "",
        reach_sentence(report["crossings_reach"]), "",
    ]
    for title in report["tables"]:
        rows = [r for r in report["results"] if r["table"] == title]
        lines += [f"## {title}", "", TABLE_HEADER, *table_rows(rows), ""]
    lines += [
        "## Detections each tracker gets",
        "",
        "* Public `det/det.txt` (Faster R-CNN from the SORT authors, every score >= 0.5): every "
        "tracker gets every box.",
        f"* YOLOX-nano (`{MODEL_FILE}`, Lookout's `x86` detector): run once at MinScore "
        f"{DETECT_SCORE:g}; trackers that split high and low scores themselves "
        f"({', '.join(report['own_score_split'])}) get every box >= {LOW_SCORE:g}; the others "
        f"get boxes >= {DEFAULT_SCORE:g}, Lookout's default detector MinScore. NMS keeps a box "
        "only if no higher-scoring box overlaps it, so the boxes >= "
        f"{DEFAULT_SCORE:g} of the {DETECT_SCORE:g} run are exactly those of a run at "
        f"{DEFAULT_SCORE:g}.",
        "",
        "## Settings",
        "",
        "| Tracker | Library | Settings | Note |",
        "|---|---|---|---|",
    ]
    for c in report["contenders"]:
        settings = ", ".join(f"{k}={v}" for k, v in c["settings"].items())
        lines.append(f"| {c['name']} | {c['library']} | {settings} | {c['note']} |")
    lines += ["", "## Notes", ""]
    lines += [f"* {note}" for note in report["notes"]]
    unavailable = report.get("unavailable_trackers") or {}
    if unavailable:
        lines.append("* Lookout tracker modules that failed to import (not benchmarked): "
                     + "; ".join(f"{k} ({v})" for k, v in unavailable.items()))
    lines.append("")
    return "\n".join(lines)


NOTES = [
    "Output compared: for `trackers` (SORT, ByteTrack, OC-SORT), the returned detections "
    "with `tracker_id >= 0` (tracks past `minimum_consecutive_frames`, matched in this "
    "frame), with the detected box; for norfair, every object `Tracker.update` returns "
    "(initialized and not expired, including ones coasting without a detection this "
    "frame) with its `.estimate` box, as norfair's own MOTChallenge evaluation writes it; "
    "for Lookout trackers, the frame's detections after `update` (unconfirmed ones removed).",
    "`trackers` counts `lost_track_buffer` in 30-fps frames and scales it by `frame_rate`: "
    "30 means 1 s, so 7 frames on PETS09-S2L1 (7 fps) and 25 on TUD-Campus (25 fps).",
    "This OC-SORT has no low-score association stage: boxes below its "
    "`high_conf_det_threshold` (0.6) are ignored, so on YOLOX it sees only >= 0.6.",
    "norfair has no frame-rate setting: `hit_counter_max` 15 and `initialization_delay` "
    "(default `hit_counter_max / 2` = 7) are in frames whatever the rate. Its distance "
    f"threshold {NORFAIR_IOU_DISTANCE_THRESHOLD:g} on `1 - IoU` (norfair's YOLO demos' box "
    "threshold) means IoU >= 0.3, the IOUTracker's TrackerIOUThreshold.",
    "norfair written the other way (only objects matched in the frame, with the detected "
    "box, like the others) loses its coasting false positives: a higher MOTA, HOTA within "
    "about a point. The table keeps norfair's own way.",
    "TUD-Campus is 71 frames: one ID switch moves IDF1 and HOTA by several points there.",
]


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def build_detection_sets(sequences: list[Sequence], model: Path, cache_dir: Path | None
                         ) -> tuple[list[DetectionSet], bool]:
    """The detection sets (every sequence's public det.txt, then YOLOX on those with frames),
    and whether every YOLOX set came from the cache."""
    sets: list[DetectionSet] = []
    all_cached = True
    for seq in sequences:
        if seq.det is None:
            raise FileNotFoundError(f"{seq.root}/det/det.txt not found")
        sets.append(DetectionSet(f"{seq.name}, public det.txt (Faster R-CNN)", seq, "public",
                                 seq.det))
    for seq in sequences:
        if not seq.has_frames:
            continue
        det, cached = yolox_detections(seq, model, cache_dir)
        all_cached = all_cached and cached
        sets.append(DetectionSet(f"{seq.name}, Lookout YOLOX-nano detections", seq, "yolox",
                                 det))
    return sets, all_cached


def summarize(results: list[dict[str, Any]], peers: set[str]) -> list[dict[str, Any]]:
    """Per detection source and tracker: means over the sequences, summed ID switches and
    crossings, and the worst sequence against that sequence's best peer (by HOTA)."""
    out: list[dict[str, Any]] = []
    for source in dict.fromkeys(r["detections"] for r in results):
        rows = [r for r in results if r["detections"] == source]
        sequences = list(dict.fromkeys(r["sequence"] for r in rows))
        best_peer = {
            seq: max((r for r in rows if r["sequence"] == seq and r["tracker"] in peers),
                     key=lambda r: r["HOTA"], default=None)
            for seq in sequences
        }
        for tracker in dict.fromkeys(r["tracker"] for r in rows):
            mine = [r for r in rows if r["tracker"] == tracker]
            gaps = [(r["HOTA"] - best["HOTA"], r["sequence"], best["tracker"])
                    for r in mine if (best := best_peer[r["sequence"]]) is not None]
            worst = min(gaps) if gaps else None
            crossings = [r["crossings"] for r in mine if r.get("crossings")]
            out.append({
                "detections": source, "tracker": tracker, "sequences": len(mine),
                "HOTA": statistics.fmean(r["HOTA"] for r in mine),
                "IDF1": statistics.fmean(r["IDF1"] for r in mine),
                "MOTA": statistics.fmean(r["MOTA"] for r in mine),
                "IDSW": sum(r["IDSW"] for r in mine),
                "ms_per_frame": statistics.fmean(r["ms_per_frame"] for r in mine),
                "worst_gap_HOTA": worst[0] if worst else None,
                "worst_sequence": worst[1] if worst else None,
                "worst_best_peer": worst[2] if worst else None,
                "crossings_matched": sum(c["matched"] for c in crossings),
                "crossings_truth": sum(c["truth"] for c in crossings),
                "crossings_counted": sum(c["counted"] for c in crossings),
            })
    return out


def bytetrack_note(det_sets: list[DetectionSet]) -> str:
    from trackers import ByteTrackTracker

    defaults = _scalar_defaults(ByteTrackTracker.__init__)
    high = defaults["high_conf_det_threshold"]
    shares = ", ".join(
        f"{100.0 * float(np.mean(ds.det.conf < high)):.0f} % on {ds.sequence.name}"
        for ds in det_sets if ds.source == "public"
    )
    return (
        f"ByteTrack's defaults (`high_conf_det_threshold` {high:g}, "
        f"`track_activation_threshold` {defaults['track_activation_threshold']:g}) sit above "
        f"most of det.txt's scores (all >= 0.5; below {high:g}: {shares}), so on det.txt its "
        "low-score stage has little to work with."
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sequences", nargs="*", type=Path,
                    help="MOT sequence folders (default: the development set, PETS09-S2L1, "
                    "TUD-Campus and every sequence of ../shared/data/mot)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="runs per tracker and detection set; the time is their median")
    ap.add_argument("--write", action="store_true",
                    help="write the Markdown report (--out) and the JSON beside it; without "
                    "it the results are only printed")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                    help="Markdown report written with --write; the JSON goes beside it with "
                    "suffix .json (default: %(default)s)")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "lookout-bench-cache",
                    help="where the YOLOX detections are cached")
    ap.add_argument("--no-cache", action="store_true", help="run the detector again")
    args = ap.parse_args(argv[1:])
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    t_start = time.perf_counter()
    shared = shared_dir()
    try:
        sequences = [load_sequence(p) for p in (args.sequences or development_set(shared))]
    except (FileNotFoundError, ValueError) as exc:
        ap.error(str(exc))
    contenders = our_contenders() + peer_contenders()
    peers = {c.name for c in contenders if not c.library.startswith("lookout ")}
    det_sets, cached = build_detection_sets(sequences, shared / MODEL_FILE,
                                            None if args.no_cache else args.cache_dir)

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results: list[dict[str, Any]] = []
    for ds in det_sets:
        print(f"\n## {ds.title}", flush=True)
        given: list[tuple[float | None, MotBoxes]] = []
        for c in contenders:
            if ds.source == "yolox":
                score = LOW_SCORE if c.own_score_split else DEFAULT_SCORE
                given.append((score, at_least(ds.det, score)))
            else:
                given.append((None, ds.det))
        # Round 1 scores every tracker; later rounds only time it.  Rounds go through all
        # trackers in turn, so a passing load on the machine hits them alike.
        runs = [score_tracker(c.make, ds.sequence, det) for c, (_, det) in
                zip(contenders, given, strict=True)]
        for _ in range(args.repeats - 1):
            for c, (_, det), run in zip(contenders, given, runs, strict=True):
                rows, ms, _ = run_tracker(c.make(ds.sequence), ds.sequence, det)
                if not np.array_equal(rows, run.rows):
                    raise RuntimeError(f"{c.name}: output differs between runs")
                run.ms_runs.append(ms)
        for c, (min_score, det), run in zip(contenders, given, runs, strict=True):
            s = run.scores
            res = {
                "table": ds.title, "sequence": ds.sequence.name, "detections": ds.source,
                "tracker": c.name, "library": c.library, "min_score": min_score,
                "frames": ds.sequence.length, "boxes_given": len(det),
                "HOTA": s["HOTA"], "IDF1": s["IDF1"], "MOTA": s["MOTA"], "IDSW": s["IDSW"],
                "DetA": s["DetA"], "AssA": s["AssA"], "IDP": s["IDP"], "IDR": s["IDR"],
                "FP": s["FP"], "FN": s["FN"], "Frag": s["Frag"], "IDs": s["IDs"],
                "ms_per_frame": statistics.median(run.ms_runs), "ms_runs": run.ms_runs,
                "crossings": (crossing_counts(ds.sequence, run.rows, run.early)
                              if ds.sequence.name in STATIC_CAMERA else None),
            }
            results.append(res)
            print(table_rows([res])[0], flush=True)
    truth = split_truth(results)
    summary = summarize(results, peers)
    print(f"\n## {SUMMARY_TITLE}\n\n{SUMMARY_HEADER}", flush=True)
    print("\n".join(summary_rows(summary)), flush=True)
    print("\n" + reach_sentence(crossing_reach(results, truth)), flush=True)

    report = {
        "command": command_line(argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine_info(), "load_average_1min_at_start": load_at_start},
        "repeats": args.repeats,
        "own_score_split": [c.name for c in contenders if c.own_score_split],
        "tables": [ds.title for ds in det_sets],
        "contenders": [{"name": c.name, "library": c.library, "settings": c.settings,
                        "own_score_split": c.own_score_split, "note": c.note}
                       for c in contenders],
        "unavailable_trackers": TRACKERS.unavailable(),
        "notes": [*NOTES[:2], bytetrack_note(det_sets), *NOTES[2:]],
        "results": results,
        "summary": summary,
        "crossing_truth": truth,
        "crossings_reach": crossing_reach(results, truth),
        "yolox_from_cache": cached,
        "runtime_s": round(time.perf_counter() - t_start, 1),
    }
    if not args.write:
        print(f"\n({report['runtime_s']} s; nothing written: --write writes {args.out})",
              flush=True)
        return 0
    out_md: Path = args.out
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(render_markdown(report) + other_sections(out_md))
    out_md.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out_md} and {out_md.with_suffix('.json')} "
          f"({report['runtime_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
