#!/usr/bin/env bash
# Install Lookout for one device into a virtual environment.
#
#   scripts/install.sh DEVICE [--venv DIR] [--dev]
#
# DEVICE is an image name of libs/config/devices.py (x86, x86-gpu, openvino, jetson-nano,
# coral-dev-board).  The virtual environment DIR (default .venv) is made with $PYTHON
# (default python3) when it does not exist yet.  It gets the pinned packages of pyproject.toml
# for the device (scripts/device_requirements.py: the base dependencies, api, integrations
# and the device's extras; onnxruntime-gpu instead of onnxruntime where the device wants the
# GPU build, never both), requirements/no-deps.txt without their declared requirements, and
# Lookout itself in development mode (the checkout stays where the code runs from: the API
# serves dashboard/dist from beside it).  --dev adds the dev extra (tests, linters, hadolint).
#
# Every Dockerfile runs this script, `make` runs it for .venv, and
# tests/test_install_script.py runs it in a new virtual environment.
#
# Environment: PYTHON (the interpreter that makes the venv); pip's own variables such as
# PIP_INDEX_URL (the Jetson image points it at NVIDIA's index); LOOKOUT_ONNXRUNTIME_GPU_VERSION
# (replaces the onnxruntime-gpu pin, for an index whose versions differ from pyproject's).
set -euo pipefail

usage() {
  echo "usage: scripts/install.sh DEVICE [--venv DIR] [--dev]" >&2
  exit 2
}

device=""
venv=".venv"
dev=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv)
      [[ $# -ge 2 ]] || usage
      venv="$2"
      shift 2
      ;;
    --dev)
      dev=(--dev)
      shift
      ;;
    -h | --help) usage ;;
    -*)
      echo "install.sh: unknown option $1" >&2
      usage
      ;;
    *)
      [[ -z "$device" ]] || usage
      device="$1"
      shift
      ;;
  esac
done
[[ -n "$device" ]] || usage

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

# Standard library only: an unknown device fails here, naming the known ones, before any
# virtual environment is made.
reqs="$(mktemp "${TMPDIR:-/tmp}/lookout-requirements.XXXXXX")"
trap 'rm -f "$reqs"' EXIT
"$python" -I "$repo/scripts/device_requirements.py" "$device" "${dev[@]}" >"$reqs"

if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
py="$venv/bin/python"

echo "install.sh: $device into $venv ($(wc -l <"$reqs") pinned requirements${dev:+, dev})"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet -r "$reqs"
"$py" -m pip install --quiet --no-deps -r "$repo/requirements/no-deps.txt"
"$py" -m pip install --quiet --no-deps -e "$repo"
