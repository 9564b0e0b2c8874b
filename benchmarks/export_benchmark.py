"""Do exports slow the cameras?  Processing fps idle against fps while 200 clients ask for
exports at once, measured in one run of the real server.

    python benchmarks/export_benchmark.py [--copies 40] [--rounds 5] [--window 6] [--threads]

A real ``lookout run`` (processor and API in one process, as shipped) processes a folder of
``--copies`` links to vtest.avi with config-x86.ini as shipped (every analytic on), so it
stays busy through the measurement.  The measurement alternates windows of ``--window``
seconds: idle (nothing but the processing), then loaded (``--clients`` clients at once each
asking ``POST /export`` for everything the run has written so far: raw logs, reports, events
and screenshots; a client refused with 503 waits its ``Retry-After`` and asks again until the
window ends).  Between windows a few seconds pass unmeasured so exports in flight end.  The
camera's fps in a window is its processed-frame count (``GET /status``) over the window's
length; the ratio printed is the mean loaded fps over the mean idle fps (issue 8 asks for at
least 0.90).  ``--threads`` also prints the busiest threads of lookout in each window.

Measured on the 2-core development box (5 rounds of 6 s, 200 clients): 56.1 fps idle, 53.2 fps
with exports (444 exports built, 386 MB, 955 refusals with Retry-After): ratio 0.948.  Before the
export pool (every request built at once on the shared threads at normal priority) the issue
measured a 21-41% cut.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from api.auth import UserStore  # noqa: E402

PASSWORD = "benchmark-password"
CAMERA = "pets-view1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        try:
            dst.symlink_to(src)
        except OSError:
            shutil.copyfile(src, dst)


def make_config(work: Path, shared: Path, copies: int, port: int) -> Path:
    assets = work / "assets"
    clips = assets / "data" / "loop"
    clips.mkdir(parents=True)
    (assets / "models").symlink_to(shared / "models")
    vtest = shared / "data" / "pets09_s2l1" / "vtest.avi"
    for i in range(copies):
        link(vtest, clips / f"clip_{i:03d}.avi")
    text = (REPO / "config-x86.ini").read_text()
    for old, new in (("AssetsDirectory = ../shared", f"AssetsDirectory = {assets}"),
                     ("DataDirectory = data", f"DataDirectory = {work / 'data'}"),
                     ("Port = 8000", f"Port = {port}"),
                     ("VideoPath = data/pets09_s2l1/vtest.avi", "VideoPath = data/loop")):
        assert old in text, old
        text = text.replace(old, new, 1)
    config = work / "config.ini"
    config.write_text(text)
    UserStore(work / "data" / "auth" / "users.json").add("bench", PASSWORD, "viewer")
    return config


class Api:
    def __init__(self, port: int) -> None:
        self.port = port
        self.token = ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60,
                source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=(source, 0))
        try:
            hdrs = dict(headers or {})
            if self.token:
                hdrs["Authorization"] = f"Bearer {self.token}"
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def login(self) -> None:
        form = urllib.parse.urlencode({"username": "bench", "password": PASSWORD}).encode()
        status, _, body = self.request("POST", "/auth/token", form,
                                       {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200, body
        self.token = json.loads(body)["access_token"]

    def frames(self) -> tuple[int, str]:
        status, _, body = self.request("GET", f"/status/{CAMERA}")
        assert status == 200, body
        st = json.loads(body)
        return int(st["frames"]), str(st["status"])


class ExportLoad:
    """``clients`` threads asking for exports at once, until stopped."""

    BODY = json.dumps({"from_date": "2009-03-01", "to_date": "2009-03-01",
                       "data_types": ["raw", "reports", "events", "screenshots"]}).encode()

    def __init__(self, api: Api, clients: int) -> None:
        self.api = api
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.built = self.refused = self.failed = 0
        self.bytes = 0
        # Each client from its own loopback address, as 200 machines would be (the server
        # lets one address hold at most 64 connections).
        self.threads = [threading.Thread(target=self._client, args=(f"127.0.5.{i % 250 + 1}",),
                                         daemon=True)
                        for i in range(clients)]

    def _client(self, source: str) -> None:
        while not self.stop.is_set():
            try:
                status, headers, body = self.api.request(
                    "POST", "/export", self.BODY, {"Content-Type": "application/json"},
                    source=source)
            except OSError:
                with self.lock:
                    self.failed += 1
                self.stop.wait(1.0)
                continue
            with self.lock:
                if status == 200:
                    self.built += 1
                    self.bytes += len(body)
                elif status in (429, 503):
                    self.refused += 1
                else:
                    self.failed += 1
            if status != 200:
                self.stop.wait(float(headers.get("retry-after", "1")))

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)


def family(pid: int) -> list[int]:
    """A process and its children (the workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (the workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def thread_cpu(pid: int) -> dict[tuple[int, int, str, int], float]:
    """CPU seconds of every thread of a process and of its children, keyed by
    (pid, thread id, thread name, niceness)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[tuple[int, int, str, int], float] = {}
    for p in family(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                raw = Path(f"/proc/{p}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = raw[raw.index("(") + 1:raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            out[(p, int(tid), name, int(fields[16]))] = \
                (int(fields[11]) + int(fields[12])) / tick
    return out


class Window:
    """Frames and CPU seconds over one measured window."""

    def __init__(self, api: Api, server_pid: int, seconds: float) -> None:
        f0, _ = api.frames()
        c0 = cpu_seconds(server_pid), time.process_time()
        threads0 = thread_cpu(server_pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        f1, status = api.frames()
        elapsed = time.monotonic() - t0
        threads1 = thread_cpu(server_pid)
        self.threads = sorted(((v - threads0.get(k, 0.0)) / elapsed, k)
                              for k, v in threads1.items())[::-1]
        self.worker_cpu = sum(c for c, k in self.threads if k[0] != server_pid)
        if status != "running":
            raise RuntimeError(f"the camera is {status}: use more --copies")
        self.fps = (f1 - f0) / elapsed
        self.server_cpu = (cpu_seconds(server_pid) - c0[0]) / elapsed
        self.client_cpu = (time.process_time() - c0[1]) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=40, help="links to vtest.avi to process")
    parser.add_argument("--rounds", type=int, default=5, help="idle/loaded window pairs")
    parser.add_argument("--window", type=float, default=6.0, help="seconds per window")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between windows")
    parser.add_argument("--clients", type=int, default=200, help="concurrent export clients")
    parser.add_argument("--threads", action="store_true",
                        help="print the busiest threads of lookout in each window")
    parser.add_argument("--shared", type=Path, default=Path(
        os.environ.get("LOOKOUT_ASSETS_DIR", REPO.parent / "shared")))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lookout-export-bench-"))
    port = free_port()
    config = make_config(work, args.shared.resolve(), args.copies, port)
    log_path = work / "lookout.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "processor.cli", "run", "--config", str(config),
             "--no-progress"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    api = Api(port)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"lookout run exited:\n{log_path.read_text()}")
            try:
                if api.request("GET", "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up")
            time.sleep(0.2)
        api.login()
        while api.frames()[0] < 100:  # past the detector's warm-up
            time.sleep(0.5)
        idle: list[Window] = []
        loaded: list[Window] = []
        totals = {"built": 0, "refused": 0, "failed": 0, "bytes": 0}
        for r in range(args.rounds):
            idle.append(Window(api, proc.pid, args.window))
            time.sleep(args.settle)
            load = ExportLoad(api, args.clients)
            load.start()
            loaded.append(Window(api, proc.pid, args.window))
            load.finish()
            for key in totals:
                totals[key] += getattr(load, key)
            print(f"round {r + 1}: idle {idle[-1].fps:.2f} fps, with exports "
                  f"{loaded[-1].fps:.2f} fps ({load.built} exports built, {load.refused} "
                  f"refused with Retry-After, {load.failed} failed; CPU cores used by lookout "
                  f"{idle[-1].server_cpu:.2f} -> {loaded[-1].server_cpu:.2f}, of which the "
                  f"workers {idle[-1].worker_cpu:.2f} -> {loaded[-1].worker_cpu:.2f}; by the "
                  f"clients "
                  f"{loaded[-1].client_cpu:.2f})", flush=True)
            if args.threads:
                for name, w in (("idle", idle[-1]), ("loaded", loaded[-1])):
                    busy = ", ".join(f"{k[2]}[{k[0]}/{k[1]} nice {k[3]}] {c:.2f}"
                                     for c, k in w.threads[:8] if c > 0.01)
                    print(f"  {name} threads (cores): {busy}")
            time.sleep(args.settle)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    idle_fps = statistics.mean(w.fps for w in idle)
    loaded_fps = statistics.mean(w.fps for w in loaded)
    ratio = loaded_fps / idle_fps
    mb = totals["bytes"] / 1e6
    print(f"processing fps idle {idle_fps:.2f}, during {args.clients} concurrent "
          f"exports {loaded_fps:.2f}; exports built {totals['built']} "
          f"({mb:.1f} MB), refused {totals['refused']}, failed {totals['failed']}")
    per_round = statistics.median(w.fps / i.fps for w, i in zip(loaded, idle, strict=True))
    print(f"fps ratio (with exports / idle): {ratio:.3f} (median of the rounds' ratios "
          f"{per_round:.3f})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
