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

usage() { awk 'NR == 1 || /^# shellcheck/ { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }
die() {
    echo "hello.sh: $*" >&2
    exit 1
}

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

# ---- tools ------------------------------------------------------------------

WRK=${WRK:-wrk}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
KAPI=$build/core/kapi
for t in "$WRK" curl getconf; do
    command -v "$t" >/dev/null || die "$t not found (scripts/deps.sh --bench)"
done
for s in "${servers[@]}"; do
    case $s in
    kapi) [[ -x $KAPI ]] || die "$KAPI not built (make build, or pass --build DIR)" ;;
    nginx) [[ -x $NGINX ]] || die "nginx not found (scripts/deps.sh --bench)" ;;
    esac
done

clk_tck=$(getconf CLK_TCK)
server_pin=() wrk_pin=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
    server_pin=(taskset -c 0) wrk_pin=(taskset -c 1)
else
    echo "hello.sh: warning: fewer than 2 CPUs or no taskset; running unpinned" >&2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kapi-bench.XXXXXX")
declare -A pid port

# Stops a server: SIGTERM, then SIGKILL to it and its children after 5 s.
stop_server() {
    local p=$1 kids i
    kill -0 "$p" 2>/dev/null || return 0
    kids=$(children "$p")
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    # shellcheck disable=SC2086 # word splitting of the pid list is wanted
    kill -KILL "$p" $kids 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local s
    for s in "${!pid[@]}"; do stop_server "${pid[$s]}"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- /proc helpers ----------------------------------------------------------

# Reads /proc/$1/stat into the array st, fields counted after "(comm)" (which
# may hold spaces): st[1] ppid, st[11] utime, st[12] stime. Fails when gone.
proc_stat() {
    local line
    read -r line 2>/dev/null <"/proc/$1/stat" || return 1
    read -r -a st <<<"${line##*) }"
}

# Prints the pids whose parent is $1.
children() {
    local f p
    for f in /proc/[0-9]*/stat; do
        p=${f#/proc/} p=${p%/stat}
        proc_stat "$p" && [[ ${st[1]} == "$1" ]] && echo "$p"
    done
    return 0
}

# Prints utime+stime, in clock ticks, of process $1 (all its threads) and of
# its children (an nginx master and its worker).
cpu_ticks() {
    local sum=0 p
    for p in "$1" $(children "$1"); do
        proc_stat "$p" && sum=$((sum + st[11] + st[12]))
    done
    echo "$sum"
}

# Prints a TCP port nobody on this host listens on or uses right now.
free_port() {
    local p hex i
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 40000))
        hex=$(printf ':%04X ' "$p")
        [[ " ${port[*]} " == *" $p "* ]] && continue
        grep -qs "$hex" /proc/net/tcp /proc/net/tcp6 || { echo "$p"; return 0; }
    done
    die "no free port found"
}

# ---- servers ----------------------------------------------------------------

# Waits until http://127.0.0.1:$2/hello answers 200 while server $1 stays up.
wait_ready() {
    local s=$1 i code
    for ((i = 0; i < 100; i++)); do
        kill -0 "${pid[$s]}" 2>/dev/null || { tail -n 20 "$tmp/$s.log" >&2; die "$s exited at startup"; }
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$2/hello" || true)
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$tmp/$s.log" >&2
    die "$s did not answer 200 on 127.0.0.1:$2/hello within 10 s (last: $code)"
}

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
    local p dir=$tmp/nginx m temps=""
    p=$(free_port)
    mkdir -p "$dir/tmp"
    # Compiled-in temp paths point at /var/lib/nginx; keep them in our prefix.
    for m in client_body proxy fastcgi uwsgi scgi; do
        [[ $m != client_body ]] && "$NGINX" -V 2>&1 | grep -q -- "--without-http_${m}_module" && continue
        temps+="    ${m}_temp_path tmp/$m;"$'\n'
    done
    cat >"$dir/nginx.conf" <<EOF
$( ((EUID == 0)) && echo "user root root;")
daemon off;
worker_processes 1;
pid nginx.pid;
error_log $tmp/nginx.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
$temps
    server {
        listen 127.0.0.1:$p;
        default_type text/plain;
        location = /hello { return 200 "hello, world\n"; }
    }
}
EOF
    "$NGINX" -t -q -p "$dir/" -c nginx.conf -e "$tmp/nginx.log" >>"$tmp/nginx.log" 2>&1 ||
        { cat "$tmp/nginx.log" >&2; die "nginx rejected $dir/nginx.conf"; }
    "${server_pin[@]}" "$NGINX" -p "$dir/" -c nginx.conf -e "$tmp/nginx.log" >>"$tmp/nginx.log" 2>&1 &
    pid[nginx]=$! port[nginx]=$p
    wait_ready nginx "$p"
}

# ---- measuring --------------------------------------------------------------

# Runs wrk against server $1 and prints "req/s p99_us cpu_us_per_req".
measure() {
    local s=$1 out t0 t1 requests rps p99 bad
    t0=$(cpu_ticks "${pid[$s]}")
    out=$("${wrk_pin[@]}" "$WRK" -t1 -c"$conns" -d"$duration" --latency \
        "http://127.0.0.1:${port[$s]}/hello" 2>&1) || { echo "$out" >&2; die "wrk failed against $s"; }
    t1=$(cpu_ticks "${pid[$s]}")
    kill -0 "${pid[$s]}" 2>/dev/null || { tail -n 20 "$tmp/$s.log" >&2; die "$s died during the run"; }
    read -r requests rps p99 bad < <(awk '
        function us(v) {
            if (v ~ /us$/) return v + 0; if (v ~ /ms$/) return v * 1000
            if (v ~ /m$/) return v * 60e6; if (v ~ /s$/) return v * 1e6; return v
        }
        / requests in /    { n = $1 }
        /^Requests\/sec:/  { r = $2 }
        /^ +99%/           { p = us($2) }
        /^  Non-2xx/       { bad += $NF }
        /^  Socket errors/ { gsub(/,/, ""); bad += $4 + $6 + $8 + $10 }
        END { printf "%d %s %s %d\n", n, r, p, bad }' <<<"$out")
    ((bad == 0)) || echo "hello.sh: warning: $s: $bad non-2xx responses or socket errors" >&2
    awk -v n="$requests" -v r="$rps" -v p="$p99" -v d="$((t1 - t0))" -v hz="$clk_tck" \
        'BEGIN { printf "%.0f %.0f %.2f\n", r, p, n ? d * 1e6 / hz / n : 0 }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
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
        m=$(measure "$s")
        read -r rps p99 cpu <<<"$m"
        rps_of[$s]+="$rps " p99_of[$s]+="$p99 " cpu_of[$s]+="$cpu "
        printf '%-6s %-6s %12s %10s %12s\n' "$r" "$s" "$rps" "$p99" "$cpu"
    done
done

echo
echo "median of $rounds rounds:"
printf '%-11s %12s %10s %12s\n' server req/s p99 "CPU µs/req"
declare -A med
for s in "${servers[@]}"; do
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    med[$s]="$(median ${rps_of[$s]}) $(median ${p99_of[$s]}) $(median ${cpu_of[$s]})"
    read -r a b c <<<"${med[$s]}"
    awk -v s="$s" -v a="$a" -v b="$b" -v c="$c" 'BEGIN { printf "%-11s %12.0f %8.0fus %12.2f\n", s, a, b, c }'
done
if [[ -n ${med[kapi]:-} && -n ${med[nginx]:-} ]]; then
    awk -v k="${med[kapi]}" -v n="${med[nginx]}" 'BEGIN {
        split(k, a, " "); split(n, b, " ")
        for (i = 1; i <= 3; i++) x[i] = b[i] ? sprintf("%.2fx", a[i] / b[i]) : "n/a"
        printf "%-11s %12s %10s %12s\n", "kapi/nginx", x[1], x[2], x[3] }'
fi
exit 0
