# shellcheck shell=bash
# Helpers shared by the lab scripts. Source it.
CYRUS_BIN=${CYRUS_BIN:-/usr/lib/cyrus/bin}
die() { echo "$(basename "$0"): $*" >&2; exit 1; }
say() { echo "[lab $(date +%H:%M:%S)] $*" >&2; }
# Cyrus tools must run as the cyrus user so that what they create stays theirs.
as_cyrus() { setpriv --reuid=cyrus --regid=mail --init-groups -- "$@"; }
# wait_for_greeting PORT SECONDS PATTERN
wait_for_greeting() {
  local port=$1 until=$((SECONDS + $2)) line
  while ((SECONDS < until)); do
    line=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && IFS= read -r -t 2 l <&3 && printf '%s' "$l") 2>/dev/null || true)
    [[ $line == *"$3"* ]] && return 0
    sleep 0.2
  done
  return 1
}
master_running() {
  local pid
  [[ -s $1/master.pid ]] || return 1
  pid=$(<"$1/master.pid")
  [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$CYRUS_BIN/master" ]]
}
