"""The file-backed packet rings (struct onvm_ring_hdr, onvm/core/capring.c) a
manager creates for each ring port, and the doorbell that wakes it.  The manager
daemon and the notebook side (onvm.traffic) call the same C functions."""
import fcntl
import mmap
import os
import threading

from . import paths
from .abi import check, ffi, lib
from .errors import OnvmError

READ_BUF = 8 << 20        # bytes copied out of a ring per call
READ_MAX = 65536          # records per call
WRITE_CHUNK = 4096        # packets handed to C per call


def ring_path(name, what):
    """A ring file of manager name: "port1-in", "port1-out", ..."""
    return os.path.join(paths.run_dir(name), what + ".ring")


def traffic_path(name):
    return os.path.join(paths.run_dir(name), "traffic.shm")


def _map(path, size=None, create=False):
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    if create:
        try:
            os.unlink(path)            # a stale one from a crashed manager of this name
        except FileNotFoundError:
            pass
        flags |= os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileNotFoundError:
        raise OnvmError("no ring %s: is the manager running, and is that a ring port?" % path) from None
    try:
        if create:
            os.ftruncate(fd, size)
        size = os.fstat(fd).st_size
        return fd, mmap.mmap(fd, size)
    except BaseException:
        os.close(fd)
        raise


class Ring:
    """One packet ring file, mapped read-write.  A process-side lock (flock
    on the file) keeps two writers, or two readers, of the notebook side
    apart; the data plane is the other side.

    param path: the file
    param size: record bytes (a power of two) to create it with; None opens
        an existing one"""

    def __init__(self, path, size=None):
        self.path = path
        self.fd, self.map = _map(path, None if size is None else lib.ONVM_RING_HDR + size, create=size is not None)
        self.hdr = ffi.from_buffer("struct onvm_ring_hdr *", self.map)
        if size is not None:
            self._check(lib.onvm_ring_init(self.hdr, size))
        elif self.hdr.magic != lib.ONVM_RING_MAGIC:
            raise OnvmError("%s is not a packet ring of this onvm version" % path)
        self._buf = None
        self._thread_lock = threading.Lock()   # flock does not keep our own threads apart

    _check = staticmethod(check)     # -errno -> OnvmError with the C core's message

    def lock(self, block=True):
        """Take the notebook side's lock.  returns: False if not block and
        someone else holds it."""
        if not self._thread_lock.acquire(block):
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            self._thread_lock.release()
            return False

    def unlock(self):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    @property
    def pending(self):
        """Bytes written and not yet read."""
        return lib.onvm_ring_pending(self.hdr)

    def write(self, raw, due=None, aux=None):
        """Append packets (a list of bytes) as far as they fit.
        param due: CLOCK_MONOTONIC ns per packet when it may leave (None: now)
        param aux: a 32-bit tag per packet (inject: the trace ID)
        returns: how many went in."""
        done = 0
        while done < len(raw):
            chunk = raw[done:done + WRITE_CHUNK]
            lens = ffi.new("uint32_t[]", [len(p) for p in chunk])
            ts = ffi.NULL if due is None else ffi.new("uint64_t[]", due[done:done + len(chunk)])
            ax = ffi.NULL if aux is None else ffi.new("uint32_t[]", aux[done:done + len(chunk)])
            n = self._check(lib.onvm_ring_write(self.hdr, b"".join(chunk), lens, ax, ts, len(chunk)))
            done += n
            if n < len(chunk):
                break
        return done

    def read(self, max_pkts=None, with_meta=False, max_bytes=None):
        """Take out what waits, up to max_pkts packets (and about max_bytes
        of them: one copy).  returns: a list of bytes; with with_meta,
        (bytes, wire length, CLOCK_MONOTONIC ns) tuples."""
        if self._buf is None:
            self._buf = ffi.new("uint8_t[]", READ_BUF)
            self._lens = ffi.new("uint32_t[]", READ_MAX)
            self._aux = ffi.new("uint32_t[]", READ_MAX)
            self._ts = ffi.new("uint64_t[]", READ_MAX)
        out = []
        while max_pkts is None or len(out) < max_pkts:
            want = READ_MAX if max_pkts is None else min(READ_MAX, max_pkts - len(out))
            buflen = READ_BUF if max_bytes is None else min(max_bytes, READ_BUF)
            n = self._check(lib.onvm_ring_read(self.hdr, self._buf, buflen, self._lens, self._aux, self._ts, want))
            if n == 0:
                break
            data = ffi.buffer(self._buf, READ_BUF)
            lens = ffi.unpack(self._lens, n)
            off = 0
            if with_meta:
                aux, ts = ffi.unpack(self._aux, n), ffi.unpack(self._ts, n)
                for i, ln in enumerate(lens):
                    out.append((data[off:off + ln], aux[i], ts[i]))
                    off += ln
            else:
                for ln in lens:
                    out.append(data[off:off + ln])
                    off += ln
            if max_bytes is not None:
                break
        return out

    def discard(self):
        lib.onvm_ring_discard(self.hdr)

    def close(self):
        """Forget the file.  Views taken from .hdr do not keep the mapping
        alive (see stats.ControlFile.close), so it stays mapped until exit."""
        if self.fd >= 0:
            os.close(self.fd)
            _retired.append(self.map)
            self.fd = -1

    def __repr__(self):
        return "<Ring %s pending=%d bytes>" % (os.path.basename(self.path), self.pending)


_retired = []


class Doorbell:
    """The RX threads' doorbell (struct onvm_traffic): rung after writing
    an inject ring so a sleeping RX thread wakes at once."""

    def __init__(self, path, create=False):
        self.fd, self.map = _map(path, ffi.sizeof("struct onvm_traffic") if create else None, create=create)
        os.close(self.fd)
        self.t = ffi.from_buffer("struct onvm_traffic *", self.map)
        if create:
            self.t.magic = lib.ONVM_RING_MAGIC
        elif self.t.magic != lib.ONVM_RING_MAGIC:
            raise OnvmError("%s is not a doorbell file of this onvm version" % path)

    def ring(self):
        lib.onvm_traffic_ring_bell(self.t)
