"""The SDN NF: an OpenFlow 1.3 switch whose flow table is onvm's flow director.

It is the manager's miss handler.  The first packet of a flow that no rule
matches comes here; it is parked (held in the NF, see onvm_nf_park) and
sent to the controller as a packet-in.  Packets of the same flow that come
while the decision is pending are parked with it, up to `buffer` packets
in all (past that they take the default path, counted as overflow).  A
flow-mod becomes a flow-director rule (an exact 5-tuple rule when the match
is one); a packet-out, or a flow-mod naming the buffer, hands the parked
packets on.  With no controller, misses take the default path and the NF
reconnects with backoff.

OpenFlow port numbers: manager port p is OpenFlow port p + 1 (named
"port:p"); service s is the logical port SERVICE_BASE + s (named by its
graph node, else "svc:s").  A flow's actions are outputs in order: the
hops of its chain (services), ending at a port."""
import collections
import queue
import socket
import threading
import time
import zlib

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from .. import flows
from ..common.abi import ffi, lib
from ..common.errors import OnvmError
from ..common.packet import DROP, NEXT, Packet, ToPort, ToService
from ..nflib import context
from ..nflib import door as nfdoor
from . import ofwire

SERVICE_BASE = 0x1000           # OpenFlow port of service s: SERVICE_BASE + s
BACKOFF = (0.1, 2.0)            # reconnect after 0.1 s, doubling up to 2 s
DECIDED_FOR = 2.0               # seconds a decided flow's stragglers pass without asking again
# app counters (NF stats "app"): packet-ins sent, packets parked, packets past
# the buffer (default path), rules installed from flow-mods
APP = ("packet_in", "buffered", "overflow", "flow_mod")


def of_port(action, dest):
    return dest + 1 if action == lib.ONVM_TO_PORT else SERVICE_BASE + dest


def onvm_hop(port_no, nb_ports):
    """An OpenFlow output port -> ToPort/ToService; ValueError if none."""
    if 1 <= port_no <= nb_ports:
        return ToPort(port_no - 1)
    if SERVICE_BASE < port_no < SERVICE_BASE + lib.ONVM_MAX_SERVICES:
        return ToService(port_no - SERVICE_BASE)
    raise ValueError("OpenFlow port %d is neither a manager port (1..%d) nor a service (%d + ID)"
                     % (port_no, nb_ports, SERVICE_BASE))


def _prefix(v):
    if isinstance(v, tuple):
        addr, mask = v
        bits = bin(int.from_bytes(socket.inet_aton(mask), "big"))
        n = bits.count("1")
        if "01" in bits[2:]:
            raise ValueError("address mask %s is not a prefix" % mask)
        return "%s/%d" % (addr, n)
    return v


def onvm_match(m):
    """An OFPMatch -> onvm.Match; ValueError for fields the flow director
    cannot match on (it sees IPv4 5-tuples from any port)."""
    fields = dict(m.items())
    if fields.pop("eth_type", 0x0800) != 0x0800:
        raise ValueError("only IPv4 (eth_type 0x0800) flows can be matched")
    kw = {}
    for of, ours in (("ipv4_src", "src"), ("ipv4_dst", "dst"), ("ip_proto", "proto")):
        if of in fields:
            kw[ours] = _prefix(fields.pop(of)) if ours != "proto" else fields.pop(of)
    for l4 in ("tcp", "udp", "sctp"):
        if l4 + "_src" in fields:
            kw["sport"] = fields.pop(l4 + "_src")
        if l4 + "_dst" in fields:
            kw["dport"] = fields.pop(l4 + "_dst")
    if fields:
        raise ValueError("cannot match on %s (the flow director matches IPv4 addresses, protocol and ports)"
                         % ", ".join(sorted(fields)))
    return flows.Match(**kw)


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


class _Running:
    """One run of the SDN NF: its state between packets and messages."""

    def __init__(self, sw, nf, error):
        self.sw, self.nf, self.error = sw, nf, error
        self.app = lib.onvm_nf_app(nf)
        self.door = context.door
        self.cf = context.control_file()
        self.nb_ports = self.cf.shm.nb_ports
        self.service = context.current.service
        name = "%s/%d" % (context.manager, self.service)
        self.dpid = sw.datapath_id if sw.datapath_id is not None else zlib.crc32(name.encode())
        self.events = queue.Queue()
        self.conn = _Connection(sw.address, nf, self.events)
        self.ready = False          # the controller has our features (and ports): packet-ins go out
        self.ready_at = None
        self.sock = None
        self.miss_send_len = ofp.OFPCML_NO_BUFFER
        self.pending = {}           # flow 5-tuple -> buffer ID
        # flows just decided -> when: their packets that were on the way to us
        # before the rule existed go on to the table without asking again
        self.decided = collections.OrderedDict()
        self.buffers = collections.OrderedDict()   # buffer ID -> [flow, handles, time]
        self.parked = 0
        self.next_buffer = 1
        self.rules = {}             # serial -> (rule ID, OFPFlowMod) of rules from flow-mods
        self.ports = {}             # OpenFlow port number -> name, as last told to the controller
        self.last_heard = self.next_echo = self.next_poll = 0.0
        self.xid = 1
        self.max_priority = lib.ONVM_FLOW_MAX_PRIORITY

    # ---- the loop ---------------------------------------------------------------

    def run(self):
        # The operator granted us the role at launch (onvm.sdn.nf asks for it);
        # the answer says the highest priority our rules may have.
        got = nfdoor.call(self.door, {"op": "flow_miss", "on": True})
        self.max_priority = got.get("max_priority", lib.ONVM_FLOW_MAX_PRIORITY)
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
                self.on_events()
                self.on_timers()
        finally:
            self.conn.stop()
            try:
                nfdoor.call(self.door, {"op": "flow_miss", "on": False})
            except OnvmError:
                pass            # the manager is gone
            self.release_all()
        return 0

    def on_packets(self, b, n):
        """Park misses until the controller decides; with no controller,
        leave them NEXT: the table again, then the default path."""
        if not self.ready:
            return
        for i in range(n):
            raw = bytes(Packet(b, i).data)
            try:
                m = flows.Match.of(raw)
            except ValueError:
                continue                        # not IPv4: no rule can match it; the default path
            key = (m.src, m.dst, m.proto, m.sport, m.dport)
            if key in self.decided:
                continue                        # NEXT: the table has its answer
            bid = self.pending.get(key)
            if self.parked >= self.sw.buffer:
                self.app[2] += 1                # overflow: the default path
                continue
            h = lib.onvm_nf_park(self.nf, b, i)
            if h < 0:
                self.app[2] += 1
                continue
            self.parked += 1
            self.app[1] += 1
            if bid is not None:
                self.buffers[bid][1].append(h)
                continue
            bid = self.next_buffer
            self.next_buffer = self.next_buffer % 0xfffffff0 + 1
            self.pending[key] = bid
            self.buffers[bid] = [key, [h], time.monotonic()]
            data = raw if self.miss_send_len == ofp.OFPCML_NO_BUFFER else raw[:self.miss_send_len]
            self.send(ofwire.PacketIn(ofwire.DP, buffer_id=bid, total_len=len(raw), reason=ofp.OFPR_NO_MATCH,
                                      table_id=0, cookie=0xffffffffffffffff,
                                      match=parser.OFPMatch(in_port=Packet(b, i).port + 1), data=data))
            self.app[0] += 1

    def release(self, bid, verdict=NEXT, decided=True):
        """Hand a buffer's parked packets on (NEXT: the flow table again).
        decided: the controller answered for the flow."""
        key, handles, _ = self.buffers.pop(bid)
        self.pending.pop(key, None)
        if decided:
            self.decided[key] = time.monotonic()
        n = len(handles)
        hs = ffi.new("uint32_t[]", handles)
        vs = ffi.new("uint32_t[]", [verdict.code] * n)
        lib.onvm_nf_unpark(self.nf, hs, vs, n)
        self.parked -= n

    def release_all(self):
        for bid in list(self.buffers):
            self.release(bid, decided=False)

    def on_events(self):
        while True:
            try:
                kind, arg = self.events.get_nowait()
            except queue.Empty:
                return
            if kind == "up":
                self.sock = arg
                self.ready = False
                self.last_heard = time.monotonic()
                self.send(parser.OFPHello(ofwire.DP))
            elif kind == "down" and arg is self.sock:
                self.sock = None
                self.ready = False
                self.release_all()      # no one will decide: the table, else the default path
            elif kind == "msg":
                self.last_heard = time.monotonic()
                try:
                    self.on_message(arg)
                except ValueError as e:
                    self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, arg, str(e))

    def on_timers(self):
        now = time.monotonic()
        while self.buffers:
            bid, (_, _, t0) = next(iter(self.buffers.items()))
            if now - t0 < self.sw.decision_timeout:
                break
            self.release(bid, decided=False)
        while self.decided and now - next(iter(self.decided.values())) > DECIDED_FOR:
            self.decided.popitem(last=False)
        if self.sock is not None:
            if not self.ready and self.ready_at is not None and now >= self.ready_at:
                self.ready = True
            if now - self.last_heard > 3 * self.sw.echo_interval:
                self.conn.drop()        # silent for too long: reconnect
            elif now >= self.next_echo:
                self.next_echo = now + self.sw.echo_interval
                self.send(parser.OFPEchoRequest(ofwire.DP, data=b"onvm"))
        if now >= self.next_poll:
            self.next_poll = now + 0.2
            if self.rules:
                self.flow_events()
            if self.ready:
                self.port_changes()

    # ---- messages ---------------------------------------------------------------

    def send(self, msg, xid=None):
        if xid is None:
            xid, self.xid = self.xid, self.xid % 0xffffffff + 1
        return self.conn.send(ofwire.encode(msg, xid))

    def send_error(self, type_, code, request, why=""):
        if why:
            print("sdn: refused a controller message: %s" % why, flush=True)
        self.send(parser.OFPErrorMsg(ofwire.DP, type_=type_, code=code, data=bytes(request[:64])),
                  ofwire.header(request)[3])

    def on_message(self, raw):
        msg = ofwire.parse(raw)
        t, xid = msg.msg_type, msg.xid
        if t == ofp.OFPT_HELLO:
            return
        if t == ofp.OFPT_ECHO_REQUEST:
            self.send(parser.OFPEchoReply(ofwire.DP, data=msg.data), xid)
        elif t == ofp.OFPT_ECHO_REPLY or t == ofp.OFPT_ERROR:
            return
        elif t == ofp.OFPT_FEATURES_REQUEST:
            self.send(ofwire.SwitchFeatures(ofwire.DP, self.dpid, self.sw.buffer, 1, 0, 0), xid)
            self.ready_at = time.monotonic() + 1.0     # or once it has our ports, whichever first
        elif t == ofp.OFPT_SET_CONFIG:
            self.miss_send_len = msg.miss_send_len
        elif t == ofp.OFPT_GET_CONFIG_REQUEST:
            self.send(ofwire.GetConfigReply(ofwire.DP, 0, self.miss_send_len), xid)
        elif t == ofp.OFPT_BARRIER_REQUEST:
            self.send(parser.OFPBarrierReply(ofwire.DP), xid)   # every message is done when read
        elif t == ofp.OFPT_MULTIPART_REQUEST and msg.mp_type == ofp.OFPMP_PORT_DESC:
            reply = ofwire.PortDescReply(ofwire.DP)
            self.ports = self.port_list()
            reply.body = [ofwire.port(no, name, self.port_mac(no)) for no, name in sorted(self.ports.items())]
            self.send(reply, xid)
            self.ready = True
        elif t == ofp.OFPT_MULTIPART_REQUEST and msg.mp_type == ofp.OFPMP_DESC:
            reply = ofwire.DescReply(ofwire.DP)
            reply.body = parser.OFPDescStats(b"onvm", b"OpenNetVM-style NF manager", b"onvm.sdn", b"",
                                             context.manager.encode()[:255])
            self.send(reply, xid)
        elif t == ofp.OFPT_MULTIPART_REQUEST:
            self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, raw)
        elif t == ofp.OFPT_FLOW_MOD:
            self.on_flow_mod(msg, raw)
        elif t == ofp.OFPT_PACKET_OUT:
            self.on_packet_out(msg, raw)
        else:
            self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, raw)

    def chain_of(self, instructions):
        """A flow-mod's instructions -> its chain of hops; ValueError if
        they are more than outputs to ports and services."""
        chain = []
        for ins in instructions:
            if not isinstance(ins, parser.OFPInstructionActions) or ins.type == ofp.OFPIT_CLEAR_ACTIONS:
                raise ValueError("only apply-actions and write-actions instructions are supported")
            for a in ins.actions:
                if not isinstance(a, parser.OFPActionOutput):
                    raise ValueError("only output actions are supported (the hops of a chain)")
                chain.append(a.port)
        return chain

    def on_flow_mod(self, msg, raw):
        cmd = msg.command
        if cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            for _, (rid, fm) in list(self.rules.items()):
                same = fm.match.to_jsondict() == msg.match.to_jsondict()
                if msg.cookie_mask and (fm.cookie & msg.cookie_mask) != (msg.cookie & msg.cookie_mask):
                    continue
                if (cmd == ofp.OFPFC_DELETE and (same or not list(msg.match.items()))) or \
                        (same and fm.priority == msg.priority):
                    try:
                        nfdoor.call(self.door, {"op": "flow_remove", "id": rid})
                    except OnvmError:
                        pass                # expired meanwhile
            return
        try:
            ports = self.chain_of(msg.instructions)
            if ofp.OFPP_CONTROLLER in ports:
                if not list(msg.match.items()):
                    return              # the table-miss entry: misses come here anyway
                raise ValueError("only the table-miss entry may output to the controller")
            match = onvm_match(msg.match)
            chain = [onvm_hop(p, self.nb_ports) for p in ports]
        except ValueError as e:
            self.send_error(ofp.OFPET_BAD_ACTION if "action" in str(e) or "port" in str(e) else ofp.OFPET_BAD_MATCH,
                            0, raw, str(e))
            return
        for serial, (rid, fm) in list(self.rules.items()):   # add/modify replaces the same match
            if fm.match.to_jsondict() == msg.match.to_jsondict() and fm.priority == msg.priority:
                del self.rules[serial]      # replaced: no flow-removed for it
                try:
                    nfdoor.call(self.door, {"op": "flow_remove", "id": rid})
                except OnvmError:
                    pass
        try:
            req = flows.request(match, chain, {}, self.nb_ports, min(msg.priority, self.max_priority),
                                msg.idle_timeout, msg.hard_timeout)
            rule = nfdoor.call(self.door, req)["rule"]
        except (OnvmError, ValueError) as e:
            self.send_error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_UNKNOWN, raw, str(e))
        else:
            self.rules[rule["serial"]] = (rule["id"], msg)
            self.app[3] += 1
        if msg.buffer_id != ofp.OFP_NO_BUFFER and msg.buffer_id in self.buffers:
            self.release(msg.buffer_id)     # the flow-mod applies to the buffered packet

    def on_packet_out(self, msg, raw):
        if msg.buffer_id == ofp.OFP_NO_BUFFER:
            self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, raw,
                            "packet-out of new packet data is not supported; use the buffer of the packet-in")
            return
        if msg.buffer_id not in self.buffers:
            self.send_error(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, raw)
            return
        outs = [a.port for a in msg.actions if isinstance(a, parser.OFPActionOutput)]
        if not outs:
            verdict = DROP
        elif outs[0] == ofp.OFPP_TABLE:
            verdict = NEXT              # the flow table decides (a rule just added takes it)
        else:
            try:
                verdict = onvm_hop(outs[0], self.nb_ports)
            except ValueError as e:
                self.send_error(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, raw, str(e))
                return
        self.release(msg.buffer_id, verdict)

    def flow_events(self):
        """Rules of ours that expired or were removed: flow-removed messages."""
        reasons = {"idle": ofp.OFPRR_IDLE_TIMEOUT, "hard": ofp.OFPRR_HARD_TIMEOUT, "delete": ofp.OFPRR_DELETE}
        for ev in nfdoor.call(self.door, {"op": "flow_events"})["events"]:
            got = self.rules.pop(ev["serial"], None)
            if got is None or not got[1].flags & ofp.OFPFF_SEND_FLOW_REM or self.sock is None:
                continue
            fm, d = got[1], ev["duration"]
            self.send(ofwire.FlowRemoved(ofwire.DP, fm.cookie, fm.priority, reasons[ev["reason"]], 0, int(d),
                                         int(d % 1 * 1e9), fm.idle_timeout, fm.hard_timeout, ev["packets"],
                                         ev["bytes"], fm.match))

    # ---- ports ------------------------------------------------------------------

    def port_list(self):
        """OpenFlow port number -> name: the manager's ports and live services."""
        ports = {p + 1: "port:%d" % p for p in range(self.nb_ports)}
        names = self.cf.service_names()
        t = self.cf.tables()
        for s in range(1, lib.ONVM_MAX_SERVICES):
            if s != self.service and t.services[s].count:
                ports[SERVICE_BASE + s] = names.get(s) or "svc:%d" % s
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
