"""The no-hugepage mode's page size (issue 25, speed): the manager's shared
region goes into 2 MiB transparent hugepages of tmpfs where the kernel
allows it (onvm/core/xmem.c huge_pages: MADV_COLLAPSE, no root, whatever
shmem_enabled says short of "deny"), every NF maps it through them, and
nothing about who may hold or resize it changes.  No speed is asserted
here: the page sizes are what the speed follows (BENCHMARKS.md)."""
import os
import platform
import re
import struct

import pytest

import onvm
from conftest import wait_for

REGION = "memfd:onvm-shared"
HUGE = 2 << 20


def shmem_thp_possible():
    """None if this kernel can put a memfd in 2 MiB pages for an unprivileged
    process (MADV_COLLAPSE: Linux 6.1; not under shmem_enabled=deny), else why not."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
            setting = f.read()
    except OSError:
        return "no transparent hugepages in this kernel"
    if "[deny]" in setting:
        return "shmem_enabled is deny"
    major, minor = (int(x) for x in platform.release().split(".")[:2])
    if (major, minor) < (6, 1) and "[never]" in setting:
        return "MADV_COLLAPSE needs Linux 6.1 and shmem_enabled is never"
    return None


def region_pmd(pid):
    """(start address, size, bytes mapped by PMD) of the shared region in pid."""
    found = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):     # a mapping's first line
                if found:
                    break
                if REGION in line:
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    found = [lo, hi - lo, None]
            elif found and line.startswith("ShmemPmdMapped:"):
                found[2] = int(line.split()[1]) << 10
    assert found and found[2] is not None, "no shared region in %d" % pid
    return tuple(found)


def frames(n):
    return [bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + struct.pack(">I", i)
            + bytes((i * 5 + j) & 0xff for j in range(42 + i % 300)) for i in range(n)]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("ONVM_HUGEPAGES", raising=False)
    monkeypatch.delenv("ONVM_SHM_DIR", raising=False)
    monkeypatch.delenv("ONVM_XMEM_4K", raising=False)


def test_the_region_is_in_2mib_pages_in_the_manager_and_every_nf(no_env):
    why = shmem_thp_possible()
    if why:
        pytest.skip(why)
    with onvm.Manager(name="tthp%d" % os.getpid(), hugepages=False) as mgr:
        start, size, pmd = region_pmd(mgr.process.pid)
        assert start % HUGE == 0, "the region is not 2 MiB aligned: %#x" % start
        # all of it, short of what the kernel could not find 2 MiB of free memory for
        assert pmd >= size // 2, "the manager maps %d of %d bytes in 2 MiB pages" % (pmd, size)
        fwd = mgr.launch(onvm.native("forward"), service=1)
        nf_start, nf_size, nf_pmd = region_pmd(fwd.pid)
        assert (nf_start, nf_size) == (start, size)
        assert nf_pmd >= size // 2, "the NF maps %d of %d bytes in 2 MiB pages" % (nf_pmd, size)
        mgr.set_default_chain([1, onvm.ToPort(1)])
        sent = frames(500)
        mgr.inject(sent, port=0)
        assert sorted(bytes(p) for p in mgr.capture(port=1, count=len(sent), timeout=30)) == sorted(sent)
        assert wait_for(lambda: fwd.stats().get("rx", 0) == len(sent), timeout=10), fwd.stats()
        # still sealed: whoever holds the descriptor cannot cut the region short under the manager
        pid = mgr.process.pid
        fd = next(os.path.join("/proc/%d/fd" % pid, f) for f in os.listdir("/proc/%d/fd" % pid)
                  if os.readlink("/proc/%d/fd/%s" % (pid, f)).startswith("/" + REGION))
        with open(fd, "r+b") as f:
            with pytest.raises(PermissionError):
                os.ftruncate(f.fileno(), HUGE)


def test_onvm_xmem_4k_keeps_the_region_in_4kib_pages(no_env, monkeypatch):
    """The comparison the benchmark makes (bench_nohuge.py --with-4k): the same
    region without transparent hugepages, still forwarding."""
    monkeypatch.setenv("ONVM_XMEM_4K", "1")
    with onvm.Manager(name="t4k%d" % os.getpid(), hugepages=False) as mgr:
        fwd = mgr.launch(onvm.native("forward"), service=1)
        assert region_pmd(mgr.process.pid)[2] == 0 and region_pmd(fwd.pid)[2] == 0
        mgr.set_default_chain([1, onvm.ToPort(1)])
        sent = frames(100)
        mgr.inject(sent, port=0)
        assert sorted(bytes(p) for p in mgr.capture(port=1, count=len(sent), timeout=30)) == sorted(sent)
