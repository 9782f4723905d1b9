# shellcheck shell=bash disable=SC2317,SC2034,SC2154,SC2094 # sourced: trap/indirect functions; variables shared with the caller; nginx appends its own log
# lib.sh -- shell code shared by the benchmarks in this directory (hello.sh,
# proxy.sh). Sourced, never run. The caller sets `me` (its name, for
# messages) before sourcing, then calls bench_setup once its options are read.
#
# The caller also sets conns and duration (wrk's -c and -d) and fills the
# arrays rps_of, p99_of and cpu_of that print_medians reads.
#
# Provides: die, usage, bench_setup (tools, CPU pinning, temp dir, cleanup
# trap), the /proc helpers (proc_stat, children, cpu_ticks), free_port,
# wait_ready, stop_server, nginx_start, measure (one wrk run), median and
# print_medians (the summary table with kapi/nginx ratios).
#
# State it sets: WRK, NGINX, clk_tck, server_pin (taskset -c 0), wrk_pin
# (taskset -c 1), tmp (temp dir, removed on exit), and the associative arrays
# pid and port, keyed by server name; every pid in `pid` is stopped on exit.

declare -A pid=() port=()

die() {
    echo "$me: $*" >&2
    exit 1
}

# Prints the caller's header comment (from line 2 to the first non-comment).
usage() { awk 'NR == 1 || /^# shellcheck/ { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

# ---- setup ------------------------------------------------------------------

# bench_setup: checks for wrk, curl and getconf; picks the CPU pinning; makes
# the temp dir and the cleanup trap. Uses the caller's conns and duration.
bench_setup() {
    local t
    WRK=${WRK:-wrk}
    NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
    for t in "$WRK" curl getconf; do
        command -v "$t" >/dev/null || die "$t not found (scripts/deps.sh --bench)"
    done
    clk_tck=$(getconf CLK_TCK)
    server_pin=() wrk_pin=()
    if command -v taskset >/dev/null && (($(nproc) >= 2)); then
        server_pin=(taskset -c 0) wrk_pin=(taskset -c 1)
    else
        echo "$me: warning: fewer than 2 CPUs or no taskset; running unpinned" >&2
    fi
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/kapi-bench.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

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

# Prints utime+stime, in clock ticks, of process $1 (all its threads, exited
# ones included) and of its children (an nginx master and its worker).
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

# wait_ready NAME PORT: waits until http://127.0.0.1:PORT/hello answers 200
# while server NAME (pid[NAME], log $tmp/NAME.log) stays up.
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

# nginx_start NAME PIN...: runs nginx as server NAME (one worker, access log
# off, client keep-alive without a request cap, prefix/pid/temp paths in
# $tmp/NAME, daemon off) under the command prefix PIN (e.g. taskset -c 0).
# Reads the rest of the http {} block (upstreams, the server) from stdin and
# replaces @PORT@ in it with the port it picked; waits until /hello answers 200.
nginx_start() {
    local s=$1 p dir=$tmp/$1 m temps="" body
    shift
    p=$(free_port)
    body=$(cat)
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
error_log $tmp/$s.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
$temps
${body//@PORT@/$p}
}
EOF
    "$NGINX" -t -q -p "$dir/" -c nginx.conf -e "$tmp/$s.log" >>"$tmp/$s.log" 2>&1 ||
        { cat "$tmp/$s.log" >&2; die "nginx rejected $dir/nginx.conf"; }
    "$@" "$NGINX" -p "$dir/" -c nginx.conf -e "$tmp/$s.log" >>"$tmp/$s.log" 2>&1 &
    pid[$s]=$! port[$s]=$p
    wait_ready "$s" "$p"
}

# ---- measuring --------------------------------------------------------------

# measure NAME URL CPU_PID: runs wrk (-t1 -c$conns -d$duration, pinned with
# wrk_pin) against URL and prints "req/s p99_us cpu_us_per_req", the CPU
# being CPU_PID's (and its children's). Server NAME must stay up. Non-2xx
# responses and socket errors are warned about, with wrk's own lines.
measure() {
    local s=$1 url=$2 cpu_pid=$3 out t0 t1 requests rps p99 bad
    t0=$(cpu_ticks "$cpu_pid")
    out=$("${wrk_pin[@]}" "$WRK" -t1 -c"$conns" -d"$duration" --latency "$url" 2>&1) ||
        { echo "$out" >&2; die "wrk failed against $s"; }
    t1=$(cpu_ticks "$cpu_pid")
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
    if ((bad != 0)); then
        echo "$me: warning: $s: $bad non-2xx responses or socket errors" >&2
        grep -E '^  (Non-2xx|Socket errors)| requests in ' <<<"$out" | sed "s/^ */$me:   /" >&2
    fi
    awk -v n="$requests" -v r="$rps" -v p="$p99" -v d="$((t1 - t0))" -v hz="$clk_tck" \
        'BEGIN { printf "%.0f %.0f %.2f\n", r, p, n ? d * 1e6 / hz / n : 0 }'
}

median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m }'
}

# print_medians ROUNDS WIDTH HEAD KEY:LABEL...: prints the medians of the
# lists in the arrays rps_of, p99_of and cpu_of (space-separated numbers)
# for each KEY, labelled LABEL in a first column WIDTH wide headed HEAD;
# then, when both kapi and nginx were measured, the kapi/nginx ratios.
print_medians() {
    local rounds=$1 w=$2 head=$3 kv s a b c
    local -A med=()
    shift 3
    echo
    echo "median of $rounds rounds:"
    printf "%-${w}s %12s %10s %12s\n" "$head" req/s p99 "CPU µs/req"
    for kv in "$@"; do
        s=${kv%%:*}
        # shellcheck disable=SC2086 # the lists are space-separated numbers
        med[$s]="$(median ${rps_of[$s]}) $(median ${p99_of[$s]}) $(median ${cpu_of[$s]})"
        read -r a b c <<<"${med[$s]}"
        awk -v f="%-${w}s %12.0f %8.0fus %12.2f\n" -v s="${kv#*:}" -v a="$a" -v b="$b" -v c="$c" \
            'BEGIN { printf f, s, a, b, c }'
    done
    if [[ -n ${med[kapi]:-} && -n ${med[nginx]:-} ]]; then
        awk -v f="%-${w}s %12s %10s %12s\n" -v k="${med[kapi]}" -v n="${med[nginx]}" 'BEGIN {
            split(k, a, " "); split(n, b, " ")
            for (i = 1; i <= 3; i++) x[i] = b[i] ? sprintf("%.2fx", a[i] / b[i]) : "n/a"
            printf f, "kapi/nginx", x[1], x[2], x[3] }'
    fi
}
