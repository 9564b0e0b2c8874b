"""The ``yolox_nano`` family: YOLOX pre- and post-processing, shared by every backend.

As described in the model card: BGR, raw 0-255 values, letterbox pasted at the top-left and
filled with 114, NCHW float32.  The output rows are grid cells of strides 8, 16 and 32 in
row-major order; columns ``tx, ty, tw, th, obj, cls0..cls79`` with sigmoids already applied.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from libs.detectors.families import MODEL_FAMILIES, InputShape, ModelFamily
from libs.frame import Detections
from libs.geometry import nms

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
PAD_VALUE = 114


@dataclass
class Letterbox:
    scale: float
    width: int
    height: int


class YoloxCodec:
    """Turns images into model input and model output into :class:`Detections`."""

    def __init__(self, input_width: int, input_height: int) -> None:
        self.input_width = input_width
        self.input_height = input_height
        grids = []
        strides = []
        for stride in STRIDES:
            gw, gh = input_width // stride, input_height // stride
            gy, gx = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            grids.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
            strides.append(np.full(gw * gh, stride))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(strides).astype(np.float32)[:, None]
        self._canvas = np.full((input_height, input_width, 3), PAD_VALUE, np.uint8)

    @property
    def rows(self) -> int:
        return len(self.grid)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """``(1, 3, H, W)`` float32 tensor and the letterbox to map boxes back."""
        h, w = image.shape[:2]
        r = min(self.input_height / h, self.input_width / w)
        nw, nh = max(1, round(w * r)), max(1, round(h * r))
        canvas = self._canvas
        canvas[...] = PAD_VALUE
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        tensor = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        return tensor, Letterbox(r, w, h)

    def postprocess(
        self,
        output: np.ndarray,
        letterbox: Letterbox,
        class_id: int,
        min_score: float,
        nms_threshold: float,
    ) -> Detections:
        rows = output.reshape(-1, output.shape[-1])
        if len(rows) != self.rows:
            raise ValueError(
                f"model gave {len(rows)} rows; a YOLOX model of input "
                f"{self.input_width}x{self.input_height} gives {self.rows}"
            )
        scores = rows[:, 4] * rows[:, 5 + class_id]
        keep = scores >= min_score
        if not keep.any():
            return Detections()
        sel = rows[keep]
        scores = scores[keep]
        stride = self.stride[keep]
        centre = (sel[:, 0:2] + self.grid[keep]) * stride
        size = np.exp(sel[:, 2:4]) * stride
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / letterbox.scale
        np.clip(boxes[:, 0::2], 0, letterbox.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, letterbox.height, out=boxes[:, 1::2])
        idx = nms(boxes, scores, nms_threshold)
        return Detections(
            boxes=boxes[idx],
            scores=scores[idx],
            classes=np.full(len(idx), class_id, np.int32),
        )


@MODEL_FAMILIES.register("yolox_nano")
class YoloxFamily(ModelFamily):
    """YOLOX-Nano (COCO-80): NCHW input ``(1, 3, H, W)``, one output ``(1, rows, 85)``."""

    default_models = {
        ".onnx": "models/person_yolox_nano_416.onnx",
        ".tflite": "models/person_yolox_nano_416_fp16.tflite",
    }

    def __init__(self, input_shape: InputShape, config: DetectorConfig) -> None:
        super().__init__(input_shape, config)
        if len(input_shape) != 4 or input_shape[1] not in (3, None):
            raise ValueError(
                f"Detector Name {config.name!r} needs an NCHW model input (1, 3, H, W); the "
                f"model's input is {list(input_shape)}"
            )
        width, height = config.image_size
        model_h, model_w = input_shape[2], input_shape[3]
        if isinstance(model_h, int) and isinstance(model_w, int) and model_h > 0 and model_w > 0:
            if (model_w, model_h) != (width, height):
                log.warning("model input is %sx%s; ImageSize %sx%s ignored", model_w, model_h,
                            width, height)
            width, height = model_w, model_h
        self.codec = YoloxCodec(width, height)

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        return self.codec.preprocess(image)

    def decode(self, outputs: Sequence[np.ndarray], context: Any) -> Detections:
        c = self.config
        return self.codec.postprocess(
            np.asarray(outputs[0]), context, c.class_id, c.min_score, c.nms_threshold
        )
