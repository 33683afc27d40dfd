#!/usr/bin/env bash
# Store benchmarks: (a) append throughput vs `tar -czf` on one core, (b) state
# size vs compressed data, (c) one message from a ~1 GiB store vs `tar -xzf`,
# (d) peak memory (VmHWM) for a small and a large store. Prints a table.
# Sizes: SMALL (messages, default 5000) and LARGE (default 40000, ~1 GiB).
# Built with the dev profile, whose dependencies (zlib-rs, sha1, sqlite) are
# optimised (Cargo.toml: profile.dev.package."*" opt-level 2).
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${SMALL:-5000}
LARGE=${LARGE:-40000}
BIN=$(cargo bench --profile dev --bench store_bench --no-run 2>&1 |
      grep -o 'target/[^)]*store_bench-[0-9a-f]*' | tail -1)
W=$(mktemp -d "${TMPDIR:-/tmp}/store-bench.XXXXXX")
trap 'rm -rf "$W"' EXIT
now() { date +%s.%N; }
one_core() { taskset -c 0 "$@"; }

"$BIN" corpus "$W/c-small" "$SMALL" 7
raw_small=$(du -sb "$W/c-small/files" | cut -f1)
read -r a_secs state_small data_small hwm_append_small < <(one_core "$BIN" append "$W/s-small" "$W/c-small" 20)
t0=$(now); one_core tar -czf "$W/peer.tar.gz" -C "$W/c-small" files; t1=$(now)
tar_secs=$(echo "$t1 - $t0" | bc -l)
peer_size=$(stat -c %s "$W/peer.tar.gz")

mkdir -p "$W/c-inc/files"
small_files=("$W"/c-small/files/*)   # no `ls | head`: SIGPIPE under pipefail
cp "${small_files[@]:0:200}" "$W/c-inc/files/"

"$BIN" corpus "$W/c-large" "$LARGE" 11
raw_large=$(du -sb "$W/c-large/files" | cut -f1)
rm -rf "$W/c-small"
read -r l_secs state_large data_large hwm_append_large < <(one_core "$BIN" append "$W/s-large" "$W/c-large" 20)
guid=$(ls "$W/c-large/files" | tail -1)
rm -rf "$W/c-large"
read -r r_secs hwm_read_large < <("$BIN" read "$W/s-large" "$guid")
guid_small=$(sqlite3 "$W/s-small/backupstate.sqlite3" "SELECT guid FROM files ORDER BY offset DESC LIMIT 1" 2>/dev/null ||
             python3 -c "import sqlite3,sys;print(sqlite3.connect(sys.argv[1]).execute('SELECT guid FROM files ORDER BY offset DESC LIMIT 1').fetchone()[0])" "$W/s-small/backupstate.sqlite3")
read -r _ hwm_read_small < <("$BIN" read "$W/s-small" "$guid_small")
read -r _ hwm_inc_small < <("$BIN" increment "$W/s-small" "$W/c-inc" 200)
read -r _ hwm_inc_large < <("$BIN" increment "$W/s-large" "$W/c-inc" 200)
mkdir "$W/x"
data=$(ls "$W"/s-large/backupdata-*)
t0=$(now); tar -xzf "$data" -C "$W/x" "files/$guid" 2>/dev/null || true; t1=$(now)
tarx_secs=$(echo "$t1 - $t0" | bc -l)
test "$(sha1sum "$W/x/files/$guid" | cut -c1-40)" = "$guid"

mb() { echo "scale=1; $1 / 1048576" | bc -l; }
printf '\n%-58s %s\n' "measure" "value"
printf '%-58s %s\n' "(a) corpus: messages / MiB" "$SMALL / $(mb "$raw_small")"
printf '%-58s %.1f MiB/s (%.2f s)\n' "(a) mailvault append, gzip level 6, 1 core" "$(echo "$raw_small / 1048576 / $a_secs" | bc -l)" "$a_secs"
printf '%-58s %.1f MiB/s (%.2f s)\n' "(a) tar -czf, same files, 1 core" "$(echo "$raw_small / 1048576 / $tar_secs" | bc -l)" "$tar_secs"
printf '%-58s %.2f\n' "(a) ratio mailvault / tar -czf (throughput)" "$(echo "$tar_secs / $a_secs" | bc -l)"
printf '%-58s %s / %s MiB\n' "(a) compressed size mailvault / tar -czf" "$(mb "$data_small")" "$(mb "$peer_size")"
printf '%-58s %s KiB = %.2f%% of %s MiB\n' "(b) backupstate.sqlite3, $SMALL msgs in 20 folders" "$((state_small / 1024))" "$(echo "100 * $state_small / $data_small" | bc -l)" "$(mb "$data_small")"
printf '%-58s %s MiB raw, %s MiB gz, %.2f%% state\n' "(c) large store ($LARGE msgs)" "$(mb "$raw_large")" "$(mb "$data_large")" "$(echo "100 * $state_large / $data_large" | bc -l)"
printf '%-58s %.4f s\n' "(c) mailvault: read the last message (open + inflate)" "$r_secs"
printf '%-58s %.2f s\n' "(c) tar -xzf data.tar.gz files/<sha1>, same message" "$tarx_secs"
printf '%-58s %s / %s\n' "(d) VmHWM KiB, append small / large" "$hwm_append_small" "$hwm_append_large"
printf '%-58s %s / %s\n' "(d) VmHWM KiB, read one message small / large" "$hwm_read_small" "$hwm_read_large"
printf '%-58s %s / %s\n' "(d) VmHWM KiB, a run of 200 new messages into small / large" "$hwm_inc_small" "$hwm_inc_large"
