"""Port specifications, as users write them:
    "ring"                          in-memory port: inject() and capture()
    "null"                          DPDK's null device (drops what it sends)
    "pcap:rx=in.pcap,tx=out.pcap"   replay a pcap file / record into one
    "tap:NAME"                      a kernel TAP interface called NAME
    "tap:NAME@NS=10.0.0.1/24"       the same, made inside the network namespace NS
                                    (see onvm.Namespace), with that address
    "veth:NAME@NS=10.0.0.1/24"      a veth pair: NAME inside NS with that address
                                    (optional), the other end opened by the
                                    manager with af_packet; much faster than tap
    "pci:0000:00:04.0"              a real NIC, only when named like this
"""
import ipaddress
import os
import re
import subprocess
import zlib

from . import limits

KINDS = {"ring": limits.ONVM_PORT_RING, "null": limits.ONVM_PORT_NULL, "pcap": limits.ONVM_PORT_PCAP,
         "tap": limits.ONVM_PORT_TAP, "pci": limits.ONVM_PORT_PCI, "veth": limits.ONVM_PORT_VETH}


def parse_port(spec):
    """(kind, devargs) for a port spec; ValueError naming what is wrong."""
    if not isinstance(spec, str):
        raise ValueError("port spec must be a string like 'ring' or 'pcap:rx=in.pcap', got %r" % (spec,))
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError("unknown port kind %r in %r (ring, null, pcap, tap, veth, pci)" % (kind, spec))
    if kind == "ring":
        if rest:
            raise ValueError("a ring port takes no arguments: %r" % spec)
        return KINDS[kind], ""
    if kind == "null":
        return KINDS[kind], rest
    if kind == "pcap":
        args = []
        for kv in filter(None, rest.split(",")):
            k, _, v = kv.partition("=")
            if k not in ("rx", "tx") or not v:
                raise ValueError("pcap port arguments are rx=FILE and tx=FILE, got %r" % kv)
            v = os.path.abspath(v)
            if k == "rx" and not os.path.exists(v):
                raise ValueError("pcap port: no such file %s" % v)
            args.append("%s_pcap=%s" % (k, v))
        if not args:
            raise ValueError("a pcap port needs rx=FILE and/or tx=FILE: %r" % spec)
        return KINDS[kind], ",".join(args)
    if kind == "tap":
        return KINDS[kind], "iface=" + tap_place(spec)[0]
    if kind == "veth":
        return KINDS[kind], "iface=" + veth_place(spec)[3]
    if not re.fullmatch(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]", rest):
        raise ValueError("pci port needs a full PCI address like pci:0000:00:04.0, got %r" % spec)
    return KINDS[kind], rest


NETNS_DIR = "/var/run/netns"      # where `ip netns` keeps named namespaces


def tap_place(spec):
    """(interface, namespace, address) of a tap port spec
    "tap:NAME[@NS[=ADDRESS/PREFIX]]"; namespace and address are None when
    not given.  An address needs a namespace: onvm never adds addresses to
    this machine's own network.  raises: ValueError naming what is wrong."""
    return _place(spec, "tap")


def veth_place(spec):
    """(interface, namespace, address, host end) of a veth port spec
    "veth:NAME@NS[=ADDRESS/PREFIX]": the pair's end NAME goes into NS (which
    must exist, and must not have a NAME yet); the manager opens the other
    end, host end, named onvm + 8 hex digits after NS and NAME, in its own
    namespace.  raises: ValueError naming what is wrong."""
    iface, ns, addr = _place(spec, "veth")
    if ns is None:
        raise ValueError("veth port %r needs a namespace for its end: veth:%s@NS=ADDRESS/PREFIX (onvm puts no "
                         "interface of its own into this machine's network)" % (spec, iface))
    host = veth_host_name(ns, iface)
    if _link_exists(host):
        raise ValueError("veth port %r: its pair exists already (%s here): a manager using it runs, or one "
                         "that died left it (onvm cleanup removes it)" % (spec, host))
    if _link_exists(iface, ns):
        raise ValueError("veth port %r: the namespace %r has an interface %r already; choose another name"
                         % (spec, ns, iface))
    return iface, ns, addr, host


def veth_host_name(ns, iface):
    """The name of the manager's end of the veth pair for NAME@NS."""
    return "onvm%08x" % zlib.crc32(("%s/%s" % (ns, iface)).encode())


def _link_exists(iface, ns=None):
    argv = ["ip"] + (["-n", ns] if ns else []) + ["link", "show", "dev", iface]
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except OSError as e:
        raise ValueError("cannot run ip (iproute2) to look for interface %s: %s" % (iface, e)) from None


def _place(spec, kind):
    rest = spec.partition(":")[2]
    rest, _, addr = rest.partition("=")
    iface, at, ns = rest.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", iface) or iface in (".", ".."):
        raise ValueError("%s port needs an interface name of 1..15 characters (letters, digits, _ . -): %r"
                         % (kind, spec))
    if not at:
        if addr:
            raise ValueError("%s port %r: an address needs a namespace, %s:%s@NS=%s (onvm adds no "
                             "address to this machine's own network)" % (kind, spec, kind, iface, addr))
        return iface, None, None
    check_netns_name(ns)
    if not os.path.exists(os.path.join(NETNS_DIR, ns)):
        raise ValueError("%s port %r: no network namespace %r; create it first with onvm.Namespace(%r)"
                         % (kind, spec, ns, ns))
    if not addr:
        return iface, ns, None
    try:
        if "/" not in addr:
            raise ValueError("no prefix length")
        ipaddress.ip_interface(addr)
    except ValueError:
        raise ValueError("%s port %r: bad address %r; give ADDRESS/PREFIX, e.g. 10.0.0.1/24" % (kind, spec, addr)) \
            from None
    return iface, ns, addr


def check_netns_name(name):
    """A namespace name as `ip netns` takes it; raises ValueError."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
        raise ValueError("a network namespace name is 1..32 letters, digits, - or _, got %r" % (name,))
    return name
