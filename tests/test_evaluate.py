"""The evaluation harness itself: ground truth scored against itself is perfect, known
perturbations give the known drop, and `lookout evaluate` writes its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from libs.evaluation.evaluate import dwell_errors, parse_line
from libs.evaluation.tracking import load_sequence, score_tracks
from tests.conftest import PETS, REPO, SHARED, TUD

MOT = SHARED / "data" / "mot"
SUNNYDAY = MOT / "ETH-Sunnyday"  # MOT15: 10 columns, world x/y/z filled in, flag-0 rows
KITTI = MOT / "KITTI-13"  # MOT15: 10 columns, world columns -1, no frames either


def gt_rows(seq) -> np.ndarray:
    """Scored ground-truth rows as tracker output: frame, id, left, top, width, height."""
    g = np.loadtxt(seq.gt_file, delimiter=",")
    return g[g[:, 6] == 1][:, :6]


@pytest.mark.parametrize("folder", [PETS, TUD])
def test_ground_truth_scores_perfectly(shared, folder: Path) -> None:
    seq = load_sequence(folder)
    s = score_tracks(seq, gt_rows(seq))
    assert s["HOTA"] == pytest.approx(1.0) and s["MOTA"] == pytest.approx(1.0)
    assert s["IDF1"] == pytest.approx(1.0)
    assert s["IDSW"] == 0 and s["FP"] == 0 and s["FN"] == 0


def test_ignored_people_are_neither_hits_nor_misses(shared) -> None:
    seq = load_sequence(PETS)
    every = np.loadtxt(seq.gt_file, delimiter=",")[:, :6]  # flag-0 rows too
    s = score_tracks(seq, every)
    assert s["MOTA"] == pytest.approx(1.0) and s["FP"] == 0


def test_dropped_frames_give_the_known_mota(shared) -> None:
    seq = load_sequence(TUD)
    rows = gt_rows(seq)
    dropped = rows[:, 0] % 10 == 0
    s = score_tracks(seq, rows[~dropped])
    expected = 1 - dropped.sum() / len(rows)
    assert s["FN"] == dropped.sum() and s["FP"] == 0
    assert s["MOTA"] == pytest.approx(expected)
    assert s["HOTA"] < 1.0


def test_swapped_identities_give_two_switches(shared) -> None:
    seq = load_sequence(PETS)
    rows = gt_rows(seq)
    a, b, k = 1, 2, 600  # both present at frame 600 and after
    late = rows[:, 0] >= k
    ids = rows[:, 1].copy()
    ids[late & (rows[:, 1] == a)] = b
    ids[late & (rows[:, 1] == b)] = a
    rows[:, 1] = ids
    s = score_tracks(seq, rows)
    assert s["IDSW"] == 2
    assert s["MOTA"] == pytest.approx(1 - 2 / len(rows))
    assert s["IDF1"] < 1.0 and s["FP"] == 0 and s["FN"] == 0


def test_dwell_error_per_identity(shared) -> None:
    seq = load_sequence(TUD)
    rows = gt_rows(seq)
    perfect = dwell_errors(seq, rows)
    assert all(d["abs_error_s"] == 0 for d in perfect) and len(perfect) == 8
    # Split identity 1 into two tracks: its main track is now shorter.
    first = rows[rows[:, 1] == 1, 0].min()
    split = rows.copy()
    late = (split[:, 1] == 1) & (split[:, 0] >= first + 20)
    split[late, 1] = 99
    errors = {d["id"]: d for d in dwell_errors(seq, split)}
    span = rows[rows[:, 1] == 1, 0]
    truth = (span.max() - span.min() + 1) / 25
    remaining = max(20, late.sum()) / 25
    assert errors[1]["truth_s"] == pytest.approx(truth, abs=1e-3)
    assert errors[1]["abs_error_s"] == pytest.approx(truth - remaining, abs=1e-3)


def test_parse_line() -> None:
    line = parse_line("door:384,0,384,576")
    assert (line.name, line.start, line.end) == ("door", (384, 0), (384, 576))
    with pytest.raises(ValueError):
        parse_line("door 1,2,3")


def lookout_evaluate(*args: str, env: dict[str, str] | None = None,
                     timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor.cli", "evaluate", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.mark.parametrize("folder", [SUNNYDAY, KITTI])
def test_mot15_ground_truth_is_scored(shared, folder: Path) -> None:
    """MOT15's gt.txt has world coordinates where MOT16/17 have class and visibility; read
    as a class they left nothing (or garbage) to score."""
    seq = load_sequence(folder)
    assert not seq.has_frames and (seq.width, seq.height) != (0, 0)
    rows = gt_rows(seq)
    s = score_tracks(seq, rows)
    assert s["HOTA"] == pytest.approx(1.0) and s["MOTA"] == pytest.approx(1.0)
    assert s["FN"] == 0 and s["FP"] == 0
    every = np.loadtxt(seq.gt_file, delimiter=",")[:, :6]  # boxes on flag-0 people too
    assert score_tracks(seq, every)["FP"] == 0
    dropped = rows[:, 0] % 10 == 0
    s = score_tracks(seq, rows[~dropped])
    assert s["FN"] == dropped.sum()
    assert s["MOTA"] == pytest.approx(1 - dropped.sum() / len(rows))


def test_tracker_alone_on_sequences_without_frames(shared, tmp_path: Path) -> None:
    """Public detections only: MOT folders without img1/ used to be refused at load."""
    res = lookout_evaluate(str(SUNNYDAY), str(KITTI), "--detections", "public",
                           "--tracker", "IOUTracker", "--output-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    data = json.loads((tmp_path / "evaluation.json").read_text())
    got = {r["sequence"]: r for r in data["results"]}
    assert got["ETH-Sunnyday"]["frames"] == 354 and got["KITTI-13"]["frames"] == 340
    assert all(0 < r["hota"] <= 1 and r["tracker"] == "IOUTracker" for r in got.values())
    assert data["failed"] == []


def test_evaluate_command_on_tud(shared, tmp_path: Path) -> None:
    """The pipeline on TUD-Campus with IOUTracker, beside a sequence without frames that
    cannot run the detector: that one fails alone, the other is scored and written, and the
    detection figures count the boxes IOUTracker takes (its own MinScore, 0.35), not the
    detector's 0.1."""
    out = tmp_path / "eval"
    res = lookout_evaluate(
        str(SUNNYDAY), str(TUD), "--config", str(REPO / "config-x86.ini"),
        "--tracker", "IOUTracker", "--line", "x320:320,0,320,480", "--output-dir", str(out))
    assert res.returncode == 1, res.stderr
    assert "| TUD-Campus | pipeline | IOUTracker | score >= 0.35 |" in res.stdout
    assert "Traceback" not in res.stderr
    assert "1 of 2 sequences failed" in res.stderr and "--detections public" in res.stderr
    data = json.loads((out / "evaluation.json").read_text())
    (r,) = data["results"]
    assert r["frames"] == 71 and r["lines"][0]["reference"] == 5
    assert r["detection_min_score"] == pytest.approx(0.35)
    assert 0 < r["recall"] <= 1 and 0 < r["hota"] <= 1 and r["idf1"] > 0
    assert len(r["dwell"]) == 8
    (failed,) = data["failed"]
    assert failed["sequence"].endswith("ETH-Sunnyday") and "no frames" in failed["error"]
    md = (out / "evaluation.md").read_text()
    assert "lookout evaluate" in md and "| TUD-Campus |" in md and "Failed:" in md


def test_the_tracker_takes_its_own_boxes(shared) -> None:
    """Detections down to 0.1 (the shipped detector's MinScore): IOUTracker keeps those from
    its MinScore up, KalmanTracker counts from its LowScore, and precision says which."""
    from libs.config import load_config
    from libs.evaluation.evaluate import evaluate_sequence
    from libs.evaluation.mot import MotBoxes

    seq = load_sequence(TUD)
    assert seq.det is not None
    rng = np.random.default_rng(3)
    low = seq.det.conf * 0 + rng.uniform(0.1, 0.34, len(seq.det))  # every box scored low
    half = np.arange(len(low)) % 2 == 0
    seq.det = MotBoxes(seq.det.frames, seq.det.ids, seq.det.boxes,
                       np.where(half, seq.det.conf, low))
    config = load_config(REPO / "config-x86.ini", check_files=False)
    iou = evaluate_sequence(seq, config, detections="public", tracker_name="IOUTracker")
    kalman = evaluate_sequence(seq, config, detections="public", tracker_name="KalmanTracker")
    assert iou.detection_min_score == pytest.approx(0.35)
    assert kalman.detection_min_score == pytest.approx(0.1)
    # Half the true boxes are below 0.35: IOUTracker neither tracks nor counts them.
    assert iou.recall < 0.6 * kalman.recall
    assert iou.tracking["FN"] > kalman.tracking["FN"]


def test_evaluate_rejects_bad_input(tmp_path: Path) -> None:
    res = lookout_evaluate(str(tmp_path), timeout=60)
    assert res.returncode == 2 and "seqinfo.ini" in res.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["--tracker", "DeepSort"], "no tracker 'DeepSort'; registered: IOUTracker, KalmanTracker"),
    (["--detections", "yolo"], "--detections 'yolo': neither 'pipeline'"),
])
def test_unknown_names_are_said_not_traced(shared, args: list[str], says: str) -> None:
    res = lookout_evaluate(str(TUD), *args, timeout=60)
    assert res.returncode == 2
    assert says in res.stderr and "Traceback" not in res.stderr


def test_default_output_is_in_the_data_directory(shared, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "LOOKOUT_DATA_DIR": str(tmp_path / "data")}
    res = lookout_evaluate(str(KITTI), "--detections", "public", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "data" / "evaluation" / "evaluation.json").is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", "evaluation/evaluation.md"],
                             cwd=REPO, capture_output=True)
    assert ignored.returncode == 0, "a --output-dir evaluation in the checkout is not ignored"
