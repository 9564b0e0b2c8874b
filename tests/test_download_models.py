"""download_models.sh against a real local HTTP server serving ../shared/models."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "download_models.sh"


@pytest.fixture
def mirror(tmp_path: Path, shared: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "mirror"
    root.mkdir()
    for name in ("person_yolox_nano_416.onnx", "gender_cydral_v1.onnx"):
        shutil.copy(shared / "models" / name, root / name)
    (root / "face_yunet_2023mar.onnx").write_bytes(b"not the model")  # corrupt copy
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()


def run(url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOOKOUT_MODELS_URL"}
    if url is not None:
        env["LOOKOUT_MODELS_URL"] = url
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_requires_source_url(tmp_path: Path) -> None:
    res = run(None, str(tmp_path))
    assert res.returncode == 2 and "LOOKOUT_MODELS_URL" in res.stderr


def test_fetches_and_verifies(mirror: tuple[str, Path], tmp_path: Path, shared: Path) -> None:
    url, _ = mirror
    dest = tmp_path / "models"
    res = run(url, str(dest), "person_yolox_nano_416.onnx", "gender_cydral_v1.onnx")
    assert res.returncode == 0, res.stderr
    for name in ("person_yolox_nano_416.onnx", "gender_cydral_v1.onnx"):
        got = hashlib.sha256((dest / name).read_bytes()).hexdigest()
        assert got == hashlib.sha256((shared / "models" / name).read_bytes()).hexdigest()
    again = run(url, str(dest), "person_yolox_nano_416.onnx")
    assert "already present" in again.stdout


def test_bad_checksum_and_missing_file_leave_nothing(mirror: tuple[str, Path],
                                                     tmp_path: Path) -> None:
    url, _ = mirror
    dest = tmp_path / "models"
    res = run(url, str(dest), "face_yunet_2023mar.onnx", "age_cydral_v1.onnx")
    assert res.returncode == 1
    assert "face_yunet_2023mar.onnx: checksum" in res.stderr
    assert "age_cydral_v1.onnx: download" in res.stderr
    assert list(dest.iterdir()) == []
