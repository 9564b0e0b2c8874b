"""Model families: what turns an image into a model's input and its outputs into detections.

A family (``[Detector] Name``) is one module here registered with
``@MODEL_FAMILIES.register(name)``: a :class:`ModelFamily` subclass with its preprocessing,
its decoding and its default model file per format.  Backends (``libs/detectors/*_backend.py``)
only load a model and run a tensor through it, so a new family never means editing a backend,
and every backend gives the same typed :class:`~libs.frame.Detections` for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from libs.frame import Detections
from libs.registry import Registry

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig

# A model input's shape as the runtime reports it; None for a dynamic dimension.
InputShape = Sequence[int | None]


class ModelFamily(ABC):
    """Pre- and post-processing of one kind of detection model."""

    default_models: ClassVar[Mapping[str, str]] = {}
    """Default model file (relative to AssetsDirectory) per file format (``".onnx"``,
    ``".tflite"``); the first one is the family's default."""

    def __init__(self, input_shape: InputShape, config: DetectorConfig) -> None:
        """``input_shape`` is read from the loaded model; ``config`` is ``[Detector]``."""
        self.config = config

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Any]:
        """The model's input tensor for a BGR image, and what :meth:`decode` needs to map the
        outputs back to the image (a letterbox, a scale)."""

    @abstractmethod
    def decode(self, outputs: Sequence[np.ndarray], context: Any) -> Detections:
        """Detections in the image's pixels from the model's outputs (in the model's order)."""

    @classmethod
    def default_model(cls, model_format: str) -> str | None:
        """The default file of ``model_format``, or None when the family has none."""
        return cls.default_models.get(model_format)


MODEL_FAMILIES: Registry[type[ModelFamily]] = Registry("model family", __name__)


def default_models() -> dict[str, dict[str, str]]:
    """Every registered family's default files: ``{name: {format: path}}``."""
    return {name: dict(MODEL_FAMILIES.get(name).default_models) for name in MODEL_FAMILIES.names()}
