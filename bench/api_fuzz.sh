#!/usr/bin/env bash
# API fuzzing (not a test): schemathesis against GET /api/v1/openapi.json on a
# `tern demo` server, once per role (client owner, viewer, engineer, admin, in
# that order: the admin's writes come last), signed in with a session cookie
# and its CSRF token. Before the runs an admin registers a connection with a
# known secret, so that a secret or password anywhere in an answer is seen.
#
# What is counted, from schemathesis's recorded requests (VCR cassettes):
#   server_errors  answers with a 5xx status;
#   auth_leaks     a 2xx answer on a route the role may not reach by the access
#                  table (`tern access`), or an answer holding a password, a
#                  password hash or the connection's secret.
# Ends with exactly one summary line:
# api_fuzz operations=N requests=N server_errors=N auth_leaks=N
#
# Environment: MAX_EXAMPLES (per operation and role, default 25), PORT (a free
# one when unset), VENV (where schemathesis is installed, target/api-fuzz-venv),
# PROFILE (debug or release, default debug), KEEP=1 to keep the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_EXAMPLES=${MAX_EXAMPLES:-25}
VENV=${VENV:-$PWD/target/api-fuzz-venv}
PROFILE=${PROFILE:-debug}
PASSWORD="fuzz-$(date +%s)-pw"
SECRET="fuzz-secret-$RANDOM$RANDOM"
WORK=$(mktemp -d)
log() { echo "[api_fuzz] $*" >&2; }
cleanup() {
  [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && log "work directory kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

log "building tern ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p tern-server
else
  cargo build -q -p tern-server
fi
TERN=$PWD/target/$PROFILE/tern

if [ ! -x "$VENV/bin/st" ]; then
  log "installing schemathesis into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis pyyaml
fi
log "$("$VENV/bin/st" --version 2>/dev/null | head -1)"

PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
BASE="http://127.0.0.1:$PORT"
export TERN_DATA_DIR="$WORK/data" TERN_LOG=${TERN_LOG:-warn} TERN_DEMO_PASSWORD="$PASSWORD"
[ -d target/site ] && export TERN_SITE_ROOT="$PWD/target/site"
mkdir -p "$TERN_DATA_DIR"
log "starting tern demo on $BASE"
"$TERN" demo --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "$BASE/readyz" >/dev/null || { log "the server did not start:"; tail -20 "$WORK/server.log" >&2; exit 1; }
"$TERN" access >"$WORK/access.txt" 2>/dev/null
curl -sf "$BASE/api/v1/openapi.json" -o "$WORK/openapi.json"

# Signs in as $1; prints "cookie csrf".
sign_in() {
  local jar="$WORK/$1.jar" body
  body=$(curl -sf -c "$jar" -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/session")
  echo "$(awk '$6 == "tern_session" { print $7 }' "$jar") $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["csrf_token"])' "$body")"
}

read -r ADMIN_COOKIE ADMIN_CSRF <<<"$(sign_in admin)"
log "registering a connection whose secret must never come back"
curl -sf -o /dev/null -H "Cookie: tern_session=$ADMIN_COOKIE" -H "X-CSRF-Token: $ADMIN_CSRF" \
  -H 'Content-Type: application/json' \
  -d "{\"name\":\"fuzz-target\",\"kind\":\"postgres\",\"host\":\"127.0.0.1\",\"port\":5432,\"database\":\"fuzz\",\"username\":\"postgres\",\"secret\":\"$SECRET\"}" \
  "$BASE/api/v1/connections"

# fuzz NAME METHOD_FILTER: one schemathesis run with $COOKIE and $CSRF, every
# method but DELETE (--exclude-method) or only DELETE (--include-method); its
# cassette and log are $WORK/NAME.yaml and .log. The session's own route is
# left out: signing out would end the run's session.
fuzz() {
  "$VENV/bin/st" run "$WORK/openapi.json" --url "$BASE" \
    -H "Cookie: tern_session=$COOKIE" -H "X-CSRF-Token: $CSRF" \
    "$2" DELETE --exclude-path /api/v1/session \
    --checks not_a_server_error --max-examples "$MAX_EXAMPLES" \
    --report vcr --report-vcr-path "$WORK/$1.yaml" \
    --output-sanitize false --no-color >"$WORK/$1.log" 2>&1 || true
}

for user in owner pm engineer admin; do
  read -r COOKIE CSRF <<<"$(sign_in "$user")"
  log "schemathesis as $user ($MAX_EXAMPLES examples per operation)"
  fuzz "$user" --exclude-method
  tail -3 "$WORK/$user.log" | sed "s/^/[api_fuzz] $user: /" >&2
  # Ordinary DELETE routes, fuzzed apart from the session's.
  fuzz "$user-delete" --include-method
done

"$VENV/bin/python" - "$WORK" "$PASSWORD" "$SECRET" <<'PY'
import json, re, sys, glob, os
import yaml
work, password, secret = sys.argv[1], sys.argv[2], sys.argv[3]
roles = {"owner": "client-owner", "pm": "viewer", "engineer": "engineer", "admin": "admin"}
rules = []
for line in open(os.path.join(work, "access.txt")):
    f = line.split()
    if len(f) >= 3 and f[1].startswith("/"):
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(f[1])) + "$"
        rules.append((f[0], re.compile(pattern), f[2]))
def allowed(who, role):
    return {"anyone": True, "signed-in": True, "own-client": True,
            "own-client-write": role != "viewer", "readers": role != "client-owner",
            "operators": role in ("engineer", "admin"), "admins": role == "admin",
            "client-token": False}.get(who, False)
spec = json.load(open(os.path.join(work, "openapi.json")))
operations = sum(1 for p in spec["paths"].values() for m in p if m in ("get", "post", "put", "delete", "patch")
                 ) - 2  # the session's sign-out is never fuzzed; the sign-in is, but only to be refused
requests = errors = leaks = 0
found = []
for path in sorted(glob.glob(os.path.join(work, "*.yaml"))):
    user = os.path.basename(path).split(".")[0].split("-")[0]
    role = roles[user]
    data = yaml.safe_load(open(path)) or {}
    for i in data.get("http_interactions", []):
        req, res = i.get("request", {}), i.get("response") or {}
        if not res:
            continue
        requests += 1
        status = int((res.get("status") or {}).get("code", 0))
        body = (res.get("body") or {}).get("string", "") or ""
        method = req.get("method", "").upper()
        url = req.get("uri", "")
        route = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        if status >= 500:
            errors += 1
            found.append(f"5xx {status} {method} {url} as {role}: {body[:200]}")
        who = next((w for m, p, w in rules if m == method and p.match(route)), None)
        leak = None
        if 200 <= status < 300 and who is not None and not allowed(who, role):
            leak = f"2xx on a {who} route"
        if any(s in body for s in (password, secret, "$argon2", "password_hash")):
            leak = "a password, hash or secret in the answer"
        if leak:
            leaks += 1
            found.append(f"leak ({leak}) {status} {method} {url} as {role}")
for f in found[:40]:
    print("[api_fuzz] " + f, file=sys.stderr)
print(f"api_fuzz operations={operations} requests={requests} server_errors={errors} auth_leaks={leaks}")
PY
