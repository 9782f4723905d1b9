#!/usr/bin/env bash
# smoke.sh -- ctest smoke test of kapi_test_origin: starts it on an
# ephemeral port, checks the listening line, /stats counters across
# keep-alive requests (what integration tests rely on), /echo's body digest,
# /chunked bytes, the idle keep-alive close and exit 0 on SIGTERM. It checks
# the origin only, never kapi.
#
# Usage: tests/origin/smoke.sh PATH/TO/kapi_test_origin
set -euo pipefail

bin=${1:?usage: smoke.sh PATH/TO/kapi_test_origin}
dir=$(mktemp -d "${TMPDIR:-/tmp}/origin-smoke-XXXXXX")
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
fail() {
    echo "smoke.sh: FAIL: $*" >&2
    exit 1
}
expect() { # expect WHAT GOT WANT
    [[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
}

"$bin" --keepalive-ms 300 --max-seconds 30 --name smoke >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$dir/out" && break
    sleep 0.05
done
line=$(head -n1 "$dir/out")
[[ $line =~ ^listening\ on\ http://127\.0\.0\.1:([0-9]+)$ ]] || fail "listening line: '$line'"
url=http://127.0.0.1:${BASH_REMATCH[1]}

expect "stats after reset" "$(curl -sS "$url/stats/reset")" '{"connections":0,"open":0,"requests":0}'
# Three requests on one keep-alive connection: one connection, three requests.
got=$(curl -sS "$url/hello" "$url/hello" "$url/status/201")
expect "keep-alive bodies" "$got" $'hello\nhello\nstatus 201'
expect "stats after keep-alive" "$(curl -sS "$url/stats")" '{"connections":1,"open":0,"requests":3}'
expect "X-Origin" "$(curl -sS -D - -o /dev/null "$url/hello" | tr -d '\r' | sed -n 's/^X-Origin: //p')" smoke

head -c 100000 /dev/urandom >"$dir/body"
want=$(sha256sum <"$dir/body" | cut -d' ' -f1)
got=$(curl -sS --data-binary @"$dir/body" -H 'Transfer-Encoding: chunked' "$url/echo")
[[ $got == *"\"body_len\":100000,\"body_sha256\":\"$want\""* ]] || fail "echo digest: $got"
cmp -s <(curl -sS "$url/body" --data-binary @"$dir/body") "$dir/body" || fail "/body echo"
cmp -s <(curl -sS "$url/chunked/100000") <(curl -sS "$url/big/100000") || fail "/chunked != /big"

# An idle keep-alive connection is closed by the origin after --keepalive-ms.
exec 3<>"/dev/tcp/127.0.0.1/${BASH_REMATCH[1]}"
printf 'GET /hello HTTP/1.1\r\nHost: x\r\n\r\n' >&3
start=$(date +%s%N)
timeout 5 cat <&3 >"$dir/idle" || fail "idle connection not closed within 5 s"
exec 3<&-
ms=$((($(date +%s%N) - start) / 1000000))
grep -q '^hello' "$dir/idle" || fail "idle connection: no answer"
((ms >= 250)) || fail "idle connection closed after $ms ms, before --keepalive-ms 300"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
expect "exit status on SIGTERM" "$status" 0
echo "smoke.sh: ok"
