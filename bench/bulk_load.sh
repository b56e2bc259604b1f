#!/usr/bin/env bash
# Bulk-load benchmark (not a test): generates ROWS messages in MariaDB and
# loads them into PostgreSQL three ways, each into a table with the same
# primary key and index:
#   1. Tern (release build, version guard on: COPY into staging + guarded upsert),
#   2. the raw pipe  mysql --quick -B -N -e 'SELECT …' | psql -c '\copy … from stdin',
#   3. pgloader (Debian package; --dynamic-space-size 4096).
# Rows/s are wall-clock, process start to end. Peak RSS is Tern's, from
# /usr/bin/time -v. Ends with exactly one summary line:
# bulk_load rows=N tern_rows_per_s=X pipe_rows_per_s=Y pgloader_rows_per_s=Z tern/pipe=R tern/pgloader=S peak_rss_mb=M
#
# Environment: ROWS (default 2000000), MYSQL_HOST/MYSQL_PORT/MYSQL_USER
# (127.0.0.1/3306/root, no password), PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres),
# SKIP_PGLOADER=1 to leave pgloader out, KEEP=1 to keep the databases,
# BUCKET=member_id to bucket and read by (member_id, id) instead of the primary
# key id (the hot-shard layout; reads the source through its secondary index).
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-2000000}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
SRC_DB=tern_bench_src
WORK=$(mktemp -d)
log() { echo "[bench] $*" >&2; }
my() { mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" "$@"; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

cleanup() {
  rm -rf "$WORK"
  if [ "${KEEP:-0}" != 1 ]; then
    my -e "DROP DATABASE IF EXISTS $SRC_DB" || true
    for d in tern_bench_tern tern_bench_pipe tern_bench_pgloader; do
      psql -qd postgres -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT

if ! command -v pgloader >/dev/null && [ "${SKIP_PGLOADER:-0}" != 1 ]; then
  log "installing pgloader"
  apt-get install -y pgloader >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y pgloader >/dev/null; }
fi

log "building tern (release)"
cargo build --release -q -p tern-server
TERN=target/release/tern

log "generating $ROWS rows in MariaDB $SRC_DB.messages"
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
-- Old members (low ids) own more messages: the hot-shard shape.
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

TARGET_DDL="CREATE TABLE messages (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL,
  conversation_id BIGINT NOT NULL, sender_id BIGINT NOT NULL, body TEXT NOT NULL,
  is_unread BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);
  CREATE INDEX messages_member_id ON messages (member_id);"
COLS="id, member_id, conversation_id, sender_id, body, is_unread, created_at, updated_at"

fresh_pg() {
  psql -qd postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null 2>&1
}

# --- Tern ---------------------------------------------------------------------
fresh_pg tern_bench_tern
psql -qd tern_bench_tern -c "$TARGET_DDL" -c "ALTER TABLE messages ADD COLUMN _tern_version BIGINT NOT NULL" \
  -c "ALTER TABLE messages ADD COLUMN _tern_source_key TEXT" \
  -c "CREATE INDEX messages_tern_source_key ON messages (_tern_source_key)"
if [ "${BUCKET:-id}" = member_id ]; then
  SOURCE_ORDER='key = ["member_id", "id"]'
else
  SOURCE_ORDER=''
fi
cat > "$WORK/spec.toml" <<TOML
chunk_rows = 10000

[source]
url = "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$SRC_DB"

[target]
url = "postgres://$PGUSER@$PGHOST:$PGPORT/tern_bench_tern"

[[tables]]
name = "messages"
key = ["id"]
buckets = 8

[tables.source]
table = "messages"
$SOURCE_ORDER

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
log "tern bulk-load"
t0=$(now)
/usr/bin/time -v -o "$WORK/time.txt" "$TERN" bulk-load --spec "$WORK/spec.toml" > "$WORK/tern.out"
t1=$(now)
tail -n 1 "$WORK/tern.out" >&2
TERN_RATE=$(rate "$ROWS" "$t0" "$t1")
PEAK_KB=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$WORK/time.txt")
PEAK_MB=$(awk -v k="$PEAK_KB" 'BEGIN { printf "%.0f", k / 1024 }')
TERN_COUNT=$(psql -Atd tern_bench_tern -c "SELECT COUNT(*) FROM messages")
[ "$TERN_COUNT" = "$ROWS" ] || { log "tern loaded $TERN_COUNT rows, expected $ROWS"; exit 1; }

# --- raw pipe -----------------------------------------------------------------
fresh_pg tern_bench_pipe
psql -qd tern_bench_pipe -c "$TARGET_DDL"
log "raw pipe mysql | psql \\copy"
t0=$(now)
my --quick -B -N -e "SELECT $COLS FROM messages" "$SRC_DB" \
  | psql -qd tern_bench_pipe -c "\\copy messages ($COLS) from stdin"
t1=$(now)
PIPE_RATE=$(rate "$ROWS" "$t0" "$t1")
PIPE_COUNT=$(psql -Atd tern_bench_pipe -c "SELECT COUNT(*) FROM messages")
[ "$PIPE_COUNT" = "$ROWS" ] || { log "pipe loaded $PIPE_COUNT rows, expected $ROWS"; exit 1; }

# --- pgloader -----------------------------------------------------------------
PGLOADER_RATE=0
if [ "${SKIP_PGLOADER:-0}" != 1 ]; then
  fresh_pg tern_bench_pgloader
  log "pgloader"
  t0=$(now)
  if pgloader --dynamic-space-size 4096 --quiet \
      "mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$SRC_DB" \
      "postgresql://$PGUSER@$PGHOST:$PGPORT/tern_bench_pgloader" > "$WORK/pgloader.out" 2>&1; then
    t1=$(now)
    PGL_COUNT=$(psql -Atd tern_bench_pgloader -c "SELECT COUNT(*) FROM $SRC_DB.messages" 2>/dev/null \
      || psql -Atd tern_bench_pgloader -c "SELECT COUNT(*) FROM messages")
    if [ "$PGL_COUNT" = "$ROWS" ]; then
      PGLOADER_RATE=$(rate "$ROWS" "$t0" "$t1")
    else
      log "pgloader loaded $PGL_COUNT rows, expected $ROWS"; tail -n 20 "$WORK/pgloader.out" >&2
    fi
  else
    log "pgloader failed:"; tail -n 20 "$WORK/pgloader.out" >&2
  fi
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo "bulk_load rows=$ROWS tern_rows_per_s=$TERN_RATE pipe_rows_per_s=$PIPE_RATE pgloader_rows_per_s=$PGLOADER_RATE tern/pipe=$(ratio "$TERN_RATE" "$PIPE_RATE") tern/pgloader=$(ratio "$TERN_RATE" "$PGLOADER_RATE") peak_rss_mb=$PEAK_MB"
