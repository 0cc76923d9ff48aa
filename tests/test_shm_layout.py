"""The shared-memory layout cannot change without a new ONVM_SHM_VERSION
(DPDK's check-abi idea): every reader checks the version, so a process of
another layout refuses the files instead of misreading them."""
import hashlib
import os
import re

from onvm import _headers
from onvm.common.abi import ffi, lib

HEADER = os.path.join(_headers.CORE, "onvm_shm.h")


def layout_digest():
    """A digest of every struct in onvm_shm.h as compiled: size, alignment,
    and each field's name, offset and type."""
    with open(HEADER) as f:
        names = re.findall(r"^struct (\w+) \{", f.read(), re.M)
    lines = []
    for name in names:
        t = ffi.typeof("struct %s" % name)
        lines.append("struct %s %d %d" % (name, ffi.sizeof(t), ffi.alignof(t)))
        lines += ["  %s %d %s" % (field, f.offset, f.type.cname) for field, f in t.fields]
    assert len(names) > 20, names
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def recorded():
    """{version: digest} of the header's "layout N DIGEST" lines."""
    with open(HEADER) as f:
        return {int(v): d for v, d in re.findall(r"^ \*   layout (\d+) ([0-9a-f]{16})$", f.read(), re.M)}


def problem(digest, version, known):
    """What is wrong with the recorded layouts, and how to fix it; None: all is well."""
    if version not in known:
        return ("onvm_shm.h: ONVM_SHM_VERSION %d has no layout line; add\n *   layout %d %s\nbeside "
                "ONVM_SHM_VERSION" % (version, version, digest))
    if known[version] != digest:
        return ("the shared-memory layout changed (digest %s; version %d was %s) but ONVM_SHM_VERSION did not: "
                "in onvm/core/onvm_shm.h set ONVM_SHM_VERSION to %d and add the line\n *   layout %d %s\n"
                "(readers of the old layout then refuse the new files instead of misreading them)"
                % (digest, version, known[version], max(known) + 1, max(known) + 1, digest))
    if version != max(known):
        return "ONVM_SHM_VERSION %d is older than a recorded layout (%d)" % (version, max(known))
    return None


def test_a_layout_change_bumps_the_version():
    msg = problem(layout_digest(), lib.ONVM_SHM_VERSION, recorded())
    assert msg is None, msg


def test_the_check_refuses_a_changed_layout_and_says_how_to_fix_it():
    digest = layout_digest()
    msg = problem("0123456789abcdef", 3, {2: "f" * 16, 3: digest})
    assert "layout changed" in msg and "set ONVM_SHM_VERSION to 4" in msg and "layout 4 0123456789abcdef" in msg
    assert "has no layout line" in problem(digest, 5, {3: digest})
    assert "older than a recorded layout" in problem(digest, 3, {3: digest, 4: "f" * 16})
    assert problem(digest, 4, {3: "f" * 16, 4: digest}) is None


def test_the_digest_follows_the_compiled_layout():
    """Every struct of the header is in it, at the compiler's offsets."""
    t = ffi.typeof("struct onvm_shm")
    assert dict(t.fields)["ports"].offset % 64 == 0        # ONVM_ALIGNED members as laid out
    assert recorded()[lib.ONVM_SHM_VERSION] == layout_digest()
