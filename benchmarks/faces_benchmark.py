"""The face steps (``faces``, ``facemask``, ``head_pose``) measured on the labelled faces of
``../shared/data/faces``.

    .venv/bin/python benchmarks/faces_benchmark.py [--shared ../shared] [--repeats 3]

**Mask** (``facemask/real_crops``: real masks; ``facemask/synthetic_prajnasb``: pasted masks),
each image handed to the code of the steps in two ways:

* ``head``: the image is the head region of a person box (a square of its longer side, centred;
  the part outside the image repeats the border), searched by
  :class:`~libs.post_processors.faces.FaceFinder` exactly as the ``faces`` step does with its
  default ``FaceDetector = yunet+masked`` (and, for comparison, with ``masked`` alone), then one
  ``facemask`` observation (:func:`~libs.post_processors.facemask.mask_vote`);
* ``yunet-crop``: YuNet on the whole image (longer side scaled to 640 at most), its best face
  classified the same way: a face detector handing its crop to the classifier.

Accuracy counts every image (no face found, or no decisive observation, is wrong); "no face" is
the share where no face was found, "undecided" where a face was found but the mask model did
not recognise it (score below ``MinScore``).  Per ``source_group`` too (FACES.md warns of a
crop-style shortcut).

**Head pose** (``head_pose/aflw2000``): YuNet on the whole 450x450 image, the face overlapping
the labelled box best (IoU >= 0.3), then :class:`~libs.post_processors.head_pose.
HeadPoseEstimator` as the ``head_pose`` step runs it (camera of ``HorizontalFov`` 60 degrees
centred in the image): mesh only, YuNet landmarks only, and the step's mesh-then-landmarks.
Angles are compared in AFLW2000's convention (its yaw is the negative of ``head_yaw``); a face
counts as accepted when the method gave angles.  "Looking" is scored with the step's default
cone (|yaw|, |pitch| <= 20 degrees from the camera axis) on the labels and on the estimates.

**Time**: median milliseconds per face over ``--repeats`` rounds of 40 faces, one at a time.

Results go to ``docs/benchmarks-faces.json`` and, between ``<!-- faces:start -->`` and
``<!-- faces:end -->``, to ``docs/benchmarks.md`` (appended at the end the first time; the rest
of that file is never touched).  ``tests/test_faces_benchmark_doc.py`` checks the two agree.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from libs.post_processors.facemask import FacemaskConfig, mask_vote  # noqa: E402
from libs.post_processors.faces import (  # noqa: E402
    MASK_MODEL,
    YUNET_MODEL,
    FaceFinder,
    FacesConfig,
    MaskedFaceModel,
    YuNet,
    box_iou,
    crop_region,
)
from libs.post_processors.head_pose import (  # noqa: E402
    MESH_MODEL,
    FaceMesh,
    HeadPoseConfig,
    HeadPoseEstimator,
    camera_matrix,
    in_cone,
    mesh_available,
)

DOC = REPO / "docs" / "benchmarks.md"
RAW = REPO / "docs" / "benchmarks-faces.json"
START = "<!-- faces:start -->"
END = "<!-- faces:end -->"
REAL = "facemask/real_crops"
SYNTHETIC = "facemask/synthetic_prajnasb"
AFLW = "head_pose/aflw2000"
MASK_SETS = (REAL, SYNTHETIC)
MASK_MODES = ("head", "head-masked-only", "yunet-crop")
POSE_METHODS = ("pipeline", "mesh", "landmarks")
THREADS = 2
YUNET_CROP_MAX_SIDE = 640
POSE_MIN_IOU = 0.3

FACES = FacesConfig.model_validate({"Name": "faces"})
FACEMASK = FacemaskConfig.model_validate({"Name": "facemask"})
HEAD_POSE = HeadPoseConfig.model_validate({"Name": "head_pose"})


def shared_dir() -> Path:
    env = os.environ.get("LOOKOUT_ASSETS_DIR")
    return Path(env).resolve() if env else (REPO.parent / "shared").resolve()


@dataclass
class Models:
    yunet: YuNet
    masked: MaskedFaceModel
    mesh: FaceMesh | None

    def finder(self, detector: str = "yunet+masked") -> FaceFinder:
        return FaceFinder(
            detector,  # type: ignore[arg-type]
            self.yunet, self.masked, FACES.yunet_input_size, FACES.mask_score,
            FACES.head_padding,
        )


def load_models(shared: Path, threads: int = THREADS) -> Models:
    mesh = None
    if mesh_available():
        mesh = FaceMesh(shared / MESH_MODEL, 1)
    return Models(
        YuNet(shared / YUNET_MODEL, FACES.yunet_score),
        MaskedFaceModel(shared / MASK_MODEL, threads),
        mesh,
    )


def read_image(path: Path) -> np.ndarray:
    """BGR pixels (RGBA PNGs lose their alpha, grey images become 3 channels)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image")
    return image


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def every(rows: Sequence[dict[str, str]], step: int) -> list[dict[str, str]]:
    """Every ``step``-th row (a deterministic subsample)."""
    return list(rows[:: max(step, 1)])


# ---------------------------------------------------------------------------------------
# Mask
# ---------------------------------------------------------------------------------------


def whole_image_region(image: np.ndarray) -> np.ndarray:
    """The image as a head region: the square of its longer side, centred on it."""
    height, width = image.shape[:2]
    side = max(height, width)
    cx, cy = width / 2.0, height / 2.0
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float64)


def yunet_best(models: Models, image: np.ndarray) -> np.ndarray | None:
    """YuNet's best face ``(15,)`` in the image (scaled to 640 at most), in image pixels."""
    height, width = image.shape[:2]
    scale = min(1.0, YUNET_CROP_MAX_SIDE / max(height, width))
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))),
        interpolation=cv2.INTER_AREA,
    )
    faces = models.yunet.detect(small)
    if len(faces) == 0:
        return None
    best = faces[int(np.argmax(faces[:, 14]))].astype(np.float64)
    best[:14] /= scale
    return best


def mask_answer(models: Models, image: np.ndarray, mode: str) -> tuple[str, bool | None]:
    """``(outcome, vote)``: outcome ``no-face``, ``undecided`` or ``decided``."""
    if mode == "yunet-crop":
        face = yunet_best(models, image)
        if face is None:
            return "no-face", None
        box = np.array([face[0], face[1], face[0] + face[2], face[1] + face[3]])
        known = float("nan")
    else:
        detector = "masked" if mode == "head-masked-only" else "yunet+masked"
        found = models.finder(detector).find(image, whole_image_region(image))
        if found is None:
            return "no-face", None
        box, known = found.box.astype(np.float64), found.mask_prob
    vote = None
    if box[2] - box[0] >= FACEMASK.min_face_size:  # as the facemask step does
        vote = mask_vote(models.masked, image, box, known, FACEMASK.crop_scale,
                         FACEMASK.min_score)
    return ("undecided", None) if vote is None else ("decided", vote)


def _rate(hits: int, total: int) -> float | None:
    return hits / total if total else None


def evaluate_masks(models: Models, folder: Path, step: int = 1,
                   modes: Sequence[str] = MASK_MODES) -> dict[str, Any]:
    """Accuracy, no-face and undecided rates per mode, overall and per source group."""
    rows = every(read_rows(folder / "labels.csv"), step)
    groups = {r["file"]: r.get("source_group", "") for r in read_rows(folder / "provenance.csv")}
    counts: dict[str, dict[str, Any]] = {
        m: {"right": 0, "decided": 0, "no_face": 0, "undecided": 0, "groups": {}} for m in modes
    }
    yunet_found: dict[str, list[int]] = {}
    for row in rows:
        image = read_image(folder / row["file"])
        truth = row["label"] == "with_mask"
        group = f"{groups.get(row['file']) or 'all'}/{row['label']}"
        found = yunet_best(models, image) is not None
        tally = yunet_found.setdefault(row["label"], [0, 0])
        tally[0] += 1
        tally[1] += int(found)
        for mode in modes:
            outcome, vote = mask_answer(models, image, mode)
            c = counts[mode]
            right = outcome == "decided" and vote == truth
            c["right"] += int(right)
            c["decided"] += int(outcome == "decided")
            c["no_face"] += int(outcome == "no-face")
            c["undecided"] += int(outcome == "undecided")
            g = c["groups"].setdefault(group, [0, 0])
            g[0] += 1
            g[1] += int(right)
    n = len(rows)
    result: dict[str, Any] = {"images": n, "modes": {}}
    for mode, c in counts.items():
        result["modes"][mode] = {
            "accuracy": _rate(c["right"], n),
            "accuracy_decided": _rate(c["right"], c["decided"]),
            "no_face": _rate(c["no_face"], n),
            "undecided": _rate(c["undecided"], n),
            "groups": {
                g: {"images": v[0], "accuracy": _rate(v[1], v[0])}
                for g, v in sorted(c["groups"].items())
            },
        }
    result["yunet_found"] = {
        label: {"images": v[0], "found": _rate(v[1], v[0])}
        for label, v in sorted(yunet_found.items())
    }
    return result


# ---------------------------------------------------------------------------------------
# Head pose
# ---------------------------------------------------------------------------------------


def labelled_face(models: Models, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """YuNet's face ``(15,)`` overlapping the labelled box best (IoU >= 0.3), or None."""
    faces = models.yunet.detect(image)
    if len(faces) == 0:
        return None
    ious = [box_iou(box, np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]])) for f in faces]
    best = int(np.argmax(ious))
    return faces[best].astype(np.float64) if ious[best] >= POSE_MIN_IOU else None


def estimators(models: Models) -> dict[str, HeadPoseEstimator]:
    s = HEAD_POSE
    return {
        "pipeline": HeadPoseEstimator(models.mesh, s.mesh_crop_scale, s.min_presence),
        "mesh": HeadPoseEstimator(models.mesh, s.mesh_crop_scale, s.min_presence),
        "landmarks": HeadPoseEstimator(None),
    }


def evaluate_head_pose(models: Models, folder: Path, step: int = 1) -> dict[str, Any]:
    """Mean absolute yaw/pitch/roll errors (AFLW2000 convention) and acceptance per method."""
    rows = every(read_rows(folder / "labels.csv"), step)
    boxes = {
        r["file"]: np.array([float(r[k]) for k in ("x_min", "y_min", "x_max", "y_max")])
        for r in read_rows(folder / "boxes.csv")
    }
    methods = estimators(models)
    errors: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
    looks: dict[str, list[tuple[bool, bool]]] = {m: [] for m in methods}
    used: dict[str, int] = {"mesh": 0, "landmarks": 0}
    found = 0
    s = HEAD_POSE
    for row in rows:
        image = read_image(folder / row["file"])
        truth = (float(row["yaw"]), float(row["pitch"]), float(row["roll"]))
        face = labelled_face(models, image, boxes[row["file"]])
        if face is None:
            continue
        found += 1
        box = np.array([face[0], face[1], face[0] + face[2], face[1] + face[3]])
        marks = face[4:14].reshape(5, 2)
        camera = camera_matrix(image.shape[1], image.shape[0], s.horizontal_fov)
        for name, estimator in methods.items():
            given = np.full((5, 2), np.nan) if name == "mesh" else marks
            pose, how = estimator.estimate(image, box, given, camera)
            if pose is None:
                continue
            if name == "pipeline":
                used[how] += 1
            yaw_aflw = -pose[0]
            errors[name].append(
                (abs(yaw_aflw - truth[0]), abs(pose[1] - truth[1]), abs(pose[2] - truth[2]))
            )
            label = bool(in_cone(np.array([-truth[0]]), np.array([truth[1]]), 0.0, 0.0,
                                 s.cone_yaw, s.cone_pitch)[0])
            guess = bool(in_cone(np.array([pose[0]]), np.array([pose[1]]), 0.0, 0.0,
                                 s.cone_yaw, s.cone_pitch)[0])
            looks[name].append((label, guess))
    n = len(rows)
    out: dict[str, Any] = {"images": n, "yunet_found": _rate(found, n), "methods": {}}
    for name, errs in errors.items():
        e = np.array(errs, np.float64).reshape(-1, 3)
        pairs = looks[name]
        tp = sum(1 for lab, g in pairs if lab and g)
        fp = sum(1 for lab, g in pairs if g and not lab)
        fn = sum(1 for lab, g in pairs if lab and not g)
        out["methods"][name] = {
            "accepted": _rate(len(errs), n),
            "faces": len(errs),
            "yaw_mae": float(e[:, 0].mean()) if len(e) else None,
            "pitch_mae": float(e[:, 1].mean()) if len(e) else None,
            "roll_mae": float(e[:, 2].mean()) if len(e) else None,
            "looking_accuracy": _rate(sum(1 for lab, g in pairs if lab == g), len(pairs)),
            "looking_precision": _rate(tp, tp + fp),
            "looking_recall": _rate(tp, tp + fn),
            "looking_faces": sum(1 for lab, _ in pairs if lab),
        }
    out["pipeline_used"] = used
    return out


# ---------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------


def _median_ms(fn: Callable[[], object], items: int, repeats: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(repeats):
        for _ in range(items):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def time_per_face(models: Models, shared: Path, repeats: int, faces: int = 40) -> dict[str, float]:
    """Median ms of each step on the first ``faces`` AFLW2000 faces, one face at a time."""
    folder = shared / "data" / "faces" / AFLW
    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for row in read_rows(folder / "labels.csv"):
        image = read_image(folder / row["file"])
        face = yunet_best(models, image)
        if face is not None:
            box = np.array([face[0], face[1], face[0] + face[2], face[1] + face[3]])
            samples.append((image, box, face[4:14].reshape(5, 2)))
        if len(samples) == faces:
            break
    cycle = _cycle(samples)
    finder = models.finder("yunet")
    masked_finder = models.finder("masked")
    mesh_only = HeadPoseEstimator(models.mesh, HEAD_POSE.mesh_crop_scale, HEAD_POSE.min_presence)
    marks_only = HeadPoseEstimator(None)
    nan_marks = np.full((5, 2), np.nan)

    def head_of(box: np.ndarray) -> np.ndarray:
        side = (box[2] - box[0]) * FACES.head_padding * 1.3
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])

    def yunet_head() -> object:
        image, box, _ = next(cycle)
        return finder.find(image, head_of(box))

    def masked_head() -> object:
        image, box, _ = next(cycle)
        return masked_finder.find(image, head_of(box))

    def classify() -> object:
        image, box, _ = next(cycle)
        return mask_vote(models.masked, image, box, float("nan"), FACEMASK.crop_scale,
                         FACEMASK.min_score)

    def pose_mesh() -> object:
        image, box, _ = next(cycle)
        camera = camera_matrix(image.shape[1], image.shape[0], HEAD_POSE.horizontal_fov)
        return mesh_only.estimate(image, box, nan_marks, camera)

    def pose_marks() -> object:
        image, box, marks = next(cycle)
        camera = camera_matrix(image.shape[1], image.shape[0], HEAD_POSE.horizontal_fov)
        return marks_only.estimate(image, box, marks, camera)

    def crop_only() -> object:
        image, box, _ = next(cycle)
        return crop_region(image, head_of(box), (FACES.yunet_input_size,) * 2)

    n = len(samples)
    out = {
        "head_crop": _median_ms(crop_only, n, repeats),
        "faces_yunet": _median_ms(yunet_head, n, repeats),
        "faces_masked": _median_ms(masked_head, n, repeats),
        "facemask_classify": _median_ms(classify, n, repeats),
        "head_pose_landmarks": _median_ms(pose_marks, n, repeats),
    }
    if models.mesh is not None:
        out["head_pose_mesh"] = _median_ms(pose_mesh, n, repeats)
    return out


def _cycle(items: list[Any]) -> Iterator[Any]:
    while True:
        yield from items


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
    versions = {}
    for package in ("numpy", "onnxruntime", "opencv-python-headless", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": versions,
    }


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


MODE_TEXT = {
    "head": "head region, yunet+masked (the faces step's default)",
    "head-masked-only": "head region, masked-face model only",
    "yunet-crop": "YuNet face crop",
}
METHOD_TEXT = {
    "pipeline": "mesh, else YuNet landmarks (the head_pose step)",
    "mesh": "face mesh only",
    "landmarks": "YuNet's 5 landmarks only",
}
TIME_TEXT = {
    "head_crop": "Cut and scale a head region to 160 px",
    "faces_yunet": "faces: YuNet on a head region (crop included)",
    "faces_masked": "faces: masked-face model on a head region (crop included)",
    "facemask_classify": "facemask: one observation (crop + masked-face model)",
    "head_pose_mesh": "head_pose: face mesh + PnP",
    "head_pose_landmarks": "head_pose: 5-landmark PnP",
}


def render_section(report: dict[str, Any]) -> str:
    """The Markdown section, markers included, from the JSON report."""
    m = report["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in sorted(m["packages"].items()))
    lines = [
        START,
        "## Faces: mask, head pose",
        "",
        "Generated by `benchmarks/faces_benchmark.py` (do not edit by hand: re-run it; it "
        "rewrites only this section and `docs/benchmarks-faces.json`, which "
        "`tests/test_faces_benchmark_doc.py` checks this section against).",
        "",
        f"* Command: `{report['command']}`",
        f"* Date: {report['date']}",
        f"* Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}; Python {m['python']}; "
        f"{packages}",
        f"* Settings: the steps' defaults: faces {report['settings']['faces']}; facemask "
        f"{report['settings']['facemask']}; head_pose {report['settings']['head_pose']}. "
        f"Masked-face model with {report['settings']['threads']} ONNX Runtime threads, "
        "spinning off.",
        "",
        "### Mask / no mask",
        "",
        "Every image counts: no face found or an undecided observation is wrong.",
        "",
        "| Set | Mode | Images | Accuracy | Accuracy (decided) | No face | Undecided |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in MASK_SETS:
        r = report["mask"][name]
        for mode in MASK_MODES:
            v = r["modes"][mode]
            lines.append(
                f"| {name.split('/')[-1]} | {MODE_TEXT[mode]} | {r['images']} | "
                f"{pct(v['accuracy'])} | {pct(v['accuracy_decided'])} | {pct(v['no_face'])} "
                f"| {pct(v['undecided'])} |"
            )
    lines += [
        "",
        "#### real_crops by source group",
        "",
        "| Group / label | Images | " + " | ".join(MODE_TEXT[m] for m in MASK_MODES) + " |",
        "|---|---:|" + "---:|" * len(MASK_MODES),
    ]
    real = report["mask"][REAL]["modes"]
    for group, g in real[MASK_MODES[0]]["groups"].items():
        cells = " | ".join(pct(real[m]["groups"][group]["accuracy"]) for m in MASK_MODES)
        lines.append(f"| {group} | {g['images']} | {cells} |")
    lines += [
        "",
        "#### YuNet finds the face (score >= "
        f"{report['settings']['yunet_score']}, whole image)",
        "",
        "| Set | Label | Images | Found |",
        "|---|---|---:|---:|",
    ]
    for name in MASK_SETS:
        for label, v in report["mask"][name]["yunet_found"].items():
            lines.append(
                f"| {name.split('/')[-1]} | {label} | {v['images']} | {pct(v['found'])} |"
            )
    pose = report["head_pose"]
    lines += [
        "",
        "### Head pose (AFLW2000-3D subset)",
        "",
        f"{pose['images']} images; YuNet found the labelled face in {pct(pose['yunet_found'])}. "
        "Mean absolute error in degrees over the faces a method accepted; \"looking\" is "
        f"|yaw| and |pitch| <= {report['settings']['cone']} degrees, labels against estimates.",
        "",
        "| Method | Accepted | Yaw MAE | Pitch MAE | Roll MAE | Looking accuracy | "
        "Looking precision | Looking recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in POSE_METHODS:
        v = pose["methods"][name]
        lines.append(
            f"| {METHOD_TEXT[name]} | {pct(v['accepted'])} | {num(v['yaw_mae'])} | "
            f"{num(v['pitch_mae'])} | {num(v['roll_mae'])} | {pct(v['looking_accuracy'])} | "
            f"{pct(v['looking_precision'])} | {pct(v['looking_recall'])} |"
        )
    used = pose["pipeline_used"]
    lines += [
        "",
        f"The head_pose step used the mesh for {used['mesh']} faces and the landmarks for "
        f"{used['landmarks']}.",
        "",
        "### Time per face",
        "",
        f"Median milliseconds per face, one face at a time, {report['time_faces']} faces x "
        f"{report['repeats']} rounds.",
        "",
        "| Step | ms per face |",
        "|---|---:|",
    ]
    for key, text in TIME_TEXT.items():
        if key in report["time_ms"]:
            lines.append(f"| {text} | {num(report['time_ms'][key], 3)} |")
    lines += [
        "",
        "Read these as what they are: the mask sets are face crops, not camera frames, and the "
        "synthetic set's pasted masks are easy; AFLW2000 labels are fitted, not measured (a "
        "few degrees of noise). On a camera the faces are smaller: on TUD-Campus (faces of "
        "about 20 px, mostly in profile) YuNet finds about three in four searched heads, the "
        "mesh rejects most of them (the 5-landmark fallback carries head pose there) and few "
        "faces reach facemask's MinFaceSize, so most people's mask stays unknown.",
        END,
    ]
    return "\n".join(lines) + "\n"


def replace_section(text: str, section: str) -> str:
    """``text`` with the faces section replaced, or appended at the end when absent."""
    start, end = text.find(START), text.find(END)
    if start >= 0 and end > start:
        tail = text[end + len(END):]
        return text[:start] + section.rstrip("\n") + tail
    glue = "" if not text or text.endswith("\n\n") else ("\n" if text.endswith("\n") else "\n\n")
    return text + glue + section


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def settings_text(model: Any, keys: Sequence[str]) -> str:
    ini = model.to_ini()
    return ", ".join(f"{k} {ini[k]}" for k in keys)


def run(shared: Path, repeats: int, command: str) -> dict[str, Any]:
    models = load_models(shared)
    faces_dir = shared / "data" / "faces"
    report: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "settings": {
            "faces": settings_text(FACES, ["FaceDetector", "HeadPadding", "YunetInputSize",
                                           "YunetScore", "MaskScore"]),
            "facemask": settings_text(FACEMASK, ["CropScale", "MinScore", "MinFaceSize"]),
            "head_pose": settings_text(HEAD_POSE, ["MeshCropScale", "MinPresence",
                                                   "HorizontalFov"]),
            "threads": THREADS,
            "yunet_score": FACES.yunet_score,
            "cone": f"{HEAD_POSE.cone_yaw:g}",
        },
        "mask": {name: evaluate_masks(models, faces_dir / name) for name in MASK_SETS},
        "head_pose": evaluate_head_pose(models, faces_dir / AFLW),
        "repeats": repeats,
        "time_faces": 40,
        "time_ms": time_per_face(models, shared, repeats),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=shared_dir())
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    command = ".venv/bin/python benchmarks/faces_benchmark.py"
    if args.repeats != 3:
        command += f" --repeats {args.repeats}"
    report = run(args.shared.resolve(), args.repeats, command)
    RAW.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    section = render_section(report)
    write_atomic(DOC, replace_section(DOC.read_text() if DOC.exists() else "", section))
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
