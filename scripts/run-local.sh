#!/usr/bin/env bash
# run-local.sh — `make run`: starts a local redis-server on a free loopback port unless
# CARDGW_REDIS_URL is set, runs one node with config.example, stops both on Ctrl-C. Writes
# .run/env (CARDGW_REDIS_URL, CARDGW_API_KEY, CARDGW_HTTP, CARDGW_WS) once the node is ready, for
# a shell to source (README "Try it"); with no api_key configured it sets a local one.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CARDGW_CONFIG:-config.example}
redis_pid=""
dir=$(mktemp -d /tmp/cardgw-run.XXXXXX)

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cleanup() {
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
  rm -rf "$dir" .run/env
}
trap cleanup EXIT

if [ -z "${CARDGW_REDIS_URL:-}" ]; then
  rport=$(free_port)
  (cd "$dir" && exec redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --logfile "$dir/redis.log") &
  redis_pid=$!
  for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
  export CARDGW_REDIS_URL="redis://127.0.0.1:$rport/0"
  echo "run: started redis-server on 127.0.0.1:$rport (stopped with the node)"
fi

# the server API needs a key: a local one unless the config or the environment has one
if [ -z "$(build/cardgw --config "$CONFIG" --check-config | sed -n 's/^api_key = //p')" ]; then
  export CARDGW_API_KEY=local-dev-key-not-secret
  echo "run: api_key is empty: using CARDGW_API_KEY=local-dev-key-not-secret for this run"
fi
port=$(build/cardgw --config "$CONFIG" --check-config | sed -n 's/^port = //p')
addr=$(build/cardgw --config "$CONFIG" --check-config | sed -n 's/^listen_address = //p')
path=$(build/cardgw --config "$CONFIG" --check-config | sed -n 's/^ws_path = //p')
echo "run: WebSocket  ws://$addr:$port$path  (subprotocol cardgw.v1.json or cardgw.v1.msgpack)"
echo "run: health     http://$addr:$port/healthz   ready: http://$addr:$port/readyz   metrics: /metrics"
echo "run: Ctrl-C stops the node and the redis-server started here"
build/cardgw --config "$CONFIG" "$@" &
node_pid=$!
for _ in $(seq 100); do
  curl -fs "http://$addr:$port/readyz" >/dev/null 2>&1 && break
  kill -0 $node_pid 2>/dev/null || break
  sleep 0.1
done
key=${CARDGW_API_KEY:-}  # empty when the key is in the config file: --check-config hides it
mkdir -p .run
printf 'export CARDGW_REDIS_URL=%s\nexport CARDGW_API_KEY=%s\nexport CARDGW_HTTP=%s\nexport CARDGW_WS=%s\n' \
  "$CARDGW_REDIS_URL" "$key" "http://$addr:$port" "ws://$addr:$port$path" >.run/env.tmp
mv .run/env.tmp .run/env
echo "run: wrote .run/env (source it: . .run/env)"
trap 'kill -INT $node_pid 2>/dev/null' INT TERM
wait $node_pid || true
wait $node_pid 2>/dev/null || true
