"""OpenVINO backend (``Device = openvino``), for Intel CPUs, integrated GPUs and NPUs.

Needs the ``openvino`` package (``pip install '.[openvino]'``).

* ``OpenvinoDevice``: ``CPU`` (default), ``GPU`` (``GPU.1`` for a second one), ``NPU``, or
  ``AUTO``, which picks the first present of NPU, GPU, CPU when the detector starts (and logs
  it).  A device this machine does not have is refused, naming the ones it has.
* ``OpenvinoPrecision``: ``f32`` by default, so detections match ONNX Runtime (on CPUs with
  bf16 support OpenVINO would otherwise pick bf16 and shift scores by up to 0.05); ``f16``,
  ``bf16``, or ``default`` for the device's own choice.

Secondary ONNX models (face mask, demographics) run through OpenVINO on the same device.

Several sessions (the thread budget's ``Sessions``, one per core on a CPU) share one compiled
model, each with its own infer request; on the CPU the model is compiled for that many streams
(``NUM_STREAMS``, throughput hint), which detects 128 frames a second on 2 cores here against
108 for one request with both cores, and 64 for two models of one thread each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import openvino as ov

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, ModelDetector
from libs.detectors.families import InputShape
from libs.detectors.secondary import OnnxModel, OpenVinoModel

log = logging.getLogger(__name__)

AUTO_ORDER = ("NPU", "GPU", "CPU")


def resolve_device(wanted: str, available: Sequence[str]) -> str:
    """The OpenVINO device name for ``OpenvinoDevice = wanted`` among ``available``
    (``Core().available_devices``); ValueError naming the key and what is present."""
    present = ", ".join(available) or "none"
    if wanted == "AUTO":
        for kind in AUTO_ORDER:
            for name in available:
                if name == kind or name.startswith(kind + "."):
                    return name
        raise ValueError(f"OpenvinoDevice AUTO: OpenVINO finds no NPU, GPU or CPU here "
                         f"(available: {present})")
    if wanted in available:
        return wanted
    if wanted == "GPU" and "GPU.0" in available:  # several GPUs: GPU is the first
        return "GPU.0"
    if wanted == "GPU.0" and "GPU" in available:  # one GPU: OpenVINO calls it GPU
        return "GPU"
    raise ValueError(
        f"OpenvinoDevice {wanted}: OpenVINO has no such device on this machine (available: "
        f"{present}); set OpenvinoDevice to one of those, or AUTO. A GPU or NPU needs its "
        "driver (docs/devices.md)"
    )


def compile_properties(config: DetectorConfig, device: str) -> dict[str, str]:
    """``compile_model`` properties for ``[Detector]`` on the resolved ``device``."""
    props: dict[str, str] = {}
    if config.openvino_precision != "default":
        props["INFERENCE_PRECISION_HINT"] = config.openvino_precision
    if device == "CPU" and config.sessions > 1:
        props["PERFORMANCE_HINT"] = "THROUGHPUT"
        props["NUM_STREAMS"] = str(config.sessions)
        if config.threads:
            props["INFERENCE_NUM_THREADS"] = str(config.sessions * config.threads)
    elif config.threads and device == "CPU":
        props["INFERENCE_NUM_THREADS"] = str(config.threads)
    return props


# Compiled models shared by the sessions of one detector (one infer request each).
_COMPILED: dict[tuple[str, str, tuple[tuple[str, str], ...]], ov.CompiledModel] = {}
_COMPILED_LOCK = threading.Lock()


def compiled_model(core: ov.Core, path: Path, device: str, props: dict[str, str]
                   ) -> ov.CompiledModel:
    key = (str(path), device, tuple(sorted(props.items())))
    with _COMPILED_LOCK:
        if key not in _COMPILED:
            _COMPILED[key] = core.compile_model(str(path), device, props)
        return _COMPILED[key]


def available_devices() -> list[str]:
    return list(ov.Core().available_devices)


@DETECTORS.register("openvino")
class OpenVinoDetector(ModelDetector):
    scales_by_sessions = True
    secondary_placement = "OpenVINO, the same OpenvinoDevice (CPU if that cannot compile it)"

    @classmethod
    def unavailable(cls, config: DetectorConfig) -> str | None:
        try:
            resolve_device(config.openvino_device, available_devices())
        except ValueError as exc:
            return f"Detector {exc}"
        return None

    def load(self) -> None:
        core = ov.Core()
        try:
            self.device = resolve_device(self.config.openvino_device, core.available_devices)
        except ValueError as exc:
            raise RuntimeError(f"Detector {exc}") from exc
        props = compile_properties(self.config, self.device)
        try:
            self.compiled = compiled_model(core, self.model_path, self.device, props)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(
                f"OpenVINO cannot compile {self.model_path.name} on {self.device} with "
                f"{props or 'no properties'}: {first}. Try Detector OpenvinoPrecision = default "
                "or another OpenvinoDevice"
            ) from exc
        if self.config.openvino_device != self.device:
            log.info("OpenvinoDevice %s runs on %s", self.config.openvino_device, self.device)
        self.request = self.compiled.create_infer_request()

    def input_shape(self) -> InputShape:
        shape = self.compiled.input(0).get_partial_shape()
        return [d.get_length() if d.is_static else None for d in shape]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        result = self.request.infer({0: tensor})
        return [np.asarray(result[out]) for out in self.compiled.outputs]

    @classmethod
    def open_secondary(cls, path: Path, threads: int, config: DetectorConfig) -> OnnxModel:
        device = resolve_device(config.openvino_device, available_devices())
        return OpenVinoModel(path, device, compile_properties(
            config.model_copy(update={"threads": threads}), device))
