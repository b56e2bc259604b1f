#!/usr/bin/env bash
# Data-fix benchmark (not a test): ROWS rows that all match the filter, fixed
# by the declarative mapper (email = lower(email), fixed = 1), unthrottled, on
# PostgreSQL and on MariaDB; then how closely the measured rate follows a
# configured limit (RATE records/s for DURATION s on PostgreSQL, measured from
# the job's own progress after the first 2 s).
# records_per_s in the summary is the slower of the two databases.
# Ends with exactly one summary line:
# datafix records=N records_per_s=X configured_rate=R rate_error_pct=E
#
# Environment: PROFILE (release), ROWS (default 1000000), RATE (500), DURATION (20),
# MYSQL_HOST/MYSQL_PORT/MYSQL_USER (127.0.0.1/3306/root, no password),
# PGHOST/PGPORT/PGUSER (127.0.0.1/5432/postgres), KEEP=1 keeps the databases.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-1000000}
RATE=${RATE:-500}
SECONDS_=${DURATION:-20}
. bench/lib.sh
DB=tern_bench_fix
drop_on_exit "$DB" "$DB"

# PROFILE=dev uses the dev build (dependencies at opt-level 1) when a release
# build cannot be afforded on a busy machine.
PROFILE=${PROFILE:-release}
log "building the data-fix driver ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p tern-datafix --example datafix_bench
  BIN=target/release/examples/datafix_bench
else
  cargo build -q -p tern-datafix --example datafix_bench
  BIN=target/debug/examples/datafix_bench
fi
PG_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
MY_URL="mysql://$MYSQL_USER@$MYSQL_HOST:$MYSQL_PORT/$DB"

pg_setup() {
  psql -qd postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null
  psql -qd postgres -c "CREATE DATABASE $DB" >/dev/null
  psql -qd "$DB" >/dev/null <<SQL
CREATE TABLE fixbench (id BIGINT PRIMARY KEY, email TEXT NOT NULL, fixed INT NOT NULL DEFAULT 0);
INSERT INTO fixbench (id, email) SELECT g, 'Member.' || g || '@Example.COM' FROM generate_series(1, $1) g;
ANALYZE fixbench;
SQL
}

my_setup() {
  my -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
  my "$DB" <<SQL
CREATE TABLE fixbench (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL, fixed INT NOT NULL DEFAULT 0) ENGINE=InnoDB;
INSERT INTO fixbench (id, email) SELECT seq, CONCAT('Member.', seq, '@Example.COM') FROM seq_1_to_$1;
ANALYZE TABLE fixbench;
SQL
}

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

log "PostgreSQL: $ROWS matching rows"
pg_setup "$ROWS"
PG_LINE=$($BIN throughput "$PG_URL")
log "PostgreSQL: $PG_LINE"

log "MariaDB: $ROWS matching rows"
my_setup "$ROWS"
MY_LINE=$($BIN throughput "$MY_URL")
log "MariaDB: $MY_LINE"

log "rate following: $RATE records/s for $SECONDS_ s on PostgreSQL"
pg_setup $((RATE * (SECONDS_ + 5)))
RATE_LINE=$($BIN rate "$PG_URL" "$RATE" "$SECONDS_")
log "$RATE_LINE"

PG_RPS=$(field "$PG_LINE" records_per_s)
MY_RPS=$(field "$MY_LINE" records_per_s)
N=$(field "$PG_LINE" records)
MIN_RPS=$(( PG_RPS < MY_RPS ? PG_RPS : MY_RPS ))
log "records/s: postgres=$PG_RPS mariadb=$MY_RPS"
echo "datafix records=$N records_per_s=$MIN_RPS configured_rate=$RATE rate_error_pct=$(field "$RATE_LINE" rate_error_pct)"
