"""Person detectors, one module per backend, registered by the INI ``[Detector] Device``.

A backend subclasses :class:`ModelDetector`, is registered with ``@DETECTORS.register(name)`` and
does two things only: load a model file (:meth:`Detector.load`) and run a tensor through it
(:meth:`Detector.infer`).  The model family (``[Detector] Name``, :mod:`libs.detectors.families`)
does the rest: preprocessing, decoding, and the default model file of each format, so
:meth:`ModelDetector.detect` is written once, here.  A backend also says how the secondary
ONNX models (face mask, demographics) run on its device: :meth:`Detector.open_secondary`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from libs.detectors.families import MODEL_FAMILIES, InputShape, ModelFamily
from libs.frame import Detections
from libs.registry import Registry, UnknownPluginError

if TYPE_CHECKING:
    from libs.config.models import DetectorConfig, LookoutConfig, SourceConfig
    from libs.detectors.secondary import OnnxModel

DETECTORS: Registry[type[Detector]] = Registry("detector", __name__)


def model_format(device: str) -> str:
    """The model file format (``".onnx"``, ``".tflite"``) the backend ``device`` runs; ONNX
    for a device whose backend is unknown or cannot be imported here (it fails at start)."""
    try:
        cls = DETECTORS.get(device)
    except UnknownPluginError:
        return ".onnx"
    return cls.model_format if issubclass(cls, ModelDetector) else ".onnx"


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
    """The model file of [Detector] (or of one camera): ModelPath, else the family's default
    file in the format of the Device's backend."""
    det = detector_config_for(config, source)
    try:
        family = MODEL_FAMILIES.get(det.name)
    except UnknownPluginError as exc:
        raise ValueError(f"Name {det.name!r} is no model family; use one of: "
                         + ", ".join(MODEL_FAMILIES.names())) from exc
    if det.model_path:
        return config.asset_path(det.model_path)
    fmt = model_format(det.device)
    default = family.default_model(fmt)
    if default is None:
        raise ValueError(
            f"model family {det.name!r} has no default {fmt} file for Device {det.device!r}; "
            f"set ModelPath to a {fmt} model of that family"
        )
    return config.asset_path(default)


class Detector(ABC):
    """Finds people in a BGR image: the interface the pipeline sees."""

    secondary_placement: ClassVar[str] = "ONNX Runtime, CPU"
    """Where :meth:`open_secondary` runs a secondary ONNX model (docs/devices.md shows it)."""
    scales_by_sessions: ClassVar[bool] = False
    """True for a CPU backend that runs faster as one-thread sessions, one per core, than as
    one session with every core (the thread budget, :mod:`libs.detectors.budget`)."""

    def __init__(
        self, config: DetectorConfig, model_path: Path, data_dir: Path | None = None
    ) -> None:
        """``data_dir`` is where the backend may write (compiled-engine caches); None uses
        ``~/.cache/lookout``."""
        self.config = config
        self.model_path = model_path
        self.data_dir = data_dir if data_dir is not None else Path.home() / ".cache" / "lookout"

    @classmethod
    def unavailable(cls, config: DetectorConfig) -> str | None:
        """Why this backend cannot run on this install (its runtime, provider or device is
        missing), else None; ``lookout check-config`` and ``lookout run`` ask before any
        worker starts.  A check that needs the model loaded is left to the start."""
        return None

    @abstractmethod
    def detect(self, image: np.ndarray) -> Detections:
        """Boxes in the image's pixel coordinates, scores, and the configured class only."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the backend's resources."""

    @classmethod
    def open_secondary(cls, path: Path, threads: int, config: DetectorConfig) -> OnnxModel:
        """A secondary ONNX model (face mask, demographics) on this backend's device."""
        from libs.detectors.secondary import OrtModel

        return OrtModel(path, threads, ("CPUExecutionProvider",))


class ModelDetector(Detector):
    """A backend running a model file: the family's preprocessing, the backend's inference
    (:meth:`load`, :meth:`infer`), the family's decoding.  Every registered backend is one."""

    model_format: ClassVar[str] = ".onnx"
    """The model file format this backend runs; picks the family's default file."""

    def __init__(
        self, config: DetectorConfig, model_path: Path, data_dir: Path | None = None
    ) -> None:
        super().__init__(config, model_path, data_dir)
        family_class = MODEL_FAMILIES.get(config.name)  # an unknown Name fails before loading
        self.load()
        self.family: ModelFamily = family_class(self.input_shape(), config)

    @abstractmethod
    def load(self) -> None:
        """Load ``self.model_path`` onto the device."""

    @abstractmethod
    def input_shape(self) -> InputShape:
        """The loaded model's first input shape (None for a dynamic dimension)."""

    @abstractmethod
    def infer(self, tensor: np.ndarray) -> Sequence[np.ndarray]:
        """The model's outputs, in the model's order, for one input tensor."""

    def detect(self, image: np.ndarray) -> Detections:
        tensor, context = self.family.preprocess(image)
        return self.family.decode(self.infer(tensor), context)


def device_unavailable(config: LookoutConfig) -> str | None:
    """Why ``[Detector] Device`` cannot run on this install, else None."""
    det = config.detector
    try:
        cls = DETECTORS.get(det.device)
    except UnknownPluginError as exc:
        return str(exc)
    return cls.unavailable(det)


def create_detector(config: LookoutConfig, source: SourceConfig | None = None,
                    threads: int | None = None, sessions: int | None = None) -> Detector:
    """The detector of ``[Detector]``, or of one camera with its /ml_model choice applied;
    ``threads`` and ``sessions`` replace ``Threads`` and ``Sessions`` (the thread budget's
    choice: the detector is one of ``sessions``, each with ``threads``)."""
    det = detector_config_for(config, source)
    if threads is not None:
        det = det.model_copy(update={"threads": threads})
    if sessions is not None:
        det = det.model_copy(update={"sessions": sessions})
    cls = DETECTORS.get(det.device)
    return cls(det, resolve_model_path(config, source), config.data_dir)
