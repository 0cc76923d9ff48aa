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

# Non-root users: members of group onvm may use a hugetlbfs mount of their
# own.  Mode 1770: only the group gets in, and the sticky bit keeps users
# from deleting each other's files; each user then works in a 0700
# directory of their own inside it (onvm creates it), so no user can
# even list another's hugepage files.  Add a user: usermod -aG onvm USER
ONVM_HUGE=/dev/hugepages-onvm
if ! getent group onvm >/dev/null; then
    $SUDO groupadd --system onvm
fi
gid=$(getent group onvm | cut -d: -f3)
if ! grep -q "^[^ ]* $ONVM_HUGE hugetlbfs" /proc/mounts; then
    $SUDO mkdir -p "$ONVM_HUGE"
    $SUDO mount -t hugetlbfs -o "gid=$gid,mode=1770" nodev "$ONVM_HUGE"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Quiet unless it fails: the build of the C core prints a lot.
log=.venv/install.log
if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -e '.[test,lab]' && .venv/bin/onvm kernel install --sys-prefix; } >"$log" 2>&1; then
    tail -40 "$log"
    echo "onvm setup: pip install failed; full log in $log" >&2
    exit 1
fi
echo "onvm setup: done ($(.venv/bin/python -c 'import onvm; print(onvm.__version__)'))"
