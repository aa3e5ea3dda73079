#!/usr/bin/env bash
# Proxy benchmark (`make bench`): authenticated req/s through the proxy against direct
# (ApacheBench), MB/s and proxy CPU-s/GiB through a CONNECT tunnel against direct (curl),
# and RSS per idle tunnel. Everything runs on loopback against a private nginx origin;
# the ratios come from one run and are noisy on a shared 2-core box.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
N=${BENCH_REQUESTS:-20000}
C=${BENCH_CONCURRENCY:-50}
BIG_MB=${BENCH_BIG_MB:-1024}
IDLE=${BENCH_IDLE_TUNNELS:-1000}
for tool in ab curl nginx; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool (apt-get install -y apache2-utils curl nginx)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/goproxy-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NGINX_PORT=$(free_port)
PROXY_PORT=$(free_port)

# Origin: nginx serving a 1 KiB file and a sparse BIG_MB file.
mkdir -p "$WORK/www" "$WORK/nginx"
chmod 755 "$WORK" "$WORK/www"  # nginx workers run unprivileged
head -c 1024 /dev/zero | tr '\0' 'a' > "$WORK/www/small"
truncate -s "${BIG_MB}M" "$WORK/www/big"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  client_header_timeout 600s;
  server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; sendfile on; }
}
CONF
nginx -c "$WORK/nginx.conf"

# Databases and one user with a credential.
export DJANGO_SETTINGS_MODULE=goproxy_site.settings.local
export ACCOUNTS_DATABASE_URL="sqlite:///$WORK/accounts.sqlite3"
export PLANS_DATABASE_URL="sqlite:///$WORK/plans.sqlite3"
export PROXY_ALLOW_PRIVATE_DESTINATIONS=1
export PROXY_ALLOWED_CONNECT_PORTS="$NGINX_PORT"
export PROXY_AUTH_CACHE_TTL=60
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

"$PY" manage.py runproxy --host 127.0.0.1 --port "$PROXY_PORT" > "$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
for _ in $(seq 100); do grep -q "listening on" "$WORK/proxy.log" && break; sleep 0.1; done
grep -q "listening on" "$WORK/proxy.log" || { cat "$WORK/proxy.log"; exit 1; }

SMALL="http://127.0.0.1:$NGINX_PORT/small"
BIG="http://127.0.0.1:$NGINX_PORT/big"

ab_rps() {  # prints req/s; fails on any failed or non-2xx request
  local out
  out=$(ab -q -s 10 -n "$N" -c "$C" "$@" 2>&1)
  local failed non2xx
  failed=$(awk '/^Failed requests/ {print $3}' <<<"$out")
  non2xx=$(awk '/^Non-2xx responses/ {print $3}' <<<"$out")
  if [ "${failed:-1}" != 0 ] || [ -n "$non2xx" ]; then echo "ab failed: $out" >&2; exit 1; fi
  awk '/^Requests per second/ {print $4}' <<<"$out"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PROXY_PID/stat"; }
HZ=$(getconf CLK_TCK)

ab -q -n 1000 -c 10 -k -X "127.0.0.1:$PROXY_PORT" -P "$LOGIN:$SECRET" "$SMALL" >/dev/null  # warm-up
DIRECT_K=$(ab_rps -k "$SMALL")
PROXY_K=$(ab_rps -k -X "127.0.0.1:$PROXY_PORT" -P "$LOGIN:$SECRET" "$SMALL")
DIRECT=$(ab_rps "$SMALL")
PROXY=$(ab_rps -X "127.0.0.1:$PROXY_PORT" -P "$LOGIN:$SECRET" "$SMALL")

curl -s -o /dev/null "$BIG"  # warm the page cache
DIRECT_MB=$(curl -s -o /dev/null -w '%{speed_download}' "$BIG")
T0=$(cpu_ticks)
read -r TUNNEL_SPEED TUNNEL_SIZE < <(curl -s -o /dev/null -w '%{speed_download} %{size_download}\n' -p -x "http://127.0.0.1:$PROXY_PORT" -U "$LOGIN:$SECRET" "$BIG")
T1=$(cpu_ticks)
read -r HTTP_SPEED HTTP_SIZE < <(curl -s -o /dev/null -w '%{speed_download} %{size_download}\n' -x "http://127.0.0.1:$PROXY_PORT" -U "$LOGIN:$SECRET" "$BIG")
T2=$(cpu_ticks)
EXPECTED=$((BIG_MB * 1024 * 1024))
[ "$TUNNEL_SIZE" = "$EXPECTED" ] && [ "$HTTP_SIZE" = "$EXPECTED" ] || { echo "short download" >&2; exit 1; }

IDLE_LINE=$(python3 bench/idle_tunnels.py "$PROXY_PORT" "$PROXY_PID" "$NGINX_PORT" "$LOGIN" "$SECRET" "$IDLE")

"$PY" - "$DIRECT_K" "$PROXY_K" "$DIRECT" "$PROXY" "$DIRECT_MB" "$TUNNEL_SPEED" "$HTTP_SPEED" \
  "$((T1 - T0))" "$((T2 - T1))" "$HZ" "$BIG_MB" "$N" "$C" <<'PYEOF'
import sys
dk, pk, d, p, dmb, tmb, hmb, tt, ht, hz, big, n, c = sys.argv[1:]
dk, pk, d, p, dmb, tmb, hmb = map(float, (dk, pk, d, p, dmb, tmb, hmb))
gib = int(big) / 1024
print(f"ab -n {n} -c {c}, 1 KiB body, Basic auth on every request through the proxy")
print(f"  keep-alive (-k): direct {dk:9.0f} req/s   proxy {pk:9.0f} req/s   ratio {pk / dk:.2f}")
print(f"  new connection : direct {d:9.0f} req/s   proxy {p:9.0f} req/s   ratio {p / d:.2f}")
print(f"curl, {big} MiB download")
print(f"  CONNECT tunnel : direct {dmb / 1e6:7.0f} MB/s   proxy {tmb / 1e6:7.0f} MB/s   ratio {tmb / dmb:.2f}   proxy CPU {int(tt) / int(hz) / gib:.2f} s/GiB")
print(f"  plain HTTP     : direct {dmb / 1e6:7.0f} MB/s   proxy {hmb / 1e6:7.0f} MB/s   ratio {hmb / dmb:.2f}   proxy CPU {int(ht) / int(hz) / gib:.2f} s/GiB")
PYEOF
echo "$IDLE_LINE"
