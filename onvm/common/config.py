"""What a manager is started with, declared once: onvm.Manager builds a
ManagerConfig and passes it down as the daemon's command line (to_argv),
the daemon (python -m onvm.mgr.daemon) and `onvm mgr` read it back with
the same options (add_arguments, from_args), and validate() is the one
place each parameter is checked.  A shared leaf: the daemon imports it."""
import dataclasses

from .errors import check_number

# Imported without the compiled core (the CLI declares `onvm mgr`'s options from
# here, and `onvm doctor` must run with a broken core): validate() takes the
# core's limits when it runs; the defaults below are the core's too.
RING_MB = 32              # each ring port's inject ring and capture ring, default size
MAX_NFS = 128             # ONVM_MAX_NFS
MAX_THREADS = 3           # ONVM_MAX_THREADS
FLOW_LOOKUPS = ("cached", "naive")


def _opt(help, **argparse):
    return dataclasses.field(default=argparse.pop("default"), metadata={"help": help, "argparse": argparse})


@dataclasses.dataclass(frozen=True)
class ManagerConfig:
    """A manager's parameters (see onvm.Manager for what each means)."""
    name: str = _opt("manager name (DPDK file prefix onvm-NAME)", default="main")
    ports: tuple = _opt("port spec: ring, null, pcap:rx=F,tx=F, tap:IF[@NS=ADDR/LEN], veth:IF@NS[=ADDR/LEN], pci:ADDR "
                        "(repeat; default two ring ports)",
                        default=("ring", "ring"))
    hugepage_mb: int = _opt("MB of hugepages it takes at start and never goes beyond", default=256, type=int)
    mbufs: int = _opt("packets in the shared pool", default=16383, type=int)
    busy_poll: bool = _opt("never sleep: a core per thread and NF", default=False)
    rx_threads: int = _opt("RX threads (1..%d)" % MAX_THREADS, default=1, type=int)
    tx_threads: int = _opt("TX threads (1..%d)" % MAX_THREADS, default=1, type=int)
    max_nfs: int = _opt("NF slots (1..%d); each costs a 4096-packet ring" % MAX_NFS,
                        default=MAX_NFS, type=int)
    ring_mb: int = _opt("MiB of each ring port's inject and capture ring (a power of two)", default=RING_MB, type=int)
    flow_lookup: str = _opt("cached (the RX thread's hash) or naive (rehash per lookup)", default="cached",
                            choices=FLOW_LOOKUPS)
    nf_max_priority: int = _opt("the highest priority of a flow rule an NF asks for", default=0, type=int)
    hugepages: str = _opt("yes: hugepages or an error; no: ordinary shared memory, no root needed (hugepage_mb is "
                          "then its size); auto: hugepages when usable, see ONVM_HUGEPAGES", default="auto",
                          choices=("auto", "yes", "no"))

    def validate(self):
        """returns: self; raises: ValueError naming the first bad parameter."""
        from . import limits, memmode
        from .paths import check_name
        from .ports import parse_port
        from .runtime import check_hugepage_budget
        check_name(self.name)
        if isinstance(self.ports, str) or not isinstance(self.ports, (tuple, list)):
            raise ValueError("ports is a list of port specs, got %r" % (self.ports,))
        if not 1 <= len(self.ports) <= limits.ONVM_MAX_PORTS:
            raise ValueError("a manager has 1..%d ports, got %d" % (limits.ONVM_MAX_PORTS, len(self.ports)))
        for p in self.ports:
            parse_port(p)
        check_number("hugepage_mb", self.hugepage_mb, 64, 1 << 20, integer=True, what="an int of MB")
        check_number("mbufs", self.mbufs, 1023, 1 << 20, integer=True, what="an int")
        check_hugepage_budget(self.hugepage_mb, self.mbufs)
        if not isinstance(self.busy_poll, bool):
            raise ValueError("busy_poll is True or False, got %r" % (self.busy_poll,))
        for what in ("rx_threads", "tx_threads"):
            _int_in(what, getattr(self, what), 1, limits.ONVM_MAX_THREADS)
        _int_in("max_nfs", self.max_nfs, 1, limits.ONVM_MAX_NFS)
        if _int_in("ring_mb", self.ring_mb, 1, 1024, "%s must be a power of two in %d..%d, got %r") & (self.ring_mb - 1):
            raise ValueError("ring_mb must be a power of two in 1..1024, got %r" % (self.ring_mb,))
        if self.flow_lookup not in FLOW_LOOKUPS:
            raise ValueError("flow_lookup is \"cached\" (the RX hash) or \"naive\" (rehash per lookup), got %r"
                             % (self.flow_lookup,))
        _int_in("nf_max_priority", self.nf_max_priority, 0, limits.ONVM_FLOW_MAX_PRIORITY, "%s must be an int in %d..%d, got %r")
        memmode.from_word(self.hugepages)
        return self

    def to_argv(self):
        """The daemon's options for this configuration (from_args reads them back)."""
        argv = []
        for f in dataclasses.fields(self):
            flag, value = "--" + f.name.replace("_", "-"), getattr(self, f.name)
            if f.name == "ports":
                for p in value:
                    argv += ["--port", p]
            elif isinstance(value, bool):
                argv += [flag] if value else []
            else:
                argv += [flag, str(value)]
        return argv

    @classmethod
    def add_arguments(cls, parser, name_required=False):
        """Declare every parameter as an option of an argparse parser."""
        for f in dataclasses.fields(cls):
            help = f.metadata["help"]
            if f.name == "ports":
                parser.add_argument("--port", action="append", dest="ports", metavar="SPEC", help=help)
            elif f.type in (bool, "bool"):
                parser.add_argument("--busy-poll", action="store_true", help=help)
            elif f.name == "name":
                parser.add_argument("--name", required=name_required, default=None if name_required else f.default,
                                    help=help)
            else:
                parser.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=help,
                                    **f.metadata["argparse"])

    @classmethod
    def from_args(cls, a):
        """The configuration an argparse namespace (from add_arguments) names."""
        kw = {f.name: getattr(a, f.name) for f in dataclasses.fields(cls)}
        kw["ports"] = tuple(kw["ports"] or cls.ports)
        return cls(**kw)


def _int_in(what, n, lo, hi, form="%s must be %d..%d, got %r"):
    if isinstance(n, bool) or not isinstance(n, int) or not lo <= n <= hi:
        raise ValueError(form % (what, lo, hi, n))
    return n
