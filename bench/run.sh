#!/usr/bin/env bash
# coopgate benchmark: the direct upstream, coopgate and (when installed) nginx
# with limit_req, side by side in one run, reported as ratios.
#
#   bash bench/run.sh            # writes bench/RESULTS.md
#
# Core 0 runs the upstream and the proxy under test; core 1 runs the load
# generator, so that the figures compare proxies rather than scheduling noise.
# Needs wrk (Debian package `wrk`); uses nginx when it is on PATH. Every server
# started here listens on 127.0.0.1 only and is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/out"
DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNECTIONS:-64}"
UP_PORT=19000 GW_PORT=19080 NGX_PORT=19081 FILES_PORT=19002
mkdir -p "$OUT"

command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)"; exit 1; }
HAVE_NGINX=0; command -v nginx >/dev/null && HAVE_NGINX=1

cargo build --release -p coopgate -q
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/coopgate"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "bench: port $1 did not open"; exit 1; }

# --- The upstream: coopgate's demo origin, plus a 1 GiB file (sparse: the page cache serves it).
# Started under taskset so that every thread, not just the first, stays on core 0.
taskset -c 0 "$BIN" demo-upstream --listen 127.0.0.1:$UP_PORT --data-dir "$OUT/data" >/dev/null &
UP_PID=$!; PIDS+=("$UP_PID")
wait_port $UP_PORT
[ -f "$OUT/data/datasets/big-1g.bin" ] || truncate -s 1G "$OUT/data/datasets/big-1g.bin"

# --- The 1 GiB file's origin. The demo origin reads files through tokio's blocking
# pool 8 KiB at a time (hyper-staticfile) and would be the bottleneck, hiding the
# proxies; where nginx is installed a static nginx (sendfile) serves the file
# instead, the same origin for all three measurements.
FILES_HOSTPORT="127.0.0.1:$UP_PORT"
if [ "$HAVE_NGINX" = 1 ]; then
  mkdir -p "$OUT/files-nginx"
  cat > "$OUT/files-nginx/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $OUT/files-nginx/nginx.pid;
error_log $OUT/files-nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off; sendfile on;
  client_body_temp_path $OUT/files-nginx/body; proxy_temp_path $OUT/files-nginx/proxy;
  fastcgi_temp_path $OUT/files-nginx/fcgi; uwsgi_temp_path $OUT/files-nginx/uwsgi; scgi_temp_path $OUT/files-nginx/scgi;
  server { listen 127.0.0.1:$FILES_PORT; location /files/ { alias $OUT/data/datasets/; } }
}
NGX
  taskset -c 0 nginx -c "$OUT/files-nginx/nginx.conf" &
  PIDS+=("$!")
  wait_port $FILES_PORT
  FILES_HOSTPORT="127.0.0.1:$FILES_PORT"
fi
FILES_ORIGIN="http://$FILES_HOSTPORT/files/"

# --- coopgate: one worker, the free-tier limiter on (a limit high enough never to refuse).
cat > "$OUT/coopgate.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
workers = 1
[log]
level = "warn"
[store]
url = "sqlite://$OUT/coopgate.db"
[tokens]
signing_key_file = "$OUT/token-signing-key.der"
[tiers.anonymous]
rank = 0
limits = [{ name = "burst", rate = "1000000/sec", burst = 1000000 }]
[tiers.registered]
rank = 10
limits = [{ name = "burst", rate = "1000000/sec", burst = 1000000 }]
[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:$UP_PORT/api/"
kind = "api"
min_tier = "anonymous"
[[routes]]
name = "bulk"
path = "/bulk/"
upstream = "$FILES_ORIGIN"
kind = "bulk"
min_tier = "anonymous"
TOML
# An account and API key for the keyed run (a fresh store each run).
rm -f "$OUT/coopgate.db"*
"$BIN" accounts create --email bench@example.org --config "$OUT/coopgate.toml" >/dev/null
API_KEY=$("$BIN" keys create --account bench@example.org --name bench --json --config "$OUT/coopgate.toml" | awk -F'"' '/"key"/ {print $4}')
TOKEN=$("$BIN" token issue --account bench@example.org --ttl 1h --config "$OUT/coopgate.toml")

start_coopgate() {
  taskset -c 0 "$BIN" serve --config "$OUT/coopgate.toml" 2>>"$OUT/coopgate.log" &
  GW_PID=$!; PIDS+=("$GW_PID")
  wait_port $GW_PORT
}

# --- nginx: one worker, limit_req with the same generous limit, keep-alive to the upstream.
start_nginx() {
  mkdir -p "$OUT/nginx"
  cat > "$OUT/nginx/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $OUT/nginx/body; proxy_temp_path $OUT/nginx/proxy;
  fastcgi_temp_path $OUT/nginx/fcgi; uwsgi_temp_path $OUT/nginx/uwsgi; scgi_temp_path $OUT/nginx/scgi;
  limit_req_zone \$binary_remote_addr zone=free:10m rate=1000000r/s;
  upstream origin { server 127.0.0.1:$UP_PORT; keepalive 64; }
  upstream files { server $FILES_HOSTPORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location /api/  { limit_req zone=free burst=1000000 nodelay; proxy_pass http://origin/api/;   proxy_http_version 1.1; proxy_set_header Connection ""; }
    location /bulk/ { limit_req zone=free burst=1000000 nodelay; proxy_pass http://files/files/; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
  taskset -c 0 nginx -c "$OUT/nginx/nginx.conf" &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  wait_port $NGX_PORT
  NGX_WORKER=$(pgrep -P "$NGX_PID" | head -n 1)
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# Runs wrk against URL; prints "rps p50_ms p99_ms requests".
load() {
  local out url=$1; shift
  out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$@" "$url")
  echo "$out" >> "$OUT/wrk.log"
  local rps p50 p99 reqs
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $reqs"
}
to_ms() { echo "$1" | awk '/us$/ {sub("us",""); printf "%.3f", $1/1000; next} /ms$/ {sub("ms",""); printf "%.3f", $1; next} /s$/ {sub("s",""); printf "%.3f", $1*1000}'; }

# Downloads URL once on core 1; prints MB/s.
download() { taskset -c 1 curl -s -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.0f", $1/1000000}'; }

SMALL=/api/v1/regions
BIG=/bulk/big-1g.bin
: > "$OUT/wrk.log"

echo "bench: warming up"
taskset -c 1 wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$UP_PORT$SMALL" >/dev/null

# Read the 1 GiB file once so that every download below is served from the page
# cache (a sparse file's first read is much slower than the ones after it).
download "${FILES_ORIGIN}big-1g.bin" >/dev/null

echo "bench: small JSON, direct upstream"
read -r D_RPS D_P50 D_P99 _ < <(load "http://127.0.0.1:$UP_PORT$SMALL")
D_MBS=$(download "${FILES_ORIGIN}big-1g.bin")

echo "bench: coopgate"
start_coopgate
T0=$(cpu_ticks "$GW_PID")
read -r G_RPS G_P50 G_P99 G_REQS < <(load "http://127.0.0.1:$GW_PORT$SMALL")
T1=$(cpu_ticks "$GW_PID")
echo "bench: coopgate with an API key"
read -r K_RPS K_P50 K_P99 _ < <(load "http://127.0.0.1:$GW_PORT$SMALL" -H "X-API-Key: $API_KEY")
echo "bench: coopgate with a member token"
read -r J_RPS J_P50 J_P99 _ < <(load "http://127.0.0.1:$GW_PORT$SMALL" -H "Authorization: Bearer $TOKEN")
G_CPU_US=$(awk -v t="$((T1 - T0))" -v n="$G_REQS" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
start_coopgate   # a fresh process, so that its peak RSS is the download's
G_MBS=$(download "http://127.0.0.1:$GW_PORT$BIG")
G_RSS=$(( $(peak_rss_kib "$GW_PID") / 1024 ))

N_RPS=- N_P50=- N_P99=- N_MBS=- N_RSS=- N_CPU_US=-
if [ "$HAVE_NGINX" = 1 ]; then
  echo "bench: nginx"
  start_nginx
  T0=$(cpu_ticks "$NGX_WORKER")
  read -r N_RPS N_P50 N_P99 N_REQS < <(load "http://127.0.0.1:$NGX_PORT$SMALL")
  T1=$(cpu_ticks "$NGX_WORKER")
  N_CPU_US=$(awk -v t="$((T1 - T0))" -v n="$N_REQS" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
  N_MBS=$(download "http://127.0.0.1:$NGX_PORT$BIG")
  N_RSS=$(( $(peak_rss_kib "$NGX_WORKER") / 1024 ))
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == "-" || b == 0) print "-"; else printf "%.2f×", a / b }'; }

CPU=$(awk -F: '/model name/ {gsub(/^ +/, "", $2); print $2; exit}' /proc/cpuinfo)
cat > "$ROOT/bench/RESULTS.md" <<MD
# Benchmark results

Latest run of \`bench/run.sh\`: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($CPU),
$(uname -r). Upstream and proxy share core 0; wrk and curl run on core 1.
coopgate runs one worker with the free-tier limiter and metrics on; nginx
$(nginx -v 2>&1 | sed 's/.*nginx\///') runs one worker with \`limit_req\` and upstream keep-alive
(default buffering). $CONNS connections, $DURATION per run.

## Small JSON (\`GET $SMALL\`, 547 bytes)

| | requests/s | p50 ms | p99 ms | proxy CPU µs/request |
|---|---|---|---|---|
| direct upstream | $D_RPS | $D_P50 | $D_P99 | |
| coopgate | $G_RPS | $G_P50 | $G_P99 | $G_CPU_US |
| coopgate, API key | $K_RPS | $K_P50 | $K_P99 | |
| coopgate, member token (JWT) | $J_RPS | $J_P50 | $J_P99 | |
| nginx + limit_req | $N_RPS | $N_P50 | $N_P99 | $N_CPU_US |

coopgate / nginx throughput: **$(ratio "$G_RPS" "$N_RPS")** (target ≥ 1.05×);
p99 coopgate / nginx: **$(ratio "$G_P99" "$N_P99")** (target ≤ 1.00×).
With an API key (cached after the first request) / anonymous: **$(ratio "$K_RPS" "$G_RPS")**;
with a member token (signature checked once, then cached by hash) / anonymous:
**$(ratio "$J_RPS" "$G_RPS")** (target for both ≥ 0.95×: auth costs at most 5%).

## 1 GiB download (\`GET $BIG\`)

Origin of the file: $FILES_ORIGIN.

| | MB/s | proxy peak RSS MiB |
|---|---|---|
| direct upstream | $D_MBS | |
| coopgate | $G_MBS | $G_RSS |
| nginx | $N_MBS | $N_RSS |

coopgate / nginx: **$(ratio "$G_MBS" "$N_MBS")** (target ≥ 2×); coopgate peak RSS
$G_RSS MiB (target ≤ 16 MiB).

Raw wrk output of this run: \`bench/out/wrk.log\` (not committed).

## Reading these figures

The small-JSON gap to nginx is the cost per request of hyper, tokio and the
kernel more than of coopgate's layers: in a \`perf\` profile of coopgate under
this load (2026-11-22) about 57% of its CPU time is in the kernel (two sockets per
request, wake-ups on a shared core), the user-space profile is flat, and the
layers themselves (request id, route, identify, limit, meter) are about 1.5 µs
together; the limiter alone is about 3% of throughput. Things tried that did not
move the figure: no header-read timer, an HTTP/1-only server builder. mimalloc
(without transparent huge pages) gave about 10%. Upstream connections belong to
the client connection (no shared pool), as measured best while planning.
MD
cat "$ROOT/bench/RESULTS.md"
