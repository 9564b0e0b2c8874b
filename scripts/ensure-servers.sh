#!/usr/bin/env bash
# The integration tests start real servers of their own (tests/servers.py): Mosquitto, Redis,
# InfluxDB 1.x and PostgreSQL, from Debian's packages.  Installs the missing ones; apt-get
# needs root, so elsewhere this says what to run and fails.  Nothing is started here and no
# system service is enabled: each test starts its own server on a free port of 127.0.0.1.
set -euo pipefail
need=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v redis-server >/dev/null || need+=(redis-server)
command -v influxd >/dev/null || need+=(influxdb)
[ -x "$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | tail -1)" ] || need+=(postgresql)
if [ ${#need[@]} = 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing servers for the integration tests (apt-get): ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${need[@]}" >/dev/null
  exit 0
fi
echo "The integration tests need these Debian packages: ${need[*]}" >&2
echo "  sudo apt-get install ${need[*]}" >&2
exit 1
