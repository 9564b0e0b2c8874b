"""The devices Lookout ships for: one table, from which everything per device is derived.

Each :class:`DeviceProfile` names the image (``<name>.Dockerfile``), the configuration file it
ships (``config-<...>.ini``), the ``pyproject`` extras its install adds, and how that
configuration differs from ``config-x86.ini``.  ``config-x86.ini`` is the one file edited by
hand; the other ``config-*.ini`` files are generated from it here, so a change to a camera, a
tracker setting or a comment reaches every device::

    python -m libs.config.devices            # rewrite the generated configuration files
    python -m libs.config.devices --check    # exit 1 naming each file that is out of date

``tests/test_device_profiles.py`` fails when a shipped file differs from what this makes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = "config-x86.ini"


@dataclass(frozen=True)
class DetectorKey:
    """A ``[Detector]`` key the device sets, with the comment written above it."""

    key: str
    value: str
    comment: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    """The image name: ``<name>.Dockerfile``, ``lookout:<name>``."""
    config: str
    """The configuration file the image runs by default."""
    extras: tuple[str, ...]
    """``pyproject`` extras installed beyond ``api`` and ``integrations``."""
    header: tuple[str, ...]
    """The file's opening comment, one line per item (without ``# ``)."""
    device: DetectorKey
    """``[Detector] Device`` and the comment above it."""
    detector: tuple[DetectorKey, ...] = field(default_factory=tuple)
    """Other ``[Detector]`` keys: set where the base has them, added after its last key."""

    @property
    def dockerfile(self) -> str:
        return f"{self.name}.Dockerfile"

    @property
    def image(self) -> str:
        return f"lookout:{self.name}"


_COMMON_TAIL = (
    "Relative VideoPath/ModelPath values are looked up in AssetsDirectory; logs and reports",
    "go to DataDirectory (both relative to this file).",
)
_GENERATED = (
    "Generated from config-x86.ini by `python -m libs.config.devices`: edit that file (or the",
    "device table in libs/config/devices.py) and regenerate, rather than editing this one.",
)

DEVICE_PROFILES: dict[str, DeviceProfile] = {
    p.name: p
    for p in (
        DeviceProfile(
            name="x86",
            config="config-x86.ini",
            extras=(),
            header=(),  # config-x86.ini is the base, edited by hand
            device=DetectorKey(
                "Device", "x86",
                "x86 = ONNX Runtime on the CPU; see README for x86-gpu, openvino, jetson, edgetpu.",
            ),
        ),
        DeviceProfile(
            name="x86-gpu",
            config="config-x86-gpu.ini",
            extras=("gpu",),
            header=(
                "Lookout configuration for x86 with an NVIDIA GPU (ONNX Runtime CUDA or TensorRT).",
                "Needs the GPU build of ONNX Runtime (scripts/install.sh x86-gpu).",
                *_COMMON_TAIL,
            ),
            device=DetectorKey(
                "Device", "x86-gpu",
                "x86-gpu = ONNX Runtime CUDA; tensorrt = ONNX Runtime's TensorRT provider (engine\n"
                "built on first start and cached under DataDirectory).",
            ),
            detector=(
                DetectorKey("TensorrtPrecision", "16", "16 or 32, for Device = tensorrt"),
                DetectorKey("DeviceId", "0", "Which GPU when there are several"),
            ),
        ),
        DeviceProfile(
            name="openvino",
            config="config-openvino.ini",
            extras=("openvino",),
            header=(
                "Lookout configuration for Intel CPUs, integrated GPUs and NPUs (OpenVINO).",
                "Needs the openvino package (scripts/install.sh openvino).",
                *_COMMON_TAIL,
            ),
            device=DetectorKey(
                "Device", "openvino",
                "openvino = OpenVINO, f32 by default so detections match ONNX Runtime.",
            ),
            detector=(
                DetectorKey(
                    "OpenvinoDevice", "CPU",
                    "CPU, GPU (GPU.1 for the second), NPU, or AUTO (the first present of NPU, "
                    "GPU, CPU)",
                ),
                DetectorKey(
                    "OpenvinoPrecision", "f32",
                    "f32 matches ONNX Runtime; f16 or bf16 are faster where the device has them",
                ),
            ),
        ),
        DeviceProfile(
            name="jetson-nano",
            config="config-jetson-nano.ini",
            extras=("gpu",),
            header=(
                "Lookout configuration for an NVIDIA Jetson (TensorRT through ONNX Runtime).",
                "Needs NVIDIA's onnxruntime-gpu build for JetPack 6 (scripts/install.sh "
                "jetson-nano).",
                *_COMMON_TAIL,
            ),
            device=DetectorKey(
                "Device", "jetson",
                "jetson = ONNX Runtime's TensorRT provider; the engine is built on first start\n"
                "(minutes on a Jetson) and cached under DataDirectory per TensorRT version.",
            ),
            detector=(
                DetectorKey("TensorrtPrecision", "16", "16 or 32"),
                DetectorKey("DeviceId", "0"),
            ),
        ),
        DeviceProfile(
            name="coral-dev-board",
            config="config-coral.ini",
            extras=("edgetpu",),
            header=(
                "Lookout configuration for a Coral Dev Board or USB Accelerator (LiteRT + EdgeTPU",
                "delegate). Needs ai-edge-litert and Coral's libedgetpu. Device = tflite runs the",
                "same model on the CPU.",
                *_COMMON_TAIL,
            ),
            device=DetectorKey(
                "Device", "edgetpu",
                "edgetpu = LiteRT with the EdgeTPU delegate; tflite = the same on the CPU.",
            ),
            detector=(
                DetectorKey("ModelPath", "models/person_yolox_nano_416_fp16.tflite"),
                DetectorKey("DeviceId", "0", "Which accelerator when several are attached"),
            ),
        ),
    )
}


def _comment_lines(comment: str) -> list[str]:
    return [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []


def _section_bounds(lines: list[str], section: str) -> tuple[int, int]:
    """``(first line after the header, end)`` of ``[section]``; end excludes trailing blanks."""
    head = lines.index(f"[{section}]")
    end = head + 1
    while end < len(lines) and not lines[end].startswith("["):
        end += 1
    while end > head + 1 and not lines[end - 1].strip():
        end -= 1
    return head + 1, end


def _key_line(lines: list[str], start: int, end: int, key: str) -> int | None:
    for i in range(start, end):
        name, sep, _ = lines[i].partition("=")
        if sep and not lines[i].lstrip().startswith(("#", ";")) and name.strip() == key:
            return i
    return None


def _set_key(lines: list[str], item: DetectorKey) -> None:
    start, end = _section_bounds(lines, "Detector")
    at = _key_line(lines, start, end, item.key)
    new = [*_comment_lines(item.comment), f"{item.key} = {item.value}"]
    if at is None:
        lines[end:end] = new
        return
    first = at
    while first > start and lines[first - 1].lstrip().startswith("#"):
        first -= 1
    # Keep the base's comment when the device brings none of its own.
    lines[first if item.comment else at:at + 1] = new if item.comment else new[-1:]


def render(profile: DeviceProfile, base_text: str) -> str:
    """The device's configuration file: ``base_text`` (config-x86.ini) with its header and
    ``[Detector]`` keys replaced."""
    lines = base_text.splitlines()
    if profile.header:
        body = next(i for i, line in enumerate(lines) if not line.startswith("#"))
        lines[:body] = _comment_lines("\n".join((*profile.header, *_GENERATED)))
    for item in (profile.device, *profile.detector):
        _set_key(lines, item)
    return "\n".join(lines) + "\n"


def base_text(repo: Path = REPO) -> str:
    return (repo / BASE_CONFIG).read_text()


def stale_configs(repo: Path = REPO) -> list[str]:
    """Configuration files that differ from what :func:`render` makes (missing ones too)."""
    base = base_text(repo)
    out = []
    for profile in DEVICE_PROFILES.values():
        path = repo / profile.config
        if not path.is_file() or path.read_text() != render(profile, base):
            out.append(profile.config)
    return out


def write_configs(repo: Path = REPO) -> list[str]:
    base = base_text(repo)
    written = []
    for profile in DEVICE_PROFILES.values():
        path = repo / profile.config
        text = render(profile, base)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(profile.config)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m libs.config.devices",
        description="Generate the per-device config-*.ini files from config-x86.ini.",
    )
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a file is out of date")
    parser.add_argument("--extras", metavar="DEVICE",
                        help="print the pyproject extras DEVICE installs, comma-separated")
    args = parser.parse_args(argv)
    if args.extras is not None:
        if args.extras not in DEVICE_PROFILES:
            print(f"unknown device {args.extras!r}; known: {', '.join(DEVICE_PROFILES)}",
                  file=sys.stderr)
            return 2
        print(",".join(("api", "integrations", *DEVICE_PROFILES[args.extras].extras)))
        return 0
    if args.check:
        stale = stale_configs()
        for name in stale:
            print(f"{name} is out of date: run python -m libs.config.devices", file=sys.stderr)
        return 1 if stale else 0
    for name in write_configs():
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
