#!/usr/bin/env bash
# Load-aware throttle benchmark (not a test): a Tern bulk load from MariaDB to
# PostgreSQL runs at a steady rate while pgbench saturates the target for a
# while (CLIENTS sessions each running `SELECT pg_sleep(0.5)` in a loop, so
# that many backends are active). The spec says `target_active = LIMIT`.
# A watcher records when the target's active backends cross the limit and
# when they fall back under it; the tern CLI's "throttled:" and "resumed:"
# lines are stamped as they appear. Ends with exactly one summary line:
# throttle reacted_s=R resumed_s=S rows_lost=0
#   reacted_s: from the limit being crossed to the load holding back,
#   resumed_s: from the load clearing to the load going on,
#   rows_lost: source rows minus target rows after the load.
#
# Environment: ROWS (default 1000000), RATE (rows/s of the load, default 50000),
# CLIENTS (default 16), LIMIT (default 8), HOLD_S (seconds of saturation,
# default 8), MYSQL_HOST/MYSQL_PORT/MYSQL_USER, PGHOST/PGPORT/PGUSER, KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
. bench/lib.sh
RATE=${RATE:-50000}
CLIENTS=${CLIENTS:-16}
LIMIT=${LIMIT:-8}
HOLD_S=${HOLD_S:-8}
SRC_DB=tern_bench_throttle_src
DST_DB=tern_bench_throttle
stamp() { while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done; }
drop_on_exit "$SRC_DB" "$DST_DB" "WITH (FORCE)"

log "building tern (release)"
cargo build --release -q -p tern-server
TERN=target/release/tern

log "generating $ROWS rows in MariaDB $SRC_DB.events"
my -e "DROP DATABASE IF EXISTS $SRC_DB; CREATE DATABASE $SRC_DB"
my "$SRC_DB" <<SQL
CREATE TABLE events (
  id BIGINT NOT NULL PRIMARY KEY,
  member_id BIGINT NOT NULL,
  body VARCHAR(200) NOT NULL
) ENGINE=InnoDB;
INSERT INTO events SELECT seq, seq % 1000, CONCAT('event ', seq) FROM seq_1_to_${ROWS};
SQL
psql -qd postgres -c "DROP DATABASE IF EXISTS $DST_DB WITH (FORCE)" -c "CREATE DATABASE $DST_DB" >/dev/null

{
  spec_header "$SRC_DB" "$DST_DB" 5000
  printf '\n[throttle]\ntarget_active = %s\n' "$LIMIT"
  spec_table events id 4 events
  printf 'id = "id"\nmember_id = "member_id"\nbody = "body"\n'
} > "$WORK/spec.toml"
echo "SELECT pg_sleep(0.5);" > "$WORK/busy.sql"

# The target's active client backends, this session left out: the number the
# engine's guard reads.
ACTIVE_SQL="SELECT count(*) FROM pg_stat_activity WHERE state = 'active'
  AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
watch_active() {
  while :; do
    printf '%s %s\n' "$(now)" "$(psql -Atd postgres -c "$ACTIVE_SQL" 2>/dev/null || echo 0)"
    sleep 0.1
  done
}

log "tern bulk-load at $RATE rows/s with target_active = $LIMIT"
watch_active > "$WORK/active.log" &
WATCHER=$!
"$TERN" bulk-load --spec "$WORK/spec.toml" --rate "$RATE" 2> >(stamp > "$WORK/tern.err") > "$WORK/tern.out" &
TERN_PID=$!
sleep 4
log "pgbench: $CLIENTS sessions busy on the target for ${HOLD_S}s"
pgbench -n -c "$CLIENTS" -T "$HOLD_S" -f "$WORK/busy.sql" postgres > "$WORK/pgbench.out" 2>&1
wait "$TERN_PID"
sleep 0.5
kill "$WATCHER" 2>/dev/null || true
tail -n 1 "$WORK/tern.out" >&2
grep -E "throttled:|resumed:|slowed:" "$WORK/tern.err" >&2 || true

# Crossed: the first sample over the limit. Cleared: the first sample at or
# under it after the last one over it.
CROSSED=$(awk -v l="$LIMIT" '$2 > l { print $1; exit }' "$WORK/active.log")
CLEARED=$(awk -v l="$LIMIT" '{ t[NR] = $1; v[NR] = $2; if ($2 > l) last = NR }
  END { for (i = last + 1; i <= NR; i++) if (v[i] <= l) { print t[i]; exit } }' "$WORK/active.log")
THROTTLED=$(awk '/throttled:/ { print $1; exit }' "$WORK/tern.err")
RESUMED=$(awk -v t="${THROTTLED:-0}" '/resumed:/ && $1 > t { print $1; exit }' "$WORK/tern.err")
span() { if [ -n "$1" ] && [ -n "$2" ]; then awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; else echo "n/a"; fi; }

LOADED=$(psql -Atd "$DST_DB" -c "SELECT count(*) FROM events")
echo "throttle reacted_s=$(span "$CROSSED" "$THROTTLED") resumed_s=$(span "$CLEARED" "$RESUMED") rows_lost=$((ROWS - LOADED))"
