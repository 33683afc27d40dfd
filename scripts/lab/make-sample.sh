#!/usr/bin/env bash
# Remake sample/cyrus-3.6 from a freshly populated, cleanly stopped lab Cyrus.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
lab=$(mktemp -d /tmp/mailvault-sample.XXXXXX)
trap '"$here/stop.sh" "$lab" || true; rm -rf "$lab"' EXIT
"$here/start.sh" "$lab" 23000
python3 "$here/lab.py" populate --env "$lab/lab.env" --users 3 --folders 6 --msgs 12 --seed sample
"$here/stop.sh" "$lab"
out=$top/sample/cyrus-3.6
rm -rf "$out/spool" "$out/sieve" "$out/lib"
mkdir -p "$out/lib"
cp -a "$lab/spool" "$lab/sieve" "$out/"
cp -a "$lab/lib/mailboxes.db" "$lab/lib/annotations.db" "$lab/lib/user" "$out/lib/"
rm -rf "$out/spool/stage."
chown -R --reference="$top" "$out"
echo "sample written to $out"
