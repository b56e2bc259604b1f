#!/usr/bin/env bash
# Bulk-load benchmark (not a test): generates ROWS messages in MariaDB
# (bench/lib.sh) and loads them into PostgreSQL four ways, in one run:
#   1. Tern (release build, version guard on: COPY into staging + guarded
#      upsert), into an empty table with the primary key and the member index
#      (its key `id = "id"` is a plain copy of the source key: no
#      `_tern_source_key` column; with BUCKET=member_id the source key is
#      (member_id, id) and the table gets the column and its index): Tern
#      builds every index but the primary key after the table's last bucket
#      (index after load),
#   2. the raw pipe  mysql --quick -B -N -e 'SELECT …' | psql -c '\copy … from stdin'
#      into the same table with its primary key and index,
#   3. the same pipe into a bare table, then the primary key and index built
#      (index after load, what pgloader and pg_dump do): the reference,
#   4. pgloader (Debian package; --dynamic-space-size 4096).
# Rows/s are wall-clock, process start to end (index builds included), each
# after a CHECKPOINT (no contender pays for the WAL of the one before). Peak
# RSS is Tern's, from /usr/bin/time -v. Ends with exactly one summary line:
# bulk_load rows=N tern_rows_per_s=X pipe_rows_per_s=Y pipe_index_after_rows_per_s=Z pgloader_rows_per_s=W tern/pipe=R tern/pipe_index_after=Q tern/pgloader=S peak_rss_mb=M
#
# Environment: see bench/lib.sh; SKIP_PGLOADER=1 to leave pgloader out,
# KEEP=1 to keep the databases, BUCKET=member_id to bucket and read by
# (member_id, id) instead of the primary key id (the hot-shard layout; reads
# the source through its secondary index), PARALLEL (buckets at once, default 2),
# SOURCE_KEY_COLUMN=1 to give Tern's target the `_tern_source_key` column and
# index anyway (a target created before plain-copy keys: Tern keeps using it).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SRC_DB=tern_bench_src
drop_on_exit "$SRC_DB" "tern_bench_tern tern_bench_pipe tern_bench_pipe_ia tern_bench_pgloader"

if ! command -v pgloader >/dev/null && [ "${SKIP_PGLOADER:-0}" != 1 ]; then
  log "installing pgloader"
  apt-get install -y pgloader >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y pgloader >/dev/null; }
fi

log "building tern (release)"
cargo build --release -q -p tern-server
TERN=target/release/tern

gen_messages "$SRC_DB"

# --- Tern ---------------------------------------------------------------------
fresh_pg tern_bench_tern
psql -qd tern_bench_tern -c "$TARGET_DDL" -c "ALTER TABLE messages ADD COLUMN _tern_version BIGINT NOT NULL"
SOURCE_ORDER=''
WANT_INDEXES=2
[ "${BUCKET:-id}" = member_id ] && SOURCE_ORDER='key = ["member_id", "id"]'
if [ "${BUCKET:-id}" = member_id ] || [ "${SOURCE_KEY_COLUMN:-0}" = 1 ]; then
  WANT_INDEXES=3
  psql -qd tern_bench_tern -c "ALTER TABLE messages ADD COLUMN _tern_source_key TEXT" \
    -c "CREATE INDEX messages_tern_source_key ON messages (_tern_source_key)"
fi
{ spec_header "$SRC_DB" tern_bench_tern; spec_messages messages id '"id"' "$SOURCE_ORDER"; } > "$WORK/spec.toml"
log "tern bulk-load"
settle_pg
t0=$(now)
/usr/bin/time -v -o "$WORK/time.txt" "$TERN" bulk-load --spec "$WORK/spec.toml" \
  --parallel "${PARALLEL:-2}" > "$WORK/tern.out"
t1=$(now)
tail -n 1 "$WORK/tern.out" >&2
TERN_RATE=$(rate "$ROWS" "$t0" "$t1")
PEAK_MB=$(peak_mb "$WORK/time.txt")
expect_rows "tern's target" "$(pg_count tern_bench_tern messages)"
INDEXES=$(psql -Atd tern_bench_tern -c "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'messages'")
[ "$INDEXES" = "$WANT_INDEXES" ] || { log "tern's target has $INDEXES indexes after the load, expected $WANT_INDEXES"; exit 1; }

# --- raw pipe, indexes in place -------------------------------------------------
fresh_pg tern_bench_pipe
psql -qd tern_bench_pipe -c "$TARGET_DDL"
log "raw pipe mysql | psql \\copy (primary key and index in place)"
settle_pg
t0=$(now)
pipe_copy "$SRC_DB" tern_bench_pipe
t1=$(now)
PIPE_RATE=$(rate "$ROWS" "$t0" "$t1")
expect_rows "the pipe's target" "$(pg_count tern_bench_pipe messages)"

# --- raw pipe, index after load ------------------------------------------------
fresh_pg tern_bench_pipe_ia
psql -qd tern_bench_pipe_ia -c "$MESSAGES_TABLE"
log "raw pipe into a bare table, then primary key and index"
settle_pg
t0=$(now)
pipe_copy "$SRC_DB" tern_bench_pipe_ia
psql -qd tern_bench_pipe_ia -c "$MESSAGES_INDEXES"
t1=$(now)
PIPE_IA_RATE=$(rate "$ROWS" "$t0" "$t1")
expect_rows "the index-after pipe's target" "$(pg_count tern_bench_pipe_ia messages)"

# --- pgloader -----------------------------------------------------------------
PGLOADER_RATE=0
if [ "${SKIP_PGLOADER:-0}" != 1 ]; then
  fresh_pg tern_bench_pgloader
  log "pgloader"
  settle_pg
  t0=$(now)
  if pgloader --dynamic-space-size 4096 --quiet \
      "$MYSQL_URL_BASE/$SRC_DB" "postgresql://$PGUSER@$PGHOST:$PGPORT/tern_bench_pgloader" \
      > "$WORK/pgloader.out" 2>&1; then
    t1=$(now)
    PGL_COUNT=$(pg_count tern_bench_pgloader "$SRC_DB.messages" 2>/dev/null \
      || pg_count tern_bench_pgloader messages)
    if [ "$PGL_COUNT" = "$ROWS" ]; then
      PGLOADER_RATE=$(rate "$ROWS" "$t0" "$t1")
    else
      log "pgloader loaded $PGL_COUNT rows, expected $ROWS"; tail -n 20 "$WORK/pgloader.out" >&2
    fi
  else
    log "pgloader failed:"; tail -n 20 "$WORK/pgloader.out" >&2
  fi
fi

echo "bulk_load rows=$ROWS tern_rows_per_s=$TERN_RATE pipe_rows_per_s=$PIPE_RATE pipe_index_after_rows_per_s=$PIPE_IA_RATE pgloader_rows_per_s=$PGLOADER_RATE tern/pipe=$(ratio "$TERN_RATE" "$PIPE_RATE") tern/pipe_index_after=$(ratio "$TERN_RATE" "$PIPE_IA_RATE") tern/pgloader=$(ratio "$TERN_RATE" "$PGLOADER_RATE") peak_rss_mb=$PEAK_MB"
