#!/usr/bin/env python3
"""Run a command; write its wall time, CPU time and what it read to OUT as JSON.

  io_of.py OUT CMD...

The counts are this wrapper's /proc/self/io after the command was reaped:
Linux adds a reaped child's I/O accounting to its parent, so they cover the
command and all its children (rchar: bytes returned by read(2) and friends,
page cache hits included; read_bytes: bytes fetched from the block device).
The command's stdout passes through untouched.
"""
import json
import os
import subprocess
import sys
import time


def io():
    out = {}
    for line in open("/proc/self/io"):
        k, v = line.split(":")
        out[k.strip()] = int(v)
    return out


def main():
    out, cmd = sys.argv[1], sys.argv[2:]
    before = io()
    t0 = time.monotonic()
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = rc = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - t0
    after = io()
    json.dump({"wall": wall, "rc": rc, "cpu": usage.ru_utime + usage.ru_stime,
               "rchar": after["rchar"] - before["rchar"],
               "read_bytes": after["read_bytes"] - before["read_bytes"]}, open(out, "w"))
    sys.exit(rc)


if __name__ == "__main__":
    main()
