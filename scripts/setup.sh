#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for onvm: system packages, hugepages,
# and a virtualenv (.venv) with onvm installed in editable mode.
# Idempotent: run it as often as you like.  Needs root (or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

PKGS="libdpdk-dev dpdk pkg-config gcc python3-dev python3-venv libpcap-dev iproute2 procps strace docker.io debootstrap"
# the dashboard's real-browser test: Debian's chromium, driven by Playwright (never `playwright install`)
PKGS="$PKGS chromium"
# traffic: tshark reads recorded pcaps back (tests); dpdk-dev has dpdk-dumpcap and dpdk-proc-info
PKGS="$PKGS tshark dpdk-dev"
# namespaces: ping from inside one through a chain (tests, notebook cells)
PKGS="$PKGS iputils-ping"
# onvm hub: JupyterHub's proxy
PKGS="$PKGS node-configurable-http-proxy"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    echo "onvm setup: installing$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# Hugepages: 2 MB pages; each manager takes a few hundred MB by default.
# ONVM_SETUP_HUGEPAGES, not ONVM_HUGEPAGES: that one is the memory mode onvm itself reads (0, 1, auto)
want=${ONVM_SETUP_HUGEPAGES:-1024}   # 2 GB: the tests and notebooks run several managers (256 MB each) at once
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
# directory of their own inside it (onvm creates it: UID, or UID-<random>
# when another member made UID first to lock them out), so no user can
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

# The venv is shared: students in group onvm run .venv/bin/onvm, so it must be
# made from a Python every user can execute.  The first python3 on root's PATH
# may live under /root (pyenv, conda: mode 0700); then take the system's.
others_can_run() {   # every directory above the real file has o+x, the file o+x
    local f d
    f=$(readlink -f "$1") || return 1
    [ -n "$f" ] && [ $(( 0$(stat -c %a "$f") & 1 )) -ne 0 ] || return 1
    d=$(dirname "$f")
    while [ "$d" != / ]; do
        [ $(( 0$(stat -c %a "$d") & 1 )) -ne 0 ] || return 1
        d=$(dirname "$d")
    done
}
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
else
    PY=$(command -v python3 || true)
    if [ -z "$PY" ] || ! others_can_run "$PY"; then
        PY=/usr/bin/python3
    fi
fi
others_can_run "$PY" || echo "onvm setup: warning: other users cannot run $PY; students will not be able to use .venv (set PYTHON=...)" >&2
# A venv made earlier from a Python only root can run: make it again.
if [ -x .venv/bin/python ] && ! others_can_run .venv/bin/python && others_can_run "$PY"; then
    echo "onvm setup: .venv was made from a Python other users cannot run; making it again from $PY"
    rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Quiet unless it fails: the build of the C core prints a lot.
log=.venv/install.log
if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -e '.[test,lab,containers,sdn,hub]' && .venv/bin/onvm kernel install --sys-prefix; } >"$log" 2>&1; then
    tail -40 "$log"
    echo "onvm setup: pip install failed; full log in $log" >&2
    exit 1
fi

# Container NFs: a Docker engine, and the images (built when missing).  With
# no engine running (no systemd here), start dockerd with no bridge and no
# iptables rules: NF containers run with --network none anyway.  Stop it
# with: kill $(cat /var/run/docker.pid)
if ! docker info >/dev/null 2>&1; then
    echo "onvm setup: starting dockerd (log /var/log/onvm-dockerd.log; stop: kill \$(cat /var/run/docker.pid))"
    $SUDO sh -c 'setsid dockerd --bridge=none --iptables=false --ip6tables=false </dev/null >/var/log/onvm-dockerd.log 2>&1 &'
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { tail -20 /var/log/onvm-dockerd.log; echo "onvm setup: dockerd did not start" >&2; exit 1; }
fi
# onvm/nf and the course image onvm/lab (and the local Debian base they are
# built on, with debootstrap), when missing: a few minutes the first time.
.venv/bin/onvm images build --lab
echo "onvm setup: done ($(.venv/bin/python -c 'import onvm; print(onvm.__version__)'))"
