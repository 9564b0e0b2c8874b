"""Tracking scores (HOTA, CLEAR/MOTA, Identity/IDF1) with TrackEval, on MOT-format sequences.

TrackEval is run exactly as the MOTChallenge devkit runs it (its ``MotChallenge2DBox``
dataset, with its preprocessing: tracker boxes matched to ignored ground truth are removed,
flag-0 ground truth is not scored), on files written to a temporary folder in the layout it
expects.  ``trackeval`` is installed without its optional dependencies (see
``requirements/no-deps.txt``); it prints a harmless note about pycocotools on import, which
is swallowed here.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from libs.evaluation.mot import MotBoxes, load_mot

SCORE_KEYS = ("HOTA", "DetA", "AssA", "MOTA", "MOTP", "IDF1", "IDP", "IDR", "IDSW", "FP", "FN",
              "Frag", "GT_IDs", "IDs")


@dataclass
class Sequence:
    """A MOTChallenge-style sequence folder: ``seqinfo.ini``, ``gt/gt.txt``, optional
    ``det/det.txt``, and frames as ``img1/`` JPEGs or a video named by ``imDir``."""

    name: str
    root: Path
    frame_rate: float
    length: int
    frames_path: Path  # a video file or a folder of images; it may be absent
    gt: MotBoxes
    det: MotBoxes | None
    #: ``imWidth`` / ``imHeight`` of ``seqinfo.ini`` (0 where it does not say).
    width: int = 0
    height: int = 0

    @property
    def gt_file(self) -> Path:
        return self.root / "gt" / "gt.txt"

    @property
    def has_frames(self) -> bool:
        return self.frames_path.exists()

    @property
    def is_video(self) -> bool:
        return self.frames_path.is_file()

    def require_frames(self) -> None:
        """Raise ``FileNotFoundError`` naming what to do when the frames are not there."""
        if not self.has_frames:
            raise FileNotFoundError(
                f"no frames ({self.frames_path} not found); only its detections can be "
                "tracked: --detections public or a MOT detections file")


def load_sequence(root: Path | str) -> Sequence:
    root = Path(root)
    info_path = root / "seqinfo.ini"
    if not info_path.exists():
        raise FileNotFoundError(f"{info_path} not found: not a MOT sequence folder")
    parser = configparser.ConfigParser()
    parser.read(info_path)
    info = parser["Sequence"]
    name = info.get("name", root.name)
    frames = root / info.get("imDir", "img1")  # checked where the frames are needed
    gt_file = root / "gt" / "gt.txt"
    if not gt_file.exists():
        raise FileNotFoundError(f"{gt_file} not found")
    det_file = root / "det" / "det.txt"
    try:
        frame_rate = float(info.get("frameRate", "25"))
        length = int(info["seqLength"])
        width, height = int(info.get("imWidth", "0")), int(info.get("imHeight", "0"))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{info_path}: {exc!s} (frameRate, seqLength, imWidth, imHeight "
                         "are numbers; seqLength is required)") from None
    if frame_rate <= 0 or length <= 0:
        raise ValueError(f"{info_path}: frameRate and seqLength must be above 0")
    return Sequence(
        name=name,
        root=root,
        frame_rate=frame_rate,
        length=length,
        frames_path=frames,
        gt=load_mot(gt_file),
        det=load_mot(det_file) if det_file.exists() else None,
        width=width,
        height=height,
    )


def _scored_ground_truth_rows(src: Path) -> list[str]:
    """``gt.txt`` as the MOT16/17 layout TrackEval scores: ``frame, id, box, flag, class,
    visibility``.

    * MOT16/17/20 (9 columns: class and visibility after the flag; 8 without visibility)
      keep their class; a flag-0 row becomes the *distractor* class (8).
    * MOT15 (10 columns: world x, y, z after the flag, -1 where unknown) has no class:
      flag-1 rows are pedestrians (1), flag-0 rows distractors (8), visibility 1.
    * Fewer columns (``frame, id, box[, flag]``): every row is a scored pedestrian unless
      its flag is 0.

    TrackEval scores no flag-0 box but would count a tracker box on such an ignored person
    as a false positive; as a distractor, a tracker box matched to it is removed instead,
    which is what "ignore this person" means in the MOT ground truth, for every layout alike.
    """
    out = []
    for n, line in enumerate(src.read_text().splitlines(), start=1):
        parts = [p.strip() for p in line.strip().split(",")]
        if parts == [""]:
            continue
        if len(parts) < 6:
            raise ValueError(f"{src}:{n}: {len(parts)} columns; a MOT row has at least 6")
        flag = float(parts[6]) if len(parts) > 6 else 1.0
        if len(parts) in (8, 9):
            cls, vis = parts[7], parts[8] if len(parts) == 9 else "1"
        else:
            cls, vis = "1", "1"
        if flag == 0:
            cls = "8"
        out.append(",".join([*parts[:6], "0" if flag == 0 else "1", cls, vis]))
    return out


def write_mot(path: Path, rows: np.ndarray) -> None:
    """``rows``: ``frame, id, left, top, width, height[, conf]`` (1-based frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in rows:
            conf = r[6] if len(r) > 6 else 1.0
            fh.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},"
                     f"{conf:.4f},-1,-1,-1\n")


def _write_gt_with_distractors(src: Path, dst: Path) -> None:
    """Write ``src`` ground truth to ``dst`` in the layout :func:`score_tracks` scores."""
    dst.write_text("\n".join(_scored_ground_truth_rows(src)) + "\n")


def _quiet_import() -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        import trackeval
    return trackeval


def score_tracks(seq: Sequence, tracks: np.ndarray) -> dict[str, float]:
    """HOTA, MOTA, IDF1, ID switches... of ``tracks`` (rows ``frame, id, left, top, w, h``,
    1-based frames) against the sequence's ground truth."""
    trackeval = _quiet_import()
    tracks = np.asarray(tracks, dtype=np.float64).reshape(-1, tracks.shape[1] if len(tracks)
                                                           else 6)
    with tempfile.TemporaryDirectory(prefix="lookout-eval-") as tmp:
        gt_dir = Path(tmp) / "gt" / seq.name
        (gt_dir / "gt").mkdir(parents=True)
        _write_gt_with_distractors(seq.gt_file, gt_dir / "gt" / "gt.txt")
        (gt_dir / "seqinfo.ini").write_text(
            f"[Sequence]\nname={seq.name}\nimDir=img1\nframeRate={seq.frame_rate}\n"
            f"seqLength={seq.length}\nimWidth=1\nimHeight=1\nimExt=.jpg\n"
        )
        write_mot(Path(tmp) / "trackers" / "lookout" / "data" / f"{seq.name}.txt", tracks)
        eval_cfg = {
            "USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_ONLY_COMBINED": True,
            "PRINT_CONFIG": False, "TIME_PROGRESS": False, "DISPLAY_LESS_PROGRESS": True,
            "OUTPUT_SUMMARY": False, "OUTPUT_EMPTY_CLASSES": False, "OUTPUT_DETAILED": False,
            "PLOT_CURVES": False, "BREAK_ON_ERROR": True, "LOG_ON_ERROR": None,
        }
        ds_cfg = {
            "GT_FOLDER": str(Path(tmp) / "gt"),
            "TRACKERS_FOLDER": str(Path(tmp) / "trackers"),
            "TRACKERS_TO_EVAL": ["lookout"],
            "BENCHMARK": "MOT17",
            "SPLIT_TO_EVAL": "train",
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": {seq.name: seq.length},
            "PRINT_CONFIG": False,
            "DO_PREPROC": True,
        }
        metrics_cfg = {"METRICS": ["HOTA", "CLEAR", "Identity"], "THRESHOLD": 0.5,
                       "PRINT_CONFIG": False}
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = trackeval.Evaluator(eval_cfg)
            dataset = trackeval.datasets.MotChallenge2DBox(ds_cfg)
            metrics = [trackeval.metrics.HOTA(metrics_cfg), trackeval.metrics.CLEAR(metrics_cfg),
                       trackeval.metrics.Identity(metrics_cfg)]
            results, messages = evaluator.evaluate([dataset], metrics)
    res = results["MotChallenge2DBox"]["lookout"]
    if seq.name not in res:
        raise RuntimeError(f"TrackEval failed: {messages}")
    ped = res[seq.name]["pedestrian"]
    hota, clear, ident = ped["HOTA"], ped["CLEAR"], ped["Identity"]
    return {
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
        "MOTA": float(clear["MOTA"]),
        "MOTP": float(clear["MOTP"]),
        "IDF1": float(ident["IDF1"]),
        "IDP": float(ident["IDP"]),
        "IDR": float(ident["IDR"]),
        "IDSW": int(clear["IDSW"]),
        "FP": int(clear["CLR_FP"]),
        "FN": int(clear["CLR_FN"]),
        "Frag": int(clear["Frag"]),
        "GT_IDs": int(ident.get("GT_IDs", 0)) if "GT_IDs" in ident else 0,
        "IDs": len(np.unique(tracks[:, 1])) if len(tracks) else 0,
    }
