"""The one check of a camera's ``VideoPath``, wherever it is set.

The INI loader (so also every API write, which validates the whole resulting file with it),
``POST /cameras``, ``PUT /cameras/{id}``, ``POST /cameras/check_stream``, ``PUT /config`` and
the frame grabbers of ``/cameras/{id}/image`` all call :func:`check_video_path`.  A value is
one of:

* a URL of a streaming scheme: ``rtsp``, ``rtsps``, ``http`` or ``https``, with a host
  (``file://``, ``gopher://``, ``concat:`` and any other scheme FFmpeg would open are refused);
* a Redis source of detection messages (``redis://`` or ``rediss://``, see
  :func:`check_redis_url`; never opened by OpenCV);
* a video capture device: ``0`` to ``999`` or ``/dev/videoN`` (``/dev/zero``, ``/dev/sda``...
  are refused);
* a video file (by suffix) or a folder of them, inside ``AssetsDirectory`` or
  ``DataDirectory`` once relative paths are resolved and symbolic links followed.

Control characters and line breaks are refused everywhere, and the value is at most
:data:`MAX_VIDEO_PATH` characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

ALLOWED_SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_VIDEO_PATH = 2048
DEVICE_FORM = "0 to 999, or /dev/video0 to /dev/video999"
PATH_FORM = (
    "an rtsp://, rtsps://, http:// or https:// URL, a video device (0 or /dev/video0), or a "
    "video file or folder inside AssetsDirectory or DataDirectory (relative paths are inside "
    "AssetsDirectory)"
)

_DEVICE = re.compile(r"^([0-9]{1,3}|/dev/video[0-9]{1,3})$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class VideoPathError(ValueError):
    """A VideoPath refused; ``expected`` is the form allowed."""

    def __init__(self, message: str, expected: str = PATH_FORM) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected


@dataclass(frozen=True)
class VideoTarget:
    """What a VideoPath names, resolved: ``target`` is what OpenCV opens (for a folder, its
    first recording, when files were checked)."""

    kind: Literal["url", "device", "file", "folder", "redis"]
    target: str | int
    path: Path | None = None


def _video_suffixes() -> set[str]:
    from processor.sources import VIDEO_SUFFIXES  # the processor's list of what it reads

    return set(VIDEO_SUFFIXES)


def _check_url(value: str) -> VideoTarget:
    scheme = value.split(":", 1)[0].lower()
    if scheme not in ALLOWED_SCHEMES:
        raise VideoPathError(f"URL scheme {scheme!r} is not allowed",
                             "one of: " + ", ".join(f"{s}://" for s in ALLOWED_SCHEMES))
    if not value[len(scheme) + 1:].startswith("//"):
        raise VideoPathError("a URL needs '//' and a host after the scheme",
                             "scheme://host[:port]/path")
    if any(c.isspace() for c in value):
        raise VideoPathError("a URL cannot contain white space", "a URL without spaces "
                             "(write a space as %20)")
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise VideoPathError(f"not a valid URL: {exc}", "scheme://host[:port]/path") from exc
    if not parts.hostname:
        raise VideoPathError("the URL has no host", "scheme://host[:port]/path")
    return VideoTarget("url", value)


REDIS_SCHEMES = ("redis", "rediss")
REDIS_FORM = ("redis://host[:port]/db?stream=NAME or ?channel=NAME, optionally &camera=ID, "
              "&field=NAME, &start=$|0, &password_env=VARIABLE (the password is never in the URL)")
REDIS_PARAMS = frozenset({"stream", "channel", "camera", "field", "start", "password_env"})
_REDIS_NAME = re.compile(r"^[^\s]{1,256}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_STREAM_ID = re.compile(r"^([0-9]{1,20}(-[0-9]{1,20})?|\$)$")


def is_redis_url(value: str) -> bool:
    """Whether a VideoPath names a Redis source of detection messages."""
    return value.split(":", 1)[0].lower() in REDIS_SCHEMES and "://" in value


@dataclass(frozen=True)
class RedisTarget:
    """A checked Redis VideoPath: where to connect and what to read."""

    scheme: str
    host: str
    port: int
    db: int
    username: str | None
    stream: str | None
    channel: str | None
    camera: str | None  # the cameraid of the messages kept; None: the camera's Id
    field: str  # the stream entry's field holding the JSON message
    start: str  # where a stream is first read from: "$" (new messages only) or an id
    password_env: str  # the environment variable holding the password

    @property
    def name(self) -> str:
        """What is read, for logs and status: ``stream NAME`` or ``channel NAME``."""
        return f"stream {self.stream}" if self.stream else f"channel {self.channel}"


def check_redis_url(value: str) -> RedisTarget:
    """``redis://[user@]host[:port][/db]?stream=NAME`` (or ``channel=NAME``) checked.

    The password is never part of the URL (a viewer sees VideoPath): it is read from the
    environment variable ``password_env`` (``LOOKOUT_REDIS_PASSWORD`` by default, as the
    ``redis_logger`` sink) when set.
    """
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if any(c.isspace() for c in value):
        raise VideoPathError("a URL cannot contain white space", REDIS_FORM)
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise VideoPathError(f"not a valid URL: {exc}", REDIS_FORM) from exc
    if not parts.hostname:
        raise VideoPathError("the Redis URL has no host", REDIS_FORM)
    if parts.password is not None:
        raise VideoPathError("a Redis URL cannot hold a password (viewers see VideoPath): put "
                             "it in the environment variable named by password_env "
                             "(LOOKOUT_REDIS_PASSWORD by default)", REDIS_FORM)
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit() or int(db_text) > 10000:
        raise VideoPathError(f"Redis database {db_text!r} is not a number", REDIS_FORM)
    if parts.fragment:
        raise VideoPathError("a Redis URL has no #fragment", REDIS_FORM)
    params: dict[str, str] = {}
    for pair in parts.query.split("&") if parts.query else []:
        key, sep, val = pair.partition("=")
        if not sep or key not in REDIS_PARAMS:
            raise VideoPathError(f"unknown Redis URL parameter {key!r}",
                                 "parameters: " + ", ".join(sorted(REDIS_PARAMS)))
        if key in params:
            raise VideoPathError(f"Redis URL parameter {key!r} given twice", REDIS_FORM)
        val = unquote(val)
        if not _REDIS_NAME.match(val) or _CONTROL.search(val):
            raise VideoPathError(f"Redis URL parameter {key!r} must be 1 to 256 characters "
                                 "without spaces", REDIS_FORM)
        params[key] = val
    stream, channel = params.get("stream"), params.get("channel")
    if (stream is None) == (channel is None):
        raise VideoPathError("a Redis source reads either a stream (?stream=NAME) or a "
                             "pub/sub channel (?channel=NAME)", REDIS_FORM)
    start = params.get("start", "$")
    if not _STREAM_ID.match(start):
        raise VideoPathError(f"start={start!r} is not '$' (new messages) or a stream id "
                             "('0': the whole stream)", REDIS_FORM)
    if channel is not None and "start" in params:
        raise VideoPathError("start= is for a stream; a channel has no history", REDIS_FORM)
    password_env = params.get("password_env", "LOOKOUT_REDIS_PASSWORD")
    if not _ENV_NAME.match(password_env):
        raise VideoPathError(f"password_env={password_env!r} is not an environment variable "
                             "name", REDIS_FORM)
    return RedisTarget(scheme, parts.hostname, port, int(db_text),
                       unquote(parts.username) if parts.username else None, stream, channel,
                       params.get("camera"), params.get("field", "message"), start,
                       password_env)


def check_video_path(
    value: str, assets_dir: Path, data_dir: Path, check_files: bool = True
) -> VideoTarget:
    """``value`` checked as a VideoPath; :class:`VideoPathError` says why it is refused.

    ``check_files`` also requires a local file or folder to exist and hold video; without it
    only the form and the folder rule are checked (a file that is not there yet passes).
    """
    if not value:
        raise VideoPathError("VideoPath is empty")
    if len(value) > MAX_VIDEO_PATH:
        raise VideoPathError(f"VideoPath is {len(value)} characters long; at most "
                             f"{MAX_VIDEO_PATH}")
    if _CONTROL.search(value):
        raise VideoPathError("VideoPath contains a line break or control character")
    if is_redis_url(value):
        check_redis_url(value)
        return VideoTarget("redis", value)
    if _SCHEME.match(value):
        return _check_url(value)
    if _DEVICE.match(value):
        return VideoTarget("device", int(value) if value.isdigit() else value)
    if value.startswith("/dev/") or value.isdigit():
        raise VideoPathError(f"{value!r} is not a video capture device", DEVICE_FORM)
    path = (assets_dir / value).resolve()
    roots = [assets_dir.resolve(), data_dir.resolve()]
    if not any(path.is_relative_to(root) for root in roots):
        raise VideoPathError(f"{path} is outside AssetsDirectory ({roots[0]}) and "
                             f"DataDirectory ({roots[1]})")
    if not check_files:
        return VideoTarget("folder" if path.is_dir() else "file", str(path), path)
    if path.is_dir():
        suffixes = _video_suffixes()
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
        if not files:
            raise VideoPathError(f"no video files ({', '.join(sorted(suffixes))}) in {path}")
        return VideoTarget("folder", str(files[0]), path)
    if not path.is_file():
        raise VideoPathError(f"no such file or folder: {path}")
    suffixes = _video_suffixes()
    if path.suffix.lower() not in suffixes:
        raise VideoPathError(f"{path.name} is not a video file (suffix "
                             f"{path.suffix or 'none'})",
                             "a file ending in " + ", ".join(sorted(suffixes)))
    return VideoTarget("file", str(path), path)
