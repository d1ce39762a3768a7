#!/usr/bin/env bash
# Usage: kafka-server-start.sh server.properties [--override property=value]*
set -euo pipefail
KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"
if [[ $# -lt 1 ]]; then
    echo "usage: $0 server.properties [--override property=value]*" >&2
    exit 1
fi
# The official image's default heap is 1G; this test image uses less (override with KAFKA_HEAP_OPTS).
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
export KAFKA_LOG4J_OPTS="${KAFKA_LOG4J_OPTS:--Dlog4j2.configurationFile=${KAFKA_HOME}/config/log4j2.properties}"
exec "${KAFKA_HOME}/bin/kafka-run-class.sh" kafka.Kafka "$@"
