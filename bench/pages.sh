#!/usr/bin/env bash
# Page benchmark (not a test): the overview and migration pages with 50
# migrations × 1,000 buckets and 100 clients in the control store (SQLite),
# 1,000 requests over loopback from 4 concurrent clients; server response time
# p50/p99. Ends with exactly one summary line:
# pages requests=N p50_ms=A p99_ms=B   (then ` profile=debug` on a debug build)
#
# Environment: REQUESTS (default 1000), CONCURRENCY (4), MIGRATIONS (50),
# BUCKETS (1000), CLIENTS (100), RUNS (verification runs per migration, 10),
# PORT (3190), PROFILE (release; `debug` uses the debug build already there,
# for a machine too busy for a release build: its numbers are slower than
# the target's and say nothing about p99 <= 50 ms).
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${REQUESTS:-1000}
CONCURRENCY=${CONCURRENCY:-4}
MIGRATIONS=${MIGRATIONS:-50}
BUCKETS=${BUCKETS:-1000}
CLIENTS=${CLIENTS:-100}
RUNS=${RUNS:-10}
PORT=${PORT:-3190}
PROFILE=${PROFILE:-release}
WORK=$(mktemp -d)
log() { echo "[bench] $*" >&2; }
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

log "building tern ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p tern-server
  cargo xtask site --release >&2
else
  cargo build -q -p tern-server
  cargo xtask site >&2
fi
TERN=target/$PROFILE/tern
export TERN_DATA_DIR="$WORK" TERN_LOG=warn TERN_WORKERS=0 TERN_SITE_ROOT="$PWD/target/site"

log "creating the control store and a user"
echo "bench-password" | $TERN user add bench --role engineer --password-stdin >/dev/null

log "seeding $MIGRATIONS migrations × $BUCKETS buckets and $CLIENTS clients"
python3 - "$WORK/tern.db" "$MIGRATIONS" "$BUCKETS" "$CLIENTS" "$RUNS" <<'PY'
import sqlite3, sys, time, random
db, migrations, buckets, clients, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
c = sqlite3.connect(db)
now = int(time.time() * 1000)
phases = ['planned', 'bulk-loading', 'loaded', 'catching-up', 'caught-up', 'verifying', 'verified', 'switched', 'done']
rnd = random.Random(7)
for m in range(1, migrations + 1):
    cur = c.execute("INSERT INTO migrations (name, description, spec, status, created_by, created_at, updated_at) VALUES (?, ?, ?, 'active', 'bench', ?, ?)",
                    (f"migration-{m:03}", "benchmark migration", "chunk_rows = 5000\n", now, now))
    mid = cur.lastrowid
    rows = []
    for i in range(buckets):
        phase = phases[rnd.randrange(len(phases))]
        planned = 100_000 + rnd.randrange(5_000)
        copied = planned if phase not in ('planned', 'bulk-loading') else rnd.randrange(planned)
        acc = 99.0 + rnd.random() if phase in ('verified', 'switched', 'done') else None
        rows.append((mid, i, str(i * 1000), str((i + 1) * 1000), planned, copied, phase, now, now, 'messages', i, acc))
    c.executemany("INSERT INTO buckets (migration_id, idx, lo, hi, planned_rows, rows_copied, phase, updated_at, phase_since, table_name, table_bucket, accuracy) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    for k in range(30):
        c.execute("INSERT INTO throughput_samples (migration_id, at, rows_done) VALUES (?, ?, ?)", (mid, now - (30 - k) * 5000, k * 50_000))
    for k in range(runs):
        c.execute("INSERT INTO verify_runs (migration_id, kind, rows_compared, matched, missing, extra, different, accuracy, finished_at) VALUES (?, 'full', 1000, ?, 0, 0, ?, ?, ?)",
                  (mid, 990 + k % 11, 10 - k % 11, 99.0 + (k % 11) / 10, now - (runs - k) * 60000))
tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
if 'clients' in tables:
    cols = [r[1] for r in c.execute("PRAGMA table_info(clients)")]
    for k in range(clients):
        values = {'migration_id': 1 + k % migrations, 'name': f"client-{k:03}", 'team': 'team', 'contact': 'owner@example.com',
                  'kind': 'online', 'status': 'in-progress', 'ramp': (k * 997) % 100_000, 'created_at': now, 'updated_at': now}
        use = [col for col in cols if col in values]
        c.execute(f"INSERT INTO clients ({', '.join(use)}) VALUES ({', '.join('?' for _ in use)})", [values[u] for u in use])
else:
    print("no clients table yet: clients not seeded", file=sys.stderr)
c.commit()
PY

log "starting tern serve on 127.0.0.1:$PORT"
$TERN serve --listen "127.0.0.1:$PORT" >/dev/null &
SERVER=$!
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.2; done

log "$REQUESTS requests, $CONCURRENCY at a time, alternating the overview and migration pages"
python3 - "$PORT" "$REQUESTS" "$CONCURRENCY" "$MIGRATIONS" "$PROFILE" <<'PY'
import http.client, sys, threading, time, urllib.parse
port, total, conc, migrations = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
profile = sys.argv[5]
def connect():
    return http.client.HTTPConnection("127.0.0.1", port, timeout=30)
c = connect()
body = urllib.parse.urlencode({"username": "bench", "password": "bench-password", "next": "/"})
c.request("POST", "/auth/login", body, {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"http://127.0.0.1:{port}"})
r = c.getresponse(); r.read()
cookie = r.getheader("Set-Cookie").split(";")[0]
paths = [("/" if i % 2 == 0 else f"/migrations/{1 + (i // 2) % migrations}") for i in range(total)]
lat = {"/": [], "m": []}
lock = threading.Lock()
next_i = [0]
def worker():
    conn = connect()
    while True:
        with lock:
            if next_i[0] >= total:
                return
            i = next_i[0]; next_i[0] += 1
        p = paths[i]
        t = time.perf_counter()
        conn.request("GET", p, headers={"Cookie": cookie})
        resp = conn.getresponse(); data = resp.read()
        dt = (time.perf_counter() - t) * 1000
        if resp.status != 200 or len(data) < 1000:
            print(f"bad response {resp.status} for {p}", file=sys.stderr); sys.exit(1)
        with lock:
            lat["/" if p == "/" else "m"].append(dt)
threads = [threading.Thread(target=worker) for _ in range(conc)]
start = time.perf_counter()
[t.start() for t in threads]; [t.join() for t in threads]
elapsed = time.perf_counter() - start
def pct(xs, q):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]
allx = lat["/"] + lat["m"]
print(f"[bench] overview p50={pct(lat['/'], .5):.1f}ms p99={pct(lat['/'], .99):.1f}ms; migration page p50={pct(lat['m'], .5):.1f}ms p99={pct(lat['m'], .99):.1f}ms; {len(allx) / elapsed:.0f} req/s", file=sys.stderr)
print(f"pages requests={len(allx)} p50_ms={pct(allx, .5):.1f} p99_ms={pct(allx, .99):.1f}" + ("" if profile == "release" else f" profile={profile}"))
PY
