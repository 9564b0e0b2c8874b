"""What Smart Social Distancing's configuration files say that Lookout reads differently.

Lookout keeps the reference system's INI keys (``libs/config/models.py``), but a few of its
keys, sections, device names and model names mean nothing here.  This module is the one table
of them: the loader (:mod:`libs.config.loader`) turns each into a warning instead of an error,
and ``lookout migrate-config`` (:mod:`libs.config.migrate`) rewrites a reference file with the
same entries.  A key that is in neither the models nor this table is still refused as
unknown, so a typo never becomes silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel


@dataclass(frozen=True)
class Ignored:
    """A reference key (or, with ``key`` None, a whole section) Lookout accepts and does not
    act on.  ``section`` is a fixed section's name as the reference writes it."""

    section: str
    key: str | None
    why: str
    """Why it is ignored and, where there is one, Lookout's equivalent."""
    moved_to: tuple[str, str] | None = None
    """``(section, key)`` that means the same in Lookout: migrate-config moves the value there."""

    @property
    def where(self) -> str:
        return f"[{self.section}]" + (f" {self.key}" if self.key else "")


REFERENCE_IGNORED: tuple[Ignored, ...] = (
    Ignored("API", "PorcessAreas",
            "the reference's misspelt, misplaced key; Lookout's is [App] ProcessAreas",
            moved_to=("App", "ProcessAreas")),
    Ignored("App", "Encoder",
            "Lookout encodes previews and video logs itself (OpenCV); no GStreamer pipeline "
            "is configured"),
    Ignored("App", "DashboardURL",
            "Lookout's dashboard is served by its own API (GET / of [API] Host:Port)"),
    Ignored("App", "DashboardAuthorizationToken",
            "the dashboard signs in with API users (lookout create-user), not a shared token"),
    Ignored("App", "EntityConfigDirectory",
            "cameras and areas are configured in this file ([Source_N], [Area_N])"),
    Ignored("CORE", None,
            "Lookout has no separate core process or frame queue: nothing reads Host, "
            "QueuePort or QueueAuthKey"),
)


def ignored_entry(section: str, key: str | None) -> Ignored | None:
    """The table's entry for ``[section] key`` (``key`` None: the section), else None."""
    for entry in REFERENCE_IGNORED:
        if entry.section.lower() == section.lower() and (
            entry.key == key if key is not None and entry.key is not None
            else entry.key is None and key is None
        ):
            return entry
    return None


# Devices of the reference that Lookout has no backend for.  The others (Jetson, EdgeTPU, x86,
# x86-gpu) are Lookout's own device names written in another case.
REFERENCE_DEVICES_WITHOUT_BACKEND: dict[str, str] = {
    "dummy": "the reference's test device, which detects nothing; Lookout has no such "
             "backend: use Device = x86",
}

# Model names of the reference's [Detector] Name.  None of them is a Lookout model family:
# Lookout runs its own family (DetectorConfig's default Name) instead, with that family's
# defaults for the keys that described the reference model.
REFERENCE_MODELS: frozenset[str] = frozenset({
    "mobilenet_ssd_v2",
    "pedestrian_ssd_mobilenet_v2",
    "pedestrian_ssdlite_mobilenet_v2",
    "posenet",
    "ssd_mobilenet_v2_coco",
    "ssd_mobilenet_v2_pedestrian_softbio",
    "openpifpaf",
    "openpifpaf_tensorrt",
    "yolov3",
    "openvino",
})
# Reference model names that also chose a runtime: on the device given, the reference ran the
# model with that runtime, which Lookout has as a device of its own.  migrate-config moves
# such a file to Lookout's device, so yolox_nano runs on the runtime the user chose.
REFERENCE_MODEL_RUNTIMES: dict[str, tuple[str, str]] = {
    # model name: (reference device, Lookout device)
    "openvino": ("x86", "openvino"),
    "openpifpaf_tensorrt": ("x86-gpu", "tensorrt"),
}
MODEL_KEYS = ("ImageSize", "ClassID", "ModelPath")
"""[Detector] keys that describe the reference model and do not fit Lookout's."""


def lookout_model_family() -> str:
    from libs.config.models import DetectorConfig

    return str(DetectorConfig.model_fields["name"].default)


def runtime_device(model: str, device: str) -> str | None:
    """Lookout's device for the reference's ``[Detector] Name = model`` on ``Device = device``
    (names in any case) when that pair chose a runtime Lookout has as a device, else None."""
    pair = REFERENCE_MODEL_RUNTIMES.get(model.strip().lower())
    if pair is None or pair[0] != device.strip().lower():
        return None
    return pair[1]


def is_reference_model(name: str) -> bool:
    return name.strip().lower() in REFERENCE_MODELS


def model_note(name: str, dropped: dict[str, str]) -> str:
    family = lookout_model_family()
    text = (f"{name!r} is a Smart Social Distancing model; Lookout runs its {family} model "
            "instead")
    shown = {k: v for k, v in dropped.items() if v}
    if shown:
        text += (" (" + ", ".join(f"{k} {v}" for k, v in shown.items())
                 + f" described {name} and are not used: {family}'s defaults apply)")
    return text


# [Classifier]: the reference's face-mask classifier (OFMClassifier) behind openpifpaf.  In
# Lookout masks come from two post-processing steps; a [Classifier] section turns them on.
CLASSIFIER_STEPS: tuple[str, ...] = ("faces", "facemask")
CLASSIFIER_NOTE = (
    "drives Lookout's face-mask steps faces + facemask (Lookout's own masked-face model; the "
    "OFMClassifier keys Device, Name, ModelPath, ImageSize, MinScore, MinImageSize are not used)"
)
CLASSIFIER_SHADOWED = (
    "not used: this file has its own [SourcePostProcessor_N] Name = facemask section, which "
    "configures masks (set its Enabled = True)"
)


def empty_means_default(model: type[BaseModel], key: str, value: Any) -> bool:
    """True when ``key = `` (empty) in a section of ``model`` means "not set": the key has a
    default that is not text (a number, a flag, a size), so an empty value can only mean it
    (``DeviceId =``, ``MinImageSize =`` in the reference's files).  Empty text keys keep their
    empty value."""
    if not isinstance(value, str) or value.strip():
        return False
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            if info.is_required():
                return False
            default = info.get_default(call_default_factory=True)
            return not isinstance(default, (str, list))
    return False


# Where the reference's Docker image mounts its data folder: its files write logs under it.
REFERENCE_DATA_ROOT = "/repo/data/"
OUTPUT_DIRECTORY_KEYS = frozenset({"LogDirectory", "ScreenshotsDirectory",
                                   "LogPerformanceMetricsDirectory"})
"""Keys naming a folder Lookout writes to, relative to DataDirectory."""
