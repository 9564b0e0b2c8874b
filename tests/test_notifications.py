"""Notifications (libs/integrations/notify.py) against real servers: aiosmtpd with STARTTLS and
a login (tests/notify_servers.py) and a local Slack incoming-webhook receiver.

- alerts fire once per interval, not per frame (3 minutes of 10 fps records: 3 distancing
  alerts and 3 occupancy alerts per channel, no more);
- the daily reports arrive at the configured local time (Europe/Madrid, injected clock):
  nothing a second before, one each after, with the numbers of the processor's own reports
  and a PNG chart; the global daily and weekly reports at GlobalReportTime; none twice after a
  restart;
- an outage of both servers mid-run: every alert produced meanwhile arrives after, counted;
- the /slack API: admins set it, viewers are refused, nobody reads the URL back;
- the reference config-x86.ini's App keys load.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from libs.config import ConfigChange, LookoutConfig, load_config, save_config_changes
from libs.integrations import mail, slack
from libs.integrations.notify import Notifier, send_test_email, wanted
from libs.loggers import SendTestError
from libs.loggers.file_system_logger import AreaFileSystemLogger, SourceFileSystemLogger
from libs.records import (
    AreaOccupancySample,
    DistancingStart,
    FrameSummary,
    ObjectsSample,
    Record,
    RecordIds,
)
from tests.conftest import REPO, SHARED
from tests.notify_servers import SlackReceiver, SmtpServer, wait_until

T0 = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)  # on a minute boundary
CAM, AREA = "pets-view1", "campus"
MADRID = ZoneInfo("Europe/Madrid")
CAM_NAME = "PETS09 S2L1 view 1"  # [Source_0] Name of config-x86.ini


def write_config(folder: Path, app: dict[str, str], source: dict[str, str],
                 area: dict[str, str]) -> LookoutConfig:
    text = (REPO / "config-x86.ini").read_text()
    text = text.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {SHARED}")
    path = folder / "config.ini"
    path.write_text(text)
    return save_config_changes(path, [ConfigChange("App", app), ConfigChange("Source_0", source),
                                      ConfigChange("Area_0", area)], check_files=False)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    with SmtpServer(tmp_path_factory.mktemp("smtp")) as server:
        yield server


@pytest.fixture(scope="module")
def slack_rx() -> Iterator[SlackReceiver]:
    with SlackReceiver() as rx:
        yield rx


@pytest.fixture
def servers(smtp: SmtpServer, slack_rx: SlackReceiver,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[SmtpServer, SlackReceiver]]:
    for key, value in smtp.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(slack.ENV_WEBHOOK_URL, slack_rx.url)
    monkeypatch.delenv("LOOKOUT_DATA_DIR", raising=False)
    smtp.messages.clear()
    smtp.envelopes.clear()
    slack_rx.posts.clear()
    yield smtp, slack_rx


def fast_notifier(config: LookoutConfig, **kw: object) -> Notifier:
    return Notifier(config, retry_first_s=0.05, retry_max_s=0.2, idle_poll_s=0.02,
                    **kw)  # type: ignore[arg-type]


def alert_config(tmp_path: Path) -> LookoutConfig:
    return write_config(
        tmp_path,
        {"EnableSlackNotifications": "True", "SlackChannel": "store-alerts",
         "OccupancyAlertsMinInterval": "60"},
        {"NotifyEveryMinutes": "1", "ViolationThreshold": "5", "Emails": "ops@example.com",
         "EnableSlackNotifications": "True"},
        {"Emails": "area-lead@example.com, ops@example.com", "EnableSlackNotifications": "True",
         "OccupancyThreshold": "10"})


class Feed:
    """Three kinds of records, as the bus carries them: a frame summary per frame (10 fps),
    a ``distancing_start`` every second of video, the area's ``occupancy_log`` sample every
    second (12 people, over its limit of 10)."""

    def __init__(self) -> None:
        self.ids = RecordIds()
        self.frame = 0

    def frames(self, seconds: float) -> Iterator[list[Record]]:
        for _ in range(round(seconds * 10)):
            i = self.frame
            self.frame += 1
            ts = T0 + timedelta(seconds=i / 10)
            cam = dict(source="camera", source_id=CAM, timestamp=ts)
            out: list[Record] = [FrameSummary(
                id=self.ids(), frame=i, detected_objects=3, violating_objects=2,
                violating_pairs=1, occupancy=3, occupancy_threshold=0, environment_score=0.5,
                **cam)]
            if i % 10 == 0:
                out.append(DistancingStart(id=self.ids(), frame=i, violating_objects=2,
                                           violating_pairs=1, track_ids=(1, 2), **cam))
                out.append(AreaOccupancySample(
                    id=self.ids(), source="area", source_id=AREA, timestamp=ts, occupancy=12,
                    threshold=10, violation=True, cameras={CAM: 12}))
            yield out


def subjects(smtp: SmtpServer) -> list[str]:
    return [str(m["Subject"]) for m in smtp.got()]


def test_alerts_fire_once_per_interval_not_per_frame(
        tmp_path: Path, servers: tuple[SmtpServer, SlackReceiver]) -> None:
    smtp, rx = servers
    config = alert_config(tmp_path)
    notifier = fast_notifier(config, schedule_poll_s=None)
    try:
        feed, frames = Feed(), 0
        for records in feed.frames(180):  # three 1-minute windows of video
            notifier.take(records)
            frames += 1
        assert frames == 1800
        wait_until(lambda: len(smtp.got()) == 6 and len(rx.got()) == 6, 15,
                   "6 e-mails and 6 Slack messages")
        wait_until(lambda: notifier.state()["delivered"] == 12, 5, "the outboxes' counts")
        state = notifier.state()
    finally:
        notifier.close()
    got = subjects(smtp)
    distancing = [s for s in got if "distancing violations" in s]
    occupancy = [s for s in got if "occupancy 12 is over its limit of 10" in s]
    # 60 violations per minute against a threshold of 5: one alert in each of the 3 windows,
    # sent when the 6th came; occupancy over its limit all along: one alert per 60 s.
    assert distancing == [f"Camera {CAM_NAME}: 6 distancing violations in 1 min"] * 3
    assert len(occupancy) == 3
    msgs = smtp.got()
    assert {tuple(m["To"].addresses[k].addr_spec for k in range(len(m["To"].addresses)))
            for m in msgs} == {("ops@example.com",),
                               ("area-lead@example.com", "ops@example.com")}
    assert all(tls for _, _, tls in smtp.envelopes)  # STARTTLS before every message
    assert all(frm == "lookout@example.com" for frm, _, _ in smtp.envelopes)
    # the windows are 12:00, 12:01 and 12:02 of the video clock; the alerts say so
    firsts = sorted(re.search(r"since (\S+) ", m.get_body(("plain",)).get_content()).group(1)
                    for m in msgs if "distancing" in str(m["Subject"]))
    assert firsts == ["2026-12-04T12:00:00+00:00", "2026-12-04T12:01:00+00:00",
                      "2026-12-04T12:02:00+00:00"]
    posts = rx.got()
    assert [p["channel"] for p in posts] == ["#store-alerts"] * 6
    assert sum("distancing violations" in p["text"] for p in posts) == 3
    assert sum("over its limit" in p["text"] for p in posts) == 3
    assert len({m["Message-ID"] for m in msgs}) == 6
    assert state["alerts"] == 6 and state["email"]["delivered"] == 6
    assert state["slack"]["delivered"] == 6 and state["dropped"] == 0
    assert state["email"]["server"] == f"starttls://127.0.0.1:{smtp.port}"
    assert "s3cr3t" not in str(state) and "smtp-pw" not in str(state)


def test_outage_alerts_made_while_smtp_and_slack_are_down_arrive_after(
        tmp_path: Path, servers: tuple[SmtpServer, SlackReceiver]) -> None:
    smtp, rx = servers
    config = alert_config(tmp_path)
    notifier = fast_notifier(config, schedule_poll_s=None)
    feed = Feed()
    try:
        for records in feed.frames(60):  # minute 1: both servers up
            notifier.take(records)
        wait_until(lambda: len(smtp.got()) == 2 and len(rx.got()) == 2, 10, "minute 1's alerts")
        smtp.stop()
        rx.stop()
        try:
            for records in feed.frames(180):  # minutes 2-4 with both servers down
                notifier.take(records)
            wait_until(lambda: notifier.state()["email"]["connected"] is False
                       and notifier.state()["slack"]["connected"] is False, 10,
                       "both channels failing")
            state = notifier.state()
            assert state["email"]["queued"] == 6 and state["slack"]["queued"] == 6
            assert len(smtp.got()) == 2 and len(rx.got()) == 2
        finally:
            smtp.start()
            rx.start()
        wait_until(lambda: len(smtp.got()) == 8 and len(rx.got()) == 8, 15,
                   "the alerts of the outage")
        wait_until(lambda: notifier.state()["delivered"] == 16, 5, "the outboxes' counts")
        state = notifier.state()
    finally:
        notifier.close()
    msgs = smtp.got()
    assert len({m["Message-ID"] for m in msgs}) == 8  # each alert once, none lost
    assert sum("distancing" in str(m["Subject"]) for m in msgs) == 4
    assert sum("distancing" in p["text"] for p in rx.got()) == 4
    assert state["email"]["connected"] is True and state["email"]["queued"] == 0
    assert state["slack"]["connected"] is True and state["slack"]["queued"] == 0
    assert state["dropped"] == 0


# ------------------------------------------------------------------------------- reports


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at.timestamp()


def write_raw_logs(config: LookoutConfig, day: datetime) -> None:
    """Yesterday (local) for the camera: 09:00-09:50 every 10 min 4 people, 2 violating; 10:00
    -10:50 2 people, none violating; and today 00:30 local (still yesterday in UTC) 10 people,
    which the report of yesterday must leave out. The area: 12 then 8 people, limit 10."""
    ids = RecordIds()
    fs = next(s for s in config.source_loggers if s.name == "file_system_logger")
    cam_log = SourceFileSystemLogger(fs, config.source(CAM), config)
    afs = next(s for s in config.area_loggers if s.name == "file_system_logger")
    area_log = AreaFileSystemLogger(afs, config.areas[0], config)
    plan = [(day.replace(hour=9) + timedelta(minutes=10 * k), 4, 2) for k in range(6)]
    plan += [(day.replace(hour=10) + timedelta(minutes=10 * k), 2, 0) for k in range(6)]
    plan += [(day + timedelta(days=1, minutes=30), 10, 4)]
    for n, (ts, people, violating) in enumerate(plan):
        cam_log.take([ObjectsSample(
            id=ids(), source="camera", source_id=CAM, timestamp=ts, frame=n,
            detected_objects=people, violating_objects=violating,
            violating_pairs=violating // 2, occupancy=people, environment_score=0.1,
            detections=(), violations_indexes=())])
        area_log.take([AreaOccupancySample(
            id=ids(), source="area", source_id=AREA, timestamp=ts, occupancy=people * 3,
            threshold=10, violation=people * 3 > 10, cameras={CAM: people * 3})])
    cam_log.close()
    area_log.close()


def png_of(msg: object) -> np.ndarray:
    parts = [p for p in msg.walk() if p.get_content_type() == "image/png"]  # type: ignore[attr-defined]
    assert parts, "no PNG in the message"
    data = parts[0].get_content()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (400, 800, 3)
    return img


def test_reports_arrive_at_the_local_time_with_numbers_and_a_chart(
        tmp_path: Path, servers: tuple[SmtpServer, SlackReceiver]) -> None:
    smtp, rx = servers
    config = write_config(
        tmp_path,
        {"TimeZone": "Europe/Madrid", "EnableSlackNotifications": "True",
         "GlobalReportingEmails": "boss@example.com", "GlobalReportTime": "08:00",
         "DailyGlobalReport": "True", "WeeklyGlobalReport": "True"},
        {"DailyReport": "True", "DailyReportTime": "07:30", "Emails": "ops@example.com",
         "EnableSlackNotifications": "True"},
        {"DailyReport": "True", "DailyReportTime": "07:30", "Emails": "area-lead@example.com"})
    yesterday = datetime(2026, 12, 6, tzinfo=MADRID)  # a Sunday; reports go on Monday the 7th
    write_raw_logs(config, yesterday)
    clock = Clock(datetime(2026, 12, 7, 7, 29, 59, tzinfo=MADRID))  # 06:29:59 UTC
    notifier = fast_notifier(config, clock=clock, schedule_poll_s=None)
    try:
        assert notifier.tick() == 0
        clock.at = datetime(2026, 12, 7, 7, 30, tzinfo=MADRID)
        assert notifier.tick() == 2  # the camera's and the area's daily reports
        wait_until(lambda: len(smtp.got()) == 2 and len(rx.got()) == 1, 10, "2 daily reports")
        clock.at = datetime(2026, 12, 7, 7, 59, tzinfo=MADRID)
        assert notifier.tick() == 0  # sent once
        clock.at = datetime(2026, 12, 7, 8, 0, tzinfo=MADRID)
        assert notifier.tick() == 2  # the global daily and weekly reports
        wait_until(lambda: len(smtp.got()) == 4 and len(rx.got()) == 3, 10, "global reports")
    finally:
        notifier.close()
    # a restart later that day sends nothing again
    clock.at = datetime(2026, 12, 7, 9, 0, tzinfo=MADRID)
    again = fast_notifier(config, clock=clock, schedule_poll_s=None)
    try:
        assert again.tick() == 0
    finally:
        again.close()

    by_subject = {str(m["Subject"]): m for m in smtp.got()}
    cam = by_subject[f"Camera {CAM_NAME}: daily report for 2026-12-06"]
    text = cam.get_body(("plain",)).get_content()
    assert "People: average 3.00, peak 4" in text  # the 00:30 sample of the 7th is left out
    assert "Samples with a distancing violation: 6 of 12 (50.0%)" in text
    assert "Violating people: average 1.00, peak 2" in text
    assert [a.addr_spec for a in cam["To"].addresses] == ["ops@example.com"]
    img = png_of(cam)
    assert (img != 255).any(axis=2).sum() > 2000  # bars, axes and text drawn
    html_part = cam.get_body(("html",)).get_content()
    assert 'src="cid:chart"' in html_part
    area = by_subject["Area Campus junction: daily report for 2026-12-06"]
    area_text = area.get_body(("plain",)).get_content()
    assert "Occupancy: average 9.00, peak 12" in area_text
    assert "Samples over capacity: 6 of 12 (50.0%)" in area_text
    png_of(area)
    daily = by_subject["Lookout daily report for 2026-12-06"]
    weekly = by_subject["Lookout weekly report for 2026-11-30 to 2026-12-06"]
    for msg in (daily, weekly):
        assert [a.addr_spec for a in msg["To"].addresses] == ["boss@example.com"]
        body = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
        assert f"Camera {CAM_NAME}\n- People: average 3.00, peak 4" in body
        png_of(msg)
    # Slack: the camera's report (the area has no Slack), then the two global ones
    texts = [p["text"] for p in rx.got()]
    assert texts[0].startswith(f"*Camera {CAM_NAME}: daily report for 2026-12-06*")
    assert "Samples with a distancing violation: 6 of 12 (50.0%)" in texts[0]
    assert texts[1].startswith("*Lookout daily report") and \
        texts[2].startswith("*Lookout weekly report")


def test_nothing_configured_builds_no_notifier(tmp_path: Path) -> None:
    config = write_config(tmp_path, {}, {}, {})
    assert not wanted(config)


# ------------------------------------------------------------------------------- API


@pytest.fixture
def api(x86_config: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from tests.test_api_config import make_api

    monkeypatch.delenv(slack.ENV_WEBHOOK_URL, raising=False)
    yield from make_api(x86_config, monkeypatch)


def test_slack_api_admin_sets_viewer_refused_nobody_reads_the_url(
        api: object, servers: tuple[SmtpServer, SlackReceiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    smtp, rx = servers
    monkeypatch.delenv(slack.ENV_WEBHOOK_URL)
    client, admin, viewer = api.client, api.admin, api.viewer  # type: ignore[attr-defined]
    r = client.get("/slack/is-enabled", headers=viewer)
    assert r.status_code == 200 and r.json() == {"enabled": False, "configured": False,
                                                  "source": None, "channel": ""}
    body = {"webhook_url": rx.url, "channel": "store-alerts"}
    assert client.put("/slack/enable", json=body, headers=viewer).status_code == 403
    assert client.put("/slack/enable", json=body).status_code == 401
    bad = {"webhook_url": "http://hooks.example.com/services/x"}
    assert client.put("/slack/enable", json=bad, headers=admin).status_code == 422
    r = client.put("/slack/enable", json=body, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"enabled": True, "configured": True, "source": "api",
                        "channel": "store-alerts"}
    config = load_config(api.path, check_files=False)  # type: ignore[attr-defined]
    assert config.app.enable_slack_notifications and config.app.slack_channel == "store-alerts"
    stored = slack.store_path(config)
    assert stored.stat().st_mode & 0o777 == 0o600
    assert "s3cr3tW3bh00k" not in api.text()  # type: ignore[attr-defined]  # not in the INI
    for headers in (admin, viewer):  # nobody reads the URL back, anywhere
        for url in ("/slack/is-enabled", "/slack/current-channel", "/config", "/app"):
            r = client.get(url, headers=headers)
            assert "s3cr3tW3bh00k" not in r.text, url
    assert client.post("/slack/test", headers=viewer).status_code == 403
    r = client.post("/slack/test", headers=admin)
    assert r.status_code == 200 and "s3cr3t" not in r.text
    assert rx.got()[-1] == {"text": "A test message from Lookout: notifications reach this "
                            "channel.", "channel": "#store-alerts"}
    r = client.post("/slack/add-channel", json={"channel": "ops"}, headers=admin)
    assert r.json() == {"channel": "ops"}
    assert client.get("/slack/current-channel", headers=viewer).json() == {"channel": "ops"}
    # the e-mail test: through the real server, 502 with a reason when it is down
    r = client.post("/notifications/email/test", json={"to": ["ops@example.com"]},
                    headers=admin)
    assert r.status_code == 200, r.text
    assert str(smtp.got()[-1]["Subject"]) == "Lookout test e-mail"
    assert client.post("/notifications/email/test", json={"to": ["ops@example.com"]},
                       headers=viewer).status_code == 403
    smtp.stop()
    try:
        r = client.post("/notifications/email/test", json={"to": ["ops@example.com"]},
                        headers=admin)
    finally:
        smtp.start()
    assert r.status_code == 502 and "connection refused" in r.json()["detail"]
    assert "smtp-pw" not in r.text
    assert client.put("/slack/revoke", headers=viewer).status_code == 403
    r = client.put("/slack/revoke", headers=admin)
    assert r.json()["enabled"] is False and r.json()["configured"] is False
    assert not stored.exists()
    r = client.post("/slack/test", headers=admin)
    assert r.status_code == 400 and "no Slack webhook" in r.json()["detail"]
    monkeypatch.delenv("LOOKOUT_SMTP_HOST")
    r = client.post("/notifications/email/test", json={}, headers=admin)
    assert r.status_code == 400 and "no address" in r.json()["detail"]
    r = client.post("/notifications/email/test", json={"to": ["a@b.example"]}, headers=admin)
    assert r.status_code == 400 and "LOOKOUT_SMTP_HOST is not set" in r.json()["detail"]
    r = client.post("/slack/add-channel", json={"channel": "a\nb"}, headers=admin)
    assert r.status_code == 422


def test_reference_app_keys_load(tmp_path: Path) -> None:
    """The [App], [Source_0] and [Area_0] notification keys of the reference's config-x86.ini
    (its s3 sections, another integration, left out)."""
    text = (SHARED / "seeds" / "ssd-configs" / "config-x86.ini").read_text()
    kept = [block for block in re.split(r"(?m)^(?=\[)", text)
            if block.startswith(("[App]", "[Source_0]", "[Area_0]"))]
    assert len(kept) == 3
    ours = (REPO / "config-x86.ini").read_text()
    ours = ours.replace("AssetsDirectory = ../shared", f"AssetsDirectory = {SHARED}")
    path = tmp_path / "config.ini"
    path.write_text(ours)
    app_keys = dict(re.findall(r"(?m)^(\w+) = ?(.*)$", kept[0]))
    wanted_keys = ("EnableSlackNotifications", "SlackChannel", "OccupancyAlertsMinInterval",
                   "GlobalReportingEmails", "GlobalReportTime", "DailyGlobalReport",
                   "WeeklyGlobalReport")
    src_keys = dict(re.findall(r"(?m)^(\w+) = ?(.*)$", kept[2 if kept[2].startswith(
        "[Source_0]") else 1]))
    notify = ("NotifyEveryMinutes", "ViolationThreshold", "Emails", "EnableSlackNotifications",
              "DailyReport", "DailyReportTime")
    config = save_config_changes(path, [
        ConfigChange("App", {k: app_keys[k] for k in wanted_keys}),
        ConfigChange("Source_0", {k: src_keys[k] for k in notify})], check_files=False)
    app = config.app
    assert app.enable_slack_notifications is False and app.slack_channel == \
        "lanthorn-notifications"
    assert app.occupancy_alerts_min_interval == 180 and app.global_report_time == "06:00"
    assert app.global_reporting_emails == [] and not app.daily_global_report
    assert not app.weekly_global_report
    assert config.sources[0].violation_threshold == 60
    with pytest.raises(Exception, match="not a time HH:MM"):
        save_config_changes(path, [ConfigChange("App", {"GlobalReportTime": "6am"})],
                            check_files=False)
    with pytest.raises(Exception, match="not an e-mail address"):
        save_config_changes(path, [ConfigChange("App", {"GlobalReportingEmails": "a@b.c, x"})],
                            check_files=False)


def test_supervisor_shows_the_notifier_in_status(
        tmp_path: Path, servers: tuple[SmtpServer, SlackReceiver]) -> None:
    from processor.supervisor import Supervisor

    config = alert_config(tmp_path)
    sup = Supervisor(config.path, show_progress=False)
    try:
        sup._build_sinks()
        out = sup.outputs_status()["notifications"]
        assert out["name"] == "notifications" and out["alerts"] == 0
        assert out["cameras"] == [CAM] and out["areas"] == [AREA]
        assert out["slack"]["webhook"] == "http://127.0.0.1"
        for records in Feed().frames(7):
            sup.publish(records)
        assert sup.outputs_status()["notifications"]["alerts"] == 2
        # an App key of the notifications changed: a reload rebuilds the notifier (and only
        # it: no camera restarts); an area without Emails nor Slack drops out of it
        save_config_changes(config.path, [ConfigChange("App", {"SlackChannel": "other"})],
                            check_files=False)
        assert sup.reload() == {"started": [], "restarted": [], "stopped": []}
        assert sup.outputs_status()["notifications"]["alerts"] == 0
        save_config_changes(config.path, [
            ConfigChange("App", {"EnableSlackNotifications": "False"}),
            ConfigChange("Area_0", {"Emails": ""})], check_files=False)
        assert sup.reload() == {"started": [], "restarted": [], "stopped": []}
        out = sup.outputs_status()["notifications"]
        assert out["cameras"] == [CAM] and out["areas"] == []
        assert out["slack"]["webhook"] == "http://127.0.0.1"  # still set, but...
        assert sup.bus_sinks["notifications"]._cameras[CAM].slack is False  # ...now off
    finally:
        sup._close_sinks()


def test_smtp_implicit_tls_and_what_is_refused(tmp_path: Path, smtp: SmtpServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SMTPS (tls) reaches a real server; a certificate the client does not trust, plain text
    to a remote host and a wrong password are refused, with reasons that hold no password."""
    config = write_config(tmp_path, {}, {}, {})
    with SmtpServer(tmp_path / "smtps", implicit_tls=True) as smtps:
        for key, value in smtps.env().items():
            monkeypatch.setenv(key, value)
        assert "tls://127.0.0.1" in send_test_email(config, ["ops@example.com"])
        assert len(smtps.got()) == 1  # the port speaks nothing but TLS
        other_ca = smtps.ca_file
    for key, value in smtp.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOOKOUT_SMTP_PASSWORD", "wrong-pw-123")
    with pytest.raises(SendTestError, match="login refused") as err:
        send_test_email(config, ["ops@example.com"])
    assert "wrong-pw" not in str(err.value)
    monkeypatch.setenv("LOOKOUT_SMTP_PASSWORD", smtp.env()["LOOKOUT_SMTP_PASSWORD"])
    monkeypatch.setenv("LOOKOUT_SMTP_CA_FILE", str(other_ca))  # a CA that did not sign it
    with pytest.raises(SendTestError, match="TLS failed"):
        send_test_email(config, ["ops@example.com"])
    with pytest.raises(mail.MailConfigError, match="only accepted for a loopback"):
        mail.smtp_settings({"LOOKOUT_SMTP_HOST": "smtp.example.com",
                            "LOOKOUT_SMTP_SECURITY": "plain"})
    assert mail.smtp_settings({"LOOKOUT_SMTP_HOST": "::1", "LOOKOUT_SMTP_SECURITY": "plain"}
                              ).port == 25
    with pytest.raises(slack.SlackConfigError):
        slack.check_webhook_url("http://hooks.slack.com/services/x")
