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
            return Request(msg_type, xid, mp_type=mp_type, flags=flags)
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
