#!/usr/bin/env bash
# Benchmark `mailvault agent` on a lab spool, beside plain tools reading the
# same files in the same run:
#   FMULTISTATUS (users/s, folders/s)  vs  stat(1) of every cyrus.header/index/annotations
#   FDATA (MB/s)                       vs  cat(1) of every message file to /dev/null
# Both sides run warm (the spool is read once before timing).
#
# usage (as root): bench/agent.sh [LAB_DIR] [ROUNDS]
#   LAB_DIR defaults to $MAILVAULT_LAB or /tmp/mailvault-lab/cyrus (a running,
#   populated lab: scripts/lab/start.sh + lab.py populate). The agent runs as
#   user cyrus. MAILVAULT_BIN overrides the binary (default target/debug).
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${1:-${MAILVAULT_LAB:-/tmp/mailvault-lab/cyrus}}
rounds=${2:-20}
bin=${MAILVAULT_BIN:-target/debug/mailvault}
[[ -f $lab/lab.env ]] || { echo "no lab at $lab (lab.env missing)" >&2; exit 1; }
[[ -x $bin ]] || cargo build --quiet
# shellcheck disable=SC1090,SC1091
. "$lab/lab.env"
spool=$(sed -n 's/^partition-default: *//p' "$IMAPD_CONF")
work=$(mktemp -d)
trap 'kill "$agent" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setpriv --reuid=cyrus --regid=mail --init-groups "$bin" agent --imapd-conf "$IMAPD_CONF" \
  --listen "127.0.0.1:$port" 2>"$work/agent.log" &
agent=$!
for _ in $(seq 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
  sleep 0.1
done
addr=127.0.0.1:$port

users=$(printf 'USERS %s\nQUIT\n' "$SERVERNAME" | python3 -c "
import socket,sys
s=socket.create_connection(('127.0.0.1',$port)); s.sendall(sys.stdin.buffer.read())
data=b''
while True:
    d=s.recv(65536)
    if not d: break
    data+=d
print(' '.join(l.split()[1] for l in data.decode().splitlines() if l.startswith('USER ')))")
# shellcheck disable=SC2086
python3 scripts/lab/lab.py dump --env "$lab/lab.env" $users | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(json.dumps({u:{f:[m['uid'] for m in v['messages']] for f,v in d[u]['folders'].items()} for u in d}))" >"$work/plan.json"

find "$spool" \( -name cyrus.header -o -name cyrus.index -o -name cyrus.annotations \) >"$work/meta.list"
find "$spool" -type f -name '*.' -regex '.*/[0-9]+\.$' >"$work/msgs.list"
xargs -a "$work/msgs.list" -d '\n' cat >/dev/null   # warm both sides alike

now() { date +%s.%N; }
# shellcheck disable=SC2086
read -r t_fm n_users n_folders < <(python3 bench/agent_client.py fmultistatus "$addr" "$SERVERNAME" "$rounds" $users)
t0=$(now)
for _ in $(seq "$rounds"); do xargs -a "$work/meta.list" -d '\n' stat >/dev/null; done
t_stat=$(echo "$(now) - $t0" | bc)

read -r t_fd n_msgs n_bytes < <(python3 bench/agent_client.py fdata "$addr" "$SERVERNAME" "$rounds" "$work/plan.json")
t0=$(now)
for _ in $(seq "$rounds"); do xargs -a "$work/msgs.list" -d '\n' cat >/dev/null; done
t_cat=$(echo "$(now) - $t0" | bc)
cat_bytes=$(( $(xargs -a "$work/msgs.list" -d '\n' cat | wc -c) * rounds ))

python3 - "$t_fm" "$n_users" "$n_folders" "$t_stat" "$t_fd" "$n_msgs" "$n_bytes" "$t_cat" "$cat_bytes" "$rounds" "$(wc -l <"$work/meta.list")" <<'PY'
import sys
t_fm, users, folders, t_stat, t_fd, msgs, nbytes, t_cat, cat_bytes, rounds, metas = sys.argv[1:]
t_fm, t_stat, t_fd, t_cat = map(float, (t_fm, t_stat, t_fd, t_cat))
users, folders, msgs, nbytes, cat_bytes, rounds, metas = map(int, (users, folders, msgs, nbytes, cat_bytes, rounds, metas))
mb = 1e6
print("rounds: %d; per round %d users, %d folders, %d messages, %.2f MB" % (rounds, users // rounds, folders // rounds, msgs // rounds, nbytes / rounds / mb))
print("FMULTISTATUS: %8.1f users/s  %8.1f folders/s   (%.3f s)" % (users / t_fm, folders / t_fm, t_fm))
print("stat peer:                      %8.1f folders/s   (%.3f s, %d files per round)" % (folders / t_stat, t_stat, metas))
print("  ratio agent/stat folders/s: %.2f" % ((folders / t_fm) / (folders / t_stat)))
print("FDATA:        %8.2f MB/s  %8.1f msgs/s   (%.3f s)" % (nbytes / t_fd / mb, msgs / t_fd, t_fd))
print("cat peer:     %8.2f MB/s                   (%.3f s, every message file incl. expunged)" % (cat_bytes / t_cat / mb, t_cat))
print("  ratio agent/cat MB/s: %.2f" % ((nbytes / t_fd) / (cat_bytes / t_cat)))
PY
