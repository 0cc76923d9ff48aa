"""A manager's control file (struct onvm_shm), read-only: its tables, NF
slots, service names and counters, and the samples each control tick takes
(read_sample, under their seqlock).  Plain memory, no DPDK, cheap enough to
poll many times a second; shared by the notebook side, onvm doctor, NFs
(node names) and the daemon (`onvm mgr`'s table)."""
import mmap
import os
import time

from . import paths
from .abi import ffi, lib
from .errors import OnvmError
from .results import NFSample, PortSample, Sample

ACTION_NAMES = ("next", "drop", "to_service", "to_port")
PORT_KINDS = {lib.ONVM_PORT_RING: "ring", lib.ONVM_PORT_NULL: "null", lib.ONVM_PORT_PCAP: "pcap",
              lib.ONVM_PORT_TAP: "tap", lib.ONVM_PORT_PCI: "pci", lib.ONVM_PORT_VETH: "veth"}
NF_STATES = {lib.ONVM_NF_CLAIMED: "starting", lib.ONVM_NF_RUNNING: "running", lib.ONVM_NF_ZOMBIE: "leaving"}
NF_STATS_SIZE = 4096
_retired = []   # mappings of closed control files (see ControlFile.close)


def _map_readonly(path, size):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_size < size:
            raise OnvmError("%s belongs to another onvm version" % path)
        return mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


class ControlFile:
    """A read-only view of a manager's control file (struct onvm_shm) and of
    its NFs' stats files (struct onvm_nf_stats), see onvm/core/onvm_shm.h."""

    def __init__(self, name, fd=None):
        """param fd: the control file open already (an NF gets it over
        nf.sock); else it is opened by the manager's name."""
        path = paths.shm_path(name)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise OnvmError("no manager named %r is running (no %s)" % (name, path)) from None
        else:
            fd = os.dup(fd)
        try:
            size = os.fstat(fd).st_size
            if size != ffi.sizeof("struct onvm_shm"):
                raise OnvmError("%s belongs to another onvm version" % path)
            self._map = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.shm = ffi.from_buffer("struct onvm_shm *", self._map)
        if self.shm.magic != lib.ONVM_SHM_MAGIC or self.shm.version != lib.ONVM_SHM_VERSION:
            raise OnvmError("%s is not a control file of this onvm version" % path)
        self.name = name
        self._nf_maps = {}

    @classmethod
    def from_fd(cls, fd, name):
        """A view of the control file open at fd (the caller keeps fd)."""
        return cls(name, fd)

    def close(self):
        """Forget the manager.  The mappings are not unmapped: a view taken
        from .shm (mgr.control.shm.ports[1].tx, say) does not keep its
        mapping alive in cffi, and unmapping under it would crash the
        kernel process on the next read.  So views stay readable, frozen at
        their last values; the memory (the control file, ~200 KB, whose
        file is already gone) is given back when the process exits."""
        if self.shm is not None:
            _retired.append((self._map, self._nf_maps))
        self.shm = None
        self._nf_maps = {}

    def nf_counters(self, i):
        """The stats NF slot i writes (struct onvm_nf_stats), mapped once."""
        got = self._nf_maps.get(i)
        if got is None:
            m = _map_readonly(paths.nf_stats_path(self.name, i), NF_STATS_SIZE)
            got = self._nf_maps[i] = (m, ffi.from_buffer("struct onvm_nf_stats *", m))
        return got[1]

    def nf_slots(self, states=(lib.ONVM_NF_RUNNING,)):
        """(index, slot) of NF slots in the given states."""
        nfs = self.shm.nfs
        return [(i, nfs[i]) for i in range(self.shm.max_nfs) if nfs[i].state in states]

    def nf_stats(self, i):
        s = self.shm.nfs[i]
        n = self.nf_counters(i)
        return {
            "name": ffi.string(s.name).decode(), "kind": ffi.string(s.kind).decode(),
            "service": s.service, "instance": i, "pid": s.pid,
            "state": NF_STATES.get(s.state, "free"),
            "rx": n.rx, "tx": n.tx, "rx_drop": s.rx_drop, "tx_drop": n.tx_drop,
            "refused": n.refused, "chain_end": n.chain_end,
            "steer_refused": n.steer_refused, "hop_limit": n.hop_limit,
            "errors": n.errors, "created": n.created, "recovered": s.recovered,
            "actions": {a: n.act[k] for k, a in enumerate(ACTION_NAMES)},
            "app": list(n.app), "wakeups": n.wakeups, "parked": n.parked, "unparked": n.unparked,
            "log_dropped": n.log_dropped,
        }

    def port_stats(self, p):
        s = self.shm.ports[p]
        return {
            "name": ffi.string(s.name).decode(), "kind": PORT_KINDS.get(s.kind, "?"),
            "rx": s.rx.rx, "rx_drop": s.rx.rx_drop, "rx_refused": s.rx.rx_refused,
            "rx_chain_end": s.rx.rx_chain_end, "tx": s.tx.tx, "tx_drop": s.tx.tx_drop, "injected": s.ctl.injected, "inject_drop": s.ctl.inject_drop,
            "captured": s.ctl.captured, "capture_drop": s.ctl.capture_drop,
        }

    def sample(self, timeout=1.0):
        """The newest control-tick sample (onvm.common.results.Sample), read whole."""
        return read_sample(self, timeout)

    def snapshot(self):
        """Every counter as plain ints: {"nfs": {instance: {...}},
        "ports": {index: {...}}, "pool": {"size", "in_use"}, "recovered":
        packets lost in NFs that died, "time": s},
        and "sample", what rates() needs (onvm.rates.Sample)."""
        shm = self.shm
        return {
            "time": time.monotonic(),
            "sample": read_sample(self),
            "nfs": {i: self.nf_stats(i) for i, _ in self.nf_slots((lib.ONVM_NF_RUNNING, lib.ONVM_NF_ZOMBIE))},
            "ports": {p: self.port_stats(p) for p in range(shm.nb_ports)},
            "pool": {"size": shm.pool_size, "in_use": shm.pool_in_use, "held_by_ports": shm.pool_held},
            "manager": {"pid": shm.mgr_pid, "log_dropped": shm.log_dropped},
            # packets NFs held when they died, freed by the manager: lost in
            # an NF, so that what came in = what went out + every drop + these
            "recovered": shm.recovered,
            "threads": {"rx": [shm.rx_threads[r].sleeps for r in range(shm.nb_rx_threads)],
                        "rx_cost": [_rx_cost(shm.rx_threads[r]) for r in range(shm.nb_rx_threads)],
                        "tx": [shm.tx_threads[t].sleeps for t in range(shm.nb_tx_threads)]},
        }

    def tables(self):
        """The routing tables the manager publishes now."""
        return self.shm.tables[self.shm.active & 1]

    def service_table(self, service):
        """{"instances": [slots], "reta": [slot per bucket]} of one service."""
        s = self.tables().services[service]
        return {"instances": list(s.instances[0:s.count]), "reta": list(s.reta) if s.count else []}

    def path(self, port):
        """The path packets entering `port` follow: [(action, destination)]."""
        c = self.tables().paths[port]
        return [(c.entries[i].action, c.entries[i].destination) for i in range(c.length)]

    def default_chain(self):
        return self.path(0)

    def service_names(self):
        """{service: node name} of a deployed graph."""
        t = self.tables()
        names = {s: ffi.string(t.names[s]).decode() for s in range(1, lib.ONVM_MAX_SERVICES)}
        return {s: n for s, n in names.items() if n}


def _rx_cost(ts):
    """An RX thread's packets so far and the seconds it spent on them (and on
    their flow lookups), counted in TSC cycles only while it ran them."""
    hz = ts.tsc_hz or 1
    return {"pkts": ts.pkts, "work_s": ts.work_cycles / hz, "lookup_s": ts.lookup_cycles / hz}



_DROP = ACTION_NAMES.index("drop")

def read_sample(cf, timeout=1.0):
    """The newest sample of a ControlFile, read consistently: the manager
    writes samples under a seqlock (sample_seq odd while writing), so this
    retries until it read one whole."""
    string = ffi.string
    shm = cf.shm
    deadline = time.monotonic() + timeout
    while True:
        seq = shm.sample_seq
        if not seq & 1:
            t = shm.sample_ns
            nfs = {}
            for i in range(shm.max_nfs):
                s = shm.nfs[i]
                st = s.state
                # A slot given out since the last tick still holds the old
                # NF's sample: skip it until the manager samples it.
                if st == lib.ONVM_NF_FREE or s.sample.generation != s.generation:
                    continue
                c = s.sample
                nfs[i] = NFSample(c.generation, c.rx, c.tx, c.drop, c.queued, string(s.name).decode(),
                                  string(s.kind).decode(), s.service, s.pid,
                                  "dead" if s.dead else NF_STATES.get(st, "free"), 0)
            ports = {}
            for p in range(shm.nb_ports):
                c = shm.ports[p].sample
                ports[p] = PortSample(c.rx, c.tx, c.drop, c.queued, string(shm.ports[p].name).decode())
            pool = (shm.pool_in_use, shm.pool_size)
            if shm.sample_seq == seq:
                break
        if time.monotonic() > deadline:
            raise OnvmError("manager %r keeps rewriting its samples; is it stuck in a tick?" % cf.name)
    # from the NF's own file: errors (a plain count) and its DROP verdicts
    for i, n in nfs.items():
        c = cf.nf_counters(i)
        nfs[i] = n._replace(errors=c.errors, verdicts_drop=c.act[_DROP])
    return Sample(t / 1e9, nfs, ports, pool, shm.nf_ring_size)
