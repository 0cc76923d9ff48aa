"""numpy NFs, @onvm.nf(batch="numpy"): the NF's function gets each burst as
numpy arrays and answers with one verdict array, so a header-field filter is
a few vectorised expressions per burst instead of Python code per packet.
Runs in the NF process (onvm.nflib.run calls run_numpy).

    @onvm.nf(service=1, batch="numpy")
    def no_telnet(burst):
        h = burst.hdr                          # (n, 64) uint8: each packet's first 64 bytes
        tcp = h[:, 23] == 6                    # IPv4 protocol byte
        dport = h[:, 36].astype(np.uint16) << 8 | h[:, 37]
        return ~(tcp & (dport == 23))          # True: onvm.NEXT, False: onvm.DROP

What the function gets (a Burst, valid only during the call):
    n                      packets in the burst (1..256): as many as wait in the NF's ring, up to
                           256, so a busy NF pays its per-burst cost once per up to 256 packets
    hdr                    (n, HDR) uint8: the first HDR (64) bytes of each packet, zeros past its
                           end; copied by the C receive call into one array the NF reuses (16 KB,
                           no Python call per packet): read it, do not keep it
    len, port, hash        (n,) arrays: length, arrival port, the RX thread's flow hash
    view, off              the zero-copy way in: view is a 2-D byte view of the whole packet pool
                           (row k is the HDR bytes starting at pool offset k), off the (n,) offsets
                           of the packets' first bytes: view[off, 8] = 63 rewrites byte 8 of every
                           packet in place
What it returns: one action for the whole burst (onvm.NEXT ...), a bool array
(True: NEXT, False: DROP) or an integer array of action codes (onvm.ToPort(1).code ...),
with n entries.  Anything else drops the burst and counts an error in the NF's stats."""
import numpy as np

from ..common.abi import ffi, lib
from ..common.packet import DROP, NEXT, Action

HDR = 64


class Burst:
    """One burst's arrays (see above).  run_numpy keeps one Burst per burst
    size, so its attributes are read-only: a function that rebinds them would
    change the bursts after it."""
    __slots__ = ("n", "hdr", "len", "port", "hash", "off", "view")

    def __init__(self, **arrays):
        for k, v in arrays.items():
            object.__setattr__(self, k, v)

    def __setattr__(self, name, value):
        raise AttributeError("a Burst's attributes are read-only (make new arrays: mask = burst.hdr[:, 23] == 6)")

    def __repr__(self):
        return "<Burst of %d packets>" % self.n


def _array(buf, dtype):
    return np.frombuffer(ffi.buffer(buf), dtype=dtype)


def run_numpy(nf, fn, error, batch, pool):
    """Receive bursts into `batch` (a struct onvm_batch) until the NF is asked
    to stop, call fn(Burst) for each and hand the burst on with its verdicts.
    pool: a writable memoryview of the whole packet pool."""
    whole = np.frombuffer(pool, dtype=np.uint8)
    # every HDR-byte window of the pool as one row: offsets index it directly, nothing is copied
    view = np.lib.stride_tricks.as_strided(whole, shape=(max(len(whole) - HDR + 1, 0), HDR), strides=(1, 1))
    # As wide as the batch holds: whatever waits in the ring, up to 256, in one
    # call, so the fixed cost of a burst (the C call, fn's numpy calls) is
    # shared by that many packets; a quiet ring still gives bursts of 1 at once.
    width = batch.max = len(batch.verdict)
    off, lens = _array(batch.off, np.uint64), _array(batch.len, np.uint16)
    port, hsh = _array(batch.port, np.uint16), _array(batch.hash, np.uint32)
    verdict = _array(batch.verdict, np.uint32)
    c_hdr = ffi.new("uint8_t[]", width * HDR)
    hdr = _array(c_hdr, np.uint8).reshape(width, HDR)
    hdr.flags.writeable = False       # a copy: writing it would change no packet (use view)
    drop = DROP.code
    by_bool = np.array([drop, NEXT.code], dtype=np.uint32)     # verdict of False, True
    rx, tx = lib.onvm_nf_rx_headers, lib.onvm_nf_tx
    ndarray, integer, bool_, take, uint8 = np.ndarray, np.integer, np.bool_, np.take, np.uint8
    # one Burst (its arrays sliced once) and verdict slice per size seen: a
    # burst then costs no slicing
    sized = [None] * (width + 1)
    while True:
        n = rx(nf, batch, 200, c_hdr, HDR)    # returns 0 now and then, so signals get handled
        if n <= 0:
            if n < 0:
                return
            continue
        got = sized[n]
        if got is None:
            got = sized[n] = (Burst(n=n, view=view, off=off[:n], hdr=hdr[:n], len=lens[:n], port=port[:n],
                                    hash=hsh[:n]), verdict[:n], (n,))
        b, out, shape = got
        try:
            res = fn(b)
            if isinstance(res, Action):
                out[:] = res.code
            else:
                if type(res) is not ndarray:
                    res = np.asarray(res)
                if res.shape != shape:
                    raise TypeError("returned %s; return an Action, or a bool or action-code array of %d entries"
                                    % ("an array of shape %s" % (res.shape,) if res.ndim else repr(res), n))
                if res.dtype == bool_:
                    take(by_bool, res.view(uint8), out=out)
                elif issubclass(res.dtype.type, integer):
                    out[:] = res
                else:
                    raise TypeError("returned an array of %s; a bool or action-code array" % res.dtype)
        except Exception as e:   # the user's code: report, drop the burst, go on
            out[:] = drop
            error("numpy callback failed: %s: %s" % (type(e).__name__, e))
        tx(nf, batch)
