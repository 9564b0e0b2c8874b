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
from tests.conftest import PETS, REPO, TUD


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


def test_evaluate_command_on_tud(shared, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    res = subprocess.run(
        [sys.executable, "-m", "processor.cli", "evaluate", str(TUD), "--config",
         str(REPO / "config-x86.ini"), "--line", "x320:320,0,320,480", "--output-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "| TUD-Campus | pipeline |" in res.stdout
    data = json.loads((out / "evaluation.json").read_text())
    (r,) = data["results"]
    assert r["frames"] == 71 and r["lines"][0]["reference"] == 5
    assert 0 < r["recall"] <= 1 and 0 < r["hota"] <= 1 and r["idf1"] > 0
    assert len(r["dwell"]) == 8
    md = (out / "evaluation.md").read_text()
    assert "lookout evaluate" in md and "| TUD-Campus |" in md


def test_evaluate_rejects_bad_input(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "processor.cli", "evaluate", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 2 and "seqinfo.ini" in res.stderr
