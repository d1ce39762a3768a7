#!/usr/bin/env bash
# Make sure a Docker engine answers.
#
#   scripts/ensure-docker.sh
#
# 1. If `docker info` answers: exit 0 (fast path).
# 2. Else, when running as root on Debian: install docker.io if dockerd is missing,
#    start dockerd in the background with no bridge network and no iptables rules
#    (so that no private-range address ever exists on this host), wait until
#    `docker info` answers (bounded), exit 0.
# 3. Otherwise print what is missing and exit 1.
#
# Environment knobs (all optional):
#   STREAMKIT_DOCKERD_LOG            dockerd log file   (default /tmp/streamkit-dockerd.log)
#   STREAMKIT_DOCKERD_TIMEOUT        seconds to wait for the engine (default 60)
#   STREAMKIT_DOCKER_STORAGE_DRIVER  force a storage driver (default: overlay2, fallback vfs)
#
# Safe to run again while a dockerd from a previous run is still starting or running.
set -euo pipefail

LOG_FILE="${STREAMKIT_DOCKERD_LOG:-/tmp/streamkit-dockerd.log}"
TIMEOUT="${STREAMKIT_DOCKERD_TIMEOUT:-60}"
PID_FILE=/var/run/docker.pid

say() { printf 'ensure-docker: %s\n' "$*" >&2; }

docker_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 10 docker info >/dev/null 2>&1
}

# Fast path.
if docker_answers; then
    exit 0
fi

# The docker CLI may be newer than the engine (e.g. CLI 28 with Debian's dockerd 20.10, API
# 1.41): the CLI and the Python docker SDK negotiate the API version by themselves, so
# DOCKER_API_VERSION must NOT be set (a pinned newer version makes every call fail).
if [[ -n "${DOCKER_API_VERSION:-}" ]] && command -v docker >/dev/null 2>&1 &&
    env -u DOCKER_API_VERSION timeout 10 docker info >/dev/null 2>&1; then
    say "'docker info' works only without DOCKER_API_VERSION=${DOCKER_API_VERSION}: unset it (the client negotiates the API version)."
    exit 1
fi

if [[ "$(id -u)" -ne 0 ]]; then
    if [[ -S /var/run/docker.sock && ! -w /var/run/docker.sock && -z "${DOCKER_HOST:-}" ]]; then
        say "a Docker engine runs, but $(id -un) may not use /var/run/docker.sock (permission denied):"
        say "add the user to the 'docker' group (then log in again) or run as root."
        exit 1
    elif command -v docker >/dev/null 2>&1; then
        say "the docker CLI is installed but no Docker engine answers ('docker info' fails)."
    else
        say "no docker CLI and no Docker engine found."
    fi
    say "start a Docker engine (or run this script as root on Debian so it can start one) and try again."
    exit 1
fi
if [[ ! -r /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1; then
    say "no Docker engine answers and this is not a Debian system: install and start Docker, then try again."
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    say "dockerd is missing: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io >/dev/null
fi
if ! command -v docker >/dev/null 2>&1; then
    say "docker CLI still missing after installing docker.io."
    exit 1
fi

dockerd_pid() {
    # PID of a live dockerd recorded in the pid file, if any.
    local pid
    [[ -s "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null || true)" == dockerd ]] || return 1
    printf '%s\n' "$pid"
}

wait_for_engine() {
    # wait_for_engine PID SECONDS -> 0 when `docker info` answers, 1 if PID died, 2 on timeout
    local pid="$1" deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        if docker_answers; then return 0; fi
        if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.5
    done
    return 2
}

start_dockerd() {
    # start_dockerd DRIVER -> prints the PID of the new dockerd
    local driver="$1"
    {
        printf '\n==== %s: starting dockerd (storage driver %s) ====\n' "$(date -Is)" "$driver"
    } >>"$LOG_FILE"
    # setsid + nohup: the daemon outlives this script and its terminal.
    setsid nohup dockerd \
        --bridge=none \
        --iptables=false \
        --ip-masq=false \
        --ip-forward=false \
        --userland-proxy=false \
        --storage-driver="$driver" \
        --pidfile="$PID_FILE" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    printf '%s\n' "$!"
}

# Serialise concurrent invocations (two test sessions starting at once).
exec 8>/run/streamkit-ensure-docker.lock
flock -w $((TIMEOUT * 3)) 8 || { say "timed out waiting for /run/streamkit-ensure-docker.lock"; exit 1; }
if docker_answers; then
    exit 0
fi

# A dockerd from a previous run may still be starting: just wait for it.
if pid="$(dockerd_pid)"; then
    say "dockerd (pid $pid) is running but does not answer yet; waiting up to ${TIMEOUT}s"
    rc=0; wait_for_engine "$pid" "$TIMEOUT" || rc=$?
    if ((rc == 0)); then exit 0; fi
    say "dockerd (pid $pid) did not answer within ${TIMEOUT}s; see $LOG_FILE"
    exit 1
fi

if [[ -n "${STREAMKIT_DOCKER_STORAGE_DRIVER:-}" ]]; then
    drivers=("$STREAMKIT_DOCKER_STORAGE_DRIVER")
elif grep -qw overlay /proc/filesystems 2>/dev/null || modprobe overlay 2>/dev/null; then
    drivers=(overlay2 vfs)
else
    drivers=(vfs)
fi

for driver in "${drivers[@]}"; do
    say "starting dockerd --bridge=none --iptables=false (storage driver $driver), log: $LOG_FILE"
    pid="$(start_dockerd "$driver")"
    rc=0; wait_for_engine "$pid" "$TIMEOUT" || rc=$?
    if ((rc == 0)); then
        say "Docker engine is up (dockerd pid $pid)"
        exit 0
    fi
    if ((rc == 2)); then
        say "dockerd (pid $pid) did not answer within ${TIMEOUT}s; see $LOG_FILE"
        exit 1
    fi
    if docker_answers; then
        exit 0
    fi
    say "dockerd exited during start-up with storage driver $driver; see $LOG_FILE"
done

say "could not start a Docker engine; last lines of $LOG_FILE:"
tail -n 20 "$LOG_FILE" >&2 || true
exit 1
