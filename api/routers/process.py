"""Process control: start and stop processing, and each camera's status."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import Admin, Context, Viewer
from libs.config.secrets import mask_secrets

router = APIRouter(tags=["Process"])
_FOLDERS = re.compile(r"(?:/[^/\s:'\"]+)+/(?=[^/\s:'\"]+)")


def public_reason(reason: str) -> str:
    """A reason fit for anyone: credentials masked, folders of file paths left out."""
    return _FOLDERS.sub(".../", str(mask_secrets(reason)))


class CameraStatus(BaseModel):
    status: str = Field(description="running (frames flow), connecting (no frame yet), "
                        "reconnecting (live source lost), stalled (open, no new frame), "
                        "degraded (frames undecodable), finished, failed, stopped, paused, "
                        "disabled or idle")
    frames: int
    next_index: int
    total_frames: int | None
    fps: float = Field(description="frames processed per second over the last second; "
                       "0 when no frames flow")
    last_frame_time: str | None
    restarts: int
    last_error: str | None
    reason: str | None = Field(None, description="why the camera is not running well, now")
    skipped_frames: int = Field(0, description="frames of the source that could not be "
                                "decoded")
    write_error: str | None = Field(None, description="why the camera's records cannot be "
                                    "written now (a full disk); null while writes succeed")
    stage_ms: dict[str, float] = Field(default_factory=dict, description="mean "
                                       "milliseconds per pipeline stage over the last second")
    reconnects: int = Field(0, description="times a live source reconnected in this run")
    dropped_frames: int = Field(0, description="frames a live source delivered that were "
                                "never processed (the camera was faster than the pipeline, "
                                "or faster than its [Source_N] MaxFPS)")
    max_fps: float | None = Field(None, description="the camera's [Source_N] MaxFPS: at most "
                                  "this many frames a second are processed; null: no cap")


@router.get("/health", tags=["Health"], summary="Liveness and writes (public)",
            response_model=None,
            description="200 `{\"status\": \"ok\"}` while the processor runs and its writes "
            "succeed; 503 `{\"status\": \"failing\", \"reasons\": [...]}` (at most 8 "
            "reasons, e.g. `camera x: disk full: writing <path>: [Errno 28] No space left on "
            "device`) while writes fail or the supervisor loop has stopped, so a service "
            "manager can act on it; 200 again once writes succeed.",
            responses={503: {"description": "writes fail or the processor loop stopped"}})
async def health(ctx: Context) -> dict[str, Any] | JSONResponse:
    sup = ctx.supervisor
    if sup is None:  # the API alone (lookout api): nothing to write
        return {"status": "ok"}
    summary = sup.health()  # a summary the loop keeps up to date: no waiting on the loop
    if summary.get("status") != "ok":
        # public: no camera URL's credentials, no folders of the box
        public = {"status": summary.get("status"),
                  "reasons": [public_reason(r) for r in summary.get("reasons", [])]}
        return JSONResponse(public, status_code=503)
    return {"status": "ok"}


class Status(BaseModel):
    cameras: dict[str, CameraStatus] = Field(description="Every camera, by id.")
    outputs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Every sink on the event bus (network sinks such as web_hook_logger), by "
        "section: name, connected, queued, delivered, dropped (records the full outbox let "
        "go), last_error, and where it sends (credentials masked).")


@router.get("/status", response_model=Status,
            summary="Every camera (status, fps, last frame time, restarts, last error) and "
            "every output (connected, queued, delivered, dropped, last error)")
async def status(ctx: Context, user: Viewer) -> dict[str, Any]:
    result: dict[str, Any] = await ctx.on_supervisor(
        lambda s: {"cameras": s.camera_status(), "outputs": s.outputs_status()})
    if user.role != "admin":  # error texts may quote a camera URL: credentials masked
        result = mask_secrets(result)
    return result


@router.get("/status/{camera_id}", response_model=CameraStatus, summary="One camera's status")
async def camera_status(ctx: Context, user: Viewer, camera_id: str) -> dict[str, Any]:
    cams: dict[str, Any] = await ctx.on_supervisor(lambda s: s.camera_status())
    if camera_id not in cams:
        raise HTTPException(404, f"no camera {camera_id!r}")
    result: dict[str, Any] = cams[camera_id]
    if user.role != "admin":
        result = mask_secrets(result)
    return result


@router.put("/start-process-video", response_model=bool,
            summary="Resume processing of every paused camera (true if any was paused)")
async def start_process(ctx: Context, _: Admin) -> bool:
    result: bool = await ctx.on_supervisor(lambda s: s.resume_all())
    return result


@router.put("/stop-process-video", response_model=bool,
            summary="Pause processing of every camera (true if any was running)")
async def stop_process(ctx: Context, _: Admin) -> bool:
    result: bool = await ctx.on_supervisor(lambda s: s.pause_all())
    return result
