#!/usr/bin/env bash
# Verification benchmark (not a test): the 2,000,000-row MariaDB → PostgreSQL
# dataset of bench/bulk_load.sh (same generator, same spec), loaded by
# the engine's bulk load, then a known number of mismatches seeded in the
# target (changed fields, deleted rows, extra rows), then a full diff by the
# engine's `verify::verify`, the call `tern verify` makes, run from the
# release build of the small `verify_bench` example (building the whole web
# server in release takes too long on this machine; `tern verify` is a thin
# wrapper that adds the progress bar). Rows/s are wall-clock for the verify
# process, start to end; peak RSS from /usr/bin/time -v. Checks that the
# mismatches found equal the seeded count. With MD5=1 (default) also times
# the hand-written reference: a parallel chunked MD5 comparison (per chunk
# of 10,000 ids, MD5 of the concatenated rows on each side, 4 at a time)
# that says only which chunks differ, not which rows.
# Ends with exactly one summary line:
# verify rows=N rows_per_s=X peak_rss_mb=M mismatches_found=K
#
# Environment: ROWS (default 2000000), MYSQL_HOST/MYSQL_PORT/MYSQL_USER
# (127.0.0.1/3306/root, no password), PGHOST/PGPORT/PGUSER
# (127.0.0.1/5432/postgres), KEEP=1 to keep the databases, MD5=0 to skip the
# reference, PARALLEL (buckets at once, default 4).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-2000000}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
SRC_DB=tern_bench_verify_src
DST_DB=tern_bench_verify
WORK=$(mktemp -d)
log() { echo "[bench] $*" >&2; }
my() { mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" "$@"; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

cleanup() {
  rm -rf "$WORK"
  if [ "${KEEP:-0}" != 1 ]; then
    my -e "DROP DATABASE IF EXISTS $SRC_DB" || true
    psql -qd postgres -c "DROP DATABASE IF EXISTS $DST_DB" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

log "building the verify_bench example (release)"
cargo build --release -q -p tern-engine --example verify_bench
BENCH=${CARGO_TARGET_DIR:-target}/release/examples/verify_bench

log "generating $ROWS rows in MariaDB $SRC_DB.messages (the bulk-load bench's data)"
my -e "DROP DATABASE IF EXISTS $SRC_DB; CREATE DATABASE $SRC_DB"
my "$SRC_DB" <<SQL
CREATE TABLE messages (
  id BIGINT NOT NULL PRIMARY KEY,
  member_id BIGINT NOT NULL,
  conversation_id BIGINT NOT NULL,
  sender_id BIGINT NOT NULL,
  body VARCHAR(400) NOT NULL,
  is_unread TINYINT(1) NOT NULL,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL,
  KEY member_id (member_id)
) ENGINE=InnoDB;
INSERT INTO messages
SELECT seq,
       1 + FLOOR(POW(RAND(seq), 2) * 100000),
       1 + FLOOR(seq / 7),
       1 + (seq * 7919) % 100000,
       CONCAT('message ', seq, ' ', REPEAT(SUBSTRING(MD5(seq), 1, 10), 14)),
       seq % 3 = 0,
       TIMESTAMP('2010-01-01') + INTERVAL seq SECOND,
       TIMESTAMP('2010-01-01') + INTERVAL seq + 60 SECOND
FROM seq_1_to_${ROWS};
ANALYZE TABLE messages;
SQL

psql -qd postgres -c "DROP DATABASE IF EXISTS $DST_DB" -c "CREATE DATABASE $DST_DB" >/dev/null
psql -qd "$DST_DB" -c "CREATE TABLE messages (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL,
  conversation_id BIGINT NOT NULL, sender_id BIGINT NOT NULL, body TEXT NOT NULL,
  is_unread BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL,
  _tern_version BIGINT NOT NULL, _tern_source_key TEXT);
  CREATE INDEX messages_member_id ON messages (member_id);
  CREATE INDEX messages_tern_source_key ON messages (_tern_source_key);"
cat > "$WORK/spec.toml" <<TOML
chunk_rows = 10000

[source]
url = "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$SRC_DB"

[target]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/$DST_DB"

[[tables]]
name = "messages"
key = ["id"]
buckets = 8

[tables.source]
table = "messages"

[tables.columns]
id = "id"
member_id = "member_id"
conversation_id = "conversation_id"
sender_id = "sender_id"
body = "body"
is_unread = "is_unread"
created_at = "created_at"
updated_at = "updated_at"
TOML
log "bulk load"
"$BENCH" load "$WORK/spec.toml" 4

# Seeded mismatches on disjoint rows: 500 changed bodies, 100 unread flags
# flipped, 100 timestamps moved a second, 150 deleted rows, 150 extra rows
# (for 2,000,000 rows: 1000 in all; counted before seeding for other ROWS).
SEEDED=$(psql -Atd "$DST_DB" -c "SELECT COUNT(*) FILTER (WHERE id % 4000 = 1)
  + COUNT(*) FILTER (WHERE id % 20000 IN (2, 3)) + COUNT(*) FILTER (WHERE id % 40000 IN (5, 6, 7)) + 150
  FROM messages")
psql -qd "$DST_DB" <<SQL
UPDATE messages SET body = body || ' edited' WHERE id % 4000 = 1;
UPDATE messages SET is_unread = NOT is_unread WHERE id % 20000 = 2;
UPDATE messages SET created_at = created_at + interval '1 second' WHERE id % 20000 = 3;
DELETE FROM messages WHERE id % 40000 IN (5, 6, 7);
INSERT INTO messages SELECT $ROWS + g, 1, 1, 1, 'ghost', false, '2010-01-01', '2010-01-01', 1, ($ROWS + g)::text
  FROM generate_series(1, 150) g;
SQL
log "seeded $SEEDED mismatches"

log "verify (full diff)"
t0=$(now)
/usr/bin/time -v -o "$WORK/time.txt" "$BENCH" verify "$WORK/spec.toml" "${PARALLEL:-4}" > "$WORK/verify.out"
t1=$(now)
cat "$WORK/verify.out" >&2
VERIFY_RATE=$(rate "$ROWS" "$t0" "$t1")
PEAK_KB=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
PEAK_MB=$(awk -v k="$PEAK_KB" 'BEGIN { printf "%.0f", k / 1024 }')
LINE=$(grep '^verify done:' "$WORK/verify.out")
field() { echo "$LINE" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
FOUND=$(( $(field missing) + $(field extra) + $(field different) ))
READ=$(field rows)
[ "$READ" = "$ROWS" ] || { log "verify read $READ rows, expected $ROWS"; exit 1; }
[ "$FOUND" = "$SEEDED" ] || { log "verify found $FOUND mismatches, seeded $SEEDED"; exit 1; }

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
  export MYSQL_HOST MYSQL_PORT MYSQL_USER SRC_DB DST_DB
  t0=$(now)
  DIFF_CHUNKS=$(seq 0 "$CHUNKS" | xargs -P 4 -I{} bash -c 'md5_chunk {}' | wc -l)
  t1=$(now)
  log "chunked MD5: $(rate "$ROWS" "$t0" "$t1") rows/s, $DIFF_CHUNKS chunks differ (no row detail)"
fi

echo "verify rows=$ROWS rows_per_s=$VERIFY_RATE peak_rss_mb=$PEAK_MB mismatches_found=$FOUND"
