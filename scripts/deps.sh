#!/usr/bin/env bash
# deps.sh -- makes sure the Debian packages needed to build and test kapi are
# installed. It installs only what is missing (as root) or prints the command
# to run (otherwise); it does not build anything. Quiet when nothing is missing.
#
#   scripts/deps.sh              build + test: compilers, libraries, cmocka, clang (fuzz)
#   scripts/deps.sh --bench      also wrk and nginx (tests/bench/)
#   scripts/deps.sh --sanitize   also what an ASan/UBSan build needs
#
# Exit status: 0 when everything is installed, 1 when something is missing and
# we are not root, 2 on a usage error.
set -euo pipefail

# libclang-rt-dev holds libFuzzer and clang's sanitizer runtimes; clang only
# recommends it, so --no-install-recommends would leave it out.
pkgs=(build-essential cmake pkg-config libmicrohttpd-dev libjansson-dev libjwt-dev liblmdb-dev
      libhttp-parser-dev libcurl4-openssl-dev libcmocka-dev clang libclang-rt-dev curl
      libgnutls28-dev libssl-dev openssl)
# libgnutls28-dev: HTTPS in tests/origin (kapi_test_origin); libssl-dev: the
# TLS server inside test_ucurl; openssl: certificates for integration tests.
nginx_pkgs=(nginx-light nginx nginx-core nginx-full nginx-extras) # any one will do; first is installed
bench=0

usage() { awk 'NR == 1 || /^# shellcheck/ { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "$0"; }

for arg in "$@"; do
    case $arg in
    --bench) bench=1 ;;
    # gcc's libasan and libubsan come with build-essential (libgcc-12-dev
    # depends on them), clang's with libclang-rt-dev above: nothing to add.
    --sanitize) ;;
    -h | --help) usage; exit 0 ;;
    *) echo "deps.sh: unknown argument '$arg'" >&2; usage >&2; exit 2 ;;
    esac
done

if ! command -v dpkg-query >/dev/null; then
    echo "deps.sh: not a Debian system; install the equivalents of: ${pkgs[*]}" >&2
    exit 0
fi

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

missing=()
for p in "${pkgs[@]}"; do
    installed "$p" || missing+=("$p")
done
if ((bench)); then
    installed wrk || missing+=(wrk)
    have_nginx=0
    for p in "${nginx_pkgs[@]}"; do
        installed "$p" && { have_nginx=1; break; }
    done
    ((have_nginx)) || missing+=("${nginx_pkgs[0]}")
fi

((${#missing[@]} == 0)) && exit 0

if ((EUID != 0)); then
    echo "deps.sh: missing packages; run:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)
apt-get "${apt_opts[@]}" update
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
