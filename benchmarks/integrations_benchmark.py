"""The whole processor with every integration sink, servers up against servers down, in one run.

    python benchmarks/integrations_benchmark.py [--config config-x86.ini] [--rounds 2]

Each round runs, interleaved with bare-detector passes (``detector.detect`` alone over frames
decoded beforehand, as in :mod:`benchmarks.pipeline_benchmark`), two passes of the whole
processor (supervisor, a camera worker, the API server) over the clip with every integration
sink configured against a real local server:

* **up**: every server runs; the sinks deliver;
* **down**: every server was stopped before the pass; the processor runs anyway, and the
  sinks queue what they would have sent in their outboxes.

Pipeline fps is the worker's: frames between the first and the last frame summary the
supervisor's event bus carried, over the time between them. The benchmark prints both
pipeline/bare ratios, their difference (issue 11: at most 0.02), and per sink how many
records it delivered (up) or queued (down).

Every integration of the issue has a row in :data:`PLUGS` (its section, server and
environment), used when its module (``libs/loggers/<name>.py``) exists, so the benchmark ran
with the webhook alone and picks up each sink as it lands; a sink module in libs/loggers with
no row is named in the output. ``s3_backup`` (a once-a-day periodic task) is left out. The
servers are the test servers
(:mod:`tests.servers`: Mosquitto, Redis, InfluxDB 1.x, PostgreSQL) plus moto's S3 server,
aiosmtpd, the test webhook receiver (tests/webhook_receiver.py) and the Slack receiver
(tests/notify_servers.py), each a process of its own
on a free loopback port, so none competes for this process's interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_benchmark import (  # noqa: E402
    bare_pass,
    decode_all,
    free_port,
    outputs_config,
)
from libs.config import load_config  # noqa: E402
from libs.detectors import create_detector  # noqa: E402
from libs.integrations.outbox import SEGMENT_SUFFIX, STATE_FILE  # noqa: E402
from tests.servers import (  # noqa: E402
    InfluxDB1,
    Mosquitto,
    PostgreSQL,
    Redis,
    ServerProcess,
    wait_port,
)

PG_DSN_VARIABLE = "LOOKOUT_BENCH_PG_DSN"
# Modules of libs/loggers that are no integration (they write on this box, or are helpers).
LOCAL_MODULES = {"__init__", "drawing", "writer", "file_system_logger", "video_logger"}
S3_BUCKET = "lookout-bench"


class PythonServer(ServerProcess):
    """A server that is a Python module run in its own process (moto, aiosmtpd, the test
    webhook receiver)."""

    def __init__(self, name: str, folder: Path, args: Callable[[int], list[str]]) -> None:
        super().__init__(name, folder)
        self.args = args

    def command(self) -> list[str]:
        return [sys.executable, "-u", *self.args(self.port)]

    def ready(self) -> None:
        wait_port(self.port, timeout=30, proc=self.proc, log=self.log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Plug:
    """One integration: the module that must exist, the section(s) it adds, the servers it
    needs, the environment it reads."""

    name: str
    module: str  # relative to the repository
    servers: Callable[[Path], dict[str, ServerProcess]]
    section: Callable[[dict[str, ServerProcess], int], str]  # (servers, section number)
    env: Callable[[dict[str, ServerProcess]], dict[str, str]] = lambda s: {}
    after_start: Callable[[dict[str, ServerProcess]], None] = lambda s: None
    source_keys: dict[str, str] = field(default_factory=dict)  # keys set on [Source_0]
    app_keys: dict[str, str] = field(default_factory=dict)  # keys set in [App]
    live: dict[str, ServerProcess] = field(default_factory=dict)
    sections: list[str] = field(default_factory=list)


def _webhook_rx(folder: Path) -> dict[str, ServerProcess]:
    return {"receiver": PythonServer("webhook-receiver", folder / "webhook", lambda p: [
        "-m", "tests.webhook_receiver", "--port", str(p)])}


def _s3_bucket(servers: dict[str, ServerProcess]) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=servers["s3"].url,  # type: ignore[attr-defined]
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=S3_BUCKET)


PLUGS: list[Plug] = [
    Plug("web_hook_logger", "libs/loggers/web_hook_logger.py", _webhook_rx,
         lambda s, n: f"[Output_{n}]\nName = web_hook_logger\n"
                      f"Endpoint = {s['receiver'].url}/hook\n"  # type: ignore[attr-defined]
                      "SendingInterval = 1\nSecret = benchmark-secret\n"),
    Plug("prometheus", "libs/loggers/prometheus.py", lambda f: {},
         lambda s, n: f"[Output_{n}]\nName = prometheus\nPort = {free_port()}\n"),
    Plug("mqtt_logger", "libs/loggers/mqtt_logger.py",
         lambda f: {"broker": Mosquitto(f / "mosquitto")},
         lambda s, n: f"[Output_{n}]\nName = mqtt_logger\nHost = 127.0.0.1\n"
                      f"Port = {s['broker'].port}\n"),
    Plug("redis_logger", "libs/loggers/redis_logger.py",
         lambda f: {"redis": Redis(f / "redis")},
         lambda s, n: f"[Output_{n}]\nName = redis_logger\n"
                      f"Url = {s['redis'].url}\n"),  # type: ignore[attr-defined]
    Plug("influxdb_logger", "libs/loggers/influxdb_logger.py",
         lambda f: {"influxdb": InfluxDB1(f / "influxdb")},
         lambda s, n: f"[Output_{n}]\nName = influxdb_logger\n"
                      f"Url = {s['influxdb'].url}\nApiVersion = 1\n"  # type: ignore[attr-defined]
                      "Database = lookout\nCreateDatabase = True\n"),
    Plug("postgres_logger", "libs/loggers/postgres_logger.py",
         lambda f: {"postgres": PostgreSQL(f / "postgres")},
         lambda s, n: f"[Output_{n}]\nName = postgres_logger\n"
                      f"DsnVariable = {PG_DSN_VARIABLE}\n",
         env=lambda s: {PG_DSN_VARIABLE: s["postgres"].dsn()}),  # type: ignore[attr-defined]
    Plug("s3_logger", "libs/loggers/s3_logger.py",
         lambda f: {"s3": PythonServer("moto", f / "moto", lambda p: [
             "-m", "moto.server", "-H", "127.0.0.1", "-p", str(p)])},
         lambda s, n: f"[SourceLogger_{n}]\nName = s3_logger\n"
                      f"Endpoint = {s['s3'].url}\n"  # type: ignore[attr-defined]
                      f"ScreenshotS3Bucket = {S3_BUCKET}\nTrigger = period\n"
                      "ScreenshotPeriod = 0.1\n",
         env=lambda s: {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                        "AWS_BUCKET_REGION": "us-east-1"},
         after_start=_s3_bucket),
    # Notifications are the reference's Source keys, not a section: e-mail to aiosmtpd and
    # Slack to a local HTTP receiver, for every distancing violation (NotifyEveryMinutes 1).
    Plug("notifications", "libs/integrations/slack.py",
         lambda f: {"smtp": PythonServer("aiosmtpd", f / "smtp", lambda p: [
             "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{p}"]),
             "slack": PythonServer("slack-receiver", f / "slack", lambda p: [
                 "-m", "tests.notify_servers", "--slack-port", str(p)])},
         lambda s, n: "",
         env=lambda s: {"LOOKOUT_SMTP_HOST": "127.0.0.1",
                        "LOOKOUT_SMTP_PORT": str(s["smtp"].port),
                        "LOOKOUT_SMTP_SECURITY": "plain",
                        "LOOKOUT_SLACK_WEBHOOK_URL":
                            f"{s['slack'].url}/slack"},  # type: ignore[attr-defined]
         source_keys={"NotifyEveryMinutes": "1", "ViolationThreshold": "1",
                      "Emails": "store-manager@example.com",
                      "EnableSlackNotifications": "True"},
         app_keys={"EnableSlackNotifications": "True"}),
]


def present(plug: Plug) -> bool:
    return (REPO / plug.module).is_file()


def set_keys(text: str, header: str, keys: dict[str, str]) -> str:
    """``text`` with ``keys`` set in its first section whose header matches ``header``."""
    match = re.search(rf"^\[{header}\]\n(?:(?!^\[).*\n)*", text, re.M)
    if match is None:
        raise SystemExit(f"the config has no [{header}] section")
    section = match.group(0)
    for key, value in keys.items():
        line = f"{key} = {value}"
        section, n = re.subn(rf"^{key} =.*$", line, section, flags=re.M)
        if not n:
            section = section.rstrip("\n") + f"\n{line}\n\n"
    return text.replace(match.group(0), section, 1)


def with_plugs(base: str, plugs: list[Plug]) -> str:
    text = base
    number = 40  # section numbers far from the shipped config's
    for plug in plugs:
        text = set_keys(text, r"Source_\d+", plug.source_keys) if plug.source_keys else text
        text = set_keys(text, "App", plug.app_keys) if plug.app_keys else text
        body = plug.section(plug.live, number)
        plug.sections = re.findall(r"^\[(\w+)\]", body, re.M)
        if body:
            text = text.rstrip("\n") + "\n\n" + body
        number += 1
    return text


def check_plugs(config_path: Path, folder: Path, plugs: list[Plug]) -> list[Plug]:
    """The plugs whose section loads (a sink still being written may not): each is tried
    alone over the shipped config; one that fails is left out, with its reason."""
    base = outputs_config(config_path, folder, free_port(), None).read_text()
    kept = []
    for plug in plugs:
        trial = folder / f"check-{plug.name}.ini"
        trial.write_text(with_plugs(base, [plug]))
        try:
            load_config(trial)
        except Exception as exc:
            print(f"  {plug.name}: left out, its section does not load: "
                  f"{str(exc).splitlines()[0][:300]}", flush=True)
            continue
        finally:
            trial.unlink()
        kept.append(plug)
    return kept


def outbox_queued(data: Path, section: str) -> int:
    """Records a section's outbox folder(s) hold undelivered on disk (read as the outbox
    does: segments from the state's head segment on, less the head's delivered offset)."""
    total = 0
    for state_path in (data / "processor/outbox" / section).rglob(STATE_FILE):
        folder = state_path.parent
        state = json.loads(state_path.read_text())
        head, offset = int(state.get("segment", 0)), int(state.get("offset", 0))
        for seg in folder.glob("*" + SEGMENT_SUFFIX):
            if int(seg.stem) < head:
                continue
            body = seg.read_bytes()
            total += body[offset if int(seg.stem) == head else 0:].count(b"\n")
    return total


def scrape(url: str) -> str:
    """One scrape of the Prometheus exposition, as Prometheus does it."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    families = sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
    return f"scraped: HTTP {answer.status}, {families} metric families"


def processor_pass(config_path: Path, plugs: list[Plug], up: bool
                   ) -> tuple[float, int, dict[str, str]]:
    """One run of the whole processor over the clip with every plug's sink; the worker's
    fps, its frames, and per sink what it delivered or queued."""
    from api.server import build_server
    from libs.records import FrameSummary
    from processor.supervisor import Supervisor

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "data"
        os.environ["LOOKOUT_DATA_DIR"] = str(data)
        api_port = free_port()
        base = outputs_config(config_path, folder, api_port, None)
        base.write_text(with_plugs(base.read_text(), plugs))
        arrivals: list[float] = []

        def on_records(records: Any) -> None:
            now = time.perf_counter()
            arrivals.extend(now for r in records if isinstance(r, FrameSummary))

        notify = next((p for p in plugs if p.name == "notifications"), None)
        seen = notifications_seen(notify.live) if notify is not None else (0, 0)
        sup = Supervisor(base, show_progress=False, exit_when_done=False)
        sup.bus.subscribe("benchmark", on_records)
        server = build_server(base, sup, "warning")
        api = threading.Thread(target=server.run, daemon=True)
        api.start()
        while not server.started:
            time.sleep(0.05)
        cpu0, servers0 = time.process_time(), servers_cpu_seconds(plugs)
        sup.run_in_thread()
        figures: dict[str, str] = {}
        try:
            while not sup.all_done.wait(0.2):
                pass
            settle = time.monotonic() + (30 if up else 2)
            while time.monotonic() < settle:  # up: the outboxes empty; down: a last look
                outs = sup.submit(sup.outputs_status).result(10)
                if up and all(o.get("queued", 0) == 0 for o in outs.values()):
                    break
                time.sleep(0.5)
            outs = sup.submit(sup.outputs_status).result(10)
            figures["CPU s used by the servers during the pass"] = \
                f"{servers_cpu_seconds(plugs) - servers0:.1f}"
            figures["CPU s used by this process (supervisor, sinks, API)"] = \
                f"{time.process_time() - cpu0:.1f}"
            for section, out in outs.items():
                if out.get("name") == "prometheus":
                    figures[f"prometheus [{section}]"] = scrape(out["url"])
        finally:
            sup.request_stop()
            if sup._loop_thread is not None:
                sup._loop_thread.join(60)
            server.should_exit = True
            api.join(20)
        for plug in plugs:
            for section in plug.sections:
                out = outs.get(section)
                if out is not None and "queued" in out:
                    figures[f"{plug.name} [{section}]"] = (
                        f"delivered {out['delivered']}, queued {out['queued']}, "
                        f"dropped {out['dropped']}")
                elif out is not None:
                    pass  # prometheus: scraped above
                else:  # a sink in the camera's worker: its outbox on disk
                    figures[f"{plug.name} [{section}]"] = (
                        "in the camera's worker; its outbox holds "
                        f"{outbox_queued(data, section)} records undelivered")
            if plug.name == "s3_logger" and up:
                figures["s3_logger objects in the bucket"] = str(s3_objects(plug.live))
            if plug.name == "notifications":
                mails, posts = notifications_seen(plug.live)
                figures["notifications"] = (f"e-mails received {mails - seen[0]}, Slack posts "
                                            f"received {posts - seen[1]} during this pass")
        frames = len(arrivals)
        fps = (frames - 1) / (arrivals[-1] - arrivals[0])
        return fps, frames, figures


def s3_objects(servers: dict[str, ServerProcess]) -> int:
    import boto3

    client = boto3.client("s3", endpoint_url=servers["s3"].url,  # type: ignore[attr-defined]
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET)
    return sum(len(page.get("Contents", [])) for page in pages)


def notifications_seen(servers: dict[str, ServerProcess]) -> tuple[int, int]:
    """Messages the SMTP server printed and Slack posts the receiver logged, so far (their
    logs survive a stop and start)."""
    smtp = servers["smtp"].log.read_text(errors="replace").count("---------- MESSAGE FOLLOWS")
    slack = len(re.findall(r"^POST /slack", servers["slack"].log.read_text(errors="replace"),
                           re.M))
    return smtp, slack


def servers_cpu_seconds(plugs: list[Plug]) -> float:
    """CPU seconds used so far by the running servers (every process of each server's
    session: PostgreSQL's backends too)."""
    sessions = {srv.proc.pid for plug in plugs for srv in plug.live.values()
                if srv.proc is not None and srv.proc.poll() is None}
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) in sessions:  # field 6 of stat: the session id
            total += sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    return total


def start_all(plugs: list[Plug]) -> None:
    for plug in plugs:
        for srv in plug.live.values():
            srv.start()
        plug.after_start(plug.live)


def stop_all(plugs: list[Plug]) -> None:
    for plug in plugs:
        for srv in plug.live.values():
            srv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config-x86.ini"))
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    config_path = Path(args.config).resolve()
    # The Python servers (tests.webhook_receiver) are modules of this repository.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    work = Path(tempfile.mkdtemp(prefix="lookout-integrations-bench-"))
    found = [p for p in PLUGS if present(p)]
    print("sinks found: " + ", ".join(p.name for p in found)
          + "; not there yet: " + (", ".join(p.name for p in PLUGS if not present(p))
                                   or "none"), flush=True)
    rows = {Path(p.module).stem for p in PLUGS}
    unknown = sorted(m.stem for m in (REPO / "libs/loggers").glob("*.py")
                     if m.stem not in rows | LOCAL_MODULES)
    if unknown:
        print("sink modules without a row in PLUGS (not benchmarked): " + ", ".join(unknown))
    try:
        for plug in found:
            plug.live = plug.servers(work / plug.name)
        start_all(found)
        for plug in found:
            os.environ.update(plug.env(plug.live))
        plugs = check_plugs(config_path, work, found)
        config = load_config(config_path)
        detector = create_detector(config)
        frames = decode_all(config)
        for image in frames[:20]:  # warm-up
            detector.detect(image)
        bare: list[float] = []
        up: list[float] = []
        down: list[float] = []
        figures_up: dict[str, str] = {}
        figures_down: dict[str, str] = {}
        for r in range(args.rounds):
            start_all(plugs)
            bare.append(bare_pass(detector, frames))
            fps, _, figures_up = processor_pass(config_path, plugs, up=True)
            up.append(fps)
            stop_all(plugs)  # down before the pass starts; the processor runs anyway
            bare.append(bare_pass(detector, frames))
            fps, _, figures_down = processor_pass(config_path, plugs, up=False)
            down.append(fps)
            print(f"round {r + 1}: bare {bare[-2]:.1f}/{bare[-1]:.1f} fps, servers up "
                  f"{up[-1]:.1f} fps, servers down {down[-1]:.1f} fps", flush=True)
    finally:
        stop_all(found)
        for plug in found:
            for srv in plug.live.values():
                if isinstance(srv, PostgreSQL):
                    srv.remove()
        shutil.rmtree(work, ignore_errors=True)
    bare_fps = statistics.median(bare)
    ratio_up = statistics.median(up) / bare_fps
    ratio_down = statistics.median(down) / bare_fps
    print()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(f"clip: {config.sources[0].video_path} ({len(frames)} frames)")
    print("sinks: " + ", ".join(p.name for p in plugs))
    print("last pass with the servers up:")
    for what, said in figures_up.items():
        print(f"  {what}: {said}")
    print("last pass with the servers down:")
    for what, said in figures_down.items():
        print(f"  {what}: {said}")
    print(f"bare detector fps:          {bare_fps:8.1f}")
    print(f"ratio, servers up:          {ratio_up:8.3f}")
    print(f"ratio, servers down:        {ratio_down:8.3f}")
    print(f"difference (up - down):     {ratio_up - ratio_down:8.3f}   (target |d| <= 0.02)")
    print("per round (over the median bare fps): "
          + ", ".join(f"{a / bare_fps:.3f}/{b / bare_fps:.3f}"
                      for a, b in zip(up, down, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
