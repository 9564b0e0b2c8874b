"""Real servers for the integration tests, each started by the test on a free port of
127.0.0.1 in a temporary folder: Mosquitto, Redis, InfluxDB 1.x and PostgreSQL (Debian's
packages; ``scripts/ensure-servers.sh``, run by ``make test``, installs them).

A missing server binary fails the test (never skips it): CI must run every integration
test.  Outage tests call :meth:`ServerProcess.stop` and :meth:`ServerProcess.start` to take a
server down mid-run and bring it back on the same port with the same data folder.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None,
              log: Path | None = None) -> None:
    """Return once ``127.0.0.1:port`` accepts a connection; fail with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    text = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"server on port {port} did not start (exit code "
                       f"{proc.poll() if proc else None}):\n{text}")


def binary(name: str, *globs: str) -> str:
    """The path of a server program, or fail the test naming the package to install."""
    found = shutil.which(name) or next(
        (p for g in globs for p in sorted(glob.glob(g)) if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/ensure-servers.sh (make test does)")
    return found


class ServerProcess:
    """One server program: :meth:`start` (again after :meth:`stop`, same port and data),
    :meth:`stop` (SIGTERM, then SIGKILL), used as a context manager."""

    def __init__(self, name: str, folder: Path, port: int | None = None) -> None:
        self.name = name
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None  # run as this user (PostgreSQL refuses root)

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> None:
        wait_port(self.port, proc=self.proc, log=self.log)

    def start(self) -> ServerProcess:
        if self.proc is not None and self.proc.poll() is None:
            return self
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        preexec = None
        if self.user is not None:
            entry = pwd.getpwnam(self.user)

            def preexec() -> None:
                os.setgid(entry.pw_gid)
                os.setuid(entry.pw_uid)

        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.folder,
                                     preexec_fn=preexec, start_new_session=True)
        out.close()
        self.ready()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mosquitto(ServerProcess):
    """An MQTT broker; anonymous clients, or ``users`` (name -> password) when given."""

    def __init__(self, folder: Path, port: int | None = None,
                 users: dict[str, str] | None = None) -> None:
        super().__init__("mosquitto", folder, port)
        self.users = users

    def command(self) -> list[str]:
        conf = self.folder / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "persistence false",
                 "log_dest stdout", "log_type error", "log_type warning"]
        if os.geteuid() == 0:
            # as root Mosquitto drops to the user "mosquitto", who cannot read the password
            # file or write its data in pytest's private folders
            lines.append("user root")
        if self.users:
            pw = self.folder / "passwd"
            pw.write_text("")
            tool = binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
            for user, password in self.users.items():
                subprocess.run([tool, "-b", str(pw), user, password], check=True,
                               capture_output=True)
            pw.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        conf.write_text("\n".join(lines) + "\n")
        return [binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)]


class Redis(ServerProcess):
    """A Redis server without persistence."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__("redis", folder, port)

    def command(self) -> list[str]:
        return [binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.folder),
                "--protected-mode", "yes"]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class InfluxDB1(ServerProcess):
    """InfluxDB 1.x (Debian's 1.6): the HTTP API on ``port``, no authentication; its data
    survives :meth:`stop` and :meth:`start`."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__("influxdb", folder, port)
        self.rpc_port = free_port()

    def command(self) -> list[str]:
        conf = self.folder / "influxdb.conf"
        d = self.folder
        conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
        )
        return [binary("influxd"), "-config", str(conf)]

    def ready(self) -> None:
        import http.client

        wait_port(self.port, proc=self.proc, log=self.log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/ping")
                if conn.getresponse().status == 204:
                    return
            time.sleep(0.1)
        raise RuntimeError("InfluxDB did not answer /ping")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class PostgreSQL(ServerProcess):
    """A PostgreSQL cluster made by ``initdb`` in the folder, user ``lookout`` with
    ``password``, database ``lookout``.  Run as the ``postgres`` system user when the tests
    run as root (PostgreSQL refuses root)."""

    def __init__(self, folder: Path, port: int | None = None,
                 password: str = "fleet-test-password") -> None:
        if os.geteuid() == 0:
            # pytest's folders are private to root, and the postgres user must reach its own
            folder = Path(tempfile.mkdtemp(prefix="lookout-pg-"))
            folder.chmod(0o755)
        super().__init__("postgres", folder, port)
        self.password = password
        self.bindir = str(Path(binary("postgres", "/usr/lib/postgresql/*/bin/postgres")).resolve()
                          .parent)
        self.data = folder / "cluster"
        if os.geteuid() == 0:
            self.user = "postgres"
            os.chown(folder, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)
        self._init()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, cwd=self.folder)

    def _init(self) -> None:
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if self.user is not None:
            shutil.chown(pwfile, self.user)
        self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-U", "lookout",
                  "--pwfile", str(pwfile), "-A", "scram-sha-256", "--no-sync", "-E", "UTF8")
        pwfile.unlink()
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n")

    def command(self) -> list[str]:
        return [f"{self.bindir}/postgres", "-D", str(self.data)]

    def remove(self) -> None:
        """Stop the server and delete its cluster."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def ready(self) -> None:
        wait_port(self.port, proc=self.proc, log=self.log)
        deadline = time.monotonic() + 30
        import psycopg

        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn(dbname="postgres"), connect_timeout=2) as conn:
                    if not self._has_db:
                        conn.autocommit = True
                        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = "
                                            "'lookout'").fetchone():
                            conn.execute("CREATE DATABASE lookout")
                        self._has_db = True
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not accept connections:\n"
                           + self.log.read_text(errors="replace")[-3000:])

    _has_db = False

    def dsn(self, dbname: str = "lookout") -> str:
        return (f"postgresql://lookout:{self.password}@127.0.0.1:{self.port}/{dbname}")


@contextlib.contextmanager
def running(server: ServerProcess) -> Iterator[ServerProcess]:
    """Start ``server``, yield it, stop it whatever happens."""
    try:
        yield server.start()
    finally:
        if isinstance(server, PostgreSQL):
            server.remove()
        else:
            server.stop()
