#!/usr/bin/env bash
# Start a private Cyrus 3.6 whose every file lives under DIR.
#
# usage: start.sh DIR [PORT_BASE]   (IMAP on PORT_BASE+143, LMTP +24, ManageSieve +4190)
# env:   UNIXHIERSEP=yes|no (default yes, Cyrus's default), LEGACY_DIRS=yes|no (default no),
#        HASHSPOOL=yes|no (default no)
# Writes DIR/lab.env for tests. Idempotent when already running.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/common.sh"
[[ $# -ge 1 ]] || die "usage: start.sh DIR [PORT_BASE]"
[[ $(id -u) -eq 0 ]] || die "run as root (the daemons drop to user cyrus)"
[[ -x $CYRUS_BIN/master ]] || die "Cyrus is not installed: run $here/install.sh"
mkdir -p "$1"
dir=$(cd "$1" && pwd)
base=${2:-21000}
imap=$((base + 143)) lmtp=$((base + 24)) sieve=$((base + 4190))
if master_running "$dir"; then say "already running in $dir"; exit 0; fi

chmod 755 "$dir"
mkdir -p "$dir"/{etc,lib,spool,sieve,run,log,tmp} "$dir"/lib/{db,proc,socket,log,msg,user,quota,lock,sync,ptclient}
as_cyrus true 2>/dev/null || true
cat >"$dir/etc/imapd.conf" <<CONF
configdirectory: $dir/lib
defaultpartition: default
partition-default: $dir/spool
sievedir: $dir/sieve
temp_path: $dir/tmp
proc_path: $dir/lib/proc
mboxname_lockpath: $dir/lib/lock
lmtpsocket: $dir/run/lmtp
idlesocket: $dir/run/idle
notifysocket: $dir/run/notify
servername: mvlab
syslog_prefix: mvlab-$base
admins: cyrus
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: $dir/lib/sasldb2
sasl_mech_list: PLAIN LOGIN
unixhierarchysep: ${UNIXHIERSEP:-yes}
altnamespace: no
virtdomains: off
hashimapspool: ${HASHSPOOL:-no}
mailbox_legacy_dirs: ${LEGACY_DIRS:-no}
sendmail: /bin/true
CONF
# master does not hand its -C to the services it forks: each command gets its own.
c="-C $dir/etc/imapd.conf"
cat >"$dir/etc/cyrus.conf" <<CONF
START {
  recover cmd="ctl_cyrusdb $c -r"
}
SERVICES {
  imap  cmd="imapd $c" listen="127.0.0.1:$imap" prefork=1 maxchild=50
  lmtp  cmd="lmtpd $c -a" listen="127.0.0.1:$lmtp" prefork=0 maxchild=10
  sieve cmd="timsieved $c" listen="127.0.0.1:$sieve" prefork=0 maxchild=10
}
EVENTS {
  checkpoint cmd="ctl_cyrusdb $c -c" period=30
}
CONF
printf cyrus | saslpasswd2 -p -c -f "$dir/lib/sasldb2" -u mvlab cyrus
chown -R cyrus:mail "$dir"/{etc,lib,spool,sieve,run,log,tmp}
chmod 750 "$dir"/{etc,lib,spool,run,log,tmp}

setsid "$CYRUS_BIN/master" -C "$dir/etc/imapd.conf" -M "$dir/etc/cyrus.conf" \
  -p "$dir/run/master.pid" </dev/null >>"$dir/log/master.log" 2>&1 &
echo $! >"$dir/master.pid"
if ! wait_for_greeting "$imap" 30 "* OK"; then
  tail -20 "$dir/log/master.log" >&2
  die "IMAP did not answer on 127.0.0.1:$imap"
fi
cat >"$dir/lab.env" <<ENV
LAB_DIR=$dir
IMAPD_CONF=$dir/etc/imapd.conf
IMAP_PORT=$imap
LMTP_PORT=$lmtp
SIEVE_PORT=$sieve
SERVERNAME=mvlab
ADMIN_USER=cyrus
ADMIN_PASS=cyrus
USER_PASS=pass
CYRUS_BIN=$CYRUS_BIN
ENV
say "Cyrus up in $dir: IMAP 127.0.0.1:$imap"
