"""Acceptance: ONNX Runtime, OpenVINO and LiteRT give the same detections on the PETS clip.

Every fifth frame of vtest.avi (159 frames spread over the whole clip), the shipped
configuration's [Detector] (MinScore 0.1, so the low-score boxes the tracker uses are compared
too).  Per frame, boxes are paired by the Hungarian method on IoU; a pair counts as matched at
IoU >= 0.9.  Each backend must give the reference's count within one, leave at most one box
of a frame without a match on either side, and match at least 98 % of all boxes.  OpenVINO
runs in f32 like ONNX Runtime, so its boxes agree far more closely than the fp16 LiteRT file's.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from libs.config import load_config
from libs.detectors import create_detector
from libs.frame import Detections
from libs.geometry import iou_matrix
from tests.test_backends import config_with

EVERY = 5
MATCH_IOU = 0.9


@pytest.fixture(scope="module")
def clip_frames(shared: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(shared / "data" / "pets09_s2l1" / "vtest.avi"))
    frames = []
    index = 0
    while True:
        if index % EVERY == 0:
            ok, image = cap.read()
            if not ok:
                break
            frames.append(image)
        elif not cap.grab():
            break
        index += 1
    cap.release()
    return frames


def matched_ious(a: Detections, b: Detections) -> np.ndarray:
    """IoU of the Hungarian pairs of ``a`` and ``b`` (one frame)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0)
    iou = iou_matrix(a.boxes, b.boxes)
    rows, cols = linear_sum_assignment(-iou)
    return np.asarray(iou[rows, cols])


def test_onnxruntime_openvino_and_litert_agree_on_pets(
    x86_config: Path, clip_frames: list[np.ndarray]
) -> None:
    assert len(clip_frames) == 159
    results: dict[str, list[Detections]] = {}
    for device, model in (("x86", "models/person_yolox_nano_416.onnx"),
                          ("openvino", "models/person_yolox_nano_416.onnx"),
                          ("tflite", "models/person_yolox_nano_416_fp16.tflite")):
        cfg = load_config(config_with(x86_config, Device=device, ModelPath=model))
        assert cfg.detector.min_score == 0.1
        detector = create_detector(cfg)
        results[device] = [detector.detect(image) for image in clip_frames]
    reference = results["x86"]
    total = sum(len(d) for d in reference)
    assert total > 1200  # about eight people a frame: the comparison means something
    summary = {}
    for device in ("openvino", "tflite"):
        matched = 0
        all_ious = []
        for k, (ref, got) in enumerate(zip(reference, results[device], strict=True)):
            ious = matched_ious(ref, got)
            good = int((ious >= MATCH_IOU).sum())
            assert abs(len(got) - len(ref)) <= 1, (device, k * EVERY, len(ref), len(got))
            assert max(len(ref), len(got)) - good <= 1, (device, k * EVERY, ious)
            matched += good
            all_ious.extend(ious[ious >= MATCH_IOU])
        summary[device] = (matched / total, float(np.median(all_ious)))
        assert matched / total >= 0.98, (device, summary[device])
    # f32 OpenVINO against f32 ONNX Runtime: the same boxes to a few parts in a million.
    assert summary["openvino"][0] == 1.0 and summary["openvino"][1] > 0.9999
    assert summary["tflite"][1] > 0.99
