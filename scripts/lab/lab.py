#!/usr/bin/env python3
"""Fill a lab Cyrus with users and mail, and dump what Cyrus shows over IMAP.

  lab.py populate --env LAB/lab.env --users N [--folders F] [--msgs M] [--seed S] [--jobs J]
  lab.py dump --env LAB/lab.env USER...        (JSON on stdout: Cyrus's view, the tests' oracle)
  lab.py deliver --env LAB/lab.env USER        (one more message over LMTP)
  lab.py change --env LAB/lab.env USER ACTION ARGS...
        ACTION: create FOLDER | delete FOLDER | rename OLD NEW | append FOLDER
                | flag FOLDER UID FLAGS | expunge FOLDER UID

Every user gets INBOX plus folders that exercise what a backup must get right:
nesting several levels deep, a name with a '.' inside it (only possible with
unixhierarchysep: yes), a non-ASCII name (modified UTF-7), duplicates (a
byte-identical re-APPEND and a UID COPY of INBOX messages), flags and
keywords, an expunged message (kept in cyrus.index by delayed expunge) and a
message delivered over LMTP. The content is deterministic for a given seed.
"""
import argparse
import imaplib
import json
import random
import re
import smtplib
import subprocess
import sys
import time

FOLDERS = ["Sent", "Archive", "Archive/2023", "Entw&APw-rfe", "Work.Projects", "Deep/a/b/c",
           "Trash", "Lists", "Projects", "Receipts"]
WORDS = ("mail backup cyrus index folder message archive restore server quota "
         "delivery report invoice meeting agenda notes draft travel project").split()


def env(path):
    out = {}
    for line in open(path):
        if "=" in line:
            k, v = line.strip().split("=", 1)
            out[k] = v
    return out


def ok(resp, what):
    typ, data = resp
    if typ != "OK":
        raise SystemExit("IMAP %s failed: %r" % (what, data))
    return data


def connect(e, user, password):
    imap = imaplib.IMAP4("127.0.0.1", int(e["IMAP_PORT"]))
    ok(imap.login(user, password), "LOGIN " + user)
    return imap


def separator(imap):
    data = ok(imap.list('""', '""'), "LIST")
    m = re.search(rb'\(.*?\) "(.)"', data[0])
    return m.group(1).decode() if m else "."


def folder_name(sep, f):
    if sep == ".":
        f = f.replace(".", "_").replace("/", ".")
    return "INBOX" + sep + f


def message(rng, user, n, ts):
    size = int(rng.lognormvariate(8.3, 0.9))  # median ~4 KB
    body = []
    while sum(len(x) for x in body) < size:
        body.append(" ".join(rng.choice(WORDS) for _ in range(12)))
    subject = "%s %s #%s-%d" % (rng.choice(WORDS).title(), rng.choice(WORDS), user, n)
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))
    head = ("From: Lab Sender <sender%d@example.org>\r\nTo: %s@example.com\r\n"
            "Subject: %s\r\nDate: %s\r\nMessage-ID: <%s.%d@mvlab>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            % (rng.randrange(100), user, subject, date, user, n))
    return (head + "\r\n".join(body) + "\r\n").encode()


def flags(rng):
    f = []
    for flag, p in (("\\Seen", 0.6), ("\\Flagged", 0.15), ("\\Answered", 0.2),
                    ("$Label1", 0.1), ("Important", 0.05)):
        if rng.random() < p:
            f.append(flag)
    return "(" + " ".join(f) + ")"


def populate_user(e, user, nfolders, msgs, rng):
    imap = connect(e, user, e["USER_PASS"])
    sep = separator(imap)
    folders = ["INBOX"] + [folder_name(sep, f) for f in FOLDERS[:nfolders]]
    ts = 1700000000 + rng.randrange(10**7)
    inbox_msgs = []
    for folder in folders:
        if folder != "INBOX":
            ok(imap.create('"%s"' % folder), "CREATE " + folder)
        for n in range(msgs):
            ts += rng.randrange(3600, 86400)
            data = message(rng, user, n, ts)
            if folder == "INBOX":
                inbox_msgs.append(data)
            elif n == 0 and inbox_msgs:
                data = inbox_msgs[0]  # byte-identical re-APPEND: same GUID, separate file
            ok(imap.append('"%s"' % folder, flags(rng), imaplib.Time2Internaldate(ts), data),
               "APPEND " + folder)
    ok(imap.select("INBOX"), "SELECT")
    if len(folders) > 2:
        ok(imap.uid("COPY", "1:2", '"%s"' % folders[2]), "UID COPY")  # hard-linked copies
    if msgs >= 3:
        ok(imap.uid("STORE", "3", "+FLAGS", "(\\Deleted)"), "STORE")
        ok(imap.expunge(), "EXPUNGE")  # delayed expunge keeps the record and the file
    imap.logout()


def create_users(e, users):
    for u in users:
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", e["LAB_DIR"] + "/lib/sasldb2", "-u",
                        e["SERVERNAME"], u], input=e["USER_PASS"].encode(), check=True)
    subprocess.run(["chown", "cyrus:mail", e["LAB_DIR"] + "/lib/sasldb2"], check=True)
    admin = connect(e, e["ADMIN_USER"], e["ADMIN_PASS"])
    sep = separator(admin)
    for u in users:
        admin.create("user" + sep + u)
    admin.logout()


def deliver(e, user, text):
    lmtp = smtplib.LMTP("127.0.0.1", int(e["LMTP_PORT"]))
    lmtp.sendmail("list@example.org", [user + "@example.com"], text.encode())
    lmtp.quit()


def populate_one(e, user, nfolders, msgs, rng):
    populate_user(e, user, nfolders, msgs, rng)
    deliver(e, user, "From: list@example.org\r\nSubject: lab list mail\r\n\r\nhello %s\r\n" % user)


def populate_worker(job):
    """One user of a parallel populate, with a generator of its own (seed and
    name) so the content does not depend on which worker got the user."""
    e, user, nfolders, msgs, seed = job
    populate_one(e, user, nfolders, msgs, random.Random("%s:%s" % (seed, user)))
    return user


def cmd_populate(a):
    e = env(a.env)
    users = ["%s%d" % (a.prefix, i) for i in range(1, a.users + 1)]
    create_users(e, users)
    if a.jobs > 1:
        import multiprocessing
        jobs = [(e, u, a.folders, a.msgs, a.seed) for u in users]
        with multiprocessing.Pool(a.jobs) as pool:
            for _ in pool.imap_unordered(populate_worker, jobs):
                pass
    else:
        rng = random.Random(a.seed)
        for u in users:
            populate_one(e, u, a.folders, a.msgs, rng)
    print("populated %d users, %d folders, %d messages per folder" % (a.users, a.folders, a.msgs))


def parse_fetch(data):
    out = []
    for item in data:
        if isinstance(item, tuple):
            item = item[0]
        if not item:
            continue
        s = item.decode()
        uid = int(re.search(r"UID (\d+)", s).group(1))
        fl = re.search(r"FLAGS \(([^)]*)\)", s).group(1).split()
        size = int(re.search(r"RFC822\.SIZE (\d+)", s).group(1))
        guid = re.search(r"DIGEST\.SHA1 ([0-9a-f]{40})", s).group(1)
        date = re.search(r'INTERNALDATE "([^"]+)"', s).group(1)
        out.append({"uid": uid, "flags": sorted(f for f in fl if f != "\\Recent"),
                    "size": size, "guid": guid, "internaldate": date})
    return out


def dump_user(e, user):
    imap = connect(e, user, e["USER_PASS"])
    folders = {}
    for line in ok(imap.list('""', '"*"'), "LIST"):
        m = re.match(rb'\((.*?)\) "(.)" (.*)$', line)
        name = m.group(3).decode().strip('"')
        if "\\Noselect" in m.group(1).decode():
            continue
        data = ok(imap.select('"%s"' % name, readonly=True), "EXAMINE " + name)
        count = int(data[0])
        uidvalidity = int(re.search(rb"\d+", imap.response("UIDVALIDITY")[1][0]).group(0))
        msgs = []
        if count:
            msgs = parse_fetch(ok(imap.uid("FETCH", "1:*",
                               "(UID FLAGS RFC822.SIZE DIGEST.SHA1 INTERNALDATE)"), "FETCH"))
        folders[name] = {"uidvalidity": uidvalidity, "messages": msgs}
    subs = [re.match(rb'\(.*?\) ".*?" (.*)$', l).group(1).decode().strip('"')
            for l in ok(imap.lsub('""', '"*"'), "LSUB") if l]
    imap.logout()
    return {"folders": folders, "subscriptions": sorted(subs)}


def cmd_dump(a):
    e = env(a.env)
    json.dump({u: dump_user(e, u) for u in a.user}, sys.stdout, indent=1, sort_keys=True)


def cmd_deliver(a):
    e = env(a.env)
    deliver(e, a.user, "From: x@example.org\r\nSubject: delivery %f\r\n\r\nbody\r\n" % time.time())


def cmd_change(a):
    """One change made as the user, the way a mail client would make it."""
    e = env(a.env)
    imap = connect(e, a.user, e["USER_PASS"])
    act, args = a.action, a.args
    q = lambda name: '"%s"' % name
    if act == "create":
        ok(imap.create(q(args[0])), "CREATE")
    elif act == "delete":
        ok(imap.delete(q(args[0])), "DELETE")
    elif act == "rename":
        ok(imap.rename(q(args[0]), q(args[1])), "RENAME")
    elif act == "append":
        rng = random.Random(time.time())
        ok(imap.append(q(args[0]), "(\\Seen)", None, message(rng, a.user, 999, time.time())), "APPEND")
    elif act == "flag":
        ok(imap.select(q(args[0])), "SELECT")
        ok(imap.uid("STORE", args[1], "+FLAGS", "(%s)" % args[2]), "STORE")
    elif act == "expunge":
        ok(imap.select(q(args[0])), "SELECT")
        ok(imap.uid("STORE", args[1], "+FLAGS", "(\\Deleted)"), "STORE")
        ok(imap.expunge(), "EXPUNGE")
    else:
        raise SystemExit("unknown action %s" % act)
    imap.logout()


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("populate")
    p.add_argument("--env", required=True)
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--folders", type=int, default=6)
    p.add_argument("--msgs", type=int, default=8)
    p.add_argument("--seed", default="mailvault")
    p.add_argument("--prefix", default="user", help="user names are PREFIX1..PREFIXN")
    p.add_argument("--jobs", type=int, default=1,
                   help="users populated in parallel (each user then seeds its own generator)")
    p.set_defaults(fn=cmd_populate)
    d = sub.add_parser("dump")
    d.add_argument("--env", required=True)
    d.add_argument("user", nargs="+")
    d.set_defaults(fn=cmd_dump)
    v = sub.add_parser("deliver")
    v.add_argument("--env", required=True)
    v.add_argument("user")
    v.set_defaults(fn=cmd_deliver)
    c = sub.add_parser("change")
    c.add_argument("--env", required=True)
    c.add_argument("user")
    c.add_argument("action")
    c.add_argument("args", nargs="*")
    c.set_defaults(fn=cmd_change)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
