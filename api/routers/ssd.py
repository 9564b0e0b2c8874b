"""The calls of Smart Social Distancing (the reference system) that Lookout's own routes do
not already answer with the reference's method and body (docs/ssd-api.md).

* ``GET /metrics/<cameras|areas>/<reference name>/<period>``: Lookout's metric routes under
  the reference's names, from the one table :data:`api.ssd.METRIC_ALIASES`.
* ``PUT /export``: the reference's body (``areas``, ``all_areas``, ``cameras``,
  ``all_cameras``, ``from_date``, ``to_date``, ``data_types``), answered with Lookout's zip.
* ``POST /ml_model/{camera_id}``: the reference's body, applied as ``PUT /ml_model`` does
  (the camera's own detector keys, only that camera restarts).
* ``POST /slack/enable``, ``DELETE /slack/revoke``: the reference's methods of Lookout's
  Slack routes (``POST /slack/add-channel?channel=`` is served by :mod:`api.routers.slack`).

Every route needs the same role as the Lookout route it stands for.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Admin, Context, Viewer
from api.params import MAX_RANGE_DAYS, invalid, today_in
from api.routers import slack
from api.routers.config import MLModelIn, MLModelWritten, put_ml_model
from api.routers.entities import CameraId
from api.routers.export import EXPORT_RESPONSES, ExportRequest, _export
from api.routers.metrics import METRICS, LineCrossingMetric, add_alias_routes
from api.ssd import METRIC_ALIASES

metric_aliases = APIRouter(prefix="/metrics", tags=["Metrics"])
add_alias_routes(metric_aliases, METRICS)

router = APIRouter(tags=["Smart Social Distancing"])


# ---------------------------------------------------------------------------------------
# PUT /export
# ---------------------------------------------------------------------------------------

RAW_DATA = "raw_data"
ALL_DATA = "all_data"
ReferenceDataType = Literal["raw_data", "occupancy", "social-distancing", "facemask-usage",
                            "in-out", "dwell-time", "all_data"]


class ReferenceExport(BaseModel):
    """The reference's export body."""

    model_config = ConfigDict(extra="forbid")

    areas: list[str] = Field(default_factory=list, max_length=1000)
    all_areas: bool = False
    cameras: list[str] = Field(default_factory=list, max_length=1000)
    all_cameras: bool = False
    from_date: str | None = Field(None, max_length=40, description="YYYY-MM-DD; with to_date.")
    to_date: str | None = Field(None, max_length=40, description="YYYY-MM-DD; with from_date.")
    data_types: list[ReferenceDataType] = Field(min_length=1, max_length=16)


def export_selection(
    data_types: list[ReferenceDataType],
) -> tuple[list[str], frozenset[str] | None]:
    """Lookout's export data types and report kinds for the reference's ``data_types``:
    ``raw_data`` is the raw logs, ``all_data`` raw logs, reports and events, and a metric name
    that metric's reports (line crossings: their event logs)."""
    if ALL_DATA in data_types:
        return ["raw", "reports", "events"], None
    types: list[str] = []
    kinds: set[str] = set()
    for item in data_types:
        name = METRIC_ALIASES.get(item, item)
        if item == RAW_DATA:
            types.append("raw")
        elif name == LineCrossingMetric.name:
            types.append("events")
        else:
            types.append("reports")
            kinds.add(name)
    return list(dict.fromkeys(types)), frozenset(kinds)


@router.put("/export", tags=["Export"], response_class=StreamingResponse,
            responses=EXPORT_RESPONSES,
            summary="Export as a zip, with Smart Social Distancing's body",
            description="`all_cameras`/`all_areas` select every configured one; the cameras "
            "of the chosen areas are exported too. Both dates or neither: without dates, the "
            f"{MAX_RANGE_DAYS} days ending today (the longest range Lookout exports). The zip "
            "is the one of `POST /export`.")
async def export_put(ctx: Context, _: Viewer, body: ReferenceExport) -> StreamingResponse:
    config = await ctx.in_thread(ctx.config)
    if not (body.cameras or body.all_cameras or body.areas or body.all_areas):
        invalid("cameras", "no cameras or areas were given: give at least one, or set "
                "all_cameras or all_areas", "body")
    if (body.from_date is None) != (body.to_date is None):
        invalid("from_date", "give both from_date and to_date, or neither", "body")
    from_date, to_date = body.from_date, body.to_date
    if from_date is None:
        today = today_in(config.app.tzinfo)
        from_date = (today - timedelta(days=MAX_RANGE_DAYS - 1)).isoformat()
        to_date = today.isoformat()
    areas = None if body.all_areas else body.areas
    cameras: list[str] | None = None
    if not body.all_cameras:
        cameras = list(body.cameras)
        wanted = set(areas if areas is not None else [a.id for a in config.areas])
        for area in config.areas:
            if area.id in wanted:
                cameras += area.cameras
        cameras = list(dict.fromkeys(cameras))
    types, kinds = export_selection(body.data_types)
    request = ExportRequest(cameras=cameras, areas=areas, from_date=from_date,
                            to_date=to_date, data_types=types)
    return await _export(ctx, request, "body", kinds)


# ---------------------------------------------------------------------------------------
# POST /ml_model/{camera_id}
# ---------------------------------------------------------------------------------------


class ReferenceMLModel(BaseModel):
    """The reference's body; fields it leaves out keep the camera's current values."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(max_length=32, description="Must be [Detector] Device (any case): "
                        "Lookout runs every camera on one device.")
    name: str = Field(max_length=64, description="The model family, e.g. yolox_nano.")
    image_size: str = Field(max_length=32, pattern=r"^\s*\d+\s*,\s*\d+\s*,\s*3\s*$",
                            description="'width,height,3'.")
    model_path: str = Field("", max_length=1024, description="Empty: the family's file.")
    class_id: int | None = Field(None, ge=0)
    min_score: float | None = Field(None, ge=0, le=1)
    tensorrt_precision: Literal[16, 32] | None = None


@router.post("/ml_model/{camera_id}", tags=["ML Model"], response_model=MLModelWritten,
             summary="Set a camera's detector model (Smart Social Distancing's body)",
             responses={422: {"description": "a value Lookout cannot apply to one camera "
                              "(device, tensorrt_precision), or an unknown model"}})
async def post_ml_model(ctx: Context, admin: Admin, camera_id: CameraId,
                        body: ReferenceMLModel,
                        reboot_processor: Annotated[bool, Query(
                            description="Accepted and not needed: only the camera restarts, "
                            "always.")] = True) -> MLModelWritten:
    config = await ctx.in_thread(ctx.config)
    device = config.detector.device
    if body.device.strip().lower() != device.lower():
        invalid("device", f"{body.device[:32]!r}: every camera runs on [Detector] Device = "
                f"{device}; change the device for all cameras with PUT /detector", "body")
    precision = config.detector.tensorrt_precision
    if body.tensorrt_precision is not None and body.tensorrt_precision != precision:
        invalid("tensorrt_precision", f"one precision for every camera: [Detector] "
                f"TensorrtPrecision = {precision}; change it with PUT /detector", "body")
    width, height, _ = (int(v) for v in body.image_size.split(","))
    values: dict[str, object] = {"name": body.name, "image_size": (width, height)}
    if body.model_path:
        values["model_path"] = body.model_path
    for key in ("class_id", "min_score"):
        if key in body.model_fields_set:
            values[key] = getattr(body, key)
    return await put_ml_model(ctx, admin, camera_id, MLModelIn.model_validate(values))


# ---------------------------------------------------------------------------------------
# /slack with the reference's methods
# ---------------------------------------------------------------------------------------


class ReferenceSlackEnable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_token: str | None = Field(None, max_length=512, description="The reference's bot "
                                   "token: Lookout cannot use one (422 that says so).")
    webhook_url: str | None = Field(None, min_length=8, max_length=2048,
                                    description="An incoming webhook's URL, as PUT "
                                    "/slack/enable takes it.")
    channel: str | None = Field(None, pattern=slack.CHANNEL)


BOT_TOKEN = (
    "Lookout posts Slack notifications through an incoming webhook, not a bot token: send "
    "{\"webhook_url\": \"https://hooks.slack.com/services/...\", \"channel\": ...} instead "
    "(docs/integrations/notifications.md)"
)


@router.post("/slack/enable", tags=["Slack"], status_code=204,
             summary="Turn Slack notifications on (Smart Social Distancing's method)",
             responses={422: {"description": "a bot token (user_token) and no webhook_url: "
                              "Lookout posts through an incoming webhook"}})
async def post_slack_enable(ctx: Context, admin: Admin,
                            body: ReferenceSlackEnable) -> Response:
    if body.webhook_url is None:
        invalid("user_token" if body.user_token else "webhook_url", BOT_TOKEN, "body")
    await slack.enable(ctx, admin, slack.EnableIn(webhook_url=body.webhook_url,
                                                  channel=body.channel))
    return Response(status_code=204)


@router.delete("/slack/revoke", tags=["Slack"], status_code=204,
               summary="Forget the webhook, notifications off (Smart Social Distancing's "
               "method)")
async def delete_slack_revoke(ctx: Context, admin: Admin) -> Response:
    await slack.revoke(ctx, admin)
    return Response(status_code=204)
