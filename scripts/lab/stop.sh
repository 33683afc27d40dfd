#!/usr/bin/env bash
# Stop the Cyrus started by start.sh in DIR (SIGTERM, then SIGKILL after 20 s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
[[ $# -eq 1 ]] || die "usage: stop.sh DIR"
master_running "$1" || { rm -f "$1/master.pid"; exit 0; }
pid=$(<"$1/master.pid")
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$pid" 2>/dev/null || true
pkill -KILL -f -- "-C $1/etc/imapd.conf" 2>/dev/null || true
rm -f "$1/master.pid"
say "stopped Cyrus in $1"
