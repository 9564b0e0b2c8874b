"""``/areas``: groups of cameras whose occupancy is summed, with stable ids, membership,
occupancy threshold and time-dependent occupancy rules.

An area is an ``[Area_<Id>]`` section; its ``Id`` never changes and no other section is
renumbered when one is deleted.  Occupancy rules are edited as structured JSON and stored as
the ``OccupancyRules`` string the processor reads (``Mon-Fri 09:00-18:00 50; ...``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from api.context import ApiContext
from api.deps import Admin, Context, Viewer
from api.routers.entities import (
    ID_REGEX,
    AreaId,
    Snapshot,
    current_config,
    edit,
    slug,
    unique_id,
    update_entity,
    validate_fields,
)
from libs.config import ConfigChange
from libs.config.models import AreaConfig, LookoutConfig
from libs.config.occupancy_rules import DAYS, parse_occupancy_rules

router = APIRouter(prefix="/areas", tags=["Areas"])

READ_ONLY = frozenset({"section", "rules"})
Day = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
HHMM_OR_2400 = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"


class Rule(BaseModel):
    """A capacity limit in force on some days between two times (end exclusive)."""

    model_config = ConfigDict(extra="forbid")

    days: list[Day] = Field(min_length=1, max_length=7, examples=[["Mon", "Tue"]])
    start: str = Field(pattern=HHMM, examples=["09:00"])
    end: str = Field(pattern=HHMM_OR_2400, description="After start; 24:00 is midnight.",
                     examples=["18:00"])
    limit: int = Field(ge=0, le=1_000_000, description="People allowed at once.")

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[str]) -> list[str]:
        repeated = sorted({d for d in value if value.count(d) > 1}, key=DAYS.index)
        if repeated:
            raise ValueError(f"days repeated: {', '.join(repeated)}")
        return sorted(value, key=DAYS.index)

    @field_validator("end")
    @classmethod
    def _after_start(cls, value: str, info: ValidationInfo) -> str:
        start = info.data.get("start")
        if start is not None and _minute(value) <= _minute(start):
            raise ValueError(f"end {value} is not after start {start}")
        return value

    def to_ini(self) -> str:
        return f"{','.join(self.days)} {self.start}-{self.end} {self.limit}"


class RulesOut(BaseModel):
    area_id: str
    occupancy_threshold: int = Field(description="The limit outside every rule; 0 = none.")
    occupancy_rules: str = Field(description="The rules as stored in the INI file.")
    rules: list[Rule]


class CamerasIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cameras: list[Annotated[str, Field(pattern=ID_REGEX)]] = Field(min_length=1,
                                                                   max_length=256)


AREA_BODY = Body(
    description="Area fields by INI key (Cameras) or field name (cameras); see [Area_N] in the "
    "README. `section` and `rules` are read-only and ignored.",
    examples=[{"Name": "Lobby", "Cameras": ["cam-1", "cam-2"], "OccupancyThreshold": 20}],
)


def _minute(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def structured_rules(text: str) -> list[Rule]:
    """The INI OccupancyRules string as one Rule per entry, its days in week order."""
    out: list[Rule] = []
    for entry in text.split(";"):
        if not entry.strip():
            continue
        per_day = parse_occupancy_rules(entry)
        first = per_day[0]
        out.append(Rule(days=[DAYS[r.day] for r in per_day],  # type: ignore[misc]
                        start=_hhmm(first.start_minute), end=_hhmm(first.end_minute),
                        limit=first.limit))
    return out


def _check_overlaps(rules: list[Rule]) -> None:
    spans: dict[str, list[tuple[int, int, int]]] = {}
    errors: list[dict[str, Any]] = []
    for i, rule in enumerate(rules):
        start, end = _minute(rule.start), _minute(rule.end)
        for day in rule.days:
            for j, other_start, other_end in spans.get(day, []):
                if start < other_end and other_start < end:
                    errors.append({
                        "loc": ("body", i, "start"), "type": "value_error",
                        "msg": f"rule {i} overlaps rule {j} on {day} "
                        f"({rule.start}-{rule.end} and {_hhmm(other_start)}-{_hhmm(other_end)})",
                    })
            spans.setdefault(day, []).append((i, start, end))
    if errors:
        raise RequestValidationError(errors)


def find_area(config: LookoutConfig, area_id: str) -> AreaConfig:
    for area in config.areas:
        if area.id == area_id:
            return area
    raise HTTPException(404, f"no area with Id {area_id}")


def area_out(area: AreaConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"id": area.id, "section": area.section}
    out.update(area.model_dump(mode="json"))
    out["rules"] = [r.model_dump() for r in structured_rules(area.occupancy_rules)]
    return out


async def _written(ctx: ApiContext, area_id: str, reload: dict[str, Any]) -> dict[str, Any]:
    out = area_out(find_area(await current_config(ctx), area_id))
    out["reload"] = reload
    return out


def _rules_out(area: AreaConfig) -> RulesOut:
    return RulesOut(area_id=area.id, occupancy_threshold=area.occupancy_threshold,
                    occupancy_rules=area.occupancy_rules,
                    rules=structured_rules(area.occupancy_rules))


@router.get("", summary="Every area")
async def list_areas(ctx: Context, _user: Viewer) -> list[dict[str, Any]]:
    return [area_out(a) for a in (await current_config(ctx)).areas]


@router.post("", status_code=201, summary="Add an area",
             description="`Id` is assigned from `Name` when not given and never changes. "
             "`Cameras` must be Ids of existing cameras.")
async def create_area(ctx: Context, _admin: Admin,
                      body: Annotated[dict[str, Any], AREA_BODY]) -> dict[str, Any]:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], str]:
        taken = {a.id for a in snap.config.areas}
        given = body.get("Id", body.get("id"))
        if given is None:
            name = body.get("Name", body.get("name"))
            area_id = unique_id(slug(name if isinstance(name, str) else "", "area"), taken)
        else:
            area_id = str(given)
        fields = {"Id": area_id, **{k: v for k, v in body.items() if k not in ("id", "Id")}}
        _, values = validate_fields(AreaConfig, None, fields, ignore=READ_ONLY)
        if area_id in taken:
            raise HTTPException(409, f"an area with Id {area_id} exists")
        return [ConfigChange(snap.free_section("Area", area_id), values)], area_id

    area_id, reload = await edit(ctx, build)
    return await _written(ctx, area_id, reload)


@router.get("/{area_id}", summary="One area")
async def get_area(ctx: Context, _user: Viewer, area_id: AreaId) -> dict[str, Any]:
    return area_out(find_area(await current_config(ctx), area_id))


@router.put("/{area_id}", summary="Change an area",
            description="Fields given change; fields left out keep their value. The Id cannot "
            "change.")
async def put_area(ctx: Context, _admin: Admin, area_id: AreaId,
                   body: Annotated[dict[str, Any], AREA_BODY]) -> dict[str, Any]:
    _, reload = await update_entity(ctx, find_area, AreaConfig, area_id, body, READ_ONLY)
    return await _written(ctx, area_id, reload)


@router.delete("/{area_id}", summary="Remove an area",
               description="Other areas and cameras keep their ids and sections.")
async def delete_area(ctx: Context, _admin: Admin, area_id: AreaId) -> dict[str, Any]:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], str]:
        area = find_area(snap.config, area_id)
        return [ConfigChange(area.section, remove=True)], area.section

    section, reload = await edit(ctx, build)
    return {"deleted": area_id, "section": section, "reload": reload}


@router.put("/{area_id}/cameras", summary="Set which cameras the area sums")
async def put_area_cameras(ctx: Context, _admin: Admin, area_id: AreaId,
                           body: CamerasIn) -> dict[str, Any]:
    cameras = list(dict.fromkeys(body.cameras))
    _, reload = await update_entity(ctx, find_area, AreaConfig, area_id, {"Cameras": cameras})
    return await _written(ctx, area_id, reload)


@router.get("/{area_id}/occupancy_rules", response_model=RulesOut,
            summary="The area's occupancy threshold and time rules")
async def get_rules(ctx: Context, _user: Viewer, area_id: AreaId) -> RulesOut:
    return _rules_out(find_area(await current_config(ctx), area_id))


@router.put(
    "/{area_id}/occupancy_rules", summary="Replace the area's occupancy time rules",
    description="Body: `[{days: [\"Mon\", ...], start: \"HH:MM\", end: \"HH:MM\", limit}]`. "
    "Days are Mon..Sun; end is after start (24:00 allowed); rules of one day may not overlap. "
    "`[]` removes every rule (OccupancyThreshold applies at all times).",
)
async def put_rules(ctx: Context, _admin: Admin, area_id: AreaId,
                    body: list[Rule]) -> dict[str, Any]:
    if len(body) > 200:
        raise RequestValidationError([{"loc": ("body",), "type": "too_long",
                                       "msg": "at most 200 rules"}])
    _check_overlaps(body)
    text = "; ".join(rule.to_ini() for rule in body)
    area, reload = await update_entity(ctx, find_area, AreaConfig, area_id,
                                       {"OccupancyRules": text})
    return {**_rules_out(area).model_dump(), "reload": reload}
