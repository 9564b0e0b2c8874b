"""``/config`` and the section sub-APIs (Smart Social Distancing compatible paths).

* ``/config``: the whole file as JSON (raw key/value strings per section plus the parsed,
  typed view) or as INI text; PUT replaces it (JSON sections or ``text/plain`` INI), keeping
  the comments of what survives.
* ``/app``, ``/api``, ``/core``, ``/detector``, ``/classifier``, ``/tracker``: one fixed
  section each; PUT sets the keys it sends and keeps every other key (null removes a key, so
  its default applies).
* ``/source_post_processors``, ``/source_loggers``, ``/area_loggers``, ``/periodic_tasks``:
  numbered sections addressed by their ``Name`` (unique per kind), never by position.
* ``/ml_model/{camera_id}``: the detector settings one camera uses (per-camera overrides of
  ``[Detector]`` kept in the camera's section).

Viewers read (credentials masked: credential keys, and the passwords in URLs such as camera
sources); admins read everything and write.  A masked value sent back unchanged keeps the
secret it stands for.  Every write is validated with the start-up models and saved
atomically; only the cameras the change affects are restarted.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.context import ApiContext
from api.deps import Admin, Context, Principal, Viewer
from api.routers.entities import (
    CameraId,
    PartName,
    Snapshot,
    busy,
    current_config,
    current_text,
    edit,
    mask,
    problem,
    read_sections,
    to_ini_text,
    validation_problems,
)
from libs.config import ConfigBusy, ConfigChange, ConfigError
from libs.config.io import MAX_CONFIG_BYTES, read_settled
from libs.config.loader import NUMBERED
from libs.config.models import DetectorConfig, LookoutConfig, PluginConfig, SourceConfig
from libs.config.secrets import unmask_values
from libs.config.writer import apply_changes
from libs.loggers import (
    AREA_LOGGERS,
    OUTPUTS,
    SOURCE_LOGGERS,
    NoSendTest,
    SendTestError,
    Sink,
)
from libs.periodic_tasks import PERIODIC_TASKS
from libs.registry import Registry

router = APIRouter()

MAX_JSON_BYTES = 2 * MAX_CONFIG_BYTES  # the same file as JSON (quotes and escapes)
IniScalar = str | bool | int | float | None
IniJson = IniScalar | list[str | int | float | list[float]]
SectionValues = dict[str, IniJson]

# path -> (INI section, LookoutConfig attribute, tag)
FIXED: dict[str, tuple[str, str, str]] = {
    "app": ("App", "app", "App"),
    "api": ("API", "api", "Api"),
    "core": ("CORE", "core", "Core"),
    "detector": ("Detector", "detector", "Detector"),
    "classifier": ("Classifier", "classifier", "Classifier"),
    "tracker": ("Tracker", "tracker", "Tracker"),
}
# path (= LookoutConfig attribute) -> (INI section prefix, tag)
PARTS: dict[str, tuple[str, str]] = {
    "source_post_processors": ("SourcePostProcessor", "Source Post Processors"),
    "source_loggers": ("SourceLogger", "Source Loggers"),
    "area_loggers": ("AreaLogger", "Area Loggers"),
    "periodic_tasks": ("PeriodicTask", "Periodic Tasks"),
    "outputs": ("Output", "Outputs"),
}


class SectionOut(BaseModel):
    section: str | None = Field(description="The section's name in the file; null when absent.")
    values: dict[str, str] = Field(description="Every key with its effective value, as INI text.")


class SectionWritten(SectionOut):
    reload: dict[str, list[str]] = Field(
        description="Cameras the processor started, restarted and stopped for this change."
    )


class PartOut(BaseModel):
    section: str
    name: str
    enabled: bool
    values: dict[str, str]


class PartWritten(PartOut):
    reload: dict[str, list[str]]


class ConfigOut(BaseModel):
    sections: dict[str, dict[str, str]] = Field(
        description="The file as written: section -> key -> value string."
    )
    parsed: dict[str, Any] = Field(description="The validated configuration, defaults filled.")


class ConfigWritten(BaseModel):
    sections: list[str]
    reload: dict[str, list[str]]


class Features(BaseModel):
    source_post_processors: list[str]
    source_loggers: list[str]
    area_loggers: list[str]
    periodic_tasks: list[str]
    outputs: list[str]


class ConfigInfo(BaseModel):
    version: str
    device: str = Field(description="[Detector] Device: the inference backend.")
    has_been_configured: bool
    cameras: int
    enabled_cameras: int
    areas: int
    processor_running: bool
    enabled_features: Features


def _is_admin(user: Principal) -> bool:
    return user.role == "admin"


def _parsed_view(config: LookoutConfig) -> dict[str, Any]:
    dumped: dict[str, Any] = config.model_dump(
        mode="json", by_alias=True, exclude={"path"}, serialize_as_any=True
    )
    return dumped


# ---------------------------------------------------------------------------------------
# /config
# ---------------------------------------------------------------------------------------


@router.get(
    "/config", tags=["Config"], response_model=ConfigOut,
    summary="The whole configuration",
    description="JSON by default: the raw sections and the parsed view. `?format=ini` gives "
    "the file itself as text (admins only). Credentials are masked for viewers.",
    responses={200: {"content": {"text/plain": {}}}},
)
async def get_config(ctx: Context, user: Viewer,
                     format: Literal["json", "ini"] = Query("json")) -> Any:
    admin = _is_admin(user)
    if format == "ini":
        if not admin:
            raise HTTPException(403, "the INI text holds credentials; this needs the admin role")
        text = await current_text(ctx)
        return Response(text, media_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
    config = await current_config(ctx)
    text = await current_text(ctx)
    sections = read_sections(text, str(ctx.config_path))
    return ConfigOut(sections=mask(sections, admin), parsed=mask(_parsed_view(config), admin))


def _sections_body(body: Any) -> dict[str, dict[str, str]]:
    """A JSON body -> section -> key -> INI string; accepts GET /config's own shape."""
    if isinstance(body, dict) and "sections" in body and set(body) <= {"sections", "parsed"}:
        body = body["sections"]
    if not isinstance(body, dict):
        raise problem(None, None, "the body must be an object of sections",
                      '{"App": {"HasBeenConfigured": "True"}, ...}')
    out: dict[str, dict[str, str]] = {}
    for section, values in body.items():
        if not isinstance(values, dict):
            raise problem(str(section), None, "a section must be an object of keys")
        converted: dict[str, str] = {}
        for key, value in values.items():
            if isinstance(value, dict) or (
                isinstance(value, list) and any(isinstance(v, dict) for v in value)
            ):
                raise problem(str(section), str(key), "values are text, numbers, booleans "
                              "or lists of them")
            converted[str(key)] = to_ini_text(value, key=str(key))
        out[str(section)] = converted
    return out


@router.put(
    "/config", tags=["Config"], response_model=ConfigWritten,
    summary="Replace the whole configuration",
    description="Body: JSON `{section: {key: value}}` (sections left out are removed; the "
    "comments of what stays are kept), or the INI text itself with `Content-Type: "
    "text/plain`. Validated like at start-up; nothing is written when invalid (422 naming "
    "section and key). Only the cameras the change affects are restarted.",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object", "additionalProperties": {
            "type": "object"}}},
        "text/plain": {"schema": {"type": "string"}},
    }}},
)
async def put_config(ctx: Context, _admin: Admin, request: Request) -> ConfigWritten:
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    limit = MAX_CONFIG_BYTES if kind == "text/plain" else MAX_JSON_BYTES
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > limit:
        raise HTTPException(413, f"a configuration is at most {MAX_CONFIG_BYTES} bytes of INI "
                            f"text ({limit} bytes as this body)")
    raw = await request.body()
    if len(raw) > limit:
        raise HTTPException(413, f"a configuration is at most {MAX_CONFIG_BYTES} bytes of INI "
                            f"text ({limit} bytes as this body)")
    if kind == "text/plain":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise problem(None, None, "the text is not UTF-8") from exc
        bad = re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text)
        if bad:
            line = text.count("\n", 0, bad.start()) + 1
            raise problem(None, None, f"line {line} contains a control character")
        text = await ctx.in_thread(_keep_masked_secrets, ctx.config_path, text)
        try:
            reload = await ctx.replace(text)
        except ConfigBusy as exc:
            raise busy(exc) from exc
        return ConfigWritten(sections=await _file_sections(ctx), reload=reload)
    if kind not in ("application/json", ""):
        raise HTTPException(415, "send application/json or text/plain")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise problem(None, None, f"the body is not JSON: {exc}") from exc
    wanted = _sections_body(body)

    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        changes = [ConfigChange(s, remove=True) for s in snap.sections if s not in wanted]
        changes += [ConfigChange(s, unmask_values(v, snap.sections.get(s)), replace=True)
                    for s, v in wanted.items()]
        return changes, None

    _, reload = await edit(ctx, build)
    return ConfigWritten(sections=await _file_sections(ctx), reload=reload)


async def _file_sections(ctx: ApiContext) -> list[str]:
    return list(read_sections(await current_text(ctx), str(ctx.config_path)))


def _keep_masked_secrets(path: Path, text: str) -> str:
    """``text`` with every value that is the current value masked (as a viewer sees it) put
    back to the current value, comments kept; an INI text that is not valid is returned as
    it is (the replace reports why)."""
    if "*" not in text:
        return text
    try:
        current = read_sections(read_settled(path)[0], str(path))
        sent = read_sections(text, "request")
    except ConfigError:
        return text
    changes = []
    for section, values in sent.items():
        kept = unmask_values(values, current.get(section))
        restored = {k: v for k, v in kept.items() if v != values[k]}
        if restored:
            changes.append(ConfigChange(section, restored))
    if not changes:
        return text
    try:
        return apply_changes(text, changes)
    except Exception:  # a text the INI editor cannot read: the replace says why
        return text


@router.get("/config/info", tags=["Config"], response_model=ConfigInfo,
            summary="Version, device, enabled features and counts")
async def config_info(ctx: Context, _user: Viewer, request: Request) -> ConfigInfo:
    config = await current_config(ctx)

    def enabled(parts: list[PluginConfig]) -> list[str]:
        return [p.name for p in parts if p.enabled]

    return ConfigInfo(
        version=request.app.version,
        device=config.detector.device,
        has_been_configured=config.app.has_been_configured,
        cameras=len(config.sources),
        enabled_cameras=len(config.enabled_sources()),
        areas=len(config.areas),
        processor_running=ctx.supervisor is not None,
        enabled_features=Features(
            source_post_processors=enabled(config.source_post_processors),
            source_loggers=enabled(config.source_loggers),
            area_loggers=enabled(config.area_loggers),
            periodic_tasks=enabled(config.periodic_tasks),
            outputs=enabled(config.outputs),
        ),
    )


# ---------------------------------------------------------------------------------------
# Fixed sections
# ---------------------------------------------------------------------------------------


def _fixed_out(config: LookoutConfig, section: str, attr: str, admin: bool) -> SectionOut:
    model = getattr(config, attr)
    if model is None:
        return SectionOut(section=None, values={})
    name = getattr(model, "section", "") or section
    return SectionOut(section=name, values=mask(model.to_ini(), admin))


def _add_fixed_routes(path: str, section: str, attr: str, tag: str) -> None:
    async def get_section(ctx: Context, user: Viewer) -> SectionOut:
        return _fixed_out(await current_config(ctx), section, attr, _is_admin(user))

    async def put_section(ctx: Context, _admin: Admin, body: SectionValues) -> SectionWritten:
        values, unset = _section_values(body)

        def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
            name = snap.section_named(section) or section
            kept = unmask_values(values, snap.sections.get(name))
            return [ConfigChange(name, kept, unset=unset)], None

        _, reload = await edit(ctx, build)
        out = _fixed_out(await current_config(ctx), section, attr, True)
        return SectionWritten(section=out.section, values=out.values, reload=reload)

    router.add_api_route(
        f"/{path}", get_section, methods=["GET"], tags=[tag], response_model=SectionOut,
        summary=f"The [{section}] section", name=f"get_{path}",
        description="Every key with its effective value (defaults filled) as INI text.",
    )
    router.add_api_route(
        f"/{path}", put_section, methods=["PUT"], tags=[tag], response_model=SectionWritten,
        summary=f"Change keys of [{section}]", name=f"put_{path}",
        description="Body: `{key: value}`. Keys sent are set; keys left out keep their value; "
        "a key sent as null is removed (its default applies). Unknown keys and invalid values "
        "are refused with 422 naming the key; nothing is written then.",
    )


for _path, (_section, _attr, _tag) in FIXED.items():
    _add_fixed_routes(_path, _section, _attr, _tag)


# ---------------------------------------------------------------------------------------
# Numbered sections, addressed by Name
# ---------------------------------------------------------------------------------------


def _part_out(part: PluginConfig, admin: bool) -> PartOut:
    return PartOut(section=part.section, name=part.name, enabled=part.enabled,
                   values=mask(part.to_ini(), admin))


def _find_part(config: LookoutConfig, attr: str, prefix: str, name: str) -> PluginConfig:
    found = [p for p in getattr(config, attr) if p.name == name]
    if not found:
        raise HTTPException(404, f"no [{prefix}_N] section with Name = {name}")
    if len(found) > 1:
        where = ", ".join(p.section for p in found)
        raise HTTPException(409, f"{len(found)} sections have Name = {name} ({where}); keep "
                            "one per name (edit them with PUT /config)")
    part: PluginConfig = found[0]
    return part


def _next_section(snap: Snapshot, prefix: str) -> str:
    numbers = [int(m["n"]) for s in snap.sections
               if (m := NUMBERED.match(s)) and m["kind"] == prefix and m["n"].isdigit()]
    n = max(numbers, default=-1) + 1
    while snap.section_named(f"{prefix}_{n}") is not None:
        n += 1
    return f"{prefix}_{n}"


def _section_values(body: SectionValues) -> tuple[dict[str, str], frozenset[str]]:
    """A section PUT's body: the INI strings of the keys to set, and the keys sent as null
    (to remove, so their defaults apply)."""
    unset = frozenset(str(k) for k, v in body.items() if v is None)
    values = {str(k): to_ini_text(v, key=str(k)) for k, v in body.items() if v is not None}
    return values, unset


def _part_values(body: SectionValues, name: str, prefix: str) -> dict[str, str]:
    values = {str(k): to_ini_text(v, key=str(k)) for k, v in body.items() if v is not None}
    given = values.pop("Name", name)
    if given != name:
        raise problem(f"{prefix}_N", "Name", f"Name {given!r} does not match {name!r} in the "
                      "URL; add a new part with POST instead")
    return {"Name": name, **values}


def _add_part_routes(attr: str, prefix: str, tag: str) -> None:
    async def list_parts(ctx: Context, user: Viewer) -> list[PartOut]:
        config = await current_config(ctx)
        return [_part_out(p, _is_admin(user)) for p in getattr(config, attr)]

    async def get_part(ctx: Context, user: Viewer, name: PartName) -> PartOut:
        config = await current_config(ctx)
        return _part_out(_find_part(config, attr, prefix, name), _is_admin(user))

    async def written(ctx: Context, name: str, reload: dict[str, list[str]]) -> PartWritten:
        part = _find_part(await current_config(ctx), attr, prefix, name)
        return PartWritten(**_part_out(part, True).model_dump(), reload=reload)

    async def put_part(ctx: Context, _admin: Admin, name: PartName,
                       body: SectionValues) -> PartWritten:
        values = _part_values(body, name, prefix)
        unset = frozenset(str(k) for k, v in body.items() if v is None) - {"Name"}

        def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
            part = _find_part(snap.config, attr, prefix, name)
            kept = unmask_values(values, snap.sections.get(part.section))
            return [ConfigChange(part.section, kept, unset=unset)], None

        _, reload = await edit(ctx, build)
        return await written(ctx, name, reload)

    async def post_part(ctx: Context, _admin: Admin, body: SectionValues) -> PartWritten:
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise problem(f"{prefix}_N", "Name", "missing required key",
                          "the registered name of the part")
        values = _part_values(body, name, prefix)

        def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
            if any(p.name == name for p in getattr(snap.config, attr)):
                raise HTTPException(409, f"a [{prefix}_N] section with Name = {name} exists; "
                                    f"change it with PUT /{attr}/{name}")
            return [ConfigChange(_next_section(snap, prefix), values)], None

        _, reload = await edit(ctx, build)
        return await written(ctx, name, reload)

    async def delete_part(ctx: Context, _admin: Admin, name: PartName) -> dict[str, Any]:
        def build(snap: Snapshot) -> tuple[list[ConfigChange], str]:
            part = _find_part(snap.config, attr, prefix, name)
            return [ConfigChange(part.section, remove=True)], part.section

        section, reload = await edit(ctx, build)
        return {"deleted": section, "reload": reload}

    one = f"/{attr}/{{name}}"
    router.add_api_route(f"/{attr}", list_parts, methods=["GET"], tags=[tag],
                         response_model=list[PartOut], name=f"list_{attr}",
                         summary=f"Every [{prefix}_N] section")
    router.add_api_route(f"/{attr}", post_part, methods=["POST"], tags=[tag],
                         response_model=PartWritten, status_code=201, name=f"post_{attr}",
                         summary=f"Add a [{prefix}_N] section (Name must be new)")
    router.add_api_route(one, get_part, methods=["GET"], tags=[tag], response_model=PartOut,
                         name=f"get_{attr}", summary=f"The [{prefix}_N] section with this Name")
    router.add_api_route(one, put_part, methods=["PUT"], tags=[tag], response_model=PartWritten,
                         name=f"put_{attr}",
                         summary=f"Change keys of the [{prefix}_N] section with this Name",
                         description="Keys sent are set; keys left out keep their value; a "
                         "key sent as null is removed (its default applies).")
    router.add_api_route(one, delete_part, methods=["DELETE"], tags=[tag], name=f"delete_{attr}",
                         summary=f"Remove the [{prefix}_N] section with this Name")


for _attr, (_prefix, _tag) in PARTS.items():
    _add_part_routes(_attr, _prefix, _tag)


# -- "send a test" for the sinks that send somewhere ------------------------------------------

SINK_REGISTRIES: dict[str, Registry[Any]] = {
    "source_loggers": SOURCE_LOGGERS, "area_loggers": AREA_LOGGERS, "outputs": OUTPUTS,
    "periodic_tasks": PERIODIC_TASKS}


class SendTestOut(BaseModel):
    ok: bool
    detail: str = Field(description="What the destination answered.")


def _find_sink(config: LookoutConfig, attr: str, key: str) -> PluginConfig:
    """The section called ``key`` (``Output_2``) or the one whose Name is ``key``."""
    prefix = PARTS[attr][0]
    by_section = [p for p in getattr(config, attr) if p.section.lower() == key.lower()]
    if by_section:
        part: PluginConfig = by_section[0]
        return part
    return _find_part(config, attr, prefix, key)


def _add_test_route(attr: str) -> None:
    prefix, tag = PARTS[attr]
    registry = SINK_REGISTRIES[attr]

    async def send_test(ctx: Context, _admin: Admin, name: PartName) -> SendTestOut:
        config = await current_config(ctx)
        part = _find_sink(config, attr, name)
        try:
            sink = registry.get(part.name)
        except KeyError as exc:
            raise HTTPException(400, f"{part.section}: no sink named {part.name!r}") from exc
        if getattr(sink, "send_test", None) is None:  # a periodic task without a test
            raise HTTPException(400, f"{part.section}: {part.name} has no test")
        try:
            detail = await ctx.in_thread(sink.send_test, part, config)
        except NoSendTest as exc:
            raise HTTPException(400, f"{part.section}: {exc}") from exc
        except SendTestError as exc:
            raise HTTPException(502, f"{part.section}: {exc}") from exc
        return SendTestOut(ok=True, detail=f"{part.section}: {detail}")

    router.add_api_route(
        f"/{attr}/{{name}}/test", send_test, methods=["POST"], tags=[tag],
        response_model=SendTestOut, name=f"test_{attr}",
        summary=f"Send one test record through a [{prefix}_N] sink now",
        description="`name` is the section (e.g. `Output_0`) or its Name. The record goes to "
        "the sink's destination at once, as the sink sends (web_hook_logger: a signed PUT to "
        "its Endpoint), whether or not the section is enabled. 400 for a sink with no test "
        "(file loggers), 502 with the reason when delivery fails (connection refused, "
        "timeout, HTTP status).",
        responses={400: {"description": "this sink has no test"},
                   502: {"description": "the destination refused or was unreachable"}})


for _attr in SINK_REGISTRIES:
    _add_test_route(_attr)


# -- what each key means, for forms: the models' own descriptions ----------------------------


class PartKeys(BaseModel):
    testable: bool = Field(description="POST /{kind}/{name}/test sends something somewhere.")
    keys: dict[str, str] = Field(description="INI key -> what it means.")


class ConfigKeys(BaseModel):
    sections: dict[str, dict[str, str]] = Field(
        description="Fixed section ([App], [API]...) -> INI key -> what it means.")
    parts: dict[str, dict[str, PartKeys]] = Field(
        description="source_loggers, area_loggers, outputs, periodic_tasks -> registered "
        "Name -> its keys and whether it has a test.")


def _descriptions(model: type[BaseModel]) -> dict[str, str]:
    return {info.alias or name: info.description or ""
            for name, info in model.model_fields.items()}


def _config_keys() -> ConfigKeys:
    sections: dict[str, dict[str, str]] = {}
    for section, attr, _ in FIXED.values():
        hint = LookoutConfig.model_fields[attr].annotation  # ClassifierConfig | None too
        for model in (hint, *typing.get_args(hint)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                sections[section] = _descriptions(model)
                break
    parts: dict[str, dict[str, PartKeys]] = {}
    for attr, registry in SINK_REGISTRIES.items():
        parts[attr] = {}
        for name in registry.names():
            cls = registry.get(name)
            owner = next((c for c in cls.__mro__ if "send_test" in vars(c)), None)
            testable = owner is not None and owner is not Sink  # Sink's own: no test
            parts[attr][name] = PartKeys(testable=testable,
                                         keys=_descriptions(getattr(cls, "Config", PluginConfig)))
    return ConfigKeys(sections=sections, parts=parts)


@router.get("/config/keys", tags=["Config"], response_model=ConfigKeys,
            summary="What every key of the fixed sections and of each registered part means")
async def config_keys(ctx: Context, _user: Viewer) -> ConfigKeys:
    return await ctx.in_thread(_config_keys)


# ---------------------------------------------------------------------------------------
# /ml_model: per-camera detector settings
# ---------------------------------------------------------------------------------------

# JSON field -> ([Source_N] key of the override, [Detector] key it overrides)
ML_FIELDS: dict[str, tuple[str, str]] = {
    "name": ("DetectorName", "Name"),
    "model_path": ("DetectorModelPath", "ModelPath"),
    "image_size": ("DetectorImageSize", "ImageSize"),
    "class_id": ("DetectorClassID", "ClassID"),
    "min_score": ("DetectorMinScore", "MinScore"),
    "nms_threshold": ("DetectorNMSThreshold", "NMSThreshold"),
}


def _source_aliases() -> dict[str, str]:
    return {info.alias or n: n for n, info in SourceConfig.model_fields.items()}


def ml_model_supported() -> bool:
    """Whether SourceConfig has the per-camera detector keys (``DetectorName``...)."""
    aliases = _source_aliases()
    return all(key in aliases for key, _ in ML_FIELDS.values())


class MLModel(BaseModel):
    camera_id: str
    device: str = Field(description="[Detector] Device (shared by every camera).")
    values: dict[str, Any] = Field(description="The settings this camera's detector uses.")
    overrides: list[str] = Field(description="Which of them the camera sets itself.")
    supported: bool = Field(description="Whether this version stores per-camera settings.")


class MLModelWritten(MLModel):
    reload: dict[str, list[str]]


class MLModelIn(BaseModel):
    """Fields given set the camera's own value; null returns to [Detector]'s."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=64, description="Model family, e.g. yolox_nano.")
    model_path: str | None = Field(None, max_length=1024)
    image_size: tuple[int, int] | None = None
    class_id: int | None = None
    min_score: float | None = None
    nms_threshold: float | None = None


def _override(src: SourceConfig, key: str) -> Any:
    name = _source_aliases().get(key)
    value = getattr(src, name) if name else None
    return None if value in (None, "") else value


def _ml_out(config: LookoutConfig, src: SourceConfig) -> MLModel:
    det = config.detector.model_dump(by_alias=True)
    values: dict[str, Any] = {}
    overrides: list[str] = []
    for field_name, (src_key, det_key) in ML_FIELDS.items():
        own = _override(src, src_key)
        if own is not None:
            overrides.append(field_name)
        value = own if own is not None else det[det_key]
        values[field_name] = list(value) if isinstance(value, tuple) else value
    return MLModel(camera_id=src.id, device=config.detector.device, values=values,
                   overrides=overrides, supported=ml_model_supported())


def _camera(config: LookoutConfig, camera_id: str) -> SourceConfig:
    try:
        return config.source(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera with Id {camera_id}") from None


def _ml_values(config: LookoutConfig, src: SourceConfig, body: MLModelIn) -> dict[str, str]:
    """INI strings of the overrides ``body`` sets ("" clears one), validated as [Detector]
    values; the resulting model file must exist."""
    det = config.detector.model_dump(by_alias=True)
    merged = dict(det)
    for src_key, det_key in ML_FIELDS.values():
        own = _override(src, src_key)
        if own is not None:
            merged[det_key] = own
    given = {f: getattr(body, f) for f in body.model_fields_set}
    for field_name, value in given.items():
        det_key = ML_FIELDS[field_name][1]
        merged[det_key] = det[det_key] if value is None else value
    try:
        effective = DetectorConfig.model_validate(merged)
    except ValidationError as exc:
        err = validation_problems(exc, DetectorConfig, src.section)
        renamed = {d: s for s, d in ML_FIELDS.values()}
        raise ConfigError([dataclasses.replace(p, key=renamed.get(p.key or "", p.key))
                           for p in err.problems]) from exc
    from libs.detectors import resolve_model_path

    try:
        model_file = resolve_model_path(config.model_copy(update={"detector": effective}))
    except ValueError as exc:
        raise problem(src.section, "DetectorName", str(exc)) from exc
    if not model_file.is_file():
        raise problem(src.section, "DetectorModelPath", f"no such model file: {model_file}",
                      "an existing model file (relative paths are inside AssetsDirectory)")
    ini = effective.to_ini()
    return {ML_FIELDS[f][0]: ("" if v is None else ini[ML_FIELDS[f][1]])
            for f, v in given.items()}


NOT_SUPPORTED = (
    "per-camera detector settings need the [Source_N] keys "
    + ", ".join(k for k, _ in ML_FIELDS.values())
    + ", which this version does not have yet"
)


@router.get("/ml_model", tags=["ML Model"], response_model=list[MLModel],
            summary="The detector settings of every camera")
async def list_ml_models(ctx: Context, _user: Viewer) -> list[MLModel]:
    config = await current_config(ctx)
    return [_ml_out(config, src) for src in config.sources]


@router.get("/ml_model/{camera_id}", tags=["ML Model"], response_model=MLModel,
            summary="The detector settings one camera uses")
async def get_ml_model(ctx: Context, _user: Viewer, camera_id: CameraId) -> MLModel:
    config = await current_config(ctx)
    return _ml_out(config, _camera(config, camera_id))


@router.put("/ml_model/{camera_id}", tags=["ML Model"], response_model=MLModelWritten,
            summary="Set the camera's own detector settings",
            description="Fields given become the camera's own values (kept in its "
            "[Source_N] section as DetectorName, DetectorModelPath, ...); null returns a field "
            "to [Detector]'s value. Only this camera restarts.")
async def put_ml_model(ctx: Context, _admin: Admin, camera_id: CameraId,
                       body: MLModelIn) -> MLModelWritten:
    if not ml_model_supported():
        raise HTTPException(501, NOT_SUPPORTED)

    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        src = _camera(snap.config, camera_id)
        values = _ml_values(snap.config, src, body)
        return [ConfigChange(src.section, values)], None

    _, reload = await edit(ctx, build)
    config = await current_config(ctx)
    return MLModelWritten(**_ml_out(config, _camera(config, camera_id)).model_dump(),
                          reload=reload)


@router.delete("/ml_model/{camera_id}", tags=["ML Model"], response_model=MLModelWritten,
               summary="Return the camera to the [Detector] settings")
async def delete_ml_model(ctx: Context, _admin: Admin, camera_id: CameraId) -> MLModelWritten:
    keys = {k for k, _ in ML_FIELDS.values()}

    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        src = _camera(snap.config, camera_id)
        raw = snap.sections[src.section]
        if not keys & set(raw):
            return [], None
        kept = {k: v for k, v in raw.items() if k not in keys}
        return [ConfigChange(src.section, kept, replace=True)], None

    _, reload = await edit(ctx, build)
    config = await current_config(ctx)
    return MLModelWritten(**_ml_out(config, _camera(config, camera_id)).model_dump(),
                          reload=reload)

