"""Plumbing shared by the configuration, camera and area sub-APIs, and their registration.

* Ids from URLs are validated by the path parameter types (:data:`CameraId`, :data:`AreaId`,
  :data:`PartName`) before a handler runs, so no request value reaches the file system or the
  INI file unchecked.
* :func:`edit` is a read-check-write transaction on the INI file: under the writer's file lock
  it reads the current text, lets a function decide the changes from what is really there
  (so "create if the id is free" or "update the section whose Id is x" cannot race with
  another writer), validates the result with the start-up models (video files included) and
  replaces the file atomically, keeping comments.  Then the processor reloads only what
  changed.
* Body values become INI strings through :func:`validate_fields`, which validates them with
  the section's model and names the INI key in every error (422, never 500).

``include_routers(app)`` registers the sub-APIs.
"""

from __future__ import annotations

import configparser
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ValidationError

from libs.config import ConfigChange, ConfigError
from libs.config.errors import ConfigProblem
from libs.config.io import ConfigBusy, read_settled
from libs.config.loader import parse_config_text
from libs.config.models import ID_PATTERN, LookoutConfig, ini_value
from libs.config.secrets import is_secret_key, mask_secrets, unmask_values
from libs.config.writer import apply_changes, rewrite

if TYPE_CHECKING:
    from fastapi import FastAPI

    from api.context import ApiContext

T = TypeVar("T")

ID_REGEX = ID_PATTERN.pattern
ID_FORM = "1-64 letters, digits, '-' or '_', starting with a letter or digit"

CameraId = Annotated[
    str, PathParam(pattern=ID_REGEX, description=f"Camera Id: {ID_FORM}.", examples=["cam-1"])
]
AreaId = Annotated[
    str, PathParam(pattern=ID_REGEX, description=f"Area Id: {ID_FORM}.", examples=["lobby"])
]
PartName = Annotated[
    str,
    PathParam(pattern=ID_REGEX, description="Registered name of the part (the section's Name).",
              examples=["social_distance"]),
]

# Values that would break a line in some reader (the writer refuses C0 controls and DEL
# already; C1 controls and the Unicode line separators are refused here as well).
_UNSAFE_VALUE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
NO_RELOAD: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": []}


def problem(section: str | None, key: str | None, message: str,
            expected: str | None = None) -> ConfigError:
    """A 422 naming the section and key, in the same shape as configuration errors."""
    return ConfigError([ConfigProblem("request", section, key, message, expected)])


# ---------------------------------------------------------------------------------------
# Reading and editing the file
# ---------------------------------------------------------------------------------------


def read_sections(text: str, file: str) -> dict[str, dict[str, str]]:
    """The raw INI: section -> key -> value string, in file order."""
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=file)
    except configparser.Error as exc:
        raise ConfigError([ConfigProblem(file, None, None, str(exc).splitlines()[0])]) from exc
    return {name: dict(parser.items(name)) for name in parser.sections()}


@dataclass
class Snapshot:
    """The configuration file as read under the lock of one :func:`edit`."""

    path: Path
    text: str
    sections: dict[str, dict[str, str]]
    _config: LookoutConfig | None = field(default=None, repr=False)

    @property
    def config(self) -> LookoutConfig:
        if self._config is None:
            self._config = parse_config_text(self.text, self.path, check_files=False)
        return self._config

    def section_named(self, name: str) -> str | None:
        """The file's spelling of section ``name`` (fixed sections match case-insensitively,
        as the loader reads them)."""
        lowered = name.lower()
        return next((s for s in self.sections if s.lower() == lowered), None)

    def free_section(self, prefix: str, suffix: str) -> str:
        """``<prefix>_<suffix>``, or with ``_2``, ``_3``... appended when that name is taken."""
        taken = {s.lower() for s in self.sections}
        candidate, n = f"{prefix}_{suffix}", 2
        while candidate.lower() in taken:
            candidate, n = f"{prefix}_{suffix}_{n}", n + 1
        return candidate


Build = Callable[[Snapshot], tuple[list[ConfigChange], T]]


def edit_file(path: Path, build: Build[T]) -> tuple[T, bool]:
    """Run ``build`` on the file as it is under the writer's lock; write its changes if the
    result is a valid configuration (start-up checks, video and model files included).

    ``build`` may raise (HTTPException, ConfigError) to refuse; then nothing is written.
    Returns ``build``'s result and whether the file changed.
    """
    def edit(text: str) -> tuple[str | None, T]:
        snap = Snapshot(path, text, read_sections(text, str(path)))
        changes, result = build(snap)
        if not changes:
            return None, result
        for change in changes:
            check_values_safe(change.section, change.values)
        base = text
        if any(not c.remove and snap.section_named(c.section) is None for c in changes):
            base = text.rstrip("\n") + "\n\n"  # a blank line before each new section
        new_text = apply_changes(base, changes)
        if new_text != text:
            parse_config_text(new_text, path, check_files=True)
        return new_text, result

    return rewrite(path, edit)


def busy(exc: ConfigBusy) -> HTTPException:
    """409 for a configuration file that someone is saving."""
    return HTTPException(409, f"the configuration file is being changed: {exc}",
                         headers={"Retry-After": "2"})


async def edit(ctx: ApiContext, build: Build[T]) -> tuple[T, dict[str, Any]]:
    """:func:`edit_file` off the event loop, then reload the cameras the change affects."""
    try:
        result, changed = await ctx.in_thread(edit_file, ctx.config_path, build)
    except ConfigBusy as exc:
        raise busy(exc) from exc
    reload = await ctx.reload() if changed else dict(NO_RELOAD)
    return result, reload


async def current_config(ctx: ApiContext) -> LookoutConfig:
    try:
        return await ctx.in_thread(ctx.config)
    except ConfigBusy as exc:
        raise busy(exc) from exc


async def current_text(ctx: ApiContext) -> str:
    """The configuration file's text, once whole."""
    try:
        text, _ = await ctx.in_thread(read_settled, ctx.config_path)
    except ConfigBusy as exc:
        raise busy(exc) from exc
    return text


async def update_entity(
    ctx: ApiContext,
    find: Callable[[LookoutConfig, str], Any],
    model: type[BaseModel],
    entity_id: str,
    body: Mapping[str, Any],
    ignore: frozenset[str] = frozenset(),
) -> tuple[Any, dict[str, Any]]:
    """Set the fields in ``body`` on the camera or area ``entity_id`` (found by its Id, in
    whatever section it is), keep the others.  The Id cannot change."""

    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        current = find(snap.config, entity_id)
        _, values = validate_fields(model, current.section, body, current, ignore)
        values = unmask_values(values, snap.sections.get(current.section))
        if values.get("Id", entity_id) != entity_id:
            raise problem(current.section, "Id", "an Id cannot change (logs, areas and URLs "
                          "use it); add a new one instead")
        return [ConfigChange(current.section, values)], None

    _, reload = await edit(ctx, build)
    return find(await current_config(ctx), entity_id), reload


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------


def check_values_safe(section: str, values: Mapping[str, str]) -> None:
    problems = [
        ConfigProblem("request", section, key, "value contains a line break or control "
                      "character", "a single line of printable text")
        for key, value in values.items() if _UNSAFE_VALUE.search(value)
    ]
    if problems:
        raise ConfigError(problems)


def to_ini_text(value: Any, section: str = "request", key: str | None = None) -> str:
    """A JSON value from a request as the INI string the models parse (422 if it has no
    INI form: objects, nested lists, mixed lists)."""
    if isinstance(value, str):
        return value
    try:
        return ini_value(value)
    except ValueError as exc:
        raise ConfigError([ConfigProblem("request", section, key, str(exc))]) from exc


def is_secret(key: str) -> bool:
    return is_secret_key(key)


def mask(values: Any, admin: bool) -> Any:
    """``values`` as the caller may see them: admins see everything; for viewers credential
    keys and the passwords of URLs (camera sources included) are masked, recursively
    (:func:`libs.config.secrets.mask_secrets`, the one masking function)."""
    if admin:
        return values
    return mask_secrets(values)


def _field_keys(model: type[BaseModel]) -> dict[str, str]:
    """INI key or field name -> INI key."""
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.alias or name
        out[name] = alias
        out[alias] = alias
    return out


def form_of(model: type[BaseModel], key: str | None) -> str | None:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            extra = info.json_schema_extra
            if isinstance(extra, dict) and "form" in extra:
                return str(extra["form"])
    return None


def validation_problems(exc: ValidationError, model: type[BaseModel],
                        section: str | None) -> ConfigError:
    problems: list[ConfigProblem] = []
    seen: set[tuple[str | None, str]] = set()
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else None
        msg = str(err["msg"]).removeprefix("Value error, ")
        if (key, msg) in seen:
            continue
        seen.add((key, msg))
        problems.append(ConfigProblem("request", section, key, msg, form_of(model, key)))
    return ConfigError(problems)


def validate_fields(
    model: type[BaseModel],
    section: str | None,
    body: Mapping[str, Any],
    current: BaseModel | None = None,
    ignore: frozenset[str] = frozenset(),
) -> tuple[Any, dict[str, str]]:
    """Validate ``body`` (keys: INI names or field names) applied over ``current``.

    Returns the validated model and the INI strings of the keys ``body`` set.  Errors name
    the INI key (ConfigError, 422).
    """
    keys = _field_keys(model)
    unknown = [k for k in body if k not in keys and k not in ignore]
    if unknown:
        known = ", ".join(info.alias or n for n, info in model.model_fields.items())
        raise ConfigError([
            ConfigProblem("request", section, k, "unknown field", f"one of: {known}")
            for k in unknown
        ])
    given = {keys[k]: v for k, v in body.items() if k in keys}
    data = current.model_dump(by_alias=True) if current is not None else {}
    data.update(given)
    try:
        obj = model.model_validate(data)
    except ValidationError as exc:
        raise validation_problems(exc, model, section) from exc
    ini: dict[str, str] = obj.to_ini() if hasattr(obj, "to_ini") else {}
    return obj, {k: ini[k] for k in given}


# ---------------------------------------------------------------------------------------
# Ids, and shared limits kept on the app
# ---------------------------------------------------------------------------------------


def slug(text: str, fallback: str) -> str:
    """An id made from a name: ``"Front door 2"`` -> ``"front-door-2"``."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].strip("-")
    return s or fallback


def unique_id(base: str, taken: set[str]) -> str:
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


class Slots:
    """At most ``limit`` of something at once (camera probes, live streams), across threads,
    and at most ``per_user`` of them held by one user (half, at least one), so one client
    cannot take every slot; ``take`` never waits."""

    def __init__(self, limit: int, per_user: int | None = None) -> None:
        self.limit = limit
        self.per_user = max(1, limit // 2) if per_user is None else per_user
        self.used = 0
        self.by_user: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, user: str | None = None) -> bool:
        return self.try_take(user) == "ok"

    def try_take(self, user: str | None = None) -> Literal["ok", "user", "full"]:
        """``ok`` (taken), ``user`` (this user holds their share) or ``full``."""
        with self._lock:
            if user is not None and self.by_user.get(user, 0) >= self.per_user:
                return "user"
            if self.used >= self.limit:
                return "full"
            self.used += 1
            if user is not None:
                self.by_user[user] = self.by_user.get(user, 0) + 1
            return "ok"

    def held_by(self, user: str) -> int:
        with self._lock:
            return self.by_user.get(user, 0)

    def give(self, user: str | None = None) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)
            if user is not None:
                left = self.by_user.get(user, 0) - 1
                if left > 0:
                    self.by_user[user] = left
                else:
                    self.by_user.pop(user, None)

    def refusal(self, outcome: str, what: str, retry_after: int) -> HTTPException:
        """The answer to a ``take`` that failed: 429 when the user holds their share, 503
        when every slot is taken."""
        headers = {"Retry-After": str(retry_after)}
        if outcome == "user":
            return HTTPException(429, f"you already hold {self.per_user} of the {self.limit} "
                                 f"{what}; close one first", headers=headers)
        return HTTPException(503, f"too many {what} are running; try again shortly",
                             headers=headers)


PROBE_LIMIT = 4
STREAM_LIMIT = 16


def slots(app_state: Any, name: str, limit: int) -> Slots:
    found: Slots | None = getattr(app_state, name, None)
    if found is None:
        found = Slots(limit)
        setattr(app_state, name, found)
    return found


def include_routers(app: FastAPI) -> None:
    """Register the configuration, camera and area sub-APIs on ``app``."""
    from api.routers.areas import router as areas_router
    from api.routers.cameras import router as cameras_router
    from api.routers.config import router as config_router

    app.state.camera_probes = Slots(PROBE_LIMIT)
    app.state.live_streams = Slots(STREAM_LIMIT)
    app.include_router(config_router)
    app.include_router(cameras_router)
    app.include_router(areas_router)
