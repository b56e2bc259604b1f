#!/usr/bin/env bash
# First-visit benchmark (not a test): a program manager opens the overview of
# `tern demo` with an empty cache in Chromium. Measures the bytes transferred
# for the front end (wasm, js, css, as sent: the server gzips them) and the
# time from navigation to a hydrated page that answers clicks; medians of RUNS
# visits. Ends with exactly one summary line:
# first_visit build=B wasm_kb=W js_kb=J css_kb=C total_kb=T tti_ms=M
#
# Usage: bench/first_visit.sh [debug|release]   (default release)
# Environment: RUNS (default 5), PORT (3191). Needs end2end/node_modules
# (`npm ci` in end2end/) and /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-release}
RUNS=${RUNS:-5}
PORT=${PORT:-3191}
WORK=$(mktemp -d)
log() { echo "[bench] $*" >&2; }
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

case "$BUILD" in
  release)
    log "building the front end and tern (release)"
    cargo xtask site --release >&2
    cargo build --release -q -p tern-server
    TERN=target/release/tern ;;
  debug)
    log "building the front end and tern (debug)"
    cargo xtask site >&2
    cargo build -q -p tern-server
    TERN=target/debug/tern ;;
  *) echo "usage: $0 [debug|release]" >&2; exit 2 ;;
esac

log "starting tern demo on 127.0.0.1:$PORT"
TERN_DATA_DIR="$WORK" TERN_LOG=warn TERN_SITE_ROOT="$PWD/target/site" TERN_DEMO_PASSWORD=bench-password \
  $TERN demo --listen "127.0.0.1:$PORT" >/dev/null 2>"$WORK/stderr" &
SERVER=$!
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done

log "$RUNS first visits of the overview"
RESULT=$(cd end2end && BASE="http://127.0.0.1:$PORT" PASSWORD=bench-password RUNS="$RUNS" node first_visit.mjs)
log "$RESULT"
python3 - "$BUILD" "$RESULT" <<'PY'
import json, sys
build, r = sys.argv[1], json.loads(sys.argv[2])
kb = lambda b: b / 1024
total = r["wasm_bytes"] + r["js_bytes"] + r["css_bytes"]
if r["failed_requests"]:
    print(f"[bench] failed requests: {r['failed_requests']}", file=sys.stderr)
print(f"first_visit build={build} wasm_kb={kb(r['wasm_bytes']):.0f} js_kb={kb(r['js_bytes']):.0f} "
      f"css_kb={kb(r['css_bytes']):.0f} total_kb={kb(total):.0f} tti_ms={r['tti_ms']}")
PY
