#!/usr/bin/env bash
# Take a fresh Debian 12 / Ubuntu 24.04 machine (as root) to a working warpgate install.
#
#   bash scripts/setup.sh            # Debian packages, .venv, the project with its lab and test extras
#
# Idempotent: each step first checks whether its work is already done, so a second run takes
# about a second and changes nothing. Nothing here starts a daemon: tests and the lab start the
# ones they need (mosquitto, coturn, miniupnpd) with generated configs and stop them by PID.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"

# Everything the engine, the lab and the tests need, now and later.
DEB_PACKAGES=(
  python3 python3-venv python3-dev gcc
  mininet iproute2 iptables nftables conntrack ethtool tcpdump iputils-ping
  mosquitto mosquitto-clients coturn miniupnpd-nftables miniupnpc natpmpc
)

say() { printf '[setup] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "[setup] run as root: it installs Debian packages" >&2
  exit 1
fi

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package installs must not start services: the lab starts its own daemons inside namespaces.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present"
fi

# Mininet's Python package comes from Debian, so the venv must see the system site-packages of
# Debian's own python3 (not whatever python3 is first on PATH).
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

STAMP="$VENV/.warpgate-installed"
want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  say "installing warpgate (editable) with its lab and test extras"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".[lab,test]"
  echo "$want" > "$STAMP"
else
  say "venv up to date"
fi

"$VENV/bin/python" -c "import warpgate, mininet.net" >/dev/null
say "ready: $VENV/bin/warpgate, $VENV/bin/netsim"
