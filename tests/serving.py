"""A control server polled on a thread of the test's own process: for tests
of the protocol and its ops that need no manager."""
import contextlib
import threading


@contextlib.contextmanager
def polled(server, interval=0.01):
    """Poll server (an onvm.mgr.control.ControlServer that is listening)
    until the block ends, then close it."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            server.poll(interval)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield server
    finally:
        stop.set()
        t.join(5)
        server.close()
