"""Port specifications, as users write them:
    "ring"                          in-memory port: inject() and capture()
    "null"                          DPDK's null device (drops what it sends)
    "pcap:rx=in.pcap,tx=out.pcap"   replay a pcap file / record into one
    "tap:NAME"                      a kernel TAP interface called NAME
    "pci:0000:00:04.0"              a real NIC, only when named like this
"""
import os
import re

from ._core import lib

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
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", rest):
            raise ValueError("tap port needs an interface name of 1..15 characters: %r" % spec)
        return KINDS[kind], "iface=" + rest
    if not re.fullmatch(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]", rest):
        raise ValueError("pci port needs a full PCI address like pci:0000:00:04.0, got %r" % spec)
    return KINDS[kind], rest
