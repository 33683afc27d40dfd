#!/usr/bin/env bash
# Install Debian's Cyrus IMAP 3.6 (server, admin tools, SASL tools) without
# letting the packages start any daemon. Idempotent; run as root.
set -euo pipefail
[[ $(id -u) -eq 0 ]] || { echo "install.sh: run as root" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive

pkgs=(cyrus-imapd cyrus-common cyrus-admin cyrus-clients sasl2-bin python3)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
[[ ${#need[@]} -eq 0 ]] && { echo "install.sh: Cyrus already installed"; exit 0; }

# cyrus-common wants an MTA; dma is a single package with no listening daemon.
if ! dpkg-query -W -f='${Provides}\n' 2>/dev/null | grep -qw mail-transport-agent; then
  need+=(dma)
  echo "dma dma/mailname string localhost" | debconf-set-selections
  echo "dma dma/relayhost string " | debconf-set-selections
fi

# invoke-rc.d honours policy-rc.d: exit 101 forbids starting services.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made_policy=1
fi
trap '[[ $made_policy -eq 1 ]] && rm -f "$policy"' EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}"
[[ -x /usr/lib/cyrus/bin/master ]] || { echo "install.sh: /usr/lib/cyrus/bin/master missing" >&2; exit 1; }
