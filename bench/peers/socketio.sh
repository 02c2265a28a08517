#!/bin/bash
# socketio.sh — runs two Socket.IO 4.8 instances (Redis adapter) on loopback for the benchmarks.
# Usage: socketio.sh PORT_A PORT_B REDIS_PORT   (foreground; SIGTERM stops both instances)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 3 ] || { echo "usage: $0 PORT_A PORT_B REDIS_PORT" >&2; exit 2; }
if [ ! -d "$here/socketio/node_modules/socket.io" ]; then
    (cd "$here/socketio" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait || true; }
trap stop EXIT TERM INT
for port in "$1" "$2"; do
    (cd "$here/socketio" && NODE_ENV=production PORT=$port REDIS_URL="redis://127.0.0.1:$3" \
        exec node server.js) &
    pids+=($!)
done
wait -n || true
