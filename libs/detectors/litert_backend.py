"""LiteRT (TFLite) backends: ``edgetpu`` (Coral, through the EdgeTPU delegate) and
``tflite`` (the same interpreter on the CPU, for Arm boards without an accelerator).

Needs ``ai-edge-litert`` (``pip install '.[edgetpu]'``); the Coral image adds Coral's
``libedgetpu`` runtime.  The model is the family's ``.tflite`` file
(``models/person_yolox_nano_416_fp16.tflite`` for ``yolox_nano``).  The TPU only runs a model
compiled for it by ``edgetpu_compiler`` (``*_edgetpu.tflite``, made from a full-integer int8
model); with any other model the delegate takes no operation and the CPU does all the work (a
warning says so).  An integer model's input is quantized and its outputs dequantized here with
the model's own scales, so the family's pre- and post-processing stay in float.

``DeviceId`` = N selects the N-th Edge TPU libedgetpu enumerates (its ``device`` option
``":N"``), for a board with several accelerators (USB and PCIe alike).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, ModelDetector
from libs.detectors.families import InputShape

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"


@DETECTORS.register("tflite")
class LiteRtDetector(ModelDetector):
    model_format = ".tflite"
    scales_by_sessions = True

    def _delegates(self) -> list[Any]:
        return []

    def load(self) -> None:
        if self.model_path.suffix != ".tflite":
            raise ValueError(
                f"Detector Device {type(self).__name__} needs a .tflite ModelPath, got "
                f"{self.model_path.name}"
            )
        self.interpreter = Interpreter(
            model_path=str(self.model_path),
            experimental_delegates=self._delegates(),
            num_threads=self.config.threads or None,
        )
        self.interpreter.allocate_tensors()
        self.input_detail = self.interpreter.get_input_details()[0]
        self.output_details = self.interpreter.get_output_details()

    def input_shape(self) -> InputShape:
        shape = self.interpreter.get_input_details()[0]["shape_signature"]
        return [int(d) if d > 0 else None for d in shape]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input_detail["index"], quantize(tensor, self.input_detail))
        self.interpreter.invoke()
        return [dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.output_details]


def quantize(tensor: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """``tensor`` in the model input's type: as is for a float input, else mapped with the
    input's ``(scale, zero_point)`` (a full-integer model, as ``edgetpu_compiler`` needs)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return tensor.astype(dtype, copy=False)
    scale, zero = detail["quantization"]
    if not scale:
        raise ValueError(f"model input {detail.get('name')!r} is {dtype} without quantization "
                         "parameters")
    info = np.iinfo(dtype)
    return np.clip(np.round(tensor / scale + zero), info.min, info.max).astype(dtype)


def dequantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A model output as float32 values: integer outputs through their ``(scale,
    zero_point)``, float outputs unchanged."""
    if array.dtype.kind == "f":
        return array
    scale, zero = detail["quantization"]
    if not scale:
        return array.astype(np.float32)
    return (array.astype(np.float32) - np.float32(zero)) * np.float32(scale)


def edgetpu_options(config: DetectorConfig) -> dict[str, str]:
    """libedgetpu delegate options: ``DeviceId`` N is the N-th Edge TPU it enumerates."""
    return {"device": f":{config.device_id}"}


@DETECTORS.register("edgetpu")
class EdgeTpuDetector(LiteRtDetector):
    scales_by_sessions = False  # one Edge TPU per DeviceId: one interpreter on it

    @classmethod
    def _load_delegate(cls, config: DetectorConfig) -> Any:
        options = edgetpu_options(config)
        try:
            return load_delegate(EDGETPU_LIBRARY, options)
        except (ValueError, OSError) as exc:
            raise RuntimeError(
                f"cannot load the EdgeTPU runtime {EDGETPU_LIBRARY} with device "
                f"{options['device']!r} (DeviceId {config.device_id}): {exc}. Is a Coral "
                "device attached and Coral's libedgetpu installed (docs/devices.md)? Use "
                "Device = tflite to run the same model on the CPU"
            ) from exc

    @classmethod
    def unavailable(cls, config: DetectorConfig) -> str | None:
        try:
            # The library first: LiteRT's delegate prints a traceback when it is missing.
            ctypes.CDLL(EDGETPU_LIBRARY)
        except OSError as exc:
            return (f"Detector Device 'edgetpu' needs Coral's EdgeTPU runtime {EDGETPU_LIBRARY}, "
                    f"which this install does not have ({exc}); install libedgetpu "
                    "(docs/devices.md, or the coral-dev-board image), or use Device = tflite "
                    "to run the same model on the CPU")
        try:
            cls._load_delegate(config)  # released again when it goes out of scope
        except RuntimeError as exc:
            return str(exc)
        return None

    def _delegates(self) -> list[Any]:
        delegate = self._load_delegate(self.config)
        if not self.model_path.stem.endswith("_edgetpu"):
            log.warning("%s is not compiled for the Edge TPU (edgetpu_compiler makes "
                        "*_edgetpu.tflite): it runs on the CPU", self.model_path.name)
        return [delegate]
