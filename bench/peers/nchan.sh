#!/bin/bash
# nchan.sh — runs nginx + Nchan (Redis store) on loopback for the benchmarks, config from
# nchan.conf.in. Usage: nchan.sh PORT REDIS_PORT   (foreground; SIGTERM stops nginx)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -eq 2 ] || { echo "usage: $0 PORT REDIS_PORT" >&2; exit 2; }
if [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
        libnginx-mod-nchan >&2
fi
dir=$(mktemp -d /tmp/cardgw-nchan.XXXXXX)
sed -e "s|@PORT@|$1|g" -e "s|@REDIS_PORT@|$2|g" -e "s|@DIR@|$dir|g" "$here/nchan.conf.in" \
    > "$dir/nginx.conf"
nginx -p "$dir" -c "$dir/nginx.conf" &
pid=$!
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT TERM INT
wait "$pid" || true
