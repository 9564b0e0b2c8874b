"""Secondary ONNX models (the face-mask and demographics models) on the detector's device.

:func:`open_onnx_model` is the one place that decides how such a model is opened: it asks the
backend of ``[Detector] Device`` (:meth:`libs.detectors.Detector.open_secondary`), so the models
of the ``faces``, ``facemask`` and ``demographics`` steps run where the person detector runs
whenever their runtime allows it (ONNX Runtime CUDA on ``x86-gpu``, ``tensorrt`` and
``jetson``; OpenVINO on ``openvino``), and on ONNX Runtime's CPU provider otherwise.
docs/devices.md has the table, checked against ``secondary_placement`` by
``tests/test_backends.py``.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig

log = logging.getLogger(__name__)


class OnnxModel(ABC):
    """An ONNX model loaded on some runtime: named inputs in, outputs in the model's order."""

    input_names: list[str]
    where: str
    """The runtime and device it runs on, for logs and tests (``"onnxruntime CPU"``)."""

    @abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The model's outputs for ``feeds`` (input name -> array)."""


class OrtModel(OnnxModel):
    """ONNX Runtime with ``providers`` (names or ``(name, options)``), best first."""

    def __init__(self, path: Path, threads: int, providers: Sequence[Any]) -> None:
        import onnxruntime as ort

        from libs.detectors.onnxruntime_backend import session_options

        self.session = ort.InferenceSession(
            str(path), session_options(threads), providers=list(providers)
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.where = "onnxruntime " + ",".join(self.session.get_providers())

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return list(self.session.run(None, dict(feeds)))


class OpenVinoModel(OnnxModel):
    """OpenVINO on one device (``CPU``, ``GPU``, ``NPU``, ``GPU.1``) with compile properties.

    A model the device cannot compile (an NPU and a dynamic batch dimension, say) runs on the
    CPU instead, with a warning: a secondary model is not worth refusing to start for.
    """

    def __init__(self, path: Path, device: str, properties: Mapping[str, str]) -> None:
        import openvino as ov

        core = ov.Core()
        try:
            self.compiled = core.compile_model(str(path), device, dict(properties))
        except RuntimeError as exc:
            if device == "CPU":
                raise
            log.warning("OpenVINO cannot compile %s on %s (%s); it runs on the CPU", path.name,
                        device, str(exc).splitlines()[0] if str(exc) else exc)
            cpu = {k: v for k, v in properties.items() if k != "INFERENCE_PRECISION_HINT"}
            cpu["INFERENCE_PRECISION_HINT"] = "f32"
            self.compiled = core.compile_model(str(path), "CPU", cpu)
            device = "CPU"
        self.request = self.compiled.create_infer_request()
        self.input_names = [p.any_name for p in self.compiled.inputs]
        self.where = f"openvino {device}"

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        result = self.request.infer(dict(feeds))
        # The request's buffers are reused by the next call: hand out copies.
        return [np.array(result[out]) for out in self.compiled.outputs]


def open_onnx_model(path: Path, threads: int, detector: DetectorConfig | None = None) -> OnnxModel:
    """A secondary ONNX model placed by ``[Detector]`` (None: ONNX Runtime on the CPU)."""
    from libs.detectors import DETECTORS, Detector

    if detector is None:
        return Detector.open_secondary(path, threads, _cpu_detector_config())
    return DETECTORS.get(detector.device).open_secondary(path, threads, detector)


def placement_key(detector: DetectorConfig | None) -> tuple[Any, ...]:
    """What decides a secondary model's placement (for process-wide model caches)."""
    if detector is None:
        return ("cpu",)
    return (detector.device, detector.device_id, detector.openvino_device,
            detector.openvino_precision)


def _cpu_detector_config() -> DetectorConfig:
    from libs.config.models import DetectorConfig

    return DetectorConfig()
