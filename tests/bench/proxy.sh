#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run indirectly ("start_$s")
# proxy.sh -- benchmarks `GET /hello` proxied through kapi (route -> upstream
# with keep-alive) and through nginx (proxy_pass, upstream keepalive) to the
# same origin, plus the origin direct, in one run, on loopback, one worker
# each. It prints figures beside the peer; it never judges them (not ctest).
#
# Usage: tests/bench/proxy.sh [--build DIR] [--rounds N] [--duration 10s]
#                             [--connections 50] [--origin nginx|test-origin]
#                             [--kapi-only | --nginx-only]
#   --build DIR      kapi build tree (default: build): DIR/core/kapi, and
#                    DIR/tests/origin/kapi_test_origin for --origin test-origin
#   --origin KIND    the shared origin: nginx (default), a third nginx
#                    answering `return 200 "hello\n"`, or test-origin,
#                    kapi_test_origin's /hello (thread per connection)
#   env NGINX, WRK   binaries to use (default: nginx from PATH or /usr/sbin, wrk)
#
# Each proxy is pinned to CPU 0; the origin and wrk (-t1) share CPU 1, alike
# for both proxies. Every round measures origin direct, kapi -> origin, nginx
# -> origin. CPU per request is the proxy's own utime+stime (process and its
# children, from /proc/PID/stat) over the run divided by wrk's request count;
# on the direct row it is the origin's. Before measuring, each proxy must
# answer with the origin's body and X-Origin header (kapi also with Via).
# Exit status: 0 whatever the numbers, 1 on a setup failure, 2 on a usage error.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
rounds=3
duration=10s
conns=50
origin_kind=nginx
proxies=(kapi nginx)

me=proxy.sh
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$root/tests/bench/lib.sh"

while (($#)); do
    case $1 in
    --build) build=$(cd "${2:?--build needs a directory}" && pwd); shift ;;
    --rounds) rounds=${2:?}; shift ;;
    --duration) duration=${2:?}; shift ;;
    --connections) conns=${2:?}; shift ;;
    --origin) origin_kind=${2:?}; shift ;;
    --kapi-only) proxies=(kapi) ;;
    --nginx-only) proxies=(nginx) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "proxy.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "proxy.sh: --rounds wants a positive integer" >&2; exit 2; }
[[ $origin_kind == nginx || $origin_kind == test-origin ]] ||
    { echo "proxy.sh: --origin wants nginx or test-origin" >&2; exit 2; }

# ---- setup ------------------------------------------------------------------

KAPI=$build/core/kapi
ORIGIN=$build/tests/origin/kapi_test_origin
bench_setup
for s in "${proxies[@]}"; do
    case $s in
    kapi) [[ -x $KAPI ]] || die "$KAPI not built (make build, or pass --build DIR)" ;;
    nginx) [[ -x $NGINX ]] || die "nginx not found (scripts/deps.sh --bench)" ;;
    esac
done
case $origin_kind in
nginx) [[ -x $NGINX ]] || die "nginx not found (scripts/deps.sh --bench)" ;;
test-origin) [[ -x $ORIGIN ]] || die "$ORIGIN not built (make build, or pass --build DIR)" ;;
esac

# ---- servers ----------------------------------------------------------------

# The origin shares CPU 1 with wrk. Both kinds answer /hello with "hello\n"
# and `X-Origin: origin`, and count the connections they accept: nginx in
# /nginx_status (stub_status, when built in), kapi_test_origin in /stats.
start_origin() {
    local p status=""
    if [[ $origin_kind == nginx ]]; then
        "$NGINX" -V 2>&1 | grep -q -- --with-http_stub_status_module &&
            status="location = /nginx_status { stub_status; }"
        nginx_start origin "${wrk_pin[@]}" <<EOF
    server {
        listen 127.0.0.1:@PORT@;
        default_type text/plain;
        location = /hello { add_header X-Origin origin; return 200 "hello\\n"; }
        $status
    }
EOF
    else
        p=$(free_port)
        "${wrk_pin[@]}" "$ORIGIN" --listen "127.0.0.1:$p" --name origin --max-seconds 0 \
            --die-with-parent >"$tmp/origin.log" 2>&1 &
        pid[origin]=$! port[origin]=$p
        wait_ready origin "$p"
    fi
}

# Prints how many connections the origin has accepted so far (counting the
# one this asks on for nginx), or "-" when it cannot tell.
origin_accepts() {
    local out
    if [[ $origin_kind == nginx ]]; then
        out=$(curl -s --max-time 2 "http://127.0.0.1:${port[origin]}/nginx_status" || true)
        awk 'prev ~ /accepts/ { print $1; found = 1; exit } { prev = $0 }
             END { if (!found) print "-" }' <<<"$out"
    else
        out=$(curl -s --max-time 2 "http://127.0.0.1:${port[origin]}/stats" || true)
        [[ $out =~ \"connections\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo -
    fi
}

# The config format is core/config.c's; keep this in step with it. retries 0:
# a failed exchange shows up as a 5xx in wrk's output instead of being hidden
# by a retry (nginx, with one server, does not retry either).
start_kapi() {
    local p conf=$tmp/kapi.json
    p=$(free_port)
    mkdir -p "$tmp/kapi-data" "$tmp/kapi-modules"
    cat >"$conf" <<EOF
{
  "listen": ["127.0.0.1:$p"],
  "threads": 1,
  "log": { "level": "warn", "access": "off" },
  "data_dir": "$tmp/kapi-data",
  "module_dirs": ["$tmp/kapi-modules"],
  "upstreams": {
    "origin": {
      "targets": ["http://127.0.0.1:${port[origin]}"],
      "keepalive": 64,
      "retries": 0
    }
  },
  "routes": [
    { "name": "hello", "methods": ["GET"], "path": "/hello", "target": { "upstream": "origin" } }
  ]
}
EOF
    "$KAPI" check -c "$conf" >"$tmp/kapi.check" 2>&1 ||
        { cat "$conf" "$tmp/kapi.check" >&2; die "kapi check rejected the generated config above (see start_kapi)"; }
    "${server_pin[@]}" "$KAPI" run -c "$conf" >"$tmp/kapi.log" 2>&1 &
    pid[kapi]=$! port[kapi]=$p
    wait_ready kapi "$p"
}

start_nginx() {
    nginx_start nginx "${server_pin[@]}" <<EOF
    upstream origin {
        server 127.0.0.1:${port[origin]};
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:@PORT@;
        location = /hello {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

# check_proxied NAME: one GET /hello through server NAME must come back 200
# with the origin's body and X-Origin (and, from kapi, Via: 1.1 kapi).
check_proxied() {
    local s=$1 out head body
    out=$(curl -s -i --max-time 5 "http://127.0.0.1:${port[$s]}/hello" | tr -d '\r' || true)
    head=${out%%$'\n\n'*} body=${out#*$'\n\n'}
    if ! grep -q '^HTTP/1\.1 200' <<<"$head" || [[ $body != hello ]] ||
        ! grep -qi '^X-Origin: origin$' <<<"$head" ||
        { [[ $s == kapi ]] && ! grep -qiE '^Via: (.*, *)?1\.1 kapi$' <<<"$head"; }; then
        printf '%s\n' "$out" >&2
        die "$s did not proxy GET /hello to the origin (response above)"
    fi
}

start_origin
for s in "${proxies[@]}"; do "start_$s"; done
for s in "${proxies[@]}"; do check_proxied "$s"; done

servers=(origin "${proxies[@]}")
declare -A label=([origin]="origin direct" [kapi]="kapi->origin" [nginx]="nginx->origin")

echo "proxy.sh: GET /hello, wrk -t1 -c$conns -d$duration --latency, $rounds rounds," \
    "proxy on CPU 0, origin ($origin_kind) and wrk on CPU 1; $(nproc) CPUs, $(uname -r)"
for s in "${servers[@]}"; do
    "${wrk_pin[@]}" "$WRK" -t1 -c"$conns" -d1s "http://127.0.0.1:${port[$s]}/hello" >/dev/null 2>&1 || true # warm-up
done

declare -A rps_of p99_of cpu_of
printf '%-6s %-13s %12s %10s %12s %12s\n' round path req/s p99_us cpu_us/req origin_conns
for ((r = 1; r <= rounds; r++)); do
    for s in "${servers[@]}"; do
        a0=$(origin_accepts)
        m=$(measure "$s" "http://127.0.0.1:${port[$s]}/hello" "${pid[$s]}")
        a1=$(origin_accepts)
        kill -0 "${pid[origin]}" 2>/dev/null || { tail -n 20 "$tmp/origin.log" >&2; die "the origin died during the run"; }
        read -r rps p99 cpu <<<"$m"
        # New connections the origin accepted during the run (nginx's status
        # request itself is one of them).
        oc=-
        if [[ $a0 != - && $a1 != - ]]; then
            oc=$((a1 - a0))
            [[ $origin_kind == nginx ]] && oc=$((oc - 1))
        fi
        rps_of[$s]+="$rps " p99_of[$s]+="$p99 " cpu_of[$s]+="$cpu "
        printf '%-6s %-13s %12s %10s %12s %12s\n' "$r" "${label[$s]}" "$rps" "$p99" "$cpu" "$oc"
    done
done

labels=()
for s in "${servers[@]}"; do labels+=("$s:${label[$s]}"); done
print_medians "$rounds" 13 path "${labels[@]}"

# Anything a proxy logged at warn or above is worth seeing next to the numbers.
for s in "${proxies[@]}"; do
    if [[ -s $tmp/$s.log ]]; then
        echo "proxy.sh: $s logged (last 20 lines):" >&2
        tail -n 20 "$tmp/$s.log" >&2
    fi
done
exit 0
