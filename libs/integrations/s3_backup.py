"""``s3_backup``: each day's raw data and reports, copied to an S3 bucket once the day is over.

The reference system's periodic task (``[PeriodicTask_N]``, keys ``BackupInterval`` in
minutes and ``BackupS3Bucket``), made idempotent. It runs in the supervisor on its own
thread (:class:`processor.supervisor.TaskRunner`), never beside a frame loop; S3's address
and credentials are those of :mod:`libs.integrations.s3` (environment variables).

What is copied. Every ``BackupInterval`` minutes a round looks at the files the
``file_system_logger`` and the ``metrics`` task write (layout: :mod:`libs.storage`,
:mod:`libs.metrics.reports`) under the cameras' and the areas' log folders:

- dated files of a day before today (the App ``TimeZone``'s date): the raw logs
  ``<camera>/<kind>/<D>.csv``, ``<camera>/line_crossings/<D>.csv``,
  ``<camera>/events/<kind>/<D>.csv``, ``<area>/occupancy_log/<D>.csv`` and the hourly
  reports ``<entity>/reports/<kind>/hourly_<D>.csv``, each to::

      <processor>/<D>/sources/<camera>/<path below the camera's folder>
      <processor>/<D>/areas/<area>/<path below the area's folder>

- the cumulative reports ``reports/<kind>/daily.csv`` and ``weekly.csv``, as they stand
  during yesterday's backup, into yesterday's folder the same way (a snapshot per day).

Today's files, ``live.csv`` and hidden files (``.state.json``, ``.lock``) are not copied.
So shortly after midnight (within one ``BackupInterval``) yesterday is in the bucket; a
box that was off for days catches up with every day it missed, and a first round copies
every past day found.

Idempotent. ``DataDirectory/processor/backup/<section>/state.json`` remembers, per object
key, the size, modification time and MD5 of the file uploaded. A file whose size and
modification time are unchanged is skipped without being read; one rewritten with the same
content (same MD5) is skipped too; a changed file (rows added to yesterday's log after
midnight, an hourly report recomputed) is uploaded again, over the same key. The state is
written every :data:`SAVE_EVERY` uploads and at the end of a round, so a restart re-uploads
at most those few files. A different bucket or endpoint starts with an empty state.

Failures. The first upload that fails ends the round (S3 is down or refuses: trying every
other file is pointless); what was uploaded so far is saved, the reason is in ``GET
/status``'s task state and logged once, and the supervisor runs the task again soon (15 s,
or ``BackupInterval`` if that is shorter), then every interval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from libs.config.models import PluginConfig, form
from libs.config.plugins import plugin_settings
from libs.integrations.s3 import (
    S3ConnectionConfig,
    check_bucket,
    describe_error,
    endpoint_of,
    make_client,
    put_and_delete_test_object,
    shown_endpoint,
)
from libs.loggers import SendTestError
from libs.loggers.writer import atomic_write_bytes
from libs.periodic_tasks import PERIODIC_TASKS, PeriodicTask
from libs.storage import area_log_root, source_log_root

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "s3_backup"
STATE_FOLDER = "processor/backup"  # inside DataDirectory; one folder per section
STATE_FILE = "state.json"
SAVE_EVERY = 50  # uploads between two writes of the state file
DATED = re.compile(r"^(?:hourly_)?(\d{4}-\d{2}-\d{2})\.csv$")
CUMULATIVE = frozenset({"daily.csv", "weekly.csv"})
REPORTS_FOLDER = "reports"


class S3BackupConfig(S3ConnectionConfig):
    backup_interval: float = Field(
        30,
        alias="BackupInterval",
        gt=0,
        description="Minutes between two rounds; each copies the days before today that "
        "are not in the bucket yet, or changed since.",
        json_schema_extra=form("a number of minutes > 0"),
    )
    backup_s3_bucket: str = Field(
        "",
        alias="BackupS3Bucket",
        validate_default=True,
        description="Bucket the raw data and reports are copied to. Required when enabled.",
        json_schema_extra=form("an S3 bucket name"),
    )

    @field_validator("backup_s3_bucket")
    @classmethod
    def _bucket(cls, value: str, info: ValidationInfo) -> str:
        return check_bucket(value, info, "BackupS3Bucket")


@dataclass(frozen=True)
class Candidate:
    path: Path
    key: str
    once: bool  # a cumulative report: uploaded once per day's folder, even if it changes


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


class S3Backup(PeriodicTask):
    """Copies the finished days' files to S3; see the module docstring."""

    Config: ClassVar[type[PluginConfig]] = S3BackupConfig

    def __init__(self, config: PluginConfig, app: LookoutConfig,
                 now: Callable[[], datetime] | None = None) -> None:
        super().__init__(config, app)
        self.settings = plugin_settings(S3BackupConfig, config)
        if not self.settings.backup_s3_bucket:
            raise ValueError(f"{NAME}: BackupS3Bucket is empty")
        self.section = config.section or NAME
        self.bucket = self.settings.backup_s3_bucket
        self.processor = app.app.processor_name_or_host  # first part of every key
        self.tz = app.app.tzinfo
        self.now = now or (lambda: datetime.now(self.tz))
        self.state_path = app.data_path(f"{STATE_FOLDER}/{self.section}") / STATE_FILE
        self.last_error: str | None = None
        self.last_uploaded: list[str] = []  # keys uploaded by the last round
        self.uploaded = 0  # files uploaded since start
        self._client: Any = None
        self._target = {"bucket": self.bucket, "endpoint": endpoint_of(self.settings) or ""}

    @property
    def interval_seconds(self) -> float:
        return self.settings.backup_interval * 60.0

    # ------------------------------------------------------------------ what to copy

    def candidates(self, today: date) -> Iterator[Candidate]:
        yesterday = (today - timedelta(days=1)).isoformat()
        for label, root in (("sources", source_log_root(self.app)),
                            ("areas", area_log_root(self.app))):
            if not root.is_dir():
                continue
            for folder, dirs, files in os.walk(root):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                here = Path(folder)
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    rel = (here / name).relative_to(root).as_posix()
                    match = DATED.match(name)
                    if match:
                        day = match.group(1)
                        if day < today.isoformat():
                            yield Candidate(here / name,
                                            f"{self.processor}/{day}/{label}/{rel}", False)
                    elif name in CUMULATIVE and here.parent.name == REPORTS_FOLDER:
                        yield Candidate(here / name,
                                        f"{self.processor}/{yesterday}/{label}/{rel}", True)

    # ------------------------------------------------------------------ state

    def load_state(self) -> dict[str, dict[str, Any]]:
        try:
            saved = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        if saved.get("target") != self._target:
            return {}
        files = saved.get("files", {})
        return files if isinstance(files, dict) else {}

    def save_state(self, files: dict[str, dict[str, Any]]) -> None:
        data = {"target": self._target, "files": files}
        atomic_write_bytes(self.state_path, json.dumps(data, separators=(",", ":")).encode(),
                           fsync=True)

    # ------------------------------------------------------------------ a round

    def run(self) -> None:
        today = self.now().astimezone(self.tz).date()
        files = self.load_state()
        seen: set[str] = set()
        uploaded: list[str] = []
        error: str | None = None
        unsaved = 0
        try:
            for cand in self.candidates(today):
                seen.add(cand.key)
                try:
                    st = cand.path.stat()
                except FileNotFoundError:
                    continue
                known = files.get(cand.key)
                if known is not None:
                    if cand.once:
                        continue
                    if known.get("size") == st.st_size and \
                            known.get("mtime_ns") == st.st_mtime_ns:
                        continue
                try:
                    digest = md5_of(cand.path)
                except FileNotFoundError:  # removed meanwhile (retention)
                    continue
                if known is not None and known.get("size") == st.st_size and \
                        known.get("md5") == digest:
                    files[cand.key] = {**known, "mtime_ns": st.st_mtime_ns}
                    continue
                try:
                    self.upload(cand, digest)
                except Exception as exc:
                    error = describe_error(exc, self.settings, self.bucket)
                    break
                files[cand.key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                   "md5": digest}
                uploaded.append(cand.key)
                unsaved += 1
                if unsaved >= SAVE_EVERY:
                    self.save_state(files)
                    unsaved = 0
        finally:
            if error is None:  # a whole pass: forget files that are gone from the disk
                for key in [k for k in files if k not in seen]:
                    del files[key]
            self.save_state(files)
            self.last_uploaded = uploaded
            self.uploaded += len(uploaded)
        if error is not None and error != self.last_error:
            log.warning("%s [%s]: backup to s3://%s stopped after %d files: %s; retried "
                        "soon", NAME, self.section, self.bucket, len(uploaded), error)
        elif error is None and (uploaded or self.last_error):
            log.info("%s [%s]: %d files copied to s3://%s at %s", NAME, self.section,
                     len(uploaded), self.bucket, shown_endpoint(self.settings))
        self.last_error = error

    def upload(self, cand: Candidate, digest: str) -> None:
        if self._client is None:
            self._client = make_client(self.settings)
        with open(cand.path, "rb") as body:
            self._client.put_object(Bucket=self.bucket, Key=cand.key, Body=body,
                                    ContentType="text/csv", Metadata={"md5": digest})

    def state(self) -> dict[str, Any]:
        """What a status page may show: never a credential."""
        return {"endpoint": shown_endpoint(self.settings), "bucket": self.bucket,
                "uploaded": self.uploaded, "last_error": self.last_error}

    @classmethod
    def send_test(cls, config: PluginConfig, app: LookoutConfig) -> str:
        """Put a small object into ``BackupS3Bucket`` and delete it."""
        try:
            settings = plugin_settings(S3BackupConfig, config)
        except ValueError as exc:
            raise SendTestError(f"the section is invalid: {exc}") from exc
        if not settings.backup_s3_bucket:
            raise SendTestError("BackupS3Bucket is empty: set it first")
        return put_and_delete_test_object(settings, settings.backup_s3_bucket,
                                          app.app.processor_name_or_host)


PERIODIC_TASKS.register(NAME)(S3Backup)
