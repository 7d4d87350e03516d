#!/usr/bin/env bash
# Rehearse the production shape on one machine, without Docker: two coopgate
# replicas on the PostgreSQL and Redis that are already running, the Stripe
# simulator, the sample origin, and nginx balancing between the replicas.
#
#   deploy/local-cluster.sh            # runs until Ctrl-C, then stops everything
#
# Settings (environment):
#   DATABASE_URL   a PostgreSQL server URL whose user may create a database
#                  (default postgres://postgres@127.0.0.1:5432/postgres);
#                  the cluster uses a database of its own on that server
#   CLUSTER_DB     that database's name (default coopgate_cluster; made when missing)
#   REDIS_URL      default redis://127.0.0.1:6379 (keys under CLUSTER_DB:)
#   CLUSTER_DIR    where config, logs and data go (default coopgate-data/cluster)
#   BASE_PORT      the balancer listens here, replicas on +1 and +2, the origin
#                  on +10, the simulator on +11 (default 18080)
#   COOPGATE       a built coopgate binary (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
CLUSTER_DIR="${CLUSTER_DIR:-coopgate-data/cluster}"
CLUSTER_DB="${CLUSTER_DB:-coopgate_cluster}"
[[ "$CLUSTER_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || { printf 'local-cluster: CLUSTER_DB must be a plain lower-case name\n' >&2; exit 1; }
BASE_PORT="${BASE_PORT:-18080}"
LB_PORT=$BASE_PORT; R1_PORT=$((BASE_PORT + 1)); R2_PORT=$((BASE_PORT + 2))
ORIGIN_PORT=$((BASE_PORT + 10)); SIM_PORT=$((BASE_PORT + 11))

say() { printf 'local-cluster: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

command -v psql >/dev/null || fail "psql is needed to create the cluster's database (apt-get install postgresql-client)"
command -v nginx >/dev/null || fail "nginx is the load balancer here: apt-get install nginx"
psql "$DATABASE_URL" -qtAc 'select 1' >/dev/null 2>&1 || fail "PostgreSQL at $DATABASE_URL is not answering; start it or set DATABASE_URL"
redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 || fail "Redis at $REDIS_URL is not answering; start it or set REDIS_URL"

if [ -z "${COOPGATE:-}" ]; then
  say "building coopgate (cargo build --release -p coopgate)"
  cargo build --release -q -p coopgate
  COOPGATE="${CARGO_TARGET_DIR:-target}/release/coopgate"
fi
[ -x "$COOPGATE" ] || fail "no coopgate binary at $COOPGATE"

mkdir -p "$CLUSTER_DIR"
DIR="$(cd "$CLUSTER_DIR" && pwd)"
PIDS=()
stop() {
  say "stopping"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

# A database of the cluster's own, on the server DATABASE_URL names.
if [ "$(psql "$DATABASE_URL" -qtAc "select 1 from pg_database where datname = '$CLUSTER_DB'")" != 1 ]; then
  psql "$DATABASE_URL" -qc "create database $CLUSTER_DB" >/dev/null
fi
STORE_URL="$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]*(\\?|\$)#/$CLUSTER_DB\\1#")"

# The secrets the config names as env:…, as a deployment's would come.
WEBHOOK_SECRET="whsec_local_cluster_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
export COOPGATE_STORE_URL="$STORE_URL" REDIS_URL STRIPE_SECRET_KEY=sk_test_local_cluster STRIPE_WEBHOOK_SECRET="$WEBHOOK_SECRET"
# For admin commands in another shell: set -a; . CLUSTER_DIR/env; set +a
printf 'COOPGATE_STORE_URL=%s\nREDIS_URL=%s\nSTRIPE_SECRET_KEY=%s\nSTRIPE_WEBHOOK_SECRET=%s\n' \
  "$COOPGATE_STORE_URL" "$REDIS_URL" "$STRIPE_SECRET_KEY" "$STRIPE_WEBHOOK_SECRET" >"$DIR/env"
chmod 600 "$DIR/env"

cat > "$DIR/coopgate.toml" <<TOML
# Written by deploy/local-cluster.sh: deploy/compose/coopgate.toml's shape on loopback.
[server]
listen = "127.0.0.1:0"
# nginx on this machine is the balancer.
trusted_proxies = ["127.0.0.1/32"]
shutdown_grace = "10s"

[store]
url = "env:COOPGATE_STORE_URL"

[tokens]
signing_key_file = "$DIR/token-signing-key.der"

[log]
access = true

[limits]
backend = "redis"
redis_url = "env:REDIS_URL"
redis_prefix = "$CLUSTER_DB"

[tiers.anonymous]
rank = 0
limits = [{ name = "burst", rate = "60/min", burst = 20 }]

[tiers.registered]
rank = 10
limits = [{ name = "burst", rate = "600/min", burst = 100 }, { name = "monthly", quota = "10000/month" }]

[tiers.metered]
rank = 15
limits = [{ name = "burst", rate = "3000/min", burst = 300 }]

[tiers.sustaining]
rank = 20
stripe_prices = ["price_sustaining_community", "price_sustaining_university", "price_sustaining_company"]
seats = 10
limits = [{ name = "burst", rate = "6000/min", burst = 500 }]

[billing]
success_url = "http://127.0.0.1:$LB_PORT/billing/checkout/done?session={CHECKOUT_SESSION_ID}"
cancel_url = "http://127.0.0.1:$LB_PORT/billing/checkout/canceled"
portal_return_url = "http://127.0.0.1:$LB_PORT/billing/portal/return"

[billing.stripe]
api_base = "http://127.0.0.1:$SIM_PORT/"
secret_key = "env:STRIPE_SECRET_KEY"
webhook_secrets = ["env:STRIPE_WEBHOOK_SECRET"]

[billing.metered]
price = "price_api_metered"
meter_event = "api_requests"
included = "1000/month"
tier = "metered"
report_interval = "10s"

[portal]
base_url = "http://127.0.0.1:$LB_PORT"
secure_cookies = false

[portal.mail]
from = "Data co-op <portal@coop.example>"
outbox = "$DIR/outbox.jsonl"

[[routes]]
name = "bulk"
path = "/bulk/"
upstream = "http://127.0.0.1:$ORIGIN_PORT/files/"
kind = "bulk"
min_tier = "anonymous"
catalog = "./"

[[routes]]
name = "api"
path = "/api/"
upstream = "http://127.0.0.1:$ORIGIN_PORT/api/"
kind = "api"
min_tier = "anonymous"

[[routes]]
name = "members"
path = "/members/"
upstream = "http://127.0.0.1:$ORIGIN_PORT/api/"
kind = "api"
min_tier = "sustaining"
TOML

"$COOPGATE" check --config "$DIR/coopgate.toml" >/dev/null
"$COOPGATE" migrate --config "$DIR/coopgate.toml" >/dev/null

"$COOPGATE" demo-upstream --listen "127.0.0.1:$ORIGIN_PORT" --data-dir "$DIR/origin" >"$DIR/origin.log" 2>&1 &
PIDS+=($!)
# Stripe's webhooks go to the balancer, like Stripe's to a deployment's public address.
"$COOPGATE" stripe-sim --listen "127.0.0.1:$SIM_PORT" --config "$DIR/coopgate.toml" \
  --webhook "http://127.0.0.1:$LB_PORT/billing/stripe/webhook" --webhook-secret "$WEBHOOK_SECRET" >"$DIR/stripe-sim.log" 2>&1 &
PIDS+=($!)
for n in 1 2; do
  port=$((BASE_PORT + n))
  COOPGATE__SERVER__LISTEN="127.0.0.1:$port" "$COOPGATE" serve --config "$DIR/coopgate.toml" >"$DIR/replica-$n.log" 2>&1 &
  PIDS+=($!)
done

mkdir -p "$DIR/nginx"
cat > "$DIR/nginx/nginx.conf" <<NGX
# Written by deploy/local-cluster.sh: deploy/compose/nginx.conf on loopback.
daemon off;
worker_processes 1;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $DIR/nginx/body; proxy_temp_path $DIR/nginx/proxy;
  fastcgi_temp_path $DIR/nginx/fcgi; uwsgi_temp_path $DIR/nginx/uwsgi; scgi_temp_path $DIR/nginx/scgi;
  upstream coopgate {
    server 127.0.0.1:$R1_PORT max_fails=3 fail_timeout=10s;
    server 127.0.0.1:$R2_PORT max_fails=3 fail_timeout=10s;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:$LB_PORT;
    client_max_body_size 2m;
    location / {
      proxy_pass http://coopgate;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host:\$server_port;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
      proxy_next_upstream error timeout http_503;
    }
  }
}
NGX
nginx -c "$DIR/nginx/nginx.conf" -p "$DIR/nginx" >"$DIR/nginx/stderr.log" 2>&1 &
PIDS+=($!)

# Ready when every part answers: the origin (which writes its sample dataset
# on a first start), the simulator, each replica, and the balancer.
for _ in $(seq 600); do
  ok=1
  for url in "http://127.0.0.1:$ORIGIN_PORT/api/v1/regions" "http://127.0.0.1:$SIM_PORT/_sim/clock" \
    "http://127.0.0.1:$R1_PORT/readyz" "http://127.0.0.1:$R2_PORT/readyz" "http://127.0.0.1:$LB_PORT/healthz"; do
    "$COOPGATE" health --url "$url" >/dev/null 2>&1 || { ok=0; break; }
  done
  [ $ok = 1 ] && break
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || fail "a process ended early; see the logs in $DIR"; done
  sleep 0.2
done
[ $ok = 1 ] || fail "the cluster did not become ready; see the logs in $DIR"

cat <<TXT
coopgate cluster ready
  balancer   http://127.0.0.1:$LB_PORT/   (nginx -> replicas :$R1_PORT and :$R2_PORT)
  store      $STORE_URL
  redis      $REDIS_URL (prefix $CLUSTER_DB)
  stripe     http://127.0.0.1:$SIM_PORT/ (simulator; webhooks to the balancer)
  portal     http://127.0.0.1:$LB_PORT/portal (mail in $DIR/outbox.jsonl)
  logs       $DIR/*.log
  admin      set -a; . $DIR/env; set +a
             $COOPGATE accounts create --config $DIR/coopgate.toml --email you@example.org
             $COOPGATE keys create --config $DIR/coopgate.toml --account you@example.org --name try
  try        curl -i http://127.0.0.1:$LB_PORT/bulk/
Ctrl-C stops everything.
TXT
wait -n "${PIDS[@]}" || true
say "a process ended; see the logs in $DIR"
