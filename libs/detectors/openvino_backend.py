"""OpenVINO backend (``Device = openvino``), for Intel CPUs, GPUs and NPUs.

Needs the ``openvino`` package (``pip install '.[openvino]'``).  Runs in f32 by default:
on CPUs with bf16 support OpenVINO would otherwise pick bf16 and shift scores by up to 0.05.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, Detector
from libs.detectors.yolox import YoloxCodec
from libs.frame import Detections


@DETECTORS.register("openvino")
class OpenVinoDetector(Detector):
    def __init__(self, config: DetectorConfig, model_path: Path) -> None:
        super().__init__(config, model_path)
        core = ov.Core()
        props: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32"}
        if config.threads:
            props["INFERENCE_NUM_THREADS"] = str(config.threads)
        self.compiled = core.compile_model(str(model_path), "CPU", props)
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.input(0).get_shape()
        self.codec = YoloxCodec(int(shape[3]), int(shape[2]))

    def detect(self, image: np.ndarray) -> Detections:
        tensor, letterbox = self.codec.preprocess(image)
        output = self.request.infer({0: tensor})[self.compiled.output(0)]
        c = self.config
        return self.codec.postprocess(
            np.asarray(output), letterbox, c.class_id, c.min_score, c.nms_threshold
        )
