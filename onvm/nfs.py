"""NFs shipped as Python functions, made by factories that take their
configuration:

    mgr.launch(onvm.nfs.responder("10.0.0.2"), service=2)
"""
import ipaddress
import re

from .common.packet import NEXT, ToPort
from .common.spec import NFSpec

__all__ = ["responder"]


def _fold(s):
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def _ip_checksum(hdr):
    s = sum(int.from_bytes(hdr[i:i + 2], "big") for i in range(0, len(hdr), 2))
    return ~_fold(s) & 0xffff


def responder(address, mac=None, service=None, name="responder"):
    """An NF that answers ARP requests and ICMP echo requests for an IPv4
    address, as a host on the chain's side would: the reply goes back out
    of the port the request came in on.  Anything else goes on (NEXT).

    param address: the IPv4 address it answers for, e.g. "10.0.0.2"
    param mac: its MAC address (default 02:00 and the address's 4 bytes,
        locally administered)
    returns: an NFSpec for mgr.launch() or a graph node
    raises: ValueError for a bad address or MAC

    >>> responder("10.0.0.2").name
    'responder'"""
    try:
        ip = ipaddress.IPv4Address(address).packed
    except ValueError:
        raise ValueError("responder: %r is not an IPv4 address" % (address,)) from None
    if mac is None:
        hw = b"\x02\x00" + ip
    elif isinstance(mac, str) and re.fullmatch(r"([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}", mac):
        hw = bytes.fromhex(mac.replace(":", ""))
    else:
        raise ValueError("responder: mac must look like 02:00:0a:00:00:02, got %r" % (mac,))
    arp_request = b"\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01"   # ethertype ARP, Ethernet/IPv4, who-has

    def respond(pkt):
        d = pkt.data
        if len(d) >= 42 and d[12:22] == arp_request and d[38:42] == ip:
            sender = bytes(d[22:32])                  # its MAC and IP
            d[0:6] = sender[:6]
            d[6:12] = hw
            d[21] = 2                                 # is-at
            d[22:28] = hw
            d[28:32] = ip
            d[32:42] = sender
            return ToPort(pkt.port)
        if len(d) < 34 or d[12:14] != b"\x08\x00" or d[23] != 1 or d[30:34] != ip:
            return NEXT
        ihl = (d[14] & 15) * 4
        if ihl < 20 or len(d) < 14 + ihl + 8 or d[14 + ihl] != 8 or d[20] & 0x3f or d[21]:
            return NEXT                               # not an unfragmented echo request
        src = bytes(d[26:30])
        d[0:6] = bytes(d[6:12])
        d[6:12] = hw
        d[26:30] = ip
        d[30:34] = src
        d[22] = 64                                    # TTL
        d[24:26] = b"\0\0"
        d[24:26] = _ip_checksum(d[14:14 + ihl]).to_bytes(2, "big")
        icmp = 14 + ihl
        d[icmp] = 0                                   # echo reply: the type word drops by 0x0800
        old = int.from_bytes(d[icmp + 2:icmp + 4], "big")
        d[icmp + 2:icmp + 4] = (~_fold((~old & 0xffff) + (~0x0800 & 0xffff)) & 0xffff).to_bytes(2, "big")
        return ToPort(pkt.port)

    return NFSpec(respond, service=service, name=name)
