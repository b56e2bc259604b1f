#!/usr/bin/env bash
# Verification benchmark (not a test): the 2,000,000-row MariaDB → PostgreSQL
# dataset of bench/bulk_load.sh (bench/lib.sh: same generator, same columns),
# loaded by the engine's bulk load into two target tables: `messages`, keyed
# by the source key, and `messages_u`, keyed by a UUIDv5 of it (a
# transformed key). A known number of mismatches is seeded in each (changed
# fields, deleted rows, extra rows; in `messages_u` the extra rows are
# orphans, rows whose source record does not exist). Then, in the same run:
#   1. a full diff of `messages` with row detail,
#   2. a full diff of `messages_u` (the transformed-key case),
#   3. the hand-written reference: a parallel chunked MD5 comparison (per
#      chunk of 10,000 ids, MD5 of the concatenated rows on each side, 4 at
#      a time) that says only which chunks differ, not which rows.
# 1 and 2 are the engine's `verify::verify`, the call `tern verify` makes,
# run from the release build of the small `verify_bench` example (building
# the whole web server in release takes too long on this machine; `tern
# verify` is a thin wrapper that adds the progress bar). Rows/s are
# wall-clock for the verify process, start to end; peak RSS (the higher of
# 1 and 2) from /usr/bin/time -v. Each diff must find exactly the seeded
# mismatches. Ends with exactly one summary line:
# verify rows=N rows_per_s=X transformed_rows_per_s=U chunk_md5_rows_per_s=Y tern/chunk_md5=R transformed/chunk_md5=T peak_rss_mb=M mismatches_found=K transformed_mismatches_found=J
#
# Environment: see bench/lib.sh; KEEP=1 to keep the databases, MD5=0 to skip
# the reference, PARALLEL (buckets at once, default 4), ROW_BY_ROW=1 to turn
# the engine's checksum paths off (for before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh

SRC_DB=tern_bench_verify_src
DST_DB=tern_bench_verify
drop_on_exit "$SRC_DB" "$DST_DB"

log "building the verify_bench example (release)"
cargo build --release -q -p tern-engine --example verify_bench
BENCH=${CARGO_TARGET_DIR:-target}/release/examples/verify_bench

gen_messages "$SRC_DB"
fresh_pg "$DST_DB"
psql -qd "$DST_DB" -c "$TARGET_DDL" -c "ALTER TABLE messages ADD COLUMN _tern_version BIGINT NOT NULL,
  ADD COLUMN _tern_source_key TEXT; CREATE INDEX messages_tern_source_key ON messages (_tern_source_key);"
{ spec_header "$SRC_DB" "$DST_DB"; spec_messages messages id '"id"'; } > "$WORK/spec.toml"
{ spec_header "$SRC_DB" "$DST_DB"
  spec_messages messages_u message_id '{ uuid5 = ["id"], namespace = "messages" }' 'key = ["id"]'; } > "$WORK/spec_u.toml"
log "bulk load (both tables; Tern creates messages_u)"
"$BENCH" load "$WORK/spec.toml" 4
"$BENCH" load "$WORK/spec_u.toml" 4

# seed TABLE KEY SOURCE_ID GHOST_KEY: seeded mismatches on disjoint rows of
# TABLE (key column KEY), whose source id is SOURCE_ID: 500 changed bodies, 100 unread flags
# flipped, 100 timestamps moved a second, 150 deleted rows, 150 extra rows
# keyed GHOST_KEY (g = 1..150) (for 2,000,000 rows: 1000 in all; counted
# before seeding for other ROWS). Prints the count.
seed() {
  local t=$1 k=$2 s=$3 ghost=$4
  psql -Atd "$DST_DB" -c "SELECT COUNT(*) FILTER (WHERE $s % 4000 = 1)
    + COUNT(*) FILTER (WHERE $s % 20000 IN (2, 3)) + COUNT(*) FILTER (WHERE $s % 40000 IN (5, 6, 7)) + 150
    FROM $t"
  psql -qd "$DST_DB" >/dev/null <<SQL
UPDATE $t SET body = body || ' edited' WHERE $s % 4000 = 1;
UPDATE $t SET is_unread = NOT is_unread WHERE $s % 20000 = 2;
UPDATE $t SET created_at = created_at + interval '1 second' WHERE $s % 20000 = 3;
DELETE FROM $t WHERE $s % 40000 IN (5, 6, 7);
INSERT INTO $t ($(echo "$COLS" | sed "s/^id/$k/"), _tern_version, _tern_source_key)
  SELECT $ghost, 1, 1, 1, 'ghost', false, '2010-01-01', '2010-01-01', 1, ($ROWS + g)::text
  FROM generate_series(1, 150) g;
SQL
}
SEEDED=$(seed messages id id "$ROWS + g")
SEEDED_U=$(seed messages_u message_id "_tern_source_key::bigint" "gen_random_uuid()")
log "seeded $SEEDED mismatches in messages, $SEEDED_U in messages_u"

# run_verify NAME SPEC SEEDED: times a full diff; sets RATE, FOUND, PEAK.
run_verify() {
  log "verify $1 (full diff)"
  local t0 t1 line
  t0=$(now)
  /usr/bin/time -v -o "$WORK/time.txt" "$BENCH" verify "$2" "${PARALLEL:-4}" \
    ${ROW_BY_ROW:+row-by-row} > "$WORK/verify.out"
  t1=$(now)
  cat "$WORK/verify.out" >&2
  RATE=$(rate "$ROWS" "$t0" "$t1")
  PEAK=$(peak_mb "$WORK/time.txt")
  line=$(grep '^verify done:' "$WORK/verify.out")
  field() { echo "$line" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
  FOUND=$(( $(field missing) + $(field extra) + $(field different) ))
  expect_rows "verify of $1 read" "$(field rows)"
  [ "$FOUND" = "$3" ] || { log "verify of $1 found $FOUND mismatches, seeded $3"; exit 1; }
  log "verify $1: $RATE rows/s, peak RSS $PEAK MB"
}
run_verify messages "$WORK/spec.toml" "$SEEDED"
VERIFY_RATE=$RATE VERIFY_FOUND=$FOUND PEAK_MB=$PEAK
run_verify messages_u "$WORK/spec_u.toml" "$SEEDED_U"
U_RATE=$RATE U_FOUND=$FOUND
[ "$PEAK" -gt "$PEAK_MB" ] && PEAK_MB=$PEAK

MD5_RATE=0
if [ "${MD5:-1}" = 1 ]; then
  # Reference: MD5 per chunk of 10,000 ids on both sides, 4 chunks at a time.
  log "reference: parallel chunked MD5"
  CHUNKS=$(( (ROWS + 9999) / 10000 ))
  md5_chunk() {
    local c=$1 lo=$(( $1 * 10000 )) hi=$(( $1 * 10000 + 10000 ))
    local a b
    a=$(mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" -N -B "$SRC_DB" -e "SET SESSION group_concat_max_len = 1073741824;
      SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, member_id, conversation_id, sender_id, body, is_unread,
        DATE_FORMAT(created_at, '%Y-%m-%d %H:%i:%s'), DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s')) ORDER BY id SEPARATOR '\n'))
      FROM messages WHERE id >= $lo AND id < $hi")
    b=$(psql -Atd "$DST_DB" -c "SELECT md5(string_agg(concat_ws('|', id, member_id, conversation_id, sender_id, body,
        is_unread::int, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS'), to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS')), E'\n' ORDER BY id))
      FROM messages WHERE id >= $lo AND id < $hi")
    [ "$a" = "$b" ] || echo "$c"
  }
  export -f md5_chunk
  export SRC_DB DST_DB
  t0=$(now)
  DIFF_CHUNKS=$(seq 0 "$CHUNKS" | xargs -P 4 -I{} bash -c 'md5_chunk {}' | wc -l)
  t1=$(now)
  MD5_RATE=$(rate "$ROWS" "$t0" "$t1")
  log "chunked MD5: $MD5_RATE rows/s, $DIFF_CHUNKS chunks differ (no row detail)"
fi

echo "verify rows=$ROWS rows_per_s=$VERIFY_RATE transformed_rows_per_s=$U_RATE chunk_md5_rows_per_s=$MD5_RATE tern/chunk_md5=$(ratio "$VERIFY_RATE" "$MD5_RATE") transformed/chunk_md5=$(ratio "$U_RATE" "$MD5_RATE") peak_rss_mb=$PEAK_MB mismatches_found=$VERIFY_FOUND transformed_mismatches_found=$U_FOUND"
