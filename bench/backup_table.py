#!/usr/bin/env python3
"""The table of bench/backup.sh, from the JSON files its runs left in WORK.

  backup_table.py WORK SPOOL_FILES SPOOL_BYTES MSG_BYTES STORE_LOCAL STORE_AGENT
                  RESTIC_REPO LOAD_BEFORE LOAD_AFTER JOBS NPROC GZIP_LEVEL
"""
import json
import sys

MB = 1e6


def load(work, name):
    return json.load(open("%s/%s" % (work, name)))


def restic_summary(work, name):
    for line in reversed(open("%s/%s" % (work, name)).read().splitlines()):
        d = json.loads(line)
        if d.get("message_type") == "summary":
            return d
    raise SystemExit("no restic summary in " + name)


def main():
    (work, spool_files, spool_bytes, msg_bytes, store_local, store_agent, repo,
     load_before, load_after, jobs, nproc, level) = sys.argv[1:]
    spool_files, spool_bytes, msg_bytes = int(spool_files), int(spool_bytes), int(msg_bytes)
    rows = []
    users = None
    for name, label in (("local-full", "mailvault local, first"),
                        ("local-nochange", "mailvault local, no change"),
                        ("agent-full", "mailvault agent, first"),
                        ("agent-nochange", "mailvault agent, no change")):
        io, summary = load(work, name + ".io"), load(work, name + ".json")
        t = summary["totals"]
        users = t["users"]
        if t["ok"] != t["users"]:
            print("WARNING: %s: %d of %d users not ok" % (name, t["users"] - t["ok"], t["users"]))
        cyrus = io.get("cyrus_rchar", io["rchar"])
        note = ("agent: %s message files opened, %s bytes read" % (
            io.get("agent_message_files_opened"), io.get("agent_bytes_read"))
            if "agent_bytes_read" in io else "reads of the whole process (spool + store)")
        cpu = io["cpu"] + io.get("agent_cpu", 0)
        rows.append((label, io["wall"], cpu, users, t["bytes_fetched"], cyrus, note))
    for name, label in (("restic-full", "restic, first"), ("restic-nochange", "restic, no change")):
        io, s = load(work, name + ".io"), restic_summary(work, name + ".json")
        note = "%d files new, %d unmodified; reads of the whole process" % (
            s.get("files_new", 0), s.get("files_unmodified", 0))
        rows.append((label, io["wall"], io["cpu"], users, s.get("data_added", 0), io["rchar"], note))

    print()
    print("spool: %d users, %d files, %.1f MB (%.1f MB of message files)" % (
        users, spool_files, spool_bytes / MB, msg_bytes / MB))
    print("machine: %s cores, load average %s before, %s after; mailvault --jobs %s, gzip level %s" % (
        nproc, load_before, load_after, jobs, level))
    print("stores: mailvault local %.1f MB, mailvault agent %.1f MB, restic repo %.1f MB" % (
        int(store_local) / MB, int(store_agent) / MB, int(repo) / MB))
    print()
    print("%-28s %8s %7s %9s %8s %9s %10s  %s" % (
        "run", "wall s", "CPU s", "users/s", "MB/s", "MB added", "MB read", "what was read"))
    for label, wall, cpu, n, added, read, note in rows:
        print("%-28s %8.2f %7.2f %9.1f %8.1f %9.1f %10.2f  %s" % (
            label, wall, cpu, n / wall, msg_bytes / MB / wall, added / MB, read / MB, note))
    by = {r[0]: r[1] for r in rows}
    print()
    print("MB/s is message MB of the spool over wall time; MB read is rchar (agent runs: the agent's);")
    print("CPU s is user + system time (agent runs: client + agent).")
    print("ratios (restic wall / mailvault wall, > 1 means mailvault is faster):")
    for mode, rmode in (("first", "restic, first"), ("no change", "restic, no change")):
        for src in ("local", "agent"):
            label = "mailvault %s, %s" % (src, mode)
            print("  %-28s %6.2fx" % (label, by[rmode] / by[label]))


if __name__ == "__main__":
    main()
