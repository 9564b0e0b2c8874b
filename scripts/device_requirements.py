"""Print the pinned requirements one device installs, one per line (scripts/install.sh uses it).

    python -I scripts/device_requirements.py DEVICE [--dev]

The device's extras come from ``libs/config/devices.py`` (``--extras DEVICE``: ``api``,
``integrations`` and the device's own), the pins from ``pyproject.toml``: this file adds no
fact of its own.  It runs with the bare interpreter of a new virtual environment, before
anything is installed, so it uses the standard library only and loads ``devices.py`` by its
path (the ``libs.config`` package imports pydantic).

``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` package: when a
device's extras bring ``onnxruntime-gpu``, the CPU build is left out.
LOOKOUT_ONNXRUNTIME_GPU_VERSION replaces the version of ``onnxruntime-gpu`` (NVIDIA's Jetson
index carries versions of its own; see docs/docker.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GPU_VERSION_ENV = "LOOKOUT_ONNXRUNTIME_GPU_VERSION"
# Distributions that install the same import package: the first of each pair is left out
# when the second is wanted.
REPLACED_BY = {"onnxruntime": "onnxruntime-gpu"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class RequirementError(ValueError):
    pass


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if not match:
        raise RequirementError(f"cannot read a project name in {requirement!r}")
    return canonical(match.group(1))


def device_extras(device: str, repo: Path = REPO) -> list[str]:
    """The extras ``python -m libs.config.devices --extras DEVICE`` prints."""
    devices = runpy.run_path(str(repo / "libs" / "config" / "devices.py"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = devices["main"](["--extras", device])
    if code != 0:
        raise RequirementError(err.getvalue().strip() or f"unknown device {device!r}")
    return [e for e in out.getvalue().strip().split(",") if e]


def requirements(device: str, dev: bool = False, repo: Path = REPO,
                 gpu_version: str | None = None) -> list[str]:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    extras = device_extras(device, repo) + (["dev"] if dev else [])
    wanted: list[str] = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise RequirementError(f"device {device!r} names extra {extra!r}, which "
                                   f"pyproject.toml does not declare")
        wanted.extend(optional[extra])
    by_name: dict[str, str] = {}
    for req in wanted:
        name = requirement_name(req)
        if name in by_name and by_name[name] != req:
            raise RequirementError(f"pyproject.toml pins {name} twice, differently: "
                                   f"{by_name[name]!r} and {req!r}; make them agree")
        by_name.setdefault(name, req)
    for name, replacement in REPLACED_BY.items():
        if replacement in by_name:
            by_name.pop(name, None)
    if gpu_version and "onnxruntime-gpu" in by_name:
        by_name["onnxruntime-gpu"] = f"onnxruntime-gpu=={gpu_version}"
    return list(by_name.values())


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    dev = "--dev" in args
    rest = [a for a in args if a != "--dev"]
    if len(rest) != 1 or rest[0].startswith("-"):
        print("usage: device_requirements.py DEVICE [--dev]", file=sys.stderr)
        return 2
    try:
        lines = requirements(rest[0], dev=dev, gpu_version=os.environ.get(GPU_VERSION_ENV))
    except RequirementError as exc:
        print(f"device_requirements.py: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
