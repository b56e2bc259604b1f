#!/usr/bin/env bash
# Switch benchmark (not a test): the source of truth of BUCKETS buckets moves
# from MariaDB to PostgreSQL, one bucket at a time (then one is rolled back
# and switched again), while an application writes through tern-client at
# RATE writes/s (30% inserts, 50% updates, 20% deletes, over TASKS tasks),
# each write under a write permit and sent to the store the permit names.
#
# It runs the `switch_journey::bench` case of tern-server's integration tests
# against a real `tern serve` (its workers load, relay, catch up, verify and
# reverse-relay; its HTTP API answers the write routing and runs the
# switches). SWITCH_ROWS rows are seeded and made ready first; the writer
# starts once every bucket is verified and the reverse relay runs. The hold
# of each switch is measured by Tern (hold to release) and the longest is
# reported. Afterwards both stores are compared with the writer's own log of
# what each row must hold: `lost` counts rows missing, stale or back after a
# delete, `doubled` rows counting more updates than were made or rows nobody
# wrote, summed over both stores. Ends with exactly one summary line:
# switch buckets=N writes_per_s=W max_hold_ms=H lost=L doubled=D
#
# Environment: BUCKETS (default 8), RATE (default 1500), TASKS (default 24),
# SWITCH_ROWS (default 20000), PROFILE (cargo profile, default dev: it reuses
# the test build; `release` builds everything again), PGHOST/PGPORT/PGUSER and
# MYSQL_HOST/MYSQL_PORT/MYSQL_USER as in bench/lib.sh (tern-testkit makes and
# drops its own databases there).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

BUCKETS=${BUCKETS:-8}
RATE=${RATE:-1500}
TASKS=${TASKS:-24}
SWITCH_ROWS=${SWITCH_ROWS:-20000}
PROFILE=${PROFILE:-dev}

log "building the switch bench ($PROFILE)"
cargo test -q --profile "$PROFILE" -p tern-server --test it --no-run 2>&1 | grep -v '^ *Executable' >&2 || true
log "switching $BUCKETS buckets under $RATE writes/s ($TASKS writer tasks, $SWITCH_ROWS rows)"
t0=$(now)
SWITCH_BUCKETS=$BUCKETS SWITCH_RATE=$RATE SWITCH_TASKS=$TASKS SWITCH_ROWS=$SWITCH_ROWS TERN_LOG=warn \
  cargo test -q --profile "$PROFILE" -p tern-server --test it switch_journey::bench \
  -- --ignored --exact --nocapture >"$WORK/out" 2>"$WORK/err" || {
  cat "$WORK/err" "$WORK/out" >&2
  log "the bench failed"
  exit 1
}
t1=$(now)
grep '^\[bench\]' "$WORK/err" >&2 || true
line=$(grep '^switch buckets=' "$WORK/out" | tail -n 1)
[ -n "$line" ] || { cat "$WORK/out" >&2; log "no summary line"; exit 1; }
log "whole run $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s"
echo "$line"
