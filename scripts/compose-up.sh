#!/usr/bin/env bash
# Start the docker-compose.yml stack with images this machine has (or can pull).
#
#   scripts/compose-up.sh          (what `make up` runs, after `make images`)
#
# For each service the image named by its variable (KAFKA_IMAGE, REGISTRY_IMAGE,
# POSTGRES_IMAGE, PROMETHEUS_IMAGE, GRAFANA_IMAGE) is used as is; otherwise the first of its candidates that
# exists locally, else the first that can be pulled. Kafka and the registry fall back to the
# test kit's images (streamkit/kafka:4.1.1, streamkit/apicurio-registry:3.3.3, built by
# `make images` where no image registry is reachable). PostgreSQL, Prometheus and Grafana are left out,
# with a note, when neither present nor pullable.
# COMPOSE overrides the compose command (default: docker-compose, else `docker compose`).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'compose-up: %s\n' "$*" >&2; }

if [[ -z "${COMPOSE:-}" ]]; then
    if command -v docker-compose >/dev/null 2>&1; then COMPOSE="docker-compose"; else COMPOSE="docker compose"; fi
fi

have() { docker image inspect "$1" >/dev/null 2>&1; }

# pick VAR CANDIDATE...: print the image to use for VAR, or fail.
pick() {
    local var=$1 image
    shift
    if [[ -n "${!var:-}" ]]; then
        printf '%s\n' "${!var}"
        return 0
    fi
    for image in "$@"; do
        if have "$image"; then printf '%s\n' "$image"; return 0; fi
    done
    for image in "$@"; do
        if timeout 300 docker pull -q "$image" >/dev/null 2>&1; then printf '%s\n' "$image"; return 0; fi
    done
    return 1
}

services=(kafka schema-registry)
KAFKA_IMAGE=$(pick KAFKA_IMAGE apache/kafka:4.1.1 streamkit/kafka:4.1.1) ||
    { say "no Kafka image: run 'make images' (builds streamkit/kafka:4.1.1)"; exit 1; }
REGISTRY_IMAGE=$(pick REGISTRY_IMAGE confluentinc/cp-schema-registry:8.0.0 \
    apicurio/apicurio-registry:3.3.3 streamkit/apicurio-registry:3.3.3) ||
    { say "no schema registry image: run 'make images'"; exit 1; }
if POSTGRES_IMAGE=$(pick POSTGRES_IMAGE postgres:17); then
    services+=(postgres)
else
    say "leaving out postgres: image postgres:17 is neither here nor pullable (set POSTGRES_IMAGE)"
fi
if PROMETHEUS_IMAGE=$(pick PROMETHEUS_IMAGE prom/prometheus:v3.5.0); then
    services+=(prometheus)
else
    say "leaving out prometheus: image prom/prometheus:v3.5.0 is neither here nor pullable (set PROMETHEUS_IMAGE)"
fi
if GRAFANA_IMAGE=$(pick GRAFANA_IMAGE grafana/grafana:11.6.0); then
    services+=(grafana)
else
    say "leaving out grafana: image grafana/grafana:11.6.0 is neither here nor pullable (set GRAFANA_IMAGE)"
fi
if JAEGER_IMAGE=$(pick JAEGER_IMAGE jaegertracing/jaeger:2.11.0); then
    services+=(jaeger)
else
    say "leaving out jaeger: image jaegertracing/jaeger:2.11.0 is neither here nor pullable (set JAEGER_IMAGE)"
fi
export KAFKA_IMAGE REGISTRY_IMAGE POSTGRES_IMAGE PROMETHEUS_IMAGE GRAFANA_IMAGE JAEGER_IMAGE

say "images: kafka=$KAFKA_IMAGE registry=$REGISTRY_IMAGE"
$COMPOSE up -d "${services[@]}"

kafka="127.0.0.1:${KAFKA_PORT:-9092}"
registry="http://127.0.0.1:${REGISTRY_PORT:-8081}"
[[ "$REGISTRY_IMAGE" == *cp-schema-registry* ]] || registry="$registry/apis/ccompat/v7"
say "waiting for the schema registry at $registry (it needs Kafka first) ..."
for _ in $(seq 1 120); do
    if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/subjects', timeout=2)" "$registry" 2>/dev/null; then
        break
    fi
    sleep 1
done

cat <<MSG
streamkit stack is up (${services[*]}):
  Kafka            $kafka
  schema registry  $registry
  PostgreSQL       postgresql://streamkit:${POSTGRES_PASSWORD:-streamkit}@127.0.0.1:${POSTGRES_PORT:-5432}/streamkit   (if started)
  Prometheus       http://127.0.0.1:${PROMETHEUS_PORT:-9090}   (scrapes 127.0.0.1:9400-9402)
  Grafana          http://127.0.0.1:${GRAFANA_PORT:-3000}   (dashboard "streamkit")
  Jaeger           http://127.0.0.1:${JAEGER_UI_PORT:-16686}  (traces; OTLP/HTTP on 127.0.0.1:${JAEGER_OTLP_HTTP_PORT:-4318})
Run the demo against it, metrics on the port Prometheus scrapes, traces to Jaeger
(needs the otel extra: .venv/bin/pip install -e '.[otel]'):
  STREAMKIT_KAFKA__BOOTSTRAP_SERVERS=$kafka STREAMKIT_SCHEMA_REGISTRY__URL=$registry \\
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:${JAEGER_OTLP_HTTP_PORT:-4318} \\
    .venv/bin/streamkit demo --metrics-port 9400 --serve-after 30
Stop it with: make down
MSG
