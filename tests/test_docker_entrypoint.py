"""scripts/docker-entrypoint.sh, the images' entry point, run here against this checkout (as
the image's /app): the first start writes the device's configuration into the empty config
folder with the API on 0.0.0.0, fetches the models from LOOKOUT_MODELS_URL (a local server),
then runs the lookout subcommand with --config $LOOKOUT_CONFIG; a later start keeps the user's
file; anything that is no lookout subcommand runs as given."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

ENTRYPOINT = REPO / "scripts" / "docker-entrypoint.sh"


@pytest.fixture
def mirror(shared: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(shared / "models"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_start_writes_config_fetches_models_then_runs(
        tmp_path: Path, shared: Path, mirror: str) -> None:
    config_dir, data, assets = tmp_path / "config", tmp_path / "data", tmp_path / "assets"
    for folder in (config_dir, data, assets):
        folder.mkdir()
    # the recording the configuration names, where a user would mount it
    (assets / "data" / "pets09_s2l1").mkdir(parents=True)
    shutil.copy(shared / "data" / "pets09_s2l1" / "vtest.avi", assets / "data" / "pets09_s2l1")
    config = config_dir / "config-x86.ini"
    env = {**os.environ, "LOOKOUT_APP_DIR": str(REPO), "LOOKOUT_CONFIG": str(config),
           "LOOKOUT_DATA_DIR": str(data), "LOOKOUT_ASSETS_DIR": str(assets),
           "LOOKOUT_MODELS_URL": mirror,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ENTRYPOINT), *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    res = entrypoint("check-config")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"wrote the default configuration to {config}" in res.stderr
    template = (REPO / "config-x86.ini").read_text().splitlines()
    written = config.read_text().splitlines()
    changed = [(a, b) for a, b in zip(template, written, strict=True) if a != b]
    assert changed == [("Host = 127.0.0.1", "Host = 0.0.0.0")]
    # every model, byte for byte, in the assets folder the configuration reads
    expected = sorted(p.name for p in (shared / "models").iterdir() if p.suffix != ".md")
    fetched = sorted(p.name for p in (assets / "models").iterdir())
    assert fetched == expected
    for name in fetched:
        assert sha256(assets / "models" / name) == sha256(shared / "models" / name), name
    assert f"{config}: valid" in res.stdout
    assert f"assets directory: {assets}" in res.stdout
    assert f"data directory:   {data}" in res.stdout

    # a later start keeps the user's file (and the models already there)
    config.write_text(config.read_text().replace("Port = 8000", "Port = 8123"))
    res = entrypoint("check-config")
    assert res.returncode == 0, res.stderr
    assert "wrote the default" not in res.stderr and "Port = 8123" in config.read_text()
    assert res.stdout.count("(already present)") == len(expected)

    res = entrypoint("echo", "not", "lookout")
    assert res.returncode == 0 and res.stdout == "not lookout\n"


def test_no_configuration_and_no_template(tmp_path: Path) -> None:
    env = {**os.environ, "LOOKOUT_APP_DIR": str(REPO),
           "LOOKOUT_CONFIG": str(tmp_path / "mine.ini"), "LOOKOUT_DATA_DIR": str(tmp_path)}
    res = subprocess.run([str(ENTRYPOINT), "run"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    assert f"no configuration at {tmp_path / 'mine.ini'}; mount a folder holding it at " \
        f"{tmp_path}" in res.stderr
