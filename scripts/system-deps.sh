#!/usr/bin/env bash
# The Debian packages a target needs, installed when missing and we are root (CI, these
# machines); otherwise the missing ones are named and we stop.
#   scripts/system-deps.sh          make test: chromium (browser tests), redis-server and
#                                   postgresql (the cluster and store tests start their own
#                                   servers on free ports)
#   scripts/system-deps.sh bench    make bench: wrk (REST under load, bench/rest.py), Go with
#                                   gorilla/websocket and go-sqlite3 (bench/goexpert)
set -euo pipefail
target=${1:-test}
missing=()
if [ "$target" = bench ]; then
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v go >/dev/null 2>&1 || missing+=(golang-go)
  for pkg in golang-github-gorilla-websocket-dev golang-github-mattn-go-sqlite3-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
else
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "make $target needs these Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
