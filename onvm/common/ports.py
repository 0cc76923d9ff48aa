"""Port specifications, as users write them:
    "ring"                          in-memory port: inject() and capture()
    "null"                          DPDK's null device (drops what it sends)
    "pcap:rx=in.pcap,tx=out.pcap"   replay a pcap file / record into one
    "tap:NAME"                      a kernel TAP interface called NAME
    "tap:NAME@NS=10.0.0.1/24"       the same, made inside the network namespace NS
                                    (see onvm.Namespace), with that address
    "pci:0000:00:04.0"              a real NIC, only when named like this
"""
import ipaddress
import os
import re

from .abi import lib

KINDS = {"ring": lib.ONVM_PORT_RING, "null": lib.ONVM_PORT_NULL, "pcap": lib.ONVM_PORT_PCAP,
         "tap": lib.ONVM_PORT_TAP, "pci": lib.ONVM_PORT_PCI}


def parse_port(spec):
    """(kind, devargs) for a port spec; ValueError naming what is wrong."""
    if not isinstance(spec, str):
        raise ValueError("port spec must be a string like 'ring' or 'pcap:rx=in.pcap', got %r" % (spec,))
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise ValueError("unknown port kind %r in %r (ring, null, pcap, tap, pci)" % (kind, spec))
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
    if not re.fullmatch(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]", rest):
        raise ValueError("pci port needs a full PCI address like pci:0000:00:04.0, got %r" % spec)
    return KINDS[kind], rest


NETNS_DIR = "/var/run/netns"      # where `ip netns` keeps named namespaces


def tap_place(spec):
    """(interface, namespace, address) of a tap port spec
    "tap:NAME[@NS[=ADDRESS/PREFIX]]"; namespace and address are None when
    not given.  An address needs a namespace: onvm never adds addresses to
    this machine's own network.  raises: ValueError naming what is wrong."""
    rest = spec.partition(":")[2]
    rest, _, addr = rest.partition("=")
    iface, at, ns = rest.partition("@")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", iface):
        raise ValueError("tap port needs an interface name of 1..15 characters (letters, digits, _ . -): %r"
                         % spec)
    if not at:
        if addr:
            raise ValueError("tap port %r: an address needs a namespace, tap:%s@NS=%s (onvm adds no "
                             "address to this machine's own network)" % (spec, iface, addr))
        return iface, None, None
    check_netns_name(ns)
    if not os.path.exists(os.path.join(NETNS_DIR, ns)):
        raise ValueError("tap port %r: no network namespace %r; create it first with onvm.Namespace(%r)"
                         % (spec, ns, ns))
    if not addr:
        return iface, ns, None
    try:
        if "/" not in addr:
            raise ValueError("no prefix length")
        ipaddress.ip_interface(addr)
    except ValueError:
        raise ValueError("tap port %r: bad address %r; give ADDRESS/PREFIX, e.g. 10.0.0.1/24" % (spec, addr)) \
            from None
    return iface, ns, addr


def check_netns_name(name):
    """A namespace name as `ip netns` takes it; raises ValueError."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", name):
        raise ValueError("a network namespace name is 1..32 letters, digits, - or _, got %r" % (name,))
    return name
