"""The detector registry, the YOLOX codec, and measured accuracy on PETS09-S2L1.

Backends' device handling (GPU refusal, TensorRT options, OpenVINO, EdgeTPU) is in
tests/test_backends.py."""

from __future__ import annotations

import numpy as np
import pytest

from libs.config import parse_config_text
from libs.detectors import DETECTORS, create_detector
from libs.detectors.families.yolox import PAD_VALUE, YoloxCodec
from libs.registry import UnknownPluginError


def test_registry_reports_unknown_and_unavailable_backends() -> None:
    assert {"x86", "x86-gpu", "tensorrt", "jetson"} <= set(DETECTORS.names())
    with pytest.raises(UnknownPluginError) as info:
        DETECTORS.get("quantum")
    text = str(info.value)
    assert "unknown detector 'quantum'" in text and "x86" in text
    # Optional backends whose library is missing are listed with their import error.
    for module, missing in DETECTORS.unavailable().items():
        assert module in text and missing.split(":")[0] in text


def test_preprocess_letterbox_top_left_bgr() -> None:
    codec = YoloxCodec(416, 416)
    image = np.zeros((200, 832, 3), np.uint8)
    image[..., 0] = 10  # blue
    image[..., 2] = 200  # red
    tensor, lb = codec.preprocess(image)
    assert tensor.shape == (1, 3, 416, 416) and tensor.dtype == np.float32
    assert lb.scale == pytest.approx(0.5)
    # BGR order, raw values, image at the top-left, 114 below it.
    assert tensor[0, 0, 0, 0] == 10 and tensor[0, 2, 0, 0] == 200
    assert tensor[0, :, 99, 415].tolist() == [10, 0, 200]
    assert (tensor[0, :, 100:, :] == PAD_VALUE).all()


def test_postprocess_decodes_grid_cells_and_maps_back() -> None:
    codec = YoloxCodec(416, 416)
    out = np.zeros((1, codec.rows, 85), np.float32)
    # Stride 8 grid is 52x52 and comes first; cell (gx=10, gy=5) is row 5*52+10.
    row = 5 * 52 + 10
    out[0, row, :4] = [0.5, 0.5, np.log(4.0), np.log(8.0)]  # centre (84, 44), size 32x64
    out[0, row, 4] = 0.9
    out[0, row, 5] = 0.8  # person
    # A stride 32 cell (13x13 grid, after 52*52 + 26*26 rows) holding a car only.
    row32 = 52 * 52 + 26 * 26 + 3
    out[0, row32, 4] = 0.99
    out[0, row32, 5 + 2] = 0.99
    _, lb = codec.preprocess(np.zeros((208, 208, 3), np.uint8))  # scale 2
    dets = codec.postprocess(out, lb, class_id=0, min_score=0.35, nms_threshold=0.45)
    assert len(dets) == 1
    assert dets.scores[0] == pytest.approx(0.72)
    np.testing.assert_allclose(dets.boxes[0], [34, 6, 50, 38], atol=1e-4)


def test_postprocess_rejects_wrong_model_layout() -> None:
    codec = YoloxCodec(416, 416)
    _, lb = codec.preprocess(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="3549"):
        codec.postprocess(np.zeros((1, 100, 85), np.float32), lb, 0, 0.3, 0.45)


def test_detector_on_a_real_frame(x86_config, pets_frames) -> None:
    cfg = parse_config_text(x86_config.read_text(), x86_config)
    det = create_detector(cfg)
    dets = det.detect(pets_frames[0])
    assert 2 <= len(dets) <= 8
    assert (dets.scores >= cfg.detector.min_score).all()
    assert (dets.boxes[:, 2] <= 768).all() and (dets.boxes[:, 3] <= 576).all()


def test_per_camera_model_choice(x86_config, shared) -> None:
    from libs.config import load_config
    from libs.detectors import detector_config_for, resolve_model_path

    text = x86_config.read_text().replace(
        "LiveFeedEnabled = True", "LiveFeedEnabled = True\nDetectorMinScore = 0.5\n"
        "DetectorModelPath = models/person_yolox_nano_416_fp16.tflite", 1)
    x86_config.write_text(text)
    cfg = load_config(x86_config)
    cam = cfg.sources[0]
    det = detector_config_for(cfg, cam)
    assert det.min_score == 0.5 and cfg.detector.min_score == 0.1
    assert resolve_model_path(cfg, cam).name == "person_yolox_nano_416_fp16.tflite"
    assert resolve_model_path(cfg).name == "person_yolox_nano_416.onnx"
    x86_config.write_text(text.replace("_fp16.tflite", "_missing.onnx"))
    from libs.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load_config(x86_config)
    (problem,) = info.value.problems
    assert (problem.section, problem.key) == ("Source_0", "DetectorModelPath")
