"""The ``demographics`` models measured on the labelled faces of ``../shared/data/faces``.

    .venv/bin/python benchmarks/demographics_benchmark.py [--repeats 3]

* **Age and gender** on ``demographics/utkface`` (240 aligned 200x200 UTKFace crops, balanced
  over gender x race, ages 1-96): YuNet (``cv2.FaceDetectorYN``, score 0.6) finds the face and
  its 5 landmarks inside the crop, then exactly the stage's own path
  (:func:`libs.post_processors.demographics.align_face` to the Cydral template, 64 px for
  ``age_cydral_v1``, 32 px for ``gender_cydral_v1``).  Gender accuracy and age MAE (years),
  overall, per age bin and per UTKFace race (a bias check), and the accuracy of the audience
  report's age bands.
* **Emotion** on ``demographics/fer2013`` (280 FER2013 PrivateTest faces, 40 per class, 48x48
  grey): fed directly (resized to 64, the stage's :func:`emotion_tensor`).  Accuracy over the 7
  classes, recall per class, and "happy or not" (accuracy, and precision/recall of happy).
* **Time per face**: median milliseconds per face, one face at a time, with the stage's
  settings (ONNX Runtime, 1 thread, spinning off): alignment of both chips, age, gender,
  emotion; YuNet on a 200x200 crop is shown apart (it belongs to the ``faces`` stage).

The figures are written to ``docs/benchmarks-demographics.json`` and, between the markers
``<!-- demographics:start -->`` / ``<!-- demographics:end -->``, to ``docs/benchmarks.md``
(appended at the end when the markers are absent; the rest of that file belongs to other
scripts and is left byte for byte).  ``tests/test_demographics_benchmark_doc.py`` checks that
the section is exactly what :func:`render_section` makes of the JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from libs.frame import EMOTIONS  # noqa: E402
from libs.post_processors.audience import age_band  # noqa: E402
from libs.post_processors.demographics import (  # noqa: E402
    AGE_SIZE,
    GENDER_SIZE,
    FaceModels,
    align_face,
)

DOC = REPO / "docs" / "benchmarks.md"
RAW = REPO / "docs" / "benchmarks-demographics.json"
START = "<!-- demographics:start -->"
END = "<!-- demographics:end -->"
UTKFACE = "data/faces/demographics/utkface"
FER2013 = "data/faces/demographics/fer2013"
MODELS = {
    "age": "models/age_cydral_v1.onnx",
    "gender": "models/gender_cydral_v1.onnx",
    "emotion": "models/emotion_mini_xception_fer2013_64.onnx",
    "yunet": "models/face_yunet_2023mar.onnx",
}
YUNET_SCORE = 0.6
AGE_BINS = ((0, 12), (13, 19), (20, 29), (30, 39), (40, 49), (50, 59), (60, 200))
THREADS = 1


def shared_dir() -> Path:
    env = os.environ.get("LOOKOUT_ASSETS_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared").resolve()


def load_models(shared: Path, threads: int = THREADS) -> FaceModels:
    return FaceModels(shared / MODELS["age"], shared / MODELS["gender"],
                      shared / MODELS["emotion"], threads)


def yunet(shared: Path) -> Any:
    return cv2.FaceDetectorYN.create(str(shared / MODELS["yunet"]), "", (200, 200),
                                     YUNET_SCORE, 0.3, 5000)


def best_face(detector: Any, image: np.ndarray) -> np.ndarray | None:
    """YuNet's best face ``[x, y, w, h, 5 x (x, y), score]`` in ``image``, or None."""
    h, w = image.shape[:2]
    detector.setInputSize((w, h))
    _, faces = detector.detect(image)
    if faces is None or len(faces) == 0:
        return None
    return np.asarray(faces[int(np.argmax(faces[:, -1]))], np.float32)


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.asarray(image)


def read_labels(folder: Path) -> list[dict[str, str]]:
    with open(folder / "labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------


def _rate(hits: Sequence[bool]) -> float | None:
    return float(np.mean(hits)) if len(hits) else None


def _mae(errors: Sequence[float]) -> float | None:
    return float(np.mean(errors)) if len(errors) else None


def evaluate_utkface(models: FaceModels, detector: Any, folder: Path,
                     limit: int | None = None) -> dict[str, Any]:
    """Gender accuracy and age MAE on UTKFace (faces YuNet misses are counted apart)."""
    rows = read_labels(folder)[:limit]
    faces: list[dict[str, Any]] = []
    missed = 0
    for row in rows:
        image = read_image(folder / row["file"])
        face = best_face(detector, image)
        if face is None:
            missed += 1
            continue
        marks = face[4:14].reshape(5, 2)
        age = float(models.ages([align_face(image, marks, AGE_SIZE)])[0])
        male = float(models.male_probabilities([align_face(image, marks, GENDER_SIZE)])[0])
        true_age = int(row["age"])
        faces.append({
            "age": true_age, "predicted_age": age, "male": row["gender"] == "male",
            "predicted_male": male >= 0.5, "race": row["race"],
        })

    def summary(items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "faces": len(items),
            "gender_accuracy": _rate([f["male"] == f["predicted_male"] for f in items]),
            "age_mae": _mae([abs(f["predicted_age"] - f["age"]) for f in items]),
        }

    bins = []
    for low, high in AGE_BINS:
        items = [f for f in faces if low <= f["age"] <= high]
        label = f"{low}+" if high >= 200 else f"{low}-{high}"
        bins.append({"bin": label, **summary(items)})
    races = [{"race": race, **summary([f for f in faces if f["race"] == race])}
             for race in sorted({f["race"] for f in faces})]
    return {
        "images": len(rows),
        "faces_found": len(faces),
        "missed_by_yunet": missed,
        **summary(faces),
        "age_within_10": _rate([abs(f["predicted_age"] - f["age"]) <= 10 for f in faces]),
        "age_band_accuracy": _rate(
            [age_band(f["predicted_age"]) == age_band(float(f["age"])) for f in faces]),
        "age_bias": _mae([f["predicted_age"] - f["age"] for f in faces]),
        "by_age": bins,
        "by_race": races,
    }


def evaluate_fer(models: FaceModels, folder: Path, limit: int | None = None) -> dict[str, Any]:
    """Emotion accuracy (7 classes) and happy-or-not on FER2013's 48x48 grey faces."""
    rows = read_labels(folder)[:limit]
    images = [read_image(folder / r["file"], cv2.IMREAD_GRAYSCALE) for r in rows]
    probs = models.emotions(images)
    predicted = [EMOTIONS[int(k)] for k in np.argmax(probs, axis=1)]
    truth = [r["label"] for r in rows]
    happy_true = [t == "happy" for t in truth]
    happy_pred = [p == "happy" for p in predicted]
    tp = sum(a and b for a, b in zip(happy_true, happy_pred, strict=True))
    per_class = [
        {"emotion": e, "faces": truth.count(e),
         "recall": _rate([p == e for t, p in zip(truth, predicted, strict=True) if t == e])}
        for e in EMOTIONS
    ]
    return {
        "faces": len(rows),
        "accuracy": _rate([t == p for t, p in zip(truth, predicted, strict=True)]),
        "happy_vs_not_accuracy": _rate(
            [a == b for a, b in zip(happy_true, happy_pred, strict=True)]),
        "happy_precision": tp / sum(happy_pred) if sum(happy_pred) else None,
        "happy_recall": tp / sum(happy_true) if sum(happy_true) else None,
        "always_not_happy_accuracy": 1.0 - sum(happy_true) / len(rows) if rows else None,
        "by_emotion": per_class,
    }


def _ms(fn: Callable[..., object], *args: Any) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1000.0


def time_per_face(models: FaceModels, detector: Any, folder: Path, faces: int = 40,
                  repeats: int = 3) -> dict[str, float]:
    """Median milliseconds per face of each step, one face at a time."""
    found: list[tuple[np.ndarray, np.ndarray]] = []
    for row in read_labels(folder)[:faces]:
        image = read_image(folder / row["file"])
        face = best_face(detector, image)
        if face is not None:
            found.append((image, face))
    steps: dict[str, list[float]] = {
        k: [] for k in ("yunet_200px", "align", "age", "gender", "emotion")
    }
    for _ in range(repeats):
        for image, face in found:
            marks = face[4:14].reshape(5, 2)
            steps["yunet_200px"].append(_ms(best_face, detector, image))
            t0 = time.perf_counter()
            chip64 = align_face(image, marks, AGE_SIZE)
            chip32 = align_face(image, marks, GENDER_SIZE)
            x, y, w, h = (int(v) for v in face[:4])
            crop = image[max(0, y):y + h, max(0, x):x + w]
            steps["align"].append((time.perf_counter() - t0) * 1000.0)
            steps["age"].append(_ms(models.ages, [chip64]))
            steps["gender"].append(_ms(models.male_probabilities, [chip32]))
            steps["emotion"].append(_ms(models.emotions, [crop]))
    out = {k: statistics.median(v) for k, v in steps.items()}
    out["stage_total"] = out["align"] + out["age"] + out["gender"] + out["emotion"]
    return out


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    packages = {}
    for dist in ("numpy", "opencv-python-headless", "onnxruntime"):
        try:
            packages[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            packages[dist] = "not installed"
    return {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform(),
            "python": platform.python_version(), "packages": packages}


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_section(report: dict[str, Any]) -> str:
    """The Markdown between (and including) the markers, from the JSON report alone."""
    utk, fer, ms, m = report["utkface"], report["fer2013"], report["ms_per_face"], report["machine"]
    lines = [
        START,
        "## Demographics: age, gender and emotion",
        "",
        "Generated by `benchmarks/demographics_benchmark.py` (do not edit by hand: re-run it; "
        "it rewrites only this section and `docs/benchmarks-demographics.json`, which "
        "`tests/test_demographics_benchmark_doc.py` checks this section against).",
        "",
        f"* Command: `{report['command']}`",
        f"* Date: {report['date']}",
        f"* Machine: {m['cpu']}, {m['cores']} cores, {m['os']}; Python {m['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(m["packages"].items())),
        f"* Models: `{MODELS['age']}`, `{MODELS['gender']}` (face chips aligned from YuNet's "
        f"5 landmarks, YuNet score {YUNET_SCORE:g}), `{MODELS['emotion']}` (48x48 grey FER "
        f"faces resized to 64); ONNX Runtime, {report['threads']} thread, spinning off.",
        "",
        "| Measure | Set | Faces | Value |",
        "|---|---|---:|---:|",
        f"| Gender accuracy | UTKFace | {utk['faces_found']} | {pct(utk['gender_accuracy'])} |",
        f"| Age MAE (years) | UTKFace | {utk['faces_found']} | {num(utk['age_mae'])} |",
        f"| Age within 10 years | UTKFace | {utk['faces_found']} | {pct(utk['age_within_10'])} |",
        f"| Age bias (mean predicted - true, years) | UTKFace | {utk['faces_found']} "
        f"| {num(utk['age_bias'])} |",
        f"| Audience age band right (0-17, 18-34, 35-54, 55+) | UTKFace | {utk['faces_found']} "
        f"| {pct(utk['age_band_accuracy'])} |",
        f"| Faces YuNet missed (not scored) | UTKFace | {utk['images']} "
        f"| {utk['missed_by_yunet']} |",
        f"| Emotion accuracy (7 classes) | FER2013 | {fer['faces']} | {pct(fer['accuracy'])} |",
        f"| Happy or not: accuracy | FER2013 | {fer['faces']} "
        f"| {pct(fer['happy_vs_not_accuracy'])} |",
        f"| Happy or not: always answering \"not happy\" | FER2013 | {fer['faces']} "
        f"| {pct(fer['always_not_happy_accuracy'])} |",
        f"| Happy: precision | FER2013 | {fer['faces']} | {pct(fer['happy_precision'])} |",
        f"| Happy: recall | FER2013 | {fer['faces']} | {pct(fer['happy_recall'])} |",
        "",
        "### By age (UTKFace)",
        "",
        "| Age | Faces | Gender accuracy | Age MAE (years) |",
        "|---|---:|---:|---:|",
        *(f"| {b['bin']} | {b['faces']} | {pct(b['gender_accuracy'])} | {num(b['age_mae'])} |"
          for b in utk["by_age"]),
        "",
        "### By UTKFace race label (bias check)",
        "",
        "| Race | Faces | Gender accuracy | Age MAE (years) |",
        "|---|---:|---:|---:|",
        *(f"| {r['race']} | {r['faces']} | {pct(r['gender_accuracy'])} | {num(r['age_mae'])} |"
          for r in utk["by_race"]),
        "",
        "### By emotion (FER2013)",
        "",
        "| Emotion | Faces | Recall |",
        "|---|---:|---:|",
        *(f"| {e['emotion']} | {e['faces']} | {pct(e['recall'])} |" for e in fer["by_emotion"]),
        "",
        "### Time per face",
        "",
        f"Median milliseconds per face, one face at a time, {report['timing_faces']} faces x "
        f"{report['repeats']} rounds.",
        "",
        "| Step | ms per face |",
        "|---|---:|",
        f"| Align the 64 and 32 px chips, cut the face box | {num(ms['align'], 3)} |",
        f"| Age model | {num(ms['age'], 3)} |",
        f"| Gender model | {num(ms['gender'], 3)} |",
        f"| Emotion model | {num(ms['emotion'], 3)} |",
        f"| **demographics stage, per measured face** | **{num(ms['stage_total'], 3)}** |",
        f"| YuNet on a 200x200 crop (the faces stage, for scale) | {num(ms['yunet_200px'], 3)} |",
        "",
        "Read these as what they are: UTKFace crops are aligned, frontal and sharp, so a "
        "camera's faces will score lower; the labels are themselves estimates. FER2013 "
        "labels are noisy (human accuracy about 65 %). Only \"happy or not\" is dependable "
        "enough to report; the other emotion columns of the audience report are a weak "
        "signal. Children's gender is unreliable. Demographics are off unless enabled.",
        END,
    ]
    return "\n".join(lines)


def replace_section(text: str, section: str) -> str:
    """``text`` with its marked section replaced, or ``section`` appended at the end."""
    start, end = text.find(START), text.find(END)
    if start >= 0 and end > start:
        return text[:start] + section + text[end + len(END):]
    sep = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + sep + section + "\n"


def command_line(argv: list[str]) -> str:
    def rel(p: str) -> str:
        try:
            return str(Path(p).absolute().relative_to(REPO))
        except ValueError:
            return p

    return shlex.join([rel(sys.executable), rel(argv[0]), *argv[1:]])


def run(shared: Path, repeats: int, argv: list[str]) -> dict[str, Any]:
    models = load_models(shared)
    detector = yunet(shared)
    t0 = time.perf_counter()
    report = {
        "command": command_line(argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "threads": THREADS,
        "repeats": repeats,
        "timing_faces": 40,
        "utkface": evaluate_utkface(models, detector, shared / UTKFACE),
        "fer2013": evaluate_fer(models, shared / FER2013),
        "ms_per_face": time_per_face(models, detector, shared / UTKFACE, 40, repeats),
    }
    report["runtime_s"] = round(time.perf_counter() - t0, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (default 3)")
    parser.add_argument("--out", type=Path, default=DOC, help="the Markdown report")
    parser.add_argument("--json", type=Path, default=RAW, help="the JSON figures")
    args = parser.parse_args(argv[1:])
    report = run(shared_dir(), args.repeats, argv)
    args.json.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    old = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(replace_section(old, render_section(report)))
    utk, fer = report["utkface"], report["fer2013"]
    print(f"gender {pct(utk['gender_accuracy'])}, age MAE {num(utk['age_mae'])} y, "
          f"emotion {pct(fer['accuracy'])}, happy-or-not {pct(fer['happy_vs_not_accuracy'])}, "
          f"{num(report['ms_per_face']['stage_total'], 3)} ms per face")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
