#!/usr/bin/env bash
# The entry point of every Lookout image (docs/docker.md).
#
#   docker run ... lookout:x86                     # lookout run --no-progress --config $LOOKOUT_CONFIG
#   docker run ... lookout:x86 check-config        # any lookout subcommand
#   docker run ... lookout:x86 create-user admin   # (--config $LOOKOUT_CONFIG added when missing)
#   docker run ... lookout:x86 bash                # anything else runs as given
#
# Before `run` and `check-config`:
# - no file at $LOOKOUT_CONFIG (the /config volume is empty): the device's configuration from
#   the image is written there, with [API] Host = 0.0.0.0 so that the published port reaches
#   the API; edit it (cameras, [API] SSLEnabled) and restart;
# - LOOKOUT_MODELS_URL set: download_models.sh fetches the models missing from
#   $LOOKOUT_ASSETS_DIR/models (files already there with the right checksum are kept).
set -euo pipefail

config="${LOOKOUT_CONFIG:?the image sets LOOKOUT_CONFIG; it is empty}"
app="${LOOKOUT_APP_DIR:-/app}" # where the image keeps the code (tests point it at a checkout)
commands=" run check-config create-user make-certs evaluate healthcheck "

fail() {
  echo "docker-entrypoint: $*" >&2
  exit 2
}

prepare() {
  if [[ ! -f "$config" ]]; then
    template="$app/$(basename "$config")"
    [[ -f "$template" ]] || fail "no configuration at $config; mount a folder holding it at $(dirname "$config")"
    [[ -w "$(dirname "$config")" ]] || fail "no configuration at $config, and $(dirname "$config") is not writable by uid $(id -u): mount your configuration there, or make the folder writable (chown $(id -u) on the host)"
    sed -e 's/^Host = 127\.0\.0\.1$/Host = 0.0.0.0/' "$template" >"$config"
    echo "docker-entrypoint: wrote the default configuration to $config (API on 0.0.0.0:8000, no TLS)." >&2
    echo "docker-entrypoint: set your cameras (relative VideoPath values are looked up in $LOOKOUT_ASSETS_DIR) and [API] SSLEnabled there, then restart." >&2
  fi
  data="${LOOKOUT_DATA_DIR:-/data}"
  [[ -w "$data" ]] || fail "$data is not writable by uid $(id -u): chown $(id -u) the folder mounted there"
  if [[ -n "${LOOKOUT_MODELS_URL:-}" ]]; then
    "$app/download_models.sh" "${LOOKOUT_ASSETS_DIR:-/assets}/models" \
      || fail "could not fetch the models from LOOKOUT_MODELS_URL=$LOOKOUT_MODELS_URL (see above)"
  fi
}

if [[ $# -eq 0 ]]; then
  set -- run --no-progress
fi
if [[ "$commands" != *" $1 "* ]]; then
  exec "$@"
fi
sub="$1"
shift
case "$sub" in
  run | check-config) prepare ;;
esac
case "$sub" in
  run | check-config | create-user | evaluate | healthcheck)
    if [[ " $* " != *" --config "* && " $* " != *" --config="* ]]; then
      set -- "$@" --config "$config"
    fi
    ;;
esac
exec lookout "$sub" "$@"
