"""ONNX Runtime backends.

* ``x86``: the CPU execution provider.
* ``x86-gpu``: CUDA.
* ``tensorrt`` and ``jetson``: TensorRT through ONNX Runtime's TensorRT execution provider
  (engines are built on first start and cached next to the model), CUDA for what TensorRT
  cannot run.

GPU backends need the ``onnxruntime-gpu`` wheel (``pip install .[gpu]``; on a Jetson, NVIDIA's
build).  When the GPU provider is missing they refuse to start rather than silently running
ten times slower on the CPU.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, Detector
from libs.detectors.yolox import YoloxCodec
from libs.frame import Detections

log = logging.getLogger(__name__)


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads steal the cores that video decoding and the other stages need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


class OnnxRuntimeDetector(Detector):
    device_name = "x86"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def provider_list(self) -> list[str | tuple[str, dict[str, str]]]:
        """Execution providers with their options, best first."""
        return list(self.providers)

    def __init__(self, config: DetectorConfig, model_path: Path) -> None:
        super().__init__(config, model_path)
        available = ort.get_available_providers()
        if self.providers[0] not in available:
            raise RuntimeError(
                f"Detector Device {self.device_name!r} needs {self.providers[0]}, which this "
                f"onnxruntime build does not have (it has {', '.join(available)}); install the "
                "GPU build (pip install '.[gpu]') on a machine with an NVIDIA GPU, or use "
                "Device = x86"
            )
        self.session = ort.InferenceSession(
            str(model_path), session_options(config.threads), providers=self.provider_list()
        )
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        width, height = config.image_size
        if isinstance(shape[2], int) and isinstance(shape[3], int):
            if (shape[3], shape[2]) != (width, height):
                log.warning(
                    "model input is %sx%s; ImageSize %sx%s ignored", shape[3], shape[2], width,
                    height,
                )
            width, height = shape[3], shape[2]
        self.codec = YoloxCodec(width, height)

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.session.run(None, {self.input_name: tensor})[0]
        return out

    def detect(self, image: np.ndarray) -> Detections:
        tensor, letterbox = self.codec.preprocess(image)
        output = self.infer(tensor)
        c = self.config
        return self.codec.postprocess(output, letterbox, c.class_id, c.min_score, c.nms_threshold)


@DETECTORS.register("x86")
class CpuDetector(OnnxRuntimeDetector):
    device_name = "x86"
    providers = ("CPUExecutionProvider",)


@DETECTORS.register("x86-gpu")
class CudaDetector(OnnxRuntimeDetector):
    device_name = "x86-gpu"
    providers = ("CUDAExecutionProvider", "CPUExecutionProvider")

    def provider_list(self) -> list[str | tuple[str, dict[str, str]]]:
        return [
            ("CUDAExecutionProvider", {"device_id": str(self.config.device_id)}),
            "CPUExecutionProvider",
        ]


@DETECTORS.register("tensorrt")
class TensorRTDetector(OnnxRuntimeDetector):
    device_name = "tensorrt"
    providers = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

    def provider_list(self) -> list[str | tuple[str, dict[str, str]]]:
        cache = self.model_path.parent / f"{self.model_path.stem}.trt-cache"
        return [
            (
                "TensorrtExecutionProvider",
                {
                    "device_id": str(self.config.device_id),
                    "trt_fp16_enable": "True" if self.config.tensorrt_precision == 16 else "False",
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache),
                },
            ),
            ("CUDAExecutionProvider", {"device_id": str(self.config.device_id)}),
            "CPUExecutionProvider",
        ]


@DETECTORS.register("jetson")
class JetsonDetector(TensorRTDetector):
    device_name = "jetson"
