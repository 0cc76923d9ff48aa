"""The compiled core (onvm._core, built by cffi from onvm/core) and its one
Python owner: every other module takes ffi and lib from here, so the ABI has
one importer, and a C call's -errno turns into an exception in one place."""
from .. import _core
from .errors import OnvmError

ffi = _core.ffi
lib = _core.lib
core = _core      # the extension module itself (onvm doctor names its file)


def last_error():
    """The C core's message for this thread's last failure ("" if none)."""
    msg = lib.onvm_last_error()
    return ffi.string(msg).decode(errors="replace") if msg != ffi.NULL else ""


def check(ret, what):
    """ret from a C call that returns -errno on failure: ret itself when it
    is >= 0, else OnvmError naming what failed, the C core's message and the
    errno (ValueError for -EINVAL: the input was wrong)."""
    if ret >= 0:
        return ret
    import os
    detail = last_error() or os.strerror(-ret)
    exc = ValueError if ret == -22 else OnvmError
    raise exc("%s: %s" % (what, detail))
