#!/bin/bash
# script-cost.sh — Redis CPU per publish of scripts/publish.lua against the same script at a git
# revision (default HEAD): redis-benchmark EVALSHA, pipelined, alternating, on a private Redis.
# The arguments are the node's (no offline stream, relay timestamps on: ARGV[7..9] = 0 0 1).
# Usage: bench/script-cost.sh [REV] [ROUNDS]   (make bench-script BENCH_ARGS="REV ROUNDS")
set -euo pipefail
rev=${1:-HEAD}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
git -C "$root" show "$rev:scripts/publish.lua" >"$tmp/old.lua"
cp "$root/scripts/publish.lua" "$tmp/new.lua"
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --logfile "$tmp/log" &
rp=$!
trap 'kill $rp 2>/dev/null; wait $rp 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
hz=$(getconf CLK_TCK)
n=200000
cpu() { awk '{print $14 + $15}' "/proc/$rp/stat"; }
echo "machine: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $n publishes per run, 8 clients, pipeline 16"
for r in $(seq "$rounds"); do
    for v in old new; do
        sha=$(redis-cli -p "$port" script load "$(cat "$tmp/$v.lua")")
        redis-cli -p "$port" flushall >/dev/null
        a=$(cpu)
        t0=$(date +%s.%N)
        redis-benchmark -p "$port" -n $n -c 8 -P 16 -q evalsha "$sha" 3 m x c \
            '{"card":"updated","uid":"u7"}' j '' 100 600 604800 0 0 1 >/dev/null 2>&1
        t1=$(date +%s.%N)
        b=$(cpu)
        awk -v v="$v" -v rev="$rev" -v r="$r" -v a="$a" -v b="$b" -v hz="$hz" -v n=$n -v t="$t0 $t1" \
            'BEGIN { split(t, x, " "); printf "%s%s round %d: %.1f us Redis CPU per publish, %.0f publishes/s\n", v, (v == "old" ? " (" rev ")" : " (working tree)"), r, (b - a) * 1e6 / hz / n, n / (x[2] - x[1]) }'
    done
done
