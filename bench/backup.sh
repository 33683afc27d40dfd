#!/usr/bin/env bash
# Benchmark `mailvault backup` on a lab spool of >= 200 users, beside restic
# backing up the same spool in the same run (the peer a user would pick):
#   mailvault, local spool source:    first full backup (gzip), then a no-change rerun
#   mailvault via `mailvault agent`:  first full backup (gzip), then a no-change rerun
#   restic (repository v2, compression auto): first backup, then a no-change rerun
# reporting wall time, users/s, MB/s, what each run read, and ratios.
#
# usage (as root): bench/backup.sh [LAB_DIR]
#   LAB_DIR defaults to /tmp/perflab/cyrus. A lab already running there is
#   reused; otherwise one is started (scripts/lab/start.sh, ports PORT_BASE+)
#   and populated once (USERS users, 1+FOLDERS folders of MSGS messages each;
#   LAB_JOBS users in parallel). Stop it afterwards with scripts/lab/stop.sh.
# env: USERS=200 FOLDERS=4 MSGS=20 PORT_BASE=27000 LAB_JOBS=16
#      JOBS=2 (mailvault backup --jobs), GZIP_LEVEL=6 (store.gzip_level),
#      BENCH_KEEP=1 keeps the work directory,
#      MAILVAULT_BIN overrides the binary (default: a fresh target/release build).
#
# Every tool reads a warm page cache (the spool is read once before timing),
# and the runs follow each other, never overlap: on a shared machine, compare
# the ratios, which hold better than the absolute figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lab=${1:-/tmp/perflab/cyrus}
users_wanted=${USERS:-200} folders=${FOLDERS:-4} msgs=${MSGS:-20}
port_base=${PORT_BASE:-27000} lab_jobs=${LAB_JOBS:-16} jobs=${JOBS:-2} gzip_level=${GZIP_LEVEL:-6}
say() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
command -v restic >/dev/null || { say "installing restic"; apt-get install -y restic >/dev/null; }

# ---- the lab -------------------------------------------------------------
scripts/lab/start.sh "$lab" "$port_base"
# shellcheck disable=SC1091
. "$lab/lab.env"
marker=$lab/bench-populated
if [[ ! -f $marker ]]; then
  say "populating $users_wanted users x $((folders + 1)) folders x $msgs messages ($lab_jobs at a time)"
  python3 scripts/lab/lab.py populate --env "$lab/lab.env" --users "$users_wanted" \
    --folders "$folders" --msgs "$msgs" --jobs "$lab_jobs"
  echo "$users_wanted $folders $msgs" >"$marker"
fi
spool=$(sed -n 's/^partition-default: *//p' "$IMAPD_CONF")

# ---- the binary ----------------------------------------------------------
if [[ -z ${MAILVAULT_BIN:-} ]]; then
  say "building --release"
  cargo build --release --quiet --bin mailvault
  bin=$root/target/release/mailvault
else
  bin=$MAILVAULT_BIN
fi

work=$(mktemp -d /tmp/mailvault-bench.XXXXXX)
chmod 755 "$work"
agent=
cleanup() {
  [[ -n $agent ]] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  if [[ -n ${BENCH_KEEP:-} ]]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
io_of() { python3 bench/io_of.py "$@"; }

say "warming the page cache (every file of the spool read once)"
find "$spool" -type f -print0 | xargs -0 cat >/dev/null
spool_files=$(find "$spool" -type f | wc -l)
spool_bytes=$(find "$spool" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
msg_bytes=$(find "$spool" -type f -name '*.' -regex '.*/[0-9]+\.$' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- mailvault, local spool ----------------------------------------------
mv_config() { # FILE STORE_ROOT SOURCE_LINE
  cat >"$1" <<TOML
[store]
root = "$2"
compression = "gzip"
gzip_level = $gzip_level
[state]
database = "$2/.state.sqlite3"
[[servers]]
slot = "$SERVERNAME"
raidset = "bench"
$3
TOML
}
mv_backup() { # NAME CONFIG
  io_of "$work/$1.io" "$bin" backup --config "$2" --all --json --jobs "$jobs" >"$work/$1.json"
}
mv_config "$work/local.toml" "$work/store-local" "local_spool = \"$IMAPD_CONF\""
say "mailvault local: first backup"
mv_backup local-full "$work/local.toml"
say "mailvault local: no-change rerun"
mv_backup local-nochange "$work/local.toml"

# ---- mailvault via the agent ---------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=mailvault=info setpriv --reuid=cyrus --regid=mail --init-groups "$bin" agent \
  --imapd-conf "$IMAPD_CONF" --listen "127.0.0.1:$port" 2>"$work/agent.log" &
agent=$!
mv_config "$work/agent.toml" "$work/store-agent" "address = \"127.0.0.1:$port\""
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
  sleep 0.1
done
agent_io() { # rchar, read_bytes, CPU clock ticks (user + system)
  awk '/^rchar/ {r=$2} /^read_bytes/ {b=$2} END {printf "%s %s ", r, b}' "/proc/$agent/io"
  sed 's/.*) //' "/proc/$agent/stat" | awk '{print $12 + $13}'
}
agent_run() { # NAME
  local r0 b0 c0 r1 b1 c1 seen
  seen=$(grep -c "connection ended" "$work/agent.log" || true)
  read -r r0 b0 c0 < <(agent_io)
  mv_backup "$1" "$work/agent.toml"
  sleep 0.2 # the agent logs its counters when it sees the connection end
  read -r r1 b1 c1 < <(agent_io)
  python3 - "$work/$1.io" "$((r1 - r0))" "$((b1 - b0))" "$((c1 - c0))" "$(getconf CLK_TCK)" "$work/agent.log" "$seen" <<'PY'
import json, re, sys
path, rchar, read_bytes, ticks, hz, log, seen = sys.argv[1:]
d = json.load(open(path))
d["cyrus_rchar"], d["cyrus_read_bytes"] = int(rchar), int(read_bytes)
d["agent_cpu"] = int(ticks) / int(hz)
# Every connection of this run (one per --jobs thread) logged its counters.
ended = [re.sub(r"\x1b\[[0-9;]*m", "", l) for l in open(log) if "connection ended" in l]
ended = ended[int(seen):]
for k in ("files_opened", "message_files_opened", "bytes_read"):
    d["agent_" + k] = sum(int(m.group(1)) for l in ended for m in [re.search(k + r"=(\d+)", l)] if m)
json.dump(d, open(path, "w"))
PY
}
say "mailvault via agent: first backup"
agent_run agent-full
say "mailvault via agent: no-change rerun"
agent_run agent-nochange
kill "$agent" && wait "$agent" 2>/dev/null || true
agent=

# ---- restic ----------------------------------------------------------------
export RESTIC_REPOSITORY=$work/restic RESTIC_PASSWORD_FILE=$work/restic.pass RESTIC_CACHE_DIR=$work/restic-cache
echo bench-password >"$RESTIC_PASSWORD_FILE"
restic init --repository-version 2 >/dev/null
say "restic: first backup"
io_of "$work/restic-full.io" restic backup --json --quiet "$spool" >"$work/restic-full.json"
say "restic: no-change rerun"
io_of "$work/restic-nochange.io" restic backup --json --quiet "$spool" >"$work/restic-nochange.json"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

du_b() { du -sb "$1" | cut -f1; }
python3 bench/backup_table.py "$work" "$spool_files" "$spool_bytes" "$msg_bytes" \
  "$(du_b "$work/store-local")" "$(du_b "$work/store-agent")" "$(du_b "$work/restic")" \
  "$load_before" "$load_after" "$jobs" "$(nproc)" "$gzip_level"
