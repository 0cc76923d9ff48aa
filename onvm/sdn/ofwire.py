"""OpenFlow 1.3 messages for the switch side, with os-ken's classes.

os-ken is a controller: it serialises what a controller sends (flow-mod,
packet-out, echo...) and parses what a switch sends (packet-in,
features-reply...).  The SDN NF is the switch, so it needs the other half.
The subclasses here add the missing `_serialize_body` to os-ken's own
message classes, with os-ken's pack strings and match/port encoders, and
`parse` decodes the controller's messages os-ken has no parser for the same
way; each encoder's bytes parse back through os-ken's own parser
(tests/test_sdn.py checks that)."""
import struct

from os_ken.lib import addrconv
from os_ken.lib.pack_utils import msg_pack_into
from os_ken.ofproto import ofproto_parser, ofproto_protocol
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

DP = ofproto_protocol.ProtocolDesc(ofp.OFP_VERSION)   # what os-ken's classes need to (de)serialise


class PacketIn(parser.OFPPacketIn):
    def _serialize_body(self):
        off = ofp.OFP_PACKET_IN_SIZE - ofp.OFP_MATCH_SIZE
        self.match.serialize(self.buf, off)   # padded to 8 bytes
        msg_pack_into(ofp.OFP_PACKET_IN_PACK_STR, self.buf, ofp.OFP_HEADER_SIZE, self.buffer_id,
                      self.total_len, self.reason, self.table_id, self.cookie)
        self.buf += b"\0\0" + bytes(self.data)


class SwitchFeatures(parser.OFPSwitchFeatures):
    def _serialize_body(self):
        msg_pack_into(ofp.OFP_SWITCH_FEATURES_PACK_STR, self.buf, ofp.OFP_HEADER_SIZE, self.datapath_id,
                      self.n_buffers, self.n_tables, self.auxiliary_id, self.capabilities, 0)


class GetConfigReply(parser.OFPGetConfigReply):
    def _serialize_body(self):
        msg_pack_into(ofp.OFP_SWITCH_CONFIG_PACK_STR, self.buf, ofp.OFP_HEADER_SIZE, self.flags,
                      self.miss_send_len)


class FlowRemoved(parser.OFPFlowRemoved):
    def _serialize_body(self):
        msg_pack_into(ofp.OFP_FLOW_REMOVED_PACK_STR0, self.buf, ofp.OFP_HEADER_SIZE, self.cookie, self.priority,
                      self.reason, self.table_id, self.duration_sec, self.duration_nsec, self.idle_timeout,
                      self.hard_timeout, self.packet_count, self.byte_count)
        self.match.serialize(self.buf, ofp.OFP_FLOW_REMOVED_SIZE - ofp.OFP_MATCH_SIZE)


def port(port_no, name, hw_addr="00:00:00:00:00:00"):
    """An OFPPort: up, 10G copper (the numbers a controller shows)."""
    feat = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
    return parser.OFPPort(port_no=port_no, hw_addr=hw_addr, name=name.encode()[:15], config=0,
                          state=ofp.OFPPS_LIVE, curr=feat, advertised=feat, supported=feat, peer=0,
                          curr_speed=10000000, max_speed=10000000)


def _pack_port(p):
    return struct.pack(ofp.OFP_PORT_PACK_STR, p.port_no, addrconv.mac.text_to_bin(p.hw_addr), p.name, p.config,
                       p.state, p.curr, p.advertised, p.supported, p.peer, p.curr_speed, p.max_speed)


class PortStatus(parser.OFPPortStatus):
    def _serialize_body(self):
        self.buf += struct.pack("!B7x", self.reason) + _pack_port(self.desc)


class PortDescReply(parser.OFPPortDescStatsReply):
    def _serialize_body(self):
        msg_pack_into(ofp.OFP_MULTIPART_REPLY_PACK_STR, self.buf, ofp.OFP_HEADER_SIZE, ofp.OFPMP_PORT_DESC,
                      self.flags or 0)
        self.buf += b"".join(_pack_port(p) for p in self.body)


class DescReply(parser.OFPDescStatsReply):
    def _serialize_body(self):
        msg_pack_into(ofp.OFP_MULTIPART_REPLY_PACK_STR, self.buf, ofp.OFP_HEADER_SIZE, ofp.OFPMP_DESC, self.flags or 0)
        d = self.body
        self.buf += struct.pack(ofp.OFP_DESC_PACK_STR, d.mfr_desc, d.hw_desc, d.sw_desc, d.serial_num, d.dp_desc)


def _multipart_reply(mp_type, body, xid, flags=0):
    length = ofp.OFP_MULTIPART_REPLY_SIZE + len(body)
    return struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, length, xid) + \
        struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, mp_type, flags) + body


def hello(xid):
    """Our hello: version 1.3, and a version bitmap saying only 1.3."""
    elem = struct.pack("!HHI", ofp.OFPHET_VERSIONBITMAP, 8, 1 << ofp.OFP_VERSION)
    return struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_HELLO, 8 + len(elem), xid) + elem


def hello_versions(buf):
    """The versions a peer's hello offers: its bitmap if it has one, else
    every version up to its header's."""
    version, _, length, _ = header(buf)
    off = ofp.OFP_HEADER_SIZE
    while off + 4 <= min(length, len(buf)):
        etype, elen = struct.unpack_from("!HH", buf, off)
        if elen < 4:
            break
        if etype == ofp.OFPHET_VERSIONBITMAP:
            bits = 0
            for k in range((elen - 4) // 4):
                bits |= struct.unpack_from("!I", buf, off + 4 + 4 * k)[0] << (32 * k)
            return {v for v in range(bits.bit_length()) if bits >> v & 1}
        off += (elen + 7) // 8 * 8
    return set(range(1, version + 1))


def flow_stats_reply(entries, xid):
    """entries: (duration, priority, idle, hard, flags, cookie, packets,
    bytes, OFPMatch, [OFPInstruction]) tuples."""
    body = bytearray()
    for dur, prio, idle, hard, flags, cookie, packets, nbytes, match, insts in entries:
        m = bytearray()
        match.serialize(m, 0)
        ins = bytearray()
        for i in insts:
            i.serialize(ins, len(ins))
        length = ofp.OFP_FLOW_STATS_0_SIZE + len(m) + len(ins)
        body += struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, length, 0, int(dur), int(dur % 1 * 1e9), prio, idle,
                            hard, flags, cookie, packets, nbytes) + m + ins
    return _multipart_reply(ofp.OFPMP_FLOW, bytes(body), xid)


def aggregate_reply(packets, nbytes, flows, xid):
    return _multipart_reply(ofp.OFPMP_AGGREGATE, struct.pack(ofp.OFP_AGGREGATE_STATS_REPLY_PACK_STR, packets,
                                                             nbytes, flows), xid)


UNKNOWN = 0xffffffffffffffff     # a counter this switch does not keep (OpenFlow: all ones)


def port_stats_reply(ports, xid):
    """ports: (port_no, rx, tx, rx_dropped, tx_dropped, duration) tuples."""
    body = b"".join(struct.pack(ofp.OFP_PORT_STATS_PACK_STR, no, rx, tx, UNKNOWN, UNKNOWN, rx_drop, tx_drop,
                                UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, int(dur),
                                int(dur % 1 * 1e9))
                    for no, rx, tx, rx_drop, tx_drop, dur in ports)
    return _multipart_reply(ofp.OFPMP_PORT_STATS, body, xid)


def table_stats_reply(active, lookups, matched, xid):
    return _multipart_reply(ofp.OFPMP_TABLE, struct.pack(ofp.OFP_TABLE_STATS_PACK_STR, 0, active, lookups,
                                                         matched), xid)


def encode(msg, xid=0):
    """The bytes of an os-ken message (xid: the request's, for a reply)."""
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


# ---- what the controller sends --------------------------------------------------------

class Request:
    """A controller message os-ken has no switch-side parser for: its
    header, and what the switch needs of its body."""

    def __init__(self, msg_type, xid, **fields):
        self.msg_type, self.xid = msg_type, xid
        self.__dict__.update(fields)

    def __repr__(self):
        return "<Request type=%d xid=%d>" % (self.msg_type, self.xid)


def header(buf):
    """(version, type, length, xid) of the message starting buf."""
    return ofproto_parser.header(buf)


def parse(buf):
    """One whole message -> an os-ken message object (hello, echo,
    flow-mod...) or a Request (packet-out, features, multipart, config,
    barrier).  raises ValueError for what cannot be decoded."""
    version, msg_type, length, xid = header(buf)
    if version != ofp.OFP_VERSION and msg_type != ofp.OFPT_HELLO:
        raise ValueError("OpenFlow version %#x; this switch speaks 1.3 (0x04)" % version)
    body = ofp.OFP_HEADER_SIZE
    try:
        if msg_type == ofp.OFPT_PACKET_OUT:
            buffer_id, in_port, actions_len = struct.unpack_from(ofp.OFP_PACKET_OUT_PACK_STR, buf, body)
            actions, off = [], ofp.OFP_PACKET_OUT_SIZE
            while off < ofp.OFP_PACKET_OUT_SIZE + actions_len:
                a = parser.OFPAction.parser(buf, off)
                actions.append(a)
                off += a.len
            return Request(msg_type, xid, buffer_id=buffer_id, in_port=in_port, actions=actions, data=buf[off:])
        if msg_type == ofp.OFPT_MULTIPART_REQUEST:
            mp_type, flags = struct.unpack_from(ofp.OFP_MULTIPART_REQUEST_PACK_STR, buf, body)
            req = Request(msg_type, xid, mp_type=mp_type, flags=flags)
            off = ofp.OFP_MULTIPART_REQUEST_SIZE
            if mp_type in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
                (req.table_id, req.out_port, req.out_group, req.cookie,
                 req.cookie_mask) = struct.unpack_from(ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR, buf, off)
                req.match = parser.OFPMatch.parser(buf, off + ofp.OFP_FLOW_STATS_REQUEST_0_SIZE)
            elif mp_type == ofp.OFPMP_PORT_STATS:
                req.port_no = struct.unpack_from(ofp.OFP_PORT_STATS_REQUEST_PACK_STR, buf, off)[0]
            return req
        if msg_type == ofp.OFPT_SET_CONFIG:
            flags, miss_send_len = struct.unpack_from(ofp.OFP_SWITCH_CONFIG_PACK_STR, buf, body)
            return Request(msg_type, xid, flags=flags, miss_send_len=miss_send_len)
        if msg_type in (ofp.OFPT_FEATURES_REQUEST, ofp.OFPT_GET_CONFIG_REQUEST, ofp.OFPT_BARRIER_REQUEST):
            return Request(msg_type, xid)
        if msg_type in (ofp.OFPT_HELLO, ofp.OFPT_ECHO_REQUEST, ofp.OFPT_ECHO_REPLY, ofp.OFPT_FLOW_MOD,
                        ofp.OFPT_ERROR, ofp.OFPT_EXPERIMENTER):
            msg = parser.msg_parser(DP, version, msg_type, length, xid, buf)
            if msg is not None:
                return msg
    except (struct.error, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError("malformed OpenFlow message (type %d): %s" % (msg_type, e)) from None
    return Request(msg_type, xid)      # a type this switch does not handle: answered with an error
