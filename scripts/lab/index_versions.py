#!/usr/bin/env python3
"""Make real cyrus.index files of every minor version a Cyrus 3.6 can write.

For each version N it creates the folder `Versions/vN` of USER, copies the
user's INBOX into it (UID COPY keeps flags and keywords), expunges one message
(so v12+ files hold an EXPUNGED record), converts the folder with
`reconstruct -V N`, and saves into OUT/vN/ the cyrus.index, the cyrus.header
and the output of `mbexamine` on the converted folder (the ground truth the
tests compare our reader with).

usage: index_versions.py --conf IMAPD_CONF --port IMAP_PORT --user U --password P --out DIR
"""
import argparse
import imaplib
import os
import shutil
import subprocess

VERSIONS = [17, 16, 13, 12, 10, 9, 8, 7, 6]
CYRUS_BIN = os.environ.get("CYRUS_BIN", "/usr/lib/cyrus/bin")


def as_cyrus(*argv):
    cmd = ["setpriv", "--reuid=cyrus", "--regid=mail", "--init-groups", "--"] + list(argv)
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


# reconstruct cannot write v10 straight from v17 ("FAILED TO REPACK ... format
# corruption", exit status 0 all the same); going through v9 works.
STEPS = {10: [9, 10]}


def convert(conf, mbox, version):
    for step in STEPS.get(version, [version]):
        out = as_cyrus(CYRUS_BIN + "/reconstruct", "-C", conf, "-V", str(step), mbox)
        if "FAILED" in out:
            raise SystemExit("reconstruct -V %d %s failed: %s" % (step, mbox, out))


def ok(resp):
    typ, data = resp
    if typ != "OK":
        raise SystemExit("IMAP command failed: %r" % (data,))
    return data


def fill_folder(imap, folder):
    imap.create(folder)  # may already exist from an earlier run
    ok(imap.select("INBOX"))
    ok(imap.uid("COPY", "1:*", folder))
    ok(imap.select(folder))
    typ, data = imap.uid("SEARCH", None, "ALL")
    uids = data[0].split()
    if len(uids) >= 3:
        ok(imap.uid("STORE", uids[1], "+FLAGS", "(\\Deleted)"))
        ok(imap.expunge())
    ok(imap.uid("STORE", uids[0], "+FLAGS", "(\\Flagged $Versioned)"))
    imap.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conf", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    imap = imaplib.IMAP4("127.0.0.1", a.port)
    ok(imap.login(a.user, a.password))
    for n in VERSIONS:
        fill_folder(imap, "INBOX/Versions/v%d" % n)
    imap.logout()

    for n in VERSIONS:
        mbox = "user/%s/Versions/v%d" % (a.user, n)
        if n != 17:
            convert(a.conf, mbox, n)
        path = as_cyrus(CYRUS_BIN + "/mbpath", "-C", a.conf, mbox).strip()
        out = os.path.join(a.out, "v%d" % n)
        os.makedirs(out, exist_ok=True)
        for f in ("cyrus.index", "cyrus.header"):
            shutil.copyfile(os.path.join(path, f), os.path.join(out, f))
        with open(os.path.join(out, "mbexamine.txt"), "w") as fh:
            fh.write(as_cyrus(CYRUS_BIN + "/mbexamine", "-C", a.conf, mbox))
    print("index versions written to %s: %s" % (a.out, " ".join("v%d" % n for n in VERSIONS)))


if __name__ == "__main__":
    main()
