#!/usr/bin/env bash
# Instruction profile of coopgate's hot path beside the bare proxy's, under
# valgrind's callgrind: instructions per request, which repeat from run to run
# where wall-clock figures move by ±10%. See bench/HISTORY.md for how it is read.
#
#   bash bench/run.sh          # once: builds the binaries, writes bench/out/coopgate.toml
#   bash bench/profile.sh      # writes bench/out/callgrind.{coopgate,bare}.out and prints the totals
#   PROFILE_HEADER="X-API-Key: cg_…" bash bench/profile.sh   # the same request with a credential
#
# Needs valgrind and wrk (Debian packages). Profiles the anonymous small-JSON
# request, the same config and origin as the benchmark's first coopgate run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/out"
UP_PORT=19000 GW_PORT=19080 BARE_PORT=19083
DURATION="${PROFILE_DURATION:-20s}"
# A header every request carries (an API key, a member token), or none.
HEADER=(); [ -n "${PROFILE_HEADER:-}" ] && HEADER=(-H "$PROFILE_HEADER")
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/coopgate"
BARE="${CARGO_TARGET_DIR:-$ROOT/target}/release/coopgate-bare-proxy"
for tool in valgrind wrk callgrind_annotate; do
  command -v "$tool" >/dev/null || { echo "profile: $tool is missing (apt-get install valgrind wrk)"; exit 1; }
done
[ -f "$OUT/coopgate.toml" ] && [ -x "$BIN" ] && [ -x "$BARE" ] \
  || { echo "profile: run bash bench/run.sh once first (it builds the binaries and writes $OUT/coopgate.toml)"; exit 1; }

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "profile: port $1 did not open"; exit 1; }

"$BIN" demo-upstream --listen 127.0.0.1:$UP_PORT --data-dir "$OUT/data" >/dev/null &
PIDS+=("$!")
wait_port $UP_PORT

# Profiles one proxy under load; prints "<name> <instructions> <requests>".
profile() {
  local name=$1 port=$2; shift 2
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.out" "$@" 2>"$OUT/callgrind.$name.log" &
  local pid=$!
  wait_port "$port"
  # A warm-up, so that connection set-up and first-use caches are not in the count.
  wrk -t1 -c8 -d2s "${HEADER[@]}" "http://127.0.0.1:$port/api/v1/regions" >/dev/null
  valgrind_zero "$pid"
  local requests
  requests=$(wrk -t1 -c8 -d"$DURATION" "${HEADER[@]}" "http://127.0.0.1:$port/api/v1/regions" | awk '/requests in/ {print $1}')
  # coopgate stops gracefully on SIGINT; the bare proxy has no handler and
  # valgrind keeps it running on SIGINT, so it gets SIGTERM. Either way
  # callgrind writes its profile on exit.
  kill -"$STOP" "$pid"; wait "$pid" 2>/dev/null || true
  local total
  total=$(callgrind_annotate "$OUT/callgrind.$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  echo "$name $total $requests"
}
# Zeroes callgrind's counters so that only the measured load is counted.
valgrind_zero() { callgrind_control --zero "$1" >/dev/null 2>&1; }

{
  STOP=INT profile coopgate $GW_PORT "$BIN" serve --config "$OUT/coopgate.toml"
  STOP=TERM profile bare $BARE_PORT "$BARE" 127.0.0.1:$BARE_PORT 127.0.0.1:$UP_PORT
} | awk '{ printf "%-9s %7.0f instructions per request (%s requests)\n", $1, $2 / $3, $3; per[$1] = $2 / $3 }
       END { if (per["bare"] > 0) printf "coopgate - bare: %.0f instructions per request\n", per["coopgate"] - per["bare"] }'
echo "profiles: $OUT/callgrind.coopgate.out, $OUT/callgrind.bare.out (callgrind_annotate --inclusive=yes FILE)"
