#!/usr/bin/env bash
# Fetch Lookout's model files and check their SHA-256.
#
#   LOOKOUT_MODELS_URL=https://your.mirror/models ./download_models.sh [DEST] [FILE...]
#
# LOOKOUT_MODELS_URL (required) is the base URL the files are fetched from: each file is
# "$LOOKOUT_MODELS_URL/<name>".  There is no built-in default: point it at your own mirror or
# a local server (tests use python -m http.server).  DEST defaults to
# "${LOOKOUT_ASSETS_DIR:-../shared}/models", the folder config-*.ini read models from.
# With no FILE arguments every model below is fetched.  A file already present with the right
# checksum is kept; a download is written to a temporary name and renamed only once verified.
set -euo pipefail

declare -A SHA256=(
  [person_yolox_nano_416.onnx]=695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14
  [person_yolox_nano_416_fp16.tflite]=6518faf758f5827fb8412c38d2240b7722027c299596518e1f94e678af1e6e29
  [face_yunet_2023mar.onnx]=8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4
  [facemask_rfb640_masked_face_v2.onnx]=27ca3e5985f722e91efea7993f625716de627303c4bafb40bb26f456286beca8
  [face_landmark_mediapipe.tflite]=1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814
  [age_cydral_v1.onnx]=4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c
  [gender_cydral_v1.onnx]=d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734
  [emotion_mini_xception_fer2013_64.onnx]=95036c208085db79ad43e057245b8cb6e21b5319ef7dcb4f0c83e0102f550d30
)

if [[ -z "${LOOKOUT_MODELS_URL:-}" ]]; then
  echo "download_models.sh: set LOOKOUT_MODELS_URL to the base URL of a model mirror" >&2
  exit 2
fi
base="${LOOKOUT_MODELS_URL%/}"
dest="${1:-${LOOKOUT_ASSETS_DIR:-$(dirname "$0")/../shared}/models}"
shift || true
files=("$@")
if [[ ${#files[@]} -eq 0 ]]; then
  mapfile -t files < <(printf '%s\n' "${!SHA256[@]}" | sort)
fi
mkdir -p "$dest"

fail=0
for name in "${files[@]}"; do
  want="${SHA256[$name]:-}"
  if [[ -z "$want" ]]; then
    echo "unknown model $name; known: ${!SHA256[*]}" >&2
    fail=1
    continue
  fi
  target="$dest/$name"
  if [[ -f "$target" ]] && [[ "$(sha256sum "$target" | cut -d' ' -f1)" == "$want" ]]; then
    echo "ok       $name (already present)"
    continue
  fi
  tmp="$(mktemp "$dest/.$name.XXXXXX")"
  if ! curl --fail --silent --show-error --location --retry 3 --output "$tmp" "$base/$name"; then
    rm -f "$tmp"
    echo "FAILED   $name: download from $base/$name failed" >&2
    fail=1
    continue
  fi
  got="$(sha256sum "$tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$want" ]]; then
    rm -f "$tmp"
    echo "FAILED   $name: checksum $got, expected $want" >&2
    fail=1
    continue
  fi
  chmod 644 "$tmp"
  mv -f "$tmp" "$target"
  echo "fetched  $name"
done
exit $fail
