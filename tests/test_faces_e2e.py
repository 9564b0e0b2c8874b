"""TUD-Campus (people at head height) through the real pipeline with every face step on.

The configuration is config-x86.ini (AssetsDirectory absolute, the camera switched to
TUD-Campus) with **every registered post-processor enabled**: the shipped analytics, any
registered step the file lacks (with its defaults), ``faces``, ``facemask``, ``head_pose``,
``demographics`` and, last, ``anonymizer``.  The person detector's ``detect`` is wrapped with a
call counter (a measurement, the detector still runs): no analytic may run it again.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from libs.config import load_config
from libs.frame import Detections, Frame
from libs.metrics.reports import recompute_all, reports_dir
from libs.post_processors import POST_PROCESSORS
from libs.post_processors.faces import YUNET_MODEL, YuNet, head_regions
from processor.pipeline import CameraPipeline
from processor.sources import open_source
from tests.conftest import REPO
from tests.faces_helpers import config_text, section, without_face_steps

FRAMES = 71
CONTRACT: dict[str, tuple[Any, tuple[int, ...]]] = {
    "face_box": (np.float32, (4,)),
    "face_score": (np.float32, ()),
    "face_landmarks": (np.float32, (5, 2)),
    "face_fresh": (np.bool_, ()),
    "face_mask_prob": (np.float32, ()),
    "mask": (np.int8, ()),
    "head_yaw": (np.float32, ()),
    "head_pitch": (np.float32, ()),
    "looking": (np.bool_, ()),
    "looking_seconds": (np.float32, ()),
}
FACE_STEPS = ("faces", "facemask", "head_pose", "demographics", "anonymizer")


def steps() -> str:
    """Sections enabling every registered step: those config-x86.ini lacks, then the face
    steps in their order (the anonymizer last)."""
    shipped = set(re.findall(r"(?m)^Name = (\S+)\s*$", without_face_steps(
        (REPO / "config-x86.ini").read_text())))
    extra = [n for n in POST_PROCESSORS.names() if n not in shipped and n not in FACE_STEPS]
    names = [*extra, *FACE_STEPS]
    return "\n".join(section(k, name) for k, name in enumerate(names))


def all_steps_enabled(text: str) -> str:
    """``text`` with every ``[SourcePostProcessor_N]`` section enabled."""
    parts = re.split(r"(?m)^(?=\[)", text)
    return "".join(
        re.sub(r"(?m)^Enabled = .*$", "Enabled = True", p)
        if p.startswith("[SourcePostProcessor_") else p
        for p in parts
    )


@pytest.fixture(scope="module")
def tud_run(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("tud_faces")
    text = all_steps_enabled(config_text(shared, steps(), tud=True))
    path = folder / "config.ini"
    path.write_text(text)
    config = load_config(path)
    source_cfg = config.sources[0]
    pipeline = CameraPipeline(config, source_cfg)
    calls = {"detect": 0}
    detect = pipeline.detector.detect

    def counted(image: np.ndarray) -> Detections:
        calls["detect"] += 1
        return detect(image)

    pipeline.detector.detect = counted  # type: ignore[method-assign]
    yunet = YuNet.shared(shared / YUNET_MODEL, 0.6)
    source = open_source(config, source_cfg)
    frames: list[Frame] = []
    leaks = faces_before = 0
    try:
        while (sf := source.read()) is not None:
            original = sf.image.copy()
            frame = pipeline.process(Frame(source_cfg.id, sf.index, sf.timestamp, sf.image))
            heads = head_regions(frame.detections.boxes)
            faces_before += count_in(yunet.detect(original), heads)
            leaks += count_in(yunet.detect(frame.image), heads)
            frame.image = np.empty(0)  # keep memory small
            frames.append(frame)
    finally:
        source.close()
        pipeline.close()
    recompute_all(config)
    return {
        "stages": [name for name, _ in pipeline.before + pipeline.after],
        "config": config,
        "frames": frames,
        "calls": calls["detect"],
        "leaks": leaks,
        "faces_before": faces_before,
        "camera_dir": config.data_path("processor/static/data/sources") / source_cfg.id,
    }


def count_in(faces: np.ndarray, regions: np.ndarray) -> int:
    """Faces (YuNet rows) whose centre lies inside one of ``regions``."""
    if len(faces) == 0 or len(regions) == 0:
        return 0
    cx = faces[:, 0] + faces[:, 2] / 2
    cy = faces[:, 1] + faces[:, 3] / 2
    inside = ((cx[:, None] >= regions[None, :, 0]) & (cx[:, None] <= regions[None, :, 2])
              & (cy[:, None] >= regions[None, :, 1]) & (cy[:, None] <= regions[None, :, 3]))
    return int(np.count_nonzero(inside.any(axis=1)))


def test_person_detector_runs_exactly_once_per_frame(tud_run: dict[str, Any]) -> None:
    assert sorted(tud_run["stages"]) == POST_PROCESSORS.names()  # every analytic, once
    assert tud_run["stages"][-1] == "anonymizer"
    assert len(tud_run["frames"]) == FRAMES
    assert tud_run["calls"] == FRAMES


def test_attributes_follow_the_contract(tud_run: dict[str, Any]) -> None:
    people = 0
    for frame in tud_run["frames"]:
        dets = frame.detections
        n = len(dets)
        people += n
        for key, (dtype, shape) in CONTRACT.items():
            value = dets.attributes[key]
            assert value.dtype == dtype, key
            assert value.shape == (n, *shape), key
        assert set(dets.attributes["mask"].tolist()) <= {-1, 0, 1}
        no_face = ~np.isfinite(dets.attributes["face_box"]).all(axis=1)
        assert (dets.attributes["face_score"][no_face] == 0).all()
        assert np.isnan(dets.attributes["head_yaw"][no_face]).all()
        assert not dets.attributes["looking"][no_face].any()
    assert people > 250  # 4 to 6 people in view over 71 frames


def test_faces_and_poses_are_found_on_real_footage(tud_run: dict[str, Any]) -> None:
    frames = tud_run["frames"]
    searched = sum(int(f.detections.attributes["face_fresh"].sum()) for f in frames)
    found = sum(
        int((f.detections.attributes["face_fresh"]
             & np.isfinite(f.detections.attributes["face_box"][:, 0])).sum())
        for f in frames
    )
    assert searched > 50 and found >= 0.5 * searched
    yaw = np.concatenate([f.detections.attributes["head_yaw"] for f in frames])
    assert np.isfinite(yaw).mean() > 0.5
    # most people walk left to right, seen from the side: turned to the image's right, which
    # is the person's left (positive yaw)
    assert np.nanmedian(yaw) > 15
    mask = np.concatenate([f.detections.attributes["mask"] for f in frames])
    assert np.count_nonzero(mask == 1) <= 0.1 * max(int(np.count_nonzero(mask >= 0)), 1)
    seconds = np.concatenate([f.detections.attributes["looking_seconds"] for f in frames])
    assert (seconds >= 0).all() and seconds.max() <= FRAMES / 25 + 1e-3


def test_no_face_of_a_tracked_person_is_left_in_the_images(tud_run: dict[str, Any]) -> None:
    # YuNet over the whole frame (a check made here, not by the pipeline) finds faces in the
    # head regions of tracked people before the anonymizer and none after it (measured: 0 of
    # about 250; blurring faces only, BlurHeads = no_face, left 22).  2 % is allowed for a
    # blurred blob that YuNet takes for a face after some change upstream.
    assert tud_run["faces_before"] > 100
    assert tud_run["leaks"] <= tud_run["faces_before"] // 50


def test_samples_are_logged_and_reported(tud_run: dict[str, Any]) -> None:
    camera = tud_run["camera_dir"]
    for folder, kind, columns in (
        ("facemask_log", "facemask", ["WithMask", "WithoutMask", "NoFace"]),
        ("attention_log", "attention", ["People", "Looking"]),
    ):
        raws = sorted((camera / folder).glob("*.csv"))
        assert len(raws) == 1, folder
        with open(raws[0], newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and list(rows[0]) == ["Timestamp", *columns]
        daily = reports_dir(camera) / kind / "daily.csv"
        with open(daily, newline="") as fh:
            report = list(csv.DictReader(fh))
        assert len(report) == 1 and int(report[0]["Samples"]) == len(rows)
        for column in columns:
            assert int(report[0][f"Sum{column}"]) == sum(int(r[column]) for r in rows)


def test_screenshot_is_written_from_the_anonymized_frame(tud_run: dict[str, Any]) -> None:
    config = tud_run["config"]
    shots = sorted(config.data_path("processor/static/screenshots").rglob("*.jpg"))
    assert shots
    assert cv2.imread(str(shots[0])) is not None
