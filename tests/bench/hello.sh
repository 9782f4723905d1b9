#!/usr/bin/env bash
# shellcheck disable=SC2317,SC2094 # functions run from traps/indirectly; nginx appends its own log
# hello.sh -- benchmarks kapi's `GET /hello` function route against nginx's
# `return 200 "hello, world\n"` in the same run, on loopback, one worker each.
# It prints figures beside the peer; it never judges them (not part of ctest).
#
# Usage: tests/bench/hello.sh [--build DIR] [--rounds N] [--duration 10s]
#                             [--connections 50] [--kapi-only | --nginx-only]
#   --build DIR      kapi build tree (default: build): DIR/core/kapi, DIR/modules
#   env NGINX, WRK   binaries to use (default: nginx from PATH or /usr/sbin, wrk)
#
# Each server is pinned to CPU 0, wrk (-t1) to CPU 1; rounds alternate between
# the servers. CPU per request is the server's utime+stime (process and its
# children, from /proc/PID/stat) over the run divided by wrk's request count.
# Exit status: 0 whatever the numbers, 1 on a setup failure, 2 on a usage error.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
rounds=3
duration=10s
conns=50
servers=(kapi nginx)

me=hello.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$root/tests/bench/lib.sh"

while (($#)); do
    case $1 in
    --build) build=$(cd "${2:?--build needs a directory}" && pwd); shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --duration) duration=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --kapi-only) servers=(kapi) ;;
    --nginx-only) servers=(nginx) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "hello.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "hello.sh: --rounds wants a positive integer" >&2; exit 2; }

# ---- setup ------------------------------------------------------------------

KAPI=$build/core/kapi
bench_setup
for s in "${servers[@]}"; do
    case $s in
    kapi) [[ -x $KAPI ]] || die "$KAPI not built (make build, or pass --build DIR)" ;;
    nginx) [[ -x $NGINX ]] || die "nginx not found (scripts/deps.sh --bench)" ;;
    esac
done

# ---- servers ----------------------------------------------------------------

# The config format is core/config.c's; keep this in step with it.
start_kapi() {
    local p conf=$tmp/kapi.json
    p=$(free_port)
    mkdir -p "$tmp/kapi-data"
    cat >"$conf" <<EOF
{
  "listen": ["127.0.0.1:$p"],
  "threads": 1,
  "log": { "level": "warn", "access": "off" },
  "data_dir": "$tmp/kapi-data",
  "module_dirs": ["$build/modules"],
  "routes": [
    { "name": "hello", "methods": ["GET"], "path": "/hello", "target": { "function": "hello" } }
  ]
}
EOF
    "$KAPI" check -c "$conf" >"$tmp/kapi.log" 2>&1 ||
        { cat "$conf" "$tmp/kapi.log" >&2; die "kapi check rejected the generated config above (see start_kapi)"; }
    "${server_pin[@]}" "$KAPI" run -c "$conf" >>"$tmp/kapi.log" 2>&1 &
    pid[kapi]=$! port[kapi]=$p
    wait_ready kapi "$p"
}

start_nginx() {
    nginx_start nginx "${server_pin[@]}" <<'EOF'
    server {
        listen 127.0.0.1:@PORT@;
        default_type text/plain;
        location = /hello { return 200 "hello, world\n"; }
    }
EOF
}

for s in "${servers[@]}"; do "start_$s"; done

echo "hello.sh: GET /hello, wrk -t1 -c$conns -d$duration --latency, $rounds rounds," \
    "server on CPU 0, wrk on CPU 1; $(nproc) CPUs, $(uname -r)"
for s in "${servers[@]}"; do
    "${wrk_pin[@]}" "$WRK" -t1 -c"$conns" -d1s "http://127.0.0.1:${port[$s]}/hello" >/dev/null 2>&1 || true # warm-up
done

declare -A rps_of p99_of cpu_of
printf '%-6s %-6s %12s %10s %12s\n' round server req/s p99_us cpu_us/req
for ((r = 1; r <= rounds; r++)); do
    for s in "${servers[@]}"; do
        m=$(measure "$s" "http://127.0.0.1:${port[$s]}/hello" "${pid[$s]}")
        read -r rps p99 cpu <<<"$m"
        rps_of[$s]+="$rps " p99_of[$s]+="$p99 " cpu_of[$s]+="$cpu "
        printf '%-6s %-6s %12s %10s %12s\n' "$r" "$s" "$rps" "$p99" "$cpu"
    done
done

labels=()
for s in "${servers[@]}"; do labels+=("$s:$s"); done
print_medians "$rounds" 11 server "${labels[@]}"
exit 0
