#!/usr/bin/env bash
# Minimal stand-in for Kafka's bin/kafka-run-class.sh: runs MAIN_CLASS with every jar in
# /opt/kafka/libs on the class path, honouring the same environment variables:
#   KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_GC_LOG_OPTS, KAFKA_JMX_OPTS (+ JMX_PORT),
#   KAFKA_LOG4J_OPTS, KAFKA_OPTS, CLASSPATH.
# Usage: kafka-run-class.sh MAIN_CLASS [ARGS...]
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: $0 MAIN_CLASS [ARGS...]" >&2
    exit 1
fi
KAFKA_HOME="${KAFKA_HOME:-/opt/kafka}"

CP="${KAFKA_HOME}/libs/*"
if [[ -n "${CLASSPATH:-}" ]]; then
    CP="${CLASSPATH}:${CP}"
fi

: "${KAFKA_HEAP_OPTS:=-Xmx256M}"
: "${KAFKA_JVM_PERFORMANCE_OPTS:=-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true}"
: "${KAFKA_LOG4J_OPTS:=-Dlog4j2.configurationFile=/etc/kafka/docker/tools-log4j2.properties}"
: "${KAFKA_GC_LOG_OPTS:=}"
: "${KAFKA_OPTS:=}"
if [[ -n "${JMX_PORT:-}" ]]; then
    : "${KAFKA_JMX_OPTS:=-Dcom.sun.management.jmxremote -Dcom.sun.management.jmxremote.authenticate=false -Dcom.sun.management.jmxremote.ssl=false}"
    KAFKA_JMX_OPTS="${KAFKA_JMX_OPTS} -Dcom.sun.management.jmxremote.port=${JMX_PORT}"
else
    KAFKA_JMX_OPTS="${KAFKA_JMX_OPTS:-}"
fi

# Word splitting of the *_OPTS variables is intended (same as upstream).
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS} ${KAFKA_JVM_PERFORMANCE_OPTS} ${KAFKA_GC_LOG_OPTS} ${KAFKA_JMX_OPTS} \
    ${KAFKA_LOG4J_OPTS} ${KAFKA_OPTS} -cp "${CP}" "$@"
