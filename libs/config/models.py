"""Pydantic models of every INI section.

Field aliases are the INI keys users know from Smart Social Distancing; each field's
``description`` is its documentation and its ``form`` (in ``json_schema_extra``) is the
expected form quoted in error messages.  Unknown keys are rejected.

Each section of :class:`LookoutConfig`, and each key of the sections marked ``BY_KEY``, says in
its type which cameras a change of it restarts (a :class:`~libs.config.restarts.Restarts`
marker); the supervisor derives its reloads from these markers.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from libs.config.errors import ConfigProblem
from libs.config.restarts import Restarts
from libs.identity import check_processor_name, host_processor_name

# ---------------------------------------------------------------------------------------
# Value forms as they are written in an INI file
# ---------------------------------------------------------------------------------------

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# Size limits of what people (and the API) can set, so the file stays small enough to be read,
# shown and sent back whole.
MAX_NAME = 256
"""Characters in a display name (cameras, areas)."""
MAX_LIST_ITEMS = 256
"""Tags, e-mail addresses, cameras of an area."""
MAX_POINTS = 1024
"""Points of a region of interest, a zone or a calibration."""
MAX_SHAPES = 64
"""Counting lines, zones or entry zones of one camera."""
HHMM_PATTERN = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
# An e-mail address as notifications accept it: one '@', no spaces, commas or angle brackets.
EMAIL_PATTERN = re.compile(r"^[^@\s,;<>()\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _check_emails(value: list[str]) -> list[str]:
    bad = [v for v in value if len(v) > 254 or not EMAIL_PATTERN.match(v)]
    if bad:
        raise ValueError(f"not an e-mail address: {', '.join(bad)}")
    return value


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_size(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if len(parts) == 3:  # "416,416,3": the channel count is implied
            parts = parts[:2]
        return parts
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return list(value[:2])
    return value


def _split_points(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        points = []
        for chunk in text.split(";"):
            chunk = chunk.strip()
            if not chunk:
                continue
            xy = [c.strip() for c in chunk.split(",")]
            if len(xy) != 2:
                raise ValueError(f"point {chunk!r} is not 'x,y'")
            points.append((xy[0], xy[1]))
        return points
    return value


LINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _split_lines(value: Any) -> Any:
    """``"door: 384,0 384,576; exit: 10,20 30,40"`` -> ``[{"name": ..., "points": ...}]``."""
    if not isinstance(value, str):
        return value
    lines = []
    for chunk in value.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if ":" not in chunk:
            raise ValueError(f"line {chunk!r} is not 'name: x1,y1 x2,y2'")
        name, coords = (c.strip() for c in chunk.split(":", 1))
        ends = coords.split()
        if len(ends) != 2 or any(len(e.split(",")) != 2 for e in ends):
            raise ValueError(f"line {chunk!r} is not 'name: x1,y1 x2,y2'")
        (x1, y1), (x2, y2) = (e.split(",") for e in ends)
        lines.append({"name": name, "start": (x1, y1), "end": (x2, y2)})
    return lines


def _empty_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _int_if_digits(value: Any) -> Any:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _upper_if_str(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


CsvList = Annotated[list[str], BeforeValidator(_split_list)]
Size = Annotated[tuple[int, int], BeforeValidator(_split_size)]
OptionalSize = Annotated[tuple[int, int] | None, BeforeValidator(_split_size)]
Points = Annotated[list[tuple[float, float]], BeforeValidator(_split_points)]


def form(text: str) -> dict[str, Any]:
    """``json_schema_extra`` carrying the expected form shown in error messages."""
    return {"form": text}


class StrictModel(BaseModel):
    """Base of every section: unknown keys are errors, keys are the INI names."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        validate_assignment=True,
        str_strip_whitespace=True,
    )

    def to_ini(self) -> dict[str, str]:
        """The section as INI key/value strings (the inverse of parsing)."""
        out: dict[str, str] = {}
        for name, info in type(self).model_fields.items():
            if info.exclude:
                continue
            key = info.alias or name
            out[key] = ini_value(getattr(self, name))
        return out


def ini_value(value: Any) -> str:
    """Write a Python value in the INI form the models parse back."""
    if value is None:
        return ""
    if isinstance(value, list) and value and isinstance(value[0], (CountingLine, Zone)):
        return "; ".join(item.to_ini() for item in value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(p, (list, tuple)) for p in value):
            if not all(len(p) == 2 and all(_is_number(c) for c in p) for p in value):
                raise ValueError("a list of points needs [x, y] number pairs")
            return "; ".join(",".join(_num(c) for c in point) for point in value)
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                   for v in value):
            raise ValueError("a list value needs numbers or strings, or [x, y] points")
        return ",".join(_num(v) if isinstance(v, (int, float)) else str(v) for v in value)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (int, str)):
        return str(value)
    raise ValueError(f"a {type(value).__name__} cannot be an INI value")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _check_id(value: str) -> str:
    if not ID_PATTERN.match(value):
        raise ValueError(
            "ids are 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


class CountingLine(BaseModel):
    """A named line people are counted across, in image pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    start: tuple[float, float]
    end: tuple[float, float]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LINE_NAME.match(value):
            raise ValueError(f"line name {value!r} is not 1-64 letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _length(self) -> CountingLine:
        if self.start == self.end:
            raise ValueError(f"line {self.name!r} has zero length")
        return self

    def to_ini(self) -> str:
        return f"{self.name}: {ini_value(self.start)} {ini_value(self.end)}"


CountingLines = Annotated[list[CountingLine], BeforeValidator(_split_lines)]


def _split_zones(value: Any) -> Any:
    """``"door: 0,0 100,0 100,80; till: ..."`` -> ``[{"name": ..., "points": [...]}]``."""
    if not isinstance(value, str):
        return value
    zones = []
    for chunk in value.split(";"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if ":" not in chunk:
            raise ValueError(f"zone {chunk!r} is not 'name: x1,y1 x2,y2 x3,y3 ...'")
        name, coords = (c.strip() for c in chunk.split(":", 1))
        points = []
        for pair in coords.split():
            xy = pair.split(",")
            if len(xy) != 2:
                raise ValueError(f"zone {name!r}: point {pair!r} is not 'x,y'")
            points.append((xy[0], xy[1]))
        zones.append({"name": name, "points": points})
    return zones


class Zone(BaseModel):
    """A named polygon of the image (pixels): a region of interest for presence and dwell."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    points: list[tuple[float, float]]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not LINE_NAME.match(value):
            raise ValueError(f"zone name {value!r} is not 1-64 letters, digits, '-' or '_'")
        return value

    @field_validator("points")
    @classmethod
    def _points(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if len(value) < 3:
            raise ValueError("a zone needs at least 3 points")
        if len(value) > MAX_POINTS:
            raise ValueError(f"a zone has at most {MAX_POINTS} points")
        return value

    def to_ini(self) -> str:
        return f"{self.name}: " + " ".join(ini_value(p) for p in self.points)


Zones = Annotated[list[Zone], BeforeValidator(_split_zones)]


# ---------------------------------------------------------------------------------------
# Fixed sections
# ---------------------------------------------------------------------------------------


class AppConfig(StrictModel):
    has_been_configured: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False, alias="HasBeenConfigured", description="Whether a person has set this file up."
    )
    # NO_CAMERA: the supervisor reads it (whether the run ends), no camera pipeline does.
    historical_data_mode: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False,
        alias="HistoricalDataMode",
        description="True: process every recording (video file or folder) to its end, then "
        "exit (API included); live sources are refused. False: keep running, and serving "
        "the API, once the recordings are done; live sources are watched until stopped.",
    )
    resolution: Annotated[OptionalSize, Restarts.EVERY_CAMERA] = Field(
        None,
        alias="Resolution",
        description="Resize every frame to this size before processing; empty keeps the "
        "camera's own size.",
        json_schema_extra=form("'width,height', for example '768,576', or empty"),
    )
    encoder: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="Encoder", description="Kept for compatibility; unused."
    )
    max_processes: Annotated[int, Restarts.NO_CAMERA] = Field(
        1,
        alias="MaxProcesses",
        ge=1,
        le=64,
        description="Worker processes the cameras are spread over.",
        json_schema_extra=form("an integer from 1 to 64"),
    )
    max_thread_restarts: Annotated[int, Restarts.NO_CAMERA] = Field(
        5,
        alias="MaxThreadRestarts",
        ge=0,
        description="How many times a crashed worker is restarted before it is given up.",
        json_schema_extra=form("an integer >= 0"),
    )
    heatmap_resolution: Annotated[Size, Restarts.EVERY_CAMERA] = Field(
        (150, 150),
        alias="HeatmapResolution",
        description="Grid size of heatmaps.",
        json_schema_extra=form("'columns,rows'"),
    )
    log_performance_metrics: Annotated[bool, Restarts.EVERY_CAMERA] = Field(
        False,
        alias="LogPerformanceMetrics",
        description="Log fps and per-stage milliseconds every LogPerformanceMetricsEvery "
        "frames.",
    )
    log_performance_metrics_every: Annotated[int, Restarts.EVERY_CAMERA] = Field(
        100,
        alias="LogPerformanceMetricsEvery",
        ge=1,
        description="Frames between two performance log lines.",
        json_schema_extra=form("an integer >= 1"),
    )
    log_performance_metrics_directory: Annotated[str, Restarts.EVERY_CAMERA] = Field(
        "",
        alias="LogPerformanceMetricsDirectory",
        description="When set, performance lines are also appended to a CSV file per camera "
        "in this directory (relative to DataDirectory).",
    )
    entity_config_directory: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="EntityConfigDirectory", description="Kept for compatibility; unused."
    )
    process_areas: Annotated[bool, Restarts.EVERY_CAMERA] = Field(
        True, alias="ProcessAreas", description="Compute and log area occupancy."
    )
    dashboard_url: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="DashboardURL", description="Kept for compatibility."
    )
    dashboard_authorization_token: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="DashboardAuthorizationToken", description="Kept for compatibility."
    )
    enable_slack_notifications: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False,
        alias="EnableSlackNotifications",
        description="Send notifications to Slack (the incoming webhook set with PUT "
        "/slack/enable or LOOKOUT_SLACK_WEBHOOK_URL) for the cameras and areas whose own "
        "EnableSlackNotifications is True, and the global reports (docs/integrations/"
        "notifications.md).",
    )
    slack_channel: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="SlackChannel", max_length=80,
        description="Slack channel the messages are posted to (the 'channel' of the webhook "
        "payload); empty posts to the webhook's own channel.",
    )
    occupancy_alerts_min_interval: Annotated[int, Restarts.NO_CAMERA] = Field(
        180,
        alias="OccupancyAlertsMinInterval",
        description="Least seconds (of the video clock) between two occupancy alerts of one "
        "camera or area; a negative value sends no occupancy alerts.",
        json_schema_extra=form("an integer number of seconds; negative turns them off"),
    )
    global_reporting_emails: Annotated[CsvList, Restarts.NO_CAMERA] = Field(
        default_factory=list,
        alias="GlobalReportingEmails",
        max_length=MAX_LIST_ITEMS,
        description="Addresses the global daily and weekly reports are e-mailed to, comma "
        "separated.",
        json_schema_extra=form("e-mail addresses separated by commas, or empty"),
    )
    global_report_time: Annotated[str, Restarts.NO_CAMERA] = Field(
        "06:00",
        alias="GlobalReportTime",
        description="Local time (App TimeZone) the global reports are sent at; the weekly "
        "one on Mondays.",
        json_schema_extra=form("HH:MM"),
    )
    daily_global_report: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False,
        alias="DailyGlobalReport",
        description="Send every day, at GlobalReportTime, the previous day's numbers of "
        "every camera and area.",
    )
    weekly_global_report: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False,
        alias="WeeklyGlobalReport",
        description="Send every Monday, at GlobalReportTime, the previous week's (Monday to "
        "Sunday) numbers of every camera and area.",
    )
    # EVERY_CAMERA: s3_logger runs in the camera's pipeline and names its keys by it (the bus
    # sinks and periodic tasks are rebuilt by the supervisor's reload); renames are rare.
    processor_name: Annotated[str, Restarts.EVERY_CAMERA] = Field(
        "",
        alias="ProcessorName",
        description="This processor's name wherever an integration names the box: the "
        "PostgreSQL fleet database's processor column, MQTT topics and Home Assistant ids, "
        "InfluxDB's processor tag, S3 key prefixes. Empty: the "
        "host name (characters other than letters, digits, '.', '_', '-' become '-').",
        json_schema_extra=form("1 to 63 letters, digits, '.', '_' or '-', starting with a "
                               "letter or digit, like store-0042; or empty for the host name"),
    )
    time_zone: Annotated[str, Restarts.EVERY_CAMERA] = Field(
        "UTC",
        alias="TimeZone",
        description="IANA time zone of logs and reports (day and hour boundaries).",
        json_schema_extra=form("an IANA time zone name such as 'Europe/London'"),
    )
    data_directory: Annotated[str, Restarts.EVERY_CAMERA] = Field(
        "data",
        alias="DataDirectory",
        description="Where logs, reports, screenshots and previews are written. Relative to "
        "the configuration file; the LOOKOUT_DATA_DIR environment variable overrides it.",
    )
    assets_directory: Annotated[str, Restarts.EVERY_CAMERA] = Field(
        "../shared",
        alias="AssetsDirectory",
        description="Where models and sample recordings are found: relative VideoPath and "
        "ModelPath values are looked up here. Relative to the configuration file; the "
        "LOOKOUT_ASSETS_DIR environment variable overrides it.",
    )

    @field_validator("global_report_time")
    @classmethod
    def _report_time(cls, value: str) -> str:
        if not HHMM_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a time HH:MM")
        return value

    @field_validator("global_reporting_emails")
    @classmethod
    def _report_emails(cls, value: list[str]) -> list[str]:
        return _check_emails(value)

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("processor_name")
    @classmethod
    def _processor_name(cls, value: str) -> str:
        return check_processor_name(value)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @property
    def processor_name_or_host(self) -> str:
        """The name every integration gives this box: ProcessorName, else the host name."""
        return self.processor_name or host_processor_name()


class ApiConfig(StrictModel):
    host: str = Field("127.0.0.1", alias="Host", description="Address the API listens on.")
    port: int = Field(
        8000, alias="Port", ge=1, le=65535, json_schema_extra=form("a port from 1 to 65535")
    )
    use_auth_token: bool = Field(
        True, alias="UseAuthToken", description="Require an OAuth2 bearer token."
    )
    ssl_enabled: bool = Field(False, alias="SSLEnabled", description="Serve HTTPS.")
    ssl_certificate_file: str = Field(
        "", alias="SSLCertificateFile",
        description="PEM certificate (chain); relative paths are inside DataDirectory.",
    )
    ssl_key_file: str = Field(
        "", alias="SSLKeyFile", description="PEM private key; relative to DataDirectory."
    )
    token_expire_minutes: int = Field(
        60,
        alias="TokenExpireMinutes",
        ge=1,
        le=60 * 24 * 30,
        description="Lifetime of an access token.",
        json_schema_extra=form("minutes, 1 to 43200"),
    )
    cors_origins: CsvList = Field(
        default_factory=list,
        alias="CorsOrigins",
        description="Web origins (scheme://host[:port]) allowed to call the API from a "
        "browser, comma separated. Empty allows none; '*' is refused because requests carry "
        "credentials.",
        json_schema_extra=form("comma-separated origins such as https://dashboard.example"),
    )
    enabled: bool = Field(
        True, alias="Enabled", description="Start the API together with the processor."
    )

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+$", origin):
                raise ValueError(f"{origin!r} is not an origin like https://host:port")
        return value

    @model_validator(mode="after")
    def _ssl_files(self) -> ApiConfig:
        if self.ssl_enabled and not (self.ssl_certificate_file and self.ssl_key_file):
            raise ValueError("SSLEnabled needs SSLCertificateFile and SSLKeyFile")
        return self


class CoreConfig(StrictModel):
    host: str = Field("127.0.0.1", alias="Host", description="Kept for compatibility.")
    queue_port: int = Field(8010, alias="QueuePort", ge=1, le=65535)
    queue_auth_key: str = Field(
        "",
        alias="QueueAuthKey",
        description="Kept for compatibility; the core makes a random key at every start "
        "when this is empty.",
    )


class DetectorConfig(StrictModel):
    device: str = Field(
        "x86",
        alias="Device",
        description="Backend that runs the model: x86 (ONNX Runtime on CPU), x86-gpu (ONNX "
        "Runtime CUDA), tensorrt and jetson (TensorRT through ONNX Runtime), openvino, edgetpu "
        "(LiteRT with the Coral EdgeTPU delegate), tflite (LiteRT on the CPU); docs/devices.md.",
    )
    name: str = Field("yolox_nano", alias="Name", description="Model family.")
    image_size: Size = Field(
        (416, 416),
        alias="ImageSize",
        description="Model input size.",
        json_schema_extra=form("'width,height' or 'width,height,3'"),
    )
    model_path: str = Field(
        "",
        alias="ModelPath",
        description="Model file; relative paths are looked up in AssetsDirectory; empty uses "
        "the default file of Name.",
    )
    class_id: int = Field(0, alias="ClassID", ge=0, description="Class index of a person.")
    min_score: float = Field(
        0.35,
        alias="MinScore",
        ge=0.0,
        le=1.0,
        description="Detections scoring less are dropped.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    nms_threshold: float = Field(
        0.45,
        alias="NMSThreshold",
        ge=0.0,
        le=1.0,
        description="IoU above which the detector's own NMS merges boxes.",
        json_schema_extra=form("a number from 0 to 1"),
    )
    tensorrt_precision: Annotated[Literal[16, 32], BeforeValidator(_int_if_digits)] = Field(
        32,
        alias="TensorrtPrecision",
        description="Floating-point bits of the TensorRT engine (tensorrt, jetson); the engine "
        "cache under DataDirectory is kept per TensorRT version and precision.",
        json_schema_extra=form("16 or 32"),
    )
    device_id: int = Field(
        0,
        alias="DeviceId",
        ge=0,
        description="Accelerator index: the CUDA GPU (x86-gpu, tensorrt, jetson) or the N-th "
        "Edge TPU libedgetpu finds (edgetpu).",
        json_schema_extra=form("an integer >= 0"),
    )
    openvino_device: Annotated[str, BeforeValidator(_upper_if_str)] = Field(
        "CPU",
        alias="OpenvinoDevice",
        pattern=r"^(CPU|GPU(\.[0-9]+)?|NPU|AUTO)$",
        description="OpenVINO device of Device = openvino: CPU, GPU (GPU.1 for the second), NPU, "
        "or AUTO (the first present of NPU, GPU, CPU).",
        json_schema_extra=form("CPU, GPU, GPU.<n>, NPU or AUTO"),
    )
    openvino_precision: Literal["f32", "f16", "bf16", "default"] = Field(
        "f32",
        alias="OpenvinoPrecision",
        description="OpenVINO inference precision (Device = openvino): f32 matches ONNX Runtime; "
        "f16 or bf16 are faster where the device supports them; default leaves the device's own "
        "choice.",
        json_schema_extra=form("f32, f16, bf16 or default"),
    )
    threads: int = Field(
        0,
        alias="Threads",
        ge=0,
        description="CPU threads of each detector session; 0 lets the thread budget choose "
        "(1 on x86, tflite and openvino, whose sessions split the cores; the worker's cores "
        "otherwise).",
        json_schema_extra=form("an integer >= 0"),
    )
    sessions: int = Field(
        0,
        alias="Sessions",
        ge=0,
        le=64,
        description="Detector sessions per worker process, detecting frames in parallel for "
        "every camera of the worker; 0 lets the thread budget choose (one per core of the "
        "worker on x86, tflite and openvino, one on accelerators).",
        json_schema_extra=form("an integer from 0 to 64"),
    )


class ClassifierConfig(StrictModel):
    device: str = Field("x86", alias="Device")
    name: str = Field("", alias="Name")
    image_size: Size = Field((64, 64), alias="ImageSize", json_schema_extra=form("'w,h'"))
    model_path: str = Field("", alias="ModelPath")
    min_score: float = Field(0.5, alias="MinScore", ge=0.0, le=1.0)
    tensorrt_precision: Annotated[Literal[16, 32], BeforeValidator(_int_if_digits)] = Field(
        32, alias="TensorrtPrecision"
    )
    min_image_size: int = Field(0, alias="MinImageSize", ge=0)


DistMethod = Literal["CalibratedDistance", "CenterPointsDistance", "FourCornerPointsDistance"]


def _parse_tz_datetime(value: Any) -> Any:
    value = _empty_to_none(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time") from exc
    return value


class SourceConfig(StrictModel):
    """A camera or a recording: ``[Source_N]``.  ``Id`` is its stable identity."""

    id: Annotated[str, BeforeValidator(str)] = Field(
        ...,
        alias="Id",
        description="Stable, unique camera id used in URLs, logs and areas.",
        json_schema_extra=form("1-64 letters, digits, '-' or '_'"),
    )
    name: str = Field("", alias="Name", max_length=MAX_NAME,
                      json_schema_extra=form(f"at most {MAX_NAME} characters"))
    video_path: str = Field(
        ...,
        alias="VideoPath",
        max_length=2048,
        description="A video file or a folder of recordings (processed in name order) inside "
        "AssetsDirectory or DataDirectory, an rtsp://, rtsps://, http:// or https:// URL, a "
        "video capture device such as /dev/video0 or 0, or a Redis source of detection messages "
        "(redis://host:6379/0?stream=NAME or ?channel=NAME; docs/integrations/redis-input.md).",
    )
    enabled: bool = Field(True, alias="Enabled", description="Process this camera.")
    tags: CsvList = Field(default_factory=list, alias="Tags", max_length=MAX_LIST_ITEMS)
    notify_every_minutes: int = Field(0, alias="NotifyEveryMinutes", ge=0)
    violation_threshold: int = Field(0, alias="ViolationThreshold", ge=0)
    emails: CsvList = Field(default_factory=list, alias="Emails", max_length=MAX_LIST_ITEMS)
    enable_slack_notifications: bool = Field(False, alias="EnableSlackNotifications")
    daily_report: bool = Field(False, alias="DailyReport")
    daily_report_time: str = Field(
        "06:00", alias="DailyReportTime", json_schema_extra=form("HH:MM")
    )
    dist_method: Annotated[DistMethod | None, BeforeValidator(_empty_to_none)] = Field(
        None,
        alias="DistMethod",
        description="Distance method of this camera; empty uses the social_distance "
        "post-processor's DefaultDistMethod.",
        json_schema_extra=form(
            "CalibratedDistance, CenterPointsDistance or FourCornerPointsDistance"
        ),
    )
    live_feed_enabled: bool = Field(True, alias="LiveFeedEnabled")
    start_time: Annotated[datetime | None, BeforeValidator(_parse_tz_datetime)] = Field(
        None,
        alias="StartTime",
        description="For recordings: the wall-clock time of the first frame. Frame times are "
        "this plus the video's own clock. Empty uses the file's modification time minus its "
        "duration. A time without offset is in App TimeZone.",
        json_schema_extra=form("ISO 8601, for example 2009-03-01T10:00:00+00:00"),
    )
    frame_rate: Annotated[float | None, BeforeValidator(_empty_to_none)] = Field(
        None,
        alias="FrameRate",
        gt=0,
        description="Frames per second of a recording when its container is wrong "
        "(vtest.avi says 10, was captured at 7). Empty trusts the container.",
        json_schema_extra=form("a number > 0, or empty"),
    )
    max_fps: Annotated[float | None, BeforeValidator(_empty_to_none)] = Field(
        None,
        alias="MaxFPS",
        gt=0,
        description="Live sources (stream URL or capture device): process at most this many "
        "frames per second; the frames in between are dropped, never queued, so the camera "
        "is not watched late. Empty processes every frame the pipeline keeps up with. "
        "Recordings always process every frame.",
        json_schema_extra=form("a number > 0, or empty"),
    )
    roi: Points = Field(
        default_factory=list,
        alias="ROI",
        max_length=MAX_POINTS,
        description="Region of interest polygon in image pixels; people whose feet are "
        "outside are ignored. Empty uses the whole image.",
        json_schema_extra=form("at least 3 points 'x,y; x,y; x,y'"),
    )
    calibration_image_points: Points = Field(
        default_factory=list,
        alias="CalibrationImagePoints",
        max_length=MAX_POINTS,
        description="Image points (pixels) on the floor for CalibratedDistance.",
        json_schema_extra=form("4 or more points 'x,y; x,y; x,y; x,y'"),
    )
    calibration_floor_points: Points = Field(
        default_factory=list,
        alias="CalibrationFloorPoints",
        max_length=MAX_POINTS,
        description="The same points on the floor, in metres.",
        json_schema_extra=form("as many points as CalibrationImagePoints, in metres"),
    )
    occupancy_threshold: int = Field(
        0, alias="OccupancyThreshold", ge=0, description="People above which the camera "
        "is over capacity; 0 turns it off."
    )
    counting_lines: CountingLines = Field(
        default_factory=list,
        alias="CountingLines",
        max_length=MAX_SHAPES,
        description="Named lines people are counted across (line_crossing post-processor). "
        "'in' is a crossing from the left to the right of someone walking the line from its "
        "first point to its second, as drawn on the image.",
        json_schema_extra=form("'name: x1,y1 x2,y2; name2: x1,y1 x2,y2'"),
    )

    zones: Zones = Field(
        default_factory=list,
        alias="Zones",
        max_length=MAX_SHAPES,
        description="Named regions (image pixels) for presence counts and dwell; people are "
        "in a zone when their foot point is.",
        json_schema_extra=form("'name: x1,y1 x2,y2 x3,y3; name2: ...'"),
    )
    entry_zones: Zones = Field(
        default_factory=list,
        alias="EntryZones",
        max_length=MAX_SHAPES,
        description="Named entrance regions: a person counts as passing through when their "
        "track enters the region (traffic counts).",
        json_schema_extra=form("'name: x1,y1 x2,y2 x3,y3; name2: ...'"),
    )

    # Per-camera model choice (/ml_model): empty values use [Detector].
    detector_name: str = Field(
        "", alias="DetectorName", description="Model family for this camera; empty uses "
        "[Detector] Name.")
    detector_model_path: str = Field(
        "", alias="DetectorModelPath", description="Model file for this camera (relative "
        "paths are inside AssetsDirectory); empty uses [Detector] ModelPath.")
    detector_image_size: OptionalSize = Field(
        None, alias="DetectorImageSize", json_schema_extra=form("'width,height', or empty"))
    detector_class_id: Annotated[int | None, BeforeValidator(_empty_to_none)] = Field(
        None, alias="DetectorClassID", ge=0, json_schema_extra=form("an integer >= 0, or empty"))
    detector_min_score: Annotated[float | None, BeforeValidator(_empty_to_none)] = Field(
        None, alias="DetectorMinScore", ge=0, le=1,
        json_schema_extra=form("a number from 0 to 1, or empty"))
    detector_nms_threshold: Annotated[float | None, BeforeValidator(_empty_to_none)] = Field(
        None, alias="DetectorNMSThreshold", ge=0, le=1,
        json_schema_extra=form("a number from 0 to 1, or empty"))

    _section: str = PrivateAttr("")

    _check = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    def detector_overrides(self) -> dict[str, object]:
        """The [Detector] fields this camera replaces (field name -> value)."""
        pairs = {
            "name": self.detector_name or None,
            "model_path": self.detector_model_path or None,
            "image_size": self.detector_image_size,
            "class_id": self.detector_class_id,
            "min_score": self.detector_min_score,
            "nms_threshold": self.detector_nms_threshold,
        }
        return {k: v for k, v in pairs.items() if v is not None}

    @field_validator("zones", "entry_zones")
    @classmethod
    def _unique_zones(cls, value: list[Zone]) -> list[Zone]:
        names = [z.name for z in value]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"zone names must be unique, repeated: {', '.join(sorted(dup))}")
        return value

    @field_validator("counting_lines")
    @classmethod
    def _unique_lines(cls, value: list[CountingLine]) -> list[CountingLine]:
        names = [line.name for line in value]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"line names must be unique, repeated: {', '.join(sorted(dup))}")
        return value

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        return _check_emails(value)

    @field_validator("daily_report_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a time HH:MM")
        return value

    @field_validator("roi")
    @classmethod
    def _roi(cls, value: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if value and len(value) < 3:
            raise ValueError("a region of interest needs at least 3 points")
        return value

    @model_validator(mode="after")
    def _max_fps(self) -> SourceConfig:
        if self.max_fps is not None and self.video_kind != "stream":
            what = "a Redis source, whose every message" if self.video_kind == "redis" \
                else "a recording, whose every frame"
            raise ValueError(f"MaxFPS caps a live camera (stream URL or capture device); "
                             f"VideoPath is {what} is processed: leave MaxFPS empty")
        return self

    @property
    def video_kind(self) -> Literal["stream", "redis", "recording"]:
        """What ``VideoPath`` names by its form: ``stream`` (a URL or a capture device,
        watched live), ``redis`` (detection messages, live too) or ``recording`` (a file or
        a folder, processed to its end)."""
        from libs.config.loader import is_device, is_stream_url
        from libs.config.video_source import is_redis_url

        vp = self.video_path
        if is_redis_url(vp):
            return "redis"
        return "stream" if is_stream_url(vp) or is_device(vp) else "recording"

    @model_validator(mode="after")
    def _calibration(self) -> SourceConfig:
        img, floor = self.calibration_image_points, self.calibration_floor_points
        if img or floor:
            if len(img) < 4:
                raise ValueError("CalibrationImagePoints needs at least 4 points")
            if len(img) != len(floor):
                raise ValueError(
                    f"CalibrationImagePoints has {len(img)} points but "
                    f"CalibrationFloorPoints has {len(floor)}"
                )
        return self

    @property
    def section(self) -> str:
        return self._section


class AreaConfig(StrictModel):
    """A group of cameras whose occupancy is summed: ``[Area_N]``."""

    id: Annotated[str, BeforeValidator(str), Restarts.NO_CAMERA] = Field(
        ..., alias="Id", json_schema_extra=form("1-64 letters, digits, '-' or '_'")
    )
    name: Annotated[str, Restarts.NO_CAMERA] = Field(
        "", alias="Name", max_length=MAX_NAME,
        json_schema_extra=form(f"at most {MAX_NAME} characters"),
    )
    cameras: Annotated[CsvList, Restarts.LISTED_CAMERAS] = Field(
        ..., alias="Cameras", max_length=MAX_LIST_ITEMS,
        description="Ids of the cameras in this area, comma separated."
    )
    notify_every_minutes: Annotated[int, Restarts.NO_CAMERA] = Field(
        0, alias="NotifyEveryMinutes", ge=0
    )
    violation_threshold: Annotated[int, Restarts.NO_CAMERA] = Field(
        0, alias="ViolationThreshold", ge=0
    )
    emails: Annotated[CsvList, Restarts.NO_CAMERA] = Field(
        default_factory=list, alias="Emails", max_length=MAX_LIST_ITEMS
    )
    enable_slack_notifications: Annotated[bool, Restarts.NO_CAMERA] = Field(
        False, alias="EnableSlackNotifications"
    )
    occupancy_threshold: Annotated[int, Restarts.NO_CAMERA] = Field(
        0,
        alias="OccupancyThreshold",
        ge=0,
        description="People above which the area is over capacity, when no OccupancyRules "
        "entry covers the time; 0 means no limit.",
    )
    occupancy_rules: Annotated[str, Restarts.NO_CAMERA] = Field(
        "",
        alias="OccupancyRules",
        description="Time-dependent capacity: entries 'days HH:MM-HH:MM limit' separated by "
        "';', days as Mon..Sun, ranges like Mon-Fri, or lists like Sat,Sun.",
        json_schema_extra=form("for example 'Mon-Fri 09:00-18:00 50; Sat 10:00-14:00 20'"),
    )
    daily_report: Annotated[bool, Restarts.NO_CAMERA] = Field(False, alias="DailyReport")
    daily_report_time: Annotated[str, Restarts.NO_CAMERA] = Field(
        "06:00", alias="DailyReportTime", json_schema_extra=form("HH:MM")
    )

    _section: str = PrivateAttr("")

    _check = field_validator("id")(classmethod(lambda cls, v: _check_id(v)))

    @field_validator("cameras")
    @classmethod
    def _cameras(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("an area needs at least one camera")
        return value

    @field_validator("occupancy_rules")
    @classmethod
    def _rules(cls, value: str) -> str:
        from libs.config.occupancy_rules import parse_occupancy_rules

        parse_occupancy_rules(value)
        return value

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        return _check_emails(value)

    @field_validator("daily_report_time")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a time HH:MM")
        return value

    @property
    def section(self) -> str:
        return self._section


class PluginConfig(StrictModel):
    """Base of the sections that name a registered part: trackers, post-processors,
    loggers and periodic tasks.  Each part subclasses it with its own keys."""

    name: str = Field(..., alias="Name", description="Registered name of the part.")
    enabled: bool = Field(True, alias="Enabled", description="Run this part.")
    # A part whose sections never touch a camera's pipeline (a sink that runs on the
    # supervisor's event bus) sets NO_CAMERA: editing it restarts no camera, whatever the
    # marker of the list it is in (see libs/config/restarts.py).
    RESTARTS: ClassVar[Restarts | None] = None

    _section: str = PrivateAttr("")

    @property
    def section(self) -> str:
        return self._section


class TrackerConfig(PluginConfig):
    """Keys every tracker understands (the IoU tracker's, from the reference system)."""

    max_lost: int = Field(
        5,
        alias="MaxLost",
        ge=0,
        description="Frames a track may go unmatched before it ends.",
        json_schema_extra=form("an integer >= 0"),
    )
    tracker_iou_threshold: float = Field(
        0.3,
        alias="TrackerIOUThreshold",
        ge=0.0,
        le=1.0,
        description="Least IoU between a track's last box and a detection to match them.",
        json_schema_extra=form("a number from 0 to 1"),
    )


class LookoutConfig(BaseModel):
    """The whole configuration, with the file it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Annotated[Path, Restarts.NO_CAMERA]
    app: Annotated[AppConfig, Restarts.BY_KEY]
    api: Annotated[ApiConfig, Restarts.NO_CAMERA]
    core: Annotated[CoreConfig, Restarts.NO_CAMERA]
    detector: Annotated[DetectorConfig, Restarts.EVERY_CAMERA]
    classifier: Annotated[ClassifierConfig | None, Restarts.EVERY_CAMERA] = None
    tracker: Annotated[TrackerConfig, Restarts.EVERY_CAMERA]
    sources: Annotated[list[SourceConfig], Restarts.OWN_CAMERA]
    areas: Annotated[list[AreaConfig], Restarts.BY_KEY]
    source_post_processors: Annotated[list[PluginConfig], Restarts.EVERY_CAMERA]
    source_loggers: Annotated[list[PluginConfig], Restarts.EVERY_CAMERA]
    area_loggers: Annotated[list[PluginConfig], Restarts.NO_CAMERA]
    periodic_tasks: Annotated[list[PluginConfig], Restarts.NO_CAMERA]
    # Processor-wide sinks on the supervisor's event bus ([Output_N]); they never restart
    # a camera.
    outputs: Annotated[list[PluginConfig], Restarts.NO_CAMERA] = []

    # What the loader accepted without acting on it (reference keys, libs/config/compat.py).
    _warnings: list[ConfigProblem] = PrivateAttr(default_factory=list)

    ENV_DATA: ClassVar[str] = "LOOKOUT_DATA_DIR"
    ENV_ASSETS: ClassVar[str] = "LOOKOUT_ASSETS_DIR"

    @property
    def warnings(self) -> list[ConfigProblem]:
        """One per key or section of the file that is accepted and not acted on."""
        return self._warnings

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent

    @property
    def data_dir(self) -> Path:
        import os

        raw = os.environ.get(self.ENV_DATA) or self.app.data_directory
        return (self.base_dir / raw).resolve()

    @property
    def assets_dir(self) -> Path:
        import os

        raw = os.environ.get(self.ENV_ASSETS) or self.app.assets_directory
        return (self.base_dir / raw).resolve()

    def data_path(self, value: str) -> Path:
        """A path for output: relative values are inside the data directory."""
        return (self.data_dir / value).resolve()

    def asset_path(self, value: str) -> Path:
        """A path for input: relative values are inside the assets directory."""
        return (self.assets_dir / value).resolve()

    def source(self, camera_id: str) -> SourceConfig:
        for src in self.sources:
            if src.id == camera_id:
                return src
        raise KeyError(camera_id)

    def enabled_sources(self) -> list[SourceConfig]:
        return [s for s in self.sources if s.enabled]

    def recordings_mode_problems(self) -> list[tuple[str | None, str | None, str]]:
        """``(section, key, message)`` for what ``HistoricalDataMode = True`` cannot run: a
        live source never ends, so the run would never exit (the loader reports these)."""
        if not self.app.historical_data_mode:
            return []
        enabled = self.enabled_sources()
        problems: list[tuple[str | None, str | None, str]] = [
            (s.section, "VideoPath", "a live source never ends, and HistoricalDataMode = True "
             "in [App] processes recordings and exits: set HistoricalDataMode = False to "
             "watch it, or Enabled = False in this section")
            for s in enabled if s.video_kind != "recording"]
        if not enabled:
            problems.append(("App", "HistoricalDataMode",
                             "HistoricalDataMode = True processes the recordings and exits, "
                             "but no [Source_N] is enabled"))
        return problems
