#!/bin/sh
# Container entry point of every process type (web, stream, infer, guard, jobs).
# prometheus_client's multiprocess folder must be empty when a server starts: a restarted
# container would otherwise add its predecessor's dead workers to /metrics.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi
exec "$@"
