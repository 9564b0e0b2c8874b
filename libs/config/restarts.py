"""Which cameras a configuration change restarts, derived from the models' own markers.

Every field of :class:`~libs.config.models.LookoutConfig` (a section, or a list of sections)
carries one :class:`Restarts` marker in its type (``Annotated[AppConfig, Restarts.BY_KEY]``);
a section marked ``BY_KEY`` marks each of its own keys the same way.  A new section or key
is so classified where it is declared; ``tests/test_derived_restarts.py`` fails for an
unmarked one (and at run time an unmarked one restarts every camera, the safe side).

:func:`camera_restart_keys` turns a configuration into one comparable key per camera: a
camera restarts on a reload exactly when its key changed (:func:`changed_cameras`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo


class Restarts(enum.Enum):
    """What a change of a configuration field restarts (a marker in the field's type)."""

    EVERY_CAMERA = "every camera"
    """Every camera's pipeline reads it (detector, tracker, post-processors...)."""
    OWN_CAMERA = "own camera"
    """A list of camera sections (``[Source_N]``): a change restarts that camera only."""
    LISTED_CAMERAS = "listed cameras"
    """A list of camera ids: the cameras that join or leave the union of all such lists."""
    NO_CAMERA = "no camera"
    """Read outside the camera pipelines (the API, the supervisor's area loggers and
    periodic tasks) or not at all: no camera restarts."""
    BY_KEY = "by key"
    """A section whose keys carry their own markers."""


def marker(info: FieldInfo) -> Restarts | None:
    """The field's :class:`Restarts` marker; None when it has none."""
    found = [m for m in info.metadata if isinstance(m, Restarts)]
    return found[-1] if found else None


def _of(info: FieldInfo) -> Restarts:
    return marker(info) or Restarts.EVERY_CAMERA  # unmarked: the safe side


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _items(value: Any) -> list[BaseModel]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def classified_fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo]]:
    """Every field of ``model``, and of the section models of its ``BY_KEY`` fields, as
    ``("section.key", info)`` (``("section", info)`` for the sections themselves)."""
    for name, info in model.model_fields.items():
        yield name, info
        if marker(info) is Restarts.BY_KEY:
            for section in _section_models(info):
                for key, key_info in section.model_fields.items():
                    yield f"{name}.{key}", key_info


def _section_models(info: FieldInfo) -> list[type[BaseModel]]:
    """The model classes a (possibly list- or optional-typed) field holds."""
    found: list[type[BaseModel]] = []

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found.append(tp)
            return
        for arg in getattr(tp, "__args__", ()) or ():
            walk(arg)

    walk(info.annotation)
    return found


def camera_restart_keys(config: Any) -> dict[str, Any]:
    """One key per camera id of ``config`` (a ``LookoutConfig``): equal keys across two
    configurations mean the camera's pipeline needs no restart."""
    shared: list[Any] = []
    own: dict[str, Any] = {}
    lists: list[set[str]] = []
    for name, info in type(config).model_fields.items():
        how = _of(info)
        value = getattr(config, name)
        if how is Restarts.EVERY_CAMERA:
            if isinstance(value, list):  # sections that say they touch no camera drop out
                value = [v for v in value
                         if getattr(type(v), "RESTARTS", None) is not Restarts.NO_CAMERA]
            shared.append((name, _plain(value)))
        elif how is Restarts.OWN_CAMERA:
            for section in _items(value):
                own[section.id] = _plain(section)  # type: ignore[attr-defined]
        elif how is Restarts.LISTED_CAMERAS:
            lists.append(set(value or ()))
        elif how is Restarts.BY_KEY:
            sections = _items(value)
            keys: dict[str, Restarts] = {}
            for section in sections:
                for key, key_info in type(section).model_fields.items():
                    keys.setdefault(key, _of(key_info))
            for key, key_how in keys.items():
                values = [getattr(s, key, None) for s in sections]
                if key_how is Restarts.LISTED_CAMERAS:
                    lists.append({c for v in values for c in (v or ())})
                elif key_how is not Restarts.NO_CAMERA:
                    shared.append((name, key, _plain(values)))
    return {
        camera: (shared, own.get(camera), tuple(camera in ids for ids in lists))
        for camera in own
    }


def changed_cameras(old: Any, new: Any) -> set[str]:
    """Ids of the cameras in both configurations whose pipeline the change affects."""
    before, after = camera_restart_keys(old), camera_restart_keys(new)
    return {c for c in before.keys() & after.keys() if before[c] != after[c]}
