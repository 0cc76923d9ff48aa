"""Process logs that cannot take the process down (manager and NF processes).

A manager's or an NF's stdout and stderr are its log file.  When that file
system is full (or the file is unwritable for any other reason), print()
raises, and the exception ended the process: a manager on its "ready" line,
an NF while reporting a callback error.  A LogSink writes whole lines as it
can and drops, and counts, the lines it cannot; the count is in the stats
(`mgr.stats()["manager"]["log_dropped"]`, an NF's `"log_dropped"`).

    sink = logsink.install()          # sys.stdout and sys.stderr now never raise
    sink.on_drop = lambda total: ...  # publish the count somewhere"""
import io
import os
import sys
import threading

MAX_PENDING = 1 << 16      # characters held back waiting for the end of a line


class LogSink:
    """The count of lines dropped by the streams of one process."""

    def __init__(self):
        self.dropped = 0
        self.on_drop = None       # called with the new total after each drop
        self.lock = threading.RLock()   # a signal handler may print while the main thread writes

    def drop(self, lines):
        self.dropped += lines
        if self.on_drop is not None:
            try:
                self.on_drop(self.dropped)
            except Exception:     # publishing the count must not fail the writer either
                pass

    def stream(self, fd, closefd=False):
        """A LineWriter on fd counting into this sink."""
        return LineWriter(fd, self, closefd)


class LineWriter(io.TextIOBase):
    """A text stream on fd that writes whole lines with os.write and never
    raises on a failed write: the lines are dropped and counted in sink."""

    encoding = "utf-8"
    errors = "backslashreplace"

    def __init__(self, fd, sink, closefd=False):
        super().__init__()
        self.fd = fd
        self.sink = sink
        self.closefd = closefd
        self._pending = ""

    def close(self):
        if not self.closed:
            self.flush()
            if self.closefd:
                os.close(self.fd)
        super().close()

    def writable(self):
        return True

    def fileno(self):
        return self.fd

    def isatty(self):
        try:
            return os.isatty(self.fd)
        except OSError:
            return False

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        with self.sink.lock:
            self._pending += s
            cut = self._pending.rfind("\n") + 1
            if len(self._pending) > MAX_PENDING:
                cut = len(self._pending)       # a very long line (or \r progress): out it goes
            if cut:
                text, self._pending = self._pending[:cut], self._pending[cut:]
                self._write(text)
        return len(s)

    def flush(self):
        with self.sink.lock:
            text, self._pending = self._pending, ""
            if text:
                self._write(text)

    def _write(self, text):
        data = text.encode(self.encoding, self.errors)
        while data:
            try:
                n = os.write(self.fd, data)
            except InterruptedError:
                continue
            except OSError:
                # ENOSPC, EDQUOT, EIO, EPIPE, EFBIG, a full non-blocking pipe...: drop the rest
                self.sink.drop(max(1, data.count(b"\n")))
                return
            data = data[n:]


_installed = None


def install():
    """Make this process's sys.stdout and sys.stderr LineWriters on fds 1
    and 2 (once per process).  returns: the LogSink counting their drops."""
    global _installed
    if _installed is None:
        _installed = LogSink()
        for name, fd in (("stdout", 1), ("stderr", 2)):
            old = getattr(sys, name)
            try:
                if old is not None:
                    old.flush()
            except (OSError, ValueError):
                pass
            setattr(sys, name, _installed.stream(fd))
    return _installed
