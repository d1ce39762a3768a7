#!/usr/bin/env bash
# Make sure the server binaries the integration tests run for real are installed.
#
#   scripts/ensure-packages.sh
#
# Each binary missing from PATH is installed from Debian's packages when running as
# root on Debian (apt-get update once, then install); otherwise the script names what
# is missing and exits 1. The tests start and stop the servers themselves, on 127.0.0.1.
set -euo pipefail

# binary:package pairs
REQUIRED=(
    "redis-server:redis-server"
    "prometheus:prometheus"
    "promtool:prometheus"
    "docker-compose:docker-compose"
)

say() { printf 'ensure-packages: %s\n' "$*" >&2; }

missing=()
for pair in "${REQUIRED[@]}"; do
    binary="${pair%%:*}"
    package="${pair#*:}"
    command -v "$binary" >/dev/null 2>&1 || [[ -x "/usr/bin/$binary" ]] || missing+=("$package")
done
# Debian keeps the PostgreSQL server binaries off PATH, in /usr/lib/postgresql/<version>/bin.
if ! command -v postgres >/dev/null 2>&1 && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    missing+=("postgresql")
fi
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing: ${missing[*]}; install them (Debian: apt-get install ${missing[*]})"
    exit 1
fi
say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts packaged servers on install; the tests run their own instances.
for package in "${missing[@]}"; do
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now "$package" >/dev/null 2>&1 || true
    fi
done
