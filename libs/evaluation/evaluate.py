"""``lookout evaluate``: one table of accuracy figures for MOT-format sequences.

For each sequence, either the real pipeline runs on its frames (detector, filters, tracker,
analytics; ``detections="pipeline"``) or the tracker and the analytics run on given
detections (``"public"`` = the sequence's ``det/det.txt``, or a MOT file).  The figures:

* detection precision and recall at IoU 0.5 against scored ground truth (flag-0 boxes are
  neither hits nor misses), counted on the boxes the tracker takes: those scoring at least
  the higher of the detector's ``MinScore`` (or ``--min-score``) and the tracker's own
  least score (:attr:`libs.trackers.Tracker.min_score`), said in ``detection_min_score``;
* HOTA, MOTA, IDF1 and ID switches from TrackEval;
* occupancy: mean absolute error of the people count per frame against every ground-truth
  person of the frame (and the mean signed error, so a bias shows);
* line crossings: events counted by the ``line_crossing`` post-processor on each given line,
  against the crossings of the ground-truth tracks on the same line;
* dwell: for each ground-truth identity, its time in scene against the duration of the track
  that covers it most (a person split over two tracks shows as an error, as a user would see
  it in a dwell report).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from libs.config.models import (
    CountingLine,
    LookoutConfig,
    PluginConfig,
    SourceConfig,
    TrackerConfig,
)
from libs.evaluation.crossings import reference_crossings
from libs.evaluation.mot import DetectionScore, MotBoxes, load_mot, match_frame
from libs.evaluation.runner import (
    blank_image,
    detections_at,
    frame_time,
    iter_images,
    make_tracker,
    to_mot_rows,
)
from libs.evaluation.tracking import Sequence, score_tracks
from libs.frame import Frame
from libs.geometry import iou_matrix
from libs.post_processors import POST_PROCESSORS, PostProcessor
from libs.records import LineCrossing
from libs.trackers import TRACKERS


@dataclass
class LineResult:
    name: str
    reference: int
    counted: int
    reference_in: int
    counted_in: int
    reference_out: int
    counted_out: int

    @property
    def error(self) -> float:
        return (self.counted - self.reference) / self.reference if self.reference else 0.0


@dataclass
class SequenceResult:
    sequence: str
    detections: str
    tracker: str
    frames: int
    #: Least score of the boxes the tracker was given, which precision and recall count.
    detection_min_score: float
    precision: float
    recall: float
    hota: float
    mota: float
    idf1: float
    id_switches: int
    occupancy_mae: float
    occupancy_bias: float
    dwell_median_error_s: float
    dwell_mean_error_s: float
    tracker_ms: float
    lines: list[LineResult] = field(default_factory=list)
    dwell: list[dict[str, float]] = field(default_factory=list)
    tracking: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for line, res in zip(d["lines"], self.lines, strict=True):
            line["error"] = res.error
        return d


def parse_line(text: str) -> CountingLine:
    """``name:x1,y1,x2,y2`` or ``name: x1,y1 x2,y2``."""
    m = re.match(r"^\s*([^:]+):\s*([-\d.]+)\s*,\s*([-\d.]+)[\s,]+([-\d.]+)\s*,\s*([-\d.]+)\s*$",
                 text)
    if not m:
        raise ValueError(f"line {text!r} is not 'name:x1,y1,x2,y2'")
    x1, y1, x2, y2 = (float(v) for v in m.groups()[1:])
    return CountingLine(name=m[1].strip(), start=(x1, y1), end=(x2, y2))


def _source_for(seq: Sequence, config: LookoutConfig, camera: str | None,
                lines: list[CountingLine]) -> SourceConfig:
    if camera:
        base = config.source(camera).model_dump(by_alias=True)
    else:
        base = {"Id": re.sub(r"[^A-Za-z0-9_-]", "-", seq.name)[:64], "VideoPath": "-"}
    if lines:  # lines given on the command line replace the camera's
        base["CountingLines"] = "; ".join(line.to_ini() for line in lines)
    base["StartTime"] = None
    return SourceConfig.model_validate(base)


def _post_processors(config: LookoutConfig, source: SourceConfig,
                     lines: bool) -> tuple[list[PostProcessor], list[PostProcessor]]:
    sections: list[PluginConfig] = [p for p in config.source_post_processors if p.enabled]
    if lines and not any(p.name == "line_crossing" for p in sections):
        sections.append(
            POST_PROCESSORS.get("line_crossing").Config.model_validate({"Name": "line_crossing"}))
    before: list[PostProcessor] = []
    after: list[PostProcessor] = []
    for section in sections:
        cls = POST_PROCESSORS.get(section.name)
        stage = cls(section, source, config)
        (before if cls.phase == "before_tracker" else after).append(stage)
    return before, after


def tracker_config(config: LookoutConfig, tracker_name: str | None = None) -> TrackerConfig:
    """The config's ``[Tracker]``, or ``tracker_name`` with its own defaults (``KeyError``
    naming the registered trackers when there is no such tracker)."""
    if tracker_name in (None, config.tracker.name):
        return config.tracker
    if tracker_name not in TRACKERS.names():
        raise KeyError(f"no tracker {tracker_name!r}; registered: "
                       f"{', '.join(sorted(TRACKERS.names()))}")
    cfg: TrackerConfig = TRACKERS.get(tracker_name).Config.model_validate({"Name": tracker_name})
    return cfg


def check_detections(detections: str) -> None:
    """``ValueError`` unless ``detections`` is ``pipeline``, ``public`` or an existing file."""
    if detections in ("pipeline", "public") or Path(detections).is_file():
        return
    raise ValueError(f"--detections {detections!r}: neither 'pipeline' (run the detector), "
                     "'public' (each sequence's det/det.txt) nor an existing MOT file")


def evaluate_sequence(
    seq: Sequence,
    config: LookoutConfig,
    detections: str = "pipeline",
    tracker_name: str | None = None,
    lines: list[CountingLine] | None = None,
    camera: str | None = None,
    min_score: float | None = None,
) -> SequenceResult:
    """Run and score one sequence; see the module docstring for what is measured."""
    from libs.detectors import create_detector

    source = _source_for(seq, config, camera, lines or [])
    lines = source.counting_lines
    tracker_cfg = tracker_config(config, tracker_name)
    tracker = make_tracker(tracker_cfg)
    before, after = _post_processors(config, source, bool(lines))

    given: MotBoxes | None = None
    if detections == "public":
        if seq.det is None:
            raise FileNotFoundError(f"{seq.root}/det/det.txt not found")
        given = seq.det
    elif detections != "pipeline":
        given = load_mot(detections)
    if given is not None and min_score is not None:
        keep = given.conf >= min_score
        given = MotBoxes(given.frames[keep], given.ids[keep], given.boxes[keep], given.conf[keep])

    detector = None
    floor = min_score or 0.0
    if given is None:
        seq.require_frames()
        if min_score is not None:
            config = config.model_copy(update={
                "detector": config.detector.model_copy(update={"min_score": min_score})})
        floor = config.detector.min_score
        detector = create_detector(config)
    counted_score = max(floor, tracker.min_score)

    det_score = DetectionScore()
    rows: list[np.ndarray] = []
    counts: list[int] = []
    events: list[LineCrossing] = []
    tracker_s = 0.0
    images = iter_images(seq) if detector is not None else None
    blank = blank_image(seq) if images is None else None
    for frame_no in range(1, seq.length + 1):
        if images is not None:
            assert detector is not None
            item = next(images, None)
            if item is None:
                break
            image = item[1]
            dets = detector.detect(image)
        else:
            assert given is not None and blank is not None
            image = blank
            dets = detections_at(given, frame_no)
        g = seq.gt.at(frame_no)
        taken = dets.boxes[dets.scores >= counted_score].astype(np.float64)
        det_score.add(match_frame(g.boxes[g.conf == 1], taken, 0.5, g.boxes[g.conf == 0]))
        frame = Frame(source.id, frame_no - 1, frame_time(seq, frame_no), image, dets)
        for stage in before:
            frame = stage.process(frame)
        t0 = time.perf_counter()
        frame = tracker.update(frame)
        tracker_s += time.perf_counter() - t0
        for stage in after:
            frame = stage.process(frame)
        rows.append(to_mot_rows(frame_no, frame.detections))
        counts.append(len(frame.detections))
        events.extend(r for r in frame.records if isinstance(r, LineCrossing))
    n_frames = len(counts)
    tracks = np.concatenate(rows) if rows else np.zeros((0, 7))
    scores = score_tracks(seq, tracks)

    truth = np.array([int(np.count_nonzero(seq.gt.frames == f)) for f in range(1, n_frames + 1)])
    err = np.array(counts) - truth

    line_results = []
    for line in lines:
        ref = reference_crossings(seq.gt, line)
        got = [e for e in events if e.line == line.name]
        line_results.append(LineResult(
            name=line.name, reference=len(ref), counted=len(got),
            reference_in=sum(c.direction == "in" for c in ref),
            counted_in=sum(e.direction == "in" for e in got),
            reference_out=sum(c.direction == "out" for c in ref),
            counted_out=sum(e.direction == "out" for e in got),
        ))

    dwell = dwell_errors(seq, tracks)
    abs_err = [d["abs_error_s"] for d in dwell]
    return SequenceResult(
        sequence=seq.name,
        detections=detections if detections in ("pipeline", "public") else Path(detections).name,
        tracker=tracker_cfg.name,
        frames=n_frames,
        detection_min_score=counted_score,
        precision=det_score.precision,
        recall=det_score.recall,
        hota=scores["HOTA"],
        mota=scores["MOTA"],
        idf1=scores["IDF1"],
        id_switches=int(scores["IDSW"]),
        occupancy_mae=float(np.mean(np.abs(err))) if n_frames else 0.0,
        occupancy_bias=float(np.mean(err)) if n_frames else 0.0,
        dwell_median_error_s=float(np.median(abs_err)) if abs_err else 0.0,
        dwell_mean_error_s=float(np.mean(abs_err)) if abs_err else 0.0,
        tracker_ms=1000.0 * tracker_s / max(1, n_frames),
        lines=line_results,
        dwell=dwell,
        tracking=scores,
    )


def dwell_errors(seq: Sequence, tracks: np.ndarray) -> list[dict[str, float]]:
    """Per ground-truth identity: time in scene vs the duration of its main track."""
    fps = seq.frame_rate
    gt = seq.gt
    votes: dict[tuple[int, int], int] = {}
    for f in np.unique(gt.frames):
        g = gt.at(int(f))
        t = tracks[tracks[:, 0] == f]
        if not len(t) or not len(g):
            continue
        tb = np.column_stack([t[:, 2], t[:, 3], t[:, 2] + t[:, 4], t[:, 3] + t[:, 5]])
        iou = iou_matrix(g.boxes, tb)
        r, c = linear_sum_assignment(-iou)
        for i, j in zip(r, c, strict=True):
            if iou[i, j] >= 0.5:
                key = (int(g.ids[i]), int(t[j, 1]))
                votes[key] = votes.get(key, 0) + 1
    track_span: dict[int, float] = {}
    for tid in np.unique(tracks[:, 1]).astype(int):
        fr = tracks[tracks[:, 1] == tid, 0]
        track_span[tid] = (fr.max() - fr.min() + 1) / fps
    out = []
    for gid in np.unique(gt.ids).astype(int):
        fr = gt.frames[gt.ids == gid]
        truth = (fr.max() - fr.min() + 1) / fps
        mine = [(v, tid) for (g, tid), v in votes.items() if g == gid]
        est = track_span[max(mine)[1]] if mine else 0.0
        out.append({"id": gid, "truth_s": round(truth, 3), "estimate_s": round(est, 3),
                    "abs_error_s": round(abs(est - truth), 3)})
    return out


HEADER = ("| sequence | detections | tracker | boxes counted | det. precision | det. recall | "
          "HOTA | MOTA | "
          "IDF1 | ID sw. | occupancy MAE (bias) | line crossings (ref.) | dwell error median "
          "/ mean s | tracker ms/frame |")


def render_markdown(results: list[SequenceResult]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for r in results:
        crossing = ", ".join(
            f"{x.name} {x.counted} ({x.reference}; in {x.counted_in}/{x.reference_in}, "
            f"out {x.counted_out}/{x.reference_out})" for x in r.lines) or "-"
        lines.append(
            f"| {r.sequence} | {r.detections} | {r.tracker} | score >= "
            f"{r.detection_min_score:.2f} | {r.precision:.3f} | "
            f"{r.recall:.3f} | {r.hota:.3f} | {r.mota:.3f} | {r.idf1:.3f} | {r.id_switches} | "
            f"{r.occupancy_mae:.3f} ({r.occupancy_bias:+.3f}) | {crossing} | "
            f"{r.dwell_median_error_s:.2f} / {r.dwell_mean_error_s:.2f} | {r.tracker_ms:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _json_number(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_results(results: list[SequenceResult], out_dir: Path, command: str,
                  failed: list[tuple[str, str]] | None = None) -> tuple[Path, Path]:
    """``evaluation.md`` and ``evaluation.json`` in ``out_dir``; ``failed`` lists the
    sequences (path, reason) that gave no result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "evaluation.md"
    js = out_dir / "evaluation.json"
    failures = "".join(f"\nFailed: `{path}`: {reason}\n" for path, reason in failed or [])
    md.write_text(f"# Lookout evaluation\n\nCommand: `{command}`\n\n{render_markdown(results)}"
                  f"{failures}")
    js.write_text(json.dumps({
        "command": command, "results": [r.to_dict() for r in results],
        "failed": [{"sequence": path, "error": reason} for path, reason in failed or []],
    }, indent=1, default=_json_number))
    return md, js
