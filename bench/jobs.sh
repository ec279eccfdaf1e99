#!/usr/bin/env bash
# Job and runner benchmarks of the release binaries (not a test), each phase on a fresh
# server: GET /api/jobs/info and /api/jobs/get for a user with 10,000 jobs (wrk), jobs
# end to end through 50 simulated runners with the submit -> assignment latency, 1,000
# runners heartbeating at once with the server's CPU, and a 1 GiB upload and download
# with the server's peak RSS growth.
#
#   cargo build --release -p scribe-server -p scribe-loadgen && bench/jobs.sh [sqlite|postgres] [phase...]
#   phases: queries pipeline heartbeats bigfile (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
backend="${1:-sqlite}"
shift || true
phases=("$@")
[ "${#phases[@]}" -gt 0 ] || phases=(queries pipeline heartbeats bigfile)
duration="${BENCH_DURATION:-10s}"
bin="${BENCH_BIN:-target/release/scribe}"
loadgen="${BENCH_LOADGEN:-target/release/scribe-loadgen}"
for tool in "$bin" "$loadgen"; do
  [ -x "$tool" ] || { echo "build first: cargo build --release -p scribe-server -p scribe-loadgen" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "install wrk (apt-get install wrk)" >&2; exit 1; }

work="$(mktemp -d)"
pg_admin="postgres://postgres@127.0.0.1:5432/postgres"
server_pid=""
db=""
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  server_pid=""
  if [ -n "$db" ]; then psql "$pg_admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; fi
  db=""
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server [extra yaml]: a fresh database and data directory; sets base and token
# (an admin session of a provisioned, verified admin).
start_server() {
  stop_server
  rm -rf "$work/data" "$work/scribe.db"*
  local db_url="sqlite://$work/scribe.db"
  if [ "$backend" = postgres ]; then
    db="scribe_bench_$RANDOM"
    psql "$pg_admin" -qc "CREATE DATABASE $db" >/dev/null
    db_url="postgres://postgres@127.0.0.1:5432/$db"
  fi
  local port=$((20000 + RANDOM % 10000))
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
${1:-}
YAML
  "$bin" --config "$work/config.yml" serve 2>"$work/server.log" &
  server_pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf "$base/healthz" >/dev/null || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
  rm -f "$work/cookies"
  curl -sf -c "$work/cookies" -d "username=bench@example.org&password=Bench-Password-1&scope=admin" \
    "$base/api/local-account/login" >/dev/null
  # The admin session itself: API tokens never carry admin rights, and creating
  # runners needs them.
  token=$(awk '$6 == "token" { print $7 }' "$work/cookies")
  [ -n "$token" ] || { echo "login failed" >&2; exit 1; }
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$server_pid/status"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$server_pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
wrk_summary() { grep -E "Requests/sec|Latency  |99%|Non-2xx"; }

echo "backend: $backend, $(nproc) cores shared by the server and the load generator"

phase_queries() {
  start_server
  echo; echo "== seeding 10,000 jobs of one user (no runner online: they stay queued)"
  "$loadgen" --url "$base" --token "$token" seed-jobs --count 10000 --concurrency 16 >"$work/seed.txt"
  head -1 "$work/seed.txt"
  # 20 ids spread over the user's history.
  local query
  query=$(tail -1 "$work/seed.txt" | tr ',' '\n' | awk 'NR % 500 == 7' | sed 's/^/job_ids=/' | paste -sd'&')
  echo; echo "== GET /api/jobs/info with 20 job ids (wrk -t2 -c64 -d$duration)"
  wrk -t2 -c64 -d"$duration" --latency -H "Authorization: Bearer $token" "$base/api/jobs/info?$query" | wrk_summary
  local sort
  for sort in creation_time filename; do
    for page in 1 400; do
      local start=$(((page - 1) * 10)) end=$(((page - 1) * 10 + 9))
      echo; echo "== GET /api/jobs/get page $page (start_index=$start, 10 per page, sort_key=$sort, descending)"
      wrk -t2 -c64 -d"$duration" --latency -H "Authorization: Bearer $token" \
        "$base/api/jobs/get?start_index=$start&end_index=$end&sort_key=$sort&descending=true&exclude_finished=false&exclude_downloaded=false" | wrk_summary
    done
  done
}

phase_pipeline() {
  start_server
  echo; echo "== 1,000 jobs through 50 simulated runners with zero work time"
  "$loadgen" --url "$base" --token "$token" pipeline --jobs 1000 --runners 50 --latency-samples 200
}

phase_heartbeats() {
  start_server
  echo; echo "== 1,000 runners heartbeating at the same instant, once a second, for 20 s"
  local before_ticks before_time
  before_ticks=$(cpu_ticks)
  before_time=$(date +%s.%N)
  "$loadgen" --url "$base" --token "$token" heartbeats --runners 1000 --seconds 20 --interval-ms 1000
  local after_ticks after_time
  after_ticks=$(cpu_ticks)
  after_time=$(date +%s.%N)
  awk -v t0="$before_time" -v t1="$after_time" -v c0="$before_ticks" -v c1="$after_ticks" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "server CPU over the whole phase (registration included): %.0f%% of one core\n", 100 * (c1 - c0) / hz / (t1 - t0) }'
}

phase_bigfile() {
  local storage
  for storage in database directory; do
    start_server "storage: { backend: $storage }
limits: { max_upload_bytes: 2147483648 }"
    [ -f "$work/big.wav" ] || head -c 1073741824 /dev/urandom >"$work/big.wav"
    local rss_before
    rss_before=$(rss_kib)
    echo; echo "== 1 GiB upload and download, storage backend: $storage (RSS before: $((rss_before / 1024)) MiB)"
    local t0 t1 id
    t0=$(date +%s.%N)
    id=$(curl -sf -H "Authorization: Bearer $token" -F "audio_file=@$work/big.wav;type=audio/wav" "$base/api/jobs/submit_job")
    t1=$(date +%s.%N)
    awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "upload: %.0f MiB/s (%.1f s)\n", 1024 / (t1 - t0), t1 - t0 }'
    local runner_token session
    runner_token=$(curl -sf -H "Authorization: Bearer $token" -X POST "$base/api/admins/create_runner" | sed -E 's/.*"token":"([^"]+)".*/\1/')
    session=$(curl -sf -H "Authorization: Bearer $runner_token" -H 'Content-Type: application/json' \
      -d '{"name":"big","version":"1","git_hash":"x","source_code_url":"https://example.org","priority":1}' \
      "$base/api/runners/register" | sed -E 's/.*"session_token":"([^"]+)".*/\1/')
    curl -sf -H "Authorization: Bearer $runner_token" -H 'Content-Type: application/json' -d '{"progress":0}' \
      "$base/api/runners/heartbeat?session_token=$session" >/dev/null
    t0=$(date +%s.%N)
    curl -sf -H "Authorization: Bearer $runner_token" -X POST -o "$work/download.wav" \
      "$base/api/runners/retrieve_job_audio?session_token=$session"
    t1=$(date +%s.%N)
    awk -v t0="$t0" -v t1="$t1" 'BEGIN { printf "download: %.0f MiB/s (%.1f s)\n", 1024 / (t1 - t0), t1 - t0 }'
    cmp -s "$work/big.wav" "$work/download.wav" && echo "downloaded bytes identical to the upload (job $id)" ||
      { echo "DOWNLOAD DIFFERS" >&2; exit 1; }
    rm -f "$work/download.wav"
    echo "server peak RSS growth: $((($(hwm_kib) - rss_before) / 1024)) MiB (VmHWM $(($(hwm_kib) / 1024)) MiB)"
  done
}

for phase in "${phases[@]}"; do
  "phase_$phase"
done
