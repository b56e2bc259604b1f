# Shared by the benches (sourced, not run): the connection settings, the
# scratch directory and the clean-up on exit, timing helpers, the MariaDB
# `messages` generator (the hot-shard shape, ~230 bytes a row) and its spec
# columns.
#
# Environment: ROWS (default 2000000; a bench that sets it before sourcing
# keeps its own), MYSQL_HOST/MYSQL_PORT/MYSQL_USER (127.0.0.1/3306/root, no
# password), PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres), KEEP=1 to keep
# the databases.

ROWS=${ROWS:-2000000}
MYSQL_HOST=${MYSQL_HOST:-127.0.0.1}
MYSQL_PORT=${MYSQL_PORT:-3306}
MYSQL_USER=${MYSQL_USER:-root}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
export MYSQL_HOST MYSQL_PORT MYSQL_USER
MYSQL_URL_BASE="mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT"
PG_URL_BASE="postgres://$PGUSER@$PGHOST:$PGPORT"
COLS="id, member_id, conversation_id, sender_id, body, is_unread, created_at, updated_at"

log() { echo "[bench] $*" >&2; }
my() { mysql -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" "$@"; }
now() { date +%s.%N; }
# rate ROWS T0 T1: rows per second between two `now`s.
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
# ratio A B: A / B to two decimals, n/a when B is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
# peak_mb TIMEFILE: the peak RSS in MB that `/usr/bin/time -v -o TIMEFILE` wrote.
peak_mb() {
  awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); printf "%.0f", $2 / 1024 }' "$1"
}
fresh_pg() {
  psql -qd postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null 2>&1
}
# settle_pg: a CHECKPOINT, so that a contender does not pay for the WAL the
# one before it wrote (PostgreSQL checkpoints every max_wal_size of WAL).
settle_pg() { psql -qd postgres -c CHECKPOINT >/dev/null; }
pg_count() { psql -Atd "$1" -c "SELECT COUNT(*) FROM $2"; }
# expect_rows WHAT GOT: stops the bench when GOT is not ROWS.
expect_rows() {
  [ "$2" = "$ROWS" ] || { log "$1 has $2 rows, expected $ROWS"; exit 1; }
}

# The bench's scratch directory, removed on exit.
WORK=$(mktemp -d)
# drop_on_exit "MARIADB_DBS" "PG_DBS" [PG_OPTION]: the databases the exit
# drops unless KEEP=1 (PG_OPTION after each PostgreSQL DROP, e.g. "WITH (FORCE)").
drop_on_exit() { DROP_MARIADB=$1 DROP_PG=$2 DROP_PG_OPTION=${3:-}; }
# bench_cleanup (the EXIT trap): stops the bench's background jobs, removes
# $WORK and drops the databases of drop_on_exit.
bench_cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
  [ "${KEEP:-0}" = 1 ] && return 0
  local d
  for d in ${DROP_MARIADB:-}; do my -e "DROP DATABASE IF EXISTS $d" || true; done
  for d in ${DROP_PG:-}; do
    psql -qd postgres -c "DROP DATABASE IF EXISTS $d ${DROP_PG_OPTION:-}" >/dev/null 2>&1 || true
  done
}
trap bench_cleanup EXIT

# gen_messages DB: a fresh MariaDB database DB with ROWS messages; old
# members (low ids) own more messages: the hot-shard shape. Its pages are
# flushed to disk at the end, so the first reader does not pay for writing
# them out of the buffer pool.
gen_messages() {
  log "generating $ROWS rows in MariaDB $1.messages"
  my -e "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1"
  my "$1" <<SQL
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
FLUSH TABLES messages FOR EXPORT;
UNLOCK TABLES;
SQL
}

# The target table of the messages: bare, then its primary key and member
# index (TARGET_DDL: both, in that order).
MESSAGES_TABLE="CREATE TABLE messages (id BIGINT NOT NULL, member_id BIGINT NOT NULL,
  conversation_id BIGINT NOT NULL, sender_id BIGINT NOT NULL, body TEXT NOT NULL,
  is_unread BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL, updated_at TIMESTAMP NOT NULL);"
MESSAGES_INDEXES="ALTER TABLE messages ADD PRIMARY KEY (id);
  CREATE INDEX messages_member_id ON messages (member_id);"
TARGET_DDL="$MESSAGES_TABLE $MESSAGES_INDEXES"

# pipe_copy SOURCE_DB TARGET_DB: the raw pipe, mysql --quick -B -N | psql \copy.
pipe_copy() {
  my --quick -B -N -e "SELECT $COLS FROM messages" "$1" \
    | psql -qd "$2" -c "\\copy messages ($COLS) from stdin"
}

# spec_header SOURCE_DB TARGET_DB [CHUNK_ROWS]: the top of a spec, chunks of
# CHUNK_ROWS rows (default 10,000).
spec_header() {
  cat <<TOML
chunk_rows = ${3:-10000}

[source]
url = "$MYSQL_URL_BASE/$1"

[target]
url = "$PG_URL_BASE/$2"
TOML
}

# spec_table NAME KEY BUCKETS SOURCE_TABLE [SOURCE_LINE]: a spec table up to
# its `[tables.columns]` line; the caller writes the columns.
spec_table() {
  cat <<TOML

[[tables]]
name = "$1"
key = ["$2"]
buckets = $3

[tables.source]
table = "$4"
${5:-}

[tables.columns]
TOML
}

# spec_messages NAME KEY KEY_VALUE [SOURCE_LINE]: a spec table of the
# messages in 8 buckets, keyed by column KEY (`KEY = KEY_VALUE`), every
# other column copied.
spec_messages() {
  spec_table "$1" "$2" 8 messages "${4:-}"
  cat <<TOML
$2 = $3
member_id = "member_id"
conversation_id = "conversation_id"
sender_id = "sender_id"
body = "body"
is_unread = "is_unread"
created_at = "created_at"
updated_at = "updated_at"
TOML
}
