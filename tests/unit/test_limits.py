"""onvm/common/limits.py is what the headers say: generated from them at
build time, checked here so the committed copy cannot drift."""
import os
import re
import shutil

import pytest

from onvm import _headers
from onvm.common import limits


def test_the_committed_limits_are_what_the_headers_say():
    with open(_headers.LIMITS) as f:
        committed = f.read()
    assert committed == _headers.limits_source(), (
        "onvm/common/limits.py is out of step with onvm/core's headers: rebuild (pip install -e .) "
        "or run `python -m onvm._headers`, and commit the file")


def test_every_integer_define_and_enum_member_of_the_layout_is_there():
    with open(os.path.join(_headers.CORE, "onvm_shm.h")) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    defines = re.findall(r"^#define (ONVM_\w+) ([0-9][0-9xa-fA-FuUlL]*)\s*$", text, re.M)
    assert len(defines) > 30
    for name, literal in defines:
        assert getattr(limits, name) == int(literal.rstrip("uUlL"), 0), name
    for members in re.findall(r"enum \w+ \{([^}]*)\}", text):
        for name, value in re.findall(r"(ONVM_\w+) = (\d+)", members):
            assert getattr(limits, name) == int(value), name


def test_the_values_code_relies_on():
    assert (limits.ONVM_NEXT, limits.ONVM_DROP, limits.ONVM_TO_SERVICE, limits.ONVM_TO_PORT) == (0, 1, 2, 3)
    assert limits.ONVM_MAX_PORTS == 32 and limits.ONVM_MAX_SERVICES == 256 and limits.ONVM_MAX_CHAIN == 16
    assert limits.ONVM_FLOW_LANES == 1 + limits.ONVM_MAX_THREADS      # an expression of earlier names
    assert limits.ONVM_PACE_MAX_GAP_NS == 60 * 10 ** 9                # a 64-bit literal with a suffix
    assert limits.ONVM_REC_PAD == 0xffffffff
    assert (limits.ONVM_PORT_RING, limits.ONVM_PORT_PCI) == (0, 4)


def test_strings_and_macros_are_left_out():
    assert not hasattr(limits, "ONVM_POOL_NAME")         # a string
    assert not hasattr(limits, "ONVM_ALIGNED")           # an attribute
    assert not hasattr(limits, "ONVM_VERDICT")           # a function-like macro


def test_a_changed_header_changes_the_generated_file(tmp_path):
    core = tmp_path / "core"
    shutil.copytree(_headers.CORE, core, ignore=shutil.ignore_patterns("*.c"))
    h = core / "onvm_shm.h"
    h.write_text(h.read_text().replace("#define ONVM_MAX_CHAIN 16", "#define ONVM_MAX_CHAIN 24"))
    text = _headers.limits_source(core=str(core))
    assert "ONVM_MAX_CHAIN = 24\n" in text and text != _headers.limits_source()
    ns = {}
    exec(text, ns)
    assert ns["ONVM_MAX_CHAIN"] == 24 and ns["ONVM_MAX_PORTS"] == 32


def test_write_limits_writes_only_a_change(tmp_path):
    out = tmp_path / "limits.py"
    assert _headers.write_limits(str(out)) is True
    assert _headers.write_limits(str(out)) is False
    assert out.read_text() == _headers.limits_source()


@pytest.mark.parametrize("expr, want", [("16", 16), ("0x10", 16), ("60000000000ull", 60000000000),
                                        ("(1 + ONVM_MAX_THREADS)", 4), ("\"onvm_pool\"", None),
                                        ("__attribute__((aligned(64)))", None), ("UNKNOWN + 1", None)])
def test_the_define_reader(expr, want):
    assert _headers._value(expr, {"ONVM_MAX_THREADS": 3}) == want


def test_the_cdef_keeps_one_declaration_of_each_struct():
    cdef = _headers.cdef_from_headers()
    assert "#define ONVM_MAX_NFS ..." in cdef
    assert "struct onvm_shm {" in cdef and "onvm_last_error" in cdef
    assert "ONVM_ALIGNED" not in cdef and "__attribute__" not in cdef
    assert re.search(r"struct onvm_chain_entry entries\[\.\.\.\];", cdef)
