"""The compiled core (onvm._core, built by cffi from onvm/core) and its one
Python owner: every other module takes ffi and lib from here, so the ABI has
one importer, and a C call's -errno turns into an exception in one place."""
import os

from .. import _core
from .errors import OnvmError

ffi = _core.ffi
lib = _core.lib
core = _core      # the extension module itself (onvm doctor names its file)


def last_error():
    """The C core's message for this thread's last failure ("" if none)."""
    msg = lib.onvm_last_error()
    return ffi.string(msg).decode(errors="replace") if msg != ffi.NULL else ""


def check(ret, what=None, error=OnvmError):
    """ret from a C call that returns -errno on failure: ret itself when it
    is >= 0, else `error` (OnvmError; ValueError where the caller knows the
    input was at fault) with the C core's message, after "what: " if given."""
    if ret >= 0:
        return ret
    detail = last_error() or os.strerror(-ret)
    raise error("%s: %s" % (what, detail) if what else detail)
