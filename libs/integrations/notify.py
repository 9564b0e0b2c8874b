"""Notifications: alerts and reports by e-mail and Slack, with the reference system's keys.

One :class:`Notifier` per processor runs in the supervisor as a subscriber of the event bus
(it is built from the ``[App]``, ``[Source_N]`` and ``[Area_N]`` keys, not from a section of
its own; ``GET /status`` shows it under ``outputs.notifications``). :meth:`Notifier.take`
only counts and compares (no file or network work but one outbox write per message); each
channel has its own durable outbox (:mod:`libs.integrations.outbox`) under
``DataDirectory/processor/outbox/notifications/{email,slack}``, so what is produced while the
SMTP server or Slack cannot be reached is delivered, in order, once it can; one channel being
down never holds the other back.

Who gets what. A camera (``[Source_N]``) or area (``[Area_N]``) notifies the addresses in its
``Emails`` and, when both ``[App] EnableSlackNotifications`` and its own
``EnableSlackNotifications`` are True, Slack (``[App] SlackChannel``).

Alerts (the records' own timestamps, the video clock, decide; never the wall clock):

- Distancing: a *violation* is one ``distancing_start`` event (people came closer than the
  distance limit after a frame without a violation; docs/events.md), so the count does not
  depend on the frame rate or the sample interval. Time is cut in windows of
  ``NotifyEveryMinutes`` aligned to the Unix epoch; the first time a window's count goes above
  ``ViolationThreshold`` one alert is sent (with the count so far), and none more in that
  window. An area counts the events of its cameras. ``NotifyEveryMinutes = 0`` sends none.
- Occupancy: an area whose ``occupancy_log`` sample says ``Violation`` (above
  ``OccupancyThreshold`` or the limit its ``OccupancyRules`` give at that local time) or that
  emits ``occupancy_over``; a camera whose frame summary or ``occupancy_over`` event is above
  its ``OccupancyThreshold``. At most one alert per camera or area per
  ``[App] OccupancyAlertsMinInterval`` seconds (negative: no occupancy alerts).

Reports (the wall clock, in ``[App] TimeZone``; injectable for tests): a camera's or area's
daily report (``DailyReport = True``) at its ``DailyReportTime``, for the previous local day;
the global daily report (``DailyGlobalReport``) at ``GlobalReportTime`` and the weekly one
(``WeeklyGlobalReport``, the previous Monday-Sunday) on Mondays at ``GlobalReportTime``, to
``GlobalReportingEmails`` (and Slack when ``[App] EnableSlackNotifications``). A report whose
time passed while the processor was not running is sent when it starts (once: what was sent
is kept in ``DataDirectory/processor/notifications/schedule.json``). Numbers and chart:
:mod:`libs.integrations.notify_reports`.

Every message has a stable ``id`` (from what it is about: camera, window, day), kept in the
e-mail's ``Message-ID``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any, ClassVar

from libs.config.models import PluginConfig
from libs.integrations import mail, slack
from libs.integrations.notify_reports import Report, entity_day_report, global_report
from libs.integrations.outbox import Outbox
from libs.loggers import SendTestError, Sink
from libs.records import AreaOccupancySample, FrameSummary, OccupancyOver, Record

if TYPE_CHECKING:
    from libs.config.models import LookoutConfig

log = logging.getLogger(__name__)

NAME = "notifications"  # its name in GET /status (outputs) and on the bus
OUTBOX_FOLDER = "processor/outbox/notifications"  # inside DataDirectory: email/, slack/
SCHEDULE_FILE = "processor/notifications/schedule.json"
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 120.0
CLOSE_TIMEOUT_S = 1.5  # per outbox
SCHEDULE_POLL_S = 20.0
OUTBOX_MAX_BYTES = 64 * 1024 * 1024
KINDS = frozenset({"distancing_start", "occupancy_over", "occupancy_log", "frame_summary"})


@dataclass(frozen=True)
class Target:
    """A camera or an area as the notifier sees it."""

    entity: str  # "camera" or "area"
    id: str
    name: str
    emails: tuple[str, ...]
    slack: bool
    window_s: float  # NotifyEveryMinutes * 60; 0: no distancing alerts
    threshold: int
    occupancy_threshold: int
    daily_report: bool
    daily_report_time: str
    cameras: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{'Camera' if self.entity == 'camera' else 'Area'} {self.name or self.id}"

    @property
    def reachable(self) -> bool:
        return bool(self.emails) or self.slack


def targets(config: LookoutConfig) -> list[Target]:
    app = config.app
    out = [Target("camera", s.id, s.name, tuple(s.emails),
                  app.enable_slack_notifications and s.enable_slack_notifications,
                  s.notify_every_minutes * 60.0, s.violation_threshold, s.occupancy_threshold,
                  s.daily_report, s.daily_report_time)
           for s in config.sources]
    out += [Target("area", a.id, a.name, tuple(a.emails),
                   app.enable_slack_notifications and a.enable_slack_notifications,
                   a.notify_every_minutes * 60.0, a.violation_threshold, a.occupancy_threshold,
                   a.daily_report, a.daily_report_time, tuple(a.cameras))
            for a in config.areas]
    return [t for t in out if t.reachable]


def notification_settings(config: LookoutConfig) -> Any:
    """Everything the notifier is built from (a reload rebuilds it when this changes)."""
    app = config.app
    return (targets(config), app.slack_channel, app.occupancy_alerts_min_interval,
            tuple(app.global_reporting_emails), app.global_report_time,
            app.daily_global_report, app.weekly_global_report, app.time_zone,
            app.enable_slack_notifications, str(config.data_dir),
            [s.id for s in config.sources], [a.id for a in config.areas])


def wanted(config: LookoutConfig) -> bool:
    app = config.app
    global_reach = bool(app.global_reporting_emails) or app.enable_slack_notifications
    return bool(targets(config)) or (
        global_reach and (app.daily_global_report or app.weekly_global_report))


def message_id(*parts: object) -> str:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()[:32]


def _epoch(ts: datetime) -> float:
    return ts.timestamp()


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="seconds")


class DeliveryError(Exception):
    """A message was not delivered (the text never holds a credential)."""


@dataclass
class _Window:
    start: float
    count: int = 0
    fired: bool = False


class Notifier(Sink):
    """Alerts and reports by e-mail and Slack; see the module docstring."""

    Config: ClassVar[type[PluginConfig]] = PluginConfig

    def __init__(self, app: LookoutConfig, *, clock: Callable[[], float] | None = None,
                 schedule_poll_s: float | None = SCHEDULE_POLL_S,
                 retry_first_s: float = RETRY_FIRST_S, retry_max_s: float = RETRY_MAX_S,
                 idle_poll_s: float = 1.0) -> None:
        self.app = app
        self.config = PluginConfig.model_validate({"Name": NAME})
        self.section = NAME
        self._clock = clock or time.time
        self._tz = app.app.tzinfo
        self._targets = targets(app)
        self._cameras = {t.id: t for t in self._targets if t.entity == "camera"}
        self._areas = {t.id: t for t in self._targets if t.entity == "area"}
        self._areas_of: dict[str, list[Target]] = {}
        for area in self._areas.values():
            for cam in area.cameras:
                self._areas_of.setdefault(cam, []).append(area)
        self._occupancy_min_s = float(app.app.occupancy_alerts_min_interval)
        self._windows: dict[tuple[str, str], _Window] = {}
        self._last_occupancy: dict[tuple[str, str], float] = {}
        self.alerts = 0
        self.reports = 0
        self._rejected = 0
        self._report_error: str | None = None
        self._schedule_path = app.data_path(SCHEDULE_FILE)
        self._schedule = self._load_schedule()
        self._schedule_lock = threading.Lock()
        common: dict[str, Any] = {
            "max_bytes": OUTBOX_MAX_BYTES, "batch_max_records": 1,
            "batch_max_bytes": OUTBOX_MAX_BYTES, "retry_first_s": retry_first_s,
            "retry_max_s": max(retry_first_s, retry_max_s), "idle_poll_s": idle_poll_s}
        self.email_outbox = Outbox(app.data_path(f"{OUTBOX_FOLDER}/email"), self._deliver_email,
                                   name=f"{NAME} e-mail", **common)
        try:
            self.slack_outbox = Outbox(app.data_path(f"{OUTBOX_FOLDER}/slack"),
                                       self._deliver_slack, name=f"{NAME} Slack", **common)
        except BaseException:
            self.email_outbox.close(timeout=CLOSE_TIMEOUT_S)
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if schedule_poll_s:
            self._thread = threading.Thread(target=self._schedule_loop, args=(schedule_poll_s,),
                                            name="notifications-schedule", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the bus side

    def accepts(self, rec: Record) -> bool:
        return rec.kind in KINDS

    def take(self, records: Sequence[Record]) -> None:
        """Count and compare; queue an alert when one is due. No network, no waiting."""
        for rec in records:
            kind = rec.kind
            if kind == "distancing_start" and rec.source == "camera":
                cam = self._cameras.get(rec.source_id)
                if cam is not None:
                    self._count_violation(cam, rec.timestamp)
                for area in self._areas_of.get(rec.source_id, ()):
                    self._count_violation(area, rec.timestamp)
            elif kind in ("occupancy_over", "occupancy_log", "frame_summary"):
                self._occupancy(rec)

    def _count_violation(self, target: Target, ts: datetime) -> None:
        if target.window_s <= 0:
            return
        at = _epoch(ts)
        start = (at // target.window_s) * target.window_s
        key = (target.entity, target.id)
        window = self._windows.get(key)
        if window is None or window.start != start:
            if window is not None and start < window.start:
                return  # a late record of a window already left behind
            window = self._windows[key] = _Window(start)
        window.count += 1
        if window.fired or window.count <= target.threshold:
            return
        window.fired = True
        first = datetime.fromtimestamp(start, UTC).astimezone(self._tz)
        minutes = target.window_s / 60
        subject = (f"{target.label}: {window.count} distancing violations in "
                   f"{minutes:g} min")
        text = (f"{target.label} had {window.count} social distancing violations since "
                f"{_iso(first)} (more than ViolationThreshold = {target.threshold} within "
                f"NotifyEveryMinutes = {minutes:g}); the latest at {_iso(ts.astimezone(self._tz))}"
                f".\nNo other distancing alert is sent for this {minutes:g}-minute window.")
        self._alert(target, message_id("violations", target.entity, target.id, start),
                    subject, text)

    def _occupancy(self, rec: Record) -> None:
        if self._occupancy_min_s < 0:
            return
        if rec.source == "area":
            target = self._areas.get(rec.source_id)
            over = isinstance(rec, OccupancyOver) or (
                isinstance(rec, AreaOccupancySample) and rec.violation)
        else:
            target = self._cameras.get(rec.source_id)
            over = isinstance(rec, OccupancyOver) or (
                isinstance(rec, FrameSummary) and rec.occupancy_threshold > 0
                and rec.occupancy > rec.occupancy_threshold)
        if target is None or not over:
            return
        occupancy = int(getattr(rec, "occupancy", 0))
        threshold = int(getattr(rec, "threshold", getattr(rec, "occupancy_threshold", 0)))
        at = _epoch(rec.timestamp)
        key = (target.entity, target.id)
        last = self._last_occupancy.get(key)
        if last is not None and at - last < self._occupancy_min_s and at >= last:
            return
        self._last_occupancy[key] = at
        local = rec.timestamp.astimezone(self._tz)
        subject = f"{target.label}: occupancy {occupancy} is over its limit of {threshold}"
        text = (f"{target.label} holds {occupancy} people at {_iso(local)}, over its "
                f"occupancy limit of {threshold}.\nThe next occupancy alert of this "
                f"{target.entity} comes {self._occupancy_min_s:g} s later at the earliest "
                "(OccupancyAlertsMinInterval).")
        self._alert(target, message_id("occupancy", target.entity, target.id, at), subject,
                    text)

    def _alert(self, target: Target, mid: str, subject: str, text: str) -> None:
        self.alerts += 1
        log.info("notifications: %s", subject)
        if target.emails:
            self._put(self.email_outbox, {"id": mid, "kind": "alert", "to": list(target.emails),
                                          "subject": subject, "text": text})
        if target.slack:
            self._put(self.slack_outbox, {"id": mid, "kind": "alert",
                                          "channel": self.app.app.slack_channel,
                                          "text": f"*{subject}*\n{text}"})

    def _put(self, outbox: Outbox, message: dict[str, Any]) -> None:
        try:
            outbox.put(message)
        except ValueError as exc:
            self._rejected += 1
            log.error("notifications: a message was dropped: %s", exc)
        except RuntimeError:  # closed: the bus let go of the notifier
            pass

    # ------------------------------------------------------------------ reports

    def _load_schedule(self) -> dict[str, str]:
        try:
            doc = json.loads(self._schedule_path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    def _save_schedule(self) -> None:
        path = self._schedule_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self._schedule, sort_keys=True))
        os.replace(tmp, path)

    def _schedule_loop(self, poll_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:
                self._report_error = f"{type(exc).__name__}: {exc}"
                log.exception("notifications: reports failed")
            self._stop.wait(poll_s)

    def _due(self, key: str, day: date, at: str, now: datetime) -> bool:
        hh, mm = (int(x) for x in at.split(":"))
        when = datetime.combine(day, dtime(hh, mm), tzinfo=self._tz)
        return now >= when and self._schedule.get(key) != day.isoformat()

    def tick(self) -> int:
        """Queue every report whose local time has come (and was not sent); how many."""
        with self._schedule_lock:
            now = datetime.fromtimestamp(self._clock(), UTC).astimezone(self._tz)
            today = now.date()
            yesterday = today - timedelta(days=1)
            made = 0
            for target in self._targets:
                if not target.daily_report:
                    continue
                key = f"daily:{target.entity}:{target.id}"
                if self._due(key, today, target.daily_report_time, now):
                    report = entity_day_report(self.app, target.entity, target.id,
                                               target.name, yesterday)
                    self._send_report(key, today, report, list(target.emails), target.slack)
                    made += 1
            app = self.app.app
            emails = list(app.global_reporting_emails)
            if emails or app.enable_slack_notifications:
                if app.daily_global_report and self._due("global:daily", today,
                                                         app.global_report_time, now):
                    report = global_report(self.app, "daily", yesterday, yesterday)
                    self._send_report("global:daily", today, report, emails,
                                      app.enable_slack_notifications)
                    made += 1
                monday = today - timedelta(days=today.weekday())
                if app.weekly_global_report and self._due("global:weekly", monday,
                                                          app.global_report_time, now):
                    report = global_report(self.app, "weekly", monday - timedelta(days=7),
                                           monday - timedelta(days=1))
                    self._send_report("global:weekly", monday, report, emails,
                                      app.enable_slack_notifications)
                    made += 1
            self._report_error = None
            return made

    def _send_report(self, key: str, marker: date, report: Report, emails: list[str],
                     to_slack: bool) -> None:
        mid = message_id("report", key, marker.isoformat())
        if emails:
            self._put(self.email_outbox, {
                "id": mid, "kind": "report", "to": emails, "subject": report.subject,
                "text": report.text, "html": report.html,
                "png": base64.b64encode(report.png).decode(), "png_name": "chart.png"})
        if to_slack:
            self._put(self.slack_outbox, {"id": mid, "kind": "report",
                                          "channel": self.app.app.slack_channel,
                                          "text": report.slack_text})
        self._schedule[key] = marker.isoformat()
        self._save_schedule()
        self.reports += 1
        log.info("notifications: %s queued", report.subject)

    # ------------------------------------------------------------------ delivery

    def _deliver_email(self, batch: list[dict[str, Any]]) -> None:
        settings: mail.SmtpSettings | None = None
        try:
            settings = mail.smtp_settings()
            for m in batch:
                png = base64.b64decode(m["png"]) if m.get("png") else None
                msg = mail.build_message(settings.sender, list(m["to"]), m["subject"],
                                         m["text"], m.get("html"), png,
                                         m.get("png_name") or "chart.png", m["id"])
                mail.send_message(settings, msg)
        except Exception as exc:
            raise DeliveryError(mail.describe_error(exc, settings)) from None

    def _deliver_slack(self, batch: list[dict[str, Any]]) -> None:
        url: str | None = None
        try:
            url = slack.webhook_url(self.app)
            for m in batch:
                slack.post_message(url, slack.message_payload(m["text"], m.get("channel", "")))
        except Exception as exc:
            raise DeliveryError(slack.describe_error(exc, url)) from None

    # ------------------------------------------------------------------ state, close

    def state(self) -> dict[str, Any]:
        """What GET /status shows under ``outputs.notifications``: never a credential."""
        out: dict[str, Any] = {"alerts": self.alerts, "reports": self.reports,
                               "report_error": self._report_error,
                               "cameras": sorted(self._cameras), "areas": sorted(self._areas)}
        for channel, outbox in (("email", self.email_outbox), ("slack", self.slack_outbox)):
            st = outbox.state()
            out[channel] = {"connected": st.connected, "queued": st.queued,
                            "delivered": st.delivered, "dropped": st.dropped,
                            "last_error": st.last_error, "failures": st.failures,
                            "next_retry_at": st.next_retry_at, "disk_bytes": st.disk_bytes}
        try:
            out["email"]["server"] = mail.smtp_settings().shown
        except mail.MailConfigError as exc:
            out["email"]["server"] = None
            out["email"]["config_error"] = str(exc)
        try:
            out["slack"]["webhook"] = slack.shown_url(slack.webhook_url(self.app))
        except slack.SlackConfigError as exc:
            out["slack"]["webhook"] = None
            out["slack"]["config_error"] = str(exc)
        # Both channels together, as every sink's state has them (Prometheus reads these).
        states = (self.email_outbox.state(), self.slack_outbox.state())
        out["queued"] = sum(st.queued for st in states)
        out["queued_bytes"] = sum(st.queued_bytes for st in states)
        out["delivered"] = sum(st.delivered for st in states)
        out["failures"] = max(st.failures for st in states)
        out["connected"] = None if all(st.connected is None for st in states) else \
            all(st.connected is not False for st in states)
        out["dropped"] = self._rejected + sum(st.dropped for st in states)
        return out

    def close(self) -> None:
        """Stop the schedule and delivery; undelivered messages stay for the next run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT_S)
        for outbox in (self.email_outbox, self.slack_outbox):
            with contextlib.suppress(Exception):
                if not outbox.close(timeout=CLOSE_TIMEOUT_S):
                    log.warning("notifications: %s still sending at close; the message stays "
                                "queued", outbox.name)


def build_notifier(config: LookoutConfig) -> Notifier | None:
    """The processor's notifier, or None when nothing is configured to be notified."""
    return Notifier(config) if wanted(config) else None


# ------------------------------------------------------------------ "send a test"


def send_test_email(config: LookoutConfig, to: list[str]) -> str:
    """One test e-mail, now, outside the outbox; :class:`SendTestError` with the reason."""
    if not to:
        raise SendTestError("no address to send to: give one, or set GlobalReportingEmails")
    settings: mail.SmtpSettings | None = None
    try:
        settings = mail.smtp_settings()
        msg = mail.build_message(settings.sender, to, "Lookout test e-mail",
                                 "A test e-mail from Lookout: notifications reach you.\n")
        mail.send_message(settings, msg)
    except Exception as exc:
        raise SendTestError(mail.describe_error(exc, settings)) from None
    return f"{settings.shown} accepted a test e-mail to {', '.join(to)}"


def send_test_slack(config: LookoutConfig) -> str:
    url: str | None = None
    try:
        url = slack.webhook_url(config)
        slack.post_message(url, slack.message_payload(
            "A test message from Lookout: notifications reach this channel.",
            config.app.slack_channel))
    except Exception as exc:
        raise SendTestError(slack.describe_error(exc, url)) from None
    return f"{slack.shown_url(url)} accepted a test message"
