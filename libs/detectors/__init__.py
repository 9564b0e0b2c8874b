"""Person detectors, one module per backend, registered by the INI ``[Detector] Device``.

A backend subclasses :class:`Detector` and is registered with ``@DETECTORS.register(name)``.
The model family (``[Detector] Name``) decides pre- and post-processing, shared by every
backend (see :mod:`libs.detectors.yolox`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from libs.frame import Detections
from libs.registry import Registry

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig, LookoutConfig, SourceConfig

DETECTORS: Registry[type[Detector]] = Registry("detector", __name__)

# Default model file of each model family, relative to the assets directory.
DEFAULT_MODELS: dict[str, str] = {
    "yolox_nano": "models/person_yolox_nano_416.onnx",
}


def detector_config_for(config: LookoutConfig, source: SourceConfig | None) -> DetectorConfig:
    """[Detector] with the camera's per-camera model choice applied."""
    overrides = source.detector_overrides() if source is not None else {}
    if not overrides:
        return config.detector
    det = config.detector.model_copy(update=overrides)
    if "name" in overrides and "model_path" not in overrides:
        det = det.model_copy(update={"model_path": ""})  # the new family's default file
    return det


def resolve_model_path(config: LookoutConfig, source: SourceConfig | None = None) -> Path:
    det = detector_config_for(config, source)
    if det.model_path:
        return config.asset_path(det.model_path)
    if det.name not in DEFAULT_MODELS:
        raise ValueError(
            f"no default model file for {det.name!r}; set ModelPath or use one of: "
            + ", ".join(sorted(DEFAULT_MODELS))
        )
    return config.asset_path(DEFAULT_MODELS[det.name])


class Detector(ABC):
    """Finds people in a BGR image."""

    def __init__(self, config: DetectorConfig, model_path: Path) -> None:
        self.config = config
        self.model_path = model_path

    @abstractmethod
    def detect(self, image: np.ndarray) -> Detections:
        """Boxes in the image's pixel coordinates, scores, and the configured class only."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the backend's resources."""


def create_detector(config: LookoutConfig, source: SourceConfig | None = None) -> Detector:
    """The detector of ``[Detector]``, or of one camera with its /ml_model choice applied."""
    det = detector_config_for(config, source)
    cls = DETECTORS.get(det.device)
    return cls(det, resolve_model_path(config, source))
