"""The SDN NF: an OpenFlow 1.3 switch whose flow table is kept in the NF and
cached in onvm's flow director.

It is the manager's miss handler: every packet no flow-director rule takes
comes here and goes through the OpenFlow table (table.py, table 0).  The
entry it matches decides: outputs to manager ports (FLOOD, ALL, IN_PORT:
copies), a chain of services ending at a port, the default path, or the
controller (a packet-in: held here, "buffered", or sent whole with
OFPCML_NO_BUFFER).  No entry (no table-miss entry installed): the port's
default path.  When an IPv4 packet's decision is one chain (services, then
one port), the NF caches it as an exact flow-director rule for that
5-tuple from that ingress port, so the flow's later packets skip the NF;
a flow-mod that changes what a cached packet would get removes the rule.

OpenFlow port numbers: manager port p is OpenFlow port p + 1 (named by the
manager); service s is the logical port SERVICE_BASE + s (named by its
graph node, else "svc:s"); SERVICE_BASE itself, "default", is the ingress
port's default path.  docs/openflow.md has every message."""
import collections
import queue
import socket
import threading
import time
import zlib

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from ..common.abi import ffi, lib
from ..common.errors import OnvmError
from ..common.hop import Hop
from ..common.match import NF_QUOTA, Match
from ..common.packet import DROP, NEXT, Packet
from ..nflib import context
from ..nflib import door as nfdoor
from . import ofwire
from .table import DEFAULT_PATH, SERVICE_BASE, Decision, OFError, Table, normalize, outputs, packet_fields

BACKOFF = (0.1, 2.0)            # reconnect after 0.1 s, doubling up to 2 s
CACHE_IDLE = 10                 # seconds: a cached decision of an entry without idle timeout
# app counters (NF stats "app"): packet-ins sent, packets parked, packets past
# the buffer (default path), flow-mods applied
APP = ("packet_in", "buffered", "overflow", "flow_mod")


class Switch:
    """The SDN NF's code; launched with Manager.launch(onvm.sdn.nf(...)).

    param controller: "HOST:PORT" of an OpenFlow 1.3 controller
    param buffer: packets held at most while decisions are pending
    param decision_timeout: seconds a parked packet waits for the
        controller before it takes the default path"""

    def __init__(self, controller="127.0.0.1:6653", buffer=1024, decision_timeout=2.0, datapath_id=None,
                 echo_interval=5.0):
        host, _, port = controller.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("controller=%r: give HOST:PORT, e.g. 127.0.0.1:6653" % (controller,))
        if isinstance(buffer, bool) or not isinstance(buffer, int) or not 0 <= buffer <= lib.ONVM_NF_PARK_MAX:
            raise ValueError("buffer is 0..%d packets, got %r" % (lib.ONVM_NF_PARK_MAX, buffer))
        if not isinstance(decision_timeout, (int, float)) or not 0 < decision_timeout <= 60:
            raise ValueError("decision_timeout is 0..60 seconds, got %r" % (decision_timeout,))
        if isinstance(echo_interval, bool) or not isinstance(echo_interval, (int, float)) or \
                not 0.1 <= echo_interval <= 3600:
            raise ValueError("echo_interval is 0.1..3600 seconds, got %r" % (echo_interval,))
        self.address = (host, int(port))
        self.buffer = buffer
        self.decision_timeout = float(decision_timeout)
        self.datapath_id = datapath_id
        self.echo_interval = echo_interval
        self.done = False           # after its run: the drain after leaving passes packets on

    def __call__(self, pkt):
        return NEXT

    def onvm_run(self, nf, error):
        """nfrun's loop for this NF: packets and the controller, in turn."""
        if self.done:
            return _pass_through(nf)
        self.done = True
        return _Running(self, nf, error).run()


def _pass_through(nf):
    b = ffi.new("struct onvm_batch *")
    while lib.onvm_nf_rx(nf, b, 200) >= 0:
        lib.onvm_nf_tx(nf, b)
    return 0


class _Connection(threading.Thread):
    """Connects to the controller (again, with backoff, when it goes) and
    queues each whole message it reads; wakes the NF's loop for each."""

    def __init__(self, address, nf, events):
        super().__init__(daemon=True, name="openflow")
        self.address, self.nf, self.events = address, nf, events
        self.stopping = threading.Event()
        self.sock = None
        self.lock = threading.Lock()

    def run(self):
        delay = BACKOFF[0]
        while not self.stopping.is_set():
            try:
                s = socket.create_connection(self.address, timeout=1.0)
            except OSError:
                self.stopping.wait(delay)
                delay = min(delay * 2, BACKOFF[1])
                continue
            delay = BACKOFF[0]
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sock = s
            self.post(("up", s))
            self.read(s)
            with self.lock:
                self.sock = None
            s.close()
            self.post(("down", s))
            self.stopping.wait(BACKOFF[0])

    def read(self, s):
        """Queue whole messages (by the header's length) until the
        connection ends or makes no sense."""
        buf = b""
        while not self.stopping.is_set():
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while len(buf) >= 8 and len(buf) >= int.from_bytes(buf[2:4], "big"):
                length = int.from_bytes(buf[2:4], "big")
                if length < 8:
                    return                  # a broken controller: drop the connection
                self.post(("msg", buf[:length]))
                buf = buf[length:]

    def post(self, ev):
        self.events.put(ev)
        lib.onvm_nf_wake(self.nf)

    def send(self, data):
        with self.lock:
            s = self.sock
        if s is None:
            return False
        try:
            s.sendall(data)
            return True
        except OSError:
            self.drop()
            return False

    def drop(self):
        with self.lock:
            s = self.sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopping.set()
        self.drop()




def _code(action, dest=0):
    return (action << 16) | dest


NEXT_CODE, DROP_CODE = NEXT.code, DROP.code
NO_PORT = 0xffff                # a packet-out's in_port that is no manager port


class _Running:
    """One run of the SDN NF: its state between packets and messages."""

    def __init__(self, sw, nf, error):
        self.sw, self.nf, self.error = sw, nf, error
        self.app = lib.onvm_nf_app(nf)
        self.door = nfdoor.DoorClient(context.door)   # nf.sock: the catalogue's NF-door ops
        self.cf = context.control_file()
        self.nb_ports = self.cf.shm.nb_ports
        self.service = context.current.service
        name = "%s/%d" % (context.manager, self.service)
        self.dpid = sw.datapath_id if sw.datapath_id is not None else zlib.crc32(name.encode())
        self.events = queue.Queue()
        self.conn = _Connection(sw.address, nf, self.events)
        self.ready = False          # the controller has our features (and ports): packet-ins go out
        self.ready_at = None
        self.hello = False          # the controller's hello offered 1.3
        self.sock = None
        self.miss_send_len = 128
        self.table = Table()
        self.pending = {}           # a held flow's key -> its buffer ID
        self.buffers = collections.OrderedDict()   # buffer ID -> [key, [(handle, frame, port)], time]
        self.parked = 0
        self.next_buffer = 1
        # decisions cached in the flow director: (5-tuple, ingress port) ->
        # [rule ID, serial, entry, packet fields, decision]
        self.cache = {}
        self.serials = {}           # rule serial -> cache key
        self.to_cache = []          # decisions to cache once the batch has gone on (order kept)
        self.uncacheable = set()    # keys the manager refused (another port's rule has the 5-tuple...)
        self.ports = {}             # OpenFlow port number -> name, as last told to the controller
        self.last_heard = self.next_echo = self.next_poll = 0.0
        self.started = time.monotonic()
        self.xid = 1
        self.max_priority = lib.ONVM_FLOW_MAX_PRIORITY

    # ---- the loop ---------------------------------------------------------------

    def run(self):
        # The operator granted us the role at launch (onvm.sdn.nf asks for it);
        # the answer says the highest priority our rules may have.
        got = self.door.flow_miss(on=True)
        self.max_priority = got["max_priority"]
        self.conn.start()
        b = ffi.new("struct onvm_batch *")
        try:
            while True:
                n = lib.onvm_nf_rx(self.nf, b, 100)
                if n < 0:
                    break
                if n:
                    self.on_packets(b, n)
                    lib.onvm_nf_tx(self.nf, b)
                    self.flush_cache()
                self.on_events()
                self.on_timers()
        finally:
            self.conn.stop()
            try:
                self.door.flow_miss(on=False)
            except (OnvmError, ValueError):
                pass            # the manager is gone
            self.release_all()
        return 0

    def on_packets(self, b, n):
        for i in range(n):
            pkt = Packet(b, i)
            raw = bytes(pkt.data)
            codes = self.route(raw, pkt.port, park=(b, i))
            if codes is None:
                continue                        # held for the controller
            b.verdict[i] = codes[0]
            if len(codes) > 1:
                self.copies(raw, pkt.port, codes[1:])

    def copies(self, raw, port, codes):
        """New packets with raw's bytes, one per verdict (a pool too empty
        for them counts as the NF's errors)."""
        for i in range(0, len(codes), 32):          # a burst at a time
            part = codes[i:i + 32]
            if lib.onvm_nf_send_bytes(self.nf, raw, len(raw), port, ffi.new("uint32_t[]", part), len(part)) < 0:
                lib.onvm_nf_count_errors(self.nf, len(part))

    def route(self, raw, port, park=None, back=False):
        """The verdicts for one frame from manager port `port` (NO_PORT: from
        the controller): the first for the frame, the others for copies.
        park=(batch, i): a frame of the batch, which may be held for the
        controller (returns None).  back: the controller sent it back to the
        table; an entry that would send it to the controller again gives the
        default path instead (no loop)."""
        pf = packet_fields(raw, port + 1 if port != NO_PORT else ofp.OFPP_CONTROLLER)
        e = self.table.lookup(pf)
        if e is None:
            return [NEXT_CODE]                  # no table-miss entry: the port's default path
        e.last = time.monotonic()
        d = Decision(e.outs, port, self.nb_ports)
        others = d.services or d.ports or d.default
        if d.controller is not None:
            if back or not self.ready:
                if not others:
                    return [NEXT_CODE]          # no controller to ask: the default path
            elif not others and park is not None and d.controller != ofp.OFPCML_NO_BUFFER:
                e.packets += 1
                e.bytes += len(raw)
                return self.hold(raw, port, pf, e, d.controller, *park)
            else:
                self.packet_in(raw, port, e, ofp.OFP_NO_BUFFER, ofp.OFPCML_NO_BUFFER)
                if not others:
                    e.packets += 1
                    e.bytes += len(raw)
                    return [DROP_CODE]          # the controller has it whole; it may packet-out it
        count = True
        if d.services:
            if d.ports and self.cache_now(raw, port, pf, e, d):
                codes, count = [NEXT_CODE], False   # the new rule takes it, and counts it
            else:
                codes = [_code(lib.ONVM_TO_SERVICE, d.services[0])]
        else:
            codes = ([NEXT_CODE] if d.default else []) + [_code(lib.ONVM_TO_PORT, q) for q in d.ports]
            if len(codes) == 1 and d.ports and d.controller is None:
                self.to_cache.append((raw, port, pf, e, d))
        if count:
            e.packets += 1
            e.bytes += len(raw)
        return codes or [DROP_CODE]

    def hold(self, raw, port, pf, e, max_len, b, i):
        """Park a frame for the controller: the first of its flow goes out
        as a packet-in, the others wait with it.  Past the buffer: the
        default path (counted as overflow)."""
        key = (port, pf.get("eth_src"), pf.get("eth_dst"), pf.get("eth_type"), pf.get("ipv4_src"),
               pf.get("ipv4_dst"), pf.get("ip_proto"), pf.get("tcp_src", pf.get("udp_src", pf.get("sctp_src"))),
               pf.get("tcp_dst", pf.get("udp_dst", pf.get("sctp_dst"))))
        if self.parked >= self.sw.buffer:
            self.app[2] += 1
            return [NEXT_CODE]
        h = lib.onvm_nf_park(self.nf, b, i)
        if h < 0:
            self.app[2] += 1
            return [NEXT_CODE]
        self.parked += 1
        self.app[1] += 1
        bid = self.pending.get(key)
        if bid is not None:
            self.buffers[bid][1].append((h, raw, port))
            return None
        bid = self.next_buffer
        self.next_buffer = self.next_buffer % 0xfffffff0 + 1
        self.pending[key] = bid
        self.buffers[bid] = [key, [(h, raw, port)], time.monotonic()]
        self.packet_in(raw, port, e, bid, max_len)
        return None

    def packet_in(self, raw, port, e, bid, max_len):
        data = raw if bid == ofp.OFP_NO_BUFFER or max_len == ofp.OFPCML_NO_BUFFER else raw[:max_len]
        reason = ofp.OFPR_NO_MATCH if e is not None and e.table_miss else ofp.OFPR_ACTION
        match = parser.OFPMatch(in_port=port + 1) if port != NO_PORT else parser.OFPMatch()
        self.send(ofwire.PacketIn(ofwire.DP, buffer_id=bid, total_len=len(raw), reason=reason, table_id=0,
                                  cookie=e.cookie if e is not None else 0xffffffffffffffff, match=match, data=data))
        self.app[0] += 1

    def release(self, bid, outs=None):
        """Hand a buffer's parked frames on: through the table (outs None),
        or to a packet-out's outputs."""
        key, items, _ = self.buffers.pop(bid)
        self.pending.pop(key, None)
        hs, vs = [], []
        for h, raw, port in items:
            codes = self.route(raw, port, back=True) if outs is None else self.out_codes(outs, raw, port)
            hs.append(h)
            vs.append(codes[0])
            if len(codes) > 1:
                self.copies(raw, port, codes[1:])
        self.unpark(hs, vs)
        self.flush_cache()

    def unpark(self, hs, vs):
        n = len(hs)
        lib.onvm_nf_unpark(self.nf, ffi.new("uint32_t[]", hs), ffi.new("uint32_t[]", vs), n)
        self.parked -= n

    def release_all(self):
        """No one will decide: every held frame takes the default path."""
        for bid in list(self.buffers):
            self.release_default(bid)

    def release_default(self, bid):
        key, items, _ = self.buffers.pop(bid)
        self.pending.pop(key, None)
        self.unpark([h for h, _, _ in items], [NEXT_CODE] * len(items))

    # ---- decisions cached in the flow director ---------------------------------

    def cache_now(self, raw, port, pf, e, d):
        """An exact flow-director rule for this frame's 5-tuple from its
        port, following decision d (services, then one port).  It assumes
        what OpenFlow would match besides the 5-tuple and the port (the
        Ethernet addresses) stays the same within a flow.  returns: whether
        the rule is in place."""
        if pf.get("eth_type") != 0x0800 or e not in self.table.entries or port == NO_PORT:
            return False
        try:
            m = Match.of(raw)
        except ValueError:
            return False
        if not m.exact:
            return False                        # a fragment: no ports to key it on
        key = (m.src, m.dst, m.proto, m.sport, m.dport, port)
        if key in self.cache:
            return True
        if key in self.uncacheable:
            return False
        now = time.monotonic()
        hard = 0
        if e.hard:
            hard = int((e.t0 + e.hard - now) * 1000)
            if hard <= 0:
                return False
        chain = [[lib.ONVM_TO_SERVICE, s] for s in d.services] + [[lib.ONVM_TO_PORT, d.ports[0]]]
        try:
            rule = self.door.flow_add(match=m.wire(), chain=chain, priority=min(e.priority, self.max_priority),
                                      idle_timeout=(e.idle or CACHE_IDLE) * 1000, hard_timeout=hard,
                                      in_ports=1 << port)["rule"]
        except (OnvmError, ValueError) as err:
            if len(self.uncacheable) > 4096:
                self.uncacheable.clear()
            self.uncacheable.add(key)
            print("sdn: not cached (the NF handles this flow): %s" % err, flush=True)
            return False
        self.cache[key] = [rule["id"], rule["serial"], e, pf, d.key()]
        self.serials[rule["serial"]] = key
        e.cache.add(key)
        return True

    def flush_cache(self):
        todo, self.to_cache = self.to_cache, []
        for raw, port, pf, e, d in todo:
            self.cache_now(raw, port, pf, e, d)

    def uncache(self, key):
        """Remove a cached rule; what it counted goes to its entry."""
        rid, serial, e, _, _ = self.cache.pop(key)
        self.serials.pop(serial, None)
        e.cache.discard(key)
        try:
            c = self.door.flow_remove(id=rid)["counters"]
            e.packets += c["packets"]
            e.bytes += c["bytes"]
        except (OnvmError, ValueError):
            pass                                # expired meanwhile: its event brings the counters

    def revalidate(self, added=None, modified=()):
        """After the table changed: remove each cached rule whose frame would
        now get another entry (one just added above its own) or another
        decision (its entry modified).  A deleted entry's rules went with it."""
        self.uncacheable.clear()
        if added is not None:
            for key, (_, _, e, pf, _) in list(self.cache.items()):
                if e.priority < added.priority and added.matches(pf):
                    self.uncache(key)
        for e in modified:
            for key in list(e.cache):
                if Decision(e.outs, key[-1], self.nb_ports).key() != self.cache[key][4]:
                    self.uncache(key)

    def flow_events(self):
        """Cached rules that expired or were removed (by anyone)."""
        now = time.monotonic()
        for ev in self.door.flow_events()["events"]:
            key = self.serials.pop(ev["serial"], None)
            if key is None or key not in self.cache:
                continue
            _, _, e, _, _ = self.cache.pop(key)
            e.cache.discard(key)
            e.packets += ev["packets"]
            e.bytes += ev["bytes"]
            if ev["reason"] == "idle":          # its last packet was an idle timeout ago
                e.last = max(e.last, now - (e.idle or CACHE_IDLE))

    def live_counters(self, entries):
        """{entry: (packets, bytes)}: the NF's own counts plus its rules' now."""
        ids = [(e, self.cache[k][0]) for e in entries for k in e.cache]
        out = {e: [e.packets, e.bytes] for e in entries}
        for i in range(0, len(ids), NF_QUOTA):
            part = ids[i:i + NF_QUOTA]
            got = self.door.flow_counters(ids=[rid for _, rid in part])["counters"]
            for (e, _), c in zip(part, got):
                if c is not None:
                    out[e][0] += c["packets"]
                    out[e][1] += c["bytes"]
        return out

    def retire(self, e, reason):
        """Take an entry out (timeout or delete): its rules go, and the
        controller hears of it if the flow-mod asked."""
        self.table.remove(e)
        for key in list(e.cache):
            self.uncache(key)
        if e.flags & ofp.OFPFF_SEND_FLOW_REM and self.sock is not None:
            d = time.monotonic() - e.t0
            self.send(ofwire.FlowRemoved(ofwire.DP, e.cookie, e.priority, reason, 0, int(d), int(d % 1 * 1e9), e.idle,
                                         e.hard, e.packets, e.bytes, e.match))

    # ---- events and timers ------------------------------------------------------

    def on_events(self):
        while True:
            try:
                kind, arg = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "up":
                self.sock = arg
                self.ready = self.hello = False
                self.ready_at = None
                self.last_heard = time.monotonic()
                self.conn.send(ofwire.hello(self.next_xid()))
            elif kind == "down" and arg is self.sock:
                self.sock = None
                self.ready = False
                self.release_all()      # no one will decide: the default path
            elif kind == "msg":
                self.last_heard = time.monotonic()
                try:
                    self.on_message(arg)
                except OFError as e:
                    self.send_error(e.type, e.code, arg, str(e))
                except ValueError as e:
                    self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, arg, str(e))

    def on_timers(self):
        now = time.monotonic()
        while self.buffers:
            bid, (_, _, t0) = next(iter(self.buffers.items()))
            if now - t0 < self.sw.decision_timeout:
                break
            self.release_default(bid)
        if self.sock is not None:
            if not self.ready and self.ready_at is not None and now >= self.ready_at:
                self.ready = True
            if now - self.last_heard > 3 * self.sw.echo_interval:
                self.conn.drop()        # silent for too long: reconnect
            elif now >= self.next_echo:
                self.next_echo = now + self.sw.echo_interval
                self.send(parser.OFPEchoRequest(ofwire.DP, data=b"onvm"))
        if now >= self.next_poll:
            self.next_poll = now + 0.1
            if self.cache:
                self.flow_events()
            for e in [e for e in self.table.entries if e.hard or e.idle]:
                if e.hard and now - e.t0 >= e.hard:
                    self.retire(e, ofp.OFPRR_HARD_TIMEOUT)
                elif e.idle and not e.cache and now - e.last >= e.idle:
                    self.retire(e, ofp.OFPRR_IDLE_TIMEOUT)
            if self.ready:
                self.port_changes()

    # ---- messages ---------------------------------------------------------------

    def next_xid(self):
        xid, self.xid = self.xid, self.xid % 0xffffffff + 1
        return xid

    def send(self, msg, xid=None):
        return self.conn.send(ofwire.encode(msg, self.next_xid() if xid is None else xid))

    def send_error(self, type_, code, request, why=""):
        if why:
            print("sdn: refused a controller message: %s" % why, flush=True)
        self.send(parser.OFPErrorMsg(ofwire.DP, type_=type_, code=code, data=bytes(request[:64])),
                  ofwire.header(request)[3])

    def on_message(self, raw):
        version, t, _, xid = ofwire.header(raw)
        if t == ofp.OFPT_HELLO:
            versions = ofwire.hello_versions(raw)
            if ofp.OFP_VERSION not in versions:
                self.send_error(ofp.OFPET_HELLO_FAILED, ofp.OFPHFC_INCOMPATIBLE, raw,
                                "the controller offers OpenFlow versions %s; this switch speaks 1.3 (0x04)"
                                % sorted(versions))
                self.conn.drop()
            self.hello = True
            return
        if version != ofp.OFP_VERSION:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION,
                          "OpenFlow version %#x; the connection speaks 1.3 (0x04)" % version)
        msg = ofwire.parse(raw)
        if t == ofp.OFPT_ECHO_REQUEST:
            self.send(parser.OFPEchoReply(ofwire.DP, data=msg.data), xid)
        elif t in (ofp.OFPT_ECHO_REPLY, ofp.OFPT_ERROR):
            if t == ofp.OFPT_ERROR:
                print("sdn: the controller sent an error: type %d code %d" % (msg.type, msg.code), flush=True)
        elif t == ofp.OFPT_FEATURES_REQUEST:
            caps = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS
            self.send(ofwire.SwitchFeatures(ofwire.DP, self.dpid, self.sw.buffer, 1, 0, caps), xid)
            self.ready_at = time.monotonic() + 1.0     # or once it has our ports, whichever first
        elif t == ofp.OFPT_SET_CONFIG:
            self.miss_send_len = msg.miss_send_len
        elif t == ofp.OFPT_GET_CONFIG_REQUEST:
            self.send(ofwire.GetConfigReply(ofwire.DP, 0, self.miss_send_len), xid)
        elif t == ofp.OFPT_BARRIER_REQUEST:
            self.send(parser.OFPBarrierReply(ofwire.DP), xid)   # every message is done when read
        elif t == ofp.OFPT_MULTIPART_REQUEST:
            self.on_multipart(msg, raw)
        elif t == ofp.OFPT_FLOW_MOD:
            self.on_flow_mod(msg, raw)
        elif t == ofp.OFPT_PACKET_OUT:
            self.on_packet_out(msg, raw)
        elif t == ofp.OFPT_GROUP_MOD:
            raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, "this switch has no groups")
        elif t == ofp.OFPT_METER_MOD:
            raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS, "this switch has no meters")
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, "message type %d is not supported" % t)

    def on_multipart(self, msg, raw):
        xid, mp = msg.xid, msg.mp_type
        if mp == ofp.OFPMP_PORT_DESC:
            reply = ofwire.PortDescReply(ofwire.DP)
            self.ports = self.port_list()
            reply.body = [ofwire.port(no, name, self.port_mac(no)) for no, name in sorted(self.ports.items())]
            self.send(reply, xid)
            self.ready = True
        elif mp == ofp.OFPMP_DESC:
            reply = ofwire.DescReply(ofwire.DP)
            reply.body = parser.OFPDescStats(b"onvm", b"OpenNetVM-style NF manager", b"onvm.sdn", b"",
                                             context.manager.encode()[:255])
            self.send(reply, xid)
        elif mp in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            if msg.table_id not in (0, ofp.OFPTT_ALL):
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID, "this switch has one table, 0")
            sel = self.table.find(normalize(msg.match), out_port=msg.out_port, cookie=msg.cookie,
                                  cookie_mask=msg.cookie_mask)
            counts = self.live_counters(sel)
            now = time.monotonic()
            if mp == ofp.OFPMP_FLOW:
                self.conn.send(ofwire.flow_stats_reply(
                    [(now - e.t0, e.priority, e.idle, e.hard, e.flags, e.cookie, counts[e][0], counts[e][1],
                      e.match, e.instructions) for e in sel], xid))
            else:
                self.conn.send(ofwire.aggregate_reply(sum(c[0] for c in counts.values()),
                                                      sum(c[1] for c in counts.values()), len(sel), xid))
        elif mp == ofp.OFPMP_PORT_STATS:
            if msg.port_no == ofp.OFPP_ANY:
                ports = range(self.nb_ports)
            elif 1 <= msg.port_no <= self.nb_ports:
                ports = [msg.port_no - 1]
            else:
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT,
                              "port %d is no manager port (1..%d)" % (msg.port_no, self.nb_ports))
            dur = time.monotonic() - self.started
            rows = []
            for p in ports:
                s = self.cf.port_stats(p)
                rows.append((p + 1, s["rx"], s["tx"], s["rx_drop"] + s["inject_drop"], s["tx_drop"], dur))
            self.conn.send(ofwire.port_stats_reply(rows, xid))
        elif mp == ofp.OFPMP_TABLE:
            self.conn.send(ofwire.table_stats_reply(len(self.table.entries), self.table.lookups,
                                                    self.table.matched, xid))
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART,
                          "multipart type %d is not supported" % mp)

    def on_flow_mod(self, fm, raw):
        cmd = fm.command
        delete = cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)
        if cmd not in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT) and not delete:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, "flow-mod command %d" % cmd)
        if fm.table_id != 0 and not (delete and fm.table_id == ofp.OFPTT_ALL):
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, "this switch has one table, 0")
        req = normalize(fm.match)
        now = time.monotonic()
        if delete:
            strict = cmd == ofp.OFPFC_DELETE_STRICT
            for e in self.table.find(req, strict, fm.priority, fm.out_port, fm.cookie, fm.cookie_mask):
                self.retire(e, ofp.OFPRR_DELETE)
            self.uncacheable.clear()
            return
        outs = outputs(fm.instructions, self.nb_ports)
        if cmd == ofp.OFPFC_ADD:
            e, old = self.table.add(fm, outs, now)
            for o in old:                       # replaced: no flow-removed; its rules' counts carry over
                for key in list(o.cache):
                    self.uncache(key)
                if not fm.flags & ofp.OFPFF_RESET_COUNTS:
                    e.packets, e.bytes = o.packets, o.bytes
            self.revalidate(added=e)
        else:
            chosen = self.table.find(req, cmd == ofp.OFPFC_MODIFY_STRICT, fm.priority, cookie=fm.cookie,
                                     cookie_mask=fm.cookie_mask)
            for e in chosen:
                e.instructions, e.outs = fm.instructions, outs
                if fm.flags & ofp.OFPFF_RESET_COUNTS:
                    e.packets = e.bytes = 0
            self.revalidate(modified=chosen)
        self.app[3] += 1
        if fm.buffer_id != ofp.OFP_NO_BUFFER:
            if fm.buffer_id not in self.buffers:
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN,
                              "no buffer %d (released, timed out, or never)" % fm.buffer_id)
            self.release(fm.buffer_id)          # the flow-mod applies to the held packets: the table takes them

    def out_codes(self, outs, raw, port):
        """The verdicts of a packet-out's outputs for one frame."""
        codes = []
        rest = [(p, m) for p, m in outs if p != ofp.OFPP_TABLE]
        d = Decision(rest, port, self.nb_ports)
        if d.controller is not None:
            self.packet_in(raw, port, None, ofp.OFP_NO_BUFFER, ofp.OFPCML_NO_BUFFER)
        if d.services:
            codes.append(_code(lib.ONVM_TO_SERVICE, d.services[0]))
        if d.default:
            codes.append(NEXT_CODE)
        codes += [_code(lib.ONVM_TO_PORT, q) for q in d.ports]
        if len(rest) < len(outs):
            codes += self.route(raw, port, back=True)
        return codes or [DROP_CODE]

    def on_packet_out(self, msg, raw):
        outs = outputs(msg.actions, self.nb_ports, packet_out=True)
        if msg.buffer_id != ofp.OFP_NO_BUFFER:
            if msg.buffer_id not in self.buffers:
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN,
                              "no buffer %d (released, timed out, or never)" % msg.buffer_id)
            self.release(msg.buffer_id, outs)
            return
        data = bytes(msg.data or b"")
        if not 14 <= len(data) <= 2048:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PACKET,
                          "a packet-out without a buffer carries a frame of 14..2048 bytes, got %d" % len(data))
        port = msg.in_port - 1 if 1 <= msg.in_port <= self.nb_ports else NO_PORT
        codes = self.out_codes(outs, data, port)
        self.copies(data, port, codes)
        self.flush_cache()

    # ---- ports ------------------------------------------------------------------

    def port_list(self):
        """OpenFlow port number -> name: the manager's ports, the default
        path and the live services."""
        ports = {p + 1: str(Hop.port(p)) for p in range(self.nb_ports)}    # as onvm names them
        ports[DEFAULT_PATH] = "default"
        names = self.cf.service_names()
        t = self.cf.tables()
        for s in range(1, lib.ONVM_MAX_SERVICES):
            if s != self.service and t.services[s].count:
                ports[SERVICE_BASE + s] = names.get(s) or str(Hop.service(s))
        return ports

    def port_mac(self, no):
        if no <= self.nb_ports:
            return ":".join("%02x" % x for x in self.cf.shm.ports[no - 1].mac)
        return "02:00:00:00:%02x:%02x" % (no >> 8 & 0xff, no & 0xff)

    def port_changes(self):
        """Services that came or went since the controller last heard: port-status."""
        now = self.port_list()
        for no in sorted(set(now) | set(self.ports)):
            if now.get(no) == self.ports.get(no):
                continue
            reason = ofp.OFPPR_DELETE if no not in now else \
                ofp.OFPPR_ADD if no not in self.ports else ofp.OFPPR_MODIFY
            self.send(ofwire.PortStatus(ofwire.DP, reason, ofwire.port(no, now.get(no) or self.ports[no],
                                                                         self.port_mac(no))))
        self.ports = now
