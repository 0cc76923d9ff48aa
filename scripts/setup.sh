#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for onvm: system packages, hugepages,
# and a virtualenv (.venv) with onvm installed in editable mode.
# Idempotent: run it as often as you like.  Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PKGS="libdpdk-dev dpdk pkg-config gcc python3-dev python3-venv libpcap-dev iproute2 procps strace"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    echo "onvm setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Hugepages: 2 MB pages; each manager takes a few hundred MB by default.
want=${ONVM_HUGEPAGES:-512}
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then
    echo "$want" | $SUDO tee /proc/sys/vm/nr_hugepages >/dev/null
fi
if ! grep -q '^[^ ]* /dev/hugepages hugetlbfs' /proc/mounts; then
    $SUDO mkdir -p /dev/hugepages
    $SUDO mount -t hugetlbfs nodev /dev/hugepages
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Quiet unless it fails: the build of the C core prints a lot.
log=.venv/install.log
if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -e '.[test]'; } >"$log" 2>&1; then
    tail -40 "$log"
    echo "onvm setup: pip install failed; full log in $log" >&2
    exit 1
fi
echo "onvm setup: done ($(.venv/bin/python -c 'import onvm; print(onvm.__version__)'))"
