#!/usr/bin/env bash
# Routing benchmark (not a test): routing decisions
#   1. over HTTP: `tern serve` (release) answers GET /api/v1/route with a
#      client's API token on loopback, driven by a small keep-alive load
#      generator (server/examples/route_bench.rs; oha/wrk are not installed)
#      with CONNECTIONS connections for DURATION seconds;
#   2. in-process: tern-client deciding keys locally, for DURATION seconds.
# The store is a fresh SQLite file; the client's ramp is 25%.
# Ends with exactly one summary line:
# route http_req_per_s=X http_p99_ms=Y inproc_decisions_per_s=Z
#
# Environment: CONNECTIONS (default 32), DURATION (seconds, default 10), PORT (default 38471),
# PROFILE (release, or debug for a quick look: debug numbers are not the measure).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-32}
SECONDS_RUN=${DURATION:-10}
PORT=${PORT:-38471}
WORK=$(mktemp -d)
log() { echo "[bench] $*" >&2; }
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PROFILE=${PROFILE:-release}
log "building tern and the load generator ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p tern-server --bin tern --example route_bench
else
  cargo build -q -p tern-server --bin tern --example route_bench
fi
TERN=target/$PROFILE/tern
BENCH=target/$PROFILE/examples/route_bench

TOKEN=$("$BENCH" setup "$WORK")
TERN_DATA_DIR="$WORK" TERN_LOG=warn "$TERN" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q "Tern listening" "$WORK/serve.log" 2>/dev/null && break
  sleep 0.1
done
grep -q "Tern listening" "$WORK/serve.log" || { cat "$WORK/serve.log" >&2; exit 1; }

log "warming up"
"$BENCH" http "http://127.0.0.1:$PORT" "$TOKEN" 4 1 >/dev/null
log "HTTP: $CONNECTIONS connections for ${SECONDS_RUN}s"
HTTP=$("$BENCH" http "http://127.0.0.1:$PORT" "$TOKEN" "$CONNECTIONS" "$SECONDS_RUN")
log "HTTP: $HTTP"
case "$HTTP" in *"errors=0"*) ;; *) log "some requests failed"; exit 1 ;; esac
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=

log "in-process: ${SECONDS_RUN}s"
INPROC=$("$BENCH" inproc "$SECONDS_RUN")

req=$(sed -E 's/.*req_per_s=([0-9.]+).*/\1/' <<<"$HTTP")
p99=$(sed -E 's/.*p99_ms=([0-9.]+).*/\1/' <<<"$HTTP")
dec=$(sed -E 's/.*decisions_per_s=([0-9.]+).*/\1/' <<<"$INPROC")
echo "route http_req_per_s=$req http_p99_ms=$p99 inproc_decisions_per_s=$dec"
