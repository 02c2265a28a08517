#!/bin/bash
# plot.sh — draws bench/latency-vs-load.png (p50/p99 latency against delivered messages/s) from
# the latest fanout, crossnode and peers JSON in bench/out/, with gnuplot (Debian gnuplot-nox).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
command -v gnuplot >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends gnuplot-nox >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$here/out" "$tmp" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
def rows(name):
    try:
        with open(os.path.join(src, name + ".json")) as f:
            return json.load(f)
    except OSError:
        return []
series = {}
for r in rows("fanout"):
    series.setdefault("cardgw " + r["shape"], []).append(r)
for r in rows("crossnode"):
    series.setdefault("cardgw cross-node 100x100", []).append(r)
with open(os.path.join(dst, "index"), "w") as idx:
    for i, (name, rs) in enumerate(series.items()):
        with open(os.path.join(dst, "s%d.dat" % i), "w") as f:
            for r in sorted(rs, key=lambda r: r["delivered_per_s"]):
                f.write("%f %f %f\n" % (r["delivered_per_s"], r["p50_ms"], r["p99_ms"]))
        idx.write("%d\t%s\n" % (i, name))
PY
plots=()
while IFS=$'\t' read -r i name; do
    plots+=("'$tmp/s$i.dat' using 1:3 with linespoints lw 2 title '$name p99'")
    plots+=("'$tmp/s$i.dat' using 1:2 with linespoints dt 2 title '$name p50'")
done < "$tmp/index"
[ ${#plots[@]} -gt 0 ] || { echo "plot.sh: no results in $here/out" >&2; exit 1; }
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
gnuplot <<GP
set terminal pngcairo size 1000,620 font ",10"
set output '$here/latency-vs-load.png'
set title "cardgw end-to-end latency vs load ($(nproc) x $model, 200-byte publications)"
set xlabel "delivered messages per second"
set ylabel "latency (ms, log scale)"
set logscale y
set logscale x
set grid
set key top left
set arrow from graph 0, first 50 to graph 1, first 50 nohead dt 3 lc rgb "red"
set label "50 ms" at graph 0.01, first 60 tc rgb "red"
plot $(IFS=,; echo "${plots[*]}")
GP
echo "wrote $here/latency-vs-load.png"
