"""The dashboard's chart logic (dashboard/tests/charts.test.ts) under Node's test runner.

The TypeScript test is bundled with the dashboard's own esbuild (a pinned devDependency) and run
with ``node --test`` in a time zone far from UTC, so a date or hour taken in the browser's zone
instead of the processor's would show. Skipped only when Node or the dashboard's node_modules
are missing (``make install`` / ``npm ci`` provides them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
ESBUILD = DASHBOARD / "node_modules" / ".bin" / "esbuild"
TEST = DASHBOARD / "tests" / "charts.test.ts"


def test_chart_logic_under_node(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    if not ESBUILD.exists():
        pytest.skip(f"{ESBUILD} missing: cd dashboard && npm ci")
    bundle = tmp_path / "charts.test.mjs"
    built = subprocess.run(
        [str(ESBUILD), str(TEST), "--bundle", "--platform=node", "--format=esm",
         f"--outfile={bundle}", "--log-level=warning"],
        cwd=DASHBOARD, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    env = {**os.environ, "TZ": "Pacific/Auckland"}
    run = subprocess.run([node, "--test", str(bundle)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 11" in run.stdout, run.stdout[-2000:]
