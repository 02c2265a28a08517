#!/usr/bin/env bash
# demo.sh — `make demo`: a local Redis, two cardgw nodes and the reference backend
# (examples/backend) on loopback, wired for the card-exchange app; prints what to open. Ctrl-C
# stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(mktemp -d /tmp/cardgw-demo.XXXXXX)
pids=()

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

rport=$(free_port)
(cd "$dir" && exec redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$dir/redis.log") &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

api_key=demo-api-key-not-secret
secret=demo-jwt-secret-of-at-least-32-bytes
ws=()
for n in 1 2; do
  port=${CARDGW_DEMO_PORT_BASE:-8080}
  port=$((port + n))
  cat >"$dir/node$n.conf" <<CONF
port = $port
node_id = demo-node-$n
redis_url = redis://127.0.0.1:$rport/0
api_key = $api_key
jwt_secret = $secret
rpc_reply_methods = card.request,card.accept
static_root = $PWD/build/demo
CONF
  build/cardgw --config "$dir/node$n.conf" >"$dir/node$n.log" 2>&1 &
  pids+=($!)
  ws+=(--ws "ws://127.0.0.1:$port/ws")
done
bport=${CARDGW_DEMO_BACKEND_PORT:-8000}
/usr/bin/python3 examples/backend/backend.py --port "$bport" --redis "redis://127.0.0.1:$rport/0" \
    --gateway "http://127.0.0.1:$((${CARDGW_DEMO_PORT_BASE:-8080} + 1))" --api-key "$api_key" \
    --jwt-secret "$secret" "${ws[@]}" --db "$dir/backend.sqlite" &
pids+=($!)
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$bport/healthz" >/dev/null 2>&1 && break; sleep 0.1
done
cat <<MSG

demo: Redis 127.0.0.1:$rport, nodes ws://127.0.0.1:$((${CARDGW_DEMO_PORT_BASE:-8080} + 1))/ws and ws://127.0.0.1:$((${CARDGW_DEMO_PORT_BASE:-8080} + 2))/ws, backend http://127.0.0.1:$bport
demo: open http://127.0.0.1:$((${CARDGW_DEMO_PORT_BASE:-8080} + 1))/?backend=http://127.0.0.1:$bport in one browser window and
      http://127.0.0.1:$((${CARDGW_DEMO_PORT_BASE:-8080} + 2))/?backend=http://127.0.0.1:$bport in another (each page is served by a
      node), log in as two users (e.g. alice and bob) in the same group: each sees the other in
      the directory with an online badge; "send my card" is an rpc the backend answers; the other
      accepts and both have each other's card. Close one window and send it a card: the backend
      records the notification it would send (curl 'http://127.0.0.1:$bport/notifications?uid=bob').
demo: logs in $dir; Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "demo: a process exited; stopping" >&2
