"""LiteRT (TFLite) backends: ``edgetpu`` (Coral, through the EdgeTPU delegate) and
``tflite`` (the same interpreter on the CPU, for Arm boards without an accelerator).

Needs ``ai-edge-litert`` (``pip install '.[edgetpu]'``); the Coral image adds Coral's
``libedgetpu`` runtime.  The model must be a ``.tflite`` file with the YOLOX layout
(``ModelPath = models/person_yolox_nano_416_fp16.tflite``); an EdgeTPU-compiled model
(``*_edgetpu.tflite``) is needed for the TPU to do the work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, load_delegate

from libs.config.models import DetectorConfig
from libs.detectors import DETECTORS, Detector
from libs.detectors.yolox import YoloxCodec
from libs.frame import Detections

EDGETPU_LIBRARY = "libedgetpu.so.1"


@DETECTORS.register("tflite")
class LiteRtDetector(Detector):
    use_edgetpu = False

    def _delegates(self) -> list[Any]:
        return []

    def __init__(self, config: DetectorConfig, model_path: Path) -> None:
        super().__init__(config, model_path)
        if model_path.suffix != ".tflite":
            raise ValueError(
                f"Detector Device {type(self).__name__} needs a .tflite ModelPath, got "
                f"{model_path.name}"
            )
        self.interpreter = Interpreter(
            model_path=str(model_path),
            experimental_delegates=self._delegates(),
            num_threads=config.threads or None,
        )
        self.interpreter.allocate_tensors()
        inp = self.interpreter.get_input_details()[0]
        self.input_index = inp["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        shape = inp["shape"]  # NCHW for this model
        self.codec = YoloxCodec(int(shape[3]), int(shape[2]))

    def detect(self, image: np.ndarray) -> Detections:
        tensor, letterbox = self.codec.preprocess(image)
        self.interpreter.set_tensor(self.input_index, tensor)
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output_index)
        c = self.config
        return self.codec.postprocess(output, letterbox, c.class_id, c.min_score, c.nms_threshold)


@DETECTORS.register("edgetpu")
class EdgeTpuDetector(LiteRtDetector):
    def _delegates(self) -> list[Any]:
        options = {"device": f":{self.config.device_id}"} if self.config.device_id else {}
        try:
            return [load_delegate(EDGETPU_LIBRARY, options)]
        except (ValueError, OSError) as exc:
            raise RuntimeError(
                f"cannot load the EdgeTPU runtime {EDGETPU_LIBRARY} ({exc}); is a Coral device "
                "attached and Coral's libedgetpu installed? Use Device = tflite to run the same "
                "model on the CPU"
            ) from exc
