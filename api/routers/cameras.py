"""``/cameras``: camera CRUD with stable ids, calibration, ROI, counting lines, images and the
live preview.

A camera is a ``[Source_<Id>]`` section.  Its ``Id`` is its identity in URLs, logs and areas:
the section's name is chosen once at creation and never renumbered, and deleting a camera
touches no other section.  Images from a camera are grabbed in a thread of their own with a
time limit, so a dead RTSP URL never blocks the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import cv2
import numpy as np
from fastapi import APIRouter, Body, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from api.context import ApiContext
from api.deps import Admin, Context, Principal, Viewer
from api.routers.entities import (
    ID_REGEX,
    PROBE_LIMIT,
    STREAM_LIMIT,
    CameraId,
    Slots,
    Snapshot,
    current_config,
    edit,
    mask,
    problem,
    slots,
    slug,
    unique_id,
    update_entity,
    validate_fields,
)
from libs.calibration import CalibrationError, FloorCalibration
from libs.config import ConfigChange
from libs.config.models import LookoutConfig, PluginConfig, SourceConfig, ini_value
from libs.config.plugins import plugin_settings
from libs.config.secrets import mask_text
from libs.config.video_source import (
    MAX_VIDEO_PATH,
    VideoPathError,
    check_video_path,
    is_redis_url,
)
from libs.loggers.video_logger import NAME as VIDEO_LOGGER
from libs.loggers.video_logger import preview_path
from libs.post_processors.engagement import (
    EngagementConfig,
    format_camera_targets,
    parse_camera_targets,
    parse_target,
)
from processor.sources import probe_stream

router = APIRouter(prefix="/cameras", tags=["Cameras"])

T = TypeVar("T")

GRAB_TIMEOUT_S = 10.0  # the API answers within this even when OpenCV hangs
OPEN_TIMEOUT_MS = 8000  # asked of OpenCV (FFmpeg backend) for opening and reading
STREAM_KEEPALIVE_S = 10.0
STREAM_CONFIG_CHECK_S = 2.0
BOUNDARY = "lookoutframe"
READ_ONLY = frozenset({"section", "status"})

Coord = Annotated[float, Field(allow_inf_nan=False, ge=-1e7, le=1e7)]
Point = tuple[Coord, Coord]


# ---------------------------------------------------------------------------------------
# Shapes
# ---------------------------------------------------------------------------------------


class CalibrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    image_points: list[Point] = Field(
        min_length=4, max_length=100, description="Floor points clicked in the image (pixels)."
    )
    floor_points_m: list[Point] | None = Field(
        None, min_length=4, max_length=100,
        validation_alias=AliasChoices("floor_points_m", "floor_points"),
        description="The same points on the floor, in metres (also accepted as "
        "`floor_points`). Give these or `square_side`.",
    )
    square_side: float | None = Field(
        None, gt=0, le=1000, allow_inf_nan=False,
        description="Instead of floor_points_m: the four image points are the corners of a "
        "square on the floor with sides this long (metres), clicked in order around it; the "
        "first is (0, 0), the second (side, 0), the third (side, side), the fourth (0, side).",
    )

    @model_validator(mode="after")
    def _one_floor(self) -> CalibrationIn:
        if (self.floor_points_m is None) == (self.square_side is None):
            raise ValueError("give either floor_points_m (floor_points) or square_side")
        if self.square_side is not None and len(self.image_points) != 4:
            raise ValueError("square_side needs exactly 4 image_points, the square's corners "
                             "in order around it")
        return self

    def floor(self) -> list[tuple[float, float]]:
        """The floor positions in metres, given or made from the square's side."""
        if self.floor_points_m is not None:
            return [(float(x), float(y)) for x, y in self.floor_points_m]
        side = float(self.square_side or 0.0)
        return [(0.0, 0.0), (side, 0.0), (side, side), (0.0, side)]


class CalibrationOut(BaseModel):
    camera_id: str
    image_points: list[tuple[float, float]]
    floor_points_m: list[tuple[float, float]]
    reprojection_error_m: float | None = Field(
        description="RMS distance between the points mapped to the floor and their given "
        "positions (~0 with exactly four points)."
    )
    max_error_m: float | None
    homography: list[list[float]] | None = Field(description="Image pixels -> floor metres.")
    dist_method: str | None = Field(description="The camera's DistMethod (empty = default).")
    error: str | None = Field(None, description="Why the stored points give no mapping.")


class CalibrationWritten(CalibrationOut):
    reload: dict[str, list[str]]


class RoiIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: list[Point] = Field(min_length=3, max_length=256,
                                description="Polygon in image pixels.")


class RoiOut(BaseModel):
    camera_id: str
    points: list[tuple[float, float]]


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID_REGEX, description="1-64 letters, digits, '-' or '_'.")
    start: Point
    end: Point


class LinesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[LineIn] = Field(
        max_length=32,
        description="'in' is a crossing from the left to the right of someone walking the line "
        "from start to end, as drawn on the image.",
    )


class LinesOut(BaseModel):
    camera_id: str
    lines: list[dict[str, Any]]


class Toggle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class StreamCheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    video_path: str = Field(
        min_length=1, max_length=MAX_VIDEO_PATH,
        description="An rtsp://, rtsps://, http:// or https:// URL, a device (0, "
        "/dev/video0), or a video file or folder inside AssetsDirectory or DataDirectory.",
    )


class StreamCheckOut(BaseModel):
    ok: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    error: str | None = None


CAMERA_BODY = Body(
    description="Camera fields by INI key (VideoPath) or field name (video_path); see "
    "[Source_N] in the README. `section` and `status` are read-only and ignored.",
    examples=[{"Name": "Entrance", "VideoPath": "rtsp://10.0.0.5/stream1", "Tags": "door"}],
)


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def find_camera(config: LookoutConfig, camera_id: str) -> SourceConfig:
    try:
        return config.source(camera_id)
    except KeyError:
        raise HTTPException(404, f"no camera with Id {camera_id}") from None


def camera_out(src: SourceConfig, status: Any = None, admin: bool = True) -> dict[str, Any]:
    """A camera as the API shows it; for viewers the credentials in its VideoPath (and in its
    status' error text) are masked."""
    out: dict[str, Any] = {"id": src.id, "section": src.section}
    out.update(src.model_dump(mode="json"))
    out["status"] = status
    result: dict[str, Any] = mask(out, admin)
    return result


async def _statuses(ctx: ApiContext) -> dict[str, Any]:
    if ctx.supervisor is None:
        return {}
    result: dict[str, Any] = await ctx.on_supervisor(lambda s: s.camera_status())
    return result


async def _written(ctx: ApiContext, camera_id: str, reload: dict[str, Any]) -> dict[str, Any]:
    config = await current_config(ctx)
    src = find_camera(config, camera_id)
    out = camera_out(src, (await _statuses(ctx)).get(camera_id))
    out["reload"] = reload
    return out


async def update_camera(ctx: ApiContext, camera_id: str,
                        body: dict[str, Any]) -> tuple[SourceConfig, dict[str, Any]]:
    """Set the fields in ``body`` on the camera, keep the others."""
    src, reload = await update_entity(ctx, find_camera, SourceConfig, camera_id, body,
                                      READ_ONLY)
    return src, reload


@dataclass
class Probe:
    ok: bool
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    error: str | None = None
    image: np.ndarray | None = None


def no_image(camera_id: str) -> HTTPException:
    """404 for an image of a camera whose people come from Redis detection messages."""
    return HTTPException(404, f"camera {camera_id} has no images: its VideoPath is a Redis "
                         "source of detection messages (people, positions and directions only)")


def checked_target(config: LookoutConfig, video_path: str, key: str = "VideoPath",
                   section: str | None = None) -> str | int:
    """What OpenCV opens for a VideoPath, after the one VideoPath check
    (:func:`libs.config.video_source.check_video_path`, as at start-up); 422 naming ``key``
    when refused."""
    try:
        found = check_video_path(video_path, config.assets_dir, config.data_dir, True)
    except VideoPathError as exc:
        raise problem(section, key, exc.message, exc.expected) from exc
    return found.target


def grab(target: str | int) -> Probe:
    """Open ``target``, read one frame, close.  Runs in a probe thread.

    A network camera is first asked whether it answers at all (the processor's own probe,
    which holds no lock): OpenCV's open of a camera that never answers would hold FFmpeg's
    open lock and delay every other probe by its whole timeout."""
    if isinstance(target, str) and "://" in target:
        why = probe_stream(target)
        if why is not None:
            return Probe(False, error=why)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
    cap = cv2.VideoCapture(target, cv2.CAP_ANY, params)
    try:
        if not cap.isOpened():
            return Probe(False, error="cannot open the source")
        ok, image = cap.read()
        if not ok or image is None:
            return Probe(False, error="the source opened but gave no frame")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        height, width = image.shape[:2]
        return Probe(True, int(width), int(height), fps if fps > 0 else None, None, image)
    finally:
        cap.release()


def slot_owner(request: Request, user: Principal) -> str:
    """Whose share a probe or stream slot counts against: the signed-in user, or the client's
    address when authentication is off (everyone is then the same anonymous admin)."""
    if user.username == "anonymous" and request.client is not None:
        return f"address {request.client.host}"
    return user.username


async def run_probe(request: Request, user: Principal, work: Callable[[], T]) -> T:
    """Run ``work`` (opening a camera) in a thread of its own, at most PROBE_LIMIT at once
    and half of them for one user (429 over that), and wait at most GRAB_TIMEOUT_S.  A thread
    that outlives the wait still holds its slot until OpenCV gives up, so hung sources cannot
    pile up threads."""
    probes = slots(request.app.state, "camera_probes", PROBE_LIMIT)
    owner = slot_owner(request, user)
    outcome = probes.try_take(owner)
    if outcome != "ok":
        raise probes.refusal(outcome, "camera probes", retry_after=5)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(value: Any, exc: BaseException | None) -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def run() -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = work()
        except BaseException as exc:
            error = exc
        finally:
            probes.give(owner)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(settle, value, error)

    threading.Thread(target=run, name="camera-probe", daemon=True).start()
    return await asyncio.wait_for(future, GRAB_TIMEOUT_S)


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise HTTPException(500, "JPEG encoding failed")
    data: bytes = buf.tobytes()
    return data


async def _frame_jpeg(ctx: ApiContext, request: Request, user: Principal, camera_id: str,
                      check_live: bool) -> Response:
    config = await current_config(ctx)
    src = find_camera(config, camera_id)
    if check_live and not src.live_feed_enabled:
        raise HTTPException(403, f"the live feed of camera {camera_id} is disabled "
                            "(LiveFeedEnabled = False)")
    if is_redis_url(src.video_path):
        raise no_image(camera_id)
    # Checked again here, as at start-up: a source the rules refuse is never opened.
    target = await ctx.in_thread(checked_target, config, src.video_path, "VideoPath",
                                 src.section)

    def work() -> bytes | str:
        probe = grab(target)
        if not probe.ok or probe.image is None:
            return probe.error or "no frame"
        return _jpeg(probe.image)

    try:
        result = await run_probe(request, user, work)
    except TimeoutError:
        raise HTTPException(504, f"camera {camera_id} gave no frame within "
                            f"{GRAB_TIMEOUT_S:g} s") from None
    if isinstance(result, str):
        raise HTTPException(502, f"camera {camera_id}: {mask_text(result)}")
    return Response(result, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _calibration_out(src: SourceConfig) -> CalibrationOut:
    img, flr = src.calibration_image_points, src.calibration_floor_points
    base: dict[str, Any] = {"camera_id": src.id, "image_points": img, "floor_points_m": flr,
                            "dist_method": src.dist_method}
    try:
        cal = FloorCalibration.from_points(img, flr)
    except CalibrationError as exc:
        return CalibrationOut(**base, reprojection_error_m=None, max_error_m=None,
                              homography=None, error=str(exc))
    return CalibrationOut(**base, reprojection_error_m=cal.reprojection_error_m,
                          max_error_m=cal.max_error_m, homography=cal.homography.tolist())


def _calibration_key(message: str) -> str:
    """Which of the two keys a calibration error is about (the first one it names)."""
    img = message.find("CalibrationImagePoints")
    flr = message.find("CalibrationFloorPoints")
    if flr >= 0 and (img < 0 or flr < img):
        return "CalibrationFloorPoints"
    return "CalibrationImagePoints"


def _preview_file(config: LookoutConfig, camera_id: str) -> Path:
    """The preview JPEG of a camera whose id was validated; never outside its folder."""
    path = preview_path(config, camera_id)
    root = path.parent.parent.resolve()
    if path.parent.name != camera_id or not path.resolve().is_relative_to(root):
        raise HTTPException(404, f"no preview for camera {camera_id}")
    return path


def _no_preview(config: LookoutConfig, camera_id: str) -> HTTPException:
    if not any(p.name == VIDEO_LOGGER and p.enabled for p in config.source_loggers):
        return HTTPException(404, f"no preview of camera {camera_id}: the video_logger source "
                             "logger is not enabled, so the processor writes none")
    return HTTPException(404, f"no preview of camera {camera_id} yet: the processor writes one "
                         "(video_logger) once the camera is running")


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _part(data: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    return head + data + b"\r\n"


# ---------------------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------------------


@router.get("", summary="Every camera, with its processing status when the processor runs")
async def list_cameras(ctx: Context, user: Viewer) -> list[dict[str, Any]]:
    config = await current_config(ctx)
    statuses = await _statuses(ctx)
    admin = user.role == "admin"
    return [camera_out(src, statuses.get(src.id), admin) for src in config.sources]


@router.post(
    "", status_code=201, summary="Add a camera",
    description="`Id` is assigned from `Name` when not given and never changes. VideoPath is "
    "checked like at start-up: a local file or folder must exist; URLs and devices are "
    "accepted. The new camera starts; no other camera restarts.",
)
async def create_camera(ctx: Context, _admin: Admin,
                        body: Annotated[dict[str, Any], CAMERA_BODY]) -> dict[str, Any]:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], str]:
        taken = {s.id for s in snap.config.sources}
        given = body.get("Id", body.get("id"))
        if given is None:
            name = body.get("Name", body.get("name"))
            camera_id = unique_id(slug(name if isinstance(name, str) else "", "camera"), taken)
        else:
            camera_id = str(given)
        fields = {"Id": camera_id, **{k: v for k, v in body.items() if k not in ("id", "Id")}}
        _, values = validate_fields(SourceConfig, None, fields, ignore=READ_ONLY)
        if camera_id in taken:
            raise HTTPException(409, f"a camera with Id {camera_id} exists")
        return [ConfigChange(snap.free_section("Source", camera_id), values)], camera_id

    camera_id, reload = await edit(ctx, build)
    return await _written(ctx, camera_id, reload)


@router.post("/check_stream", response_model=StreamCheckOut,
             summary="Try to open a video source and read one frame",
             description="Runs in a thread with a time limit: a dead URL answers "
             f"ok=false within {GRAB_TIMEOUT_S:g} s.")
async def check_stream(ctx: Context, admin: Admin, request: Request,
                       body: StreamCheckIn) -> StreamCheckOut:
    config = await current_config(ctx)
    target = await ctx.in_thread(checked_target, config, body.video_path, "video_path")
    if is_redis_url(body.video_path):
        return StreamCheckOut(ok=False, error="a Redis source of detection messages has no "
                              "frames to read; the processor's camera status shows whether "
                              "it reaches Redis")
    try:
        probe = await run_probe(request, admin, lambda: grab(target))
    except TimeoutError:
        return StreamCheckOut(ok=False, error=f"no frame within {GRAB_TIMEOUT_S:g} s")
    return StreamCheckOut(ok=probe.ok, width=probe.width, height=probe.height, fps=probe.fps,
                          error=probe.error)


# ---------------------------------------------------------------------------------------
# One camera
# ---------------------------------------------------------------------------------------


@router.get("/{camera_id}", summary="One camera")
async def get_camera(ctx: Context, user: Viewer, camera_id: CameraId) -> dict[str, Any]:
    src = find_camera(await current_config(ctx), camera_id)
    return camera_out(src, (await _statuses(ctx)).get(camera_id), user.role == "admin")


@router.put("/{camera_id}", summary="Change a camera",
            description="Fields given change; fields left out keep their value (send an empty "
            "value to clear one). The Id cannot change. Only this camera restarts.")
async def put_camera(ctx: Context, _admin: Admin, camera_id: CameraId,
                     body: Annotated[dict[str, Any], CAMERA_BODY]) -> dict[str, Any]:
    _, reload = await update_camera(ctx, camera_id, body)
    return await _written(ctx, camera_id, reload)


@router.delete("/{camera_id}", summary="Remove a camera",
               description="Other cameras keep their ids and sections. Refused (409) while an "
               "area includes the camera.")
async def delete_camera(ctx: Context, _admin: Admin, camera_id: CameraId) -> dict[str, Any]:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], str]:
        src = find_camera(snap.config, camera_id)
        areas = [a.id for a in snap.config.areas if camera_id in a.cameras]
        if areas:
            raise HTTPException(409, f"camera {camera_id} belongs to area(s) "
                                f"{', '.join(areas)}; remove it from them first")
        return [ConfigChange(src.section, remove=True)], src.section

    section, reload = await edit(ctx, build)
    return {"deleted": camera_id, "section": section, "reload": reload}


@router.put("/{camera_id}/enable", summary="Process this camera (persisted: Enabled = True)")
async def enable_camera(ctx: Context, _admin: Admin, camera_id: CameraId) -> dict[str, Any]:
    _, reload = await update_camera(ctx, camera_id, {"Enabled": True})
    if ctx.supervisor is not None and camera_id not in reload["restarted"] + reload["started"]:
        await ctx.on_supervisor(lambda s: s.resume_camera(camera_id))
    return await _written(ctx, camera_id, reload)


@router.put("/{camera_id}/disable", summary="Stop processing this camera (Enabled = False)")
async def disable_camera(ctx: Context, _admin: Admin, camera_id: CameraId) -> dict[str, Any]:
    _, reload = await update_camera(ctx, camera_id, {"Enabled": False})
    return await _written(ctx, camera_id, reload)


@router.put("/{camera_id}/live_feed", summary="Allow or forbid the live preview",
            description="LiveFeedEnabled: when false, /image, /snapshot and /stream answer 403.")
async def put_live_feed(ctx: Context, _admin: Admin, camera_id: CameraId,
                        body: Toggle) -> dict[str, Any]:
    _, reload = await update_camera(ctx, camera_id, {"LiveFeedEnabled": body.enabled})
    return await _written(ctx, camera_id, reload)


# -- images ---------------------------------------------------------------------------------


@router.get("/{camera_id}/image", summary="A frame from the camera now (JPEG)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def camera_image(ctx: Context, user: Viewer, request: Request,
                       camera_id: CameraId) -> Response:
    return await _frame_jpeg(ctx, request, user, camera_id, check_live=True)


@router.get("/{camera_id}/calibration_image",
            summary="A raw frame to click calibration points on (JPEG)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def calibration_image(ctx: Context, admin: Admin, request: Request,
                            camera_id: CameraId) -> Response:
    return await _frame_jpeg(ctx, request, admin, camera_id, check_live=False)


@router.get("/{camera_id}/snapshot", summary="The latest annotated preview (JPEG)",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
async def snapshot(ctx: Context, _user: Viewer, camera_id: CameraId) -> Response:
    config = await current_config(ctx)
    src = find_camera(config, camera_id)
    if not src.live_feed_enabled:
        raise HTTPException(403, f"the live feed of camera {camera_id} is disabled")
    if is_redis_url(src.video_path):  # an old preview of its previous source is not shown
        raise no_image(camera_id)
    data = await ctx.in_thread(_read_or_none, _preview_file(config, camera_id))
    if data is None:
        raise _no_preview(config, camera_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.get(
    "/{camera_id}/stream", summary="The annotated preview as an MJPEG stream",
    description="multipart/x-mixed-replace: a part each time the processor writes a new "
    "preview. Ends when the client goes, the camera is removed or its live feed is disabled.",
    response_class=StreamingResponse,
    responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}}},
)
async def stream(ctx: Context, user: Viewer, request: Request, camera_id: CameraId,
                 max_fps: Annotated[float, Query(gt=0, le=30)] = 10.0) -> StreamingResponse:
    config = await current_config(ctx)
    src = find_camera(config, camera_id)
    if not src.live_feed_enabled:
        raise HTTPException(403, f"the live feed of camera {camera_id} is disabled")
    if is_redis_url(src.video_path):  # an old preview of its previous source is not shown
        raise no_image(camera_id)
    path = _preview_file(config, camera_id)
    streams = slots(request.app.state, "live_streams", STREAM_LIMIT)
    # The slot is taken here, before the answer starts, so one user cannot open more than
    # their share (429) and the whole limit is never overrun (503); the response gives it
    # back however it ends (stream over, client gone, cancelled before the first part).
    owner = slot_owner(request, user)
    outcome = streams.try_take(owner)
    if outcome != "ok":
        raise streams.refusal(outcome, "live streams", retry_after=10)
    held = _Held(streams, owner)

    async def still_allowed() -> bool:
        cfg = await current_config(ctx)
        return any(s.id == camera_id and s.live_feed_enabled for s in cfg.sources)

    async def frames() -> AsyncIterator[bytes]:
        try:
            last_key: tuple[int, int] | None = None
            last_sent = last_check = time.monotonic()
            while not await request.is_disconnected():
                now = time.monotonic()
                if now - last_check >= STREAM_CONFIG_CHECK_S:
                    last_check = now
                    if not await still_allowed():
                        return
                key = await ctx.in_thread(_stat_key, path)
                if key is not None and (key != last_key or now - last_sent >= STREAM_KEEPALIVE_S):
                    data = await ctx.in_thread(_read_or_none, path)
                    if data:
                        last_key, last_sent = key, now
                        yield _part(data)
                await asyncio.sleep(1.0 / max_fps)
        finally:
            held.release()

    return _SlotStreamingResponse(
        held, frames(), media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class _Held:
    """One taken slot, given back exactly once."""

    def __init__(self, pool: Slots, user: str) -> None:
        self.pool, self.user = pool, user
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self.pool.give(self.user)


class _SlotStreamingResponse(StreamingResponse):
    """A stream that gives its slot back however the response ends (finished, client gone,
    cancelled before the first byte)."""

    def __init__(self, held: _Held, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held = held

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._held.release()


# -- calibration, ROI, lines -----------------------------------------------------------------


@router.get("/{camera_id}/calibration", response_model=CalibrationOut,
            summary="The floor calibration and its reprojection error")
async def get_calibration(ctx: Context, _user: Viewer, camera_id: CameraId) -> CalibrationOut:
    src = find_camera(await current_config(ctx), camera_id)
    if not src.calibration_image_points:
        raise HTTPException(404, f"camera {camera_id} has no calibration")
    return await ctx.in_thread(_calibration_out, src)


@router.put(
    "/{camera_id}/calibration", response_model=CalibrationWritten,
    summary="Calibrate the floor from >= 4 image/floor point pairs (or a square's side)",
    description="Fits the image-to-floor mapping; degenerate points (repeated, three in a "
    "row, orders that do not match) are refused with 422 and the reason. Saves the points "
    "(CalibrationImagePoints, CalibrationFloorPoints) and returns the reprojection error.",
)
async def put_calibration(ctx: Context, _admin: Admin, camera_id: CameraId,
                          body: CalibrationIn) -> CalibrationWritten:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        src = find_camera(snap.config, camera_id)
        floor = body.floor()
        _fit(src.section, body.image_points, floor)
        values = {"CalibrationImagePoints": ini_value(body.image_points),
                  "CalibrationFloorPoints": ini_value(floor)}
        return [ConfigChange(src.section, values)], None

    _, reload = await edit(ctx, build)
    src = find_camera(await current_config(ctx), camera_id)
    out = await ctx.in_thread(_calibration_out, src)
    return CalibrationWritten(**out.model_dump(), reload=reload)


@router.delete("/{camera_id}/calibration", summary="Remove the floor calibration",
               description="Refused (422) while the camera measures distances with "
               "CalibratedDistance.")
async def delete_calibration(ctx: Context, _admin: Admin, camera_id: CameraId) -> dict[str, Any]:
    src, reload = await update_camera(
        ctx, camera_id, {"CalibrationImagePoints": "", "CalibrationFloorPoints": ""}
    )
    return {"camera_id": src.id, "reload": reload}


@router.get("/{camera_id}/roi", response_model=RoiOut, summary="The region of interest")
async def get_roi(ctx: Context, _user: Viewer, camera_id: CameraId) -> RoiOut:
    src = find_camera(await current_config(ctx), camera_id)
    return RoiOut(camera_id=src.id, points=src.roi)


@router.put("/{camera_id}/roi", summary="Set the region of interest (a polygon in pixels)")
async def put_roi(ctx: Context, _admin: Admin, camera_id: CameraId,
                  body: RoiIn) -> dict[str, Any]:
    src, reload = await update_camera(ctx, camera_id, {"ROI": body.points})
    return {**RoiOut(camera_id=src.id, points=src.roi).model_dump(), "reload": reload}


@router.delete("/{camera_id}/roi", summary="Remove the region of interest (whole image)")
async def delete_roi(ctx: Context, _admin: Admin, camera_id: CameraId) -> dict[str, Any]:
    src, reload = await update_camera(ctx, camera_id, {"ROI": ""})
    return {**RoiOut(camera_id=src.id, points=src.roi).model_dump(), "reload": reload}


def _lines_out(src: SourceConfig) -> LinesOut:
    return LinesOut(camera_id=src.id,
                    lines=[line.model_dump(mode="json") for line in src.counting_lines])


@router.get("/{camera_id}/lines", response_model=LinesOut,
            summary="The named lines people are counted in and out across")
async def get_lines(ctx: Context, _user: Viewer, camera_id: CameraId) -> LinesOut:
    return _lines_out(find_camera(await current_config(ctx), camera_id))


@router.put("/{camera_id}/lines", summary="Replace the counting lines")
async def put_lines(ctx: Context, _admin: Admin, camera_id: CameraId,
                    body: LinesIn) -> dict[str, Any]:
    lines = [line.model_dump() for line in body.lines]
    src, reload = await update_camera(ctx, camera_id, {"CountingLines": lines})
    return {**_lines_out(src).model_dump(), "reload": reload}


def _fit(section: str | None, image_points: Any, floor_points: Any) -> FloorCalibration:
    """The calibration through these points, or 422 naming the key and the reason (the one
    check of PUT /calibration and its preview)."""
    try:
        return FloorCalibration.from_points(image_points, floor_points)
    except CalibrationError as exc:
        raise problem(section, _calibration_key(str(exc)), str(exc),
                      "4 or more floor points spread over the image, no three in a row, "
                      "listed in the same order in both lists") from exc


# -- calibration preview ---------------------------------------------------------------------

ENGAGEMENT = "engagement"  # the post-processor's registered Name
BIRDSEYE_MAX_PX = 800  # the longer side of the bird's-eye preview
BIRDSEYE_MARGIN = 0.25  # of the floor points' extent, on every side (at least 0.5 m)


class CalibrationPreview(BaseModel):
    camera_id: str
    image_points: list[tuple[float, float]]
    floor_points: list[tuple[float, float]] = Field(
        description="The floor positions used (metres): given, or the square's corners.")
    reprojection_error_px: float = Field(
        description="RMS distance, in image pixels, between the clicked points and their floor "
        "positions mapped back into the image (~0 with exactly four points).")
    max_error_px: float
    reprojection_error_m: float
    max_error_m: float
    birdseye_jpeg: str | None = Field(
        description="Base64 JPEG: a frame of the camera warped to the floor seen from above "
        "(1 px = metres_per_pixel), the floor points drawn; null when no frame came.")
    birdseye_width: int | None = None
    birdseye_height: int | None = None
    metres_per_pixel: float | None = None
    image_error: str | None = Field(None, description="Why there is no bird's-eye image.")


def reprojection_px(cal: FloorCalibration) -> tuple[float, float]:
    """RMS and largest distance (pixels) between the image points and their floor points
    mapped back into the image through the inverse mapping."""
    inv = np.linalg.inv(cal.homography)
    flr = cal.floor_points_m
    proj = (inv[:, :2] @ flr.T + inv[:, 2:3]).T
    with np.errstate(divide="ignore", invalid="ignore"):
        back = proj[:, :2] / proj[:, 2:3]
    err = np.linalg.norm(back - cal.image_points, axis=1)
    if not np.isfinite(err).all():
        return float("inf"), float("inf")
    return float(np.sqrt(np.mean(err * err))), float(err.max())


def birdseye(image: np.ndarray, cal: FloorCalibration,
             max_px: int = BIRDSEYE_MAX_PX) -> tuple[np.ndarray, float]:
    """``image`` warped onto the floor around the calibration points, seen from above, and
    its scale (metres per pixel).  Floor x runs right, floor y down."""
    flr = cal.floor_points_m
    lo, hi = flr.min(axis=0), flr.max(axis=0)
    margin = np.maximum((hi - lo) * BIRDSEYE_MARGIN, 0.5)
    lo, hi = lo - margin, hi + margin
    extent = hi - lo
    scale = max_px / float(extent.max())  # pixels per metre
    width = max(1, round(float(extent[0]) * scale))
    height = max(1, round(float(extent[1]) * scale))
    to_px = np.array([[scale, 0.0, -scale * lo[0]], [0.0, scale, -scale * lo[1]],
                      [0.0, 0.0, 1.0]])
    warp = to_px @ cal.homography
    out = cv2.warpPerspective(image, warp, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(64, 64, 64))
    pts = (to_px[:2, :2] @ flr.T + to_px[:2, 2:3]).T
    corners = np.round(pts).astype(np.int32)
    cv2.polylines(out, [corners.reshape(-1, 1, 2)], True, (0, 200, 255), 2, cv2.LINE_AA)
    for i, (x, y) in enumerate(corners):
        cv2.circle(out, (int(x), int(y)), 6, (0, 200, 255), -1, cv2.LINE_AA)
        cv2.putText(out, str(i + 1), (int(x) + 8, int(y) - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
    return out, 1.0 / scale


@router.post(
    "/{camera_id}/calibration/preview", response_model=CalibrationPreview,
    summary="Try a calibration without saving it: its errors and a bird's-eye view",
    description="Same body and checks as PUT /calibration (422 with the reason for "
    "degenerate points). Grabs a frame from the camera (as /calibration_image) and warps it "
    "onto the floor; nothing is written.",
)
async def preview_calibration(ctx: Context, admin: Admin, request: Request,
                              camera_id: CameraId, body: CalibrationIn) -> CalibrationPreview:
    config = await current_config(ctx)
    src = find_camera(config, camera_id)
    floor = body.floor()
    cal = await ctx.in_thread(_fit, src.section, body.image_points, floor)
    err_px, max_px = reprojection_px(cal)
    out = CalibrationPreview(
        camera_id=src.id, image_points=[(float(x), float(y)) for x, y in body.image_points],
        floor_points=floor, reprojection_error_px=err_px, max_error_px=max_px,
        reprojection_error_m=cal.reprojection_error_m, max_error_m=cal.max_error_m,
        birdseye_jpeg=None)
    if is_redis_url(src.video_path):
        out.image_error = no_image(camera_id).detail
        return out
    target = await ctx.in_thread(checked_target, config, src.video_path, "VideoPath",
                                 src.section)

    def work() -> tuple[bytes, int, int, float] | str:
        probe = grab(target)
        if not probe.ok or probe.image is None:
            return probe.error or "no frame"
        view, mpp = birdseye(probe.image, cal)
        return _jpeg(view), int(view.shape[1]), int(view.shape[0]), mpp

    try:
        result = await run_probe(request, admin, work)
    except TimeoutError:
        result = f"no frame within {GRAB_TIMEOUT_S:g} s"
    if isinstance(result, str):
        out.image_error = f"camera {camera_id}: {mask_text(result)}"
        return out
    data, width, height, mpp = result
    out.birdseye_jpeg = base64.b64encode(data).decode()
    out.birdseye_width, out.birdseye_height, out.metres_per_pixel = width, height, mpp
    return out


# -- zones -----------------------------------------------------------------------------------


class ZoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID_REGEX, description="1-64 letters, digits, '-' or '_'.")
    points: list[Point] = Field(min_length=3, max_length=1024,
                                description="Polygon in image pixels.")


class ZonesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    zones: list[ZoneIn] = Field(default_factory=list, max_length=64,
                                description="Named regions for presence and dwell (Zones).")
    entry_zones: list[ZoneIn] = Field(
        default_factory=list, max_length=64,
        description="Named entrance regions for traffic counts (EntryZones).")


class ZonesOut(BaseModel):
    camera_id: str
    zones: list[dict[str, Any]]
    entry_zones: list[dict[str, Any]]


def _zones_out(src: SourceConfig) -> ZonesOut:
    return ZonesOut(camera_id=src.id,
                    zones=[z.model_dump(mode="json") for z in src.zones],
                    entry_zones=[z.model_dump(mode="json") for z in src.entry_zones])


@router.get("/{camera_id}/zones", response_model=ZonesOut,
            summary="The camera's zones and entry zones (image pixels)")
async def get_zones(ctx: Context, _user: Viewer, camera_id: CameraId) -> ZonesOut:
    return _zones_out(find_camera(await current_config(ctx), camera_id))


@router.put("/{camera_id}/zones", summary="Replace the zones and entry zones",
            description="Both lists are replaced (send [] to clear one); checked as the "
            "configuration loader checks Zones and EntryZones (names unique per list, 3 or "
            "more points). Only this camera restarts.")
async def put_zones(ctx: Context, _admin: Admin, camera_id: CameraId,
                    body: ZonesIn) -> dict[str, Any]:
    fields = {"Zones": [z.model_dump() for z in body.zones],
              "EntryZones": [z.model_dump() for z in body.entry_zones]}
    src, reload = await update_camera(ctx, camera_id, fields)
    return {**_zones_out(src).model_dump(), "reload": reload}


# -- engagement target -------------------------------------------------------------------------


class TargetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: list[Point] | None = Field(
        min_length=1, max_length=2,
        description="One point or a segment (two points), image pixels; null removes the "
        "camera's own target (the processor-wide Target, else the image's bottom edge, "
        "applies).")


class TargetOut(BaseModel):
    camera_id: str
    section: str | None = Field(description="The engagement post-processor's section; null "
                                "when none is configured.")
    enabled: bool = Field(description="Whether that post-processor runs.")
    points: list[tuple[float, float]] | None = Field(
        description="This camera's own target (CameraTargets); null when it has none.")
    default_points: list[tuple[float, float]] | None = Field(
        description="The processor-wide Target used by cameras without their own; null = "
        "the image's bottom edge.")
    effective: Literal["camera", "default", "bottom_edge"] = Field(
        description="Which of them this camera uses.")


def _engagement_part(config: LookoutConfig) -> PluginConfig | None:
    parts = [p for p in config.source_post_processors if p.name == ENGAGEMENT]
    enabled = [p for p in parts if p.enabled]
    found = enabled or parts
    return found[0] if found else None


def _points(target: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in np.asarray(target).reshape(-1, 2)]


def _target_out(config: LookoutConfig, camera_id: str) -> TargetOut:
    part = _engagement_part(config)
    if part is None:
        return TargetOut(camera_id=camera_id, section=None, enabled=False, points=None,
                         default_points=None, effective="bottom_edge")
    settings = plugin_settings(EngagementConfig, part)
    own = parse_camera_targets(settings.camera_targets).get(camera_id)
    default = _points(parse_target(settings.target)) if settings.target else None
    effective: Literal["camera", "default", "bottom_edge"] = (
        "camera" if own is not None else "default" if default else "bottom_edge")
    return TargetOut(camera_id=camera_id, section=part.section, enabled=part.enabled,
                     points=_points(own) if own is not None else None,
                     default_points=default, effective=effective)


@router.get("/{camera_id}/engagement_target", response_model=TargetOut,
            summary="What the engagement post-processor counts as facing, for this camera")
async def get_engagement_target(ctx: Context, _user: Viewer,
                                camera_id: CameraId) -> TargetOut:
    config = await current_config(ctx)
    find_camera(config, camera_id)
    return _target_out(config, camera_id)


@router.put("/{camera_id}/engagement_target",
            summary="Set (or remove, with null) this camera's engagement target",
            description="Written to the camera's entry of CameraTargets in the engagement "
            "post-processor's section (the processor-wide Target stays the default of the "
            "other cameras). 409 when no engagement post-processor is configured.")
async def put_engagement_target(ctx: Context, _admin: Admin, camera_id: CameraId,
                                body: TargetIn) -> dict[str, Any]:
    def build(snap: Snapshot) -> tuple[list[ConfigChange], None]:
        find_camera(snap.config, camera_id)
        part = _engagement_part(snap.config)
        if part is None:
            raise HTTPException(409, "no engagement post-processor is configured; add a "
                                "[SourcePostProcessor_N] section with Name = engagement")
        settings = plugin_settings(EngagementConfig, part)
        targets = parse_camera_targets(settings.camera_targets)
        if body.points is None:
            targets.pop(camera_id, None)
        else:
            targets[camera_id] = np.array(body.points, np.float64)
        try:
            text = format_camera_targets(targets)
        except ValueError as exc:
            raise problem(part.section, "CameraTargets", str(exc)) from exc
        return [ConfigChange(part.section, {"CameraTargets": text})], None

    _, reload = await edit(ctx, build)
    out = _target_out(await current_config(ctx), camera_id)
    return {**out.model_dump(), "reload": reload}
