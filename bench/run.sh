#!/usr/bin/env bash
# `make bench`: every scenario side by side in one run on loopback against one nginx
# origin — direct, goproxy, squid, tinyproxy, proxy.py (bench/peers.py) — then the event
# pipeline (bench/pipeline.py). The table goes to stdout and into bench/RESULTS.md.
# Numbers are noisy on a shared 2-core box where load generator, origin and proxy compete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIG_MB=${BENCH_BIG_MB:-1024}
SECONDS_PER_CASE=${BENCH_SECONDS:-5}
AB_REQUESTS=${BENCH_AB_REQUESTS:-10000}
REPEAT=${BENCH_REPEAT:-3}          # interleaved rounds of the small-request scenarios
IDLE=${BENCH_IDLE_TUNNELS:-9900}   # 2 fds per tunnel against a hard nofile limit of 20000
PEERS=${BENCH_PEERS:-squid,tinyproxy,proxy.py}
WORKERS=${BENCH_WORKERS:-2}        # also measure `runproxy --workers N` (0: skip)

# Tools: Debian packages when missing (root only), proxy.py from requirements/dev.txt.
need=()
for pair in ab:apache2-utils wrk:wrk curl:curl nginx:nginx squid:squid tinyproxy:tinyproxy openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    # Debian starts squid/tinyproxy/nginx services on install where it can; the bench runs its own.
  else
    echo "bench needs: ${need[*]} (apt-get install -y ${need[*]})" >&2; exit 1
  fi
fi
"$PY" -c 'import proxy' 2>/dev/null || "$PY" -m pip install -q "$(grep -i '^proxy.py==' requirements/dev.txt | cut -d' ' -f1)"

WORK=$(mktemp -d /tmp/goproxy-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do  # proxies drain first: wait for them (bounded)
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
PROXY_PORT=$(free_port)

# Origin: nginx serving a 1 KiB file, a sparse BIG_MB file, and an upload sink.
mkdir -p "$WORK/www" "$WORK/nginx"
chmod 755 "$WORK" "$WORK/www"  # nginx workers, squid and tinyproxy run unprivileged
head -c 1024 /dev/zero | tr '\0' 'a' > "$WORK/www/small"
truncate -s "${BIG_MB}M" "$WORK/www/big"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_header_timeout 600s;
  server {
    listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
    root $WORK/www; sendfile on; tcp_nopush on;
  }
}
CONF
nginx -c "$WORK/nginx.conf"
SINK_PORT=$(free_port)
"$PY" bench/sink.py "$SINK_PORT" & PIDS+=($!)
curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/big"  # page cache warm before anything is timed

# Databases and one user with a credential.
export DJANGO_SETTINGS_MODULE=goproxy_site.settings.local
export ACCOUNTS_DATABASE_URL="sqlite:///$WORK/accounts.sqlite3"
export PLANS_DATABASE_URL="sqlite:///$WORK/plans.sqlite3"
export PROXY_ALLOW_PRIVATE_DESTINATIONS=1
export PROXY_ALLOWED_CONNECT_PORTS="$NGINX_PORT,$SINK_PORT"
export PROXY_AUTH_CACHE_TTL=60
export PROXY_REPORTER=proxy_daemon.reporters.local.MemoryReporter  # exact metering, no broker needed
export PROXY_CONTROL_PLUGINS=
export PROXY_TUNNEL_IDLE_TIMEOUT=600
export LOG_LEVEL=WARNING
"$PY" manage.py migrate -v0 >/dev/null
"$PY" manage.py migrate -v0 --database=plans >/dev/null
CRED=$("$PY" manage.py shell -v0 -c "
from accounts.services import credential_issue, user_create
u = user_create(username='bench', email='bench@example.org')
c = credential_issue(user=u, login='bench-proxy')
print(c.credential.login + ':' + c.secret)" | tail -1)
LOGIN=${CRED%%:*}
SECRET=${CRED#*:}

STARTED=""
start_proxy() {  # port log [extra args]; sets STARTED (no subshell, so cleanup sees the pid)
  local port=$1 log=$2; shift 2
  "$PY" manage.py runproxy --host 127.0.0.1 --port "$port" "$@" > "$log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  grep -q "listening on" "$log" || { cat "$log" >&2; exit 1; }
}
start_proxy "$PROXY_PORT" "$WORK/proxy.log"
PROXY_PID=$STARTED
EXTRA=""
if [ "$WORKERS" -gt 1 ] && "$PY" manage.py runproxy --help 2>/dev/null | grep -q -- "--workers"; then
  MULTI_PORT=$(free_port)
  start_proxy "$MULTI_PORT" "$WORK/proxy-multi.log" --workers "$WORKERS"
  EXTRA="goproxy-${WORKERS}w=$MULTI_PORT:$STARTED"
fi

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -r); load generator, origin and proxies share the CPUs"
"$PY" bench/peers.py --origin-port "$NGINX_PORT" --sink-port "$SINK_PORT" --proxy-port "$PROXY_PORT" --proxy-pid "$PROXY_PID" \
  --login="$LOGIN" --secret="$SECRET" --work "$WORK" --big "$WORK/www/big" \
  --seconds "$SECONDS_PER_CASE" --ab-requests "$AB_REQUESTS" --repeat "$REPEAT" --idle "$IDLE" --peers "$PEERS" \
  --extra "$EXTRA"

if [ "${BENCH_PIPELINE:-1}" = 1 ]; then
  # The pipeline bench makes its own databases, broker and proxy: none of the above env.
  (unset $(env | grep -o '^PROXY_[A-Z_]*') ACCOUNTS_DATABASE_URL PLANS_DATABASE_URL DJANGO_SETTINGS_MODULE
   "$PY" bench/pipeline.py) | tee "$WORK/pipeline.out"
  "$PY" - "$WORK/pipeline.out" <<'PYEOF'
import sys, time
from pathlib import Path
results = Path("bench/RESULTS.md")
begin, end = "<!-- PIPELINE:BEGIN -->", "<!-- PIPELINE:END -->"
lines = [line.rstrip() for line in open(sys.argv[1]) if line.startswith("pipeline:")]
stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
block = f"{begin}\n_Last run: {stamp}_\n\n" + "\n".join(f"- {line}" for line in lines) + f"\n{end}"
text = results.read_text()
if begin in text and end in text:
    text = text.split(begin, 1)[0] + block + text.split(end, 1)[1]
else:
    text += "\n" + block + "\n"
results.write_text(text)
PYEOF
fi
