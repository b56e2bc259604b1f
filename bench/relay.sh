#!/usr/bin/env bash
# Dual-write relay benchmark (not a test): MariaDB → PostgreSQL, the relay at
# 100% while a paced writer changes rows (30% inserts, 50% updates, 20%
# deletes, in 25 ms ticks) at each rate of RATES writes/s for RUN_SECONDS seconds.
# Each run seeds 50,000 rows, installs capture, bulk-loads them, then measures
# changes applied per second (writer start → relay caught up) and the highest
# lag the relay reports (source clock now − time of the oldest change not yet
# applied). Afterwards `lost` is computed by comparing source and target row by
# row (id, member_id, body) through the mysql and psql clients. Ends with
# exactly one summary line, for the highest rate:
# relay writes_per_s=W applied_per_s=A max_lag_s=L lost=N
#
# Environment: RATES (default "1000 5000"), RUN_SECONDS (default 20), PROFILE
# (cargo profile, default dev: it reuses the test build and the relay keeps up
# with it; `release` builds everything again), MYSQL_HOST/MYSQL_PORT/MYSQL_USER
# (127.0.0.1/3306/root, no password), PGHOST/PGPORT/PGUSER
# (127.0.0.1/5432/postgres), KEEP=1 to keep the databases.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"1000 5000"}
SECONDS_PER_RUN=${RUN_SECONDS:-20}
PROFILE=${PROFILE:-dev}
. bench/lib.sh
SRC_DB=tern_bench_relay_src
DST_DB=tern_bench_relay_dst
drop_on_exit "$SRC_DB" "$DST_DB"

log "building the relay bench driver ($PROFILE)"
cargo build -q --profile "$PROFILE" -p tern-engine --example relay_bench
dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
BIN=${CARGO_TARGET_DIR:-target}/$dir/examples/relay_bench

summary=""
for rate in $RATES; do
  my -e "DROP DATABASE IF EXISTS $SRC_DB; CREATE DATABASE $SRC_DB"
  psql -qd postgres -c "DROP DATABASE IF EXISTS $DST_DB" >/dev/null
  psql -qd postgres -c "CREATE DATABASE $DST_DB" >/dev/null
  log "relay under $rate writes/s for ${SECONDS_PER_RUN}s"
  line=$("$BIN" "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$SRC_DB" \
    "postgres://$PGUSER@$PGHOST:$PGPORT/$DST_DB" "$rate" "$SECONDS_PER_RUN" | tail -n 1)
  log "$line"
  # Lost: rows that differ between source and target, either way.
  my -N -B "$SRC_DB" -e "SELECT id, member_id, body FROM items ORDER BY id" | sort >"$WORK/src"
  psql -qAt -F $'\t' -d "$DST_DB" -c "SELECT id, member_id, body FROM items ORDER BY id" | sort >"$WORK/dst"
  lost=$(comm -3 "$WORK/src" "$WORK/dst" | wc -l)
  src_rows=$(wc -l <"$WORK/src")
  log "source rows=$src_rows differing rows=$lost"
  get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  summary="relay writes_per_s=$(get writes_per_s) applied_per_s=$(get applied_per_s) max_lag_s=$(get max_lag_s) lost=$lost"
  log "$summary"
done
echo "$summary"
