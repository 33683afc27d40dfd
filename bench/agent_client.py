#!/usr/bin/env python3
"""Timing client for bench/agent.sh: speaks the backup protocol to an agent.

  agent_client.py fmultistatus ADDR SLOT ROUNDS USER...     -> "<seconds> <users> <folders>"
  agent_client.py fdata ADDR SLOT ROUNDS PLAN.json          -> "<seconds> <messages> <bytes>"

PLAN.json is {user: {folder: [uids]}} (from lab.py dump). Bodies are read by
their announced size, never by lines, and counted, not kept.
"""
import json
import socket
import sys
import time
import urllib.parse


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.f = self.sock.makefile("rb", buffering=1 << 20)

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")

    def line(self):
        text = self.f.readline()
        if not text:
            raise SystemExit("connection closed")
        return text.rstrip(b"\n").decode()

    def read(self, n):
        left = n
        while left:
            chunk = self.f.read(min(left, 1 << 20))
            if not chunk:
                raise SystemExit("body cut short")
            left -= len(chunk)


def enc(s):
    return urllib.parse.quote(s, safe="")


def fmultistatus(c, slot, user):
    c.send("FMULTISTATUS %s %s" % (slot, enc(user)))
    first = c.line()
    if first != "OK":
        raise SystemExit("FMULTISTATUS %s: %s" % (user, first))
    folders = 0
    while True:
        line = c.line()
        if line.startswith("DONE"):
            return folders
        if line.startswith("FOLDER "):
            folders += 1


def fdata(c, slot, user, folder, uids):
    c.send("FDATA %s %s %s %s" % (slot, enc(user), enc(folder), " ".join(map(str, uids))))
    first = c.line()
    if first != "OK":
        raise SystemExit("FDATA %s %s: %s" % (user, folder, first))
    got = size = 0
    while True:
        line = c.line()
        if line.startswith("DATA "):
            n = int(line.split()[2])
            c.read(n)
            c.line()  # DONE <uid> <sha1>, right after the body
            got += 1
            size += n
        elif line.startswith("DONE FDATA"):
            return got, size


def main():
    mode, addr, slot, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    c = Conn(addr)
    start = time.perf_counter()
    if mode == "fmultistatus":
        users = sys.argv[5:]
        folders = 0
        for _ in range(rounds):
            for u in users:
                folders += fmultistatus(c, slot, u)
        print("%.6f %d %d" % (time.perf_counter() - start, rounds * len(users), folders))
    else:
        plan = json.load(open(sys.argv[5]))
        msgs = size = 0
        for _ in range(rounds):
            for user, folders in plan.items():
                for folder, uids in folders.items():
                    if uids:
                        g, s = fdata(c, slot, user, folder, uids)
                        msgs += g
                        size += s
        print("%.6f %d %d" % (time.perf_counter() - start, msgs, size))


main()
