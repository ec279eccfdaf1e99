#!/usr/bin/env bash
# Load benchmark of the release binary with wrk (Debian package `wrk`), not a test:
# throughput and latency of GET /api/about, of authenticated GET /api/users/info
# (Bearer API token), logins per second at the default argon2 parameters, and
# /api/about's latency while 50 clients log in. Also the server's RSS idle and under load.
#
#   cargo build --release --bin scribe && bench/http.sh [sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
duration="${BENCH_DURATION:-10s}"
bin="${BENCH_BIN:-target/release/scribe}"
[ -x "$bin" ] || { echo "build first: cargo build --release --bin scribe" >&2; exit 1; }
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }

work="$(mktemp -d)"
port=$((20000 + RANDOM % 10000))
db_url="sqlite://$work/scribe.db"
if [ "$backend" = postgres ]; then
  db="scribe_bench_$RANDOM"
  psql postgres://postgres@127.0.0.1:5432/postgres -qc "CREATE DATABASE $db" >/dev/null
  db_url="postgres://postgres@127.0.0.1:5432/$db"
fi
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [ "$backend" = postgres ] && psql postgres://postgres@127.0.0.1:5432/postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/config.yml" <<YAML
client_url: "http://localhost:5173/#"
database_url: "$db_url"
data_dir: "$work/data"
web_server: { address: 127.0.0.1, port: $port, no_https: true }
security:
  secret_key: "$(openssl rand -hex 32)"
  local_account:
    user_provisioning:
      0: { email: "bench@example.org", password: "Bench-Password-1", is_admin: true }
logging: { console: { level: WARNING } }
YAML
"$bin" --config "$work/config.yml" serve 2>"$work/server.log" &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "$base/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }

rss() { awk '/VmRSS/ {printf "%.1f MiB", $2/1024}' "/proc/$server_pid/status"; }
echo "backend: $backend, $(nproc) cores, wrk and server share them"
echo "RSS idle: $(rss)"

echo; echo "== GET /api/about (wrk -t2 -c64 -d$duration)"
wrk -t2 -c64 -d"$duration" --latency "$base/api/about" | grep -E "Requests/sec|Latency  |99%"
echo "RSS after load: $(rss)"

curl -sf -c "$work/cookies" -d "username=bench@example.org&password=Bench-Password-1" "$base/api/local-account/login" >/dev/null
token=$(curl -sf -b "$work/cookies" -X POST "$base/api/users/get_new_api_token?name=bench" | tr -d '"')
echo; echo "== GET /api/users/info with a Bearer API token (wrk -t2 -c64 -d$duration)"
wrk -t2 -c64 -d"$duration" --latency -H "Authorization: Bearer $token" "$base/api/users/info" | grep -E "Requests/sec|Latency  |99%"

cat >"$work/login.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "username=bench@example.org&password=Bench-Password-1"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
echo; echo "== POST /api/local-account/login, 50 clients (argon2id m=19 MiB t=2 p=1)"
wrk -t2 -c50 -d"$duration" --latency -s "$work/login.lua" "$base/api/local-account/login" >"$work/logins.txt" &
storm=$!
sleep 2
echo "-- meanwhile GET /api/about, 4 clients:"
wrk -t1 -c4 -d5s --latency "$base/api/about" | grep -E "Requests/sec|Latency  |99%"
echo "RSS during the login storm: $(rss)"
wait "$storm"
grep -E "Requests/sec|Latency  |99%|Non-2xx" "$work/logins.txt"
